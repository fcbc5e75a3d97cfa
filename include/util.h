/* Small helpers shared by every module. */
#ifndef MAM_UTIL_H
#define MAM_UTIL_H

#include <stddef.h>

/* The struct that embeds member (libuv handles are embedded by value). */
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif
