/*
 * Tests of the catalogue (catalog.c, catalog_json.c) and of db.c.
 *
 * Offline (always): the JSON the catalogue sends, byte for byte: escaping,
 * names that are not UTF-8 (display form + exact hex), UTF-8 validation as
 * PostgreSQL applies it.
 *
 * With MAM_TEST_PG=1 (tests/integration/catalog_db.sh starts a PostgreSQL,
 * migrates it and runs this binary with the PG* environment): a real libuv
 * loop, a real db connection and the real SQL. 1,000 records end as 1,000
 * assets in batches of more than one file, and again as "already"; records
 * held while PostgreSQL is stopped (pg_ctl stop -m fast, run through
 * MAM_TEST_PG_STOP/START) are all committed exactly once after the restart,
 * with -EAGAIN past max_held_files; a connection killed with
 * pg_terminate_backend while its batch waits (before commit), and while its
 * commit waits for a synchronous standby that never comes (committed, result
 * lost), is resent and resolved exactly once; a statement error fails every
 * file of its batch without a crash; move confirmation and the start-up
 * pending-move report.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <libpq-fe.h>
#include <uv.h>

#include "catalog.h"
#include "catalog_json.h"
#include "db.h"
#include "log.h"

/* ---- offline: JSON ------------------------------------------------------ */

static void test_utf8_valid(void **state)
{
	(void)state;
	assert_true(utf8_valid("plain", 5));
	assert_true(utf8_valid("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x8e\xac", 14));
	assert_false(utf8_valid("caf\xe9", 4));		 /* Latin-1 */
	assert_false(utf8_valid("\xc0\x80", 2));	 /* overlong NUL */
	assert_false(utf8_valid("\xe0\x80\xaf", 3));	 /* overlong '/' */
	assert_false(utf8_valid("\xed\xa0\x80", 3));	 /* surrogate */
	assert_false(utf8_valid("\xf4\x90\x80\x80", 4)); /* above U+10FFFF */
	assert_false(utf8_valid("\xe2\x82", 2));	 /* truncated */
}

static void test_json_escape(void **state)
{
	struct sbuf sb = {0};

	(void)state;
	sb_json_str(&sb, "a\"b\\c\n\t\x01\x1f\x7f \xc3\xa9");
	assert_string_equal(sb.p, "\"a\\\"b\\\\c\\n\\t\\u0001\\u001f\x7f \xc3\xa9\"");
	sb_free(&sb);
	sb_json_str(&sb, NULL);
	assert_string_equal(sb.p, "null");
	sb_free(&sb);
}

static void test_json_path_not_utf8(void **state)
{
	struct sbuf sb = {0};
	char back[64];

	(void)state;
	/* Valid UTF-8: exact, no hex companion. */
	sb_json_path(&sb, "relpath", "d/\xc3\xa9t\xc3\xa9 \\1.mov", true);
	assert_string_equal(sb.p, "\"relpath\":\"d/\xc3\xa9t\xc3\xa9 \\\\1.mov\"");
	sb_free(&sb);
	/* Invalid: \xNN for the bad byte, the backslash doubled, exact bytes in hex. */
	sb_json_path(&sb, "relpath", "caf\xe9\\x.mov", false);
	assert_string_equal(sb.p, ",\"relpath\":\"caf\\\\xe9\\\\\\\\x.mov\","
				  "\"relpath_hex\":\"636166e95c782e6d6f76\"");
	assert_int_equal(hex_decode("636166e95c782e6d6f76", back, sizeof back), 0);
	assert_string_equal(back, "caf\xe9\\x.mov");
	assert_int_equal(hex_decode("6", back, sizeof back), -EINVAL);
	assert_int_equal(hex_decode("zz", back, sizeof back), -EINVAL);
	assert_int_equal(hex_decode("6162", back, 2), -ENAMETOOLONG);
	sb_free(&sb);
}

static struct tenant_cfg off_tenant = {
	.code = "acme", .name = "ACME \"Media\"", .active = -1, .storage_quota_bytes = 0};

static void test_json_record(void **state)
{
	struct folder_cfg fo = {.path = "/srv/drop",
				.after = AFTER_MOVE,
				.jobs = JOB_METADATA | JOB_PROXY,
				.priority = 3,
				.on_duplicate = DUP_SKIP,
				.tenant = &off_tenant};
	struct catalog_file f = {
		.folder = &fo,
		.relpath = "a/b.mov",
		.abspath = "/srv/drop/a/b.mov",
		.final_path = "/lib/b.mov",
		.asset_id = "0b4e28ba-2fa1-41d2-883f-0016d3cca427",
		.id = {.dev = UINT64_MAX, .ino = 7, .size = 10, .mtime_ns = 5, .ctime_ns = 6},
		.sha256 = "ab",
		.mime = "video/mp4",
		.asset_type = "video"};
	struct config cfg = {.tenants = &off_tenant, .n_tenants = 1};
	struct sbuf sb = {0};
	char *t;

	(void)state;
	catjson_record(&sb, &f, "node1");
	assert_string_equal(sb.p,
			    "{\"tenant\":\"acme\",\"folder\":\"/srv/drop\",\"relpath\":\"a/b.mov\","
			    "\"dev\":-1,\"ino\":7,\"size\":10,\"mtime_ns\":5,"
			    "\"abspath\":\"/srv/drop/a/b.mov\",\"final_path\":\"/lib/b.mov\","
			    "\"asset_id\":\"0b4e28ba-2fa1-41d2-883f-0016d3cca427\",\"ctime_ns\":6,"
			    "\"sha256\":\"ab\",\"mime\":\"video/mp4\",\"asset_type\":\"video\","
			    "\"jobs\":[\"metadata\",\"proxy\"],\"priority\":3,\"after\":\"move\","
			    "\"on_duplicate\":\"skip\",\"storage_type\":\"local\","
			    "\"storage_tier\":\"hot\",\"node\":\"node1\"}");
	sb_free(&sb);
	t = catjson_tenants(&cfg);
	/* active -1: left to the database; quota 0: unlimited (sent, becomes NULL). */
	assert_string_equal(t, "[{\"code\":\"acme\",\"name\":\"ACME \\\"Media\\\"\","
			       "\"storage_quota_bytes\":0}]");
	free(t);
}

/* ---- with PostgreSQL ---------------------------------------------------- */

#define MAXF 1200

struct h {
	uv_loop_t loop;
	uv_timer_t tick;
	struct db *db;
	struct catalog *cat;
	struct config cfg;
	struct tenant_cfg ten;
	struct folder_cfg fold;
	PGconn *ctl;
	unsigned readies, downs, tenants_seen;
	int reload_seen; /* t_reload reported: 1 active, 2 inactive */
	unsigned done, ingested, already, failed, other;
	int (*pred)(struct h *);
	uint64_t deadline;
	bool timed_out;
	void (*on_tick)(struct h *);
	/* per file */
	char ids[MAXF][37];
	char rel[MAXF][64];
	char sha[MAXF][65];
	int outcome[MAXF];
	char got_id[MAXF][37];
	char got_path[MAXF][128];
	char err[256];
	/* pending moves reported at start */
	unsigned moves;
	char move_id[37], move_src[256], move_dst[256];
};

static bool pg_enabled(void)
{
	const char *e = getenv("MAM_TEST_PG");

	return e && strcmp(e, "1") == 0;
}

static long q_long(PGconn *c, const char *fmt, ...) MAM_PRINTF(2, 3);
static long q_long(PGconn *c, const char *fmt, ...)
{
	char sql[2048];
	va_list ap;
	PGresult *r;
	long v = -1;

	va_start(ap, fmt);
	vsnprintf(sql, sizeof sql, fmt, ap);
	va_end(ap);
	/* The server may have been restarted under this connection. */
	if (PQstatus(c) != CONNECTION_OK || PQtransactionStatus(c) == PQTRANS_UNKNOWN)
		PQreset(c);
	r = PQexec(c, sql);
	if (PQresultStatus(r) == PGRES_FATAL_ERROR && PQstatus(c) == CONNECTION_BAD) {
		PQclear(r);
		PQreset(c);
		r = PQexec(c, sql);
	}
	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
		v = strtol(PQgetvalue(r, 0, 0), NULL, 10);
	else if (PQresultStatus(r) != PGRES_COMMAND_OK)
		fprintf(stderr, "query failed: %s: %s\n", sql, PQerrorMessage(c));
	PQclear(r);
	return v;
}

static void on_state(struct db *db, enum db_state st, void *arg)
{
	struct h *h = arg;

	(void)db;
	if (st == DB_READY) {
		h->readies++;
		catalog_db_ready(h->cat);
	} else if (st == DB_DOWN) {
		h->downs++;
	}
}

static void on_tenant(const char *code, bool active, void *arg)
{
	struct h *h = arg;

	if (strcmp(code, h->ten.code) == 0)
		h->tenants_seen++;
	if (strcmp(code, "t_reload") == 0)
		h->reload_seen = active ? 1 : 2;
}

static void on_pending_move(const struct folder_cfg *f, const char *asset_id, const char *src,
			    const char *dst, const char *sha256, void *arg)
{
	struct h *h = arg;

	(void)sha256;
	if (f != &h->fold)
		return;
	h->moves++;
	snprintf(h->move_id, sizeof h->move_id, "%s", asset_id);
	snprintf(h->move_src, sizeof h->move_src, "%s", src);
	snprintf(h->move_dst, sizeof h->move_dst, "%s", dst);
}

static void on_tick(uv_timer_t *t)
{
	struct h *h = t->data;

	if (h->on_tick)
		h->on_tick(h);
	if (h->pred(h)) {
		uv_stop(&h->loop);
	} else if (uv_now(&h->loop) > h->deadline) {
		h->timed_out = true;
		uv_stop(&h->loop);
	}
}

static bool run_until(struct h *h, int (*pred)(struct h *), unsigned timeout_ms)
{
	h->pred = pred;
	h->timed_out = false;
	uv_update_time(&h->loop);
	h->deadline = uv_now(&h->loop) + timeout_ms;
	uv_timer_start(&h->tick, on_tick, 5, 5);
	uv_run(&h->loop, UV_RUN_DEFAULT);
	uv_timer_stop(&h->tick);
	return !h->timed_out && pred(h);
}

static int is_ready(struct h *h)
{
	return db_state(h->db) == DB_READY && h->tenants_seen > 0;
}
static int is_down(struct h *h)
{
	return db_state(h->db) != DB_READY;
}

static void h_init(struct h *h, const char *tenant, const char *appname, int max_files,
		   int max_held)
{
	char conninfo[128];

	memset(h, 0, sizeof *h);
	assert_int_equal(uv_loop_init(&h->loop), 0);
	uv_timer_init(&h->loop, &h->tick);
	h->tick.data = h;
	h->ten.code = (char *)tenant;
	h->ten.name = (char *)tenant;
	h->ten.active = 1;
	h->ten.storage_quota_bytes = 0;
	h->ten.folders = &h->fold;
	h->ten.n_folders = 1;
	h->fold.path = "/drop/test";
	h->fold.jobs = JOB_METADATA | JOB_THUMBNAIL;
	h->fold.priority = 5;
	h->fold.tenant = &h->ten;
	h->cfg.conninfo = "";
	h->cfg.batch_max_files = max_files;
	h->cfg.batch_max_ms = 20;
	h->cfg.max_held_files = max_held;
	h->cfg.node_name = "testnode";
	h->cfg.tenants = &h->ten;
	h->cfg.n_tenants = 1;
	snprintf(conninfo, sizeof conninfo, "application_name=%s", appname);
	assert_int_equal(db_create(&h->loop, conninfo, on_state, h, &h->db), 0);
	assert_int_equal(catalog_create(&h->loop, &h->cfg, h->db, &h->cat), 0);
	catalog_set_startup_cbs(h->cat, on_tenant, on_pending_move, h);
	h->ctl = PQconnectdb("");
	assert_int_equal(PQstatus(h->ctl), CONNECTION_OK);
	PQclear(PQexec(h->ctl, "SET synchronous_commit = local"));
}

static void closed(void *arg)
{
	(void)arg;
}

static void h_fini(struct h *h)
{
	catalog_close(h->cat);
	db_close(h->db, closed, NULL);
	uv_close((uv_handle_t *)&h->tick, NULL);
	uv_run(&h->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&h->loop), 0);
	PQfinish(h->ctl);
}

struct rec {
	struct h *h;
	unsigned i;
};
static struct rec recs[MAXF];

static void on_record(const struct catalog_result *r, void *arg)
{
	struct rec *rc = arg;
	struct h *h = rc->h;

	h->done++;
	h->outcome[rc->i] = (int)r->outcome;
	snprintf(h->got_id[rc->i], sizeof h->got_id[0], "%s", r->asset_id);
	snprintf(h->got_path[rc->i], sizeof h->got_path[0], "%.127s", r->final_path);
	switch (r->outcome) {
	case CAT_INGESTED: h->ingested++; break;
	case CAT_ALREADY: h->already++; break;
	case CAT_FAILED:
		h->failed++;
		snprintf(h->err, sizeof h->err, "%s", r->error);
		break;
	default: h->other++; break;
	}
}

/* Record file i of this test (ids are fresh unless keep_id). */
static int record(struct h *h, unsigned i, bool keep_id)
{
	struct catalog_file f = {0};
	char abspath[128];

	if (!keep_id || !h->ids[i][0]) {
		unsigned char b[16];
		FILE *u = fopen("/dev/urandom", "rb");

		assert_non_null(u);
		assert_int_equal(fread(b, 1, 16, u), 16);
		fclose(u);
		b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
		b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
		snprintf(h->ids[i], 37,
			 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
			 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11],
			 b[12], b[13], b[14], b[15]);
	}
	if (!h->rel[i][0])
		snprintf(h->rel[i], sizeof h->rel[0], "dir%u/file%04u.dat", i % 7, i);
	snprintf(h->sha[i], sizeof h->sha[0], "%064x", i + 1);
	snprintf(abspath, sizeof abspath, "%s/%s", h->fold.path, h->rel[i]);
	f.folder = &h->fold;
	f.relpath = h->rel[i];
	f.abspath = abspath;
	f.final_path = abspath;
	f.asset_id = h->ids[i];
	f.id.dev = 2049;
	f.id.ino = 1000 + i;
	f.id.size = 100 + i;
	f.id.mtime_ns = 1700000000000000000LL + i;
	f.id.ctime_ns = f.id.mtime_ns;
	f.sha256 = h->sha[i];
	f.mime = "application/octet-stream";
	f.asset_type = "document";
	recs[i].h = h;
	recs[i].i = i;
	return catalog_record(h->cat, &f, on_record, &recs[i]);
}

static unsigned want_done;
static int all_done(struct h *h)
{
	return h->done >= want_done;
}

static long assets_of(struct h *h)
{
	return q_long(h->ctl,
		      "SELECT count(*) FROM assets a JOIN tenants t ON t.id = a.tenant_id "
		      "WHERE t.code = '%s'",
		      h->ten.code);
}

/* Exactly once: n assets, n original primary locations, 2n jobs, n ledger rows. */
static void assert_exactly_once(struct h *h, long n)
{
	const char *c = h->ten.code;

	assert_int_equal(assets_of(h), n);
	assert_int_equal(q_long(h->ctl,
				"SELECT count(DISTINCT a.checksum_sha256) FROM assets a "
				"JOIN tenants t ON t.id = a.tenant_id WHERE t.code = '%s'",
				c),
			 n);
	assert_int_equal(q_long(h->ctl,
				"SELECT count(*) FROM asset_storage_locations s JOIN "
				"tenants t ON t.id = s.tenant_id JOIN assets a ON a.id = "
				"s.asset_id WHERE t.code = '%s' AND s.purpose = 'original' "
				"AND s.is_primary AND s.path = a.primary_storage_path",
				c),
			 n);
	assert_int_equal(q_long(h->ctl,
				"SELECT count(*) FROM ingest_jobs j JOIN tenants t ON "
				"t.id = j.tenant_id WHERE t.code = '%s'",
				c),
			 2 * n);
	assert_int_equal(q_long(h->ctl,
				"SELECT count(*) FROM ingest_ledger l JOIN tenants t ON "
				"t.id = l.tenant_id WHERE t.code = '%s'",
				c),
			 n);
}

static bool listening;
static unsigned n_notifies, notified_jobs;

static void on_listen(PGresult *res, const char *error, void *arg)
{
	(void)arg;
	listening = res && !error;
}

static void on_notify(const char *channel, const char *payload, void *arg)
{
	(void)arg;
	if (strcmp(channel, "mam_ingest_jobs") == 0) {
		n_notifies++;
		notified_jobs += (unsigned)strtoul(payload, NULL, 10);
	}
}

static int all_notified(struct h *h)
{
	(void)h;
	return notified_jobs >= 2000;
}

static unsigned lk_known, lk_unknown;
static char lk_sha[65];

static void on_lookup(bool known, const struct catalog_result *r, void *arg)
{
	if (known) {
		lk_known++;
		assert_int_equal(r->outcome, CAT_ALREADY);
		assert_string_equal(r->asset_id, (const char *)arg);
		snprintf(lk_sha, sizeof lk_sha, "%s", r->sha256);
	} else {
		lk_unknown++;
	}
}

static int three_looked_up(struct h *h)
{
	(void)h;
	return lk_known + lk_unknown >= 3;
}

static void test_pg_thousand(void **state)
{
	static struct h h;
	static char first[MAXF][37];
	unsigned i, n = 1000;
	long batches;

	(void)state;
	if (!pg_enabled())
		skip();
	h_init(&h, "t_bulk", "mam_test_bulk", 200, 100000);
	db_start(h.db);
	assert_true(run_until(&h, is_ready, 20000));
	/* Workers' channel: one NOTIFY per committed batch, payload = jobs queued. */
	db_set_notify_cb(h.db, on_notify, NULL);
	assert_int_equal(db_exec(h.db, "LISTEN mam_ingest_jobs", 0, NULL, on_listen, NULL), 0);
	/* One name that is not UTF-8: its bytes must come back exactly. */
	snprintf(h.rel[7], sizeof h.rel[0], "latin1/caf\xe9.dat");
	for (i = 0; i < n; i++)
		assert_int_equal(record(&h, i, false), 0);
	want_done = n;
	assert_true(run_until(&h, all_done, 60000));
	assert_int_equal(h.ingested, n);
	for (i = 0; i < n; i++)
		assert_string_equal(h.got_id[i], h.ids[i]);
	memcpy(first, h.got_id, sizeof first);
	assert_true(listening);
	assert_true(run_until(&h, all_notified, 20000));
	assert_int_equal(n_notifies, 5);
	assert_exactly_once(&h, n);
	/* Batched: five transactions of 200 (one now() each), not one per file. */
	batches = q_long(h.ctl, "SELECT count(DISTINCT l.created_at) FROM ingest_ledger l JOIN "
				"tenants t ON t.id = l.tenant_id WHERE t.code = 't_bulk'");
	fprintf(stderr, "1000 records in %ld transactions\n", batches);
	assert_true(batches >= 2 && batches <= (long)n / 2);
	assert_int_equal(q_long(h.ctl, "SELECT count(*) FROM ingest_ledger WHERE relpath = "
				       "'latin1/caf\\xe9.dat' AND relpath_bytes = "
				       "'\\x6c6174696e312f636166e92e646174'::bytea"),
			 1);
	assert_int_equal(q_long(h.ctl, "SELECT count(*) FROM asset_storage_locations WHERE url = "
				       "'file:///drop/test/latin1/caf%%E9.dat'"),
			 1);

	/* The same files again (a resend): all "already", same ids, nothing written. */
	h.done = h.ingested = h.already = 0;
	for (i = 0; i < n; i++)
		assert_int_equal(record(&h, i, false), 0);
	assert_true(run_until(&h, all_done, 60000));
	assert_int_equal(h.already, n);
	for (i = 0; i < n; i++)
		assert_string_equal(h.got_id[i], first[i]); /* fresh ids offered, none used */
	assert_exactly_once(&h, n);
	assert_string_equal(h.got_path[7], "/drop/test/latin1/caf\xe9.dat");

	/* Lookups: a known file (with its recorded checksum), one with a new mtime. */
	{
		struct file_id id = {
			.dev = 2049, .ino = 1003, .size = 103, .mtime_ns = 1700000000000000003LL};

		lk_known = lk_unknown = 0;
		assert_int_equal(catalog_lookup(h.cat, &h.fold, h.rel[3], &id, on_lookup, first[3]),
				 0);
		assert_int_equal(catalog_lookup(h.cat, &h.fold, h.rel[7], &id, on_lookup, NULL), 0);
		id.mtime_ns++;
		assert_int_equal(catalog_lookup(h.cat, &h.fold, h.rel[3], &id, on_lookup, NULL), 0);
		assert_true(run_until(&h, three_looked_up, 20000));
		assert_int_equal(lk_known, 1);
		assert_int_equal(lk_unknown, 2);
		assert_string_equal(lk_sha, h.sha[3]);
	}

	/* A statement error fails every file of its batch and nothing crashes. */
	PQclear(PQexec(h.ctl,
		       "ALTER FUNCTION mam_ingest_batch(jsonb) RENAME TO mam_ingest_batch_x"));
	h.done = h.failed = 0;
	for (i = n; i < n + 3; i++)
		assert_int_equal(record(&h, i, false), 0);
	want_done = 3;
	assert_true(run_until(&h, all_done, 20000));
	PQclear(PQexec(h.ctl,
		       "ALTER FUNCTION mam_ingest_batch_x(jsonb) RENAME TO mam_ingest_batch"));
	assert_int_equal(h.failed, 3);
	assert_non_null(strstr(h.err, "mam_ingest_batch"));
	assert_int_equal(catalog_held(h.cat), 0);
	h_fini(&h);
}

static unsigned next_i, total_n, eagains;
static struct h *feed_h;

/* Feed records until total_n, taking -EAGAIN as "hold on, retry later". */
static void feed(struct h *h)
{
	while (next_i < total_n) {
		int r = record(h, next_i, true);

		if (r == -EAGAIN) {
			eagains++;
			return;
		}
		assert_int_equal(r, 0);
		next_i++;
	}
}

static int three_failed(struct h *h)
{
	return h->downs >= 4; /* the loss, then three refused attempts */
}

static void test_pg_outage(void **state)
{
	static struct h h;
	const char *stop = getenv("MAM_TEST_PG_STOP"), *start = getenv("MAM_TEST_PG_START");
	unsigned i;

	(void)state;
	if (!pg_enabled() || !stop || !start)
		skip();
	h_init(&h, "t_outage", "mam_test_outage", 100, 300);
	feed_h = &h;
	db_start(h.db);
	assert_true(run_until(&h, is_ready, 20000));
	/* 100 files: a full batch goes on the wire at once; PostgreSQL stops under it. */
	next_i = 0;
	total_n = 100;
	eagains = 0;
	feed(&h);
	assert_int_equal(system(stop), 0);
	assert_true(run_until(&h, is_down, 20000));
	/* Let it fail to reconnect a few times (backoff 100, 200, 400 ms...). */
	assert_true(run_until(&h, three_failed, 20000));
	/* 400 more while it is away: held up to max_held_files, then -EAGAIN. */
	total_n = 500;
	feed(&h);
	assert_true(eagains > 0);
	assert_int_equal(catalog_held(h.cat), 300);
	assert_true(next_i < total_n);
	assert_int_equal(system(start), 0);
	h.on_tick = feed;
	want_done = 500;
	assert_true(run_until(&h, all_done, 120000));
	h.on_tick = NULL;
	fprintf(stderr, "outage: %u ingested, %u already, %u -EAGAIN, %u reconnects\n", h.ingested,
		h.already, eagains, h.readies);
	assert_int_equal(h.ingested + h.already, 500);
	for (i = 0; i < 500; i++)
		assert_string_equal(h.got_id[i], h.ids[i]);
	assert_true(h.readies >= 2);
	assert_exactly_once(&h, 500);
	h_fini(&h);
}

static int backend_waits(struct h *h, const char *app, const char *what)
{
	return q_long(h->ctl,
		      "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
		      "'%s' AND %s",
		      app, what) == 1;
}
static int kill_waiting_on_lock(struct h *h)
{
	return backend_waits(h, "mam_test_kill", "wait_event_type = 'Lock'") || h->done > 0;
}
static int kill_waiting_on_syncrep(struct h *h)
{
	return backend_waits(h, "mam_test_kill", "wait_event = 'SyncRep'") || h->done >= want_done;
}

static void terminate(struct h *h)
{
	/* In the select list, so it only ever runs on the filtered rows. */
	assert_int_equal(q_long(h->ctl,
				"SELECT count(pg_terminate_backend(pid)) FROM "
				"pg_stat_activity WHERE application_name = 'mam_test_kill'"),
			 1);
}

static void test_pg_terminate(void **state)
{
	static struct h h;
	unsigned i, base, attempt;
	bool lost_commit = false;
	PGconn *lk;

	(void)state;
	if (!pg_enabled())
		skip();
	h_init(&h, "t_kill", "mam_test_kill", 500, 100000);
	/* A quota makes each batch lock the tenant row: a handle to make it wait. */
	h.ten.storage_quota_bytes = 1LL << 50;
	db_start(h.db);
	assert_true(run_until(&h, is_ready, 20000));

	/*
	 * 1. Killed while the batch waits for a lock: nothing committed; resent.
	 * The lock is held on its own connection: ctl polls pg_stat_activity,
	 * which would stay frozen inside a transaction.
	 */
	lk = PQconnectdb("");
	assert_int_equal(PQstatus(lk), CONNECTION_OK);
	PQclear(PQexec(lk, "BEGIN"));
	assert_int_equal(q_long(lk, "SELECT count(*) FROM (SELECT 1 FROM tenants WHERE code = "
				    "'t_kill' FOR UPDATE) s"),
			 1);
	for (i = 0; i < 50; i++)
		assert_int_equal(record(&h, i, false), 0);
	want_done = 50;
	assert_true(run_until(&h, kill_waiting_on_lock, 20000));
	assert_int_equal(h.done, 0);
	terminate(&h);
	PQclear(PQexec(lk, "ROLLBACK"));
	PQfinish(lk);
	assert_true(run_until(&h, all_done, 60000));
	assert_int_equal(h.ingested, 50);
	assert_true(h.readies >= 2);
	assert_exactly_once(&h, 50);

	/*
	 * 2. Killed after its commit, before the result: a synchronous standby
	 * that never connects holds the COMMIT after it is durable locally. The
	 * resend must come back "already", with our own asset ids. The setting
	 * reaches the server asynchronously, so a batch may still go through
	 * normally: try again with new files until one is caught waiting.
	 */
	PQclear(PQexec(h.ctl, "ALTER SYSTEM SET synchronous_standby_names = 'mam_test_phantom'"));
	PQclear(PQexec(h.ctl, "SELECT pg_reload_conf()"));
	base = 50;
	for (attempt = 0; attempt < 20 && !lost_commit; attempt++) {
		h.done = h.ingested = h.already = 0;
		for (i = base; i < base + 20; i++)
			assert_int_equal(record(&h, i, false), 0);
		want_done = 20;
		assert_true(run_until(&h, kill_waiting_on_syncrep, 20000));
		if (h.done < want_done) {
			terminate(&h);
			lost_commit = true;
			PQclear(PQexec(h.ctl, "ALTER SYSTEM RESET synchronous_standby_names"));
			PQclear(PQexec(h.ctl, "SELECT pg_reload_conf()"));
		}
		assert_true(run_until(&h, all_done, 60000));
		if (lost_commit) {
			assert_int_equal(h.already, 20);
			for (i = base; i < base + 20; i++)
				assert_string_equal(h.got_id[i], h.ids[i]);
		} else {
			assert_int_equal(h.ingested, 20);
		}
		base += 20;
	}
	PQclear(PQexec(h.ctl, "ALTER SYSTEM RESET synchronous_standby_names"));
	PQclear(PQexec(h.ctl, "SELECT pg_reload_conf()"));
	fprintf(stderr, "commit lost after %u attempt(s)\n", attempt);
	assert_true(lost_commit);
	assert_exactly_once(&h, base);
	h_fini(&h);
}

/* A multi-host conninfo whose first server is read-only: libpq moves on to the
 * second host inside PQconnectPoll, on a new socket. */
static void test_pg_multihost(void **state)
{
	static struct h h;
	const char *ci = getenv("MAM_TEST_MULTIHOST");
	unsigned i;

	(void)state;
	if (!pg_enabled() || !ci)
		skip();
	h_init(&h, "t_multi", "unused", 500, 100000);
	db_close(h.db, closed, NULL);
	catalog_close(h.cat);
	assert_int_equal(db_create(&h.loop, ci, on_state, &h, &h.db), 0);
	assert_int_equal(catalog_create(&h.loop, &h.cfg, h.db, &h.cat), 0);
	catalog_set_startup_cbs(h.cat, on_tenant, on_pending_move, &h);
	db_start(h.db);
	assert_true(run_until(&h, is_ready, 20000));
	for (i = 0; i < 10; i++)
		assert_int_equal(record(&h, i, false), 0);
	want_done = 10;
	assert_true(run_until(&h, all_done, 20000));
	assert_int_equal(h.ingested, 10);
	assert_exactly_once(&h, 10);
	h_fini(&h);
}

static int confirmed;
static void on_confirm(const struct catalog_result *r, void *arg)
{
	(void)arg;
	if (r->outcome == CAT_INGESTED)
		confirmed++;
}
static int two_confirmed(struct h *h)
{
	(void)h;
	return confirmed >= 2;
}
static int moves_reported(struct h *h)
{
	return h->moves > 0 && h->tenants_seen > 0;
}

static int reload_reported(struct h *h)
{
	return h->reload_seen != 0;
}

static void test_pg_moves(void **state)
{
	static struct h h;
	unsigned i;

	(void)state;
	if (!pg_enabled())
		skip();
	h_init(&h, "t_move", "mam_test_move", 500, 100000);
	h.fold.after = AFTER_MOVE;
	db_start(h.db);
	assert_true(run_until(&h, is_ready, 20000));
	for (i = 0; i < 3; i++)
		assert_int_equal(record(&h, i, false), 0);
	want_done = 3;
	assert_true(run_until(&h, all_done, 20000));
	assert_int_equal(h.ingested, 3);
	/* Confirm two (one twice: harmless); the third stays pending. */
	confirmed = 0;
	assert_int_equal(catalog_confirm_move(h.cat, h.ids[0], on_confirm, NULL), 0);
	assert_int_equal(catalog_confirm_move(h.cat, h.ids[1], on_confirm, NULL), 0);
	assert_int_equal(catalog_confirm_move(h.cat, h.ids[1], NULL, NULL), 0);
	assert_int_equal(catalog_confirm_move(h.cat, "not-a-uuid", NULL, NULL), -EINVAL);
	assert_true(run_until(&h, two_confirmed, 20000));
	assert_int_equal(q_long(h.ctl,
				"SELECT count(*) FROM ingest_ledger l JOIN tenants t ON "
				"t.id = l.tenant_id WHERE t.code = 't_move' AND move_state = "
				"'pending'"),
			 1);
	h_fini(&h);

	/* A new start reports the unconfirmed one, before any file is sent. */
	{
		static struct h h2;
		static struct config ncfg;
		static struct tenant_cfg nt[2];
		char want[128];

		h_init(&h2, "t_move", "mam_test_move2", 500, 100000);
		h2.fold.after = AFTER_MOVE;
		db_start(h2.db);
		assert_true(run_until(&h2, moves_reported, 20000));
		assert_int_equal(h2.moves, 1);
		assert_string_equal(h2.move_id, h.ids[2]);
		snprintf(want, sizeof want, "/drop/test/%s", h.rel[2]);
		assert_string_equal(h2.move_src, want);
		assert_string_equal(h2.move_dst, want);

		/* A reload adding an inactive tenant upserts it and reports it. */
		ncfg = h2.cfg;
		nt[0] = h2.ten;
		nt[1] = (struct tenant_cfg){.code = "t_reload",
					    .name = "Reloaded",
					    .active = 0,
					    .storage_quota_bytes = -1};
		ncfg.tenants = nt;
		ncfg.n_tenants = 2;
		catalog_set_config(h2.cat, &ncfg);
		assert_true(run_until(&h2, reload_reported, 20000));
		assert_int_equal(h2.reload_seen, 2);
		assert_int_equal(q_long(h2.ctl, "SELECT count(*) FROM tenants WHERE code = "
						"'t_reload' AND NOT is_active"),
				 1);
		h_fini(&h2);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_utf8_valid),	   cmocka_unit_test(test_json_escape),
		cmocka_unit_test(test_json_path_not_utf8), cmocka_unit_test(test_json_record),
		cmocka_unit_test(test_pg_thousand),	   cmocka_unit_test(test_pg_outage),
		cmocka_unit_test(test_pg_terminate),	   cmocka_unit_test(test_pg_moves),
		cmocka_unit_test(test_pg_multihost),
	};

	log_init("test_catalog");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
