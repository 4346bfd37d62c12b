"""Record once, replay anywhere (issue 14): sessions recorded through smtptap with
`-d DIR --format jsonl`, read back by `smtptap diff`.

What is checked:
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
import smtplib
import subprocess
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
                c.sendmail(FROM, rcpts, make_message(frm=FROM, to=rcpts[0]))
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
                    c.data(make_message(frm=FROM, to=rcpt))
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
