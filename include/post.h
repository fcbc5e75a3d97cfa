/*
 * Post-ingest actions, run in the libuv threadpool after the catalogue
 * committed: move (rename on the same filesystem; else copy + fsync +
 * checksum verify + rename + unlink), delete, and quarantine (move to the
 * quarantine folder with a <name>.reason.json beside it). Also used at start
 * to repair moves interrupted by a crash.
 */
#ifndef MAM_POST_H
#define MAM_POST_H

#include <uv.h>

enum post_action { POST_MOVE, POST_DELETE, POST_QUARANTINE };

struct post_result {
	int status;	       /* 0 or -errno */
	char error[256];       /* names the path and the failing call */
	char final_path[4096]; /* where the file is now (POST_MOVE/QUARANTINE) */
	char warning[256];     /* status 0, but a step after the action failed (names it) */
};

typedef void (*post_cb)(const struct post_result *res, void *arg);

/*
 * POST_MOVE: src -> dst (parents created, 0755). expect_sha256 is checked on
 *   the copy when a rename is not possible (EXDEV). An existing dst with the
 *   same checksum counts as done (repair after a crash); another existing dst
 *   is an error -EEXIST.
 * POST_DELETE: unlink src (dst NULL).
 * POST_QUARANTINE: move src into the directory dst, under its own name (a
 *   numeric suffix when taken), and write <name>.reason.json holding reason
 *   (a JSON object text the caller built). The move is the action: when only
 *   the reason file cannot be written, the status is 0 and warning says why.
 */
int post_submit(uv_loop_t *loop, enum post_action action, const char *src, const char *dst,
		const char *expect_sha256, const char *reason_json, post_cb cb, void *arg)
	__attribute__((warn_unused_result));
/* Blocking version of the same (used by the repair pass and tests). */
int post_run(enum post_action action, const char *src, const char *dst, const char *expect_sha256,
	     const char *reason_json, struct post_result *res);
/* Expand a move template: {tenant} {yyyy} {mm} {dd} {asset_id} {name} {relpath} {relpath_dir}. */
int post_expand_template(const char *tmpl, const char *tenant, const char *asset_id,
			 const char *relpath, long long when_epoch, char *out, size_t outsz);

#endif
