/*
 * Content type and asset type of a file being ingested. libmagic looks at the
 * first bytes (the hasher passes the first buffer it read, so detection costs
 * no extra I/O). Handles come from a small pool (below). Many camera
 * raw and broadcast formats are application/octet-stream to libmagic, so the
 * asset type falls back on the file name's extension.
 *
 * libmagic's cost is its soft magic: it tries its whole database, entry by
 * entry, before it answers, about 250 us of CPU per file here whether the
 * buffer holds 64 bytes or 64 KiB, and most of a small-file burst's CPU.
 * The MAGIC_NO_CHECK_* flags do not help: they turn off only the built-in
 * tests (tar, cdf, elf, compress, json, csv, text, encoding), which together
 * take under 5 us on such a buffer (measured with MAGIC_NO_CHECK_SOFT), and
 * they lose answers (json without its check is text/plain; text without its
 * check is application/octet-stream). So libmagic is opened with its
 * defaults, and the containers media arrive in, which libmagic finds only
 * after 100-200 us (ISO base media, RIFF) or 15-30 us (JPEG, PNG, MXF), are
 * recognised first from their signature, with exactly the type libmagic
 * gives them (tests/unit/test_mime.c compares the two on real headers).
 * Anything else still goes to libmagic.
 */
#include "mime.h"
#include "hash_read.h"

#include <errno.h>
#include <magic.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/*
 * libmagic handles. A magic_t is not safe to share between threads, and a
 * loaded one costs about 2 MiB of its own plus its mapping of the compiled
 * database (8 MiB, most of it touched by the first call: 12 ms here). The
 * handles live in a pool of at most one per usable CPU (detection is CPU
 * work: more could not run at once): a thread borrows one for a call and
 * gives it back. A handle is loaded on first need, not at start: loading it
 * ahead would only pay off by faulting in the database with a real-sized
 * call (5-12 ms once), which would add those 6 MiB to every idle daemon.
 */
#define POOL_MAX 64

static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_cv = PTHREAD_COND_INITIALIZER;
static magic_t pool[POOL_MAX]; /* pool[0 .. pool_free) are free */
static unsigned pool_free, pool_made;

static unsigned pool_limit(void)
{
	unsigned n = hash_cpus();

	return n > POOL_MAX ? POOL_MAX : n;
}

static magic_t magic_new(void)
{
	magic_t m = magic_open(MAGIC_MIME_TYPE | MAGIC_ERROR);

	if (m && magic_load(m, NULL) != 0) {
		magic_close(m);
		m = NULL;
	}
	return m;
}

/* A free handle, a new one while the pool is below its limit, else wait.
 * NULL when libmagic cannot be loaded (missing database): tried again on
 * the next call. */
static magic_t pool_get(void)
{
	magic_t m;

	pthread_mutex_lock(&pool_mu);
	while (pool_free == 0 && pool_made >= pool_limit())
		pthread_cond_wait(&pool_cv, &pool_mu);
	if (pool_free > 0) {
		m = pool[--pool_free];
		pthread_mutex_unlock(&pool_mu);
		return m;
	}
	pool_made++;
	pthread_mutex_unlock(&pool_mu);
	/* Loaded outside the lock: the others keep detecting meanwhile. */
	m = magic_new();
	if (!m) {
		pthread_mutex_lock(&pool_mu);
		pool_made--;
		pthread_cond_signal(&pool_cv);
		pthread_mutex_unlock(&pool_mu);
	}
	return m;
}

static void pool_put(magic_t m)
{
	pthread_mutex_lock(&pool_mu);
	pool[pool_free++] = m;
	pthread_cond_signal(&pool_cv);
	pthread_mutex_unlock(&pool_mu);
}

unsigned mime_handles(void)
{
	unsigned n;

	pthread_mutex_lock(&pool_mu);
	n = pool_made;
	pthread_mutex_unlock(&pool_mu);
	return n;
}

void mime_release(void)
{
	pthread_mutex_lock(&pool_mu);
	while (pool_free > 0) {
		magic_close(pool[--pool_free]);
		pool_made--;
	}
	pthread_mutex_unlock(&pool_mu);
}

/* ISO base media major brands (box "ftyp" at offset 4, brand at 8) and the
 * type libmagic 5.44 gives each; other brands are left to libmagic. */
static const struct {
	char brand[5];
	const char *type;
} iso_brands[] = {
	{"isom", "video/mp4"},	     {"iso2", "video/mp4"},   {"iso4", "video/mp4"},
	{"iso5", "video/mp4"},	     {"iso6", "video/mp4"},   {"mp41", "video/mp4"},
	{"mp42", "video/mp4"},	     {"avc1", "video/mp4"},   {"dash", "video/mp4"},
	{"qt  ", "video/quicktime"}, {"M4A ", "audio/x-m4a"}, {"M4V ", "video/x-m4v"},
	{"3gp4", "video/3gpp"},	     {"3gp5", "video/3gpp"},  {"3gp6", "video/3gpp"},
};

/* SMPTE 377 header partition pack key, as libmagic matches it. */
static const unsigned char mxf_header[14] = {0x06, 0x0e, 0x2b, 0x34, 0x02, 0x05, 0x01,
					     0x01, 0x0d, 0x01, 0x02, 0x01, 0x01, 0x02};

const char *mime_media_signature(const void *buf, size_t len)
{
	const unsigned char *p = buf;
	size_t i;

	if (len >= 12 && memcmp(p + 4, "ftyp", 4) == 0) {
		for (i = 0; i < sizeof iso_brands / sizeof iso_brands[0]; i++)
			if (memcmp(p + 8, iso_brands[i].brand, 4) == 0)
				return iso_brands[i].type;
		return NULL;
	}
	if (len >= 12 && memcmp(p, "RIFF", 4) == 0) {
		if (memcmp(p + 8, "WAVE", 4) == 0)
			return "audio/x-wav";
		if (memcmp(p + 8, "AVI ", 4) == 0)
			return "video/x-msvideo";
		if (memcmp(p + 8, "WEBP", 4) == 0)
			return "image/webp";
		return NULL;
	}
	/* libmagic wants a fourth byte, and a PNG's first chunk to be IHDR. */
	if (len >= 4 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff)
		return "image/jpeg";
	if (len >= 16 && memcmp(p, "\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 16) == 0)
		return "image/png";
	if (len >= sizeof mxf_header && memcmp(p, mxf_header, sizeof mxf_header) == 0)
		return "application/mxf";
	return NULL;
}

int mime_detect_buffer(const void *buf, size_t len, char *out, size_t outsz)
{
	const char *t = mime_media_signature(buf, len);
	magic_t m;

	if (t) {
		snprintf(out, outsz, "%s", t);
		return 0;
	}
	m = pool_get();
	if (!m) {
		snprintf(out, outsz, "%s", "application/octet-stream");
		return -ENOENT;
	}
	t = magic_buffer(m, buf, len);
	/* t lives in m until its next call: copied before m goes back. */
	snprintf(out, outsz, "%s", t ? t : "application/octet-stream");
	pool_put(m);
	return t ? 0 : -EIO;
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
