/*
 * Internal to the configuration loader (config.c): parsing and checking of
 * single values (numbers, booleans, paths, conninfo, listen addresses, move
 * templates) and the lifetime of struct config. Split from config.c to keep
 * each file readable in one sitting; nothing outside the loader uses it.
 */
#ifndef MAM_CONFIG_VALUE_H
#define MAM_CONFIG_VALUE_H

#include <stdbool.h>
#include <stddef.h>

#include "yamltree.h"

size_t cfgval_utf8_chars(const char *s);
size_t cfgval_edit_distance(const char *a, const char *b);
void cfgval_join_names(const char *const *names, char *out, size_t outsz);
/* Returns NULL and *out (malloc'd, NULL when out of memory), or the reason it is refused. */
const char *cfgval_path_normalise(const char *in, char **out);
/* b equals a or lies beneath it. */
bool cfgval_path_within(const char *b, const char *a);
int cfgval_parse_ll(const struct ynode *n, long long *v);
int cfgval_parse_bool(const struct ynode *n, bool *v);
int cfgval_enum_index(const char *const *names, const char *s);
/* A list value, or a single scalar standing for a one-item list. */
bool cfgval_list_items(const struct ynode *v, struct ynode *const **items, size_t *n,
		       struct ynode **one);
/* These return true when the value is acceptable, else false with why filled in. */
bool cfgval_conninfo_ok(const char *conninfo, char *why, size_t whysz);
bool cfgval_listen_ok(const char *listen);
bool cfgval_template_ok(const char *tmpl, char *why, size_t whysz);
bool cfgval_tenant_code_ok(const char *code);
struct config;
/* Fill node_name, worker concurrency, inherited folder values, quarantine_to. */
int cfgval_finish(struct config *cfg) __attribute__((warn_unused_result));
/* The value node of map[key], NULL when absent or map is not a mapping. */
const struct ynode *cfgval_get(const struct ynode *map, const char *key);

#endif
