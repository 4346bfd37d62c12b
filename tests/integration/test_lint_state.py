"""Stateful protocol lint (issue 9 item 5, proxy/lint_state.c wired in proxy/session.c) on
the binary: one test per rule id, each a real dialog through smtptap to a real server
(aiosmtpd, Postfix smtp-sink) or, for server-side misbehaviour no real server shows on
demand, a tiny scripted server in this file.

Every test drives smtptap (`-u plain:... --client-starttls passthrough -d DIR --format
text,jsonl`, so smtptap edits nothing) with a byte-exact raw-socket client (smtplib for the
TLS counterpart of auth-before-starttls) through a RecordingRelay to the server, and checks:

  finding    the live transcript has exactly one `** lint:` line with the rule's wording,
             and the session's jsonl capture exactly one {"kind": "lint"} event with the
             rule's id, the same text and the side ("c2s"/"s2c") whose bytes broke it
  offset     lint.offset is where the offending bytes start in that side's stream: the
             bytes the client sent (C2S) or received (S2C), counted from the connection's
             first byte; the bytes there are the offending command / byte / reply line
  relayed    what the server got is exactly what the client sent, and what the client got
             is exactly what the server sent (the RecordingRelay's copy of both directions);
             the jsonl reply events joined are the client's S2C stream, and (DATA sessions)
             the command and content events rebuild its C2S stream, so the offsets hold for
             the capture too; the violating session has no other finding
  counterpart  a conforming session of the same kind gives no finding of that id (no
             `** lint:` line with its wording) and no finding at all

Rules and their situations:
  8bit-without-8bitmime    8-bit body without BODY=8BITMIME (aiosmtpd)
  smtputf8-not-offered     MAIL ... SMTPUTF8, RCPT with a UTF-8 address (smtp-sink: no SMTPUTF8)
  pipelining-not-offered   MAIL+RCPT in one write (smtp-sink -p: no PIPELINING)
  command-before-greeting  EHLO before the 220 (smtp-sink -W CONNECT:1: greets after 1 s)
  chunking-not-offered     BDAT (smtp-sink: no CHUNKING)
  size-over-limit          MAIL SIZE= above the offered SIZE (aiosmtpd data_size_limit)
  reply-code-changes       214-/214-/250 multi-line HELP reply (scripted)
  reply-code-out-of-range  600 reply to NOOP (scripted)
  enhanced-code-mismatch   "550 2.1.5" to RCPT with ENHANCEDSTATUSCODES (smtp-sink -B)
  reply-before-command     a reply right after the greeting, before any command (scripted)
  auth-before-starttls     AUTH in clear while STARTTLS is offered (aiosmtpd with TLS)
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import re
import smtplib
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pytest

import harness
from harness import AiosmtpdServer, RecordingRelay, SmtpSink

CRLF = b"\r\n"
JSONL_RE = re.compile(r"^\d{8}T\d{6}-(\d+)-.+\.jsonl$")


# --------------------------------------------------------------------------- client


class Client(harness.RawSmtpClient):
    """RawSmtpClient keeping a copy of every byte sent (.out) and received (.inp)."""

    def __init__(self, host: str, port: int, timeout: float = 10.0):
        super().__init__(host, port, timeout)
        self.out = bytearray()
        self.inp = bytearray()

    def send(self, data: bytes) -> None:
        super().send(data)
        self.out += data

    def _fill(self) -> bool:
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            return False
        self.received += len(data)
        self.inp += data
        self.buf += data
        return True

    def quit(self) -> None:
        """QUIT, its reply, then everything up to the server's close."""
        assert self.cmd(b"QUIT")[-1].startswith(b"221")
        self.read_until_closed()


# --------------------------------------------------------------------------- scripted server


@dataclasses.dataclass
class Script:
    """What a ScriptServer connection says.  replies: verb (upper case) -> reply bytes;
    any other verb gets "250 2.0.0 Ok".  after_greeting: bytes sent in the same write as the
    greeting.  close_after_greeting: close right after that write."""
    ehlo: bytes = b"250-tiny.test\r\n250 PIPELINING\r\n"
    replies: Dict[bytes, bytes] = dataclasses.field(default_factory=dict)
    after_greeting: bytes = b""
    close_after_greeting: bool = False


class ScriptServer:
    """A tiny line-based SMTP server on loopback; the Nth connection follows scripts[N-1].
    DATA reads the content up to CRLF.CRLF and answers 250."""

    def __init__(self, scripts: Sequence[Script]):
        self.scripts = list(scripts)
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(8)
        self.lsock.settimeout(0.1)
        self.host, self.port = "127.0.0.1", self.lsock.getsockname()[1]
        self.stop_ev = threading.Event()
        self.threads: List[threading.Thread] = []

    def __enter__(self) -> "ScriptServer":
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self.threads.append(t)
        return self

    def __exit__(self, *exc):
        self.stop_ev.set()
        for t in self.threads:
            t.join(5)
        self.lsock.close()
        return False

    def _accept(self):
        n = 0
        while not self.stop_ev.is_set():
            try:
                c, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            script = self.scripts[n] if n < len(self.scripts) else Script()
            n += 1
            t = threading.Thread(target=self._serve, args=(c, script), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, c: socket.socket, sc: Script):
        c.settimeout(10)
        buf = b""

        def line() -> Optional[bytes]:
            nonlocal buf
            while b"\n" not in buf:
                d = c.recv(65536)
                if not d:
                    return None
                buf += d
            ln, _, buf = buf.partition(b"\n")
            return ln + b"\n"

        with contextlib.closing(c):
            try:
                c.sendall(b"220 tiny.test ESMTP scripted\r\n" + sc.after_greeting)
                if sc.close_after_greeting:
                    return
                while True:
                    ln = line()
                    if ln is None:
                        return
                    verb = ln.split(b" ", 1)[0].strip().upper()
                    if verb == b"EHLO":
                        c.sendall(sc.ehlo)
                    elif verb in sc.replies:
                        c.sendall(sc.replies[verb])
                    elif verb == b"DATA":
                        c.sendall(b"354 go ahead\r\n")
                        while (ln := line()) not in (b".\r\n", None):
                            pass
                        c.sendall(b"250 2.0.0 Ok: queued\r\n")
                    elif verb == b"QUIT":
                        c.sendall(b"221 2.0.0 Bye\r\n")
                        return
                    else:
                        c.sendall(b"250 2.0.0 Ok\r\n")
            except OSError:
                return


# --------------------------------------------------------------------------- smtptap + capture


@dataclasses.dataclass
class Session:
    sid: int
    lines: List[harness.TLine]
    events: List[dict]
    c2s: bytes   # what the client sent
    s2c: bytes   # what the client received

    def lint_lines(self) -> List[str]:
        return [l.text for l in self.lines if l.marker == "**" and l.text.startswith("lint: ")]

    def lint_events(self, rule: Optional[str] = None) -> List[dict]:
        return [e for e in self.events if e["kind"] == "lint"
                and (rule is None or e.get("lint", {}).get("id") == rule)]


class Lab:
    """One smtptap in front of a RecordingRelay in front of a server, capturing jsonl."""

    def __init__(self, tap, tmp_path: Path, upstream: str, name: str,
                 client_starttls: str = "passthrough"):
        host, port = upstream.rsplit(":", 1)
        self.rec = RecordingRelay(host, int(port))
        self.rec.start()
        self.cap = tmp_path / name
        self.t = tap(["-u", f"plain:{self.rec.hostport}", "--client-starttls", client_starttls,
                      "-d", str(self.cap), "--format", "text,jsonl"])
        self.sessions = 0

    def close(self):
        self.rec.stop()

    def client(self) -> Client:
        self.sessions += 1
        return Client(self.t.host, self.t.port)

    def jsonl(self, sid: int, timeout: float = 5.0) -> List[dict]:
        deadline = time.monotonic() + timeout
        while True:
            for p in self.cap.iterdir() if self.cap.exists() else ():
                m = JSONL_RE.match(p.name)
                if m and int(m.group(1)) == sid:
                    text = p.read_text()
                    events = [json.loads(l) for l in text.split("\n")[:-1]]
                    if text.endswith("\n") and events and events[-1]["kind"] == "end":
                        return events
            assert time.monotonic() < deadline, f"no complete jsonl for session {sid} in {self.cap}"
            time.sleep(0.02)

    def session(self, sid: int, c2s: bytes = b"", s2c: bytes = b"") -> Session:
        """Session SID once ended: its transcript lines and jsonl events."""
        self.t.wait_session_end(sid)
        return Session(sid, self.t.lines(sid), self.jsonl(sid), c2s, s2c)

    def finish(self, c: Client) -> Session:
        """The session of client C (the lab's latest) once ended, after asserting that both
        directions crossed smtptap unchanged."""
        c.close()
        s = self.session(self.sessions, bytes(c.out), bytes(c.inp))
        assert_relayed(self.rec, s.sid, s)
        return s


@pytest.fixture
def lab(tap, tmp_path):
    made = []

    def make(upstream: str, client_starttls: str = "passthrough") -> Lab:
        lb = Lab(tap, tmp_path, upstream, f"cap{len(made)}", client_starttls)
        made.append(lb)
        return lb

    yield make
    for lb in made:
        lb.close()


def payload(ev: dict) -> bytes:
    return ev["line"].encode() if "line" in ev else base64.b64decode(ev["line_b64"])


def c2s_from_jsonl(events: List[dict]) -> bytes:
    """The client's stream rebuilt from the jsonl: command lines as they are, DATA content
    lines (shown without their CRLF) with CRLF, and the ".\r\n" that ends the content
    where the "message" summary stands."""
    out, in_data = bytearray(), False
    for e in events:
        if e["kind"] == "command":
            out += payload(e)
        elif e["kind"] == "content":
            out += payload(e) + CRLF
            in_data = True
        elif e["kind"] == "message" and in_data:
            out += b".\r\n"
            in_data = False
    return bytes(out)


def assert_relayed(rec: RecordingRelay, conn: int, s: Session) -> None:
    """The server got exactly the client's bytes; the client got exactly the server's; the
    capture's command/content events rebuild the C2S stream (DATA sessions, not BDAT) and
    its reply events are the S2C stream."""
    to_server, to_client = rec.to_server(conn), rec.to_client(conn)
    assert to_server == s.c2s, (f"server received other bytes than the client sent:\n"
                                f"client sent  {s.c2s!r}\nserver got   {to_server!r}")
    assert to_client == s.s2c, (f"client received other bytes than the server sent:\n"
                                f"server sent  {to_client!r}\nclient got   {s.s2c!r}")
    replies = b"".join(payload(e) for e in s.events if e["kind"] == "reply")
    assert replies == s.s2c, f"jsonl reply events {replies!r} are not the S2C stream {s.s2c!r}"
    if not any(payload(e).upper().startswith(b"BDAT") for e in s.events if e["kind"] == "command"):
        rebuilt = c2s_from_jsonl(s.events)
        assert rebuilt == s.c2s, (f"jsonl commands/content {rebuilt!r} are not the C2S "
                                  f"stream {s.c2s!r}")


def assert_finding(s: Session, rule: str, wording: str, side: str, offset: int,
                   offending: bytes) -> dict:
    """Exactly one `** lint:` line with WORDING and one jsonl lint event with id RULE, the
    same text, dir SIDE and offset OFFSET, where SIDE's stream holds OFFENDING."""
    said = [t for t in s.lint_lines() if wording in t]
    assert len(said) == 1, f"expected one '** lint:' line with {wording!r}, got {s.lint_lines()}"
    evs = s.lint_events(rule)
    assert len(evs) == 1, f"expected one jsonl lint event {rule!r}, got {s.lint_events()}"
    ev = evs[0]
    assert ev["text"] == said[0], (ev["text"], said[0])
    assert ev["dir"] == side, ev
    stream = s.c2s if side == "c2s" else s.s2c
    off = ev["lint"]["offset"]
    assert stream[off:off + len(offending)] == offending, (
        f"{rule}: offset {off} points at {stream[off:off + len(offending) + 16]!r}, "
        f"not at {offending!r}")
    assert off == offset, f"{rule}: offset {off}, expected {offset}"
    others = [e for e in s.lint_events() if e is not ev]
    assert not others, f"{rule}: other findings in the same session: {others}"
    return ev


def assert_no_finding(s: Session, rule: str, wording: str, *, clean: bool = True) -> None:
    """No finding RULE (no jsonl event, no `** lint:` line with WORDING); clean=True: a
    conforming session, no finding at all."""
    assert not s.lint_events(rule), f"session has {rule}: {s.lint_events(rule)}"
    assert not [t for t in s.lint_lines() if wording in t], s.lint_lines()
    if clean:
        assert not s.lint_events(), f"conforming session has findings: {s.lint_events()}"


def plain_b64(user: str, password: str) -> bytes:
    return base64.b64encode(f"\0{user}\0{password}".encode())


def transaction(c: Client, mail: bytes = b"MAIL FROM:<alice@example.org>",
                rcpt: bytes = b"RCPT TO:<bob@example.net>", content: bytes = b"") -> List[bytes]:
    """MAIL, RCPT, DATA with CONTENT (CRLF-terminated, dot-stuffed); the final reply."""
    assert c.cmd(mail)[-1].startswith(b"250")
    assert c.cmd(rcpt)[-1].startswith(b"250")
    assert c.cmd(b"DATA")[-1].startswith(b"354")
    c.send(content + b".\r\n")
    return c.reply()


# --------------------------------------------------------------------------- the rules


def test_8bit_without_8bitmime(lab):
    """An 8-bit body sent without BODY=8BITMIME: one finding per message, at the first
    8-bit byte of the content in the client's stream; aiosmtpd stores the bytes as sent."""
    with AiosmtpdServer() as srv:
        lb = lab(srv.hostport)
        body = b"Subject: caf\xc3\xa9\r\n\r\nna\xc3\xafve and r\xc3\xa9sum\xc3\xa9\r\n"
        c = lb.client()
        c.reply()
        c.cmd(b"EHLO client.test")
        assert transaction(c, content=body)[-1].startswith(b"250")
        c.quit()
        s = lb.finish(c)
        off = s.c2s.index(b"\xc3")
        assert_finding(s, "8bit-without-8bitmime",
                       "8-bit byte 0xC3 in the message at line 1 without BODY=8BITMIME",
                       "c2s", off, b"\xc3\xa9\r\n")
        assert s.c2s[s.c2s.index(b"DATA\r\n") + 6:].startswith(b"Subject: caf")

        c = lb.client()
        c.reply()
        c.cmd(b"EHLO client.test")
        assert transaction(c, mail=b"MAIL FROM:<alice@example.org> BODY=8BITMIME",
                           content=body)[-1].startswith(b"250")
        c.quit()
        s = lb.finish(c)
        assert_no_finding(s, "8bit-without-8bitmime", "without BODY=8BITMIME")
        assert [m.content for m in srv.wait_for_messages(2)] == [body, body]


def test_smtputf8_not_offered(lab, need):
    """Postfix smtp-sink offers no SMTPUTF8: MAIL with the SMTPUTF8 parameter, and (another
    session) RCPT with a UTF-8 address, are each said once at their line; against aiosmtpd,
    which offers SMTPUTF8, the same commands are silent."""
    need("smtp-sink")
    mail_param = b"MAIL FROM:<alice@example.org> SMTPUTF8"
    rcpt_utf8 = "RCPT TO:<j\u00f6rg@example.net>".encode()
    with SmtpSink() as sink:
        lb = lab(sink.hostport)
        c = lb.client()
        c.reply()
        ehlo = c.cmd(b"EHLO client.test")
        assert b"250-SMTPUTF8" not in ehlo and b"250 SMTPUTF8" not in ehlo
        c.cmd(mail_param)
        c.quit()
        s = lb.finish(c)
        assert_finding(s, "smtputf8-not-offered",
                       "MAIL FROM carries the SMTPUTF8 parameter but the server did not offer "
                       "SMTPUTF8", "c2s", s.c2s.index(mail_param), mail_param + CRLF)

        c = lb.client()
        c.reply()
        c.cmd(b"EHLO client.test")
        c.cmd(b"MAIL FROM:<alice@example.org>")
        c.cmd(rcpt_utf8)
        c.quit()
        s = lb.finish(c)
        assert_finding(s, "smtputf8-not-offered",
                       "RCPT TO has a non-ASCII address (byte 0xC3) but the server did not "
                       "offer SMTPUTF8", "c2s", s.c2s.index(rcpt_utf8), rcpt_utf8 + CRLF)

    with AiosmtpdServer() as srv:
        lb = lab(srv.hostport)
        c = lb.client()
        c.reply()
        assert b"250-SMTPUTF8" in c.cmd(b"EHLO client.test")
        assert c.cmd(mail_param)[-1].startswith(b"250")
        assert c.cmd(rcpt_utf8)[-1].startswith(b"250")
        c.quit()
        s = lb.finish(c)
        assert_no_finding(s, "smtputf8-not-offered", "SMTPUTF8")


def test_pipelining_not_offered(lab, need):
    """MAIL and RCPT in one write to Postfix smtp-sink -p (no PIPELINING): one finding at
    the RCPT, the first command sent while a reply was due; the same burst to smtp-sink with
    PIPELINING, and the same commands one by one to the -p sink, are silent."""
    need("smtp-sink")
    burst = b"MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.net>\r\n"
    for args, pipelined, finds in ((["-p"], True, True), ([], True, False),
                                   (["-p"], False, False)):
        with SmtpSink(args=args) as sink:
            lb = lab(sink.hostport)
            c = lb.client()
            c.reply()
            ehlo = c.cmd(b"EHLO client.test")
            assert (b"250-PIPELINING" in ehlo) == (args == [])
            if pipelined:
                c.send(burst)
                assert c.reply()[-1].startswith(b"250") and c.reply()[-1].startswith(b"250")
            else:
                for ln in burst.split(CRLF)[:-1]:
                    assert c.cmd(ln)[-1].startswith(b"250")
            c.quit()
            s = lb.finish(c)
            if finds:
                assert_finding(s, "pipelining-not-offered",
                               "client sent RCPT before the reply to its previous command, but "
                               "the server did not offer PIPELINING",
                               "c2s", s.c2s.index(b"RCPT TO:"), b"RCPT TO:<bob@example.net>\r\n")
            else:
                assert_no_finding(s, "pipelining-not-offered", "PIPELINING")


def test_command_before_greeting(lab, need):
    """Postfix smtp-sink -W CONNECT:1 greets a second after the connection; a client that
    sends EHLO at once gets one finding at offset 0 (and no pipelining finding for it); the
    EHLO still reaches the server unchanged.  A client that waits for the 220 is silent."""
    need("smtp-sink")
    with SmtpSink(args=["-W", "CONNECT:1"]) as sink:
        lb = lab(sink.hostport)
        c = lb.client()
        t0 = time.monotonic()
        c.send(b"EHLO client.test\r\n")
        greeting = c.reply()
        assert greeting[-1].startswith(b"220") and time.monotonic() - t0 > 0.5, greeting
        assert c.reply()[-1].startswith(b"250")
        c.quit()
        s = lb.finish(c)
        assert_finding(s, "command-before-greeting",
                       "client sent EHLO before the server's greeting", "c2s", 0,
                       b"EHLO client.test\r\n")
        assert_no_finding(s, "pipelining-not-offered", "PIPELINING", clean=False)

        c = lb.client()
        assert c.reply()[-1].startswith(b"220")
        assert c.cmd(b"EHLO client.test")[-1].startswith(b"250")
        c.quit()
        s = lb.finish(c)
        assert_no_finding(s, "command-before-greeting", "before the server's greeting")


def test_chunking_not_offered(lab, need):
    """BDAT to Postfix smtp-sink, which offers no CHUNKING: one finding at the BDAT line
    (the server refuses it; the zero-octet chunk leaves no octets to be read as commands);
    a whole BDAT message to aiosmtpd with CHUNKING is silent and stored as sent."""
    need("smtp-sink")
    with SmtpSink() as sink:
        lb = lab(sink.hostport)
        c = lb.client()
        c.reply()
        assert b"CHUNKING" not in b"".join(c.cmd(b"EHLO client.test"))
        c.cmd(b"MAIL FROM:<alice@example.org>")
        c.cmd(b"RCPT TO:<bob@example.net>")
        assert c.cmd(b"BDAT 0 LAST")[-1].startswith(b"500")
        c.quit()
        s = lb.finish(c)
        assert_finding(s, "chunking-not-offered",
                       "client sent BDAT but the server did not offer CHUNKING", "c2s",
                       s.c2s.index(b"BDAT"), b"BDAT 0 LAST\r\n")

    msg = harness.make_message("bdat")
    with AiosmtpdServer(bdat=True) as srv:
        lb = lab(srv.hostport)
        c = lb.client()
        c.reply()
        assert b"250-CHUNKING" in b"".join(c.cmd(b"EHLO client.test"))
        c.cmd(b"MAIL FROM:<alice@example.org>")
        c.cmd(b"RCPT TO:<bob@example.net>")
        c.send(b"BDAT %d\r\n" % 20 + msg[:20])
        assert c.reply()[-1].startswith(b"250")
        c.send(b"BDAT %d LAST\r\n" % (len(msg) - 20) + msg[20:])
        assert c.reply()[-1].startswith(b"250")
        c.quit()
        s = lb.finish(c)
        assert_no_finding(s, "chunking-not-offered", "CHUNKING")
        assert srv.wait_for_messages(1)[0].content == msg


def test_size_over_limit(lab):
    """aiosmtpd with a 1000-octet limit offers "SIZE 1000": MAIL with SIZE=5000 gets one
    finding at its line (and the server's 552); SIZE=1000 and SIZE=999 are silent."""
    with AiosmtpdServer(data_size_limit=1000) as srv:
        lb = lab(srv.hostport)
        c = lb.client()
        c.reply()
        assert b"250-SIZE 1000" in c.cmd(b"EHLO client.test")
        over = b"MAIL FROM:<alice@example.org> SIZE=5000"
        assert c.cmd(over)[-1].startswith(b"552")
        for ok in (b"MAIL FROM:<alice@example.org> SIZE=1000",
                   b"MAIL FROM:<alice@example.org> SIZE=999"):
            assert c.cmd(b"RSET")[-1].startswith(b"250")
            assert c.cmd(ok)[-1].startswith(b"250")
        c.quit()
        s = lb.finish(c)
        assert_finding(s, "size-over-limit",
                       "MAIL FROM declares SIZE=5000 but the server's SIZE limit is 1000 octets",
                       "c2s", s.c2s.index(over), over + CRLF)

        c = lb.client()
        c.reply()
        c.cmd(b"EHLO client.test")
        assert transaction(c, mail=b"MAIL FROM:<alice@example.org> SIZE=200",
                           content=b"Subject: small\r\n\r\nhi\r\n")[-1].startswith(b"250")
        c.quit()
        s = lb.finish(c)
        assert_no_finding(s, "size-over-limit", "SIZE limit")


def test_reply_code_changes(lab):
    """A scripted server whose multi-line HELP reply ends with another code (214-, 214-,
    250): one finding at the 250 line in the client's stream; 214- 214- 214 is silent."""
    bad = b"214-tiny.test help\r\n214-Topics: HELO EHLO MAIL RCPT DATA\r\n250 End of HELP\r\n"
    good = b"214-tiny.test help\r\n214-Topics: HELO EHLO MAIL RCPT DATA\r\n214 End of HELP\r\n"
    with ScriptServer([Script(replies={b"HELP": bad}), Script(replies={b"HELP": good})]) as srv:
        lb = lab(f"{srv.host}:{srv.port}")
        for reply, finds in ((bad, True), (good, False)):
            c = lb.client()
            c.reply()
            c.cmd(b"EHLO client.test")
            assert b"".join(l + CRLF for l in c.cmd(b"HELP")) == reply
            assert c.cmd(b"NOOP")[-1].startswith(b"250")  # still paired right after it
            c.quit()
            s = lb.finish(c)
            if finds:
                assert_finding(s, "reply-code-changes",
                               'multi-line reply changes its code from "214" to "250" at line 3',
                               "s2c", s.s2c.index(b"250 End of HELP"), b"250 End of HELP\r\n")
            else:
                assert_no_finding(s, "reply-code-changes", "changes its code")


def test_reply_code_out_of_range(lab):
    """A scripted server answering NOOP with "600": one finding at that reply in the client's
    stream; the session goes on (MAIL still paired); a 250 to NOOP is silent."""
    bad, good = b"600 6.0.0 what is this\r\n", b"250 2.0.0 Ok\r\n"
    with ScriptServer([Script(replies={b"NOOP": bad}), Script(replies={b"NOOP": good})]) as srv:
        lb = lab(f"{srv.host}:{srv.port}")
        for reply, finds in ((bad, True), (good, False)):
            c = lb.client()
            c.reply()
            c.cmd(b"EHLO client.test")
            assert c.cmd(b"NOOP") == [reply[:-2]]
            assert c.cmd(b"MAIL FROM:<alice@example.org>")[-1].startswith(b"250")
            c.quit()
            s = lb.finish(c)
            if finds:
                assert_finding(s, "reply-code-out-of-range",
                               'reply code "600" is not a 3-digit code from 2xx to 5xx',
                               "s2c", s.s2c.index(bad), bad)
            else:
                assert_no_finding(s, "reply-code-out-of-range", "not a 3-digit code")


def test_enhanced_code_mismatch(lab, need):
    """Postfix smtp-sink offering ENHANCEDSTATUSCODES, configured to refuse RCPT with
    "550 2.1.5 ..." (-f RCPT -B): one finding at that reply; the same reply from a sink
    started with -E (no ENHANCEDSTATUSCODES offered) is silent, and so is a class-matching
    "550 5.1.1 ..." with ENHANCEDSTATUSCODES."""
    need("smtp-sink")
    mismatch, match = "550 2.1.5 Recipient refused", "550 5.1.1 Recipient refused"
    for args, reply, finds in ((["-B", mismatch], mismatch, True),
                               (["-E", "-B", mismatch], mismatch, False),
                               (["-B", match], match, False)):
        with SmtpSink(args=["-f", "RCPT", *args]) as sink:
            lb = lab(sink.hostport)
            c = lb.client()
            c.reply()
            ehlo = b"".join(c.cmd(b"EHLO client.test"))
            assert (b"ENHANCEDSTATUSCODES" in ehlo) == ("-E" not in args)
            c.cmd(b"MAIL FROM:<alice@example.org>")
            assert c.cmd(b"RCPT TO:<bob@example.net>") == [reply.encode()]
            c.quit()
            s = lb.finish(c)
            if finds:
                assert_finding(s, "enhanced-code-mismatch",
                               "reply 550 carries enhanced status code 2.1.5, whose class says "
                               "success", "s2c", s.s2c.index(reply.encode()),
                               reply.encode() + CRLF)
            else:
                assert_no_finding(s, "enhanced-code-mismatch", "enhanced status code")


def test_reply_before_command(lab):
    """A scripted server that sends a reply right behind its greeting, before the client
    said anything: one finding at that reply; the client's EHLO then gets its own reply.
    Counterparts: a plain session, and an unasked 421 (allowed any time) are silent."""
    extra = b"250 2.0.0 nobody asked\r\n"
    down = b"421 4.3.2 tiny.test shutting down\r\n"
    with ScriptServer([Script(after_greeting=extra), Script(),
                       Script(after_greeting=down, close_after_greeting=True)]) as srv:
        lb = lab(f"{srv.host}:{srv.port}")
        c = lb.client()
        assert c.reply()[-1].startswith(b"220")
        assert c.reply() == [extra[:-2]]
        assert c.cmd(b"EHLO client.test")[0] == b"250-tiny.test"
        c.quit()
        s = lb.finish(c)
        assert_finding(s, "reply-before-command", "reply that no command asked for", "s2c",
                       s.s2c.index(extra), extra)

        c = lb.client()
        c.reply()
        c.cmd(b"EHLO client.test")
        c.quit()
        s = lb.finish(c)
        assert_no_finding(s, "reply-before-command", "no command asked for")

        c = lb.client()
        assert c.reply()[-1].startswith(b"220")
        assert c.reply() == [down[:-2]]
        c.read_until_closed()
        s = lb.finish(c)
        assert_no_finding(s, "reply-before-command", "no command asked for")


def test_auth_before_starttls(lab, tmp_path):
    """aiosmtpd offering STARTTLS and AUTH (allowed in clear): AUTH PLAIN in plain text gets
    one finding at the AUTH line.  The counterpart: smtplib doing STARTTLS first (smtptap
    offers and terminates it, --client-starttls offer) and AUTH inside TLS is silent, and
    the server still gets the AUTH."""
    ctx = harness.server_tls_context(str(tmp_path))
    with AiosmtpdServer(auth=True, tls_context=ctx) as srv:
        lb = lab(srv.hostport)
        c = lb.client()
        c.reply()
        ehlo = b"".join(c.cmd(b"EHLO client.test"))
        assert b"STARTTLS" in ehlo and b"AUTH" in ehlo
        auth = b"AUTH PLAIN " + plain_b64("alice", "S3cr3t-pw")
        assert c.cmd(auth)[-1].startswith(b"235")
        c.quit()
        s = lb.finish(c)
        assert_finding(s, "auth-before-starttls",
                       "client sent AUTH in plain text although STARTTLS was offered to it",
                       "c2s", s.c2s.index(auth), auth + CRLF)

        lb = lab(srv.hostport, client_starttls="offer")
        lb.sessions += 1
        with smtplib.SMTP(lb.t.host, lb.t.port, local_hostname="client.test", timeout=10) as sm:
            sm.starttls(context=ssl._create_unverified_context())
            sm.login("alice", "S3cr3t-pw")
            sm.quit()
        s = lb.session(1)
        assert_no_finding(s, "auth-before-starttls", "AUTH in plain text")
        assert [e["tls"] for e in s.events if e["kind"] == "command"
                and payload(e).upper().startswith(b"AUTH ")] == [True]
        assert b"\r\nAUTH PLAIN " + auth[11:] + CRLF in lb.rec.to_server(1)
