/*
 * log_escape(): what goes into a log line from a file name. Controls, invalid
 * bytes and valid UTF-8 that a terminal would act on (C1 controls, line
 * separators, bidirectional overrides) become \xNN per byte; ordinary UTF-8
 * passes through; the output is bounded and terminated.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "log.h"

static const char *esc(const char *in)
{
	static char out[LOG_ESC_MAX];

	return log_escape(in, out, sizeof out);
}

static void test_plain_and_utf8_pass(void **state)
{
	(void)state;
	assert_string_equal(esc("clips/Day 1.mov"), "clips/Day 1.mov");
	/* NFC and NFD e-acute, CJK, an emoji: shown as they are. */
	assert_string_equal(esc("caf\xc3\xa9/cafe\xcc\x81/\xe6\x97\xa5/\xf0\x9f\x8e\xac"),
			    "caf\xc3\xa9/cafe\xcc\x81/\xe6\x97\xa5/\xf0\x9f\x8e\xac");
	/* U+00A0 (just past the C1 range) and U+2027, U+202F, U+2065, U+206A
	 * (just outside the separator and bidi ranges) are ordinary. */
	assert_string_equal(esc("\xc2\xa0\xe2\x80\xa7\xe2\x80\xaf\xe2\x81\xa5\xe2\x81\xaa"),
			    "\xc2\xa0\xe2\x80\xa7\xe2\x80\xaf\xe2\x81\xa5\xe2\x81\xaa");
}

static void test_c0_quote_backslash(void **state)
{
	(void)state;
	assert_string_equal(esc("a\tb\nc\x1b[31m\x7f"), "a\\x09b\\x0ac\\x1b[31m\\x7f");
	assert_string_equal(esc("say \"hi\" \\ bye"), "say \\\"hi\\\" \\\\ bye");
}

static void test_invalid_bytes(void **state)
{
	(void)state;
	assert_string_equal(esc("caf\xe9.mov"), "caf\\xe9.mov");
	/* Overlong '/', a lone continuation byte, a surrogate. */
	assert_string_equal(esc("\xc0\xaf\x80\xed\xa0\x80"), "\\xc0\\xaf\\x80\\xed\\xa0\\x80");
}

static void test_c1_and_display_controls(void **state)
{
	(void)state;
	/* U+0085 NEL, U+009B CSI, U+0080. */
	assert_string_equal(esc("a\xc2\x85"
				"b\xc2\x9b"
				"31m\xc2\x80"),
			    "a\\xc2\\x85b\\xc2\\x9b31m\\xc2\\x80");
	/* U+2028 LINE SEPARATOR, U+2029, U+202E RIGHT-TO-LEFT OVERRIDE. */
	assert_string_equal(esc("x\xe2\x80\xa8y\xe2\x80\xa9z\xe2\x80\xae"
				"vom.exe"),
			    "x\\xe2\\x80\\xa8y\\xe2\\x80\\xa9z\\xe2\\x80\\xaevom.exe");
	/* U+2066 LEFT-TO-RIGHT ISOLATE, U+2069 POP DIRECTIONAL ISOLATE. */
	assert_string_equal(esc("\xe2\x81\xa6"
				"a\xe2\x81\xa9"),
			    "\\xe2\\x81\\xa6a\\xe2\\x81\\xa9");
}

static void test_bounded(void **state)
{
	char in[4096], out[32];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof in - 1; i++)
		in[i] = (char)(i % 2 ? 0x01 : 'a');
	in[sizeof in - 1] = '\0';
	log_escape(in, out, sizeof out);
	assert_true(strlen(out) < sizeof out);
	assert_non_null(strstr(out, "..."));
	assert_int_equal(strncmp(out, "a\\x01a", 6), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_and_utf8_pass),
		cmocka_unit_test(test_c0_quote_backslash),
		cmocka_unit_test(test_invalid_bytes),
		cmocka_unit_test(test_c1_and_display_controls),
		cmocka_unit_test(test_bounded),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
