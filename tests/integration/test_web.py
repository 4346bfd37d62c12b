"""The live web page (issue 13) in headless Chromium, against the real binary.

smtptap runs with --control on a loopback port and the built-in sink; the page at / is the
one compiled into the binary (proxy/web/, web_assets.c). Selenium drives Debian's chromium
through chromedriver while real clients talk SMTP through smtptap:

  - a client still connected is listed as live, and as ended once it has gone;
  - swaks with STARTTLS and AUTH PLAIN: the session appears in the list as it happens, opens
    as a diagram with its commands, replies (and their latency), the TLS handshake, the
    decoded AUTH and the message's headers; the capture links download;
  - the fault panel: a rule typed in the page (RCPT *@fail.example: reply 451 ...) makes the
    next swaks to that domain fail with that reply, marked in its diagram as a fault; a bad
    rule shows the API's own 400 text; removing the rule makes swaks pass again;
  - hostile SMTP lines are shown as text, never as markup; lint is a '**' row;
  - the verdict filter (--client-cert expired: a client that refuses, one that accepts);
  - 1,000 sessions driven as fast as the sink takes them while the page is open: the list
    stays bounded, a click opens a session promptly, GET /api/sessions answers in < 100 ms;
  - with --control-token, the page opened with ?access_token= works as without one.

Screenshots go to $MESON_BUILD_ROOT/artifacts/ (else the directory of $SMTPTAP_BIN, which is
how meson test passes the build directory, else build/) as web-*.png.

Skipped, with the reason, only when chromium, chromedriver or python3-selenium is missing.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import harness

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

try:
    from selenium import webdriver
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
except ImportError:  # pragma: no cover - depends on the machine
    webdriver = None

if webdriver is None:
    pytest.skip("python3-selenium is not installed (Debian package needed for this test)",
                allow_module_level=True)
for _tool in (CHROMIUM, CHROMEDRIVER):
    if not os.access(_tool, os.X_OK):
        pytest.skip(f"{_tool} is not installed (Debian chromium / chromium-driver needed)",
                    allow_module_level=True)

FAIL_RULE = "RCPT *@fail.example: reply 451 4.7.1 Try later"
WAIT = 10.0 * harness.TIMEOUT_SCALE


# --------------------------------------------------------------------------- helpers


def artifacts_dir() -> Path:
    root = os.environ.get("MESON_BUILD_ROOT")
    if root:
        d = Path(root)
    elif os.environ.get("SMTPTAP_BIN"):
        d = Path(os.environ["SMTPTAP_BIN"]).resolve().parent
    else:
        d = harness.ROOT / "build"
    d = d / "artifacts"
    d.mkdir(parents=True, exist_ok=True)
    return d


def screenshot(drv, name: str, show: str = "") -> Path:
    """The page as PNG in the artifacts directory; show: CSS of an element scrolled into
    view first."""
    if show:
        for e in drv.find_elements(By.CSS_SELECTOR, show)[:1]:
            drv.execute_script("arguments[0].scrollIntoView({block: 'center'})", e)
    p = artifacts_dir() / f"web-{name}.png"
    assert drv.save_screenshot(str(p)), f"no screenshot written to {p}"
    assert p.stat().st_size > 1000
    return p


class Api:
    """The control API over urllib (what a test suite would use)."""

    def __init__(self, port: int, token: str = ""):
        self.base = f"http://127.0.0.1:{port}"
        self.token = token

    def call(self, method: str, path: str, body=None, timeout: float = 10.0):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if self.token:
            req.add_header("Authorization", "Bearer " + self.token)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw = r.read()
                status = r.status
        except urllib.error.HTTPError as e:
            raw, status = e.read(), e.code
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw

    def get(self, path: str):
        status, body = self.call("GET", path)
        assert status == 200, f"GET {path}: {status} {body!r}"
        return body

    def sessions(self):
        return self.get("/api/sessions")["sessions"]

    def wait_ended(self, pred, what: str, timeout: float = WAIT):
        """The first session summary for which pred(summary) holds once it has ended."""
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            seen = self.sessions()
            for s in seen:
                if s.get("state") == "ended" and pred(s):
                    return s
            time.sleep(0.05)
        raise AssertionError(f"no ended session {what} in GET /api/sessions: {seen!r}")


def wait_until(fn, what: str, timeout: float = WAIT, drv=None):
    """fn()'s first true value, retried until timeout (stale elements retried too)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            v = fn()
            if v:
                return v
        except StaleElementReferenceException as e:
            last = e
        time.sleep(0.05)
    extra = ""
    if drv is not None:
        extra = "\n--- browser log ---\n" + "\n".join(str(l) for l in browser_log(drv))
    raise AssertionError(f"timed out after {timeout}s waiting for {what} ({last}){extra}")


def browser_log(drv):
    try:
        return drv.get_log("browser")
    except Exception:  # noqa: BLE001 - not every driver keeps one
        return []


def texts(drv, css: str):
    return [e.text for e in drv.find_elements(By.CSS_SELECTOR, css)]


def open_session(drv, sid: int, timeout: float = WAIT) -> float:
    """Clicks the session's row; returns the seconds until its diagram was loaded."""
    css = f"#sessions .session[data-id='{sid}']"

    def click():
        rows = drv.find_elements(By.CSS_SELECTOR, css)
        if rows:
            rows[0].click()  # a stale row (the list moved meanwhile) is looked up again
            return True
        return False

    t0 = time.monotonic()
    wait_until(click, f"session #{sid} in the list", timeout, drv)
    wait_until(lambda: drv.find_element(By.ID, "detail").get_attribute("data-loaded") == str(sid),
               f"session #{sid}'s diagram", timeout, drv)
    return time.monotonic() - t0


def swaks_to(tap, rcpt: str, *extra: str):
    return harness.swaks(tap.hostport, "--from", "alice@example.org", "--to", rcpt,
                         "--h-Subject", "web page test", *extra)


def page_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def browser(tmp_path):
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1400,1000", "--no-first-run", "--disable-extensions",
              f"--user-data-dir={tmp_path / 'chromium'}"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    drv.set_page_load_timeout(30)
    try:
        yield drv
    finally:
        drv.quit()


@pytest.fixture
def web_tap(tap, tmp_path):
    """smtptap with the built-in sink, --control on a free loopback port, AUTH decoded and
    every capture format written; returns (tap, control port, Api)."""

    def start(*args: str):
        port = harness.free_port()
        cap = tmp_path / "cap"
        cap.mkdir(mode=0o700, exist_ok=True)
        t = tap(["--control", f"127.0.0.1:{port}", "--decode-auth", "-d", str(cap),
                 "--format", "text,jsonl,pcap,eml", *args])
        harness.wait_port(port, timeout=WAIT)
        api = Api(port, args[args.index("--control-token") + 1] if "--control-token" in args else "")
        assert api.get("/api/health")["status"] == "ok"
        return t, port, api

    return start


def load_page(drv, port: int):
    drv.get(page_url(port))
    wait_until(lambda: drv.find_element(By.ID, "conn").text == "live",
               "the page's event stream to connect", WAIT, drv)


# --------------------------------------------------------------------------- tests


def test_page_assets_are_served(web_tap):
    _, port, _ = web_tap()
    for path, ctype, needle in (("/", "text/html", b"app.js"), ("/index.html", "text/html", b"style.css"),
                                ("/app.js", "text/javascript", b"EventSource"),
                                ("/style.css", "text/css", b"#diagram")):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith(ctype), (path, r.headers["Content-Type"])
            assert needle in r.read()


def test_live_session_swaks_auth_and_fault_panel(web_tap, browser, need, tmp_path):
    need("swaks")
    t, port, api = web_tap()
    load_page(browser, port)
    assert browser.title == "smtptap"

    # A client that is still connected is listed as live, then as ended.
    with harness.RawSmtpClient("127.0.0.1", t.port) as c:
        assert c.code() == 220
        assert c.cmd(b"EHLO live.example")[-1].startswith(b"250 ")
        live = wait_until(lambda: [e for e in browser.find_elements(By.CSS_SELECTOR, "#sessions .session.live")
                                   if "live.example" in e.text],
                          "a live session row with its EHLO name", WAIT, browser)
        live_id = live[0].get_attribute("data-id")
        # opened while live, its diagram grows with its events, the message's lines too
        open_session(browser, int(live_id))
        assert c.cmd(b"MAIL FROM:<alice@example.org>")[-1].startswith(b"250")
        assert c.cmd(b"RCPT TO:<live@example.net>")[-1].startswith(b"250")
        assert c.cmd(b"DATA")[-1].startswith(b"354")
        c.send(harness.make_message("live view", to=["live@example.net"]) + b".\r\n")
        assert c.code() == 250
        wait_until(lambda: any(x.startswith("RCPT TO:<live@example.net>")
                               for x in texts(browser, "#diagram .cmd .label")),
                   "the live session's RCPT in its open diagram", WAIT, browser)
        wait_until(lambda: "Subject: live view" in " ".join(texts(browser, "#diagram .content")),
                   "the live session's message lines in its open diagram", WAIT, browser)
        screenshot(browser, "live-session", "#diagram .content")
        c.cmd(b"QUIT")
    wait_until(lambda: not browser.find_elements(
        By.CSS_SELECTOR, f"#sessions .session.live[data-id='{live_id}']"),
        "the session's row to show it ended", WAIT, browser)

    # swaks: STARTTLS, AUTH PLAIN against the built-in sink, one message.
    rc, out, err = swaks_to(t, "bob@example.net", "-tls", "--auth", "PLAIN", "--auth-user",
                            "alice", "--auth-password", "s3cret-pw")
    assert rc == 0, out + err
    s = api.wait_ended(lambda s: (s.get("auth") or {}).get("mech") == "PLAIN", "with AUTH PLAIN")
    sid = s["id"]
    # The API and the page's stream are two readers: the row may first show the session as
    # the stream last saw it (live, 0 commands); it must come to show the ended summary.
    wait_until(lambda: [e for e in browser.find_elements(By.CSS_SELECTOR, f"#sessions .session[data-id='{sid}']")
                        if "AUTH " in e.text and "TLS" in e.text and "live" not in e.text.split()],
               "swaks's ended session in the list with TLS and AUTH (from the event stream)", WAIT, browser)
    open_session(browser, sid)

    cmds = texts(browser, "#diagram .cmd .label")
    for want in ("EHLO ", "STARTTLS", "AUTH PLAIN ", "MAIL FROM:<alice@example.org>",
                 "RCPT TO:<bob@example.net>", "DATA", "QUIT"):
        assert any(x.startswith(want) for x in cmds), (want, cmds)
    replies = texts(browser, "#diagram .reply .label")
    for want in ("220 ", "235 2.7.0", "250 2.1.0", "250 2.1.5", "354 ", "250 2.0.0", "221 "):
        assert any(want in x for x in replies), (want, replies)
    auth = " ".join(texts(browser, "#diagram .auth .note"))
    assert 'authcid="alice"' in auth and 's3cret-pw' in auth, auth
    assert "accepted" in auth
    tls = " ".join(texts(browser, "#diagram .tls .note"))
    assert "TLSv1." in tls, tls
    lat = [x for x in texts(browser, "#diagram .reply .lat") if x]
    assert lat and all(x.endswith(" ms") for x in lat), lat
    content = " ".join(texts(browser, "#diagram .content"))
    assert "Subject: web page test" in content, content
    assert "bytes" in content and "sha256" in content, content  # the message summary
    head = browser.find_element(By.ID, "detail-head").text
    assert "TLSv1." in head and "PLAIN as alice: accepted (235)" in head, head
    # smtptap's own STARTTLS reply is drawn from smtptap's lifeline
    assert browser.find_elements(By.CSS_SELECTOR, "#diagram .reply.local .arrow.t2c")

    links = {a.get_attribute("data-format"): a.get_attribute("href")
             for a in browser.find_elements(By.CSS_SELECTOR, "#downloads a.download")}
    assert set(s["captures"]) <= set(links), (s["captures"], links)
    assert "txt" in links and "jsonl" in links, links
    with urllib.request.urlopen(links["txt"], timeout=10) as r:
        assert r.status == 200
        assert b"AUTH PLAIN" in r.read()
    with urllib.request.urlopen(links["jsonl"], timeout=10) as r:
        first = json.loads(r.readline())
        assert first["session"] == sid
    assert {"pcap", "eml"} <= set(links), links  # -d with every format
    with urllib.request.urlopen(links["eml"], timeout=10) as r:
        assert b"Subject: web page test" in r.read()
    with urllib.request.urlopen(links["pcap"], timeout=10) as r:
        assert r.read(4) in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1",
                             b"\xa1\xb2\x3c\x4d")  # a pcap file's magic number
    screenshot(browser, "swaks-auth-session", "#diagram .auth")

    # The fault panel: a bad rule shows the API's own text, nothing is added.
    inp = browser.find_element(By.ID, "fault-input")
    bad = "RCPT *@fail.example: frobnicate 451"
    status, body = api.call("POST", "/api/faults", {"rule": bad})
    assert status == 400 and body.get("error"), (status, body)
    inp.clear()
    inp.send_keys(bad)
    browser.find_element(By.ID, "fault-add").click()
    wait_until(lambda: browser.find_element(By.ID, "fault-error").text == body["error"],
               f"the API's 400 text {body['error']!r} in #fault-error", WAIT, browser)
    assert api.get("/api/faults")["rules"] == []

    # A good rule typed in the page is in force for the next session.
    inp.clear()
    inp.send_keys(FAIL_RULE)
    browser.find_element(By.ID, "fault-add").click()
    rule = wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, "#faults .rule"),
                      "the new rule in the fault panel", WAIT, browser)[0]
    name = rule.get_attribute("data-name")
    assert FAIL_RULE in rule.text, rule.text
    assert browser.find_element(By.ID, "fault-error").text == ""
    (listed,) = api.get("/api/faults")["rules"]
    assert listed["name"] == name and listed["origin"] == "api" and listed["rule"] == FAIL_RULE

    rc, out, err = swaks_to(t, "carol@fail.example")
    assert rc != 0, out + err
    assert "451 4.7.1 Try later" in out, out
    f = api.wait_ended(lambda s: (s.get("counts") or {}).get("faults", 0) >= 1, "with a fault")
    open_session(browser, f["id"])
    faults = texts(browser, "#diagram .fault .note")
    assert faults and all(x.startswith("!!") for x in faults), faults
    failed = [x for x in texts(browser, "#diagram .reply.err .label") if "451 4.7.1 Try later" in x]
    assert failed, texts(browser, "#diagram .reply")
    wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, f"#sessions .session.has-errors[data-id='{f['id']}']"),
               "the fault's session marked as having errors in the list", WAIT, browser)
    wait_until(lambda: "fired 1" in browser.find_element(
        By.CSS_SELECTOR, f"#faults .rule[data-name='{name}']").text,
        "the rule's fired count in the panel", WAIT, browser)
    screenshot(browser, "fault-fired", "#diagram .fault")

    # Errors only: the fault's session is listed, swaks's good one is not.
    browser.find_element(By.ID, "filter-errors").click()
    wait_until(lambda: not browser.find_elements(By.CSS_SELECTOR, f"#sessions .session[data-id='{sid}']"),
               "the errors-only filter to hide the good session", WAIT, browser)
    assert browser.find_elements(By.CSS_SELECTOR, f"#sessions .session[data-id='{f['id']}']")
    browser.find_element(By.ID, "filter-errors").click()

    # Removing the rule in the page: the same mail passes again.
    browser.find_element(By.CSS_SELECTOR, f"#faults .rule[data-name='{name}'] .remove").click()
    wait_until(lambda: not browser.find_elements(By.CSS_SELECTOR, "#faults .rule"),
               "the rule to leave the fault panel", WAIT, browser)
    assert api.get("/api/faults")["rules"] == []
    rc, out, err = swaks_to(t, "carol@fail.example")
    assert rc == 0, out + err
    assert "451" not in out
    # no script error (the network's 400 for the bad rule is expected)
    errors = [l for l in browser_log(browser)
              if l.get("level") == "SEVERE" and l.get("source") != "network"]
    assert not errors, errors


def test_hostile_lines_are_text_and_lint_is_marked(web_tap, browser):
    """Markup in commands, the HELO name and the message stays text; a bare LF in the
    message is a '**' lint row."""
    t, port, api = web_tap()
    load_page(browser, port)
    evil = b'NOOP <img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'
    with harness.RawSmtpClient("127.0.0.1", t.port) as c:
        c.code()
        c.cmd(b"EHLO <b>bold</b>")
        c.cmd(evil)
        c.cmd(b"MAIL FROM:<a@example.org>")
        c.cmd(b"RCPT TO:<b@example.net>")
        assert c.cmd(b"DATA")[-1].startswith(b"354")
        c.send(b"Subject: <img src=y onerror=\"window.__xss=3\">\r\n\r\nbare\nLF\r\n.\r\n")
        assert c.code() == 250
        c.cmd(b"QUIT")
    s = api.wait_ended(lambda s: "<b>" in (s.get("helo") or ""), "with the hostile HELO")
    open_session(browser, s["id"])
    assert any(x == evil.decode() for x in texts(browser, "#diagram .cmd .label")), \
        texts(browser, "#diagram .cmd .label")
    assert 'Subject: <img src=y onerror="window.__xss=3">' in " ".join(texts(browser, "#diagram .content"))
    assert not browser.find_elements(By.CSS_SELECTOR, "#diagram img, #diagram script, #diagram b, "
                                     "#sessions img, #sessions b, #detail-head b")
    assert browser.execute_script("return window.__xss === undefined")
    lint = texts(browser, "#diagram .lint .note")
    assert lint and lint[0].startswith("** ") and "bare LF" in lint[0], lint
    wait_until(lambda: "** 1" in " ".join(e.text for e in browser.find_elements(
        By.CSS_SELECTOR, f"#sessions .session[data-id='{s['id']}']")),
        "the lint count in the session's row", WAIT, browser)


def drive_sessions(port: int, n: int, threads: int = 4):
    """n complete sessions (EHLO, MAIL, RCPT, DATA, a small message, QUIT) against smtptap,
    as fast as it takes them, from a few threads."""
    msg = harness.make_message("bulk") + b".\r\n"
    left = [n]
    lock = threading.Lock()
    errors = []

    def one():
        with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
            f = s.makefile("rb")

            def reply():
                while True:
                    ln = f.readline()
                    if not ln:
                        raise ConnectionError("closed")
                    if ln[3:4] != b"-":
                        return ln

            assert reply().startswith(b"220")
            s.sendall(b"EHLO bulk.example\r\n")
            assert reply().startswith(b"250")
            s.sendall(b"MAIL FROM:<a@bulk.example>\r\nRCPT TO:<b@bulk.example>\r\nDATA\r\n")
            for code in (b"250", b"250", b"354"):
                r = reply()
                assert r.startswith(code), r
            s.sendall(msg + b"QUIT\r\n")
            assert reply().startswith(b"250")
            assert reply().startswith(b"221")

    def worker():
        while True:
            with lock:
                if left[0] <= 0 or errors:
                    return
                left[0] -= 1
            try:
                one()
            except Exception as e:  # noqa: BLE001 - reported below
                with lock:
                    errors.append(repr(e))

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for th in ts:
        th.start()
    for th in ts:
        th.join()
    assert not errors, errors[:5]


def timed_get(api: Api, path: str) -> float:
    """Seconds until the whole answer was in (the client's JSON parsing not counted)."""
    req = urllib.request.Request(api.base + path)
    if api.token:
        req.add_header("Authorization", "Bearer " + api.token)
    t0 = time.monotonic()
    with urllib.request.urlopen(req, timeout=10) as r:
        raw = r.read()
        status = r.status
    dt = time.monotonic() - t0
    assert status == 200, (status, raw[:200])
    json.loads(raw)
    return dt


def test_page_with_1000_sessions(web_tap, browser):
    n = 1000
    t, port, api = web_tap("-q", "--control-recent", str(n))
    load_page(browser, port)
    t0 = time.monotonic()
    drive_sessions(t.port, n)
    drive_s = time.monotonic() - t0
    stats = api.get("/api/stats")
    assert stats["sessions"]["total"] >= n, stats
    kept = min(n, stats["sessions"]["recent_max"])
    assert kept == n, stats

    # The list is bounded: the newest rows, "show more" for the rest.
    def listed():
        words = browser.find_element(By.ID, "count").text.split()
        return int(words[0]) if words and words[0].isdigit() else 0

    wait_until(lambda: listed() >= kept, f"the page to count {kept} sessions", 3 * WAIT, browser)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#sessions .session")) == 200
    newest = max(s["id"] for s in api.sessions())
    wait_until(lambda: browser.find_element(By.CSS_SELECTOR, "#sessions .session")
               .get_attribute("data-id") == str(newest), f"the newest session #{newest} on top",
               WAIT, browser)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#sessions .session")) <= 200
    assert browser.find_element(By.ID, "more").is_displayed() or kept <= 200

    # The API answers promptly with the page open and listening (the whole list of 1,000
    # summaries, and the small routes).
    # The best of 7 must be under 100 ms, and none slow: on a loaded 2-core machine (the
    # suite beside other jobs) single answers of the 1,000 summaries vary by 2x.
    samples = [timed_get(api, "/api/sessions") for _ in range(7)]
    assert min(samples) < 0.1 * harness.TIMEOUT_SCALE, f"GET /api/sessions took {samples} s"
    assert max(samples) < 1.0 * harness.TIMEOUT_SCALE, f"GET /api/sessions took {samples} s"
    for path in ("/api/health", "/api/stats", "/api/faults"):
        took = min(timed_get(api, path) for _ in range(3))
        assert took < 0.1 * harness.TIMEOUT_SCALE, f"GET {path} took {took} s"

    # A click opens a session quickly, with its diagram.
    # (read through wait_until: a row the list re-renders meanwhile is looked up again)
    pick = int(wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, "#sessions .session")[100]
                          .get_attribute("data-id"), "the 101st row's session", WAIT, browser))
    opened = open_session(browser, pick)
    assert opened < 3.0, f"opening session #{pick} took {opened:.2f} s"
    assert len(browser.find_elements(By.CSS_SELECTOR, "#diagram .cmd")) == 5
    assert timed_get(api, f"/api/sessions/{pick}") < 0.1

    # "show more" adds rows without dropping the open session.
    browser.find_element(By.ID, "more").click()
    wait_until(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#sessions .session")) == min(400, kept),
               "200 more rows", WAIT, browser)
    assert browser.find_element(By.ID, "detail").get_attribute("data-loaded") == str(pick)
    screenshot(browser, "1000-sessions")
    # the client filter narrows the list at once
    client = api.get(f"/api/sessions/{pick}")["session"]["client"]
    t1 = time.monotonic()
    browser.find_element(By.ID, "filter-client").send_keys(client)
    wait_until(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#sessions .session")) < 10,
               f"the client filter {client!r}", WAIT, browser)
    filter_s = time.monotonic() - t1
    shown = wait_until(lambda: [(e.get_attribute("data-id"), e.text) for e in
                                browser.find_elements(By.CSS_SELECTOR, "#sessions .session")],
                       "the filtered rows", WAIT, browser)
    assert str(pick) in [i for i, _ in shown], shown
    assert all(client in text for _, text in shown), shown
    assert filter_s < 3.0, filter_s
    print(f"\n{n} sessions in {drive_s:.2f} s; GET /api/sessions {min(samples)*1e3:.1f}.."
          f"{max(samples)*1e3:.1f} ms (median {statistics.median(samples)*1e3:.1f}); "
          f"open {opened*1e3:.0f} ms; filter {filter_s*1e3:.0f} ms")


def test_page_with_a_token(web_tap, browser, need):
    """With --control-token, the page opened as /?access_token=T sends the token on every
    request (Authorization: Bearer on fetch, access_token= on the event stream and on the
    download links) and works as without one."""
    need("swaks")
    token = "web-page-token-0123456789"
    t, port, api = web_tap("--control-token", token)
    status, _ = Api(port).call("GET", "/api/sessions")
    assert status == 401
    assert api.get("/api/sessions")["sessions"] == []
    # the page's script and style sheet are not for anyone without the token or its cookie
    for path in ("/app.js", "/style.css"):
        status, _ = Api(port).call("GET", path)
        assert status == 401, path
    browser.get(page_url(port) + "?access_token=" + token)
    wait_until(lambda: browser.find_element(By.ID, "conn").text == "live",
               "the page's event stream to connect with the token", WAIT, browser)
    rc, out, err = swaks_to(t, "bob@example.net")
    assert rc == 0, out + err
    wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, "#sessions .session[data-id='1']"),
               "the session in the list", WAIT, browser)
    open_session(browser, 1)
    assert any(x.startswith("RCPT TO:<bob@example.net>") for x in texts(browser, "#diagram .cmd .label"))
    link = browser.find_element(By.CSS_SELECTOR, "#downloads a.download[data-format='txt']")
    with urllib.request.urlopen(link.get_attribute("href"), timeout=10) as r:
        assert b"RCPT TO:<bob@example.net>" in r.read()
    inp = browser.find_element(By.ID, "fault-input")
    inp.send_keys(FAIL_RULE)
    browser.find_element(By.ID, "fault-add").click()
    wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, "#faults .rule[data-origin='api']"),
               "the rule added with the token", WAIT, browser)
    assert browser.find_element(By.ID, "fault-error").text == ""


def test_verdict_filter(web_tap, browser, need):
    """--client-cert expired: swaks with --tls-verify refuses the certificate (verdict good),
    swaks without it accepts and logs in (bad); the verdict filter tells them apart and the
    diagram shows the verdict."""
    need("swaks")
    from selenium.webdriver.support.ui import Select

    t, port, api = web_tap("--client-cert", "expired")
    load_page(browser, port)
    swaks_to(t, "bob@example.net", "-tls", "--tls-verify")
    rc, out, err = swaks_to(t, "bob@example.net", "-tls", "--auth", "PLAIN", "--auth-user",
                            "alice", "--auth-password", "pw")
    assert rc == 0, out + err
    good = api.wait_ended(lambda s: (s.get("verdict") or {}).get("good") is True, "judged good")
    bad = api.wait_ended(lambda s: (s.get("verdict") or {}).get("good") is False, "judged bad")
    rows = "#sessions .session"

    def ids():
        return sorted(int(e.get_attribute("data-id")) for e in browser.find_elements(By.CSS_SELECTOR, rows))

    wait_until(lambda: ids() == sorted([good["id"], bad["id"]]), "both sessions listed", WAIT, browser)
    verdict = Select(browser.find_element(By.ID, "filter-verdict"))
    verdict.select_by_value("good")
    wait_until(lambda: ids() == [good["id"]], "verdict good: only the refusing client", WAIT, browser)
    verdict.select_by_value("bad")
    wait_until(lambda: ids() == [bad["id"]], "verdict bad: only the accepting client", WAIT, browser)
    assert browser.find_elements(By.CSS_SELECTOR, f"{rows}.bad[data-id='{bad['id']}']")
    open_session(browser, bad["id"])
    v = texts(browser, "#diagram .verdict.bad .note")
    assert v and "ACCEPTED an expired certificate" in v[0], v
    verdict.select_by_value("")
    wait_until(lambda: len(ids()) == 2, "any verdict: both again", WAIT, browser)
    screenshot(browser, "verdict-bad", "#diagram .verdict")


def test_page_follows_a_restarted_smtptap(tap, browser):
    """smtptap stopped and started again on the same control address while the page stays
    open: the page reconnects and lists the new process's sessions, which are numbered from
    1 again, without the old ones."""
    port = harness.free_port()

    def start():
        t = tap(["--control", f"127.0.0.1:{port}"])
        harness.wait_port(port, timeout=WAIT)
        return t

    def session(t, name: bytes):
        with harness.RawSmtpClient("127.0.0.1", t.port) as c:
            c.code()
            c.cmd(b"EHLO " + name)
            c.cmd(b"QUIT")

    def listed():
        return [(e.get_attribute("data-id"), e.text) for e in
                browser.find_elements(By.CSS_SELECTOR, "#sessions .session")]

    first = start()
    load_page(browser, port)
    session(first, b"first.example")
    wait_until(lambda: [i for i, text in listed() if "first.example" in text] == ["1"],
               "the first process's session #1", WAIT, browser)
    first.stop()
    wait_until(lambda: browser.find_element(By.ID, "conn").text == "reconnecting",
               "the page to notice the stream ended", WAIT, browser)
    time.sleep(1.5)  # the page tells a restart by the start time health gives (1 s apart)
    second = start()
    wait_until(lambda: browser.find_element(By.ID, "conn").text == "live",
               "the page to reconnect", 3 * WAIT, browser)
    session(second, b"second.example")
    wait_until(lambda: len(listed()) == 1 and listed()[0][0] == "1" and "second.example" in listed()[0][1],
               "only the second process's session #1", WAIT, browser)
