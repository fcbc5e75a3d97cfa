/*
 * Unit tests of the ignore rules (ignore.c): every default junk/temp name is
 * ignored, real media names are not, folder include/exclude globs and ready
 * markers behave as documented.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ignore.h"

static struct folder_cfg folder(void)
{
	struct folder_cfg f = {.path = "/drop", .recursive = true, .default_excludes = true};

	return f;
}

static void test_default_junk(void **state)
{
	static const char *const junk[] = {
		"._clip.mov",	    ".DS_Store",   ".AppleDouble",
		".Spotlight-V100",  ".Trashes",	   ".fseventsd",
		".TemporaryItems",  "Thumbs.db",   "thumbs.db",
		"desktop.ini",	    "Desktop.ini", "~$report.docx",
		".clip.mov.Ab3dE9", "movie.part",  "x.filepart",
		"file.crdownload",  "scratch.tmp", ".syncthing.clip.mov.tmp",
		"sub/._clip.mov",
	};
	struct folder_cfg f = folder();
	size_t i;

	for (i = 0; i < sizeof junk / sizeof junk[0]; i++) {
		if (!ignore_file(&f, junk[i]))
			fail_msg("\"%s\" should be ignored", junk[i]);
	}
}

static void test_real_names(void **state)
{
	static const char *const real[] = {
		"clip.mov",	"DS_Store.mov", "sub/dir/photo.JPG",
		".hidden",	"a.b.c",	"partial.mov",
		"tmp",		"report.docx",	"clip.mov.Ab3dE",
		"~report.docx", "\xff\xfe.bin",
	};
	struct folder_cfg f = folder();
	size_t i;

	for (i = 0; i < sizeof real / sizeof real[0]; i++) {
		if (ignore_file(&f, real[i]))
			fail_msg("\"%s\" should not be ignored", real[i]);
	}
}

static void test_default_excludes_off(void **state)
{
	struct folder_cfg f = folder();

	f.default_excludes = false;
	assert_false(ignore_file(&f, ".DS_Store"));
	assert_false(ignore_file(&f, "movie.part"));
	assert_false(ignore_dir(&f, ".Trashes"));
}

static void test_junk_dirs(void **state)
{
	struct folder_cfg f = folder();

	assert_true(ignore_dir(&f, ".AppleDouble"));
	assert_true(ignore_dir(&f, "a/.Trashes"));
	assert_true(ignore_dir(&f, ".Spotlight-V100"));
	assert_true(ignore_dir(&f, ".fseventsd"));
	assert_true(ignore_dir(&f, ".TemporaryItems"));
	assert_false(ignore_dir(&f, "camera1"));
	assert_false(ignore_dir(&f, ".DS_Store.d"));
}

static void test_globs(void **state)
{
	char *ex[] = {"*.xml", "proxies", "raw/*.wav"};
	char *in[] = {"*.mov", "*.mxf"};
	struct folder_cfg f = folder();

	f.exclude = ex;
	f.n_exclude = 3;
	assert_true(ignore_file(&f, "a/b/sidecar.xml"));
	assert_true(ignore_dir(&f, "day1/proxies"));
	assert_true(ignore_file(&f, "raw/take.wav"));
	/* a glob with '/' is anchored at the folder and '*' does not cross '/' */
	assert_false(ignore_file(&f, "x/raw/take.wav"));
	assert_false(ignore_file(&f, "clip.mov"));
	f.include = in;
	f.n_include = 2;
	assert_false(ignore_file(&f, "a/clip.mov"));
	assert_false(ignore_file(&f, "clip.mxf"));
	assert_true(ignore_file(&f, "clip.mp4"));
	/* exclusion wins over inclusion, junk too */
	assert_true(ignore_file(&f, "._clip.mov"));
	/* include globs are case-sensitive as written */
	assert_true(ignore_file(&f, "CLIP.MOV"));
}

static void test_markers(void **state)
{
	struct folder_cfg f = folder();
	char out[64];

	assert_false(ignore_is_marker(&f, "clip.mov.done"));
	assert_int_equal(ignore_marker_path(&f, "clip.mov", out, sizeof out), -ENOENT);
	f.ready_marker = "{name}.done";
	assert_true(ignore_is_marker(&f, "clip.mov.done"));
	assert_true(ignore_is_marker(&f, "sub/clip.mov.done"));
	assert_false(ignore_is_marker(&f, ".done"));
	assert_false(ignore_is_marker(&f, "clip.mov"));
	assert_true(ignore_file(&f, "clip.mov.done"));
	assert_false(ignore_file(&f, "clip.mov"));
	assert_int_equal(ignore_marker_path(&f, "sub/clip.mov", out, sizeof out), 0);
	assert_string_equal(out, "sub/clip.mov.done");
	assert_int_equal(ignore_marker_path(&f, "clip.mov", out, 8), -ENAMETOOLONG);
	f.ready_marker = "READY_{name}";
	assert_true(ignore_is_marker(&f, "READY_x"));
	assert_int_equal(ignore_marker_path(&f, "d/x", out, sizeof out), 0);
	assert_string_equal(out, "d/READY_x");
	f.ready_marker = "COMPLETE";
	assert_true(ignore_is_marker(&f, "a/COMPLETE"));
	assert_int_equal(ignore_marker_path(&f, "a/x.mov", out, sizeof out), 0);
	assert_string_equal(out, "a/COMPLETE");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_default_junk),
		cmocka_unit_test(test_real_names),
		cmocka_unit_test(test_default_excludes_off),
		cmocka_unit_test(test_junk_dirs),
		cmocka_unit_test(test_globs),
		cmocka_unit_test(test_markers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
