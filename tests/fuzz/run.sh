#!/usr/bin/env bash
# tests/fuzz/run.sh [SECONDS] - builds the libFuzzer targets of tests/fuzz with clang into their
# own build directory (build-fuzz/, or $FUZZ_BUILD) and runs each for SECONDS (default 5) on a
# working copy of its seed corpus (tests/fuzz/corpus/TARGET), printing one line per target:
#   fuzz smtp_reply: 812345 executions in 5 s (162469/s): ok
# A target that finds something prints FAILED with the input it saved (in $BUILD/artifacts/)
# and the first lines of its report; replay it with: $BUILD/tests/fuzz/fuzz_TARGET FILE.
# Exits 0 when every target ran clean, 1 when one found something, 2 when it cannot build.
# FUZZ_TARGETS="smtp_in sink" runs only those.
set -uo pipefail
cd "$(dirname "$0")/../.."

seconds=${1:-5}
build=${FUZZ_BUILD:-build-fuzz}
targets=(${FUZZ_TARGETS:-smtp_in smtp_reply auth fault lint_message lint_state sink parse config capture_read replay control_request})
# dev.sh's build packages, clang and its libFuzzer runtime, and inih for the config target's
# comparison of ini_read with inih.
pkgs=(meson ninja-build pkg-config gcc libc6-dev libuv1-dev libssl-dev libcmocka-dev
      libjansson-dev libpcap-dev clang libclang-rt-dev libinih-dev)

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

install_missing() {
    local missing=() p
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' ||
            missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "fuzz: installing ${missing[*]}" >&2
    as_root apt-get update -qq &&
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >&2
}

build_targets() {
    if [ ! -f "$build/build.ninja" ]; then
        CC=clang meson setup "$build" -Dfuzz=enabled -Dtests=disabled \
            --buildtype=debugoptimized >&2 || return 1
    fi
    ninja -C "$build" >&2
}

# run_one TARGET: one line on stdout; returns 1 when the target found something.
run_one() {
    local t=$1 bin="$build/tests/fuzz/fuzz_$1" work="$build/corpus/$1" log="$build/logs/$1.log"
    mkdir -p "$work" "$build/artifacts" "$build/logs"
    UBSAN_OPTIONS=print_stacktrace=1 "$bin" -max_total_time="$seconds" -timeout=10 \
        -print_final_stats=1 -artifact_prefix="$build/artifacts/$t-" "$work" \
        "tests/fuzz/corpus/$t" >"$log" 2>&1
    local rc=$?
    local execs rate
    execs=$(grep -a -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
    rate=$(grep -a -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$')
    if [ $rc -eq 0 ]; then
        echo "fuzz $t: ${execs:-?} executions in $seconds s (${rate:-?}/s): ok"
        return 0
    fi
    local input
    input=$(grep -a -o "Test unit written to [^ ]*" "$log" | tail -1 | sed 's/Test unit written to //')
    echo "fuzz $t: ${execs:-?} executions: FAILED (exit $rc; input ${input:-none saved}; log $log)"
    grep -a -m3 -E '^fuzz:|ERROR: |runtime error|SUMMARY' "$log" | sed 's/^/    /'
    return 1
}

install_missing || { echo "fuzz: cannot install the build packages" >&2; exit 2; }
build_targets || { echo "fuzz: cannot build the targets (clang, -Dfuzz=enabled)" >&2; exit 2; }
failed=0
for t in "${targets[@]}"; do
    run_one "$t" || failed=1
done
exit $failed
