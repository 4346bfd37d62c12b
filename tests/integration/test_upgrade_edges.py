"""Edge cases of smtptap's upstream STARTTLS upgrade and of implicit TLS on both sides
(README "TLS"), each turned from a reviewer's reproduction script into a test:

- a command pipelined before the client's first EHLO keeps its own reply, and the EHLO
  gets the reply from inside TLS (FIFO pairing around the probe);
- a 421 from the server during the upgrade reaches the client as the server sent it;
- the server closing during the upgrade's TLS handshake gets the client a 421;
- implicit TLS both sides: a failed upstream (untrusted certificate, refused port) still
  gets the TLS client its 421 after its handshake;
- a client whose ClientHello waits for the upstream cannot make smtptap buffer unbounded;
- `starttls:`: nothing the client sends before EHLO goes to the server in clear;
- an EHLO reply over 64 KiB during the upgrade (`starttls:` refuses, no prefix relays);
- a client that pipelines EHLO + QUIT and half-closes still gets both replies;
- a client silent after smtptap's STARTTLS 220 does not get the implicit-TLS hint.

The upstream is a small scripted SMTP server (FakeServer below) so that each test
decides exactly what the server says, when, and whether it upgrades.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import threading
import time
from typing import Callable, List, Optional, Tuple

import pytest

import harness
from harness import AiosmtpdServer, CertAuthority, RawSmtpClient

# --------------------------------------------------------------------------- fake server


class FakeConn:
    """One accepted connection of FakeServer: line reader, STARTTLS, and a log of every
    line received as (in_tls, line)."""

    def __init__(self, sock: socket.socket, stop: threading.Event):
        self.sock = sock
        self.buf = b""
        self.tls = False
        self.log: List[Tuple[bool, bytes]] = []
        self.stop = stop

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self, timeout: float = 10.0) -> Optional[bytes]:
        self.sock.settimeout(timeout)
        while b"\n" not in self.buf:
            try:
                d = self.sock.recv(65536)
            except (OSError, ssl.SSLError):
                return None
            if not d:
                return None
            self.buf += d
        ln, _, self.buf = self.buf.partition(b"\n")
        ln = ln.rstrip(b"\r")
        self.log.append((self.tls, ln))
        return ln

    def starttls(self, ctx: ssl.SSLContext) -> None:
        assert not self.buf, f"bytes after STARTTLS before the handshake: {self.buf!r}"
        self.sock = ctx.wrap_socket(self.sock, server_side=True)
        self.tls = True

    def lines(self, tls: Optional[bool] = None) -> List[bytes]:
        return [l for t, l in self.log if tls is None or t == tls]


class FakeServer:
    """A scripted upstream on 127.0.0.1: HANDLER(conn) runs in a thread per connection;
    the socket is closed when it returns."""

    def __init__(self, handler: Callable[[FakeConn], None]):
        self.handler = handler
        self.stop_ev = threading.Event()
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(16)
        self.port = self.ls.getsockname()[1]
        self.conns: List[FakeConn] = []
        self.errors: List[str] = []
        self._threads: List[threading.Thread] = []
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)

    def _accept(self):
        while True:
            try:
                s, _ = self.ls.accept()
            except OSError:
                return
            c = FakeConn(s, self.stop_ev)
            self.conns.append(c)
            t = threading.Thread(target=self._run, args=(c,), daemon=True)
            t.start()
            self._threads.append(t)

    def _run(self, c: FakeConn):
        try:
            self.handler(c)
        except Exception as e:  # noqa: BLE001 - recorded for the test to look at
            self.errors.append(repr(e))
        finally:
            try:
                c.sock.close()
            except OSError:
                pass

    def wait_connections(self, n: int = 1, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.conns) < n:
            assert time.monotonic() < deadline, f"fake server: {len(self.conns)} connections, wanted {n}"
            time.sleep(0.01)

    def close(self):
        self.stop_ev.set()
        try:   # shutdown wakes the accept() thread
            self.ls.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.ls.close()
        except OSError:
            pass
        for c in list(self.conns):
            try:   # shutdown wakes a handler blocked in recv(); close alone may not
                c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                c.sock.close()
            except OSError:
                pass
        for t in self._threads:
            t.join(3)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


CLEAR_EHLO = b"250-fake clear\r\n250-STARTTLS\r\n250 PIPELINING\r\n"
TLS_EHLO = b"250-fake tls\r\n250 PIPELINING\r\n"


def smtp_server(ctx: ssl.SSLContext, *, quit_delay: float = 0.0):
    """A small ESMTP server that offers STARTTLS in clear, says 'fake clear' / 'fake tls'
    in its EHLO reply's first line, answers NOOP with '250 OK NOOP', takes DATA."""

    def server(c: FakeConn):
        c.send(b"220 fake ESMTP\r\n")
        while True:
            ln = c.line()
            if ln is None:
                return
            verb = ln.split(b" ")[0].upper()
            if verb in (b"EHLO", b"HELO"):
                c.send(TLS_EHLO if c.tls else CLEAR_EHLO)
            elif verb == b"STARTTLS" and not c.tls:
                c.send(b"220 go ahead\r\n")
                c.starttls(ctx)
            elif verb == b"DATA":
                c.send(b"354 go on\r\n")
                while True:
                    d = c.line()
                    if d is None:
                        return
                    if d == b".":
                        break
                c.send(b"250 queued\r\n")
            elif verb == b"QUIT":
                if quit_delay:
                    time.sleep(quit_delay)
                c.send(b"221 bye\r\n")
                return
            else:
                c.send(b"250 OK " + verb + b"\r\n")

    return server


@pytest.fixture
def upstream_ca(tmp_path):
    """(CertAuthority, server SSLContext for localhost/127.0.0.1)."""
    ca = CertAuthority(str(tmp_path))
    return ca, ca.server_context(["localhost", "127.0.0.1"])


def texts(tap, marker: Optional[str] = None) -> List[str]:
    return [l.text for l in tap.lines() if marker is None or l.marker == marker]


def read_all(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Everything until EOF; a timeout is a failure (smtptap kept the connection open)."""
    sock.settimeout(timeout)
    got = b""
    while True:
        try:
            d = sock.recv(65536)
        except socket.timeout:
            raise AssertionError(f"no EOF within {timeout}s; got so far {got!r}") from None
        if not d:
            return got
        got += d


# --------------------------------------------------------------------------- r1


@pytest.mark.parametrize("prefix", ["starttls:", ""], ids=["starttls", "noprefix"])
def test_command_pipelined_before_ehlo_keeps_its_own_reply(tap, upstream_ca, prefix):
    ca, ctx = upstream_ca
    with FakeServer(smtp_server(ctx)) as srv:
        t = tap(["-u", f"{prefix}localhost:{srv.port}", "--upstream-ca", ca.cert_path])
        with RawSmtpClient("127.0.0.1", t.port) as c:
            assert c.reply() == [b"220 fake ESMTP"]
            c.send(b"NOOP\r\nEHLO client.test\r\n")
            noop = c.reply()
            ehlo = c.reply()
        t.wait_session_end(1)
        assert noop == [b"250 OK NOOP"], f"NOOP got {noop!r}\n{t.transcript()}"
        # The EHLO reply is the one from inside TLS (smtptap may add its own STARTTLS).
        assert ehlo[0] == b"250-fake tls", f"EHLO got {ehlo!r}\n{t.transcript()}"
        assert ehlo[-1].startswith(b"250 "), ehlo
        assert b"250-fake clear" not in ehlo, ehlo
        replies = texts(t, "<- ")
        noop_lines = [x for x in replies if x.startswith("250 OK NOOP")]
        assert noop_lines == ["250 OK NOOP"], (noop_lines, t.transcript())
        tr = t.transcript()
        assert "smtptap upgrades the upstream leg" in tr, tr
        assert "== upstream TLS:" in tr, tr
        assert "does not offer STARTTLS" not in tr, tr
        conn = srv.conns[0]
        assert conn.lines(tls=False) == [b"NOOP", b"EHLO client.test", b"STARTTLS"], conn.log
        assert conn.lines(tls=True)[:1] == [b"EHLO client.test"], conn.log


# --------------------------------------------------------------------------- r2


def _server_421(case: str):
    def server(c: FakeConn):
        c.send(b"220 fake ESMTP\r\n")
        while True:
            ln = c.line()
            if ln is None:
                return
            verb = ln.split(b" ")[0].upper()
            if verb == b"EHLO":
                if case == "ehlo421":
                    c.send(b"421 4.3.2 going down\r\n")
                    time.sleep(0.2)
                    return
                c.send(CLEAR_EHLO)
            elif verb == b"STARTTLS":
                c.send(b"421 4.3.2 too busy\r\n")
                time.sleep(0.2)
                return
            else:
                c.send(b"250 OK\r\n")
    return server


@pytest.mark.parametrize("case,hello,expect", [
    ("ehlo421", b"HELO client.test", b"421 4.3.2 going down\r\n"),
    ("starttls421", b"EHLO client.test", b"421 4.3.2 too busy\r\n"),
    ("starttls421", b"HELO client.test", b"421 4.3.2 too busy\r\n"),
], ids=["probe-ehlo-421-helo-client", "starttls-421-ehlo-client", "starttls-421-helo-client"])
def test_421_during_upgrade_reaches_the_client(tap, upstream_ca, case, hello, expect):
    ca, _ = upstream_ca
    with FakeServer(_server_421(case)) as srv:
        t = tap(["-u", f"localhost:{srv.port}", "--upstream-ca", ca.cert_path])
        with RawSmtpClient("127.0.0.1", t.port) as c:
            assert c.reply() == [b"220 fake ESMTP"]
            c.send(hello + b"\r\n")
            got = c.read_until_closed(5)
        t.wait_session_end(1)
        assert got == expect, f"client got {got!r}\n{t.transcript()}"
        assert "answered 421 during the STARTTLS upgrade: the client gets it" in t.transcript(), \
            t.transcript()


# --------------------------------------------------------------------------- r3


def _server_close_in_handshake(c: FakeConn):
    c.send(b"220 fake ESMTP\r\n")
    while True:
        ln = c.line()
        if ln is None:
            return
        verb = ln.split(b" ")[0].upper()
        if verb == b"EHLO":
            c.send(CLEAR_EHLO)
        elif verb == b"STARTTLS":
            c.send(b"220 go ahead\r\n")
            time.sleep(0.2)
            c.sock.shutdown(socket.SHUT_WR)
            time.sleep(0.5)
            return


@pytest.mark.parametrize("prefix", ["starttls:", ""], ids=["starttls", "noprefix"])
def test_upstream_closes_during_upgrade_handshake(tap, upstream_ca, prefix):
    ca, _ = upstream_ca
    with FakeServer(_server_close_in_handshake) as srv:
        t = tap(["-u", f"{prefix}localhost:{srv.port}", "--upstream-ca", ca.cert_path])
        with RawSmtpClient("127.0.0.1", t.port) as c:
            assert c.reply() == [b"220 fake ESMTP"]
            c.send(b"EHLO client.test\r\n")
            got = c.read_until_closed(5)
        t.wait_session_end(1)
        assert got == b"421 4.4.0 smtptap: upstream closed the connection during the TLS handshake\r\n", \
            f"client got {got!r}\n{t.transcript()}"


# --------------------------------------------------------------------------- r6, r6b


def _tls_client_read(port: int, ca_pem: str) -> bytes:
    """Implicit-TLS client trusting smtptap's CA: handshake, then read until EOF."""
    ctx = ssl.create_default_context(cafile=ca_pem)
    raw = socket.create_connection(("127.0.0.1", port), timeout=8)
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        return read_all(s, 8)


def test_implicit_tls_both_sides_untrusted_upstream_cert(tap, tmp_path):
    ca_dir, ca_pem = harness.smtptap_ca(tmp_path)
    other = CertAuthority(str(tmp_path))   # not given to smtptap: untrusted
    sctx = other.server_context(["localhost", "127.0.0.1"])

    def server(c: FakeConn):
        c.starttls(sctx)
        c.send(b"220 fake\r\n")
        c.stop.wait(10)

    with FakeServer(server) as srv:
        t = tap(["-u", f"tls:localhost:{srv.port}", "--ca-dir", ca_dir],
                listen="tls:127.0.0.1:0")
        got = _tls_client_read(t.port, ca_pem)
        t.wait_session_end(1, timeout=8)
        assert got.startswith(b"421 4.4.0 "), f"client got {got!r}\n{t.transcript()}"
        assert got.endswith(b"\r\n") and got.count(b"\r\n") == 1, got
        assert b"TLS failed: certificate verify failed" in got, got


def test_implicit_tls_both_sides_upstream_refused(tap, tmp_path):
    ca_dir, ca_pem = harness.smtptap_ca(tmp_path)
    port = harness.free_port()
    t = tap(["-u", f"tls:127.0.0.1:{port}", "--ca-dir", ca_dir], listen="tls:127.0.0.1:0")
    got = _tls_client_read(t.port, ca_pem)
    t.wait_session_end(1, timeout=8)
    assert re.fullmatch(rb"421 4\.4\.0 .*unreachable \(connection refused\)\r\n", got), \
        f"client got {got!r}\n{t.transcript()}"


# --------------------------------------------------------------------------- r4


def _vm_hwm_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for ln in f:
            if ln.startswith("VmHWM:"):
                return int(ln.split()[1])
    raise AssertionError("no VmHWM in /proc/PID/status")


def test_parked_clienthello_bounds_client_bytes(tap, tmp_path):
    asan = "asan" in harness.smtptap_bin()
    limit_mib = 256 if asan else 64

    def server(c: FakeConn):   # accepts TCP, never answers the TLS handshake
        c.stop.wait(30)

    with FakeServer(server) as srv:
        t = tap(["-u", f"tls:localhost:{srv.port}", "--ca-dir", str(tmp_path / "tapca"),
                 "--connect-timeout", "20s"], listen="tls:127.0.0.1:0")
        cctx = ssl.create_default_context()
        cctx.check_hostname = False
        cctx.verify_mode = ssl.CERT_NONE
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = cctx.wrap_bio(inc, out, server_hostname="x.test")
        with pytest.raises(ssl.SSLWantReadError):
            obj.do_handshake()
        hello = out.read()
        s = socket.create_connection(("127.0.0.1", t.port))
        s.settimeout(5)
        junk = b"\x17\x03\x03\x40\x00" + b"A" * 0x4000
        cap = (limit_mib + 64) << 20   # enough to blow the limit if nothing stops it
        sent = 0
        disconnected = False
        try:
            s.sendall(hello)
            while sent < cap:
                s.sendall(junk)
                sent += len(junk)
        except socket.timeout:
            raise AssertionError(f"smtptap stopped reading after {sent} bytes but kept the "
                                 f"connection open\n{t.transcript()}") from None
        except OSError:
            disconnected = True
        hwm = _vm_hwm_kib(t.proc.pid)
        if not disconnected:
            try:
                disconnected = s.recv(65536) == b""
            except socket.timeout:
                disconnected = False
            except OSError:
                disconnected = True
        s.close()
        assert disconnected, f"client not disconnected after {sent} bytes\n{t.transcript()}"
        assert hwm < limit_mib * 1024, f"smtptap peak RSS {hwm} KiB after {sent} bytes"
        t.wait_for(r"client sent over 64 KiB while its ClientHello waited")
        t.wait_session_end(1)


# --------------------------------------------------------------------------- r7


def test_starttls_prefix_refuses_commands_before_ehlo(tap, upstream_ca):
    ca, ctx = upstream_ca
    refused = [b"503 5.5.1 smtptap: EHLO first (starttls: upstream, nothing goes to it in clear)"]
    with FakeServer(smtp_server(ctx)) as srv:
        t = tap(["-u", f"starttls:localhost:{srv.port}", "--upstream-ca", ca.cert_path])
        with RawSmtpClient("127.0.0.1", t.port) as c:
            assert c.reply() == [b"220 fake ESMTP"]
            assert c.cmd(b"MAIL FROM:<a@example.org>") == refused
            assert c.cmd(b"AUTH PLAIN AGFsaWNlAFMzY3IzdA==") == refused
            ehlo = c.cmd(b"EHLO client.test")
            assert ehlo[0] == b"250-fake tls", ehlo
            assert c.cmd(b"MAIL FROM:<b@example.org>") == [b"250 OK MAIL"]
            assert c.cmd(b"RCPT TO:<c@example.net>") == [b"250 OK RCPT"]
            assert c.cmd(b"DATA")[-1].startswith(b"354")
            assert c.cmd(b"Subject: x\r\n\r\nhello\r\n.") == [b"250 queued"]
            assert c.cmd(b"QUIT") == [b"221 bye"]
        t.wait_session_end(1)
        conn = srv.conns[0]
        assert conn.lines(tls=False) == [b"EHLO client.test", b"STARTTLS"], conn.log
        inside = conn.lines(tls=True)
        assert inside[:3] == [b"EHLO client.test", b"MAIL FROM:<b@example.org>",
                              b"RCPT TO:<c@example.net>"], conn.log
        assert not any(l.startswith((b"AUTH", b"MAIL FROM:<a@")) for _, l in conn.log), conn.log
        assert inside[-1] == b"QUIT", conn.log


# --------------------------------------------------------------------------- r9


BIG_EHLO = b"".join(b"250-X%05d %s\r\n" % (i, b"y" * 60) for i in range(3000)) + b"250 STARTTLS\r\n"


def _server_big_ehlo(ctx):
    def server(c: FakeConn):
        c.send(b"220 fake ESMTP\r\n")
        while True:
            ln = c.line()
            if ln is None:
                return
            verb = ln.split(b" ")[0].upper()
            if verb == b"EHLO":
                c.send(TLS_EHLO if c.tls else BIG_EHLO)
            elif verb == b"STARTTLS":
                c.send(b"220 go ahead\r\n")
                c.starttls(ctx)
            elif verb == b"QUIT":
                c.send(b"221 bye\r\n")
                return
            else:
                c.send(b"250 OK\r\n")
    return server


def test_oversized_ehlo_reply_starttls_prefix(tap, upstream_ca):
    ca, ctx = upstream_ca
    assert len(BIG_EHLO) > 200_000
    with FakeServer(_server_big_ehlo(ctx)) as srv:
        t = tap(["-u", f"starttls:localhost:{srv.port}", "--upstream-ca", ca.cert_path])
        with RawSmtpClient("127.0.0.1", t.port) as c:
            assert c.reply() == [b"220 fake ESMTP"]
            c.send(b"EHLO x\r\n")
            got = c.read_until_closed(8)
        t.wait_session_end(1, timeout=8)
        want = (f"421 4.7.0 smtptap: upstream localhost:{srv.port}: sent a reply over 64 KiB "
                "while smtptap was upgrading the connection\r\n").encode()
        assert got == want, f"client got {len(got)} bytes: {got[:300]!r}...{got[-200:]!r}"


def test_oversized_ehlo_reply_no_prefix_is_relayed(tap, upstream_ca):
    ca, ctx = upstream_ca
    with FakeServer(_server_big_ehlo(ctx)) as srv:
        t = tap(["-u", f"localhost:{srv.port}", "--upstream-ca", ca.cert_path])
        with RawSmtpClient("127.0.0.1", t.port) as c:
            assert c.reply() == [b"220 fake ESMTP"]
            c.send(b"EHLO x\r\n")
            reply = c.reply()
            assert c.cmd(b"QUIT") == [b"221 bye"]
        t.wait_session_end(1, timeout=8)
        got = b"".join(l + b"\r\n" for l in reply)
        assert got == BIG_EHLO, (f"client got {len(got)} bytes in {len(reply)} lines, "
                                 f"first {reply[:2]!r}, last {reply[-2:]!r}")
        warn = [x for x in texts(t, "==") if x.startswith("notice: ") and
                "its EHLO reply is over 64 KiB, STARTTLS cannot be looked for" in x]
        assert warn, t.transcript()[-3000:]


def test_oversized_ehlo_reply_no_prefix_lets_pipelined_commands_go_on(tap, upstream_ca):
    """No prefix, an EHLO reply over 64 KiB, and a MAIL pipelined behind the EHLO in the same
    write: when the probe gives up (no STARTTLS can be looked for), the held MAIL goes on to
    the server and is answered at once, not when the client next writes (the review of the
    session refactor found it stuck until the idle timeout)."""
    ca, ctx = upstream_ca
    with FakeServer(_server_big_ehlo(ctx)) as srv:
        t = tap(["-u", f"localhost:{srv.port}", "--upstream-ca", ca.cert_path])
        with RawSmtpClient("127.0.0.1", t.port, timeout=5) as c:
            assert c.reply() == [b"220 fake ESMTP"]
            c.send(b"EHLO x\r\nMAIL FROM:<a@b.example>\r\n")
            reply = c.reply()
            assert len(reply) > 1000, len(reply)
            assert c.reply() == [b"250 OK"], "the pipelined MAIL was not answered"
            assert c.cmd(b"QUIT") == [b"221 bye"]
        t.wait_session_end(1, timeout=8)


# --------------------------------------------------------------------------- r5, r5b


def send_then_half_close(port, commands: bytes, greeting_prefix: bytes) -> bytes:
    """printf ... | nc -N: read the greeting, send COMMANDS in one write, half-close, and
    return everything smtptap sends until it closes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        assert s.recv(1000).startswith(greeting_prefix)
        s.sendall(commands)
        s.shutdown(socket.SHUT_WR)
        return read_all(s, 5)
    finally:
        s.close()


@pytest.mark.parametrize("quit_delay", [0.0, 0.2], ids=["221-at-once", "221-late"])
@pytest.mark.parametrize("prefix", ["", "plain:"], ids=["noprefix", "plain"])
def test_pipelined_ehlo_quit_then_half_close(tap, upstream_ca, prefix, quit_delay):
    ca, ctx = upstream_ca
    with FakeServer(smtp_server(ctx, quit_delay=quit_delay)) as srv:
        t = tap(["-u", f"{prefix}localhost:{srv.port}", "--upstream-ca", ca.cert_path])
        got = send_then_half_close(t.port, b"EHLO x\r\nQUIT\r\n", b"220 fake ESMTP\r\n")
        t.wait_session_end(1)
        first = b"250-fake tls\r\n" if prefix == "" else b"250-fake clear\r\n"
        assert got.startswith(first), f"client got {got!r}\n{t.transcript()}"
        assert got.endswith(b"250 PIPELINING\r\n221 bye\r\n"), f"client got {got!r}\n{t.transcript()}"
        if prefix == "":
            assert "== upstream TLS:" in t.transcript(), t.transcript()


@pytest.mark.parametrize("prefix", ["", "plain:"], ids=["noprefix", "plain"])
def test_pipelined_ehlo_quit_then_half_close_aiosmtpd(tap, upstream_ca, prefix):
    """The reviewer's r5 as written: a real (aiosmtpd) server offering STARTTLS."""
    ca, ctx = upstream_ca
    with AiosmtpdServer(tls_context=ctx) as srv:
        t = tap(["-u", f"{prefix}localhost:{srv.port}", "--upstream-ca", ca.cert_path])
        got = send_then_half_close(t.port, b"EHLO x\r\nQUIT\r\n", b"220 ")
        t.wait_session_end(1, timeout=8)
        assert got.startswith(b"250-"), f"client got {got!r}\n{t.transcript()}"
        assert re.search(rb"\r\n250 [^\r\n]*\r\n221 [^\r\n]*\r\n\Z", got), \
            f"client got {got!r}\n{t.transcript()}"


def test_pipelined_quit_then_half_close_late_221(tap):
    """r5b: QUIT then FIN; the server's 221 comes 0.1 s later and still reaches the client."""
    def server(c: FakeConn):
        c.send(b"220 fake ESMTP\r\n")
        while True:
            ln = c.line()
            if ln is None:
                return
            if ln.upper().startswith(b"QUIT"):
                time.sleep(0.1)
                c.send(b"221 bye\r\n")
                return
            c.send(b"250 ok\r\n")

    with FakeServer(server) as srv:
        t = tap(["-u", f"plain:localhost:{srv.port}"])
        got = send_then_half_close(t.port, b"QUIT\r\n", b"220 fake ESMTP\r\n")
        t.wait_session_end(1)
        assert got == b"221 bye\r\n", f"client got {got!r}\n{t.transcript()}"


# --------------------------------------------------------------------------- r8


def test_silent_after_starttls_220_gets_no_implicit_tls_hint(tap, tmp_path):
    t = tap(["-u", "sink", "--ca-dir", str(tmp_path / "ca"), "--client-starttls", "offer",
             "--idle-timeout", "1s"])
    with RawSmtpClient("127.0.0.1", t.port) as c:
        assert c.reply()[-1].startswith(b"220")
        assert c.cmd(b"EHLO x")[-1].startswith(b"250")
        assert c.cmd(b"STARTTLS")[-1].startswith(b"220")
        t.wait_session_end(1, timeout=6)
    tr = t.transcript()
    assert "session idle for 1s" in tr, tr
    assert "a plain SMTP client waits for a greeting that an implicit-TLS listener never sends" not in tr, tr


# --------------------------------------------------------------------------- second review

PIPELINED_MESSAGE = (b"EHLO x\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<c@example.net>\r\nDATA\r\n"
                     b"Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n")


@pytest.mark.parametrize("prefix", ["", "plain:"], ids=["noprefix", "plain"])
def test_whole_pipelined_message_then_half_close_is_delivered(tap, upstream_ca, prefix):
    """printf 'EHLO..DATA..body..QUIT' | nc -N: the body waits in smtptap for the 354, so the
    FIN to the upstream must wait for it too, plain upstream included."""
    ca, ctx = upstream_ca
    with FakeServer(smtp_server(ctx)) as srv:
        t = tap(["-u", f"{prefix}localhost:{srv.port}", "--upstream-ca", ca.cert_path])
        got = send_then_half_close(t.port, PIPELINED_MESSAGE, b"220 fake ESMTP\r\n")
        t.wait_session_end(1, timeout=8)
        assert got.endswith(b"250 queued\r\n221 bye\r\n"), f"client got {got!r}\n{t.transcript()}"
        assert "broken pipe" not in t.transcript(), t.transcript()


def test_greeting_while_draining_keeps_the_linger(tap, upstream_ca):
    """QUIT and a FIN before the (late) greeting, and a server that never answers QUIT: the
    session ends after the 5 s linger, not after --idle-timeout."""
    ca, ctx = upstream_ca

    def server(c: FakeConn):
        c.starttls(ctx)  # implicit TLS
        time.sleep(0.5)
        c.send(b"220 fake ESMTP\r\n")
        c.line()  # QUIT, never answered
        time.sleep(12)

    with FakeServer(server) as srv:
        t = tap(["-u", f"tls:localhost:{srv.port}", "--upstream-ca", ca.cert_path,
                 "--idle-timeout", "30s"])
        s = socket.create_connection(("127.0.0.1", t.port), timeout=5)
        try:
            time.sleep(0.2)
            s.sendall(b"QUIT\r\n")
            s.shutdown(socket.SHUT_WR)
            fin = time.monotonic()
            read_all(s, 15)  # until smtptap closes: the 5 s linger, not the server's 12 s
            closed_after = time.monotonic() - fin
        finally:
            s.close()
        t.wait_session_end(1)
        assert closed_after < 9, f"closed {closed_after:.1f}s after the FIN\n{t.transcript()}"


def test_starttls_upstream_after_a_421_still_sends_nothing_in_clear(tap, upstream_ca):
    """The server answers the probe EHLO with 421 but keeps the connection: with starttls:
    the client's MAIL still gets smtptap's 503 and never reaches the server."""
    ca, _ = upstream_ca
    seen = []

    def server(c: FakeConn):
        c.send(b"220 fake ESMTP\r\n")
        c.line()
        c.send(b"421 busy try later\r\n")
        while True:
            ln = c.line()
            if ln is None:
                return
            seen.append(ln)
            c.send(b"250 ok\r\n")

    with FakeServer(server) as srv:
        t = tap(["-u", f"starttls:localhost:{srv.port}", "--upstream-ca", ca.cert_path])
        with RawSmtpClient("127.0.0.1", t.port) as c:
            assert c.reply() == [b"220 fake ESMTP"]
            assert c.cmd(b"EHLO x") == [b"421 busy try later"]
            assert c.cmd(b"MAIL FROM:<secret@example.org>") == [
                b"503 5.5.1 smtptap: EHLO first (starttls: upstream, nothing goes to it in clear)"]
        assert not any(b"secret" in ln for ln in seen), seen
