/*
 * job: one claimed ingest_jobs row, from the claim to its recorded outcome.
 *
 * A job's life is one state machine (enum job_state, changed only through
 * set_state() in job.c, which logs it):
 *
 *   PROBING -> [MEDIAINFO] -> STORING -> DONE                      (metadata)
 *   PROBING -> TRANSCODING -> HASHING -> STORING -> DONE     (thumbnail/proxy)
 *   PROBING -> STORING (does not apply / failed)            -> DONE
 *   any running state -> (stop requested) RELEASING -> DONE
 *
 * STORING sends exactly one outcome statement (stored, failed or retried);
 * when the database is away it waits and resends it on job_db_ready(), which
 * is safe because the SQL recognises a claim that already recorded its
 * outcome. The worker owns the list of jobs and learns that one ended through
 * the single done callback.
 */
#ifndef MAM_JOB_H
#define MAM_JOB_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "db.h"
#include "jobrun.h"
#include "jobsql.h"
#include "log.h"
#include "media.h"

/* What every job shares with its worker; owned by the worker. */
struct job_env {
	uv_loop_t *loop;
	struct db *db;
	const struct config *cfg;
	const char *worker_id; /* ingest_jobs.claimed_by of this process */
	int retry_backoff_ms;  /* first retry delay; doubles per retry */
	bool have_mediainfo;   /* `mediainfo` found in PATH at start */
};

enum job_state {
	JOB_PROBING,
	JOB_MEDIAINFO,
	JOB_TRANSCODING,
	JOB_HASHING,
	JOB_STORING,
	JOB_RELEASING,
	JOB_DONE,
};

enum job_outcome { OUT_NONE, OUT_METADATA, OUT_DERIVATIVE, OUT_NOTHING, OUT_FAIL, OUT_RELEASE };

struct job;
typedef void (*job_done_cb)(struct job *job, void *arg);

struct job {
	struct job *next, *prev; /* the worker's list of running jobs */
	const struct job_env *env;
	enum job_state state;
	char id[40];
	char type[16]; /* metadata | thumbnail | proxy */
	int attempt;
	char *input;	     /* the file the tools read */
	char *input_path;    /* ingest_jobs.input_path (may be NULL) */
	char *original_path; /* the asset's original location (may be NULL) */
	char *exact_path;    /* exact bytes of a non-UTF-8 original path (may be NULL) */
	char *exact_source;  /* its drop-folder path (exact bytes) while its move is pending */
	char asset_id[40];   /* "" when the job has no asset */
	char *tenant;	     /* tenant code, for derivative paths */
	char yyyymm[8];	     /* "YYYY/MM" */
	uint64_t deadline;   /* uv_now() ms after which the job timed out */
	uint64_t claimed_ms; /* uv_now() when the worker claimed it (for metrics) */
	struct jobrun run;
	bool run_active; /* run is between jobrun_start and done */
	struct media_probe probe;
	char *probe_json;     /* metadata: ffprobe's JSON */
	char *mediainfo_json; /* metadata: mediainfo's JSON, NULL without it */
	/* derivatives */
	char *out_dir, *out_path, *out_tmp;
	const char *out_name, *content_type, *deriv_type;
	uv_work_t work;	    /* hashing + rename in the threadpool */
	int work_err;	    /* -errno from the threadpool work */
	char work_what[64]; /* which step failed there */
	int64_t out_size;
	char sha256[65];
	/* progress */
	int progress;	      /* last value sent */
	uint64_t progress_at; /* uv_now() of the last send */
	bool progress_inflight;
	/* outcome */
	enum job_outcome outcome;
	char error[2048];
	bool retryable;
	const char *skip_reason; /* OUT_NOTHING */
	bool waiting_db;	 /* outcome not sent yet: resend on DB_READY */
	bool stop;		 /* release at the next step instead of going on */
	unsigned db_pending;	 /* statements in flight carrying this job */
	job_done_cb done_cb;
	void *done_arg;
};

/*
 * A job from one row of the claim's result (columns CLAIM_*). Returns NULL
 * when out of memory (the claim then stays until its heartbeat goes stale).
 */
struct job *job_new(const struct job_env *env, PGresult *res, int row, job_done_cb cb, void *arg);
void job_start(struct job *job);
/* Stop soon: kill a running tool and give the job back to pending. */
void job_abort(struct job *job);
/* Instead of job_start (claimed while stopping): straight back to pending. */
void job_give_back(struct job *job);
/* The database is back: resend a waiting outcome. */
void job_db_ready(struct job *job);
/* Only after done_cb. */
void job_free(struct job *job);
const char *job_state_name(enum job_state st);

/* For job.c and derive.c only: the steps a job is made of. */
void job_set_state(struct job *job, enum job_state st);
struct jobref job_ref(const struct job *job);
/* Record an outcome (the job's outcome fields are set). */
void job_store(struct job *job, enum job_outcome outcome);
void job_fail(struct job *job, bool retryable, const char *fmt, ...) MAM_PRINTF(3, 4);
/* Run a tool within the job's deadline. */
void job_run(struct job *job, char *const argv[], jobrun_line_cb line_cb, jobrun_done_cb cb);
/* After a tool ended: true when it failed and the job was failed or released. */
bool job_run_failed(struct job *job, const char *tool, bool input_error_is_final);

#endif
