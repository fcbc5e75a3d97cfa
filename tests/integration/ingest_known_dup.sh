#!/usr/bin/env bash
# ingest_known_dup: a duplicate whose quarantine could not be done is
# quarantined by the next start, although the start-up set of known files may
# skip lookups (catalog_flush.sh): the sets leave such ledger rows out on
# purpose (sql/007), the file is hashed and recorded, the record answers
# "already" without an asset, and the lookup then says "quarantine".
#   - tenant kq, on_duplicate: quarantine; orig.bin is catalogued by `scan`;
#   - the quarantine folder's path is taken by a regular file, so a second
#     `scan` records dup.bin (same bytes) as a duplicate but cannot move it:
#     the error is logged, dup.bin stays in the drop folder, one asset;
#   - the path is freed and `scan` runs again: dup.bin is in quarantine with
#     its bytes and its reason file, still one asset, orig.bin untouched.
. "${MAM_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/common.sh"
. "$MAM_SRC/tests/integration/lib_ingest.sh"
ing_require

DROP=$T/drop
QDIR=$T/quarantine
mkdir -p "$DROP"
CFG=$T/mam.yaml
cfg_tenant "$CFG" 300 kq "Known duplicate test" "$DROP" "on_duplicate: quarantine" "quarantine_to: $QDIR"
pg_start
ing_migrate "$CFG"
scan() { # scan LOG
	"$MAM_BIN" scan -c "$CFG" >"$1" 2>&1 || { tail -20 "$1" >&2; fail "scan failed ($1)"; }
}

head -c 20000 /dev/urandom >"$DROP/orig.bin"
SHA=$(sha256 "$DROP/orig.bin")
wait_settled "$DROP" 400
scan "$T/scan1.log"
assert_eq "$(summary "$T/scan1.log")" "hashed=1 catalogued=1 known=0 failed=0" "first scan"

echo "not a directory" >"$QDIR"
cp "$DROP/orig.bin" "$DROP/dup.bin"
wait_settled "$DROP" 400
scan "$T/scan2.log"
grep -q 'dup.bin' "$T/scan2.log" || fail "scan 2 does not mention dup.bin"
grep -qiE 'quarantine.*(not a directory|file exists)|could not quarantine' "$T/scan2.log" ||
	fail "scan 2 does not log the failed quarantine: $(grep dup.bin "$T/scan2.log")"
[ -f "$DROP/dup.bin" ] || fail "dup.bin left the drop folder although it could not be quarantined"
assert_eq "$(psql_q "SELECT outcome FROM ingest_ledger WHERE relpath = 'dup.bin'")" duplicate_quarantined \
	"ledger outcome of dup.bin"
assert_eq "$(asset_count kq)" 1 "assets after the failed quarantine"

rm "$QDIR"
scan "$T/scan3.log"
[ ! -e "$DROP/dup.bin" ] || fail "dup.bin still in the drop folder after the quarantine path was freed: $(grep dup.bin "$T/scan3.log")"
assert_eq "$(sha256 "$QDIR/dup.bin")" "$SHA" "quarantined dup.bin's bytes"
grep -q 'duplicate of asset' "$QDIR/dup.bin.reason.json" ||
	fail "reason file: $(cat "$QDIR/dup.bin.reason.json" 2>&1)"
assert_eq "$(sha256 "$DROP/orig.bin")" "$SHA" "orig.bin"
assert_eq "$(asset_count kq)" 1 "assets after the quarantine"
log "PASS"
