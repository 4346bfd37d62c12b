"""The pcap capture (`-d DIR --format pcap`), judged by the tool people open it with: tshark.

Real clients (Python smtplib, recording every byte it sends) talk through smtptap to a real
aiosmtpd; then tshark (run with `-o tcp.desegment_tcp_streams:TRUE`) reads the file:

- `tshark -Y smtp -T fields -e smtp.req.command -e smtp.response.code` lists the commands
  the client sent and the reply codes it was sent, in the text transcript's order;
- `tshark -Y tcp.analysis.flags` prints nothing (no retransmission, lost segment, duplicate
  ACK, window full, port reuse...), and `-Y tls` nothing either (the clear text after a
  STARTTLS 220 is in a new stream, never handed to the TLS dissector);
- `tshark -q -z follow,tcp,raw,N` of the client's streams, joined, equals the bytes the client
  sent (in clear: before and inside TLS), a 20 MB message included;
- the streams are between the client's real address and port and the server on port 25 (587
  when smtptap listens on 587), one stream for a plain or implicit-TLS session, a second one
  from another client port after a client's STARTTLS.

For a plain session, a client-STARTTLS session to a `starttls:` upstream (verified with
`--upstream-ca`), and an implicit-TLS session (`--listen tls:`), over IPv4 and IPv6.
"""

from __future__ import annotations

import os
import re
import smtplib
import socket
import ssl
import stat
from pathlib import Path
from typing import List, Optional, Tuple

import pytest

import harness
from harness import make_message

FROM = "alice@example.org"
RCPTS = ["bob@example.net", "carol@example.net"]
NAME = "localhost"  # the name the client asks smtptap for (SNI, certificate check)
TSHARK_OPTS = ["-n", "-o", "tcp.desegment_tcp_streams:TRUE"]

FAMILIES = ["ipv4", "ipv6"]
LOOPBACK = {"ipv4": "127.0.0.1", "ipv6": "::1"}

smtptap_ca = harness.smtptap_ca


@pytest.fixture(autouse=True)
def _tshark(need):
    need("tshark")


@pytest.fixture
def test_ca(tmp_path):
    return harness.CertAuthority(str(tmp_path))


def need_family(family: str) -> None:
    if family == "ipv6":
        ok, why = harness.has_ipv6_loopback()
        if not ok:
            pytest.skip(why)


# --------------------------------------------------------------------------- the client


class Recording:
    """smtplib mixin: connects to CONNECT_TO (the host name stays NAME for TLS) and keeps every
    byte it sends, in clear, in .sent."""

    def __init__(self, *args, connect_to: str, **kw):
        self.sent = bytearray()
        self.connect_to = connect_to
        super().__init__(*args, **kw)

    def _get_socket(self, host, port, timeout):
        sock = socket.create_connection((self.connect_to, port), timeout)
        if isinstance(self, smtplib.SMTP_SSL):
            sock = self.context.wrap_socket(sock, server_hostname=self._host)
        return sock

    def send(self, s):
        b = s.encode(self.command_encoding) if isinstance(s, str) else bytes(s)
        super().send(b)  # raises when not connected: then nothing was sent
        self.sent.extend(b)


class RecordingSMTP(Recording, smtplib.SMTP):
    pass


class RecordingSMTP_SSL(Recording, smtplib.SMTP_SSL):
    pass


def deliver(mode: str, family: str, port: int, ca_pem: Optional[str],
            message: bytes) -> Tuple[bytes, Tuple[str, int]]:
    """Sends MESSAGE with smtplib in MODE (plain, starttls, implicit) to smtptap on the
    loopback of FAMILY; returns (every byte the client sent, in clear; its own address)."""
    ctx = ssl.create_default_context(cafile=ca_pem) if ca_pem else None
    kw = dict(connect_to=LOOPBACK[family], local_hostname="client.test", timeout=60)
    if mode == "implicit":
        s = RecordingSMTP_SSL(NAME, port, context=ctx, **kw)
    else:
        s = RecordingSMTP(NAME, port, **kw)
    with s:
        me = s.sock.getsockname()[:2]
        code, _ = s.ehlo()
        assert code == 250, code
        if mode == "starttls":
            code, text = s.starttls(context=ctx)
            assert code == 220, (code, text)
            code, _ = s.ehlo()
            assert code == 250, code
        refused = s.sendmail(FROM, RCPTS, message)
        assert refused == {}, refused
        s.quit()
    return bytes(s.sent), me


# --------------------------------------------------------------------------- smtptap


def start_tap(tap, tmp_path, test_ca, mode: str, family: str, srv, *,
              listen_port: int = 0) -> Tuple[object, Path, Optional[str]]:
    """smtptap with `-d DIR --format text,pcap` in front of SRV for client MODE; returns
    (the tap, DIR, smtptap's CA PEM for the client or None)."""
    d = tmp_path / "captures"
    ca_dir, ca_pem = smtptap_ca(tmp_path)
    host = LOOPBACK[family]
    listen = harness.fmt_hostport(host, listen_port)
    if mode == "implicit":
        listen = "tls:" + listen
    if mode == "starttls":
        up = ["-u", f"starttls:{NAME}:{srv.port}", "--upstream-ca", test_ca.cert_path]
    else:
        up = ["-u", srv.hostport]
    t = tap(["--ca-dir", ca_dir, "--client-starttls", "offer", "-d", str(d),
             "--format", "text,pcap", *up], listen=listen)
    return t, d, (ca_pem if mode != "plain" else None)


def upstream_server(test_ca, mode: str, family: str) -> harness.AiosmtpdServer:
    """aiosmtpd on the loopback of FAMILY; for a `starttls:` upstream on 127.0.0.1 always, where
    NAME resolves (then, under IPv6, the capture's server is the listener's [::1]: the
    upstream's family is not the client's)."""
    if mode == "starttls":
        return harness.AiosmtpdServer(tls_context=test_ca.server_context([NAME]))
    return harness.AiosmtpdServer(host=LOOPBACK[family])


def the_pcap(d: Path) -> Path:
    files = sorted(d.glob("*.pcap"))
    assert len(files) == 1, f"expected one pcap file in {d}: {sorted(os.listdir(d))}"
    mode = stat.S_IMODE(files[0].stat().st_mode)
    assert mode == 0o600, oct(mode)
    return files[0]


def session_dialog(t) -> Tuple[List[str], List[int]]:
    """The commands the client sent and the reply codes it was sent, from the text transcript:
    smtptap's own commands to the server and the server's replies to them (`[smtptap]`
    commands, `[to smtptap]` replies) never were on the client's connection. A command is its
    verb's first four letters, upper-cased, as Wireshark names it (STARTTLS is "STAR")."""
    t.wait_session_end(timeout=60)
    sids = t.sessions()
    assert len(sids) == 1, t.transcript()
    cmds, codes = [], []
    for kind, text in harness.dialog(t.lines(sids[0])):
        if kind == "C" and not text.endswith("  [smtptap]"):
            cmds.append(harness.norm_cmd(text).split(" ")[0][:4])
        elif kind == "R" and not text.endswith("  [to smtptap]"):
            codes.append(int(text[:3]))
    return cmds, codes


# --------------------------------------------------------------------------- tshark


def tshark(path: Path, *args: str, timeout: float = 600) -> str:
    rc, out, err = harness.run(["tshark", *TSHARK_OPTS, "-r", str(path), *args], timeout)
    assert rc == 0, f"tshark {' '.join(args)} failed (rc {rc}):\n{err}"
    return out


def tshark_dialog(path: Path) -> Tuple[List[str], List[int]]:
    """Commands and reply codes as Wireshark's SMTP dissector sees them, frame by frame."""
    out = tshark(path, "-Y", "smtp", "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=;",
                 "-e", "smtp.req.command", "-e", "smtp.response.code")
    cmds, codes = [], []
    for line in out.splitlines():
        req, _, rsp = line.partition("\t")
        cmds += [c.upper() for c in req.split(";") if c]
        codes += [int(c) for c in rsp.split(";") if c]
    return cmds, codes


def tshark_streams(path: Path) -> List[Tuple[int, str, int, str, int]]:
    """(tcp.stream, client address, client port, server address, server port) per SYN."""
    out = tshark(path, "-Y", "tcp.flags.syn == 1 && tcp.flags.ack == 0", "-T", "fields",
                 "-e", "tcp.stream", "-e", "ip.src", "-e", "ipv6.src", "-e", "tcp.srcport",
                 "-e", "ip.dst", "-e", "ipv6.dst", "-e", "tcp.dstport")
    rows = []
    for line in out.splitlines():
        st, s4, s6, sp, d4, d6, dp = line.split("\t")
        rows.append((int(st), s4 or s6, int(sp), d4 or d6, int(dp)))
    return rows


def follow_raw(path: Path, stream: int) -> Tuple[bytes, bytes]:
    """`tshark -q -z follow,tcp,raw,STREAM`: (client to server, server to client) bytes. The
    client is node 0 (it sent the SYN); node 1's lines are indented with a tab."""
    out = tshark(path, "-q", "-z", f"follow,tcp,raw,{stream}")
    lines = out.splitlines()
    first = next(i for i, l in enumerate(lines) if l.startswith("Node 1:")) + 1
    up, down = bytearray(), bytearray()
    for l in lines[first:]:
        if l.startswith("====="):
            break
        if l.startswith("\t"):
            down += bytes.fromhex(l.strip())
        else:
            up += bytes.fromhex(l.strip())
    return bytes(up), bytes(down)


def check_capture(t, d: Path, mode: str, family: str, sent: bytes, me: Tuple[str, int],
                  server_port: int = 25) -> Path:
    """Everything tshark must show for one delivered session (see the top of the file)."""
    cmds, codes = session_dialog(t)
    path = the_pcap(d)
    assert tshark_dialog(path) == (cmds, codes), t.transcript()
    flags = tshark(path, "-Y", "tcp.analysis.flags")
    assert flags.strip() == "", f"tshark flags TCP problems:\n{flags}"
    tls = tshark(path, "-Y", "tls || ssl")
    assert tls.strip() == "", f"tshark sees TLS in the clear dialog:\n{tls}"
    streams = tshark_streams(path)
    assert len(streams) == (2 if mode == "starttls" else 1), streams
    assert [s[0] for s in streams] == list(range(len(streams))), streams
    host, port = me
    for _, caddr, cport, saddr, sport in streams:
        assert caddr == host, (caddr, host)
        assert saddr == LOOPBACK[family], saddr  # the upstream is on the same loopback
        assert sport == server_port, sport
    assert streams[0][2] == port, (streams, me)  # the client's real port first
    assert len({s[2] for s in streams}) == len(streams), streams  # a new port per stream
    up = bytearray()
    for s in streams:
        u, down = follow_raw(path, s[0])
        up += u
        if mode == "starttls" and s[0] == 0:
            assert u.endswith(b"STARTTLS\r\n"), u[-40:]
            assert re.search(rb"(^|\n)220 [^\r\n]*\r\n\Z", down), down[-80:]
    assert bytes(up) == sent, f"client bytes differ: {len(up)} in the pcap, {len(sent)} sent"
    return path


# --------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("mode", ["plain", "starttls", "implicit"])
def test_session_as_tshark_sees_it(tap, tmp_path, test_ca, mode, family):
    need_family(family)
    msg = make_message(f"pcap {mode} {family}", to=RCPTS)
    with upstream_server(test_ca, mode, family) as srv:
        t, d, ca_pem = start_tap(tap, tmp_path, test_ca, mode, family, srv)
        sent, me = deliver(mode, family, t.port, ca_pem, msg)
        got = srv.wait_for_messages(1, timeout=10)
        assert got[0].content == msg
        check_capture(t, d, mode, family, sent, me)
    if mode == "starttls":  # the transcript agrees: the client's STARTTLS, then EHLO again
        cmds, _ = session_dialog(t)
        assert cmds[:3] == ["EHLO", "STAR", "EHLO"], cmds


def big_message(size: int) -> bytes:
    """SIZE octets of mail: headers, then 76-octet lines, some starting with a dot."""
    head = make_message("pcap 20 MB", to=RCPTS).split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    lines, n, i = [head], len(head), 0
    while n < size:
        line = (b"." if i % 97 == 0 else b"") + (b"%08d " % i) + b"x" * 60 + b"\r\n"
        lines.append(line)
        n += len(line)
        i += 1
    return b"".join(lines)


def test_twenty_megabytes_follow_equals_what_the_client_sent(tap, tmp_path, test_ca):
    msg = big_message(20 * 1000 * 1000)
    with upstream_server(test_ca, "plain", "ipv4") as srv:
        t, d, _ = start_tap(tap, tmp_path, test_ca, "plain", "ipv4", srv)
        sent, me = deliver("plain", "ipv4", t.port, None, msg)
        got = srv.wait_for_messages(1, timeout=60)
        assert got[0].content == msg
        assert len(sent) > 20 * 1000 * 1000
        path = check_capture(t, d, "plain", "ipv4", sent, me)
    # every segment within the MSS: (frame - Ethernet 14 - IPv4 20 - TCP 20) <= 1460
    out = tshark(path, "-T", "fields", "-e", "tcp.len")
    lens = [int(x) for x in out.split()]
    assert max(lens) == 1460 and sum(lens) > 20 * 1000 * 1000, (max(lens), sum(lens))


def test_submission_port_587(tap, tmp_path, test_ca):
    """Listening on 587, the server's port in the capture is 587 (tshark dissects SMTP there
    too)."""
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 587))
    except OSError as e:
        pytest.skip(f"cannot listen on 127.0.0.1:587 here: {e}")
    msg = make_message("pcap 587", to=RCPTS)
    with upstream_server(test_ca, "plain", "ipv4") as srv:
        t, d, _ = start_tap(tap, tmp_path, test_ca, "plain", "ipv4", srv, listen_port=587)
        sent, me = deliver("plain", "ipv4", t.port, None, msg)
        srv.wait_for_messages(1, timeout=10)
        check_capture(t, d, "plain", "ipv4", sent, me, server_port=587)


def test_readable_while_the_session_runs(tap, tmp_path, test_ca):
    """The file is flushed at every reply: tshark reads the greeting and the EHLO reply while
    the client is still connected."""
    with upstream_server(test_ca, "plain", "ipv4") as srv:
        t, d, _ = start_tap(tap, tmp_path, test_ca, "plain", "ipv4", srv)
        with harness.RawSmtpClient("127.0.0.1", t.port) as c:
            assert c.code() == 220
            assert c.cmd(b"EHLO client.test")[-1].startswith(b"250 ")
            path = the_pcap(d)
            cmds, codes = tshark_dialog(path)
            assert (cmds, codes) == (["EHLO"], [220, 250]), (cmds, codes)
            c.cmd(b"QUIT")
        t.wait_session_end()
    assert tshark_dialog(path) == (["EHLO", "QUIT"], [220, 250, 221])
    assert tshark(path, "-Y", "tcp.analysis.flags").strip() == ""
    fins = tshark(path, "-Y", "tcp.flags.fin == 1", "-T", "fields", "-e", "tcp.srcport")
    assert len(fins.split()) == 2, fins  # FIN both ways at the end
