/*
 * hidden: files unlinked while open, the libfuse way. POSIX lets a
 * descriptor outlive its file's last name; SFTP has no such thing (a
 * handle on a removed file works on some servers and not after a
 * reopen). So the unlink of a file that has open handles renames it on
 * the server to a hidden name in the same folder:
 *
 *   .steadyfs_hidden<node id, 16 hex><random, 8 hex>
 *
 * The node takes that name (nodes_hide): its path, and so every reopen of
 * its handles, follows, the take-over state records it (a restarted
 * daemon still knows it), getattr shows nlink 0, and the name is neither
 * listed nor found by a LOOKUP (hidden_ours: only a name of exactly this
 * form that is in the node table as hidden; no such name is made or
 * renamed through the mount, hidden_name_refused). When the last handle of the node is gone the hidden file is
 * removed (which moves its folder's mtime once more, unlike a local
 * disk: putting the times back would race the caller's own utimens of
 * that folder; a setattr setting the folder's mtime waits for the
 * removal instead, hidden_when_removed). A rename onto a
 * file with open handles moves that file aside the same way first
 * (hidden_replace), so its descriptors keep reading and writing the
 * replaced file. rmdir of a folder that holds nothing but hidden files
 * moves those still open to the mount's root first, so the folder can
 * go, as on a local disk; so does a rename of a folder onto it (which
 * puts them back when the rename fails).
 *
 * Each RENAME that gives a file a hidden name, or moves a hidden file to
 * another folder, is recorded in the take-over state before it is sent
 * (intend) and forgotten once the node has the new name or the move
 * failed: a daemon killed in between (after the server moved the file,
 * before its reply was read) leaves the successor the new place, which it
 * settles by looking at the server (hidden_settle_restored): the file
 * there is the node's, or, held by no handle, removed.
 *
 * Split by idea (hidden_int.h): the names, the records, unlink and rename
 * over an open file and the moves a dead daemon left are here; the
 * removal after the last handle is in hidden_remove.c, folders holding
 * hidden files (rmdir, a rename onto one, its undo) in hidden_evac.c.
 *
 * Not seen by this: a hidden file left by a steadyfs killed together with
 * its keeper (the take-over state is gone with it): it stays on the
 * server, where, no longer in the node table, it is listed like any file
 * and can be removed through the mount (docs/retries.md).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "clock.h"
#include "log.h"
#include "moving.h"
#include "names.h"
#include "vfs_int.h"

#include "hidden_int.h"

/* A fresh hidden name for node id. */
static char *make_name(uint64_t id)
{
	uint32_t r;
	char *s;

	/* Random, so two mounts of one folder never pick the same name
	 * (node ids are per mount); plain RENAME refuses a taken one. */
	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
		r = (uint32_t)clock_mono_ns();
	if (asprintf(&s, NAME_HIDDEN_PREFIX "%016llx%08x", (unsigned long long)id, r) < 0)
		return NULL;
	return s;
}

/* ---- moves a daemon death may cut short -------------------------------- */

void hidden_intend(struct op *op, uint64_t id, uint64_t from, uint64_t parent,
		   const char *leaf)
{
	int32_t slot;

	op_drop_pend(op);
	if (!op->v->ks)
		return;
	if ((slot = ks_pending_put(op->v->ks, id, from, parent, leaf)) < 0)
		log_warn("'%s': too many hidden files moving at once to record this one; a daemon death now would leave it on the server",
			 leaf);
	else
		op->pend = slot + 1;
}

/* ---- the hidden names through the mount --------------------------------- */

bool hidden_ours(struct vfs *v, uint64_t parent, const char *name, size_t len)
{
	char s[NAME_HIDDEN_LEN + 1];

	if (!name_hidden(name, len))
		return false;
	memcpy(s, name, len);
	s[len] = '\0';
	return nodes_is_hidden(v->nodes, nodes_find(v->nodes, parent, s));
}

bool hidden_name_refused(fuse_req_t req, const char *name)
{
	if (!name_hidden(name, strlen(name)))
		return false;
	fuse_reply_err(req, EPERM);
	return true;
}

/* ---- unlink of an open file -------------------------------------------- */

static void hidden_ok(struct op *op)
{
	nodes_hide(op->v->nodes, op->ino, op->leaf2);
	log_info("unlink '%s': open, kept as '%s' until closed", op->path, op->path2);
	op_fail(op, 0);
}

static void hide_send(struct op *op);

/*
 * Lost reply (op->lost), or a resent unlink refused: done when the
 * hidden name exists. Not there after a lost reply: the request died
 * with its session before the server saw it, so it is sent again within
 * the call's deadline (a short cut is invisible, as for every call
 * settled so). A refused resend with no hidden name: the server will
 * not move it, as below.
 */
static void settle_hidden(struct op *op, const struct sftp_attrs *a, int err)
{
	if (a) {
		hidden_ok(op);
	} else if (err == ENOENT && op->lost) {
		op->resent = true;
		hide_send(op);
	} else if (err == ENOENT) {
		op->after(op, NULL, 0);
	} else {
		hidden_settle_later(op, op->ino, op->parent, op->parent, op->leaf2);
		op_log_error(op, EIO, "transport");
		op_fail(op, EIO);
	}
}

static void hide_done(struct op *op, const struct sftp_reply *r, int err)
{
	if (op_maybe_done(op, r, err)) {
		op->lost = err != 0;
		op_stat_path(op, op->path2, settle_hidden);
		return;
	}
	if (err) {
		hidden_settle_later(op, op->ino, op->parent, op->parent, op->leaf2);
		op_log_error(op, op_transport_errno(err), "transport");
		op_fail(op, op_transport_errno(err));
		return;
	}
	if (r->type == SSH_FXP_STATUS && r->u.status.code == SSH_FX_OK) {
		hidden_ok(op);
		return;
	}
	/* The server will not rename it: unlink it plainly (its handles
	 * then fail at their next reopen rather than reach another file). */
	op->after(op, NULL, 0);
}

void hidden_unlink(struct op *op, uint64_t id,
		   void (*plain)(struct op *, const struct sftp_attrs *, int))
{
	struct vfs *v = op->v;

	op->ino = id;
	op->after = plain;  /* op->then is op_stat_path's when settling */
	if (!(op->leaf2 = make_name(id)) ||
	    !(op->path2 = nodes_child_path(v->nodes, op->parent, op->leaf2))) {
		plain(op, NULL, 0);
		return;
	}
	hidden_intend(op, id, op->parent, op->parent, op->leaf2);
	moving_mark(op, op->path);
	hide_send(op);
}

static void hide_send(struct op *op)
{
	buf_reset(&op->rq.pkt);
	/* Plain v3 RENAME: it never replaces an existing file. */
	if (sftp_enc_rename(&op->rq.pkt, 0, op->path, op->path2) < 0) {
		op_fail(op, ENOMEM);
		return;
	}
	op_send(op, hide_done, false);
}

/* ---- rename over an open file ------------------------------------------ */

/* What a rename's op carries while its target is moved aside (op->data). */
struct replaced {
	uint64_t id;
	char *leaf, *path;         /* the target's hidden name and path */
	void (*then)(struct op *, const struct sftp_attrs *, int);
};

/* Drops op->data; returns the step to go on with. */
static void (*replaced_end(struct op *op))(struct op *, const struct sftp_attrs *, int)
{
	struct replaced *rp = (struct replaced *)op->data;
	void (*then)(struct op *, const struct sftp_attrs *, int) = rp->then;

	free(rp->leaf);
	free(rp->path);
	free(rp);
	op->data = NULL;
	return then;
}

/* The target is at its hidden name (or the server would not move it:
 * the rename then replaces it plainly, and its handles fail at their
 * next reopen rather than reach the file that took its name). */
static void replaced_go_on(struct op *op, bool hidden)
{
	struct replaced *rp = (struct replaced *)op->data;

	if (hidden) {
		nodes_hide(op->v->nodes, rp->id, rp->leaf);
		op_drop_pend(op);
		op->ino = rp->id;  /* to put back if the rename fails */
		log_info("rename onto '%s': the file there is open, kept as '%s' until closed",
			 op->path2, rp->path);
	}
	replaced_end(op)(op, NULL, 0);
}

static void replace_send(struct op *op);

/* Lost reply (op->lost), or a resent rename refused: moved when the
 * hidden name exists. Missing after a lost reply: the request died
 * before the server saw it, and is sent again (within the deadline); a
 * refused resend: not moved. */
static void settle_replaced(struct op *op, const struct sftp_attrs *a, int err)
{
	struct replaced *rp = (struct replaced *)op->data;

	if (!a && err == ENOENT && op->lost) {
		op->resent = true;
		replace_send(op);
		return;
	}
	if (a || err == ENOENT) {
		replaced_go_on(op, a != NULL);
		return;
	}
	hidden_settle_later(op, rp->id, op->newparent, op->newparent, rp->leaf);
	replaced_end(op);
	op_log_error(op, EIO, "transport");
	op_fail(op, EIO);
}

static void replace_done(struct op *op, const struct sftp_reply *r, int err)
{
	struct replaced *rp = (struct replaced *)op->data;

	if (op_maybe_done(op, r, err)) {
		op->lost = err != 0;
		op_stat_path(op, rp->path, settle_replaced);
		return;
	}
	if (err) {
		hidden_settle_later(op, rp->id, op->newparent, op->newparent, rp->leaf);
		replaced_end(op);
		op_log_error(op, op_transport_errno(err), "transport");
		op_fail(op, op_transport_errno(err));
		return;
	}
	replaced_go_on(op, r->type == SSH_FXP_STATUS && r->u.status.code == SSH_FX_OK);
}

void hidden_replace(struct op *op, uint64_t id,
		    void (*then)(struct op *, const struct sftp_attrs *, int))
{
	struct replaced *rp = calloc(1, sizeof(*rp));

	if (!rp || !(rp->leaf = make_name(id)) ||
	    !(rp->path = nodes_child_path(op->v->nodes, op->newparent, rp->leaf))) {
		if (rp)
			free(rp->leaf);
		free(rp);
		then(op, NULL, 0);
		return;
	}
	rp->id = id;
	rp->then = then;
	free(op->data);
	op->data = (char *)rp;
	hidden_intend(op, id, op->newparent, op->newparent, rp->leaf);
	replace_send(op);
}

static void replace_send(struct op *op)
{
	struct replaced *rp = (struct replaced *)op->data;

	buf_reset(&op->rq.pkt);
	/* Plain v3 RENAME: it never replaces an existing file. */
	if (sftp_enc_rename(&op->rq.pkt, 0, op->path2, rp->path) < 0) {
		replaced_end(op);
		op_fail(op, ENOMEM);
		return;
	}
	op_send(op, replace_done, false);
}

/* ---- a move a dead daemon had sent ------------------------------------ */

/* The REMOVE of a file no node took: done, or left recorded for the next
 * daemon (op->pend kept). */
static void unowned_removed(struct op *op, const struct sftp_reply *r, int err)
{
	if (err || r->type != SSH_FXP_STATUS || (r->u.status.code != SSH_FX_OK &&
	    r->u.status.code != SSH_FX_NO_SUCH_FILE)) {
		log_warn("cannot remove hidden file '%s': %s", op->path2,
			 err ? "no session" : strerror(op_reply_errno(r)));
		op->pend = 0;
	}
	op_free(op);
}

/* Where the node stands now: moved to (op->newparent, op->leaf2). */
static bool adopt_moved(struct op *op)
{
	struct nodes *t = op->v->nodes;

	if (nodes_find(t, op->newparent, op->leaf2) == op->ino)
		return true;
	if (!nodes_is_hidden(t, op->ino))
		nodes_hide(t, op->ino, op->leaf2);
	else if (nodes_find(t, op->parent, op->leaf2) == op->ino)
		nodes_rename(t, op->parent, op->leaf2, op->newparent, op->leaf2);
	return nodes_find(t, op->newparent, op->leaf2) == op->ino;
}

/*
 * The file at the move's target (a) means the server did it: its node
 * takes that name (and removes it when no handle holds it any more); a
 * file no node can take is removed unless a handle of its node is still
 * open. Not there: not done (or already removed). Unknown (no answer):
 * the record stays for the next daemon.
 */
static void settle_restored(struct op *op, const struct sftp_attrs *a, int err)
{
	struct vfs *v = op->v;

	if (!a && err != ENOENT) {
		log_warn("cannot check hidden file '%s' a previous daemon was moving: left recorded",
			 op->path2);
		op->pend = 0;
	} else if (a && adopt_moved(op)) {
		log_info("'%s': moved there by a previous daemon, kept until closed", op->path2);
		op_drop_pend(op);
		if (!v->hidden_hooks.node_open(v, op->ino))
			hidden_release(v, op->ino);
	} else if (a && v->hidden_hooks.node_open(v, op->ino)) {
		log_err("hidden file '%s' a previous daemon moved is still open but lost its node: left on the server",
			op->path2);
	} else if (a) {
		buf_reset(&op->rq.pkt);
		if (sftp_enc_path(&op->rq.pkt, SSH_FXP_REMOVE, 0, op->path2) == 0) {
			op_send(op, unowned_removed, true);
			return;
		}
		op->pend = 0;
	}
	op_free(op);
}

static void settle_one(void *arg, const struct ks_pending *p, int32_t slot)
{
	struct vfs *v = arg;
	struct op *op = op_new(v, NULL, "hidden move");

	if (!op)
		return;  /* the record stays for the next daemon */
	op->pend = slot + 1;
	op->ino = p->id;
	op->parent = p->from;
	op->newparent = p->parent;
	op->rq.deadline = 0;  /* whenever a session is up */
	if (!(op->leaf2 = strdup(p->name)) ||
	    !(op->path2 = nodes_child_path(v->nodes, p->parent, p->name))) {
		log_warn("hidden file '%s' a previous daemon was moving: its folder is not known any more",
			 p->name);
		op_free(op);
		return;
	}
	op_stat_path(op, op->path2, settle_restored);
}

void hidden_settle_later(struct op *op, uint64_t id, uint64_t from,
			 uint64_t parent, const char *leaf)
{
	struct ks_pending p = { .id = id, .from = from, .parent = parent };
	int32_t slot = op->pend - 1;

	if (!op->pend || strlen(leaf) > KS_NAME_MAX)
		return;
	op->pend = 0;
	strcpy(p.name, leaf);
	settle_one(op->v, &p, slot);
}

void hidden_settle_restored(struct vfs *v)
{
	if (v->ks)
		ks_pending_each(v->ks, settle_one, v);
}
