#!/usr/bin/env bash
# faults_tenant (issue 9 item 1, "tenant deactivated mid-flight"): during a
# burst of 500 files, `UPDATE tenants SET is_active = false` for the tenant.
#
# - Nothing is catalogued after that UPDATE returns. PostgreSQL records commit
#   timestamps here (track_commit_timestamp), so the test compares every
#   asset's commit time with the UPDATE's: none may be later. (A batch that
#   read is_active before the UPDATE and commits after it would be one; only
#   a lock on the tenant row taken by the batch and held to its commit rules
#   that out.) The asset count right after the UPDATE is the final one too.
# - The files not catalogued stay in the drop folder untouched (the folder
#   moves what it catalogues, so a touched file would be gone); catalogued and
#   remaining files together are exactly the 500, none in both places.
# - Then the tenant is set active again and the daemon gets a SIGHUP: every
#   file ends exactly once (the invariant), and the daemon stayed alive.
. "${MAM_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/common.sh"
. "$MAM_SRC/tests/integration/lib_ingest.sh"
ing_require

N=500
DROP=$T/drop
LIB=$T/library
mkdir -p "$DROP" "$LIB"
CFG=$T/mam.yaml
cfg_tenant "$CFG" 300 d1 "Deactivated mid-flight" "$DROP" "after_ingest: move" "move_to: $LIB"
pg_start
# Commit timestamps: "catalogued after the UPDATE" measured by the server.
echo "track_commit_timestamp = on" >>"$T/pg/data/postgresql.conf"
pg_stop_cluster "$T/pg"
pg_start_cluster "$T/pg" || fail "postgres did not restart"
assert_eq "$(psql_q "SHOW track_commit_timestamp")" on "track_commit_timestamp"
ing_migrate "$CFG"
# Test instrumentation: the statement that inserts a batch's jobs (the
# catalogue's one write per batch) sleeps 300 ms before its transaction can
# commit, after the batch has read is_active, and the UPDATE below is issued
# while a batch sleeps there (seen in pg_stat_activity). An implementation
# that locks the tenant row is unaffected (the UPDATE just waits for that
# batch to commit); one that does not commits that batch's files after the
# UPDATE returned.
psql_q "CREATE FUNCTION test_slow_batch() RETURNS trigger LANGUAGE plpgsql AS
	\$\$ BEGIN PERFORM pg_sleep(0.3); RETURN NULL; END \$\$;
	CREATE TRIGGER test_slow_batch AFTER INSERT ON ingest_jobs
	FOR EACH STATEMENT EXECUTE FUNCTION test_slow_batch()" >/dev/null

gen_split "$T/src" "$N" 20000 f
manifest "$T/src" >"$T/manifest"
manifest_distinct "$T/manifest"

# Debug logging: every file's state transitions, so the test can tell when
# nothing is in flight any more.
MAM_LOG_LEVEL=debug daemon_run "$CFG"
wait_log 60 "$T/daemon.log" "database connected"
entered() { count_log "$T/daemon.log" '^debug ingest: d1 ".*": lookup -> lookup$'; }
left() { count_log "$T/daemon.log" '^debug ingest: d1 ".*": [a-z]+ -> done$'; }
_quiet() {
	local e
	e=$(entered)
	[ "$e" -gt 0 ] && [ "$e" = "$(left)" ]
}

phase_begin "burst of $N files, tenant deactivated mid-flight"
# The writer: 20 chunks of 25 files, a chunk every 100 ms, in the background.
(
	cd "$T/src"
	ls | LC_ALL=C sort | xargs -n 25 | while read -r chunk; do
		# shellcheck disable=SC2086
		mv $chunk "$DROP/"
		sleep 0.1
	done
) &
WRITER=$!
_some() { [ "$(asset_count d1)" -ge 50 ]; }
wait_for 60 "50 assets" _some
# Wait (in the server, no client round trip) for a batch inside its sleep,
# then deactivate in the next transaction of the same session.
XID=$(psql -X -q -v ON_ERROR_STOP=1 -At -c "DO \$\$
	BEGIN
		FOR i IN 1 .. 30000 LOOP
			PERFORM pg_stat_clear_snapshot();
			IF EXISTS (SELECT 1 FROM pg_stat_activity WHERE wait_event = 'PgSleep'
				   AND query LIKE '%mam_ingest_batch%') THEN
				RETURN;
			END IF;
			PERFORM pg_sleep(0.001);
		END LOOP;
		RAISE EXCEPTION 'no catalogue batch seen in progress within 30 s';
	END \$\$" -c "UPDATE tenants SET is_active = false WHERE code = 'd1' RETURNING xmin") ||
	fail "could not deactivate the tenant mid-batch"
N_UPDATE=$(asset_count d1)
TS=$(psql_q "SELECT pg_xact_commit_timestamp('$XID'::xid)")
log "deactivated at $TS with $N_UPDATE assets"
[ "$N_UPDATE" -lt "$N" ] || fail "all $N files were catalogued before the UPDATE: nothing was mid-flight"
wait "$WRITER" || fail "the writer failed"
# The daemon learns of it from the next batch and lets the folder go.
wait_log 60 "$T/daemon.log" 'watcher: tenant d1 inactive'
wait_for 60 "no file in flight" _quiet
phase_end
daemon_alive "$DPID" || fail "the daemon died"

late=$(psql_q "SELECT count(*) FROM assets a JOIN tenants t ON t.id = a.tenant_id
	WHERE t.code = 'd1' AND pg_xact_commit_timestamp(a.xmin) > '$TS'")
N_INACTIVE=$(asset_count d1)
# A NULL commit time would make the check above vacuous.
assert_eq "$(psql_q "SELECT count(*) FROM assets a JOIN tenants t ON t.id = a.tenant_id
	WHERE t.code = 'd1' AND pg_xact_commit_timestamp(a.xmin) IS NULL")" 0 "assets without a commit time"
log "assets: $N_UPDATE right after the UPDATE, $N_INACTIVE once nothing was in flight, $late committed after it"
[ "$late" = 0 ] || fail "$late assets were committed after the tenant was deactivated"
assert_eq "$N_INACTIVE" "$N_UPDATE" "assets once nothing was in flight vs right after the UPDATE"

# The rest are untouched in the drop folder; together with the catalogued
# ones they are exactly the dropped files.
manifest "$DROP" >"$T/left"
assert_eq "$(wc -l <"$T/left")" $((N - N_INACTIVE)) "files left in the drop folder"
psql_q "SELECT a.checksum_sha256 FROM assets a JOIN tenants t ON t.id = a.tenant_id
	WHERE t.code = 'd1'" >"$T/done"
{ cut -f1 "$T/left"; cat "$T/done"; } | LC_ALL=C sort >"$T/union"
cut -f1 "$T/manifest" | LC_ALL=C sort >"$T/want"
cmp -s "$T/union" "$T/want" || fail "catalogued + remaining files are not exactly the dropped files"
# Untouched: same names with the same bytes as dropped.
join -t$'\t' -1 2 -2 2 <(LC_ALL=C sort -t$'\t' -k2 "$T/left") \
	<(LC_ALL=C sort -t$'\t' -k2 "$T/manifest") | awk -F'\t' '$2 != $3' >"$T/changed"
[ ! -s "$T/changed" ] || fail "files left in the drop folder changed: $(head -3 "$T/changed")"

phase_begin "active again, SIGHUP"
psql_q "UPDATE tenants SET is_active = true WHERE code = 'd1'" >/dev/null
kill -HUP "$DPID"
wait_log 30 "$T/daemon.log" "configuration reloaded"
wait_assets 90 d1 "$N"
_moved_out() { [ -z "$(find "$DROP" -type f)" ]; }
wait_for 60 "every file moved to the library" _moved_out
phase_end
daemon_alive "$DPID" || fail "the daemon died"
daemon_term "$DPID"
log "summary: $(summary "$T/daemon.log")"
check_invariant d1 "$T/manifest" "metadata" "$LIB"
log "PASS"
