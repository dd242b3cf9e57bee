/*
 * ksvalid: the one check of a take-over state before a daemon restores
 * from it.
 *
 * The state was written by a process that may have died at any instant,
 * may have been a different build, or may have been damaged in memory. A
 * record that a restore would trust and that is wrong has crashed or hung
 * every daemon started after it (the state outlives them all), so nothing
 * is restored before ks_validate() has looked at every record and freed
 * the ones that break a rule below. What passes, the restore code may
 * trust without checking again:
 *
 *  - header: the high-water marks within the tables, the id and sequence
 *    counters below their caps and above every record's, the restart
 *    reason a printable terminated string, the saved INIT a FUSE_INIT
 *    request of its recorded length;
 *  - nodes: state FREE or LIVE, known flag bits only, an id other than 0
 *    and the root and below KS_ID_MAX, a lookup count, an end offset a
 *    file can have, a name that is one path component (names.h) and
 *    whose recorded length is its length; of two records of one id the
 *    newer (higher sequence) stays, an exact tie drops both; every parent
 *    chain reaches the root, or a node whose name was unlinked, in at
 *    most KS_DEPTH_MAX steps, without a cycle (a node below a dropped one
 *    is dropped too: it has no path any more). Depth counts from the
 *    root, or from an unlinked node: a daemon may have looked up nodes
 *    deeper than that below a folder whose record says unlinked; they
 *    have no path, and their walk up is what the limit bounds;
 *  - handles: see ks_fh_problem();
 *  - events: a sequence number whose slot is its own (seq % KS_EVENTS),
 *    within the last KS_EVENTS of the newest, a length below the slot's
 *    and matching its text, the text one JSON object on one line;
 *  - in-flight ids: even ids (odd ones are the table's tombstone or not a
 *    request), append offsets a file can have.
 *
 * A record that fails is freed in the state itself, so the next daemon
 * does not meet it again; it is counted in the report. One daemon owns
 * the state at a time: call this once, before ks_nodes_each(),
 * ks_fhs_each(), ks_events_each() and ks_inflight_take(), from the thread
 * that sets the daemon up. Never fails: with no memory to check the node
 * table's chains, every node record is dropped (reported as such).
 */
#ifndef STEADYFS_KSVALID_H
#define STEADYFS_KSVALID_H

#include <stdbool.h>
#include <stdint.h>

#include "keepstate.h"

/* Ids and sequence numbers at or above this are damage: counters that
 * start at 1 and count one by one never get there. */
#define KS_ID_MAX (1ull << 62)
/* The deepest folder chain a restored node may sit in (the restore
 * fuzzer's build makes it smaller than its node table). */
#ifndef KS_DEPTH_MAX
#define KS_DEPTH_MAX 4096
#endif
/* The largest file offset (off_t). */
#define KS_OFF_MAX ((uint64_t)INT64_MAX)

struct ks_report {
	unsigned header;       /* header fields set back to a safe value */
	unsigned nodes;        /* node records dropped */
	unsigned handles;      /* handle records dropped */
	unsigned events;       /* event lines dropped */
	unsigned inflight;     /* in-flight ids dropped */
	uint64_t lost_bytes;   /* unacknowledged bytes the dropped handles held */
	char first[160];       /* the first problem, "" when none; no names
	                        * or paths from the state in it (they may hold
	                        * anything), only slots, ids and numbers */
};

/* Checks and repairs as above; fills *rep (zeroed first). */
void ks_validate(struct keepstate *ks, const char *base, struct ks_report *rep);

/* Problems found in all: 0 when the state was clean. */
unsigned ks_report_total(const struct ks_report *rep);

/*
 * A handle record's problem, NULL when it has none: flags with an access
 * mode open(2) cannot give or a negative value, an error not 0 and not an
 * errno, an unacknowledged range that is not one (lo > hi, or past
 * KS_OFF_MAX), an inode that is not a node the restore keeps
 * (`node_ok(arg, ino)`), a path that is not `base` followed by path
 * components (names.h). (The slot's own encoding, its state word,
 * `released` and the path's terminator, is checked before.) Its own
 * function so that the record's fields can change without touching the
 * rest of the pass.
 */
const char *ks_fh_problem(const struct ks_fh *f, const char *base,
			  bool (*node_ok)(void *arg, uint64_t ino), void *arg);

#endif
