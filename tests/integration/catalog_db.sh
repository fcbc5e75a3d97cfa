#!/bin/bash
# The catalogue's C side on a real loop against a real PostgreSQL: starts a
# throw-away cluster, migrates it with `mam-ingest migrate`, and runs the
# database tests of tests/unit/test_catalog.c (MAM_TEST_PG=1): 1,000 records
# in batches; PostgreSQL stopped with `pg_ctl stop -m fast` while records are
# held and started again (the driver runs MAM_TEST_PG_STOP/START); connections
# killed with pg_terminate_backend before and after their commit; statement
# errors; move confirmation and the start-up pending-move report; a multi-host
# conninfo whose first server is read-only (target_session_attrs=read-write). Every case
# ends with the exactly-once check (assets, locations, jobs, ledger rows).
. "$MAM_SRC/tests/lib/common.sh"

DRIVER=$MAM_BUILD/tests/test_catalog
[ -x "$DRIVER" ] || fail "test driver not built: $DRIVER"

# A read-only server first (pg_start exports the PG* of the last one started,
# so the main cluster comes second): target_session_attrs=read-write must skip it.
pg_start ro
psql_q "ALTER SYSTEM SET default_transaction_read_only = on" >/dev/null
psql_q "SELECT pg_reload_conf()" >/dev/null
RO_HOST=$PGHOST
pg_start
export MAM_TEST_MULTIHOST="host=$RO_HOST,$PGHOST port=5432,5432 dbname=mam user=postgres target_session_attrs=read-write application_name=mam_test_multi"
cat >"$T/cfg.yaml" <<CFG
database:
  conninfo: ""
tenants:
  - code: t
    name: T
    drop_folders:
      - path: $T/drop
CFG
chmod 600 "$T/cfg.yaml"
mkdir -p "$T/drop"
unset MAM_SQLDIR
migrate "$T/cfg.yaml" >/dev/null

if [ "$(id -u)" = 0 ]; then as=(runuser -u postgres --); else as=(); fi
export MAM_TEST_PG=1
export MAM_TEST_PG_STOP="${as[*]} $PGBIN/pg_ctl -D $T/pg/data -m fast -w stop >/dev/null"
export MAM_TEST_PG_START="${as[*]} $PGBIN/pg_ctl -D $T/pg/data -l $T/pg/server.log -w -t 60 start >/dev/null"
"$DRIVER" || fail "test_catalog with PostgreSQL failed"
