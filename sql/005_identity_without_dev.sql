-- 005: a file's identity no longer includes st_dev.
--
-- Two NAS heads that mount one share (NFS, SMB) see the same inode numbers
-- (the server's file ids), the same sizes and the same server-side mtimes,
-- but each client gives the mount its own st_dev. With st_dev in the
-- idempotency key, a node taking a folder over from another machine (issue
-- 10) would not recognise the files the first one catalogued and, with
-- after_ingest: leave, would catalogue them all again. A local disk's st_dev
-- is not stable either (device numbering can change across reboots, LVM and
-- md reassemblies). Nothing is lost by leaving it out: the key still holds
-- tenant, folder and relative path, so two files can only share a key when
-- the same path in the same drop folder has the same inode number, size and
-- mtime to the nanosecond, which is the same file seen through another mount.
--
-- The signature keeps its dev parameter (ignored) so every caller, and any
-- client that still sends dev, stays valid; the ledger keeps its dev column
-- for information.
CREATE OR REPLACE FUNCTION mam_ingest_key(tenant text, folder text, relpath text, relpath_hex text,
					  dev bigint, ino bigint, size bigint, mtime_ns bigint)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
	SELECT encode(sha256(convert_to(
		jsonb_build_array(tenant, folder, relpath, relpath_hex, ino, size, mtime_ns)::text,
		'UTF8')), 'hex')
$$;

-- Re-key the rows already recorded, from the columns they were keyed from,
-- so files catalogued before this migration stay known. Rows that now share
-- a key are one file that was catalogued twice through two mounts (exactly
-- what this migration prevents from now on): the oldest takes the new key and
-- the others keep their old one, so their history is kept and nothing fails;
-- a NOTICE says how many there were.
DO $$
DECLARE
	n_rekeyed bigint;
	n_twins bigint;
BEGIN
	WITH nk AS (
		SELECT l.id,
		       mam_ingest_key(t.code, l.folder, l.relpath, encode(l.relpath_bytes, 'hex'),
				      l.dev, l.ino, l.size, l.mtime_ns) AS k,
		       row_number() OVER (
			       PARTITION BY t.code, l.folder, l.relpath, l.relpath_bytes, l.ino,
					    l.size, l.mtime_ns
			       ORDER BY l.created_at, l.id) AS rn
		  FROM ingest_ledger l JOIN tenants t ON t.id = l.tenant_id
	), up AS (
		UPDATE ingest_ledger l SET key = nk.k
		  FROM nk
		 WHERE l.id = nk.id AND nk.rn = 1 AND l.key IS DISTINCT FROM nk.k
		RETURNING 1
	)
	SELECT count(*) INTO n_rekeyed FROM up;
	SELECT count(*) INTO n_twins FROM (
		SELECT 1 FROM ingest_ledger l JOIN tenants t ON t.id = l.tenant_id
		 GROUP BY t.code, l.folder, l.relpath, l.relpath_bytes, l.ino, l.size, l.mtime_ns
		HAVING count(*) > 1) x;
	RAISE NOTICE 'ingest_ledger: % rows re-keyed without st_dev; % files were recorded more than once through different mounts',
		n_rekeyed, n_twins;
END
$$;
