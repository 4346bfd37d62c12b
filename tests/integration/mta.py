"""Real MTAs on loopback as upstream servers for smtptap's integration tests.

    from mta import Exim, OpenSmtpd, PostfixSmtpd

    with Exim(tls=(cert, key), auth="tls") as up:     # cert/key: e.g. CertAuthority.issue()
        ... smtptap -u up.hostport ...  (or up.tls_hostport: implicit TLS)
        msg = up.wait_for_messages(1)[0]
        assert msg.data == sent                        # the message as the client sent it
        assert up.helo_counts() == [2]                 # EHLO + EHLO after STARTTLS
        assert " X=TLS1.3" in up.log()

Each class starts one MTA in the foreground, with its own configuration, spool, log and
mailbox in a private temporary directory (removed by stop()), listening on 127.0.0.1 on
free ports.  The binaries come from tests/mta/install.sh (Exim and OpenSMTPD are unpacked,
not installed, under $SMTPTAP_MTA_ROOT, default /opt/smtptap-test-mtas, since both
conflict with the postfix package); a missing binary skips the test.  Root is needed
(they run as their own system users).

Common interface
----------------
start() / stop() / with ...     stop() kills the whole process tree, even after a failure
host, port, hostport            the plain port (STARTTLS offered there when tls= is given)
tls_port, tls_hostport          implicit-TLS port (Exim, Postfix; only with tls=), else None
hostname, greeting              the name in the 220 greeting / EHLO reply
user, password                  the AUTH test account (when auth= is given)
log()                           the MTA's log so far (text)
wait_log(regex, timeout)        wait for a log line, return the re.Match
helo_counts()                   HELO/EHLO commands received, one int per finished-or-live
                                SMTP session, in connection order (see each class for the
                                log lines it is computed from)
messages()                      stored deliveries, oldest first: [MtaMessage]
wait_for_messages(n, timeout)   wait until n deliveries are stored

host= (all three): the IPv4 loopback address to listen on, default 127.0.0.1.

Deliveries: every MTA writes one maildir file per recipient (a message to two
recipients is stored twice, each copy tagged with its recipient; the order of the copies
of one message is the MTA's).  MtaMessage.raw is the file as stored (LF line ends, the
headers the MTA prepends at the top); MtaMessage.data is the message as the client sent
it in DATA (after dot-unstuffing) or BDAT: exactly the prepended headers listed in the
class's PREPENDED are removed from the top (each once, in that order, only if present),
then every LF becomes CRLF.  So .data equals what the client sent when the client used
CRLF line ends throughout (a bare CR or LF in the client's data cannot be told apart
after the MTA normalised it; a BDAT message not ending in CRLF gets one appended).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import harness

MTA_ROOT = os.environ.get("SMTPTAP_MTA_ROOT", "/opt/smtptap-test-mtas")
EXIM_BIN = os.path.join(MTA_ROOT, "exim4/usr/sbin/exim4")
OPENSMTPD_BIN = os.path.join(MTA_ROOT, "opensmtpd/usr/sbin/smtpd")
POSTFIX_BIN = "/usr/sbin/postfix"
INSTALL_HINT = "run tests/mta/install.sh as root"

TEST_USER = "testuser"
TEST_PASSWORD = "secret-pw"


def _skip(reason: str):
    import pytest
    pytest.skip(reason)


@dataclasses.dataclass
class MtaMessage:
    raw: bytes       # the maildir file as the MTA stored it
    data: bytes      # prepended headers removed, LF -> CRLF: what the client sent
    rcpt: str        # the envelope recipient of this copy (from a prepended header)
    path: str


def _split_headers(raw: bytes) -> List[bytes]:
    """The header fields at the top of RAW, each with its continuation lines and LFs."""
    fields: List[bytes] = []
    pos = 0
    while pos < len(raw):
        end = raw.find(b"\n", pos)
        end = len(raw) if end < 0 else end + 1
        line = raw[pos:end]
        if line in (b"\n", b"\r\n"):
            break
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        else:
            fields.append(line)
        pos = end
    return fields


def strip_prepended(raw: bytes, names: Sequence[str]) -> Tuple[bytes, dict]:
    """RAW without the header fields NAMES at its top (each at most once, in order;
    case-insensitive).  Returns (rest, {lower-case name: value without CRLF})."""
    fields = _split_headers(raw)
    taken = {}
    i = 0
    pos = 0
    for name in names:
        if i < len(fields) and fields[i].lower().startswith(name.lower().encode() + b":"):
            value = fields[i].split(b":", 1)[1].strip().decode(errors="replace")
            taken[name.lower()] = value
            pos += len(fields[i])
            i += 1
    return raw[pos:], taken


def _pids_where(pred: Callable[[int], bool]) -> List[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit() and int(d) != os.getpid():
            with contextlib.suppress(OSError):
                if pred(int(d)):
                    out.append(int(d))
    return out


def _pgid_is(pgid: int) -> Callable[[int], bool]:
    def pred(pid: int) -> bool:
        return os.getpgid(pid) == pgid
    return pred


def _environ_has(entry: bytes) -> Callable[[int], bool]:
    def pred(pid: int) -> bool:
        return entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return pred


def _kill_and_wait(pids: Sequence[int], timeout: float = 5.0) -> None:
    """SIGTERM PIDS, SIGKILL what is left after TIMEOUT; wait until they are gone
    (zombies count as gone)."""
    def alive(pid: int) -> bool:
        try:
            st = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        return st.rsplit(")", 1)[1].split()[0] != "Z"
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 2.0)):
        left = [p for p in pids if alive(p)]
        for p in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(p, sig)
        deadline = time.monotonic() + wait
        while left and time.monotonic() < deadline:
            time.sleep(0.02)
            left = [p for p in left if alive(p)]
        if not left:
            return


def _listening(port: int, host: str = "127.0.0.1") -> bool:
    """True when a socket listens on HOST:PORT, read from /proc/net/tcp (no connection
    is made, so the MTA's log shows no probe session)."""
    want = "%08X:%04X" % (int.from_bytes(bytes(map(int, host.split("."))), "little"), port)
    with contextlib.suppress(OSError):
        for ln in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            f = ln.split()
            if f[1] == want and f[3] == "0A":
                return True
    return False


class _Mta:
    """What the three fixtures share; subclasses write the config and start the daemon."""

    NAME = "mta"
    PREPENDED: Tuple[str, ...] = ()
    RCPT_HEADER = ""             # which prepended header names this copy's recipient

    def __init__(self, *, hostname: str, tls: Optional[Tuple[str, str]] = None,
                 auth: Optional[str] = None, host: str = "127.0.0.1",
                 start_timeout: float = 8.0):
        if auth not in (None, "always", "tls"):
            raise ValueError("auth: None, 'always' or 'tls'")
        if auth == "tls" and tls is None:
            raise ValueError("auth='tls' needs tls=(cert, key)")
        self.host = host  # any IPv4 loopback address, e.g. 127.0.0.2
        self.hostname = hostname
        self.tls = tls
        self.auth = auth
        self.user = TEST_USER
        self.password = TEST_PASSWORD
        self.start_timeout = start_timeout
        self.port: Optional[int] = None
        self.tls_port: Optional[int] = None
        self.dir: Optional[str] = None
        self.conf: Optional[str] = None  # the MTA's main configuration file / directory
        self.proc: Optional[subprocess.Popen] = None
        self.start_seconds: Optional[float] = None  # how long start() took
        self._out = None  # the daemon's stdout+stderr file

    # -- addresses
    @property
    def hostport(self) -> str:
        return harness.fmt_hostport(self.host, self.port)

    @property
    def tls_hostport(self) -> Optional[str]:
        return harness.fmt_hostport(self.host, self.tls_port) if self.tls_port else None

    @property
    def greeting(self) -> str:
        return f"220 {self.hostname} ESMTP"

    @property
    def mailbox(self) -> str:
        return os.path.join(self.dir, "mail")

    # -- lifecycle
    def _binary(self) -> str:
        raise NotImplementedError

    def _prepare(self) -> None:
        """Write config etc. into self.dir for self.port / self.tls_port."""
        raise NotImplementedError

    def _spawn(self) -> subprocess.Popen:
        raise NotImplementedError

    def _ports_ready(self) -> bool:
        return all(_listening(p, self.host) for p in (self.port, self.tls_port) if p)

    def start(self):
        t0 = time.monotonic()
        if not os.access(self._binary(), os.X_OK):
            _skip(f"{self.NAME}: {self._binary()} is missing ({INSTALL_HINT})")
        if os.geteuid() != 0:
            _skip(f"{self.NAME}: the MTA fixtures need root")
        last = ""
        for _ in range(3):  # a free port may be taken before the daemon binds it
            try:
                self.dir = tempfile.mkdtemp(prefix=f"smtptap-{self.NAME}-")
                os.chmod(self.dir, 0o755)  # the MTA's own users must reach their files
                self.port = harness.free_port(self.host)
                self.tls_port = harness.free_port(self.host) if self.tls else None
                self._prepare()
                self._out = open(os.path.join(self.dir, "daemon.out"), "w+b")
                self.proc = self._spawn()
                deadline = time.monotonic() + self.start_timeout
                while (time.monotonic() < deadline and not self._ports_ready()
                       and self._alive()):
                    time.sleep(0.02)
                if self._ports_ready() and self._alive():
                    self.start_seconds = time.monotonic() - t0
                    return self
                last = self.log()
            except BaseException:
                self._teardown()
                raise
            self._teardown()
        raise RuntimeError(f"{self.NAME} did not start:\n{last}")

    def _alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def processes(self) -> List[int]:
        """The pids of every process of this instance (stop() ends them all)."""
        return _pids_where(_pgid_is(self.proc.pid)) if self.proc else []

    def _graceful_stop(self) -> None:
        """Before the sweep of processes(): e.g. let a master stop its children."""

    def _teardown(self) -> None:
        if self.proc is not None:
            self._graceful_stop()
            _kill_and_wait(self.processes())
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
            self.proc = None
        if self._out:
            self._out.close()
            self._out = None
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def stop(self) -> None:
        self._teardown()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    # -- log
    def daemon_output(self) -> str:
        if not self._out:
            return ""
        self._out.flush()
        return Path(self._out.name).read_text(errors="replace")

    def log(self) -> str:
        raise NotImplementedError

    def wait_log(self, regex, timeout: float = 5.0) -> re.Match:
        """Wait until the log matches REGEX (str or compiled, re.M); return the match."""
        rx = re.compile(regex, re.M) if isinstance(regex, str) else regex
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.log())
            if m:
                return m
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.NAME} log has no match for {rx.pattern!r} "
                                     f"within {timeout}s:\n{self.log()}")
            time.sleep(0.05)

    def helo_counts(self) -> List[int]:
        raise NotImplementedError

    # -- messages
    def messages(self) -> List[MtaMessage]:
        new = os.path.join(self.mailbox, "new")
        if not self.dir or not os.path.isdir(new):
            return []
        paths = [os.path.join(new, f) for f in os.listdir(new)]
        out = []
        for p in sorted(paths, key=lambda p: (os.stat(p).st_mtime_ns, p)):
            raw = Path(p).read_bytes()
            rest, hdrs = strip_prepended(raw, self.PREPENDED)
            rcpt = hdrs.get(self.RCPT_HEADER.lower(), "")
            out.append(MtaMessage(raw, rest.replace(b"\n", b"\r\n"), rcpt, p))
        return out

    def wait_for_messages(self, n: int = 1, timeout: float = 10.0) -> List[MtaMessage]:
        """At least N stored deliveries (maildir: a file in new/ is complete)."""
        deadline = time.monotonic() + timeout
        while True:
            msgs = self.messages()
            if len(msgs) >= n:
                return msgs
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.NAME} stored {len(msgs)} message(s), expected {n}, "
                                     f"within {timeout}s; log:\n{self.log()}")
            time.sleep(0.05)


# --------------------------------------------------------------------------- Exim


class Exim(_Mta):
    """Exim 4.96 (Debian exim4-daemon-light, GnuTLS), `exim4 -C DIR/exim.conf -bdf`.

    Offers PIPELINING, CHUNKING (BDAT), 8BITMIME, SIZE, DSN, SMTPUTF8, PRDR;
    with tls=(cert, key): STARTTLS on `port` and implicit TLS on `tls_port`
    (tls_on_connect_ports); with auth="always" / "tls": AUTH PLAIN LOGIN (plaintext
    authenticators, user/password = TEST_USER/TEST_PASSWORD), advertised always or only
    inside TLS (auth_advertise_hosts = ${if eq{$tls_in_cipher}{}{}{*}}: outside TLS AUTH
    gets "503 AUTH command used when not advertised").  PIPECONNECT is not advertised
    (pipeconnect=True to offer it).  chunking=False / pipelining=False stop advertising
    those.  extra_main: more lines for the main section.

    Runs as root until the ports are bound, then as Debian-exim; deliveries happen in
    the receiving process's child without re-exec (deliver_drop_privilege), to a
    maildir (one file per recipient).  PREPENDED: "Return-path", "Envelope-to",
    "Received" (the transport adds the first two; Received is Exim's own, one field with
    continuation lines).

    Log: DIR/log/mainlog, log_selector = +all, plus one line per HELO/EHLO written by
    the HELO ACL (hence helo_counts(); a HELO/EHLO refused for bad syntax does not get
    there):
      2026-12-03 08:06:52.578 [5199] SMTP connection from [127.0.0.1]:36302 I=[127.0.0.1]:2625 (TCP/IP connection count = 1)
      ... [5754] SMTPTAP-HELO [127.0.0.1]:36302 EHLO vm tls=none
      ... [5754] SMTPTAP-HELO [127.0.0.1]:36302 EHLO vm tls=TLS1.3:ECDHE_X25519__ECDSA_SECP256R1_SHA256__AES_256_GCM:256
      ... 1xZ1q8-0001Uo-22 <= a@example.org H=(vm) [127.0.0.1]:36302 I=[127.0.0.1]:2625 P=esmtpsa ... X=TLS1.3:... CV=no SNI=localhost A=PLAIN:testuser S=490 ... for b@example.net
      ... SMTP connection from (vm) [127.0.0.1]:36302 I=[127.0.0.1]:2625 closed by QUIT
      ... no MAIL in SMTP connection from (vm) [127.0.0.1]:40118 I=[127.0.0.1]:2625 D=0.010s C=EHLO,STARTTLS,EHLO,QUIT
      ... SMTPTAP-STARTTLS [127.0.0.1]:36302     (STARTTLS ACL, before the handshake)
      ... SMTPTAP-AUTH [127.0.0.1]:36302 AUTH PLAIN tls=...   (AUTH ACL, before checking)
    P= on the <= line: esmtp / esmtps (TLS) / esmtpa / esmtpsa (TLS + AUTH); X= only
    with TLS; A=PLAIN:user / A=LOGIN:user only after AUTH."""

    NAME = "exim"
    PREPENDED = ("Return-path", "Envelope-to", "Received")
    RCPT_HEADER = "Envelope-to"

    def __init__(self, *, tls: Optional[Tuple[str, str]] = None, auth: Optional[str] = None,
                 hostname: str = "exim.test", chunking: bool = True, pipelining: bool = True,
                 pipeconnect: bool = False, extra_main: Sequence[str] = (), **kw):
        super().__init__(hostname=hostname, tls=tls, auth=auth, **kw)
        self.chunking = chunking
        self.pipelining = pipelining
        self.pipeconnect = pipeconnect
        self.extra_main = list(extra_main)

    def _binary(self) -> str:
        return EXIM_BIN

    def _prepare(self) -> None:
        d = self.dir
        ex = pwd.getpwnam("Debian-exim")
        for sub in ("spool", "log", "mail", "tls"):
            os.mkdir(os.path.join(d, sub), 0o750)
            os.chown(os.path.join(d, sub), ex.pw_uid, ex.pw_gid)
        onoff = lambda b: "*" if b else ":"  # noqa: E731
        ifaces = [f"{self.host}.{self.port}"] + ([f"{self.host}.{self.tls_port}"]
                                                 if self.tls_port else [])
        main = [
            "keep_environment =",
            f"exim_path = {EXIM_BIN}",
            f"spool_directory = {d}/spool",
            f"log_file_path = {d}/log/%slog",
            f"pid_file_path = {d}/spool/exim.pid",
            "exim_user = Debian-exim",
            "exim_group = Debian-exim",
            "deliver_drop_privilege = true",
            f"primary_hostname = {self.hostname}",
            f"qualify_domain = {self.hostname}",
            "local_interfaces = <; " + " ; ".join(ifaces),
            "host_lookup =",
            "rfc1413_hosts =",
            "smtp_accept_max = 200",
            "smtp_accept_queue_per_connection = 0",
            "log_selector = +all -arguments",
            f"pipelining_advertise_hosts = {onoff(self.pipelining)}",
            f"chunking_advertise_hosts = {onoff(self.chunking)}",
            f"pipelining_connect_advertise_hosts = {onoff(self.pipeconnect)}",
            "acl_smtp_helo = acl_helo",
            "acl_smtp_rcpt = acl_accept",
            "acl_smtp_auth = acl_auth",
        ]
        if self.tls:
            cert, key = (os.path.join(d, "tls", n) for n in ("cert.pem", "key.pem"))
            shutil.copyfile(self.tls[0], cert)
            shutil.copyfile(self.tls[1], key)
            for p in (cert, key):
                os.chown(p, ex.pw_uid, ex.pw_gid)
            os.chmod(key, 0o600)
            main += ["tls_advertise_hosts = *", f"tls_certificate = {cert}",
                     f"tls_privatekey = {key}", f"tls_on_connect_ports = {self.tls_port}",
                     "acl_smtp_starttls = acl_starttls"]
        else:
            main += ["tls_advertise_hosts ="]
        if self.auth == "tls":
            main += ["auth_advertise_hosts = ${if eq{$tls_in_cipher}{}{}{*}}"]
        else:
            main += ["auth_advertise_hosts = *"]
        main += self.extra_main
        tls_v = "tls=${if def:tls_in_cipher{$tls_in_cipher}{none}}"
        who = "[$sender_host_address]:$sender_host_port"
        conf = main + [
            "", "begin acl",
            "acl_helo:", f"  warn logwrite = SMTPTAP-HELO {who} $smtp_command {tls_v}",
            "  accept",
            "acl_starttls:", f"  warn logwrite = SMTPTAP-STARTTLS {who}", "  accept",
            # $smtp_command would show the initial response (the password): log the mechanism.
            "acl_auth:", f"  warn logwrite = SMTPTAP-AUTH {who} AUTH "
                         "${extract{1}{ }{$smtp_command_argument}} " + tls_v,
            "  accept",
            "acl_accept:", "  accept",
            "", "begin routers",
            "all:", "  driver = accept", "  transport = store",
            "", "begin transports",
            "store:", "  driver = appendfile", f"  directory = {d}/mail",
            "  maildir_format = true", "  user = Debian-exim", "  group = Debian-exim",
            "  return_path_add = true", "  envelope_to_add = true",
            "", "begin retry", "*  *  F,1m,10s",
        ]
        if self.auth:
            u, pw = self.user, self.password
            conf += [
                "", "begin authenticators",
                "PLAIN:", "  driver = plaintext", "  public_name = PLAIN",
                "  server_prompts = :",
                "  server_condition = ${if and {{eq{$auth2}{" + u + "}}{eq{$auth3}{" + pw
                + "}}}}",
                "  server_set_id = $auth2",
                "LOGIN:", "  driver = plaintext", "  public_name = LOGIN",
                "  server_prompts = <| Username: | Password:",
                "  server_condition = ${if and {{eq{$auth1}{" + u + "}}{eq{$auth2}{" + pw
                + "}}}}",
                "  server_set_id = $auth1",
            ]
        path = os.path.join(d, "exim.conf")
        Path(path).write_text("\n".join(conf) + "\n")
        os.chmod(path, 0o644)  # root-owned, writable by root only: Exim trusts it
        self.conf = path

    def _spawn(self) -> subprocess.Popen:
        return subprocess.Popen([EXIM_BIN, "-C", self.conf, "-bdf"], stdin=subprocess.DEVNULL,
                                stdout=self._out, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=self.dir)

    def log(self) -> str:
        if not self.dir:
            return ""
        out = []
        for name in ("mainlog", "paniclog", "rejectlog"):
            p = os.path.join(self.dir, "log", name)
            if os.path.exists(p):
                text = Path(p).read_text(errors="replace")
                out.append(text if name == "mainlog" else f"--- {name} ---\n{text}")
        extra = self.daemon_output()
        if extra.strip():
            out.append(f"--- exim stdout/stderr ---\n{extra}")
        return "".join(out)

    def helo_counts(self) -> List[int]:
        counts: List[int] = []
        current: dict = {}  # (client address, client port) -> index in counts
        for ln in self.log().splitlines():
            m = re.search(r"\] SMTP connection from \[([^\]]+)\]:(\d+) "
                          r".*\(TCP/IP connection count", ln)
            if m:
                current[m.groups()] = len(counts)
                counts.append(0)
                continue
            m = re.search(r"\] SMTPTAP-HELO \[([^\]]+)\]:(\d+) ", ln)
            if m and m.groups() in current:
                counts[current[m.groups()]] += 1
        return counts


# --------------------------------------------------------------------------- Postfix


class PostfixSmtpd(_Mta):
    """A second, private Postfix 3.7 instance (Debian `postfix`), `postfix -c DIR/conf
    start-fg`: master + smtpd on `port`, and with tls=(cert, key) STARTTLS there
    (smtpd_tls_security_level = may) and implicit TLS on `tls_port`
    (smtpd_tls_wrappermode=yes).  Offers PIPELINING, SIZE, VRFY, ETRN, STARTTLS,
    ENHANCEDSTATUSCODES, 8BITMIME, DSN, SMTPUTF8, CHUNKING; discard_ehlo_keywords=
    ("chunking", ...) hides some (smtpd_discard_ehlo_keywords).  With auth="always" /
    "tls": AUTH PLAIN LOGIN through Cyrus SASL with a sasldb (user TEST_USER or
    TEST_USER@postfix.test, password TEST_PASSWORD); "tls" sets smtpd_tls_auth_only=yes
    (no AUTH in the EHLO reply before STARTTLS; AUTH there gets "503 5.5.1 Error:
    authentication not enabled").  extra_main: more main.cf lines.

    Every domain is a virtual mailbox domain (virtual_mailbox_domains = static:all),
    delivered by virtual(8) to one maildir, one file per recipient.  No header is added
    to client messages (local_header_rewrite_clients is empty).  PREPENDED:
    "Return-Path", "X-Original-To", "Delivered-To", "Received".

    Log: DIR/postfix.log (maillog_file, through postlogd); per session:
      Dec 03 08:08:11 postfix postfix/smtpd[8052]: connect from unknown[127.0.0.1]
      ... postfix/smtpd[8052]: Anonymous TLS connection established from unknown[127.0.0.1]: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature ECDSA (prime256v1) server-digest SHA256
      ... postfix/smtpd[9908]: 12EECA729A0: client=unknown[127.0.0.1], sasl_method=PLAIN, sasl_username=testuser@postfix.test
      ... postfix/smtpd[8052]: disconnect from unknown[127.0.0.1] ehlo=2 starttls=1 mail=1 rcpt=1 data=1 quit=1 commands=7
      ... postfix/smtpd[9908]: warning: unknown[127.0.0.1]: SASL PLAIN authentication failed: authentication failure, sasl_username=testuser@postfix.test
    (implicit TLS: the same "TLS connection established" line, no starttls= count; BDAT
    shows as bdat=N; a rejected command as e.g. auth=0/1.)  helo_counts() is read from
    the ehlo=/helo= counts of the disconnect lines (attempts, i.e. N of "ok/N"), so only
    finished sessions appear there."""

    NAME = "postfix"
    PREPENDED = ("Return-Path", "X-Original-To", "Delivered-To", "Received")
    RCPT_HEADER = "Delivered-To"
    SASL_REALM = "postfix.test"
    QUEUE_DIRS = ("active", "bounce", "corrupt", "defer", "deferred", "flush", "hold",
                  "incoming", "private", "saved", "trace")

    def __init__(self, *, tls: Optional[Tuple[str, str]] = None, auth: Optional[str] = None,
                 hostname: str = "postfix.test", discard_ehlo_keywords: Sequence[str] = (),
                 extra_main: Sequence[str] = (), **kw):
        super().__init__(hostname=hostname, tls=tls, auth=auth, **kw)
        self.discard_ehlo_keywords = list(discard_ehlo_keywords)
        self.extra_main = list(extra_main)

    def _binary(self) -> str:
        return POSTFIX_BIN

    @property
    def mailbox(self) -> str:
        return os.path.join(self.dir, "mail", "maildir")  # virtual_mailbox_maps = static:maildir/

    def start(self):
        if self.auth and not shutil.which("saslpasswd2") and not os.path.exists(
                "/usr/sbin/saslpasswd2"):
            _skip(f"postfix auth: saslpasswd2 is missing (sasl2-bin; {INSTALL_HINT})")
        return super().start()

    def _prepare(self) -> None:
        d = self.dir
        pf = pwd.getpwnam("postfix")
        self.conf = conf = os.path.join(d, "conf")
        for sub, owner, mode in (("conf", None, 0o755), ("queue", None, 0o755),
                                 ("data", pf, 0o700), ("mail", pf, 0o700)):
            os.mkdir(os.path.join(d, sub), mode)
            if owner:
                os.chown(os.path.join(d, sub), owner.pw_uid, owner.pw_gid)
        main = [
            "compatibility_level = 3.6",
            f"config_directory = {conf}",
            f"queue_directory = {d}/queue",
            f"data_directory = {d}/data",
            f"maillog_file = {d}/postfix.log",
            f"maillog_file_prefixes = {d}",
            f"myhostname = {self.hostname}",
            f"mydomain = {self.hostname}",
            f"myorigin = {self.hostname}",
            "mydestination =",
            "relay_domains =",
            "alias_maps =",
            "alias_database =",
            "inet_interfaces = all",  # master.cf pins the address (127.0.0.2 would be
            # refused here: Postfix wants an address configured on an interface)
            "inet_protocols = ipv4",
            "mynetworks = 127.0.0.0/8",
            "smtpd_peername_lookup = no",
            "smtp_dns_support_level = disabled",
            "local_header_rewrite_clients =",
            "smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, "
            "reject_unauth_destination",
            "virtual_mailbox_domains = static:all",
            f"virtual_mailbox_base = {d}/mail",
            "virtual_mailbox_maps = static:maildir/",
            f"virtual_uid_maps = static:{pf.pw_uid}",
            f"virtual_gid_maps = static:{pf.pw_gid}",
            "virtual_minimum_uid = 1",
            "biff = no",
            "smtpd_tls_loglevel = 1",
        ]
        if self.tls:
            cert, key = os.path.join(conf, "cert.pem"), os.path.join(conf, "key.pem")
            shutil.copyfile(self.tls[0], cert)
            shutil.copyfile(self.tls[1], key)
            os.chmod(key, 0o600)  # read by smtpd before it drops privileges
            main += ["smtpd_tls_security_level = may", f"smtpd_tls_cert_file = {cert}",
                     f"smtpd_tls_key_file = {key}"]
        else:
            main += ["smtpd_tls_security_level = none"]
        if self.auth:
            # Debian's Postfix reads the Cyrus config from $config_directory/sasl
            # (cyrus_sasl_config_path has no effect there).
            sasl = os.path.join(conf, "sasl")
            os.mkdir(sasl, 0o755)
            os.mkdir(os.path.join(d, "sasldb"), 0o755)
            db = os.path.join(d, "sasldb", "sasldb2")  # not under conf: postfix check
            rc, out, err = harness.run([harness.tool_path("saslpasswd2"), "-p", "-c", "-f", db,
                                        "-u", self.SASL_REALM, self.user],
                                       input=self.password, timeout=20)
            if rc != 0:
                raise RuntimeError(f"saslpasswd2 failed (rc {rc}): {out}{err}")
            os.chown(db, pf.pw_uid, pf.pw_gid)
            os.chmod(db, 0o600)
            Path(sasl, "smtpd.conf").write_text(
                f"pwcheck_method: auxprop\nauxprop_plugin: sasldb\nsasldb_path: {db}\n"
                "mech_list: PLAIN LOGIN\n")
            main += ["smtpd_sasl_auth_enable = yes", "smtpd_sasl_type = cyrus",
                     "smtpd_sasl_path = smtpd", f"smtpd_sasl_local_domain = {self.SASL_REALM}",
                     f"smtpd_tls_auth_only = {'yes' if self.auth == 'tls' else 'no'}"]
        if self.discard_ehlo_keywords:
            main += ["smtpd_discard_ehlo_keywords = " + " ".join(self.discard_ehlo_keywords)]
        main += self.extra_main
        Path(conf, "main.cf").write_text("\n".join(main) + "\n")
        svc = [f"{self.host}:{self.port} inet n - n - - smtpd"]
        if self.tls_port:
            svc += [f"{self.host}:{self.tls_port} inet n - n - - smtpd",
                    "  -o smtpd_tls_wrappermode=yes"]
        # No chroot (column 5 = n): nothing to copy into a jail.
        svc += [
            "pickup    unix  n       -       n       60      1       pickup",
            "cleanup   unix  n       -       n       -       0       cleanup",
            "qmgr      unix  n       -       n       300     1       qmgr",
            "tlsmgr    unix  -       -       n       1000?   1       tlsmgr",
            "rewrite   unix  -       -       n       -       -       trivial-rewrite",
            "bounce    unix  -       -       n       -       0       bounce",
            "defer     unix  -       -       n       -       0       bounce",
            "trace     unix  -       -       n       -       0       bounce",
            "verify    unix  -       -       n       -       1       verify",
            "flush     unix  n       -       n       1000?   0       flush",
            "proxymap  unix  -       -       n       -       -       proxymap",
            "smtp      unix  -       -       n       -       -       smtp",
            "showq     unix  n       -       n       -       -       showq",
            "error     unix  -       -       n       -       -       error",
            "retry     unix  -       -       n       -       -       error",
            "discard   unix  -       -       n       -       -       discard",
            "local     unix  -       n       n       -       -       local",
            "virtual   unix  -       n       n       -       -       virtual",
            "anvil     unix  -       -       n       -       1       anvil",
            "scache    unix  -       -       n       -       1       scache",
            "postlog   unix-dgram n  -       n       -       1       postlogd",
        ]
        Path(conf, "master.cf").write_text("\n".join(svc) + "\n")
        # The queue tree as `postfix check` (post-install create-missing) makes it, and
        # postfix-script's quick-start flag: start-up skips that ~2 s check.
        pd = pwd.getpwnam("postfix")
        import grp
        postdrop = grp.getgrnam("postdrop").gr_gid
        q = os.path.join(d, "queue")
        for sub, gid, mode in [(s, 0, 0o700) for s in self.QUEUE_DIRS] + [
                ("maildrop", postdrop, 0o730), ("public", postdrop, 0o710)]:
            os.mkdir(os.path.join(q, sub))
            os.chown(os.path.join(q, sub), pd.pw_uid, gid)
            os.chmod(os.path.join(q, sub), mode)
        os.mkdir(os.path.join(q, "pid"), 0o755)
        Path(q, "quick-start").touch()
        # Postfix re-reads a "hot" main.cf (modified within the last 2 s) until it cools
        # down, pausing 0.3 s each time: date both files back.
        past = time.time() - 60
        for f in ("main.cf", "master.cf"):
            os.utime(os.path.join(conf, f), (past, past))

    def _spawn(self) -> subprocess.Popen:
        return subprocess.Popen([POSTFIX_BIN, "-c", self.conf, "start-fg"],
                                stdin=subprocess.DEVNULL, stdout=self._out,
                                stderr=subprocess.STDOUT, start_new_session=True, cwd=self.dir)

    def processes(self) -> List[int]:
        # master calls setsid(): not in our process group.  It and its children carry
        # MAIL_CONFIG=<our conf dir> in their environment.
        pids = set(super().processes())
        if self.conf:
            pids |= set(_pids_where(_environ_has(b"MAIL_CONFIG=" + self.conf.encode())))
        return sorted(pids)

    def _graceful_stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            master = int(Path(self.dir, "queue/pid/master.pid").read_text().strip())
            if master in self.processes():
                _kill_and_wait([master])  # SIGTERM: master stops its children itself

    def log(self) -> str:
        if not self.dir:
            return ""
        p = os.path.join(self.dir, "postfix.log")
        text = Path(p).read_text(errors="replace") if os.path.exists(p) else ""
        extra = self.daemon_output()
        if extra.strip():
            text += f"--- postfix stdout/stderr ---\n{extra}"
        return text

    def disconnect_stats(self) -> List[dict]:
        """The command counts of each finished session, e.g. {"ehlo": "2", "starttls":
        "1", "mail": "1", ..., "commands": "7"} (values as logged: "N" or "ok/N")."""
        out = []
        for m in re.finditer(r"postfix/smtpd\[\d+\]: disconnect from \S+ (.*)$", self.log(),
                             re.M):
            out.append(dict(kv.split("=", 1) for kv in m.group(1).split() if "=" in kv))
        return out

    def helo_counts(self) -> List[int]:
        res = []
        for st in self.disconnect_stats():
            n = 0
            for k in ("ehlo", "helo"):
                if k in st:
                    n += int(st[k].split("/")[-1])
            res.append(n)
        return res


# --------------------------------------------------------------------------- OpenSMTPD


_NS_OK: Optional[bool] = None


def _mount_namespaces_work() -> bool:
    global _NS_OK
    if _NS_OK is None:
        try:
            rc = subprocess.run(["unshare", "--mount", "--propagation", "private", "--", "sh",
                                 "-c", "mount -t tmpfs tmpfs /var/spool/smtpd"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, timeout=10).returncode
        except (OSError, subprocess.TimeoutExpired):
            rc = 1
        _NS_OK = rc == 0
    return _NS_OK


class OpenSmtpd(_Mta):
    """OpenSMTPD 6.8.0p2 (Debian 12 `opensmtpd`, unpacked), `smtpd -d -T smtp -f
    DIR/smtpd.conf`, plain SMTP only on `port` (Debian 12's build cannot do TLS with
    OpenSSL 3; tls= and auth= are refused).  EHLO reply: 8BITMIME,
    ENHANCEDSTATUSCODES, SIZE 36700160, DSN, HELP: no PIPELINING (it still reads
    pipelined commands), no CHUNKING ("BDAT" gets "500 5.5.1 Invalid command: Command
    unrecognized"), no STARTTLS, no AUTH.  A second HELO/EHLO in a session gets
    "503 5.5.1 Invalid command: Already identified" (default behaviour, kept).

    Its queue (/var/spool/smtpd) and control socket (/var/run/smtpd.sock) are
    compiled in: each instance runs in its own mount namespace (unshare -m) with
    DIR/spool bind-mounted on /var/spool/smtpd and a tmpfs on /run, so instances do not
    share anything.  Where mount namespaces are not allowed, the system paths are used
    and only one instance can run at a time (a second start() raises).

    Delivery: any recipient (virtual table "@" -> user opensmtpd) to one maildir, one
    file per recipient.  PREPENDED: "Return-Path", "Delivered-To", "Received".
    OpenSMTPD also edits the header itself, so .data differs from what was sent when
    (a) From:/To:/Cc: hold an address without a domain ("To: bob" is stored as
    "To: bob@<hostname>"), or (b) the message has no Date: / Message-ID: and the
    listener is 127.0.0.1 exactly (OpenSMTPD counts only that address as "local" and
    then appends both at the end of the header).  Pass host="127.0.0.2" to avoid (b).

    Log: the daemon's stderr (DIR/daemon.out).  Normal lines, per session id:
      5e34a11510e3376a smtp connected address=127.0.0.1 host=localhost
      5e34a11c049a96ff smtp failed-command command="EHLO two" result="503 5.5.1 Invalid command: Already identified"
      5e34a11510e3376a smtp message msgid=3ade4c5d size=400 nrcpt=1 proto=ESMTP
      5e34a11510e3376a smtp envelope evpid=3ade4c5d853449ba from=<a@example.org> to=<b@example.net>
      5e34a11510e3376a smtp disconnected reason=quit
      5e34a116bc5f6366 mda delivery evpid=3ade4c5d853449ba from=<a@example.org> to=<b@example.net> rcpt=<b@example.net> user=opensmtpd delay=0s result=Ok stat=Delivered
    and, with trace=True (default, -T smtp), the whole dialogue per session object
    (message lines too, as "<<< [MSG] ..."):
      smtp: 0x55d8636e51e0: STATE_NEW -> STATE_CONNECTED
      smtp: 0x55d8636e51e0: <<< EHLO one
      smtp: 0x55d8636e51e0: >>> 250-opensmtpd.test Hello one [127.0.0.1], pleased to meet you
      smtp: 0x55d8636e51e0: <<< EHLO two
      smtp: 0x55d8636e51e0: >>> 503 5.5.1 Invalid command: Already identified
    helo_counts() counts the "<<< HELO/EHLO" trace lines per session (needs trace)."""

    NAME = "opensmtpd"
    PREPENDED = ("Return-Path", "Delivered-To", "Received")
    RCPT_HEADER = "Delivered-To"

    def __init__(self, *, hostname: str = "opensmtpd.test", trace: bool = True,
                 tls=None, auth=None, **kw):
        if tls is not None or auth is not None:
            raise ValueError("OpenSmtpd fixture: no TLS and no AUTH (Debian 12's 6.8 build)")
        super().__init__(hostname=hostname, **kw)
        self.trace = trace
        self._syslock = None

    def _binary(self) -> str:
        return OPENSMTPD_BIN

    def _prepare(self) -> None:
        d = self.dir
        os.mkdir(os.path.join(d, "spool"), 0o711)
        os.mkdir(os.path.join(d, "mail"), 0o700)
        osd = pwd.getpwnam("opensmtpd")
        os.chown(os.path.join(d, "mail"), osd.pw_uid, osd.pw_gid)
        self.conf = os.path.join(d, "smtpd.conf")
        Path(self.conf).write_text(
            'table vusers { "@" = "opensmtpd" }\n'
            f"listen on {self.host} port {self.port} hostname {self.hostname}\n"
            f'action "store" maildir "{d}/mail" virtual <vusers>\n'
            'match from any for any action "store"\n')

    def _spawn(self) -> subprocess.Popen:
        cmd = [OPENSMTPD_BIN, "-d"] + (["-T", "smtp"] if self.trace else []) + ["-f", self.conf]
        if _mount_namespaces_work():
            script = (f'mount --bind "{self.dir}/spool" /var/spool/smtpd && '
                      'mount -t tmpfs -o mode=755 tmpfs /run && exec "$@"')
            cmd = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script,
                   "sh"] + cmd
        else:
            import fcntl
            self._syslock = open("/run/lock/smtptap-opensmtpd.lock", "w")
            try:
                fcntl.flock(self._syslock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                self._syslock.close()
                self._syslock = None
                raise RuntimeError("another OpenSmtpd fixture is running, and without mount "
                                   "namespaces (unshare -m) only one can use the compiled-in "
                                   "/var/spool/smtpd and /var/run/smtpd.sock") from None
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._out,
                                stderr=subprocess.STDOUT, start_new_session=True, cwd=self.dir)

    def _teardown(self) -> None:
        super()._teardown()
        if self._syslock is not None:  # system spool: leave it empty for the next one
            for e in os.scandir("/var/spool/smtpd"):
                if e.is_dir(follow_symlinks=False):
                    shutil.rmtree(e.path, ignore_errors=True)
            self._syslock.close()
            self._syslock = None

    def log(self) -> str:
        return self.daemon_output()

    def helo_counts(self) -> List[int]:
        counts: List[int] = []
        current: dict = {}  # session object address -> index in counts
        for ln in self.log().splitlines():
            m = re.match(r"smtp: (0x[0-9a-f]+): STATE_NEW -> STATE_CONNECTED", ln)
            if m:
                current[m.group(1)] = len(counts)
                counts.append(0)
                continue
            m = re.match(r"smtp: (0x[0-9a-f]+): <<< (EHLO|HELO)\b", ln, re.I)
            if m and m.group(1) in current:
                counts[current[m.group(1)]] += 1
        return counts
