"""Transparent mode (`-u transparent`) behind an nftables REDIRECT, in a private network
namespace made for each test (PROTOCOL.md section 6).

Inside the namespace: loopback up, a second address (192.0.2.25, 2001:db8::25) that stands
for "the real mail server", a real aiosmtpd server listening there on port 25 (run as a
subprocess through `ip netns exec`, see rawserver.py), and smtptap listening on
127.0.0.1 and [::1] with `-u transparent`.  A nat/output rule sends every connection to
SERVER:25 to smtptap's port instead, so a client that dials the real server reaches smtptap;
smtptap reads the original destination (SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST) and dials it.

The loop: smtptap's own connection to SERVER:25 matches the same rule and would be
redirected back to smtptap.  The usual fix (mitmproxy, PROTOCOL.md 6: `-m owner !
--uid-owner proxy`) is used: smtptap runs as its own uid (nobody) and the rule says
`meta skuid != <that uid>`.

Skipped, with the reason, only when this machine does not allow `ip netns add`.
"""

import base64
import hashlib
import json
import os
import pwd
import queue
import re
import secrets
import shlex
import subprocess
import threading
import time
from pathlib import Path

import pytest

import harness

HERE = Path(__file__).resolve().parent
SERVER = {"ipv4": "192.0.2.25", "ipv6": "2001:db8::25"}
LOOPBACK = {"ipv4": "127.0.0.1", "ipv6": "::1"}
SMTP_PORT = 25  # the namespace is empty: the real port is free


class Netns:
    """A network namespace of our own; everything started in it is stopped by close()."""

    def __init__(self, name: str):
        self.name = name
        self.procs = []

    def cmd(self, argv):
        return [harness.tool_path("ip"), "netns", "exec", self.name, *argv]

    def check(self, argv, what):
        rc, out, err = harness.run(self.cmd(argv), timeout=20)
        assert rc == 0, f"{what} failed in netns {self.name}: {' '.join(argv)}\n{out}\n{err}"
        return out

    def popen(self, argv, **kw):
        p = subprocess.Popen(self.cmd(argv), **kw)
        self.procs.append(p)
        return p

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                if p.stdin:
                    p.stdin.close()
                try:
                    p.wait(3)
                except subprocess.TimeoutExpired:
                    p.terminate()
                    try:
                        p.wait(3)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait()
        subprocess.run([harness.tool_path("ip"), "netns", "del", self.name],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture
def netns(need):
    need("ip", "nft", "swaks")
    name = f"smtptap-t{os.getpid()}-{secrets.token_hex(3)}"
    r = subprocess.run([harness.tool_path("ip"), "netns", "add", name], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"`ip netns add` is not permitted here, transparent mode cannot be tested: "
                    f"{r.stderr.strip()}")
    ns = Netns(name)
    try:
        ns.check(["ip", "link", "set", "lo", "up"], "loopback up")
        ns.check(["ip", "addr", "add", f"{SERVER['ipv4']}/32", "dev", "lo"], "IPv4 address")
        ns.check(["ip", "-6", "addr", "add", f"{SERVER['ipv6']}/128", "dev", "lo", "nodad"],
                 "IPv6 address")
        yield ns
    finally:
        ns.close()


class NsServer:
    """aiosmtpd on HOST:PORT inside the namespace (rawserver.py aiosmtpd)."""

    def __init__(self, ns: Netns, host: str, port: int):
        self.host, self.port = host, port
        self.messages = []
        self.q = queue.Queue()
        self.proc = ns.popen([harness.PYTHON, str(HERE / "rawserver.py"), "aiosmtpd", "--host", host,
                              "--port", str(port)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        threading.Thread(target=self._pump, daemon=True).start()
        ev = self._next(10)
        assert ev and "ready" in ev, f"server in netns did not start: {ev} {self.proc.stderr.read()}"
        self.greeting = ev["greeting"]

    def _pump(self):
        for line in self.proc.stdout:
            self.q.put(json.loads(line))
        self.q.put(None)

    def _next(self, timeout):
        try:
            return self.q.get(timeout=timeout)
        except queue.Empty:
            return None

    def wait_for_messages(self, n=1, timeout=10.0):
        deadline = time.monotonic() + timeout
        while len(self.messages) < n:
            ev = self._next(max(0.0, deadline - time.monotonic()))
            assert ev is not None, f"the server in the netns got {len(self.messages)} message(s), expected {n}"
            if "message" in ev:
                self.messages.append(ev["message"])
        return self.messages


def nobody():
    pw = pwd.getpwnam("nobody")
    return pw.pw_uid, pw.pw_gid


@pytest.fixture
def nobody_dir():
    """A directory of nobody's (tmp_path is under root's 0700 pytest directory)."""
    import tempfile
    import shutil
    uid, gid = nobody()
    d = tempfile.mkdtemp(prefix="smtptap-nobody-")
    os.chmod(d, 0o700)
    os.chown(d, uid, gid)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def transparent_tap(netns, tap, tmp_path, nobody_dir):
    """smtptap -u transparent in the namespace, as uid nobody, on 127.0.0.1 and [::1]."""
    uid, gid = nobody()
    wrapper = tmp_path / "smtptap-in-netns"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"exec {shlex.quote(harness.tool_path('ip'))} netns exec {shlex.quote(netns.name)} "
        f"setpriv --reuid={uid} --regid={gid} --clear-groups "
        f"{shlex.quote(harness.smtptap_bin())} \"$@\"\n")
    wrapper.chmod(0o755)
    # smtptap offers STARTTLS by default, so it needs its CA, in a directory nobody may create
    t = tap(["--listen", "[::1]:0", "-u", "transparent", "--ca-dir", f"{nobody_dir}/ca"],
            binary=str(wrapper))
    m = t.wait_for(harness.LISTEN_RE, count=2)
    t.ports = {"ipv4": t.port, "ipv6": int(m.group(2))}
    assert m.group(1) == "[::1]", m.group(0)
    return t


def redirect(netns, tap, family, exclude_smtptap=True):
    """nat/output: connections to the server's address and port go to smtptap, except
    smtptap's own (its uid): without that exclusion its upstream connection would loop."""
    uid, _ = nobody()
    proto = "ip" if family == "ipv4" else "ip6"
    exclusion = f"meta skuid != {uid} " if exclude_smtptap else ""
    rules = (f"table inet smtptap_test {{\n"
             f"  chain out {{ type nat hook output priority -100; policy accept;\n"
             f"    {proto} daddr {SERVER[family]} tcp dport {SMTP_PORT} {exclusion}"
             f"redirect to :{tap.ports[family]}\n"
             f"  }}\n}}\n")
    rc, out, err = harness.run(netns.cmd(["nft", "-f", "-"]), input=rules)
    assert rc == 0, f"nft rejected the rules:\n{rules}\n{err}"


def hp(host, port):
    return harness.fmt_hostport(host, port)


def swaks_in(netns, server, *args):
    return harness.run(netns.cmd([harness.tool_path("swaks"), "--server", server, "--timeout", "15",
                                  *args]), timeout=30)


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_redirected_connection_reaches_the_original_destination(netns, transparent_tap, family):
    t = transparent_tap
    srv = NsServer(netns, SERVER[family], SMTP_PORT)
    redirect(netns, t, family)
    subject = f"transparent {family} {secrets.token_hex(4)}"
    real = hp(SERVER[family], SMTP_PORT)
    rc, out, err = swaks_in(netns, real, "--from", "alice@example.org", "--to", "bob@example.net",
                            "--helo", "client.test", "--header", f"Subject: {subject}")
    assert rc == 0, f"swaks to {real} (redirected to smtptap) failed:\n{out}\n{err}"
    # The client saw the real server, not smtptap.
    assert harness.swaks_replies(out)[0] == srv.greeting, out
    msg = srv.wait_for_messages(1)[0]
    content = base64.b64decode(msg["content_b64"])
    assert f"Subject: {subject}".encode() in content
    assert msg["mail_from"] == "alice@example.org" and msg["rcpt_tos"] == ["bob@example.net"]

    t.wait_session_end()
    lines = t.lines()
    assert t.sessions() == [1], (f"expected exactly one session (a second one means smtptap's own "
                                 f"upstream connection was redirected to itself):\n{t.transcript()}")
    facts = [l.text for l in lines if l.marker == "=="]
    lo = hp(LOOPBACK[family], t.ports[family])
    assert re.match(rf"^\S+ connected to {re.escape(lo)}, upstream transparent, at \S+$", facts[0]), facts[0]
    m = next((re.match(rf"^upstream {re.escape(real)} connected from (\S+)$", f) for f in facts
              if f.startswith("upstream ")), None)
    assert m, f"no '== upstream {real} connected from ...' line:\n{t.transcript()}"
    # The server's peer is smtptap's upstream socket.
    assert m.group(1) == hp(msg["peer"][0], msg["peer"][1]), (m.group(1), msg["peer"])
    replies = [l.text for l in lines if l.is_reply]
    assert replies[0] == srv.greeting and not any(r.endswith("[smtptap]") for r in replies), replies
    sums = [re.match(r"^message 1: (\d+) bytes, \d+ lines.*, sha256 ([0-9a-f]{64})$", f) for f in facts]
    sums = [s for s in sums if s]
    assert len(sums) == 1 and sums[0].group(2) == hashlib.sha256(content).hexdigest() \
        and int(sums[0].group(1)) == len(content), facts


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_connection_that_was_not_redirected_gets_421(netns, transparent_tap, family):
    t = transparent_tap
    srv = NsServer(netns, SERVER[family], SMTP_PORT)
    redirect(netns, t, family)
    lo = hp(LOOPBACK[family], t.ports[family])
    code = ("import socket, sys\n"
            "s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)\n"
            "d = b''\n"
            "while True:\n"
            "    c = s.recv(65536)\n"
            "    if not c: break\n"
            "    d += c\n"
            "sys.stdout.buffer.write(d)\n")
    rc, out, err = harness.run(netns.cmd([harness.PYTHON, "-c", code, LOOPBACK[family],
                                          str(t.ports[family])]), timeout=20, binary=True)
    assert rc == 0, err
    assert re.match(rb"^421 [245]\.\d+\.\d+ .*not redirected.*\r\n$", out), out
    assert out.count(b"\r\n") == 1, out
    t.wait_for(rf"^#1 \+\S+ <\*\* connection to {re.escape(lo)} was not redirected")
    t.wait_for(r"^#1 \+\S+ <-  421 .*not redirected.*\[smtptap\]$")
    t.wait_session_end(1)
    # smtptap never dialled anything for it, and still serves redirected connections.
    assert not any(l.text.startswith("upstream ") for l in t.lines(1) if l.marker == "==")
    rc, out, err = swaks_in(netns, hp(SERVER[family], SMTP_PORT), "--from", "a@example.org",
                            "--to", "b@example.net")
    assert rc == 0, f"redirected swaks after the refusal failed:\n{out}\n{err}"
    srv.wait_for_messages(1)
    assert t.sessions() == [1, 2]


def test_a_rule_that_redirects_smtptap_itself_is_caught_not_looped(netns, transparent_tap):
    """The rule forgets to exclude smtptap's own traffic: smtptap's upstream connection comes
    back to it. It must say so and answer 421 once, not dial itself until --max-sessions."""
    t = transparent_tap
    NsServer(netns, SERVER["ipv4"], SMTP_PORT)
    redirect(netns, t, "ipv4", exclude_smtptap=False)
    rc, out, err = swaks_in(netns, hp(SERVER["ipv4"], SMTP_PORT), "--from", "a@example.org",
                            "--to", "b@example.net")
    assert rc != 0, f"swaks should have been refused:\n{out}"
    assert any(r.startswith("421 4.3.0 smtptap: redirect loop") for r in
               harness.swaks_replies(out)), out
    t.wait_for(r"^#2 \+\S+ <\*\* connection from \S+ is smtptap's own upstream connection")
    t.wait_session_end(1)
    t.wait_session_end(2)
    assert t.sessions() == [1, 2], f"smtptap looped:\n{t.transcript()}"


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_redirected_client_starttls_verifies_against_the_original_destination(
        netns, transparent_tap, nobody_dir, family):
    """smtptap offers STARTTLS by default; a client that dialled the real server by its
    address and verifies it (smtptap's CA trusted, IP checked) gets a leaf for that
    original destination, not for smtptap's own loopback address."""
    t = transparent_tap
    srv = NsServer(netns, SERVER[family], SMTP_PORT)
    redirect(netns, t, family)
    ca_pem = f"{nobody_dir}/ca/ca.pem"  # created by smtptap (as nobody) at start
    code = ("import smtplib, ssl, sys\n"
            "ctx = ssl.create_default_context(cafile=sys.argv[3])\n"
            "s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=15)\n"
            "s.ehlo('client.test')\n"
            "s.starttls(context=ctx)\n"
            "print(s.sock.getpeercert()['subjectAltName'])\n"
            "s.sendmail('alice@example.org', ['bob@example.net'], b'Subject: via TLS\\r\\n\\r\\nhi\\r\\n')\n"
            "s.quit()\n")
    rc, out, err = harness.run(netns.cmd([harness.PYTHON, "-c", code, SERVER[family],
                                          str(SMTP_PORT), ca_pem]), timeout=30)
    assert rc == 0, f"STARTTLS to {SERVER[family]} through smtptap failed:\n{out}\n{err}"
    assert f"('IP Address', '{SERVER[family].upper() if family == 'ipv6' else SERVER[family]}')" \
        in out.replace("2001:DB8:0:0:0:0:0:25", "2001:DB8::25"), out
    msg = srv.wait_for_messages(1)[0]
    assert msg["mail_from"] == "alice@example.org"
    t.wait_session_end()
    text = t.transcript()
    assert "== client TLS:" in text and "~> mail FROM:<alice@example.org>" in text, text
    assert "the client's TLS ends at smtptap: the upstream leg is plain text" in text, text
