/*
 * jobsql: every statement the worker sends, in one place. The rules behind
 * them (claim ownership, retries with backoff, stale claims, the asset's
 * status) live in sql/003_worker.sql; this module only binds parameters and
 * sends through db.c, so the SQL text can be read next to the schema.
 */
#ifndef MAM_JOBSQL_H
#define MAM_JOBSQL_H

#include <stdbool.h>
#include <stdint.h>

#include "db.h"

#define JOBSQL_CHANNEL "mam_ingest_jobs"

/* Columns of the claim's result rows. */
enum {
	CLAIM_ID = 0,
	CLAIM_TYPE,
	CLAIM_INPUT,	/* ingest_jobs.input_path, may be NULL */
	CLAIM_ATTEMPT,	/* attempts after this claim: the claim's number */
	CLAIM_ASSET_ID, /* may be NULL */
	CLAIM_TENANT_CODE,
	CLAIM_YYYYMM,	     /* "YYYY/MM" of the asset's creation (UTC) */
	CLAIM_ORIGINAL_PATH, /* the asset's primary original location, may be NULL */
	CLAIM_PATH_HEX,	     /* the original's exact path bytes in hex when they are not
				UTF-8 (the ingest ledger's), else NULL */
	CLAIM_SOURCE_HEX,    /* while its move is pending (the file is still in the drop
				folder), the exact bytes of that path in hex, else NULL */
	CLAIM_NCOLS
};

/* Identity of one claim: a statement about a job acts only while it holds. */
struct jobref {
	const char *id;
	const char *worker;
	int attempt;
};

/* The claim statement itself (for docs and the EXPLAIN test). */
const char *jobsql_claim_text(void);

int jobsql_listen(struct db *db, db_result_cb cb, void *arg) __attribute__((warn_unused_result));
int jobsql_claim(struct db *db, const char *worker, int n, db_result_cb cb, void *arg)
	__attribute__((warn_unused_result));
/* ids: the running jobs as an array literal, "{id,id,...}". Only those stay
 * fresh: a job this worker gave up on (its outcome refused) goes stale. */
int jobsql_heartbeat(struct db *db, const char *worker, const char *ids, db_result_cb cb, void *arg)
	__attribute__((warn_unused_result));
int jobsql_reclaim(struct db *db, int stale_ms, db_result_cb cb, void *arg)
	__attribute__((warn_unused_result));
int jobsql_progress(struct db *db, const struct jobref *j, int pct, db_result_cb cb, void *arg)
	__attribute__((warn_unused_result));

/*
 * Outcomes. Each returns one row, one column: "stored", "retry", "failed",
 * "done" (this claim already recorded it) or "lost" (claim taken over).
 */
int jobsql_store_metadata(struct db *db, const struct jobref *j, const char *probe_json,
			  const char *mediainfo_json, db_result_cb cb, void *arg)
	__attribute__((warn_unused_result));
struct jobsql_derivative {
	const char *kind;	/* "thumbnail" | "proxy" */
	const char *asset_type; /* "image" | "video" | "audio" */
	const char *path;
	const char *filename;
	const char *url;
	const char *content_type;
	int64_t size;
	const char *sha256;
	const char *media_kind; /* what the input was */
};
int jobsql_store_derivative(struct db *db, const struct jobref *j,
			    const struct jobsql_derivative *d, db_result_cb cb, void *arg)
	__attribute__((warn_unused_result));
int jobsql_store_nothing(struct db *db, const struct jobref *j, const char *media_kind,
			 const char *reason, db_result_cb cb, void *arg)
	__attribute__((warn_unused_result));
int jobsql_fail(struct db *db, const struct jobref *j, const char *error, bool retryable,
		int backoff_ms, db_result_cb cb, void *arg) __attribute__((warn_unused_result));
/* Graceful stop: the job goes back to pending, not counted as a retry. */
int jobsql_release(struct db *db, const struct jobref *j, db_result_cb cb, void *arg)
	__attribute__((warn_unused_result));

#endif
