/*
 * jobsql: the worker's SQL (see jobsql.h). Parameters are text, results
 * text; every statement is one implicit transaction (db.c puts a sync point
 * after each), which is what makes each outcome atomic: the metadata row, the
 * asset's duration, the job's completion and the asset's status commit
 * together or not at all.
 */
#include <stdio.h>

#include "jobsql.h"

/*
 * The claim. The inner SELECT is exactly what idx_jobs_claim serves:
 * WHERE status = 'pending' ORDER BY priority DESC, created_at, so PostgreSQL
 * walks the partial index from its start and stops after LIMIT rows it could
 * lock; SKIP LOCKED passes over rows another worker is claiming right now
 * instead of waiting for it. run_after is a filter on those few rows.
 */
static const char claim_sql[] =
	"UPDATE ingest_jobs j"
	" SET status = 'processing', started_at = now(), completed_at = NULL, progress = 0,"
	" claimed_by = $1, heartbeat_at = now(), attempts = j.attempts + 1"
	" FROM (SELECT id FROM ingest_jobs"
	" WHERE status = 'pending' AND (run_after IS NULL OR run_after <= now())"
	" ORDER BY priority DESC, created_at"
	" LIMIT $2::int FOR UPDATE SKIP LOCKED) c"
	" WHERE j.id = c.id"
	" RETURNING j.id, j.job_type, j.input_path, j.attempts, j.asset_id,"
	" (SELECT t.code FROM tenants t WHERE t.id = j.tenant_id),"
	" coalesce((SELECT to_char(a.created_at AT TIME ZONE 'UTC', 'YYYY/MM') FROM assets a"
	" WHERE a.id = j.asset_id LIMIT 1), to_char(now() AT TIME ZONE 'UTC', 'YYYY/MM')),"
	" (SELECT l.path FROM asset_storage_locations l WHERE l.asset_id = j.asset_id"
	" AND l.purpose = 'original' ORDER BY l.is_primary DESC, l.created_at LIMIT 1),"
	" (SELECT encode(g.final_path_bytes, 'hex') FROM ingest_ledger g"
	" WHERE g.asset_id = j.asset_id AND g.final_path_bytes IS NOT NULL LIMIT 1),"
	" (SELECT encode(coalesce(g.source_path_bytes, convert_to(g.source_path, 'UTF8')), 'hex')"
	" FROM ingest_ledger g WHERE g.asset_id = j.asset_id AND g.move_state = 'pending'"
	" AND g.source_path IS NOT NULL LIMIT 1)";

const char *jobsql_claim_text(void)
{
	return claim_sql;
}

int jobsql_listen(struct db *db, db_result_cb cb, void *arg)
{
	return db_exec(db, "LISTEN " JOBSQL_CHANNEL, 0, NULL, cb, arg);
}

int jobsql_claim(struct db *db, const char *worker, int n, db_result_cb cb, void *arg)
{
	char nbuf[16];
	const char *p[2] = {worker, nbuf};

	snprintf(nbuf, sizeof nbuf, "%d", n);
	return db_exec(db, claim_sql, 2, p, cb, arg);
}

int jobsql_heartbeat(struct db *db, const char *worker, const char *ids, db_result_cb cb, void *arg)
{
	const char *p[2] = {worker, ids};

	return db_exec(db,
		       "UPDATE ingest_jobs SET heartbeat_at = now()"
		       " WHERE id = ANY($2::uuid[]) AND status = 'processing' AND claimed_by = $1",
		       2, p, cb, arg);
}

int jobsql_reclaim(struct db *db, int stale_ms, db_result_cb cb, void *arg)
{
	char ms[16];
	const char *p[1] = {ms};

	snprintf(ms, sizeof ms, "%d", stale_ms);
	return db_exec(db, "SELECT mam_worker_reclaim($1::int * interval '1 millisecond')", 1, p,
		       cb, arg);
}

static void attempt_str(const struct jobref *j, char *buf, size_t sz)
{
	snprintf(buf, sz, "%d", j->attempt);
}

int jobsql_progress(struct db *db, const struct jobref *j, int pct, db_result_cb cb, void *arg)
{
	char att[16], pb[16];
	const char *p[4] = {j->id, j->worker, att, pb};

	attempt_str(j, att, sizeof att);
	snprintf(pb, sizeof pb, "%d", pct);
	return db_exec(db,
		       "UPDATE ingest_jobs SET progress = $4::int, heartbeat_at = now()"
		       " WHERE id = $1 AND claimed_by = $2 AND attempts = $3::int"
		       " AND status = 'processing'",
		       4, p, cb, arg);
}

int jobsql_store_metadata(struct db *db, const struct jobref *j, const char *probe_json,
			  const char *mediainfo_json, db_result_cb cb, void *arg)
{
	char att[16];
	const char *p[5] = {j->id, j->worker, att, probe_json, mediainfo_json};

	attempt_str(j, att, sizeof att);
	return db_exec(
		db,
		"SELECT mam_worker_store_metadata($1, $2, $3::int, $4::jsonb, mam_worker_jsonb($5),"
		" jsonb_build_object('worker', $2::text))",
		5, p, cb, arg);
}

int jobsql_store_derivative(struct db *db, const struct jobref *j,
			    const struct jobsql_derivative *d, db_result_cb cb, void *arg)
{
	char att[16], size[24];
	const char *p[12] = {j->id, d->kind,   d->asset_type,	d->path,       d->filename, d->url,
			     size,  d->sha256, d->content_type, d->media_kind, j->worker,   att};

	attempt_str(j, att, sizeof att);
	snprintf(size, sizeof size, "%lld", (long long)d->size);
	return db_exec(db,
		       "SELECT mam_worker_store_derivative($1, $11, $12::int, $2, $3, $4, $5, $6,"
		       " $7::bigint, $8, $9, jsonb_build_object('worker', $11::text,"
		       " 'media_kind', $10::text))",
		       12, p, cb, arg);
}

int jobsql_store_nothing(struct db *db, const struct jobref *j, const char *media_kind,
			 const char *reason, db_result_cb cb, void *arg)
{
	char att[16];
	const char *p[5] = {j->id, j->worker, att, media_kind, reason};

	attempt_str(j, att, sizeof att);
	return db_exec(db,
		       "SELECT mam_worker_store_nothing($1, $2, $3::int, jsonb_build_object("
		       "'applies', false, 'media_kind', $4::text, 'reason', $5::text,"
		       " 'worker', $2::text))",
		       5, p, cb, arg);
}

int jobsql_fail(struct db *db, const struct jobref *j, const char *error, bool retryable,
		int backoff_ms, db_result_cb cb, void *arg)
{
	char att[16], ms[16];
	const char *p[6] = {j->id, j->worker, att, error, retryable ? "true" : "false", ms};

	attempt_str(j, att, sizeof att);
	snprintf(ms, sizeof ms, "%d", backoff_ms);
	return db_exec(db,
		       "SELECT mam_worker_fail($1, $2, $3::int, $4, $5::boolean,"
		       " $6::int * interval '1 millisecond', jsonb_build_object('error', $4::text,"
		       " 'retryable', $5::boolean, 'worker', $2::text))",
		       6, p, cb, arg);
}

int jobsql_release(struct db *db, const struct jobref *j, db_result_cb cb, void *arg)
{
	char att[16];
	const char *p[3] = {j->id, j->worker, att};

	attempt_str(j, att, sizeof att);
	return db_exec(db,
		       "UPDATE ingest_jobs SET status = 'pending', claimed_by = NULL,"
		       " heartbeat_at = NULL, started_at = NULL, progress = 0"
		       " WHERE id = $1 AND claimed_by = $2 AND attempts = $3::int"
		       " AND status = 'processing'",
		       3, p, cb, arg);
}
