/*
 * slab: blocks are zeroed, aligned, distinct while live, reused after a
 * free within their size class, large sizes fall back to malloc, and
 * destroy releases everything (LeakSanitizer in the ASan pass).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "slab.h"

static void test_zeroed_aligned_distinct(void **state)
{
	struct slab s = {0};
	enum { N = 20000 };
	unsigned char **p = calloc(N, sizeof *p);
	size_t i, j;

	(void)state;
	assert_non_null(p);
	for (i = 0; i < N; i++) {
		size_t sz = 1 + i % 200;

		p[i] = slab_alloc(&s, sz);
		assert_non_null(p[i]);
		assert_int_equal((uintptr_t)p[i] % 8, 0);
		for (j = 0; j < sz; j++)
			assert_int_equal(p[i][j], 0);
		memset(p[i], (int)(i & 0xff), sz);
	}
	/* Nothing overlapped: every block still holds its own byte. */
	for (i = 0; i < N; i++)
		for (j = 0; j < 1 + i % 200; j++)
			assert_int_equal(p[i][j], i & 0xff);
	for (i = 0; i < N; i++)
		slab_free(&s, p[i], 1 + i % 200);
	slab_destroy(&s);
	assert_null(s.chunks);
	free(p);
}

static void test_reuse_within_class(void **state)
{
	struct slab s = {0};
	void *a, *b, *c;

	(void)state;
	a = slab_alloc(&s, 40);
	b = slab_alloc(&s, 40);
	assert_ptr_not_equal(a, b);
	memset(a, 0xab, 40);
	slab_free(&s, a, 40);
#ifndef SLAB_PLAIN
	/* 33..40 bytes is one class: the freed block comes back, zeroed. */
	c = slab_alloc(&s, 35);
	assert_ptr_equal(c, a);
	for (int i = 0; i < 35; i++)
		assert_int_equal(((unsigned char *)c)[i], 0);
	assert_int_equal(s.nchunks, 1);
#else
	c = slab_alloc(&s, 35);
#endif
	slab_free(&s, c, 35);
	slab_free(&s, b, 40);
	slab_destroy(&s);
}

static void test_large_and_many_chunks(void **state)
{
	struct slab s = {0};
	void *big = slab_alloc(&s, SLAB_MAX + 1);
	size_t i, n = 3 * SLAB_CHUNK / 48;
	void **p = calloc(n, sizeof *p);

	(void)state;
	assert_non_null(big);
	memset(big, 1, SLAB_MAX + 1);
	slab_free(&s, big, SLAB_MAX + 1);
	for (i = 0; i < n; i++)
		assert_non_null(p[i] = slab_alloc(&s, 48));
#ifndef SLAB_PLAIN
	/* 48-byte blocks, 16 bytes of chunk header: three chunks and a fourth. */
	assert_int_equal(s.nchunks, 4);
#endif
	for (i = 0; i < n; i++)
		slab_free(&s, p[i], 48);
	slab_destroy(&s);
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_zeroed_aligned_distinct),
		cmocka_unit_test(test_reuse_within_class),
		cmocka_unit_test(test_large_and_many_chunks),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
