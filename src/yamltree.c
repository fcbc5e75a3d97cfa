/*
 * YAML node tree (see yamltree.h). libyaml's parser hands us events; a small
 * explicit stack of open collections turns them into nodes, so no recursion
 * depends on the input while building. Nesting is capped because freeing is
 * recursive and because no configuration needs more than a few levels: a
 * fuzzer's ten thousand '[' must give an error, not a stack overflow.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "yamltree.h"

#define YTREE_MAX_DEPTH 64

struct frame {
	struct ynode *node;
	struct ynode *pending_key; /* a mapping's key waiting for its value */
};

struct builder {
	struct frame stack[YTREE_MAX_DEPTH];
	int depth;
	struct ynode *root;
	bool have_doc;
};

static struct ynode *node_new(enum ynode_type type, const yaml_mark_t *m)
{
	struct ynode *n = calloc(1, sizeof(*n));

	if (!n)
		return NULL;
	n->type = type;
	n->line = (int)m->line + 1;
	n->col = (int)m->column + 1;
	return n;
}

/* Grow an array holding n elements so that it can take one more: capacity is
 * implicitly the next power of two, so no separate field is needed. */
static int grow(void **arr, size_t n, size_t elsz)
{
	void *p;

	if (n != 0 && (n & (n - 1)) != 0)
		return 0;
	p = realloc(*arr, (n ? n * 2 : 1) * elsz);
	if (!p)
		return -ENOMEM;
	*arr = p;
	return 0;
}

void ytree_free(struct ynode *n)
{
	size_t i;

	if (!n)
		return;
	free(n->scalar);
	for (i = 0; n->items && i < n->n; i++)
		ytree_free(n->items[i]);
	for (i = 0; n->pairs && i < n->n; i++) {
		ytree_free(n->pairs[i].key);
		ytree_free(n->pairs[i].value);
	}
	free(n->items);
	free(n->pairs);
	free(n);
}

/* Hang a finished (or just opened) node under the innermost open collection.
 * On error the node is freed here and err names the problem. */
static int attach(struct builder *b, struct ynode *n, char *err, size_t errsz)
{
	struct frame *f;
	struct ynode *p;

	if (b->depth == 0) {
		b->root = n;
		return 0;
	}
	f = &b->stack[b->depth - 1];
	p = f->node;
	if (p->type == YNODE_SEQ) {
		if (grow((void **)&p->items, p->n, sizeof(p->items[0])) < 0)
			goto nomem;
		p->items[p->n++] = n;
		return 0;
	}
	if (!f->pending_key) {
		if (n->type != YNODE_SCALAR) {
			snprintf(err, errsz, "a mapping key must be a plain string, not a %s",
				 ynode_type_name(n));
			ytree_free(n);
			return -EINVAL;
		}
		f->pending_key = n;
		return 0;
	}
	if (grow((void **)&p->pairs, p->n, sizeof(p->pairs[0])) < 0)
		goto nomem;
	p->pairs[p->n].key = f->pending_key;
	p->pairs[p->n].value = n;
	p->n++;
	f->pending_key = NULL;
	return 0;
nomem:
	ytree_free(n);
	return -ENOMEM;
}

/* Turn a libyaml error into a message and a position. Reader errors (bad
 * encoding) carry only a byte offset, so the position is counted from buf. */
static void parser_error(const yaml_parser_t *p, const char *buf, size_t len, int *line, int *col,
			 char *err, size_t errsz)
{
	const char *problem = p->problem ? p->problem : "invalid YAML";

	if (p->error == YAML_READER_ERROR) {
		size_t i, off = p->problem_offset < len ? p->problem_offset : len;

		*line = 1;
		*col = 1;
		for (i = 0; i < off; i++) {
			if (buf[i] == '\n') {
				(*line)++;
				*col = 1;
			} else if (((unsigned char)buf[i] & 0xC0) != 0x80) {
				(*col)++;
			}
		}
		snprintf(err, errsz, "YAML syntax error: %s", problem);
		return;
	}
	*line = (int)p->problem_mark.line + 1;
	*col = (int)p->problem_mark.column + 1;
	if (p->context)
		snprintf(err, errsz, "YAML syntax error: %s %s (started at line %d, column %d)",
			 problem, p->context, (int)p->context_mark.line + 1,
			 (int)p->context_mark.column + 1);
	else
		snprintf(err, errsz, "YAML syntax error: %s", problem);
}

/* Feed one event to the builder. Returns 1 at the end of the stream. */
static int handle_event(struct builder *b, const yaml_event_t *ev, int *line, int *col, char *err,
			size_t errsz)
{
	struct ynode *n;
	int rc;

	*line = (int)ev->start_mark.line + 1;
	*col = (int)ev->start_mark.column + 1;
	switch (ev->type) {
	case YAML_STREAM_END_EVENT: return 1;
	case YAML_DOCUMENT_START_EVENT:
		if (b->have_doc) {
			snprintf(err, errsz, "only one YAML document is allowed in the file");
			return -EINVAL;
		}
		b->have_doc = true;
		return 0;
	case YAML_ALIAS_EVENT:
		snprintf(err, errsz, "YAML aliases (*%s) are not supported",
			 (const char *)ev->data.alias.anchor);
		return -EINVAL;
	case YAML_SCALAR_EVENT:
		n = node_new(YNODE_SCALAR, &ev->start_mark);
		if (!n)
			return -ENOMEM;
		n->len = ev->data.scalar.length;
		n->scalar = malloc(n->len + 1);
		if (!n->scalar) {
			ytree_free(n);
			return -ENOMEM;
		}
		memcpy(n->scalar, ev->data.scalar.value, n->len);
		n->scalar[n->len] = '\0';
		n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
		return attach(b, n, err, errsz);
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT:
		if (b->depth == YTREE_MAX_DEPTH) {
			snprintf(err, errsz, "nesting deeper than %d levels", YTREE_MAX_DEPTH);
			return -EINVAL;
		}
		n = node_new(ev->type == YAML_SEQUENCE_START_EVENT ? YNODE_SEQ : YNODE_MAP,
			     &ev->start_mark);
		if (!n)
			return -ENOMEM;
		rc = attach(b, n, err, errsz);
		if (rc < 0)
			return rc;
		b->stack[b->depth].node = n;
		b->stack[b->depth].pending_key = NULL;
		b->depth++;
		return 0;
	case YAML_SEQUENCE_END_EVENT:
	case YAML_MAPPING_END_EVENT:
		if (b->depth > 0)
			b->depth--;
		return 0;
	default: return 0;
	}
}

int ytree_parse(const char *buf, size_t len, struct ynode **root, int *line, int *col, char *err,
		size_t errsz)
{
	struct builder b = {.depth = 0};
	yaml_parser_t parser;
	yaml_event_t ev;
	int rc = 0, i;

	*root = NULL;
	if (!yaml_parser_initialize(&parser))
		return -ENOMEM;
	yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
	while (rc == 0) {
		if (!yaml_parser_parse(&parser, &ev)) {
			if (parser.error == YAML_MEMORY_ERROR) {
				rc = -ENOMEM;
			} else {
				parser_error(&parser, buf, len, line, col, err, errsz);
				rc = -EINVAL;
			}
			break;
		}
		rc = handle_event(&b, &ev, line, col, err, errsz);
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&parser);
	if (rc < 0) {
		/* Keys waiting for a value are owned by their frame, not the tree. */
		for (i = 0; i < b.depth; i++)
			ytree_free(b.stack[i].pending_key);
		ytree_free(b.root);
		return rc;
	}
	*root = b.root;
	return 0;
}

bool ynode_is_null(const struct ynode *n)
{
	static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
	size_t i;

	if (!n || n->type != YNODE_SCALAR || !n->plain)
		return n == NULL;
	for (i = 0; i < sizeof nulls / sizeof nulls[0]; i++)
		if (strcmp(n->scalar, nulls[i]) == 0)
			return true;
	return false;
}

const char *ynode_type_name(const struct ynode *n)
{
	if (!n)
		return "nothing";
	switch (n->type) {
	case YNODE_SCALAR: return "scalar";
	case YNODE_SEQ: return "list";
	default: return "mapping";
	}
}
