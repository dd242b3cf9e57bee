/*
 * hidden_evac: folders that hold hidden files. An rmdir of a folder that
 * holds nothing but hidden files moves those still open to the mount's
 * root and removes the others, so the folder can go, as on a local disk
 * (hidden_evacuate); so does a rename of a folder onto such a folder
 * (hidden_evacuate_target), which remembers what it moved (op->moved) to
 * put it back when the rename fails (hidden_replace_undo, which also
 * gives a target moved aside by hidden_replace its name back). Each move
 * is recorded in the take-over state before it is sent, as in hidden.c.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "moving.h"
#include "vfs_int.h"

#include "hidden_int.h"

#define EVACUATE_MAX 64

/* ---- rmdir of a folder holding hidden files ---------------------------- */

struct evacuation {
	uint64_t dir;
	const char *path;          /* the folder's (op->path or op->path2) */
	size_t n, next;
	uint64_t ids[EVACUATE_MAX];
	char *leaf;                /* of the file being moved */
	bool moving;               /* moved (still open), else removed */
	bool other;                /* the folder holds a name not hidden */
	bool (*held)(struct vfs *, uint64_t);
	uint8_t h[SFTP_MAX_HANDLE];  /* its listing's handle */
	size_t hlen;
	struct hidden_moves *moves;  /* a rename's: what was moved, or NULL */
	void (*then)(struct op *, const struct sftp_attrs *, int);
};

/* The files a rename's evacuation moved to the root (op->moved). */
struct hidden_moves {
	uint64_t dir;              /* the folder they came from */
	size_t n, next;
	uint64_t ids[EVACUATE_MAX];
	char leaf[NAME_MAX + 1];   /* of the one being put back */
};

static void evacuate_next(struct op *op);

/* Every hidden file dealt with: on to the rmdir. */
static void evacuated(struct op *op)
{
	struct evacuation *e = (struct evacuation *)op->data;
	void (*then)(struct op *, const struct sftp_attrs *, int) = e->then;

	free(e->leaf);
	if (e->moves && e->moves->n) {
		free(op->moved);
		op->moved = e->moves;
	} else {
		free(e->moves);
	}
	free(e);
	op->data = NULL;
	then(op, NULL, 0);
}

static void moved(struct op *op, const struct sftp_reply *r, int err);

/* The current file's paths: where it is, and where it goes (the root). */
static bool move_paths(struct op *op, char **from, char **to)
{
	struct evacuation *e = (struct evacuation *)op->data;

	*to = NULL;
	if (!(*from = nodes_path(op->v->nodes, e->ids[e->next - 1])))
		return false;
	if ((*to = nodes_child_path(op->v->nodes, NODE_ROOT, e->leaf)))
		return true;
	free(*from);
	*from = NULL;
	return false;
}

/* Sends the current file's RENAME (still open) or REMOVE; false when it
 * could not be encoded. */
static bool evacuate_send(struct op *op)
{
	struct evacuation *e = (struct evacuation *)op->data;
	char *from, *to;
	int rc;

	if (!move_paths(op, &from, &to))
		return false;
	if (e->moving)
		hidden_intend(op, e->ids[e->next - 1], e->dir, NODE_ROOT, e->leaf);
	buf_reset(&op->rq.pkt);
	rc = e->moving ? sftp_enc_rename(&op->rq.pkt, 0, from, to) :
			 sftp_enc_path(&op->rq.pkt, SSH_FXP_REMOVE, 0, from);
	free(from);
	free(to);
	if (rc < 0)
		return false;
	op_send(op, moved, false);
	return true;
}

/* The current file dealt with (its RENAME or REMOVE done). */
static void move_done(struct op *op)
{
	struct evacuation *e = (struct evacuation *)op->data;

	if (e->moving) {
		/* Unless a restore settled it there first (a resent rmdir):
		 * renaming a name no longer there would drop the node's. */
		if (nodes_find(op->v->nodes, e->dir, e->leaf) == e->ids[e->next - 1])
			nodes_rename(op->v->nodes, e->dir, e->leaf, NODE_ROOT, e->leaf);
		op_drop_pend(op);
		if (e->moves)
			e->moves->ids[e->moves->n++] = e->ids[e->next - 1];
	} else {
		nodes_hidden_gone(op->v->nodes, e->ids[e->next - 1]);
	}
	evacuate_next(op);
}

/* No answer at all: the call fails as any call the link failed (never
 * ENOTEMPTY for a folder we could not empty). */
static void move_failed(struct op *op, int err)
{
	struct evacuation *e = (struct evacuation *)op->data;

	if (e->moving)
		hidden_settle_later(op, e->ids[e->next - 1], e->dir, NODE_ROOT, e->leaf);
	free(e->moves);  /* no session to put them back with */
	e->moves = NULL;
	op_log_error(op, err, "transport");
	op_fail(op, err);
}

/*
 * A lost reply (or a resent call's refusal): the file at the root (or,
 * removed, gone) means done; else the request died before the server saw
 * it and is sent again within the call's deadline (a short cut is
 * invisible); a refused resend leaves it, as a refusal.
 */
static void settle_moved(struct op *op, const struct sftp_attrs *a, int err)
{
	struct evacuation *e = (struct evacuation *)op->data;

	if (a ? e->moving : !e->moving && err == ENOENT)
		move_done(op);
	else if ((a || err == ENOENT) && op->lost && evacuate_send(op))
		op->resent = true;
	else if (a || err == ENOENT)
		evacuate_next(op);
	else
		move_failed(op, EIO);
}

static void moved(struct op *op, const struct sftp_reply *r, int err)
{
	struct evacuation *e = (struct evacuation *)op->data;
	char *from, *to;

	if (op_maybe_done(op, r, err) && move_paths(op, &from, &to)) {
		op->lost = err != 0;
		op_stat_path(op, e->moving ? to : from, settle_moved);
		free(from);
		free(to);
		return;
	}
	if (err) {
		move_failed(op, op_transport_errno(err));
		return;
	}
	if (r->type == SSH_FXP_STATUS && (r->u.status.code == SSH_FX_OK ||
	    (!e->moving && r->u.status.code == SSH_FX_NO_SUCH_FILE))) {
		move_done(op);
		return;
	}
	/* A failure leaves it: the rmdir then says ENOTEMPTY. */
	evacuate_next(op);
}

static void evacuate_next(struct op *op)
{
	struct evacuation *e = (struct evacuation *)op->data;

	while (e->next < e->n) {
		uint64_t id = e->ids[e->next++];
		char *from, *slash;

		free(e->leaf);
		e->leaf = NULL;
		if (!(from = nodes_path(op->v->nodes, id)))
			continue;
		slash = strrchr(from, '/');
		e->leaf = slash ? strdup(slash + 1) : NULL;
		free(from);
		if (!e->leaf)
			continue;
		/* Still open: moved out. Released (its last close on the
		 * way): removed now, not moved under that close's feet. */
		e->moving = e->held(op->v, id);
		if (evacuate_send(op))
			return;
	}
	evacuated(op);
}

/*
 * First the folder is listed: when it holds anything besides hidden
 * files, nothing is moved (the rmdir then fails with ENOTEMPTY and leaves
 * the folder and the root as they were, times included). A listing that
 * fails moves them all the same (the rmdir decides).
 */
static void listing_closed(struct op *op, const struct sftp_reply *r, int err)
{
	struct evacuation *e = (struct evacuation *)op->data;

	if (e->other)
		evacuated(op);
	else
		evacuate_next(op);
}

static void listing_close(struct op *op)
{
	struct evacuation *e = (struct evacuation *)op->data;

	buf_reset(&op->rq.pkt);
	if (sftp_enc_close(&op->rq.pkt, 0, e->h, e->hlen) < 0) {
		listing_closed(op, NULL, 0);
		return;
	}
	op_send_on(op, listing_closed, op->rq.served_by, op->rq.served_gen);
}

static void listed(struct op *op, const struct sftp_reply *r, int err)
{
	struct evacuation *e = (struct evacuation *)op->data;
	struct sftp_reply rr;
	struct sftp_name n;

	if (err || r->type != SSH_FXP_NAME) {
		listing_close(op);  /* EOF, or no answer: the listing is over */
		return;
	}
	rr = *r;
	while (!e->other && sftp_name_next(&rr, &n) == 0)
		e->other = !hidden_ours(op->v, e->dir, (const char *)n.name, n.namelen) &&
			   !(n.namelen == 1 && n.name[0] == '.') &&
			   !(n.namelen == 2 && !memcmp(n.name, "..", 2));
	buf_reset(&op->rq.pkt);
	if (e->other || sftp_enc_handle(&op->rq.pkt, SSH_FXP_READDIR, 0,
					e->h, e->hlen) < 0) {
		listing_close(op);
		return;
	}
	op_send_on(op, listed, op->rq.served_by, op->rq.served_gen);
}

static void list_opened(struct op *op, const struct sftp_reply *r, int err)
{
	struct evacuation *e = (struct evacuation *)op->data;

	if (err || r->type != SSH_FXP_HANDLE || r->u.handle.len > SFTP_MAX_HANDLE) {
		evacuate_next(op);
		return;
	}
	memcpy(e->h, r->u.handle.h, r->u.handle.len);
	e->hlen = r->u.handle.len;
	buf_reset(&op->rq.pkt);
	if (sftp_enc_handle(&op->rq.pkt, SSH_FXP_READDIR, 0, e->h, e->hlen) < 0) {
		listing_close(op);
		return;
	}
	op_send_on(op, listed, op->rq.served_by, op->rq.served_gen);
}

static void evacuate(struct op *op, uint64_t dir, const char *path, bool remember,
		     bool (*held)(struct vfs *v, uint64_t id),
		     void (*then)(struct op *, const struct sftp_attrs *, int))
{
	struct evacuation *e = calloc(1, sizeof(*e));

	if (!e || !dir ||
	    !(e->n = nodes_hidden_list(op->v->nodes, dir, e->ids, EVACUATE_MAX)) ||
	    (remember && !(e->moves = calloc(1, sizeof(*e->moves))))) {
		free(e);
		then(op, NULL, 0);
		return;
	}
	e->dir = dir;
	e->path = path;
	moving_mark(op, path);  /* its hidden files go to the root */
	e->held = held;
	e->then = then;
	if (e->moves)
		e->moves->dir = dir;
	free(op->data);
	op->data = (char *)e;
	buf_reset(&op->rq.pkt);
	if (sftp_enc_path(&op->rq.pkt, SSH_FXP_OPENDIR, 0, path) < 0) {
		evacuate_next(op);
		return;
	}
	op_send(op, list_opened, true);
}

void hidden_evacuate(struct op *op, uint64_t dir,
		     bool (*held)(struct vfs *v, uint64_t id),
		     void (*then)(struct op *, const struct sftp_attrs *, int))
{
	evacuate(op, dir, op->path, false, held, then);
}

void hidden_evacuate_target(struct op *op, uint64_t dir,
			    bool (*held)(struct vfs *v, uint64_t id),
			    void (*then)(struct op *, const struct sftp_attrs *, int))
{
	evacuate(op, dir, op->path2, true, held, then);
}

/* ---- a failed rename: the moved hidden files go back --------------------- */

static void put_back_next(struct op *op);

static void put_back(struct op *op, const struct sftp_reply *r, int err)
{
	struct hidden_moves *m = op->moved;
	bool ok = !err && r->type == SSH_FXP_STATUS && r->u.status.code == SSH_FX_OK;

	if (ok)
		nodes_rename(op->v->nodes, NODE_ROOT, m->leaf, m->dir, m->leaf);
	op_drop_pend(op);
	if (!ok)
		log_warn("rename onto '%s' failed, and the open file '%s' moved out of it could not be put back: it stays at the root until closed",
			 op->path2, m->leaf);
	put_back_next(op);
}

static void put_back_next(struct op *op)
{
	struct hidden_moves *m = op->moved;

	while (m->next < m->n) {
		uint64_t id = m->ids[m->next++];
		char *from = nodes_is_hidden(op->v->nodes, id) ?
			     nodes_path(op->v->nodes, id) : NULL;
		char *slash = from ? strrchr(from, '/') : NULL;
		char *to = NULL;
		int enc = -1;

		/* Still at the root, where the evacuation put it (a file
		 * closed meanwhile is gone, or going: left alone). */
		if (slash && strlen(slash + 1) < sizeof(m->leaf) &&
		    nodes_find(op->v->nodes, NODE_ROOT, slash + 1) == id) {
			strcpy(m->leaf, slash + 1);
			to = nodes_child_path(op->v->nodes, m->dir, m->leaf);
		}
		buf_reset(&op->rq.pkt);
		/* Plain RENAME: a name taken meanwhile is not replaced. */
		if (to)
			enc = sftp_enc_rename(&op->rq.pkt, 0, from, to);
		if (enc == 0) {
			hidden_intend(op, id, NODE_ROOT, m->dir, m->leaf);
			moving_mark(op, from);
		}
		free(from);
		free(to);
		if (enc == 0) {
			op_send(op, put_back, false);
			return;
		}
	}
	op_fail(op, op->err);
}

/* Starts putting op->moved back, then fails op with op->err; false when
 * nothing was moved. */
static bool put_back_moved(struct op *op)
{
	if (!op->moved || !op->moved->n)
		return false;
	op->moved->next = 0;
	put_back_next(op);
	return true;
}

/* ---- a failed rename: the target moved aside goes back ------------------- */

static void unreplaced(struct op *op, const struct sftp_reply *r, int err)
{
	if (!err && r->type == SSH_FXP_STATUS && r->u.status.code == SSH_FX_OK)
		nodes_unhide(op->v->nodes, op->ino, op->newparent, op->leaf2);
	else
		log_err("rename onto '%s' failed, and the open file moved aside for it could not be put back: it stays hidden until closed",
			op->path2);
	op_fail(op, op->err);
}

void hidden_replace_undo(struct op *op, int err)
{
	char *from;

	op->err = err;
	if (put_back_moved(op))
		return;
	if (!op->ino || !nodes_is_hidden(op->v->nodes, op->ino) ||
	    !(from = nodes_path(op->v->nodes, op->ino))) {
		op_fail(op, err);
		return;
	}
	buf_reset(&op->rq.pkt);
	/* Plain RENAME: a name taken meanwhile is not replaced. */
	if (sftp_enc_rename(&op->rq.pkt, 0, from, op->path2) < 0) {
		free(from);
		op_fail(op, err);
		return;
	}
	moving_mark(op, from);
	free(from);
	op_send(op, unreplaced, false);
}
