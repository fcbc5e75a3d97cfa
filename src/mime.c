/*
 * Content type and asset type of a file being ingested. libmagic looks at the
 * first bytes (the hasher passes the first buffer it read, so detection costs
 * no extra I/O). A magic_t is not thread-safe; rather than serialise every
 * hashing thread on one mutex, each threadpool thread lazily opens its own
 * handle, kept in a pthread key whose destructor closes it when the thread
 * exits (so nothing leaks when libuv joins its threads at exit). Many camera
 * raw and broadcast formats are application/octet-stream to libmagic, so the
 * asset type falls back on the file name's extension.
 */
#include "mime.h"
#include "hasher.h"

#include <errno.h>
#include <magic.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static pthread_key_t magic_key;
static pthread_once_t magic_once = PTHREAD_ONCE_INIT;
static int magic_key_err;

static void magic_destroy(void *p)
{
	magic_close((magic_t)p);
}

static void magic_key_init(void)
{
	magic_key_err = pthread_key_create(&magic_key, magic_destroy);
}

/* This thread's handle, opened and loaded on first use; NULL when libmagic
 * cannot be loaded (missing database), in which case we retry next time. */
static magic_t thread_magic(void)
{
	magic_t m;

	pthread_once(&magic_once, magic_key_init);
	if (magic_key_err)
		return NULL;
	m = pthread_getspecific(magic_key);
	if (m)
		return m;
	m = magic_open(MAGIC_MIME_TYPE | MAGIC_ERROR);
	if (!m)
		return NULL;
	if (magic_load(m, NULL) != 0 || pthread_setspecific(magic_key, m) != 0) {
		magic_close(m);
		return NULL;
	}
	return m;
}

int mime_detect_buffer(const void *buf, size_t len, char *out, size_t outsz)
{
	magic_t m = thread_magic();
	const char *t = NULL;
	int ret = 0;

	if (!m) {
		ret = -ENOENT;
	} else {
		t = magic_buffer(m, buf, len);
		if (!t)
			ret = -EIO;
	}
	snprintf(out, outsz, "%s", t ? t : "application/octet-stream");
	return ret;
}

static const char *const video_ext[] = {"mov", "mp4",  "mxf", "mkv",  "avi", "m4v",  "mts", "m2ts",
					"ts",  "webm", "mpg", "mpeg", "r3d", "braw", "dv",  NULL};
static const char *const audio_ext[] = {"wav",	"aif", "aiff", "mp3", "aac", "m4a",
					"flac", "ogg", "opus", "bwf", NULL};
static const char *const image_ext[] = {"jpg", "jpeg", "png", "tif",  "tiff", "dpx",
					"exr", "gif",  "bmp", "webp", "heic", "cr2",
					"nef", "arw",  "dng", "psd",  NULL};

static int ext_in(const char *ext, const char *const *list)
{
	for (; *list; list++)
		if (strcasecmp(ext, *list) == 0)
			return 1;
	return 0;
}

const char *asset_type_guess(const char *mime, const char *name)
{
	const char *base, *dot;

	if (mime) {
		if (strncmp(mime, "video/", 6) == 0 || strcmp(mime, "application/mxf") == 0)
			return "video";
		if (strncmp(mime, "audio/", 6) == 0)
			return "audio";
		if (strncmp(mime, "image/", 6) == 0)
			return "image";
	}
	if (!name)
		return "document";
	base = strrchr(name, '/');
	base = base ? base + 1 : name;
	dot = strrchr(base, '.');
	/* A leading dot is a hidden name, not an extension. */
	if (!dot || dot == base)
		return "document";
	dot++;
	if (ext_in(dot, video_ext))
		return "video";
	if (ext_in(dot, audio_ext))
		return "audio";
	if (ext_in(dot, image_ext))
		return "image";
	return "document";
}
