/*
 * ingest_post: what happens to a file after its catalogue entry is committed
 * (ingest.c hands it over in IF_POSTING): the folder's after_ingest action
 * (move or delete) and its confirmation in the ledger, the quarantine of a
 * duplicate or a rejected file, and, when either fails, leaving the file
 * where it is and retrying with backoff. Every state change still goes
 * through infile_set_state() in ingest.c.
 */
#include <errno.h>
#include <stdio.h>
#include <time.h>

#include "ingest_int.h"
#include "log.h"
#include "post.h"

/*
 * The after_ingest action or the quarantine failed (its target full or
 * unmounted, say). The asset, or the ledger's duplicate row, is committed and
 * the file is left where it is, so nothing is lost; the daemon tries again by
 * itself, POST_RETRY_MIN_MS later and doubling up to POST_RETRY_MAX_MS (+-10%,
 * so files that failed together do not retry in step): the watcher settles
 * the file again and the ledger lookup finds the action still pending. A file
 * changed since is a new version, already settling on its own (a copy that
 * saw it change fails its checksum). A `scan` leaves it for its next run, as
 * does a file the watcher cannot retry.
 */
static void post_failed(struct infile *f, const char *what, const char *error)
{
	const char *code = f->folder->tenant->code;
	unsigned attempt = 0;
	char esc[LOG_ESC_MAX];
	int delay = 0;

	if (infile_current(f))
		delay = watcher_file_backoff(f->ing->watcher, f->folder, f->relpath, &f->id,
					     POST_RETRY_MIN_MS, POST_RETRY_MAX_MS, &attempt);
	log_escape(f->relpath, esc, sizeof esc);
	if (delay == -ESTALE) {
		log_warnx("ingest", "%s \"%s\": %s, and the file has changed since: %s", code, esc,
			  what, error);
	} else if (delay > 0 && attempt <= 1) {
		log_error("ingest", "%s \"%s\": %s, retrying in %d s: %s", code, esc, what,
			  (delay + 500) / 1000, error);
	} else if (delay > 0) {
		/* Said at error level once; the operator knows by now. */
		log_warnx("ingest", "%s \"%s\": %s (attempt %u), retrying in %d s: %s", code, esc,
			  what, attempt, (delay + 500) / 1000, error);
	} else {
		log_error("ingest", "%s \"%s\": %s, will retry at the next start or scan: %s", code,
			  esc, what, error);
		infile_done(f);
	}
	infile_set_state(f, IF_DONE);
}

static void quarantine_cb(const struct post_result *res, void *arg)
{
	struct infile *f = arg;
	char esc[LOG_ESC_MAX];

	if (res->status == 0) {
		f->stats->quarantined++;
		log_warnx("ingest", "%s \"%s\": quarantined to \"%s\"%s%s", f->folder->tenant->code,
			  log_escape(f->relpath, esc, sizeof esc), res->final_path,
			  res->warning[0] ? ", without its reason file: " : "", res->warning);
		infile_forget(f);
		infile_set_state(f, IF_DONE);
		return;
	}
	post_failed(f, "could not quarantine", res->error);
}

/* Move the file to the folder's quarantine with a reason; reason is plain text. */
void ingest_quarantine(struct infile *f, const char *reason)
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
	if (post_submit(&f->ing->loop, POST_QUARANTINE, f->abspath, f->folder->quarantine_to, NULL,
			json, quarantine_cb, f) != 0) {
		log_error("ingest", "could not start quarantine of \"%s\"",
			  log_escape(f->relpath, esc, sizeof esc));
		infile_done(f);
		infile_set_state(f, IF_DONE);
	}
}

/* A confirmation or a failure report answered (the catalogue's batch logs
 * which kind failed, and why, once per batch). */
static void noted_cb(const struct catalog_result *r, void *arg)
{
	struct ingest *ing = arg;

	if (r->outcome == CAT_FAILED)
		log_warnx("ingest", "asset %s: could not note the after_ingest outcome: %s",
			  r->asset_id, r->error);
	ing->n_confirms--;
	ingest_maybe_finish(ing);
}

void ingest_confirm_move(struct ingest *ing, const char *asset_id)
{
	if (catalog_confirm_move(ing->catalog, asset_id, noted_cb, ing) != 0)
		log_warnx("ingest", "could not queue move confirmation for asset %s", asset_id);
	else
		ing->n_confirms++;
}

static void on_post_done(const struct post_result *res, void *arg)
{
	struct infile *f = arg;

	if (res->status != 0) {
		/* The asset is committed and its move stays pending in the ledger.
		 * Until a retry moves the file, the catalogue names where it is:
		 * the drop folder, unless the whole copy reached the destination
		 * (final_path set) and only removing the source failed. */
		if (f->folder->after == AFTER_MOVE && !res->final_path[0] &&
		    catalog_move_failed(f->ing->catalog, f->asset_id, noted_cb, f->ing) == 0)
			f->ing->n_confirms++;
		post_failed(f, "after_ingest failed", res->error);
		return;
	}
	ingest_confirm_move(f->ing, f->asset_id);
	infile_forget(f);
	infile_set_state(f, IF_DONE);
}

void ingest_start_post(struct infile *f)
{
	enum post_action act = f->folder->after == AFTER_DELETE ? POST_DELETE : POST_MOVE;
	char esc[LOG_ESC_MAX];

	infile_set_state(f, IF_POSTING);
	if (post_submit(&f->ing->loop, act, f->abspath, act == POST_MOVE ? f->final_path : NULL,
			f->sha256[0] ? f->sha256 : NULL, NULL, on_post_done, f) != 0) {
		log_error("ingest", "could not start after_ingest for \"%s\"",
			  log_escape(f->relpath, esc, sizeof esc));
		infile_done(f);
		infile_set_state(f, IF_DONE);
	}
}
