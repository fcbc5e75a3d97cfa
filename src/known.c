/*
 * known: a set of 8-byte file fingerprints (see known.h).
 *
 * Open addressing with linear probing in one flat array: no allocation per
 * file, no pointers, about 10 bytes per fingerprint at the load kept here.
 * The fingerprints are SHA-256 output, already uniform, so their first bytes
 * are the hash. An all-zero slot means empty; the one fingerprint that is all
 * zeros (never seen in practice) is kept in a flag of its own.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "known.h"
#include "sha256.h"
#include "util.h"

struct known {
	unsigned char (*slots)[KNOWN_FP_LEN];
	size_t cap;   /* slots, a power of two (0 before the first add) */
	size_t count; /* fingerprints held, has_zero included */
	bool has_zero;
};

static const unsigned char zero_fp[KNOWN_FP_LEN];

int known_create(struct known **out)
{
	*out = calloc(1, sizeof **out);
	return *out ? 0 : -ENOMEM;
}

void known_free(struct known *k)
{
	if (!k)
		return;
	free(k->slots);
	free(k);
}

size_t known_count(const struct known *k)
{
	return k ? k->count : 0;
}

static size_t slot_of(const unsigned char *fp, size_t cap)
{
	uint64_t h;

	memcpy(&h, fp, sizeof h);
	return (size_t)h & (cap - 1);
}

/* Insert into slots known to have room; false when it was there already. */
static bool put(unsigned char (*slots)[KNOWN_FP_LEN], size_t cap, const unsigned char *fp)
{
	size_t i = slot_of(fp, cap);

	while (memcmp(slots[i], zero_fp, KNOWN_FP_LEN) != 0) {
		if (memcmp(slots[i], fp, KNOWN_FP_LEN) == 0)
			return false;
		i = (i + 1) & (cap - 1);
	}
	memcpy(slots[i], fp, KNOWN_FP_LEN);
	return true;
}

/* Keep the load at or below 4/5: linear probing stays at a few probes. */
static int reserve(struct known *k, size_t more)
{
	size_t need = k->count + more, cap = k->cap ? k->cap : 256, i;
	unsigned char(*ns)[KNOWN_FP_LEN];

	while (need > cap / 5 * 4)
		cap *= 2;
	if (cap == k->cap)
		return 0;
	ns = calloc(cap, KNOWN_FP_LEN);
	if (!ns)
		return -ENOMEM;
	for (i = 0; i < k->cap; i++)
		if (memcmp(k->slots[i], zero_fp, KNOWN_FP_LEN) != 0)
			put(ns, cap, k->slots[i]);
	free(k->slots);
	k->slots = ns;
	k->cap = cap;
	return 0;
}

static int add_fp(struct known *k, const unsigned char *fp)
{
	int rc;

	if (memcmp(fp, zero_fp, KNOWN_FP_LEN) == 0) {
		k->count += !k->has_zero;
		k->has_zero = true;
		return 0;
	}
	rc = reserve(k, 1);
	if (rc == 0 && put(k->slots, k->cap, fp))
		k->count++;
	return rc;
}

int known_add_hex(struct known *k, const char *hex)
{
	unsigned char fp[KNOWN_FP_LEN];
	size_t len, i, j;
	int rc;

	if (hex[0] == '\\' && hex[1] == 'x')
		hex += 2;
	len = strlen(hex);
	if (len % (2 * KNOWN_FP_WIRE) != 0)
		return -EINVAL;
	/* One resize for the whole page rather than several on the way. */
	rc = reserve(k, len / (2 * KNOWN_FP_WIRE));
	for (i = 0; rc == 0 && i < len; i += 2 * KNOWN_FP_WIRE) {
		for (j = 0; j < KNOWN_FP_WIRE; j++) {
			int hi = hex_value(hex[i + 2 * j]), lo = hex_value(hex[i + 2 * j + 1]);

			if (hi < 0 || lo < 0)
				return -EINVAL;
			if (j < KNOWN_FP_LEN)
				fp[j] = (unsigned char)(hi << 4 | lo);
		}
		rc = add_fp(k, fp);
	}
	return rc;
}

static void be64(unsigned char *p, uint64_t v)
{
	int i;

	for (i = 7; i >= 0; i--) {
		p[i] = (unsigned char)(v & 0xff);
		v >>= 8;
	}
}

/* Paths the watcher builds are shorter than PATH_MAX + NAME_MAX + 2. */
#define FP_PATH_MAX 8192

int known_fingerprint(const char *relpath, const struct file_id *id, unsigned char fp[KNOWN_FP_LEN])
{
	unsigned char md[SHA256_LEN], buf[24 + FP_PATH_MAX];
	size_t len = strlen(relpath);

	if (len > FP_PATH_MAX)
		return -ENAMETOOLONG;
	/* int8send(ino) || int8send(size) || int8send(mtime_ns) || relpath, as in
	 * sql/007_restart.sql; ino is the uint64 stored two's complement. */
	be64(buf, id->ino);
	be64(buf + 8, (uint64_t)id->size);
	be64(buf + 16, (uint64_t)id->mtime_ns);
	memcpy(buf + 24, relpath, len);
	/* The low-level digest cannot fail; the EVP fallback can only run out of memory. */
	if (sha256_once(buf, 24 + len, md) != 0)
		return -ENOMEM;
	memcpy(fp, md, KNOWN_FP_LEN);
	return 0;
}

int known_add(struct known *k, const char *relpath, const struct file_id *id)
{
	unsigned char fp[KNOWN_FP_LEN];
	int rc = known_fingerprint(relpath, id, fp);

	if (rc != 0)
		return rc;
	return add_fp(k, fp);
}

bool known_has(const struct known *k, const char *relpath, const struct file_id *id)
{
	unsigned char fp[KNOWN_FP_LEN];
	size_t i;

	if (!k || k->count == 0 || known_fingerprint(relpath, id, fp) != 0)
		return false;
	if (memcmp(fp, zero_fp, KNOWN_FP_LEN) == 0)
		return k->has_zero;
	if (!k->cap)
		return false;
	for (i = slot_of(fp, k->cap); memcmp(k->slots[i], zero_fp, KNOWN_FP_LEN) != 0;
	     i = (i + 1) & (k->cap - 1))
		if (memcmp(k->slots[i], fp, KNOWN_FP_LEN) == 0)
			return true;
	return false;
}
