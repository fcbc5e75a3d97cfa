/*
 * jobrun: run one ffprobe/ffmpeg/mediainfo child on the loop (see jobrun.h).
 *
 * Why a session per child: ffmpeg may start helpers, and a timeout must stop
 * all of them; kill(-pid) reaches the whole group only when the child leads
 * its own (UV_PROCESS_DETACHED makes libuv call setsid()). Why setpriv: a
 * worker killed by SIGKILL cannot kill its children, and an orphaned ffmpeg
 * would keep writing a file the next worker is about to write; with
 * PR_SET_PDEATHSIG (set by util-linux's setpriv before it execs the tool) the
 * kernel kills the child when the worker dies. The pipe to the dead worker
 * would end it too, but only at its next write.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jobrun.h"
#include "util.h"

#define SETPRIV_PATH "/usr/bin/setpriv"

static bool use_pdeathsig;

void jobrun_use_pdeathsig(bool on)
{
	use_pdeathsig = on && access(SETPRIV_PATH, X_OK) == 0;
}

static void maybe_done(struct jobrun *r)
{
	if (r->nopen == 0 && r->done_cb)
		r->done_cb(r, r->arg);
}

static void on_close(uv_handle_t *h)
{
	struct jobrun *r = h->data;

	r->nopen--;
	maybe_done(r);
}

static void close_handle(struct jobrun *r, uv_handle_t *h)
{
	if (!uv_is_closing(h))
		uv_close(h, on_close);
	(void)r;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	static char slab[65536]; /* the loop is single-threaded: one read at a time */

	(void)h;
	(void)suggested;
	*buf = uv_buf_init(slab, sizeof slab);
}

static void collect(struct jobrun *r, const char *p, size_t n)
{
	if (r->outlen + n + 1 > JOBRUN_OUT_MAX) {
		r->out_truncated = true;
		return;
	}
	if (r->outlen + n + 1 > r->outcap) {
		size_t cap = r->outcap ? r->outcap : 16384;
		char *nb;

		while (cap < r->outlen + n + 1)
			cap *= 2;
		nb = realloc(r->out, cap);
		if (!nb) {
			r->out_truncated = true;
			return;
		}
		r->out = nb;
		r->outcap = cap;
	}
	memcpy(r->out + r->outlen, p, n);
	r->outlen += n;
	r->out[r->outlen] = '\0';
}

/* Line mode: hand complete lines over; an over-long line is cut, never fatal. */
static void split_lines(struct jobrun *r, const char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (p[i] == '\n' || r->linelen == sizeof r->line - 1) {
			r->line[r->linelen] = '\0';
			r->line_cb(r, r->line, r->arg);
			r->linelen = 0;
			if (p[i] == '\n')
				continue;
		}
		r->line[r->linelen++] = p[i];
	}
}

static void on_out(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct jobrun *r = container_of(s, struct jobrun, outpipe);

	if (n > 0) {
		if (r->line_cb)
			split_lines(r, buf->base, (size_t)n);
		else
			collect(r, buf->base, (size_t)n);
	} else if (n < 0) {
		if (r->line_cb && r->linelen) {
			r->line[r->linelen] = '\0';
			r->line_cb(r, r->line, r->arg);
			r->linelen = 0;
		}
		close_handle(r, (uv_handle_t *)&r->outpipe);
	}
}

static void on_err(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct jobrun *r = container_of(s, struct jobrun, errpipe);

	if (n > 0) {
		size_t room = sizeof r->err - 1 - r->errlen;
		size_t take = (size_t)n < room ? (size_t)n : room;

		memcpy(r->err + r->errlen, buf->base, take);
		r->errlen += take;
		r->err[r->errlen] = '\0';
	} else if (n < 0) {
		close_handle(r, (uv_handle_t *)&r->errpipe);
	}
}

static void on_exit_cb(uv_process_t *p, int64_t status, int sig)
{
	struct jobrun *r = container_of(p, struct jobrun, proc);

	r->exited = true;
	r->exit_status = status;
	r->term_signal = sig;
	close_handle(r, (uv_handle_t *)&r->proc);
	close_handle(r, (uv_handle_t *)&r->timer);
}

static void on_timeout(uv_timer_t *t)
{
	struct jobrun *r = container_of(t, struct jobrun, timer);

	r->timed_out = true;
	jobrun_kill(r);
}

void jobrun_kill(struct jobrun *r)
{
	if (r->exited || r->spawn_error || r->proc.pid <= 0)
		return;
	if (!r->timed_out)
		r->killed = true;
	/* The child leads its own process group (setsid): take the helpers too. */
	if (kill(-r->proc.pid, SIGKILL) != 0)
		kill(r->proc.pid, SIGKILL);
}

void jobrun_start(struct jobrun *r, uv_loop_t *loop, char *const argv[], uint64_t timeout_ms,
		  jobrun_line_cb line_cb, jobrun_done_cb done_cb, void *arg)
{
	uv_process_options_t o;
	uv_stdio_container_t stdio[3];
	char *args[64];
	size_t n = 0, i;
	int rc;

	memset(r, 0, sizeof *r);
	r->line_cb = line_cb;
	r->done_cb = done_cb;
	r->arg = arg;
	if (use_pdeathsig) {
		args[n++] = SETPRIV_PATH;
		args[n++] = "--pdeathsig";
		args[n++] = "KILL";
		args[n++] = "--";
	}
	for (i = 0; argv[i] && n < ARRAY_SIZE(args) - 1; i++)
		args[n++] = argv[i];
	args[n] = NULL;

	uv_pipe_init(loop, &r->outpipe, 0);
	uv_pipe_init(loop, &r->errpipe, 0);
	uv_timer_init(loop, &r->timer);
	r->outpipe.data = r->errpipe.data = r->timer.data = r->proc.data = r;
	r->nopen = 4;

	memset(&o, 0, sizeof o);
	stdio[0].flags = UV_IGNORE;
	stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
	stdio[1].data.stream = (uv_stream_t *)&r->outpipe;
	stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
	stdio[2].data.stream = (uv_stream_t *)&r->errpipe;
	o.file = args[0];
	o.args = args;
	o.exit_cb = on_exit_cb;
	o.stdio = stdio;
	o.stdio_count = 3;
	o.flags = UV_PROCESS_DETACHED;
	rc = uv_spawn(loop, &r->proc, &o);
	if (rc != 0) {
		/* uv_spawn initialised the handle; every handle closes the same way. */
		r->spawn_error = rc;
		close_handle(r, (uv_handle_t *)&r->proc);
		close_handle(r, (uv_handle_t *)&r->timer);
		close_handle(r, (uv_handle_t *)&r->outpipe);
		close_handle(r, (uv_handle_t *)&r->errpipe);
		return;
	}
	uv_read_start((uv_stream_t *)&r->outpipe, on_alloc, on_out);
	uv_read_start((uv_stream_t *)&r->errpipe, on_alloc, on_err);
	if (timeout_ms)
		uv_timer_start(&r->timer, on_timeout, timeout_ms, 0);
}

bool jobrun_ok(const struct jobrun *r)
{
	return !r->spawn_error && r->exited && r->exit_status == 0 && r->term_signal == 0 &&
	       !r->timed_out && !r->killed && !r->out_truncated;
}

/* stderr on one line: newlines become "; ", trailing blanks dropped. */
static void fold(const char *in, char *out, size_t outsz)
{
	size_t o = 0;
	const char *p;

	for (p = in; *p && o + 3 < outsz; p++) {
		if (*p == '\n' || *p == '\r') {
			if (o > 0 && out[o - 1] != ' ' && p[1] && p[1] != '\n') {
				out[o++] = ';';
				out[o++] = ' ';
			}
			continue;
		}
		out[o++] = *p;
	}
	while (o > 0 && (out[o - 1] == ' ' || out[o - 1] == ';'))
		o--;
	out[o] = '\0';
}

void jobrun_describe(const struct jobrun *r, const char *what, char *buf, size_t bufsz)
{
	char err[JOBRUN_ERR_MAX];

	fold(r->err, err, sizeof err);
	if (r->spawn_error)
		snprintf(buf, bufsz, "could not run %s: %s", what, uv_strerror(r->spawn_error));
	else if (r->timed_out)
		snprintf(buf, bufsz, "%s timed out", what);
	else if (r->out_truncated)
		snprintf(buf, bufsz, "%s wrote more than %u bytes", what, JOBRUN_OUT_MAX);
	else if (err[0])
		snprintf(buf, bufsz, "%s: %s", what, err);
	else if (r->term_signal)
		snprintf(buf, bufsz, "%s was killed by signal %d", what, r->term_signal);
	else
		snprintf(buf, bufsz, "%s exited with status %lld", what, (long long)r->exit_status);
}

void jobrun_reset(struct jobrun *r)
{
	free(r->out);
	r->out = NULL;
	r->outlen = r->outcap = 0;
}
