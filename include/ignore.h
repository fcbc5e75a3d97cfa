/*
 * Ignore rules: which names in a drop folder are never ingested.
 *
 * Files: the built-in junk/temp list (macOS, Windows/Office, transfer temp
 * files; folder option default_excludes), then the folder's exclude globs,
 * then its include globs (when there are any, a file must match one), and
 * the folder's ready markers themselves. Directories: the macOS metadata
 * directories are never descended, nor any directory matching an exclude
 * glob. A glob without '/' matches the base name; a glob with '/' matches
 * the whole path below the folder (fnmatch with FNM_PATHNAME).
 *
 * Pure string matching on an immutable folder_cfg, so the scanner may call it
 * from a threadpool thread.
 */
#ifndef MAM_IGNORE_H
#define MAM_IGNORE_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/* The built-in list (file names). */
bool ignore_default_junk(const char *base);
/* The built-in list of directories never descended. */
bool ignore_default_junk_dir(const char *base);
/* True when relpath (below the folder) names a ready marker of the folder. */
bool ignore_is_marker(const struct folder_cfg *f, const char *relpath);
/* True when the regular file relpath must not be reported. */
bool ignore_file(const struct folder_cfg *f, const char *relpath);
/* True when the directory relpath must not be watched or scanned. */
bool ignore_dir(const struct folder_cfg *f, const char *relpath);
/*
 * The ready marker of file relpath: its path below the folder, e.g.
 * "sub/clip.mov.done" for "{name}.done". Returns 0, -ENOENT when the folder
 * has no marker, -ENAMETOOLONG when out is too small.
 */
int ignore_marker_path(const struct folder_cfg *f, const char *relpath, char *out, size_t outsz);

#endif
