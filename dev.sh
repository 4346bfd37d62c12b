#!/usr/bin/env bash
# dev.sh - the one entry point for people and CI: install what is missing (Debian 12),
# build, then run smtptap or its tests.
#   ./dev.sh run [SMTPTAP OPTIONS]   build and run (default: built-in sink on 127.0.0.1:2525)
#   ./dev.sh test [MESON TEST ARGS]  build and run the whole test suite
#   ./dev.sh test-asan               the same suite on an ASan+UBSan build
#   ./dev.sh test-valgrind           the timing-free integration tests under valgrind memcheck
#   ./dev.sh bench                   the benchmark in tests/bench (not a test)
#   ./dev.sh bench-tls               the TLS benchmark in tests/bench (not a test)
#   ./dev.sh bench-control           what the control API and its web page cost (tests/bench)
# Arguments are taken where the caller stands (./dev.sh run -d ./captures writes there): the
# script does not change directory. Meson and ninja print only when they fail. `run` and
# `test` share build/ (configured once with tests enabled; `run` builds only the binary).
set -euo pipefail
root=$(cd "$(dirname "$0")" && pwd)

BUILD_PKGS=(meson ninja-build pkg-config gcc libc6-dev libuv1-dev libssl-dev
            libcmocka-dev libjansson-dev libpcap-dev libh2o-dev scdoc)
TEST_PKGS=(swaks curl msmtp postfix python3 python3-aiosmtpd python3-pytest socat nftables
           iproute2 openssl procps libio-socket-inet6-perl libnet-ssleay-perl sasl2-bin
           python3-cryptography jq tshark systemd man-db util-linux
           chromium chromium-driver python3-selenium)
BENCH_PKGS=(haproxy socat postfix python3 procps)

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

install_missing() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' ||
            missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "dev.sh: installing ${missing[*]}" >&2
    as_root apt-get update -qq
    # smtp-sink and smtp-source come with postfix; it must not start a mail system here.
    echo "postfix postfix/main_mailer_type select No configuration" | as_root debconf-set-selections
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >&2
}

quietly() { # CMD...: run it; its output is shown (on stderr) only when it fails
    local out
    if ! out=$("$@" 2>&1); then
        printf '%s\n' "$out" >&2
        echo "dev.sh: failed: $*" >&2
        return 1
    fi
}

# options_differ DIR [meson options]: true when DIR is configured with another value for
# one of the -Dname=value / --name=value options given (meson configure would regenerate
# the build even when nothing changes).
options_differ() {
    local dir=$1
    shift
    /usr/bin/python3 - "$dir/meson-info/intro-buildoptions.json" "$@" <<'PY'
import json, sys
try:
    have = {o["name"]: o["value"] for o in json.load(open(sys.argv[1]))}
except (OSError, ValueError):
    sys.exit(0)
def text(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    return ",".join(v) if isinstance(v, list) else str(v)
for arg in sys.argv[2:]:
    name, _, value = arg.lstrip("-").removeprefix("D").partition("=")
    if name not in have or text(have[name]) != value:
        sys.exit(0)
sys.exit(1)
PY
}

build() { # build DIR TARGET|"" [meson options]: configure DIR when needed, then build
    local dir=$root/$1 target=$2
    shift 2
    if [ ! -f "$dir/build.ninja" ]; then
        quietly meson setup "$dir" "$root" "$@"
    elif options_differ "$dir" "$@"; then
        quietly meson configure "$dir" "$@"
    fi
    quietly ninja -C "$dir" ${target:+"$target"}
}

cmd=${1:-run}
[ $# -gt 0 ] && shift
case "$cmd" in
run)
    install_missing "${BUILD_PKGS[@]}"
    build build smtptap -Dtests=enabled # the same configuration as `test`: no rebuild between
    exec "$root/build/smtptap" "$@"
    ;;
test)
    install_missing "${BUILD_PKGS[@]}" "${TEST_PKGS[@]}"
    as_root "$root/tests/mta/install.sh" # Exim and OpenSMTPD beside Postfix (they conflict)
    build build "" -Dtests=enabled
    meson test -C "$root/build" --print-errorlogs "$@"
    ;;
test-asan)
    install_missing "${BUILD_PKGS[@]}" "${TEST_PKGS[@]}"
    as_root "$root/tests/mta/install.sh"
    build build-asan "" -Dtests=enabled -Db_sanitize=address,undefined -Db_lundef=false \
        --buildtype=debug
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        meson test -C "$root/build-asan" --print-errorlogs --timeout-multiplier 3 "$@"
    ;;
test-valgrind)
    install_missing "${BUILD_PKGS[@]}" "${TEST_PKGS[@]}" valgrind
    as_root "$root/tests/mta/install.sh"
    exec "$root/tests/valgrind/run.sh" "$@"
    ;;
bench)
    install_missing "${BUILD_PKGS[@]}" "${BENCH_PKGS[@]}"
    build build-release smtptap --buildtype=release -Dtests=disabled
    exec "$root/tests/bench/bench.sh" "$@"
    ;;
bench-tls)
    install_missing "${BUILD_PKGS[@]}" "${BENCH_PKGS[@]}" stunnel4 sslsplit openssl
    build build-release smtptap --buildtype=release -Dtests=disabled
    exec "$root/tests/bench/bench_tls.sh" "$@"
    ;;
bench-control)
    install_missing "${BUILD_PKGS[@]}" "${BENCH_PKGS[@]}"
    build build-release smtptap --buildtype=release -Dtests=disabled
    exec /usr/bin/python3 "$root/tests/bench/bench_control.py" --smtptap "$root/build-release/smtptap" "$@"
    ;;
*)
    echo "usage: ./dev.sh run|test|test-asan|test-valgrind|bench|bench-tls|bench-control [ARGS]" >&2
    exit 64
    ;;
esac
