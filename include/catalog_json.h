/*
 * catalog_json: the catalogue's wire format: the byte-exact JSON it sends to
 * PostgreSQL, and the result rows it reads back.
 *
 * File names are bytes; PostgreSQL text (and jsonb) must be valid UTF-8. A
 * path that is valid UTF-8 is sent as is (JSON-escaped). Otherwise its text
 * field carries a display form (every invalid byte as \xNN, a literal
 * backslash doubled, so the form is reversible) and a companion "<key>_hex"
 * field carries the exact bytes, which the SQL side stores in bytea and uses
 * for the file:// URL and the idempotency key.
 */
#ifndef MAM_CATALOG_JSON_H
#define MAM_CATALOG_JSON_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#include "catalog.h"
#include "log.h"

/* A growable byte buffer; on allocation failure it sets oom and stops growing. */
struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

void sb_free(struct sbuf *b);
void sb_putn(struct sbuf *b, const char *s, size_t n);
void sb_puts(struct sbuf *b, const char *s);
void sb_printf(struct sbuf *b, const char *fmt, ...) MAM_PRINTF(2, 3);

/* Is s[0..n) valid UTF-8 as PostgreSQL accepts it (no overlongs, surrogates, > U+10FFFF)? */
bool utf8_valid(const char *s, size_t n);
/* Append s as a JSON string literal (quotes included); s must be valid UTF-8 or is shown. */
void sb_json_str(struct sbuf *b, const char *s);
/*
 * Append "key":"<text>" and, when s is not valid UTF-8, ,"key_hex":"<hex of bytes>".
 * Preceded by a comma unless first.
 */
void sb_json_path(struct sbuf *b, const char *key, const char *s, bool first);
/* Decode hex into out (NUL-terminated); returns 0 or -EINVAL / -ENAMETOOLONG. */
int hex_decode(const char *hex, char *out, size_t outsz);

/* Request elements of sql/002_ingest.sql's functions (field names documented there). */
void catjson_record(struct sbuf *sb, const struct catalog_file *f, const char *node);
void catjson_lookup(struct sbuf *sb, const struct folder_cfg *folder, const char *relpath,
		    const struct file_id *id);
/* Arrays for mam_upsert_tenants() and mam_pending_moves(); NULL when out of memory. */
char *catjson_tenants(const struct config *cfg);
char *catjson_folders(const struct config *cfg);

/* Result rows back into struct catalog_result (column lists in catalog_json.c). */
enum catalog_outcome catalog_outcome_of(const char *s);
/* The exact path: hex bytes when given (not UTF-8), else the text. */
void catrow_path(char *out, size_t outsz, const char *text, const char *hex);
void catrow_record(PGresult *res, int row, struct catalog_result *r);
void catrow_lookup(PGresult *res, int row, struct catalog_result *r);
/* 8-4-4-4-12 hex digits: what PostgreSQL's uuid input takes from us. */
bool uuid_valid(const char *s);

#endif
