#!/usr/bin/env bash
# bench.sh - smtptap's benchmark on loopback: throughput against direct, haproxy and socat,
# memory per idle session, peak memory under backpressure. A measurement, not a test: it
# exits 0 whatever the numbers, non-zero only when a run breaks.
#
#   tests/bench/bench.sh [--install] [--smtptap PATH] [--compare PATH] [--reps N] [--quick]
#                        [--only 1,2,3,4]
#
#   --install        apt-get install what is missing (postfix for smtp-source/smtp-sink,
#                    haproxy, socat, python3); without it, missing tools are an error
#   --smtptap PATH   the binary to measure (default $SMTPTAP_BIN, else build-release/smtptap:
#                    meson setup build-release --buildtype=release -Dtests=disabled
#                    && ninja -C build-release smtptap)
#   --compare PATH   another smtptap binary (say, the build before a change), measured on
#                    the same loads in the same run, interleaved with the others (parts 1-2)
#   --reps N         repeats of each smtp-source measurement, median reported (default 3)
#   --quick          smaller loads (a smoke run of the script itself, not a measurement)
#   --only LIST      run only some parts: 1 small messages, 2 20 MB messages,
#                    3 idle sessions, 4 backpressure, 5 system calls per message (strace)
#   --sessions N     idle sessions in part 3 (default 10000)
#
# Everything else (processes, ports, limits, temp dirs) is handled by bench.py, which this
# script runs with /usr/bin/python3.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export PATH="$PATH:/usr/sbin:/sbin"

install=0
args=()
for a in "$@"; do
    case "$a" in
    --install) install=1 ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *) args+=("$a") ;;
    esac
done

missing=()
{ command -v smtp-source && command -v smtp-sink; } >/dev/null 2>&1 || missing+=(postfix)
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
command -v socat >/dev/null 2>&1 || missing+=(socat)
[ -x /usr/bin/python3 ] || missing+=(python3)

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$install" -eq 0 ]; then
        echo "bench.sh: missing ${missing[*]}; run with --install (apt-get) or install them" >&2
        exit 2
    fi
    if [ "$(id -u)" -ne 0 ]; then
        echo "bench.sh: --install needs root" >&2
        exit 2
    fi
    echo "bench.sh: installing ${missing[*]}" >&2
    apt-get update -qq
    # smtp-source and smtp-sink come with postfix; it must not set up a mail system here.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >&2
fi

exec /usr/bin/python3 "$here/bench.py" ${args[@]+"${args[@]}"}
