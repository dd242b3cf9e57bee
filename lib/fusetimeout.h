/*
 * fusetimeout: the kernel's FUSE request timeout (Linux 6.15 and later).
 *
 * With /proc/sys/fs/fuse/default_request_timeout or max_request_timeout
 * set, the kernel aborts the whole FUSE connection (every later call
 * ENOTCONN, the stale mount steadyfs exists to prevent) once a request
 * has waited longer than that, checked about every 15 s. A daemon that
 * sets no timeout in its INIT reply (libfuse 3.14 cannot) gets the default
 * one, capped by the maximum; the value is fixed when the mount is made.
 * Before Linux 6.15 neither file exists and no such timeout applies.
 */
#ifndef STEADYFS_FUSETIMEOUT_H
#define STEADYFS_FUSETIMEOUT_H

#include <stdbool.h>

#define FUSE_TIMEOUT_SYSCTL_DIR "/proc/sys/fs/fuse"
/* The longest a call on steadyfs may wait in the kernel's queue: its own
 * op_timeout, the old daemon's write-back before a handover (op_timeout)
 * and the keeper's cap on an upgrade's drain. */
#define FUSE_TIMEOUT_DRAIN_S 60.0

struct fuse_timeout {
	bool supported;        /* the sysctls exist */
	unsigned dflt;         /* default_request_timeout, s (0: none) */
	unsigned max;          /* max_request_timeout, s (0: none) */
	unsigned effective;    /* what applies to a mount made now by a daemon
				* that asks for none: 0 none */
	const char *source;    /* "default_request_timeout" or
				* "max_request_timeout": the one that sets
				* `effective`; "" when none */
};

/* Reads both sysctls from `dir` (NULL: FUSE_TIMEOUT_SYSCTL_DIR). Never
 * fails: an unreadable file counts as absent. */
void fuse_timeout_read(const char *dir, struct fuse_timeout *t);
/* Seconds a kernel timeout must reach for a mount with `op_timeout`:
 * 2 x op_timeout + FUSE_TIMEOUT_DRAIN_S. */
double fuse_timeout_floor(double op_timeout);

#endif
