"""TLS interception, second part: STARTTLS on the client leg (`--client-starttls`).

offer        smtptap adds STARTTLS to the EHLO reply while the client is not in TLS
             (`== smtptap offers STARTTLS to the client (added to the EHLO reply)`), answers
             the client's STARTTLS itself (`== STARTTLS answered by smtptap (--client-starttls
             offer)`, `<-  220 2.0.0 Ready to start TLS  [smtptap]`), the command never
             reaching the upstream, then does the handshake with a leaf from its CA
             (`--ca-dir`; leaf for the SNI, else the upstream host, else "localhost");
             `== client TLS: TLSv1.3 ..., SNI ...`, then ` ~>` / `<~ ` lines.  Inside TLS,
             EHLO replies lose STARTTLS (`== smtptap removed STARTTLS from the EHLO reply (the
             client is in TLS already)`) and STARTTLS gets 502.  Client bytes behind STARTTLS
             in the same write are discarded and flagged (`** lint: client sent N bytes after
             STARTTLS before the 220: discarded, not relayed into TLS (command injection,
             CVE-2011-0411 class)`).
strip        STARTTLS removed from EHLO replies (`... (--client-starttls strip)`), STARTTLS
             answered `502 5.5.1 STARTTLS not offered  [smtptap]`.
passthrough  (default) STARTTLS relayed; after the server's 220 the bytes pass opaquely
             (`== STARTTLS accepted by the server: TLS passes through ...`).
The upstream leg stays as configured: plain to aiosmtpd / the built-in sink, implicit TLS
with `-u tls:` and `--upstream-ca`.

Real clients (swaks, curl, smtplib, msmtp) verify smtptap's leaf strictly against the CA
printed by `--print-ca`.  What a real upstream was sent is read byte for byte through
harness.RecordingRelay (between smtptap and aiosmtpd), so "STARTTLS never reached the
upstream" and "the injected RSET never reached the upstream" are facts, not inferences.
"""

from __future__ import annotations

import contextlib
import dataclasses
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

OFFERS = "smtptap offers STARTTLS to the client (added to the EHLO reply)"
ANSWERED_OFFER = "STARTTLS answered by smtptap (--client-starttls offer)"
ANSWERED_STRIP = "STARTTLS refused by smtptap: --client-starttls strip"
READY = "220 2.0.0 Ready to start TLS  [smtptap]"
REFUSED = "502 5.5.1 STARTTLS not offered  [smtptap]"
REMOVED_IN_TLS = "smtptap removed STARTTLS from the EHLO reply (the client is in TLS already)"
REMOVED_STRIP = "smtptap removed STARTTLS from the EHLO reply (--client-starttls strip)"
PASSES_THROUGH = "STARTTLS accepted by the server: TLS passes through"
INJECTION_LINT = ("lint: client sent {n} bytes after STARTTLS before the 220: discarded, not "
                  "relayed into TLS (command injection, CVE-2011-0411 class)")
ANY_LINE = r"[^\n]*"


# --------------------------------------------------------------------------- helpers


smtptap_ca = harness.smtptap_ca


def starttls_tap(tap, ca_dir, mode, *args, **kw):
    """smtptap on a plain 127.0.0.1 listener with --client-starttls MODE (None: the flag
    left out) and its CA in CA_DIR."""
    flag = [] if mode is None else ["--client-starttls", mode]
    return tap(["--ca-dir", ca_dir, *flag, *args], **kw)


def only_session(t):
    t.wait_session_end()
    sids = t.sessions()
    assert len(sids) == 1, f"expected one session, transcript:\n{t.transcript()}"
    return sids[0]


def verb(line: harness.TLine) -> str:
    return harness.norm_cmd(line.text).split(" ", 1)[0]


def info(lines, text):
    """The `==` lines of LINES whose text is TEXT (exactly)."""
    return [l for l in lines if l.marker == "==" and l.text == text]


@dataclasses.dataclass
class Upstream:
    """What smtptap relays to: the built-in sink, or an aiosmtpd server behind a
    RecordingRelay (so what the server was sent can be read back)."""
    kind: str
    args: List[str]
    srv: Optional[harness.AiosmtpdServer] = None
    rec: Optional[harness.RecordingRelay] = None

    def sent(self, conn: int = 1) -> bytes:
        """The bytes the real upstream received on connection CONN."""
        assert self.rec is not None
        return self.rec.to_server(conn)


@pytest.fixture(params=["sink", "aiosmtpd"])
def upstream(request):
    if request.param == "sink":
        yield Upstream("sink", [])
        return
    with harness.AiosmtpdServer() as srv, harness.RecordingRelay(srv.host, srv.port) as rec:
        yield Upstream("aiosmtpd", ["-u", rec.hostport], srv, rec)


def upstream_commands(data: bytes) -> List[bytes]:
    """The command verbs in what an upstream received (outside DATA content)."""
    out, in_data = [], False
    for ln in data.split(b"\r\n"):
        if in_data:
            if ln == b".":
                in_data = False
            continue
        v = ln.split(b" ", 1)[0].upper()
        if v:
            out.append(v)
        if v == b"DATA":
            in_data = True
    return out


def check_delivered(t, sid, up: Upstream, message: bytes, mail_from=FROM, rcpts=RCPTS):
    """MESSAGE arrived: at aiosmtpd (envelope and content), or, with the sink, the
    transcript's message summary carries its size and SHA-256."""
    if up.srv is not None:
        got = up.srv.wait_for_messages(1)
        assert len(got) == 1, got
        m = got[0]
        assert (m.mail_from, m.rcpt_tos, m.content) == (mail_from, list(rcpts), message), m
    else:
        digest = hashlib.sha256(message).hexdigest()
        t.wait_for(rf"^#{sid} \+\S+ == message 1: {len(message)} bytes, \d+ lines, "
                   rf"sha256 {digest}$")


def check_upstream_saw_no_starttls(up: Upstream, conn: int = 1):
    """The real upstream got the session in plain text (one EHLO, MAIL, ...) and never a
    STARTTLS: the client's EHLO after its handshake with smtptap is answered by smtptap,
    since the server's connection did not change.  With the sink the transcript's
    `[smtptap]` 220 is the evidence instead."""
    if up.rec is None:
        return
    data = up.sent(conn)
    verbs = upstream_commands(data)
    assert b"STARTTLS" not in verbs, f"the upstream was sent STARTTLS: {data!r}"
    # The relay did record this session: the EHLO before the client's handshake (the one
    # after it never reaches the server), and the transaction, all as plain text.
    assert verbs.count(b"EHLO") == 1, verbs
    assert b"MAIL" in verbs and b"DATA" in verbs, verbs


def check_offer_session(t, sid, *, sni: Optional[str], offers: bool = True,
                        starttls_inside: int = 0, mail_from=FROM, rcpts=RCPTS):
    """A session in which the client did STARTTLS with smtptap (--client-starttls offer):
    plain EHLO, STARTTLS answered by smtptap, one handshake, everything after it ` ~>` /
    `<~ `, the transaction decrypted (STARTTLS_INSIDE: how many STARTTLS commands the
    client sent inside TLS).  Returns (lines before, lines after the handshake)."""
    lines = t.lines(sid)
    tls = [i for i, l in enumerate(lines) if l.marker == "==" and l.text.startswith("client TLS:")]
    assert len(tls) == 1, f"no single 'client TLS:' line in session {sid}:\n{t.transcript()}"
    before, after = lines[:tls[0]], lines[tls[0] + 1:]
    tls_line = lines[tls[0]]
    assert re.match(r"client TLS: TLSv1\.3 TLS_\S+", tls_line.text), tls_line.raw
    if sni is not None:
        assert re.search(rf"\bSNI {re.escape(sni)}(,|$)", tls_line.text), tls_line.raw

    # Before the handshake: EHLO, STARTTLS in plain text, answered by smtptap.
    cmds = [l for l in before if l.is_command]
    assert [verb(l) for l in cmds] == ["EHLO", "STARTTLS"], [l.raw for l in cmds]
    assert all(l.marker == " ->" for l in cmds), [l.raw for l in cmds]
    assert len(info(before, OFFERS)) == (1 if offers else 0), t.transcript()
    answered = info(before, ANSWERED_OFFER)
    ready = [l for l in before if l.is_reply and l.text == READY]
    assert len(answered) == 1 and len(ready) == 1, t.transcript()
    assert ready[0].marker == "<- ", ready[0].raw
    i_cmd = before.index(cmds[1])
    assert i_cmd < before.index(answered[0]) and i_cmd < before.index(ready[0]), t.transcript()
    # The 220 is the only reply to STARTTLS: nothing came from an upstream for it.
    replies_after_cmd = [l for l in before[i_cmd + 1:] if l.is_reply]
    assert replies_after_cmd == ready, [l.raw for l in replies_after_cmd]

    # After it: all decrypted, marked as TLS, no second offer.
    acmds = [l for l in after if l.is_command]
    plain = [l.raw for l in acmds if l.marker != " ~>"]
    assert not plain, f"commands after the client's handshake shown as plaintext: {plain}"
    areplies = [l for l in after if l.is_reply]
    assert areplies and all(l.marker == "<~ " for l in areplies), \
        [l.raw for l in areplies if l.marker != "<~ "]
    words = [w for kind, w in harness.dialog(after) if kind == "C"]  # DATA content left out
    assert words[0].startswith("EHLO "), words
    assert [w.split(" ")[0] for w in words].count("STARTTLS") == starttls_inside, words
    assert f"MAIL FROM:<{mail_from}>" in [re.sub(r"(?i) SIZE=\d+$", "", w) for w in words], words
    for r in rcpts:
        assert f"RCPT TO:<{r}>" in words, words
    assert "DATA" in words and "QUIT" in words, words
    assert not info(after, OFFERS), t.transcript()
    assert re.search(r"^250 .*queued", "\n".join(l.text for l in areplies), re.M | re.I), \
        t.transcript()
    return before, after


class SNISMTP(smtplib.SMTP):
    """smtplib.SMTP that connects to 127.0.0.1 but uses the host name given to the
    constructor for STARTTLS (SNI and certificate check), like curl's --resolve."""

    def _get_socket(self, host, port, timeout):
        return socket.create_connection(("127.0.0.1", port), timeout)


def smtplib_starttls_send(name, port, ca_pem, message, rcpts=RCPTS):
    ctx = ssl.create_default_context(cafile=ca_pem)  # CERT_REQUIRED + check_hostname
    with SNISMTP(name, port, local_hostname="client.test", timeout=20) as s:
        s.ehlo()
        assert s.has_extn("starttls"), s.esmtp_features
        code, text = s.starttls(context=ctx)
        assert code == 220, (code, text)
        s.ehlo()
        assert not s.has_extn("starttls"), f"STARTTLS still offered inside TLS: {s.esmtp_features}"
        refused = s.sendmail(FROM, list(rcpts), message)
        s.quit()
    return refused


def raw_starttls(c: RawSmtpClient, ca_pem: str, server_hostname: Optional[str] = "localhost",
                 check_hostname: bool = True):
    """STARTTLS on a RawSmtpClient after its EHLO: expects smtptap's 220, then wraps the
    socket (chain verified against CA_PEM).  Returns the SSLSocket."""
    assert c.cmd(b"STARTTLS") == [b"220 2.0.0 Ready to start TLS"]
    assert c.buf == b"", f"bytes after the 220 before the handshake: {c.buf!r}"
    ctx = ssl.create_default_context(cafile=ca_pem)
    ctx.check_hostname = check_hostname
    c.sock = ctx.wrap_socket(c.sock, server_hostname=server_hostname)
    return c.sock


def raw_transaction(c: RawSmtpClient, message: bytes, rcpts=RCPTS):
    """MAIL, RCPT..., DATA, MESSAGE, QUIT on C (message dot-stuffed here)."""
    assert c.cmd(f"MAIL FROM:<{FROM}>".encode())[-1].startswith(b"250"), "MAIL"
    for r in rcpts:
        assert c.cmd(f"RCPT TO:<{r}>".encode())[-1].startswith(b"250"), r
    assert c.cmd(b"DATA")[-1].startswith(b"354")
    body = b"".join((b"." + ln if ln.startswith(b".") else ln) + b"\r\n"
                    for ln in message[:-2].split(b"\r\n"))
    c.send(body + b".\r\n")
    end = c.reply()
    assert end[-1].startswith(b"250"), end
    assert c.cmd(b"QUIT")[-1].startswith(b"221")


@pytest.fixture
def test_ca(tmp_path):
    return harness.CertAuthority(str(tmp_path))


# --------------------------------------------------------------------------- offer: real clients


def test_swaks_starttls_offer(tap, need, tmp_path, upstream):
    need("swaks")
    ca_dir, ca_pem = smtptap_ca(tmp_path)
    t = starttls_tap(tap, ca_dir, "offer", *upstream.args)
    msg = make_message("swaks STARTTLS offered by smtptap", to=RCPTS)
    rc, out, err = harness.swaks_send(t.hostport, FROM, RCPTS, msg, str(tmp_path), "--tls",
                                      "--tls-verify", "--tls-ca-path", ca_pem,
                                      "--tls-sni", "localhost")
    assert rc == 0, f"swaks rc {rc}\n{out}\n{err}"
    # What swaks saw: STARTTLS offered in plain text, smtptap's 220, not offered in TLS.
    assert re.search(r"^<-  250[- ]STARTTLS$", out, re.M), out
    assert re.search(r"^<-  220 2\.0\.0 Ready to start TLS$", out, re.M), out
    assert re.search(r"^=== TLS started with cipher TLSv1\.3", out, re.M), out
    assert not re.search(r"^<~  250[- ]STARTTLS", out, re.M), out
    assert re.search(r"^<~  250 .*queued", out, re.M | re.I), out
    sid = only_session(t)
    check_offer_session(t, sid, sni="localhost")
    check_delivered(t, sid, upstream, msg)
    check_upstream_saw_no_starttls(upstream)


def test_swaks_starttls_verify_fails_against_another_ca(tap, need, tmp_path, test_ca):
    """Control for the tests here: swaks --tls-verify really verifies (a CA that did not
    sign smtptap's leaf fails), so a passing swaks test means the leaf chains to the CA."""
    need("swaks")
    ca_dir, _ = smtptap_ca(tmp_path)
    t = starttls_tap(tap, ca_dir, "offer")
    rc, out, err = harness.swaks(t.hostport, "--tls", "--tls-verify", "--tls-ca-path",
                                 test_ca.cert_path, "--tls-sni", "localhost",
                                 "--from", FROM, "--to", RCPTS[0])
    assert rc != 0, f"swaks accepted a leaf not signed by the CA it was given:\n{out}"
    assert not re.search(r"^ ~> MAIL", out, re.M), out
    t.wait_for(r"\*\*> client TLS handshake failed: ")
    t.wait_session_end()


def test_curl_starttls_offer(tap, need, tmp_path, upstream):
    need("curl")
    ca_dir, ca_pem = smtptap_ca(tmp_path)
    t = starttls_tap(tap, ca_dir, "offer", *upstream.args)
    msg = make_message("curl --ssl-reqd through smtptap", to=RCPTS)
    f = tmp_path / "m.eml"
    f.write_bytes(msg)
    cmd = [harness.tool_path("curl"), "-sS", "-v", "--max-time", "20", "--ssl-reqd",
           "--cacert", ca_pem, "--resolve", f"localhost:{t.port}:127.0.0.1",
           f"smtp://localhost:{t.port}/client.test", "--mail-from", FROM,
           "--mail-rcpt", RCPTS[0], "--mail-rcpt", RCPTS[1], "-T", str(f)]
    rc, out, err = harness.run(cmd)
    assert rc == 0, f"curl rc {rc}\n{err}"
    assert re.search(r"^< 250[- ]STARTTLS", err, re.M), err
    assert re.search(r"^< 220 2\.0\.0 Ready to start TLS", err, re.M), err
    assert re.search(r"SSL certificate verify ok", err), err
    sid = only_session(t)
    check_offer_session(t, sid, sni="localhost")
    check_delivered(t, sid, upstream, msg)
    check_upstream_saw_no_starttls(upstream)


@pytest.mark.parametrize("name", ["localhost", "mail.test"])
def test_smtplib_starttls_offer(tap, tmp_path, upstream, name):
    """smtplib starttls(context=create_default_context(cafile=CA)) with server_hostname
    NAME: the leaf is minted for the SNI and passes Python's strict host name check."""
    ca_dir, ca_pem = smtptap_ca(tmp_path)
    t = starttls_tap(tap, ca_dir, "offer", *upstream.args)
    msg = make_message(f"smtplib starttls {name}", to=RCPTS)
    assert smtplib_starttls_send(name, t.port, ca_pem, msg) == {}
    sid = only_session(t)
    check_offer_session(t, sid, sni=name)
    check_delivered(t, sid, upstream, msg)
    check_upstream_saw_no_starttls(upstream)


def test_msmtp_starttls_offer(tap, need, tmp_path, upstream):
    need("msmtp")
    ca_dir, ca_pem = smtptap_ca(tmp_path)
    t = starttls_tap(tap, ca_dir, "offer", *upstream.args)
    msg = make_message("msmtp tls_starttls through smtptap", to=RCPTS)
    rc, out, err = harness.msmtp_send("127.0.0.1", t.port, FROM, RCPTS, msg, str(tmp_path),
                                      extra_conf=["tls on", "tls_starttls on",
                                                  f"tls_trust_file {ca_pem}"])
    assert rc == 0, f"msmtp rc {rc}\n{out}\n{err}"
    assert re.search(r"tls=on", out + err), out + err
    sid = only_session(t)
    check_offer_session(t, sid, sni=None)
    # msmtp (GnuTLS) sends the IP literal it connects to as SNI (or none): the leaf it
    # verified is then minted for 127.0.0.1 (or the default name).
    tls_line = [l.text for l in t.lines(sid) if l.text.startswith("client TLS:")][0]
    assert not re.search(r"(?<!no )SNI (?!127\.0\.0\.1(,|$))", tls_line), tls_line
    check_delivered(t, sid, upstream, msg)
    check_upstream_saw_no_starttls(upstream)


def test_offer_plain_client_still_delivers(tap, need, tmp_path, upstream):
    """A client that ignores the offered STARTTLS gets a normal plain session."""
    need("swaks")
    ca_dir, _ = smtptap_ca(tmp_path)
    t = starttls_tap(tap, ca_dir, "offer", *upstream.args)
    msg = make_message("plain client, STARTTLS offered", to=RCPTS)
    rc, out, err = harness.swaks_send(t.hostport, FROM, RCPTS, msg, str(tmp_path))
    assert rc == 0, f"swaks rc {rc}\n{out}\n{err}"
    assert re.search(r"^<-  250[- ]STARTTLS$", out, re.M), out
    sid = only_session(t)
    lines = t.lines(sid)
    assert len(info(lines, OFFERS)) == 1, t.transcript()
    assert "client TLS" not in t.transcript()
    assert not [l.raw for l in lines if l.marker in (" ~>", "<~ ")], t.transcript()
    check_delivered(t, sid, upstream, msg)


# --------------------------------------------------------------------------- offer: EHLO editing


def test_offer_upstream_offering_starttls(tap, need, tmp_path):
    """An upstream that offers STARTTLS itself (aiosmtpd with tls_context) behind plain:
    nothing to add before the handshake, STARTTLS removed from the EHLO reply inside TLS,
    the upstream never asked for STARTTLS (its own TLS stays unused: the leg is plain)."""
    need("swaks")
    ca_dir, ca_pem = smtptap_ca(tmp_path)
    sctx = harness.server_tls_context(str(tmp_path))
    with harness.AiosmtpdServer(tls_context=sctx) as srv, \
            harness.RecordingRelay(srv.host, srv.port) as rec:
        up = Upstream("aiosmtpd", ["-u", "plain:" + rec.hostport], srv, rec)
        t = starttls_tap(tap, ca_dir, "offer", *up.args)
        msg = make_message("upstream offers STARTTLS too", to=RCPTS)
        rc, out, err = harness.swaks_send(t.hostport, FROM, RCPTS, msg, str(tmp_path), "--tls",
                                          "--tls-verify", "--tls-ca-path", ca_pem,
                                          "--tls-sni", "localhost")
        assert rc == 0, f"swaks rc {rc}\n{out}\n{err}"
        assert re.search(r"^<~  250 .*queued", out, re.M | re.I), out
        assert not re.search(r"^<~  250[- ]STARTTLS", out, re.M), \
            f"STARTTLS still offered to the client inside TLS:\n{out}"
        sid = only_session(t)
        check_delivered(t, sid, up, msg)
        check_upstream_saw_no_starttls(up)
        # The server offered it in its one EHLO reply; smtptap answered the client's EHLO
        # inside TLS from that reply, STARTTLS taken out.
        assert rec.to_client(1).count(b"250-STARTTLS\r\n") == 1, rec.to_client(1)
    before, after = check_offer_session(t, sid, sni="localhost", offers=False)
    assert len(info(after, REMOVED_IN_TLS)) == 1, t.transcript()
    assert not info(before, REMOVED_IN_TLS), t.transcript()
    assert not info(t.lines(sid), REMOVED_STRIP), t.transcript()


def offer_then_second_starttls(tap, tmp_path):
    """Raw client through offer + aiosmtpd (recorded): STARTTLS, then STARTTLS again inside
    TLS, then a delivery.  Returns (smtptap, session, reply to the second STARTTLS, relay)."""
    ca_dir, ca_pem = smtptap_ca(tmp_path)
    msg = make_message("after a second STARTTLS", to=RCPTS)
    with harness.AiosmtpdServer() as srv, harness.RecordingRelay(srv.host, srv.port) as rec:
        up = Upstream("aiosmtpd", ["-u", rec.hostport], srv, rec)
        t = starttls_tap(tap, ca_dir, "offer", *up.args)
        with RawSmtpClient("127.0.0.1", t.port) as c:
            assert c.reply()[0].startswith(b"220 ")
            assert b"250-STARTTLS" in c.cmd(b"EHLO client.test")
            raw_starttls(c, ca_pem)
            ehlo = c.cmd(b"EHLO client.test")
            assert ehlo[-1].startswith(b"250 ") and not any(b"STARTTLS" in l for l in ehlo), ehlo
            second = c.cmd(b"STARTTLS")
            raw_transaction(c, msg)
        sid = only_session(t)
        check_delivered(t, sid, up, msg)
        check_upstream_saw_no_starttls(up)
    return t, sid, second


def test_offer_second_starttls_inside_tls_gets_502(tap, tmp_path):
    t, sid, second = offer_then_second_starttls(tap, tmp_path)
    assert second == [b"502 5.5.1 STARTTLS not offered"], second
    lines = t.lines(sid)
    _, after = check_offer_session(t, sid, sni="localhost", starttls_inside=1)
    i = [k for k, l in enumerate(after) if l.is_command and verb(l) == "STARTTLS"]
    assert len(i) == 1, t.transcript()
    # The next reply is smtptap's, over TLS; the session goes on (delivery checked above).
    nxt = [l for l in after[i[0] + 1:] if l.is_reply][0]
    assert (nxt.marker, nxt.text) == ("<~ ", REFUSED), nxt.raw
    assert len([l for l in lines if l.marker == "==" and l.text.startswith("client TLS:")]) == 1


def test_offer_second_starttls_is_not_attributed_to_strip(tap, tmp_path):
    """The transcript's explanation of the 502 to an in-TLS STARTTLS must not claim
    `--client-starttls strip`: smtptap runs with `offer`."""
    t, sid, second = offer_then_second_starttls(tap, tmp_path)
    assert second[-1].startswith(b"502"), second
    _, after = check_offer_session(t, sid, sni="localhost", starttls_inside=1)
    wrong = [l.raw for l in after if "--client-starttls strip" in l.text]
    assert not wrong, ("smtptap runs with --client-starttls offer, but its transcript says "
                       f"the in-TLS STARTTLS was answered because of strip: {wrong}")


def test_offer_on_implicit_tls_listener_does_not_offer(tap, tmp_path):
    """A client on a tls: listener is in TLS from the start: no STARTTLS in its EHLO
    reply, and STARTTLS is refused with 502 by smtptap."""
    ca_dir, ca_pem = smtptap_ca(tmp_path)
    t = starttls_tap(tap, ca_dir, "offer", listen="tls:127.0.0.1:0")
    ctx = ssl.create_default_context(cafile=ca_pem)
    msg = make_message("offer on an implicit TLS listener", to=RCPTS)
    with RawSmtpClient("127.0.0.1", t.port) as c:
        c.sock = ctx.wrap_socket(c.sock, server_hostname="mail.test")
        assert c.reply()[0].startswith(b"220 ")
        ehlo = c.cmd(b"EHLO client.test")
        assert not any(b"STARTTLS" in l for l in ehlo), ehlo
        assert c.cmd(b"STARTTLS") == [b"502 5.5.1 STARTTLS not offered"]
        raw_transaction(c, msg)
    sid = only_session(t)
    lines = t.lines(sid)
    assert not info(lines, OFFERS), t.transcript()
    assert [l.raw for l in lines if l.is_reply and l.text == REFUSED], t.transcript()
    assert not [l.raw for l in lines if l.is_command and l.marker == " ->"], t.transcript()


@pytest.mark.parametrize("how", ["sni", "upstream-name", "listener-address"])
def test_starttls_leaf_names(tap, tmp_path, how):
    """The STARTTLS leaf is minted for the SNI, else the upstream host name, else the
    address the client connected to (as for implicit TLS), and chains to the printed CA."""
    ca_dir, ca_pem = smtptap_ca(tmp_path)
    with harness.AiosmtpdServer() as srv:
        args = ["-u", f"127.0.0.1:{srv.port}"] if how == "upstream-name" else []
        t = starttls_tap(tap, ca_dir, "offer", *args)
        with RawSmtpClient("127.0.0.1", t.port) as c:
            c.reply()
            c.cmd(b"EHLO client.test")
            s = raw_starttls(c, ca_pem, "mail.test" if how == "sni" else None,
                             check_hostname=False)
            cert = s.getpeercert()
            assert c.cmd(b"QUIT")[-1].startswith(b"221")
        t.wait_session_end()
    sans = cert.get("subjectAltName", ())
    want = {"sni": ("DNS", "mail.test"), "upstream-name": ("IP Address", "127.0.0.1"),
            "listener-address": ("IP Address", "127.0.0.1")}[how]
    assert want in sans, f"leaf SANs {sans}, expected {want}; cert {cert}"
    issuer = dict(x[0] for x in cert["issuer"])
    rc, out, _ = harness.run(["openssl", "x509", "-in", ca_pem, "-noout", "-subject",
                              "-nameopt", "RFC2253"])
    assert rc == 0
    assert issuer.get("commonName") and issuer["commonName"] in out, (issuer, out)


# --------------------------------------------------------------------------- offer + TLS upstream


def test_offer_with_implicit_tls_upstream(tap, need, tmp_path, test_ca):
    need("swaks")
    ca_dir, ca_pem = smtptap_ca(tmp_path)
    cert, key = test_ca.issue(["localhost"])
    with harness.AiosmtpdServer(ssl_context=harness.tls_server_context(cert, key)) as srv:
        t = starttls_tap(tap, ca_dir, "offer", "-u", f"tls:localhost:{srv.port}",
                         "--upstream-ca", test_ca.cert_path)
        msg = make_message("STARTTLS client, implicit-TLS upstream", to=RCPTS)
        rc, out, err = harness.swaks_send(t.hostport, FROM, RCPTS, msg, str(tmp_path), "--tls",
                                          "--tls-verify", "--tls-ca-path", ca_pem,
                                          "--tls-sni", "localhost")
        assert rc == 0, f"swaks rc {rc}\n{out}\n{err}"
        got = srv.wait_for_messages(1)
        assert [(m.mail_from, m.rcpt_tos, m.content) for m in got] == [(FROM, RCPTS, msg)]
        sid = only_session(t)
    check_offer_session(t, sid, sni="localhost")
    t.wait_for(rf"^#{sid} \+\S+ == upstream TLS: TLSv1\.3 {ANY_LINE}subject CN=localhost, "
               rf"issuer CN={re.escape(TEST_CA_CN)}, sha256 "
               rf"{re.escape(harness.cert_sha256(cert))}, verified$")
    t.wait_for(rf"^#{sid} \+\S+ <~  250 2\.0\.0 OK queued as aio1  \(\S+ ms\)$")


# --------------------------------------------------------------------------- AUTH inside TLS


@pytest.mark.parametrize("server", ["sink", "aiosmtpd-auth"])
def test_auth_plain_inside_starttls_decoded(tap, need, tmp_path, server):
    need("swaks")
    ca_dir, ca_pem = smtptap_ca(tmp_path)
    srv = harness.AiosmtpdServer(auth=True) if server == "aiosmtpd-auth" else None
    with (srv if srv else contextlib.nullcontext()):
        args = ["-u", srv.hostport] if srv else []
        t = starttls_tap(tap, ca_dir, "offer", "--decode-auth", *args)
        msg = make_message("AUTH PLAIN inside STARTTLS", to=RCPTS)
        rc, out, err = harness.swaks_send(t.hostport, FROM, RCPTS, msg, str(tmp_path), "--tls",
                                          "--tls-verify", "--tls-ca-path", ca_pem,
                                          "--tls-sni", "localhost", "--auth", "PLAIN",
                                          "--auth-user", "alice", "--auth-password", "S3cr3t-pw")
        assert rc == 0, f"swaks rc {rc}\n{out}\n{err}"
        assert re.search(r"^ ~> AUTH PLAIN ", out, re.M), out
        sid = only_session(t)
        if srv:
            assert [(m.mail_from, m.content) for m in srv.wait_for_messages(1)] == [(FROM, msg)]
    _, after = check_offer_session(t, sid, sni="localhost")
    auth_cmds = [l for l in after if l.is_command and verb(l) == "AUTH"]
    assert len(auth_cmds) == 1 and auth_cmds[0].marker == " ~>", t.transcript()
    decoded = [l.text for l in after if l.marker == "##"]
    assert any(re.match(r'AUTH PLAIN .*authcid="alice"', d) for d in decoded), t.transcript()
    assert any(re.match(r"AUTH PLAIN for alice: accepted \(235\b", d) for d in decoded), \
        t.transcript()
    assert not [l for l in t.lines(sid)[:t.lines(sid).index(after[0])] if l.marker == "##"]


# --------------------------------------------------------------------------- injection


@pytest.mark.parametrize("injected", [b"RSET\r\n", b"MAIL FROM:<mallory@evil.test>\r\n"])
def test_offer_discards_bytes_after_starttls(tap, tmp_path, injected):
    """CVE-2011-0411 class: what a client (or a man in the middle) puts behind STARTTLS in
    the same write must not be executed inside the TLS session."""
    ca_dir, ca_pem = smtptap_ca(tmp_path)
    msg = make_message("after an injection attempt", to=RCPTS)
    with harness.AiosmtpdServer() as srv, harness.RecordingRelay(srv.host, srv.port) as rec:
        up = Upstream("aiosmtpd", ["-u", rec.hostport], srv, rec)
        t = starttls_tap(tap, ca_dir, "offer", *up.args)
        with RawSmtpClient("127.0.0.1", t.port) as c:
            assert c.reply()[0].startswith(b"220 ")
            assert b"250-STARTTLS" in c.cmd(b"EHLO x")
            c.send(b"STARTTLS\r\n" + injected)   # one write
            assert c.reply() == [b"220 2.0.0 Ready to start TLS"]
            assert c.buf == b"", c.buf
            ctx = ssl.create_default_context(cafile=ca_pem)
            c.sock = ctx.wrap_socket(c.sock, server_hostname="localhost")
            # The first reply inside TLS answers our EHLO: no reply to the injected line.
            ehlo = c.cmd(b"EHLO x")
            assert ehlo[0].startswith(b"250-" + srv.hostname.encode()), ehlo
            raw_transaction(c, msg)
        sid = only_session(t)
        check_delivered(t, sid, up, msg)
        check_upstream_saw_no_starttls(up)
        sent = up.sent(1)
    assert injected not in sent, f"the injected {injected!r} reached the upstream: {sent!r}"
    assert upstream_commands(sent) == [b"EHLO", b"MAIL", b"RCPT", b"RCPT", b"DATA",
                                       b"QUIT"], sent
    lines = t.lines(sid)
    lint = f"lint: client sent {len(injected)} bytes after STARTTLS before the 220: discarded, " \
           f"not relayed into TLS (command injection, CVE-2011-0411 class)"
    assert [l.marker for l in lines if l.text == lint] == ["**"], t.transcript()
    if injected == b"RSET\r\n":
        assert len(injected) == 6 and INJECTION_LINT.format(n=6) == lint
    shown = [l.raw for l in lines if l.is_command and (verb(l) == "RSET" or "mallory" in l.text)]
    assert not shown, f"the discarded command is shown as a command: {shown}"
    check_offer_session(t, sid, sni="localhost")


# --------------------------------------------------------------------------- untrusting client


def test_client_without_the_ca_then_one_with_it(tap, need, tmp_path, aiosmtpd):
    need("curl")
    ca_dir, ca_pem = smtptap_ca(tmp_path)
    t = starttls_tap(tap, ca_dir, "offer", "-u", aiosmtpd.hostport)
    f = tmp_path / "m.eml"
    msg = make_message("after a refused STARTTLS handshake", to=RCPTS[:1])
    f.write_bytes(msg)
    base = [harness.tool_path("curl"), "-sS", "--max-time", "20", "--ssl-reqd",
            "--resolve", f"localhost:{t.port}:127.0.0.1",
            f"smtp://localhost:{t.port}/client.test", "--mail-from", FROM,
            "--mail-rcpt", RCPTS[0], "-T", str(f)]
    rc, out, err = harness.run(base)
    assert rc == 60, f"curl without the CA: rc {rc} (expected 60)\n{err}"
    m = t.wait_for(r"^#(\d+) \+\S+ \*\*> client TLS handshake failed: (.*)$")
    assert re.search(r"unknown CA|unknown ca", m.group(2)), m.group(0)
    first = int(m.group(1))
    t.wait_session_end(first)
    first_lines = t.lines(first)
    assert info(first_lines, ANSWERED_OFFER), t.transcript()
    assert not [l for l in first_lines if l.is_command and verb(l) not in ("EHLO", "STARTTLS")]
    assert aiosmtpd.messages == []
    # The same smtptap still serves: a trusting client delivers.
    rc, out, err = harness.run([*base, "--cacert", ca_pem])
    assert rc == 0, f"curl with the CA: rc {rc}\n{err}"
    t.wait_session_end(first + 1)
    check_offer_session(t, first + 1, sni="localhost", rcpts=RCPTS[:1])
    got = aiosmtpd.wait_for_messages(1)
    assert [(m.mail_from, m.rcpt_tos, m.content) for m in got] == [(FROM, RCPTS[:1], msg)]


# --------------------------------------------------------------------------- strip


def test_strip_swaks_tls_fails(tap, need, tmp_path):
    need("swaks")
    ca_dir, _ = smtptap_ca(tmp_path)
    sctx = harness.server_tls_context(str(tmp_path))
    with harness.AiosmtpdServer(tls_context=sctx) as srv, \
            harness.RecordingRelay(srv.host, srv.port) as rec:
        t = starttls_tap(tap, ca_dir, "strip", "-u", "plain:" + rec.hostport)
        rc, out, err = harness.swaks(t.hostport, "--tls", "--from", FROM, "--to", RCPTS[0])
        assert rc != 0, f"swaks --tls succeeded although STARTTLS was stripped:\n{out}"
        assert not re.search(r"^<-  250[- ]STARTTLS", out, re.M), out
        assert not re.search(r"^ -> STARTTLS", out, re.M), out
        assert not re.search(r"^ [-~]> MAIL", out, re.M), out
        sid = only_session(t)
        # The server did offer STARTTLS: it is smtptap that took it out.
        assert b"250-STARTTLS\r\n" in rec.to_client(1), rec.to_client(1)
        assert b"STARTTLS" not in upstream_commands(rec.to_server(1)), rec.to_server(1)
    lines = t.lines(sid)
    assert len(info(lines, REMOVED_STRIP)) == 1, t.transcript()
    assert not info(lines, OFFERS) and "client TLS" not in t.transcript(), t.transcript()
    assert srv.messages == []


def test_strip_raw_starttls_gets_502(tap, tmp_path):
    ca_dir, _ = smtptap_ca(tmp_path)
    sctx = harness.server_tls_context(str(tmp_path))
    msg = make_message("plain after a refused STARTTLS", to=RCPTS)
    with harness.AiosmtpdServer(tls_context=sctx) as srv, \
            harness.RecordingRelay(srv.host, srv.port) as rec:
        t = starttls_tap(tap, ca_dir, "strip", "-u", "plain:" + rec.hostport)
        with RawSmtpClient("127.0.0.1", t.port) as c:
            assert c.reply()[0].startswith(b"220 ")
            ehlo = c.cmd(b"EHLO client.test")
            assert ehlo[-1].startswith(b"250 ") and not any(b"STARTTLS" in l for l in ehlo), ehlo
            assert c.cmd(b"STARTTLS") == [b"502 5.5.1 STARTTLS not offered"]
            raw_transaction(c, msg)   # the session goes on in plain text
        sid = only_session(t)
        got = srv.wait_for_messages(1)
        assert [(m.mail_from, m.rcpt_tos, m.content) for m in got] == [(FROM, RCPTS, msg)]
        assert b"STARTTLS" not in upstream_commands(rec.to_server(1)), rec.to_server(1)
    lines = t.lines(sid)
    st = [i for i, l in enumerate(lines) if l.is_command and verb(l) == "STARTTLS"]
    assert len(st) == 1 and lines[st[0]].marker == " ->", t.transcript()
    after = lines[st[0] + 1:]
    assert info(after, ANSWERED_STRIP), t.transcript()
    nxt = [l for l in after if l.is_reply][0]
    assert (nxt.marker, nxt.text) == ("<- ", REFUSED), nxt.raw
    assert len(info(lines, REMOVED_STRIP)) == 1, t.transcript()
    assert "client TLS" not in t.transcript()


# --------------------------------------------------------------------------- passthrough


@pytest.mark.parametrize("mode", ["passthrough"])
def test_passthrough_server_starttls(tap, need, tmp_path, test_ca, mode):
    """passthrough: STARTTLS goes to aiosmtpd (smtptap does not upgrade a no-prefix upstream
    itself then), whose 220 starts TLS between the client and the server; smtptap sees only
    ciphertext afterwards."""
    need("swaks")
    ca_dir, _ = smtptap_ca(tmp_path)
    sctx = test_ca.server_context(["localhost", "127.0.0.1"])
    with harness.AiosmtpdServer(tls_context=sctx) as srv, \
            harness.RecordingRelay(srv.host, srv.port) as rec:
        t = starttls_tap(tap, ca_dir, mode, "-u", rec.hostport)
        msg = make_message("STARTTLS passed through", to=RCPTS)
        rc, out, err = harness.swaks_send(t.hostport, FROM, RCPTS, msg, str(tmp_path), "--tls",
                                          "--tls-verify", "--tls-ca-path", test_ca.cert_path,
                                          "--tls-sni", "localhost")
        assert rc == 0, f"swaks rc {rc}\n{out}\n{err}"
        assert re.search(r"^<-  220 Ready to start TLS$", out, re.M), out  # aiosmtpd's 220
        assert re.search(r'^=== TLS peer DN="/CN=localhost"', out, re.M), out
        got = srv.wait_for_messages(1)
        assert [(m.mail_from, m.rcpt_tos, m.content) for m in got] == [(FROM, RCPTS, msg)]
        sid = only_session(t)
        sent = rec.to_server(1)
        assert re.search(rb"(?m)^STARTTLS\r$", sent), sent
        assert b"MAIL FROM" not in sent, "the upstream got the transaction in plain text"
    lines = t.lines(sid)
    t.wait_for(rf"^#{sid} \+\S+ == {re.escape(PASSES_THROUGH)}, the rest of the session is "
               r"encrypted end to end and not visible$")
    st = [l for l in lines if l.is_command and verb(l) == "STARTTLS"]
    assert [l.marker for l in st] == [" ->"], t.transcript()
    ready = [l for l in lines if l.is_reply and l.text.startswith("220 Ready")]
    assert [(l.marker, l.text) for l in ready] == [("<- ", "220 Ready to start TLS")], \
        t.transcript()
    assert not [l.raw for l in lines if l.is_command and verb(l) in ("MAIL", "RCPT", "DATA")], \
        f"decrypted transaction in a passthrough transcript:\n{t.transcript()}"
    assert not [l.raw for l in lines if l.marker in (" ~>", "<~ ")], t.transcript()
    text = t.transcript()
    for s in ("client TLS", "answered by smtptap", "offers STARTTLS", "removed STARTTLS"):
        assert s not in text, f"{s!r} in a passthrough transcript:\n{text}"


def test_passthrough_leaves_ehlo_alone(tap, tmp_path, aiosmtpd):
    """passthrough against a server without STARTTLS: nothing added, the EHLO reply is
    relayed as the server sent it, and a STARTTLS goes to the server (which refuses it)."""
    ca_dir, _ = smtptap_ca(tmp_path)
    with harness.RecordingRelay(aiosmtpd.host, aiosmtpd.port) as rec:
        t = starttls_tap(tap, ca_dir, "passthrough", "-u", rec.hostport)
        with RawSmtpClient("127.0.0.1", t.port) as c:
            c.reply()
            ehlo = c.cmd(b"EHLO client.test")
            server_ehlo = rec.to_client(1).split(b"\r\n", 1)[1]
            assert b"\r\n".join(ehlo) + b"\r\n" == server_ehlo, (ehlo, server_ehlo)
            st = c.cmd(b"STARTTLS")
            assert c.cmd(b"QUIT")[-1].startswith(b"221")
        only_session(t)
        assert re.search(rb"(?m)^STARTTLS\r$", rec.to_server(1)), rec.to_server(1)
        assert st[-1].decode() in rec.to_client(1).decode(), (st, rec.to_client(1))
    assert not info(t.lines(), OFFERS)
    assert "answered by smtptap" not in t.transcript()
