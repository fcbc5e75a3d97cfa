/*
 * The identity of a file as the pipeline sees it: what must stay the same
 * between "finished" and "catalogued" for the catalogue to describe the bytes
 * that were hashed. Shared by the watcher, the hasher and the catalogue.
 */
#ifndef MAM_FILEID_H
#define MAM_FILEID_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

struct file_id {
	uint64_t dev;
	uint64_t ino;
	int64_t size;
	int64_t mtime_ns;
	int64_t ctime_ns;
};

static inline void file_id_from_stat(struct file_id *id, const struct stat *st)
{
	id->dev = (uint64_t)st->st_dev;
	id->ino = (uint64_t)st->st_ino;
	id->size = (int64_t)st->st_size;
	id->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec;
	id->ctime_ns = (int64_t)st->st_ctim.tv_sec * 1000000000LL + st->st_ctim.tv_nsec;
}

static inline bool file_id_equal(const struct file_id *a, const struct file_id *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       a->mtime_ns == b->mtime_ns && a->ctime_ns == b->ctime_ns;
}

#endif
