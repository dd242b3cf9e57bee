/*
 * log: stderr logging with levels. See log.h.
 */
#include "log.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

static struct {
	const char *prog;
	enum log_level level;
	bool syslog;
} log_ctx = { "steadyfs", SLOG_INFO, false };

static const char *const level_names[] = { "error", "warning", "info", "debug" };

void log_init(const char *prog, enum log_level level)
{
	log_ctx.prog = prog;
	log_ctx.level = level;
}

void log_use_syslog(void)
{
	int fd = open("/dev/null", O_RDWR);

	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}
	openlog(log_ctx.prog, LOG_PID, LOG_DAEMON);
	log_ctx.syslog = true;
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
	if (log_ctx.syslog) {
		static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };

		va_start(ap, fmt);
		vsnprintf(line, sizeof(line), fmt, ap);
		va_end(ap);
		syslog(prio[lvl], "%s", line);
		return;
	}
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
