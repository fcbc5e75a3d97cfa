#!/usr/bin/env bash
# scale_owner (issue 10): two ingest daemons on the same folders.
#
#  1. Daemons A and B list the same two drop folders. A starts first and takes
#     both folder locks; B stands by (its log names A as the holder), `status`
#     shows A as the owner of both, each daemon's /metrics says
#     mam_ingest_folder_owned 1 on A and 0 on B, and a `scan` run meanwhile
#     skips both folders, saying who owns them.
#  2. 1,000 files dropped: catalogued once, every ledger row written by A.
#  3. 1,000 more files in a burst; A is killed with SIGKILL in the middle of
#     it. B takes both folders over, rescans them and catalogues what A did
#     not, and the last asset commits within 10 s + settle_ms of the kill.
#  4. Every one of the 2,000 files ends exactly once (check_invariant), the
#     ledger has one ingested row per file, both nodes recorded some, and
#     after B stops a `scan` takes the free locks and finds nothing new.
. "${MAM_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/common.sh"
. "$MAM_SRC/tests/integration/lib_ingest.sh"
ing_require curl

SETTLE_MS=300
NFILES=2000
D1=$T/drop1
D2=$T/drop2
mkdir -p "$D1" "$D2"
PA=$((20000 + RANDOM % 10000))
PB=$((PA + 1 + RANDOM % 5000))

NFOLDERS=2
node_cfg node-a "$PA" "$D1" "$D2"
node_cfg node-b "$PB" "$D1" "$D2"

pg_start
ing_migrate "$T/node-a.yaml"

gen_burst "$T/all" "$NFILES" 4096 s

phase_begin "A takes both folders, B stands by"
daemon_run "$T/node-a.yaml" "$T/a.log"
PID_A=$DPID
wait_for 30 "A owns both folders" owned_is "$PA" 2
daemon_run "$T/node-b.yaml" "$T/b.log"
PID_B=$DPID
wait_log 30 "$T/b.log" "owned by mam-ingest run\\[$PID_A\\]@node-a .*standing by" 2
wait_for 30 "B's metrics answer" owned_is "$PB" 0
assert_eq "$(owned "$PA")" 2 "folders owned by A"
"$MAM_BIN" status -c "$T/node-a.yaml" >"$T/status1" || fail "status exited non-zero"
cat "$T/status1" >&2
assert_eq "$(grep -cE "^  s1 +$T/drop[12] +mam-ingest run\[$PID_A\]@node-a \(session pid " "$T/status1")" 2 \
	"folders shown owned by A in status"
grep -qF "folder_owned{tenant=\"s1\",folder=\"$D1\"} 1" "$T/status1" ||
	fail "status does not show the local daemon's folder_owned gauge"
# A scan while a daemon owns the folders reads nothing and says why.
"$MAM_BIN" scan -c "$T/node-b.yaml" >"$T/scan1.log" 2>&1 || fail "scan exited non-zero"
assert_eq "$(grep -c "skipped by this scan: owned by mam-ingest run\\[$PID_A\\]@node-a" "$T/scan1.log")" 2 \
	"folders the scan skipped"
# A's session killed by the server: A releases both folders at once (the
# locks died with the session), and after its reconnect exactly one of the
# two daemons owns each folder again (A usually: it reconnects within 100 ms).
psql_q "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
	WHERE application_name = 'mam-ingest run[$PID_A]@node-a'" >/dev/null
wait_log 30 "$T/a.log" 'released \(database connection lost\)' 2
both_owned() { [ $(($(owned "$PA") + $(owned "$PB"))) = 2 ] && [ "$(psql_q "SELECT count(*)
	FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 AND classid = 1835101542")" = 2 ]; }
wait_for 30 "each folder owned again, by one daemon" both_owned
if [ "$(owned "$PA")" != 2 ]; then
	# B took one or both: make A the owner of both again for what follows.
	daemon_term "$PID_B"
	wait_for 30 "A owns both folders" owned_is "$PA" 2
	daemon_run "$T/node-b.yaml" "$T/b.log"
	PID_B=$DPID
	wait_for 30 "B's metrics answer" owned_is "$PB" 0
fi
phase_end

# drop N DIR...: move the next N generated files, alternating between folders.
next=0
drop() {
	local n=$1 end i
	end=$((next + n))
	for ((i = next; i < end; i += 50)); do
		if (((i / 50) % 2)); then mv "${FILES[@]:i:50}" "$D2/"; else mv "${FILES[@]:i:50}" "$D1/"; fi
	done
	next=$end
}

phase_begin "1,000 files with A owning"
drop 1000
wait_assets 120 s1 1000
phase_end
assert_eq "$(psql_q "SELECT string_agg(DISTINCT node, ',') FROM ingest_ledger")" node-a \
	"nodes that wrote ledger rows while A owned the folders"

phase_begin "1,000 more files; A killed by SIGKILL in the middle of the burst"
drop 500
# Mid-burst for real: A has started on this half but not finished it.
wait_for 60 "A catalogued part of the burst" sh -c \
	"[ \$(psql -X -At -c \"SELECT count(*) FROM assets\") -gt 1050 ]"
daemon_kill "$PID_A"
kill_at=$EPOCHREALTIME
log "A killed with $(asset_count s1) assets catalogued"
drop 500
assert_eq "$next" "$NFILES" "files dropped"
# Ownership first: protocol-bound (the server ends A's session, B retries
# within 2.5 s), so it holds on any machine, sanitizers and load included.
wait_for 30 "B owns both folders" owned_is "$PB" 2
own_ms=$(awk -v n="$EPOCHREALTIME" -v k="$kill_at" 'BEGIN { printf "%d", (n - k) * 1000 }')
log "TAKEOVER: B owned both folders ${own_ms} ms after SIGKILL of the owner"
[ "$own_ms" -le 10000 ] || fail "B took the folders over ${own_ms} ms after the kill (bound: 10000 ms)"
wait_assets 120 s1 "$NFILES"
phase_end
# From the kill to the last commit. The bound: PostgreSQL ends A's session as
# soon as its socket closes (same machine here; across machines TCP
# keepalives decide, see docs/scaling.md), B tries again within
# OWNER_RETRY_MS * 1.25 = 2.5 s, rescans, and every file found by that scan
# still settles for settle_ms before it is hashed; the rest (hashing and
# batching ~1,000 small files) is well inside the 10 s the issue allows.
# assets.created_at is the committing transaction's start, on this machine's
# clock, like kill_at.
last=$(psql_q "SELECT extract(epoch FROM max(created_at)) FROM assets")
takeover_ms=$(awk -v a="$last" -v k="$kill_at" 'BEGIN { printf "%d", (a - k) * 1000 }')
log "TAKEOVER: last asset committed ${takeover_ms} ms after SIGKILL of the owner"
# Finishing also depends on throughput: a sanitizer build is several times
# slower, so there (MAM_SANITIZED=1) the figure is logged, and the bound is
# asserted by the plain build of the same suite.
if [ "${MAM_SANITIZED:-0}" != 1 ]; then
	[ "$takeover_ms" -le $((10000 + SETTLE_MS)) ] ||
		fail "B finished ${takeover_ms} ms after the kill (bound: $((10000 + SETTLE_MS)) ms)"
fi
grep -q 'this node owns the folder now' "$T/b.log" || fail "B never logged taking a folder over"

"$MAM_BIN" status -c "$T/node-b.yaml" >"$T/status2" || fail "status exited non-zero"
assert_eq "$(grep -cE "^  s1 +$T/drop[12] +mam-ingest run\[$PID_B\]@node-b \(session pid " "$T/status2")" 2 \
	"folders shown owned by B in status after the takeover"
daemon_term "$PID_B"

phase_begin "exactly once"
check_invariant s1 "$T/manifest" "metadata" ""
assert_eq "$(psql_q "SELECT count(*), count(DISTINCT asset_id) FROM ingest_ledger WHERE outcome = 'ingested'")" \
	"$NFILES|$NFILES" "ingested ledger rows and their distinct assets"
assert_eq "$(psql_q "SELECT string_agg(DISTINCT node, ',' ORDER BY node) FROM ingest_ledger")" \
	"node-a,node-b" "nodes that wrote ledger rows"
log "ledger rows per node: $(psql_q "SELECT string_agg(node || '=' || n, ' ') FROM (SELECT node, count(*) n FROM ingest_ledger GROUP BY node ORDER BY node) x")"
phase_end

# No daemon left: a scan owns the folders and finds every file known.
"$MAM_BIN" scan -c "$T/node-a.yaml" >"$T/scan2.log" 2>&1 || fail "final scan exited non-zero"
grep -q 'skipped by this scan' "$T/scan2.log" && fail "the final scan skipped a folder nobody owns"
assert_eq "$(summary_get "$T/scan2.log" catalogued)" 0 "files the final scan catalogued"
assert_eq "$(summary_get "$T/scan2.log" known)" "$NFILES" "files the final scan found known"
assert_eq "$(asset_count s1)" "$NFILES" "assets after the final scan"
cat "$T/a.log" "$T/b.log" >>"$T/daemon.log"
[ "$(count_log "$T/daemon.log" 'panic|Assertion|AddressSanitizer|runtime error')" = 0 ] ||
	fail "a daemon log shows a crash or sanitizer report"
log "PASS"
