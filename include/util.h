/* Small helpers shared by every module. */
#ifndef MAM_UTIL_H
#define MAM_UTIL_H

#include <stddef.h>

/* The struct that embeds member (libuv handles are embedded by value). */
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* The value of one hex digit (either case), or -1. */
static inline int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

#endif
