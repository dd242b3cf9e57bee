/*
 * op: the per-call helpers every handler uses (vfs_int.h): an op's
 * life (op_new records the call as live, op_free retires it into the
 * call metrics), sending its requests (op_send, op_send_pair,
 * op_send_on) with its step as continuation, the errno of a transport
 * failure or of a reply, the one place an EIO or EAGAIN an application
 * sees is logged (op_fail, op_note_error, op_log_error), op_stat_path, and
 * op_maybe_done, which says when a non-idempotent call must be settled.
 */

#include "vfs.h"
#include "vfs_int.h"

#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bdi.h"
#include "clock.h"
#include "handles.h"
#include "ksvalid.h"
#include "moving.h"
#include "log.h"
#include "takeover.h"

struct op *op_new(struct vfs *v, fuse_req_t req, const char *name)
{
	struct op *op = calloc(1, sizeof(*op));

	if (!op) {
		if (req)
			fuse_reply_err(req, ENOMEM);
		return NULL;
	}
	op->v = v;
	op->req = req;
	op->name = name;
	op->rq.conn_idx = -1;
	op->start_ns = clock_mono_ns();
	op->rq.deadline = op->start_ns + v->op_timeout_ns;
	if (req) {
		op->resent = takeover_call().resent;
		pthread_mutex_lock(&v->lock);
		op->live_prev = v->live_tail;
		if (v->live_tail)
			v->live_tail->live_next = op;
		else
			v->live_head = op;
		v->live_tail = op;
		v->live_count++;
		v->calls_started++;
		op->live = true;
		pthread_mutex_unlock(&v->lock);
	}
	return op;
}

/* Takes a call off the live list and counts it in the metrics. */
static void op_retire(struct op *op)
{
	struct vfs *v = op->v;

	if (!op->live)
		return;
	op->live = false;
	pthread_mutex_lock(&v->lock);
	if (op->live_prev)
		op->live_prev->live_next = op->live_next;
	else
		v->live_head = op->live_next;
	if (op->live_next)
		op->live_next->live_prev = op->live_prev;
	else
		v->live_tail = op->live_prev;
	v->live_count--;
	pthread_mutex_unlock(&v->lock);
	op->live_prev = op->live_next = NULL;
	if (v->ctl)
		control_record_call(v->ctl, op->name,
				    (double)(clock_mono_ns() - op->start_ns) / 1e9,
				    op->result);
}

void op_drop_pend(struct op *op)
{
	if (op->pend && op->v->ks)
		ks_pending_drop(op->v->ks, op->pend - 1);
	op->pend = 0;
}

void op_free(struct op *op)
{
	if (!op)
		return;
	/* After the node table took its result: a reopen waiting for it
	 * goes again under the new name. */
	moving_end(op);
	op_retire(op);
	op_drop_pend(op);
	buf_release(&op->rq.pkt);
	free(op->path);
	free(op->path2);
	free(op->leaf);
	free(op->leaf2);
	free(op->data);
	free(op->moved);
	free(op);
}

static void op_done(struct sreq *rq, const struct sftp_reply *r, int err)
{
	struct op *op = (struct op *)rq;

	op->step(op, r, err);
}

void op_send(struct op *op, op_step_fn step, bool idempotent)
{
	op->step = step;
	op->rq.done = op_done;
	op->rq.idempotent = idempotent;
	op->rq.conn_idx = -1;
	op->rq.type = op->rq.pkt.len > 4 ? op->rq.pkt.d[4] : 0;
	pool_submit(op->v->pool, &op->rq);
}

void op_send_pair(struct op *op, op_step_fn step, bool idempotent,
		  struct op *second, op_step_fn second_step)
{
	op->step = step;
	op->rq.done = op_done;
	op->rq.idempotent = idempotent;
	op->rq.conn_idx = -1;
	op->rq.type = op->rq.pkt.len > 4 ? op->rq.pkt.d[4] : 0;
	second->step = second_step;
	second->rq.done = op_done;
	second->rq.idempotent = false;
	second->rq.conn_idx = -1;
	second->rq.type = second->rq.pkt.len > 4 ? second->rq.pkt.d[4] : 0;
	pool_submit_pair(op->v->pool, &op->rq, &second->rq);
}

void op_send_on(struct op *op, op_step_fn step, int conn_idx, uint64_t conn_gen)
{
	op->step = step;
	op->rq.done = op_done;
	op->rq.idempotent = false;
	op->rq.conn_idx = conn_idx;
	op->rq.conn_gen = conn_gen;
	op->rq.type = op->rq.pkt.len > 4 ? op->rq.pkt.d[4] : 0;
	pool_submit(op->v->pool, &op->rq);
}

int op_transport_errno(int err)
{
	/* Never ENOTCONN: a mount that says "not connected" is the stale
	 * mount this project exists to prevent. */
	return err == -EAGAIN ? EAGAIN : EIO;
}

int op_reply_errno(const struct sftp_reply *r)
{
	int e;

	if (r->type != SSH_FXP_STATUS)
		return EIO;
	e = sftp_status_errno(r->u.status.code);
	return e ? e : EIO;
}

void op_log_error(struct op *op, int errnum, const char *cause)
{
	/* One line per failed call: the first to name its cause (a handle
	 * that failed for good says "lost" before its step says more). */
	if (op->logged)
		return;
	op->logged = true;
	log_warn("%s '%s' failed: %s (errno %d, cause %s)", op->name,
		 op->path ? op->path : "?", strerror(errnum), errnum, cause);
	if (op->v->ctl)
		control_event_error(op->v->ctl, op->name, op->path ? op->path : "",
				    errnum, cause);
}

void op_note_error(struct op *op, int errnum)
{
	if (op->req && !op->logged && (errnum == EIO || errnum == EAGAIN))
		op_log_error(op, errnum, errnum == EAGAIN ? "transport" : "server");
}

void op_fail(struct op *op, int errnum)
{
	op_note_error(op, errnum);
	if (op->req)
		fuse_reply_err(op->req, errnum);
	op->result = errnum;
	op_free(op);
}

static void stat_path_done(struct op *op, const struct sftp_reply *r, int err)
{
	if (err == -EHOSTDOWN)
		op->then(op, NULL, EHOSTDOWN);
	else if (err)
		op->then(op, NULL, op_transport_errno(err));
	else if (r->type == SSH_FXP_ATTRS)
		op->then(op, &r->u.attrs, 0);
	else
		op->then(op, NULL, op_reply_errno(r));
}

void op_stat_path(struct op *op, const char *path,
	       void (*then)(struct op *, const struct sftp_attrs *, int))
{
	int rc;

	op->then = then;
	buf_reset(&op->rq.pkt);
	if ((rc = sftp_enc_path(&op->rq.pkt, SSH_FXP_LSTAT, 0, path)) < 0) {
		then(op, NULL, rc == BUF_E_TOOBIG ? ENAMETOOLONG : ENOMEM);
		return;
	}
	op_send(op, stat_path_done, true);
}

bool op_maybe_done(const struct op *op, const struct sftp_reply *r, int err)
{
	if (err == -ECONNRESET)
		return true;
	return !err && op->resent &&
	       !(r->type == SSH_FXP_STATUS && r->u.status.code == SSH_FX_OK);
}
