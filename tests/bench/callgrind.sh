#!/usr/bin/env bash
# callgrind.sh - instructions smtptap executes for a fixed load, counted by valgrind's
# callgrind (every thread together): a repeatable figure to compare two builds on a machine
# too busy for wall-clock timing. A measurement, not a test.
#
#   tests/bench/callgrind.sh SMTPTAP LOAD [OUT] [-- SMTPTAP-OPTIONS...]
#
#   LOAD   small: 200 messages of 4 KiB, one connection each (smtp-source -s 10 -m 200)
#          big:   2 messages of 20 MB, one connection each (smtp-source -s 2 -m 2)
#   OUT    the callgrind.out file to keep (default: a temp file, removed)
#   SMTPTAP-OPTIONS  default: -q -d TMPDIR --format text,jsonl,pcap,eml
#
# Prints the total instruction count (Ir) of smtptap; with OUT, callgrind_annotate OUT
# shows where they go.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"
tap=$1
load=$2
out=${3:-}
shift 2
[ $# -gt 0 ] && [ "$1" != -- ] && shift
[ $# -gt 0 ] && [ "$1" = -- ] && shift
tmp=$(mktemp -d)
trap 'kill $sink_pid $tap_pid 2>/dev/null || true; rm -rf "$tmp"' EXIT
[ -n "$out" ] || out=$tmp/callgrind.out
if [ $# -gt 0 ]; then opts=("$@"); else
    opts=(-q -d "$tmp/cap" --format text,jsonl,pcap,eml)
fi
case "$load" in
small) src=(-s 10 -m 200 -l 4096) ;;
big) src=(-s 2 -m 2 -l 20000000) ;;
*) echo "callgrind.sh: LOAD is small or big" >&2; exit 2 ;;
esac
port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
sp=$(port)
tp=$(port)
smtp-sink -u nobody "127.0.0.1:$sp" 4096 &
sink_pid=$!
valgrind --tool=callgrind --callgrind-out-file="$out" "$tap" -l "127.0.0.1:$tp" \
    -u "plain:127.0.0.1:$sp" "${opts[@]}" 2>"$tmp/tap.log" &
tap_pid=$!
for _ in $(seq 200); do
    grep -q "listening on" "$tmp/tap.log" 2>/dev/null && break
    sleep 0.1
done
smtp-source "${src[@]}" "127.0.0.1:$tp"
kill -TERM $tap_pid
wait $tap_pid || true
grep -m1 "^summary:\|^totals:" "$out" | awk '{print "Ir", $2}'
