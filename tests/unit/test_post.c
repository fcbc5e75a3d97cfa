/*
 * Post-ingest action tests on real files: rename on one filesystem, the
 * copy + verify path across filesystems (/dev/shm is tmpfs, a different
 * device from /tmp here), the crash-repair cases, never clobbering an
 * existing file, a wrong checksum, a full disk (a 1 MiB tmpfs mounted for
 * the test when we may mount), delete, quarantine with name clashes and its
 * reason file, the async wrapper on a real loop, and template expansion.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hasher.h"
#include "post.h"

static char root[256]; /* on /tmp */
static char shm[256];  /* on /dev/shm, another filesystem, or "" */

/* buf = base/rel (buf has PATH_MAX bytes). */
static const char *P(char *buf, const char *base, const char *rel)
{
	size_t b = strlen(base), r = strlen(rel);

	assert_true(b + 1 + r < PATH_MAX);
	memmove(buf, base, b);
	buf[b] = '/';
	memcpy(buf + b + 1, rel, r + 1);
	return buf;
}

static void make_file(const char *path, size_t len, unsigned seed)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	srand(seed);
	for (size_t i = 0; i < len; i++)
		fputc(rand() & 0xff, f);
	assert_int_equal(fclose(f), 0);
}

static void sha_of(const char *path, char hex[65])
{
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(hash_fd_sha256(fd, 0, hex, NULL), 0);
	close(fd);
}

static int exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

/* Entries in dir other than . and .., so leftover temp files show up. */
static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

static int setup(void **state)
{
	struct stat a, b;

	snprintf(root, sizeof(root), "/tmp/mam-post-XXXXXX");
	assert_non_null(mkdtemp(root));
	snprintf(shm, sizeof(shm), "/dev/shm/mam-post-XXXXXX");
	if (!mkdtemp(shm) || stat(root, &a) != 0 || stat(shm, &b) != 0 || a.st_dev == b.st_dev) {
		if (shm[0] && strstr(shm, "XXXXXX") == NULL)
			rmdir(shm);
		shm[0] = '\0';
	}
	return 0;
}

static int teardown(void **state)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s'", root, shm[0] ? shm : root);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_move_same_fs(void **state)
{
	char src[PATH_MAX], dst[PATH_MAX], sum[65], after[65];
	struct post_result r;
	struct stat st, st2;

	mkdir(P(src, root, "drop"), 0755);
	make_file(P(src, root, "drop/clip.mov"), 100000, 1);
	sha_of(src, sum);
	assert_int_equal(stat(src, &st), 0);
	P(dst, root, "lib/acme/2024/01/7/clip.mov");
	assert_int_equal(post_run(POST_MOVE, src, dst, sum, NULL, &r), 0);
	assert_string_equal(r.final_path, dst);
	assert_false(exists(src));
	assert_int_equal(stat(dst, &st2), 0);
	assert_int_equal(st.st_ino, st2.st_ino); /* a rename, not a copy */
	sha_of(dst, after);
	assert_string_equal(after, sum);
	assert_int_equal(stat(P(src, root, "lib/acme/2024"), &st), 0);
	assert_int_equal(st.st_mode & 0777, 0755);
}

static void test_move_cross_fs(void **state)
{
	char src[PATH_MAX], dst[PATH_MAX], dir[PATH_MAX], sum[65], after[65];
	struct timespec t[2] = {{1600000000, 0}, {1600000000, 5}};
	struct post_result r;
	struct stat st;

	if (!shm[0])
		skip();
	make_file(P(src, shm, "clip.mov"), 5 << 20, 2);
	assert_int_equal(chmod(src, 0640), 0);
	assert_int_equal(utimensat(AT_FDCWD, src, t, 0), 0);
	sha_of(src, sum);
	P(dst, root, "lib/x/clip.mov");
	assert_int_equal(post_run(POST_MOVE, src, dst, sum, NULL, &r), 0);
	assert_string_equal(r.final_path, dst);
	assert_false(exists(src));
	sha_of(dst, after);
	assert_string_equal(after, sum);
	assert_int_equal(count_entries(P(dir, root, "lib/x")), 1); /* no temp left */
	assert_int_equal(stat(dst, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0640);
	assert_int_equal(st.st_mtim.tv_sec, 1600000000);
	assert_int_equal(st.st_size, 5 << 20);
}

static void test_move_wrong_checksum(void **state)
{
	static const char wrong[] =
		"0000000000000000000000000000000000000000000000000000000000000000";
	char src[PATH_MAX], dst[PATH_MAX], dir[PATH_MAX], sum[65], after[65];
	struct post_result r;

	if (!shm[0])
		skip();
	make_file(P(src, shm, "clip.mov"), 300000, 3);
	sha_of(src, sum);
	mkdir(P(dir, root, "lib"), 0755);
	P(dst, root, "lib/clip.mov");
	assert_int_equal(post_run(POST_MOVE, src, dst, wrong, NULL, &r), -EIO);
	assert_non_null(strstr(r.error, "checksum mismatch"));
	sha_of(src, after);
	assert_string_equal(after, sum); /* source intact */
	assert_false(exists(dst));
	assert_int_equal(count_entries(dir), 0); /* no temp left */
	/* Not a checksum at all. */
	assert_int_equal(post_run(POST_MOVE, src, dst, "abc", NULL, &r), -EINVAL);
}

static void test_move_repair(void **state)
{
	char src[PATH_MAX], dst[PATH_MAX], sum[65], other[65], cmd[PATH_MAX * 2 + 16];
	struct post_result r;

	/* Crash after the copy was renamed into place, before the unlink. */
	make_file(P(src, root, "clip.mov"), 200000, 4);
	sha_of(src, sum);
	P(dst, root, "lib/clip.mov");
	mkdir(P(cmd, root, "lib"), 0755);
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", src, dst);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(post_run(POST_MOVE, src, dst, sum, NULL, &r), 0);
	assert_string_equal(r.final_path, dst);
	assert_false(exists(src));
	/* Crash after the rename and before the catalogue saw it: nothing to do. */
	assert_int_equal(post_run(POST_MOVE, src, dst, sum, NULL, &r), 0);
	assert_true(exists(dst));
	/* Without an expected sum, identical content still counts as done. */
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", dst, src);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(post_run(POST_MOVE, src, dst, NULL, NULL, &r), 0);
	assert_false(exists(src));
	/* A new file dropped under the old name is not deleted by the repair. */
	make_file(src, 1000, 5);
	sha_of(src, other);
	assert_int_equal(post_run(POST_MOVE, src, dst, sum, NULL, &r), 0);
	assert_true(exists(src));
	sha_of(dst, other);
	assert_string_equal(other, sum);
}

static void test_move_onto_other_file(void **state)
{
	char src[PATH_MAX], dst[PATH_MAX], s1[65], s2[65], a1[65], a2[65];
	struct post_result r;

	make_file(P(src, root, "clip.mov"), 1000, 6);
	mkdir(P(dst, root, "lib"), 0755);
	make_file(P(dst, root, "lib/clip.mov"), 1000, 7);
	sha_of(src, s1);
	sha_of(dst, s2);
	assert_int_equal(post_run(POST_MOVE, src, dst, s1, NULL, &r), -EEXIST);
	assert_non_null(strstr(r.error, "different content"));
	assert_int_equal(post_run(POST_MOVE, src, dst, NULL, NULL, &r), -EEXIST);
	sha_of(src, a1);
	sha_of(dst, a2);
	assert_string_equal(a1, s1);
	assert_string_equal(a2, s2);
	if (shm[0]) { /* the same across filesystems */
		char s3[PATH_MAX];

		make_file(P(s3, shm, "clip.mov"), 1000, 8);
		assert_int_equal(post_run(POST_MOVE, s3, dst, NULL, NULL, &r), -EEXIST);
		assert_true(exists(s3));
		sha_of(dst, a2);
		assert_string_equal(a2, s2);
	}
}

static void test_move_enospc(void **state)
{
	char src[PATH_MAX], mnt[PATH_MAX], dst[PATH_MAX], sum[65], after[65];
	struct post_result r;

	make_file(P(src, root, "big.mov"), 3 << 20, 9);
	sha_of(src, sum);
	mkdir(P(mnt, root, "small"), 0755);
	/* Nothing between mount and umount may fail an assertion. */
	if (mount("tmpfs", mnt, "tmpfs", 0, "size=1m") != 0) {
		print_message("cannot mount a tmpfs (%s): ENOSPC case skipped\n", strerror(errno));
		skip();
	}
	P(dst, mnt, "lib/big.mov");
	int rc = post_run(POST_MOVE, src, dst, sum, NULL, &r);
	int left = count_entries(P(after, mnt, "lib"));

	umount2(mnt, MNT_DETACH);
	assert_int_equal(rc, -ENOSPC);
	assert_non_null(strstr(r.error, "No space left"));
	assert_int_equal(left, 0); /* the partial copy was removed */
	sha_of(src, after);
	assert_string_equal(after, sum);
}

static void test_delete(void **state)
{
	char src[PATH_MAX];
	struct post_result r;

	make_file(P(src, root, "gone.mov"), 10, 10);
	assert_int_equal(post_run(POST_DELETE, src, NULL, NULL, NULL, &r), 0);
	assert_false(exists(src));
	assert_int_equal(post_run(POST_DELETE, src, NULL, NULL, NULL, &r), 0);
}

static void read_text(const char *path, char *out, size_t outsz)
{
	FILE *f = fopen(path, "r");
	size_t n;

	assert_non_null(f);
	n = fread(out, 1, outsz - 1, f);
	out[n] = '\0';
	fclose(f);
}

static void test_quarantine(void **state)
{
	char a[PATH_MAX], b[PATH_MAX], c[PATH_MAX], q[PATH_MAX], p[PATH_MAX], text[256];
	struct post_result r;
	struct stat st;

	mkdir(P(a, root, "d1"), 0755);
	mkdir(P(a, root, "d2"), 0755);
	make_file(P(a, root, "d1/bad.mov"), 100, 11);
	make_file(P(b, root, "d2/bad.mov"), 100, 11); /* same name and bytes */
	make_file(P(c, root, "d2/README"), 100, 12);
	P(q, root, "drop/.quarantine");
	assert_int_equal(post_run(POST_QUARANTINE, a, q, NULL, "{\"reason\":\"unreadable\"}", &r),
			 0);
	assert_string_equal(r.final_path, P(p, q, "bad.mov"));
	assert_false(exists(a));
	assert_int_equal(stat(q, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	read_text(P(p, q, "bad.mov.reason.json"), text, sizeof(text));
	assert_string_equal(text, "{\"reason\":\"unreadable\"}");

	assert_int_equal(post_run(POST_QUARANTINE, b, q, NULL, "{\"reason\":\"policy\"}", &r), 0);
	assert_string_equal(r.final_path, P(p, q, "bad.1.mov"));
	assert_false(exists(b));
	read_text(P(p, q, "bad.1.mov.reason.json"), text, sizeof(text));
	assert_string_equal(text, "{\"reason\":\"policy\"}");
	read_text(P(p, q, "bad.mov.reason.json"), text, sizeof(text));
	assert_string_equal(text, "{\"reason\":\"unreadable\"}"); /* the first kept its reason */

	make_file(P(p, q, "README"), 1, 13);
	assert_int_equal(post_run(POST_QUARANTINE, c, q, NULL, NULL, &r), 0);
	assert_string_equal(r.final_path, P(p, q, "README.1"));
	read_text(P(p, q, "README.1.reason.json"), text, sizeof(text));
	assert_string_equal(text, "{}");
	assert_int_equal(count_entries(q), 7); /* no temp left */

	/* A 255-byte name is shortened so that its reason file fits beside it. */
	char longname[256];

	memset(longname, 'a', 251);
	memcpy(longname + 251, ".mov", 5);
	make_file(P(a, root, longname), 10, 16);
	assert_int_equal(post_run(POST_QUARANTINE, a, q, NULL, "{}", &r), 0);
	assert_false(exists(a));
	assert_true(strlen(strrchr(r.final_path, '/') + 1) < 255 - strlen(".reason.json"));
	assert_non_null(strstr(r.final_path, "aaa.mov"));
	assert_true(strlen(r.final_path) < sizeof(p) - 16);
	strcpy(p, r.final_path);
	strcat(p, ".reason.json");
	assert_true(exists(p));
	assert_int_equal(count_entries(q), 9);

	if (shm[0]) { /* quarantine across filesystems */
		make_file(P(a, shm, "bad.mov"), 5000, 14);
		assert_int_equal(post_run(POST_QUARANTINE, a, q, NULL, "{}", &r), 0);
		assert_string_equal(r.final_path, P(p, q, "bad.2.mov"));
		assert_false(exists(a));
		assert_int_equal(count_entries(q), 11);
	}
}

/* The file moved into quarantine but its reason file cannot be written (no
 * inode left on the filesystem: the rename needs none, the reason file one):
 * the quarantine is done, status 0, and the warning says what is missing. */
static void test_quarantine_without_reason(void **state)
{
	char mnt[PATH_MAX], src[PATH_MAX], q[PATH_MAX], p[PATH_MAX];
	struct post_result r;
	int rc, left;

	(void)state;
	mkdir(P(mnt, root, "inodes"), 0755);
	/* Three inodes: the root, the quarantine folder and the file. */
	if (mount("tmpfs", mnt, "tmpfs", 0, "size=1m,nr_inodes=3") != 0) {
		print_message("cannot mount a tmpfs (%s): case skipped\n", strerror(errno));
		skip();
	}
	/* Nothing between mount and umount may fail an assertion. */
	mkdir(P(q, mnt, "q"), 0700);
	make_file(P(src, mnt, "bad.mov"), 100, 17);
	rc = post_run(POST_QUARANTINE, src, q, NULL, "{\"reason\":\"x\"}", &r);
	left = exists(src);
	P(p, q, "bad.mov");
	int moved = exists(p);
	int entries = count_entries(q);

	umount2(mnt, MNT_DETACH);
	assert_int_equal(rc, 0);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.error, "");
	assert_string_equal(r.final_path, p);
	assert_false(left);
	assert_true(moved);
	assert_int_equal(entries, 1); /* the file, no reason file, no temp */
	assert_non_null(strstr(r.warning, "bad.mov.reason.json"));
	assert_non_null(strstr(r.warning, "No space left"));
}

struct done {
	int calls;
	struct post_result res;
};

static void done_cb(const struct post_result *res, void *arg)
{
	struct done *d = arg;

	d->calls++;
	d->res = *res;
}

static void test_submit_async(void **state)
{
	char src[PATH_MAX], dst[PATH_MAX], sum[65];
	struct done d = {0};
	uv_loop_t loop;

	make_file(P(src, root, "a.wav"), 4096, 15);
	sha_of(src, sum);
	P(dst, root, "lib/a.wav");
	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(post_submit(&loop, POST_MOVE, src, dst, sum, NULL, done_cb, &d), 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(d.calls, 1);
	assert_int_equal(d.res.status, 0);
	assert_string_equal(d.res.final_path, dst);
	assert_false(exists(src));
	/* An error travels back the same way. */
	assert_int_equal(post_submit(&loop, POST_MOVE, src, dst, sum, NULL, done_cb, &d), 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(d.calls, 2);
	assert_int_equal(d.res.status, 0); /* dst holds the bytes: repaired, done */
	assert_int_equal(post_submit(&loop, POST_DELETE, dst, NULL, NULL, NULL, done_cb, &d), 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(d.calls, 3);
	assert_false(exists(dst));
	assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_template(void **state)
{
	const long long when = 1700000000; /* 2023-11-14 22:13:20 UTC */
	char out[256], small[8];

	assert_int_equal(post_expand_template("{tenant}/{yyyy}/{mm}/{asset_id}/{name}", "acme",
					      "42", "shoot/day1/clip.mov", when, out, sizeof(out)),
			 0);
	assert_string_equal(out, "acme/2023/11/42/clip.mov");
	assert_int_equal(post_expand_template("{tenant}/{relpath_dir}/{dd}-{name}", "acme", "42",
					      "clip.mov", when, out, sizeof(out)),
			 0);
	assert_string_equal(out, "acme/14-clip.mov"); /* no "//" for an empty dir */
	assert_int_equal(post_expand_template("{relpath_dir}/{name}", "acme", "42",
					      "shoot/day1/clip.mov", when, out, sizeof(out)),
			 0);
	assert_string_equal(out, "shoot/day1/clip.mov");
	assert_int_equal(
		post_expand_template("{relpath}", "a", "1", "x/y.mov", 0, out, sizeof(out)), 0);
	assert_string_equal(out, "x/y.mov");
	assert_int_equal(
		post_expand_template("{yyyy}/{mm}/{dd}", "a", "1", "y", 0, out, sizeof(out)), 0);
	assert_string_equal(out, "1970/01/01");

	assert_int_equal(
		post_expand_template("{tenant}/{year}", "a", "1", "y", when, out, sizeof(out)),
		-EINVAL);
	assert_int_equal(post_expand_template("{tenant", "a", "1", "y", when, out, sizeof(out)),
			 -EINVAL);
	assert_int_equal(post_expand_template("a}b", "a", "1", "y", when, out, sizeof(out)),
			 -EINVAL);
	assert_int_equal(post_expand_template("{tenant}/{name}", "acme", "1", "clip.mov", when,
					      small, sizeof(small)),
			 -ENAMETOOLONG);
	assert_int_equal(post_expand_template("{relpath}", "a", "1", "../../etc/passwd", when, out,
					      sizeof(out)),
			 -EINVAL);
	assert_int_equal(
		post_expand_template("{tenant}/{name}", "..", "1", "x", when, out, sizeof(out)),
		-EINVAL);
	assert_int_equal(
		post_expand_template("{relpath_dir}", "a", "1", "x", when, out, sizeof(out)),
		-EINVAL); /* empty */
	/* "..." is an ordinary name. */
	assert_int_equal(
		post_expand_template("{tenant}/...", "a", "1", "x", when, out, sizeof(out)), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_move_same_fs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_move_cross_fs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_move_wrong_checksum, setup, teardown),
		cmocka_unit_test_setup_teardown(test_move_repair, setup, teardown),
		cmocka_unit_test_setup_teardown(test_move_onto_other_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_move_enospc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_quarantine, setup, teardown),
		cmocka_unit_test_setup_teardown(test_quarantine_without_reason, setup, teardown),
		cmocka_unit_test_setup_teardown(test_submit_async, setup, teardown),
		cmocka_unit_test(test_template),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
