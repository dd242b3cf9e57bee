/*
 * metrics: the --textfile for node_exporter's textfile collector, all
 * names prefixed steadyfs_recover_, rewritten atomically after each pass.
 * Counters come from the state file, so they survive restarts.
 */
#ifndef STEADYFS_RECOVER_METRICS_H
#define STEADYFS_RECOVER_METRICS_H

#include <stddef.h>

struct recover_metrics {
	const char *root;
	double last_run;          /* epoch seconds of this pass */
	double last_success;      /* last pass that ended healthy or recovered; 0 never */
	double duration;          /* seconds this pass took */
	size_t stale, hung, absent;
	int action_needed;        /* 1: exit 1 (or 4) this pass */
	int exit_code;
	long recoveries_total, recoveries_failed;
	int last_apply_ok;
	int enabled;              /* sentinel present */
};

/* Writes `m` to `path` atomically. Returns 0, or -1 with `err`. */
int metrics_write(const char *path, const struct recover_metrics *m, char *err, size_t errsz);

#endif
