/*
 * Private to the ingest pipeline (ingest.c: the life of one finished file;
 * daemon.c: the process around it: loop, signals, start-up, stop, metrics).
 */
#ifndef MAM_INGEST_INT_H
#define MAM_INGEST_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "app.h"
#include "catalog.h"
#include "config.h"
#include "db.h"
#include "fileid.h"
#include "hasher.h"
#include "metrics.h"
#include "owner.h"
#include "watcher.h"

/* What can happen to a finished file next: see infile_set_state() in ingest.c. */
enum infile_state {
	IF_LOOKUP,    /* asking the ledger whether this exact file is known */
	IF_HASHING,   /* in the hasher's queue or being hashed */
	IF_RECORDING, /* in a catalogue batch */
	IF_POSTING,   /* after_ingest move/delete or quarantine running */
	IF_HELD,      /* over quota or failed: retried on the next reconcile pass */
	IF_DONE,      /* finished with; freed by the transition */
};

struct infile {
	struct ingest *ing;
	enum infile_state state;
	const struct folder_cfg *folder;
	struct folder_stats *stats;
	struct file_id id;
	char asset_id[37];
	char sha256[65];
	char mime[100];
	char asset_type[16];
	char *relpath;
	char *abspath;
	char *final_path;
	int attempts; /* catalogue failures so far */
	unsigned gen; /* config generation of folder; see ingest.c watcher_* wrappers */
	bool over_quota_logged;
	uint64_t t_finished; /* uv_hrtime() when the watcher reported it */
	struct infile *next; /* on ing->files */
	struct infile **pprev;
};

/*
 * A drop folder's fingerprints of the files the ledger has (known.h), read in
 * pages at start so the first scan's already-catalogued files are recognised
 * without a lookup each. Matched by tenant code and path, which a reload keeps.
 */
struct known_folder {
	struct ingest *ing;
	char *tenant, *path;
	struct known *set; /* NULL when it could not be read (files take lookups) */
	int64_t after;	   /* last ledger id read */
	bool done;	   /* every page read, or given up */
	bool started;	   /* the first page has answered */
	bool trusted;	   /* read while this node owned the folder, and owned ever since */
};

/* Per drop folder counters for /metrics. */
struct folder_stats {
	const struct folder_cfg *folder; /* in the current config; NULL once removed by a reload */
	char *tenant, *path;		 /* labels, kept across reloads */
	uint64_t finished, catalogued, already, duplicates, failed, quarantined;
	uint64_t retried; /* deferred versions the watcher handed back (not in finished) */
	uint64_t bytes_hashed;
	double hash_seconds;
	unsigned held; /* currently held (over quota / to retry) */
	bool owned;    /* this node ingests the folder (always true without folder locks) */
};

struct ingest {
	uv_loop_t loop;
	const struct config *cfg; /* current config (swapped whole by a reload) */
	const struct ingest_opts *opts;
	struct watcher *watcher;
	struct hasher *hasher;
	struct db *db;
	struct catalog *catalog;
	struct owner *owner; /* NULL without folder locks (or without a database) */
	struct metrics *metrics;
	uv_signal_t sigterm, sigint, sighup;
	uv_timer_t maint;      /* daily partitions, held-file retries */
	uv_timer_t stop_timer; /* bounds a graceful stop */
	uv_timer_t progress;   /* runs only while a backlog is being worked off */
	uint64_t progress_base, progress_t0;
	struct infile *files; /* every infile not yet freed */
	unsigned n_files;
	unsigned n_upstream;	/* of n_files, looking up or hashing (catalogue work to come) */
	uv_check_t flush_check; /* end of each loop iteration: ingest_flush_check() */
	unsigned n_held;	/* of n_files, in IF_HELD (kept without walking the list) */
	unsigned n_confirms; /* after_ingest confirmations and failure reports not yet answered */
	unsigned n_closing;  /* stages whose close callback is outstanding */
	uint64_t maint_ticks;
	uint64_t db_down_since; /* uv_hrtime() when the database went away, 0 when up */
	bool scan_done;		/* oneshot: the watcher finished its pass */
	bool watcher_started;	/* oneshot with folder locks: started after the first lock round */
	bool stopping;
	int exit_code;
	uint64_t n_ingested, n_already, n_failed, n_hashed;
	uint64_t n_done_files;	      /* infiles that reached IF_DONE, whatever the outcome */
	struct histogram latency;     /* finished -> committed, seconds */
	struct folder_stats **fstats; /* one per folder ever configured in this process */
	size_t n_fstats;
	unsigned gen;		 /* config generation: bumped by every reload */
	struct config **retired; /* configs replaced by reloads, freed at exit */
	size_t n_retired;
	struct config *owned_cfg;   /* the current config when a reload loaded it */
	struct known_folder *known; /* n_known, one per folder at start; NULL once freed */
	size_t n_known;
	bool known_requested;	/* the known files were asked for (first READY) */
	bool known_gate;	/* `run` and `scan` wait for them before their first scan */
	bool known_settled;	/* read, given up or waited for: ingest_known_ready() ran */
	bool warm_after_known;	/* catalog_warm_up() once they are */
	uv_timer_t known_timer; /* bounds that wait; then frees the sets once idle */
	unsigned known_sweeps;	/* looks for idle so far */
};

#define MAX_CATALOG_ATTEMPTS 3
/* A failed after_ingest action or quarantine is tried again this long after,
 * doubling per failure up to the maximum (ingest_post.c post_failed). */
#define POST_RETRY_MIN_MS 10000
#define POST_RETRY_MAX_MS (10 * 60 * 1000)
#define STOP_GRACE_MS	  15000

/* ingest.c */
void ingest_watcher_event(struct watcher *w, enum watcher_event ev, const struct watch_file *wf,
			  void *arg);
void ingest_retry_held(struct ingest *ing);
/* Every state change of a file (logged; IF_DONE frees it). */
void infile_set_state(struct infile *f, enum infile_state st);
/* Still of the current watcher generation (not from before a reload)? */
bool infile_current(const struct infile *f);
/* Tell the current watcher: done with this version / forget the path. */
void infile_done(struct infile *f);
void infile_forget(struct infile *f);
/* ingest_post.c: the after_ingest action and the quarantine. */
void ingest_start_post(struct infile *f);
/* Move the file to the folder's quarantine with a reason; reason is plain text. */
void ingest_quarantine(struct infile *f, const char *reason);
void ingest_confirm_move(struct ingest *ing, const char *asset_id);
/* ingest.c */
struct folder_stats *ingest_folder_stats(struct ingest *ing, const struct folder_cfg *folder);
void ingest_free_files(struct ingest *ing);
/* uv_check callback: send catalogue requests that nothing will join soon. */
void ingest_flush_check(uv_check_t *h);
/* Read every folder's known files (first DB_READY); ingest_known_ready() when done. */
void ingest_known_load(struct ingest *ing);
void ingest_known_free(struct ingest *ing);
/* watcher_opts.known: arg is the struct ingest. */
bool ingest_file_known(const struct folder_cfg *folder, const char *relpath,
		       const struct file_id *id, void *arg);
/* Is the folder's set the whole ledger for it, so that a file it does not
 * hold is new and needs no lookup? (read whole, while this node owned the
 * folder and has owned it since) */
bool ingest_known_complete(struct ingest *ing, const struct folder_cfg *folder);
/* The folder was lost (owner): its set may miss what another node records. */
void ingest_known_owner_lost(struct ingest *ing, const struct folder_cfg *folder);
/* A reload: no set answers "new" any more. */
void ingest_known_untrust(struct ingest *ing);
/* This node catalogued a file: its set, if it still has one, holds it now. */
void ingest_known_recorded(struct ingest *ing, const struct folder_cfg *folder, const char *relpath,
			   const struct file_id *id);

/* daemon.c */
void ingest_maybe_finish(struct ingest *ing);
/* A file entered the pipeline: start progress reporting when a backlog builds up. */
void ingest_backlog_check(struct ingest *ing);
/* Start watching (and scanning) the owned folders. */
void ingest_start_watching(struct ingest *ing);

/* ingest_known.c: hold the first scan until the known files are read (bounded). */
void ingest_known_gate(struct ingest *ing);
/* Every folder's known files were read (or could not be). */
void ingest_known_ready(struct ingest *ing);

/* daemon_metrics.c: metrics_render_cb and metrics_health_cb; arg is the ingest. */
void ingest_render_metrics(struct mbuf *b, void *arg);
bool ingest_health_check(char *reason, size_t sz, void *arg);

#endif
