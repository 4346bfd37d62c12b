"""The real-MTA fixtures of mta.py, checked on their own (no smtptap): swaks and a raw
socket talk to each MTA directly, so a broken fixture is told apart from a smtptap bug.
The MTAs come from tests/mta/install.sh; a missing one skips its tests."""

import base64
import os
import re

import pytest

import harness
import mta

FROM = "alice@example.org"
RCPT = "bob@example.net"


@pytest.fixture
def ca(tmp_path):
    return harness.CertAuthority(str(tmp_path))


@pytest.fixture
def cert(ca):
    return ca.issue(["localhost", "127.0.0.1"])


@pytest.fixture
def swaks_tls(need):
    need("swaks")
    rc, out, err = harness.run([harness.tool_path("swaks"), "--support"])
    if "=== TLS supported" not in out + err:
        pytest.skip("swaks cannot do TLS (Debian package libnet-ssleay-perl)")


def verified(ca):
    return ("--tls-verify", "--tls-ca-path", ca.cert_path, "--tls-sni", "localhost")


def send(server, tmp_path, msg, *args, rcpt=RCPT):
    rc, out, err = harness.swaks_send(server, FROM, [rcpt], msg, str(tmp_path), *args)
    assert rc == 0, f"swaks rc {rc}\n{out}\n{err}"
    return out


def raw_bdat(port, msg, rcpt):
    """EHLO, MAIL, RCPT, `BDAT n LAST` + the message bytes, QUIT on a plain socket."""
    with harness.RawSmtpClient("127.0.0.1", port) as c:
        assert c.code() == 220
        ehlo = c.cmd(b"EHLO raw.test")
        assert b"250-CHUNKING" in ehlo or b"250 CHUNKING" in ehlo, ehlo
        assert c.cmd(b"MAIL FROM:<%s>" % FROM.encode())[-1][:3] == b"250"
        assert c.cmd(b"RCPT TO:<%s>" % rcpt.encode())[-1][:3] == b"250"
        c.send(b"BDAT %d LAST\r\n" % len(msg) + msg)
        reply = c.reply()
        assert reply[-1][:3] == b"250", reply
        c.cmd(b"QUIT")


def two_ehlos(port):
    with harness.RawSmtpClient("127.0.0.1", port) as c:
        assert c.code() == 220
        assert c.cmd(b"EHLO one.test")[-1][:3] == b"250"
        second = c.cmd(b"EHLO two.test")
        c.cmd(b"QUIT")
    return second


def check_stored(up, expected):
    """EXPECTED: [(rcpt, message bytes)] in arrival order."""
    msgs = up.wait_for_messages(len(expected))
    assert [(m.rcpt, m.data) for m in msgs] == expected
    for m in msgs:
        assert m.raw.replace(b"\n", b"\r\n").endswith(m.data)


def assert_gone(up_dir, pids):
    assert not os.path.exists(up_dir)
    for p in pids:
        try:
            st = open(f"/proc/{p}/stat").read()
        except OSError:
            continue
        assert st.rsplit(")", 1)[1].split()[0] == "Z", f"process {p} survived stop()"


# --------------------------------------------------------------------------- Exim


def test_exim_plain_pipelining_bdat(need, tmp_path):
    need("swaks")
    msg = harness.make_message("exim plain")
    with mta.Exim() as up:
        assert up.start_seconds < 10
        out = send(up.hostport, tmp_path, msg)
        assert up.greeting in out
        send(up.hostport, tmp_path, msg, "--pipeline", rcpt="carol@example.com")
        raw_bdat(up.port, msg, "dave@example.org")
        assert two_ehlos(up.port)[-1][:3] == b"250"
        check_stored(up, [(RCPT, msg), ("carol@example.com", msg), ("dave@example.org", msg)])
        up.wait_log(r"no MAIL in SMTP connection from \(two\.test\) .* C=EHLO,EHLO,QUIT")
        log = up.log()
        assert re.search(r" <= alice@example\.org H=\(raw\.test\) .* P=esmtp .*\bK\b", log), log
        assert " X=" not in log
        assert up.helo_counts() == [1, 1, 1, 2]
        d, pids = up.dir, up.processes()
    assert_gone(d, pids)


def test_exim_starttls_implicit_tls_auth_in_tls(swaks_tls, ca, cert, tmp_path):
    msg = harness.make_message("exim tls")
    with mta.Exim(tls=cert, auth="tls") as up:
        out = send(up.hostport, tmp_path, msg, "--tls", *verified(ca), "-a", "PLAIN",
                   "-au", up.user, "-ap", up.password)
        assert "235 Authentication succeeded" in out
        send(up.tls_hostport, tmp_path, msg, "--tlsc", *verified(ca), "-a", "LOGIN",
             "-au", up.user, "-ap", up.password)
        # Outside TLS: no AUTH in the EHLO reply, AUTH refused.
        with harness.RawSmtpClient("127.0.0.1", up.port) as c:
            c.reply()
            assert not any(b"AUTH" in l for l in c.cmd(b"EHLO plain.test"))
            plain = base64.b64encode(f"\0{up.user}\0{up.password}".encode())
            assert c.cmd(b"AUTH PLAIN " + plain)[-1].startswith(b"503")
        check_stored(up, [(RCPT, msg), (RCPT, msg)])
        log = up.wait_log(r"no MAIL in SMTP connection from \(plain\.test\)").string
        lines = [l for l in log.splitlines() if " <= " in l]
        assert " P=esmtpsa " in lines[0] and " X=TLS1.3:" in lines[0], lines
        assert " A=PLAIN:testuser " in lines[0] and " SNI=localhost " in lines[0], lines
        assert " A=LOGIN:testuser " in lines[1] and " X=TLS1.3:" in lines[1], lines
        assert re.search(r"SMTPTAP-HELO \S+ EHLO \S+ tls=none\n.*SMTPTAP-STARTTLS .*\n"
                         r".*SMTPTAP-HELO \S+ EHLO \S+ tls=TLS1\.3:", log), log
        assert up.helo_counts() == [2, 1, 1]


def test_exim_auth_always(need, tmp_path):
    need("swaks")
    msg = harness.make_message("exim auth")
    with mta.Exim(auth="always") as up:
        out = send(up.hostport, tmp_path, msg, "-a", "PLAIN", "-au", up.user, "-ap",
                   up.password)
        assert "AUTH PLAIN LOGIN" in out
        rc, out, err = harness.swaks(up.hostport, "--from", FROM, "--to", RCPT, "-a", "PLAIN",
                                     "-au", up.user, "-ap", "wrong")
        assert rc != 0 and "535 Incorrect authentication data" in out
        check_stored(up, [(RCPT, msg)])
        assert re.search(r" <= alice@example\.org .* P=esmtpa .*A=PLAIN:testuser ", up.log())


# --------------------------------------------------------------------------- Postfix


def test_postfix_plain_pipelining_bdat(need, tmp_path):
    need("swaks")
    msg = harness.make_message("postfix plain")
    with mta.PostfixSmtpd() as up:
        assert up.start_seconds < 10
        out = send(up.hostport, tmp_path, msg)
        assert up.greeting in out and "STARTTLS" not in out
        send(up.hostport, tmp_path, msg, "--pipeline", rcpt="carol@example.com")
        raw_bdat(up.port, msg, "dave@example.org")
        assert two_ehlos(up.port)[-1][:3] == b"250"
        check_stored(up, [(RCPT, msg), ("carol@example.com", msg), ("dave@example.org", msg)])
        up.wait_log(r"disconnect from \S+ ehlo=2 quit=1 commands=3$")
        stats = up.disconnect_stats()
        assert stats[2]["bdat"] == "1", stats
        assert up.helo_counts() == [1, 1, 1, 2]
        d, pids = up.dir, up.processes()
    assert_gone(d, pids)


def test_postfix_starttls_implicit_tls_auth_in_tls(swaks_tls, need, ca, cert, tmp_path):
    need("saslpasswd2")
    msg = harness.make_message("postfix tls")
    with mta.PostfixSmtpd(tls=cert, auth="tls") as up:
        out = send(up.hostport, tmp_path, msg, "--tls", *verified(ca), "-a", "PLAIN",
                   "-au", up.user, "-ap", up.password)
        assert "235 2.7.0 Authentication successful" in out
        send(up.tls_hostport, tmp_path, msg, "--tlsc", *verified(ca), "-a", "LOGIN",
             "-au", up.user, "-ap", up.password)
        with harness.RawSmtpClient("127.0.0.1", up.port) as c:
            c.reply()
            assert not any(b"AUTH" in l for l in c.cmd(b"EHLO plain.test"))
            plain = base64.b64encode(f"\0{up.user}\0{up.password}".encode())
            assert c.cmd(b"AUTH PLAIN " + plain)[-1].startswith(b"503")
            c.cmd(b"QUIT")
        check_stored(up, [(RCPT, msg), (RCPT, msg)])
        log = up.wait_log(r"disconnect from \S+ ehlo=1 auth=0/1 quit=1 commands=2/3$").string
        assert len(re.findall(r"TLS connection established from unknown\[127\.0\.0\.1\]: "
                              r"TLSv1\.3 with cipher", log)) == 2, log
        assert "sasl_method=PLAIN, sasl_username=testuser@postfix.test" in log
        assert "sasl_method=LOGIN, sasl_username=testuser@postfix.test" in log
        assert re.search(r"disconnect from \S+ ehlo=2 starttls=1 auth=1 mail=1 rcpt=1 data=1 "
                         r"quit=1 commands=8$", log, re.M), log
        assert up.helo_counts() == [2, 1, 1]


# --------------------------------------------------------------------------- OpenSMTPD


def test_opensmtpd_plain_pipelined_second_ehlo_refused(need, tmp_path):
    need("swaks")
    msg = harness.make_message("opensmtpd")
    with mta.OpenSmtpd() as up:
        assert up.start_seconds < 10
        out = send(up.hostport, tmp_path, msg)
        assert up.greeting in out and "PIPELINING" not in out
        send(up.hostport, tmp_path, msg, "--pipeline", rcpt="carol@example.com")
        assert two_ehlos(up.port) == [b"503 5.5.1 Invalid command: Already identified"]
        with harness.RawSmtpClient("127.0.0.1", up.port) as c:
            c.reply()
            c.cmd(b"EHLO raw.test")
            assert c.cmd(b"BDAT 5 LAST")[-1].startswith(b"500 ")
        check_stored(up, [(RCPT, msg), ("carol@example.com", msg)])
        up.wait_log(r'smtp failed-command command="EHLO two\.test" '
                    r'result="503 5\.5\.1 Invalid command: Already identified"')
        assert up.helo_counts()[:3] == [1, 1, 2]
        d, pids = up.dir, up.processes()
    assert_gone(d, pids)


def test_opensmtpd_two_instances_at_once(need, tmp_path):
    need("swaks")
    if not mta._mount_namespaces_work():
        pytest.skip("no mount namespaces here: one OpenSMTPD at a time")
    msg = harness.make_message("opensmtpd twice")
    with mta.OpenSmtpd() as a, mta.OpenSmtpd() as b:
        send(a.hostport, tmp_path, msg)
        send(b.hostport, tmp_path, msg, rcpt="carol@example.com")
        check_stored(a, [(RCPT, msg)])
        check_stored(b, [("carol@example.com", msg)])
