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
-- only (mam_apply_role_grants below).

-- Point the original location and primary_storage_path of an asset whose
-- ledger row says after_ingest = 'move' at the file's source (p_at_source,
-- only while the move is pending) or at its destination (only once the move is
-- done). Returns false when the ledger does not allow it (unknown asset, not a
-- move, wrong state): the daemon then has nothing to fix, and a late report of
-- an old failure cannot undo a confirmation that overtook it.
CREATE FUNCTION mam_point_original(p_asset_id uuid, p_at_source boolean) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
	l record;
	p text;
	b bytea;
BEGIN
	SELECT g.move_state, g.partition_date, g.source_path, g.source_path_bytes,
	       g.final_path, g.final_path_bytes
	  INTO l
	  FROM ingest_ledger g
	 WHERE g.asset_id = p_asset_id AND g.after_ingest = 'move' AND g.outcome = 'ingested'
	 ORDER BY g.id
	 LIMIT 1;
	-- (No CASE in an IF condition: PL/pgSQL would end the condition at its THEN.)
	IF NOT FOUND OR l.source_path IS NULL OR l.final_path IS NULL
	   OR l.move_state IS DISTINCT FROM (ARRAY['done', 'pending'])[p_at_source::int + 1] THEN
		RETURN false;
	END IF;
	IF p_at_source THEN
		p := l.source_path;
		b := l.source_path_bytes;
	ELSE
		p := l.final_path;
		b := l.final_path_bytes;
	END IF;
	UPDATE asset_storage_locations s
	   SET path = p, filename = left(split_part(p, '/', -1), 500),
	       url = mam_file_url(coalesce(b, convert_to(p, 'UTF8'))), updated_at = now()
	 WHERE s.asset_id = p_asset_id AND s.purpose = 'original' AND s.path IS DISTINCT FROM p;
	UPDATE assets a
	   SET primary_storage_path = p, updated_at = now()
	 WHERE a.id = p_asset_id AND a.partition_date = l.partition_date
	   AND a.primary_storage_path IS DISTINCT FROM p;
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
-- mam_point_original. The function of 004 is kept under another name (with its
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
