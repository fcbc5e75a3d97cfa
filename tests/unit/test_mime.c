/*
 * Unit tests of content type detection (mime.c) on real media headers: the
 * first 48 bytes of files written by ffmpeg 5.1 (testsrc, sine), which is
 * all libmagic needs to name each of them. Every sample must come out as
 * the type a MAM relies on (video/mp4, video/quicktime, application/mxf,
 * image/jpeg, image/png, audio/x-wav...), and the signatures mime.c answers
 * without libmagic must give exactly what libmagic itself says for the same
 * bytes: for the real headers, for every ISO base media brand and RIFF form
 * it knows (patched into a real header), and for near misses it must leave
 * to libmagic. Text and random bytes still go through libmagic (text/plain,
 * application/octet-stream).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <magic.h>

#include "hash_read.h"
#include "hasher.h"
#include "mime.h"

/* ffmpeg -f lavfi -i testsrc=size=64x48 (or sine=frequency=440 for audio),
 * then `head -c 48 FILE | xxd -i`. */
static const unsigned char h_a_mp4[] = {0x00, 0x00, 0x00, 0x1c, 0x66, 0x74, 0x79, 0x70, 0x69, 0x73,
					0x6f, 0x6d, 0x00, 0x00, 0x02, 0x00, 0x69, 0x73, 0x6f, 0x6d,
					0x69, 0x73, 0x6f, 0x32, 0x6d, 0x70, 0x34, 0x31, 0x00, 0x00,
					0x00, 0x08, 0x66, 0x72, 0x65, 0x65, 0x00, 0x00, 0x0b, 0xe4,
					0x6d, 0x64, 0x61, 0x74, 0x00, 0x00, 0x01, 0xb3};
static const unsigned char h_c_mp4[] = {0x00, 0x00, 0x00, 0x1c, 0x66, 0x74, 0x79, 0x70, 0x6d, 0x70,
					0x34, 0x32, 0x00, 0x00, 0x02, 0x00, 0x6d, 0x70, 0x34, 0x32,
					0x69, 0x73, 0x6f, 0x32, 0x6d, 0x70, 0x34, 0x31, 0x00, 0x00,
					0x00, 0x08, 0x66, 0x72, 0x65, 0x65, 0x00, 0x00, 0x07, 0xc1,
					0x6d, 0x64, 0x61, 0x74, 0x00, 0x00, 0x01, 0xb3};
static const unsigned char h_a_mov[] = {0x00, 0x00, 0x00, 0x14, 0x66, 0x74, 0x79, 0x70, 0x71, 0x74,
					0x20, 0x20, 0x00, 0x00, 0x02, 0x00, 0x71, 0x74, 0x20, 0x20,
					0x00, 0x00, 0x00, 0x08, 0x77, 0x69, 0x64, 0x65, 0x00, 0x00,
					0x0b, 0xe4, 0x6d, 0x64, 0x61, 0x74, 0x00, 0x00, 0x01, 0xb3,
					0x00, 0x10, 0x07, 0x00, 0x00, 0x01, 0xb6, 0x11};
static const unsigned char h_a_m4a[] = {0x00, 0x00, 0x00, 0x1c, 0x66, 0x74, 0x79, 0x70, 0x4d, 0x34,
					0x41, 0x20, 0x00, 0x00, 0x02, 0x00, 0x4d, 0x34, 0x41, 0x20,
					0x69, 0x73, 0x6f, 0x6d, 0x69, 0x73, 0x6f, 0x32, 0x00, 0x00,
					0x00, 0x08, 0x66, 0x72, 0x65, 0x65, 0x00, 0x00, 0x08, 0x0c,
					0x6d, 0x64, 0x61, 0x74, 0xde, 0x02, 0x00, 0x4c};
static const unsigned char h_a_m4v[] = {0x00, 0x00, 0x00, 0x1c, 0x66, 0x74, 0x79, 0x70, 0x4d, 0x34,
					0x56, 0x20, 0x00, 0x00, 0x02, 0x00, 0x4d, 0x34, 0x56, 0x20,
					0x69, 0x73, 0x6f, 0x6d, 0x69, 0x73, 0x6f, 0x32, 0x00, 0x00,
					0x00, 0x08, 0x66, 0x72, 0x65, 0x65, 0x00, 0x00, 0x07, 0xc1,
					0x6d, 0x64, 0x61, 0x74, 0x00, 0x00, 0x01, 0xb3};
static const unsigned char h_a_3gp[] = {0x00, 0x00, 0x00, 0x1c, 0x66, 0x74, 0x79, 0x70, 0x33, 0x67,
					0x70, 0x34, 0x00, 0x00, 0x02, 0x00, 0x33, 0x67, 0x70, 0x34,
					0x69, 0x73, 0x6f, 0x6d, 0x69, 0x73, 0x6f, 0x32, 0x00, 0x00,
					0x00, 0x08, 0x66, 0x72, 0x65, 0x65, 0x00, 0x00, 0x07, 0xc1,
					0x6d, 0x64, 0x61, 0x74, 0x00, 0x00, 0x01, 0xb3};
static const unsigned char h_a_mxf[] = {0x06, 0x0e, 0x2b, 0x34, 0x02, 0x05, 0x01, 0x01, 0x0d, 0x01,
					0x02, 0x01, 0x01, 0x02, 0x04, 0x00, 0x83, 0x00, 0x00, 0x68,
					0x00, 0x01, 0x00, 0x03, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00,
					0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
					0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
static const unsigned char h_a_jpg[] = {0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46,
					0x00, 0x01, 0x02, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00,
					0xff, 0xfe, 0x00, 0x10, 0x4c, 0x61, 0x76, 0x63, 0x35, 0x39,
					0x2e, 0x33, 0x37, 0x2e, 0x31, 0x30, 0x30, 0x00, 0xff, 0xdb,
					0x00, 0x43, 0x00, 0x08, 0x06, 0x06, 0x07, 0x06};
static const unsigned char h_a_png[] = {0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00,
					0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00, 0x40,
					0x00, 0x00, 0x00, 0x30, 0x08, 0x02, 0x00, 0x00, 0x00, 0x2e,
					0x29, 0xeb, 0x48, 0x00, 0x00, 0x00, 0x09, 0x70, 0x48, 0x59,
					0x73, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00};
static const unsigned char h_a_wav[] = {0x52, 0x49, 0x46, 0x46, 0x2e, 0x45, 0x00, 0x00, 0x57, 0x41,
					0x56, 0x45, 0x66, 0x6d, 0x74, 0x20, 0x10, 0x00, 0x00, 0x00,
					0x01, 0x00, 0x01, 0x00, 0x44, 0xac, 0x00, 0x00, 0x88, 0x58,
					0x01, 0x00, 0x02, 0x00, 0x10, 0x00, 0x4c, 0x49, 0x53, 0x54,
					0x1a, 0x00, 0x00, 0x00, 0x49, 0x4e, 0x46, 0x4f};
static const unsigned char h_a_avi[] = {0x52, 0x49, 0x46, 0x46, 0x94, 0x1e, 0x00, 0x00, 0x41, 0x56,
					0x49, 0x20, 0x4c, 0x49, 0x53, 0x54, 0x38, 0x12, 0x00, 0x00,
					0x68, 0x64, 0x72, 0x6c, 0x61, 0x76, 0x69, 0x68, 0x38, 0x00,
					0x00, 0x00, 0x40, 0x0d, 0x03, 0x00, 0xa8, 0x61, 0x00, 0x00,
					0x00, 0x00, 0x00, 0x00, 0x10, 0x09, 0x00, 0x00};
static const unsigned char h_a_webp[] = {0x52, 0x49, 0x46, 0x46, 0xb0, 0x02, 0x00, 0x00, 0x57, 0x45,
					 0x42, 0x50, 0x56, 0x50, 0x38, 0x20, 0xa4, 0x02, 0x00, 0x00,
					 0xf0, 0x12, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x00, 0x30, 0x00,
					 0x3e, 0x91, 0x40, 0x97, 0x47, 0xa5, 0xa4, 0x22, 0x21, 0x2d,
					 0x5c, 0xcb, 0x68, 0xb0, 0x12, 0x09, 0x6c, 0x00};

#define SAMPLE(a, type)                                                                            \
	{                                                                                          \
#a, a, sizeof a, type                                                              \
	}

static const struct sample {
	const char *name;
	const unsigned char *p;
	size_t len;
	const char *type;
} samples[] = {
	SAMPLE(h_a_mp4, "video/mp4"),	    /* -c:v mpeg4 a.mp4 (brand isom) */
	SAMPLE(h_c_mp4, "video/mp4"),	    /* -brand mp42 */
	SAMPLE(h_a_mov, "video/quicktime"), /* a.mov (brand "qt  ") */
	SAMPLE(h_a_m4a, "audio/x-m4a"),	    /* -c:a aac -f ipod a.m4a */
	SAMPLE(h_a_m4v, "video/x-m4v"),	    /* -f ipod a.m4v */
	SAMPLE(h_a_3gp, "video/3gpp"),	    /* -f 3gp */
	SAMPLE(h_a_mxf, "application/mxf"), /* -c:v mpeg2video -f mxf */
	SAMPLE(h_a_jpg, "image/jpeg"),	    /* -frames:v 1 a.jpg */
	SAMPLE(h_a_png, "image/png"),	    /* -frames:v 1 a.png */
	SAMPLE(h_a_wav, "audio/x-wav"),	    /* sine a.wav */
	SAMPLE(h_a_avi, "video/x-msvideo"), /* a.avi */
	SAMPLE(h_a_webp, "image/webp"),	    /* -frames:v 1 a.webp */
};

static magic_t plain_magic(void)
{
	static magic_t m;

	if (!m) {
		m = magic_open(MAGIC_MIME_TYPE | MAGIC_ERROR);
		assert_non_null(m);
		assert_int_equal(magic_load(m, NULL), 0);
	}
	return m;
}

/* What libmagic alone says, with the flags mime.c opens it with. */
static const char *libmagic_type(const void *p, size_t len)
{
	const char *t = magic_buffer(plain_magic(), p, len);

	assert_non_null(t);
	return t;
}

static void test_real_headers(void **state)
{
	char out[128];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof samples / sizeof samples[0]; i++) {
		const struct sample *s = &samples[i];

		print_message("%s\n", s->name);
		assert_int_equal(mime_detect_buffer(s->p, s->len, out, sizeof out), 0);
		assert_string_equal(out, s->type);
		assert_string_equal(libmagic_type(s->p, s->len), s->type);
		/* Every one of these is found without libmagic's soft magic. */
		assert_non_null(mime_media_signature(s->p, s->len));
	}
}

static void test_asset_types(void **state)
{
	(void)state;
	assert_string_equal(asset_type_guess("video/mp4", "d/clip.mp4"), "video");
	assert_string_equal(asset_type_guess("video/quicktime", "clip.mov"), "video");
	assert_string_equal(asset_type_guess("application/mxf", "clip.mxf"), "video");
	assert_string_equal(asset_type_guess("audio/x-wav", "take.wav"), "audio");
	assert_string_equal(asset_type_guess("image/jpeg", "still.jpg"), "image");
	assert_string_equal(asset_type_guess("image/png", "still.png"), "image");
	assert_string_equal(asset_type_guess("text/plain", "notes.txt"), "document");
	assert_string_equal(asset_type_guess("application/octet-stream", "a.r3d"), "video");
}

static void test_text_and_random(void **state)
{
	static const char txt[] = "hello world\nthis is a plain text file.\n";
	unsigned char rnd[4096];
	uint32_t x = 2463534242u;
	char out[128];
	size_t i;

	(void)state;
	assert_null(mime_media_signature(txt, sizeof txt - 1));
	assert_int_equal(mime_detect_buffer(txt, sizeof txt - 1, out, sizeof out), 0);
	assert_string_equal(out, "text/plain");

	for (i = 0; i < sizeof rnd; i++) { /* xorshift32: fixed, libmagic-proof bytes */
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		rnd[i] = (unsigned char)(x >> 24);
	}
	assert_null(mime_media_signature(rnd, sizeof rnd));
	assert_int_equal(mime_detect_buffer(rnd, sizeof rnd, out, sizeof out), 0);
	assert_string_equal(out, "application/octet-stream");
	assert_string_equal(libmagic_type(rnd, sizeof rnd), "application/octet-stream");

	/* Empty: libmagic's answer, whatever it is, and no crash. */
	assert_null(mime_media_signature("", 0));
	mime_detect_buffer("", 0, out, sizeof out);
	assert_string_equal(out, libmagic_type("", 0));
}

/* h with its bytes at off replaced by what; the result must agree with
 * libmagic whenever mime.c answers by itself. Returns mime.c's answer. */
static const char *patched(const unsigned char *h, size_t len, size_t off, const void *what,
			   size_t n)
{
	static unsigned char buf[64];
	const char *sig;

	assert_true(len <= sizeof buf && off + n <= len);
	memcpy(buf, h, len);
	memcpy(buf + off, what, n);
	sig = mime_media_signature(buf, len);
	print_message("%zu bytes patched at %zu: %s (libmagic %s)\n", n, off,
		      sig ? sig : "left to libmagic", libmagic_type(buf, len));
	if (sig)
		assert_string_equal(sig, libmagic_type(buf, len));
	return sig;
}

static void test_signatures_agree_with_libmagic(void **state)
{
	static const char *const brands[] = {"isom", "iso2", "iso4", "iso5", "iso6",
					     "mp41", "mp42", "avc1", "dash", "qt  ",
					     "M4A ", "M4V ", "3gp4", "3gp5", "3gp6"};
	/* libmagic names these differently or not at all: left to it. */
	static const char *const others[] = {"XAVC", "f4v ", "crx ", "heic", "M4P ", "3g2a"};
	static const unsigned char mxf_body[] = {0x03};
	static const unsigned char riff_size[] = {0xff, 0xff, 0xff, 0xff};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof brands / sizeof brands[0]; i++)
		assert_non_null(patched(h_a_mp4, sizeof h_a_mp4, 8, brands[i], 4));
	for (i = 0; i < sizeof others / sizeof others[0]; i++)
		assert_null(patched(h_a_mp4, sizeof h_a_mp4, 8, others[i], 4));
	assert_non_null(patched(h_a_wav, sizeof h_a_wav, 8, "AVI ", 4));
	assert_non_null(patched(h_a_wav, sizeof h_a_wav, 8, "WEBP", 4));
	assert_null(patched(h_a_wav, sizeof h_a_wav, 8, "AVIX", 4));
	assert_non_null(patched(h_a_wav, sizeof h_a_wav, 4, riff_size, 4));
	/* A body partition pack is not where an MXF file starts. */
	assert_null(patched(h_a_mxf, sizeof h_a_mxf, 13, mxf_body, 1));

	/* Too short for libmagic to say so: left to it. */
	assert_null(mime_media_signature(h_a_jpg, 3));
	assert_null(mime_media_signature(h_a_png, 8));
	assert_null(mime_media_signature(h_a_mp4, 11));
	assert_null(mime_media_signature(h_a_mxf, 13));
}

/*
 * The handle pool: more threads than usable CPUs detect at once, each answer
 * is right (a handle is never used by two calls at once, and its answer is
 * copied before it goes back), and no more handles are loaded than CPUs.
 */
#define POOL_THREADS 6
#define POOL_ROUNDS  40

static atomic_uint pool_wrong;

static void *pool_thread(void *arg)
{
	static const char txt[] = "hello world\nthis is a plain text file.\n";
	static const char gif[] = "GIF89a\x40\x00\x30\x00\xf7\x00\x00\x00\x00\x00";
	unsigned char rnd[1024];
	uint32_t x = 2463534242u + (uint32_t)(uintptr_t)arg;
	char out[128];
	int i;

	for (i = 0; i < (int)sizeof rnd; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		rnd[i] = (unsigned char)(x >> 24);
	}
	for (i = 0; i < POOL_ROUNDS; i++) {
		mime_detect_buffer(txt, sizeof txt - 1, out, sizeof out);
		if (strcmp(out, "text/plain") != 0)
			atomic_fetch_add(&pool_wrong, 1);
		mime_detect_buffer(gif, sizeof gif - 1, out, sizeof out);
		if (strcmp(out, "image/gif") != 0)
			atomic_fetch_add(&pool_wrong, 1);
		mime_detect_buffer(rnd, sizeof rnd, out, sizeof out);
		if (strcmp(out, "application/octet-stream") != 0)
			atomic_fetch_add(&pool_wrong, 1);
	}
	return NULL;
}

static void test_handle_pool(void **state)
{
	pthread_t thr[POOL_THREADS];
	char out[128];
	uintptr_t i;

	(void)state;
	mime_release();
	assert_int_equal(mime_handles(), 0);
	/* Loaded on first need, then lent again. */
	assert_int_equal(mime_detect_buffer("GIF89a", 6, out, sizeof out), 0);
	assert_string_equal(out, "image/gif");
	assert_int_equal(mime_handles(), 1);
	assert_int_equal(mime_detect_buffer("GIF89a", 6, out, sizeof out), 0);
	assert_int_equal(mime_handles(), 1);
	for (i = 0; i < POOL_THREADS; i++)
		assert_int_equal(pthread_create(&thr[i], NULL, pool_thread, (void *)i), 0);
	for (i = 0; i < POOL_THREADS; i++)
		pthread_join(thr[i], NULL);
	print_message("%u handles for %d threads on %u CPUs\n", mime_handles(), POOL_THREADS,
		      hash_cpus());
	assert_int_equal(atomic_load(&pool_wrong), 0);
	assert_in_range(mime_handles(), 1, hash_cpus() < POOL_THREADS ? hash_cpus() : POOL_THREADS);
	mime_release();
	assert_int_equal(mime_handles(), 0);
	/* Released is not broken: the next call loads one again. */
	assert_int_equal(mime_detect_buffer("GIF89a", 6, out, sizeof out), 0);
	assert_string_equal(out, "image/gif");
	assert_int_equal(mime_handles(), 1);
	mime_release();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_real_headers),
		cmocka_unit_test(test_asset_types),
		cmocka_unit_test(test_text_and_random),
		cmocka_unit_test(test_signatures_agree_with_libmagic),
		cmocka_unit_test(test_handle_pool),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
