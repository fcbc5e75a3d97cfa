-- 008: while a file's after_ingest move keeps failing, its catalogue entry
-- names where the file is.
--
-- A batch records an asset whose folder moves files with its storage location
-- (and assets.primary_storage_path) already at the destination, so a crash
-- between the commit and the move loses nothing (the ledger keeps the move
-- pending and a restart finishes it). When the move itself fails (the library
-- full or unmounted), the daemon leaves the file in the drop folder and
-- retries, from 10 s up to every 10 minutes; until now the location named the
-- destination all that time, where no file was, and a worker could not find
-- its input. Now the daemon reports the failure and the original location and
-- primary_storage_path point back at the file in the drop folder; confirming
-- the move (mam_confirm_move) points them at the destination again.
--
-- Both paths come from the ledger row, never from the caller. The ingester has
-- no UPDATE on assets (and should not: it would let it rewrite any asset), so
-- mam_point_original runs as the table owner, like
-- mam_create_assets_partitions: a fixed search_path, EXECUTE for mam_ingester
-- only (mam_apply_role_grants below). Since the ingester writes the ledger, a
-- ledger row alone is not trusted with another asset's path:
--   - the asset has exactly one row in assets (the ingester may INSERT there:
--     a second row with the same id in another partition makes the function
--     refuse) and exactly one ledger row (the one recorded with it: a second
--     row naming it makes the function refuse), of the asset's tenant; the
--     ingester may UPDATE only move_state and updated_at of ledger rows, and
--     only what mam_confirm_move marks of a location (below), so that row's
--     paths are as recorded and a location's path is only changed here;
--   - the source is the asset's own drop-folder path, as the asset row (which
--     the ingester cannot change) records it in extra (drop_folder,
--     relative_path);
--   - the destination is set only on an asset now pointed at that source.
-- So the function can only move an asset's path between where its file was
-- dropped and where it was recorded to go.
--
-- 008 is applied once by `mam-ingest migrate`, in one transaction; it is not
-- meant to be run again by hand (CREATE FUNCTION, RENAME).

-- Point the original location and primary_storage_path of an asset whose
-- ledger row says after_ingest = 'move' at the file's source (p_at_source,
-- only while the move is pending) or at its destination (only once the move is
-- done). Returns false when the ledger does not allow it (unknown asset, not a
-- move, wrong state): the daemon then has nothing to fix, and a late report of
-- an old failure cannot undo a confirmation that overtook it. The ledger row is
-- locked first, so a confirmation and a failure report of the same asset from
-- two sessions take turns, and the second sees the first's result.
CREATE FUNCTION mam_point_original(p_asset_id uuid, p_at_source boolean) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
	l record;
	a record;
	n bigint;
	src text;
	p text;
	b bytea;
BEGIN
	PERFORM 1 FROM ingest_ledger g WHERE g.asset_id = p_asset_id FOR UPDATE;
	GET DIAGNOSTICS n = ROW_COUNT;
	IF n <> 1 THEN
		RETURN false;
	END IF;
	SELECT g.move_state, g.partition_date, g.tenant_id, g.after_ingest, g.outcome,
	       g.source_path, g.source_path_bytes, g.final_path, g.final_path_bytes
	  INTO l
	  FROM ingest_ledger g
	 WHERE g.asset_id = p_asset_id;
	-- (No CASE in an IF condition: PL/pgSQL would end the condition at its THEN.)
	IF l.after_ingest IS DISTINCT FROM 'move' OR l.outcome IS DISTINCT FROM 'ingested'
	   OR l.source_path IS NULL OR l.final_path IS NULL
	   OR l.move_state IS DISTINCT FROM (ARRAY['done', 'pending'])[p_at_source::int + 1] THEN
		RETURN false;
	END IF;
	-- (As watch_join builds the path; a display form of a name that is not
	-- UTF-8 may differ between the two in rare cases: then this refuses, and
	-- the location keeps naming the destination, as before 008.)
	SELECT count(*) INTO n FROM assets x WHERE x.id = p_asset_id;
	IF n <> 1 THEN
		RETURN false;
	END IF;
	SELECT x.tenant_id, x.primary_storage_path, x.partition_date,
	       (x.extra->>'drop_folder') || '/' || (x.extra->>'relative_path') AS dropped
	  INTO a
	  FROM assets x
	 WHERE x.id = p_asset_id;
	IF a.partition_date IS DISTINCT FROM l.partition_date
	   OR a.tenant_id IS DISTINCT FROM l.tenant_id OR a.dropped IS DISTINCT FROM l.source_path THEN
		RETURN false;
	END IF;
	src := l.source_path;
	IF p_at_source THEN
		p := src;
		b := l.source_path_bytes;
	ELSIF a.primary_storage_path IS DISTINCT FROM src THEN
		RETURN false;
	ELSE
		p := l.final_path;
		b := l.final_path_bytes;
	END IF;
	UPDATE asset_storage_locations s
	   SET path = p, filename = left(split_part(p, '/', -1), 500),
	       url = mam_file_url(coalesce(b, convert_to(p, 'UTF8'))), updated_at = now()
	 WHERE s.asset_id = p_asset_id AND s.tenant_id = a.tenant_id AND s.purpose = 'original'
	   AND s.path IS DISTINCT FROM p;
	UPDATE assets x
	   SET primary_storage_path = p, updated_at = now()
	 WHERE x.id = p_asset_id AND x.partition_date = l.partition_date
	   AND x.primary_storage_path IS DISTINCT FROM p;
	RETURN true;
END
$$;

REVOKE EXECUTE ON FUNCTION mam_point_original(uuid, boolean) FROM PUBLIC;

-- As in 002, and a confirmed move whose location was pointed back at the
-- drop folder (above) points at the destination again. Most confirmations
-- never failed: the location already names the destination and only the
-- cheap check below runs.
CREATE OR REPLACE FUNCTION mam_confirm_move(p_asset_id uuid) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	a text;
	fp text;
BEGIN
	UPDATE ingest_ledger l SET move_state = 'done', updated_at = now()
	 WHERE l.asset_id = p_asset_id AND l.move_state = 'pending'
	RETURNING l.after_ingest, l.final_path INTO a, fp;
	IF a = 'delete' THEN
		UPDATE asset_storage_locations s
		   SET is_accessible = false, status = 'deleted', updated_at = now()
		 WHERE s.asset_id = p_asset_id AND s.purpose = 'original';
	ELSIF a = 'move' AND EXISTS (SELECT 1 FROM asset_storage_locations s
				      WHERE s.asset_id = p_asset_id AND s.purpose = 'original'
					AND s.path IS DISTINCT FROM fp) THEN
		PERFORM mam_point_original(p_asset_id, false);
	END IF;
	RETURN a;
END
$$;

-- mam_apply_role_grants() of 004, and mam_ingester alone may execute
-- mam_point_original, and may update only move_state and updated_at of
-- ingest_ledger rows and is_accessible, status and updated_at of
-- asset_storage_locations rows; mam_worker may also read source_path,
-- source_path_bytes and move_state of the ledger. The function of 004 is kept under another name (with its
-- privileges and search_path) and called first, rather than restated here.
ALTER FUNCTION mam_apply_role_grants() RENAME TO mam_apply_role_grants_004;

CREATE FUNCTION mam_apply_role_grants() RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
	done text[] := mam_apply_role_grants_004();
	r text;
BEGIN
	FOREACH r IN ARRAY done LOOP
		EXECUTE format('REVOKE EXECUTE ON FUNCTION mam_point_original(uuid, boolean)'
			       ' FROM %I', r);
	END LOOP;
	IF to_regrole('mam_ingester') IS NOT NULL THEN
		GRANT EXECUTE ON FUNCTION mam_point_original(uuid, boolean) TO mam_ingester;
		-- A confirmed move is all the ingester changes in a ledger row
		-- (mam_confirm_move): its recorded paths stay as recorded.
		REVOKE UPDATE ON ingest_ledger FROM mam_ingester;
		GRANT UPDATE (move_state, updated_at) ON ingest_ledger TO mam_ingester;
		-- A location's path is changed only by mam_point_original; the
		-- ingester marks a deleted original (mam_confirm_move).
		REVOKE UPDATE ON asset_storage_locations FROM mam_ingester;
		GRANT UPDATE (is_accessible, status, updated_at) ON asset_storage_locations
			TO mam_ingester;
	END IF;
	IF to_regrole('mam_worker') IS NOT NULL THEN
		-- The claim also reads where the file is while its move is pending
		-- (src/jobsql.c).
		GRANT SELECT (source_path, source_path_bytes, move_state) ON ingest_ledger
			TO mam_worker;
	END IF;
	RETURN done;
END
$$;

REVOKE ALL ON FUNCTION mam_apply_role_grants() FROM PUBLIC;

-- Both run as their owner or caller with the schema of assets first, as in 004.
DO $$
DECLARE
	nsp text := (SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		      WHERE c.oid = 'assets'::regclass);
BEGIN
	EXECUTE format('ALTER FUNCTION mam_point_original(uuid, boolean) SECURITY DEFINER'
		       ' SET search_path = %I, pg_temp', nsp);
	EXECUTE format('ALTER FUNCTION mam_apply_role_grants() SET search_path = %I, pg_temp', nsp);
END
$$;

COMMENT ON FUNCTION mam_apply_role_grants() IS
	'Grant the mam_ingester, mam_worker and mam_app roles that exist exactly what they use; idempotent.';

SELECT mam_apply_role_grants();
