/*
 * notify: the messages reach a real AF_UNIX datagram socket named by
 * NOTIFY_SOCKET, exactly as systemd's would (the test plays the service
 * manager); nothing is sent when NOTIFY_SOCKET is unset; the watchdog pings
 * arrive at half of WATCHDOG_USEC from the loop and stop while the loop is
 * blocked, which is the property that lets systemd catch a wedged daemon.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "notify.h"
#include "util.h"

struct manager {
	int fd;
	char path[108];
};

/* Bind a datagram socket in a fresh temp dir and point NOTIFY_SOCKET at it. */
static int setup(void **state)
{
	static struct manager m;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char dir[] = "/tmp/notifytest.XXXXXX";

	assert_non_null(mkdtemp(dir));
	snprintf(m.path, sizeof m.path, "%s/notify", dir);
	m.fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(m.fd >= 0);
	memcpy(sa.sun_path, m.path, strlen(m.path) + 1);
	assert_int_equal(bind(m.fd, (struct sockaddr *)&sa, sizeof sa), 0);
	setenv("NOTIFY_SOCKET", m.path, 1);
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	*state = &m;
	return 0;
}

static int teardown(void **state)
{
	struct manager *m = *state;
	char *slash;

	close(m->fd);
	unlink(m->path);
	slash = strrchr(m->path, '/');
	*slash = '\0';
	rmdir(m->path);
	unsetenv("NOTIFY_SOCKET");
	return 0;
}

/* One datagram, or "" when none is queued. */
static const char *recv_msg(struct manager *m)
{
	static char buf[1024];
	ssize_t n = recv(m->fd, buf, sizeof buf - 1, MSG_DONTWAIT);

	if (n < 0) {
		assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
		n = 0;
	}
	buf[n] = '\0';
	return buf;
}

static void drain(struct manager *m)
{
	while (recv_msg(m)[0] != '\0')
		;
}

static void test_states_arrive(void **state)
{
	struct manager *m = *state;
	const char *msg;

	/* sd_notify sends synchronously: the datagram is queued on return. */
	notify_ready();
	assert_string_equal(recv_msg(m), "READY=1");
	notify_status("watching %d folders; database %s", 3, "connected");
	assert_string_equal(recv_msg(m), "STATUS=watching 3 folders; database connected");
	notify_stopping();
	assert_string_equal(recv_msg(m), "STOPPING=1");
	notify_reloading();
	msg = recv_msg(m);
	assert_true(strncmp(msg, "RELOADING=1\nMONOTONIC_USEC=", 27) == 0);
	assert_true(strtoull(msg + 27, NULL, 10) > 0);
	assert_string_equal(recv_msg(m), "");
}

static void test_long_status_truncated(void **state)
{
	struct manager *m = *state;
	char big[2000];
	const char *msg;

	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	notify_status("%s", big);
	msg = recv_msg(m);
	assert_true(strncmp(msg, "STATUS=xxx", 10) == 0);
	assert_true(strlen(msg) < 600);
}

static void test_silent_outside_systemd(void **state)
{
	struct manager *m = *state;
	uv_loop_t loop;

	unsetenv("NOTIFY_SOCKET");
	notify_ready();
	notify_status("nobody listens %d", 1);
	notify_stopping();
	notify_reloading();
	assert_int_equal(uv_loop_init(&loop), 0);
	/* No WATCHDOG_USEC: nothing to start. */
	assert_int_equal(notify_watchdog_start(&loop), 0);
	assert_int_equal(uv_loop_close(&loop), 0);
	setenv("NOTIFY_SOCKET", m->path, 1);
	assert_string_equal(recv_msg(m), "");
}

static void test_watchdog_other_pid(void **state)
{
	struct manager *m = *state;
	uv_loop_t loop;
	char pid[32];

	/* WATCHDOG_PID names the main process; a child must not ping. */
	snprintf(pid, sizeof pid, "%ld", (long)getpid() + 1);
	setenv("WATCHDOG_USEC", "100000", 1);
	setenv("WATCHDOG_PID", pid, 1);
	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(notify_watchdog_start(&loop), 0);
	assert_int_equal(uv_loop_close(&loop), 0);
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	assert_string_equal(recv_msg(m), "");
}

struct wdtest {
	struct manager *m;
	uv_poll_t poll;		/* the manager socket, readable when a ping arrives */
	uv_timer_t guard;	/* fails the test instead of hanging */
	int pings;		/* WATCHDOG=1 received */
	int after_stall;	/* pings received after the loop was blocked */
	int queued_after_stall; /* datagrams queued during the block */
	uint64_t start_ms, third_ms;
	int stalled;
};

static void close_cb(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

static void guard_cb(uv_timer_t *t)
{
	(void)t;
	fail_msg("watchdog pings did not arrive within 10 s");
}

static void on_ping(uv_poll_t *p, int status, int events)
{
	struct wdtest *w = container_of(p, struct wdtest, poll);
	const char *msg;

	assert_int_equal(status, 0);
	(void)events;
	while ((msg = recv_msg(w->m))[0] != '\0') {
		assert_string_equal(msg, "WATCHDOG=1");
		if (w->stalled) {
			w->after_stall++;
			continue;
		}
		if (++w->pings == 3)
			w->third_ms = uv_now(p->loop);
	}
	if (w->pings >= 3 && !w->stalled) {
		struct timespec ts = {0, 400 * 1000000L};

		/*
		 * Block the loop for 8 ping intervals: a wedged daemon. No
		 * ping may be sent meanwhile; the loop is the only sender.
		 */
		w->stalled = 1;
		while (nanosleep(&ts, &ts) != 0)
			;
		w->queued_after_stall = recv_msg(w->m)[0] != '\0';
		drain(w->m);
		return;
	}
	if (w->after_stall >= 1)
		uv_walk(p->loop, close_cb, NULL);
}

static void test_watchdog_pings_from_loop(void **state)
{
	struct wdtest w = {.m = *state};
	uv_loop_t loop;
	char pid[32];

	drain(w.m);
	snprintf(pid, sizeof pid, "%ld", (long)getpid());
	setenv("WATCHDOG_USEC", "100000", 1); /* 100 ms: pings every 50 ms */
	setenv("WATCHDOG_PID", pid, 1);
	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(uv_poll_init(&loop, &w.poll, w.m->fd), 0);
	assert_int_equal(uv_poll_start(&w.poll, UV_READABLE, on_ping), 0);
	assert_int_equal(uv_timer_init(&loop, &w.guard), 0);
	assert_int_equal(uv_timer_start(&w.guard, guard_cb, 10000, 0), 0);
	assert_int_equal(notify_watchdog_start(&loop), 1);
	/* notify_watchdog_start() updated the loop time: the timer counts from here. */
	w.start_ms = uv_now(&loop);
	/* A second start on the same loop is harmless. */
	assert_int_equal(notify_watchdog_start(&loop), 1);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(uv_loop_close(&loop), 0);

	assert_true(w.pings >= 3);
	/* The first ping is sent at start, the next ones every 50 ms. */
	assert_true(w.third_ms - w.start_ms >= 100);
	assert_int_equal(w.queued_after_stall, 0);
	assert_true(w.after_stall >= 1);
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
}

static void test_watchdog_restart_and_stop(void **state)
{
	struct manager *m = *state;
	uv_loop_t loop;
	char pid[32];

	/* A new loop after the previous one closed the timer (ingest's uv_walk). */
	snprintf(pid, sizeof pid, "%ld", (long)getpid());
	setenv("WATCHDOG_USEC", "5000000", 1);
	setenv("WATCHDOG_PID", pid, 1);
	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(notify_watchdog_start(&loop), 1);
	assert_string_equal(recv_msg(m), "WATCHDOG=1");
	notify_watchdog_stop();
	notify_watchdog_stop();
	/* The timer is unreferenced and closed: the loop has nothing to run. */
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(uv_loop_close(&loop), 0);
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_states_arrive),
		cmocka_unit_test(test_long_status_truncated),
		cmocka_unit_test(test_silent_outside_systemd),
		cmocka_unit_test(test_watchdog_other_pid),
		cmocka_unit_test(test_watchdog_pings_from_loop),
		cmocka_unit_test(test_watchdog_restart_and_stop),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
