/*
 * hash_read: the SHA-256 (and, on request, the content type) of an open
 * file, read to its end. Used by the hasher's threadpool jobs and by post.c.
 *
 * Speed: a warm file is hashed at the CPU's SHA-256 speed, and the kernel's
 * copy out of the page cache costs another 12% on top. Files from 4 MiB on
 * get a reader thread of their own that copies the next buffers while the
 * job's thread hashes (hash_loop), so the copy runs on a core that would
 * otherwise idle; when every core hashes, plain reads cost less CPU. Files
 * are read, never mapped: a file truncated under a mapping would kill the
 * daemon with SIGBUS.
 *
 * Every chunk hashed is exactly what one read() returned, in file order, so
 * the digest covers exactly the bytes counted; whether the file changed
 * meanwhile is the caller's question (the hasher compares identities).
 */
#include "hash_read.h"
#include "hasher.h"
#include "mime.h"
#include "sha256.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* libmagic looks at the first 64 KiB. */
#define MAGIC_BYTES (64 * 1024)
/* From this size on a file may get a reader thread (hash_loop). */
#define PIPE_MIN_BYTES (4 * 1024 * 1024)

static int read_retry(int fd, unsigned char *buf, size_t len, ssize_t *out)
{
	ssize_t n;

	do
		n = read(fd, buf, len);
	while (n < 0 && errno == EINTR);
	*out = n;
	return n < 0 ? -errno : 0;
}

/*
 * The hash state of one file, fed chunk by chunk in file order by either
 * read loop. When mime is given, the first chunk (end of file included)
 * also goes to libmagic.
 */
struct digest {
	struct sha256 sha;
	uint64_t total;
	bool first;
	char *mime;
	size_t mimesz;
};

/* Returns 1 at end of file (n == 0), else 0 or -errno (n < 0 is -errno). */
static int digest_chunk(struct digest *d, const unsigned char *p, ssize_t n)
{
	if (n < 0)
		return (int)n;
	if (d->mime && d->first)
		mime_detect_buffer(p, (size_t)n < MAGIC_BYTES ? (size_t)n : MAGIC_BYTES, d->mime,
				   d->mimesz);
	d->first = false;
	if (n == 0)
		return 1;
	if (sha256_update(&d->sha, p, (size_t)n) != 0)
		return -EIO;
	d->total += (uint64_t)n;
	return 0;
}

/* The plain loop: read a buffer, hash it, repeat. */
static int hash_serial(struct digest *d, int fd, unsigned char *buf, size_t bufsz)
{
	ssize_t n;
	int ret;

	do {
		ret = read_retry(fd, buf, bufsz, &n);
		if (ret == 0)
			ret = digest_chunk(d, buf, n);
	} while (ret == 0);
	return ret < 0 ? ret : 0;
}

/*
 * The pipelined loop. Reading a page-cached file is a copy in the kernel
 * (about 0.08 s of CPU per GiB here, 12% of the hash's own 0.6 s), and in
 * the plain loop the hash waits for it. Here a reader thread of the job's
 * own fills a ring of PIPE_SLOTS buffers while the calling thread hashes
 * the previous ones, so with a free core the file is hashed at the hash's
 * own speed. A slot holds what one read() returned: its length, 0 at end of
 * file, or -errno; the hasher consumes the slots in order, so the digest is
 * that of exactly the bytes read, in order, whatever the file does
 * meanwhile (the caller compares identities after). The reader sleeps on a
 * full ring until PIPE_REFILL slots are free, which halves the wake-ups; the
 * hasher sleeps only when the ring is empty.
 *
 * The reader only pays when a core would otherwise idle: copying on one
 * core what another core hashes costs more CPU than copying into a buffer
 * the hashing core has in its own cache (about 0.19 s against 0.08 s per
 * GiB). So in HASH_IO_AUTO the loop keeps a reader only while fewer threads
 * hash big files than there are CPUs, and looks again every PIPE_RECHECK
 * slots: two files on two cores are hashed with plain reads, and the one
 * still running when the other is done gets its reader back.
 */
#define PIPE_SLOTS   4
#define PIPE_REFILL  2
#define PIPE_RECHECK 16

struct pipe_ring {
	pthread_mutex_t mu;
	pthread_cond_t can_read; /* the reader waits for free slots */
	pthread_cond_t can_hash; /* the hasher waits for a filled slot */
	int fd;
	unsigned char *buf; /* PIPE_SLOTS * slot bytes */
	size_t slot;
	ssize_t len[PIPE_SLOTS];      /* bytes read; 0 end of file; < 0 -errno */
	unsigned long filled, hashed; /* slots filled and hashed so far */
	bool stop;		      /* the reader must exit */
	bool reader_waits, hasher_waits;
	pthread_t thr;
};

/* Threads in hash_loop now, over all hashers and hash_fd_sha256 callers. */
static atomic_uint loops_running;
static unsigned online_cpus;
static pthread_once_t cpus_once = PTHREAD_ONCE_INIT;

static void count_cpus(void)
{
	cpu_set_t set;
	long n;

	/* The CPUs this process may run on (taskset, cpusets), else all online. */
	if (sched_getaffinity(0, sizeof(set), &set) == 0)
		n = CPU_COUNT(&set);
	else
		n = sysconf(_SC_NPROCESSORS_ONLN);
	online_cpus = n > 0 ? (unsigned)n : 1;
}

unsigned hash_cpus(void)
{
	pthread_once(&cpus_once, count_cpus);
	return online_cpus;
}

static bool spare_cpu(void)
{
	return atomic_load_explicit(&loops_running, memory_order_relaxed) < hash_cpus();
}

static void *pipe_reader(void *arg)
{
	struct pipe_ring *p = arg;
	unsigned char *dst;
	unsigned long i;
	ssize_t n;
	int rc;

	for (;;) {
		pthread_mutex_lock(&p->mu);
		if (p->filled - p->hashed == PIPE_SLOTS) {
			p->reader_waits = true;
			while (!p->stop && PIPE_SLOTS - (p->filled - p->hashed) < PIPE_REFILL)
				pthread_cond_wait(&p->can_read, &p->mu);
			p->reader_waits = false;
		}
		if (p->stop) {
			pthread_mutex_unlock(&p->mu);
			return NULL;
		}
		i = p->filled % PIPE_SLOTS;
		pthread_mutex_unlock(&p->mu);
		/* The slot is ours until filled is bumped: no lock held while copying. */
		dst = p->buf + i * p->slot;
		rc = read_retry(p->fd, dst, p->slot, &n);
		pthread_mutex_lock(&p->mu);
		p->len[i] = rc != 0 ? rc : n;
		p->filled++;
		if (p->hasher_waits)
			pthread_cond_signal(&p->can_hash);
		pthread_mutex_unlock(&p->mu);
		if (rc != 0 || n == 0)
			return NULL;
	}
}

/* Starts a reader on an empty ring, with every signal blocked (signals are
 * the loop's). Returns 0 or -errno (no thread: the caller reads itself). */
static int pipe_start(struct pipe_ring *p)
{
	sigset_t all, old;
	int rc;

	p->filled = p->hashed = 0;
	p->stop = false;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&p->thr, NULL, pipe_reader, p);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return -rc;
}

/* Stops the reader; the slots it filled stay to be hashed. */
static void pipe_stop(struct pipe_ring *p)
{
	pthread_mutex_lock(&p->mu);
	p->stop = true;
	pthread_cond_signal(&p->can_read);
	pthread_mutex_unlock(&p->mu);
	pthread_join(p->thr, NULL);
}

/* Hashes the next filled slot (waiting for the reader unless told not to:
 * then returns 2 when none is left). Else as digest_chunk. */
static int pipe_consume(struct pipe_ring *p, struct digest *d, bool wait)
{
	unsigned long i;
	ssize_t n;
	int ret;

	pthread_mutex_lock(&p->mu);
	if (p->filled == p->hashed) {
		if (!wait) {
			pthread_mutex_unlock(&p->mu);
			return 2;
		}
		p->hasher_waits = true;
		while (p->filled == p->hashed)
			pthread_cond_wait(&p->can_hash, &p->mu);
		p->hasher_waits = false;
	}
	i = p->hashed % PIPE_SLOTS;
	n = p->len[i];
	pthread_mutex_unlock(&p->mu);
	ret = digest_chunk(d, p->buf + i * p->slot, n);
	pthread_mutex_lock(&p->mu);
	p->hashed++;
	if (p->reader_waits && PIPE_SLOTS - (p->filled - p->hashed) >= PIPE_REFILL)
		pthread_cond_signal(&p->can_read);
	pthread_mutex_unlock(&p->mu);
	return ret;
}

/*
 * The loop for big files: slots from the reader while it runs, plain reads
 * of the whole buffer while it does not. The reader reads at the file
 * offset, so after it is stopped and its slots are hashed, plain reads go
 * on exactly where it left off.
 */
static int hash_loop(struct digest *d, int fd, unsigned char *buf, size_t slot, enum hash_io io)
{
	struct pipe_ring p;
	bool can_pipe, running = false;
	unsigned since = PIPE_RECHECK; /* slots since the last look */
	ssize_t n;
	int ret = 0;

	memset(&p, 0, sizeof(p));
	p.fd = fd;
	p.buf = buf;
	p.slot = slot;
	atomic_fetch_add(&loops_running, 1);
	can_pipe = pthread_mutex_init(&p.mu, NULL) == 0;
	if (can_pipe && pthread_cond_init(&p.can_read, NULL) != 0) {
		pthread_mutex_destroy(&p.mu);
		can_pipe = false;
	}
	if (can_pipe && pthread_cond_init(&p.can_hash, NULL) != 0) {
		pthread_cond_destroy(&p.can_read);
		pthread_mutex_destroy(&p.mu);
		can_pipe = false;
	}
	while (ret == 0) {
		if (can_pipe && since >= PIPE_RECHECK) {
			bool want = io == HASH_IO_PIPELINED || (io == HASH_IO_AUTO && spare_cpu());

			if (want && !running) {
				running = pipe_start(&p) == 0;
			} else if (!want && running) {
				pipe_stop(&p);
				running = false;
				while (ret == 0)
					ret = pipe_consume(&p, d, false);
				if (ret == 2)
					ret = 0;
				else
					break; /* the reader had reached the end, or an error */
			}
			since = 0;
		}
		if (running) {
			ret = pipe_consume(&p, d, true);
		} else {
			/* One slot at a time: the copy stays in this core's cache. */
			ret = read_retry(fd, buf, slot, &n);
			if (ret == 0)
				ret = digest_chunk(d, buf, n);
		}
		since++;
	}
	if (running)
		pipe_stop(&p);
	if (can_pipe) {
		pthread_cond_destroy(&p.can_hash);
		pthread_cond_destroy(&p.can_read);
		pthread_mutex_destroy(&p.mu);
	}
	atomic_fetch_sub(&loops_running, 1);
	return ret < 0 ? ret : 0;
}

/* The slot size for a read size: a quarter each, and at least the bytes
 * libmagic looks at, so the first slot is all it needs. */
static size_t pipe_slot_size(size_t read_size)
{
	size_t slot = read_size / PIPE_SLOTS;

	return slot < MAGIC_BYTES ? MAGIC_BYTES : slot;
}

/* Which loop for a file: a thread costs tens of microseconds, the copy it
 * can hide about 0.08 ms per MiB. */
static bool want_loop(enum hash_io io, const struct stat *st)
{
	if (io == HASH_IO_AUTO && st)
		return S_ISREG(st->st_mode) && st->st_size >= PIPE_MIN_BYTES;
	return io == HASH_IO_PIPELINED;
}

/*
 * The plain loop's buffer: read_size, or for a file known to be smaller the
 * file's size and one byte (its end of file is then the second read), at
 * least the bytes libmagic looks at. Why: a burst of small files each took
 * a read_size malloc (2 MiB by default), which glibc serves by growing the
 * heap and gives back by trimming it, so every file cost a brk() pair and a
 * fresh page fault; 64 KiB is reused from the heap as it is.
 */
static size_t small_buf_size(size_t read_size, const struct stat *st)
{
	size_t want;

	if (!st || !S_ISREG(st->st_mode) || st->st_size < 0 || (uint64_t)st->st_size >= read_size)
		return read_size;
	want = (size_t)st->st_size + 1;
	if (want < MAGIC_BYTES)
		want = MAGIC_BYTES;
	return want < read_size ? want : read_size;
}

/* Hash fd from its current offset to its end into hex with hash_loop (big
 * files: buf holds PIPE_SLOTS slots) or hash_serial (buf holds bufsz). */
static int hash_fd_buf(int fd, unsigned char *buf, size_t bufsz, size_t slot, bool big,
		       enum hash_io io, char hex[65], uint64_t *bytes, char *mime, size_t mimesz)
{
	struct digest d = {.first = true, .mime = mime, .mimesz = mimesz};
	unsigned char md[SHA256_LEN];
	int ret;

	if (sha256_init(&d.sha) != 0)
		return -ENOMEM;
	if (big)
		ret = hash_loop(&d, fd, buf, slot, io);
	else
		ret = hash_serial(&d, fd, buf, bufsz);
	if (ret != 0) {
		sha256_drop(&d.sha);
		return ret;
	}
	if (sha256_final(&d.sha, md) != 0)
		return -EIO;
	sha256_hex(md, hex);
	if (bytes)
		*bytes = d.total;
	return 0;
}

int hash_fd_detect(int fd, const struct stat *st, size_t read_size, enum hash_io io, char hex[65],
		   uint64_t *bytes, char *mime, size_t mimesz)
{
	unsigned char *buf;
	size_t bufsz, slot;
	bool big;
	int ret;

	if (read_size == 0)
		read_size = HASH_DEFAULT_READ_SIZE;
	big = want_loop(io, st);
	slot = pipe_slot_size(read_size);
	bufsz = big ? PIPE_SLOTS * slot : small_buf_size(read_size, st);
	buf = malloc(bufsz);
	if (!buf)
		return -ENOMEM;
	ret = hash_fd_buf(fd, buf, bufsz, slot, big, io, hex, bytes, mime, mimesz);
	free(buf);
	return ret;
}

int hash_fd_sha256_io(int fd, size_t read_size, enum hash_io io, char hex[65], uint64_t *bytes)
{
	struct stat st;

	if (io == HASH_IO_AUTO && fstat(fd, &st) != 0)
		return -errno;
	return hash_fd_detect(fd, io == HASH_IO_AUTO ? &st : NULL, read_size, io, hex, bytes, NULL,
			      0);
}

int hash_fd_sha256(int fd, size_t read_size, char hex[65], uint64_t *bytes)
{
	return hash_fd_sha256_io(fd, read_size, HASH_IO_AUTO, hex, bytes);
}
