#!/usr/bin/env bash
# Faults (issue 9) and scale-out (issue 10, item 3): PostgreSQL fails over to
# a promoted streaming standby in the middle of a burst. The daemon's conninfo
# lists the standby FIRST (host=standby,primary with
# target_session_attrs=read-write), so libpq must skip it while it is a
# standby and pick it once it is promoted. The primary is killed (pg_ctl stop
# -m immediate: no shutdown checkpoint, commits not yet streamed may be lost)
# while files keep arriving, then the standby is promoted. Afterwards, on the
# promoted server: every file exactly once (check_invariant), nothing lost
# and nothing duplicated, and a file dropped after the failover is ingested.
. "${MAM_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/common.sh"
. "$MAM_SRC/tests/integration/lib_ingest.sh"
ing_require pg_basebackup

pg_start
PRIMARY_HOST=$PGHOST
SB=$T/pgsb
pg_add_standby "$SB"

mkdir -p "$T/drop" "$T/src"
CONNINFO="host=$SB/sock,$PRIMARY_HOST port=5432,5432 dbname=mam user=postgres target_session_attrs=read-write connect_timeout=5"
{
	cfg_header 300 | sed "s|  conninfo: \"\"|  conninfo: \"$CONNINFO\"|"
	printf 'tenants:\n  - code: fo\n    name: Failover\n    drop_folders:\n      - path: %s\n' "$T/drop"
} >"$T/cfg.yaml"
cfg_finish "$T/cfg.yaml"
grep -q "target_session_attrs" "$T/cfg.yaml" || fail "conninfo not in the config"
ing_migrate "$T/cfg.yaml"
# What the daemon does goes through the multi-host conninfo; the test's own
# queries go to whichever server is the primary at the time.
export PGHOST=$PRIMARY_HOST
_on_standby() { [ "$(PGHOST=$SB/sock psql_q "SELECT count(*) FROM schema_migrations")" -ge 1 ]; }
wait_for 60 "migrations replicated to the standby" _on_standby

daemon_run "$T/cfg.yaml"
# A writer drops files one by one (written beside the folder, renamed in)
# until told to stop: some before the failover, some while there is no
# primary, some after the promotion.
(
	i=0
	while [ ! -e "$T/stop-writer" ]; do
		i=$((i + 1))
		head -c $((2000 + RANDOM)) /dev/urandom >"$T/src/f$i.bin"
		mv "$T/src/f$i.bin" "$T/drop/"
		[ $((i % 20)) -ne 0 ] || sleep 0.05
	done
) &
WRITER=$!
n_assets() { psql_q "SELECT count(*) FROM assets" 2>/dev/null || echo 0; }
_at_least() { [ "$(n_assets)" -ge "$1" ]; }
wait_for 120 "100 files catalogued before the failover" _at_least 100
phase_begin "failover"
as_pg "$PGBIN/pg_ctl" -D "$T/pg/data" -m immediate -w stop >/dev/null
at_kill=$(ls "$T/drop" | wc -l)
log "primary killed with $at_kill files dropped"
as_pg "$PGBIN/pg_ctl" -D "$SB/data" -w -t 60 promote >/dev/null || fail "promote failed"
export PGHOST=$SB/sock
assert_eq "$(psql_q "SELECT pg_is_in_recovery()")" f "promoted standby out of recovery"
_more() { [ "$(ls "$T/drop" | wc -l)" -ge $((at_kill + 100)) ]; }
wait_for 120 "100 more files dropped after the failover" _more
touch "$T/stop-writer"
wait "$WRITER"
N=$(ls "$T/drop" | wc -l)
log "$N files dropped in all; on the promoted server after the failover: $(n_assets)"
wait_assets 180 fo "$N"
phase_end
echo after-failover >"$T/drop/after.txt"
wait_assets 60 fo $((N + 1))
daemon_alive "$DPID" || fail "daemon died during the failover"
daemon_term "$DPID"
manifest "$T/drop" >"$T/man"
check_invariant fo "$T/man" "metadata" "$T/drop"
assert_eq "$(psql_q "SELECT count(*) FROM ingest_ledger")" $((N + 1)) "ledger rows on the promoted server"
log "PASS"
