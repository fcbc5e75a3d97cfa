#!/usr/bin/env bash
# Workers that die or are stopped in the middle of a job.
#  1. A worker killed by SIGKILL while ffmpeg makes a proxy: its ffmpeg dies
#     with it, and a second worker reclaims the job once its heartbeat is
#     stale and completes it exactly once (one derivative, one completion, no
#     stray temporary file).
#  2. SIGTERM with a short grace period: the running ffmpeg is killed and the
#     job goes back to pending (not counted as a retry); the worker exits 0.
#  3. SIGTERM with the default grace period: the running job finishes, then
#     the worker exits 0.
#  4. worker.job_timeout_s: a job running longer is killed and fails with
#     "timed out" (max_retries 0), and its ffmpeg is gone.
#  5. PostgreSQL stopped while a proxy is being made: the job's outcome is
#     held and recorded once the database is back (no retry, no second run).
. "$MAM_SRC/tests/lib/common.sh"
command -v ffmpeg >/dev/null || skip "ffmpeg not installed"

pg_start
M=$T/media
mkdir -p "$M" "$T/deriv"
cat >"$T/cfg.yaml" <<EOF
database:
  conninfo: ""
worker:
  concurrency: 1
  derivatives_root: $T/deriv
  poll_ms: 200
tenants: []
EOF
migrate "$T/cfg.yaml" >/dev/null
# 20 s of 720p: its 540p proxy takes a few seconds, long enough to interrupt.
ffmpeg -nostdin -v error -f lavfi -i testsrc2=size=1280x720:rate=30 \
	-f lavfi -i sine=sample_rate=48000 -t 20 -c:v libx264 -preset ultrafast \
	-pix_fmt yuv420p -c:a aac -ac 2 "$M/long.mp4"
TEN=$(psql_q "INSERT INTO tenants (code, name) VALUES ('acme', 'ACME') RETURNING id")
add_proxy() {
	psql_q "WITH a AS (INSERT INTO assets (tenant_id, title, asset_type, status)
		  VALUES ('$TEN', '$1', 'video', 'processing') RETURNING id),
		j AS (INSERT INTO ingest_jobs (tenant_id, asset_id, job_type, input_path)
		  SELECT '$TEN', id, 'proxy', '$M/long.mp4' FROM a)
		SELECT id FROM a"
}
job_of() { psql_q "SELECT id FROM ingest_jobs WHERE asset_id = '$1'"; }
# tmp_of ASSET: the temporary proxy ffmpeg is writing, once it exists.
tmp_exists() { compgen -G "$T/deriv/acme/*/*/$1/.proxy.mp4.*.tmp" >/dev/null; }
no_tmp() { ! compgen -G "$T/deriv/acme/*/*/$1/.proxy.mp4.*.tmp" >/dev/null; }
no_ffmpeg_for() { ! pgrep -f "$T/deriv/acme/.*/$1/\.proxy" >/dev/null; }
export MAM_WORKER_STALE_S=2

# ---- 1. SIGKILL mid-job, reclaimed and completed once by another worker
A1=$(add_proxy one.mp4)
J1=$(job_of "$A1")
"$MAM_BIN" worker -c "$T/cfg.yaml" >"$T/w1.log" 2>&1 &
W1=$!
_pids+=("$W1")
wait_for 60 "ffmpeg writing the proxy" tmp_exists "$A1"
assert_eq "$(psql_q "SELECT status FROM ingest_jobs WHERE id = '$J1'")" processing "job state at the kill"
W1ID=$(psql_q "SELECT claimed_by FROM ingest_jobs WHERE id = '$J1'")
kill -KILL "$W1"
wait "$W1" 2>/dev/null || true
wait_for 10 "the dead worker's ffmpeg to exit" no_ffmpeg_for "$A1"

"$MAM_BIN" worker -c "$T/cfg.yaml" >"$T/w2.log" 2>&1 &
W2=$!
_pids+=("$W2")
wait_sql 120 "SELECT status FROM ingest_jobs WHERE id = '$J1'" completed
grep -q "reclaimed 1 job" "$T/w2.log" || fail "second worker did not report the reclaim"
assert_eq "$(psql_q "SELECT attempts || ' ' || retry_count FROM ingest_jobs WHERE id = '$J1'")" "2 1" "attempts, retries"
[ "$(psql_q "SELECT claimed_by FROM ingest_jobs WHERE id = '$J1'")" != "$W1ID" ] || fail "completed under the dead worker's claim"
assert_eq "$(cat "$T/w1.log" "$T/w2.log" | grep -c "job $J1 (proxy) completed")" 1 "completions"
assert_eq "$(psql_q "SELECT count(*) FROM assets WHERE parent_id = '$A1' AND derivative_type = 'proxy'")" 1 "proxy assets"
P=$(psql_q "SELECT l.path FROM assets a JOIN asset_storage_locations l ON l.asset_id = a.id WHERE a.parent_id = '$A1'")
[ -f "$P" ] || fail "proxy file missing at $P"
assert_eq "$(psql_q "SELECT l.checksum_sha256 FROM assets a JOIN asset_storage_locations l ON l.asset_id = a.id WHERE a.parent_id = '$A1'")" "$(sha256 "$P")" "proxy checksum"
assert_eq "$(ffprobe -v error -select_streams v:0 -show_entries stream=codec_name,height -of csv=p=0 "$P")" "h264,540" "proxy stream"
no_tmp "$A1" || fail "temporary file of the killed run left behind"
assert_eq "$(psql_q "SELECT status FROM assets WHERE id = '$A1'")" available "asset after reclaim"
kill -TERM "$W2"
wait "$W2" || fail "second worker exit status $?"

# ---- 2. SIGTERM, grace period too short: killed and back to pending
A2=$(add_proxy two.mp4)
J2=$(job_of "$A2")
MAM_WORKER_STOP_GRACE_S=1 "$MAM_BIN" worker -c "$T/cfg.yaml" >"$T/w3.log" 2>&1 &
W3=$!
_pids+=("$W3")
wait_for 60 "ffmpeg writing the proxy" tmp_exists "$A2"
kill -TERM "$W3"
wait_for 15 "worker to stop" bash -c "! kill -0 $W3 2>/dev/null"
wait "$W3" && rc=0 || rc=$?
assert_eq "$rc" 0 "exit status after a stop"
assert_eq "$(psql_q "SELECT status || ' ' || coalesce(claimed_by, 'none') || ' ' || retry_count || ' ' || attempts
	FROM ingest_jobs WHERE id = '$J2'")" "pending none 0 1" "job returned to the queue"
grep -q "job $J2 (proxy) returned to the queue" "$T/w3.log" || fail "no release logged"
no_ffmpeg_for "$A2" || fail "ffmpeg still running after the stop"
no_tmp "$A2" || fail "temporary file left after the stop"
assert_eq "$(psql_q "SELECT count(*) FROM assets WHERE parent_id = '$A2'")" 0 "no derivative yet"

# ---- 3. SIGTERM, job finishes within the grace period
"$MAM_BIN" worker -c "$T/cfg.yaml" >"$T/w4.log" 2>&1 &
W4=$!
_pids+=("$W4")
wait_for 60 "ffmpeg writing the proxy" tmp_exists "$A2"
kill -TERM "$W4"
wait_for 90 "worker to finish and stop" bash -c "! kill -0 $W4 2>/dev/null"
wait "$W4" && rc=0 || rc=$?
assert_eq "$rc" 0 "exit status after finishing"
assert_eq "$(psql_q "SELECT status || ' ' || attempts FROM ingest_jobs WHERE id = '$J2'")" "completed 2" "job finished during the stop"
assert_eq "$(psql_q "SELECT count(*) FROM assets WHERE parent_id = '$A2' AND derivative_type = 'proxy'")" 1 "proxy after the stop"

# ---- 4. per-job timeout
sed 's/concurrency: 1/concurrency: 1\n  job_timeout_s: 1/' "$T/cfg.yaml" >"$T/cfg-timeout.yaml"
A3=$(add_proxy three.mp4)
J3=$(job_of "$A3")
psql_q "UPDATE ingest_jobs SET max_retries = 0 WHERE id = '$J3'"
"$MAM_BIN" worker -c "$T/cfg-timeout.yaml" >"$T/w5.log" 2>&1 &
W5=$!
_pids+=("$W5")
wait_sql 60 "SELECT status FROM ingest_jobs WHERE id = '$J3'" failed
psql_q "SELECT error_message FROM ingest_jobs WHERE id = '$J3'" | grep -q "ffmpeg timed out after 1 s" ||
	fail "timeout not reported: $(psql_q "SELECT error_message FROM ingest_jobs WHERE id = '$J3'")"
no_ffmpeg_for "$A3" || fail "ffmpeg still running after the timeout"
no_tmp "$A3" || fail "temporary file left after the timeout"
assert_eq "$(psql_q "SELECT status FROM assets WHERE id = '$A3'")" failed "asset after the timeout"
kill -TERM "$W5"
wait "$W5" || fail "worker exit status after the timeout case"

# ---- 5. database outage in the middle of a job (default stale threshold)
unset MAM_WORKER_STALE_S
A4=$(add_proxy four.mp4)
J4=$(job_of "$A4")
"$MAM_BIN" worker -c "$T/cfg.yaml" >"$T/w6.log" 2>&1 &
W6=$!
_pids+=("$W6")
wait_for 60 "ffmpeg writing the proxy" tmp_exists "$A4"
pg_stop_cluster "$T/pg"
wait_for 30 "the worker to notice" grep -q "reconnecting in" "$T/w6.log"
# The proxy is finished (renamed into place) while the database is still away.
wait_for 90 "the proxy to be finished" no_tmp "$A4"
pg_start_cluster "$T/pg"
wait_sql 60 "SELECT status FROM ingest_jobs WHERE id = '$J4'" completed
assert_eq "$(psql_q "SELECT attempts || ' ' || retry_count FROM ingest_jobs WHERE id = '$J4'")" "1 0" "one run across the outage"
assert_eq "$(psql_q "SELECT count(*) FROM assets WHERE parent_id = '$A4' AND derivative_type = 'proxy'")" 1 "proxy after the outage"
kill -TERM "$W6"
wait "$W6" || fail "worker exit status after the outage"
log "ok"
