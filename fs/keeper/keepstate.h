/*
 * keepstate: the take-over state, in shared memory the keeper holds (a
 * memfd) so that it outlives any one daemon process.
 *
 * The daemon writes it as it works; a new daemon (after a crash, a kill or
 * an upgrade) reads it to continue where the old one stopped: the saved
 * FUSE INIT request, the kernel's node ids with their (parent, name) and
 * lookup counts, open file handles (node, flags, unacknowledged range),
 * the unique ids of requests read but not yet answered, and the keeper's
 * counters (generation, restarts, last reason) and the last events of
 * .control/events.
 *
 * Consistency under SIGKILL at any instant: records are fixed-size slots.
 * A slot's fields are written first and its state word last (a release
 * store), so a reader sees either the old record or the whole new one. A
 * change of a node's name goes to a fresh slot with a higher sequence
 * number before the old slot is freed; a reader that finds two records for
 * one id keeps the newer. Single counters are single aligned stores.
 *
 * One daemon writes at a time (the keeper hands the descriptor over only
 * after the previous daemon is gone). Slot functions are thread-safe; a
 * slot's fields are written by the thread that owns the record.
 *
 * What a restore reads was written by another process, which may have
 * been damaged: ks_validate() (ksvalid.h) checks it first, and the
 * *_each() functions and ks_inflight_take() are called only after it.
 */
#ifndef STEADYFS_KEEPSTATE_H
#define STEADYFS_KEEPSTATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "identity.h"

struct keepstate;

#define KS_NAME_MAX 255
#define KS_PATH_MAX 4095
#define KS_REASON_MAX 95

/* ---- both sides ---- */

/* Creates the memfd with an empty state. Returns the fd or -errno. */
int ks_create(void);
/* Maps the state behind `fd` (not closed). NULL + err on failure. */
struct keepstate *ks_map(int fd, char *err, size_t errsz);
void ks_unmap(struct keepstate *ks);

/* ---- keeper counters (written by the keeper, shown by the daemon) ---- */
void ks_set_keeper(struct keepstate *ks, int pid);
void ks_note_restart(struct keepstate *ks, const char *reason);
int ks_keeper_pid(struct keepstate *ks);
/* An upgrade's new daemon failed before taking over. */
void ks_note_upgrade_failed(struct keepstate *ks);
uint64_t ks_upgrades_failed(struct keepstate *ks);
uint64_t ks_restarts(struct keepstate *ks);
/* Copies the last restart reason ("" when none) into out. */
void ks_last_reason(struct keepstate *ks, char *out, size_t outsz);
/* The generation of the daemon serving now (set by that daemon). */
void ks_set_generation(struct keepstate *ks, uint64_t gen);
uint64_t ks_generation(struct keepstate *ks);

/* ---- the FUSE INIT request ---- */
/* Saves the raw request once; later calls do nothing. */
void ks_save_init(struct keepstate *ks, const void *req, size_t len);
/* Copies the saved request; returns its length, 0 when none. */
size_t ks_init(struct keepstate *ks, void *out, size_t outsz);

/* ---- nodes the kernel knows ---- */
struct ks_node {
	uint64_t id, parent, nlookup, end;
	bool end_known;
	bool unlinked;            /* the name no longer leads to it */
	bool hidden;              /* unlinked while open: `name` is hidden */
	struct ident ident;       /* what the "same file?" rule compares */
	uint32_t twins;           /* link group: one file (nodes.h), 0 none */
	char name[KS_NAME_MAX + 1];
};
/* Records a node; returns its slot, or -1 when the table is full. */
int32_t ks_node_put(struct keepstate *ks, uint64_t id, uint64_t parent,
		    const char *name, uint64_t nlookup);
void ks_node_nlookup(struct keepstate *ks, int32_t slot, uint64_t nlookup);
void ks_node_end(struct keepstate *ks, int32_t slot, bool known, uint64_t end);
void ks_node_unlinked(struct keepstate *ks, int32_t slot);
void ks_node_hidden(struct keepstate *ks, int32_t slot, bool hidden);
void ks_node_ident(struct keepstate *ks, int32_t slot, const struct ident *id);
void ks_node_twins(struct keepstate *ks, int32_t slot, uint32_t twins);
/* A new name: returns the new slot (the old one is freed; the other
 * fields move along), or `slot` unchanged and its record marked unlinked
 * when the table is full. */
int32_t ks_node_move(struct keepstate *ks, int32_t slot, uint64_t parent,
		     const char *name);
void ks_node_drop(struct keepstate *ks, int32_t slot);
/* The id counter: no id below it is handed out again. */
void ks_set_next_id(struct keepstate *ks, uint64_t next);
uint64_t ks_next_id(struct keepstate *ks);
/* Calls fn for each live record (duplicates resolved), once, at restore;
 * also rebuilds the free lists. */
void ks_nodes_each(struct keepstate *ks,
		   void (*fn)(void *arg, const struct ks_node *n, int32_t slot),
		   void *arg);

/* ---- moves of hidden files sent and not yet recorded ----
 * A RENAME that gives a file a hidden name (or moves a hidden file out of
 * a folder) is recorded here before it is sent and dropped once the node
 * has the new name or the move failed: a daemon that dies in between
 * leaves its successor the file's possible new place, which it settles by
 * looking at the server (hidden.c). */
struct ks_pending {
	uint64_t id, from, parent;  /* node id; from folder `from` to parent */
	char name[KS_NAME_MAX + 1];
};
/* Records a move; returns its slot, -1 when all are taken (the move then
 * goes unrecorded, as before version 3). */
int32_t ks_pending_put(struct keepstate *ks, uint64_t id, uint64_t from,
		       uint64_t parent, const char *name);
void ks_pending_drop(struct keepstate *ks, int32_t slot);
/* Calls fn for each recorded move, at restore; fn owns the slot (drops
 * it once settled). */
void ks_pending_each(struct keepstate *ks,
		     void (*fn)(void *arg, const struct ks_pending *p, int32_t slot),
		     void *arg);

/* ---- open file handles ----
 * A handle records its node id, never a path: the path is the node's
 * (renames of the file or of a folder above it move it along). */
struct ks_fh {
	uint64_t ino;
	int flags;
	bool released;            /* the kernel closed it; data was draining */
	uint64_t unacked;         /* bytes not acknowledged by the server */
	uint64_t lo, hi;          /* their range */
	int err;                  /* an error not yet returned to the caller */
};
int32_t ks_fh_put(struct keepstate *ks, uint64_t ino, int flags);
void ks_fh_unacked(struct keepstate *ks, int32_t slot, uint64_t bytes,
		   uint64_t lo, uint64_t hi);
void ks_fh_released(struct keepstate *ks, int32_t slot);
/* The handle's pending error (0: none), kept until the caller got it. */
void ks_fh_error(struct keepstate *ks, int32_t slot, int err);
void ks_fh_drop(struct keepstate *ks, int32_t slot);
int32_t ks_fh_capacity(struct keepstate *ks);
void ks_fhs_each(struct keepstate *ks,
		 void (*fn)(void *arg, const struct ks_fh *f, int32_t slot),
		 void *arg);

/* ---- requests read and not yet answered ---- */
void ks_inflight_add(struct keepstate *ks, uint64_t unique);
/* True when the id was recorded. */
bool ks_inflight_del(struct keepstate *ks, uint64_t unique);
/* The offset an append request was given, recorded before its data is
 * sent: a resend of that request must land at the same place. */
void ks_inflight_offset(struct keepstate *ks, uint64_t unique, uint64_t off);
/* Moves up to max recorded ids into out (and, when offs is not NULL,
 * their append offsets + 1, 0 for none) and clears them; returns the
 * count. */
size_t ks_inflight_take(struct keepstate *ks, uint64_t *out, uint64_t *offs,
			size_t max);

/* ---- the events ring of .control/events ---- */
#ifndef KS_EVENTS
#define KS_EVENTS 1000            /* smaller in the restore fuzzer's build */
#endif
/* Records event `seq` (its JSON line; longer than 4 KiB: not kept). */
void ks_event_put(struct keepstate *ks, uint64_t seq, const char *line);
/* Forgets event `seq` if it is still recorded. */
void ks_event_drop(struct keepstate *ks, uint64_t seq);
/* Calls fn for each recorded event, oldest first. */
void ks_events_each(struct keepstate *ks,
		    void (*fn)(void *arg, uint64_t seq, const char *line),
		    void *arg);

#endif
