#!/bin/bash
# A file's identity without st_dev (issue 10, sql/005_identity_without_dev.sql).
# Two NAS heads mounting one share see the same inode numbers, sizes and
# mtimes but each gives the mount its own st_dev, so st_dev must not be part
# of the ledger's idempotency key. On a real PostgreSQL:
#  - a database migrated up to 004 records files keyed the old way (with
#    dev), one of them twice through two "mounts" (dev 2049 and 2050: two
#    rows, two assets), and one with a name that is not UTF-8;
#  - migration 005 re-keys every row from its own columns: the same files
#    sent again with any other dev answer "already" with the asset recorded
#    the first time and write nothing; lookups with another dev find them;
#    of the twin pair the oldest row takes the new key, the other keeps its
#    history; every re-keyed row's key equals mam_ingest_key() of its columns;
#  - a new file sent with dev A and then dev B gives one asset;
#  - a new mtime, inode, size or path is still a new file.
. "${MAM_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/common.sh"

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
mkdir -p "$T/sql-004"
cp "$MAM_SRC"/sql/00[1-4]_*.sql "$T/sql-004/"
MAM_SQLDIR=$T/sql-004 migrate "$T/cfg.yaml" >/dev/null
assert_eq "$(psql_q "SELECT max(version) FROM schema_migrations")" 4 "schema version before the upgrade"
psql_q "SELECT count(*) FROM mam_upsert_tenants('[{\"code\":\"acme\",\"name\":\"ACME\"}]')" >/dev/null

uuid() { cat /proc/sys/kernel/random/uuid; }
sha() { printf '%064x' "$1"; }
# file_json RELPATH DEV INO SIZE MTIME_NS SHA_N ASSET_ID [EXTRA_FIELDS]
file_json() {
	printf '{"tenant":"acme","folder":"/drop/acme","relpath":"%s","abspath":"/drop/acme/%s","asset_id":"%s","dev":%s,"ino":%s,"size":%s,"mtime_ns":%s,"ctime_ns":1,"sha256":"%s","mime":"video/mp4","asset_type":"video","jobs":["metadata"],"priority":5,"after":"leave","on_duplicate":"ingest","storage_type":"local","storage_tier":"hot","node":"n1"%s}' \
		"$1" "$1" "$7" "$2" "$3" "$4" "$5" "$(sha "$6")" "${8:-}"
}
# lookup_json RELPATH DEV INO SIZE MTIME_NS [EXTRA_FIELDS]
lookup_json() {
	printf '{"tenant":"acme","folder":"/drop/acme","relpath":"%s","dev":%s,"ino":%s,"size":%s,"mtime_ns":%s%s}' \
		"$1" "$2" "$3" "$4" "$5" "${6:-}"
}
# batch JSON: idx|outcome|asset_id per element
batch() {
	psql_q "SELECT idx || '|' || outcome || '|' || coalesce(asset_id::text, '') || '|' || coalesce(error, '')
		FROM mam_ingest_batch('$1'::jsonb) ORDER BY idx"
}
# lookup JSON: the asset ids found, in input order
lookup() {
	psql_q "SELECT coalesce(string_agg(idx || ':' || asset_id, ',' ORDER BY idx), '')
		FROM mam_ingest_lookup('$1'::jsonb)"
}
count() { psql_q "SELECT count(*) FROM $1"; }
M=1700000000000000000
HEX=',"relpath_hex":"622f636166e92e6d6f76","abspath_hex":"2f64726f702f61636d652f622f636166e92e6d6f76"'

# ---- recorded the old way (schema 004: dev in the key) -------------------------
A1=$(uuid) A2=$(uuid) A3=$(uuid) A4=$(uuid)
assert_eq "$(batch "[$(file_json "a/one.mov" 2049 11 100 $M 1 "$A1")]")" "0|ingested|$A1|" "file 1 under 004"
assert_eq "$(batch "[$(file_json "b/caf\\\\xe9.mov" 2049 12 100 $M 2 "$A2" "$HEX")]")" "0|ingested|$A2|" \
	"non-UTF-8 name under 004"
# The same file through two mounts: under 004 these were two files.
assert_eq "$(batch "[$(file_json "c/twin.mov" 2049 13 100 $M 3 "$A3")]")" "0|ingested|$A3|" "twin via dev 2049"
assert_eq "$(batch "[$(file_json "c/twin.mov" 2050 13 100 $M 3 "$A4")]")" "0|ingested|$A4|" "twin via dev 2050 under 004"
assert_eq "$(count assets):$(count ingest_ledger)" "4:4" "rows under 004"
psql_q "SELECT id || ' ' || key FROM ingest_ledger ORDER BY id" >"$T/keys-004"

# ---- upgrade to 005 ------------------------------------------------------------
unset MAM_SQLDIR
migrate "$T/cfg.yaml" >"$T/migrate.log" 2>&1 || { cat "$T/migrate.log" >&2; fail "migrate to 005 failed"; }
assert_eq "$(psql_q "SELECT count(*) FROM schema_migrations WHERE version = 5")" 1 "migration 005 recorded"
# Every row but the younger twin was re-keyed, to exactly mam_ingest_key() of its columns.
assert_eq "$(psql_q "SELECT count(*) FROM ingest_ledger l JOIN tenants t ON t.id = l.tenant_id
	WHERE l.key = mam_ingest_key(t.code, l.folder, l.relpath, encode(l.relpath_bytes, 'hex'), 0, l.ino, l.size, l.mtime_ns)")" \
	3 "rows keyed without dev"
assert_eq "$(psql_q "SELECT asset_id FROM ingest_ledger l JOIN tenants t ON t.id = l.tenant_id
	WHERE l.key <> mam_ingest_key(t.code, l.folder, l.relpath, encode(l.relpath_bytes, 'hex'), 0, l.ino, l.size, l.mtime_ns)")" \
	"$A4" "the younger twin keeps its old key"
assert_eq "$(psql_q "SELECT key FROM ingest_ledger WHERE asset_id = '$A4'")" \
	"$(awk 'NR == 4 { print $2 }' "$T/keys-004")" "the younger twin's key is unchanged"
assert_eq "$(psql_q "SELECT count(DISTINCT key) FROM ingest_ledger")" 4 "distinct keys after the upgrade"

# ---- after the upgrade: dev does not matter ------------------------------------
# Sent again through a third mount (dev 64770): known, nothing written.
assert_eq "$(batch "[$(file_json "a/one.mov" 64770 11 100 $M 1 "$(uuid)"),$(file_json "b/caf\\\\xe9.mov" 64770 12 100 $M 2 "$(uuid)" "$HEX"),$(file_json "c/twin.mov" 64770 13 100 $M 3 "$(uuid)")]")" \
	"0|already|$A1|
1|already|$A2|
2|already|$A3|" "old files through another mount"
assert_eq "$(lookup "[$(lookup_json "a/one.mov" 1 11 100 $M),$(lookup_json "b/caf\\\\xe9.mov" 77 12 100 $M ',"relpath_hex":"622f636166e92e6d6f76"'),$(lookup_json "c/twin.mov" 5 13 100 $M)]")" \
	"0:$A1,1:$A2,2:$A3" "lookups with other devs"
assert_eq "$(count assets):$(count ingest_ledger):$(count ingest_jobs)" "4:4:4" "rows after the resends"

# A new file through two mounts: one asset.
A5=$(uuid)
assert_eq "$(batch "[$(file_json "d/new.mov" 100 21 100 $M 5 "$A5")]")" "0|ingested|$A5|" "new file via dev 100"
assert_eq "$(batch "[$(file_json "d/new.mov" 200 21 100 $M 5 "$(uuid)")]")" "0|already|$A5|" "same new file via dev 200"
# Anything else that identifies a file still makes a new one.
assert_eq "$(lookup "[$(lookup_json "d/new.mov" 100 21 100 $((M + 1))),$(lookup_json "d/new.mov" 100 22 100 $M),$(lookup_json "d/new.mov" 100 21 101 $M),$(lookup_json "d/other.mov" 100 21 100 $M),$(lookup_json "d/new.mov" 100 21 100 $M)]")" \
	"4:$A5" "mtime, inode, size and path still identify a file"
assert_eq "$(count assets):$(count ingest_ledger)" "5:5" "rows at the end"
log "PASS"
