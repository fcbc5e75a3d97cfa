#!/usr/bin/env bash
# faults_space (issue 9 item 1, "destination or quarantine disk full"): the
# library (move_to) and a quarantine folder (quarantine_to) are small tmpfs
# mounts (1 MiB), so moving a 4 MiB file there is a cross-device copy that
# fails with ENOSPC.
#
# Tenant m1, after_ingest: move into the full library. A small file moves; the
# big file's move fails. Expected: the error is logged (naming ENOSPC); the
# file is not lost: it is still in the drop folder with its bytes; no partial
# copy or temporary file is left in the library; the ledger keeps the move
# pending (so it is repaired), the asset's location and primary_storage_path
# name the file in the drop folder, and the daemon keeps running and says when
# it retries. Once there is room (remount with a larger size) the daemon retries
# by itself (10 s after the failure, doubling; no restart, no SIGHUP), and the
# storage location points at the moved file again, with its checksum
# (issue 4 item 4): the invariant, with every location under the library.
#
# Tenant q1, on_duplicate: quarantine into the full quarantine folder: the
# duplicate cannot be quarantined. Expected: the error is logged, the file is
# not lost (still in the drop folder, same bytes), nothing partial is left in
# the quarantine folder, no asset is recorded for it. Once there is room, the
# daemon's own retry quarantines it (with its reason file).
#
# /metrics counts each file found finished once (2 per tenant) and the
# daemon's retries apart (mam_ingest_files_retried_total).
#
# Skipped with a message when tmpfs cannot be mounted here.
. "${MAM_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/common.sh"
. "$MAM_SRC/tests/integration/lib_ingest.sh"
ing_require
[ "$(id -u)" = 0 ] || skip "needs root to mount a small tmpfs"

LIB=$T/library
QDIR=$T/quarantine
mkdir -p "$T/drop/m1" "$T/drop/q1" "$LIB" "$QDIR" "$T/src/m1" "$T/src/q1"
MOUNTS=()
_space_cleanup() {
	local rc=$? m
	for m in "${MOUNTS[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
	# Under set -e, (exit $rc) would end this trap; it only hands rc to _cleanup.
	set +e
	(exit $rc)
	_cleanup
}
trap _space_cleanup EXIT
for m in "$LIB" "$QDIR"; do
	mount -t tmpfs -o size=1m,mode=0755 mamtest "$m" 2>"$T/mount.err" ||
		skip "cannot mount a tmpfs at $m: $(cat "$T/mount.err")"
	MOUNTS+=("$m")
done

CFG=$T/mam.yaml
PORT=$((20000 + RANDOM % 20000))
{
	cfg_header 300
	cat <<EOF
metrics:
  listen: "127.0.0.1:$PORT"
tenants:
  - code: m1
    name: Library full
    drop_folders:
      - path: $T/drop/m1
        after_ingest: move
        move_to: $LIB
        jobs: [metadata]
  - code: q1
    name: Quarantine full
    drop_folders:
      - path: $T/drop/q1
        on_duplicate: quarantine
        quarantine_to: $QDIR
        jobs: [metadata]
EOF
} >"$CFG"
cfg_finish "$CFG"
pg_start
ing_migrate "$CFG"

head -c 20000 /dev/urandom >"$T/src/m1/small.bin"
head -c $((4 * 1024 * 1024)) /dev/urandom >"$T/src/m1/big.bin"
manifest "$T/src/m1" >"$T/man_m1"
BIG_SHA=$(sha256 "$T/src/m1/big.bin")
head -c $((4 * 1024 * 1024)) /dev/urandom >"$T/src/q1/orig.bin"
manifest "$T/src/q1" >"$T/man_q1"
DUP_SHA=$(sha256 "$T/src/q1/orig.bin")

daemon_run "$CFG"
wait_log 60 "$T/daemon.log" "database connected"

phase_begin "move into a full library"
mv "$T/src/m1/small.bin" "$T/drop/m1/"
wait_assets 60 m1 1
_small_moved() { [ ! -e "$T/drop/m1/small.bin" ]; }
wait_for 60 "small.bin moved" _small_moved
mv "$T/src/m1/big.bin" "$T/drop/m1/"
wait_log 60 "$T/daemon.log" 'm1 "big.bin": after_ingest failed, retrying in (9|10|11) s: .*No space left on device'
# Right after the failure (its retry is 10 s away): nothing partial in the library.
left=$(find "$LIB" -name '.*.mam-*' -o -name '*.mam-*' -o -name 'big.bin')
[ -z "$left" ] || fail "partial files left in the full library: $left"
phase_end

phase_begin "quarantine into a full quarantine folder"
mv "$T/src/q1/orig.bin" "$T/drop/q1/"
wait_assets 60 q1 1
cp "$T/drop/q1/orig.bin" "$T/src/q1/dup.bin"
mv "$T/src/q1/dup.bin" "$T/drop/q1/"
wait_log 60 "$T/daemon.log" 'q1 "dup.bin": could not quarantine, retrying in (9|10|11) s: .*No space left on device'
left=$(find "$QDIR" -name '.*.mam-*' -o -name '*.mam-*' -o -name 'dup.bin*')
[ -z "$left" ] || fail "partial files left in the full quarantine folder: $left"
phase_end

daemon_alive "$DPID" || fail "the daemon died"
# Not lost, nothing partial left behind.
[ -f "$T/drop/m1/big.bin" ] || fail "big.bin is gone from the drop folder although its move failed"
assert_eq "$(sha256 "$T/drop/m1/big.bin")" "$BIG_SHA" "content of big.bin after the failed move"
[ -f "$T/drop/q1/dup.bin" ] || fail "dup.bin is gone from the drop folder although its quarantine failed"
assert_eq "$(sha256 "$T/drop/q1/dup.bin")" "$DUP_SHA" "content of dup.bin after the failed quarantine"
assert_eq "$(psql_q "SELECT move_state FROM ingest_ledger WHERE sha256 = '$BIG_SHA'")" pending \
	"ledger move_state of big.bin while the library is full"
assert_eq "$(psql_q "SELECT count(*) FROM assets a JOIN tenants t ON t.id = a.tenant_id
	WHERE t.code = 'q1' AND a.checksum_sha256 = '$DUP_SHA'")" 1 "assets with dup.bin's content (the original only)"
# Until the move succeeds the catalogue names the file where it is: the drop
# folder (sql/008), location and primary_storage_path alike, with its URL.
BIG_LOC="SELECT l.path || '|' || l.filename || '|' || l.url || '|' || a.primary_storage_path
	FROM asset_storage_locations l JOIN assets a ON a.id = l.asset_id
	WHERE l.purpose = 'original' AND a.checksum_sha256 = '$BIG_SHA'"
wait_sql 60 "$BIG_LOC" "$T/drop/m1/big.bin|big.bin|file://$T/drop/m1/big.bin|$T/drop/m1/big.bin"

phase_begin "still full: the daemon retries by itself, backing off"
# The second failure says its attempt and about twice the delay (+-10%).
wait_log 60 "$T/daemon.log" 'm1 "big.bin": after_ingest failed \(attempt 2\), retrying in (1[89]|2[0-2]) s: .*No space left'
wait_log 60 "$T/daemon.log" 'q1 "dup.bin": could not quarantine \(attempt 2\), retrying in (1[89]|2[0-2]) s: .*No space left'
[ -f "$T/drop/m1/big.bin" ] || fail "big.bin is gone from the drop folder after its second failed move"
phase_end

phase_begin "room again: the daemon retries the move and the quarantine by itself"
for m in "${MOUNTS[@]}"; do mount -o remount,size=64m "$m" || fail "could not grow the tmpfs at $m"; done
# Each retries at its next backoff (about 20 s; 40 s if the disks were grown late).
_big_moved() { [ ! -e "$T/drop/m1/big.bin" ]; }
wait_for 120 "big.bin moved by the daemon's retry" _big_moved
wait_sql 60 "SELECT move_state FROM ingest_ledger WHERE sha256 = '$BIG_SHA'" 'done'
# ... and, the move confirmed, the moved file in the library again.
BIG_FINAL=$(psql_q "SELECT final_path FROM ingest_ledger WHERE sha256 = '$BIG_SHA'")
case $BIG_FINAL in "$LIB"/*/big.bin) ;; *) fail "big.bin's recorded destination: [$BIG_FINAL]" ;; esac
assert_eq "$(sha256 "$BIG_FINAL")" "$BIG_SHA" "content of big.bin at its destination"
wait_sql 60 "$BIG_LOC" "$BIG_FINAL|big.bin|file://$BIG_FINAL|$BIG_FINAL"
wait_for 120 "dup.bin quarantined by the daemon's retry" test -f "$QDIR/dup.bin.reason.json"
phase_end
# Each file was found finished once; the daemon's retries are counted apart.
metric() {
	curl -sf "http://127.0.0.1:$PORT/metrics" |
		awk -v m="$1{tenant=\"$2\"," 'index($0, m) == 1 {s += $NF} END {print s + 0}'
}
assert_eq "$(metric mam_ingest_files_finished_total m1)" 2 "m1 files found finished (small.bin, big.bin)"
assert_eq "$(metric mam_ingest_files_finished_total q1)" 2 "q1 files found finished (orig.bin, dup.bin)"
for t in m1 q1; do
	r=$(metric mam_ingest_files_retried_total $t)
	[ "$r" -ge 2 ] || fail "$t: retries counted: $r, expected at least 2 (one failed, one done)"
done
grep -q "configuration reloaded" "$T/daemon.log" && fail "nothing should have reloaded the daemon"
left=$(find "$LIB" "$QDIR" -name '.*.mam-*' -o -name '*.mam-*')
[ -z "$left" ] || fail "temporary files left behind: $left"
daemon_alive "$DPID" || fail "the daemon died"
daemon_term "$DPID"
log "summary: $(summary "$T/daemon.log")"

check_invariant m1 "$T/man_m1" "metadata" "$LIB"
check_invariant q1 "$T/man_q1" "metadata" "$T/drop/q1"
[ ! -e "$T/drop/q1/dup.bin" ] || fail "dup.bin still in the drop folder after it was quarantined"
assert_eq "$(sha256 "$QDIR/dup.bin")" "$DUP_SHA" "content of the quarantined dup.bin"
grep -q 'duplicate of asset' "$QDIR/dup.bin.reason.json" ||
	fail "dup.bin.reason.json does not give the reason: $(cat "$QDIR/dup.bin.reason.json")"
log "PASS"
