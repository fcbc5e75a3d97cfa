/*
 * hash_read: SHA-256 of an open file descriptor, read serially or with a
 * reader thread (see hash_read.c). The public helpers hash_fd_sha256 and
 * hash_fd_sha256_io are declared in hasher.h.
 */
#ifndef MAM_HASH_READ_H
#define MAM_HASH_READ_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "hasher.h"

#define HASH_DEFAULT_READ_SIZE (2 * 1024 * 1024)
/* A smaller hash_read_size acts as this: libmagic wants the first 64 KiB in
 * one buffer, and smaller reads cost. The configuration warns about it. */
#define HASH_MIN_READ_SIZE (64 * 1024)

/* Hash fd from its current offset to its end into hex (and *bytes). st is
 * the open file's fstat (may be NULL unless io is HASH_IO_AUTO); read_size 0
 * means the default. When mime is given, libmagic's type of the first bytes
 * goes there. 0, -ENOMEM, or the -errno of a failed read. */
int hash_fd_detect(int fd, const struct stat *st, size_t read_size, enum hash_io io, char hex[65],
		   uint64_t *bytes, char *mime, size_t mimesz);

/* The CPUs this process may run on (its affinity mask), at least 1. */
unsigned hash_cpus(void);

#endif
