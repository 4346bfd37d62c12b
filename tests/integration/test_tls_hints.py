"""Misconfigured TLS on either side is explained, not just failed: a client that starts a
TLS handshake on a plain listener, a plain client on an implicit-TLS listener (which hangs
on both sides until the idle timeout), a tls: upstream that speaks plain SMTP, and a
plain upstream that is really an implicit-TLS port (it says nothing). smtptap keeps
serving after each."""

import smtplib
import socket
import ssl
import time

import harness
from harness import make_message, smtptap_ca

RCPTS = ["bob@example.net"]
FROM = "alice@example.org"


def plain_swaks_works(t, port, tmp_path):
    msg = make_message("still serving", to=RCPTS)
    rc, out, err = harness.swaks_send(f"127.0.0.1:{port}", FROM, RCPTS, msg, str(tmp_path))
    assert rc == 0, f"smtptap stopped serving plain clients:\n{out}\n{err}"


def test_tls_client_on_a_plain_listener(tap, need, tmp_path):
    need("swaks")
    ca_dir, _ = smtptap_ca(tmp_path)
    t = tap(["--ca-dir", ca_dir])
    started = time.monotonic()
    rc, out, err = harness.swaks(t.hostport, "--tlsc", "--to", RCPTS[0], "--timeout", "20")
    assert rc != 0, out
    t.wait_session_end(1, timeout=10)
    # Ended at once, not at the idle timeout (300 s) or swaks' own timeout.
    assert time.monotonic() - started < 10
    assert any(l.marker == "**>" and "client started a TLS handshake on this plain listener"
               in l.text and "--listen tls:" in l.text for l in t.lines(1)), t.transcript()
    plain_swaks_works(t, t.port, tmp_path)


def test_plain_client_on_an_implicit_tls_listener_is_explained_at_idle_timeout(tap, tmp_path):
    ca_dir, _ = smtptap_ca(tmp_path)
    t = tap(["--ca-dir", ca_dir, "--idle-timeout", "1s"], listen="tls:127.0.0.1:0")
    with socket.create_connection(("127.0.0.1", t.port), timeout=10) as c:
        # A plain SMTP client waits for the greeting; nothing comes (it is inside TLS).
        c.settimeout(0.5)
        try:
            first = c.recv(100)
        except socket.timeout:
            first = b""
        assert first == b"", first
        t.wait_session_end(1, timeout=10)
    lines = t.lines(1)
    assert any(l.marker == "**>" and l.text.startswith("client sent nothing in 1s, no TLS handshake")
               and "implicit-TLS listener" in l.text for l in lines), t.transcript()


def test_plain_commands_on_an_implicit_tls_listener(tap, tmp_path):
    ca_dir, ca_pem = smtptap_ca(tmp_path)
    t = tap(["--ca-dir", ca_dir], listen="tls:127.0.0.1:0")
    with socket.create_connection(("127.0.0.1", t.port), timeout=10) as c:
        c.sendall(b"EHLO plain.client.test\r\n")
        c.settimeout(5)
        try:
            while c.recv(4096):
                pass
        except (ConnectionResetError, socket.timeout):
            pass
    t.wait_session_end(1, timeout=10)
    assert any(l.marker == "**>" and "client TLS handshake failed" in l.text and
               "the client speaks plain SMTP" in l.text for l in t.lines(1)), t.transcript()
    # and a real TLS client is still served
    ctx = ssl.create_default_context(cafile=ca_pem)
    with smtplib.SMTP_SSL("localhost", t.port, context=ctx, timeout=10) as s:
        assert s.ehlo()[0] == 250


def test_tls_upstream_that_speaks_plain_smtp(tap, need, tmp_path, aiosmtpd):
    need("swaks")
    ca_dir, _ = smtptap_ca(tmp_path)
    t = tap(["--ca-dir", ca_dir, "-u", f"tls:localhost:{aiosmtpd.port}"])
    rc, out, err = harness.swaks(t.hostport, "--to", RCPTS[0])
    assert rc != 0 and "421 4.4.0" in out, out
    t.wait_session_end(1)
    assert any(l.marker == "<**" and "TLS handshake failed" in l.text and
               'the server speaks plain SMTP on this port, it sent "220"' in l.text and
               "starttls:" in l.text for l in t.lines(1)), t.transcript()
    assert aiosmtpd.messages == []


def test_plain_upstream_that_is_an_implicit_tls_port(tap, need, tmp_path):
    need("swaks")
    ca_dir, _ = smtptap_ca(tmp_path)
    cert, key = harness.CertAuthority(str(tmp_path)).issue(["localhost"])
    with harness.AiosmtpdServer(ssl_context=harness.tls_server_context(cert, key)) as srv:
        t = tap(["--ca-dir", ca_dir, "-u", f"plain:localhost:{srv.port}",
                 "--connect-timeout", "1s"])
        rc, out, err = harness.swaks(t.hostport, "--to", RCPTS[0], "--timeout", "20")
        assert rc != 0 and "421 4.4.2" in out, out
        t.wait_session_end(1, timeout=10)
        assert any(l.marker == "<**" and "no greeting within 1s" in l.text and
                   "implicit-TLS port" in l.text and "tls:HOST:PORT" in l.text
                   for l in t.lines(1)), t.transcript()
