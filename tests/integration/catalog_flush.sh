#!/usr/bin/env bash
# catalog_flush (issue 8, latency and the start-up pass): catalogue requests
# that nothing can join soon are sent at once, and a start-up pass does not
# look up the files its trusted known-file set does not hold.
# The config sets batch_max_ms to its maximum (60 s), so a request that
# waited for its timer would take a minute per stage:
#   - `scan` over 300 new files (one directory): finished within 30 s, in at
#     most 2 record batches (one is expected: every file is hashed before the
#     last leaves the pipeline; not one batch per file), and with no lookup:
#     the folder's set was read whole while the scan held its lock, so a file
#     it lacks is new. (Each session's warm-up makes one empty call of
#     mam_ingest_batch and of mam_ingest_lookup; they are counted out.)
#   - `run`: its start-up pass knows the 300 files; once it has freed its sets,
#     one new file is looked up (one mam_ingest_lookup call besides the
#     warm-up) and catalogued,
#     each stage sent at once (well within 30 s, where the timers would take
#     two minutes);
#   - without folder locks another node may ingest the folder too, so the
#     set never says "new": `scan` over 50 more files looks them up (at least
#     one mam_ingest_lookup call besides the warm-up).
. "${MAM_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/common.sh"
. "$MAM_SRC/tests/integration/lib_ingest.sh"
ing_require

DROP=$T/drop
CFG=$T/mam.yaml
cfg_tenant "$CFG" 300 fl "Flush test" "$DROP"
sed -i 's/^  batch_max_ms: .*/  batch_max_ms: 60000/' "$CFG"
grep -q '^  batch_max_ms: 60000$' "$CFG" || fail "config: batch_max_ms not set"
pg_start
# Per-function call counts of the SQL and PL/pgSQL functions.
psql_q "ALTER SYSTEM SET track_functions = 'all'" >/dev/null
psql_q "SELECT pg_reload_conf()" >/dev/null
ing_migrate "$CFG"

# calls FUNCTION: its calls so far (the counts are flushed at session end).
calls() {
	psql_q "SELECT pg_stat_clear_snapshot()" >/dev/null
	psql_q "SELECT coalesce(sum(calls), 0) FROM pg_stat_user_functions WHERE funcname = '$1'"
}

gen_burst "$DROP/cam" 300 4096 clip
wait_settled "$DROP" 400
b0=$(calls mam_ingest_batch)
l0=$(calls mam_ingest_lookup)
t0=$(now_ms)
timeout 30 "$MAM_BIN" scan -c "$CFG" >"$T/scan.log" 2>&1 || { tail -20 "$T/scan.log" >&2; fail "scan failed or took over 30 s"; }
log "scan of 300 files: $(($(now_ms) - t0)) ms"
assert_eq "$(summary "$T/scan.log")" "hashed=300 catalogued=300 known=0 failed=0" "scan"
# The scan's session has ended; its counts land shortly after.
_counted() { [ "$(calls mam_ingest_batch)" -gt "$b0" ]; }
wait_for 10 "the scan's function counts" _counted
b1=$(calls mam_ingest_batch)
l1=$(calls mam_ingest_lookup)
log "scan: $((b1 - b0 - 1)) record batches, $((l1 - l0 - 1)) lookup calls (the warm-up's aside)"
[ $((b1 - b0 - 1)) -le 2 ] || fail "scan: $((b1 - b0 - 1)) record batches for 300 files (expected 1, at most 2)"
assert_eq $((l1 - l0 - 1)) 0 "scan: lookups of files the trusted set lacks"
check_invariant fl "$T/manifest" "metadata" "$DROP/cam"

MAM_LOG_LEVEL=debug daemon_run "$CFG"
wait_log 30 "$T/daemon.log" 'known-file sets freed'
assert_eq "$(count_log "$T/daemon.log" 'already catalogued \(known at start\)')" 300 "start-up pass: known files"
t0=$(now_ms)
head -c 5000 /dev/urandom >"$DROP/late.bin"
wait_assets 30 fl 301
log "late file: catalogued $(($(now_ms) - t0)) ms after it was written (settle_ms 300)"
daemon_term "$DPID"
assert_eq "$(summary "$T/daemon.log")" "hashed=1 catalogued=1 known=300 failed=0" "run"
_counted2() { [ "$(calls mam_ingest_lookup)" -gt "$l1" ]; }
wait_for 10 "the daemon's function counts" _counted2
assert_eq $(($(calls mam_ingest_lookup) - l1 - 1)) 1 "run: lookups (the late file)"
# Without folder locks: the set cannot say "new".
sed 's/^ingest:$/ingest:\n  folder_locks: false/' "$CFG" >"$T/nolock.yaml"
cfg_finish "$T/nolock.yaml"
grep -q '^  folder_locks: false$' "$T/nolock.yaml" || fail "config: folder_locks not set"
gen_split "$DROP/more" 50 4096 m
wait_settled "$DROP" 400
l2=$(calls mam_ingest_lookup)
"$MAM_BIN" scan -c "$T/nolock.yaml" >"$T/scan-nolock.log" 2>&1 || { tail -20 "$T/scan-nolock.log" >&2; fail "scan without folder locks failed"; }
assert_eq "$(summary "$T/scan-nolock.log")" "hashed=50 catalogued=50 known=301 failed=0" "scan without folder locks"
_counted3() { [ "$(calls mam_ingest_lookup)" -ge $((l2 + 2)) ]; }
wait_for 10 "lookups of the scan without folder locks" _counted3
log "scan without folder locks: $(($(calls mam_ingest_lookup) - l2 - 1)) lookup calls"
log "PASS"
