"""smtptap between real clients (swaks, a raw socket) and real MTAs: Exim 4, a full Postfix
smtpd and OpenSMTPD, each started on loopback by mta.py as smtptap's upstream.

What is asserted is what a user sees: the MTA's own log and mailbox (MtaMessage.data is the
message as the client sent it), smtptap's transcript, and the client's exit status.

    plain            plain client, plain MTA: delivered byte for byte, one EHLO
    client STARTTLS  swaks --tls (verifying smtptap's CA) behind `-u plain:`: smtptap answers
                     the client's EHLO inside TLS from the server's reply, so the server sees
                     one EHLO (OpenSMTPD used to refuse the second with 503)
    starttls:        smtptap upgrades the server's connection: two EHLOs (plain, then in TLS),
                     and still two when the client also does STARTTLS with smtptap
    tls:             the MTA's implicit-TLS port: one EHLO, TLS in the server's log
    pipelining       swaks --pipeline: delivered, every reply paired with its command
    BDAT             `BDAT n LAST` from a raw client, stored byte for byte
    AUTH             AUTH only inside TLS: works behind starttls: (decoded with
                     --decode-auth), and behind plain: the client sees no AUTH and the
                     transcript says why

The MTAs come from tests/mta/install.sh (root); a missing one skips its tests.
"""

from __future__ import annotations

import hashlib
import re
import time

import pytest

import harness
import mta

FROM = "alice@example.org"
RCPT = "bob@example.net"
ANSWERED = "EHLO answered by smtptap from the server's reply, not forwarded: "
STILL_PLAIN = ("the client's STARTTLS ended at smtptap, so the server's connection is still in "
               "plain text and was greeted already")
STILL_TLS = ("the client's STARTTLS ended at smtptap, so the server's connection is still in "
             "the same TLS and was greeted already")
NO_AUTH_HINT = ("the server offers no AUTH on its plain-text connection; if it offers AUTH only "
                "inside TLS (e.g. Postfix smtpd_tls_auth_only), the client cannot log in: its "
                "TLS ends at smtptap and the upstream leg is plain text; use -u "
                "starttls:HOST:PORT so smtptap upgrades the upstream leg too")
UNPAIRED = "lint: reply that no command asked for"
# A 503 reply as swaks, the transcript or OpenSMTPD's log show it (not digits in a port).
REPLY_503 = re.compile(r"(?:^|[\s\"'>])503[ -]", re.M)

MTAS = {"exim": mta.Exim, "postfix": mta.PostfixSmtpd, "opensmtpd": mta.OpenSmtpd}
# A log line for each finished SMTP session (Postfix counts its EHLOs only there).
SESSION_DONE = {
    "exim": r"(?:SMTP connection from .* closed by QUIT|no MAIL in SMTP connection from )",
    "postfix": r"postfix/smtpd\[\d+\]: disconnect from ",
    "opensmtpd": r"smtp disconnected reason=",
}


# --------------------------------------------------------------------------- fixtures & helpers


@pytest.fixture
def swaks_ok(need):
    need("swaks")


@pytest.fixture
def swaks_tls(need):
    need("swaks")
    rc, out, err = harness.run([harness.tool_path("swaks"), "--support"])
    if "=== TLS supported" not in out + err:
        pytest.skip("swaks cannot do TLS (Debian package libnet-ssleay-perl)")


@pytest.fixture
def tapca(tmp_path):
    """(ca_dir, ca_pem): smtptap's CA, which swaks --tls-verify trusts."""
    return harness.smtptap_ca(tmp_path)


@pytest.fixture
def upca(tmp_path):
    """The CA behind the MTA's certificate (smtptap trusts it with --upstream-ca)."""
    return harness.CertAuthority(str(tmp_path))


@pytest.fixture
def upcert(upca):
    return upca.issue(["localhost"])


def trust_tap(ca_pem):
    """swaks options: STARTTLS with smtptap, its leaf verified against smtptap's CA."""
    return ("--tls", "--tls-verify", "--tls-ca-path", ca_pem, "--tls-sni", "localhost")


def send(t, tmp_path, msg, *args, rcpts=(RCPT,)):
    """swaks through smtptap T delivering MSG; asserts exit status 0; returns its output."""
    rc, out, err = harness.swaks_send(t.hostport, FROM, list(rcpts), msg, str(tmp_path),
                                      "--ehlo", "client.test", *args)
    assert rc == 0, f"swaks rc {rc}\n{out}\n{err}\n--- smtptap ---\n{t.transcript()}"
    return out


def finish(t, up, kind):
    """Wait until smtptap ended its session and the MTA logged the end of its own."""
    t.wait_session_end()
    rx = re.compile(SESSION_DONE[kind], re.M)
    deadline = time.monotonic() + 5
    while not rx.search(up.log()):
        assert time.monotonic() < deadline, f"{kind} logged no finished session:\n{up.log()}"
        time.sleep(0.02)


def stored(up, msg, rcpts=(RCPT,)):
    """The MTA stored MSG byte for byte, once per recipient."""
    got = up.wait_for_messages(len(rcpts))
    assert sorted(m.rcpt for m in got) == sorted(rcpts), [m.rcpt for m in got]
    for m in got:
        assert m.data == msg, f"stored:\n{m.raw!r}\nsent:\n{msg!r}"


def info(t, prefix):
    return [l for l in t.lines() if l.marker == "==" and l.text.startswith(prefix)]


def message_summary(t, msg):
    """The transcript's summary names the message's size and SHA-256 as delivered."""
    sha = hashlib.sha256(msg).hexdigest()
    assert re.search(rf"== message 1: {len(msg)} bytes, \d+ lines, sha256 {sha}$",
                     t.transcript(), re.M), t.transcript()


def exim_arrivals(up):
    return [l for l in up.log().splitlines() if " <= " in l]


def assert_server_tls(kind, up, *, starttls):
    """The MTA's own log says its connection was in TLS (STARTTLS or implicit)."""
    log = up.log()
    if kind == "exim":
        arr = exim_arrivals(up)
        assert len(arr) == 1 and " X=TLS" in arr[0] and re.search(r" P=esmtpsa? ", arr[0]), arr
        assert ("SMTPTAP-STARTTLS" in log) == starttls, log
    else:
        assert re.search(r"TLS connection established from \S+: TLSv1\.[23] ", log), log
        st = up.disconnect_stats()
        assert len(st) == 1, st
        assert (st[0].get("starttls") == "1") == starttls, st


def assert_server_plain(kind, up):
    """The MTA's own log shows no TLS (OpenSMTPD here cannot do TLS at all)."""
    log = up.log()
    if kind == "exim":
        arr = exim_arrivals(up)
        assert len(arr) == 1 and " P=esmtp " in arr[0] and " X=" not in arr[0], arr
    elif kind == "postfix":
        assert "TLS connection established" not in log, log
        assert "starttls" not in up.disconnect_stats()[0], up.disconnect_stats()


# --------------------------------------------------------------------------- all three MTAs


@pytest.mark.parametrize("prefix", ["plain:", ""], ids=["plain-prefix", "no-prefix"])
@pytest.mark.parametrize("kind", ["exim", "postfix", "opensmtpd"])
def test_plain_client_plain_mta(tap, swaks_ok, tmp_path, kind, prefix):
    """A plain client through smtptap to a plain MTA (`plain:`, and no prefix: smtptap's
    upgrade probe is the client's own EHLO): delivered byte for byte, the MTA's greeting and
    queue reply reach the client, the server saw one EHLO and nothing in TLS."""
    msg = harness.make_message(f"{kind} plain")
    with MTAS[kind]() as up:
        t = tap(["-u", f"{prefix}{up.hostport}"])
        out = send(t, tmp_path, msg)
        finish(t, up, kind)
        stored(up, msg)
        assert up.greeting in out, out
        assert up.helo_counts() == [1], up.log()
        assert_server_plain(kind, up)
    message_summary(t, msg)
    assert not info(t, ANSWERED), t.transcript()
    assert not REPLY_503.search(out + t.transcript()), out


@pytest.mark.parametrize("kind", ["exim", "postfix", "opensmtpd"])
def test_client_starttls_plain_upstream(tap, swaks_tls, tapca, tmp_path, kind):
    """swaks --tls, verifying smtptap's CA, behind `-u plain:`: STARTTLS ends at smtptap, and
    the client's EHLO inside TLS is answered from the server's kept reply.  The MTA sees
    exactly one EHLO on its plain connection; OpenSMTPD, which refuses a second one with
    503, takes the message (the case that was broken)."""
    ca_dir, ca_pem = tapca
    msg = harness.make_message(f"{kind} client starttls")
    with MTAS[kind]() as up:
        t = tap(["--ca-dir", ca_dir, "-u", f"plain:{up.hostport}"])
        out = send(t, tmp_path, msg, *trust_tap(ca_pem))
        finish(t, up, kind)
        stored(up, msg)
        assert up.helo_counts() == [1], up.log()
        assert_server_plain(kind, up)
        log = up.log()
    assert "=== TLS started" in out, out
    inside = out[out.index("=== TLS started"):]
    # The EHLO reply inside TLS is the MTA's own, STARTTLS taken out.
    assert re.search(rf"^<~  250[- ]{re.escape(up.hostname)}\b", inside, re.M), inside
    assert not re.search(r"^<~  250[- ]STARTTLS", inside, re.M), inside
    why = info(t, ANSWERED)
    assert len(why) == 1 and why[0].text.startswith(
        ANSWERED + STILL_PLAIN + " (EHLO client.test)"), t.transcript()
    message_summary(t, msg)
    if kind == "opensmtpd":
        for where, text in (("swaks", out), ("transcript", t.transcript()), ("log", log)):
            assert not REPLY_503.search(text), f"a 503 in the {where}:\n{text}"
        assert "Already identified" not in log, log


# --------------------------------------------------------------------------- Exim and Postfix

TLS_MTAS = ["exim", "postfix"]


@pytest.mark.parametrize("client_tls", [False, True], ids=["plain-client", "starttls-client"])
@pytest.mark.parametrize("kind", TLS_MTAS)
def test_starttls_upstream(tap, swaks_tls, tapca, upca, upcert, tmp_path, kind, client_tls):
    """`-u starttls:localhost:PORT --upstream-ca CA`: smtptap upgrades the MTA's connection,
    so the MTA sees two EHLOs, one in plain text and one inside TLS, and logs TLS.  When the
    client also does STARTTLS with smtptap, its EHLO inside TLS is answered from the
    server's reply: the MTA still sees exactly two (before the fix Postfix logged ehlo=3)."""
    ca_dir, ca_pem = tapca
    msg = harness.make_message(f"{kind} starttls upstream")
    with MTAS[kind](tls=upcert) as up:
        t = tap(["--ca-dir", ca_dir, "-u", f"starttls:localhost:{up.port}",
                 "--upstream-ca", upca.cert_path])
        out = send(t, tmp_path, msg, *(trust_tap(ca_pem) if client_tls else ()))
        finish(t, up, kind)
        stored(up, msg)
        assert up.helo_counts() == [2], up.log()
        assert_server_tls(kind, up, starttls=True)
        log = up.log()
        if kind == "exim":
            assert re.search(r"SMTPTAP-HELO \S+ EHLO client\.test tls=none\n"
                             r".*SMTPTAP-STARTTLS .*\n"
                             r".*SMTPTAP-HELO \S+ EHLO client\.test tls=TLS1\.[23]:", log), log
        else:
            st = up.disconnect_stats()[0]
            assert st["ehlo"] == "2" and st["starttls"] == "1", st
    assert re.search(r"^#1 \+\S+ == upstream TLS: TLSv1\.[23] .*, subject CN=localhost, .*, "
                     r"verified$", t.transcript(), re.M), t.transcript()
    why = info(t, ANSWERED)
    if client_tls:
        assert "=== TLS started" in out, out
        assert len(why) == 1 and why[0].text.startswith(ANSWERED + STILL_TLS), t.transcript()
    else:
        assert not why, t.transcript()
    message_summary(t, msg)


@pytest.mark.parametrize("client_tls", [False, True], ids=["plain-client", "starttls-client"])
@pytest.mark.parametrize("kind", TLS_MTAS)
def test_implicit_tls_upstream(tap, swaks_tls, tapca, upca, upcert, tmp_path, kind, client_tls):
    """`-u tls:localhost:TLSPORT` (the MTA's implicit-TLS port): delivered, the MTA logs TLS
    without STARTTLS, and sees one EHLO, also when the client did STARTTLS with smtptap."""
    ca_dir, ca_pem = tapca
    msg = harness.make_message(f"{kind} implicit tls")
    with MTAS[kind](tls=upcert) as up:
        t = tap(["--ca-dir", ca_dir, "-u", f"tls:localhost:{up.tls_port}",
                 "--upstream-ca", upca.cert_path])
        send(t, tmp_path, msg, *(trust_tap(ca_pem) if client_tls else ()))
        finish(t, up, kind)
        stored(up, msg)
        assert up.helo_counts() == [1], up.log()
        assert_server_tls(kind, up, starttls=False)
    assert len(info(t, ANSWERED)) == (1 if client_tls else 0), t.transcript()
    message_summary(t, msg)


@pytest.mark.parametrize("mode", ["plain", "starttls-both"])
@pytest.mark.parametrize("kind", TLS_MTAS)
def test_pipelining(tap, swaks_tls, tapca, upca, upcert, tmp_path, kind, mode):
    """swaks --pipeline with two recipients (plain client behind `plain:`, and STARTTLS on
    both legs behind `starttls:`): MAIL, RCPT, RCPT, DATA reach the MTA in one go, both
    copies are stored byte for byte, and the transcript pairs every reply with a command
    (no unpaired-reply lint, one final reply per command plus the greeting)."""
    ca_dir, ca_pem = tapca
    rcpts = (RCPT, "carol@example.com")
    msg = harness.make_message(f"{kind} pipelined", to=rcpts)
    tls = mode != "plain"
    with MTAS[kind](tls=upcert if tls else None) as up:
        spec = f"starttls:localhost:{up.port}" if tls else f"plain:{up.hostport}"
        t = tap(["--ca-dir", ca_dir, "-u", spec, *(("--upstream-ca", upca.cert_path) if tls
                                                   else ())])
        out = send(t, tmp_path, msg, "--pipeline", *(trust_tap(ca_pem) if tls else ()),
                   rcpts=rcpts)
        finish(t, up, kind)
        stored(up, msg, rcpts)
        assert up.helo_counts() == [2 if tls else 1], up.log()
    assert "PIPELINING" in out, out
    assert UNPAIRED not in t.transcript(), t.transcript()
    assert not [l for l in t.lines() if l.marker in ("**", "<**", "**>")], t.transcript()
    d = harness.dialog(t.lines())
    cmds = [x for k, x in d if k == "C"]
    replies = [x for k, x in d if k == "R"]
    assert len(replies) == len(cmds) + 2, d  # + the greeting and the reply to the message
    # The pipelined group went up as one: four commands, then their four replies.
    i = next(i for i, (k, x) in enumerate(d) if k == "C" and x.startswith("MAIL FROM:"))
    assert [k for k, _ in d[i:i + 8]] == ["C"] * 4 + ["R"] * 4, d
    assert [x.split()[0] for _, x in d[i + 4:i + 8]] == ["250", "250", "250", "354"], d


def raw_bdat(port, msg, rcpt=RCPT, chunks=1):
    """EHLO, MAIL, RCPT, BDAT (CHUNKS chunks, the last one `BDAT n LAST`), QUIT on a plain
    socket through smtptap; returns the EHLO reply and the last BDAT reply."""
    with harness.RawSmtpClient("127.0.0.1", port) as c:
        assert c.code() == 220
        ehlo = c.cmd(b"EHLO raw.test")
        assert c.cmd(b"MAIL FROM:<%s>" % FROM.encode())[-1][:3] == b"250"
        assert c.cmd(b"RCPT TO:<%s>" % rcpt.encode())[-1][:3] == b"250"
        cut = len(msg) // chunks
        parts = [msg[i * cut:(i + 1) * cut if i < chunks - 1 else len(msg)]
                 for i in range(chunks)]
        for i, part in enumerate(parts):
            last = b" LAST" if i == chunks - 1 else b""
            c.send(b"BDAT %d%s\r\n" % (len(part), last) + part)
            reply = c.reply()
            assert reply[-1][:3] == b"250", reply
        assert c.cmd(b"QUIT")[-1][:3] == b"221"
    return ehlo, reply


@pytest.mark.parametrize("chunks", [1, 2])
@pytest.mark.parametrize("kind", TLS_MTAS)
def test_bdat(tap, tmp_path, kind, chunks):
    """A raw client sends EHLO, MAIL, RCPT and the message with BDAT (`BDAT n LAST`, or a
    chunk and then `BDAT m LAST`) through smtptap: the MTA offers CHUNKING through smtptap,
    stores the message byte for byte and logs the BDAT (Exim's K flag, Postfix bdat=N)."""
    msg = harness.make_message(f"{kind} bdat", body_lines=[
        "BDAT content is raw:", ".a leading dot stays single", ".", "last line"])
    with MTAS[kind]() as up:
        t = tap(["-u", f"plain:{up.hostport}"])
        ehlo, _ = raw_bdat(t.port, msg, chunks=chunks)
        assert b"250-CHUNKING" in ehlo or b"250 CHUNKING" in ehlo, ehlo
        finish(t, up, kind)
        stored(up, msg)
        assert up.helo_counts() == [1], up.log()
        if kind == "exim":
            arr = exim_arrivals(up)
            assert len(arr) == 1 and re.search(r" P=esmtp .*\bK\b", arr[0]), arr
        else:
            st = up.disconnect_stats()
            assert st[0].get("bdat") == str(chunks) and "data" not in st[0], st
    bdats = [l.text for l in t.lines() if l.is_command and re.match(r"BDAT \d+( LAST)?$", l.text)]
    last = len(msg) - (len(msg) // chunks) * (chunks - 1)
    assert len(bdats) == chunks and bdats[-1] == f"BDAT {last} LAST", t.transcript()
    assert re.search(rf"== message 1: {len(msg)} bytes", t.transcript()), t.transcript()
    assert UNPAIRED not in t.transcript(), t.transcript()


# --------------------------------------------------------------------------- AUTH only inside TLS


def auth_args(up):
    return ("-a", "PLAIN", "-au", up.user, "-ap", up.password)


@pytest.mark.parametrize("kind", TLS_MTAS)
def test_auth_in_tls_behind_starttls_upstream(tap, swaks_tls, need, tapca, upca, upcert,
                                              tmp_path, kind):
    """The MTA offers AUTH only inside TLS (auth="tls").  Behind `-u starttls:` the client
    (swaks --tls -a PLAIN) logs in: the MTA logs the login, --decode-auth shows the decoded
    PLAIN response and its outcome, and the MTA still saw two EHLOs."""
    if kind == "postfix":
        need("saslpasswd2")
    ca_dir, ca_pem = tapca
    msg = harness.make_message(f"{kind} auth")
    with MTAS[kind](tls=upcert, auth="tls") as up:
        t = tap(["--ca-dir", ca_dir, "-u", f"starttls:localhost:{up.port}",
                 "--upstream-ca", upca.cert_path, "--decode-auth"])
        out = send(t, tmp_path, msg, *trust_tap(ca_pem), *auth_args(up))
        finish(t, up, kind)
        stored(up, msg)
        assert up.helo_counts() == [2], up.log()
        log = up.log()
        if kind == "exim":
            arr = exim_arrivals(up)
            assert len(arr) == 1 and " A=PLAIN:testuser " in arr[0] and " P=esmtpsa " in arr[0] \
                and " X=TLS" in arr[0], arr
        else:
            assert re.search(r"client=\S+, sasl_method=PLAIN, sasl_username=testuser@postfix\.test",
                             log), log
            st = up.disconnect_stats()[0]
            assert st["auth"] == "1" and st["ehlo"] == "2", st
    assert re.search(r"^<~  235 ", out, re.M), out
    decoded = [l.text for l in t.lines() if l.marker == "##"]
    assert f'AUTH PLAIN authzid="" authcid="{up.user}" password="{up.password}"' in decoded, \
        t.transcript()
    assert any(re.match(rf"AUTH PLAIN for {up.user}: accepted \(235\b", d) for d in decoded), \
        t.transcript()
    assert not info(t, "the server offers no AUTH"), t.transcript()


@pytest.mark.parametrize("kind", TLS_MTAS)
def test_auth_in_tls_behind_plain_upstream(tap, swaks_tls, need, tapca, upcert, tmp_path,
                                           kind):
    """The same MTA behind `-u plain:`: the client's TLS ends at smtptap and the MTA's
    connection stays plain, so the MTA offers no AUTH; the client is shown none (swaks -a
    gives up, nothing is sent), the transcript says why and what to do, and the MTA saw one
    EHLO, no AUTH and no message."""
    if kind == "postfix":
        need("saslpasswd2")
    ca_dir, ca_pem = tapca
    with MTAS[kind](tls=upcert, auth="tls") as up:
        t = tap(["--ca-dir", ca_dir, "-u", f"plain:{up.hostport}"])
        rc, out, err = harness.swaks(t.hostport, "--from", FROM, "--to", RCPT,
                                     "--ehlo", "client.test", *trust_tap(ca_pem),
                                     *auth_args(up))
        finish(t, up, kind)
        assert up.helo_counts() == [1], up.log()
        log = up.log()
        assert "SMTPTAP-AUTH" not in log and "sasl_method" not in log, log
        if kind == "postfix":
            assert "auth" not in up.disconnect_stats()[0], up.disconnect_stats()
        assert up.messages() == []
    assert rc != 0 and "Host did not advertise authentication" in out + err, \
        f"swaks rc {rc}\n{out}\n{err}"
    assert "=== TLS started" in out, out
    inside = out[out.index("=== TLS started"):]
    assert not re.search(r"^<~  250[- ]AUTH", inside, re.M), inside
    assert not re.search(r"^ ~> AUTH", inside, re.M), inside
    assert len(info(t, NO_AUTH_HINT)) == 1, t.transcript()
    assert len(info(t, ANSWERED + STILL_PLAIN)) == 1, t.transcript()
