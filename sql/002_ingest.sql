-- 002_ingest: the ingest ledger and the SQL side of the catalogue (issue 4).
--
-- The seed's tables are left exactly as they are; everything here is an
-- addition. The ledger carries the idempotency key that cannot live on the
-- partitioned `assets` (a unique constraint there must include
-- partition_date). mam_ingest_batch() records a whole batch of hashed files in
-- the caller's one transaction, each file inside its own exception block so a
-- bad file fails alone, and sends one NOTIFY per batch. The daemon (catalog.c)
-- builds the jsonb argument; psql can call every function here directly.
--
-- Paths that are not valid UTF-8 cannot be stored in a text column of a UTF8
-- database. The daemon then sends the display form (each invalid byte written
-- as \xNN, a literal backslash as \\) in the text field and the exact bytes as
-- hex in the matching *_hex field; the ledger keeps those bytes in the *_bytes
-- bytea columns, and the storage location's url percent-encodes the exact
-- bytes, so the file can always be found from the catalogue.
--
-- dev and ino are unsigned 64-bit on Linux; they are stored as bigint after a
-- two's complement cast (uint64 -> int64). That mapping is a bijection, so
-- equality (all the key needs) is preserved and the original is recoverable.

CREATE TABLE ingest_ledger (
	id bigserial PRIMARY KEY,
	key text NOT NULL,                 -- mam_ingest_key(): sha256 of the file's identity
	tenant_id uuid NOT NULL,
	folder text NOT NULL,              -- drop folder path as configured
	relpath text NOT NULL,             -- display form; exact bytes in relpath_bytes when not UTF-8
	relpath_bytes bytea,
	dev bigint NOT NULL,               -- st_dev, uint64 stored two's complement
	ino bigint NOT NULL,               -- st_ino, same
	size bigint NOT NULL,
	mtime_ns bigint NOT NULL,
	ctime_ns bigint,                   -- informational: a chmod must not make a new file
	asset_id uuid,                     -- NULL for duplicate_* rows
	partition_date date,               -- the asset's partition key
	sha256 varchar(64),
	outcome text NOT NULL
		CHECK (outcome IN ('ingested', 'duplicate_skipped', 'duplicate_quarantined')),
	duplicate_of uuid,
	after_ingest text NOT NULL DEFAULT 'leave'
		CHECK (after_ingest IN ('leave', 'move', 'delete')),
	source_path text,                  -- where the file was when it was catalogued
	source_path_bytes bytea,
	final_path text,                   -- where the storage location points
	final_path_bytes bytea,
	move_state text NOT NULL DEFAULT 'none'
		CHECK (move_state IN ('none', 'pending', 'done')),
	node text,                         -- ingest node that recorded it
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	CONSTRAINT ingest_ledger_key_key UNIQUE (key)
);

CREATE INDEX idx_ingest_ledger_asset_id ON ingest_ledger (asset_id);
CREATE INDEX idx_ingest_ledger_tenant_created ON ingest_ledger (tenant_id, created_at);
-- The start-up repair pass lists unconfirmed moves per folder.
CREATE INDEX idx_ingest_ledger_pending_moves ON ingest_ledger (folder)
	WHERE move_state = 'pending';
-- The duplicate check: same checksum among a tenant's live originals.
CREATE INDEX idx_assets_checksum ON assets (checksum_sha256, tenant_id)
	WHERE deleted_at IS NULL AND parent_id IS NULL;

-- The idempotency key of one file: tenant, drop folder, relative path (its
-- exact bytes when not UTF-8, so a display form can never collide with a real
-- name), dev, ino, size, mtime_ns. Hashed so the unique index stays small
-- whatever the path length (a btree entry is limited to ~2.7 kB).
CREATE FUNCTION mam_ingest_key(tenant text, folder text, relpath text, relpath_hex text,
			       dev bigint, ino bigint, size bigint, mtime_ns bigint)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
	SELECT encode(sha256(convert_to(
		jsonb_build_array(tenant, folder, relpath, relpath_hex, dev, ino, size, mtime_ns)::text,
		'UTF8')), 'hex')
$$;

-- file:// URI of a path given as bytes: everything outside RFC 3986's
-- unreserved set and '/' is percent-encoded, byte by byte.
CREATE FUNCTION mam_file_url(p bytea) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
	SELECT CASE
		-- Fast path: nothing to encode (encode(..., 'escape') leaves such bytes alone).
		WHEN encode(p, 'escape') ~ '^[A-Za-z0-9._~/-]*$' THEN 'file://' || encode(p, 'escape')
		ELSE 'file://' || (
			SELECT coalesce(string_agg(
				CASE WHEN b BETWEEN 48 AND 57 OR b BETWEEN 65 AND 90
					  OR b BETWEEN 97 AND 122 OR b IN (45, 46, 47, 95, 126)
				     THEN chr(b) ELSE '%' || upper(lpad(to_hex(b), 2, '0')) END,
				'' ORDER BY i), '')
			  FROM generate_series(0, length(p) - 1) AS i, LATERAL get_byte(p, i) AS b)
	END
$$;

-- The text path, or its exact bytes when the caller sent them as hex.
CREATE FUNCTION mam_path_bytes(path text, path_hex text) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
	SELECT CASE WHEN path_hex IS NOT NULL THEN decode(path_hex, 'hex')
		    ELSE convert_to(path, 'UTF8') END
$$;

-- URL-friendly slug: lowercase ASCII letters and digits, '-' elsewhere, plus
-- the first 8 hex digits of the asset id so two files of one name differ.
CREATE FUNCTION mam_slug(name text, id uuid) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
	SELECT coalesce(nullif(left(trim(BOTH '-' FROM
		regexp_replace(lower(name), '[^a-z0-9]+', '-', 'g')), 200), '') || '-', '')
		|| left(id::text, 8)
$$;

-- Record files that are known to be recordable together (the caller checked:
-- every tenant exists and is active, quota allows all of them, no two share a
-- key or a (tenant, checksum) pair, sha256 and on_duplicate are well formed).
-- Set-based: one INSERT per table for the whole set, which is what makes a
-- 500-file batch cheap. The duplicate check reads the assets as they were
-- before this statement, which is exact because no two files of the set
-- share a checksum. If a concurrent session committed one of the keys since
-- the statement's snapshot, it raises (SQLSTATE 40001) rather than guess; the
-- caller then goes file by file. Same columns and outcomes as documented for
-- mam_ingest_batch, plus jobs = number of jobs inserted for the file.
CREATE TYPE mam_ingest_row AS (idx int, outcome text, asset_id uuid, final_path text,
			       move_pending boolean, duplicate_of uuid, error text,
			       final_path_hex text, jobs int);

-- Raise msg (SQLSTATE 40001) unless ok; lets one SQL statement check itself.
CREATE FUNCTION mam_assert(ok boolean, msg text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
	IF NOT coalesce(ok, false) THEN
		RAISE EXCEPTION '%', msg USING ERRCODE = '40001';
	END IF;
	RETURN true;
END
$$;

CREATE FUNCTION mam_ingest_set(files jsonb) RETURNS SETOF mam_ingest_row
LANGUAGE plpgsql AS $$
BEGIN
	-- plpgsql rather than sql: the plan of this statement is cached for the
	-- session, where a SQL function would plan it again on every call.
	RETURN QUERY WITH src AS (
		SELECT (x.o - 1)::int AS i, x.e AS f, t.id AS tid,
		       mam_ingest_key(x.e->>'tenant', x.e->>'folder', x.e->>'relpath',
				      x.e->>'relpath_hex', (x.e->>'dev')::bigint,
				      (x.e->>'ino')::bigint, (x.e->>'size')::bigint,
				      (x.e->>'mtime_ns')::bigint) AS k,
		       (x.e->>'asset_id')::uuid AS aid,
		       (x.e->>'size')::bigint AS fsize,
		       coalesce(x.e->>'on_duplicate', 'ingest') AS policy,
		       coalesce(x.e->>'after', 'leave') AS aft,
		       coalesce(x.e->>'final_path', x.e->>'abspath') AS fpath,
		       CASE WHEN x.e->>'final_path' IS NOT NULL
			    THEN decode(x.e->>'final_path_hex', 'hex')
			    ELSE decode(x.e->>'abspath_hex', 'hex') END AS fbytes,
		       regexp_replace(x.e->>'relpath', '^.*/', '') AS name,
		       coalesce(jsonb_array_length(x.e->'jobs'), 0) AS nj
		  FROM jsonb_array_elements(files) WITH ORDINALITY AS x(e, o)
		  JOIN tenants t ON t.code = x.e->>'tenant'
	), known AS (
		SELECT s.i, l.asset_id, l.final_path, l.final_path_bytes, l.move_state,
		       l.duplicate_of
		  FROM src s JOIN ingest_ledger l ON l.key = s.k
	), todo AS (
		SELECT s.*,
		       (SELECT a.id FROM assets a
			 WHERE a.tenant_id = s.tid AND a.checksum_sha256 = s.f->>'sha256'
			   AND a.deleted_at IS NULL AND a.parent_id IS NULL
			 LIMIT 1) AS dup
		  FROM src s WHERE s.i NOT IN (SELECT k2.i FROM known k2)
	), led AS (
		INSERT INTO ingest_ledger AS l (key, tenant_id, folder, relpath, relpath_bytes,
			dev, ino, size, mtime_ns, ctime_ns, asset_id, partition_date, sha256,
			outcome, duplicate_of, after_ingest, source_path, source_path_bytes,
			final_path, final_path_bytes, move_state, node)
		SELECT d.k, d.tid, d.f->>'folder', d.f->>'relpath', decode(d.f->>'relpath_hex', 'hex'),
		       (d.f->>'dev')::bigint, (d.f->>'ino')::bigint, d.fsize,
		       (d.f->>'mtime_ns')::bigint, (d.f->>'ctime_ns')::bigint,
		       CASE WHEN d.dup IS NULL OR d.policy = 'ingest' THEN d.aid END,
		       CASE WHEN d.dup IS NULL OR d.policy = 'ingest' THEN current_date END,
		       d.f->>'sha256',
		       CASE WHEN d.dup IS NULL OR d.policy = 'ingest' THEN 'ingested'
			    WHEN d.policy = 'skip' THEN 'duplicate_skipped'
			    ELSE 'duplicate_quarantined' END,
		       d.dup, d.aft, d.f->>'abspath', decode(d.f->>'abspath_hex', 'hex'),
		       CASE WHEN d.dup IS NULL OR d.policy = 'ingest' THEN d.fpath END,
		       CASE WHEN d.dup IS NULL OR d.policy = 'ingest' THEN d.fbytes END,
		       CASE WHEN (d.dup IS NULL OR d.policy = 'ingest')
				 AND d.aft IN ('move', 'delete') THEN 'pending' ELSE 'none' END,
		       d.f->>'node'
		  FROM todo d
		ON CONFLICT ON CONSTRAINT ingest_ledger_key_key DO NOTHING
		RETURNING l.key
	), ins AS (
		-- Every todo row got its ledger row, or the check below rolls all back.
		SELECT d.* FROM todo d WHERE d.dup IS NULL OR d.policy = 'ingest'
	), a AS (
		INSERT INTO assets (id, tenant_id, title, asset_type, slug, file_size_bytes,
				    checksum_sha256, primary_storage_path, status, extra,
				    partition_date)
		SELECT d.aid, d.tid, left(d.name, 500),
		       left(coalesce(d.f->>'asset_type', 'document'), 50), mam_slug(d.name, d.aid),
		       d.fsize, d.f->>'sha256', d.fpath,
		       CASE WHEN d.nj > 0 THEN 'processing' ELSE 'available' END,
		       jsonb_strip_nulls(jsonb_build_object(
			       'drop_folder', d.f->>'folder',
			       'relative_path', d.f->>'relpath',
			       'relative_path_hex', d.f->>'relpath_hex',
			       'source_mtime', to_char(to_timestamp((d.f->>'mtime_ns')::numeric
				       / 1000000000) AT TIME ZONE 'UTC',
				       'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
			       'source_mtime_ns', (d.f->>'mtime_ns')::bigint,
			       'node', d.f->>'node',
			       'mime', d.f->>'mime',
			       'duplicate_of', d.dup)),
		       current_date
		  FROM ins d
		RETURNING 1
	), loc AS (
		INSERT INTO asset_storage_locations (asset_id, tenant_id, storage_type,
			storage_tier, bucket, path, filename, url, file_size_bytes,
			checksum_sha256, content_type, purpose, is_primary, verified_at)
		SELECT d.aid, d.tid, left(coalesce(d.f->>'storage_type', 'local'), 50),
		       left(coalesce(d.f->>'storage_tier', 'hot'), 50), NULL, d.fpath,
		       left(regexp_replace(d.fpath, '^.*/', ''), 500),
		       mam_file_url(coalesce(d.fbytes, convert_to(d.fpath, 'UTF8'))), d.fsize,
		       d.f->>'sha256', left(d.f->>'mime', 100), 'original', true, now()
		  FROM ins d
		RETURNING 1
	), job AS (
		INSERT INTO ingest_jobs (tenant_id, asset_id, job_type, status, priority,
					 input_path)
		SELECT d.tid, d.aid, j, 'pending', coalesce((d.f->>'priority')::int, 5), d.fpath
		  FROM ins d, jsonb_array_elements_text(coalesce(d.f->'jobs', '[]')) AS j
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
		SELECT d.i, CASE WHEN d.policy = 'skip' THEN 'dup_skipped' ELSE 'dup_quarantine' END,
		       NULL::uuid, NULL::text, false, d.dup, NULL::text, NULL::text, 0
		  FROM todo d
		 WHERE d.dup IS NOT NULL AND d.policy <> 'ingest'
		UNION ALL
		SELECT d.i, 'ingested', d.aid, d.fpath, d.aft IN ('move', 'delete'), d.dup,
		       NULL::text, encode(d.fbytes, 'hex'), d.nj
		  FROM ins d) u
	 WHERE (SELECT ok FROM chk)
	 ORDER BY 1;
END
$$;

-- Record a batch of hashed files. files is a JSON array of objects:
--   tenant, folder, relpath, relpath_hex?, abspath, abspath_hex?, final_path,
--   final_path_hex?, asset_id (uuid made by the client), dev, ino, size,
--   mtime_ns, ctime_ns, sha256, mime, asset_type, jobs (array of job_type
--   names), priority, after (leave|move|delete), on_duplicate
--   (ingest|skip|quarantine), storage_type, storage_tier, node.
-- One row per element, idx = its 0-based position. Outcomes: ingested,
-- already (key known: the recorded asset_id/final_path/move_pending are
-- returned, nothing written), dup_skipped, dup_quarantine (ledger row only),
-- over_quota and tenant_inactive (nothing written, so a retry works later),
-- failed (error holds SQLERRM; nothing of that file written).
--
-- The common case (every tenant active, the quota leaves room for the whole
-- batch, no two files with one key or checksum, no malformed element) is
-- recorded set-based in one subtransaction by mam_ingest_set. Anything else,
-- or any error there, rolls that back and goes file by file, each file in its
-- own exception block calling mam_ingest_set with just that file, so one bad
-- file fails alone and the rules live in one place.
CREATE FUNCTION mam_ingest_batch(files jsonb)
RETURNS TABLE(idx int, outcome text, asset_id uuid, final_path text, move_pending boolean,
	      duplicate_of uuid, error text, final_path_hex text)
LANGUAGE plpgsql AS $$
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
BEGIN
	-- Lock every quota-limited tenant of the batch before any file, in id
	-- order: the quota checks are then race-free across sessions and nodes,
	-- and two batches can never deadlock on each other.
	PERFORM 1 FROM tenants t
	 WHERE t.storage_quota_bytes IS NOT NULL
	   AND t.code IN (SELECT e->>'tenant' FROM jsonb_array_elements(files) e)
	 ORDER BY t.id FOR UPDATE;
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
				 AND (x.e->>'sha256') ~ '^[0-9a-f]{64}$'
				 AND coalesce(x.e->>'on_duplicate', 'ingest')
				     IN ('ingest', 'skip', 'quarantine')), false)
	       AND count(DISTINCT (x.e->>'tenant', x.e->>'sha256')) = count(*)
	       AND count(DISTINCT (x.e->>'tenant', x.e->>'folder', x.e->>'relpath',
				   x.e->>'relpath_hex', x.e->>'dev', x.e->>'ino',
				   x.e->>'size', x.e->>'mtime_ns')) = count(*)
	  INTO fast
	  FROM jsonb_array_elements(files) x(e)
	  LEFT JOIN tenants t ON t.code = x.e->>'tenant';
	IF fast THEN
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

-- Which of these files are already in the ledger? keys is a JSON array of
-- objects with tenant, folder, relpath, relpath_hex?, dev, ino, size,
-- mtime_ns. Only known ones come back, idx = 0-based position, with the
-- checksum recorded (a pending cross-device move verifies its copy with it).
CREATE FUNCTION mam_ingest_lookup(keys jsonb)
RETURNS TABLE(idx int, asset_id uuid, final_path text, move_pending boolean, outcome text,
	      duplicate_of uuid, final_path_hex text, sha256 text)
LANGUAGE sql STABLE AS $$
	SELECT (x.o - 1)::int, l.asset_id, l.final_path, l.move_state = 'pending', l.outcome,
	       l.duplicate_of, encode(l.final_path_bytes, 'hex'), l.sha256::text
	  FROM jsonb_array_elements(keys) WITH ORDINALITY AS x(e, o)
	  JOIN ingest_ledger l
	    ON l.key = mam_ingest_key(x.e->>'tenant', x.e->>'folder', x.e->>'relpath',
				      x.e->>'relpath_hex', (x.e->>'dev')::bigint,
				      (x.e->>'ino')::bigint, (x.e->>'size')::bigint,
				      (x.e->>'mtime_ns')::bigint)
	 ORDER BY 1
$$;

-- The post-ingest action of an asset finished. Returns the ledger's
-- after_ingest value, or NULL when nothing was pending (unknown asset or
-- already confirmed: confirming twice is harmless).
--
-- after_ingest: delete removes the only copy the catalogue pointed at, so the
-- original location can no longer point at an existing file. Rather than
-- pretend, the confirmation marks that location is_accessible = false and
-- status 'deleted' (the row, its checksum and its path stay as the record of
-- what was ingested).
CREATE FUNCTION mam_confirm_move(p_asset_id uuid) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	a text;
BEGIN
	UPDATE ingest_ledger l SET move_state = 'done', updated_at = now()
	 WHERE l.asset_id = p_asset_id AND l.move_state = 'pending'
	RETURNING l.after_ingest INTO a;
	IF a = 'delete' THEN
		UPDATE asset_storage_locations s
		   SET is_accessible = false, status = 'deleted', updated_at = now()
		 WHERE s.asset_id = p_asset_id AND s.purpose = 'original';
	END IF;
	RETURN a;
END
$$;

-- Upsert the configured tenants: a JSON array of {code, name, active?,
-- storage_quota_bytes?}. active and storage_quota_bytes are only written when
-- present (the config leaves them to the database otherwise); a quota of 0
-- means unlimited (NULL). Returns every given tenant's code and is_active.
CREATE FUNCTION mam_upsert_tenants(p_tenants jsonb)
RETURNS TABLE(code text, is_active boolean)
LANGUAGE sql AS $$
	INSERT INTO tenants AS t (code, name, is_active, storage_quota_bytes)
	SELECT e->>'code', coalesce(e->>'name', e->>'code'),
	       coalesce((e->>'active')::boolean, true),
	       nullif((e->>'storage_quota_bytes')::bigint, 0)
	  FROM jsonb_array_elements(p_tenants) e
	ON CONFLICT (code) DO NOTHING;

	UPDATE tenants t
	   SET name = coalesce(e->>'name', t.name),
	       is_active = CASE WHEN e ? 'active' THEN (e->>'active')::boolean
				ELSE t.is_active END,
	       storage_quota_bytes = CASE WHEN e ? 'storage_quota_bytes'
					  THEN nullif((e->>'storage_quota_bytes')::bigint, 0)
					  ELSE t.storage_quota_bytes END,
	       updated_at = now()
	  FROM jsonb_array_elements(p_tenants) e
	 WHERE t.code = e->>'code'
	   AND (t.name IS DISTINCT FROM coalesce(e->>'name', t.name)
		OR (e ? 'active' AND t.is_active IS DISTINCT FROM (e->>'active')::boolean)
		OR (e ? 'storage_quota_bytes' AND t.storage_quota_bytes IS DISTINCT FROM
		    nullif((e->>'storage_quota_bytes')::bigint, 0)));

	SELECT t.code::text, coalesce(t.is_active, true)
	  FROM tenants t
	 WHERE t.code IN (SELECT e->>'code' FROM jsonb_array_elements(p_tenants) e)
	 ORDER BY t.code;
$$;

-- Ledger rows of the given drop folders (a JSON array of folder paths) whose
-- post-ingest move or delete was never confirmed: the crash-between-commit-
-- and-move repair list, oldest first.
CREATE FUNCTION mam_pending_moves(folders jsonb)
RETURNS TABLE(tenant text, folder text, asset_id uuid, source_path text, source_path_hex text,
	      final_path text, final_path_hex text, sha256 text, after_ingest text)
LANGUAGE sql STABLE AS $$
	SELECT t.code::text, l.folder, l.asset_id, l.source_path,
	       encode(l.source_path_bytes, 'hex'), l.final_path,
	       encode(l.final_path_bytes, 'hex'), l.sha256::text, l.after_ingest
	  FROM ingest_ledger l
	  JOIN tenants t ON t.id = l.tenant_id
	 WHERE l.move_state = 'pending'
	   AND l.folder IN (SELECT jsonb_array_elements_text(folders))
	 ORDER BY l.id
$$;

-- JIT never pays off here: the batch statements are short, but the quota
-- sum over a tenant's assets is estimated as if it ran for every file, so on
-- a large catalogue the planner crossed jit_above_cost and compiled the batch
-- function's statements on every call (seconds per batch, measured with
-- auto_explain; tests/bench and docs/benchmarks.md).
ALTER FUNCTION mam_ingest_batch(jsonb) SET jit = off;
ALTER FUNCTION mam_ingest_set(jsonb) SET jit = off;
ALTER FUNCTION mam_ingest_lookup(jsonb) SET jit = off;
-- PL/pgSQL keeps a generic plan per statement for the whole session once it
-- looks as cheap as the custom ones, planned against the tables as they were
-- then: a daemon that starts on an empty catalogue kept plans made for empty
-- tables while they grew (PostgreSQL CPU per file 4x that of a second run
-- over the same data in tests/bench). These statements run once per batch,
-- not per file, so planning each execution costs little.
ALTER FUNCTION mam_ingest_batch(jsonb) SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION mam_ingest_set(jsonb) SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION mam_ingest_lookup(jsonb) SET plan_cache_mode = force_custom_plan;
