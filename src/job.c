/*
 * job: run one claimed ingest job (see job.h for the state machine).
 *
 * Every tool is a child process (jobrun.c), never a library call, so a
 * corrupt file can at worst crash ffprobe or ffmpeg, never the worker: their
 * exit status and stderr become the job's error message. Making thumbnails
 * and proxies is derive.c's part; this file probes, records outcomes and
 * keeps the state machine. Errors that depend only on the input (missing
 * file, ffprobe cannot read it, no usable stream) fail at once; others
 * (timeouts, a tool killed, a write that failed) are retried with backoff
 * until the job's max_retries.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "derive.h"
#include "job.h"
#include "log.h"
#include "util.h"

static const char *const state_names[] = {
	[JOB_PROBING] = "probing", [JOB_MEDIAINFO] = "mediainfo", [JOB_TRANSCODING] = "transcoding",
	[JOB_HASHING] = "hashing", [JOB_STORING] = "storing",	  [JOB_RELEASING] = "releasing",
	[JOB_DONE] = "done",
};

static void send_outcome(struct job *job);

const char *job_state_name(enum job_state st)
{
	return state_names[st];
}

void job_set_state(struct job *job, enum job_state st)
{
	log_debug("worker", "job %s (%s): %s -> %s", job->id, job->type, state_names[job->state],
		  state_names[st]);
	job->state = st;
}

struct jobref job_ref(const struct job *job)
{
	struct jobref r = {job->id, job->env->worker_id, job->attempt};

	return r;
}

static char *dup_or_null(PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? NULL : strdup(PQgetvalue(res, row, col));
}

/* A path the database only holds as hex bytes (not valid UTF-8). */
static char *unhex(const char *hex)
{
	size_t n = strlen(hex) / 2, i;
	char *out = malloc(n + 1);

	if (!out)
		return NULL;
	for (i = 0; i < n; i++) {
		unsigned v;

		if (sscanf(hex + 2 * i, "%2x", &v) != 1 || v == 0) {
			free(out);
			return NULL;
		}
		out[i] = (char)v;
	}
	out[n] = '\0';
	return out;
}

struct job *job_new(const struct job_env *env, PGresult *res, int row, job_done_cb cb, void *arg)
{
	struct job *job = calloc(1, sizeof *job);
	const char *code;
	char *p;

	if (!job)
		return NULL;
	job->env = env;
	job->done_cb = cb;
	job->done_arg = arg;
	job->state = JOB_PROBING;
	snprintf(job->id, sizeof job->id, "%s", PQgetvalue(res, row, CLAIM_ID));
	snprintf(job->type, sizeof job->type, "%s", PQgetvalue(res, row, CLAIM_TYPE));
	job->attempt = atoi(PQgetvalue(res, row, CLAIM_ATTEMPT));
	snprintf(job->asset_id, sizeof job->asset_id, "%s", PQgetvalue(res, row, CLAIM_ASSET_ID));
	snprintf(job->yyyymm, sizeof job->yyyymm, "%s", PQgetvalue(res, row, CLAIM_YYYYMM));
	job->input_path = dup_or_null(res, row, CLAIM_INPUT);
	job->original_path = dup_or_null(res, row, CLAIM_ORIGINAL_PATH);
	if (!PQgetisnull(res, row, CLAIM_PATH_HEX))
		job->exact_path = unhex(PQgetvalue(res, row, CLAIM_PATH_HEX));
	if (!PQgetisnull(res, row, CLAIM_SOURCE_HEX))
		job->exact_source = unhex(PQgetvalue(res, row, CLAIM_SOURCE_HEX));
	code = PQgetisnull(res, row, CLAIM_TENANT_CODE) ? "unknown"
							: PQgetvalue(res, row, CLAIM_TENANT_CODE);
	job->tenant = strdup(code);
	if (!job->tenant) {
		job_free(job);
		return NULL;
	}
	/* A tenant code becomes one path component: no separators, no dot files. */
	for (p = job->tenant; *p; p++)
		if (*p == '/' || (p == job->tenant && *p == '.'))
			*p = '_';
	return job;
}

void job_free(struct job *job)
{
	if (!job)
		return;
	jobrun_reset(&job->run);
	free(job->input);
	free(job->input_path);
	free(job->original_path);
	free(job->exact_path);
	free(job->exact_source);
	free(job->tenant);
	free(job->probe_json);
	free(job->mediainfo_json);
	free(job->out_dir);
	free(job->out_path);
	free(job->out_tmp);
	free(job);
}

static void finish(struct job *job)
{
	job_set_state(job, JOB_DONE);
	job->done_cb(job, job->done_arg);
}

/* Record the outcome chosen by the caller (outcome and its fields are set). */
void job_store(struct job *job, enum job_outcome outcome)
{
	job->outcome = outcome;
	job_set_state(job, outcome == OUT_RELEASE ? JOB_RELEASING : JOB_STORING);
	send_outcome(job);
}

void job_fail(struct job *job, bool retryable, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(job->error, sizeof job->error, fmt, ap);
	va_end(ap);
	job->retryable = retryable;
	job_store(job, OUT_FAIL);
}

static void on_outcome(PGresult *res, const char *error, void *arg)
{
	struct job *job = arg;
	const char *what;

	job->db_pending--;
	if (!res) {
		/* Connection lost: the outcome may or may not have committed. The SQL
		 * answers "done" to a resend of a committed one, so resend. */
		job->waiting_db = true;
		if (db_state(job->env->db) == DB_READY)
			job_db_ready(job);
		return;
	}
	if (error) {
		if (job->outcome != OUT_FAIL && job->outcome != OUT_RELEASE) {
			/* The outcome itself was refused (a value the schema cannot
			 * hold...): record that as the job's failure instead. */
			log_warnx("worker", "job %s: could not record its result: %s", job->id,
				  error);
			job_fail(job, false, "could not record the result: %s", error);
			return;
		}
		log_error("worker", "job %s: could not record its failure: %s", job->id, error);
		finish(job);
		return;
	}
	what = PQntuples(res) > 0 ? PQgetvalue(res, 0, 0) : "";
	if (job->outcome == OUT_RELEASE)
		log_info("worker", "job %s (%s) returned to the queue", job->id, job->type);
	else if (strcmp(what, "lost") == 0)
		log_warnx("worker",
			  "job %s (%s): claim taken over by another worker; result dropped",
			  job->id, job->type);
	else if (job->outcome == OUT_FAIL)
		log_warnx("worker", "job %s (%s) %s: %s", job->id, job->type,
			  strcmp(what, "retry") == 0 ? "will be retried" : "failed", job->error);
	else if (strcmp(what, "failed") == 0)
		log_warnx("worker", "job %s (%s) failed: no stream found", job->id, job->type);
	else
		log_info("worker", "job %s (%s) completed%s%s", job->id, job->type,
			 job->skip_reason ? ": " : "", job->skip_reason ? job->skip_reason : "");
	finish(job);
}

static void send_outcome(struct job *job)
{
	struct jobref r = job_ref(job);
	struct db *db = job->env->db;
	struct jobsql_derivative d;
	char url[8192];
	int rc = 0;

	job->waiting_db = false;
	switch (job->outcome) {
	case OUT_METADATA:
		rc = jobsql_store_metadata(db, &r, job->probe_json, job->mediainfo_json, on_outcome,
					   job);
		break;
	case OUT_DERIVATIVE:
		if (media_file_url(job->out_path, url, sizeof url) != 0)
			url[0] = '\0';
		d.kind = job->type;
		d.asset_type = job->deriv_type;
		d.path = job->out_path;
		d.filename = job->out_name;
		d.url = url[0] ? url : NULL;
		d.content_type = job->content_type;
		d.size = job->out_size;
		d.sha256 = job->sha256;
		d.media_kind = media_kind_name(job->probe.kind);
		rc = jobsql_store_derivative(db, &r, &d, on_outcome, job);
		break;
	case OUT_NOTHING:
		rc = jobsql_store_nothing(db, &r, media_kind_name(job->probe.kind),
					  job->skip_reason, on_outcome, job);
		break;
	case OUT_FAIL:
		rc = jobsql_fail(db, &r, job->error, job->retryable, job->env->retry_backoff_ms,
				 on_outcome, job);
		break;
	case OUT_RELEASE: rc = jobsql_release(db, &r, on_outcome, job); break;
	case OUT_NONE: rc = -EINVAL; break;
	}
	if (rc == 0)
		job->db_pending++;
	else
		job->waiting_db = true; /* -ENOTCONN: job_db_ready() resends */
}

void job_db_ready(struct job *job)
{
	if (job->waiting_db && job->db_pending == 0)
		send_outcome(job);
}

static uint64_t remaining_ms(struct job *job)
{
	uint64_t now = uv_now(job->env->loop);

	return job->deadline > now ? job->deadline - now : 1;
}

void job_run(struct job *job, char *const argv[], jobrun_line_cb line_cb, jobrun_done_cb cb)
{
	job->run_active = true;
	jobrun_start(&job->run, job->env->loop, argv, remaining_ms(job), line_cb, cb, job);
}

/* A finished tool that did not succeed: stop, timeout, or the tool's reason. */
bool job_run_failed(struct job *job, const char *tool, bool input_error_is_final)
{
	char why[1024];

	job->run_active = false;
	if (jobrun_ok(&job->run))
		return false;
	if (job->stop) {
		job_store(job, OUT_RELEASE);
		return true;
	}
	jobrun_describe(&job->run, tool, why, sizeof why);
	if (job->run.timed_out)
		job_fail(job, true, "%s after %d s", why, job->env->cfg->job_timeout_s);
	else
		job_fail(job, !(input_error_is_final && job->run.exited && !job->run.term_signal),
			 "%s", why);
	return true;
}

/* ---- metadata ---- */

static void on_mediainfo(struct jobrun *r, void *arg)
{
	struct job *job = arg;

	job->run_active = false;
	if (job->stop) {
		job_store(job, OUT_RELEASE);
		return;
	}
	if (jobrun_ok(r) && r->out && r->outlen > 0) {
		job->mediainfo_json = r->out;
		r->out = NULL;
	} else {
		char why[512];

		/* Optional data: the metadata job still succeeds without it. */
		jobrun_describe(r, "mediainfo", why, sizeof why);
		log_warnx("worker", "job %s: %s", job->id, why);
	}
	jobrun_reset(r);
	job_store(job, OUT_METADATA);
}

static void on_probe_json(struct jobrun *r, void *arg)
{
	struct job *job = arg;
	char *argv[] = {"mediainfo", "--Output=JSON", job->input + 5, NULL};

	if (job_run_failed(job, "ffprobe", true))
		return;
	job->probe_json = r->out ? r->out : strdup("{}");
	r->out = NULL;
	jobrun_reset(r);
	if (job->env->have_mediainfo) {
		job_set_state(job, JOB_MEDIAINFO);
		job_run(job, argv, NULL, on_mediainfo);
		return;
	}
	job_store(job, OUT_METADATA);
}

static void on_probe_flat(struct jobrun *r, void *arg)
{
	struct job *job = arg;

	if (job_run_failed(job, "ffprobe", true))
		return;
	if (!r->out || media_probe_parse(r->out, &job->probe) != 0) {
		jobrun_reset(r);
		job_fail(job, false, "ffprobe: no usable output for \"%s\"", job->input);
		return;
	}
	jobrun_reset(r);
	if (job->probe.kind == MEDIA_NONE) {
		job_fail(job, false, "ffprobe: no audio, video or image stream found");
		return;
	}
	if (strcmp(job->type, "thumbnail") == 0)
		derive_thumbnail(job);
	else
		derive_proxy(job);
}

/* ---- start, stop ---- */

/*
 * The input: while the ledger says the move is pending, the file in the drop
 * folder, first (a move that keeps failing may fail because another file is
 * at the destination); then the exact bytes of a non-UTF-8 name at the
 * destination (input_path then only holds a display form), else input_path,
 * else the asset's original location (it may have moved since the job was
 * queued, or point at the drop folder: sql/008).
 */
static int resolve_input(struct job *job)
{
	const char *cand[] = {job->exact_source, job->exact_path, job->input_path,
			      job->original_path};
	struct stat st;
	int err = ENOENT;
	size_t i;

	for (i = 0; i < sizeof cand / sizeof cand[0]; i++) {
		if (!cand[i] || !*cand[i])
			continue;
		if (stat(cand[i], &st) != 0) {
			err = errno;
			continue;
		}
		if (!S_ISREG(st.st_mode)) {
			err = EINVAL;
			continue;
		}
		/* "file:" keeps ffmpeg from reading a protocol or an option into it. */
		job->input = malloc(strlen(cand[i]) + 6);
		if (!job->input)
			return -ENOMEM;
		sprintf(job->input, "file:%s", cand[i]);
		return 0;
	}
	return -err;
}

void job_start(struct job *job)
{
	char esc[LOG_ESC_MAX];
	const char *shown = job->input_path ? job->input_path : job->original_path;
	int rc;

	job->deadline = uv_now(job->env->loop) + (uint64_t)job->env->cfg->job_timeout_s * 1000;
	rc = resolve_input(job);
	log_info("worker", "job %s (%s, attempt %d) started on \"%s\"", job->id, job->type,
		 job->attempt, shown ? log_escape(shown, esc, sizeof esc) : "");
	if (rc != 0) {
		if (!shown)
			job_fail(job, false, "job has no input file");
		else if (rc == -EINVAL)
			job_fail(job, false, "input file \"%s\" is not a regular file", shown);
		else
			job_fail(job, false, "input file \"%s\" is missing: %s", shown,
				 strerror(-rc));
		return;
	}
	if (job->asset_id[0] == '\0') {
		job_fail(job, false, "job has no asset");
		return;
	}
	if (strcmp(job->type, "metadata") == 0) {
		char *argv[] = {"ffprobe",
				"-v",
				"error",
				"-print_format",
				"json",
				"-show_format",
				"-show_streams",
				"-show_program_version",
				"--",
				job->input,
				NULL};

		job_run(job, argv, NULL, on_probe_json);
	} else if (strcmp(job->type, "thumbnail") == 0 || strcmp(job->type, "proxy") == 0) {
		char *argv[] = {"ffprobe",
				"-v",
				"error",
				"-of",
				"flat",
				"-show_entries",
				"format=format_name,duration:stream=index,codec_type,width,height"
				":stream_disposition=attached_pic",
				"--",
				job->input,
				NULL};

		job_run(job, argv, NULL, on_probe_flat);
	} else {
		job_fail(job, false, "unknown job type \"%s\"", job->type);
	}
}

void job_give_back(struct job *job)
{
	job_store(job, OUT_RELEASE);
}

void job_abort(struct job *job)
{
	job->stop = true;
	if (job->run_active)
		jobrun_kill(&job->run);
}
