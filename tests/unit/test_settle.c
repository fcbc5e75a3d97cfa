/*
 * Unit tests of the settle state machine (settle.c): every transition, with
 * made-up identities and times, so the rules "stable for settle_ms, no local
 * writer, reported once, reported again after a change" are checked without
 * real writers or sleeps.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "settle.h"

#define SMS 500

static struct file_id fid(int64_t size, int64_t mtime_ns)
{
	struct file_id id = {
		.dev = 1, .ino = 42, .size = size, .mtime_ns = mtime_ns, .ctime_ns = mtime_ns};
	return id;
}

static void test_created_then_closed_is_ready(void **state)
{
	struct settle s = {0};
	struct file_id id = fid(0, 1);

	assert_int_equal(s.state, SETTLE_SEEN);
	assert_int_equal(settle_check(&s, 0, SMS), SETTLE_WAIT);
	assert_true(settle_step(&s, SETTLE_EV_CREATED, &id, 1000, SMS, "a"));
	assert_int_equal(s.state, SETTLE_SETTLING);
	assert_true(s.history);
	settle_step(&s, SETTLE_EV_OPEN, NULL, 1000, SMS, "a");
	/* written at 1200 */
	id = fid(100, 2);
	settle_step(&s, SETTLE_EV_WRITE, NULL, 1200, SMS, "a");
	settle_step(&s, SETTLE_EV_STAT, &id, 1200, SMS, "a");
	assert_int_equal(settle_due(&s, SMS), 1700);
	assert_int_equal(settle_check(&s, 1699, SMS), SETTLE_WAIT);
	/* still open at the deadline: not finished */
	assert_int_equal(settle_check(&s, 1700, SMS), SETTLE_OPEN);
	settle_step(&s, SETTLE_EV_CLOSE, NULL, 1800, SMS, "a");
	assert_int_equal(settle_check(&s, 1800, SMS), SETTLE_READY);
}

static void test_writer_pausing_with_file_open(void **state)
{
	struct settle s = {0};
	struct file_id id = fid(10, 1);

	settle_step(&s, SETTLE_EV_CREATED, &id, 0, SMS, "p");
	settle_step(&s, SETTLE_EV_OPEN, NULL, 0, SMS, "p");
	/* pauses 3x settle_ms with the file open: never ready */
	assert_int_equal(settle_check(&s, 3 * SMS, SMS), SETTLE_OPEN);
	settle_step(&s, SETTLE_EV_BLOCKED, NULL, 3 * SMS, SMS, "p");
	assert_int_equal(settle_due(&s, SMS), 4 * SMS);
	assert_int_equal(settle_check(&s, 3 * SMS + 1, SMS), SETTLE_WAIT);
	assert_int_equal(settle_check(&s, 4 * SMS, SMS), SETTLE_OPEN);
	/* a reader opening and closing does not make it look closed */
	settle_step(&s, SETTLE_EV_OPEN, NULL, 4 * SMS, SMS, "p");
	settle_step(&s, SETTLE_EV_CLOSE, NULL, 4 * SMS, SMS, "p");
	assert_int_equal(settle_check(&s, 5 * SMS, SMS), SETTLE_OPEN);
	/* the writer closes: the recheck delay is dropped, ready at once */
	settle_step(&s, SETTLE_EV_CLOSE, NULL, 5 * SMS, SMS, "p");
	assert_int_equal(s.recheck_ms, 0);
	assert_int_equal(settle_check(&s, 5 * SMS, SMS), SETTLE_READY);
}

static void test_identity_change_restarts_clock(void **state)
{
	struct settle s = {0};
	struct file_id a = fid(10, 1), b = fid(20, 2), c = a;

	settle_step(&s, SETTLE_EV_CREATED, &a, 0, SMS, "c");
	assert_false(settle_step(&s, SETTLE_EV_STAT, &a, 400, SMS, "c"));
	assert_int_equal(s.changed_ms, 0);
	settle_step(&s, SETTLE_EV_STAT, &b, 400, SMS, "c");
	assert_int_equal(s.changed_ms, 400);
	assert_int_equal(settle_check(&s, 600, SMS), SETTLE_WAIT);
	/* ctime alone (chmod, utimes) is part of the identity */
	c = b;
	c.ctime_ns = 99;
	settle_step(&s, SETTLE_EV_STAT, &c, 800, SMS, "c");
	assert_int_equal(settle_due(&s, SMS), 1300);
	/* so is the inode (replaced by a rename) */
	c.ino = 43;
	settle_step(&s, SETTLE_EV_STAT, &c, 900, SMS, "c");
	assert_int_equal(s.id.ino, 43);
	assert_int_equal(settle_check(&s, 1400, SMS), SETTLE_READY);
}

static void test_found_by_scan_needs_probe(void **state)
{
	struct settle s = {0};
	struct file_id id = fid(5, 1);

	/* a scan found it, credited with an age: since 500 ms ago */
	assert_true(settle_step(&s, SETTLE_EV_FOUND, &id, 1000 - SMS, SMS, "f"));
	assert_false(s.history);
	assert_int_equal(settle_check(&s, 1000, SMS), SETTLE_NEED_PROBE);
	/* opens are not counted without history */
	settle_step(&s, SETTLE_EV_OPEN, NULL, 1000, SMS, "f");
	assert_int_equal(s.opens, 0);
	/* the probe saw a writer */
	settle_step(&s, SETTLE_EV_BLOCKED, NULL, 1000, SMS, "f");
	assert_int_equal(settle_check(&s, 1200, SMS), SETTLE_WAIT);
	assert_int_equal(settle_check(&s, 1500, SMS), SETTLE_NEED_PROBE);
}

static void test_first_stat_from_seen(void **state)
{
	struct settle s = {0};
	struct file_id id = fid(5, 1);

	assert_false(settle_step(&s, SETTLE_EV_WRITE, NULL, 10, SMS, "s"));
	assert_int_equal(s.state, SETTLE_SEEN);
	assert_true(settle_step(&s, SETTLE_EV_STAT, &id, 10, SMS, "s"));
	assert_int_equal(s.state, SETTLE_SETTLING);
	assert_false(s.history);
}

static void test_report_done_and_change_after(void **state)
{
	struct settle s = {0};
	struct file_id id = fid(10, 1), id2 = fid(11, 2);

	settle_step(&s, SETTLE_EV_CREATED, &id, 0, SMS, "r");
	/* done before the report changes nothing */
	assert_false(settle_step(&s, SETTLE_EV_DONE, NULL, 10, SMS, "r"));
	assert_int_equal(s.state, SETTLE_SETTLING);
	assert_true(settle_step(&s, SETTLE_EV_REPORTED, NULL, SMS, SMS, "r"));
	assert_int_equal(s.state, SETTLE_FINISHED);
	assert_int_equal(settle_check(&s, 2 * SMS, SMS), SETTLE_IDLE);
	/* reported twice? no: REPORTED is only valid from SETTLING */
	assert_false(settle_step(&s, SETTLE_EV_REPORTED, NULL, SMS, SMS, "r"));
	/* our own hashing opens and closes it: nothing happens */
	settle_step(&s, SETTLE_EV_OPEN, NULL, SMS + 1, SMS, "r");
	settle_step(&s, SETTLE_EV_CLOSE, NULL, SMS + 2, SMS, "r");
	assert_int_equal(s.state, SETTLE_FINISHED);
	assert_int_equal(s.opens, 0);
	assert_true(settle_step(&s, SETTLE_EV_DONE, NULL, SMS + 3, SMS, "r"));
	assert_int_equal(s.state, SETTLE_DONE);
	/* an unchanged stat keeps it done */
	assert_false(settle_step(&s, SETTLE_EV_STAT, &id, 5000, SMS, "r"));
	assert_int_equal(s.state, SETTLE_DONE);
	/* a change brings it back, without open history */
	assert_true(settle_step(&s, SETTLE_EV_STAT, &id2, 6000, SMS, "r"));
	assert_int_equal(s.state, SETTLE_SETTLING);
	assert_false(s.history);
	assert_int_equal(settle_check(&s, 6000 + SMS, SMS), SETTLE_NEED_PROBE);
}

static void test_write_after_report(void **state)
{
	struct settle s = {0};
	struct file_id id = fid(10, 1);

	settle_step(&s, SETTLE_EV_CREATED, &id, 0, SMS, "w");
	settle_step(&s, SETTLE_EV_REPORTED, NULL, SMS, SMS, "w");
	/* a write while the owner hashes it: settling again; a late done from
	 * the owner must not hide the change */
	assert_true(settle_step(&s, SETTLE_EV_WRITE, NULL, 700, SMS, "w"));
	assert_int_equal(s.state, SETTLE_SETTLING);
	assert_false(settle_step(&s, SETTLE_EV_DONE, NULL, 710, SMS, "w"));
	assert_int_equal(s.state, SETTLE_SETTLING);
	assert_int_equal(settle_due(&s, SMS), 700 + SMS);
}

static void test_retry(void **state)
{
	struct settle s = {0};
	struct file_id id = fid(10, 1);

	assert_false(settle_step(&s, SETTLE_EV_RETRY, NULL, 5, SMS, "t"));
	settle_step(&s, SETTLE_EV_CREATED, &id, 0, SMS, "t");
	settle_step(&s, SETTLE_EV_REPORTED, NULL, SMS, SMS, "t");
	assert_true(settle_step(&s, SETTLE_EV_RETRY, NULL, 900, SMS, "t"));
	assert_int_equal(s.state, SETTLE_SETTLING);
	assert_false(s.history);
	assert_int_equal(settle_check(&s, 900 + SMS - 1, SMS), SETTLE_WAIT);
	assert_int_equal(settle_check(&s, 900 + SMS, SMS), SETTLE_NEED_PROBE);
}

/* The owner's backoff: no answer before the deferral, the normal one after;
 * a change clears it, and only a settling file can be deferred. */
static void test_defer(void **state)
{
	struct settle s = {0};
	struct file_id id = fid(10, 1), id2 = fid(11, 2);

	(void)state;
	settle_step(&s, SETTLE_EV_CREATED, &id, 0, SMS, "d");
	settle_step(&s, SETTLE_EV_REPORTED, NULL, SMS, SMS, "d");
	settle_defer(&s, 50000); /* FINISHED: nothing to defer */
	assert_int_equal(s.defer_ms, 0);
	settle_step(&s, SETTLE_EV_RETRY, NULL, 1000, SMS, "d");
	settle_defer(&s, 11000);
	assert_int_equal(settle_due(&s, SMS), 11000);
	assert_int_equal(settle_check(&s, 1000 + SMS, SMS), SETTLE_WAIT);
	assert_int_equal(settle_check(&s, 10999, SMS), SETTLE_WAIT);
	assert_int_equal(settle_check(&s, 11000, SMS), SETTLE_NEED_PROBE);
	settle_defer(&s, 5000); /* never brought forward */
	assert_int_equal(settle_due(&s, SMS), 11000);
	/* Our own post read it: an open and a close are no change. */
	settle_step(&s, SETTLE_EV_OPEN, NULL, 2000, SMS, "d");
	settle_step(&s, SETTLE_EV_CLOSE, NULL, 2000, SMS, "d");
	settle_step(&s, SETTLE_EV_STAT, &id, 2500, SMS, "d");
	assert_int_equal(settle_due(&s, SMS), 11000);
	/* A retry of the same version keeps its backoff count. */
	s.backoffs = 3;
	settle_step(&s, SETTLE_EV_REPORTED, NULL, 11000, SMS, "d");
	settle_step(&s, SETTLE_EV_RETRY, NULL, 12000, SMS, "d");
	assert_int_equal(s.backoffs, 3);
	settle_defer(&s, 40000);
	/* Changed meanwhile: a new version, settled as usual from the change,
	 * its backoff starting over. */
	settle_step(&s, SETTLE_EV_STAT, &id2, 13000, SMS, "d");
	assert_int_equal(settle_due(&s, SMS), 13000 + SMS);
	assert_int_equal(s.backoffs, 0);
}

static void test_lost_events_drop_history(void **state)
{
	struct settle s = {0};
	struct file_id id = fid(10, 1);

	settle_step(&s, SETTLE_EV_CREATED, &id, 0, SMS, "o");
	settle_step(&s, SETTLE_EV_OPEN, NULL, 0, SMS, "o");
	/* the close was in an overflowed queue: ask the kernel instead */
	settle_step(&s, SETTLE_EV_LOST, NULL, 0, 0, NULL);
	assert_int_equal(settle_check(&s, SMS, SMS), SETTLE_NEED_PROBE);
}

static void test_recreated_resets_counts(void **state)
{
	struct settle s = {0};
	struct file_id id = fid(10, 1);

	settle_step(&s, SETTLE_EV_FOUND, &id, 0, SMS, "x");
	settle_step(&s, SETTLE_EV_REPORTED, NULL, SMS, SMS, "x");
	settle_step(&s, SETTLE_EV_DONE, NULL, SMS, SMS, "x");
	id.ino = 7;
	assert_true(settle_step(&s, SETTLE_EV_CREATED, &id, 2000, SMS, "x"));
	assert_true(s.history);
	assert_int_equal(s.opens, 0);
	assert_int_equal(s.closes, 0);
	/* a close without an open (counted before a reset) never underflows */
	settle_step(&s, SETTLE_EV_CLOSE, NULL, 2000, SMS, "x");
	assert_int_equal(s.closes, 0);
	settle_step(&s, SETTLE_EV_OPEN, NULL, 2000, SMS, "x");
	assert_int_equal(settle_check(&s, 2000 + SMS, SMS), SETTLE_OPEN);
}

static void test_age(void **state)
{
	struct file_id id = fid(1, 1000000000LL);

	id.ctime_ns = 2000000000LL;
	assert_int_equal(settle_age_ms(&id, 2500000000LL), 500);
	assert_true(settle_age_ms(&id, 1000000000LL) < 0);
	assert_string_equal(settle_state_name(SETTLE_DONE), "done");
	assert_string_equal(settle_state_name((enum settle_state)77), "invalid");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_created_then_closed_is_ready),
		cmocka_unit_test(test_writer_pausing_with_file_open),
		cmocka_unit_test(test_identity_change_restarts_clock),
		cmocka_unit_test(test_found_by_scan_needs_probe),
		cmocka_unit_test(test_first_stat_from_seen),
		cmocka_unit_test(test_report_done_and_change_after),
		cmocka_unit_test(test_write_after_report),
		cmocka_unit_test(test_retry),
		cmocka_unit_test(test_defer),
		cmocka_unit_test(test_lost_events_drop_history),
		cmocka_unit_test(test_recreated_resets_counts),
		cmocka_unit_test(test_age),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
