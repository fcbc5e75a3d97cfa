/*
 * Configuration: the YAML file becomes one immutable struct config, swapped
 * whole on reload. The loader (config.c) builds a small node tree from
 * libyaml events that keeps file, line and column for every node, then walks
 * a declarative key table; every error reads
 *     FILE:LINE:COL: key "NAME": reason
 * and all errors of a file are collected, not just the first.
 */
#ifndef MAM_CONFIG_H
#define MAM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONFIG_DEFAULT_PATH "/etc/mam-ingest/mam-ingest.yaml"

enum after_ingest { AFTER_LEAVE = 0, AFTER_MOVE, AFTER_DELETE };
enum watch_mode { WATCH_AUTO = 0, WATCH_EVENTS, WATCH_POLL };
enum on_duplicate { DUP_INGEST = 0, DUP_SKIP, DUP_QUARANTINE };

/* Job types, as a bit set; names are the ingest_jobs.job_type values. */
#define JOB_METADATA  0x1u
#define JOB_THUMBNAIL 0x2u
#define JOB_PROXY     0x4u

struct tenant_cfg;

struct folder_cfg {
	char *path;		 /* absolute, no trailing slash */
	bool recursive;		 /* default true */
	enum after_ingest after; /* default leave */
	char *move_to;		 /* absolute; required when after == AFTER_MOVE */
	char *move_template;	 /* default "{tenant}/{yyyy}/{mm}/{asset_id}/{name}" */
	unsigned jobs;		 /* JOB_* bits; default JOB_METADATA */
	int priority;		 /* ingest_jobs.priority, default 5 */
	enum watch_mode mode;	 /* default auto: statfs decides */
	int poll_interval_ms;	 /* default: ingest.poll_interval_ms */
	int settle_ms;		 /* default: ingest.settle_ms */
	char **include;		 /* globs; when non-empty a name must match one */
	size_t n_include;
	char **exclude; /* globs added to the default junk list */
	size_t n_exclude;
	bool default_excludes;		/* default true: the built-in junk/temp list applies */
	char *ready_marker;		/* e.g. "{name}.done", NULL when unused */
	char *quarantine_to;		/* absolute; default "<path>/.quarantine" */
	enum on_duplicate on_duplicate; /* default ingest */
	char *storage_type;		/* asset_storage_locations.storage_type, default "local" */
	char *storage_tier;		/* default "hot" */
	struct tenant_cfg *tenant;	/* back pointer to the owning tenant */
	int line, col;			/* where the folder was defined, for messages */
};

struct tenant_cfg {
	char *code;		     /* tenants.code, <= 50 bytes, unique */
	char *name;		     /* tenants.name */
	int active;		     /* -1 = leave the database value, 0/1 = set it */
	int64_t storage_quota_bytes; /* -1 = leave the database value, 0 = unlimited (NULL) */
	struct folder_cfg *folders;
	size_t n_folders;
};

struct config {
	char *path; /* the file it was loaded from */
	/* database: */
	char *conninfo; /* libpq conninfo or URI; "" = PG* environment */
	/* ingest: */
	int settle_ms;		  /* default 2000 */
	int poll_interval_ms;	  /* default 10000 */
	int reconcile_interval_s; /* default 3600 (jittered +-10%); 0 = off */
	int batch_max_files;	  /* default 500 */
	int batch_max_ms;	  /* default 20 */
	int hash_read_size;	  /* default 2 MiB; bytes in flight per big file while hashing */
	int max_held_files;	  /* default 100000: finished files held while the DB is away */
	char *node_name;	  /* default: gethostname() */
	bool folder_locks; /* default true: one node per folder (PostgreSQL advisory locks) */
	/* worker: */
	int worker_concurrency;	   /* default: number of CPUs */
	char *derivatives_root;	   /* default /var/lib/mam-ingest/derivatives */
	double thumbnail_offset_s; /* default 1.0 */
	int proxy_height;	   /* default 540 */
	int job_timeout_s;	   /* default 3600 */
	int worker_poll_ms;	   /* default 5000: fallback when no NOTIFY arrives */
	/* metrics: */
	char *metrics_listen;	     /* "127.0.0.1:9187", NULL = off */
	char *metrics_worker_listen; /* the worker's, "127.0.0.1:9188", NULL = off */
	/* logging: */
	char *log_format; /* "text" (default) or "json" */
	struct tenant_cfg *tenants;
	size_t n_tenants;
};

/* A list of formatted error messages, one per problem found. */
struct config_errors {
	char **msgs;
	size_t n;
};

/*
 * Load and validate path. On success returns 0 and *out; on failure returns
 * -EINVAL (validation/syntax; errs holds every message) or -errno (cannot read
 * the file; errs holds one message naming the path). errs may be NULL.
 */
int config_load(const char *path, struct config **out, struct config_errors *errs)
	__attribute__((warn_unused_result));
/* Same, from a memory buffer; name is used in messages. For tests and fuzzing. */
int config_load_buffer(const char *name, const char *buf, size_t len, struct config **out,
		       struct config_errors *errs) __attribute__((warn_unused_result));
void config_free(struct config *cfg);
/* The drop folder of tenant code with this configured path, or NULL. */
const struct folder_cfg *config_find_folder(const struct config *cfg, const char *tenant,
					    const char *path);
void config_errors_free(struct config_errors *errs);
/* A message of errs about file that is a warning ("FILE:LINE:COL: warning:
 * ..."): a load that succeeded may still carry some. Decided by the text right
 * after the position, never by a key name or value quoted later on. */
bool config_msg_is_warning(const char *file, const char *msg);

/* Resolve the config path: -c value, else $MAM_INGEST_CONFIG, else the default. */
const char *config_path_resolve(const char *arg);

/* "metadata" etc. for a single JOB_* bit. */
const char *config_job_name(unsigned job);

#endif
