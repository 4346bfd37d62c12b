"""Integration-test harness for smtptap: processes, servers, clients, transcripts.

Plain helpers, no pytest magic (conftest.py wraps them in fixtures).  Everything
listens on loopback only, on ports found here, and every process, thread and
temporary file started here is cleaned up by the context managers.

Main pieces
-----------
free_port(), wait_port(port)            ports
run(cmd, timeout) -> (rc, out, err)     run a client / the binary once
Smtptap(args)                           the binary under test, transcript collected live
AiosmtpdServer(...)                     real aiosmtpd server in a thread (opt. BDAT, silent)
SmtpSink(...)                           Postfix smtp-sink, messages read from its dump files
parse_transcript(text)                  transcript lines -> TLine(session, t, marker, text)
swaks/curl/msmtp/smtplib helpers        the real clients, returning what they returned

Sanitizers: the suite also runs against an ASan/UBSan build; Smtptap.stop() and
assert_no_sanitizer_report() fail when stderr carries a sanitizer report.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import os
import pwd
import re
import secrets
import selectors
import shlex
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[2]
PYTHON = "/usr/bin/python3"  # Debian's interpreter: sees python3-aiosmtpd / pytest
SANITIZER_MARKERS = ("AddressSanitizer", "runtime error:", "LeakSanitizer")
ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

# Exit codes from the contract (sysexits).
EX_OK, EX_USAGE, EX_NOINPUT, EX_CONFIG = 0, 64, 66, 78


def smtptap_bin() -> str:
    """$SMTPTAP_BIN, else build/smtptap in the source tree."""
    return os.environ.get("SMTPTAP_BIN") or str(ROOT / "build" / "smtptap")


def smtptap_wrapper() -> List[str]:
    """$SMTPTAP_WRAPPER split like a shell would (e.g. "valgrind --log-file=... -q"): a
    command every smtptap started by Smtptap or run() runs under; [] when unset."""
    return shlex.split(os.environ.get("SMTPTAP_WRAPPER", ""))


# $SMTPTAP_TIMEOUT_SCALE (default 1): Smtptap's start, stop and wait_for timeouts are
# multiplied by it (a wrapper such as valgrind makes smtptap many times slower).
TIMEOUT_SCALE = float(os.environ.get("SMTPTAP_TIMEOUT_SCALE") or 1)


def wrapped(cmd: Sequence[str]) -> List[str]:
    """CMD behind smtptap_wrapper() when it runs the smtptap binary, else CMD."""
    cmd = list(cmd)
    if cmd and str(cmd[0]) == smtptap_bin():
        return smtptap_wrapper() + cmd
    return cmd


def have_tool(name: str) -> bool:
    return shutil.which(name) is not None or os.path.exists(f"/usr/sbin/{name}")


def tool_path(name: str) -> str:
    p = shutil.which(name)
    if p:
        return p
    for d in ("/usr/sbin", "/usr/bin", "/sbin"):
        if os.access(os.path.join(d, name), os.X_OK):
            return os.path.join(d, name)
    raise FileNotFoundError(name)


# --------------------------------------------------------------------------- ports


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on HOST (IPv4 or IPv6 literal)."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_port(port: int, host: str = "127.0.0.1", timeout: float = 5.0) -> None:
    """Wait until something accepts TCP connections on HOST:PORT (raises TimeoutError)."""
    deadline = time.monotonic() + timeout
    last: Optional[Exception] = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError as e:
            last = e
            time.sleep(0.02)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s ({last})")


def has_ipv6_loopback() -> Tuple[bool, str]:
    """(True, '') if [::1] can be bound and connected to, else (False, reason)."""
    if not socket.has_ipv6:
        return False, "Python built without IPv6"
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
            s.listen(1)
            port = s.getsockname()[1]
            with socket.create_connection(("::1", port), timeout=1):
                pass
        return True, ""
    except OSError as e:
        return False, f"IPv6 loopback [::1] unusable on this machine: {e}"


def fmt_hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --------------------------------------------------------------------------- run


def assert_no_sanitizer_report(text: str, what: str = "stderr") -> None:
    for m in SANITIZER_MARKERS:
        assert m not in text, f"sanitizer report ({m!r}) in {what}:\n{text}"


def run(cmd: Sequence[str], timeout: float = 30.0, *, input: Optional[bytes | str] = None,
        env: Optional[dict] = None, cwd: Optional[str] = None,
        binary: bool = False) -> Tuple[int, str | bytes, str | bytes]:
    """Run CMD, return (rc, stdout, stderr) (text unless binary=True).

    On timeout the whole process group is killed and an AssertionError carries what
    the command printed so far; a hung client is a test failure, not a hung suite.
    The smtptap binary runs behind $SMTPTAP_WRAPPER, its timeout scaled (TIMEOUT_SCALE)."""
    if isinstance(input, str):
        input = input.encode()
    full = wrapped(cmd)
    if len(full) > len(cmd):  # smtptap behind $SMTPTAP_WRAPPER
        timeout *= TIMEOUT_SCALE
    p = subprocess.Popen(full, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd,
                         start_new_session=True)
    try:
        out, err = p.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        raise AssertionError(
            f"command timed out after {timeout}s: {' '.join(map(str, cmd))}\n"
            f"--- stdout ---\n{out.decode(errors='replace')}\n"
            f"--- stderr ---\n{err.decode(errors='replace')}") from None
    if binary:
        return p.returncode, out, err
    return p.returncode, out.decode(errors="replace"), err.decode(errors="replace")


# --------------------------------------------------------------------------- transcript

LINE_RE = re.compile(r"^#(\d+) \+(\d+\.\d{3}) (.*)$")
# Longest first: "<** " before "<-  ", "**> " before "** ".
MARKERS = ("<**", "**>", " ->", "<- ", " ~>", "<~ ", "<=+", "<= ", "==", "**", "!!", "##")


@dataclasses.dataclass
class TLine:
    session: int
    t: float
    marker: str   # one of MARKERS, e.g. " ->", "<- ", "=="
    text: str     # what follows "<marker> " (a reply's "  (12 ms)" taken out: see latency_ms)
    raw: str
    latency_ms: Optional[float] = None  # a reply's last line: time since its command's end

    @property
    def is_command(self) -> bool:
        return self.marker in (" ->", " ~>")

    @property
    def is_reply(self) -> bool:
        return self.marker in ("<- ", "<~ ")

    @property
    def is_edited_reply(self) -> bool:
        """A line of a reply as the client got it after smtptap edited the server's ("<= ";
        "<=+" for a line the server's reply does not have)."""
        return self.marker in ("<= ", "<=+")


# "  (12 ms)", "  (0.4 ms)" or "  (<0.1 ms)" after a reply's last line, before any tag
LATENCY_RE = re.compile(r"  \((<0\.1|\d+(?:\.\d)?) ms\)(?=(  \[(?:to )?smtptap\])?$)")


def parse_line(line: str) -> Optional[TLine]:
    line = ANSI_RE.sub("", line.rstrip("\r\n"))
    m = LINE_RE.match(line)
    if not m:
        return None
    rest = m.group(3)
    for mk in MARKERS:
        if rest.startswith(mk + " ") or rest == mk:
            text, latency = rest[len(mk) + 1:], None
            if mk in ("<- ", "<~ "):
                lm = LATENCY_RE.search(text)
                if lm:
                    latency = 0.05 if lm.group(1) == "<0.1" else float(lm.group(1))
                    text = text[:lm.start()] + text[lm.end():]
            return TLine(int(m.group(1)), float(m.group(2)), mk, text, line, latency)
    return TLine(int(m.group(1)), float(m.group(2)), "?", rest, line)


def parse_transcript(text: str) -> List[TLine]:
    out = []
    for ln in text.split("\n"):  # not splitlines(): U+2028 and friends are content
        t = parse_line(ln)
        if t is not None:
            out.append(t)
    return out


def reply_code(tl: TLine) -> Optional[int]:
    m = re.match(r"(\d{3})[ -]?", tl.text)
    return int(m.group(1)) if m else None


def final_replies(lines: Iterable[TLine]) -> List[TLine]:
    """The last line of each (possibly multi-line) reply: 'NNN text' or 'NNN'."""
    return [l for l in lines if l.is_reply and re.match(r"^\d{3}( |$)", l.text)]


VERBS = {"EHLO", "HELO", "LHLO", "MAIL", "RCPT", "DATA", "BDAT", "QUIT", "RSET", "NOOP",
         "VRFY", "EXPN", "HELP", "AUTH", "STARTTLS"}


def norm_cmd(text: str) -> str:
    """Upper-case a known SMTP verb (smtplib sends 'ehlo', 'mail FROM:'); rest untouched."""
    verb, sep, rest = text.partition(" ")
    return verb.upper() + sep + rest if verb.upper() in VERBS else text


def dialog(lines: Iterable[TLine], norm: bool = True) -> List[Tuple[str, str]]:
    """[(kind, text)] with kind 'C' for a command line, 'R' for a final reply line,
    DATA content and multi-line reply continuation lines dropped.  Content lines
    are recognised as client lines between a 354 reply and the message summary.
    norm=True upper-cases the verbs (norm_cmd)."""
    out = []
    in_data = False
    for l in lines:
        if l.marker == "==" and re.match(r"message \d+:", l.text):
            in_data = False
            continue
        if l.is_command and not in_data:
            out.append(("C", norm_cmd(l.text) if norm else l.text))
        elif l.is_reply and re.match(r"^\d{3}( |$)", l.text):
            out.append(("R", l.text))
            if l.text.startswith("354"):
                in_data = True
    return out


# --------------------------------------------------------------------------- smtptap

LISTEN_RE = re.compile(r"listening on (?:tls:)?(\[[0-9A-Fa-f:.]+\]|[^\s:\[\]]+):(\d+)")


class _PtyReader:
    """readline() over a pty master fd; b"" at EOF (EIO once the child side is closed)."""

    def __init__(self, fd: int):
        self.fd = fd

    def readline(self) -> bytes:
        try:
            data = os.read(self.fd, 65536)
        except OSError:
            data = b""
        if not data:
            with contextlib.suppress(OSError):
                os.close(self.fd)
        return data


class Smtptap:
    """The binary under test.

        with Smtptap(["-u", "127.0.0.1:2600"]) as tap:
            swaks("--server", tap.hostport, ...)
            tap.wait_for(r"session ended")
        # leaving the block: SIGTERM, exit 0, no sanitizer report (asserted)

    args come after `--listen 127.0.0.1:0 --color=never` (pass listen=None / color=None
    to leave those out).  stderr and stdout are collected by threads; .transcript() is
    the stderr text so far.  umask= sets the process's umask (default: inherited); the
    process runs behind $SMTPTAP_WRAPPER when set (see smtptap_wrapper())."""

    def __init__(self, args: Sequence[str] = (), *, listen: Optional[str] = "127.0.0.1:0",
                 color: Optional[str] = "never", env: Optional[dict] = None,
                 extra_env: Optional[dict] = None, binary: Optional[str] = None,
                 cwd: Optional[str] = None, start_timeout: float = 10.0,
                 stop_timeout: float = 10.0, wait_listening: bool = True,
                 stderr_tty: bool = False, umask: int = -1):
        self.binary = binary or smtptap_bin()
        cmd = [self.binary]
        if listen is not None:
            cmd += ["--listen", listen]
        if color is not None:
            cmd += [f"--color={color}"]
        cmd += list(args)
        self.cmd = cmd
        e = dict(os.environ if env is None else env)
        e.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        if extra_env:
            e.update(extra_env)
        self.env = e
        self.cwd = cwd
        self.umask = umask
        self.start_timeout = start_timeout  # scaled by wait_for
        self.stop_timeout = stop_timeout * TIMEOUT_SCALE
        self.wait_listening = wait_listening
        self.stderr_tty = stderr_tty  # stderr on a pseudo-terminal (for --color=auto tests)
        self.proc: Optional[subprocess.Popen] = None
        self._err = bytearray()
        self._out = bytearray()
        self._cond = threading.Condition()
        self._eof = {"stderr": False, "stdout": False}
        self._threads: List[threading.Thread] = []
        self.returncode: Optional[int] = None
        self.host: Optional[str] = None
        self.port: Optional[int] = None

    # -- lifecycle
    def start(self) -> "Smtptap":
        if not os.access(self.binary, os.X_OK):
            raise AssertionError(f"smtptap binary not found or not executable: {self.binary} "
                                 "(set SMTPTAP_BIN or build with ninja -C build smtptap)")
        err_stream = None
        if self.stderr_tty:
            import pty
            import termios
            master, slave = pty.openpty()
            attrs = termios.tcgetattr(slave)
            attrs[1] &= ~termios.ONLCR  # keep "\n" line ends as the program wrote them
            termios.tcsetattr(slave, termios.TCSANOW, attrs)
            self.proc = subprocess.Popen(wrapped(self.cmd), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=slave, env=self.env,
                                         cwd=self.cwd, umask=self.umask)
            os.close(slave)
            err_stream = _PtyReader(master)
        else:
            self.proc = subprocess.Popen(wrapped(self.cmd), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         env=self.env, cwd=self.cwd, umask=self.umask)
            err_stream = self.proc.stderr
        for name, stream, buf in (("stderr", err_stream, self._err),
                                  ("stdout", self.proc.stdout, self._out)):
            t = threading.Thread(target=self._pump, args=(name, stream, buf), daemon=True)
            t.start()
            self._threads.append(t)
        if self.wait_listening:
            try:
                m = self.wait_for(LISTEN_RE, timeout=self.start_timeout)
            except AssertionError:
                self.stop(check=False)
                raise
            h = m.group(1)
            self.host = h[1:-1] if h.startswith("[") else h
            self.port = int(m.group(2))
        return self

    def _pump(self, name, stream, buf):
        for chunk in iter(lambda: stream.readline(), b""):
            with self._cond:
                buf.extend(chunk)
                self._cond.notify_all()
        with self._cond:
            self._eof[name] = True
            self._cond.notify_all()

    def __enter__(self) -> "Smtptap":
        return self.start()

    def __exit__(self, et, ev, tb):
        # Do not let a cleanup assertion hide the test's own failure.
        self.stop(check=et is None)
        return False

    def stop(self, *, check: bool = True, expect_rc: int = 0, sig: int = signal.SIGTERM) -> Optional[int]:
        """SIGTERM, wait (kill after stop_timeout), assert rc and clean stderr."""
        if self.proc is None:
            return None
        if self.returncode is None:
            killed = False
            if self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.send_signal(sig)
                try:
                    self.proc.wait(self.stop_timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
                    killed = True
            self.returncode = self.proc.returncode
            for t in self._threads:
                t.join(5)
            if check:
                assert not killed, (f"smtptap did not exit within {self.stop_timeout}s of "
                                    f"{signal.Signals(sig).name}; killed.\n{self.transcript()}")
        if check:
            assert self.returncode == expect_rc, (
                f"smtptap exited with {self.returncode}, expected {expect_rc}\n"
                f"cmd: {' '.join(self.cmd)}\n--- stderr ---\n{self.transcript()}")
            assert_no_sanitizer_report(self.transcript(), "smtptap stderr")
        return self.returncode

    def wait_exit(self, timeout: float = 10.0, *, expect_rc: int = 0) -> int:
        """Wait for smtptap to exit by itself (e.g. after a signal it already got), then
        check it like stop() does.  Sends nothing: a second signal could race shutdown.
        TIMEOUT is multiplied by TIMEOUT_SCALE."""
        timeout *= TIMEOUT_SCALE
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"smtptap still running {timeout}s later\n{self.transcript()}") from None
        return self.stop(expect_rc=expect_rc)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- addresses
    @property
    def hostport(self) -> str:
        return fmt_hostport(self.host, self.port)

    # -- output
    def transcript(self) -> str:
        with self._cond:
            return self._err.decode("utf-8", errors="replace")

    def stdout(self) -> str:
        with self._cond:
            return self._out.decode("utf-8", errors="replace")

    def lines(self, session: Optional[int] = None) -> List[TLine]:
        ls = parse_transcript(self.transcript())
        return [l for l in ls if session is None or l.session == session]

    def sessions(self) -> List[int]:
        seen = []
        for l in self.lines():
            if l.session not in seen:
                seen.append(l.session)
        return seen

    def wait_for(self, pattern, timeout: float = 5.0, *, count: int = 1,
                 flags: int = re.M, raw: bool = False) -> re.Match:
        """Wait until PATTERN (regex) matched COUNT times in stderr; return the last match.
        Colour escape codes are removed before matching unless raw=True.
        Fails early if smtptap exits; on timeout the assertion shows the transcript.
        TIMEOUT is multiplied by TIMEOUT_SCALE."""
        timeout *= TIMEOUT_SCALE
        rx = pattern if isinstance(pattern, re.Pattern) else re.compile(pattern, flags)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                text = self._err.decode("utf-8", errors="replace")
                if not raw:
                    text = ANSI_RE.sub("", text)
                ms = list(rx.finditer(text))
                if len(ms) >= count:
                    return ms[count - 1]
                if self._eof["stderr"]:
                    rc = self.proc.poll() if self.proc else None
                    raise AssertionError(
                        f"smtptap stderr closed (exit status {rc}) before {rx.pattern!r} "
                        f"appeared {count}x\ncmd: {' '.join(self.cmd)}\n--- stderr ---\n{text}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"timed out after {timeout}s waiting for {rx.pattern!r} ({count}x, "
                        f"seen {len(ms)})\n--- stderr ---\n{text}")
                self._cond.wait(min(left, 0.2))

    def wait_session_end(self, session: Optional[int] = None, timeout: float = 5.0) -> re.Match:
        sid = r"\d+" if session is None else str(session)
        return self.wait_for(rf"^#{sid} \+\S+ == session ended\b.*$", timeout)


# --------------------------------------------------------------------------- aiosmtpd


@dataclasses.dataclass
class Received:
    mail_from: str
    rcpt_tos: List[str]
    content: bytes             # aiosmtpd original_content: CRLF lines, dot-unstuffed
    mail_options: List[str]
    rcpt_options: List[str]
    via: str                   # "DATA" or "BDAT"
    peer: tuple
    helo: Optional[str]


def _aiosmtpd_classes():
    """Import aiosmtpd lazily (only servers need it) and build the BDAT subclass."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP, AuthResult, syntax, MISSING

    class TapSMTP(SMTP):
        """aiosmtpd's SMTP with adjustable line limits and optional CHUNKING (RFC 3030).

        BDAT: the chunk octets are always consumed, whatever the reply (RFC 3030 s2);
        BDAT needs EHLO, MAIL and RCPT (503 otherwise); DATA after BDAT in one
        transaction is 503; BDAT LAST hands the concatenated chunks to the handler's
        handle_DATA like DATA would (no dot-unstuffing: BDAT content is raw)."""

        def __init__(self, handler, *, bdat: bool = False, line_length_limit: int = 1001,
                     command_size_limit: int = 512, inject_after_starttls: bytes = b"",
                     refuse_starttls: str = "", **kw):
            self.line_length_limit = line_length_limit  # read by SMTP.__init__ (StreamReader limit)
            self.inject_after_starttls = inject_after_starttls
            self.refuse_starttls = refuse_starttls
            self.tap_ehlo_count = 0  # EHLO commands on this connection (number_ehlo)
            self._inject_pending = False
            self.command_size_limit = command_size_limit
            self.bdat_enabled = bdat
            self._bdat_chunks: Optional[List[bytes]] = None
            self._bdat_size = 0
            super().__init__(handler, **kw)
            self.command_size_limits = collections.defaultdict(lambda: command_size_limit)

        def _set_post_data_state(self):
            super()._set_post_data_state()
            self._bdat_chunks = None
            self._bdat_size = 0

        # Response injection (inject_after_starttls): the 220 to STARTTLS and the extra
        # bytes leave in one transport write, i.e. one TCP segment on loopback, before the
        # handshake starts (the shape of the CVE-2011-0411 class attack, server side).
        @syntax("STARTTLS", when="tls_context")
        async def smtp_STARTTLS(self, arg):
            if self.refuse_starttls and not arg:
                # Offered (tls_context) but refused: the reply, no handshake, still plain.
                return await self.push(self.refuse_starttls)
            self._inject_pending = bool(self.inject_after_starttls and not arg
                                        and self.tls_context and not self._tls_protocol)
            try:
                return await super().smtp_STARTTLS(arg)
            finally:
                self._inject_pending = False

        async def push(self, status):
            if self._inject_pending:
                response = status.encode("ascii") if isinstance(status, str) else status
                if response.startswith(b"220"):
                    self._inject_pending = False
                    self._writer.write(response + b"\r\n" + self.inject_after_starttls)
                    await self._writer.drain()
                    return
            return await super().push(status)

        @syntax("DATA")
        async def smtp_DATA(self, arg):
            if self._bdat_chunks is not None:
                return await self.push("503 5.5.1 Error: DATA not allowed after BDAT")
            return await super().smtp_DATA(arg)

        @syntax("BDAT chunk-size [LAST]", when="bdat_enabled")
        async def smtp_BDAT(self, arg):
            if not self.bdat_enabled:
                return await self.push('500 Error: command "BDAT" not recognized')
            parts = (arg or "").split()
            if not (1 <= len(parts) <= 2) or not parts[0].isdigit() or (
                    len(parts) == 2 and parts[1].upper() != "LAST"):
                # Size unknown: nothing can be consumed safely.
                return await self.push("501 5.5.4 Syntax: BDAT chunk-size [LAST]")
            size, last = int(parts[0]), len(parts) == 2
            try:
                chunk = await self._reader.readexactly(size)
            except asyncio.IncompleteReadError:
                return  # client went away mid-chunk; connection_lost cleans up
            if not self.session.host_name:
                return await self.push("503 5.5.1 Error: send EHLO first")
            if self._auth_required and not self.session.authenticated:
                return await self.push("530 5.7.0 Authentication required")
            if not self.envelope.mail_from:
                return await self.push("503 5.5.1 Error: need MAIL command")
            if not self.envelope.rcpt_tos:
                return await self.push("503 5.5.1 Error: need RCPT command")
            if self._bdat_chunks is None:
                self._bdat_chunks = []
            self._bdat_size += size
            if self.data_size_limit and self._bdat_size > self.data_size_limit:
                self._set_post_data_state()
                return await self.push("552 5.3.4 Error: message size exceeds limit")
            self._bdat_chunks.append(chunk)
            if not last:
                return await self.push(f"250 2.0.0 {size} octets received")
            content = b"".join(self._bdat_chunks)
            self.envelope.original_content = content
            if self._decode_data:
                self.envelope.content = content.decode("utf-8", errors="surrogateescape")
            else:
                self.envelope.content = content
            self.envelope.tap_via = "BDAT"
            status = MISSING
            if "DATA" in self._handle_hooks:
                status = await self._call_handler_hook("DATA")
            self._set_post_data_state()
            await self.push("250 OK" if status is MISSING else status)

    class TapController(Controller):
        def __init__(self, handler, *, bdat, line_length_limit, command_size_limit,
                     inject_after_starttls=b"", refuse_starttls="", **kw):
            self._tap = dict(bdat=bdat, line_length_limit=line_length_limit,
                             command_size_limit=command_size_limit,
                             inject_after_starttls=inject_after_starttls,
                             refuse_starttls=refuse_starttls)
            super().__init__(handler, **kw)

        def factory(self):
            return TapSMTP(self.handler, **self._tap, **self.SMTP_kwargs)

    return TapController, AuthResult


class _Recorder:
    def __init__(self, owner: "AiosmtpdServer"):
        self.owner = owner

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname  # the 5-argument hook must do this itself
        extra = []
        if self.owner.pipelining:
            extra.append("250-PIPELINING")
        if getattr(server, "bdat_enabled", False):
            extra.append("250-CHUNKING")
        if self.owner.number_ehlo:
            server.tap_ehlo_count = getattr(server, "tap_ehlo_count", 0) + 1
            extra.append(f"250-X-EHLO-{server.tap_ehlo_count}")
        return responses[:1] + extra + responses[1:]

    # Replies that name their argument, so that a test can tell which reply answered
    # which pipelined command.  The hooks must record the envelope themselves.
    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return f"250 2.1.0 Sender <{address}> ok"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.split("@")[0].startswith("reject"):
            return f"550 5.1.1 Recipient <{address}> rejected"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return f"250 2.1.5 Recipient <{address}> ok"

    async def handle_DATA(self, server, session, envelope):
        rec = Received(mail_from=envelope.mail_from, rcpt_tos=list(envelope.rcpt_tos),
                       content=bytes(envelope.original_content),
                       mail_options=list(envelope.mail_options),
                       rcpt_options=list(envelope.rcpt_options),
                       via=getattr(envelope, "tap_via", "DATA"), peer=session.peer,
                       helo=session.host_name)
        return self.owner._record(rec)


class AiosmtpdServer:
    """A real aiosmtpd server on HOST:free port, run in a thread.

        with AiosmtpdServer(bdat=True) as srv:
            ... smtptap -u srv.hostport ...
            msg = srv.wait_for_messages(1)[0]

    Greets `220 <hostname> <ident>` (hostname unique per instance, see .greeting),
    advertises PIPELINING, answers MAIL with `250 2.1.0 Sender <addr> ok`, RCPT with
    `250 2.1.5 Recipient <addr> ok` (`550 5.1.1 Recipient <addr> rejected` when the
    local part starts with "reject"), the end of each message with
    `250 2.0.0 OK queued as aioN` (N = 1, 2, ... per server).
    bdat=True adds CHUNKING; line_length_limit is raised so that long body lines are
    accepted; auth=True advertises AUTH PLAIN LOGIN over plain TCP, any credentials.
    silent=True is instead a TCP server that accepts and never says anything.
    inject_after_starttls=b"250 injected\\r\\n" (with tls_context=...): the 220 to STARTTLS
    and these bytes go out in one write, before the handshake (response injection).
    refuse_starttls="454 4.7.0 TLS not available" (with tls_context=...): STARTTLS is
    offered but answered with this reply; no handshake, the connection stays plain.
    number_ehlo=True: each EHLO reply carries `250-X-EHLO-<n>`, n counting the EHLO
    commands of the connection (1, 2, ...), so a test can tell which EHLO reply it got."""

    def __init__(self, *, host: str = "127.0.0.1", bdat: bool = False, silent: bool = False,
                 hostname: Optional[str] = None, ident: str = "ESMTP aiosmtpd-fixture",
                 line_length_limit: int = 1 << 20, command_size_limit: int = 4096,
                 data_size_limit: int = 64 << 20, auth: bool = False, pipelining: bool = True,
                 inject_after_starttls: bytes = b"", refuse_starttls: str = "",
                 number_ehlo: bool = False, **smtp_kwargs):
        self.host = host
        self.refuse_starttls = refuse_starttls
        self.number_ehlo = number_ehlo
        self.pipelining = pipelining
        self.bdat = bdat
        self.silent = silent
        self.hostname = hostname or f"aiosmtpd-{secrets.token_hex(3)}.test"
        self.ident = ident
        self.line_length_limit = line_length_limit
        self.command_size_limit = command_size_limit
        self.data_size_limit = data_size_limit
        self.auth = auth
        self.inject_after_starttls = inject_after_starttls
        self.smtp_kwargs = smtp_kwargs
        self.port: Optional[int] = None
        self.messages: List[Received] = []
        self._cond = threading.Condition()
        self._controller = None
        # silent mode
        self._lsock: Optional[socket.socket] = None
        self._conns: List[socket.socket] = []
        self._silent_received = bytearray()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.connections = 0

    @property
    def hostport(self) -> str:
        return fmt_hostport(self.host, self.port)

    @property
    def greeting(self) -> str:
        return f"220 {self.hostname} {self.ident}"

    def _record(self, rec: Received) -> str:
        with self._cond:
            self.messages.append(rec)
            n = len(self.messages)
            self._cond.notify_all()
        return f"250 2.0.0 OK queued as aio{n}"

    def wait_for_messages(self, n: int = 1, timeout: float = 5.0) -> List[Received]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.messages) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"aiosmtpd server received {len(self.messages)} "
                                         f"message(s), expected {n}, within {timeout}s")
                self._cond.wait(left)
            return list(self.messages)

    def wait_connections(self, n: int = 1, timeout: float = 5.0) -> None:
        """silent mode: wait until N connections were accepted."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.connections < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"silent server accepted {self.connections} "
                                         f"connection(s), expected {n}")
                self._cond.wait(left)

    def silent_received(self) -> bytes:
        with self._cond:
            return bytes(self._silent_received)

    # -- lifecycle
    def start(self) -> "AiosmtpdServer":
        if self.silent:
            return self._start_silent()
        TapController, AuthResult = _aiosmtpd_classes()
        kw = dict(self.smtp_kwargs)
        kw.setdefault("data_size_limit", self.data_size_limit)
        kw.setdefault("ident", self.ident)
        kw.setdefault("timeout", 60)
        if self.auth:
            kw.setdefault("auth_require_tls", False)
            kw.setdefault("authenticator", lambda *a, **k: AuthResult(success=True))
        last = None
        for _ in range(5):  # the free port may be taken between lookup and bind
            self.port = free_port(self.host)
            ctl = TapController(_Recorder(self), bdat=self.bdat,
                                line_length_limit=self.line_length_limit,
                                command_size_limit=self.command_size_limit,
                                inject_after_starttls=self.inject_after_starttls,
                                refuse_starttls=self.refuse_starttls,
                                hostname=self.host, port=self.port,
                                server_hostname=self.hostname, ready_timeout=10, **kw)
            try:
                ctl.start()
            except OSError as e:
                last = e
                with contextlib.suppress(Exception):
                    ctl.stop(no_assert=True)
                continue
            self._controller = ctl
            return self
        raise RuntimeError(f"aiosmtpd could not bind a port on {self.host}: {last}")

    def _start_silent(self) -> "AiosmtpdServer":
        fam = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, 0))
        s.listen(16)
        s.setblocking(False)
        self._lsock = s
        self.port = s.getsockname()[1]
        self._thread = threading.Thread(target=self._silent_loop, daemon=True)
        self._thread.start()
        return self

    def _silent_loop(self):
        sel = selectors.DefaultSelector()
        sel.register(self._lsock, selectors.EVENT_READ)
        while not self._stop.is_set():
            for key, _ in sel.select(0.1):
                if key.fileobj is self._lsock:
                    try:
                        c, _ = self._lsock.accept()
                    except BlockingIOError:
                        continue
                    c.setblocking(False)
                    sel.register(c, selectors.EVENT_READ)
                    with self._cond:
                        self._conns.append(c)
                        self.connections += 1
                        self._cond.notify_all()
                else:
                    c = key.fileobj
                    try:
                        data = c.recv(65536)
                    except (BlockingIOError, ConnectionError):
                        data = b""
                    if data:
                        with self._cond:
                            self._silent_received.extend(data)
                            self._cond.notify_all()
                    else:
                        sel.unregister(c)
        sel.close()

    def stop(self) -> None:
        if self._controller is not None:
            with contextlib.suppress(Exception):
                self._controller.stop(no_assert=True)
            self._controller = None
        if self._thread is not None:
            self._stop.set()
            self._thread.join(5)
            self._thread = None
        for c in self._conns:
            with contextlib.suppress(OSError):
                c.close()
        self._conns.clear()
        if self._lsock is not None:
            self._lsock.close()
            self._lsock = None

    def __enter__(self) -> "AiosmtpdServer":
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


# --------------------------------------------------------------------------- smtp-sink


@dataclasses.dataclass
class SinkMessage:
    mail_args: str             # X-Mail-Args, e.g. "<a@b.example>"
    rcpt_args: List[str]       # X-Rcpt-Args, one per RCPT
    helo: Optional[str]
    content: bytes             # message as received, LF line ends (smtp-sink writes LF)
    path: str


class SmtpSink:
    """Postfix smtp-sink on HOST:free port; every transaction dumped to a private dir.

        with SmtpSink() as sink:
            ... smtptap -u sink.hostport ...
            msgs = sink.wait_for_messages(1)

    Greets `220 <hostname> ESMTP` (hostname unique per instance)."""

    def __init__(self, *, host: str = "127.0.0.1", hostname: Optional[str] = None,
                 args: Sequence[str] = (), backlog: int = 64):
        self.host = host
        self.hostname = hostname or f"sink-{secrets.token_hex(3)}.test"
        self.args = list(args)
        self.backlog = backlog
        self.port: Optional[int] = None
        self.proc: Optional[subprocess.Popen] = None
        self.dir: Optional[str] = None
        self._log: Optional[tempfile.TemporaryFile] = None

    @property
    def hostport(self) -> str:
        return fmt_hostport(self.host, self.port)

    @property
    def greeting(self) -> str:
        return f"220 {self.hostname} ESMTP"

    def start(self) -> "SmtpSink":
        exe = tool_path("smtp-sink")
        self.dir = tempfile.mkdtemp(prefix="smtptap-sink-")
        user = []
        if os.geteuid() == 0:  # smtp-sink refuses to run as root without -u
            nobody = pwd.getpwnam("nobody")
            os.chown(self.dir, nobody.pw_uid, nobody.pw_gid)
            user = ["-u", "nobody"]
        last = ""
        for _ in range(5):
            self.port = free_port(self.host)
            self._log = tempfile.TemporaryFile()
            self.proc = subprocess.Popen(
                [exe, *user, "-h", self.hostname, "-d", os.path.join(self.dir, "%Y%m%d%H%M%S."),
                 *self.args, f"inet:{self.hostport}", str(self.backlog)],
                stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    with socket.create_connection((self.host, self.port), timeout=0.5):
                        return self
                except OSError:
                    time.sleep(0.02)
            self.proc.kill()
            self.proc.wait()
            self._log.seek(0)
            last = self._log.read().decode(errors="replace")
            self._log.close()
        self._cleanup_dir()
        raise RuntimeError(f"smtp-sink did not start: {last}")

    def log(self) -> str:
        if not self._log:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def _parse(self, path: str) -> Optional[SinkMessage]:
        data = Path(path).read_bytes()
        if not data.endswith(b"\n\n"):
            return None
        lines = data.split(b"\n")
        mail, rcpts, helo = None, [], None
        i = 0
        while i < len(lines) and not lines[i].startswith(b"Received: "):
            k, _, v = lines[i].partition(b": ")
            v = v.decode(errors="replace")
            if k == b"X-Mail-Args":
                mail = v
            elif k == b"X-Rcpt-Args":
                rcpts.append(v)
            elif k == b"X-Helo-Args":
                helo = v
            i += 1
        if i >= len(lines) or mail is None:
            return None
        body = b"\n".join(lines[i + 3:])  # Received: is three lines
        return SinkMessage(mail, rcpts, helo, body[:-1], path)  # drop the appended empty line

    def messages(self) -> List[SinkMessage]:
        """Complete dumps, oldest first (file names are second-resolution + random hex, so
        two messages within a second are ordered by mtime, which may still tie)."""
        out = []
        paths = [os.path.join(self.dir, f) for f in os.listdir(self.dir)]
        for p in sorted(paths, key=lambda p: (os.stat(p).st_mtime_ns, p)):
            if os.path.isfile(p):
                m = self._parse(p)
                if m is not None:
                    out.append(m)
        return out

    def wait_for_messages(self, n: int = 1, timeout: float = 5.0) -> List[SinkMessage]:
        deadline = time.monotonic() + timeout
        prev = None
        while True:
            msgs = self.messages()
            sizes = [os.path.getsize(m.path) for m in msgs]
            if len(msgs) >= n and sizes == prev:  # complete and stable across two polls
                return msgs
            prev = sizes
            if time.monotonic() > deadline:
                raise AssertionError(f"smtp-sink dumped {len(msgs)} complete message(s), "
                                     f"expected {n}, within {timeout}s; log:\n{self.log()}")
            time.sleep(0.05)

    def _cleanup_dir(self):
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
        if self._log:
            self._log.close()
            self._log = None
        self._cleanup_dir()

    def __enter__(self) -> "SmtpSink":
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


# --------------------------------------------------------------------------- messages & clients


def make_message(subject: str = "smtptap test", *, frm: str = "alice@example.org",
                 to: Sequence[str] = ("bob@example.net",), body_lines: Sequence[str] = (),
                 extra_headers: Sequence[str] = ()) -> bytes:
    """A small RFC 5322 message with CRLF line ends (ends with CRLF)."""
    hdr = [f"From: <{frm}>", "To: " + ", ".join(f"<{t}>" for t in to), f"Subject: {subject}",
           f"Message-ID: <{secrets.token_hex(8)}@smtptap.test>",
           "Date: Thu, 01 Jan 2026 00:00:00 +0000", *extra_headers]
    body = list(body_lines) or ["Hello from the smtptap integration tests.", "",
                                ".a line that starts with a dot", "last line"]
    return ("\r\n".join(hdr + [""] + body) + "\r\n").encode()


def swaks(server: str, *args: str, timeout: float = 30.0) -> Tuple[int, str, str]:
    """swaks --server SERVER ARGS (no TLS unless asked). Returns (rc, out, err)."""
    return run([tool_path("swaks"), "--server", server, "--timeout", "20", *args], timeout)


def swaks_send(server: str, mail_from: str, rcpts: Sequence[str], message: bytes, workdir: str,
               *args: str, timeout: float = 30.0) -> Tuple[int, str, str]:
    """swaks delivering exactly MESSAGE (CRLF-terminated): swaks appends CRLF.CRLF to
    the --data file, so the file holds MESSAGE without its final CRLF."""
    assert message.endswith(b"\r\n")
    path = os.path.join(workdir, f"swaks-{secrets.token_hex(4)}.eml")
    Path(path).write_bytes(message[:-2])
    return swaks(server, "--from", mail_from, "--to", ",".join(rcpts), "--data", "@" + path,
                 *args, timeout=timeout)


def curl_send(host: str, port: int, mail_from: str, rcpts: Sequence[str], message_file: str,
              *args: str, timeout: float = 30.0) -> Tuple[int, str, str]:
    """curl smtp://HOST:PORT --mail-from --mail-rcpt... -T FILE (verbose on stderr)."""
    url = f"smtp://{fmt_hostport(host, port)}/client.test"
    cmd = [tool_path("curl"), "-sS", "-v", "--max-time", "20", url, "--mail-from", mail_from]
    for r in rcpts:
        cmd += ["--mail-rcpt", r]
    cmd += ["-T", message_file, *args]
    return run(cmd, timeout)


def msmtp_send(host: str, port: int, mail_from: str, rcpts: Sequence[str], message: bytes,
               workdir: str, *, extra_conf: Sequence[str] = (), timeout: float = 30.0
               ) -> Tuple[int, str, str]:
    """msmtp with a private msmtprc (auth off, tls off) in WORKDIR; message on stdin."""
    rc_path = os.path.join(workdir, "msmtprc")
    conf = ["defaults", "auth off", "tls off", "tls_starttls off", "timeout 20",
            "logfile -", "account default", f"host {host}", f"port {port}",
            f"from {mail_from}", "domain client.test", *extra_conf]
    Path(rc_path).write_text("\n".join(conf) + "\n")
    os.chmod(rc_path, 0o600)
    return run([tool_path("msmtp"), f"--file={rc_path}", "-v", "-f", mail_from, "--", *rcpts],
               timeout, input=message)


def smtplib_send(host: str, port: int, mail_from: str, rcpts: Sequence[str], message: bytes,
                 timeout: float = 20.0) -> dict:
    """Python smtplib in-process: EHLO, sendmail, QUIT. Returns sendmail's refused dict."""
    with smtplib.SMTP(host, port, local_hostname="client.test", timeout=timeout) as s:
        refused = s.sendmail(mail_from, list(rcpts), message)
        s.quit()
    return refused


def swaks_replies(out: str) -> List[str]:
    """Reply lines as swaks printed them (`<-  ` and, for failures, `<** `), text only."""
    return [l[4:] for l in out.splitlines() if l.startswith(("<-  ", "<** "))]


def swaks_commands(out: str) -> List[str]:
    """Lines swaks sent (` -> `), DATA content included, text only."""
    return [l[4:] for l in out.splitlines() if l.startswith(" -> ")]


def read_reply(next_line) -> List[bytes]:
    """One complete (multi-line) reply from next_line() (a line without its CRLF, or None
    at EOF); raises ConnectionError on EOF."""
    lines = []
    while True:
        ln = next_line()
        if ln is None:
            raise ConnectionError(f"connection closed after {lines!r}")
        lines.append(ln)
        if len(ln) < 4 or ln[3:4] != b"-":
            return lines


class RawSmtpClient:
    """A byte-exact SMTP client on a plain socket; counts every byte both ways.

        with RawSmtpClient("127.0.0.1", port) as c:
            c.reply()                 # greeting -> [b"220 ..."]
            c.cmd(b"EHLO x")          # sends b"EHLO x\\r\\n", returns the reply lines
    """

    def __init__(self, host: str, port: int, timeout: float = 10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.sent = 0
        self.received = 0

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)
        self.sent += len(data)

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        self.received += len(data)
        self.buf += data
        return True

    def line(self) -> Optional[bytes]:
        while b"\n" not in self.buf:
            if not self._fill():
                return None
        ln, _, self.buf = self.buf.partition(b"\n")
        return ln.rstrip(b"\r")

    def reply(self) -> List[bytes]:
        """One complete (multi-line) reply; raises ConnectionError on EOF."""
        return read_reply(self.line)

    def code(self) -> int:
        return int(self.reply()[-1][:3])

    def cmd(self, line: bytes) -> List[bytes]:
        self.send(line + b"\r\n")
        return self.reply()

    def read_until_closed(self, timeout: float = 5.0) -> bytes:
        self.sock.settimeout(timeout)
        while self._fill():
            pass
        data, self.buf = self.buf, b""
        return data

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> "RawSmtpClient":
        return self

    def __exit__(self, *exc):
        self.close()
        return False


# --------------------------------------------------------------------------- aiosmtpd extras


def aiosmtpd_add_auth_mechanism(srv: AiosmtpdServer, name: str, method) -> None:
    """Offer one more SASL mechanism NAME on a running AiosmtpdServer(auth=True).

    METHOD is aiosmtpd's handler hook, `async def method(server, args) -> AuthResult`
    (server: the aiosmtpd SMTP instance, with push() and challenge_auth(); args: the AUTH
    command's words, e.g. ["OAUTHBEARER", "<initial response>"]).  aiosmtpd collects the
    handler's auth_* attributes for each new connection, so this applies to connections
    accepted after the call."""
    assert srv._controller is not None, "start the server first (and not silent=True)"
    setattr(srv._controller.handler, "auth_" + name.replace("-", "__"), method)


# --------------------------------------------------------------------------- TLS material


def make_self_signed_cert(workdir: str, cn: str = "localhost") -> Tuple[str, str]:
    """A throw-away self-signed certificate and key (PEM files in WORKDIR, made with the
    openssl command); returns (cert_path, key_path)."""
    cert = os.path.join(workdir, f"{cn}-cert.pem")
    key = os.path.join(workdir, f"{cn}-key.pem")
    rc, out, err = run([tool_path("openssl"), "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "2", "-subj", f"/CN={cn}", "-addext", f"subjectAltName=DNS:{cn}"],
                       timeout=30)
    if rc != 0:
        raise RuntimeError(f"openssl could not make a certificate (rc {rc}):\n{out}\n{err}")
    return cert, key


def server_tls_context(workdir: str, cn: str = "localhost"):
    """An ssl.SSLContext for a test server (e.g. aiosmtpd's tls_context), self-signed."""
    import ssl
    cert, key = make_self_signed_cert(workdir, cn)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


class CertAuthority:
    """A throw-away test CA (EC P-256, made with python3-cryptography) in WORKDIR.

        ca = CertAuthority(workdir)                 # ca.cert_path: the CA certificate PEM
        cert, key = ca.issue(["localhost", "127.0.0.1"])
        cert, key = ca.issue(["localhost"], not_before=past, not_after=past2)  # expired
        ctx = ca.server_context(["localhost"])      # ssl.SSLContext for a test server,
                                                    # e.g. AiosmtpdServer(ssl_context=ctx)
    NAMES become subjectAltNames (IP literals as IP SANs); the first is the CN.
    issue(..., organization="Upstream Test Org") adds O= to the leaf's subject."""

    def __init__(self, workdir: str, name: str = "smtptap integration test CA"):
        import datetime
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
        self.workdir = workdir
        self._n = 0
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (x509.CertificateBuilder()
                     .subject_name(self.name).issuer_name(self.name)
                     .public_key(self.key.public_key())
                     .serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(days=1))
                     .not_valid_after(now + datetime.timedelta(days=30))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                                  False, False), critical=True)
                     .add_extension(x509.SubjectKeyIdentifier.from_public_key(
                         self.key.public_key()), critical=False)
                     .sign(self.key, hashes.SHA256()))
        self.cert_path = os.path.join(workdir, f"testca-{secrets.token_hex(3)}.pem")
        Path(self.cert_path).write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, names: Sequence[str], *, not_before=None, not_after=None,
              organization: Optional[str] = None) -> Tuple[str, str]:
        """A server certificate for NAMES signed by this CA; returns (cert_path, key_path).
        not_before / not_after: datetimes (default: yesterday, in 30 days); organization:
        an O= attribute after the CN in the subject."""
        import datetime
        import ipaddress
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
        now = datetime.datetime.now(datetime.timezone.utc)
        not_before = not_before or now - datetime.timedelta(days=1)
        not_after = not_after or now + datetime.timedelta(days=30)
        key = ec.generate_private_key(ec.SECP256R1())
        sans = []
        for n in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                sans.append(x509.DNSName(n))
        subject = [x509.NameAttribute(NameOID.COMMON_NAME, names[0])]
        if organization:
            subject.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name(subject))
                .issuer_name(self.name)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(not_before).not_valid_after(not_after)
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                               critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    self.key.public_key()), critical=False)
                .sign(self.key, hashes.SHA256()))
        self._n += 1
        base = os.path.join(self.workdir, f"leaf{self._n}-{secrets.token_hex(3)}")
        Path(base + "-cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        Path(base + "-key.pem").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        os.chmod(base + "-key.pem", 0o600)
        return base + "-cert.pem", base + "-key.pem"

    def server_context(self, names: Sequence[str], **issue_kw):
        """An ssl.SSLContext (server side) presenting a certificate for NAMES from this CA."""
        return tls_server_context(*self.issue(names, **issue_kw))


def tls_server_context(cert_path: str, key_path: str):
    """An ssl.SSLContext (server side) presenting CERT_PATH / KEY_PATH (PEM)."""
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_path, key_path)
    return ctx


def cert_sha256(cert_path: str) -> str:
    """SHA-256 fingerprint of a PEM certificate as AB:CD:... (upper case, like openssl)."""
    import hashlib
    import ssl
    der = ssl.PEM_cert_to_DER_cert(Path(cert_path).read_text())
    h = hashlib.sha256(der).hexdigest().upper()
    return ":".join(h[i:i + 2] for i in range(0, len(h), 2))


# --------------------------------------------------------------------------- recording relay


class RecordingRelay:
    """A TCP relay on 127.0.0.1:free port to TARGET_HOST:TARGET_PORT that keeps a copy of
    every byte it forwards, so that a test can see exactly what a real server (e.g. an
    AiosmtpdServer) was sent, and what it sent back.

        with AiosmtpdServer() as srv, RecordingRelay(srv.host, srv.port) as rec:
            ... smtptap -u rec.hostport ...
            rec.to_server(1)      # bytes the server got on the 1st connection
            rec.to_client(1)      # bytes the server sent on it

    Each direction is forwarded as it arrives; a half-close is passed on (shutdown)."""

    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1"):
        self.target = (target_host, target_port)
        self.host = host
        self.port: Optional[int] = None
        self.connections = 0
        self._c2s = collections.defaultdict(bytearray)   # connection number -> bytes
        self._s2c = collections.defaultdict(bytearray)
        self._cond = threading.Condition()
        self._lsock: Optional[socket.socket] = None
        self._stop = threading.Event()
        self._threads: List[threading.Thread] = []
        self._socks: List[socket.socket] = []

    @property
    def hostport(self) -> str:
        return fmt_hostport(self.host, self.port)

    def to_server(self, conn: int = 1) -> bytes:
        with self._cond:
            return bytes(self._c2s[conn])

    def to_client(self, conn: int = 1) -> bytes:
        with self._cond:
            return bytes(self._s2c[conn])

    def start(self) -> "RecordingRelay":
        s = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        s.bind((self.host, 0))
        s.listen(16)
        s.settimeout(0.1)
        self._lsock = s
        self.port = s.getsockname()[1]
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                c, _ = self._lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            c.settimeout(None)
            try:
                u = socket.create_connection(self.target, timeout=5)
                u.settimeout(None)
            except OSError:
                c.close()
                continue
            with self._cond:
                self.connections += 1
                n = self.connections
                self._socks += [c, u]
                self._cond.notify_all()
            for src, dst, rec in ((c, u, self._c2s[n]), (u, c, self._s2c[n])):
                t = threading.Thread(target=self._pipe, args=(src, dst, rec), daemon=True)
                t.start()
                self._threads.append(t)

    def _pipe(self, src: socket.socket, dst: socket.socket, rec: bytearray):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self._cond:
                    rec.extend(data)
                    self._cond.notify_all()
                dst.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            socks = list(self._socks)
        for c in socks:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                c.close()
        for t in self._threads:
            t.join(5)
        if self._lsock is not None:
            self._lsock.close()
            self._lsock = None

    def __enter__(self) -> "RecordingRelay":
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


def smtptap_ca(tmp_path):
    """(ca_dir, ca_pem_path): smtptap's CA created in tmp_path/tapca via --print-ca."""
    ca_dir = tmp_path / "tapca"
    rc, out, err = run([smtptap_bin(), "--ca-dir", str(ca_dir), "--print-ca"])
    assert rc == 0, f"smtptap --print-ca failed (rc {rc}):\n{err}"
    assert out.startswith("-----BEGIN CERTIFICATE-----"), out
    pem = tmp_path / "tapca.pem"
    pem.write_text(out)
    return str(ca_dir), str(pem)
