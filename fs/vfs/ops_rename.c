/*
 * ops_rename: rename, settled like the other non-idempotent calls
 * (ops_names.c): posix-rename@ when the server has it, else RENAME, its
 * "failure" refined by LSTATs of source and target, the replace of an
 * existing target handed to rename_fallback.c; a target with open
 * handles is first hidden (hidden.c). The design is described in
 * meta_int.h.
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

static void rename_done(struct op *op, const struct sftp_reply *r, int err);
static void rename_send(struct op *op, bool posix);

static void settle_renamed_new(struct op *op, const struct sftp_attrs *a, int err)
{
	if (a) {
		meta_settled_done(op);
		rename_ok(op);
	} else {
		meta_settled_unknown(op, rename_done);
	}
}

/* Settling a rename: the old name gone and the new one there -> done. */
static void settle_renamed_old(struct op *op, const struct sftp_attrs *a, int err)
{
	if (!a && err == ENOENT)
		op_stat_path(op, op->path2, settle_renamed_new);
	else if (a)
		meta_settled_not_done(op, rename_done);
	else
		meta_settled_unknown(op, rename_done);
}

/* A rename the server refused with "failure" (posix-rename@ says only
 * that for ENOTEMPTY, EBUSY, ...): the types of the two names tell
 * which. op->mode is the source's type. */
static void refine_rename_target(struct op *op, const struct sftp_attrs *a, int err)
{
	mode_t t = a && (a->flags & SSH_FILEXFER_ATTR_PERMISSIONS) ? a->perm : 0;

	if (!a)  /* no target (or no answer): a reason it did not name */
		hidden_replace_undo(op, EIO);
	else if (S_ISDIR(t) && S_ISDIR(op->mode))
		/* a folder over a folder fails only when the target has
		 * entries (an empty one is replaced) */
		hidden_replace_undo(op, ENOTEMPTY);
	else if (S_ISDIR(t))
		hidden_replace_undo(op, EISDIR);
	else if (S_ISDIR(op->mode))
		hidden_replace_undo(op, ENOTDIR);
	else
		hidden_replace_undo(op, EIO);
}

static void refine_rename_source(struct op *op, const struct sftp_attrs *a, int err)
{
	if (!a) {
		hidden_replace_undo(op, err == ENOENT ? ENOENT : EIO);
		return;
	}
	op->mode = (a->flags & SSH_FILEXFER_ATTR_PERMISSIONS) ? a->perm : S_IFREG;
	op_stat_path(op, op->path2, refine_rename_target);
}

static void rename_resend(struct op *op)
{
	rename_send(op, op->stage == 0);
}

static void rename_done(struct op *op, const struct sftp_reply *r, int err)
{
	bool plain = op->stage == 1;

	if (op_maybe_done(op, r, err)) {
		meta_settle(op, r, err, op->path, settle_renamed_old);
		return;
	}
	if (err) {
		op_log_error(op, op_transport_errno(err), "transport");
		hidden_replace_undo(op, op_transport_errno(err));
		return;
	}
	if (r->type == SSH_FXP_STATUS && r->u.status.code == SSH_FX_OK) {
		rename_ok(op);
		return;
	}
	if (op->stage == 0 && vfs_ext_refused(op->v, SFTP_EXT_POSIX_RENAME, r)) {
		rename_send(op, false);
		return;
	}
	/* Plain v3 RENAME refuses an existing target (and says only
	 * "failure"): the documented, non-atomic fallback replaces it. */
	if (plain && !(op->flags & RENAME_NOREPLACE) &&
	    r->type == SSH_FXP_STATUS && r->u.status.code == SSH_FX_FAILURE) {
		rename_fallback(op);
		return;
	}
	if (r->type == SSH_FXP_STATUS && r->u.status.code == SSH_FX_FAILURE &&
	    (op->flags & RENAME_NOREPLACE)) {
		op->err = EIO;
		op_stat_path(op, op->path2, meta_refine_exists);
		return;
	}
	if (r->type == SSH_FXP_STATUS && r->u.status.code == SSH_FX_FAILURE) {
		op_stat_path(op, op->path, refine_rename_source);
		return;
	}
	hidden_replace_undo(op, op_reply_errno(r));
}

static void rename_send(struct op *op, bool posix)
{
	buf_reset(&op->rq.pkt);
	if ((posix ? sftp_enc_posix_rename(&op->rq.pkt, 0, op->path, op->path2)
		   : sftp_enc_rename(&op->rq.pkt, 0, op->path, op->path2)) < 0) {
		op_fail(op, ENOMEM);
		return;
	}
	if (!posix && op->stage == 0)
		op->stage = 1;
	op_send(op, rename_done, false);
}

/* The rename itself (the signature of a op_stat_path step). */
static void rename_start(struct op *op, const struct sftp_attrs *a, int err)
{
	/* NOREPLACE wants plain RENAME, which refuses an existing target. */
	rename_send(op, !(op->flags & RENAME_NOREPLACE) &&
		    !vfs_missing_ext(op->v, SFTP_EXT_POSIX_RENAME));
}

/* Whether node id's file has names the node table no longer follows
 * (a link group that lost a named member, identity.h "shared"). */
static bool maybe_linked(struct nodes *t, uint64_t id)
{
	struct ident x;

	return id && nodes_ident_get(t, id, &x) && x.shared;
}

/* Whether two names may be links of one file: SFTP v3 has no inode
 * number, but one file has one set of attributes. */
static bool may_be_one_file(const struct sftp_attrs *a, const struct sftp_attrs *b)
{
	const uint32_t need = SSH_FILEXFER_ATTR_SIZE | SSH_FILEXFER_ATTR_PERMISSIONS |
			      SSH_FILEXFER_ATTR_ACMODTIME;

	if ((a->flags & need) != need || (b->flags & need) != need)
		return true;  /* cannot tell: assume the worst */
	return a->size == b->size && a->perm == b->perm && a->mtime == b->mtime &&
	       (!(a->flags & b->flags & SSH_FILEXFER_ATTR_UIDGID) ||
		(a->uid == b->uid && a->gid == b->gid));
}

/* The target's attributes, when the source or the target has names the
 * table does not follow: when they match the source's, the two may be
 * hard links of one file, for which rename(2) does nothing; moving the
 * target aside would take that file's name away. Then the rename is sent
 * as it is. */
static void target_seen(struct op *op, const struct sftp_attrs *a, int err)
{
	if (a && !may_be_one_file(&op->pre, a)) {
		hidden_replace(op, op->ino, rename_start);
		return;
	}
	op->have_pre = a != NULL;  /* maybe one file: the names swap */
	rename_start(op, NULL, 0);
}

static void source_seen(struct op *op, const struct sftp_attrs *a, int err)
{
	if (!a) {
		rename_start(op, NULL, 0);  /* it fails as it will */
		return;
	}
	op->pre = *a;
	op_stat_path(op, op->path2, target_seen);
}

void vfs_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		fuse_ino_t newparent, const char *newname, unsigned int flags)
{
	struct op *op;
	uint64_t victim, src;
	int err;

	if (flags & ~RENAME_NOREPLACE) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (strlen(newname) > NAME_MAX_BYTES) {
		fuse_reply_err(req, ENAMETOOLONG);
		return;
	}
	if (ctl_protected(newparent, newname)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	if (hidden_name_refused(req, newname) || hidden_name_refused(req, name) ||
	    !(op = meta_name_op(req, parent, name, "rename")))
		return;
	op->newparent = newparent;
	op->flags = flags;
	op->resend = rename_resend;
	if (!(op->leaf2 = strdup(newname))) {
		op_fail(op, ENOMEM);
		return;
	}
	if ((err = nodes_path_get(op->v->nodes, newparent, newname, &op->path2))) {
		op_fail(op, err == ESTALE ? ENOENT : err);
		return;
	}
	/* Both names move (the target aside when it is open): a reopen
	 * under either waits for the outcome (moving.h). */
	moving_mark(op, op->path);
	moving_mark(op, op->path2);
	/* A file open at the target keeps working under a hidden name
	 * (hidden.c); not when both names are one file (nothing changes). */
	victim = nodes_find(op->v->nodes, newparent, newname);
	src = nodes_find(op->v->nodes, parent, name);
	if (!(flags & RENAME_NOREPLACE) && victim && victim != src &&
	    !nodes_same_file(op->v->nodes, src, victim) && fh_node_held(op->v, victim)) {
		op->ino = victim;
		if (maybe_linked(op->v->nodes, src) || maybe_linked(op->v->nodes, victim))
			op_stat_path(op, op->path, source_seen);
		else
			hidden_replace(op, victim, rename_start);
	} else if (!(flags & RENAME_NOREPLACE) && victim && victim != src) {
		/* A folder holding only hidden files is empty to the
		 * caller: they go first, as for rmdir (none: at once). */
		hidden_evacuate_target(op, victim, fh_node_held, rename_start);
	} else {
		rename_start(op, NULL, 0);
	}
}
