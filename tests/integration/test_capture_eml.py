"""The eml capture (`-d DIR --format eml`): one file per message, as the server received it.

smtptap runs between real clients (raw sockets, swaks, Python smtplib) and real servers
(aiosmtpd, Postfix smtp-sink, a scripted server that never answers).  With `--eml-raw`
every file must be byte for byte what the server stored: aiosmtpd's original_content for
DATA (dot-unstuffed) and for BDAT (the chunks joined, nothing unstuffed), smtp-sink's dump
(`-d`, which writes LF line ends: compared with CRLF turned into LF), with leading dots,
998-octet lines, 8-bit bytes and, for BDAT, bare CR/LF and CRLF.CRLF inside chunks.
Without it, the X-Smtptap- header block in front names the client, the hello name, the
MAIL argument with its parameters, each ACCEPTED recipient, the server's reply and the
session; a message the server never answered still gets a file saying so.  Files are
<base>-<n>.eml, 0600, in a 0700 directory, complete as soon as the reply arrived.
"""

import contextlib
import email
import email.policy
import os
import re
import signal
import socket
import stat
import threading
import time
from pathlib import Path

import pytest

import harness
from harness import RawSmtpClient
from rawserver import ScriptedServer

EML_RE = re.compile(r"^\d{8}T\d{6}-(\d+)-(.+)-(\d+)\.eml$")
NO_REPLY = b"X-Smtptap-Reply: (none: the session ended before the server replied)\r\n"


# --------------------------------------------------------------------------- helpers


def eml_files(d) -> dict:
    """{(session, message): Path} of the .eml files in d."""
    out = {}
    for p in Path(d).iterdir():
        m = EML_RE.match(p.name)
        if m:
            out[(int(m.group(1)), int(m.group(3)))] = p
    return out


def wait_eml(d, session: int, n: int, timeout: float = 5.0) -> Path:
    deadline = time.monotonic() + timeout
    while True:
        p = eml_files(d).get((session, n))
        if p is not None:
            return p
        if time.monotonic() > deadline:
            raise AssertionError(f"no eml file for session {session} message {n} in {d}: "
                                 f"{sorted(os.listdir(d))}")
        time.sleep(0.02)


def client_of(path: Path) -> str:
    """The client as the file name tags it ("127.0.0.1_40000" -> "127.0.0.1:40000")."""
    tag = EML_RE.match(path.name).group(2)
    host, _, port = tag.rpartition("_")
    return f"{host.replace('_', ':')}:{port}"


def stuff(body: bytes) -> bytes:
    """DATA on the wire for body (CRLF lines): leading dots doubled, then CRLF.CRLF."""
    assert body == b"" or body.endswith(b"\r\n")
    lines = body.split(b"\r\n")[:-1] if body else []
    return b"".join((b"." + l if l.startswith(b".") else l) + b"\r\n" for l in lines) + b".\r\n"


def expect(reply, code: int, what: str):
    assert reply[-1][:3] == str(code).encode(), f"{what}: {reply!r}"
    return reply


def hello(c: RawSmtpClient, name: bytes = b"client.test"):
    expect(c.reply(), 220, "greeting")
    expect(c.cmd(b"EHLO " + name), 250, "EHLO")


def split_headers(data: bytes):
    """(the X-Smtptap- header lines, the rest) of a file written without --eml-raw."""
    lines, rest = [], data
    while rest.startswith(b"X-Smtptap-"):
        line, _, rest = rest.partition(b"\r\n")
        lines.append(line)
    return lines, rest


LINE_998 = b"L" * 991 + b"\xc3\xa9\xe2\x82\xac\xff\x01"  # 998 octets, 8-bit at the end
assert len(LINE_998) == 998

DATA_BODIES = [
    (b"From: <a@example.org>\r\nSubject: dots\r\n\r\n"
     b".a line that starts with a dot\r\n..two dots\r\n...\r\n.\r\n..\r\n. \r\nend\r\n"),
    (b"Subject: =?utf-8?q?long?=\r\nContent-Type: text/plain; charset=utf-8\r\n"
     b"Content-Transfer-Encoding: 8bit\r\n\r\n" + LINE_998 + b"\r\n." + LINE_998[1:] + b"\r\n"
     + "ünïcödé, 日本語, 😀\r\n".encode() + bytes(range(0x80, 0x100)) + b"\r\n\tTAB\x00NUL\r\n"),
    b"",  # an empty message: DATA then "."
]


# --------------------------------------------------------------------------- --eml-raw


def test_data_messages_are_byte_identical_to_what_aiosmtpd_stored(tap, tmp_path):
    d = tmp_path / "cap"
    with harness.AiosmtpdServer() as srv:
        t = tap(["-u", srv.hostport, "-d", str(d), "--format", "eml", "--eml-raw"])
        with RawSmtpClient("127.0.0.1", t.port) as c:
            hello(c)
            for i, body in enumerate(DATA_BODIES, 1):
                expect(c.cmd(b"MAIL FROM:<a@example.org> BODY=8BITMIME"), 250, "MAIL")
                expect(c.cmd(b"RCPT TO:<b@example.net>"), 250, "RCPT")
                expect(c.cmd(b"DATA"), 354, "DATA")
                c.send(stuff(body))
                expect(c.reply(), 250, f"end of message {i}")
                # complete as soon as the client has the reply, the session still open
                assert wait_eml(d, 1, i).read_bytes() == srv.wait_for_messages(i)[i - 1].content
            expect(c.cmd(b"QUIT"), 221, "QUIT")
        t.wait_session_end(1)
    got = srv.messages
    assert [m.content for m in got] == DATA_BODIES  # the server stored what was meant
    files = eml_files(d)
    assert sorted(files) == [(1, 1), (1, 2), (1, 3)]
    for i, m in enumerate(got, 1):
        assert files[(1, i)].read_bytes() == m.content, f"message {i}"


BDAT_MESSAGES = [
    # chunks of one message; none is dot-unstuffed or line-normalised by the server
    [b".leading dot\r\n..two\r\n", b"\r\n.\r\n", b"QUIT\r\n" + LINE_998 + b"\r\n",
     b"bare\rCR bare\nLF \x00 \xff\r\n"],
    [b"Subject: one chunk\r\n\r\n.\r\n", b""],  # ended by BDAT 0 LAST
    [LINE_998 * 3],
]


def bdat_wire(chunks) -> bytes:
    out = b""
    for j, ch in enumerate(chunks):
        last = j == len(chunks) - 1
        out += b"BDAT %d%s\r\n" % (len(ch), b" LAST" if last else b"") + ch
    return out


def test_bdat_messages_are_byte_identical_to_what_aiosmtpd_stored(tap, tmp_path):
    d = tmp_path / "cap"
    with harness.AiosmtpdServer(bdat=True) as srv:
        t = tap(["-u", srv.hostport, "-d", str(d), "--format", "eml", "--eml-raw"])
        with RawSmtpClient("127.0.0.1", t.port) as c:
            hello(c)
            # lockstep: every chunk waits for its reply
            for i, chunks in enumerate(BDAT_MESSAGES[:2], 1):
                expect(c.cmd(b"MAIL FROM:<a%d@example.org>" % i), 250, "MAIL")
                expect(c.cmd(b"RCPT TO:<b%d@example.net>" % i), 250, "RCPT")
                for j, ch in enumerate(chunks):
                    last = j == len(chunks) - 1
                    c.send(b"BDAT %d%s\r\n" % (len(ch), b" LAST" if last else b"") + ch)
                    expect(c.reply(), 250, f"message {i} chunk {j}")
            # pipelined: message 3 and 4 (and QUIT) in one write, before any reply
            wire = b""
            for i, chunks in ((3, BDAT_MESSAGES[2]), (4, BDAT_MESSAGES[0])):
                wire += b"MAIL FROM:<a%d@example.org>\r\nRCPT TO:<b%d@example.net>\r\n" % (i, i)
                wire += bdat_wire(chunks)
            c.send(wire + b"QUIT\r\n")
            n_replies = 2 + len(BDAT_MESSAGES[2]) + 2 + len(BDAT_MESSAGES[0]) + 1
            for k in range(n_replies):
                expect(c.reply(), 221 if k == n_replies - 1 else 250, f"pipelined reply {k}")
        t.wait_session_end(1)
    got = srv.wait_for_messages(4)
    want = [b"".join(ch) for ch in BDAT_MESSAGES] + [b"".join(BDAT_MESSAGES[0])]
    assert [m.content for m in got] == want
    assert [m.via for m in got] == ["BDAT"] * 4
    files = eml_files(d)
    assert sorted(files) == [(1, 1), (1, 2), (1, 3), (1, 4)]
    for i, m in enumerate(got, 1):
        assert files[(1, i)].read_bytes() == m.content, f"message {i}"


def test_data_messages_match_what_smtp_sink_stored(tap, smtp_sink, tmp_path):
    """smtp-sink -d writes each line with LF: the eml file, CRLF made LF, is its dump."""
    d = tmp_path / "cap"
    t = tap(["-u", smtp_sink.hostport, "-d", str(d), "--format", "eml", "--eml-raw"])
    bodies = DATA_BODIES[:2]
    # Python smtplib dot-stuffs and ends the data itself; two messages, one session
    import smtplib
    with smtplib.SMTP("127.0.0.1", t.port, local_hostname="client.test", timeout=20) as s:
        for body in bodies:
            assert s.sendmail("a@example.org", ["b@example.net"], body) == {}
        s.quit()
    t.wait_session_end(1)
    got = smtp_sink.wait_for_messages(2)
    assert sorted(m.content for m in got) == sorted(b.replace(b"\r\n", b"\n") for b in bodies)
    files = eml_files(d)
    assert sorted(files) == [(1, 1), (1, 2)]
    for i, body in enumerate(bodies, 1):
        eml = files[(1, i)].read_bytes()
        assert eml == body  # CRLF as the server received it
        assert eml.replace(b"\r\n", b"\n") in [m.content for m in got]


def test_swaks_data_through_to_smtp_sink(tap, need, smtp_sink, tmp_path):
    need("swaks")
    d = tmp_path / "cap"
    t = tap(["-u", smtp_sink.hostport, "-d", str(d), "--format", "eml", "--eml-raw"])
    msg = harness.make_message("swaks to smtp-sink",
                               body_lines=[".dot", "..dots", LINE_998[:-4].decode("latin-1")])
    rc, out, err = harness.swaks_send(t.hostport, "a@example.org", ["b@example.net"], msg,
                                      str(tmp_path), "--pipeline")
    assert rc == 0, f"swaks rc {rc}\n{out}\n{err}"
    t.wait_session_end(1)
    got = smtp_sink.wait_for_messages(1)[0]
    eml = wait_eml(d, 1, 1).read_bytes()
    assert eml.replace(b"\r\n", b"\n") == got.content
    assert eml == msg


def test_a_20_mb_message_is_byte_identical_and_leaves_nothing_else_behind(tap, tmp_path):
    d = tmp_path / "cap"
    line = bytes(range(0x20, 0x7f)) * 5 + b"\xc3\xa9" + b"\r\n"
    body = b"Subject: big\r\n\r\n" + (b"." + line) * (20_000_000 // (len(line) + 1))
    with harness.AiosmtpdServer() as srv:
        t = tap(["-u", srv.hostport, "-d", str(d), "--format", "eml", "--eml-raw"])
        with RawSmtpClient("127.0.0.1", t.port, timeout=60) as c:
            hello(c)
            expect(c.cmd(b"MAIL FROM:<a@example.org>"), 250, "MAIL")
            expect(c.cmd(b"RCPT TO:<b@example.net>"), 250, "RCPT")
            expect(c.cmd(b"DATA"), 354, "DATA")
            c.send(stuff(body))
            expect(c.reply(), 250, "end of data")
            expect(c.cmd(b"QUIT"), 221, "QUIT")
        t.wait_session_end(1, timeout=30)
        stored = srv.wait_for_messages(1)[0].content
    assert stored == body
    assert wait_eml(d, 1, 1).read_bytes() == stored
    assert sorted(os.listdir(d)) == [eml_files(d)[(1, 1)].name]  # no temporary file left


# --------------------------------------------------------------------------- the headers


def test_headers_name_the_envelope_swaks_sent_and_only_the_accepted_recipient(
        tap, need, tmp_path):
    need("swaks")
    d = tmp_path / "cap"
    with harness.AiosmtpdServer() as srv:
        t = tap(["-u", srv.hostport, "-d", str(d), "--format", "eml"])
        msg = harness.make_message("envelope headers", to=["bob@example.net"])
        rc, out, err = harness.swaks_send(
            t.hostport, "alice@example.org", ["bob@example.net", "reject-carol@example.net"],
            msg, str(tmp_path), "--helo", "client.example")
        assert rc == 0, f"swaks rc {rc}\n{out}\n{err}"
        assert "550 5.1.1 Recipient <reject-carol@example.net> rejected" in out
        t.wait_session_end(1)
        stored = srv.wait_for_messages(1)[0]
    assert stored.rcpt_tos == ["bob@example.net"]
    path = wait_eml(d, 1, 1)
    headers, body = split_headers(path.read_bytes())
    assert headers == [
        f"X-Smtptap-Client: {client_of(path)}".encode(),
        b"X-Smtptap-Helo: client.example",
        b"X-Smtptap-Mail-From: <alice@example.org>",
        b"X-Smtptap-Rcpt-To: <bob@example.net>",
        b"X-Smtptap-Reply: 250 2.0.0 OK queued as aio1",
        b"X-Smtptap-Session: 1",
    ]
    assert re.fullmatch(r"127\.0\.0\.1:\d+", client_of(path))
    assert body == stored.content == msg
    # a mail tool reads the capture as one message: our fields and the message's own
    parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert parsed["X-Smtptap-Rcpt-To"] == "<bob@example.net>"
    assert parsed["X-Smtptap-Mail-From"] == "<alice@example.org>"
    assert parsed["Subject"] == "envelope headers"
    assert not parsed.defects


def test_mail_parameters_are_kept_and_a_refused_message_has_its_refusal(tap, tmp_path):
    d = tmp_path / "cap"
    with harness.AiosmtpdServer(data_size_limit=200) as srv:
        t = tap(["-u", srv.hostport, "-d", str(d), "--format", "eml"])
        small = b"Subject: small\r\n\r\nok\r\n"
        big = b"Subject: big\r\n\r\n" + b"x" * 300 + b"\r\n"

        def declared(body):
            return min(len(body), 100)
        with RawSmtpClient("127.0.0.1", t.port) as c:
            hello(c, b"param.example")
            for body in (small, big):  # the big one's SIZE understates it
                expect(c.cmd(b"MAIL FROM:<a@example.org> SIZE=%d BODY=8BITMIME" % declared(body)),
                       250, "MAIL")
                expect(c.cmd(b"RCPT TO:<b@example.net>"), 250, "RCPT")
                expect(c.cmd(b"DATA"), 354, "DATA")
                c.send(stuff(body))
                final = c.reply()
            assert final[-1].startswith(b"552"), final
            expect(c.cmd(b"QUIT"), 221, "QUIT")
        t.wait_session_end(1)
    for n, body, reply in ((1, small, b"250 2.0.0 OK queued as aio1"), (2, big, final[-1])):
        headers, got = split_headers(wait_eml(d, 1, n).read_bytes())
        assert headers[1:] == [
            b"X-Smtptap-Helo: param.example",
            b"X-Smtptap-Mail-From: <a@example.org> SIZE=%d BODY=8BITMIME" % declared(body),
            b"X-Smtptap-Rcpt-To: <b@example.net>",
            b"X-Smtptap-Reply: " + reply,
            b"X-Smtptap-Session: 1",
        ], n
        assert got == body


def test_a_message_the_server_never_answered_is_written_when_the_session_ends(tap, tmp_path):
    d = tmp_path / "cap"
    body = b"Subject: unanswered\r\n\r\n.dot\r\n"
    with ScriptedServer(behaviours=[("close_in_data", b"\r\n.\r\n")]) as srv:
        t = tap(["-u", srv.hostport, "-d", str(d), "--format", "eml"])
        with RawSmtpClient("127.0.0.1", t.port) as c:
            hello(c)
            expect(c.cmd(b"MAIL FROM:<a@example.org>"), 250, "MAIL")
            expect(c.cmd(b"RCPT TO:<b@example.net>"), 250, "RCPT")
            expect(c.cmd(b"DATA"), 354, "DATA")
            c.send(stuff(body))
            c.read_until_closed()
        t.wait_session_end(1)
    path = wait_eml(d, 1, 1)
    assert path.read_bytes() == (f"X-Smtptap-Client: {client_of(path)}\r\n".encode() + NO_REPLY
                                 + b"X-Smtptap-Session: 1\r\n" + body)


class HangingServer:
    """Answers until the end of the data, then never replies (and keeps the connection)."""

    def __init__(self):
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(4)
        self.port = self.lsock.getsockname()[1]
        self.got_end = threading.Event()
        self.conns = []
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def hostport(self):
        return f"127.0.0.1:{self.port}"

    def _serve(self):
        with contextlib.suppress(OSError):
            c, _ = self.lsock.accept()
            self.conns.append(c)
            c.sendall(b"220 hanging.test ESMTP\r\n")
            buf = b""
            while True:
                data = c.recv(65536)
                if not data:
                    return
                buf += data
                while b"\r\n" in buf:
                    line, _, buf = buf.partition(b"\r\n")
                    verb = line[:4].upper()
                    if verb == b"DATA":
                        c.sendall(b"354 go ahead\r\n")
                        while b"\r\n.\r\n" not in buf:
                            buf += c.recv(65536)
                        self.got_end.set()
                        return  # never answers the end of the data
                    c.sendall(b"250 ok\r\n")

    def close(self):
        for c in self.conns:
            c.close()
        self.lsock.close()


def test_sigterm_writes_the_message_still_waiting_for_its_reply(tap, tmp_path):
    d = tmp_path / "cap"
    body = b"Subject: waiting\r\n\r\nstill waiting\r\n"
    srv = HangingServer()
    try:
        t = tap(["-u", srv.hostport, "-d", str(d), "--format", "eml"])
        with RawSmtpClient("127.0.0.1", t.port) as c:
            hello(c)
            expect(c.cmd(b"MAIL FROM:<a@example.org>"), 250, "MAIL")
            expect(c.cmd(b"RCPT TO:<b@example.net>"), 250, "RCPT")
            expect(c.cmd(b"DATA"), 354, "DATA")
            c.send(stuff(body))
            assert srv.got_end.wait(5)
            time.sleep(0.2)
            assert eml_files(d) == {}  # no reply yet: nothing written
            t.proc.send_signal(signal.SIGTERM)  # the session gets a grace period...
            t.wait_for(r"received: no new sessions")
            t.stop()  # ...which a second SIGTERM cuts short (exit 0 checked)
    finally:
        srv.close()
    path = wait_eml(d, 1, 1, timeout=1)
    assert path.read_bytes() == (f"X-Smtptap-Client: {client_of(path)}\r\n".encode() + NO_REPLY
                                 + b"X-Smtptap-Session: 1\r\n" + body)


def test_a_message_cut_short_has_no_file(tap, tmp_path):
    d = tmp_path / "cap"
    with harness.AiosmtpdServer() as srv:
        t = tap(["-u", srv.hostport, "-d", str(d), "--format", "eml"])
        with RawSmtpClient("127.0.0.1", t.port) as c:
            hello(c)
            expect(c.cmd(b"MAIL FROM:<a@example.org>"), 250, "MAIL")
            expect(c.cmd(b"RCPT TO:<b@example.net>"), 250, "RCPT")
            expect(c.cmd(b"DATA"), 354, "DATA")
            c.send(b"Subject: never finished\r\n\r\nhalf a li")
        t.wait_session_end(1)
    assert os.listdir(d) == []


def test_an_ipv6_client_is_named_in_brackets(tap, tmp_path):
    ok, why = harness.has_ipv6_loopback()
    if not ok:
        pytest.skip(why)
    d = tmp_path / "cap"
    with harness.AiosmtpdServer() as srv:
        t = tap(["-u", srv.hostport, "-d", str(d), "--format", "eml"], listen="[::1]:0")
        with RawSmtpClient("::1", t.port) as c:
            hello(c)
            expect(c.cmd(b"MAIL FROM:<a@example.org>"), 250, "MAIL")
            expect(c.cmd(b"RCPT TO:<b@example.net>"), 250, "RCPT")
            expect(c.cmd(b"DATA"), 354, "DATA")
            c.send(stuff(b"x\r\n"))
            expect(c.reply(), 250, "end of data")
            port = c.sock.getsockname()[1]
            expect(c.cmd(b"QUIT"), 221, "QUIT")
        t.wait_session_end(1)
    headers, _ = split_headers(wait_eml(d, 1, 1).read_bytes())
    assert headers[0] == f"X-Smtptap-Client: [::1]:{port}".encode()


def test_files_are_0600_in_a_0700_directory(tap, tmp_path):
    d = tmp_path / "new" / "cap"  # created by smtptap
    with harness.AiosmtpdServer() as srv:
        t = tap(["-u", srv.hostport, "-d", str(d), "--format", "eml"])
        refused = harness.smtplib_send("127.0.0.1", t.port, "a@example.org", ["b@example.net"],
                                       harness.make_message("modes"))
        assert refused == {}
        t.wait_session_end(1)
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    path = wait_eml(d, 1, 1)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_bytes().startswith(b"X-Smtptap-Client: 127.0.0.1:")


# --------------------------------------------------------------------------- known gaps


def test_rset_after_a_bdat_chunk_discards_it(tap, tmp_path):
    d = tmp_path / "cap"
    with harness.AiosmtpdServer(bdat=True) as srv:
        t = tap(["-u", srv.hostport, "-d", str(d), "--format", "eml", "--eml-raw"])
        with RawSmtpClient("127.0.0.1", t.port) as c:
            hello(c)
            expect(c.cmd(b"MAIL FROM:<a@example.org>"), 250, "MAIL")
            expect(c.cmd(b"RCPT TO:<b@example.net>"), 250, "RCPT")
            c.send(b"BDAT 9\r\ndiscarded")
            expect(c.reply(), 250, "chunk")
            expect(c.cmd(b"RSET"), 250, "RSET")
            expect(c.cmd(b"MAIL FROM:<a@example.org>"), 250, "MAIL")
            expect(c.cmd(b"RCPT TO:<b@example.net>"), 250, "RCPT")
            c.send(b"BDAT 4 LAST\r\nkept")
            expect(c.reply(), 250, "last chunk")
            expect(c.cmd(b"QUIT"), 221, "QUIT")
        t.wait_session_end(1)
    assert srv.wait_for_messages(1)[0].content == b"kept"
    files = eml_files(d)
    assert [p.read_bytes() for _, p in sorted(files.items())] == [b"kept"]
