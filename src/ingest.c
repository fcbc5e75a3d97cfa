/*
 * ingest: the only module that knows the whole pipeline. It wires
 *
 *   watcher (finished?) -> catalog lookup (already in the ledger?) -> hasher
 *     -> catalog record (one transaction per batch) -> post action -> done
 *
 * Each finished file becomes a struct infile whose life is the explicit state
 * machine below; every transition goes through infile_set_state(), which logs
 * it. Stages never call each other: they report here through their callbacks.
 *
 * Error policy (see docs/errors.md): start-up errors are fatal with a clear
 * message; a per-file error fails that file with a reason (quarantine, or a
 * retry on the next reconcile pass); a lost database means hold finished files
 * and reconnect, never exit.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/rand.h>
#include <uv.h>

#include "app.h"
#include "catalog.h"
#include "db.h"
#include "hasher.h"
#include "log.h"
#include "notify.h"
#include "post.h"
#include "util.h"
#include "watcher.h"

enum infile_state {
	IF_LOOKUP,    /* asking the ledger whether this exact file is known */
	IF_HASHING,   /* in the hasher's queue or being hashed */
	IF_RECORDING, /* in a catalogue batch */
	IF_POSTING,   /* after_ingest move/delete or quarantine running */
	IF_HELD,      /* over quota or failed: retried on the next reconcile pass */
	IF_DONE,      /* finished with; about to be freed */
};

static const char *const state_names[] = {"lookup", "hashing", "recording",
					  "posting", "held",    "done"};

struct infile {
	struct ingest *ing;
	enum infile_state state;
	const struct folder_cfg *folder;
	struct file_id id;
	char asset_id[37];
	char sha256[65];
	char mime[100];
	char asset_type[16];
	char *relpath;
	char *abspath;
	char *final_path;
	int attempts;         /* catalogue failures so far */
	struct infile *next;  /* on ing->files */
	struct infile **pprev;
};

struct ingest {
	uv_loop_t loop;
	const struct config *cfg;
	const struct ingest_opts *opts;
	struct watcher *watcher;
	struct hasher *hasher;
	struct db *db;
	struct catalog *catalog;
	uv_signal_t sigterm, sigint, sighup;
	uv_timer_t maint;      /* daily partitions, held-file retries */
	uv_timer_t stop_timer; /* bounds a graceful stop */
	struct infile *files;  /* every infile not yet freed */
	unsigned n_files;
	unsigned n_confirms;   /* after_ingest confirmations not yet answered */
	unsigned n_closing;    /* stages whose close callback is outstanding */
	uint64_t maint_ticks;
	bool scan_done;        /* oneshot: the watcher finished its pass */
	bool stopping;
	int exit_code;
	uint64_t n_ingested, n_already, n_failed, n_hashed;
};

#define MAX_CATALOG_ATTEMPTS 3
#define STOP_GRACE_MS 15000

static void infile_free(struct infile *f)
{
	*f->pprev = f->next;
	if (f->next)
		f->next->pprev = f->pprev;
	f->ing->n_files--;
	free(f->relpath);
	free(f->abspath);
	free(f->final_path);
	free(f);
}

static void maybe_finish(struct ingest *ing);

static void infile_set_state(struct infile *f, enum infile_state st)
{
	char esc[LOG_ESC_MAX];

	log_debug("ingest", "%s \"%s\": %s -> %s", f->folder->tenant->code,
		  log_escape(f->relpath, esc, sizeof esc), state_names[f->state], state_names[st]);
	f->state = st;
	if (st == IF_DONE) {
		struct ingest *ing = f->ing;

		infile_free(f);
		maybe_finish(ing);
	}
}

static void uuid_v4(char out[37])
{
	unsigned char b[16];

	if (RAND_bytes(b, sizeof b) != 1) {
		/* RAND_bytes only fails when the system has no entropy source. */
		log_error("ingest", "could not generate random bytes for an asset id");
		abort();
	}
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	snprintf(out, 37,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
		 b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
		 b[14], b[15]);
}

static void start_lookup(struct infile *f);

/* ---- post-ingest actions ------------------------------------------------ */

static void quarantine_cb(const struct post_result *res, void *arg)
{
	struct infile *f = arg;
	char esc[LOG_ESC_MAX];

	if (res->status == 0) {
		log_warnx("ingest", "%s \"%s\": quarantined to \"%s\"", f->folder->tenant->code,
			  log_escape(f->relpath, esc, sizeof esc), res->final_path);
		watcher_file_forget(f->ing->watcher, f->folder, f->relpath);
	} else {
		log_error("ingest", "%s \"%s\": could not quarantine: %s", f->folder->tenant->code,
			  log_escape(f->relpath, esc, sizeof esc), res->error);
		watcher_file_done(f->ing->watcher, f->folder, f->relpath);
	}
	infile_set_state(f, IF_DONE);
}

/* Move the file to the folder's quarantine with a reason; reason is plain text. */
static void quarantine(struct infile *f, const char *reason)
{
	char json[2048], esc[LOG_ESC_MAX], rel[LOG_ESC_MAX], when[32];
	time_t now = time(NULL);
	struct tm tm;

	gmtime_r(&now, &tm);
	strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
	/* log_escape leaves only JSON-safe bytes (quotes and backslashes escaped). */
	snprintf(json, sizeof json,
		 "{\"tenant\":\"%s\",\"drop_folder\":\"%s\",\"relative_path\":\"%s\","
		 "\"reason\":\"%s\",\"sha256\":\"%s\",\"at\":\"%s\"}\n",
		 f->folder->tenant->code, f->folder->path, log_escape(f->relpath, rel, sizeof rel),
		 log_escape(reason, esc, sizeof esc), f->sha256, when);
	infile_set_state(f, IF_POSTING);
	if (post_submit(&f->ing->loop, POST_QUARANTINE, f->abspath, f->folder->quarantine_to,
			NULL, json, quarantine_cb, f) != 0) {
		log_error("ingest", "could not start quarantine of \"%s\"",
			  log_escape(f->relpath, esc, sizeof esc));
		watcher_file_done(f->ing->watcher, f->folder, f->relpath);
		infile_set_state(f, IF_DONE);
	}
}

static void confirm_cb(const struct catalog_result *r, void *arg)
{
	struct ingest *ing = arg;

	if (r->outcome == CAT_FAILED)
		log_warnx("ingest", "could not confirm after_ingest action: %s", r->error);
	ing->n_confirms--;
	maybe_finish(ing);
}

static void on_post_done(const struct post_result *res, void *arg)
{
	struct infile *f = arg;
	char esc[LOG_ESC_MAX];

	if (res->status != 0) {
		/* The asset is committed; its move stays pending in the ledger and the
		 * repair pass at the next start (or reconcile) tries again. The file is
		 * left where it is: nothing is lost. */
		log_error("ingest", "%s \"%s\": after_ingest failed, will retry at next start: %s",
			  f->folder->tenant->code, log_escape(f->relpath, esc, sizeof esc),
			  res->error);
		watcher_file_done(f->ing->watcher, f->folder, f->relpath);
		infile_set_state(f, IF_DONE);
		return;
	}
	if (catalog_confirm_move(f->ing->catalog, f->asset_id, confirm_cb, f->ing) != 0)
		log_warnx("ingest", "could not queue move confirmation for asset %s", f->asset_id);
	else
		f->ing->n_confirms++;
	watcher_file_forget(f->ing->watcher, f->folder, f->relpath);
	infile_set_state(f, IF_DONE);
}

static void start_post(struct infile *f)
{
	enum post_action act = f->folder->after == AFTER_DELETE ? POST_DELETE : POST_MOVE;
	char esc[LOG_ESC_MAX];

	infile_set_state(f, IF_POSTING);
	if (post_submit(&f->ing->loop, act, f->abspath,
			act == POST_MOVE ? f->final_path : NULL, f->sha256[0] ? f->sha256 : NULL,
			NULL, on_post_done, f) != 0) {
		log_error("ingest", "could not start after_ingest for \"%s\"",
			  log_escape(f->relpath, esc, sizeof esc));
		watcher_file_done(f->ing->watcher, f->folder, f->relpath);
		infile_set_state(f, IF_DONE);
	}
}

/* ---- catalogue ------------------------------------------------------------ */

static void record_cb(const struct catalog_result *r, void *arg)
{
	struct infile *f = arg;
	struct ingest *ing = f->ing;
	char esc[LOG_ESC_MAX], reason[512];

	log_escape(f->relpath, esc, sizeof esc);
	switch (r->outcome) {
	case CAT_INGESTED:
	case CAT_ALREADY:
		if (r->outcome == CAT_INGESTED) {
			ing->n_ingested++;
			log_info("ingest", "%s \"%s\": catalogued as asset %s (%s, %lld bytes, sha256 %s)",
				 f->folder->tenant->code, esc, r->asset_id, f->asset_type,
				 (long long)f->id.size, f->sha256);
		} else {
			ing->n_already++;
			log_info("ingest", "%s \"%s\": already catalogued as asset %s",
				 f->folder->tenant->code, esc, r->asset_id);
		}
		memcpy(f->asset_id, r->asset_id, sizeof f->asset_id);
		if (r->final_path[0]) {
			free(f->final_path);
			f->final_path = strdup(r->final_path);
		}
		if (f->folder->after != AFTER_LEAVE && (r->outcome == CAT_INGESTED || r->move_pending)) {
			start_post(f);
			return;
		}
		watcher_file_done(ing->watcher, f->folder, f->relpath);
		infile_set_state(f, IF_DONE);
		return;
	case CAT_DUP_SKIPPED:
		log_info("ingest", "%s \"%s\": duplicate of asset %s, skipped",
			 f->folder->tenant->code, esc, r->duplicate_of);
		watcher_file_done(ing->watcher, f->folder, f->relpath);
		infile_set_state(f, IF_DONE);
		return;
	case CAT_DUP_QUARANTINE:
		snprintf(reason, sizeof reason, "duplicate of asset %s", r->duplicate_of);
		quarantine(f, reason);
		return;
	case CAT_OVER_QUOTA:
		if (f->state != IF_HELD)
			log_warnx("ingest", "%s \"%s\": over the tenant's storage quota; held until "
					    "the next reconcile or reload", f->folder->tenant->code, esc);
		infile_set_state(f, IF_HELD);
		return;
	case CAT_TENANT_INACTIVE:
		log_info("ingest", "%s \"%s\": tenant is inactive; not catalogued",
			 f->folder->tenant->code, esc);
		watcher_set_tenant_active(ing->watcher, f->folder->tenant->code, false);
		watcher_file_forget(ing->watcher, f->folder, f->relpath);
		infile_set_state(f, IF_DONE);
		return;
	case CAT_FAILED:
		ing->n_failed++;
		f->attempts++;
		log_error("ingest", "%s \"%s\": could not catalogue (attempt %d of %d): %s",
			  f->folder->tenant->code, esc, f->attempts, MAX_CATALOG_ATTEMPTS, r->error);
		if (f->attempts >= MAX_CATALOG_ATTEMPTS) {
			snprintf(reason, sizeof reason, "could not be catalogued: %s", r->error);
			quarantine(f, reason);
		} else {
			infile_set_state(f, IF_HELD);
		}
		return;
	}
}

static void start_record(struct infile *f)
{
	struct catalog_file cf = {
		.folder = f->folder,
		.relpath = f->relpath,
		.abspath = f->abspath,
		.final_path = f->final_path,
		.asset_id = f->asset_id,
		.id = f->id,
		.sha256 = f->sha256,
		.mime = f->mime,
		.asset_type = f->asset_type,
	};
	int rc;

	infile_set_state(f, IF_RECORDING);
	rc = catalog_record(f->ing->catalog, &cf, record_cb, f);
	if (rc != 0) {
		/* -EAGAIN: too many files held while the database is away. Let the
		 * watcher settle it again later; it is still on disk. */
		watcher_file_retry(f->ing->watcher, f->folder, f->relpath);
		infile_set_state(f, IF_DONE);
	}
}

/* ---- hashing -------------------------------------------------------------- */

static int compute_final_path(struct infile *f)
{
	char rel[4096], *out;
	int rc;

	if (f->folder->after != AFTER_MOVE) {
		f->final_path = strdup(f->abspath);
		return f->final_path ? 0 : -ENOMEM;
	}
	rc = post_expand_template(f->folder->move_template, f->folder->tenant->code, f->asset_id,
				  f->relpath, (long long)time(NULL), rel, sizeof rel);
	if (rc != 0)
		return rc;
	out = malloc(strlen(f->folder->move_to) + strlen(rel) + 2);
	if (!out)
		return -ENOMEM;
	sprintf(out, "%s/%s", f->folder->move_to, rel);
	f->final_path = out;
	return 0;
}

static void hash_cb(const struct hash_result *res, void *arg)
{
	struct infile *f = arg;
	struct ingest *ing = f->ing;
	char esc[LOG_ESC_MAX], reason[512];

	log_escape(f->relpath, esc, sizeof esc);
	if (res->status == -ECANCELED) {
		infile_set_state(f, IF_DONE);
		return;
	}
	if (res->status == -ESTALE) {
		log_info("ingest", "%s \"%s\": changed while hashed; settling again",
			 f->folder->tenant->code, esc);
		watcher_file_retry(ing->watcher, f->folder, f->relpath);
		infile_set_state(f, IF_DONE);
		return;
	}
	if (res->status == -ENOENT) {
		log_info("ingest", "%s \"%s\": vanished before it was catalogued",
			 f->folder->tenant->code, esc);
		watcher_file_forget(ing->watcher, f->folder, f->relpath);
		infile_set_state(f, IF_DONE);
		return;
	}
	if (res->status != 0) {
		log_error("ingest", "%s \"%s\": %s", f->folder->tenant->code, esc, res->error);
		snprintf(reason, sizeof reason, "%s", res->error);
		quarantine(f, reason);
		return;
	}
	ing->n_hashed++;
	memcpy(f->sha256, res->sha256, sizeof f->sha256);
	snprintf(f->mime, sizeof f->mime, "%s", res->mime);
	snprintf(f->asset_type, sizeof f->asset_type, "%s", res->asset_type);
	f->id = res->id;
	uuid_v4(f->asset_id);
	if (compute_final_path(f) != 0) {
		snprintf(reason, sizeof reason, "move_template \"%s\" cannot be applied",
			 f->folder->move_template);
		quarantine(f, reason);
		return;
	}
	start_record(f);
}

static void start_hash(struct infile *f)
{
	char esc[LOG_ESC_MAX];

	infile_set_state(f, IF_HASHING);
	if (hasher_submit(f->ing->hasher, f->folder->path, f->relpath, &f->id, hash_cb, f) != 0) {
		log_error("ingest", "could not queue \"%s\" for hashing",
			  log_escape(f->relpath, esc, sizeof esc));
		watcher_file_retry(f->ing->watcher, f->folder, f->relpath);
		infile_set_state(f, IF_DONE);
	}
}

static void lookup_cb(bool known, const struct catalog_result *r, void *arg)
{
	struct infile *f = arg;

	if (!known) {
		start_hash(f);
		return;
	}
	/* The ledger already holds this exact file: no rehash. */
	memcpy(f->asset_id, r->asset_id, sizeof f->asset_id);
	if (r->move_pending && f->folder->after != AFTER_LEAVE) {
		free(f->final_path);
		f->final_path = strdup(r->final_path);
		if (f->final_path) {
			/* The checksum verifies a cross-device copy. */
			memcpy(f->sha256, r->sha256, sizeof f->sha256);
			start_post(f);
			return;
		}
	}
	f->ing->n_already++;
	watcher_file_done(f->ing->watcher, f->folder, f->relpath);
	infile_set_state(f, IF_DONE);
}

static void start_lookup(struct infile *f)
{
	infile_set_state(f, IF_LOOKUP);
	if (catalog_lookup(f->ing->catalog, f->folder, f->relpath, &f->id, lookup_cb, f) != 0)
		start_hash(f);
}

/* ---- watcher -------------------------------------------------------------- */

static struct infile *infile_new(struct ingest *ing, const struct watch_file *wf)
{
	struct infile *f = calloc(1, sizeof *f);

	if (!f)
		return NULL;
	f->ing = ing;
	f->folder = wf->folder;
	f->id = wf->id;
	f->relpath = strdup(wf->relpath);
	f->abspath = strdup(wf->abspath);
	if (!f->relpath || !f->abspath) {
		free(f->relpath);
		free(f->abspath);
		free(f);
		return NULL;
	}
	f->next = ing->files;
	if (f->next)
		f->next->pprev = &f->next;
	f->pprev = &ing->files;
	ing->files = f;
	ing->n_files++;
	return f;
}

static void print_line(const char *what, const struct watch_file *wf, const char *extra)
{
	char esc[LOG_ESC_MAX];

	printf("%s\t%s\t%s\t%s\n", what, wf->folder->tenant->code,
	       log_escape(wf->relpath, esc, sizeof esc), extra);
	fflush(stdout);
}

static void on_watcher_event(struct watcher *w, enum watcher_event ev, const struct watch_file *wf,
		       void *arg)
{
	struct ingest *ing = arg;
	struct infile *f;
	char num[32];

	switch (ev) {
	case WATCHER_FINISHED:
		if (ing->opts->no_db || ing->opts->dry_run) {
			snprintf(num, sizeof num, "%lld", (long long)wf->id.size);
			print_line("finished", wf, num);
			watcher_file_done(w, wf->folder, wf->relpath);
			return;
		}
		if (ing->stopping)
			return;
		f = infile_new(ing, wf);
		if (!f) {
			log_error("ingest", "out of memory; file left for the next pass");
			watcher_file_retry(w, wf->folder, wf->relpath);
			return;
		}
		start_lookup(f);
		return;
	case WATCHER_SETTLING:
		print_line("settling", wf, wf->reason ? wf->reason : "");
		return;
	case WATCHER_FOLDER_PAUSED:
		log_warnx("ingest", "%s: drop folder \"%s\" is gone; paused until it is back",
			  wf->folder->tenant->code, wf->folder->path);
		return;
	case WATCHER_FOLDER_RESUMED:
		log_info("ingest", "%s: drop folder \"%s\" is back; rescanned",
			 wf->folder->tenant->code, wf->folder->path);
		return;
	case WATCHER_SCAN_DONE:
		ing->scan_done = true;
		maybe_finish(ing);
		return;
	}
}

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
	if (catalog_confirm_move(ing->catalog, asset_id, confirm_cb, ing) != 0)
		log_warnx("ingest", "could not queue move confirmation for asset %s", asset_id);
	else
		ing->n_confirms++;
}

/* ---- maintenance, signals, start and stop --------------------------------- */

static void retry_held(struct ingest *ing)
{
	struct infile *f, *next;

	for (f = ing->files; f; f = next) {
		next = f->next;
		if (f->state == IF_HELD)
			start_record(f);
	}
}

#define MAINT_TICK_MS 60000

static void maint_cb(uv_timer_t *t)
{
	struct ingest *ing = container_of(t, struct ingest, maint);
	uint64_t ticks = ++ing->maint_ticks;
	uint64_t reconcile_ticks = ing->cfg->reconcile_interval_s > 0
					   ? (uint64_t)ing->cfg->reconcile_interval_s * 1000 / MAINT_TICK_MS
					   : 0;

	/* Partitions: daily, so the current and next month always exist. */
	if (ticks % (24 * 60) == 0)
		catalog_ensure_partitions(ing->catalog);
	if (reconcile_ticks && ticks % (reconcile_ticks ? reconcile_ticks : 1) == 0)
		retry_held(ing);
}

static void status_update(struct ingest *ing)
{
	struct watcher_stats st = {0};
	static const char *const dbs[] = {"down", "connecting", "connected", "closed"};

	if (ing->watcher)
		watcher_get_stats(ing->watcher, &st);
	notify_status("watching %llu folders' directories, %llu settling, %u in pipeline, "
		      "%u held; database %s; %llu catalogued",
		      (unsigned long long)st.watches, (unsigned long long)st.settling,
		      ing->n_files, ing->catalog ? catalog_held(ing->catalog) : 0,
		      ing->db ? dbs[db_state(ing->db)] : "off", (unsigned long long)ing->n_ingested);
}

static void on_db_state(struct db *db, enum db_state state, void *arg)
{
	struct ingest *ing = arg;

	(void)db;
	if (state == DB_READY) {
		log_info("ingest", "database connected");
		catalog_db_ready(ing->catalog);
	} else if (state == DB_DOWN) {
		log_warnx("ingest", "database unavailable; holding finished files and reconnecting");
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

	log_warnx("ingest", "%u files still in the pipeline after %d ms; stopping anyway (they "
			    "are still in their drop folders and are picked up at the next start)",
		  ing->n_files, STOP_GRACE_MS);
	shutdown_stages(ing);
}

static void watcher_closed(void *arg)
{
	struct ingest *ing = arg;

	ing->watcher = NULL;
	maybe_finish(ing);
}

static void begin_stop(struct ingest *ing)
{
	if (ing->stopping)
		return;
	ing->stopping = true;
	notify_stopping();
	uv_timer_stop(&ing->maint);
	uv_timer_start(&ing->stop_timer, stop_timer_cb, STOP_GRACE_MS, 0);
	if (ing->watcher)
		watcher_close(ing->watcher, watcher_closed, ing);
	else
		maybe_finish(ing);
}

/* Called whenever work completes: ends a oneshot scan, or a graceful stop. */
static void maybe_finish(struct ingest *ing)
{
	struct infile *f;
	unsigned busy = 0;

	for (f = ing->files; f && ing->opts->oneshot; f = f->next)
		if (f->state != IF_HELD)
			busy++;
	if (!ing->opts->oneshot)
		busy = ing->n_files;
	if (ing->opts->oneshot && ing->scan_done && busy == 0 && ing->n_confirms == 0 &&
	    !ing->stopping) {
		begin_stop(ing);
		return;
	}
	if (!ing->stopping || ing->watcher || ing->n_closing)
		return;
	/* Held files (over quota) stay in their folders: nothing to wait for. */
	for (f = ing->files; f; f = f->next)
		if (f->state != IF_HELD)
			return;
	if (ing->n_confirms)
		return;
	uv_timer_stop(&ing->stop_timer);
	shutdown_stages(ing);
}

static void signal_cb(uv_signal_t *s, int signum)
{
	struct ingest *ing = s->data;

	if (signum == SIGHUP) {
		log_info("ingest", "SIGHUP: retrying held files and rescanning every folder");
		retry_held(ing);
		if (ing->watcher)
			watcher_rescan_all(ing->watcher);
		return;
	}
	log_info("ingest", "%s: stopping", strsignal(signum));
	begin_stop(ing);
}

static int ingest_setup(struct ingest *ing)
{
	struct watcher_opts wopts = {
		.oneshot = ing->opts->oneshot,
		.report_settling = ing->opts->oneshot && ing->opts->dry_run,
	};
	bool need_db = !ing->opts->no_db && !ing->opts->dry_run;
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
	}
	rc = watcher_create(&ing->loop, ing->cfg, &wopts, on_watcher_event, ing, &ing->watcher);
	if (rc != 0) {
		log_error("ingest", "could not set up the watcher: %s", strerror(-rc));
		return rc;
	}
	if (ing->db)
		db_start(ing->db);
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
	signal(SIGPIPE, SIG_IGN);
	uv_loop_init(&ing->loop);
	uv_timer_init(&ing->loop, &ing->maint);
	uv_timer_init(&ing->loop, &ing->stop_timer);
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
	rc = ing->exit_code;
	if (!opts->no_db && !opts->dry_run)
		log_info("ingest", "summary: hashed=%llu catalogued=%llu known=%llu failed=%llu",
			 (unsigned long long)ing->n_hashed, (unsigned long long)ing->n_ingested,
			 (unsigned long long)ing->n_already, (unsigned long long)ing->n_failed);
	while (ing->files)
		infile_free(ing->files);
	free(ing);
	return rc;
}
