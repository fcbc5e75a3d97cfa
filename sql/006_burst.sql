-- 006_burst: the batch functions of 002, cheaper per file and per batch
-- (issue 8, the burst figure; docs/benchmarks.md).
--
-- Same signatures, same outcomes, same idempotency (the ledger's unique key,
-- computed by mam_ingest_key() as 005 defines it), same locks; what changed
-- is only how the work is done:
--
-- * mam_ingest_set looked every key up in the ledger before inserting it.
--   That join of the batch to ingest_ledger was planned as a hash join over a
--   sequential scan (the planner takes jsonb_array_elements for 100 rows, and
--   below some 10^4 ledger rows a scan looks cheaper than 100 index probes):
--   3 ms per batch at 10,000 rows, growing with the catalogue, so a fresh
--   catalogue filling up paid O(n^2). Now the ledger INSERT ... ON CONFLICT
--   DO NOTHING decides what is new (the one probe of the key index a new
--   file needs anyway), and only the keys it did not insert are read back,
--   with key = ANY(array): an index scan whatever the estimates.
-- * The duplicate check is one index scan per assets partition for the whole
--   batch (checksum = ANY(array)), not a sub-plan rescanned per file.
-- * Each element is parsed once (jsonb_to_record) instead of 40 ->> lookups.
-- * The storage location's url takes mam_file_url()'s fast path inline (a
--   plain ASCII path is its own url); the SQL function, 9 us a call, only
--   runs for names that need percent-encoding. Same text either way.
-- * Names are cut with split_part(p, '/', -1) rather than
--   regexp_replace(p, '^.*/', ''): the same result (everything after the
--   last '/', the whole string when there is none), without a regex.
-- * mam_ingest_batch checks the quota only when a tenant of the batch has one,
--   and tests the checksums' form without a bounded regex repeat.
--
-- CREATE OR REPLACE keeps each function's owner and EXECUTE privileges
-- (PUBLIC, see 004: SECURITY INVOKER, so a caller gets nothing beyond its own
-- table privileges and row-level policies), but replaces its SET options: the
-- jit and plan_cache_mode settings of 002 are therefore repeated here.

CREATE OR REPLACE FUNCTION mam_ingest_set(files jsonb) RETURNS SETOF mam_ingest_row
LANGUAGE plpgsql
SET jit = off
SET plan_cache_mode = force_custom_plan
AS $$
BEGIN
	-- See 002 for the contract: the caller checked that the set can be
	-- recorded together; a key committed concurrently since this
	-- statement's snapshot raises 40001 and the caller goes file by file.
	RETURN QUERY WITH src AS MATERIALIZED (
		SELECT (x.o - 1)::int AS i, r.*, t.id AS tid,
		       mam_ingest_key(r.tenant, r.folder, r.relpath, r.relpath_hex, r.dev, r.ino,
				      r.size, r.mtime_ns) AS k,
		       coalesce(r.on_duplicate, 'ingest') AS policy,
		       coalesce(r.after, 'leave') AS aft,
		       coalesce(r.final_path, r.abspath) AS fpath,
		       CASE WHEN r.final_path IS NOT NULL THEN decode(r.final_path_hex, 'hex')
			    ELSE decode(r.abspath_hex, 'hex') END AS fbytes,
		       split_part(r.relpath, '/', -1) AS name,
		       coalesce(jsonb_array_length(r.jobs), 0) AS nj
		  FROM jsonb_array_elements(files) WITH ORDINALITY AS x(e, o)
		 CROSS JOIN LATERAL jsonb_to_record(x.e) AS r(
			tenant text, folder text, relpath text, relpath_hex text, abspath text,
			abspath_hex text, final_path text, final_path_hex text, asset_id uuid,
			dev bigint, ino bigint, size bigint, mtime_ns bigint, ctime_ns bigint,
			sha256 text, mime text, asset_type text, jobs jsonb, priority int,
			after text, on_duplicate text, storage_type text, storage_tier text,
			node text)
		  JOIN tenants t ON t.code = r.tenant
	), dups AS MATERIALIZED (
		-- The duplicate check, set-based: one index scan per assets
		-- partition for the whole batch instead of one per file.
		SELECT DISTINCT ON (s.i) s.i, a.id
		  FROM src s
		  JOIN assets a ON a.checksum_sha256 = s.sha256 AND a.tenant_id = s.tid
		 WHERE a.checksum_sha256 = ANY (ARRAY(SELECT s2.sha256 FROM src s2))
		   AND a.deleted_at IS NULL AND a.parent_id IS NULL
	), todo AS MATERIALIZED (
		SELECT s.*, dp.id AS dup FROM src s LEFT JOIN dups dp ON dp.i = s.i
	), led AS (
		-- The unique key decides what is new: ON CONFLICT is the one probe
		-- of the key index a new file needs (no lookup before it).
		INSERT INTO ingest_ledger AS l (key, tenant_id, folder, relpath, relpath_bytes,
			dev, ino, size, mtime_ns, ctime_ns, asset_id, partition_date, sha256,
			outcome, duplicate_of, after_ingest, source_path, source_path_bytes,
			final_path, final_path_bytes, move_state, node)
		SELECT d.k, d.tid, d.folder, d.relpath, decode(d.relpath_hex, 'hex'),
		       d.dev, d.ino, d.size, d.mtime_ns, d.ctime_ns,
		       CASE WHEN d.dup IS NULL OR d.policy = 'ingest' THEN d.asset_id END,
		       CASE WHEN d.dup IS NULL OR d.policy = 'ingest' THEN current_date END,
		       d.sha256,
		       CASE WHEN d.dup IS NULL OR d.policy = 'ingest' THEN 'ingested'
			    WHEN d.policy = 'skip' THEN 'duplicate_skipped'
			    ELSE 'duplicate_quarantined' END,
		       d.dup, d.aft, d.abspath, decode(d.abspath_hex, 'hex'),
		       CASE WHEN d.dup IS NULL OR d.policy = 'ingest' THEN d.fpath END,
		       CASE WHEN d.dup IS NULL OR d.policy = 'ingest' THEN d.fbytes END,
		       CASE WHEN (d.dup IS NULL OR d.policy = 'ingest')
				 AND d.aft IN ('move', 'delete') THEN 'pending' ELSE 'none' END,
		       d.node
		  FROM todo d
		ON CONFLICT ON CONSTRAINT ingest_ledger_key_key DO NOTHING
		RETURNING l.key
	), fresh AS MATERIALIZED (
		SELECT d.* FROM todo d JOIN led ON led.key = d.k
	), known AS MATERIALIZED (
		-- Keys the ledger already held: as recorded the first time. Read
		-- with this statement's snapshot, so a key committed by another
		-- session since then is in neither led nor known (see chk).
		SELECT s.i, l.asset_id, l.final_path, l.final_path_bytes, l.move_state,
		       l.duplicate_of
		  FROM ingest_ledger l JOIN src s ON s.k = l.key
		 WHERE l.key = ANY (ARRAY(SELECT s2.k FROM src s2
					  WHERE s2.k NOT IN (SELECT n.k FROM fresh n)))
	), ins AS MATERIALIZED (
		SELECT n.* FROM fresh n WHERE n.dup IS NULL OR n.policy = 'ingest'
	), a AS (
		INSERT INTO assets (id, tenant_id, title, asset_type, slug, file_size_bytes,
				    checksum_sha256, primary_storage_path, status, extra,
				    partition_date)
		SELECT d.asset_id, d.tid, left(d.name, 500),
		       left(coalesce(d.asset_type, 'document'), 50), mam_slug(d.name, d.asset_id),
		       d.size, d.sha256, d.fpath,
		       CASE WHEN d.nj > 0 THEN 'processing' ELSE 'available' END,
		       jsonb_strip_nulls(jsonb_build_object(
			       'drop_folder', d.folder,
			       'relative_path', d.relpath,
			       'relative_path_hex', d.relpath_hex,
			       'source_mtime', to_char(to_timestamp(d.mtime_ns::numeric
				       / 1000000000) AT TIME ZONE 'UTC',
				       'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
			       'source_mtime_ns', d.mtime_ns,
			       'node', d.node,
			       'mime', d.mime,
			       'duplicate_of', d.dup)),
		       current_date
		  FROM ins d
		RETURNING 1
	), loc AS (
		INSERT INTO asset_storage_locations (asset_id, tenant_id, storage_type,
			storage_tier, bucket, path, filename, url, file_size_bytes,
			checksum_sha256, content_type, purpose, is_primary, verified_at)
		SELECT d.asset_id, d.tid, left(coalesce(d.storage_type, 'local'), 50),
		       left(coalesce(d.storage_tier, 'hot'), 50), NULL, d.fpath,
		       left(split_part(d.fpath, '/', -1), 500),
		       -- mam_file_url()'s fast path: a text path of unreserved ASCII
		       -- characters and '/' is its own UTF-8 bytes, unencoded.
		       CASE WHEN d.fbytes IS NULL AND d.fpath ~ '^[A-Za-z0-9._~/-]*$'
			    THEN 'file://' || d.fpath
			    ELSE mam_file_url(coalesce(d.fbytes, convert_to(d.fpath, 'UTF8'))) END,
		       d.size, d.sha256, left(d.mime, 100), 'original', true, now()
		  FROM ins d
		RETURNING 1
	), job AS (
		INSERT INTO ingest_jobs (tenant_id, asset_id, job_type, status, priority,
					 input_path)
		SELECT d.tid, d.asset_id, j, 'pending', coalesce(d.priority, 5), d.fpath
		  FROM ins d, jsonb_array_elements_text(coalesce(d.jobs, '[]')) AS j
		RETURNING 1
	), chk AS (
		-- A key committed concurrently since this statement's snapshot (its
		-- ledger insert did nothing): not for this path, roll it all back.
		SELECT mam_assert((SELECT count(*) FROM led) + (SELECT count(*) FROM known)
				  = jsonb_array_length(files)
				  AND (SELECT count(*) FROM src) = jsonb_array_length(files),
				  'mam_ingest_set: concurrent change, go file by file') AS ok
	)
	SELECT u.* FROM (
		SELECT k.i, 'already', k.asset_id, k.final_path, k.move_state = 'pending',
		       k.duplicate_of, NULL::text, encode(k.final_path_bytes, 'hex'), 0
		  FROM known k
		UNION ALL
		SELECT n.i, CASE WHEN n.policy = 'skip' THEN 'dup_skipped' ELSE 'dup_quarantine' END,
		       NULL::uuid, NULL::text, false, n.dup, NULL::text, NULL::text, 0
		  FROM fresh n
		 WHERE n.dup IS NOT NULL AND n.policy <> 'ingest'
		UNION ALL
		SELECT d.i, 'ingested', d.asset_id, d.fpath, d.aft IN ('move', 'delete'), d.dup,
		       NULL::text, encode(d.fbytes, 'hex'), d.nj
		  FROM ins d) u
	 WHERE (SELECT ok FROM chk)
	 ORDER BY 1;
END
$$;

-- As in 002, apart from the quota statement, which now runs only when a tenant
-- of the batch has a quota (the FOR UPDATE lock above found one), and the
-- checksum test of the set-based check (same strings accepted).
CREATE OR REPLACE FUNCTION mam_ingest_batch(files jsonb)
RETURNS TABLE(idx int, outcome text, asset_id uuid, final_path text, move_pending boolean,
	      duplicate_of uuid, error text, final_path_hex text)
LANGUAGE plpgsql
SET jit = off
SET plan_cache_mode = force_custom_plan
AS $$
#variable_conflict use_column
DECLARE
	f jsonb;
	pos int;
	tid uuid;
	tactive boolean;
	tquota bigint;
	k text;
	led record;
	dup uuid;
	policy text;
	fsize bigint;
	used bigint;
	quota_used jsonb := '{}';   -- tenant id -> bytes used, valid while its row is locked
	r record;
	rows mam_ingest_row[];
	fast boolean;
	njobs int := 0;
	quota_tenants boolean;
BEGIN
	-- Lock every quota-limited tenant of the batch before any file, in id
	-- order: the quota checks are then race-free across sessions and nodes,
	-- and two batches can never deadlock on each other.
	PERFORM 1 FROM tenants t
	 WHERE t.storage_quota_bytes IS NOT NULL
	   AND t.code IN (SELECT e->>'tenant' FROM jsonb_array_elements(files) e)
	 ORDER BY t.id FOR UPDATE;
	quota_tenants := FOUND;
	-- The other tenants of the batch are locked FOR SHARE: their is_active is
	-- read below, and an administrator's UPDATE ... SET is_active = false
	-- must wait for a batch that read true, so that once it returns no file
	-- of the tenant is catalogued any more (batches do not block each other).
	PERFORM 1 FROM tenants t
	 WHERE t.storage_quota_bytes IS NULL
	   AND t.code IN (SELECT e->>'tenant' FROM jsonb_array_elements(files) e)
	 ORDER BY t.id FOR SHARE;
	-- skip/quarantine must not let two concurrent batches both miss the
	-- other's copy of the same content: serialise on (tenant, checksum).
	PERFORM pg_advisory_xact_lock(s.k) FROM (
		SELECT DISTINCT hashtextextended((e->>'tenant') || '/' || (e->>'sha256'), 4)
		       AS k
		  FROM jsonb_array_elements(files) e
		 WHERE coalesce(e->>'on_duplicate', 'ingest') <> 'ingest'
		 ORDER BY 1) s;

	-- Can the whole batch go set-based?
	SELECT coalesce(bool_and(t.id IS NOT NULL AND coalesce(t.is_active, true)
				 -- = '^[0-9a-f]{64}$', whose bounded repeat
				 -- costs PostgreSQL's regex engine ~5 us a row
				 AND length(x.e->>'sha256') = 64
				 AND (x.e->>'sha256') ~ '^[0-9a-f]*$'
				 AND coalesce(x.e->>'on_duplicate', 'ingest')
				     IN ('ingest', 'skip', 'quarantine')), false)
	       AND count(DISTINCT (x.e->>'tenant', x.e->>'sha256')) = count(*)
	       AND count(DISTINCT (x.e->>'tenant', x.e->>'folder', x.e->>'relpath',
				   x.e->>'relpath_hex', x.e->>'dev', x.e->>'ino',
				   x.e->>'size', x.e->>'mtime_ns')) = count(*)
	  INTO fast
	  FROM jsonb_array_elements(files) x(e)
	  LEFT JOIN tenants t ON t.code = x.e->>'tenant';
	IF fast AND quota_tenants THEN
		-- Quota: only when the whole batch fits (else file by file decides).
		SELECT bool_and(t.storage_quota_bytes IS NULL OR
				(SELECT coalesce(sum(a.file_size_bytes), 0) FROM assets a
				  WHERE a.tenant_id = t.id AND a.deleted_at IS NULL
				    AND a.parent_id IS NULL) + b.total <= t.storage_quota_bytes)
		  INTO fast
		  FROM (SELECT e->>'tenant' AS code, sum((e->>'size')::bigint) AS total
			  FROM jsonb_array_elements(files) e GROUP BY 1) b
		  JOIN tenants t ON t.code = b.code;
	END IF;
	IF fast THEN
		BEGIN
			-- Collected first: rows returned before an error could not be taken back.
			SELECT array_agg(r) INTO rows FROM mam_ingest_set(files) r;
		EXCEPTION WHEN OTHERS THEN
			fast := false;
		END;
	END IF;
	IF fast THEN
		SELECT coalesce(sum(o.jobs), 0) INTO njobs FROM unnest(rows) o;
		RETURN QUERY SELECT o.idx, o.outcome, o.asset_id, o.final_path, o.move_pending,
				    o.duplicate_of, o.error, o.final_path_hex
			       FROM unnest(rows) o ORDER BY o.idx;
		IF njobs > 0 THEN
			PERFORM pg_notify('mam_ingest_jobs', njobs::text);
		END IF;
		RETURN;
	END IF;

	FOR f, pos IN SELECT x.e, (x.o - 1)::int
			FROM jsonb_array_elements(files) WITH ORDINALITY AS x(e, o) LOOP
		idx := pos;
		outcome := NULL;
		asset_id := NULL;
		final_path := NULL;
		final_path_hex := NULL;
		move_pending := false;
		duplicate_of := NULL;
		error := NULL;
		<<one>>
		BEGIN
			SELECT t.id, t.is_active, t.storage_quota_bytes
			  INTO tid, tactive, tquota
			  FROM tenants t WHERE t.code = f->>'tenant';
			IF NOT FOUND THEN
				RAISE EXCEPTION 'unknown tenant "%"', f->>'tenant';
			END IF;
			IF NOT coalesce(tactive, true) THEN
				outcome := 'tenant_inactive';
				EXIT one;
			END IF;

			k := mam_ingest_key(f->>'tenant', f->>'folder', f->>'relpath',
					    f->>'relpath_hex', (f->>'dev')::bigint,
					    (f->>'ino')::bigint, (f->>'size')::bigint,
					    (f->>'mtime_ns')::bigint);
			SELECT l.* INTO led FROM ingest_ledger l WHERE l.key = k;
			IF FOUND THEN
				outcome := 'already';
				asset_id := led.asset_id;
				final_path := led.final_path;
				final_path_hex := encode(led.final_path_bytes, 'hex');
				move_pending := led.move_state = 'pending';
				duplicate_of := led.duplicate_of;
				EXIT one;
			END IF;

			fsize := (f->>'size')::bigint;
			policy := coalesce(f->>'on_duplicate', 'ingest');
			IF policy NOT IN ('ingest', 'skip', 'quarantine') THEN
				RAISE EXCEPTION 'invalid on_duplicate "%"', policy;
			END IF;
			IF f->>'sha256' IS NULL OR f->>'sha256' !~ '^[0-9a-f]{64}$' THEN
				RAISE EXCEPTION 'invalid sha256 "%"', f->>'sha256';
			END IF;

			-- A duplicate that is skipped or quarantined takes no quota.
			SELECT a.id INTO dup FROM assets a
			 WHERE a.tenant_id = tid AND a.checksum_sha256 = f->>'sha256'
			   AND a.deleted_at IS NULL AND a.parent_id IS NULL
			 LIMIT 1;
			IF tquota IS NOT NULL AND (dup IS NULL OR policy = 'ingest') THEN
				used := (quota_used->>tid::text)::bigint;
				IF used IS NULL THEN
					SELECT coalesce(sum(a.file_size_bytes), 0) INTO used
					  FROM assets a
					 WHERE a.tenant_id = tid AND a.deleted_at IS NULL
					   AND a.parent_id IS NULL;
				END IF;
				IF used + fsize > tquota THEN
					outcome := 'over_quota';
					EXIT one;
				END IF;
			END IF;

			-- The one place that writes: this file alone, set-based.
			SELECT * INTO r FROM mam_ingest_set(jsonb_build_array(f));
			outcome := r.outcome;
			asset_id := r.asset_id;
			final_path := r.final_path;
			final_path_hex := r.final_path_hex;
			move_pending := r.move_pending;
			duplicate_of := r.duplicate_of;
			-- Last, so a failure above leaves the counters untouched.
			njobs := njobs + r.jobs;
			IF tquota IS NOT NULL AND r.outcome = 'ingested' THEN
				quota_used := jsonb_set(quota_used, ARRAY[tid::text],
							to_jsonb(used + fsize));
			END IF;
		EXCEPTION WHEN OTHERS THEN
			outcome := 'failed';
			error := SQLERRM;
			asset_id := NULL;
			final_path := NULL;
			final_path_hex := NULL;
			move_pending := false;
			duplicate_of := NULL;
		END one;
		RETURN NEXT;
	END LOOP;

	-- One NOTIFY per batch: a NOTIFY takes a global lock at commit.
	IF njobs > 0 THEN
		PERFORM pg_notify('mam_ingest_jobs', njobs::text);
	END IF;
END
$$;

-- 004's convention for a migration that creates objects (idempotent; grants
-- to the run-time roles that exist).
SELECT mam_apply_role_grants();
