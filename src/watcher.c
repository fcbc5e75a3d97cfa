/*
 * Watcher: the object, events on one file and the public API.
 *
 * The table of tracked files is watch_table.c. Files that are settling are
 * on one list, walked by the single settle timer (watch_tick.c). Events on
 * one file arrive here from the inotify reader (watch_events.c) and from
 * scans (watch_scan.c).
 */
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

/* How often every folder root is stat'ed: an unmounted bind mount or a
 * replaced directory gives no inotify event. One statx per folder. */
#define ROOT_CHECK_MS 2000

const char *watch_esc(const char *s, char *buf)
{
	return log_escape(s, buf, LOG_ESC_MAX);
}

int watch_join(char *out, size_t outsz, const char *dir, const char *name)
{
	int n = *dir && *name ? snprintf(out, outsz, "%s/%s", dir, name)
			      : snprintf(out, outsz, "%s", *dir ? dir : name);

	return n < 0 || (size_t)n >= outsz ? -ENAMETOOLONG : 0;
}

const char *watch_abspath(struct watcher *w, const struct wfolder *f, const char *relpath)
{
	if (watch_join(w->abuf, sizeof w->abuf, f->cfg->path, relpath) < 0)
		return NULL;
	return w->abuf;
}

static int64_t wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* --- events on one file --------------------------------------------------- */

/*
 * Something happened to relpath (created, renamed into place, attributes or
 * content changed): lstat it, never following a symlink and never opening it,
 * and feed the identity to its state machine. Anything but a regular file is
 * dropped here, which is how FIFOs, sockets, devices and symlinks stay out.
 */
void watch_file_event(struct watcher *w, struct wfolder *f, const char *relpath,
		      enum settle_event how)
{
	const char *abs = watch_abspath(w, f, relpath);
	struct wentry *e = watch_entry_find(w, f->idx, relpath);
	int64_t now = (int64_t)uv_now(w->loop);
	struct file_id id;
	struct stat st;

	if (!abs || fstatat(AT_FDCWD, abs, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode)) {
		if (e)
			watch_entry_remove(w, e, "gone or not a regular file");
		return;
	}
	file_id_from_stat(&id, &st);
	if (!e) {
		e = watch_entry_add(w, f->idx, relpath);
		if (!e) {
			log_error("watcher", "out of memory tracking a file");
			return;
		}
		watch_entry_step(w, e,
				 how == SETTLE_EV_CREATED ? SETTLE_EV_CREATED : SETTLE_EV_FOUND,
				 &id, now);
	} else if (how == SETTLE_EV_CREATED) {
		watch_entry_step(w, e, SETTLE_EV_CREATED, &id, now);
	} else {
		watch_entry_step(w, e, SETTLE_EV_STAT, &id, now);
	}
	watch_entry_sync(w, e);
}

/* A ready marker appeared: files of its directory waiting for one look again. */
void watch_marker_seen(struct watcher *w, struct wfolder *f, const char *relpath)
{
	const char *slash = strrchr(relpath, '/');
	size_t dlen = slash ? (size_t)(slash - relpath) : 0;
	struct wlink *l;

	for (l = w->settling.next; l != &w->settling; l = l->next) {
		struct wentry *e = watch_settling_entry(l);
		const char *es = strrchr(e->relpath, '/');
		size_t elen = es ? (size_t)(es - e->relpath) : 0;

		if (e->folder == f->idx && elen == dlen &&
		    strncmp(e->relpath, relpath, dlen) == 0) {
			e->u.busy->st.recheck_ms = 0;
			watch_entry_sync(w, e);
		}
	}
}

static void emit(struct watcher *w, enum watcher_event ev, struct wfolder *f, const char *relpath,
		 const struct file_id *id, const char *reason, bool known, unsigned attempt)
{
	struct watch_file wf = {
		.folder = f ? f->cfg : NULL, .reason = reason, .known = known, .attempt = attempt};

	if (relpath) {
		snprintf(w->rbuf, sizeof w->rbuf, "%s", relpath);
		wf.relpath = w->rbuf;
		wf.abspath = watch_abspath(w, f, relpath);
	}
	if (id)
		wf.id = *id;
	w->cb(w, ev, relpath || ev != WATCHER_SCAN_DONE ? &wf : NULL, w->arg);
}

void watch_emit(struct watcher *w, enum watcher_event ev, struct wfolder *f, const char *relpath,
		const struct file_id *id, const char *reason)
{
	emit(w, ev, f, relpath, id, reason, false, 0);
}

void watch_emit_known(struct watcher *w, struct wfolder *f, const char *relpath,
		      const struct file_id *id)
{
	emit(w, WATCHER_FINISHED, f, relpath, id, NULL, true, 0);
}

void watch_emit_ready(struct watcher *w, struct wfolder *f, const char *relpath,
		      const struct file_id *id, unsigned attempt)
{
	emit(w, WATCHER_FINISHED, f, relpath, id, NULL, false, attempt);
}

/* --- public API ----------------------------------------------------------- */

static void reconcile_cb(uv_timer_t *t);

/* ms +-10% (xorshift), so that what started together does not repeat in step. */
static uint64_t jittered(struct watcher *w, uint64_t ms)
{
	w->rng ^= w->rng << 13;
	w->rng ^= w->rng >> 7;
	w->rng ^= w->rng << 17;
	return ms - ms / 10 + (ms / 5 ? w->rng % (ms / 5) : 0);
}

static void reconcile_arm(struct watcher *w)
{
	uint64_t ms = (uint64_t)w->cfg->reconcile_interval_s * 1000;

	if (!ms || w->closing)
		return;
	/* Many nodes started together do not scan in step. */
	uv_timer_start(&w->reconcile, reconcile_cb, jittered(w, ms), 0);
}

static void rootcheck_cb(uv_timer_t *t)
{
	watch_roots_check(container_of(t, struct watcher, rootcheck));
}

static void reconcile_cb(uv_timer_t *t)
{
	struct watcher *w = container_of(t, struct watcher, reconcile);

	log_info("watcher", "periodic reconcile scan of every folder");
	watcher_rescan_all(w);
	reconcile_arm(w);
}

int watcher_create(uv_loop_t *loop, const struct config *cfg, const struct watcher_opts *opts,
		   watcher_cb cb, void *arg, struct watcher **out)
{
	struct watcher *w = calloc(1, sizeof *w);
	size_t i, j, n = 0;

	if (!w)
		return -ENOMEM;
	for (i = 0; i < cfg->n_tenants; i++)
		n += cfg->tenants[i].n_folders;
	if (n > UINT16_MAX || !(w->folders = calloc(n ? n : 1, sizeof *w->folders))) {
		free(w);
		return n > UINT16_MAX ? -E2BIG : -ENOMEM;
	}
	w->loop = loop;
	w->cfg = cfg;
	w->opts = *opts;
	w->cb = cb;
	w->arg = arg;
	w->ifd = -1;
	w->rng = (uint64_t)wall_ns() | 1;
	link_init(&w->settling);
	for (i = 0; i < cfg->n_tenants; i++) {
		for (j = 0; j < cfg->tenants[i].n_folders; j++) {
			struct wfolder *f = &w->folders[w->n_folders];

			f->w = w;
			f->cfg = &cfg->tenants[i].folders[j];
			f->idx = (uint16_t)w->n_folders++;
			f->tenant_on = cfg->tenants[i].active != 0;
			f->owned = !opts->folder_locks;
			f->active = f->tenant_on && f->owned;
		}
	}
	uv_timer_init(loop, &w->settle_timer);
	uv_timer_init(loop, &w->reconcile);
	uv_timer_init(loop, &w->rootcheck);
	*out = w;
	return 0;
}

static void oneshot_empty(uv_timer_t *t)
{
	struct watcher *w = container_of(t, struct watcher, settle_timer);

	watch_emit(w, WATCHER_SCAN_DONE, NULL, NULL, NULL, NULL);
}

int watcher_start(struct watcher *w)
{
	size_t i;
	int rc;

	if (w->started)
		return -EALREADY;
	w->started = true;
	if (!w->opts.oneshot) {
		rc = watch_events_open(w);
		if (rc < 0)
			return rc;
		reconcile_arm(w);
		uv_timer_start(&w->rootcheck, rootcheck_cb, ROOT_CHECK_MS, ROOT_CHECK_MS);
	}
	for (i = 0; i < w->n_folders; i++) {
		if (!w->folders[i].active)
			continue;
		if (w->opts.oneshot)
			w->oneshot_left++;
		watch_folder_begin(&w->folders[i]);
	}
	if (w->opts.oneshot && !w->oneshot_left)
		uv_timer_start(&w->settle_timer, oneshot_empty, 0, 0);
	return 0;
}

/*
 * The one place a folder starts or stops being watched: it is watched while
 * its tenant is active and this node owns it. Stopping forgets its files (a
 * file in the pipeline finishes; the ledger makes a second pass harmless);
 * starting rescans it from scratch.
 */
static void folder_gate(struct watcher *w, struct wfolder *f, bool tenant_on, bool owned)
{
	bool on = tenant_on && owned;

	f->tenant_on = tenant_on;
	f->owned = owned;
	if (f->active == on)
		return;
	f->active = on;
	if (!on) {
		watch_folder_stop(f);
		watch_entries_forget(w, f, NULL);
	} else if (w->started && !w->closing) {
		if (w->opts.oneshot)
			w->oneshot_left++;
		watch_folder_begin(f);
	}
}

void watcher_set_tenant_active(struct watcher *w, const char *tenant_code, bool active)
{
	size_t i;

	for (i = 0; i < w->n_folders; i++) {
		struct wfolder *f = &w->folders[i];

		if (strcmp(f->cfg->tenant->code, tenant_code) != 0 || f->tenant_on == active)
			continue;
		log_info("watcher", "tenant %s %s: folder \"%s\"", tenant_code,
			 active ? "active" : "inactive", f->cfg->path);
		folder_gate(w, f, active, f->owned);
	}
}

void watcher_set_folder_owned(struct watcher *w, const struct folder_cfg *folder, bool owned)
{
	size_t i;

	for (i = 0; i < w->n_folders; i++) {
		struct wfolder *f = &w->folders[i];

		if (f->cfg != folder || f->owned == owned)
			continue;
		log_info("watcher", "folder \"%s\" of tenant %s: %s", f->cfg->path,
			 f->cfg->tenant->code,
			 owned ? "owned by this node: scanning it"
			       : "not owned by this node: not watched");
		folder_gate(w, f, f->tenant_on, owned);
	}
}

bool watcher_folder_active(const struct watcher *w, const struct folder_cfg *folder)
{
	size_t i;

	for (i = 0; i < w->n_folders; i++)
		if (w->folders[i].cfg == folder)
			return w->folders[i].tenant_on;
	return true;
}

static struct wentry *lookup(struct watcher *w, const struct folder_cfg *folder,
			     const char *relpath)
{
	size_t i;

	for (i = 0; i < w->n_folders; i++)
		if (w->folders[i].cfg == folder)
			return watch_entry_find(w, (uint16_t)i, relpath);
	return NULL;
}

void watcher_file_done(struct watcher *w, const struct folder_cfg *folder, const char *relpath)
{
	struct wentry *e = lookup(w, folder, relpath);

	if (!e)
		return;
	watch_entry_step(w, e, SETTLE_EV_DONE, NULL, (int64_t)uv_now(w->loop));
	watch_entry_sync(w, e);
}

void watcher_file_retry(struct watcher *w, const struct folder_cfg *folder, const char *relpath)
{
	struct wentry *e = lookup(w, folder, relpath);

	if (!e)
		return;
	watch_entry_step(w, e, SETTLE_EV_RETRY, NULL, (int64_t)uv_now(w->loop));
	watch_entry_sync(w, e);
}

int watcher_file_backoff(struct watcher *w, const struct folder_cfg *folder, const char *relpath,
			 const struct file_id *id, unsigned min_ms, unsigned max_ms,
			 unsigned *attempt)
{
	struct wentry *e = lookup(w, folder, relpath);
	int64_t now = (int64_t)uv_now(w->loop), since = now;
	uint64_t delay;
	struct settle *s;

	*attempt = 0;
	if (!e || w->opts.oneshot || w->closing)
		return 0;
	/* Only the version the owner worked on: a change since made it a new
	 * version, settling or in the owner's hands on its own. */
	if (e->done) {
		if (e->u.fp != watch_fp(id))
			return -ESTALE;
	} else {
		s = &e->u.busy->st;
		if (s->state != SETTLE_FINISHED || !file_id_equal(&s->id, id))
			return -ESTALE;
		since = s->changed_ms;
	}
	watch_entry_step(w, e, SETTLE_EV_RETRY, NULL, now);
	if (e->done)
		return 0; /* could not be woken (out of memory): logged there */
	s = &e->u.busy->st;
	/* Unchanged since then: the oldest-settling age shows a file stuck here. */
	s->changed_ms = since;
	delay = (uint64_t)min_ms << (s->backoffs < 20 ? s->backoffs : 20);
	delay = jittered(w, delay > max_ms ? max_ms : delay);
	if (s->backoffs < UINT8_MAX)
		s->backoffs++;
	*attempt = s->backoffs;
	settle_defer(s, now + (int64_t)delay);
	watch_entry_sync(w, e);
	return delay > INT32_MAX ? INT32_MAX : (int)delay;
}

void watcher_file_forget(struct watcher *w, const struct folder_cfg *folder, const char *relpath)
{
	struct wentry *e = lookup(w, folder, relpath);

	if (e)
		watch_entry_remove(w, e, "owner forgot it");
}

void watcher_rescan_all(struct watcher *w)
{
	size_t i;

	if (w->opts.oneshot || w->closing)
		return;
	for (i = 0; i < w->n_folders; i++)
		if (w->folders[i].active && !w->folders[i].paused)
			watch_scan_request(&w->folders[i], NULL);
}

void watcher_get_stats(const struct watcher *w, struct watcher_stats *st)
{
	*st = w->stats;
	st->watches = w->nwdirs;
	st->tracked = w->nentries;
	st->settling = w->nsettling;
	st->scanning = w->jobs;
}

void watcher_get_folder_stats(const struct watcher *w, const struct folder_cfg *folder,
			      struct watcher_folder_stats *st)
{
	struct wlink *l;
	int64_t now = (int64_t)uv_now(w->loop), oldest = now;
	size_t i;

	memset(st, 0, sizeof *st);
	st->mode = st->state = "unknown";
	for (i = 0; i < w->n_folders && w->folders[i].cfg != folder; i++)
		;
	if (i == w->n_folders)
		return;
	st->seen = w->folders[i].seen;
	st->mode = w->folders[i].mode == WATCH_POLL ? "poll" : "events";
	st->state = !w->folders[i].tenant_on ? "inactive"
		    : !w->folders[i].owned   ? "standby"
		    : w->folders[i].paused   ? "paused"
					     : "watching";
	/* A walk of the settling list per scrape: it holds only files in flight. */
	for (l = w->settling.next; l != &w->settling; l = l->next) {
		const struct wentry *e = watch_settling_entry(l);

		if (e->folder != i)
			continue;
		st->settling++;
		if (e->u.busy->st.changed_ms < oldest)
			oldest = e->u.busy->st.changed_ms;
	}
	st->oldest_settling_s = st->settling ? (double)(now - oldest) / 1000.0 : 0;
}

/* --- shutdown ------------------------------------------------------------- */

static void free_all(struct watcher *w)
{
	size_t i;

	watch_table_free(w);
	for (i = 0; i < w->nwbuckets; i++) {
		struct wdir *d = w->wbuckets[i], *next;

		for (; d; d = next) {
			next = d->hnext;
			free(d);
		}
	}
	for (i = 0; i < w->n_folders; i++) {
		size_t j;

		for (j = 0; j < w->folders[i].n_pending; j++)
			free(w->folders[i].pending[j]);
		free(w->folders[i].pending);
	}
	free(w->wbuckets);
	free(w->folders);
}

/* Called whenever a handle closed or a scan came back during shutdown. */
void watch_maybe_freed(struct watcher *w)
{
	void (*cb)(void *) = w->close_cb;
	void *arg = w->close_arg;

	if (!w->closing || w->closes_left > 0 || w->jobs > 0)
		return;
	/* The poll handle is closed: the descriptor may go now. */
	if (w->ifd >= 0)
		close(w->ifd);
	free_all(w);
	free(w);
	if (cb)
		cb(arg);
}

static void handle_closed(uv_handle_t *h)
{
	struct watcher *w = h->data;

	w->closes_left--;
	watch_maybe_freed(w);
}

static void close_handle(struct watcher *w, uv_handle_t *h)
{
	h->data = w;
	w->closes_left++;
	uv_close(h, handle_closed);
}

void watcher_close(struct watcher *w, void (*cb)(void *arg), void *arg)
{
	size_t i;

	if (w->closing)
		return;
	w->closing = true;
	w->close_cb = cb;
	w->close_arg = arg;
	w->closes_left++; /* held until every close below was issued */
	if (w->poll_init)
		close_handle(w, (uv_handle_t *)&w->poll);
	close_handle(w, (uv_handle_t *)&w->settle_timer);
	close_handle(w, (uv_handle_t *)&w->reconcile);
	close_handle(w, (uv_handle_t *)&w->rootcheck);
	for (i = 0; i < w->n_folders; i++) {
		watch_scan_cancel(&w->folders[i]);
		if (w->folders[i].timer_init)
			close_handle(w, (uv_handle_t *)&w->folders[i].timer);
	}
	w->closes_left--;
	watch_maybe_freed(w);
}
