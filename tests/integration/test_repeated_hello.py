"""The server sees exactly the EHLOs it would see without smtptap: one per TLS state of its
own connection.

When smtptap answers the client's STARTTLS itself (`--client-starttls offer`, the default),
the client greets again inside TLS (RFC 3207 4.2) while the server's connection has not
changed.  That hello is answered by smtptap from the server's last reply:

    == EHLO answered by smtptap from the server's reply, not forwarded: the client's STARTTLS
       ended at smtptap, so the server's connection is still in plain text and was greeted
       already (EHLO vm); a second greeting could be refused
    <~  250-strict.test Hello  [smtptap]

The same holds when smtptap probed a no-prefix upstream with EHLO and it stays plain: the
client's HELO (or its EHLO, after a refused STARTTLS) is answered from the probe's reply.

The upstream here is rawserver's "strict" behaviour, which refuses a second EHLO or HELO
as OpenSMTPD does (`503 5.5.1 Invalid command: Already identified`); what it was sent is
read byte for byte from the server itself.  The real OpenSMTPD, Exim and Postfix are in
test_mta.py.
"""

from __future__ import annotations

import re
import ssl
import time

import pytest

import harness
from harness import RawSmtpClient, make_message
from rawserver import ScriptedServer

FROM = "alice@example.org"
RCPTS = ["bob@example.net"]
ALREADY = b"503 5.5.1 Invalid command: Already identified"
LOCAL = "  [smtptap]"
ANSWERED = "{verb} answered by smtptap from the server's reply, not forwarded: "
AFTER_STARTTLS = ("the client's STARTTLS ended at smtptap, so the server's connection is still "
                  "in plain text and was greeted already ({greeted}); a second greeting could "
                  "be refused")


def hellos(srv: ScriptedServer, conn: int = 1):
    """The EHLO/HELO lines the server read on connection CONN (command mode only)."""
    out, in_data = [], False
    for ln in bytes(srv.received[conn]).split(b"\r\n"):
        if in_data:
            in_data = ln != b"."
            continue
        if ln[:4].upper() in (b"EHLO", b"HELO"):
            out.append(ln)
        in_data = ln.upper() == b"DATA"
    return out


def starttls(c: RawSmtpClient, ca_pem: str):
    assert c.cmd(b"STARTTLS") == [b"220 2.0.0 Ready to start TLS"]
    ctx = ssl.create_default_context(cafile=ca_pem)
    c.sock = ctx.wrap_socket(c.sock, server_hostname="localhost")


def transaction(c: RawSmtpClient, msg: bytes):
    assert c.cmd(f"MAIL FROM:<{FROM}>".encode())[-1].startswith(b"250")
    assert c.cmd(f"RCPT TO:<{RCPTS[0]}>".encode())[-1].startswith(b"250")
    assert c.cmd(b"DATA")[-1].startswith(b"354")
    assert c.cmd(msg + b".")[-1].startswith(b"250")
    assert c.cmd(b"QUIT")[-1].startswith(b"221")


def info_lines(t, prefix: str):
    return [l for l in t.lines() if l.marker == "==" and l.text.startswith(prefix)]


def the_reply_after(lines, i):
    """The reply lines that follow line I (the next reply, all its lines)."""
    out = []
    for l in lines[i + 1:]:
        if l.is_reply:
            out.append(l)
            if re.match(r"\d{3}( |$)", l.text):
                break
        elif out:
            break
    return out


# --------------------------------------------------------------------------- real clients


@pytest.mark.parametrize("prefix", ["plain:", ""])
def test_swaks_starttls_through_a_server_that_refuses_a_second_ehlo(tap, need, tmp_path, prefix):
    """swaks does STARTTLS with smtptap and sends EHLO again inside TLS; the server, greeted
    once in plain text, never sees that second EHLO: the message is delivered, and the
    client's EHLO reply inside TLS is the server's own, STARTTLS taken out, marked
    [smtptap].  No prefix: the server offers no STARTTLS, so the leg stays plain after the
    probe (which was the client's own EHLO)."""
    need("swaks")
    ca_dir, ca_pem = harness.smtptap_ca(tmp_path)
    with ScriptedServer(behaviours=["strict"], hostname="strict.test") as srv:
        t = tap(["--ca-dir", str(ca_dir), "-u", f"{prefix}{srv.hostport}"])
        msg = make_message("through a strict server", to=RCPTS)
        rc, out, err = harness.swaks_send(t.hostport, FROM, RCPTS, msg, str(tmp_path), "--tls",
                                          "--tls-verify", "--tls-ca-path", ca_pem,
                                          "--tls-sni", "localhost", "--ehlo", "client.test")
        assert rc == 0, f"swaks rc {rc}\n{out}\n{err}\n{t.transcript()}"
        got = srv.wait_for_messages(1)
        assert got[0].content == msg
        t.wait_session_end()
    assert hellos(srv) == [b"EHLO client.test"], srv.received[1][:300]
    assert "503" not in out, out
    inside = out[out.index("=== TLS started"):]
    assert re.search(r"^<~  250-strict\.test Hello$", inside, re.M), inside
    assert not re.search(r"^<~  250[- ]STARTTLS", inside, re.M), inside
    lines = t.lines()
    why = [i for i, l in enumerate(lines) if l.marker == "==" and l.text ==
           ANSWERED.format(verb="EHLO") + AFTER_STARTTLS.format(greeted="EHLO client.test")]
    assert len(why) == 1, t.transcript()
    reply = [l.text for l in the_reply_after(lines, why[0])]
    assert reply == ["250-strict.test Hello" + LOCAL, "250-PIPELINING" + LOCAL,
                     "250 8BITMIME" + LOCAL], t.transcript()
    assert all(l.marker == "<~ " for l in the_reply_after(lines, why[0]))


def test_smtplib_starttls_then_auth_needs_starttls_upstream(tap, tmp_path):
    """A server that offers AUTH only inside TLS (aiosmtpd auth_require_tls, like Postfix
    smtpd_tls_auth_only).  Behind plain: the client, in TLS with smtptap, is shown no AUTH,
    and the transcript says why and what to do.  Behind starttls: smtptap upgrades the
    server's connection, the client's EHLO goes up inside TLS once (X-EHLO-2), the client's
    own STARTTLS then gets it the same reply from smtptap (never X-EHLO-3), and AUTH works."""
    ca_dir, ca_pem = harness.smtptap_ca(tmp_path)
    up_ca = harness.CertAuthority(str(tmp_path))
    ctx = up_ca.server_context(["localhost"])
    with harness.AiosmtpdServer(tls_context=ctx, auth=True, auth_require_tls=True,
                                number_ehlo=True) as srv:
        # plain: no AUTH for the client, and a hint
        t = tap(["--ca-dir", str(ca_dir), "-u", f"plain:localhost:{srv.port}"])
        with RawSmtpClient("127.0.0.1", t.port) as c:
            c.reply()
            assert not any(b"AUTH" in l for l in c.cmd(b"EHLO client.test"))
            starttls(c, ca_pem)
            ehlo = c.cmd(b"EHLO client.test")
            assert b"250-X-EHLO-1" in ehlo and not any(b"AUTH" in l for l in ehlo), ehlo
            assert c.cmd(b"QUIT")[0].startswith(b"221")
        t.wait_session_end()
        hint = info_lines(t, "the server offers no AUTH on its plain-text connection; if it "
                             "offers AUTH only inside TLS (e.g. Postfix smtpd_tls_auth_only), "
                             "the client cannot log in: its TLS ends at smtptap and the "
                             "upstream leg is plain text; use -u starttls:HOST:PORT so smtptap "
                             "upgrades the upstream leg too")
        assert len(hint) == 1, t.transcript()

        # starttls: AUTH offered inside TLS and accepted; one EHLO per TLS state
        t2 = tap(["--ca-dir", str(ca_dir), "-u", f"starttls:localhost:{srv.port}",
                  "--upstream-ca", up_ca.cert_path])
        with RawSmtpClient("127.0.0.1", t2.port) as c:
            c.reply()
            first = c.cmd(b"EHLO client.test")
            assert b"250-X-EHLO-2" in first and any(b"AUTH" in l for l in first), first
            starttls(c, ca_pem)
            again = c.cmd(b"EHLO client.test")
            assert b"250-X-EHLO-2" in again and any(b"AUTH" in l for l in again), again
            assert c.cmd(b"AUTH PLAIN AGFsaWNlAHNlY3JldA==")[0].startswith(b"235"), "AUTH"
            assert c.cmd(b"QUIT")[0].startswith(b"221")
        t2.wait_session_end()
        assert not info_lines(t2, "the server offers no AUTH"), t2.transcript()
        assert len(info_lines(t2, "EHLO answered by smtptap")) == 1, t2.transcript()
        assert "the server's connection is still in the same TLS" in t2.transcript()


def test_builtin_sink_sees_one_ehlo(tap, need, tmp_path):
    """The built-in sink is an upstream like any other: swaks --tls to the default sink; the
    EHLO inside TLS is answered from the sink's first reply, and the message is accepted."""
    need("swaks")
    ca_dir, ca_pem = harness.smtptap_ca(tmp_path)
    t = tap(["--ca-dir", str(ca_dir)])
    rc, out, err = harness.swaks(t.hostport, "--to", RCPTS[0], "--tls", "--tls-verify",
                                 "--tls-ca-path", ca_pem, "--tls-sni", "localhost")
    assert rc == 0, f"{out}\n{err}"
    t.wait_session_end()
    assert len(info_lines(t, "EHLO answered by smtptap from the server's reply")) == 1, \
        t.transcript()
    assert re.search(r"== message 1: \d+ bytes", t.transcript())


# --------------------------------------------------------------------------- HELO and names


def test_helo_after_starttls_gets_one_line(tap, tmp_path):
    """HELO, STARTTLS, HELO again inside TLS: the second HELO is answered with the server's
    one-line reply; the server saw one HELO."""
    ca_dir, ca_pem = harness.smtptap_ca(tmp_path)
    with ScriptedServer(behaviours=["strict"], hostname="strict.test") as srv:
        t = tap(["--ca-dir", str(ca_dir), "-u", f"plain:{srv.hostport}"])
        with RawSmtpClient("127.0.0.1", t.port) as c:
            c.reply()
            assert c.cmd(b"HELO client.test") == [b"250 strict.test Hello"]
            starttls(c, ca_pem)
            assert c.cmd(b"HELO client.test") == [b"250 strict.test Hello"]
            transaction(c, b"Subject: helo\r\n\r\nhi\r\n")
        srv.wait_for_messages(1)
        t.wait_session_end()
    assert hellos(srv) == [b"HELO client.test"]
    assert info_lines(t, ANSWERED.format(verb="HELO") +
                      AFTER_STARTTLS.format(greeted="HELO client.test")), t.transcript()


def test_ehlo_after_helo_gets_no_extensions(tap, tmp_path):
    """HELO, STARTTLS, then EHLO inside TLS: the server granted no extensions to a HELO, so
    the client gets a one-line 250, and the transcript says why."""
    ca_dir, ca_pem = harness.smtptap_ca(tmp_path)
    with ScriptedServer(behaviours=["strict"], hostname="strict.test") as srv:
        t = tap(["--ca-dir", str(ca_dir), "-u", f"plain:{srv.hostport}"])
        with RawSmtpClient("127.0.0.1", t.port) as c:
            c.reply()
            c.cmd(b"HELO client.test")
            starttls(c, ca_pem)
            assert c.cmd(b"EHLO client.test") == [b"250 strict.test Hello"]
            transaction(c, b"Subject: ehlo after helo\r\n\r\nhi\r\n")
        srv.wait_for_messages(1)
        t.wait_session_end()
    assert hellos(srv) == [b"HELO client.test"]
    why = info_lines(t, ANSWERED.format(verb="EHLO"))
    assert len(why) == 1 and why[0].text.endswith(
        "; the server was greeted with HELO, so it granted no extensions"), t.transcript()


def test_client_that_renames_itself_inside_tls(tap, tmp_path):
    """EHLO first.test, STARTTLS, EHLO second.test: the server knows the client by its first
    name and is not told the second; the transcript says so."""
    ca_dir, ca_pem = harness.smtptap_ca(tmp_path)
    with ScriptedServer(behaviours=["strict"], hostname="strict.test") as srv:
        t = tap(["--ca-dir", str(ca_dir), "-u", f"plain:{srv.hostport}"])
        with RawSmtpClient("127.0.0.1", t.port) as c:
            c.reply()
            c.cmd(b"EHLO first.test")
            starttls(c, ca_pem)
            assert c.cmd(b"EHLO second.test")[0] == b"250-strict.test Hello"
            assert c.cmd(b"QUIT")[0].startswith(b"221")
        t.wait_session_end()
    assert hellos(srv) == [b"EHLO first.test"]
    why = info_lines(t, ANSWERED.format(verb="EHLO"))
    assert len(why) == 1, t.transcript()
    assert why[0].text.endswith('(EHLO first.test); a second greeting could be refused; the '
                                'client gives a new name, the server knows it as '
                                '"first.test"'), why[0].raw


def test_a_third_ehlo_reaches_the_server(tap, tmp_path):
    """Only the hello owed to smtptap's STARTTLS is answered by smtptap: a further EHLO inside
    TLS is one the server would have seen without smtptap, so it goes up, and the strict
    server's 503 reaches the client, as it would have."""
    ca_dir, ca_pem = harness.smtptap_ca(tmp_path)
    with ScriptedServer(behaviours=["strict"], hostname="strict.test") as srv:
        t = tap(["--ca-dir", str(ca_dir), "-u", f"plain:{srv.hostport}"])
        with RawSmtpClient("127.0.0.1", t.port) as c:
            c.reply()
            c.cmd(b"EHLO client.test")
            starttls(c, ca_pem)
            assert c.cmd(b"EHLO client.test")[0] == b"250-strict.test Hello"
            assert c.cmd(b"EHLO client.test") == [ALREADY]
            assert c.cmd(b"QUIT")[0].startswith(b"221")
        t.wait_session_end()
    assert hellos(srv) == [b"EHLO client.test", b"EHLO client.test"]
    assert ALREADY.decode() in [l.text for l in t.lines() if l.marker == "<~ "]


@pytest.mark.parametrize("rule", ["EHLO: strip PIPELINING", "EHLO: delay 400ms"])
def test_faults_shape_the_reply_from_memory(tap, tmp_path, rule):
    """EHLO fault rules apply to the reply smtptap gives from memory as to a real one."""
    ca_dir, ca_pem = harness.smtptap_ca(tmp_path)
    with ScriptedServer(behaviours=["strict"], hostname="strict.test") as srv:
        t = tap(["--ca-dir", str(ca_dir), "-u", f"plain:{srv.hostport}", "--fault", rule])
        with RawSmtpClient("127.0.0.1", t.port) as c:
            c.reply()
            c.cmd(b"EHLO client.test")
            starttls(c, ca_pem)
            start = time.monotonic()
            ehlo = c.cmd(b"EHLO client.test")
            took = time.monotonic() - start
            assert c.cmd(b"QUIT")[0].startswith(b"221")
        t.wait_session_end()
    assert hellos(srv) == [b"EHLO client.test"]
    assert ehlo[0] == b"250-strict.test Hello" and ehlo[-1] == b"250 8BITMIME", ehlo
    faults = [l.text for l in t.lines() if l.marker == "!!"]
    if "strip" in rule:
        assert b"250-PIPELINING" not in ehlo, ehlo
        assert len(faults) == 2, t.transcript()  # the plain EHLO reply and the one from memory
    else:
        assert b"250-PIPELINING" in ehlo and took >= 0.35, (ehlo, took)
        assert len(faults) == 2 and all(f.startswith("fault ") and "delay 400ms" in f
                                        for f in faults), t.transcript()


# --------------------------------------------------------------------------- the upgrade probe


def test_helo_client_behind_a_server_that_refuses_starttls(tap):
    """No prefix, a HELO client, a server that offers STARTTLS and answers it 454: smtptap's
    EHLO probe greeted the server, so the client's HELO is answered from the probe's reply;
    the server sees EHLO, STARTTLS, the transaction, and no HELO."""
    with ScriptedServer(behaviours=[("strict", {"starttls": "refuse"})],
                        hostname="strict.test") as srv:
        t = tap(["-u", srv.hostport])
        with RawSmtpClient("127.0.0.1", t.port) as c:
            c.reply()
            assert c.cmd(b"HELO client.test") == [b"250 strict.test Hello"]
            transaction(c, b"Subject: probe\r\n\r\nhi\r\n")
        srv.wait_for_messages(1)
        t.wait_session_end()
    assert hellos(srv) == [b"EHLO client.test"]
    assert b"STARTTLS\r\n" in bytes(srv.received[1])
    assert ALREADY.decode() not in t.transcript()
    assert info_lines(t, ANSWERED.format(verb="HELO") + "the server's connection stays in plain "
                      "text and was greeted already, by the EHLO that asked it for STARTTLS "
                      "(EHLO client.test)"), t.transcript()


def test_helo_only_server_still_gets_the_clients_helo(tap):
    """No prefix, a server that refuses EHLO (502): the probe identified nobody, so the
    client's own HELO goes up and is answered by the server."""
    with ScriptedServer(behaviours=[("strict", {"ehlo": False})], hostname="strict.test") as srv:
        t = tap(["-u", srv.hostport])
        with RawSmtpClient("127.0.0.1", t.port) as c:
            c.reply()
            assert c.cmd(b"HELO client.test") == [b"250 strict.test Hello"]
            transaction(c, b"Subject: helo only\r\n\r\nhi\r\n")
        srv.wait_for_messages(1)
        t.wait_session_end()
    assert hellos(srv) == [b"EHLO client.test", b"HELO client.test"]
    assert not info_lines(t, ANSWERED.format(verb="HELO")), t.transcript()
