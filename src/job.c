/*
 * job: run one claimed ingest job (see job.h for the state machine).
 *
 * Every tool is a child process (jobrun.c), never a library call, so a
 * corrupt file can at worst crash ffprobe or ffmpeg, never the worker: their
 * exit status and stderr become the job's error message. Derivatives are
 * written to a temporary name next to their final one, hashed (SHA-256,
 * OpenSSL EVP) and renamed in the threadpool, then recorded; a worker that
 * dies half-way leaves at most a stray temporary file and a stale claim that
 * another worker takes over. Errors that depend only on the input (missing
 * file, ffprobe cannot read it, no usable stream) fail at once; others
 * (timeouts, a tool killed, a write that failed) are retried with backoff
 * until the job's max_retries.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "job.h"
#include "log.h"
#include "util.h"

#define THUMB_BOX 480                 /* thumbnails fit in THUMB_BOX x THUMB_BOX */
#define PROGRESS_INTERVAL_MS 2000     /* at most one progress update per job per this */
#define HASH_READ_SIZE (1024 * 1024)

static const char *const state_names[] = {
	[JOB_PROBING] = "probing",   [JOB_MEDIAINFO] = "mediainfo", [JOB_TRANSCODING] = "transcoding",
	[JOB_HASHING] = "hashing",   [JOB_STORING] = "storing",     [JOB_RELEASING] = "releasing",
	[JOB_DONE] = "done",
};

static void send_outcome(struct job *job);

const char *job_state_name(enum job_state st)
{
	return state_names[st];
}

static void set_state(struct job *job, enum job_state st)
{
	log_debug("worker", "job %s (%s): %s -> %s", job->id, job->type, state_names[job->state],
		  state_names[st]);
	job->state = st;
}

static struct jobref ref_of(const struct job *job)
{
	struct jobref r = {job->id, job->env->worker_id, job->attempt};

	return r;
}

static char *dup_or_null(PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? NULL : strdup(PQgetvalue(res, row, col));
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
	set_state(job, JOB_DONE);
	job->done_cb(job, job->done_arg);
}

/* Record the outcome chosen by the caller (outcome and its fields are set). */
static void store(struct job *job, enum job_outcome outcome)
{
	job->outcome = outcome;
	set_state(job, outcome == OUT_RELEASE ? JOB_RELEASING : JOB_STORING);
	send_outcome(job);
}

static void fail(struct job *job, bool retryable, const char *fmt, ...) MAM_PRINTF(3, 4);
static void fail(struct job *job, bool retryable, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(job->error, sizeof job->error, fmt, ap);
	va_end(ap);
	job->retryable = retryable;
	store(job, OUT_FAIL);
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
			fail(job, false, "could not record the result: %s", error);
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
		log_warnx("worker", "job %s (%s): claim taken over by another worker; result dropped",
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
	struct jobref r = ref_of(job);
	struct db *db = job->env->db;
	struct jobsql_derivative d;
	char url[8192];
	int rc = 0;

	job->waiting_db = false;
	switch (job->outcome) {
	case OUT_METADATA:
		rc = jobsql_store_metadata(db, &r, job->probe_json, job->mediainfo_json,
					   on_outcome, job);
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
	case OUT_RELEASE:
		rc = jobsql_release(db, &r, on_outcome, job);
		break;
	case OUT_NONE:
		rc = -EINVAL;
		break;
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

static void run(struct job *job, char *const argv[], jobrun_line_cb line_cb, jobrun_done_cb cb)
{
	job->run_active = true;
	jobrun_start(&job->run, job->env->loop, argv, remaining_ms(job), line_cb, cb, job);
}

/* A finished tool that did not succeed: stop, timeout, or the tool's reason. */
static bool run_failed(struct job *job, const char *tool, bool input_error_is_final)
{
	char why[1024];

	job->run_active = false;
	if (jobrun_ok(&job->run))
		return false;
	if (job->stop) {
		store(job, OUT_RELEASE);
		return true;
	}
	jobrun_describe(&job->run, tool, why, sizeof why);
	if (job->run.timed_out)
		fail(job, true, "%s after %d s", why, job->env->cfg->job_timeout_s);
	else
		fail(job, !(input_error_is_final && job->run.exited && !job->run.term_signal), "%s",
		     why);
	return true;
}

/* ---- metadata ---- */

static void on_mediainfo(struct jobrun *r, void *arg)
{
	struct job *job = arg;

	job->run_active = false;
	if (job->stop) {
		store(job, OUT_RELEASE);
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
	store(job, OUT_METADATA);
}

static void on_probe_json(struct jobrun *r, void *arg)
{
	struct job *job = arg;
	char *argv[] = {"mediainfo", "--Output=JSON", job->input + 5, NULL};

	if (run_failed(job, "ffprobe", true))
		return;
	job->probe_json = r->out ? r->out : strdup("{}");
	r->out = NULL;
	jobrun_reset(r);
	if (job->env->have_mediainfo) {
		set_state(job, JOB_MEDIAINFO);
		run(job, argv, NULL, on_mediainfo);
		return;
	}
	store(job, OUT_METADATA);
}

/* ---- thumbnail and proxy ---- */

static int mkdir_p(char *path)
{
	char *p;

	for (p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(path, 0755) != 0 && errno != EEXIST) {
			*p = '/';
			return -errno;
		}
		*p = '/';
	}
	if (mkdir(path, 0755) != 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* Threadpool: hash the temporary output, make it durable, rename it into place. */
static void hash_work(uv_work_t *w)
{
	struct job *job = container_of(w, struct job, work);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0, i;
	EVP_MD_CTX *ctx = NULL;
	struct stat st;
	char *buf = NULL;
	ssize_t n;
	int fd;

	job->work_err = 0;
	fd = open(job->out_tmp, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		job->work_err = -errno;
		snprintf(job->work_what, sizeof job->work_what, "open");
		return;
	}
	buf = malloc(HASH_READ_SIZE);
	ctx = EVP_MD_CTX_new();
	if (!buf || !ctx || fstat(fd, &st) != 0 ||
	    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
		job->work_err = errno ? -errno : -ENOMEM;
		snprintf(job->work_what, sizeof job->work_what, "prepare hashing of");
		goto out;
	}
	while ((n = read(fd, buf, HASH_READ_SIZE)) > 0)
		EVP_DigestUpdate(ctx, buf, (size_t)n);
	if (n < 0 || EVP_DigestFinal_ex(ctx, md, &mdlen) != 1) {
		job->work_err = n < 0 ? -errno : -EIO;
		snprintf(job->work_what, sizeof job->work_what, "read");
		goto out;
	}
	for (i = 0; i < mdlen; i++)
		snprintf(job->sha256 + 2 * i, 3, "%02x", md[i]);
	job->out_size = (int64_t)st.st_size;
	if (st.st_size == 0) {
		job->work_err = -ENODATA;
		snprintf(job->work_what, sizeof job->work_what, "check");
		goto out;
	}
	/* Durable before it is recorded: the catalogue must not point at a hole. */
	if (fsync(fd) != 0 || rename(job->out_tmp, job->out_path) != 0) {
		job->work_err = -errno;
		snprintf(job->work_what, sizeof job->work_what, "write");
	}
out:
	EVP_MD_CTX_free(ctx);
	free(buf);
	close(fd);
}

static void hash_done(uv_work_t *w, int status)
{
	struct job *job = container_of(w, struct job, work);

	if (status != 0 && job->work_err == 0)
		job->work_err = status;
	if (job->work_err) {
		unlink(job->out_tmp);
		if (job->work_err == -ENODATA)
			fail(job, true, "%s produced an empty file", job->type);
		else
			fail(job, true, "could not %s file \"%s\": %s", job->work_what,
			     job->out_tmp, strerror(-job->work_err));
		return;
	}
	store(job, OUT_DERIVATIVE);
}

static void on_transcoded(struct jobrun *r, void *arg)
{
	struct job *job = arg;
	int rc;

	(void)r;
	if (run_failed(job, "ffmpeg", false)) {
		unlink(job->out_tmp);
		return;
	}
	set_state(job, JOB_HASHING);
	rc = uv_queue_work(job->env->loop, &job->work, hash_work, hash_done);
	if (rc != 0) {
		unlink(job->out_tmp);
		fail(job, true, "could not queue hashing: %s", uv_strerror(rc));
	}
}

static void on_progress_sent(PGresult *res, const char *error, void *arg)
{
	struct job *job = arg;

	(void)res;
	(void)error; /* progress is advisory; the heartbeat keeps the claim */
	job->progress_inflight = false;
	job->db_pending--;
	if (job->waiting_db && db_state(job->env->db) == DB_READY)
		job_db_ready(job);
}

static void on_ffmpeg_line(struct jobrun *r, const char *line, void *arg)
{
	struct job *job = arg;
	struct jobref ref = ref_of(job);
	uint64_t now = uv_now(job->env->loop);
	int64_t us;
	int pct;

	(void)r;
	if (!media_progress_line(line, &us))
		return;
	pct = media_progress_pct(us, job->probe.duration_s);
	if (pct <= job->progress || job->progress_inflight ||
	    now - job->progress_at < PROGRESS_INTERVAL_MS)
		return;
	if (jobsql_progress(job->env->db, &ref, pct, on_progress_sent, job) == 0) {
		job->progress = pct;
		job->progress_at = now;
		job->progress_inflight = true;
		job->db_pending++;
	}
}

/*
 * Temporary outputs of earlier runs of this job (a worker killed mid-job
 * leaves one): the claim is ours now, so nobody else is writing them.
 */
static void remove_stale_tmp(const char *dir, const char *name)
{
	size_t n = strlen(name);
	struct dirent *de;
	DIR *d = opendir(dir);

	if (!d)
		return;
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);

		if (de->d_name[0] == '.' && strncmp(de->d_name + 1, name, n) == 0 &&
		    de->d_name[n + 1] == '.' && len > n + 5 &&
		    strcmp(de->d_name + len - 4, ".tmp") == 0)
			unlinkat(dirfd(d), de->d_name, 0);
	}
	closedir(d);
}

static int prepare_output(struct job *job, const char *name, const char *content_type,
			  const char *deriv_type)
{
	const struct config *cfg = job->env->cfg;
	size_t n;
	int rc;

	n = strlen(cfg->derivatives_root) + strlen(job->tenant) + strlen(job->asset_id) + 32;
	job->out_dir = malloc(n);
	job->out_path = malloc(n + strlen(name));
	job->out_tmp = malloc(n + strlen(name) + 32);
	if (!job->out_dir || !job->out_path || !job->out_tmp)
		return -ENOMEM;
	snprintf(job->out_dir, n, "%s/%s/%s/%s", cfg->derivatives_root, job->tenant, job->yyyymm,
		 job->asset_id);
	snprintf(job->out_path, n + strlen(name), "%s/%s", job->out_dir, name);
	/* Per process and claim: a stale run can never write this run's file. */
	snprintf(job->out_tmp, n + strlen(name) + 32, "%s/.%s.%d.%d.tmp", job->out_dir, name,
		 (int)getpid(), job->attempt);
	job->out_name = name;
	job->content_type = content_type;
	job->deriv_type = deriv_type;
	rc = mkdir_p(job->out_dir);
	if (rc == 0)
		remove_stale_tmp(job->out_dir, name);
	return rc;
}

static void start_thumbnail(struct job *job)
{
	char ss[32], vf[160];
	char *argv[32];
	int n = 0, rc;

	if (job->probe.kind == MEDIA_AUDIO) {
		job->skip_reason = "a thumbnail does not apply to audio";
		store(job, OUT_NOTHING);
		return;
	}
	rc = prepare_output(job, "thumbnail.jpg", "image/jpeg", "image");
	if (rc != 0) {
		fail(job, true, "could not create directory \"%s\": %s", job->out_dir,
		     strerror(-rc));
		return;
	}
	snprintf(ss, sizeof ss, "%.3f",
		 media_thumbnail_time(job->env->cfg->thumbnail_offset_s, job->probe.duration_s));
	snprintf(vf, sizeof vf,
		 "scale=w='min(%d,iw)':h='min(%d,ih)':force_original_aspect_ratio=decrease",
		 THUMB_BOX, THUMB_BOX);
	argv[n++] = "ffmpeg";
	argv[n++] = "-nostdin";
	argv[n++] = "-hide_banner";
	argv[n++] = "-v";
	argv[n++] = "error";
	argv[n++] = "-y";
	if (job->probe.kind == MEDIA_VIDEO) {
		argv[n++] = "-ss";
		argv[n++] = ss;
	}
	argv[n++] = "-i";
	argv[n++] = job->input;
	argv[n++] = "-map";
	argv[n++] = "0:v:0";
	argv[n++] = "-frames:v";
	argv[n++] = "1";
	argv[n++] = "-vf";
	argv[n++] = vf;
	argv[n++] = "-c:v";
	argv[n++] = "mjpeg";
	argv[n++] = "-q:v";
	argv[n++] = "3";
	argv[n++] = "-update";
	argv[n++] = "1";
	argv[n++] = "-f";
	argv[n++] = "image2";
	argv[n++] = job->out_tmp;
	argv[n] = NULL;
	set_state(job, JOB_TRANSCODING);
	run(job, argv, NULL, on_transcoded);
}

static void start_proxy(struct job *job)
{
	char vf[128];
	char *argv[48];
	bool video = job->probe.kind == MEDIA_VIDEO;
	int n = 0, rc;

	if (job->probe.kind == MEDIA_IMAGE) {
		job->skip_reason = "a proxy does not apply to a still image";
		store(job, OUT_NOTHING);
		return;
	}
	rc = video ? prepare_output(job, "proxy.mp4", "video/mp4", "video")
		   : prepare_output(job, "proxy.m4a", "audio/mp4", "audio");
	if (rc != 0) {
		fail(job, true, "could not create directory \"%s\": %s", job->out_dir,
		     strerror(-rc));
		return;
	}
	/* Never upscale; H.264 4:2:0 needs even dimensions. */
	snprintf(vf, sizeof vf, "scale=-2:'trunc(min(%d,ih)/2)*2'", job->env->cfg->proxy_height);
	argv[n++] = "ffmpeg";
	argv[n++] = "-nostdin";
	argv[n++] = "-hide_banner";
	argv[n++] = "-v";
	argv[n++] = "error";
	argv[n++] = "-y";
	argv[n++] = "-i";
	argv[n++] = job->input;
	if (video) {
		argv[n++] = "-map";
		argv[n++] = "0:v:0";
		argv[n++] = "-map";
		argv[n++] = "0:a:0?";
		argv[n++] = "-vf";
		argv[n++] = vf;
		argv[n++] = "-c:v";
		argv[n++] = "libx264";
		argv[n++] = "-preset";
		argv[n++] = "veryfast";
		argv[n++] = "-crf";
		argv[n++] = "23";
		argv[n++] = "-pix_fmt";
		argv[n++] = "yuv420p";
		argv[n++] = "-movflags";
		argv[n++] = "+faststart";
	} else {
		argv[n++] = "-map";
		argv[n++] = "0:a:0";
		argv[n++] = "-vn";
	}
	argv[n++] = "-c:a";
	argv[n++] = "aac";
	argv[n++] = "-b:a";
	argv[n++] = "128k";
	argv[n++] = "-progress";
	argv[n++] = "pipe:1";
	argv[n++] = "-nostats";
	argv[n++] = "-f";
	argv[n++] = "mp4";
	argv[n++] = job->out_tmp;
	argv[n] = NULL;
	set_state(job, JOB_TRANSCODING);
	run(job, argv, on_ffmpeg_line, on_transcoded);
}

static void on_probe_flat(struct jobrun *r, void *arg)
{
	struct job *job = arg;

	if (run_failed(job, "ffprobe", true))
		return;
	if (!r->out || media_probe_parse(r->out, &job->probe) != 0) {
		jobrun_reset(r);
		fail(job, false, "ffprobe: no usable output for \"%s\"", job->input);
		return;
	}
	jobrun_reset(r);
	if (job->probe.kind == MEDIA_NONE) {
		fail(job, false, "ffprobe: no audio, video or image stream found");
		return;
	}
	if (job->asset_id[0] == '\0') {
		fail(job, false, "job has no asset to attach a %s to", job->type);
		return;
	}
	if (strcmp(job->type, "thumbnail") == 0)
		start_thumbnail(job);
	else
		start_proxy(job);
}

/* ---- start, stop ---- */

/* The input: input_path, else the asset's original location (it may have moved). */
static int resolve_input(struct job *job)
{
	const char *cand[2] = {job->input_path, job->original_path};
	struct stat st;
	int i, err = ENOENT;

	for (i = 0; i < 2; i++) {
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
			fail(job, false, "job has no input file");
		else if (rc == -EINVAL)
			fail(job, false, "input file \"%s\" is not a regular file", shown);
		else
			fail(job, false, "input file \"%s\" is missing: %s", shown, strerror(-rc));
		return;
	}
	if (strcmp(job->type, "metadata") == 0) {
		char *argv[] = {"ffprobe", "-v", "error", "-print_format", "json", "-show_format",
				"-show_streams", "-show_program_version", "--", job->input, NULL};

		run(job, argv, NULL, on_probe_json);
	} else if (strcmp(job->type, "thumbnail") == 0 || strcmp(job->type, "proxy") == 0) {
		char *argv[] = {"ffprobe", "-v", "error", "-of", "flat", "-show_entries",
				"format=format_name,duration:stream=index,codec_type,width,height"
				":stream_disposition=attached_pic",
				"--", job->input, NULL};

		run(job, argv, NULL, on_probe_flat);
	} else {
		fail(job, false, "unknown job type \"%s\"", job->type);
	}
}

void job_give_back(struct job *job)
{
	store(job, OUT_RELEASE);
}

void job_abort(struct job *job)
{
	job->stop = true;
	if (job->run_active)
		jobrun_kill(&job->run);
}
