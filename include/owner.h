/*
 * owner: which drop folders this node ingests, when several nodes list the
 * same folders. Each folder is owned through a session-level PostgreSQL
 * advisory lock taken on the daemon's own connection (db.h), so ownership
 * lives exactly as long as that session: a node that dies, or whose
 * connection drops, loses its folders at once and a standby's next attempt
 * (every OWNER_RETRY_MS) takes them. The ledger's idempotency key, not the
 * lock, is what keeps results exactly once; the lock makes sure only one node
 * does the work at a time.
 *
 * The key of a folder is the pair (OWNER_LOCK_CLASS, first 32 bits of
 * SHA-256("<tenant code>:<folder path>")), the two-int form of
 * pg_try_advisory_lock, which pg_locks shows as classid, objid, objsubid = 2.
 * Operators can compute it in SQL:
 *     ('x' || left(encode(sha256(convert_to('acme:/srv/drop/acme', 'UTF8')),
 *      'hex'), 8))::bit(32)::int
 */
#ifndef MAM_OWNER_H
#define MAM_OWNER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "db.h"

/* 'mamf' ("mam folder"): pg_locks.classid of every folder lock. */
#define OWNER_LOCK_CLASS 0x6d616d66
/* How often folders owned by nobody (or by another node) are tried again. */
#define OWNER_RETRY_MS 2000

struct owner;

enum owner_event {
	OWNER_ACQUIRED,	  /* folder is ours: watch it (rescan) */
	OWNER_LOST,	  /* folder is no longer ours (session lost, or removed by a reload) */
	OWNER_BUSY,	  /* another session holds it; holder describes it (first time only) */
	OWNER_ROUND_DONE, /* every folder was tried once since the last DB_READY; folder NULL */
};

struct owner_report {
	enum owner_event ev;
	const struct folder_cfg *folder; /* in the config last given to the owner */
	const char *holder;		 /* OWNER_BUSY: "application (pid N, address)" */
};

typedef void (*owner_cb)(struct owner *o, const struct owner_report *r, void *arg);

/*
 * retry: keep trying folders not owned every OWNER_RETRY_MS (the daemon);
 * false tries once per DB_READY (`scan`). The connection is shared: the
 * lock statements are queued on it like any other.
 */
int owner_create(uv_loop_t *loop, struct db *db, const struct config *cfg, bool retry, owner_cb cb,
		 void *arg, struct owner **out) __attribute__((warn_unused_result));
/* Feed every db state change here: READY tries at once, DOWN/CLOSED lose every folder. */
void owner_db_state(struct owner *o, enum db_state st);
/* Reload: folders kept stay owned, removed ones are unlocked, new ones tried. */
int owner_set_config(struct owner *o, const struct config *ncfg)
	__attribute__((warn_unused_result));
/* Is this folder (of the current config) ours? */
bool owner_owns(const struct owner *o, const struct folder_cfg *folder);
/* The objid half of a folder's key; also used by `status` to find holders in pg_locks. */
int32_t owner_folder_key(const char *tenant_code, const char *path);
/* Stop the timer and forget everything; the locks go when the session closes. */
void owner_close(struct owner *o);

#endif
