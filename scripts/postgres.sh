#!/usr/bin/env bash
# Make sure a PostgreSQL server answers on 127.0.0.1:5432 and print the test URL as an export.
# A fresh Debian postgresql has password auth on 127.0.0.1: the superuser gets a test password.
set -euo pipefail
url="postgresql+psycopg://postgres@127.0.0.1:5432"
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  cluster=$(ls /etc/postgresql | sort -V | tail -n 1)
  pg_ctlcluster --skip-systemctl-redirect "$cluster" main start >&2
  for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
if ! psql "postgresql://postgres@127.0.0.1:5432/postgres" -Atc 'select 1' >/dev/null 2>&1; then
  # PostgreSQL refuses to run as root; talk to it as its own user through the socket.
  su postgres -c "psql -qc \"ALTER USER postgres PASSWORD 'postgres'\"" >&2
  url="postgresql+psycopg://postgres:postgres@127.0.0.1:5432"
fi
echo "export POSTMASTER_TEST_PG_URL='$url'"
