/*
 * slab: small fixed-size blocks carved from 64 KiB chunks, one free list per
 * size class (multiples of 8 bytes up to SLAB_MAX).
 *
 * Why: the watcher keeps one small record per tracked file, often 100,000 of
 * them. malloc adds an 8-byte header and rounds to 16 bytes, about 9 bytes
 * a record; here a record costs its size rounded up to 8. A freed block
 * goes back to its class's list and is reused by the next record of that
 * class; chunks are released only by slab_destroy, so a table holds at most
 * what its largest population needed. Sizes above SLAB_MAX are plain
 * malloc. Under AddressSanitizer every block is a plain malloc too, so
 * misuse is still caught.
 *
 * Not thread-safe: one owner (the watcher, on the loop thread).
 */
#ifndef MAM_SLAB_H
#define MAM_SLAB_H

#include <stddef.h>

/* Under AddressSanitizer (gcc or clang) every block is its own malloc. */
#if defined(__SANITIZE_ADDRESS__)
#define SLAB_PLAIN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SLAB_PLAIN 1
#endif
#endif

#define SLAB_MAX   256
#define SLAB_CHUNK (64 * 1024)

struct slab {
	void *free[SLAB_MAX / 8 + 1]; /* per class: freed blocks, linked through their first word */
	char *cur;		      /* the chunk being carved */
	size_t left;		      /* bytes left in it */
	void *chunks;		      /* every chunk, linked through their first word */
	size_t nchunks;
};

/* A zeroed block of size bytes (> 0), 8-byte aligned; NULL when out of memory. */
void *slab_alloc(struct slab *s, size_t size);
/* Give back p, allocated with the same size. NULL is ignored. */
void slab_free(struct slab *s, void *p, size_t size);
/* Release every chunk; the blocks still out become invalid. s is zeroed. */
void slab_destroy(struct slab *s);

#endif
