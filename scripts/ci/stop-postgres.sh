#!/usr/bin/env bash
# Stops the test PostgreSQL server started by start-postgres.sh.
set -euo pipefail
DIR=${PG_TEST_DIR:-/tmp/polygate-test-pg}
BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -d "$DIR" ] && runuser -u postgres -- "$BIN/pg_ctl" -D "$DIR" -m fast -w stop >/dev/null 2>&1 || true
