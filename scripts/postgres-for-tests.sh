#!/usr/bin/env bash
# Makes a real PostgreSQL server available on 127.0.0.1:5432 for the store tests and prints the
# URL to reach it. Installs Debian's postgresql when missing and starts its cluster (needs root),
# and creates the role "aspire" (password "aspire") that may create the per-test databases.
set -euo pipefail
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "installing postgresql (apt-get)" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi
version="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$version main"; then
    pg_createcluster "$version" main >&2
fi
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    pg_ctlcluster "$version" main start >&2 || true
fi
for _ in $(seq 1 100); do
    pg_isready -q -h 127.0.0.1 -p 5432 && break
    sleep 0.1
done
pg_isready -q -h 127.0.0.1 -p 5432 || { echo "PostgreSQL did not start" >&2; exit 1; }
# The suite runs many nodes at once (each pools up to 8 connections): Debian's 100 is not enough.
if [ "$(su postgres -c "psql -qtAc 'SHOW max_connections'")" -lt 500 ]; then
    su postgres -c "psql -qc 'ALTER SYSTEM SET max_connections = 500'" >&2
    pg_ctlcluster "$version" main restart >&2
    for _ in $(seq 1 100); do
        pg_isready -q -h 127.0.0.1 -p 5432 && break
        sleep 0.1
    done
    pg_isready -q -h 127.0.0.1 -p 5432 || { echo "PostgreSQL did not restart" >&2; exit 1; }
fi
if ! su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname = 'aspire'\"" | grep -q 1; then
    su postgres -c "psql -qc \"CREATE ROLE aspire LOGIN CREATEDB PASSWORD 'aspire'\"" >&2
fi
echo "postgres://aspire:aspire@127.0.0.1:5432/postgres?sslmode=disable"
