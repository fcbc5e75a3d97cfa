/*
 * catalog_json: JSON text for the catalogue's jsonb parameters, and the
 * result rows read back (column positions match the SELECTs in catalog.c).
 *
 * The JSON is hand-written because it is only ever written, never parsed
 * (results come back as rows), and it must be exact about bytes: drop folders
 * accept any name the filesystem allows, PostgreSQL refuses text that is not
 * valid UTF-8, and a name must still lead a user back to the file. See
 * catalog_json.h for the encoding of names that are not UTF-8.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog_json.h"
#include "util.h"

void sb_free(struct sbuf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

static bool sb_reserve(struct sbuf *b, size_t more)
{
	size_t cap;
	char *p;

	if (b->oom)
		return false;
	if (b->len + more + 1 <= b->cap)
		return true;
	cap = b->cap ? b->cap : 256;
	while (cap < b->len + more + 1)
		cap *= 2;
	p = realloc(b->p, cap);
	if (!p) {
		b->oom = true;
		return false;
	}
	b->p = p;
	b->cap = cap;
	return true;
}

void sb_putn(struct sbuf *b, const char *s, size_t n)
{
	if (!sb_reserve(b, n))
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void sb_puts(struct sbuf *b, const char *s)
{
	sb_putn(b, s, strlen(s));
}

void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !sb_reserve(b, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 when invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	unsigned c = s[0];

	if (c < 0x80)
		return c ? 1 : 0;
	if (c >= 0xc2 && c <= 0xdf)
		return n >= 2 && (s[1] & 0xc0) == 0x80 ? 2 : 0;
	if (c >= 0xe0 && c <= 0xef) {
		if (n < 3 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80)
			return 0;
		if (c == 0xe0 && s[1] < 0xa0)
			return 0; /* overlong */
		if (c == 0xed && s[1] >= 0xa0)
			return 0; /* UTF-16 surrogate */
		return 3;
	}
	if (c >= 0xf0 && c <= 0xf4) {
		if (n < 4 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 ||
		    (s[3] & 0xc0) != 0x80)
			return 0;
		if (c == 0xf0 && s[1] < 0x90)
			return 0; /* overlong */
		if (c == 0xf4 && s[1] >= 0x90)
			return 0; /* above U+10FFFF */
		return 4;
	}
	return 0;
}

bool utf8_valid(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, k;

	while (i < n) {
		k = utf8_seq(p + i, n - i);
		if (k == 0)
			return false;
		i += k;
	}
	return true;
}

/* Append the JSON escape of one valid character (k bytes at p). */
static void put_char(struct sbuf *b, const unsigned char *p, size_t k)
{
	char esc[8];

	if (k > 1) {
		sb_putn(b, (const char *)p, k);
		return;
	}
	switch (p[0]) {
	case '"': sb_putn(b, "\\\"", 2); break;
	case '\\': sb_putn(b, "\\\\", 2); break;
	case '\n': sb_putn(b, "\\n", 2); break;
	case '\t': sb_putn(b, "\\t", 2); break;
	case '\r': sb_putn(b, "\\r", 2); break;
	default:
		if (p[0] < 0x20) {
			snprintf(esc, sizeof esc, "\\u%04x", p[0]);
			sb_puts(b, esc);
		} else {
			sb_putn(b, (const char *)p, 1);
		}
	}
}

/*
 * The JSON string of s. Valid UTF-8 is exact. Otherwise the display form:
 * invalid bytes as the four characters \xNN and '\' as "\\", which reads back
 * unambiguously (every backslash in the form starts an escape).
 */
static void json_text(struct sbuf *b, const char *s, bool valid)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s), i = 0, k;
	char esc[16];

	sb_putn(b, "\"", 1);
	while (i < n) {
		k = utf8_seq(p + i, n - i);
		if (k == 0) {
			/* In JSON, the text \xNN is written \\xNN. */
			snprintf(esc, sizeof esc, "\\\\x%02x", p[i]);
			sb_puts(b, esc);
			i++;
			continue;
		}
		if (!valid && p[i] == '\\')
			sb_putn(b, "\\\\\\\\", 4);
		else
			put_char(b, p + i, k);
		i += k;
	}
	sb_putn(b, "\"", 1);
}

void sb_json_str(struct sbuf *b, const char *s)
{
	if (!s) {
		sb_puts(b, "null");
		return;
	}
	json_text(b, s, utf8_valid(s, strlen(s)));
}

void sb_json_path(struct sbuf *b, const char *key, const char *s, bool first)
{
	size_t n = strlen(s), i;
	bool valid = utf8_valid(s, n);
	static const char hexd[] = "0123456789abcdef";

	sb_printf(b, "%s\"%s\":", first ? "" : ",", key);
	json_text(b, s, valid);
	if (valid)
		return;
	sb_printf(b, ",\"%s_hex\":\"", key);
	if (!sb_reserve(b, 2 * n + 1))
		return;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		b->p[b->len++] = hexd[c >> 4];
		b->p[b->len++] = hexd[c & 15];
	}
	b->p[b->len] = '\0';
	sb_putn(b, "\"", 1);
}

int hex_decode(const char *hex, char *out, size_t outsz)
{
	size_t n = strlen(hex), i;

	if (n % 2)
		return -EINVAL;
	if (n / 2 + 1 > outsz)
		return -ENAMETOOLONG;
	for (i = 0; i < n / 2; i++) {
		int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -EINVAL;
		out[i] = (char)(hi << 4 | lo);
	}
	out[n / 2] = '\0';
	return 0;
}

/* ---- the catalogue's request elements ----------------------------------- */

static void put_id(struct sbuf *sb, const struct folder_cfg *folder, const char *relpath,
		   const struct file_id *id)
{
	sb_puts(sb, "{\"tenant\":");
	sb_json_str(sb, folder->tenant->code);
	sb_json_path(sb, "folder", folder->path, false);
	sb_json_path(sb, "relpath", relpath, false);
	/* uint64 -> int64 two's complement: what the bigint columns store. */
	sb_printf(sb, ",\"dev\":%lld,\"ino\":%lld,\"size\":%lld,\"mtime_ns\":%lld",
		  (long long)(int64_t)id->dev, (long long)(int64_t)id->ino, (long long)id->size,
		  (long long)id->mtime_ns);
}

void catjson_lookup(struct sbuf *sb, const struct folder_cfg *folder, const char *relpath,
		    const struct file_id *id)
{
	put_id(sb, folder, relpath, id);
	sb_puts(sb, "}");
}

static const char *const after_names[] = {"leave", "move", "delete"};
static const char *const dup_names[] = {"ingest", "skip", "quarantine"};

void catjson_record(struct sbuf *sb, const struct catalog_file *f, const char *node)
{
	const struct folder_cfg *fo = f->folder;
	unsigned bit;
	bool first = true;

	put_id(sb, fo, f->relpath, &f->id);
	sb_json_path(sb, "abspath", f->abspath, false);
	sb_json_path(sb, "final_path", f->final_path ? f->final_path : f->abspath, false);
	sb_puts(sb, ",\"asset_id\":");
	sb_json_str(sb, f->asset_id);
	sb_printf(sb, ",\"ctime_ns\":%lld,\"sha256\":", (long long)f->id.ctime_ns);
	sb_json_str(sb, f->sha256);
	sb_puts(sb, ",\"mime\":");
	sb_json_str(sb, f->mime);
	sb_puts(sb, ",\"asset_type\":");
	sb_json_str(sb, f->asset_type);
	sb_puts(sb, ",\"jobs\":[");
	for (bit = 1; bit <= JOB_PROXY; bit <<= 1) {
		if (!(fo->jobs & bit) || !config_job_name(bit))
			continue;
		sb_printf(sb, "%s\"%s\"", first ? "" : ",", config_job_name(bit));
		first = false;
	}
	sb_printf(sb, "],\"priority\":%d,\"after\":\"%s\",\"on_duplicate\":\"%s\"", fo->priority,
		  after_names[fo->after], dup_names[fo->on_duplicate]);
	sb_puts(sb, ",\"storage_type\":");
	sb_json_str(sb, fo->storage_type ? fo->storage_type : "local");
	sb_puts(sb, ",\"storage_tier\":");
	sb_json_str(sb, fo->storage_tier ? fo->storage_tier : "hot");
	sb_puts(sb, ",\"node\":");
	sb_json_str(sb, node);
	sb_puts(sb, "}");
}

char *catjson_tenants(const struct config *cfg)
{
	struct sbuf sb = {0};
	size_t i;

	sb_puts(&sb, "[");
	for (i = 0; i < cfg->n_tenants; i++) {
		const struct tenant_cfg *t = &cfg->tenants[i];

		sb_printf(&sb, "%s{\"code\":", i ? "," : "");
		sb_json_str(&sb, t->code);
		sb_puts(&sb, ",\"name\":");
		sb_json_str(&sb, t->name ? t->name : t->code);
		/* -1: the config leaves the database value alone. */
		if (t->active != -1)
			sb_printf(&sb, ",\"active\":%s", t->active ? "true" : "false");
		if (t->storage_quota_bytes != -1)
			sb_printf(&sb, ",\"storage_quota_bytes\":%lld",
				  (long long)t->storage_quota_bytes);
		sb_puts(&sb, "}");
	}
	sb_puts(&sb, "]");
	if (sb.oom) {
		sb_free(&sb);
		return NULL;
	}
	return sb.p;
}

char *catjson_folders(const struct config *cfg)
{
	struct sbuf sb = {0};
	size_t t, f;
	bool first = true;

	sb_puts(&sb, "[");
	for (t = 0; t < cfg->n_tenants; t++) {
		for (f = 0; f < cfg->tenants[t].n_folders; f++) {
			if (!first)
				sb_puts(&sb, ",");
			sb_json_str(&sb, cfg->tenants[t].folders[f].path);
			first = false;
		}
	}
	sb_puts(&sb, "]");
	if (sb.oom) {
		sb_free(&sb);
		return NULL;
	}
	return sb.p;
}

/* ---- result rows ---------------------------------------------------------- */

void catrow_path(char *out, size_t outsz, const char *text, const char *hex)
{
	if (hex && *hex && hex_decode(hex, out, outsz) == 0)
		return;
	snprintf(out, outsz, "%s", text ? text : "");
}

enum catalog_outcome catalog_outcome_of(const char *s)
{
	static const struct {
		const char *name;
		enum catalog_outcome o;
	} map[] = {
		{"ingested", CAT_INGESTED},
		{"already", CAT_ALREADY},
		{"dup_skipped", CAT_DUP_SKIPPED},
		{"dup_quarantine", CAT_DUP_QUARANTINE},
		{"over_quota", CAT_OVER_QUOTA},
		{"tenant_inactive", CAT_TENANT_INACTIVE},
		{"duplicate_skipped", CAT_DUP_SKIPPED},
		{"duplicate_quarantined", CAT_DUP_QUARANTINE},
	};
	size_t i;

	for (i = 0; i < sizeof map / sizeof map[0]; i++)
		if (strcmp(s, map[i].name) == 0)
			return map[i].o;
	return CAT_FAILED;
}

/* A row of mam_ingest_batch: idx, outcome, asset_id, final_path, move_pending,
 * duplicate_of, error, final_path_hex. */
void catrow_record(PGresult *res, int row, struct catalog_result *r)
{
	memset(r, 0, sizeof *r);
	r->outcome = catalog_outcome_of(PQgetvalue(res, row, 1));
	snprintf(r->asset_id, sizeof r->asset_id, "%s", PQgetvalue(res, row, 2));
	catrow_path(r->final_path, sizeof r->final_path, PQgetvalue(res, row, 3),
		    PQgetvalue(res, row, 7));
	r->move_pending = PQgetvalue(res, row, 4)[0] == 't';
	snprintf(r->duplicate_of, sizeof r->duplicate_of, "%s", PQgetvalue(res, row, 5));
	snprintf(r->error, sizeof r->error, "%s", PQgetvalue(res, row, 6));
	if (r->outcome == CAT_FAILED && !r->error[0])
		snprintf(r->error, sizeof r->error, "unexpected outcome \"%s\"",
			 PQgetvalue(res, row, 1));
}

/* A row of mam_ingest_lookup: idx, asset_id, final_path, move_pending,
 * outcome (the ledger's), duplicate_of, final_path_hex, sha256. */
void catrow_lookup(PGresult *res, int row, struct catalog_result *r)
{
	memset(r, 0, sizeof *r);
	r->outcome = catalog_outcome_of(PQgetvalue(res, row, 4));
	if (r->outcome == CAT_INGESTED)
		r->outcome = CAT_ALREADY;
	snprintf(r->asset_id, sizeof r->asset_id, "%s", PQgetvalue(res, row, 1));
	catrow_path(r->final_path, sizeof r->final_path, PQgetvalue(res, row, 2),
		    PQgetvalue(res, row, 6));
	r->move_pending = PQgetvalue(res, row, 3)[0] == 't';
	snprintf(r->duplicate_of, sizeof r->duplicate_of, "%s", PQgetvalue(res, row, 5));
	snprintf(r->sha256, sizeof r->sha256, "%s", PQgetvalue(res, row, 7));
}

bool uuid_valid(const char *s)
{
	size_t i;

	if (!s || strlen(s) != 36)
		return false;
	for (i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return false;
		} else if (!strchr("0123456789abcdefABCDEF", s[i])) {
			return false;
		}
	}
	return true;
}
