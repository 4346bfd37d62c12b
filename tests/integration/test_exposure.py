"""Exposure (issue 16, item 5): what smtptap leaves open to other people.

- Listening beyond this host: a listen address that is not loopback (0.0.0.0, ::, or an
  address of a real interface), from --listen or the config file, gets one warning line at
  start that names the bound address, says that anyone who can reach it can relay mail
  through smtptap and have what they send written down, and what to do; -q does not hide
  it. 127.0.0.0/8 and ::1 (and localhost) get none. The relay claim is shown true: mail sent
  to the wildcard listener reaches the upstream.
- Files: with every capture format (-d DIR --format text,jsonl,pcap,eml) and umask 0, the
  directories smtptap creates are 0700 and every file 0600; the CA a normal start creates
  in $XDG_DATA_HOME/smtptap is a 0700 directory with a 0600 key; a loose CA directory or
  key is used, with a warning that says which and what to chmod.
- --redact: no password, token or CRAM digest, in any base64 alignment, in any file of any
  format: the text, the jsonl (its *_b64 values decoded too), the pcap (segments joined
  back into each direction's byte stream, so a secret cut by a 1460-octet segment boundary
  is found as well), the eml; nor in the jsonl streamed to stdout (-d - --format jsonl).
"""

from __future__ import annotations

import base64
import hmac
import json
import re
import smtplib
import stat
import struct
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

import harness
from harness import RawSmtpClient

FROM, TO = "alice@example.org", "bob@example.net"
USER, PASSWORD = "alice", "S3cr3t-pw"
LONG_PASSWORD = ("L0ngS3cret-" * 700)[:7000]  # several pcap segments, several text pieces
WARNING_RE = re.compile(r"^smtptap: warning: (\S+) is not a loopback address: (.*)$", re.M)


def b64(data) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def warnings(t) -> List[Tuple[str, str]]:
    return WARNING_RE.findall(t.transcript())


def global_address(family: str) -> str:
    """An address of this host that is not loopback (skips the test when there is none)."""
    rc, out, _ = harness.run(["ip", "-o", "-4" if family == "ipv4" else "-6", "addr", "show",
                              "scope", "global"])
    addrs = re.findall(r"\sinet6? ([0-9a-fA-F.:]+)/\d+", out) if rc == 0 else []
    if not addrs:
        pytest.skip(f"no global {family} address on this host")
    return addrs[0]


# --------------------------------------------------------------------------- listening


def test_wildcard_listener_warns_and_really_relays(tap):
    """0.0.0.0 with an upstream: the warning names the address and the upstream, and the
    listener does relay (mail sent to it reaches the server)."""
    with harness.AiosmtpdServer() as srv:
        t = tap(["-u", f"plain:{srv.hostport}"], listen="0.0.0.0:0")
        ws = warnings(t)
        assert [w[0] for w in ws] == [f"0.0.0.0:{t.port}"], t.transcript()
        text = ws[0][1]
        assert f"anyone who can reach it can relay mail through smtptap to {srv.hostport}" in text
        assert "credentials too, unless --redact" in text and "this transcript" in text
        assert "listen on 127.0.0.1 or [::1]" in text and "firewall" in text
        with smtplib.SMTP("127.0.0.1", t.port, local_hostname="client.test", timeout=30) as s:
            assert s.sendmail(FROM, [TO], harness.make_message("through 0.0.0.0")) == {}
        assert len(srv.wait_for_messages(1)) == 1


def test_ipv6_wildcard_warns(tap):
    ok, why = harness.has_ipv6_loopback()
    if not ok:
        pytest.skip(why)
    t = tap(["-q"], listen="[::]:0")  # -q hides the transcript, not the warning
    ws = warnings(t)
    assert [w[0] for w in ws] == [f"[::]:{t.port}"], t.transcript()
    assert "can send mail to smtptap's built-in sink" in ws[0][1]
    assert "transcript" not in ws[0][1]  # -q without -d: nothing is written down


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_an_interface_address_warns(tap, family):
    addr = global_address(family)
    t = tap(["-d", "-", "--format", "jsonl"], listen=harness.fmt_hostport(addr, 0))
    ws = warnings(t)
    assert [w[0] for w in ws] == [harness.fmt_hostport(addr, t.port)], t.transcript()
    assert "this transcript and the jsonl on stdout" in ws[0][1]


@pytest.mark.parametrize("listen", ["127.0.0.1:0", "127.0.0.2:0", "localhost:0", "[::1]:0"])
def test_loopback_listeners_do_not_warn(tap, listen):
    if listen.startswith("[::1]"):
        ok, why = harness.has_ipv6_loopback()
        if not ok:
            pytest.skip(why)
    t = tap(["--listen", "tls:127.0.0.1:0"], listen=listen)
    assert t.wait_for(r"listening on .*implicit TLS")
    assert "warning" not in t.transcript(), t.transcript()


def test_config_listen_and_one_warning_per_exposed_listener(tap, tmp_path):
    ini = tmp_path / "smtptap.ini"
    ini.write_text("[listen]\naddress = 127.0.0.1:0\naddress = tls:0.0.0.0:0\n")
    cap = tmp_path / "cap"
    t = tap(["-c", str(ini), "-d", str(cap)], listen=None)
    t.wait_for(r"listening on 0\.0\.0\.0:(\d+) \(implicit TLS\)")
    port = int(re.search(r"listening on 0\.0\.0\.0:(\d+)", t.transcript()).group(1))
    ws = warnings(t)
    assert [w[0] for w in ws] == [f"0.0.0.0:{port}"], t.transcript()
    assert "this transcript and the capture files" in ws[0][1]


# --------------------------------------------------------------------------- file modes


def test_every_capture_format_private_whatever_the_umask(tap, tmp_path):
    base = tmp_path / "a"
    cap = base / "b" / "cap"
    t = tap(["-d", str(cap), "--format", "text,jsonl,pcap,eml"], umask=0)
    with smtplib.SMTP(t.host, t.port, local_hostname="client.test", timeout=30) as s:
        for i in range(2):
            assert s.sendmail(FROM, [TO], harness.make_message(f"modes {i}")) == {}
    t.wait_session_end(1)
    t.stop()
    assert "warning" not in t.transcript(), t.transcript()
    for d in (base, base / "b", cap):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, f"{d}: {oct(d.stat().st_mode)}"
    files = sorted(cap.iterdir())
    kinds = sorted(p.suffix for p in files)
    assert kinds == [".eml", ".eml", ".jsonl", ".pcap", ".txt"], [p.name for p in files]
    for p in files:
        assert p.is_file() and stat.S_IMODE(p.stat().st_mode) == 0o600, \
            f"{p.name}: {oct(p.stat().st_mode)}"


def test_a_capture_dir_open_to_others_is_used_with_a_warning(tap, tmp_path):
    cap = tmp_path / "cap"
    cap.mkdir(mode=0o755)
    cap.chmod(0o755)
    t = tap(["-q", "-d", str(cap), "--format", "text,eml"])
    assert re.search(rf"^smtptap: warning: --capture-dir {re.escape(str(cap))}: .*readable by "
                     r"other users.*chmod 700", t.transcript(), re.M), t.transcript()
    with smtplib.SMTP(t.host, t.port, local_hostname="client.test", timeout=30) as s:
        assert s.sendmail(FROM, [TO], harness.make_message("loose dir")) == {}
    t.stop()
    files = list(cap.iterdir())
    assert len(files) == 2
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, f"{p.name}: {oct(p.stat().st_mode)}"


def test_the_ca_a_normal_start_creates_is_private_whatever_the_umask(tap, tmp_path):
    xdg = tmp_path / "xdg"
    t = tap(extra_env={"XDG_DATA_HOME": str(xdg)}, umask=0)  # STARTTLS offered: CA opened
    ca_dir = xdg / "smtptap"
    for d in (xdg, ca_dir):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, f"{d}: {oct(d.stat().st_mode)}"
    assert stat.S_IMODE((ca_dir / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((ca_dir / "ca.pem").stat().st_mode) == 0o644  # the public part
    assert sorted(p.name for p in ca_dir.iterdir()) == ["ca.key", "ca.pem"]
    assert "warning" not in t.transcript(), t.transcript()


def test_a_loose_ca_directory_and_key_are_used_with_a_warning(tap, tmp_path):
    ca_dir = tmp_path / "ca"
    rc, out, err = harness.run([harness.smtptap_bin(), "--ca-dir", str(ca_dir), "--print-ca"])
    assert rc == 0 and err == "", err
    ca_dir.chmod(0o755)
    (ca_dir / "ca.key").chmod(0o640)
    rc, out2, err = harness.run([harness.smtptap_bin(), "--ca-dir", str(ca_dir), "--print-ca"])
    assert rc == 0 and out2 == out
    want = (rf"^smtptap: warning: --ca-dir {re.escape(str(ca_dir))}: CA directory \S+ is mode "
            rf"755, open to other users \(chmod 700 it\); CA key \S+/ca\.key is mode 640, open "
            r"to other users \(chmod 600 it\); the CA key can impersonate any server")
    assert re.search(want, err, re.M), err
    t = tap(["--ca-dir", str(ca_dir), "-q"])
    assert re.search(want, t.transcript(), re.M), t.transcript()
    ca_dir.chmod(0o700)
    (ca_dir / "ca.key").chmod(0o600)
    rc, _, err = harness.run([harness.smtptap_bin(), "--ca-dir", str(ca_dir), "--print-ca"])
    assert rc == 0 and err == "", err


# --------------------------------------------------------------------------- --redact


def alignments(secret: bytes) -> List[str]:
    """The secret, and every base64 text that can only come from it: for each alignment of
    the secret in a base64 stream, the groups made of its bytes alone."""
    forms = [secret.decode("latin-1")]
    for k in range(3):
        enc = base64.b64encode(b"\0" * k + secret + b"\0\0\0").decode()
        forms.append(enc[4 * ((k + 2) // 3):4 * ((k + len(secret)) // 3)])
    return [f for f in forms if len(f) >= 4]


def needles(secrets: List[bytes]) -> List[str]:
    """What to look for: each form whole when short, else every 32-character window at a
    step of 16 (a leaked run of 48 characters or more contains one)."""
    out = []
    for s in secrets:
        for f in alignments(s):
            out += [f] if len(f) <= 32 else [f[i:i + 32] for i in range(0, len(f) - 31, 16)]
    return out


def pcap_streams(data: bytes) -> Dict[tuple, bytes]:
    """The TCP payloads of a pcap (Ethernet, IPv4 or IPv6), joined per direction."""
    magic = struct.unpack("<I", data[:4])[0]
    assert magic == 0xA1B2C3D4, hex(magic)
    assert struct.unpack("<I", data[20:24])[0] == 1  # LINKTYPE_ETHERNET
    off, out = 24, {}
    while off + 16 <= len(data):
        incl = struct.unpack("<I", data[off + 8:off + 12])[0]
        pkt = data[off + 16:off + 16 + incl]
        off += 16 + incl
        etype = struct.unpack("!H", pkt[12:14])[0]
        ip = pkt[14:]
        if etype == 0x0800:
            hl, proto, src, dst = (ip[0] & 15) * 4, ip[9], ip[12:16], ip[16:20]
        else:
            assert etype == 0x86DD, hex(etype)
            hl, proto, src, dst = 40, ip[6], ip[8:24], ip[24:40]
        assert proto == 6
        tcp = ip[hl:]
        sport, dport = struct.unpack("!HH", tcp[:4])
        key = (src, sport, dst, dport)
        out[key] = out.get(key, b"") + tcp[(tcp[12] >> 4) * 4:]
    return out


def b64_values(obj) -> List[bytes]:
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k.endswith("_b64") and isinstance(v, str):
                out.append(base64.b64decode(v))
            else:
                out += b64_values(v)
    elif isinstance(obj, list):
        for v in obj:
            out += b64_values(v)
    return out


def jsonl_views(text: str) -> List[str]:
    views = [text]
    for ln in text.splitlines():
        views += [b.decode("latin-1") for b in b64_values(json.loads(ln))]
    return views


def assert_nothing_leaks(where: str, views: List[str], found: List[str]) -> None:
    for v in views:
        for n in found:
            assert n not in v, f"a secret form {n!r} is in {where}"


def views_of(p: Path) -> List[str]:
    data = p.read_bytes()
    views = [data.decode("latin-1")]
    if p.suffix == ".jsonl":
        views += jsonl_views(data.decode())
    elif p.suffix == ".pcap":
        views += [s.decode("latin-1") for s in pcap_streams(data).values()]
    return views


def cram_digests(t) -> List[bytes]:
    out = []
    for l in t.lines():
        if l.is_reply and l.text.startswith("334 ") and len(l.text) > 4:
            challenge = base64.b64decode(l.text[4:].split("  ")[0])
            if challenge.startswith(b"<"):
                out.append(hmac.new(PASSWORD.encode(), challenge, "md5").hexdigest().encode())
    return out


def authenticate_every_way(t, mechs):
    """swaks with each of MECHS, smtplib's login(), then a raw AUTH PLAIN with a password of
    7000 bytes (relayed in pieces, answered 5xx or refused); returns the sessions' count."""
    n = 0
    for mech in mechs:
        rc, out, err = harness.swaks(t.hostport, "--from", FROM, "--to", TO, "--auth", mech,
                                     "--auth-user", USER, "--auth-password", PASSWORD,
                                     timeout=120)
        assert rc == 0, out + err
        n += 1
    with smtplib.SMTP(t.host, t.port, local_hostname="client.test", timeout=60) as s:
        s.login(USER, PASSWORD)
        assert s.sendmail(FROM, [TO], harness.make_message("after AUTH")) == {}
    n += 1
    with RawSmtpClient(t.host, t.port, timeout=60) as c:
        c.reply()
        c.cmd(b"EHLO client.test")
        blob = b64(f"\0{USER}\0{LONG_PASSWORD}").encode()
        try:
            c.send(b"AUTH PLAIN " + blob + b"\r\n")
            c.reply()
            c.cmd(b"QUIT")
        except (ConnectionError, OSError):
            pass  # a server may close on a line that long: what was sent is what counts
    n += 1
    for sid in range(1, n + 1):
        t.wait_session_end(sid)
    return n


@pytest.mark.parametrize("upstream", ["sink", "aiosmtpd"])
def test_redact_leaves_no_secret_in_any_file_of_any_format(tap, need, tmp_path, upstream):
    need("swaks")
    cap = tmp_path / "cap"
    args = ["--redact", "-d", str(cap), "--format", "text,jsonl,pcap,eml"]
    if upstream == "sink":
        ini = tmp_path / "smtptap.ini"
        ini.write_text(f"[sink]\nusers = {USER}:{PASSWORD}\n")
        t = tap([*args, "--decode-auth", "-c", str(ini)])
        n = authenticate_every_way(t, ["PLAIN", "LOGIN", "CRAM-MD5"])
        srv = None
    else:
        srv = harness.AiosmtpdServer(auth=True).__enter__()
        t = tap([*args, "-u", f"plain:{srv.hostport}"])
        n = authenticate_every_way(t, ["PLAIN", "LOGIN"])
    try:
        t.stop()
    finally:
        if srv is not None:
            srv.__exit__(None, None, None)
    secrets = [PASSWORD.encode(), LONG_PASSWORD.encode(), *cram_digests(t)]
    found = needles(secrets)
    assert_nothing_leaks("smtptap's stderr", [t.transcript()], found)
    assert "<redacted>" in t.transcript()
    files = sorted(cap.iterdir())
    kinds = {p.suffix for p in files}
    assert kinds == {".txt", ".jsonl", ".pcap", ".eml"}, kinds
    assert len([p for p in files if p.suffix == ".pcap"]) == n
    for p in files:
        assert_nothing_leaks(f"capture file {p.name}", views_of(p), found)
    # The masked AUTH lines are in each format that carries the dialog, not left out.
    for suffix in (".txt", ".jsonl", ".pcap"):
        assert any(b"<redacted>" in p.read_bytes() for p in files if p.suffix == suffix), suffix


def test_redact_leaves_no_secret_in_the_jsonl_on_stdout(tap, need, tmp_path):
    need("swaks")
    ini = tmp_path / "smtptap.ini"
    ini.write_text(f"[sink]\nusers = {USER}:{PASSWORD}\n")
    t = tap(["--redact", "--decode-auth", "-d", "-", "--format", "jsonl", "-c", str(ini)])
    authenticate_every_way(t, ["PLAIN", "LOGIN", "CRAM-MD5"])
    t.stop()
    found = needles([PASSWORD.encode(), LONG_PASSWORD.encode(), *cram_digests(t)])
    out = t.stdout()
    assert '"kind":"end"' in out
    assert_nothing_leaks("the jsonl on stdout", jsonl_views(out), found)
    assert "<redacted>" in out
