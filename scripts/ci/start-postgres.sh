#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server for the test suite (no systemd here) and prints the URL
# to export as POLYGATE_TEST_PG_URL. Idempotent: reuses a running server on the same port.
set -euo pipefail
PORT=${PG_TEST_PORT:-5433}
DIR=${PG_TEST_DIR:-/tmp/polygate-test-pg}
BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$BIN" ] || { echo "PostgreSQL server binaries not found: apt-get install -y postgresql" >&2; exit 1; }
URL="postgres://polygate:polygate@127.0.0.1:${PORT}/polygate_test"
if runuser -u postgres -- "$BIN/pg_ctl" -D "$DIR" status >/dev/null 2>&1; then echo "$URL"; exit 0; fi
rm -rf "$DIR"; mkdir -p "$DIR"; chown postgres:postgres "$DIR"
runuser -u postgres -- "$BIN/initdb" -D "$DIR" -A trust -U postgres >/dev/null
runuser -u postgres -- "$BIN/pg_ctl" -D "$DIR" -l "$DIR/server.log" -w -t 60 \
  -o "-p $PORT -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c autovacuum=off" start >/dev/null
runuser -u postgres -- "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -q -c "CREATE ROLE polygate LOGIN CREATEDB PASSWORD 'polygate'" \
  -c "CREATE DATABASE polygate_test OWNER polygate" >/dev/null
echo "$URL"
