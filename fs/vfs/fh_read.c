/*
 * fh_read: read() and the read-ahead glue. A read waits for the writes
 * queued before it that overlap it, then is served from the handle's
 * read-ahead (readahead.c plans which READs to send; they are sent and
 * their replies filed here) or read from the server in pieces of its
 * max_read (fh_io.c). The design is described in fh_int.h.
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

/* Bytes to ask for next: the rest of the range, at most max_read. */
static unsigned read_piece(struct op *op)
{
	struct conn_server sv;
	size_t want = op->size - op->got;

	pool_server(op->v->pool, &sv);
	if (sv.max_read && want > sv.max_read)
		want = sv.max_read;
	return (unsigned)want;
}

/* A prefetch: reads its whole chunk (in max_read pieces: a short DATA is
 * not the end of the file, only EOF is), then hands it to read-ahead. */
static void ra_fetch_done(struct op *op, const struct sftp_reply *r, int err)
{
	struct fh *fh = op->fh;
	bool failed = err || !(r->type == SSH_FXP_DATA ||
			       (r->type == SSH_FXP_STATUS && r->u.status.code == SSH_FX_EOF));
	struct op *w;

	if (!failed && r->type == SSH_FXP_DATA) {
		size_t n = r->u.data.len < op->size - op->got ?
			r->u.data.len : op->size - op->got;

		memcpy(op->data + op->got, r->u.data.p, n);
		op->got += n;
		if (n > 0 && op->got < op->size) {
			op->flags = read_piece(op);
			fh_dispatch(op);
			return;
		}
	}
	pthread_mutex_lock(&fh->lock);
	/* The chunk takes op->data over (op_free then frees NULL). */
	w = ra_fill(&fh->ra, op->ra_gen, op->off, &op->data, op->got,
		    op->got < op->size, failed);
	pthread_mutex_unlock(&fh->lock);
	fh_op_end(op);
	fh_finish_ra_waiters(w);
}

/* Sends the prefetches the window wants. A prefetch that fails at once
 * completes the readers parked on its chunk, and their refs may be the
 * handle's last: the loop holds one of its own. */
static void ra_fill_window(struct vfs *v, struct fh *fh)
{
	fh_get(fh);
	for (;;) {
		uint64_t off;
		uint32_t len, gen;
		struct op *pf = NULL;
		bool more;

		pthread_mutex_lock(&fh->lock);
		more = ra_next(&fh->ra, &off, &len);
		gen = fh->ra.gen;
		pthread_mutex_unlock(&fh->lock);
		if (!more)
			break;
		/* A write still queued there, or past it (the READ would end
		 * early), may land after this READ: no prefetch (checked after
		 * ra_next: one queued later drops it, fh_write_queued). */
		if (fh_ino_writes_overlap(v, fh->ino, NULL, off, UINT64_MAX) ||
		    !(pf = op_new(v, NULL, "readahead")) || !(pf->data = malloc(len))) {
			struct op *w;

			/* Fail the chunk so its readers go direct. */
			op_free(pf);
			pthread_mutex_lock(&fh->lock);
			w = ra_fill(&fh->ra, gen, off, NULL, 0, false, true);
			pthread_mutex_unlock(&fh->lock);
			fh_finish_ra_waiters(w);
			break;
		}
		pf->off = off;
		pf->size = len;
		pf->flags = read_piece(pf);
		pf->ra_gen = gen;
		fh_start(pf, fh, FH_READ, ra_fetch_done);
	}
	fh_put(fh);
}

static void read_drained(struct op *op, const struct sftp_attrs *a, int err)
{
	struct fh *fh = op->fh;
	enum ra_result res;

	op->queued_end = fh_ino_queued_end(op->v, op->ino, op->bar.seq);
	pthread_mutex_lock(&fh->lock);
	res = ra_lookup(&fh->ra, op, op->off, op->size);
	pthread_mutex_unlock(&fh->lock);
	control_note_readahead(op->v->ctl, res != RA_MISS);
	ra_fill_window(op->v, fh);
	if (res == RA_HIT)
		fh_finish_ra_waiters(op);
	else if (res == RA_MISS)
		fh_read_direct(op);
	/* RA_WAIT: ra_fetch_done completes it. */
}

void vfs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
	      struct fuse_file_info *fi)
{
	struct vfs *v = vfs_of(req);
	struct fh *fh;
	struct conn_server sv;
	struct op *op;

	if (ctl_read(req, ino, size, off, fi))
		return;
	/* What the kernel sends, for docs/performance.md's read patterns. */
	log_debug("read fh %llu off %lld size %zu pid %d t %.3f ms",
		  (unsigned long long)fi->fh, (long long)off, size,
		  (int)fuse_req_ctx(req)->pid, (double)clock_mono_ns() / 1e6);
	if (!(fh = fh_call_start(req, ino, fi, EBADF, true)) ||
	    !(op = fh_op_new(req, fh, "read")))
		return;
	op->off = (uint64_t)off;
	op->size = size;
	if (!(op->data = malloc(size ? size : 1))) {
		op_fail(op, ENOMEM);
		return;
	}
	pool_server(v->pool, &sv);
	op->flags = (unsigned)(sv.max_read && size > sv.max_read ? sv.max_read : size);
	op->ino = ino;
	op->fh = fh;
	fh_get(fh);
	/* Read what write() accepted, through any descriptor: the writes
	 * queued before this read that overlap it reach the server first
	 * (one past it only makes the file longer: read_done). */
	fh_wait_writes(op, op->off, op->off + size, NULL, read_drained);
}
