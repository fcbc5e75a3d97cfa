/*
 * SHA-256, the one digest mam-ingest computes (files, owner-lock keys,
 * copies after a move, derivatives).
 *
 * Why not EVP: the first EVP digest in a process initialises OpenSSL 3's
 * provider machinery (configuration file, default provider, algorithm
 * tables), which faults about 2 MiB of libcrypto into every daemon and
 * costs a few milliseconds at start, for nothing mam-ingest uses. The
 * low-level SHA256_* functions run the same assembly (SHA-NI or AVX2,
 * chosen by OpenSSL's CPU detection) without it. They are deprecated in
 * OpenSSL 3 but present; a build against a release without them, or with
 * them switched off (OPENSSL_NO_DEPRECATED, which OpenSSL 3 turns into
 * OPENSSL_NO_DEPRECATED_3_0; an OPENSSL_API_COMPAT of 3.0 alone only keeps
 * their deprecation warnings, silenced below), falls back to EVP.
 * SHA256_IMPL names the one compiled in.
 */
#ifndef MAM_SHA256_H
#define MAM_SHA256_H

#include <stddef.h>

/* opensslconf.h (through macros.h in OpenSSL 3) turns OPENSSL_NO_DEPRECATED
 * into OPENSSL_NO_DEPRECATED_3_0. */
#include <openssl/opensslconf.h>
#include <openssl/opensslv.h>

#define SHA256_LEN 32

#if OPENSSL_VERSION_MAJOR < 4 && !defined(OPENSSL_NO_DEPRECATED_3_0)
#include <openssl/sha.h>

#define SHA256_IMPL "SHA256_Init"

/* The deprecation is the only warning silenced, and only here. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

struct sha256 {
	SHA256_CTX c;
};

static inline int sha256_init(struct sha256 *s)
{
	return SHA256_Init(&s->c) == 1 ? 0 : -1;
}

static inline int sha256_update(struct sha256 *s, const void *p, size_t n)
{
	return SHA256_Update(&s->c, p, n) == 1 ? 0 : -1;
}

/* Writes SHA256_LEN bytes to md. Also releases s (nothing to release here). */
static inline int sha256_final(struct sha256 *s, unsigned char md[SHA256_LEN])
{
	return SHA256_Final(md, &s->c) == 1 ? 0 : -1;
}

/* Releases s without a result (an error path). */
static inline void sha256_drop(struct sha256 *s)
{
	(void)s;
}
#pragma GCC diagnostic pop
#else
#include <openssl/evp.h>

#define SHA256_IMPL "EVP"

struct sha256 {
	EVP_MD_CTX *c;
};

static inline int sha256_init(struct sha256 *s)
{
	s->c = EVP_MD_CTX_new();
	if (s->c && EVP_DigestInit_ex(s->c, EVP_sha256(), NULL) == 1)
		return 0;
	EVP_MD_CTX_free(s->c);
	s->c = NULL;
	return -1;
}

static inline int sha256_update(struct sha256 *s, const void *p, size_t n)
{
	return EVP_DigestUpdate(s->c, p, n) == 1 ? 0 : -1;
}

static inline int sha256_final(struct sha256 *s, unsigned char md[SHA256_LEN])
{
	unsigned int len = 0;
	int ok = EVP_DigestFinal_ex(s->c, md, &len) == 1 && len == SHA256_LEN;

	EVP_MD_CTX_free(s->c);
	s->c = NULL;
	return ok ? 0 : -1;
}

static inline void sha256_drop(struct sha256 *s)
{
	EVP_MD_CTX_free(s->c);
	s->c = NULL;
}
#endif

/* The digest of one buffer: SHA256()'s job, without its EVP fetch per call
 * (and, in OpenSSL 3, the provider initialisation on the first). 0 or -1. */
static inline int sha256_once(const void *p, size_t n, unsigned char md[SHA256_LEN])
{
	struct sha256 s;

	if (sha256_init(&s) != 0)
		return -1;
	if (sha256_update(&s, p, n) != 0) {
		sha256_drop(&s);
		return -1;
	}
	return sha256_final(&s, md);
}

/* The digest as 64 lowercase hex digits and a NUL, as the catalogue stores it. */
static inline void sha256_hex(const unsigned char md[SHA256_LEN], char hex[2 * SHA256_LEN + 1])
{
	static const char digits[] = "0123456789abcdef";

	for (unsigned i = 0; i < SHA256_LEN; i++) {
		hex[2 * i] = digits[md[i] >> 4];
		hex[2 * i + 1] = digits[md[i] & 15];
	}
	hex[2 * SHA256_LEN] = '\0';
}

#endif
