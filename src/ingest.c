/*
 * ingest: the only module that knows the whole pipeline. It wires
 *
 *   watcher (finished?) -> catalog lookup (already in the ledger?) -> hasher
 *     -> catalog record (one transaction per batch) -> post action -> done
 *
 * Each finished file becomes a struct infile whose life is the explicit state
 * machine below; every transition goes through infile_set_state(), which logs
 * it. Stages never call each other: they report here through their callbacks.
 * What follows a committed record (the after_ingest action, the quarantine,
 * their retries) is ingest_post.c.
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
#include <sys/stat.h>
#include <unistd.h>

#include <uv.h>

#include "ingest_int.h"
#include "log.h"
#include "post.h"
#include "util.h"

/* Before the catalogue's record: more catalogue work will follow. */
static bool upstream(enum infile_state st)
{
	return st == IF_LOOKUP || st == IF_HASHING;
}

static void infile_free(struct infile *f)
{
	if (upstream(f->state))
		f->ing->n_upstream--;
	*f->pprev = f->next;
	if (f->next)
		f->next->pprev = f->pprev;
	f->ing->n_files--;
	free(f->relpath);
	free(f->abspath);
	free(f->final_path);
	free(f);
}

/*
 * After a reload the watcher is a new one that knows only the new config's
 * folders; a file still in flight from before belongs to the old generation.
 * The new watcher's initial scan finds such a file again if it is still
 * there, and the ledger makes the second pass idempotent, so the old
 * generation's verdicts are simply not passed on.
 */
bool infile_current(const struct infile *f)
{
	return f->gen == f->ing->gen && f->ing->watcher;
}

void infile_done(struct infile *f)
{
	if (infile_current(f))
		watcher_file_done(f->ing->watcher, f->folder, f->relpath);
}

static void infile_retry(struct infile *f)
{
	if (infile_current(f))
		watcher_file_retry(f->ing->watcher, f->folder, f->relpath);
}

void infile_forget(struct infile *f)
{
	if (infile_current(f))
		watcher_file_forget(f->ing->watcher, f->folder, f->relpath);
}

static const char *const state_names[] = {"lookup",  "hashing", "recording",
					  "posting", "held",	"done"};

void infile_set_state(struct infile *f, enum infile_state st)
{
	char esc[LOG_ESC_MAX];

	log_debug("ingest", "%s \"%s\": %s -> %s", f->folder->tenant->code,
		  log_escape(f->relpath, esc, sizeof esc), state_names[f->state], state_names[st]);
	if (f->state == IF_HELD && st != IF_HELD) {
		f->ing->n_held--;
		if (f->stats)
			f->stats->held--;
	}
	if (f->state != IF_HELD && st == IF_HELD) {
		f->ing->n_held++;
		if (f->stats)
			f->stats->held++;
	}
	f->ing->n_upstream += (unsigned)upstream(st) - (unsigned)upstream(f->state);
	f->state = st;
	if (st == IF_DONE) {
		struct ingest *ing = f->ing;

		ing->n_done_files++;
		infile_free(f);
		ingest_maybe_finish(ing);
	}
}

static void uuid_v4(char out[37])
{
	unsigned char b[16];

	/* getrandom(2) through libuv, not RAND_bytes: OpenSSL's DRBG would load
	 * its provider machinery (2 MiB of libcrypto per daemon) for 16 bytes. */
	int rc = uv_random(NULL, NULL, b, sizeof b, 0, NULL);

	if (rc != 0) {
		/* Only when the kernel has no entropy source at all. */
		log_error("ingest", "could not generate random bytes for an asset id: %s",
			  uv_strerror(rc));
		abort();
	}
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
		 b[13], b[14], b[15]);
}

static void start_lookup(struct infile *f);

/* ---- catalogue ------------------------------------------------------------ */

static void record_cb(const struct catalog_result *r, void *arg)
{
	struct infile *f = arg;
	struct ingest *ing = f->ing;
	char esc[LOG_ESC_MAX], reason[512];

	log_escape(f->relpath, esc, sizeof esc);
	/*
	 * "already" without an asset: the ledger has this file as a duplicate
	 * (a start-up set that could say "new" skipped the lookup, and the sets
	 * leave out duplicates still to be quarantined). The lookup says what
	 * became of it, and retries a quarantine that did not happen.
	 */
	if (r->outcome == CAT_ALREADY && !r->asset_id[0]) {
		start_lookup(f);
		return;
	}
	/* In the ledger now: a start-up set that says "new" must not any more. */
	if (ing->known && (r->outcome == CAT_INGESTED || r->outcome == CAT_ALREADY ||
			   r->outcome == CAT_DUP_SKIPPED))
		ingest_known_recorded(ing, f->folder, f->relpath, &f->id);
	switch (r->outcome) {
	case CAT_INGESTED:
	case CAT_ALREADY:
		histogram_observe(&ing->latency, (double)(uv_hrtime() - f->t_finished) / 1e9);
		if (r->outcome == CAT_INGESTED) {
			ing->n_ingested++;
			f->stats->catalogued++;
			log_info("ingest",
				 "%s \"%s\": catalogued as asset %s (%s, %lld bytes, sha256 %s)",
				 f->folder->tenant->code, esc, r->asset_id, f->asset_type,
				 (long long)f->id.size, f->sha256);
		} else {
			ing->n_already++;
			f->stats->already++;
			log_info("ingest", "%s \"%s\": already catalogued as asset %s",
				 f->folder->tenant->code, esc, r->asset_id);
		}
		memcpy(f->asset_id, r->asset_id, sizeof f->asset_id);
		if (r->final_path[0]) {
			free(f->final_path);
			f->final_path = strdup(r->final_path);
		}
		if (f->folder->after != AFTER_LEAVE &&
		    (r->outcome == CAT_INGESTED || r->move_pending)) {
			ingest_start_post(f);
			return;
		}
		infile_done(f);
		infile_set_state(f, IF_DONE);
		return;
	case CAT_DUP_SKIPPED:
		f->stats->duplicates++;
		log_info("ingest", "%s \"%s\": duplicate of asset %s, skipped",
			 f->folder->tenant->code, esc, r->duplicate_of);
		infile_done(f);
		infile_set_state(f, IF_DONE);
		return;
	case CAT_DUP_QUARANTINE:
		f->stats->duplicates++;
		snprintf(reason, sizeof reason, "duplicate of asset %s", r->duplicate_of);
		ingest_quarantine(f, reason);
		return;
	case CAT_OVER_QUOTA:
		if (f->state != IF_HELD)
			log_warnx("ingest",
				  "%s \"%s\": over the tenant's storage quota; held until "
				  "the next reconcile or reload",
				  f->folder->tenant->code, esc);
		infile_set_state(f, IF_HELD);
		return;
	case CAT_TENANT_INACTIVE:
		log_info("ingest", "%s \"%s\": tenant is inactive; not catalogued",
			 f->folder->tenant->code, esc);
		if (ing->watcher)
			watcher_set_tenant_active(ing->watcher, f->folder->tenant->code, false);
		infile_forget(f);
		infile_set_state(f, IF_DONE);
		return;
	case CAT_FAILED:
		ing->n_failed++;
		f->stats->failed++;
		f->attempts++;
		log_error("ingest", "%s \"%s\": could not catalogue (attempt %d of %d): %s",
			  f->folder->tenant->code, esc, f->attempts, MAX_CATALOG_ATTEMPTS,
			  r->error);
		if (f->attempts >= MAX_CATALOG_ATTEMPTS) {
			snprintf(reason, sizeof reason, "could not be catalogued: %s", r->error);
			ingest_quarantine(f, reason);
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
		infile_retry(f);
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
		infile_retry(f);
		infile_set_state(f, IF_DONE);
		return;
	}
	if (res->status == -ENOENT) {
		log_info("ingest", "%s \"%s\": vanished before it was catalogued",
			 f->folder->tenant->code, esc);
		infile_forget(f);
		infile_set_state(f, IF_DONE);
		return;
	}
	if (res->status != 0) {
		log_error("ingest", "%s \"%s\": %s", f->folder->tenant->code, esc, res->error);
		snprintf(reason, sizeof reason, "%s", res->error);
		ingest_quarantine(f, reason);
		return;
	}
	ing->n_hashed++;
	f->stats->bytes_hashed += res->bytes;
	f->stats->hash_seconds += res->seconds;
	memcpy(f->sha256, res->sha256, sizeof f->sha256);
	snprintf(f->mime, sizeof f->mime, "%s", res->mime);
	snprintf(f->asset_type, sizeof f->asset_type, "%s", res->asset_type);
	f->id = res->id;
	uuid_v4(f->asset_id);
	if (compute_final_path(f) != 0) {
		snprintf(reason, sizeof reason, "move_template \"%s\" cannot be applied",
			 f->folder->move_template);
		ingest_quarantine(f, reason);
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
		infile_retry(f);
		infile_set_state(f, IF_DONE);
	}
}

/*
 * The tenant was found inactive (in the database, at start-up) while the file
 * waited for its lookup: the watcher has already let go of the folder, and the
 * file must not even be read.
 */
static bool tenant_went_inactive(struct infile *f)
{
	char esc[LOG_ESC_MAX];

	if (!f->ing->watcher || watcher_folder_active(f->ing->watcher, f->folder))
		return false;
	log_info("ingest", "%s \"%s\": tenant is inactive; not read", f->folder->tenant->code,
		 log_escape(f->relpath, esc, sizeof esc));
	infile_forget(f);
	infile_set_state(f, IF_DONE);
	return true;
}

static void lookup_cb(bool known, const struct catalog_result *r, void *arg)
{
	struct infile *f = arg;

	if (!known) {
		if (!tenant_went_inactive(f))
			start_hash(f);
		return;
	}
	/*
	 * The ledger says this exact file is a duplicate to quarantine, yet it is
	 * still in the drop folder: the quarantine failed (its disk was full, say)
	 * or we stopped before it ran. Nothing else would ever move it, so try
	 * again now; the ledger row keeps it from being catalogued meanwhile.
	 */
	if (r->outcome == CAT_DUP_QUARANTINE) {
		char reason[128];

		memcpy(f->sha256, r->sha256, sizeof f->sha256);
		snprintf(reason, sizeof reason, "duplicate of asset %s", r->duplicate_of);
		ingest_quarantine(f, reason);
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
			ingest_start_post(f);
			return;
		}
	}
	f->ing->n_already++;
	f->stats->already++;
	infile_done(f);
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
	f->gen = ing->gen;
	f->folder = wf->folder;
	f->stats = ingest_folder_stats(ing, wf->folder);
	if (wf->attempt)
		f->stats->retried++;
	else
		f->stats->finished++;
	f->t_finished = uv_hrtime();
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
	ing->n_upstream++; /* IF_LOOKUP */
	return f;
}

static void print_line(const char *what, const struct watch_file *wf, const char *extra)
{
	char esc[LOG_ESC_MAX];

	printf("%s\t%s\t%s\t%s\n", what, wf->folder->tenant->code,
	       log_escape(wf->relpath, esc, sizeof esc), extra);
	fflush(stdout);
}

void ingest_watcher_event(struct watcher *w, enum watcher_event ev, const struct watch_file *wf,
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
		if (wf->known || ingest_file_known(wf->folder, wf->relpath, &wf->id, ing)) {
			/* What the lookup would have said, without an infile or a
			 * round trip: a restart over 100,000 catalogued files holds
			 * no more than the watcher's table. */
			struct folder_stats *fs = ingest_folder_stats(ing, wf->folder);
			char esc[LOG_ESC_MAX];

			fs->finished++;
			fs->already++;
			ing->n_already++;
			log_debug("ingest", "%s \"%s\": already catalogued (known at start)",
				  wf->folder->tenant->code,
				  log_escape(wf->relpath, esc, sizeof esc));
			watcher_file_done(w, wf->folder, wf->relpath);
			return;
		}
		f = infile_new(ing, wf);
		if (!f) {
			log_error("ingest", "out of memory; file left for the next pass");
			watcher_file_retry(w, wf->folder, wf->relpath);
			return;
		}
		/* A whole, trusted set that lacks it: new, no round trip to ask. */
		if (!ingest_known_complete(ing, wf->folder))
			start_lookup(f);
		else if (!tenant_went_inactive(f))
			start_hash(f);
		ingest_backlog_check(ing);
		return;
	case WATCHER_SETTLING: print_line("settling", wf, wf->reason ? wf->reason : ""); return;
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
		ingest_maybe_finish(ing);
		return;
	}
}

/*
 * Runs once per loop iteration, after its callbacks. A catalogue queue waits
 * batch_max_ms for company; when nothing can join it soon, that wait is only
 * latency. Lookups come from the watcher, which reports what it has within
 * one iteration, so the lookups queued by an iteration go at its end. Records
 * come from files being looked up or hashed: when there are none, the open
 * batch is complete and goes. Under load neither changes the batching: files
 * keep hashing while records queue, and while two batches are out the queues
 * keep filling (catalog.c, MAX_INFLIGHT).
 */
void ingest_flush_check(uv_check_t *h)
{
	struct ingest *ing = container_of(h, struct ingest, flush_check);

	if (ing->catalog)
		catalog_flush(ing->catalog, ing->n_upstream == 0);
}

void ingest_retry_held(struct ingest *ing)
{
	struct infile *f, *next;

	for (f = ing->files; f; f = next) {
		next = f->next;
		if (f->state == IF_HELD)
			start_record(f);
	}
}

struct folder_stats *ingest_folder_stats(struct ingest *ing, const struct folder_cfg *folder)
{
	size_t i;

	/* A handful of folders: a linear search beats a hash table here. */
	for (i = 0; i < ing->n_fstats; i++)
		if (ing->fstats[i]->folder == folder)
			return ing->fstats[i];
	/* daemon.c creates an entry for every folder of the current config. */
	abort();
}

void ingest_free_files(struct ingest *ing)
{
	while (ing->files)
		infile_free(ing->files);
}
