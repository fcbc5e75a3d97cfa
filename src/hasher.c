/*
 * Hasher: SHA-256 and content type of finished files, in the libuv
 * threadpool. libuv's threadpool has one FIFO shared by hash jobs and by fs
 * requests (stat, scandir), so a burst of big files would starve directory
 * scans: we cap the jobs handed to libuv at max_inflight (threadpool size - 1
 * by default) and keep the rest on our own FIFO, an intrusive list through
 * the job structs. Each job embeds its uv_work_t; the work callback touches
 * only its own job (open, read, hash, libmagic) and writes its outcome into
 * the job's hash_result; the after-work callback, on the loop thread, reports
 * it and starts the next queued job.
 *
 * Safety: a drop folder is written by strangers, so the file is opened with
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) relative to the folder (no
 * symlink anywhere in the path, no escape through ".."), O_NONBLOCK so a
 * FIFO cannot block a thread, and fstat must show a regular file. Where the
 * kernel has no openat2 we walk the path one component at a time with
 * O_NOFOLLOW. The identity (dev, ino, size, mtime, ctime) is compared with
 * what the watcher saw before hashing, and with the open file and the path
 * afterwards: a file that changed meanwhile is reported -ESTALE so it settles
 * again, a file that vanished -ENOENT.
 *
 * Reading and hashing an open file is hash_read.c.
 */
#include "hash_read.h"
#include "hasher.h"
#include "log.h"
#include "mime.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef container_of
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#endif

#define MAX_READ_SIZE (64 * 1024 * 1024)

#define READ_FLAGS (O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)
/* For the second look at the path: a trailing symlink yields the link itself. */
#define PATH_FLAGS (O_PATH | O_NOFOLLOW | O_CLOEXEC)

struct hash_job {
	uv_work_t req;	       /* req.data unused: container_of */
	struct hash_job *next; /* FIFO link while queued */
	struct hasher *h;
	const char *root;    /* drop folder (stored after the struct) */
	const char *relpath; /* path beneath root (stored after the struct) */
	struct file_id expect;
	bool has_expect;
	bool use_openat2;
	size_t read_size;
	hasher_cb cb;
	void *arg;
	struct hash_result res;
};

struct hasher {
	uv_loop_t *loop;
	unsigned max_inflight;
	size_t read_size;
	bool use_openat2; /* false only when MAM_HASHER_NO_OPENAT2 is set (tests) */
	struct hash_job *head, *tail;
	unsigned queued;
	unsigned inflight;
	bool closing;
	unsigned in_cb; /* > 0 while a user callback runs: defer freeing */
	void (*close_cb)(void *arg);
	void *close_arg;
};

static void job_fail(struct hash_job *j, int status, const char *fmt, ...) MAM_PRINTF(3, 4);

static void job_fail(struct hash_job *j, int status, const char *fmt, ...)
{
	va_list ap;

	j->res.status = status;
	va_start(ap, fmt);
	vsnprintf(j->res.error, sizeof(j->res.error), fmt, ap);
	va_end(ap);
}

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * The fallback for kernels without openat2 (before 5.6, or a seccomp filter
 * answering ENOSYS): one openat per component with O_NOFOLLOW, refusing ".."
 * and absolute paths, so neither a symlinked directory nor a trailing symlink
 * is ever followed.
 */
static int open_walk(int rootfd, const char *relpath, int flags)
{
	char buf[PATH_MAX];
	char *comp, *slash;
	int dfd, fd, ret;

	if (relpath[0] == '/')
		return -EXDEV;
	if (strlen(relpath) >= sizeof(buf))
		return -ENAMETOOLONG;
	strcpy(buf, relpath);
	dfd = fcntl(rootfd, F_DUPFD_CLOEXEC, 0);
	if (dfd < 0)
		return -errno;
	comp = buf;
	while ((slash = strchr(comp, '/')) != NULL) {
		*slash = '\0';
		if (strcmp(comp, "..") == 0) {
			close(dfd);
			return -EXDEV;
		}
		if (comp[0] != '\0' && strcmp(comp, ".") != 0) {
			fd = openat(dfd, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (fd < 0) {
				struct stat st;

				ret = -errno;
				/* A symlinked directory fails as ENOTDIR: say what it is. */
				if (ret == -ENOTDIR &&
				    fstatat(dfd, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
				    S_ISLNK(st.st_mode))
					ret = -ELOOP;
				close(dfd);
				return ret;
			}
			close(dfd);
			dfd = fd;
		}
		comp = slash + 1;
	}
	if (strcmp(comp, "..") == 0) {
		close(dfd);
		return -EXDEV;
	}
	fd = openat(dfd, comp[0] ? comp : ".", flags | O_NOFOLLOW);
	ret = fd < 0 ? -errno : fd;
	close(dfd);
	return ret;
}

static int open_beneath(int rootfd, const char *relpath, int flags, bool use_openat2)
{
	struct open_how how;
	long fd;

	if (use_openat2) {
		memset(&how, 0, sizeof(how));
		how.flags = (uint64_t)flags;
		how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
		do
			fd = syscall(SYS_openat2, rootfd, relpath, &how, sizeof(how));
		while (fd < 0 && errno == EINTR);
		if (fd >= 0)
			return (int)fd;
		if (errno != ENOSYS)
			return -errno;
	}
	return open_walk(rootfd, relpath, flags);
}

/* Threadpool side: everything here works on j only. */
static void hash_file(struct hash_job *j, int rootfd, const char *shown)
{
	struct hash_result *r = &j->res;
	struct file_id before, again;
	struct stat st;
	int fd, pfd, rc;

	fd = open_beneath(rootfd, j->relpath, READ_FLAGS, j->use_openat2);
	if (fd < 0) {
		if (fd == -ENOENT)
			job_fail(j, fd, "file \"%s\" vanished before hashing", shown);
		else if (fd == -ELOOP)
			job_fail(j, fd, "refusing \"%s\": symbolic link in path", shown);
		else if (fd == -EXDEV)
			job_fail(j, fd, "refusing \"%s\": path escapes the drop folder", shown);
		else
			job_fail(j, fd, "could not open file \"%s\": %s", shown, strerror(-fd));
		return;
	}
	if (fstat(fd, &st) != 0) {
		job_fail(j, -errno, "could not stat file \"%s\": %s", shown, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		job_fail(j, -EINVAL, "\"%s\" is not a regular file", shown);
		goto out;
	}
	file_id_from_stat(&before, &st);
	if (j->has_expect && !file_id_equal(&before, &j->expect)) {
		job_fail(j, -ESTALE, "file \"%s\" changed since it was seen finished", shown);
		goto out;
	}
	/* Readahead doubles for a sequential reader; the hint is only advice,
	 * and a file within the default readahead window (128 KiB) gains nothing
	 * from it (a burst of small files saves the syscall). */
	if (st.st_size > 128 * 1024)
		(void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	rc = hash_fd_detect(fd, &st, j->read_size, HASH_IO_AUTO, r->sha256, &r->bytes, r->mime,
			    sizeof(r->mime));
	if (rc == -ENOMEM) {
		job_fail(j, rc, "out of memory hashing \"%s\"", shown);
		goto out;
	}
	if (rc != 0) {
		job_fail(j, rc, "could not read file \"%s\": %s", shown, strerror(-rc));
		goto out;
	}
	if (fstat(fd, &st) != 0) {
		job_fail(j, -errno, "could not stat file \"%s\": %s", shown, strerror(errno));
		goto out;
	}
	file_id_from_stat(&r->id, &st);
	/*
	 * Is the path still this file? Asked before comparing identities because
	 * unlinking a file changes its ctime: a file deleted while it was hashed
	 * must read as vanished (-ENOENT), one renamed over as replaced (-ESTALE).
	 */
	pfd = open_beneath(rootfd, j->relpath, PATH_FLAGS, j->use_openat2);
	if (pfd < 0) {
		if (pfd == -ENOENT)
			job_fail(j, pfd, "file \"%s\" vanished while it was hashed", shown);
		else
			job_fail(j, -ESTALE, "file \"%s\" was replaced while it was hashed (%s)",
				 shown, strerror(-pfd));
		goto out;
	}
	rc = fstat(pfd, &st);
	close(pfd);
	if (rc == 0)
		file_id_from_stat(&again, &st);
	if (rc != 0 || again.dev != r->id.dev || again.ino != r->id.ino) {
		job_fail(j, -ESTALE, "file \"%s\" was replaced while it was hashed", shown);
		goto out;
	}
	if (!file_id_equal(&before, &r->id) || r->bytes != (uint64_t)r->id.size) {
		job_fail(j, -ESTALE, "file \"%s\" changed while it was hashed", shown);
		goto out;
	}
	snprintf(r->asset_type, sizeof(r->asset_type), "%s", asset_type_guess(r->mime, j->relpath));
out:
	close(fd);
}

static void hash_work(uv_work_t *req)
{
	struct hash_job *j = container_of(req, struct hash_job, req);
	char shown[LOG_ESC_MAX], full[PATH_MAX];
	double t0 = now_seconds();
	int rootfd;

	snprintf(full, sizeof(full), "%s/%s", j->root, j->relpath);
	log_escape(full, shown, sizeof(shown));
	rootfd = open(j->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0) {
		log_escape(j->root, shown, sizeof(shown));
		job_fail(j, -errno, "could not open drop folder \"%s\": %s", shown,
			 strerror(errno));
	} else {
		hash_file(j, rootfd, shown);
		close(rootfd);
	}
	if (j->res.status != 0) {
		j->res.sha256[0] = '\0';
		j->res.asset_type[0] = '\0';
	}
	j->res.seconds = now_seconds() - t0;
}

static void hasher_finish_close(struct hasher *h)
{
	void (*cb)(void *) = h->close_cb;
	void *arg = h->close_arg;

	free(h);
	if (cb)
		cb(arg);
}

static void hash_after(uv_work_t *req, int status);

/* Hand queued jobs to libuv while under the cap. Runs on the loop thread. */
static void hasher_pump(struct hasher *h)
{
	struct hash_job *j;
	int rc;

	while (!h->closing && h->head && h->inflight < h->max_inflight) {
		j = h->head;
		h->head = j->next;
		if (!h->head)
			h->tail = NULL;
		h->queued--;
		h->inflight++;
		rc = uv_queue_work(h->loop, &j->req, hash_work, hash_after);
		if (rc != 0) {
			/* Not reachable with valid callbacks; report it rather than lose the job.
			 */
			job_fail(j, rc, "could not queue hash work: %s", uv_strerror(rc));
			hash_after(&j->req, 0);
		}
	}
}

static void hash_after(uv_work_t *req, int status)
{
	struct hash_job *j = container_of(req, struct hash_job, req);
	struct hasher *h = j->h;

	h->inflight--;
	if (status == UV_ECANCELED)
		job_fail(j, -ECANCELED, "hashing cancelled");
	h->in_cb++;
	j->cb(&j->res, j->arg);
	h->in_cb--;
	free(j);
	if (h->in_cb > 0)
		return; /* the outer frame (hasher_pump inside a callback) carries on */
	if (h->closing) {
		if (h->inflight == 0)
			hasher_finish_close(h);
		return;
	}
	hasher_pump(h);
}

int hasher_create(uv_loop_t *loop, int max_inflight, size_t read_size, struct hasher **out)
{
	struct hasher *h;

	*out = NULL;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	if (max_inflight <= 0) {
		/* libuv reads UV_THREADPOOL_SIZE once (default 4, at most 1024); keep one
		 * thread free for the fs requests of directory scans. */
		const char *env = getenv("UV_THREADPOOL_SIZE");
		int pool = env ? atoi(env) : 0;

		if (pool <= 0)
			pool = 4;
		if (pool > 1024)
			pool = 1024;
		max_inflight = pool - 1;
	}
	if (max_inflight < 1)
		max_inflight = 1;
	if (read_size == 0)
		read_size = HASH_DEFAULT_READ_SIZE;
	if (read_size < HASH_MIN_READ_SIZE)
		read_size = HASH_MIN_READ_SIZE;
	if (read_size > MAX_READ_SIZE)
		read_size = MAX_READ_SIZE;
	h->loop = loop;
	h->max_inflight = (unsigned)max_inflight;
	h->read_size = read_size;
	/* Lets the tests exercise the component walk used on pre-5.6 kernels. */
	h->use_openat2 = getenv("MAM_HASHER_NO_OPENAT2") == NULL;
	*out = h;
	return 0;
}

int hasher_submit(struct hasher *h, const char *root, const char *relpath,
		  const struct file_id *expect, hasher_cb cb, void *arg)
{
	struct hash_job *j;
	size_t rl, pl;
	char *p;

	if (!root || !relpath || !cb || relpath[0] == '\0')
		return -EINVAL;
	if (h->closing)
		return -ECANCELED;
	rl = strlen(root) + 1;
	pl = strlen(relpath) + 1;
	j = calloc(1, sizeof(*j) + rl + pl);
	if (!j)
		return -ENOMEM;
	p = (char *)(j + 1);
	memcpy(p, root, rl);
	memcpy(p + rl, relpath, pl);
	j->root = p;
	j->relpath = p + rl;
	j->h = h;
	if (expect) {
		j->expect = *expect;
		j->has_expect = true;
	}
	j->use_openat2 = h->use_openat2;
	j->read_size = h->read_size;
	j->cb = cb;
	j->arg = arg;
	if (h->tail)
		h->tail->next = j;
	else
		h->head = j;
	h->tail = j;
	h->queued++;
	if (h->in_cb == 0)
		hasher_pump(h);
	return 0;
}

unsigned hasher_pending(const struct hasher *h)
{
	return h->queued + h->inflight;
}

void hasher_close(struct hasher *h, void (*cb)(void *arg), void *arg)
{
	struct hash_job *j;

	if (h->closing)
		return;
	h->closing = true;
	h->close_cb = cb;
	h->close_arg = arg;
	h->in_cb++;
	while ((j = h->head) != NULL) {
		h->head = j->next;
		h->queued--;
		job_fail(j, -ECANCELED, "hashing cancelled: shutting down");
		j->cb(&j->res, j->arg);
		free(j);
	}
	h->tail = NULL;
	h->in_cb--;
	/* Called from inside a hash callback: hash_after finishes the close. */
	if (h->in_cb == 0 && h->inflight == 0)
		hasher_finish_close(h);
}
