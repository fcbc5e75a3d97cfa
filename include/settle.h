/*
 * Settle: the state machine that decides when a file has finished arriving.
 *
 * Pure logic: no I/O, no clock, no allocation. The watcher feeds it what it
 * observed (an identity from lstat, an inotify open/close/write, a report to
 * the owner) together with the loop time, and asks it what the file needs
 * next. Keeping it pure is what lets tests/unit/test_settle.c walk every
 * transition with made-up times instead of real writers and sleeps.
 *
 * A file is finished when its identity (size, mtime, ctime, inode) has been
 * unchanged for settle_ms and no local writer has it open. Whether a writer
 * has it open is known two ways: for a file created under our eyes
 * ("history"), IN_OPEN counted against IN_CLOSE_* since its IN_CREATE; for a
 * file found by a scan (no history) the watcher must run a read-lease probe,
 * which settle_check asks for with SETTLE_NEED_PROBE. Opens are only counted
 * while the file settles: after it was reported, our own hashing opens it, so
 * from then on only a change of identity (or a write) matters.
 */
#ifndef MAM_SETTLE_H
#define MAM_SETTLE_H

#include <stdbool.h>
#include <stdint.h>

#include "fileid.h"

enum settle_state {
	SETTLE_SEEN = 0, /* known by name only, never observed */
	SETTLE_SETTLING, /* identity or writers may still change */
	SETTLE_FINISHED, /* reported to the owner, awaiting done/retry/forget */
	SETTLE_DONE,	 /* the owner catalogued it: only a change brings it back */
};

enum settle_event {
	SETTLE_EV_FOUND,    /* found by a scan: identity known, no open history */
	SETTLE_EV_CREATED,  /* IN_CREATE seen: opens/closes from now on are meaningful */
	SETTLE_EV_STAT,	    /* a fresh lstat identity (id required) */
	SETTLE_EV_WRITE,    /* IN_MODIFY: the content changed now, whatever stat says */
	SETTLE_EV_OPEN,	    /* IN_OPEN */
	SETTLE_EV_CLOSE,    /* IN_CLOSE_WRITE or IN_CLOSE_NOWRITE */
	SETTLE_EV_LOST,	    /* events were lost (queue overflow): open counts unreliable */
	SETTLE_EV_BLOCKED,  /* stable but not finishable yet (writer, marker): look again later */
	SETTLE_EV_REPORTED, /* reported finished to the owner */
	SETTLE_EV_DONE,	    /* the owner catalogued it */
	SETTLE_EV_RETRY,    /* the owner wants it settled again (changed while hashed) */
};

struct settle {
	struct file_id id;  /* identity at the last observation */
	int64_t changed_ms; /* loop time since which the identity is unchanged */
	int64_t recheck_ms; /* 0, or when to look again at a stable but blocked file */
	int64_t defer_ms;   /* 0, or the owner's backoff: not before then (settle_defer) */
	uint16_t opens;	    /* IN_OPEN seen since IN_CREATE (history only) */
	uint16_t closes;    /* IN_CLOSE_* seen since IN_CREATE (history only) */
	uint8_t state;	    /* enum settle_state */
	uint8_t history;    /* created under our eyes and no event lost since */
	uint8_t backoffs;   /* the owner's retries of this version (watcher_file_backoff) */
};

enum settle_verdict {
	SETTLE_WAIT,	   /* identity changed less than settle_ms ago */
	SETTLE_OPEN,	   /* stable, but a local writer still has it open */
	SETTLE_NEED_PROBE, /* stable, no open history: ask the kernel (lease probe) */
	SETTLE_READY,	   /* stable and closed: finished (ready marker aside) */
	SETTLE_IDLE,	   /* not settling (finished or done): nothing to do */
};

/*
 * Apply one event at loop time now_ms. id is required for FOUND, CREATED and
 * STAT and ignored otherwise. For FOUND, now_ms may lie in the past: it is
 * the time since which the identity is known to be unchanged. settle_ms is
 * used by BLOCKED (look again settle_ms later). name is only for the debug
 * log of state changes. Returns true when the state changed.
 */
bool settle_step(struct settle *s, enum settle_event ev, const struct file_id *id, int64_t now_ms,
		 int settle_ms, const char *name);

/* What the file needs at now_ms. Pure: changes nothing. */
enum settle_verdict settle_check(const struct settle *s, int64_t now_ms, int settle_ms);

/* A SETTLING file is not to be looked at before until_ms (the owner's retry
 * backoff). Only a change of the file (new identity, written, created or
 * renamed into place) clears that: opens and closes, ours included, do not. */
void settle_defer(struct settle *s, int64_t until_ms);

/* The loop time at which settle_check may give another answer (SETTLING only). */
int64_t settle_due(const struct settle *s, int settle_ms);

/* Milliseconds since the later of mtime and ctime, at wall time now_ns. */
int64_t settle_age_ms(const struct file_id *id, int64_t now_ns);

const char *settle_state_name(enum settle_state st);

#endif
