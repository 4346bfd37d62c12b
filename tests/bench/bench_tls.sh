#!/usr/bin/env bash
# bench_tls.sh - smtptap's TLS benchmark on loopback: TLS on both legs (implicit TLS or
# STARTTLS in, implicit TLS out) against direct TLS, a stunnel pair, haproxy and sslsplit,
# and against smtptap's plain relay; CPU per MB against `openssl speed`; memory per idle TLS
# session. smtp-source has no TLS, so stunnel adds it at both edges. A measurement, not a
# test: it exits 0 whatever the numbers (a third-party peer that fails is reported, not an
# error), non-zero only when a run breaks (smtptap, the edges or the load).
#
#   tests/bench/bench_tls.sh [--install] [--smtptap PATH] [--reps N] [--quick] [--only 1,2,3]
#
#   --install        apt-get install what is missing (postfix for smtp-source/smtp-sink,
#                    stunnel4, haproxy, sslsplit, openssl, python3); without it, missing
#                    tools are an error
#   --smtptap PATH   the binary to measure (default $SMTPTAP_BIN, else build-release/smtptap:
#                    meson setup build-release --buildtype=release -Dtests=disabled
#                    && ninja -C build-release smtptap)
#   --reps N         repeats of each smtp-source measurement, median reported (default 3)
#   --quick          smaller loads, 1 repeat (a smoke run of the script, not a measurement)
#   --only LIST      run only some parts: 1 small messages, 2 20 MB messages,
#                    3 idle TLS sessions
#   --sessions N     idle sessions in part 3 (default 10000; fewer when the open-file limit
#                    cannot hold them: smtptap needs 2 descriptors per session with a TLS
#                    upstream)
#
# Everything else (certificates, processes, ports, limits, temp dirs) is handled by
# bench_tls.py, which this script runs with /usr/bin/python3; it reuses bench.py's helpers.
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
{ command -v stunnel4 || command -v stunnel; } >/dev/null 2>&1 || missing+=(stunnel4)
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
command -v sslsplit >/dev/null 2>&1 || missing+=(sslsplit)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
[ -x /usr/bin/python3 ] || missing+=(python3)

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$install" -eq 0 ]; then
        echo "bench_tls.sh: missing ${missing[*]}; run with --install (apt-get) or install them" >&2
        exit 2
    fi
    if [ "$(id -u)" -ne 0 ]; then
        echo "bench_tls.sh: --install needs root" >&2
        exit 2
    fi
    echo "bench_tls.sh: installing ${missing[*]}" >&2
    apt-get update -qq
    # smtp-source and smtp-sink come with postfix; it must not set up a mail system here.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >&2
fi

exec /usr/bin/python3 "$here/bench_tls.py" ${args[@]+"${args[@]}"}
