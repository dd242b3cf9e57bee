/*
 * prom: Prometheus text exposition helpers. See prom.h.
 */
#include "prom.h"

#include <math.h>

void prom_escape_label(struct strbuf *sb, const char *v)
{
	for (; *v; v++) {
		switch (*v) {
		case '\\': strbuf_adds(sb, "\\\\"); break;
		case '"': strbuf_adds(sb, "\\\""); break;
		case '\n': strbuf_adds(sb, "\\n"); break;
		default: strbuf_addc(sb, *v); break;
		}
	}
}

/* HELP text escapes only backslash and newline (a quote is literal). */
static void escape_help(struct strbuf *sb, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\')
			strbuf_adds(sb, "\\\\");
		else if (*v == '\n')
			strbuf_adds(sb, "\\n");
		else
			strbuf_addc(sb, *v);
	}
}

void prom_family(struct strbuf *sb, const char *name, const char *type, const char *help)
{
	strbuf_addf(sb, "# HELP %s ", name);
	escape_help(sb, help);
	strbuf_addf(sb, "\n# TYPE %s %s\n", name, type);
}

void prom_sample(struct strbuf *sb, const char *name, const char *const *labels,
		 int nlabels, double value)
{
	strbuf_adds(sb, name);
	if (labels && nlabels > 0) {
		strbuf_addc(sb, '{');
		for (int i = 0; i < nlabels; i++) {
			if (i)
				strbuf_addc(sb, ',');
			strbuf_addf(sb, "%s=\"", labels[2 * i]);
			prom_escape_label(sb, labels[2 * i + 1]);
			strbuf_addc(sb, '"');
		}
		strbuf_addc(sb, '}');
	}
	if (isnan(value))
		strbuf_adds(sb, " NaN\n");
	else if (isinf(value))
		strbuf_adds(sb, value > 0 ? " +Inf\n" : " -Inf\n");
	else
		strbuf_addf(sb, " %.15g\n", value);
}
