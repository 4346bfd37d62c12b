#!/usr/bin/python3
"""Found by the soak (issue 16): a `reply` fault on a BDAT chunk.

    tests/soak/repro/bdat_fault.py build/smtptap

T1: MAIL, RCPT, BDAT 10, BDAT 4, BDAT 13 LAST pipelined; the fault answers BDAT 4 with 451 and
does not forward it, the server gets the other two chunks and queues a 23-byte message, while
the jsonl and eml captures show the 27 bytes the client sent as that delivery. T2: the fault
answers BDAT 27 LAST, the client sends RSET; T3's delivery is then paired with T2's message
(jsonl delivery.message 2, eml -2 holds T2's body with T3's envelope and reply, eml -3 says no
reply came)."""
import json, os, socket, subprocess, sys, tempfile, time, glob
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "integration"))
import harness
tap_bin = sys.argv[1]
tmp = tempfile.mkdtemp(prefix="repro-bdat-")
ca = harness.CertAuthority(tmp)
cert, key = ca.issue(["localhost", "127.0.0.1"])
rec = os.path.join(tmp, "server-records.jsonl")
up = subprocess.Popen(["/usr/bin/python3", os.path.join(HERE, "..", "upstreams.py"), "aio",
                       "--records", rec, "--cert", cert, "--key", key], stdout=subprocess.PIPE)
port = json.loads(up.stdout.readline())["port"]
cap = os.path.join(tmp, "cap")
tap = harness.Smtptap(["-u", f"plain:127.0.0.1:{port}", "-d", cap, "--format", "text,jsonl,eml",
                       "--fault", "BDAT 4: reply 451 4.3.0 chunk refused by a fault",
                       "--fault", "BDAT 27 LAST: reply 451 4.3.0 refused by a fault",
                       "--ca-dir", os.path.join(tmp, "tapca")], binary=tap_bin).start()
s = socket.create_connection((tap.host, tap.port)); f = s.makefile("rb")
def reply():
    lines = []
    while True:
        ln = f.readline(); lines.append(ln)
        if ln[3:4] != b"-": return lines[-1].decode().strip()
def send(b): s.sendall(b)
print("C: (greeting)", reply())
send(b"EHLO repro\r\n"); print("C: EHLO ->", reply())
m1 = b"X-Soak-Id: m1\r\n\r\nbody one\r\n"     # 27 bytes, sent as chunks of 10, 4, 13
send(b"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nBDAT 10\r\n" + m1[:10] + b"BDAT 4\r\n" + m1[10:14]
     + b"BDAT 13 LAST\r\n" + m1[14:])
print("T1 pipelined MAIL, RCPT, BDAT 10, BDAT 4, BDAT 13 LAST ->", [reply() for _ in range(5)])
m2 = b"X-Soak-Id: m2\r\n\r\nbody two\r\n"     # 27 bytes, one chunk: refused by the fault
send(b"MAIL FROM:<a@x>\r\n"); print("T2 MAIL ->", reply())
send(b"RCPT TO:<c@y>\r\n"); print("T2 RCPT ->", reply())
send(b"BDAT 27 LAST\r\n" + m2); print("T2 BDAT 27 LAST ->", reply())
send(b"RSET\r\n"); print("T2 RSET ->", reply())
m3 = b"X-Soak-Id: m3\r\n\r\nbody three\r\n"   # 29 bytes
send(b"MAIL FROM:<a@x>\r\n"); print("T3 MAIL ->", reply())
send(b"RCPT TO:<d@y>\r\n"); print("T3 RCPT ->", reply())
send(b"BDAT 29 LAST\r\n" + m3); print("T3 BDAT 29 LAST ->", reply())
send(b"QUIT\r\n"); print("QUIT ->", reply()); s.close()
tap.wait_session_end(); time.sleep(0.3); tap.stop(); up.terminate(); up.wait()
print("\nthe server (aiosmtpd) stored:")
for line in open(rec):
    r = json.loads(line); print(f"  id {r['id'] or '(none)'!r}, {r['size']} bytes")
print(f"  (T1 sent {len(m1)} bytes, id m1)")
print("\njsonl message and delivery events:")
for line in open(glob.glob(cap + "/*.jsonl")[0]):
    ev = json.loads(line)
    if ev["kind"] in ("message", "delivery", "fault"):
        x = ev.get("message") or ev.get("delivery") or ev.get("fault")
        print("  ", ev["kind"], json.dumps({k: x[k] for k in x if k in ("number", "size", "message", "rcpts", "reply", "rule")}))
print("\neml files:")
for e in sorted(glob.glob(cap + "/*.eml")):
    d = open(e, "rb").read()
    hd = [l for l in d.split(b"\r\n") if l.startswith((b"X-Smtptap-Rcpt-To", b"X-Smtptap-Reply", b"X-Soak-Id"))]
    print("  ", os.path.basename(e)[-6:], b" | ".join(hd).decode())
