/*
 * jsonutil: the few json-c helpers every program here needs, in one place:
 * adding a field (two rules for a NULL value, below), numbers of seconds
 * written with millisecond precision, and reading a number field.
 *
 * json-c represents JSON null as a NULL object pointer, which is also
 * what its constructors return when out of memory. The callers choose
 * which of the two a NULL means by choosing the function:
 *  - jput(): NULL is a failed allocation; the field is left out. For
 *    records built without a check per field (a journal line is at worst
 *    missing a field), or with the return value checked when every field
 *    is needed (a state file).
 *  - jadd(): NULL is JSON null; a failure to add is counted.
 * Both free the value when it cannot be added.
 */
#ifndef STEADYFS_JSONUTIL_H
#define STEADYFS_JSONUTIL_H

struct json_object;

/* Adds `key: val` to `o` when both exist. Returns 0, or -1 when `o` or
 * `val` is NULL or the add failed (out of memory). json-c owns `val`. */
int jput(struct json_object *o, const char *key, struct json_object *val);
/* Adds `key: val`, `val` NULL meaning JSON null; a failure (out of memory)
 * is counted in *bad. json-c owns `val`. */
void jadd(struct json_object *o, const char *key, struct json_object *val, int *bad);
/* A JSON number of seconds (times, durations) written with three decimals:
 * json-c's default prints 17 significant digits. NULL when out of memory. */
struct json_object *jsecs(double v);
/* The number under `key` in object `o`, or `dflt` when absent or not a
 * number. */
double jget_num(struct json_object *o, const char *key, double dflt);

#endif
