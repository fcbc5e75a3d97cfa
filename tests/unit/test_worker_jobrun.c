/*
 * Unit tests of jobrun.c on a real loop and real child processes: stdout
 * collected or split into lines, stderr kept for the error message, exit
 * status, a timeout that kills the whole process group (the grandchild
 * too), a program that does not exist. Every test ends with uv_loop_close()
 * succeeding, i.e. no handle left open.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "jobrun.h"

struct ctx {
	int done;
	int lines;
	char last[256];
};

static void on_done(struct jobrun *r, void *arg)
{
	struct ctx *c = arg;

	(void)r;
	c->done++;
}

static void on_line(struct jobrun *r, const char *line, void *arg)
{
	struct ctx *c = arg;

	(void)r;
	c->lines++;
	snprintf(c->last, sizeof c->last, "%s", line);
}

static void run_to_end(uv_loop_t *loop)
{
	uv_run(loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(loop), 0);
}

static void test_collect(void **state)
{
	char *argv[] = {"sh", "-c", "printf 'hello\\nworld'; echo oops >&2; exit 3", NULL};
	struct jobrun r;
	struct ctx c = {0};
	uv_loop_t loop;
	char why[256];

	(void)state;
	uv_loop_init(&loop);
	jobrun_start(&r, &loop, argv, 10000, NULL, on_done, &c);
	run_to_end(&loop);
	assert_int_equal(c.done, 1);
	assert_true(r.exited);
	assert_int_equal(r.exit_status, 3);
	assert_false(jobrun_ok(&r));
	assert_string_equal(r.out, "hello\nworld");
	assert_string_equal(r.err, "oops\n");
	jobrun_describe(&r, "sh", why, sizeof why);
	assert_string_equal(why, "sh: oops");
	jobrun_reset(&r);
}

static void test_lines(void **state)
{
	char *argv[] = {"sh", "-c", "echo out_time_us=1; echo progress=end; printf tail", NULL};
	struct jobrun r;
	struct ctx c = {0};
	uv_loop_t loop;

	(void)state;
	uv_loop_init(&loop);
	jobrun_start(&r, &loop, argv, 10000, on_line, on_done, &c);
	run_to_end(&loop);
	assert_true(jobrun_ok(&r));
	assert_int_equal(c.lines, 3); /* the last line has no newline and still counts */
	assert_string_equal(c.last, "tail");
	jobrun_reset(&r);
}

static void test_timeout_kills_group(void **state)
{
	/* The grandchild writes its pid; it must die with its parent's group. */
	char pidfile[] = "/tmp/jobrun-test-XXXXXX";
	char script[256];
	char *argv[] = {"sh", "-c", script, NULL};
	struct jobrun r;
	struct ctx c = {0};
	uv_loop_t loop;
	FILE *f;
	int fd, pid = 0;

	(void)state;
	fd = mkstemp(pidfile);
	assert_true(fd >= 0);
	close(fd);
	snprintf(script, sizeof script, "sleep 30 & echo $! > %s; wait", pidfile);
	uv_loop_init(&loop);
	jobrun_start(&r, &loop, argv, 1000, NULL, on_done, &c);
	run_to_end(&loop);
	assert_true(r.timed_out);
	assert_int_equal(r.term_signal, SIGKILL);
	f = fopen(pidfile, "r");
	assert_non_null(f);
	assert_int_equal(fscanf(f, "%d", &pid), 1);
	fclose(f);
	unlink(pidfile);
	/* The grandchild was killed (and reaped by init): gone or a zombie at most. */
	for (int i = 0; i < 100 && kill(pid, 0) == 0; i++) {
		char path[64], st = 0;

		snprintf(path, sizeof path, "/proc/%d/stat", pid);
		f = fopen(path, "r");
		if (f && fscanf(f, "%*d %*s %c", &st) == 1 && st == 'Z') {
			fclose(f);
			break;
		}
		if (f)
			fclose(f);
		usleep(20000);
		assert_true(i < 99);
	}
	jobrun_reset(&r);
}

static void test_no_such_program(void **state)
{
	char *argv[] = {"mam-no-such-program-here", NULL};
	struct jobrun r;
	struct ctx c = {0};
	uv_loop_t loop;
	char why[256];

	(void)state;
	uv_loop_init(&loop);
	jobrun_start(&r, &loop, argv, 1000, NULL, on_done, &c);
	run_to_end(&loop);
	assert_int_equal(c.done, 1);
	assert_int_equal(r.spawn_error, UV_ENOENT);
	jobrun_describe(&r, "tool", why, sizeof why);
	assert_non_null(strstr(why, "could not run tool"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_collect),
		cmocka_unit_test(test_lines),
		cmocka_unit_test(test_timeout_kills_group),
		cmocka_unit_test(test_no_such_program),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
