/*
 * A small YAML node tree built from libyaml's event stream. libyaml's own
 * document API drops nothing we need, but walking events once into our own
 * tree lets every node keep its 1-based line and column (as an editor shows
 * them) and whether a scalar was quoted, which the configuration loader needs
 * for its FILE:LINE:COL messages and its type checks (h2o's yoml does the
 * same). Aliases are refused: a configuration has no use for them and they
 * would turn the tree into a graph.
 */
#ifndef MAM_YAMLTREE_H
#define MAM_YAMLTREE_H

#include <stdbool.h>
#include <stddef.h>

enum ynode_type { YNODE_SCALAR, YNODE_SEQ, YNODE_MAP };

struct ynode;

struct ypair {
	struct ynode *key; /* always a scalar */
	struct ynode *value;
};

struct ynode {
	enum ynode_type type;
	int line, col;	      /* 1-based start of the node */
	char *scalar;	      /* YNODE_SCALAR: the text, NUL-terminated */
	size_t len;	      /* YNODE_SCALAR: its length (may contain NUL bytes) */
	bool plain;	      /* YNODE_SCALAR: unquoted, so "null"/"~"/"" mean null */
	struct ynode **items; /* YNODE_SEQ */
	struct ypair *pairs;  /* YNODE_MAP, in file order; duplicates are kept */
	size_t n;	      /* number of items or pairs */
};

/*
 * Parse buf into a tree. Returns 0 and *root (NULL for an empty document),
 * -EINVAL on a YAML error with *line, *col (1-based) and err filled in, or
 * -ENOMEM.
 */
int ytree_parse(const char *buf, size_t len, struct ynode **root, int *line, int *col, char *err,
		size_t errsz) __attribute__((warn_unused_result));
void ytree_free(struct ynode *n);

/* True for a plain scalar meaning null: empty, "~", "null", "Null", "NULL". */
bool ynode_is_null(const struct ynode *n);

const char *ynode_type_name(const struct ynode *n);

#endif
