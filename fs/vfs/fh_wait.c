/*
 * fh_wait: the waits for queued writes. A call that must see what write()
 * accepted through any handle of the file (its link group included: a
 * read, a truncate, a utimens, an overlapping write through another
 * handle) waits for the chunks queued before it, by their sequence
 * numbers from vfs->wseq, and not for those queued after
 * (fh_when_ino_drained); flush, fsync and release wait for one handle's
 * queue to drain (fh_when_drained). The design is described in fh_int.h.
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

static void settle_again(struct op *op, const struct sftp_attrs *a, int err);

void fh_run_drainers(struct op *d)
{
	while (d) {
		struct op *next = d->next;

		d->next = NULL;
		d->then(d, NULL, 0);
		d = next;
	}
}

void fh_file_nodes_of(struct vfs *v, uint64_t ino, struct file_nodes *fn)
{
	fn->n = nodes_twins(v->nodes, ino, fn->ids, QUIET_TWINS_MAX);
	if (fn->n == 0) {  /* forgotten meanwhile: its handles keep its id */
		fn->ids[0] = ino;
		fn->n = 1;
	}
}

bool fh_file_nodes_has(const struct file_nodes *fn, uint64_t ino)
{
	return among(ino, fn->ids, fn->n);
}

/* Whether fh holds a write queued up to `seq` that overlaps [lo, hi).
 * fh->lock held. */
static bool holds_back_locked(const struct fh *fh, uint64_t seq, uint64_t lo,
			      uint64_t hi)
{
	for (const struct wchunk *c = fh->chunks; c; c = c->next)
		if (c->seq <= seq && c->off < hi && c->off + c->len > lo)
			return true;
	return false;
}

/* The first handle of the file but `skip` that holds such a write,
 * returned locked; NULL when none does. vfs->lock held. */
static struct fh *holder_locked(struct vfs *v, const struct file_nodes *fn,
				const struct fh *skip, uint64_t seq,
				uint64_t lo, uint64_t hi)
{
	for (struct fh *f = v->fhs; f; f = f->next) {
		if (!fh_file_nodes_has(fn, f->ino) || f == skip)
			continue;
		pthread_mutex_lock(&f->lock);
		if (holds_back_locked(f, seq, lo, hi))
			return f;
		pthread_mutex_unlock(&f->lock);
	}
	return NULL;
}

bool fh_ino_writes_overlap(struct vfs *v, uint64_t ino,
			const struct fh *skip, uint64_t lo, uint64_t hi)
{
	struct file_nodes fn;
	struct fh *f;

	fh_file_nodes_of(v, ino, &fn);
	pthread_mutex_lock(&v->lock);
	f = holder_locked(v, &fn, skip, UINT64_MAX, lo, hi);
	if (f)
		pthread_mutex_unlock(&f->lock);
	pthread_mutex_unlock(&v->lock);
	return f != NULL;
}

uint64_t fh_ino_queued_end(struct vfs *v, uint64_t ino, uint64_t seq)
{
	struct file_nodes fn;
	uint64_t end = 0;

	fh_file_nodes_of(v, ino, &fn);
	pthread_mutex_lock(&v->lock);
	for (struct fh *f = v->fhs; f; f = f->next) {
		if (!fh_file_nodes_has(&fn, f->ino))
			continue;
		pthread_mutex_lock(&f->lock);
		for (const struct wchunk *c = f->chunks; c; c = c->next)
			if (c->seq <= seq && c->off + c->len > end)
				end = c->off + c->len;
		pthread_mutex_unlock(&f->lock);
	}
	pthread_mutex_unlock(&v->lock);
	return end;
}

/*
 * Runs op->after once no handle of op->ino (but op->bar.skip) holds a
 * write op waits for (op->bar), parking op on the first that
 * does. The parked op needs no reference of its own on that handle: the
 * chunk holding it back holds one, and its retirement wakes it
 * (chunk_retire), or the sweeper answers it EIO at its deadline.
 */
static void when_settled(struct op *op)
{
	struct vfs *v = op->v;
	struct file_nodes fn;
	struct fh *f;

	fh_file_nodes_of(v, op->ino, &fn);
	pthread_mutex_lock(&v->lock);
	f = holder_locked(v, &fn, op->bar.skip, op->bar.seq, op->bar.lo,
			  op->bar.hi);
	if (f) {
		op->then = settle_again;
		op->next = f->barriers;
		f->barriers = op;
		pthread_mutex_unlock(&f->lock);
	}
	pthread_mutex_unlock(&v->lock);
	if (!f)
		op->after(op, NULL, 0);
}

/* A handle let op go: another one may still hold it back. */
static void settle_again(struct op *op, const struct sftp_attrs *a, int err)
{
	when_settled(op);
}

struct op *fh_settled_locked(struct fh *fh)
{
	struct op *out = NULL, **pp = &fh->barriers;

	while (*pp) {
		struct op *op = *pp;

		if (holds_back_locked(fh, op->bar.seq, op->bar.lo, op->bar.hi)) {
			pp = &op->next;
			continue;
		}
		*pp = op->next;
		op->next = out;
		out = op;
	}
	return out;
}

void fh_wait_writes(struct op *op, uint64_t lo, uint64_t hi,
		 const struct fh *skip,
		 void (*then)(struct op *, const struct sftp_attrs *, int))
{
	op->bar.seq = __atomic_load_n(&op->v->wseq, __ATOMIC_ACQUIRE);
	op->bar.lo = lo;
	op->bar.hi = hi;
	op->bar.skip = skip;
	op->after = then;
	when_settled(op);
}

void fh_when_drained(struct op *op, struct fh *fh,
		  void (*then)(struct op *, const struct sftp_attrs *, int))
{
	op->fh = fh;
	op->then = then;
	fh_get(fh);
	pthread_mutex_lock(&fh->lock);
	if (fh->chunks) {
		op->next = fh->drainers;
		fh->drainers = op;
		pthread_mutex_unlock(&fh->lock);
		return;
	}
	pthread_mutex_unlock(&fh->lock);
	then(op, NULL, 0);
}

void fh_when_ino_drained(struct op *op,
			 void (*then)(struct op *, const struct sftp_attrs *, int))
{
	fh_wait_writes(op, 0, UINT64_MAX, NULL, then);
}
