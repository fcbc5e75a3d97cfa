/*
 * derive: the thumbnail and proxy jobs, from a probed input to a derivative
 * file ready to be recorded.
 *
 * ffmpeg writes to a temporary name beside the final one (unique per process
 * and claim); the threadpool hashes it (SHA-256, OpenSSL, 1 MiB reads),
 * fsyncs and renames it into place, so the catalogue never points at a
 * half-written file and a worker that dies mid-job leaves only a temporary
 * file, which the next run of the job removes. Progress comes from ffmpeg's
 * -progress output and reaches the database at most every 2 s per job.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "derive.h"
#include "log.h"
#include "hasher.h"
#include "util.h"

#define THUMB_BOX	     480  /* thumbnails fit in THUMB_BOX x THUMB_BOX */
#define PROGRESS_INTERVAL_MS 2000 /* at most one progress update per job per this */
#define HASH_READ_SIZE	     (1024 * 1024)

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
	struct stat st;
	int fd, rc;

	job->work_err = 0;
	fd = open(job->out_tmp, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		/* ffmpeg can succeed without writing anything (no frame at the offset). */
		job->work_err = errno == ENOENT ? -ENODATA : -errno;
		snprintf(job->work_what, sizeof job->work_what, "open");
		return;
	}
	if (fstat(fd, &st) != 0) {
		job->work_err = -errno;
		snprintf(job->work_what, sizeof job->work_what, "prepare hashing of");
		goto out;
	}
	/* Plain reads: ffmpeg's next job may be running beside this one. */
	rc = hash_fd_sha256_io(fd, HASH_READ_SIZE, HASH_IO_SERIAL, job->sha256, NULL);
	if (rc != 0) {
		job->work_err = rc;
		snprintf(job->work_what, sizeof job->work_what,
			 rc == -ENOMEM ? "prepare hashing of" : "read");
		goto out;
	}
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
			job_fail(job, true, "ffmpeg produced no %s", job->type);
		else
			job_fail(job, true, "could not %s file \"%s\": %s", job->work_what,
				 job->out_tmp, strerror(-job->work_err));
		return;
	}
	job_store(job, OUT_DERIVATIVE);
}

static void on_transcoded(struct jobrun *r, void *arg)
{
	struct job *job = arg;
	int rc;

	(void)r;
	if (job_run_failed(job, "ffmpeg", false)) {
		unlink(job->out_tmp);
		return;
	}
	job_set_state(job, JOB_HASHING);
	rc = uv_queue_work(job->env->loop, &job->work, hash_work, hash_done);
	if (rc != 0) {
		unlink(job->out_tmp);
		job_fail(job, true, "could not queue hashing: %s", uv_strerror(rc));
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
	struct jobref ref = job_ref(job);
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

void derive_thumbnail(struct job *job)
{
	char ss[32], vf[160];
	char *argv[32];
	int n = 0, rc;

	if (job->probe.kind == MEDIA_AUDIO) {
		job->skip_reason = "a thumbnail does not apply to audio";
		job_store(job, OUT_NOTHING);
		return;
	}
	rc = prepare_output(job, "thumbnail.jpg", "image/jpeg", "image");
	if (rc != 0) {
		job_fail(job, true, "could not create directory \"%s\": %s", job->out_dir,
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
	job_set_state(job, JOB_TRANSCODING);
	job_run(job, argv, NULL, on_transcoded);
}

void derive_proxy(struct job *job)
{
	char vf[128];
	char *argv[48];
	bool video = job->probe.kind == MEDIA_VIDEO;
	int n = 0, rc;

	if (job->probe.kind == MEDIA_IMAGE) {
		job->skip_reason = "a proxy does not apply to a still image";
		job_store(job, OUT_NOTHING);
		return;
	}
	rc = video ? prepare_output(job, "proxy.mp4", "video/mp4", "video")
		   : prepare_output(job, "proxy.m4a", "audio/mp4", "audio");
	if (rc != 0) {
		job_fail(job, true, "could not create directory \"%s\": %s", job->out_dir,
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
	job_set_state(job, JOB_TRANSCODING);
	job_run(job, argv, on_ffmpeg_line, on_transcoded);
}
