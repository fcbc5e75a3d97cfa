-- 004_row_security: row-level security on the tenant-scoped tables and the
-- privileges of the run-time roles (issue 9, docs/security.md).
--
-- The roles themselves (mam_owner, mam_ingester, mam_worker, mam_app) are made
-- by sql/roles/create_roles.sql, run by an administrator as a superuser: a
-- migration runs as the schema owner, which must not be allowed to create
-- roles. So this file works whether they exist or not: the tenant policies
-- below apply to every role but the table owner, and mam_apply_role_grants()
-- grants to, and adds the cross-tenant policies of, only the roles that
-- exist. create_roles.sql calls the same function, so whichever runs last
-- (roles first or migrations first) leaves the same privileges, and every
-- later migration that creates an object ends with
-- SELECT mam_apply_role_grants().
--
-- Why not ALTER DEFAULT PRIVILEGES: the owner creates a partition of assets
-- every month, and a default privilege would grant on each of them. A role
-- granted privileges on a partition reads it directly, bypassing the parent's
-- policies (measured: shared/FACTS.md). Grants therefore go to the parents
-- only, listed by name below, and the function first revokes everything the
-- roles hold on any table of the owner, partitions included.
--
-- ENABLE, not FORCE, ROW LEVEL SECURITY: the owner (who runs `mam-ingest
-- migrate`, and as whom mam_create_assets_partitions runs) is not subject to
-- the policies, which the migrations and the partition move rely on. Nothing
-- connects as the owner at run time.
--
-- `mam-ingest migrate` applies this file once, in one transaction. It can
-- also be run again by hand (psql -f) without error and with the same result:
-- CREATE OR REPLACE, DROP POLICY IF EXISTS, and ENABLE is idempotent. After
-- 008, which keeps this file's mam_apply_role_grants() as
-- mam_apply_role_grants_004() behind a function of its own, the two swap
-- names while this file replaces the function and swap back at its end, so a
-- re-run keeps 008's grants too. Run it in one transaction (psql -1 -f), so
-- that an interrupted re-run cannot leave the names swapped.

-- The tenant of the session: SET mam.tenant_id = '<uuid>' (or SET LOCAL in a
-- transaction). Unset, or set to '' (what RESET leaves behind), it is NULL and
-- the policies match no row: fail closed. A value that is not a uuid is an
-- error, which fails closed too.
CREATE OR REPLACE FUNCTION mam_session_tenant() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE AS $$
	SELECT nullif(current_setting('mam.tenant_id', true), '')::uuid
$$;

COMMENT ON FUNCTION mam_session_tenant() IS
	'The uuid in the session setting mam.tenant_id; NULL (no row visible) when unset or empty.';

ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE assets ENABLE ROW LEVEL SECURITY;
ALTER TABLE asset_storage_locations ENABLE ROW LEVEL SECURITY;
ALTER TABLE asset_technical_metadata ENABLE ROW LEVEL SECURITY;
ALTER TABLE ingest_jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE ingest_ledger ENABLE ROW LEVEL SECURITY;

-- TO PUBLIC rather than TO mam_app: any role someone later grants access to
-- is confined to its tenant too, unless it is given a policy of its own.
-- WITH CHECK refuses an INSERT or UPDATE that would write another tenant's
-- row (an UPDATE of a row the USING clause hides finds no row at all).
DROP POLICY IF EXISTS mam_tenant_isolation ON tenants;
CREATE POLICY mam_tenant_isolation ON tenants FOR ALL TO PUBLIC
	USING (id = mam_session_tenant()) WITH CHECK (id = mam_session_tenant());
DROP POLICY IF EXISTS mam_tenant_isolation ON assets;
CREATE POLICY mam_tenant_isolation ON assets FOR ALL TO PUBLIC
	USING (tenant_id = mam_session_tenant()) WITH CHECK (tenant_id = mam_session_tenant());
DROP POLICY IF EXISTS mam_tenant_isolation ON asset_storage_locations;
CREATE POLICY mam_tenant_isolation ON asset_storage_locations FOR ALL TO PUBLIC
	USING (tenant_id = mam_session_tenant()) WITH CHECK (tenant_id = mam_session_tenant());
DROP POLICY IF EXISTS mam_tenant_isolation ON asset_technical_metadata;
CREATE POLICY mam_tenant_isolation ON asset_technical_metadata FOR ALL TO PUBLIC
	USING (tenant_id = mam_session_tenant()) WITH CHECK (tenant_id = mam_session_tenant());
DROP POLICY IF EXISTS mam_tenant_isolation ON ingest_jobs;
CREATE POLICY mam_tenant_isolation ON ingest_jobs FOR ALL TO PUBLIC
	USING (tenant_id = mam_session_tenant()) WITH CHECK (tenant_id = mam_session_tenant());
DROP POLICY IF EXISTS mam_tenant_isolation ON ingest_ledger;
CREATE POLICY mam_tenant_isolation ON ingest_ledger FOR ALL TO PUBLIC
	USING (tenant_id = mam_session_tenant()) WITH CHECK (tenant_id = mam_session_tenant());

-- The ingester calls this at start and daily; creating a partition needs
-- CREATE on the schema and ownership of assets, which the ingester must not
-- have. It runs as its owner instead, with a fixed search_path (the schema of
-- assets, then pg_temp last so no temporary object can stand in for a table;
-- pg_catalog is always searched first). Only roles granted EXECUTE may call
-- it. The partitions it creates belong to the owner and carry no grant.
DO $$
BEGIN
	EXECUTE format('ALTER FUNCTION mam_create_assets_partitions(date, date) SECURITY DEFINER'
		       ' SET search_path = %I, pg_temp',
		       (SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			 WHERE c.oid = 'assets'::regclass));
END
$$;
REVOKE EXECUTE ON FUNCTION mam_create_assets_partitions(date, date) FROM PUBLIC;

-- mam_apply_role_grants(): give each existing run-time role exactly the
-- privileges it uses, and nothing on any partition. Idempotent. Returns the
-- roles it granted to. The matrix (docs/security.md):
--
--   mam_ingester  `mam-ingest run` and `scan`: records batches through
--                 mam_ingest_batch (SECURITY INVOKER, so it needs the table
--                 privileges), looks up and confirms moves, upserts the
--                 configured tenants, creates partitions; `status` reads.
--   mam_worker    `mam-ingest worker`: claims and updates jobs, writes
--                 technical metadata and derivative assets and locations;
--                 reads two ledger columns to find a moved file's bytes.
--   mam_app       the catalogue UI/API: reads its tenant's rows, edits its
--                 assets, locations and technical metadata (soft deletes
--                 through deleted_at: no DELETE); jobs, ledger and tenants are
--                 read-only. Confined to one tenant by the policies above.
--
-- The ingester and the worker work across tenants: they get a permissive
-- policy of their own (USING true) rather than BYPASSRLS, so a policy added
-- later, or FORCE, still applies to them and no role at run time can switch
-- row security off.
--
-- The functions of 002 and 003 are SECURITY INVOKER and keep PUBLIC's
-- EXECUTE: calling one gives nothing beyond the caller's table privileges
-- and policies. Schema USAGE and database CONNECT are granted by
-- create_roles.sql, which (unlike the owner) may grant them.
-- Run again after 008: replace the function 008 kept (see above).
DO $$
BEGIN
	IF to_regprocedure('mam_apply_role_grants_004()') IS NOT NULL THEN
		ALTER FUNCTION mam_apply_role_grants() RENAME TO mam_apply_role_grants_008;
		ALTER FUNCTION mam_apply_role_grants_004() RENAME TO mam_apply_role_grants;
	END IF;
END
$$;

CREATE OR REPLACE FUNCTION mam_apply_role_grants() RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
	owner_oid oid;
	nsp_oid oid;
	rel regclass;
	r text;
	t text;
	seq text;
	done text[] := '{}';
	ingester_tables text[] := ARRAY['tenants', 'assets', 'asset_storage_locations',
					'ingest_jobs', 'ingest_ledger'];
	worker_tables text[] := ARRAY['tenants', 'assets', 'asset_storage_locations',
				      'asset_technical_metadata', 'ingest_jobs', 'ingest_ledger'];
BEGIN
	SELECT c.relowner, c.relnamespace INTO owner_oid, nsp_oid
	  FROM pg_class c WHERE c.oid = 'assets'::regclass;
	FOREACH r IN ARRAY ARRAY['mam_ingester', 'mam_worker', 'mam_app'] LOOP
		CONTINUE WHEN to_regrole(r) IS NULL;
		-- Start from nothing on every table, view and sequence of the
		-- owner in this schema, partitions included: a stray grant on a
		-- partition would bypass the policies. REVOKE on a table also
		-- revokes its column privileges.
		FOR rel IN SELECT c.oid::regclass FROM pg_class c
			    WHERE c.relowner = owner_oid AND c.relnamespace = nsp_oid
			      AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
			    ORDER BY c.oid LOOP
			EXECUTE format('REVOKE ALL ON %s FROM %I', rel, r);
		END LOOP;
		EXECUTE format('REVOKE EXECUTE ON FUNCTION mam_create_assets_partitions(date, date)'
			       ' FROM %I', r);
		IF to_regclass('schema_migrations') IS NOT NULL AND r <> 'mam_app' THEN
			-- `mam-ingest status` prints the schema version.
			EXECUTE format('GRANT SELECT ON schema_migrations TO %I', r);
		END IF;
		done := done || r;
	END LOOP;

	IF to_regrole('mam_ingester') IS NOT NULL THEN
		-- FOR UPDATE on tenants (the quota lock) needs UPDATE as well.
		GRANT SELECT, INSERT, UPDATE ON tenants TO mam_ingester;
		GRANT SELECT, INSERT ON assets TO mam_ingester;
		-- UPDATE: mam_confirm_move marks a deleted original inaccessible.
		GRANT SELECT, INSERT, UPDATE ON asset_storage_locations TO mam_ingester;
		GRANT SELECT, INSERT ON ingest_jobs TO mam_ingester;
		GRANT SELECT, INSERT, UPDATE ON ingest_ledger TO mam_ingester;
		seq := pg_get_serial_sequence('ingest_ledger', 'id');
		EXECUTE format('GRANT USAGE ON SEQUENCE %s TO mam_ingester', seq);
		GRANT EXECUTE ON FUNCTION mam_create_assets_partitions(date, date) TO mam_ingester;
		FOREACH t IN ARRAY ingester_tables LOOP
			EXECUTE format('DROP POLICY IF EXISTS mam_ingester_all ON %I', t);
			EXECUTE format('CREATE POLICY mam_ingester_all ON %I FOR ALL TO mam_ingester'
				       ' USING (true) WITH CHECK (true)', t);
		END LOOP;
	END IF;

	IF to_regrole('mam_worker') IS NOT NULL THEN
		-- The claim returns the tenant's code.
		GRANT SELECT ON tenants TO mam_worker;
		-- UPDATE: the asset's status and duration, and the row lock
		-- (FOR UPDATE) taken before a job's; INSERT: derivative assets.
		GRANT SELECT, INSERT, UPDATE ON assets TO mam_worker;
		-- DELETE: a re-run replaces a derivative's location.
		GRANT SELECT, INSERT, DELETE ON asset_storage_locations TO mam_worker;
		-- UPDATE: a re-run's INSERT ... ON CONFLICT DO UPDATE.
		GRANT SELECT, INSERT, UPDATE ON asset_technical_metadata TO mam_worker;
		GRANT SELECT, UPDATE ON ingest_jobs TO mam_worker;
		-- The claim reads the exact bytes of a name that is not UTF-8.
		GRANT SELECT (asset_id, final_path_bytes) ON ingest_ledger TO mam_worker;
		FOREACH t IN ARRAY worker_tables LOOP
			EXECUTE format('DROP POLICY IF EXISTS mam_worker_all ON %I', t);
			EXECUTE format('CREATE POLICY mam_worker_all ON %I FOR ALL TO mam_worker'
				       ' USING (true) WITH CHECK (true)', t);
		END LOOP;
	END IF;

	IF to_regrole('mam_app') IS NOT NULL THEN
		GRANT SELECT ON tenants TO mam_app;
		GRANT SELECT, INSERT, UPDATE ON assets TO mam_app;
		GRANT SELECT, INSERT, UPDATE ON asset_storage_locations TO mam_app;
		GRANT SELECT, INSERT, UPDATE ON asset_technical_metadata TO mam_app;
		GRANT SELECT ON ingest_jobs TO mam_app;
		GRANT SELECT ON ingest_ledger TO mam_app;
	END IF;
	RETURN done;
END
$$;

REVOKE ALL ON FUNCTION mam_apply_role_grants() FROM PUBLIC;

-- Resolve table names in the schema this migration runs in, whoever calls it.
DO $$
BEGIN
	EXECUTE format('ALTER FUNCTION mam_apply_role_grants() SET search_path = %I, pg_temp',
		       (SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			 WHERE c.oid = 'assets'::regclass));
END
$$;

COMMENT ON FUNCTION mam_apply_role_grants() IS
	'Grant the mam_ingester, mam_worker and mam_app roles that exist exactly what they use; idempotent.';

-- Run again after 008: the names back as 008 left them.
DO $$
BEGIN
	IF to_regprocedure('mam_apply_role_grants_008()') IS NOT NULL THEN
		ALTER FUNCTION mam_apply_role_grants() RENAME TO mam_apply_role_grants_004;
		ALTER FUNCTION mam_apply_role_grants_008() RENAME TO mam_apply_role_grants;
	END IF;
END
$$;

SELECT mam_apply_role_grants();
