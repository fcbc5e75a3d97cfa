/*
 * Unit tests of media.c: how the worker classifies what ffprobe found (the
 * outputs below are ffprobe 5.1's, for files made with ffmpeg), reads ffmpeg
 * -progress lines, picks the thumbnail frame and writes file:// URLs.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "media.h"

static const char video_flat[] = "streams.stream.0.index=0\n"
				 "streams.stream.0.codec_type=\"video\"\n"
				 "streams.stream.0.width=320\n"
				 "streams.stream.0.height=240\n"
				 "streams.stream.0.disposition.attached_pic=0\n"
				 "streams.stream.1.index=1\n"
				 "streams.stream.1.codec_type=\"audio\"\n"
				 "streams.stream.1.disposition.attached_pic=0\n"
				 "format.format_name=\"mov,mp4,m4a,3gp,3g2,mj2\"\n"
				 "format.duration=\"3.000000\"\n";

static void test_video(void **state)
{
	struct media_probe p;

	(void)state;
	assert_int_equal(media_probe_parse(video_flat, &p), 0);
	assert_int_equal(p.kind, MEDIA_VIDEO);
	assert_true(p.has_audio);
	assert_int_equal(p.width, 320);
	assert_int_equal(p.height, 240);
	assert_true(p.duration_s > 2.999 && p.duration_s < 3.001);
	assert_string_equal(media_kind_name(p.kind), "video");
}

static void test_still_image(void **state)
{
	static const char png[] = "streams.stream.0.index=0\n"
				  "streams.stream.0.codec_type=\"video\"\n"
				  "streams.stream.0.width=640\n"
				  "streams.stream.0.height=480\n"
				  "streams.stream.0.disposition.attached_pic=0\n"
				  "format.format_name=\"png_pipe\"\n"
				  "format.duration=\"N/A\"\n";
	static const char jpg[] = "streams.stream.0.codec_type=\"video\"\n"
				  "format.format_name=\"image2\"\n";
	struct media_probe p;

	(void)state;
	assert_int_equal(media_probe_parse(png, &p), 0);
	assert_int_equal(p.kind, MEDIA_IMAGE);
	assert_true(p.duration_s < 0); /* N/A is unknown, not zero */
	assert_int_equal(media_probe_parse(jpg, &p), 0);
	assert_int_equal(p.kind, MEDIA_IMAGE);
}

static void test_audio_with_cover_art(void **state)
{
	/* An MP3 with embedded cover art is audio: the picture is attached_pic. */
	static const char mp3[] = "streams.stream.0.index=0\n"
				  "streams.stream.0.codec_type=\"audio\"\n"
				  "streams.stream.0.disposition.attached_pic=0\n"
				  "streams.stream.1.index=1\n"
				  "streams.stream.1.codec_type=\"video\"\n"
				  "streams.stream.1.width=500\n"
				  "streams.stream.1.height=500\n"
				  "streams.stream.1.disposition.attached_pic=1\n"
				  "format.format_name=\"mp3\"\n"
				  "format.duration=\"2.000000\"\n";
	struct media_probe p;

	(void)state;
	assert_int_equal(media_probe_parse(mp3, &p), 0);
	assert_int_equal(p.kind, MEDIA_AUDIO);
	assert_int_equal(p.width, 0);
}

static void test_nothing_usable(void **state)
{
	static const char data[] = "format.format_name=\"data\"\nformat.duration=\"1.0\"\n";
	struct media_probe p;

	(void)state;
	assert_int_equal(media_probe_parse(data, &p), 0);
	assert_int_equal(p.kind, MEDIA_NONE);
	assert_int_equal(media_probe_parse("", &p), -EINVAL);
	assert_int_equal(media_probe_parse("garbage without equals\n", &p), -EINVAL);
	/* Out-of-range stream indexes are ignored, not written past the table. */
	assert_int_equal(media_probe_parse("streams.stream.99999.codec_type=\"video\"\n"
					   "format.format_name=\"x\"\n",
					   &p),
			 0);
	assert_int_equal(p.kind, MEDIA_NONE);
}

static void test_progress(void **state)
{
	int64_t us = -1;

	(void)state;
	assert_true(media_progress_line("out_time_us=1500000", &us));
	assert_int_equal(us, 1500000);
	assert_true(media_progress_line("out_time_ms=3008000", &us));
	assert_int_equal(us, 3008000);
	assert_false(media_progress_line("out_time_us=N/A", &us));
	assert_false(media_progress_line("progress=continue", &us));
	assert_int_equal(media_progress_pct(1500000, 3.0), 50);
	assert_int_equal(media_progress_pct(3008000, 3.0), 99); /* 100 only on completion */
	assert_int_equal(media_progress_pct(1000000, -1), 0);	/* unknown duration */
}

static void test_thumbnail_time(void **state)
{
	(void)state;
	assert_true(media_thumbnail_time(1.0, 3.0) == 1.0);
	assert_true(media_thumbnail_time(10.0, 3.0) == 1.5); /* past the end: the middle */
	assert_true(media_thumbnail_time(5.0, -1) == 5.0);   /* unknown duration: as asked */
	assert_true(media_thumbnail_time(-2.0, 3.0) == 0.0);
}

static void test_url(void **state)
{
	char buf[64];

	(void)state;
	assert_int_equal(media_file_url("/srv/a b/é#?.mp4", buf, sizeof buf), 0);
	assert_string_equal(buf, "file:///srv/a%20b/%C3%A9%23%3F.mp4");
	assert_int_equal(media_file_url("/x/y-z_~.1", buf, sizeof buf), 0);
	assert_string_equal(buf, "file:///x/y-z_~.1");
	assert_int_equal(
		media_file_url("/a very long path that does not fit in the buffer at all", buf, 24),
		-ENAMETOOLONG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_video),
		cmocka_unit_test(test_still_image),
		cmocka_unit_test(test_audio_with_cover_art),
		cmocka_unit_test(test_nothing_usable),
		cmocka_unit_test(test_progress),
		cmocka_unit_test(test_thumbnail_time),
		cmocka_unit_test(test_url),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
