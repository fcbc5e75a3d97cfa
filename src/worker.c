/*
 * worker: `mam-ingest worker`, the loop that turns queued ingest_jobs into
 * technical metadata, thumbnails and proxies.
 *
 * One libuv loop carries everything: the database connection (db.c, with
 * LISTEN for the ingester's NOTIFY), the tools the jobs run (jobrun.c), the
 * timers and the signals. Claims are made only when a slot is free, one claim
 * statement at a time, for as many jobs as there are free slots: a NOTIFY, the
 * poll timer (the fallback when a notification was missed, e.g. while
 * reconnecting), a finished job and a fresh connection all just "kick" the
 * claimer. The worker proves it is alive with a heartbeat on its running
 * jobs; on every poll it also hands jobs of dead workers (stale heartbeat)
 * back to the queue. On SIGTERM/SIGINT it stops claiming, lets running jobs
 * finish for a grace period, then kills their tools and returns their jobs to
 * pending; a second signal cuts the grace period short.
 *
 * Knobs that are not (yet) configuration keys come from the environment:
 * MAM_WORKER_STALE_S (default 30), MAM_WORKER_RETRY_BASE_MS (default 10000),
 * MAM_WORKER_STOP_GRACE_S (default 30). See docs/worker.md.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "app.h"
#include "db.h"
#include "job.h"
#include "jobsql.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"

#define HEARTBEAT_MAX_MS 5000
#define HARD_STOP_MS	 10000 /* after the grace period, for outcomes still unsent */
#define DB_GRACE_MS	 30000 /* /healthz stays 200 this long without the database */

/* /metrics: what this process did, by job type and outcome. */
enum { MT_METADATA, MT_THUMBNAIL, MT_PROXY, MT_OTHER, MT_N };
static const char *const mt_names[MT_N] = {"metadata", "thumbnail", "proxy", "other"};
/* completed: done; skipped: completed as not applicable (a proxy of a still);
 * failed: recorded as failed (the database retries it while retries are
 * left); released: handed back to pending (stop, lost claim). */
enum { MS_COMPLETED, MS_SKIPPED, MS_FAILED, MS_RELEASED, MS_N };
static const char *const ms_names[MS_N] = {"completed", "skipped", "failed", "released"};
/* Job durations: from a second to hours (transcodes). */
static const double duration_bounds[HIST_BUCKETS] = {0.1, 0.25, 0.5, 1,	  2.5, 5,
						     10,  30,	60,  300, 900, 3600};

struct worker {
	uv_loop_t loop;
	const struct config *cfg;
	struct db *db;
	struct job_env env;
	char id[300]; /* claimed_by: node:pid:start */
	int concurrency;
	int stale_ms;
	int grace_ms;
	uv_timer_t poll; /* reclaim + claim fallback, every worker_poll_ms */
	uv_timer_t heartbeat;
	uv_timer_t grace; /* graceful stop, then hard stop */
	uv_signal_t sigterm, sigint, sighup;
	unsigned long n_finished; /* outcomes recorded by this process, for STATUS */
	struct metrics *metrics;  /* NULL unless metrics.worker_listen */
	uint64_t jobs_total[MT_N][MS_N];
	unsigned running[MT_N];
	struct histogram duration[MT_N];
	uint64_t db_down_since; /* uv_now() when the database went away, 0 while up */
	struct job *jobs;	/* running jobs, a doubly linked list */
	int njobs;
	bool claim_inflight;
	bool claim_again; /* kicked while a claim was in flight */
	bool heartbeat_inflight;
	bool reclaim_inflight;
	bool stopping;
	bool grace_over;
	bool shut; /* shutdown() ran */
};

static void kick(struct worker *w);
static void shutdown_worker(struct worker *w);

static double env_num(const char *name, double def, double min, double max)
{
	const char *v = getenv(name);
	char *end;
	double d;

	if (!v || !*v)
		return def;
	d = strtod(v, &end);
	if (*end || d < min || d > max) {
		log_warnx("worker", "ignoring %s=\"%s\": not a number in [%g, %g]", name, v, min,
			  max);
		return def;
	}
	return d;
}

static bool in_path(const char *prog)
{
	const char *path = getenv("PATH"), *p, *e;
	char buf[4096];

	for (p = path ? path : "/usr/bin:/bin"; *p; p = *e ? e + 1 : e) {
		e = strchr(p, ':');
		if (!e)
			e = p + strlen(p);
		snprintf(buf, sizeof buf, "%.*s/%s", (int)(e - p), p, prog);
		if (e > p && access(buf, X_OK) == 0)
			return true;
	}
	return false;
}

static void maybe_finish_stop(struct worker *w)
{
	if (w->stopping && w->njobs == 0 && !w->claim_inflight)
		shutdown_worker(w);
}

/* One line for `systemctl status`. */
static void report_status(struct worker *w)
{
	static const char *const dbs[] = {"down", "connecting", "ready", "closed"};

	notify_status("%s: %d of %d slot(s) busy; %lu job(s) finished; database %s",
		      w->stopping ? "stopping" : "running", w->njobs, w->concurrency, w->n_finished,
		      dbs[db_state(w->db)]);
}

static unsigned job_mtype(const struct job *job)
{
	unsigned t;

	for (t = 0; t < MT_OTHER && strcmp(job->type, mt_names[t]) != 0; t++)
		;
	return t;
}

static void count_job(struct worker *w, const struct job *job)
{
	unsigned t = job_mtype(job), s;

	switch (job->outcome) {
	case OUT_METADATA:
	case OUT_DERIVATIVE: s = MS_COMPLETED; break;
	case OUT_NOTHING: s = MS_SKIPPED; break;
	case OUT_FAIL: s = MS_FAILED; break;
	default: /* OUT_RELEASE, or none recorded (stopped first) */ s = MS_RELEASED; break;
	}
	w->jobs_total[t][s]++;
	if (w->running[t])
		w->running[t]--;
	if (s != MS_RELEASED)
		histogram_observe(&w->duration[t],
				  (double)(uv_now(&w->loop) - job->claimed_ms) / 1000.0);
}

static void on_job_done(struct job *job, void *arg)
{
	struct worker *w = arg;

	count_job(w, job);

	if (job->prev)
		job->prev->next = job->next;
	else
		w->jobs = job->next;
	if (job->next)
		job->next->prev = job->prev;
	w->njobs--;
	w->n_finished++;
	job_free(job);
	report_status(w);
	maybe_finish_stop(w);
	kick(w);
}

static void on_claim(PGresult *res, const char *error, void *arg)
{
	struct worker *w = arg;
	int i, n;

	w->claim_inflight = false;
	if (error) {
		if (res)
			log_warnx("worker", "could not claim jobs: %s", error);
		maybe_finish_stop(w);
		return;
	}
	n = PQntuples(res);
	for (i = 0; i < n; i++) {
		struct job *job = job_new(&w->env, res, i, on_job_done, w);

		if (!job) {
			log_error("worker", "out of memory; job %s left to the stale-claim sweep",
				  PQgetvalue(res, i, CLAIM_ID));
			continue;
		}
		job->claimed_ms = uv_now(&w->loop);
		w->running[job_mtype(job)]++;
		job->next = w->jobs;
		if (w->jobs)
			w->jobs->prev = job;
		w->jobs = job;
		w->njobs++;
		if (w->stopping)
			job_give_back(job);
		else
			job_start(job);
	}
	if (n > 0)
		report_status(w);
	if (w->stopping) {
		maybe_finish_stop(w);
		return;
	}
	/* A full claim may have left more work queued; so may a NOTIFY meanwhile. */
	if (w->claim_again || n > 0) {
		w->claim_again = false;
		kick(w);
	}
}

static void kick(struct worker *w)
{
	int free_slots = w->concurrency - w->njobs;

	if (w->stopping || db_state(w->db) != DB_READY || free_slots <= 0)
		return;
	if (w->claim_inflight) {
		w->claim_again = true;
		return;
	}
	if (jobsql_claim(w->db, w->id, free_slots, on_claim, w) == 0)
		w->claim_inflight = true;
}

static void on_reclaimed(PGresult *res, const char *error, void *arg)
{
	struct worker *w = arg;
	int n;

	w->reclaim_inflight = false;
	if (error) {
		if (res)
			log_warnx("worker", "could not reclaim stale jobs: %s", error);
		return;
	}
	n = PQntuples(res) > 0 ? atoi(PQgetvalue(res, 0, 0)) : 0;
	if (n > 0)
		log_warnx("worker", "reclaimed %d job(s) of workers without a heartbeat for %d ms",
			  n, w->stale_ms);
	kick(w);
}

static void reclaim(struct worker *w)
{
	if (w->reclaim_inflight || w->stopping || db_state(w->db) != DB_READY)
		return;
	if (jobsql_reclaim(w->db, w->stale_ms, on_reclaimed, w) == 0)
		w->reclaim_inflight = true;
}

static void on_poll(uv_timer_t *t)
{
	struct worker *w = t->data;

	reclaim(w);
	kick(w);
}

static void on_heartbeat_done(PGresult *res, const char *error, void *arg)
{
	struct worker *w = arg;

	w->heartbeat_inflight = false;
	if (error && res)
		log_warnx("worker", "could not send the heartbeat: %s", error);
}

static void on_heartbeat(uv_timer_t *t)
{
	struct worker *w = t->data;

	struct job *job;
	char *ids, *p;

	if (w->njobs == 0 || w->heartbeat_inflight || db_state(w->db) != DB_READY)
		return;
	ids = malloc((size_t)w->njobs * 41 + 3);
	if (!ids)
		return;
	p = ids;
	*p++ = '{';
	for (job = w->jobs; job; job = job->next)
		p += sprintf(p, "%s%s", p > ids + 1 ? "," : "", job->id);
	*p++ = '}';
	*p = '\0';
	if (jobsql_heartbeat(w->db, w->id, ids, on_heartbeat_done, w) == 0)
		w->heartbeat_inflight = true;
	free(ids);
}

static void on_listen(PGresult *res, const char *error, void *arg)
{
	(void)arg;
	if (error && res)
		log_warnx("worker", "could not listen on " JOBSQL_CHANNEL ": %s", error);
}

static void on_notify(const char *channel, const char *payload, void *arg)
{
	(void)channel;
	(void)payload;
	kick(arg);
}

static void on_db_state(struct db *db, enum db_state st, void *arg)
{
	struct worker *w = arg;
	struct job *job, *next;

	report_status(w);
	if (st != DB_READY) {
		if (!w->db_down_since)
			w->db_down_since = uv_now(&w->loop);
		return;
	}
	w->db_down_since = 0;
	/*
	 * A new session: LISTEN again; refresh our own claims before the sweep
	 * (statements run in order), or a long outage would make this worker
	 * reclaim the jobs it is running; resend held outcomes; claim.
	 */
	if (jobsql_listen(db, on_listen, w) != 0)
		return;
	on_heartbeat(&w->heartbeat);
	for (job = w->jobs; job; job = next) {
		next = job->next;
		job_db_ready(job);
	}
	reclaim(w);
	kick(w);
}

static void on_grace(uv_timer_t *t)
{
	struct worker *w = t->data;
	struct job *job;

	if (!w->grace_over) {
		w->grace_over = true;
		log_warnx("worker",
			  "stop: %d job(s) still running; killing them and returning "
			  "them to the queue",
			  w->njobs);
		for (job = w->jobs; job; job = job->next)
			job_abort(job);
		uv_timer_start(&w->grace, on_grace, HARD_STOP_MS, 0);
		return;
	}
	log_warnx("worker",
		  "stop: %d job(s) could not record their outcome; their claims "
		  "will go stale and be reclaimed",
		  w->njobs);
	shutdown_worker(w);
}

static void on_signal(uv_signal_t *s, int signum)
{
	struct worker *w = s->data;

	if (signum == SIGHUP) {
		/* The worker has nothing it could swap safely mid-job; say so. */
		log_warnx("worker", "SIGHUP ignored: the worker reads its configuration at start; "
				    "restart it to apply changes");
		return;
	}
	if (w->stopping) {
		if (!w->grace_over) {
			log_info("worker", "second signal: not waiting for running jobs");
			uv_timer_start(&w->grace, on_grace, 0, 0);
		}
		return;
	}
	w->stopping = true;
	uv_timer_stop(&w->poll);
	notify_stopping();
	report_status(w);
	log_info("worker",
		 "received signal %d: no new jobs; waiting up to %d ms for %d running "
		 "job(s)",
		 signum, w->grace_ms, w->njobs);
	if (w->njobs == 0 && !w->claim_inflight) {
		shutdown_worker(w);
		return;
	}
	uv_timer_start(&w->grace, on_grace, (uint64_t)w->grace_ms, 0);
}

static void on_db_closed(void *arg)
{
	(void)arg;
}

static void shutdown_worker(struct worker *w)
{
	if (w->shut)
		return;
	w->shut = true;
	uv_timer_stop(&w->poll);
	uv_timer_stop(&w->heartbeat);
	uv_timer_stop(&w->grace);
	uv_close((uv_handle_t *)&w->poll, NULL);
	uv_close((uv_handle_t *)&w->heartbeat, NULL);
	uv_close((uv_handle_t *)&w->grace, NULL);
	uv_close((uv_handle_t *)&w->sigterm, NULL);
	uv_close((uv_handle_t *)&w->sigint, NULL);
	uv_close((uv_handle_t *)&w->sighup, NULL);
	notify_watchdog_stop();
	metrics_close(w->metrics);
	w->metrics = NULL;
	db_close(w->db, on_db_closed, w);
}

static void close_walk(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

static void render_metrics(struct mbuf *b, void *arg)
{
	struct worker *w = arg;
	char labels[64];
	unsigned t, s;

	mbuf_printf(b, "# HELP mam_worker_jobs_total Jobs this worker ended, by type and outcome.\n"
		       "# TYPE mam_worker_jobs_total counter\n");
	for (t = 0; t < MT_N; t++)
		for (s = 0; s < MS_N; s++)
			mbuf_printf(b, "mam_worker_jobs_total{type=\"%s\",status=\"%s\"} %llu\n",
				    mt_names[t], ms_names[s],
				    (unsigned long long)w->jobs_total[t][s]);
	mbuf_printf(b, "# HELP mam_worker_jobs_running Jobs running now, by type.\n"
		       "# TYPE mam_worker_jobs_running gauge\n");
	for (t = 0; t < MT_N; t++)
		mbuf_printf(b, "mam_worker_jobs_running{type=\"%s\"} %u\n", mt_names[t],
			    w->running[t]);
	mbuf_printf(b, "# HELP mam_worker_job_duration_seconds From claim to recorded outcome.\n"
		       "# TYPE mam_worker_job_duration_seconds histogram\n");
	for (t = 0; t < MT_N; t++) {
		snprintf(labels, sizeof labels, "type=\"%s\"", mt_names[t]);
		histogram_render(b, "mam_worker_job_duration_seconds", labels, &w->duration[t]);
	}
	mbuf_printf(
		b,
		"# TYPE mam_worker_slots gauge\nmam_worker_slots %d\n"
		"# TYPE mam_worker_database_connected gauge\nmam_worker_database_connected %d\n",
		w->concurrency, db_state(w->db) == DB_READY);
}

/* The loop answered, so it runs; unhealthy once the database is away too long. */
static bool health_check(char *reason, size_t sz, void *arg)
{
	struct worker *w = arg;

	if (w->db_down_since && uv_now(&w->loop) - w->db_down_since > DB_GRACE_MS) {
		snprintf(reason, sz, "database unreachable for %llu s",
			 (unsigned long long)((uv_now(&w->loop) - w->db_down_since) / 1000));
		return false;
	}
	snprintf(reason, sz, "ok");
	return true;
}

static void worker_init(struct worker *w, const struct config *cfg)
{
	double stale_s = env_num("MAM_WORKER_STALE_S", 30, 0.5, 86400);

	w->cfg = cfg;
	w->concurrency = cfg->worker_concurrency > 0 ? cfg->worker_concurrency
						     : (int)uv_available_parallelism();
	w->stale_ms = (int)(stale_s * 1000);
	w->grace_ms = (int)(env_num("MAM_WORKER_STOP_GRACE_S", 30, 0, 86400) * 1000);
	snprintf(w->id, sizeof w->id, "%s:%d:%lx", cfg->node_name ? cfg->node_name : "worker",
		 (int)getpid(), (unsigned long)time(NULL));
	w->env.loop = &w->loop;
	w->env.cfg = cfg;
	w->env.worker_id = w->id;
	w->env.retry_backoff_ms = (int)env_num("MAM_WORKER_RETRY_BASE_MS", 10000, 0, 3600000);
	w->env.have_mediainfo = in_path("mediainfo");
	jobrun_use_pdeathsig(true);
}

int worker_main(const struct config *cfg, const char *config_path)
{
	struct worker w;
	uint64_t hb;
	int rc, i;

	(void)config_path;
	memset(&w, 0, sizeof w);
	worker_init(&w, cfg);
	rc = uv_loop_init(&w.loop);
	if (rc != 0) {
		log_error("worker", "could not create the event loop: %s", uv_strerror(rc));
		return 1;
	}
	rc = db_create(&w.loop, cfg->conninfo ? cfg->conninfo : "", on_db_state, &w, &w.db);
	if (rc != 0) {
		log_error("worker", "could not create the database connection: %s", strerror(-rc));
		uv_loop_close(&w.loop);
		return 1;
	}
	/* "mam-ingest worker[ID]": pg_stat_activity then names the worker, with
	 * the id that ingest_jobs.claimed_by records. Only ENOMEM can fail it,
	 * and an unnamed session still works. */
	{
		char appname[sizeof w.id + 32];

		snprintf(appname, sizeof appname, "mam-ingest worker[%s]", w.id);
		if (db_set_application_name(w.db, appname) != 0)
			log_warnx("worker", "could not name the database session: out of memory");
	}
	w.env.db = w.db;
	db_set_notify_cb(w.db, on_notify, &w);
	uv_timer_init(&w.loop, &w.poll);
	uv_timer_init(&w.loop, &w.heartbeat);
	uv_timer_init(&w.loop, &w.grace);
	uv_signal_init(&w.loop, &w.sigterm);
	uv_signal_init(&w.loop, &w.sigint);
	uv_signal_init(&w.loop, &w.sighup);
	w.poll.data = w.heartbeat.data = w.grace.data = &w;
	w.sigterm.data = w.sigint.data = w.sighup.data = &w;
	uv_signal_start(&w.sigterm, on_signal, SIGTERM);
	uv_signal_start(&w.sigint, on_signal, SIGINT);
	uv_signal_start(&w.sighup, on_signal, SIGHUP);
	uv_timer_start(&w.poll, on_poll, (uint64_t)cfg->worker_poll_ms,
		       (uint64_t)cfg->worker_poll_ms);
	/* Three heartbeats fit in the stale threshold, so one lost update is harmless. */
	hb = (uint64_t)(w.stale_ms / 3 < HEARTBEAT_MAX_MS ? w.stale_ms / 3 : HEARTBEAT_MAX_MS);
	uv_timer_start(&w.heartbeat, on_heartbeat, hb, hb);
	log_info("worker",
		 "worker %s: %d slot(s), derivatives under \"%s\", stale claims after "
		 "%d ms%s",
		 w.id, w.concurrency, cfg->derivatives_root, w.stale_ms,
		 w.env.have_mediainfo ? ", mediainfo found" : "");
	for (i = 0; i < MT_N; i++)
		w.duration[i].bounds = duration_bounds;
	w.db_down_since = uv_now(&w.loop);
	if (cfg->metrics_worker_listen) {
		rc = metrics_start(&w.loop, cfg->metrics_worker_listen, render_metrics,
				   health_check, &w, &w.metrics);
		if (rc != 0) {
			log_error("worker", "cannot serve metrics on %s: %s",
				  cfg->metrics_worker_listen, strerror(-rc));
			shutdown_worker(&w);
			uv_run(&w.loop, UV_RUN_DEFAULT);
			uv_loop_close(&w.loop);
			return 1;
		}
	}
	db_start(w.db);
	/* Ready once the loop runs: the worker waits for the database by itself. */
	if (notify_watchdog_start(&w.loop) < 0)
		log_warnx("worker", "could not start the watchdog timer");
	notify_ready();
	report_status(&w);

	uv_run(&w.loop, UV_RUN_DEFAULT);

	/* Whatever is left (outcomes the database never took): free it. */
	while (w.jobs) {
		struct job *job = w.jobs;

		w.jobs = job->next;
		job_free(job);
	}
	for (i = 0; i < 3 && uv_loop_close(&w.loop) == UV_EBUSY; i++) {
		uv_walk(&w.loop, close_walk, NULL);
		uv_run(&w.loop, UV_RUN_DEFAULT);
	}
	log_info("worker", "stopped");
	return 0;
}
