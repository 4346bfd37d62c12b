"""-u starttls:HOST:PORT: smtptap upgrades the upstream leg itself after the client's first
EHLO (EHLO, STARTTLS, handshake, EHLO again) and the client sees one EHLO reply, from the
server's TLS side. A server that does not offer STARTTLS, refuses it, or presents a
certificate smtptap cannot verify gets the client a 421 and never the message."""

import harness
from harness import RecordingRelay

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
