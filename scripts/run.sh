#!/usr/bin/env bash
# Set up and start Postmaster: web on http://127.0.0.1:5000 and the fetch scheduler.
# Ctrl-C stops both. SQLite in instance/ unless POSTMASTER_SQLALCHEMY_DATABASE_URI is set.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system-deps.sh run
bash scripts/venv.sh
export FLASK_APP=wsgi
.venv/bin/flask setup

host=${POSTMASTER_HOST:-127.0.0.1}
port=${POSTMASTER_PORT:-5000}
.venv/bin/gunicorn --bind "$host:$port" --workers 2 --threads 4 --access-logfile - wsgi:app &
web=$!
.venv/bin/python -m scheduler &
sched=$!
trap 'kill -TERM $web $sched 2>/dev/null; wait $web $sched 2>/dev/null; exit 0' INT TERM
echo "Postmaster runs on http://$host:$port (Ctrl-C stops the web app and the scheduler)"
wait -n $web $sched
kill -TERM $web $sched 2>/dev/null || true
wait
