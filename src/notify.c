/*
 * notify: the daemon's side of the systemd notification protocol, through
 * libsystemd's sd_notify(). Units run with Type=notify, so systemd considers
 * the service started only when READY=1 arrives (after the configuration was
 * loaded and the folders are watched), shows STATUS= in `systemctl status`,
 * and restarts the service when the WATCHDOG=1 pings stop. The pings are sent
 * by a timer on the daemon's own event loop rather than by a thread: a thread
 * would keep pinging while the loop is wedged, which is exactly the failure
 * the watchdog exists to catch. Outside systemd NOTIFY_SOCKET is unset and
 * every function returns at once.
 */
#include "notify.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <systemd/sd-daemon.h>

static uv_timer_t wd_timer; /* the watchdog ping timer, when one runs */
static bool wd_open;	    /* wd_timer initialised and not yet closed */
static bool warned;	    /* one warning per process for a failing socket */

static bool under_systemd(void)
{
	return getenv("NOTIFY_SOCKET") != NULL;
}

static void send_state(const char *state)
{
	int rc;

	if (!under_systemd())
		return;
	/* unset_environment=0: reload and the watchdog read the variables again. */
	rc = sd_notify(0, state);
	if (rc < 0 && !warned) {
		warned = true;
		log_warnx("notify", "could not notify the service manager: %s", strerror(-rc));
	}
}

void notify_ready(void)
{
	send_state("READY=1");
}

void notify_status(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	if (!under_systemd())
		return;
	n = snprintf(buf, sizeof buf, "STATUS=");
	va_start(ap, fmt);
	/* A truncated status line is still useful: vsnprintf always terminates. */
	vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
	va_end(ap);
	send_state(buf);
}

void notify_stopping(void)
{
	send_state("STOPPING=1");
}

void notify_reloading(void)
{
	char buf[64];
	struct timespec ts;

	if (!under_systemd())
		return;
	/*
	 * systemd 253's Type=notify-reload wants the monotonic time with
	 * RELOADING=1 to match it with the reload it asked for; older managers
	 * ignore the extra field.
	 */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(buf, sizeof buf, "RELOADING=1\nMONOTONIC_USEC=%llu",
		 (unsigned long long)ts.tv_sec * 1000000ull +
			 (unsigned long long)ts.tv_nsec / 1000);
	send_state(buf);
}

static void wd_ping(uv_timer_t *t)
{
	(void)t;
	send_state("WATCHDOG=1");
}

static void wd_closed(uv_handle_t *h)
{
	(void)h;
	wd_open = false;
}

int notify_watchdog_start(uv_loop_t *loop)
{
	uint64_t usec = 0, ms;
	int rc;

	/* > 0 only when WATCHDOG_USEC is set and WATCHDOG_PID, if set, is us. */
	rc = sd_watchdog_enabled(0, &usec);
	if (rc < 0) {
		log_warnx("notify", "invalid watchdog settings from the service manager: %s",
			  strerror(-rc));
		return rc;
	}
	if (rc == 0 || usec == 0)
		return 0;
	/*
	 * Someone else's uv_walk() may have closed the timer with a NULL
	 * callback, so wd_open can be stale; uv_is_closing() tells.
	 */
	if (wd_open && !uv_is_closing((uv_handle_t *)&wd_timer)) {
		if (wd_timer.loop != loop)
			return -EBUSY;
		return 1;
	}
	rc = uv_timer_init(loop, &wd_timer);
	if (rc < 0)
		return rc;
	wd_open = true;
	/* Half the interval, as sd_watchdog_enabled(3) recommends. */
	ms = usec / 2000;
	if (ms == 0)
		ms = 1;
	uv_unref((uv_handle_t *)&wd_timer);
	/* The loop's cached time may be stale after a long start-up. */
	uv_update_time(loop);
	rc = uv_timer_start(&wd_timer, wd_ping, ms, ms);
	if (rc < 0) {
		uv_close((uv_handle_t *)&wd_timer, wd_closed);
		return rc;
	}
	send_state("WATCHDOG=1");
	log_info("notify", "watchdog enabled: pinging every %llu ms", (unsigned long long)ms);
	return 1;
}

void notify_watchdog_stop(void)
{
	if (!wd_open || uv_is_closing((uv_handle_t *)&wd_timer))
		return;
	uv_timer_stop(&wd_timer);
	uv_close((uv_handle_t *)&wd_timer, wd_closed);
}
