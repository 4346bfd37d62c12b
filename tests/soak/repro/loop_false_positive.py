#!/usr/bin/python3
"""Found by the soak (issue 16): a client whose source port equals the local port of one of
smtptap's upstream connections (to another address, so the kernel may give it out again) is
refused as a loop ("421 4.3.0 smtptap: loop"). As root, in a private network namespace with 8
ephemeral ports, so that the kernel soon gives a client such a port:

    unshare -n tests/soak/repro/loop_false_positive.py build/smtptap
"""
import socket, subprocess, sys, tempfile, threading, time
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
open("/proc/sys/net/ipv4/ip_local_port_range", "w").write("40000 40007")
up = socket.create_server(("127.0.0.1", 2600))
held = []
def serve():
    while True:
        c, _ = up.accept(); held.append(c); c.sendall(b"220 upstream.test ESMTP\r\n")
threading.Thread(target=serve, daemon=True).start()
tap = subprocess.Popen([sys.argv[1], "-l", "127.0.0.1:2525", "-u", "plain:127.0.0.1:2600",
                        "--color=never", "--ca-dir", tempfile.mkdtemp()],
                       stderr=subprocess.PIPE, text=True)
start = []  # the start lines, up to "listening on" (a sleep was too short under ASan)
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    line = tap.stderr.readline()
    start.append(line)
    if not line or " listening on " in line:
        break
clients = []
for i in range(8):  # until the 8 ports run out (each session takes two)
    try:
        c = socket.create_connection(("127.0.0.1", 2525))
    except OSError as e:
        print(f"client {i + 1}: {e}")
        break
    clients.append(c)
    print(f"client {i + 1} from port {c.getsockname()[1]}: {c.makefile().readline().strip()}")
    time.sleep(0.2)
tap.terminate(); out = tap.communicate()[1]
print("--- smtptap transcript ---"); print("".join(start) + out)
