#!/usr/bin/env bash
# Scale-out (issue 10, item 3): workers follow a promoted standby.
#
# A primary with a synchronous streaming standby (synchronous_standby_names,
# as docs/scaling.md asks for); two `mam-ingest worker` processes whose
# conninfo lists the standby FIRST, with target_session_attrs=read-write. In
# the middle of 3,000 queued metadata jobs the primary is killed (pg_ctl stop
# -m immediate) and the standby promoted. On the promoted server afterwards:
#  - every job completed, none left pending, running or failed;
#  - one technical metadata row per asset and every asset available;
#  - over both workers' logs, each job completed exactly once: a job whose
#    outcome was in flight at the kill is recorded once, by the resend;
#  - a job whose claim committed but whose answer was lost with the primary
#    (its worker never knew it had it) is reclaimed once its claim goes stale
#    and then runs once: attempts 2 for at most one claim per worker
#    (workers x concurrency jobs), attempts 1 for all the others.
. "${MAM_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/common.sh"
. "$MAM_SRC/tests/lib/worker.sh"
command -v ffprobe >/dev/null || skip "ffprobe not installed"
command -v ffmpeg >/dev/null || skip "ffmpeg not installed"
[ -x "$PGBIN/pg_basebackup" ] || skip "pg_basebackup not installed"

NJOBS=3000
NW=2
CONC=4

pg_start
PRIMARY_HOST=$PGHOST
pg_add_standby "$T/pgsb"
# Synchronous replication: a commit is acknowledged once the standby has it.
cat >>"$T/pg/data/postgresql.conf" <<CONF
synchronous_standby_names = '*'
synchronous_commit = on
CONF
as_pg "$PGBIN/pg_ctl" -D "$T/pg/data" reload >/dev/null
wait_sql 30 "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'" 1
log "standby streaming synchronously"

CONNINFO="host=$SB_HOST,$PRIMARY_HOST port=5432,5432 dbname=mam user=postgres target_session_attrs=read-write connect_timeout=5"
cat >"$T/cfg.yaml" <<EOF
database:
  conninfo: "$CONNINFO"
worker:
  concurrency: $CONC
  derivatives_root: $T/deriv
  poll_ms: 1000
tenants: []
EOF
chmod 644 "$T/cfg.yaml"
mkdir -p "$T/deriv"
migrate "$T/cfg.yaml" >/dev/null
ffprobe_stub "$T/stub"
TEN=$(psql_q "INSERT INTO tenants (code, name) VALUES ('w1', 'Workers') RETURNING id")

for ((i = 1; i <= NW; i++)); do
	# A claim lost with the primary goes stale after 5 s instead of 30.
	MAM_WORKER_STALE_S=5 PATH="$T/stub:$PATH" "$MAM_BIN" worker -c "$T/cfg.yaml" >"$T/w$i.log" 2>&1 &
	_pids+=("$!")
	WPIDS[i]=$!
done
wait_sql 30 "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'
	AND application_name LIKE 'mam-ingest worker%'" "$NW"

log "workers connected"
queue_metadata_jobs "$TEN" "$NJOBS" "$T/s.png"
log "$NJOBS jobs queued"
n_done() { psql_q "SELECT count(*) FROM ingest_jobs WHERE status = 'completed'" 2>/dev/null || echo 0; }
_at_least() { [ "$(n_done)" -ge "$1" ]; }
wait_for 120 "600 jobs completed before the failover" _at_least 600

as_pg "$PGBIN/pg_ctl" -D "$T/pg/data" -m immediate -w stop >/dev/null
log "primary killed with $(PGHOST=$SB_HOST psql_q "SELECT count(*) FROM ingest_jobs WHERE status = 'completed'") jobs completed on the standby"
as_pg "$PGBIN/pg_ctl" -D "$T/pgsb/data" -w -t 60 promote >/dev/null || fail "promote failed"
export PGHOST=$SB_HOST
assert_eq "$(psql_q "SELECT pg_is_in_recovery()")" f "promoted standby out of recovery"
# The promoted server runs without a standby: commits must not wait for one.
psql_q "ALTER SYSTEM SET synchronous_standby_names = ''" >/dev/null
psql_q "SELECT pg_reload_conf()" >/dev/null

wait_sql 180 "SELECT count(*) FROM ingest_jobs WHERE status = 'completed'" "$NJOBS"
for ((i = 1; i <= NW; i++)); do
	kill -0 "${WPIDS[i]}" 2>/dev/null || fail "worker $i died during the failover"
done
for ((i = 1; i <= NW; i++)); do kill -TERM "${WPIDS[i]}"; done
for ((i = 1; i <= NW; i++)); do wait "${WPIDS[i]}" || fail "worker $i exit status"; done
cat "$T"/w*.log >"$T/daemon.log"
grep -qE "connection (to the database )?lost|reconnect" "$T/daemon.log" ||
	log "note: no reconnect line in the workers' logs"

assert_eq "$(psql_q "SELECT count(*) FROM ingest_jobs")" "$NJOBS" "job rows"
assert_eq "$(psql_q "SELECT count(*) FROM ingest_jobs WHERE status <> 'completed'")" 0 "jobs not completed"
assert_eq "$(psql_q "SELECT count(*), count(DISTINCT asset_id) FROM asset_technical_metadata")" \
	"$NJOBS|$NJOBS" "technical metadata rows and their distinct assets"
assert_eq "$(psql_q "SELECT count(*) FROM assets WHERE status = 'available'")" "$NJOBS" "available assets"
grep -o "job [0-9a-f-]* (metadata) completed" "$T/daemon.log" | sort | uniq -c |
	awk '$1 != 1 { bad++ } END { exit bad > 0 }' || fail "a job completed more than once"
assert_eq "$(grep -c "(metadata) completed" "$T/daemon.log")" "$NJOBS" "completions logged"
twice=$(psql_q "SELECT count(*) FROM ingest_jobs WHERE attempts = 2")
assert_eq "$(psql_q "SELECT count(*) FROM ingest_jobs WHERE attempts NOT IN (1, 2)")" 0 "jobs claimed more than twice"
log "jobs claimed twice (claim committed, answer lost with the primary): $twice"
[ "$twice" -le $((NW * CONC)) ] || fail "$twice jobs were claimed twice (at most $((NW * CONC)): one claim per worker)"
log "PASS"
