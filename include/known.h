/*
 * known: the identities of the files a drop folder already has in the ledger,
 * as a compact set, so a restart can tell "already catalogued" locally.
 *
 * An identity is (relative path bytes, st_ino, size, mtime_ns), never st_dev
 * (two NAS heads mounting one share see different st_dev): the same fields
 * the ledger's key holds besides tenant and folder, which the set is per.
 * The database computes a 16-byte fingerprint, the first half of a SHA-256
 * (sql/007_restart.sql); the set keeps its first 8 bytes, so it costs about
 * 10 bytes per file however long the names are, and is held only until the
 * folder's first scan is merged, at the same time as the watcher's table
 * (the memory benchmark's peak). A false "known" (a new file left alone)
 * takes a 64-bit match: with 100,000 files catalogued, a chance of about
 * 5e-15 per new file, and only at a restart.
 */
#ifndef MAM_KNOWN_H
#define MAM_KNOWN_H

#include <stdbool.h>
#include <stddef.h>

#include "fileid.h"

#define KNOWN_FP_LEN  8	 /* bytes kept in the set */
#define KNOWN_FP_WIRE 16 /* bytes per fingerprint the database sends */

struct known;

int known_create(struct known **out) __attribute__((warn_unused_result));
void known_free(struct known *k);
/* Add fingerprints given as hex (the database's bytea text form, with or
 * without its "\x" prefix). -EINVAL on a malformed string, -ENOMEM. */
int known_add_hex(struct known *k, const char *hex) __attribute__((warn_unused_result));
/* Add one file's identity (a file catalogued after the set was read). */
int known_add(struct known *k, const char *relpath, const struct file_id *id)
	__attribute__((warn_unused_result));
bool known_has(const struct known *k, const char *relpath, const struct file_id *id);
size_t known_count(const struct known *k);
/* The fingerprint of one identity: 0, -ENAMETOOLONG for a path too long to
 * have one, -ENOMEM when the digest could not be set up. */
int known_fingerprint(const char *relpath, const struct file_id *id, unsigned char fp[KNOWN_FP_LEN])
	__attribute__((warn_unused_result));

#endif
