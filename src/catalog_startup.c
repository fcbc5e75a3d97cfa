/*
 * catalog_startup: the catalogue's start-up statements. On every READY the
 * tenants are upserted, this and next month's assets partitions created and,
 * once, the post-ingest actions never confirmed are listed for repair; each
 * is a batch of its own put at the front of the list (see catalog.c), with
 * one waiting per kind. A reload upserts the tenants again; the daily
 * maintenance asks for the partitions again.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog_int.h"
#include "catalog_json.h"
#include "log.h"

void catalog_answer_startup(struct catalog *c, struct batch *b, PGresult *res)
{
	int row, rows = PQntuples(res);
	char src[4096], dst[4096];

	if (b->kind == K_TENANTS) {
		for (row = 0; row < rows; row++) {
			const char *code = PQgetvalue(res, row, 0);
			bool active = PQgetvalue(res, row, 1)[0] == 't';

			if (!active)
				log_info("catalog", "tenant %s is inactive in the database", code);
			if (c->tenant_cb)
				c->tenant_cb(code, active, c->startup_arg);
		}
	} else if (b->kind == K_MOVES) {
		c->moves_reported = true;
		if (rows > 0)
			log_info("catalog", "%d post-ingest actions were not confirmed; repairing",
				 rows);
		for (row = 0; row < rows; row++) {
			const struct folder_cfg *f = config_find_folder(
				c->cfg, PQgetvalue(res, row, 0), PQgetvalue(res, row, 1));

			if (!f)
				continue;
			catrow_path(src, sizeof src, PQgetvalue(res, row, 3),
				    PQgetvalue(res, row, 4));
			catrow_path(dst, sizeof dst, PQgetvalue(res, row, 5),
				    PQgetvalue(res, row, 6));
			if (c->pending_move_cb)
				c->pending_move_cb(f, PQgetvalue(res, row, 2), src, dst,
						   PQgetvalue(res, row, 7), c->startup_arg);
		}
	} else if (b->kind == K_PARTITIONS) {
		log_debug("catalog", "assets partitions for this and next month exist");
	} else if (b->kind == K_WARMUP) {
		log_debug("catalog", "session warmed up");
	}
}

/* Put a start-up statement at the front (param: its jsonb, NULL for none). */
static void startup_add(struct catalog *c, enum kind k, char *param)
{
	struct batch *b;

	/* One waiting is enough; it takes the newest parameter (a reload's tenants). */
	for (b = c->bhead; b; b = b->next) {
		if (b->kind == k && !b->inflight) {
			if (param) {
				free(b->param);
				b->param = param;
			}
			return;
		}
	}
	b = calloc(1, sizeof *b);
	if (!b) {
		free(param);
		log_error("catalog", "out of memory queueing start-up work");
		return;
	}
	b->cat = c;
	b->kind = k;
	b->param = param ? param : strdup("");
	catalog_batch_prepend(c, b);
}

void catalog_db_ready(struct catalog *c)
{
	char *tp = catjson_tenants(c->cfg);

	if (!tp) {
		log_error("catalog", "out of memory building the tenant list");
		return;
	}
	/* Prepended, so they run in the reverse of this order: tenants first. */
	if (!c->moves_reported && c->pending_move_cb)
		startup_add(c, K_MOVES, catjson_folders(c->cfg));
	startup_add(c, K_PARTITIONS, NULL);
	startup_add(c, K_TENANTS, tp);
	catalog_pump(c);
}

/* Append a parameterless statement of kind k unless one is already waiting
 * or running (the daily partitions, the warm-up). */
static void append_once(struct catalog *c, enum kind k)
{
	struct batch *b;

	for (b = c->bhead; b; b = b->next)
		if (b->kind == k)
			return;
	b = calloc(1, sizeof *b);
	if (!b || !(b->param = strdup(""))) {
		free(b);
		return;
	}
	b->cat = c;
	b->kind = k;
	catalog_batch_append(c, b);
	catalog_pump(c);
}

void catalog_ensure_partitions(struct catalog *c)
{
	append_once(c, K_PARTITIONS);
}

/*
 * A new session's first batch costs some 30 ms more than the next ones: the
 * functions are compiled and the catalog caches of every table, partition and
 * index they touch are filled. Empty calls of the batch functions pay that
 * while the backend would otherwise idle (the first files are being hashed),
 * so the first files of a start are not committed 30 ms later than the rest.
 * Appended, behind whatever is already waiting.
 */
void catalog_warm_up(struct catalog *c)
{
	append_once(c, K_WARMUP);
}

void catalog_set_startup_cbs(struct catalog *c, catalog_tenant_cb tenant_cb,
			     catalog_pending_move_cb pending_move_cb, void *arg)
{
	c->tenant_cb = tenant_cb;
	c->pending_move_cb = pending_move_cb;
	c->startup_arg = arg;
}

void catalog_set_config(struct catalog *c, const struct config *ncfg)
{
	char *tp;

	c->cfg = ncfg;
	if (ncfg->node_name && *ncfg->node_name)
		snprintf(c->node, sizeof c->node, "%s", ncfg->node_name);
	/* Added tenants, is_active or quota changes: the same upsert as at start. */
	tp = catjson_tenants(ncfg);
	if (!tp) {
		log_error("catalog", "out of memory building the tenant list");
		return;
	}
	startup_add(c, K_TENANTS, tp);
	catalog_pump(c);
}
