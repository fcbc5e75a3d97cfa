#!/usr/bin/env bash
# ingest_inactive (issue 4, "Done when"): an inactive tenant's folders are not
# ingested, whether the config says `active: false` or the database row says
# is_active = false (and the config leaves it alone). Files dropped there before
# and while the daemon runs produce no asset and are not touched (the folders
# are configured with after_ingest: move, so a touched file would be gone); an
# active tenant beside them works normally. A `scan` pass afterwards, which
# ends only when every folder was looked at, confirms it.
. "${MAM_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/common.sh"
. "$MAM_SRC/tests/integration/lib_ingest.sh"
ing_require

LIB=$T/library
for c in off1 off2 on1; do mkdir -p "$T/drop/$c"; done
CFG=$T/mam.yaml
{
	cfg_header 300
	echo "tenants:"
	for c in off1 off2 on1; do
		echo "  - code: $c"
		echo "    name: Tenant $c"
		case $c in
		off1) echo "    active: false" ;;
		on1) echo "    active: true" ;;
		esac
		cat <<EOF
    drop_folders:
      - path: $T/drop/$c
        after_ingest: move
        move_to: $LIB/$c
        jobs: [metadata]
EOF
	done
} >"$CFG"
cfg_finish "$CFG"
pg_start
ing_migrate "$CFG"
# off2 is inactive in the database only; the config does not set `active`.
psql_q "INSERT INTO tenants (code, name, is_active) VALUES ('off2', 'Tenant off2', false)" >/dev/null

for c in off1 off2 on1; do gen_files "$T/src/$c/before" 3 2000 20000 "$c-before-"; done
for c in off1 off2 on1; do gen_files "$T/src/$c/live" 3 2000 20000 "$c-live-"; done
manifest "$T/src/on1" >"$T/man_on1"
for c in off1 off2; do manifest "$T/src/$c" >"$T/man_$c"; done
for c in off1 off2 on1; do mv "$T/src/$c/before"/* "$T/drop/$c/"; done

phase_begin "run with files present at start and dropped live"
daemon_run "$CFG"
wait_assets 60 on1 3
for c in off1 off2; do mv "$T/src/$c/live"/* "$T/drop/$c/"; done
mv "$T/src/on1/live"/* "$T/drop/on1/"
wait_assets 60 on1 6
_on1_moved() { [ -z "$(find "$T/drop/on1" -type f)" ]; }
wait_for 60 "on1's files moved to the library" _on1_moved
phase_end
daemon_term "$DPID"

phase_begin "scan pass"
: >"$T/scan.log"
"$MAM_BIN" scan -c "$CFG" >>"$T/scan.log" 2>&1 || { cat "$T/scan.log" >&2; fail "scan failed"; }
phase_end
log "run: $(summary "$T/daemon.log"); scan: $(summary "$T/scan.log")"

assert_eq "$(psql_q "SELECT string_agg(code || '=' || is_active, ' ' ORDER BY code) FROM tenants")" \
	"off1=false off2=false on1=true" "tenants' is_active"
for c in off1 off2; do
	assert_eq "$(asset_count "$c")" 0 "assets of inactive tenant $c"
	assert_eq "$(psql_q "SELECT count(*) FROM ingest_jobs j JOIN tenants t ON t.id = j.tenant_id
			     WHERE t.code = '$c'")" 0 "jobs of inactive tenant $c"
	assert_eq "$(find "$T/drop/$c" -type f | wc -l)" 6 "files still in $c's drop folder"
	[ -z "$(find "$LIB/$c" -type f 2>/dev/null)" ] || fail "files of inactive tenant $c were moved to $LIB/$c"
done
for c in off1 off2; do
	(cd "$T/drop/$c" && ls) | LC_ALL=C sort >"$T/ls.$c"
	printf '%s\n' "$c"-before-0000{1,2,3}.bin "$c"-live-0000{1,2,3}.bin | LC_ALL=C sort >"$T/want.$c"
	cmp -s "$T/ls.$c" "$T/want.$c" || fail "drop folder of $c changed: $(tr '\n' ' ' <"$T/ls.$c")"
done
# The inactive tenants' files are untouched, byte for byte.
for c in off1 off2; do
	assert_eq "$(manifest "$T/drop/$c" | cut -f1 | LC_ALL=C sort | paste -sd,)" \
		"$(cut -f1 "$T/man_$c" | LC_ALL=C sort | paste -sd,)" "contents of $c's drop folder"
done
check_invariant on1 "$T/man_on1" "metadata" "$LIB/on1"

# "An inactive tenant is not watched": its files are not even read. Only
# on1's six files may have been hashed, and only by the run.
assert_eq "$(summary_get "$T/daemon.log" hashed)" 6 "files hashed by the run (on1's six only)"
inactive_read=$(grep -hE '(off1|off2) "' "$T/scan.log" | head -3)
assert_eq "$(summary_get "$T/scan.log" hashed)" 0 \
	"files hashed by the scan, which should not read an inactive tenant's files; it logged: $inactive_read"
log "PASS"
