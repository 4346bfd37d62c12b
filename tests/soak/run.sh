#!/bin/sh
# tests/soak/run.sh - soak smtptap (issue 16, item 2): thousands of concurrent sessions mixing
# plain, STARTTLS and implicit-TLS clients, starttls: and plain upstreams (aiosmtpd, Postfix
# smtp-sink, a server that resets), pipelined or not, random fault rules, clients that vanish
# and upstreams that reset; then every message, capture file, fd and the RSS are checked.
#
#   tests/soak/run.sh [--sessions N] [--seconds S] [--smtptap PATH] [--seed N] [options]
#
# --sessions N   concurrent sessions held during the load (default 300)
# --seconds S    length of the load phase (default 30); ended sessions are replaced
# --smtptap PATH the binary (default $SMTPTAP_BIN, else build/smtptap); an ASan build works:
#                its stderr is searched for sanitizer reports (RSS is then meaningless: use
#                --rss-slack with a large value)
# --seed N       repeat a run's session plans (fault draws also depend on timing)
# --break WHAT   lose-message | corrupt-message | kill-smtptap | hold-session |
#                truncate-capture: break something on purpose; the run must then fail
# --no-bdat-faults, --rss-slack MIB: step around smtptap defects the soak found (see
#                soak.py), for runs that must pass until they are fixed
# tests/soak/run.sh --help lists the rest. Exit status: 0 pass, 1 fail, 77 skip (no smtp-sink
# or aiosmtpd). Needs root only for smtp-sink's -u nobody; raises its open-file limit to the
# hard limit. A long run:
#   tests/soak/run.sh --sessions 2200 --seconds 600 --think 2 --smtptap build-soak/smtptap
export PYTHONDONTWRITEBYTECODE=1
exec /usr/bin/python3 "$(dirname "$0")/soak.py" "$@"
