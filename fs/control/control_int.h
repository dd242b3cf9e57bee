/*
 * control_int: what control.c (counters, events ring, mirror) and
 * control_render.c (the five files) share. Not for other modules: they use
 * control.h.
 *
 * Locking: `lock` protects every field marked (L). Rendering first takes a
 * struct ctl_snap of the pool, the sessions and the vfs gauges without the
 * lock (those calls take their own locks, and the vfs may call into control
 * while holding nothing of ours), then formats under the lock, so one file
 * is consistent with itself.
 */
#ifndef STEADYFS_CONTROL_INT_H
#define STEADYFS_CONTROL_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "control.h"
#include "periodic.h"
#include "strbuf.h"

struct json_object;

#include "version.h"

#define CTL_EVENTS_MAX 1000
/* Finite histogram bounds (seconds); the +Inf bucket is implied. */
#define CTL_NBOUNDS 17
/* errno values 1..CTL_ERRNO_SLOTS-1 are counted each on its own; anything
 * else in slot 0, rendered as errno="other". Linux errnos end at 133. */
#define CTL_ERRNO_SLOTS 136
/* The fixed op list (control.c) plus "other" at the end. */
#define CTL_NOPS 23
#define CTL_OP_OTHER (CTL_NOPS - 1)
/* Sessions whose failed reconnects are coalesced (connections= is 1..10). */
#define CTL_MAX_RUNS 16

/* The name tables (control_names.c). */
extern const char *const ctl_ops[CTL_NOPS];
extern const double ctl_bounds[CTL_NBOUNDS];

enum ctl_event_type { EV_STATE = 0, EV_SESSION, EV_ERROR, EV_DATA, EV_SHADOWED,
		      EV_RESTART, EV_INVALID_STATE, EV_NTYPES };
extern const char *const ctl_event_types[EV_NTYPES];

struct ctl_op_stats {
	uint64_t calls;
	uint64_t bucket[CTL_NBOUNDS + 1];  /* not cumulative; last is +Inf */
	double sum;                        /* seconds */
	uint64_t errors[CTL_ERRNO_SLOTS];
};

struct ctl_last_error {
	bool set;
	double time;
	const char *op;        /* static string */
	char *path;
	int errnum;
	char cause[16];
};

/* One line of the events ring. */
struct ctl_event {
	uint64_t seq;
	char *line;            /* JSON, no newline */
};

/*
 * A run of identical failed reconnect attempts of one session: they share
 * one events line (rewritten with a count and moved to the end), so a long
 * outage cannot push the state, error and data records out of the ring.
 */
struct ctl_fail_run {
	uint64_t count;        /* 0: no run */
	uint64_t seq;          /* of its line in the ring */
	double first;          /* wall time of the first attempt of the run */
	char *detail;
};

struct ctl_last_session {
	bool set;
	double time;
	int idx;
	char *what;
	char *detail;
};

struct control {
	const struct steadyfs_opts *o;
	struct pool *pool;
	char *mountpoint;      /* resolved, as given to control_new */
	char *state_dir;       /* absolute */
	char *default_dir;     /* /run/steadyfs/<escaped>, NULL if too long */
	char device[32];       /* the mount's "major:minor" from the mount
				* table, "" if not found: with the keeper pid it
				* tells steadyfs-recover which mounts, at any
				* path (binds too), a live steadyfs serves */
	char *textfile;        /* absolute, or NULL */
	char *remote;          /* user@host:port:dir */
	double started_wall;
	uint64_t started_mono;

	pthread_mutex_t lock;
	control_gauge_fn gauge_fn;            /* (L) */
	void *gauge_arg;                      /* (L) */
	struct ctl_event ring[CTL_EVENTS_MAX];  /* (L) */
	unsigned ring_first, ring_count;      /* (L) oldest slot, how many */
	struct ctl_fail_run runs[CTL_MAX_RUNS]; /* (L) by session index */
	uint64_t seq;                         /* (L) events ever recorded */
	uint64_t events_by_type[EV_NTYPES];   /* (L) */
	struct ctl_op_stats ops[CTL_NOPS];    /* (L) */
	uint64_t bytes_read, bytes_written;   /* (L) */
	uint64_t replayed_bytes, lost_bytes;  /* (L) */
	uint64_t close_failures;              /* (L) */
	uint32_t missing_exts;                /* (L) noted by the vfs */
	uint64_t bad_names;                   /* (L) listing entries skipped */
	uint64_t ra_hits, ra_misses;          /* (L) reads served by read-ahead or not */
	struct ctl_last_error last_err;       /* (L) */
	struct ctl_last_session last_sess;    /* (L) */
	double last_alive;                    /* (L) see ctl_snap_take */
	uint64_t mirror_failures;             /* (L) */
	char mirror_error[256];               /* (L) "" while writes succeed */
	double mirror_time;                   /* (L) last complete mirror */
	bool dirty;                           /* (L) something worth writing */
	bool started;                         /* mirror thread running */
	struct periodic mirror;               /* kicked (L) after an event */
	uint64_t mirror_last;                 /* mirror thread only: last write */
	struct keepstate *ks;  /* the keeper's counters (NULL: none) */
	uint64_t generation;   /* of this daemon */
};

/* Everything a render needs from outside control, taken without the lock. */
struct ctl_snap {
	double now;               /* wall */
	double uptime;
	const char *state;        /* "connected", "degraded", "down" */
	double since;
	int up, total;
	struct conn_info *conns;  /* `total` entries (NULL if allocation failed) */
	uint64_t attempts;        /* connect attempts other than each session's
				   * first success */
	uint64_t reconnects;
	uint32_t missing;         /* SFTP_EXT_* bits */
	struct control_gauges g;
	bool running;             /* false for the last mirror */
	int keeper_pid;
	uint64_t restarts;
	uint64_t upgrades_failed;
	char restart_reason[96];  /* "" when none */
};

/* control_render.c */
/* Fills `s` (call without the lock); ctl_snap_release frees it. */
void ctl_snap_take(struct control *c, struct ctl_snap *s);
void ctl_snap_release(struct ctl_snap *s);
/* Appends file `idx` of control_files to `sb`; call with the lock held. */
void ctl_render_locked(struct control *c, const struct ctl_snap *s, int idx,
		       struct strbuf *sb);
/* "2024-05-01T12:00:00.123Z" */
void ctl_iso_time(double t, char *out, size_t outsz);
/* Appends `v` with invalid UTF-8 bytes written as "\xNN" (and, with
 * `ctrl`, control characters too), so a file stays valid UTF-8 and one
 * line per record whatever the remote names are. A backslash is kept as
 * is (state_dir paths are full of systemd's "\x2d"), so "\xNN" is
 * ambiguous only for a name that really contains it. */
void ctl_clean(struct strbuf *sb, const char *v, bool ctrl);
/* A json-c string of `v` (NULL: "") cleaned by ctl_clean. */
struct json_object *ctl_jstr(const char *v);
/* "EIO", ..., or "E<n>" for a number glibc has no name for. */
const char *ctl_errno_name(int errnum, char *tmp, size_t tmpsz);

#endif
