/*
 * config_check: the configuration loader's error list (every problem is
 * collected as "FILE:LINE:COL: key "NAME": reason" and reported in file
 * order, among them warnings, which do not fail the load) and the checks
 * that span keys, run after the walk with the positions it recorded:
 * overlapping drop folders, a move_to inside a drop folder, listen
 * addresses, conninfo, even proxy heights, a small hash_read_size.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_int.h"
#include "config_value.h"
#include "hash_read.h"

#define WARNING_TAG "warning: "

bool config_msg_is_warning(const char *file, const char *msg)
{
	size_t n = strlen(file);
	const char *p = msg + n;
	int i;

	if (strncmp(msg, file, n) != 0)
		return false;
	/* "FILE: warning: ..." (no position), else "FILE:LINE:COL: warning: ..." */
	if (strncmp(p, ": " WARNING_TAG, 2 + strlen(WARNING_TAG)) == 0)
		return true;
	for (i = 0; i < 2; i++) {
		if (*p++ != ':' || *p < '0' || *p > '9')
			return false;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	return strncmp(p, ": " WARNING_TAG, 2 + strlen(WARNING_TAG)) == 0;
}

/* One message (warnings start WARNING_TAG) at its place in the file. */
static void add_msg(struct ctx *c, int line, int col, const char *key, const char *kind,
		    const char *fmt, va_list ap)
{
	char reason[1024], *msg = NULL, **msgs;
	long *pos;
	int rc;

	vsnprintf(reason, sizeof reason, fmt, ap);

	if (line <= 0)
		rc = asprintf(&msg, "%s: %s%s", c->file, kind, reason);
	else if (key)
		rc = asprintf(&msg, "%s:%d:%d: %skey \"%s\": %s", c->file, line, col, kind, key,
			      reason);
	else
		rc = asprintf(&msg, "%s:%d:%d: %s%s", c->file, line, col, kind, reason);
	if (rc < 0) {
		c->oom = true;
		return;
	}
	msgs = realloc(c->errs->msgs, (c->errs->n + 1) * sizeof(*msgs));
	if (!msgs) {
		free(msg);
		c->oom = true;
		return;
	}
	c->errs->msgs = msgs;
	pos = realloc(c->pos, (c->errs->n + 1 - c->base) * sizeof(*pos));
	if (!pos) {
		free(msg);
		c->oom = true;
		return;
	}
	c->pos = pos;
	pos[c->errs->n - c->base] = (long)line * 1000000L + col;
	msgs[c->errs->n++] = msg;
}

void config_err_at(struct ctx *c, int line, int col, const char *key, const char *fmt, ...)
{
	va_list ap;

	c->nerr++;
	va_start(ap, fmt);
	add_msg(c, line, col, key, "", fmt, ap);
	va_end(ap);
}

void config_warn_at(struct ctx *c, int line, int col, const char *key, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	add_msg(c, line, col, key, WARNING_TAG, fmt, ap);
	va_end(ap);
}

/* Report errors in file order, whichever check found them (stable insertion sort). */
void config_sort_errors(struct ctx *c)
{
	size_t n = c->errs->n - c->base, i, j;
	char **m;

	if (n < 2)
		return;
	m = c->errs->msgs + c->base;
	for (i = 1; i < n; i++) {
		long p = c->pos[i];
		char *msg = m[i];

		for (j = i; j > 0 && c->pos[j - 1] > p; j--) {
			c->pos[j] = c->pos[j - 1];
			m[j] = m[j - 1];
		}
		c->pos[j] = p;
		m[j] = msg;
	}
}

void config_add_pathref(struct ctx *c, const struct folder_cfg *f, const char *key,
			const struct ynode *pathn, const struct ynode *moven)
{
	struct pathref *r;

	if (c->n_paths == c->cap_paths) {
		size_t cap = c->cap_paths ? c->cap_paths * 2 : 8;

		r = realloc(c->paths, cap * sizeof(*r));
		if (!r) {
			c->oom = true;
			return;
		}
		c->paths = r;
		c->cap_paths = cap;
	}
	r = &c->paths[c->n_paths++];
	r->f = f;
	snprintf(r->key, sizeof r->key, "%s.path", key);
	snprintf(r->move_key, sizeof r->move_key, "%s.move_to", key);
	r->line = pathn->line;
	r->col = pathn->col;
	r->move_to = moven;
}

/*
 * Checks across folders of all tenants: two drop folders where one is the
 * other or lies beneath it would catalogue the same file twice, and a move_to
 * inside a drop folder would ingest every moved file again.
 */
void config_check_folders(struct ctx *c)
{
	size_t i, j;

	for (i = 0; i < c->n_paths; i++) {
		const struct pathref *a = &c->paths[i];

		for (j = 0; j < i; j++) {
			const struct pathref *b = &c->paths[j];

			if (cfgval_path_within(a->f->path, b->f->path) ||
			    cfgval_path_within(b->f->path, a->f->path))
				config_err_at(c, a->line, a->col, a->key,
					      "drop folder \"%s\" overlaps drop folder \"%s\" (%s "
					      "at line "
					      "%d): one is equal to or inside the other",
					      a->f->path, b->f->path, b->key, b->line);
		}
		for (j = 0; a->move_to && j < c->n_paths; j++)
			if (cfgval_path_within(a->f->move_to, c->paths[j].f->path))
				ERR(c, a->move_to, a->move_key,
				    "\"%s\" is inside drop folder \"%s\": moved files would be "
				    "ingested again",
				    a->f->move_to, c->paths[j].f->path);
	}
}

/*
 * metrics.<key>: "" means off, like absent; anything else must be HOST:PORT.
 * Returns the key's node (NULL when absent) for further checks.
 */
static const struct ynode *check_listen(struct ctx *c, const struct ynode *root, const char *key,
					char **val, const char *example)
{
	const struct ynode *n = cfgval_get(cfgval_get(root, "metrics"), key);
	char name[64];

	if (*val && !(*val)[0]) {
		free(*val);
		*val = NULL;
	}
	snprintf(name, sizeof name, "metrics.%s", key);
	if (n && *val && !cfgval_listen_ok(*val))
		ERR(c, n, name, "expected HOST:PORT such as \"%s\", got \"%s\"", example, *val);
	return n;
}

/* Checks of single values that need more than the key table says. */
void config_check_values(struct ctx *c, struct config *cfg, const struct ynode *root)
{
	const struct ynode *n;
	char why[512];

	n = cfgval_get(cfgval_get(root, "database"), "conninfo");
	if (n && !cfgval_conninfo_ok(cfg->conninfo, why, sizeof why))
		ERR(c, n, "database.conninfo", "%s", why);
	check_listen(c, root, "listen", &cfg->metrics_listen, "127.0.0.1:9187");
	n = check_listen(c, root, "worker_listen", &cfg->metrics_worker_listen, "127.0.0.1:9188");
	if (n && cfg->metrics_worker_listen && cfg->metrics_listen &&
	    strcmp(cfg->metrics_worker_listen, cfg->metrics_listen) == 0)
		ERR(c, n, "metrics.worker_listen",
		    "must differ from metrics.listen: the ingester and the worker each listen");
	/* Accepted since the first release, so a warning rather than an error. */
	n = cfgval_get(cfgval_get(root, "ingest"), "hash_read_size");
	if (n && cfg->hash_read_size < HASH_MIN_READ_SIZE)
		WARN(c, n, "ingest.hash_read_size",
		     "%d is below %d and acts as %d (libmagic reads the first %d bytes in one "
		     "buffer)",
		     cfg->hash_read_size, HASH_MIN_READ_SIZE, HASH_MIN_READ_SIZE,
		     HASH_MIN_READ_SIZE);
	n = cfgval_get(cfgval_get(root, "worker"), "proxy_height");
	if (n && cfg->proxy_height % 2)
		ERR(c, n, "worker.proxy_height", "must be even (H.264 needs even dimensions)");
}
