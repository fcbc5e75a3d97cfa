/*
 * `mam-ingest migrate`: apply the numbered NNN_name.sql files of the
 * migrations directory that the database has not seen, in numeric order,
 * each in its own transaction together with its schema_migrations row, so a
 * migration is either fully applied and recorded or not at all. A session
 * advisory lock makes concurrent runs (two nodes upgraded at once) take turns:
 * the second waits, then finds everything recorded and does nothing. This is
 * a one-shot command, so it uses blocking libpq on purpose; the daemon's
 * event-loop connection lives in db.c.
 */
#include <dirent.h>
#include <errno.h>
#include <libpq-fe.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app.h"
#include "config.h"

/* 'mam-migr' as a bigint: the advisory lock key every migrate run takes. */
#define MIGRATE_LOCK_SQL    "SELECT pg_advisory_lock(x'6d616d2d6d696772'::bigint)"
#define MIGRATE_TRYLOCK_SQL "SELECT pg_try_advisory_lock(x'6d616d2d6d696772'::bigint)"
#define MIGRATE_MAX_FILE    (64 * 1024 * 1024)

struct migration {
	int version;
	char name[NAME_MAX + 1]; /* file name without ".sql" */
	bool applied;
};

const char *migrate_sqldir(void)
{
	static char exe[PATH_MAX];
	const char *env = getenv("MAM_SQLDIR");
	ssize_t n;
	char *slash;

	if (env && *env)
		return env;
	/* A CMakeCache.txt beside the binary means it runs from a build tree:
	 * use the source tree's sql/ so edits need no install step. */
	n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n > 0) {
		exe[n] = '\0';
		slash = strrchr(exe, '/');
		if (slash && (size_t)(slash - exe) + sizeof "/CMakeCache.txt" <= sizeof exe) {
			strcpy(slash, "/CMakeCache.txt");
			if (access(exe, F_OK) == 0)
				return MAM_SOURCE_SQLDIR;
		}
	}
	return MAM_INSTALL_SQLDIR;
}

/* NNN_name.sql, NNN all digits, name of [A-Za-z0-9_-]. */
static int parse_name(const char *fname, int *version)
{
	size_t len = strlen(fname), i = 0;
	long v = 0;

	if (len < 6 || strcmp(fname + len - 4, ".sql") != 0)
		return -EINVAL;
	while (fname[i] >= '0' && fname[i] <= '9' && v < 1000000)
		v = v * 10 + (fname[i++] - '0');
	if (i == 0 || fname[i] != '_' || v >= 1000000)
		return -EINVAL;
	for (i++; i < len - 4; i++)
		if (!(fname[i] == '_' || fname[i] == '-' || (fname[i] >= '0' && fname[i] <= '9') ||
		      (fname[i] >= 'a' && fname[i] <= 'z') || (fname[i] >= 'A' && fname[i] <= 'Z')))
			return -EINVAL;
	*version = (int)v;
	return 0;
}

static int cmp_migration(const void *a, const void *b)
{
	const struct migration *x = a, *y = b;

	return (x->version > y->version) - (x->version < y->version);
}

/* List the migrations of dir, sorted; two files with one version are an error. */
static int list_migrations(const char *dir, struct migration **out, size_t *n_out)
{
	struct migration *m = NULL, *tmp;
	struct dirent *de;
	size_t n = 0, i;
	DIR *d;
	int v;

	d = opendir(dir);
	if (!d) {
		int err = errno;

		fprintf(stderr, "mam-ingest: could not open migrations directory \"%s\": %s\n", dir,
			strerror(err));
		return -err;
	}
	while ((de = readdir(d)) != NULL) {
		if (parse_name(de->d_name, &v) < 0)
			continue;
		tmp = realloc(m, (n + 1) * sizeof(*m));
		if (!tmp) {
			free(m);
			closedir(d);
			return -ENOMEM;
		}
		m = tmp;
		m[n].version = v;
		m[n].applied = false;
		snprintf(m[n].name, sizeof m[n].name, "%.*s", (int)(strlen(de->d_name) - 4),
			 de->d_name);
		n++;
	}
	closedir(d);
	if (n)
		qsort(m, n, sizeof(*m), cmp_migration);
	for (i = 1; i < n; i++)
		if (m[i].version == m[i - 1].version) {
			fprintf(stderr,
				"mam-ingest: two migrations with version %d in \"%s\": %s.sql and "
				"%s.sql\n",
				m[i].version, dir, m[i - 1].name, m[i].name);
			free(m);
			return -EEXIST;
		}
	*out = m;
	*n_out = n;
	return 0;
}

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	struct stat st;
	size_t len;

	if (!f)
		return NULL;
	if (fstat(fileno(f), &st) == 0 && st.st_size < MIGRATE_MAX_FILE &&
	    (buf = malloc((size_t)st.st_size + 1)) != NULL) {
		len = fread(buf, 1, (size_t)st.st_size, f);
		buf[len] = '\0';
		if (ferror(f) || strlen(buf) != len) {
			free(buf);
			buf = NULL;
			errno = EIO;
		}
	} else if (!buf) {
		errno = EFBIG;
	}
	fclose(f);
	return buf;
}

/* Run one statement whose result we do not need; print the error. */
static int exec_ok(PGconn *conn, const char *sql)
{
	PGresult *res = PQexec(conn, sql);
	int ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;

	if (!ok)
		fprintf(stderr, "mam-ingest: %s: %s", sql, PQerrorMessage(conn));
	PQclear(res);
	return ok ? 0 : -EIO;
}

/*
 * Report a failed migration as FILE:LINE when PostgreSQL gives the position
 * (a character offset into the file's text), then PostgreSQL's own message.
 */
static void report_failure(const char *path, const char *sql, const PGresult *res)
{
	const char *pos = PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION);
	const char *msg = PQresultErrorMessage(res);
	long chars = pos ? strtol(pos, NULL, 10) : 0, line = 1;
	const char *p;

	for (p = sql; chars > 1 && *p; p++) {
		if (((unsigned char)*p & 0xC0) != 0x80)
			chars--;
		if (*p == '\n')
			line++;
	}
	if (pos)
		fprintf(stderr, "mam-ingest: migration \"%s\" failed at line %ld: %s", path, line,
			msg);
	else
		fprintf(stderr, "mam-ingest: migration \"%s\" failed: %s", path, msg);
}

static int apply_one(PGconn *conn, const char *dir, const struct migration *m, bool verbose)
{
	char path[PATH_MAX], version[16];
	const char *params[2] = {version, m->name};
	PGresult *res;
	char *sql;
	int rc = 0;

	snprintf(path, sizeof path, "%s/%s.sql", dir, m->name);
	snprintf(version, sizeof version, "%d", m->version);
	sql = read_file(path);
	if (!sql) {
		fprintf(stderr, "mam-ingest: could not read migration \"%s\": %s\n", path,
			strerror(errno));
		return -EIO;
	}
	if (exec_ok(conn, "BEGIN") < 0) {
		free(sql);
		return -EIO;
	}
	res = PQexec(conn, sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
		report_failure(path, sql, res);
		rc = -EIO;
	}
	PQclear(res);
	if (rc == 0) {
		res = PQexecParams(conn,
				   "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
				   2, NULL, params, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			fprintf(stderr, "mam-ingest: could not record migration \"%s\": %s", path,
				PQerrorMessage(conn));
			rc = -EIO;
		}
		PQclear(res);
	}
	if (rc == 0)
		rc = exec_ok(conn, "COMMIT");
	else
		(void)exec_ok(conn, "ROLLBACK");
	if (rc == 0)
		printf("applied %s%s%s\n", m->name, verbose ? " from " : "", verbose ? path : "");
	free(sql);
	return rc;
}

/* Mark what schema_migrations already records; warn about versions we lack. */
static int load_applied(PGconn *conn, struct migration *m, size_t n)
{
	PGresult *res =
		PQexec(conn, "SELECT version, name FROM schema_migrations ORDER BY version");
	int i, rows, v;
	size_t j;

	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		fprintf(stderr, "mam-ingest: could not read schema_migrations: %s",
			PQerrorMessage(conn));
		PQclear(res);
		return -EIO;
	}
	rows = PQntuples(res);
	for (i = 0; i < rows; i++) {
		v = atoi(PQgetvalue(res, i, 0));
		for (j = 0; j < n && m[j].version != v; j++)
			;
		if (j < n && strcmp(m[j].name, PQgetvalue(res, i, 1)) != 0)
			fprintf(stderr,
				"mam-ingest: warning: migration %d was recorded as %s, the "
				"file is now %s.sql\n",
				v, PQgetvalue(res, i, 1), m[j].name);
		if (j < n)
			m[j].applied = true;
		else
			fprintf(stderr,
				"mam-ingest: warning: the database has migration %s, which "
				"this version does not ship\n",
				PQgetvalue(res, i, 1));
	}
	PQclear(res);
	return 0;
}

int migrate_main(const struct config *cfg, const char *sqldir, bool verbose)
{
	static const char *const keys[] = {"dbname", "application_name", NULL};
	const char *vals[] = {cfg->conninfo, "mam-ingest migrate", NULL};
	const char *dir = sqldir ? sqldir : migrate_sqldir();
	struct migration *m = NULL;
	size_t n = 0, i, applied = 0;
	PGresult *res;
	PGconn *conn;
	int rc;

	rc = list_migrations(dir, &m, &n);
	if (rc < 0)
		return 1;
	if (n == 0) {
		fprintf(stderr, "mam-ingest: no migrations (NNN_name.sql) in \"%s\"\n", dir);
		free(m);
		return 1;
	}
	if (verbose)
		printf("migrations directory: %s (%zu files)\n", dir, n);
	/* expand_dbname: the conninfo (or URI) goes in dbname; "" means PG* env. */
	conn = PQconnectdbParams(keys, vals, 1);
	if (PQstatus(conn) != CONNECTION_OK) {
		fprintf(stderr, "mam-ingest: could not connect to the database: %s",
			PQerrorMessage(conn));
		rc = -EIO;
		goto out;
	}
	rc = exec_ok(conn, "SET client_min_messages = warning");
	if (rc < 0)
		goto out;
	res = PQexec(conn, MIGRATE_TRYLOCK_SQL);
	if (PQresultStatus(res) == PGRES_TUPLES_OK && strcmp(PQgetvalue(res, 0, 0), "f") == 0) {
		printf("waiting for another migrate to finish\n");
		fflush(stdout);
		rc = exec_ok(conn, MIGRATE_LOCK_SQL);
	} else if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		fprintf(stderr, "mam-ingest: could not take the migration lock: %s",
			PQerrorMessage(conn));
		rc = -EIO;
	}
	PQclear(res);
	if (rc < 0)
		goto out;
	rc = exec_ok(conn, "CREATE TABLE IF NOT EXISTS schema_migrations ("
			   "version integer PRIMARY KEY, name text NOT NULL, "
			   "applied_at timestamptz NOT NULL DEFAULT now())");
	if (rc == 0)
		rc = load_applied(conn, m, n);
	for (i = 0; rc == 0 && i < n; i++) {
		if (m[i].applied) {
			if (verbose)
				printf("already applied %s\n", m[i].name);
			continue;
		}
		rc = apply_one(conn, dir, &m[i], verbose);
		applied += rc == 0;
	}
	if (rc == 0 && applied == 0)
		printf("database is up to date\n");
out:
	/* Closing the session releases the advisory lock. */
	PQfinish(conn);
	free(m);
	return rc == 0 ? 0 : 1;
}
