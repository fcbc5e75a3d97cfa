/*
 * db: one asynchronous PostgreSQL connection on the libuv loop.
 *
 * Nonblocking connect (PQconnectStart/PQconnectPoll) with the socket on a
 * uv_poll_t that is re-created whenever PQsocket() changes, pipeline mode for
 * the statements, reconnect with exponential backoff and jitter, LISTEN
 * notifications. db.c knows libpq and the loop, never assets: the SQL lives
 * with its callers (catalog.c, worker.c).
 */
#ifndef MAM_DB_H
#define MAM_DB_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <uv.h>

struct db;

enum db_state { DB_DOWN, DB_CONNECTING, DB_READY, DB_CLOSED };

typedef void (*db_state_cb)(struct db *db, enum db_state state, void *arg);
/*
 * Result of one statement. res is valid only during the call (db.c clears it).
 * On error res may be a PGRES_FATAL_ERROR result or NULL (connection lost
 * before the result arrived: the statement may or may not have committed);
 * error holds PostgreSQL's message in both cases, NULL on success.
 */
typedef void (*db_result_cb)(PGresult *res, const char *error, void *arg);
typedef void (*db_notify_cb)(const char *channel, const char *payload, void *arg);

int db_create(uv_loop_t *loop, const char *conninfo, db_state_cb state_cb, void *arg,
	      struct db **out) __attribute__((warn_unused_result));
/* Connect now; on failure keep retrying with backoff (100 ms doubling to 10 s, +-25% jitter). */
void db_start(struct db *db);
enum db_state db_state(const struct db *db);
/*
 * Send one statement (text params, text results) in its own implicit
 * transaction (each statement is followed by a sync point, so one failure
 * never aborts another caller's statement). Statements are pipelined: many
 * may be in flight; callbacks run in submission order. Returns -ENOTCONN when
 * not DB_READY (the caller holds its work and retries on DB_READY).
 */
int db_exec(struct db *db, const char *sql, int nparams, const char *const *params, db_result_cb cb,
	    void *arg) __attribute__((warn_unused_result));
unsigned db_inflight(const struct db *db);
/*
 * fallback_application_name for the next connections (an application_name in
 * the conninfo wins): lets pg_stat_activity, and so `mam-ingest status`, tell
 * which node holds a session and its advisory locks. Call before db_start.
 */
int db_set_application_name(struct db *db, const char *name) __attribute__((warn_unused_result));
/* Called for every NOTIFY received (after LISTEN issued through db_exec). */
void db_set_notify_cb(struct db *db, db_notify_cb cb, void *arg);
/* Fail in-flight statements with "connection closed", close handles, free; cb when done. */
void db_close(struct db *db, void (*cb)(void *arg), void *arg);

#endif
