/*
 * ops_file: the FUSE calls that make and end a handle, and those that
 * wait for its writes: open, create (OPEN with a STAT behind it on the
 * same session), flush, fsync (fsync@ after the queue drained), release
 * (CLOSE once the queue drained; a handle released with data still
 * unacknowledged lives on until it drains or its deadline). The handle
 * machinery is in fh.c, fh_chunk.c, fh_wait.c, fh_io.c, fh_write.c,
 * fh_read.c and fh_sweep.c (fh_int.h).
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

static void create_send(struct op *op, bool idempotent);

/* Every write of fh is acknowledged: the file's other names (made by
 * link()) show a size and mtime that may be stale now. */
static void links_written(struct op *op, struct fh *fh)
{
	if (writable(fh->flags))
		vfs_links_changed(op->v, fh->ino);
}

/* The sticky error of fh for op, logged as "lost" when the handle
 * failed for good (its data died with a daemon, or its file is not the
 * one it had); a server's refusal is logged by op_fail as before. */
static int sticky_err(struct op *op, struct fh *fh)
{
	int e = fh_take_err(fh);

	if (e == EIO && fh_failed_for_good(fh))
		op_log_error(op, e, "lost");
	return e;
}

static void flush_drained(struct op *op, const struct sftp_attrs *a, int err)
{
	links_written(op, op->fh);
	fh_op_fail(op, sticky_err(op, op->fh));
}

void vfs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fh *fh;
	struct op *op;

	if (!(fh = fh_call_start(req, ino, fi, 0, false)) ||
	    !(op = fh_op_new(req, fh, "flush")))
		return;
	pthread_mutex_lock(&fh->lock);
	fh->flushed_ns = clock_mono_ns();
	pthread_mutex_unlock(&fh->lock);
	fh_when_drained(op, fh, flush_drained);
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
	int e = sticky_err(op, op->fh);
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
		e = op_reply_errno(r);
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
		fh_op_fail(op, sticky_err(op, fh));
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
	struct fh *fh;
	struct op *op;

	if (!(fh = fh_call_start(req, ino, fi, 0, false)) ||
	    !(op = fh_op_new(req, fh, "fsync")))
		return;
	fh_when_drained(op, fh, fsync_drained);
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
		fh_when_drained(op, fh, fh_close_drained);
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
		fh_when_drained(cop, fh, fh_close_drained);
	fh_put(fh);
}

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
		op_fail(op, err ? op_transport_errno(err) : op_reply_errno(r));
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
		op_fail(op, op_reply_errno(r));
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
	    sftp_enc_open(&op->rq.pkt, 0, op->path, fh_pflags_of(fi->flags, true),
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
	if (sftp_enc_open(&op->rq.pkt, 0, op->path, fh_pflags_of(op->fi.flags, true),
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
				  fh_pflags_of(op->fi.flags, false),
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
		op_fail(op, op_reply_errno(r));
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
	    sftp_enc_open(&op->rq.pkt, 0, op->path, fh_pflags_of(op->fi.flags, true), &a) < 0) {
		op_fail(op, err == ESTALE ? ENOENT : err ? err : ENOMEM);
		return;
	}
	/* Exclusive create is not idempotent; settled in create_opened. */
	create_send(op, !(fi->flags & O_EXCL));
}
