"""Does a mail client check TLS? (issue 12): --client-cert MODE, the per-session verdict, and
`smtptap check-client`.

- The minted certificates are what their mode says: each is taken off the wire with
  `openssl s_client -showcerts` (STARTTLS, and an implicit-TLS listener) and `openssl x509`
  and `openssl verify` against smtptap's CA give each mode's failure.
- Real clients, both outcomes, for every bad mode, on the verdict line the transcript shows:
  swaks --tls-verify refuses (all but wrong-host: swaks 20201014 checks no host name, which
  smtptap reports), swaks without it accepts and its AUTH is exposed; curl with and without
  -k; Python smtplib with a verifying and an unverified context; msmtp with tls_certcheck on
  (GnuTLS checks after its handshake, so the client "gave up"; it accepts RSA 1024) and off.
- The jsonl verdict event; a bad --client-cert value (flag and config key).
- --client-starttls strip: swaks --tls gives up; swaks --tls-optional sends AUTH (or mail)
  in clear, and the verdict says so.
- check-client: the table and exit status against swaks with and without verification,
  JSON against Python smtplib (passes), a command that hangs (timed out, its process group
  killed), a command that does not exist (64, no table).
"""

from __future__ import annotations

import json
import os
import re
import smtplib
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

import harness

BAD_MODES = ["self-signed", "untrusted-ca", "expired", "not-yet-valid", "wrong-host",
             "weak-key", "sha1"]
WORDS = {
    "self-signed": "self-signed certificate",
    "untrusted-ca": "certificate from an untrusted CA",
    "expired": "expired certificate",
    "not-yet-valid": "not yet valid certificate",
    "wrong-host": "certificate for the wrong host",
    "weak-key": "certificate with a weak key (RSA 1024)",
    "sha1": "SHA-1 signed certificate",
}
ARTICLE = {m: ("an" if m == "expired" else "a") for m in BAD_MODES}
VERDICT_RE = re.compile(r"^#(\d+) \+\d+\.\d+ == verdict: (.*)$", re.M)
USER, PASSWORD = "alice", "S3cret-pw"
FROM, TO = "alice@example.org", "bob@example.net"


def ca_pem() -> str:
    return os.path.join(os.environ["XDG_DATA_HOME"], "smtptap", "ca.pem")


def verdicts(t) -> dict:
    return {int(m.group(1)): m.group(2) for m in VERDICT_RE.finditer(t.transcript())}


def wait_verdict(t, n: int = 1) -> dict:
    t.wait_for(r"== verdict: ", count=n, timeout=10)
    return verdicts(t)


def refused(mode: str) -> str:
    return f"client refused the {WORDS[mode]} ("


def accepted_auth(mode: str, mech: str = "PLAIN") -> str:
    return (f"client ACCEPTED {ARTICLE[mode]} {WORDS[mode]} and then sent AUTH {mech} for "
            f"{USER}: credentials exposed")


def start(tap, mode: str, *extra: str, listen: str = "127.0.0.1:0"):
    return tap(["--client-cert", mode, "--decode-auth", "--redact", *extra], listen=listen)


def swaks_auth(t, *tls: str):
    return harness.swaks(t.hostport, "--from", FROM, "--to", TO, *tls, "-a", "PLAIN",
                         "-au", USER, "-ap", PASSWORD)


# --------------------------------------------------------------------------- certificates


def leaf_from_wire(port: int, tmp_path: Path, starttls: bool = True) -> Path:
    cmd = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
           "-showcerts"]
    if starttls:
        cmd[2:2] = ["-starttls", "smtp"]
    rc, out, err = harness.run(cmd, input="QUIT\r\n", timeout=20)
    m = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n", out, re.S)
    assert m, f"no certificate from s_client (rc {rc})\n{out}\n{err}"
    path = tmp_path / "leaf.pem"
    path.write_text(m.group(0))
    return path


def x509(path: Path, *args: str) -> str:
    rc, out, err = harness.run(["openssl", "x509", "-in", str(path), "-noout", *args])
    assert rc == 0, err
    return out


def verify(path: Path, *args: str) -> str:
    rc, out, err = harness.run(["openssl", "verify", "-CAfile", ca_pem(), *args, str(path)])
    return f"rc={rc} {out}{err}"


# What `openssl verify` says of each mode, and with which options it is asked.
VERIFY_FAILURE = {
    "self-signed": ((), "self-signed certificate"),
    "untrusted-ca": ((), "unable to get local issuer certificate"),
    "expired": ((), "certificate has expired"),
    "not-yet-valid": ((), "certificate is not yet valid"),
    "wrong-host": (("-verify_hostname", "localhost"), "hostname mismatch"),
    "weak-key": (("-auth_level", "2"), "EE certificate key too weak"),
    "sha1": (("-auth_level", "1"), "CA signature digest algorithm too weak"),
}


@pytest.mark.parametrize("mode", BAD_MODES)
def test_minted_certificate_is_what_its_mode_says(tap, tmp_path, mode):
    t = start(tap, mode)
    leaf = leaf_from_wire(t.port, tmp_path)
    opts, failure = VERIFY_FAILURE[mode]
    result = verify(leaf, *opts)
    assert failure in result and "rc=2" in result, result
    dates, text = x509(leaf, "-dates", "-ext", "subjectAltName", "-issuer"), x509(leaf, "-text")
    now = time.time()
    expired = harness.run(["openssl", "x509", "-in", str(leaf), "-noout", "-checkend", "0"])[0]
    assert (expired != 0) == (mode == "expired"), dates
    assert ("DNS:wrong-host.invalid" in dates) == (mode == "wrong-host"), dates
    assert ("DNS:localhost" in dates) == (mode != "wrong-host"), dates
    assert ("Public-Key: (1024 bit)" in text) == (mode == "weak-key"), text
    assert ("ecdsa-with-SHA1" in text) == (mode == "sha1"), text
    issuer = re.search(r"^issuer=(.*)$", dates, re.M).group(1)
    assert ("smtptap untrusted test CA" in issuer) == (mode == "untrusted-ca"), issuer
    assert ("CN = localhost" in issuer) == (mode == "self-signed"), issuer
    nb = re.search(r"notBefore=(.*)", dates).group(1)
    starts = time.mktime(time.strptime(nb.replace(" GMT", ""), "%b %d %H:%M:%S %Y")) - time.timezone
    assert (starts > now + 86400) == (mode == "not-yet-valid"), dates


def test_good_certificate_passes_the_same_checks(tap, tmp_path):
    """The options used above do not fail a good leaf by themselves."""
    t = start(tap, "good")
    leaf = leaf_from_wire(t.port, tmp_path)
    result = verify(leaf, "-verify_hostname", "localhost", "-auth_level", "2")
    assert "rc=0" in result and ": OK" in result, result
    assert not verdicts(t), "no verdict for the good certificate"


@pytest.mark.parametrize("mode", ["expired", "untrusted-ca", "wrong-host"])
def test_implicit_tls_listener_shows_the_bad_certificate(tap, tmp_path, mode):
    t = start(tap, mode, listen="tls:127.0.0.1:0")
    leaf = leaf_from_wire(t.port, tmp_path, starttls=False)
    opts, failure = VERIFY_FAILURE[mode]
    assert failure in verify(leaf, *opts)
    # swaks on connect, verifying and not
    rc, out, _ = harness.swaks(t.hostport, "--from", FROM, "--to", TO, "--tls-on-connect",
                               "--tls-verify", "--tls-ca-path", ca_pem(), "-a", "PLAIN",
                               "-au", USER, "-ap", PASSWORD)
    rc2, _, _ = harness.swaks(t.hostport, "--from", FROM, "--to", TO, "--tls-on-connect",
                              "-a", "PLAIN", "-au", USER, "-ap", PASSWORD)
    assert rc2 == 0
    v = wait_verdict(t, 3)  # s_client's, then the two swaks sessions
    if mode == "wrong-host":  # swaks checks no host name
        assert v[2].startswith(accepted_auth(mode)), v
    else:
        assert rc != 0 and v[2].startswith(refused(mode)) and v[2].endswith(": good"), v
    assert v[3].startswith(accepted_auth(mode)), v


# --------------------------------------------------------------------------- real clients


@pytest.mark.parametrize("mode", BAD_MODES)
def test_swaks_with_and_without_verification(tap, need, mode):
    need("swaks")
    t = start(tap, mode)
    rc_verify, out, err = swaks_auth(t, "--tls", "--tls-verify", "--tls-ca-path", ca_pem())
    out += err
    rc_plain, _, _ = swaks_auth(t, "--tls")
    assert rc_plain == 0
    v = wait_verdict(t, 2)
    if mode == "wrong-host":
        # swaks 20201014 verifies the chain but not the host name: it is fooled, and said so
        assert rc_verify == 0 and v[1].startswith(accepted_auth(mode)), (v, out)
    else:
        assert rc_verify != 0 and "TLS startup failed" in out, out
        assert v[1].startswith(refused(mode)) and v[1].endswith(": good"), v
        assert "AUTH" not in "".join(l.text for l in t.lines(1) if l.is_command), t.transcript()
    assert v[2].startswith(accepted_auth(mode)), v
    assert PASSWORD not in t.transcript()


@pytest.mark.parametrize("mode", BAD_MODES)
def test_curl_with_and_without_k(tap, need, tmp_path, mode):
    need("curl")
    t = start(tap, mode)
    msg = tmp_path / "msg.eml"
    msg.write_bytes(harness.make_message("curl"))
    base = ["curl", "-sS", "--max-time", "20", "--ssl-reqd", f"smtp://localhost:{t.port}",
            "--mail-from", FROM, "--mail-rcpt", TO, "-T", str(msg), "--user", f"{USER}:{PASSWORD}"]
    rc_verify, _, err = harness.run(base + ["--cacert", ca_pem()])
    rc_k, _, err_k = harness.run(base + ["-k"])
    assert rc_verify != 0, err
    assert rc_k == 0, err_k
    v = wait_verdict(t, 2)
    if mode == "wrong-host":  # curl checks the name after the handshake and hangs up
        assert v[1].startswith("client completed the handshake with the certificate for the "
                               "wrong host but sent neither credentials nor mail"), v
    else:
        assert v[1].startswith(refused(mode)), v
    assert v[1].endswith(": good"), v
    assert re.match(rf"client ACCEPTED {ARTICLE[mode]} {re.escape(WORDS[mode])} and then sent "
                    rf"AUTH \S+ for {USER}: credentials exposed", v[2]), v


def smtplib_login(port: int, ctx: ssl.SSLContext) -> None:
    with smtplib.SMTP("localhost", port, local_hostname="client.test", timeout=20) as s:
        s.starttls(context=ctx)
        s.login(USER, PASSWORD)
        s.sendmail(FROM, [TO], harness.make_message("smtplib"))


@pytest.mark.parametrize("mode", BAD_MODES)
def test_python_smtplib_verified_and_unverified(tap, mode):
    t = start(tap, mode)
    with pytest.raises(ssl.SSLError):
        smtplib_login(t.port, ssl.create_default_context(cafile=ca_pem()))
    smtplib_login(t.port, ssl._create_unverified_context())
    v = wait_verdict(t, 2)
    assert v[1].startswith(refused(mode)) and v[1].endswith(": good"), v
    assert re.match(rf"client ACCEPTED .* and then sent AUTH \S+ for {USER}: credentials "
                    rf"exposed; it sent mail too: envelope \(MAIL FROM, 1 RCPT\) and body exposed",
                    v[2]), v


def test_auth_in_clear_before_tls_is_what_counts(tap):
    """AUTH in clear, then STARTTLS (a bad certificate accepted), then AUTH again inside TLS:
    the verdict names the one that went in clear."""
    t = start(tap, "expired")
    with smtplib.SMTP("localhost", t.port, local_hostname="client.test", timeout=20) as s:
        s.login(USER, PASSWORD)
        s.starttls(context=ssl._create_unverified_context())
        s.ehlo()
        try:
            s.login(USER, PASSWORD)  # again, inside TLS
        except smtplib.SMTPException:
            pass  # whatever the sink says to a second AUTH: it was sent
    assert "AUTH" in "".join(l.text for l in t.lines(1) if l.is_command and "~>" in l.marker), \
        t.transcript()
    v = wait_verdict(t)
    assert re.fullmatch(rf"client sent AUTH \S+ for {USER} in clear before TLS: credentials "
                        rf"exposed", v[1]), v


def msmtp(port: int, certcheck: str, tmp_path: Path):
    conf = tmp_path / f"msmtprc-{certcheck}"
    conf.write_text("\n".join([
        "account default", "host localhost", f"port {port}", "tls on", "tls_starttls on",
        f"tls_certcheck {certcheck}", f"tls_trust_file {ca_pem()}", "auth plain",
        f"user {USER}", f"password {PASSWORD}", f"from {FROM}", "timeout 20", ""]))
    conf.chmod(0o600)
    return harness.run(["msmtp", f"--file={conf}", TO], input=harness.make_message("msmtp"))


@pytest.mark.parametrize("mode", BAD_MODES)
def test_msmtp_certcheck_on_and_off(tap, need, tmp_path, mode):
    need("msmtp")
    t = start(tap, mode)
    rc_on, _, err_on = msmtp(t.port, "on", tmp_path)
    rc_off, _, err_off = msmtp(t.port, "off", tmp_path)
    assert rc_off == 0, err_off
    v = wait_verdict(t, 2)
    if mode == "weak-key":
        # msmtp 1.8.23 with Debian 12's GnuTLS takes an RSA 1024 server key: reported
        assert rc_on == 0 and v[1].startswith(accepted_auth(mode)), (v, err_on)
    else:
        # GnuTLS finishes the handshake, then msmtp checks the certificate and hangs up
        assert rc_on != 0, err_on
        assert v[1].startswith(f"client completed the handshake with the {WORDS[mode]} but "
                               "sent neither credentials nor mail"), v
        assert v[1].endswith(": good"), v
    assert v[2].startswith(accepted_auth(mode)), v


def test_verdict_is_a_jsonl_event(tap, need):
    need("swaks")
    t = tap(["--client-cert", "expired", "--decode-auth", "--redact", "-d", "-", "--format",
             "jsonl"])
    swaks_auth(t, "--tls", "--tls-verify", "--tls-ca-path", ca_pem())
    assert swaks_auth(t, "--tls")[0] == 0
    t.wait_for(r"== verdict: ", count=2, timeout=10)
    t.stop()
    events = [json.loads(l) for l in t.stdout().splitlines() if l.strip()]
    found = [e for e in events if e["kind"] == "verdict"]
    assert [e["session"] for e in found] == [1, 2], found
    first, second = found[0]["verdict"], found[1]["verdict"]
    assert first == {"cert": "expired", "client_starttls": "offer", "action": "refused",
                     "alert": "certificate_expired", "auth_mech": "", "auth_user": "",
                     "good": True, "credentials_exposed": False, "mail_exposed": False}
    assert second == {"cert": "expired", "client_starttls": "offer", "action": "sent-credentials",
                      "alert": "", "auth_mech": "PLAIN", "auth_user": USER, "good": False,
                      "credentials_exposed": True, "mail_exposed": False}
    assert found[1]["text"] == "verdict: " + accepted_auth("expired") + (
        "; it sent mail too: envelope (MAIL FROM, 1 RCPT) and body exposed")
    ends = [e for e in events if e["kind"] == "end"]
    assert [e["session"] for e in ends] == [1, 2]  # the verdict comes before each end


def test_user_is_named_only_with_decode_auth(tap, need):
    need("swaks")
    t = tap(["--client-cert", "self-signed"])
    assert swaks_auth(t, "--tls")[0] == 0
    v = wait_verdict(t)
    assert v[1].startswith("client ACCEPTED a self-signed certificate and then sent AUTH PLAIN: "
                           "credentials exposed"), v


def test_bad_client_cert_value(tmp_path):
    rc, _, err = harness.run([harness.smtptap_bin(), "--client-cert", "broken"])
    assert rc == 64
    assert err.strip() == ('smtptap: --client-cert: invalid value "broken"; expected good, '
                           'self-signed, untrusted-ca, expired, not-yet-valid, wrong-host, '
                           'weak-key or sha1'), err
    conf = tmp_path / "c.conf"
    conf.write_text("[tls]\nclient_cert = old\n")
    rc, _, err = harness.run([harness.smtptap_bin(), "-c", str(conf)])
    assert rc == 78 and "client_cert" in err and '"old"' in err and "not-yet-valid" in err, err


def test_client_cert_from_the_config_file(tap, tmp_path, need):
    need("swaks")
    conf = tmp_path / "c.conf"
    conf.write_text("[tls]\nclient_cert = not-yet-valid\n")
    t = tap(["-c", str(conf)])
    rc, _, _ = swaks_auth(t, "--tls", "--tls-verify", "--tls-ca-path", ca_pem())
    assert rc != 0
    assert wait_verdict(t)[1].startswith(refused("not-yet-valid"))


# --------------------------------------------------------------------------- strip


def test_strip_client_that_requires_tls_gives_up(tap, need):
    need("swaks")
    t = tap(["--client-starttls", "strip", "--decode-auth"])
    rc, out, _ = swaks_auth(t, "--tls")
    assert rc != 0, out
    # swaks sees no STARTTLS in the EHLO reply and quits without asking for it
    assert "STARTTLS" not in "".join(l.text for l in t.lines(1) if l.is_command)
    assert wait_verdict(t)[1] == "client gave up without sending credentials: good"


def test_strip_opportunistic_client_sends_auth_in_clear(tap, need):
    need("swaks")
    t = tap(["--client-starttls", "strip", "--decode-auth", "--redact"])
    rc, _, _ = swaks_auth(t, "--tls-optional")
    assert rc == 0
    assert wait_verdict(t)[1] == (f"client sent AUTH PLAIN for {USER} in clear after STARTTLS was "
                                  "withheld: credentials exposed; it sent mail too: envelope "
                                  "(MAIL FROM, 1 RCPT) and body exposed")


def test_strip_mail_without_auth_is_reported(tap, need):
    need("swaks")
    t = tap(["--client-starttls", "strip"])
    rc, _, _ = harness.swaks(t.hostport, "--from", FROM, "--to", TO, "--tls-optional")
    assert rc == 0
    assert wait_verdict(t)[1] == ("client sent mail without AUTH in clear after STARTTLS was "
                                  "withheld: envelope (MAIL FROM, 1 RCPT) and body exposed")


# --------------------------------------------------------------------------- check-client


def check_client(*args: str, timeout: float = 240):
    return harness.run([harness.smtptap_bin(), "check-client", *args], timeout=timeout)


def table_rows(out: str) -> dict:
    rows = {}
    for line in out.splitlines():
        m = re.match(r"^(good|self-signed|untrusted-ca|expired|not-yet-valid|wrong-host|"
                     r"weak-key|sha1|strip)\s+(refused at handshake|gave up|sent mail|sent "
                     r"credentials|timed out|did not connect)\s+(.*)$", line)
        if m:
            rows[m.group(1)] = (m.group(2), m.group(3))
    return rows


SWAKS = ("swaks --server 127.0.0.1:$SMTPTAP_PORT --from alice@example.org --to bob@example.net "
         "-a PLAIN -au alice -ap S3cret-pw --timeout 15 --tls")


def test_check_client_swaks_verifying(need):
    need("swaks")
    rc, out, err = check_client("--", "sh", "-c", SWAKS + " --tls-verify --tls-ca-path $SMTPTAP_CA")
    assert rc == 1, out + err
    rows = table_rows(out)
    assert list(rows) == ["good"] + BAD_MODES + ["strip"], out
    assert rows["good"] == ("sent credentials",
                            "control: with a certificate it can trust the client works")
    for mode in BAD_MODES:
        if mode == "wrong-host":  # swaks checks no host name
            assert rows[mode] == ("sent credentials", "FAIL: " + accepted_auth(mode) +
                                  "; it sent mail too: envelope (MAIL FROM, 1 RCPT) and body "
                                  "exposed"), out
        else:
            assert rows[mode][0] == "refused at handshake", out
            assert rows[mode][1].startswith(refused(mode)), out
    assert rows["strip"] == ("gave up", "client gave up without sending credentials: good")
    assert out.rstrip().endswith("FAIL: see the rows marked FAIL"), out
    assert "S3cret-pw" not in out.split("\n", 1)[1]  # the rows (the first line is the command)


def test_check_client_swaks_not_verifying(need):
    need("swaks")
    rc, out, err = check_client("--", "sh", "-c", SWAKS)
    assert rc == 1, out + err
    rows = table_rows(out)
    for mode in BAD_MODES:
        assert rows[mode][0] == "sent credentials", out
        assert rows[mode][1].startswith("FAIL: " + accepted_auth(mode)), out
    assert rows["strip"][0] == "gave up", out


def test_check_client_json_python_smtplib_passes():
    script = ("import os, smtplib, ssl\n"
              "ctx = ssl.create_default_context(cafile=os.environ['SMTPTAP_CA'])\n"
              "with smtplib.SMTP('localhost', int(os.environ['SMTPTAP_PORT']), timeout=15) as s:\n"
              "    s.starttls(context=ctx)\n"
              "    s.login('alice', 'S3cret-pw')\n"
              "    s.sendmail('a@example.org', ['b@example.net'], b'Subject: x\\r\\n\\r\\nhi\\r\\n')\n")
    rc, out, err = check_client("--json", "--", "/usr/bin/python3", "-c", script)
    assert rc == 0, out + err
    doc = json.loads(out)
    assert doc["passed"] is True and doc["command"][0] == "/usr/bin/python3"
    by_mode = {r["mode"]: r for r in doc["rows"]}
    assert list(by_mode) == ["good"] + BAD_MODES + ["strip"]
    assert by_mode["good"]["control"] and by_mode["good"]["action"] == "sent credentials"
    for mode in BAD_MODES:
        r = by_mode[mode]
        assert (r["action"], r["good"], r["sessions"], r["timed_out"]) == (
            "refused at handshake", True, 1, False), r
        assert r["verdict"].startswith(refused(mode)), r
        assert r["exit_status"] == 1, r  # the script died of its ssl error
    assert by_mode["strip"]["action"] == "gave up" and by_mode["strip"]["good"]


def test_check_client_implicit_tls_client_passes():
    """An SMTPS client on SMTPTAP_TLS_PORT: every bad certificate refused, and strip (which
    has no STARTTLS to withhold from it) is no failure."""
    script = ("import os, smtplib, ssl\n"
              "ctx = ssl.create_default_context(cafile=os.environ['SMTPTAP_CA'])\n"
              "port = int(os.environ['SMTPTAP_TLS_PORT'])\n"
              "with smtplib.SMTP_SSL('localhost', port, context=ctx, timeout=15) as s:\n"
              "    s.login('alice', 'S3cret-pw')\n")
    rc, out, err = check_client("--", "/usr/bin/python3", "-c", script)
    assert rc == 0, out + err
    rows = table_rows(out)
    for mode in BAD_MODES:
        assert rows[mode][0] == "refused at handshake" and rows[mode][1].startswith(refused(mode))
    assert rows["strip"] == ("sent credentials", "nothing to withhold: the client used implicit "
                             "TLS (SMTPTAP_TLS_PORT), which strip does not touch: good"), out


def test_check_client_hanging_command_is_stopped():
    started = time.monotonic()
    rc, out, err = check_client("--timeout", "1s", "--", "sleep", "97.31", timeout=120)
    took = time.monotonic() - started
    assert rc == 1, out + err
    rows = table_rows(out)
    assert len(rows) == 9 and all(r[0] == "timed out" for r in rows.values()), out
    assert rows["expired"][1] == "FAIL: the command was still running at the timeout and was stopped"
    assert took < 60, took
    left = subprocess.run(["pgrep", "-f", "^sleep 97.31$"], capture_output=True, text=True).stdout
    assert not left.strip(), f"sleep still running: {left}"


def test_check_client_missing_command():
    rc, out, err = check_client("--", "no-such-mail-client-xyz", "--flag")
    assert rc == 64
    assert out == ""
    assert err.strip() == ("smtptap check-client: no-such-mail-client-xyz: command not found "
                           "(not an executable file in $PATH)")


def test_check_client_usage_errors():
    rc, out, err = check_client("--timeout", "soon", "--", "true")
    assert rc == 64 and '--timeout: invalid value "soon"' in err and out == ""
    rc, out, err = check_client()
    assert rc == 64 and "no command given" in err


def alive(pid: int) -> bool:
    """The process exists and is not a zombie waiting for its new parent to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_check_client_stopped_by_sigterm_leaves_nothing_behind():
    """SIGTERM to check-client alone: the command's own process group and the server it
    started go with it."""
    p = subprocess.Popen([harness.smtptap_bin(), "check-client", "--", "sleep", "93.17"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    children = []
    while time.monotonic() < deadline:
        out = subprocess.run(["pgrep", "-a", "-P", str(p.pid)], capture_output=True,
                             text=True).stdout
        children = [(int(l.split()[0]), l.split(None, 1)[1]) for l in out.splitlines()]
        if any(cmd == "sleep 93.17" for _, cmd in children):
            break
        time.sleep(0.1)
    else:
        p.kill()
        pytest.fail(f"the command never started: {children}")
    # the server ("smtptap -q --listen 127.0.0.1:0 ...", argv[0] "smtptap") and the command
    assert sorted(cmd.split()[0] for _, cmd in children) == ["sleep", "smtptap"], children
    p.terminate()
    assert p.wait(20) == -15
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(pid) for pid, _ in children):
        time.sleep(0.1)
    assert not [c for c in children if alive(c[0])], children
