#!/usr/bin/env bash
# Run the whole test suite: lint, then every test on SQLite and again on PostgreSQL,
# against real Dovecot, Chromium, nginx and PostgreSQL installed by this script.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system-deps.sh test
bash scripts/venv.sh dev
eval "$(bash scripts/postgres.sh)"   # exports POSTMASTER_TEST_PG_URL

.venv/bin/ruff check .
.venv/bin/ruff format --check .

echo "== tests on SQLite"
.venv/bin/python -m pytest "$@"
echo "== tests on PostgreSQL"
POSTMASTER_TEST_DB=postgres .venv/bin/python -m pytest "$@"
