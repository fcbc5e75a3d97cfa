/*
 * The watcher's table of tracked files.
 *
 * Every tracked regular file is one struct wentry in a hash table keyed by
 * (folder, relative path): no handle, no timer, no stat buffer per file. A
 * file that is settling or waiting for the owner also has a struct wbusy
 * with its settle state machine (settle.c); a done file keeps only a 64-bit
 * fingerprint of its identity. Entries live in a slab (slab.h): a file at
 * rest costs 23 bytes plus its path, rounded up to 8, plus about 4 bytes of
 * bucket (44 bytes for the memory benchmark's "d042/f00123.bin").
 */
#include <assert.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "watch_int.h"

static uint32_t entry_hash(uint16_t folder, const char *relpath)
{
	uint32_t h = 2166136261u ^ folder;

	for (; *relpath; relpath++)
		h = (h ^ (unsigned char)*relpath) * 16777619u;
	return h;
}

static int table_grow(struct watcher *w)
{
	size_t n = w->nbuckets ? w->nbuckets * 2 : 1024, i;
	struct wentry **nb = calloc(n, sizeof *nb);

	if (!nb)
		return -ENOMEM;
	/* The hash is recomputed rather than stored: 4 bytes a file for a
	 * rehash that happens log2(files) times. */
	for (i = 0; i < w->nbuckets; i++) {
		struct wentry *e = w->buckets[i], *next;

		for (; e; e = next) {
			uint32_t h = entry_hash(e->folder, e->relpath);

			next = e->hnext;
			e->hnext = nb[h & (n - 1)];
			nb[h & (n - 1)] = e;
		}
	}
	free(w->buckets);
	w->buckets = nb;
	w->nbuckets = n;
	return 0;
}

struct wentry *watch_entry_find(struct watcher *w, uint16_t folder, const char *relpath)
{
	struct wentry *e;

	if (!w->nbuckets)
		return NULL;
	for (e = w->buckets[entry_hash(folder, relpath) & (w->nbuckets - 1)]; e; e = e->hnext)
		if (e->folder == folder && strcmp(e->relpath, relpath) == 0)
			return e;
	return NULL;
}

static struct wbusy *busy_new(struct wentry *e)
{
	struct wbusy *b = calloc(1, sizeof *b);

	if (b) {
		b->e = e;
		link_init(&b->link);
	}
	return b;
}

/* The bytes an entry for relpath takes (its slab class). */
static size_t entry_size(const char *relpath)
{
	size_t sz = offsetof(struct wentry, relpath) + strlen(relpath) + 1;

	return sz > sizeof(struct wentry) ? sz : sizeof(struct wentry);
}

struct wentry *watch_entry_add(struct watcher *w, uint16_t folder, const char *relpath)
{
	size_t len = strlen(relpath), sz = entry_size(relpath);
	struct wentry *e;
	uint32_t h;

	/* Two entries a bucket on average before it doubles: chains stay short
	 * (a strcmp rarely goes past the first byte that differs) and the
	 * bucket array costs 4 bytes a file rather than 8. */
	if (w->nentries >= 2 * w->nbuckets && table_grow(w) < 0)
		return NULL;
	e = slab_alloc(&w->entries, sz);
	if (!e)
		return NULL;
	e->u.busy = busy_new(e);
	if (!e->u.busy) {
		slab_free(&w->entries, e, sz);
		return NULL;
	}
	memcpy(e->relpath, relpath, len + 1);
	e->folder = folder;
	e->gen = w->gen;
	h = entry_hash(folder, relpath);
	e->hnext = w->buckets[h & (w->nbuckets - 1)];
	w->buckets[h & (w->nbuckets - 1)] = e;
	w->nentries++;
	w->folders[folder].seen++;
	return e;
}

static void entry_unhash(struct watcher *w, struct wentry *e)
{
	struct wentry **pp = &w->buckets[entry_hash(e->folder, e->relpath) & (w->nbuckets - 1)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	w->nentries--;
	if (!e->done && link_linked(&e->u.busy->link)) {
		link_del(&e->u.busy->link);
		w->nsettling--;
	}
}

enum settle_state watch_entry_state(const struct wentry *e)
{
	return e->done ? SETTLE_DONE : (enum settle_state)e->u.busy->st.state;
}

void watch_entry_remove(struct watcher *w, struct wentry *e, const char *why)
{
	char esc[LOG_ESC_MAX];

	log_debug("watcher", "\"%s\": forgotten (%s, was %s)", watch_esc(e->relpath, esc), why,
		  settle_state_name(watch_entry_state(e)));
	entry_unhash(w, e);
	if (!e->done)
		free(e->u.busy);
	slab_free(&w->entries, e, entry_size(e->relpath));
}

/*
 * 64 bits of the identity a done file had (splitmix64 over its words). The
 * device is left out: a remounted share renumbers it (remap_dev) and a file
 * cannot move to another device keeping inode, size and both times. Equal
 * fingerprints for a changed file would need a 64-bit collision.
 */
uint64_t watch_fp(const struct file_id *id)
{
	uint64_t v[4] = {id->ino, (uint64_t)id->size, (uint64_t)id->mtime_ns,
			 (uint64_t)id->ctime_ns};
	uint64_t h = 0x6a09e667f3bcc908ULL;

	for (int i = 0; i < 4; i++) {
		uint64_t z = h ^ v[i];

		z += 0x9e3779b97f4a7c15ULL;
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
		h = z ^ (z >> 31);
	}
	return h;
}

/*
 * A done entry that an event may change gets its state machine back, as it
 * was: DONE with the identity it was catalogued with. Only the fingerprint
 * was kept, so the identity is the file's current one when that matches
 * (cur, or an lstat when the caller has none) and otherwise one no stat
 * can equal, so the next STAT sees the change.
 */
static struct wbusy *entry_wake(struct watcher *w, struct wentry *e, const struct file_id *cur)
{
	struct wbusy *b = busy_new(e);
	struct file_id now_id;
	struct stat st;

	if (!b)
		return NULL;
	b->st.state = SETTLE_DONE;
	if (!cur) {
		/* Its own buffer, not w->abuf: a caller may be holding that. */
		char abs[WATCH_PATH_MAX];

		if (watch_join(abs, sizeof abs, w->folders[e->folder].cfg->path, e->relpath) == 0 &&
		    fstatat(AT_FDCWD, abs, &st, AT_SYMLINK_NOFOLLOW) == 0) {
			file_id_from_stat(&now_id, &st);
			cur = &now_id;
		}
	}
	if (cur && watch_fp(cur) == e->u.fp)
		b->st.id = *cur;
	e->done = 0;
	e->u.busy = b;
	return b;
}

void watch_entry_step(struct watcher *w, struct wentry *e, enum settle_event ev,
		      const struct file_id *cur, int64_t now_ms)
{
	const struct wfolder *f = &w->folders[e->folder];
	char esc[LOG_ESC_MAX];

	if (e->done) {
		switch (ev) {
		case SETTLE_EV_STAT:
			assert(cur); /* STAT always carries the identity */
			if (watch_fp(cur) == e->u.fp)
				return; /* what settle_step would find: unchanged */
			break;
		case SETTLE_EV_FOUND:
		case SETTLE_EV_CREATED:
		case SETTLE_EV_WRITE:
		case SETTLE_EV_RETRY: break;
		default: return; /* opens, closes, probes: nothing for a done file */
		}
		if (!entry_wake(w, e,
				ev == SETTLE_EV_WRITE || ev == SETTLE_EV_RETRY ? NULL : cur)) {
			log_error("watcher",
				  "out of memory: change to \"%s\" left for the next scan",
				  watch_esc(e->relpath, esc));
			return;
		}
	}
	settle_step(&e->u.busy->st, ev, cur, now_ms, f->cfg->settle_ms, e->relpath);
}

void watch_entry_sync(struct watcher *w, struct wentry *e)
{
	struct wbusy *b = e->done ? NULL : e->u.busy;

	if (!b)
		return;
	if (b->st.state == SETTLE_SETTLING) {
		if (!link_linked(&b->link)) {
			link_add_tail(&w->settling, &b->link);
			w->nsettling++;
		}
		watch_arm(w, settle_due(&b->st, w->folders[e->folder].cfg->settle_ms));
		return;
	}
	if (link_linked(&b->link)) {
		link_del(&b->link);
		w->nsettling--;
	}
	if (b->st.state == SETTLE_DONE) {
		e->u.fp = watch_fp(&b->st.id);
		e->done = 1;
		free(b);
	}
}

/* Forget every entry of folder f below prefix ("" or NULL: all of them). */
void watch_entries_forget(struct watcher *w, struct wfolder *f, const char *prefix)
{
	size_t plen = prefix ? strlen(prefix) : 0, i;

	for (i = 0; i < w->nbuckets; i++) {
		struct wentry *e = w->buckets[i], *next;

		for (; e; e = next) {
			next = e->hnext;
			if (e->folder != f->idx)
				continue;
			if (plen &&
			    (strncmp(e->relpath, prefix, plen) != 0 || e->relpath[plen] != '/'))
				continue;
			watch_entry_remove(w, e, "directory gone");
		}
	}
}

/* Free every entry and the table itself (shutdown). */
void watch_table_free(struct watcher *w)
{
	size_t i;

	for (i = 0; i < w->nbuckets; i++) {
		struct wentry *e = w->buckets[i], *next;

		for (; e; e = next) {
			next = e->hnext;
			if (!e->done)
				free(e->u.busy);
			slab_free(&w->entries, e, entry_size(e->relpath));
		}
	}
	slab_destroy(&w->entries);
	free(w->buckets);
	w->buckets = NULL;
	w->nbuckets = w->nentries = 0;
}
