"""smtptap in front of real servers (aiosmtpd, Postfix smtp-sink) with real clients.

Per session we check what a user sees: the client succeeded, the server got the
message unchanged (envelope and content), and the transcript shows the client's
commands and the SERVER's own replies, in order, not smtptap's."""

import re
import smtplib

import pytest

import harness
from harness import RawSmtpClient, make_message

FROM = "alice@example.org"
RCPTS = ["bob@example.net", "carol@example.net"]
SUMMARY_RE = re.compile(r"^message (\d+): (\d+) bytes, (\d+) lines?, sha256 [0-9a-f]{64}"
                        r"(?: \([^)]*\))?$")
END_RE = re.compile(r"^session ended after \d+(\.\d+)?s: \d+ commands?, (\d+) messages?, "
                    r"\d+ bytes up, \d+ bytes down; \d+ ms waiting for the server, \d+ ms for the client$")


class Upstream:
    """A real server plus what it means to have received a message."""

    def __init__(self, kind, host="127.0.0.1"):
        self.kind = kind
        self.srv = harness.AiosmtpdServer(host=host) if kind == "aiosmtpd" else harness.SmtpSink(host=host)

    def __enter__(self):
        self.srv.start()
        return self

    def __exit__(self, *exc):
        self.srv.stop()

    @property
    def hostport(self):
        return self.srv.hostport

    @property
    def greeting(self):
        return self.srv.greeting

    @property
    def hostname(self):
        return self.srv.hostname

    @property
    def queued_re(self):
        return r"^250 2\.0\.0 OK queued as aio\d+$" if self.kind == "aiosmtpd" else r"^250 2\.0\.0 Ok$"

    def received(self, n=1):
        """[(mail_from, [rcpts], content with CRLF)] as the server got them."""
        out = []
        if self.kind == "aiosmtpd":
            for m in self.srv.wait_for_messages(n):
                out.append((m.mail_from, m.rcpt_tos, m.content))
        else:
            for m in self.srv.wait_for_messages(n):
                addr = lambda a: re.match(r"<([^>]*)>", a).group(1)  # noqa: E731
                out.append((addr(m.mail_args), [addr(r) for r in m.rcpt_args],
                            m.content.replace(b"\n", b"\r\n")))
        return out


@pytest.fixture(params=["aiosmtpd", "smtp-sink"])
def upstream(request, need):
    if request.param == "smtp-sink":
        need("smtp-sink")
    with Upstream(request.param) as up:
        yield up


def send_with(client, need, port, msg, rcpts, tmp_path, host="127.0.0.1"):
    if client == "swaks":
        need("swaks")
        return harness.swaks_send(harness.fmt_hostport(host, port), FROM, rcpts, msg, str(tmp_path))
    if client == "curl":
        need("curl")
        f = tmp_path / "msg.eml"
        f.write_bytes(msg)
        return harness.curl_send(host, port, FROM, rcpts, str(f))
    if client == "msmtp":
        need("msmtp")
        return harness.msmtp_send(host, port, FROM, rcpts, msg, str(tmp_path))
    if client == "smtplib":
        try:
            refused = harness.smtplib_send(host, port, FROM, rcpts, msg)
        except smtplib.SMTPException as e:
            return 1, "", repr(e)
        return (0 if refused == {} else 1), "", repr(refused)
    raise ValueError(client)


def check_relayed_session(t, up, sid=1, *, rcpts=RCPTS, messages=1):
    t.wait_session_end(sid)
    lines = t.lines(sid)
    tr = t.transcript()
    facts = [l.text for l in lines if l.marker == "=="]
    assert re.match(rf"^127\.0\.0\.1:\d+ connected to 127\.0\.0\.1:{t.port}, upstream "
                    + re.escape(up.hostport) + r"\b", facts[0]), facts[0]
    assert any(re.match(r"^upstream " + re.escape(up.hostport) + r" connected from 127\.0\.0\.1:\d+$", f)
               for f in facts), f"no '== upstream {up.hostport} connected from' line:\n{tr}"
    replies = [l.text for l in lines if l.is_reply]
    assert replies[0] == up.greeting, f"first reply should be the server's greeting {up.greeting!r}: {replies[:1]}"
    assert f"250-{up.hostname}" in replies, f"the server's EHLO reply is missing:\n{tr}"
    own = [l.raw for l in lines if l.is_reply and l.text.endswith("[smtptap]")]
    assert not own, f"relayed replies marked as smtptap's own: {own}"
    cmds = [harness.norm_cmd(l.text) for l in lines if l.is_command]
    assert any(re.match(r"^(EHLO|HELO) ", c) for c in cmds), cmds
    assert any(c.startswith(f"MAIL FROM:<{FROM}>") for c in cmds), cmds
    for r in rcpts:
        assert any(c.startswith(f"RCPT TO:<{r}>") for c in cmds), f"no RCPT for {r}: {cmds}"
    assert "QUIT" in cmds, cmds
    sums = [m for m in (SUMMARY_RE.match(l.text) for l in lines if l.marker == "==") if m]
    assert [int(m.group(1)) for m in sums] == list(range(1, messages + 1)), f"message summaries:\n{tr}"
    assert len([r for r in replies if re.match(up.queued_re, r)]) == messages, \
        f"the server's end-of-data reply ({up.queued_re}) should appear {messages}x:\n{tr}"
    assert any(r.startswith("221") for r in replies), replies
    m = END_RE.match(lines[-1].text)
    assert m and int(m.group(2)) == messages, f"last line should end the session: {lines[-1].raw}"
    return lines


@pytest.mark.parametrize("client", ["swaks", "curl", "msmtp", "smtplib"])
def test_client_through_smtptap(client, upstream, tap, need, tmp_path):
    t = tap(["-u", upstream.hostport])
    msg = make_message(f"relayed by {client}", to=RCPTS)
    rc, out, err = send_with(client, need, t.port, msg, RCPTS, tmp_path)
    assert rc == 0, f"{client} failed through smtptap (rc {rc})\n{out}\n{err}"
    got = upstream.received(1)
    assert got == [(FROM, RCPTS, msg)], f"server received {got!r}\nexpected {(FROM, RCPTS, msg)!r}"
    lines = check_relayed_session(t, upstream)
    assert f"Subject: relayed by {client}" in [l.text for l in lines if l.is_command]
    if client == "swaks":
        # what swaks received is what the transcript shows the server said
        seen = [l.text for l in lines if l.is_reply]
        assert [r for r in seen if "STARTTLS" not in r] == \
            [r for r in harness.swaks_replies(out) if "STARTTLS" not in r]


def without_offer(replies):
    """What the client received, less the STARTTLS smtptap adds to the EHLO reply by default
    (the transcript shows the server's words and says what smtptap added)."""
    assert "250-STARTTLS" in replies, replies
    return [r for r in replies if r != "250-STARTTLS"]


def test_two_messages_one_session(upstream, tap):
    t = tap(["-u", upstream.hostport])
    msgs = [make_message(f"number {i}", to=RCPTS) for i in (1, 2)]
    with smtplib.SMTP("127.0.0.1", t.port, local_hostname="client.test", timeout=20) as s:
        for m in msgs:
            assert s.sendmail(FROM, RCPTS, m) == {}
        assert s.quit()[0] == 221
    got = upstream.received(2)
    assert sorted(got) == sorted((FROM, RCPTS, m) for m in msgs), got  # smtp-sink: order may tie
    check_relayed_session(t, upstream, messages=2)


def test_every_server_reply_shows_its_latency(upstream, tap):
    """Each reply line from the server ends with the time since its command's last byte
    (`<-  250 2.1.5 Ok  (0.4 ms)`), the greeting excepted; the session-end line splits the
    session's time into waiting for the server and for the client, and the first is at
    least the sum of the latencies shown."""
    t = tap(["-u", upstream.hostport])
    with smtplib.SMTP("127.0.0.1", t.port, local_hostname="client.test", timeout=20) as s:
        assert s.sendmail(FROM, RCPTS, make_message("latency", to=RCPTS)) == {}
        assert s.quit()[0] == 221
    t.wait_session_end()
    lines = t.lines(1)
    finals = harness.final_replies(lines)
    assert finals[0].latency_ms is None, finals[0].raw  # the greeting answers no command
    assert all(l.latency_ms is not None and l.latency_ms >= 0 for l in finals[1:]), \
        "\n".join(l.raw for l in finals)
    cont = [l for l in lines if l.is_reply and re.match(r"\d{3}-", l.text)]
    assert all(l.latency_ms is None for l in cont), "latency on a continuation line"
    end = re.search(r"; (\d+) ms waiting for the server, (\d+) ms for the client$",
                    lines[-1].text)
    assert end, lines[-1].raw
    shown = sum(l.latency_ms for l in finals[1:])
    assert int(end.group(1)) >= int(shown) - len(finals), (end.group(0), shown)


# ----------------------------------------------------------------------------- pipelining

def test_swaks_pipeline_replies_in_command_order(tap, need, tmp_path):
    """Distinguishable replies (aiosmtpd fixture names the address, rejects reject*@)."""
    need("swaks")
    rcpts = ["r1@example.net", "r2@example.net", "reject3@example.net", "r4@example.net",
             "r5@example.net"]
    with harness.AiosmtpdServer() as srv:
        t = tap(["-u", srv.hostport])
        msg = make_message("pipelined", to=rcpts)
        rc, out, err = harness.swaks_send(t.hostport, FROM, rcpts, msg, str(tmp_path), "--pipeline")
        assert rc == 0, f"swaks --pipeline rc {rc}\n{out}\n{err}"
        assert "PIPELINING" in out
        accepted = [r for r in rcpts if not r.startswith("reject")]
        assert srv.wait_for_messages(1)[0].rcpt_tos == accepted
        assert srv.messages[0].content == msg
        t.wait_session_end(1)
        lines = t.lines(1)
        d = harness.dialog(lines)
        cmds = [x for k, x in d if k == "C"]
        reps = [x for k, x in d if k == "R"]
        i = cmds.index(f"MAIL FROM:<{FROM}>")
        assert cmds[i:i + len(rcpts) + 2] == \
            [f"MAIL FROM:<{FROM}>"] + [f"RCPT TO:<{r}>" for r in rcpts] + ["DATA"], d
        # replies in command order, each naming its own command's argument
        j = reps.index(f"250 2.1.0 Sender <{FROM}> ok")
        rep = reps[j:j + len(rcpts) + 2]
        want = [f"250 2.1.0 Sender <{FROM}> ok"] + [
            (f"550 5.1.1 Recipient <{r}> rejected" if r.startswith("reject")
             else f"250 2.1.5 Recipient <{r}> ok") for r in rcpts]
        assert rep[:-1] == want and rep[-1].startswith("354"), rep
        assert [l.text for l in lines if l.is_reply] == without_offer(harness.swaks_replies(out))


def test_swaks_pipeline_through_to_smtp_sink(tap, need, smtp_sink, tmp_path):
    need("swaks")
    rcpts = [f"r{i}@example.net" for i in range(1, 7)]
    t = tap(["-u", smtp_sink.hostport])
    msg = make_message("pipelined to smtp-sink", to=rcpts)
    rc, out, err = harness.swaks_send(t.hostport, FROM, rcpts, msg, str(tmp_path), "--pipeline")
    assert rc == 0, f"swaks --pipeline rc {rc}\n{out}\n{err}"
    got = smtp_sink.wait_for_messages(1)[0]
    assert got.rcpt_args == [f"<{r}>" for r in rcpts]
    assert got.content == msg.replace(b"\r\n", b"\n")
    t.wait_session_end(1)
    assert [l.text for l in t.lines(1) if l.is_reply] == without_offer(harness.swaks_replies(out))


def test_pipelined_burst_in_one_write(tap):
    """Commands in one TCP segment, RSET and NOOP mixed in: the client gets one reply
    per command, in order, each the server's answer to that very command."""
    with harness.AiosmtpdServer() as srv:
        t = tap(["-u", srv.hostport])
        with RawSmtpClient("127.0.0.1", t.port) as c:
            assert c.reply() == [srv.greeting.encode()]
            assert any(b"PIPELINING" in l for l in c.cmd(b"EHLO burst.client.test"))
            c.send(b"MAIL FROM:<a1@example.org>\r\nRCPT TO:<x1@example.net>\r\n"
                   b"RCPT TO:<reject2@example.net>\r\nNOOP\r\nRSET\r\n"
                   b"MAIL FROM:<a2@example.org>\r\nRCPT TO:<x3@example.net>\r\nDATA\r\n")
            got = [c.reply()[-1] for _ in range(8)]
            assert got[:7] == [b"250 2.1.0 Sender <a1@example.org> ok",
                               b"250 2.1.5 Recipient <x1@example.net> ok",
                               b"550 5.1.1 Recipient <reject2@example.net> rejected",
                               b"250 OK", b"250 OK",
                               b"250 2.1.0 Sender <a2@example.org> ok",
                               b"250 2.1.5 Recipient <x3@example.net> ok"], got
            assert got[7].startswith(b"354"), got
            c.send(b"Subject: burst\r\n\r\nbody\r\n.\r\nQUIT\r\n")
            assert re.match(rb"^250 2\.0\.0 OK queued as aio1$", c.reply()[-1])
            assert c.reply()[-1].startswith(b"221")
        m = srv.wait_for_messages(1)[0]
        assert (m.mail_from, m.rcpt_tos, m.content) == ("a2@example.org", ["x3@example.net"],
                                                        b"Subject: burst\r\n\r\nbody\r\n")
        t.wait_session_end(1)
        d = harness.dialog(t.lines(1))
        cmds = [x for k, x in d if k == "C"]
        reps = [x for k, x in d if k == "R"]
        assert cmds == ["EHLO burst.client.test", "MAIL FROM:<a1@example.org>",
                        "RCPT TO:<x1@example.net>", "RCPT TO:<reject2@example.net>", "NOOP",
                        "RSET", "MAIL FROM:<a2@example.org>", "RCPT TO:<x3@example.net>",
                        "DATA", "QUIT"], d
        assert reps[0] == srv.greeting
        assert [r[:3] for r in reps[1:]] == ["250", "250", "250", "550", "250", "250", "250",
                                             "250", "354", "250", "221"], reps


# ----------------------------------------------------------------------------- IPv6

def test_ipv6_loopback_session(tap, need, tmp_path):
    need("swaks")
    ok, why = harness.has_ipv6_loopback()
    if not ok:
        pytest.skip(why)
    with harness.AiosmtpdServer(host="::1") as srv:
        t = tap(["-u", srv.hostport], listen="[::1]:0")
        assert t.host == "::1", t.transcript()
        msg = make_message("over IPv6", to=RCPTS)
        rc, out, err = harness.swaks_send(t.hostport, FROM, RCPTS, msg, str(tmp_path))
        assert rc == 0, f"swaks over [::1] rc {rc}\n{out}\n{err}"
        m = srv.wait_for_messages(1)[0]
        assert (m.mail_from, m.rcpt_tos, m.content) == (FROM, RCPTS, msg)
        assert m.peer[0] == "::1"
        t.wait_session_end(1)
        lines = t.lines(1)
        assert re.match(rf"^\[::1\]:\d+ connected to \[::1\]:{t.port}, upstream \[::1\]:{srv.port}\b",
                        lines[0].text), lines[0].raw
        assert any(re.match(rf"^upstream \[::1\]:{srv.port} connected from \[::1\]:\d+$", l.text)
                   for l in lines if l.marker == "=="), t.transcript()
        assert [l.text for l in lines if l.is_reply][0] == srv.greeting
        assert t.wait_for(r"listening on \[::1\]:\d+ \(plain\), upstream \[::1\]:" + str(srv.port))
