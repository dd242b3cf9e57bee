/*
 * fh_write: write(). It copies the data into chunks of at most the
 * server's max_write and queues them when all of it fits in the handle's
 * window and in the window of all handles; else it waits, its data aside
 * and queued nowhere, until it fits or its deadline passes (an append
 * then gives its end offset back). It first waits for overlapping writes
 * queued before it through another handle (fh_wait.c). Sending and
 * acknowledging the chunks is fh_io.c's. The design is described in
 * fh_int.h.
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

static void chunks_free(struct wchunk *c)
{
	while (c) {
		struct wchunk *next = c->next;

		fh_chunk_free(c);
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

void fh_write_expired(struct op *op)
{
	chunks_free(op->wchunks);
	op->wchunks = NULL;
	fh_write_dropped(op->v, op->ino, op->stage, op->off, op->size);
	op_log_error(op, EIO, "transport");
	fh_op_fail(op, EIO);
}

/* A write that cannot be queued at once, its data (list) aside; NULL
 * when out of memory (then answered ENOMEM, and nothing queued). */
static struct op *write_op(fuse_req_t req, struct fh *fh, uint64_t ino,
			   int kind, uint64_t at, size_t size,
			   struct wchunk *list)
{
	struct op *op = fh_op_new(req, fh, "write");

	if (!op) {
		chunks_free(list);
		fh_write_dropped(fh->v, ino, kind, at, size);
		return NULL;
	}
	op->size = size;
	op->off = at;
	op->ino = ino;
	op->stage = kind;
	op->wchunks = list;
	op->fh = fh;
	fh_get(fh);
	return op;
}

/* The write waits for window room, behind the handle's older waiting
 * writes, queued only once all of it fits, within op_timeout
 * (fh_write_expired). */
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
	now = fh_admit_writers_locked(fh, &tosend);
	pthread_mutex_unlock(&fh->lock);
	fh_submit_chunks(tosend);
	fh_reply_writers(now);
}

/* No other handle holds an older overlapping write any more. */
static void write_settled(struct op *op, const struct sftp_attrs *a, int err)
{
	write_wait(op);
}

/* Where an append lands: where the dead daemon put a resent request
 * (recorded), else a new reservation at the node's end (known). */
static uint64_t append_place(struct vfs *v, uint64_t ino, size_t size,
			     struct append_note *an, int *kind)
{
	uint64_t at;

	if (takeover_append_offset(v->tk, an->call, &at)) {
		*kind = W_APPEND_RESENT;
		nodes_end_raise(v->nodes, ino, at + size);
		takeover_note_append(v->tk, an->call, at);
		return at;
	}
	*kind = W_APPEND;
	/* Noted before the end moves: a death in between must not leave
	 * the resend a new offset past a hole. */
	return nodes_append_reserve_noted(v->nodes, ino, size, note_append, an);
}

/* A write placed at op->off with its data in op->wchunks: it follows
 * older overlapping writes of other handles, then waits for room. */
static void write_go(struct op *op)
{
	uint64_t end = op->off + op->size;

	nodes_ident_sent(op->v->nodes, op->ino, end);
	if (fh_ino_writes_overlap(op->v, op->ino, op->fh, op->off, end))
		fh_wait_writes(op, op->off, end, op->fh, write_settled);
	else
		write_wait(op);
}

/* The server's size, asked through the handle, for an append whose end
 * the node does not know (it counted bytes lost with a dead daemon,
 * nodes_end_forget). op->data holds the request's take-over facts. */
static void append_learnt(struct op *op, const struct sftp_reply *r, int err)
{
	struct vfs *v = op->v;
	struct append_note an = { v->tk, { 0, false } };
	int e = err ? op_transport_errno(err) :
		r->type != SSH_FXP_ATTRS ? op_reply_errno(r) :
		!(r->u.attrs.flags & SSH_FILEXFER_ATTR_SIZE) ? EIO : 0;

	if (e) {
		/* Nothing reserved, nothing queued. */
		chunks_free(op->wchunks);
		op->wchunks = NULL;
		op_log_error(op, e, err ? "transport" : "server");
		fh_op_fail(op, e);
		return;
	}
	memcpy(&an.call, op->data, sizeof(an.call));
	/* Raise, never lower: another append may have learnt it first. */
	nodes_end_raise(v->nodes, op->ino, r->u.attrs.size);
	op->off = append_place(v, op->ino, op->size, &an, &op->stage);
	for (struct wchunk *c = op->wchunks; c; c = c->next)
		c->off += op->off;  /* made from 0 */
	write_go(op);
}

static void append_learn(fuse_req_t req, struct fh *fh, uint64_t ino,
			 const char *buf, size_t size, struct tk_call call)
{
	struct wchunk *list = chunks_make(fh, buf, size, 0);
	struct op *op;

	if (!list) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	/* W_AT until placed: nothing to give back if it fails first. */
	if (!(op = write_op(req, fh, ino, W_AT, 0, size, list)))
		return;
	if (!(op->data = malloc(sizeof(call)))) {
		chunks_free(op->wchunks);
		op->wchunks = NULL;
		fh_op_fail(op, ENOMEM);
		return;
	}
	memcpy(op->data, &call, sizeof(call));
	op->fh = NULL;
	fh_put(fh);  /* fh_start takes its own */
	fh_start(op, fh, FH_FSTAT, append_learnt);
}

void vfs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
	       off_t off, struct fuse_file_info *fi)
{
	struct vfs *v = vfs_of(req);
	struct fh *fh;
	struct append_note an = { v->tk, takeover_call() };
	uint64_t at = (uint64_t)off;
	struct wchunk *list, *tosend = NULL;
	struct op *op;
	int err, kind = W_AT;
	bool append, queued;

	if (!(fh = fh_call_start(req, ino, fi, EACCES, true)))
		return;
	pthread_mutex_lock(&fh->lock);
	err = fh_take_err_locked(fh);
	pthread_mutex_unlock(&fh->lock);
	if (err) {
		fuse_reply_err(req, err);
		return;
	}
	/* Page-cache write-back (mmap) carries the page's own offset, even
	 * through a handle opened O_APPEND. */
	append = (fh->flags & O_APPEND) && !fi->writepage;
	/* The end is learnt at open and kept across daemon restarts, but
	 * forgotten when it counted bytes that died with a daemon: never
	 * guess it (an append at 0 would overwrite the file), ask. */
	if (append && !nodes_end_known(v->nodes, ino)) {
		append_learn(req, fh, ino, buf, size, an.call);
		return;
	}
	if (append)
		at = append_place(v, ino, size, &an, &kind);
	/* The whole write is copied first and queued only when all of it
	 * fits: a write that fails has queued none of its bytes. */
	if (!(list = chunks_make(fh, buf, size, at))) {
		fh_write_dropped(v, ino, kind, at, size);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	/* Before any of it can be sent (or acknowledged): the "same
	 * file?" rule's upper bound. A write that fails later only leaves
	 * that bound a little wide. */
	nodes_ident_sent(v->nodes, ino, at + size);
	/* Overlapping writes reach the server in write() order: one of
	 * this handle follows the older ones on its session (fh_submit_chunks),
	 * one overlapping an older write still queued on another handle,
	 * maybe on another session, waits until that one is acknowledged. */
	if (fh_ino_writes_overlap(v, ino, fh, at, at + size)) {
		if ((op = write_op(req, fh, ino, kind, at, size, list)))
			fh_wait_writes(op, at, at + size, fh, write_settled);
		return;
	}
	pthread_mutex_lock(&fh->lock);
	queued = !fh->writers && fh_room_for_locked(fh, size, fh_chunk_count(list));
	if (queued)
		fh_chunks_queue_locked(fh, list, &tosend);
	pthread_mutex_unlock(&fh->lock);
	if (!queued) {
		if ((op = write_op(req, fh, ino, kind, at, size, list)))
			write_wait(op);
		return;
	}
	fh_submit_chunks(tosend);
	fh_write_queued(v, ino, kind, at, size);
	fuse_reply_write(req, size);
	control_record_call(v->ctl, "write", 0, 0);
}
