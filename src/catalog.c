/*
 * catalog: hashed files become catalogue rows, exactly once, in batches.
 *
 * Requests (record a file, look one up, confirm a move) wait in one open
 * queue per kind until it holds batch_max_files or the oldest has waited
 * batch_max_ms and the pipeline has room (see MAX_INFLIGHT); the queue then
 * becomes a batch: one statement, one jsonb parameter, one implicit
 * transaction (sql/002_ingest.sql, and 006_burst.sql, do the work).
 * Batches wait on one list in submission order and are pipelined on the
 * connection a few at a time. A batch keeps its requests until its result
 * arrives: when the connection is lost (result NULL: committed or not, nobody
 * knows) the batch simply stays on the list and is sent again after the next
 * catalog_db_ready(); the ledger makes that resend idempotent (what committed
 * comes back as "already" with the asset id recorded the first time). So a
 * file is held, never dropped, while the database is away, up to
 * max_held_files, past which catalog_record() says -EAGAIN.
 *
 * The start-up statements (tenants, partitions, the pending-move listing) are
 * batches of their own put at the front of the list on every READY, so they
 * run before any held file; they are dropped, not resent, when their
 * connection is lost, since the next READY issues them again.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "catalog.h"
#include "catalog_int.h"
#include "catalog_json.h"
#include "log.h"

/*
 * Batches on the wire at once: two keep the one backend busy (the next batch
 * is there when one commits) and overlap round trips with work; more would
 * only queue small batches behind them. It also sets the batch size under
 * load: while MAX_INFLIGHT batches are out (sent or waiting their turn), an
 * open queue whose batch_max_ms has passed is not closed but keeps filling,
 * up to batch_max_files, until one comes back (Nagle's rule). When the
 * database keeps up that changes nothing (a queue closes after batch_max_ms,
 * as before); when it is the bottleneck, the files that would have waited in
 * many small batches travel in few big ones, and each batch's fixed cost
 * (statements, planning, commit) is shared by more files.
 */
#define MAX_INFLIGHT 2
/* Wait before resending a batch that hit a transient error (deadlock, read-only...). */
#define RETRY_MS 1000

static const char *const kind_sql[] = {
	[K_RECORD] = "SELECT idx, outcome, asset_id, final_path, move_pending, duplicate_of, "
		     "error, final_path_hex FROM mam_ingest_batch($1::jsonb)",
	[K_LOOKUP] = "SELECT idx, asset_id, final_path, move_pending, outcome, duplicate_of, "
		     "final_path_hex, sha256 FROM mam_ingest_lookup($1::jsonb)",
	[K_CONFIRM] = "SELECT (x.o - 1)::int, mam_confirm_move(x.a) "
		      "FROM unnest($1::uuid[]) WITH ORDINALITY AS x(a, o)",
	/* false: the ledger says there is nothing to point back (sql/008). */
	[K_UNMOVED] = "SELECT (x.o - 1)::int, mam_point_original(x.a, true) "
		      "FROM unnest($1::uuid[]) WITH ORDINALITY AS x(a, o)",
	[K_TENANTS] = "SELECT code, is_active FROM mam_upsert_tenants($1::jsonb)",
	/* Whatever the function's end-date convention, this range covers both months. */
	[K_PARTITIONS] = "SELECT mam_create_assets_partitions("
			 "date_trunc('month', current_date)::date, "
			 "(date_trunc('month', current_date) + interval '2 month' "
			 "- interval '1 day')::date)",
	[K_MOVES] = "SELECT tenant, folder, asset_id, source_path, source_path_hex, final_path, "
		    "final_path_hex, sha256 FROM mam_pending_moves($1::jsonb)",
	/* Empty calls: see catalog_warm_up(). They write nothing. */
	[K_WARMUP] = "SELECT (SELECT count(*) FROM mam_ingest_lookup('[]'::jsonb)) "
		     "+ (SELECT count(*) FROM mam_ingest_batch('[]'::jsonb)) "
		     "+ (SELECT count(*) FROM mam_ingest_set('[]'::jsonb))",
};

/* Kinds whose items are asset ids, sent as one uuid[] literal. */
static bool by_id(enum kind k)
{
	return k == K_CONFIRM || k == K_UNMOVED;
}

static void item_free(struct item *it)
{
	free(it->json);
	free(it);
}

static void batch_free(struct batch *b)
{
	unsigned i;

	for (i = 0; i < b->n; i++)
		item_free(b->items[i]);
	free(b->items);
	free(b->param);
	free(b);
}

static void batch_unlink(struct catalog *c, struct batch *b)
{
	struct batch **pp = &c->bhead, *prev = NULL;

	while (*pp && *pp != b) {
		prev = *pp;
		pp = &(*pp)->next;
	}
	if (!*pp)
		return;
	*pp = b->next;
	if (c->btail == b)
		c->btail = prev;
	b->next = NULL;
}

void catalog_batch_append(struct catalog *c, struct batch *b)
{
	if (c->btail)
		c->btail->next = b;
	else
		c->bhead = b;
	c->btail = b;
}

void catalog_batch_prepend(struct catalog *c, struct batch *b)
{
	b->next = c->bhead;
	c->bhead = b;
	if (!c->btail)
		c->btail = b;
}

/* Turn an open queue into a batch at the end of the list. */
static void queue_close(struct catalog *c, enum kind k)
{
	struct queue *q = &c->q[k];
	struct batch *b;
	struct item *it;
	unsigned i = 0;

	if (q->n == 0)
		return;
	b = calloc(1, sizeof *b);
	if (b)
		b->items = calloc(q->n, sizeof *b->items);
	if (!b || !b->items) {
		/* Leave the queue as it is: the next request or timer tries again. */
		free(b);
		log_error("catalog", "out of memory closing a batch of %u", q->n);
		return;
	}
	b->cat = c;
	b->kind = k;
	for (it = q->head; it; it = it->next)
		b->items[i++] = it;
	for (i = 0; i < q->n; i++)
		b->items[i]->next = NULL;
	b->n = q->n;
	q->head = q->tail = NULL;
	q->n = 0;
	catalog_batch_append(c, b);
}

/* Batches on the list, sent or waiting, counted up to MAX_INFLIGHT. */
static bool pipeline_full(const struct catalog *c)
{
	const struct batch *b;
	unsigned n = 0;

	for (b = c->bhead; b && n < MAX_INFLIGHT; b = b->next)
		n++;
	return n >= MAX_INFLIGHT;
}

/* Close the queues whose time is up while the pipeline can take them. */
static void close_due(struct catalog *c)
{
	int k;

	for (k = 0; k < K_NQUEUES; k++) {
		if (!c->q[k].due)
			continue;
		if (c->q[k].n == 0) {
			c->q[k].due = false;
			continue;
		}
		if (pipeline_full(c))
			return;
		c->q[k].due = false;
		queue_close(c, (enum kind)k);
	}
}

static void on_timer(uv_timer_t *t)
{
	struct catalog *c = t->data;
	int k;

	for (k = 0; k < K_NQUEUES; k++)
		c->q[k].due = c->q[k].n > 0;
	catalog_pump(c); /* closes what the pipeline has room for; the rest keeps filling */
}

void catalog_flush(struct catalog *c, bool records)
{
	bool any = false;
	int k;

	for (k = 0; k < K_NQUEUES; k++) {
		/* Confirmations come from files moving after their batch, a few per
		 * iteration: they keep their timer and travel together. */
		if (by_id(k) || (!records && k != K_LOOKUP))
			continue;
		if (c->q[k].n > 0 && !c->q[k].due) {
			c->q[k].due = true;
			any = true;
		}
	}
	if (any)
		catalog_pump(c);
}

static void on_retry(uv_timer_t *t)
{
	catalog_pump(t->data);
}

static void enqueue(struct catalog *c, enum kind k, struct item *it)
{
	struct queue *q = &c->q[k];

	if (q->tail)
		q->tail->next = it;
	else
		q->head = it;
	q->tail = it;
	q->n++;
	if (q->n >= (unsigned)(c->cfg->batch_max_files > 0 ? c->cfg->batch_max_files : 1)) {
		q->due = false;
		queue_close(c, k);
		catalog_pump(c);
	} else if (!q->due && !uv_is_active((uv_handle_t *)&c->timer)) {
		uv_timer_start(&c->timer, on_timer,
			       (uint64_t)(c->cfg->batch_max_ms > 0 ? c->cfg->batch_max_ms : 0), 0);
	}
}

/* ---- results ------------------------------------------------------------ */

/* Row index -> position in the result (rows carry idx as column 0). */
static int *index_rows(PGresult *res, unsigned n)
{
	int *pos = malloc((n ? n : 1) * sizeof *pos);
	int row, rows = PQntuples(res);
	unsigned i;

	if (!pos)
		return NULL;
	for (i = 0; i < n; i++)
		pos[i] = -1;
	for (row = 0; row < rows; row++) {
		long idx = strtol(PQgetvalue(res, row, 0), NULL, 10);

		if (idx >= 0 && (unsigned long)idx < n)
			pos[idx] = row;
	}
	return pos;
}

static void deliver(struct catalog *c, struct batch *b, unsigned i, bool known,
		    const struct catalog_result *r)
{
	struct item *it = b->items[i];

	if (b->kind == K_RECORD)
		c->held--;
	else if (b->kind == K_LOOKUP)
		c->lookups--;
	if (b->kind == K_LOOKUP) {
		if (it->lookup_cb)
			it->lookup_cb(known, r, it->arg);
	} else if (it->cb) {
		it->cb(r, it->arg);
	}
}

static void fail_batch(struct catalog *c, struct batch *b, const char *error)
{
	struct catalog_result r;
	unsigned i;

	for (i = 0; i < b->n; i++) {
		memset(&r, 0, sizeof r);
		r.outcome = CAT_FAILED;
		snprintf(r.error, sizeof r.error, "%s", error);
		if (by_id(b->kind))
			snprintf(r.asset_id, sizeof r.asset_id, "%s", b->items[i]->json);
		deliver(c, b, i, false, &r);
	}
}

static void answer_items(struct catalog *c, struct batch *b, PGresult *res)
{
	struct catalog_result r;
	int *pos = index_rows(res, b->n);
	unsigned i;

	if (!pos) {
		fail_batch(c, b, "out of memory reading a result");
		return;
	}
	for (i = 0; i < b->n; i++) {
		int row = pos[i];

		if (by_id(b->kind)) {
			memset(&r, 0, sizeof r);
			snprintf(r.asset_id, sizeof r.asset_id, "%s", b->items[i]->json);
			/* NULL: nothing was pending (already confirmed); still fine. */
			r.outcome = row < 0 ? CAT_FAILED : CAT_INGESTED;
			if (row < 0)
				snprintf(r.error, sizeof r.error, "no result for this asset");
			deliver(c, b, i, true, &r);
		} else if (row < 0) {
			memset(&r, 0, sizeof r);
			if (b->kind == K_RECORD) {
				r.outcome = CAT_FAILED;
				snprintf(r.error, sizeof r.error, "no result for this file");
			}
			deliver(c, b, i, false, &r);
		} else {
			if (b->kind == K_RECORD)
				catrow_record(res, row, &r);
			else
				catrow_lookup(res, row, &r);
			deliver(c, b, i, true, &r);
		}
	}
	free(pos);
}

/* An error worth a resend rather than failing every file of the batch. */
static bool transient(PGresult *res)
{
	const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

	if (!st)
		return false;
	/* 40: serialization/deadlock; 53: resources; 57P0x: shutdown; 08: connection;
	 * 25006: read-only (a standby after failover, until the connection moves). */
	return strncmp(st, "40", 2) == 0 || strncmp(st, "53", 2) == 0 ||
	       strncmp(st, "57P0", 4) == 0 || strncmp(st, "08", 2) == 0 || strcmp(st, "25006") == 0;
}

static void batch_cb(PGresult *res, const char *error, void *arg)
{
	struct batch *b = arg;
	struct catalog *c = b->cat;

	b->inflight = false;
	if (!c) {
		batch_free(b);
		return;
	}
	c->inflight--;
	if (!res || (error && transient(res))) {
		/* Unknown fate: keep it. Start-up batches are reissued on READY instead. */
		if (b->kind >= K_NQUEUES) {
			batch_unlink(c, b);
			batch_free(b);
		} else if (res) {
			log_warnx("catalog", "batch of %u will be resent: %s", b->n, error);
			uv_timer_start(&c->retry, on_retry, RETRY_MS, 0);
		}
		return;
	}
	batch_unlink(c, b);
	if (error) {
		log_error("catalog", "%s statement failed: %s",
			  b->kind == K_RECORD	 ? "catalogue"
			  : b->kind == K_LOOKUP	 ? "lookup"
			  : b->kind == K_CONFIRM ? "confirm"
			  : b->kind == K_UNMOVED ? "unmoved"
						 : "start-up",
			  error);
		if (b->kind < K_NQUEUES)
			fail_batch(c, b, error);
	} else if (b->kind < K_NQUEUES) {
		if (b->kind == K_RECORD) {
			histogram_observe(&c->stats.batch_files, b->n);
			histogram_observe(&c->stats.batch_seconds,
					  (double)(uv_hrtime() - b->sent_ns) / 1e9);
		}
		answer_items(c, b, res);
	} else {
		catalog_answer_startup(c, b, res);
	}
	batch_free(b);
	catalog_pump(c);
}

/* ---- sending ------------------------------------------------------------ */

static char *batch_param(const struct batch *b)
{
	struct sbuf sb = {0};
	unsigned i;

	if (b->param)
		return strdup(b->param);
	sb_puts(&sb, by_id(b->kind) ? "{" : "[");
	for (i = 0; i < b->n; i++) {
		if (i)
			sb_puts(&sb, ",");
		sb_puts(&sb, b->items[i]->json);
	}
	sb_puts(&sb, by_id(b->kind) ? "}" : "]");
	if (sb.oom) {
		sb_free(&sb);
		return NULL;
	}
	return sb.p;
}

void catalog_pump(struct catalog *c)
{
	struct batch *b;

	close_due(c);
	if (db_state(c->db) != DB_READY)
		return;
	for (b = c->bhead; b && c->inflight < MAX_INFLIGHT; b = b->next) {
		char *param;
		const char *params[1];
		int r;

		if (b->inflight)
			continue;
		param = batch_param(b);
		if (!param) {
			log_error("catalog", "out of memory building a batch");
			return;
		}
		params[0] = param;
		r = db_exec(c->db, kind_sql[b->kind],
			    b->kind == K_PARTITIONS || b->kind == K_WARMUP ? 0 : 1, params,
			    batch_cb, b);
		free(param);
		if (r != 0)
			return; /* not connected: catalog_db_ready() pumps again */
		b->inflight = true;
		b->sent_ns = uv_hrtime();
		c->inflight++;
	}
}

/* ---- requests ----------------------------------------------------------- */

int catalog_record(struct catalog *c, const struct catalog_file *f, catalog_cb cb, void *arg)
{
	struct sbuf sb = {0};
	struct item *it;

	if (c->cfg->max_held_files > 0 && c->held >= (unsigned)c->cfg->max_held_files)
		return -EAGAIN;
	catjson_record(&sb, f, c->node);
	it = sb.oom ? NULL : calloc(1, sizeof *it);
	if (!it) {
		sb_free(&sb);
		return -ENOMEM;
	}
	it->json = sb.p;
	it->cb = cb;
	it->arg = arg;
	c->held++;
	enqueue(c, K_RECORD, it);
	return 0;
}

int catalog_lookup(struct catalog *c, const struct folder_cfg *folder, const char *relpath,
		   const struct file_id *id, catalog_lookup_cb cb, void *arg)
{
	struct sbuf sb = {0};
	struct item *it;

	/* Bounded like records: while the database is away the caller hashes
	 * instead (and its record is held or refused in turn). */
	if (c->cfg->max_held_files > 0 && c->lookups >= (unsigned)c->cfg->max_held_files)
		return -EAGAIN;
	catjson_lookup(&sb, folder, relpath, id);
	it = sb.oom ? NULL : calloc(1, sizeof *it);
	if (!it) {
		sb_free(&sb);
		return -ENOMEM;
	}
	it->json = sb.p;
	it->lookup_cb = cb;
	it->arg = arg;
	c->lookups++;
	enqueue(c, K_LOOKUP, it);
	return 0;
}

static int enqueue_id(struct catalog *c, enum kind k, const char *asset_id, catalog_cb cb,
		      void *arg)
{
	struct item *it;

	/* Checked here: one malformed id in the uuid[] would fail the whole batch. */
	if (!uuid_valid(asset_id))
		return -EINVAL;
	it = calloc(1, sizeof *it);
	if (!it || !(it->json = strdup(asset_id))) {
		free(it);
		return -ENOMEM;
	}
	it->cb = cb;
	it->arg = arg;
	enqueue(c, k, it);
	return 0;
}

int catalog_confirm_move(struct catalog *c, const char *asset_id, catalog_cb cb, void *arg)
{
	return enqueue_id(c, K_CONFIRM, asset_id, cb, arg);
}

int catalog_move_failed(struct catalog *c, const char *asset_id, catalog_cb cb, void *arg)
{
	return enqueue_id(c, K_UNMOVED, asset_id, cb, arg);
}

unsigned catalog_held(const struct catalog *c)
{
	return c->held;
}

const struct catalog_stats *catalog_get_stats(const struct catalog *c)
{
	return &c->stats;
}

int catalog_create(uv_loop_t *loop, const struct config *cfg, struct db *db, struct catalog **out)
{
	struct catalog *c = calloc(1, sizeof *c);

	if (!c)
		return -ENOMEM;
	c->loop = loop;
	c->stats.batch_files.bounds = histogram_count_bounds;
	c->cfg = cfg;
	c->db = db;
	if (cfg->node_name && *cfg->node_name)
		snprintf(c->node, sizeof c->node, "%s", cfg->node_name);
	else if (gethostname(c->node, sizeof c->node - 1) != 0)
		snprintf(c->node, sizeof c->node, "unknown");
	uv_timer_init(loop, &c->timer);
	uv_timer_init(loop, &c->retry);
	c->timer.data = c;
	c->retry.data = c;
	c->open_handles = 2;
	*out = c;
	return 0;
}

static void close_cb(uv_handle_t *h)
{
	struct catalog *c = h->data;

	if (--c->open_handles == 0)
		free(c);
}

/*
 * Drop everything without calling back: the owner is shutting down and has
 * already stopped waiting. Batches on the wire are orphaned and freed when
 * the db reports them (db_close fails them), so no callback ever sees a
 * freed catalogue.
 */
void catalog_close(struct catalog *c)
{
	struct batch *b, *next;
	struct item *it, *in;
	int k;

	for (k = 0; k < K_NQUEUES; k++) {
		for (it = c->q[k].head; it; it = in) {
			in = it->next;
			item_free(it);
		}
		c->q[k].head = c->q[k].tail = NULL;
	}
	for (b = c->bhead; b; b = next) {
		next = b->next;
		b->next = NULL;
		if (b->inflight)
			b->cat = NULL;
		else
			batch_free(b);
	}
	c->bhead = c->btail = NULL;
	uv_close((uv_handle_t *)&c->timer, close_cb);
	uv_close((uv_handle_t *)&c->retry, close_cb);
}
