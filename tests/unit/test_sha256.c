/*
 * include/sha256.h against the FIPS 180-2 test vectors, in pieces of every
 * size. tests/CMakeLists.txt builds this file twice: as test_sha256 (the
 * build's own settings: OpenSSL's low-level SHA256_* functions) and as
 * test_sha256_evp with OPENSSL_NO_DEPRECATED and -Werror, where the header
 * must fall back to EVP (OpenSSL 3) and still compile without a warning.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sha256.h"

static const char abc_hex[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
static const char empty_hex[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/* "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq" */
static const char two_block_hex[] =
	"248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1";
/* One million 'a's. */
static const char million_hex[] =
	"cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";

static void hex_of_once(const char *s, size_t n, char hex[2 * SHA256_LEN + 1])
{
	unsigned char md[SHA256_LEN];

	assert_int_equal(sha256_once(s, n, md), 0);
	sha256_hex(md, hex);
}

static void test_once(void **state)
{
	char hex[2 * SHA256_LEN + 1];
	const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";

	(void)state;
	hex_of_once("abc", 3, hex);
	assert_string_equal(hex, abc_hex);
	hex_of_once("", 0, hex);
	assert_string_equal(hex, empty_hex);
	hex_of_once(two, strlen(two), hex);
	assert_string_equal(hex, two_block_hex);
}

/* The same million bytes fed in pieces of every kind of size give one digest. */
static void test_pieces(void **state)
{
	size_t total = 1000000;
	char *a = malloc(total);
	unsigned char md[SHA256_LEN];
	char hex[2 * SHA256_LEN + 1];
	static const size_t steps[] = {1, 3, 63, 64, 65, 200, 65536, 1000000};
	size_t i, off;

	(void)state;
	assert_non_null(a);
	memset(a, 'a', total);
	for (i = 0; i < sizeof steps / sizeof steps[0]; i++) {
		size_t step = steps[i];
		struct sha256 s;

		assert_int_equal(sha256_init(&s), 0);
		for (off = 0; off < total; off += step) {
			size_t n = total - off < step ? total - off : step;

			assert_int_equal(sha256_update(&s, a + off, n), 0);
		}
		assert_int_equal(sha256_final(&s, md), 0);
		sha256_hex(md, hex);
		assert_string_equal(hex, million_hex);
	}
	free(a);
}

/* An error path releases the context without a result (EVP: no leak under ASan). */
static void test_drop(void **state)
{
	struct sha256 s;

	(void)state;
	assert_int_equal(sha256_init(&s), 0);
	assert_int_equal(sha256_update(&s, "abc", 3), 0);
	sha256_drop(&s);
}

#if defined(OPENSSL_NO_DEPRECATED) && OPENSSL_VERSION_MAJOR == 3 &&                                \
	!defined(OPENSSL_NO_DEPRECATED_3_0)
#error "OPENSSL_NO_DEPRECATED did not reach OpenSSL's headers: the EVP build would test nothing new"
#endif

/* The build that asked for it got the implementation it asked for. */
static void test_impl(void **state)
{
	(void)state;
#ifdef OPENSSL_NO_DEPRECATED_3_0
	assert_string_equal(SHA256_IMPL, "EVP");
#elif OPENSSL_VERSION_MAJOR < 4
	assert_string_equal(SHA256_IMPL, "SHA256_Init");
#endif
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_once),
		cmocka_unit_test(test_pieces),
		cmocka_unit_test(test_drop),
		cmocka_unit_test(test_impl),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
