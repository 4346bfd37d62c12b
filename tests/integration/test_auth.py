"""AUTH through smtptap: --decode-auth ("##" lines), --redact, and the built-in sink's
[sink] users check, with real clients (swaks, curl, Python smtplib) and a raw socket.

What is checked, from the issue "Decode SASL AUTH exchanges in both directions, and
redact secrets for sharing":
  --decode-auth   every AUTH exchange gets "##" lines (client lines and 334 challenges)
                  and a closing summary, in the live transcript and the -d capture files;
                  the exact texts are proxy/auth.c's (its unit tests: tests/unit/test_auth.c)
  --redact        passwords, tokens, CRAM digests and the raw base64 lines that carry them
                  read "<redacted>" ("<redacted token>", "<redacted digest>") everywhere,
                  never telling their length (issue 15 item 14); user names stay visible;
                  without --decode-auth the raw lines are redacted and there are no "##" lines
  neither         the AUTH lines appear as sent, no "##" lines
  built-in sink   any credentials, or with [sink] users checked: 235 / 535 5.7.8; XOAUTH2
                  failure is a 334 JSON error challenge, then 535 after the client's empty line
  broken input    "**" lint lines, bytes relayed untouched, smtptap keeps serving

Secrets are looked for in every form a leak could take: the password or token itself, the
base64 lines the client actually sent (read back from the client's own log), and the
CRAM-MD5 digest (hex) computed from the challenge.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import re
import smtplib
import socket
import threading
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pytest

import harness
from harness import RawSmtpClient

USER = "alice"
PASSWORD = "S3cr3t-pw"
WRONG = "wr0ng-Pa55"
TOKEN_USER = "carol"
TOKEN = "ya29.T0ken-S3CRET_value"
BAD_TOKEN = "expired-T0ken-XYZ"
USERS = f"{USER}:{PASSWORD}, bob:pw, {TOKEN_USER}:{TOKEN}"
FROM, TO = "alice@example.org", "bob@example.net"
SINK_XOAUTH2_ERROR = '{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}'
OAUTHBEARER_ERROR = '{"status":"invalid_token","scope":"mail"}'
SWAKS_AUTH_FAILED = 28  # swaks exit status: "No authentication type succeeded"
CURL_LOGIN_DENIED = 67
B64_RE = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")
CAPTURE_NAME_RE = re.compile(r"^\d{8}T\d{6}-(\d+)-.*\.txt$")


def b64(data) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def cram_digest(password: str, challenge: str) -> str:
    return hmac.new(password.encode(), challenge.encode(), "md5").hexdigest()


# --------------------------------------------------------------------------- helpers


def ini(tmp_path: Path, text: str) -> str:
    p = tmp_path / "smtptap.ini"
    p.write_text(text)
    return str(p)


def users_ini(tmp_path: Path, extra: str = "") -> str:
    return ini(tmp_path, f"[sink]\nusers = {USERS}\n{extra}")


def ended(tap, sid: int) -> List[harness.TLine]:
    tap.wait_session_end(sid)
    return tap.lines(sid)


def hashes(lines: Sequence[harness.TLine]) -> List[str]:
    """The texts of the "##" lines."""
    return [l.text for l in lines if l.marker == "##"]


def lints(lines: Sequence[harness.TLine]) -> List[str]:
    """The ** lines."""
    return [l.text for l in lines if l.marker == "**"]


def commands(lines: Sequence[harness.TLine]) -> List[str]:
    return [l.text for l in lines if l.marker == " ->"]


def replies(lines: Sequence[harness.TLine]) -> List[str]:
    return [l.text for l in lines if l.marker == "<- "]


def challenges_in(lines: Sequence[harness.TLine]) -> List[str]:
    """The decoded text of every 334 reply (as relayed) in a session."""
    return [base64.b64decode(t[4:]).decode("latin-1") for t in replies(lines)
            if t.startswith("334 ") and len(t) > 4]


def sasl_payloads(sent: Sequence[str]) -> List[str]:
    """The base64 a client sent in its AUTH exchanges: initial responses, and the lines
    between an AUTH command and the next SMTP command (empty lines and "*" left out)."""
    out, in_auth = [], False
    for ln in sent:
        verb = ln.split(" ", 1)[0].upper()
        if verb == "AUTH":
            in_auth = True
            words = ln.split()
            if len(words) >= 3:
                out.append(words[2])
        elif verb in harness.VERBS:
            in_auth = False
        elif in_auth and ln not in ("", "*"):
            out.append(ln)
    return out


def secret_forms(sent: Sequence[str], visible_users: Sequence[str] = (USER, TOKEN_USER)) -> List[str]:
    """Everything a redacted transcript must not show for these client lines: each base64
    payload that is more than a bare user name, and for a CRAM-MD5 response its digest."""
    out = []
    for p in sasl_payloads(sent):
        assert B64_RE.match(p), f"client sent a non-base64 SASL line {p!r}: test assumption broken"
        raw = base64.b64decode(p)
        if raw.decode("latin-1") in visible_users:
            continue  # AUTH LOGIN's user name line: no secret
        out.append(p)
        m = re.fullmatch(rb"(\S+) ([0-9a-f]{32})", raw)
        if m:
            out.append(m.group(2).decode())
    return out


def swaks_auth(tap, mech: str, user: str = USER, password: str = PASSWORD, *extra: str):
    return harness.swaks(tap.hostport, "--from", FROM, "--to", TO, "--helo", "client.test",
                         "--auth", mech, "--auth-user", user, "--auth-password", password,
                         *extra)


def curl_auth(tap, tmp_path: Path, *args: str):
    """curl -v smtp:// through TAP with ARGS; returns (rc, out, err, lines curl sent)."""
    msg = tmp_path / "curl.eml"
    if not msg.exists():
        msg.write_bytes(harness.make_message("curl auth"))
    rc, out, err = harness.curl_send(tap.host, tap.port, FROM, [TO], str(msg), *args)
    sent = [l[2:].rstrip("\r") for l in err.splitlines() if l.startswith("> ")]
    return rc, out, err, sent


class RecordingSMTP(smtplib.SMTP):
    """smtplib.SMTP that keeps every line it sent (CRLF-split), for secret_forms()."""

    def __init__(self, *a, **kw):
        self.sent_lines: List[str] = []
        super().__init__(*a, **kw)

    def send(self, s):
        data = s.encode("ascii") if isinstance(s, str) else bytes(s)
        self.sent_lines.extend(data.decode("ascii", "replace").split("\r\n")[:-1])
        super().send(s)


def smtp_client(tap) -> RecordingSMTP:
    s = RecordingSMTP(tap.host, tap.port, local_hostname="client.test", timeout=15)
    s.ehlo()
    return s


def xoauth2(user: str, token: str, acks: Optional[list] = None):
    """An smtplib authobject for XOAUTH2: the credentials, then an empty line for each
    error challenge (recorded in ACKS)."""
    def obj(challenge=None):
        if challenge is None:
            return f"user={user}\x01auth=Bearer {token}\x01\x01"
        if acks is not None:
            acks.append(challenge)
        return ""
    return obj


def capture_files(cap: Path) -> Dict[int, str]:
    """session number -> text of its capture file."""
    out = {}
    for p in sorted(cap.iterdir()):
        if p.suffix != ".txt":
            continue  # other formats: check_redacted greps them as bytes
        m = CAPTURE_NAME_RE.match(p.name)
        assert m, f"unexpected file in the capture directory: {p.name}"
        out[int(m.group(1))] = p.read_text(errors="replace")
    return out


def assert_no_secret(where: str, text: str, secrets: Sequence[str]) -> None:
    for s in secrets:
        assert s not in text, f"secret {s!r} appears in {where}:\n{text}"


# --------------------------------------------------------------------------- servers


class RecordingAuthServer:
    """A small SMTP server (thread per connection) that offers AUTH PLAIN LOGIN and records
    every byte each connection sent, to show that smtptap relays AUTH lines untouched.

    AUTH with an initial response -> 535; without -> "334 " (PLAIN) or "334 VXNlcm5hbWU6"
    (LOGIN); a SASL line: "*" -> 501 5.7.0, anything else 535 5.7.8; QUIT -> 221 and close;
    any other command 250."""

    def __init__(self):
        self.received: Dict[int, bytearray] = {}
        self._cond = threading.Condition()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self.port = self._sock.getsockname()[1]
        self._threads: List[threading.Thread] = []
        self._conns: List[socket.socket] = []
        self._closed = 0

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self):
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def __exit__(self, *exc):
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        for c in self._conns:
            with contextlib.suppress(OSError):
                c.close()
        for t in self._threads:
            t.join(5)
        return False

    def wait_closed(self, n: int, timeout: float = 5.0) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: self._closed >= n, timeout), \
                f"recording server: {self._closed} connection(s) closed, expected {n}"

    def _accept(self):
        n = 0
        while True:
            try:
                c, _ = self._sock.accept()
            except OSError:
                return
            n += 1
            self._conns.append(c)
            with self._cond:
                self.received[n] = bytearray()
            t = threading.Thread(target=self._serve, args=(c, n), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, c: socket.socket, n: int):
        buf = b""
        sasl = False
        try:
            c.sendall(b"220 rec.test ESMTP recorder\r\n")
            while True:
                while b"\n" not in buf:
                    data = c.recv(65536)
                    if not data:
                        return
                    with self._cond:
                        self.received[n].extend(data)
                    buf += data
                ln, _, buf = buf.partition(b"\n")
                ln = ln.rstrip(b"\r")
                words = ln.split()
                verb = words[0].upper() if words else b""
                if sasl:
                    sasl = False
                    c.sendall(b"501 5.7.0 Authentication cancelled\r\n" if ln == b"*"
                              else b"535 5.7.8 Authentication credentials invalid\r\n")
                elif verb == b"EHLO":
                    c.sendall(b"250-rec.test\r\n250 AUTH PLAIN LOGIN\r\n")
                elif verb == b"AUTH" and len(words) == 2:
                    sasl = True
                    c.sendall(b"334 VXNlcm5hbWU6\r\n" if words[1].upper() == b"LOGIN" else b"334 \r\n")
                elif verb == b"AUTH":
                    c.sendall(b"535 5.7.8 Authentication credentials invalid\r\n")
                elif verb == b"QUIT":
                    c.sendall(b"221 2.0.0 Bye\r\n")
                    return
                else:
                    c.sendall(b"250 2.0.0 Ok\r\n")
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                c.close()
            with self._cond:
                self._closed += 1
                self._cond.notify_all()


async def _oauthbearer(server, args):
    """aiosmtpd handler hook for OAUTHBEARER (RFC 7628): TOKEN for USER succeeds; any other
    token gets a 334 JSON error challenge, then (after the client's ^A) 535."""
    from aiosmtpd.smtp import MISSING, AuthResult
    if len(args) == 1:
        data = await server.challenge_auth("")
        if data is MISSING:
            return AuthResult(success=False, handled=True)
    else:
        try:
            data = base64.b64decode(args[1], validate=True)
        except Exception:
            await server.push("501 5.5.2 Can't decode base64")
            return AuthResult(success=False, handled=True)
    fields = dict(kv.split(b"=", 1) for kv in data.split(b"\x01")[1:] if b"=" in kv)
    if data.startswith(f"n,a={USER},".encode()) and fields.get(b"auth") == f"Bearer {TOKEN}".encode():
        return AuthResult(success=True)
    ack = await server.challenge_auth(OAUTHBEARER_ERROR)
    if ack is MISSING:
        return AuthResult(success=False, handled=True)
    return AuthResult(success=False, handled=False)  # aiosmtpd answers 535 5.7.8


@pytest.fixture
def auth_server():
    """aiosmtpd offering AUTH LOGIN OAUTHBEARER PLAIN over plain TCP, accepting only
    alice / S3cr3t-pw (PLAIN, LOGIN) and alice / TOKEN (OAUTHBEARER)."""
    from aiosmtpd.smtp import AuthResult

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == USER.encode() and auth_data.password == PASSWORD.encode()
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd sends the 535

    with harness.AiosmtpdServer(auth=True, authenticator=authenticator) as srv:
        harness.aiosmtpd_add_auth_mechanism(srv, "OAUTHBEARER", _oauthbearer)
        yield srv


@pytest.fixture(autouse=True)
def _clients(need):
    need("swaks", "curl")


# --------------------------------------------------------------------------- expected texts


def plain_lines(user, password, outcome, *, ir=True):
    head = [] if ir else ["AUTH PLAIN (no initial response)",
                          "AUTH PLAIN empty challenge (the client sends its credentials next)"]
    return head + [f'AUTH PLAIN authzid="" authcid="{user}" password="{password}"',
                   f"AUTH PLAIN for {user}: {outcome}"]


def login_lines(user, password, outcome, *, ir=False, prompts=("Username:", "Password:")):
    head = [f'AUTH LOGIN user="{user}"'] if ir else [
        "AUTH LOGIN (no initial response)",
        f'AUTH LOGIN prompt "{prompts[0]}" (next line: the user name)',
        f'AUTH LOGIN user="{user}"']
    return head + [f'AUTH LOGIN prompt "{prompts[1]}" (next line: the password)',
                   f'AUTH LOGIN password="{password}"',
                   f"AUTH LOGIN for {user}: {outcome}"]


def cram_lines(user, password, challenge, outcome):
    return ["AUTH CRAM-MD5 (no initial response)",
            f'AUTH CRAM-MD5 challenge "{challenge}"',
            f'AUTH CRAM-MD5 user="{user}" digest="{cram_digest(password, challenge)}"',
            f"AUTH CRAM-MD5 for {user}: {outcome}"]


ACCEPTED = "accepted (235 2.7.0)"
REJECTED = "rejected (535 5.7.8)"


def expected_swaks(mech, password, outcome, lines):
    if mech == "PLAIN":
        return plain_lines(USER, password, outcome)
    if mech == "LOGIN":
        return login_lines(USER, password, outcome)
    (challenge,) = challenges_in(lines)
    return cram_lines(USER, password, challenge, outcome)


# --------------------------------------------------------------------------- swaks & sink


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_swaks_sink_without_users_accepts_anyone_decoded(tap, mech):
    t = tap(["--decode-auth"])
    rc, out, err = swaks_auth(t, mech, USER, WRONG)
    assert rc == 0, f"the sink without [sink] users accepts any credentials:\n{out}\n{err}"
    lines = ended(t, 1)
    assert hashes(lines) == expected_swaks(mech, WRONG, ACCEPTED, lines), t.transcript()
    assert "250 2.0.0 Ok: queued as S1M1" in replies(lines)


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_swaks_sink_users_good_and_bad_password(tap, tmp_path, mech):
    t = tap(["--decode-auth", "-c", users_ini(tmp_path)])
    rc, out, err = swaks_auth(t, mech, USER, PASSWORD)
    assert rc == 0, f"good password refused:\n{out}\n{err}"
    good = ended(t, 1)
    assert hashes(good) == expected_swaks(mech, PASSWORD, ACCEPTED, good), t.transcript()
    assert "235 2.7.0 Authentication successful" in replies(good)

    rc, out, err = swaks_auth(t, mech, USER, WRONG)
    assert rc == SWAKS_AUTH_FAILED, f"wrong password: swaks rc {rc}\n{out}\n{err}"
    assert "<** 535 5.7.8 Authentication credentials invalid" in out, out
    bad = ended(t, 2)
    assert hashes(bad) == expected_swaks(mech, WRONG, REJECTED, bad), t.transcript()
    assert not any(c.upper().startswith("MAIL") for c in commands(bad))

    # A user the list does not know, with alice's password.
    rc, out, err = swaks_auth(t, mech, "mallory", PASSWORD)
    assert rc == SWAKS_AUTH_FAILED, out
    assert hashes(ended(t, 3))[-1] == f"AUTH {mech} for mallory: {REJECTED}", t.transcript()


def test_swaks_sink_users_from_ini_checks_every_configured_user(tap, tmp_path):
    t = tap(["--decode-auth", "-c", users_ini(tmp_path)])
    rc, out, _ = swaks_auth(t, "PLAIN", "bob", "pw")
    assert rc == 0, out
    assert hashes(ended(t, 1)) == plain_lines("bob", "pw", ACCEPTED)
    rc, out, _ = swaks_auth(t, "LOGIN", "bob", PASSWORD)  # alice's password is not bob's
    assert rc == SWAKS_AUTH_FAILED, out
    assert hashes(ended(t, 2)) == login_lines("bob", PASSWORD, REJECTED)


# --------------------------------------------------------------------------- swaks & aiosmtpd


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_swaks_aiosmtpd_good_and_bad_password(tap, auth_server, mech):
    t = tap(["--decode-auth", "-u", auth_server.hostport])
    rc, out, err = swaks_auth(t, mech, USER, PASSWORD)
    assert rc == 0, f"{out}\n{err}"
    assert len(auth_server.wait_for_messages(1)) == 1
    good = hashes(ended(t, 1))
    rc, out, err = swaks_auth(t, mech, USER, WRONG)
    assert rc == SWAKS_AUTH_FAILED, f"{out}\n{err}"
    bad = hashes(ended(t, 2))
    if mech == "PLAIN":
        assert good == plain_lines(USER, PASSWORD, ACCEPTED), t.transcript()
        assert bad == plain_lines(USER, WRONG, REJECTED), t.transcript()
    else:
        # The prompt lines are checked in test_decoded_text_is_escaped_once.
        assert [h for h in good if "prompt" not in h] == [
            "AUTH LOGIN (no initial response)", f'AUTH LOGIN user="{USER}"',
            f'AUTH LOGIN password="{PASSWORD}"', f"AUTH LOGIN for {USER}: {ACCEPTED}"], t.transcript()
        assert [h for h in bad if "prompt" not in h][-2:] == [
            f'AUTH LOGIN password="{WRONG}"', f"AUTH LOGIN for {USER}: {REJECTED}"], t.transcript()


def test_decoded_text_is_escaped_once(tap, auth_server):
    """auth.c escapes non-printable bytes as \\xNN (auth.h: "Texts are ... printable
    (non-printable bytes escaped as \\xNN)"); the transcript must show that text as is.
    aiosmtpd's LOGIN prompts are "User Name\\0" and "Password\\0"; the PLAIN lint finding
    names "authzid\\0authcid\\0password"."""
    t = tap(["--decode-auth", "-u", auth_server.hostport])
    rc, out, err = swaks_auth(t, "LOGIN", USER, PASSWORD)
    assert rc == 0, out
    assert hashes(ended(t, 1)) == login_lines(
        USER, PASSWORD, ACCEPTED, prompts=("User Name\\x00", "Password\\x00")), t.transcript()
    with RawSmtpClient("127.0.0.1", t.port) as c:
        c.reply()
        c.cmd(b"EHLO client.test")
        assert c.cmd(b"AUTH PLAIN " + b64(USER).encode())[0].startswith(b"501")
        c.cmd(b"QUIT")
    # (the client also sent AUTH without the STARTTLS smtptap offered: a lint of its own)
    assert [x for x in lints(ended(t, 2)) if x.startswith("lint: AUTH PLAIN")] == [
        "lint: AUTH PLAIN message has no NUL separator (expected authzid\\0authcid\\0password)"
    ], t.transcript()


def test_password_with_quote_and_backslash_is_quoted_once(tap):
    """auth.c quotes a value as "..." with \\" and \\\\ inside; the "##" line must be
    that text, so that the quoted password can be read back unambiguously."""
    t = tap(["--decode-auth"])
    password = 'p"w\\d'
    rc, out, _ = swaks_auth(t, "PLAIN", USER, password)
    assert rc == 0, out
    assert hashes(ended(t, 1)) == [
        'AUTH PLAIN authzid="" authcid="alice" password="p\\"w\\\\d"',
        f"AUTH PLAIN for {USER}: {ACCEPTED}"], t.transcript()


# --------------------------------------------------------------------------- curl


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_curl_login_options_sink_users(tap, tmp_path, mech):
    t = tap(["--decode-auth", "-c", users_ini(tmp_path)])
    rc, _, err, sent = curl_auth(t, tmp_path, "--user", f"{USER}:{PASSWORD}",
                                 "--login-options", f"AUTH={mech}")
    assert rc == 0, err
    assert f"AUTH {mech}" in sent, sent
    want = plain_lines(USER, PASSWORD, ACCEPTED, ir=False) if mech == "PLAIN" else \
        login_lines(USER, PASSWORD, ACCEPTED)
    assert hashes(ended(t, 1)) == want, t.transcript()

    rc, _, err, _ = curl_auth(t, tmp_path, "--user", f"{USER}:{WRONG}",
                              "--login-options", f"AUTH={mech}")
    assert rc == CURL_LOGIN_DENIED, err
    want = plain_lines(USER, WRONG, REJECTED, ir=False) if mech == "PLAIN" else \
        login_lines(USER, WRONG, REJECTED)
    assert hashes(ended(t, 2)) == want, t.transcript()


def test_curl_sasl_ir_plain(tap, tmp_path):
    t = tap(["--decode-auth"])
    rc, _, err, sent = curl_auth(t, tmp_path, "--user", f"{USER}:{PASSWORD}", "--sasl-ir",
                                 "--login-options", "AUTH=PLAIN")
    assert rc == 0, err
    assert f"AUTH PLAIN {b64(chr(0) + USER + chr(0) + PASSWORD)}" in sent, sent
    assert hashes(ended(t, 1)) == plain_lines(USER, PASSWORD, ACCEPTED), t.transcript()


def test_curl_xoauth2_sink_users(tap, tmp_path):
    t = tap(["--decode-auth", "-c", users_ini(tmp_path)])
    rc, _, err, sent = curl_auth(t, tmp_path, "--user", TOKEN_USER, "--oauth2-bearer", TOKEN,
                                 "--login-options", "AUTH=XOAUTH2")
    assert rc == 0, err
    assert "AUTH XOAUTH2" in sent, sent
    assert hashes(ended(t, 1)) == [
        "AUTH XOAUTH2 (no initial response)",
        "AUTH XOAUTH2 empty challenge (the client sends its credentials next)",
        f'AUTH XOAUTH2 user="{TOKEN_USER}" token="{TOKEN}"',
        f"AUTH XOAUTH2 for {TOKEN_USER}: {ACCEPTED}"], t.transcript()

    # A bad token: the sink's 334 JSON error challenge.  curl 7.88 gives up right there
    # (closes without the empty line), so there is no final reply and no summary line.
    rc, _, err, _ = curl_auth(t, tmp_path, "--user", TOKEN_USER, "--oauth2-bearer", BAD_TOKEN,
                              "--login-options", "AUTH=XOAUTH2")
    assert rc == CURL_LOGIN_DENIED, err
    bad = ended(t, 2)
    assert f"334 {b64(SINK_XOAUTH2_ERROR)}" in replies(bad)
    assert hashes(bad) == [
        "AUTH XOAUTH2 (no initial response)",
        "AUTH XOAUTH2 empty challenge (the client sends its credentials next)",
        f'AUTH XOAUTH2 user="{TOKEN_USER}" token="{BAD_TOKEN}"',
        f"AUTH XOAUTH2 error challenge {SINK_XOAUTH2_ERROR}"], t.transcript()


def test_curl_oauthbearer_aiosmtpd(tap, tmp_path, auth_server):
    """The sink does not offer OAUTHBEARER (curl then falls back to XOAUTH2 there), so
    OAUTHBEARER goes to aiosmtpd with an RFC 7628 hook."""
    t = tap(["--decode-auth", "-u", auth_server.hostport])
    rc, _, err, sent = curl_auth(t, tmp_path, "--user", USER, "--oauth2-bearer", TOKEN,
                                 "--login-options", "AUTH=OAUTHBEARER")
    assert rc == 0, err
    assert "AUTH OAUTHBEARER" in sent, sent
    fields = f'user="{USER}" host="{t.host}" port="{t.port}"'
    assert hashes(ended(t, 1)) == [
        "AUTH OAUTHBEARER (no initial response)",
        "AUTH OAUTHBEARER empty challenge (the client sends its credentials next)",
        f'AUTH OAUTHBEARER {fields} token="{TOKEN}"',
        f"AUTH OAUTHBEARER for {USER}: {ACCEPTED}"], t.transcript()

    rc, _, err, sent = curl_auth(t, tmp_path, "--user", USER, "--oauth2-bearer", BAD_TOKEN,
                                 "--login-options", "AUTH=OAUTHBEARER")
    assert rc == CURL_LOGIN_DENIED, err
    assert "AQ==" in sent, f"curl should acknowledge the error challenge with ^A: {sent}"
    assert hashes(ended(t, 2)) == [
        "AUTH OAUTHBEARER (no initial response)",
        "AUTH OAUTHBEARER empty challenge (the client sends its credentials next)",
        f'AUTH OAUTHBEARER {fields} token="{BAD_TOKEN}"',
        f"AUTH OAUTHBEARER error challenge {OAUTHBEARER_ERROR}",
        "AUTH OAUTHBEARER ^A acknowledging the error",
        f"AUTH OAUTHBEARER for {USER}: {REJECTED}"], t.transcript()


# --------------------------------------------------------------------------- smtplib


def test_smtplib_login_picks_cram_md5_from_the_sink(tap, tmp_path):
    t = tap(["--decode-auth", "-c", users_ini(tmp_path)])
    with smtp_client(t) as s:
        code, _ = s.login(USER, PASSWORD)
        assert code == 235
        s.sendmail(FROM, [TO], harness.make_message("smtplib login"))
        s.quit()
    lines = ended(t, 1)
    (challenge,) = challenges_in(lines)
    assert hashes(lines) == cram_lines(USER, PASSWORD, challenge, ACCEPTED), t.transcript()


def test_smtplib_login_wrong_password_tries_every_mechanism(tap, tmp_path):
    t = tap(["--decode-auth", "-c", users_ini(tmp_path)])
    with smtp_client(t) as s:
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            s.login(USER, WRONG)
        assert e.value.smtp_code == 535
        s.quit()
    lines = ended(t, 1)
    (challenge,) = challenges_in(lines)[:1]
    # smtplib: CRAM-MD5, then PLAIN and LOGIN with initial responses.
    assert hashes(lines) == (cram_lines(USER, WRONG, challenge, REJECTED)
                             + plain_lines(USER, WRONG, REJECTED)
                             + login_lines(USER, WRONG, REJECTED, ir=True)), t.transcript()


@pytest.mark.parametrize("mech,ir", [("PLAIN", True), ("PLAIN", False), ("LOGIN", True),
                                     ("LOGIN", False), ("CRAM-MD5", True)])
def test_smtplib_forced_mechanism(tap, tmp_path, mech, ir):
    t = tap(["--decode-auth", "-c", users_ini(tmp_path)])
    for sid, password, outcome in ((1, PASSWORD, ACCEPTED), (2, WRONG, REJECTED)):
        with smtp_client(t) as s:
            s.user, s.password = USER, password
            method = getattr(s, "auth_" + mech.lower().replace("-", "_"))
            if outcome == ACCEPTED:
                code, _ = s.auth(mech, method, initial_response_ok=ir)
                assert code == 235
            else:
                with pytest.raises(smtplib.SMTPAuthenticationError):
                    s.auth(mech, method, initial_response_ok=ir)
            s.quit()
        lines = ended(t, sid)
        if mech == "PLAIN":
            want = plain_lines(USER, password, outcome, ir=ir)
        elif mech == "LOGIN":
            want = login_lines(USER, password, outcome, ir=ir)
        else:
            want = cram_lines(USER, password, challenges_in(lines)[0], outcome)
        assert hashes(lines) == want, t.transcript()


def test_smtplib_xoauth2_bad_token_error_challenge_then_535(tap, tmp_path):
    t = tap(["--decode-auth", "-c", users_ini(tmp_path)])
    with smtp_client(t) as s:
        code, _ = s.auth("XOAUTH2", xoauth2(TOKEN_USER, TOKEN))
        assert code == 235
        s.quit()
    assert hashes(ended(t, 1)) == [f'AUTH XOAUTH2 user="{TOKEN_USER}" token="{TOKEN}"',
                                   f"AUTH XOAUTH2 for {TOKEN_USER}: {ACCEPTED}"], t.transcript()
    acks = []
    with smtp_client(t) as s:
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            s.auth("XOAUTH2", xoauth2(TOKEN_USER, BAD_TOKEN, acks))
        assert e.value.smtp_code == 535
        assert acks == [SINK_XOAUTH2_ERROR.encode()]
        assert "" in s.sent_lines  # the empty line that acknowledges the error
        s.quit()
    lines = ended(t, 2)
    assert hashes(lines) == [
        f'AUTH XOAUTH2 user="{TOKEN_USER}" token="{BAD_TOKEN}"',
        f"AUTH XOAUTH2 error challenge {SINK_XOAUTH2_ERROR}",
        "AUTH XOAUTH2 empty response acknowledging the error",
        f"AUTH XOAUTH2 for {TOKEN_USER}: {REJECTED}"], t.transcript()
    assert replies(lines)[-2:] == ["535 5.7.8 Authentication credentials invalid", "221 2.0.0 Bye"]


def test_smtplib_login_aiosmtpd(tap, auth_server):
    t = tap(["--decode-auth", "-u", auth_server.hostport])
    with smtp_client(t) as s:
        s.login(USER, PASSWORD)  # aiosmtpd offers LOGIN PLAIN: smtplib picks PLAIN
        s.sendmail(FROM, [TO], harness.make_message("smtplib aiosmtpd"))
        s.quit()
    assert hashes(ended(t, 1)) == plain_lines(USER, PASSWORD, ACCEPTED), t.transcript()
    assert len(auth_server.wait_for_messages(1)) == 1


# --------------------------------------------------------------------------- redaction


LENGTH_TOLD = re.compile(r"<redacted \d+ bytes>")


def check_redacted(tap, cap: Path, nsessions: int, secrets: Sequence[str]):
    """Stops TAP, then: no secret in stderr nor in any capture file, "<redacted" in both and
    never with a length (a password's length is a clue to it), one capture file per session.
    Returns (stderr, {session: capture text})."""
    assert secrets, "no secrets collected: the test would prove nothing"
    tap.stop()
    err = tap.transcript()
    files = capture_files(cap)
    assert sorted(files) == list(range(1, nsessions + 1)), sorted(files)
    assert_no_secret("smtptap stderr", err, secrets)
    assert "<redacted>" in err
    assert not LENGTH_TOLD.search(err), LENGTH_TOLD.search(err).group(0)
    for sid, text in files.items():
        assert_no_secret(f"capture file of session {sid}", text, secrets)
    assert any("<redacted>" in text for text in files.values())
    # every file of every format, as bytes: jsonl, pcap (the wire bytes), eml
    for p in sorted(cap.iterdir()):
        data = p.read_bytes().decode("latin-1")
        assert_no_secret(f"capture file {p.name}", data, secrets)
        assert not LENGTH_TOLD.search(data), f"{p.name}: {LENGTH_TOLD.search(data).group(0)}"
    return err, files


def test_decode_and_redact_sink_every_client(tap, tmp_path):
    cap = tmp_path / "cap"
    t = tap(["--decode-auth", "--redact", "-d", str(cap), "--format", "text,jsonl,pcap,eml",
             "-c", users_ini(tmp_path)])
    secrets = [PASSWORD, WRONG, TOKEN, BAD_TOKEN, b64(PASSWORD), b64(WRONG),
               b64(f"\0{USER}\0{PASSWORD}"), b64(f"\0{USER}\0{WRONG}"),
               b64(f"user={TOKEN_USER}\x01auth=Bearer {TOKEN}\x01\x01"),
               b64(f"user={TOKEN_USER}\x01auth=Bearer {BAD_TOKEN}\x01\x01")]
    expect = {}  # session -> its redacted "##" lines

    # 1-3 swaks PLAIN (good), LOGIN (bad), CRAM-MD5 (good)
    for sid, (mech, pw) in enumerate([("PLAIN", PASSWORD), ("LOGIN", WRONG),
                                      ("CRAM-MD5", PASSWORD)], 1):
        rc, out, err = swaks_auth(t, mech, USER, pw)
        assert rc == (0 if pw == PASSWORD else SWAKS_AUTH_FAILED), out
        secrets += secret_forms(harness.swaks_commands(out))
        lines = ended(t, sid)
        outcome = ACCEPTED if pw == PASSWORD else REJECTED
        if mech == "PLAIN":
            assert "AUTH PLAIN <redacted>" in commands(lines)
            expect[sid] = [f'AUTH PLAIN authzid="" authcid="{USER}" password=<redacted>',
                           f"AUTH PLAIN for {USER}: {outcome}"]
        elif mech == "LOGIN":
            assert commands(lines)[1:4] == ["AUTH LOGIN", b64(USER), "<redacted>"]
            expect[sid] = ["AUTH LOGIN (no initial response)",
                           'AUTH LOGIN prompt "Username:" (next line: the user name)',
                           f'AUTH LOGIN user="{USER}"',
                           'AUTH LOGIN prompt "Password:" (next line: the password)',
                           "AUTH LOGIN password=<redacted>",
                           f"AUTH LOGIN for {USER}: {outcome}"]
        else:
            (challenge,) = challenges_in(lines)
            secrets.append(cram_digest(PASSWORD, challenge))
            secrets.append(b64(f"{USER} {cram_digest(PASSWORD, challenge)}"))
            expect[sid] = ["AUTH CRAM-MD5 (no initial response)",
                           f'AUTH CRAM-MD5 challenge "{challenge}"',
                           f'AUTH CRAM-MD5 user="{USER}" digest=<redacted digest>',
                           f"AUTH CRAM-MD5 for {USER}: {outcome}"]
        assert hashes(lines) == expect[sid], t.transcript()

    # 4 curl XOAUTH2 (good), 5 curl PLAIN with SASL-IR (good)
    rc, _, err, sent = curl_auth(t, tmp_path, "--user", TOKEN_USER, "--oauth2-bearer", TOKEN,
                                 "--login-options", "AUTH=XOAUTH2")
    assert rc == 0, err
    secrets += secret_forms(sent)
    blob = f"user={TOKEN_USER}\x01auth=Bearer {TOKEN}\x01\x01"
    assert b64(blob) in sent, sent
    lines = ended(t, 4)
    assert commands(lines)[1:3] == ["AUTH XOAUTH2", "<redacted>"]
    assert hashes(lines)[2:] == [f'AUTH XOAUTH2 user="{TOKEN_USER}" token=<redacted token>',
                                 f"AUTH XOAUTH2 for {TOKEN_USER}: {ACCEPTED}"], t.transcript()
    rc, _, err, sent = curl_auth(t, tmp_path, "--user", f"{USER}:{PASSWORD}", "--sasl-ir",
                                 "--login-options", "AUTH=PLAIN")
    assert rc == 0, err
    secrets += secret_forms(sent)
    assert hashes(ended(t, 5)) == expect[1], t.transcript()

    # 6 smtplib XOAUTH2 with a bad token (error challenge, empty line, 535)
    with smtp_client(t) as s:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.auth("XOAUTH2", xoauth2(TOKEN_USER, BAD_TOKEN))
        s.quit()
        secrets += secret_forms(s.sent_lines)
    assert hashes(ended(t, 6)) == [
        f'AUTH XOAUTH2 user="{TOKEN_USER}" token=<redacted token>',
        f"AUTH XOAUTH2 error challenge {SINK_XOAUTH2_ERROR}",
        "AUTH XOAUTH2 empty response acknowledging the error",
        f"AUTH XOAUTH2 for {TOKEN_USER}: {REJECTED}"], t.transcript()

    # 7 smtplib login(): CRAM-MD5, digest from the challenge it got
    with smtp_client(t) as s:
        s.login(USER, PASSWORD)
        s.quit()
        secrets += secret_forms(s.sent_lines)
    lines = ended(t, 7)
    (challenge,) = challenges_in(lines)
    secrets.append(cram_digest(PASSWORD, challenge))
    assert hashes(lines)[2] == f'AUTH CRAM-MD5 user="{USER}" digest=<redacted digest>'

    err, files = check_redacted(t, cap, 7, secrets)
    kinds = {p.suffix for p in cap.iterdir()}
    assert kinds == {".txt", ".jsonl", ".pcap", ".eml"}, kinds
    # the pcap has the AUTH lines, masked: not left out
    assert any(b"<redacted>" in p.read_bytes() for p in cap.glob("*.pcap"))
    # User names stay visible, in the live transcript and in each session's capture file.
    for where, text in [("stderr", err)] + [(f"capture {k}", v) for k, v in files.items()]:
        assert re.search(rf"## AUTH \S+ for ({USER}|{TOKEN_USER}): ", text), f"{where}:\n{text}"
    for sid, want in expect.items():
        assert hashes(harness.parse_transcript(files[sid])) == want, files[sid]
    assert f'authcid="{USER}"' in files[1] and f'user="{TOKEN_USER}"' in files[4]


def test_decode_and_redact_aiosmtpd_oauthbearer_and_login(tap, tmp_path, auth_server):
    cap = tmp_path / "cap"
    t = tap(["--decode-auth", "--redact", "-d", str(cap), "-u", auth_server.hostport])
    secrets = [PASSWORD, TOKEN, BAD_TOKEN, b64(PASSWORD)]
    rc, _, err, sent = curl_auth(t, tmp_path, "--user", USER, "--oauth2-bearer", TOKEN,
                                 "--login-options", "AUTH=OAUTHBEARER")
    assert rc == 0, err
    secrets += secret_forms(sent)
    fields = f'user="{USER}" host="{t.host}" port="{t.port}"'
    assert hashes(ended(t, 1))[2:] == [
        f"AUTH OAUTHBEARER {fields} token=<redacted token>",
        f"AUTH OAUTHBEARER for {USER}: {ACCEPTED}"], t.transcript()
    rc, _, err, sent = curl_auth(t, tmp_path, "--user", USER, "--oauth2-bearer", BAD_TOKEN,
                                 "--login-options", "AUTH=OAUTHBEARER")
    assert rc == CURL_LOGIN_DENIED, err
    secrets += [p for p in secret_forms(sent) if p != "AQ=="]  # ^A: no secret
    rc, out, _ = swaks_auth(t, "LOGIN", USER, PASSWORD)
    assert rc == 0, out
    secrets += secret_forms(harness.swaks_commands(out))
    ended(t, 3)
    err, files = check_redacted(t, cap, 3, secrets)
    assert f'AUTH LOGIN user="{USER}"' in files[3]
    assert f"AUTH OAUTHBEARER for {USER}: {REJECTED}" in files[2]


@pytest.mark.parametrize("size", [5000, 20000, 70000])
def test_redact_hides_over_long_auth_lines(tap, tmp_path, size):
    """An AUTH line longer than RFC 4954's 12288 octets, or than smtptap's line bound
    (relayed in pieces): none of it may show when redacting."""
    cap = tmp_path / "cap"
    # With [sink] users the long password is wrong, so every size ends in a 5xx.
    t = tap(["--decode-auth", "--redact", "-d", str(cap), "-c", users_ini(tmp_path)])
    password = ("L0ngS3cret-" * (size // 11 + 1))[:size]
    blob = b64(f"\0{USER}\0{password}")
    with RawSmtpClient("127.0.0.1", t.port) as c:
        c.reply()
        c.cmd(b"EHLO client.test")
        assert c.cmd(f"AUTH PLAIN {blob}".encode())[0][:1] == b"5"
        assert c.cmd(b"AUTH PLAIN") == [b"334 "]
        assert c.cmd(blob.encode())[0][:1] == b"5"
        assert c.cmd(b"NOOP") == [b"250 2.0.0 Ok"]
        c.cmd(b"QUIT")
    lines = ended(t, 1)
    assert lines[-1].text.startswith("session ended")
    pieces = [blob[i:i + 40] for i in range(40, len(blob) - 40, 997)]
    check_redacted(t, cap, 1, [password[:40], *pieces])


def test_redact_without_decode_masks_raw_lines_and_adds_no_hash_lines(tap, tmp_path):
    cap = tmp_path / "cap"
    t = tap(["--redact", "-d", str(cap), "-c", users_ini(tmp_path)])
    secrets = [PASSWORD, b64(PASSWORD), b64(f"\0{USER}\0{PASSWORD}")]
    rc, out, _ = swaks_auth(t, "PLAIN")
    assert rc == 0, out
    secrets += secret_forms(harness.swaks_commands(out))
    blob = b64(f"\0{USER}\0{PASSWORD}")
    assert "AUTH PLAIN <redacted>" in commands(ended(t, 1))
    rc, out, _ = swaks_auth(t, "LOGIN")
    assert rc == 0, out
    secrets += secret_forms(harness.swaks_commands(out))
    lines = ended(t, 2)
    assert commands(lines)[1:4] == ["AUTH LOGIN", b64(USER), "<redacted>"]
    rc, out, _ = swaks_auth(t, "CRAM-MD5")
    assert rc == 0, out
    secrets += secret_forms(harness.swaks_commands(out))
    ended(t, 3)
    err, files = check_redacted(t, cap, 3, secrets)
    for where, text in [("stderr", err)] + list(files.items()):
        assert not hashes(harness.parse_transcript(text)), f"'##' lines without --decode-auth in {where}"


def test_no_flags_shows_auth_lines_as_sent(tap, tmp_path):
    cap = tmp_path / "cap"
    t = tap(["-d", str(cap)])
    rc, out, _ = swaks_auth(t, "PLAIN")
    assert rc == 0, out
    rc, out2, _ = swaks_auth(t, "LOGIN")
    assert rc == 0, out2
    sent = [c for c in harness.swaks_commands(out) if c.startswith("AUTH")] + \
        harness.swaks_commands(out2)[1:4]
    assert sent[0] == f"AUTH PLAIN {b64(chr(0) + USER + chr(0) + PASSWORD)}", sent
    assert sent[1:] == ["AUTH LOGIN", b64(USER), b64(PASSWORD)], sent
    shown = [c for sid in (1, 2) for c in commands(ended(t, sid)) if c in sent]
    assert shown == sent, t.transcript()
    t.stop()
    for where, text in [("stderr", t.transcript())] + list(capture_files(cap).items()):
        lines = harness.parse_transcript(text)
        assert not hashes(lines), f"'##' lines without --decode-auth in {where}:\n{text}"
        assert "<redacted" not in text, f"redaction without --redact in {where}"
    assert b64(PASSWORD) in capture_files(cap)[2]


def test_ini_capture_keys_turn_on_decoding_and_redaction(tap, tmp_path):
    t = tap(["-c", users_ini(tmp_path, "[capture]\ndecode_auth = yes\n")])
    rc, out, _ = swaks_auth(t, "PLAIN")
    assert rc == 0, out
    assert hashes(ended(t, 1)) == plain_lines(USER, PASSWORD, ACCEPTED), t.transcript()
    t.stop()
    (tmp_path / "two").mkdir()
    t = tap(["-c", users_ini(tmp_path / "two", "[capture]\ndecode_auth = yes\nredact = yes\n")])
    rc, out, _ = swaks_auth(t, "PLAIN")
    assert rc == 0, out
    lines = ended(t, 1)
    assert hashes(lines) == [
        f'AUTH PLAIN authzid="" authcid="{USER}" password=<redacted>',
        f"AUTH PLAIN for {USER}: {ACCEPTED}"], t.transcript()
    assert_no_secret("stderr", t.transcript(), secret_forms(harness.swaks_commands(out)) + [PASSWORD])


# --------------------------------------------------------------------------- broken input


def test_broken_sasl_input_to_the_sink_is_linted_and_smtptap_goes_on(tap, tmp_path):
    t = tap(["--decode-auth", "-c", users_ini(tmp_path)])
    with RawSmtpClient("127.0.0.1", t.port) as c:
        assert c.code() == 220
        c.cmd(b"EHLO client.test")
        assert c.cmd(b"AUTH PLAIN !!!notbase64") == [b"501 5.5.2 Cannot decode response"]
        assert c.cmd(b"AUTH PLAIN") == [b"334 "]
        assert c.cmd(b64(USER).encode()) == [b"501 5.5.2 Malformed PLAIN response"]
        assert c.cmd(b"AUTH LOGIN") == [b"334 VXNlcm5hbWU6"]
        assert c.cmd(b"YWxpY2U") == [b"501 5.5.2 Cannot decode response"]  # 7 characters
        assert c.cmd(b"AUTH LOGIN") == [b"334 VXNlcm5hbWU6"]
        assert c.cmd(b64(USER).encode()) == [b"334 UGFzc3dvcmQ6"]
        assert c.cmd(b"*") == [b"501 5.7.0 Authentication cancelled"]
        assert c.cmd(b"AUTH CRAM-MD5")[0].startswith(b"334 ")
        assert c.cmd(b64(f"{USER} not-a-digest").encode()) == [
            b"535 5.7.8 Authentication credentials invalid"]
        assert c.cmd(b"NOOP") == [b"250 2.0.0 Ok"]
        assert c.cmd(b"QUIT") == [b"221 2.0.0 Bye"]
    lines = ended(t, 1)
    h = hashes(lines)
    assert h[:2] == ["AUTH PLAIN <invalid base64, 12 bytes>", "AUTH PLAIN: syntax error (501 5.5.2)"], h
    assert h[2:6] == ["AUTH PLAIN (no initial response)",
                      "AUTH PLAIN empty challenge (the client sends its credentials next)",
                      f'AUTH PLAIN message="{USER}"', "AUTH PLAIN: syntax error (501 5.5.2)"], h
    assert h[6:10] == ["AUTH LOGIN (no initial response)",
                       'AUTH LOGIN prompt "Username:" (next line: the user name)',
                       "AUTH LOGIN <invalid base64, 7 bytes>", "AUTH LOGIN: syntax error (501 5.5.2)"], h
    assert h[10:16] == ["AUTH LOGIN (no initial response)",
                        'AUTH LOGIN prompt "Username:" (next line: the user name)',
                        f'AUTH LOGIN user="{USER}"',
                        'AUTH LOGIN prompt "Password:" (next line: the password)',
                        "AUTH LOGIN cancelled by the client (*)",
                        f"AUTH LOGIN for {USER}: cancelled (501 5.7.0)"], h
    assert h[16] == "AUTH CRAM-MD5 (no initial response)", h
    assert h[17].startswith('AUTH CRAM-MD5 challenge "<'), h
    assert h[18:] == [f'AUTH CRAM-MD5 user="{USER}" digest="not-a-digest"',
                      f"AUTH CRAM-MD5 for {USER}: {REJECTED}"], h
    found = lints(lines)
    assert "lint: AUTH PLAIN initial response is not valid base64 (bad character at offset 0)" in found
    assert any(f.startswith("lint: AUTH PLAIN message has no NUL separator") for f in found), found
    assert "lint: AUTH LOGIN response is not valid base64 (its length is not a multiple of 4)" in found
    assert "lint: AUTH CRAM-MD5 digest is not 32 hex digits" in found
    # The lines went through as sent.
    assert commands(lines)[1:4] == ["AUTH PLAIN !!!notbase64", "AUTH PLAIN", b64(USER)]

    # smtptap still serves: a real client authenticates in the next session.
    rc, out, _ = swaks_auth(t, "PLAIN")
    assert rc == 0, out
    assert hashes(ended(t, 2)) == plain_lines(USER, PASSWORD, ACCEPTED)


def test_broken_sasl_input_is_relayed_byte_for_byte_even_when_redacting(tap, tmp_path):
    cap = tmp_path / "cap"
    plain_blob = b64(f"\0{USER}\0{PASSWORD}").encode()
    script = [b"EHLO client.test\r\n",
              b"AUTH PLAIN !!!notbase64\r\n",
              b"AUTH PLAIN\r\n", b64(USER).encode() + b"\r\n",          # no NUL at all
              b"AUTH PLAIN\r\n", b64(f"\0{USER}").encode() + b"\r\n",   # one NUL
              b"AUTH PLAIN\r\n", b"YWx\xffY2U=\r\n",                    # a non-ASCII byte
              b"AUTH LOGIN\r\n", b"*\r\n",
              b"AUTH PLAIN " + plain_blob + b"\r\n",
              b"QUIT\r\n"]
    with RecordingAuthServer() as srv:
        t = tap(["--decode-auth", "--redact", "-d", str(cap), "-u", srv.hostport])
        with RawSmtpClient("127.0.0.1", t.port) as c:
            got = [c.reply()]
            for line in script:
                c.send(line)
                got.append(c.reply())
        srv.wait_closed(1)
        assert bytes(srv.received[1]) == b"".join(script)
        assert got[-1] == [b"221 2.0.0 Bye"], got
        lines = ended(t, 1)
        h = hashes(lines)
        assert h[:2] == ["AUTH PLAIN <invalid base64>", "AUTH PLAIN: rejected (535 5.7.8)"], h
        assert h.count("AUTH PLAIN message=<redacted>") == 2, h
        assert "AUTH LOGIN cancelled by the client (*)" in h, h
        assert "AUTH LOGIN: cancelled (501 5.7.0)" in h, h
        assert f'AUTH PLAIN authzid="" authcid="{USER}" password=<redacted>' in h, h
        found = lints(lines)
        assert "lint: AUTH PLAIN initial response is not valid base64 (bad character at offset 0)" in found
        assert any("only one NUL separator" in f for f in found), found
        assert "lint: AUTH PLAIN response is not valid base64 (bad character at offset 3)" in found, found
        cmds = commands(lines)
        assert cmds.count("AUTH PLAIN <redacted>") == 2, cmds
        assert "*" in cmds
        # The next session through the same smtptap is decoded from scratch.
        with RawSmtpClient("127.0.0.1", t.port) as c:
            c.reply()
            c.cmd(b"EHLO client.test")
            assert c.cmd(b"AUTH PLAIN " + plain_blob)[0].startswith(b"535")
            c.cmd(b"QUIT")
        assert hashes(ended(t, 2)) == [
            f'AUTH PLAIN authzid="" authcid="{USER}" password=<redacted>',
            f"AUTH PLAIN for {USER}: {REJECTED}"], t.transcript()
        check_redacted(t, cap, 2, [PASSWORD, plain_blob.decode(), b64(PASSWORD)])
