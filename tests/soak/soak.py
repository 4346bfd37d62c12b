#!/usr/bin/python3
"""soak.py - the body of tests/soak/run.sh (issue 16, item 2); see there for usage.

Three smtptap processes, each with a plain and an implicit-TLS listener, the same random
fault rules (config [fault] sections with probabilities, --seed), every capture format, and
one kind of upstream each:

  A  -u starttls:  aiosmtpd offering STARTTLS (smtptap upgrades it, verified with a test CA),
                   CHUNKING; it records the SHA-256 of every message it receives
  B  -u plain:     Postfix smtp-sink, every message dumped to a directory
  C  -u plain:     a scripted server that resets connections (RST) at points the client asks
                   for in its EHLO name, and at random before its greeting

An asyncio load generator keeps --sessions sessions open for --seconds seconds (new ones
replace those that end), each with its own random plan: which smtptap, plain / STARTTLS /
implicit TLS, pipelined or not, DATA or BDAT, 1-3 messages of 0.3 KB to --max-size, pauses
between steps, and perhaps a vanishing point (FIN or RST: after connecting, in the middle of
a TLS handshake, mid-command, mid-DATA, before the final dot, right after it, after QUIT), a
silence that smtptap's idle timeout must end, or a reset asked of upstream C.

Checks (any failure: exit 1): every smtptap stays up; every client session ends without a
client timeout; every message of a session in which no fault fired and nobody vanished or
reset arrives at its server exactly once, byte for byte (SHA-256 taken by the server); in all
sessions, a message the client got 250 for is at its server, a message whose end was never
sent is not, and no server holds a message that differs from what the client sent or holds it
twice; every client connection has its capture files and every capture file a client; every
jsonl line parses, starts with start and ends with end; every text capture ends with the
session-end line; every pcap parses to its last byte, ends with FIN and, for undisturbed
sessions, carries exactly the bytes the client sent and received; every eml holds the
message byte for byte, and the emls with a 2xx reply are exactly the messages at that
instance's server; each smtptap's open fds return to their count before the load, its RSS to
near its value after the warm-up; SIGTERM ends it with status 0; no sanitizer report.

The soak found smtptap defects (issue 16), all fixed now: a fault answering a BDAT chunk
(fixed in 399f247), memory freed after the last trim kept (66e8b02), and a client port equal
to an upstream connection's port taken for a loop (de9e4f7). --no-bdat-faults, --rss-slack
and --client-source 127.0.0.2 step around them for older binaries.
"""
import argparse
import asyncio
import collections
import datetime
import hashlib
import json
import os
import pwd
import random
import re
import resource
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "tests" / "integration"))

import client as C  # noqa: E402

PY = "/usr/bin/python3"
T0 = time.monotonic()
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer",
                     "AddressSanitizer:", "UndefinedBehaviorSanitizer")
EXIT_SKIP = 77

# Fault rules, all by probability: (name, stage, probability, action). "Benign" ones (delay,
# slow, strip) change timing or capabilities only; every firing still takes the session out
# of the must-arrive set, as the issue says, but the universal checks apply to it.
FAULTS = [
    ("greet-delay", "GREETING", 0.02, "delay 400ms"),
    ("greet-421", "GREETING", 0.01, "reply 421 4.3.2 soak: not now"),
    ("ehlo-strip", "EHLO", 0.03, "strip PIPELINING,STARTTLS,CHUNKING"),
    ("ehlo-slow", "EHLO", 0.01, "slow 4000"),
    ("tls-454", "STARTTLS", 0.03, "reply 454 4.7.0 soak: TLS not available"),
    ("mail-451", "MAIL", 0.02, "reply 451 4.3.0 soak: try later"),
    ("mail-delay", "MAIL", 0.02, "delay 300ms"),
    ("rcpt-450", "RCPT", 0.02, "reply 450 4.2.0 soak: mailbox busy"),
    ("rcpt-drop", "RCPT", 0.004, "drop"),
    ("data-554", "DATA", 0.01, "reply 554 5.5.0 soak: no"),
    ("data-reset", "DATA", 0.006, "reset"),
    ("bdat-451", "BDAT", 0.02, "reply 451 4.3.0 soak: chunk lost"),
    ("end-451", "DATA-END", 0.01, "reply 451 4.3.0 soak: lost in space"),
    ("end-delay", "DATA-END", 0.02, "delay 1s"),
    ("end-truncate", "DATA-END", 0.006, "truncate 7"),
    ("end-stall", "DATA-END", 0.004, "stall"),
    ("end-drop", "DATA-END", 0.006, "drop"),
    ("rset-slow", "RSET", 0.05, "slow 100"),
    ("noop-stall", "NOOP", 0.01, "stall"),
    ("quit-drop", "QUIT", 0.02, "drop"),
    ("quit-reset", "QUIT", 0.01, "reset"),
]
INSTANCES = {"A": "starttls: aiosmtpd", "B": "plain: smtp-sink", "C": "plain: resetting server"}
INST_WEIGHTS = (("A", 0.45), ("B", 0.30), ("C", 0.25))


def log(msg):
    print(f"[{time.monotonic() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


class SoakError(Exception):
    pass


def kib(n):
    return f"{n / 1024:.1f} MiB"


# ---- processes --------------------------------------------------------------------------------

class Procs:
    """Everything the soak starts, each in its own process group, stopped by id."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.live = []

    def start(self, name, argv, env=None, stdout=None):
        logpath = self.tmp / f"{name}.log"
        logf = open(logpath, "wb")
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                             stdout=stdout if stdout is not None else logf, stderr=logf,
                             start_new_session=True, env=env)
        logf.close()
        p.name, p.logpath = name, logpath
        self.live.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM, timeout=15.0):
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
        if p in self.live:
            self.live.remove(p)
        return p.returncode

    def stop_all(self):
        for p in reversed(list(self.live)):
            self.stop(p, timeout=5.0)


def read_json_line(p, timeout):
    """The first line p prints on stdout, as JSON."""
    import select
    deadline = time.monotonic() + timeout
    buf = b""
    while time.monotonic() < deadline:
        r, _, _ = select.select([p.stdout], [], [], 0.2)
        if r:
            chunk = os.read(p.stdout.fileno(), 4096)
            if not chunk:
                break
            buf += chunk
            if b"\n" in buf:
                return json.loads(buf.split(b"\n", 1)[0])
        if p.poll() is not None:
            break
    raise SoakError(f"{p.name} did not start:\n{p.logpath.read_text(errors='replace')[-2000:]}")


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0])
    return out


def fd_list(pid):
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[int(fd)] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            pass
    return out


def settled_rss(pid, max_wait=5.0):
    deadline = time.monotonic() + max_wait
    last = proc_status(pid)["VmRSS"]
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = proc_status(pid)["VmRSS"]
        if now == last:
            break
        last = now
    return last


class Tap:
    """One smtptap process and what is measured of it."""

    def __init__(self, name, proc, capdir):
        self.name, self.proc, self.capdir = name, proc, capdir
        self.ports = {}
        self.fds_cold = self.fds_after = None
        self.fd_map_cold = {}
        self.rss_cold = self.rss_warm = self.rss_after = self.hwm = None
        self.peak_sockets = 0
        self.died_at = None


def start_tap(procs, name, binary, upstream, conf, seed, ca_dir, up_ca, capdir, idle, env):
    argv = [binary, "-c", str(conf), "--seed", str(seed), "-q", "--color=never",
            "-l", "127.0.0.1:0", "-l", "tls:127.0.0.1:0", "-u", upstream,
            "--ca-dir", str(ca_dir), "--upstream-ca", str(up_ca), "-d", str(capdir),
            "--format", "text,jsonl,pcap,eml", "--max-sessions", "30000",
            "--idle-timeout", f"{idle}s", "--connect-timeout", "10s"]
    p = procs.start(f"smtptap-{name}", argv, env=env)
    tap = Tap(name, p, capdir)
    deadline = time.monotonic() + 15
    rx = re.compile(r"listening on 127\.0\.0\.1:(\d+) \((plain|implicit TLS)\)")
    while time.monotonic() < deadline:
        found = rx.findall(p.logpath.read_text(errors="replace"))
        if len(found) == 2:
            for port, kind in found:
                tap.ports["tls" if kind == "implicit TLS" else "plain"] = int(port)
            tap.argv = argv
            return tap
        if p.poll() is not None:
            break
        time.sleep(0.05)
    raise SoakError(f"smtptap {name} did not start ({' '.join(argv)}):\n"
                    f"{p.logpath.read_text(errors='replace')[-2000:]}")


def sanitizer_build(binary):
    """True when BINARY was built with ASan or UBSan (it names their runtime's entry points):
    their allocators keep freed memory, so RSS says nothing about smtptap's."""
    with open(binary, "rb") as f:
        data = f.read()
    return b"__asan_init" in data or b"__ubsan_handle_" in data


def write_fault_conf(path, scale, bdat):
    lines = ["; soak fault rules: every rule fires by probability (reproducible with --seed)"]
    for name, stage, prob, action in FAULTS:
        if stage == "BDAT" and not bdat:
            continue
        lines += ["", f"[fault {name}]", f"on = {stage}", f"probability = {min(1.0, prob * scale):g}",
                  f"action = {action}"]
    path.write_text("\n".join(lines) + "\n")


# ---- plans ------------------------------------------------------------------------------------

class Planner:
    def __init__(self, args, run_id):
        self.args = args
        self.run_id = run_id
        self.master = random.Random(args.seed)
        self.sid = 0

    def size(self, rng):
        r = rng.random()
        hi = self.args.max_size
        if r < 0.70:
            return rng.randrange(300, 8 << 10)
        if r < 0.95:
            return rng.randrange(8 << 10, min(hi, 64 << 10) + 1)
        return rng.randrange(min(hi, 64 << 10), hi + 1)

    def plan(self, inst=None, mode=None, clean=False):
        self.sid += 1
        sid = self.sid
        seed = self.master.getrandbits(32)
        rng = random.Random(seed)
        a = self.args
        if inst is None:
            x, inst = rng.random(), "C"
            for name, w in INST_WEIGHTS:
                if x < w:
                    inst = name
                    break
                x -= w
        mode = mode or rng.choice(("plain", "starttls", "implicit"))
        n = rng.choices((1, 2, 3), (5, 3, 2))[0]
        msgs = []
        for k in range(1, n + 1):
            mid = f"{self.run_id}-{sid}-{k}"
            msgs.append((mid, C.make_message(rng, mid, sid, self.size(rng))))
        cap = min(a.think * 4, a.idle_timeout * 0.4)
        think = [min(cap, rng.expovariate(1.0 / a.think)) for _ in range(40)]
        p = C.Plan(sid=sid, inst=inst, mode=mode, pipeline=rng.random() < 0.5,
                   bdat=rng.random() < 0.3, msgs=msgs, think=think, seed=seed,
                   rset_between=0.4)
        if clean:
            return p
        r = rng.random()
        if r < a.p_vanish:
            points = [pt for pt in C.VANISH_POINTS
                      if mode != "plain" or not pt.startswith("handshake")]
            pt = rng.choice(points)
            p.vanish = (pt, rng.randint(1, n), rng.choice(("close", "rst")))
        elif r < a.p_vanish + a.p_idle:
            p.idle = (rng.choice(C.IDLE_POINTS), rng.randint(1, n))
        elif inst == "C" and r < a.p_vanish + a.p_idle + a.p_reset:
            p.reset = (rng.choice(C.RESET_POINTS), rng.randint(1, n))
        return p


# ---- load -------------------------------------------------------------------------------------

async def monitor(taps, env, state, every=1.0):
    last_log = 0.0
    while not state["done"]:
        for t in taps.values():
            if t.proc.poll() is not None and t.died_at is None:
                t.died_at = time.monotonic() - T0
                log(f"!! smtptap {t.name} exited with status {t.proc.returncode}")
            if t.died_at is None:
                try:
                    socks = sum(1 for v in fd_list(t.proc.pid).values() if v.startswith("socket:"))
                    t.peak_sockets = max(t.peak_sockets, socks)
                except OSError:
                    pass
        if time.monotonic() - last_log >= 5:
            last_log = time.monotonic()
            rss = " ".join(f"{t.name}={kib(proc_status(t.proc.pid)['VmRSS'])}"
                           for t in taps.values() if t.died_at is None)
            log(f"open {env.open_total} (A {env.open['A']} B {env.open['B']} C {env.open['C']}), "
                f"started {state['started']}, ended {len(state['results'])}, "
                f"peak {env.peak_total}; RSS {rss}")
        await asyncio.sleep(every)


async def load(args, env, planner, taps, state, brk):
    loop_t0 = time.monotonic()
    stop_at = loop_t0 + args.seconds
    tasks = set()
    rate = args.rate
    budget = 0.0
    last = time.monotonic()

    async def one(plan):
        r = await C.run_session(plan, env)
        state["results"].append(r)

    killed = False
    while time.monotonic() < stop_at:
        now = time.monotonic()
        budget = min(rate, budget + (now - last) * rate)
        last = now
        while len(tasks) < args.sessions and budget >= 1:
            budget -= 1
            t = asyncio.ensure_future(one(planner.plan()))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
            state["started"] += 1
        if brk == "kill-smtptap" and not killed and now - loop_t0 > args.seconds / 2:
            killed = True
            log("--break kill-smtptap: SIGKILL to smtptap B")
            os.kill(taps["B"].proc.pid, signal.SIGKILL)
        await asyncio.sleep(0.02)
    log(f"load phase over: {state['started']} sessions started; waiting for "
        f"{len(tasks)} to end")
    if tasks:
        done, pending = await asyncio.wait(set(tasks), timeout=env.timeout * 3 + 30)
        for t in pending:
            t.cancel()
        state["cancelled"] = len(pending)


async def warmup(env, planner, state):
    """One clean session per smtptap and client mode, one after another (TLS contexts,
    leaf certificates and buffers allocated once), before the RSS baseline."""
    for inst in INSTANCES:
        for mode in ("plain", "starttls", "implicit"):
            p = planner.plan(inst=inst, mode=mode, clean=True)
            p.think = [0.0] * 40
            r = await C.run_session(p, env)
            r["warmup"] = True
            state["results"].append(r)
            state["started"] += 1


# ---- captures ---------------------------------------------------------------------------------

# YYYYmmddTHHMMSS-<session>-<client>[-<n>].<ext>; <client> is "?" when smtptap could not
# learn the peer's address (a client that reset the connection before it was accepted)
NAME_RE = re.compile(r"^(\d{8}T\d{6}-\d+-[^-]+)(?:-(\d+))?\.(txt|jsonl|pcap|eml)$")


def parse_ts(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def check_jsonl(path, problems):
    info = dict(start_ts=None, faults=[], deliveries=[], messages=0, errors=[], end=False,
                session=None, client_port=None)
    kinds = []
    with open(path, "rb") as f:
        data = f.read()
    if not data.endswith(b"\n"):
        problems.append(f"{path.name}: does not end with a newline")
    for i, line in enumerate(data.split(b"\n")[:-1] if data.endswith(b"\n") else data.split(b"\n")):
        try:
            ev = json.loads(line)
        except ValueError as e:
            problems.append(f"{path.name}:{i + 1}: not JSON ({e}): {line[:80]!r}")
            return info
        k = ev.get("kind")
        kinds.append(k)
        if k == "start":
            info["start_ts"] = parse_ts(ev["ts"])
            info["session"] = ev["session"]
            cl = ev["endpoints"]["client"]
            info["client_port"] = int(cl.rsplit(":", 1)[1]) if cl else None
            info["listener_port"] = int(ev["endpoints"]["listener"].rsplit(":", 1)[1])
        elif k == "fault":
            info["faults"].append(ev["fault"]["rule"])
        elif k == "delivery":
            info["deliveries"].append(ev["delivery"].get("code"))
        elif k == "message":
            info["messages"] += 1
        elif k == "error":
            info["errors"].append(ev.get("text", ""))
    if not kinds or kinds[0] != "start":
        problems.append(f"{path.name}: first event is {kinds[:1]}, not start")
    if not kinds or kinds[-1] != "end":
        problems.append(f"{path.name}: last event is {kinds[-1:]}, not end")
    else:
        info["end"] = True
    if kinds.count("end") != 1 or kinds.count("start") != 1:
        problems.append(f"{path.name}: {kinds.count('start')} start and {kinds.count('end')} "
                        "end events")
    return info


SESSION_END_RE = re.compile(rb"^#\d+ \+\d+\.\d{3} == session ended after ")


def check_txt(path, problems):
    data = path.read_bytes()
    lines = data.rstrip(b"\n").split(b"\n")
    if not data.endswith(b"\n") or not SESSION_END_RE.match(lines[-1]):
        problems.append(f"{path.name}: last line is not the session-end line: {lines[-1][:100]!r}")


def parse_pcap(path, problems):
    """(c2s bytes, s2c bytes, ended with FIN) of a smtptap pcap (Ethernet, IPv4/IPv6, TCP),
    checking the file's structure to its last byte."""
    data = path.read_bytes()
    if len(data) < 24:
        problems.append(f"{path.name}: {len(data)} bytes, no pcap header")
        return None
    magic = data[:4]
    if magic == b"\xd4\xc3\xb2\xa1":
        e = "<"
    elif magic == b"\xa1\xb2\xc3\xd4":
        e = ">"
    else:
        problems.append(f"{path.name}: bad magic {magic.hex()}")
        return None
    _, _, _, _, _, snaplen, linktype = struct.unpack(e + "IHHiIII", data[:24])
    if linktype != 1:
        problems.append(f"{path.name}: linktype {linktype}, expected 1 (Ethernet)")
        return None
    off = 24
    c2s, s2c = bytearray(), bytearray()
    client = None
    fins = set()  # who sent a FIN in the current stream
    n = 0
    while off < len(data):
        if off + 16 > len(data):
            problems.append(f"{path.name}: record header cut at offset {off}")
            return None
        _, _, incl, orig = struct.unpack(e + "IIII", data[off:off + 16])
        pkt = data[off + 16:off + 16 + incl]
        if len(pkt) != incl or incl > snaplen or incl != orig:
            problems.append(f"{path.name}: record {n} cut or inconsistent at offset {off}")
            return None
        off += 16 + incl
        n += 1
        etype = struct.unpack("!H", pkt[12:14])[0]
        if etype == 0x0800:
            ihl = (pkt[14] & 0x0F) * 4
            src = pkt[26:30]
            tcp = pkt[14 + ihl:]
        elif etype == 0x86DD:
            src = pkt[22:38]
            tcp = pkt[54:]
        else:
            problems.append(f"{path.name}: record {n}: ethertype {etype:#x}")
            return None
        sport = struct.unpack("!H", tcp[:2])[0]
        doff = (tcp[12] >> 4) * 4
        flags = tcp[13]
        payload = tcp[doff:]
        if flags & 0x02 and not flags & 0x10:  # SYN: a new stream, from the client
            client = (src, sport)
            fins = set()
        if client is None:
            problems.append(f"{path.name}: record {n} before any SYN")
            return None
        side = "c" if (src, sport) == client else "s"
        (c2s if side == "c" else s2c).extend(payload)
        if flags & 0x01:
            fins.add(side)
    # closed: the last stream ended with a FIN each way (a session without a byte has none)
    return bytes(c2s), bytes(s2c), n == 0 or fins == {"c", "s"}, n


def split_eml(data):
    """(X-Smtptap- headers as a dict, the body bytes that follow them)."""
    hdrs = {}
    pos = 0
    while data.startswith(b"X-Smtptap-", pos):
        end = data.index(b"\r\n", pos)
        while data[end + 2:end + 3] in (b" ", b"\t"):  # folded
            end = data.index(b"\r\n", end + 2)
        k, _, v = data[pos:end].partition(b": ")
        hdrs.setdefault(k.decode(), []).append(v.decode(errors="replace"))
        pos = end + 2
    return hdrs, data[pos:]


def scan_captures(tap, problems, brk):
    """Every capture file of TAP: parsed and checked. Returns {base: info}."""
    files = collections.defaultdict(dict)
    for p in Path(tap.capdir).iterdir():
        m = NAME_RE.match(p.name)
        if not m:
            problems.append(f"{tap.name}: unexpected file in the capture dir: {p.name}")
            continue
        base = m.group(1)
        if m.group(3) == "eml":
            files[base].setdefault("eml", []).append(p)
        else:
            files[base][m.group(3)] = p
    if brk == "truncate-capture" and tap.name == "A":
        victims = sorted(b for b, f in files.items() if "jsonl" in f)[:1]
        for b in victims:
            j = files[b]["jsonl"]
            lines = j.read_bytes().split(b"\n")
            j.write_bytes(b"\n".join(lines[:-2]) + b"\n")
            pc = files[b]["pcap"]
            pc.write_bytes(pc.read_bytes()[:-10])
            log(f"--break truncate-capture: cut the last event of {j.name} and 10 bytes of {pc.name}")
    out = {}
    for base, f in files.items():
        missing = [x for x in ("txt", "jsonl", "pcap") if x not in f]
        if missing:
            problems.append(f"{tap.name}: {base}: no {', '.join(missing)} file")
            continue
        info = check_jsonl(f["jsonl"], problems)
        check_txt(f["txt"], problems)
        info["pcap"] = parse_pcap(f["pcap"], problems)
        if info["pcap"] is not None and not info["pcap"][2]:
            problems.append(f"{tap.name}: {f['pcap'].name}: its last stream lacks the FINs "
                            "of a closed session")
        info["emls"] = []
        for e in sorted(f.get("eml", [])):
            hdrs, body = split_eml(e.read_bytes())
            m = re.search(rb"^X-Soak-Id: (\S+)\r$", body.split(b"\r\n\r\n", 1)[0] + b"\r\n", re.M)
            info["emls"].append(dict(path=e.name, id=m.group(1).decode() if m else "",
                                     sha256=hashlib.sha256(body).hexdigest(),
                                     reply=(hdrs.get("X-Smtptap-Reply") or [""])[0]))
        info["base"] = base
        info["files"] = f
        out[base] = info
    return out


def tshark_sample(taps, caps, k=5):
    """tshark -r on a few pcap files per smtptap: it must read each to the end, silently."""
    tshark = shutil.which("tshark")
    if not tshark:
        return "tshark not installed: skipped"
    bad = []
    n = 0
    for t in taps.values():
        infos = list(caps[t.name].values())
        random.Random(1).shuffle(infos)
        for info in infos[:k]:
            n += 1
            r = subprocess.run([tshark, "-r", str(info["files"]["pcap"]), "-q"],
                               capture_output=True, text=True, timeout=60)
            err = "\n".join(ln for ln in r.stderr.splitlines()
                            if "Running as user" not in ln and ln.strip())
            if r.returncode != 0 or err:
                bad.append(f"{info['files']['pcap'].name}: rc {r.returncode} {err[:200]}")
    return bad if bad else f"tshark read {n} sampled pcaps cleanly"


# ---- upstream records ---------------------------------------------------------------------------

def read_records(path):
    out = []
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                out.append(json.loads(line))
    return out


def sink_messages(dirpath):
    """smtp-sink's dumps: the message as received, LF line ends (the client sent CRLF only,
    so turning LF back into CRLF gives its bytes)."""
    out = []
    for name in os.listdir(dirpath):
        data = (Path(dirpath) / name).read_bytes()
        if not data.endswith(b"\n\n"):
            out.append(dict(kind="msg", id="", sha256="incomplete dump " + name, size=0))
            continue
        lines = data.split(b"\n")
        i = 0
        while i < len(lines) and not lines[i].startswith(b"Received: "):
            i += 1
        i += 1
        while i < len(lines) and lines[i][:1] in (b"\t", b" "):
            i += 1
        body = b"\n".join(lines[i:])[:-1].replace(b"\n", b"\r\n")
        out.append(dict(kind="msg", id=_soak_id(body), sha256=hashlib.sha256(body).hexdigest(),
                        size=len(body), via="DATA"))
    return out


def _soak_id(content):
    m = re.search(rb"^X-Soak-Id: (\S+)\r$", content.split(b"\r\n\r\n", 1)[0] + b"\r\n", re.M)
    return m.group(1).decode() if m else ""


# ---- verdict ------------------------------------------------------------------------------------

SESSION_LEVEL_VANISH = {"connect", "handshake-partial", "handshake-hello", "greeting",
                        "ehlo-partial"}


def verdict(args, taps, results, caps, server_msgs, resets, accept_resets, problems, notes):
    """Match client sessions with capture sessions and server records; fill problems."""
    stats = collections.Counter()
    # client sessions <-> captures, by (smtptap, client port) and time
    by_port = collections.defaultdict(list)
    for name, infos in caps.items():
        for info in infos.values():
            if info.get("client_port") is not None:
                by_port[(name, info["client_port"])].append(info)
    used = set()
    for r in results:
        r["cap"] = None
        if not r["port"]:
            continue
        cands = [i for i in by_port.get((r["inst"], r["port"]), [])
                 if id(i) not in used and i["start_ts"] is not None
                 and r["t0"] - 1 <= i["start_ts"] <= (r["t1"] or time.time()) + 1]
        if not cands:
            continue
        best = min(cands, key=lambda i: abs(i["start_ts"] - r["t0"]))
        used.add(id(best))
        r["cap"] = best
    # a client that reset the connection early may be gone before smtptap asked for its
    # address: such captures (client "?") pair with clients that vanished, by listener and
    # time
    for r in results:
        if r["cap"] is None and r["port"] and r["vanished"]:
            lport = taps[r["inst"]].ports["tls" if r["mode"] == "implicit" else "plain"]
            cands = [i for i in caps[r["inst"]].values() if id(i) not in used
                     and i.get("client_port") is None and i.get("listener_port") == lport
                     and i["start_ts"] is not None
                     and r["t0"] - 1 <= i["start_ts"] <= (r["t1"] or time.time()) + 1]
            if cands:
                best = min(cands, key=lambda i: abs(i["start_ts"] - r["t0"]))
                used.add(id(best))
                r["cap"] = best
                stats["anonymous_captures"] += 1
    for r in results:
        if r["cap"] is None and r["port"]:
            problems.append(f"session s{r['sid']} ({r['inst']}, {r['mode']}, port {r['port']}, "
                            f"vanished {r['vanished']}): no capture files")
    for name, infos in caps.items():
        for info in infos.values():
            if id(info) not in used:
                problems.append(f"{name}: capture {info['base']} matches no client session")

    # every message the client meant to send, by id
    sent = {}
    for r in results:
        for m in r["msgs"]:
            sent[m["id"]] = (r, m)
    at_server = collections.defaultdict(list)  # id -> [(inst, record)]
    for inst, recs in server_msgs.items():
        for rec in recs:
            at_server[rec["id"]].append((inst, rec))
            if rec["id"] not in sent:
                problems.append(f"server of {inst} holds a message with unknown id "
                                f"{rec['id']!r} ({rec['sha256']})")
    stats["server_msgs"] = sum(len(v) for v in server_msgs.values())
    for mid, lst in at_server.items():
        if mid not in sent:
            continue
        r, m = sent[mid]
        if len(lst) > 1:
            problems.append(f"{mid}: at the server {len(lst)} times")
        for inst, rec in lst:
            if inst != r["inst"]:
                problems.append(f"{mid}: sent through {r['inst']}, arrived at {inst}'s server")
            if rec["sha256"] != m["sha256"]:
                problems.append(f"{mid}: arrived altered: server sha256 {rec['sha256'][:16]} "
                                f"({rec['size']} bytes), sent {m['sha256'][:16]} ({m['size']} "
                                f"bytes); session s{r['sid']} faults "
                                f"{(r['cap'] or {}).get('faults')} end {r['end']}")
        if not m["end_sent"]:
            problems.append(f"{mid}: at the server though the client never sent its end "
                            f"(vanished {r['vanished']!r}, idle {r['idled']!r})")

    reset_sids = {x["sid"]: x for x in resets}
    accept_candidates = 0
    for r in results:
        stats["sessions"] += 1
        stats[f"mode_{r['mode']}"] += 1
        stats[f"inst_{r['inst']}"] += 1
        stats["pipelined"] += bool(r["pipelined"])
        stats["bdat"] += bool(r["bdat"])
        stats["tls"] += bool(r["tls"])
        cap = r["cap"] or {}
        faults = cap.get("faults", [])
        if r["end"] in ("client-timeout", "client-error", "connect-failed") or r["end"] is None:
            problems.append(f"session s{r['sid']} ({r['inst']}, {r['mode']}): ended "
                            f"{r['end']}: {r['error']}; faults {faults}; steps {r['steps'][-4:]}")
        stats["faulted"] += bool(faults)
        stats["vanished"] += bool(r["vanished"])
        stats["idled"] += bool(r["idled"])
        reset = reset_sids.get(r["sid"]) if r["inst"] == "C" else None
        stats["reset"] += bool(reset)
        for m in r["msgs"]:
            stats["msgs_planned"] += 1
            stats["msgs_started"] += m["started"]
            stats["msgs_end_sent"] += m["end_sent"]
            ok = m["reply"] is not None and 200 <= m["reply"] < 300
            stats["msgs_2xx"] += ok
            there = any(inst == r["inst"] for inst, _ in at_server.get(m["id"], []))
            stats["msgs_at_server"] += there
            if ok and not there:
                problems.append(f"{m['id']}: LOST: the client got {m['reply']} for it, its server "
                                f"does not have it (session s{r['sid']}, {r['inst']}, {r['mode']}, "
                                f"faults {faults})")
        # the must-arrive set
        greeted = r["greeting"] == 220
        if faults or r["idled"]:
            stats["excluded_sessions"] += 1
            continue
        if r["inst"] == "C" and not greeted and r["vanished"] not in (
                "connect", "handshake-partial", "handshake-hello"):
            # no greeting through C, no fault: the server reset it before greeting (counted)
            accept_candidates += 1
            stats["excluded_sessions"] += 1
            continue
        limit = len(r["msgs"]) + 1  # messages with k < limit must arrive
        if r["vanished"]:
            v = r["vanished"]
            vk = r.get("vanish_k") or 1
            limit = 1 if v in SESSION_LEVEL_VANISH else (limit if v == "quit" else vk)
        if r["inst"] == "C" and (r.get("reset_plan") or reset):
            rk = reset["k"] if reset else r["reset_plan"][1]
            rp = reset["point"] if reset else r["reset_plan"][0]
            limit = min(limit, 1 if rp == "ehlo" else rk)
        clean = not r["vanished"] and not reset and not r.get("reset_plan")
        if clean:
            stats["clean_sessions"] += 1
            if not greeted or r["end"] != "quit" or not r["quit_ok"]:
                problems.append(f"clean session s{r['sid']} ({r['inst']}, {r['mode']}) did not "
                                f"end with QUIT/221: end {r['end']} {r['error']}; greeting "
                                f"{r['greeting']}; steps {r['steps'][-5:]}")
            pc = cap.get("pcap")
            if pc is not None:
                c2s, s2c = hashlib.sha256(pc[0]).hexdigest(), hashlib.sha256(pc[1]).hexdigest()
                if c2s != r["sent_sha"] or s2c != r["got_sha"]:
                    problems.append(
                        f"clean session s{r['sid']} ({r['inst']}, {r['mode']}): pcap "
                        f"{cap['files']['pcap'].name} holds {len(pc[0])}/{len(pc[1])} bytes "
                        f"up/down, the client sent {r['sent_n']} and got {r['got_n']}"
                        + (" (contents differ)" if (len(pc[0]), len(pc[1])) ==
                           (r['sent_n'], r['got_n']) else ""))
                else:
                    stats["pcap_exact"] += 1
        else:
            stats["excluded_sessions"] += 1
        for m in r["msgs"]:
            if m["k"] >= limit:
                continue
            stats["must_arrive"] += 1
            lst = [rec for inst, rec in at_server.get(m["id"], []) if inst == r["inst"]]
            if m["reply"] != 250 or len(lst) != 1 or lst[0]["sha256"] != m["sha256"]:
                problems.append(f"{m['id']}: must arrive (session s{r['sid']}, {r['inst']}, "
                                f"{r['mode']}, pipelined {r['pipelined']}, bdat {r['bdat']}, "
                                f"vanished {r['vanished']}, reset {reset}) but reply "
                                f"{m['reply']}, at server {len(lst)}x"
                                + (", altered" if lst and lst[0]["sha256"] != m["sha256"] else "")
                                + f"; end {r['end']} {r['error']}")
            else:
                stats["must_arrive_ok"] += 1
    if accept_candidates > accept_resets:
        problems.append(f"{accept_candidates} sessions of C without a greeting and no fault, "
                        f"but the server reset only {accept_resets} connections before greeting")
    stats["accept_candidates"] = accept_candidates

    # eml files against the client and the servers
    for name, infos in caps.items():
        eml_ok = collections.Counter()
        for info in infos.values():
            for e in info["emls"]:
                stats["eml"] += 1
                if e["id"] not in sent:
                    problems.append(f"{name}: {e['path']}: unknown message id {e['id']!r}")
                    continue
                r, m = sent[e["id"]]
                if e["sha256"] != m["sha256"]:
                    problems.append(f"{name}: {e['path']}: body differs from what the client sent")
                if e["reply"].startswith("2"):
                    eml_ok[e["id"]] += 1
        at = collections.Counter(rec["id"] for rec in server_msgs.get(name, []))
        for mid in set(at) | set(eml_ok):
            if at[mid] != eml_ok[mid]:
                r, m = sent.get(mid, (None, None))
                reset = reset_sids.get(r["sid"]) if r else None
                if reset and reset["point"] == "after" and eml_ok[mid] == 0 and at[mid] == 1:
                    stats["eml_after_reset"] += 1  # 250 sent, then RST: smtptap may not see it
                    continue
                if r and r["vanished"] == "dot" and r["vanish_k"] == m["k"] and eml_ok[mid] == 0:
                    # the client left right after its final dot: smtptap ended the session
                    # before the server's 250 came (eml reply "(none: ...)")
                    stats[f"eml_dot_vanish_{r['vanish_how']}"] += 1
                    continue
                problems.append(f"{name}: {mid}: {at[mid]} at the server, {eml_ok[mid]} eml "
                                "with a 2xx reply")
    return stats


# ---- main ---------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(prog="tests/soak/run.sh", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=300, help="concurrent sessions to hold (300)")
    ap.add_argument("--seconds", type=float, default=30, help="length of the load phase (30)")
    ap.add_argument("--smtptap", default=os.environ.get("SMTPTAP_BIN") or str(REPO / "build" / "smtptap"))
    ap.add_argument("--seed", type=int, default=None, help="seed of the whole run (random)")
    ap.add_argument("--think", type=float, default=1.0, help="mean pause between steps, s (1.0)")
    ap.add_argument("--rate", type=float, default=None, help="new sessions per second at most "
                    "(default: sessions/8, at least 50)")
    ap.add_argument("--max-size", type=int, default=1 << 20, help="largest message (1 MiB)")
    ap.add_argument("--idle-timeout", type=float, default=15, help="smtptap --idle-timeout, s (15)")
    ap.add_argument("--faults", type=float, default=1.0, help="scale every fault probability")
    ap.add_argument("--p-vanish", type=float, default=0.12)
    ap.add_argument("--p-idle", type=float, default=0.01)
    ap.add_argument("--p-reset", type=float, default=0.35, help="of C's sessions")
    ap.add_argument("--accept-reset", type=float, default=0.03,
                    help="C's server: probability of a reset before the greeting")
    ap.add_argument("--rss-slack", type=float, default=8.0,
                    help="MiB the RSS after the load may exceed the warm-up baseline (8)")
    ap.add_argument("--workdir", help="keep everything here (default: a temporary dir, removed "
                    "after a pass)")
    ap.add_argument("--json", help="write the figures to this file")
    ap.add_argument("--hold", type=float, default=0, help="after the checks, keep every "
                    "process running this many seconds (to inspect them) before stopping")
    # Ways around smtptap defects the soak found (issue 16), for runs that must pass before
    # they are fixed; each takes away part of what the soak tests.
    ap.add_argument("--no-bdat-faults", dest="bdat_faults", action="store_false",
                    help="leave out the BDAT reply fault (a chunk answered by smtptap: the "
                    "server gets the message without it, and deliveries pair with the wrong "
                    "message in jsonl and eml)")
    ap.add_argument("--client-source", default="127.0.0.1", help="source address of the "
                    "clients (127.0.0.2: no client port equals one of smtptap's upstream "
                    "ports, which smtptap before de9e4f7 took for a loop)")
    ap.add_argument("--break", dest="brk", choices=("lose-message", "corrupt-message",
                    "kill-smtptap", "hold-session", "truncate-capture"),
                    help="break something on purpose: the run must fail")
    args = ap.parse_args()
    if args.seed is None:
        args.seed = random.SystemRandom().getrandbits(31)
    if args.rate is None:
        args.rate = max(50.0, args.sessions / 8)
    binary = os.path.abspath(args.smtptap)
    if not os.access(binary, os.X_OK):
        print(f"soak: smtptap binary not found: {binary} (--smtptap PATH)", file=sys.stderr)
        return 2
    sink_bin = shutil.which("smtp-sink") or ("/usr/sbin/smtp-sink" if os.access(
        "/usr/sbin/smtp-sink", os.X_OK) else None)
    try:
        import aiosmtpd  # noqa: F401 - present?
        import cryptography  # noqa: F401 - present?
    except ImportError as e:
        print(f"soak: SKIP: {e} (python3-aiosmtpd, python3-cryptography)", file=sys.stderr)
        return EXIT_SKIP
    if not sink_bin:
        print("soak: SKIP: smtp-sink not installed (package postfix)", file=sys.stderr)
        return EXIT_SKIP

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    need = args.sessions + 512
    if hard < need:
        print(f"soak: the open-file limit is {hard}; {args.sessions} sessions need {need}",
              file=sys.stderr)
        return 2

    tmp = Path(args.workdir or tempfile.mkdtemp(prefix="smtptap-soak-"))
    tmp.mkdir(parents=True, exist_ok=True)
    os.chmod(tmp, 0o755)  # smtp-sink runs as nobody and writes into tmp/sink
    procs = Procs(tmp)
    rc = 1
    try:
        rc = run(args, binary, sink_bin, tmp, procs)
    except SoakError as e:
        log(f"FAIL: {e}")
        rc = 1
    finally:
        procs.stop_all()
        if rc == 0 and not args.workdir:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log(f"kept {tmp}")
    return rc


def run(args, binary, sink_bin, tmp, procs):
    import harness
    run_id = f"{args.seed:x}"
    log(f"soak: {args.sessions} concurrent sessions for {args.seconds:g}s, seed {args.seed}, "
        f"smtptap {binary}, work dir {tmp}")
    brk = args.brk
    # TLS material: a test CA for the upstream (aiosmtpd), smtptap's own CA for clients
    ca = harness.CertAuthority(str(tmp))
    up_cert, up_key = ca.issue(["localhost", "127.0.0.1"])
    tap_ca_dir = tmp / "tapca"
    r = subprocess.run([binary, "--ca-dir", str(tap_ca_dir), "--print-ca"], capture_output=True)
    if r.returncode != 0:
        raise SoakError(f"smtptap --print-ca failed: {r.stderr.decode(errors='replace')}")
    (tmp / "tapca.pem").write_bytes(r.stdout)
    ctx = ssl.create_default_context(cafile=str(tmp / "tapca.pem"))

    # upstreams
    aio_rec, reset_rec = tmp / "aio-records.jsonl", tmp / "reset-records.jsonl"
    aio = procs.start("upstream-aio", [PY, str(HERE / "upstreams.py"), "aio", "--records",
                      str(aio_rec), "--cert", up_cert, "--key", up_key]
                      + (["--break", brk.split("-")[0]] if brk in ("lose-message",
                         "corrupt-message") else []), stdout=subprocess.PIPE)
    aio_port = read_json_line(aio, 20)["port"]
    rst = procs.start("upstream-reset", [PY, str(HERE / "upstreams.py"), "reset", "--records",
                      str(reset_rec), "--seed", str(args.seed), "--accept-reset",
                      str(args.accept_reset)], stdout=subprocess.PIPE)
    reset_port = read_json_line(rst, 20)["port"]
    sink_dir = tmp / "sink"
    sink_dir.mkdir()
    user = []
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chown(sink_dir, nobody.pw_uid, nobody.pw_gid)
        user = ["-u", "nobody"]
    sink_port = harness.free_port()
    sink = procs.start("upstream-sink", [sink_bin, *user, "-m", "30000", "-h", "sink.soak.test",
                       "-d", str(sink_dir / "%Y%m%d%H%M%S."), f"127.0.0.1:{sink_port}", "4096"])
    harness.wait_port(sink_port, timeout=10)  # smtp-sink, not smtptap: a probe is harmless

    conf = tmp / "faults.conf"
    write_fault_conf(conf, args.faults, args.bdat_faults)
    env = dict(os.environ)
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
    taps = {}
    ups = {"A": f"starttls:127.0.0.1:{aio_port}", "B": f"plain:127.0.0.1:{sink_port}",
           "C": f"plain:127.0.0.1:{reset_port}"}
    for i, name in enumerate(INSTANCES):
        capdir = tmp / f"cap-{name}"
        taps[name] = start_tap(procs, name, binary, ups[name], conf, args.seed + i,
                               tap_ca_dir, ca.cert_path, capdir, args.idle_timeout, env)
    time.sleep(0.3)
    for t in taps.values():
        t.fd_map_cold = fd_list(t.proc.pid)
        t.fds_cold = len(t.fd_map_cold)
        t.rss_cold = settled_rss(t.proc.pid, 2)
    log("smtptap " + ", ".join(f"{n}: {ups[n]} (plain {t.ports['plain']}, tls {t.ports['tls']}; "
                               f"{t.fds_cold} fds, {kib(t.rss_cold)})" for n, t in taps.items()))

    cenv = C.Env({n: t.ports for n, t in taps.items()}, ctx, args.idle_timeout + 15,
                 args.idle_timeout, args.client_source)
    planner = Planner(args, run_id)
    state = dict(results=[], started=0, done=False, cancelled=0)

    async def whole():
        await warmup(cenv, planner, state)
        for t in taps.values():
            t.rss_warm = settled_rss(t.proc.pid, 3)
        log("after warm-up: RSS " + ", ".join(f"{n} {kib(t.rss_warm)}" for n, t in taps.items()))
        held = None
        if brk == "hold-session":
            held = socket.create_connection(("127.0.0.1", taps["A"].ports["plain"]), timeout=10)
            held.recv(1024)  # the greeting; then a NOOP every 2 s keeps it from idling out

            def keep(sock=held):
                try:
                    while True:
                        time.sleep(2)
                        sock.sendall(b"NOOP\r\n")
                        sock.recv(1024)
                except OSError:
                    pass
            threading.Thread(target=keep, daemon=True).start()
            log("--break hold-session: one session on A stays open")
        mon = asyncio.ensure_future(monitor(taps, cenv, state))
        t_load = time.monotonic()
        await load(args, cenv, planner, taps, state, brk)
        state["load_seconds"] = time.monotonic() - t_load
        state["done"] = True
        await mon
        return held

    t_start = time.monotonic()
    held = asyncio.run(whole())
    results = state["results"]
    log(f"all {len(results)} client sessions over ({state['cancelled']} cancelled); "
        f"peak concurrent {cenv.peak_total}")

    problems, notes = [], []
    sanitized = sanitizer_build(binary)
    if state["cancelled"]:
        problems.append(f"{state['cancelled']} client sessions still running long after the "
                        "load ended: cancelled")
    # fds back to the cold count, RSS
    for t in taps.values():
        if t.proc.poll() is not None:
            problems.append(f"smtptap {t.name} died (status {t.proc.returncode}) at "
                            f"{t.died_at or 0:.1f}s")
            continue
        deadline = time.monotonic() + 30
        while True:
            fds = fd_list(t.proc.pid)
            if len(fds) <= t.fds_cold or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        t.fds_after = len(fds)
        if t.fds_after != t.fds_cold:
            extra = sorted(set(fds.items()) - set(t.fd_map_cold.items()))
            problems.append(f"smtptap {t.name}: {t.fds_after} fds after the load, {t.fds_cold} "
                            f"before: {extra[:8]}")
        t.rss_after = settled_rss(t.proc.pid, 5)
        t.hwm = proc_status(t.proc.pid)["VmHWM"]
        if sanitized:
            continue
        if t.rss_after > t.rss_warm + args.rss_slack * 1024:
            problems.append(f"smtptap {t.name}: RSS {kib(t.rss_after)} after the load, "
                            f"{kib(t.rss_warm)} after the warm-up (peak {kib(t.hwm)}; "
                            f"allowed +{args.rss_slack:g} MiB)")
    # captures (before SIGTERM: complete once each session ended)
    log("checking capture files")
    caps = {n: scan_captures(t, problems, brk) for n, t in taps.items()}
    ts = tshark_sample(taps, caps)
    if isinstance(ts, list):
        problems += [f"tshark: {b}" for b in ts]
        ts = f"tshark failed on {len(ts)} sampled pcaps"
    notes.append(ts)  # notes[0]: printed on the captures line
    if sanitized:
        notes.append("RSS not checked: a sanitizer build (its allocator keeps freed memory)")
    if held:
        held.close()
    # upstream records
    procs.stop(aio)
    procs.stop(rst)
    procs.stop(sink)
    aio_recs = read_records(aio_rec)
    reset_recs = read_records(reset_rec)
    server_msgs = {"A": [x for x in aio_recs if x["kind"] == "msg"],
                   "B": sink_messages(sink_dir),
                   "C": [x for x in reset_recs if x["kind"] == "msg"]}
    resets = [x for x in reset_recs if x["kind"] == "reset"]
    accept_resets = sum(1 for x in reset_recs if x["kind"] == "accept-reset")
    stats = verdict(args, taps, results, caps, server_msgs, resets, accept_resets, problems, notes)
    if args.hold:
        log("--hold: smtptap pids " + ", ".join(f"{n} {t.proc.pid}" for n, t in taps.items())
            + f"; stopping in {args.hold:g}s")
        time.sleep(args.hold)
    # stop smtptap: status 0, no sanitizer report
    for t in taps.values():
        if t.proc.poll() is None:
            rc = procs.stop(t.proc, timeout=20)
            if rc != 0:
                problems.append(f"smtptap {t.name}: SIGTERM -> exit status {rc}")
        err = t.proc.logpath.read_text(errors="replace")
        for mk in SANITIZER_MARKERS:
            if mk in err:
                i = err.index(mk)
                problems.append(f"smtptap {t.name}: sanitizer report:\n{err[max(0, i - 200):i + 3000]}")
                break
        start_lines = ("listening on", "fault rules, seed", " started ", "command line:",
                       "config file:")
        other = [ln for ln in err.splitlines() if ln and not (
            ln.startswith("smtptap") and any(k in ln for k in start_lines))]
        if other:
            notes.append(f"smtptap {t.name} stderr ({len(other)} lines): " + " | ".join(other[:5]))
    duration = time.monotonic() - t_start
    faults = collections.Counter()
    for infos in caps.values():
        for info in infos.values():
            faults.update(info["faults"])
    report(args, taps, cenv, state, stats, faults, resets, accept_resets, duration, problems,
           notes, results)
    return 1 if problems else 0


def report(args, taps, env, state, st, faults, resets, accept_resets, duration, problems, notes,
           results):
    vanish = collections.Counter(r["vanished"] for r in results if r["vanished"])
    rpoints = collections.Counter(x["point"] for x in resets)
    ends = collections.Counter(r["end"] for r in results)
    fig = dict(
        seed=args.seed, sessions=st["sessions"], concurrent_target=args.sessions,
        peak_concurrent=env.peak_total, peak_by_instance=dict(env.peak),
        load_seconds=round(state.get("load_seconds", 0), 1), duration_seconds=round(duration, 1),
        modes={m: st[f"mode_{m}"] for m in ("plain", "starttls", "implicit")},
        tls_sessions=st["tls"], pipelined=st["pipelined"], bdat=st["bdat"],
        by_instance={n: st[f"inst_{n}"] for n in INSTANCES},
        messages=dict(planned=st["msgs_planned"], started=st["msgs_started"],
                      end_sent=st["msgs_end_sent"], accepted_2xx=st["msgs_2xx"],
                      at_servers=st["server_msgs"], must_arrive=st["must_arrive"],
                      must_arrive_ok=st["must_arrive_ok"],
                      excluded=st["msgs_planned"] - st["must_arrive"]),
        sessions_clean=st["clean_sessions"], sessions_excluded=st["excluded_sessions"],
        sessions_faulted=st["faulted"], faults_fired=sum(faults.values()),
        faults_by_rule=dict(faults.most_common()), vanished=dict(vanish.most_common()),
        idled=st["idled"], upstream_resets=dict(rpoints.most_common()),
        upstream_accept_resets=accept_resets, ends=dict(ends.most_common()),
        pcap_exact=st["pcap_exact"], eml=st["eml"],
        smtptap={n: dict(fds_before=t.fds_cold, fds_after=t.fds_after,
                         rss_cold_kib=t.rss_cold, rss_warm_kib=t.rss_warm,
                         rss_peak_kib=t.hwm, rss_after_kib=t.rss_after,
                         peak_sockets=t.peak_sockets, died=t.died_at is not None)
                 for n, t in taps.items()},
        problems=problems, notes=notes)
    if args.json:
        Path(args.json).write_text(json.dumps(fig, indent=2) + "\n")
    p = print
    p("")
    p(f"soak: {'FAIL' if problems else 'PASS'}  (seed {args.seed}; tests/soak/run.sh "
      f"--sessions {args.sessions} --seconds {args.seconds:g} --seed {args.seed} repeats the plans)")
    p("  command       tests/soak/run.sh " + " ".join(sys.argv[1:]))
    p(f"  sessions      {fig['sessions']} in {args.seconds:g}s of load, all over {fig['load_seconds']}s after "
      f"it began ({fig['duration_seconds']}s in all with start and checks); "
      f"peak concurrent {env.peak_total} (A {env.peak['A']}, B {env.peak['B']}, C {env.peak['C']}) "
      f"for a target of {args.sessions}")
    p(f"  mix           plain {fig['modes']['plain']}, STARTTLS {fig['modes']['starttls']}, implicit TLS "
      f"{fig['modes']['implicit']} (in TLS: {st['tls']}); pipelined {st['pipelined']}, BDAT {st['bdat']}; "
      f"A {st['inst_A']} / B {st['inst_B']} / C {st['inst_C']}")
    m = fig["messages"]
    p(f"  messages      {m['planned']} planned, {m['end_sent']} sent to the end, {m['accepted_2xx']} got 2xx, "
      f"{m['at_servers']} at the servers; must arrive {m['must_arrive']}: {m['must_arrive_ok']} arrived byte "
      f"for byte, {m['must_arrive'] - m['must_arrive_ok']} lost; {m['excluded']} excluded")
    p(f"  disturbed     {st['faulted']} sessions with faults ({fig['faults_fired']} firings), "
      f"{st['vanished']} vanished, {st['idled']} idle, {st['reset']} reset by upstream "
      f"(+{accept_resets} before greeting); clean {st['clean_sessions']} (pcap exact: {st['pcap_exact']})")
    p("  faults        " + ", ".join(f"{k} {v}" for k, v in faults.most_common()))
    p("  vanish        " + ", ".join(f"{k} {v}" for k, v in vanish.most_common()))
    p("  resets        " + ", ".join(f"{k} {v}" for k, v in rpoints.most_common()))
    p("  ends          " + ", ".join(f"{k} {v}" for k, v in ends.most_common()))
    p(f"  captures      {sum(1 for r in results if r.get('cap'))} sessions, {st['eml']} eml; {notes[0] if notes else ''}")
    for n, t in taps.items():
        p(f"  smtptap {n}     fds {t.fds_cold} -> {t.fds_after}; RSS {kib(t.rss_cold or 0)} at start, "
          f"{kib(t.rss_warm or 0)} after warm-up, peak {kib(t.hwm or 0)}, {kib(t.rss_after or 0)} after; "
          f"peak sockets {t.peak_sockets}" + ("; DIED" if t.died_at is not None else ""))
    for n in notes[1:]:
        p(f"  note          {n}")
    if problems:
        p(f"  PROBLEMS ({len(problems)}):")
        for x in problems[:40]:
            p(f"    - {x}")
        if len(problems) > 40:
            p(f"    ... and {len(problems) - 40} more")


if __name__ == "__main__":
    sys.exit(main())
