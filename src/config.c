/*
 * Configuration loader (see config.h). The file is read once, parsed by
 * yamltree.c into nodes that remember their line and column, then walked
 * against declarative key tables: one row per key with its type, default,
 * bounds and struct offset, so the defaults, the documentation and the checks
 * cannot drift apart (pgbouncer's CF_ABS table, Redis's config table). The
 * walk never stops at the first problem: every error is collected as
 * "FILE:LINE:COL: key "NAME": reason" so a user fixes the file in one go.
 * Checks that span keys (overlapping folders, duplicate codes, move without
 * move_to) run after the walk, with the positions the walk recorded.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "config_int.h"
#include "config_value.h"
#include "yamltree.h"

enum ktype {
	T_INT,
	T_INT64,
	T_DOUBLE,
	T_BOOL,
	T_TRIBOOL,
	T_STR,
	T_PATH,
	T_ENUM,
	T_STRENUM,
	T_JOBS,
	T_GLOBS,
	T_SECTION,
	T_TENANTS,
	T_FOLDERS,
};

#define KF_REQUIRED 0x1u /* must be present (and not null) */
#define KF_NONEMPTY 0x2u /* a string that must not be "" */

struct keydef {
	const char *name;
	enum ktype type;
	size_t off;		   /* offset of the field in the table's struct */
	size_t off_n;		   /* T_GLOBS: offset of the count field */
	double min, max;	   /* numeric bounds; strings: max length in characters */
	double def;		   /* numeric, boolean and enum default */
	const char *sdef;	   /* string default (NULL = none) */
	const char *const *values; /* T_ENUM, T_STRENUM, T_JOBS: allowed names */
	unsigned flags;
	const struct keydef *sub; /* T_SECTION: its keys, same struct */
};

#define CF(f)  offsetof(struct config, f)
#define TF(f)  offsetof(struct tenant_cfg, f)
#define FF(f)  offsetof(struct folder_cfg, f)
#define DAY_MS 86400000.0

static const char *const after_names[] = {"leave", "move", "delete", NULL};
static const char *const mode_names[] = {"auto", "events", "poll", NULL};
static const char *const dup_names[] = {"ingest", "skip", "quarantine", NULL};
static const char *const job_names[] = {"metadata", "thumbnail", "proxy", NULL};
static const char *const logfmt_names[] = {"text", "json", NULL};

/* One key per line reads best as a table. */
/* clang-format off */
static const struct keydef database_keys[] = {
	{"conninfo", T_STR, CF(conninfo), 0, 0, 65536, 0, "", NULL, 0, NULL},
	{NULL},
};

static const struct keydef ingest_keys[] = {
	{"settle_ms", T_INT, CF(settle_ms), 0, 0, DAY_MS, 2000, NULL, NULL, 0, NULL},
	{"poll_interval_ms", T_INT, CF(poll_interval_ms), 0, 10, DAY_MS, 10000, NULL, NULL, 0, NULL},
	{"reconcile_interval_s", T_INT, CF(reconcile_interval_s), 0, 0, 30 * 86400, 3600, NULL, NULL, 0,
	 NULL},
	{"batch_max_files", T_INT, CF(batch_max_files), 0, 1, 100000, 500, NULL, NULL, 0, NULL},
	{"batch_max_ms", T_INT, CF(batch_max_ms), 0, 0, 60000, 20, NULL, NULL, 0, NULL},
	{"hash_read_size", T_INT, CF(hash_read_size), 0, 4096, 64 << 20, 2 << 20, NULL, NULL, 0, NULL},
	{"max_held_files", T_INT, CF(max_held_files), 0, 0, 100000000, 100000, NULL, NULL, 0, NULL},
	{"node_name", T_STR, CF(node_name), 0, 0, 255, 0, NULL, NULL, KF_NONEMPTY, NULL},
	{"folder_locks", T_BOOL, CF(folder_locks), 0, 0, 0, 1, NULL, NULL, 0, NULL},
	{NULL},
};

static const struct keydef worker_keys[] = {
	{"concurrency", T_INT, CF(worker_concurrency), 0, 1, 1024, -1, NULL, NULL, 0, NULL},
	{"derivatives_root", T_PATH, CF(derivatives_root), 0, 0, 0, 0,
	 "/var/lib/mam-ingest/derivatives", NULL, 0, NULL},
	{"thumbnail_offset_s", T_DOUBLE, CF(thumbnail_offset_s), 0, 0, 86400, 1.0, NULL, NULL, 0, NULL},
	{"proxy_height", T_INT, CF(proxy_height), 0, 16, 4320, 540, NULL, NULL, 0, NULL},
	{"job_timeout_s", T_INT, CF(job_timeout_s), 0, 1, 7 * 86400, 3600, NULL, NULL, 0, NULL},
	{"poll_ms", T_INT, CF(worker_poll_ms), 0, 10, 3600000, 5000, NULL, NULL, 0, NULL},
	{NULL},
};

static const struct keydef metrics_keys[] = {
	{"listen", T_STR, CF(metrics_listen), 0, 0, 255, 0, NULL, NULL, 0, NULL},
	{"worker_listen", T_STR, CF(metrics_worker_listen), 0, 0, 255, 0, NULL, NULL, 0, NULL},
	{NULL},
};

static const struct keydef log_keys[] = {
	{"format", T_STRENUM, CF(log_format), 0, 0, 0, 0, "text", logfmt_names, 0, NULL},
	{NULL},
};

static const struct keydef top_keys[] = {
	{"database", T_SECTION, 0, 0, 0, 0, 0, NULL, NULL, 0, database_keys},
	{"ingest", T_SECTION, 0, 0, 0, 0, 0, NULL, NULL, 0, ingest_keys},
	{"worker", T_SECTION, 0, 0, 0, 0, 0, NULL, NULL, 0, worker_keys},
	{"metrics", T_SECTION, 0, 0, 0, 0, 0, NULL, NULL, 0, metrics_keys},
	{"log", T_SECTION, 0, 0, 0, 0, 0, NULL, NULL, 0, log_keys},
	{"tenants", T_TENANTS, 0, 0, 0, 0, 0, NULL, NULL, 0, NULL},
	{NULL},
};

static const struct keydef tenant_keys[] = {
	{"code", T_STR, TF(code), 0, 0, 50, 0, NULL, NULL, KF_REQUIRED | KF_NONEMPTY, NULL},
	{"name", T_STR, TF(name), 0, 0, 255, 0, NULL, NULL, KF_REQUIRED | KF_NONEMPTY, NULL},
	{"active", T_TRIBOOL, TF(active), 0, 0, 0, -1, NULL, NULL, 0, NULL},
	{"storage_quota_bytes", T_INT64, TF(storage_quota_bytes), 0, 0, 9.2e18, -1, NULL, NULL, 0,
	 NULL},
	{"drop_folders", T_FOLDERS, 0, 0, 0, 0, 0, NULL, NULL, 0, NULL},
	{NULL},
};

static const struct keydef folder_keys[] = {
	{"path", T_PATH, FF(path), 0, 0, 0, 0, NULL, NULL, KF_REQUIRED, NULL},
	{"recursive", T_BOOL, FF(recursive), 0, 0, 0, 1, NULL, NULL, 0, NULL},
	{"after_ingest", T_ENUM, FF(after), 0, 0, 0, AFTER_LEAVE, NULL, after_names, 0, NULL},
	{"move_to", T_PATH, FF(move_to), 0, 0, 0, 0, NULL, NULL, 0, NULL},
	{"move_template", T_STR, FF(move_template), 0, 0, 1024, 0,
	 "{tenant}/{yyyy}/{mm}/{asset_id}/{name}", NULL, KF_NONEMPTY, NULL},
	{"jobs", T_JOBS, FF(jobs), 0, 0, 0, JOB_METADATA, NULL, job_names, 0, NULL},
	{"priority", T_INT, FF(priority), 0, 0, 100, 5, NULL, NULL, 0, NULL},
	{"mode", T_ENUM, FF(mode), 0, 0, 0, WATCH_AUTO, NULL, mode_names, 0, NULL},
	{"poll_interval_ms", T_INT, FF(poll_interval_ms), 0, 10, DAY_MS, -1, NULL, NULL, 0, NULL},
	{"settle_ms", T_INT, FF(settle_ms), 0, 0, DAY_MS, -1, NULL, NULL, 0, NULL},
	{"include", T_GLOBS, FF(include), FF(n_include), 0, 0, 0, NULL, NULL, 0, NULL},
	{"exclude", T_GLOBS, FF(exclude), FF(n_exclude), 0, 0, 0, NULL, NULL, 0, NULL},
	{"default_excludes", T_BOOL, FF(default_excludes), 0, 0, 0, 1, NULL, NULL, 0, NULL},
	{"ready_marker", T_STR, FF(ready_marker), 0, 0, 255, 0, NULL, NULL, KF_NONEMPTY, NULL},
	{"quarantine_to", T_PATH, FF(quarantine_to), 0, 0, 0, 0, NULL, NULL, 0, NULL},
	{"on_duplicate", T_ENUM, FF(on_duplicate), 0, 0, 0, DUP_INGEST, NULL, dup_names, 0, NULL},
	{"storage_type", T_STR, FF(storage_type), 0, 0, 50, 0, "local", NULL, KF_NONEMPTY, NULL},
	{"storage_tier", T_STR, FF(storage_tier), 0, 0, 50, 0, "hot", NULL, KF_NONEMPTY, NULL},
	{NULL},
};
/* clang-format on */

#define MAX_TABLE_KEYS 24

static char *xstrdup(struct ctx *c, const char *s)
{
	char *d = strdup(s);

	if (!d)
		c->oom = true;
	return d;
}

static const char *describe(const struct ynode *n)
{
	if (n->type != YNODE_SCALAR)
		return ynode_type_name(n);
	return n->plain ? "a plain scalar" : "a quoted string";
}

static void apply_defaults(struct ctx *c, const struct keydef *t, char *base)
{
	for (; t->name; t++) {
		void *f = base + t->off;

		switch (t->type) {
		case T_INT:
		case T_ENUM:
		case T_TRIBOOL: *(int *)f = (int)t->def; break;
		case T_INT64: *(int64_t *)f = (int64_t)t->def; break;
		case T_DOUBLE: *(double *)f = t->def; break;
		case T_BOOL: *(bool *)f = t->def != 0; break;
		case T_JOBS: *(unsigned *)f = (unsigned)t->def; break;
		case T_STR:
		case T_PATH:
		case T_STRENUM: *(char **)f = t->sdef ? xstrdup(c, t->sdef) : NULL; break;
		case T_SECTION: apply_defaults(c, t->sub, base); break;
		default: break;
		}
	}
}

static void walk_tenants(struct ctx *c, struct config *cfg, const struct ynode *v);
static void walk_folders(struct ctx *c, struct tenant_cfg *t, const char *tkey,
			 const struct ynode *v);
static void walk_map(struct ctx *c, const struct keydef *table, char *base, const char *prefix,
		     const struct ynode *map, const struct ynode **seen);

/* Set one field from its value node; errors name key. */
static void set_value(struct ctx *c, const struct keydef *k, char *base, const char *key,
		      const struct ynode *v)
{
	void *f = base + k->off;
	char names[256], *s;
	const char *why;
	long long ll;
	bool b;
	int rc;

	if (k->type == T_SECTION || k->type == T_TENANTS || k->type == T_FOLDERS) {
		if (ynode_is_null(v))
			return;
		if (k->type == T_SECTION && v->type != YNODE_MAP)
			return ERR(c, v, key, "expected a mapping, got %s", describe(v));
		if (k->type == T_SECTION)
			return walk_map(c, k->sub, base, key, v, NULL);
		if (v->type != YNODE_SEQ)
			return ERR(c, v, key, "expected a list, got %s", describe(v));
		if (k->type == T_TENANTS)
			return walk_tenants(c, (struct config *)base, v);
		return walk_folders(c, (struct tenant_cfg *)base, key, v);
	}
	if (ynode_is_null(v)) {
		if (k->flags & KF_REQUIRED)
			ERR(c, v, key, "a value is required");
		return;
	}
	if (k->type == T_JOBS || k->type == T_GLOBS) {
		struct ynode *const *items, *one;
		size_t n, i;
		char ikey[KEY_MAX];
		unsigned jobs = 0;
		char **globs;

		if (!cfgval_list_items(v, &items, &n, &one))
			return ERR(c, v, key, "expected a list, got %s", describe(v));
		globs = k->type == T_GLOBS ? calloc(n + 1, sizeof(char *)) : NULL;
		if (k->type == T_GLOBS && !globs)
			return (void)(c->oom = true);
		for (i = 0; i < n; i++) {
			snprintf(ikey, sizeof ikey, "%s[%zu]", key, i);
			if (items[i]->type != YNODE_SCALAR || ynode_is_null(items[i])) {
				ERR(c, items[i], ikey, "expected a string, got %s",
				    ynode_is_null(items[i]) ? "nothing" : describe(items[i]));
			} else if (k->type == T_GLOBS) {
				globs[i] = xstrdup(c, items[i]->scalar);
			} else if ((rc = cfgval_enum_index(k->values, items[i]->scalar)) < 0) {
				cfgval_join_names(k->values, names, sizeof names);
				ERR(c, items[i], ikey,
				    "invalid job type \"%s\": expected one of %s", items[i]->scalar,
				    names);
			} else {
				jobs |= 1u << rc;
			}
		}
		if (k->type == T_JOBS) {
			*(unsigned *)f = jobs;
			return;
		}
		for (i = 0; i < n; i++) /* compact the items that failed */
			if (!globs[i])
				memmove(&globs[i], &globs[i + 1], (n-- - i) * sizeof(char *)), i--;
		*(char ***)f = globs;
		*(size_t *)(base + k->off_n) = n;
		return;
	}
	if (v->type != YNODE_SCALAR)
		return ERR(c, v, key, "expected a single value, got %s", describe(v));
	if (strlen(v->scalar) != v->len)
		return ERR(c, v, key, "value contains a NUL byte");
	switch (k->type) {
	case T_INT:
	case T_INT64:
		rc = cfgval_parse_ll(v, &ll);
		if (rc == -EINVAL)
			return ERR(c, v, key, "expected an integer, got %s \"%s\"", describe(v),
				   v->scalar);
		if (rc < 0 || (double)ll < k->min || (double)ll > k->max)
			return ERR(c, v, key, "value %s is out of range (%.0f .. %.0f)", v->scalar,
				   k->min, k->max);
		if (k->type == T_INT)
			*(int *)f = (int)ll;
		else
			*(int64_t *)f = ll;
		return;
	case T_DOUBLE: {
		char *end;
		double d;

		errno = 0;
		d = strtod(v->scalar, &end);
		if (!v->plain || v->len == 0 || *end || errno || !isfinite(d))
			return ERR(c, v, key, "expected a number, got %s \"%s\"", describe(v),
				   v->scalar);
		if (d < k->min || d > k->max)
			return ERR(c, v, key, "value %s is out of range (%g .. %g)", v->scalar,
				   k->min, k->max);
		*(double *)f = d;
		return;
	}
	case T_BOOL:
	case T_TRIBOOL:
		if (cfgval_parse_bool(v, &b) < 0)
			return ERR(c, v, key, "expected true or false, got %s \"%s\"", describe(v),
				   v->scalar);
		if (k->type == T_BOOL)
			*(bool *)f = b;
		else
			*(int *)f = b;
		return;
	case T_ENUM:
	case T_STRENUM:
		rc = cfgval_enum_index(k->values, v->scalar);
		if (rc < 0) {
			cfgval_join_names(k->values, names, sizeof names);
			return ERR(c, v, key, "invalid value \"%s\": expected one of %s", v->scalar,
				   names);
		}
		if (k->type == T_ENUM) {
			*(int *)f = rc;
			return;
		}
		s = xstrdup(c, v->scalar);
		break;
	case T_PATH:
		why = cfgval_path_normalise(v->scalar, &s);
		if (why)
			return ERR(c, v, key, "%s, got \"%s\"", why, v->scalar);
		if (!s)
			return (void)(c->oom = true);
		break;
	default: /* T_STR */
		if ((k->flags & KF_NONEMPTY) && v->len == 0)
			return ERR(c, v, key, "must not be empty");
		if (k->max > 0 && cfgval_utf8_chars(v->scalar) > k->max)
			return ERR(c, v, key, "longer than %.0f characters", k->max);
		s = xstrdup(c, v->scalar);
		break;
	}
	free(*(char **)f);
	*(char **)f = s;
}

/*
 * Walk one mapping against a key table. seen (when not NULL, sized
 * MAX_TABLE_KEYS) receives the value node of each key found, for the checks
 * that need a position after the walk.
 */
static void walk_map(struct ctx *c, const struct keydef *table, char *base, const char *prefix,
		     const struct ynode *map, const struct ynode **seen)
{
	const struct ynode *found[MAX_TABLE_KEYS] = {0}, *keyn[MAX_TABLE_KEYS] = {0};
	char key[KEY_MAX];
	size_t i, j, best_d;
	const char *best;

	for (i = 0; i < map->n; i++) {
		const struct ynode *kn = map->pairs[i].key, *vn = map->pairs[i].value;

		snprintf(key, sizeof key, "%s%s%s", prefix, *prefix ? "." : "", kn->scalar);
		for (j = 0; table[j].name; j++)
			if (strcmp(table[j].name, kn->scalar) == 0)
				break;
		if (!table[j].name) {
			best = NULL;
			best_d = 3;
			for (j = 0; table[j].name; j++) {
				size_t d = cfgval_edit_distance(kn->scalar, table[j].name);

				if (d < best_d)
					best_d = d, best = table[j].name;
			}
			if (best)
				ERR(c, kn, key, "unknown key (did you mean \"%s\"?)", best);
			else
				ERR(c, kn, key, "unknown key");
			continue;
		}
		if (keyn[j]) {
			ERR(c, kn, key, "duplicate key (first given at line %d, column %d)",
			    keyn[j]->line, keyn[j]->col);
			continue;
		}
		keyn[j] = kn;
		found[j] = vn;
		set_value(c, &table[j], base, key, vn);
	}
	for (j = 0; table[j].name; j++) {
		if ((table[j].flags & KF_REQUIRED) && !found[j]) {
			snprintf(key, sizeof key, "%s%s%s", prefix, *prefix ? "." : "",
				 table[j].name);
			ERR(c, map, key, "missing required key");
		}
		if (seen)
			seen[j] = found[j];
	}
}

static void walk_tenants(struct ctx *c, struct config *cfg, const struct ynode *v)
{
	const struct ynode *seen[MAX_TABLE_KEYS], **codes;
	char prefix[KEY_MAX];
	size_t i, j;

	cfg->tenants = calloc(v->n ? v->n : 1, sizeof(*cfg->tenants));
	codes = calloc(v->n ? v->n : 1, sizeof(*codes));
	if (!cfg->tenants || !codes) {
		free(codes);
		c->oom = true;
		return;
	}
	for (i = 0; i < v->n; i++) {
		const struct ynode *item = v->items[i];
		struct tenant_cfg *t = &cfg->tenants[cfg->n_tenants];

		snprintf(prefix, sizeof prefix, "tenants[%zu]", i);
		if (item->type != YNODE_MAP) {
			ERR(c, item, prefix, "expected a mapping (a tenant), got %s",
			    describe(item));
			continue;
		}
		cfg->n_tenants++;
		apply_defaults(c, tenant_keys, (char *)t);
		walk_map(c, tenant_keys, (char *)t, prefix, item, seen);
		codes[cfg->n_tenants - 1] = t->code ? seen[0] : NULL;
		if (!t->code)
			continue;
		snprintf(prefix, sizeof prefix, "tenants[%zu].code", i);
		if (!cfgval_tenant_code_ok(t->code))
			ERR(c, seen[0], prefix,
			    "\"%s\" must start with a letter or digit and contain only letters, "
			    "digits, '.', '_' and '-' (it is used in file paths)",
			    t->code);
		for (j = 0; j + 1 < cfg->n_tenants; j++)
			if (codes[j] && strcmp(cfg->tenants[j].code, t->code) == 0) {
				ERR(c, seen[0], prefix,
				    "duplicate tenant code \"%s\" (first used at line %d, column "
				    "%d)",
				    t->code, codes[j]->line, codes[j]->col);
				break;
			}
	}
	free(codes);
}

static void walk_folders(struct ctx *c, struct tenant_cfg *t, const char *tkey,
			 const struct ynode *v)
{
	const struct ynode *seen[MAX_TABLE_KEYS];
	char prefix[KEY_MAX], key[KEY_MAX + 16], why[256];
	size_t i;

	t->folders = calloc(v->n ? v->n : 1, sizeof(*t->folders));
	if (!t->folders) {
		c->oom = true;
		return;
	}
	for (i = 0; i < v->n; i++) {
		const struct ynode *item = v->items[i];
		struct folder_cfg *f = &t->folders[t->n_folders];

		snprintf(prefix, sizeof prefix, "%s[%zu]", tkey, i);
		if (item->type != YNODE_MAP) {
			ERR(c, item, prefix, "expected a mapping (a drop folder), got %s",
			    describe(item));
			continue;
		}
		t->n_folders++;
		apply_defaults(c, folder_keys, (char *)f);
		f->line = item->line;
		f->col = item->col;
		walk_map(c, folder_keys, (char *)f, prefix, item, seen);
		/* seen[] follows folder_keys: 0 path, 2 after_ingest, 3 move_to, 4 move_template */
		if (f->after == AFTER_MOVE && !f->move_to) {
			snprintf(key, sizeof key, "%s.move_to", prefix);
			ERR(c, seen[2], key,
			    "after_ingest: move needs move_to (the library folder)");
		}
		if (seen[4] && f->move_template &&
		    !cfgval_template_ok(f->move_template, why, sizeof why)) {
			snprintf(key, sizeof key, "%s.move_template", prefix);
			ERR(c, seen[4], key, "%s", why);
		}
		if (f->path)
			config_add_pathref(c, f, prefix, seen[0], f->move_to ? seen[3] : NULL);
	}
}

int config_load_buffer(const char *name, const char *buf, size_t len, struct config **out,
		       struct config_errors *errs)
{
	struct config_errors local = {0};
	struct ctx c = {.file = name, .errs = errs ? errs : &local};
	struct config *cfg = NULL;
	struct ynode *root = NULL;
	char why[512];
	int rc, line = 0, col = 0;

	*out = NULL;
	c.base = c.errs->n;
	rc = ytree_parse(buf, len, &root, &line, &col, why, sizeof why);
	if (rc == -EINVAL) {
		config_err_at(&c, line, col, NULL, "%s", why);
		goto done;
	}
	if (rc < 0)
		goto done;
	cfg = calloc(1, sizeof(*cfg));
	if (!cfg || !(cfg->path = strdup(name))) {
		rc = -ENOMEM;
		goto done;
	}
	apply_defaults(&c, top_keys, (char *)cfg);
	if (root && !ynode_is_null(root) && root->type != YNODE_MAP)
		ERR(&c, root, NULL, "the configuration must be a mapping of sections, not %s",
		    describe(root));
	else if (root && root->type == YNODE_MAP)
		walk_map(&c, top_keys, (char *)cfg, "", root, NULL);
	config_check_folders(&c);
	config_check_values(&c, cfg, root);
	if (cfgval_finish(cfg) < 0)
		c.oom = true;
	rc = c.oom ? -ENOMEM : c.nerr ? -EINVAL : 0;
done:
	config_sort_errors(&c);
	ytree_free(root);
	free(c.paths);
	free(c.pos);
	config_errors_free(&local);
	if (rc == 0)
		*out = cfg;
	else
		config_free(cfg);
	return rc;
}
