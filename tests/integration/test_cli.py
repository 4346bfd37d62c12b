"""The command line and the configuration file, as a user meets them.

Contract: notes/contract-for-tests.md and ../shared/DESIGN.md ("Command line",
exit codes 64 usage / 78 configuration, messages naming flag or key, value and what
is accepted; colours; -q; -d capture dir)."""

import os
import shutil
import subprocess
import re
import signal
import socket
import stat
import time
from pathlib import Path

import pytest

import harness
from harness import EX_CONFIG, EX_NOINPUT, EX_USAGE

BIN = harness.smtptap_bin()
ESC = "\x1b["


def smtptap(*args, env=None, timeout=5.0):
    """Run smtptap once; it must exit by itself (a hang is a failure, not a skip)."""
    assert os.access(BIN, os.X_OK), f"smtptap binary missing: {BIN}"
    rc, out, err = harness.run([BIN, *args], timeout, env=env)
    harness.assert_no_sanitizer_report(out + err)
    return rc, out, err


def project_version():
    m = re.search(r"version\s*:\s*'([^']+)'", (harness.ROOT / "meson.build").read_text())
    return m.group(1)


def swaks_through(tap, *extra):
    rc, out, err = harness.swaks(tap.hostport, "--to", "bob@example.net",
                                 "--from", "alice@example.org", *extra)
    assert rc == 0, f"swaks failed (rc {rc})\n{out}\n{err}"
    return out


# ----------------------------------------------------------------------------- help / version

HELP_FLAGS = ["--listen", "--upstream", "--config", "--capture-dir", "--quiet", "--verbose",
              "--color", "--max-sessions", "--idle-timeout", "--connect-timeout", "--version",
              "--help"]
HELP_SHORT = ["-l", "-u", "-c", "-d", "-q", "-v", "-V", "-h"]


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_the_flags(flag):
    rc, out, err = smtptap(flag)
    assert rc == 0, f"{flag}: exit {rc}\n{err}"
    missing = [f for f in HELP_FLAGS if not re.search(re.escape(f) + r"\b", out)]
    assert not missing, f"smtptap {flag} on stdout does not list {missing}:\n{out}\n(stderr: {err})"
    missing = [f for f in HELP_SHORT if not re.search(r"(^|[\s,\[])" + re.escape(f) + r"\b", out, re.M)]
    assert not missing, f"smtptap {flag} does not list short flags {missing}:\n{out}"
    for word in ("sink", "transparent", "HOST[:PORT]"):
        assert word in out, f"smtptap {flag} does not explain upstream SPEC ({word!r}):\n{out}"


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(flag):
    rc, out, err = smtptap(flag)
    assert rc == 0, f"{flag}: exit {rc}\n{err}"
    assert re.search(r"\bsmtptap\b.*\b" + re.escape(project_version()) + r"\b", out), (
        f"smtptap {flag} should print 'smtptap {project_version()}' on stdout, got:\n{out}\n{err}")


def test_listening_line_names_version_address_and_upstream(tap):
    t = tap()
    m = t.wait_for(r"^smtptap (\S+) listening on 127\.0\.0\.1:(\d+) \(plain\), upstream (\S.*)$")
    assert m.group(1) == project_version()
    assert int(m.group(2)) == t.port != 0
    assert m.group(3).startswith("sink"), m.group(0)
    # and the port is real
    with socket.create_connection(("127.0.0.1", t.port), timeout=2) as s:
        s.settimeout(5)
        assert s.recv(512).startswith(b"220 "), "the built-in sink should greet"


# Issue 15 item 13: the start names where the capture files go, and in which formats.
def test_listening_line_names_the_capture_directory_and_formats(tap, tmp_path):
    t = tap(["-d", "caps", "--format", "eml,text,pcap"], cwd=str(tmp_path))
    line = t.wait_for(r"^smtptap \S+ listening on .*$").group(0)
    assert line.endswith(f", upstream sink (built-in), capture files in {tmp_path / 'caps'} "
                         "(text, pcap, eml)"), line
    t.stop()
    t = tap(["-d", "-", "--format", "jsonl"])
    line = t.wait_for(r"^smtptap \S+ listening on .*$").group(0)
    assert line.endswith(", upstream sink (built-in), jsonl on stdout"), line
    t.stop()
    t = tap()
    line = t.wait_for(r"^smtptap \S+ listening on .*$").group(0)
    assert line.endswith(", upstream sink (built-in)"), line


RFC3339_RE = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}[+-]\d\d:\d\d"


def test_header_of_the_transcript_and_of_text_captures(tap, tmp_path):
    """Issue 15 item 9: the live transcript and every text capture begin with when smtptap
    started, its version, its command line, its config file, listener and upstream; a
    session's first line carries its wall-clock start."""
    conf = tmp_path / "smtptap.conf"
    conf.write_text("[sink]\nusers = alice:s3cret\n")
    t = tap(["-c", str(conf), "-d", "caps", "--fault", "RCPT: delay 1ms"], cwd=str(tmp_path))
    code, out, err = harness.swaks(t.hostport, "--to", "bob@example.net")
    assert code == 0, out + err
    t.wait_session_end(1)
    live = t.transcript().split("\n")
    assert re.fullmatch(rf"smtptap \S+ started {RFC3339_RE}, pid \d+", live[0]), live[0]
    assert live[1] == (f"smtptap command line: {t.cmd[0]} --listen 127.0.0.1:0 --color=never "
                       f"-c {conf} -d caps --fault 'RCPT: delay 1ms'"), live[1]
    assert live[2] == f"smtptap config file: {conf} (read at start)", live[2]
    assert live[3] == "smtptap: 1 fault rule", live[3]
    assert "s3cret" not in t.transcript()
    listening = next(l for l in live if " listening on " in l)
    first = t.lines(1)[0]
    assert re.fullmatch(rf"127\.0\.0\.1:\d+ connected to {re.escape(t.hostport)}, upstream sink "
                        rf"\(built-in\), at {RFC3339_RE}", first.text), first.raw
    t.stop()
    (cap,) = (tmp_path / "caps").glob("*.txt")
    text = cap.read_text().split("\n")
    assert text[:5] == live[:4] + [listening], text[:6]
    assert text[5] == first.raw, text[5]
    assert harness.parse_transcript(cap.read_text())[0].raw == first.raw


def test_readme_sample_lines_are_in_the_programs_order(tap, tmp_path):
    """The README's sample transcript shows a message summary and a session end: the program
    prints the same words in the same order (numbers and digests aside)."""
    def shape(text):
        text = re.sub(r"sha256 [0-9a-f]+(\.\.\.)?", "sha256 H", text)
        return re.sub(r"\d+(\.\d+)?", "N", text)

    readme = (harness.ROOT / "README.md").read_text()
    sample = {k: re.search(rf"^#1 \+\S+ == ({k}.*)$", readme, re.M).group(1)
              for k in ("message 1:", "session ended")}
    t = tap()
    body = [f"line {i}" for i in range(35)]  # 41 lines with the headers and the blank line
    msg = harness.make_message("password reset", body_lines=body)
    rc, out, err = harness.swaks_send(t.hostport, "app@example.com", ["user@example.net"], msg,
                                      str(tmp_path))
    assert rc == 0, out
    t.wait_session_end(1)
    got = {k: next(l.text for l in t.lines(1) if l.marker == "==" and l.text.startswith(k))
           for k in sample}
    assert "41 lines" in got["message 1:"] and "(1 line not shown" in got["message 1:"], got
    for k in sample:
        assert shape(got[k]) == shape(sample[k]), (got[k], sample[k])


def test_shutdown_line_counts_running_sessions_in_good_english(tap):
    t = tap()
    t.stop(sig=signal.SIGTERM)
    assert re.search(r"^smtptap: Terminated received: no new sessions; none running$",
                     t.transcript(), re.M), t.transcript()
    t = tap()
    with harness.RawSmtpClient("127.0.0.1", t.port) as c:
        assert c.code() == 220
        t.proc.send_signal(signal.SIGTERM)
        t.wait_for(r"^smtptap: Terminated received: no new sessions; 1 running session gets 5s "
                   r"to finish$")
        c.cmd(b"QUIT")
    assert t.wait_exit(5) == 0


# ----------------------------------------------------------------------------- usage errors

@pytest.mark.parametrize("flag", ["--no-such-flag", "-Z"])
def test_unknown_flag_is_a_usage_error(flag):
    rc, out, err = smtptap("--listen", "127.0.0.1:0", flag)
    assert rc == EX_USAGE, f"smtptap {flag}: expected exit 64, got {rc}\n{err}"
    assert flag in err, f"the message should name {flag}:\n{err}"


def test_missing_flag_value_is_a_usage_error():
    rc, out, err = smtptap("--listen")
    assert rc == EX_USAGE, f"expected 64, got {rc}\n{err}"
    assert "--listen" in err or "listen" in err, err


# (value, regex for "what is accepted")
BAD_LISTEN = [
    ("127.0.0.1", r"(?i)(addr|address|host|ip)\]?:port"),
    ("127.0.0.1:70000", r"(?i)(addr|address|host|ip)\]?:port|65535"),
    ("127.0.0.1:12ab", r"(?i)(addr|address|host|ip)\]?:port|65535"),
    ("127.0.0.1:-5", r"(?i)(addr|address|host|ip)\]?:port|65535"),
]


@pytest.mark.parametrize("value,accepted", BAD_LISTEN, ids=[v for v, _ in BAD_LISTEN])
def test_bad_listen_value(value, accepted):
    rc, out, err = smtptap("--listen", value)
    assert rc == EX_USAGE, f"--listen {value}: expected exit 64, got {rc}\n{err}"
    assert "--listen" in err, f"message should name --listen:\n{err}"
    assert value in err, f"message should quote the value {value!r}:\n{err}"
    assert re.search(accepted, err), f"message should say what is accepted (/{accepted}/):\n{err}"


BAD_UPSTREAM = ["127.0.0.1:notaport", "127.0.0.1:65536", "host:", "[::1:25", "tls"]


@pytest.mark.parametrize("value", BAD_UPSTREAM)
def test_bad_upstream_value(value):
    rc, out, err = smtptap("--listen", "127.0.0.1:0", "--upstream", value)
    assert rc == EX_USAGE, f"--upstream {value}: expected exit 64, got {rc}\n{err}"
    assert "--upstream" in err, f"message should name --upstream:\n{err}"
    assert value in err, f"message should quote the value {value!r}:\n{err}"
    for form in ("sink", "HOST[:PORT]"):
        assert form in err, f"message should list the accepted forms ({form!r} missing):\n{err}"


# Issue 15 item 11: a host without a port was refused; it takes the usual port of its prefix,
# and the start says which and why.
@pytest.mark.parametrize("spec,port", [("localhost", 25), ("plain:localhost", 25),
                                       ("starttls:localhost", 587), ("tls:localhost", 465),
                                       ("[::1]", 25)])
def test_upstream_without_a_port_takes_the_usual_one_and_says_so(tap, spec, port):
    t = tap(["-u", spec])
    host = "[::1]" if "::1" in spec else "localhost"
    t.wait_for(rf"listening on .*, upstream {re.escape(host)}:{port}\b")
    line = t.wait_for(r"^smtptap: upstream .* names no port.*$").group(0)
    assert line == (f'smtptap: upstream "{spec}" names no port: using {port} (without a port: 25, '
                    f"or 587 with starttls:, 465 with tls:); write {spec}:PORT for another"), line


def test_upstream_with_a_port_says_nothing_of_ports(tap, aiosmtpd):
    t = tap(["-u", aiosmtpd.hostport])
    swaks_through(t)
    assert "names no port" not in t.transcript()


@pytest.mark.parametrize("value,prefix", [("foo:bar:25", "foo:"),
                                          ("smtps:mail.example.com:465", "smtps:"),
                                          ("ssl:mail.example.com", "ssl:")])
def test_unknown_upstream_prefix_is_named_with_the_prefixes(value, prefix):
    rc, out, err = smtptap("--listen", "127.0.0.1:0", "--upstream", value)
    assert rc == EX_USAGE, f"--upstream {value}: expected exit 64, got {rc}\n{err}"
    assert err.startswith(f'smtptap: --upstream: unknown prefix "{prefix}" in "{value}"; '), err
    for p in ("tls:", "starttls:", "plain:"):
        assert p in err, f"the message should list the prefix {p}:\n{err}"


BAD_OTHER = [("--max-sessions", "many"), ("--idle-timeout", "forever"),
             ("--connect-timeout", "10parsecs")]


@pytest.mark.parametrize("flag,value", BAD_OTHER, ids=[f for f, _ in BAD_OTHER])
def test_bad_numeric_values(flag, value):
    rc, out, err = smtptap("--listen", "127.0.0.1:0", flag, value)
    assert rc == EX_USAGE, f"{flag} {value}: expected exit 64, got {rc}\n{err}"
    assert flag in err and value in err, f"message should name {flag} and {value!r}:\n{err}"


def test_bad_color_value():
    rc, out, err = smtptap("--listen", "127.0.0.1:0", "--color=sometimes")
    assert rc == EX_USAGE, f"expected 64, got {rc}\n{err}"
    assert "--color" in err and "sometimes" in err, err
    for word in ("auto", "always", "never"):
        assert word in err, f"message should list {word!r}:\n{err}"


# ----------------------------------------------------------------------------- a loop to itself
# Issue 15 item 6: "-u 127.0.0.1:2577 -l 127.0.0.1:2577" opened sessions until --max-sessions,
# each connecting to smtptap again. Refused at start when the upstream is a listener's address
# (numeric, or localhost; a wildcard listener covers every address of the host), and per
# session when it is a name: the connection that comes from smtptap's own upstream socket.

@pytest.mark.parametrize("listen,upstream", [("127.0.0.1:{p}", "127.0.0.1:{p}"),
                                             ("0.0.0.0:{p}", "localhost:{p}"),
                                             ("[::1]:{p}", "plain:[::1]:{p}")])
def test_upstream_that_is_our_own_listener_is_refused_at_start(listen, upstream):
    port = harness.free_port()
    listen, upstream = listen.format(p=port), upstream.format(p=port)
    rc, out, err = smtptap("--listen", listen, "--upstream", upstream, "--max-sessions", "3")
    assert rc == EX_CONFIG, f"expected 78, got {rc}\n{err}"
    shown = upstream.removeprefix("plain:")
    assert (f"smtptap: --upstream {shown} is smtptap's own listener {listen}: every session would "
            "connect to smtptap again, and that one again, until --max-sessions; point --upstream "
            "at the real server (or leave it out for the built-in sink)\n") in err, err
    assert "listening on" not in err, err


def test_upstream_name_that_leads_back_is_caught_at_the_first_session(tap):
    name = socket.gethostname()
    try:
        addr = socket.gethostbyname(name)
    except OSError:
        pytest.skip(f"this host's name {name} does not resolve")
    port = harness.free_port(addr)
    t = tap(["-u", f"{name}:{port}", "--max-sessions", "5"], listen=f"{addr}:{port}")
    with harness.RawSmtpClient(addr, port) as c:
        greeting = c.reply()
    assert greeting == [f"421 4.3.0 smtptap: loop, upstream {name}:{port} is smtptap itself"
                        .encode()], greeting
    t.wait_session_end(1)
    t.wait_session_end(2)
    loop = [l.text for l in t.lines(2) if l.marker == "<**"]
    assert len(loop) == 1 and loop[0].endswith(
        f"is smtptap's own upstream connection: upstream {name}:{port} leads back to smtptap (one "
        "of its listeners, or a redirect to one); point --upstream at the real server"), loop
    assert t.sessions() == [1, 2], t.transcript()  # not one per --max-sessions
    assert "too many sessions" not in t.transcript()


# ----------------------------------------------------------------------------- config errors

def write_conf(tmp_path, text, name="smtptap.conf"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_config_unknown_key(tmp_path):
    conf = write_conf(tmp_path, "[listen]\naddress = 127.0.0.1:0\nbogus_knob = 3\n")
    rc, out, err = smtptap("-c", conf)
    assert rc == EX_CONFIG, f"expected 78, got {rc}\n{err}"
    assert "bogus_knob" in err, f"message should name the unknown key:\n{err}"


def test_config_unknown_section(tmp_path):
    conf = write_conf(tmp_path, "[listen]\naddress = 127.0.0.1:0\n[nonsense]\nfoo = 1\n")
    rc, out, err = smtptap("--config", conf)
    assert rc == EX_CONFIG, f"expected 78, got {rc}\n{err}"
    assert "nonsense" in err, f"message should name the unknown section:\n{err}"


def test_config_bad_value_names_key_and_value(tmp_path):
    conf = write_conf(tmp_path, "[listen]\naddress = 127.0.0.1:0\n"
                                "[upstream]\ntarget = 127.0.0.1:notaport\n")
    rc, out, err = smtptap("-c", conf)
    assert rc == EX_CONFIG, f"expected 78, got {rc}\n{err}"
    assert "target" in err and "127.0.0.1:notaport" in err, err
    assert "sink" in err, f"message should list the accepted forms:\n{err}"


def test_config_key_given_twice_names_both_lines(tmp_path):
    conf = write_conf(tmp_path, "[listen]\naddress = 127.0.0.1:0\n"
                                "[upstream]\ntarget = sink\nconnect_timeout = 5s\n"
                                "target = 127.0.0.1:2600   ; which one did I mean?\n")
    rc, out, err = smtptap("-c", conf)
    assert rc == EX_CONFIG, f"expected 78, got {rc}\n{err}"
    assert err == (f"smtptap: {conf}: [upstream] target is given twice, on line 4 and on line 6; "
                   "keep one (a key appears once in its section; only [listen] address may "
                   "repeat)\n"), err


def test_config_listen_address_may_repeat(tmp_path, tap):
    conf = write_conf(tmp_path, "[listen]\naddress = 127.0.0.1:0\naddress = [::1]:0\n")
    t = tap(["-c", conf], listen=None)
    t.wait_for(r"listening on \[::1\]:\d+")
    assert len(re.findall(r"listening on", t.transcript())) == 2


def test_keylog_in_a_missing_directory_names_the_flag():
    rc, out, err = smtptap("--listen", "127.0.0.1:0", "--keylog", "/nonexistent/dir/keys")
    assert rc == EX_CONFIG, f"expected 78, got {rc}\n{err}"
    assert err == ("smtptap: --keylog /nonexistent/dir/keys: cannot open the file: No such file "
                   "or directory; expected a file smtptap can create or append to\n"), err


def test_config_bad_listen_address(tmp_path):
    conf = write_conf(tmp_path, "[listen]\naddress = 127.0.0.1:99999\n")
    rc, out, err = smtptap("-c", conf)
    assert rc == EX_CONFIG, f"expected 78, got {rc}\n{err}"
    assert "address" in err and "127.0.0.1:99999" in err, err


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_unreadable_config_file(tmp_path, kind):
    path = tmp_path / "no-such.conf"
    if kind == "directory":
        path = tmp_path / "a-directory.conf"
        path.mkdir()
    rc, out, err = smtptap("--listen", "127.0.0.1:0", "-c", str(path))
    assert rc in (EX_CONFIG, EX_NOINPUT), f"-c {path} ({kind}): expected 78 (or 66), got {rc}\n{err}"
    assert str(path) in err, f"message should name the file {path}:\n{err}"


# ----------------------------------------------------------------------------- config that works

def test_config_file_listen_and_upstream(tmp_path, tap, aiosmtpd):
    conf = write_conf(tmp_path, "; written by test_cli\n"
                                "[listen]\naddress = 127.0.0.1:0   ; any free port\n"
                                f"[upstream]\ntarget = {aiosmtpd.hostport}\n")
    t = tap(["-c", conf], listen=None)
    t.wait_for(r"listening on 127\.0\.0\.1:\d+ \(plain\), upstream " + re.escape(aiosmtpd.hostport))
    swaks_through(t)
    msg = aiosmtpd.wait_for_messages(1)[0]
    assert msg.rcpt_tos == ["bob@example.net"]
    t.wait_for(re.escape(aiosmtpd.greeting))


def test_cli_upstream_overrides_config(tmp_path, tap):
    with harness.AiosmtpdServer() as a, harness.AiosmtpdServer() as b:
        conf = write_conf(tmp_path, f"[listen]\naddress = 127.0.0.1:0\n[upstream]\ntarget = {a.hostport}\n")
        t = tap(["-c", conf, "-u", b.hostport], listen=None)
        t.wait_for(r"listening on .*upstream " + re.escape(b.hostport))
        swaks_through(t)
        assert len(b.wait_for_messages(1)) == 1
        assert a.messages == [], "the config file's upstream was used although -u was given"


def test_cli_listen_overrides_config(tmp_path, tap):
    cport = harness.free_port()
    conf = write_conf(tmp_path, f"[listen]\naddress = 127.0.0.1:{cport}\n")
    t = tap(["-c", conf])  # harness adds --listen 127.0.0.1:0
    assert t.port != cport
    swaks_through(t)  # by now every listener has been announced
    lines = re.findall(r"listening on (\S+)", t.transcript())
    assert lines == [f"127.0.0.1:{t.port}"], f"expected only the CLI listener, got {lines}"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", cport), timeout=2).close()


# ----------------------------------------------------------------------------- colour

def _colour_run(tap, **kw):
    t = tap(**kw)
    swaks_through(t)
    t.wait_session_end(1)
    return t


def _session_lines_raw(text):
    return [l for l in text.splitlines() if re.match(r"^(\x1b\[[0-9;]*m)*#\d+ ", l)]


def test_color_always_gives_escape_codes(tap):
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    t = _colour_run(tap, color="always", env=env)
    raw = _session_lines_raw(t.transcript())
    assert raw, t.transcript()
    assert any(ESC in l for l in raw), f"--color=always: no escape codes in the transcript:\n{t.transcript()!r}"
    # still the same transcript once the codes are removed
    assert any(l.marker == " ->" and l.text.startswith("EHLO") for l in t.lines(1))


def test_color_never_on_a_terminal(tap):
    t = _colour_run(tap, color="never", stderr_tty=True)
    assert t.lines(1), t.transcript()
    assert ESC not in t.transcript(), f"--color=never printed escape codes:\n{t.transcript()!r}"


def test_color_auto_on_a_terminal_colours(tap):
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env["TERM"] = "xterm"
    t = _colour_run(tap, color=None, stderr_tty=True, env=env)
    assert ESC in t.transcript(), f"--color=auto on a terminal gave no colour:\n{t.transcript()!r}"


def test_no_color_env_on_a_terminal(tap):
    env = dict(os.environ, NO_COLOR="1", TERM="xterm")
    t = _colour_run(tap, color=None, stderr_tty=True, env=env)
    assert t.lines(1), t.transcript()
    assert ESC not in t.transcript(), f"NO_COLOR=1 but escape codes printed:\n{t.transcript()!r}"


def test_color_auto_on_a_pipe_is_plain(tap):
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    t = _colour_run(tap, color="auto", env=env)
    assert t.lines(1), t.transcript()
    assert ESC not in t.transcript(), f"--color=auto on a pipe printed escape codes:\n{t.transcript()!r}"


# ----------------------------------------------------------------------------- -q and -d

def _wait_file_with(path_glob_dir, pattern, n=1, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        files = sorted(p for p in Path(path_glob_dir).glob("*.txt")) if os.path.isdir(path_glob_dir) else []
        done = [p for p in files if re.search(pattern, p.read_text(errors="replace"), re.M)]
        if len(done) >= n:
            return files
        if time.monotonic() > deadline:
            listing = {str(p): p.read_text(errors="replace") for p in files}
            raise AssertionError(f"no {n} capture file(s) matching {pattern!r} in {path_glob_dir}: {listing}")
        time.sleep(0.05)


def test_quiet_prints_no_transcript(tmp_path, tap):
    port = harness.free_port()
    cap = tmp_path / "cap"
    t = tap(["-q", "-d", str(cap)], listen=f"127.0.0.1:{port}", wait_listening=False)
    harness.wait_port(port)
    t.host, t.port = "127.0.0.1", port
    swaks_through(t)
    # wait_port's probe is a session too; wait for the one that said EHLO to be captured
    _wait_file_with(cap, r"EHLO[\s\S]*== session ended")
    t.stop()
    err = t.transcript()
    assert not re.search(r"^#\d+ \+", err, re.M), f"-q still printed transcript lines:\n{err}"
    assert "EHLO" not in err, err


@pytest.mark.parametrize("flags", [["-q"], ["-v", "-q"], ["-q", "-v"], []])
def test_quiet_and_verbose_are_independent_and_a_text_capture_has_every_line(tmp_path, tap, flags):
    """Issue 15 item 3: -q governs the terminal only, -v the terminal's messages; a text
    capture records every line of every message whatever they say."""
    cap = tmp_path / "cap"
    t = tap(flags + ["-d", str(cap)])
    body = [f"line {i}" for i in range(60)]
    msg = harness.make_message("every line", body_lines=body)
    rc, out, err = harness.swaks_send(t.hostport, "app@example.com", ["user@example.net"], msg,
                                      str(tmp_path))
    assert rc == 0, out
    (f,) = _wait_file_with(cap, r"== session ended")
    t.stop()
    captured = harness.parse_transcript(f.read_text())
    content = [l.text for l in captured if l.marker == " ->" and l.text.startswith("line ")]
    assert content == body, content
    summary = next(l.text for l in captured if l.text.startswith("message 1:"))
    assert "not shown" not in summary, summary
    live = t.lines(1)
    live_content = [l.text for l in live if l.marker == " ->" and l.text.startswith("line ")]
    if "-q" in flags:
        assert live == [], [l.raw for l in live]
    elif "-v" in flags:
        assert live_content == body
    else:
        live_summary = next(l.text for l in live if l.text.startswith("message 1:"))
        n = len([l for l in captured if l.marker == " ->"]) - 5  # EHLO MAIL RCPT DATA QUIT
        shown = 40
        assert len(live_content) == shown - (n - len(body)), live_content
        assert live_summary == f"{summary} ({n - shown} lines not shown, -v shows them)"


def test_capture_dir_modes_names_and_content(tmp_path, tap):
    cap = tmp_path / "captures" / "nested"
    t = tap(["-d", str(cap)])
    swaks_through(t)
    swaks_through(t, "--pipeline")
    t.wait_session_end(1)
    t.wait_session_end(2)
    files = _wait_file_with(cap, r"== session ended", n=2)
    assert stat.S_IMODE(os.stat(cap).st_mode) == 0o700, oct(os.stat(cap).st_mode)
    assert len(files) == 2, [f.name for f in files]
    for sid in (1, 2):
        connected = [l for l in t.lines(sid) if l.marker == "==" and " connected to " in l.text][0]
        cport = re.match(r"127\.0\.0\.1:(\d+) connected to", connected.text).group(1)
        name_re = rf"^\d{{8}}T\d{{6}}-{sid}-127\.0\.0\.1_{cport}\.txt$"
        match = [f for f in files if re.match(name_re, f.name)]
        assert len(match) == 1, f"no capture file named like {name_re} in {[f.name for f in files]}"
        f = match[0]
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o600, f"{f.name}: {oct(os.stat(f).st_mode)}"
        header, file_lines = [], f.read_text().splitlines()
        while file_lines and file_lines[0].startswith("smtptap"):  # the header: see above
            header.append(file_lines.pop(0))
        assert header and " listening on " in header[-1], header
        live = [l.raw for l in t.lines(sid)]
        assert file_lines == live, (f"capture file {f.name} differs from the live transcript\n"
                                    f"--- file ---\n" + "\n".join(file_lines) +
                                    "\n--- live ---\n" + "\n".join(live))


# ----------------------------------------------------------------------------- signals

@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_signal_exits_zero(tap, sig):
    t = tap()
    swaks_through(t)
    t.wait_session_end(1)
    assert t.stop(sig=getattr(signal, sig)) == 0


def test_sigterm_lets_the_open_session_finish(tap):
    t = tap()
    with harness.RawSmtpClient("127.0.0.1", t.port) as c:
        assert c.code() == 220
        assert c.cmd(b"EHLO late.client.test")[-1].startswith(b"250 ")
        t.proc.send_signal(signal.SIGTERM)
        # stop accepting: new connections are refused soon (the open one lives on)
        deadline = time.monotonic() + 3
        while True:
            try:
                socket.create_connection(("127.0.0.1", t.port), timeout=1).close()
            except (ConnectionRefusedError, ConnectionResetError):
                # refused once the listener is closed; reset when the SYN was queued on it
                # just before it closed
                break
            assert time.monotonic() < deadline, "still accepting connections after SIGTERM"
            time.sleep(0.05)
        assert c.cmd(b"MAIL FROM:<a@example.org>")[-1].startswith(b"250")
        assert c.cmd(b"RCPT TO:<b@example.net>")[-1].startswith(b"250")
        assert c.cmd(b"DATA")[-1].startswith(b"354")
        c.send(b"Subject: after SIGTERM\r\n\r\nstill delivered\r\n.\r\n")
        assert c.reply()[-1].startswith(b"250 ")
        assert c.cmd(b"QUIT")[-1].startswith(b"221")
    t.wait_for(r"^#1 .*== session ended")
    assert t.wait_exit(5) == 0  # the last session is over: smtptap exits by itself


def test_a_client_with_the_port_of_an_upstream_connection_is_not_a_loop():
    """Found by the soak: a client whose source port equals the local port of one of smtptap's
    upstream connections (to another destination: the kernel may give that port out again) was
    refused with '421 4.3.0 smtptap: loop'. tests/soak/repro/loop_false_positive.py runs, in
    its own network namespace, 8 clients with only 8 ephemeral ports, so some client gets such
    a port; every client must get the upstream's greeting."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare for a private network namespace")
    script = Path(__file__).resolve().parents[1] / "soak" / "repro" / "loop_false_positive.py"
    r = subprocess.run(["unshare", "-n", "/usr/bin/python3", str(script), harness.smtptap_bin()],
                       capture_output=True, text=True, timeout=60)
    clients = [ln for ln in r.stdout.splitlines() if ln.startswith("client ")]
    assert len(clients) >= 4, r.stdout + r.stderr
    assert all(ln.endswith("220 upstream.test ESMTP") for ln in clients), r.stdout
