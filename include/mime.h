/*
 * Content type detection with libmagic for the hasher's worker threads.
 * A magic_t is not safe to share between threads, and loading the compiled
 * database costs milliseconds and megabytes, so loaded handles are kept in a
 * pool of at most one per usable CPU and lent to one call at a time.
 */
#ifndef MAM_MIME_H
#define MAM_MIME_H

#include <stddef.h>

/* MIME type of buf (the first bytes of a file) into out, e.g. "video/mp4".
 * Falls back on "application/octet-stream" when libmagic cannot tell or
 * cannot be loaded; returns 0, or -errno when libmagic failed (out is still
 * filled with the fallback). Safe to call from any thread. */
int mime_detect_buffer(const void *buf, size_t len, char *out, size_t outsz);

/* The type of the media containers recognised without libmagic (ISO base
 * media, RIFF WAVE/AVI/WebP, JPEG, PNG, MXF), exactly as libmagic names
 * them, or NULL when buf starts with none of their signatures. Pure. */
const char *mime_media_signature(const void *buf, size_t len);

/* Handles loaded so far (borrowed or free). */
unsigned mime_handles(void);
/* Close the free handles (at exit, once no detection runs). */
void mime_release(void);

#endif
