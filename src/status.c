/*
 * `mam-ingest status`: a human summary for the people who run mam-ingest.
 * The catalogue side comes from PostgreSQL (the one source of truth shared by
 * every ingest node and worker); the live side comes from the local daemon's
 * /metrics endpoint when metrics.listen is configured and a daemon answers.
 * Blocking libpq and a plain socket are fine here: this is a one-shot command.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "app.h"
#include "log.h"
#include "owner.h"

static void human_bytes(long long v, char *out, size_t sz)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
	double d = (double)v;
	int u = 0;

	while (d >= 1024 && u < 5) {
		d /= 1024;
		u++;
	}
	snprintf(out, sz, u ? "%.1f %s" : "%.0f %s", d, units[u]);
}

static PGresult *query(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);

	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		fprintf(stderr, "mam-ingest: status: query failed: %s", PQerrorMessage(c));
		PQclear(r);
		return NULL;
	}
	return r;
}

static int print_tenants(PGconn *c)
{
	PGresult *r =
		query(c, "SELECT t.code, coalesce(t.is_active, true),"
			 " count(a.id) FILTER (WHERE a.created_at >= date_trunc('day', now())),"
			 " count(a.id), coalesce(sum(a.file_size_bytes), 0),"
			 " coalesce(t.storage_quota_bytes, -1)"
			 " FROM tenants t LEFT JOIN assets a ON a.tenant_id = t.id"
			 " AND a.parent_id IS NULL AND a.deleted_at IS NULL"
			 " GROUP BY t.id ORDER BY t.code");
	int i;

	if (!r)
		return -EIO;
	printf("\ntenants:\n  %-16s %-7s %10s %10s  %s\n", "CODE", "ACTIVE", "TODAY", "ASSETS",
	       "STORAGE / QUOTA");
	for (i = 0; i < PQntuples(r); i++) {
		char used[32], quota[32];
		long long q = atoll(PQgetvalue(r, i, 5));

		human_bytes(atoll(PQgetvalue(r, i, 4)), used, sizeof used);
		if (q < 0)
			snprintf(quota, sizeof quota, "unlimited");
		else
			human_bytes(q, quota, sizeof quota);
		printf("  %-16s %-7s %10s %10s  %s / %s\n", PQgetvalue(r, i, 0),
		       PQgetvalue(r, i, 1)[0] == 't' ? "yes" : "no", PQgetvalue(r, i, 2),
		       PQgetvalue(r, i, 3), used, quota);
	}
	if (PQntuples(r) == 0)
		printf("  (none: the ingester upserts the configured tenants when it starts)\n");
	PQclear(r);
	return 0;
}

static int print_jobs(PGconn *c)
{
	PGresult *r = query(c, "SELECT t.code, j.job_type,"
			       " count(*) FILTER (WHERE j.status = 'pending'),"
			       " count(*) FILTER (WHERE j.status = 'processing'),"
			       " count(*) FILTER (WHERE j.status = 'failed'),"
			       " count(*) FILTER (WHERE j.status = 'completed'),"
			       " coalesce(extract(epoch FROM now() - min(j.created_at)"
			       "   FILTER (WHERE j.status = 'pending'))::bigint, 0)"
			       " FROM ingest_jobs j JOIN tenants t ON t.id = j.tenant_id"
			       " GROUP BY t.code, j.job_type ORDER BY 1, 2");
	int i;

	if (!r)
		return -EIO;
	printf("\njobs:\n  %-16s %-10s %9s %11s %7s %10s  %s\n", "TENANT", "TYPE", "PENDING",
	       "PROCESSING", "FAILED", "COMPLETED", "OLDEST PENDING");
	for (i = 0; i < PQntuples(r); i++)
		printf("  %-16s %-10s %9s %11s %7s %10s  %ss\n", PQgetvalue(r, i, 0),
		       PQgetvalue(r, i, 1), PQgetvalue(r, i, 2), PQgetvalue(r, i, 3),
		       PQgetvalue(r, i, 4), PQgetvalue(r, i, 5), PQgetvalue(r, i, 6));
	if (PQntuples(r) == 0)
		printf("  (no jobs)\n");
	PQclear(r);
	r = query(c, "SELECT to_char(coalesce(j.completed_at, j.created_at) AT TIME ZONE 'UTC',"
		     " 'YYYY-MM-DD HH24:MI:SS'), t.code, j.job_type, coalesce(j.input_path, ''),"
		     " left(regexp_replace(coalesce(j.error_message, ''), '\\s+', ' ', 'g'), 160)"
		     " FROM ingest_jobs j JOIN tenants t ON t.id = j.tenant_id"
		     " WHERE j.status = 'failed' ORDER BY coalesce(j.completed_at, j.created_at)"
		     " DESC LIMIT 5");
	if (!r)
		return -EIO;
	printf("\nlast errors:\n");
	for (i = 0; i < PQntuples(r); i++) {
		char esc[LOG_ESC_MAX];

		printf("  %s UTC  %s %s \"%s\": %s\n", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
		       PQgetvalue(r, i, 2), log_escape(PQgetvalue(r, i, 3), esc, sizeof esc),
		       PQgetvalue(r, i, 4));
	}
	if (PQntuples(r) == 0)
		printf("  (none)\n");
	PQclear(r);
	return 0;
}

/*
 * Who ingests each configured folder: the session holding its advisory lock
 * (owner.h), seen from the database, so the answer covers every node, not
 * only this machine. The keys are computed here exactly as the daemon does.
 */
static int print_folders(PGconn *c, const struct config *cfg)
{
	static const char sql[] =
		"SELECT x.k, l.pid, coalesce(nullif(a.application_name, ''), '?'),"
		" coalesce(host(a.client_addr), 'local'),"
		" coalesce(to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), "
		"'')"
		" FROM unnest($1::int[]) WITH ORDINALITY AS x(k, o)"
		" LEFT JOIN pg_locks l ON l.locktype = 'advisory' AND l.granted AND l.objsubid = 2"
		"  AND l.classid = $2::oid AND l.objid = x.k::oid"
		"  AND l.database = (SELECT oid FROM pg_database WHERE datname = "
		"current_database())"
		" LEFT JOIN pg_stat_activity a ON a.pid = l.pid ORDER BY x.o";
	size_t t, k, n = 0, len = 1;
	char *arr, cls[16];
	const char *params[2];
	PGresult *r;
	int row = 0;

	for (t = 0; t < cfg->n_tenants; t++)
		n += cfg->tenants[t].n_folders;
	printf("\nfolders (%s):\n", cfg->folder_locks ? "one node each, by advisory lock"
						      : "folder_locks off: every node ingests all");
	if (n == 0) {
		printf("  (none configured)\n");
		return 0;
	}
	arr = malloc(n * 12 + 3);
	if (!arr)
		return -ENOMEM;
	arr[0] = '{';
	for (t = 0; t < cfg->n_tenants; t++)
		for (k = 0; k < cfg->tenants[t].n_folders; k++)
			len += (size_t)sprintf(arr + len, "%s%d", len > 1 ? "," : "",
					       owner_folder_key(cfg->tenants[t].code,
								cfg->tenants[t].folders[k].path));
	memcpy(arr + len, "}", 2);
	snprintf(cls, sizeof cls, "%d", OWNER_LOCK_CLASS);
	params[0] = arr;
	params[1] = cls;
	r = PQexecParams(c, sql, 2, NULL, params, NULL, NULL, 0);
	free(arr);
	if (PQresultStatus(r) != PGRES_TUPLES_OK || (size_t)PQntuples(r) != n) {
		fprintf(stderr, "mam-ingest: status: query failed: %s", PQerrorMessage(c));
		PQclear(r);
		return -EIO;
	}
	printf("  %-16s %-40s %s\n", "TENANT", "FOLDER", "OWNER");
	for (t = 0; t < cfg->n_tenants; t++) {
		for (k = 0; k < cfg->tenants[t].n_folders; k++, row++) {
			char esc[LOG_ESC_MAX];

			printf("  %-16s %-40s ", cfg->tenants[t].code,
			       log_escape(cfg->tenants[t].folders[k].path, esc, sizeof esc));
			if (PQgetisnull(r, row, 1))
				printf("nobody (no running daemon holds it)\n");
			else
				printf("%s (session pid %s from %s, since %s UTC)\n",
				       PQgetvalue(r, row, 2), PQgetvalue(r, row, 1),
				       PQgetvalue(r, row, 3), PQgetvalue(r, row, 4));
		}
	}
	PQclear(r);
	return 0;
}

/* GET http://listen/metrics with a short timeout; the body into *out (malloc'd). */
static int fetch_metrics(const char *listen, char **out)
{
	char host[128], req[256];
	const char *colon = strrchr(listen, ':');
	struct sockaddr_in sa = {.sin_family = AF_INET};
	size_t len = 0, cap = 65536;
	char *buf;
	int fd, rc = -EIO;

	if (!colon || (size_t)(colon - listen) >= sizeof host)
		return -EINVAL;
	memcpy(host, listen, (size_t)(colon - listen));
	host[colon - listen] = '\0';
	sa.sin_port = htons((uint16_t)atoi(colon + 1));
	if (strcmp(host, "0.0.0.0") == 0)
		snprintf(host, sizeof host, "127.0.0.1");
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		return -EAFNOSUPPORT; /* IPv6 listen: not queried here */
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct timeval tv = {.tv_sec = 2};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	snprintf(req, sizeof req, "GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n", listen);
	if (write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
		close(fd);
		return -EIO;
	}
	buf = malloc(cap);
	while (buf) {
		ssize_t n;

		if (len + 1 >= cap) {
			char *nb = realloc(buf, cap * 2);

			if (!nb)
				break;
			buf = nb;
			cap *= 2;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n <= 0) {
			rc = n == 0 ? 0 : -errno;
			break;
		}
		len += (size_t)n;
	}
	close(fd);
	if (!buf)
		return -ENOMEM;
	buf[len] = '\0';
	if (rc == 0 && strncmp(buf, "HTTP/1.", 7) == 0 && strstr(buf, " 200 ")) {
		char *body = strstr(buf, "\r\n\r\n");

		memmove(buf, body ? body + 4 : buf, strlen(body ? body + 4 : buf) + 1);
		*out = buf;
		return 0;
	}
	free(buf);
	return rc ? rc : -EIO;
}

/* Print the metric lines of the daemon that a person needs at a glance. */
static void print_daemon(const struct config *cfg)
{
	static const char *const wanted[] = {
		"mam_ingest_folder_watch",
		"mam_ingest_oldest_settling_seconds",
		"mam_ingest_files_settling",
		"mam_ingest_files_in_pipeline",
		"mam_ingest_files_waiting_for_database",
		"mam_ingest_files_held",
		"mam_ingest_database_connected",
		"mam_ingest_files_catalogued_total",
		"mam_ingest_files_failed_total",
		"mam_ingest_inotify_overflows_total",
		"mam_ingest_watches",
		"mam_ingest_folder_owner",
		"mam_ingest_folder_owned",
	};
	char *body = NULL, *line, *save = NULL;
	int rc;

	printf("\ndaemon:\n");
	if (!cfg->metrics_listen || !cfg->metrics_listen[0]) {
		printf("  unknown: metrics.listen is not configured, so a running daemon cannot "
		       "be asked\n");
		return;
	}
	rc = fetch_metrics(cfg->metrics_listen, &body);
	if (rc != 0) {
		printf("  not reachable on %s (%s): not running?\n", cfg->metrics_listen,
		       strerror(-rc));
		return;
	}
	printf("  running, answering on %s\n", cfg->metrics_listen);
	for (line = strtok_r(body, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		size_t i;

		if (line[0] == '#')
			continue;
		for (i = 0; i < sizeof wanted / sizeof wanted[0]; i++) {
			size_t wl = strlen(wanted[i]);

			if (strncmp(line, wanted[i], wl) == 0 &&
			    (line[wl] == '{' || line[wl] == ' '))
				printf("  %s\n", line + strlen("mam_ingest_"));
		}
	}
	free(body);
}

int status_main(const struct config *cfg)
{
	PGconn *c = PQconnectdb(cfg->conninfo ? cfg->conninfo : "");
	time_t now = time(NULL);
	char when[64];
	int rc = 0;

	strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", gmtime(&now));
	printf("mam-ingest status at %s\n\n", when);
	if (PQstatus(c) != CONNECTION_OK) {
		printf("database: not reachable: %s", PQerrorMessage(c));
		rc = 1;
	} else {
		PGresult *r = query(c, "SELECT coalesce(max(version), 0) FROM schema_migrations");

		printf("database: connected to %s, PostgreSQL %d, schema version %s\n",
		       PQhost(c) ? PQhost(c) : "?", PQserverVersion(c),
		       r ? PQgetvalue(r, 0, 0) : "unknown (not migrated?)");
		if (!r)
			rc = 1;
		PQclear(r);
		if (rc == 0 &&
		    (print_tenants(c) != 0 || print_folders(c, cfg) != 0 || print_jobs(c) != 0))
			rc = 1;
	}
	PQfinish(c);
	print_daemon(cfg);
	return rc;
}
