/*
 * ingest_known: the files a drop folder already has in the ledger, read at
 * start. On the first connection each folder that leaves its files in place
 * gets its known identities in pages (mam_ingest_known, sql/007) into a
 * compact set (known.c); while the sets exist, a finished file found in one
 * is "already catalogued" without an infile or a lookup of its own, which
 * is what makes a restart over 100,000 catalogued files cheap. The sets only
 * ever answer "known" for files the ledger has; anything else (a set that
 * could not be read, a file catalogued since) takes the per-file lookup.
 * `run` and `scan` wait for them before their first scan (ingest_known_gate),
 * and they are freed once the start-up scans are over.
 *
 * A set can also answer "new": when it was read whole while this node held
 * the folder's lock, and the lock was held ever since, no other node can have
 * catalogued a file of the folder since the set was read, and this node adds
 * what it catalogues itself (ingest_known_recorded). A file the set does not
 * hold is then hashed at once, without a lookup round trip. The page queries
 * go on the session's connection after the lock statements (daemon.c queues
 * the owner round first), so when the first page answers, owner_owns() tells
 * whether the lock was held when the pages were read. A lost lock, a reload
 * (which may drop and retake folders, and whose new tenants are upserted
 * after files are already reported) and running without folder locks all
 * leave the sets unable to say "new". The one kind of ledger row the sets
 * leave out on purpose, a duplicate whose quarantine is still to be done
 * (sql/007), comes back from the record as "already" without an asset, and
 * ingest.c then asks the lookup, which says what to do with it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "db.h"
#include "heap.h"
#include "ingest_int.h"
#include "known.h"
#include "log.h"
#include "util.h"

/* Fingerprints per page: 16 bytes each, 512 KiB of hex in one result. */
#define KNOWN_PAGE 16384

static void known_page_cb(int status, int64_t last_id, int n, const char *hex, void *arg);

/* A page's answer: one row of last_id, n, fingerprints (bytea as hex). */
static void known_result(PGresult *res, const char *error, void *arg)
{
	if (error || !res || PQntuples(res) != 1 || PQnfields(res) != 3) {
		if (error)
			log_warnx("ingest", "could not read the known files: %s", error);
		known_page_cb(-EIO, 0, 0, NULL, arg);
		return;
	}
	known_page_cb(0, strtoll(PQgetvalue(res, 0, 0), NULL, 10),
		      (int)strtol(PQgetvalue(res, 0, 1), NULL, 10), PQgetvalue(res, 0, 2), arg);
}

static void known_next(struct known_folder *kf)
{
	const struct folder_cfg *folder;
	struct ingest *ing = kf->ing;
	char after[32], limit[16];
	int rc = -ENOENT;

	/* The folder as the current config has it (a reload may have come between). */
	folder = config_find_folder(ing->cfg, kf->tenant, kf->path);
	if (folder && ing->db) {
		const char *params[4] = {folder->tenant->code, folder->path, after, limit};

		snprintf(after, sizeof after, "%lld", (long long)kf->after);
		snprintf(limit, sizeof limit, "%d", KNOWN_PAGE);
		/* A statement of its own, straight to db.c: not a catalogue batch. */
		rc = db_state(ing->db) != DB_READY
			     ? -ENOTCONN
			     : db_exec(ing->db,
				       "SELECT last_id, n, fingerprints FROM "
				       "mam_ingest_known($1, $2, $3::bigint, $4::int)",
				       4, params, known_result, kf);
	}
	if (rc != 0)
		known_page_cb(rc, 0, 0, NULL, kf);
}

static void known_page_cb(int status, int64_t last_id, int n, const char *hex, void *arg)
{
	struct known_folder *kf = arg;
	struct ingest *ing = kf->ing;
	size_t i;
	int rc = status;

	if (ing->stopping || !ing->known)
		return;
	if (!kf->started) {
		const struct folder_cfg *folder =
			config_find_folder(ing->cfg, kf->tenant, kf->path);

		kf->started = true;
		/* Only under a lock: without folder locks other nodes may ingest
		 * the folder too (docs/configuration.md, folder_locks). */
		kf->trusted = folder && ing->owner && owner_owns(ing->owner, folder);
	}
	if (rc == 0)
		rc = known_add_hex(kf->set, hex);
	if (rc != 0) {
		/* Partial sets would still be right about what they hold, but one that
		 * could not be read whole is dropped: its files take lookups. */
		log_warnx("ingest",
			  "%s \"%s\": could not read the files already catalogued (%s); "
			  "each is looked up instead",
			  kf->tenant, kf->path, strerror(-rc));
		known_free(kf->set);
		kf->set = NULL;
		kf->done = true;
	} else if (n < KNOWN_PAGE) {
		kf->done = true;
		log_info("ingest", "%s \"%s\": %zu files already catalogued", kf->tenant, kf->path,
			 known_count(kf->set));
	} else {
		kf->after = last_id;
		known_next(kf);
		return;
	}
	for (i = 0; i < ing->n_known; i++)
		if (!ing->known[i].done)
			return;
	ingest_known_ready(ing);
}

void ingest_known_load(struct ingest *ing)
{
	size_t t, i, n = 0;

	for (t = 0; t < ing->cfg->n_tenants; t++)
		n += ing->cfg->tenants[t].n_folders;
	ing->known = calloc(n ? n : 1, sizeof *ing->known);
	if (!ing->known) {
		ingest_known_ready(ing);
		return;
	}
	for (t = 0; t < ing->cfg->n_tenants; t++) {
		for (i = 0; i < ing->cfg->tenants[t].n_folders; i++) {
			struct known_folder *kf = &ing->known[ing->n_known++];

			kf->ing = ing;
			kf->tenant = strdup(ing->cfg->tenants[t].code);
			kf->path = strdup(ing->cfg->tenants[t].folders[i].path);
			/* A folder that moves or deletes what it catalogued finds
			 * none of it again: its ledger is history, which may be far
			 * larger than the folder, so it is not read (the few files
			 * left behind, skipped duplicates, take lookups). */
			if (ing->cfg->tenants[t].folders[i].after != AFTER_LEAVE) {
				kf->done = true;
				continue;
			}
			if (!kf->tenant || !kf->path || known_create(&kf->set) != 0) {
				log_warnx("ingest", "out of memory for the files already "
						    "catalogued; each is looked up instead");
				kf->done = true;
			}
		}
	}
	if (n == 0) {
		ingest_known_ready(ing);
		return;
	}
	/* Issued after the loop: a page may answer (and fail) at once. */
	for (i = 0; i < ing->n_known; i++)
		if (!ing->known[i].done)
			known_next(&ing->known[i]);
	/* Every folder may have been settled without a page. */
	for (i = 0; i < ing->n_known && ing->known[i].done; i++)
		;
	if (i == ing->n_known)
		ingest_known_ready(ing);
}

void ingest_known_free(struct ingest *ing)
{
	size_t i;

	for (i = 0; i < ing->n_known; i++) {
		free(ing->known[i].tenant);
		free(ing->known[i].path);
		known_free(ing->known[i].set);
	}
	free(ing->known);
	ing->known = NULL;
	ing->n_known = 0;
}

static struct known_folder *known_find(struct ingest *ing, const struct folder_cfg *folder)
{
	size_t i;

	for (i = 0; i < ing->n_known; i++) {
		struct known_folder *kf = &ing->known[i];

		if (strcmp(kf->path, folder->path) == 0 &&
		    strcmp(kf->tenant, folder->tenant->code) == 0)
			return kf;
	}
	return NULL;
}

/* Is this exact file (path and identity, st_dev aside) in the ledger's set? */
bool ingest_file_known(const struct folder_cfg *folder, const char *relpath,
		       const struct file_id *id, void *arg)
{
	struct known_folder *kf = known_find(arg, folder);

	return kf && kf->set && known_has(kf->set, relpath, id);
}

bool ingest_known_complete(struct ingest *ing, const struct folder_cfg *folder)
{
	struct known_folder *kf = known_find(ing, folder);

	return kf && kf->set && kf->done && kf->trusted;
}

void ingest_known_owner_lost(struct ingest *ing, const struct folder_cfg *folder)
{
	struct known_folder *kf = known_find(ing, folder);

	if (kf)
		kf->trusted = false;
}

void ingest_known_untrust(struct ingest *ing)
{
	size_t i;

	for (i = 0; i < ing->n_known; i++)
		ing->known[i].trusted = false;
}

void ingest_known_recorded(struct ingest *ing, const struct folder_cfg *folder, const char *relpath,
			   const struct file_id *id)
{
	struct known_folder *kf = known_find(ing, folder);

	/* Out of memory (or a path too long to fingerprint): the set can no
	 * longer say "new" for the folder. */
	if (kf && kf->set && known_add(kf->set, relpath, id) != 0)
		kf->trusted = false;
}

/* ---- the gate before the first scan, and freeing the sets after it -------- */

/* How long `run` waits for them before its first scan. */
#define KNOWN_WAIT_MS 5000
/* Then how often it looks whether the start-up pass is over, and for how
 * many looks at most (a file settling for hours must not keep the sets). */
#define KNOWN_SWEEP_MS	 1000
#define KNOWN_SWEEPS_MAX 120

static void known_sweep_cb(uv_timer_t *t)
{
	struct ingest *ing = container_of(t, struct ingest, known_timer);
	struct watcher_stats st = {0};
	size_t i;

	if (ing->watcher)
		watcher_get_stats(ing->watcher, &st);
	for (i = 0; i < ing->n_known; i++)
		if (!ing->known[i].done)
			return;
	/*
	 * The sets are for the files the first scans find: once those scans are
	 * merged and nothing settles or is in flight, every such file was
	 * answered, and a file that arrives later is looked up as it always was.
	 */
	if ((st.scanning || st.settling || ing->n_files) && ++ing->known_sweeps < KNOWN_SWEEPS_MAX)
		return;
	ingest_known_free(ing);
	uv_timer_stop(t);
	log_debug("ingest", "start-up pass over: known-file sets freed; new files are looked up");
	/* The scans' listings and the sets are gone: give the pages back. */
	heap_trim();
}

static void known_timer_cb(uv_timer_t *t)
{
	struct ingest *ing = container_of(t, struct ingest, known_timer);

	log_warnx("ingest",
		  "the files already catalogued were not read within %d ms; "
		  "scanning anyway (unknown ones are looked up)",
		  KNOWN_WAIT_MS);
	ingest_known_ready(ing);
}

/*
 * `run` reads the ledger's known files before its first scan, so the files
 * catalogued before this start are recognised as the scan finds them, not
 * each looked up. The wait is bounded: past KNOWN_WAIT_MS, or without a
 * database, it scans anyway and what is not known yet is looked up as before.
 */
void ingest_known_gate(struct ingest *ing)
{
	ing->known_gate = true;
	uv_timer_start(&ing->known_timer, known_timer_cb, KNOWN_WAIT_MS, 0);
}

void ingest_known_ready(struct ingest *ing)
{
	if (ing->stopping)
		return;
	ing->known_settled = true;
	if (ing->warm_after_known) {
		ing->warm_after_known = false;
		if (ing->catalog)
			catalog_warm_up(ing->catalog);
	}
	if (ing->known_gate) {
		ing->known_gate = false;
		ingest_start_watching(ing);
	}
	if (ing->known)
		uv_timer_start(&ing->known_timer, known_sweep_cb, KNOWN_SWEEP_MS, KNOWN_SWEEP_MS);
	else
		uv_timer_stop(&ing->known_timer);
}
