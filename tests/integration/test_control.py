"""The control API (issue 13): every route against the real binary, with real clients.

smtptap runs with --control on a free loopback port (the bound address is read from its
"control API and web page on http://..." line); requests go through urllib and, for bad
input, raw sockets.  SMTP traffic comes from swaks and smtplib against the built-in sink
or aiosmtpd.  What is asserted is what a test suite or a browser would see: status codes,
JSON shapes, the events of a session equal to its jsonl capture, the SSE stream in order,
faults flipped with no restart, token enforcement off loopback (in a network namespace),
and hostile HTTP answered without harm to SMTP sessions.
"""

import http.client
import json
import os
import re
import secrets
import signal
import smtplib
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import harness

CONTROL_RE = re.compile(r"control API and web page on http://([^/\s]+)/")


def control_url(t) -> str:
    m = t.wait_for(CONTROL_RE)
    return "http://" + m.group(1)


def request(url, method="GET", body=None, headers=None, timeout=10):
    """(status, headers, body bytes) of one request; HTTP errors are answers too."""
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def get_json(url, **kw):
    status, headers, body = request(url, **kw)
    assert headers.get("Content-Type", "").startswith("application/json"), (status, headers, body)
    return status, json.loads(body)


def start(tap, *args, **kw):
    t = tap(["--control", "127.0.0.1:0", *args], **kw)
    return t, control_url(t)


def swaks_ok(t, *args):
    rc, out, err = harness.swaks(t.hostport, "--from", "alice@example.org", "--to",
                                 "bob@example.net", *args)
    return rc, out, err


SUMMARY_KEYS = {"id", "state", "started", "ended", "duration_s", "client", "listener",
                "upstream", "helo", "tls", "auth", "counts", "codes", "latency_ms", "bytes",
                "last_reply", "verdict", "captures", "events_dropped"}


# ---- health, stats, sessions --------------------------------------------------------------


def test_health_and_stats_answer_with_their_schema(tap, need):
    need("swaks")
    t, base = start(tap, "-q")
    status, h = get_json(base + "/api/health")
    assert status == 200 and h["status"] == "ok" and h["version"] and h["uptime_s"] >= 0
    rc, out, err = swaks_ok(t)
    assert rc == 0, out + err
    deadline = time.time() + 5
    while True:
        status, s = get_json(base + "/api/stats")
        if s["messages"] == 1 and s["sessions"]["live"] == 0 or time.time() > deadline:
            break
        time.sleep(0.05)
    assert status == 200
    assert s["sessions"] == {"total": 1, "live": 0, "recent": 1, "recent_max": 100}, s
    assert s["messages"] == 1 and s["commands"] >= 5, s
    assert s["bytes"]["up"] > 100 and s["bytes"]["down"] > 100, s
    assert s["faults_fired"] == 0 and s["sse"] == {"clients": 0, "dropped": 0}, s


def wait_ended(base, n, timeout=10):
    deadline = time.time() + timeout
    while True:
        status, j = get_json(base + "/api/sessions")
        ended = [s for s in j["sessions"] if s["state"] == "ended"]
        if len(ended) >= n:
            return j["sessions"]
        assert time.time() < deadline, f"not {n} ended sessions: {j}"
        time.sleep(0.05)


def test_a_session_is_listed_with_its_facts_and_its_events_equal_the_jsonl_capture(
        tap, need, tmp_path):
    need("swaks")
    cap = tmp_path / "cap"
    t, base = start(tap, "-q", "-d", str(cap), "--format", "text,jsonl,pcap,eml",
                    "--decode-auth")
    rc, out, err = swaks_ok(t, "--auth", "PLAIN", "--auth-user", "alice", "--auth-password",
                            "s3cret", "--header", "Subject: control test")
    assert rc == 0, out + err
    sessions = wait_ended(base, 1)
    assert len(sessions) == 1
    s = sessions[0]
    assert set(s) == SUMMARY_KEYS, set(s) ^ SUMMARY_KEYS
    assert s["id"] == 1 and s["state"] == "ended" and s["ended"] and s["duration_s"] > 0
    assert s["client"].startswith("127.0.0.1:") and s["listener"] == t.hostport
    assert s["upstream"] is None  # the built-in sink
    # with --decode-auth the summary names the user and how it went
    assert s["helo"] and s["auth"] == {"mech": "PLAIN", "user": "alice", "outcome": "accepted",
                                       "code": 235}, s["auth"]
    assert s["counts"]["messages"] == 1 and s["counts"]["commands"] >= 6
    assert s["codes"]["2xx"] >= 5 and s["codes"]["3xx"] == 1 and s["codes"]["5xx"] == 0
    assert s["last_reply"].startswith("221")
    assert s["latency_ms"]["max"] >= s["latency_ms"]["last"] > 0
    assert s["captures"] == ["txt", "jsonl", "pcap", "eml"], s["captures"]

    status, one = get_json(base + "/api/sessions/1")
    assert status == 200 and one["session"]["id"] == 1
    files = list(cap.glob("*-1-*.jsonl"))
    assert len(files) == 1, list(cap.iterdir())
    recorded = [json.loads(line) for line in files[0].read_text().splitlines()]
    assert one["events"] == recorded  # the same events, as the jsonl capture has them
    kinds = [e["kind"] for e in one["events"]]
    assert kinds[0] == "start" and kinds[-1] == "end" and "auth" in kinds and "message" in kinds
    auth = [e["text"] for e in one["events"] if e["kind"] == "auth"]
    assert any("alice" in a for a in auth), auth


def test_captures_download_as_the_files_smtptap_wrote(tap, need, tmp_path):
    need("swaks")
    cap = tmp_path / "cap"
    t, base = start(tap, "-q", "-d", str(cap), "--format", "text,jsonl,pcap,eml")
    rc, out, err = swaks_ok(t)
    assert rc == 0, out + err
    wait_ended(base, 1)
    t_file = {ext: next(cap.glob(f"*-1-*.{ext}")) for ext in ("txt", "jsonl", "pcap")}
    for ext, path in t_file.items():
        status, headers, body = request(f"{base}/api/sessions/1/capture.{ext}")
        assert status == 200, (ext, body)
        assert body == path.read_bytes(), ext
        assert f'filename="session-1.{ext}"' in headers["Content-Disposition"]
    status, headers, body = request(f"{base}/api/sessions/1/capture.eml")
    assert status == 200 and headers["Content-Type"] == "message/rfc822"
    assert body == next(cap.glob("*-1-*-1.eml")).read_bytes()
    status, headers, body = request(f"{base}/api/sessions/1/capture.eml?message=2")
    assert status == 404 and b"no eml capture of that message" in body
    status, headers, body = request(f"{base}/api/sessions/9/capture.txt")
    assert status == 404 and b"no session #9" in body


def test_without_capture_files_txt_and_jsonl_come_from_memory(tap, need):
    need("swaks")
    t, base = start(tap)
    rc, out, err = swaks_ok(t)
    assert rc == 0, out + err
    t.wait_session_end()
    sessions = wait_ended(base, 1)
    assert sessions[0]["captures"] == ["txt", "jsonl"]
    status, headers, body = request(f"{base}/api/sessions/1/capture.txt")
    assert status == 200
    live = [l for l in t.transcript().splitlines() if l.startswith("#1 ")]
    served = body.decode().splitlines()
    # the same dialog lines as the live transcript (which shows the first 40 message lines)
    assert [l.split(" ", 2)[2] for l in served if " -> " in l or " <- " in l] == \
        [l.split(" ", 2)[2] for l in live if " -> " in l or " <- " in l]
    status, headers, body = request(f"{base}/api/sessions/1/capture.jsonl")
    lines = [json.loads(l) for l in body.decode().splitlines()]
    assert lines[0]["kind"] == "start" and lines[-1]["kind"] == "end"
    status, headers, body = request(f"{base}/api/sessions/1/capture.pcap")
    assert status == 404 and b"-d DIR --format pcap" in body


def test_the_recent_ring_is_bounded(tap, need):
    need("swaks")
    t, base = start(tap, "-q", "--control-recent", "2")
    for _ in range(4):
        rc, out, err = swaks_ok(t)
        assert rc == 0, out + err
    deadline = time.time() + 5
    while get_json(base + "/api/stats")[1]["sessions"]["total"] < 4 and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    status, j = get_json(base + "/api/sessions")
    assert [s["id"] for s in j["sessions"]] == [4, 3]
    status, j = get_json(base + "/api/sessions/1")
    assert status == 404 and "--control-recent" in j["error"]
    status, j = get_json(base + "/api/sessions?limit=1")
    assert [s["id"] for s in j["sessions"]] == [4]
    status, j = get_json(base + "/api/sessions?limit=0")
    assert status == 400 and "limit" in j["error"]


# ---- the event stream ---------------------------------------------------------------------


class SseReader:
    """A GET /api/events stream read on a thread: (event name, id, data) tuples."""

    def __init__(self, base, query="", headers=None):
        host = base[len("http://"):]
        self.conn = http.client.HTTPConnection(host, timeout=30)
        self.conn.request("GET", "/api/events" + query, headers=headers or {})
        self.resp = self.conn.getresponse()
        self.events = []
        self.cond = threading.Condition()
        self.closed = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        name, ident, data = "message", None, []
        try:
            while True:
                raw = self.resp.readline()  # chunked transfer decoded
                if not raw:
                    break
                line = raw.decode().rstrip("\n")
                if line == "":
                    if data:
                        with self.cond:
                            self.events.append((name, ident, "\n".join(data)))
                            self.cond.notify_all()
                    name, ident, data = "message", None, []
                elif line.startswith(":"):
                    continue
                elif line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("id: "):
                    ident = int(line[4:])
                elif line.startswith("data: "):
                    data.append(line[6:])
        except (OSError, ValueError):
            pass
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def wait(self, pred, timeout=10):
        with self.cond:
            ok = self.cond.wait_for(lambda: pred(self.events) or self.closed, timeout)
            assert ok and pred(self.events), f"the stream did not deliver: {self.events}"
            return list(self.events)

    def close(self):
        # shut the socket first: close() alone waits for the reading thread's lock
        try:
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()


def ended(session):
    return lambda evs: any(n == "message" and json.loads(d)["kind"] == "end"
                           and json.loads(d)["session"] == session for n, _, d in evs)


def test_sse_delivers_a_swaks_sessions_events_in_order(tap, need):
    need("swaks")
    t, base = start(tap, "-q")
    sse = SseReader(base, "?content=1")
    plain = SseReader(base)  # without message lines
    assert sse.resp.status == 200
    assert sse.resp.getheader("Content-Type").startswith("text/event-stream")
    try:
        rc, out, err = swaks_ok(t)
        assert rc == 0, out + err
        evs = sse.wait(ended(1))
        plain_evs = plain.wait(ended(1))
    finally:
        sse.close()
        plain.close()
    data = [json.loads(d) for n, _, d in evs if n == "message"]
    without = [json.loads(d) for n, _, d in plain_evs if n == "message"]
    assert without == [e for e in data if e["kind"] != "content"]
    assert len(without) < len(data)
    ids = [i for n, i, _ in evs if n == "message"]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    status, one = get_json(base + "/api/sessions/1")
    assert data == one["events"]  # everything, in order, as stored
    commands = [e["line"].split()[0] for e in data if e["kind"] == "command"]
    assert commands[:1] == ["EHLO"] and "MAIL" in commands and commands[-1] == "QUIT"
    sessions = [json.loads(d) for n, _, d in evs if n == "session"]
    assert [s["state"] for s in sessions] == ["live", "ended"] and sessions[1]["id"] == 1


def test_sse_session_filter_gives_only_those_sessions(tap, need):
    need("swaks")
    t, base = start(tap, "-q")
    sse = SseReader(base, "?session=2")
    try:
        for _ in range(3):
            assert swaks_ok(t)[0] == 0
        evs = sse.wait(ended(2))
        time.sleep(0.3)  # session 3 would show up by now
        evs = list(sse.events)
    finally:
        sse.close()
    assert {json.loads(d)["session"] for n, _, d in evs if n == "message"} == {2}
    status, _, body = request(base + "/api/events?session=x")
    assert status == 400 and b"session=3" in body


# ---- faults --------------------------------------------------------------------------------


def test_a_test_suite_flips_a_fault_between_commands_of_one_session(tap):
    t, base = start(tap)
    pid = t.proc.pid
    with smtplib.SMTP(t.host, t.port, timeout=10) as c:
        c.ehlo("suite.example")
        assert c.mail("a@example.org")[0] == 250
        status, j = get_json(base + "/api/faults", method="POST",
                             body=json.dumps({"rule": "RCPT *@x.example: reply 451 4.7.1 Try later"}),
                             headers={"Content-Type": "application/json"})
        assert status == 201, j
        name = j["rule"]["name"]
        assert j["rule"]["origin"] == "api" and j["rule"]["stage"] == "RCPT"
        code, msg = c.rcpt("bob@x.example")
        assert (code, msg) == (451, b"4.7.1 Try later")
        status, j = get_json(f"{base}/api/faults/{name}", method="DELETE")
        assert status == 200 and j["removed"]["name"] == name
        assert c.rcpt("bob@x.example")[0] == 250
        code, _ = c.data(b"Subject: flipped\r\n\r\nhello\r\n")
        assert code == 250
    assert t.proc.pid == pid and t.running()
    t.wait_session_end()
    text = t.transcript()
    assert re.search(rf'^#1 \+\S+ !! fault rule "{name}" added through the control API: '
                     r"RCPT \*@x\.example: reply 451 4\.7\.1 Try later$", text, re.M), text
    assert re.search(rf'^#1 \+\S+ !! fault rule "{name}" removed through the control API', text,
                     re.M), text
    status, j = get_json(base + "/api/stats")
    assert j["faults_fired"] == 1 and j["messages"] == 1


@pytest.mark.parametrize("rule", [
    "RCTP x: drop",
    "RCPT *@x: reply 45 nope",
    "GREETING x: drop",
    "EHLO: strip",
    "MAIL: delay forever",
])
def test_a_bad_rule_gets_400_with_the_command_lines_words(tap, rule):
    t, base = start(tap, "-q")
    status, j = get_json(base + "/api/faults", method="POST", body=rule)
    assert status == 400
    rc, out, err = harness.run([harness.smtptap_bin(), "--fault", rule], timeout=10)
    m = re.search(r'--fault #1 "(?:[^"]*)": (.*)', err)
    assert rc == harness.EX_USAGE and m, err
    assert j["error"] == f'rule "{rule}": {m.group(1).strip()}'
    status, j2 = get_json(base + "/api/faults", method="POST", body=json.dumps({"rule": rule}))
    assert status == 400 and j2["error"] == j["error"]
    status, j = get_json(base + "/api/faults")
    assert j["rules"] == []


def test_rules_are_listed_with_their_origin_and_the_api_removes_only_its_own(tap, tmp_path):
    ini = tmp_path / "smtptap.ini"
    ini.write_text("[fault slow-data]\non = DATA-END\naction = delay 10ms\n")
    t, base = start(tap, "-q", "-c", str(ini), "--fault", "NOOP: reply 250 2.0.0 fine")
    status, j = get_json(base + "/api/faults", method="POST",
                         body=json.dumps({"name": "busy", "on": "MAIL", "match": "*@busy.example",
                                          "nth": 2, "action": "reply 450 4.2.0 Busy"}))
    assert status == 201, j
    assert j["rule"]["nth"] == 2 and j["rule"]["rule"] == "MAIL *@busy.example: reply 450 4.2.0 Busy"
    status, j = get_json(base + "/api/faults")
    assert [(r["name"], r["origin"]) for r in j["rules"]] == \
        [("busy", "api"), ("flag 1", "flag"), ("slow-data", "config")]
    assert j["rules"][2]["rule"] == "DATA-END: delay 10ms"
    status, j = get_json(base + "/api/faults", method="POST", body=json.dumps(
        {"name": "busy", "rule": "RCPT: drop"}))
    assert status == 409 and "exists already" in j["error"]
    status, j = get_json(base + "/api/faults/slow-data", method="DELETE")
    assert status == 409 and "SIGHUP" in j["error"]
    status, j = get_json(base + "/api/faults/flag%201", method="GET")
    assert status == 200 and j["rule"]["origin"] == "flag"
    status, j = get_json(base + "/api/faults/nope", method="DELETE")
    assert status == 404
    status, j = get_json(base + "/api/faults", method="POST",
                         body=json.dumps({"on": "RCPT", "action": "drop", "colour": "red"}))
    assert status == 400 and 'unknown key "colour"' in j["error"]
    status, j = get_json(base + "/api/faults", method="POST",
                         body=json.dumps({"on": "RCPT", "action": "explode"}))
    assert status == 400 and "explode" in j["error"]
    # SIGHUP reloads the file's rules; the API's stay
    ini.write_text("[fault other]\non = RSET\naction = drop\n")
    t.proc.send_signal(signal.SIGHUP)
    t.wait_for(r"SIGHUP: 2 fault rules now in force .*and 1 from the control API")
    status, j = get_json(base + "/api/faults")
    assert [r["name"] for r in j["rules"]] == ["busy", "flag 1", "other"]
    status, headers, body = request(base + "/api/faults", method="POST",
                                    body=json.dumps({"name": "my rule/ö", "rule": "NOOP: drop"}))
    assert status == 400 and b"/" in body  # a name cannot hold '/'
    status, headers, body = request(base + "/api/faults", method="POST",
                                    body=json.dumps({"name": "my rule ö", "rule": "NOOP: drop"}))
    assert status == 201 and headers["Location"] == "/api/faults/my%20rule%20%C3%B6"
    assert get_json(base + headers["Location"])[1]["rule"]["name"] == "my rule ö"
    assert get_json(base + headers["Location"], method="DELETE")[0] == 200
    status, j = get_json(base + "/api/faults/reset", method="POST")
    assert status == 200 and j["removed"] == 1
    status, j = get_json(base + "/api/faults")
    assert [r["origin"] for r in j["rules"]] == ["flag", "config"]


def test_methods_and_routes_that_do_not_exist(tap):
    t, base = start(tap, "-q")
    status, headers, body = request(base + "/api/sessions", method="DELETE")
    assert status == 405 and headers["Allow"] == "GET"
    status, headers, body = request(base + "/api/faults/reset", method="GET")
    assert status == 405 and headers["Allow"] == "POST"
    status, headers, body = request(base + "/api/nothing")
    assert status == 404 and json.loads(body)["error"]
    status, headers, body = request(base + "/api/sessions/0")
    assert status == 404


# ---- who may ask ---------------------------------------------------------------------------


def check_token(base, token):
    status, headers, body = request(base + "/api/health")
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    assert json.loads(body) == {"error": "a token is needed: Authorization: Bearer TOKEN"}
    status, _, body = request(base + "/api/sessions", headers={"Authorization": "Bearer nope"})
    assert status == 401 and b"sessions" not in body
    status, _, body = request(base + "/", headers={"Authorization": "Bearer " + token[:-1]})
    assert status == 401 and b"<html" not in body.lower()
    status, _, _ = request(base + "/api/faults", method="POST", body="RCPT: drop")
    assert status == 401
    status, _, body = request(base + "/api/health", headers={"Authorization": "Bearer " + token})
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, _, body = request(base + "/api/health?access_token=" + token)
    assert status == 200
    # the page opened with ?access_token= gets a cookie its script, style and stream send
    status, headers, body = request(base + "/?access_token=" + token)
    assert status == 200 and b"<html" in body.lower()
    cookie = headers["Set-Cookie"]
    assert cookie.startswith(f"smtptap_token={token};") and "HttpOnly" in cookie \
        and "SameSite=Strict" in cookie
    for path in ("/app.js", "/api/sessions"):
        assert request(base + path, headers={"Cookie": f"a=b; smtptap_token={token}"})[0] == 200
        assert request(base + path, headers={"Cookie": "smtptap_token=nope"})[0] == 401


def test_a_token_is_checked_on_every_request(tap, tmp_path):
    token = secrets.token_urlsafe(24)
    t = tap(["-q", "--control", "127.0.0.2:0", "--control-token", token])
    base = control_url(t)
    assert base.startswith("http://127.0.0.2:")
    assert "(a token is required)" in t.transcript()
    assert token not in t.transcript()  # the command line in the header hides it
    check_token(base, token)
    f = tmp_path / "token"
    f.write_text(token + "\n")
    t2 = tap(["-q", "--control", "127.0.0.1:0", "--control-token-file", str(f)])
    check_token(control_url(t2), token)


def test_listening_beyond_loopback_needs_a_token(tap):
    rc, out, err = harness.run([harness.smtptap_bin(), "--control", "0.0.0.0:8025"])
    assert rc == harness.EX_USAGE
    assert "--control 0.0.0.0:8025: not a loopback address" in err and "--control-token" in err
    rc, out, err = harness.run([harness.smtptap_bin(), "--control", "127.0.0.1:1",
                                "--control-token", "has space"])
    assert rc == harness.EX_USAGE and "has space" not in err and "--control-token" in err


def test_token_enforced_on_an_address_that_is_not_loopback(tap, need):
    """In a network namespace of its own: smtptap's control API on 192.0.2.1 (not
    loopback) with a token, asked by curl inside the namespace."""
    need("ip", "curl")
    name = f"smtptap-c{os.getpid()}-{secrets.token_hex(3)}"
    r = subprocess.run([harness.tool_path("ip"), "netns", "add", name], capture_output=True,
                       text=True)
    if r.returncode != 0:
        pytest.skip(f"`ip netns add` is not permitted here: {r.stderr.strip()}")
    ip = harness.tool_path("ip")
    try:
        subprocess.run([ip, "-n", name, "link", "set", "lo", "up"], check=True)
        subprocess.run([ip, "-n", name, "addr", "add", "192.0.2.1/32", "dev", "lo"], check=True)
        wrapper = Path(f"/tmp/{name}-smtptap")
        wrapper.write_text(f"#!/bin/sh\nexec {ip} netns exec {name} {harness.smtptap_bin()} \"$@\"\n")
        wrapper.chmod(0o755)
        rc, out, err = harness.run([ip, "netns", "exec", name, harness.smtptap_bin(),
                                    "--control", "192.0.2.1:8025"])
        assert rc == harness.EX_USAGE and "not a loopback address" in err
        token = secrets.token_hex(16)
        t = tap(["-q", "--control", "192.0.2.1:8025", "--control-token", token],
                binary=str(wrapper), listen="192.0.2.1:2525")
        curl = [ip, "netns", "exec", name, harness.tool_path("curl"), "-s", "-o", "/dev/null",
                "-w", "%{http_code}"]
        url = "http://192.0.2.1:8025/api/stats"
        assert harness.run(curl + [url])[1] == "401"
        assert harness.run(curl + ["-H", "Authorization: Bearer wrong", url])[1] == "401"
        assert harness.run(curl + ["-H", f"Authorization: Bearer {token}", url])[1] == "200"
        t.stop()
    finally:
        subprocess.run([ip, "netns", "del", name], capture_output=True)
        Path(f"/tmp/{name}-smtptap").unlink(missing_ok=True)


def test_pages_of_other_sites_cannot_drive_the_api(tap):
    t, base = start(tap, "-q")
    status, _, body = request(base + "/api/faults", method="POST", body="RCPT: drop",
                              headers={"Origin": "http://evil.example"})
    assert status == 403 and b"another origin" in body
    host = base[len("http://"):]
    status, _, body = request(base + "/api/sessions", headers={"Host": "rebound.evil.example"})
    assert status == 403 and b"DNS rebinding" in body
    status, _, body = request(base + "/api/faults", method="POST", body="RCPT: drop",
                              headers={"Origin": "http://" + host})
    assert status == 201
    status, j = get_json(base + "/api/faults")
    assert len(j["rules"]) == 1


# ---- hostile HTTP ----------------------------------------------------------------------------


def raw(base, data, timeout=5):
    host, port = base[len("http://"):].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        out = b""
        try:  # smtptap may answer and close before it has read everything
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        try:
            while chunk := s.recv(65536):
                out += chunk
        except (ConnectionResetError, socket.timeout):
            pass
        return out


def test_hostile_http_is_answered_or_refused_and_smtp_goes_on(tap, need):
    need("swaks")
    t, base = start(tap, "-q")
    assert raw(base, b"\x16\x03\x01\x02\x00garbage\r\n\r\n") [:12] in (b"", b"HTTP/1.1 400")
    # h2o takes a request of up to some 64 KiB of headers and refuses a larger one
    assert raw(base, b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 60000 +
               b"\r\n\r\n").startswith(b"HTTP/1.1 200")
    out = raw(base, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 2000000 + b"\r\n\r\n")
    assert out[:12] in (b"", b"HTTP/1.1 400"), out[:100]
    out = raw(base, b"GET /../../../etc/passwd HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 404") and b"root:" not in out
    out = raw(base, b"GET /api/../api/../../etc/passwd HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert b"root:" not in out
    out = raw(base, b"POST /api/faults HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2000000\r\n"
                    b"\r\n" + b"x" * 2000000)
    assert out.startswith(b"HTTP/1.1 413") or out == b"", out[:100]
    out = raw(base, b"POST /api/faults HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\n{\"a\":")
    assert out.startswith(b"HTTP/1.1 400")
    out = raw(base, b"GET /api/health HTTP/1.0\r\n\r\n")  # no Host: not a browser
    assert b" 200 " in out[:16] and b'"status":"ok"' in out, out[:200]
    assert swaks_ok(t)[0] == 0
    assert get_json(base + "/api/health")[0] == 200


def test_ten_thousand_event_streams_attempted(tap, need):
    """10,000 event streams asked for, 500 at a time: at most 64 are served at once, the
    others get 503 (or a closed connection past the connection limit); an SMTP session
    goes through meanwhile and smtptap stays up."""
    need("swaks")
    t, base = start(tap, "-q")
    host, port = base[len("http://"):].rsplit(":", 1)
    served_max, refused, attempts = 0, 0, 0
    smtp_done = []
    for wave in range(20):
        socks = []
        for _ in range(500):
            s = socket.create_connection((host, int(port)), timeout=10)
            s.sendall(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            socks.append(s)
            attempts += 1
        if wave == 10:
            smtp_done.append(swaks_ok(t)[0])
        served = 0
        for s in socks:
            try:
                head = s.recv(12)
            except (ConnectionResetError, socket.timeout):
                head = b""
            if head == b"HTTP/1.1 200":
                served += 1
            else:
                refused += 1
        served_max = max(served_max, served)
        for s in socks:
            s.close()
        deadline = time.time() + 5  # streams of gone clients are closed within a second
        while get_json(base + "/api/stats")[1]["sse"]["clients"]:
            assert time.time() < deadline, "streams of closed clients were kept"
            time.sleep(0.05)
    assert attempts == 10000
    assert 0 < served_max <= 64 and refused >= 10000 - 20 * 64
    assert smtp_done == [0]
    status, j = get_json(base + "/api/stats")
    assert status == 200 and j["sse"]["clients"] == 0


def test_a_slow_event_stream_is_dropped_not_buffered(tap, need):
    """A client that opens the stream and never reads: once it is 1 MiB behind smtptap
    closes it (sse.dropped), and the SMTP sessions are unaffected."""
    need("swaks")
    t, base = start(tap, "-q")
    host, port = base[len("http://"):].rsplit(":", 1)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect((host, int(port)))
    s.sendall(b"GET /api/events?content=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    body = b"Subject: big\r\n\r\n" + (b"x" * 900 + b"\r\n") * 30  # 30 content lines each
    msg = Path(t.cwd or "/tmp") / f"big-{secrets.token_hex(3)}.eml"
    msg.write_bytes(body)
    try:
        deadline = time.time() + 60
        while get_json(base + "/api/stats")[1]["sse"]["dropped"] == 0:
            assert time.time() < deadline, "the stalled stream was never dropped"
            rc, out, err = harness.swaks(t.hostport, "--from", "a@example.org", "--to",
                                         "b@example.net", "--data", "@" + str(msg))
            assert rc == 0, out + err
    finally:
        msg.unlink()
        s.close()
    status, j = get_json(base + "/api/stats")
    assert j["sse"] == {"clients": 0, "dropped": 1}


def test_sigterm_with_a_stream_and_a_keep_alive_connection_open(tap):
    t, base = start(tap, "-q")
    sse = SseReader(base)
    host = base[len("http://"):]
    idle = http.client.HTTPConnection(host, timeout=5)
    idle.request("GET", "/api/health")
    assert idle.getresponse().read()
    t0 = time.time()
    t.stop()  # SIGTERM, exit 0 asserted
    assert time.time() - t0 < 5
    sse.thread.join(5)
    assert sse.closed
    idle.close()


def test_redact_leaves_no_secret_in_any_answer(tap, need, tmp_path):
    """--redact: the password, and each base64 form a client sends it in, appear in no
    answer of the API: summaries, events, the event stream, the captures."""
    need("swaks")
    import base64
    password = "Pw-" + secrets.token_hex(6)
    forms = {password, base64.b64encode(f"\0alice\0{password}".encode()).decode(),
             base64.b64encode(password.encode()).decode()}
    cap = tmp_path / "cap"
    t, base = start(tap, "-q", "--redact", "--decode-auth", "-d", str(cap), "--format",
                    "text,jsonl,pcap,eml")
    sse = SseReader(base, "?content=1")
    try:
        for mech in ("PLAIN", "LOGIN"):
            rc, out, err = swaks_ok(t, "--auth", mech, "--auth-user", "alice", "--auth-password",
                                    password)
            assert rc == 0, out + err
        sse.wait(ended(2))
    finally:
        sse.close()
    answers = [request(base + p)[2] for p in (
        "/api/sessions", "/api/sessions/1", "/api/sessions/2", "/api/stats",
        "/api/sessions/1/capture.txt", "/api/sessions/1/capture.jsonl",
        "/api/sessions/2/capture.pcap", "/api/sessions/2/capture.eml")]
    answers.append("".join(d for _, _, d in sse.events).encode())
    assert any(b"AUTH" in a for a in answers)
    assert any(b'"password":"<redacted>"' in a for a in answers)  # the decoded, masked
    for a in answers:
        for f in forms:
            assert f.encode() not in a, f"{f} in an answer: {a[:300]}"


def test_a_stream_resumes_after_its_last_event_id(tap, need):
    """EventSource reconnects with Last-Event-ID: the events after it that the stream wants
    come again, with the same ids and data, in order, then the live ones; ids number every
    event, so they agree between streams. Events no longer kept (the session left the
    recent ring) are announced by an "event: gap" first."""
    need("swaks")
    t, base = start(tap, "-q", "--control-recent", "1")
    first = SseReader(base)
    try:
        for _ in range(2):
            rc, out, err = swaks_ok(t)
            assert rc == 0, out + err
        got = first.wait(ended(2))
    finally:
        first.close()
    events = [(i, d) for n, i, d in got if n == "message"]
    ids = [i for i, _ in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids), ids
    # resume from the middle of session 2: exactly the rest, as the first stream had it
    s2 = [(i, d) for i, d in events if json.loads(d)["session"] == 2]
    cut = s2[len(s2) // 2][0]
    resumed = SseReader(base, headers={"Last-Event-ID": str(cut)})
    try:
        again = resumed.wait(ended(2))
        assert [(i, d) for n, i, d in again if n == "message"] == \
            [(i, d) for i, d in events if i > cut]
        assert not [e for e in again if e[0] == "gap"]  # session 2 is still kept whole
        rc, out, err = swaks_ok(t)  # and then the live ones
        assert rc == 0, out + err
        live = resumed.wait(ended(3))
        later = [i for n, i, _ in live if n == "message" and i > ids[-1]]
        assert later and later == sorted(later), live[-5:]
    finally:
        resumed.close()
    # ended sessions left the ring (--control-recent 1): resuming before them says so first
    old = SseReader(base, "?session=3", headers={"Last-Event-ID": "0"})
    try:
        evs = old.wait(ended(3))
        assert evs[0][0] == "gap", evs[:2]
        gap = json.loads(evs[0][2])
        # sessions 1 and 2 have left the ring of one: the last event lost is 2's end
        assert gap == {"after": 0, "lost_up_to": s2[-1][0]}, (gap, s2[-1])
        sessions = {json.loads(d)["session"] for n, _, d in evs if n == "message"}
        assert sessions == {3}, sessions
    finally:
        old.close()
    # a Last-Event-ID that is not a number is a fresh stream (nothing replayed)
    fresh = SseReader(base, headers={"Last-Event-ID": "abc"})
    try:
        time.sleep(0.3)
        assert [e for e in fresh.events if e[0] == "message"] == []
    finally:
        fresh.close()


def test_a_long_resume_comes_in_parts(tap):
    """More stored events than one resume sends (512 KiB): the stream ends after a part, and
    resuming from its last id gives the rest; together they are what a live stream got."""
    t, base = start(tap, "-v")  # -v: every message line is an event, and kept
    # 2,000 lines a message: each session's events stay within what is kept of one (512 KiB)
    body = "".join(f"line {n:05d} " + "x" * 70 + "\r\n" for n in range(2000))
    live = SseReader(base, "?content=1")
    try:
        for k in range(3):
            with smtplib.SMTP(t.host, t.port, timeout=30) as c:
                c.sendmail("a@example.org", ["b@example.net"], f"Subject: {k}\r\n\r\n" + body)
        expected = [(i, d) for n, i, d in live.wait(ended(3), timeout=30) if n == "message"]
    finally:
        live.close()
    assert sum(len(d) for _, d in expected) > 1_000_000  # more than one part
    got, last, parts = [], 0, 0
    while not ended(3)([("message", i, d) for i, d in got]) and parts < 6:
        parts += 1
        part = SseReader(base, "?content=1", headers={"Last-Event-ID": str(last)})
        try:  # a part that stops short ends its stream; the last one stays open
            evs = part.wait(lambda e: ended(3)(e), timeout=10)
        except AssertionError:
            evs = list(part.events)
            assert part.closed, "a part neither ended the stream nor reached the end"
        finally:
            part.close()
        assert not [e for e in evs if e[0] == "gap"], evs[:1]  # every event is still kept
        msgs = [(i, d) for n, i, d in evs if n == "message"]
        assert msgs, "a resume sent nothing"
        got += msgs
        last = msgs[-1][0]
    assert parts >= 2 and got == expected, (parts, len(got), len(expected))


def test_the_pages_stream_of_summaries(tap):
    """?view=sessions: only "session" events, a summary when a session starts, about once a
    second while a live one changes, and when it ends."""
    t, base = start(tap, "-q")
    sse = SseReader(base, "?view=sessions")
    try:
        with smtplib.SMTP(t.host, t.port, timeout=10) as c:
            c.ehlo("long.example")
            sse.wait(lambda evs: len(evs) >= 1)
            time.sleep(1.5)  # a tick or two
            c.noop()
            c.mail("a@example.org")
            sse.wait(lambda evs: any(json.loads(d)["counts"]["commands"] >= 3
                                     for n, _, d in evs))
        evs = sse.wait(lambda evs: any(json.loads(d)["state"] == "ended" for _, _, d in evs))
    finally:
        sse.close()
    assert {n for n, _, _ in evs} == {"session"}
    states = [json.loads(d)["state"] for _, _, d in evs]
    assert states[0] == "live" and states[-1] == "ended" and states.count("ended") == 1
    live = [json.loads(d) for _, _, d in evs if json.loads(d)["state"] == "live"]
    assert live[-1]["helo"] == "long.example" and live[-1]["counts"]["commands"] >= 3
    status, _, body = request(base + "/api/events?view=everything")
    assert status == 400 and b"view: expected events" in body
