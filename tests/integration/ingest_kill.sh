#!/usr/bin/env bash
# ingest_kill (issue 4, "Done when"): 1,000 files, the daemon killed with
# SIGKILL at random moments for 20 rounds and restarted, then a final run: every
# file ends exactly once (one asset, one original location pointing at an
# existing file with the checksum `openssl dgst -sha256` gave before the drop,
# each configured job once).
#
# Half the files are in the folder before round 1 (a backlog for the start-up
# scan); the rest arrive in chunks of 25, one chunk per round, at a random
# moment while the daemon runs, so kills land while files settle, hash, wait
# in a batch, commit, and while the next start re-reads the ledger.
# MAM_KILL_SEED=N replays a run; MAM_KILL_FILES / MAM_KILL_ROUNDS /
# MAM_KILL_AFTER (leave|move) are for ingest_kill_move.sh and manual runs.
. "${MAM_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/common.sh"
. "$MAM_SRC/tests/integration/lib_ingest.sh"
ing_require

NFILES=${MAM_KILL_FILES:-1000}
ROUNDS=${MAM_KILL_ROUNDS:-20}
AFTER=${MAM_KILL_AFTER:-leave}
SEED=${MAM_KILL_SEED:-$(($(date +%s) % 100000))}
RANDOM=$SEED
log "seed $SEED (MAM_KILL_SEED=$SEED replays the same kill delays), $NFILES files, $ROUNDS rounds, after_ingest $AFTER"

DROP=$T/drop
LIB=$T/library
mkdir -p "$DROP" "$LIB"
CFG=$T/mam.yaml
{
	cfg_header 300
	cat <<EOF
tenants:
  - code: k1
    name: Kill test
    drop_folders:
      - path: $DROP
        after_ingest: $AFTER
        move_to: $LIB
        jobs: [metadata, thumbnail]
EOF
} >"$CFG"
[ "$AFTER" = move ] || sed -i '/move_to:/d' "$CFG"
cfg_finish "$CFG"

pg_start
ing_migrate "$CFG"

phase_begin "generate $NFILES files of 4-64 KiB"
gen_files "$T/src" "$NFILES" 4096 65536 k
manifest "$T/src" >"$T/manifest"
manifest_distinct "$T/manifest"
phase_end

# Chunks: the first half at once, then CHUNK files per round.
FILES=("$T"/src/*.bin)
assert_eq "${#FILES[@]}" "$NFILES" "files generated"
BACKLOG=$((NFILES / 2))
CHUNK=$(((NFILES - BACKLOG + ROUNDS - 1) / ROUNDS))
next=0
drop_upto() { # move files [next, $1) into the drop folder, by rename
	local end=$1 batch=()
	[ "$end" -le "$NFILES" ] || end=$NFILES
	while [ "$next" -lt "$end" ]; do
		batch+=("${FILES[next]}")
		next=$((next + 1))
	done
	[ ${#batch[@]} = 0 ] || mv "${batch[@]}" "$DROP/"
}
sleep_ms() { sleep "$(printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)))"; }

drop_upto "$BACKLOG"
phase_begin "$ROUNDS rounds of start + SIGKILL after 0.05-1.5 s"
progress=()
for ((r = 1; r <= ROUNDS; r++)); do
	delay=$((50 + RANDOM % 1451))
	when=$((RANDOM % delay)) # when this round's chunk arrives
	daemon_run "$CFG"
	sleep_ms "$when"
	drop_upto $((next + CHUNK))
	sleep_ms $((delay - when))
	daemon_kill "$DPID"
	n=$(asset_count k1)
	progress+=("r$r:${delay}ms:$n")
done
phase_end
log "assets after each round (round:kill delay:assets): ${progress[*]}"
drop_upto "$NFILES"
assert_eq "$next" "$NFILES" "files dropped"

phase_begin "final run until all $NFILES are catalogued"
: >"$T/final.log"
daemon_run "$CFG" "$T/final.log"
wait_assets 180 k1 "$NFILES"
if [ "$AFTER" = move ]; then
	# Catalogued is not the end with move: wait until the drop folder is empty.
	_drop_empty() { [ -z "$(find "$DROP" -path "$DROP/.quarantine" -prune -o -type f -print -quit)" ]; }
	wait_for 120 "every file moved out of the drop folder" _drop_empty
fi
phase_end
daemon_term "$DPID"
log "final run: $(summary "$T/final.log")"
assert_eq "$(summary_get "$T/final.log" failed)" 0 "failed files in the final run"

if [ "$AFTER" = move ]; then
	check_invariant k1 "$T/manifest" "metadata thumbnail" "$LIB"
	left=$(find "$DROP" -mindepth 1 | head -5)
	[ -z "$left" ] || fail "left in the drop folder after every file was moved: $left"
	nlib=$(find "$LIB" -type f | wc -l)
	assert_eq "$nlib" "$NFILES" "files under move_to (no leftover copies or temp files)"
else
	check_invariant k1 "$T/manifest" "metadata thumbnail" "$DROP"
fi
# The ledger has one ingested row per file: no key recorded twice either.
assert_eq "$(psql_q "SELECT count(*), count(DISTINCT asset_id) FROM ingest_ledger WHERE outcome = 'ingested'")" \
	"$NFILES|$NFILES" "ingested ledger rows and their distinct assets"
# What the kills interrupted, as far as the logs tell (figures for the report).
log "kill rounds: $(count_log "$T/daemon.log" 'catalogued as asset') files catalogued," \
	"$(count_log "$T/daemon.log" 'already catalogued') answered 'already catalogued' by the ledger," \
	"$(count_log "$T/daemon.log" 'not confirmed; repairing') starts repaired unconfirmed after_ingest actions," \
	"$(count_log "$T/daemon.log" 'confirming interrupted') interrupted moves confirmed"
[ "$(count_log "$T/daemon.log" 'panic|Assertion|AddressSanitizer|runtime error')" = 0 ] ||
	fail "the daemon log shows a crash or sanitizer report"
log "PASS"
