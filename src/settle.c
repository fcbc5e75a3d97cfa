/*
 * Settle state machine (see settle.h). Every change of state goes through
 * settle_set(), which logs it at debug level, so "what can happen to a file
 * next?" is answered by settle_step()'s switch and nothing else.
 *
 * Open accounting is only kept while a file settles and only for files whose
 * IN_CREATE we saw: IN_OPEN does not say whether the open was for reading or
 * writing, so the counts are "opens since creation" against "closes since
 * creation". Once the file was reported, the owner's own hashing opens it;
 * counting those would make a finished file look busy forever, so after the
 * report only a change of identity or a write brings the file back, and it
 * then settles without history (the watcher probes with a read lease).
 */
#include <stdio.h>

#include "log.h"
#include "settle.h"

static const char *const state_names[] = {
	[SETTLE_SEEN] = "seen",
	[SETTLE_SETTLING] = "settling",
	[SETTLE_FINISHED] = "finished",
	[SETTLE_DONE] = "done",
};

const char *settle_state_name(enum settle_state st)
{
	if ((unsigned)st >= sizeof state_names / sizeof state_names[0])
		return "invalid";
	return state_names[st];
}

/* The one place a state changes. */
static bool settle_set(struct settle *s, enum settle_state to, const char *why, const char *name)
{
	char esc[LOG_ESC_MAX];

	if (s->state == to)
		return false;
	log_debug("settle", "\"%s\": %s -> %s (%s)", log_escape(name ? name : "", esc, sizeof esc),
		  settle_state_name(s->state), settle_state_name(to), why);
	s->state = (uint8_t)to;
	return true;
}

/* Start settling from scratch with identity id, unchanged since now_ms. */
static bool settle_restart(struct settle *s, const struct file_id *id, int64_t now_ms, bool history,
			   const char *why, const char *name)
{
	bool changed;

	if (id)
		s->id = *id;
	s->changed_ms = now_ms;
	s->recheck_ms = 0;
	s->defer_ms = 0;
	s->backoffs = 0;
	s->opens = 0;
	s->closes = 0;
	s->history = history;
	changed = settle_set(s, SETTLE_SETTLING, why, name);
	return changed;
}

/* The content or identity changed: settling starts over; after a report the
 * open history is meaningless (our own reads were not counted). */
static bool settle_changed(struct settle *s, int64_t now_ms, const char *why, const char *name)
{
	s->changed_ms = now_ms;
	s->recheck_ms = 0;
	s->defer_ms = 0;
	s->backoffs = 0;
	if (s->state == SETTLE_FINISHED || s->state == SETTLE_DONE) {
		s->history = 0;
		return settle_set(s, SETTLE_SETTLING, why, name);
	}
	return false;
}

bool settle_step(struct settle *s, enum settle_event ev, const struct file_id *id, int64_t now_ms,
		 int settle_ms, const char *name)
{
	switch (ev) {
	case SETTLE_EV_FOUND: return settle_restart(s, id, now_ms, false, "found by a scan", name);
	case SETTLE_EV_CREATED: return settle_restart(s, id, now_ms, true, "created", name);
	case SETTLE_EV_STAT:
		if (s->state == SETTLE_SEEN)
			return settle_restart(s, id, now_ms, false, "first stat", name);
		if (file_id_equal(&s->id, id))
			return false;
		s->id = *id;
		return settle_changed(s, now_ms, "identity changed", name);
	case SETTLE_EV_WRITE:
		if (s->state == SETTLE_SEEN)
			return false;
		return settle_changed(s, now_ms, "written", name);
	case SETTLE_EV_OPEN:
		if (s->state != SETTLE_SETTLING || !s->history)
			return false;
		if (s->opens == UINT16_MAX)
			s->history = 0; /* cannot count further: fall back to probing */
		else
			s->opens++;
		return false;
	case SETTLE_EV_CLOSE:
		if (s->state != SETTLE_SETTLING)
			return false;
		if (s->history && s->closes < s->opens)
			s->closes++;
		s->recheck_ms = 0; /* a writer may be gone: look now */
		return false;
	case SETTLE_EV_LOST: s->history = 0; return false;
	case SETTLE_EV_BLOCKED:
		if (s->state == SETTLE_SETTLING)
			s->recheck_ms = now_ms + (settle_ms > 0 ? settle_ms : 1);
		return false;
	case SETTLE_EV_REPORTED:
		if (s->state != SETTLE_SETTLING)
			return false;
		return settle_set(s, SETTLE_FINISHED, "reported", name);
	case SETTLE_EV_DONE:
		/* A file that changed after the report is settling again and must be
		 * reported again: done only confirms a file still FINISHED. */
		if (s->state != SETTLE_FINISHED)
			return false;
		return settle_set(s, SETTLE_DONE, "catalogued", name);
	case SETTLE_EV_RETRY: {
		/* Same version: its backoff count goes on (a change resets it). */
		uint8_t backoffs = s->backoffs;
		bool changed;

		if (s->state == SETTLE_SEEN)
			return false;
		changed = settle_restart(s, NULL, now_ms, false, "retry", name);
		s->backoffs = backoffs;
		return changed;
	}
	}
	return false;
}

void settle_defer(struct settle *s, int64_t until_ms)
{
	if (s->state == SETTLE_SETTLING && until_ms > s->defer_ms)
		s->defer_ms = until_ms;
}

int64_t settle_due(const struct settle *s, int settle_ms)
{
	int64_t due = s->changed_ms + settle_ms;

	if (s->recheck_ms > due)
		due = s->recheck_ms;
	return s->defer_ms > due ? s->defer_ms : due;
}

enum settle_verdict settle_check(const struct settle *s, int64_t now_ms, int settle_ms)
{
	if (s->state == SETTLE_SEEN)
		return SETTLE_WAIT;
	if (s->state != SETTLE_SETTLING)
		return SETTLE_IDLE;
	if (now_ms < settle_due(s, settle_ms))
		return SETTLE_WAIT;
	if (!s->history)
		return SETTLE_NEED_PROBE;
	if (s->opens > s->closes)
		return SETTLE_OPEN;
	return SETTLE_READY;
}

int64_t settle_age_ms(const struct file_id *id, int64_t now_ns)
{
	int64_t last = id->mtime_ns > id->ctime_ns ? id->mtime_ns : id->ctime_ns;

	return (now_ns - last) / 1000000;
}
