/*
 * Prometheus endpoints on the event loop. libmicrohttpd runs without its own
 * thread (no MHD_USE_INTERNAL_POLLING_THREAD): with MHD_USE_EPOLL it exposes
 * one epoll descriptor that becomes readable whenever any of its sockets
 * needs attention, so one uv_poll_t plus one uv_timer_t (for MHD's own
 * timeouts) are enough to serve HTTP from the loop that does the ingest work.
 * That is also what /healthz measures: if the loop is stuck, nobody answers.
 */
#include "metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct metrics {
	uv_loop_t *loop;
	struct MHD_Daemon *mhd;
	uv_poll_t poll;
	uv_timer_t timer;
	int port;
	int closing; /* handles still to close */
	metrics_render_cb render;
	metrics_health_cb health;
	void *arg;
};

const double histogram_bounds[HIST_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
					       0.1,   0.25,   0.5,   1.0,  2.5,	  10.0};
const double histogram_count_bounds[HIST_BUCKETS] = {1,	  2,   5,   10,	  20,	50,
						     100, 200, 500, 1000, 2000, 5000};

void mbuf_printf(struct mbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->oom)
		return;
	for (;;) {
		size_t avail = b->cap - b->len;

		va_start(ap, fmt);
		n = vsnprintf(b->data ? b->data + b->len : NULL, avail, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = true;
			return;
		}
		if ((size_t)n < avail) {
			b->len += (size_t)n;
			return;
		}
		size_t ncap = b->cap ? b->cap * 2 : 4096;
		while (ncap - b->len <= (size_t)n)
			ncap *= 2;
		char *nd = realloc(b->data, ncap);
		if (!nd) {
			b->oom = true;
			return;
		}
		b->data = nd;
		b->cap = ncap;
	}
}

void mbuf_label(struct mbuf *b, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\')
			mbuf_printf(b, "\\\\");
		else if (*v == '"')
			mbuf_printf(b, "\\\"");
		else if (*v == '\n')
			mbuf_printf(b, "\\n");
		else
			mbuf_printf(b, "%c", *v);
	}
}

void mbuf_free(struct mbuf *b)
{
	free(b->data);
	memset(b, 0, sizeof *b);
}

void histogram_observe(struct histogram *h, double s)
{
	const double *bounds = h->bounds ? h->bounds : histogram_bounds;
	int i;

	for (i = 0; i < HIST_BUCKETS && s > bounds[i]; i++)
		;
	h->counts[i]++;
	h->sum += s;
	h->count++;
}

void histogram_render(struct mbuf *b, const char *name, const char *labels,
		      const struct histogram *h)
{
	const double *bounds = h->bounds ? h->bounds : histogram_bounds;
	const char *sep = labels[0] ? "," : "";
	uint64_t cum = 0;
	int i;

	for (i = 0; i < HIST_BUCKETS; i++) {
		cum += h->counts[i];
		mbuf_printf(b, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, bounds[i],
			    (unsigned long long)cum);
	}
	cum += h->counts[HIST_BUCKETS];
	mbuf_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
		    (unsigned long long)cum);
	if (labels[0])
		mbuf_printf(b, "%s_sum{%s} %.6f\n%s_count{%s} %llu\n", name, labels, h->sum, name,
			    labels, (unsigned long long)h->count);
	else
		mbuf_printf(b, "%s_sum %.6f\n%s_count %llu\n", name, h->sum, name,
			    (unsigned long long)h->count);
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned code, const char *ctype,
			     const char *body, size_t len)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", ctype);
	ret = MHD_queue_response(c, code, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
			       const char *method, const char *version, const char *upload,
			       size_t *upload_size, void **con_cls)
{
	struct metrics *m = cls;

	(void)version;
	(void)upload;
	(void)con_cls;
	if (*upload_size != 0)
		return MHD_NO;
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain", "method not allowed\n",
			     19);
	if (strcmp(url, "/metrics") == 0) {
		struct mbuf b = {0};
		enum MHD_Result ret;

		m->render(&b, m->arg);
		if (b.oom) {
			mbuf_free(&b);
			return reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "text/plain",
				     "out of memory\n", 14);
		}
		ret = reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4", b.data ? b.data : "",
			    b.len);
		mbuf_free(&b);
		return ret;
	}
	if (strcmp(url, "/healthz") == 0) {
		char reason[256] = "ok";
		char body[300];
		bool ok = m->health ? m->health(reason, sizeof reason, m->arg) : true;
		int n = snprintf(body, sizeof body, "%s\n", reason);

		return reply(c, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain", body,
			     (size_t)n);
	}
	return reply(c, MHD_HTTP_NOT_FOUND, "text/plain", "not found\n", 10);
}

static void schedule(struct metrics *m);

static void run_mhd(struct metrics *m)
{
	MHD_run(m->mhd);
	schedule(m);
}

static void poll_cb(uv_poll_t *p, int status, int events)
{
	(void)status;
	(void)events;
	run_mhd(p->data);
}

static void timer_cb(uv_timer_t *t)
{
	run_mhd(t->data);
}

/* MHD keeps its own idle-connection timeouts; wake it when the next one is due. */
static void schedule(struct metrics *m)
{
	MHD_UNSIGNED_LONG_LONG ms;

	if (MHD_get_timeout(m->mhd, &ms) == MHD_YES)
		uv_timer_start(&m->timer, timer_cb, ms, 0);
	else
		uv_timer_stop(&m->timer);
}

static int parse_listen(const char *listen, struct sockaddr_storage *ss, bool *v6)
{
	char host[256];
	const char *colon = strrchr(listen, ':');
	long port;
	char *end;

	if (!colon || colon == listen)
		return -EINVAL;
	port = strtol(colon + 1, &end, 10);
	if (*end || port < 0 || port > 65535)
		return -EINVAL;
	if ((size_t)(colon - listen) >= sizeof host)
		return -EINVAL;
	memcpy(host, listen, (size_t)(colon - listen));
	host[colon - listen] = '\0';
	memset(ss, 0, sizeof *ss);
	if (host[0] == '[') {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
		size_t hl = strlen(host);

		if (hl < 3 || host[hl - 1] != ']')
			return -EINVAL;
		host[hl - 1] = '\0';
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		if (inet_pton(AF_INET6, host + 1, &s6->sin6_addr) != 1)
			return -EINVAL;
		*v6 = true;
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
			return -EINVAL;
		*v6 = false;
	}
	return 0;
}

int metrics_start(uv_loop_t *loop, const char *listen, metrics_render_cb render,
		  metrics_health_cb health, void *arg, struct metrics **out)
{
	struct sockaddr_storage ss;
	const union MHD_DaemonInfo *info;
	struct metrics *m;
	bool v6 = false;
	int rc = parse_listen(listen, &ss, &v6);

	if (rc != 0) {
		log_error("metrics", "invalid metrics.listen \"%s\": expected HOST:PORT", listen);
		return rc;
	}
	m = calloc(1, sizeof *m);
	if (!m)
		return -ENOMEM;
	m->loop = loop;
	m->render = render;
	m->health = health;
	m->arg = arg;
	m->mhd = MHD_start_daemon(MHD_USE_EPOLL | (v6 ? MHD_USE_IPv6 : 0), 0, NULL, NULL, handler,
				  m, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
				  MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
				  MHD_OPTION_CONNECTION_LIMIT, (unsigned)64, MHD_OPTION_END);
	if (!m->mhd) {
		rc = errno ? -errno : -EADDRINUSE;
		log_msg_errno(LOG_LVL_ERROR, "metrics", -rc, "could not listen on \"%s\"", listen);
		free(m);
		return rc;
	}
	info = MHD_get_daemon_info(m->mhd, MHD_DAEMON_INFO_EPOLL_FD);
	uv_poll_init(loop, &m->poll, info->epoll_fd);
	uv_timer_init(loop, &m->timer);
	m->poll.data = m->timer.data = m;
	uv_poll_start(&m->poll, UV_READABLE, poll_cb);
	info = MHD_get_daemon_info(m->mhd, MHD_DAEMON_INFO_BIND_PORT);
	m->port = info ? info->port : 0;
	log_info("metrics", "serving /metrics and /healthz on %s (port %d)", listen, m->port);
	*out = m;
	return 0;
}

int metrics_port(const struct metrics *m)
{
	return m->port;
}

static void closed_cb(uv_handle_t *h)
{
	struct metrics *m = h->data;

	if (--m->closing == 0) {
		/* Only now may the epoll descriptor go: it is no longer polled. */
		MHD_stop_daemon(m->mhd);
		free(m);
	}
}

void metrics_close(struct metrics *m)
{
	if (!m)
		return;
	m->closing = 2;
	uv_close((uv_handle_t *)&m->poll, closed_cb);
	uv_close((uv_handle_t *)&m->timer, closed_cb);
}
