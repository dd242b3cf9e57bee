/*
 * hidden_remove: the removal of a hidden file once the last handle of its
 * node is gone (hidden_release), and the setattrs of its folder's mtime
 * that wait for that removal (hidden_when_removed, hidden_sweep,
 * hidden_put_done): a removal landing after such a setattr would undo
 * its mtime. The lowest part of hidden*.c: it calls none of the others,
 * and asks the handles what it needs through v->hidden_hooks.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "vfs_int.h"

/* Hidden files of one folder a setattr looks at (more are not waited for). */
#define WAIT_HIDDEN_MAX 64

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
			 strerror(op_reply_errno(r)));
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
