/*
 * metrics: Prometheus textfile of a pass. See metrics.h.
 */
#include "metrics.h"

#include <stdio.h>

#include "atomicfile.h"
#include "prom.h"
#include "strbuf.h"

/* The families, in file order; each has one sample labelled with the root. */
static const struct family {
	const char *name, *type, *help;
} families[] = {
	{ "steadyfs_recover_last_run_timestamp_seconds", "gauge", "When the last pass ran." },
	{ "steadyfs_recover_last_success_timestamp_seconds", "gauge",
	  "When a pass last ended healthy or recovered (0: never)." },
	{ "steadyfs_recover_pass_duration_seconds", "gauge", "How long the last pass took." },
	{ "steadyfs_recover_stale_mounts", "gauge",
	  "Stale mounts (ENOTCONN) found under the root by the last pass." },
	{ "steadyfs_recover_hung_mounts", "gauge",
	  "Hung mounts (no answer in time) found by the last pass." },
	{ "steadyfs_recover_absent_mounts", "gauge",
	  "Manifest entries with nothing mounted, found by the last pass." },
	{ "steadyfs_recover_action_needed", "gauge",
	  "1 if the last pass ended with something still to recover." },
	{ "steadyfs_recover_last_exit_code", "gauge",
	  "Exit code of the last pass (0 ok, 1 not taken, 2 usage, 3 internal, 4 failed)." },
	{ "steadyfs_recover_recoveries_total", "counter",
	  "Recovery attempts made, failed or not." },
	{ "steadyfs_recover_recovery_failures_total", "counter", "Recovery attempts that failed." },
	{ "steadyfs_recover_last_apply_ok", "gauge",
	  "1 if the last recovery attempt succeeded (1 if none yet)." },
	{ "steadyfs_recover_enabled", "gauge",
	  "1 if the sentinel file is present (recovery allowed)." },
};

int metrics_write(const char *path, const struct recover_metrics *m, char *err, size_t errsz)
{
	const double values[] = {
		m->last_run, m->last_success, m->duration, (double)m->stale, (double)m->hung,
		(double)m->absent, m->action_needed, m->exit_code, (double)m->recoveries_total,
		(double)m->recoveries_failed, m->last_apply_ok, m->enabled,
	};
	const char *labels[] = { "root", m->root };
	struct strbuf sb = STRBUF_INIT;
	int rc;

	_Static_assert(sizeof(values) / sizeof(values[0]) ==
		       sizeof(families) / sizeof(families[0]), "one value per family");
	for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
		prom_family(&sb, families[i].name, families[i].type, families[i].help);
		prom_sample(&sb, families[i].name, labels, 1, values[i]);
	}
	if (!strbuf_ok(&sb)) {
		snprintf(err, errsz, "out of memory building metrics");
		strbuf_release(&sb);
		return -1;
	}
	rc = atomicfile_write(path, sb.s, sb.len, 0644, err, errsz);
	strbuf_release(&sb);
	return rc;
}
