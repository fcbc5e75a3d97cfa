/*
 * glibc's malloc tuning, used by the daemon to keep its resident set small
 * (issue 8's memory figure). mallopt() and malloc_trim() are glibc's: musl
 * and the BSD libcs have neither, and their allocators return memory and
 * keep no per-thread arenas on their own, so there both calls do nothing.
 */
#ifndef MAM_HEAP_H
#define MAM_HEAP_H

#include <stdlib.h> /* defines __GLIBC__ on glibc */

#if defined(__GLIBC__) && !defined(__UCLIBC__) /* uClibc defines __GLIBC__ too */
#include <malloc.h>

/* Give freed pages at the top of the heap and in its holes back to the kernel. */
static inline void heap_trim(void)
{
	malloc_trim(0);
}

/* One arena for every thread, unless MALLOC_ARENA_MAX says otherwise (main.c says why). */
static inline void heap_one_arena(void)
{
	if (!getenv("MALLOC_ARENA_MAX"))
		mallopt(M_ARENA_MAX, 1);
}
#else
static inline void heap_trim(void) {}

static inline void heap_one_arena(void) {}
#endif

#endif
