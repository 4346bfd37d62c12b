#!/usr/bin/env bash
# tests/valgrind/run.sh [TEST ...] - the integration tests that do not depend on timing, with
# every smtptap they start running under valgrind's memcheck; fails on any valgrind error
# (an invalid read or write, a use of uninitialised memory, a bad free; descriptors are not
# tracked) or any definitely or indirectly lost block, as valgrind's own log of each process
# says, and on any log without its summary (a process killed before it could write one).
#
#   tests/valgrind/run.sh                      the subset below
#   tests/valgrind/run.sh test_sink test_auth  these modules (tests/integration/NAME.py)
#   tests/valgrind/run.sh 'test_cli.py::test_signal_exits_zero'   pytest node ids work too
#
# Builds build-valgrind/ (debug, tests enabled; $BUILD to change). Logs: $BUILD/valgrind/
# (one vg.PID.log per smtptap process; pytest's output in pytest.log).
#
# The subset is every module whose assertions do not depend on time or on the process's
# memory, which valgrind stretches 20-50x: left out are test_failures (idle, connect and
# shutdown timeouts measured), test_faults (delay, slow and stall measured), test_tls_flow and
# test_upgrade_edges (peak RSS read from /proc, ASan-aware bounds, tight waits),
# test_capture_pcap (20 MB messages, timestamps), test_transparent (smtptap runs from a script
# inside a network namespace, out of the wrapper's reach), test_mta (real MTAs with their
# own timeouts), test_watch (a summary's time within 10 ms of the end line's), test_control
# (streams closed within a second, 10,000 connections) and test_client_tls and test_web
# (clients and a browser with their own timeouts).
set -euo pipefail
cd "$(dirname "$0")/../.."

main() { # read whole before it runs: editing this file during a run cannot change the run

    BUILD=${BUILD:-build-valgrind}
    SUBSET=(test_cli test_sink test_relay test_bytes test_auth test_tls test_starttls
            test_upstream_starttls test_tls_matrix test_tls_hints test_repeated_hello
            test_mta_fixtures test_hardening test_capture_jsonl test_capture_eml test_lint_state
            test_exposure test_bdat_faults test_replay)

    command -v valgrind >/dev/null || {
        echo "run.sh: valgrind is not installed (apt-get install valgrind)" >&2
        exit 69
    }

    buildlog=$(mktemp)
    if ! {
        if [ -f "$BUILD/build.ninja" ]; then
            meson configure "$BUILD" -Dtests=enabled --buildtype=debug
        else
            meson setup "$BUILD" -Dtests=enabled --buildtype=debug
        fi && ninja -C "$BUILD" smtptap
    } >"$buildlog" 2>&1; then
        cat "$buildlog" >&2
        rm -f "$buildlog"
        exit 1
    fi
    rm -f "$buildlog"

    logs=$PWD/$BUILD/valgrind
    rm -rf "$logs"
    mkdir -p "$logs"

    tests=()
    for t in "${@:-${SUBSET[@]}}"; do
        case "$t" in
        */*) tests+=("$t") ;;
        *.py*) tests+=("tests/integration/$t") ;;
        *) tests+=("tests/integration/$t.py") ;;
        esac
    done

    export SMTPTAP_BIN=$PWD/$BUILD/smtptap
    # --error-exitcode: an error also changes smtptap's exit status, which the harness checks;
    # the logs are the verdict all the same (a process killed by SIGKILL writes no summary).
    export SMTPTAP_WRAPPER="valgrind --tool=memcheck --error-exitcode=99 --leak-check=full \
    --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect --track-fds=no \
    --num-callers=40 --suppressions=$PWD/tests/valgrind/smtptap.supp --log-file=$logs/vg.%p.log"
    export SMTPTAP_TIMEOUT_SCALE=${SMTPTAP_TIMEOUT_SCALE:-8}
    export PYTHONDONTWRITEBYTECODE=1

    start=$(date +%s)
    set +e
    /usr/bin/python3 -m pytest -q -p no:cacheprovider -o console_output_style=classic -rfEs \
        "${tests[@]}" 2>&1 | tee "$logs/pytest.log"
    pytest_rc=${PIPESTATUS[0]}
    set -e
    secs=$(($(date +%s) - start))

    # The verdict from valgrind's logs.
    nlogs=0 bad=0 incomplete=0
    for f in "$logs"/vg.*.log; do
        [ -e "$f" ] || continue
        nlogs=$((nlogs + 1))
        if ! grep -q "ERROR SUMMARY:" "$f"; then
            incomplete=$((incomplete + 1))
            echo "run.sh: $f: no ERROR SUMMARY (the process was killed, or is still running)" >&2
            continue
        fi
        if ! grep -q "ERROR SUMMARY: 0 errors" "$f" ||
            grep -Eq "(definitely|indirectly) lost: [1-9]" "$f"; then
            bad=$((bad + 1))
            echo "run.sh: ==== $f" >&2
            cat "$f" >&2
        fi
    done
    errors=$(cat "$logs"/vg.*.log 2>/dev/null |
        sed -n 's/.*ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' | awk '{s += $1} END {print s + 0}')
    definite=$(cat "$logs"/vg.*.log 2>/dev/null |
        sed -n 's/.*definitely lost: \([0-9,]*\) bytes.*/\1/p' | tr -d , | awk '{s += $1} END {print s + 0}')
    indirect=$(cat "$logs"/vg.*.log 2>/dev/null |
        sed -n 's/.*indirectly lost: \([0-9,]*\) bytes.*/\1/p' | tr -d , | awk '{s += $1} END {print s + 0}')
    summary=$(grep -E '^[0-9]+ (passed|failed)|^=+ .*(passed|failed|error)' "$logs/pytest.log" |
        tail -1 | tr -d '=' | sed 's/^ *//;s/ *$//')
    echo "valgrind: ${summary:-no pytest summary}; $nlogs smtptap processes under valgrind," \
        "$errors errors, $definite bytes definitely and $indirect indirectly lost," \
        "$bad logs with findings, $incomplete without a summary; ${secs}s (logs: $logs)"
    [ "$pytest_rc" -eq 0 ] && [ "$nlogs" -gt 0 ] && [ "$bad" -eq 0 ] && [ "$incomplete" -eq 0 ]
}

main "$@"
exit $?
