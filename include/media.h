/*
 * media: small pure helpers of the worker, kept apart from the loop so unit
 * tests can reach them: what kind of media ffprobe found (from its "flat"
 * output, a key=value format that needs no JSON parser), ffmpeg -progress
 * lines to a percentage, derivative paths and file:// URLs.
 */
#ifndef MAM_MEDIA_H
#define MAM_MEDIA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum media_kind { MEDIA_NONE = 0, MEDIA_VIDEO, MEDIA_AUDIO, MEDIA_IMAGE };

struct media_probe {
	enum media_kind kind;
	double duration_s; /* < 0 when unknown */
	bool has_audio;
	int width, height; /* of the first picture stream, 0 when none */
};

/*
 * Parse `ffprobe -of flat -show_entries format=format_name,duration:
 * stream=index,codec_type,width,height:stream_disposition=attached_pic`.
 * A still image is a picture stream in an image demuxer (image2, *_pipe);
 * a picture stream marked attached_pic is cover art, not video.
 * Returns 0, or -EINVAL when the text is not such output.
 */
int media_probe_parse(const char *flat, struct media_probe *out)
	__attribute__((warn_unused_result));
const char *media_kind_name(enum media_kind k); /* "video", "audio", "image", "none" */

/*
 * One line of ffmpeg -progress output: when it is out_time_us (or
 * out_time_ms, which ffmpeg also writes in microseconds) set *us and return
 * true.
 */
bool media_progress_line(const char *line, int64_t *us);
/* 0..99 from the output time and the input duration (100 is set on completion). */
int media_progress_pct(int64_t out_us, double duration_s);

/* The video frame a thumbnail is taken from: the offset, or the middle of a
 * shorter video, 0 when the duration is unknown and the offset is 0. */
double media_thumbnail_time(double offset_s, double duration_s);

/* "file://" + path with bytes outside RFC 3986's unreserved set and '/' as %XX. */
int media_file_url(const char *path, char *buf, size_t bufsz) __attribute__((warn_unused_result));

#endif
