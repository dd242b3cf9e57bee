/*
 * child: run a piece of work in a forked child process under a hard
 * deadline, with its output captured, so that nothing the recovery does
 * (a hook, a mount helper that cannot reach its server, an unmount on a
 * wedged filesystem) can block the caller past the deadline.
 *
 * The child runs in its own process group; at the deadline the whole
 * group gets SIGKILL. Its stdin is /dev/null; stdout and stderr go to an
 * anonymous in-memory file (memfd), not a pipe: a daemon the child leaves
 * behind (sshfs started by a mount helper) may keep the descriptor, and a
 * write to a pipe nobody reads would kill it with SIGPIPE or block it.
 * The caller waits on a pidfd, so it never depends on EOF from the output.
 *
 * Caller requirements: one thread; SIGCHLD not ignored.
 */
#ifndef STEADYFS_RECOVER_CHILD_H
#define STEADYFS_RECOVER_CHILD_H

#include <stddef.h>

/* Bytes of output kept: the last ones, which usually hold the error. */
#define CHILD_OUTPUT_MAX 2048

struct child_result {
	int exited;        /* 1: exited normally, `code` is its exit status */
	int code;          /* exit status, or the signal number if !exited */
	int timed_out;     /* 1: killed at the deadline */
	double duration;   /* seconds from fork to reap */
	char output[CHILD_OUTPUT_MAX + 1];  /* tail of stdout+stderr, NUL-ended */
	int truncated;     /* 1: output was longer; `output` holds its end */
};

/*
 * Runs `fn(arg)` in a forked child, which exits with fn's return value
 * (0..255). Waits at most `timeout` seconds (> 0), then kills the child's
 * process group. Returns 0 when the child ran (whatever its outcome, see
 * `res`), or -1 with a one-line reason in `err` when it could not be
 * started.
 */
int child_run(int (*fn)(void *arg), void *arg, double timeout,
	      struct child_result *res, char *err, size_t errsz);

/* 1 if the child exited with status 0 in time. */
int child_ok(const struct child_result *res);
/* A short description of the outcome ("exit 0", "exit 3", "signal 9",
 * "timed out after 2.0 s") into `out`; returns `out`. */
const char *child_describe(const struct child_result *res, char *out, size_t outsz);

#endif
