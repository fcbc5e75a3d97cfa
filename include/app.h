/*
 * Entry points of the subcommands, one per module, called by main.c after it
 * parsed the command line and loaded the configuration. Each returns the
 * process exit status.
 */
#ifndef MAM_APP_H
#define MAM_APP_H

#include <stdbool.h>

#include "config.h"

struct ingest_opts {
	bool oneshot; /* `scan`: one pass, ingest what is finished, exit */
	bool dry_run; /* print finished/settling files, never touch the database */
	bool no_db;   /* `run --no-db`: watch and print "finished" lines only (tests of issue 3) */
	const char *config_path; /* for reload on SIGHUP */
};

/* ingest.c: `run` and `scan`. */
int ingest_main(const struct config *cfg, const struct ingest_opts *opts);

/* worker.c: `worker`. */
int worker_main(const struct config *cfg, const char *config_path);

/* migrate.c: `migrate`. sqldir NULL = find it (see migrate_sqldir). */
int migrate_main(const struct config *cfg, const char *sqldir, bool verbose);
/* The directory holding the NNN_*.sql migrations: $MAM_SQLDIR, else the
 * source tree's sql/ when running from a build tree, else the installed
 * share/mam-ingest/sql. */
const char *migrate_sqldir(void);

/* status.c: `status`. */
int status_main(const struct config *cfg);

#endif
