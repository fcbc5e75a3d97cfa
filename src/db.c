/*
 * db: one asynchronous PostgreSQL connection driven by the libuv loop.
 *
 * Connecting is libpq's nonblocking cycle: PQconnectStart, then one
 * PQconnectPoll per readiness event, starting as if POLLING_WRITING. libpq may
 * switch sockets between steps (multi-host lists, target_session_attrs, SSL or
 * GSS fallback), possibly reusing the same descriptor number after closing
 * the old socket; the kernel then silently dropped the old epoll registration.
 * So after every step the uv_poll_t is stopped and started again (forcing
 * libuv to re-add the descriptor), and re-created on a new descriptor when
 * PQsocket() changed. A poll handle is never left started on a descriptor
 * libpq may have closed: libuv aborts when epoll_ctl fails on one.
 *
 * Once connected the connection is nonblocking and in pipeline mode. Every
 * statement is followed by its own sync point, so it is its own implicit
 * transaction and an error aborts only it. Statements wait in a FIFO; a
 * statement's callback runs when its sync arrives, i.e. after its commit, so a
 * result is never reported for something that might still roll back. When the
 * connection breaks, every statement still in the FIFO gets (NULL, "connection
 * lost ...") in order, the state goes DB_DOWN and one timer reconnects with
 * exponential backoff and jitter.
 */
#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "log.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 10000
/* PQconnectPoll does not apply connect_timeout: bound a whole attempt here. */
#define CONNECT_TIMEOUT_MS 30000

struct stmt {
	db_result_cb cb;
	void *arg;
	PGresult *res; /* the statement's result, kept until its sync */
	bool got_end;  /* its results ended (NULL seen); waiting for the sync */
	struct stmt *next;
};

/* Heap-allocated so a replaced handle can finish closing on its own. */
struct db_poll {
	uv_poll_t handle;
	struct db *db;
	int fd;
};

struct db {
	uv_loop_t *loop;
	char *conninfo;
	char *appname; /* fallback_application_name: shows who holds what in pg_stat_activity */
	char *options; /* "-c jit=off" before the user's own options */
	PGconn *conn;
	enum db_state state;
	db_state_cb state_cb;
	void *state_arg;
	db_notify_cb notify_cb;
	void *notify_arg;
	struct db_poll *poll; /* NULL when no socket is watched */
	int poll_events;      /* UV_READABLE/UV_WRITABLE currently asked for */
	uv_timer_t timer;     /* reconnect backoff, connect timeout, deferred failure */
	unsigned backoff_ms;
	bool broken; /* a send failed; the timer (0 ms) tears the connection down */
	struct stmt *head, *tail;
	unsigned inflight;
	unsigned open_handles; /* timer + poll handles not yet closed */
	bool closing;
	void (*close_cb)(void *arg);
	void *close_arg;
};

static void db_connect_step(struct db *db, PostgresPollingStatusType st);
static void db_on_poll(uv_poll_t *h, int status, int events);

static void set_state(struct db *db, enum db_state st)
{
	if (db->state == st)
		return;
	db->state = st;
	if (db->state_cb)
		db->state_cb(db, st, db->state_arg);
}

/* One handle finished closing; the last one frees the db and reports. */
static void handle_closed(struct db *db)
{
	db->open_handles--;
	if (db->closing && db->open_handles == 0) {
		void (*cb)(void *) = db->close_cb;
		void *arg = db->close_arg;

		free(db->conninfo);
		free(db->appname);
		free(db->options);
		free(db);
		if (cb)
			cb(arg);
	}
}

static void poll_close_cb(uv_handle_t *h)
{
	struct db_poll *p = h->data;
	struct db *db = p->db;

	free(p);
	handle_closed(db);
}

/* Stop watching; must happen before libpq closes (or may have closed) the socket. */
static void poll_drop(struct db *db)
{
	if (!db->poll)
		return;
	uv_poll_stop(&db->poll->handle);
	uv_close((uv_handle_t *)&db->poll->handle, poll_close_cb);
	db->poll = NULL;
	db->poll_events = 0;
}

/*
 * Watch PQsocket() for events. force re-arms even when nothing changed, for
 * the connect phase where libpq may have replaced the socket behind the same
 * descriptor number. Returns 0 or -errno.
 */
static int poll_watch(struct db *db, int events, bool force)
{
	int fd = PQsocket(db->conn);
	int r;

	if (fd < 0)
		return -EBADF;
	if (db->poll && db->poll->fd != fd)
		poll_drop(db);
	if (!db->poll) {
		struct db_poll *p = calloc(1, sizeof *p);

		if (!p)
			return -ENOMEM;
		r = uv_poll_init(db->loop, &p->handle, fd);
		if (r != 0) {
			free(p);
			return r;
		}
		p->handle.data = p;
		p->db = db;
		p->fd = fd;
		db->poll = p;
		db->open_handles++;
		force = true;
	}
	if (!force && db->poll_events == events)
		return 0;
	/* Stopping first makes libuv EPOLL_CTL_ADD again instead of MOD. */
	uv_poll_stop(&db->poll->handle);
	r = uv_poll_start(&db->poll->handle, events, db_on_poll);
	db->poll_events = r == 0 ? events : 0;
	return r;
}

static unsigned jitter(unsigned ms)
{
	/* +-25%: nodes that lost the same server do not return in lockstep. */
	unsigned span = ms / 2;

	return ms - ms / 4 + (span ? (unsigned)rand() % (span + 1) : 0);
}

static void on_timer(uv_timer_t *t);

static void schedule_reconnect(struct db *db)
{
	unsigned delay = jitter(db->backoff_ms);

	db->backoff_ms = db->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : db->backoff_ms * 2;
	log_info("db", "reconnecting in %u ms", delay);
	uv_timer_start(&db->timer, on_timer, delay, 0);
}

/* Fail every queued statement, in order, with msg. */
static void fail_all(struct db *db, const char *msg)
{
	struct stmt *s;

	while ((s = db->head) != NULL) {
		db->head = s->next;
		if (!db->head)
			db->tail = NULL;
		db->inflight--;
		if (s->res)
			PQclear(s->res);
		s->cb(NULL, msg, s->arg);
		free(s);
	}
}

/* The connection is unusable: fail its statements, go DOWN, retry later. */
static void conn_lost(struct db *db, const char *why)
{
	char msg[512];
	const char *pqmsg = db->conn ? PQerrorMessage(db->conn) : "";
	enum db_state prev;
	size_t n, i;

	snprintf(msg, sizeof msg, "%s%s%s", why, *pqmsg ? ": " : "", pqmsg);
	/* libpq's messages span lines ("...\n\tThis probably means..."): one line. */
	for (n = 0, i = 0; msg[i]; i++) {
		bool sp = msg[i] == '\n' || msg[i] == '\t' || msg[i] == ' ';

		if (sp && (n == 0 || msg[n - 1] == ' '))
			continue;
		msg[n++] = sp ? ' ' : msg[i];
	}
	while (n > 0 && msg[n - 1] == ' ')
		n--;
	msg[n] = '\0';
	if (db->state == DB_READY || db->head)
		log_warnx("db", "%s", msg);
	else
		log_debug("db", "%s", msg);
	uv_timer_stop(&db->timer);
	poll_drop(db);
	if (db->conn) {
		PQfinish(db->conn);
		db->conn = NULL;
	}
	db->broken = false;
	prev = db->state;
	db->state = DB_DOWN; /* before the callbacks: a resend from them must get -ENOTCONN */
	fail_all(db, msg);
	if (db->state_cb && prev != DB_DOWN)
		db->state_cb(db, DB_DOWN, db->state_arg);
	if (!db->closing && db->state == DB_DOWN && !db->conn)
		schedule_reconnect(db);
}

/* Server notices (WARNING, NOTICE...) go to our log, one line, not to stderr raw. */
static void on_notice(void *arg, const char *message)
{
	char line[512];
	size_t n;

	(void)arg;
	snprintf(line, sizeof line, "%s", message);
	for (n = 0; line[n]; n++)
		if (line[n] == '\n' || line[n] == '\t')
			line[n] = ' ';
	while (n > 0 && line[n - 1] == ' ')
		line[--n] = '\0';
	log_warnx("db", "server said: %s", line);
}

static void connect_begin(struct db *db)
{
	/* The conninfo string or URI goes in as an expanded dbname, so a
	 * fallback_application_name can ride along without editing it; an
	 * application_name the user set still wins. Empty values are ignored. */
	const char *const keys[] = {"dbname", "fallback_application_name", "options", NULL};
	const char *const vals[] = {db->conninfo, db->appname ? db->appname : "", db->options,
				    NULL};

	assert(!db->conn && !db->poll);
	set_state(db, DB_CONNECTING);
	db->conn = PQconnectStartParams(keys, vals, 1);
	if (!db->conn) {
		log_error("db", "could not allocate a connection");
		db->state = DB_DOWN;
		schedule_reconnect(db);
		return;
	}
	if (PQstatus(db->conn) == CONNECTION_BAD) {
		conn_lost(db, "could not connect to the database");
		return;
	}
	PQsetNoticeProcessor(db->conn, on_notice, NULL);
	uv_timer_start(&db->timer, on_timer, CONNECT_TIMEOUT_MS, 0);
	/* libpq's documented start: behave as if the last poll said WRITING. */
	db_connect_step(db, PGRES_POLLING_WRITING);
}

static void on_timer(uv_timer_t *t)
{
	struct db *db = t->data;

	if (db->closing)
		return;
	if (db->broken)
		conn_lost(db, "connection lost");
	else if (db->state == DB_CONNECTING && db->conn)
		conn_lost(db, "timed out connecting to the database");
	else if (db->state == DB_DOWN && !db->conn)
		connect_begin(db);
}

static void connected(struct db *db)
{
	uv_timer_stop(&db->timer);
	if (PQsetnonblocking(db->conn, 1) != 0 || PQenterPipelineMode(db->conn) != 1) {
		conn_lost(db, "could not set up the connection");
		return;
	}
	if (poll_watch(db, UV_READABLE, true) != 0) {
		conn_lost(db, "could not watch the connection");
		return;
	}
	db->backoff_ms = BACKOFF_MIN_MS;
	log_info("db", "connected to %s (server %d)", PQhost(db->conn), PQserverVersion(db->conn));
	set_state(db, DB_READY);
}

/* Wait for what the last PQconnectPoll asked for, on whatever socket is current. */
static void db_connect_step(struct db *db, PostgresPollingStatusType st)
{
	int r;

	switch (st) {
	case PGRES_POLLING_OK: connected(db); return;
	case PGRES_POLLING_READING:
	case PGRES_POLLING_WRITING:
		r = poll_watch(db, st == PGRES_POLLING_READING ? UV_READABLE : UV_WRITABLE, true);
		if (r != 0)
			conn_lost(db, "could not watch the connection");
		return;
	default: conn_lost(db, "could not connect to the database"); return;
	}
}

/* Hand the head statement its result, after its sync: it has committed. */
static void stmt_done(struct db *db)
{
	struct stmt *s = db->head;
	const char *err = NULL;

	db->head = s->next;
	if (!db->head)
		db->tail = NULL;
	db->inflight--;
	if (!s->res)
		err = "statement returned no result";
	else if (PQresultStatus(s->res) != PGRES_TUPLES_OK &&
		 PQresultStatus(s->res) != PGRES_COMMAND_OK)
		/* The primary message is one line; the full one adds LINE/caret lines. */
		err = PQresultErrorField(s->res, PG_DIAG_MESSAGE_PRIMARY)
			      ? PQresultErrorField(s->res, PG_DIAG_MESSAGE_PRIMARY)
			      : PQresultErrorMessage(s->res);
	if (err && !*err)
		err = PQresStatus(PQresultStatus(s->res));
	s->cb(s->res, err, s->arg);
	if (s->res)
		PQclear(s->res);
	free(s);
}

/* Read every complete result; each statement: result(s), NULL, then PIPELINE_SYNC. */
static void read_results(struct db *db)
{
	int nulls = 0;

	while (db->conn && db->head && !PQisBusy(db->conn)) {
		struct stmt *s = db->head;
		PGresult *res = PQgetResult(db->conn);

		if (!res) {
			/* Two NULLs in a row: nothing more buffered, wait for input. */
			if (s->got_end && ++nulls > 1)
				break;
			s->got_end = true;
			continue;
		}
		nulls = 0;
		if (PQresultStatus(res) == PGRES_PIPELINE_SYNC) {
			PQclear(res);
			stmt_done(db);
			continue;
		}
		/* Keep the first result, unless a later one is an error (e.g. at commit). */
		if (!s->res) {
			s->res = res;
		} else if (PQresultStatus(res) == PGRES_FATAL_ERROR) {
			PQclear(s->res);
			s->res = res;
		} else {
			PQclear(res);
		}
	}
}

static void drain_notifies(struct db *db)
{
	PGnotify *n;

	while (db->conn && (n = PQnotifies(db->conn)) != NULL) {
		if (db->notify_cb)
			db->notify_cb(n->relname, n->extra, db->notify_arg);
		PQfreemem(n);
	}
}

/* Flush what libpq buffered; watch for writable only while something is left. */
static int flush_and_watch(struct db *db)
{
	int r = PQflush(db->conn);

	if (r < 0)
		return -EIO;
	return poll_watch(db, r > 0 ? UV_READABLE | UV_WRITABLE : UV_READABLE, false);
}

static void db_on_poll(uv_poll_t *h, int status, int events)
{
	struct db_poll *p = h->data;
	struct db *db = p->db;

	if (db->closing || db->poll != p)
		return;
	if (db->state == DB_CONNECTING) {
		db_connect_step(db, PQconnectPoll(db->conn));
		return;
	}
	if (db->state != DB_READY || db->broken)
		return;
	if (status < 0) {
		conn_lost(db, "connection lost");
		return;
	}
	if ((events & UV_READABLE) && PQconsumeInput(db->conn) == 0) {
		conn_lost(db, "connection lost");
		return;
	}
	if (PQstatus(db->conn) == CONNECTION_BAD) {
		conn_lost(db, "connection lost");
		return;
	}
	if (flush_and_watch(db) != 0) {
		conn_lost(db, "connection lost");
		return;
	}
	/* Callbacks may submit more statements; read_results re-reads the head. */
	read_results(db);
	drain_notifies(db);
	if (db->conn && PQstatus(db->conn) == CONNECTION_BAD)
		conn_lost(db, "connection lost");
}

/*
 * The session's options: "-c jit=off", then the user's own (conninfo, else
 * PGOPTIONS), so a user's -c jit=on still wins. Every statement we send is
 * short OLTP work, but some are costed high on a large catalogue (a sum over
 * a tenant's assets that only runs for quota tenants): PostgreSQL then spent
 * seconds JIT-compiling each batch (tests/bench, docs/benchmarks.md).
 */
static char *session_options(const char *conninfo)
{
	PQconninfoOption *opts = PQconninfoParse(conninfo, NULL), *o;
	const char *user = getenv("PGOPTIONS");
	char *out;

	for (o = opts; o && o->keyword; o++)
		if (strcmp(o->keyword, "options") == 0 && o->val && *o->val)
			user = o->val;
	if (asprintf(&out, "-c jit=off%s%s", user && *user ? " " : "", user ? user : "") < 0)
		out = NULL;
	PQconninfoFree(opts);
	return out;
}

int db_create(uv_loop_t *loop, const char *conninfo, db_state_cb state_cb, void *arg,
	      struct db **out)
{
	struct db *db = calloc(1, sizeof *db);

	if (!db)
		return -ENOMEM;
	db->conninfo = strdup(conninfo ? conninfo : "");
	db->options = session_options(db->conninfo);
	if (!db->conninfo || !db->options) {
		free(db->conninfo);
		free(db->options);
		free(db);
		return -ENOMEM;
	}
	db->loop = loop;
	db->state = DB_DOWN;
	db->state_cb = state_cb;
	db->state_arg = arg;
	db->backoff_ms = BACKOFF_MIN_MS;
	uv_timer_init(loop, &db->timer);
	db->timer.data = db;
	db->open_handles = 1;
	*out = db;
	return 0;
}

void db_start(struct db *db)
{
	if (db->closing || db->conn || db->state != DB_DOWN)
		return;
	uv_timer_stop(&db->timer);
	connect_begin(db);
}

enum db_state db_state(const struct db *db)
{
	return db->state;
}

unsigned db_inflight(const struct db *db)
{
	return db->inflight;
}

int db_set_application_name(struct db *db, const char *name)
{
	char *copy = strdup(name ? name : "");

	if (!copy)
		return -ENOMEM;
	free(db->appname);
	db->appname = copy;
	return 0;
}

void db_set_notify_cb(struct db *db, db_notify_cb cb, void *arg)
{
	db->notify_cb = cb;
	db->notify_arg = arg;
}

/* A send failed: tear down from the timer so no callback runs inside db_exec. */
static void defer_failure(struct db *db)
{
	db->broken = true;
	poll_drop(db);
	uv_timer_start(&db->timer, on_timer, 0, 0);
}

int db_exec(struct db *db, const char *sql, int nparams, const char *const *params, db_result_cb cb,
	    void *arg)
{
	struct stmt *s;

	if (db->state != DB_READY || db->broken || db->closing)
		return -ENOTCONN;
	s = calloc(1, sizeof *s);
	if (!s)
		return -ENOMEM;
	s->cb = cb;
	s->arg = arg;
	if (PQsendQueryParams(db->conn, sql, nparams, NULL, params, NULL, NULL, 0) != 1 ||
	    PQpipelineSync(db->conn) != 1) {
		/* The statement may be half-queued: the connection is no longer usable. */
		free(s);
		defer_failure(db);
		return -ENOTCONN;
	}
	if (db->tail)
		db->tail->next = s;
	else
		db->head = s;
	db->tail = s;
	db->inflight++;
	if (flush_and_watch(db) != 0)
		defer_failure(db); /* s is failed, in order, from the timer */
	return 0;
}

static void timer_close_cb(uv_handle_t *h)
{
	handle_closed(h->data);
}

void db_close(struct db *db, void (*cb)(void *arg), void *arg)
{
	if (db->closing)
		return;
	db->closing = true;
	db->close_cb = cb;
	db->close_arg = arg;
	uv_timer_stop(&db->timer);
	poll_drop(db);
	if (db->conn) {
		PQfinish(db->conn);
		db->conn = NULL;
	}
	db->state = DB_CLOSED;
	fail_all(db, "connection closed");
	if (db->state_cb)
		db->state_cb(db, DB_CLOSED, db->state_arg);
	uv_close((uv_handle_t *)&db->timer, timer_close_cb);
}
