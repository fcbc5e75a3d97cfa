#!/usr/bin/env bash
# ingest_duplicates (issue 4, "Done when"): the duplicate policy. A file whose
# checksum the tenant already has is
#   on_duplicate: ingest      a second asset, its extra.duplicate_of = the first's id;
#   on_duplicate: skip        no asset; the file stays where it is (the first copy was moved);
#   on_duplicate: quarantine  no asset; the file is moved to quarantine_to with
#                             NAME.reason.json beside it.
# Also: two identical files dropped at the same moment into a skip folder give
# exactly one asset, also when the two copies arrive on two daemons (two ingest
# nodes, each watching its own folder of the tenant); and a later scan neither
# rehashes nor re-quarantines.
. "${MAM_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/common.sh"
. "$MAM_SRC/tests/integration/lib_ingest.sh"
ing_require

DI=$T/drop/ing
DS=$T/drop/skip
DQ=$T/drop/quar
LIB=$T/library
QUAR=$T/quarantine
mkdir -p "$DI" "$DS" "$DQ" "$T/src"
CFG=$T/mam.yaml
{
	cfg_header 300
	cat <<EOF
tenants:
  - code: d1
    name: Duplicates
    drop_folders:
      - path: $DI
        on_duplicate: ingest
        jobs: [metadata]
      - path: $DS
        on_duplicate: skip
        after_ingest: move
        move_to: $LIB
        jobs: [metadata]
      - path: $DQ
        on_duplicate: quarantine
        quarantine_to: $QUAR
        jobs: [metadata]
EOF
} >"$CFG"
cfg_finish "$CFG"
pg_start
ing_migrate "$CFG"

# Four distinct contents: X (ingest), Y (skip), Z (quarantine), W (skip, simultaneous).
for c in X Y Z W; do head -c 300000 /dev/urandom >"$T/src/$c"; done
SX=$(sha256 "$T/src/X")
SY=$(sha256 "$T/src/Y")
SZ=$(sha256 "$T/src/Z")
SW=$(sha256 "$T/src/W")
n_sha() { psql_q "SELECT count(*) FROM assets WHERE checksum_sha256 = '$1' AND parent_id IS NULL"; }

daemon_run "$CFG"
wait_log 60 "$T/daemon.log" "database connected"

phase_begin "first copies"
cp "$T/src/X" "$DI/x1.bin"
cp "$T/src/Y" "$DS/y1.bin"
cp "$T/src/Z" "$DQ/z1.bin"
wait_assets 60 d1 3
# The skip folder moves its files: y1 is gone from the drop folder once moved.
_gone() { [ ! -e "$1" ]; }
wait_for 60 "y1.bin moved out of the drop folder" _gone "$DS/y1.bin"
phase_end

phase_begin "second copies"
cp "$T/src/X" "$DI/x2.bin"
cp "$T/src/Y" "$DS/y2.bin"
cp "$T/src/Z" "$DQ/z2.bin"
wait_assets 60 d1 4
wait_log 60 "$T/daemon.log" '"y2\.bin": duplicate of asset [0-9a-f-]{36}, skipped'
_quarantined() { [ -f "$QUAR/z2.bin" ] && [ -f "$QUAR/z2.bin.reason.json" ] && [ ! -e "$DQ/z2.bin" ]; }
wait_for 60 "z2.bin quarantined with its reason" _quarantined
phase_end

phase_begin "two identical files at once (skip)"
cp "$T/src/W" "$T/src/w1.bin"
cp "$T/src/W" "$T/src/w2.bin"
mv "$T/src/w1.bin" "$T/src/w2.bin" "$DS/"
wait_assets 60 d1 5
wait_log 60 "$T/daemon.log" '"w[12]\.bin": duplicate of asset [0-9a-f-]{36}, skipped'
_one_w_left() { [ "$(find "$DS" -maxdepth 1 -name 'w?.bin' | wc -l)" = 1 ]; }
wait_for 60 "one of w1/w2 moved, the other left" _one_w_left
phase_end
daemon_term "$DPID"
log "summary: $(summary "$T/daemon.log")"

# ingest: two assets, the second points at the first.
assert_eq "$(n_sha "$SX")" 2 "assets with content X (on_duplicate ingest)"
X1=$(psql_q "SELECT id FROM assets WHERE extra->>'relative_path' = 'x1.bin'")
assert_eq "$(psql_q "SELECT coalesce(extra->>'duplicate_of', 'none') FROM assets WHERE id = '$X1'")" none \
	"duplicate_of of the first copy"
assert_eq "$(psql_q "SELECT extra->>'duplicate_of' FROM assets WHERE extra->>'relative_path' = 'x2.bin'")" \
	"$X1" "duplicate_of of the second copy"
for rel in x1.bin x2.bin; do
	assert_eq "$(psql_q "SELECT count(*) || ' ' || min(l.path) || ' ' || min(l.checksum_sha256) || ' ' ||
			    (SELECT count(*) FROM ingest_jobs j WHERE j.asset_id = a.id)
			   FROM assets a JOIN asset_storage_locations l ON l.asset_id = a.id
			  WHERE a.extra->>'relative_path' = '$rel' AND l.purpose = 'original' GROUP BY a.id")" \
		"1 $DI/$rel $SX 1" "location and jobs of $rel"
	assert_eq "$(sha256 "$DI/$rel")" "$SX" "content of $rel"
done

# skip: one asset (moved to the library); the duplicate left where it was.
assert_eq "$(n_sha "$SY")" 1 "assets with content Y (on_duplicate skip)"
[ -f "$DS/y2.bin" ] || fail "the skipped duplicate y2.bin is no longer in its drop folder"
assert_eq "$(sha256 "$DS/y2.bin")" "$SY" "content of the skipped y2.bin"
YP=$(psql_q "SELECT l.path FROM assets a JOIN asset_storage_locations l ON l.asset_id = a.id
	      WHERE a.checksum_sha256 = '$SY'")
case $YP in "$LIB"/*) ;; *) fail "y1's location $YP is not under move_to $LIB" ;; esac
assert_eq "$(sha256 "$YP")" "$SY" "content at y1's location"

# quarantine: one asset; the duplicate moved to quarantine_to with a reason.
assert_eq "$(n_sha "$SZ")" 1 "assets with content Z (on_duplicate quarantine)"
Z1=$(psql_q "SELECT id FROM assets WHERE checksum_sha256 = '$SZ'")
assert_eq "$(sha256 "$QUAR/z2.bin")" "$SZ" "content of the quarantined z2.bin"
reason=$(printf '%s\n' "SELECT (:'j'::jsonb)->>'reason', (:'j'::jsonb)->>'relative_path';" |
	psql -X -At -F '|' -v ON_ERROR_STOP=1 -v j="$(cat "$QUAR/z2.bin.reason.json")") ||
	fail "z2.bin.reason.json is not valid JSON: $(cat "$QUAR/z2.bin.reason.json")"
case $reason in *"$Z1"*"|z2.bin") ;; *) fail "reason.json does not name the first asset $Z1 and z2.bin: $reason" ;; esac
log "quarantine reason: $reason"

# Simultaneous duplicates: exactly one asset, the other file left in place.
assert_eq "$(n_sha "$SW")" 1 "assets with content W (two identical files at once, skip)"
assert_eq "$(sha256 "$(find "$DS" -maxdepth 1 -name 'w?.bin')")" "$SW" "content of the W file left in place"

assert_eq "$(psql_q "SELECT (SELECT count(*) FROM assets) || ' ' ||
		     (SELECT count(*) FROM asset_storage_locations) || ' ' || (SELECT count(*) FROM ingest_jobs)")" \
	"5 5 5" "assets, locations and jobs"

# A second pass: the skipped files are known (not rehashed, not catalogued),
# nothing more is quarantined.
phase_begin "scan after restart"
: >"$T/scan.log"
"$MAM_BIN" scan -c "$CFG" >>"$T/scan.log" 2>&1 || { cat "$T/scan.log" >&2; fail "scan failed"; }
phase_end
log "scan summary: $(summary "$T/scan.log")"
assert_eq "$(summary_get "$T/scan.log" hashed)" 0 "files rehashed by the scan"
assert_eq "$(summary_get "$T/scan.log" catalogued)" 0 "files catalogued by the scan"
assert_eq "$(asset_count d1)" 5 "assets after the scan"
assert_eq "$(find "$QUAR" -type f | wc -l)" 2 "files in quarantine (z2.bin and its reason)"
[ -f "$DS/y2.bin" ] || fail "y2.bin vanished during the scan"

# ---- the same content on two ingest nodes at once, on_duplicate: skip --------
NR=6
for side in a b; do
	mkdir -p "$T/dup$side"
	{
		cfg_header 300
		cat <<EOF
tenants:
  - code: d2
    name: Duplicates on two nodes
    drop_folders:
      - path: $T/dup$side
        on_duplicate: skip
        jobs: [metadata]
EOF
	} >"$T/dup_$side.yaml"
	cfg_finish "$T/dup_$side.yaml"
	: >"$T/dup_$side.log"
done
: >"$T/man_d2"
for ((r = 1; r <= NR; r++)); do
	head -c 200000 /dev/urandom >"$T/src/c$r"
	printf '%s\tc%d\n' "$(sha256 "$T/src/c$r")" $r >>"$T/man_d2"
	mkdir -p "$T/srca$r" "$T/srcb$r"
	cp "$T/src/c$r" "$T/srca$r/r$r.bin"
	cp "$T/src/c$r" "$T/srcb$r/r$r.bin"
done
daemon_run "$T/dup_a.yaml" "$T/dup_a.log"
PA=$DPID
daemon_run "$T/dup_b.yaml" "$T/dup_b.log"
PB=$DPID
wait_log 60 "$T/dup_a.log" "database connected"
wait_log 60 "$T/dup_b.log" "database connected"
SKIPPED='duplicate of asset .*skipped'
n_skipped() { echo $(($(count_log "$T/dup_a.log" "$SKIPPED") + $(count_log "$T/dup_b.log" "$SKIPPED"))); }
_dup_decided() { [ $(($(n_skipped) + $(asset_count d2))) -ge "$1" ]; }
phase_begin "$NR rounds: one content dropped on two daemons at once"
for ((r = 1; r <= NR; r++)); do
	mv "$T/srca$r/r$r.bin" "$T/dupa/" &
	m1=$!
	mv "$T/srcb$r/r$r.bin" "$T/dupb/" &
	m2=$!
	wait $m1
	wait $m2
	wait_for 60 "both copies of round $r catalogued or skipped" _dup_decided $((2 * r))
done
phase_end
daemon_term "$PA"
daemon_term "$PB"
log "daemon a: $(summary "$T/dup_a.log"); daemon b: $(summary "$T/dup_b.log")"
bad=$(psql_q "SELECT checksum_sha256 || ': ' || count(*) || ' assets' FROM assets a JOIN tenants t ON t.id = a.tenant_id
	      WHERE t.code = 'd2' GROUP BY checksum_sha256 HAVING count(*) <> 1")
[ -z "$bad" ] || fail "the same content dropped on two nodes with on_duplicate skip was catalogued twice:
$bad"
check_invariant d2 "$T/man_d2" "metadata"
assert_eq "$(n_skipped)" $NR "skipped duplicates across both daemons"
log "PASS"
