/*
 * The inotify descriptor and the map from watch descriptors to directories.
 *
 * libuv's uv_fs_event asks for no IN_CLOSE_WRITE or IN_OPEN and drops
 * IN_Q_OVERFLOW, so the watcher drives one nonblocking inotify descriptor
 * through a uv_poll_t itself and sees every event it needs: opens and closes
 * feed the settle state machine's writer accounting, renames bring files in
 * under their final name, and an overflow triggers a rescan of every folder
 * instead of silently losing files.
 *
 * Events are handled one at a time on the loop thread; each costs at most one
 * lstat. A directory that appears is handed to the scanner, which adds its
 * watch and lists it (watch_scan.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ignore.h"
#include "log.h"
#include "util.h"
#include "watch_int.h"

/* --- watch descriptor map --------------------------------------------------- */

static int wmap_grow(struct watcher *w)
{
	size_t n = w->nwbuckets ? w->nwbuckets * 2 : 256, i;
	struct wdir **nb = calloc(n, sizeof *nb);

	if (!nb)
		return -ENOMEM;
	for (i = 0; i < w->nwbuckets; i++) {
		struct wdir *d = w->wbuckets[i], *next;

		for (; d; d = next) {
			next = d->hnext;
			d->hnext = nb[(unsigned)d->wd & (n - 1)];
			nb[(unsigned)d->wd & (n - 1)] = d;
		}
	}
	free(w->wbuckets);
	w->wbuckets = nb;
	w->nwbuckets = n;
	return 0;
}

struct wdir *watch_wdir_find(struct watcher *w, int wd)
{
	struct wdir *d;

	if (!w->nwbuckets)
		return NULL;
	for (d = w->wbuckets[(unsigned)wd & (w->nwbuckets - 1)]; d; d = d->hnext)
		if (d->wd == wd)
			return d;
	return NULL;
}

static void wdir_unlink(struct watcher *w, struct wdir *d)
{
	struct wdir **pp = &w->wbuckets[(unsigned)d->wd & (w->nwbuckets - 1)];

	while (*pp != d)
		pp = &(*pp)->hnext;
	*pp = d->hnext;
	w->nwdirs--;
	free(d);
}

int watch_wdir_add(struct watcher *w, int wd, uint16_t folder, const char *relpath)
{
	struct wdir *d = watch_wdir_find(w, wd);
	size_t len = strlen(relpath);

	if (d) {
		/* inotify returns the same descriptor for the same inode: a
		 * directory renamed within the folder keeps its watch. */
		if (d->folder == folder && strcmp(d->relpath, relpath) == 0)
			return 0;
		wdir_unlink(w, d);
	}
	if (w->nwdirs >= w->nwbuckets && wmap_grow(w) < 0)
		return -ENOMEM;
	d = malloc(sizeof *d + len + 1);
	if (!d)
		return -ENOMEM;
	d->wd = wd;
	d->folder = folder;
	memcpy(d->relpath, relpath, len + 1);
	d->hnext = w->wbuckets[(unsigned)wd & (w->nwbuckets - 1)];
	w->wbuckets[(unsigned)wd & (w->nwbuckets - 1)] = d;
	w->nwdirs++;
	return 0;
}

/* Drop the watches of folder below prefix (NULL: all), removing them from
 * the kernel when rm (they are already gone after IN_DELETE). */
void watch_wdir_drop(struct watcher *w, uint16_t folder, const char *prefix, bool rm)
{
	size_t plen = prefix ? strlen(prefix) : 0, i;

	for (i = 0; i < w->nwbuckets; i++) {
		struct wdir *d = w->wbuckets[i], *next;

		for (; d; d = next) {
			next = d->hnext;
			if (d->folder != folder)
				continue;
			if (prefix && (strncmp(d->relpath, prefix, plen) != 0 ||
				       (d->relpath[plen] != '/' && d->relpath[plen] != '\0')))
				continue;
			if (rm && w->ifd >= 0)
				inotify_rm_watch(w->ifd, d->wd);
			wdir_unlink(w, d);
		}
	}
}

/* --- events ------------------------------------------------------------------ */

void watch_overflow(struct watcher *w, const char *why)
{
	struct wlink *l;

	w->stats.overflows++;
	log_warnx("watcher", "%s (%llu so far): events were lost, rescanning every folder", why,
		  (unsigned long long)w->stats.overflows);
	/* Opens and closes were lost too: settle those files by probing. */
	for (l = w->settling.next; l != &w->settling; l = l->next)
		settle_step(&watch_settling_entry(l)->u.busy->st, SETTLE_EV_LOST, NULL, 0, 0, NULL);
	watcher_rescan_all(w);
}

static void dir_event(struct watcher *w, struct wfolder *f, uint32_t mask, const char *rel)
{
	if (mask & (IN_CREATE | IN_MOVED_TO)) {
		const char *abs = watch_abspath(w, f, rel);

		if (f->cfg->recursive && abs && !ignore_dir(f->cfg, rel) &&
		    !watch_dir_excluded(f->cfg, abs))
			watch_scan_request(f, rel);
	} else if (mask & (IN_MOVED_FROM | IN_DELETE)) {
		watch_entries_forget(w, f, rel);
		watch_wdir_drop(w, f->idx, rel, (mask & IN_MOVED_FROM) != 0);
	}
}

static void file_event(struct watcher *w, struct wfolder *f, uint32_t mask, const char *rel)
{
	struct wentry *e;

	if (ignore_file(f->cfg, rel)) {
		if ((mask & (IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE)) &&
		    ignore_is_marker(f->cfg, rel))
			watch_marker_seen(w, f, rel);
		return;
	}
	e = watch_entry_find(w, f->idx, rel);
	if (mask & (IN_DELETE | IN_MOVED_FROM)) {
		if (e)
			watch_entry_remove(w, e, mask & IN_DELETE ? "deleted" : "renamed away");
	} else if (mask & IN_CREATE) {
		watch_file_event(w, f, rel, SETTLE_EV_CREATED);
	} else if (mask & IN_MOVED_TO) {
		watch_file_event(w, f, rel, SETTLE_EV_FOUND);
	} else if (mask & IN_OPEN) {
		if (e)
			watch_entry_step(w, e, SETTLE_EV_OPEN, NULL, 0);
	} else if (mask & (IN_CLOSE_WRITE | IN_CLOSE_NOWRITE)) {
		if (e) {
			watch_entry_step(w, e, SETTLE_EV_CLOSE, NULL, 0);
			watch_entry_sync(w, e);
		}
		/* A close-write also means new content may be there (or a file
		 * we missed): look at it. A close-nowrite is a reader. */
		if (mask & IN_CLOSE_WRITE)
			watch_file_event(w, f, rel, SETTLE_EV_STAT);
	} else if (mask & IN_MODIFY) {
		if (e) {
			watch_entry_step(w, e, SETTLE_EV_WRITE, NULL, (int64_t)uv_now(w->loop));
			watch_entry_sync(w, e);
		} else {
			watch_file_event(w, f, rel, SETTLE_EV_STAT);
		}
	} else if (mask & IN_ATTRIB) {
		watch_file_event(w, f, rel, SETTLE_EV_STAT);
	}
}

static void handle_event(struct watcher *w, const struct inotify_event *ev)
{
	char rel[WATCH_PATH_MAX];
	struct wfolder *f;
	struct wdir *d;
	size_t i;

	if (ev->mask & IN_Q_OVERFLOW) {
		watch_overflow(w, "inotify event queue overflowed (fs.inotify.max_queued_events)");
		return;
	}
	d = watch_wdir_find(w, ev->wd);
	if (!d) {
		/* A watch added by a running scan, not registered yet: its
		 * events are lost, so that folder is scanned once more. */
		if (!(ev->mask & IN_IGNORED))
			for (i = 0; i < w->n_folders; i++)
				if (w->folders[i].job)
					w->folders[i].again = true;
		return;
	}
	f = &w->folders[d->folder];
	if (ev->mask & IN_IGNORED) {
		bool root = !d->relpath[0];

		watch_wdir_drop(w, f->idx, d->relpath, false);
		if (root && !f->paused)
			watch_folder_pause(f, PAUSE_GONE, "its watch was removed");
		return;
	}
	if (ev->mask & (IN_UNMOUNT | IN_DELETE_SELF | IN_MOVE_SELF)) {
		if (!d->relpath[0])
			watch_folder_pause(f, ev->mask & IN_UNMOUNT ? PAUSE_UNMOUNT : PAUSE_GONE,
					   ev->mask & IN_UNMOUNT       ? "unmounted"
					   : ev->mask & IN_DELETE_SELF ? "deleted"
								       : "moved away");
		return;
	}
	if (!ev->len || f->paused || !f->active)
		return;
	if (watch_join(rel, sizeof rel, d->relpath, ev->name) < 0)
		return;
	if (ev->mask & IN_ISDIR)
		dir_event(w, f, ev->mask, rel);
	else
		file_event(w, f, ev->mask, rel);
}

static void on_readable(uv_poll_t *h, int status, int events)
{
	struct watcher *w = container_of(h, struct watcher, poll);
	ssize_t n;

	if (status < 0) {
		log_error("watcher", "inotify descriptor failed: %s", uv_strerror(status));
		return;
	}
	while (!w->closing) {
		char *p;

		n = read(w->ifd, w->evbuf, sizeof w->evbuf);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				log_warn("watcher", "could not read inotify events");
			break;
		}
		for (p = w->evbuf; p < w->evbuf + n && !w->closing;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;

			handle_event(w, ev);
			p += sizeof *ev + ev->len;
		}
	}
}

int watch_events_open(struct watcher *w)
{
	int rc;

	w->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (w->ifd < 0) {
		rc = -errno;
		log_warn("watcher", "could not create an inotify instance");
		return rc;
	}
	rc = uv_poll_init(w->loop, &w->poll, w->ifd);
	if (rc < 0) {
		close(w->ifd);
		w->ifd = -1;
		return rc;
	}
	w->poll_init = true;
	return uv_poll_start(&w->poll, UV_READABLE, on_readable);
}
