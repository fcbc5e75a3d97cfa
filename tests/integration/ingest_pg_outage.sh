#!/usr/bin/env bash
# ingest_pg_outage (issue 4, "Done when"): PostgreSQL stopped for 30 s in the
# middle of a burst of 2,000 files and started again. The daemon keeps
# watching and settling, never exits, reconnects, and drains what it held:
# every file ends exactly once, including those whose batch was in flight when
# the server went down (a connection lost during COMMIT is resolved through
# the ledger).
. "${MAM_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/common.sh"
. "$MAM_SRC/tests/integration/lib_ingest.sh"
ing_require

NFILES=2000
NCHUNK=20 # chunks of 100 files
OUTAGE_S=${MAM_OUTAGE_S:-30} # faults_pg_down_long.sh runs it for 2 minutes
DROP=$T/drop
mkdir -p "$DROP"
CFG=$T/mam.yaml
cfg_tenant "$CFG" 300 p1 "Outage test" "$DROP"

pg_start
ing_migrate "$CFG"

# 20 chunks of 100 distinct 4 KiB files, each in its own source directory.
gen_burst "$T/all" "$NFILES" 4096 o
per=$((NFILES / NCHUNK))
for ((c = 0; c < NCHUNK; c++)); do
	mkdir -p "$T/chunk$c"
	mv "${FILES[@]:c*per:per}" "$T/chunk$c/"
done
drop_chunk() { mv "$T/chunk$1"/* "$DROP/"; }
alive() { daemon_alive "$DPID" || fail "the daemon exited during the outage ($1); see the log"; }

daemon_run "$CFG"
wait_log 60 "$T/daemon.log" "database connected"

phase_begin "burst before the outage (8 chunks)"
for ((c = 0; c < 8; c++)); do
	drop_chunk $c
	sleep 0.2
done
before=$(asset_count p1)
phase_end "$before assets catalogued when PostgreSQL stops"

phase_begin "PostgreSQL down ${OUTAGE_S} s while 12 more chunks arrive"
pg_stop_cluster
down_at=$(now_ms)
for ((c = 8; c < NCHUNK; c++)); do
	drop_chunk $c
	alive "chunk $c"
	sleep $((OUTAGE_S / (NCHUNK - 8) - 1)).5
done
# Stay down for the full outage.
while [ $(($(now_ms) - down_at)) -lt $((OUTAGE_S * 1000)) ]; do
	alive "waiting"
	sleep 0.5
done
alive "end of outage"
pg_start_cluster
phase_end

phase_begin "drain after PostgreSQL is back"
wait_assets 180 p1 "$NFILES"
phase_end "$((NFILES - before)) files catalogued after the restart of PostgreSQL"
alive "after the drain"
# The outage was noticed and survived.
[ "$(count_log "$T/daemon.log" 'database connected')" -ge 2 ] ||
	fail "the daemon did not report a reconnection"
daemon_term "$DPID"
# catalogued may be below NFILES when a batch's COMMIT result was lost: the
# resend finds those keys in the ledger and counts them as known.
log "summary: $(summary "$T/daemon.log")"
check_invariant p1 "$T/manifest" "metadata" "$DROP"
assert_eq "$(psql_q "SELECT count(*) FROM ingest_ledger WHERE outcome = 'ingested'")" "$NFILES" "ledger rows"
log "PASS"
