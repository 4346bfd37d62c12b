"""Failures on either side of a session.

Each case ends with a clear transcript line, a 421 for the client when it is still
there, and smtptap still serving: the same smtptap then relays a message from swaks
successfully (the failing upstream is scripted to fail once and then work, see
rawserver.ScriptedServer).
"""

import re
import shlex
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest

import harness
from harness import RawSmtpClient
from rawserver import ScriptedServer

FROM, TO = "alice@example.org", "bob@example.net"
# Where a failure is followed by a swaks session: the failed session must have been
# released, not just reported as ended, for the next one to be served.
ONE = ("--max-sessions", "1")


@pytest.fixture(autouse=True)
def _swaks(need):
    need("swaks")


def raw(tap, timeout=10.0) -> RawSmtpClient:
    return RawSmtpClient("127.0.0.1", tap.port, timeout=timeout)


def text(lines):
    return [l.decode("utf-8", "replace") for l in lines]


def swaks_delivers(tap, srv, n_before=0):
    """A complete swaks session through TAP; the upstream SRV records its message."""
    subject = f"next session {time.monotonic_ns()}"
    rc, out, err = harness.swaks(tap.hostport, "--from", FROM, "--to", TO, "--helo", "client.test",
                                 "--header", f"Subject: {subject}")
    assert rc == 0, f"swaks through smtptap failed after the failure (rc {rc}):\n{out}\n{err}"
    msgs = srv.wait_for_messages(n_before + 1)
    assert len(msgs) == n_before + 1, f"upstream recorded {len(msgs)} messages, expected {n_before + 1}"
    assert f"Subject: {subject}".encode() in msgs[-1].content, msgs[-1].content
    assert tap.running()
    return msgs


def session_of(tap, client_port):
    m = tap.wait_for(rf"^#(\d+) \+\S+ == 127\.0\.0\.1:{client_port} connected to ")
    return int(m.group(1))


def closed_by_peer(c: RawSmtpClient, timeout=5.0) -> bytes:
    """What is left to read until the peer closes (asserts it does close)."""
    try:
        return c.read_until_closed(timeout)
    except socket.timeout:
        raise AssertionError(f"smtptap did not close the client connection within {timeout}s") from None


# --------------------------------------------------------------------------- upstream side


def test_upstream_refused(tap):
    port = harness.free_port()
    t = tap(["-u", f"127.0.0.1:{port}", *ONE])
    with raw(t) as c:
        cport = c.sock.getsockname()[1]
        assert text(c.reply()) == [f"421 4.4.0 smtptap: upstream 127.0.0.1:{port} unreachable "
                                   "(connection refused)"]
        assert closed_by_peer(c) == b""
    sid = session_of(t, cport)
    t.wait_for(rf"^#{sid} \+\S+ <\*\* upstream 127\.0\.0\.1:{port} unreachable: connection refused$")
    t.wait_for(rf"^#{sid} \+\S+ <-  421 4\.4\.0 smtptap: upstream 127\.0\.0\.1:{port} unreachable "
               r"\(connection refused\)  \[smtptap\]$")
    t.wait_session_end(sid)
    # The same smtptap, the upstream now up on that port.
    with ScriptedServer(port=port) as srv:
        swaks_delivers(t, srv)


def hosts_wrapper(tmp_path):
    """A wrapper running smtptap with a private /etc/hosts (a mount namespace), so that a
    name can be made resolvable later; None when mount namespaces are not permitted."""
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                            'mount --bind "$1" /etc/hosts', "sh", str(hosts)],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return None, hosts
    w = tmp_path / "smtptap-private-hosts"
    w.write_text("#!/bin/sh\n"
                 f"exec unshare --mount --propagation private -- sh -c "
                 f"'mount --bind \"$1\" /etc/hosts || exit 70; shift; exec \"$@\"' "
                 f"sh {shlex.quote(str(hosts))} {shlex.quote(harness.smtptap_bin())} \"$@\"\n")
    w.chmod(0o755)
    return str(w), hosts


def test_upstream_unresolvable(tap, tmp_path):
    wrapper, hosts = hosts_wrapper(tmp_path)
    srv = ScriptedServer().start()
    try:
        up = f"nonexistent.invalid:{srv.port if wrapper else 25}"
        t = tap(["-u", up, *ONE], binary=wrapper) if wrapper else tap(["-u", up, *ONE])
        with raw(t) as c:
            cport = c.sock.getsockname()[1]
            r = text(c.reply())
            assert len(r) == 1 and re.match(
                rf"^421 4\.4\.0 smtptap: upstream {re.escape(up)} unreachable \(cannot resolve "
                r"nonexistent\.invalid: .+\)$", r[0]), r
            assert closed_by_peer(c) == b""
        sid = session_of(t, cport)
        t.wait_for(rf"^#{sid} \+\S+ <\*\* upstream {re.escape(up)} unreachable: cannot resolve "
                   r"nonexistent\.invalid")
        t.wait_session_end(sid)
        if wrapper is None:
            # No private /etc/hosts: the name stays unresolvable; the next session must still
            # be served (and refused the same way).
            with raw(t) as c:
                assert text(c.reply())[0].startswith(f"421 4.4.0 smtptap: upstream {up} unreachable")
            return
        with open(hosts, "a") as f:  # same inode: the bind mount sees it
            f.write("127.0.0.1 nonexistent.invalid\n")
        swaks_delivers(t, srv)
        assert t.wait_for(r"== upstream 127\.0\.0\.1:\d+ connected from")
    finally:
        srv.stop()


def test_silent_upstream_times_out(tap):
    with ScriptedServer(behaviours=["silent"]) as srv:
        t = tap(["-u", srv.hostport, "--connect-timeout", "1s", *ONE])
        with raw(t) as c:
            cport = c.sock.getsockname()[1]
            t0 = time.monotonic()
            r = text(c.reply())
            took = time.monotonic() - t0
            assert len(r) == 1 and r[0].startswith(
                f"421 4.4.2 smtptap: upstream {srv.hostport} timed out"), r
            assert 0.8 <= took <= 4.0, f"421 after {took:.2f}s with --connect-timeout 1s"
            assert closed_by_peer(c) == b""
        sid = session_of(t, cport)
        t.wait_for(rf"^#{sid} \+\S+ <\*\* upstream {re.escape(srv.hostport)} timed out")
        t.wait_session_end(sid)
        srv.wait_closed(1)  # smtptap hung up on the silent server too
        swaks_delivers(t, srv)


def test_connect_timeout_syn_unanswered(tap):
    """The TCP connect itself never completes (the server's accept queue is full, so its
    SYNs are dropped): DESIGN.md's wording for an unreachable upstream,
    `421 4.4.2 smtptap: upstream HOST:PORT unreachable (connect timed out after 1s)`.  With
    --max-sessions 1 the next session is only served if the failed one was released."""
    problems = []
    with ScriptedServer(backlog=0, accepting=False, behaviours=["silent"]) as srv:
        filler = socket.create_connection(("127.0.0.1", srv.port), timeout=5)  # fills the queue
        try:
            probe = socket.socket()
            probe.settimeout(0.3)
            with pytest.raises(socket.timeout):
                probe.connect(("127.0.0.1", srv.port))  # the precondition: SYNs unanswered
            probe.close()
            t = tap(["-u", srv.hostport, "--connect-timeout", "1s", "--max-sessions", "1"])
            with raw(t) as c:
                cport = c.sock.getsockname()[1]
                t0 = time.monotonic()
                r = text(c.reply())
                took = time.monotonic() - t0
                assert 0.8 <= took <= 4.0, f"421 after {took:.2f}s with --connect-timeout 1s"
                assert closed_by_peer(c) == b""
            sid = session_of(t, cport)
            t.wait_session_end(sid)
            t.wait_for(rf"^#{sid} \+\S+ <\*\* upstream {re.escape(srv.hostport)} .*timed out")
            want = f"421 4.4.2 smtptap: upstream {srv.hostport} unreachable (connect timed out after 1s)"
            if not (len(r) == 1 and r[0].startswith(want)):
                problems.append(f"client got {r}, contract wording starts {want!r}")
        finally:
            filler.close()
        srv.resume()
        srv.wait_closed(1)  # the filler, accepted at last
        rc, out, err = harness.swaks(t.hostport, "--from", FROM, "--to", TO)
        if rc != 0:
            problems.append(f"the next session was not served (rc {rc}): "
                            f"{harness.swaks_replies(out)[:2]} - the timed-out session still "
                            f"holds its --max-sessions slot")
        else:
            srv.wait_for_messages(1)
    assert not problems, "\n".join(problems)


def test_upstream_closes_mid_data(tap):
    marker = b"-- the server hangs up after this --"
    with ScriptedServer(behaviours=[("close_in_data", marker)]) as srv:
        t = tap(["-u", srv.hostport, *ONE])
        with raw(t) as c:
            cport = c.sock.getsockname()[1]
            assert text(c.reply()) == [srv.greeting]
            assert c.cmd(b"EHLO client.test")[-1].startswith(b"250 ")
            assert c.cmd(b"MAIL FROM:<a@example.org>")[0].startswith(b"250")
            assert c.cmd(b"RCPT TO:<b@example.net>")[0].startswith(b"250")
            assert c.cmd(b"DATA")[0].startswith(b"354")
            c.send(b"Subject: cut short\r\n\r\nfirst line\r\n" + marker)
            r = text(c.reply())
            assert r == ["421 4.4.0 smtptap: upstream closed the connection during DATA"], r
            assert closed_by_peer(c) == b""
        sid = session_of(t, cport)
        t.wait_for(rf"^#{sid} \+\S+ <\*\* upstream closed the connection during DATA$")
        t.wait_session_end(sid)
        assert srv.messages == []
        swaks_delivers(t, srv)


# --------------------------------------------------------------------------- client side


def test_client_disconnects_mid_data(tap, aiosmtpd):
    t = tap(["-u", aiosmtpd.hostport, *ONE])
    c = raw(t)
    try:
        cport = c.sock.getsockname()[1]
        assert c.code() == 220
        assert c.cmd(b"EHLO client.test")[-1].startswith(b"250 ")
        assert c.cmd(b"MAIL FROM:<cut@example.org>")[0].startswith(b"250")
        assert c.cmd(b"RCPT TO:<b@example.net>")[0].startswith(b"250")
        assert c.cmd(b"DATA")[0].startswith(b"354")
        c.send(b"Subject: never finished\r\n\r\nfirst line\r\nsecond line\r\nthird, cut")
        sid = session_of(t, cport)
        t.wait_for(rf"^#{sid} \+\S+  -> second line$")  # relayed before the client goes
    finally:
        c.close()
    t.wait_for(rf"^#{sid} \+\S+ \*\*> client closed the connection during DATA")
    t.wait_session_end(sid)
    msgs = swaks_delivers(t, aiosmtpd)
    assert [m.mail_from for m in msgs] == [FROM], \
        f"the upstream recorded the cut message: {[m.mail_from for m in msgs]}"


def test_idle_timeout(tap, aiosmtpd):
    t = tap(["-u", aiosmtpd.hostport, "--idle-timeout", "1s", *ONE])
    with raw(t) as c:
        cport = c.sock.getsockname()[1]
        assert c.code() == 220
        assert c.cmd(b"EHLO client.test")[-1].startswith(b"250 ")
        t0 = time.monotonic()
        r = text(c.reply())
        took = time.monotonic() - t0
        assert len(r) == 1 and r[0].startswith("421 4.4.2 "), r
        assert 0.8 <= took <= 4.0, f"idle 421 after {took:.2f}s with --idle-timeout 1s"
        assert closed_by_peer(c) == b""
    sid = session_of(t, cport)
    t.wait_for(rf"^#{sid} \+\S+ <-  421 4\.4\.2 .*\[smtptap\]$")
    t.wait_session_end(sid)
    swaks_delivers(t, aiosmtpd)


# --------------------------------------------------------------------------- hostile input


def lint_lines(tap, sid):
    return [l.text for l in tap.lines(sid) if l.marker == "**"]


def test_hostile_100k_command_line_without_lf(tap):
    with ScriptedServer() as srv:
        t = tap(["-u", srv.hostport])
        long = b"NOOP " + b"A" * 100_000
        with raw(t) as c:
            cport = c.sock.getsockname()[1]
            assert c.code() == 220
            assert c.cmd(b"EHLO client.test")[-1].startswith(b"250 ")
            c.send(long)
            sid = session_of(t, cport)
            t.wait_for(rf"^#{sid} \+\S+ \*\* lint: command line longer than")
            # smtptap waits for the rest of the line: no reply yet, and it still works
            c.send(b"\r\n")
            assert c.code() == 250
            assert c.cmd(b"QUIT")[0].startswith(b"221")
        t.wait_session_end(sid)
        srv.wait_closed(1)
        # Forwarded as is, never dropped (DESIGN "Relay semantics").
        assert long + b"\r\n" in bytes(srv.received[1]), "the 100 KB line did not reach the server intact"
        # And a client that sends 100 KB without LF and goes away.
        with raw(t) as c:
            cport = c.sock.getsockname()[1]
            assert c.code() == 220
            c.send(b"X" * 100_000)
            sid2 = session_of(t, cport)
            t.wait_for(rf"^#{sid2} \+\S+ \*\* lint: command line longer than")
        t.wait_session_end(sid2)
        assert lint_lines(t, sid)
        swaks_delivers(t, srv)


def test_hostile_200k_reply_without_code(tap):
    with ScriptedServer(behaviours=[("huge_reply", 200_000)]) as srv:
        t = tap(["-u", srv.hostport])
        with raw(t) as c:
            cport = c.sock.getsockname()[1]
            assert text(c.reply()) == [srv.greeting]
            c.send(b"EHLO client.test\r\n")
            line = c.line()
            assert line == b"x" * 200_000, f"the 200 KB reply was not relayed intact ({len(line or b'')} octets)"
            assert c.cmd(b"QUIT")[0].startswith(b"221")
            assert closed_by_peer(c) == b""
        sid = session_of(t, cport)
        t.wait_session_end(sid)
        lints = lint_lines(t, sid)
        assert any("reply" in l for l in lints), f"no lint about the reply: {lints}"
        swaks_delivers(t, srv)


def test_hostile_nul_bytes_in_commands(tap):
    with ScriptedServer() as srv:
        t = tap(["-u", srv.hostport])
        cmds = [b"EHLO nul\x00host", b"NOOP\x00\x00\x00", b"\x00\x00\x00\x00",
                b"MAIL FROM:<a\x00b@example.org>", b"RSET\x00"]
        with raw(t) as c:
            cport = c.sock.getsockname()[1]
            assert c.code() == 220
            for cmd in cmds:
                c.cmd(cmd)  # any reply: the server decides, smtptap relays
            assert c.cmd(b"QUIT")[0].startswith(b"221")
        sid = session_of(t, cport)
        t.wait_session_end(sid)
        srv.wait_closed(1)
        got = bytes(srv.received[1])
        for cmd in cmds:
            assert cmd + b"\r\n" in got, f"{cmd!r} did not reach the server unchanged"
        lints = lint_lines(t, sid)
        assert any("NUL" in l for l in lints), f"no NUL lint: {lints}"
        shown = [l.text for l in t.lines(sid) if l.is_command]
        assert "EHLO nul\\0host" in shown, shown
        swaks_delivers(t, srv)


# --------------------------------------------------------------------------- limits & shutdown


def test_max_sessions(tap, aiosmtpd):
    t = tap(["-u", aiosmtpd.hostport, "--max-sessions", "2"])
    c1, c2 = raw(t), raw(t)
    try:
        assert c1.code() == 220 and c2.code() == 220
        with raw(t) as c3:
            r = text(c3.reply())
            assert len(r) == 1 and re.match(r"^421 4\.3\.2 .*too many sessions", r[0]), r
            assert closed_by_peer(c3) == b""
        for c in (c1, c2):
            assert c.cmd(b"QUIT")[0].startswith(b"221")
            assert closed_by_peer(c) == b""
    finally:
        c1.close()
        c2.close()
    t.wait_for(r"== session ended", count=2)
    assert len(t.sessions()) == 2, f"the refused connection became a session: {t.sessions()}"
    swaks_delivers(t, aiosmtpd)


def capture_files(d: Path):
    return sorted(p for p in d.iterdir() if p.is_file())


def test_sigterm_lets_a_running_session_finish(aiosmtpd, tmp_path, request):
    cap = tmp_path / "cap"
    t = harness.Smtptap(["-u", aiosmtpd.hostport, "-d", str(cap)])
    request.node._smtptaps = [t]
    with t:
        c = raw(t)
        try:
            assert c.code() == 220
            assert c.cmd(b"EHLO client.test")[-1].startswith(b"250 ")
            assert c.cmd(b"MAIL FROM:<late@example.org>")[0].startswith(b"250")
            t.proc.send_signal(signal.SIGTERM)
            t0 = time.monotonic()
            t.wait_for(r"(?i)\b(terminated|sigterm)\b")  # the signal was handled (stderr notice)
            # The session goes on during the grace period.
            assert c.cmd(b"RCPT TO:<b@example.net>")[0].startswith(b"250")
            assert c.cmd(b"DATA")[0].startswith(b"354")
            assert c.cmd(b"Subject: after SIGTERM\r\n\r\nbody\r\n.")[0].startswith(b"250")
            assert c.cmd(b"QUIT")[0].startswith(b"221")
        finally:
            c.close()
        rc = t.proc.wait(7)
        assert time.monotonic() - t0 < 7
        assert rc == 0, t.transcript()
    assert [m.mail_from for m in aiosmtpd.wait_for_messages(1)] == ["late@example.org"]
    files = capture_files(cap)
    assert len(files) == 1, files
    body = files[0].read_text(errors="replace")
    assert "-> RCPT TO:<b@example.net>" in body and re.search(r"== session ended", body), body


def test_sigterm_with_idle_session_open(aiosmtpd, tmp_path, request):
    cap = tmp_path / "cap"
    t = harness.Smtptap(["-u", aiosmtpd.hostport, "-d", str(cap)])
    request.node._smtptaps = [t]
    t.start()
    try:
        with raw(t, timeout=15) as c:
            cport = c.sock.getsockname()[1]
            assert c.code() == 220
            assert c.cmd(b"EHLO client.test")[-1].startswith(b"250 ")
            assert c.cmd(b"MAIL FROM:<idle@example.org>")[0].startswith(b"250")
            sid = session_of(t, cport)
            t0 = time.monotonic()
            t.proc.send_signal(signal.SIGTERM)
            try:
                rc = t.proc.wait(7.5)
            except subprocess.TimeoutExpired:
                raise AssertionError("smtptap did not exit within 7 s of SIGTERM (grace 5 s + 2 s) "
                                     "with an idle session open\n" + t.transcript()) from None
            took = time.monotonic() - t0
            assert rc == 0, f"exit status {rc} after SIGTERM\n{t.transcript()}"
            assert took <= 7.0, took
            rest = closed_by_peer(c)
            assert rest == b"" or rest.startswith(b"421 "), rest
        # stop() joins the readers, checks rc 0 and no sanitizer report
        t.stop()
    finally:
        if t.running():
            t.stop(check=False)
    assert cap.is_dir() and stat.S_IMODE(cap.stat().st_mode) == 0o700
    files = capture_files(cap)
    assert len(files) == 1, files
    f = files[0]
    assert re.match(rf"^\d{{8}}T\d{{6}}-{sid}-127\.0\.0\.1_{cport}\.txt$", f.name), f.name
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    body = f.read_text(errors="replace")
    live = [l.raw for l in t.lines(sid)]
    cap_lines = [l.raw for l in harness.parse_transcript(body)]
    assert cap_lines == live, f"capture file differs from the live transcript:\n{body}\n---\n{live}"
    for want in (r" -> EHLO client\.test$", r" -> MAIL FROM:<idle@example\.org>$", r"== session ended"):
        assert re.search(want, body, re.M), f"{want!r} not in the capture file:\n{body}"
