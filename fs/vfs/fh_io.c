/*
 * fh_io: a handle's traffic on its session. The calls bound to the remote
 * handle (READ, fsync@, FSTAT, CLOSE) are encoded late, on the session the
 * handle lives on, or parked until it is reopened; the reopen after that
 * session died (without O_CREAT|O_EXCL|O_TRUNC, checked with the "same
 * file?" rule) or the handle's loss; write-behind chunks sent, resent
 * after a reopen, acknowledged or refused, and the window room an
 * acknowledgment frees for waiting writers; the reads served straight
 * from the server; the CLOSE of a released handle once drained. One
 * file because each of these ends in another (an acknowledgment admits
 * writers and may close the handle, a send may start a reopen, a reopen
 * resends chunks and parked reads). The design is described in fh_int.h.
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

#include "fh_int.h"

static void reopen_locked(struct fh *fh);
static void chunks_send_locked(struct fh *fh, struct wchunk **tosend);
static void chunk_retire(struct wchunk *c, int err);
static void chunk_done(struct sreq *rq, const struct sftp_reply *r, int err);
static void close_if_released(struct fh *fh);
static void read_next(struct op *op);

/* Times one reopen waits for name changes in flight (moving.h) before
 * "no such file" is its answer. */
#define REOPEN_WAITS_MAX 8u

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

/* A call that fails because its handle failed for good (its file is
 * not the one it had, or has no name): said as such, not as the link's
 * failure its step would log (op_log_error keeps the first cause). */
static void fail_lost(struct op *op)
{
	if (op->req)
		op_log_error(op, EIO, "lost");
	op->step(op, NULL, -EIO);
}

void fh_lose(struct fh *fh)
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
		fh_set_err_locked(fh, EIO);
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
	while (waiters) {
		struct op *next = waiters->next;

		waiters->next = NULL;
		fail_lost(waiters);
		waiters = next;
	}
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
	fh_submit_chunks(tosend);
	if (fail) {
		uint64_t off = 0, len = 0;

		log_warn("reopen '%s' failed: %s", p ? p : "?", strerror(fail));
		pthread_mutex_lock(&fh->lock);
		if (fh->chunks)
			fh_set_err_locked(fh, fail);
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
	fh_close_foreign(rop, (const uint8_t *)rop->data, rop->size);
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
		fail = err ? op_transport_errno(err) : op_reply_errno(r);
		/* The file was renamed (or hidden) after the OPEN left, on
		 * another session: the name it asked for is gone, the node's
		 * new one leads to the file. The rename's reply may not be in
		 * yet: then the reopen waits for it first (checked first: its
		 * mark goes only once the node has moved). */
		if (fail == ENOENT && reopen_waits(rop))
			return;
		if (fail == ENOENT && fh_reopen_moved(rop)) {
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
		fh_close_foreign(rop, r->u.handle.h, r->u.handle.len);
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
	if (sftp_enc_open(&rop->rq.pkt, 0, path, fh_pflags_of(fh->flags, false),
			  &(struct sftp_attrs){ 0 }) < 0) {
		fh->refs--;
		op_free(rop);
		return;
	}
	fh->reopening = true;
	fh->open = false;
	op_send(rop, reopen_done, true);
}

void fh_dispatch(struct op *op)
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
		fail_lost(op);
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

void fh_start(struct op *op, struct fh *fh, int kind, op_step_fn step)
{
	op->fh = fh;
	fh_get(fh);
	op->stage = kind;
	op->step = step;
	op->rq.done = fh_op_done;
	op->rq.idempotent = false;
	fh_dispatch(op);
}

/*
 * Prepares c for sending on the handle's session and links it on *tosend,
 * or starts a reopen when the handle is closed. Lock held by the caller,
 * who submits the list with fh_submit_chunks() after unlocking: a refused
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
	c->rq.encode = fh_chunk_encode;
	c->rq.done = chunk_done;
	c->rq.type = SSH_FXP_WRITE;
	c->rq.conn_idx = fh->conn_idx;
	c->rq.conn_gen = fh->gen;
	c->inflight = true;
	c->snext = *tosend;
	*tosend = c;
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
		if (fh_sent_now_locked(fh, c))
			continue;
		if (c->inflight)
			return;
		chunk_prep_locked(c, tosend);
		if (!c->inflight)
			return;   /* closed: the reopen sends them */
	}
}

struct op *fh_admit_writers_locked(struct fh *fh, struct wchunk **tosend)
{
	struct op *done = NULL, **tail = &done;

	while (fh->writers &&
	       fh_room_for_locked(fh, fh->writers->size,
			       fh_chunk_count(fh->writers->wchunks))) {
		struct op *w = fh->writers;

		fh->writers = w->next;
		w->next = NULL;
		fh_chunks_queue_locked(fh, w->wchunks, tosend);
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
	*writers = fh_admit_writers_locked(fh, tosend);
	return d;
}

void fh_write_queued(struct vfs *v, uint64_t ino, int kind, uint64_t at,
		  size_t size)
{
	if (kind == W_AT)
		nodes_end_update(v->nodes, ino, at + size);
	/* Data prefetched through any handle is stale now. After the
	 * chunks are queued, not before: a prefetch started in between
	 * sees them (ra_fill_window) or is dropped here. */
	fh_ino_changed(v, ino);
}

void fh_reply_writers(struct op *w)
{
	while (w) {
		struct op *next = w->next;

		w->next = NULL;
		fh_write_queued(w->v, w->ino, w->stage, w->off, w->size);
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
		fh_unacked_range_locked(fh);
	fh_record_unacked_locked(fh);
	if (err) {
		fh_set_err_locked(fh, err);
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
	if (fh->open && fh->chunks && !fh_sent_now_locked(fh, fh->chunks_tail))
		chunks_send_locked(fh, &tosend);
	d = collect_waiters(fh, &w, &tosend);
	b = fh->barriers ? fh_settled_locked(fh) : NULL;
	pthread_mutex_unlock(&fh->lock);
	fh_submit_chunks(tosend);
	if (err) {
		char *p = fh_name(fh);

		log_err("write '%s' bytes %llu-%llu refused by the server: %s",
			p ? p : "?", (unsigned long long)c->off,
			(unsigned long long)(c->off + c->len), strerror(err));
		free(p);
	}
	fh_chunk_free(c);
	fh_run_drainers(d);
	fh_run_drainers(b);
	fh_reply_writers(w);
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

void fh_drop_after_close(struct wchunk *c)
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
			fh_drop_after_close(c);
			return;
		}
		chunks_send_locked(fh, &tosend);
		pthread_mutex_unlock(&fh->lock);
		fh_submit_chunks(tosend);
		return;
	}
	if (r->type == SSH_FXP_STATUS && r->u.status.code == SSH_FX_OK) {
		fh_chunk_adapt(fh, c, clock_mono_ns());
		nodes_ident_acked(fh->v->nodes, fh->ino, c->off + c->len);
		control_add_bytes(fh->v->ctl, 0, c->len);
		chunk_retire(c, 0);
	}
	else if (r->type == SSH_FXP_STATUS && r->u.status.code == SSH_FX_FAILURE)
		chunk_check_space(c);
	else
		chunk_retire(c, op_reply_errno(r));
}

void fh_chunks_queue_locked(struct fh *fh, struct wchunk *list,
			 struct wchunk **tosend)
{
	uint64_t now = clock_mono_ns();
	/* Sent at once only behind chunks all out on this session (the
	 * usual case); else in order by chunks_send_locked. */
	bool direct = !fh->chunks || fh_sent_now_locked(fh, fh->chunks_tail);

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
	fh_record_unacked_locked(fh);
}

void fh_ino_changed(struct vfs *v, uint64_t ino)
{
	struct { struct fh *fh; struct op *w; } got[16];
	struct file_nodes fn;
	size_t n;

	fh_file_nodes_of(v, ino, &fn);

	/* Each handle is reset once (its window goes to 0), so taking them
	 * 16 at a time ends. The waiters are read outside the locks. */
	do {
		n = 0;
		pthread_mutex_lock(&v->lock);
		for (struct fh *f = v->fhs; f && n < 16; f = f->next) {
			if (!fh_file_nodes_has(&fn, f->ino))
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
			fh_finish_ra_waiters(got[i].w);
			fh_put(got[i].fh);
		}
	} while (n == 16);
}

void fh_close_drained(struct op *op, const struct sftp_attrs *a, int err)
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
	fh_start(op, fh, FH_CLOSE, fh_close_done);
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
		fh_when_drained(cop, fh, fh_close_drained);
}

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
		fh_op_fail(op, op_reply_errno(r));
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

void fh_read_direct(struct op *op)
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

void fh_finish_ra_waiters(struct op *w)
{
	while (w) {
		struct op *next = w->next;

		w->next = NULL;
		if (w->err) {
			fh_read_direct(w);
		} else {
			fuse_reply_buf(w->req, w->data, w->got);
			control_add_bytes(w->v->ctl, w->got, 0);
			w->req = NULL;
			fh_op_end(w);
		}
		w = next;
	}
}
