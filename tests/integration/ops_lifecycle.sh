#!/usr/bin/env bash
# Operations (issue 7), the parts ops.sh does not cover:
#  - progress: a first scan of a backlog logs "N of M files (rate, about S s
#    left)" and, when it is done, "backlog drained";
#  - SIGTERM during a steady stream of files: the daemon exits 0 within its
#    stop grace period (STOP_GRACE_MS, 15 s) while files are still arriving,
#    and after a restart every file is catalogued exactly once;
#  - SIGHUP with a tenant removed: its folder is no longer watched, the other
#    tenant's still is, and the removed tenant's rows are kept;
#  - /healthz: 200 while the database is up, 503 once it has been away longer
#    than the 30 s grace, 200 again when it is back;
#  - under systemd (JOURNAL_STREAM set) log lines carry sd-daemon <N> prefixes.
. "$MAM_SRC/tests/lib/common.sh"
. "$MAM_SRC/tests/integration/lib_ingest.sh"
ing_require curl
pg_start
PORT=$((20000 + RANDOM % 20000))
mkdir -p "$T/a" "$T/b"
write_cfg() { # write_cfg WITH_B
	{
		printf 'database:\n  conninfo: ""\nmetrics:\n  listen: "127.0.0.1:%s"\n' "$PORT"
		printf 'ingest:\n  settle_ms: 200\n  reconcile_interval_s: 3600\ntenants:\n'
		printf '  - code: ta\n    name: Tenant A\n    drop_folders:\n      - path: %s\n' "$T/a"
		if [ "$1" = 1 ]; then
			printf '  - code: tb\n    name: Tenant B\n    drop_folders:\n      - path: %s\n' "$T/b"
		fi
	} >"$T/cfg.yaml"
	chmod 644 "$T/cfg.yaml"
}
count_like() { psql_q "select count(*) from assets where title like '$1'"; }
healthz() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$PORT/healthz" || true; }

write_cfg 1
ing_migrate "$T/cfg.yaml"

# --- progress over a backlog found at start ---------------------------------
# 2,000 files present before the daemon starts: the first scan finds them all
# at once; the pipeline holds more than PROGRESS_MIN (100) of them, so the
# progress timer runs. The JOURNAL_STREAM check rides along on this daemon.
phase_begin "backlog progress"
mkdir -p "$T/src"
for i in $(seq 1 2000); do printf 'backlog %d %s\n' "$i" "$RANDOM$RANDOM" >"$T/src/p$i.txt"; done
mv "$T/src"/* "$T/a/"
JOURNAL_STREAM=8:12345 "$MAM_BIN" run -c "$T/cfg.yaml" >"$T/out" 2>"$T/journal.log" &
DPID=$!
_pids+=("$DPID")
wait_sql 120 "select count(*) from assets where title like 'p%.txt'" 2000
phase_end
# Whether a "N of M" line appears depends on the machine's speed (the first
# tick is after 5 s), but the drained line always does once the timer ran.
wait_for 30 "backlog drained logged" grep -q 'progress: backlog drained: [0-9]* files in' "$T/journal.log"
if grep -q 'progress: [0-9]* of [0-9]* files' "$T/journal.log"; then
	grep -Eq 'progress: [0-9]+ of [0-9]+ files \([0-9]+ files/s, about -?[0-9]+ s left\)' "$T/journal.log" ||
		fail "progress line has no rate or ETA: $(grep -m1 'progress:' "$T/journal.log")"
fi
# sd-daemon prefixes: <6> info, <4> warning, <3> error; nothing unprefixed.
grep -q '^<6>ingest: ta "p1.txt": catalogued as asset' "$T/journal.log" ||
	fail "no <6> prefixed line for p1.txt: $(head -3 "$T/journal.log")"
unprefixed=$(grep -cv '^<[0-7]>' "$T/journal.log" || true)
assert_eq "$unprefixed" 0 "log lines without an sd-daemon prefix under JOURNAL_STREAM"
kill -TERM "$DPID"
wait "$DPID" || fail "daemon exited non-zero"

# --- SIGTERM during a steady stream -----------------------------------------
phase_begin "SIGTERM while files arrive"
: >"$T/daemon.log"
daemon_run "$T/cfg.yaml"
wait_for 30 "metrics endpoint" curl -sf "http://127.0.0.1:$PORT/healthz"
# A writer that keeps writing files (bash builtins only: no fork per file)
# until told to stop, so the SIGTERM lands mid-stream for certain; it goes
# on after the daemon is gone, then stops, and says how many it wrote.
(
	i=0
	while [ ! -e "$T/stop-writer" ]; do
		i=$((i + 1))
		printf 'stream %d %s\n' "$i" "$RANDOM$RANDOM" >"$T/a/s$i.txt"
		[ $((i % 20)) -ne 0 ] || sleep 0.05
	done
	echo "$i" >"$T/written"
) &
WRITER=$!
wait_for 60 "first streamed files catalogued" sh -c "[ \"\$(psql -XAtc \"select count(*) from assets where title like 's%.txt'\")\" -ge 100 ]"
t0=$(now_ms)
kill -TERM "$DPID"
wait "$DPID" || fail "daemon exited non-zero on SIGTERM"
stop_ms=$(($(now_ms) - t0))
_forget_pid "$DPID"
before=$(count_like 's%.txt')
on_disk=$(find "$T/a" -name 's*.txt' | wc -l)
log "SIGTERM to exit: $stop_ms ms; catalogued at exit: $before; on disk: $on_disk"
[ "$stop_ms" -le 15000 ] || fail "the daemon took $stop_ms ms to stop (bound: STOP_GRACE_MS 15000)"
grep -q 'summary: hashed=' "$T/daemon.log" || fail "no summary on exit"
_more_written() { [ "$(find "$T/a" -name 's*.txt' | wc -l)" -ge $((on_disk + 50)) ]; }
wait_for 60 "50 more files written after the daemon stopped" _more_written
touch "$T/stop-writer"
wait "$WRITER"
N=$(cat "$T/written")
[ "$before" -lt "$N" ] || fail "all $N files were in before SIGTERM: not mid-stream"
phase_end
daemon_run "$T/cfg.yaml"
wait_sql 120 "select count(*) from assets where title like 's%.txt'" "$N"
assert_eq "$(psql_q "select count(distinct checksum_sha256) from assets where title like 's%.txt'")" "$N" \
	"distinct checksums of the $N streamed files"
# Every backlog and stream file exactly once, with its metadata job.
manifest "$T/a" >"$T/man_a"
check_invariant ta "$T/man_a" "metadata" "$T/a"

# --- SIGHUP removing a tenant ------------------------------------------------
echo before-removal >"$T/b/kept.txt"
wait_sql 60 "select count(*) from assets where title = 'kept.txt'" 1
write_cfg 0
n_reloads=$(count_log "$T/daemon.log" 'configuration reloaded')
kill -HUP "$DPID"
wait_for 30 "reload logged" sh -c "[ \$(grep -c 'configuration reloaded: 1 tenants' '$T/daemon.log') -gt $n_reloads ]"
echo not-watched-any-more >"$T/b/after-removal.txt"
echo still-watched >"$T/a/after-removal-a.txt"
wait_sql 60 "select count(*) from assets where title = 'after-removal-a.txt'" 1
# Ingest is over once a's file is in: b's file, dropped before it, settled
# at the same time and would be in by now if b were still watched. A scan
# pass over the reloaded config (only ta) confirms nothing looks at b.
"$MAM_BIN" scan -c "$T/cfg.yaml" >>"$T/scan.log" 2>&1 || fail "scan failed"
assert_eq "$(psql_q "select count(*) from assets where title = 'after-removal.txt'")" 0 \
	"assets of the removed tenant's new file"
assert_eq "$(psql_q "select count(*) from assets a join tenants t on t.id = a.tenant_id where t.code = 'tb'")" 1 \
	"the removed tenant's catalogued asset is kept"
[ -f "$T/b/after-removal.txt" ] || fail "the removed tenant's file was touched"
kill -0 "$DPID" || fail "daemon died on reload"

# --- /healthz follows the database, with a grace period ----------------------
assert_eq "$(healthz)" 200 "healthz with the database up"
t0=$(now_ms)
pg_stop_cluster "$T/pg"
wait_for 30 "database_connected 0" sh -c "curl -sf http://127.0.0.1:$PORT/metrics | grep -q '^mam_ingest_database_connected 0'"
# Inside the grace period the daemon is still healthy (it holds files and
# reconnects); past 30 s it is not.
assert_eq "$(healthz)" 200 "healthz within the grace period"
_h503() { [ "$(healthz)" = 503 ]; }
wait_for 90 "healthz 503 after the grace period" _h503
down_ms=$(($(now_ms) - t0))
[ "$down_ms" -ge 30000 ] || fail "healthz went 503 after $down_ms ms, inside the 30 s grace"
curl -s --max-time 5 "http://127.0.0.1:$PORT/healthz" | grep -q 'database unreachable' ||
	fail "healthz body does not say why"
pg_start_cluster "$T/pg"
_h200() { [ "$(healthz)" = 200 ]; }
wait_for 60 "healthz 200 with the database back" _h200
echo after-outage >"$T/a/after-outage.txt"
wait_sql 60 "select count(*) from assets where title = 'after-outage.txt'" 1
daemon_term "$DPID"
log "PASS"
