/*
 * probe: answer "does this path work right now?" for many paths at once,
 * within a hard deadline, without ever blocking the caller on a dead mount.
 *
 * Each path is probed in its own forked child: stat(2), then for a
 * directory opendir + readdir of a few entries, for a regular file open +
 * read of its first bytes (other file types: stat only). All children run
 * in parallel; the caller's process never touches a probed path. When the
 * deadline passes, the remaining children get SIGKILL; one that cannot be
 * reaped shortly after (stuck in the kernel, e.g. on a FUSE request the
 * daemon will never answer) is abandoned and recorded in the state dir
 * with its pid and start time, so that a later run reports its path hung
 * without starting another child that would get stuck too. A record is
 * dropped once its process is gone (pid + /proc start time, so a reused
 * pid is not mistaken for it).
 *
 * probe_run() returns within opts->timeout + PROBE_GRACE_S whatever the
 * paths do.
 *
 * Caller requirements: SIGCHLD must not be ignored (children are reaped
 * with waitpid by pid; no other children are touched); call from one
 * thread. Abandoned children of a long-running caller are reaped by later
 * probe_run() calls once they finally exit.
 */
#ifndef STEADYFS_PROBE_H
#define STEADYFS_PROBE_H

#include <stddef.h>
#include <sys/types.h>

#include "statedir.h"

enum probe_state {
	PROBE_OK = 0,
	PROBE_STALE,     /* ENOTCONN, ECONNABORTED or ESTALE: dead transport */
	PROBE_HUNG,      /* no answer within the deadline */
	PROBE_MISSING,   /* ENOENT */
	PROBE_ERROR,     /* any other errno (see err) */
	PROBE_DEGRADED,  /* steadyfs: hung, slow or EIO while its mirror is fresh
			  * and its state is not "connected" */
	PROBE_NSTATES
};

/* Default deadline, and the most probe_run() may take beyond it to kill
 * and reap (or abandon) children. */
#define PROBE_DEFAULT_TIMEOUT_S 10.0
#define PROBE_GRACE_S 0.25
/* Default state dir of the steadyfs-probe command. */
#define PROBE_DEFAULT_STATE_DIR "/run/steadyfs/probe"

/* Request flags. */
#define PROBE_F_RESOLVE 0x1  /* also return realpath(path) in res->resolved */

struct probe_req {
	const char *path;        /* probed as given (relative to the cwd) */
	/* Mirror directory of the steadyfs mount holding `path`, or NULL if it
	 * is not on a steadyfs mount. When set, the mirror is read (in the
	 * caller's process: it is local) and decides hung/slow/EIO versus
	 * degraded. */
	const char *mirror_dir;
	int flags;
};

struct probe_opts {
	double timeout;          /* seconds, > 0; 0 means PROBE_DEFAULT_TIMEOUT_S */
	/* An answer slower than this on a steadyfs mount whose mirror says it
	 * is not connected counts as degraded; 0 means timeout / 2. */
	double slow;
	/* Directory for stuck-child records (created if missing, mode 0755);
	 * NULL: do not remember stuck children across runs. */
	const char *state_dir;
};

struct probe_result {
	enum probe_state state;
	int err;                 /* errno of the failing call; 0 if none failed */
	const char *op;          /* the failing call ("stat", "opendir",
				  * "readdir", "open", "read", "fork"), or NULL */
	double duration;         /* seconds from start to answer; for hung: time
				  * waited, or since the stuck child started */
	int abandoned;           /* 1: a child for this path is stuck in the kernel */
	int reused;              /* 1: that child is from an earlier run, no new
				  * child was started */
	pid_t pid;               /* child pid (0 if none was started) */
	mode_t mode;             /* st_mode from the child's stat, 0 if none */
	dev_t dev;               /* st_dev from the child's stat, 0 if none */
	struct mirror_status mirror;  /* health NONE if req->mirror_dir was NULL */
	char resolved[4096];     /* realpath(path) with PROBE_F_RESOLVE and an
				  * ok answer; "" otherwise */
};

/*
 * Probes reqs[0..n) in parallel and fills res[0..n). Per-path failures are
 * results, not errors. Returns 0, or -1 with a one-line reason in `err`
 * when the probe itself could not run (cannot create the state dir, out of
 * memory, too many paths for the fd limit); res is then undefined.
 */
int probe_run(const struct probe_opts *opts, const struct probe_req *reqs, size_t n,
	      struct probe_result *res, char *err, size_t errsz);

/* "ok", "stale", "hung", "missing", "error", "degraded". */
const char *probe_state_name(enum probe_state s);
/* 1 if the state counts as healthy (only PROBE_OK). */
int probe_state_healthy(enum probe_state s);
/*
 * Whether a result is healthy as a whole: state ok and, when a mirror was
 * asked for, the mirror fresh. A fresh mirror reporting "down" with the
 * path still answering is healthy (the daemon answers from cache).
 */
int probe_result_healthy(const struct probe_result *r);

/*
 * The stuck-child records in `state_dir` whose process still runs: for
 * each, calls `fn(path, pid, started_epoch, ctx)`. Records of processes
 * that are gone are deleted. Returns the number of live records, or -1
 * with a reason in `err` if the directory cannot be read (a missing
 * directory is 0 records).
 */
int probe_stuck_list(const char *state_dir,
		     void (*fn)(const char *path, pid_t pid, double started, void *ctx),
		     void *ctx, char *err, size_t errsz);

#endif
