/*
 * daemon: the process around the pipeline of ingest.c. It owns the loop, the
 * stages' creation and orderly shutdown (each stage closes its handles and
 * reports back; only then is the loop closed), signals (SIGTERM/SIGINT stop
 * gracefully within STOP_GRACE_MS, SIGHUP retries held files and rescans), the
 * daily partition maintenance and sd_notify status. What /metrics and
 * /healthz say is daemon_metrics.c; the known-files gate at start is
 * ingest_known.c.
 */
#include <errno.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "heap.h"
#include "ingest_int.h"
#include "log.h"
#include "mime.h"
#include "notify.h"
#include "util.h"

static int sync_folder_stats(struct ingest *ing);
static void status_update(struct ingest *ing);
static void begin_stop(struct ingest *ing);

/* ---- start-up repair and tenants ------------------------------------------ */

static void tenant_cb(const char *code, bool active, void *arg)
{
	struct ingest *ing = arg;

	watcher_set_tenant_active(ing->watcher, code, active);
	if (!active)
		log_info("ingest", "tenant %s is inactive; its folders are not watched", code);
}

/*
 * A ledger row whose post-ingest action was never confirmed (a crash between
 * commit and move). If the source is still in the drop folder the watcher
 * finds it, the ledger lookup answers "known, move pending" and the action is
 * run again from there (same identity, so deleting or moving it is safe). Here
 * only the other case is handled: the source is gone and the destination is
 * in place, so the move completed and just needs confirming.
 */
static void pending_move_cb(const struct folder_cfg *folder, const char *asset_id,
			    const char *src_path, const char *final_path, const char *sha256,
			    void *arg)
{
	struct ingest *ing = arg;
	struct stat st;
	char esc[LOG_ESC_MAX];

	(void)folder;
	(void)sha256;
	if (lstat(src_path, &st) == 0)
		return;
	if (folder->after == AFTER_MOVE && lstat(final_path, &st) != 0) {
		log_error("ingest", "asset %s: neither \"%s\" nor its destination exist", asset_id,
			  log_escape(src_path, esc, sizeof esc));
		return;
	}
	log_info("ingest", "asset %s: confirming interrupted after_ingest action", asset_id);
	ingest_confirm_move(ing, asset_id);
}

/* ---- folder ownership ------------------------------------------------------ */

/* Counters of folder, or NULL (a folder a reload removed). */
static struct folder_stats *stats_find(struct ingest *ing, const struct folder_cfg *folder)
{
	size_t i;

	for (i = 0; i < ing->n_fstats; i++)
		if (ing->fstats[i]->folder == folder)
			return ing->fstats[i];
	return NULL;
}

/* The owned gauge of every folder of the current config, from the owner. */
static void sync_owned(struct ingest *ing)
{
	size_t i;

	for (i = 0; i < ing->n_fstats; i++) {
		const struct folder_cfg *f = ing->fstats[i]->folder;

		ing->fstats[i]->owned = f && (!ing->owner || owner_owns(ing->owner, f));
	}
}

void ingest_start_watching(struct ingest *ing)
{
	int rc;

	if (ing->watcher_started || !ing->watcher)
		return;
	ing->watcher_started = true;
	rc = watcher_start(ing->watcher);
	if (rc != 0) {
		log_error("ingest", "could not start watching: %s", strerror(-rc));
		ing->exit_code = 1;
		begin_stop(ing);
	}
}

/*
 * The owner module says which folders this node ingests. The watcher follows
 * at once: a folder lost (the session and its lock are gone) is not watched
 * any more, a folder acquired is rescanned. `scan` starts its one pass only
 * after the first round, so it never reads a folder a daemon owns.
 */
static void owner_event(struct owner *o, const struct owner_report *r, void *arg)
{
	struct ingest *ing = arg;
	struct folder_stats *fs;
	char esc[LOG_ESC_MAX];

	(void)o;
	switch (r->ev) {
	case OWNER_ACQUIRED:
	case OWNER_LOST:
		fs = stats_find(ing, r->folder);
		if (fs)
			fs->owned = r->ev == OWNER_ACQUIRED;
		if (r->ev == OWNER_LOST)
			ingest_known_owner_lost(ing, r->folder);
		if (ing->watcher)
			watcher_set_folder_owned(ing->watcher, r->folder, r->ev == OWNER_ACQUIRED);
		break;
	case OWNER_BUSY:
		if (ing->opts->oneshot)
			log_info("ingest",
				 "%s \"%s\": skipped by this scan: owned by %s, which ingests it",
				 r->folder->tenant->code,
				 log_escape(r->folder->path, esc, sizeof esc), r->holder);
		break;
	case OWNER_ROUND_DONE:
		/* Like `run`, the pass waits (bounded) for the known files. */
		if (ing->opts->oneshot && !ing->stopping && !ing->watcher_started) {
			if (!ing->known_settled)
				ingest_known_gate(ing);
			else
				ingest_start_watching(ing);
		}
		break;
	}
	status_update(ing);
}

/* ---- maintenance, signals, start and stop --------------------------------- */

#define MAINT_TICK_MS 60000

static void maint_cb(uv_timer_t *t)
{
	struct ingest *ing = container_of(t, struct ingest, maint);
	uint64_t ticks = ++ing->maint_ticks;
	uint64_t reconcile_ticks =
		ing->cfg->reconcile_interval_s > 0
			? (uint64_t)ing->cfg->reconcile_interval_s * 1000 / MAINT_TICK_MS
			: 0;

	/* Partitions: daily, so the current and next month always exist. */
	if (ticks % (24 * 60) == 0)
		catalog_ensure_partitions(ing->catalog);
	if (reconcile_ticks && ticks % (reconcile_ticks ? reconcile_ticks : 1) == 0)
		ingest_retry_held(ing);
}

static void status_update(struct ingest *ing)
{
	struct watcher_stats st = {0};
	static const char *const dbs[] = {"down", "connecting", "connected", "closed"};
	size_t i, owned = 0, folders = 0;

	if (ing->watcher)
		watcher_get_stats(ing->watcher, &st);
	for (i = 0; i < ing->n_fstats; i++) {
		folders += ing->fstats[i]->folder != NULL;
		owned += ing->fstats[i]->owned;
	}
	notify_status(
		"owning %zu of %zu folders; watching %llu directories, %llu settling, "
		"%u in pipeline, %u held; database %s; %llu catalogued",
		owned, folders, (unsigned long long)st.watches, (unsigned long long)st.settling,
		ing->n_files, ing->catalog ? catalog_held(ing->catalog) : 0,
		ing->db ? dbs[db_state(ing->db)] : "off", (unsigned long long)ing->n_ingested);
}

static void on_db_state(struct db *db, enum db_state state, void *arg)
{
	struct ingest *ing = arg;

	(void)db;
	if (state == DB_READY) {
		ing->db_down_since = 0;
		log_info("ingest", "database connected");
		/* The lock round first: it goes on the wire ahead of the start-up batches. */
		if (ing->owner)
			owner_db_state(ing->owner, state);
		catalog_db_ready(ing->catalog);
		if (!ing->known_requested && !ing->stopping) {
			ing->known_requested = true;
			ingest_known_load(ing);
		}
		/* Not ahead of the known files' pages, which the first scan waits for. */
		if (ing->known_settled)
			catalog_warm_up(ing->catalog);
		else
			ing->warm_after_known = true;
	} else if (state == DB_DOWN) {
		/* No database to ask: the first scan need not wait for it. */
		if (ing->known_gate)
			ingest_known_ready(ing);
		if (!ing->db_down_since)
			ing->db_down_since = uv_hrtime();
		log_warnx("ingest", ing->owner ? "database unavailable; releasing owned folders, "
						 "holding files in flight and reconnecting"
					       : "database unavailable; holding finished files and "
						 "reconnecting");
		if (ing->owner)
			owner_db_state(ing->owner, state);
	}
	status_update(ing);
}

static void close_walk_cb(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

static void stage_closed(void *arg)
{
	struct ingest *ing = arg;

	if (--ing->n_closing > 0)
		return;
	if (ing->owner) {
		owner_close(ing->owner);
		ing->owner = NULL;
	}
	if (ing->catalog) {
		catalog_close(ing->catalog);
		ing->catalog = NULL;
	}
	if (ing->db) {
		struct db *db = ing->db;

		ing->db = NULL;
		ing->n_closing++;
		db_close(db, stage_closed, ing);
		return;
	}
	/* Everything of ours is closed: close the remaining signal/timer handles. */
	uv_walk(&ing->loop, close_walk_cb, NULL);
}

static void shutdown_stages(struct ingest *ing)
{
	metrics_close(ing->metrics);
	ing->metrics = NULL;
	ing->n_closing = 1; /* held until both stages below were asked to close */
	if (ing->hasher) {
		ing->n_closing++;
		hasher_close(ing->hasher, stage_closed, ing);
		ing->hasher = NULL;
	}
	stage_closed(ing);
}

static void stop_timer_cb(uv_timer_t *t)
{
	struct ingest *ing = container_of(t, struct ingest, stop_timer);

	log_warnx("ingest",
		  "%u files still in the pipeline after %d ms; stopping anyway (they "
		  "are still in their drop folders and are picked up at the next start)",
		  ing->n_files, STOP_GRACE_MS);
	shutdown_stages(ing);
}

static void watcher_closed(void *arg)
{
	struct ingest *ing = arg;

	ing->watcher = NULL;
	ingest_maybe_finish(ing);
}

static void begin_stop(struct ingest *ing)
{
	if (ing->stopping)
		return;
	ing->stopping = true;
	notify_stopping();
	uv_timer_stop(&ing->maint);
	uv_timer_stop(&ing->progress);
	uv_timer_start(&ing->stop_timer, stop_timer_cb, STOP_GRACE_MS, 0);
	if (ing->watcher)
		watcher_close(ing->watcher, watcher_closed, ing);
	else
		ingest_maybe_finish(ing);
}

/* Called whenever work completes: ends a oneshot scan, or a graceful stop. */
void ingest_maybe_finish(struct ingest *ing)
{
	/* Counted, not walked: this runs once per finished file (a walk made a
	 * 10,000-file scan quadratic, 9% of its CPU in tests/bench). */
	unsigned busy = ing->opts->oneshot ? ing->n_files - ing->n_held : ing->n_files;

	if (ing->opts->oneshot && ing->scan_done && busy == 0 && ing->n_confirms == 0 &&
	    !ing->stopping) {
		begin_stop(ing);
		return;
	}
	if (!ing->stopping || ing->watcher || ing->n_closing)
		return;
	/* Held files (over quota) stay in their folders: nothing to wait for. */
	if (ing->n_files != ing->n_held)
		return;
	if (ing->n_confirms)
		return;
	uv_timer_stop(&ing->stop_timer);
	shutdown_stages(ing);
}

static void old_watcher_closed(void *arg)
{
	(void)arg;
}

/*
 * SIGHUP: read the configuration again. An invalid file is reported and the
 * running configuration kept. A valid one replaces the current config whole:
 * a new watcher starts on the new folders (its initial scan finds whatever
 * arrived meanwhile) and the old one closes; files in flight finish under the
 * config they started with (configs are never freed before exit, so their
 * folder pointers stay valid), and the ledger keeps a file found by both
 * watchers exactly once. The database connection string needs a restart.
 */
static void reload(struct ingest *ing)
{
	struct config_errors errs = {0};
	struct watcher_opts wopts = {0};
	struct config *ncfg = NULL, **nv;
	struct watcher *nw = NULL, *old;
	size_t i;
	int rc;

	log_info("ingest", "SIGHUP: reloading \"%s\"", ing->opts->config_path);
	notify_reloading();
	rc = config_load(ing->opts->config_path, &ncfg, &errs);
	for (i = 0; i < errs.n; i++)
		if (config_msg_is_warning(ing->opts->config_path, errs.msgs[i]))
			log_warnx("config", "%s", errs.msgs[i]);
		else
			log_error("config", "%s", errs.msgs[i]);
	config_errors_free(&errs);
	if (rc != 0) {
		log_error("ingest", "reload failed: keeping the running configuration");
		goto out;
	}
	if (strcmp(ncfg->conninfo ? ncfg->conninfo : "",
		   ing->cfg->conninfo ? ing->cfg->conninfo : "") != 0)
		log_warnx("ingest", "database.conninfo changed: takes effect at the next restart");
	nv = realloc(ing->retired, (ing->n_retired + 1) * sizeof *nv);
	if (!nv) {
		config_free(ncfg);
		log_error("ingest", "reload failed: out of memory");
		goto out;
	}
	ing->retired = nv;
	if (ncfg->folder_locks != ing->cfg->folder_locks)
		log_warnx("ingest",
			  "ingest.folder_locks changed: takes effect at the next restart");
	wopts.folder_locks = ing->owner != NULL;
	wopts.known = ingest_file_known;
	rc = watcher_create(&ing->loop, ncfg, &wopts, ingest_watcher_event, ing, &nw);
	if (rc != 0) {
		log_error("ingest", "reload failed: could not create the watcher: %s",
			  strerror(-rc));
		config_free(ncfg);
		goto out;
	}
	/* Commit to the new config: nothing below can fail back to the old one. */
	if (ing->owned_cfg)
		ing->retired[ing->n_retired++] = ing->owned_cfg;
	ing->owned_cfg = ncfg;
	ing->cfg = ncfg;
	ing->gen++;
	ingest_known_untrust(ing);
	if (sync_folder_stats(ing) != 0)
		log_error("ingest", "out of memory while updating folder counters");
	if (ing->catalog)
		catalog_set_config(ing->catalog, ncfg);
	old = ing->watcher;
	ing->watcher = nw;
	watcher_close(old, old_watcher_closed, NULL);
	if (ing->owner) {
		/* Folders kept stay locked and owned; removed ones are unlocked. */
		if (owner_set_config(ing->owner, ncfg) != 0)
			log_error("ingest", "out of memory while updating folder ownership");
		for (i = 0; i < ncfg->n_tenants; i++)
			for (size_t k = 0; k < ncfg->tenants[i].n_folders; k++)
				if (owner_owns(ing->owner, &ncfg->tenants[i].folders[k]))
					watcher_set_folder_owned(nw, &ncfg->tenants[i].folders[k],
								 true);
	}
	sync_owned(ing);
	rc = watcher_start(nw);
	if (rc != 0)
		log_error("ingest", "could not start watching after reload: %s", strerror(-rc));
	/* Started here, so a start-up wait ending later does not start it twice. */
	ing->watcher_started = true;
	ing->known_gate = false;
	/* Upsert new tenants, read is_active, then retry held files. */
	if (ing->db && db_state(ing->db) == DB_READY)
		catalog_db_ready(ing->catalog);
	ingest_retry_held(ing);
	log_info("ingest", "configuration reloaded: %zu tenants", ncfg->n_tenants);
out:
	notify_ready();
	status_update(ing);
}

static void signal_cb(uv_signal_t *s, int signum)
{
	struct ingest *ing = s->data;

	if (signum == SIGHUP) {
		if (ing->stopping || ing->opts->oneshot)
			return;
		reload(ing);
		return;
	}
	log_info("ingest", "%s: stopping", strsignal(signum));
	begin_stop(ing);
}

/*
 * Counters are kept per (tenant, folder) across reloads: an entry points at
 * the current config's folder_cfg, or at nothing once a reload removed it.
 */
static int sync_folder_stats(struct ingest *ing)
{
	const struct config *cfg = ing->cfg;
	size_t t, k, i;

	for (i = 0; i < ing->n_fstats; i++)
		ing->fstats[i]->folder = NULL;
	for (t = 0; t < cfg->n_tenants; t++) {
		for (k = 0; k < cfg->tenants[t].n_folders; k++) {
			const struct folder_cfg *f = &cfg->tenants[t].folders[k];
			struct folder_stats *fs = NULL, **nv;

			for (i = 0; i < ing->n_fstats && !fs; i++)
				if (strcmp(ing->fstats[i]->tenant, f->tenant->code) == 0 &&
				    strcmp(ing->fstats[i]->path, f->path) == 0)
					fs = ing->fstats[i];
			if (!fs) {
				nv = realloc(ing->fstats, (ing->n_fstats + 1) * sizeof *nv);
				if (!nv)
					return -ENOMEM;
				ing->fstats = nv;
				fs = calloc(1, sizeof *fs);
				if (!fs)
					return -ENOMEM;
				ing->fstats[ing->n_fstats++] = fs;
				fs->tenant = strdup(f->tenant->code);
				fs->path = strdup(f->path);
				if (!fs->tenant || !fs->path)
					return -ENOMEM;
			}
			fs->folder = f;
		}
	}
	return 0;
}

/*
 * Progress of long work (a first scan of 100k files, a backlog after an
 * outage): while more than PROGRESS_MIN files are in the pipeline, log done /
 * total, rate and ETA every PROGRESS_MS and put it in the sd_notify STATUS.
 */
#define PROGRESS_MIN 100
#define PROGRESS_MS  5000

static void progress_cb(uv_timer_t *t)
{
	struct ingest *ing = container_of(t, struct ingest, progress);
	uint64_t done = ing->n_done_files - ing->progress_base;
	double secs = (double)(uv_hrtime() - ing->progress_t0) / 1e9;
	double rate = secs > 0 ? (double)done / secs : 0;
	uint64_t total = done + ing->n_files;

	if (ing->n_files == 0) {
		log_info("ingest", "progress: backlog drained: %llu files in %.1f s (%.0f files/s)",
			 (unsigned long long)done, secs, rate);
		uv_timer_stop(t);
		/* A backlog held an infile and a lookup per file at once; glibc keeps
		 * that peak otherwise (a 100,000-file restart stayed at its peak RSS). */
		heap_trim();
		status_update(ing);
		return;
	}
	log_info("ingest", "progress: %llu of %llu files (%.0f files/s, about %.0f s left)",
		 (unsigned long long)done, (unsigned long long)total, rate,
		 rate > 0 ? (double)ing->n_files / rate : -1.0);
	notify_status("working through a backlog: %llu of %llu files, %.0f files/s",
		      (unsigned long long)done, (unsigned long long)total, rate);
}

void ingest_backlog_check(struct ingest *ing)
{
	if (ing->n_files < PROGRESS_MIN || uv_is_active((uv_handle_t *)&ing->progress) ||
	    ing->stopping || ing->opts->no_db)
		return;
	ing->progress_base = ing->n_done_files;
	ing->progress_t0 = uv_hrtime();
	uv_timer_start(&ing->progress, progress_cb, PROGRESS_MS, PROGRESS_MS);
}

static int ingest_setup(struct ingest *ing)
{
	struct watcher_opts wopts = {
		.oneshot = ing->opts->oneshot,
		.report_settling = ing->opts->oneshot && ing->opts->dry_run,
		.known = ingest_file_known,
	};
	bool need_db = !ing->opts->no_db && !ing->opts->dry_run;
	char appname[64];
	int rc;

	if (need_db) {
		rc = hasher_create(&ing->loop, 0, (size_t)ing->cfg->hash_read_size, &ing->hasher);
		if (rc == 0)
			rc = db_create(&ing->loop, ing->cfg->conninfo, on_db_state, ing, &ing->db);
		if (rc == 0)
			rc = catalog_create(&ing->loop, ing->cfg, ing->db, &ing->catalog);
		if (rc != 0) {
			log_error("ingest", "could not set up the pipeline: %s", strerror(-rc));
			return rc;
		}
		catalog_set_startup_cbs(ing->catalog, tenant_cb, pending_move_cb, ing);
		/* "mam-ingest run[PID]@NODE": pg_stat_activity then names the process. */
		snprintf(appname, sizeof appname, "mam-ingest %s[%ld]@%s",
			 ing->opts->oneshot ? "scan" : "run", (long)getpid(),
			 ing->cfg->node_name ? ing->cfg->node_name : "");
		rc = db_set_application_name(ing->db, appname);
		if (rc == 0 && ing->cfg->folder_locks)
			rc = owner_create(&ing->loop, ing->db, ing->cfg, !ing->opts->oneshot,
					  owner_event, ing, &ing->owner);
		if (rc != 0) {
			log_error("ingest", "could not set up folder ownership: %s", strerror(-rc));
			return rc;
		}
		wopts.folder_locks = ing->owner != NULL;
	}
	sync_owned(ing);
	rc = watcher_create(&ing->loop, ing->cfg, &wopts, ingest_watcher_event, ing, &ing->watcher);
	if (rc != 0) {
		log_error("ingest", "could not set up the watcher: %s", strerror(-rc));
		return rc;
	}
	if (ing->cfg->metrics_listen && ing->cfg->metrics_listen[0] && !ing->opts->oneshot &&
	    !ing->opts->no_db) {
		rc = metrics_start(&ing->loop, ing->cfg->metrics_listen, ingest_render_metrics,
				   ingest_health_check, ing, &ing->metrics);
		if (rc != 0)
			return rc;
	}
	if (ing->db) {
		ing->db_down_since = uv_hrtime();
		db_start(ing->db);
	}
	/* `scan` with folder locks starts its pass once it knows what it owns. */
	if (ing->opts->oneshot && ing->owner)
		return 0;
	/*
	 * `run` and `scan` read the ledger's known files before their first scan, so the
	 * files catalogued before this start are recognised as the scan finds
	 * them (see ingest_known_load), not each looked up. The wait is bounded:
	 * past KNOWN_WAIT_MS, or without a database, it scans anyway and what is
	 * not known yet is looked up as before.
	 */
	if (ing->db) {
		ingest_known_gate(ing);
		return 0;
	}
	ing->watcher_started = true;
	rc = watcher_start(ing->watcher);
	if (rc != 0) {
		log_error("ingest", "could not start watching: %s", strerror(-rc));
		return rc;
	}
	return 0;
}

int ingest_main(const struct config *cfg, const struct ingest_opts *opts)
{
	struct ingest *ing = calloc(1, sizeof *ing);
	int rc;

	if (!ing)
		return 1;
	ing->cfg = cfg;
	ing->opts = opts;
	if (sync_folder_stats(ing) != 0) {
		free(ing);
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	uv_loop_init(&ing->loop);
	uv_timer_init(&ing->loop, &ing->maint);
	uv_timer_init(&ing->loop, &ing->stop_timer);
	uv_timer_init(&ing->loop, &ing->progress);
	uv_timer_init(&ing->loop, &ing->known_timer);
	uv_check_init(&ing->loop, &ing->flush_check);
	uv_check_start(&ing->flush_check, ingest_flush_check);
	/* It runs when the loop does; it must not keep the loop running. */
	uv_unref((uv_handle_t *)&ing->flush_check);
	uv_signal_init(&ing->loop, &ing->sigterm);
	uv_signal_init(&ing->loop, &ing->sigint);
	uv_signal_init(&ing->loop, &ing->sighup);
	ing->sigterm.data = ing->sigint.data = ing->sighup.data = ing;
	uv_signal_start(&ing->sigterm, signal_cb, SIGTERM);
	uv_signal_start(&ing->sigint, signal_cb, SIGINT);
	uv_signal_start(&ing->sighup, signal_cb, SIGHUP);

	rc = ingest_setup(ing);
	if (rc != 0) {
		ing->exit_code = 1;
		begin_stop(ing);
	} else if (!opts->oneshot) {
		uv_timer_start(&ing->maint, maint_cb, MAINT_TICK_MS, MAINT_TICK_MS);
		/* The maintenance timer must not keep a drained loop alive on its own. */
		notify_watchdog_start(&ing->loop);
		notify_ready();
		status_update(ing);
	}
	uv_unref((uv_handle_t *)&ing->sigterm);
	uv_unref((uv_handle_t *)&ing->sigint);
	uv_unref((uv_handle_t *)&ing->sighup);
	uv_run(&ing->loop, UV_RUN_DEFAULT);
	uv_walk(&ing->loop, close_walk_cb, NULL);
	uv_run(&ing->loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&ing->loop) != 0)
		log_warnx("ingest", "event loop closed with handles still open");
	mime_release();
	rc = ing->exit_code;
	if (!opts->no_db && !opts->dry_run)
		log_info("ingest", "summary: hashed=%llu catalogued=%llu known=%llu failed=%llu",
			 (unsigned long long)ing->n_hashed, (unsigned long long)ing->n_ingested,
			 (unsigned long long)ing->n_already, (unsigned long long)ing->n_failed);
	ingest_free_files(ing);
	ingest_known_free(ing);
	for (size_t i = 0; i < ing->n_fstats; i++) {
		free(ing->fstats[i]->tenant);
		free(ing->fstats[i]->path);
		free(ing->fstats[i]);
	}
	free(ing->fstats);
	for (size_t i = 0; i < ing->n_retired; i++)
		config_free(ing->retired[i]);
	free(ing->retired);
	config_free(ing->owned_cfg);
	free(ing);
	return rc;
}
