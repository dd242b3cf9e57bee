/*
 * prom: Prometheus text exposition format (version 0.0.4) into a strbuf:
 * HELP/TYPE headers, label value escaping, samples.
 *
 * The caller keeps the format's rules that need whole-file knowledge: one
 * HELP/TYPE pair per metric family, written before its samples, and all
 * samples of a family together. Metric and label names are the caller's
 * constants and are not checked; label values and HELP text are escaped
 * here, so any path or error text is safe to pass.
 */
#ifndef STEADYFS_PROM_H
#define STEADYFS_PROM_H

#include "strbuf.h"

/* "# HELP name help\n# TYPE name type\n"; `type` is "gauge", "counter",
 * "histogram", ... HELP text has "\\" and newline escaped. */
void prom_family(struct strbuf *sb, const char *name, const char *type, const char *help);
/* Appends `v` escaped as a label value (backslash, double quote and
 * newline), without the surrounding quotes. */
void prom_escape_label(struct strbuf *sb, const char *v);
/*
 * One sample line: name{k1="v1",...} value\n. `labels` is NULL or an
 * array of 2*nlabels strings (name, value, name, value, ...). The value is
 * written with %.15g, except NaN and +-Inf in the format's spelling.
 */
void prom_sample(struct strbuf *sb, const char *name, const char *const *labels,
		 int nlabels, double value);

#endif
