/*
 * Single values of the configuration (see config_value.h): the parsing and
 * checks that do not need the key table, and the lifetime of struct config.
 * Scalars are typed the YAML 1.1 way users know from other tools: a quoted
 * "5" is a string, not a number, and yes/no/on/off are booleans. Passwords
 * are refused in the conninfo because the file is readable by every operator
 * and ends up in backups; libpq reads them from a pgpass file instead.
 */
#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "config_value.h"

/* Far above any real configuration; keeps a mistaken path from eating memory. */
#define CONFIG_MAX_SIZE (16 * 1024 * 1024)

/* Length in characters, as VARCHAR(n) counts them (UTF-8 lead bytes). */
size_t cfgval_utf8_chars(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		n += ((unsigned char)*s & 0xC0) != 0x80;
	return n;
}

/* Edit distance, for "did you mean" hints on unknown keys. */
size_t cfgval_edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), i, j, prev, tmp, d[64];

	if (la >= 64 || lb >= 64)
		return 64;
	for (j = 0; j <= lb; j++)
		d[j] = j;
	for (i = 1; i <= la; i++) {
		prev = d[0];
		d[0] = i;
		for (j = 1; j <= lb; j++) {
			tmp = d[j];
			d[j] = a[i - 1] == b[j - 1] ? prev : 1 + (prev < d[j] ? prev : d[j]);
			if (d[j] > d[j - 1] + 1)
				d[j] = d[j - 1] + 1;
			prev = tmp;
		}
	}
	return d[lb];
}

void cfgval_join_names(const char *const *names, char *out, size_t outsz)
{
	size_t i, len = 0;

	out[0] = '\0';
	for (i = 0; names[i] && len < outsz; i++)
		len += (size_t)snprintf(out + len, outsz - len, "%s%s", i ? ", " : "", names[i]);
}

/*
 * Normalise an absolute path: collapse "//" and "/./", drop the trailing
 * slash. ".." is refused rather than resolved, because lexical resolution
 * would be wrong across symlinks and a drop folder is a security boundary.
 */
const char *cfgval_path_normalise(const char *in, char **out)
{
	char *o, *w;
	const char *p = in;

	*out = NULL;
	if (in[0] != '/')
		return "must be an absolute path";
	o = malloc(strlen(in) + 2);
	if (!o)
		return NULL;
	w = o;
	while (*p) {
		const char *seg;
		size_t len;

		while (*p == '/')
			p++;
		seg = p;
		while (*p && *p != '/')
			p++;
		len = (size_t)(p - seg);
		if (len == 0 || (len == 1 && seg[0] == '.'))
			continue;
		if (len == 2 && seg[0] == '.' && seg[1] == '.') {
			free(o);
			return "must not contain \"..\"";
		}
		*w++ = '/';
		memcpy(w, seg, len);
		w += len;
	}
	if (w == o)
		*w++ = '/';
	*w = '\0';
	*out = o;
	return NULL;
}

/* True when b is a or lies beneath a. */
bool cfgval_path_within(const char *b, const char *a)
{
	size_t la = strlen(a);

	if (strcmp(a, "/") == 0)
		return true;
	return strncmp(a, b, la) == 0 && (b[la] == '\0' || b[la] == '/');
}

/* Parse a plain scalar as an integer; "_" digit separators are allowed as in YAML 1.1. */
int cfgval_parse_ll(const struct ynode *n, long long *v)
{
	char buf[64], *end;
	size_t i, j = 0;

	if (!n->plain || n->len == 0 || n->len >= sizeof buf)
		return -EINVAL;
	for (i = 0; i < n->len; i++)
		if (n->scalar[i] != '_')
			buf[j++] = n->scalar[i];
	buf[j] = '\0';
	if (!((buf[0] >= '0' && buf[0] <= '9') || buf[0] == '-' || buf[0] == '+'))
		return -EINVAL;
	errno = 0;
	*v = strtoll(buf, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	return *end ? -EINVAL : 0;
}

int cfgval_parse_bool(const struct ynode *n, bool *v)
{
	static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no",
									       "off"};
	size_t i;

	if (!n->plain)
		return -EINVAL;
	for (i = 0; i < 3; i++) {
		if (strcasecmp(n->scalar, yes[i]) == 0)
			return *v = true, 0;
		if (strcasecmp(n->scalar, no[i]) == 0)
			return *v = false, 0;
	}
	return -EINVAL;
}

int cfgval_enum_index(const char *const *names, const char *s)
{
	int i;

	for (i = 0; names[i]; i++)
		if (strcmp(names[i], s) == 0)
			return i;
	return -1;
}

bool cfgval_list_items(const struct ynode *v, struct ynode *const **items, size_t *n,
		       struct ynode **one)
{
	if (v->type == YNODE_SEQ) {
		*items = v->items;
		*n = v->n;
		return true;
	}
	if (v->type != YNODE_SCALAR)
		return false;
	one[0] = (struct ynode *)v;
	*items = one;
	*n = 1;
	return true;
}

bool cfgval_conninfo_ok(const char *conninfo, char *why, size_t whysz)
{
	PQconninfoOption *opts, *o;
	char *err = NULL;
	bool ok = true;

	opts = PQconninfoParse(conninfo, &err);
	if (!opts) {
		size_t len = err ? strlen(err) : 0;

		while (len > 0 && err[len - 1] == '\n')
			err[--len] = '\0';
		snprintf(why, whysz, "invalid conninfo: %s", err ? err : "out of memory");
		PQfreemem(err);
		return false;
	}
	for (o = opts; o->keyword; o++)
		if (strcmp(o->keyword, "password") == 0 && o->val)
			ok = false;
	PQconninfoFree(opts);
	if (!ok)
		snprintf(why, whysz,
			 "a password in the configuration file is refused: put it in a pgpass file "
			 "(~/.pgpass, or the file named by PGPASSFILE or passfile=, mode 0600)");
	return ok;
}

bool cfgval_listen_ok(const char *listen)
{
	const char *colon = strrchr(listen, ':');
	char *end;
	long port;

	if (!colon || colon == listen || colon[1] == '\0')
		return false;
	if (listen[0] == '[' && colon[-1] != ']')
		return false;
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	return *end == '\0' && errno == 0 && port >= 1 && port <= 65535;
}

/* The placeholders post.c expands (post_expand_template). */
/* clang-format off */
static const char *const template_fields[] = {
	"tenant", "yyyy", "mm", "dd", "asset_id", "name", "relpath", "relpath_dir", NULL,
};
/* clang-format on */

bool cfgval_template_ok(const char *tmpl, char *why, size_t whysz)
{
	const char *p = tmpl, *close;
	char field[32];
	size_t len;

	if (tmpl[0] == '/') {
		snprintf(why, whysz, "must be relative to move_to, got \"%s\"", tmpl);
		return false;
	}
	if (strcmp(tmpl, "..") == 0 || strncmp(tmpl, "../", 3) == 0 || strstr(tmpl, "/../") ||
	    (strlen(tmpl) >= 3 && strcmp(tmpl + strlen(tmpl) - 3, "/..") == 0)) {
		snprintf(why, whysz, "must not contain \"..\"");
		return false;
	}
	while ((p = strchr(p, '{')) != NULL) {
		close = strchr(p, '}');
		len = close ? (size_t)(close - p - 1) : 0;
		if (!close || len >= sizeof field) {
			snprintf(why, whysz, "unterminated or overlong placeholder at \"%.20s\"",
				 p);
			return false;
		}
		memcpy(field, p + 1, len);
		field[len] = '\0';
		if (cfgval_enum_index(template_fields, field) < 0) {
			char names[160];

			cfgval_join_names(template_fields, names, sizeof names);
			snprintf(why, whysz, "unknown placeholder {%s}: expected one of %s", field,
				 names);
			return false;
		}
		p = close + 1;
	}
	return true;
}

/* Codes appear in paths through {tenant}, so they are kept to safe characters. */
bool cfgval_tenant_code_ok(const char *code)
{
	const char *p;

	if (!((code[0] >= 'a' && code[0] <= 'z') || (code[0] >= 'A' && code[0] <= 'Z') ||
	      (code[0] >= '0' && code[0] <= '9')))
		return false;
	for (p = code; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-'))
			return false;
	return true;
}

const struct ynode *cfgval_get(const struct ynode *map, const char *key)
{
	size_t i;

	if (!map || map->type != YNODE_MAP)
		return NULL;
	for (i = 0; i < map->n; i++)
		if (strcmp(map->pairs[i].key->scalar, key) == 0)
			return map->pairs[i].value;
	return NULL;
}

/* Defaults that depend on other values or on the machine, once the walk is done. */
int cfgval_finish(struct config *cfg)
{
	size_t i, j;
	long ncpu;

	if (!cfg->node_name) {
		char host[256] = "localhost";

		if (gethostname(host, sizeof host - 1) < 0)
			strcpy(host, "localhost");
		host[sizeof host - 1] = '\0';
		cfg->node_name = strdup(host);
		if (!cfg->node_name)
			return -ENOMEM;
	}
	if (cfg->worker_concurrency < 1) {
		ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		cfg->worker_concurrency = ncpu > 0 ? (int)(ncpu < 1024 ? ncpu : 1024) : 1;
	}
	for (i = 0; i < cfg->n_tenants; i++) {
		struct tenant_cfg *t = &cfg->tenants[i];

		for (j = 0; j < t->n_folders; j++) {
			struct folder_cfg *f = &t->folders[j];

			f->tenant = t;
			if (f->settle_ms < 0)
				f->settle_ms = cfg->settle_ms;
			if (f->poll_interval_ms < 0)
				f->poll_interval_ms = cfg->poll_interval_ms;
			if (!f->quarantine_to && f->path &&
			    asprintf(&f->quarantine_to, "%s%s.quarantine", f->path,
				     strcmp(f->path, "/") ? "/" : "") < 0) {
				f->quarantine_to = NULL;
				return -ENOMEM;
			}
		}
	}
	return 0;
}

static void tenant_free(struct tenant_cfg *t)
{
	size_t j, k;

	for (j = 0; j < t->n_folders; j++) {
		struct folder_cfg *f = &t->folders[j];

		free(f->path);
		free(f->move_to);
		free(f->move_template);
		for (k = 0; k < f->n_include; k++)
			free(f->include[k]);
		for (k = 0; k < f->n_exclude; k++)
			free(f->exclude[k]);
		free(f->include);
		free(f->exclude);
		free(f->ready_marker);
		free(f->quarantine_to);
		free(f->storage_type);
		free(f->storage_tier);
	}
	free(t->folders);
	free(t->code);
	free(t->name);
}

void config_free(struct config *cfg)
{
	size_t i;

	if (!cfg)
		return;
	for (i = 0; i < cfg->n_tenants; i++)
		tenant_free(&cfg->tenants[i]);
	free(cfg->tenants);
	free(cfg->path);
	free(cfg->conninfo);
	free(cfg->node_name);
	free(cfg->derivatives_root);
	free(cfg->metrics_listen);
	free(cfg->metrics_worker_listen);
	free(cfg->log_format);
	free(cfg);
}

const struct folder_cfg *config_find_folder(const struct config *cfg, const char *tenant,
					    const char *path)
{
	size_t t, f;

	for (t = 0; t < cfg->n_tenants; t++) {
		if (strcmp(cfg->tenants[t].code, tenant) != 0)
			continue;
		for (f = 0; f < cfg->tenants[t].n_folders; f++)
			if (strcmp(cfg->tenants[t].folders[f].path, path) == 0)
				return &cfg->tenants[t].folders[f];
	}
	return NULL;
}

void config_errors_free(struct config_errors *errs)
{
	size_t i;

	if (!errs)
		return;
	for (i = 0; i < errs->n; i++)
		free(errs->msgs[i]);
	free(errs->msgs);
	errs->msgs = NULL;
	errs->n = 0;
}

const char *config_path_resolve(const char *arg)
{
	const char *env = getenv("MAM_INGEST_CONFIG");

	if (arg && *arg)
		return arg;
	if (env && *env)
		return env;
	return CONFIG_DEFAULT_PATH;
}

const char *config_job_name(unsigned job)
{
	switch (job) {
	case JOB_METADATA: return "metadata";
	case JOB_THUMBNAIL: return "thumbnail";
	case JOB_PROXY: return "proxy";
	default: return NULL;
	}
}

/* Append "FILE: reason" to errs; out of memory drops the message, not the error. */
__attribute__((format(printf, 3, 4))) static void file_error(struct config_errors *errs,
							     const char *path, const char *fmt, ...)
{
	char reason[512], *msg, **msgs;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof reason, fmt, ap);
	va_end(ap);
	if (asprintf(&msg, "%s: %s", path, reason) < 0)
		return;
	msgs = realloc(errs->msgs, (errs->n + 1) * sizeof(*msgs));
	if (!msgs) {
		free(msg);
		return;
	}
	msgs[errs->n++] = msg;
	errs->msgs = msgs;
}

/*
 * Read the file and refuse it when other users may write it: whoever can
 * edit the configuration chooses which folders are read and where files are
 * moved, so a group- or world-writable file is as good as an open door.
 */
int config_load(const char *path, struct config **out, struct config_errors *errs)
{
	struct config_errors local = {0}, *e = errs ? errs : &local;
	struct stat st;
	char *buf = NULL;
	size_t len = 0;
	ssize_t r;
	int fd, rc = 0;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		file_error(e, path, "could not open configuration file: %s", strerror(-rc));
		goto out;
	}
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		file_error(e, path, "could not stat configuration file: %s", strerror(-rc));
		goto out_fd;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		rc = -EPERM;
		file_error(e, path,
			   "refusing a configuration file that is group- or world-writable "
			   "(mode %04o); run: chmod go-w %s",
			   (unsigned)(st.st_mode & 07777), path);
		goto out_fd;
	}
	if (st.st_size > CONFIG_MAX_SIZE) {
		rc = -EFBIG;
		file_error(e, path, "configuration file larger than %d bytes", CONFIG_MAX_SIZE);
		goto out_fd;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		rc = -ENOMEM;
		goto out_fd;
	}
	/* Read to EOF rather than trusting st_size: the file may change under us. */
	while ((r = read(fd, buf + len, (size_t)st.st_size + 1 - len)) != 0) {
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 || len + (size_t)r > (size_t)st.st_size) {
			rc = r < 0 ? -errno : -EAGAIN;
			file_error(e, path, "could not read configuration file: %s",
				   r < 0 ? strerror(-rc) : "it changed while being read");
			goto out_buf;
		}
		len += (size_t)r;
	}
	rc = config_load_buffer(path, buf, len, out, e);
out_buf:
	free(buf);
out_fd:
	close(fd);
out:
	config_errors_free(&local);
	return rc;
}
