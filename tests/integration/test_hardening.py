"""Hardening (issue 16): the defects fuzzing found in the pure modules, shown on the binary.

Each test drives the built smtptap between a raw client and a raw upstream that sends
exactly the bytes of the issue's reproduction, and checks what a user would see: replies
paired with the right commands, the message delivered, the session ended, the lint saying
what happened.
"""

import socket
import threading
import time

import pytest

import harness
from harness import RawSmtpClient

FROM, TO = b"alice@example.org", b"bob@example.net"
UNPAIRED = "reply that no command asked for"


class CutReplyServer:
    """One-connection upstream that answers RCPT with a reply of more than 64 KiB whose bytes
    stop 3 bytes into a line ("250" of "250-more"), pauses, then sends the rest of that line
    and the final line. Everything else gets a plain answer; the message is recorded."""

    def __init__(self, first_part: int = 65_537, pause: float = 0.5):
        self.first_part, self.pause = first_part, pause
        self.message = None
        self.received = bytearray()
        self.done = threading.Event()
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1)
        self.lsock.settimeout(10)
        self.port = self.lsock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self.port}"

    def rcpt_reply_head(self) -> bytes:
        """FIRST_PART bytes of "250-..." lines ending in "250" (the start of "250-more")."""
        body = bytearray()
        while self.first_part - len(body) - 3 >= 100:
            body += b"250-" + b"x" * 94 + b"\r\n"
        rest = self.first_part - len(body) - 3
        body += b"250-" + b"y" * (rest - 6) + b"\r\n" + b"250"
        assert len(body) == self.first_part
        return bytes(body)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.lsock.close()
        self.thread.join(5)
        return False

    def _serve(self):
        try:
            c, _ = self.lsock.accept()
        except OSError:
            return
        c.settimeout(15)
        buf = b""

        def line():
            nonlocal buf
            while b"\n" not in buf:
                data = c.recv(65536)
                if not data:
                    raise ConnectionError("client closed")
                self.received.extend(data)
                buf += data
            ln, _, buf = buf.partition(b"\n")
            return ln + b"\n"

        try:
            c.sendall(b"220 cut.test ESMTP\r\n")
            while True:
                ln = line()
                verb = ln[:4].upper()
                if verb == b"EHLO":
                    c.sendall(b"250-cut.test\r\n250 PIPELINING\r\n")
                elif verb == b"MAIL":
                    c.sendall(b"250 2.1.0 ok\r\n")
                elif verb == b"RCPT":
                    c.sendall(self.rcpt_reply_head())
                    time.sleep(self.pause)
                    c.sendall(b"-more\r\n250 2.1.5 ok\r\n")
                elif verb == b"DATA":
                    c.sendall(b"354 go ahead\r\n")
                    lines = []
                    while (ln := line()) != b".\r\n":
                        lines.append(ln)
                    self.message = b"".join(lines)
                    c.sendall(b"250 2.0.0 queued\r\n")
                elif verb == b"QUIT":
                    c.sendall(b"221 2.0.0 bye\r\n")
                    break
                else:
                    c.sendall(b"500 5.5.2 what\r\n")
        except (OSError, ConnectionError):
            pass
        finally:
            self.done.set()
            c.close()


def lint_lines(tap, sid):
    return [l.text for l in tap.lines(sid) if l.marker == "**"]


def session_of(tap, client_port):
    m = tap.wait_for(rf"^#(\d+) \+\S+ == 127\.0\.0\.1:{client_port} connected to ")
    return int(m.group(1))


def test_reply_over_64k_cut_after_its_code_pairs_with_its_command(tap):
    """Defect 1: MAIL, RCPT and DATA pipelined; the RCPT reply is 65,537 bytes ending in
    "250", then 0.5 s later "-more" and the final line. One reply, paired with RCPT; DATA
    gets its 354; the message reaches the server; the session ends."""
    with CutReplyServer() as srv:
        t = tap(["-u", srv.hostport])
        body = b"Subject: cut reply\r\n\r\nSTARTTLS\r\nthe body is not a command\r\n"
        with RawSmtpClient("127.0.0.1", t.port, timeout=8) as c:
            cport = c.sock.getsockname()[1]
            assert c.code() == 220
            assert c.cmd(b"EHLO client.test")[-1].startswith(b"250")
            c.send(b"MAIL FROM:<" + FROM + b">\r\nRCPT TO:<" + TO + b">\r\nDATA\r\n")
            assert c.reply() == [b"250 2.1.0 ok"]
            rcpt = c.reply()
            assert rcpt[-2:] == [b"250-more", b"250 2.1.5 ok"], rcpt[-3:]
            assert sum(len(l) + 2 for l in rcpt) == srv.first_part + len(b"-more\r\n250 2.1.5 ok\r\n")
            assert c.reply() == [b"354 go ahead"]
            c.send(body + b".\r\n")
            assert c.reply() == [b"250 2.0.0 queued"]
            assert c.cmd(b"QUIT") == [b"221 2.0.0 bye"]
        sid = session_of(t, cport)
        t.wait_session_end(sid, timeout=5)
        assert srv.done.wait(5)
        assert srv.message == body, "the message did not reach the upstream"
        lints = lint_lines(t, sid)
        assert not any(UNPAIRED in l for l in lints), lints
        # The body went through as a message, not as commands smtptap answered itself.
        assert any(l.marker == "==" and l.text.startswith(f"message 1: {len(body)} bytes")
                   for l in t.lines(sid)), t.transcript()
        assert not [l for l in t.lines(sid) if l.is_reply and "[smtptap]" in l.text]


def test_100k_sasl_response_is_linted_as_a_sasl_line(tap):
    """Defect 5: a 100 KB SASL response (after a 334) is relayed in pieces; the lint says it
    is a SASL line with RFC 4954's limit, not "command line longer than"."""
    t = tap(["-u", "sink"])
    with RawSmtpClient("127.0.0.1", t.port, timeout=8) as c:
        cport = c.sock.getsockname()[1]
        assert c.code() == 220
        assert c.cmd(b"EHLO client.test")[-1].startswith(b"250")
        assert c.cmd(b"AUTH LOGIN")[0].startswith(b"334")
        c.send(b"QUFB" * 25_000 + b"\r\n")
        c.reply()  # whatever the sink says to it
        assert c.cmd(b"QUIT")[0].startswith(b"221")
    sid = session_of(t, cport)
    t.wait_session_end(sid)
    lints = lint_lines(t, sid)
    assert any(l.startswith("lint: SASL line longer than 16384 octets (RFC limit 12288)")
               for l in lints), lints
    assert not any("command line longer than" in l for l in lints), lints


def test_long_fault_section_name_and_reply_line_work(tap, tmp_path):
    """Defect 2: a [fault NAME] of 63 characters (inih refused 44 and more with a false
    "missing key") whose reply line is 1,200 characters (inih split lines at 199)."""
    name = "a-fault-rule-with-a-name-long-enough-to-say-exactly-what-it-does"[:63]
    text = "4.2.0 " + "busy " * 239
    ini = tmp_path / "long.ini"
    ini.write_text(f"[fault {name}]\non = NOOP\naction = reply 450 {text}\n")
    t = tap(["-u", "sink", "-c", str(ini)])
    with RawSmtpClient("127.0.0.1", t.port, timeout=8) as c:
        assert c.code() == 220
        assert c.cmd(b"EHLO client.test")[-1].startswith(b"250")
        assert c.cmd(b"NOOP") == [f"450 {text}".rstrip().encode()]
        assert c.cmd(b"QUIT")[0].startswith(b"221")
    t.wait_session_end(1)  # the transcript is written as the session goes: wait for all of it
    assert f"[fault {name}]" in t.transcript() or name in t.transcript(), t.transcript()


def test_fault_section_name_too_long_is_a_true_error(tmp_path):
    """Defect 2: a name longer than a rule holds is refused for what it is, at its line."""
    name = "n" * 64
    ini = tmp_path / "toolong.ini"
    ini.write_text(f"[listen]\nmax_sessions = 5\n[fault {name}]\non = NOOP\naction = drop\n")
    rc, out, err = harness.run([harness.smtptap_bin(), "-c", str(ini)], timeout=10)
    assert rc == 78, err
    assert "64 characters" in err and "at most 63" in err and "(line 3)" in err, err
    assert "missing key" not in err, err
