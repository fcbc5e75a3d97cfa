/*
 * catalog_int: what the catalogue's batching (catalog.c) and its start-up
 * statements (catalog_startup.c) share.
 */
#ifndef MAM_CATALOG_INT_H
#define MAM_CATALOG_INT_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "catalog.h"

enum kind {
	K_RECORD,
	K_LOOKUP,
	K_CONFIRM,
	K_UNMOVED,
	K_NQUEUES,
	K_TENANTS = K_NQUEUES,
	K_PARTITIONS,
	K_MOVES,
	K_WARMUP
};

struct item {
	struct item *next;
	catalog_cb cb;
	catalog_lookup_cb lookup_cb;
	void *arg;
	char *json; /* array element (record, lookup) or asset id (confirm, unmoved) */
};

struct batch {
	struct batch *next;
	struct catalog *cat; /* NULL once the catalogue closed: freed when the db answers */
	enum kind kind;
	bool inflight;
	uint64_t sent_ns; /* uv_hrtime() when it went on the wire */
	unsigned n;
	struct item **items;
	char *param; /* for the start-up kinds */
};

struct queue {
	struct item *head, *tail;
	unsigned n;
	bool due; /* batch_max_ms has passed: close it as soon as the pipeline has room */
};

struct catalog {
	uv_loop_t *loop;
	const struct config *cfg;
	struct db *db;
	uv_timer_t timer; /* closes open queues after batch_max_ms */
	uv_timer_t retry; /* resends after a transient statement error */
	int open_handles;
	struct queue q[K_NQUEUES];
	struct batch *bhead, *btail;
	unsigned inflight; /* batches on the wire */
	unsigned held;	   /* record requests not answered yet */
	unsigned lookups;  /* lookup requests not answered yet */
	struct catalog_stats stats;
	catalog_tenant_cb tenant_cb;
	catalog_pending_move_cb pending_move_cb;
	void *startup_arg;
	bool moves_reported; /* the pending-move listing ran once: ingest owns them now */
	char node[256];
};

/* Queue a batch last / first on the list; catalog_pump() sends what can go. */
void catalog_batch_append(struct catalog *c, struct batch *b);
void catalog_batch_prepend(struct catalog *c, struct batch *b);
void catalog_pump(struct catalog *c);
/* The result of a start-up statement (tenants, partitions, pending moves). */
void catalog_answer_startup(struct catalog *c, struct batch *b, PGresult *res);

#endif
