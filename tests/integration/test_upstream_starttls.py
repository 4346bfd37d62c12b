"""-u starttls:HOST:PORT: smtptap upgrades the upstream leg itself after the client's first
EHLO (EHLO, STARTTLS, handshake, EHLO again) and the client sees one EHLO reply, from the
server's TLS side. A server that does not offer STARTTLS, refuses it, or presents a
certificate smtptap cannot verify gets the client a 421 and never the message.

Also here: HELO clients get the same upgrade (smtptap holds the HELO and asks with EHLO);
a server answering STARTTLS with 454 (421 for starttls:, plain text for no prefix); replies
the client never sees end with `  [to smtptap]`; the client's leaf copies the upstream
certificate's subject and SANs once the upstream is in TLS; `bytes down` counts what the
client was sent."""

import re
import smtplib
import socket
import ssl

import pytest

import harness
from harness import RawSmtpClient, RecordingRelay, make_message

FROM = "alice@example.org"
RCPTS = ["bob@example.net"]


def tls_upstream(tmp_path, names=("localhost", "127.0.0.1")):
    ca = harness.CertAuthority(str(tmp_path))
    return ca, ca.server_context(list(names))


def upstream_commands(data: bytes):
    return [line.split(b" ")[0].upper() for line in data.split(b"\r\n") if line]


def test_starttls_upstream_is_upgraded_and_the_client_sees_one_ehlo_reply(tap, need, tmp_path):
    need("swaks")
    ca, ctx = tls_upstream(tmp_path)
    with harness.AiosmtpdServer(tls_context=ctx, auth=True, auth_require_tls=True) as srv:
        t = tap(["-u", f"starttls:localhost:{srv.port}", "--upstream-ca", ca.cert_path,
                     "--client-starttls", "passthrough"])
        rc, out, err = harness.run([harness.tool_path("swaks"), "--server", t.hostport, "--from",
                                    FROM, "--to", RCPTS[0], "--ehlo", "client.test"], timeout=30)
        assert rc == 0, out + err
        # One EHLO reply for the client, the one from inside TLS: AUTH appears only there
        # (auth_require_tls), and STARTTLS is gone.
        ehlo_replies = [l for l in out.splitlines() if l.startswith("<-  250-") or
                        l.startswith("<-  250 ")]
        assert any("AUTH" in l for l in ehlo_replies), out
        assert not any("STARTTLS" in l for l in ehlo_replies), out
        srv.wait_for_messages(1)
        assert srv.messages[0].rcpt_tos == RCPTS
    t.wait_session_end(1)
    text = t.transcript()
    assert "== smtptap upgrades the upstream leg: STARTTLS" in text, text
    assert " -> STARTTLS  [smtptap]" in text, text
    assert "== upstream TLS: TLSv1." in text and ", verified" in text, text
    assert " -> EHLO client.test  [smtptap]" in text, text


def test_the_server_sees_ehlo_starttls_ehlo_and_no_client_bytes_in_plain_text(tap, tmp_path):
    ca, ctx = tls_upstream(tmp_path)
    with harness.AiosmtpdServer(tls_context=ctx) as srv, \
            RecordingRelay(srv.host, srv.port) as rec:
        t = tap(["-u", f"starttls:localhost:{rec.port}", "--upstream-ca", ca.cert_path])
        with harness.RawSmtpClient("127.0.0.1", t.port) as c:
            c.reply()
            c.cmd(b"EHLO client.test")
            assert c.cmd(b"MAIL FROM:<alice@example.org>")[0].startswith(b"250")
            c.cmd(b"QUIT")
        t.wait_session_end(1)
        plain = rec.to_server(1)
        # Before TLS only EHLO and STARTTLS travel in clear; MAIL never does.
        head = plain.split(b"STARTTLS\r\n")[0] + b"STARTTLS\r\n"
        assert upstream_commands(head) == [b"EHLO", b"STARTTLS"], plain[:200]
        assert b"MAIL FROM" not in plain, plain[:400]


def test_upstream_without_starttls_gets_the_client_a_421(tap, need):
    need("swaks")
    with harness.AiosmtpdServer() as srv:  # no tls_context: no STARTTLS on offer
        t = tap(["-u", f"starttls:127.0.0.1:{srv.port}"])
        rc, out, err = harness.run([harness.tool_path("swaks"), "--server", t.hostport, "--from",
                                    FROM, "--to", RCPTS[0]], timeout=30)
        assert rc != 0, out
        assert "421 4.7.0 smtptap: upstream 127.0.0.1:%d: does not offer STARTTLS" % srv.port \
            in out, out
        assert srv.messages == []
    t.wait_session_end(1)
    assert "does not offer STARTTLS (starttls: requires TLS)" in t.transcript()


def test_unverifiable_upstream_certificate_gets_the_client_a_421(tap, need, tmp_path):
    need("swaks")
    _, ctx = tls_upstream(tmp_path)  # smtptap is not told about this CA
    with harness.AiosmtpdServer(tls_context=ctx) as srv:
        t = tap(["-u", f"starttls:localhost:{srv.port}"])
        rc, out, err = harness.run([harness.tool_path("swaks"), "--server", t.hostport, "--from",
                                    FROM, "--to", RCPTS[0]], timeout=30)
        assert rc != 0, out
        assert "421 4.7.0 smtptap: upstream localhost:%d: TLS failed (certificate verify failed" \
            % srv.port in out, out
        assert srv.messages == []
    # The same server with --insecure: delivered, and the transcript says not verified.
    with harness.AiosmtpdServer(tls_context=ctx) as srv:
        t2 = tap(["-u", f"starttls:localhost:{srv.port}", "--insecure"])
        rc, out, err = harness.run([harness.tool_path("swaks"), "--server", t2.hostport, "--from",
                                    FROM, "--to", RCPTS[0]], timeout=30)
        assert rc == 0, out
        srv.wait_for_messages(1)
    t2.wait_session_end(1)
    assert "not verified" in t2.transcript()


# --------------------------------------------------------------------------- helpers

TO_SMTPTAP = "  [to smtptap]"   # a reply line that went to smtptap, not to the client
LOCAL = "  [smtptap]"          # a line smtptap wrote itself
HOLDS = ("smtptap holds the client's HELO and asks the upstream with EHLO whether it "
         "offers STARTTLS")
UPGRADES = "smtptap upgrades the upstream leg: STARTTLS"
REFUSAL = "454 4.7.0 TLS not available"
HELO_NAME = "old.client"
TLS_RECORD = b"\x16\x03"        # a TLS handshake record header
END_RE = re.compile(r"^session ended after \S+: (\d+) commands?, (\d+) messages?, "
                    r"(\d+) bytes up, (\d+) bytes down; \d+ ms waiting for the server, \d+ ms for the client$")


def smtptap_lines(t, sid=1):
    t.wait_session_end(sid)
    return t.lines(sid)


def reply_texts(lines):
    return [l.text for l in lines if l.is_reply]


def index_of(lines, pred, what, start=0):
    for i in range(start, len(lines)):
        if pred(lines[i]):
            return i
    raise AssertionError(f"no transcript line {what} (from line {start}):\n"
                         + "\n".join(l.raw for l in lines))


def the_reply_after(lines, i):
    """The reply lines (TLine) of the first reply after line I: up to its final line."""
    out = []
    for l in lines[i + 1:]:
        if l.is_reply:
            out.append(l)
            if re.match(r"^\d{3}( |$)", l.text.replace(TO_SMTPTAP, "")):
                return out
    raise AssertionError(f"no complete reply after {lines[i].raw}")


def split_plain(data: bytes, after: bytes):
    """(the plain-text bytes up to and including AFTER, what follows) of a recorded stream."""
    k = data.find(after)
    assert k >= 0, f"{after!r} not in {data[:400]!r}"
    return data[:k + len(after)], data[k + len(after):]


def dot_stuffed(msg: bytes) -> bytes:
    """MSG as DATA content on the wire (RFC 5321 4.5.2), without the final "."."""
    return b"".join(b"." + ln if ln.startswith(b".") else ln
                    for ln in msg.splitlines(keepends=True))


class HeloSMTP(smtplib.SMTP):
    """smtplib.SMTP connecting to 127.0.0.1 whatever the host name (SNI) given."""

    def _get_socket(self, host, port, timeout):
        return socket.create_connection(("127.0.0.1", port), timeout)


# --------------------------------------------------------------------------- 1. HELO clients


@pytest.mark.parametrize("prefix", ["starttls:", ""], ids=["starttls-prefix", "no-prefix"])
@pytest.mark.parametrize("client", ["smtplib", "raw"])
def test_helo_client_gets_the_upstream_upgraded_and_one_helo_reply(tap, tmp_path, prefix, client):
    """A HELO client: smtptap holds the HELO, asks with EHLO <the HELO's domain>, sends
    STARTTLS, handshakes, then sends the client's HELO inside TLS.  The client gets one reply
    to its HELO, the server's single-line HELO reply, and nothing of the transaction travels
    in clear: the plain-text part of the upstream leg is exactly EHLO + STARTTLS."""
    ca, ctx = tls_upstream(tmp_path)
    msg = make_message("HELO client, upstream upgraded", to=RCPTS)
    with harness.AiosmtpdServer(tls_context=ctx) as srv, \
            RecordingRelay(srv.host, srv.port) as rec:
        t = tap(["-u", f"{prefix}localhost:{rec.port}", "--upstream-ca", ca.cert_path])
        if client == "smtplib":
            with HeloSMTP("localhost", t.port, local_hostname=HELO_NAME, timeout=10) as s:
                code, text = s.helo()
                # One single-line 250: the server's HELO reply, not its (multi-line) EHLO one.
                assert (code, text) == (250, srv.hostname.encode()), (code, text)
                assert s.sendmail(FROM, RCPTS, msg) == {}
                s.quit()
        else:
            with RawSmtpClient("127.0.0.1", t.port) as c:
                assert c.reply() == [srv.greeting.encode()]
                assert c.cmd(f"HELO {HELO_NAME}".encode()) == [f"250 {srv.hostname}".encode()]
                # Exactly one reply: nothing else is on its way before the next command.
                c.sock.settimeout(0.5)
                with pytest.raises(socket.timeout):
                    c._fill()
                assert c.buf == b"", f"more than one reply to HELO: {c.buf!r}"
                c.sock.settimeout(10)
                assert c.cmd(f"MAIL FROM:<{FROM}>".encode()) == [
                    f"250 2.1.0 Sender <{FROM}> ok".encode()]
                assert c.cmd(f"RCPT TO:<{RCPTS[0]}>".encode()) == [
                    f"250 2.1.5 Recipient <{RCPTS[0]}> ok".encode()]
                assert c.cmd(b"DATA")[0].startswith(b"354")
                assert c.cmd(dot_stuffed(msg) + b".") == [b"250 2.0.0 OK queued as aio1"]
                assert c.cmd(b"QUIT")[0].startswith(b"221")
        got = srv.wait_for_messages(1)
        assert (got[0].mail_from, got[0].rcpt_tos, got[0].content) == (FROM, RCPTS, msg)
        assert got[0].helo == HELO_NAME, got[0]
        lines = smtptap_lines(t)
        to_server, to_client = rec.to_server(1), rec.to_client(1)

    # The upstream leg: EHLO <the HELO's domain> and STARTTLS in clear, then TLS records only.
    plain, rest = split_plain(to_server, b"STARTTLS\r\n")
    assert plain == f"EHLO {HELO_NAME}\r\nSTARTTLS\r\n".encode(), plain
    assert rest.startswith(TLS_RECORD), f"not a TLS record after STARTTLS: {rest[:40]!r}"
    for word in (b"HELO", b"MAIL FROM", b"RCPT TO", b"DATA\r\n", b"QUIT"):
        assert word not in to_server.upper(), f"{word!r} went to the server in clear"
    assert msg.split(b"\r\n")[2] not in to_server, "the message went to the server in clear"
    splain, srest = split_plain(to_client, b"220 Ready to start TLS\r\n")
    assert srest.startswith(TLS_RECORD), srest[:40]
    assert splain.startswith(srv.greeting.encode() + b"\r\n250-"), splain

    # The transcript: the client's HELO, held; smtptap's EHLO and STARTTLS; the HELO again.
    helo = index_of(lines, lambda l: l.marker == " ->" and
                    harness.norm_cmd(l.text) == f"HELO {HELO_NAME}", "for the client's HELO")
    holds = index_of(lines, lambda l: l.marker == "==" and l.text == HOLDS, "'== " + HOLDS + "'",
                     helo)
    probe = index_of(lines, lambda l: l.marker == " ->" and l.text == f"EHLO {HELO_NAME}{LOCAL}",
                     f"' -> EHLO {HELO_NAME}{LOCAL}'", holds)
    probe_reply = the_reply_after(lines, probe)
    assert len(probe_reply) > 1 and all(l.text.endswith(TO_SMTPTAP) for l in probe_reply), \
        [l.raw for l in probe_reply]
    assert any(l.text == "250-STARTTLS" + TO_SMTPTAP for l in probe_reply), \
        [l.raw for l in probe_reply]
    up = index_of(lines, lambda l: l.marker == "==" and l.text == UPGRADES, UPGRADES, probe)
    st = index_of(lines, lambda l: l.marker == " ->" and l.text == "STARTTLS" + LOCAL,
                  "' -> STARTTLS  [smtptap]'", up)
    assert [l.text for l in the_reply_after(lines, st)] == [
        "220 Ready to start TLS" + TO_SMTPTAP], [l.raw for l in lines[st:st + 3]]
    tls = index_of(lines, lambda l: l.marker == "==" and l.text.startswith("upstream TLS: "),
                   "'== upstream TLS:'", st)
    assert lines[tls].text.endswith(", verified"), lines[tls].raw
    again = index_of(lines, lambda l: l.marker == " ->" and
                     harness.norm_cmd(l.text) == f"HELO {HELO_NAME}{LOCAL}",
                     f"' -> HELO {HELO_NAME}{LOCAL}' (the client's HELO inside TLS)", tls)
    assert [l.text for l in the_reply_after(lines, again)] == [f"250 {srv.hostname}"], \
        [l.raw for l in lines[again:again + 3]]
    assert len([l for l in lines if l.marker == "==" and l.text == HOLDS]) == 1
    assert not [l.raw for l in lines[tls:] if l.text.endswith(TO_SMTPTAP)], \
        "a reply from inside TLS is tagged as smtptap's although the client got it"
    assert not [l.raw for l in lines if l.marker == "**" and "STARTTLS" in l.text], \
        "a STARTTLS warning although the upstream leg was upgraded"


def test_helo_client_no_prefix_upstream_without_starttls_stays_plain(tap, tmp_path):
    """No prefix, the server offers no STARTTLS: the server was greeted by smtptap's EHLO
    probe, so the client's HELO does not reach it (a second greeting could be refused):
    smtptap answers it with the probe reply's first line, a `** lint:` line says the leg stays
    plain, and the message is delivered."""
    msg = make_message("HELO client, upstream without STARTTLS", to=RCPTS)
    with harness.AiosmtpdServer() as srv, RecordingRelay(srv.host, srv.port) as rec:
        t = tap(["-u", f"localhost:{rec.port}"])
        with HeloSMTP("localhost", t.port, local_hostname=HELO_NAME, timeout=10) as s:
            assert s.helo() == (250, srv.hostname.encode())
            assert s.sendmail(FROM, RCPTS, msg) == {}
            s.quit()
        got = srv.wait_for_messages(1)
        assert (got[0].mail_from, got[0].rcpt_tos, got[0].content) == (FROM, RCPTS, msg)
        lines = smtptap_lines(t)
        to_server = rec.to_server(1)
    # EHLO (smtptap's probe), then the transaction: all plain, one greeting.
    assert to_server.startswith(f"EHLO {HELO_NAME}\r\nmail FROM:<{FROM}>".encode()), \
        to_server[:200]
    assert not re.search(rb"(?mi)^(STARTTLS|HELO)\b", to_server), to_server[:200]
    # A notice, not lint: a server may lawfully not offer STARTTLS (issue 15 item 13).
    assert not [l.raw for l in lines if l.marker == "**"], "\n".join(l.raw for l in lines)
    warn = [l for l in lines if l.marker == "==" and l.text.startswith("notice:")]
    assert len(warn) == 1, "\n".join(l.raw for l in lines)
    assert warn[0].text == (f"notice: upstream localhost:{rec.port}: does not offer STARTTLS: "
                            "the upstream leg stays in plain text (use starttls: to require "
                            "TLS)"), warn[0].raw
    probe = index_of(lines, lambda l: l.marker == " ->" and l.text == f"EHLO {HELO_NAME}{LOCAL}",
                     f"' -> EHLO {HELO_NAME}{LOCAL}'")
    assert all(l.text.endswith(TO_SMTPTAP) for l in the_reply_after(lines, probe))
    why = index_of(lines, lambda l: l.marker == "==" and
                   l.text.startswith("HELO answered by smtptap from the server's reply, not "
                                     "forwarded: the server's connection stays in plain text and "
                                     f"was greeted already, by the EHLO that asked it for "
                                     f"STARTTLS (EHLO {HELO_NAME})"),
                   "'== HELO answered by smtptap ...'", probe)
    assert lines.index(warn[0]) < why
    assert [l.text for l in the_reply_after(lines, why)] == [f"250 {srv.hostname}{LOCAL}"]
    assert not [l.raw for l in lines if l.marker == "==" and
                (l.text.startswith("upstream TLS:") or l.text == UPGRADES)]


def test_helo_client_starttls_upstream_without_starttls_gets_a_421(tap):
    """starttls: and a server without STARTTLS: the client's HELO is answered with a 421, the
    HELO never reaches the server, and neither does a message."""
    with harness.AiosmtpdServer() as srv, RecordingRelay(srv.host, srv.port) as rec:
        t = tap(["-u", f"starttls:localhost:{rec.port}"])
        with RawSmtpClient("127.0.0.1", t.port) as c:
            assert c.reply() == [srv.greeting.encode()]
            assert c.cmd(f"HELO {HELO_NAME}".encode()) == [
                f"421 4.7.0 smtptap: upstream localhost:{rec.port}: does not offer STARTTLS"
                .encode()]
            assert c.read_until_closed() == b""
        lines = smtptap_lines(t)
        to_server = rec.to_server(1)
        assert srv.messages == []
    assert to_server.startswith(f"EHLO {HELO_NAME}\r\n".encode()), to_server
    assert b"HELO" not in to_server.replace(b"EHLO", b"") and b"MAIL" not in to_server, to_server
    assert any(l.marker == "<**" and "does not offer STARTTLS (starttls: requires TLS)" in l.text
               for l in lines), "\n".join(l.raw for l in lines)
    probe = index_of(lines, lambda l: l.marker == " ->" and l.text == f"EHLO {HELO_NAME}{LOCAL}",
                     f"' -> EHLO {HELO_NAME}{LOCAL}'")
    assert all(l.text.endswith(TO_SMTPTAP) for l in the_reply_after(lines, probe))
    assert [l.text for l in lines if l.is_reply and l.text.startswith("421 ")] == [
        f"421 4.7.0 smtptap: upstream localhost:{rec.port}: does not offer STARTTLS{LOCAL}"]


# --------------------------------------------------------------------------- 2. 454 to STARTTLS


def test_server_refusing_starttls_gets_the_client_a_421_with_starttls_prefix(tap, tmp_path):
    ca, ctx = tls_upstream(tmp_path)
    with harness.AiosmtpdServer(tls_context=ctx, refuse_starttls=REFUSAL) as srv, \
            RecordingRelay(srv.host, srv.port) as rec:
        t = tap(["-u", f"starttls:localhost:{rec.port}", "--upstream-ca", ca.cert_path])
        with RawSmtpClient("127.0.0.1", t.port) as c:
            assert c.reply() == [srv.greeting.encode()]
            assert c.cmd(b"EHLO client.test") == [
                f"421 4.7.0 smtptap: upstream localhost:{rec.port}: refused STARTTLS (454)"
                .encode()]
            assert c.read_until_closed() == b""
        lines = smtptap_lines(t)
        to_server = rec.to_server(1)
        assert srv.messages == []
    assert to_server.startswith(b"EHLO client.test\r\nSTARTTLS\r\n"), to_server
    assert b"MAIL" not in to_server and to_server.count(b"EHLO") == 1, to_server
    st = index_of(lines, lambda l: l.marker == " ->" and l.text == "STARTTLS" + LOCAL,
                  "' -> STARTTLS  [smtptap]'")
    assert [l.text for l in the_reply_after(lines, st)][0] == REFUSAL + TO_SMTPTAP, \
        "\n".join(l.raw for l in lines[st:])
    assert any(l.marker == "<**" and
               l.text == f"upstream localhost:{rec.port}: refused STARTTLS (454) "
                         "(starttls: requires TLS)" for l in lines), \
        "\n".join(l.raw for l in lines)
    assert not [l for l in lines if l.marker == "==" and l.text.startswith("upstream TLS:")]


def test_server_refusing_starttls_no_prefix_falls_back_to_plain(tap, tmp_path):
    """No prefix and a 454 to smtptap's STARTTLS: a `**` line, the leg stays plain, and the
    client gets the server's reply to its own EHLO (X-EHLO-1: the server numbers its EHLO
    replies), from smtptap: the server, greeted already in the same state, never sees a
    second EHLO. The message is delivered."""
    ca, ctx = tls_upstream(tmp_path)
    msg = make_message("server refused STARTTLS", to=RCPTS)
    with harness.AiosmtpdServer(tls_context=ctx, refuse_starttls=REFUSAL,
                                number_ehlo=True) as srv, \
            RecordingRelay(srv.host, srv.port) as rec:
        t = tap(["-u", f"localhost:{rec.port}", "--upstream-ca", ca.cert_path])
        with RawSmtpClient("127.0.0.1", t.port) as c:
            assert c.reply() == [srv.greeting.encode()]
            ehlo = c.cmd(b"EHLO client.test")
            assert ehlo[0] == f"250-{srv.hostname}".encode() and ehlo[-1].startswith(b"250 "), ehlo
            assert b"250-X-EHLO-1" in ehlo and b"250-X-EHLO-2" not in ehlo, \
                f"the client did not get the reply to its own EHLO: {ehlo}"
            assert b"250-STARTTLS" in ehlo, f"smtptap offers STARTTLS to the client: {ehlo}"
            assert c.buf == b""
            assert c.cmd(f"MAIL FROM:<{FROM}>".encode())[0].startswith(b"250 2.1.0 Sender")
            assert c.cmd(f"RCPT TO:<{RCPTS[0]}>".encode())[0].startswith(b"250 2.1.5")
            assert c.cmd(b"DATA")[0].startswith(b"354")
            assert c.cmd(dot_stuffed(msg) + b".") == [b"250 2.0.0 OK queued as aio1"]
            assert c.cmd(b"QUIT")[0].startswith(b"221")
        got = srv.wait_for_messages(1)
        assert (got[0].mail_from, got[0].rcpt_tos, got[0].content) == (FROM, RCPTS, msg)
        lines = smtptap_lines(t)
        to_server = rec.to_server(1)
    # All in clear: EHLO, STARTTLS, then the transaction; one EHLO.
    assert to_server.startswith(b"EHLO client.test\r\nSTARTTLS\r\n"
                                + f"MAIL FROM:<{FROM}>\r\n".encode()), to_server[:200]
    warn = [l for l in lines if l.marker == "==" and l.text.startswith("notice:")]
    assert len(warn) == 1, "\n".join(l.raw for l in lines)
    assert warn[0].text.startswith(f"notice: upstream localhost:{rec.port}: refused STARTTLS "
                                   "(454): the upstream leg stays in plain text"), warn[0].raw
    st = index_of(lines, lambda l: l.marker == " ->" and l.text == "STARTTLS" + LOCAL,
                  "' -> STARTTLS  [smtptap]'")
    assert [l.text for l in the_reply_after(lines, st)] == [REFUSAL + TO_SMTPTAP]
    first = index_of(lines, lambda l: l.marker == " ->" and l.text == "EHLO client.test",
                     "' -> EHLO client.test' (the client's)")
    assert all(l.text.endswith(TO_SMTPTAP) for l in the_reply_after(lines, first)), \
        "the first EHLO reply, held by smtptap, is not tagged"
    why = index_of(lines, lambda l: l.marker == "==" and
                   l.text.startswith("EHLO answered by smtptap from the server's reply, not "
                                     "forwarded"),
                   "'== EHLO answered by smtptap ...'", lines.index(warn[0]))
    second = the_reply_after(lines, why)
    assert "250-X-EHLO-1" + LOCAL in [l.text for l in second], [l.raw for l in second]
    assert not [l.raw for l in second if l.text.endswith(TO_SMTPTAP)], \
        "the EHLO reply the client got is tagged [to smtptap]"
    assert not [l for l in lines if l.marker == " ->" and l.text.startswith("EHLO client.test")
                and l.text.endswith(LOCAL)], "the client's EHLO was sent again"
    assert not [l for l in lines if l.marker == "==" and l.text.startswith("upstream TLS:")]


# --------------------------------------------------------------------------- 3. [to smtptap]


@pytest.mark.parametrize("scenario", ["starttls-prefix", "no-prefix-upgraded",
                                      "no-prefix-no-starttls", "no-prefix-refused"])
def test_replies_the_client_never_sees_are_tagged(tap, tmp_path, scenario):
    """Every reply line the client was not sent ends with `  [to smtptap]`; every line it was
    sent does not.  The reply lines of the transcript without the tag are exactly the lines
    the client received (smtptap's STARTTLS offer, added or removed, set aside)."""
    ca, ctx = tls_upstream(tmp_path)
    kw = {"tls_context": ctx, "number_ehlo": True}
    if scenario == "no-prefix-no-starttls":
        kw = {"number_ehlo": True}
    elif scenario == "no-prefix-refused":
        kw["refuse_starttls"] = REFUSAL
    prefix = "starttls:" if scenario == "starttls-prefix" else ""
    with harness.AiosmtpdServer(**kw) as srv:
        t = tap(["-u", f"{prefix}localhost:{srv.port}", "--upstream-ca", ca.cert_path])
        with RawSmtpClient("127.0.0.1", t.port) as c:
            got = c.reply() + c.cmd(b"EHLO client.test")
            got += c.cmd(f"MAIL FROM:<{FROM}>".encode()) + c.cmd(b"RSET") + c.cmd(b"QUIT")
        lines = smtptap_lines(t)
    replies = reply_texts(lines)
    tagged = [r[:-len(TO_SMTPTAP)] for r in replies if r.endswith(TO_SMTPTAP)]
    untagged = [r for r in replies if not r.endswith(TO_SMTPTAP)]
    first_ehlo = [f"250-{srv.hostname}", "250-PIPELINING", "250-X-EHLO-1"]
    if scenario == "no-prefix-no-starttls":
        assert tagged == [], "the EHLO reply the client got is tagged [to smtptap]:\n" + \
            "\n".join(l.raw for l in lines)
        assert "250-X-EHLO-1" in untagged, replies
    else:
        last = {"no-prefix-refused": REFUSAL}.get(scenario, "220 Ready to start TLS")
        assert tagged[:3] == first_ehlo and "250-STARTTLS" in tagged and \
            tagged[-2] == "250 HELP" and tagged[-1] == last, \
            f"tagged lines {tagged}:\n" + "\n".join(l.raw for l in lines)
        # a refused STARTTLS leaves the server as it was greeted: the client gets that reply
        # from smtptap; after an upgrade, the reply to the EHLO inside TLS
        want, not_want = ("250-X-EHLO-1" + LOCAL, "250-X-EHLO-2") \
            if scenario == "no-prefix-refused" else ("250-X-EHLO-2", "250-X-EHLO-1")
        assert want in untagged and not_want not in untagged, replies
    received = [x.decode() for x in got if x != b"250-STARTTLS"]
    client_got = [r[:-len(LOCAL)] if r.endswith(LOCAL) and r.startswith("250") else r
                  for r in untagged]
    assert [r for r in client_got if r != "250-STARTTLS"] == received, \
        f"untagged reply lines {untagged} are not what the client got {got}"


# --------------------------------------------------------------------------- 4. leaf copies


UPSTREAM_NAMES = ["mail.upstream.test", "localhost", "127.0.0.1", "alt.upstream.test"]
UPSTREAM_ORG = "Upstream Test Org"


def distinct_upstream(tmp_path):
    """(test CA, the upstream's certificate path, its server context): subject
    CN=mail.upstream.test, O=Upstream Test Org; SANs UPSTREAM_NAMES."""
    ca = harness.CertAuthority(str(tmp_path))
    cert, key = ca.issue(UPSTREAM_NAMES, organization=UPSTREAM_ORG)
    return ca, cert, harness.tls_server_context(cert, key)


def load_pem(path):
    from cryptography import x509
    return x509.load_pem_x509_certificate(open(path, "rb").read())


def sans_of(cert):
    from cryptography import x509
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return sorted(str(n.value) for n in ext)


def check_leaf(sslsock, *, upstream_cert: str, tap_ca_pem: str, copied: bool):
    """The leaf the client was shown: issued by smtptap's CA; subject and SANs copied from
    the upstream certificate (copied=True), or not (copied=False)."""
    from cryptography import x509
    peer = sslsock.getpeercert()     # verified: only smtptap's CA trusted, host name checked
    leaf = x509.load_der_x509_certificate(sslsock.getpeercert(True))
    up, tapca = load_pem(upstream_cert), load_pem(tap_ca_pem)
    assert leaf.issuer == tapca.subject, (leaf.issuer, tapca.subject)
    assert leaf.fingerprint(leaf.signature_hash_algorithm) != up.fingerprint(
        leaf.signature_hash_algorithm)
    sans = peer.get("subjectAltName", ())
    if copied:
        assert peer["subject"] == ((("commonName", "mail.upstream.test"),),
                                   (("organizationName", UPSTREAM_ORG),)), peer
        assert ("DNS", "alt.upstream.test") in sans, peer
        assert leaf.subject == up.subject, (leaf.subject, up.subject)
        assert sans_of(leaf) == sans_of(up), (sans_of(leaf), sans_of(up))
    else:
        assert ("DNS", "alt.upstream.test") not in sans, peer
        assert ("organizationName", UPSTREAM_ORG) not in [a for rdn in peer["subject"]
                                                          for a in rdn], peer
        assert leaf.subject != up.subject, leaf.subject
        assert ("DNS", "localhost") in sans, peer


class LocalSMTP_SSL(smtplib.SMTP_SSL):
    def _get_socket(self, host, port, timeout):
        sock = socket.create_connection(("127.0.0.1", port), timeout)
        return self.context.wrap_socket(sock, server_hostname=self._host)


def test_implicit_tls_both_ways_client_leaf_copies_the_upstream_certificate(tap, tmp_path):
    ca_dir, ca_pem = harness.smtptap_ca(tmp_path)
    test_ca, up_cert, ctx = distinct_upstream(tmp_path)
    msg = make_message("leaf copies the upstream certificate (implicit)", to=RCPTS)
    with harness.AiosmtpdServer(ssl_context=ctx) as srv:
        t = tap(["-u", f"tls:localhost:{srv.port}", "--upstream-ca", test_ca.cert_path,
                 "--ca-dir", ca_dir], listen="tls:127.0.0.1:0")
        with LocalSMTP_SSL("localhost", t.port, local_hostname="client.test", timeout=10,
                           context=ssl.create_default_context(cafile=ca_pem)) as s:
            check_leaf(s.sock, upstream_cert=up_cert, tap_ca_pem=ca_pem, copied=True)
            assert s.sendmail(FROM, RCPTS, msg) == {}
            s.quit()
        got = srv.wait_for_messages(1)
        assert got[0].content == msg
    t.wait_session_end(1)


@pytest.mark.parametrize("prefix", ["starttls", "plain"])
def test_client_starttls_leaf_copies_the_upstream_certificate_when_known(tap, tmp_path, prefix):
    """starttls: the upstream is upgraded before the client's STARTTLS, so the client's leaf
    copies the upstream certificate's subject and SANs. Control, plain: the upstream
    certificate is never seen; the leaf is smtptap's own for the name, without the
    upstream's subject or its alt.upstream.test SAN."""
    ca_dir, ca_pem = harness.smtptap_ca(tmp_path)
    test_ca, up_cert, ctx = distinct_upstream(tmp_path)
    msg = make_message(f"leaf and the upstream certificate ({prefix})", to=RCPTS)
    with harness.AiosmtpdServer(tls_context=ctx) as srv:
        t = tap(["-u", f"{prefix}:localhost:{srv.port}", "--upstream-ca", test_ca.cert_path,
                 "--ca-dir", ca_dir])
        with HeloSMTP("localhost", t.port, local_hostname="client.test", timeout=10) as s:
            s.ehlo()
            assert s.has_extn("starttls"), s.esmtp_features
            code, _ = s.starttls(context=ssl.create_default_context(cafile=ca_pem))
            assert code == 220
            check_leaf(s.sock, upstream_cert=up_cert, tap_ca_pem=ca_pem,
                       copied=prefix == "starttls")
            assert s.sendmail(FROM, RCPTS, msg) == {}
            s.quit()
        got = srv.wait_for_messages(1)
        assert got[0].content == msg
    t.wait_session_end(1)
    if prefix == "starttls":
        lines = smtptap_lines(t)
        up = index_of(lines, lambda l: l.marker == "==" and l.text.startswith("upstream TLS:"),
                      "'== upstream TLS:'")
        client = index_of(lines, lambda l: l.marker == "==" and l.text.startswith("client TLS:"),
                          "'== client TLS:'")
        assert up < client


# --------------------------------------------------------------------------- 5. bytes down


def raw_session(port, msg):
    """A whole session on a raw socket; returns the client (its sent/received counts) and
    its EHLO reply."""
    c = RawSmtpClient("127.0.0.1", port)
    with c:
        c.reply()
        ehlo = c.cmd(b"EHLO client.test")
        assert c.cmd(f"MAIL FROM:<{FROM}>".encode())[0].startswith(b"250")
        assert c.cmd(f"RCPT TO:<{RCPTS[0]}>".encode())[0].startswith(b"250")
        assert c.cmd(b"DATA")[0].startswith(b"354")
        assert c.cmd(dot_stuffed(msg) + b".")[0].startswith(b"250")
        assert c.cmd(b"QUIT")[0].startswith(b"221")
        assert c.read_until_closed() == b""
    return c, ehlo


@pytest.mark.parametrize("case", ["offer-plain-prefix", "offer-no-prefix", "strip"])
def test_session_end_counts_the_bytes_the_client_sent_and_was_sent(tap, tmp_path, case):
    """`bytes down` is what the client received, after smtptap's edits: offer adds
    250-STARTTLS to the EHLO reply (14 bytes more than the server sent), strip removes the
    server's (14 bytes less).  `bytes up` is what the client sent."""
    ca, ctx = tls_upstream(tmp_path)
    msg = make_message(f"byte counts {case}", to=RCPTS[:1])
    kw = {"tls_context": ctx} if case == "strip" else {}
    prefix = "" if case == "offer-no-prefix" else "plain:"
    mode = "strip" if case == "strip" else "offer"
    with harness.AiosmtpdServer(**kw) as srv, RecordingRelay(srv.host, srv.port) as rec:
        t = tap(["-u", f"{prefix}localhost:{rec.port}", "--client-starttls", mode])
        c, ehlo = raw_session(t.port, msg)
        m = END_RE.match(t.wait_session_end(1).group(0).split(" ", 3)[3])
        assert m, t.wait_session_end(1).group(0)
        srv.wait_for_messages(1)
        server_sent, server_got = len(rec.to_client(1)), len(rec.to_server(1))
    commands, messages, up, down = map(int, m.groups())
    assert (commands, messages) == (5, 1), m.group(0)
    edit = len(b"250-STARTTLS\r\n")
    if mode == "offer":
        assert b"250-STARTTLS" in ehlo      # added by smtptap
        assert c.received == server_sent + edit, (c.received, server_sent)
    else:
        assert b"250-STARTTLS" not in ehlo  # the server's, removed by smtptap
        assert c.received == server_sent - edit, (c.received, server_sent)
    assert (up, down) == (c.sent, c.received), \
        f"{m.group(0)!r}: the client sent {c.sent} and received {c.received} bytes"
    assert server_got == c.sent


def test_session_end_bytes_down_leaves_out_replies_only_smtptap_saw(tap, tmp_path):
    """starttls: with a HELO client: the probe's EHLO reply and the 220 went to smtptap,
    not to the client; bytes down is still what the client received."""
    ca, ctx = tls_upstream(tmp_path)
    with harness.AiosmtpdServer(tls_context=ctx) as srv:
        t = tap(["-u", f"starttls:localhost:{srv.port}", "--upstream-ca", ca.cert_path])
        with RawSmtpClient("127.0.0.1", t.port) as c:
            c.reply()
            assert c.cmd(f"HELO {HELO_NAME}".encode()) == [f"250 {srv.hostname}".encode()]
            assert c.cmd(b"NOOP")[0].startswith(b"250")
            assert c.cmd(b"QUIT")[0].startswith(b"221")
            assert c.read_until_closed() == b""
        end = t.wait_session_end(1).group(0)
    m = END_RE.match(end.split(" ", 3)[3])
    assert m, end
    assert (int(m.group(3)), int(m.group(4))) == (c.sent, c.received), \
        f"{end!r}: the client sent {c.sent} and received {c.received} bytes"
