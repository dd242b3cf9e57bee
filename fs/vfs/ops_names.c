/*
 * ops_names: the non-idempotent calls that make or remove a name: mkdir,
 * symlink, link, unlink, rmdir, and their settlement (a lost reply, a
 * refused resent call, SFTP's generic "failure" refined by an LSTAT of
 * the name; docs/retries.md). The design is described in meta_int.h.
 */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "moving.h"
#include "vfs_int.h"

#include "meta_int.h"

static void create_name_done(struct op *op, const struct sftp_reply *r, int err);
static void remove_done(struct op *op, const struct sftp_reply *r, int err);

void meta_settle(struct op *op, const struct sftp_reply *r, int err,
	    const char *path,
	    void (*then)(struct op *, const struct sftp_attrs *, int))
{
	op->lost = err != 0;
	op->refused = err ? 0 : r->type == SSH_FXP_STATUS ? r->u.status.code :
		SSH_FX_FAILURE;
	op_stat_path(op, path, then);
}

void meta_settled_done(struct op *op)
{
	log_info("%s '%s': reply lost, settled by checking the server: done",
		 op->name, op->path);
}

/* Answers a resent call the server refused as any refusal (`done` is the
 * call's reply step; the call no longer counts as resent). */
static void answer_refusal(struct op *op, op_step_fn done)
{
	struct sftp_reply r = { .type = SSH_FXP_STATUS };

	r.u.status.code = op->refused;
	op->resent = false;
	done(op, &r, 0);
}

void meta_settled_not_done(struct op *op, op_step_fn done)
{
	if (!op->lost) {
		answer_refusal(op, done);
		return;
	}
	log_info("%s '%s': reply lost, not done on the server: sending it again",
		 op->name, op->path);
	op->resent = true;
	op->rq.cache_ok = false;
	op->resend(op);
}

void meta_settled_unknown(struct op *op, op_step_fn done)
{
	if (!op->lost) {
		answer_refusal(op, done);
		return;
	}
	op_log_error(op, EIO, "transport");
	op_fail(op, EIO);
}

/* The new name exists: its entry. A hard link (op->ino, its source)
 * joins its source's link group first: one file, one identity. */
static void name_made(struct op *op, const struct sftp_attrs *a)
{
	struct nodes *t = op->v->nodes;
	uint64_t id;

	if (!op->ino || !(id = nodes_ref(t, op->parent, op->leaf))) {
		vfs_reply_entry(op, a);
		return;
	}
	nodes_twin(t, op->ino, id);
	vfs_reply_entry(op, a);
	nodes_forget(t, id, 1);
}

static void entry_then(struct op *op, const struct sftp_attrs *a, int err)
{
	if (a)
		name_made(op, a);
	else
		op_fail(op, err);
}

void meta_refine_exists(struct op *op, const struct sftp_attrs *a, int err)
{
	if (!a && err != ENOENT)
		op_log_error(op, EIO, err == EIO ? "transport" : "server");
	op_fail(op, a ? EEXIST : op->err);
}

/* Settling a create: the name exists -> it was done. */
static void settle_created(struct op *op, const struct sftp_attrs *a, int err)
{
	if (a) {
		meta_settled_done(op);
		name_made(op, a);
	} else if (err == ENOENT) {
		meta_settled_not_done(op, create_name_done);
	} else {
		meta_settled_unknown(op, create_name_done);
	}
}

static void create_name_done(struct op *op, const struct sftp_reply *r, int err)
{
	if (!err && op->rq.type == SSH_FXP_EXTENDED &&
	    vfs_ext_refused(op->v, SFTP_EXT_HARDLINK, r)) {
		op_fail(op, EXDEV);
		return;
	}
	if (op_maybe_done(op, r, err)) {
		meta_settle(op, r, err, op->path, settle_created);
		return;
	}
	if (err) {
		fail_transport(op, err);
		return;
	}
	if (r->type == SSH_FXP_STATUS && r->u.status.code == SSH_FX_OK) {
		op_stat_path(op, op->path, entry_then);
	} else if (r->type == SSH_FXP_STATUS && r->u.status.code == SSH_FX_FAILURE) {
		op->err = EIO;
		op_stat_path(op, op->path, meta_refine_exists);
	} else {
		op_fail(op, op_reply_errno(r));
	}
}

/* Sends op->rq.pkt, freshly encoded by `enc` (< 0: not encodable). */
static void send_encoded(struct op *op, int enc, op_step_fn step)
{
	if (enc < 0) {
		op_fail(op, enc == BUF_E_TOOBIG ? ENAMETOOLONG : ENOMEM);
		return;
	}
	op_send(op, step, false);
}

static void mkdir_send(struct op *op)
{
	struct sftp_attrs a = { .flags = SSH_FILEXFER_ATTR_PERMISSIONS,
				.perm = op->mode };

	buf_reset(&op->rq.pkt);
	send_encoded(op, sftp_enc_mkdir(&op->rq.pkt, 0, op->path, &a),
		     create_name_done);
}

void vfs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct op *op;

	if (hidden_name_refused(req, name) ||
	    !(op = meta_name_op(req, parent, name, "mkdir")))
		return;
	op->mode = mode & 07777 & ~fuse_req_ctx(req)->umask;
	op->resend = mkdir_send;
	mkdir_send(op);
}

/* op->path2 is the link's target. */
static void symlink_send(struct op *op)
{
	buf_reset(&op->rq.pkt);
	send_encoded(op, sftp_enc_symlink(&op->rq.pkt, 0, op->path2, op->path),
		     create_name_done);
}

void vfs_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		 const char *name)
{
	struct op *op;

	if (hidden_name_refused(req, name) ||
	    !(op = meta_name_op(req, parent, name, "symlink")))
		return;
	if (!(op->path2 = strdup(link))) {
		op_fail(op, ENOMEM);
		return;
	}
	op->resend = symlink_send;
	symlink_send(op);
}

/* op->path2 is the existing name. */
static void link_send(struct op *op)
{
	buf_reset(&op->rq.pkt);
	send_encoded(op, sftp_enc_hardlink(&op->rq.pkt, 0, op->path2, op->path),
		     create_name_done);
}

void vfs_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
	      const char *newname)
{
	struct op *op;
	int err;

	if (is_ctl_ino(ino)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	if (hidden_name_refused(req, newname) ||
	    !(op = meta_name_op(req, newparent, newname, "link")))
		return;
	op->ino = ino;  /* the source: the new name joins its link group */
	/* No hardlink@: EXDEV, so callers that consolidate with link() fall
	 * back to copying, as they do across filesystems. */
	if (vfs_missing_ext(op->v, SFTP_EXT_HARDLINK)) {
		op_fail(op, EXDEV);
		return;
	}
	if ((err = nodes_path_get(op->v->nodes, ino, NULL, &op->path2))) {
		op_fail(op, err);
		return;
	}
	op->resend = link_send;
	link_send(op);
}

/* Settling a removal: the name gone -> it was done. */
static void settle_removed(struct op *op, const struct sftp_attrs *a, int err)
{
	if (!a && err == ENOENT) {
		meta_settled_done(op);
		nodes_unlink(op->v->nodes, op->parent, op->leaf);
		op_fail(op, 0);
	} else if (a) {
		meta_settled_not_done(op, remove_done);
	} else {
		meta_settled_unknown(op, remove_done);
	}
}

static void refine_remove(struct op *op, const struct sftp_attrs *a, int err)
{
	bool rmdir = op->flags;

	if (!a)
		op_fail(op, err == ENOENT ? ENOENT : EIO);
	else if (rmdir)
		op_fail(op, (a->perm & S_IFMT) == S_IFDIR ? ENOTEMPTY : ENOTDIR);
	else
		op_fail(op, (a->perm & S_IFMT) == S_IFDIR ? EISDIR : EIO);
}

static void remove_done(struct op *op, const struct sftp_reply *r, int err)
{
	if (op_maybe_done(op, r, err)) {
		meta_settle(op, r, err, op->path, settle_removed);
		return;
	}
	if (err) {
		fail_transport(op, err);
		return;
	}
	if (r->type == SSH_FXP_STATUS && r->u.status.code == SSH_FX_OK) {
		nodes_unlink(op->v->nodes, op->parent, op->leaf);
		op_fail(op, 0);
	} else if (r->type == SSH_FXP_STATUS && r->u.status.code == SSH_FX_FAILURE) {
		op_stat_path(op, op->path, refine_remove);
	} else {
		op_fail(op, op_reply_errno(r));
	}
}

static void remove_resend(struct op *op)
{
	buf_reset(&op->rq.pkt);
	send_encoded(op, sftp_enc_path(&op->rq.pkt, op->flags ? SSH_FXP_RMDIR :
				       SSH_FXP_REMOVE, 0, op->path), remove_done);
}

/* Sends the REMOVE or RMDIR (the signature of a op_stat_path step). */
static void remove_send(struct op *op, const struct sftp_attrs *a, int err)
{
	op->resend = remove_resend;
	remove_resend(op);
}

static void remove_name(fuse_req_t req, fuse_ino_t parent, const char *name,
			bool rmdir)
{
	struct op *op = meta_name_op(req, parent, name, rmdir ? "rmdir" : "unlink");
	uint64_t id;

	if (!op)
		return;
	op->flags = rmdir;
	id = nodes_find(op->v->nodes, parent, name);
	/* An open file keeps working under a hidden name (hidden.c); a
	 * folder lets its hidden files still open go first. */
	if (!rmdir && id && fh_node_held(op->v, id))
		hidden_unlink(op, id, remove_send);
	else if (rmdir && id)
		hidden_evacuate(op, id, fh_node_held, remove_send);
	else
		remove_send(op, NULL, 0);
}

void vfs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_name(req, parent, name, false);
}

void vfs_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_name(req, parent, name, true);
}
