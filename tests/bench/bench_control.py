#!/usr/bin/python3
"""bench_control.py - what the control API costs (issue 13), on loopback, in one run.

    /usr/bin/python3 tests/bench/bench_control.py [--smtptap PATH] [--reps N] [--messages N]
                                                  [--sessions N]

Part A: Postfix smtp-source sends 4 KiB messages, one connection per message (-s 10), to
smtp-sink directly and through three smtptap processes started side by side:
    smtptap -q                          no control API (the baseline)
    smtptap -q --control ADDR           the API listening, nobody asking
    smtptap -q --control ADDR + page    the web page's stream attached (?view=sessions: a
                                        summary as each session starts, changes, ends)
    smtptap -q --control ADDR + every   a client of every event (GET /api/events)
Repeats are interleaved (each repeat runs every path once), medians reported with the ratio
to the baseline; the issue's target is at most 10 % less (>= 0.90x).

Part B: with N recorded sessions (default 1,000; --control-recent N) and an event stream
attached, the latency of GET /api/sessions, GET /api/stats and GET / (the page), 20 times
each: the issue's target is an answer in under 100 ms.

A measurement, not a test: it exits 0 whatever the numbers, 1 only when a run breaks.
"""

import argparse
import http.client
import json
import os
import re
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

ROOT = Path(__file__).resolve().parents[2]
PAGE = "--control + page stream"    # GET /api/events?view=sessions, as the web page
EVERY = "--control + every event"   # GET /api/events


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def which(name):
    for d in (os.environ.get("PATH", "") + ":/usr/sbin:/sbin").split(":"):
        p = Path(d) / name
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    sys.exit(f"bench_control: {name} not found (apt-get install postfix)")


def wait_port(port, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"bench_control: nothing listens on {port}")


class Stream:
    """A GET /api/events client reading everything, on a thread."""

    def __init__(self, port, query=""):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(f"GET /api/events{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        self.bytes = 0
        self.events = 0
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        try:
            while d := self.sock.recv(1 << 16):
                self.bytes += len(d)
                self.events += d.count(b"data: ")
        except OSError:
            pass

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def start_tap(binary, listen, upstream, extra, log):
    argv = [binary, "-l", f"127.0.0.1:{listen}", "-u", f"plain:127.0.0.1:{upstream}", "-q",
            *extra]
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    wait_port(listen)
    return p, argv


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def control_port(log):
    deadline = time.time() + 10
    while time.time() < deadline:
        m = re.search(r"control API and web page on http://127\.0\.0\.1:(\d+)/",
                      Path(log).read_text())
        if m:
            return int(m.group(1))
        time.sleep(0.05)
    sys.exit(f"bench_control: no control API line in {log}")


def timed_get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    t = time.perf_counter()
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    ms = (time.perf_counter() - t) * 1000
    c.close()
    if r.status != 200:
        sys.exit(f"bench_control: GET {path} answered {r.status}")
    return ms, len(body)


def http_get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", path)
    body = c.getresponse().read().decode()
    c.close()
    return body


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smtptap", default=os.environ.get("SMTPTAP_BIN") or
                    str(ROOT / "build-release" / "smtptap"))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--sessions", type=int, default=1000)
    a = ap.parse_args()
    source, sink_bin = which("smtp-source"), which("smtp-sink")
    tmp = Path(tempfile.mkdtemp(prefix="smtptap-bench-control-"))
    procs = []
    try:
        p_sink = free_port()
        sink = subprocess.Popen([sink_bin, "-u", "nobody", f"127.0.0.1:{p_sink}", "4096"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(sink)
        wait_port(p_sink)
        paths = {}
        for key, extra in (("smtptap -q", []),
                           ("smtptap -q --control", ["--control", "127.0.0.1:0"]),
                           (PAGE, ["--control", "127.0.0.1:0"]),
                           (EVERY, ["--control", "127.0.0.1:0"])):
            port = free_port()
            log = tmp / f"{len(paths)}.log"
            p, argv = start_tap(a.smtptap, port, p_sink, extra, log)
            procs.append(p)
            paths[key] = {"port": port, "proc": p, "argv": argv, "log": log}
        paths = {"direct": {"port": p_sink, "proc": None, "argv": None}, **paths}
        page = Stream(control_port(paths[PAGE]["log"]), "?view=sessions")
        stream = Stream(control_port(paths[EVERY]["log"]))
        print(f"# smtptap: {a.smtptap}", flush=True)
        for k, v in paths.items():
            if v["argv"]:
                print(f"# {k}: {' '.join(v['argv'])}", flush=True)
        print(f"# load: smtp-source -s 10 -m {a.messages} -l 4096 (one connection per message); "
              f"{a.reps} repeats, interleaved", flush=True)
        rates = {k: [] for k in paths}
        cpu = {k: [] for k in paths}
        for rep in range(a.reps):
            for k, v in paths.items():
                c0 = cpu_seconds(v["proc"].pid) if v["proc"] else 0
                t = time.monotonic()
                r = subprocess.run([source, "-s", "10", "-m", str(a.messages), "-l", "4096",
                                    f"127.0.0.1:{v['port']}"], capture_output=True, text=True)
                el = time.monotonic() - t
                if r.returncode != 0 or r.stdout.strip() or r.stderr.strip():
                    sys.exit(f"bench_control: smtp-source to {k} failed: {r.stdout}{r.stderr}")
                rates[k].append(a.messages / el)
                cpu[k].append((cpu_seconds(v["proc"].pid) - c0) if v["proc"] else 0)
                print(f"  rep {rep + 1}/{a.reps} {k:28s} {a.messages / el:8.0f} msg/s", flush=True)
        base = statistics.median(rates["smtptap -q"])
        direct = statistics.median(rates["direct"])
        print("\n| path | msg/s (median, range) | vs direct | vs smtptap -q | CPU s (median) |")
        print("|---|---|---|---|---|")
        for k in paths:
            m = statistics.median(rates[k])
            lo, hi = min(rates[k]), max(rates[k])
            print(f"| {k} | {m:.0f} ({lo:.0f}-{hi:.0f}) | {m / direct:.2f}x | {m / base:.2f}x | "
                  + ("-" if k == "direct" else f"{statistics.median(cpu[k]):.2f}") + " |")
        print(f"\npage's stream (?view=sessions): {page.events} summaries, "
              f"{page.bytes / 1e6:.1f} MB; every event: {stream.events} events, "
              f"{stream.bytes / 1e6:.1f} MB")
        for k in ("smtptap -q --control", PAGE, EVERY):
            m = statistics.median(rates[k])
            verdict = "PASS" if m >= 0.9 * base else "MISS"
            print(f"target: {k} >= 0.90x of smtptap -q: {m / base:.2f}x {verdict}")
        stream.close()
        page.close()

        # Part B: N recorded sessions, a stream attached, how fast the API answers
        port = free_port()
        log = tmp / "b.log"
        p, argv = start_tap(a.smtptap, port, p_sink,
                            ["--control", "127.0.0.1:0", "--control-recent", str(a.sessions)], log)
        procs.append(p)
        cport = control_port(log)
        stream = Stream(cport)
        subprocess.run([source, "-s", "10", "-m", str(a.sessions), "-l", "4096",
                        f"127.0.0.1:{port}"], check=True, capture_output=True)
        deadline = time.time() + 30
        while time.time() < deadline:
            body = http_get(cport, "/api/stats")
            if f'"total":{a.sessions + 1}' in body or f'"total":{a.sessions}' in body:
                break
            time.sleep(0.1)
        print(f"\n# {' '.join(argv)}; {a.sessions} sessions recorded, an event stream attached")
        print("\n| request | median ms | max ms | bytes |")
        print("|---|---|---|---|")
        worst = 0.0
        newest = json.loads(http_get(cport, "/api/sessions?limit=1"))["sessions"][0]["id"]
        for path in ("/api/sessions", "/api/sessions?limit=200", "/api/stats", "/",
                     f"/api/sessions/{newest}"):
            times, size = [], 0
            for _ in range(20):
                ms, size = timed_get(cport, path)
                times.append(ms)
            worst = max(worst, max(times))
            print(f"| GET {path} | {statistics.median(times):.1f} | {max(times):.1f} | {size} |")
        print(f"target: every answer under 100 ms: {'PASS' if worst < 100 else 'MISS'} "
              f"(worst {worst:.1f} ms)")
        stream.close()
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
