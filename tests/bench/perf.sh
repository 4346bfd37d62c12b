#!/usr/bin/env bash
# perf.sh - where smtptap's CPU time goes on a fixed load, sampled by perf (cpu-clock, so it
# works without hardware counters), and each thread's CPU time from /proc. A measurement,
# not a test; wall-clock based, so run it when the machine is quiet.
#
#   tests/bench/perf.sh SMTPTAP LOAD [-- SMTPTAP-OPTIONS...]
#
#   LOAD  small: 2,000 messages of 4 KiB, one connection each (smtp-source -s 10 -m 2000)
#         big:   10 messages of 20 MB, one connection each (smtp-source -s 2 -m 10)
#   SMTPTAP-OPTIONS  default: -q -d TMPDIR --format text,jsonl,pcap,eml
#
# Prints the wall time of the load, smtptap's CPU time per thread (utime+stime ticks), and
# perf report's top symbols per thread.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"
tap=$1
load=$2
shift 2
[ $# -gt 0 ] && [ "$1" = -- ] && shift
tmp=$(mktemp -d)
# KEEP_DIR=DIR: the capture files are moved there instead of deleted (ext4 without a journal
# makes file creation slow for 30 s after many deletions nearby: runs compared one after the
# other should not pay for the previous one's clean-up)
trap 'kill $sink_pid $tap_pid 2>/dev/null || true; [ -n "${KEEP_DIR:-}" ] && [ -d "$tmp/cap" ] && mv "$tmp/cap" "$KEEP_DIR/$(basename "$tmp")"; rm -rf "$tmp"' EXIT
if [ $# -gt 0 ]; then opts=("$@"); else
    opts=(-q -d "$tmp/cap" --format text,jsonl,pcap,eml)
fi
case "$load" in
small) src=(-s 10 -m 2000 -l 4096) ;;
big) src=(-s 2 -m 10 -l 20000000) ;;
*) echo "perf.sh: LOAD is small or big" >&2; exit 2 ;;
esac
port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
sp=$(port)
tp=$(port)
smtp-sink -u nobody "127.0.0.1:$sp" 4096 &
sink_pid=$!
"$tap" -l "127.0.0.1:$tp" -u "plain:127.0.0.1:$sp" "${opts[@]}" 2>"$tmp/tap.log" &
tap_pid=$!
for _ in $(seq 100); do grep -q "listening on" "$tmp/tap.log" && break; sleep 0.1; done
ticks() { for t in /proc/$tap_pid/task/*; do
    echo "$(basename "$t") $(awk '{print $14+$15}' "$t/stat")"; done; }
ticks >"$tmp/t0"
perf record -q -e cpu-clock -F 2000 -p $tap_pid -o "$tmp/perf.data" 2>/dev/null &
perf_pid=$!
sleep 0.3
start=$(date +%s.%N)
smtp-source "${src[@]}" "127.0.0.1:$tp"
end=$(date +%s.%N)
ticks >"$tmp/t1"
kill -INT $perf_pid
wait $perf_pid || true
echo "wall $(echo "$end - $start" | bc) s"
join "$tmp/t0" "$tmp/t1" | awk '{printf "thread %s: %d ticks\n", $1, $3 - $2}'
perf report -i "$tmp/perf.data" --sort pid,dso --stdio 2>/dev/null | grep -v "^#" | grep -v "^$" | head -12
perf report -i "$tmp/perf.data" --sort pid,sym --stdio 2>/dev/null | grep -v "^#" | grep -v "^$" | head -${TOP:-60}
