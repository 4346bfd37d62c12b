"""TLS modes on both legs, combined, plus the no-prefix upstream and response injection.

1. The matrix: client {plain, STARTTLS, implicit TLS} x upstream {plain:, starttls:, tls:}.
   Python smtplib is the client (verifying smtptap's leaf against the CA printed by
   `--print-ca`, host name checked), a real aiosmtpd (certificate from a throw-away test CA,
   verified by smtptap through `--upstream-ca`) is the server.  Every combination delivers
   the message byte for byte, and the transcript tells the truth about each leg:
   ` ~>` / `<~ ` exactly while the client is in TLS, one `== client TLS:` line iff the client
   used TLS, one `== upstream TLS: ..., verified` line iff the upstream did.
2. The no-prefix upstream (`-u localhost:P`): STARTTLS towards it when the server offers it
   (smtptap upgrades the upstream leg), plain text with a `**` warning when it does not, and
   no upgrade by smtptap under `--client-starttls passthrough` (the client's own STARTTLS
   goes to the server and the rest is not visible).
3. Response injection (server side): the server sends its 220 to STARTTLS and more bytes in
   the same write (harness.AiosmtpdServer(inject_after_starttls=...)).  Those bytes were
   sent before TLS and must never be taken as part of the TLS session: smtptap discards
   them and says so, both when it upgrades the upstream itself (`starttls:`) and when it
   passes the client's STARTTLS through.

The client-side counterpart of 3 (STARTTLS\\r\\nRSET\\r\\n in one write with
`--client-starttls offer`) is test_starttls.py::test_offer_discards_bytes_after_starttls.
"""

from __future__ import annotations

import hashlib
import re
import smtplib
import socket
import ssl
from typing import List, Optional

import pytest

import harness
from harness import RawSmtpClient, make_message

FROM = "alice@example.org"
RCPTS = ["bob@example.net", "carol@example.net"]
TEST_CA_CN = "smtptap integration test CA"   # harness.CertAuthority's default name
NAME = "localhost"                           # the name the client asks smtptap for (SNI)
INJECTED = b"250 injected\r\n"

CLIENT_MODES = ["plain", "starttls", "implicit"]
UPSTREAM_MODES = ["plain", "starttls", "implicit"]

UPGRADES = "smtptap upgrades the upstream leg: STARTTLS"
NOT_VISIBLE = "not visible"
LOCAL_SUFFIX = "  [smtptap]"   # a line smtptap wrote itself (not the client's / server's)


smtptap_ca = harness.smtptap_ca


@pytest.fixture
def test_ca(tmp_path):
    return harness.CertAuthority(str(tmp_path))


# --------------------------------------------------------------------------- clients


class SNISMTP(smtplib.SMTP):
    """smtplib.SMTP that connects to 127.0.0.1 but uses the host name given to the
    constructor for STARTTLS (SNI and certificate check), like curl's --resolve."""

    def _get_socket(self, host, port, timeout):
        return socket.create_connection(("127.0.0.1", port), timeout)


class SNISMTP_SSL(smtplib.SMTP_SSL):
    """smtplib.SMTP_SSL connecting to 127.0.0.1, SNI / certificate check for the host name
    given to the constructor."""

    def _get_socket(self, host, port, timeout):
        sock = socket.create_connection(("127.0.0.1", port), timeout)
        return self.context.wrap_socket(sock, server_hostname=self._host)


def verifying_context(ca_pem: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca_pem)   # only this CA; CERT_REQUIRED
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    return ctx


def smtplib_deliver(mode: str, port: int, ca_pem: Optional[str], message: bytes,
                    rcpts=RCPTS, *, expect_starttls_offer: bool = True):
    """Deliver MESSAGE with smtplib in client MODE (plain / starttls / implicit) to
    127.0.0.1:PORT under the name NAME.  Returns (the reply to the end of DATA, whether
    the socket was TLS at the end, the EHLO features the transaction ran under)."""
    timeout = 8
    if mode == "implicit":
        s = SNISMTP_SSL(NAME, port, local_hostname="client.test", timeout=timeout,
                        context=verifying_context(ca_pem))
    else:
        s = SNISMTP(NAME, port, local_hostname="client.test", timeout=timeout)
    with s:
        code, _ = s.ehlo()
        assert code == 250, code
        if mode == "starttls":
            if expect_starttls_offer:
                assert s.has_extn("starttls"), s.esmtp_features
            code, text = s.starttls(context=verifying_context(ca_pem))
            assert code == 220, (code, text)
            code, _ = s.ehlo()
            assert code == 250, code
            assert not s.has_extn("starttls"), f"STARTTLS offered inside TLS: {s.esmtp_features}"
        features = dict(s.esmtp_features)
        tls = isinstance(s.sock, ssl.SSLSocket)
        code, text = s.mail(FROM)
        assert code == 250, (code, text)
        for r in rcpts:
            code, text = s.rcpt(r)
            assert code == 250, (r, code, text)
        end = s.data(message)
        s.quit()
    return end, tls, features


# --------------------------------------------------------------------------- servers


def upstream_server(ca: harness.CertAuthority, mode: str, **kw) -> harness.AiosmtpdServer:
    """aiosmtpd for upstream MODE: no TLS, STARTTLS (tls_context) or implicit (ssl_context),
    with a certificate for localhost from CA."""
    if mode == "plain":
        return harness.AiosmtpdServer(**kw)
    ctx = ca.server_context([NAME])
    if mode == "starttls":
        return harness.AiosmtpdServer(tls_context=ctx, **kw)
    return harness.AiosmtpdServer(ssl_context=ctx, **kw)


def upstream_args(mode: str, port: int, ca: harness.CertAuthority) -> List[str]:
    if mode == "plain":
        return ["-u", f"plain:127.0.0.1:{port}"]
    prefix = {"starttls": "starttls", "implicit": "tls"}[mode]
    return ["-u", f"{prefix}:{NAME}:{port}", "--upstream-ca", ca.cert_path]


# --------------------------------------------------------------------------- transcript


def only_session(t) -> int:
    t.wait_session_end(timeout=8)
    sids = t.sessions()
    assert len(sids) == 1, f"expected one session, transcript:\n{t.transcript()}"
    return sids[0]


def info(lines, prefix):
    return [l for l in lines if l.marker == "==" and l.text.startswith(prefix)]


def is_local(l: harness.TLine) -> bool:
    return l.text.endswith(LOCAL_SUFFIX)


def check_received(srv, message, rcpts=RCPTS):
    got = srv.wait_for_messages(1, timeout=8)
    assert len(got) == 1, got
    m = got[0]
    assert (m.mail_from, m.rcpt_tos) == (FROM, list(rcpts)), m
    assert m.content == message, (m.content, message)


def check_message_summary(t, sid, message):
    digest = hashlib.sha256(message).hexdigest()
    t.wait_for(rf"^#{sid} \+\S+ == message 1: {len(message)} bytes, \d+ lines, "
               rf"sha256 {digest}$", timeout=2)


def check_client_leg(t, sid, mode):
    """The markers of the client's lines and replies, and the `client TLS` facts."""
    lines = t.lines(sid)
    tls = [i for i, l in enumerate(lines) if l.marker == "==" and l.text.startswith("client TLS:")]
    if mode == "plain":
        assert tls == [], f"client TLS line for a plain client:\n{t.transcript()}"
        tlsmarked = [l.raw for l in lines if l.marker in (" ~>", "<~ ")]
        assert not tlsmarked, f"TLS markers for a plain client: {tlsmarked}"
        cmds = [l for l in lines if l.is_command and not is_local(l)]
        assert cmds and all(l.marker == " ->" for l in cmds), [l.raw for l in cmds]
        return
    assert len(tls) == 1, f"expected one 'client TLS:' line in session {sid}:\n{t.transcript()}"
    tl = lines[tls[0]]
    assert re.match(r"client TLS: TLSv1\.3 TLS_\S+", tl.text), tl.raw
    assert re.search(rf"\bSNI {re.escape(NAME)}(,|$)", tl.text), tl.raw
    before, after = lines[:tls[0]], lines[tls[0] + 1:]
    before_cmds = [l for l in before if l.is_command and not is_local(l)]
    if mode == "implicit":
        assert before_cmds == [], [l.raw for l in before_cmds]
        # Every line on an implicit-TLS client connection is inside TLS, the greeting too.
        plain = [l.raw for l in lines if l.marker in (" ->", "<- ") and not is_local(l)]
        assert not plain, f"plain-text markers on an implicit-TLS client connection: {plain}"
    else:
        assert [harness.norm_cmd(l.text).split(" ")[0] for l in before_cmds] == \
            ["EHLO", "STARTTLS"], [l.raw for l in before_cmds]
        assert all(l.marker == " ->" for l in before_cmds), [l.raw for l in before_cmds]
        before_replies = [l for l in before if l.is_reply]
        assert before_replies and all(l.marker == "<- " for l in before_replies), \
            [l.raw for l in before_replies]
    after_cmds = [l for l in after if l.is_command and not is_local(l)]
    assert after_cmds and all(l.marker == " ~>" for l in after_cmds), \
        [l.raw for l in after_cmds if l.marker != " ~>"]
    after_replies = [l for l in after if l.is_reply]
    assert after_replies and all(l.marker == "<~ " for l in after_replies), \
        [l.raw for l in after_replies if l.marker != "<~ "]


def check_upstream_leg(t, sid, mode):
    lines = t.lines(sid)
    up = info(lines, "upstream TLS:")
    upgrades = info(lines, UPGRADES)
    if mode == "plain":
        assert up == [] and upgrades == [], t.transcript()
        return
    assert len(up) == 1, f"expected one 'upstream TLS:' line:\n{t.transcript()}"
    assert re.match(rf"upstream TLS: TLSv1\.[23] .*subject CN={NAME}, "
                    rf"issuer CN={re.escape(TEST_CA_CN)}, sha256 [0-9A-F:]+, verified$",
                    up[0].text), up[0].raw
    if mode == "starttls":
        assert len(upgrades) == 1, t.transcript()
        local_starttls = [l for l in lines if l.is_command and l.text == "STARTTLS" + LOCAL_SUFFIX]
        assert len(local_starttls) == 1, t.transcript()
        assert lines.index(upgrades[0]) < lines.index(up[0]), t.transcript()
    else:
        assert upgrades == [], t.transcript()


# --------------------------------------------------------------------------- 1. the matrix


@pytest.mark.parametrize("upstream", UPSTREAM_MODES)
@pytest.mark.parametrize("client", CLIENT_MODES)
def test_mode_matrix(tap, tmp_path, test_ca, client, upstream):
    ca_dir, ca_pem = smtptap_ca(tmp_path)
    msg = make_message(f"matrix client={client} upstream={upstream}", to=RCPTS)
    with upstream_server(test_ca, upstream) as srv:
        listen = "tls:127.0.0.1:0" if client == "implicit" else "127.0.0.1:0"
        t = tap(["--ca-dir", ca_dir, "--client-starttls", "offer",
                 *upstream_args(upstream, srv.port, test_ca)], listen=listen)
        end, client_tls, _ = smtplib_deliver(client, t.port, ca_pem, msg)
        assert end == (250, b"2.0.0 OK queued as aio1"), end
        assert client_tls == (client != "plain")
        check_received(srv, msg)
        sid = only_session(t)
    check_message_summary(t, sid, msg)
    check_client_leg(t, sid, client)
    check_upstream_leg(t, sid, upstream)
    # The transaction itself, with the client leg's marker.
    mk = " ->" if client == "plain" else " ~>"
    lines = t.lines(sid)
    mails = [l for l in lines if l.is_command
             and re.fullmatch(rf"(?i)mail FROM:<{re.escape(FROM)}>( size=\d+)?", l.text)]
    assert [l.marker for l in mails] == [mk], t.transcript()
    rk = "<- " if client == "plain" else "<~ "
    queued = [l for l in lines if l.is_reply and l.text == "250 2.0.0 OK queued as aio1"]
    assert [l.marker for l in queued] == [rk], t.transcript()


# --------------------------------------------------------------------------- 2. no prefix


def test_no_prefix_upstream_offering_starttls_is_upgraded(tap, tmp_path, test_ca):
    ca_dir, ca_pem = smtptap_ca(tmp_path)
    msg = make_message("no prefix, upstream offers STARTTLS", to=RCPTS)
    with upstream_server(test_ca, "starttls") as srv, \
            harness.RecordingRelay(srv.host, srv.port) as rec:
        t = tap(["--ca-dir", ca_dir, "--client-starttls", "offer", "-u", f"{NAME}:{rec.port}",
                 "--upstream-ca", test_ca.cert_path])
        end, _, _ = smtplib_deliver("plain", t.port, ca_pem, msg)
        assert end == (250, b"2.0.0 OK queued as aio1"), end
        check_received(srv, msg)
        sid = only_session(t)
        sent = rec.to_server(1)
    # The server got EHLO and STARTTLS in clear, and nothing of the transaction.
    assert re.search(rb"(?m)^STARTTLS\r$", sent), sent[:300]
    assert b"MAIL FROM" not in sent and b"RCPT TO" not in sent, \
        f"the upstream got the transaction in plain text: {sent[:400]!r}"
    check_upstream_leg(t, sid, "starttls")
    check_client_leg(t, sid, "plain")
    check_message_summary(t, sid, msg)
    warn = [l.raw for l in t.lines(sid) if "STARTTLS" in l.text and
            (l.marker == "**" or l.text.startswith("notice:"))]
    assert not warn, f"a STARTTLS notice although the upstream leg was upgraded: {warn}"


def test_no_prefix_upstream_without_starttls_is_plain_with_a_notice(tap, tmp_path):
    ca_dir, ca_pem = smtptap_ca(tmp_path)
    msg = make_message("no prefix, upstream without STARTTLS", to=RCPTS)
    with harness.AiosmtpdServer() as srv:   # no tls_context: no STARTTLS offered
        t = tap(["--ca-dir", ca_dir, "--client-starttls", "offer", "-u", f"{NAME}:{srv.port}"])
        end, _, _ = smtplib_deliver("plain", t.port, ca_pem, msg)
        assert end == (250, b"2.0.0 OK queued as aio1"), end
        check_received(srv, msg)
        sid = only_session(t)
    lines = t.lines(sid)
    # A notice ("=="), not lint ("**"): not offering STARTTLS breaks no protocol.
    warn = [l for l in lines if l.marker == "==" and l.text.startswith("notice:") and
            "STARTTLS" in l.text]
    assert len(warn) == 1, ("no single `== notice:` line saying that the upstream does not "
                            f"offer STARTTLS:\n{t.transcript()}")
    assert not [l for l in lines if l.marker == "**"], t.transcript()
    assert re.search(r"(?i)not|no |without", warn[0].text), warn[0].raw
    check_upstream_leg(t, sid, "plain")
    check_client_leg(t, sid, "plain")
    check_message_summary(t, sid, msg)


def test_no_prefix_upstream_passthrough_is_not_upgraded_by_smtptap(tap, tmp_path, test_ca):
    ca_dir, _ = smtptap_ca(tmp_path)
    msg = make_message("no prefix, passthrough", to=RCPTS)
    with upstream_server(test_ca, "starttls") as srv, \
            harness.RecordingRelay(srv.host, srv.port) as rec:
        t = tap(["--ca-dir", ca_dir, "--client-starttls", "passthrough",
                 "-u", f"{NAME}:{rec.port}", "--upstream-ca", test_ca.cert_path])
        # The client talks TLS with the real server: it trusts the test CA, not smtptap's.
        end, client_tls, _ = smtplib_deliver("starttls", t.port, test_ca.cert_path, msg)
        assert client_tls and end == (250, b"2.0.0 OK queued as aio1"), (client_tls, end)
        check_received(srv, msg)
        sid = only_session(t)
        sent = rec.to_server(1)
    # Exactly one STARTTLS reached the server (the client's), and no transaction in clear.
    assert len(re.findall(rb"(?m)^STARTTLS\r$", sent)) == 1, sent[:300]
    assert b"MAIL FROM" not in sent, sent[:400]
    lines = t.lines(sid)
    assert not info(lines, UPGRADES), t.transcript()
    assert not info(lines, "upstream TLS:") and not info(lines, "client TLS:"), t.transcript()
    assert [l for l in lines if l.marker == "==" and NOT_VISIBLE in l.text], t.transcript()
    st = [l for l in lines if l.is_command and harness.norm_cmd(l.text) == "STARTTLS"]
    assert [l.marker for l in st] == [" ->"], t.transcript()
    hidden = [l.raw for l in lines if l.is_command and
              harness.norm_cmd(l.text).split(" ")[0] in ("MAIL", "RCPT", "DATA")]
    assert not hidden, f"decrypted transaction in a passthrough transcript: {hidden}"


# --------------------------------------------------------------------------- 3. injection


INJECT_LINT_RE = rf"server sent {len(INJECTED)} bytes after its 220\b.*\bdiscarded"


def check_injection_flagged(t, sid):
    lines = t.lines(sid)
    lint = [l for l in lines if l.marker == "**" and re.search(INJECT_LINT_RE, l.text)]
    assert len(lint) == 1, (f"no single `** ` line saying the server's {len(INJECTED)} "
                            f"bytes after its 220 were discarded:\n{t.transcript()}")
    shown = [l.raw for l in lines if l.is_reply and "injected" in l.text]
    assert not shown, f"the discarded bytes are shown as a reply to the client: {shown}"


def raw_transaction(c: RawSmtpClient, srv: harness.AiosmtpdServer, message: bytes):
    """MAIL, RCPT..., DATA, QUIT on C, each reply the exact one the server gave: a stray
    reply anywhere in the stream would shift them."""
    assert c.cmd(f"MAIL FROM:<{FROM}>".encode()) == [f"250 2.1.0 Sender <{FROM}> ok".encode()]
    for r in RCPTS:
        assert c.cmd(f"RCPT TO:<{r}>".encode()) == [f"250 2.1.5 Recipient <{r}> ok".encode()]
    assert c.cmd(b"DATA")[-1].startswith(b"354")
    body = b"".join((b"." + ln if ln.startswith(b".") else ln) + b"\r\n"
                    for ln in message[:-2].split(b"\r\n"))
    c.send(body + b".\r\n")
    assert c.reply() == [b"250 2.0.0 OK queued as aio1"]
    assert c.cmd(b"QUIT")[-1].startswith(b"221")
    rest = c.read_until_closed(timeout=5)
    assert rest == b"", f"bytes after the 221: {rest!r}"


def test_injection_after_upstream_220_discarded_when_smtptap_upgrades(tap, tmp_path, test_ca):
    ca_dir, _ = smtptap_ca(tmp_path)
    msg = make_message("server-side injection, starttls: upstream", to=RCPTS)
    with upstream_server(test_ca, "starttls", inject_after_starttls=INJECTED) as srv:
        t = tap(["--ca-dir", ca_dir, "--client-starttls", "offer",
                 *upstream_args("starttls", srv.port, test_ca)])
        with RawSmtpClient("127.0.0.1", t.port, timeout=8) as c:
            assert c.reply() == [srv.greeting.encode()]
            ehlo = c.cmd(b"EHLO client.test")
            # The one EHLO reply the client gets is the server's own (from inside TLS).
            assert ehlo[0] == b"250-" + srv.hostname.encode(), ehlo
            assert ehlo[-1].startswith(b"250 "), ehlo
            assert not any(b"injected" in l for l in ehlo), ehlo
            raw_transaction(c, srv, msg)
        check_received(srv, msg)
        sid = only_session(t)
    check_injection_flagged(t, sid)
    check_upstream_leg(t, sid, "starttls")
    check_message_summary(t, sid, msg)


@pytest.mark.parametrize("client", ["raw", "smtplib"])
def test_injection_after_upstream_220_discarded_in_passthrough(tap, tmp_path, test_ca, client):
    """The client's STARTTLS passes through to the server, whose 220 comes with 14 more
    bytes.  Relaying them would put plain-text bytes where the client expects the server's
    first TLS record (RFC 3207 s4.2 / CVE-2011-0411 class): smtptap must drop them.  The raw
    client sees it exactly (nothing after the 220, then a clean handshake); smtplib would
    drop stray bytes that arrive with the 220 in its read buffer, so it checks less."""
    ca_dir, _ = smtptap_ca(tmp_path)
    msg = make_message(f"server-side injection, passthrough, {client}", to=RCPTS)
    with upstream_server(test_ca, "starttls", inject_after_starttls=INJECTED) as srv:
        t = tap(["--ca-dir", ca_dir, "--client-starttls", "passthrough",
                 "-u", f"plain:{NAME}:{srv.port}"])
        if client == "smtplib":
            end, client_tls, _ = smtplib_deliver("starttls", t.port, test_ca.cert_path, msg)
            assert client_tls and end == (250, b"2.0.0 OK queued as aio1"), (client_tls, end)
        else:
            with RawSmtpClient("127.0.0.1", t.port, timeout=8) as c:
                assert c.reply() == [srv.greeting.encode()]
                assert b"250-STARTTLS" in c.cmd(b"EHLO client.test")
                assert c.cmd(b"STARTTLS") == [b"220 Ready to start TLS"]
                assert c.buf == b"", f"bytes after the server's 220 reached the client: {c.buf!r}"
                try:
                    c.sock = verifying_context(test_ca.cert_path).wrap_socket(
                        c.sock, server_hostname=NAME)
                except ssl.SSLError as e:
                    raise AssertionError(f"handshake with the server failed ({e}): were the "
                                         "injected bytes relayed into the TLS stream?") from None
                ehlo = c.cmd(b"EHLO client.test")
                assert ehlo[0] == b"250-" + srv.hostname.encode(), ehlo
                raw_transaction(c, srv, msg)
        check_received(srv, msg)
        sid = only_session(t)
    check_injection_flagged(t, sid)
    lines = t.lines(sid)
    assert [l for l in lines if l.marker == "==" and NOT_VISIBLE in l.text], t.transcript()
    assert not info(lines, UPGRADES), t.transcript()
