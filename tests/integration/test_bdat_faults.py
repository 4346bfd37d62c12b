"""Reply faults on BDAT chunks (RFC 3030): the server stays in step with what the client
was told, and the captures agree with what the server stored.

Found by the soak (tests/soak/repro/bdat_fault.py): a fault that refused one chunk of a
message kept that chunk from the server but forwarded the others, so the server stored a
message with a hole while jsonl and eml showed all of it; a fault that refused BDAT LAST
left a message without an outcome, and every later delivery was paired with the message
before it. Now a 4xx/5xx on a chunk fails the transaction: its octets and those of the
chunks after it go nowhere (each later chunk gets the same reply), smtptap resets the
server's transaction once, and no message is recorded. A 2xx on a chunk forwards it and
replaces only the reply.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

import pytest

import harness
from harness import RawSmtpClient

EML_RE = re.compile(r".*-(\d+)\.eml$")

M1 = b"X-Id: m1\r\n\r\nbody one\r\n"  # 22 octets, sent as chunks of 10, 4 and 8
M2 = b"X-Id: m2\r\n\r\nbody two\r\n"
M3 = b"X-Id: m3\r\n\r\nbody three\r\n"


def expect(reply, code: int, what: str):
    assert reply[-1][:3] == str(code).encode(), f"{what}: {reply!r}"
    return reply


def hello(c: RawSmtpClient):
    expect(c.reply(), 220, "greeting")
    expect(c.cmd(b"EHLO client.test"), 250, "EHLO")


def events(d: Path):
    (path,) = list(d.glob("*.jsonl"))
    return [json.loads(line) for line in path.read_text().splitlines()]


def emls(d: Path):
    """{message number: bytes} of the .eml files (with their X-Smtptap- headers)."""
    return {int(EML_RE.match(p.name).group(1)): p.read_bytes() for p in d.glob("*.eml")}


def deliver_m3_without_rset(c: RawSmtpClient):
    """A new transaction straight after the failed one: a server still holding the old
    one would answer MAIL with 503."""
    expect(c.cmd(b"MAIL FROM:<a@example.org>"), 250, "MAIL after the failed transaction")
    expect(c.cmd(b"RCPT TO:<d@example.net>"), 250, "RCPT")
    c.send(b"BDAT %d LAST\r\n" % len(M3) + M3)
    expect(c.reply(), 250, "BDAT LAST of m3")
    expect(c.cmd(b"QUIT"), 221, "QUIT")


def assert_captures_hold_only_m3(d: Path):
    ev = events(d)
    messages = [e["message"] for e in ev if e["kind"] == "message"]
    deliveries = [e["delivery"] for e in ev if e["kind"] == "delivery"]
    assert [m["size"] for m in messages] == [len(M3)], messages
    assert len(deliveries) == 1, deliveries
    # the delivery names the message it ends, by the number the message event has
    assert deliveries[0]["message"] == messages[0]["number"]
    assert deliveries[0]["rcpts"] == ["RCPT TO:<d@example.net>"]
    files = emls(d)
    assert list(files) == [messages[0]["number"]], sorted(files)
    body = files[messages[0]["number"]]
    assert body.endswith(M3)
    assert b"X-Smtptap-Rcpt-To: <d@example.net>" in body
    # smtptap's own RSET and the server's answer are in the capture, marked as smtptap's
    own = [e for e in ev if e["kind"] == "command" and e.get("local")]
    assert [e.get("line") for e in own] == ["RSET\r\n"], own
    return ev


@pytest.mark.parametrize("server", ["aiosmtpd", "sink"])
def test_a_refused_middle_chunk_fails_the_transaction_pipelined(tap, tmp_path, server):
    d = tmp_path / "cap"
    srv = harness.AiosmtpdServer(bdat=True) if server == "aiosmtpd" else None
    with (srv or contextlib.nullcontext()):
        up = ["-u", srv.hostport] if srv else []
        t = tap(up + ["-d", str(d), "--format", "text,jsonl,eml",
                      "--fault", "BDAT 4: reply 451 4.3.0 chunk refused by a fault"])
        with RawSmtpClient("127.0.0.1", t.port) as c:
            hello(c)
            c.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n"
                   b"BDAT 10\r\n" + M1[:10] + b"BDAT 4\r\n" + M1[10:14]
                   + b"BDAT 8 LAST\r\n" + M1[14:])
            codes = [c.reply()[-1][:3] for _ in range(5)]
            # the chunk after the refused one is discarded with the same reply (RFC 3030)
            assert codes == [b"250", b"250", b"250", b"451", b"451"]
            deliver_m3_without_rset(c)
        t.wait_session_end(1)
        if srv:
            got = srv.wait_for_messages(1)
            assert [m.content for m in got] == [M3]  # nothing of m1, not even its first chunk
    assert_captures_hold_only_m3(d)
    lines = [l.text for l in t.lines(1)]
    assert any("fault flag 1: BDAT answered by smtptap, not forwarded" in l for l in lines)
    assert any(l.startswith("message 1 abandoned: a fault refused one of its BDAT chunks")
               for l in lines), t.transcript()
    assert any(l.startswith("BDAT chunk discarded by smtptap: fault flag 1 failed the "
                            "transaction") for l in lines), t.transcript()


def test_a_refused_last_chunk_leaves_later_deliveries_paired(tap, tmp_path, aiosmtpd_bdat):
    d = tmp_path / "cap"
    t = tap(["-u", aiosmtpd_bdat.hostport, "-d", str(d), "--format", "jsonl,eml",
             "--fault", "BDAT 22 LAST: reply 554 5.6.0 refused by a fault"])
    with RawSmtpClient("127.0.0.1", t.port) as c:
        hello(c)
        expect(c.cmd(b"MAIL FROM:<a@example.org>"), 250, "MAIL")
        expect(c.cmd(b"RCPT TO:<c@example.net>"), 250, "RCPT")
        c.send(b"BDAT 22 LAST\r\n" + M2)
        expect(c.reply(), 554, "the refused BDAT LAST")
        deliver_m3_without_rset(c)
    t.wait_session_end(1)
    assert [m.content for m in aiosmtpd_bdat.wait_for_messages(1)] == [M3]
    assert_captures_hold_only_m3(d)


def test_a_2xx_fault_on_a_chunk_forwards_it_and_replaces_only_the_reply(tap, tmp_path,
                                                                         aiosmtpd_bdat):
    d = tmp_path / "cap"
    t = tap(["-u", aiosmtpd_bdat.hostport, "-d", str(d), "--format", "jsonl,eml",
             "--fault", "BDAT 4: reply 250 2.0.0 faked by a fault"])
    with RawSmtpClient("127.0.0.1", t.port) as c:
        hello(c)
        expect(c.cmd(b"MAIL FROM:<a@example.org>"), 250, "MAIL")
        expect(c.cmd(b"RCPT TO:<b@example.net>"), 250, "RCPT")
        c.send(b"BDAT 10\r\n" + M1[:10])
        expect(c.reply(), 250, "chunk 1")
        c.send(b"BDAT 4\r\n" + M1[10:14])
        assert c.reply() == [b"250 2.0.0 faked by a fault"]
        c.send(b"BDAT 8 LAST\r\n" + M1[14:])
        expect(c.reply(), 250, "LAST")
        expect(c.cmd(b"QUIT"), 221, "QUIT")
    t.wait_session_end(1)
    # the server got every chunk: the message is whole, as jsonl and eml say
    assert [m.content for m in aiosmtpd_bdat.wait_for_messages(1)] == [M1]
    ev = events(d)
    assert [e["message"]["size"] for e in ev if e["kind"] == "message"] == [len(M1)]
    assert list(emls(d).values())[0].endswith(M1)
    assert any("replaced (the chunk reached the server)" in l.text for l in t.lines(1)
               if l.marker == "!!"), t.transcript()
