"""smtptap alone (built-in sink, the default upstream) with real clients.

What a user sees: the client's exit status and the live transcript lines
(notes/contract-for-tests.md, "Built-in sink" and "Live transcript")."""

import hashlib
import re
import smtplib
from email.message import EmailMessage

import pytest

import harness
from harness import RawSmtpClient, make_message

SINK_CAPS = ["PIPELINING", "SIZE", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "CHUNKING"]
# Contract: "message 1: 1234 bytes, 20 lines, sha256 <64 hex>", optionally followed by a
# parenthetical note (e.g. "(15966 lines not shown, -v shows them)").  Parsing also
# tolerates a note after the line count so that such a deviation fails one test
# (test_smtplib_big_message checks the contract's form), not every test.
SUMMARY_RE = re.compile(r"^message (\d+): (\d+) bytes, (\d+) lines?(?: \([^)]*\))?, "
                        r"sha256 ([0-9a-f]{64})(?: \([^)]*\))?$")
QUEUED_CONTRACT = "250 2.0.0 Ok: queued as "  # exact prefix, checked in test_raw_session_byte_counts
END_RE = re.compile(r"^session ended after \d+(\.\d+)?s: \d+ commands?, (\d+) messages?, "
                    r"(\d+) bytes up, (\d+) bytes down; \d+ ms waiting for the server, \d+ ms for the client$")


def texts(lines, marker):
    """Texts of one marker's lines; known verbs of client lines upper-cased."""
    return [harness.norm_cmd(l.text) if l.marker == " ->" else l.text
            for l in lines if l.marker == marker]


def check_sink_session(t, sid, *, ehlo=None, messages=1):
    """The transcript of one complete session against the built-in sink."""
    t.wait_session_end(sid)
    lines = t.lines(sid)
    assert lines, t.transcript()
    first = lines[0]
    assert first.marker == "==" and re.match(
        rf"^127\.0\.0\.1:\d+ connected to 127\.0\.0\.1:{t.port}, upstream sink\b", first.text), first.raw
    replies = [l for l in lines if l.is_reply]
    assert replies and re.match(r"^220 \S+ ESMTP smtptap sink\b", replies[0].text), \
        f"first reply should be the sink's greeting: {replies[:1]}"
    cmds = texts(lines, " ->")
    ehlos = [c for c in cmds if c.startswith("EHLO ")]
    assert ehlos, f"no ' -> EHLO' line:\n{t.transcript()}"
    if ehlo:
        assert ehlos[0] == f"EHLO {ehlo}", ehlos
    ehlo_reply = []
    for l in lines[lines.index(next(l for l in lines if l.is_command
                                    and harness.norm_cmd(l.text) == ehlos[0])) + 1:]:
        if l.is_reply:
            ehlo_reply.append(l.text)
            if re.match(r"^\d{3} ", l.text) or re.match(r"^\d{3}$", l.text):
                break
    assert ehlo_reply and all(r.startswith("250") for r in ehlo_reply), ehlo_reply
    assert len(ehlo_reply) > 1, f"EHLO reply should be multi-line, one transcript line each: {ehlo_reply}"
    for cap in SINK_CAPS:
        assert any(re.match(rf"^250[- ]{cap}\b", r) for r in ehlo_reply), f"{cap} not in {ehlo_reply}"
    auth = [r for r in ehlo_reply if re.match(r"^250[- ]AUTH ", r)]
    assert auth and {"PLAIN", "LOGIN", "CRAM-MD5"} <= set(auth[0][9:].split()), ehlo_reply
    sums = [SUMMARY_RE.match(l.text) for l in lines if l.marker == "=="]
    sums = [m for m in sums if m]
    assert [int(m.group(1)) for m in sums] == list(range(1, messages + 1)), \
        f"expected {messages} message summary line(s):\n{t.transcript()}"
    finals = [r.text for r in replies if re.match(r"^\d{3}( |$)", r.text)]
    queued = [r for r in finals if re.match(r"^250 2\.0\.0 Ok\b.*\bqueued as \S+", r)]
    assert len(queued) == messages, finals
    end = lines[-1]
    m = END_RE.match(end.text)
    assert end.marker == "==" and m, f"last line of session {sid} should be the end line: {end.raw}"
    assert int(m.group(2)) == messages, end.raw
    return lines, sums


def summary_for(content: bytes):
    return (len(content), content.count(b"\n"), hashlib.sha256(content).hexdigest())


# ----------------------------------------------------------------------------- swaks

def test_swaks_plain(tap, need):
    need("swaks")
    t = tap()
    rc, out, err = harness.swaks(t.hostport, "--to", "bob@example.net", "--from", "alice@example.org",
                                 "--ehlo", "swaks.client.test")
    assert rc == 0, f"swaks rc {rc}\n{out}\n{err}"
    lines, _ = check_sink_session(t, 1, ehlo="swaks.client.test")
    cmds = texts(lines, " ->")
    assert "MAIL FROM:<alice@example.org>" in cmds and "RCPT TO:<bob@example.net>" in cmds
    assert "DATA" in cmds and "QUIT" in cmds
    # DATA content shows (headers first)
    assert any(c.startswith("Subject: test") for c in cmds), cmds
    # the transcript's replies are the replies swaks received, in the same order, except
    # the STARTTLS that smtptap adds to the EHLO reply by default (said in an == line)
    received = harness.swaks_replies(out)
    assert "250-STARTTLS" in received, out
    assert texts(lines, "<- ") == [r for r in received if r != "250-STARTTLS"]
    assert "smtptap offers STARTTLS to the client (added to the EHLO reply)" in texts(lines, "=="), \
        t.transcript()
    finals = [r for r in texts(lines, "<- ") if re.match(r"^\d{3}( |$)", r)]
    assert [r[:3] for r in finals] == ["220", "250", "250", "250", "354", "250", "221"], finals


def test_swaks_pipeline(tap, need):
    need("swaks")
    t = tap()
    rc, out, err = harness.swaks(t.hostport, "--pipeline", "--from", "alice@example.org", "--to",
                                 "r1@example.net,r2@example.net,r3@example.net")
    assert rc == 0, f"swaks rc {rc}\n{out}\n{err}"
    assert "PIPELINING" in out
    lines, _ = check_sink_session(t, 1)
    cmds = [c for c in texts(lines, " ->") if re.match(r"^(MAIL|RCPT|DATA$)", c)]
    assert cmds == ["MAIL FROM:<alice@example.org>", "RCPT TO:<r1@example.net>",
                    "RCPT TO:<r2@example.net>", "RCPT TO:<r3@example.net>", "DATA"], cmds
    received = harness.swaks_replies(out)  # less the STARTTLS smtptap offers by default
    assert texts(lines, "<- ") == [r for r in received if r != "250-STARTTLS"], received


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_swaks_auth_any_credentials(tap, need, mech):
    need("swaks")
    t = tap()
    rc, out, err = harness.swaks(t.hostport, "--to", "bob@example.net", "--auth", mech,
                                 "--auth-user", "nobody-special", "--auth-password", "wrong-on-purpose")
    assert rc == 0, f"swaks --auth {mech} rc {rc}\n{out}\n{err}"
    lines, _ = check_sink_session(t, 1)
    assert any(c.startswith(f"AUTH {mech}") for c in texts(lines, " ->")), texts(lines, " ->")
    assert any(re.match(r"^235\b", r) for r in texts(lines, "<- ")), texts(lines, "<- ")


# ----------------------------------------------------------------------------- curl, msmtp

def test_curl(tap, need, tmp_path):
    need("curl")
    t = tap()
    msg = make_message("via curl")
    f = tmp_path / "msg.eml"
    f.write_bytes(msg)
    rc, out, err = harness.curl_send("127.0.0.1", t.port, "alice@example.org",
                                     ["bob@example.net", "carol@example.net"], str(f))
    assert rc == 0, f"curl rc {rc}\n{err}"
    lines, sums = check_sink_session(t, 1, ehlo="client.test")
    cmds = texts(lines, " ->")
    assert "RCPT TO:<bob@example.net>" in cmds and "RCPT TO:<carol@example.net>" in cmds, cmds
    assert "Subject: via curl" in cmds


def test_msmtp(tap, need, tmp_path):
    need("msmtp")
    t = tap()
    msg = make_message("via msmtp")
    rc, out, err = harness.msmtp_send("127.0.0.1", t.port, "alice@example.org", ["bob@example.net"],
                                      msg, str(tmp_path))
    assert rc == 0, f"msmtp rc {rc}\n{out}\n{err}"
    lines, sums = check_sink_session(t, 1, ehlo="client.test")
    assert "Subject: via msmtp" in texts(lines, " ->")
    assert (int(sums[0].group(2)), int(sums[0].group(3)), sums[0].group(4)) == summary_for(msg), \
        f"summary does not describe the {len(msg)}-byte message msmtp sent: {sums[0].group(0)}"


# ----------------------------------------------------------------------------- smtplib

def test_smtplib_sendmail_summary_is_exact(tap):
    t = tap()
    msg = make_message("via smtplib")
    refused = harness.smtplib_send("127.0.0.1", t.port, "alice@example.org", ["bob@example.net"], msg)
    assert refused == {}
    lines, sums = check_sink_session(t, 1, ehlo="client.test")
    n, nl, sha = summary_for(msg)
    assert (int(sums[0].group(2)), int(sums[0].group(3)), sums[0].group(4)) == (n, nl, sha), \
        sums[0].group(0)


def test_smtplib_send_message_twice_in_one_session(tap):
    t = tap()
    with smtplib.SMTP("127.0.0.1", t.port, local_hostname="client.test", timeout=20) as s:
        for i in (1, 2):
            m = EmailMessage()
            m["From"] = "alice@example.org"
            m["To"] = "bob@example.net, carol@example.net"
            m["Subject"] = f"send_message number {i}"
            m.set_content(f"body {i}\n")
            assert s.send_message(m) == {}
        assert s.quit()[0] == 221
    lines, sums = check_sink_session(t, 1, ehlo="client.test", messages=2)
    cmds = texts(lines, " ->")
    assert "Subject: send_message number 1" in cmds and "Subject: send_message number 2" in cmds


def test_smtplib_big_message(tap):
    t = tap()
    body = [f"line {i:06d} " + "x" * 60 for i in range(16000)]  # ~1.1 MB
    msg = make_message("big one", body_lines=body)
    refused = harness.smtplib_send("127.0.0.1", t.port, "alice@example.org", ["bob@example.net"], msg)
    assert refused == {}
    lines, sums = check_sink_session(t, 1)
    n, nl, sha = summary_for(msg)
    content_lines = [c for c in texts(lines, " ->") if c.startswith("line ")]
    assert len(content_lines) < 1000, \
        f"DATA content should be shown up to a bound, {len(content_lines)} body lines shown"
    assert (int(sums[0].group(2)), int(sums[0].group(3)), sums[0].group(4)) == (n, nl, sha)
    # the contract's format, also when lines were left out of the transcript: the fields
    # in the contract's order; a note may only follow the hash
    assert re.match(rf"^message 1: {n} bytes, {nl} lines, sha256 {sha}( \([^)]*\))?$",
                    sums[0].group(0)), sums[0].group(0)


# ----------------------------------------------------------------------------- raw protocol

def test_bad_sequence_and_local_commands(tap):
    t = tap()
    with smtplib.SMTP("127.0.0.1", t.port, local_hostname="client.test", timeout=20) as s:
        s.ehlo()
        assert s.docmd("RCPT", "TO:<bob@example.net>")[0] == 503, "RCPT before MAIL"
        assert s.docmd("DATA")[0] == 503, "DATA before MAIL"
        assert s.docmd("NOOP")[0] == 250
        assert s.docmd("VRFY", "bob")[0] == 252
        assert s.docmd("FROBNICATE", "now")[0] == 500
        assert s.docmd("MAIL", "FROM:<alice@example.org>")[0] == 250
        assert s.docmd("RSET")[0] == 250
        assert s.docmd("RCPT", "TO:<bob@example.net>")[0] == 503, "RCPT after RSET"
        assert s.quit()[0] == 221
    t.wait_session_end(1)
    lines = t.lines(1)
    d = harness.dialog(lines)
    pairs = list(zip([x for k, x in d if k == "C"], [x for k, x in d if k == "R"][1:]))
    want = [("EHLO client.test", "250"), ("RCPT TO:<bob@example.net>", "503"), ("DATA", "503"),
            ("NOOP", "250"), ("VRFY bob", "252"), ("FROBNICATE now", "500"),
            ("MAIL FROM:<alice@example.org>", "250"), ("RSET", "250"),
            ("RCPT TO:<bob@example.net>", "503"), ("QUIT", "221")]
    assert [(c, r[:3]) for c, r in pairs] == want, d


def test_raw_session_byte_counts(tap):
    t = tap()
    content = b"Subject: counted\r\n\r\nexactly these bytes\r\n"
    with RawSmtpClient("127.0.0.1", t.port) as c:
        assert c.code() == 220
        assert c.cmd(b"EHLO raw.client.test")[-1].startswith(b"250 ")
        assert c.cmd(b"MAIL FROM:<a@example.org>")[-1].startswith(b"250")
        assert c.cmd(b"RCPT TO:<b@example.net>")[-1].startswith(b"250")
        assert c.cmd(b"DATA")[-1].startswith(b"354")
        c.send(content + b".\r\n")
        end_reply = c.reply()[-1]
        assert end_reply.startswith(b"250 "), end_reply
        assert c.cmd(b"QUIT")[-1].startswith(b"221")
        assert c.read_until_closed() == b"", "the sink should close after 221"
        sent, received = c.sent, c.received
    lines, sums = check_sink_session(t, 1, ehlo="raw.client.test")
    n, nl, sha = summary_for(content)
    assert sums[0].group(0) == f"message 1: {n} bytes, {nl} lines, sha256 {sha}"
    m = END_RE.match(lines[-1].text)
    assert re.search(r": 5 commands, ", m.group(0)), f"EHLO MAIL RCPT DATA QUIT: {m.group(0)}"
    assert (int(m.group(3)), int(m.group(4))) == (sent, received), \
        f"client sent {sent} bytes and received {received}: {lines[-1].raw}"
    assert end_reply.startswith(QUEUED_CONTRACT.encode()), \
        f"contract: the sink answers end of DATA with {QUEUED_CONTRACT!r}..., got {end_reply!r}"


def test_bdat_to_the_sink(tap):
    t = tap()
    chunk1 = b"Subject: chunked\r\n\r\n"
    chunk2 = b"BDAT 5 LAST\r\n.\r\nline that looks like a command\r\n"
    with RawSmtpClient("127.0.0.1", t.port) as c:
        c.reply()
        ehlo = c.cmd(b"EHLO raw.client.test")
        assert b"250-CHUNKING" in ehlo or b"250 CHUNKING" in ehlo, ehlo
        assert c.cmd(b"MAIL FROM:<a@example.org>")[-1].startswith(b"250")
        assert c.cmd(b"RCPT TO:<b@example.net>")[-1].startswith(b"250")
        c.send(b"BDAT %d\r\n" % len(chunk1) + chunk1)
        assert c.reply()[-1].startswith(b"250")
        c.send(b"BDAT %d LAST\r\n" % len(chunk2) + chunk2)
        assert c.reply()[-1].startswith(b"250")
        assert c.cmd(b"NOOP")[-1].startswith(b"250"), "chunk octets must not be read as commands"
        assert c.cmd(b"QUIT")[-1].startswith(b"221")
    t.wait_session_end(1)
    lines = t.lines(1)
    sums = [m for m in (SUMMARY_RE.match(l.text) for l in lines if l.marker == "==") if m]
    content = chunk1 + chunk2
    n, nl, sha = summary_for(content)
    assert [(int(s.group(2)), int(s.group(3)), s.group(4)) for s in sums] == [(n, nl, sha)], \
        t.transcript()
    assert "NOOP" in texts(lines, " ->")
