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
 * Not seen by this: a hidden file left by a steadyfs killed together with
 * its keeper (the take-over state is gone with it): it stays on the
 * server, where, no longer in the node table, it is listed like any file
 * and can be removed through the mount (docs/retries.md).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "clock.h"
#include "log.h"
#include "moving.h"
#include "vfs_int.h"

#define EVACUATE_MAX 64
/* Hidden files of one folder a setattr looks at (more are not waited for). */
#define WAIT_HIDDEN_MAX 64

/* A fresh hidden name for node id. */
static char *make_name(uint64_t id)
{
	uint32_t r;
	char *s;

	/* Random, so two mounts of one folder never pick the same name
	 * (node ids are per mount); plain RENAME refuses a taken one. */
	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
		r = (uint32_t)clock_mono_ns();
	if (asprintf(&s, NODES_HIDDEN_PREFIX "%016llx%08x", (unsigned long long)id, r) < 0)
		return NULL;
	return s;
}

/* ---- moves a daemon death may cut short -------------------------------- */

/* Records, before its RENAME goes out, that node id may move from folder
 * `from` to (parent, leaf); replaces op's previous record. */
static void intend(struct op *op, uint64_t id, uint64_t from, uint64_t parent,
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

static void settle_later(struct op *op, uint64_t id, uint64_t from,
			 uint64_t parent, const char *leaf);

/* ---- the hidden names through the mount --------------------------------- */

bool hidden_ours(struct vfs *v, uint64_t parent, const char *name, size_t len)
{
	char s[NODES_HIDDEN_LEN + 1];

	if (!nodes_hidden_name(name, len))
		return false;
	memcpy(s, name, len);
	s[len] = '\0';
	return nodes_is_hidden(v->nodes, nodes_find(v->nodes, parent, s));
}

bool hidden_name_refused(fuse_req_t req, const char *name)
{
	if (!nodes_hidden_name(name, strlen(name)))
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
		settle_later(op, op->ino, op->parent, op->parent, op->leaf2);
		op_log_error(op, EIO, "transport");
		op_fail(op, EIO);
	}
}

static void hide_done(struct op *op, const struct sftp_reply *r, int err)
{
	if (op_maybe_done(op, r, err)) {
		op->lost = err != 0;
		stat_path(op, op->path2, settle_hidden);
		return;
	}
	if (err) {
		settle_later(op, op->ino, op->parent, op->parent, op->leaf2);
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
	op->after = plain;  /* op->then is stat_path's when settling */
	if (!(op->leaf2 = make_name(id)) ||
	    !(op->path2 = nodes_child_path(v->nodes, op->parent, op->leaf2))) {
		plain(op, NULL, 0);
		return;
	}
	intend(op, id, op->parent, op->parent, op->leaf2);
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
	settle_later(op, rp->id, op->newparent, op->newparent, rp->leaf);
	replaced_end(op);
	op_log_error(op, EIO, "transport");
	op_fail(op, EIO);
}

static void replace_done(struct op *op, const struct sftp_reply *r, int err)
{
	struct replaced *rp = (struct replaced *)op->data;

	if (op_maybe_done(op, r, err)) {
		op->lost = err != 0;
		stat_path(op, rp->path, settle_replaced);
		return;
	}
	if (err) {
		settle_later(op, rp->id, op->newparent, op->newparent, rp->leaf);
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
	intend(op, id, op->newparent, op->newparent, rp->leaf);
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

static void unreplaced(struct op *op, const struct sftp_reply *r, int err)
{
	if (!err && r->type == SSH_FXP_STATUS && r->u.status.code == SSH_FX_OK)
		nodes_unhide(op->v->nodes, op->ino, op->newparent, op->leaf2);
	else
		log_err("rename onto '%s' failed, and the open file moved aside for it could not be put back: it stays hidden until closed",
			op->path2);
	op_fail(op, op->err);
}

static bool put_back_moved(struct op *op);

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

/* ---- the last handle gone ---------------------------------------------- */

/* Whether node id's hidden name will be removed once its handles are
 * closed on the server (the ones the kernel released hold the last
 * references until then), or once the release of a close(2) just made
 * comes. Not when a handle is still open on it. */
static bool closing(struct vfs *v, uint64_t id)
{
	return v->hidden_hooks.node_closing(v, id);
}

/* Whether node id's hidden name is being removed. Not one whose removal
 * failed. v->hidden_lock held. */
static bool removing_locked(struct vfs *v, uint64_t id)
{
	for (struct op *r = v->removing; r; r = r->next)
		if (r->ino == id)
			return true;
	return false;
}

/* Whether a hidden name in folder dir is (about to be) removed. In this
 * order: a handle seen gone from vfs->fhs was counted in last_puts
 * before, and last_puts is counted down after the removal is listed. */
static bool removing_in_locked(struct vfs *v, uint64_t dir)
{
	uint64_t ids[WAIT_HIDDEN_MAX];
	size_t n = nodes_hidden_list(v->nodes, dir, ids, WAIT_HIDDEN_MAX);

	for (size_t i = 0; i < n; i++)
		if (closing(v, ids[i]))
			return true;
	if (n && __atomic_load_n(&v->last_puts, __ATOMIC_ACQUIRE))
		return true;
	for (size_t i = 0; i < n; i++)
		if (removing_locked(v, ids[i]))
			return true;
	return false;
}

void hidden_when_removed(struct op *op,
			 void (*then)(struct op *, const struct sftp_attrs *, int))
{
	struct vfs *v = op->v;
	bool busy;

	pthread_mutex_lock(&v->hidden_lock);
	busy = removing_in_locked(v, op->ino);
	if (busy) {
		op->then = then;
		op->next = v->removal_waiters;
		v->removal_waiters = op;
	}
	pthread_mutex_unlock(&v->hidden_lock);
	if (!busy)
		then(op, NULL, 0);
}

/* Takes the waiters for which fn(op, now) holds off the list. */
static struct op *take_waiters(struct vfs *v, uint64_t now,
			       bool (*fn)(const struct op *, uint64_t))
{
	struct op *out = NULL, **pp;

	pthread_mutex_lock(&v->hidden_lock);
	for (pp = &v->removal_waiters; *pp;) {
		struct op *w = *pp;

		if (!fn(w, now)) {
			pp = &w->next;
			continue;
		}
		*pp = w->next;
		w->next = out;
		out = w;
	}
	pthread_mutex_unlock(&v->hidden_lock);
	return out;
}

static bool any_waiter(const struct op *op, uint64_t now)
{
	return true;
}

static bool expired(const struct op *op, uint64_t now)
{
	return op->rq.deadline && op->rq.deadline <= now;
}

void hidden_sweep(struct vfs *v, uint64_t now)
{
	struct op *w = take_waiters(v, now, any_waiter);

	/* The others look again: a release may not have come after all. */
	for (struct op *n; w; w = n) {
		n = w->next;
		w->next = NULL;
		if (expired(w, now)) {
			op_log_error(w, EIO, "transport");
			op_fail(w, EIO);
		} else {
			hidden_when_removed(w, w->then);
		}
	}
}

/* Each waiter looks again: another removal may still hold it back. */
static void wake_waiters(struct vfs *v)
{
	struct op *w = take_waiters(v, 0, any_waiter);

	for (struct op *n; w; w = n) {
		n = w->next;
		w->next = NULL;
		hidden_when_removed(w, w->then);
	}
}

void hidden_put_done(struct vfs *v)
{
	__atomic_sub_fetch(&v->last_puts, 1, __ATOMIC_ACQ_REL);
	wake_waiters(v);
}

/* Ends a hidden file's removal; `unpin` false keeps its node (and its
 * take-over record) for the next daemon. */
static void release_end(struct op *op, bool unpin)
{
	struct vfs *v = op->v;
	struct op **pp;

	pthread_mutex_lock(&v->hidden_lock);
	for (pp = &v->removing; *pp && *pp != op; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = op->next;
	pthread_mutex_unlock(&v->hidden_lock);
	if (unpin)
		nodes_unpin(v->nodes, op->ino);
	op_free(op);
	wake_waiters(v);
}

static void removed(struct op *op, const struct sftp_reply *r, int err)
{
	bool missing = !err && r->type == SSH_FXP_STATUS &&
		       r->u.status.code == SSH_FX_NO_SUCH_FILE;
	char *now = missing ? nodes_path(op->v->nodes, op->ino) : NULL;

	/* Moved meanwhile (an rmdir of its folder): remove it there. */
	if (now && strcmp(now, op->path)) {
		free(op->path);
		op->path = now;
		buf_reset(&op->rq.pkt);
		if (sftp_enc_path(&op->rq.pkt, SSH_FXP_REMOVE, 0, op->path) == 0) {
			op_send(op, removed, true);
			return;
		}
		now = NULL;
	}
	free(now);
	if (err) {
		/* No answer: this daemon is stopping (the REMOVE waits for a
		 * session otherwise). The node stays pinned, so its hidden
		 * record stays for the next daemon, which removes it. */
		log_warn("hidden file '%s' not removed yet: left to the next daemon", op->path);
		release_end(op, false);
		return;
	}
	if (r->type == SSH_FXP_STATUS &&
	    (r->u.status.code == SSH_FX_OK || r->u.status.code == SSH_FX_NO_SUCH_FILE))
		nodes_hidden_gone(op->v->nodes, op->ino);
	else
		log_warn("cannot remove hidden file '%s': %s", op->path,
			 strerror(reply_errno(r)));
	release_end(op, true);
}

void hidden_release(struct vfs *v, uint64_t id)
{
	struct op *op;

	if (!nodes_is_hidden(v->nodes, id) || !(op = op_new(v, NULL, "unlink"))) {
		wake_waiters(v);  /* nothing to wait for after all */
		return;
	}
	op->ino = id;
	op->rq.deadline = 0;  /* whenever a session is up */
	if (!(op->path = nodes_path(v->nodes, id)) ||
	    sftp_enc_path(&op->rq.pkt, SSH_FXP_REMOVE, 0, op->path) < 0) {
		op_free(op);
		wake_waiters(v);
		return;
	}
	nodes_pin(v->nodes, id);
	/* A setattr of its folder setting the mtime waits for it now. */
	pthread_mutex_lock(&v->hidden_lock);
	op->next = v->removing;
	v->removing = op;
	pthread_mutex_unlock(&v->hidden_lock);
	/* Repeating it is harmless: the name is ours alone. */
	op_send(op, removed, true);
}

/* ---- a move a dead daemon had sent ------------------------------------ */

/* The REMOVE of a file no node took: done, or left recorded for the next
 * daemon (op->pend kept). */
static void unowned_removed(struct op *op, const struct sftp_reply *r, int err)
{
	if (err || r->type != SSH_FXP_STATUS || (r->u.status.code != SSH_FX_OK &&
	    r->u.status.code != SSH_FX_NO_SUCH_FILE)) {
		log_warn("cannot remove hidden file '%s': %s", op->path2,
			 err ? "no session" : strerror(reply_errno(r)));
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
	stat_path(op, op->path2, settle_restored);
}

/* The outcome of op's move is unknown (no answer within the call's time,
 * or this daemon is stopping): it is settled as a dead daemon's is,
 * whenever a session is up (or by the next daemon). */
static void settle_later(struct op *op, uint64_t id, uint64_t from,
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
		intend(op, e->ids[e->next - 1], e->dir, NODE_ROOT, e->leaf);
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
		settle_later(op, e->ids[e->next - 1], e->dir, NODE_ROOT, e->leaf);
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
		stat_path(op, e->moving ? to : from, settle_moved);
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
			intend(op, id, NODE_ROOT, m->dir, m->leaf);
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
