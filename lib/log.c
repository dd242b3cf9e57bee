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

size_t log_escape(char *out, size_t outsz, const char *in)
{
	static const char hex[] = "0123456789abcdef";
	size_t n = 0;

	if (outsz == 0)
		return 0;
	for (const unsigned char *s = (const unsigned char *)in; *s; s++) {
		if (*s >= 0x20 && *s != 0x7f) {
			if (n + 1 >= outsz)
				break;
			out[n++] = (char)*s;
			continue;
		}
		if (n + 4 >= outsz)
			break;  /* never half an escape */
		out[n++] = '\\';
		out[n++] = 'x';
		out[n++] = hex[*s >> 4];
		out[n++] = hex[*s & 15];
	}
	out[n] = '\0';
	return n;
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	char raw[1024], line[1024 + 64];
	va_list ap;
	int n;

	if (lvl > log_ctx.level)
		return;
	va_start(ap, fmt);
	vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	if (log_ctx.syslog) {
		static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };

		log_escape(line, sizeof(line), raw);
		syslog(prio[lvl], "%s", line);
		return;
	}
	n = snprintf(line, sizeof(line), "%s: %s: ", log_ctx.prog,
		     level_names[lvl]);
	if (n < 0 || (size_t)n >= sizeof(line) - 2)
		return;
	/* Names from the server or from local users end up in messages: a
	 * newline in one must not start a forged line of its own. */
	n += (int)log_escape(line + n, sizeof(line) - 1 - (size_t)n, raw);
	line[n++] = '\n';
	/* One write per line so concurrent threads never interleave. */
	if (write(STDERR_FILENO, line, (size_t)n) < 0)
		return;
}
