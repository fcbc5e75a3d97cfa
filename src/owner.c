/*
 * owner: folder ownership across ingest nodes with PostgreSQL advisory locks
 * (see owner.h for the key). Each configured folder is one small state
 * machine, UNOWNED -> TRYING -> OWNED | UNOWNED, and every transition goes
 * through of_set_state(), which logs it and tells the owner of this module.
 *
 * The locks are session-level and taken on the daemon's one connection, so
 * they are exactly as alive as that session: the statement that takes them
 * is queued on the pipeline like the catalogue's batches, and when db.c
 * reports the connection lost every OWNED folder is released on the spot,
 * before anything else can happen on the loop; PostgreSQL has already freed
 * (or is about to free) the lock for a standby. One statement per round tries
 * every folder not owned (pg_try_advisory_lock never waits, so a round cannot
 * block the pipeline behind it) and, for the ones another session holds,
 * names the holder from pg_locks and pg_stat_activity. A round runs at every
 * DB_READY and then every OWNER_RETRY_MS (+-25% jitter) while anything is not
 * owned, which bounds a takeover by the retry interval once the dead owner's
 * session is gone.
 *
 * A round's rows carry the key they tried, not an index, so a reload that
 * changes the folder list while a round is on the wire cannot mismatch: a
 * lock that comes back for a folder no longer configured is unlocked again.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "owner.h"
#include "sha256.h"
#include "util.h"

enum fl_state {
	FL_UNOWNED, /* not ours: tried at the next round */
	FL_TRYING,  /* in the round on the wire */
	FL_OWNED,   /* our session holds the lock: the watcher watches it */
};

static const char *const fl_names[] = {"unowned", "trying", "owned"};

struct ofolder {
	const struct folder_cfg *cfg;
	int32_t key;
	enum fl_state state;
	char holder[192]; /* last holder reported through OWNER_BUSY, "" when none */
};

/* One statement on the wire; outlives the owner when it closes first. */
struct round {
	struct owner *o; /* NULL once the owner closed or the session was lost */
};

struct owner {
	uv_loop_t *loop;
	struct db *db;
	bool retry;
	owner_cb cb;
	void *arg;
	uv_timer_t timer; /* the next round */
	struct ofolder *f;
	size_t n;
	struct round *inflight;
	bool round_reported; /* OWNER_ROUND_DONE sent since the last DB_READY */
	uint64_t rng;
};

/* The lock statement, two-int form: pg_locks shows (classid, objid, objsubid 2). */
#define CLASS_STR "1835101542" /* OWNER_LOCK_CLASS in decimal */
static const char round_sql[] =
	"WITH h AS MATERIALIZED ("
	"  SELECT l.objid, coalesce(nullif(a.application_name, ''), 'a session')"
	"         || ' (session pid ' || l.pid || coalesce(' from ' || host(a.client_addr), '')"
	"         || ')' AS who"
	"    FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid"
	"   WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2"
	"     AND l.classid = " CLASS_STR " AND l.pid <> pg_backend_pid()"
	"     AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()))"
	" SELECT x.k, g.got, CASE WHEN g.got THEN '' ELSE coalesce("
	"        (SELECT h.who FROM h WHERE h.objid = x.k::oid LIMIT 1), 'another session') END"
	"   FROM unnest($1::int[]) AS x(k),"
	"        LATERAL (SELECT pg_try_advisory_lock(" CLASS_STR ", x.k) AS got) g";
static const char unlock_sql[] = "SELECT pg_advisory_unlock(" CLASS_STR ", $1::int)";

_Static_assert(OWNER_LOCK_CLASS == 1835101542, "CLASS_STR must match OWNER_LOCK_CLASS");

int32_t owner_folder_key(const char *tenant_code, const char *path)
{
	unsigned char md[SHA256_LEN];
	struct sha256 s;
	uint32_t k = 0;

	/* SHA-256 rather than hashtext(): documented, stable across PostgreSQL
	 * versions, and computable in SQL from the same bytes (owner.h). */
	if (sha256_init(&s) != 0)
		return 0;
	if (sha256_update(&s, tenant_code, strlen(tenant_code)) == 0 &&
	    sha256_update(&s, ":", 1) == 0 && sha256_update(&s, path, strlen(path)) == 0 &&
	    sha256_final(&s, md) == 0)
		k = (uint32_t)md[0] << 24 | (uint32_t)md[1] << 16 | (uint32_t)md[2] << 8 | md[3];
	else
		sha256_drop(&s);
	return (int32_t)k;
}

static void report(struct owner *o, enum owner_event ev, const struct folder_cfg *f,
		   const char *holder)
{
	struct owner_report r = {.ev = ev, .folder = f, .holder = holder};

	if (o->cb)
		o->cb(o, &r, o->arg);
}

/* Every change of a folder's state, logged once, reported when it matters. */
static void of_set_state(struct owner *o, struct ofolder *f, enum fl_state st, const char *why)
{
	char esc[LOG_ESC_MAX];
	enum fl_state old = f->state;

	if (old == st)
		return;
	f->state = st;
	log_debug("owner", "%s \"%s\": %s -> %s", f->cfg->tenant->code,
		  log_escape(f->cfg->path, esc, sizeof esc), fl_names[old], fl_names[st]);
	if (st == FL_OWNED) {
		f->holder[0] = '\0';
		log_info("owner", "%s \"%s\": this node owns the folder now (advisory lock %d/%d)",
			 f->cfg->tenant->code, esc, OWNER_LOCK_CLASS, f->key);
		report(o, OWNER_ACQUIRED, f->cfg, NULL);
	} else if (old == FL_OWNED) {
		log_warnx("owner",
			  "%s \"%s\": released (%s); not ingesting it until the lock is "
			  "held again",
			  f->cfg->tenant->code, esc, why);
		report(o, OWNER_LOST, f->cfg, NULL);
	}
}

static void round_send(struct owner *o);

static void on_timer(uv_timer_t *t)
{
	struct owner *o = container_of(t, struct owner, timer);

	round_send(o);
}

static void arm_timer(struct owner *o)
{
	uint64_t span = OWNER_RETRY_MS / 2;

	if (!o->retry)
		return;
	o->rng ^= o->rng << 13;
	o->rng ^= o->rng >> 7;
	o->rng ^= o->rng << 17;
	uv_timer_start(&o->timer, on_timer,
		       OWNER_RETRY_MS - OWNER_RETRY_MS / 4 + o->rng % (span + 1), 0);
}

static void unlock_cb(PGresult *res, const char *error, void *arg)
{
	(void)res;
	(void)arg;
	if (res && error)
		log_warnx("owner", "could not release a folder lock: %s", error);
}

/* A lock we hold but no configured folder wants any more. */
static void unlock_key(struct owner *o, int32_t key)
{
	char num[16];
	const char *params[1] = {num};

	snprintf(num, sizeof num, "%d", key);
	if (db_exec(o->db, unlock_sql, 1, params, unlock_cb, NULL) != 0)
		log_debug("owner",
			  "lock %d not released: not connected (the session's end frees it)", key);
}

static void round_done_report(struct owner *o)
{
	if (o->round_reported)
		return;
	o->round_reported = true;
	report(o, OWNER_ROUND_DONE, NULL, NULL);
}

static void round_cb(PGresult *res, const char *error, void *arg)
{
	struct round *r = arg;
	struct owner *o = r->o;
	int row, rows;
	size_t i;

	free(r);
	if (!o)
		return;
	o->inflight = NULL;
	if (!res || error) {
		/* NULL: the session is gone, and any lock it took with it; DOWN follows. */
		for (i = 0; i < o->n; i++)
			if (o->f[i].state == FL_TRYING)
				of_set_state(o, &o->f[i], FL_UNOWNED, "round failed");
		if (res) {
			log_warnx("owner", "could not try the folder locks: %s", error);
			arm_timer(o);
			round_done_report(o); /* last: `scan` may start its pass from it */
		}
		return;
	}
	rows = PQntuples(res);
	for (row = 0; row < rows; row++) {
		int32_t key = (int32_t)strtol(PQgetvalue(res, row, 0), NULL, 10);
		bool got = PQgetvalue(res, row, 1)[0] == 't';
		const char *who = PQgetvalue(res, row, 2);
		bool used = false;

		for (i = 0; i < o->n; i++) {
			struct ofolder *f = &o->f[i];
			char esc[LOG_ESC_MAX];

			if (f->key != key || f->state != FL_TRYING)
				continue;
			used = true;
			if (got) {
				of_set_state(o, f, FL_OWNED, NULL);
				continue;
			}
			of_set_state(o, f, FL_UNOWNED, NULL);
			if (strcmp(f->holder, who) == 0)
				continue; /* said already: a standby retries quietly */
			snprintf(f->holder, sizeof f->holder, "%s", who);
			log_info("owner", "%s \"%s\": owned by %s; standing by",
				 f->cfg->tenant->code, log_escape(f->cfg->path, esc, sizeof esc),
				 who);
			report(o, OWNER_BUSY, f->cfg, who);
		}
		/* Taken twice (two folders share a key) or for a folder a reload removed. */
		if (got && !used)
			unlock_key(o, key);
	}
	for (i = 0; i < o->n; i++)
		if (o->f[i].state == FL_TRYING)
			of_set_state(o, &o->f[i], FL_UNOWNED, "no answer");
	arm_timer(o);
	round_done_report(o);
}

/* Try every folder not owned, in one statement. */
static void round_send(struct owner *o)
{
	const char *params[1];
	struct round *r;
	size_t i, want = 0, len = 1;
	char *arr;

	if (o->inflight || db_state(o->db) != DB_READY)
		return;
	/* "{k1,k2,...}": at most 11 characters and a comma per key. */
	arr = malloc(o->n * 12 + 3);
	r = calloc(1, sizeof *r);
	if (!arr || !r) {
		free(arr);
		free(r);
		log_error("owner", "out of memory building the folder lock round");
		arm_timer(o);
		return;
	}
	arr[0] = '{';
	for (i = 0; i < o->n; i++) {
		if (o->f[i].state != FL_UNOWNED)
			continue;
		len += (size_t)sprintf(arr + len, "%s%d", want ? "," : "", o->f[i].key);
		want++;
	}
	memcpy(arr + len, "}", 2);
	if (want == 0) {
		/* Everything is ours: nothing to retry until something is lost. */
		free(arr);
		free(r);
		round_done_report(o);
		return;
	}
	r->o = o;
	params[0] = arr;
	if (db_exec(o->db, round_sql, 1, params, round_cb, r) != 0) {
		/* Not connected: the next DB_READY sends a round. */
		free(arr);
		free(r);
		return;
	}
	free(arr);
	o->inflight = r;
	for (i = 0; i < o->n; i++)
		if (o->f[i].state == FL_UNOWNED)
			of_set_state(o, &o->f[i], FL_TRYING, NULL);
}

void owner_db_state(struct owner *o, enum db_state st)
{
	size_t i;

	if (st == DB_READY) {
		o->round_reported = false;
		round_send(o);
		return;
	}
	if (st != DB_DOWN && st != DB_CLOSED)
		return;
	/* The session and every lock it held are gone: stop ingesting right now. */
	if (o->inflight) {
		o->inflight->o = NULL;
		o->inflight = NULL;
	}
	uv_timer_stop(&o->timer);
	for (i = 0; i < o->n; i++)
		of_set_state(o, &o->f[i], FL_UNOWNED,
			     st == DB_DOWN ? "database connection lost" : "shutting down");
	for (i = 0; i < o->n; i++)
		o->f[i].holder[0] = '\0';
}

static int build(const struct config *cfg, const struct ofolder *old, size_t n_old,
		 struct ofolder **out, size_t *n_out)
{
	size_t t, k, i, n = 0;
	struct ofolder *nf;

	for (t = 0; t < cfg->n_tenants; t++)
		n += cfg->tenants[t].n_folders;
	nf = calloc(n ? n : 1, sizeof *nf);
	if (!nf)
		return -ENOMEM;
	n = 0;
	for (t = 0; t < cfg->n_tenants; t++) {
		for (k = 0; k < cfg->tenants[t].n_folders; k++) {
			struct ofolder *f = &nf[n++];

			f->cfg = &cfg->tenants[t].folders[k];
			f->key = owner_folder_key(cfg->tenants[t].code, f->cfg->path);
			f->state = FL_UNOWNED;
			for (i = 0; i < n_old; i++) {
				if (strcmp(old[i].cfg->tenant->code, cfg->tenants[t].code) == 0 &&
				    strcmp(old[i].cfg->path, f->cfg->path) == 0) {
					f->state = old[i].state;
					memcpy(f->holder, old[i].holder, sizeof f->holder);
					break;
				}
			}
		}
	}
	*out = nf;
	*n_out = n;
	return 0;
}

int owner_create(uv_loop_t *loop, struct db *db, const struct config *cfg, bool retry, owner_cb cb,
		 void *arg, struct owner **out)
{
	struct owner *o = calloc(1, sizeof *o);
	int rc;

	if (!o)
		return -ENOMEM;
	rc = build(cfg, NULL, 0, &o->f, &o->n);
	if (rc != 0) {
		free(o);
		return rc;
	}
	o->loop = loop;
	o->db = db;
	o->retry = retry;
	o->cb = cb;
	o->arg = arg;
	o->rng = (uint64_t)uv_hrtime() | 1;
	uv_timer_init(loop, &o->timer);
	*out = o;
	return 0;
}

int owner_set_config(struct owner *o, const struct config *ncfg)
{
	struct ofolder *nf;
	size_t n, i, j;
	int rc = build(ncfg, o->f, o->n, &nf, &n);

	if (rc != 0)
		return rc;
	for (i = 0; i < o->n; i++) {
		bool kept = false;
		char esc[LOG_ESC_MAX];

		for (j = 0; j < n && !kept; j++)
			kept = strcmp(nf[j].cfg->tenant->code, o->f[i].cfg->tenant->code) == 0 &&
			       strcmp(nf[j].cfg->path, o->f[i].cfg->path) == 0;
		if (kept || o->f[i].state != FL_OWNED)
			continue; /* a TRYING one is unlocked when its answer comes */
		log_info("owner", "%s \"%s\": removed from the configuration; releasing it",
			 o->f[i].cfg->tenant->code, log_escape(o->f[i].cfg->path, esc, sizeof esc));
		for (j = 0; j < n; j++)
			if (nf[j].key == o->f[i].key && nf[j].state == FL_OWNED)
				break;
		if (j == n)
			unlock_key(o, o->f[i].key);
	}
	free(o->f);
	o->f = nf;
	o->n = n;
	round_send(o);
	return 0;
}

bool owner_owns(const struct owner *o, const struct folder_cfg *folder)
{
	size_t i;

	for (i = 0; i < o->n; i++)
		if (o->f[i].cfg == folder)
			return o->f[i].state == FL_OWNED;
	return false;
}

static void close_cb(uv_handle_t *h)
{
	struct owner *o = container_of((uv_timer_t *)h, struct owner, timer);

	free(o->f);
	free(o);
}

void owner_close(struct owner *o)
{
	if (o->inflight)
		o->inflight->o = NULL;
	o->inflight = NULL;
	o->cb = NULL;
	uv_close((uv_handle_t *)&o->timer, close_cb);
}
