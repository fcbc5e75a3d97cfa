/*
 * Ignore rules (see ignore.h). The built-in list is matched case-insensitively
 * because the names it targets come from Windows and macOS clients whose
 * filesystems do not care about case ("thumbs.db" is the same junk as
 * "Thumbs.db"); folder globs are matched exactly as written.
 */
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <string.h>

#include "ignore.h"
#include "util.h"

static const char *const junk_files[] = {
	"._*",	     /* macOS AppleDouble resource forks */
	".DS_Store", /* macOS Finder */
	".AppleDouble",
	".Spotlight-V100",
	".Trashes",
	".fseventsd",
	".TemporaryItems",
	"Thumbs.db",	/* Windows Explorer */
	"desktop.ini",	/* Windows Explorer */
	"~$*",		/* Office lock files */
	".*.??????",	/* rsync temp: .NAME.XXXXXX */
	"*.part",	/* browsers, curl, wget */
	"*.filepart",	/* WinSCP */
	"*.crdownload", /* Chrome */
	"*.tmp",	/* everything else, Syncthing's .syncthing.NAME.tmp included */
	".syncthing.*.tmp",
};

static const char *const junk_dirs[] = {
	".AppleDouble", ".Spotlight-V100", ".Trashes", ".fseventsd", ".TemporaryItems",
};

static const char *base_name(const char *relpath)
{
	const char *slash = strrchr(relpath, '/');

	return slash ? slash + 1 : relpath;
}

static bool match_list(const char *const *pats, size_t n, const char *name, int flags)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (fnmatch(pats[i], name, flags) == 0)
			return true;
	return false;
}

/* A folder glob: with a '/', against the whole relative path. */
static bool match_globs(char *const *globs, size_t n, const char *relpath)
{
	size_t i;

	for (i = 0; i < n; i++) {
		const char *subject = strchr(globs[i], '/') ? relpath : base_name(relpath);

		if (fnmatch(globs[i], subject, FNM_PATHNAME) == 0)
			return true;
	}
	return false;
}

bool ignore_default_junk(const char *base)
{
	return match_list(junk_files, ARRAY_SIZE(junk_files), base, FNM_CASEFOLD);
}

bool ignore_default_junk_dir(const char *base)
{
	return match_list(junk_dirs, ARRAY_SIZE(junk_dirs), base, FNM_CASEFOLD);
}

bool ignore_is_marker(const struct folder_cfg *f, const char *relpath)
{
	const char *tmpl = f->ready_marker, *base = base_name(relpath), *brace;
	size_t pre, suf, n = strlen(base);

	if (!tmpl || !*tmpl)
		return false;
	brace = strstr(tmpl, "{name}");
	if (!brace)
		return strcmp(tmpl, base) == 0;
	pre = (size_t)(brace - tmpl);
	suf = strlen(brace + 6);
	/* A marker wraps a non-empty name: "{name}.done" does not claim ".done". */
	return n > pre + suf && strncmp(base, tmpl, pre) == 0 &&
	       strcmp(base + n - suf, brace + 6) == 0;
}

bool ignore_file(const struct folder_cfg *f, const char *relpath)
{
	const char *base = base_name(relpath);

	if (f->default_excludes && ignore_default_junk(base))
		return true;
	if (match_globs(f->exclude, f->n_exclude, relpath))
		return true;
	if (ignore_is_marker(f, relpath))
		return true;
	if (f->n_include > 0 && !match_globs(f->include, f->n_include, relpath))
		return true;
	return false;
}

bool ignore_dir(const struct folder_cfg *f, const char *relpath)
{
	if (f->default_excludes && ignore_default_junk_dir(base_name(relpath)))
		return true;
	return match_globs(f->exclude, f->n_exclude, relpath);
}

int ignore_marker_path(const struct folder_cfg *f, const char *relpath, char *out, size_t outsz)
{
	const char *tmpl = f->ready_marker, *base = base_name(relpath), *brace;
	size_t dirlen = (size_t)(base - relpath);
	int n;

	if (!tmpl || !*tmpl)
		return -ENOENT;
	brace = strstr(tmpl, "{name}");
	if (brace)
		n = snprintf(out, outsz, "%.*s%.*s%s%s", (int)dirlen, relpath, (int)(brace - tmpl),
			     tmpl, base, brace + 6);
	else
		n = snprintf(out, outsz, "%.*s%s", (int)dirlen, relpath, tmpl);
	return n < 0 || (size_t)n >= outsz ? -ENAMETOOLONG : 0;
}
