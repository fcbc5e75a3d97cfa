/*
 * known: the identities of the files a drop folder already has in the ledger,
 * as a compact set, so a restart can tell "already catalogued" locally.
 *
 * An identity is (relative path bytes, st_ino, size, mtime_ns), never st_dev
 * (two NAS heads mounting one share see different st_dev): the same fields
 * the ledger's key holds besides tenant and folder, which the set is per.
 * It is kept as a 16-byte fingerprint, the first half of a SHA-256 that the
 * database computes the same way (sql/007_restart.sql), so the set costs
 * about 21 bytes per file however long the names are, and a false "known"
 * would take a SHA-256 collision on 128 bits.
 */
#ifndef MAM_KNOWN_H
#define MAM_KNOWN_H

#include <stdbool.h>
#include <stddef.h>

#include "fileid.h"

#define KNOWN_FP_LEN 16

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
/* The fingerprint of one identity; false for a path too long to have one. */
bool known_fingerprint(const char *relpath, const struct file_id *id,
		       unsigned char fp[KNOWN_FP_LEN]);

#endif
