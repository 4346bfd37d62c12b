#!/usr/bin/env bash
# capture_floor.sh - what the capture targets leave to spend, against the least the files
# can cost here. A measurement, not a test: run it on a quiet machine.
#
#   tests/bench/capture_floor.sh [SMTPTAP] [--dir DIR] [--reps N]
#
#   SMTPTAP  default build-release/smtptap
#   --dir    where capture files go (default: a new directory under $TMPDIR or /tmp, the
#            file system bench.py's captures use)
#   --reps   repeats of each load, median reported (default 3)
#
# For each of the capture issue's two loads (4 KiB messages, one connection each:
# smtp-source -s 10 -m 3000; 20 MB messages: -s 2 -m 10) it measures the whole machine's
# CPU time (all processes: client, server, relay; /proc/stat) per message through smtptap
# -q and through smtptap with every capture format, and the rate of each. A target of
# R times -q's rate on a machine that stays as busy leaves (1/R - 1) of -q's CPU per
# message for capturing; with every core busy (no wait anywhere: a bound, not a way to
# run), cores x -q's wall time per message / R, less -q's CPU. capture_floor.c then does only the system calls the capture
# contract asks for (the files created 0600, written once per reply, closed; for 20 MB the
# 64 MB of files and the SHA-256 the summary shows), and its CPU per message is the floor
# no code of smtptap's can go under on this file system. On ext4 without a journal (this
# machine's) it is measured twice: in a new directory, and right after deleting as many
# files (ext4 then skips the inodes it freed recently, scanning past each). For the 4 KiB
# load it also times jansson (the JSON library the issue asks for) encoding a session's 61
# jsonl events, without any file.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export PATH="$PATH:/usr/sbin:/sbin"
tap=$root/build-release/smtptap
base=${TMPDIR:-/tmp}
reps=3
while [ $# -gt 0 ]; do
    case "$1" in
    --dir) base=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) tap=$1; shift ;;
    esac
done
for t in smtp-source smtp-sink cc; do
    command -v $t >/dev/null || { echo "capture_floor.sh: $t is missing (postfix, gcc)" >&2; exit 2; }
done
[ -x "$tap" ] || { echo "capture_floor.sh: no smtptap at $tap" >&2; exit 2; }
work=$(mktemp -d -p "$base" capture-floor.XXXXXX)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
cc -O2 -o "$work/capture_floor" "$here/capture_floor.c" -lcrypto -ljansson
hz=$(getconf CLK_TCK)
cores=$(nproc)

port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
busy() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; }

sp=$(port)
smtp-sink -u nobody "127.0.0.1:$sp" 4096 &
pids+=($!)

# run NAME LOAD SMTPTAP-OPTIONS...: prints "seconds machine-cpu-seconds" of each repeat
run() {
    local name=$1 load=$2
    shift 2
    local tp src
    tp=$(port)
    case "$load" in
    small) src=(-s 10 -m 3000 -l 4096) ;;
    big) src=(-s 2 -m 10 -l 20000000) ;;
    esac
    "$tap" -l "127.0.0.1:$tp" -u "plain:127.0.0.1:$sp" "$@" 2>"$work/$name.log" &
    local tap_pid=$!
    pids+=($tap_pid)
    for _ in $(seq 100); do grep -q "listening on" "$work/$name.log" && break; sleep 0.1; done
    for _ in $(seq "$reps"); do
        local b0 b1 s0 s1
        b0=$(busy)
        s0=$(date +%s.%N)
        smtp-source "${src[@]}" "127.0.0.1:$tp"
        s1=$(date +%s.%N)
        b1=$(busy)
        echo "$(echo "$s1 - $s0" | bc) $(echo "($b1 - $b0) / $hz" | bc -l)"
    done
    kill $tap_pid
    wait $tap_pid 2>/dev/null || true
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "capture_floor: smtptap $tap; capture files under $work; $cores cores; $reps repeats" >&2
# The floor in a new directory first, before this script deletes anything.
mkdir "$work/f1" "$work/f2" "$work/f3"
floor_small_new=$("$work/capture_floor" small "$work/f1" 3000)
declare -A wall cpu
for load in small big; do
    n=3000
    [ $load = big ] && n=10
    for path in q all; do
        opts=(-q)
        [ $path = all ] && opts=(-q -d "$work/cap-$load" --format text,jsonl,pcap,eml)
        out=$(run "$path-$load" $load "${opts[@]}")
        wall[$path-$load]=$(echo "$out" | awk '{print $1}' | median)
        cpu[$path-$load]=$(echo "$out" | awk -v n=$n '{printf "%.1f\n", $2 / n * 1e6}' | median)
        [ $load = big ] && rm -rf "$work/cap-$load" # 40 big files: no inode scan after
    done
done

rm -rf "$work/f1"
floor_small_del=$("$work/capture_floor" small "$work/f2" 3000)
read -r floor_files floor_sha < <("$work/capture_floor" big "$work/f3" 3)
floor_jsonl=$("$work/capture_floor" jsonl - 3000)

echo
echo "| load | -q: machine CPU per msg (busy) | every format: machine CPU per msg | every format vs -q (rate) | target | CPU left per msg for capturing at the target: as busy as -q, or every core busy | floor (no formatting of smtptap's) |"
echo "|---|---|---|---|---|---|---|"
row() { # load messages target floor-text name
    local q=${cpu[q-$1]} a=${cpu[all-$1]}
    local ratio left full busy
    ratio=$(echo "${wall[q-$1]} / ${wall[all-$1]}" | bc -l)
    left=$(echo "$q * (1 / $3 - 1)" | bc -l)
    # every core busy at the target's rate: cores x (-q's wall per message / target) - -q's CPU
    full=$(echo "$cores * ${wall[q-$1]} / $2 * 1000000 / $3 - $q" | bc -l)
    busy=$(echo "100 * $q / ($cores * ${wall[q-$1]} / $2 * 1000000)" | bc -l)
    printf "| %s | %.0f us (%.0f%%) | %.0f us (+%.0f) | %.2fx | %sx | %.0f us, or %.0f us | %s |\n" \
        "$5" "$q" "$busy" "$a" "$(echo "$a - $q" | bc -l)" "$ratio" "$3" "$left" "$full" "$4"
}
row small 3000 0.8 \
    "$(printf "files %.0f us (new directory) or %.0f us (after as many deletions); jansson encoding the jsonl %.0f us" \
        "$floor_small_new" "$floor_small_del" "$floor_jsonl")" "4 KiB, one connection each"
row big 10 0.9 "$(printf "%.0f us (64 MB of files %.0f, SHA-256 %.0f)" \
    "$(echo "$floor_files + $floor_sha" | bc -l)" "$floor_files" "$floor_sha")" "20 MB"
