/*
 * daemon_metrics: what `mam-ingest run` says on /metrics (Prometheus text:
 * per-folder counters and watch state, pipeline gauges, catalogue batch
 * histograms) and on /healthz (503 once the database has been unreachable
 * for DB_GRACE_NS). Both run on the loop thread, from metrics.c's server.
 */
#include <stdio.h>

#include "ingest_int.h"

/* ---- /metrics and /healthz -------------------------------------------------- */

#define DB_GRACE_NS (30ULL * 1000000000ULL)

bool ingest_health_check(char *reason, size_t sz, void *arg)
{
	struct ingest *ing = arg;

	/* The loop answered this request, so it is responsive. */
	if (ing->db && db_state(ing->db) != DB_READY && ing->db_down_since &&
	    uv_hrtime() - ing->db_down_since > DB_GRACE_NS) {
		snprintf(reason, sz, "database unreachable for %llu s",
			 (unsigned long long)((uv_hrtime() - ing->db_down_since) / 1000000000ULL));
		return false;
	}
	snprintf(reason, sz, "ok");
	return true;
}

static void folder_labels(struct mbuf *b, const struct folder_stats *fs)
{
	mbuf_printf(b, "tenant=\"");
	mbuf_label(b, fs->tenant);
	mbuf_printf(b, "\",folder=\"");
	mbuf_label(b, fs->path);
	mbuf_printf(b, "\"");
}

static void render_counter(struct mbuf *b, struct ingest *ing, const char *name, const char *help,
			   size_t off, bool is_double)
{
	size_t i;

	mbuf_printf(b, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
	for (i = 0; i < ing->n_fstats; i++) {
		const char *base = (const char *)ing->fstats[i];

		mbuf_printf(b, "%s{", name);
		folder_labels(b, ing->fstats[i]);
		if (is_double)
			mbuf_printf(b, "} %.6f\n", *(const double *)(base + off));
		else
			mbuf_printf(b, "} %llu\n",
				    (unsigned long long)*(const uint64_t *)(base + off));
	}
}

/* What the watcher knows per folder of the current config. */
static void render_folder_watch(struct mbuf *b, struct ingest *ing)
{
	static const struct {
		const char *name, *type, *help;
	} m[3] = {
		{"mam_ingest_files_seen_total", "counter",
		 "Files the watcher started tracking (since start or the last reload)."},
		{"mam_ingest_folder_files_settling", "gauge", "Files settling now."},
		{"mam_ingest_oldest_settling_seconds", "gauge",
		 "Seconds the settling file unchanged longest has been so (a writer holding it "
		 "open, a missing ready marker)."},
	};
	struct watcher_folder_stats st;
	size_t i, k;

	if (!ing->watcher)
		return;
	mbuf_printf(b,
		    "# HELP mam_ingest_folder_watch The folder's watch mode and state (always 1).\n"
		    "# TYPE mam_ingest_folder_watch gauge\n");
	for (i = 0; i < ing->n_fstats; i++) {
		if (!ing->fstats[i]->folder)
			continue;
		watcher_get_folder_stats(ing->watcher, ing->fstats[i]->folder, &st);
		mbuf_printf(b, "mam_ingest_folder_watch{");
		folder_labels(b, ing->fstats[i]);
		mbuf_printf(b, ",mode=\"%s\",state=\"%s\"} 1\n", st.mode, st.state);
	}
	for (k = 0; k < 3; k++) {
		mbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", m[k].name, m[k].help, m[k].name,
			    m[k].type);
		for (i = 0; i < ing->n_fstats; i++) {
			if (!ing->fstats[i]->folder)
				continue;
			watcher_get_folder_stats(ing->watcher, ing->fstats[i]->folder, &st);
			mbuf_printf(b, "%s{", m[k].name);
			folder_labels(b, ing->fstats[i]);
			if (k == 0)
				mbuf_printf(b, "} %llu\n", (unsigned long long)st.seen);
			else if (k == 1)
				mbuf_printf(b, "} %llu\n", (unsigned long long)st.settling);
			else
				mbuf_printf(b, "} %.3f\n", st.oldest_settling_s);
		}
	}
}

void ingest_render_metrics(struct mbuf *b, void *arg)
{
	struct ingest *ing = arg;
	struct watcher_stats ws = {0};
	size_t i;

	render_counter(b, ing, "mam_ingest_files_finished_total",
		       "Files the watcher found finished.", offsetof(struct folder_stats, finished),
		       false);
	render_counter(b, ing, "mam_ingest_files_retried_total",
		       "Retries of a failed after_ingest action or quarantine (not counted as "
		       "finished).",
		       offsetof(struct folder_stats, retried), false);
	render_counter(b, ing, "mam_ingest_files_catalogued_total", "New assets recorded.",
		       offsetof(struct folder_stats, catalogued), false);
	render_counter(b, ing, "mam_ingest_files_known_total",
		       "Finished files already in the ledger (not recorded again).",
		       offsetof(struct folder_stats, already), false);
	render_counter(b, ing, "mam_ingest_files_duplicate_total",
		       "Files skipped or quarantined as duplicates.",
		       offsetof(struct folder_stats, duplicates), false);
	render_counter(b, ing, "mam_ingest_files_failed_total", "Catalogue failures.",
		       offsetof(struct folder_stats, failed), false);
	render_counter(b, ing, "mam_ingest_files_quarantined_total", "Files quarantined.",
		       offsetof(struct folder_stats, quarantined), false);
	render_counter(b, ing, "mam_ingest_bytes_hashed_total", "Bytes hashed.",
		       offsetof(struct folder_stats, bytes_hashed), false);
	render_counter(b, ing, "mam_ingest_hash_seconds_total", "Seconds spent hashing.",
		       offsetof(struct folder_stats, hash_seconds), true);
	mbuf_printf(b, "# HELP mam_ingest_files_held Files held (over quota or to retry).\n"
		       "# TYPE mam_ingest_files_held gauge\n");
	for (i = 0; i < ing->n_fstats; i++) {
		mbuf_printf(b, "mam_ingest_files_held{");
		folder_labels(b, ing->fstats[i]);
		mbuf_printf(b, "} %u\n", ing->fstats[i]->held);
	}
	mbuf_printf(b, "# HELP mam_ingest_folder_owned 1 when this node ingests the folder "
		       "(holds its advisory lock, or folder_locks is off).\n"
		       "# TYPE mam_ingest_folder_owned gauge\n");
	for (i = 0; i < ing->n_fstats; i++) {
		if (!ing->fstats[i]->folder)
			continue;
		mbuf_printf(b, "mam_ingest_folder_owned{");
		folder_labels(b, ing->fstats[i]);
		mbuf_printf(b, "} %d\n", ing->fstats[i]->owned ? 1 : 0);
	}
	render_folder_watch(b, ing);
	if (ing->watcher)
		watcher_get_stats(ing->watcher, &ws);
	mbuf_printf(
		b,
		"# TYPE mam_ingest_inotify_overflows_total counter\n"
		"mam_ingest_inotify_overflows_total %llu\n"
		"# TYPE mam_ingest_rescans_total counter\nmam_ingest_rescans_total %llu\n"
		"# TYPE mam_ingest_watches gauge\nmam_ingest_watches %llu\n"
		"# TYPE mam_ingest_files_tracked gauge\nmam_ingest_files_tracked %llu\n"
		"# TYPE mam_ingest_files_settling gauge\nmam_ingest_files_settling %llu\n"
		"# TYPE mam_ingest_files_in_pipeline gauge\nmam_ingest_files_in_pipeline %u\n"
		"# TYPE mam_ingest_files_waiting_for_database gauge\n"
		"mam_ingest_files_waiting_for_database %u\n"
		"# TYPE mam_ingest_database_connected gauge\nmam_ingest_database_connected %d\n",
		(unsigned long long)ws.overflows, (unsigned long long)ws.rescans,
		(unsigned long long)ws.watches, (unsigned long long)ws.tracked,
		(unsigned long long)ws.settling, ing->n_files,
		ing->catalog ? catalog_held(ing->catalog) : 0,
		ing->db && db_state(ing->db) == DB_READY);
	mbuf_printf(b, "# HELP mam_ingest_finished_to_committed_seconds Latency from finished to "
		       "committed.\n# TYPE mam_ingest_finished_to_committed_seconds histogram\n");
	histogram_render(b, "mam_ingest_finished_to_committed_seconds", "", &ing->latency);
	if (ing->catalog) {
		const struct catalog_stats *cs = catalog_get_stats(ing->catalog);

		mbuf_printf(b, "# HELP mam_ingest_batch_files Files per catalogue transaction.\n"
			       "# TYPE mam_ingest_batch_files histogram\n");
		histogram_render(b, "mam_ingest_batch_files", "", &cs->batch_files);
		mbuf_printf(b, "# HELP mam_ingest_batch_commit_seconds From sending a catalogue "
			       "batch to its committed answer.\n"
			       "# TYPE mam_ingest_batch_commit_seconds histogram\n");
		histogram_render(b, "mam_ingest_batch_commit_seconds", "", &cs->batch_seconds);
	}
}
