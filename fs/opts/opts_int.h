/*
 * opts_int: what the option parser (opts.c) and its table of options
 * accepted without effect (opts_passive.c) share. Not for other modules:
 * they use opts.h.
 */
#ifndef STEADYFS_OPTS_INT_H
#define STEADYFS_OPTS_INT_H

#include <stddef.h>

/* How a passive option's name is matched against the item's key. */
enum match { M_EXACT, M_NOCASE, M_PREFIX };

/* Options accepted without effect. `what` NULL: silently; otherwise one
 * warning per option per command line, naming what kind of option it is. */
struct passive_spec {
	const char *name;
	enum match match;
	const char *what;
};

/* The table's length: the parser keeps one "warned" flag per entry
 * (opts_passive.c checks the two agree at compile time). */
#define OPTS_NPASSIVE 231
extern const struct passive_spec opts_passive[OPTS_NPASSIVE];

#endif
