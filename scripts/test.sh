#!/usr/bin/env bash
# Run the whole test suite: lint, types and the import contract, then every test on SQLite
# and again on PostgreSQL, against real Dovecot, Chromium, nginx and PostgreSQL installed here.
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

echo "== tests on SQLite"
.venv/bin/python -m pytest "$@"
echo "== tests on PostgreSQL"
POSTMASTER_TEST_DB=postgres .venv/bin/python -m pytest "$@"
