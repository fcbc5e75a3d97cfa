/*
 * config_int: what the configuration loader (config.c) and its checks
 * (config_check.c) share: the load context that collects every error with
 * its position, and the positions of the drop folders' paths.
 */
#ifndef MAM_CONFIG_INT_H
#define MAM_CONFIG_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "yamltree.h"

#define KEY_MAX 160

/* Where a drop folder's path was written, for the cross-folder checks. */
struct pathref {
	const struct folder_cfg *f;
	char key[KEY_MAX];
	int line, col;
	const struct ynode *move_to; /* position of move_to, NULL when absent */
	char move_key[KEY_MAX];
};

struct ctx {
	const char *file;
	struct config_errors *errs;
	size_t nerr;
	bool oom;
	size_t base; /* errs->n before this load: our messages follow */
	long *pos;   /* line * 1e6 + col of each of our messages, for sorting */
	struct pathref *paths;
	size_t n_paths, cap_paths;
};

/* Record one error; line 0 means "no position" (the file as a whole). */
void config_err_at(struct ctx *c, int line, int col, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
#define ERR(c, node, key, ...) config_err_at(c, (node)->line, (node)->col, key, __VA_ARGS__)
/* The same as a warning ("FILE:LINE:COL: warning: key ..."): the load still succeeds. */
void config_warn_at(struct ctx *c, int line, int col, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
#define WARN(c, node, key, ...) config_warn_at(c, (node)->line, (node)->col, key, __VA_ARGS__)
/* Report errors in file order, whichever check found them. */
void config_sort_errors(struct ctx *c);
/* Remember where a drop folder's path (and move_to) was written. */
void config_add_pathref(struct ctx *c, const struct folder_cfg *f, const char *key,
			const struct ynode *pathn, const struct ynode *moven);
/* Checks that span keys, after the walk. */
void config_check_folders(struct ctx *c);
void config_check_values(struct ctx *c, struct config *cfg, const struct ynode *root);

#endif
