"""Fault injection on replies (`--fault`, `[fault NAME]`, `--seed`, SIGHUP).

Real clients (Python smtplib, swaks, curl, raw sockets) meet real faults through smtptap
in front of real servers (aiosmtpd, Postfix smtp-sink) or the built-in sink, and each test
asserts what the client saw, what the upstream received, and the `!!` transcript line that
names the rule that fired.
"""

from __future__ import annotations

import re
import signal
import smtplib
import socket
import time
from pathlib import Path

import pytest

import harness
from harness import EX_CONFIG, EX_USAGE, RawSmtpClient

FROM = "alice@example.org"


# --------------------------------------------------------------------------- helpers


def fault_lines(tap, session=None):
    """Texts of the `!!` lines (after the marker), e.g. 'fault flag 1: drop: ...'."""
    return [l.text for l in tap.lines(session) if l.marker == "!!"]


def reply_lines(tap, session=None):
    return [l.text for l in tap.lines(session) if l.is_reply]


def made_by_smtptap(tap, session=None):
    """Reply lines marked as produced by smtptap itself."""
    return [l for l in reply_lines(tap, session) if l.endswith("  [smtptap]")]


def real_reply_before_fault(tap, session, fault_re):
    """The last server reply line before the `!!` line matching FAULT_RE, and that line."""
    last = None
    for l in tap.lines(session):
        if l.marker == "!!" and re.search(fault_re, l.text):
            assert last is not None, f"no reply before the fault line {l.raw!r}"
            return last, l.text
        if l.is_reply and not l.text.endswith("[smtptap]"):
            last = l.text
    raise AssertionError(f"no `!!` line matching {fault_re!r} in session {session}:\n"
                         f"{tap.transcript()}")


def write_ini(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def smtptap_fails(*args, timeout=10.0):
    """Run smtptap with ARGS (on a free loopback port); it must exit by itself."""
    return harness.run([harness.smtptap_bin(), "--listen", "127.0.0.1:0", "--color=never",
                        *args], timeout=timeout)


def raw(tap, timeout=10.0) -> RawSmtpClient:
    return RawSmtpClient("127.0.0.1", tap.port, timeout=timeout)


def text(lines):
    return [l.decode("utf-8", "replace") for l in lines]


class Upstream:
    """The three kinds of upstream fault rules must work the same way with."""

    def __init__(self, kind, server=None):
        self.kind = kind
        self.server = server

    @property
    def args(self):
        return [] if self.server is None else ["-u", self.server.hostport]

    def recipients(self, n=1):
        """Envelope recipients of the Nth message the upstream got (None for the sink,
        which has no record of its own)."""
        if self.kind == "aiosmtpd":
            return self.server.wait_for_messages(n)[n - 1].rcpt_tos
        if self.kind == "smtp-sink":
            return [a.strip("<>") for a in self.server.wait_for_messages(n)[n - 1].rcpt_args]
        return None

    def contents(self):
        if self.kind == "aiosmtpd":
            return [m.content for m in self.server.messages]
        if self.kind == "smtp-sink":
            return [m.content for m in self.server.messages()]
        return None


@pytest.fixture(params=["aiosmtpd", "smtp-sink", "sink"])
def upstream(request, need):
    if request.param == "aiosmtpd":
        with harness.AiosmtpdServer() as srv:
            yield Upstream("aiosmtpd", srv)
    elif request.param == "smtp-sink":
        need("smtp-sink")
        with harness.SmtpSink() as sink:
            yield Upstream("smtp-sink", sink)
    else:
        yield Upstream("sink")


# --------------------------------------------------------------------------- reply: smtplib


def test_rcpt_reply_refuses_the_only_recipient(tap, aiosmtpd):
    t = tap(["-u", aiosmtpd.hostport, "--fault", "RCPT bad@*: reply 550 5.1.1 No such user"])
    with pytest.raises(smtplib.SMTPRecipientsRefused) as ei:
        harness.smtplib_send("127.0.0.1", t.port, FROM, ["bad@example.net"],
                             harness.make_message(to=["bad@example.net"]))
    assert ei.value.recipients == {"bad@example.net": (550, b"5.1.1 No such user")}
    t.wait_session_end(1)
    assert aiosmtpd.messages == [], "a message reached the upstream although its only " \
                                    "recipient was refused"
    assert fault_lines(t, 1) == ["fault flag 1: RCPT answered by smtptap, not forwarded"]
    assert made_by_smtptap(t, 1) == ["550 5.1.1 No such user  [smtptap]"]


def test_rcpt_reply_refuses_one_of_three(tap, upstream):
    """The same rule with aiosmtpd, smtp-sink and the built-in sink: the refused recipient
    is in sendmail's refused dict, the others are delivered, the upstream never saw it."""
    t = tap([*upstream.args, "--fault", "RCPT bad@*: reply 550 5.1.1 No such user"])
    rcpts = ["good1@example.net", "Bad@Example.NET", "good2@example.net"]
    refused = harness.smtplib_send("127.0.0.1", t.port, FROM, rcpts,
                                   harness.make_message(to=rcpts))
    assert refused == {"Bad@Example.NET": (550, b"5.1.1 No such user")}
    t.wait_session_end(1)
    got = upstream.recipients(1)
    if got is not None:
        assert got == ["good1@example.net", "good2@example.net"]
    assert fault_lines(t, 1) == ["fault flag 1: RCPT answered by smtptap, not forwarded"]
    d = harness.dialog(t.lines(1))
    i = d.index(("C", "RCPT TO:<Bad@Example.NET>"))
    # The local reply answers that very command and nothing else is marked as smtptap's.
    assert d[i + 1] == ("R", "550 5.1.1 No such user  [smtptap]"), d
    assert made_by_smtptap(t, 1) == ["550 5.1.1 No such user  [smtptap]"]
    # The command was not relayed as well: one reply for each command (the local one
    # included), plus the greeting and the reply at the end of the message.
    assert len([k for k, _ in d if k == "C"]) + 2 == len([k for k, _ in d if k == "R"]), d


def test_data_end_reply_replaces_the_real_reply(tap, upstream):
    """DATA-END: the message reaches the upstream, only the reply is replaced."""
    t = tap([*upstream.args, "--fault", "DATA-END: reply 451 4.3.0 Try later"])
    msg = harness.make_message(subject=f"data-end {time.monotonic_ns()}")
    with pytest.raises(smtplib.SMTPDataError) as ei:
        harness.smtplib_send("127.0.0.1", t.port, FROM, ["bob@example.net"], msg)
    assert (ei.value.smtp_code, ei.value.smtp_error) == (451, b"4.3.0 Try later")
    t.wait_session_end(1)
    contents = upstream.contents()
    if contents is not None:
        upstream.recipients(1)  # waits for the message
        contents = upstream.contents()
        assert len(contents) == 1
        assert msg.replace(b"\r\n", b"\n")[:200] in contents[0].replace(b"\r\n", b"\n")
    real, line = real_reply_before_fault(t, 1, r"^fault flag 1: ")
    assert real.startswith("250"), real
    assert re.fullmatch(r'fault flag 1: reply "451 4\.3\.0 Try later" replaced \(the message '
                        r'reached the server\) ' + re.escape(real), line), line
    assert made_by_smtptap(t, 1) == ["451 4.3.0 Try later  [smtptap]"]


# --------------------------------------------------------------------------- reply: swaks


def test_greeting_421_swaks_fails_and_the_connection_closes(tap, aiosmtpd, need):
    need("swaks")
    t = tap(["-u", aiosmtpd.hostport, "--fault", "GREETING: reply 421 4.3.2 Go away"])
    rc, out, err = harness.swaks(t.hostport, "--from", FROM, "--to", "bob@example.net")
    assert rc != 0, out
    assert harness.swaks_replies(out) == ["421 4.3.2 Go away"], out
    assert aiosmtpd.greeting not in out
    t.wait_session_end(1)
    assert fault_lines(t, 1) == ["fault flag 1: greeting answered by smtptap"]
    assert made_by_smtptap(t, 1) == ["421 4.3.2 Go away  [smtptap]"]
    # Like a server that greets with 421: the connection is closed after it.
    with raw(t) as c:
        assert text(c.reply()) == ["421 4.3.2 Go away"]
        c.sock.settimeout(5)
        try:
            assert c.read_until_closed(5) == b""
        except socket.timeout:
            pytest.fail("smtptap kept the connection open after a 421 greeting")
    assert aiosmtpd.messages == []


def test_rcpt_nth_from_ini_section_in_a_pipelined_batch(tap, aiosmtpd, need, tmp_path):
    need("swaks")
    ini = write_ini(tmp_path / "faults.ini",
                    "[fault too-many]\n"
                    "on = RCPT\n"
                    "nth = 3\n"
                    "action = reply 452 4.5.3 Too many\n")
    t = tap(["-u", aiosmtpd.hostport, "-c", ini])
    rcpts = [f"r{i}@example.net" for i in range(1, 5)]
    rc, out, err = harness.swaks(t.hostport, "--from", FROM, "--to", ",".join(rcpts),
                                 "--pipeline")
    assert rc == 0, f"{out}\n{err}"
    lines = out.splitlines()
    # swaks really pipelined: the whole batch went out before the first reply to it.
    assert lines.index(" -> DATA") < lines.index(f"<-  250 2.1.0 Sender <{FROM}> ok"), out
    replies = harness.swaks_replies(out)
    i = replies.index(f"250 2.1.0 Sender <{FROM}> ok")
    assert replies[i + 1:i + 6] == [
        "250 2.1.5 Recipient <r1@example.net> ok",
        "250 2.1.5 Recipient <r2@example.net> ok",
        "452 4.5.3 Too many",
        "250 2.1.5 Recipient <r4@example.net> ok",
        "354 End data with <CR><LF>.<CR><LF>",
    ], out
    assert "<** 452 4.5.3 Too many" in lines, out
    assert aiosmtpd.wait_for_messages(1)[0].rcpt_tos == ["r1@example.net", "r2@example.net",
                                                          "r4@example.net"]
    t.wait_session_end(1)
    assert fault_lines(t, 1) == ["fault too-many: RCPT answered by smtptap, not forwarded"]
    assert made_by_smtptap(t, 1) == ["452 4.5.3 Too many  [smtptap]"]


def test_data_end_451_swaks_fails_but_the_upstream_has_the_message(tap, aiosmtpd, need):
    need("swaks")
    t = tap(["-u", aiosmtpd.hostport, "--fault", "DATA-END: reply 451 4.3.0 Try later"])
    subject = f"Subject: data-end-451 {time.monotonic_ns()}"
    rc, out, err = harness.swaks(t.hostport, "--from", FROM, "--to", "bob@example.net",
                                 "--header", subject)
    assert rc != 0, out
    assert "<** 451 4.3.0 Try later" in out.splitlines(), out
    msgs = aiosmtpd.wait_for_messages(1)
    assert subject.encode() in msgs[0].content
    t.wait_session_end(1)
    assert fault_lines(t, 1) == ['fault flag 1: reply "451 4.3.0 Try later" replaced (the '
                                 'message reached the server) 250 2.0.0 OK queued as aio1']
    assert made_by_smtptap(t, 1) == ["451 4.3.0 Try later  [smtptap]"]


def test_421_on_rcpt_in_a_pipelined_batch_closes_after_earlier_replies(tap, aiosmtpd):
    t = tap(["-u", aiosmtpd.hostport, "--fault", "RCPT bad@*: reply 421 4.7.0 Closing"])
    with raw(t) as c:
        c.reply()
        c.cmd(b"EHLO client.test")
        c.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<r1@example.net>\r\n"
               b"RCPT TO:<bad@example.net>\r\nRCPT TO:<r2@example.net>\r\nDATA\r\n")
        try:
            rest = c.read_until_closed(5)
        except socket.timeout:
            pytest.fail("smtptap kept the connection open after the 421")
    assert rest == (b"250 2.1.0 Sender <a@example.org> ok\r\n"
                    b"250 2.1.5 Recipient <r1@example.net> ok\r\n"
                    b"421 4.7.0 Closing\r\n")
    t.wait_session_end(1)
    assert aiosmtpd.messages == []


# --------------------------------------------------------------------------- drop, reset, truncate


def test_drop_on_mail_curl_fails_and_the_client_sees_fin(tap, aiosmtpd, need, tmp_path):
    need("curl")
    t = tap(["-u", aiosmtpd.hostport, "--fault", "MAIL: drop"])
    msg = tmp_path / "m.eml"
    msg.write_bytes(harness.make_message())
    rc, out, err = harness.curl_send("127.0.0.1", t.port, FROM, ["bob@example.net"], str(msg))
    assert rc not in (0, 28), f"curl rc {rc} (expected a receive error, not success or " \
                              f"its own timeout):\n{err}"
    assert "> MAIL FROM:" in err and "< 250 2.1.0" not in err, err
    t.wait_session_end(1)
    real, line = real_reply_before_fault(t, 1, r"^fault flag 1: ")
    assert real == f"250 2.1.0 Sender <{FROM}> ok"
    assert line == ("fault flag 1: drop: closing the client connection instead of sending "
                    + real)
    # A raw client: an orderly close (EOF), not a reset, and not a byte of the reply.
    with raw(t) as c:
        c.reply()
        c.cmd(b"EHLO client.test")
        c.send(b"MAIL FROM:<a@example.org>\r\n")
        try:
            assert c.read_until_closed(5) == b""
        except ConnectionResetError:
            pytest.fail("drop reset the connection; expected FIN")
        except socket.timeout:
            pytest.fail("drop: smtptap did not close the connection")
    assert aiosmtpd.messages == []


def test_reset_on_mail_the_client_sees_a_reset(tap, aiosmtpd, need, tmp_path):
    need("curl")
    t = tap(["-u", aiosmtpd.hostport, "--fault", "MAIL: reset"])
    msg = tmp_path / "m.eml"
    msg.write_bytes(harness.make_message())
    rc, out, err = harness.curl_send("127.0.0.1", t.port, FROM, ["bob@example.net"], str(msg))
    assert rc not in (0, 28), err
    assert "reset" in err.lower(), err
    t.wait_session_end(1)
    real, line = real_reply_before_fault(t, 1, r"^fault flag 1: ")
    assert line == ("fault flag 1: reset: aborting the client connection (RST) instead of "
                    "sending " + real)
    with raw(t) as c:
        c.reply()
        c.cmd(b"EHLO client.test")
        c.send(b"MAIL FROM:<a@example.org>\r\n")
        with pytest.raises(ConnectionResetError):
            c.read_until_closed(5)
    assert aiosmtpd.messages == []


def test_truncate_on_data_end_the_client_sees_a_broken_reply(tap, aiosmtpd, need, tmp_path):
    need("curl")
    t = tap(["-u", aiosmtpd.hostport, "--fault", "DATA-END: truncate 5"])
    msg = tmp_path / "m.eml"
    msg.write_bytes(harness.make_message())
    rc, out, err = harness.curl_send("127.0.0.1", t.port, FROM, ["bob@example.net"], str(msg))
    assert rc not in (0, 28), err
    assert aiosmtpd.wait_for_messages(1)[0].content == msg.read_bytes()
    t.wait_session_end(1)
    assert fault_lines(t, 1) == ["fault flag 1: truncate after 5 bytes, then close, of "
                                 "250 2.0.0 OK queued as aio1"]
    with raw(t) as c:
        c.reply()
        c.cmd(b"EHLO client.test")
        c.cmd(b"MAIL FROM:<a@example.org>")
        c.cmd(b"RCPT TO:<bob@example.net>")
        assert c.cmd(b"DATA")[0].startswith(b"354")
        c.send(b"Subject: t\r\n\r\nbody\r\n.\r\n")
        assert c.read_until_closed(5) == b"250 2"
    assert len(aiosmtpd.wait_for_messages(2)) == 2


# --------------------------------------------------------------------------- delay, stall, slow


def test_delay_on_rcpt_holds_the_real_reply(tap, aiosmtpd):
    t = tap(["-u", aiosmtpd.hostport, "--fault", "RCPT: delay 2s"])
    with smtplib.SMTP("127.0.0.1", t.port, local_hostname="client.test", timeout=20) as s:
        s.ehlo()
        assert s.mail(FROM)[0] == 250
        t0 = time.monotonic()
        code, resp = s.rcpt("bob@example.net")
        elapsed = time.monotonic() - t0
        assert (code, resp) == (250, b"2.1.5 Recipient <bob@example.net> ok")
        assert s.data(harness.make_message())[0] == 250
        s.quit()
    assert elapsed >= 2.0, f"RCPT answered after {elapsed:.3f}s, delay was 2s"
    assert elapsed < 15
    assert aiosmtpd.wait_for_messages(1)[0].rcpt_tos == ["bob@example.net"]
    t.wait_session_end(1)
    assert fault_lines(t, 1) == ["fault flag 1: delay 2000ms on 250 2.1.5 Recipient "
                                 "<bob@example.net> ok"]
    # The "<-" line is stamped when the client got the reply, the "!!" line when the rule
    # fired (when the server answered): 2 s apart.
    lines = t.lines(1)
    rcpt = next(l for l in lines if l.is_command and l.text.upper().startswith("RCPT TO:"))
    fault = next(l for l in lines if l.marker == "!!")
    reply = next(l for l in lines if l.is_reply and l.text.startswith("250 2.1.5 Recipient"))
    assert fault.t - rcpt.t < 1.0, (rcpt.raw, fault.raw)
    assert reply.t - rcpt.t >= 2.0, (rcpt.raw, reply.raw)
    assert lines.index(fault) < lines.index(reply)
    assert reply.latency_ms is not None and reply.latency_ms < 1000, reply.raw  # the server's


def test_stall_on_mail_the_clients_own_timeout_fires(tap, aiosmtpd):
    t = tap(["-u", aiosmtpd.hostport, "--fault", "MAIL: stall"])
    t0 = time.monotonic()
    with pytest.raises((smtplib.SMTPServerDisconnected, socket.timeout)) as ei:
        with smtplib.SMTP("127.0.0.1", t.port, local_hostname="client.test", timeout=2) as s:
            s.ehlo()
            s.mail(FROM)
    elapsed = time.monotonic() - t0
    assert "timed out" in str(ei.value), repr(ei.value)
    assert 2.0 <= elapsed < 10, elapsed
    # The session ends once the client gives up.
    t.wait_session_end(1, timeout=5)
    assert fault_lines(t, 1) == [f"fault flag 1: stall: never sending 250 2.1.0 Sender "
                                 f"<{FROM}> ok"]
    assert aiosmtpd.messages == []


def test_slow_reply_trickles(tap):
    t = tap(["--fault", "NOOP: slow 20/s"])
    with raw(t) as c:
        c.reply()
        c.send(b"NOOP\r\n")
        t0 = time.monotonic()
        reply = c.reply()
        elapsed = time.monotonic() - t0
        assert text(reply) == ["250 2.0.0 Ok"]
        assert c.cmd(b"QUIT")[0].startswith(b"221")
    # 14 bytes at 20 bytes/s: well over half a second, however the first bytes go out.
    assert elapsed >= 0.5, elapsed
    t.wait_session_end(1)
    assert fault_lines(t, 1) == ["fault flag 1: slow 20 bytes/s for 250 2.0.0 Ok"]


# --------------------------------------------------------------------------- strip


def test_strip_starttls_swaks_tls_fails(tap, need, tmp_path):
    need("swaks", "openssl")
    ctx = harness.server_tls_context(str(tmp_path))
    with harness.AiosmtpdServer(tls_context=ctx, require_starttls=False) as srv:
        # passthrough: the server's own STARTTLS is what the fault strips
        t = tap(["-u", srv.hostport, "--client-starttls", "passthrough",
                 "--fault", "EHLO strip.test: strip STARTTLS"])
        # Control: another EHLO name is not matched, STARTTLS is offered and works.
        rc, out, err = harness.swaks(t.hostport, "--from", FROM, "--to", "bob@example.net",
                                     "--helo", "other.test", "--tls")
        assert rc == 0, f"{out}\n{err}"
        assert "<-  250-STARTTLS" in out.splitlines() and "=== TLS started" in out, out
        srv.wait_for_messages(1)
        rc, out, err = harness.swaks(t.hostport, "--from", FROM, "--to", "bob@example.net",
                                     "--helo", "strip.test", "--tls")
        assert rc != 0, out
        assert "STARTTLS" in err and "advertise" in err, err
        assert not any("STARTTLS" in r for r in harness.swaks_replies(out)), out
        assert "=== TLS started" not in out
        assert len(srv.messages) == 1
        t.wait_session_end(2)
    assert fault_lines(t, 1) == []
    assert fault_lines(t, 2) == ["fault flag 1: strip STARTTLS removed 1 capability"]
    assert "250-STARTTLS" in reply_lines(t, 2)  # the real reply, as the server sent it
    assert not any("STARTTLS" in l for l in made_by_smtptap(t, 2))


def test_strip_auth_plain_keeps_the_other_mechanisms(tap, need):
    t = tap(["--fault", "EHLO strip.test: strip AUTH=PLAIN"])
    with raw(t) as c:
        c.reply()
        control = text(c.cmd(b"EHLO other.test"))
        stripped = text(c.cmd(b"EHLO strip.test"))
        c.cmd(b"QUIT")
    assert control[-1] == "250 AUTH PLAIN LOGIN CRAM-MD5 XOAUTH2", control
    want = [l.replace("AUTH PLAIN ", "AUTH ") for l in control]
    assert stripped == want
    t.wait_session_end(1)
    assert fault_lines(t, 1) == ["fault flag 1: strip AUTH=PLAIN removed 1 capability"]
    # A real client: PLAIN is no longer on offer, LOGIN still is.
    need("swaks")
    base = ["--from", FROM, "--to", "bob@example.net", "--helo", "strip.test",
            "-au", "alice", "-ap", "secret"]
    rc, out, err = harness.swaks(t.hostport, *base, "-a", "PLAIN")
    assert rc != 0 and "not available" in err, f"{out}\n{err}"
    assert not any(l.startswith("AUTH") for l in harness.swaks_commands(out)), out
    rc, out, err = harness.swaks(t.hostport, *base, "-a", "LOGIN")
    assert rc == 0, f"{out}\n{err}"
    assert "<-  235 2.7.0 Authentication successful" in out.splitlines(), out


# --------------------------------------------------------------------------- probability and seed


PROBABILITY_INI = ("[fault flaky]\n"
                   "on = MAIL\n"
                   "probability = 0.5\n"
                   "action = reply 451 4.7.1 Flaky\n")
SESSIONS = 40


def fired_sessions(tap_factory, ini, *args):
    """SESSIONS sessions through a fresh smtptap; the session numbers on which the rule
    fired, as the clients saw them (checked against the transcript), and the seed line."""
    t = tap_factory(["-c", ini, *args])
    seen = []
    for n in range(1, SESSIONS + 1):
        with raw(t) as c:
            c.reply()
            c.cmd(b"HELO client.test")
            r = text(c.cmd(b"MAIL FROM:<a@example.org>"))
            c.cmd(b"QUIT")
        if r == ["451 4.7.1 Flaky"]:
            seen.append(n)
        else:
            assert r == ["250 2.1.0 Ok"], r
    t.wait_for(rf"^#{SESSIONS} \+\S+ == session ended\b")
    logged = sorted(l.session for l in t.lines() if l.marker == "!!"
                    and l.text == "fault flaky: MAIL answered by smtptap, not forwarded")
    assert logged == seen, f"transcript says {logged}, clients saw {seen}"
    seed_line = t.wait_for(r"^smtptap: 1 fault rule, seed (\d+) \(--seed (\d+) repeats this "
                           r"run\)$")
    assert seed_line.group(1) == seed_line.group(2)
    t.stop()
    return seen, int(seed_line.group(1))


def test_probability_with_a_seed_repeats_exactly(tap, tmp_path):
    ini = write_ini(tmp_path / "p.ini", PROBABILITY_INI)
    first, s1 = fired_sessions(tap, ini, "--seed", "7")
    second, s2 = fired_sessions(tap, ini, "--seed", "7")
    other, s3 = fired_sessions(tap, ini, "--seed", "8")
    assert (s1, s2, s3) == (7, 7, 8)
    assert first == second, "--seed 7 twice fired on different sessions"
    assert other != first, "--seed 8 fired on the same sessions as --seed 7"
    for fired in (first, other):
        assert 10 <= len(fired) <= 30, f"probability 0.5 fired {len(fired)}/{SESSIONS}"


def test_seed_line_only_when_a_rule_uses_probability(tap, tmp_path):
    """Issue 15 item 13: the seed was printed for rules that never draw it. A rule with a
    probability below 1 gets the seed line; rules without one get their count alone."""
    t = tap(["--fault", "RCPT: reply 450 4.2.0 Busy", "--fault", "NOOP: drop"])
    line = t.wait_for(r"^smtptap: \d+ fault rules?.*$").group(0)
    assert line == "smtptap: 2 fault rules", line
    assert "seed" not in t.transcript()
    t.stop()
    ini = write_ini(tmp_path / "p.ini", PROBABILITY_INI)
    t = tap(["-c", ini, "--fault", "NOOP: drop", "--seed", "42"])
    line = t.wait_for(r"^smtptap: \d+ fault rules?.*$").group(0)
    assert line == "smtptap: 2 fault rules, seed 42 (--seed 42 repeats this run)", line


def test_printed_seed_repeats_a_run_without_seed(tap, tmp_path):
    ini = write_ini(tmp_path / "p.ini", PROBABILITY_INI)
    first, seed = fired_sessions(tap, ini)
    again, seed2 = fired_sessions(tap, ini, "--seed", str(seed))
    assert seed2 == seed
    assert again == first


# --------------------------------------------------------------------------- SIGHUP


def mail_then_rset(t):
    with raw(t) as c:
        c.reply()
        c.cmd(b"HELO client.test")
        mail = text(c.cmd(b"MAIL FROM:<a@example.org>"))
        rset = text(c.cmd(b"RSET"))
        noop = text(c.cmd(b"NOOP"))
        c.cmd(b"QUIT")
    return mail, rset, noop


def test_sighup_reloads_rules_and_keeps_them_when_the_file_is_broken(tap, tmp_path):
    ini = tmp_path / "faults.ini"
    write_ini(ini, "[fault first]\non = MAIL\naction = reply 451 4.7.1 First rule\n")
    t = tap(["-c", str(ini), "--fault", "NOOP: reply 502 5.5.1 Flag rule"])
    t.wait_for(r"^smtptap: 2 fault rules$")
    assert mail_then_rset(t) == (["451 4.7.1 First rule"], ["250 2.0.0 Ok"],
                                 ["502 5.5.1 Flag rule"])

    # A session that stays open across the reload: its next commands use the new rules.
    held = raw(t)
    held.reply()
    held.cmd(b"HELO client.test")
    assert text(held.cmd(b"MAIL FROM:<a@example.org>")) == ["451 4.7.1 First rule"]

    write_ini(ini, "[fault second]\non = RSET\naction = reply 550 5.0.0 Second rule\n")
    t.proc.send_signal(signal.SIGHUP)
    t.wait_for(r"^smtptap: SIGHUP: 2 fault rules now in force\b")
    assert text(held.cmd(b"RSET")) == ["550 5.0.0 Second rule"]
    assert text(held.cmd(b"MAIL FROM:<a@example.org>")) == ["250 2.1.0 Ok"]
    held.cmd(b"QUIT")
    held.close()
    assert mail_then_rset(t) == (["250 2.1.0 Ok"], ["550 5.0.0 Second rule"],
                                 ["502 5.5.1 Flag rule"])

    # A broken file: the reason on stderr, the rules in force stay.
    write_ini(ini, "[fault third]\non = MAIL\n")
    t.proc.send_signal(signal.SIGHUP)
    m = t.wait_for(r"^smtptap: SIGHUP: .*$", count=2)
    why = m.group(0)
    assert str(ini) in why and "[fault third]" in why and '"action"' in why, why
    assert "keeping the 2 fault rules in force" in why, why
    assert mail_then_rset(t) == (["250 2.1.0 Ok"], ["550 5.0.0 Second rule"],
                                 ["502 5.5.1 Flag rule"])

    # Gone altogether: the same.
    ini.unlink()
    t.proc.send_signal(signal.SIGHUP)
    why = t.wait_for(r"^smtptap: SIGHUP: .*$", count=3).group(0)
    assert "cannot read" in why and "keeping the 2 fault rules in force" in why, why
    assert mail_then_rset(t) == (["250 2.1.0 Ok"], ["550 5.0.0 Second rule"],
                                 ["502 5.5.1 Flag rule"])
    assert t.running()
    n = len(t.sessions())
    t.wait_session_end(n)
    assert any(l.startswith("fault second: RSET answered by smtptap") for l in fault_lines(t))


def test_sighup_without_config_file_keeps_the_flag_rules(tap):
    t = tap(["--fault", "NOOP: reply 502 5.5.1 Flag rule"])
    t.proc.send_signal(signal.SIGHUP)
    why = t.wait_for(r"^smtptap: SIGHUP: .*$").group(0)
    assert "--config" in why, why
    with raw(t) as c:
        c.reply()
        assert text(c.cmd(b"NOOP")) == ["502 5.5.1 Flag rule"]
        c.cmd(b"QUIT")
    assert t.running()


# --------------------------------------------------------------------------- malformed rules


def test_misspelt_stage_is_a_usage_error_naming_the_flag():
    rc, out, err = smtptap_fails("--fault", "RCTP x: drop")
    assert rc == EX_USAGE, err
    assert "listening" not in err
    assert "--fault" in err and '"RCTP x: drop"' in err, err
    assert "RCTP" in err and "expected" in err and "RCPT" in err and "DATA-END" in err, err


def test_reply_code_below_200_is_refused():
    rc, out, err = smtptap_fails("--fault", "RCPT: reply 199 x")
    assert rc == EX_USAGE, err
    assert "--fault" in err and "199" in err and "200" in err and "599" in err, err


@pytest.mark.parametrize("rule, words", [
    ("RCPT drop", ['missing ":"', "VERB [GLOB]: ACTION"]),
    ("RCPT: explode", ["explode", "expected", "reply", "truncate"]),
    ("RCPT: strip STARTTLS", ["strip", "EHLO"]),
    ("GREETING x*: drop", ["GREETING"]),
    ("RCPT: delay soon", ["soon", "expected"]),
])
def test_other_bad_flags_are_usage_errors(rule, words):
    rc, out, err = smtptap_fails("--fault", "NOOP: drop", "--fault", rule)
    assert rc == EX_USAGE, err
    assert "--fault #2" in err and f'"{rule}"' in err, err
    for w in words:
        assert w in err, f"{w!r} not in {err!r}"


def test_bad_seed_is_a_usage_error():
    rc, out, err = smtptap_fails("--seed", "seven")
    assert rc == EX_USAGE
    assert "--seed" in err and "seven" in err, err


def test_ini_section_without_action_is_a_configuration_error(tmp_path):
    ini = write_ini(tmp_path / "f.ini", "[listen]\nmax_sessions = 5\n\n"
                                        "[fault no-action]\non = RCPT\nmatch = *@x.example\n")
    rc, out, err = smtptap_fails("-c", ini)
    assert rc == EX_CONFIG, err
    assert "listening" not in err
    assert ini in err and "[fault no-action]" in err and '"action"' in err, err


def test_empty_fault_section_is_a_configuration_error(tmp_path):
    """A [fault NAME] section with no keys at all has no action either: it must not be
    ignored silently (the file would say a rule exists that never fires)."""
    ini = write_ini(tmp_path / "f.ini", "[fault empty]\n\n[listen]\nmax_sessions = 5\n")
    rc, out, err = smtptap_fails("-c", ini, timeout=5)
    assert rc == EX_CONFIG, f"exit {rc}; stderr:\n{err}"
    assert "[fault empty]" in err, err


@pytest.mark.parametrize("body, words", [
    ("on = RCTP\naction = drop\n", ["on", "RCTP", "RCPT"]),
    ("on = RCPT\nnth = 0\naction = drop\n", ["nth", '"0"']),
    ("on = RCPT\nprobability = 1.5\naction = drop\n", ["probability", "1.5"]),
    ("on = RCPT\naction = reply 600 x\n", ["action", "600"]),
    ("action = drop\n", ['"on"']),
])
def test_bad_fault_sections_name_section_and_key(tmp_path, body, words):
    ini = write_ini(tmp_path / "f.ini", "[fault bad-one]\n" + body)
    rc, out, err = smtptap_fails("-c", ini)
    assert rc == EX_CONFIG, err
    assert ini in err and "[fault bad-one]" in err, err
    for w in words:
        assert w in err, f"{w!r} not in {err!r}"
