/*
 * control: the operator's view of a mount. Keeps the events ring (the last
 * 1000 JSON lines) and the call metrics, renders the virtual `.control/`
 * files (status, status.json, metrics, events, connections) on demand, and
 * mirrors them to state_dir (and metrics_textfile) every 2 s from its own
 * thread, atomically. Rendering never waits on the network: it reads only
 * counters and the pool's/conns' cached state.
 *
 * Threads: every function may be called from any thread (one internal
 * mutex); callbacks into the vfs (the gauge function) are made without it.
 */
#ifndef STEADYFS_CONTROL_H
#define STEADYFS_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "opts.h"
#include "pool.h"

struct control;

/* Gauges the vfs knows and control does not; filled on each render. */
struct control_gauges {
	uint64_t unacked_bytes;        /* write-behind bytes not yet acknowledged */
	double oldest_unacked_age;     /* seconds; 0 when none */
	unsigned calls_inflight;       /* FUSE calls not yet answered */
	double oldest_call_age;        /* seconds; 0 when none */
};
typedef void (*control_gauge_fn)(void *arg, struct control_gauges *g);

/* The files of .control/, NULL-terminated, in listing order. */
extern const char *const control_files[];

/* `mountpoint` is the resolved path. Returns NULL on allocation failure. */
struct control *control_new(const struct steadyfs_opts *o, struct pool *p,
			    const char *mountpoint);
void control_set_gauges(struct control *c, control_gauge_fn fn, void *arg);
/*
 * Prepares state_dir (creating it; with a non-default state_dir, a symlink
 * at the default path pointing to it), writes the first mirror before it
 * returns (the daemon says it serves only after: a probe run as soon as
 * the mount is reported ready finds it) and starts the mirror thread. On
 * failure writes one line to err and returns -1 (the mount still works).
 */
int control_start(struct control *c, char *err, size_t errsz);
/* Stops the thread, writes a last mirror (state "down"), frees. The gauge
 * function is called once more for that mirror when the thread ran. */
void control_free(struct control *c);

/* Events (each becomes one JSON line with a "time" and a "type"). */
void control_event_state(struct control *c, const char *from, const char *to);
void control_event_conn(struct control *c, int idx, const char *what,
			const char *detail);
/* A call that failed with EIO/EAGAIN; cause is "transport", "server" or
 * "local". */
void control_event_error(struct control *c, const char *op, const char *path,
			 int errnum, const char *cause);
/* Unacknowledged data of a handle when its session died, and whether the
 * replay succeeded; lost = true for data dropped for good. */
void control_event_data(struct control *c, const char *path, uint64_t off,
			uint64_t len, bool replayed, bool lost);
/*
 * A CLOSE that failed (the server refused it, or its reply was lost): the
 * kernel discards the answer to a release, so this is the only report.
 * A `data` event with `close_failed`, the errno and cause, and the range
 * [off, off+len) written since the last fsync that succeeded (len 0:
 * none), which that CLOSE would have confirmed; counted in
 * steadyfs_close_failures_total.
 */
void control_event_close_failed(struct control *c, const char *path,
				uint64_t off, uint64_t len, int errnum,
				const char *cause);
/* A remote entry named `.control` at the root, hidden by the virtual one. */
void control_event_shadowed(struct control *c, const char *path);
struct keepstate;
/* The keeper's counters (generation of this daemon, restarts, last
 * reason, keeper pid) for status and metrics. */
void control_set_daemon(struct control *c, struct keepstate *ks,
			uint64_t generation);
/* This daemon took over the mount after a restart or an upgrade. */
void control_event_restart(struct control *c, uint64_t generation,
			   const char *reason);
struct ks_report;
/* The take-over state failed validation (ksvalid.h): what was dropped. */
void control_event_invalid_state(struct control *c, const struct ks_report *rep);
/* Extensions the server lacks (SFTP_EXT_* bits), for status. */
void control_note_missing_ext(struct control *c, uint32_t ext_bit);
/* A listing entry whose name cannot be shown was skipped (ops_dir.c). */
void control_note_bad_name(struct control *c);

/* Metrics. `op` is a static string ("lookup", "write", ...). */
void control_record_call(struct control *c, const char *op, double seconds,
			 int errnum);
void control_add_bytes(struct control *c, uint64_t read, uint64_t written);
/* A read answered from (or parked on) read-ahead, or sent on its own. */
void control_note_readahead(struct control *c, bool hit);

/*
 * Renders file `name` (one of control_files) into a malloc'd buffer.
 * Returns 0, or -ENOENT for an unknown name, -ENOMEM.
 */
int control_render(struct control *c, const char *name, char **out,
		   size_t *len);

#endif
