/*
 * libFuzzer target: what the worker reads from ffprobe and ffmpeg. A crafted
 * media file controls much of ffprobe's "flat" output (tag values, codec
 * names) and ffmpeg's -progress lines, so their parsers see untrusted text.
 * The input is split at the first NUL: the first part is parsed as ffprobe
 * output, every line of the second as a -progress line.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "media.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size + 1), *nul, *line, *save = NULL;
	struct media_probe p;
	int64_t us;
	int pct;

	if (!buf)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	if (media_probe_parse(buf, &p) == 0) {
		if (p.kind < MEDIA_NONE || p.kind > MEDIA_IMAGE || p.width < 0 || p.height < 0)
			abort();
		if (!media_kind_name(p.kind))
			abort();
		(void)media_thumbnail_time(1.0, p.duration_s);
	}
	nul = memchr(data, '\0', size) ? buf + strlen(buf) + 1 : NULL;
	for (line = nul ? strtok_r(nul, "\n", &save) : NULL; line;
	     line = strtok_r(NULL, "\n", &save)) {
		if (!media_progress_line(line, &us))
			continue;
		pct = media_progress_pct(us, 10.0);
		if (pct < 0 || pct > 99)
			abort();
	}
	free(buf);
	return 0;
}
