#!/usr/bin/env bash
# Run the whole test suite: lint, types and the import contract, then every test on SQLite
# and on PostgreSQL (side by side), against real Dovecot, Chromium, nginx and PostgreSQL installed here.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system-deps.sh test
bash scripts/venv.sh dev
eval "$(bash scripts/postgres.sh)"   # exports POSTMASTER_TEST_PG_URL

echo "== lint, types and the import contract"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy                 # webapp/ and scheduler/, settings in pyproject.toml
.venv/bin/lint-imports         # the layer contract in pyproject.toml

# The two passes run side by side: most of a test's time is spent waiting on servers and
# processes, not on the CPU, so together they take little longer than one. Each pass has
# its own databases, servers and free ports; the PostgreSQL log is shown when both are done.
pg_log="$(mktemp -t postmaster-tests-postgres.XXXXXX.log)"
echo "== tests on PostgreSQL, in the background (follow: tail -f $pg_log)"
POSTMASTER_TEST_DB=postgres .venv/bin/python -m pytest "$@" >"$pg_log" 2>&1 &
pg_pid=$!
trap 'kill "$pg_pid" 2>/dev/null || true' EXIT

echo "== tests on SQLite"
sqlite_status=0
.venv/bin/python -m pytest "$@" || sqlite_status=$?
pg_status=0
wait "$pg_pid" || pg_status=$?
trap - EXIT
echo "== tests on PostgreSQL (exit $pg_status)"
cat "$pg_log"
echo "== SQLite pass: exit $sqlite_status; PostgreSQL pass: exit $pg_status"
[ "$sqlite_status" -eq 0 ] && [ "$pg_status" -eq 0 ]
