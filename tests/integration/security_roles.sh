#!/usr/bin/env bash
# security_roles (issue 9): the database roles and row-level security, against
# a real PostgreSQL.
#  1. The configuration: a world-writable file and a password= keyword in the
#     conninfo are refused by the commands that run (config_cli.sh covers a
#     group-writable file and a password in a URI, with check-config); a TLS
#     conninfo with sslmode=verify-full is accepted.
#  2. sql/roles/create_roles.sql makes the roles, in both orders: in one
#     database the migrations run first (as the superuser) and the script
#     after; in another the script runs first and `mam-ingest migrate` after,
#     connected as mam_owner. Both end with the same owners, grants (tables,
#     columns, sequences, functions, schema, database) and policies, all
#     owned by mam_owner; re-running the script, or 004 by hand, changes
#     nothing. No role is superuser, creates roles or databases, or bypasses
#     row security; the ingester cannot run migrations.
#  3. With passwords and a pgpass file named by PGPASSFILE: `scan` and `run`
#     connected as mam_ingester ingest files for two tenants (a move too),
#     `status` works as mam_ingester, and `worker` as mam_worker completes the
#     metadata and thumbnail jobs of those files.
#  4. mam_app (through a login role that is a member), with mam.tenant_id set
#     to a tenant, sees exactly that tenant's rows of every tenant-scoped
#     table, and nothing when the setting is unset, empty or reset; it cannot
#     insert or update a row into another tenant (error) nor touch another
#     tenant's row; row_security=off is an error, not a bypass.
#  5. No run-time role holds any privilege on any partition of assets, one
#     made at run time included; mam_app cannot read one directly.
#  6. mam_ingester and mam_worker cannot create roles or tables, drop, truncate
#     or alter the tables, call the grant function, or use what they do not
#     need (the worker reads no ledger path, the ingester no metadata).
. "${MAM_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/common.sh"
. "$MAM_SRC/tests/integration/lib_ingest.sh"
ing_require ffmpeg ffprobe diff sort sed

ROLES_SQL=$MAM_SRC/sql/roles/create_roles.sql
RUNTIME_ROLES="mam_ingester mam_worker mam_app app_alice"
A=$T/drop/a # tenant ta: metadata + thumbnail jobs, a quota (the ingester locks the row)
B=$T/drop/b # tenant tb: metadata job, files moved to $T/lib/b
mkdir -p "$A" "$B" "$T/lib/b" "$T/deriv" "$T/src"
CFG=$T/mam.yaml
{
	cfg_header 300
	cat <<EOF
worker:
  concurrency: 2
  derivatives_root: $T/deriv
  poll_ms: 60000
tenants:
  - code: ta
    name: Tenant A
    storage_quota_bytes: 100000000
    drop_folders:
      - path: $A
        jobs: [metadata, thumbnail]
  - code: tb
    name: Tenant B
    drop_folders:
      - path: $B
        after_ingest: move
        move_to: $T/lib/b
        jobs: [metadata]
EOF
} >"$CFG"
cfg_finish "$CFG"

# run_cli OUTVAR ARGS...: run the binary, stdout+stderr in OUTVAR, status in
# $rc; a command that wrongly accepts its configuration is stopped after 60 s.
run_cli() {
	local __var=$1 __out
	shift
	rc=0
	__out=$(timeout 60 "$MAM_BIN" "$@" 2>&1) || rc=$?
	printf -v "$__var" '%s' "$__out"
}

# as_role ROLE SQL [DB]: run SQL connected as ROLE; fail on any error.
as_role() {
	PGUSER=$1 PGDATABASE=${3:-mam} psql -X -q -w -v ON_ERROR_STOP=1 -At -c "$2" 2>&1 ||
		fail "as $1: [$2] failed"
}
# refused ROLE PATTERN SQL: SQL as ROLE must fail with an error matching PATTERN.
refused() {
	local out rc=0
	out=$(PGUSER=$1 psql -X -q -w -v ON_ERROR_STOP=1 -At -c "$3" 2>&1) || rc=$?
	[ $rc != 0 ] || fail "as $1: [$3] succeeded (output: $out)"
	grep -qE -- "$2" <<<"$out" || fail "as $1: [$3] failed, but not with /$2/: $out"
}

# ---- 1. the configuration ----------------------------------------------------
phase_begin "configuration: modes, passwords, TLS"
for mode in 0666 0646 0602; do
	cp "$CFG" "$T/open.yaml"
	chmod "$mode" "$T/open.yaml"
	for cmd in run scan worker migrate; do
		run_cli out "$cmd" -c "$T/open.yaml"
		[ "$rc" != 0 ] || fail "$cmd accepted a configuration file of mode $mode"
		grep -q "^$T/open.yaml: .*group- or world-writable (mode $mode)" <<<"$out" ||
			fail "$cmd on a mode $mode file: $out"
	done
done
sed 's|conninfo: ""|conninfo: "host=/run/postgresql dbname=mam user=mam_ingester password=hunter2"|' \
	"$CFG" >"$T/pw.yaml"
cfg_finish "$T/pw.yaml"
grep -q hunter2 "$T/pw.yaml" || fail "test setup: password not in the file"
for cmd in check-config run scan worker; do
	run_cli out "$cmd" -c "$T/pw.yaml"
	[ "$rc" != 0 ] || fail "$cmd accepted password= in the conninfo"
	grep -q "$T/pw.yaml:[0-9]*:[0-9]*: key \"database.conninfo\": a password in the configuration file is refused.*pgpass" <<<"$out" ||
		fail "$cmd with password=: $out"
	if grep -q hunter2 <<<"$out"; then fail "$cmd echoed the password: $out"; fi
done
sed 's|conninfo: ""|conninfo: "host=db.example.com dbname=mam user=mam_ingester sslmode=verify-full sslrootcert=/etc/mam-ingest/ca.pem"|' \
	"$CFG" >"$T/tls.yaml"
cfg_finish "$T/tls.yaml"
run_cli out check-config -c "$T/tls.yaml"
assert_eq "$out" "configuration OK" "check-config with sslmode=verify-full"
phase_end

pg_start

# ---- 2. the roles, in both orders --------------------------------------------

# snapshot DB: owners, privileges and policies of everything in public, the
# schema and the database, one fact a line, sorted. Monthly partition names are
# normalised (the two databases may be migrated either side of a month's end).
snapshot() {
	PGDATABASE=$1 psql -X -q -v ON_ERROR_STOP=1 -At <<'SQL' |
WITH rels AS (
	SELECT c.oid, c.relname, c.relkind, c.relowner, c.relrowsecurity, c.relforcerowsecurity,
	       coalesce(c.relacl, acldefault((CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END)::"char",
					     c.relowner)) AS acl
	  FROM pg_class c
	 WHERE c.relnamespace = 'public'::regnamespace
	   AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S', 'c')
), procs AS (
	SELECT p.oid, p.oid::regprocedure::text AS name, p.proowner, p.prosecdef, p.proconfig,
	       coalesce(p.proacl, acldefault('f', p.proowner)) AS acl
	  FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
)
SELECT format('rel %s kind=%s owner=%s rls=%s force=%s', relname, relkind, relowner::regrole,
	      relrowsecurity, relforcerowsecurity) FROM rels
UNION ALL
SELECT format('acl %s %s %s by %s grantable=%s', r.relname,
	      CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,
	      a.privilege_type, a.grantor::regrole, a.is_grantable)
  FROM rels r, aclexplode(r.acl) a
UNION ALL
SELECT format('colacl %s.%s %s %s by %s', r.relname, att.attname,
	      CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,
	      a.privilege_type, a.grantor::regrole)
  FROM rels r JOIN pg_attribute att ON att.attrelid = r.oid AND att.attacl IS NOT NULL,
       aclexplode(att.attacl) a
UNION ALL
SELECT format('fn %s owner=%s secdef=%s config=%s', name, proowner::regrole, prosecdef,
	      array_to_string(proconfig, ',')) FROM procs
UNION ALL
SELECT format('fnacl %s %s %s by %s', p.name,
	      CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,
	      a.privilege_type, a.grantor::regrole)
  FROM procs p, aclexplode(p.acl) a
UNION ALL
SELECT format('type %s owner=%s', t.typname, t.typowner::regrole)
  FROM pg_type t WHERE t.typnamespace = 'public'::regnamespace
UNION ALL
SELECT format('policy %s %s %s to=%s cmd=%s using=%s check=%s', tablename, policyname,
	      permissive, roles, cmd, qual, with_check)
  FROM pg_policies WHERE schemaname = 'public'
UNION ALL
SELECT format('schema %s %s by %s', CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,
	      a.privilege_type, a.grantor::regrole)
  FROM pg_namespace n, aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
 WHERE n.nspname = 'public'
UNION ALL
SELECT format('database %s %s by %s', CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,
	      a.privilege_type, a.grantor::regrole)
  FROM pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
 WHERE d.datname = current_database()
UNION ALL
SELECT format('default acl entries %s', count(*)) FROM pg_default_acl;
SQL
		sed -E 's/assets_[0-9]{4}_[0-9]{2}/assets_YYYY_MM/g' | LC_ALL=C sort -u
}

# Everything in public belongs to mam_owner.
owned_by_mam_owner() {
	local db=$1 n
	n=$(PGDATABASE=$db psql_q "SELECT (SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace
			AND relowner <> 'mam_owner'::regrole)
		+ (SELECT count(*) FROM pg_proc WHERE pronamespace = 'public'::regnamespace
			AND proowner <> 'mam_owner'::regrole)
		+ (SELECT count(*) FROM pg_type WHERE typnamespace = 'public'::regnamespace
			AND typowner <> 'mam_owner'::regrole)")
	assert_eq "$n" 0 "objects in $db not owned by mam_owner"
}

phase_begin "migrations first, roles after (database mam_late)"
psql_q "CREATE DATABASE mam_late" >/dev/null
assert_eq "$(psql_q "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'mam\_%'")" 0 "mam_ roles before the script"
PGDATABASE=mam_late ing_migrate "$CFG"
grep -q "applied 004_row_security" "$T/migrate.log" || fail "004 not applied: $(cat "$T/migrate.log")"
assert_eq "$(PGDATABASE=mam_late psql_q "SELECT tableowner FROM pg_tables WHERE tablename = 'assets'")" postgres \
	"owner of assets migrated by the superuser"
PGDATABASE=mam_late psql -X -q -f "$ROLES_SQL" >"$T/roles_late.log" 2>&1 ||
	{ cat "$T/roles_late.log" >&2; fail "create_roles.sql after the migrations failed"; }
grep -q "objects of postgres in schema public now belong to mam_owner" "$T/roles_late.log" ||
	fail "no ownership transfer reported: $(cat "$T/roles_late.log")"
owned_by_mam_owner mam_late
phase_end

phase_begin "roles first, migrations after as mam_owner (database mam)"
psql -X -q -f "$ROLES_SQL" >"$T/roles_first.log" 2>&1 ||
	{ cat "$T/roles_first.log" >&2; fail "create_roles.sql before the migrations failed"; }
grep -q "no catalogue in schema public yet" "$T/roles_first.log" ||
	fail "roles first: unexpected output: $(cat "$T/roles_first.log")"
# The ingester cannot run migrations: it may not create anything.
PGUSER=mam_ingester run_cli out migrate -c "$CFG"
[ "$rc" != 0 ] || fail "migrate as mam_ingester succeeded"
grep -q "permission denied for schema public" <<<"$out" || fail "migrate as mam_ingester: $out"
PGUSER=mam_owner ing_migrate "$CFG"
grep -q "applied 004_row_security" "$T/migrate.log" || fail "004 not applied: $(cat "$T/migrate.log")"
owned_by_mam_owner mam
phase_end

phase_begin "both orders, re-runs: same privileges"
snapshot mam >"$T/snap_first"
snapshot mam_late >"$T/snap_late"
if ! diff -u "$T/snap_first" "$T/snap_late" >"$T/snap.diff"; then
	head -60 "$T/snap.diff" >&2
	fail "roles-first and migrations-first databases differ"
fi
# Not a comparison of two empty lists.
for want in \
	"acl ingest_ledger mam_ingester INSERT by mam_owner grantable=f" \
	"colacl ingest_ledger.final_path_bytes mam_worker SELECT by mam_owner" \
	"colacl ingest_ledger.move_state mam_ingester UPDATE by mam_owner" \
	"colacl ingest_ledger.source_path_bytes mam_worker SELECT by mam_owner" \
	"colacl ingest_ledger.source_path mam_worker SELECT by mam_owner" \
	"colacl asset_storage_locations.is_accessible mam_ingester UPDATE by mam_owner" \
	"fnacl mam_point_original(uuid,boolean) mam_ingester EXECUTE by mam_owner" \
	"fnacl mam_create_assets_partitions(date,date) mam_ingester EXECUTE by mam_owner" \
	"policy assets mam_worker_all PERMISSIVE to={mam_worker} cmd=ALL using=true check=true" \
	"rel assets kind=p owner=mam_owner rls=t force=f" \
	"schema mam_owner CREATE by pg_database_owner" \
	"database mam_app CONNECT by postgres"; do
	grep -qxF "$want" "$T/snap_first" || fail "snapshot lacks: $want"
done
if grep -E '^fnacl mam_(create_assets_partitions|apply_role_grants|point_original).* PUBLIC ' "$T/snap_first"; then
	fail "PUBLIC may execute a privileged function"
fi
# The ledger's recorded paths are not the ingester's to change (sql/008).
if grep -E '^acl (ingest_ledger|asset_storage_locations) mam_ingester UPDATE ' "$T/snap_first"; then
	fail "mam_ingester may UPDATE every column of ingest_ledger or asset_storage_locations"
fi
psql -X -q -f "$ROLES_SQL" >"$T/roles_again.log" 2>&1 ||
	{ cat "$T/roles_again.log" >&2; fail "create_roles.sql re-run failed"; }
PGUSER=mam_owner psql -X -q -1 -v ON_ERROR_STOP=1 -f "$MAM_SRC/sql/004_row_security.sql" >"$T/004_again.log" 2>&1 ||
	{ cat "$T/004_again.log" >&2; fail "004 run again by hand failed"; }
snapshot mam >"$T/snap_again"
diff -u "$T/snap_first" "$T/snap_again" >&2 || fail "re-running create_roles.sql and 004 changed privileges"
log "$(wc -l <"$T/snap_first") facts identical in both orders and after re-runs"
phase_end

# Role attributes: none may do anything beyond its objects.
assert_eq "$(psql_q "SELECT string_agg(format('%s:%s%s%s%s%s:%s', rolname, rolsuper, rolcreaterole,
		rolcreatedb, rolreplication, rolbypassrls, rolcanlogin), ' ' ORDER BY rolname)
	FROM pg_roles WHERE rolname IN ('mam_owner', 'mam_ingester', 'mam_worker', 'mam_app')")" \
	"mam_app:fffff:f mam_ingester:fffff:t mam_owner:fffff:t mam_worker:fffff:t" \
	"role attributes (super, createrole, createdb, replication, bypassrls: login)"

# ---- 3. the daemons as mam_ingester and mam_worker, with pgpass -------------
phase_begin "passwords, pgpass, scan/run as mam_ingester"
psql_q "ALTER ROLE mam_ingester PASSWORD 'ingest-pw-1'; ALTER ROLE mam_worker PASSWORD 'worker-pw-2'" >/dev/null
hba=$T/pg/data/pg_hba.conf
{
	printf 'local all mam_ingester scram-sha-256\nlocal all mam_worker scram-sha-256\n'
	cat "$hba"
} >"$T/hba.new"
cat "$T/hba.new" >"$hba"
psql_q "SELECT pg_reload_conf()" >/dev/null
_password_required() { ! PGUSER=mam_ingester PGPASSFILE=/nonexistent psql -X -w -c 'SELECT 1'; }
wait_for 30 "the server to ask mam_ingester for a password" _password_required
printf '*:*:*:mam_ingester:ingest-pw-1\n*:*:*:mam_worker:worker-pw-2\n' >"$T/pgpass"
chmod 600 "$T/pgpass"
PGUSER=mam_ingester PGPASSFILE=/nonexistent run_cli out status -c "$CFG"
[ "$rc" != 0 ] || fail "status as mam_ingester without a password succeeded"
grep -q "database: not reachable: .*password" <<<"$out" || fail "status without a password: $out"
export PGPASSFILE=$T/pgpass

for c in red blue; do
	ffmpeg -nostdin -loglevel error -f lavfi -i "color=c=$c:s=64x48" -frames:v 1 "$T/src/a-$c.png"
done
ffmpeg -nostdin -loglevel error -f lavfi -i "color=c=green:s=64x48" -frames:v 1 "$T/src/b-green.png"
ffmpeg -nostdin -loglevel error -f lavfi -i "color=c=yellow:s=64x48" -frames:v 1 "$T/src/a-yellow.png"
cp "$T/src/a-red.png" "$T/src/a-blue.png" "$A/"
cp "$T/src/b-green.png" "$B/"
wait_settled "$T/drop" 1000
PGUSER=mam_ingester "$MAM_BIN" scan -c "$CFG" >>"$T/daemon.log" 2>&1 || fail "scan as mam_ingester failed"
assert_eq "$(asset_count ta)" 2 "tenant ta assets after scan"
assert_eq "$(asset_count tb)" 1 "tenant tb assets after scan"
moved=$(psql_q "SELECT l.path FROM asset_storage_locations l JOIN tenants t ON t.id = l.tenant_id
	WHERE t.code = 'tb' AND l.purpose = 'original'")
[[ "$moved" == "$T/lib/b/"*/b-green.png ]] && [ -f "$moved" ] && [ ! -e "$B/b-green.png" ] ||
	fail "tb's file was not moved (location: $moved)"
assert_eq "$(psql_q "SELECT count(*) FROM ingest_ledger WHERE move_state = 'done'")" 1 "confirmed moves"
assert_eq "$(psql_q "SELECT storage_quota_bytes FROM tenants WHERE code = 'ta'")" 100000000 "quota upserted"

PGUSER=mam_ingester daemon_run "$CFG"
wait_log 60 "$T/daemon.log" "database connected"
wait_sql 30 "SELECT count(*) > 0 FROM pg_stat_activity WHERE usename = 'mam_ingester'" t
cp "$T/src/a-yellow.png" "$A/"
wait_assets 60 ta 3
daemon_term "$DPID"
PGUSER=mam_ingester run_cli out status -c "$CFG"
assert_eq "$rc" 0 "status as mam_ingester: $out"
# The newest migration's number, whatever it is now.
latest=$(find "$MAM_SRC/sql" -maxdepth 1 -name '[0-9][0-9][0-9]_*.sql' -printf '%f\n' | sort | tail -1)
grep -q "schema version $((10#${latest%%_*}))" <<<"$out" || fail "status as mam_ingester (schema $latest): $out"
phase_end

phase_begin "worker as mam_worker"
PGUSER=mam_worker "$MAM_BIN" worker -c "$CFG" >"$T/worker.log" 2>&1 &
WPID=$!
_pids+=("$WPID")
wait_sql 30 "SELECT count(*) > 0 FROM pg_stat_activity WHERE usename = 'mam_worker'" t
wait_sql 120 "SELECT count(*) FILTER (WHERE status = 'completed') || '/' || count(*) FROM ingest_jobs" "7/7"
kill -TERM "$WPID"
wait "$WPID" || fail "worker exit status"
_forget_pid "$WPID"
assert_eq "$(psql_q "SELECT count(*) FROM asset_technical_metadata m JOIN assets a ON a.id = m.asset_id
	WHERE m.width = 64 AND m.height = 48")" 4 "technical metadata rows"
assert_eq "$(psql_q "SELECT count(*) FROM assets a JOIN asset_storage_locations l ON l.asset_id = a.id
	AND l.purpose = 'thumbnail' WHERE a.derivative_type = 'thumbnail'")" 3 "thumbnails of tenant ta"
assert_eq "$(psql_q "SELECT count(*) FROM assets WHERE parent_id IS NULL AND status <> 'available'")" 0 \
	"originals not available"
if grep -iE "permission denied|row-level security" "$T/daemon.log" "$T/worker.log"; then
	fail "a daemon hit a privilege error"
fi
phase_end

# ---- 4. mam_app: one tenant, fail closed -------------------------------------
phase_begin "mam_app confined to mam.tenant_id"
psql_q "CREATE ROLE app_alice LOGIN IN ROLE mam_app" >/dev/null
TA=$(psql_q "SELECT id FROM tenants WHERE code = 'ta'")
TB=$(psql_q "SELECT id FROM tenants WHERE code = 'tb'")
# Every table with a tenant_id column (partitions aside) has row security on.
norls=$(psql_q "SELECT coalesce(string_agg(c.relname, ' ' ORDER BY c.relname), 'none') FROM pg_class c
	JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
	WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
	  AND NOT c.relispartition AND NOT c.relrowsecurity")
assert_eq "$norls" none "tenant-scoped tables without row security"
for tc in tenants:id assets:tenant_id asset_storage_locations:tenant_id \
	asset_technical_metadata:tenant_id ingest_jobs:tenant_id ingest_ledger:tenant_id; do
	t=${tc%%:*} col=${tc#*:}
	for tid in "$TA" "$TB"; do
		n=$(psql_q "SELECT count(*) FROM $t WHERE $col = '$tid'")
		[ "$n" -gt 0 ] || fail "test setup: no $t row of tenant $tid"
		assert_eq "$(as_role app_alice "SET mam.tenant_id = '$tid';
			SELECT count(*) || ' ' || count(*) FILTER (WHERE $col IS DISTINCT FROM '$tid') FROM $t")" \
			"$n 0" "$t rows seen by mam_app for tenant $tid"
	done
	assert_eq "$(as_role app_alice "SELECT count(*) FROM $t")" 0 "$t rows with mam.tenant_id unset"
	assert_eq "$(as_role app_alice "SET mam.tenant_id = ''; SELECT count(*) FROM $t")" 0 \
		"$t rows with mam.tenant_id empty"
	assert_eq "$(as_role app_alice "SET mam.tenant_id = '$TA'; RESET mam.tenant_id; SELECT count(*) FROM $t")" 0 \
		"$t rows after RESET"
	assert_eq "$(as_role app_alice "BEGIN; SET LOCAL mam.tenant_id = '$TA'; COMMIT; SELECT count(*) FROM $t")" 0 \
		"$t rows after a SET LOCAL's transaction"
	refused app_alice "invalid input syntax for type uuid" "SET mam.tenant_id = 'ta'; SELECT count(*) FROM $t"
	refused app_alice "query would be affected by row-level security policy" \
		"SET row_security = off; SET mam.tenant_id = '$TA'; SELECT count(*) FROM $t"
done

# Writes: its own tenant yes (rolled back), another tenant never.
as_role app_alice "SET mam.tenant_id = '$TA'; BEGIN;
	INSERT INTO assets (tenant_id, title, asset_type) VALUES ('$TA', 'mine', 'document');
	UPDATE asset_storage_locations SET storage_tier = 'warm' WHERE tenant_id = '$TA';
	ROLLBACK" >/dev/null
rls_err="new row violates row-level security policy"
refused app_alice "$rls_err" "SET mam.tenant_id = '$TA';
	INSERT INTO assets (tenant_id, title, asset_type) VALUES ('$TB', 'planted', 'document')"
refused app_alice "$rls_err" \
	"INSERT INTO assets (tenant_id, title, asset_type) VALUES ('$TA', 'no tenant set', 'document')"
refused app_alice "$rls_err" "SET mam.tenant_id = '$TA'; UPDATE assets SET tenant_id = '$TB'"
refused app_alice "$rls_err" "SET mam.tenant_id = '$TA';
	INSERT INTO asset_storage_locations (asset_id, tenant_id, storage_type, path)
	VALUES (gen_random_uuid(), '$TB', 'local', '/planted')"
refused app_alice "$rls_err" "SET mam.tenant_id = '$TA'; UPDATE asset_storage_locations SET tenant_id = '$TB'"
refused app_alice "$rls_err" "SET mam.tenant_id = '$TA';
	INSERT INTO asset_technical_metadata (asset_id, tenant_id) VALUES (gen_random_uuid(), '$TB')"
refused app_alice "$rls_err" "SET mam.tenant_id = '$TA'; UPDATE asset_technical_metadata SET tenant_id = '$TB'"
# Another tenant's rows are not there to update.
upd=$(as_role app_alice "SET mam.tenant_id = '$TA';
	WITH u AS (UPDATE assets SET title = 'hijacked' WHERE tenant_id = '$TB' RETURNING id)
	SELECT count(*) FROM u")
assert_eq "$upd" 0 "tb assets updated by ta"
upd=$(as_role app_alice "SET mam.tenant_id = '$TA';
	WITH u AS (UPDATE asset_technical_metadata SET width = 1 WHERE tenant_id = '$TB' RETURNING asset_id)
	SELECT count(*) FROM u")
assert_eq "$upd" 0 "tb metadata updated by ta"
assert_eq "$(psql_q "SELECT count(*) FROM assets WHERE title = 'hijacked' OR title = 'planted'")" 0 "tampered assets"
assert_eq "$(psql_q "SELECT count(*) FROM asset_technical_metadata WHERE width = 1")" 0 "tampered metadata"
# Read-only tables and no deletes at all.
refused app_alice "permission denied for table assets" "SET mam.tenant_id = '$TA'; DELETE FROM assets"
refused app_alice "permission denied for table ingest_jobs" "SET mam.tenant_id = '$TA'; UPDATE ingest_jobs SET priority = 1"
refused app_alice "permission denied for table ingest_ledger" "SET mam.tenant_id = '$TA'; UPDATE ingest_ledger SET node = 'x'"
refused app_alice "permission denied for table tenants" "SET mam.tenant_id = '$TA'; UPDATE tenants SET name = 'x'"
phase_end

# ---- 5. no privilege on any partition ----------------------------------------
phase_begin "partitions"
PARTS_SQL="SELECT relid FROM pg_partition_tree('assets') WHERE relid <> 'assets'::regclass"
assert_eq "$(as_role mam_ingester "SELECT mam_create_assets_partitions('2099-01-01', '2099-02-15')")" 2 \
	"partitions created by mam_ingester"
assert_eq "$(psql_q "SELECT relowner::regrole FROM pg_class WHERE relname = 'assets_2099_01'")" mam_owner \
	"owner of a partition made at run time"
refused mam_worker "permission denied for function mam_create_assets_partitions" \
	"SELECT mam_create_assets_partitions('2098-01-01', '2098-01-01')"
refused app_alice "permission denied for function mam_create_assets_partitions" \
	"SELECT mam_create_assets_partitions('2098-01-01', '2098-01-01')"
# The other SECURITY DEFINER function (sql/008): the ingester only. For an
# asset no ledger row moves it does nothing.
assert_eq "$(as_role mam_ingester "SELECT mam_point_original(gen_random_uuid(), true)")" f \
	"mam_point_original by mam_ingester for an unknown asset"
refused mam_worker "permission denied for function mam_point_original" \
	"SELECT mam_point_original(gen_random_uuid(), true)"
refused app_alice "permission denied for function mam_point_original" \
	"SELECT mam_point_original(gen_random_uuid(), false)"
# It moves an asset's path only between where its file was dropped (as the
# asset row records it) and where its one ledger row says it went.
TB_ASSET=$(psql_q "SELECT a.id FROM assets a JOIN tenants t ON t.id = a.tenant_id WHERE t.code = 'tb'")
TB_FINAL=$(psql_q "SELECT final_path FROM ingest_ledger WHERE asset_id = '$TB_ASSET'")
TB_SRC=$(psql_q "SELECT source_path FROM ingest_ledger WHERE asset_id = '$TB_ASSET'")
assert_eq "$TB_SRC" "$B/b-green.png" "tb's recorded source"
TA_ASSET=$(psql_q "SELECT a.id FROM assets a JOIN tenants t ON t.id = a.tenant_id
	WHERE t.code = 'ta' ORDER BY a.created_at, a.id LIMIT 1")
TA_PATH=$(psql_q "SELECT primary_storage_path FROM assets WHERE id = '$TA_ASSET'")
LOC_OF="SELECT l.path || '|' || a.primary_storage_path FROM asset_storage_locations l
	JOIN assets a ON a.id = l.asset_id WHERE l.purpose = 'original' AND a.id ="
[ -n "$TB_ASSET" ] && [ -n "$TB_FINAL" ] && [ -n "$TA_PATH" ] || fail "no assets to point"
refused mam_ingester "permission denied for table ingest_ledger" \
	"UPDATE ingest_ledger SET source_path = '/etc/passwd' WHERE asset_id = '$TA_ASSET'"
# A ledger row forged by the ingester for another asset (a 'leave' one) changes nothing.
as_role mam_ingester "INSERT INTO ingest_ledger (key, tenant_id, folder, relpath, dev, ino, size,
	mtime_ns, asset_id, partition_date, outcome, after_ingest, source_path, final_path, move_state)
	SELECT 'forged', a.tenant_id, '/etc', 'passwd', 0, 0, 0, 0, a.id, a.partition_date, 'ingested',
	       'move', '/etc/passwd', '/etc/passwd', 'pending' FROM assets a WHERE a.id = '$TA_ASSET'" >/dev/null
assert_eq "$(as_role mam_ingester "SELECT mam_point_original('$TA_ASSET', true)")" f \
	"mam_point_original through a forged ledger row"
assert_eq "$(psql_q "$LOC_OF '$TA_ASSET'")" "$TA_PATH|$TA_PATH" "location of the asset a row was forged for"
psql_q "DELETE FROM ingest_ledger WHERE key = 'forged'" >/dev/null
# An asset the application made (no ledger row): the ingester forges a second
# assets row with its id in another partition, and one ledger row to match.
APP_ASSET=$(psql_q "WITH a AS (INSERT INTO assets (tenant_id, title, asset_type, primary_storage_path)
	VALUES ('$TA', 'app.mov', 'video', '/srv/ta/app.mov') RETURNING id)
	INSERT INTO asset_storage_locations (asset_id, tenant_id, storage_type, path, filename, purpose, is_primary)
	SELECT id, '$TA', 'local', '/srv/ta/app.mov', 'app.mov', 'original', true FROM a RETURNING asset_id")
as_role mam_ingester "INSERT INTO assets (id, tenant_id, title, asset_type, primary_storage_path, extra,
	partition_date) VALUES ('$APP_ASSET', '$TA', 'x', 'video', '/etc/passwd',
	'{\"drop_folder\": \"/etc\", \"relative_path\": \"passwd\"}', '2099-01-15');
	INSERT INTO ingest_ledger (key, tenant_id, folder, relpath, dev, ino, size, mtime_ns, asset_id,
	partition_date, outcome, after_ingest, source_path, final_path, move_state)
	VALUES ('forged2', '$TA', '/etc', 'passwd', 0, 0, 0, 0, '$APP_ASSET', '2099-01-15', 'ingested',
	'move', '/etc/passwd', '/etc/shadow', 'pending')" >/dev/null
assert_eq "$(as_role mam_ingester "SELECT mam_point_original('$APP_ASSET', true)")" f \
	"mam_point_original through a forged second assets row"
assert_eq "$(psql_q "SELECT string_agg(path, ',') FROM asset_storage_locations WHERE asset_id = '$APP_ASSET'")" \
	/srv/ta/app.mov "location of the asset an assets row was forged for"
psql_q "DELETE FROM ingest_ledger WHERE key = 'forged2';
	DELETE FROM assets WHERE id = '$APP_ASSET' AND partition_date = '2099-01-15'" >/dev/null
# ... and no path of a location is the ingester's to write (only what a confirmed delete marks).
refused mam_ingester "permission denied for table asset_storage_locations" \
	"UPDATE asset_storage_locations SET path = '/etc/passwd' WHERE asset_id = '$APP_ASSET'"
as_role mam_ingester "UPDATE asset_storage_locations SET status = status, updated_at = now()
	WHERE asset_id = '$APP_ASSET'" >/dev/null
# A source path that is not the asset's drop-folder path (written by the owner here).
psql_q "UPDATE ingest_ledger SET move_state = 'pending', source_path = '/etc/passwd'
	WHERE asset_id = '$TB_ASSET'" >/dev/null
assert_eq "$(as_role mam_ingester "SELECT mam_point_original('$TB_ASSET', true)")" f \
	"mam_point_original to a source that is not the drop-folder path"
assert_eq "$(psql_q "$LOC_OF '$TB_ASSET'")" "$TB_FINAL|$TB_FINAL" "location after the refused call"
# The real one: to the drop folder while pending, back on confirmation (as the ingester).
psql_q "UPDATE ingest_ledger SET source_path = '$TB_SRC' WHERE asset_id = '$TB_ASSET'" >/dev/null
assert_eq "$(as_role mam_ingester "SELECT mam_point_original('$TB_ASSET', true)")" t \
	"mam_point_original to the drop folder"
assert_eq "$(psql_q "$LOC_OF '$TB_ASSET'")" "$B/b-green.png|$B/b-green.png" "location while the move is pending"
assert_eq "$(as_role mam_ingester "SELECT mam_point_original('$TB_ASSET', false)")" f \
	"mam_point_original to the destination before the move is done"
assert_eq "$(as_role mam_ingester "SELECT mam_confirm_move('$TB_ASSET')")" move "confirmation as the ingester"
assert_eq "$(psql_q "$LOC_OF '$TB_ASSET'")" "$TB_FINAL|$TB_FINAL" "location after the confirmation"
assert_eq "$(psql_q "SELECT move_state FROM ingest_ledger WHERE asset_id = '$TB_ASSET'")" done \
	"ledger after the confirmation"
nparts=$(psql_q "SELECT count(*) FROM ($PARTS_SQL) p")
[ "$nparts" -ge 5 ] || fail "only $nparts partitions of assets"
# (Assigned first: a failed query must fail the test, not compare as "".)
held=$(psql_q "SELECT coalesce(string_agg(DISTINCT r || ' ' || p.relid::regclass || ' ' || priv, ', '), 'none')
	FROM ($PARTS_SQL) p,
	     unnest(string_to_array('$RUNTIME_ROLES', ' ')) r,
	     unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) priv
	WHERE has_table_privilege(r, p.relid, priv)
	   OR (priv IN ('SELECT', 'INSERT', 'UPDATE', 'REFERENCES')
	       AND has_any_column_privilege(r, p.relid, priv))")
assert_eq "$held" none "privileges of run-time roles on partitions of assets"
for part in $(psql_q "$PARTS_SQL"); do
	refused app_alice "permission denied for table $part" "SET mam.tenant_id = '$TA'; SELECT count(*) FROM $part"
done
log "$nparts partitions, no privilege for: $RUNTIME_ROLES"
phase_end

# ---- 6. what the daemons' roles cannot do ------------------------------------
phase_begin "limits of mam_ingester and mam_worker"
for r in mam_ingester mam_worker mam_owner; do
	refused "$r" "permission denied to create role" "CREATE ROLE mam_evil"
	refused "$r" "must be superuser" "CREATE ROLE mam_evil SUPERUSER"
done
for r in mam_ingester mam_worker; do
	refused "$r" "permission denied for schema public" "CREATE TABLE evil (i int)"
	refused "$r" "permission denied for schema public" "CREATE FUNCTION evil() RETURNS int LANGUAGE sql AS 'SELECT 1'"
	for t in assets ingest_jobs ingest_ledger tenants; do
		refused "$r" "must be owner of table $t" "DROP TABLE $t"
		refused "$r" "must be owner of table $t" "ALTER TABLE $t DISABLE ROW LEVEL SECURITY"
		refused "$r" "permission denied for table $t" "TRUNCATE $t"
	done
	refused "$r" "permission denied for function mam_apply_role_grants" "SELECT mam_apply_role_grants()"
	refused "$r" "must be owner of function mam_create_assets_partitions" \
		"ALTER FUNCTION mam_create_assets_partitions(date, date) SECURITY INVOKER"
done
refused mam_worker "permission denied for table ingest_ledger" "SELECT relpath FROM ingest_ledger"
refused mam_worker "permission denied for table ingest_jobs" \
	"INSERT INTO ingest_jobs (tenant_id, job_type) VALUES ('$TA', 'metadata')"
refused mam_worker "permission denied for table tenants" "UPDATE tenants SET name = 'x'"
refused mam_ingester "permission denied for table asset_technical_metadata" \
	"SELECT count(*) FROM asset_technical_metadata"
refused mam_ingester "permission denied for table assets" "DELETE FROM assets"
refused mam_ingester "permission denied for table ingest_jobs" "UPDATE ingest_jobs SET priority = 1"
# The daemons' roles see every tenant (they work across tenants).
assert_eq "$(as_role mam_worker "SELECT count(DISTINCT tenant_id) FROM ingest_jobs")" 2 "tenants the worker sees"
assert_eq "$(as_role mam_ingester "SELECT count(DISTINCT tenant_id) FROM assets")" 2 "tenants the ingester sees"
phase_end
log "ok"
