/*
 * log: one line per event on stderr ("prog: level: message"), which
 * journald captures under systemd. Callers never log secrets (keys,
 * passphrases). Thread-safe: each line is written with one write(2).
 *
 * The level and program name live in one private context in log.c, set
 * once by log_init() before threads start. Every message has its control
 * characters escaped (log_escape), so one call is always one line.
 */
#ifndef STEADYFS_LOG_H
#define STEADYFS_LOG_H

#include <stddef.h>

enum log_level { SLOG_ERR = 0, SLOG_WARN = 1, SLOG_INFO = 2, SLOG_DEBUG = 3 };

/* `prog` must outlive every later call (a string literal or argv[0]). */
void log_init(const char *prog, enum log_level level);
enum log_level log_level(void);
/* For a daemon going to the background: standard input, output and
 * error become /dev/null (nobody reads the terminal any more) and from
 * now on lines go to syslog(3) (journald). */
void log_use_syslog(void);
void log_msg(enum log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * Copies `in` to `out` (size `outsz`, always terminated when outsz > 0)
 * with every control character (below 0x20, and 0x7f) written as "\xNN",
 * truncating at a whole character. Returns the length written. log_msg
 * applies it to every message, so a file name holding a newline cannot
 * forge a log line; callers need not escape names themselves.
 */
size_t log_escape(char *out, size_t outsz, const char *in);

#define log_err(...)   log_msg(SLOG_ERR, __VA_ARGS__)
#define log_warn(...)  log_msg(SLOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(SLOG_INFO, __VA_ARGS__)
#define log_debug(...) \
	do { if (log_level() >= SLOG_DEBUG) log_msg(SLOG_DEBUG, __VA_ARGS__); } while (0)

#endif
