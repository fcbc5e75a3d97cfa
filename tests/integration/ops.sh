# Operations (issue 7): /metrics and /healthz move with ingest, `status` shows
# the catalogue and the daemon, SIGHUP adds a tenant's folder, a broken config
# on SIGHUP keeps the old one running, JSON logs, and SIGTERM during a burst
# loses nothing.
. "$MAM_SRC/tests/lib/common.sh"
pg_start
PORT=$((20000 + RANDOM % 20000))
mkdir -p "$T/a" "$T/b"
write_cfg() { # write_cfg WITH_B
	cat >"$T/cfg.yaml" <<Y
database:
  conninfo: ""
metrics:
  listen: "127.0.0.1:$PORT"
ingest:
  settle_ms: 200
tenants:
  - code: ta
    name: Tenant A
    drop_folders:
      - path: $T/a
Y
	if [ "$1" = 1 ]; then
		cat >>"$T/cfg.yaml" <<Y
  - code: tb
    name: Tenant B
    drop_folders:
      - path: $T/b
        jobs: [metadata, thumbnail]
Y
	fi
	chmod 644 "$T/cfg.yaml"
}
write_cfg 0
"$MAM_BIN" migrate -c "$T/cfg.yaml" >/dev/null
"$MAM_BIN" run -c "$T/cfg.yaml" --log-format json >"$T/out" 2>"$T/daemon.log" &
DAEMON_PID=$!
_pids+=("$DAEMON_PID")
metric() { curl -sf "http://127.0.0.1:$PORT/metrics" | awk -v m="$1" 'index($0, m) == 1 {s += $NF} END {print s + 0}'; }
wait_for 30 "metrics endpoint" curl -sf "http://127.0.0.1:$PORT/healthz"
wait_for 30 "database connected" sh -c "curl -sf http://127.0.0.1:$PORT/metrics | grep -q '^mam_ingest_database_connected 1'"
assert_eq "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/healthz")" 200 "healthz"
assert_eq "$(metric 'mam_ingest_files_catalogued_total{tenant="ta"')" 0 "catalogued before"

for i in 1 2 3; do head -c $((5000 + i)) /dev/urandom >"$T/a/f$i.bin"; done
wait_sql 60 "select count(*) from assets" 3
wait_for 30 "catalogued counter = 3" sh -c "[ \"\$(curl -sf http://127.0.0.1:$PORT/metrics | grep '^mam_ingest_files_catalogued_total{tenant=\"ta\"' | awk '{print \$NF}')\" = 3 ]"
[ "$(metric 'mam_ingest_bytes_hashed_total{tenant="ta"')" -ge 15006 ] || fail "bytes hashed counter did not move"
curl -sf "http://127.0.0.1:$PORT/metrics" | grep -q '^mam_ingest_finished_to_committed_seconds_count 3$' ||
	fail "latency histogram count is not 3"
# Per folder: files seen; the catalogue's batch size and commit latency.
[ "$(metric 'mam_ingest_files_seen_total{tenant="ta"')" -ge 3 ] || fail "files seen counter did not move"
[ "$(metric 'mam_ingest_batch_files_count')" -ge 1 ] || fail "no catalogue batch counted"
[ "$(metric 'mam_ingest_batch_files_sum')" -ge 3 ] || fail "batch sizes do not add up to 3 files"
[ "$(metric 'mam_ingest_batch_commit_seconds_count')" -ge 1 ] || fail "no commit latency observed"
# A writer that holds its file open: settling, and its age in the oldest
# settling gauge grows past the settle time; once closed it is catalogued.
exec 7>"$T/a/held.bin"
echo partial >&7
_settling1() { [ "$(metric 'mam_ingest_folder_files_settling{tenant="ta"')" = 1 ]; }
wait_for 30 "held.bin settling" _settling1
_old() { curl -sf "http://127.0.0.1:$PORT/metrics" | awk '/^mam_ingest_oldest_settling_seconds\{tenant="ta"/ { exit !($NF >= 1.0) } END { if (NR == 0) exit 1 }'; }
wait_for 30 "oldest settling age past 1 s" _old
assert_eq "$(psql_q "select count(*) from assets where title = 'held.bin'")" 0 "held.bin catalogued while open"
exec 7>&-
wait_sql 60 "select count(*) from assets where title = 'held.bin'" 1
_settling0() { [ "$(metric 'mam_ingest_folder_files_settling{tenant="ta"')" = 0 ]; }
wait_for 30 "nothing settling" _settling0
assert_eq "$(curl -sf "http://127.0.0.1:$PORT/metrics" | awk '/^mam_ingest_oldest_settling_seconds\{tenant="ta"/ {print $NF}')" 0.000 "oldest settling age with nothing settling"
# Logs are JSON objects, one per line.
grep -q '^{"ts":"[^"]*","level":"info","subsys":"ingest","msg":"ta \\"f1.bin\\": catalogued as asset' "$T/daemon.log" ||
	fail "no JSON log line for f1.bin"

# status: catalogue and daemon.
"$MAM_BIN" status -c "$T/cfg.yaml" >"$T/status" || fail "status exited non-zero"
cat "$T/status" >&2
grep -Eq '^  ta +yes +4 +4 ' "$T/status" || fail "status does not show 4 assets today for ta"
grep -Eq '^  ta +metadata +4 ' "$T/status" || fail "status does not show 4 pending metadata jobs"
grep -q "running, answering on 127.0.0.1:$PORT" "$T/status" || fail "status did not reach the daemon"
grep -q "files_catalogued_total{tenant=\"ta\"" "$T/status" || fail "status shows no daemon counters"
grep -Eq "^  folder_watch\{tenant=\"ta\",folder=\"$T/a\",mode=\"events\",state=\"watching\"\} 1$" "$T/status" ||
	fail "status does not show folder a watched in events mode"
grep -q "^  ta  *$T/a  *mam-ingest run\[$DAEMON_PID\]@" "$T/status" || fail "status does not show this daemon owning folder a"

# SIGHUP with tenant b added: its folder is watched without a restart.
write_cfg 1
kill -HUP "$DAEMON_PID"
wait_for 30 "tenant tb upserted" sh -c "[ \"\$(psql -XAtc \"select count(*) from tenants where code='tb'\")\" = 1 ]"
wait_for 30 "reload logged" grep -q 'configuration reloaded' "$T/daemon.log"
echo hello-b >"$T/b/clip.txt"
wait_sql 60 "select count(*) from assets a join tenants t on t.id = a.tenant_id where t.code = 'tb'" 1
assert_eq "$(psql_q "select string_agg(job_type, ',' order by job_type) from ingest_jobs j join tenants t on t.id = j.tenant_id where t.code = 'tb'")" \
	"metadata,thumbnail" "tb jobs"
# Files of tenant a are not catalogued twice by the new watcher.
assert_eq "$(psql_q "select count(*) from assets a join tenants t on t.id = a.tenant_id where t.code = 'ta'")" 4 "ta assets after reload"

# SIGHUP with a broken config: reported, the daemon keeps running on the old one.
printf 'tenants:\n  - code: [broken\n' >"$T/cfg.yaml"
kill -HUP "$DAEMON_PID"
wait_for 30 "reload failure logged" grep -q 'reload failed: keeping the running configuration' "$T/daemon.log"
grep -q 'cfg.yaml:[0-9]*:[0-9]*' "$T/daemon.log" || fail "the broken config's error has no file:line:col"
kill -0 "$DAEMON_PID" || fail "daemon died on a broken config"
echo still-watched >"$T/b/after-broken.txt"
wait_sql 60 "select count(*) from assets where title = 'after-broken.txt'" 1

# SIGTERM in the middle of a burst: nothing lost (all are catalogued after a restart).
write_cfg 1
mkdir -p "$T/src"
for i in $(seq 1 2000); do printf 'burst %d %s' "$i" "$RANDOM" >"$T/src/b$i.txt"; done
mv "$T/src"/* "$T/a/"
wait_for 60 "some of the burst catalogued" sh -c "[ \"\$(psql -XAtc \"select count(*) from assets where title like 'b%.txt'\")\" -gt 0 ]"
t0=$(date +%s%N)
kill -TERM "$DAEMON_PID"
wait "$DAEMON_PID" || fail "daemon exited non-zero on SIGTERM"
log "SIGTERM to exit: $(( ($(date +%s%N) - t0) / 1000000 )) ms"
grep -q 'summary: hashed=' "$T/daemon.log" || fail "no summary on exit"
before=$(psql_q "select count(*) from assets where title like 'b%.txt'")
log "catalogued before SIGTERM: $before of 2000"
"$MAM_BIN" scan -c "$T/cfg.yaml" 2>>"$T/daemon.log" || fail "scan failed"
assert_eq "$(psql_q "select count(*) from assets where title like 'b%.txt'")" 2000 "burst assets after restart"
assert_eq "$(psql_q "select count(distinct checksum_sha256) from assets where title like 'b%.txt'")" 2000 "distinct burst checksums"
log "ops OK"
