/*
 * Service manager notifications (sd_notify) for Type=notify units: READY,
 * STATUS, STOPPING, RELOADING and the watchdog keep-alive. Every function is
 * a cheap no-op when the process was not started by systemd (no
 * NOTIFY_SOCKET), so callers never need to ask whether they run under it.
 * Call these from the loop thread only.
 */
#ifndef MAM_NOTIFY_H
#define MAM_NOTIFY_H

#include <uv.h>

#include "log.h"

/* Start-up is complete: systemd marks the unit active. Send it again after a
 * reload finished (after notify_reloading()). */
void notify_ready(void);

/* One line for `systemctl status`: what the daemon is doing right now. */
void notify_status(const char *fmt, ...) MAM_PRINTF(1, 2);

/* A graceful stop has begun. */
void notify_stopping(void);

/* A configuration reload has begun; follow with notify_ready() when done. */
void notify_reloading(void);

/*
 * When systemd asked for a watchdog (WatchdogSec=, seen as WATCHDOG_USEC and
 * WATCHDOG_PID), start a timer on loop that sends WATCHDOG=1 at half the
 * interval. The pings come from the loop itself, so a loop that is stuck
 * stops them and systemd restarts the service. The timer is unreferenced: it
 * never keeps the loop alive, and a uv_walk() that closes every handle closes
 * it too. Returns 1 when the timer was started, 0 when no watchdog was asked
 * for, -errno on failure.
 */
int notify_watchdog_start(uv_loop_t *loop);

/* Stop and close the watchdog timer if it runs (safe to call when not). */
void notify_watchdog_stop(void);

#endif
