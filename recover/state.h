/*
 * state: what steadyfs-recover remembers between passes, in one JSON file
 * in the state dir (state.json), rewritten atomically after every pass:
 *
 *  - sightings, per mountpoint: the bad state last seen ("stale", "hung",
 *    "absent"), how many consecutive passes saw it bad, and when it was
 *    first and last seen bad. A mountpoint found healthy loses its record,
 *    which is what makes the count consecutive. Records outside the root
 *    of the current pass are kept untouched (two roots may share a state
 *    dir; the lock serialises them).
 *  - recovery attempts (times, newest last, the last STATE_MAX_ATTEMPTS),
 *    for --cooldown and --max-recoveries/--window. An attempt is recorded
 *    before the first action, so it counts even if it fails or we crash.
 *  - totals and timestamps the metrics textfile reports.
 *
 * A missing file is an empty state. An unreadable or malformed one is an
 * error: starting afresh would forget the caps, so the caller stops.
 */
#ifndef STEADYFS_RECOVER_STATE_H
#define STEADYFS_RECOVER_STATE_H

#include <stddef.h>

#define STATE_MAX_ATTEMPTS 256

struct sighting {
	char *path;
	char kind[16];       /* "stale", "hung", "absent" */
	long count;          /* consecutive passes seen bad, >= 1 */
	double first_seen;   /* epoch seconds */
	double last_seen;
	int seen;            /* this pass (not stored) */
};

struct recover_state {
	struct sighting *v;
	size_t n, cap;
	double attempts[STATE_MAX_ATTEMPTS];  /* epoch seconds, oldest first */
	size_t nattempts;
	long recoveries_total;       /* attempts ever made */
	long recoveries_failed;      /* of which failed */
	double last_attempt;         /* 0: never */
	double last_success;         /* last pass that ended healthy or recovered */
	int last_apply_ok;           /* last attempt succeeded (1 if none yet) */
};

/* Loads `path` into `st` (which must be zeroed or released). Returns 0
 * (a missing file gives an empty state), or -1 with `err`. */
int state_load(struct recover_state *st, const char *path, char *err, size_t errsz);
/* Writes `st` to `path` atomically. Returns 0, or -1 with `err`. */
int state_save(const struct recover_state *st, const char *path, char *err, size_t errsz);
void state_release(struct recover_state *st);

/* Starts a pass over `root`: records at or below it are unmarked. */
void state_begin_pass(struct recover_state *st, const char *root);
/*
 * Notes `path` seen bad as `kind` at `now`: count+1 if it was bad last
 * pass, else a new record with count 1. Returns the record, or NULL when
 * out of memory.
 */
const struct sighting *state_sight(struct recover_state *st, const char *path,
				   const char *kind, double now);
/* Ends the pass: records at or below `root` not seen bad are dropped. */
void state_end_pass(struct recover_state *st, const char *root);
const struct sighting *state_find(const struct recover_state *st, const char *path);

/* Attempts in the `window` seconds up to `now`. */
size_t state_attempts_since(const struct recover_state *st, double now, double window);
/* Records an attempt at `now` (the oldest is dropped when full). */
void state_record_attempt(struct recover_state *st, double now);

#endif
