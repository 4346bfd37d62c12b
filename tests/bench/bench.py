#!/usr/bin/python3
"""bench.py - the body of tests/bench/bench.sh; see there for usage.

Parts (all on 127.0.0.1, all in one run, one markdown table at the end):
  1  smtp-source -> [path] -> smtp-sink, 4 KiB messages, one connection per message and
     persistent connections; path = direct, smtptap -q, smtptap -q -d, haproxy, socat.
  2  the same paths with 20 MB messages.
  3  smtptap RSS with N idle sessions (greeting read, EHLO sent), built-in sink and
     smtp-sink upstream.
  4  smtptap peak RSS (VmHWM) while a client pushes 1 GB of DATA towards an upstream that
     stopped reading.

The helpers it needs (idle clients, stalled upstream, pushing client) are subcommands of
this file: `bench.py helper idle|stall|push ...`.
"""
import argparse
import asyncio
import collections
import json
import os
import random
import resource
import select
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PY = "/usr/bin/python3"
T0 = time.monotonic()


class BenchError(Exception):
    """A run broke: the script reports it and exits non-zero."""


def log(msg):
    print(f"[{time.monotonic() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def which(name):
    path = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if not path:
        raise BenchError(f"{name} not found (run tests/bench/bench.sh --install)")
    return path


def proc_status(pid):
    """VmRSS and VmHWM of a process, in KiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0])
    return out


def cpu_seconds(pid):
    """User+system CPU of a process and of its reaped children (socat's forks), in s."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def wait_children_reaped(pid, max_wait=5.0):
    """Waits until pid has no child processes left (socat's forks), so that their CPU time
    is in pid's cutime/cstime."""
    deadline = time.monotonic() + max_wait
    path = f"/proc/{pid}/task/{pid}/children"
    while time.monotonic() < deadline:
        try:
            with open(path) as f:
                if not f.read().strip():
                    return
        except OSError:
            return
        time.sleep(0.05)


def socket_count(pid):
    """How many sockets the process holds (listeners included)."""
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            n += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return n


def wait_sockets(pid, at_most, max_wait):
    """Waits until pid holds at most `at_most` sockets; returns (sockets, seconds waited)."""
    t = time.monotonic()
    while True:
        n = socket_count(pid)
        if n <= at_most or time.monotonic() - t >= max_wait:
            return n, time.monotonic() - t
        time.sleep(0.1)


def settled_rss(pid, max_wait=5.0):
    """VmRSS once two readings 0.5 s apart agree (or after max_wait)."""
    deadline = time.monotonic() + max_wait
    last = proc_status(pid)["VmRSS"]
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = proc_status(pid)["VmRSS"]
        if now == last:
            break
        last = now
    return last


# ---- processes ----------------------------------------------------------------------------

class Procs:
    """Everything the benchmark starts, each in its own process group (socat forks), so that
    it can all be stopped by id on exit."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.live = []
        self.count = 0

    def start(self, name, argv, pipes=False):
        self.count += 1
        logpath = self.tmp / f"{self.count:03d}-{name}.log"
        logf = open(logpath, "wb")
        p = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if pipes else subprocess.DEVNULL,
            stdout=subprocess.PIPE if pipes else logf,
            stderr=logf,
            start_new_session=True,
            text=pipes,
        )
        logf.close()
        p.name = name
        p.logpath = logpath
        self.live.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM, timeout=15.0):
        """Stops p (and whatever it forked) and returns its exit status."""
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        else:
            # its forked children, if any, are still in its group
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for f in (p.stdin, p.stdout):
            if f:
                try:
                    f.close()
                except OSError:
                    pass
        if p in self.live:
            self.live.remove(p)
        return p.returncode

    def stop_all(self):
        for p in reversed(list(self.live)):
            self.stop(p, timeout=3.0)


def log_tail(p, n=15):
    try:
        lines = p.logpath.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("    " + line for line in lines[-n:])


def wait_port(port, proc=None, timeout=20.0):
    """Waits until something accepts on 127.0.0.1:port (and proc is still alive)."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"{proc.name} exited with {proc.returncode} before listening on "
                             f"{port}:\n{log_tail(proc)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise BenchError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f}s"
                                 + (f" ({proc.name})" if proc else ""))
            time.sleep(0.02)


def greeting_ok(port, timeout=5.0):
    """True when 127.0.0.1:port answers a connection with a 220 greeting within timeout."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            f = s.makefile("rb")
            return f.readline().startswith(b"220")
    except OSError:
        return False


def free_ports(n):
    """n free TCP ports on 127.0.0.1, below the ephemeral range so that no outgoing
    connection of the benchmark takes one."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        lo = int(f.read().split()[0])
    pool = list(range(max(2000, lo - 12000), lo))
    random.shuffle(pool)
    ports = []
    for port in pool:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == n:
            return ports
    raise BenchError("no free ports")


# ---- limits -------------------------------------------------------------------------------

def raise_limits(sessions, settings):
    """Raises what the idle-session part needs; records what it set in settings. Returns
    the file descriptor limit that smtptap will have (it raises its soft limit to the hard
    one itself)."""
    want = max(65536, 4 * sessions + 1024)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
            settings.append(f"ulimit -n {want}  (RLIMIT_NOFILE was {soft}/{hard}; this process "
                            "and its children only)")
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            settings.append(f"ulimit -n {hard}  (wanted {want}, but the hard limit is {hard} "
                            "and this environment cannot raise it: no CAP_SYS_RESOURCE)")
    else:
        settings.append(f"ulimit -n: {soft} already (nothing set)")
    fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1]

    def sysctl(name, value, ok):
        path = Path("/proc/sys") / name.replace(".", "/")
        try:
            cur = path.read_text().strip()
        except OSError:
            settings.append(f"sysctl {name}: unreadable (nothing set)")
            return
        if ok(cur):
            settings.append(f"sysctl {name} = {cur.replace(chr(9), ' ')} already (nothing set)")
            return
        try:
            path.write_text(value)
            settings.append(f"sysctl -w {name}='{value}'  (was {cur.replace(chr(9), ' ')}; "
                            "system-wide, left as set)")
        except OSError as e:
            settings.append(f"sysctl {name} = {cur} (could not set {value}: {e.strerror})")

    sysctl("net.core.somaxconn", "4096", lambda cur: int(cur) >= 4096)
    sysctl("net.ipv4.tcp_max_syn_backlog", "4096", lambda cur: int(cur) >= 4096)
    # client->smtptap and smtptap->smtp-sink each need `sessions` ports towards one
    # address, plus what earlier parts left in TIME_WAIT
    sysctl("net.ipv4.ip_local_port_range", "15000 64999",
           lambda cur: int(cur.split()[1]) - int(cur.split()[0]) >= sessions + 15000)
    return fd_limit


# ---- helpers (subcommands) ----------------------------------------------------------------

async def _read_reply(reader, code):
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed before reply")
        if not line.startswith(code):
            raise ValueError(f"unexpected reply {line[:60]!r}")
        if line[3:4] != b"-":
            return


async def _idle(port, count, concurrency, timeout):
    sem = asyncio.Semaphore(concurrency)
    conns = []
    errors = collections.Counter()

    async def one():
        async with sem:
            w = None
            try:
                r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port),
                                              timeout)
                await asyncio.wait_for(_read_reply(r, b"220"), timeout)
                w.write(b"EHLO idle.bench.example\r\n")
                await asyncio.wait_for(_read_reply(r, b"250"), timeout)
                conns.append((r, w))
            except Exception as e:  # noqa: BLE001 - reported, counted
                errors[f"{type(e).__name__}: {str(e)[:80]}"] += 1
                if w:
                    w.close()

    t = time.monotonic()
    await asyncio.gather(*(one() for _ in range(count)))
    await idle_report_and_hold(conns, errors, t, {}, 0.2)


async def idle_report_and_hold(conns, errors, started, extra, linger):
    """The idle client's protocol with its parent: one JSON report once the sessions are up,
    then an {"open": N} answer per "check" line on stdin; EOF closes every session."""
    print(json.dumps({"ok": len(conns), "failed": sum(errors.values()),
                      "errors": dict(errors.most_common(5)), **extra,
                      "seconds": round(time.monotonic() - started, 2)}), flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        # "check": how many sessions are still open (the other side did not close them)
        still = sum(1 for r, _ in conns if not r.at_eof())
        print(json.dumps({"open": still}), flush=True)
    for _, w in conns:
        w.close()
    await asyncio.sleep(linger)


def helper_idle(args):
    """Opens N sessions, each reads the greeting and sends EHLO, then stays idle until
    stdin closes. Prints one JSON line when all are established."""
    asyncio.run(_idle(args.port, args.count, args.concurrency, args.timeout))


def helper_stall(args):
    """An upstream that greets, answers EHLO/MAIL/RCPT, says 354 to DATA and then never
    reads from that connection again (it stays open)."""
    srv = socket.create_server(("127.0.0.1", args.port), backlog=128)
    held = []

    def serve(c):
        try:
            f = c.makefile("rb")
            c.sendall(b"220 stall.bench.example ESMTP stops reading after DATA\r\n")
            for line in f:
                cmd = line[:4].upper()
                if cmd == b"EHLO":
                    c.sendall(b"250-stall.bench.example\r\n250-8BITMIME\r\n"
                              b"250 SIZE 2000000000\r\n")
                elif cmd in (b"HELO", b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                    c.sendall(b"250 2.0.0 Ok\r\n")
                elif cmd == b"DATA":
                    c.sendall(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    held.append(c)  # never read again, never closed
                    return
                elif cmd == b"QUIT":
                    c.sendall(b"221 2.0.0 Bye\r\n")
                    break
                else:
                    c.sendall(b"500 5.5.2 what\r\n")
            c.close()
        except OSError:
            c.close()

    while True:
        c, _ = srv.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


def helper_push(args):
    """Sends a message of args.bytes through port as fast as the socket takes it, until it
    is all sent, args.seconds pass or nothing is taken for args.stall seconds (blocked).
    Prints one JSON line, then keeps the connection open until stdin closes."""
    s = socket.create_connection(("127.0.0.1", args.port), timeout=15)
    f = s.makefile("rb")

    def expect(code):
        while True:
            line = f.readline()
            if not line.startswith(code):
                raise SystemExit(f"push: expected {code!r}, got {line[:80]!r}")
            if line[3:4] != b"-":
                return

    expect(b"220")
    for cmd, code in ((b"EHLO push.bench.example", b"250"), (b"MAIL FROM:<push@bench.example>",
                      b"250"), (b"RCPT TO:<sink@bench.example>", b"250"), (b"DATA", b"354")):
        s.sendall(cmd + b"\r\n")
        expect(code)
    chunk = (b"X" * 78 + b"\r\n") * 819  # 65,520 bytes of 80-byte lines
    view = memoryview(chunk)
    s.setblocking(False)
    sent = 0
    error = None
    t = last = time.monotonic()
    blocked = False
    while sent < args.bytes:
        now = time.monotonic()
        if now - t >= args.seconds:
            break
        if now - last >= args.stall:
            blocked = True
            break
        _, w, _ = select.select([], [s], [], 0.2)
        if not w:
            continue
        off = sent % len(chunk)
        try:
            n = s.send(view[off:off + min(len(chunk) - off, args.bytes - sent)])
        except BlockingIOError:
            continue
        except OSError as e:
            error = f"{type(e).__name__}: {e}"
            break
        if n > 0:
            sent += n
            last = time.monotonic()
    print(json.dumps({"sent": sent, "seconds": round(time.monotonic() - t, 2),
                      "blocked": blocked, "error": error,
                      "stalled_for": round(time.monotonic() - last, 2)}), flush=True)
    sys.stdin.read()
    s.close()


def helper_main(argv):
    ap = argparse.ArgumentParser(prog="bench.py helper")
    sub = ap.add_subparsers(dest="which", required=True)
    p = sub.add_parser("idle")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--concurrency", type=int, default=200)
    p.add_argument("--timeout", type=float, default=60.0)
    p = sub.add_parser("stall")
    p.add_argument("--port", type=int, required=True)
    p = sub.add_parser("push")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--bytes", type=int, required=True)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--stall", type=float, default=3.0)
    args = ap.parse_args(argv)
    # needed for the idle client's sockets; the parent raised the hard limit already
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    {"idle": helper_idle, "stall": helper_stall, "push": helper_push}[args.which](args)


# ---- the benchmark ------------------------------------------------------------------------

def idle_measure(bench, tap, client, line, n, label, what, base_socks, before, check_timeout,
                 wait_timeout, close_timeout):
    """With the idle client's N sessions up (line: its report): smtptap's RSS and sockets
    while they are held, then after the client lets them all go. Notes and problems go to
    bench. Returns status, rss, socks, per (KiB per session), left, waited, released."""
    after_st = proc_status(tap.pid)
    after = settled_rss(tap.pid)
    socks = socket_count(tap.pid)
    client.stdin.write("check\n")
    client.stdin.flush()
    still = bench.read_json(client, check_timeout, "idle client")["open"]
    if line["failed"]:
        bench.problems.append(f"idle {label}: {line['failed']} of {n} sessions did not "
                              f"get {what}: {line['errors']}")
    if still != line["ok"]:
        bench.notes.append(f"idle {label}: {line['ok'] - still} of {line['ok']} idle "
                           "sessions were closed by the other side during the measurement")
    per = (after - before) / max(1, line["ok"])
    client.stdin.close()
    client.wait(wait_timeout)
    bench.procs.stop(client)
    # after every client is gone: do the sessions end
    left, waited = wait_sockets(tap.pid, base_socks, close_timeout)
    if left > base_socks:
        bench.notes.append(f"SUSPICIOUS idle {label}: {left - base_socks} sockets still "
                           f"open {waited:.0f}s after the {line['ok']} clients closed")
    released = settled_rss(tap.pid, 3.0)
    return {"status": after_st, "rss": after, "socks": socks, "per": per, "left": left,
            "waited": waited, "released": released}


class Bench:
    def __init__(self, args, tmp, settings, fd_limit):
        self.a = args
        self.tmp = tmp
        self.procs = Procs(tmp)
        self.problems = []   # things that broke: exit status 1
        self.notes = []      # things worth knowing
        self.rows = []       # table rows
        self.syscall_rows = []  # part 5
        self.settings = settings
        # sessions per idle variant: each needs one socket in smtptap with the built-in sink,
        # two with smtp-sink upstream; keep 64 descriptors for everything else
        self.n_idle_sink = min(args.sessions, fd_limit - 64)
        self.n_idle_up = min(args.sessions, (fd_limit - 64) // 2)
        for n, what in ((self.n_idle_sink, "built-in sink"), (self.n_idle_up, "smtp-sink")):
            if n < args.sessions:
                settings.append(f"part 3 with {what} upstream: {n} sessions instead of "
                                f"{args.sessions} (file descriptor limit {fd_limit})")
        self.tap = args.smtptap
        self.smtp_source = which("smtp-source")
        self.smtp_sink = which("smtp-sink")
        self.haproxy = which("haproxy")
        self.socat = which("socat")
        (self.p_sink, self.p_tap, self.p_tapd, self.p_haproxy, self.p_socat, self.p_idle_sink,
         self.p_idle_tap, self.p_idle_tap2, self.p_stall, self.p_push_tap,
         self.p_push_tapd, self.p_compare, self.p_tapall) = free_ports(13)
        self.capture_dir = tmp / "capture"        # smtptap creates it (0700)
        self.capture_dir4 = tmp / "capture-push"
        self.capture_all = tmp / "capture-all"   # every format
        q = args.quick
        self.loads = [
            # key, description, smtp-source flags, messages, bytes per message, sessions
            ("1a", "4 KiB msgs, 1 connection/msg (-s 10)",
             ["-s", "10", "-m", str(500 if q else 5000), "-l", "4096"], 500 if q else 5000, 4096,
             500 if q else 5000),
            ("1b", "4 KiB msgs, persistent (-d -s 10)",
             ["-d", "-s", "10", "-m", str(2000 if q else 20000), "-l", "4096"],
             2000 if q else 20000, 4096, 10),
            ("2", "20 MB msgs, 1 connection/msg (-s 2)",
             ["-s", "2", "-m", str(6 if q else 50), "-l", "20000000"], 6 if q else 50,
             20_000_000, 6 if q else 50),
        ]
        self.push_bytes = 200_000_000 if q else 1_000_000_000
        self.push_seconds = 10.0 if q else 30.0
        self.build_commands()

    # -- commands, printed before anything runs -------------------------------------------
    def build_commands(self):
        t = self.tap
        up = f"plain:127.0.0.1:{self.p_sink}"
        self.cmd = {
            "sink": [self.smtp_sink, "-u", "nobody", f"127.0.0.1:{self.p_sink}", "4096"],
            "tap": [t, "-l", f"127.0.0.1:{self.p_tap}", "-u", up, "-q"],
            "tapd": [t, "-l", f"127.0.0.1:{self.p_tapd}", "-u", up, "-q", "-d",
                     str(self.capture_dir)],
            "tapall": [t, "-l", f"127.0.0.1:{self.p_tapall}", "-u", up, "-q", "-d",
                       str(self.capture_all), "--format", "text,jsonl,pcap,eml"],
            "haproxy": [self.haproxy, "-db", "-f", str(self.tmp / "haproxy.cfg")],
            "socat": [self.socat, f"TCP-LISTEN:{self.p_socat},bind=127.0.0.1,fork,reuseaddr,"
                      "backlog=4096", f"TCP:127.0.0.1:{self.p_sink}"],
            "idle_tap_sink": [t, "-l", f"127.0.0.1:{self.p_idle_tap}", "-u", "sink", "-q",
                              "--max-sessions", str(2 * self.a.sessions),
                              "--idle-timeout", "3600s"],
            "idle_sink": [self.smtp_sink, "-u", "nobody", "-m", str(2 * self.a.sessions),
                          f"127.0.0.1:{self.p_idle_sink}", "4096"],
            "idle_tap_up": [t, "-l", f"127.0.0.1:{self.p_idle_tap2}", "-u",
                            f"plain:127.0.0.1:{self.p_idle_sink}", "-q",
                            "--max-sessions", str(2 * self.a.sessions),
                            "--idle-timeout", "3600s"],
            "stall": [PY, str(HERE / "bench.py"), "helper", "stall", "--port", str(self.p_stall)],
            "push_tap": [t, "-l", f"127.0.0.1:{self.p_push_tap}", "-u",
                         f"plain:127.0.0.1:{self.p_stall}", "-q"],
            "push_tapd": [t, "-l", f"127.0.0.1:{self.p_push_tapd}", "-u",
                          f"plain:127.0.0.1:{self.p_stall}", "-q", "-d", str(self.capture_dir4)],
        }
        self.paths = [("direct", self.p_sink), ("smtptap -q", self.p_tap),
                      ("smtptap -q -d DIR", self.p_tapd), (ALL_FORMATS, self.p_tapall),
                      ("haproxy (tcp)", self.p_haproxy), ("socat fork", self.p_socat)]
        self.path_proc = {"smtptap -q": "tap", "smtptap -q -d DIR": "tapd",
                          ALL_FORMATS: "tapall", "haproxy (tcp)": "haproxy",
                          "socat fork": "socat"}
        if self.a.compare:  # another smtptap binary (before/after a change), same run
            self.cmd["compare"] = [self.a.compare, "-l", f"127.0.0.1:{self.p_compare}", "-u",
                                   up, "-q"]
            self.paths.insert(2, (COMPARE, self.p_compare))
            self.path_proc[COMPARE] = "compare"
        self.haproxy_cfg = (
            "# minimal TCP relay; one thread, like smtptap's single event loop; no logging\n"
            "global\n"
            "    maxconn 2000\n"
            "    nbthread 1\n"
            "defaults\n"
            "    mode tcp\n"
            "    timeout connect 10s\n"
            "    timeout client 5m\n"
            "    timeout server 5m\n"
            "listen smtp\n"
            f"    bind 127.0.0.1:{self.p_haproxy}\n"
            f"    server up 127.0.0.1:{self.p_sink}\n")

    def source_cmd(self, load, port):
        return [self.smtp_source, *load[2], f"127.0.0.1:{port}"]

    def idle_cmd(self, port, count):
        return [PY, str(HERE / "bench.py"), "helper", "idle", "--port", str(port),
                "--count", str(count)]

    def push_cmd(self, port):
        return [PY, str(HERE / "bench.py"), "helper", "push", "--port", str(port),
                "--bytes", str(self.push_bytes), "--seconds", str(self.push_seconds)]

    def print_header(self):
        j = shlex.join
        out = ["# smtptap benchmark", "",
               f"- smtptap: `{self.tap}` ({self.version()})",
               f"- machine: {os.cpu_count()} cores, {self.mem_gib():.0f} GiB, "
               f"kernel {os.uname().release}; all traffic on 127.0.0.1",
               f"- repeats: each smtp-source measurement {self.a.reps}x, median shown "
               "(min-max in brackets), paths interleaved within a repeat",
               f"- temp dir: `{self.tmp}` (removed at exit)", "",
               "## Limits", ""]
        out += [f"- {s}" for s in self.settings]
        out += ["", "## Commands", "", "```sh"]
        parts = set(self.a.only)
        if parts & {"1", "2"}:
            out.append("# parts 1-2: servers (each path relays to the one smtp-sink)")
            for k in ("sink", "tap", "tapd", "tapall", "haproxy", "socat", "compare"):
                if k in self.cmd:
                    out.append(j(self.cmd[k]))
            out.append(f"# {self.tmp / 'haproxy.cfg'}:")
            out += ["#   " + line for line in self.haproxy_cfg.splitlines()]
            out.append("# loads, run against each path's PORT: "
                       + ", ".join(f"{n}={p}" for n, p in self.paths))
            for load in self.loads:
                if load[0][0] in parts:
                    out.append(j(self.source_cmd(load, "PORT")).replace("127.0.0.1:PORT",
                                                                        "127.0.0.1:$PORT"))
        if "3" in parts:
            out.append("# part 3: idle sessions, built-in sink, then smtp-sink upstream")
            out.append(j(self.cmd["idle_tap_sink"]))
            out.append(j(self.idle_cmd(self.p_idle_tap, self.n_idle_sink)))
            out.append(j(self.cmd["idle_sink"]))
            out.append(j(self.cmd["idle_tap_up"]))
            out.append(j(self.idle_cmd(self.p_idle_tap2, self.n_idle_up)))
            out.append("grep -E 'VmRSS|VmHWM' /proc/$SMTPTAP_PID/status   # before and after")
        if "4" in parts:
            out.append("# part 4: backpressure (upstream stops reading after 354), -q then -q -d")
            out.append(j(self.cmd["stall"]))
            out.append(j(self.cmd["push_tap"]))
            out.append(j(self.push_cmd(self.p_push_tap)))
            out.append(j(self.cmd["push_tapd"]))
            out.append(j(self.push_cmd(self.p_push_tapd)))
            out.append("grep VmHWM /proc/$SMTPTAP_PID/status")
        out.append("```")
        print("\n".join(out), flush=True)

    def version(self):
        try:
            r = subprocess.run([self.tap, "--version"], capture_output=True, text=True, timeout=5)
            return (r.stdout or r.stderr).strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            return "version unknown"

    @staticmethod
    def mem_gib():
        with open("/proc/meminfo") as f:
            return int(f.readline().split()[1]) / 1024 / 1024

    # -- parts 1 and 2 -------------------------------------------------------------------------
    def start_relays(self):
        (self.tmp / "haproxy.cfg").write_text(self.haproxy_cfg)
        self.servers = {}
        relays = [("sink", self.p_sink), ("tap", self.p_tap), ("tapd", self.p_tapd),
                  ("tapall", self.p_tapall), ("haproxy", self.p_haproxy),
                  ("socat", self.p_socat)]
        if "compare" in self.cmd:
            relays.append(("compare", self.p_compare))
        for k, _ in relays:
            self.servers[k] = self.procs.start(k, self.cmd[k])
        for k, port in relays:
            wait_port(port, self.servers[k])
        log("relays up: smtp-sink, smtptap -q, smtptap -q -d, haproxy, socat")

    def stop_relays(self):
        for k in ("tap", "tapd", "tapall", "compare"):
            if k not in self.servers:
                continue
            p = self.servers[k]
            alive = p.poll() is None
            rc = self.procs.stop(p)
            if alive and rc != 0:
                self.problems.append(f"{k}: smtptap exited {rc} on SIGTERM (expected 0):\n"
                                     f"{log_tail(p)}")
            self.check_tap_log(p, k)
        for k in ("haproxy", "socat", "sink"):
            self.procs.stop(self.servers[k])

    def check_tap_log(self, p, name):
        text = p.logpath.read_text(errors="replace")
        extra = [line for line in text.splitlines()
                 if line.strip() and " listening on " not in line]
        if extra:
            self.notes.append(f"{name} printed on stderr ({len(extra)} lines), first: "
                              + " | ".join(extra[:3]))

    def run_source(self, load, path, port):
        argv = self.source_cmd(load, port)
        p = self.procs.start(f"smtp-source-{load[0]}", argv)
        t = time.monotonic()
        timeout = 300 if load[0] == "2" else 120
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.procs.stop(p, signal.SIGKILL)
            raise BenchError(f"{path}: {shlex.join(argv)} did not finish in {timeout}s (stall)")
        elapsed = time.monotonic() - t
        self.procs.stop(p)
        out = p.logpath.read_text(errors="replace").strip()
        if p.returncode != 0:
            raise BenchError(f"{path}: {shlex.join(argv)} exited {p.returncode}:\n"
                             + "\n".join("    " + x for x in out.splitlines()[-10:]))
        if out:
            raise BenchError(f"{path}: smtp-source complained:\n"
                             + "\n".join("    " + x for x in out.splitlines()[-10:]))
        return elapsed

    def parts_1_2(self):
        loads = [ld for ld in self.loads if ld[0][0] in self.a.only]
        self.start_relays()
        results = {(ld[0], path): [] for ld in loads for path, _ in self.paths}
        cpu = {(ld[0], path): [] for ld in loads for path, _ in self.paths}
        sink_cpu = {(ld[0], path): [] for ld in loads for path, _ in self.paths}
        broken = set()
        capture_sessions = 1  # wait_port's probe
        try:
            for load in loads:
                for rep in range(self.a.reps):
                    for path, port in self.paths:
                        if (load[0], path) in broken:
                            continue
                        pk = self.path_proc.get(path)
                        if pk and self.servers[pk].poll() is not None:
                            broken.add((load[0], path))
                            self.problems.append(
                                f"{path} died (exit {self.servers[pk].returncode}) before "
                                f"load {load[0]}:\n{log_tail(self.servers[pk])}")
                            continue
                        relay = self.servers[pk] if pk else None
                        sink = self.servers["sink"]
                        c0 = cpu_seconds(relay.pid) if relay else 0.0
                        s0 = cpu_seconds(sink.pid)
                        try:
                            el = self.run_source(load, path, port)
                        except BenchError as e:
                            broken.add((load[0], path))
                            self.problems.append(str(e))
                            log(f"  {load[0]} {path}: FAILED")
                            continue
                        if pk == "socat":
                            wait_children_reaped(relay.pid)
                        used = cpu_seconds(relay.pid) - c0 if relay else 0.0
                        sink_used = cpu_seconds(sink.pid) - s0
                        results[(load[0], path)].append(el)
                        cpu[(load[0], path)].append(used)
                        sink_cpu[(load[0], path)].append(sink_used)
                        if pk == "tapd":
                            capture_sessions += load[5]
                        rate = self.rate(load, el)
                        log(f"  {load[0]} rep {rep + 1}/{self.a.reps} {path:18s} "
                            f"{el:7.2f}s  {rate:9.1f} {self.unit(load)}  "
                            f"CPU: relay {used:5.2f}s sink {sink_used:5.2f}s")
        finally:
            self.stop_relays()
        self.check_capture(capture_sessions)
        for load in loads:
            direct = results[(load[0], "direct")]
            d_med = self.rate(load, statistics.median(direct)) if direct else None
            for path, _ in self.paths:
                els = results[(load[0], path)]
                if not els:
                    self.rows.append([load[0], load[1], path, "ERROR (see below)", "-", "-", "",
                                      ""])
                    continue
                rates = sorted(self.rate(load, e) for e in els)
                med = statistics.median(rates)
                fmt = "{:.0f}" if load[0] != "2" else "{:.1f}"
                res = f"{fmt.format(med)} {self.unit(load)}"
                if len(rates) > 1:
                    res += f" ({fmt.format(rates[0])}-{fmt.format(rates[-1])})"
                ratio = med / d_med if d_med else None
                target, status = "", ""
                if path == "smtptap -q":
                    need = 0.95 if load[0] == "2" else 0.7
                    target = f">= {need:.2f}x"
                    status = "-" if ratio is None else ("PASS" if ratio >= need else "MISS")
                elif path == ALL_FORMATS and results[(load[0], "smtptap -q")] and load[0] != "1b":
                    # the capture issue's target is against smtptap without capture
                    plain = self.rate(load, statistics.median(results[(load[0], "smtptap -q")]))
                    need = 0.9 if load[0] == "2" else 0.8
                    target = f">= {need:.2f}x of -q"
                    status = "PASS" if med >= need * plain else "MISS"
                    self.notes.append(f"{load[0]}: all capture formats run at "
                                      f"{med / plain:.2f}x of smtptap -q without capture")
                used = statistics.median(cpu[(load[0], path)])
                sink_used = statistics.median(sink_cpu[(load[0], path)])
                self.rows.append([load[0], load[1], path, res,
                                  "-" if ratio is None else f"{ratio:.2f}x",
                                  ("-" if path == "direct" else f"{used:.2f}")
                                  + f" / {sink_used:.2f}", target, status])
                if len(rates) > 1 and rates[-1] > 1.3 * rates[0]:
                    self.notes.append(f"noisy: {load[0]} {path} runs spread "
                                      f"{fmt.format(rates[0])}-{fmt.format(rates[-1])} "
                                      f"{self.unit(load)}; ratios near a target are uncertain")
            tq, th = results[(load[0], "smtptap -q")], results[(load[0], "haproxy (tcp)")]
            if tq and len(tq) == len(direct) > 1:
                # paths run one after the other within a repeat, so a per-repeat ratio is
                # less exposed to the machine's drift than the ratio of the medians
                per = ", ".join(f"{d / t:.2f}x" for d, t in zip(direct, tq))
                self.notes.append(f"{load[0]}: smtptap -q against direct, repeat by repeat: "
                                  f"{per}")
            if tq and th:
                self.notes.append(
                    f"{load[0]}: smtptap -q runs at {statistics.median(th) / statistics.median(tq):.2f}x "
                    f"haproxy's rate and uses "
                    f"{statistics.median(cpu[(load[0], 'smtptap -q')]) / max(0.01, statistics.median(cpu[(load[0], 'haproxy (tcp)')])):.2f}x "
                    "its CPU")

    def check_capture(self, expected):
        """Every session through smtptap -d should have left one complete transcript."""
        if not self.capture_dir.is_dir():
            return
        files = list(self.capture_dir.iterdir())
        complete = 0
        for f in files:
            with open(f, "rb") as fh:
                try:
                    fh.seek(-400, os.SEEK_END)
                except OSError:
                    fh.seek(0)
                complete += b"== session ended" in fh.read()
        msg = (f"capture: {len(files)} transcript files for {expected} sessions, "
               f"{complete} of them end with 'session ended'")
        if len(files) != expected or complete != len(files):
            self.notes.append("SUSPICIOUS " + msg)
        else:
            self.notes.append(msg)

    @staticmethod
    def unit(load):
        return "MB/s" if load[0] == "2" else "msg/s"

    @staticmethod
    def rate(load, elapsed):
        if load[0] == "2":
            return load[3] * load[4] / elapsed / 1e6
        return load[3] / elapsed

    # -- part 3 ----------------------------------------------------------------------------
    def idle(self, label, tap_key, tap_port, n, sink_key=None, leak_check=False):
        sink = None
        try:
            if sink_key:
                sink = self.procs.start(sink_key, self.cmd[sink_key])
                wait_port(self.p_idle_sink, sink)
            tap = self.procs.start(tap_key, self.cmd[tap_key])
            wait_port(tap_port, tap)
            base_socks, _ = wait_sockets(tap.pid, 1, 5.0)  # the listener, once the probe ended
            before = settled_rss(tap.pid, 2.0)
            client = self.procs.start("idle-client", self.idle_cmd(tap_port, n), pipes=True)
            line = self.read_json(client, 240, "idle client")
            log(f"  {label}: {line['ok']} sessions up in {line['seconds']}s, "
                f"{line['failed']} failed")
            if tap.poll() is not None:
                raise BenchError(f"smtptap ({label}) died with {tap.returncode} during "
                                 f"the idle part:\n{log_tail(tap)}")
            m = idle_measure(self, tap, client, line, n, label, "greeting+EHLO", base_socks,
                             before, 30, 60, 30.0)
            after_st, after, socks_open, per = m["status"], m["rss"], m["socks"], m["per"]
            waited, released = m["waited"], m["released"]
            responsive = greeting_ok(tap_port)
            if tap.poll() is not None:
                raise BenchError(f"smtptap ({label}) died with {tap.returncode} after the "
                                 f"idle clients left:\n{log_tail(tap)}")
            if not responsive:
                self.problems.append(f"idle {label}: smtptap gave no greeting after the "
                                     f"{line['ok']} clients left")
            self.notes.append(
                f"idle {label}: VmRSS {before} KiB -> {after} KiB with {line['ok']} sessions "
                f"(VmHWM {after_st['VmHWM']} KiB), {released} KiB after they closed; "
                f"{line['seconds']}s to establish the sessions, {socks_open} sockets held, "
                f"{waited:.1f}s until smtptap had closed them")
            if leak_check and responsive:
                # the same number of sessions again: a leak shows as growth over round 1
                client = self.procs.start("idle-client", self.idle_cmd(tap_port, n), pipes=True)
                line2 = self.read_json(client, 240, "idle client")
                again = settled_rss(tap.pid)
                client.stdin.close()
                client.wait(60)
                self.procs.stop(client)
                left2, _ = wait_sockets(tap.pid, base_socks, 30.0)
                grew = again - after
                msg = (f"idle {label}, leak check: a second round of {line2['ok']} sessions on "
                       f"the same process peaked at {again} KiB (round 1: {after} KiB), "
                       f"{left2 - base_socks} sockets left after it")
                suspicious = grew > max(1024, after // 10) or left2 > base_socks
                self.notes.append(("SUSPICIOUS " if suspicious else "") + msg)
            rc = self.procs.stop(tap)
            if rc != 0:
                self.problems.append(f"smtptap ({label}) exited {rc} on SIGTERM:\n"
                                     f"{log_tail(tap)}")
            self.check_tap_log(tap, f"smtptap ({label})")
            self.rows.append(["3", f"{line['ok']} idle sessions (EHLO done)", label,
                              f"{per:.1f} KiB/session ({before / 1024:.1f} -> "
                              f"{after / 1024:.1f} MiB)", "-", "-", "<= 16 KiB",
                              "PASS" if per <= 16 else "MISS"])
        finally:
            for p in list(self.procs.live):
                if p.name in ("idle-client", tap_key, sink_key):
                    self.procs.stop(p)

    def read_json(self, p, timeout, what):
        r, _, _ = select.select([p.stdout], [], [], timeout)
        if not r:
            raise BenchError(f"{what}: no answer in {timeout}s:\n{log_tail(p)}")
        line = p.stdout.readline()
        if not line:
            raise BenchError(f"{what} exited {p.wait()}:\n{log_tail(p)}")
        return json.loads(line)

    def part_3(self):
        self.idle("smtptap -u sink (built-in)", "idle_tap_sink", self.p_idle_tap,
                  self.n_idle_sink, leak_check=True)
        self.idle("smtptap -u smtp-sink", "idle_tap_up", self.p_idle_tap2, self.n_idle_up,
                  "idle_sink")

    # -- part 4 ----------------------------------------------------------------------------
    def push(self, label, tap_key, port):
        tap = self.procs.start(tap_key, self.cmd[tap_key])
        try:
            wait_port(port, tap)
            base_socks, _ = wait_sockets(tap.pid, 1, 5.0)
            start = proc_status(tap.pid)
            client = self.procs.start("push-client", self.push_cmd(port), pipes=True)
            res = self.read_json(client, self.push_seconds + 60, "push client")
            during = proc_status(tap.pid) if tap.poll() is None else None
            client.stdin.close()
            client.wait(30)
            self.procs.stop(client)
            if tap.poll() is not None or during is None:
                raise BenchError(f"smtptap ({label}) died with {tap.returncode} under "
                                 f"backpressure:\n{log_tail(tap)}")
            hwm = during["VmHWM"]
            how = ("blocked" if res["blocked"] else
                   "sent it all" if res["sent"] >= self.push_bytes else "time limit")
            log(f"  {label}: client pushed {res['sent'] / 1e6:.1f} MB in {res['seconds']}s "
                f"({how}); VmRSS {during['VmRSS']} KiB, VmHWM {hwm} KiB")
            if res["error"]:
                self.problems.append(f"push {label}: client error {res['error']}")
            if not res["blocked"]:
                self.notes.append(f"push {label}: the client was never blocked "
                                  f"({res['sent'] / 1e6:.0f} MB taken in {res['seconds']}s): "
                                  "no backpressure?")
            # the client left while smtptap was not reading it: does the session end?
            left, waited = wait_sockets(tap.pid, base_socks, 10.0)
            if left > base_socks:
                self.notes.append(
                    f"SUSPICIOUS push {label}: the session was still open {waited:.0f}s after "
                    "the client closed its connection (smtptap does not read the client while "
                    "the upstream queue is high, so it misses the client's FIN; the session "
                    "lasts until --idle-timeout)")
            else:
                self.notes.append(f"push {label}: the session ended {waited:.1f}s after the "
                                  "client closed its connection")
            released = settled_rss(tap.pid, 2.0)
            responsive = greeting_ok(port)
            if tap.poll() is not None:
                raise BenchError(f"smtptap ({label}) died after the pushing client left:\n"
                                 f"{log_tail(tap)}")
            if not responsive:
                self.problems.append(f"push {label}: smtptap gave no greeting afterwards")
            self.notes.append(
                f"push {label}: client pushed {res['sent'] / 1e6:.1f} MB of "
                f"{self.push_bytes / 1e6:.0f} MB in {res['seconds']}s, then {how}; smtptap "
                f"VmRSS {start['VmRSS']} KiB at start, {during['VmRSS']} KiB while blocked, "
                f"{released} KiB after the client left")
            rc = self.procs.stop(tap)
            if rc != 0:
                self.problems.append(f"smtptap ({label}) exited {rc} on SIGTERM:\n"
                                     f"{log_tail(tap)}")
            self.check_tap_log(tap, f"smtptap ({label})")
            self.rows.append(["4", f"{self.push_bytes / 1e9:g} GB DATA, upstream not reading",
                              label, f"VmHWM {hwm / 1024:.1f} MiB (pushed "
                              f"{res['sent'] / 1e6:.0f} MB, {how})", "-", "-", "< 64 MiB",
                              "PASS" if hwm < 64 * 1024 else "MISS"])
        finally:
            for p in list(self.procs.live):
                if p.name in ("push-client", tap_key):
                    self.procs.stop(p)

    def part_4(self):
        stall = self.procs.start("stall", self.cmd["stall"])
        try:
            wait_port(self.p_stall, stall)
            self.push("smtptap -q", "push_tap", self.p_push_tap)
            self.push("smtptap -q -d DIR", "push_tapd", self.p_push_tapd)
        finally:
            self.procs.stop(stall)

    # -- part 5: system calls per message ----------------------------------------------------
    def strace_counts(self, pid, load, path, port):
        """Runs load through path with `strace -f -c` attached to the relay; returns
        (calls per message, the five commonest calls as "name n/msg")."""
        out = self.tmp / f"strace-{load[0]}-{pid}.txt"
        st = subprocess.Popen(["strace", "-f", "-c", "-o", str(out), "-p", str(pid)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)  # attached (strace prints nothing when it is)
        try:
            self.run_source(load, path, port)
        finally:
            st.send_signal(signal.SIGINT)
            st.wait(30)
        calls = {}
        for line in out.read_text().splitlines():
            f = line.split()
            if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
                try:
                    calls[f[-1]] = int(f[3])
                except ValueError:
                    continue
        n = load[3]
        top = sorted(calls.items(), key=lambda kv: -kv[1])[:5]
        return sum(calls.values()) / n, ", ".join(f"{k} {v / n:.1f}" for k, v in top)

    def part_5(self):
        if not shutil.which("strace"):
            self.problems.append("part 5: strace is not installed (apt-get install strace)")
            return
        loads = [(ld[0], ld[1], ld[2][:ld[2].index("-m") + 1] + ["1000" if ld[0] == "1a"
                  else "4000"] + ld[2][ld[2].index("-m") + 2:], 1000 if ld[0] == "1a"
                  else 4000, ld[4], ld[5]) for ld in self.loads if ld[0] in ("1a", "1b")]
        self.start_relays()
        try:
            for load in loads:
                for path, key in (("smtptap -q", "tap"), (ALL_FORMATS, "tapall"),
                                  ("haproxy (tcp)", "haproxy")):
                    port = dict(self.paths)[path]
                    per, top = self.strace_counts(self.servers[key].pid, load, path, port)
                    self.syscall_rows.append((load[1], path, f"{per:.1f}", top))
                    log(f"  {load[0]} {path}: {per:.1f} system calls per message ({top})")
        finally:
            self.stop_relays()

    # -- report ----------------------------------------------------------------------------
    def syscall_table(self):
        if not self.syscall_rows:
            return ""
        out = ["| load | relay | system calls per message | commonest (per message) |",
               "|---|---|---|---|"]
        out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in self.syscall_rows]
        return "\n".join(out)

    def table(self):
        head = ["Part", "Load", "Path", "Result (median, min-max)", "vs direct",
                "CPU s/run relay / sink", "Target", "Status"]
        rows = [head] + self.rows
        widths = [max(len(str(r[i])) for r in rows) for i in range(len(head))]

        def fmt(r):
            return "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"
        out = [fmt(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        out += [fmt(r) for r in self.rows]
        return "\n".join(out)

    def run(self):
        self.print_header()
        if set(self.a.only) & {"1", "2"}:
            log("parts 1-2: smtp-source -> path -> smtp-sink")
            self.parts_1_2()
        if "3" in self.a.only:
            log(f"part 3: {self.a.sessions} idle sessions")
            self.part_3()
        if "4" in self.a.only:
            log("part 4: backpressure")
            self.part_4()
        if "5" in self.a.only:
            log("part 5: system calls per message (strace -c attached to each relay)")
            self.part_5()


COMPARE = "smtptap -q (--compare)"
ALL_FORMATS = "smtptap -q -d DIR --format text,jsonl,pcap,eml"


def parse_args(prog, description, parts, quick_sessions):
    """The command line both benchmarks share; --only takes PARTS (e.g. "1,2,3,4")."""
    ap = argparse.ArgumentParser(prog=prog, description=description)
    ap.add_argument("--smtptap", default=os.environ.get("SMTPTAP_BIN")
                    or str(REPO / "build-release" / "smtptap"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--compare", default=None, metavar="PATH",
                    help="another smtptap binary measured in the same run (parts 1-2), "
                         "e.g. the build before a change")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default=parts)
    ap.add_argument("--sessions", type=int, default=None)
    a = ap.parse_args()
    a.only = [x.strip() for x in a.only.split(",") if x.strip()]
    if not set(a.only) <= set(parts.split(",")):
        ap.error(f"--only takes a list of {parts}")
    if a.sessions is None:
        a.sessions = quick_sessions if a.quick else 10000
    if a.quick and a.reps == 3:
        a.reps = 1
    if a.reps < 1 or a.sessions < 1:
        ap.error("--reps and --sessions must be at least 1")
    return a


def run_bench(prog, a, make_bench, tmp_prefix, report, targets):
    """Runs make_bench(a, tmp, settings, fd_limit).run() with clean-up on any exit, then
    prints report(bench), the targets line, notes and problems. Returns the exit status."""
    if not os.access(a.smtptap, os.X_OK):
        print(f"{prog}: no smtptap binary at {a.smtptap}; build it with\n"
              "  meson setup build-release --buildtype=release -Dtests=disabled && "
              "ninja -C build-release smtptap\nor pass --smtptap PATH", file=sys.stderr)
        return 2
    a.smtptap = str(Path(a.smtptap).resolve())
    if getattr(a, "compare", None):
        if not os.access(a.compare, os.X_OK):
            print(f"{prog}: --compare {a.compare}: not an executable", file=sys.stderr)
            return 2
        a.compare = str(Path(a.compare).resolve())

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)

    tmp = Path(tempfile.mkdtemp(prefix=tmp_prefix))
    bench = None
    rc = 0
    try:
        settings = []
        fd_limit = raise_limits(a.sessions, settings)
        bench = make_bench(a, tmp, settings, fd_limit)
        bench.run()
    except BenchError as e:
        if bench:
            bench.problems.append(str(e))
        else:
            print(f"{prog}: {e}", file=sys.stderr)
            rc = 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        rc = 130
    finally:
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)  # let the clean-up finish
        if bench:
            bench.procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    if bench and rc == 0:
        report(bench)
        print("\n" + targets)
        if bench.notes:
            print("\n## Notes\n")
            print("\n".join(f"- {n}" for n in bench.notes))
        if bench.problems:
            print("\n## Problems (the run broke somewhere)\n")
            print("\n".join(f"- {p}" for p in bench.problems))
            rc = 1
        print(f"\nTotal time: {time.monotonic() - T0:.0f}s")
    return rc


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "helper":
        helper_main(sys.argv[2:])
        return 0
    a = parse_args("bench.sh", "smtptap benchmark (loopback)", "1,2,3,4,5", 1000)

    def report(bench):
        if bench.rows:
            print("\n## Results\n")
            print(bench.table())
        if bench.syscall_table():
            print("\n## System calls per message (part 5, strace -f -c attached; counts, not "
                  "times)\n")
            print(bench.syscall_table())
    return run_bench("bench.sh", a, Bench, "smtptap-bench-", report,
                     "Targets are from the issue (smtptap -q against direct; memory per idle "
                     "session; peak RSS under backpressure). A MISS is a finding, not a failure "
                     "of this script.")


if __name__ == "__main__":
    sys.exit(main())
