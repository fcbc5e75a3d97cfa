#!/bin/bash
# The catalogue's SQL (sql/002_ingest.sql) called directly through psql on a
# real PostgreSQL migrated by `mam-ingest migrate`:
#  - one file gives exactly one ledger row, one asset, one original primary
#    location whose path is the final path, and one job per configured type,
#    and the batch sends one NOTIFY;
#  - the same file (same idempotency key) again answers "already" with the
#    first asset id and writes nothing;
#  - one bad element in a batch fails alone, its neighbours are catalogued;
#  - a name that is not UTF-8 keeps its exact bytes (ledger bytea, url);
#  - on_duplicate skip / quarantine / ingest (duplicate_of in extra);
#  - an inactive tenant gets nothing written;
#  - the quota race: two sessions each adding a file, together over the
#    quota, end with exactly one asset, deterministically (the second is
#    started only once the first holds the tenant lock, and is shown to wait
#    for it); the refused file leaves nothing behind, so it goes in once the
#    quota allows;
#  - tenants upsert, lookups, move confirmation and the pending-move listing.
# Then it measures mam_ingest_batch with 500-file batches (files/s).
. "$MAM_SRC/tests/lib/common.sh"

pg_start
cat >"$T/cfg.yaml" <<CFG
database:
  conninfo: ""
tenants:
  - code: acme
    name: ACME
    drop_folders:
      - path: /drop/acme
CFG
chmod 600 "$T/cfg.yaml"
unset MAM_SQLDIR
migrate "$T/cfg.yaml" >/dev/null

psql_q "SELECT code || ':' || is_active FROM mam_upsert_tenants('[
	{\"code\":\"acme\",\"name\":\"ACME\"},
	{\"code\":\"q\",\"name\":\"Quota\",\"storage_quota_bytes\":1500},
	{\"code\":\"off\",\"name\":\"Off\",\"active\":false},
	{\"code\":\"bench\",\"name\":\"Bench\",\"storage_quota_bytes\":0}]')" >"$T/up"
assert_eq "$(tr '\n' ' ' <"$T/up")" "acme:true bench:true off:false q:true " "upsert result"
assert_eq "$(psql_q "SELECT coalesce(storage_quota_bytes::text, 'unlimited') FROM tenants WHERE code IN ('q', 'bench') ORDER BY code")" \
	"unlimited
1500" "quotas"
# A second upsert without active/quota leaves the database values alone.
psql_q "SELECT count(*) FROM mam_upsert_tenants('[{\"code\":\"off\",\"name\":\"Off 2\"}, {\"code\":\"q\",\"name\":\"Quota\"}]')" >/dev/null
assert_eq "$(psql_q "SELECT name || ':' || is_active FROM tenants WHERE code = 'off'")" "Off 2:false" "upsert keeps is_active"
assert_eq "$(psql_q "SELECT storage_quota_bytes FROM tenants WHERE code = 'q'")" "1500" "upsert keeps quota"

uuid() { cat /proc/sys/kernel/random/uuid; }
sha() { printf '%064x' "$1"; }

# file_json TENANT RELPATH INO SIZE SHA_N ASSET_ID ON_DUP [EXTRA_FIELDS]
file_json() {
	printf '{"tenant":"%s","folder":"/drop/%s","relpath":"%s","abspath":"/drop/%s/%s","asset_id":"%s","dev":2049,"ino":%s,"size":%s,"mtime_ns":1700000000000000000,"ctime_ns":1700000000000000001,"sha256":"%s","mime":"video/mp4","asset_type":"video","jobs":["metadata","thumbnail"],"priority":7,"after":"leave","on_duplicate":"%s","storage_type":"local","storage_tier":"hot","node":"n1"%s}' \
		"$1" "$1" "$2" "$1" "$2" "$6" "$3" "$4" "$(sha "$5")" "$7" "${8:-}"
}
# batch JSON: idx|outcome|asset_id|duplicate_of|error per element
batch() {
	psql_q "SELECT idx || '|' || outcome || '|' || coalesce(asset_id::text, '') || '|' ||
		coalesce(duplicate_of::text, '') || '|' || coalesce(error, '')
		FROM mam_ingest_batch('$1'::jsonb) ORDER BY idx"
}
count() { psql_q "SELECT count(*) FROM $1"; }

# ---- one file: exactly one of each, one NOTIFY --------------------------------
A1=$(uuid)
F1=$(file_json acme "clips/Day 1.mov" 11 1000 1 "$A1" ingest)
psql -X -v ON_ERROR_STOP=1 -At >"$T/notify.out" 2>&1 <<SQL
LISTEN mam_ingest_jobs;
SELECT outcome || '|' || asset_id FROM mam_ingest_batch('[$F1]');
SELECT 'after';
SQL
grep -qx "ingested|$A1" "$T/notify.out" || { cat "$T/notify.out"; fail "first file not ingested"; }
assert_eq "$(grep -c 'Asynchronous notification "mam_ingest_jobs" with payload "2"' "$T/notify.out")" 1 "one NOTIFY with the job count"
assert_eq "$(count "ingest_ledger WHERE asset_id = '$A1' AND outcome = 'ingested' AND move_state = 'none'")" 1 "ledger rows"
assert_eq "$(psql_q "SELECT title || '|' || asset_type || '|' || status || '|' || file_size_bytes || '|' || checksum_sha256 || '|' || primary_storage_path || '|' || (slug LIKE 'day-1-mov-%') || '|' || (extra->>'drop_folder') || '|' || (extra->>'relative_path') || '|' || (extra->>'node') || '|' || (extra ? 'source_mtime') FROM assets WHERE id = '$A1'")" \
	"Day 1.mov|video|processing|1000|$(sha 1)|/drop/acme/clips/Day 1.mov|true|/drop/acme|clips/Day 1.mov|n1|true" "asset row"
assert_eq "$(psql_q "SELECT storage_type || '|' || storage_tier || '|' || coalesce(bucket, 'NULL') || '|' || path || '|' || filename || '|' || url || '|' || file_size_bytes || '|' || checksum_sha256 || '|' || content_type || '|' || purpose || '|' || is_primary || '|' || (verified_at IS NOT NULL) FROM asset_storage_locations WHERE asset_id = '$A1'")" \
	"local|hot|NULL|/drop/acme/clips/Day 1.mov|Day 1.mov|file:///drop/acme/clips/Day%201.mov|1000|$(sha 1)|video/mp4|original|true|true" "storage location"
assert_eq "$(psql_q "SELECT string_agg(job_type || ':' || status || ':' || priority || ':' || input_path, ',' ORDER BY job_type) FROM ingest_jobs WHERE asset_id = '$A1'")" \
	"metadata:pending:7:/drop/acme/clips/Day 1.mov,thumbnail:pending:7:/drop/acme/clips/Day 1.mov" "jobs"

# ---- the same key again: "already", nothing written ---------------------------
F1b=$(file_json acme "clips/Day 1.mov" 11 1000 1 "$(uuid)" ingest)
assert_eq "$(batch "[$F1b]")" "0|already|$A1||" "same key again"
assert_eq "$(count assets):$(count asset_storage_locations):$(count ingest_jobs):$(count ingest_ledger)" "1:1:2:1" "rows after resend"
# A chmod changes only ctime: still the same file.
F1c=$(file_json acme "clips/Day 1.mov" 11 1000 1 "$(uuid)" ingest | sed 's/"ctime_ns":1700000000000000001/"ctime_ns":1800000000000000000/')
assert_eq "$(batch "[$F1c]")" "0|already|$A1||" "ctime-only change"
# A rewrite (new mtime) is a new file.
assert_eq "$(psql_q "SELECT count(*) FROM mam_ingest_lookup('[{\"tenant\":\"acme\",\"folder\":\"/drop/acme\",\"relpath\":\"clips/Day 1.mov\",\"dev\":2049,\"ino\":11,\"size\":1000,\"mtime_ns\":1700000000000000000},{\"tenant\":\"acme\",\"folder\":\"/drop/acme\",\"relpath\":\"clips/Day 1.mov\",\"dev\":2049,\"ino\":11,\"size\":1000,\"mtime_ns\":1700000000000000002}]') WHERE idx = 0 AND asset_id = '$A1'")" 1 "lookup finds the key"
assert_eq "$(psql_q "SELECT count(*) FROM mam_ingest_lookup('[{\"tenant\":\"acme\",\"folder\":\"/drop/acme\",\"relpath\":\"clips/Day 1.mov\",\"dev\":2049,\"ino\":11,\"size\":1000,\"mtime_ns\":1700000000000000002}]')")" 0 "lookup misses a new mtime"

# ---- one bad element fails alone ------------------------------------------
A2=$(uuid)
A3=$(uuid)
G1=$(file_json acme "b/one.wav" 21 10 2 "$A2" ingest)
G2=$(file_json acme "b/two.wav" 22 10 3 "not-a-uuid" ingest)
G3=$(file_json acme "b/caf\\\\xe9.wav" 23 10 4 "$A3" ingest ',"relpath_hex":"622f636166e92e776176","abspath_hex":"2f64726f702f61636d652f622f636166e92e776176"')
batch "[$G1,$G2,$G3]" >"$T/bad.out"
assert_eq "$(sed -n 1p "$T/bad.out")" "0|ingested|$A2||" "good neighbour before"
grep -q '^1|failed|||invalid input syntax for type uuid' "$T/bad.out" || { cat "$T/bad.out"; fail "bad element did not fail alone"; }
assert_eq "$(sed -n 3p "$T/bad.out")" "2|ingested|$A3||" "good neighbour after"
assert_eq "$(count "ingest_ledger WHERE relpath = 'b/two.wav'")" 0 "failed file left no ledger row"
# The non-UTF-8 name: display text, exact bytes in the ledger, percent-encoded url.
assert_eq "$(psql_q "SELECT l.relpath || '|' || encode(l.relpath_bytes, 'hex') || '|' || s.path || '|' || s.url || '|' || a.title FROM ingest_ledger l JOIN asset_storage_locations s ON s.asset_id = l.asset_id JOIN assets a ON a.id = l.asset_id WHERE l.asset_id = '$A3'")" \
	'b/caf\xe9.wav|622f636166e92e776176|/drop/acme/b/caf\xe9.wav|file:///drop/acme/b/caf%E9.wav|caf\xe9.wav' "non-UTF-8 name"

# ---- duplicates --------------------------------------------------------------
D1=$(file_json acme "dup/skip.mov" 31 1000 1 "$(uuid)" skip)
D2=$(file_json acme "dup/quar.mov" 32 1000 1 "$(uuid)" quarantine)
A4=$(uuid)
D3=$(file_json acme "dup/ingest.mov" 33 1000 1 "$A4" ingest)
assert_eq "$(batch "[$D1,$D2,$D3]")" "0|dup_skipped||$A1|
1|dup_quarantine||$A1|
2|ingested|$A4|$A1|" "duplicate policies"
assert_eq "$(psql_q "SELECT string_agg(relpath || ':' || outcome || ':' || (asset_id IS NULL) || ':' || duplicate_of, ',' ORDER BY relpath) FROM ingest_ledger WHERE relpath LIKE 'dup/%'")" \
	"dup/ingest.mov:ingested:false:$A1,dup/quar.mov:duplicate_quarantined:true:$A1,dup/skip.mov:duplicate_skipped:true:$A1" "duplicate ledger rows"
assert_eq "$(psql_q "SELECT extra->>'duplicate_of' FROM assets WHERE id = '$A4'")" "$A1" "duplicate_of in extra"
assert_eq "$(count "assets WHERE checksum_sha256 = '$(sha 1)'")" 2 "skip/quarantine wrote no asset"
# The skipped file seen again is known to the ledger.
assert_eq "$(batch "[$D1]")" "0|already||$A1|" "skipped file again"

# ---- inactive tenant: nothing written ------------------------------------------
before=$(count assets):$(count ingest_ledger):$(count ingest_jobs)
assert_eq "$(batch "[$(file_json off "x.mov" 41 10 5 "$(uuid)" ingest)]")" "0|tenant_inactive|||" "inactive tenant"
assert_eq "$(count assets):$(count ingest_ledger):$(count ingest_jobs)" "$before" "inactive tenant wrote nothing"
assert_eq "$(batch "[$(file_json nobody "x.mov" 41 10 5 "$(uuid)" ingest)]")" '0|failed|||unknown tenant "nobody"' "unknown tenant"

# ---- move confirmation and the pending-move listing --------------------------
A5=$(uuid)
M1=$(file_json acme "m/moved.mov" 51 10 6 "$A5" ingest ',"after":"move","final_path":"/lib/acme/m/moved.mov"' | sed 's/"after":"leave",//')
A6=$(uuid)
M2=$(file_json acme "m/deleted.mov" 52 10 7 "$A6" ingest ',"after":"delete"' | sed 's/"after":"leave",//')
batch "[$M1,$M2]" >/dev/null
assert_eq "$(psql_q "SELECT string_agg(asset_id || '|' || source_path || '|' || final_path || '|' || after_ingest, ',' ORDER BY after_ingest) FROM mam_pending_moves('[\"/drop/acme\"]')")" \
	"$A6|/drop/acme/m/deleted.mov|/drop/acme/m/deleted.mov|delete,$A5|/drop/acme/m/moved.mov|/lib/acme/m/moved.mov|move" "pending moves"
assert_eq "$(count "mam_pending_moves('[\"/drop/other\"]')")" 0 "pending moves of another folder"
assert_eq "$(psql_q "SELECT path || '|' || url FROM asset_storage_locations WHERE asset_id = '$A5'")" "/lib/acme/m/moved.mov|file:///lib/acme/m/moved.mov" "location points at the move target"
assert_eq "$(psql_q "SELECT mam_confirm_move('$A5') || ',' || mam_confirm_move('$A6') || ',' || coalesce(mam_confirm_move('$A5'), 'none')")" "move,delete,none" "confirm"
assert_eq "$(count "mam_pending_moves('[\"/drop/acme\"]')")" 0 "nothing pending after confirm"
assert_eq "$(psql_q "SELECT is_accessible || '|' || status FROM asset_storage_locations WHERE asset_id = '$A6'")" "false|deleted" "deleted original marked"
assert_eq "$(psql_q "SELECT is_accessible || '|' || status FROM asset_storage_locations WHERE asset_id = '$A5'")" "true|available" "moved original untouched"

# ---- quota race: two sessions, together over the quota -> exactly one ---------
psql_q "CREATE TABLE test_gate (x int)"
QA=$(uuid)
QB=$(uuid)
FA=$(file_json q "a.mov" 61 1000 8 "$QA" ingest)
FB=$(file_json q "b.mov" 62 1000 9 "$QB" ingest)
# H holds the gate; A ingests (taking the tenant lock) and then waits on the gate.
PGAPPNAME=gateH psql -X -q -At -c "BEGIN; LOCK TABLE test_gate; SELECT pg_sleep(600);" >/dev/null 2>&1 &
_pids+=($!)
wait_sql 30 "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE a.application_name = 'gateH' AND l.relation = 'test_gate'::regclass AND l.granted" 1
PGAPPNAME=quotaA psql -X -q -At -v ON_ERROR_STOP=1 >"$T/qa.out" 2>&1 <<SQL &
BEGIN;
SELECT outcome FROM mam_ingest_batch('[$FA]');
LOCK TABLE test_gate IN ACCESS SHARE MODE;
COMMIT;
SQL
QA_PID=$!
wait_sql 30 "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'quotaA' AND wait_event_type = 'Lock'" 1
PGAPPNAME=quotaB psql -X -q -At -v ON_ERROR_STOP=1 -c "SELECT outcome FROM mam_ingest_batch('[$FB]')" >"$T/qb.out" 2>&1 &
QB_PID=$!
# B must be waiting for A's tenant lock, not deciding on a stale sum.
wait_sql 30 "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'quotaB' AND wait_event_type = 'Lock'" 1
psql_q "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'gateH'" >/dev/null
wait "$QA_PID" || { cat "$T/qa.out"; fail "session A failed"; }
wait "$QB_PID" || { cat "$T/qb.out"; fail "session B failed"; }
assert_eq "$(cat "$T/qa.out")" "ingested" "quota: first file"
assert_eq "$(cat "$T/qb.out")" "over_quota" "quota: second file"
assert_eq "$(count "assets a JOIN tenants t ON t.id = a.tenant_id WHERE t.code = 'q'")" 1 "quota: exactly one asset"
assert_eq "$(count "ingest_ledger WHERE asset_id = '$QB'")" 0 "over-quota file wrote no ledger row"
# Nothing of B was written, so it goes in once the quota allows it.
psql_q "SELECT count(*) FROM mam_upsert_tenants('[{\"code\":\"q\",\"name\":\"Quota\",\"storage_quota_bytes\":2000}]')" >/dev/null
assert_eq "$(batch "[$FB]")" "0|ingested|$QB||" "retry after quota raised"
assert_eq "$(count "assets a JOIN tenants t ON t.id = a.tenant_id WHERE t.code = 'q'")" 2 "quota: both after the raise"

# ---- throughput: 500-file batches -----------------------------------------------
NB=10
for b in $(seq 0 $((NB - 1))); do
	psql_q "SELECT jsonb_agg(jsonb_build_object('tenant', 'bench', 'folder', '/drop/bench',
		'relpath', 'd' || (g % 20) || '/file' || g || '.jpg', 'abspath', '/drop/bench/d' || (g % 20) || '/file' || g || '.jpg',
		'asset_id', gen_random_uuid(), 'dev', 2049, 'ino', g, 'size', 4096,
		'mtime_ns', 1700000000000000000 + g, 'ctime_ns', 1700000000000000000 + g,
		'sha256', encode(sha256(g::text::bytea), 'hex'), 'mime', 'image/jpeg', 'asset_type', 'image',
		'jobs', '[\"metadata\"]'::jsonb, 'priority', 5, 'after', 'leave', 'on_duplicate', 'ingest',
		'storage_type', 'local', 'storage_tier', 'hot', 'node', 'n1'))
		FROM generate_series($((b * 500 + 1)), $((b * 500 + 500))) g" >"$T/bench$b.json"
done
{
	echo '\timing on'
	for b in $(seq 0 $((NB - 1))); do
		echo "\\set j \`cat $T/bench$b.json\`"
		echo "SELECT count(*) FILTER (WHERE outcome = 'ingested') FROM mam_ingest_batch(:'j'::jsonb);"
	done
} | psql -X -q -At -v ON_ERROR_STOP=1 >"$T/bench.out"
assert_eq "$(grep -cx 500 "$T/bench.out")" "$NB" "every benchmark batch fully ingested"
ms=$(sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' "$T/bench.out" | awk '{s += $1} END {printf "%.0f", s}')
log "mam_ingest_batch: $((NB * 500)) files in $NB batches of 500: ${ms} ms, $(awk -v ms="$ms" -v n=$((NB * 500)) 'BEGIN {printf "%.0f", n / (ms / 1000)}') files/s"
log "catalog_sql: all checks passed"
