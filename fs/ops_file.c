/*
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
 * (wait_writes: each chunk has a sequence number from vfs->wseq).
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

/* Four times the bandwidth-delay product of a 100 MB/s link at 20 ms:
 * more only costs memory (peak RSS is a target, docs/performance.md). */
#define FH_WINDOW (4u * 1024 * 1024)
/* All handles together: past it a writer with data in flight waits. */
#define TOTAL_WINDOW (32u * 1024 * 1024)
/*
 * Writes in flight per handle, whatever their size, adapt to the server's
 * queue: from FH_START_CHUNKS the cap grows by one with each write that
 * comes back within a round trip plus QUEUE_SLACK_NS of the session's
 * shortest (no queue), and halves, once per round trip, when one comes
 * back later than that by more than a round trip (the server is behind).
 * OpenSSH's sftp-server reads its input faster than it handles it; a
 * backlog of a few hundred small writes made it handle them at a few
 * hundred a second on the bench VM (docs/performance.md), where keeping
 * its queue short keeps it at thousands.
 */
#define FH_START_CHUNKS 128u
#define FH_MIN_CHUNKS 32u
#define FH_MAX_CHUNKS 1024u
#define QUEUE_SLACK_NS (2u * 1000 * 1000)
/* Hard links of one file (nodes_twins) a quiet check looks at. */
#define QUIET_TWINS_MAX 16u
/* Hidden files a new daemon removes at once (more wait for their node's
 * next handle to go). */
#define RELEASE_HIDDEN_MAX 64u
/* How long after a flush the release of the same close(2) may still be
 * on its way (the kernel sends it without waiting; it is there within
 * microseconds unless the daemon is very busy). Only a setattr of the
 * folder of an unlinked file waits for it (hidden_when_removed), never
 * longer than this when the descriptor stays open (a dup). */
#define RELEASE_GRACE_NS (200 * NS_PER_MS)
/* Times one reopen waits for name changes in flight (moving.h) before
 * "no such file" is its answer. */
#define REOPEN_WAITS_MAX 8u

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
	unsigned max_chunks;       /* 0: FH_START_CHUNKS (see chunk_adapt) */
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

static struct vfs *vfs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static void fh_get(struct fh *fh)
{
	pthread_mutex_lock(&fh->lock);
	fh->refs++;
	pthread_mutex_unlock(&fh->lock);
}

static void fh_put(struct fh *fh)
{
	struct vfs *v = fh->v;
	struct fh **pp;
	uint64_t ino;
	bool last;

	/* The last reference is dropped under vfs->lock too, so the sweeper
	 * (which takes references while holding it) never revives a handle
	 * on its way to free(). Lock order: vfs->lock, then fh->lock. */
	pthread_mutex_lock(&v->lock);
	pthread_mutex_lock(&fh->lock);
	last = --fh->refs == 0;
	pthread_mutex_unlock(&fh->lock);
	if (last) {
		/* Before it leaves the list: a folder's setattr must not find
		 * neither the handle nor its hidden file's removal. */
		__atomic_add_fetch(&v->last_puts, 1, __ATOMIC_ACQ_REL);
		for (pp = &v->fhs; *pp && *pp != fh; pp = &(*pp)->next)
			;
		if (*pp)
			*pp = fh->next;
	}
	pthread_mutex_unlock(&v->lock);
	if (!last)
		return;
	ino = fh->ino;
	if (fh->slot >= 0 && v->ks)
		ks_fh_drop(v->ks, fh->slot);
	ra_release(&fh->ra);
	pthread_mutex_destroy(&fh->lock);
	free(fh);
	if (!fh_node_open(v, ino))
		hidden_release(v, ino);
	nodes_unpin(v->nodes, ino);
	hidden_put_done(v);
}

static struct fh *fh_new(struct vfs *v, uint64_t ino, int flags)
{
	struct fh *fh = calloc(1, sizeof(*fh));

	if (!fh)
		return NULL;
	fh->v = v;
	fh->ino = ino;
	nodes_pin(v->nodes, ino);
	fh->flags = flags;
	fh->slot = -1;
	fh->slo = UINT64_MAX;
	fh->refs = 1;             /* the kernel's, dropped at release */
	pthread_mutex_init(&fh->lock, NULL);
	pthread_mutex_lock(&v->lock);
	fh->next = v->fhs;
	v->fhs = fh;
	pthread_mutex_unlock(&v->lock);
	return fh;
}

/* The handle's remote path now (malloc'd), NULL when its node has none. */
static char *fh_path(const struct fh *fh)
{
	return nodes_path(fh->v->nodes, fh->ino);
}

/* For messages: the path, or a stand-in. Free with free(). */
static char *fh_name(const struct fh *fh)
{
	char *p = fh_path(fh);

	return p ? p : strdup("(no name)");
}

/* Whether node ino has a handle for which is(fh, now) holds (fh->lock
 * held). */
static bool node_has_fh(struct vfs *v, uint64_t ino, uint64_t now,
			bool (*is)(const struct fh *, uint64_t))
{
	bool found = false;

	pthread_mutex_lock(&v->lock);
	for (struct fh *f = v->fhs; f && !found; f = f->next) {
		if (f->ino != ino)
			continue;
		pthread_mutex_lock(&f->lock);
		found = is(f, now);
		pthread_mutex_unlock(&f->lock);
	}
	pthread_mutex_unlock(&v->lock);
	return found;
}

static bool any_fh(const struct fh *fh, uint64_t now)
{
	return true;
}

static bool unreleased(const struct fh *fh, uint64_t now)
{
	return !fh->released;
}

/* Flushed a moment ago and not released (yet): the release the kernel
 * sends after the close(2) behind that flush may still be on its way. */
static bool just_flushed(const struct fh *fh, uint64_t now)
{
	return !fh->released && fh->flushed_ns &&
	       now - fh->flushed_ns < RELEASE_GRACE_NS;
}

bool fh_node_open(struct vfs *v, uint64_t ino)
{
	return node_has_fh(v, ino, 0, any_fh);
}

bool fh_node_held(struct vfs *v, uint64_t ino)
{
	return node_has_fh(v, ino, 0, unreleased);
}

bool fh_node_closing(struct vfs *v, uint64_t ino)
{
	return (fh_node_open(v, ino) && !fh_node_held(v, ino)) ||
	       node_has_fh(v, ino, clock_mono_ns(), just_flushed);
}

void fh_release_hidden(struct vfs *v)
{
	uint64_t ids[RELEASE_HIDDEN_MAX];
	size_t n = nodes_hidden_list(v->nodes, 0, ids, RELEASE_HIDDEN_MAX);

	for (size_t i = 0; i < n; i++)
		if (!fh_node_open(v, ids[i]))
			hidden_release(v, ids[i]);
}

/* Whether ino is one of the n ids. */
static bool among(uint64_t ino, const uint64_t *ids, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (ids[i] == ino)
			return true;
	return false;
}

/* No handle of node ino's file (its link group too) has unacknowledged
 * writes (lock order: v, fh). A group too large to list is never quiet:
 * the rule then only narrows its bounds. */
static bool node_quiet(struct vfs *v, uint64_t ino)
{
	uint64_t ids[QUIET_TWINS_MAX + 1];
	size_t n = nodes_twins(v->nodes, ino, ids, QUIET_TWINS_MAX + 1);
	bool busy = n > QUIET_TWINS_MAX;

	pthread_mutex_lock(&v->lock);
	for (struct fh *f = v->fhs; f && !busy; f = f->next) {
		if (f->ino != ino && !among(f->ino, ids, n))
			continue;
		pthread_mutex_lock(&f->lock);
		busy = f->chunks != NULL;
		pthread_mutex_unlock(&f->lock);
	}
	pthread_mutex_unlock(&v->lock);
	return !busy;
}

/* A handle's view of its file from the server (open, reopen), asked
 * when the file's mark was `mark` (nodes_ident_mark). */
static void fh_seen(struct fh *fh, const struct sftp_attrs *a, uint32_t mark)
{
	if (a->flags & SSH_FILEXFER_ATTR_SIZE)
		nodes_ident_seen(fh->v->nodes, fh->ino, a->size,
				 a->flags & SSH_FILEXFER_ATTR_ACMODTIME, a->mtime,
				 node_quiet(fh->v, fh->ino), mark);
}

/* nodes_append_reserve_noted's note: the request's facts travel with it. */
struct append_note {
	struct takeover *tk;
	struct tk_call call;
};

static void note_append(void *arg, uint64_t off)
{
	struct append_note *an = arg;

	takeover_note_append(an->tk, an->call, off);
}

/* Records the handle for a later daemon; returns the kernel's fi->fh,
 * 0 when the table is full. */
static uint64_t fh_register(struct fh *fh)
{
	struct vfs *v = fh->v;
	int32_t slot = v->ks ? ks_fh_put(v->ks, fh->ino, fh->flags) : -1;

	if (slot < 0) {
		char *p = fh_name(fh);

		log_warn("open '%s': %d files open already, the most a daemon restart can keep",
			 p ? p : "?", (int)v->fh_cap);
		free(p);
		return 0;
	}
	pthread_mutex_lock(&v->lock);
	v->fh_slots[slot] = fh;
	pthread_mutex_unlock(&v->lock);
	fh->slot = slot;
	return (uint64_t)slot + 1;
}

/* The handle behind fi->fh, NULL when unknown. */
static struct fh *fh_of(struct vfs *v, const struct fuse_file_info *fi)
{
	struct fh *fh = NULL;

	pthread_mutex_lock(&v->lock);
	if (fi->fh >= 1 && fi->fh <= (uint64_t)v->fh_cap)
		fh = v->fh_slots[fi->fh - 1];
	pthread_mutex_unlock(&v->lock);
	return fh;
}

/* The sticky error, kept in the take-over record too: a daemon that dies
 * before the caller got it must not take it along. fh->lock held. */
static void set_err_locked(struct fh *fh, int err)
{
	if (fh->err)
		return;
	fh->err = err;
	if (fh->slot >= 0 && fh->v->ks)
		ks_fh_error(fh->v->ks, fh->slot, err);
}

static int take_err_locked(struct fh *fh)
{
	int e = fh->err;

	/* Not cleared once returned: a failed WRITE in the middle of a
	 * write(2) that the kernel splits becomes a short count, and the
	 * caller's retry must see the error, not write past a hole. */
	if (fh->broken || fh->lost)
		return EIO;

	fh->err = 0;
	if (e && fh->slot >= 0 && fh->v->ks)
		ks_fh_error(fh->v->ks, fh->slot, 0);
	return e;
}

/* The unacknowledged range, as a later daemon must report it if this one
 * dies. fh->lock held. */
/* Recomputes fh->ulo/uhi (a chunk at an edge of the range left). */
static void unacked_range_locked(struct fh *fh)
{
	fh->ulo = UINT64_MAX;
	fh->uhi = 0;
	for (struct wchunk *c = fh->chunks; c; c = c->next) {
		if (c->off < fh->ulo)
			fh->ulo = c->off;
		if (c->off + c->len > fh->uhi)
			fh->uhi = c->off + c->len;
	}
}

static void record_unacked_locked(struct fh *fh)
{
	if (fh->slot < 0 || !fh->v->ks)
		return;
	ks_fh_unacked(fh->v->ks, fh->slot, fh->unacked,
		      fh->chunks ? fh->ulo : UINT64_MAX, fh->chunks ? fh->uhi : 0);
}

static uint32_t pflags_of(int flags, bool creating)
{
	uint32_t p = 0;
	int acc = flags & O_ACCMODE;

	if (acc == O_RDONLY || acc == O_RDWR)
		p |= SSH_FXF_READ;
	if (acc == O_WRONLY || acc == O_RDWR)
		p |= SSH_FXF_WRITE;
	/* O_APPEND is never passed on: appends are positional (see top). */
	if (creating) {
		if (flags & O_CREAT)
			p |= SSH_FXF_CREAT;
		if (flags & O_EXCL)
			p |= SSH_FXF_EXCL;
		if (flags & O_TRUNC)
			p |= SSH_FXF_TRUNC;
	}
	return p;
}

static bool writable(int flags)
{
	return (flags & O_ACCMODE) != O_RDONLY;
}

/* ---- sending on the handle, reopening it -------------------------------- */


/* Encodes and sends op (kind in op->stage) on the handle's session, or
 * parks it until the handle is reopened. Lock held by caller. */
typedef int (*fh_enc_fn)(struct op *op, struct fh *fh);

static void chunk_prep_locked(struct wchunk *c, struct wchunk **tosend);
static void chunks_send_locked(struct fh *fh, struct wchunk **tosend);
static void close_if_released(struct fh *fh);
static void chunk_retire(struct wchunk *c, int err);
static void reopen_locked(struct fh *fh);
static void finish_ra_waiters(struct op *w);
static void submit_chunks(struct wchunk *list);

static void fh_set_handle(struct fh *fh, const struct sftp_reply *r,
			  const struct sreq *rq)
{
	memcpy(fh->h, r->u.handle.h, r->u.handle.len);
	fh->hlen = r->u.handle.len;
	fh->conn_idx = rq->served_by;
	fh->gen = rq->served_gen;
	fh->open = true;
}

/* Sends op bound to the handle; the caller encoded nothing yet. */
static void fh_dispatch(struct op *op);

/* Ends the ops parked on a reopen: sent now, or failed through their own
 * step (which drops what each holds). */
static void run_waiters(struct op *waiters, bool fail)
{
	while (waiters) {
		struct op *next = waiters->next;

		waiters->next = NULL;
		if (fail)
			waiters->step(waiters, NULL, -EIO);
		else
			fh_dispatch(waiters);
		waiters = next;
	}
}

/*
 * The handle can no longer reach its file (fh->lost set): every write it
 * still holds fails, reported once as a data event with the unreplayed
 * range, and ops parked on it fail with EIO. Lock not held.
 */
static void fh_lose(struct fh *fh)
{
	struct wchunk *drop = NULL, **pp;
	struct op *waiters;
	uint64_t lo = UINT64_MAX, hi = 0;
	char *p;

	pthread_mutex_lock(&fh->lock);
	waiters = fh->waiters;
	fh->waiters = NULL;
	for (pp = &fh->chunks; *pp; pp = &(*pp)->next) {
		struct wchunk *c = *pp;

		if (c->inflight)
			continue;
		lo = c->off < lo ? c->off : lo;
		hi = c->off + c->len > hi ? c->off + c->len : hi;
		c->snext = drop;
		drop = c;
	}
	if (drop)
		set_err_locked(fh, EIO);
	pthread_mutex_unlock(&fh->lock);
	if (drop) {
		p = fh_name(fh);
		log_err("data lost: '%s' bytes %llu-%llu not written: the handle lost its file",
			p ? p : "?", (unsigned long long)lo, (unsigned long long)hi);
		control_event_data(fh->v->ctl, p ? p : "", lo, hi - lo, false, true);
		free(p);
	}
	while (drop) {
		struct wchunk *next = drop->snext;

		drop->snext = NULL;
		chunk_retire(drop, 0);  /* the sticky EIO is set above */
		drop = next;
	}
	run_waiters(waiters, true);
}

/* The reopen is over: with the remote handle (h, hlen) on the session
 * that served rop, or failed with `fail`. */
static void reopen_finish(struct op *rop, const uint8_t *h, size_t hlen, int fail)
{
	struct fh *fh = rop->fh;
	struct op *waiters;
	struct wchunk *tosend = NULL;
	uint64_t replay_off = 0, replay_len = 0;
	char *p = fh_name(fh);

	pthread_mutex_lock(&fh->lock);
	fh->reopening = false;
	fh->move_waits = 0;
	if (!fail) {
		memcpy(fh->h, h, hlen);
		fh->hlen = hlen;
		fh->conn_idx = rop->rq.served_by;
		fh->gen = rop->rq.served_gen;
		fh->open = true;
		chunks_send_locked(fh, &tosend);
		for (struct wchunk *c = tosend; c; c = c->snext) {
			replay_off = c->off;  /* the list is newest first */
			replay_len += c->len;
		}
	}
	waiters = fh->waiters;
	fh->waiters = NULL;
	pthread_mutex_unlock(&fh->lock);
	submit_chunks(tosend);
	if (fail) {
		uint64_t off = 0, len = 0;

		log_warn("reopen '%s' failed: %s", p ? p : "?", strerror(fail));
		pthread_mutex_lock(&fh->lock);
		if (fh->chunks)
			set_err_locked(fh, fail);
		for (struct wchunk *c = fh->chunks; c; c = c->next) {
			if (!len)
				off = c->off;
			len += c->len;
		}
		pthread_mutex_unlock(&fh->lock);
		/* The operator's list: this data could not be replayed (yet). */
		if (len)
			control_event_data(fh->v->ctl, p ? p : "", off, len, false, false);
	} else {
		log_info("reopened '%s' on session %d", p ? p : "?", fh->conn_idx);
		if (replay_len) {
			/* The operator's list of files to verify after an outage. */
			log_info("replaying '%s' unacknowledged writes from offset %llu, %llu bytes",
				 p ? p : "?", (unsigned long long)replay_off,
				 (unsigned long long)replay_len);
			control_event_data(fh->v->ctl, p ? p : "", replay_off,
					   replay_len, true, false);
		}
	}
	free(p);
	run_waiters(waiters, fail != 0);
	if (!fail)
		close_if_released(fh);
	rop->fh = NULL;
	op_free(rop);
	fh_put(fh);
}

static void reopen_closed(struct op *cop, const struct sftp_reply *r, int err)
{
	op_free(cop);
}

/* Closes a remote handle nobody will use (best effort). */
static void close_foreign(struct op *rop, const uint8_t *h, size_t hlen)
{
	struct op *cop = op_new(rop->v, NULL, "close");

	if (!cop)
		return;
	if (sftp_enc_close(&cop->rq.pkt, 0, h, hlen) < 0) {
		op_free(cop);
		return;
	}
	op_send_on(cop, reopen_closed, rop->rq.served_by, rop->rq.served_gen);
}

/* This reopen is over without a handle; another starts, under the path
 * the node has now. */
static void reopen_again(struct op *rop)
{
	struct fh *fh = rop->fh;

	pthread_mutex_lock(&fh->lock);
	fh->reopening = false;
	reopen_locked(fh);
	pthread_mutex_unlock(&fh->lock);
	rop->fh = NULL;
	op_free(rop);
	fh_put(fh);
}

/* Whether the node's name changed since the reopen was sent under
 * rop->path (a rename, or the hiding of an unlink, that landed first). */
static bool reopen_moved(const struct op *rop)
{
	char *now = fh_path(rop->fh);
	bool moved = now && strcmp(now, rop->path) != 0;

	free(now);
	return moved;
}

/* Parks the reopen until the name changes in flight on its path are
 * over (moving.h), at most REOPEN_WAITS_MAX times; false when none is. */
static bool reopen_waits(struct op *rop)
{
	struct fh *fh = rop->fh;
	bool room;

	pthread_mutex_lock(&fh->lock);
	room = fh->move_waits < REOPEN_WAITS_MAX;
	fh->move_waits += room;
	pthread_mutex_unlock(&fh->lock);
	if (!room)
		return false;
	rop->resend = reopen_again;
	return moving_wait(rop->v, rop);
}

/*
 * The FSTAT of the reopened handle: the "same file?" rule decides whether
 * its queued writes may go there. The new handle waits in rop->data.
 */
static void reopen_checked(struct op *rop, const struct sftp_reply *r, int err)
{
	struct fh *fh = rop->fh;
	struct ident id = IDENT_INIT;
	const char *why;
	char *p;

	if (err) {
		/* That session died too: start over on another. */
		reopen_again(rop);
		return;
	}
	nodes_ident_get(fh->v->nodes, fh->ino, &id);
	/* The server may have answered before a write another session
	 * had acknowledged meanwhile landed (M11). */
	ident_since(&id, &rop->ident_then);
	why = r->type == SSH_FXP_ATTRS ? ident_check(&id, &r->u.attrs) :
		"the server did not say what it opened";
	if (!why) {
		fh_seen(fh, &r->u.attrs, rop->mark);
		reopen_finish(rop, (const uint8_t *)rop->data, rop->size, 0);
		return;
	}
	close_foreign(rop, (const uint8_t *)rop->data, rop->size);
	p = fh_name(fh);
	log_err("reopen '%s': not the file the handle had (%s; size %llu, written %llu-%llu): the handle fails from now on",
		p ? p : "?", why,
		r->type == SSH_FXP_ATTRS ? (unsigned long long)r->u.attrs.size : 0ull,
		(unsigned long long)id.lo, (unsigned long long)id.hi);
	free(p);
	pthread_mutex_lock(&fh->lock);
	fh->reopening = false;
	fh->lost = true;
	pthread_mutex_unlock(&fh->lock);
	rop->fh = NULL;
	op_free(rop);
	fh_lose(fh);
	fh_put(fh);
}

static void reopen_done(struct op *rop, const struct sftp_reply *r, int err)
{
	int fail = 0;

	if (err || r->type != SSH_FXP_HANDLE || r->u.handle.len > SFTP_MAX_HANDLE) {
		fail = err ? op_transport_errno(err) : reply_errno(r);
		/* The file was renamed (or hidden) after the OPEN left, on
		 * another session: the name it asked for is gone, the node's
		 * new one leads to the file. The rename's reply may not be in
		 * yet: then the reopen waits for it first (checked first: its
		 * mark goes only once the node has moved). */
		if (fail == ENOENT && reopen_waits(rop))
			return;
		if (fail == ENOENT && reopen_moved(rop)) {
			reopen_again(rop);
			return;
		}
		reopen_finish(rop, NULL, 0, fail);
		return;
	}
	/* Keep the handle aside until the rule says it is ours. */
	free(rop->data);
	if (!(rop->data = malloc(r->u.handle.len ? r->u.handle.len : 1))) {
		reopen_finish(rop, NULL, 0, ENOMEM);
		return;
	}
	memcpy(rop->data, r->u.handle.h, r->u.handle.len);
	rop->size = r->u.handle.len;
	buf_reset(&rop->rq.pkt);
	if (sftp_enc_handle(&rop->rq.pkt, SSH_FXP_FSTAT, 0, r->u.handle.h,
			    r->u.handle.len) < 0) {
		close_foreign(rop, r->u.handle.h, r->u.handle.len);
		reopen_finish(rop, NULL, 0, ENOMEM);
		return;
	}
	nodes_ident_get(rop->v->nodes, rop->fh->ino, &rop->ident_then);
	rop->mark = rop->ident_then.seq;  /* nodes_ident_mark, the same moment */
	op_send_on(rop, reopen_checked, rop->rq.served_by, rop->rq.served_gen);
}

/*
 * Opens the handle's file again on a live session, under the path its
 * node has now. A node without a name (unlinked, not hidden) cannot be
 * reached: the handle is lost (the sweeper fails what it holds).
 * Lock held by caller.
 */
static void reopen_locked(struct fh *fh)
{
	struct op *rop;
	char *path;

	if (fh->reopening || fh->lost)
		return;
	if (!(path = fh_path(fh))) {
		log_err("reopen of node %llu: its file has no name any more: the handle fails from now on",
			(unsigned long long)fh->ino);
		fh->lost = true;
		return;
	}
	if (!(rop = op_new(fh->v, NULL, "reopen"))) {
		free(path);
		return;
	}
	rop->path = path;
	rop->fh = fh;
	fh->refs++;
	/* No deadline: queued writes must go out whenever a session is up. */
	rop->rq.deadline = 0;
	if (sftp_enc_open(&rop->rq.pkt, 0, path, pflags_of(fh->flags, false),
			  &(struct sftp_attrs){ 0 }) < 0) {
		fh->refs--;
		op_free(rop);
		return;
	}
	fh->reopening = true;
	fh->open = false;
	op_send(rop, reopen_done, true);
}

/* The handle's session is gone (generation `gen`): mark it closed. */
static void fh_lost(struct fh *fh, uint64_t gen, int idx)
{
	pthread_mutex_lock(&fh->lock);
	if (fh->open && fh->conn_idx == idx && fh->gen == gen)
		fh->open = false;
	pthread_mutex_unlock(&fh->lock);
}

/* Per-op encoders for handle-bound requests (op->stage says which). */
enum { FH_READ = 1, FH_FSYNC, FH_FSTAT, FH_CLOSE };

static int fh_encode(struct op *op, struct fh *fh)
{
	buf_reset(&op->rq.pkt);
	switch (op->stage) {
	case FH_READ:
		return sftp_enc_read(&op->rq.pkt, 0, fh->h, fh->hlen,
				     op->off + op->got,
				     (uint32_t)op->flags);
	case FH_FSYNC:
		return sftp_enc_fsync(&op->rq.pkt, 0, fh->h, fh->hlen);
	case FH_FSTAT:
		return sftp_enc_handle(&op->rq.pkt, SSH_FXP_FSTAT, 0, fh->h, fh->hlen);
	case FH_CLOSE:
		return sftp_enc_close(&op->rq.pkt, 0, fh->h, fh->hlen);
	}
	return BUF_E_FORMAT;
}

/* Finishes an fh op: reply already sent (or none), drop the ref. */
static void fh_op_end(struct op *op)
{
	struct fh *fh = op->fh;

	op->fh = NULL;
	op_free(op);
	if (fh)
		fh_put(fh);
}

static void fh_dispatch(struct op *op)
{
	struct fh *fh = op->fh;

	pthread_mutex_lock(&fh->lock);
	if (!fh->open && op->stage == FH_CLOSE) {
		/* Closed with its session already (see fh_op_done). */
		pthread_mutex_unlock(&fh->lock);
		fh_op_end(op);
		return;
	}
	if (!fh->open && fh->lost) {
		pthread_mutex_unlock(&fh->lock);
		op->step(op, NULL, -EIO);
		return;
	}
	if (!fh->open) {
		op->next = fh->waiters;
		fh->waiters = op;
		reopen_locked(fh);
		pthread_mutex_unlock(&fh->lock);
		return;
	}
	if (fh_encode(op, fh) < 0) {
		pthread_mutex_unlock(&fh->lock);
		op_fail(op, ENOMEM);
		return;
	}
	op->rq.conn_idx = fh->conn_idx;
	op->rq.conn_gen = fh->gen;
	op->rq.done = op->rq.done;
	pthread_mutex_unlock(&fh->lock);
	pool_submit(fh->v->pool, &op->rq);
}

static void fh_op_done(struct sreq *rq, const struct sftp_reply *r, int err)
{
	struct op *op = (struct op *)rq;

	/* The handle's session died: reopen and go again, within deadline;
	 * except a CLOSE: the session took the handle along, and a reopen
	 * would close another one, confirming nothing. */
	if (err == -ESTALE) {
		fh_lost(op->fh, rq->conn_gen, rq->conn_idx);
		if (op->stage == FH_CLOSE) {
			fh_op_end(op);
			return;
		}
		if (!op->rq.deadline || clock_mono_ns() < op->rq.deadline) {
			fh_dispatch(op);
			return;
		}
		err = -ETIMEDOUT;
	}
	op->step(op, r, err);
}

/* Starts a handle-bound op of kind `kind` continuing in `step`. */
static void fh_start(struct op *op, struct fh *fh, int kind, op_step_fn step)
{
	op->fh = fh;
	fh_get(fh);
	op->stage = kind;
	op->step = step;
	op->rq.done = fh_op_done;
	op->rq.idempotent = false;
	fh_dispatch(op);
}

static void fh_op_fail(struct op *op, int e)
{
	op_note_error(op, e);
	if (op->req)
		fuse_reply_err(op->req, e);
	op->req = NULL;
	fh_op_end(op);
}

/* ---- write-behind ------------------------------------------------------- */

static void chunk_free(struct wchunk *c)
{
	buf_release(&c->rq.pkt);
	free(c->data);
	free(c);
}

static int chunk_encode(struct sreq *rq, const struct conn *conn, uint32_t id,
			struct buf *out)
{
	struct wchunk *c = (struct wchunk *)rq;
	struct fh *fh = c->fh;
	int rc;

	/* Encoded on the conn thread: the handle bytes are stable while
	 * the chunk is bound to this session's generation. */
	pthread_mutex_lock(&fh->lock);
	rc = sftp_enc_write(out, id, fh->h, fh->hlen, c->off, c->data, c->len);
	pthread_mutex_unlock(&fh->lock);
	return rc;
}

static void chunk_done(struct sreq *rq, const struct sftp_reply *r, int err);

/*
 * Prepares c for sending on the handle's session and links it on *tosend,
 * or starts a reopen when the handle is closed. Lock held by the caller,
 * who submits the list with submit_chunks() after unlocking: a refused
 * submit calls chunk_done() at once, which takes the lock.
 */
static void chunk_prep_locked(struct wchunk *c, struct wchunk **tosend)
{
	struct fh *fh = c->fh;

	c->inflight = false;
	if (!fh->open) {
		reopen_locked(fh);
		return;
	}
	buf_release(&c->rq.pkt);
	memset(&c->rq, 0, sizeof(c->rq));
	c->rq.encode = chunk_encode;
	c->rq.done = chunk_done;
	c->rq.type = SSH_FXP_WRITE;
	c->rq.conn_idx = fh->conn_idx;
	c->rq.conn_gen = fh->gen;
	c->inflight = true;
	c->snext = *tosend;
	*tosend = c;
}

/* Lists are built newest first (chunk_prep_locked pushes): each goes
 * out oldest first, the order write() accepted them, so of two
 * overlapping chunks on one session the newer lands last. */
static void submit_chunks(struct wchunk *list)
{
	struct wchunk *fifo = NULL;

	while (list) {
		struct wchunk *next = list->snext;

		list->snext = fifo;
		fifo = list;
		list = next;
	}
	while (fifo) {
		struct wchunk *next = fifo->snext;

		fifo->snext = NULL;
		pool_submit(fifo->fh->v->pool, &fifo->rq);
		fifo = next;
	}
}

/* In flight on the handle's current session. Lock held. */
static bool sent_now_locked(const struct fh *fh, const struct wchunk *c)
{
	return c->inflight && fh->open && c->rq.conn_idx == fh->conn_idx &&
	       c->rq.conn_gen == fh->gen;
}

/*
 * Sends, oldest first, the queued chunks not in flight on the handle's
 * current session; none while an older one is still out on a session
 * that died: it comes back (ESTALE) and must go again before them, or a
 * newer overlapping write would be overwritten by an older one. Starts
 * a reopen when the handle is closed. Lock held; see chunk_prep_locked.
 */
static void chunks_send_locked(struct fh *fh, struct wchunk **tosend)
{
	for (struct wchunk *c = fh->chunks; c; c = c->next) {
		if (sent_now_locked(fh, c))
			continue;
		if (c->inflight)
			return;
		chunk_prep_locked(c, tosend);
		if (!c->inflight)
			return;   /* closed: the reopen sends them */
	}
}

/*
 * Whether a write of `len` bytes in `n` chunks may be queued now: all of
 * it fits in the handle's window and chunk cap and, when the handle has
 * data in flight, in the total. A handle with nothing in flight always
 * may (nothing would wake it, and one FUSE write, at most 1 MiB, is
 * below the window). Lock held; vfs->unacked_bytes is a hint.
 */
static bool room_for_locked(struct fh *fh, size_t len, unsigned n)
{
	unsigned cap = fh->max_chunks ? fh->max_chunks : FH_START_CHUNKS;

	if (!fh->chunks)
		return true;
	return fh->unacked + len <= FH_WINDOW && fh->nchunks + n <= cap &&
	       __atomic_load_n(&fh->v->unacked_bytes, __ATOMIC_RELAXED) + len <=
	       TOTAL_WINDOW;
}

/* Adapts fh->max_chunks to how long an acknowledged write took. */
static void chunk_adapt(struct fh *fh, const struct wchunk *c, uint64_t now)
{
	struct pool *p = fh->v->pool;
	uint64_t rtt, base;
	unsigned cap;

	if (!c->rq.sent_at || now <= c->rq.sent_at || c->rq.served_by < 0 ||
	    c->rq.served_by >= pool_size(p) ||
	    !(base = conn_min_rtt_ns(pool_conn(p, c->rq.served_by))))
		return;
	rtt = now - c->rq.sent_at;
	pthread_mutex_lock(&fh->lock);
	cap = fh->max_chunks ? fh->max_chunks : FH_START_CHUNKS;
	if (rtt <= base + QUEUE_SLACK_NS) {
		if (cap < FH_MAX_CHUNKS)
			cap++;
	} else if (rtt > 2 * base + QUEUE_SLACK_NS && now - fh->cap_cut_at > rtt) {
		cap = cap / 2 > FH_MIN_CHUNKS ? cap / 2 : FH_MIN_CHUNKS;
		fh->cap_cut_at = now;
	}
	fh->max_chunks = cap;
	pthread_mutex_unlock(&fh->lock);
}

static unsigned chunk_count(const struct wchunk *c)
{
	unsigned n = 0;

	for (; c; c = c->next)
		n++;
	return n;
}

static void chunks_queue_locked(struct fh *fh, struct wchunk *list,
				struct wchunk **tosend);

/* Queues the waiting writes that fit now, oldest first (none overtakes
 * an older one). Lock held; returns them, to answer outside the lock. */
static struct op *admit_writers_locked(struct fh *fh, struct wchunk **tosend)
{
	struct op *done = NULL, **tail = &done;

	while (fh->writers &&
	       room_for_locked(fh, fh->writers->size,
			       chunk_count(fh->writers->wchunks))) {
		struct op *w = fh->writers;

		fh->writers = w->next;
		w->next = NULL;
		chunks_queue_locked(fh, w->wchunks, tosend);
		w->wchunks = NULL;
		*tail = w;
		tail = &w->next;
	}
	return done;
}

/* Wakes drainers and writers as the queue shrinks. Lock held; returns the
 * ops to complete outside the lock (writers' chunks to send on *tosend). */
static struct op *collect_waiters(struct fh *fh, struct op **writers,
				  struct wchunk **tosend)
{
	struct op *d = NULL;

	if (!fh->chunks) {
		d = fh->drainers;
		fh->drainers = NULL;
	}
	*writers = admit_writers_locked(fh, tosend);
	return d;
}

static void run_drainers(struct op *d)
{
	while (d) {
		struct op *next = d->next;

		d->next = NULL;
		d->then(d, NULL, 0);
		d = next;
	}
}

/* ---- waiting for the writes queued before a call ------------------------ */

/* The nodes that name one file (its link group, up to QUIET_TWINS_MAX):
 * its writes, through whichever name, are ordered with each other. */
struct file_nodes {
	uint64_t ids[QUIET_TWINS_MAX];
	size_t n;
};

static void file_nodes_of(struct vfs *v, uint64_t ino, struct file_nodes *fn)
{
	fn->n = nodes_twins(v->nodes, ino, fn->ids, QUIET_TWINS_MAX);
	if (fn->n == 0) {  /* forgotten meanwhile: its handles keep its id */
		fn->ids[0] = ino;
		fn->n = 1;
	}
}

static bool file_nodes_has(const struct file_nodes *fn, uint64_t ino)
{
	return among(ino, fn->ids, fn->n);
}

/* Whether fh holds a write queued up to `seq` that overlaps [lo, hi).
 * fh->lock held. */
static bool holds_back_locked(const struct fh *fh, uint64_t seq, uint64_t lo,
			      uint64_t hi)
{
	for (const struct wchunk *c = fh->chunks; c; c = c->next)
		if (c->seq <= seq && c->off < hi && c->off + c->len > lo)
			return true;
	return false;
}

/* The first handle of the file but `skip` that holds such a write,
 * returned locked; NULL when none does. vfs->lock held. */
static struct fh *holder_locked(struct vfs *v, const struct file_nodes *fn,
				const struct fh *skip, uint64_t seq,
				uint64_t lo, uint64_t hi)
{
	for (struct fh *f = v->fhs; f; f = f->next) {
		if (!file_nodes_has(fn, f->ino) || f == skip)
			continue;
		pthread_mutex_lock(&f->lock);
		if (holds_back_locked(f, seq, lo, hi))
			return f;
		pthread_mutex_unlock(&f->lock);
	}
	return NULL;
}

/* Whether a handle of the file of `ino` but `skip` has an
 * unacknowledged write overlapping [lo, hi). */
static bool ino_writes_overlap(struct vfs *v, uint64_t ino,
			       const struct fh *skip, uint64_t lo, uint64_t hi)
{
	struct file_nodes fn;
	struct fh *f;

	file_nodes_of(v, ino, &fn);
	pthread_mutex_lock(&v->lock);
	f = holder_locked(v, &fn, skip, UINT64_MAX, lo, hi);
	if (f)
		pthread_mutex_unlock(&f->lock);
	pthread_mutex_unlock(&v->lock);
	return f != NULL;
}

/* The end of the furthest write queued up to `seq` still queued on a
 * handle of the file of `ino`, 0 when none is. */
static uint64_t ino_queued_end(struct vfs *v, uint64_t ino, uint64_t seq)
{
	struct file_nodes fn;
	uint64_t end = 0;

	file_nodes_of(v, ino, &fn);
	pthread_mutex_lock(&v->lock);
	for (struct fh *f = v->fhs; f; f = f->next) {
		if (!file_nodes_has(&fn, f->ino))
			continue;
		pthread_mutex_lock(&f->lock);
		for (const struct wchunk *c = f->chunks; c; c = c->next)
			if (c->seq <= seq && c->off + c->len > end)
				end = c->off + c->len;
		pthread_mutex_unlock(&f->lock);
	}
	pthread_mutex_unlock(&v->lock);
	return end;
}

static void settle_again(struct op *op, const struct sftp_attrs *a, int err);

/*
 * Runs op->after once no handle of op->ino (but op->bar_skip) holds a
 * write op waits for (struct op's bar_*), parking op on the first that
 * does. The parked op needs no reference of its own on that handle: the
 * chunk holding it back holds one, and its retirement wakes it
 * (chunk_retire), or the sweeper answers it EIO at its deadline.
 */
static void when_settled(struct op *op)
{
	struct vfs *v = op->v;
	struct file_nodes fn;
	struct fh *f;

	file_nodes_of(v, op->ino, &fn);
	pthread_mutex_lock(&v->lock);
	f = holder_locked(v, &fn, op->bar_skip, op->bar_seq, op->bar_lo,
			  op->bar_hi);
	if (f) {
		op->then = settle_again;
		op->next = f->barriers;
		f->barriers = op;
		pthread_mutex_unlock(&f->lock);
	}
	pthread_mutex_unlock(&v->lock);
	if (!f)
		op->after(op, NULL, 0);
}

/* A handle let op go: another one may still hold it back. */
static void settle_again(struct op *op, const struct sftp_attrs *a, int err)
{
	when_settled(op);
}

/* Takes off fh->barriers the ops fh no longer holds back. Lock held;
 * returns them, to go on (op->then) outside the lock. */
static struct op *settled_locked(struct fh *fh)
{
	struct op *out = NULL, **pp = &fh->barriers;

	while (*pp) {
		struct op *op = *pp;

		if (holds_back_locked(fh, op->bar_seq, op->bar_lo, op->bar_hi)) {
			pp = &op->next;
			continue;
		}
		*pp = op->next;
		op->next = out;
		out = op;
	}
	return out;
}

/* Runs then(op, NULL, 0) once every write queued before now on a handle
 * of op->ino but `skip` that overlaps [lo, hi) is acknowledged. */
static void wait_writes(struct op *op, uint64_t lo, uint64_t hi,
			const struct fh *skip,
			void (*then)(struct op *, const struct sftp_attrs *, int))
{
	op->bar_seq = __atomic_load_n(&op->v->wseq, __ATOMIC_ACQUIRE);
	op->bar_lo = lo;
	op->bar_hi = hi;
	op->bar_skip = skip;
	op->after = then;
	when_settled(op);
}

/* How a write chose its offset (op->stage of a waiting write). */
enum { W_AT, W_APPEND, W_APPEND_RESENT };

/* A write's data is queued: a positional one may move the end. */
static void write_queued(struct vfs *v, uint64_t ino, int kind, uint64_t at,
			 size_t size)
{
	if (kind == W_AT)
		nodes_end_update(v->nodes, ino, at + size);
	/* Data prefetched through any handle is stale now. After the
	 * chunks are queued, not before: a prefetch started in between
	 * sees them (ra_fill_window) or is dropped here. */
	fh_ino_changed(v, ino);
}

/* A write failed before any of it was queued: an append gives back the
 * end it reserved, so the caller's retry lands right after the last
 * write that succeeded. */
static void write_dropped(struct vfs *v, uint64_t ino, int kind, uint64_t at,
			  size_t size)
{
	if (kind == W_APPEND)
		nodes_append_unreserve(v->nodes, ino, at, size);
}

static void reply_writers(struct op *w)
{
	while (w) {
		struct op *next = w->next;

		w->next = NULL;
		write_queued(w->v, w->ino, w->stage, w->off, w->size);
		fuse_reply_write(w->req, w->size);
		w->req = NULL;
		fh_op_end(w);
		w = next;
	}
}

/* Removes an acknowledged (or dropped) chunk. */
static void chunk_retire(struct wchunk *c, int err)
{
	struct fh *fh = c->fh;
	struct vfs *v = fh->v;
	struct wchunk **pp, *prev = NULL, *tosend = NULL;
	struct op *d, *w, *b;

	pthread_mutex_lock(&fh->lock);
	/* Acknowledgements come mostly in order: c is usually the head. */
	for (pp = &fh->chunks; *pp && *pp != c; pp = &(*pp)->next)
		prev = *pp;
	if (*pp) {
		*pp = c->next;
		if (fh->chunks_tail == c)
			fh->chunks_tail = prev;
	}
	fh->nchunks--;
	fh->unacked -= c->len;
	if (c->off == fh->ulo || c->off + c->len == fh->uhi)
		unacked_range_locked(fh);
	record_unacked_locked(fh);
	if (err) {
		set_err_locked(fh, err);
	} else {
		fh->acks++;
		if (c->off < fh->slo)
			fh->slo = c->off;
		if (c->off + c->len > fh->shi)
			fh->shi = c->off + c->len;
	}
	__atomic_sub_fetch(&v->unacked_bytes, c->len, __ATOMIC_RELAXED);
	/* c may have held newer chunks back (chunks_send_locked): one
	 * refused, asking statvfs@ why. (A closed handle sends them when
	 * it is reopened.) */
	if (fh->open && fh->chunks && !sent_now_locked(fh, fh->chunks_tail))
		chunks_send_locked(fh, &tosend);
	d = collect_waiters(fh, &w, &tosend);
	b = fh->barriers ? settled_locked(fh) : NULL;
	pthread_mutex_unlock(&fh->lock);
	submit_chunks(tosend);
	if (err) {
		char *p = fh_name(fh);

		log_err("write '%s' bytes %llu-%llu refused by the server: %s",
			p ? p : "?", (unsigned long long)c->off,
			(unsigned long long)(c->off + c->len), strerror(err));
		free(p);
	}
	chunk_free(c);
	run_drainers(d);
	run_drainers(b);
	reply_writers(w);
	fh_put(fh);
}

/* SFTP v3 says only "failure" when the disk is full: ask statvfs@. */
static void chunk_statvfs_done(struct sreq *rq, const struct sftp_reply *r, int err)
{
	struct wchunk *c = (struct wchunk *)rq;
	struct sftp_statvfs sv;
	int e = EIO;

	if (!err && r->type == SSH_FXP_EXTENDED_REPLY &&
	    sftp_dec_statvfs(r->u.ext.p, r->u.ext.len, &sv) == 0 &&
	    (sv.bavail == 0 || sv.bavail * sv.frsize < c->len))
		e = ENOSPC;
	chunk_retire(c, e);
}

static void chunk_check_space(struct wchunk *c)
{
	struct fh *fh = c->fh;
	char *p;

	if (vfs_missing_ext(fh->v, SFTP_EXT_STATVFS)) {
		chunk_retire(c, EIO);
		return;
	}
	memset(&c->rq, 0, sizeof(c->rq));
	/* The file's folder tree; any path on the server would do. */
	if (!(p = fh_path(fh)))
		p = nodes_path(fh->v->nodes, NODE_ROOT);
	if (!p || sftp_enc_statvfs(&c->rq.pkt, 0, p) < 0) {
		free(p);
		chunk_retire(c, EIO);
		return;
	}
	free(p);
	c->rq.conn_idx = -1;
	c->rq.idempotent = true;
	c->rq.deadline = clock_mono_ns() + fh->v->op_timeout_ns;
	c->rq.done = chunk_statvfs_done;
	pool_submit(fh->v->pool, &c->rq);
}

/* A released handle's chunk still unacknowledged at drop_at: reported
 * lost (log line, data event) and dropped. */
static void drop_after_close(struct wchunk *c)
{
	struct fh *fh = c->fh;
	char *p = fh_name(fh);

	log_err("data lost: '%s' bytes %llu-%llu unacknowledged %.1f s after close",
		p ? p : "?", (unsigned long long)c->off,
		(unsigned long long)(c->off + c->len), fh->v->o->op_timeout);
	control_event_data(fh->v->ctl, p ? p : "", c->off, c->len, false, true);
	free(p);
	chunk_retire(c, EIO);
}

static void chunk_done(struct sreq *rq, const struct sftp_reply *r, int err)
{
	struct wchunk *c = (struct wchunk *)rq;
	struct fh *fh = c->fh;

	/* Not sent and never sendable: the handle's error, once; resending
	 * (reopening the session or the handle) cannot help. */
	if (err == -EMSGSIZE || err == -ENOMEM) {
		char *p = fh_name(fh);

		log_err("write '%s' bytes %llu-%llu cannot be sent: %s",
			p ? p : "?", (unsigned long long)c->off,
			(unsigned long long)(c->off + c->len), strerror(-err));
		control_event_data(fh->v->ctl, p ? p : "", c->off, c->len, false, true);
		free(p);
		chunk_retire(c, EIO);
		return;
	}
	if (err) {
		struct wchunk *tosend = NULL;

		/* Session gone: keep the data, resend after reopening. */
		fh_lost(fh, rq->conn_gen, rq->conn_idx);
		pthread_mutex_lock(&fh->lock);
		c->inflight = false;
		if (fh->released && fh->drop_at && clock_mono_ns() >= fh->drop_at) {
			pthread_mutex_unlock(&fh->lock);
			drop_after_close(c);
			return;
		}
		chunks_send_locked(fh, &tosend);
		pthread_mutex_unlock(&fh->lock);
		submit_chunks(tosend);
		return;
	}
	if (r->type == SSH_FXP_STATUS && r->u.status.code == SSH_FX_OK) {
		chunk_adapt(fh, c, clock_mono_ns());
		nodes_ident_acked(fh->v->nodes, fh->ino, c->off + c->len);
		control_add_bytes(fh->v->ctl, 0, c->len);
		chunk_retire(c, 0);
	}
	else if (r->type == SSH_FXP_STATUS && r->u.status.code == SSH_FX_FAILURE)
		chunk_check_space(c);
	else
		chunk_retire(c, reply_errno(r));
}

static void chunks_free(struct wchunk *c)
{
	while (c) {
		struct wchunk *next = c->next;

		chunk_free(c);
		c = next;
	}
}

/* Copies [off, off+len) into chunks of the server's write size, linked
 * by ->next, queued nowhere yet; NULL when out of memory. */
static struct wchunk *chunks_make(struct fh *fh, const char *buf, size_t len,
				  uint64_t off)
{
	struct conn_server sv;
	struct wchunk *head = NULL, **tail = &head;

	pool_server(fh->v->pool, &sv);
	if (sv.max_write == 0)
		sv.max_write = 32768;
	while (len) {
		size_t n = len < sv.max_write ? len : sv.max_write;
		struct wchunk *c = calloc(1, sizeof(*c));

		if (!c || !(c->data = malloc(n))) {
			free(c);
			chunks_free(head);
			return NULL;
		}
		memcpy(c->data, buf, n);
		c->fh = fh;
		c->off = off;
		c->len = n;
		*tail = c;
		tail = &c->next;
		buf += n;
		off += n;
		len -= n;
	}
	return head;
}

/* Puts a list from chunks_make at the end of the handle's queue, all of
 * it at once; the chunks to send go on *tosend. Lock held. */
static void chunks_queue_locked(struct fh *fh, struct wchunk *list,
				struct wchunk **tosend)
{
	uint64_t now = clock_mono_ns();
	/* Sent at once only behind chunks all out on this session (the
	 * usual case); else in order by chunks_send_locked. */
	bool direct = !fh->chunks || sent_now_locked(fh, fh->chunks_tail);

	while (list) {
		struct wchunk *c = list;

		list = c->next;
		c->next = NULL;
		c->queued_at = now;
		c->seq = __atomic_add_fetch(&fh->v->wseq, 1, __ATOMIC_ACQ_REL);
		fh->refs++;
		fh->nchunks++;
		fh->unacked += c->len;
		/* Counted before it can be sent, so never acknowledged first. */
		__atomic_add_fetch(&fh->v->unacked_bytes, c->len, __ATOMIC_RELAXED);
		if (fh->chunks) {
			fh->chunks_tail->next = c;
			if (c->off < fh->ulo)
				fh->ulo = c->off;
			if (c->off + c->len > fh->uhi)
				fh->uhi = c->off + c->len;
		} else {
			fh->chunks = c;
			fh->ulo = c->off;
			fh->uhi = c->off + c->len;
		}
		fh->chunks_tail = c;
		if (direct)
			chunk_prep_locked(c, tosend);
	}
	if (!direct)
		chunks_send_locked(fh, tosend);
	record_unacked_locked(fh);
}

/* A waiting write's deadline passed: none of it was queued or sent. */
static void write_expired(struct op *op)
{
	chunks_free(op->wchunks);
	op->wchunks = NULL;
	write_dropped(op->v, op->ino, op->stage, op->off, op->size);
	op_log_error(op, EIO, "transport");
	fh_op_fail(op, EIO);
}

/* A write that cannot be queued at once, its data (list) aside; NULL
 * when out of memory (then answered ENOMEM, and nothing queued). */
static struct op *write_op(fuse_req_t req, struct fh *fh, uint64_t ino,
			   int kind, uint64_t at, size_t size,
			   struct wchunk *list)
{
	struct op *op = op_new(fh->v, req, "write");

	if (!op) {
		chunks_free(list);
		write_dropped(fh->v, ino, kind, at, size);
		return NULL;
	}
	op->size = size;
	op->off = at;
	op->ino = ino;
	op->stage = kind;
	op->wchunks = list;
	op->fh = fh;
	op->path = fh_name(fh);
	fh_get(fh);
	return op;
}

/* The write waits for window room, behind the handle's older waiting
 * writes, queued only once all of it fits, within op_timeout
 * (write_expired). */
static void write_wait(struct op *op)
{
	struct fh *fh = op->fh;
	struct wchunk *tosend = NULL;
	struct op **pp, *now;

	pthread_mutex_lock(&fh->lock);
	for (pp = &fh->writers; *pp; pp = &(*pp)->next)
		;
	*pp = op;
	/* Room may have come while the op was made. */
	now = admit_writers_locked(fh, &tosend);
	pthread_mutex_unlock(&fh->lock);
	submit_chunks(tosend);
	reply_writers(now);
}

/* No other handle holds an older overlapping write any more. */
static void write_settled(struct op *op, const struct sftp_attrs *a, int err)
{
	write_wait(op);
}

void vfs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
	       off_t off, struct fuse_file_info *fi)
{
	struct vfs *v = vfs_of(req);
	struct fh *fh = fh_of(v, fi);
	struct append_note an = { v->tk, takeover_call() };
	uint64_t at = (uint64_t)off;
	struct wchunk *list, *tosend = NULL;
	struct op *op;
	int err, kind = W_AT;
	bool append, queued;

	if (is_ctl_ino(ino)) {
		fuse_reply_err(req, EACCES);
		return;
	}
	if (!fh) {
		fuse_reply_err(req, EBADF);
		return;
	}
	if ((fi->flags & O_NONBLOCK) && pool_up_count(v->pool) == 0) {
		fuse_reply_err(req, EAGAIN);
		return;
	}
	pthread_mutex_lock(&fh->lock);
	err = take_err_locked(fh);
	pthread_mutex_unlock(&fh->lock);
	if (err) {
		fuse_reply_err(req, err);
		return;
	}
	/* Page-cache write-back (mmap) carries the page's own offset, even
	 * through a handle opened O_APPEND. */
	append = (fh->flags & O_APPEND) && !fi->writepage;
	/* The end is learnt at open and kept across daemon restarts; never
	 * guess it (an append at 0 would overwrite the file). */
	if (append && !nodes_end_known(v->nodes, ino)) {
		char *p = fh_name(fh);

		log_err("write '%s': append offset unknown (not kept across the daemon restart)",
			p ? p : "?");
		free(p);
		fuse_reply_err(req, EIO);
		return;
	}
	if (append && takeover_append_offset(v->tk, an.call, &at)) {
		/* Resent after a daemon died: where the first one put it. */
		kind = W_APPEND_RESENT;
		nodes_end_raise(v->nodes, ino, at + size);
		takeover_note_append(v->tk, an.call, at);
	} else if (append) {
		/* Noted before the end moves: a death in between must not
		 * leave the resend a new offset past a hole. */
		kind = W_APPEND;
		at = nodes_append_reserve_noted(v->nodes, ino, size,
						note_append, &an);
	}
	/* The whole write is copied first and queued only when all of it
	 * fits: a write that fails has queued none of its bytes. */
	if (!(list = chunks_make(fh, buf, size, at))) {
		write_dropped(v, ino, kind, at, size);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	/* Before any of it can be sent (or acknowledged): the "same
	 * file?" rule's upper bound. A write that fails later only leaves
	 * that bound a little wide. */
	nodes_ident_sent(v->nodes, ino, at + size);
	/* Overlapping writes reach the server in write() order: one of
	 * this handle follows the older ones on its session (submit_chunks),
	 * one overlapping an older write still queued on another handle,
	 * maybe on another session, waits until that one is acknowledged. */
	if (ino_writes_overlap(v, ino, fh, at, at + size)) {
		if ((op = write_op(req, fh, ino, kind, at, size, list)))
			wait_writes(op, at, at + size, fh, write_settled);
		return;
	}
	pthread_mutex_lock(&fh->lock);
	queued = !fh->writers && room_for_locked(fh, size, chunk_count(list));
	if (queued)
		chunks_queue_locked(fh, list, &tosend);
	pthread_mutex_unlock(&fh->lock);
	if (!queued) {
		if ((op = write_op(req, fh, ino, kind, at, size, list)))
			write_wait(op);
		return;
	}
	submit_chunks(tosend);
	write_queued(v, ino, kind, at, size);
	fuse_reply_write(req, size);
	control_record_call(v->ctl, "write", 0, 0);
}

/* ---- flush, fsync ------------------------------------------------------- */

/* Runs op->then once the handle's queue is empty (at once if it is). */
static void when_drained(struct op *op, struct fh *fh,
			 void (*then)(struct op *, const struct sftp_attrs *, int))
{
	op->fh = fh;
	op->then = then;
	fh_get(fh);
	pthread_mutex_lock(&fh->lock);
	if (fh->chunks) {
		op->next = fh->drainers;
		fh->drainers = op;
		pthread_mutex_unlock(&fh->lock);
		return;
	}
	pthread_mutex_unlock(&fh->lock);
	then(op, NULL, 0);
}

void fh_when_ino_drained(struct op *op,
			 void (*then)(struct op *, const struct sftp_attrs *, int))
{
	wait_writes(op, 0, UINT64_MAX, NULL, then);
}

void fh_ino_changed(struct vfs *v, uint64_t ino)
{
	struct { struct fh *fh; struct op *w; } got[16];
	struct file_nodes fn;
	size_t n;

	file_nodes_of(v, ino, &fn);

	/* Each handle is reset once (its window goes to 0), so taking them
	 * 16 at a time ends. The waiters are read outside the locks. */
	do {
		n = 0;
		pthread_mutex_lock(&v->lock);
		for (struct fh *f = v->fhs; f && n < 16; f = f->next) {
			if (!file_nodes_has(&fn, f->ino))
				continue;
			pthread_mutex_lock(&f->lock);
			if (ra_active(&f->ra)) {
				got[n].w = ra_reset(&f->ra);
				f->refs++;
				got[n++].fh = f;
			}
			pthread_mutex_unlock(&f->lock);
		}
		pthread_mutex_unlock(&v->lock);
		for (size_t i = 0; i < n; i++) {
			finish_ra_waiters(got[i].w);
			fh_put(got[i].fh);
		}
	} while (n == 16);
}

static int take_err(struct fh *fh)
{
	int e;

	pthread_mutex_lock(&fh->lock);
	e = take_err_locked(fh);
	pthread_mutex_unlock(&fh->lock);
	return e;
}

/* Every write of fh is acknowledged: the file's other names (made by
 * link()) show a size and mtime that may be stale now. */
static void links_written(struct op *op, struct fh *fh)
{
	if (writable(fh->flags))
		vfs_links_changed(op->v, fh->ino);
}

static void flush_drained(struct op *op, const struct sftp_attrs *a, int err)
{
	links_written(op, op->fh);
	fh_op_fail(op, take_err(op->fh));
}

void vfs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fh *fh = fh_of(vfs_of(req), fi);
	struct op *op;

	if (is_ctl_ino(ino)) {
		fuse_reply_err(req, 0);
		return;
	}
	if (!fh) {
		fuse_reply_err(req, EBADF);
		return;
	}
	if (!(op = op_new(vfs_of(req), req, "flush")))
		return;
	pthread_mutex_lock(&fh->lock);
	fh->flushed_ns = clock_mono_ns();
	pthread_mutex_unlock(&fh->lock);
	op->path = fh_name(fh);
	when_drained(op, fh, flush_drained);
}

/* fsync@ succeeded: what was acknowledged before it is confirmed. */
static void fsync_confirmed(struct fh *fh, uint64_t acks_at_send)
{
	pthread_mutex_lock(&fh->lock);
	if (fh->acks == acks_at_send) {
		fh->slo = UINT64_MAX;
		fh->shi = 0;
	}
	pthread_mutex_unlock(&fh->lock);
}

static void fsync_done(struct op *op, const struct sftp_reply *r, int err)
{
	int e = take_err(op->fh);
	bool ok = !err && r->type == SSH_FXP_STATUS && r->u.status.code == SSH_FX_OK;

	/* fsync@ answered "unsupported": every write is acknowledged, which
	 * is all that is left to wait for. Any other refusal (a permission
	 * denied included) is the server saying the data is not safe: the
	 * caller gets its errno. */
	if (!e && !err && r->type == SSH_FXP_STATUS &&
	    r->u.status.code == SSH_FX_OP_UNSUPPORTED &&
	    vfs_ext_refused(op->v, SFTP_EXT_FSYNC, r)) {
		fh_op_fail(op, 0);
		return;
	}
	if (!e && ok)
		fsync_confirmed(op->fh, op->off);
	if (!e && err)
		e = op_transport_errno(err);
	else if (!e && !ok)
		e = reply_errno(r);
	if (e == EIO && err)
		op_log_error(op, e, "transport");
	else if (e && !err && !ok)
		log_err("fsync '%s' refused by the server: %s", op->path ? op->path : "?",
			strerror(e));
	fh_op_fail(op, e);
}

static void fsync_drained(struct op *op, const struct sftp_attrs *a, int err)
{
	struct fh *fh = op->fh;

	links_written(op, fh);
	/* Without fsync@ the acknowledgements are all we can wait for. */
	if (vfs_missing_ext(op->v, SFTP_EXT_FSYNC)) {
		fh_op_fail(op, take_err(fh));
		return;
	}
	pthread_mutex_lock(&fh->lock);
	op->off = fh->acks;    /* what this fsync@ will confirm */
	pthread_mutex_unlock(&fh->lock);
	op->fh = NULL;  /* fh_start takes its own reference */
	fh_start(op, fh, FH_FSYNC, fsync_done);
	fh_put(fh);
}

void vfs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
	       struct fuse_file_info *fi)
{
	struct fh *fh = fh_of(vfs_of(req), fi);
	struct op *op;

	if (is_ctl_ino(ino)) {
		fuse_reply_err(req, 0);
		return;
	}
	if (!fh) {
		fuse_reply_err(req, EBADF);
		return;
	}
	if (!(op = op_new(vfs_of(req), req, "fsync")))
		return;
	op->path = fh_name(fh);
	when_drained(op, fh, fsync_drained);
}

/* ---- release ------------------------------------------------------------ */

/*
 * The kernel discards the answer to a release, so close(2) never sees a
 * failed CLOSE: the operator does (log, event, counter), with the range
 * written since the last fsync that succeeded, which the CLOSE would
 * have confirmed.
 */
static void close_failed(struct fh *fh, int e, const char *cause)
{
	uint64_t lo, hi;
	char *p = fh_name(fh);

	pthread_mutex_lock(&fh->lock);
	lo = fh->slo;
	hi = fh->shi;
	pthread_mutex_unlock(&fh->lock);
	if (lo >= hi)
		lo = hi = 0;
	if (hi)
		log_err("close '%s' failed: %s (cause %s); bytes %llu-%llu written since the last fsync are unconfirmed",
			p ? p : "?", strerror(e), cause, (unsigned long long)lo,
			(unsigned long long)hi);
	else
		log_err("close '%s' failed: %s (cause %s)", p ? p : "?",
			strerror(e), cause);
	control_event_close_failed(fh->v->ctl, p ? p : "", lo, hi - lo, e, cause);
	free(p);
}

static void close_done(struct op *op, const struct sftp_reply *r, int err)
{
	if (err)
		close_failed(op->fh, op_transport_errno(err), "transport");
	else if (!(r->type == SSH_FXP_STATUS && r->u.status.code == SSH_FX_OK))
		close_failed(op->fh, reply_errno(r), "server");
	fh_op_end(op);
}

/* Closes the remote handle (best effort) once nothing is queued. */
static void close_drained(struct op *op, const struct sftp_attrs *a, int err)
{
	struct fh *fh = op->fh;
	bool send;

	/* Once: a reopen that completes after the release closes it too
	 * (close_if_released). */
	pthread_mutex_lock(&fh->lock);
	send = fh->open && !fh->closing;
	fh->closing |= send;
	pthread_mutex_unlock(&fh->lock);
	if (!send) {
		fh_op_end(op);
		return;
	}
	op->fh = NULL;
	fh_start(op, fh, FH_CLOSE, close_done);
	fh_put(fh);
}

/* A handle released while it was being reopened, with nothing queued:
 * its release found it closed, and the reopen opened it again on the
 * server. Close it there. */
static void close_if_released(struct fh *fh)
{
	struct op *cop;
	bool idle;

	pthread_mutex_lock(&fh->lock);
	idle = fh->released && fh->open && !fh->closing && !fh->chunks;
	pthread_mutex_unlock(&fh->lock);
	if (idle && (cop = op_new(fh->v, NULL, "close")))
		when_drained(cop, fh, close_drained);
}

void vfs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct vfs *v = vfs_of(req);
	struct fh *fh;
	struct op *op;

	if (ctl_release(req, ino, fi))
		return;
	fuse_reply_err(req, 0);
	if (!(fh = fh_of(v, fi)))
		return;
	/* The kernel will not name this handle again; its record stays
	 * until the data drained (a later daemon reports what did not). */
	pthread_mutex_lock(&v->lock);
	v->fh_slots[fi->fh - 1] = NULL;
	pthread_mutex_unlock(&v->lock);
	if (v->ks)
		ks_fh_released(v->ks, fh->slot);
	pthread_mutex_lock(&fh->lock);
	fh->released = true;
	fh->drop_at = clock_mono_ns() + v->op_timeout_ns;
	pthread_mutex_unlock(&fh->lock);
	if ((op = op_new(v, NULL, "close"))) {
		op->rq.deadline = 0;  /* the sweeper drops at drop_at */
		when_drained(op, fh, close_drained);
	}
	fh_put(fh);
}

/*
 * A handle the kernel will never use (the open failed, or its answer did
 * not reach the kernel, after the server had opened the file): closed on
 * the server, and its slot freed, then the kernel's reference dropped.
 */
static void fh_discard(struct fh *fh)
{
	struct vfs *v = fh->v;
	struct op *cop;

	if (fh->slot >= 0) {
		pthread_mutex_lock(&v->lock);
		v->fh_slots[fh->slot] = NULL;
		pthread_mutex_unlock(&v->lock);
	}
	pthread_mutex_lock(&fh->lock);
	fh->released = true;       /* not open for the kernel any more */
	pthread_mutex_unlock(&fh->lock);
	if ((cop = op_new(v, NULL, "close")))
		when_drained(cop, fh, close_drained);
	fh_put(fh);
}

/* ---- open, create ------------------------------------------------------- */

static void open_reply(struct op *op)
{
	struct fh *fh = op->fh;

	op->fi.fh = fh_register(fh);
	op->fi.keep_cache = op->v->o->kernel_cache;
	if (!op->fi.fh) {
		op->fh = NULL;
		fh_discard(fh);
		op_fail(op, EMFILE);
		return;
	}
	if (fuse_reply_open(op->req, &op->fi) != 0) {
		op->fh = NULL;
		op->req = NULL;
		fh_discard(fh);
		op_free(op);
		return;
	}
	op->req = NULL;
	op->fh = NULL;
	op_free(op);
}

static void seed_done(struct op *op, const struct sftp_reply *r, int err)
{
	struct fh *fh = op->fh;

	if (err || r->type != SSH_FXP_ATTRS) {
		op->fh = NULL;
		fh_put(fh);  /* the seeding ref */
		fh_discard(fh);
		op_fail(op, err ? op_transport_errno(err) : reply_errno(r));
		return;
	}
	/* Raise, never lower: another handle's appends may already be
	 * queued past the server's size. */
	nodes_end_raise(op->v->nodes, op->ino, r->u.attrs.size);
	fh_seen(fh, &r->u.attrs, op->mark);
	fh_put(fh);      /* the seeding ref; the kernel's stays */
	open_reply(op);
}

static bool other_handle(struct vfs *v, struct fh *self)
{
	bool found = false;

	pthread_mutex_lock(&v->lock);
	for (struct fh *f = v->fhs; f && !found; f = f->next)
		found = f != self && f->ino == self->ino;
	pthread_mutex_unlock(&v->lock);
	return found;
}

/* The attributes kept for the node say it is empty (answered during a
 * short outage, they must not show the size before an O_TRUNC open). */
static void cached_size_zero(struct vfs *v, uint64_t ino)
{
	struct stat st;

	if (!nodes_get_attr(v->nodes, ino, &st))
		return;
	st.st_size = 0;
	st.st_blocks = 0;
	nodes_set_attr(v->nodes, ino, &st);
}

static void open_done(struct op *op, const struct sftp_reply *r, int err)
{
	struct fh *fh;

	if (op->fi.flags & O_TRUNC)
		nodes_ident_change(op->v->nodes, op->ino, false);
	if (err) {
		/* An O_TRUNC open may have truncated: the rule keeps taking
		 * both sizes (open_send). */
		op_log_error(op, op_transport_errno(err), "transport");
		op_fail(op, op_transport_errno(err));
		return;
	}
	if (r->type != SSH_FXP_HANDLE || r->u.handle.len > SFTP_MAX_HANDLE) {
		op_fail(op, reply_errno(r));
		return;
	}
	if (!(fh = fh_new(op->v, op->ino, op->fi.flags))) {
		op_fail(op, ENOMEM);
		return;
	}
	fh_set_handle(fh, r, &op->rq);
	op->fh = fh;
	if (op->fi.flags & O_TRUNC) {
		/* The file is empty now, for every descriptor: the next
		 * append through any of them lands at 0 (the writes queued
		 * before were acknowledged first, vfs_open). */
		fh_ino_changed(op->v, op->ino);
		nodes_end_set(op->v->nodes, op->ino, 0);
		cached_size_zero(op->v, op->ino);
		nodes_ident_truncated(op->v->nodes, op->ino, 0);
		vfs_links_changed(op->v, op->ino);
	} else if (!writable(fh->flags) && !other_handle(op->v, fh)) {
		/* A reader's baseline for the "same file?" rule: the
		 * attributes the lookup or getattr before this open saw,
		 * unless another handle keeps its own. */
		nodes_ident_seed(op->v->nodes, op->ino);
	} else if (writable(fh->flags)) {
		/* Appends need the true end: every writable open learns the
		 * server's size before it answers (two opens may race). */
		op->fh = NULL;
		op->rq.deadline = clock_mono_ns() + op->v->op_timeout_ns;
		op->mark = nodes_ident_mark(op->v->nodes, op->ino);
		fh_start(op, fh, FH_FSTAT, seed_done);
		return;
	}
	open_reply(op);
}

static void open_send(struct op *op, const struct sftp_attrs *unused, int err)
{
	/* Until the reply an O_TRUNC open may have emptied the file: a
	 * handle reopened meanwhile must take both sizes (identity.h). */
	if (op->fi.flags & O_TRUNC) {
		nodes_ident_maybe_truncated(op->v->nodes, op->ino, 0);
		nodes_ident_change(op->v->nodes, op->ino, true);
	}
	/* Opening without O_CREAT|O_EXCL can be repeated safely. */
	op_send(op, open_done, true);
}

void vfs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct vfs *v = vfs_of(req);
	struct op *op;
	int err;

	if (ctl_open(v, req, ino, fi))
		return;
	if ((fi->flags & O_NONBLOCK) && pool_up_count(v->pool) == 0) {
		fuse_reply_err(req, EAGAIN);
		return;
	}
	if (!(op = op_new(v, req, "open")))
		return;
	op->ino = ino;
	op->fi = *fi;
	op->rq.nonblock = fi->flags & O_NONBLOCK;
	if ((err = nodes_path_get(v->nodes, ino, NULL, &op->path)) ||
	    sftp_enc_open(&op->rq.pkt, 0, op->path, pflags_of(fi->flags, true),
			  &(struct sftp_attrs){ 0 }) < 0) {
		op_fail(op, err ? err : ENOMEM);
		return;
	}
	/* A truncating open must not be overtaken by writes queued before
	 * it, as a truncate (vfs_setattr). */
	if (fi->flags & O_TRUNC)
		fh_when_ino_drained(op, open_send);
	else
		open_send(op, NULL, 0);
}

static void create_stat_done(struct op *op, const struct sftp_reply *r, int err)
{
	struct vfs *v = op->v;
	struct fh *fh = op->fh;
	struct fuse_entry_param e;
	struct stat st;
	struct sftp_attrs a = { 0 };
	uint64_t id = fh->ino;

	if (!err && r->type == SSH_FXP_ATTRS) {
		a = r->u.attrs;
		/* A new file: nothing else changed it since the STAT. */
		fh_seen(fh, &a, nodes_ident_mark(v->nodes, fh->ino));
	} else {  /* the file exists: answer with what we asked for */
		a = (struct sftp_attrs){ .flags = SSH_FILEXFER_ATTR_PERMISSIONS |
			SSH_FILEXFER_ATTR_SIZE, .perm = S_IFREG | op->mode };
	}
	vfs_attr_to_stat(v, &a, id, &st);
	nodes_set_attr(v->nodes, id, &st);
	if (op->fi.flags & O_TRUNC)  /* for every descriptor (open_done) */
		nodes_end_set(v->nodes, id, a.size);
	else
		nodes_end_raise(v->nodes, id, a.size);
	vfs_fill_entry(v, &e, id, &st);
	if (!(op->fi.fh = fh_register(fh))) {
		nodes_forget(v->nodes, id, 1);
		fh_discard(fh);
		fh_op_fail(op, EMFILE);
		return;
	}
	if (fuse_reply_create(op->req, &e, &op->fi) != 0) {
		nodes_forget(v->nodes, id, 1);
		fh_discard(fh);
	}
	op->req = NULL;
	fh_op_end(op);
}

static void create_send(struct op *op, bool idempotent);

/*
 * The settling open found no file: the exclusive create died with its
 * session before the server made the file, so it is sent again, within
 * the call's deadline (a short cut must be invisible; retries.md). A
 * refusal of it is settled again: the first one may have landed since.
 */
static void create_resend(struct op *op)
{
	struct sftp_attrs a = { .flags = SSH_FILEXFER_ATTR_PERMISSIONS,
				.perm = op->mode };

	log_info("create '%s': reply lost, not done on the server: sending it again",
		 op->path);
	op->fi.flags |= O_CREAT | O_EXCL;
	op->stage = 0;
	op->resent = true;
	op->have_pre = false;
	buf_reset(&op->rq.pkt);
	if (sftp_enc_open(&op->rq.pkt, 0, op->path, pflags_of(op->fi.flags, true),
			  &a) < 0) {
		op_fail(op, ENOMEM);
		return;
	}
	create_send(op, false);
}

/* The settling open of an exclusive create failed with reply `r`. */
static void create_not_there(struct op *op, const struct sftp_reply *r)
{
	int e;

	if (op->lost && r->type == SSH_FXP_STATUS &&
	    r->u.status.code == SSH_FX_NO_SUCH_FILE) {
		create_resend(op);
		return;
	}
	/* A resent create the server refused: that refusal is the answer
	 * ("failure" says nothing: EIO, as an unknown outcome). */
	e = op->lost || op->refused == SSH_FX_FAILURE ? 0 :
		sftp_status_errno(op->refused);
	if (!e) {
		e = EIO;
		op_log_error(op, EIO, "transport");
	}
	op_fail(op, e);
}

static void create_opened(struct op *op, const struct sftp_reply *r, int err)
{
	struct fh *fh;
	uint64_t id;

	if (op_maybe_done(op, r, err) && (op->fi.flags & O_EXCL)) {
		/* Lost reply to an exclusive create: never repeat it blindly.
		 * Open without O_CREAT|O_EXCL; if the file is there, our
		 * create is what made it (see docs/retries.md). */
		log_info("create '%s': reply lost, settling by opening without O_EXCL",
			 op->path);
		op->lost = err != 0;
		op->refused = err ? 0 : r->type == SSH_FXP_STATUS ?
			r->u.status.code : SSH_FX_FAILURE;
		op->fi.flags &= ~(O_CREAT | O_EXCL | O_TRUNC);
		op->stage = 1;  /* settling: ENOENT now means "not created" */
		buf_reset(&op->rq.pkt);
		if (sftp_enc_open(&op->rq.pkt, 0, op->path,
				  pflags_of(op->fi.flags, false),
				  &(struct sftp_attrs){ 0 }) < 0) {
			op_fail(op, ENOMEM);
			return;
		}
		op_send(op, create_opened, true);
		return;
	}
	if (err) {
		op_log_error(op, op_transport_errno(err), "transport");
		op_fail(op, op_transport_errno(err));
		return;
	}
	if (r->type != SSH_FXP_HANDLE || r->u.handle.len > SFTP_MAX_HANDLE) {
		if (r->type == SSH_FXP_STATUS && r->u.status.code == SSH_FX_FAILURE &&
		    (op->fi.flags & O_EXCL)) {
			op_fail(op, EEXIST);
			return;
		}
		if (op->stage == 1) {
			create_not_there(op, r);
			return;
		}
		op_fail(op, reply_errno(r));
		return;
	}
	/* The node first: the handle's path is its node's. */
	if (!(id = nodes_ref(op->v->nodes, op->parent, op->leaf))) {
		op_fail(op, ENOMEM);
		return;
	}
	if (!(fh = fh_new(op->v, id, op->fi.flags))) {
		nodes_forget(op->v->nodes, id, 1);
		op_fail(op, ENOMEM);
		return;
	}
	fh_set_handle(fh, r, &op->rq);
	if (op->have_pre) {  /* the STAT behind the OPEN answered */
		struct sftp_reply ar = { .type = SSH_FXP_ATTRS };

		ar.u.attrs = op->pre;
		op->fh = fh;
		fh_get(fh);
		create_stat_done(op, &ar, 0);
		return;
	}
	op->rq.deadline = clock_mono_ns() + op->v->op_timeout_ns;
	fh_start(op, fh, FH_FSTAT, create_stat_done);
}

/*
 * A create sends a STAT of its path right behind the OPEN, on the same
 * session: the server answers in order, so the new file's attributes come
 * back in the OPEN's round trip instead of one FSTAT round trip later
 * (sshfs does the same). The two replies join here: op->pending counts
 * them and the last to arrive goes on. The OPEN's reply is kept in
 * op->data until then (its handle copied: the packet is gone by then).
 */
struct create_join {
	struct sftp_reply r;
	int err;
	uint8_t h[SFTP_MAX_HANDLE];
};

static void create_arrive(struct op *op)
{
	struct create_join j;

	if (__atomic_sub_fetch(&op->pending, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	j = *(struct create_join *)op->data;
	free(op->data);
	op->data = NULL;
	if (!j.err && j.r.type == SSH_FXP_HANDLE)
		j.r.u.handle.h = j.h;
	create_opened(op, j.err ? NULL : &j.r, j.err);
}

static void create_open_reply(struct op *op, const struct sftp_reply *r, int err)
{
	struct create_join *j = (struct create_join *)op->data;

	j->err = err;
	if (!err) {
		j->r.type = r->type;
		j->r.id = r->id;
		if (r->type == SSH_FXP_STATUS) {
			j->r.u.status.code = r->u.status.code;
		} else if (r->type == SSH_FXP_HANDLE) {
			j->r.u.handle.len = r->u.handle.len;
			memcpy(j->h, r->u.handle.h, r->u.handle.len < sizeof(j->h) ?
			       r->u.handle.len : sizeof(j->h));
		}
	}
	create_arrive(op);
}

static void create_stat_reply(struct op *sop, const struct sftp_reply *r, int err)
{
	struct op *op = sop->peer;

	if (!err && r->type == SSH_FXP_ATTRS) {
		op->pre = r->u.attrs;
		op->have_pre = true;
	}
	op_free(sop);
	create_arrive(op);
}

/* Sends the create's OPEN, with its STAT behind it when it can. */
static void create_send(struct op *op, bool idempotent)
{
	struct op *sop = op_new(op->v, NULL, "create");
	struct create_join *j = calloc(1, sizeof(*j));

	if (!sop || !j || sftp_enc_path(&sop->rq.pkt, SSH_FXP_STAT, 0, op->path) < 0) {
		free(j);
		op_free(sop);
		op_send(op, create_opened, idempotent);
		return;
	}
	op->data = (char *)j;
	op->pending = 2;
	sop->peer = op;
	op_send_pair(op, create_open_reply, idempotent, sop, create_stat_reply);
}

void vfs_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		mode_t mode, struct fuse_file_info *fi)
{
	struct vfs *v = vfs_of(req);
	struct sftp_attrs a = { .flags = SSH_FILEXFER_ATTR_PERMISSIONS };
	struct op *op;
	int err;

	if (strlen(name) > 255) {
		fuse_reply_err(req, ENAMETOOLONG);
		return;
	}
	if (ctl_protected(parent, name)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	if (hidden_name_refused(req, name))
		return;
	if (!(op = op_new(v, req, "create")))
		return;
	op->parent = parent;
	op->fi = *fi;
	op->fi.flags |= O_CREAT;
	op->mode = mode & 07777 & ~fuse_req_ctx(req)->umask;
	a.perm = op->mode;
	op->leaf = strdup(name);
	err = nodes_path_get(v->nodes, parent, name, &op->path);
	if (err || !op->leaf ||
	    sftp_enc_open(&op->rq.pkt, 0, op->path, pflags_of(op->fi.flags, true), &a) < 0) {
		op_fail(op, err == ESTALE ? ENOENT : err ? err : ENOMEM);
		return;
	}
	/* Exclusive create is not idempotent; settled in create_opened. */
	create_send(op, !(fi->flags & O_EXCL));
}

/* ---- read --------------------------------------------------------------- */

static void read_next(struct op *op);

static void read_done(struct op *op, const struct sftp_reply *r, int err)
{
	if (err) {
		int e = op_transport_errno(err);

		op_log_error(op, e, "transport");
		fh_op_fail(op, e);
		return;
	}
	if (r->type == SSH_FXP_DATA) {
		size_t n = r->u.data.len;

		if (n > op->size - op->got)
			n = op->size - op->got;
		memcpy(op->data + op->got, r->u.data.p, n);
		op->got += n;
		if (n > 0 && op->got < op->size) {
			read_next(op);
			return;
		}
	} else if (!(r->type == SSH_FXP_STATUS && r->u.status.code == SSH_FX_EOF)) {
		fh_op_fail(op, reply_errno(r));
		return;
	}
	/* The server's end of file, before a write queued past it lands:
	 * what lies in between is a hole. (A short read would also make
	 * the kernel think the file ends here.) */
	if (op->got < op->size && op->queued_end > op->off + op->got) {
		size_t to = op->queued_end - op->off < op->size ?
			(size_t)(op->queued_end - op->off) : op->size;

		memset(op->data + op->got, 0, to - op->got);
		op->got = to;
	}
	fuse_reply_buf(op->req, op->data, op->got);
	control_add_bytes(op->v->ctl, op->got, 0);
	op->req = NULL;
	fh_op_end(op);
}

static void read_next(struct op *op)
{
	struct conn_server sv;
	size_t want = op->size - op->got;

	pool_server(op->v->pool, &sv);
	if (sv.max_read && want > sv.max_read)
		want = sv.max_read;
	op->flags = (unsigned)want;
	fh_dispatch(op);
}

/* Reads op's range directly (no read-ahead); op holds an fh ref. */
static void read_direct(struct op *op)
{
	struct fh *fh = op->fh;
	struct conn_server sv;

	pool_server(op->v->pool, &sv);
	op->got = 0;
	op->err = 0;
	op->flags = (unsigned)(sv.max_read && op->size > sv.max_read ? sv.max_read : op->size);
	op->fh = NULL;
	fh_start(op, fh, FH_READ, read_done);
	fh_put(fh);
}

/* Completes reads served by read-ahead, or sends them directly. */
static void finish_ra_waiters(struct op *w)
{
	while (w) {
		struct op *next = w->next;

		w->next = NULL;
		if (w->err) {
			read_direct(w);
		} else {
			fuse_reply_buf(w->req, w->data, w->got);
			control_add_bytes(w->v->ctl, w->got, 0);
			w->req = NULL;
			fh_op_end(w);
		}
		w = next;
	}
}

/* Bytes to ask for next: the rest of the range, at most max_read. */
static unsigned read_piece(struct op *op)
{
	struct conn_server sv;
	size_t want = op->size - op->got;

	pool_server(op->v->pool, &sv);
	if (sv.max_read && want > sv.max_read)
		want = sv.max_read;
	return (unsigned)want;
}

/* A prefetch: reads its whole chunk (in max_read pieces: a short DATA is
 * not the end of the file, only EOF is), then hands it to read-ahead. */
static void ra_fetch_done(struct op *op, const struct sftp_reply *r, int err)
{
	struct fh *fh = op->fh;
	bool failed = err || !(r->type == SSH_FXP_DATA ||
			       (r->type == SSH_FXP_STATUS && r->u.status.code == SSH_FX_EOF));
	struct op *w;

	if (!failed && r->type == SSH_FXP_DATA) {
		size_t n = r->u.data.len < op->size - op->got ?
			r->u.data.len : op->size - op->got;

		memcpy(op->data + op->got, r->u.data.p, n);
		op->got += n;
		if (n > 0 && op->got < op->size) {
			op->flags = read_piece(op);
			fh_dispatch(op);
			return;
		}
	}
	pthread_mutex_lock(&fh->lock);
	/* The chunk takes op->data over (op_free then frees NULL). */
	w = ra_fill(&fh->ra, op->ra_gen, op->off, &op->data, op->got,
		    op->got < op->size, failed);
	pthread_mutex_unlock(&fh->lock);
	fh_op_end(op);
	finish_ra_waiters(w);
}

/* Sends the prefetches the window wants. A prefetch that fails at once
 * completes the readers parked on its chunk, and their refs may be the
 * handle's last: the loop holds one of its own. */
static void ra_fill_window(struct vfs *v, struct fh *fh)
{
	fh_get(fh);
	for (;;) {
		uint64_t off;
		uint32_t len, gen;
		struct op *pf = NULL;
		bool more;

		pthread_mutex_lock(&fh->lock);
		more = ra_next(&fh->ra, &off, &len);
		gen = fh->ra.gen;
		pthread_mutex_unlock(&fh->lock);
		if (!more)
			break;
		/* A write still queued there, or past it (the READ would end
		 * early), may land after this READ: no prefetch (checked after
		 * ra_next: one queued later drops it, write_queued). */
		if (ino_writes_overlap(v, fh->ino, NULL, off, UINT64_MAX) ||
		    !(pf = op_new(v, NULL, "readahead")) || !(pf->data = malloc(len))) {
			struct op *w;

			/* Fail the chunk so its readers go direct. */
			op_free(pf);
			pthread_mutex_lock(&fh->lock);
			w = ra_fill(&fh->ra, gen, off, NULL, 0, false, true);
			pthread_mutex_unlock(&fh->lock);
			finish_ra_waiters(w);
			break;
		}
		pf->off = off;
		pf->size = len;
		pf->flags = read_piece(pf);
		pf->ra_gen = gen;
		fh_start(pf, fh, FH_READ, ra_fetch_done);
	}
	fh_put(fh);
}

static void read_drained(struct op *op, const struct sftp_attrs *a, int err)
{
	struct fh *fh = op->fh;
	enum ra_result res;

	op->queued_end = ino_queued_end(op->v, op->ino, op->bar_seq);
	pthread_mutex_lock(&fh->lock);
	res = ra_lookup(&fh->ra, op, op->off, op->size);
	pthread_mutex_unlock(&fh->lock);
	control_note_readahead(op->v->ctl, res != RA_MISS);
	ra_fill_window(op->v, fh);
	if (res == RA_HIT)
		finish_ra_waiters(op);
	else if (res == RA_MISS)
		read_direct(op);
	/* RA_WAIT: ra_fetch_done completes it. */
}

void vfs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
	      struct fuse_file_info *fi)
{
	struct vfs *v = vfs_of(req);
	struct fh *fh;
	struct conn_server sv;
	struct op *op;

	if (ctl_read(req, ino, size, off, fi))
		return;
	if (!(fh = fh_of(v, fi))) {
		fuse_reply_err(req, EBADF);
		return;
	}
	/* What the kernel sends, for docs/performance.md's read patterns. */
	log_debug("read fh %llu off %lld size %zu pid %d t %.3f ms",
		  (unsigned long long)fi->fh, (long long)off, size,
		  (int)fuse_req_ctx(req)->pid, (double)clock_mono_ns() / 1e6);
	if ((fi->flags & O_NONBLOCK) && pool_up_count(v->pool) == 0) {
		fuse_reply_err(req, EAGAIN);
		return;
	}
	if (!(op = op_new(v, req, "read")))
		return;
	op->path = fh_name(fh);
	op->off = (uint64_t)off;
	op->size = size;
	if (!(op->data = malloc(size ? size : 1))) {
		op_fail(op, ENOMEM);
		return;
	}
	pool_server(v->pool, &sv);
	op->flags = (unsigned)(sv.max_read && size > sv.max_read ? sv.max_read : size);
	op->ino = ino;
	op->fh = fh;
	fh_get(fh);
	/* Read what write() accepted, through any descriptor: the writes
	 * queued before this read that overlap it reach the server first
	 * (one past it only makes the file longer: read_done). */
	wait_writes(op, op->off, op->off + size, NULL, read_drained);
}

/* ---- the sweeper -------------------------------------------------------- */

/* Takes expired ops off a list (lock held). */
static struct op *take_expired(struct op **list, uint64_t now)
{
	struct op *out = NULL;

	while (*list) {
		struct op *op = *list;

		if (op->rq.deadline && op->rq.deadline <= now) {
			*list = op->next;
			op->next = out;
			out = op;
		} else {
			list = &op->next;
		}
	}
	return out;
}

/* Drops what a released handle still holds past its deadline. */
static void drop_unsent(struct fh *fh)
{
	struct wchunk *c;

	pthread_mutex_lock(&fh->lock);
	for (c = fh->chunks; c; c = c->next)
		if (!c->inflight)
			break;
	pthread_mutex_unlock(&fh->lock);
	if (c)
		drop_after_close(c);
}

static void sweep_one(struct fh *fh, uint64_t now)
{
	struct op *w, *d, *q, *b;
	bool drop, lose;

	pthread_mutex_lock(&fh->lock);
	w = take_expired(&fh->waiters, now);
	d = take_expired(&fh->drainers, now);
	q = take_expired(&fh->writers, now);
	b = take_expired(&fh->barriers, now);
	drop = fh->released && fh->drop_at && now >= fh->drop_at && fh->chunks;
	lose = fh->lost && !fh->open && (fh->waiters || fh->chunks);
	pthread_mutex_unlock(&fh->lock);
	/* A handle that lost its file (no name at its reopen). */
	if (lose)
		fh_lose(fh);
	/* Each waiting op ends through its own step, which knows what it
	 * holds (an open's or create's handle the kernel never saw). */
	for (struct op *n; w; w = n) {
		n = w->next;
		w->next = NULL;
		w->step(w, NULL, -ETIMEDOUT);
	}
	for (struct op *n; d; d = n) {
		n = d->next;
		d->next = NULL;
		/* The data stays queued and keeps being sent. */
		if (d->req)
			op_log_error(d, EIO, "transport");
		fh_op_fail(d, EIO);
	}
	for (struct op *n; q; q = n) {
		n = q->next;
		q->next = NULL;
		write_expired(q);
	}
	for (struct op *n; b; b = n) {
		n = b->next;
		b->next = NULL;
		if (b->wchunks) {
			write_expired(b);
			continue;
		}
		if (b->req)
			op_log_error(b, EIO, "transport");
		fh_op_fail(b, EIO);
	}
	if (drop)
		drop_unsent(fh);
}

void fh_sweep(struct vfs *v, uint64_t now)
{
	struct fh **list = NULL;
	size_t n = 0, cap = 0;

	/* Collect with references so the handles outlive the scan. */
	pthread_mutex_lock(&v->lock);
	for (struct fh *f = v->fhs; f; f = f->next)
		cap++;
	list = cap ? malloc(cap * sizeof(*list)) : NULL;
	for (struct fh *f = v->fhs; f && n < cap && list; f = f->next) {
		fh_get(f);
		list[n++] = f;
	}
	pthread_mutex_unlock(&v->lock);
	for (size_t i = 0; i < n; i++) {
		sweep_one(list[i], now);
		fh_put(list[i]);
	}
	free(list);
	/* And the setattrs waiting for the last handles of hidden files. */
	hidden_sweep(v, now);
}

void fh_drain_all(struct vfs *v)
{
	uint64_t end = clock_mono_ns() + v->op_timeout_ns;
	size_t left;

	/* Give unacknowledged writes up to op_timeout to reach the server. */
	do {
		left = __atomic_load_n(&v->unacked_bytes, __ATOMIC_RELAXED);
		if (left)
			usleep(20 * 1000);
	} while (left && clock_mono_ns() < end);
	if (left) {
		log_err("data lost: %zu bytes unacknowledged at unmount or handover", left);
		control_event_data(v->ctl, "", 0, left, false, true);
	}
}

void fh_free_all(struct vfs *v)
{
	struct fh *fh;

	/* No thread is left to drop these references: free what remains. */
	while ((fh = v->fhs)) {
		v->fhs = fh->next;
		while (fh->chunks) {
			struct wchunk *c = fh->chunks;

			fh->chunks = c->next;
			chunk_free(c);
		}
		ra_release(&fh->ra);
		pthread_mutex_destroy(&fh->lock);
		free(fh);
	}
}

double fh_oldest_unacked(struct vfs *v)
{
	uint64_t now = clock_mono_ns(), oldest = now;

	pthread_mutex_lock(&v->lock);
	for (struct fh *f = v->fhs; f; f = f->next) {
		pthread_mutex_lock(&f->lock);
		if (f->chunks && f->chunks->queued_at < oldest)
			oldest = f->chunks->queued_at;
		pthread_mutex_unlock(&f->lock);
	}
	pthread_mutex_unlock(&v->lock);
	return (double)(now - oldest) / 1e9;
}

/* One handle of the previous daemon back. */
static void restore_one(void *arg, const struct ks_fh *r, int32_t slot)
{
	struct vfs *v = arg;
	struct fh *fh;

	if (r->unacked) {
		char *p = nodes_path(v->nodes, r->ino);

		log_err("data lost: '%s' bytes %llu-%llu were held only by the daemon that died",
			p ? p : "(no name)", (unsigned long long)r->lo, (unsigned long long)r->hi);
		control_event_data(v->ctl, p ? p : "", r->lo, r->hi - r->lo, false, true);
		free(p);
		/* The end counted those bytes; a prefix of them may have
		 * landed: the server's size is the file's again. */
		nodes_end_forget(v->nodes, r->ino);
	}
	if (r->released || !(fh = fh_new(v, r->ino, r->flags))) {
		ks_fh_drop(v->ks, slot);
		return;
	}
	/* Not open on any session yet: the first use reopens it. The loss
	 * is the next write's, fsync's or close's error. */
	fh->slot = slot;
	if (r->unacked || r->err) {
		/* Recorded before the range is cleared: a death in between
		 * reports the loss again rather than not at all. */
		fh->broken = r->unacked || r->err == EIO;
		fh->err = r->err ? r->err : EIO;
		ks_fh_error(v->ks, slot, fh->err);
		ks_fh_unacked(v->ks, slot, 0, 0, 0);
	}
	v->fh_slots[slot] = fh;
}

int fh_restore_all(struct vfs *v)
{
	ks_fhs_each(v->ks, restore_one, v);
	return 0;
}
