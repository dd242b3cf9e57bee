/*
 * fh_sweep: the sweeper's pass over every handle (vfs.c's sweeper thread
 * calls fh_sweep): expires calls waiting on a handle past their deadline
 * (for a reopen, for room in the window, for the writes before them, for
 * a drain) and drops what a released handle could not deliver in time;
 * the age of the oldest unacknowledged write; at exit, the drain of
 * every handle and their freeing.
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

/* Takes expired ops off a list (lock held). */
static struct op *take_expired(struct op **list, uint64_t now)
{
	struct op *out = NULL;

	while (*list) {
		struct op *op = *list;

		if (op->rq.deadline && op->rq.deadline <= now) {
			*list = op->next;
			op->next = out;
			out = op;
		} else {
			list = &op->next;
		}
	}
	return out;
}

/* Drops what a released handle still holds past its deadline. */
static void drop_unsent(struct fh *fh)
{
	struct wchunk *c;

	pthread_mutex_lock(&fh->lock);
	for (c = fh->chunks; c; c = c->next)
		if (!c->inflight)
			break;
	pthread_mutex_unlock(&fh->lock);
	if (c)
		fh_drop_after_close(c);
}

static void sweep_one(struct fh *fh, uint64_t now)
{
	struct op *w, *d, *q, *b;
	bool drop, lose;

	pthread_mutex_lock(&fh->lock);
	w = take_expired(&fh->waiters, now);
	d = take_expired(&fh->drainers, now);
	q = take_expired(&fh->writers, now);
	b = take_expired(&fh->barriers, now);
	drop = fh->released && fh->drop_at && now >= fh->drop_at && fh->chunks;
	lose = fh->lost && !fh->open && (fh->waiters || fh->chunks);
	pthread_mutex_unlock(&fh->lock);
	/* A handle that lost its file (no name at its reopen). */
	if (lose)
		fh_lose(fh);
	/* Each waiting op ends through its own step, which knows what it
	 * holds (an open's or create's handle the kernel never saw). */
	for (struct op *n; w; w = n) {
		n = w->next;
		w->next = NULL;
		w->step(w, NULL, -ETIMEDOUT);
	}
	for (struct op *n; d; d = n) {
		n = d->next;
		d->next = NULL;
		/* The data stays queued and keeps being sent. */
		if (d->req)
			op_log_error(d, EIO, "transport");
		fh_op_fail(d, EIO);
	}
	for (struct op *n; q; q = n) {
		n = q->next;
		q->next = NULL;
		fh_write_expired(q);
	}
	for (struct op *n; b; b = n) {
		n = b->next;
		b->next = NULL;
		if (b->wchunks) {
			fh_write_expired(b);
			continue;
		}
		if (b->req)
			op_log_error(b, EIO, "transport");
		fh_op_fail(b, EIO);
	}
	if (drop)
		drop_unsent(fh);
}

void fh_sweep(struct vfs *v, uint64_t now)
{
	struct fh **list = NULL;
	size_t n = 0, cap = 0;

	/* Collect with references so the handles outlive the scan. */
	pthread_mutex_lock(&v->lock);
	for (struct fh *f = v->fhs; f; f = f->next)
		cap++;
	list = cap ? malloc(cap * sizeof(*list)) : NULL;
	for (struct fh *f = v->fhs; f && n < cap && list; f = f->next) {
		fh_get(f);
		list[n++] = f;
	}
	pthread_mutex_unlock(&v->lock);
	for (size_t i = 0; i < n; i++) {
		sweep_one(list[i], now);
		fh_put(list[i]);
	}
	free(list);
	/* And the setattrs waiting for the last handles of hidden files. */
	hidden_sweep(v, now);
}

void fh_drain_all(struct vfs *v)
{
	uint64_t end = clock_mono_ns() + v->op_timeout_ns;
	size_t left;

	/* Give unacknowledged writes up to op_timeout to reach the server. */
	do {
		left = __atomic_load_n(&v->unacked_bytes, __ATOMIC_RELAXED);
		if (left)
			usleep(20 * 1000);
	} while (left && clock_mono_ns() < end);
	if (left) {
		log_err("data lost: %zu bytes unacknowledged at unmount or handover", left);
		control_event_data(v->ctl, "", 0, left, false, true);
	}
}

void fh_free_all(struct vfs *v)
{
	struct fh *fh;

	/* No thread is left to drop these references: free what remains. */
	while ((fh = v->fhs)) {
		v->fhs = fh->next;
		while (fh->chunks) {
			struct wchunk *c = fh->chunks;

			fh->chunks = c->next;
			fh_chunk_free(c);
		}
		ra_release(&fh->ra);
		pthread_mutex_destroy(&fh->lock);
		free(fh);
	}
}

double fh_oldest_unacked(struct vfs *v)
{
	uint64_t now = clock_mono_ns(), oldest = now;

	pthread_mutex_lock(&v->lock);
	for (struct fh *f = v->fhs; f; f = f->next) {
		pthread_mutex_lock(&f->lock);
		if (f->chunks && f->chunks->queued_at < oldest)
			oldest = f->chunks->queued_at;
		pthread_mutex_unlock(&f->lock);
	}
	pthread_mutex_unlock(&v->lock);
	return (double)(now - oldest) / 1e9;
}
