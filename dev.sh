#!/usr/bin/env bash
# The project's two entry points on a fresh machine (see README.md):
#   ./dev.sh demo   set up, bring up the local stack, run the demo of the whole system
#   ./dev.sh test   set up, lint and type-check, run every test against the real stack
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
        # Leave the stack as we found it: stop it afterwards only if we started it.
        was_running=0
        "$VENV/bin/incentives" stack status | grep -q "Kafka .*: answering" && was_running=1
        status=0
        "$VENV/bin/python" -m pytest "$@" || status=$?
        if [ "$was_running" = 0 ]; then "$VENV/bin/incentives" stack down || true; fi
        exit "$status"
        ;;
    *)
        echo "usage: ./dev.sh demo | test [pytest args]" >&2
        exit 2
        ;;
esac
