/*
 * The settle timer: one uv_timer for every settling file of every folder,
 * armed for the earliest deadline. When it fires it walks the settling list;
 * each file past its deadline is lstat'ed again (it may have changed without
 * an event: mmap writes, polled folders), settle_check decides, and a file
 * without open history gets a read-lease probe. Finished files are reported
 * after the walk, because the owner's callback may forget or finish other
 * files. Ticks are at least TICK_MIN_MS apart so a burst costs few walks.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ignore.h"
#include "log.h"
#include "util.h"
#include "watch_int.h"

/* Ticks closer together than this are merged: a burst of files with deadlines
 * a few microseconds apart then costs one walk of the settling list. */
#define TICK_MIN_MS 10

/*
 * Is a writer holding the file open? A read lease cannot be taken while any
 * descriptor has it open for writing (EAGAIN). O_NONBLOCK keeps the open from
 * waiting on somebody else's lease; O_NOFOLLOW keeps a symlink from being
 * followed. Returns 1 (writer), 0 (none), or -errno (cannot tell: EACCES or
 * EPERM without CAP_LEASE, EINVAL on filesystems without leases).
 */
int watch_lease_probe(const char *abspath)
{
	struct stat st;
	int fd = open(abspath, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY), rc = 0;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		rc = -EINVAL;
	else if (fcntl(fd, F_SETLEASE, F_RDLCK) < 0)
		rc = errno == EAGAIN ? 1 : -errno;
	else
		fcntl(fd, F_SETLEASE, F_UNLCK);
	close(fd);
	return rc;
}

static void settle_tick(uv_timer_t *t);

void watch_arm(struct watcher *w, int64_t due)
{
	int64_t now = (int64_t)uv_now(w->loop);

	if (w->closing || w->opts.oneshot)
		return;
	if (w->timer_due && w->timer_due <= due)
		return;
	w->timer_due = due;
	uv_timer_start(&w->settle_timer, settle_tick, due > now ? (uint64_t)(due - now) : 0, 0);
}

enum eval { EVAL_KEEP, EVAL_READY, EVAL_GONE };

/* A settling file reached its deadline: look at it again. */
static enum eval evaluate(struct watcher *w, struct wentry *e, int64_t now)
{
	struct wfolder *f = &w->folders[e->folder];
	struct settle *sst = &e->u.busy->st; /* on the settling list: never done */
	int sms = f->cfg->settle_ms, rc;
	char marker[WATCH_PATH_MAX], esc[LOG_ESC_MAX];
	const char *abs = watch_abspath(w, f, e->relpath);
	struct file_id id;
	struct stat st;

	if (!abs)
		return EVAL_GONE;
	if (fstatat(AT_FDCWD, abs, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		if (errno == ENOENT || errno == ENOTDIR)
			return EVAL_GONE;
		log_warn("watcher", "could not stat file \"%s\"", watch_esc(abs, esc));
		settle_step(sst, SETTLE_EV_BLOCKED, NULL, now, sms, e->relpath);
		return EVAL_KEEP;
	}
	if (!S_ISREG(st.st_mode))
		return EVAL_GONE;
	file_id_from_stat(&id, &st);
	settle_step(sst, SETTLE_EV_STAT, &id, now, sms, e->relpath);
	switch (settle_check(sst, now, sms)) {
	case SETTLE_WAIT:
	case SETTLE_IDLE: return EVAL_KEEP;
	case SETTLE_OPEN:
		log_debug("watcher", "\"%s\": still open by a writer", watch_esc(e->relpath, esc));
		settle_step(sst, SETTLE_EV_BLOCKED, NULL, now, sms, e->relpath);
		return EVAL_KEEP;
	case SETTLE_NEED_PROBE:
		rc = watch_lease_probe(abs);
		if (rc == -ENOENT)
			return EVAL_GONE;
		if (rc == 1) {
			log_debug("watcher", "\"%s\": open for writing (lease probe)",
				  watch_esc(e->relpath, esc));
			settle_step(sst, SETTLE_EV_BLOCKED, NULL, now, sms, e->relpath);
			return EVAL_KEEP;
		}
		break;
	case SETTLE_READY: break;
	}
	if (ignore_marker_path(f->cfg, e->relpath, marker, sizeof marker) == 0) {
		const char *mabs = watch_abspath(w, f, marker);

		if (!mabs || fstatat(AT_FDCWD, mabs, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			settle_step(sst, SETTLE_EV_BLOCKED, NULL, now, sms, e->relpath);
			return EVAL_KEEP;
		}
	}
	return EVAL_READY;
}

static void settle_tick(uv_timer_t *t)
{
	struct watcher *w = container_of(t, struct watcher, settle_timer);
	int64_t now = (int64_t)uv_now(w->loop), next = INT64_MAX;
	struct wlink ready, *l, *lnext;

	w->timer_due = 0;
	link_init(&ready);
	for (l = w->settling.next; l != &w->settling; l = lnext) {
		struct wentry *e = watch_settling_entry(l);
		struct wfolder *f = &w->folders[e->folder];
		int64_t due = settle_due(&e->u.busy->st, f->cfg->settle_ms);

		lnext = l->next;
		if (f->paused || !f->active)
			continue; /* looked at again when the folder is back */
		if (due <= now) {
			switch (evaluate(w, e, now)) {
			case EVAL_GONE:
				watch_entry_remove(w, e, "deleted while settling");
				continue;
			case EVAL_READY:
				link_del(l);
				link_add_tail(&ready, l);
				continue;
			case EVAL_KEEP:
				if (e->u.busy->st.state != SETTLE_SETTLING) {
					watch_entry_sync(w, e);
					continue;
				}
				due = settle_due(&e->u.busy->st, f->cfg->settle_ms);
				break;
			}
		}
		if (due < next)
			next = due;
	}
	/* Report after the walk: the owner's callback may forget or finish
	 * other entries, which only unlinks them from whichever list they are on. */
	while (link_linked(&ready) && !w->closing) {
		struct wentry *e = watch_settling_entry(ready.next);
		struct wfolder *f = &w->folders[e->folder];

		link_del(ready.next);
		w->nsettling--;
		settle_step(&e->u.busy->st, SETTLE_EV_REPORTED, NULL, now, f->cfg->settle_ms,
			    e->relpath);
		/* A deferred retry was counted when it first finished. */
		if (e->u.busy->st.backoffs == 0)
			w->stats.finished++;
		watch_emit_ready(w, f, e->relpath, &e->u.busy->st.id, e->u.busy->st.backoffs);
	}
	/* Closing: whatever was not reported goes back on the settling list
	 * (still counted there), not left linked to this stack frame. */
	while (link_linked(&ready)) {
		struct wlink *r = ready.next;

		link_del(r);
		link_add_tail(&w->settling, r);
	}
	if (next != INT64_MAX)
		watch_arm(w, next > now + TICK_MIN_MS ? next : now + TICK_MIN_MS);
}
