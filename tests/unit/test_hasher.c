/*
 * Hasher tests on real files in a temporary directory and a real uv_loop:
 * known SHA-256 vectors, a 50 MB file against `openssl dgst`, identity
 * checks (changed, grown while hashed, vanished), the safety rules (symlinks
 * in or out of the path, "..", FIFOs, unreadable files, also with the
 * pre-openat2 fallback), content types from real content, and the in-flight
 * cap observed from outside through /proc/self/fd. The pipelined read loop
 * (a reader thread filling slots) is checked against OpenSSL's one-shot
 * digest of the same bytes in memory: sizes around the slot and buffer
 * boundaries, empty files, read errors, files that shrink or grow while
 * they are hashed, and more big files at once than there are CPUs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "hasher.h"

#define SHA_EMPTY "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define SHA_ABC	  "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

static char root[256];

static void path_in(char *out, const char *rel)
{
	snprintf(out, PATH_MAX, "%s/%s", root, rel);
}

static void write_file(const char *rel, const void *data, size_t len)
{
	char p[PATH_MAX];
	FILE *f;

	path_in(p, rel);
	f = fopen(p, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

/* A sparse file: hashing it reads zeros at memory speed, so it takes long
 * enough (hundreds of ms) for another thread to act while it runs. */
static void sparse_file(const char *rel, off_t size)
{
	char p[PATH_MAX];
	int fd;

	path_in(p, rel);
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, size), 0);
	close(fd);
}

struct one {
	struct hash_result res;
	int calls;
};

static void one_cb(const struct hash_result *res, void *arg)
{
	struct one *o = arg;

	o->res = *res;
	o->calls++;
}

static void closed_cb(void *arg)
{
	(*(int *)arg)++;
}

/* Hash one file through the async API on a private loop. */
static int hash_one(const char *rel, const struct file_id *expect, struct hash_result *out)
{
	uv_loop_t loop;
	struct hasher *h;
	struct one o = {.calls = 0};
	int closed = 0;

	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(hasher_create(&loop, 1, 0, &h), 0);
	assert_int_equal(hasher_submit(h, root, rel, expect, one_cb, &o), 0);
	assert_int_equal(hasher_pending(h), 1);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(o.calls, 1);
	hasher_close(h, closed_cb, &closed);
	assert_int_equal(closed, 1);
	assert_int_equal(uv_loop_close(&loop), 0);
	*out = o.res;
	return o.res.status;
}

static int setup(void **state)
{
	snprintf(root, sizeof(root), "/tmp/mam-hasher-XXXXXX");
	assert_non_null(mkdtemp(root));
	return 0;
}

static int teardown(void **state)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s.outside'", root, root);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_vectors(void **state)
{
	struct hash_result r;
	char p[PATH_MAX], hex[65];
	struct stat st;
	uint64_t n;
	int fd;

	write_file("empty", "", 0);
	write_file("abc", "abc", 3);
	assert_int_equal(hash_one("empty", NULL, &r), 0);
	assert_string_equal(r.sha256, SHA_EMPTY);
	assert_int_equal(r.bytes, 0);
	assert_int_equal(hash_one("abc", NULL, &r), 0);
	assert_string_equal(r.sha256, SHA_ABC);
	assert_int_equal(r.bytes, 3);
	path_in(p, "abc");
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(r.id.ino, st.st_ino);
	assert_int_equal(r.id.size, 3);
	/* The synchronous helper, with a tiny read size to cross many reads. */
	fd = open(p, O_RDONLY);
	assert_int_equal(hash_fd_sha256(fd, 1, hex, &n), 0);
	close(fd);
	assert_string_equal(hex, SHA_ABC);
	assert_int_equal(n, 3);
}

static void test_big_file_matches_openssl(void **state)
{
	char p[PATH_MAX], cmd[PATH_MAX + 64], line[512], *eq;
	static unsigned char buf[1 << 20];
	struct hash_result r;
	FILE *f, *rnd;

	path_in(p, "big.bin");
	rnd = fopen("/dev/urandom", "rb");
	f = fopen(p, "wb");
	assert_non_null(rnd);
	assert_non_null(f);
	for (int i = 0; i < 50; i++) {
		assert_int_equal(fread(buf, 1, sizeof(buf), rnd), sizeof(buf));
		/* An odd tail so the last read is short. */
		assert_int_equal(fwrite(buf, 1, i == 49 ? 12345 : sizeof(buf), f),
				 i == 49 ? 12345 : sizeof(buf));
	}
	fclose(rnd);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(hash_one("big.bin", NULL, &r), 0);
	assert_int_equal(r.bytes, 49u * sizeof(buf) + 12345);
	snprintf(cmd, sizeof(cmd), "openssl dgst -sha256 '%s'", p);
	f = popen(cmd, "r");
	assert_non_null(f);
	assert_non_null(fgets(line, sizeof(line), f));
	assert_int_equal(pclose(f), 0);
	eq = strstr(line, "= ");
	assert_non_null(eq);
	eq[2 + 64] = '\0';
	assert_string_equal(r.sha256, eq + 2);
}

/* Bytes that differ at every offset, so a slot hashed twice, skipped or out
 * of order changes the digest. */
static unsigned char pattern_at(uint64_t i)
{
	return (unsigned char)(((i * 2654435761u) >> 11) ^ (i >> 20) ^ i);
}

static unsigned char *pattern(size_t len)
{
	unsigned char *b = malloc(len ? len : 1);

	assert_non_null(b);
	for (size_t i = 0; i < len; i++)
		b[i] = pattern_at(i);
	return b;
}

static void sha_hex(const unsigned char *b, size_t len, char hex[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	assert_int_equal(EVP_Digest(b, len, md, &mdlen, EVP_sha256(), NULL), 1);
	assert_int_equal(mdlen, 32);
	for (unsigned i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

static int hash_path_io(const char *rel, size_t read_size, enum hash_io io, char hex[65],
			uint64_t *n)
{
	char p[PATH_MAX];
	int fd, rc;

	path_in(p, rel);
	fd = open(p, O_RDONLY);
	assert_true(fd >= 0);
	rc = hash_fd_sha256_io(fd, read_size, io, hex, n);
	close(fd);
	return rc;
}

/* Every read loop, every read size, sizes on and around the boundaries of
 * the 64 KiB and 256 KiB slots and of the whole ring, and the 4 MiB from
 * which the automatic choice pipelines. */
static void test_read_loops_agree(void **state)
{
	static const size_t sizes[] = {
		0,	1,	4095,	       65535,	65536,	       65537,	3 * 65536 + 17,
		262144, 262145, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 4 << 20, (5 << 20) + 12345};
	static const size_t reads[] = {0, 65536, 100000, 1 << 20};
	static const enum hash_io ios[] = {HASH_IO_SERIAL, HASH_IO_PIPELINED, HASH_IO_AUTO};
	unsigned char *data = pattern((5 << 20) + 12345);
	char want[65], got[65];
	struct hash_result r;
	uint64_t n;

	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		write_file("p.bin", data, sizes[s]);
		sha_hex(data, sizes[s], want);
		for (size_t k = 0; k < sizeof(reads) / sizeof(reads[0]); k++)
			for (size_t m = 0; m < sizeof(ios) / sizeof(ios[0]); m++) {
				n = 12345678;
				assert_int_equal(hash_path_io("p.bin", reads[k], ios[m], got, &n),
						 0);
				assert_string_equal(got, want);
				assert_int_equal(n, sizes[s]);
			}
		/* The job path: pipelined from 4 MiB on. */
		assert_int_equal(hash_one("p.bin", NULL, &r), 0);
		assert_string_equal(r.sha256, want);
		assert_int_equal(r.bytes, sizes[s]);
	}
	free(data);
	assert_int_equal(hash_path_io("p.bin", 0, HASH_IO_PIPELINED, got, &n), 0);
	write_file("empty", "", 0);
	assert_int_equal(hash_path_io("empty", 0, HASH_IO_PIPELINED, got, &n), 0);
	assert_string_equal(got, SHA_EMPTY);
	assert_int_equal(n, 0);
}

/* A read error reaches the caller from the reader thread, and the thread
 * is gone afterwards (the test runs clean under ASan and leaks nothing). */
static void test_read_error(void **state)
{
	char hex[65];
	uint64_t n;
	int fd;

	fd = open(root, O_RDONLY | O_DIRECTORY);
	assert_true(fd >= 0);
	assert_int_equal(hash_fd_sha256_io(fd, 0, HASH_IO_PIPELINED, hex, &n), -EISDIR);
	assert_int_equal(hash_fd_sha256_io(fd, 0, HASH_IO_SERIAL, hex, &n), -EISDIR);
	close(fd);
}

/* libmagic sees the first slot of a pipelined file. */
static void test_pipelined_content_type(void **state)
{
	static const unsigned char png[16] = {0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A,
					      0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52};
	size_t len = (6 << 20) + 7;
	unsigned char *data = pattern(len);
	char want[65];
	struct hash_result r;

	memcpy(data, png, sizeof(png));
	write_file("big-image", data, len);
	sha_hex(data, len, want);
	free(data);
	assert_int_equal(hash_one("big-image", NULL, &r), 0);
	assert_string_equal(r.sha256, want);
	assert_string_equal(r.mime, "image/png");
	assert_string_equal(r.asset_type, "image");
}

struct resizer {
	char path[PATH_MAX];
	size_t from, to; /* the file's size before and after */
	int started;	 /* the hash has started: act now */
	pthread_mutex_t mu;
	pthread_cond_t cv;
};

/* Shrinks the file with one truncate, or grows it with pattern bytes in
 * 256 KiB appends, as soon as the hash has started. Sizes stay multiples
 * of the page size so the kernel never zeroes a partial page under a read:
 * every byte read is then a pattern byte. */
static void *resize(void *arg)
{
	struct resizer *z = arg;
	unsigned char chunk[256 * 1024];
	int fd;

	pthread_mutex_lock(&z->mu);
	while (!z->started)
		pthread_cond_wait(&z->cv, &z->mu);
	pthread_mutex_unlock(&z->mu);
	if (z->to < z->from) {
		usleep(1000);
		assert_int_equal(truncate(z->path, (off_t)z->to), 0);
		return NULL;
	}
	fd = open(z->path, O_WRONLY);
	assert_true(fd >= 0);
	for (size_t off = z->from; off < z->to; off += sizeof(chunk)) {
		for (size_t i = 0; i < sizeof(chunk); i++)
			chunk[i] = pattern_at(off + i);
		assert_int_equal(pwrite(fd, chunk, sizeof(chunk), (off_t)off), sizeof(chunk));
	}
	close(fd);
	return NULL;
}

/* The digest is always that of exactly the bytes counted, whichever of the
 * file's sizes the hash saw, for both loops. */
static void hash_while_resizing(size_t from, size_t to, enum hash_io io)
{
	size_t big = from > to ? from : to;
	unsigned char *data = pattern(big);
	struct resizer z = {.from = from, .to = to};
	char want[65], got[65];
	pthread_t t;
	uint64_t n;
	int fd;

	write_file("resized.bin", data, from);
	path_in(z.path, "resized.bin");
	pthread_mutex_init(&z.mu, NULL);
	pthread_cond_init(&z.cv, NULL);
	fd = open(z.path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pthread_create(&t, NULL, resize, &z), 0);
	pthread_mutex_lock(&z.mu);
	z.started = 1;
	pthread_cond_signal(&z.cv);
	pthread_mutex_unlock(&z.mu);
	/* Small reads: many slots, so the resize lands between two of them. */
	assert_int_equal(hash_fd_sha256_io(fd, 65536, io, got, &n), 0);
	pthread_join(t, NULL);
	close(fd);
	printf("%s, %zu -> %zu MiB while hashed: %.2f MiB hashed\n",
	       io == HASH_IO_SERIAL ? "serial" : "pipelined", from >> 20, to >> 20,
	       (double)n / (1 << 20));
	assert_true(n >= (from < to ? from : to));
	assert_true(n <= big);
	sha_hex(data, (size_t)n, want);
	assert_string_equal(got, want);
	pthread_cond_destroy(&z.cv);
	pthread_mutex_destroy(&z.mu);
	free(data);
}

static void test_resized_while_hashing(void **state)
{
	for (int i = 0; i < 3; i++) {
		hash_while_resizing(64 << 20, 16 << 20, HASH_IO_PIPELINED);
		hash_while_resizing(16 << 20, 64 << 20, HASH_IO_PIPELINED);
		hash_while_resizing(32 << 20, 0, HASH_IO_PIPELINED);
	}
	hash_while_resizing(64 << 20, 16 << 20, HASH_IO_SERIAL);
	hash_while_resizing(16 << 20, 64 << 20, HASH_IO_SERIAL);
}

struct racer {
	char rel[32];
	unsigned delay_ms;
	char got[65];
	uint64_t n;
	int rc;
};

static void *race(void *arg)
{
	struct racer *c = arg;

	usleep(c->delay_ms * 1000);
	c->rc = hash_path_io(c->rel, 65536, HASH_IO_AUTO, c->got, &c->n);
	return NULL;
}

/* More big files hashed at once than there are CPUs, started a few ms
 * apart, so each loop drops its reader when the CPUs fill up and takes
 * it back as the others finish, at 64 KiB slots; every digest stays exact. */
static void test_loops_switch_while_hashing(void **state)
{
	enum { N = 5 };
	size_t len = (24 << 20) + 4097;
	unsigned char *data = pattern(len);
	struct racer c[N];
	pthread_t t[N];
	char want[65];

	write_file("race.bin", data, len);
	sha_hex(data, len, want);
	free(data);
	for (int i = 0; i < N; i++) {
		char p[PATH_MAX], q[PATH_MAX];

		snprintf(c[i].rel, sizeof(c[i].rel), "race-%d.bin", i);
		path_in(p, "race.bin");
		path_in(q, c[i].rel);
		assert_int_equal(link(p, q), 0);
		c[i].delay_ms = 3u * (unsigned)i;
		assert_int_equal(pthread_create(&t[i], NULL, race, &c[i]), 0);
	}
	for (int i = 0; i < N; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(c[i].rc, 0);
		assert_string_equal(c[i].got, want);
		assert_int_equal(c[i].n, len);
	}
}

static void test_identity_mismatch(void **state)
{
	struct hash_result r;
	struct file_id id;
	char p[PATH_MAX];
	struct stat st;

	write_file("clip.mov", "0123456789", 10);
	path_in(p, "clip.mov");
	assert_int_equal(stat(p, &st), 0);
	file_id_from_stat(&id, &st);
	assert_int_equal(hash_one("clip.mov", &id, &r), 0);
	assert_true(file_id_equal(&r.id, &id));
	id.mtime_ns -= 1000000000LL; /* the watcher saw an older version */
	assert_int_equal(hash_one("clip.mov", &id, &r), -ESTALE);
	assert_string_equal(r.sha256, "");
	assert_non_null(strstr(r.error, "clip.mov"));
}

/* Does this process have path open? (the hasher's worker thread does) */
/*
 * How many distinct files does this process have open: path itself, or
 * names under prefix (the hasher's worker threads open them; one job may
 * briefly hold two descriptors on its file, so names are counted once).
 */
static int fd_open_on(const char *path, const char *prefix)
{
	char l[300], t[PATH_MAX], seen[16][64];
	struct dirent *de;
	int found = 0;
	DIR *d = opendir("/proc/self/fd");

	while (d && (de = readdir(d)) != NULL) {
		ssize_t n;
		int dup = 0;

		snprintf(l, sizeof(l), "/proc/self/fd/%s", de->d_name);
		n = readlink(l, t, sizeof(t) - 1);
		if (n <= 0)
			continue;
		t[n] = '\0';
		if (path && strcmp(t, path) == 0) {
			found = 1;
			break;
		}
		if (!prefix || strncmp(t, prefix, strlen(prefix)) != 0)
			continue;
		for (int i = 0; i < found && i < 16; i++)
			dup |= strcmp(seen[i], t + strlen(prefix)) == 0;
		if (!dup && found < 16)
			snprintf(seen[found++], sizeof(seen[0]), "%s", t + strlen(prefix));
	}
	if (d)
		closedir(d);
	return found;
}

struct meddler {
	char path[PATH_MAX];
	int unlink_it; /* else append */
	atomic_int stop;
	int acted;
};

static void *meddle(void *arg)
{
	struct meddler *m = arg;

	while (!atomic_load(&m->stop) && !fd_open_on(m->path, NULL))
		;
	while (!atomic_load(&m->stop)) {
		if (m->unlink_it) {
			m->acted = unlink(m->path) == 0;
			break;
		}
		int fd = open(m->path, O_WRONLY | O_APPEND);

		if (fd >= 0) {
			m->acted += write(fd, "x", 1) == 1;
			close(fd);
		}
		usleep(1000);
	}
	return NULL;
}

static int hash_while_meddling(const char *rel, int unlink_it, struct hash_result *r)
{
	struct meddler m = {.unlink_it = unlink_it};
	pthread_t t;

	path_in(m.path, rel);
	atomic_init(&m.stop, 0);
	assert_int_equal(pthread_create(&t, NULL, meddle, &m), 0);
	hash_one(rel, NULL, r);
	atomic_store(&m.stop, 1);
	pthread_join(t, NULL);
	assert_true(m.acted > 0);
	return r->status;
}

static void test_changed_while_hashing(void **state)
{
	struct hash_result r;

	sparse_file("growing.mov", 1LL << 30);
	assert_int_equal(hash_while_meddling("growing.mov", 0, &r), -ESTALE);
	assert_non_null(strstr(r.error, "changed while"));
}

static void test_vanished(void **state)
{
	struct hash_result r;

	assert_int_equal(hash_one("never-there.mov", NULL, &r), -ENOENT);
	sparse_file("deleted.mov", 1LL << 30);
	assert_int_equal(hash_while_meddling("deleted.mov", 1, &r), -ENOENT);
	assert_non_null(strstr(r.error, "vanished while"));
}

static void refusals(void)
{
	char outside[512], target[1024], p[PATH_MAX];
	struct timespec old[2] = {{1000, 0}, {1000, 0}};
	struct hash_result r;
	struct stat st;

	/* A secret outside the drop folder, with an atime that any read would bump. */
	snprintf(outside, sizeof(outside), "%s.outside", root);
	mkdir(outside, 0755);
	snprintf(target, sizeof(target), "%s/secret", outside);
	FILE *f = fopen(target, "w");
	assert_non_null(f);
	fputs("secret", f);
	fclose(f);
	assert_int_equal(utimensat(AT_FDCWD, target, old, 0), 0);
	path_in(p, "link.mov");
	unlink(p);
	assert_int_equal(symlink(target, p), 0);
	path_in(p, "linkdir");
	unlink(p);
	assert_int_equal(symlink(outside, p), 0);

	assert_int_equal(hash_one("link.mov", NULL, &r), -ELOOP);
	assert_string_equal(r.sha256, "");
	assert_int_equal(hash_one("linkdir/secret", NULL, &r), -ELOOP);
	assert_int_equal(hash_one("../x", NULL, &r), -EXDEV);
	path_in(p, "sub");
	mkdir(p, 0755);
	assert_int_equal(hash_one("sub/../../x", NULL, &r), -EXDEV);
	assert_int_equal(hash_one(target, NULL, &r), -EXDEV); /* absolute */
	assert_int_equal(stat(target, &st), 0);
	assert_int_equal(st.st_atim.tv_sec, 1000); /* never read */

	/* A FIFO without a writer: refused at once, never blocking a thread. */
	path_in(p, "pipe.mov");
	unlink(p);
	assert_int_equal(mkfifo(p, 0644), 0);
	time_t t0 = time(NULL);
	assert_int_equal(hash_one("pipe.mov", NULL, &r), -EINVAL);
	assert_true(time(NULL) - t0 < 5);
	assert_non_null(strstr(r.error, "not a regular file"));
	/* A directory is not a regular file either. */
	path_in(p, "adir");
	mkdir(p, 0755);
	assert_int_equal(hash_one("adir", NULL, &r), -EINVAL);
	/* A plain file in a subdirectory is fine. */
	path_in(p, "adir/ok.wav");
	f = fopen(p, "w");
	fputs("abc", f);
	fclose(f);
	assert_int_equal(hash_one("adir/ok.wav", NULL, &r), 0);
	assert_string_equal(r.sha256, SHA_ABC);
	snprintf(p, sizeof(p), "rm -rf '%s'", outside);
	assert_int_equal(system(p), 0);
}

static void test_refusals_openat2(void **state)
{
	refusals();
}

static void test_refusals_fallback_walk(void **state)
{
	setenv("MAM_HASHER_NO_OPENAT2", "1", 1);
	refusals();
	unsetenv("MAM_HASHER_NO_OPENAT2");
}

/* Root reads anything, so the unreadable case runs as nobody in a child. */
static void test_unreadable(void **state)
{
	struct hash_result r;
	char p[PATH_MAX];
	pid_t pid;
	int ws;

	write_file("locked.mov", "abc", 3);
	path_in(p, "locked.mov");
	assert_int_equal(chmod(p, 0), 0);
	assert_int_equal(chmod(root, 0755), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
			_exit(2);
		int rc = hash_one("locked.mov", NULL, &r);

		_exit(rc == -EACCES && strstr(r.error, "Permission denied") &&
				      strstr(r.error, "locked.mov")
			      ? 0
			      : 1);
	}
	assert_int_equal(waitpid(pid, &ws, 0), pid);
	assert_true(WIFEXITED(ws));
	assert_int_equal(WEXITSTATUS(ws), 0);
}

static void test_asset_types(void **state)
{
	static const unsigned char png[67] = {
		0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48,
		0x44, 0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00,
		0x00, 0x1F, 0x15, 0xC4, 0x89, 0x00, 0x00, 0x00, 0x0A, 0x49, 0x44, 0x41, 0x54, 0x78,
		0x9C, 0x63, 0x00, 0x01, 0x00, 0x00, 0x05, 0x00, 0x01, 0x0D, 0x0A, 0x2D, 0xB4, 0x00,
		0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82};
	/* 44-byte PCM WAV header (mono, 48 kHz, 16 bit) and 100 samples. */
	unsigned char wav[44 + 200] = "RIFF\0\0\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0"
				      "\x80\xbb\0\0\0\x77\x01\0\x02\0\x10\0data\xc8\0\0\0";
	unsigned char rnd[4096];
	struct hash_result r;

	wav[4] = sizeof(wav) - 8;
	for (size_t i = 0; i < sizeof(rnd); i++)
		rnd[i] = (unsigned char)(rand() & 0xff);
	write_file("no-extension", png, sizeof(png));
	write_file("sound.bin", wav, sizeof(wav));
	write_file("clip.mxf", rnd, sizeof(rnd));
	write_file("A001.R3D", rnd, sizeof(rnd));
	write_file("notes.txt", "hello, world\n", 13);

	assert_int_equal(hash_one("no-extension", NULL, &r), 0);
	assert_string_equal(r.mime, "image/png");
	assert_string_equal(r.asset_type, "image");
	assert_int_equal(hash_one("sound.bin", NULL, &r), 0);
	assert_non_null(strstr(r.mime, "wav"));
	assert_string_equal(r.asset_type, "audio");
	assert_int_equal(hash_one("clip.mxf", NULL, &r), 0);
	assert_string_equal(r.asset_type, "video");
	assert_int_equal(hash_one("A001.R3D", NULL, &r), 0);
	assert_string_equal(r.mime, "application/octet-stream");
	assert_string_equal(r.asset_type, "video");
	assert_int_equal(hash_one("notes.txt", NULL, &r), 0);
	assert_string_equal(r.mime, "text/plain");
	assert_string_equal(r.asset_type, "document");

	assert_string_equal(asset_type_guess("application/mxf", "x"), "video");
	assert_string_equal(asset_type_guess("audio/x-wav", "x.mov"), "audio");
	assert_string_equal(asset_type_guess("application/octet-stream", "a/B.NEF"), "image");
	assert_string_equal(asset_type_guess(NULL, "dir.mov/.hidden"), "document");
	assert_string_equal(asset_type_guess("application/pdf", "brief.pdf"), "document");
}

/* Async: 10 files, at most 2 in flight, measured by counting the files of
 * the root this process has open, from another thread, while hashing runs. */
struct sampler {
	char prefix[PATH_MAX];
	atomic_int stop;
	int peak;
};

static void *sample(void *arg)
{
	struct sampler *s = arg;

	while (!atomic_load(&s->stop)) {
		int n = fd_open_on(NULL, s->prefix);

		if (n > s->peak)
			s->peak = n;
	}
	return NULL;
}

struct many {
	int calls[10];
	int ok;
	struct hasher *h;
	unsigned min_pending;
	struct slot {
		struct many *m;
		int idx;
	} slot[10];
};

static void many_cb(const struct hash_result *res, void *arg)
{
	struct slot *sl = arg;
	struct many *m = sl->m;

	m->calls[sl->idx]++;
	m->ok += res->status == 0 && res->bytes == (64u << 20);
	if (hasher_pending(m->h) < m->min_pending)
		m->min_pending = hasher_pending(m->h);
}

static void test_async_cap(void **state)
{
	struct many m = {.min_pending = 100};
	struct sampler s = {.peak = 0};
	char name[32];
	uv_loop_t loop;
	pthread_t t;
	int closed = 0;

	for (int i = 0; i < 10; i++)
		m.slot[i] = (struct slot){&m, i};

	for (int i = 0; i < 10; i++) {
		snprintf(name, sizeof(name), "f%d.mov", i);
		sparse_file(name, 64 << 20);
	}
	snprintf(s.prefix, sizeof(s.prefix), "%s/f", root);
	atomic_init(&s.stop, 0);
	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(hasher_create(&loop, 2, 0, &m.h), 0);
	for (int i = 0; i < 10; i++) {
		snprintf(name, sizeof(name), "f%d.mov", i);
		assert_int_equal(hasher_submit(m.h, root, name, NULL, many_cb, &m.slot[i]), 0);
	}
	assert_int_equal(hasher_pending(m.h), 10);
	assert_int_equal(pthread_create(&t, NULL, sample, &s), 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	atomic_store(&s.stop, 1);
	pthread_join(t, NULL);
	for (int i = 0; i < 10; i++)
		assert_int_equal(m.calls[i], 1);
	assert_int_equal(m.ok, 10);
	assert_int_equal(m.min_pending, 0);
	print_message("peak files open at once: %d\n", s.peak);
	assert_true(s.peak >= 1);
	assert_true(s.peak <= 2);
	hasher_close(m.h, closed_cb, &closed);
	assert_int_equal(closed, 1);
	assert_int_equal(uv_loop_close(&loop), 0);
}

/* Closing with work queued: queued jobs are cancelled, the running one
 * finishes, and the close callback comes last. */
static void test_close_cancels_queued(void **state)
{
	struct many m = {.min_pending = 100};
	struct one o = {.calls = 0};
	uv_loop_t loop;
	int closed = 0;

	m.slot[0] = (struct slot){&m, 0};

	sparse_file("c0.mov", 64 << 20);
	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(hasher_create(&loop, 1, 0, &m.h), 0);
	assert_int_equal(hasher_submit(m.h, root, "c0.mov", NULL, many_cb, &m.slot[0]), 0);
	for (int i = 1; i < 4; i++)
		assert_int_equal(hasher_submit(m.h, root, "c0.mov", NULL, one_cb, &o), 0);
	hasher_close(m.h, closed_cb, &closed);
	assert_int_equal(o.calls, 3);
	assert_int_equal(o.res.status, -ECANCELED);
	assert_int_equal(closed, 0); /* c0 still hashing */
	assert_int_equal(hasher_submit(m.h, root, "c0.mov", NULL, one_cb, &o), -ECANCELED);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(m.calls[0], 1);
	assert_int_equal(m.ok, 1);
	assert_int_equal(closed, 1);
	assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_vectors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_big_file_matches_openssl, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_loops_agree, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pipelined_content_type, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resized_while_hashing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_loops_switch_while_hashing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_identity_mismatch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_changed_while_hashing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_vanished, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refusals_openat2, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refusals_fallback_walk, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unreadable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_asset_types, setup, teardown),
		cmocka_unit_test_setup_teardown(test_async_cap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_cancels_queued, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
