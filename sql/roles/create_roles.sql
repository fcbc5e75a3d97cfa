-- create_roles.sql: the database roles of mam-ingest (issue 9, docs/security.md).
--
-- Run it as a PostgreSQL superuser, connected to the catalogue's database:
--
--     psql -X -d mam -f /usr/share/mam-ingest/sql/roles/create_roles.sql
--
-- (from a checkout: sql/roles/create_roles.sql; add -v schema=NAME when the
-- catalogue lives in a schema other than public). It is not a migration:
-- `mam-ingest migrate` never runs it, because the role that runs migrations
-- must not be able to create roles.
--
-- Before or after `mam-ingest migrate`, and as often as you like: both
-- orders end with the same owners, privileges and policies.
--   - Roles first (a new installation): the script creates the roles and
--     lets mam_owner create objects in the schema; then run `mam-ingest
--     migrate` connected as mam_owner, and migration 004 grants.
--   - Migrations first (an existing catalogue, migrated as some other role):
--     the script makes mam_owner the owner of every object that role owns in
--     the schema (extension members excepted), then calls
--     mam_apply_role_grants(), which grants what 004 would have.
--
-- The roles (cluster-wide; the grants are per database, so run the script in
-- every database that holds a catalogue):
--   mam_owner     LOGIN. Owns the schema objects; `mam-ingest migrate` only.
--   mam_ingester  LOGIN. `mam-ingest run` and `scan` (and `status`).
--   mam_worker    LOGIN. `mam-ingest worker`.
--   mam_app       NOLOGIN. The catalogue application's group role: grant it
--                 to the application's login role (GRANT mam_app TO webapp);
--                 confined to the tenant in the session setting mam.tenant_id.
-- None is superuser, creates roles or databases, replicates or bypasses row
-- security; re-running the script puts those attributes back. LOGIN is only
-- set when a role is created, so it can be changed afterwards. No password is
-- set here: use `\password mam_ingester` (then a pgpass file on the host), or
-- peer or certificate authentication in pg_hba.conf.
--
-- Everything runs in one transaction: it applies fully or not at all.

\set ON_ERROR_STOP on
\if :{?schema}
\else
\set schema public
\endif
-- DO blocks cannot see psql variables: pass the schema as a session setting.
SELECT set_config('mam.roles_schema', :'schema', false) AS roles_schema \gset

BEGIN;

DO $$
BEGIN
	IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
		RAISE EXCEPTION 'create_roles.sql must be run by a superuser, not %', current_user;
	END IF;
	IF to_regnamespace(current_setting('mam.roles_schema')) IS NULL THEN
		RAISE EXCEPTION 'schema "%" does not exist', current_setting('mam.roles_schema');
	END IF;
END
$$;

-- The roles, and the attributes none of them may have.
DO $$
DECLARE
	r record;
BEGIN
	FOR r IN SELECT * FROM (VALUES ('mam_owner', true), ('mam_ingester', true),
				       ('mam_worker', true), ('mam_app', false)) AS v(name, login)
	LOOP
		IF to_regrole(r.name) IS NULL THEN
			EXECUTE format('CREATE ROLE %I %s', r.name,
				       CASE WHEN r.login THEN 'LOGIN' ELSE 'NOLOGIN' END);
			RAISE NOTICE 'created role %', r.name;
		END IF;
		EXECUTE format('ALTER ROLE %I NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT'
			       ' NOREPLICATION NOBYPASSRLS', r.name);
	END LOOP;
END
$$;

COMMENT ON ROLE mam_owner IS 'mam-ingest: owns the catalogue schema objects; runs migrations';
COMMENT ON ROLE mam_ingester IS 'mam-ingest: run and scan (all tenants)';
COMMENT ON ROLE mam_worker IS 'mam-ingest: worker (all tenants)';
COMMENT ON ROLE mam_app IS 'mam-ingest: catalogue readers, confined to mam.tenant_id';

-- This database and schema. mam_owner creates the objects (and a temporary
-- table when a partition is made for rows already in the default partition);
-- the others only use them. Nobody else creates objects in the schema (the
-- default since PostgreSQL 15; a database created by an older version or
-- from an old template may still let PUBLIC do it).
DO $$
DECLARE
	nsp text := current_setting('mam.roles_schema');
	db text := current_database();
BEGIN
	EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO mam_owner', db);
	EXECUTE format('GRANT CONNECT ON DATABASE %I TO mam_ingester, mam_worker, mam_app', db);
	EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM PUBLIC', nsp);
	EXECUTE format('GRANT USAGE, CREATE ON SCHEMA %I TO mam_owner', nsp);
	EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM mam_ingester, mam_worker, mam_app', nsp);
	EXECUTE format('GRANT USAGE ON SCHEMA %I TO mam_ingester, mam_worker, mam_app', nsp);
END
$$;

-- Migrations first: hand every object of the catalogue's current owner in
-- the schema to mam_owner, then grant as migration 004 does. Owned sequences
-- (bigserial) and indexes follow their table; a table's row type follows it.
DO $$
DECLARE
	nsp oid := to_regnamespace(current_setting('mam.roles_schema'));
	assets_oid regclass := to_regclass(format('%I.assets', current_setting('mam.roles_schema')));
	old oid;
	o record;
BEGIN
	IF assets_oid IS NULL THEN
		RAISE NOTICE 'no catalogue in schema % yet: run mam-ingest migrate as mam_owner',
			current_setting('mam.roles_schema');
		RETURN;
	END IF;
	SELECT c.relowner INTO old FROM pg_class c WHERE c.oid = assets_oid;
	IF old <> 'mam_owner'::regrole THEN
		RAISE NOTICE 'objects of % in schema % now belong to mam_owner', old::regrole,
			current_setting('mam.roles_schema');
		FOR o IN
			SELECT CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
					      WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'S' THEN 'SEQUENCE'
					      ELSE 'TABLE' END AS kind,
			       c.oid::regclass::text AS name, 1 AS pass
			  FROM pg_class c
			 WHERE c.relnamespace = nsp AND c.relowner = old
			   AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
			   AND NOT EXISTS (SELECT 1 FROM pg_depend d
					    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
					      AND (d.deptype = 'e' OR (c.relkind = 'S' AND d.deptype IN ('a', 'i'))))
			UNION ALL
			SELECT CASE p.prokind WHEN 'a' THEN 'AGGREGATE' ELSE 'ROUTINE' END,
			       p.oid::regprocedure::text, 2
			  FROM pg_proc p
			 WHERE p.pronamespace = nsp AND p.proowner = old
			   AND NOT EXISTS (SELECT 1 FROM pg_depend d
					    WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
					      AND d.deptype = 'e')
			UNION ALL
			SELECT CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END,
			       t.oid::regtype::text, 3
			  FROM pg_type t
			  LEFT JOIN pg_class c ON c.oid = t.typrelid
			 WHERE t.typnamespace = nsp AND t.typowner = old
			   AND (t.typtype IN ('d', 'e', 'r') OR (t.typtype = 'c' AND c.relkind = 'c'))
			   AND NOT EXISTS (SELECT 1 FROM pg_depend d
					    WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid
					      AND d.deptype = 'e')
			 ORDER BY 3, 2
		LOOP
			EXECUTE format('ALTER %s %s OWNER TO mam_owner', o.kind, o.name);
		END LOOP;
	END IF;
	IF to_regprocedure(format('%I.mam_apply_role_grants()',
				  current_setting('mam.roles_schema'))) IS NOT NULL THEN
		EXECUTE format('SELECT %I.mam_apply_role_grants()', current_setting('mam.roles_schema'));
	ELSE
		RAISE NOTICE 'migration 004 is not applied yet: it grants when mam-ingest migrate runs';
	END IF;
END
$$;

COMMIT;
