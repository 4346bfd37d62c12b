#!/usr/bin/env bash
# dev.sh - the one entry point for people and CI: install what is missing (Debian 12),
# build, then run smtptap or its tests.
#   ./dev.sh run [SMTPTAP OPTIONS]   build and run (default: built-in sink on 127.0.0.1:2525)
#   ./dev.sh test [MESON TEST ARGS]  build and run the whole test suite
#   ./dev.sh test-asan               the same suite on an ASan+UBSan build
#   ./dev.sh bench                   the benchmark in tests/bench (not a test)
#   ./dev.sh bench-tls               the TLS benchmark in tests/bench (not a test)
set -euo pipefail
cd "$(dirname "$0")"

BUILD_PKGS=(meson ninja-build pkg-config gcc libc6-dev libuv1-dev libssl-dev
            libcmocka-dev libjansson-dev libpcap-dev)
TEST_PKGS=(swaks curl msmtp postfix python3 python3-aiosmtpd python3-pytest socat nftables
           iproute2 openssl procps libio-socket-inet6-perl libnet-ssleay-perl sasl2-bin
           python3-cryptography jq tshark)
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

build() { # build DIR [meson options]
    local dir=$1
    shift
    if [ -f "$dir/build.ninja" ]; then
        meson configure "$dir" "$@" >&2 # e.g. tests enabled after a ./dev.sh run
    else
        meson setup "$dir" "$@" >&2
    fi
    ninja -C "$dir" >&2
}

cmd=${1:-run}
[ $# -gt 0 ] && shift
case "$cmd" in
run)
    install_missing "${BUILD_PKGS[@]}"
    build build -Dtests=disabled
    exec build/smtptap "$@"
    ;;
test)
    install_missing "${BUILD_PKGS[@]}" "${TEST_PKGS[@]}"
    as_root tests/mta/install.sh # Exim and OpenSMTPD unpacked beside Postfix (they conflict)
    build build -Dtests=enabled
    meson test -C build --print-errorlogs "$@"
    ;;
test-asan)
    install_missing "${BUILD_PKGS[@]}" "${TEST_PKGS[@]}"
    as_root tests/mta/install.sh
    build build-asan -Dtests=enabled -Db_sanitize=address,undefined -Db_lundef=false \
        --buildtype=debug
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        meson test -C build-asan --print-errorlogs --timeout-multiplier 3 "$@"
    ;;
bench)
    install_missing "${BUILD_PKGS[@]}" "${BENCH_PKGS[@]}"
    build build-release --buildtype=release -Dtests=disabled
    exec tests/bench/bench.sh "$@"
    ;;
bench-tls)
    install_missing "${BUILD_PKGS[@]}" "${BENCH_PKGS[@]}" stunnel4 sslsplit openssl
    build build-release --buildtype=release -Dtests=disabled
    exec tests/bench/bench_tls.sh "$@"
    ;;
*)
    echo "usage: ./dev.sh run|test|test-asan|bench|bench-tls [ARGS]" >&2
    exit 64
    ;;
esac
