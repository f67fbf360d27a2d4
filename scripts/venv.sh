#!/usr/bin/env bash
# Create .venv and install the requirements when they changed. Called by run.sh and test.sh.
#   scripts/venv.sh        requirements.txt (what a server needs)
#   scripts/venv.sh dev    requirements-dev.txt (that, plus the test and lint tools)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }
runtime=$(hash_of requirements.txt)
dev=$(hash_of requirements.txt requirements-dev.txt)
have=$(cat .venv/.requirements.sha256 2>/dev/null || true)
# A dev install covers the runtime requirements, so run.sh after test.sh installs nothing.
if [ "${1:-}" = "dev" ]; then file=requirements-dev.txt; want="dev:$dev"; else
  file=requirements.txt; want="run:$runtime"
  [ "$have" = "dev:$dev" ] && exit 0
fi
if [ "$have" != "$want" ]; then
  .venv/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
  .venv/bin/pip install -q -r "$file"
  echo "$want" > .venv/.requirements.sha256
fi
