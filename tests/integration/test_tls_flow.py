"""TLS under load and at the end of a connection: bytes, backpressure, close_notify.

1. Big messages through TLS, byte for byte.  Python smtplib (verifying smtptap's leaf
   against the CA printed by `--print-ca`, host name `localhost` checked) sends a 20 MB
   message of random base64 lines and a 5 MB message of 998-octet lines and lines that
   start with dots, through smtptap, to a real aiosmtpd whose certificate comes from a
   throw-away test CA (verified by smtptap through `--upstream-ca`).  Both legs in
   implicit TLS (`-l tls:` / `-u tls:`), and both legs upgraded with STARTTLS (the client's
   STARTTLS answered by smtptap, `-u starttls:`).  The server must get exactly the bytes
   that were sent (SHA-256 compared), and the transcript's `== message 1: N bytes, L lines,
   sha256 H` must describe that message.

2. Backpressure with TLS (README "How it works": a side stops being read while 512 KiB
   are queued towards the other side; with TLS the queue is the plaintext and ciphertext
   waiting in the leg).  A test server (plain or implicit TLS) answers up to DATA with 354
   and then stops reading its socket; a client pushes up to 200 MB of message lines.  The
   client must be blocked long before 200 MB, and smtptap's peak RSS must stay under
   64 MiB (256 MiB under AddressSanitizer).  Then the server reads again and the client
   finishes: the server must get every byte (SHA-256), the transcript summary must match.
   For TLS client + TLS upstream, plain client + TLS upstream, TLS client + plain upstream.

3. close_notify: a TLS peer that closes TCP without a close_notify is reported as
   `... closed the connection without a TLS close_notify (truncated)`, one that sends its
   close_notify first as a plain `... closed the connection`; client side (implicit TLS and
   STARTTLS, between commands and during DATA) and upstream side (the 421 the client gets
   names the truncation).  test_tls.py does not cover this.

The test peers of 2 and 3 drive TLS through ssl.MemoryBIO (Wire below), so what goes on the
wire (close_notify or not, how much ciphertext the kernel took) is the test's decision.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import smtplib
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import List, Optional

import pytest

import harness

FROM = "alice@example.org"
RCPTS = ["bob@example.net"]
NAME = "localhost"   # the name clients ask smtptap for, and smtptap asks the upstream for
TEST_CA_CN = "smtptap integration test CA"   # harness.CertAuthority's default name

# Contract: "message 1: 1234 bytes, 20 lines, sha256 <64 hex>", optionally followed by a
# parenthetical note (e.g. how many content lines the transcript left out).
SUMMARY_RE = re.compile(r"^message (\d+): (\d+) bytes, (\d+) lines, sha256 ([0-9a-f]{64})"
                        r"(?: \([^)]*\))?$")

MiB = 1 << 20
PUSH_LIMIT = 200 * MiB      # what a client tries to push into a stalled session
STALL_SECONDS = 2.5         # no progress for this long: the client is blocked
ACCEPT_BOUND = 20 * MiB     # a blocked client got rid of less than this
RSS_BOUND = 64 * MiB        # smtptap's peak RSS with one stalled session
RSS_BOUND_ASAN = 256 * MiB  # the same under AddressSanitizer (shadow memory, quarantine)
SOCK_BUF = 64 * 1024        # SO_SNDBUF / SO_RCVBUF of the test's own sockets


smtptap_ca = harness.smtptap_ca


@pytest.fixture
def test_ca(tmp_path):
    return harness.CertAuthority(str(tmp_path))


def client_context(ca_pem: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_pem)   # CERT_REQUIRED + check_hostname


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def summary_for(content: bytes):
    """(size, lines, sha256) the transcript must show for a delivered (unstuffed) message."""
    return len(content), content.count(b"\n"), sha(content)


def only_session(t):
    t.wait_session_end(timeout=15)
    sids = t.sessions()
    assert len(sids) == 1, f"expected one session, transcript:\n{t.transcript()}"
    return sids[0]


def summaries(t, sid) -> List[re.Match]:
    out = []
    for l in t.lines(sid):
        if l.marker == "==" and l.text.startswith("message "):
            m = SUMMARY_RE.match(l.text)
            assert m, f"summary line not in the contract format: {l.raw}"
            out.append(m)
    return out


def check_summary(t, sid, content: bytes):
    sums = summaries(t, sid)
    assert len(sums) == 1, f"expected one message summary in session {sid}:\n{t.transcript()[-3000:]}"
    n, nl, h = summary_for(content)
    got = (int(sums[0].group(2)), int(sums[0].group(3)), sums[0].group(4))
    assert sums[0].group(1) == "1" and got == (n, nl, h), (
        f"transcript summary {sums[0].group(0)!r} does not describe the message sent: "
        f"{n} bytes, {nl} lines, sha256 {h}")


def first_difference(a: bytes, b: bytes) -> str:
    n = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return (f"lengths {len(a)} vs {len(b)}, first difference at octet {n}: "
            f"{a[max(0, n - 16):n + 16]!r} vs {b[max(0, n - 16):n + 16]!r}")


def is_asan(binary: str) -> bool:
    """The binary under test was built with AddressSanitizer (dynamic or static runtime)."""
    if "asan" in os.path.basename(os.path.dirname(binary)).lower():
        return True
    try:
        return b"__asan_init" in Path(binary).read_bytes()
    except OSError:
        return False


def memory_kib(pid: int) -> dict:
    """VmRSS and VmHWM (peak RSS) of PID in KiB."""
    out = {}
    for ln in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = ln.partition(":")
        if k in ("VmRSS", "VmHWM"):
            out[k] = int(v.split()[0])
    return out


# --------------------------------------------------------------------------- messages


def headers(subject: str) -> bytes:
    return (f"From: <{FROM}>\r\nTo: <{RCPTS[0]}>\r\nSubject: {subject}\r\n"
            "Message-ID: <tls-flow@smtptap.test>\r\nDate: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
            "\r\n").encode()


def b64_message(size: int) -> bytes:
    """About SIZE bytes: headers, then random base64 in 76-character CRLF lines."""
    raw = base64.b64encode(os.urandom(size * 3 // 4))
    body = b"\r\n".join(raw[i:i + 76] for i in range(0, len(raw), 76))
    return headers("20 MB of base64 through TLS") + body + b"\r\n"


def long_dot_message(size: int) -> bytes:
    """About SIZE bytes of 998-octet lines (the RFC 5322 maximum) mixed with lines that
    start with dots: a lone ".", "..", ". x", and 997-octet lines starting with "." or
    ".." (998 octets on the wire once dot-stuffed)."""
    raw = base64.b64encode(os.urandom(size))
    lines, i, total = [], 0, 0
    while total < size:
        k = len(lines) % 8
        if k in (0, 3, 6):
            ln = raw[i:i + 998]
        elif k == 1:
            ln = b"." + raw[i:i + 996]
        elif k == 2:
            ln = [b".", b"..", b". x", b".\t.", b"...."][(len(lines) // 8) % 5]
        elif k == 4:
            ln = b".." + raw[i:i + 995]
        elif k == 5:
            ln = b"." + raw[i:i + 997]      # 998 octets, 999 on the wire
        else:
            ln = raw[i:i + 40]
        i += len(ln)
        lines.append(ln)
        total += len(ln) + 2
    return headers("998-octet lines and dots through TLS") + b"\r\n".join(lines) + b"\r\n"


def test_messages_are_what_they_claim():
    """Guard the generators: the properties the big-message tests rely on."""
    m = long_dot_message(5 * MiB)
    body = m.split(b"\r\n\r\n", 1)[1]
    lines = body.split(b"\r\n")[:-1]
    assert 4.5 * MiB < len(m) < 5.5 * MiB
    assert max(map(len, lines)) == 998
    assert sum(len(x) == 998 for x in lines) > 1000
    dotted = [x for x in lines if x.startswith(b".")]
    assert len(dotted) > 1000 and b"." in dotted and b".." in dotted
    assert any(len(x) == 997 and x.startswith(b"..") for x in dotted)
    assert b"\r\n.\r\n" in m                                    # a lone dot line
    assert m.count(b"\n") == m.count(b"\r\n") and b"\r" not in m.replace(b"\r\n", b"")
    b = b64_message(2 * MiB)
    assert 1.9 * MiB < len(b) < 2.1 * MiB and b.endswith(b"\r\n")
    assert not re.search(rb"\r\n\.", b)


# --------------------------------------------------------------------------- 1. big messages


class SMTPTo(smtplib.SMTP):
    """smtplib.SMTP that connects to 127.0.0.1 but uses the host name it was given for
    STARTTLS (SNI and certificate check), like curl's --resolve."""

    def _get_socket(self, host, port, timeout):
        return socket.create_connection(("127.0.0.1", port), timeout)


class SMTP_SSLTo(smtplib.SMTP_SSL):
    def _get_socket(self, host, port, timeout):
        sock = socket.create_connection(("127.0.0.1", port), timeout)
        return self.context.wrap_socket(sock, server_hostname=self._host)


def send_implicit(port, ca_pem, message):
    with SMTP_SSLTo(NAME, port, context=client_context(ca_pem), local_hostname="client.test",
                    timeout=60) as s:
        refused = s.sendmail(FROM, RCPTS, message)
        s.quit()
    return refused


def send_starttls(port, ca_pem, message):
    with SMTPTo(NAME, port, local_hostname="client.test", timeout=60) as s:
        s.ehlo()
        assert s.has_extn("starttls"), "smtptap (--client-starttls offer) did not offer STARTTLS"
        code, _ = s.starttls(context=client_context(ca_pem))
        assert code == 220
        s.ehlo()
        refused = s.sendmail(FROM, RCPTS, message)
        s.quit()
    return refused


MESSAGES = {"b64-20MB": lambda: b64_message(20 * MiB),
            "998-octets-and-dots-5MB": lambda: long_dot_message(5 * MiB)}


@pytest.mark.parametrize("message", list(MESSAGES))
@pytest.mark.parametrize("mode", ["implicit", "starttls"])
def test_big_message_byte_exact_through_tls(tap, tmp_path, test_ca, mode, message):
    msg = MESSAGES[message]()
    ca_dir, ca_pem = smtptap_ca(tmp_path)
    sctx = test_ca.server_context([NAME])
    if mode == "implicit":
        srv = harness.AiosmtpdServer(ssl_context=sctx)
    else:   # the server refuses MAIL before STARTTLS: the upstream leg was upgraded
        srv = harness.AiosmtpdServer(tls_context=sctx, require_starttls=True)
    with srv:
        if mode == "implicit":
            t = tap(["--ca-dir", ca_dir, "-u", f"tls:{NAME}:{srv.port}",
                     "--upstream-ca", test_ca.cert_path], listen="tls:127.0.0.1:0")
            refused = send_implicit(t.port, ca_pem, msg)
        else:
            t = tap(["--ca-dir", ca_dir, "--client-starttls", "offer",
                     "-u", f"starttls:{NAME}:{srv.port}", "--upstream-ca", test_ca.cert_path])
            refused = send_starttls(t.port, ca_pem, msg)
        assert refused == {}
        got = srv.wait_for_messages(1, timeout=30)
        sid = only_session(t)
    assert len(got) == 1
    content = got[0].content
    assert (len(content), sha(content)) == (len(msg), sha(msg)), \
        f"the server did not get the message sent: {first_difference(msg, content)}"
    check_summary(t, sid, msg)
    lines = t.lines(sid)
    tls = [l.text for l in lines if l.marker == "==" and l.text.startswith("client TLS:")]
    assert len(tls) == 1 and re.search(rf"\bSNI {NAME}(,|$)", tls[0]), t.transcript()[-3000:]
    up = [l.text for l in lines if l.marker == "==" and l.text.startswith("upstream TLS:")]
    assert len(up) == 1 and up[0].endswith(", verified"), up
    content_lines = [l for l in lines if l.marker in (" ->", " ~>") and not
                     re.match(r"(?i)(EHLO|MAIL|RCPT|DATA|QUIT|STARTTLS)\b", l.text)]
    plain = [l.raw for l in content_lines if l.marker != " ~>"]
    assert not plain, f"message lines of a TLS client shown as plain text: {plain[:3]}"


# --------------------------------------------------------------------------- test peers


class Wire:
    """One connection as a test peer drives it: plain TCP, or TLS over ssl.MemoryBIO so
    that the test decides what reaches the socket (close_notify or not) and knows how much
    ciphertext the kernel took."""

    def __init__(self, sock: socket.socket, ctx: Optional[ssl.SSLContext] = None, *,
                 server_side: bool = False, server_hostname: Optional[str] = None):
        self.sock = sock
        self.buf = b""
        self.tls = None
        if ctx is not None:
            self.start_tls(ctx, server_side=server_side, server_hostname=server_hostname)

    def start_tls(self, ctx, *, server_side=False, server_hostname=None):
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.inc, self.out, server_side=server_side,
                                server_hostname=server_hostname)
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                if not self._feed():
                    raise ConnectionError("EOF during the TLS handshake")
        self._flush()

    def _flush(self):
        data = self.out.read()
        if data:
            self.sock.sendall(data)

    def _feed(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            self.inc.write_eof()
            return False
        self.inc.write(data)
        return True

    def wire_bytes(self, data: bytes) -> bytes:
        """What goes on the socket for plaintext DATA (encrypted when in TLS)."""
        if self.tls is None:
            return bytes(data)
        self.tls.write(data)
        return self.out.read()

    def send(self, data: bytes):
        self.sock.sendall(self.wire_bytes(data))

    def recv(self) -> bytes:
        """Plaintext; b"" at the end (close_notify or TCP EOF)."""
        if self.tls is None:
            return self.sock.recv(65536)
        while True:
            try:
                return self.tls.read(65536)
            except ssl.SSLWantReadError:
                self._flush()
                if not self._feed():
                    return b""
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""

    def line(self) -> Optional[bytes]:
        while b"\n" not in self.buf:
            data = self.recv()
            if not data:
                return None
            self.buf += data
        ln, _, self.buf = self.buf.partition(b"\n")
        return ln.rstrip(b"\r")

    def reply(self) -> List[bytes]:
        return harness.read_reply(self.line)

    def cmd(self, line: bytes) -> List[bytes]:
        self.send(line + b"\r\n")
        return self.reply()

    def close_notify(self):
        """Send a TLS close_notify (no TCP close)."""
        try:
            self.tls.unwrap()
        except ssl.SSLWantReadError:
            pass   # the peer's close_notify is not awaited
        self._flush()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class StallServer:
    """A small SMTP server in a thread (implicit TLS with CTX, else plain), one connection.

    Greets, answers EHLO / MAIL / RCPT / NOOP with 250 and DATA with 354.
    stall=True: after the 354 it stops reading its socket entirely until .resume is set,
    then reads the message, keeps it in .received and answers 250; QUIT gets 221.
    on_rcpt="truncate" / "close_notify": instead of answering RCPT it closes the TCP
    connection, without / after a TLS close_notify.
    Its socket buffer is small (SO_RCVBUF), so what a stalled session can hide in the
    kernel is mostly smtptap's side."""

    def __init__(self, ctx: Optional[ssl.SSLContext] = None, *, stall: bool = True,
                 on_rcpt: Optional[str] = None):
        self.ctx = ctx
        self.stall = stall
        self.on_rcpt = on_rcpt
        self.in_data = threading.Event()
        self.resume = threading.Event()
        self.done = threading.Event()
        self.received: Optional[bytes] = None
        self.commands: List[bytes] = []
        self.error: Optional[BaseException] = None
        self._stop = threading.Event()
        self._conn: Optional[socket.socket] = None

    def start(self) -> "StallServer":
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCK_BUF)   # inherited by accept()
        s.bind(("127.0.0.1", 0))
        s.listen(4)
        s.settimeout(0.2)
        self._lsock = s
        self.port = s.getsockname()[1]
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        try:
            while not self._stop.is_set():
                try:
                    conn, _ = self._lsock.accept()
                    break
                except socket.timeout:
                    continue
            else:
                return
            self._conn = conn
            conn.settimeout(30)
            w = Wire(conn, self.ctx, server_side=True)
            w.send(b"220 stall.test ESMTP stalling test server\r\n")
            while True:
                ln = w.line()
                if ln is None:
                    return
                self.commands.append(ln)
                verb = ln.split(b" ")[0].upper()
                if verb == b"EHLO":
                    w.send(b"250-stall.test\r\n250 8BITMIME\r\n")
                elif verb == b"RCPT" and self.on_rcpt:
                    if self.on_rcpt == "close_notify":
                        w.close_notify()
                    conn.close()
                    return
                elif verb == b"DATA":
                    w.send(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    self.in_data.set()
                    if self.stall:
                        while not self.resume.wait(0.1):   # not one read meanwhile
                            if self._stop.is_set():
                                return
                    data = bytearray(w.buf)
                    w.buf = b""
                    while not data.endswith(b"\r\n.\r\n"):
                        chunk = w.recv()
                        if not chunk:
                            return
                        data += chunk
                    self.received = bytes(data[:-3])
                    w.send(b"250 2.0.0 stalled message accepted\r\n")
                elif verb == b"QUIT":
                    w.send(b"221 2.0.0 bye\r\n")
                    if w.tls is not None:
                        w.close_notify()
                    conn.shutdown(socket.SHUT_WR)
                    return
                else:
                    w.send(b"250 2.0.0 ok\r\n")
        except BaseException as e:  # noqa: BLE001 - reported by the test
            if not self._stop.is_set():
                self.error = e
        finally:
            self.done.set()

    def stop(self):
        self._stop.set()
        self.resume.set()
        if self._conn is not None:
            try:
                self._conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(10)
        if self._conn is not None:
            self._conn.close()
        self._lsock.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


def connect(port: int) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCK_BUF)
    s.settimeout(15)
    s.connect(("127.0.0.1", port))
    return s


def to_data(w: Wire):
    assert w.reply()[-1].startswith(b"220"), "no greeting"
    assert w.cmd(b"EHLO client.test")[-1].startswith(b"250")
    assert w.cmd(f"MAIL FROM:<{FROM}>".encode())[-1].startswith(b"250")
    assert w.cmd(f"RCPT TO:<{RCPTS[0]}>".encode())[-1].startswith(b"250")
    r = w.cmd(b"DATA")
    assert r[-1].startswith(b"354"), r


# --------------------------------------------------------------------------- 2. backpressure


class Pusher:
    """Pushes message lines (64 KiB chunks of random base64 lines) through a Wire on a
    socket with a short timeout and counts the plaintext whose wire bytes the kernel took."""

    LINES_PER_CHUNK = 840   # 840 * 78 = 65520 bytes

    def __init__(self, w: Wire):
        self.w = w
        self.hash = hashlib.sha256()
        self.generated = 0       # plaintext bytes handed to the wire (hashed)
        self.accepted = 0        # plaintext bytes fully taken by the kernel
        self.lines = 0
        self.pending = memoryview(b"")
        self.pending_plain = 0
        self.first = True

    def _chunk(self) -> bytes:
        raw = base64.b64encode(os.urandom(self.LINES_PER_CHUNK * 57))
        data = b"".join(raw[i:i + 76] + b"\r\n" for i in range(0, len(raw), 76))
        if self.first:
            data = headers("pushed into a stalled session") + data
            self.first = False
        self.hash.update(data)
        self.generated += len(data)
        self.lines += data.count(b"\n")
        return data

    def _send_some(self) -> int:
        try:
            n = self.w.sock.send(self.pending)
        except socket.timeout:
            return 0
        self.pending = self.pending[n:]
        if not self.pending:
            self.accepted += self.pending_plain
            self.pending_plain = 0
        return n

    def until_blocked(self, limit: int, stall: float, deadline: float) -> bool:
        """Push until the socket took nothing for STALL seconds (True) or LIMIT bytes were
        accepted / DEADLINE seconds passed (False)."""
        self.w.sock.settimeout(0.2)
        start = last = time.monotonic()
        while True:
            now = time.monotonic()
            if now - last >= stall:
                return True
            if now - start >= deadline:
                return False
            if not self.pending:
                if self.accepted >= limit:
                    return False
                data = self._chunk()
                self.pending = memoryview(self.w.wire_bytes(data))
                self.pending_plain = len(data)
            if self._send_some():
                last = time.monotonic()

    def finish(self, timeout: float = 20.0):
        """Send what is pending and the end of data."""
        self.w.sock.settimeout(timeout)
        if self.pending:
            self.w.sock.sendall(self.pending)
            self.accepted += self.pending_plain
            self.pending, self.pending_plain = memoryview(b""), 0
        self.w.send(b".\r\n")

    @property
    def sha(self) -> str:
        return self.hash.hexdigest()


LEGS = {"tls-client-tls-upstream": (True, True),
        "plain-client-tls-upstream": (False, True),
        "tls-client-plain-upstream": (True, False)}


@pytest.mark.parametrize("legs", list(LEGS))
def test_backpressure_holds_with_tls(tap, tmp_path, test_ca, legs, record_property):
    client_tls, upstream_tls = LEGS[legs]
    ca_dir, ca_pem = smtptap_ca(tmp_path)
    sctx = test_ca.server_context([NAME]) if upstream_tls else None
    asan = is_asan(harness.smtptap_bin())
    rss_bound = RSS_BOUND_ASAN if asan else RSS_BOUND
    with StallServer(sctx) as srv:
        if upstream_tls:
            up = ["-u", f"tls:{NAME}:{srv.port}", "--upstream-ca", test_ca.cert_path]
        else:
            up = ["-u", f"plain:127.0.0.1:{srv.port}"]
        t = tap(["--ca-dir", ca_dir, *up],
                listen="tls:127.0.0.1:0" if client_tls else "127.0.0.1:0")
        before = memory_kib(t.proc.pid)
        w = Wire(connect(t.port), client_context(ca_pem) if client_tls else None,
                 server_hostname=NAME)
        try:
            to_data(w)
            assert srv.in_data.wait(5), "the server never got DATA"
            push = Pusher(w)
            blocked = push.until_blocked(PUSH_LIMIT, STALL_SECONDS, deadline=25)
            mem = memory_kib(t.proc.pid)
            record_property("smtptap_memory_kib", {"before": before, "blocked": mem,
                                                   "accepted": push.accepted, "asan": asan})
            print(f"\n{legs}: smtptap VmRSS {before['VmRSS']} KiB before, {mem['VmRSS']} KiB "
                  f"blocked, peak {mem['VmHWM']} KiB; client accepted {push.accepted} bytes "
                  f"({push.accepted / MiB:.1f} MiB){' [ASan]' if asan else ''}")
            assert blocked, (f"the client was never blocked: {push.accepted / MiB:.1f} MiB "
                             f"accepted while the server read nothing (smtptap VmRSS "
                             f"{mem['VmRSS']} KiB)")
            assert push.accepted < ACCEPT_BOUND, (
                f"the client pushed {push.accepted / MiB:.1f} MiB into a session whose server "
                f"reads nothing before it was blocked (bound {ACCEPT_BOUND / MiB:.0f} MiB)")
            assert mem["VmHWM"] * 1024 < rss_bound, (
                f"smtptap's peak RSS {mem['VmHWM']} KiB (now {mem['VmRSS']} KiB) with one "
                f"stalled session, bound {rss_bound // 1024} KiB")
            assert t.running()
            # The server reads again: every byte must still arrive, in order.
            srv.resume.set()
            push.finish()
            w.sock.settimeout(30)
            r = w.reply()
            assert r[-1].startswith(b"250 2.0.0 stalled message accepted"), r
            assert w.cmd(b"QUIT")[-1].startswith(b"221")
            if w.tls is not None:
                w.close_notify()
        finally:
            w.close()
        assert srv.done.wait(10) and srv.error is None, srv.error
        sid = only_session(t)
    got = srv.received
    assert got is not None
    assert (len(got), sha(got)) == (push.generated, push.sha), (
        f"after the stall the server got {len(got)} bytes sha256 {sha(got)}, the client sent "
        f"{push.generated} bytes sha256 {push.sha}")
    sums = summaries(t, sid)
    assert len(sums) == 1, t.transcript()[-3000:]
    assert (int(sums[0].group(2)), int(sums[0].group(3)), sums[0].group(4)) == \
        (push.generated, push.lines, push.sha), sums[0].group(0)
    # Both TLS peers ended their TLS properly (close_notify): nothing may say truncated.
    assert "truncated" not in t.transcript(), t.transcript()[-2000:]


# --------------------------------------------------------------------------- 3. close_notify

TRUNCATED = "closed the connection without a TLS close_notify (truncated)"


def session_of(t, client_port):
    m = t.wait_for(rf"^#(\d+) \+\S+ == 127\.0\.0\.1:{client_port} connected to ")
    return int(m.group(1))


@pytest.mark.parametrize("close", ["truncated", "close_notify"])
@pytest.mark.parametrize("where", ["implicit-idle", "implicit-data", "starttls-idle"])
def test_client_close_with_and_without_close_notify(tap, tmp_path, aiosmtpd, where, close):
    ca_dir, ca_pem = smtptap_ca(tmp_path)
    implicit = where.startswith("implicit")
    if implicit:
        t = tap(["--ca-dir", ca_dir, "-u", aiosmtpd.hostport], listen="tls:127.0.0.1:0")
    else:
        t = tap(["--ca-dir", ca_dir, "--client-starttls", "offer", "-u", aiosmtpd.hostport])
    sock = connect(t.port)
    cport = sock.getsockname()[1]
    w = Wire(sock)
    try:
        if implicit:
            w.start_tls(client_context(ca_pem), server_hostname=NAME)
        else:
            assert w.reply()[-1].startswith(b"220")
            assert any(b"STARTTLS" in l for l in w.cmd(b"EHLO client.test"))
            assert w.cmd(b"STARTTLS")[-1].startswith(b"220")
            w.start_tls(client_context(ca_pem), server_hostname=NAME)
        if implicit:
            assert w.reply()[-1].startswith(b"220")
        assert w.cmd(b"EHLO client.test")[-1].startswith(b"250")
        assert w.cmd(f"MAIL FROM:<{FROM}>".encode())[-1].startswith(b"250")
        if where.endswith("data"):
            assert w.cmd(f"RCPT TO:<{RCPTS[0]}>".encode())[-1].startswith(b"250")
            assert w.cmd(b"DATA")[-1].startswith(b"354")
            # (a content line is shown once the next one starts: its CRLF could be the
            # first half of the end of data)
            w.send(b"Subject: cut short\r\n\r\nfirst line\r\nsecond line\r\nthird, cut")
            t.wait_for(rf"^#{session_of(t, cport)} \+\S+  ~> second line$")
        sid = session_of(t, cport)
        if close == "close_notify":
            w.close_notify()
            # A well-behaved client: close_notify, then it waits for smtptap to hang up.
            w.sock.settimeout(10)
            assert w.recv() == b"", "smtptap sent data after the client's close_notify"
    finally:
        w.close()
    t.wait_session_end(sid, timeout=10)
    ended = [l for l in t.lines(sid) if l.text.startswith("client ") and "closed the connection" in l.text]
    assert len(ended) == 1, t.transcript()
    text = ended[0].text
    if where.endswith("data"):
        how = TRUNCATED if close == "truncated" else "closed the connection"
        assert ended[0].marker == "**>" and re.fullmatch(
            rf"client {re.escape(how)} during DATA \(message 1 cut short after \d+ bytes\)",
            text), ended[0].raw
        assert aiosmtpd.messages == [], "the cut message reached the server"
    elif close == "truncated":
        assert ended[0].marker == "==" and text == f"client {TRUNCATED}", ended[0].raw
    else:
        assert ended[0].marker == "==" and text == "client closed the connection", ended[0].raw
    if close == "close_notify":
        assert "truncated" not in t.transcript(), t.transcript()


@pytest.mark.parametrize("close", ["truncated", "close_notify"])
def test_upstream_close_with_and_without_close_notify(tap, tmp_path, test_ca, close):
    """The server hangs up instead of answering RCPT: the client gets a 421 that says
    whether the server's TLS ended properly."""
    sctx = test_ca.server_context([NAME])
    with StallServer(sctx, stall=False, on_rcpt=close) as srv:
        up = f"{NAME}:{srv.port}"
        t = tap(["-u", f"tls:{up}", "--upstream-ca", test_ca.cert_path,
                 "--ca-dir", str(tmp_path / "tapca")])
        with harness.RawSmtpClient("127.0.0.1", t.port) as c:
            cport = c.sock.getsockname()[1]
            assert c.code() == 220
            assert c.cmd(b"EHLO client.test")[-1].startswith(b"250")
            assert c.cmd(f"MAIL FROM:<{FROM}>".encode())[-1].startswith(b"250")
            r = [l.decode() for l in c.cmd(f"RCPT TO:<{RCPTS[0]}>".encode())]
            rest = c.read_until_closed(10)
        assert srv.done.wait(5) and srv.error is None, srv.error
        sid = session_of(t, cport)
        t.wait_session_end(sid, timeout=10)
    how = TRUNCATED if close == "truncated" else "closed the connection"
    assert r == [f"421 4.4.0 smtptap: upstream {how}"], r
    assert rest == b"", rest
    t.wait_for(rf"^#{sid} \+\S+ <\*\* upstream {re.escape(how)}$")
    if close == "close_notify":
        assert "truncated" not in t.transcript(), t.transcript()
