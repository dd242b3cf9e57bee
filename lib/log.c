/*
 * log: stderr logging with levels. See log.h.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static struct {
	const char *prog;
	enum log_level level;
} log_ctx = { "steadyfs", SLOG_INFO };

static const char *const level_names[] = { "error", "warning", "info", "debug" };

void log_init(const char *prog, enum log_level level)
{
	log_ctx.prog = prog;
	log_ctx.level = level;
}

enum log_level log_level(void)
{
	return log_ctx.level;
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	if (lvl > log_ctx.level)
		return;
	n = snprintf(line, sizeof(line), "%s: %s: ", log_ctx.prog,
		     level_names[lvl]);
	if (n < 0)
		return;
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	n = (int)strnlen(line, sizeof(line) - 2);
	line[n++] = '\n';
	/* One write per line so concurrent threads never interleave. */
	if (write(STDERR_FILENO, line, (size_t)n) < 0)
		return;
}
