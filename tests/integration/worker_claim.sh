#!/usr/bin/env bash
# Claiming.
#  1. Two workers in parallel on 200 metadata jobs (queued while both listen,
#     announced by one NOTIFY): every job completes, each was claimed exactly
#     once (ingest_jobs.attempts, and one "completed" line in the two logs),
#     and both workers took part.
#  2. With 100,000 queued jobs, the claim statement the worker really sends
#     (logged with its plan by auto_explain) reads the partial index
#     idx_jobs_claim: no sequential scan, no sort.
. "$MAM_SRC/tests/lib/common.sh"
command -v ffprobe >/dev/null || skip "ffprobe not installed"

pg_start
mkdir -p "$T/deriv"
cat >"$T/cfg.yaml" <<EOF
database:
  conninfo: ""
worker:
  concurrency: 2
  derivatives_root: $T/deriv
  poll_ms: 60000
tenants: []
EOF
migrate "$T/cfg.yaml" >/dev/null
ffmpeg -nostdin -v error -f lavfi -i testsrc=size=64x48 -frames:v 1 "$T/s.png"
TEN=$(psql_q "INSERT INTO tenants (code, name) VALUES ('acme', 'ACME') RETURNING id")

# ---- 1. two workers, 200 jobs
"$MAM_BIN" worker -c "$T/cfg.yaml" >"$T/w1.log" 2>&1 &
W1=$!
"$MAM_BIN" worker -c "$T/cfg.yaml" >"$T/w2.log" 2>&1 &
W2=$!
_pids+=("$W1" "$W2")
# Both sessions idle after LISTEN (which each sends first, before its sweep and claim).
wait_sql 30 "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle'
	AND (query LIKE 'LISTEN mam_ingest_jobs' OR query LIKE 'UPDATE ingest_jobs j%'
	     OR query LIKE 'SELECT mam_worker_reclaim%')" 2
psql_q "WITH a AS (INSERT INTO assets (tenant_id, title, asset_type, status)
	  SELECT '$TEN', 'still ' || g, 'image', 'processing' FROM generate_series(1, 200) g RETURNING id)
	INSERT INTO ingest_jobs (tenant_id, asset_id, job_type, input_path)
	SELECT '$TEN', id, 'metadata', '$T/s.png' FROM a;
	NOTIFY mam_ingest_jobs" >/dev/null
wait_sql 120 "SELECT count(*) FROM ingest_jobs WHERE status = 'completed'" 200
assert_eq "$(psql_q "SELECT count(*) FROM ingest_jobs WHERE attempts <> 1")" 0 "jobs claimed more than once"
assert_eq "$(psql_q "SELECT count(*) FROM asset_technical_metadata")" 200 "metadata rows"
assert_eq "$(psql_q "SELECT count(*) FROM assets WHERE status = 'available'")" 200 "available assets"
cat "$T/w1.log" "$T/w2.log" | grep -o "job [0-9a-f-]* (metadata) completed" | sort | uniq -c |
	awk '$1 != 1 { bad++ } END { exit bad > 0 }' || fail "a job completed more than once"
assert_eq "$(cat "$T/w1.log" "$T/w2.log" | grep -c "(metadata) completed")" 200 "completions logged"
assert_eq "$(psql_q "SELECT count(DISTINCT claimed_by) FROM ingest_jobs")" 2 "workers that ran jobs"
n1=$(grep -c "(metadata) completed" "$T/w1.log" || true)
log "worker 1 ran $n1 jobs, worker 2 ran $((200 - n1))"
kill -TERM "$W1" "$W2"
wait "$W1" || fail "worker 1 exit status"
wait "$W2" || fail "worker 2 exit status"

# ---- 2. the claim on 100k queued jobs uses the partial index
psql_q "INSERT INTO ingest_jobs (tenant_id, job_type, input_path, priority, created_at, max_retries)
	SELECT '$TEN', 'metadata', '$T/none-' || g, g % 10, now() - g * interval '1 second', 0
	FROM generate_series(1, 100000) g; ANALYZE ingest_jobs" >/dev/null
PGOPTIONS="-c session_preload_libraries=auto_explain -c auto_explain.log_min_duration=0" \
	"$MAM_BIN" worker -c "$T/cfg.yaml" >"$T/w3.log" 2>&1 &
W3=$!
_pids+=("$W3")
wait_for 30 "a claim" grep -q "started on" "$T/w3.log"
kill -TERM "$W3"
wait "$W3" || true
# The first plan logged for the claim statement (auto_explain: "Query Text:" then the plan).
plan=$(awk '/Query Text: UPDATE ingest_jobs j/ { on = 1; next }
	on && /(LOG|ERROR|STATEMENT):/ { exit }
	on { print }' "$T/pg/server.log")
[ -n "$plan" ] || fail "no plan of the claim in the server log"
log "claim plan:"$'\n'"$plan"
# The claim proper is the part before the per-row SubPlans of RETURNING.
claim=$(sed '/SubPlan/,$d' <<<"$plan")
grep -A1 "LockRows" <<<"$claim" | grep -q "Index Scan using idx_jobs_claim on ingest_jobs" ||
	fail "claim does not lock rows straight from idx_jobs_claim"
if grep -q "Seq Scan" <<<"$claim"; then fail "claim scans ingest_jobs sequentially"; fi
if grep -q "Sort" <<<"$claim"; then fail "claim sorts"; fi
# The highest priority, oldest jobs went first.
assert_eq "$(psql_q "SELECT count(*) FROM ingest_jobs WHERE attempts > 0 AND asset_id IS NULL AND priority <> 9")" 0 "claim order"
log "ok"
