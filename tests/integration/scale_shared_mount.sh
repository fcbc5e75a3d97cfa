#!/usr/bin/env bash
# scale_shared_mount (issue 10): two NAS heads mounting one share.
#
# Node B runs in its own mount namespace where each drop folder is the same
# directory seen through an overlay mount at the same path: same inode
# numbers, sizes and mtimes, but another st_dev, which is what a second
# machine mounting the share over NFS or SMB sees. (This machine has no NFS
# or SMB server; the overlay gives exactly the property that matters, and the
# test first checks that it does.)
#
#  1. A (host view) owns both folders; B (overlay view) stands by.
#  2. 1,000 files dropped, catalogued by A; 500 more, and A is killed by
#     SIGKILL in the middle of them; 500 more after the kill.
#  3. B takes over, rescans through its own mount, and catalogues only what A
#     did not: every file ends exactly once (check_invariant), B's summary
#     says it hashed exactly the files whose ledger rows it wrote and found
#     every file of A's known, and no file was recorded twice.
# With st_dev in the ledger's key (before sql/005) B re-catalogued A's files.
. "${MAM_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/common.sh"
. "$MAM_SRC/tests/integration/lib_ingest.sh"
ing_require curl
command -v unshare >/dev/null || skip "unshare (util-linux) is not installed"

SETTLE_MS=300
NFILES=2000
D1=$T/drop1
D2=$T/drop2
EMPTY=$T/empty-layer
mkdir -p "$D1" "$D2" "$EMPTY"
chmod 755 "$T" "$D1" "$D2" "$EMPTY"
PA=$((20000 + RANDOM % 10000))
PB=$((PA + 1 + RANDOM % 5000))

# The second machine's view: D1 and D2 overlaid onto themselves (with an empty
# second layer, since an overlay needs two lower layers without an upper one).
OVL="mount -t overlay overlay -o lowerdir=$D1:$EMPTY $D1 && mount -t overlay overlay -o lowerdir=$D2:$EMPTY $D2"
unshare -m --propagation private -- sh -c "$OVL" 2>"$T/ovl.err" ||
	skip "cannot mount an overlay in a private mount namespace here: $(cat "$T/ovl.err")"

NFOLDERS=2
node_cfg node-a "$PA" "$D1" "$D2"
node_cfg node-b "$PB" "$D1" "$D2"
# B sees the folders through the overlays, and a file the test drops through
# the host's path raises no inotify event in B's view, just as a change made
# by another NFS client raises none on this one. So B polls them, as a node on
# a shared mount does (mode auto picks poll for NFS and SMB; the overlay looks
# local). In events mode B saw only what its first scan listed: a takeover
# within ~0.2 s of the kill missed the last files dropped.
sed -i 's/^        after_ingest: leave$/&\n        mode: poll\n        poll_interval_ms: 500/' "$T/node-b.yaml"
assert_eq "$(grep -c '^        mode: poll$' "$T/node-b.yaml")" 2 "B's folders in poll mode"

pg_start
ing_migrate "$T/node-a.yaml"

gen_burst "$T/all" "$NFILES" 4096 s

metric_of() {
	curl -sf "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m { print $2; f = 1 } END { exit !f }'
}

phase_begin "A owns both folders, B (another st_dev) stands by"
daemon_run "$T/node-a.yaml" "$T/a.log"
PID_A=$DPID
wait_for 30 "A owns both folders" owned_is "$PA" 2
unshare -m --propagation private -- sh -c "$OVL && exec \"\$0\" run -c \"\$1\"" \
	"$MAM_BIN" "$T/node-b.yaml" >>"$T/b.log" 2>&1 &
PID_B=$!
_pids+=("$PID_B")
wait_log 30 "$T/b.log" "owned by mam-ingest run\\[$PID_A\\]@node-a .*standing by" 2
phase_end

# The two views of one file differ in st_dev only.
mv "${FILES[0]}" "$D1/"
one=$D1/$(basename "${FILES[0]}")
host_id=$(stat -c '%d %i %s %Y' "$one")
b_id=$(nsenter -t "$PID_B" -m stat -c '%d %i %s %Y' "$one") || fail "cannot stat through B's mount namespace"
log "one file as A sees it (dev ino size mtime): $host_id; as B sees it: $b_id"
[ "${host_id%% *}" != "${b_id%% *}" ] || fail "B's view has the same st_dev: the test would prove nothing"
assert_eq "${b_id#* }" "${host_id#* }" "inode, size and mtime in B's view"

next=1
drop() {
	local n=$1 end i
	end=$((next + n))
	for ((i = next; i < end; i += 50)); do
		local k=$((end - i < 50 ? end - i : 50))
		if (((i / 50) % 2)); then mv "${FILES[@]:i:k}" "$D2/"; else mv "${FILES[@]:i:k}" "$D1/"; fi
	done
	next=$end
}

phase_begin "999 more files with A owning"
drop 999
wait_assets 120 s1 1000
phase_end

phase_begin "500 more; A killed by SIGKILL in the middle; 500 after"
drop 500
wait_for 60 "A catalogued part of the burst" sh -c \
	"[ \$(psql -X -At -c \"SELECT count(*) FROM assets\") -gt 1050 ]"
daemon_kill "$PID_A"
log "A killed with $(asset_count s1) assets catalogued"
drop 500
assert_eq "$next" "$NFILES" "files dropped"
wait_for 30 "B owns both folders" owned_is "$PB" 2
wait_assets 120 s1 "$NFILES"
# Idle: nothing settling or in B's pipeline, every file counted.
_b_idle() {
	[ "$(metric_of "$PB" mam_ingest_files_in_pipeline)" = 0 ] &&
		[ "$(metric_of "$PB" mam_ingest_files_settling)" = 0 ] &&
		[ "$(metric_of "$PB" mam_ingest_files_tracked)" = "$NFILES" ]
}
wait_for 120 "B idle with every file tracked" _b_idle
phase_end
daemon_term "$PID_B"

phase_begin "exactly once"
check_invariant s1 "$T/manifest" "metadata" ""
assert_eq "$(psql_q "SELECT count(*), count(DISTINCT asset_id) FROM ingest_ledger WHERE outcome = 'ingested'")" \
	"$NFILES|$NFILES" "ingested ledger rows and their distinct assets"
assert_eq "$(psql_q "SELECT count(*) FROM ingest_ledger")" "$NFILES" "ledger rows"
n_a=$(psql_q "SELECT count(*) FROM ingest_ledger WHERE node = 'node-a'")
n_b=$(psql_q "SELECT count(*) FROM ingest_ledger WHERE node = 'node-b'")
log "ledger rows per node: node-a=$n_a node-b=$n_b; B's $(summary "$T/b.log")"
[ "$n_b" -gt 0 ] || fail "B catalogued nothing: the takeover was not exercised"
# The ledger records each node's own st_dev: the host's on A's rows, the
# overlays' on B's.
host_dev=${host_id%% *}
assert_eq "$(psql_q "SELECT count(*) FROM ingest_ledger WHERE node = 'node-a' AND dev = $host_dev")" "$n_a" \
	"A's rows with the host's st_dev"
assert_eq "$(psql_q "SELECT count(*) FROM ingest_ledger WHERE node = 'node-b' AND dev <> $host_dev")" "$n_b" \
	"B's rows with another st_dev"
assert_eq "$(summary_get "$T/b.log" catalogued)" "$n_b" "files B catalogued"
assert_eq "$(summary_get "$T/b.log" hashed)" "$n_b" "files B hashed (none of A's again)"
assert_eq "$(summary_get "$T/b.log" known)" "$n_a" "files B found already catalogued by A"
phase_end
cat "$T/a.log" "$T/b.log" >>"$T/daemon.log"
[ "$(count_log "$T/daemon.log" 'panic|Assertion|AddressSanitizer|runtime error')" = 0 ] ||
	fail "a daemon log shows a crash or sanitizer report"
log "PASS"
