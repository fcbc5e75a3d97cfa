/*
 * slab: see slab.h.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "slab.h"

/* Each chunk starts with the link to the previous one, in 16 bytes; blocks
 * are multiples of 8 bytes after it, so 8-byte aligned. */
#define CHUNK_HEAD 16

#ifndef SLAB_PLAIN
static size_t class_of(size_t size)
{
	return (size + 7) / 8;
}
#endif

#ifdef SLAB_PLAIN
void *slab_alloc(struct slab *s, size_t size)
{
	(void)s;
	return calloc(1, size ? size : 1);
}

void slab_free(struct slab *s, void *p, size_t size)
{
	(void)s;
	(void)size;
	free(p);
}
#else
void *slab_alloc(struct slab *s, size_t size)
{
	size_t c = class_of(size), bytes = c * 8;
	void *p;

	if (size == 0 || size > SLAB_MAX)
		return calloc(1, size ? size : 1);
	p = s->free[c];
	if (p) {
		memcpy(&s->free[c], p, sizeof(void *));
		memset(p, 0, bytes);
		return p;
	}
	if (s->left < bytes) {
		char *chunk = malloc(SLAB_CHUNK);

		if (!chunk)
			return NULL; /* the old chunk stays as it was */
		/* What is left of the old chunk (less than one block of this size)
		 * goes to the free list of the class it fits, if any. */
		if (s->left >= 8) {
			size_t lc = s->left / 8;

			memcpy(s->cur, &s->free[lc], sizeof(void *));
			s->free[lc] = s->cur;
		}
		memcpy(chunk, &s->chunks, sizeof(void *));
		s->chunks = chunk;
		s->nchunks++;
		s->cur = chunk + CHUNK_HEAD;
		s->left = SLAB_CHUNK - CHUNK_HEAD;
	}
	p = s->cur;
	s->cur += bytes;
	s->left -= bytes;
	memset(p, 0, bytes);
	return p;
}

void slab_free(struct slab *s, void *p, size_t size)
{
	size_t c = class_of(size);

	if (!p)
		return;
	if (size == 0 || size > SLAB_MAX) {
		free(p);
		return;
	}
	memcpy(p, &s->free[c], sizeof(void *));
	s->free[c] = p;
}
#endif

void slab_destroy(struct slab *s)
{
	void *chunk = s->chunks, *next;

	while (chunk) {
		memcpy(&next, chunk, sizeof next);
		free(chunk);
		chunk = next;
	}
	memset(s, 0, sizeof *s);
}
