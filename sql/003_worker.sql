-- 003_worker: what `mam-ingest worker` needs on top of the seed schema.
--
-- The worker claims ingest_jobs with FOR UPDATE SKIP LOCKED; every state
-- change after the claim goes through one of the functions below so that the
-- rules (ownership of a claim, retries with backoff, the asset's status once
-- its jobs are settled) live in one place and run in one transaction each.
-- Nothing here changes a seed column: only new columns, indexes and functions.
--
-- Locking order, everywhere: the job's asset row first, then the job row.
-- Locking the asset serialises the "are all jobs of this asset completed?"
-- question between two workers finishing the last two jobs at the same time;
-- without it each would see the other's job still processing and the asset
-- would never become available.

ALTER TABLE ingest_jobs
  -- NULL = runnable now; a retry sets it to now() + backoff.
  ADD COLUMN IF NOT EXISTS run_after timestamptz,
  -- The worker holding the claim ("node:pid:start"), kept after completion
  -- as a record of who ran the job.
  ADD COLUMN IF NOT EXISTS claimed_by text,
  -- Refreshed by the running worker; a stale value means the worker died.
  ADD COLUMN IF NOT EXISTS heartbeat_at timestamptz,
  -- Number of claims (runs started), including reclaimed and retried ones.
  ADD COLUMN IF NOT EXISTS attempts integer NOT NULL DEFAULT 0;

-- Matches the claim query exactly: same predicate, same ORDER BY, so a claim
-- reads the first rows of the index instead of sorting every queued job.
CREATE INDEX IF NOT EXISTS idx_jobs_claim ON ingest_jobs (priority DESC, created_at)
  WHERE status = 'pending';
-- The few running jobs, for the heartbeat and the stale-claim sweep.
CREATE INDEX IF NOT EXISTS idx_jobs_running ON ingest_jobs (heartbeat_at)
  WHERE status = 'processing';
-- Finding an asset's existing derivative (a re-run replaces it, never adds one).
CREATE INDEX IF NOT EXISTS idx_assets_parent_derivative ON assets (parent_id, derivative_type)
  WHERE parent_id IS NOT NULL;

-- ffprobe writes numbers as JSON strings and may write "N/A": a number or NULL,
-- never a cast error that would fail the whole job.
CREATE OR REPLACE FUNCTION mam_worker_int(p text) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN p ~ '^-?[0-9]{1,18}$' THEN p::bigint END
$$;
CREATE OR REPLACE FUNCTION mam_worker_num(p text) RETURNS numeric
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN p ~ '^-?[0-9]{1,15}(\.[0-9]*)?$' THEN p::numeric END
$$;

-- mediainfo's output is optional extra data: text that is not JSON becomes
-- NULL instead of failing the metadata job.
CREATE OR REPLACE FUNCTION mam_worker_jsonb(p text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  RETURN p::jsonb;
EXCEPTION WHEN others THEN
  RETURN NULL;
END $$;

-- Lock the job's asset, then the job; return the job row as now committed.
CREATE OR REPLACE FUNCTION mam_worker_lock_job(p_job uuid) RETURNS ingest_jobs
LANGUAGE plpgsql AS $$
DECLARE
  v_asset uuid;
  j ingest_jobs;
BEGIN
  SELECT asset_id INTO v_asset FROM ingest_jobs WHERE id = p_job;
  IF v_asset IS NOT NULL THEN
    PERFORM 1 FROM assets WHERE id = v_asset FOR UPDATE;
  END IF;
  SELECT * INTO j FROM ingest_jobs WHERE id = p_job FOR UPDATE;
  RETURN j;
END $$;

-- After a job of the asset settled: failed when one job failed for good,
-- available when every job completed, untouched otherwise. Archived or
-- deleted assets are left alone. The caller holds the asset's row lock.
CREATE OR REPLACE FUNCTION mam_worker_settle_asset(p_asset uuid) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  v_status text;
BEGIN
  IF p_asset IS NULL THEN
    RETURN;
  END IF;
  IF EXISTS (SELECT 1 FROM ingest_jobs WHERE asset_id = p_asset AND status = 'failed') THEN
    v_status := 'failed';
  ELSIF NOT EXISTS (SELECT 1 FROM ingest_jobs
         WHERE asset_id = p_asset AND status IS DISTINCT FROM 'completed') THEN
    v_status := 'available';
  ELSE
    RETURN;
  END IF;
  UPDATE assets SET status = v_status, updated_at = now()
   WHERE id = p_asset AND deleted_at IS NULL
     AND status IS DISTINCT FROM v_status AND status IS DISTINCT FROM 'archived';
END $$;

-- 'mine' when p_worker holds claim number p_attempt and the job runs,
-- 'done' when that same claim already completed it (a retried call after a
-- lost connection), 'lost' otherwise (reclaimed by another worker).
CREATE OR REPLACE FUNCTION mam_worker_claim_state(j ingest_jobs, p_worker text, p_attempt int)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE
    WHEN j.id IS NULL OR j.claimed_by IS DISTINCT FROM p_worker
         OR j.attempts IS DISTINCT FROM p_attempt THEN 'lost'
    WHEN j.status = 'processing' THEN 'mine'
    WHEN j.status IN ('completed', 'failed', 'pending') THEN 'done'
    ELSE 'lost'
  END
$$;

-- Mark a locked job completed and settle its asset.
CREATE OR REPLACE FUNCTION mam_worker_complete(j ingest_jobs, p_result jsonb) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  UPDATE ingest_jobs
     SET status = 'completed', progress = 100, completed_at = now(), error_message = NULL,
         run_after = NULL, heartbeat_at = NULL, result = p_result
   WHERE id = j.id;
  PERFORM mam_worker_settle_asset(j.asset_id);
END $$;

-- The metadata job's outcome: ffprobe's JSON goes in as it is and jsonb does
-- the extraction. Rules (docs/worker.md): the first video stream that is not
-- attached cover art and the first audio stream; frame rate from
-- avg_frame_rate, else r_frame_rate, none for still images;
-- resolution_category from the long and the short side.
CREATE OR REPLACE FUNCTION mam_worker_store_metadata(p_job uuid, p_worker text, p_attempt int,
  p_probe jsonb, p_mediainfo jsonb, p_result jsonb) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  j ingest_jobs;
  v_state text;
  v_dur bigint;
BEGIN
  j := mam_worker_lock_job(p_job);
  v_state := mam_worker_claim_state(j, p_worker, p_attempt);
  IF v_state <> 'mine' THEN
    RETURN v_state;
  END IF;
  -- ffprobe can open some files without finding any stream in them.
  IF jsonb_array_length(coalesce(p_probe->'streams', '[]')) = 0 THEN
    RETURN mam_worker_fail(p_job, p_worker, p_attempt,
      'ffprobe: no audio, video or image stream found', false, interval '0',
      p_result || jsonb_build_object('error', 'no stream found', 'retryable', false));
  END IF;
  INSERT INTO asset_technical_metadata AS m (asset_id, tenant_id,
    width, height, frame_rate, frame_rate_num, frame_rate_den,
    video_codec, video_codec_profile, video_bitrate_bps,
    audio_codec, audio_channels, audio_channel_layout, audio_sample_rate,
    audio_bitrate_bps, audio_bit_depth, container_format, duration_ms,
    bit_depth, color_space, aspect_ratio, resolution_category,
    ffprobe_raw, mediainfo_raw, analyzed_at, analyzer_version)
  SELECT j.asset_id, j.tenant_id,
    x.w, x.h,
    CASE WHEN x.fr_den > 0 THEN round(x.fr_num::numeric / x.fr_den, 4) END,
    x.fr_num, x.fr_den,
    left(v.s->>'codec_name', 50), left(v.s->>'profile', 100),
    mam_worker_int(v.s->>'bit_rate'),
    left(a.s->>'codec_name', 50), mam_worker_int(a.s->>'channels'),
    left(a.s->>'channel_layout', 100), mam_worker_int(a.s->>'sample_rate'),
    mam_worker_int(a.s->>'bit_rate'),
    nullif(coalesce(mam_worker_int(a.s->>'bits_per_raw_sample'),
        mam_worker_int(a.s->>'bits_per_sample')), 0),
    left(p_probe->'format'->>'format_name', 50),
    round(coalesce(mam_worker_num(p_probe->'format'->>'duration'),
             mam_worker_num(v.s->>'duration'), mam_worker_num(a.s->>'duration'))
          * 1000)::bigint,
    CASE WHEN v.s IS NOT NULL THEN
      coalesce(nullif(mam_worker_int(v.s->>'bits_per_raw_sample'), 0),
         substring(v.s->>'pix_fmt' from 'p([0-9]+)(le|be)$')::int,
         CASE WHEN v.s->>'pix_fmt' IS NOT NULL THEN 8 END) END,
    left(v.s->>'color_space', 50),
    CASE WHEN coalesce(v.s->>'display_aspect_ratio', '0:1') NOT IN ('0:1', 'N/A', '')
      THEN left(v.s->>'display_aspect_ratio', 20)
         WHEN x.w > 0 AND x.h > 0
      THEN (x.w / gcd(x.w, x.h)) || ':' || (x.h / gcd(x.w, x.h)) END,
    CASE WHEN x.w IS NULL OR x.h IS NULL THEN NULL
         WHEN greatest(x.w, x.h) >= 7680 OR least(x.w, x.h) >= 4320 THEN '8K'
         WHEN greatest(x.w, x.h) >= 4096 THEN '4K'
         WHEN greatest(x.w, x.h) >= 3840 OR least(x.w, x.h) >= 2160 THEN 'UHD'
         WHEN greatest(x.w, x.h) >= 1920 OR least(x.w, x.h) >= 1080 THEN 'FHD'
         WHEN greatest(x.w, x.h) >= 1280 OR least(x.w, x.h) >= 720 THEN 'HD'
         ELSE 'SD' END,
    p_probe - 'program_version', p_mediainfo, now(),
    left(p_probe->'program_version'->>'version', 50)
  FROM (SELECT 1) one
  LEFT JOIN LATERAL (
    SELECT e.s FROM jsonb_array_elements(coalesce(p_probe->'streams', '[]')) AS e(s)
     WHERE e.s->>'codec_type' = 'video'
       AND coalesce(e.s->'disposition'->>'attached_pic', '0') = '0'
     ORDER BY mam_worker_int(e.s->>'index') LIMIT 1) v ON true
  LEFT JOIN LATERAL (
    SELECT e.s FROM jsonb_array_elements(coalesce(p_probe->'streams', '[]')) AS e(s)
     WHERE e.s->>'codec_type' = 'audio'
     ORDER BY mam_worker_int(e.s->>'index') LIMIT 1) a ON true
  LEFT JOIN LATERAL (
    SELECT mam_worker_int(v.s->>'width') AS w, mam_worker_int(v.s->>'height') AS h,
           CASE WHEN still THEN NULL ELSE split_part(fr, '/', 1)::int END AS fr_num,
           CASE WHEN still THEN NULL ELSE split_part(fr, '/', 2)::int END AS fr_den
      FROM (SELECT CASE
        WHEN v.s->>'avg_frame_rate' ~ '^[1-9][0-9]*/[1-9][0-9]*$'
          THEN v.s->>'avg_frame_rate'
        WHEN v.s->>'r_frame_rate' ~ '^[1-9][0-9]*/[1-9][0-9]*$'
          THEN v.s->>'r_frame_rate' END AS fr,
             (p_probe->'format'->>'format_name' = 'image2'
        OR p_probe->'format'->>'format_name' LIKE '%\_pipe') AS still) f
  ) x ON true
  ON CONFLICT (asset_id) DO UPDATE SET
    width = EXCLUDED.width, height = EXCLUDED.height,
    frame_rate = EXCLUDED.frame_rate, frame_rate_num = EXCLUDED.frame_rate_num,
    frame_rate_den = EXCLUDED.frame_rate_den, video_codec = EXCLUDED.video_codec,
    video_codec_profile = EXCLUDED.video_codec_profile,
    video_bitrate_bps = EXCLUDED.video_bitrate_bps, audio_codec = EXCLUDED.audio_codec,
    audio_channels = EXCLUDED.audio_channels,
    audio_channel_layout = EXCLUDED.audio_channel_layout,
    audio_sample_rate = EXCLUDED.audio_sample_rate,
    audio_bitrate_bps = EXCLUDED.audio_bitrate_bps,
    audio_bit_depth = EXCLUDED.audio_bit_depth,
    container_format = EXCLUDED.container_format, duration_ms = EXCLUDED.duration_ms,
    bit_depth = EXCLUDED.bit_depth, color_space = EXCLUDED.color_space,
    aspect_ratio = EXCLUDED.aspect_ratio,
    resolution_category = EXCLUDED.resolution_category,
    ffprobe_raw = EXCLUDED.ffprobe_raw, mediainfo_raw = EXCLUDED.mediainfo_raw,
    analyzed_at = EXCLUDED.analyzed_at, analyzer_version = EXCLUDED.analyzer_version,
    updated_at = now()
  RETURNING m.duration_ms INTO v_dur;
  -- assets.duration_ms is an integer: anything past ~24 days stays NULL there.
  IF j.asset_id IS NOT NULL AND v_dur IS NOT NULL AND v_dur <= 2147483647 THEN
    UPDATE assets SET duration_ms = v_dur::int, updated_at = now() WHERE id = j.asset_id;
  END IF;
  PERFORM mam_worker_complete(j, p_result || jsonb_build_object('duration_ms', v_dur));
  RETURN 'stored';
END $$;

-- A thumbnail or proxy file written by the worker becomes (or replaces) the
-- original's derivative asset of that kind, with one primary storage location.
CREATE OR REPLACE FUNCTION mam_worker_store_derivative(p_job uuid, p_worker text, p_attempt int,
  p_kind text, p_asset_type text, p_path text, p_filename text, p_url text,
  p_size bigint, p_sha256 text, p_content_type text, p_result jsonb) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  j ingest_jobs;
  o assets;
  v_state text;
  v_id uuid;
  v_title text;
BEGIN
  j := mam_worker_lock_job(p_job);
  v_state := mam_worker_claim_state(j, p_worker, p_attempt);
  IF v_state <> 'mine' THEN
    RETURN v_state;
  END IF;
  SELECT * INTO o FROM assets WHERE id = j.asset_id LIMIT 1;
  v_title := left(coalesce(o.title, p_filename), 480) || ' (' || p_kind || ')';
  SELECT id INTO v_id FROM assets
   WHERE parent_id = j.asset_id AND derivative_type = p_kind AND deleted_at IS NULL LIMIT 1;
  IF v_id IS NULL THEN
    INSERT INTO assets (tenant_id, title, asset_type, parent_id, derivative_type, status,
            duration_ms, primary_storage_path, file_size_bytes,
            checksum_sha256, extra)
    VALUES (j.tenant_id, v_title, p_asset_type, j.asset_id, p_kind, 'available',
      CASE WHEN p_kind = 'proxy' THEN o.duration_ms END, p_path, p_size,
      p_sha256, jsonb_build_object('job_id', j.id, 'derivative_of', j.asset_id))
    RETURNING id INTO v_id;
  ELSE
    UPDATE assets SET title = v_title, asset_type = p_asset_type, status = 'available',
          primary_storage_path = p_path, file_size_bytes = p_size,
          checksum_sha256 = p_sha256, updated_at = now()
     WHERE id = v_id;
    DELETE FROM asset_storage_locations WHERE asset_id = v_id AND purpose = p_kind;
  END IF;
  INSERT INTO asset_storage_locations (asset_id, tenant_id, storage_type, storage_tier, path,
    filename, url, file_size_bytes, checksum_sha256, content_type, purpose, is_primary,
    status, verified_at)
  VALUES (v_id, j.tenant_id, 'local', 'hot', p_path, p_filename, p_url, p_size, p_sha256,
    p_content_type, p_kind, true, 'available', now());
  PERFORM mam_worker_complete(j, p_result || jsonb_build_object(
    'derivative_asset_id', v_id, 'path', p_path, 'file_size_bytes', p_size,
    'checksum_sha256', p_sha256));
  RETURN 'stored';
END $$;

-- A job that needs no output (a proxy of a still image): completed, with why.
CREATE OR REPLACE FUNCTION mam_worker_store_nothing(p_job uuid, p_worker text, p_attempt int,
  p_result jsonb) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  j ingest_jobs;
  v_state text;
BEGIN
  j := mam_worker_lock_job(p_job);
  v_state := mam_worker_claim_state(j, p_worker, p_attempt);
  IF v_state <> 'mine' THEN
    RETURN v_state;
  END IF;
  PERFORM mam_worker_complete(j, p_result);
  RETURN 'stored';
END $$;

-- A failed run: back to pending after now() + backoff * 2^retry_count (capped
-- at one hour) while retries remain and the error is worth retrying, else
-- failed for good (and the asset with it). Returns 'retry', 'failed' or the
-- claim state when the claim is no longer ours.
CREATE OR REPLACE FUNCTION mam_worker_fail(p_job uuid, p_worker text, p_attempt int,
  p_error text, p_retryable boolean, p_backoff interval, p_result jsonb) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  j ingest_jobs;
  v_state text;
BEGIN
  j := mam_worker_lock_job(p_job);
  v_state := mam_worker_claim_state(j, p_worker, p_attempt);
  IF v_state <> 'mine' THEN
    RETURN v_state;
  END IF;
  IF p_retryable AND coalesce(j.retry_count, 0) < coalesce(j.max_retries, 0) THEN
    UPDATE ingest_jobs
       SET status = 'pending', retry_count = coalesce(retry_count, 0) + 1,
           run_after = now() + least(p_backoff * power(2, coalesce(retry_count, 0)),
             interval '1 hour'),
           heartbeat_at = NULL, progress = 0, error_message = p_error, result = p_result
     WHERE id = j.id;
    RETURN 'retry';
  END IF;
  UPDATE ingest_jobs
     SET status = 'failed', completed_at = now(), heartbeat_at = NULL, error_message = p_error,
         result = p_result
   WHERE id = j.id;
  PERFORM mam_worker_settle_asset(j.asset_id);
  RETURN 'failed';
END $$;

-- Jobs whose worker stopped sending heartbeats for p_stale go back to pending
-- (counted as a retry: a file that kills its worker must not loop forever),
-- or fail for good when no retry is left. Returns how many were reclaimed.
CREATE OR REPLACE FUNCTION mam_worker_reclaim(p_stale interval) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  r record;
  j ingest_jobs;
  n integer := 0;
  v_msg text;
BEGIN
  FOR r IN SELECT id FROM ingest_jobs
      WHERE status = 'processing'
        AND coalesce(heartbeat_at, started_at, created_at) < clock_timestamp() - p_stale
  LOOP
    j := mam_worker_lock_job(r.id);
    -- Re-check under the lock: the worker may have finished meanwhile.
    CONTINUE WHEN j.status IS DISTINCT FROM 'processing'
      OR coalesce(j.heartbeat_at, j.started_at, j.created_at)
         >= clock_timestamp() - p_stale;
    v_msg := format('worker %s stopped sending heartbeats', coalesce(j.claimed_by, '?'));
    IF coalesce(j.retry_count, 0) < coalesce(j.max_retries, 0) THEN
      UPDATE ingest_jobs
         SET status = 'pending', retry_count = coalesce(retry_count, 0) + 1,
             run_after = NULL, heartbeat_at = NULL, progress = 0,
             error_message = v_msg
       WHERE id = j.id;
    ELSE
      UPDATE ingest_jobs
         SET status = 'failed', completed_at = now(), heartbeat_at = NULL,
             error_message = v_msg
       WHERE id = j.id;
      PERFORM mam_worker_settle_asset(j.asset_id);
    END IF;
    n := n + 1;
  END LOOP;
  IF n > 0 THEN
    PERFORM pg_notify('mam_ingest_jobs', 'reclaimed');
  END IF;
  RETURN n;
END $$;
