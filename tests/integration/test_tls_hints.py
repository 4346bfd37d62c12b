"""Misconfigured TLS on either side is explained, not just failed: a client that starts a
TLS handshake on a plain listener, a plain client on an implicit-TLS listener (which hangs
on both sides until the idle timeout), a tls: upstream that speaks plain SMTP, and a
plain upstream that is really an implicit-TLS port (it says nothing). smtptap keeps
serving after each."""

import datetime
import re
import smtplib
import socket
import ssl
import time

import pytest

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


# ---------------------------------------------------------------------------------------------
# Issue 15 item 12: a server whose CA smtptap does not trust got the hint "plain:" or
# "--insecure", both of which give up on verification; the fix a user usually needs is to trust
# that CA. The hint names the issuer and offers --upstream-ca FILE first; following it works.

CA_NAME = "smtptap hints test CA"


def untrusted_ca_hint():
    return (f"its issuer CN={CA_NAME} is not a CA smtptap trusts: give that CA's certificate "
            "with --upstream-ca FILE")


def refused_with(t, need_text):
    t.wait_session_end(1)
    errors = [l.text for l in t.lines(1) if l.marker == "<**"]
    assert any(need_text in e for e in errors), t.transcript()
    return next(e for e in errors if need_text in e)


def swaks_to(t):
    return harness.swaks(t.hostport, "--from", FROM, "--to", RCPTS[0], "--timeout", "20")


@pytest.mark.parametrize("prefix", ["", "starttls:"])
def test_starttls_upstream_with_an_untrusted_ca_suggests_upstream_ca_first(tap, need, tmp_path,
                                                                           prefix):
    need("swaks")
    ca = harness.CertAuthority(str(tmp_path), name=CA_NAME)
    with harness.AiosmtpdServer(tls_context=ca.server_context(["localhost"])) as srv:
        t = tap(["-u", f"{prefix}localhost:{srv.port}"])
        rc, out, err = swaks_to(t)
        assert rc != 0 and "421 4.7.0" in out, out
        line = refused_with(t, "unable to get local issuer certificate")
        if prefix:
            assert line.endswith(f"(starttls: requires TLS; {untrusted_ca_hint()}, or --insecure "
                                 "to skip verification)"), line
        else:
            assert line.endswith(f"(the server offers STARTTLS, so smtptap requires it to work; "
                                 f"{untrusted_ca_hint()}; or use plain:HOST:PORT to stay in "
                                 "plain text, or --insecure to skip verification)"), line
        assert srv.messages == []
        # The hint's fix: the same server, its CA given, is verified and gets the message.
        t2 = tap(["-u", f"{prefix}localhost:{srv.port}", "--upstream-ca", ca.cert_path])
        rc, out, err = harness.swaks_send(t2.hostport, FROM, RCPTS, make_message("trusted"),
                                          str(tmp_path))
        assert rc == 0, out
        assert len(srv.wait_for_messages(1)) == 1
        t2.wait_session_end(1)
        assert re.search(r"== upstream TLS: .*, verified$", t2.transcript(), re.M), t2.transcript()


def test_tls_upstream_with_an_untrusted_ca_suggests_upstream_ca(tap, need, tmp_path):
    need("swaks")
    ca = harness.CertAuthority(str(tmp_path), name=CA_NAME)
    with harness.AiosmtpdServer(ssl_context=ca.server_context(["localhost"])) as srv:
        t = tap(["-u", f"tls:localhost:{srv.port}"])
        rc, out, err = swaks_to(t)
        assert rc != 0 and "421 4.4.0" in out, out
        line = refused_with(t, "TLS handshake failed: certificate verify failed")
        assert line.endswith(f" ({untrusted_ca_hint()}, or --insecure to skip verification)"), line


def self_signed(workdir, cn, names):
    """A self-signed server certificate (no CA): (cert_path, key_path)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = f"{workdir}/self-signed.pem", f"{workdir}/self-signed.key"
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert_path, key_path


def test_a_self_signed_upstream_certificate_names_itself(tap, need, tmp_path):
    """No CA at all: the certificate is its own issuer, and --upstream-ca with it works."""
    need("swaks")
    cert, key = self_signed(str(tmp_path), "selfsigned.test", ["localhost"])
    with harness.AiosmtpdServer(ssl_context=harness.tls_server_context(cert, key)) as srv:
        t = tap(["-u", f"tls:localhost:{srv.port}"])
        rc, out, err = swaks_to(t)
        assert rc != 0, out
        line = refused_with(t, "self-signed certificate")
        assert "its issuer CN=selfsigned.test is not a CA smtptap trusts: give that CA's " \
               "certificate with --upstream-ca FILE" in line, line
        t2 = tap(["-u", f"tls:localhost:{srv.port}", "--upstream-ca", cert])
        rc, out, err = harness.swaks_send(t2.hostport, FROM, RCPTS, make_message("self-signed"),
                                          str(tmp_path))
        assert rc == 0, out
        assert len(srv.wait_for_messages(1)) == 1


def test_a_wrong_host_name_is_not_blamed_on_the_ca(tap, need, tmp_path):
    """--upstream-ca cannot fix a certificate for another name: not offered there."""
    need("swaks")
    ca = harness.CertAuthority(str(tmp_path), name=CA_NAME)
    with harness.AiosmtpdServer(tls_context=ca.server_context(["other.test"])) as srv:
        t = tap(["-u", f"localhost:{srv.port}", "--upstream-ca", ca.cert_path])
        rc, out, err = swaks_to(t)
        assert rc != 0, out
        line = refused_with(t, "hostname mismatch")
        assert "--upstream-ca" not in line and "plain:HOST:PORT" in line, line
