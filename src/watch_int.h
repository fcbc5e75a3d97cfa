/*
 * Internals shared by the watcher's source files: watcher.c (the object,
 * events on one file), watch_table.c (the table of tracked files),
 * watch_tick.c (the settle timer), watch_scan.c (directory scans on the
 * threadpool, polling), watch_folder.c (modes, pause/resume) and
 * watch_events.c (the inotify descriptor).
 * Not a public header: only src/watch*.c include it.
 */
#ifndef MAM_WATCH_INT_H
#define MAM_WATCH_INT_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/inotify.h>
#include <sys/stat.h>

#include "settle.h"
#include "slab.h"
#include "watcher.h"

/* What every directory watch asks for. IN_DONT_FOLLOW is added below the root. */
#define WATCH_MASK                                                                                 \
	(IN_CREATE | IN_CLOSE_WRITE | IN_CLOSE_NOWRITE | IN_OPEN | IN_MODIFY | IN_ATTRIB |         \
	 IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT |    \
	 IN_ONLYDIR | IN_EXCL_UNLINK)

#define WATCH_PATH_MAX (PATH_MAX + NAME_MAX + 2)

/* Intrusive circular doubly linked list (the settling list). */
struct wlink {
	struct wlink *prev, *next;
};

struct wentry;

/*
 * What a file needs while it is not done: its settle state machine and its
 * place on the settling list. Allocated when the file is first seen or comes
 * back (changed, retried), freed once the owner has catalogued it, so the
 * files a folder holds at rest cost only their struct wentry.
 */
struct wbusy {
	struct wentry *e;
	struct wlink link; /* on w->settling while SETTLING, else self-linked */
	struct settle st;
};

/*
 * One tracked regular file: 23 bytes plus its relative path once done,
 * allocated from w->entries (no malloc header). A done file keeps only a 64-bit fingerprint of its
 * identity (watch_fp): a scan or event that stats it again compares that;
 * anything else wakes it (watch_entry_step) into a struct wbusy.
 */
struct wentry {
	struct wentry *hnext; /* hash chain */
	union {
		struct wbusy *busy; /* !done */
		uint64_t fp;	    /* done: watch_fp() of the identity catalogued */
	} u;
	uint32_t gen;	 /* scan generation that last saw it */
	uint16_t folder; /* index in w->folders */
	uint8_t done;	 /* SETTLE_DONE, held as u.fp */
	char relpath[];
};

/* One watched directory. */
struct wdir {
	struct wdir *hnext;
	int wd;
	uint16_t folder;
	char relpath[]; /* "" for the folder's root */
};

enum pause_kind { PAUSE_GONE, PAUSE_UNMOUNT };

struct scan_job;

struct wfolder {
	struct watcher *w;
	const struct folder_cfg *cfg;
	uint16_t idx;
	uint8_t mode;	     /* effective mode: WATCH_EVENTS or WATCH_POLL */
	bool active;	     /* watched: tenant_on && owned */
	bool tenant_on;	     /* tenant active */
	bool owned;	     /* this node owns the folder (always, without folder locks) */
	bool paused;	     /* folder gone: waiting for it to come back */
	bool resume_pending; /* report RESUMED after the running full scan */
	bool scanned;	     /* a full scan completed at least once */
	bool want_full;	     /* a full scan is wanted after the running one */
	bool again;	     /* events were lost during the running scan */
	bool timer_init;
	uv_timer_t timer;	       /* poll interval, or the paused folder's check */
	uint64_t dev, ino;	       /* root identity at the last good scan */
	bool mount_root;	       /* the root was a mount point then */
	uint64_t avoid_dev, avoid_ino; /* paused: the root that must not count as "back" */
	uint64_t seen;		       /* files that got an entry, for /metrics */
	struct scan_job *job;	       /* running scan, NULL when none */
	char **pending;		       /* subdirectories waiting for a scan */
	size_t n_pending;
};

struct watcher {
	uv_loop_t *loop;
	const struct config *cfg;
	struct watcher_opts opts;
	watcher_cb cb;
	void *arg;
	struct wfolder *folders;
	size_t n_folders;

	int ifd; /* inotify, -1 in oneshot mode */
	bool poll_init;
	uv_poll_t poll;
	uv_timer_t settle_timer; /* one timer for every settling file */
	int64_t timer_due;	 /* loop time it is armed for, 0 when idle */
	uv_timer_t reconcile;
	uv_timer_t rootcheck; /* notices unmounted or replaced folder roots */
	uint64_t rng;

	struct wentry **buckets;
	size_t nbuckets, nentries;
	struct slab entries; /* where struct wentry records live */
	struct wlink settling;
	size_t nsettling;

	struct wdir **wbuckets;
	size_t nwbuckets, nwdirs;

	uint32_t gen;
	size_t jobs;	     /* scans queued or running on the threadpool */
	size_t oneshot_left; /* oneshot: folders not scanned yet */
	bool started;
	bool closing;
	int closes_left;
	void (*close_cb)(void *);
	void *close_arg;
	struct watcher_stats stats;

	char abuf[WATCH_PATH_MAX]; /* absolute path scratch (loop thread only) */
	char rbuf[WATCH_PATH_MAX]; /* relative path handed to the callback */
	char evbuf[65536] __attribute__((aligned(__alignof__(struct inotify_event))));
};

/* The settling list. */
static inline void link_init(struct wlink *l)
{
	l->prev = l->next = l;
}

static inline bool link_linked(const struct wlink *l)
{
	return l->next != l;
}

static inline void link_del(struct wlink *l)
{
	l->prev->next = l->next;
	l->next->prev = l->prev;
	link_init(l);
}

static inline void link_add_tail(struct wlink *head, struct wlink *l)
{
	l->prev = head->prev;
	l->next = head;
	head->prev->next = l;
	head->prev = l;
}

/* watch_table.c */
struct wentry *watch_entry_find(struct watcher *w, uint16_t folder, const char *relpath);
struct wentry *watch_entry_add(struct watcher *w, uint16_t folder, const char *relpath);
void watch_entry_remove(struct watcher *w, struct wentry *e, const char *why);
/* Apply ev to e's state machine (settle_step), waking a done entry when ev
 * can change it; cur is the file's identity now (required for FOUND,
 * CREATED and STAT). Call watch_entry_sync afterwards. */
void watch_entry_step(struct watcher *w, struct wentry *e, enum settle_event ev,
		      const struct file_id *cur, int64_t now_ms);
/* Keep the settling list and the timer in step with e's state; a done
 * entry gives up its struct wbusy here. */
void watch_entry_sync(struct watcher *w, struct wentry *e);
enum settle_state watch_entry_state(const struct wentry *e);
uint64_t watch_fp(const struct file_id *id);
/* The entry of a settling-list link. */
static inline struct wentry *watch_settling_entry(struct wlink *l)
{
	return ((struct wbusy *)((char *)l - offsetof(struct wbusy, link)))->e;
}
void watch_entries_forget(struct watcher *w, struct wfolder *f, const char *prefix);
void watch_table_free(struct watcher *w);

/* watcher.c */
const char *watch_abspath(struct watcher *w, const struct wfolder *f, const char *relpath);
int watch_join(char *out, size_t outsz, const char *dir, const char *name);
void watch_file_event(struct watcher *w, struct wfolder *f, const char *relpath,
		      enum settle_event how);
void watch_marker_seen(struct watcher *w, struct wfolder *f, const char *relpath);
void watch_emit(struct watcher *w, enum watcher_event ev, struct wfolder *f, const char *relpath,
		const struct file_id *id, const char *reason);
/* A file a scan found that opts.known says the ledger has: WATCHER_FINISHED
 * with watch_file.known set, so the owner need not ask again. */
void watch_emit_known(struct watcher *w, struct wfolder *f, const char *relpath,
		      const struct file_id *id);
/* A settled file: WATCHER_FINISHED with watch_file.attempt (0, or the retry of
 * a version the owner deferred). */
void watch_emit_ready(struct watcher *w, struct wfolder *f, const char *relpath,
		      const struct file_id *id, unsigned attempt);
void watch_maybe_freed(struct watcher *w);
const char *watch_esc(const char *s, char *buf);

/* watch_tick.c */
void watch_arm(struct watcher *w, int64_t due);
int watch_lease_probe(const char *abspath);

/* watch_scan.c */
void watch_scan_request(struct wfolder *f, const char *subdir);
void watch_scan_cancel(struct wfolder *f);

/* watch_folder.c */
void watch_folder_begin(struct wfolder *f);
void watch_folder_stop(struct wfolder *f);
void watch_folder_pause(struct wfolder *f, enum pause_kind kind, const char *why);
void watch_folder_timer(struct wfolder *f, uv_timer_cb cb, uint64_t ms);
bool watch_dir_excluded(const struct folder_cfg *fc, const char *abspath);
void watch_root_changed(struct wfolder *f, bool mount_root);
void watch_roots_check(struct watcher *w);

/* watch_events.c */
int watch_events_open(struct watcher *w);
struct wdir *watch_wdir_find(struct watcher *w, int wd);
int watch_wdir_add(struct watcher *w, int wd, uint16_t folder, const char *relpath);
void watch_wdir_drop(struct watcher *w, uint16_t folder, const char *prefix, bool rm);
void watch_overflow(struct watcher *w, const char *why);

#endif
