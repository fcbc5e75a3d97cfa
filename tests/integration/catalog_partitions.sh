#!/usr/bin/env bash
# Catalogue (issue 2, item 3): the daemon itself keeps the current and the
# next month's assets partitions in place. After `migrate`, both are dropped
# (an operator's mistake, or a database migrated long ago): `mam-ingest run`
# creates them again at start, before it records anything, so a file dropped
# right away lands in this month's partition, not the DEFAULT one.
. "$MAM_SRC/tests/lib/common.sh"
. "$MAM_SRC/tests/integration/lib_ingest.sh"
ing_require
pg_start
mkdir -p "$T/drop"
{
	cfg_header 200
	printf 'tenants:\n  - code: p1\n    name: P1\n    drop_folders:\n      - path: %s\n' "$T/drop"
} >"$T/cfg.yaml"
cfg_finish "$T/cfg.yaml"
ing_migrate "$T/cfg.yaml"

this=$(psql_q "SELECT to_char(current_date, 'YYYY_MM')")
next=$(psql_q "SELECT to_char(current_date + interval '1 month', 'YYYY_MM')")
has_part() { [ "$(psql_q "SELECT count(*) FROM pg_class WHERE relname = '$1'")" = 1 ]; }
has_part "assets_$this" || fail "migrate made no assets_$this"
psql_q "DROP TABLE assets_$this; DROP TABLE assets_$next" >/dev/null
has_part "assets_$this" && fail "assets_$this still exists after DROP"

daemon_run "$T/cfg.yaml"
wait_for 60 "assets_$this created by the daemon" has_part "assets_$this"
wait_for 60 "assets_$next created by the daemon" has_part "assets_$next"
head -c 5000 /dev/urandom >"$T/drop/clip.bin"
wait_assets 60 p1 1
assert_eq "$(psql_q "SELECT tableoid::regclass FROM assets WHERE title = 'clip.bin'")" "assets_$this" \
	"partition of the new asset"
assert_eq "$(psql_q "SELECT count(*) FROM assets_default")" 0 "rows in the default partition"
daemon_term "$DPID"
log "PASS"
