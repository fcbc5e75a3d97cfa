/*
 * media: classification of ffprobe's flat output, ffmpeg progress lines,
 * thumbnail time and file:// URLs (see media.h). Pure functions: the worker
 * calls them from the loop, the unit tests call them directly.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "media.h"

#define MAX_STREAMS 64

struct stream_seen {
	bool video, audio, attached_pic;
	int width, height;
};

/* Value of a flat line, without the quotes ffprobe puts around strings. */
static void unquote(const char *v, char *out, size_t outsz)
{
	size_t n = strlen(v);

	if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
		v++;
		n -= 2;
	}
	if (n >= outsz)
		n = outsz - 1;
	memcpy(out, v, n);
	out[n] = '\0';
}

static bool is_still_format(const char *fmt)
{
	size_t n = strlen(fmt);

	return strcmp(fmt, "image2") == 0 || (n > 5 && strcmp(fmt + n - 5, "_pipe") == 0);
}

/*
 * A picture dimension: a crafted file controls what ffprobe prints, so
 * anything but a plain number in 1..65535 (no codec goes beyond) is unknown (0).
 */
static int dimension(const char *val)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(val, &end, 10);
	if (errno || end == val || *end || v < 1 || v > 65535)
		return 0;
	return (int)v;
}

static void parse_stream_key(struct stream_seen *st, const char *key, const char *val)
{
	if (strcmp(key, "codec_type") == 0) {
		st->video = strcmp(val, "video") == 0;
		st->audio = strcmp(val, "audio") == 0;
	} else if (strcmp(key, "width") == 0) {
		st->width = dimension(val);
	} else if (strcmp(key, "height") == 0) {
		st->height = dimension(val);
	} else if (strcmp(key, "disposition.attached_pic") == 0) {
		st->attached_pic = strcmp(val, "1") == 0;
	}
}

int media_probe_parse(const char *flat, struct media_probe *out)
{
	struct stream_seen st[MAX_STREAMS];
	char fmt[512] = "", line[1024], val[512];
	const char *p = flat, *nl;
	bool any = false, picture = false;
	int i, nst = 0;

	memset(st, 0, sizeof st);
	memset(out, 0, sizeof *out);
	out->duration_s = -1;
	while (*p) {
		size_t len;
		char *eq;

		nl = strchr(p, '\n');
		len = nl ? (size_t)(nl - p) : strlen(p);
		if (len >= sizeof line)
			len = sizeof line - 1;
		memcpy(line, p, len);
		line[len] = '\0';
		p = nl ? nl + 1 : p + strlen(p);
		eq = strchr(line, '=');
		if (!eq)
			continue;
		*eq = '\0';
		unquote(eq + 1, val, sizeof val);
		if (strncmp(line, "streams.stream.", 15) == 0) {
			char *end;
			long idx = strtol(line + 15, &end, 10);

			if (end == line + 15 || *end != '.' || idx < 0 || idx >= MAX_STREAMS)
				continue;
			parse_stream_key(&st[idx], end + 1, val);
			if (idx + 1 > nst)
				nst = (int)idx + 1;
			any = true;
		} else if (strcmp(line, "format.format_name") == 0) {
			memcpy(fmt, val, sizeof fmt);
			any = true;
		} else if (strcmp(line, "format.duration") == 0) {
			char *end;
			double d = strtod(val, &end);

			if (end != val && *end == '\0' && d >= 0)
				out->duration_s = d;
			any = true;
		}
	}
	if (!any)
		return -EINVAL;
	for (i = 0; i < nst; i++) {
		if (st[i].audio)
			out->has_audio = true;
		if (st[i].video && !st[i].attached_pic && !picture) {
			picture = true;
			out->width = st[i].width;
			out->height = st[i].height;
		}
	}
	if (picture)
		out->kind = is_still_format(fmt) ? MEDIA_IMAGE : MEDIA_VIDEO;
	else if (out->has_audio)
		out->kind = MEDIA_AUDIO;
	else
		out->kind = MEDIA_NONE;
	return 0;
}

const char *media_kind_name(enum media_kind k)
{
	switch (k) {
	case MEDIA_VIDEO: return "video";
	case MEDIA_AUDIO: return "audio";
	case MEDIA_IMAGE: return "image";
	default: return "none";
	}
}

bool media_progress_line(const char *line, int64_t *us)
{
	const char *v;
	char *end;
	long long n;

	if (strncmp(line, "out_time_us=", 12) == 0)
		v = line + 12;
	else if (strncmp(line, "out_time_ms=", 12) == 0)
		v = line + 12;
	else
		return false;
	n = strtoll(v, &end, 10);
	if (end == v || n < 0)
		return false;
	*us = n;
	return true;
}

int media_progress_pct(int64_t out_us, double duration_s)
{
	double pct;

	if (duration_s <= 0 || out_us <= 0)
		return 0;
	pct = (double)out_us / (duration_s * 1e6) * 100.0;
	if (pct >= 99)
		return 99;
	return (int)pct;
}

double media_thumbnail_time(double offset_s, double duration_s)
{
	if (offset_s < 0)
		offset_s = 0;
	if (duration_s > 0 && offset_s >= duration_s)
		return duration_s / 2;
	return offset_s;
}

int media_file_url(const char *path, char *buf, size_t bufsz)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p;
	size_t o;
	int rc = 0;

	if (bufsz < 8)
		return -ENAMETOOLONG;
	memcpy(buf, "file://", 7);
	o = 7;
	for (p = (const unsigned char *)path; *p; p++) {
		bool plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			     (*p >= '0' && *p <= '9') || strchr("-._~/", *p);

		if (o + (plain ? 1 : 3) >= bufsz) {
			rc = -ENAMETOOLONG;
			break;
		}
		if (plain) {
			buf[o++] = (char)*p;
		} else {
			buf[o++] = '%';
			buf[o++] = hex[*p >> 4];
			buf[o++] = hex[*p & 15];
		}
	}
	buf[o] = '\0';
	return rc;
}
