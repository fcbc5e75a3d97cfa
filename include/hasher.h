/*
 * Hasher: SHA-256 of finished files in the libuv threadpool.
 *
 * At most max_inflight files are hashed at once (default threadpool size - 1)
 * so directory scans never queue behind long hashes; the rest wait on a FIFO
 * here. The worker thread opens the file beneath its drop folder (openat2
 * RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, O_NOFOLLOW|O_NONBLOCK), checks it is a
 * regular file with the expected identity, hashes it with large reads (from
 * 4 MiB on with a reader thread copying ahead of the hash while a CPU is
 * free for it), detects
 * its content type with libmagic, and compares the identity again afterwards.
 */
#ifndef MAM_HASHER_H
#define MAM_HASHER_H

#include <uv.h>

#include "fileid.h"

struct hasher;

struct hash_result {
	int status;	     /* 0; -ESTALE changed (settle again); -ENOENT vanished; other -errno */
	char error[256];     /* human text when status != 0, names the path */
	char sha256[65];     /* lowercase hex */
	char mime[100];	     /* libmagic MIME type, e.g. "video/mp4" */
	char asset_type[16]; /* video | audio | image | document */
	struct file_id id;   /* identity after hashing */
	uint64_t bytes;	     /* bytes hashed */
	double seconds;	     /* wall time spent hashing */
};

typedef void (*hasher_cb)(const struct hash_result *res, void *arg);

int hasher_create(uv_loop_t *loop, int max_inflight, size_t read_size, struct hasher **out)
	__attribute__((warn_unused_result));
/* Hash root/relpath; expect is the identity the watcher saw (NULL: no check
 * before). cb runs on the loop thread. Returns 0 or -errno (not queued). */
int hasher_submit(struct hasher *h, const char *root, const char *relpath,
		  const struct file_id *expect, hasher_cb cb, void *arg)
	__attribute__((warn_unused_result));
unsigned hasher_pending(const struct hasher *h); /* queued + in flight */
/* Stop accepting work; cb runs when nothing is in flight any more (queued
 * jobs are dropped and their callbacks run with -ECANCELED). */
void hasher_close(struct hasher *h, void (*cb)(void *arg), void *arg);

/* Synchronous helpers, also used by tests and by post.c. */
int hash_fd_sha256(int fd, size_t read_size, char hex[65], uint64_t *bytes);
/* How hash_fd_sha256_io reads: SERIAL reads read_size bytes and hashes
 * them in turn; PIPELINED has a reader thread fill four slots of
 * read_size / 4 bytes (at least 64 KiB each) while the caller hashes; AUTO
 * (what hash_fd_sha256 and the hasher do) pipelines regular files from
 * 4 MiB on while fewer threads hash such files than there are CPUs. */
enum hash_io { HASH_IO_AUTO, HASH_IO_SERIAL, HASH_IO_PIPELINED };
int hash_fd_sha256_io(int fd, size_t read_size, enum hash_io io, char hex[65], uint64_t *bytes);
/* asset_type from MIME type, falling back on the file name's extension. */
const char *asset_type_guess(const char *mime, const char *name);

#endif
