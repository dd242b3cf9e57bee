/*
 * fh_int: the open-file machinery shared by the files of the file layer's
 * handle code (fh.c, fh_wait.c, fh_io.c, fh_write.c, fh_read.c,
 * fh_sweep.c, ops_file.c). Not
 * for use elsewhere: the rest of fs/ sees handles through vfs_int.h's
 * fh_* functions.
 *
 * Who does what:
 *   fh.c        the handle object: refcounts, the kernel's slot, sticky
 *               errors, the remote handle, a call's encoding and end,
 *               the restore of a previous daemon's handles
 *   fh_chunk.c  a write-behind chunk and the window arithmetic
 *   fh_wait.c   the waits for the writes queued before a call
 *   fh_io.c     the handle's traffic: calls bound to the remote handle,
 *               reopen, chunks sent and acknowledged, window room given
 *               to waiting writers, direct reads, CLOSE after release
 *   fh_write.c  write(): chunks made, window admission
 *   fh_read.c   read() and the read-ahead glue (readahead.c plans)
 *   fh_sweep.c  the sweeper's pass over the handles, drain and free at exit
 *   ops_file.c  open, create, flush, fsync, release
 * Each file calls only those listed above it.
 * Lock order: vfs->lock, then a handle's lock; none is held while an op's
 * step runs.
 *
 * The design (from the file before it was split):
 * ops_file: open files. A struct fh is one open(2) of a file: its node,
 * flags, the remote handle on one session (reopened on another session,
 * without O_CREAT|O_EXCL|O_TRUNC, after that session dies), and its
 * write-behind queue.
 *
 * Identity: a handle has no path of its own. Its path is its node's, from
 * the node table, so it follows renames of the file and of every folder
 * above it (and the hidden name of an unlinked open file, hidden.c). A
 * reopen checks with the "same file?" rule (identity.h) that the path
 * still names the file the handle had; when it does not, or the node has
 * no name any more, the handle is lost: nothing of it is written, every
 * call on it fails with EIO, and a data event names the unreplayed range.
 *
 * Write-behind: write() copies the data into chunks of at most the
 * server's max_write, sends them positionally (appends at the end offset
 * the node table keeps, never through the server's append mode) and
 * replies at once when all of it fits in the handle's window; otherwise
 * the write waits, its data aside and queued nowhere, until all of it
 * fits (bounded by op_timeout: a write that fails queued nothing, and an
 * append gives its end offset back).
 * Chunks stay queued until the server acknowledges them and are resent
 * after a reconnect, oldest first, so overlapping writes of a handle land
 * in write() order. Calls that must see what write() accepted through any
 * handle of the file (a read, a truncate, a utimens, an overlapping write
 * through another handle) wait for the chunks queued before them
 * (fh_wait_writes: each chunk has a sequence number from vfs->wseq).
 * flush/fsync wait for the queue to drain; a server
 * refusal becomes a sticky error returned by the next write, flush or
 * fsync. A handle released with data still unacknowledged lives on until
 * it drains or op_timeout passes; what is then dropped is logged with its
 * byte range.
 *
 * Lifetime: every op, chunk and reopen that points at an fh holds a
 * reference; the fh is freed at zero, after release.
 *
 * The kernel's handle (fi->fh) is a slot number + 1 in the take-over
 * state, where the handle's node, flags and unacknowledged range are
 * recorded: a daemon started after a crash finds the same handles there
 * and reopens them on first use (fh_restore_all).
 */
#ifndef STEADYFS_FH_INT_H
#define STEADYFS_FH_INT_H

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "moving.h"
#include "readahead.h"
#include "takeover.h"
#include "vfs_int.h"

/* Hard links of one file (nodes_twins) a quiet check looks at. */
#define QUIET_TWINS_MAX 16u

struct wchunk {
	struct sreq rq;            /* first: the done callback casts back */
	struct fh *fh;
	uint64_t off;
	size_t len;
	char *data;
	bool inflight;             /* sent on the handle's current session */
	uint64_t queued_at;
	uint64_t seq;              /* from vfs->wseq: queued after every lower */
	struct wchunk *next;       /* fh->chunks */
	struct wchunk *snext;      /* a local to-send list */
};

struct fh {
	struct vfs *v;
	struct fh *next;           /* vfs->fhs, under vfs->lock */
	/* set before the handle is on vfs->fhs, never changed; its path
	 * is its node's (see top) */
	uint64_t ino;
	pthread_mutex_t lock;      /* protects everything below */
	int refs;
	int flags;
	uint8_t h[SFTP_MAX_HANDLE];
	size_t hlen;
	int conn_idx;
	uint64_t gen;
	bool open;                 /* h is valid on (conn_idx, gen) */
	bool reopening;
	unsigned move_waits;       /* this reopen waited so often (moving.h) */
	struct op *waiters;        /* ops waiting for the handle */
	struct wchunk *chunks;     /* unacknowledged writes, oldest first */
	struct wchunk *chunks_tail;
	unsigned nchunks;
	uint64_t ulo, uhi;         /* range the chunks cover (ulo > uhi: none) */
	unsigned max_chunks;       /* 0: FH_START_CHUNKS (see fh_chunk_adapt) */
	uint64_t cap_cut_at;       /* when max_chunks was last halved */
	size_t unacked;
	/* Acknowledged since the last fsync@ that succeeded (slo >= shi:
	 * none): what a failed CLOSE leaves unconfirmed. acks counts every
	 * acknowledged chunk, so an fsync clears only what it covered. */
	uint64_t slo, shi;
	uint64_t acks;
	int err;                   /* sticky write error */
	struct op *drainers;       /* ops waiting for chunks == NULL */
	struct op *barriers;       /* ops waiting for some of the chunks
				    * (fh_when_ino_drained, reads, writes) */
	struct op *writers;        /* writes waiting for window room */
	bool released;
	uint64_t flushed_ns;       /* its last flush (a close(2)), 0: none */
	bool closing;              /* its CLOSE was sent */
	bool broken;               /* data lost in a daemon death: EIO for good */
	bool lost;                 /* its file cannot be reached: never reopened */
	uint64_t drop_at;
	int32_t slot;              /* take-over record; -1 when none */
	struct ra ra;              /* sequential read-ahead */
};

static inline struct vfs *vfs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* Whether ino is one of the n ids. */
static inline bool among(uint64_t ino, const uint64_t *ids, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (ids[i] == ino)
			return true;
	return false;
}

static inline bool writable(int flags)
{
	return (flags & O_ACCMODE) != O_RDONLY;
}

/* Per-op encoders for handle-bound requests (op->stage says which). */
enum { FH_READ = 1, FH_FSYNC, FH_FSTAT, FH_CLOSE };

/* The nodes that name one file (its link group, up to QUIET_TWINS_MAX):
 * its writes, through whichever name, are ordered with each other. */
struct file_nodes {
	uint64_t ids[QUIET_TWINS_MAX];
	size_t n;
};

/* How a write chose its offset (op->stage of a waiting write). */
enum { W_AT, W_APPEND, W_APPEND_RESENT };

/* ---- fh.c -------------------------------------------------------------- */

/* Takes a reference on fh (an op, a chunk or a reopen that
 * points at it holds one). */
void fh_get(struct fh *fh);

/* Drops a reference; the last one unlinks fh from vfs->fhs, frees
 * its take-over record and read-ahead, removes its node's hidden
 * file when no handle is left, and unpins the node. Takes
 * vfs->lock, then fh->lock: call with neither held. */
void fh_put(struct fh *fh);

/* A new handle on node ino (pinned) with open flags `flags`, one
 * reference (the kernel's, dropped at release), on vfs->fhs; not
 * open on the server yet, no take-over slot (fh_register). NULL
 * when out of memory. */
struct fh *fh_new(struct vfs *v, uint64_t ino, int flags);

/* The handle's remote path now (malloc'd), NULL when its node has none. */
char *fh_path(const struct fh *fh);

/* For messages: the path, or a stand-in. Free with free(). */
char *fh_name(const struct fh *fh);

/* A handle's view of its file from the server (open, reopen), asked
 * when the file's mark was `mark` (nodes_ident_mark). */
void fh_seen(struct fh *fh, const struct sftp_attrs *a, uint32_t mark);

/* Records the handle for a later daemon; returns the kernel's fi->fh,
 * 0 when the table is full. */
uint64_t fh_register(struct fh *fh);

/* The handle behind fi->fh, NULL when unknown. */
struct fh *fh_of(struct vfs *v, const struct fuse_file_info *fi);
/*
 * The start every call on an open file shares (read, write, flush,
 * fsync): a .control/ file answers `ctl_errnum` (0: success; a read of
 * one is served by ctl_read before), a handle the kernel does not hold
 * EBADF, and, with `nonblock`, an O_NONBLOCK descriptor while no session
 * is up EAGAIN. Returns the handle (no reference taken), or NULL when
 * the call was answered.
 */
struct fh *fh_call_start(fuse_req_t req, fuse_ino_t ino,
			 const struct fuse_file_info *fi, int ctl_errnum,
			 bool nonblock);
/* op_new for a call on fh, with the handle's path for its logs. NULL when
 * out of memory (the call then answered). */
struct op *fh_op_new(fuse_req_t req, struct fh *fh, const char *name);

/* The sticky error, kept in the take-over record too: a daemon that dies
 * before the caller got it must not take it along. fh->lock held. */
void fh_set_err_locked(struct fh *fh, int err);

/* The error the next write, flush or fsync returns: EIO for
 * good once the handle is broken or lost, else the sticky
 * error, which is then cleared (in the take-over record
 * too). fh->lock held. */
int fh_take_err_locked(struct fh *fh);

/* Recomputes fh->ulo/uhi (a chunk at an edge of the range
 * left). fh->lock held. */
void fh_unacked_range_locked(struct fh *fh);

/* The unacknowledged range, as a later daemon must report
 * it if this one dies: written to the take-over record.
 * fh->lock held. */
void fh_record_unacked_locked(struct fh *fh);

/* SFTP open flags for open(2) flags; O_CREAT, O_EXCL and O_TRUNC
 * only when `creating` (a reopen never passes them), O_APPEND
 * never (appends are positional). */
uint32_t fh_pflags_of(int flags, bool creating);

/* A new handle is open: the remote handle from the OPEN reply
 * r, on the session that served rq. For a handle no other
 * thread sees yet (open, create): takes no lock. */
void fh_set_handle(struct fh *fh, const struct sftp_reply *r,
		   const struct sreq *rq);

/* Closes a remote handle nobody will use (best effort). */
void fh_close_foreign(struct op *rop, const uint8_t *h, size_t hlen);

/* Whether the node's name changed since the reopen was sent under
 * rop->path (a rename, or the hiding of an unlink, that landed first). */
bool fh_reopen_moved(const struct op *rop);

/* The handle's session is gone (generation `gen`): mark it closed. */
void fh_lost(struct fh *fh, uint64_t gen, int idx);

/* Encodes op's handle-bound request (op->stage: FH_READ,
 * FH_FSYNC, FH_FSTAT, FH_CLOSE) into op->rq.pkt with fh's remote
 * handle; a buf error code when it cannot. fh->lock held. */
int fh_encode(struct op *op, struct fh *fh);

/* Finishes an fh op: reply already sent (or none), drop the ref. */
void fh_op_end(struct op *op);

/* Answers op's FUSE call (if any) with error e, logged when it
 * is an EIO or EAGAIN, and ends it (fh_op_end). */
void fh_op_fail(struct op *op, int e);

/* fh_take_err_locked with fh->lock taken. */
int fh_take_err(struct fh *fh);
/* Its data died with a daemon, or its file is not the one it had (or has
 * no name): every later write, fsync and close fails with EIO. */
bool fh_failed_for_good(struct fh *fh);

/* The step of a CLOSE: a failure is accounted by close_failed
 * (what it leaves unconfirmed is reported); ends op. */
void fh_close_done(struct op *op, const struct sftp_reply *r, int err);

/* ---- fh_chunk.c -------------------------------------------------------- */

/* Frees a chunk that is on no list and no session any more. */
void fh_chunk_free(struct wchunk *c);

/* sreq encoder of a chunk, on the session's thread: the WRITE
 * with the handle's remote handle for that session. */
int fh_chunk_encode(struct sreq *rq, const struct conn *conn, uint32_t id,
		 struct buf *out);

/* Lists are built newest first (chunk_prep_locked pushes): each goes
 * out oldest first, the order write() accepted them, so of two
 * overlapping chunks on one session the newer lands last. */
void fh_submit_chunks(struct wchunk *list);

/* In flight on the handle's current session. Lock held. */
bool fh_sent_now_locked(const struct fh *fh, const struct wchunk *c);

/*
 * Whether a write of `len` bytes in `n` chunks may be queued now: all of
 * it fits in the handle's window and chunk cap and, when the handle has
 * data in flight, in the total. A handle with nothing in flight always
 * may (nothing would wake it, and one FUSE write, at most 1 MiB, is
 * below the window). Lock held; vfs->unacked_bytes is a hint.
 */
bool fh_room_for_locked(struct fh *fh, size_t len, unsigned n);

/* Adapts fh->max_chunks to how long an acknowledged write took. */
void fh_chunk_adapt(struct fh *fh, const struct wchunk *c, uint64_t now);

/* The length of a chunk list. */
unsigned fh_chunk_count(const struct wchunk *c);

/* A write failed before any of it was queued: an append gives back the
 * end it reserved, so the caller's retry lands right after the last
 * write that succeeded. */
void fh_write_dropped(struct vfs *v, uint64_t ino, int kind, uint64_t at,
		   size_t size);

/* ---- fh_io.c ----------------------------------------------------------- */

/*
 * The handle can no longer reach its file (fh->lost set): every write it
 * still holds fails, reported once as a data event with the unreplayed
 * range, and ops parked on it fail with EIO. Lock not held.
 */
void fh_lose(struct fh *fh);

/* Sends op bound to the handle; the caller encoded nothing yet. */
void fh_dispatch(struct op *op);

/* Starts a handle-bound op of kind `kind` continuing in `step`. */
void fh_start(struct op *op, struct fh *fh, int kind, op_step_fn step);

/* Queues the waiting writes that fit now, oldest first (none overtakes
 * an older one). Lock held; returns them, to answer outside the lock. */
struct op *fh_admit_writers_locked(struct fh *fh, struct wchunk **tosend);

/* A write's data is queued: a positional one may move the end. */
void fh_write_queued(struct vfs *v, uint64_t ino, int kind, uint64_t at,
		  size_t size);

/* Answers each write of the list (their data is queued now:
 * fh_write_queued) and ends it. */
void fh_reply_writers(struct op *w);

/* A released handle's chunk still unacknowledged at drop_at: reported
 * lost (log line, data event) and dropped. */
void fh_drop_after_close(struct wchunk *c);

/* Puts a list from chunks_make at the end of the handle's queue, all of
 * it at once; the chunks to send go on *tosend. Lock held. */
void fh_chunks_queue_locked(struct fh *fh, struct wchunk *list,
			 struct wchunk **tosend);

/* Closes the remote handle (best effort) once nothing is queued. */
void fh_close_drained(struct op *op, const struct sftp_attrs *a, int err);

/* Reads op's range directly (no read-ahead); op holds an fh ref. */
void fh_read_direct(struct op *op);

/* Completes reads served by read-ahead, or sends them directly. */
void fh_finish_ra_waiters(struct op *w);

/* ---- fh_wait.c --------------------------------------------------------- */

/* Continues each op of the list in op->then(op, NULL, 0).
 * Call with no lock held. */
void fh_run_drainers(struct op *d);

/* The nodes of the file of ino (its link group), at least ino
 * itself. */
void fh_file_nodes_of(struct vfs *v, uint64_t ino, struct file_nodes *fn);

/* Whether ino is one of the file's nodes. */
bool fh_file_nodes_has(const struct file_nodes *fn, uint64_t ino);

/* Whether a handle of the file of `ino` but `skip` has an
 * unacknowledged write overlapping [lo, hi). */
bool fh_ino_writes_overlap(struct vfs *v, uint64_t ino,
			const struct fh *skip, uint64_t lo, uint64_t hi);

/* The end of the furthest write queued up to `seq` still queued on a
 * handle of the file of `ino`, 0 when none is. */
uint64_t fh_ino_queued_end(struct vfs *v, uint64_t ino, uint64_t seq);

/* Takes off fh->barriers the ops fh no longer holds back. Lock held;
 * returns them, to go on (op->then) outside the lock. */
struct op *fh_settled_locked(struct fh *fh);

/* Runs then(op, NULL, 0) once every write queued before now on a handle
 * of op->ino but `skip` that overlaps [lo, hi) is acknowledged. */
void fh_wait_writes(struct op *op, uint64_t lo, uint64_t hi,
		 const struct fh *skip,
		 void (*then)(struct op *, const struct sftp_attrs *, int));

/* Runs op->then once the handle's queue is empty (at once if it is). */
void fh_when_drained(struct op *op, struct fh *fh,
		  void (*then)(struct op *, const struct sftp_attrs *, int));

/* ---- fh_write.c -------------------------------------------------------- */

/* A waiting write's deadline passed: none of it was queued or sent. */
void fh_write_expired(struct op *op);

#endif
