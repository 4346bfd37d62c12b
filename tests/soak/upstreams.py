#!/usr/bin/python3
"""The soak's own upstream servers, each run as a process of its own by soak.py.

    upstreams.py aio   --records FILE --cert PEM --key PEM [--break lose|corrupt]
    upstreams.py reset --records FILE --seed N --accept-reset P

Each listens on 127.0.0.1 (a free port, backlog 4096), prints {"port": N} on stdout once it
accepts, appends one JSON object per line to FILE (flushed at once) and runs until SIGTERM.

aio    aiosmtpd (the integration harness's TapSMTP, so CHUNKING/BDAT too) with PIPELINING and
       STARTTLS (certificate PEM/KEY): the upstream behind smtptap's `-u starttls:`. Every
       message is recorded as {"kind": "msg", "id", "sha256", "size", "via"}: the SHA-256 of
       the bytes as the server received them (DATA dot-unstuffed, BDAT chunks joined), id from
       the message's X-Soak-Id header. --break makes it misbehave on purpose (to show that
       the soak notices): lose = the 5th message is answered 250 and not recorded; corrupt =
       the 5th message is recorded with one byte less.
reset  a scripted ESMTP server (PIPELINING, 8BITMIME) that delivers like aio, except that it
       resets connections (RST: SO_LINGER 0, then close) where the client asked for it in its
       EHLO name, s<sid>-r<point><k>.soak.test: point is ehlo, mail, rcpt, data (on that
       command of the k-th transaction), body (after 2 lines of the k-th message), dot (after
       the k-th message's final dot, not recorded, no reply) or after (the 250 for the k-th
       message is sent, then the reset). Besides, it resets a connection before its greeting
       with probability P (--accept-reset). Records: msg (as above), {"kind": "reset", "sid",
       "point", "k"}, {"kind": "accept-reset"}.
"""
import argparse
import asyncio
import hashlib
import json
import random
import re
import resource
import signal
import socket
import struct
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))

ID_RE = re.compile(rb"^X-Soak-Id: (\S+)\r$", re.M)
EHLO_RE = re.compile(rb"^s(\d+)(?:-r([a-z]+)(\d+))?\.soak\.test$")


class Records:
    def __init__(self, path):
        self.f = open(path, "a", buffering=1)

    def write(self, **obj):
        self.f.write(json.dumps(obj, separators=(",", ":")) + "\n")


def soak_id(content: bytes) -> str:
    head = content.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    m = ID_RE.search(head)
    return m.group(1).decode() if m else ""


def msg_record(content: bytes, via: str) -> dict:
    return dict(kind="msg", id=soak_id(content), sha256=hashlib.sha256(content).hexdigest(),
                size=len(content), via=via)


def rst(writer):
    """Abort the connection with a RST: SO_LINGER {1, 0}, then close."""
    sock = writer.get_extra_info("socket")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    writer.transport.abort()


async def serve_until_term(server, port):
    print(json.dumps({"port": port}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    server.close()


# ---- aio ---------------------------------------------------------------------------------

class AioHandler:
    def __init__(self, records, brk):
        self.records = records
        self.brk = brk
        self.n = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        return responses[:1] + ["250-PIPELINING", "250-CHUNKING"] + responses[1:]

    async def handle_DATA(self, server, session, envelope):
        content = bytes(envelope.original_content)
        self.n += 1
        rec = msg_record(content, getattr(envelope, "tap_via", "DATA"))
        if self.brk == "lose" and self.n == 5:
            pass  # answered, never recorded: a server that loses a message
        elif self.brk == "corrupt" and self.n == 5:
            self.records.write(**msg_record(content[:-1], rec["via"]))
        else:
            self.records.write(**rec)
        return f"250 2.0.0 OK queued as aio{self.n}"


async def main_aio(args):
    import ssl
    import harness
    TapController, _ = harness._aiosmtpd_classes()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(args.cert, args.key)
    handler = AioHandler(Records(args.records), args.brk)
    # The controller is used only for its factory (TapSMTP with these settings); the
    # server runs on this loop with a backlog that 2,000 concurrent connections need.
    ctl = TapController(handler, bdat=True, line_length_limit=1 << 20, command_size_limit=4096,
                        hostname="127.0.0.1", port=0, server_hostname="aio.soak.test",
                        tls_context=ctx, require_starttls=False, data_size_limit=64 << 20,
                        ident="ESMTP soak aiosmtpd", timeout=120, decode_data=False)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(ctl.factory, "127.0.0.1", 0, backlog=4096)
    await serve_until_term(server, server.sockets[0].getsockname()[1])


# ---- reset -------------------------------------------------------------------------------

class ResetServer:
    def __init__(self, records, seed, accept_reset):
        self.records = records
        self.rng = random.Random(seed)
        self.accept_reset = accept_reset
        self.n = 0

    async def handle(self, reader, writer):
        try:
            await self.session(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.transport.abort()

    async def session(self, reader, writer):
        if self.rng.random() < self.accept_reset:
            self.records.write(kind="accept-reset")
            return rst(writer)
        sid, point, k = None, None, 0
        mails = 0
        have_mail, rcpts = False, 0

        def reset_here(p):
            if point == p and mails == k:
                self.records.write(kind="reset", sid=sid, point=p, k=k)
                rst(writer)
                return True
            return False

        writer.write(b"220 reset.soak.test ESMTP soak scripted server\r\n")
        while True:
            line = await reader.readuntil(b"\r\n")
            verb = line[:4].upper()
            arg = line[4:].strip()
            if verb == b"EHLO" or verb == b"HELO":
                m = EHLO_RE.match(arg)
                if m:
                    sid = int(m.group(1))
                    if m.group(2):
                        point, k = m.group(2).decode(), int(m.group(3))
                if point == "ehlo":
                    mails = k  # "the k-th" does not apply here
                    if reset_here("ehlo"):
                        return
                if verb == b"EHLO":
                    writer.write(b"250-reset.soak.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
                                 b"250-SIZE 104857600\r\n250 ENHANCEDSTATUSCODES\r\n")
                else:
                    writer.write(b"250 reset.soak.test\r\n")
            elif verb == b"MAIL":
                mails += 1
                if reset_here("mail"):
                    return
                have_mail, rcpts = True, 0
                writer.write(b"250 2.1.0 Ok\r\n")
            elif verb == b"RCPT":
                if reset_here("rcpt"):
                    return
                if not have_mail:
                    writer.write(b"503 5.5.1 Error: need MAIL command\r\n")
                else:
                    rcpts += 1
                    writer.write(b"250 2.1.5 Ok\r\n")
            elif verb == b"DATA":
                if reset_here("data"):
                    return
                if not rcpts:
                    writer.write(b"503 5.5.1 Error: need RCPT command\r\n")
                    continue
                writer.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                body = []
                while True:
                    ln = await reader.readuntil(b"\r\n")
                    if ln == b".\r\n":
                        break
                    body.append(ln[1:] if ln.startswith(b".") else ln)
                    if len(body) == 2 and reset_here("body"):
                        return
                if reset_here("dot"):
                    return
                self.records.write(**msg_record(b"".join(body), "DATA"))
                self.n += 1
                writer.write(b"250 2.0.0 Ok: queued as R%d\r\n" % self.n)
                have_mail, rcpts = False, 0
                if point == "after" and mails == k:
                    await writer.drain()
                    reset_here("after")
                    return
            elif verb == b"RSET":
                have_mail, rcpts = False, 0
                writer.write(b"250 2.0.0 Ok\r\n")
            elif verb == b"NOOP":
                writer.write(b"250 2.0.0 Ok\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 2.0.0 Bye\r\n")
                await writer.drain()
                return
            else:
                writer.write(b"502 5.5.2 Error: command not recognized\r\n")
            await writer.drain()


async def main_reset(args):
    srv = ResetServer(Records(args.records), args.seed, args.accept_reset)
    server = await asyncio.start_server(srv.handle, "127.0.0.1", 0, backlog=4096,
                                        limit=1 << 21)
    await serve_until_term(server, server.sockets[0].getsockname()[1])


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="which", required=True)
    p = sub.add_parser("aio")
    p.add_argument("--records", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--break", dest="brk", choices=("lose", "corrupt"))
    p = sub.add_parser("reset")
    p.add_argument("--records", required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--accept-reset", type=float, default=0.0)
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(main_aio(args) if args.which == "aio" else main_reset(args))


if __name__ == "__main__":
    main()
