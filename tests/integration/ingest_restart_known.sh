#!/usr/bin/env bash
# ingest_restart_known (issue 8, restart): `run` recognises the files it
# catalogued before from the ledger's identities read once per folder at start
# (sql/007_restart.sql, src/known.c), not with a lookup per file, and only the
# exact files: the identity is path bytes, inode, size and mtime (no st_dev).
#   - 8 files, names with a space, a tab, UTF-8 and invalid UTF-8 bytes, are
#     catalogued by `scan`;
#   - while no daemon runs, one file is appended to and one is replaced by a
#     new file of the same name;
#   - `run`: the two changed files are hashed and catalogued, the other 6
#     are known, each recognised locally (the debug log says so for exactly
#     those 6), and the folder's known set held the 8 ledger rows;
#   - a second `run` recognises all 8 files locally and hashes none.
. "${MAM_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/common.sh"
. "$MAM_SRC/tests/integration/lib_ingest.sh"
ing_require

DROP=$T/drop
mkdir -p "$DROP/sub dir" "$DROP/x"
CFG=$T/mam.yaml
cfg_tenant "$CFG" 300 rk "Restart known test" "$DROP"
pg_start
ing_migrate "$CFG"

names=(plain.bin "sub dir/sp ace.bin" "$(printf 'bad\xff\xfename.bin')" "x/$(printf 'caf\xc3\xa9.bin')"
	"x/$(printf 'a\tb.bin')" x/grow.bin x/replace.bin deep.bin)
for n in "${names[@]}"; do head -c 3000 /dev/urandom >"$DROP/$n"; done
wait_settled "$DROP" 400
"$MAM_BIN" scan -c "$CFG" >"$T/scan.log" 2>&1 || { cat "$T/scan.log" >&2; fail "scan failed"; }
assert_eq "$(summary "$T/scan.log")" "hashed=8 catalogued=8 known=0 failed=0" "first scan"

# Changed while no daemon ran: new identities, so new files to catalogue.
head -c 100 /dev/urandom >>"$DROP/x/grow.bin"
rm "$DROP/x/replace.bin"
head -c 2000 /dev/urandom >"$DROP/x/replace.bin"
wait_settled "$DROP" 400

# run_once LOG ROWS KNOWN: `run` until the start-up pass is logged, KNOWN
# files were recognised from it and the ledger holds ROWS rows; then stop
# (SIGTERM lets what is in flight finish before the exit summary).
run_once() {
	: >"$1"
	MAM_LOG_LEVEL=debug daemon_run "$CFG" "$1"
	wait_log 60 "$1" "files already catalogued"
	wait_log 60 "$1" 'already catalogued \(known at start\)' "$3"
	wait_sql 60 "SELECT count(*) FROM ingest_ledger" "$2"
	daemon_term "$DPID"
}

run_once "$T/run1.log" 10 6
assert_eq "$(summary "$T/run1.log")" "hashed=2 catalogued=2 known=6 failed=0" "restart after two changes"
grep -qF "\"$DROP\": 8 files already catalogued" "$T/run1.log" ||
	fail "the known set did not hold the 8 ledger rows"
assert_eq "$(count_log "$T/run1.log" 'already catalogued \(known at start\)')" 6 "files recognised locally"
for n in x/grow.bin x/replace.bin; do
	if grep -F "\"$n\": already catalogued (known" "$T/run1.log"; then
		fail "$n was taken as known"
	fi
done

run_once "$T/run2.log" 10 8
assert_eq "$(summary "$T/run2.log")" "hashed=0 catalogued=0 known=8 failed=0" "second restart"
assert_eq "$(count_log "$T/run2.log" 'already catalogued \(known at start\)')" 8 \
	"files recognised locally, second restart"
assert_eq "$(psql_q "SELECT count(DISTINCT relpath) FROM ingest_ledger")" 8 "paths in the ledger"
log "restart: the changed files were catalogued again, the others known without a lookup"
