/*
 * Post-ingest actions: move, delete or quarantine a file once the catalogue
 * committed it. The catalogue already points at the destination, so a move
 * must never lose or clobber a file and must be repairable after a crash at
 * any point: we never overwrite (renameat2 RENAME_NOREPLACE), a destination
 * that already holds the same bytes counts as done (the repair case), and
 * across filesystems we copy to a hidden temporary name beside the target,
 * fsync it, re-read it to verify the checksum, rename it into place, fsync
 * the directory and only then unlink the source. Whatever fails, the source
 * stays where it was and no temporary file is left behind. Everything here
 * blocks, so the daemon runs it in the libuv threadpool (post_submit); the
 * start-up repair pass and the tests call post_run directly.
 */
#include "post.h"
#include "hasher.h"
#include "log.h"
#include "sha256.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef container_of
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#endif

#define COPY_BUF      (1024 * 1024)
#define REASON_SUFFIX ".reason.json"
#define MAX_CLASH     10000

static int set_err(struct post_result *res, int status, const char *fmt, ...) MAM_PRINTF(3, 4);

/* Record the first error only: later cleanup failures must not hide it. */
static int set_err(struct post_result *res, int status, const char *fmt, ...)
{
	va_list ap;

	if (res->status == 0) {
		res->status = status;
		va_start(ap, fmt);
		vsnprintf(res->error, sizeof(res->error), fmt, ap);
		va_end(ap);
	}
	return status;
}

/* Escaped for messages; keeps errno, since it is used inside argument lists
 * that also read errno. */
static const char *esc(const char *path, char *buf)
{
	int saved = errno;

	log_escape(path, buf, LOG_ESC_MAX);
	errno = saved;
	return buf;
}

static void split_path(const char *path, char *dir, size_t dirsz, const char **base)
{
	const char *slash = strrchr(path, '/');

	if (!slash) {
		snprintf(dir, dirsz, ".");
		*base = path;
	} else if (slash == path) {
		snprintf(dir, dirsz, "/");
		*base = slash + 1;
	} else {
		snprintf(dir, dirsz, "%.*s", (int)(slash - path), path);
		*base = slash + 1;
	}
}

static int mkdir_p(const char *path, mode_t mode, struct post_result *res)
{
	char buf[PATH_MAX], e[LOG_ESC_MAX];
	struct stat st;
	size_t len = strlen(path);

	if (len >= sizeof(buf))
		return set_err(res, -ENAMETOOLONG, "path too long: \"%s\"", esc(path, e));
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;

		*p = '\0';
		if (mkdir(buf, mode) != 0 && errno != EEXIST)
			return set_err(res, -errno, "could not create directory \"%s\": %s",
				       esc(buf, e), strerror(errno));
		if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode))
			return set_err(res, -ENOTDIR, "\"%s\" is not a directory", esc(buf, e));
		*p = c;
		if (c == '\0')
			break;
	}
	return 0;
}

/* Makes a rename durable; failure here is not worth failing the move. */
static void fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd >= 0) {
		(void)fsync(fd);
		close(fd);
	}
}

static int hash_path(const char *path, char hex[65])
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	int ret;

	if (fd < 0)
		return -errno;
	ret = hash_fd_sha256(fd, 0, hex, NULL);
	close(fd);
	return ret;
}

/* rename without ever replacing: renameat2 where the filesystem has it,
 * else link + unlink (link fails with EEXIST too). */
static int rename_noreplace(const char *from, const char *to)
{
	if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -errno;
	if (link(from, to) != 0)
		return -errno;
	(void)unlink(from);
	return 0;
}

/*
 * dst exists. Same bytes as expected: the move already happened (a crash
 * between rename/copy and unlink, or a retry), so finish it by removing the
 * source, but only when the source holds those same bytes too: a source with
 * other content is a new file dropped under the same name.
 */
static int settle_existing(const char *src, const char *dst, const struct stat *dst_st,
			   const char *expect, struct post_result *res)
{
	char dsum[65], ssum[65], e[LOG_ESC_MAX];
	struct stat sst;
	bool have_src;
	int rc;

	if (!S_ISREG(dst_st->st_mode))
		return set_err(res, -EEXIST, "destination \"%s\" exists and is not a regular file",
			       esc(dst, e));
	rc = hash_path(dst, dsum);
	if (rc != 0)
		return set_err(res, rc, "could not read existing destination \"%s\": %s",
			       esc(dst, e), strerror(-rc));
	have_src = lstat(src, &sst) == 0 && S_ISREG(sst.st_mode);
	if (have_src && sst.st_dev == dst_st->st_dev && sst.st_ino == dst_st->st_ino)
		have_src = false; /* the same file under two names: nothing to remove */
	if (have_src && hash_path(src, ssum) != 0)
		have_src = false;
	if (!expect && !have_src)
		return set_err(res, -EEXIST, "destination \"%s\" already exists", esc(dst, e));
	if (strcmp(dsum, expect ? expect : ssum) != 0)
		return set_err(res, -EEXIST, "destination \"%s\" exists with different content",
			       esc(dst, e));
	if (have_src && strcmp(ssum, dsum) == 0 && unlink(src) != 0 && errno != ENOENT) {
		snprintf(res->final_path, sizeof(res->final_path), "%s", dst);
		return set_err(res, -errno, "could not remove source \"%s\": %s", esc(src, e),
			       strerror(errno));
	}
	snprintf(res->final_path, sizeof(res->final_path), "%s", dst);
	return 0;
}

static int write_all(int fd, const unsigned char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Copy sfd into tfd, hashing what was read; hex gets the source's sum. */
static int copy_hashing(int sfd, int tfd, char hex[65])
{
	unsigned char md[SHA256_LEN], *buf;
	struct sha256 s;
	ssize_t n;
	int ret = 0;

	buf = malloc(COPY_BUF);
	if (!buf)
		return -ENOMEM;
	if (sha256_init(&s) != 0) {
		free(buf);
		return -ENOMEM;
	}
	for (;;) {
		n = read(sfd, buf, COPY_BUF);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			ret = n < 0 ? -errno : 0;
			break;
		}
		if (sha256_update(&s, buf, (size_t)n) != 0) {
			ret = -EIO;
			break;
		}
		ret = write_all(tfd, buf, (size_t)n);
		if (ret != 0)
			break;
	}
	if (ret != 0)
		sha256_drop(&s);
	else if (sha256_final(&s, md) != 0)
		ret = -EIO;
	if (ret == 0)
		sha256_hex(md, hex);
	free(buf);
	return ret;
}

/* The EXDEV path: copy to ".<name>.mam-XXXXXX" beside dst, fsync, verify,
 * rename into place, fsync the directory, unlink the source. */
static int copy_move(const char *src, const char *dst, const char *dir, const char *expect,
		     struct post_result *res)
{
	char tmp[PATH_MAX], ssum[65], tsum[65], e[LOG_ESC_MAX], d[LOG_ESC_MAX];
	const char *slash = strrchr(dst, '/'), *base = slash ? slash + 1 : dst;
	struct timespec times[2];
	struct stat sst;
	int sfd, tfd = -1, rc;

	sfd = open(src, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (sfd < 0)
		return set_err(res, -errno, "could not open file \"%s\": %s", esc(src, e),
			       strerror(errno));
	if (fstat(sfd, &sst) != 0 || !S_ISREG(sst.st_mode)) {
		rc = set_err(res, -EINVAL, "\"%s\" is not a regular file", esc(src, e));
		goto out_src;
	}
	/* The temporary name must fit NAME_MAX: shorten the name part if needed. */
	if (snprintf(tmp, sizeof(tmp), "%s/.%.*s.mam-XXXXXX", dir, NAME_MAX - 12, base) >=
	    (int)sizeof(tmp)) {
		rc = set_err(res, -ENAMETOOLONG, "path too long: \"%s\"", esc(dst, e));
		goto out_src;
	}
	tfd = mkostemp(tmp, O_CLOEXEC);
	if (tfd < 0) {
		rc = set_err(res, -errno, "could not create file in \"%s\": %s", esc(dir, e),
			     strerror(errno));
		goto out_src;
	}
	rc = copy_hashing(sfd, tfd, ssum);
	if (rc != 0) {
		set_err(res, rc, "could not copy \"%s\" to \"%s\": %s", esc(src, e), esc(dst, d),
			strerror(-rc));
		goto out_tmp;
	}
	/* Keep what mv keeps: ownership (when allowed), mode and times. */
	(void)fchown(tfd, sst.st_uid, sst.st_gid);
	(void)fchmod(tfd, sst.st_mode & 0777);
	times[0] = sst.st_atim;
	times[1] = sst.st_mtim;
	(void)futimens(tfd, times);
	if (fsync(tfd) != 0) {
		rc = set_err(res, -errno, "could not fsync file \"%s\": %s", esc(tmp, e),
			     strerror(errno));
		goto out_tmp;
	}
	if (lseek(tfd, 0, SEEK_SET) != 0 || (rc = hash_fd_sha256(tfd, 0, tsum, NULL)) != 0) {
		rc = set_err(res, rc ? rc : -errno, "could not read back copy \"%s\"", esc(tmp, e));
		goto out_tmp;
	}
	if (strcmp(tsum, ssum) != 0 || (expect && strcmp(ssum, expect) != 0)) {
		rc = set_err(res, -EIO, "checksum mismatch copying \"%s\": expected %s, got %s",
			     esc(src, e), expect ? expect : ssum, tsum);
		goto out_tmp;
	}
	if (close(tfd) != 0) {
		tfd = -1;
		rc = set_err(res, -errno, "could not write file \"%s\": %s", esc(tmp, e),
			     strerror(errno));
		goto out_tmp;
	}
	tfd = -1;
	rc = rename_noreplace(tmp, dst);
	if (rc != 0) {
		set_err(res, rc, "could not rename \"%s\" to \"%s\": %s", esc(tmp, e), esc(dst, d),
			strerror(-rc));
		goto out_tmp;
	}
	fsync_dir(dir);
	snprintf(res->final_path, sizeof(res->final_path), "%s", dst);
	if (unlink(src) != 0 && errno != ENOENT)
		rc = set_err(res, -errno, "copied to \"%s\" but could not remove source: %s",
			     esc(dst, d), strerror(errno));
	goto out_src;
out_tmp:
	if (tfd >= 0)
		close(tfd);
	(void)unlink(tmp);
out_src:
	close(sfd);
	return rc;
}

/* Move src to dst, never overwriting. allow_repair: an existing dst with the
 * expected bytes counts as done (POST_MOVE); quarantine wants -EEXIST. */
static int move_file(const char *src, const char *dst, const char *expect, bool allow_repair,
		     mode_t dir_mode, struct post_result *res)
{
	char dir[PATH_MAX], e[LOG_ESC_MAX], d[LOG_ESC_MAX];
	const char *base;
	struct stat st;
	int rc;

	split_path(dst, dir, sizeof(dir), &base);
	if (base[0] == '\0')
		return set_err(res, -EINVAL, "destination \"%s\" names no file", esc(dst, e));
	rc = mkdir_p(dir, dir_mode, res);
	if (rc != 0)
		return rc;
	if (lstat(dst, &st) == 0) {
		if (allow_repair)
			return settle_existing(src, dst, &st, expect, res);
		return set_err(res, -EEXIST, "destination \"%s\" already exists", esc(dst, e));
	}
	if (lstat(src, &st) != 0)
		return set_err(res, -errno, "could not stat file \"%s\": %s", esc(src, e),
			       strerror(errno));
	rc = rename_noreplace(src, dst);
	if (rc == 0) {
		fsync_dir(dir);
		snprintf(res->final_path, sizeof(res->final_path), "%s", dst);
		return 0;
	}
	if (rc == -EXDEV)
		return copy_move(src, dst, dir, expect, res);
	if (rc == -EEXIST && allow_repair && lstat(dst, &st) == 0)
		return settle_existing(src, dst, &st, expect, res);
	return set_err(res, rc, "could not move \"%s\" to \"%s\": %s", esc(src, e), esc(dst, d),
		       strerror(-rc));
}

/* Write text to path atomically: temp + fsync + rename. */
static int write_file_atomic(const char *dir, const char *path, const char *text,
			     struct post_result *res)
{
	char tmp[PATH_MAX], e[LOG_ESC_MAX];
	int fd, rc;

	if (snprintf(tmp, sizeof(tmp), "%s.mam-XXXXXX", path) >= (int)sizeof(tmp))
		return set_err(res, -ENAMETOOLONG, "path too long: \"%s\"", esc(path, e));
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return set_err(res, -errno, "could not create \"%s\": %s", esc(path, e),
			       strerror(errno));
	rc = write_all(fd, (const unsigned char *)text, strlen(text));
	if (rc == 0 && fsync(fd) != 0)
		rc = -errno;
	if (close(fd) != 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) != 0)
		rc = -errno;
	if (rc != 0) {
		(void)unlink(tmp);
		return set_err(res, rc, "could not write file \"%s\": %s", esc(path, e),
			       strerror(-rc));
	}
	fsync_dir(dir);
	return 0;
}

/* Candidate n for a quarantined name: "clip.mov", "clip.1.mov", ...; short
 * enough that "<name>.reason.json" and its temporary name fit NAME_MAX. */
static void clash_name(const char *base, unsigned n, char *out, size_t outsz)
{
	const char *dot = strrchr(base, '.');
	size_t stem, ext, budget = NAME_MAX - strlen(REASON_SUFFIX) - strlen(".mam-XXXXXX");
	char suffix[16] = "";

	if (!dot || dot == base || strlen(dot) > 32)
		dot = base + strlen(base);
	ext = strlen(dot);
	stem = (size_t)(dot - base);
	if (n > 0)
		snprintf(suffix, sizeof(suffix), ".%u", n);
	if (stem + strlen(suffix) + ext > budget)
		stem = budget - strlen(suffix) - ext;
	snprintf(out, outsz, "%.*s%s%s", (int)stem, base, suffix, dot);
}

static int quarantine(const char *src, const char *qdir, const char *reason,
		      struct post_result *res)
{
	char name[NAME_MAX + 1], path[PATH_MAX], rpath[PATH_MAX], e[LOG_ESC_MAX];
	const char *slash = strrchr(src, '/'), *base = slash ? slash + 1 : src;
	struct stat st;
	int rc;

	if (base[0] == '\0' || strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
		return set_err(res, -EINVAL, "cannot quarantine \"%s\"", esc(src, e));
	rc = mkdir_p(qdir, 0700, res);
	if (rc != 0)
		return rc;
	for (unsigned n = 0; n < MAX_CLASH; n++) {
		clash_name(base, n, name, sizeof(name));
		if (snprintf(path, sizeof(path), "%s/%s", qdir, name) >= (int)sizeof(path) ||
		    snprintf(rpath, sizeof(rpath), "%s%s", path, REASON_SUFFIX) >=
			    (int)sizeof(rpath))
			return set_err(res, -ENAMETOOLONG, "path too long: \"%s\"", esc(qdir, e));
		if (lstat(path, &st) == 0 || lstat(rpath, &st) == 0)
			continue;
		rc = move_file(src, path, NULL, false, 0700, res);
		if (rc == -EEXIST) { /* taken meanwhile: try the next name */
			res->status = 0;
			res->error[0] = '\0';
			continue;
		}
		if (rc != 0)
			return rc;
		if (write_file_atomic(qdir, rpath, reason ? reason : "{}", res) != 0) {
			/* The file is out of the drop folder and in quarantine: the
			 * action is done. Failing it would tell the caller the file is
			 * still where it was; the missing reason file is said instead. */
			snprintf(res->warning, sizeof(res->warning), "%s", res->error);
			res->status = 0;
			res->error[0] = '\0';
		}
		return 0;
	}
	return set_err(res, -EEXIST, "no free name for \"%s\" in \"%s\"", esc(src, e), qdir);
}

static bool is_sha256_hex(const char *s)
{
	size_t i;

	for (i = 0; s[i]; i++)
		if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i]))
			return false;
	return i == 64;
}

int post_run(enum post_action action, const char *src, const char *dst, const char *expect_sha256,
	     const char *reason_json, struct post_result *res)
{
	char e[LOG_ESC_MAX];

	memset(res, 0, sizeof(*res));
	if (!src || (action != POST_DELETE && !dst))
		return set_err(res, -EINVAL, "missing path");
	if (expect_sha256 && !is_sha256_hex(expect_sha256))
		return set_err(res, -EINVAL, "not a lowercase sha256: \"%s\"",
			       esc(expect_sha256, e));
	switch (action) {
	case POST_MOVE:
		if (strcmp(src, dst) == 0) {
			snprintf(res->final_path, sizeof(res->final_path), "%s", dst);
			return 0;
		}
		return move_file(src, dst, expect_sha256, true, 0755, res);
	case POST_DELETE:
		if (unlink(src) != 0 && errno != ENOENT)
			return set_err(res, -errno, "could not remove file \"%s\": %s", esc(src, e),
				       strerror(errno));
		return 0;
	case POST_QUARANTINE: return quarantine(src, dst, reason_json, res);
	}
	return set_err(res, -EINVAL, "unknown action %d", (int)action);
}

struct post_job {
	uv_work_t req;
	enum post_action action;
	const char *src, *dst, *expect, *reason; /* copies stored after the struct */
	post_cb cb;
	void *arg;
	struct post_result res;
};

static void post_work(uv_work_t *req)
{
	struct post_job *j = container_of(req, struct post_job, req);

	post_run(j->action, j->src, j->dst, j->expect, j->reason, &j->res);
}

static void post_after(uv_work_t *req, int status)
{
	struct post_job *j = container_of(req, struct post_job, req);

	if (status == UV_ECANCELED) {
		j->res.status = -ECANCELED;
		snprintf(j->res.error, sizeof(j->res.error), "post-ingest action cancelled");
	}
	j->cb(&j->res, j->arg);
	free(j);
}

static const char *stash(char **p, const char *s)
{
	char *at = *p;

	if (!s)
		return NULL;
	strcpy(at, s);
	*p += strlen(s) + 1;
	return at;
}

int post_submit(uv_loop_t *loop, enum post_action action, const char *src, const char *dst,
		const char *expect_sha256, const char *reason_json, post_cb cb, void *arg)
{
	size_t need = 0;
	struct post_job *j;
	char *p;
	int rc;

	if (!src || !cb)
		return -EINVAL;
	need += strlen(src) + 1;
	need += dst ? strlen(dst) + 1 : 0;
	need += expect_sha256 ? strlen(expect_sha256) + 1 : 0;
	need += reason_json ? strlen(reason_json) + 1 : 0;
	j = calloc(1, sizeof(*j) + need);
	if (!j)
		return -ENOMEM;
	p = (char *)(j + 1);
	j->action = action;
	j->src = stash(&p, src);
	j->dst = stash(&p, dst);
	j->expect = stash(&p, expect_sha256);
	j->reason = stash(&p, reason_json);
	j->cb = cb;
	j->arg = arg;
	rc = uv_queue_work(loop, &j->req, post_work, post_after);
	if (rc != 0)
		free(j);
	return rc;
}

/* Append n bytes of s to buf (capacity cap) at *len; false when it does not fit. */
static bool append(char *buf, size_t cap, size_t *len, const char *s, size_t n)
{
	if (*len + n >= cap)
		return false;
	memcpy(buf + *len, s, n);
	*len += n;
	buf[*len] = '\0';
	return true;
}

int post_expand_template(const char *tmpl, const char *tenant, const char *asset_id,
			 const char *relpath, long long when_epoch, char *out, size_t outsz)
{
	char buf[PATH_MAX], yyyy[24], mm[16], dd[16], dir[PATH_MAX];
	const char *name = "", *slash, *val;
	time_t t = (time_t)when_epoch;
	size_t len = 0, o = 0;
	struct tm tm;

	if (!tmpl || !out || outsz == 0)
		return -EINVAL;
	if (!gmtime_r(&t, &tm))
		return -EINVAL;
	snprintf(yyyy, sizeof(yyyy), "%04d", tm.tm_year + 1900);
	snprintf(mm, sizeof(mm), "%02d", tm.tm_mon + 1);
	snprintf(dd, sizeof(dd), "%02d", tm.tm_mday);
	dir[0] = '\0';
	if (relpath) {
		slash = strrchr(relpath, '/');
		name = slash ? slash + 1 : relpath;
		if (slash)
			snprintf(dir, sizeof(dir), "%.*s", (int)(slash - relpath), relpath);
	}
	buf[0] = '\0';
	for (const char *p = tmpl; *p;) {
		if (*p == '}')
			return -EINVAL;
		if (*p != '{') {
			if (!append(buf, sizeof(buf), &len, p, 1))
				return -ENAMETOOLONG;
			p++;
			continue;
		}
		const char *end = strchr(p, '}');
		size_t klen;

		if (!end)
			return -EINVAL;
		klen = (size_t)(end - p - 1);
#define KEY(k) (klen == sizeof(k) - 1 && memcmp(p + 1, k, klen) == 0)
		if (KEY("tenant"))
			val = tenant;
		else if (KEY("yyyy"))
			val = yyyy;
		else if (KEY("mm"))
			val = mm;
		else if (KEY("dd"))
			val = dd;
		else if (KEY("asset_id"))
			val = asset_id;
		else if (KEY("name"))
			val = relpath ? name : NULL;
		else if (KEY("relpath"))
			val = relpath;
		else if (KEY("relpath_dir"))
			val = relpath ? dir : NULL;
		else
			return -EINVAL;
#undef KEY
		if (!val)
			return -EINVAL; /* a placeholder whose value the caller did not give */
		if (!append(buf, sizeof(buf), &len, val, strlen(val)))
			return -ENAMETOOLONG;
		p = end + 1;
	}
	/* An empty {relpath_dir} leaves "a//b": collapse repeated slashes. */
	for (size_t i = 0; i < len; i++) {
		if (buf[i] == '/' && o > 0 && buf[o - 1] == '/')
			continue;
		buf[o++] = buf[i];
	}
	buf[o] = '\0';
	if (o == 0)
		return -EINVAL;
	/* No ".." component: the result is joined under move_to and must stay there. */
	for (const char *c = buf; c;) {
		const char *next = strchr(c, '/');
		size_t clen = next ? (size_t)(next - c) : strlen(c);

		if (clen == 2 && c[0] == '.' && c[1] == '.')
			return -EINVAL;
		c = next ? next + 1 : NULL;
	}
	if (o >= outsz)
		return -ENAMETOOLONG;
	memcpy(out, buf, o + 1);
	return 0;
}
