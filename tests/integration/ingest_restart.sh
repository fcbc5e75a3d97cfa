#!/usr/bin/env bash
# ingest_restart (issue 4, "Done when"): a restart over 10,000 catalogued files
# rehashes none of them. 10,000 files of 4 KiB in 20 new directories are
# renamed into a running daemon's drop folder (after_ingest: leave) and
# catalogued; the daemon is stopped with SIGTERM. Then
#   - `scan` (one pass over everything, then exit) reports hashed=0 known=10000;
#   - `run` is started again and left until it is idle, then stopped: its
#     summary says hashed=0 catalogued=0 known=10000, and the kernel's count of
#     bytes it read (/proc/PID/io rchar) is far below the 40 MB a rehash reads;
#   - the catalogue still holds exactly 10,000 assets, each exactly once.
. "${MAM_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/common.sh"
. "$MAM_SRC/tests/integration/lib_ingest.sh"
ing_require

NDIR=20
PER=500
N=$((NDIR * PER))
FSIZE=4096
DROP=$T/drop
mkdir -p "$DROP"
CFG=$T/mam.yaml
cfg_tenant "$CFG" 300 s1 "Restart test" "$DROP"
pg_start
ing_migrate "$CFG"

phase_begin "generate $N files"
for ((d = 0; d < NDIR; d++)); do gen_split "$T/src/$(printf 'd%02d' $d)" $PER $FSIZE f; done
manifest "$T/src" >"$T/manifest"
manifest_distinct "$T/manifest"
assert_eq "$(wc -l <"$T/manifest")" $N "files generated"
phase_end

daemon_run "$CFG"
wait_log 60 "$T/daemon.log" "database connected"
phase_begin "first run: catalogue $N files"
mv "$T"/src/d* "$DROP/"
wait_assets 300 s1 $N
phase_end
rate1=$((N * 1000 / (PHASE_MS > 0 ? PHASE_MS : 1)))
log "first run: $rate1 files/s from the drop to the last commit"
daemon_term "$DPID"
log "first run: $(summary "$T/daemon.log")"
assert_eq "$(summary_get "$T/daemon.log" catalogued)" $N "files catalogued by the first run"

phase_begin "invariant over $N files"
check_invariant s1 "$T/manifest" "metadata" "$DROP"
phase_end

phase_begin "scan over $N catalogued files"
: >"$T/scan.log"
"$MAM_BIN" scan -c "$CFG" >>"$T/scan.log" 2>&1 || { cat "$T/scan.log" >&2; fail "scan failed"; }
phase_end
assert_eq "$(summary "$T/scan.log")" "hashed=0 catalogued=0 known=$N failed=0" "summary of the scan"

# Idle: the daemon used no CPU over the last 1.5 s and no PostgreSQL session
# other than ours is running a statement.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
_last_ticks=
_quiet=0
_idle() {
	local t busy
	t=$(cpu_ticks "$DPID") || return 1
	busy=$(psql_q "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'
		       AND state <> 'idle' AND pid <> pg_backend_pid()")
	if [ "$t" = "$_last_ticks" ] && [ "$busy" = 0 ]; then
		_quiet=$((_quiet + 1))
	else
		_quiet=0
	fi
	_last_ticks=$t
	sleep 0.25
	[ "$_quiet" -ge 6 ]
}
: >"$T/restart.log"
phase_begin "restart with run until idle"
daemon_run "$CFG" "$T/restart.log"
wait_log 60 "$T/restart.log" "database connected"
wait_for 300 "the restarted daemon to be idle" _idle
phase_end "including 1.5 s of idle detection"
rchar=$(awk '$1 == "rchar:" { print $2 }' "/proc/$DPID/io")
log "restarted daemon read $rchar bytes in total (the files hold $((N * FSIZE)))"
daemon_term "$DPID"
log "restart: $(summary "$T/restart.log")"
assert_eq "$(summary "$T/restart.log")" "hashed=0 catalogued=0 known=$N failed=0" "summary of the restarted daemon"
[ "$rchar" -lt $((N * FSIZE / 2)) ] ||
	fail "the restarted daemon read $rchar bytes: it reread the files it already catalogued"
assert_eq "$(asset_count s1)" $N "assets after the restarts"
assert_eq "$(psql_q "SELECT count(*) FROM ingest_ledger")" $N "ledger rows after the restarts"
log "PASS"
