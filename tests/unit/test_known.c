/*
 * known.c: the fingerprint of an identity is sql/007's (first bytes of the
 * SHA-256 of ino, size, mtime_ns as big-endian int8 and the path), the set
 * answers for what was added as hex (from the database) or as an identity
 * (catalogued since), and a failure says what failed.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "known.h"

/* Expected values computed independently: Python's hashlib over
 * struct.pack('>QQQ', ino, size, mtime_ns) + path, first 16 bytes in hex. */
static const struct file_id clip_id = {
	.dev = 77, .ino = 123456789, .size = 4096, .mtime_ns = 1700000000123456789};
static const char clip_wire[] = "60c8af5285a64a1ab5237544713ee255";
static const struct file_id huge_ino = {.ino = UINT64_MAX - 4};
static const char huge_wire[] = "7cc4e154b4820523e12922cdc8f55e79";

static void hex8(const unsigned char fp[KNOWN_FP_LEN], char out[2 * KNOWN_FP_LEN + 1])
{
	for (int i = 0; i < KNOWN_FP_LEN; i++)
		snprintf(out + 2 * i, 3, "%02x", fp[i]);
}

static void test_fingerprint(void **state)
{
	unsigned char fp[KNOWN_FP_LEN];
	char hex[2 * KNOWN_FP_LEN + 1];

	(void)state;
	assert_int_equal(known_fingerprint("d01/clip.mov", &clip_id, fp), 0);
	hex8(fp, hex);
	assert_memory_equal(hex, clip_wire, 2 * KNOWN_FP_LEN);
	/* An inode above INT64_MAX is stored two's complement, as the int8 it is in SQL. */
	assert_int_equal(known_fingerprint("x", &huge_ino, fp), 0);
	hex8(fp, hex);
	assert_memory_equal(hex, huge_wire, 2 * KNOWN_FP_LEN);
}

static void test_set(void **state)
{
	struct known *k;
	struct file_id other = clip_id;
	char page[2 + 4 * KNOWN_FP_WIRE + 1];

	(void)state;
	assert_int_equal(known_create(&k), 0);
	/* The database's bytea text form, two fingerprints in one page. */
	snprintf(page, sizeof page, "\\x%s%s", clip_wire, huge_wire);
	assert_int_equal(known_add_hex(k, page), 0);
	assert_int_equal(known_count(k), 2);
	assert_true(known_has(k, "d01/clip.mov", &clip_id));
	assert_true(known_has(k, "x", &huge_ino));
	/* The device is not part of the identity; the path, size and mtime are. */
	other.dev = 78;
	assert_true(known_has(k, "d01/clip.mov", &other));
	assert_false(known_has(k, "d01/clip2.mov", &clip_id));
	other.mtime_ns++;
	assert_false(known_has(k, "d01/clip.mov", &other));
	assert_int_equal(known_add(k, "d01/clip.mov", &other), 0);
	assert_true(known_has(k, "d01/clip.mov", &other));
	assert_int_equal(known_count(k), 3);
	/* Adding again changes nothing. */
	assert_int_equal(known_add(k, "d01/clip.mov", &other), 0);
	assert_int_equal(known_count(k), 3);
	assert_int_equal(known_add_hex(k, "\\x0123"), -EINVAL);
	assert_int_equal(known_add_hex(k, "zz23456789abcdef0123456789abcdef"), -EINVAL);
	known_free(k);
}

/* Many additions grow the set; every one stays found. */
static void test_grow(void **state)
{
	struct known *k;
	struct file_id id = clip_id;
	char path[32];
	int i;

	(void)state;
	assert_int_equal(known_create(&k), 0);
	for (i = 0; i < 5000; i++) {
		id.ino = (uint64_t)i;
		snprintf(path, sizeof path, "d%02d/f%05d", i % 20, i);
		assert_int_equal(known_add(k, path, &id), 0);
	}
	assert_int_equal(known_count(k), 5000);
	for (i = 0; i < 5000; i++) {
		id.ino = (uint64_t)i;
		snprintf(path, sizeof path, "d%02d/f%05d", i % 20, i);
		assert_true(known_has(k, path, &id));
	}
	id.ino = 5000;
	assert_false(known_has(k, "d00/f05000", &id));
	known_free(k);
}

/* A path too long to fingerprint is refused as such, not as something else. */
static void test_too_long(void **state)
{
	struct known *k;
	unsigned char fp[KNOWN_FP_LEN];
	size_t n = 8193;
	char *p = malloc(n + 1);

	(void)state;
	assert_non_null(p);
	memset(p, 'a', n);
	p[n] = '\0';
	assert_int_equal(known_fingerprint(p, &clip_id, fp), -ENAMETOOLONG);
	assert_int_equal(known_create(&k), 0);
	assert_int_equal(known_add(k, p, &clip_id), -ENAMETOOLONG);
	assert_false(known_has(k, p, &clip_id));
	p[8192] = '\0';
	assert_int_equal(known_add(k, p, &clip_id), 0);
	assert_true(known_has(k, p, &clip_id));
	known_free(k);
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fingerprint),
		cmocka_unit_test(test_set),
		cmocka_unit_test(test_grow),
		cmocka_unit_test(test_too_long),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
