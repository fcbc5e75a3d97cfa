/*
 * metrics: the Prometheus /metrics and /healthz endpoints, served on the
 * daemon's own libuv loop by libmicrohttpd (its epoll descriptor sits on a
 * uv_poll_t; no extra thread). The owner renders the exposition text through
 * a callback, so this module knows HTTP, not what is being counted.
 */
#ifndef MAM_METRICS_H
#define MAM_METRICS_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* A growable text buffer for the exposition format. */
struct mbuf {
	char *data;
	size_t len, cap;
	bool oom;
};
void mbuf_printf(struct mbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append a label value escaped as the exposition format requires (\\ \" \n). */
void mbuf_label(struct mbuf *b, const char *value);
void mbuf_free(struct mbuf *b);

/* Fixed-bucket histogram (seconds), cumulative as Prometheus wants them. */
#define HIST_BUCKETS 12
struct histogram {
	const double *bounds;		   /* HIST_BUCKETS upper bounds; NULL = histogram_bounds */
	uint64_t counts[HIST_BUCKETS + 1]; /* last one is +Inf */
	double sum;
	uint64_t count;
};
/* Seconds, from 1 ms to 10 s: latencies. */
extern const double histogram_bounds[HIST_BUCKETS];
/* Counts, from 1 to 5000: batch sizes. */
extern const double histogram_count_bounds[HIST_BUCKETS];
void histogram_observe(struct histogram *h, double seconds);
/* Render name{labels,le="..."} lines; labels may be "" or `tenant="x"`. */
void histogram_render(struct mbuf *b, const char *name, const char *labels,
		      const struct histogram *h);

typedef void (*metrics_render_cb)(struct mbuf *out, void *arg);
/* Return true when healthy; fill reason (for the body) when not. */
typedef bool (*metrics_health_cb)(char *reason, size_t reasonsz, void *arg);

struct metrics;

/* listen is "HOST:PORT" or "[V6]:PORT". Returns 0 or -errno (e.g. -EADDRINUSE). */
int metrics_start(uv_loop_t *loop, const char *listen, metrics_render_cb render,
		  metrics_health_cb health, void *arg, struct metrics **out)
	__attribute__((warn_unused_result));
/* The port actually bound (useful with port 0 in tests). */
int metrics_port(const struct metrics *m);
void metrics_close(struct metrics *m);

#endif
