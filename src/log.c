/*
 * Logging for a daemon that is read by people and by journald. Messages are
 * lowercase and factual in PostgreSQL's style; every path that comes from a
 * drop folder is escaped first because editors can create any byte sequence
 * the filesystem allows, including terminal escapes.
 */
#include "log.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *prog = "mam-ingest";
static enum log_level max_level = LOG_LVL_INFO;
static int json_mode;
static int journal_mode;

void log_init(const char *progname)
{
	const char *lvl = getenv("MAM_LOG_LEVEL");

	if (progname)
		prog = progname;
	/* journald sets JOURNAL_STREAM for services whose stderr it reads. */
	journal_mode = getenv("JOURNAL_STREAM") != NULL;
	if (lvl && strcmp(lvl, "debug") == 0)
		max_level = LOG_LVL_DEBUG;
}

void log_set_level(enum log_level lvl)
{
	max_level = lvl;
}
void log_set_json(int on)
{
	json_mode = on;
}

static const char *level_name(enum log_level lvl)
{
	switch (lvl) {
	case LOG_LVL_ERROR: return "error";
	case LOG_LVL_WARN: return "warning";
	case LOG_LVL_INFO: return "info";
	default: return "debug";
	}
}

/* Length of a valid UTF-8 sequence at s (max n bytes), or 0 when invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	size_t len, i;
	unsigned cp;

	if (s[0] < 0x80)
		return 1;
	if ((s[0] & 0xe0) == 0xc0) {
		len = 2;
		cp = s[0] & 0x1f;
	} else if ((s[0] & 0xf0) == 0xe0) {
		len = 3;
		cp = s[0] & 0x0f;
	} else if ((s[0] & 0xf8) == 0xf0) {
		len = 4;
		cp = s[0] & 0x07;
	} else
		return 0;
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	/* Reject overlong forms, surrogates and out-of-range code points. */
	if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;
	return len;
}

/*
 * Valid UTF-8 that a terminal or log viewer would still act on rather than
 * show: C1 controls (U+0080-U+009F; 0x9B is CSI on many terminals), the line
 * and paragraph separators (U+2028, U+2029) and the bidirectional overrides
 * and isolates (U+202A-U+202E, U+2066-U+2069) that can make a name display
 * as another. Anyone who can write to a share chooses file names.
 */
static bool utf8_shows_badly(const unsigned char *s, size_t ul)
{
	if (ul == 2)
		return s[0] == 0xc2 && s[1] >= 0x80 && s[1] <= 0x9f;
	if (ul == 3 && s[0] == 0xe2 && s[1] == 0x80)
		return s[2] >= 0xa8 && s[2] <= 0xae; /* U+2028-U+202E */
	if (ul == 3 && s[0] == 0xe2 && s[1] == 0x81)
		return s[2] >= 0xa6 && s[2] <= 0xa9; /* U+2066-U+2069 */
	return false;
}

char *log_escape(const char *in, char *out, size_t outsz)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t n = strlen(in), o = 0, i = 0;

	if (outsz == 0)
		return out;
	while (i < n) {
		char tmp[8];
		size_t tl, ul = utf8_len(s + i, n - i);

		if (ul == 1 && (s[i] < 0x20 || s[i] == 0x7f)) {
			snprintf(tmp, sizeof tmp, "\\x%02x", s[i]);
			tl = 4;
		} else if (ul == 1 && (s[i] == '\\' || s[i] == '"')) {
			tmp[0] = '\\';
			tmp[1] = (char)s[i];
			tl = 2;
		} else if (ul == 0 || utf8_shows_badly(s + i, ul)) {
			/* Byte by byte: the exact bytes stay recoverable. */
			snprintf(tmp, sizeof tmp, "\\x%02x", s[i]);
			tl = 4;
			ul = 1;
		} else {
			memcpy(tmp, s + i, ul);
			tl = ul;
		}
		if (o + tl + 4 >= outsz) {
			memcpy(out + o, "...", 3);
			o += 3;
			break;
		}
		memcpy(out + o, tmp, tl);
		o += tl;
		i += ul;
	}
	out[o] = '\0';
	return out;
}

static void emit(enum log_level lvl, const char *subsys, const char *msg)
{
	if (json_mode) {
		char esc[4096];
		struct timespec ts;
		struct tm tm;
		char tbuf[32];

		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		strftime(tbuf, sizeof tbuf, "%Y-%m-%dT%H:%M:%S", &tm);
		/* msg is already escaped for paths; escape quotes/backslashes again for JSON. */
		log_escape(msg, esc, sizeof esc);
		fprintf(stderr,
			"{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\",\"subsys\":\"%s\",\"msg\":\"%s\"}"
			"\n",
			tbuf, ts.tv_nsec / 1000000, level_name(lvl), subsys, esc);
	} else if (journal_mode) {
		fprintf(stderr, "<%d>%s: %s\n", (int)lvl, subsys, msg);
	} else {
		fprintf(stderr, "%s %s: %s\n", level_name(lvl), subsys, msg);
	}
}

void log_msg(enum log_level lvl, const char *subsys, const char *fmt, ...)
{
	char buf[4096];
	va_list ap;
	int saved = errno;

	if (lvl > max_level)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	emit(lvl, subsys, buf);
	errno = saved;
}

void log_msg_errno(enum log_level lvl, const char *subsys, int err, const char *fmt, ...)
{
	char buf[4096];
	size_t len;
	va_list ap;

	if (lvl > max_level) {
		errno = err;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	len = strlen(buf);
	snprintf(buf + len, sizeof buf - len, ": %s", strerror(err));
	emit(lvl, subsys, buf);
	errno = err;
}
