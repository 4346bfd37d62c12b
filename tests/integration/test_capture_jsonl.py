"""The jsonl capture format (`--format jsonl`, proxy/capture_jsonl.c) as jq and a log
shipper see it, with real clients (swaks, Python smtplib, raw sockets) through smtptap to
real servers (aiosmtpd, smtptap's built-in sink).

What is checked:
  every line     parses with `jq -c .` and with Python's json; one object per event, the
                 first "start", the last "end"; ts is RFC 3339 UTC with microseconds
  agreement      the events the text transcript shows (commands, replies, message lines,
                 "==" / "**" / "##" notes) rebuilt from the jsonl are the .txt capture of
                 the same session line for line, with the same times and reply latencies
  facts          endpoints (client, listener, server, our address), the delivery envelope
                 and reply, the message summary (size, SHA-256 of what the server stored),
                 the session end counters, all agreeing with what the server received
  bytes          binary DATA, NUL and non-UTF-8 bytes come back byte for byte through
                 line_b64: with -v the message's content lines are what aiosmtpd stored;
                 the message bytes themselves (EV_BODY) and the wire bytes are left to eml
                 and pcap: no "body" line, no "wire" line
  TLS            a STARTTLS session has client_tls and the handshake facts of both legs
                 (the upstream's certificate subject, issuer, SHA-256, verification)
  --redact       AUTH leaves no password in the jsonl, in no base64 alignment of it, and
                 in no decoded line_b64 either
  stdout         `-d - --format jsonl` streams every session to stdout, line by line, so
                 `| jq` reads it while smtptap runs; the text transcript stays on stderr
  files          0600 in a 0700 directory, named like the text capture, readable (flushed)
                 while the session runs, complete after SIGTERM
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import re
import selectors
import signal
import smtplib
import ssl
import stat
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

import harness
from harness import RawSmtpClient, make_message

FROM = "alice@example.org"
RCPTS = ["bob@example.net", "carol@example.net"]
USER, PASSWORD = "alice", "S3cr3t-pw"
TEST_CA_CN = "smtptap integration test CA"
JSONL_NAME_RE = re.compile(r"^(\d{8}T\d{6})-(\d+)-(.+)\.jsonl$")
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
KINDS = {"info", "command", "reply", "edited_reply", "content", "message", "raw", "lint",
         "error", "fault", "auth", "start", "upstream", "client_tls", "delivery", "end"}
BYTE_KINDS = {"command", "reply", "edited_reply", "content", "raw"}


# --------------------------------------------------------------------------- reading jsonl


def jsonl_files(cap: Path) -> Dict[int, Path]:
    """session number -> its .jsonl file in CAP."""
    out = {}
    for p in cap.iterdir():
        m = JSONL_NAME_RE.match(p.name)
        if m:
            out[int(m.group(2))] = p
    return out


def parse_jsonl(text: str, where: str) -> List[dict]:
    """Every line of TEXT as an object; fails on a partial or unparsable line."""
    assert text.endswith("\n") or not text, f"{where} does not end with a whole line"
    events = []
    for i, line in enumerate(text.split("\n")[:-1], 1):
        try:
            ev = json.loads(line)
        except ValueError as e:
            raise AssertionError(f"{where} line {i} does not parse ({e}): {line!r}") from None
        assert isinstance(ev, dict), f"{where} line {i} is not an object: {line!r}"
        events.append(ev)
    return events


def jq_check(path: Path) -> List[dict]:
    """`jq -c . FILE` reads every line; returns the events as jq printed them."""
    rc, out, err = harness.run(["jq", "-c", ".", str(path)])
    assert rc == 0, f"jq failed on {path}: {err}"
    mine = parse_jsonl(path.read_text(), str(path))
    theirs = parse_jsonl(out, "jq output")
    assert theirs == mine, "jq and Python read the file differently"
    return mine


def wait_session_jsonl(cap: Path, sid: int, timeout: float = 5.0) -> List[dict]:
    """The events of session SID once its file ends with the "end" event (flushed then)."""
    deadline = time.monotonic() + timeout
    while True:
        path = jsonl_files(cap).get(sid) if cap.exists() else None
        if path is not None:
            text = path.read_text()
            last = text.rstrip("\n").split("\n")[-1]
            if text.endswith("\n") and json.loads(last)["kind"] == "end":
                return jq_check(path)
        assert time.monotonic() < deadline, f"no complete jsonl for session {sid} in {cap}"
        time.sleep(0.05)


def payload(ev: dict) -> bytes:
    """The bytes of a byte event, from "line" or "line_b64" (exactly one of them)."""
    assert ("line" in ev) != ("line_b64" in ev), ev
    if "line" in ev:
        return ev["line"].encode("utf-8")
    return base64.b64decode(ev["line_b64"], validate=True)


def of_kind(events: List[dict], kind: str) -> List[dict]:
    return [e for e in events if e["kind"] == kind]


def message_bytes(events: List[dict]) -> bytes:
    """The message as its content lines say (all of them with -v), CRLF after each."""
    return b"".join(payload(e) + b"\r\n" for e in of_kind(events, "content"))


def check_common_fields(events: List[dict], sid: int) -> None:
    """Each event has the common fields with their types; start first, end last; ts is
    RFC 3339 with microseconds and moves with t."""
    assert events and events[0]["kind"] == "start" and events[-1]["kind"] == "end", \
        [e["kind"] for e in events]
    assert len(of_kind(events, "end")) == 1
    now = datetime.datetime.now(datetime.timezone.utc)
    origin = None
    for e in events:
        assert list(e)[:6] == ["ts", "session", "t", "dir", "kind", "tls"], e
        assert e["session"] == sid, e
        assert e["kind"] in KINDS, e
        assert e["dir"] in ("c2s", "s2c", None), e
        assert isinstance(e["tls"], bool) and isinstance(e["t"], (int, float)), e
        assert e.get("local", True) is True and e.get("to_smtptap", True) is True, e
        assert TS_RE.match(e["ts"]), e
        ts = datetime.datetime.strptime(e["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=datetime.timezone.utc)
        assert abs((now - ts).total_seconds()) < 120, e
        start = ts - datetime.timedelta(seconds=e["t"])  # wall clock of the session start
        origin = origin or start
        assert abs((start - origin).total_seconds()) < 0.05, e
        if e["kind"] in BYTE_KINDS:
            payload(e)
    ts_list = [e["ts"] for e in events]
    assert ts_list == sorted(ts_list)
    assert [e["t"] for e in events] == sorted(e["t"] for e in events)


# --------------------------------------------------------------------------- as the text shows it


def marker(e: dict) -> Optional[str]:
    k = e["kind"]
    if k in ("command", "content"):
        return " ~>" if e["tls"] else " ->"
    if k == "edited_reply":
        return "<= "  # "<=+" for the lines it added: as_transcript
    if k == "reply":
        return "<~ " if e["tls"] else "<- "
    return {"info": "==", "message": "==", "lint": "**", "fault": "!!", "auth": "##",
            "error": "<**" if e["dir"] == "s2c" else "**>"}.get(k)


def as_transcript(events: List[dict]) -> List[Tuple[int, str, str, Optional[float]]]:
    """The text transcript lines these events make: (ms, marker, text, latency_ms of a
    reply's last line). ASCII sessions only (the text format escapes other bytes)."""
    out = []
    for e in events:
        mk = marker(e)
        if mk is None:
            continue
        ms = round(e["t"] * 1e6) // 1000
        if e["kind"] in ("command", "reply", "edited_reply", "content"):
            text = payload(e).decode("ascii")
            lines = text[:-1].split("\n") if text.endswith("\n") else text.split("\n")
            lines = [ln[:-1] if ln.endswith("\r") else ln for ln in lines]
        else:
            lines = e["text"].split("\n")
        edit = e.get("reply", {}).get("edit")
        tag = ("  [smtptap]" if e.get("local") else "") + \
            ("  [to smtptap]" if e.get("to_smtptap") else "")
        for i, ln in enumerate(lines):
            last = i == len(lines) - 1
            lat = e.get("reply", {}).get("latency_ms") if last and e["kind"] == "reply" else None
            lmk = "<=+" if edit and ln[4:] in edit["added"] else mk
            out.append((ms, lmk, ln + tag, lat))
    return out


def jsonl_preview(text_lines, events: List[dict]):
    """The text capture's lines as jsonl has them: a text capture records every line of a
    message, jsonl (without -v) only its first 40."""
    run, whole = 0, False
    for e in events:
        run = run + 1 if e["kind"] == "content" else 0
        whole = whole or run > 40
    if whole:
        return text_lines
    out, in_msg, n = [], False, 0
    for l in text_lines:
        if l.is_reply and l.text.startswith("354"):
            in_msg, n = True, 0
        elif in_msg and l.is_command:
            n += 1
            if n > 40:
                continue
        elif l.marker == "==" and l.text.startswith("message "):
            in_msg = False
        out.append(l)
    return out


def assert_agrees_with_text(events: List[dict], txt: Path) -> None:
    """The jsonl and the .txt capture of one session say the same, line for line (but the
    message lines past the first 40, which jsonl has only with -v)."""
    text_lines = jsonl_preview(harness.parse_transcript(txt.read_text()), events)
    mine = as_transcript(events)
    assert [(m, t) for _, m, t, _ in mine] == [(l.marker, l.text) for l in text_lines], \
        "\n".join(f"{a!r:60} | {b!r}" for a, b in zip([(m, t) for _, m, t, _ in mine],
                                                        [(l.marker, l.text) for l in text_lines]))
    for (ms, _, _, lat), l in zip(mine, text_lines):
        assert ms == round(l.t * 1000), (ms, l.raw)
        if lat is None:
            assert l.latency_ms is None, l.raw
        elif l.latency_ms == 0.05:  # "<0.1 ms"
            assert lat <= 0.1, (lat, l.raw)
        else:
            assert abs(lat - l.latency_ms) <= (0.051 if l.latency_ms < 10 else 0.51), (lat, l.raw)


def text_capture(cap: Path, jsonl: Path) -> Path:
    txt = jsonl.with_suffix(".txt")
    assert txt.exists(), sorted(p.name for p in cap.iterdir())
    return txt


# --------------------------------------------------------------------------- a whole session


def test_swaks_session_every_line_parses_and_agrees_with_the_text_capture(tap, need, tmp_path,
                                                                          aiosmtpd):
    need("swaks", "jq")
    cap = tmp_path / "cap"
    t = tap(["-u", aiosmtpd.hostport, "-d", str(cap), "--format", "text,jsonl", "-v"])
    msg = make_message("jsonl agrees with text", to=RCPTS)
    rc, out, err = harness.swaks_send(t.hostport, FROM, RCPTS, msg, str(tmp_path),
                                      "--helo", "client.test")
    assert rc == 0, out + err
    got = aiosmtpd.wait_for_messages(1)[0]
    events = wait_session_jsonl(cap, 1)
    check_common_fields(events, 1)
    jsonl = jsonl_files(cap)[1]
    assert_agrees_with_text(events, text_capture(cap, jsonl))

    # The commands swaks sent and the replies it got, in order.
    commands = [payload(e) for e in of_kind(events, "command")]
    assert [c.split()[0] for c in commands] == [b"EHLO", b"MAIL", b"RCPT", b"RCPT", b"DATA",
                                                    b"QUIT"]
    assert all(c.endswith(b"\r\n") for c in commands)
    # The EHLO reply as swaks got it: smtptap's edit (STARTTLS offered), after the server's.
    (edit,) = of_kind(events, "edited_reply")
    assert edit["reply"] == {"code": 250, "edit": {"added": ["STARTTLS"], "removed": []}}, edit
    assert b"250-STARTTLS\r\n" in payload(edit) and "local" not in edit
    replies = of_kind(events, "reply")
    assert [r["reply"]["code"] for r in replies] == [220, 250, 250, 250, 250, 354, 250, 221]
    for r in replies:
        assert int(payload(r)[:3]) == r["reply"]["code"]
        assert r["dir"] == "s2c" and not r["tls"]
    assert payload(replies[0]).decode() == aiosmtpd.greeting + "\r\n"
    assert "latency_ms" not in replies[0]["reply"]  # the greeting answers no command
    assert all(r["reply"]["latency_ms"] > 0 for r in replies[1:])
    swaks_replies = [l for l in harness.swaks_replies(out) if re.match(r"\d{3} ", l)]
    assert [payload(r).decode().rstrip("\r\n").split("\r\n")[-1] for r in replies] == \
        swaks_replies

    # Endpoints: swaks's address and our listener; the server and our address at the server.
    (start,) = of_kind(events, "start")
    first_info = of_kind(events, "info")[0]["text"]
    ep = start["endpoints"]
    assert first_info.startswith(f"{ep['client']} connected to {ep['listener']}"), first_info
    assert ep["listener"] == t.hostport
    (up,) = of_kind(events, "upstream")
    assert up["endpoints"] == {"server": aiosmtpd.hostport,
                               "local": harness.fmt_hostport(*got.peer[:2])}

    # The message: its lines (-v: all of them) are what aiosmtpd stored; the summary and
    # the delivery.
    assert message_bytes(events) == got.content
    (summary,) = of_kind(events, "message")
    assert summary["message"] == {"number": 1, "size": len(got.content),
                                  "lines": got.content.count(b"\n"),
                                  "sha256": hashlib.sha256(got.content).hexdigest()}
    (dl,) = of_kind(events, "delivery")
    assert dl["delivery"] == {"message": 1, "helo": "client.test",
                              "mail_from": f"MAIL FROM:<{FROM}>",
                              "rcpts": [f"RCPT TO:<{r}>" for r in RCPTS],
                              "reply": "250 2.0.0 OK queued as aio1\r\n", "code": 250}

    # The end: counters agree with the events.
    end = events[-1]["end"]
    assert end["commands"] == len(commands) and end["messages"] == 1
    assert end["seconds"] >= events[-1]["t"] - 0.001
    assert abs(end["server_wait_ms"] - sum(r["reply"].get("latency_ms", 0) for r in replies)) \
        < 0.01 * len(replies)
    assert end["bytes_up"] > len(got.content) and end["bytes_down"] > 0


def test_smtplib_binary_data_round_trips_through_line_b64(tap, need, tmp_path, aiosmtpd):
    need("jq")
    cap = tmp_path / "cap"
    t = tap(["-u", aiosmtpd.hostport, "-d", str(cap), "--format", "jsonl", "-v"])
    binary = bytes(range(1, 256)).replace(b"\r", b"").replace(b"\n", b"")
    msg = (b"Subject: binary\r\nContent-Type: application/octet-stream\r\n\r\n"
           b"caf\xe9 latin-1\r\n" b"Gr\xc3\xbc\xc3\x9fe utf-8\r\n" b"nul \x00 in the middle\r\n"
           b"\xff\xfe\xfd\r\n" b".leading dot\r\n" + binary + b"\r\n" b"\xc0\x80 overlong\r\n")
    refused = harness.smtplib_send(t.host, t.port, FROM, RCPTS, msg)
    assert refused == {}
    got = aiosmtpd.wait_for_messages(1)[0]
    assert got.content == msg
    events = wait_session_jsonl(cap, 1)
    check_common_fields(events, 1)
    assert [p.suffix for p in cap.iterdir()] == [".jsonl"]  # --format jsonl alone

    assert message_bytes(events) == msg
    for e in of_kind(events, "content"):
        b = payload(e)
        try:
            plain = b"\x00" not in b and b.decode("utf-8") is not None
        except UnicodeDecodeError:
            plain = False
        assert ("line" in e) == plain, e  # line exactly when the bytes are UTF-8 without NUL
    # -v shows every message line: the content events are the message's lines.
    shown = [payload(e) for e in of_kind(events, "content")]
    sent = msg[:-2].split(b"\r\n")
    assert shown == sent
    assert of_kind(events, "message")[0]["message"]["sha256"] == hashlib.sha256(msg).hexdigest()


def test_a_big_message_is_its_shown_lines_and_summary_not_its_bytes(tap, need, tmp_path,
                                                                    aiosmtpd):
    """Without -v a 4 MB message makes a few lines of jsonl: the lines the transcript shows
    and the summary; its bytes are eml's and pcap's (EV_BODY, EV_WIRE are not written)."""
    need("jq")
    cap = tmp_path / "cap"
    t = tap(["-u", aiosmtpd.hostport, "-d", str(cap), "--format", "jsonl,text"])
    line = b"x" * 76 + b"\r\n"
    msg = b"Subject: big\r\n\r\n" + line * (4 * 1024 * 1024 // len(line))
    assert harness.smtplib_send(t.host, t.port, FROM, RCPTS, msg) == {}
    got = aiosmtpd.wait_for_messages(1)[0]
    events = wait_session_jsonl(cap, 1)
    check_common_fields(events, 1)
    path = jsonl_files(cap)[1]
    assert path.stat().st_size < 64 * 1024, path.stat().st_size
    (summary,) = of_kind(events, "message")
    assert summary["message"]["size"] == len(got.content) == len(msg)
    assert summary["message"]["sha256"] == hashlib.sha256(msg).hexdigest()
    shown = of_kind(events, "content")
    assert 0 < len(shown) < 100 and message_bytes(events) == msg[:len(message_bytes(events))]
    assert_agrees_with_text(events, text_capture(cap, path))


def test_raw_8bit_commands_and_replies_round_trip(tap, need, tmp_path, aiosmtpd):
    need("jq")
    cap = tmp_path / "cap"
    # passthrough: smtptap adds no STARTTLS to the EHLO reply the client gets
    t = tap(["-u", aiosmtpd.hostport, "-d", str(cap), "--format", "jsonl",
             "--client-starttls", "passthrough"])
    sent, got = [b"EHLO client.test\r\n", b"NOOP caf\xe9\r\n", b"NOOP \xf0\x9f\x93\xa7\r\n",
                 b"HELP \x00x\r\n", b"QUIT\r\n"], []
    with RawSmtpClient("127.0.0.1", t.port) as c:
        got.append(b"\r\n".join(c.reply()) + b"\r\n")
        for cmd in sent:
            c.send(cmd)
            got.append(b"\r\n".join(c.reply()) + b"\r\n")
    events = wait_session_jsonl(cap, 1)
    check_common_fields(events, 1)
    assert [payload(e) for e in of_kind(events, "command")] == sent
    assert "line_b64" in of_kind(events, "command")[1]
    assert "line" in of_kind(events, "command")[2]  # valid UTF-8 stays readable
    assert "line_b64" in of_kind(events, "command")[3]
    assert [payload(e) for e in of_kind(events, "reply")] == got


def test_a_fault_and_a_lint_are_structured(tap, need, tmp_path, aiosmtpd):
    need("jq")
    cap = tmp_path / "cap"
    t = tap(["-u", "plain:" + aiosmtpd.hostport, "-d", str(cap), "--format", "text,jsonl",
             "--fault", "RCPT *@busy.example: reply 450 4.2.0 Busy, try later"])
    with RawSmtpClient("127.0.0.1", t.port) as c:
        assert c.code() == 220
        assert c.cmd(b"EHLO client.test")[-1].startswith(b"250 ")
        assert c.cmd(b"MAIL FROM:<a@example.org>")[-1].startswith(b"250 ")
        assert c.cmd(b"RCPT TO:<x@busy.example>") == [b"450 4.2.0 Busy, try later"]
        line_at = c.sent  # the offset of the next line in the client's stream
        c.send(b"NOOP bare LF\n")
        assert c.reply()[-1].startswith(b"250")
        assert c.cmd(b"QUIT")[-1].startswith(b"221")
    events = wait_session_jsonl(cap, 1)
    check_common_fields(events, 1)
    path = jsonl_files(cap)[1]
    assert_agrees_with_text(events, text_capture(cap, path))
    (fault,) = of_kind(events, "fault")
    assert fault["fault"]["action"] == "reply" and fault["fault"]["rule"], fault
    assert fault["text"].startswith("fault ")
    (local,) = [e for e in of_kind(events, "reply") if e.get("local")]
    assert payload(local) == b"450 4.2.0 Busy, try later\r\n"
    assert events.index(fault) < events.index(local)
    lints = [e for e in of_kind(events, "lint") if "bare LF" in e["text"]]
    assert len(lints) == 1, of_kind(events, "lint")
    # the rule id, the side and the offset of the LF itself, as for the stateful rules
    assert lints[0]["dir"] == "c2s", lints[0]
    assert lints[0]["lint"] == {"id": "bare-lf-line-ending", "offset": line_at + 12}, lints[0]
    for e in of_kind(events, "lint"):  # every finding has its rule id
        assert isinstance(e["lint"]["id"], str) and e["lint"]["id"], e


def test_smtptaps_own_replies_have_their_code(tap, tmp_path, aiosmtpd):
    """`jq 'select(.reply.code >= 400)'` must find the replies smtptap wrote itself too."""
    cap = tmp_path / "cap"
    t = tap(["-u", aiosmtpd.hostport, "-d", str(cap), "--format", "jsonl",
             "--fault", "RCPT *@busy.example: reply 450 4.2.0 Busy, try later"])
    with RawSmtpClient("127.0.0.1", t.port) as c:
        assert c.code() == 220
        assert c.cmd(b"EHLO client.test")[-1].startswith(b"250 ")
        assert c.cmd(b"MAIL FROM:<a@example.org>")[-1].startswith(b"250 ")
        assert c.cmd(b"RCPT TO:<x@busy.example>") == [b"450 4.2.0 Busy, try later"]
        assert c.cmd(b"QUIT")[-1].startswith(b"221")
    events = wait_session_jsonl(cap, 1)
    (local,) = [e for e in of_kind(events, "reply") if e.get("local")]
    assert local.get("reply", {}).get("code") == 450, local


# --------------------------------------------------------------------------- TLS


def test_starttls_session_has_the_tls_facts_of_both_legs(tap, need, tmp_path):
    need("swaks", "jq")
    ca_dir, ca_pem = harness.smtptap_ca(tmp_path)
    test_ca = harness.CertAuthority(str(tmp_path))
    cert, key = test_ca.issue(["localhost"])
    cap = tmp_path / "cap"
    with harness.AiosmtpdServer(ssl_context=harness.tls_server_context(cert, key)) as srv:
        t = tap(["--ca-dir", ca_dir, "--client-starttls", "offer", "-u",
                 f"tls:localhost:{srv.port}", "--upstream-ca", test_ca.cert_path,
                 "-d", str(cap), "--format", "text,jsonl", "-v"])
        msg = make_message("jsonl STARTTLS", to=RCPTS)
        rc, out, err = harness.swaks_send(t.hostport, FROM, RCPTS, msg, str(tmp_path), "--tls",
                                          "--tls-verify", "--tls-ca-path", ca_pem,
                                          "--tls-sni", "localhost")
        assert rc == 0, out + err
        got = srv.wait_for_messages(1)[0]
    events = wait_session_jsonl(cap, 1)
    check_common_fields(events, 1)
    assert_agrees_with_text(events, text_capture(cap, jsonl_files(cap)[1]))

    shakes = [e for e in of_kind(events, "info") if "handshake" in e]
    legs = {e["handshake"]["leg"]: e for e in shakes}
    assert sorted(legs) == ["client", "upstream"] and len(shakes) == 2, shakes
    u = legs["upstream"]
    assert u["dir"] == "s2c" and u["text"].startswith("upstream TLS: ")
    assert u["handshake"]["version"] == "TLSv1.3" and u["handshake"]["cipher"].startswith("TLS_")
    assert u["handshake"]["peer_subject"] == "CN=localhost"
    assert u["handshake"]["peer_issuer"] == f"CN={TEST_CA_CN}"
    assert u["handshake"]["peer_sha256"] == harness.cert_sha256(cert)
    assert u["handshake"]["verify"] == "verified"
    assert u["handshake"]["sni"] == "localhost"
    c = legs["client"]
    assert c["dir"] == "c2s" and c["text"].startswith("client TLS: ")
    assert c["handshake"]["version"] == "TLSv1.3" and c["handshake"]["sni"] == "localhost"
    assert c["handshake"]["cipher"].startswith("TLS_")
    for k in ("version", "cipher", "sni", "peer_subject", "peer_issuer", "peer_sha256",
              "verify"):
        assert k in c["handshake"], c  # every fact named, "" or null when there is none

    # tls turns true after client_tls (itself after smtptap's 220 to STARTTLS) for good.
    kinds = [e["kind"] for e in events]
    i = kinds.index("client_tls")
    assert kinds.count("client_tls") == 1
    assert not [e for e in events[:i + 1] if e["tls"]], events
    assert not [e for e in events[i + 1:] if not e["tls"]], events
    before = [payload(e) for e in of_kind(events[:i], "command")]
    assert [b.split(b" ")[0].rstrip(b"\r\n") for b in before] == [b"EHLO", b"STARTTLS"]
    ready = [e for e in of_kind(events[:i], "reply") if e.get("local")]
    assert [payload(e) for e in ready] == [b"220 2.0.0 Ready to start TLS\r\n"]
    assert message_bytes(events) == got.content


def test_implicit_tls_client_is_in_tls_from_the_first_event(tap, need, tmp_path, aiosmtpd):
    need("jq")
    ca_dir, ca_pem = harness.smtptap_ca(tmp_path)
    cap = tmp_path / "cap"
    t = tap(["--ca-dir", ca_dir, "-u", aiosmtpd.hostport, "-d", str(cap), "--format", "jsonl"],
            listen="tls:127.0.0.1:0")
    ctx = ssl.create_default_context(cafile=ca_pem)
    with smtplib.SMTP_SSL(t.host, t.port, context=ctx, local_hostname="client.test",
                          timeout=15) as s:
        s.sendmail(FROM, RCPTS, make_message("implicit TLS"))
        s.quit()
    events = wait_session_jsonl(cap, 1)
    check_common_fields(events, 1)
    assert not of_kind(events, "client_tls")
    shakes = [e for e in of_kind(events, "info") if "handshake" in e]
    assert [e["handshake"]["leg"] for e in shakes] == ["client"]
    assert all(e["tls"] for e in events if e["kind"] in ("command", "reply"))


# --------------------------------------------------------------------------- --redact


def secret_forms(secret: bytes) -> List[str]:
    """The secret as it is, and every base64 text that can only come from it: for each
    alignment of the secret in a base64 stream, the groups made of its bytes alone."""
    forms = [] if b"\0" in secret else [secret.decode()]
    for k in range(3):
        enc = base64.b64encode(b"\0" * k + secret + b"\0\0\0").decode()
        first = (k + 2) // 3          # the first group holding none of the prefix
        last = (k + len(secret)) // 3  # groups before this one hold none of the suffix
        forms.append(enc[4 * first:4 * last])
    return [f for f in forms if len(f) >= 4]


def decoded_b64_values(obj) -> List[bytes]:
    """Every *_b64 string anywhere in OBJ, decoded."""
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k.endswith("_b64") and isinstance(v, str):
                out.append(base64.b64decode(v))
            elif k.endswith("_b64") and isinstance(v, list):
                out += [base64.b64decode(x) for x in v if isinstance(x, str)]
            else:
                out += decoded_b64_values(v)
    elif isinstance(obj, list):
        for v in obj:
            out += decoded_b64_values(v)
    return out


@pytest.mark.parametrize("decode", [False, True], ids=["redact", "redact+decode-auth"])
def test_redact_leaves_no_password_in_any_form(tap, need, tmp_path, decode):
    need("swaks", "jq")
    cap = tmp_path / "cap"
    with harness.AiosmtpdServer(auth=True) as srv:
        t = tap(["-u", srv.hostport, "-d", str(cap), "--format", "text,jsonl", "--redact",
                 *(["--decode-auth"] if decode else [])])
        for mech in ("PLAIN", "LOGIN"):
            rc, out, err = harness.swaks(t.hostport, "--from", FROM, "--to", RCPTS[0],
                                         "--auth", mech, "--auth-user", USER,
                                         "--auth-password", PASSWORD)
            assert rc == 0, out + err
        with smtplib.SMTP(t.host, t.port, local_hostname="client.test", timeout=15) as s:
            s.login(USER, PASSWORD)
            s.sendmail(FROM, RCPTS, make_message("after AUTH"))
            s.quit()
        for sid in (1, 2, 3):
            wait_session_jsonl(cap, sid)
    t.stop()
    secret = PASSWORD.encode()
    forms = secret_forms(secret) + secret_forms(f"\0{USER}\0{PASSWORD}".encode()) + \
        [base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode(),
         base64.b64encode(secret).decode()]
    files = sorted(cap.glob("*.jsonl"))
    assert len(files) == 3
    rc, out, err = harness.run(["grep", "-c", "-F", *sum((["-e", f] for f in forms), []),
                                *map(str, files)])
    assert rc == 1, f"a secret form is in the jsonl:\n{out}"  # grep: 1 = nothing found
    redacted = 0
    for p in files:
        text = p.read_text()
        for f in forms:
            assert f not in text, (f, p.name)
        events = jq_check(p)
        for e in events:
            for b in decoded_b64_values(e):
                assert secret not in b, e
            if e["kind"] == "command":
                redacted += b"<redacted>" in payload(e)
        if decode:
            assert any(e["kind"] == "auth" and "<redacted" in e["text"] for e in events)
            # structured too, and masked there as in the text
            auth = [e["auth"] for e in events if e["kind"] == "auth"]
            assert {"step": "outcome", "outcome": "accepted", "code": 235, "user": USER} \
                .items() <= auth[-1].items(), auth
            pw = [a for a in auth if "password" in a["fields"]]
            assert pw and all(a["fields"]["password"] == "<redacted>" and "password" in a["secret"]
                              for a in pw), pw
    assert redacted >= 3  # PLAIN initial response, LOGIN password line, smtplib's PLAIN


def test_decoded_auth_is_structured(tap, need, tmp_path):
    """--decode-auth: each "##" line is an "auth" event whose facts a jq filter can use
    (mechanism, step, user, the decoded fields, which are secret, the outcome and code),
    agreeing with its text; swaks with PLAIN and LOGIN, and a wrong password, against the
    built-in sink with a user list (it checks passwords)."""
    need("swaks", "jq")
    cap = tmp_path / "cap"
    ini = tmp_path / "users.ini"
    ini.write_text(f"[sink]\nusers = {USER}:{PASSWORD}\n")
    t = tap(["-c", str(ini), "-d", str(cap), "--format", "jsonl", "--decode-auth"])
    for mech in ("PLAIN", "LOGIN"):
        rc, out, err = harness.swaks(t.hostport, "--from", FROM, "--to", RCPTS[0],
                                     "--auth", mech, "--auth-user", USER,
                                     "--auth-password", PASSWORD)
        assert rc == 0, out + err
    rc, out, err = harness.swaks(t.hostport, "--from", FROM, "--to", RCPTS[0], "--auth",
                                 "PLAIN", "--auth-user", USER, "--auth-password", "wrong")
    assert rc != 0 and "535" in out, out + err
    for sid in (1, 2, 3):
        wait_session_jsonl(cap, sid)
    t.stop()
    plain, login, wrong = (jq_check(p) for p in sorted(cap.glob("*.jsonl"),
                                                       key=lambda p: int(p.name.split("-")[1])))

    def auth_of(events):
        got = [e for e in events if e["kind"] == "auth"]
        for e in got:  # the facts say what the text says
            a = e["auth"]
            assert e["text"].startswith(f"AUTH {a['mechanism']}"), e
            for name, value in a["fields"].items():
                assert f'"{value}"' in e["text"], (name, value, e["text"])
        return [e["auth"] for e in got]

    a = auth_of(plain)
    assert [x["step"] for x in a] == ["command", "outcome"], a
    assert a[0]["mechanism"] == "PLAIN" and a[0]["user"] == USER
    assert a[0]["fields"] == {"authzid": "", "authcid": USER, "password": PASSWORD}, a[0]
    assert a[0]["secret"] == ["password"]
    assert {"outcome": "accepted", "code": 235}.items() <= a[1].items(), a[1]

    a = auth_of(login)
    steps = [x["step"] for x in a]
    assert steps[0] == "command" and steps[-1] == "outcome", steps
    assert [x["fields"].get("prompt") for x in a if x["step"] == "challenge"] == \
        ["Username:", "Password:"], a
    responses = [x["fields"] for x in a if x["step"] == "response"]
    assert responses == [{"user": USER}, {"password": PASSWORD}], responses
    assert a[-1]["user"] == USER and a[-1]["outcome"] == "accepted"

    a = auth_of(wrong)
    assert a[-1]["outcome"] == "rejected" and a[-1]["code"] == 535, a[-1]
    assert a[0]["fields"]["password"] == "wrong"
    # jq selects on the facts: who logged in, and how it went
    rc, out, err = harness.run(["jq", "-r", 'select(.kind == "auth" and .auth.step == "outcome")'
                                " | \"\\(.auth.user) \\(.auth.outcome)\"",
                                *map(str, sorted(cap.glob("*.jsonl")))])
    assert rc == 0, err
    assert sorted(out.split("\n")[:-1]) == [f"{USER} accepted", f"{USER} accepted",
                                            f"{USER} rejected"], out


# --------------------------------------------------------------------------- stdout


def read_lines_until(proc: subprocess.Popen, pred, timeout: float) -> List[str]:
    """Lines proc writes on stdout until pred(lines) holds (proc keeps running)."""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    buf, lines = b"", []
    deadline = time.monotonic() + timeout
    while not pred(lines):
        left = deadline - time.monotonic()
        assert left > 0, f"timed out; read so far: {lines}"
        if not sel.select(left):
            continue
        chunk = os.read(proc.stdout.fileno(), 65536)
        assert chunk, f"stdout closed; read so far: {lines}"
        buf += chunk
        *done, buf = buf.split(b"\n")
        lines += [d.decode() for d in done]
    sel.close()
    return lines


def test_stdout_streams_every_session_to_jq_live(need, tmp_path, aiosmtpd):
    need("swaks", "jq")
    port = harness.free_port()
    tap_cmd = [harness.smtptap_bin(), "-l", f"127.0.0.1:{port}", "--color=never",
               "-u", aiosmtpd.hostport, "-d", "-", "--format", "jsonl"]
    err_path = tmp_path / "stderr.txt"
    with open(err_path, "wb") as err_file:
        tap_proc = subprocess.Popen(tap_cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=err_file)
        jq = subprocess.Popen(["jq", "-c", "--unbuffered", "."],
                              stdin=tap_proc.stdout, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
        tap_proc.stdout.close()  # jq holds the pipe now
        try:
            deadline = time.monotonic() + 10  # not wait_port: its probe would be a session
            while "listening on" not in err_path.read_text():
                assert time.monotonic() < deadline and tap_proc.poll() is None, \
                    err_path.read_text()
                time.sleep(0.05)
            for n in (1, 2):
                rc, out, err = harness.swaks(f"127.0.0.1:{port}", "--from", FROM, "--to",
                                             RCPTS[0], "--helo", f"client{n}.test")
                assert rc == 0, out + err
                # jq prints the session's last event while smtptap still runs.
                lines = read_lines_until(
                    jq, lambda ls: any(json.loads(l)["kind"] == "end" for l in ls), 10)
                assert tap_proc.poll() is None
                evs = [json.loads(l) for l in lines]
                assert {e["session"] for e in evs} == {n}
                assert [e["kind"] for e in evs][0] == "start" and evs[-1]["kind"] == "end"
                assert f"EHLO client{n}.test\r\n" in [e["line"] for e in evs
                                                     if e["kind"] == "command"]
        finally:
            tap_proc.send_signal(signal.SIGTERM)
            rc = tap_proc.wait(10)
            jq_out, jq_err = jq.communicate(timeout=10)
    assert rc == 0
    assert jq.returncode == 0, jq_err
    assert jq_out == b""  # nothing after the two sessions
    err = err_path.read_text()
    harness.assert_no_sanitizer_report(err)
    # The live text transcript went to stderr, and only there.
    assert re.search(r"^#1 \+\S+  -> EHLO client1\.test$", err, re.M), err
    assert re.search(r"^#2 \+\S+  -> EHLO client2\.test$", err, re.M), err


def test_stdout_has_only_json_and_stderr_only_text(tap, need, tmp_path, aiosmtpd):
    need("swaks")
    t = tap(["-u", aiosmtpd.hostport, "-d", "-", "--format", "jsonl"])
    rc, out, err = harness.swaks(t.hostport, "--from", FROM, "--to", RCPTS[0])
    assert rc == 0, out + err
    t.wait_session_end(1)
    deadline = time.monotonic() + 5
    while '"kind":"end"' not in t.stdout():
        assert time.monotonic() < deadline, t.stdout()
        time.sleep(0.05)
    t.stop()
    events = parse_jsonl(t.stdout(), "stdout")
    check_common_fields(events, 1)
    assert not re.search(r"^#\d+ \+", t.stdout(), re.M)
    assert not re.search(r'^\{"ts"', t.transcript(), re.M)
    assert len(t.lines(1)) > 5 and f"upstream {aiosmtpd.hostport}, at " in t.lines(1)[0].text


# --------------------------------------------------------------------------- files


def test_files_are_private_and_named_like_the_text_capture(tap, need, tmp_path, aiosmtpd):
    need("swaks")
    cap = tmp_path / "new" / "cap"  # created by smtptap
    t = tap(["-u", aiosmtpd.hostport, "-d", str(cap), "--format", "jsonl,text"])
    rc, out, err = harness.swaks(t.hostport, "--from", FROM, "--to", RCPTS[0])
    assert rc == 0, out + err
    wait_session_jsonl(cap, 1)
    assert stat.S_IMODE(cap.stat().st_mode) == 0o700
    (path,) = cap.glob("*.jsonl")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    m = JSONL_NAME_RE.match(path.name)
    assert m and m.group(2) == "1" and m.group(3).startswith("127.0.0.1_"), path.name
    assert path.with_suffix(".txt").exists()


@pytest.mark.parametrize("fault", [None, "RCPT b@*: delay 30ms"])
def test_the_files_have_each_reply_before_the_client_does(tap, tmp_path, aiosmtpd, fault):
    """The writers run on a thread of their own; a reply goes to the client only once the
    files hold it (and the eml its message). Checked with no polling, right after each
    reply, 15 times over, pipelined, with and without a fault that holds a reply back."""
    cap = tmp_path / "cap"
    t = tap(["-u", aiosmtpd.hostport, "-d", str(cap), "--format", "jsonl,eml"]
            + (["--fault", fault] if fault else []))
    with RawSmtpClient("127.0.0.1", t.port) as c:
        assert c.code() == 220
        assert c.cmd(b"EHLO client.test")[-1].startswith(b"250 ")
        (path,) = jsonl_files(cap).values()
        for n in range(1, 16):
            c.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n"
                   b"RCPT TO:<c@example.net>\r\nDATA\r\n")
            got = [c.reply()[-1] for _ in range(4)]
            assert [g[:3] for g in got] == [b"250", b"250", b"250", b"354"], got
            events = parse_jsonl(path.read_text(), "jsonl right after the 354")
            replies = [payload(e) for e in of_kind(events, "reply")]
            assert replies[-4:] == [g + b"\r\n" for g in got], replies[-4:]
            c.send(b"Subject: %d\r\n\r\nbody\r\n.\r\n" % n)
            assert c.reply()[-1].startswith(b"250 ")
            emls = sorted(cap.glob("*.eml"))
            assert len(emls) == n, f"message {n}: {len(emls)} eml files when the 250 came"
            events = parse_jsonl(path.read_text(), "jsonl right after the 250")
            assert len(of_kind(events, "delivery")) == n
        assert c.cmd(b"QUIT")[-1].startswith(b"221")


def test_readable_while_the_session_runs(tap, need, tmp_path, aiosmtpd):
    cap = tmp_path / "cap"
    t = tap(["-u", aiosmtpd.hostport, "-d", str(cap), "--format", "jsonl"])
    with RawSmtpClient("127.0.0.1", t.port) as c:
        assert c.code() == 220
        assert c.cmd(b"EHLO client.test")[-1].startswith(b"250 ")
        assert c.cmd(b"MAIL FROM:<a@example.org>")[-1].startswith(b"250 ")
        # The session is open: what a tail -f or jq sees now, up to the last reply.
        (path,) = jsonl_files(cap).values()
        events = parse_jsonl(path.read_text(), "jsonl of a running session")
        kinds = [e["kind"] for e in events]
        assert kinds[0] == "start" and "end" not in kinds
        assert [payload(e) for e in of_kind(events, "command")] == \
            [b"EHLO client.test\r\n", b"MAIL FROM:<a@example.org>\r\n"]
        assert payload(of_kind(events, "reply")[-1]).startswith(b"250 2.1.0 Sender")
        assert c.cmd(b"QUIT")[-1].startswith(b"221")
    assert wait_session_jsonl(cap, 1)[-1]["kind"] == "end"


def test_complete_after_sigterm_with_a_message_in_flight(tap, need, tmp_path, aiosmtpd):
    need("jq")
    cap = tmp_path / "cap"
    t = tap(["-u", aiosmtpd.hostport, "-d", str(cap), "--format", "jsonl", "-v"])
    with RawSmtpClient("127.0.0.1", t.port) as c:
        assert c.code() == 220
        assert c.cmd(b"EHLO client.test")[-1].startswith(b"250 ")
        assert c.cmd(b"MAIL FROM:<a@example.org>")[-1].startswith(b"250")
        assert c.cmd(b"RCPT TO:<b@example.net>")[-1].startswith(b"250")
        assert c.cmd(b"DATA")[-1].startswith(b"354")
        c.send(b"Subject: SIGTERM\r\n\r\nhalf")
        t.proc.send_signal(signal.SIGTERM)
        t.wait_for(r"SIGTERM|Terminated")
        c.send(b" a message\r\n.\r\n")
        assert c.reply()[-1].startswith(b"250 ")
        assert c.cmd(b"QUIT")[-1].startswith(b"221")
    assert t.wait_exit(10) == 0
    (path,) = jsonl_files(cap).values()
    events = jq_check(path)
    check_common_fields(events, 1)
    assert of_kind(events, "delivery")[0]["delivery"]["code"] == 250
    assert message_bytes(events) == \
        b"Subject: SIGTERM\r\n\r\nhalf a message\r\n"


def test_complete_after_a_second_sigterm_cuts_the_session(tap, need, tmp_path, aiosmtpd):
    need("jq")
    cap = tmp_path / "cap"
    t = tap(["-u", aiosmtpd.hostport, "-d", str(cap), "--format", "jsonl,text"])
    with RawSmtpClient("127.0.0.1", t.port) as c:
        assert c.code() == 220
        assert c.cmd(b"EHLO client.test")[-1].startswith(b"250 ")
        t.proc.send_signal(signal.SIGTERM)
        t.wait_for(r"SIGTERM|Terminated")
        t.proc.send_signal(signal.SIGTERM)  # do not wait for the client
        assert t.wait_exit(10) == 0
    (path,) = jsonl_files(cap).values()
    events = jq_check(path)
    check_common_fields(events, 1)
    assert_agrees_with_text(events, path.with_suffix(".txt"))


# --------------------------------------------------------------------------- IPv6


def test_ipv6_endpoints_are_bracketed(tap, need, tmp_path):
    ok, why = harness.has_ipv6_loopback()
    if not ok:
        pytest.skip(why)
    cap = tmp_path / "cap"
    with harness.AiosmtpdServer(host="::1") as srv:
        t = tap(["-u", srv.hostport, "-d", str(cap), "--format", "jsonl"], listen="[::1]:0")
        with RawSmtpClient("::1", t.port) as c:
            assert c.code() == 220
            assert c.cmd(b"QUIT")[-1].startswith(b"221")
        events = wait_session_jsonl(cap, 1)
    ep = of_kind(events, "start")[0]["endpoints"]
    assert re.fullmatch(r"\[::1\]:\d+", ep["client"]) and ep["listener"] == t.hostport, ep
    up = of_kind(events, "upstream")[0]["endpoints"]
    assert up["server"] == srv.hostport and re.fullmatch(r"\[::1\]:\d+", up["local"]), up
