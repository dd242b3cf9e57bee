/*
 * fh: the handle object (one open(2) of a file): its references, its
 * slot in the take-over state and the unacknowledged range recorded
 * there, its sticky error, its remote handle (set, lost, a foreign one
 * closed), the encoding and the end of a call bound to it and a failed
 * CLOSE's account, the node queries other files ask (fh_node_open,
 * fh_node_held), and the recreation of a previous daemon's handles
 * (fh_restore_all). Calls nothing above it in the file layer's handle
 * code. The design is described in fh_int.h.
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

/* Hidden files a new daemon removes at once (more wait for their node's
 * next handle to go). */
#define RELEASE_HIDDEN_MAX 64u
/* How long after a flush the release of the same close(2) may still be
 * on its way (the kernel sends it without waiting; it is there within
 * microseconds unless the daemon is very busy). Only a setattr of the
 * folder of an unlinked file waits for it (hidden_when_removed), never
 * longer than this when the descriptor stays open (a dup). */
#define RELEASE_GRACE_NS (200 * NS_PER_MS)

void fh_get(struct fh *fh)
{
	pthread_mutex_lock(&fh->lock);
	fh->refs++;
	pthread_mutex_unlock(&fh->lock);
}

void fh_put(struct fh *fh)
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
	if (!fh_node_open(v, ino)) {
		hidden_release(v, ino);
		/* Its last descriptor is gone, its writes done: the file may
		 * change on the server now (logrotate's copytruncate), so the
		 * next writer appends from the server's size, learnt at its
		 * open, and stat shows that size. */
		nodes_end_forget(v->nodes, ino, false);
	}
	nodes_unpin(v->nodes, ino);
	hidden_put_done(v);
}

struct fh *fh_new(struct vfs *v, uint64_t ino, int flags)
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

char *fh_path(const struct fh *fh)
{
	return nodes_path(fh->v->nodes, fh->ino);
}

char *fh_name(const struct fh *fh)
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

void fh_seen(struct fh *fh, const struct sftp_attrs *a, uint32_t mark)
{
	if (a->flags & SSH_FILEXFER_ATTR_SIZE)
		nodes_ident_seen(fh->v->nodes, fh->ino, a->size,
				 a->flags & SSH_FILEXFER_ATTR_ACMODTIME, a->mtime,
				 node_quiet(fh->v, fh->ino), mark);
}

uint64_t fh_register(struct fh *fh)
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

struct fh *fh_of(struct vfs *v, const struct fuse_file_info *fi)
{
	struct fh *fh = NULL;

	pthread_mutex_lock(&v->lock);
	if (fi->fh >= 1 && fi->fh <= (uint64_t)v->fh_cap)
		fh = v->fh_slots[fi->fh - 1];
	pthread_mutex_unlock(&v->lock);
	return fh;
}

struct fh *fh_call_start(fuse_req_t req, fuse_ino_t ino,
			 const struct fuse_file_info *fi, int ctl_errnum,
			 bool nonblock)
{
	struct vfs *v = vfs_of(req);
	struct fh *fh;

	if (is_ctl_ino(ino)) {
		fuse_reply_err(req, ctl_errnum);
		return NULL;
	}
	if (!(fh = fh_of(v, fi))) {
		fuse_reply_err(req, EBADF);
		return NULL;
	}
	if (nonblock && (fi->flags & O_NONBLOCK) && pool_up_count(v->pool) == 0) {
		fuse_reply_err(req, EAGAIN);
		return NULL;
	}
	return fh;
}

struct op *fh_op_new(fuse_req_t req, struct fh *fh, const char *name)
{
	struct op *op = op_new(fh->v, req, name);

	if (op)
		op->path = fh_name(fh);
	return op;
}

void fh_set_err_locked(struct fh *fh, int err)
{
	if (fh->err)
		return;
	fh->err = err;
	if (fh->slot >= 0 && fh->v->ks)
		ks_fh_error(fh->v->ks, fh->slot, err);
}

int fh_take_err_locked(struct fh *fh)
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

void fh_unacked_range_locked(struct fh *fh)
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

void fh_record_unacked_locked(struct fh *fh)
{
	if (fh->slot < 0 || !fh->v->ks)
		return;
	ks_fh_unacked(fh->v->ks, fh->slot, fh->unacked,
		      fh->chunks ? fh->ulo : UINT64_MAX, fh->chunks ? fh->uhi : 0);
}

uint32_t fh_pflags_of(int flags, bool creating)
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

/* Encodes and sends op (kind in op->stage) on the handle's session, or
 * parks it until the handle is reopened. Lock held by caller. */
typedef int (*fh_enc_fn)(struct op *op, struct fh *fh);

void fh_set_handle(struct fh *fh, const struct sftp_reply *r,
		   const struct sreq *rq)
{
	memcpy(fh->h, r->u.handle.h, r->u.handle.len);
	fh->hlen = r->u.handle.len;
	fh->conn_idx = rq->served_by;
	fh->gen = rq->served_gen;
	fh->open = true;
}

static void reopen_closed(struct op *cop, const struct sftp_reply *r, int err)
{
	op_free(cop);
}

void fh_close_foreign(struct op *rop, const uint8_t *h, size_t hlen)
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

bool fh_reopen_moved(const struct op *rop)
{
	char *now = fh_path(rop->fh);
	bool moved = now && strcmp(now, rop->path) != 0;

	free(now);
	return moved;
}

void fh_lost(struct fh *fh, uint64_t gen, int idx)
{
	pthread_mutex_lock(&fh->lock);
	if (fh->open && fh->conn_idx == idx && fh->gen == gen)
		fh->open = false;
	pthread_mutex_unlock(&fh->lock);
}

int fh_encode(struct op *op, struct fh *fh)
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

void fh_op_end(struct op *op)
{
	struct fh *fh = op->fh;

	op->fh = NULL;
	op_free(op);
	if (fh)
		fh_put(fh);
}

void fh_op_fail(struct op *op, int e)
{
	op_note_error(op, e);
	if (op->req)
		fuse_reply_err(op->req, e);
	op->req = NULL;
	fh_op_end(op);
}

int fh_take_err(struct fh *fh)
{
	int e;

	pthread_mutex_lock(&fh->lock);
	e = fh_take_err_locked(fh);
	pthread_mutex_unlock(&fh->lock);
	return e;
}

bool fh_failed_for_good(struct fh *fh)
{
	bool gone;

	pthread_mutex_lock(&fh->lock);
	gone = fh->broken || fh->lost;
	pthread_mutex_unlock(&fh->lock);
	return gone;
}

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

void fh_close_done(struct op *op, const struct sftp_reply *r, int err)
{
	if (err)
		close_failed(op->fh, op_transport_errno(err), "transport");
	else if (!(r->type == SSH_FXP_STATUS && r->u.status.code == SSH_FX_OK))
		close_failed(op->fh, op_reply_errno(r), "server");
	fh_op_end(op);
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
		nodes_end_forget(v->nodes, r->ino, true);
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
