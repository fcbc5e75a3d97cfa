-- 001_core_schema: the seed's core schema (shared/seed/core-schema.md), exactly:
-- the same five tables, column names, types, lengths, defaults, nullability,
-- primary keys and index names. Nothing here may deviate from the seed; what
-- mam-ingest needs beyond it (ledger, worker columns) lives in later
-- migrations. `mam-ingest migrate` runs this file inside one transaction, so
-- it contains no BEGIN/COMMIT of its own.

CREATE TABLE tenants (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    code VARCHAR(50) NOT NULL UNIQUE,      -- Short identifier (e.g., 'acme')
    name VARCHAR(255) NOT NULL,            -- Display name
    settings JSONB DEFAULT '{}',           -- Tenant-specific settings
    storage_quota_bytes BIGINT,            -- Storage limit
    is_active BOOLEAN DEFAULT TRUE,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT NOW()
);

CREATE INDEX idx_tenants_code ON tenants (code);
CREATE INDEX idx_tenants_is_active ON tenants (is_active);

-- Main asset registry, range-partitioned by partition_date: one partition per
-- month (assets_YYYY_MM, made by mam_create_assets_partitions below) and a
-- DEFAULT partition for dates no monthly partition covers yet.
CREATE TABLE assets (
    id UUID DEFAULT gen_random_uuid(),
    tenant_id UUID NOT NULL,

    -- Basic info
    title VARCHAR(500) NOT NULL,
    description TEXT,
    asset_type VARCHAR(50) NOT NULL,       -- video, audio, image, document
    code VARCHAR(100),                     -- User-defined code
    slug VARCHAR(255),                     -- URL-friendly identifier

    -- Timing
    duration_ms INTEGER,
    recorded_at TIMESTAMP WITH TIME ZONE,

    -- Classification
    content_rating VARCHAR(20),
    visibility VARCHAR(20) DEFAULT 'internal',

    -- Hierarchy
    parent_id UUID,
    derivative_type VARCHAR(50),           -- proxy, thumbnail, etc.

    -- Status
    status VARCHAR(50) DEFAULT 'pending',
    publish_status VARCHAR(50) DEFAULT 'draft',

    -- Storage
    primary_storage_path TEXT,
    file_size_bytes BIGINT,
    checksum_sha256 VARCHAR(64),

    -- Metadata
    external_ids JSONB DEFAULT '{}',
    extra JSONB DEFAULT '{}',

    -- Audit
    created_by UUID,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    deleted_at TIMESTAMP WITH TIME ZONE,

    -- Partitioning
    partition_date DATE DEFAULT CURRENT_DATE,

    PRIMARY KEY (id, partition_date)
) PARTITION BY RANGE (partition_date);

CREATE TABLE assets_default PARTITION OF assets DEFAULT;

-- Indexes on the partitioned parent cascade to every partition, present and future.
CREATE INDEX idx_assets_tenant_id ON assets (tenant_id);
CREATE INDEX idx_assets_status ON assets (status);
CREATE INDEX idx_assets_asset_type ON assets (asset_type);
CREATE INDEX idx_assets_created_at ON assets (created_at);

CREATE TABLE asset_storage_locations (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    asset_id UUID NOT NULL,
    tenant_id UUID NOT NULL,

    -- Storage details
    storage_type VARCHAR(50) NOT NULL,     -- s3, azure, gcs, lto
    storage_tier VARCHAR(50) DEFAULT 'hot', -- hot, warm, cold, archive
    bucket VARCHAR(255),
    path TEXT NOT NULL,
    filename VARCHAR(500),
    url TEXT,

    -- File info
    file_size_bytes BIGINT,
    checksum_sha256 VARCHAR(64),
    content_type VARCHAR(100),

    -- Purpose
    purpose VARCHAR(50) DEFAULT 'original', -- original, proxy, thumbnail
    is_primary BOOLEAN DEFAULT FALSE,
    is_accessible BOOLEAN DEFAULT TRUE,

    -- Status
    status VARCHAR(50) DEFAULT 'available',

    -- Timestamps
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    verified_at TIMESTAMP WITH TIME ZONE,
    archived_at TIMESTAMP WITH TIME ZONE
);

CREATE INDEX idx_storage_asset_id ON asset_storage_locations (asset_id);
CREATE INDEX idx_storage_tenant_id ON asset_storage_locations (tenant_id);
CREATE INDEX idx_storage_purpose ON asset_storage_locations (purpose);

CREATE TABLE asset_technical_metadata (
    asset_id UUID PRIMARY KEY,
    tenant_id UUID NOT NULL,

    -- Video
    width INTEGER,
    height INTEGER,
    frame_rate NUMERIC(10,4),
    frame_rate_num INTEGER,
    frame_rate_den INTEGER,
    video_codec VARCHAR(50),
    video_codec_profile VARCHAR(100),
    video_bitrate_bps BIGINT,

    -- Audio
    audio_codec VARCHAR(50),
    audio_channels INTEGER,
    audio_channel_layout VARCHAR(100),
    audio_sample_rate INTEGER,
    audio_bitrate_bps BIGINT,
    audio_bit_depth INTEGER,

    -- Container
    container_format VARCHAR(50),
    duration_ms BIGINT,

    -- Visual
    bit_depth INTEGER,
    color_space VARCHAR(50),
    aspect_ratio VARCHAR(20),
    resolution_category VARCHAR(20),       -- SD, HD, FHD, UHD, 4K, 8K

    -- Raw data
    ffprobe_raw JSONB,
    mediainfo_raw JSONB,

    -- Analysis info
    analyzed_at TIMESTAMP WITH TIME ZONE,
    analyzer_version VARCHAR(50),

    -- Timestamps
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT NOW()
);

CREATE TABLE ingest_jobs (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id UUID NOT NULL,
    asset_id UUID,

    -- Job details
    job_type VARCHAR(50) NOT NULL,         -- metadata, proxy, thumbnail
    status VARCHAR(50) DEFAULT 'pending',  -- pending, processing, completed, failed
    priority INTEGER DEFAULT 5,

    -- I/O paths
    input_path TEXT,
    output_path TEXT,

    -- Progress
    progress INTEGER DEFAULT 0,            -- 0-100

    -- Timing
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    started_at TIMESTAMP WITH TIME ZONE,
    completed_at TIMESTAMP WITH TIME ZONE,

    -- Error handling
    error_message TEXT,
    retry_count INTEGER DEFAULT 0,
    max_retries INTEGER DEFAULT 3,

    -- Results
    result JSONB
);

CREATE INDEX idx_jobs_status ON ingest_jobs (status);
CREATE INDEX idx_jobs_asset_id ON ingest_jobs (asset_id);
CREATE INDEX idx_jobs_priority ON ingest_jobs (priority DESC, created_at);

-- mam_create_assets_partitions(from_date, to_date): create the monthly
-- partition assets_YYYY_MM of every month that overlaps [from_date, to_date],
-- in the schema of assets. Returns how many it created. Idempotent, and safe
-- when several daemons call it at once: a transaction-level advisory lock
-- serialises callers, and each month is checked after the lock is held (in
-- READ COMMITTED each statement sees what the previous holder committed).
--
-- PostgreSQL refuses to create a partition while the DEFAULT partition holds
-- rows of its range. Such rows (a partition_date set far ahead or back, or a
-- month whose partition was never made) are moved: copied aside, deleted from
-- the default, and re-inserted through the parent once the partition exists,
-- all in the caller's transaction; ids and every column are kept. This needs
-- the TEMP privilege on the database, which PUBLIC has by default.
CREATE FUNCTION mam_create_assets_partitions(from_date date, to_date date)
RETURNS integer
LANGUAGE plpgsql
AS $fn$
DECLARE
    nsp text;
    month_start date;
    month_end date;
    part text;
    created integer := 0;
BEGIN
    IF from_date IS NULL OR to_date IS NULL OR to_date < from_date THEN
        RAISE EXCEPTION 'mam_create_assets_partitions: invalid range % .. %', from_date, to_date;
    END IF;
    -- 'mam-part' as a bigint: one fixed key for every caller.
    PERFORM pg_advisory_xact_lock(x'6d616d2d70617274'::bigint);
    SELECT n.nspname INTO nsp
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = 'assets'::regclass;
    month_start := date_trunc('month', from_date)::date;
    WHILE month_start <= to_date LOOP
        month_end := (month_start + interval '1 month')::date;
        part := 'assets_' || to_char(month_start, 'YYYY_MM');
        IF NOT EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                        WHERE i.inhparent = 'assets'::regclass AND c.relname = part) THEN
            IF EXISTS (SELECT 1 FROM assets_default
                        WHERE partition_date >= month_start AND partition_date < month_end) THEN
                IF to_regclass('pg_temp.mam_assets_moving') IS NOT NULL THEN
                    DROP TABLE pg_temp.mam_assets_moving;
                END IF;
                CREATE TEMP TABLE mam_assets_moving ON COMMIT DROP AS
                    SELECT * FROM assets_default
                     WHERE partition_date >= month_start AND partition_date < month_end;
                DELETE FROM assets_default
                 WHERE partition_date >= month_start AND partition_date < month_end;
                EXECUTE format('CREATE TABLE %I.%I PARTITION OF assets FOR VALUES FROM (%L) TO (%L)',
                               nsp, part, month_start, month_end);
                INSERT INTO assets SELECT * FROM pg_temp.mam_assets_moving;
                DROP TABLE pg_temp.mam_assets_moving;
            ELSE
                EXECUTE format('CREATE TABLE %I.%I PARTITION OF assets FOR VALUES FROM (%L) TO (%L)',
                               nsp, part, month_start, month_end);
            END IF;
            created := created + 1;
        END IF;
        month_start := month_end;
    END LOOP;
    RETURN created;
END
$fn$;

COMMENT ON FUNCTION mam_create_assets_partitions(date, date) IS
    'Create the monthly partitions assets_YYYY_MM overlapping the range; idempotent, concurrency-safe.';

-- The current and the next month exist from the start; the daemon calls the
-- function again at start and daily.
SELECT mam_create_assets_partitions(CURRENT_DATE, (CURRENT_DATE + interval '1 month')::date);
