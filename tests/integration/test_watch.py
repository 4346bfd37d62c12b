"""Watching many sessions, and the EHLO reply as the client got it (issue 15 items 10 and 7).

--summary: one line per finished session on the terminal instead of its dialog,

    #3 +1.204 == summary 127.0.0.1:40312 -> 127.0.0.1:2526 helo=laptop cmds=9 msgs=1
       codes=250,221 tls=c:TLSv1.3,u:- faults=0 lint=2

--only CLIENT-GLOB (the client's address with or without its port, or its first EHLO/HELO
name) and --session N limit the live transcript to those sessions; the capture files (-d)
still record every session.

Where smtptap edits the server's EHLO reply (the STARTTLS it offers, --client-starttls strip,
a strip fault), the server's "<-" lines are followed by the reply as the client got it, as
"<= " lines, "<=+" marking a line the server did not send; jsonl has it as an
"edited_reply" event; pcap carries the bytes as relayed.
"""

from __future__ import annotations

import json
import re
import smtplib
import time
from pathlib import Path

import pytest

import harness
from harness import RawSmtpClient, make_message

FROM = "alice@example.org"
RCPTS = ["bob@example.net"]

SUMMARY_RE = re.compile(
    r"^#(?P<n>\d+) \+(?P<t>\d+\.\d{3}) == summary (?P<client>\S+) -> (?P<upstream>\S+) "
    r"helo=(?P<helo>\S+) cmds=(?P<cmds>\d+) msgs=(?P<msgs>\d+) codes=(?P<codes>\S+) "
    r"tls=c:(?P<ctls>\S+),u:(?P<utls>\S+) faults=(?P<faults>\d+) lint=(?P<lint>\d+)$")


def session_lines(t):
    """The transcript's lines that belong to a session ("#N +t ...")."""
    return [l for l in t.transcript().splitlines() if l.startswith("#")]


def summaries(t, count):
    t.wait_for(r"== summary ", count=count)
    out = {}
    for l in session_lines(t):
        m = SUMMARY_RE.match(l)
        assert m, f"not a summary line: {l!r}\n{t.transcript()}"
        assert int(m["n"]) not in out, l
        out[int(m["n"])] = m
    return out


def text_captures(cap: Path):
    """{session: [TLine]} of every .txt capture in cap."""
    out = {}
    for p in sorted(cap.glob("*.txt")):
        lines = harness.parse_transcript(p.read_text())
        out[lines[0].session] = lines
    return out


def wait_captures(cap: Path, n: int, timeout: float = 10.0):
    deadline = time.monotonic() + timeout * harness.TIMEOUT_SCALE
    while time.monotonic() < deadline:
        caps = text_captures(cap)
        if len(caps) == n and all(any(l.text.startswith("session ended") for l in c)
                                  for c in caps.values()):
            return caps
        time.sleep(0.05)
    raise AssertionError(f"wanted {n} finished captures: {sorted(p.name for p in cap.iterdir())}")


def end_counts(lines):
    (end,) = [l for l in lines if l.text.startswith("session ended")]
    m = re.search(r": (\d+) commands?, (\d+) messages?,", end.text)
    return int(m[1]), int(m[2])


def two_messages(port: int, helo: str):
    with smtplib.SMTP("127.0.0.1", port, local_hostname=helo, timeout=20) as s:
        for i in range(2):
            s.sendmail(FROM, RCPTS, make_message(f"smtplib {i}", to=RCPTS))
        s.quit()


# --------------------------------------------------------------------------- --summary


def test_summary_gives_one_line_per_session_with_its_counts(tap, need, tmp_path, aiosmtpd):
    """Four sessions through smtptap to aiosmtpd (swaks; smtplib with two messages; swaks in
    TLS; a raw client refused a RCPT by a fault and sending a bare LF): the terminal has one
    summary line per session and nothing of the dialogs; each line's numbers are the
    session's, as its text capture says."""
    need("swaks")
    cap = tmp_path / "cap"
    t = tap(["-u", aiosmtpd.hostport, "--summary", "-d", str(cap),
             "--fault", "RCPT *@busy.example: reply 450 4.2.0 Busy"])
    msg = make_message("summary", to=RCPTS)
    rc, out, err = harness.swaks_send(t.hostport, FROM, RCPTS, msg, str(tmp_path),
                                      "--helo", "one.test")
    assert rc == 0, out + err
    summaries(t, 1)
    two_messages(t.port, "two.test")
    summaries(t, 2)
    rc, out, err = harness.swaks_send(t.hostport, FROM, RCPTS, msg, str(tmp_path),
                                      "--helo", "three.test", "--tls")
    assert rc == 0, out + err
    summaries(t, 3)
    with RawSmtpClient("127.0.0.1", t.port) as c:
        c.reply()
        c.cmd(b"EHLO four.test")
        assert c.cmd(f"MAIL FROM:<{FROM}>".encode())[0].startswith(b"250")
        assert c.cmd(b"RCPT TO:<x@busy.example>") == [b"450 4.2.0 Busy"]
        assert c.cmd(b"RCPT TO:<bob@example.net>")[0].startswith(b"250")
        assert c.cmd(b"DATA")[0].startswith(b"354")
        assert c.cmd(b"Subject: bare\r\n\r\na bare\nLF\r\n.")[0].startswith(b"250")
        assert c.cmd(b"QUIT")[0].startswith(b"221")
    s = summaries(t, 4)
    assert sorted(s) == [1, 2, 3, 4]
    assert all(SUMMARY_RE.match(l) for l in session_lines(t)), t.transcript()  # no dialog
    want = {1: ("one.test", 5, 1, "250,221", "-"),
            2: ("two.test", 8, 2, "250,250,221", "-"),
            3: ("three.test", 7, 1, "250,221", "TLSv1.3"),
            4: ("four.test", 6, 1, "250,221", "-")}
    caps = wait_captures(cap, 4)  # the captures have every dialog
    for n, (helo, cmds, msgs, codes, ctls) in want.items():
        m = s[n]
        assert re.fullmatch(r"127\.0\.0\.1:\d+", m["client"]), m[0]
        assert (m["upstream"], m["helo"], int(m["cmds"]), int(m["msgs"]), m["codes"],
                m["ctls"], m["utls"]) == (aiosmtpd.hostport, helo, cmds, msgs, codes, ctls,
                                          "-"), m[0]
        lines = caps[n]
        assert end_counts(lines) == (cmds, msgs), m[0]
        assert int(m["faults"]) == sum(l.marker == "!!" for l in lines), m[0]
        assert int(m["lint"]) == sum(l.marker == "**" for l in lines), m[0]
        assert abs(float(m["t"]) - lines[-1].t) < 0.01, (m[0], lines[-1].raw)
    assert (int(s[1]["faults"]), int(s[4]["faults"])) == (0, 1)
    assert int(s[1]["lint"]) == 0 and int(s[4]["lint"]) >= 1


def test_summary_of_a_session_the_upstream_refused(tap):
    """An upstream that cannot be reached: the client gets 421, the line says so."""
    port = harness.free_port()
    t = tap(["-u", f"plain:127.0.0.1:{port}", "--summary", "--connect-timeout", "2s"])
    with RawSmtpClient("127.0.0.1", t.port) as c:
        assert c.reply()[0].startswith(b"421")
    m = summaries(t, 1)[1]
    assert (m["upstream"], m["helo"], m["cmds"], m["msgs"], m["codes"]) == \
        ("-", "-", "0", "0", "421"), m[0]


def test_summary_against_smtp_sink_and_the_built_in_sink(tap, smtp_sink, tmp_path):
    """Postfix smtp-sink upstream, then the built-in sink ("sink")."""
    t = tap(["-u", smtp_sink.hostport, "--summary"])
    harness.smtplib_send("127.0.0.1", t.port, FROM, RCPTS, make_message("to smtp-sink"))
    m = summaries(t, 1)[1]
    assert (m["upstream"], m["helo"], m["msgs"], m["codes"]) == \
        (smtp_sink.hostport, "client.test", "1", "250,221"), m[0]
    t2 = tap(["--summary"])
    harness.smtplib_send("127.0.0.1", t2.port, FROM, RCPTS, make_message("to the sink"))
    m = summaries(t2, 1)[1]
    assert (m["upstream"], m["msgs"], m["codes"]) == ("sink", "1", "250,221"), m[0]


# --------------------------------------------------------------------------- --only, --session


def run_three(t, tmp_path):
    """Three swaks sessions, EHLO names a.pick.test, b.other.test, c.pick.test."""
    for helo in ("a.pick.test", "b.other.test", "c.pick.test"):
        rc, out, err = harness.swaks(t.hostport, "--from", FROM, "--to", RCPTS[0],
                                     "--helo", helo)
        assert rc == 0, out + err


@pytest.mark.parametrize("glob,shown", [("127.0.0.1:*", [1, 2, 3]), ("127.0.0.*", [1, 2, 3]),
                                        ("10.9.*", []), ("*.PICK.test", [1, 3]),
                                        ("nothing,b.other.*", [2])])
def test_only_limits_the_live_transcript_and_captures_keep_all(tap, need, tmp_path, glob, shown):
    need("swaks")
    cap = tmp_path / "cap"
    t = tap(["--only", glob, "-d", str(cap)])
    run_three(t, tmp_path)
    caps = wait_captures(cap, 3)
    time.sleep(0.2)
    live = harness.parse_transcript(t.transcript())
    assert sorted({l.session for l in live}) == shown, t.transcript()
    for n in shown:  # each shown session whole, its lines before the EHLO included
        mine = [(l.marker, l.text) for l in live if l.session == n]
        assert mine == [(l.marker, l.text) for l in caps[n]], (n, t.transcript())
        assert mine[0][1].startswith("127.0.0.1:") and " connected to " in mine[0][1]
    assert sorted(caps) == [1, 2, 3]


def test_session_n_shows_only_that_session(tap, need, tmp_path):
    need("swaks")
    cap = tmp_path / "cap"
    t = tap(["--session", "2", "-d", str(cap)])
    run_three(t, tmp_path)
    caps = wait_captures(cap, 3)
    time.sleep(0.2)
    live = harness.parse_transcript(t.transcript())
    assert {l.session for l in live} == {2}, t.transcript()
    assert [(l.marker, l.text) for l in live] == [(l.marker, l.text) for l in caps[2]]
    assert any(l.text == "EHLO b.other.test" for l in live)


def test_summary_only_for_the_picked_sessions(tap, need, tmp_path):
    """--summary with --only and --session: a session either picks is summed up."""
    need("swaks")
    t = tap(["--summary", "--only", "a.pick.test", "--session", "3"])
    run_three(t, tmp_path)
    s = summaries(t, 2)
    time.sleep(0.3)
    assert sorted(summaries(t, 2)) == [1, 3], t.transcript()
    assert (s[1]["helo"], s[3]["helo"]) == ("a.pick.test", "c.pick.test")


def test_config_file_live_section(tap, need, tmp_path):
    need("swaks")
    conf = tmp_path / "smtptap.conf"
    conf.write_text("[live]\nsummary = yes\nonly = *.other.test\n")
    t = tap(["-c", str(conf)])
    run_three(t, tmp_path)
    m = summaries(t, 1)
    time.sleep(0.3)
    assert list(summaries(t, 1)) == [2] and m[2]["helo"] == "b.other.test", t.transcript()


@pytest.mark.parametrize("args,words", [
    (["--only", "a,"], ["--only: invalid value \"a,\"", "globs", "127.0.0.1:*", "EHLO"]),
    (["--only", "a b"], ["--only: invalid value \"a b\"", "without blanks"]),
    (["--session", "0"], ["--session: invalid value \"0\"", "session numbers", "1 or more"]),
    (["--session", "two"], ["--session: invalid value \"two\"", "e.g. 3 or 3,7"]),
])
def test_bad_values_name_the_flag_and_what_is_accepted(args, words):
    rc, out, err = harness.run([harness.smtptap_bin(), *args], timeout=10)
    assert rc == harness.EX_USAGE, (rc, err)
    for w in words:
        assert w in err, err


def test_bad_config_value_names_the_key(tmp_path):
    conf = tmp_path / "smtptap.conf"
    conf.write_text("[live]\nsession = 1,x\n")
    rc, out, err = harness.run([harness.smtptap_bin(), "-c", str(conf)], timeout=10)
    assert rc == harness.EX_CONFIG, (rc, err)
    assert "[live] session: invalid value \"1,x\"" in err and "session numbers" in err, err


# --------------------------------------------------------------------------- the edited EHLO reply


def edited_block(lines, after=0):
    """The first run of "<=" lines after index AFTER, as (marker, text)."""
    out = []
    for l in lines[after:]:
        if l.is_edited_reply:
            out.append((l.marker, l.text))
        elif out:
            break
    return out


def server_ehlo(lines):
    """The index of the EHLO command, and the server's reply lines to it ("<-")."""
    i = next(i for i, l in enumerate(lines) if l.is_command and l.text.startswith("EHLO"))
    out = []
    for l in lines[i + 1:]:
        if l.is_reply:
            out.append(l.text)
        elif out:
            break
    return i, out


def test_strip_fault_shows_the_reply_the_client_got(tap, need, tmp_path, aiosmtpd):
    """aiosmtpd offers 8BITMIME and no STARTTLS; 'EHLO: strip 8BITMIME' and the STARTTLS
    smtptap offers: the server's reply, then the reply as swaks got it, line for line,
    STARTTLS marked as smtptap's; jsonl says what was added and removed; the pcap's client
    side has the edited reply, never the server's 8BITMIME."""
    need("swaks")
    cap = tmp_path / "cap"
    t = tap(["-u", aiosmtpd.hostport, "--fault", "EHLO: strip 8BITMIME", "-d", str(cap),
             "--format", "text,jsonl,pcap"])
    rc, out, err = harness.swaks(t.hostport, "--from", FROM, "--to", RCPTS[0], "--helo",
                                 "client.test", "--quit-after", "EHLO")
    assert rc == 0, out + err
    t.wait_session_end(1)
    lines = t.lines(1)
    i, server = server_ehlo(lines)
    assert "250-8BITMIME" in server and not any("STARTTLS" in s for s in server), server
    block = edited_block(lines, i)
    got = [l for l in harness.swaks_replies(out) if l.startswith("250")]
    assert [text for _, text in block] == got, (block, out)
    assert [text for mk, text in block if mk == "<=+"] == ["250-STARTTLS"], block
    assert not any("8BITMIME" in text for _, text in block)
    texts = [l.text for l in lines]
    first_edit = next(j for j, l in enumerate(lines) if l.is_edited_reply)
    assert texts.index("smtptap offers STARTTLS to the client (added to the EHLO reply)") < \
        texts.index("fault flag 1: strip 8BITMIME removed 1 capability") < first_edit
    jsonl = next(cap.glob("*.jsonl"))
    events = [json.loads(l) for l in jsonl.read_text().splitlines()]
    (edit,) = [e for e in events if e["kind"] == "edited_reply"]
    assert edit["reply"]["edit"] == {"added": ["STARTTLS"], "removed": ["8BITMIME"]}, edit
    assert edit["line"].split("\r\n")[:-1] == got
    pcap = next(cap.glob("*.pcap")).read_bytes()
    assert b"250-STARTTLS\r\n" in pcap and b"8BITMIME" not in pcap


@pytest.mark.parametrize("upstream", ["aiosmtpd", "smtp-sink"])
def test_starttls_offer_shows_the_reply_with_starttls(tap, need, tmp_path, upstream):
    """The default --client-starttls offer in front of a server that offers no STARTTLS:
    the client's EHLO reply has smtptap's STARTTLS, marked "<=+", the rest as the server
    sent it."""
    if upstream == "smtp-sink":
        need("smtp-sink")
    with (harness.AiosmtpdServer() if upstream == "aiosmtpd" else harness.SmtpSink()) as srv:
        t = tap(["-u", srv.hostport])
        with RawSmtpClient("127.0.0.1", t.port) as c:
            c.reply()
            got = [l.decode() for l in c.cmd(b"EHLO client.test")]
            c.cmd(b"QUIT")
        t.wait_session_end(1)
    lines = t.lines(1)
    i, server = server_ehlo(lines)
    block = edited_block(lines, i)
    assert [text for _, text in block] == got, (block, got)
    assert [text for mk, text in block if mk == "<=+"] == ["250-STARTTLS"], block
    assert [text for mk, text in block if mk == "<= "] == \
        [s if s != server[0] else s.replace("250 ", "250-", 1) for s in server], (block, server)


@pytest.mark.parametrize("how", ["--client-starttls strip", "fault strip STARTTLS"])
def test_starttls_removed_shows_the_reply_without_it(tap, tmp_path, how):
    """A server that offers STARTTLS; smtptap takes it out (--client-starttls strip, or a
    strip fault with passthrough): the "<=" block is the server's reply without STARTTLS,
    nothing marked as added."""
    ctx = harness.server_tls_context(str(tmp_path))
    with harness.AiosmtpdServer(tls_context=ctx, require_starttls=False) as srv:
        args = (["--client-starttls", "strip"] if how.startswith("--") else
                ["--client-starttls", "passthrough", "--fault", "EHLO: strip STARTTLS"])
        t = tap(["-u", f"plain:{srv.hostport}", *args])
        with RawSmtpClient("127.0.0.1", t.port) as c:
            c.reply()
            got = [l.decode() for l in c.cmd(b"EHLO client.test")]
            c.cmd(b"QUIT")
        t.wait_session_end(1)
    lines = t.lines(1)
    i, server = server_ehlo(lines)
    assert "250-STARTTLS" in server
    block = edited_block(lines, i)
    assert [text for _, text in block] == got and not any("STARTTLS" in g for g in got), block
    assert all(mk == "<= " for mk, _ in block), block


def test_delayed_ehlo_reply_and_its_edit_are_stamped_when_the_client_got_them(tap, aiosmtpd):
    t = tap(["-u", aiosmtpd.hostport, "--fault", "EHLO: delay 400ms"])
    with RawSmtpClient("127.0.0.1", t.port) as c:
        c.reply()
        got = [l.decode() for l in c.cmd(b"EHLO client.test")]
        c.cmd(b"QUIT")
    t.wait_session_end(1)
    lines = t.lines(1)
    i, server = server_ehlo(lines)
    block = [l for l in lines if l.is_edited_reply]
    assert [l.text for l in block] == got and "250-STARTTLS" in got
    srv_lines = [l for l in lines[i + 1:lines.index(block[0])] if l.is_reply]
    assert [l.text for l in srv_lines] == server and "250-STARTTLS" not in server
    assert all(l.t >= lines[i].t + 0.35 for l in srv_lines + block), t.transcript()
    assert lines.index(block[0]) == lines.index(srv_lines[-1]) + 1, t.transcript()


def test_only_picks_ipv6_clients_by_address(tap):
    """Two listeners, 127.0.0.1 and [::1]: '[::1]:*' (brackets are plain characters) and
    '::1' (the address alone) pick the IPv6 client only."""
    for glob in ("[::1]:*", "::1"):
        t = tap(["-l", "127.0.0.1:0", "-l", "[::1]:0", "--summary", "--only", glob], listen=None)
        t.wait_for(harness.LISTEN_RE, count=2)
        ports = {h: int(p) for h, p in harness.LISTEN_RE.findall(t.transcript())}
        for host in ("127.0.0.1", "::1"):
            with RawSmtpClient(host, ports["[::1]" if host == "::1" else host]) as c:
                c.reply()
                c.cmd(b"EHLO " + host.replace(":", "x").encode())
                c.cmd(b"QUIT")
        m = summaries(t, 1)
        time.sleep(0.3)
        assert list(summaries(t, 1)) == [2], t.transcript()
        assert re.fullmatch(r"\[::1\]:\d+", m[2]["client"]), m[2][0]
        t.stop()
