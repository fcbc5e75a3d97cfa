/*
 * Unit tests of the configuration loader: the shipped example loads, every
 * default is what config.h promises, and each kind of mistake a user can make
 * is reported at the right FILE:LINE:COL with the key's name, all of them in
 * one pass. Files are written to a temp dir when the test is about the file
 * itself (permissions); everything else goes through config_load_buffer.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"

#define SHIPPED TEST_DATA_DIR "/../../config/mam-ingest.yaml"

static int load(const char *yaml, struct config **cfg, struct config_errors *e)
{
	return config_load_buffer("NAME", yaml, strlen(yaml), cfg, e);
}

/* The message that contains every given fragment, or NULL. */
static const char *find_err(const struct config_errors *e, const char *a, const char *b)
{
	size_t i;

	for (i = 0; i < e->n; i++)
		if (strstr(e->msgs[i], a) && (!b || strstr(e->msgs[i], b)))
			return e->msgs[i];
	return NULL;
}

static void dump(const struct config_errors *e)
{
	size_t i;

	for (i = 0; i < e->n; i++)
		fprintf(stderr, "  %s\n", e->msgs[i]);
}

/* Expect loading to fail with a message holding both fragments. */
static void expect_err(const char *yaml, const char *a, const char *b)
{
	struct config_errors e = {0};
	struct config *cfg = (struct config *)1;
	int rc = load(yaml, &cfg, &e);

	if (rc != -EINVAL || !find_err(&e, a, b)) {
		fprintf(stderr, "expected [%s] [%s] in:\n", a, b ? b : "");
		dump(&e);
	}
	assert_int_equal(rc, -EINVAL);
	assert_null(cfg);
	assert_non_null(find_err(&e, a, b));
	config_errors_free(&e);
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = malloc(1 << 20);

	assert_non_null(f);
	assert_non_null(buf);
	*len = fread(buf, 1, (1 << 20) - 1, f);
	buf[*len] = '\0';
	fclose(f);
	return buf;
}

static char *write_tmp(const char *yaml, mode_t mode)
{
	char *path = strdup("/tmp/test_config.XXXXXX");
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
	close(fd);
	assert_int_equal(chmod(path, mode), 0); /* explicit: not subject to the umask */
	return path;
}

static void test_shipped_example_loads(void **state)
{
	struct config_errors e = {0};
	struct config *cfg = NULL;
	size_t len;
	char *buf = slurp(SHIPPED, &len), *path;
	const struct folder_cfg *f;

	if (config_load_buffer(SHIPPED, buf, len, &cfg, &e) != 0)
		dump(&e);
	assert_int_equal(e.n, 0);
	assert_non_null(cfg);
	assert_string_equal(cfg->conninfo, "host=/run/postgresql dbname=mam");
	assert_int_equal(cfg->n_tenants, 2);
	assert_string_equal(cfg->tenants[0].code, "acme");
	f = &cfg->tenants[0].folders[0];
	assert_string_equal(f->path, "/srv/drop/acme");
	assert_ptr_equal(f->tenant, &cfg->tenants[0]);
	f = &cfg->tenants[1].folders[0];
	assert_int_equal(f->after, AFTER_MOVE);
	assert_string_equal(f->move_to, "/srv/library/globex");
	assert_int_equal(f->jobs, JOB_METADATA | JOB_THUMBNAIL | JOB_PROXY);
	f = &cfg->tenants[1].folders[1];
	assert_int_equal(f->mode, WATCH_POLL);
	assert_int_equal(f->n_include, 3);
	assert_int_equal(f->on_duplicate, DUP_SKIP);
	config_free(cfg);

	/* And through config_load, as check-config reads it, once mode 0644. */
	path = write_tmp(buf, 0644);
	assert_int_equal(config_load(path, &cfg, &e), 0);
	assert_string_equal(cfg->path, path);
	config_free(cfg);
	unlink(path);
	free(path);
	free(buf);
}

/* The data files config_cli.sh also feeds to the binary. */
static void test_data_files(void **state)
{
	struct config_errors e = {0};
	struct config *cfg;
	size_t len;
	char *buf = slurp(TEST_DATA_DIR "/config/unknown-key-line8.yaml", &len);

	assert_int_equal(config_load_buffer("u.yaml", buf, len, &cfg, &e), -EINVAL);
	assert_int_equal(e.n, 1);
	assert_string_equal(e.msgs[0], "u.yaml:8:9: key \"tenants[0].drop_folders[0].recursve\": "
				       "unknown key (did you mean \"recursive\"?)");
	config_errors_free(&e);
	free(buf);
	buf = slurp(TEST_DATA_DIR "/config/syntax-error.yaml", &len);
	assert_int_equal(config_load_buffer("s.yaml", buf, len, &cfg, &e), -EINVAL);
	assert_int_equal(e.n, 1);
	assert_non_null(strstr(e.msgs[0], "s.yaml:5:8: YAML syntax error"));
	config_errors_free(&e);
	free(buf);
}

static void test_defaults(void **state)
{
	struct config *cfg = NULL;
	const struct folder_cfg *f;
	const struct tenant_cfg *t;

	assert_int_equal(load("tenants:\n"
			      "  - code: t1\n"
			      "    name: T one\n"
			      "    drop_folders:\n"
			      "      - path: /srv/drop/t1/\n",
			      &cfg, NULL),
			 0);
	assert_string_equal(cfg->conninfo, ""); /* PG* environment */
	assert_int_equal(cfg->settle_ms, 2000);
	assert_int_equal(cfg->poll_interval_ms, 10000);
	assert_int_equal(cfg->reconcile_interval_s, 3600);
	assert_int_equal(cfg->batch_max_files, 500);
	assert_int_equal(cfg->batch_max_ms, 20);
	assert_int_equal(cfg->hash_read_size, 2 << 20);
	assert_int_equal(cfg->max_held_files, 100000);
	assert_non_null(cfg->node_name);
	assert_true(cfg->node_name[0] != '\0');
	assert_true(cfg->folder_locks);
	assert_int_equal(cfg->worker_concurrency, sysconf(_SC_NPROCESSORS_ONLN));
	assert_string_equal(cfg->derivatives_root, "/var/lib/mam-ingest/derivatives");
	assert_true(cfg->thumbnail_offset_s == 1.0);
	assert_int_equal(cfg->proxy_height, 540);
	assert_int_equal(cfg->job_timeout_s, 3600);
	assert_int_equal(cfg->worker_poll_ms, 5000);
	assert_null(cfg->metrics_listen);
	assert_string_equal(cfg->log_format, "text");
	t = &cfg->tenants[0];
	assert_int_equal(t->active, -1);
	assert_int_equal(t->storage_quota_bytes, -1);
	assert_int_equal(t->n_folders, 1);
	f = &t->folders[0];
	assert_string_equal(f->path, "/srv/drop/t1"); /* trailing slash dropped */
	assert_true(f->recursive);
	assert_int_equal(f->after, AFTER_LEAVE);
	assert_null(f->move_to);
	assert_string_equal(f->move_template, "{tenant}/{yyyy}/{mm}/{asset_id}/{name}");
	assert_int_equal(f->jobs, JOB_METADATA);
	assert_int_equal(f->priority, 5);
	assert_int_equal(f->mode, WATCH_AUTO);
	assert_int_equal(f->settle_ms, 2000);
	assert_int_equal(f->poll_interval_ms, 10000);
	assert_int_equal(f->n_include, 0);
	assert_int_equal(f->n_exclude, 0);
	assert_true(f->default_excludes);
	assert_null(f->ready_marker);
	assert_string_equal(f->quarantine_to, "/srv/drop/t1/.quarantine");
	assert_int_equal(f->on_duplicate, DUP_INGEST);
	assert_string_equal(f->storage_type, "local");
	assert_string_equal(f->storage_tier, "hot");
	assert_ptr_equal(f->tenant, t);
	config_free(cfg);

	assert_int_equal(load("metrics:\n  listen: \"\"\n", &cfg, NULL), 0);
	assert_null(cfg->metrics_listen); /* empty = off */
	config_free(cfg);

	/* An empty file is a valid configuration with no tenants. */
	assert_int_equal(load("", &cfg, NULL), 0);
	assert_int_equal(cfg->n_tenants, 0);
	config_free(cfg);
	config_free(NULL);
}

static void test_values_and_inheritance(void **state)
{
	struct config *cfg = NULL;
	const struct folder_cfg *f;

	assert_int_equal(load("ingest:\n"
			      "  settle_ms: 500\n"
			      "  poll_interval_ms: 1_000\n"
			      "  node_name: nas-01\n"
			      "  folder_locks: off\n"
			      "worker: {concurrency: 3, thumbnail_offset_s: 2.5}\n"
			      "metrics: {listen: \"[::1]:9187\"}\n"
			      "log: {format: json}\n"
			      "tenants:\n"
			      "  - code: a.b_c-1\n"
			      "    name: \"Ünïcode\"\n"
			      "    active: no\n"
			      "    storage_quota_bytes: 1099511627776\n"
			      "    drop_folders:\n"
			      "      - path: //srv/./drop//a\n"
			      "        settle_ms: 0\n"
			      "        include: \"*.mov\"\n"
			      "        exclude: [\"*.xml\", \"*.txt\"]\n"
			      "        quarantine_to: /srv/q/a\n"
			      "        ready_marker: \"{name}.done\"\n"
			      "      - path: /srv/drop/ab\n" /* a sibling, not inside /srv/drop/a */
			      "        poll_interval_ms: 250\n",
			      &cfg, NULL),
			 0);
	assert_string_equal(cfg->node_name, "nas-01");
	assert_false(cfg->folder_locks);
	assert_int_equal(cfg->worker_concurrency, 3);
	assert_true(cfg->thumbnail_offset_s == 2.5);
	assert_string_equal(cfg->metrics_listen, "[::1]:9187");
	assert_string_equal(cfg->log_format, "json");
	assert_int_equal(cfg->tenants[0].active, 0);
	assert_true(cfg->tenants[0].storage_quota_bytes == 1099511627776LL);
	f = &cfg->tenants[0].folders[0];
	assert_string_equal(f->path, "/srv/drop/a");
	assert_int_equal(f->settle_ms, 0);	     /* its own value, even 0 */
	assert_int_equal(f->poll_interval_ms, 1000); /* inherited */
	assert_int_equal(f->n_include, 1);
	assert_string_equal(f->include[0], "*.mov");
	assert_int_equal(f->n_exclude, 2);
	assert_string_equal(f->exclude[1], "*.txt");
	assert_string_equal(f->quarantine_to, "/srv/q/a");
	assert_string_equal(f->ready_marker, "{name}.done");
	f = &cfg->tenants[0].folders[1];
	assert_int_equal(f->settle_ms, 500); /* inherited */
	assert_int_equal(f->poll_interval_ms, 250);
	config_free(cfg);
}

static void test_jobs(void **state)
{
	static const struct {
		const char *jobs;
		unsigned want;
	} cases[] = {
		{"[metadata, thumbnail, proxy]", JOB_METADATA | JOB_THUMBNAIL | JOB_PROXY},
		{"[proxy]", JOB_PROXY},
		{"thumbnail", JOB_THUMBNAIL},
		{"[]", 0},
		{"\n          - metadata\n          - proxy", JOB_METADATA | JOB_PROXY},
	};
	char yaml[512];
	struct config *cfg;
	size_t i;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		snprintf(yaml, sizeof yaml,
			 "tenants:\n  - code: a\n    name: A\n    drop_folders:\n"
			 "      - path: /d\n        jobs: %s\n",
			 cases[i].jobs);
		assert_int_equal(load(yaml, &cfg, NULL), 0);
		assert_int_equal(cfg->tenants[0].folders[0].jobs, cases[i].want);
		config_free(cfg);
	}
	expect_err("tenants:\n  - code: a\n    name: A\n    drop_folders:\n"
		   "      - path: /d\n        jobs: [metadata, thumbnale]\n",
		   "NAME:6:26: key \"tenants[0].drop_folders[0].jobs[1]\"",
		   "expected one of metadata, thumbnail, proxy");
	assert_string_equal(config_job_name(JOB_METADATA), "metadata");
	assert_string_equal(config_job_name(JOB_THUMBNAIL), "thumbnail");
	assert_string_equal(config_job_name(JOB_PROXY), "proxy");
	assert_null(config_job_name(JOB_METADATA | JOB_PROXY));
}

/* The acceptance case of issue 2: an unknown key on line 8. */
static void test_unknown_key_line_8(void **state)
{
	expect_err("database:\n"
		   "  conninfo: \"\"\n"
		   "tenants:\n"
		   "  - code: acme\n"
		   "    name: ACME\n"
		   "    drop_folders:\n"
		   "      - path: /srv/drop/acme\n"
		   "        recursve: true\n",
		   "NAME:8:9: key \"tenants[0].drop_folders[0].recursve\": unknown key",
		   "did you mean \"recursive\"");
	expect_err("ingest:\n  colour: blue\n", "NAME:2:3: key \"ingest.colour\": unknown key",
		   NULL);
	expect_err("databse:\n  conninfo: x\n", "NAME:1:1: key \"databse\": unknown key", NULL);
}

static void test_syntax_error(void **state)
{
	expect_err("ingest:\n  settle_ms: [1, 2\ntenants: []\n", "NAME:3:8: YAML syntax error",
		   NULL);
	expect_err("tenants:\n  - code: a\n   name: b\n", "NAME:3:4: YAML syntax error",
		   "did not find expected '-' indicator");
	expect_err("a: &x 1\nb: *x\n", "NAME:2:4:", "aliases");
	expect_err("- 1\n- 2\n", "NAME:1:1:", "must be a mapping");
}

static void test_wrong_types(void **state)
{
	expect_err("ingest:\n  settle_ms: soon\n",
		   "NAME:2:14: key \"ingest.settle_ms\": expected an integer", "\"soon\"");
	expect_err("ingest:\n  settle_ms: \"2000\"\n", "NAME:2:14: key \"ingest.settle_ms\"",
		   "quoted string");
	expect_err("ingest: [1]\n", "NAME:1:9: key \"ingest\": expected a mapping", NULL);
	expect_err("tenants:\n  code: a\n", "NAME:2:3: key \"tenants\": expected a list", NULL);
	expect_err("tenants:\n  - code: a\n    name: A\n    drop_folders:\n"
		   "      - path: /d\n        after_ingest: archive\n",
		   "NAME:6:23: key \"tenants[0].drop_folders[0].after_ingest\"",
		   "invalid value \"archive\": expected one of leave, move, delete");
	expect_err("tenants:\n  - code: a\n    name: A\n    drop_folders:\n"
		   "      - path: /d\n        mode: inotify\n",
		   "key \"tenants[0].drop_folders[0].mode\"", "expected one of auto, events, poll");
	expect_err("tenants:\n  - code: a\n    name: A\n    drop_folders:\n"
		   "      - path: /d\n        on_duplicate: reject\n",
		   "key \"tenants[0].drop_folders[0].on_duplicate\"",
		   "expected one of ingest, skip, quarantine");
	expect_err("tenants:\n  - code: a\n    name: A\n    drop_folders:\n"
		   "      - path: /d\n        recursive: maybe\n",
		   "NAME:6:20: key \"tenants[0].drop_folders[0].recursive\"", "true or false");
	expect_err("log:\n  format: xml\n", "key \"log.format\"", "expected one of text, json");
	expect_err("worker:\n  thumbnail_offset_s: 1s\n", "key \"worker.thumbnail_offset_s\"",
		   "expected a number");
	expect_err("metrics:\n  listen: 9187\n", "NAME:2:11: key \"metrics.listen\"", "HOST:PORT");
	expect_err("tenants:\n  - code: [a]\n    name: A\n", "NAME:2:11: key \"tenants[0].code\"",
		   "expected a single value");
}

static void test_missing_required(void **state)
{
	expect_err("tenants:\n  - name: A\n",
		   "NAME:2:5: key \"tenants[0].code\": missing required key", NULL);
	expect_err("tenants:\n  - code: a\n", "NAME:2:5: key \"tenants[0].name\": missing", NULL);
	expect_err(
		"tenants:\n  - code: a\n    name: A\n    drop_folders:\n      - recursive: false\n",
		"NAME:5:9: key \"tenants[0].drop_folders[0].path\": missing required key", NULL);
	expect_err("tenants:\n  - code:\n    name: A\n", "NAME:2:10: key \"tenants[0].code\"",
		   "a value is required");
	expect_err("tenants:\n  - code: a\n    name: A\n    drop_folders:\n"
		   "      - path: /d\n        after_ingest: move\n",
		   "NAME:6:23: key \"tenants[0].drop_folders[0].move_to\"", "needs move_to");
}

static void test_duplicates(void **state)
{
	expect_err("tenants:\n"
		   "  - code: acme\n    name: A\n"
		   "  - code: acme\n    name: B\n",
		   "NAME:4:11: key \"tenants[1].code\": duplicate tenant code \"acme\"",
		   "first used at line 2");
	expect_err("ingest:\n  settle_ms: 1\n  settle_ms: 2\n",
		   "NAME:3:3: key \"ingest.settle_ms\": duplicate key", "line 2");
	expect_err("database: {}\ndatabase: {}\n", "NAME:2:1: key \"database\": duplicate key",
		   NULL);
}

static void test_overlapping_folders(void **state)
{
	/* Across tenants, beneath. */
	expect_err("tenants:\n"
		   "  - code: a\n    name: A\n    drop_folders:\n      - path: /srv/drop\n"
		   "  - code: b\n    name: B\n    drop_folders:\n      - path: /srv/drop/b\n",
		   "NAME:9:15: key \"tenants[1].drop_folders[0].path\"", "overlaps drop folder");
	/* Equal, after normalisation, in one tenant. */
	expect_err("tenants:\n"
		   "  - code: a\n    name: A\n    drop_folders:\n      - path: /srv/x/\n"
		   "      - path: /srv//x\n",
		   "NAME:6:15: key \"tenants[0].drop_folders[1].path\"", "\"/srv/x\"");
	/* A move_to inside a watched folder would ingest every moved file again. */
	expect_err("tenants:\n"
		   "  - code: a\n    name: A\n    drop_folders:\n      - path: /srv/x\n"
		   "        after_ingest: move\n        move_to: /srv/x/library\n",
		   "NAME:7:18: key \"tenants[0].drop_folders[0].move_to\"", "ingested again");
}

static void test_relative_paths(void **state)
{
	static const char *const keys[] = {"path", "move_to", "quarantine_to"};
	char yaml[512], want[128];
	size_t i;

	for (i = 0; i < 3; i++) {
		snprintf(yaml, sizeof yaml,
			 "tenants:\n  - code: a\n    name: A\n    drop_folders:\n"
			 "      - %s%s: relative/dir\n",
			 i ? "path: /abs\n        " : "", keys[i]);
		snprintf(want, sizeof want, "NAME:%d:%d: key \"tenants[0].drop_folders[0].%s\"",
			 i ? 6 : 5, i ? 11 + (int)strlen(keys[i]) : 15, keys[i]);
		expect_err(yaml, want, "must be an absolute path");
	}
	expect_err("worker:\n  derivatives_root: derivs\n",
		   "NAME:2:21: key \"worker.derivatives_root\"", "absolute");
	expect_err("worker:\n  derivatives_root: /a/../etc\n", "key \"worker.derivatives_root\"",
		   "\"..\"");
	expect_err("tenants:\n  - code: a\n    name: A\n    drop_folders:\n"
		   "      - path: /d\n        move_template: /abs/{name}\n",
		   "key \"tenants[0].drop_folders[0].move_template\"", "relative");
}

static void test_bounds(void **state)
{
	char yaml[1024], name[400];
	struct config *cfg;

	expect_err("ingest:\n  settle_ms: -1\n", "NAME:2:14: key \"ingest.settle_ms\"",
		   "out of range");
	expect_err("tenants:\n  - code: a\n    name: A\n    drop_folders:\n"
		   "      - path: /d\n        priority: 101\n",
		   "NAME:6:19: key \"tenants[0].drop_folders[0].priority\"",
		   "out of range (0 .. 100)");
	expect_err("ingest:\n  batch_max_files: 0\n", "key \"ingest.batch_max_files\"",
		   "out of range");
	expect_err("worker:\n  proxy_height: 541\n", "key \"worker.proxy_height\"", "even");
	expect_err("ingest:\n  settle_ms: 99999999999999999999\n", "key \"ingest.settle_ms\"",
		   "out of range");
	/* code: 50 characters pass, 51 do not. */
	expect_err("tenants:\n  - code: abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijX\n"
		   "    name: A\n",
		   "NAME:2:11: key \"tenants[0].code\"", "longer than 50");
	assert_int_equal(
		load("tenants:\n  - code: abcdefghijabcdefghijabcdefghijabcdefghijabcdefghij\n"
		     "    name: A\n",
		     &cfg, NULL),
		0);
	config_free(cfg);
	expect_err("tenants:\n  - code: a/b\n    name: A\n", "key \"tenants[0].code\"",
		   "only letters");
	/* name: 255 characters (counted as PostgreSQL does, not bytes) pass, 256 do not. */
	memset(name, 0, sizeof name);
	for (int i = 0; i < 127; i++)
		memcpy(name + 2 * i, "\xc3\xa9", 2); /* é: 2 bytes, 1 character */
	strcat(name, "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefg"
		     "hijabcdefghijabcdefghijabcdefghijabcdefghijabcdefgh");
	snprintf(yaml, sizeof yaml, "tenants:\n  - code: a\n    name: \"%s\"\n", name);
	assert_int_equal(load(yaml, &cfg, NULL), 0);
	config_free(cfg);
	snprintf(yaml, sizeof yaml, "tenants:\n  - code: a\n    name: \"%sX\"\n", name);
	expect_err(yaml, "NAME:3:11: key \"tenants[0].name\"", "longer than 255");
}

/* hash_read_size below 64 KiB loads (it always did) with a warning naming the place. */
static void test_small_read_size_warns(void **state)
{
	struct config_errors e = {0};
	struct config *cfg = NULL;

	(void)state;
	assert_int_equal(load("ingest:\n  hash_read_size: 4096\n", &cfg, &e), 0);
	assert_non_null(cfg);
	assert_int_equal(cfg->hash_read_size, 4096);
	assert_int_equal(e.n, 1);
	assert_string_equal(e.msgs[0], "NAME:2:19: warning: key \"ingest.hash_read_size\": 4096 is "
				       "below 65536 and acts as 65536 (libmagic reads the first "
				       "65536 bytes in one buffer)");
	assert_true(config_msg_is_warning("NAME", e.msgs[0]));
	assert_false(config_msg_is_warning("OTHER", e.msgs[0]));
	/* Without a position (none is produced today, but the form is the loader's). */
	assert_true(config_msg_is_warning("NAME", "NAME: warning: whole file"));
	assert_false(config_msg_is_warning("NAME", "NAME: cannot read: warning: x"));
	assert_false(config_msg_is_warning("NAME", "NAME:2: warning: no column"));
	config_free(cfg);
	config_errors_free(&e);
	/* An error whose key holds the words is still an error. */
	assert_int_equal(load("\"x:1:2: warning: y\": 1\n", &cfg, &e), -EINVAL);
	assert_int_equal(e.n, 1);
	assert_non_null(strstr(e.msgs[0], ": warning: "));
	assert_false(config_msg_is_warning("NAME", e.msgs[0]));
	config_errors_free(&e);
	/* At the minimum: nothing to say. */
	assert_int_equal(load("ingest:\n  hash_read_size: 65536\n", &cfg, &e), 0);
	assert_int_equal(e.n, 0);
	config_free(cfg);
	/* Among errors, in file order, and the load still fails for the error. */
	expect_err("ingest:\n  hash_read_size: 4096\n  settle_ms: -1\n",
		   "NAME:3:14: key \"ingest.settle_ms\"", "out of range");
	expect_err("ingest:\n  hash_read_size: 4096\n  settle_ms: -1\n",
		   "NAME:2:19: warning: key \"ingest.hash_read_size\"", NULL);
}

static void test_multiple_errors_collected(void **state)
{
	struct config_errors e = {0};
	struct config *cfg;
	size_t i;

	assert_int_equal(load("ingest:\n"
			      "  settle_ms: x\n" /* 2: wrong type */
			      "  foo: 1\n"	 /* 3: unknown */
			      "tenants:\n"
			      "  - code: a\n"
			      "    name: A\n"
			      "    drop_folders:\n"
			      "      - path: rel\n" /* 8: relative */
			      "  - code: a\n"	    /* 9: duplicate code */
			      "    drop_folders:\n" /* name missing at 9:5 */
			      "      - path: /x\n"
			      "        priority: 500\n", /* 12: bounds */
			      &cfg, &e),
			 -EINVAL);
	assert_null(cfg);
	if (e.n != 6)
		dump(&e);
	assert_int_equal(e.n, 6);
	/* In file order, whichever check found them. */
	assert_non_null(strstr(e.msgs[0], "NAME:2:14:"));
	assert_non_null(strstr(e.msgs[1], "NAME:3:3:"));
	assert_non_null(strstr(e.msgs[2], "NAME:8:15:"));
	assert_non_null(strstr(e.msgs[3], "NAME:9:5: key \"tenants[1].name\""));
	assert_non_null(strstr(e.msgs[4], "NAME:9:11: key \"tenants[1].code\""));
	assert_non_null(strstr(e.msgs[5], "NAME:12:19:"));
	for (i = 0; i < e.n; i++)
		assert_non_null(strstr(e.msgs[i], "key \""));
	config_errors_free(&e);
	assert_int_equal(e.n, 0);
}

static void test_writable_file_refused(void **state)
{
	static const mode_t modes[] = {0666, 0664, 0646, 0620};
	struct config_errors e = {0};
	struct config *cfg;
	char want[64];
	size_t i;

	for (i = 0; i < sizeof modes / sizeof modes[0]; i++) {
		char *path = write_tmp("ingest:\n  settle_ms: 100\n", modes[i]);

		assert_int_equal(config_load(path, &cfg, &e), -EPERM);
		assert_null(cfg);
		assert_int_equal(e.n, 1);
		snprintf(want, sizeof want, "mode %04o", (unsigned)modes[i]);
		assert_non_null(strstr(e.msgs[0], path));
		assert_non_null(strstr(e.msgs[0], want));
		assert_non_null(strstr(e.msgs[0], "group- or world-writable"));
		config_errors_free(&e);
		/* The same file is accepted once only its owner may write it. */
		assert_int_equal(chmod(path, 0644), 0);
		assert_int_equal(config_load(path, &cfg, &e), 0);
		assert_int_equal(cfg->settle_ms, 100);
		config_free(cfg);
		unlink(path);
		free(path);
	}
	assert_int_equal(config_load("/nonexistent/mam.yaml", &cfg, &e), -ENOENT);
	assert_non_null(strstr(e.msgs[0], "/nonexistent/mam.yaml"));
	config_errors_free(&e);
}

static void test_password_refused(void **state)
{
	struct config *cfg;

	expect_err("database:\n  conninfo: \"host=db dbname=mam password=secret\"\n",
		   "NAME:2:13: key \"database.conninfo\": a password", "pgpass");
	expect_err("database:\n  conninfo: \"postgresql://mam:secret@db/mam\"\n",
		   "key \"database.conninfo\"", "PGPASSFILE");
	expect_err("database:\n  conninfo: \"postgresql://db/mam?password=x\"\n",
		   "key \"database.conninfo\"", "password");
	expect_err("database:\n  conninfo: \"host=db dbname\"\n", "key \"database.conninfo\"",
		   "invalid conninfo");
	assert_int_equal(load("database:\n  conninfo: \"host=db1,db2 dbname=mam passfile=/etc/p "
			      "target_session_attrs=read-write\"\n",
			      &cfg, NULL),
			 0);
	config_free(cfg);
	assert_int_equal(load("database:\n  conninfo: \"postgresql://mam@db/mam\"\n", &cfg, NULL),
			 0);
	config_free(cfg);
}

static void test_path_resolve(void **state)
{
	unsetenv("MAM_INGEST_CONFIG");
	assert_string_equal(config_path_resolve(NULL), CONFIG_DEFAULT_PATH);
	assert_string_equal(config_path_resolve("/x.yaml"), "/x.yaml");
	setenv("MAM_INGEST_CONFIG", "/env.yaml", 1);
	assert_string_equal(config_path_resolve(NULL), "/env.yaml");
	assert_string_equal(config_path_resolve("/x.yaml"), "/x.yaml");
	unsetenv("MAM_INGEST_CONFIG");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shipped_example_loads),
		cmocka_unit_test(test_data_files),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_values_and_inheritance),
		cmocka_unit_test(test_jobs),
		cmocka_unit_test(test_unknown_key_line_8),
		cmocka_unit_test(test_syntax_error),
		cmocka_unit_test(test_wrong_types),
		cmocka_unit_test(test_missing_required),
		cmocka_unit_test(test_duplicates),
		cmocka_unit_test(test_overlapping_folders),
		cmocka_unit_test(test_relative_paths),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_small_read_size_warns),
		cmocka_unit_test(test_multiple_errors_collected),
		cmocka_unit_test(test_writable_file_refused),
		cmocka_unit_test(test_password_refused),
		cmocka_unit_test(test_path_resolve),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
