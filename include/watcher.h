/*
 * Watcher: knows when a file in a drop folder has finished arriving.
 *
 * One inotify descriptor driven through a uv_poll_t (so IN_CLOSE_WRITE,
 * IN_MOVED_TO, IN_OPEN/IN_CLOSE_* and IN_Q_OVERFLOW are all seen), directory
 * scans for network filesystems and reconcile passes, and the settle state
 * machine (settle.h) per tracked file. It reports through one callback.
 *
 * The owner (ingest.c) tells the watcher what became of each finished file
 * with watcher_file_done/retry/forget, so a file is reported once, and again
 * only when it changes afterwards.
 */
#ifndef MAM_WATCHER_H
#define MAM_WATCHER_H

#include <stdbool.h>
#include <uv.h>

#include "config.h"
#include "fileid.h"

struct watcher;

enum watcher_event {
	WATCHER_FINISHED,	/* fi describes a finished regular file */
	WATCHER_SETTLING,	/* only in oneshot dry-run: fi + reason of a file still settling */
	WATCHER_FOLDER_PAUSED,	/* fi->folder vanished/unmounted; fi->relpath NULL */
	WATCHER_FOLDER_RESUMED, /* fi->folder is back and was rescanned */
	WATCHER_SCAN_DONE,	/* oneshot: every folder was scanned once; fi NULL */
};

struct watch_file {
	const struct folder_cfg *folder;
	const char *relpath; /* path below folder->path, no leading '/' */
	const char *abspath; /* folder->path + "/" + relpath */
	struct file_id id;   /* identity when it was found finished */
	const char *reason;  /* WATCHER_SETTLING: why it is not finished yet */
	bool known;	     /* WATCHER_FINISHED: opts.known already said yes */
	/* WATCHER_FINISHED: 0 for a file found finished, else how often the owner
	 * has deferred this same version (watcher_file_backoff): a retry of its
	 * failed action, not one more finished file. */
	unsigned attempt;
};

typedef void (*watcher_cb)(struct watcher *w, enum watcher_event ev, const struct watch_file *f,
			   void *arg);

struct watcher_opts {
	bool oneshot;	      /* scan each folder once, report, then WATCHER_SCAN_DONE */
	bool report_settling; /* oneshot: also report WATCHER_SETTLING entries */
	bool folder_locks;    /* folders start not owned: see watcher_set_folder_owned() */
	/*
	 * Optional, called with the callback's arg: does the owner already have
	 * this exact file (the ledger's identities read at start)? A scan that
	 * finds such a file for the first time reports it finished at once,
	 * without settling it or probing it for writers: it is the file that was
	 * catalogued, and any later write brings it back as usual.
	 */
	bool (*known)(const struct folder_cfg *folder, const char *relpath,
		      const struct file_id *id, void *arg);
};

int watcher_create(uv_loop_t *loop, const struct config *cfg, const struct watcher_opts *opts,
		   watcher_cb cb, void *arg, struct watcher **out)
	__attribute__((warn_unused_result));
/* Add watches and start the initial scan of every folder of every active tenant. */
int watcher_start(struct watcher *w) __attribute__((warn_unused_result));
/* Pause a tenant's folders (inactive tenant) or resume them. */
void watcher_set_tenant_active(struct watcher *w, const char *tenant_code, bool active);
/*
 * Another node owns the folder (owned false) or this one does again: a folder
 * is watched only while its tenant is active and it is owned. Losing it stops
 * its watches and forgets its files; getting it back rescans it, and the
 * ledger answers for what another node catalogued meanwhile.
 */
void watcher_set_folder_owned(struct watcher *w, const struct folder_cfg *folder, bool owned);
/* False when the folder's tenant was made inactive (true for a folder it does not know). */
bool watcher_folder_active(const struct watcher *w, const struct folder_cfg *folder);
/* The finished file was catalogued (or deliberately skipped): remember its
 * identity; report it again only if it changes. */
void watcher_file_done(struct watcher *w, const struct folder_cfg *folder, const char *relpath);
/* The file changed while it was hashed, or is to be retried later: settle it again. */
void watcher_file_retry(struct watcher *w, const struct folder_cfg *folder, const char *relpath);
/*
 * The owner's action on this version (id) of the file failed and may work
 * later (its after_ingest target was full, say): settle it again, but look at
 * it no earlier than min_ms from now (+-10%), doubling with each call up to
 * max_ms, until the file is done or changes. Returns the delay in ms, with
 * *attempt the calls for this version so far; 0 when the watcher cannot
 * retry it (unknown, a one-shot scan, closing: the caller gives up); or
 * -ESTALE when the file changed since (a new version, settled on its own).
 */
int watcher_file_backoff(struct watcher *w, const struct folder_cfg *folder, const char *relpath,
			 const struct file_id *id, unsigned min_ms, unsigned max_ms,
			 unsigned *attempt);
/* The file was moved away, deleted or quarantined: stop tracking it. */
void watcher_file_forget(struct watcher *w, const struct folder_cfg *folder, const char *relpath);
/* Rescan every folder now (reconcile). */
void watcher_rescan_all(struct watcher *w);
/* Counters for metrics/status. */
struct watcher_stats {
	uint64_t overflows, rescans, watches, tracked, settling, finished;
	uint64_t scanning; /* scans queued or running */
};
void watcher_get_stats(const struct watcher *w, struct watcher_stats *st);
/* One folder's: files seen since this watcher started, settling now, and how
 * long the settling file unchanged the longest has been so (0 when none): a
 * writer holding a file open, or a missing ready marker, shows up there. */
struct watcher_folder_stats {
	uint64_t seen, settling;
	double oldest_settling_s;
	const char *mode;  /* "events" or "poll" (what auto resolved to) */
	const char *state; /* "watching", "paused" (folder gone), "inactive" (tenant),
			      "standby" (another node owns it) */
};
void watcher_get_folder_stats(const struct watcher *w, const struct folder_cfg *folder,
			      struct watcher_folder_stats *st);
/* Close every handle; cb runs once everything is closed and freed. */
void watcher_close(struct watcher *w, void (*cb)(void *arg), void *arg);

#endif
