#!/usr/bin/env bash
# Set up and start Postmaster: web on http://127.0.0.1:5000 and the fetch scheduler.
# Ctrl-C stops both within 10 s. SQLite in instance/ unless POSTMASTER_SQLALCHEMY_DATABASE_URI is set.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system-deps.sh run
bash scripts/venv.sh
export FLASK_APP=wsgi
.venv/bin/flask setup

host=${POSTMASTER_HOST:-127.0.0.1}
port=${POSTMASTER_PORT:-5000}
# A worker that is still booting misses the stop signal; gunicorn kills it after the graceful
# timeout, so keep that short. No control socket: it is one per user, and two instances (or the
# tests' own gunicorn) would fight over it.
.venv/bin/gunicorn --bind "$host:$port" --workers 2 --threads 4 --graceful-timeout 5 --no-control-socket \
  --access-logfile - wsgi:app &
web=$!
.venv/bin/python -m scheduler &
sched=$!

stop() {
  trap - INT TERM
  kill -TERM "$web" "$sched" 2>/dev/null || true
  # Both stop cleanly within seconds (the scheduler after its current batch). Past 8 s whatever
  # is left is killed: a killed fetch loses nothing, its mail is fetched again exactly once.
  for _ in $(seq 80); do
    if ! kill -0 "$web" 2>/dev/null && ! kill -0 "$sched" 2>/dev/null; then break; fi
    sleep 0.1
  done
  pkill -KILL -P "$web" 2>/dev/null || true
  kill -KILL "$web" "$sched" 2>/dev/null || true
  wait 2>/dev/null || true
  echo "Postmaster stopped."
  exit 0
}
trap stop INT TERM
echo "Postmaster runs on http://$host:$port (Ctrl-C stops the web app and the scheduler)"
set +e
wait -n "$web" "$sched"
stop
