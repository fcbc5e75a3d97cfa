#!/bin/bash
# Schema migrations against a real PostgreSQL, checked in the catalog (never
# against the SQL text): after `migrate` every column of the seed's five
# tables has the seed's type, length, precision, default and nullability;
# every seed index exists on the right table with the right key; the primary
# keys match; assets is range-partitioned by partition_date with this month's,
# next month's and the DEFAULT partition. Then: 001 alone adds no column the
# seed lacks and later migrations change no seed column; a second migrate
# changes nothing; two migrates at once both succeed and record each migration
# once; a failing migration is rolled back whole and named with its file; the
# partition function is idempotent, moves rows out of the default partition,
# and is safe when called concurrently.
. "$MAM_SRC/tests/lib/common.sh"

pg_start
mkdir -p "$T/drop"
cat >"$T/cfg.yaml" <<CFG
database:
  conninfo: ""
tenants:
  - code: t
    name: T
    drop_folders:
      - path: $T/drop
CFG
chmod 600 "$T/cfg.yaml"
unset MAM_SQLDIR

# The seed (shared/seed/core-schema.md), as the catalog must show it:
# table|column|data_type|max length|numeric precision,scale|default|nullable
SEED=$(cat <<'SEED'
tenants|id|uuid|||gen_random_uuid()|NO
tenants|code|character varying|50|||NO
tenants|name|character varying|255|||NO
tenants|settings|jsonb|||'{}'::jsonb|YES
tenants|storage_quota_bytes|bigint||||YES
tenants|is_active|boolean|||true|YES
tenants|created_at|timestamp with time zone|||now()|YES
tenants|updated_at|timestamp with time zone|||now()|YES
assets|id|uuid|||gen_random_uuid()|NO
assets|tenant_id|uuid||||NO
assets|title|character varying|500|||NO
assets|description|text||||YES
assets|asset_type|character varying|50|||NO
assets|code|character varying|100|||YES
assets|slug|character varying|255|||YES
assets|duration_ms|integer||||YES
assets|recorded_at|timestamp with time zone||||YES
assets|content_rating|character varying|20|||YES
assets|visibility|character varying|20||'internal'::character varying|YES
assets|parent_id|uuid||||YES
assets|derivative_type|character varying|50|||YES
assets|status|character varying|50||'pending'::character varying|YES
assets|publish_status|character varying|50||'draft'::character varying|YES
assets|primary_storage_path|text||||YES
assets|file_size_bytes|bigint||||YES
assets|checksum_sha256|character varying|64|||YES
assets|external_ids|jsonb|||'{}'::jsonb|YES
assets|extra|jsonb|||'{}'::jsonb|YES
assets|created_by|uuid||||YES
assets|created_at|timestamp with time zone|||now()|YES
assets|updated_at|timestamp with time zone|||now()|YES
assets|deleted_at|timestamp with time zone||||YES
assets|partition_date|date|||CURRENT_DATE|NO
asset_storage_locations|id|uuid|||gen_random_uuid()|NO
asset_storage_locations|asset_id|uuid||||NO
asset_storage_locations|tenant_id|uuid||||NO
asset_storage_locations|storage_type|character varying|50|||NO
asset_storage_locations|storage_tier|character varying|50||'hot'::character varying|YES
asset_storage_locations|bucket|character varying|255|||YES
asset_storage_locations|path|text||||NO
asset_storage_locations|filename|character varying|500|||YES
asset_storage_locations|url|text||||YES
asset_storage_locations|file_size_bytes|bigint||||YES
asset_storage_locations|checksum_sha256|character varying|64|||YES
asset_storage_locations|content_type|character varying|100|||YES
asset_storage_locations|purpose|character varying|50||'original'::character varying|YES
asset_storage_locations|is_primary|boolean|||false|YES
asset_storage_locations|is_accessible|boolean|||true|YES
asset_storage_locations|status|character varying|50||'available'::character varying|YES
asset_storage_locations|created_at|timestamp with time zone|||now()|YES
asset_storage_locations|updated_at|timestamp with time zone|||now()|YES
asset_storage_locations|verified_at|timestamp with time zone||||YES
asset_storage_locations|archived_at|timestamp with time zone||||YES
asset_technical_metadata|asset_id|uuid||||NO
asset_technical_metadata|tenant_id|uuid||||NO
asset_technical_metadata|width|integer||||YES
asset_technical_metadata|height|integer||||YES
asset_technical_metadata|frame_rate|numeric||10,4||YES
asset_technical_metadata|frame_rate_num|integer||||YES
asset_technical_metadata|frame_rate_den|integer||||YES
asset_technical_metadata|video_codec|character varying|50|||YES
asset_technical_metadata|video_codec_profile|character varying|100|||YES
asset_technical_metadata|video_bitrate_bps|bigint||||YES
asset_technical_metadata|audio_codec|character varying|50|||YES
asset_technical_metadata|audio_channels|integer||||YES
asset_technical_metadata|audio_channel_layout|character varying|100|||YES
asset_technical_metadata|audio_sample_rate|integer||||YES
asset_technical_metadata|audio_bitrate_bps|bigint||||YES
asset_technical_metadata|audio_bit_depth|integer||||YES
asset_technical_metadata|container_format|character varying|50|||YES
asset_technical_metadata|duration_ms|bigint||||YES
asset_technical_metadata|bit_depth|integer||||YES
asset_technical_metadata|color_space|character varying|50|||YES
asset_technical_metadata|aspect_ratio|character varying|20|||YES
asset_technical_metadata|resolution_category|character varying|20|||YES
asset_technical_metadata|ffprobe_raw|jsonb||||YES
asset_technical_metadata|mediainfo_raw|jsonb||||YES
asset_technical_metadata|analyzed_at|timestamp with time zone||||YES
asset_technical_metadata|analyzer_version|character varying|50|||YES
asset_technical_metadata|created_at|timestamp with time zone|||now()|YES
asset_technical_metadata|updated_at|timestamp with time zone|||now()|YES
ingest_jobs|id|uuid|||gen_random_uuid()|NO
ingest_jobs|tenant_id|uuid||||NO
ingest_jobs|asset_id|uuid||||YES
ingest_jobs|job_type|character varying|50|||NO
ingest_jobs|status|character varying|50||'pending'::character varying|YES
ingest_jobs|priority|integer|||5|YES
ingest_jobs|input_path|text||||YES
ingest_jobs|output_path|text||||YES
ingest_jobs|progress|integer|||0|YES
ingest_jobs|created_at|timestamp with time zone|||now()|YES
ingest_jobs|started_at|timestamp with time zone||||YES
ingest_jobs|completed_at|timestamp with time zone||||YES
ingest_jobs|error_message|text||||YES
ingest_jobs|retry_count|integer|||0|YES
ingest_jobs|max_retries|integer|||3|YES
ingest_jobs|result|jsonb||||YES
SEED
)
TABLES="'tenants','assets','asset_storage_locations','asset_technical_metadata','ingest_jobs'"

# Every column of the five tables, in the SEED format, from information_schema.
columns() {
	psql_q "SELECT table_name || '|' || column_name || '|' || data_type || '|' ||
	               coalesce(character_maximum_length::text, '') || '|' ||
	               CASE WHEN data_type = 'numeric'
	                    THEN numeric_precision || ',' || numeric_scale ELSE '' END || '|' ||
	               coalesce(column_default, '') || '|' || is_nullable
	          FROM information_schema.columns
	         WHERE table_schema = 'public' AND table_name IN ($TABLES)
	         ORDER BY 1"
}
# Everything migrate could change, for before/after comparisons.
catalog_dump() {
	columns
	psql_q "SELECT tablename || ' ' || indexname || ' ' || indexdef FROM pg_indexes
	         WHERE schemaname = 'public' ORDER BY 1"
	psql_q "SELECT conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
	          FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1"
	psql_q "SELECT c.relname || ' ' || pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i
	          JOIN pg_class c ON c.oid = i.inhrelid ORDER BY 1"
	psql_q "SELECT p.proname || ' ' || md5(p.prosrc) FROM pg_proc p
	         WHERE p.pronamespace = 'public'::regnamespace ORDER BY 1"
	psql_q "SELECT version, name, applied_at FROM schema_migrations ORDER BY 1"
}

# 1. Only 001: exactly the seed, no column more or less.
mkdir -p "$T/sql1"
cp "$MAM_SRC/sql/001_"*.sql "$T/sql1/"
out=$("$MAM_BIN" migrate -c "$T/cfg.yaml" --sql-dir "$T/sql1") || fail "migrate of 001 failed: $out"
grep -q '^applied 001_core_schema$' <<<"$out" || fail "migrate did not report 001: $out"
diff <(sort <<<"$SEED") <(columns | sort) >"$T/diff1" ||
	{ cat "$T/diff1" >&2; fail "001 does not create exactly the seed's columns (< seed, > catalog)"; }

# 2. All migrations shipped: the seed columns are untouched by later ones.
out=$("$MAM_BIN" migrate -c "$T/cfg.yaml") || fail "migrate failed: $out"
nfiles=$(ls "$MAM_SRC"/sql/[0-9]*_*.sql | wc -l)
assert_eq "$(psql_q 'SELECT count(*) FROM schema_migrations')" "$nfiles" "recorded migrations"
assert_eq "$(psql_q 'SELECT min(version) FROM schema_migrations')" 1 "first migration"
missing=$(comm -23 <(sort <<<"$SEED") <(columns | sort))
[ -z "$missing" ] || fail "a later migration changed seed columns:
$missing"

# Indexes: name, table and key, as the seed lists them.
for ix in "tenants idx_tenants_code (code)" "tenants idx_tenants_is_active (is_active)" \
	"assets idx_assets_tenant_id (tenant_id)" "assets idx_assets_status (status)" \
	"assets idx_assets_asset_type (asset_type)" "assets idx_assets_created_at (created_at)" \
	"asset_storage_locations idx_storage_asset_id (asset_id)" \
	"asset_storage_locations idx_storage_tenant_id (tenant_id)" \
	"asset_storage_locations idx_storage_purpose (purpose)" \
	"ingest_jobs idx_jobs_status (status)" "ingest_jobs idx_jobs_asset_id (asset_id)" \
	"ingest_jobs idx_jobs_priority (priority DESC, created_at)"; do
	read -r tbl name key <<<"$ix"
	got=$(psql_q "SELECT tablename || ' ' || regexp_replace(indexdef, '^.* USING btree ', '')
	                FROM pg_indexes WHERE schemaname = 'public' AND indexname = '$name'")
	assert_eq "$got" "$tbl $key" "index $name"
done

# Primary keys (columns in key order) and the UNIQUE on tenants.code.
pk() {
	psql_q "SELECT string_agg(a.attname, ',' ORDER BY k.n) FROM pg_constraint c
	          CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(att, n)
	          JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.att
	         WHERE c.conrelid = '$1'::regclass AND c.contype = '$2'"
}
assert_eq "$(pk tenants p)" id "tenants primary key"
assert_eq "$(pk assets p)" id,partition_date "assets primary key"
assert_eq "$(pk asset_storage_locations p)" id "asset_storage_locations primary key"
assert_eq "$(pk asset_technical_metadata p)" asset_id "asset_technical_metadata primary key"
assert_eq "$(pk ingest_jobs p)" id "ingest_jobs primary key"
assert_eq "$(pk tenants u)" code "tenants unique code"

# Partitioning: RANGE on partition_date, this and next month, and the default.
assert_eq "$(psql_q "SELECT p.partstrat::text || ' ' || a.attname FROM pg_partitioned_table p
                      JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]
                     WHERE p.partrelid = 'assets'::regclass")" "r partition_date" "assets partitioning"
part_of() {
	psql_q "SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i
	          JOIN pg_class c ON c.oid = i.inhrelid
	         WHERE i.inhparent = 'assets'::regclass AND c.relname = '$1'"
}
this=$(psql_q "SELECT to_char(current_date, 'YYYY_MM')")
bounds=$(psql_q "SELECT format('FOR VALUES FROM (%L) TO (%L)', date_trunc('month', current_date)::date,
                       (date_trunc('month', current_date) + interval '1 month')::date)")
assert_eq "$(part_of "assets_$this")" "$bounds" "partition assets_$this"
next=$(psql_q "SELECT to_char(current_date + interval '1 month', 'YYYY_MM')")
[ -n "$(part_of "assets_$next")" ] || fail "no partition for next month (assets_$next)"
assert_eq "$(part_of assets_default)" DEFAULT "default partition"
# A row of today lands in this month's partition, not the default.
tid=$(psql_q "INSERT INTO tenants (code, name) VALUES ('x', 'X') RETURNING id")
assert_eq "$(psql_q "INSERT INTO assets (tenant_id, title, asset_type) VALUES ('$tid', 'a', 'video')
                     RETURNING tableoid::regclass")" "assets_$this" "partition of a new asset"

# 3. A second migrate applies nothing and changes nothing.
catalog_dump >"$T/before"
out=$("$MAM_BIN" migrate -c "$T/cfg.yaml") || fail "second migrate failed: $out"
assert_eq "$out" "database is up to date" "second migrate output"
catalog_dump >"$T/after"
diff "$T/before" "$T/after" >&2 || fail "second migrate changed the catalog"

# 4. Two migrates at once on an empty database: both succeed, each migration once.
as_pg "$PGBIN/createdb" -h "$PGHOST" -U postgres mam2
PGDATABASE=mam2 "$MAM_BIN" migrate -c "$T/cfg.yaml" >"$T/m1.out" 2>&1 &
p1=$!
PGDATABASE=mam2 "$MAM_BIN" migrate -c "$T/cfg.yaml" >"$T/m2.out" 2>&1 &
p2=$!
wait $p1 || { cat "$T/m1.out" >&2; fail "first concurrent migrate failed"; }
wait $p2 || { cat "$T/m2.out" >&2; fail "second concurrent migrate failed"; }
assert_eq "$(cat "$T/m1.out" "$T/m2.out" | grep -c '^applied ')" "$nfiles" "migrations applied by the pair"
assert_eq "$(PGDATABASE=mam2 psql_q 'SELECT count(*), count(DISTINCT version) FROM schema_migrations')" \
	"$nfiles|$nfiles" "migrations recorded by the pair"
diff <(columns) <(PGDATABASE=mam2 columns) >&2 || fail "concurrent migrates built a different schema"

# 5. A failing migration: named with its file and PostgreSQL's message, rolled
#    back whole (its first statement leaves no trace), not recorded.
mkdir -p "$T/sql2"
cp "$T/sql1/"*.sql "$T/sql2/"
printf 'CREATE TABLE half_done (x int);\n\nSELECT no_such_column FROM tenants;\n' >"$T/sql2/002_broken.sql"
as_pg "$PGBIN/createdb" -h "$PGHOST" -U postgres mam3
export PGDATABASE=mam3
if out=$("$MAM_BIN" migrate -c "$T/cfg.yaml" --sql-dir "$T/sql2" 2>&1); then
	fail "a broken migration was reported as applied: $out"
fi
grep -q "002_broken.sql\" failed at line 3: ERROR:  column \"no_such_column\" does not exist" <<<"$out" ||
	fail "failure message lacks the file, line or PostgreSQL's message: $out"
assert_eq "$(psql_q "SELECT to_regclass('half_done') IS NULL")" t "rolled back table"
assert_eq "$(psql_q "SELECT string_agg(name, ',') FROM schema_migrations")" 001_core_schema \
	"migrations recorded after the failure"
grep -q '^applied 001_core_schema$' <<<"$out" || fail "001 was not applied before 002 failed: $out"
export PGDATABASE=mam

# 6. The partition function: idempotent; rows waiting in the default partition
#    move into the month made for them; concurrent callers do not collide.
assert_eq "$(psql_q "SELECT mam_create_assets_partitions(current_date, current_date)")" 0 "re-creating this month"
psql_q "INSERT INTO assets (tenant_id, title, asset_type, partition_date)
        VALUES ('$tid', 'future', 'video', '2031-05-17'), ('$tid', 'past', 'image', '2019-12-31')" >/dev/null
assert_eq "$(psql_q "SELECT string_agg(tableoid::regclass::text, ',') FROM assets WHERE partition_date < '2020-01-01' OR partition_date > '2031-01-01'")" \
	"assets_default,assets_default" "rows without a month partition"
before=$(psql_q "SELECT id, title, partition_date FROM assets ORDER BY 1")
assert_eq "$(psql_q "SELECT mam_create_assets_partitions('2031-04-30', '2031-06-01')")" 3 "partitions created for 2031-04..06"
assert_eq "$(psql_q "SELECT tableoid::regclass FROM assets WHERE title = 'future'")" assets_2031_05 "moved row"
assert_eq "$(psql_q "SELECT id, title, partition_date FROM assets ORDER BY 1")" "$before" "rows after the move"
for i in 1 2 3 4; do
	psql_q "SELECT mam_create_assets_partitions('2033-01-01', '2033-12-31')" >"$T/p$i.out" 2>&1 &
	eval "pp$i=\$!"
done
total=0
for i in 1 2 3 4; do
	eval "wait \$pp$i" || { cat "$T/p$i.out" >&2; fail "concurrent partition call $i failed"; }
	total=$((total + $(cat "$T/p$i.out")))
done
assert_eq "$total" 12 "partitions created by four concurrent callers"
assert_eq "$(psql_q "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                     WHERE i.inhparent = 'assets'::regclass AND c.relname LIKE 'assets\_2033\_%'")" 12 "2033 partitions"
# 7. Where migrations are found: $MAM_SQLDIR first; a binary outside a build
#    tree (no CMakeCache.txt beside it) looks in the installed share/ dir.
as_pg "$PGBIN/createdb" -h "$PGHOST" -U postgres mam4
out=$(PGDATABASE=mam4 MAM_SQLDIR="$T/sql1" "$MAM_BIN" migrate -c "$T/cfg.yaml") || fail "MAM_SQLDIR migrate: $out"
assert_eq "$(PGDATABASE=mam4 psql_q "SELECT string_agg(name, ',') FROM schema_migrations")" 001_core_schema \
	"migrations applied from \$MAM_SQLDIR"
mkdir -p "$T/bin"
cp "$MAM_BIN" "$T/bin/mam-ingest"
out=$(PGDATABASE=mam4 "$T/bin/mam-ingest" migrate -c "$T/cfg.yaml" 2>&1) || true
if ! grep -q '^applied \|database is up to date' <<<"$out"; then
	grep -q 'share/mam-ingest/sql' <<<"$out" || fail "installed binary did not look in share/mam-ingest/sql: $out"
fi
log "schema OK: $(wc -l <<<"$SEED") seed columns, 12 indexes, 5 primary keys, partitions"
