"""The soak's SMTP client: one asyncio coroutine per session, following a Plan.

A session connects to one smtptap listener (plain or implicit TLS), may upgrade with
STARTTLS, sends 1-3 messages (pipelined or not, DATA or BDAT), and may vanish on purpose at
a planned point (FIN or RST), go silent until smtptap's idle timeout closes it, or ask the
resetting upstream (EHLO name) to reset it. TLS is done over ssl.MemoryBIO, so the client
can also vanish in the middle of a handshake. It copes with whatever a fault rule makes of
the dialog (any reply code, a closed or reset connection, a stalled reply) and records what
it did and saw: the messages it sent (id, SHA-256, whether the end was sent, the reply), how
the session ended, and the SHA-256 of every plaintext byte it sent and received (compared
with smtptap's pcap capture for sessions nothing disturbed).
"""
import asyncio
import base64
import dataclasses
import hashlib
import socket
import ssl
import struct
import time
from typing import List, Optional, Tuple

# Where a client can vanish on purpose (k: in the k-th message's transaction).
VANISH_POINTS = ("connect", "handshake-partial", "handshake-hello", "greeting", "ehlo-partial",
                 "mail", "midcmd", "body", "nodot", "dot", "quit")
IDLE_POINTS = ("ehlo", "body")
RESET_POINTS = ("ehlo", "mail", "rcpt", "data", "body", "dot", "after")


@dataclasses.dataclass
class Plan:
    sid: int
    inst: str                 # "A", "B", "C": which smtptap
    mode: str                 # "plain", "starttls", "implicit"
    pipeline: bool
    bdat: bool                # BDAT instead of DATA when CHUNKING is offered
    msgs: List[Tuple[str, bytes]]          # (soak id, content) per message
    think: List[float]        # seconds to wait before each step (consumed in order)
    vanish: Optional[Tuple[str, int, str]] = None   # (point, k, "close" | "rst")
    idle: Optional[Tuple[str, int]] = None          # (point, k): go silent there
    reset: Optional[Tuple[str, int]] = None         # (point, k): asked of upstream C
    rset_between: float = 0.0  # probability of RSET / NOOP between messages
    seed: int = 0


class Closed(Exception):
    """The other side closed or reset the connection (or sent something unreadable)."""


class Vanished(Exception):
    """We left on purpose."""


class ClientTimeout(Exception):
    """Nothing came for too long: smtptap should have closed such a session itself."""


class Link:
    """A TCP connection with an optional TLS layer (SSLObject over memory BIOs)."""

    def __init__(self, reader, writer, timeout):
        self.r, self.w = reader, writer
        self.timeout = timeout
        self.tls: Optional[ssl.SSLObject] = None
        self.inb = self.outb = None
        self.buf = bytearray()
        self.sent = hashlib.sha256()
        self.got = hashlib.sha256()
        self.sent_n = 0
        self.got_n = 0

    async def _raw_read(self) -> bytes:
        try:
            data = await asyncio.wait_for(self.r.read(65536), self.timeout)
        except asyncio.TimeoutError:
            raise ClientTimeout(f"nothing for {self.timeout:.0f}s") from None
        except (ConnectionError, OSError) as e:
            raise Closed(f"{type(e).__name__}") from None
        if not data:
            raise Closed("EOF")
        return data

    async def _raw_write(self, data: bytes):
        self.w.write(data)
        try:
            await asyncio.wait_for(self.w.drain(), self.timeout)
        except asyncio.TimeoutError:
            raise ClientTimeout(f"could not write for {self.timeout:.0f}s") from None
        except (ConnectionError, OSError) as e:
            raise Closed(f"write: {type(e).__name__}") from None

    async def _fill(self):
        if self.tls is None:
            data = await self._raw_read()
        else:
            while True:
                try:
                    data = self.tls.read(65536)
                except ssl.SSLWantReadError:
                    await self._flush_tls()
                    self.inb.write(await self._raw_read())
                    continue
                except ssl.SSLError as e:
                    raise Closed(f"TLS: {e.reason or e}") from None
                if not data:
                    raise Closed("TLS close_notify")
                break
        self.buf += data
        self.got.update(data)
        self.got_n += len(data)

    async def _flush_tls(self):
        out = self.outb.read()
        if out:
            await self._raw_write(out)

    async def send(self, data: bytes):
        self.sent.update(data)
        self.sent_n += len(data)
        if self.tls is None:
            await self._raw_write(data)
        else:
            try:
                self.tls.write(data)
            except ssl.SSLError as e:
                raise Closed(f"TLS: {e.reason or e}") from None
            await self._flush_tls()

    async def line(self) -> bytes:
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                ln = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return ln
            await self._fill()

    async def reply(self) -> Tuple[int, List[bytes]]:
        lines = []
        while True:
            ln = await self.line()
            lines.append(ln)
            if len(ln) < 4 or not ln[:3].isdigit():
                raise Closed(f"not a reply line: {ln[:60]!r}")
            if ln[3:4] != b"-":
                return int(ln[:3]), lines

    async def handshake(self, ctx: ssl.SSLContext, cut: Optional[str], vanish):
        """TLS client handshake. cut: None, "partial" (send half of the first flight and
        vanish) or "hello" (vanish once the server's first flight has arrived)."""
        self.inb, self.outb = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.inb, self.outb, server_hostname="localhost")
        flight = 0
        while True:
            try:
                self.tls.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                done = False
            except ssl.SSLError as e:
                await self._flush_tls_quietly()
                raise Closed(f"TLS handshake: {e.reason or e}") from None
            out = self.outb.read()
            if out:
                if cut == "partial" and flight == 0:
                    await self._raw_write(out[:max(1, len(out) // 2)])
                    raise vanish()
                if cut == "hello" and flight == 1:
                    raise vanish()
                await self._raw_write(out)
                flight += 1
            if done:
                return
            self.inb.write(await self._raw_read())

    async def _flush_tls_quietly(self):
        try:
            await self._flush_tls()
        except (Closed, ClientTimeout):
            pass

    def local_port(self) -> int:
        sn = self.w.get_extra_info("sockname")
        return sn[1] if sn else 0

    def abort(self, how: str):
        """Leave now: "rst" = SO_LINGER 0 then close (the kernel sends RST), else close
        (FIN after whatever is queued)."""
        if how == "rst":
            sock = self.w.get_extra_info("socket")
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            self.w.transport.abort()
        else:
            self.w.close()

    async def wait_closed(self, seconds: float):
        """Read until the other side closes (or SECONDS pass)."""
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                data = await asyncio.wait_for(self.r.read(65536), deadline - time.monotonic())
                if not data:
                    return True
        except (asyncio.TimeoutError, ConnectionError, OSError):
            pass
        return False


def stuff(content: bytes) -> bytes:
    """DATA transparency (RFC 5321 4.5.2) and the end: CRLF . CRLF."""
    out = content.replace(b"\r\n.", b"\r\n..")
    if out.startswith(b"."):
        out = b"." + out
    return out + b".\r\n"


def caps_of(lines: List[bytes]) -> set:
    return {ln[4:].split(b" ", 1)[0].strip().upper() for ln in lines[1:]}


class Env:
    """What every session shares: listener ports, TLS context, counters."""

    def __init__(self, ports, ctx, timeout, idle_timeout, source="127.0.0.1"):
        self.ports = ports      # {"A": {"plain": p, "tls": p}, ...}
        self.source = source    # the clients' address
        self.ctx = ctx
        self.timeout = timeout
        self.idle_timeout = idle_timeout
        self.open = {k: 0 for k in ports}
        self.open_total = 0
        self.peak = {k: 0 for k in ports}
        self.peak_total = 0

    def opened(self, inst):
        self.open[inst] += 1
        self.open_total += 1
        self.peak[inst] = max(self.peak[inst], self.open[inst])
        self.peak_total = max(self.peak_total, self.open_total)

    def closed(self, inst):
        self.open[inst] -= 1
        self.open_total -= 1


async def run_session(plan: Plan, env: Env) -> dict:
    res = dict(sid=plan.sid, inst=plan.inst, mode=plan.mode, tls=False, port=0,
               t0=time.time(), t1=None, end=None, error="", greeting=None, steps=[],
               msgs=[], pipelined=False, bdat=False, vanished=None, idled=None,
               sent_sha="", got_sha="", sent_n=0, got_n=0, quit_ok=False,
               vanish_k=plan.vanish[1] if plan.vanish else None,
               vanish_how=plan.vanish[2] if plan.vanish else None, reset_plan=plan.reset)
    for mid, content in plan.msgs:
        res["msgs"].append(dict(id=mid, sha256=hashlib.sha256(content).hexdigest(),
                                size=len(content), started=False, end_sent=False,
                                reply=None, k=len(res["msgs"]) + 1))
    thinks = iter(plan.think)
    link = None

    async def think():
        t = next(thinks, 0.0)
        if t > 0:
            await asyncio.sleep(t)

    def vanish_at(point, k=0):
        v = plan.vanish
        return v is not None and v[0] == point and (k == 0 or v[1] == k)

    class Left(Vanished):
        pass

    def leave(point):
        res["vanished"] = point
        link.abort(plan.vanish[2])
        return Left(point)

    port = env.ports[plan.inst]["tls" if plan.mode == "implicit" else "plain"]
    opened = False
    try:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port, limit=1 << 20,
                                        local_addr=(env.source, 0)), env.timeout)
        except (OSError, asyncio.TimeoutError) as e:
            res["end"], res["error"] = "connect-failed", f"{type(e).__name__}: {e}"
            return res
        env.opened(plan.inst)
        opened = True
        link = Link(reader, writer, env.timeout)
        res["port"] = link.local_port()
        if vanish_at("connect"):
            raise leave("connect")

        async def tls_handshake():
            cut = None
            if vanish_at("handshake-partial"):
                cut = "partial"
            elif vanish_at("handshake-hello"):
                cut = "hello"
            try:
                await link.handshake(env.ctx, cut, lambda: leave(
                    "handshake-partial" if cut == "partial" else "handshake-hello"))
            except Left:
                raise
            res["tls"] = True

        if plan.mode == "implicit":
            await tls_handshake()
        code, lines = await link.reply()
        res["greeting"] = code
        if code != 220:
            res["end"] = "greeting-refused"
            await link.send(b"QUIT\r\n")
            return res
        if vanish_at("greeting"):
            raise leave("greeting")
        await think()
        name = f"s{plan.sid}"
        if plan.reset:
            name += f"-r{plan.reset[0]}{plan.reset[1]}"
        name += ".soak.test"
        if vanish_at("ehlo-partial"):
            await link.send(b"EHLO " + name[:3].encode())
            raise leave("ehlo-partial")
        await link.send(b"EHLO " + name.encode() + b"\r\n")
        code, lines = await link.reply()
        res["steps"].append(("EHLO", code))
        if code != 250:
            res["end"] = "ehlo-refused"
            return res
        caps = caps_of(lines)
        if plan.mode == "starttls":
            if b"STARTTLS" in caps:
                await think()
                await link.send(b"STARTTLS\r\n")
                code, _ = await link.reply()
                res["steps"].append(("STARTTLS", code))
                if code == 220:
                    await tls_handshake()
                    await link.send(b"EHLO " + name.encode() + b"\r\n")
                    code, lines = await link.reply()
                    res["steps"].append(("EHLO", code))
                    if code != 250:
                        res["end"] = "ehlo-refused"
                        return res
                    caps = caps_of(lines)
            else:
                res["steps"].append(("STARTTLS", "not offered"))
        if plan.idle and plan.idle[0] == "ehlo":
            res["idled"] = "ehlo"
            code, _ = await link.reply()  # smtptap's idle 421, then it closes
            res["steps"].append(("idle", code))
            await link.wait_closed(10)
            res["end"] = "idle-closed"
            return res

        pipelining = plan.pipeline and b"PIPELINING" in caps
        use_bdat = plan.bdat and b"CHUNKING" in caps
        eightbit = b"8BITMIME" in caps
        for m, (mid, content) in zip(res["msgs"], plan.msgs):
            k = m["k"]
            await think()
            if k > 1 and plan.rset_between:
                # the seed decides, so a rerun with --seed does the same
                pick = (plan.seed * 7919 + k) % 10
                if pick < 2:
                    await link.send(b"RSET\r\n")
                    res["steps"].append(("RSET", (await link.reply())[0]))
                elif pick < 4:
                    await link.send(b"NOOP\r\n")
                    res["steps"].append(("NOOP", (await link.reply())[0]))
            m["started"] = True
            mail = f"MAIL FROM:<s{plan.sid}@client.soak.test>".encode()
            if eightbit:
                mail += b" BODY=8BITMIME"
            rcpts = [f"RCPT TO:<r{j}-{plan.sid}@dest.soak.test>".encode()
                     for j in range(1 + (plan.seed + k) % 3)]
            if vanish_at("midcmd", k):
                await link.send(mail[:11])  # "MAIL FROM:<", no CRLF
                raise leave("midcmd")
            chunks = []
            if use_bdat:
                size = len(content)
                n = 1 + (plan.seed + k) % 3
                cuts = sorted({0, size} | {(size * i) // n for i in range(1, n)})
                chunks = [content[a:b] for a, b in zip(cuts, cuts[1:])] or [b""]
            if pipelining:
                res["pipelined"] = True
                batch = [mail] + rcpts
                if not use_bdat:
                    batch.append(b"DATA")
                await link.send(b"".join(c + b"\r\n" for c in batch))
                if vanish_at("mail", k):
                    raise leave("mail")
                codes = []
                for c in batch:
                    codes.append((await link.reply())[0])
                res["steps"].append(("PIPE", tuple(codes)))
                ok = codes[0] == 250 and any(c == 250 for c in codes[1:1 + len(rcpts)])
                data_ok = (not use_bdat) and codes[-1] == 354
                if not use_bdat and not data_ok:
                    continue
                if use_bdat and not ok:
                    await link.send(b"RSET\r\n")
                    res["steps"].append(("RSET", (await link.reply())[0]))
                    continue
            else:
                await link.send(mail + b"\r\n")
                code, _ = await link.reply()
                res["steps"].append(("MAIL", code))
                if vanish_at("mail", k):
                    raise leave("mail")
                if code != 250:
                    continue
                good = 0
                for r in rcpts:
                    await think()
                    await link.send(r + b"\r\n")
                    code, _ = await link.reply()
                    res["steps"].append(("RCPT", code))
                    good += code == 250
                if not good:
                    await link.send(b"RSET\r\n")
                    res["steps"].append(("RSET", (await link.reply())[0]))
                    continue
                if not use_bdat:
                    await link.send(b"DATA\r\n")
                    code, _ = await link.reply()
                    res["steps"].append(("DATA", code))
                    if code != 354:
                        continue
            await think()
            if use_bdat:
                res["bdat"] = True
                replies = []
                for i, ch in enumerate(chunks):
                    last = i == len(chunks) - 1
                    cmd = b"BDAT %d%s\r\n" % (len(ch), b" LAST" if last else b"")
                    if vanish_at("body", k) and i == len(chunks) // 2:
                        await link.send(cmd + ch[:len(ch) // 2])
                        raise leave("body")
                    if vanish_at("nodot", k) and last:
                        await link.send(cmd + ch[:-1] if ch else cmd)
                        raise leave("nodot")
                    if plan.idle and plan.idle == ("body", k) and last:
                        await link.send(cmd + ch[:len(ch) // 2])
                        res["idled"] = "body"
                        break
                    await link.send(cmd + ch)
                    if last:
                        m["end_sent"] = True
                        if vanish_at("dot", k):
                            raise leave("dot")
                    if not pipelining or last:
                        # non-pipelined: each chunk's reply before the next; pipelined: all
                        # chunks out, then every reply
                        want = 1 if not pipelining else len(chunks)
                        for _ in range(want):
                            replies.append((await link.reply())[0])
                        if not pipelining and replies[-1] != 250:
                            break
                if res["idled"] == "body":
                    code, _ = await link.reply()
                    res["steps"].append(("idle", code))
                    await link.wait_closed(10)
                    res["end"] = "idle-closed"
                    return res
                res["steps"].append(("BDAT", tuple(replies)))
                if m["end_sent"] and len(replies) == len(chunks):
                    # RFC 3030: a chunk refused fails the transaction, whatever LAST got
                    m["reply"] = next((c for c in replies if c != 250), replies[-1])
                else:
                    await link.send(b"RSET\r\n")
                    res["steps"].append(("RSET", (await link.reply())[0]))
                continue
            data = stuff(content)
            # the body in a few pieces, with a pause now and then
            pieces = 1 + (plan.seed + k) % 4
            step = max(1, len(data) // pieces)
            parts = [data[i:i + step] for i in range(0, len(data), step)]
            body_so_far = 0
            for i, part in enumerate(parts):
                last = i == len(parts) - 1
                if vanish_at("body", k) and (i == len(parts) // 2):
                    await link.send(part[:len(part) // 2])
                    raise leave("body")
                if last and vanish_at("nodot", k):
                    await link.send(part[:-3])  # the whole message, not ".\r\n"
                    raise leave("nodot")
                if last and plan.idle == ("body", k):
                    await link.send(part[:len(part) // 2])
                    res["idled"] = "body"
                    code, _ = await link.reply()
                    res["steps"].append(("idle", code))
                    await link.wait_closed(10)
                    res["end"] = "idle-closed"
                    return res
                await link.send(part)
                body_so_far += len(part)
                if not last and i == 0 and len(parts) > 2:
                    await think()
            m["end_sent"] = True
            if vanish_at("dot", k):
                raise leave("dot")
            code, _ = await link.reply()
            m["reply"] = code
            res["steps"].append(("END", code))
        await think()
        if vanish_at("quit"):
            await link.send(b"QUIT\r\n")
            raise leave("quit")
        await link.send(b"QUIT\r\n")
        code, _ = await link.reply()
        res["steps"].append(("QUIT", code))
        res["quit_ok"] = code == 221
        await link.wait_closed(5)
        res["end"] = "quit"
    except Vanished:
        res["end"] = "vanished"
    except Closed as e:
        res["end"], res["error"] = "closed", str(e)
    except ClientTimeout as e:
        res["end"], res["error"] = "client-timeout", str(e)
    except Exception as e:  # noqa: BLE001 - a bug in the client is reported, not hidden
        res["end"], res["error"] = "client-error", f"{type(e).__name__}: {e}"
    finally:
        if link is not None:
            res["sent_sha"], res["got_sha"] = link.sent.hexdigest(), link.got.hexdigest()
            res["sent_n"], res["got_n"] = link.sent_n, link.got_n
            if res["end"] != "vanished":
                link.abort("close")
        if opened:
            env.closed(plan.inst)
        res["t1"] = time.time()
    return res


# ---- messages -------------------------------------------------------------------------------

def make_message(rng, mid: str, sid: int, size: int) -> bytes:
    """A message of about SIZE bytes with CRLF line ends only: lines of printable text,
    lines that start with a dot (dot-stuffing), lone dots, 8-bit lines, empty lines and an
    occasional 998-octet line."""
    head = (f"From: <s{sid}@client.soak.test>\r\nTo: <r0-{sid}@dest.soak.test>\r\n"
            f"Subject: soak {mid}\r\nMessage-ID: <{mid}@soak.test>\r\nX-Soak-Id: {mid}\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Transfer-Encoding: 8bit\r\n\r\n").encode()
    out = [head]
    n = len(head)
    pool = base64.b64encode(rng.randbytes(3 * 1024)).replace(b"/", b".")
    while n < size:
        r = rng.random()
        a = rng.randrange(0, len(pool) - 1000)
        if r < 0.04:
            line = b"." + pool[a:a + rng.randrange(0, 76)]
        elif r < 0.06:
            line = b"."
        elif r < 0.07:
            line = b".."
        elif r < 0.10:
            line = bytes(b | 0x80 for b in rng.randbytes(rng.randrange(1, 60)))
        elif r < 0.11:
            line = pool[a:a + 998]
        elif r < 0.14:
            line = b""
        else:
            line = pool[a:a + rng.randrange(1, 77)]
        out.append(line + b"\r\n")
        n += len(line) + 2
    return b"".join(out)
