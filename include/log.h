/*
 * Logging: one line per event, "level subsystem: message", to stderr.
 * Under systemd (JOURNAL_STREAM set) lines carry the sd-daemon "<N>" level
 * prefix so journald records the priority; with log_set_json(true) each line
 * is one JSON object for log shippers. log_warn() appends strerror(errno) and
 * keeps errno, log_warnx() does not (OpenSMTPD's convention).
 */
#ifndef MAM_LOG_H
#define MAM_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum log_level { LOG_LVL_ERROR = 3, LOG_LVL_WARN = 4, LOG_LVL_INFO = 6, LOG_LVL_DEBUG = 7 };

void log_init(const char *progname);
void log_set_level(enum log_level lvl);
void log_set_json(int on);

#define MAM_PRINTF(a, b) __attribute__((format(printf, a, b)))
void log_msg(enum log_level lvl, const char *subsys, const char *fmt, ...) MAM_PRINTF(3, 4);
void log_msg_errno(enum log_level lvl, const char *subsys, int err, const char *fmt, ...)
	MAM_PRINTF(4, 5);

#define log_error(sub, ...) log_msg(LOG_LVL_ERROR, sub, __VA_ARGS__)
#define log_warnx(sub, ...) log_msg(LOG_LVL_WARN, sub, __VA_ARGS__)
#define log_info(sub, ...)  log_msg(LOG_LVL_INFO, sub, __VA_ARGS__)
#define log_debug(sub, ...) log_msg(LOG_LVL_DEBUG, sub, __VA_ARGS__)
/* Appends ": strerror(errno)". */
#define log_warn(sub, ...) log_msg_errno(LOG_LVL_WARN, sub, errno, __VA_ARGS__)

/*
 * Escape a path (or any byte string) for a log line: printable ASCII and
 * valid UTF-8 pass through, '\\' and '"' are backslashed, control bytes and
 * invalid UTF-8 become \xNN. Always NUL-terminates; truncates with "..." when
 * out is too small. Returns out so it can be used inline in a printf.
 */
char *log_escape(const char *in, char *out, size_t outsz);

/* Escaped path buffer size large enough for PATH_MAX input plus escapes. */
#define LOG_ESC_MAX 1024

#endif
