"""Servers with scripted misbehaviour, and a subprocess entry point for network namespaces.

ScriptedServer
    A small threaded SMTP server on loopback whose connections follow a script: each
    accepted connection takes the next behaviour from a queue (default "smtp").  Used by
    test_failures.py to make an upstream fail once and then work, so that the same smtptap
    can be shown to serve the next session.

        with ScriptedServer(behaviours=["silent"]) as srv:   # 1st connection silent
            ... smtptap -u srv.hostport ...                   # 2nd one a working server

    Behaviours:
      "smtp"                  a working (lenient, pipelining) SMTP server, messages recorded
      "silent"                accepts, reads, never writes
      ("close_in_data", m)    works until DATA, answers 354, reads content until the bytes
                              M have arrived, then closes (FIN: everything sent was read)
      ("huge_reply", n)       answers EHLO with N bytes that carry no reply code, then
                              works normally
      "strict"                like OpenSMTPD: a second EHLO or HELO gets "503 5.5.1 Invalid
                              command: Already identified" (after RSET too)
      ("strict", opts)        the same, with opts: {"starttls": "refuse"} offers STARTTLS and
                              answers it 454; {"ehlo": False} answers EHLO 502 (a HELO-only
                              server: a refused EHLO identifies nobody)
    The listening port can be given (port=P) so a test can bring a server up on a port
    that was refused a moment ago.  accepting=False with backlog=0 makes a listener whose
    accept queue fills up (one queued connection), after which SYNs go unanswered, until
    resume() starts accepting.

`python3 rawserver.py aiosmtpd --host H --port P [--bdat]`
    Runs harness.AiosmtpdServer on H:P in this process and reports on stdout, one JSON
    object per line: {"ready": port} once listening, then one {"message": ...} per message
    (mail_from, rcpt_tos, content_b64, sha256, via, peer).  Ends on stdin EOF or SIGTERM.
    test_transparent.py starts it with `ip netns exec NS` to have a real server inside a
    network namespace.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import dataclasses
import hashlib
import json
import os
import socket
import sys
import threading
import time
from typing import Deque, List, Optional, Sequence, Union

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

Behaviour = Union[str, tuple]


@dataclasses.dataclass
class ScriptedMessage:
    mail_from: bytes
    rcpt_tos: List[bytes]
    content: bytes        # dot-unstuffed, CRLF line ends as received
    conn: int             # connection number (1-based)


class ScriptedServer:
    def __init__(self, *, host: str = "127.0.0.1", port: int = 0,
                 behaviours: Sequence[Behaviour] = (), hostname: str = "scripted.test",
                 backlog: int = 16, accepting: bool = True):
        self.host = host
        self.backlog = backlog
        self._accepting = threading.Event()
        if accepting:
            self._accepting.set()
        self.want_port = port
        self.port: Optional[int] = None
        self.hostname = hostname
        self.behaviours: Deque[Behaviour] = collections.deque(behaviours)
        self.messages: List[ScriptedMessage] = []
        self.connections = 0
        self.closed_connections = 0
        self.received = collections.defaultdict(bytearray)  # conn number -> bytes read
        self._cond = threading.Condition()
        self._lsock: Optional[socket.socket] = None
        self._stop = threading.Event()
        self._threads: List[threading.Thread] = []
        self._socks: List[socket.socket] = []

    @property
    def hostport(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def greeting(self) -> str:
        return f"220 {self.hostname} ESMTP scripted"

    # -- lifecycle
    def start(self) -> "ScriptedServer":
        s = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, self.want_port))
        s.listen(self.backlog)
        s.settimeout(0.1)
        self._lsock = s
        self.port = s.getsockname()[1]
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def resume(self) -> None:
        """Start accepting (see accepting=False)."""
        self._accepting.set()

    def stop(self) -> None:
        self._stop.set()
        self._accepting.set()
        with self._cond:
            socks = list(self._socks)
        for c in socks:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                c.close()
        for t in self._threads:
            t.join(5)
        if self._lsock is not None:
            self._lsock.close()
            self._lsock = None

    def __enter__(self) -> "ScriptedServer":
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    # -- waiting
    def _wait(self, pred, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"scripted server: timed out after {timeout}s waiting "
                                         f"for {what} (connections={self.connections}, "
                                         f"messages={len(self.messages)})")
                self._cond.wait(left)

    def wait_connections(self, n: int = 1, timeout: float = 5.0) -> None:
        self._wait(lambda: self.connections >= n, timeout, f"{n} connection(s)")

    def wait_closed(self, n: int = 1, timeout: float = 5.0) -> None:
        self._wait(lambda: self.closed_connections >= n, timeout, f"{n} closed connection(s)")

    def wait_for_messages(self, n: int = 1, timeout: float = 5.0) -> List[ScriptedMessage]:
        self._wait(lambda: len(self.messages) >= n, timeout, f"{n} message(s)")
        with self._cond:
            return list(self.messages)

    # -- serving
    def _accept_loop(self):
        self._accepting.wait()
        while not self._stop.is_set():
            try:
                c, _ = self._lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            c.settimeout(None)
            with self._cond:
                self.connections += 1
                n = self.connections
                beh = self.behaviours.popleft() if self.behaviours else "smtp"
                self._socks.append(c)
                self._cond.notify_all()
            t = threading.Thread(target=self._serve, args=(c, n, beh), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, c: socket.socket, n: int, beh: Behaviour):
        try:
            _Conn(self, c, n, beh).run()
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                c.close()
            with self._cond:
                self.closed_connections += 1
                self._cond.notify_all()


class _Closed(Exception):
    pass


class _Conn:
    def __init__(self, srv: ScriptedServer, sock: socket.socket, n: int, beh: Behaviour):
        self.srv, self.sock, self.n = srv, sock, n
        self.kind = beh if isinstance(beh, str) else beh[0]
        self.arg = None if isinstance(beh, str) else beh[1]
        self.buf = b""

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise _Closed()
        with self.srv._cond:
            self.srv.received[self.n].extend(data)
            self.srv._cond.notify_all()
        self.buf += data

    def line(self) -> bytes:
        while b"\n" not in self.buf:
            self._fill()
        ln, _, self.buf = self.buf.partition(b"\n")
        return ln + b"\n"

    def send(self, text: str | bytes):
        self.sock.sendall(text.encode() if isinstance(text, str) else text)

    def run(self):
        try:
            if self.kind == "silent":
                while not self.srv._stop.is_set():
                    self._fill()
                return
            self.smtp()
        except _Closed:
            return

    def read_data(self) -> Optional[bytes]:
        """Content up to CRLF.CRLF, dot-unstuffed; None when the script closes."""
        lines = []
        if self.kind == "close_in_data":
            marker = self.arg
            while marker not in self.buf:
                self._fill()
            # Everything the client sent has been read: close sends a FIN, not a RST.
            self.sock.shutdown(socket.SHUT_RDWR)
            return None
        while True:
            while b"\r\n" not in self.buf:
                self._fill()
            ln, _, self.buf = self.buf.partition(b"\r\n")
            if ln == b".":
                break
            lines.append(ln[1:] if ln.startswith(b".") else ln)
        return b"".join(l + b"\r\n" for l in lines)

    def strict_hello(self, verb: bytes) -> bool:
        """The "strict" behaviour's answer to EHLO/HELO; False when it is not strict."""
        if self.kind != "strict":
            return False
        opts = self.arg or {}
        if self.identified:
            self.send("503 5.5.1 Invalid command: Already identified\r\n")
        elif verb == b"EHLO" and opts.get("ehlo", True) is False:
            self.send("502 5.5.2 Error: command not recognized\r\n")
        elif verb == b"EHLO":
            self.identified = True
            tls = "250-STARTTLS\r\n" if opts.get("starttls") else ""
            self.send(f"250-{self.srv.hostname} Hello\r\n250-PIPELINING\r\n{tls}"
                      "250 8BITMIME\r\n")
        else:
            self.identified = True
            self.send(f"250 {self.srv.hostname} Hello\r\n")
        return True

    def smtp(self):
        self.send(self.srv.greeting + "\r\n")
        mail, rcpts = None, []
        self.identified = False
        while True:
            ln = self.line()
            verb = ln.split(b" ", 1)[0].strip().upper()
            if verb in (b"EHLO", b"HELO") and self.strict_hello(verb):
                pass
            elif verb == b"STARTTLS" and self.kind == "strict":
                self.send("454 4.7.0 TLS not available due to local problem\r\n")
            elif verb in (b"EHLO", b"HELO"):
                if self.kind == "huge_reply" and verb == b"EHLO":
                    self.send(b"x" * self.arg + b"\r\n")
                    self.kind = "smtp"
                elif verb == b"EHLO":
                    self.send(f"250-{self.srv.hostname}\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
                              "250 SMTPUTF8\r\n")
                else:
                    self.send(f"250 {self.srv.hostname}\r\n")
            elif verb == b"MAIL":
                mail, rcpts = ln.rstrip(b"\r\n")[10:], []
                self.send("250 2.1.0 Ok\r\n")
            elif verb == b"RCPT":
                rcpts.append(ln.rstrip(b"\r\n")[8:])
                self.send("250 2.1.5 Ok\r\n")
            elif verb == b"DATA":
                if mail is None or not rcpts:
                    self.send("503 5.5.1 Error: need MAIL and RCPT\r\n")
                    continue
                self.send("354 End data with <CR><LF>.<CR><LF>\r\n")
                content = self.read_data()
                if content is None:
                    return
                with self.srv._cond:
                    self.srv.messages.append(ScriptedMessage(mail, rcpts, content, self.n))
                    k = len(self.srv.messages)
                    self.srv._cond.notify_all()
                self.send(f"250 2.0.0 Ok: queued as scripted{k}\r\n")
                mail, rcpts = None, []
            elif verb == b"RSET":
                mail, rcpts = None, []
                self.send("250 2.0.0 Ok\r\n")
            elif verb == b"NOOP":
                self.send("250 2.0.0 Ok\r\n")
            elif verb == b"QUIT":
                self.send("221 2.0.0 Bye\r\n")
                return
            else:
                self.send("500 5.5.2 Error: command not recognized\r\n")


# --------------------------------------------------------------------------- subprocess mode


def _serve_aiosmtpd(argv: List[str]) -> int:
    import argparse
    import signal

    import harness

    ap = argparse.ArgumentParser(prog="rawserver.py aiosmtpd")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--bdat", action="store_true")
    ap.add_argument("--hostname", default=None)
    a = ap.parse_args(argv)

    out_lock = threading.Lock()

    def emit(obj):
        with out_lock:
            sys.stdout.write(json.dumps(obj) + "\n")
            sys.stdout.flush()

    # harness.AiosmtpdServer picks its own port; this mode needs a given one.
    harness_free_port = harness.free_port
    harness.free_port = lambda host="127.0.0.1": a.port
    srv = harness.AiosmtpdServer(host=a.host, bdat=a.bdat, hostname=a.hostname)
    try:
        srv.start()
    finally:
        harness.free_port = harness_free_port
    orig_record = srv._record

    def record(rec):
        reply = orig_record(rec)
        emit({"message": {"mail_from": rec.mail_from, "rcpt_tos": rec.rcpt_tos,
                          "content_b64": base64.b64encode(rec.content).decode(),
                          "sha256": hashlib.sha256(rec.content).hexdigest(),
                          "via": rec.via, "peer": list(rec.peer)}})
        return reply

    srv._record = record
    emit({"ready": srv.port, "greeting": srv.greeting})
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    done.wait()
    srv.stop()
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "aiosmtpd":
        sys.exit(_serve_aiosmtpd(sys.argv[2:]))
    sys.stderr.write(__doc__)
    sys.exit(64)
