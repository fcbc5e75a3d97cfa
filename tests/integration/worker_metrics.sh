#!/usr/bin/env bash
# Worker operations (issue 7, item 1): `mam-ingest worker` serves /metrics and
# /healthz on metrics.worker_listen. A still image with metadata, thumbnail and
# proxy jobs and a corrupt file with a metadata job (max_retries 0): the
# counters by type and outcome move (proxy of a still = skipped, corrupt =
# failed), each ended job is in its type's duration histogram, nothing runs at
# the end, and /healthz follows the database with its 30 s grace.
. "$MAM_SRC/tests/lib/common.sh"
command -v ffmpeg >/dev/null || skip "ffmpeg not installed"
command -v curl >/dev/null || skip "curl not installed"
pg_start
PORT=$((20000 + RANDOM % 20000))
mkdir -p "$T/m" "$T/deriv"
{
	printf 'database:\n  conninfo: ""\n'
	printf 'worker:\n  concurrency: 2\n  derivatives_root: %s\n  poll_ms: 200\n' "$T/deriv"
	printf 'metrics:\n  listen: "127.0.0.1:%s"\n  worker_listen: "127.0.0.1:%s"\n' $((PORT + 1)) "$PORT"
	printf 'tenants: []\n'
} >"$T/cfg.yaml"
chmod 644 "$T/cfg.yaml"
migrate "$T/cfg.yaml" >/dev/null
ffmpeg -nostdin -v error -f lavfi -i testsrc=size=320x240 -frames:v 1 "$T/m/still.png"
# Zeros, not random bytes: about 1 in 100 random files is a valid "lrc" lyrics
# file to ffprobe. The mov demuxer finds no moov atom in these.
head -c 20000 /dev/zero >"$T/m/corrupt.mp4"
TEN=$(psql_q "INSERT INTO tenants (code, name) VALUES ('acme', 'ACME') RETURNING id")
add_asset() { # tenant title type path jobs max_retries
	psql_q "WITH a AS (INSERT INTO assets (tenant_id, title, asset_type, status, primary_storage_path)
		  VALUES ('$1', '$2', '$3', 'processing', '$4') RETURNING id),
		l AS (INSERT INTO asset_storage_locations (asset_id, tenant_id, storage_type, path, filename,
		  purpose, is_primary) SELECT id, '$1', 'local', '$4', '$2', 'original', true FROM a),
		j AS (INSERT INTO ingest_jobs (tenant_id, asset_id, job_type, input_path, max_retries)
		  SELECT '$1', a.id, t, '$4', $6 FROM a, unnest(string_to_array('$5', ',')) t)
		SELECT id FROM a"
}
add_asset "$TEN" still.png image "$T/m/still.png" metadata,thumbnail,proxy 3 >/dev/null
add_asset "$TEN" corrupt.mp4 video "$T/m/corrupt.mp4" metadata 0 >/dev/null

"$MAM_BIN" worker -c "$T/cfg.yaml" >"$T/out" 2>"$T/worker.log" &
WPID=$!
_pids+=("$WPID")
url=http://127.0.0.1:$PORT
metric() { curl -sf "$url/metrics" | awk -v m="$1" 'index($0, m) == 1 {s += $NF} END {print s + 0}'; }
healthz() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$url/healthz" || true; }
wait_for 30 "worker metrics endpoint" curl -sf "$url/metrics"
wait_sql 120 "select count(*) from ingest_jobs where status in ('completed', 'failed')" 4
_settled() {
	[ "$(metric 'mam_worker_jobs_total{type="metadata",status="completed"}')" = 1 ] &&
		[ "$(metric 'mam_worker_jobs_total{type="metadata",status="failed"}')" = 1 ] &&
		[ "$(metric 'mam_worker_jobs_running')" = 0 ]
}
wait_for 30 "metadata counters" _settled
assert_eq "$(metric 'mam_worker_jobs_total{type="thumbnail",status="completed"}')" 1 "thumbnails completed"
assert_eq "$(metric 'mam_worker_jobs_total{type="proxy",status="skipped"}')" 1 "proxy of a still skipped"
assert_eq "$(metric 'mam_worker_jobs_total{type="proxy",status="completed"}')" 0 "proxies completed"
assert_eq "$(metric 'mam_worker_job_duration_seconds_count{type="metadata"}')" 2 "metadata durations observed"
assert_eq "$(metric 'mam_worker_job_duration_seconds_count{type="thumbnail"}')" 1 "thumbnail durations observed"
assert_eq "$(metric 'mam_worker_slots')" 2 "slots"
assert_eq "$(metric 'mam_worker_database_connected')" 1 "database connected"
assert_eq "$(healthz)" 200 "healthz with the database up"
# The database's view agrees with the counters.
assert_eq "$(psql_q "select string_agg(job_type || '=' || status, ',' order by job_type, status) from ingest_jobs")" \
	"metadata=completed,metadata=failed,proxy=completed,thumbnail=completed" "job rows"

pg_stop_cluster
_down() { [ "$(curl -sf "$url/metrics" | awk '/^mam_worker_database_connected/ {print $NF}')" = 0 ]; }
wait_for 30 "database_connected 0" _down
assert_eq "$(healthz)" 200 "healthz within the grace period"
_h503() { [ "$(healthz)" = 503 ]; }
wait_for 90 "healthz 503 after the grace period" _h503
pg_start_cluster
_h200() { [ "$(healthz)" = 200 ]; }
wait_for 60 "healthz 200 with the database back" _h200
kill -TERM "$WPID"
wait "$WPID" || fail "worker exited non-zero"
log "PASS"
