/*
 * libFuzzer target: file names. Anyone who can write to a share chooses them
 * (non-UTF-8 bytes, control characters, quotes, 255-byte names), and they go
 * into log lines, into the JSON sent to PostgreSQL and through the ignore
 * rules. Checks: log_escape() output is valid UTF-8 without a control byte
 * (C0, DEL, C1, line separators, bidi overrides), bounded and terminated; the
 * JSON string form contains no raw control byte and no unescaped quote; the
 * _hex form decodes back to the exact bytes; the ignore rules and the file://
 * URL never crash.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "catalog_json.h"
#include "ignore.h"
#include "log.h"
#include "media.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The JSON text of one string value starting at s (at its opening quote):
 * well formed, returns the position after the closing quote, or NULL. */
static const char *json_string_end(const char *s)
{
	if (*s++ != '"')
		return NULL;
	while (*s && *s != '"') {
		if ((unsigned char)*s < 0x20)
			return NULL;
		if (*s == '\\') {
			s++;
			if (!*s || !strchr("\"\\/bfnrtu", *s))
				return NULL;
		}
		s++;
	}
	return *s == '"' ? s + 1 : NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char name[4097], esc[LOG_ESC_MAX], url[3 * 4096 + 16], *back;
	struct sbuf sb = {0};
	const char *p, *hex;
	size_t n;

	/* A path below a drop folder: at most PATH_MAX bytes, no NUL. */
	n = size < sizeof name - 1 ? size : sizeof name - 1;
	memcpy(name, data, n);
	name[n] = '\0';
	n = strlen(name);

	log_escape(name, esc, sizeof esc);
	if (strlen(esc) >= sizeof esc)
		abort();
	/* Valid UTF-8 passes through; every other byte and control is \xNN. */
	if (!utf8_valid(esc, strlen(esc)))
		abort();
	for (p = esc; *p; p++) {
		const unsigned char *u = (const unsigned char *)p;

		if (u[0] < 0x20 || u[0] == 0x7f)
			abort();
		/* Nor a C1 control, line separator or bidi override (escaped too). */
		if (u[0] == 0xc2 && u[1] >= 0x80 && u[1] <= 0x9f)
			abort();
		if (u[0] == 0xe2 && ((u[1] == 0x80 && u[2] >= 0xa8 && u[2] <= 0xae) ||
				     (u[1] == 0x81 && u[2] >= 0xa6 && u[2] <= 0xa9)))
			abort();
	}

	sb_json_path(&sb, "relpath", name, true);
	if (sb.oom)
		goto out;
	/* "relpath":"..."[,"relpath_hex":"..."] */
	p = sb.p + strlen("\"relpath\":");
	p = json_string_end(p);
	if (!p)
		abort();
	if (*p) {
		if (utf8_valid(name, n) || strncmp(p, ",\"relpath_hex\":\"", 16) != 0)
			abort();
		hex = p + 16;
		back = malloc(n + 1);
		if (!back)
			goto out;
		{
			char hexbuf[2 * 4096 + 1];
			size_t hl = strcspn(hex, "\"");

			if (hl != 2 * n || hl >= sizeof hexbuf)
				abort();
			memcpy(hexbuf, hex, hl);
			hexbuf[hl] = '\0';
			if (hex_decode(hexbuf, back, n + 1) != 0 || memcmp(back, name, n) != 0)
				abort();
		}
		free(back);
	}
	(void)ignore_default_junk(name);
	(void)ignore_default_junk_dir(name);
	if (media_file_url(name, url, sizeof url) == 0 && strncmp(url, "file://", 7) != 0)
		abort();
out:
	sb_free(&sb);
	return 0;
}
