"""Record once, replay anywhere (issue 14): sessions recorded through smtptap with
`-d DIR --format jsonl`, read back by `smtptap diff` and replayed by `-u replay:FILE`.

What is checked:
  replay        smtptap as the recorded server (aiosmtpd's, smtp-sink's) to another client
                (smtplib with STARTTLS, swaks with pipelining): the client gets the recorded
                codes in the recorded order (the fault's 450 included) for other recipients
                and another EHLO name; a command the recording does not have gets the 451
                and a '**' line saying where the dialog left the recording, and the replay
                goes on; --replay-strict refuses a changed recipient; --replay-speed 1 keeps
                a recorded wait, 0 does not; AUTH PLAIN recorded with --redact answers
                another user's AUTH as recorded; BDAT's reply comes after the new chunk's
                octets (command-looking ones included); an implicit-TLS session (tls:
                listener) replayed to another implicit-TLS client; [upstream] target = replay:FILE; a broken
                capture stops the start with exit 65 naming the line
  replay-client the recorded client (swaks, pipelined) against the server it was recorded
                against: every reply of the recorded class, exit 0; against smtp-sink -r RCPT:
                the RCPT row marked, exit 1; a message the capture has whole (-v) is sent
                byte for byte, one it has not is a synthetic body of the recorded size (said
                so); starttls: and tls: towards smtptap's own listeners; unreachable: 69
  diff          the same client (swaks, Python smtplib) recorded against aiosmtpd and against
                Postfix smtp-sink: the table shows the first divergence (EHLO capabilities, a
                fault-shaped 450 on RCPT), exit 1; a session against itself: no '!' row,
                "the same dialog", exit 0; a changed recipient's case and SIZE= value are no
                difference; a slow reply (a delay fault) differs only beyond --time-threshold
  broken files  a truncated capture, a hand-broken line, a capture without its end, a file
                that is not jsonl: exit 65 and a message naming the file and the line, never
                a crash; a missing file: 66; bad usage: 64
"""

from __future__ import annotations

import json
import re
import smtplib
import ssl
import subprocess
import time
from pathlib import Path
from typing import List

import pytest

import harness
from harness import make_message

FROM = "alice@example.org"
BUSY_FAULT = "RCPT *@busy.example: reply 450 4.2.0 busy"


def smtptap(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
    return subprocess.run(harness.wrapped([harness.smtptap_bin(), *args]), capture_output=True,
                          text=True, timeout=timeout)


def record(tap_factory, upstream: str, capdir: Path, client, *extra: str) -> Path:
    """Runs client(hostport) through a fresh smtptap recording jsonl into capdir; the path of
    the session's capture once the session has ended."""
    capdir.mkdir(parents=True, exist_ok=True)
    before = set(capdir.glob("*.jsonl"))
    tap = tap_factory(["-u", upstream, "-d", str(capdir), "--format", "jsonl", *extra])
    client(tap.hostport, tap)
    tap.wait_session_end()
    tap.stop()
    new = sorted(set(capdir.glob("*.jsonl")) - before)
    assert len(new) == 1, new
    return new[0]


def swaks_client(*args: str):
    def run(hostport: str, tap) -> None:
        rc, out, err = harness.swaks(hostport, "--from", FROM, *args)
        assert rc in (0, 24, 25), (rc, out, err)  # 24/25: swaks saw a recipient refused
    return run


def smtplib_client(rcpts: List[str]):
    def run(hostport: str, tap) -> None:
        host, port = hostport.rsplit(":", 1)
        with smtplib.SMTP(host, int(port), timeout=20) as c:
            c.ehlo("replay.test")
            try:
                c.sendmail(FROM, rcpts, make_message(frm=FROM, to=[rcpts[0]]))
            except smtplib.SMTPRecipientsRefused:
                pass
    return run


def table_rows(out: str) -> List[str]:
    return [l for l in out.splitlines() if l[:1] in (" ", "!")]


@pytest.fixture
def pair(tap, aiosmtpd, tmp_path):
    """swaks (pipelining, a recipient at busy.example that a fault refuses) recorded twice
    against aiosmtpd and once against smtp-sink."""
    client = swaks_client("--to", "bob@example.net,x@busy.example", "--pipeline")
    a1 = record(tap, aiosmtpd.hostport, tmp_path / "a1", client, "--fault", BUSY_FAULT)
    a2 = record(tap, aiosmtpd.hostport, tmp_path / "a2", client, "--fault", BUSY_FAULT)
    with harness.SmtpSink() as sink:
        b = record(tap, sink.hostport, tmp_path / "b", client)
    return a1, a2, b


def test_diff_of_a_session_with_itself_shows_nothing(pair):
    a1, _, _ = pair
    r = smtptap("diff", str(a1), str(a1))
    assert r.returncode == 0, r
    rows = table_rows(r.stdout)
    assert not [l for l in rows if l.startswith("!")], r.stdout
    assert r.stdout.splitlines()[-1] == f"{a1} and {a1}: the same dialog ({len(rows) - 1} steps)"
    # the recorded dialog, in the client's order: the fault's 450 after bob's 250
    steps = [l.split() for l in rows[1:]]
    rcpts = [s for s in steps if s[1] == "RCPT"]
    assert [s[2] for s in rcpts] == ["TO:<bob@example.net>", "TO:<x@busy.example>"], r.stdout
    assert rcpts[0][3:5] == ["250", "2.1.5"] and rcpts[1][3:6] == ["450", "4.2.0", "[smtptap]"]


def test_diff_of_two_runs_against_the_same_server_is_empty(pair):
    a1, a2, _ = pair
    r = smtptap("diff", str(a1), str(a2))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "the same dialog" in r.stdout


def test_diff_against_another_server_shows_the_first_divergence(pair):
    a1, _, b = pair
    r = smtptap("diff", str(a1), str(b))
    assert r.returncode == 1, r.stdout + r.stderr
    rows = table_rows(r.stdout)
    bad = [l for l in rows if l.startswith("!")]
    assert bad, r.stdout
    # smtp-sink has other capabilities than aiosmtpd: the EHLO row is the first to differ
    assert bad[0].split()[2:4] == ["EHLO", "vm"] or bad[0].split()[2] == "EHLO", r.stdout
    assert "capabilities:" in bad[0]
    # the busy recipient: aiosmtpd's run had the fault's 450, smtp-sink's none
    busy = [l for l in rows if "TO:<x@busy.example>" in l]
    assert busy and busy[0].startswith("!") and "450 4.2.0 [smtptap]" in busy[0], r.stdout
    last = r.stdout.splitlines()[-1]
    assert last.startswith(f"{a1} and {b} differ in ") and "first at step 2 (A line" in last, last


def test_diff_ignores_address_case_and_size_but_not_a_code(tap, aiosmtpd, tmp_path):
    def client(rcpt, size):
        def run(hostport, t):
            host, port = hostport.rsplit(":", 1)
            with smtplib.SMTP(host, int(port), timeout=20) as c:
                c.ehlo("replay.test")
                c.mail(FROM, [f"SIZE={size}"])
                c.rcpt(rcpt)
                try:
                    c.data(make_message(frm=FROM, to=[rcpt]))
                except smtplib.SMTPDataError:  # no valid recipient: 503 / 554
                    pass
        return run
    a = record(tap, aiosmtpd.hostport, tmp_path / "a", client("bob@example.net", 100))
    b = record(tap, aiosmtpd.hostport, tmp_path / "b", client("Bob@EXAMPLE.net", 2000))
    r = smtptap("diff", str(a), str(b))
    assert r.returncode == 0, r.stdout
    c = record(tap, aiosmtpd.hostport, tmp_path / "c", client("bob@busy.example", 100),
               "--fault", BUSY_FAULT)
    r = smtptap("diff", str(a), str(c))
    assert r.returncode == 1, r.stdout
    bad = [l for l in table_rows(r.stdout) if l.startswith("!")]
    assert len(bad) >= 1 and "RCPT TO:<bob@example.net>" in bad[0], r.stdout
    assert "command: B sent RCPT TO:<bob@busy.example>" in bad[0] and "code" in bad[0], r.stdout


def test_diff_reports_a_slow_reply_beyond_the_threshold(tap, aiosmtpd, tmp_path):
    client = smtplib_client(["bob@example.net"])
    a = record(tap, aiosmtpd.hostport, tmp_path / "a", client)
    b = record(tap, aiosmtpd.hostport, tmp_path / "b", client, "--fault", "MAIL: delay 1500ms")
    r = smtptap("diff", str(a), str(b))
    assert r.returncode == 1, r.stdout
    bad = [l for l in table_rows(r.stdout) if l.startswith("!")]
    assert len(bad) == 1 and "MAIL FROM:<alice@example.org>" in bad[0], r.stdout
    assert "time: 0.0" in bad[0] and " s vs 1.5" in bad[0], bad[0]
    r = smtptap("diff", "--time-threshold", "3s", str(a), str(b))
    assert r.returncode == 0, r.stdout


@pytest.fixture
def capture(tap, aiosmtpd, tmp_path):
    return record(tap, aiosmtpd.hostport, tmp_path / "cap", smtplib_client(["bob@example.net"]))


def test_broken_capture_files_name_the_line(capture, tmp_path):
    text = capture.read_text()
    lines = text.splitlines(keepends=True)
    cases = []
    truncated = tmp_path / "truncated.jsonl"  # cut in the middle of its 6th line
    truncated.write_text("".join(lines[:5]) + lines[5][: len(lines[5]) // 2])
    cases.append((truncated, 6, "not valid JSON", "truncated?"))
    cut = tmp_path / "cut.jsonl"  # cut after a whole line: no "end"
    cut.write_text("".join(lines[:7]))
    cases.append((cut, 8, 'without the session\'s "end" event', ""))
    broken = tmp_path / "broken.jsonl"  # a hand edit that broke line 4
    broken.write_text("".join(lines[:3]) + lines[3].replace('"kind":', '"kind" ') + "".join(lines[4:]))
    cases.append((broken, 4, "not valid JSON", ""))
    nokind = tmp_path / "nokind.jsonl"
    obj = json.loads(lines[2])
    del obj["kind"]
    nokind.write_text("".join(lines[:2]) + json.dumps(obj) + "\n" + "".join(lines[3:]))
    cases.append((nokind, 3, 'no "kind"', ""))
    text_file = tmp_path / "transcript.txt"
    text_file.write_text("#1 +0.000 == 127.0.0.1:1 connected\n")
    cases.append((text_file, 1, "not valid JSON", ""))
    for path, line, words, more in cases:
        for args in ([str(capture), str(path)], [str(path), str(capture)]):
            r = smtptap("diff", *args)
            assert r.returncode == 65, (path.name, r)
            assert r.stdout == "", r.stdout
            msg = r.stderr.strip()
            assert msg.startswith(f"smtptap diff: {path}: line {line}: "), msg
            assert words in msg and more in msg, msg
            harness.assert_no_sanitizer_report(r.stderr)


def test_diff_usage_and_missing_files(capture, tmp_path):
    r = smtptap("diff", str(capture))
    assert r.returncode == 64 and "give two capture files" in r.stderr, r
    r = smtptap("diff", "--bogus", str(capture), str(capture))
    assert r.returncode == 64 and "unknown option --bogus" in r.stderr, r
    r = smtptap("diff", "--time-threshold", "soon", str(capture), str(capture))
    assert r.returncode == 64 and "--time-threshold soon" in r.stderr, r
    missing = tmp_path / "missing.jsonl"
    r = smtptap("diff", str(capture), str(missing))
    assert r.returncode == 66 and f"{missing}: No such file or directory" in r.stderr, r
    r = smtptap("diff", "--help")
    assert r.returncode == 0 and r.stdout.startswith("Usage: smtptap diff"), r


# ---- replay: smtptap as the recorded server -------------------------------------------------

def codes_of(replies) -> List[int]:
    return [code for code, _ in replies]


def replay_smtplib(hostport: str, rcpts: List[str], *, starttls: bool = False,
                   extra: str = "") -> List[tuple]:
    """A client other than the recorded one: smtplib, one command at a time; every reply it
    got, as (code, text)."""
    host, port = hostport.rsplit(":", 1)
    got = []
    with smtplib.SMTP(host, int(port), timeout=20) as c:
        got.append((c.ehlo("other-client.test")[0], ""))
        if starttls:
            ctx = ssl.create_default_context()
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            got.append(c.starttls(context=ctx)[:1] + (b"",))
            got.append((c.ehlo("other-client.test")[0], ""))
        if extra:
            got.append(c.docmd(extra))
        got.append(c.docmd("MAIL", f"FROM:<{FROM}>"))
        for r in rcpts:
            got.append(c.docmd("RCPT", f"TO:<{r}>"))
        got.append(c.docmd("DATA"))
        c.send(make_message(frm=FROM, to=[rcpts[0]]).replace(b"\n", b"\r\n") + b"\r\n.\r\n")
        got.append(c.getreply())
        got.append(c.docmd("QUIT"))
    return [(code, text.decode() if isinstance(text, bytes) else text) for code, text in got]


@pytest.fixture
def recorded(tap, aiosmtpd, tmp_path):
    """swaks with STARTTLS and pipelining, a fault's 450 on the busy recipient, recorded
    against aiosmtpd."""
    client = swaks_client("--to", "bob@example.net,x@busy.example", "--pipeline", "-tls")
    return record(tap, aiosmtpd.hostport, tmp_path / "rec", client, "--fault", BUSY_FAULT)


def test_replay_answers_another_client_with_the_recorded_codes(recorded, tap, tmp_path):
    t = tap(["-u", f"replay:{recorded}", "--replay-speed", "0"])
    got = replay_smtplib(t.hostport, ["carol@example.net", "zed@busy.example"], starttls=True)
    # the recording: 250 EHLO, 220 STARTTLS (smtptap's, again), 250 EHLO, MAIL 250,
    # RCPT 250, RCPT 450 (the fault's, replayed as the client got it), DATA 354, end 250, 221
    assert codes_of(got) == [250, 220, 250, 250, 250, 450, 354, 250, 221], got
    assert got[5][1] == "4.2.0 busy" and got[7][1] == "2.0.0 OK queued as aio1", got
    t.wait_session_end()
    text = t.transcript()
    assert "upstream replay of " + str(recorded) in text
    assert "** replay" not in text, text
    assert " ~> RCPT TO:<carol@example.net>" in text  # the new dialog, in TLS


def test_replay_of_smtp_sink_to_swaks(tap, tmp_path, need):
    need("swaks")
    with harness.SmtpSink() as sink:
        cap = record(tap, sink.hostport, tmp_path / "rec", smtplib_client(["bob@example.net"]))
        greeting = sink.greeting
    t = tap(["-u", f"replay:{cap}", "--replay-speed", "0"])
    rc, out, err = harness.swaks(t.hostport, "--from", "someone@else.example", "--to",
                                 "dave@example.org", "--pipeline")
    assert rc == 0, out + err
    replies = [l[4:] for l in out.splitlines() if l.startswith(("<-  ", "<~  "))]
    assert replies[0].startswith(greeting), replies
    codes = [r[:3] for r in replies if not r[3:4] == "-"]
    assert codes == ["220", "250", "250", "250", "354", "250", "221"], replies


def test_a_command_the_recording_lacks_gets_451_and_a_lint_line(recorded, tap):
    t = tap(["-u", f"replay:{recorded}", "--replay-speed", "0"])
    got = replay_smtplib(t.hostport, ["carol@example.net", "zed@busy.example"], starttls=True,
                         extra="NOOP")
    assert got[3] == (451, '4.3.0 smtptap replay: no recorded reply for "NOOP"'), got
    # the recording's place did not move: the rest is answered as recorded
    assert codes_of(got[4:]) == [250, 250, 450, 354, 250, 221], got
    t.wait_session_end()
    line = t.wait_for(r"^#1 \+\d+\.\d+ \*\* replay: .*$").group(0)
    m = re.search(r'\*\* replay: "NOOP" left the recording where the recording has '
                  r'"MAIL FROM:<alice@example.org>" \(line (\d+)\); answered 451$', line)
    assert m, line
    recorded_line = recorded.read_text().splitlines()[int(m.group(1)) - 1]
    assert json.loads(recorded_line)["line"] == "MAIL FROM:<alice@example.org>\r\n"


def test_replay_strict_wants_the_recorded_text(recorded, tap):
    t = tap(["-u", f"replay:{recorded}", "--replay-speed", "0", "--replay-strict"])
    host, port = t.hostport.rsplit(":", 1)
    with smtplib.SMTP(host, int(port), timeout=20) as c:
        assert c.ehlo("vm")[0] == 250  # the recorded EHLO name: swaks's ("ehlo" in any case)
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        assert c.starttls(context=ctx)[0] == 220
        assert c.ehlo("vm")[0] == 250
        assert c.docmd("MAIL", f"FROM:<{FROM}>")[0] == 250
        assert c.docmd("RCPT", "TO:<carol@example.net>") == (
            451, b'4.3.0 smtptap replay: no recorded reply for "RCPT TO:<carol@example.net>"')
        assert c.docmd("RCPT", "TO:<bob@example.net>")[0] == 250
    t.wait_for(r'\*\* replay: "RCPT TO:<carol@example.net>" left the recording where the '
               r'recording has "RCPT TO:<bob@example.net>"')


def test_replay_speed_keeps_the_recorded_wait(tap, aiosmtpd, tmp_path):
    cap = record(tap, aiosmtpd.hostport, tmp_path / "rec", smtplib_client(["bob@example.net"]),
                 "--fault", "MAIL: delay 1200ms")

    def mail_wait(*speed):
        t = tap(["-u", f"replay:{cap}", *speed])
        host, port = t.hostport.rsplit(":", 1)
        with smtplib.SMTP(host, int(port), timeout=20) as c:
            c.ehlo("x.test")
            start = time.monotonic()
            assert c.docmd("MAIL", f"FROM:<{FROM}>")[0] == 250
            return time.monotonic() - start
    assert mail_wait() >= 1.1             # default: the recorded pace
    assert 0.5 <= mail_wait("--replay-speed", "2") < 1.1
    assert mail_wait("--replay-speed", "0") < 0.5


def test_replay_from_the_config_file_and_a_broken_capture(recorded, tap, tmp_path):
    conf = tmp_path / "replay.conf"
    conf.write_text(f"[upstream]\ntarget = replay:{recorded}\nreplay_speed = 0\n")
    t = tap(["-c", str(conf)])
    got = replay_smtplib(t.hostport, ["bob@example.net", "x@busy.example"], starttls=True)
    assert codes_of(got) == [250, 220, 250, 250, 250, 450, 354, 250, 221], got
    broken = tmp_path / "broken.jsonl"
    lines = recorded.read_text().splitlines(keepends=True)
    broken.write_text("".join(lines[:4]) + lines[4][:20])
    r = subprocess.run(harness.wrapped([harness.smtptap_bin(), "--listen", "127.0.0.1:0",
                                        "-u", f"replay:{broken}"]),
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 65, r
    assert f"smtptap: --upstream replay:{broken}: {broken}: line 5: not valid JSON" in r.stderr
    assert "truncated?" in r.stderr
    harness.assert_no_sanitizer_report(r.stderr)


# ---- replay-client: the recorded client against a server -------------------------------------

def rows_of(out: str) -> List[List[str]]:
    return [l.split() for l in out.splitlines() if l[:1] in (" ", "!") and l[2:3] != " "]


@pytest.fixture
def client_capture(tap, aiosmtpd, tmp_path):
    client = swaks_client("--to", "bob@example.net", "--pipeline")
    return record(tap, aiosmtpd.hostport, tmp_path / "client", client)


def test_replay_client_against_the_same_server_reproduces_the_replies(client_capture, aiosmtpd):
    r = smtptap("replay-client", str(client_capture), "--to", aiosmtpd.hostport)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "!" not in [l[:1] for l in r.stdout.splitlines()], r.stdout
    assert r.stdout.splitlines()[-1] == "replay-client: 0 of 7 replies of another class than recorded"
    sent = [row[1] for row in rows_of(r.stdout)[1:]]
    assert sent == ["(greeting)", "EHLO", "MAIL", "RCPT", "DATA", "(end", "QUIT"], r.stdout
    msgs = aiosmtpd.wait_for_messages(2)  # the recording's and the replay's
    assert msgs[1].rcpt_tos == ["bob@example.net"] and msgs[1].content == msgs[0].content


def test_replay_client_against_another_server_shows_the_difference(client_capture):
    with harness.SmtpSink(args=["-r", "RCPT"]) as sink:
        r = smtptap("replay-client", str(client_capture), "--to", sink.hostport)
    assert r.returncode == 1, r.stdout + r.stderr
    bad = [l for l in r.stdout.splitlines() if l.startswith("!")]
    assert len(bad) >= 1 and bad[0].split()[2:4] == ["RCPT", "TO:<bob@example.net>"], r.stdout
    assert bad[0].split()[4:8] == ["250", "2.1.5", "450", "4.3.0"] and "class differs" in bad[0]
    # smtp-sink refuses DATA without a recipient: the message is not sent
    assert bad[1].split()[1:3] == ["5", "DATA"] and bad[1].split()[3:5] == ["354", "503"], r.stdout
    assert re.search(r"^  6     \(end of message\) +\(not sent: DATA was refused\)$", r.stdout, re.M)
    assert r.stdout.splitlines()[-1] == "replay-client: 2 of 6 replies of another class than recorded"


def test_replay_client_sends_the_whole_message_or_a_synthetic_one(tap, aiosmtpd, tmp_path):
    body = [f"line {i:03d} of a long message" for i in range(60)] + [".dotted"]
    msg = make_message("long", frm=FROM, body_lines=body)

    def client(hostport, t):
        host, port = hostport.rsplit(":", 1)
        with smtplib.SMTP(host, int(port), timeout=20) as c:
            c.sendmail(FROM, ["bob@example.net"], msg)
    whole = record(tap, aiosmtpd.hostport, tmp_path / "v", client, "-v")
    first = record(tap, aiosmtpd.hostport, tmp_path / "plain", client)
    r = smtptap("replay-client", str(whole), "--to", aiosmtpd.hostport)
    assert r.returncode == 0 and "synthetic" not in r.stdout, r.stdout
    got = aiosmtpd.wait_for_messages(3)[2]
    assert got.content == msg, got.content[-200:]
    r = smtptap("replay-client", str(first), "--to", aiosmtpd.hostport)
    assert r.returncode == 0, r.stdout
    size = len(msg)
    assert (f"message: the capture has 40 of its 67 lines (no -v): a synthetic body of "
            f"{size} bytes sent") in r.stdout, r.stdout
    got = aiosmtpd.wait_for_messages(4)[3]
    assert len(got.content) == size and got.content.startswith(
        b"Subject: smtptap replay-client synthetic body\r\n\r\nxxx"), got.content[:80]


def test_replay_client_speaks_starttls_and_implicit_tls(client_capture, tap):
    t = tap(listen="tls:127.0.0.1:0")  # the built-in sink, in TLS from the start
    r = smtptap("replay-client", str(client_capture), "--to", f"tls:{t.hostport}", "--insecure")
    assert r.returncode == 0, r.stdout + r.stderr
    t.wait_session_end()
    assert " ~> MAIL FROM:<alice@example.org>" in t.transcript()
    t2 = tap()  # plain, STARTTLS offered
    r = smtptap("replay-client", str(client_capture), "--to", f"starttls:{t2.hostport}",
                "--insecure")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "  -     STARTTLS, TLS handshake, EHLO vm" in r.stdout, r.stdout
    t2.wait_session_end()
    assert " ~> MAIL FROM:<alice@example.org>" in t2.transcript()
    # without --insecure smtptap's certificate is not trusted: said, exit 69
    r = smtptap("replay-client", str(client_capture), "--to", f"tls:{t.hostport}")
    assert r.returncode == 69 and "TLS handshake with 127.0.0.1 failed" in r.stderr, r


def test_replay_client_usage_and_unreachable(client_capture, tmp_path):
    port = harness.free_port()
    r = smtptap("replay-client", str(client_capture), "--to", f"127.0.0.1:{port}")
    assert r.returncode == 69 and f"cannot connect to 127.0.0.1:{port}" in r.stderr, r
    r = smtptap("replay-client", str(client_capture))
    assert r.returncode == 64 and "--to" in r.stderr, r
    broken = tmp_path / "broken.jsonl"
    broken.write_text(client_capture.read_text()[:300])
    r = smtptap("replay-client", str(broken), "--to", f"127.0.0.1:{port}")
    assert r.returncode == 65 and f"{broken}: line " in r.stderr, r


# ---- replay: AUTH and BDAT in the recording ------------------------------------------------

def test_replay_answers_auth_as_recorded_even_redacted(tap, tmp_path, need):
    need("swaks")
    with harness.AiosmtpdServer(auth=True) as srv:
        client = swaks_client("--to", "bob@example.net", "--auth", "PLAIN", "--auth-user",
                              "alice", "--auth-password", "S3cret-pw")
        cap = record(tap, srv.hostport, tmp_path / "rec", client, "--redact")
    assert "S3cret-pw" not in cap.read_text() and "AUTH PLAIN" in cap.read_text()
    t = tap(["-u", f"replay:{cap}", "--replay-speed", "0"])
    host, port = t.hostport.rsplit(":", 1)
    with smtplib.SMTP(host, int(port), timeout=20) as c:
        c.ehlo("other.test")
        assert c.login("bob", "another password")[0] == 235  # smtplib: AUTH PLAIN too
        c.sendmail(FROM, ["carol@example.net"], make_message(frm=FROM, to=["carol@example.net"]))
    t.wait_session_end()
    assert "** replay" not in t.transcript(), t.transcript()


def test_replay_answers_bdat_after_its_octets(tap, tmp_path):
    with harness.AiosmtpdServer(bdat=True) as srv:
        def client(hostport, t):
            host, port = hostport.rsplit(":", 1)
            with harness.RawSmtpClient(host, int(port)) as c:
                assert c.code() == 220
                c.cmd(b"EHLO raw.test")
                assert c.cmd(b"MAIL FROM:<a@example.org>")[0].startswith(b"250")
                assert c.cmd(b"RCPT TO:<b@example.net>")[0].startswith(b"250")
                c.send(b"BDAT 20 LAST\r\nSubject: x\r\n\r\nbody\r\n")
                assert c.reply()[0].startswith(b"250")
                c.cmd(b"QUIT")
        cap = record(tap, srv.hostport, tmp_path / "rec", client)
        recorded = srv.wait_for_messages(1)[0]
        assert recorded.via == "BDAT"
    t = tap(["-u", f"replay:{cap}", "--replay-speed", "0"])
    host, port = t.hostport.rsplit(":", 1)
    with harness.RawSmtpClient(host, int(port)) as c:
        assert c.code() == 220
        c.cmd(b"EHLO another.test")
        assert c.cmd(b"MAIL FROM:<z@other.example>")[0].startswith(b"250")
        assert c.cmd(b"RCPT TO:<y@other.example>")[0].startswith(b"250")
        c.send(b"BDAT 30 LAST\r\n")
        c.sock.settimeout(0.5)
        with pytest.raises(OSError):  # no reply before the chunk's octets are in
            c.sock.recv(100)
        c.sock.settimeout(10)
        c.send(b"Subject: another\r\n\r\nQUIT\r\nxy\r\n")  # 30 octets, one looks like QUIT
        got = c.reply()
        events = [json.loads(l) for l in cap.read_text().splitlines()]
        at = next(i for i, e in enumerate(events) if e.get("line") == "BDAT 20 LAST\r\n")
        recorded_reply = next(e["line"] for e in events[at:] if e["kind"] == "reply")
        assert b"\r\n".join(got).decode() + "\r\n" == recorded_reply, got
        assert recorded_reply.startswith("250 "), recorded_reply
        assert c.cmd(b"QUIT")[0].startswith(b"221")
    t.wait_session_end()
    assert "** replay" not in t.transcript(), t.transcript()


def test_replay_of_an_implicit_tls_session_to_an_implicit_tls_client(tap, aiosmtpd, tmp_path):
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE

    def session(hostport, rcpt):
        host, port = hostport.rsplit(":", 1)
        codes = []
        with smtplib.SMTP_SSL(host, int(port), timeout=20, context=ctx) as c:
            codes.append(c.ehlo("tls.test")[0])
            codes.append(c.docmd("MAIL", f"FROM:<{FROM}>")[0])
            codes.append(c.docmd("RCPT", f"TO:<{rcpt}>")[0])
            codes.append(c.docmd("DATA")[0])
            c.send(make_message(frm=FROM, to=[rcpt]) + b".\r\n")
            codes.append(c.getreply()[0])
        return codes

    capdir = tmp_path / "rec"
    t = tap(["-u", aiosmtpd.hostport, "-d", str(capdir), "--format", "jsonl"],
            listen="tls:127.0.0.1:0")
    assert session(t.hostport, "bob@example.net") == [250, 250, 250, 354, 250]
    t.wait_session_end()
    cap = next(capdir.glob("*.jsonl"))
    assert '"leg":"client","version":"TLSv1.3"' in cap.read_text()
    r = tap(["-u", f"replay:{cap}", "--replay-speed", "0"], listen="tls:127.0.0.1:0")
    assert session(r.hostport, "carol@example.net") == [250, 250, 250, 354, 250]
    r.wait_session_end()
    assert " ~> RCPT TO:<carol@example.net>" in r.transcript()
    assert "** replay" not in r.transcript()


def test_replay_of_swaks_to_curl_and_of_a_refusal(tap, aiosmtpd, tmp_path, need):
    """A third real client: curl sends a message to the replay of a swaks session (another
    EHLO name, other addresses, another body) and gets the recorded replies; the replay of a
    session whose RCPT a fault refused makes curl fail the way the recorded client was
    refused (curl exit 55: the server refused a recipient)."""
    need("swaks")
    need("curl")
    ok = record(tap, aiosmtpd.hostport, tmp_path / "ok", swaks_client("--to", "bob@example.net"))
    refused = record(tap, aiosmtpd.hostport, tmp_path / "refused",
                     swaks_client("--to", "x@busy.example"), "--fault", BUSY_FAULT)
    body = tmp_path / "body.eml"
    body.write_bytes(b"Subject: from curl\r\n\r\nanother body, longer than the recorded one\r\n")
    for cap, want_rc in ((ok, 0), (refused, 55)):
        t = tap(["-u", f"replay:{cap}", "--replay-speed", "0"])
        r = subprocess.run(["curl", "-sS", "--max-time", "20", f"smtp://{t.hostport}/curl.test",
                            "--mail-from", "carol@other.example", "--mail-rcpt",
                            "dave@other.example" if want_rc == 0 else "zed@busy.example",
                            "-T", str(body)], capture_output=True, text=True, timeout=30)
        assert r.returncode == want_rc, (cap.name, r.returncode, r.stderr, t.transcript())
        t.wait_session_end()
        text = t.transcript()
        assert "** replay" not in text, text  # every command of curl's had its counterpart
        if want_rc == 0:
            assert "queued as" in text, text  # the recorded end-of-data reply
        else:
            assert "<-  450 4.2.0 busy" in text, text
