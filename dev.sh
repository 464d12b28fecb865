#!/usr/bin/env bash
# The project's two entry points on a fresh machine (see README.md):
#   ./dev.sh demo   set up, bring up the local stack, run the demo of the whole system
#   ./dev.sh test   set up, lint and type-check, run every test against the real stack,
#                   then (without pytest arguments) the long fault run
# and the long fault run alone:
#   ./dev.sh faults INCENTIVES_FAULT_EVENTS (default 100,000) events through every fault
# and the benchmark (the speed figures, one table and bench-results.json; see README.md):
#   ./dev.sh bench [--quick] [--only PHASE,...] [--profile]
# Set-up is idempotent: a virtualenv in .venv with the project installed (re-installed when
# pyproject.toml changes); Kafka's jars and PostgreSQL's cluster are fetched and made by
# `incentives stack up`, which the tests call themselves.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=.venv

setup() {
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "dev.sh: Python 3.11 or newer is needed as \`$PYTHON\` (set PYTHON=...)" >&2
        exit 1
    fi
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    local stamp="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
    if [ ! -f "$stamp" ]; then
        "$VENV/bin/pip" install --quiet --upgrade pip
        "$VENV/bin/pip" install --quiet -e '.[dev]'
        rm -f "$VENV"/.installed-* && touch "$stamp"
    fi
}

# The benchmark's own dependencies (the `bench` extra), on top of the development ones.
setup_bench() {
    local stamp="$VENV/.installed-bench-$(sha256sum pyproject.toml | cut -c1-16)"
    if [ ! -f "$stamp" ]; then
        "$VENV/bin/pip" install --quiet -e '.[dev,bench]'
        touch "$stamp"
    fi
}

# The long fault run (tests/integration/test_faults.py, marker long_run); prints its figures.
faults() {
    INCENTIVES_FAULT_EVENTS="${INCENTIVES_FAULT_EVENTS:-100000}" \
        "$VENV/bin/python" -m pytest -m long_run tests/integration/test_faults.py "$@"
}

# Run "$@" against the local stack, and leave the stack as we found it: stop it afterwards
# only if we started it (the tests start it themselves).
on_stack() {
    local was_running=0 status=0
    "$VENV/bin/incentives" stack status | grep -q "Kafka .*: answering" && was_running=1
    "$@" || status=$?
    if [ "$was_running" = 0 ]; then "$VENV/bin/incentives" stack down || true; fi
    return "$status"
}

# The whole suite, then, when no pytest arguments narrow it, the long fault run.
suite() {
    local status=0 long=0
    "$VENV/bin/python" -m pytest "$@" || status=$?
    if [ "$#" = 0 ]; then faults || long=$?; fi
    if [ "$status" != 0 ]; then return "$status"; fi
    return "$long"
}

case "${1:-}" in
    demo)
        setup
        shift
        exec "$VENV/bin/incentives" demo "$@"
        ;;
    test)
        setup
        shift
        "$VENV/bin/ruff" check .
        "$VENV/bin/mypy"
        status=0
        on_stack suite "$@" || status=$?
        exit "$status"
        ;;
    faults)
        setup
        shift
        status=0
        on_stack faults "$@" || status=$?
        exit "$status"
        ;;
    bench)
        setup
        setup_bench
        shift
        status=0
        on_stack "$VENV/bin/python" -m benchmarks "$@" || status=$?
        exit "$status"
        ;;
    *)
        echo "usage: ./dev.sh demo | test [pytest args] | faults [pytest args] | bench [--quick]" >&2
        exit 2
        ;;
esac
