/*
 * Directory scans, polling, and folders that come and go.
 *
 * A scan walks a folder (or a few new subdirectories of it) on the libuv
 * threadpool, so a tree of 100k files never stalls the loop; the work touches
 * only its own job struct and the immutable folder config. In events mode
 * the walk adds the inotify watch of each directory *before* reading it, so
 * a file created in a brand-new directory is either in the listing or
 * produces an event; the loop thread then registers the watch descriptors,
 * merges the listing into the file table and forgets entries the scan did
 * not see (after an lstat confirms they are really gone). The walk uses
 * fstatat(AT_SYMLINK_NOFOLLOW) and never opens anything but directories, so
 * FIFOs and devices cannot block it and symlinks are never followed.
 *
 * A walk hands its listing to the loop in windows of about SCAN_WINDOW files
 * (whole directories): the loop merges one window while nothing else of the
 * walk is held, then queues the walk again where it stopped, so a scan of
 * 100,000 files never holds 100,000 listed names at once (the restart
 * benchmark's peak memory). Entries the walk did not see are forgotten only
 * after the last window.
 *
 * At most one scan per folder runs at a time; requests that arrive meanwhile
 * are coalesced (a full rescan swallows pending subdirectory scans). Polled
 * folders (network filesystems, mode: poll, or no inotify watch left) rescan
 * on one timer per folder (watch_folder.c), re-armed when a scan completes so
 * scans of a slow share never pile up.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ignore.h"
#include "log.h"
#include "util.h"
#include "watch_int.h"

/* Files listed per window (a directory is never split). */
#define SCAN_WINDOW 2048

struct scan_item {
	char *rel;
	struct file_id id;
	char *reason; /* oneshot: why it is still settling; NULL when finished */
};

struct scan_dir {
	int wd;
	char *rel;
};

struct scan_job {
	uv_work_t req;
	struct wfolder *f;	      /* loop thread only */
	const struct folder_cfg *cfg; /* immutable: safe in the worker */
	char **roots;
	size_t n_roots;
	bool full, oneshot;
	int ifd;	/* add watches when >= 0 */
	int64_t now_ns; /* oneshot: wall clock of the pass */
	uint32_t gen;
	/* the walk, kept between windows */
	char **stack; /* directories still to list */
	size_t n_stack, cap_stack;
	bool started;	  /* the roots were put on the stack */
	unsigned windows; /* windows merged so far */
	/* results */
	struct scan_item *items;
	size_t n_items, cap_items;
	struct scan_dir *dirs;
	size_t n_dirs, cap_dirs;
	int root_err;
	bool root_mount; /* the root is a mount point */
	bool enospc;
	int dir_err;	   /* first directory below the root that could not be read */
	char *dir_err_rel; /* ...its path relative to the root */
	size_t skipped;	   /* names too long or out of memory */
	struct stat root_st;
};

/* --- the walk (threadpool) ------------------------------------------------ */

static int push_str(char ***v, size_t *n, size_t *cap, const char *s)
{
	char *dup = strdup(s);

	if (!dup)
		return -ENOMEM;
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 16;
		char **nv = realloc(*v, nc * sizeof *nv);

		if (!nv) {
			free(dup);
			return -ENOMEM;
		}
		*v = nv;
		*cap = nc;
	}
	(*v)[(*n)++] = dup;
	return 0;
}

/* A directory below the root that cannot be watched or listed (EACCES,
 * say): its files are invisible until it is readable and rescanned, so say
 * which one and why. Vanished directories (ENOENT) are not worth a word. */
static void dir_failed(struct scan_job *j, const char *rel, int err)
{
	if (err == ENOENT || j->dir_err)
		return;
	j->dir_err = err;
	j->dir_err_rel = strdup(rel);
}

static void add_dir(struct scan_job *j, int wd, const char *rel)
{
	if (j->n_dirs == j->cap_dirs) {
		size_t nc = j->cap_dirs ? j->cap_dirs * 2 : 16;
		struct scan_dir *nd = realloc(j->dirs, nc * sizeof *nd);

		if (!nd)
			goto oom;
		j->dirs = nd;
		j->cap_dirs = nc;
	}
	j->dirs[j->n_dirs].rel = strdup(rel);
	if (!j->dirs[j->n_dirs].rel)
		goto oom;
	j->dirs[j->n_dirs++].wd = wd;
	return;
oom:
	/* The watch stays; events from it find no directory and force a rescan. */
	j->skipped++;
}

/* oneshot: is the file finished now, and if not, why? */
static char *classify(struct scan_job *j, const char *rel, const char *abs,
		      const struct file_id *id)
{
	char buf[WATCH_PATH_MAX + 64], marker[WATCH_PATH_MAX], mabs[WATCH_PATH_MAX];
	int64_t age = settle_age_ms(id, j->now_ns);
	struct stat st;

	if (age < 0)
		snprintf(buf, sizeof buf, "modified in the future (clock skew of %lld ms)",
			 (long long)-age);
	else if (age < j->cfg->settle_ms)
		snprintf(buf, sizeof buf, "modified %lld ms ago", (long long)age);
	else if (watch_lease_probe(abs) == 1)
		snprintf(buf, sizeof buf, "open for writing");
	else if (ignore_marker_path(j->cfg, rel, marker, sizeof marker) == 0 &&
		 (watch_join(mabs, sizeof mabs, j->cfg->path, marker) < 0 ||
		  fstatat(AT_FDCWD, mabs, &st, AT_SYMLINK_NOFOLLOW) < 0))
		snprintf(buf, sizeof buf, "waiting for ready marker %s", marker);
	else
		return NULL;
	return strdup(buf);
}

static void add_item(struct scan_job *j, const char *rel, const char *abs, const struct stat *st)
{
	struct scan_item *it;

	if (j->n_items == j->cap_items) {
		size_t nc = j->cap_items ? j->cap_items * 2 : 64;
		struct scan_item *ni = realloc(j->items, nc * sizeof *ni);

		if (!ni) {
			j->skipped++;
			return;
		}
		j->items = ni;
		j->cap_items = nc;
	}
	it = &j->items[j->n_items];
	it->rel = strdup(rel);
	if (!it->rel) {
		j->skipped++;
		return;
	}
	file_id_from_stat(&it->id, st);
	it->reason = j->oneshot ? classify(j, rel, abs, &it->id) : NULL;
	j->n_items++;
}

static void scan_one_dir(struct scan_job *j, const char *rel, char ***stack, size_t *n, size_t *cap)
{
	char abs[WATCH_PATH_MAX], child[WATCH_PATH_MAX], cabs[WATCH_PATH_MAX];
	bool root = !*rel;
	struct dirent *de;
	struct stat st;
	int dfd, wd;
	DIR *d;

	if (watch_join(abs, sizeof abs, j->cfg->path, rel) < 0) {
		j->skipped++;
		return;
	}
	if (j->ifd >= 0) {
		/* Watch first, then list: nothing created in between is missed. */
		wd = inotify_add_watch(j->ifd, abs, WATCH_MASK | (root ? 0 : IN_DONT_FOLLOW));
		if (wd >= 0)
			add_dir(j, wd, rel);
		else if (errno == ENOSPC)
			j->enospc = true;
		else if (!root)
			dir_failed(j, rel, errno);
	}
	dfd = open(abs, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOCTTY | (root ? 0 : O_NOFOLLOW));
	if (dfd < 0) {
		if (root && j->full)
			j->root_err = errno;
		else if (!root)
			dir_failed(j, rel, errno);
		return;
	}
	if (root) {
		struct statx stx;

		if (fstat(dfd, &j->root_st) < 0 && j->full)
			j->root_err = errno;
		if (statx(dfd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &stx) == 0)
			j->root_mount = (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT) != 0;
	}
	d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return;
	}
	while ((de = readdir(d))) {
		unsigned char type = de->d_type;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (watch_join(child, sizeof child, rel, de->d_name) < 0 ||
		    watch_join(cabs, sizeof cabs, abs, de->d_name) < 0) {
			j->skipped++;
			continue;
		}
		if (type == DT_REG || type == DT_UNKNOWN) {
			if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
				continue;
			type = S_ISREG(st.st_mode) ? DT_REG : S_ISDIR(st.st_mode) ? DT_DIR : DT_LNK;
		}
		if (type == DT_DIR) {
			if (j->cfg->recursive && !ignore_dir(j->cfg, child) &&
			    !watch_dir_excluded(j->cfg, cabs) && push_str(stack, n, cap, child) < 0)
				j->skipped++;
		} else if (type == DT_REG && !ignore_file(j->cfg, child)) {
			add_item(j, child, cabs, &st);
		}
		/* symlinks, FIFOs, sockets, devices: never reported, never opened */
	}
	closedir(d);
}

static void scan_work(uv_work_t *req)
{
	struct scan_job *j = container_of(req, struct scan_job, req);
	size_t i;

	if (!j->started) {
		j->started = true;
		for (i = 0; i < j->n_roots; i++)
			if (push_str(&j->stack, &j->n_stack, &j->cap_stack, j->roots[i]) < 0)
				j->skipped++;
	}
	while (j->n_stack > 0 && j->n_items < SCAN_WINDOW) {
		char *rel = j->stack[--j->n_stack];

		scan_one_dir(j, rel, &j->stack, &j->n_stack, &j->cap_stack);
		free(rel);
	}
}

/* --- after the walk (loop thread) ---------------------------------------- */

/* Forget one window's listing (the walk itself stays). */
static void job_clear_window(struct scan_job *j)
{
	size_t i;

	for (i = 0; i < j->n_items; i++) {
		free(j->items[i].rel);
		free(j->items[i].reason);
	}
	for (i = 0; i < j->n_dirs; i++)
		free(j->dirs[i].rel);
	free(j->items);
	free(j->dirs);
	j->items = NULL;
	j->dirs = NULL;
	j->n_items = j->cap_items = j->n_dirs = j->cap_dirs = 0;
}

static void job_free(struct scan_job *j)
{
	size_t i;

	job_clear_window(j);
	for (i = 0; i < j->n_roots; i++)
		free(j->roots[i]);
	for (i = 0; i < j->n_stack; i++)
		free(j->stack[i]);
	free(j->stack);
	free(j->dir_err_rel);
	free(j->roots);
	free(j);
}

/* Results that will not be used: remove the watches the walk added. */
static void job_drop_watches(struct watcher *w, struct scan_job *j)
{
	size_t i;

	for (i = 0; i < j->n_dirs; i++)
		if (!watch_wdir_find(w, j->dirs[i].wd))
			inotify_rm_watch(w->ifd, j->dirs[i].wd);
}

static bool under_roots(const struct scan_job *j, const char *rel)
{
	size_t i;

	if (j->full)
		return true;
	for (i = 0; i < j->n_roots; i++) {
		size_t len = strlen(j->roots[i]);

		if (strncmp(rel, j->roots[i], len) == 0 && rel[len] == '/')
			return true;
	}
	return false;
}

static void merge_items(struct watcher *w, struct wfolder *f, struct scan_job *j)
{
	int64_t now = (int64_t)uv_now(w->loop), wall;
	int sms = f->cfg->settle_ms;
	struct timespec ts;
	size_t i;

	clock_gettime(CLOCK_REALTIME, &ts);
	wall = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
	for (i = 0; i < j->n_items; i++) {
		struct scan_item *it = &j->items[i];
		struct wentry *e = watch_entry_find(w, f->idx, it->rel);

		if (!e) {
			int64_t since = now, age;

			e = watch_entry_add(w, f->idx, it->rel);
			if (!e) {
				log_error("watcher", "out of memory tracking a file");
				break;
			}
			e->gen = j->gen;
			if (w->opts.known && w->opts.known(f->cfg, it->rel, &it->id, w->arg)) {
				watch_entry_step(w, e, SETTLE_EV_FOUND, &it->id, now);
				watch_entry_step(w, e, SETTLE_EV_REPORTED, NULL, now);
				w->stats.finished++;
				/* Last: the owner's callback may change the table. */
				watch_emit_known(w, f, it->rel, &it->id);
				continue;
			}
			/*
			 * On a local filesystem ctime cannot be set back, so a file
			 * untouched for settle_ms already is credited with that age
			 * (the lease probe still runs). Not on polled folders: a
			 * server's clock may lag ours.
			 */
			age = settle_age_ms(&it->id, wall);
			if (f->mode == WATCH_EVENTS && age > 0)
				since = now - (age < sms ? age : sms);
			watch_entry_step(w, e, SETTLE_EV_FOUND, &it->id, since);
		} else {
			watch_entry_step(w, e, SETTLE_EV_STAT, &it->id, now);
		}
		e->gen = j->gen;
		watch_entry_sync(w, e);
	}
}

/* After the last window: entries the walk did not see are gone, unless
 * created since (lstat says). */
static void merge_unseen(struct watcher *w, struct wfolder *f, struct scan_job *j)
{
	size_t i;

	for (i = 0; i < w->nbuckets; i++) {
		struct wentry *e = w->buckets[i], *next;
		struct stat st;

		for (; e; e = next) {
			const char *abs;

			next = e->hnext;
			if (e->folder != f->idx || e->gen == j->gen || !under_roots(j, e->relpath))
				continue;
			abs = watch_abspath(w, f, e->relpath);
			if (!abs || fstatat(AT_FDCWD, abs, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
			    !S_ISREG(st.st_mode))
				watch_entry_remove(w, e, "not found by a scan");
		}
	}
}

static void remap_dev(struct watcher *w, struct wfolder *f, uint64_t from, uint64_t to)
{
	size_t i;

	for (i = 0; i < w->nbuckets; i++) {
		struct wentry *e;

		for (e = w->buckets[i]; e; e = e->hnext)
			if (e->folder == f->idx && !e->done && e->u.busy->st.id.dev == from)
				e->u.busy->st.id.dev = to; /* done: the fingerprint omits it */
	}
}

static void scan_next(struct wfolder *f);
static void scan_done(uv_work_t *req, int status);

static void poll_cb(uv_timer_t *t)
{
	watch_scan_request(container_of(t, struct wfolder, timer), NULL);
}

/* oneshot: report one window's files; last: the walk is over. */
static void oneshot_done(struct watcher *w, struct wfolder *f, struct scan_job *j, bool last)
{
	char esc[LOG_ESC_MAX];
	size_t i;

	if (j->root_err && j->windows == 0)
		log_warnx("watcher", "could not scan drop folder \"%s\" of tenant %s: %s",
			  watch_esc(f->cfg->path, esc), f->cfg->tenant->code,
			  strerror(j->root_err));
	/* A tenant made inactive meanwhile: its files are not reported. */
	for (i = 0; i < j->n_items && f->active && !w->closing; i++) {
		struct scan_item *it = &j->items[i];

		if (!it->reason) {
			w->stats.finished++;
			watch_emit(w, WATCHER_FINISHED, f, it->rel, &it->id, NULL);
		} else if (w->opts.report_settling) {
			watch_emit(w, WATCHER_SETTLING, f, it->rel, &it->id, it->reason);
		}
	}
	if (last && --w->oneshot_left == 0 && !w->closing)
		watch_emit(w, WATCHER_SCAN_DONE, NULL, NULL, NULL, NULL);
}

/* Queue the rest of the walk; false when it cannot be (the scan ends). */
static bool job_continue(struct watcher *w, struct wfolder *f, struct scan_job *j)
{
	job_clear_window(j);
	j->windows++;
	if (uv_queue_work(w->loop, &j->req, scan_work, scan_done) < 0)
		return false;
	w->jobs++;
	f->job = j;
	return true;
}

/* The first window of a full scan read the root: checks that stop the scan. */
static bool root_checks(struct watcher *w, struct wfolder *f, struct scan_job *j)
{
	uint64_t dev = (uint64_t)j->root_st.st_dev, ino = (uint64_t)j->root_st.st_ino;

	if (j->root_err) {
		job_drop_watches(w, j);
		watch_folder_pause(f, PAUSE_GONE, strerror(j->root_err));
		return false;
	}
	if (f->scanned && !f->resume_pending && (dev != f->dev || ino != f->ino)) {
		job_drop_watches(w, j);
		watch_root_changed(f, j->root_mount);
		return false;
	}
	if (f->resume_pending && f->dev && dev != f->dev)
		remap_dev(w, f, f->dev, dev);
	f->dev = dev;
	f->ino = ino;
	f->mount_root = j->root_mount;
	return true;
}

static void scan_done(uv_work_t *req, int status)
{
	struct scan_job *j = container_of(req, struct scan_job, req);
	struct wfolder *f = j->f;
	struct watcher *w = f->w;
	bool last = j->n_stack == 0;
	char esc[LOG_ESC_MAX];
	size_t i;

	w->jobs--;
	f->job = NULL;
	if (status < 0 || w->closing) {
		job_free(j);
		watch_maybe_freed(w);
		return;
	}
	if (j->oneshot) {
		oneshot_done(w, f, j, last);
		if (!last && job_continue(w, f, j))
			return;
		if (!last) /* could not go on: what was reported stands */
			oneshot_done(w, f, j, true);
		job_free(j);
		scan_next(f); /* a tenant re-activated meanwhile wants its pass */
		return;
	}
	if (!f->active) {
		job_drop_watches(w, j);
		job_free(j);
		return;
	}
	if (last && j->skipped)
		log_warnx("watcher",
			  "scan of \"%s\" skipped %zu entries (path too long or out of "
			  "memory)",
			  watch_esc(f->cfg->path, esc), j->skipped);
	if (last && j->dir_err) {
		char rel[LOG_ESC_MAX];

		log_warnx("watcher", "could not read directory \"%s/%s\" of tenant %s: %s",
			  watch_esc(f->cfg->path, esc),
			  j->dir_err_rel ? watch_esc(j->dir_err_rel, rel) : "?",
			  f->cfg->tenant->code, strerror(j->dir_err));
	}
	if (j->full && j->windows == 0 && j->root_err) {
		root_checks(w, f, j);
		job_free(j);
		return;
	}
	if (f->paused && !f->resume_pending) {
		job_drop_watches(w, j);
		job_free(j);
		return;
	}
	if (j->full && j->windows == 0 && !root_checks(w, f, j)) {
		job_free(j);
		return;
	}
	if (j->enospc && f->mode == WATCH_EVENTS) {
		log_warnx("watcher",
			  "could not add an inotify watch below \"%s\": "
			  "fs.inotify.max_user_watches reached; polling this folder every "
			  "%d ms instead",
			  watch_esc(f->cfg->path, esc), f->cfg->poll_interval_ms);
		w->stats.rescans++;
		f->mode = WATCH_POLL;
		job_drop_watches(w, j);
		watch_wdir_drop(w, f->idx, NULL, true);
	} else if (f->mode == WATCH_EVENTS) {
		for (i = 0; i < j->n_dirs; i++)
			if (watch_wdir_add(w, j->dirs[i].wd, f->idx, j->dirs[i].rel) < 0)
				inotify_rm_watch(w->ifd, j->dirs[i].wd);
	} else {
		/* Polling since an earlier window: its watches are not wanted. */
		job_drop_watches(w, j);
	}
	/* The rest of the walk (if any) adds no watches in poll mode. */
	if (f->mode != WATCH_EVENTS)
		j->ifd = -1;
	merge_items(w, f, j);
	if (!last) {
		if (job_continue(w, f, j))
			return;
		/* Without the rest of the walk, "not seen" means nothing: keep
		 * every entry and scan again from scratch. */
		log_error("watcher", "could not continue a scan of \"%s\"",
			  watch_esc(f->cfg->path, esc));
		f->want_full = true;
		job_free(j);
		scan_next(f);
		return;
	}
	merge_unseen(w, f, j);
	if (j->full) {
		f->scanned = true;
		if (f->resume_pending) {
			f->resume_pending = false;
			f->paused = false;
			log_info("watcher", "drop folder \"%s\" of tenant %s resumed",
				 watch_esc(f->cfg->path, esc), f->cfg->tenant->code);
			watch_emit(w, WATCHER_FOLDER_RESUMED, f, NULL, NULL, NULL);
			watch_arm(w, (int64_t)uv_now(w->loop));
		}
	}
	job_free(j);
	if (!w->closing)
		scan_next(f);
}

static void scan_start(struct wfolder *f, bool full)
{
	struct watcher *w = f->w;
	struct scan_job *j = calloc(1, sizeof *j);
	struct timespec ts;
	size_t i;

	if (!j)
		goto oom;
	j->f = f;
	j->cfg = f->cfg;
	j->full = full;
	j->oneshot = w->opts.oneshot;
	j->ifd = !w->opts.oneshot && f->mode == WATCH_EVENTS ? w->ifd : -1;
	j->gen = ++w->gen;
	clock_gettime(CLOCK_REALTIME, &ts);
	j->now_ns = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
	if (full) {
		size_t cap = 0;

		if (push_str(&j->roots, &j->n_roots, &cap, "") < 0) {
			free(j);
			goto oom;
		}
		for (i = 0; i < f->n_pending; i++)
			free(f->pending[i]);
		free(f->pending);
		f->want_full = false;
		if (f->scanned)
			w->stats.rescans++;
	} else {
		j->roots = f->pending;
		j->n_roots = f->n_pending;
	}
	f->pending = NULL;
	f->n_pending = 0;
	if (f->timer_init)
		uv_timer_stop(&f->timer);
	if (uv_queue_work(w->loop, &j->req, scan_work, scan_done) < 0) {
		job_free(j);
		goto oom;
	}
	w->jobs++;
	f->job = j;
	return;
oom:
	log_error("watcher", "could not start a scan of \"%s\": out of memory", f->cfg->path);
}

static void scan_next(struct wfolder *f)
{
	if (f->job || !f->active || f->w->closing)
		return;
	if (f->again) {
		f->again = false;
		f->want_full = true;
	}
	if (f->want_full)
		scan_start(f, true);
	else if (f->n_pending)
		scan_start(f, false);
	else if (f->mode == WATCH_POLL && !f->paused)
		watch_folder_timer(f, poll_cb, (uint64_t)f->cfg->poll_interval_ms);
}

void watch_scan_request(struct wfolder *f, const char *subdir)
{
	size_t i, cap;

	if (!f->active || f->w->closing || (f->paused && !f->resume_pending))
		return;
	if (!subdir) {
		f->want_full = true;
	} else if (!f->want_full) {
		for (i = 0; i < f->n_pending; i++)
			if (strcmp(f->pending[i], subdir) == 0)
				break;
		cap = f->n_pending;
		if (i == f->n_pending && push_str(&f->pending, &f->n_pending, &cap, subdir) < 0)
			f->want_full = true; /* cannot remember it: scan everything */
	}
	scan_next(f);
}

void watch_scan_cancel(struct wfolder *f)
{
	if (f->job)
		uv_cancel((uv_req_t *)&f->job->req);
}
