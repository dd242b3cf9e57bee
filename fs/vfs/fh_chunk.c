/*
 * fh_chunk: one write-behind chunk (a piece of a write() of at most the
 * server's max_write, at its offset) and the window arithmetic: its late
 * encoding on the handle's session, its submission, the room a handle
 * and all handles have for more, and the cap on chunks in flight that
 * adapts to the server's queue. The design is described in fh_int.h.
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

/* Four times the bandwidth-delay product of a 100 MB/s link at 20 ms:
 * more only costs memory (peak RSS is a target, docs/performance.md). */
#define FH_WINDOW (4u * 1024 * 1024)
/* All handles together: past it a writer with data in flight waits. */
#define TOTAL_WINDOW (32u * 1024 * 1024)
/*
 * Writes in flight per handle, whatever their size, adapt to the server's
 * queue: from FH_START_CHUNKS the cap grows by one with each write that
 * comes back within a round trip plus QUEUE_SLACK_NS of the session's
 * shortest (no queue), and halves, once per round trip, when one comes
 * back later than that by more than a round trip (the server is behind).
 * OpenSSH's sftp-server reads its input faster than it handles it; a
 * backlog of a few hundred small writes made it handle them at a few
 * hundred a second on the bench VM (docs/performance.md), where keeping
 * its queue short keeps it at thousands.
 */
#define FH_START_CHUNKS 128u
#define FH_MIN_CHUNKS 32u
#define FH_MAX_CHUNKS 1024u
#define QUEUE_SLACK_NS (2u * 1000 * 1000)

void fh_chunk_free(struct wchunk *c)
{
	buf_release(&c->rq.pkt);
	free(c->data);
	free(c);
}

int fh_chunk_encode(struct sreq *rq, const struct conn *conn, uint32_t id,
		 struct buf *out)
{
	struct wchunk *c = (struct wchunk *)rq;
	struct fh *fh = c->fh;
	int rc;

	/* Encoded on the conn thread: the handle bytes are stable while
	 * the chunk is bound to this session's generation. */
	pthread_mutex_lock(&fh->lock);
	rc = sftp_enc_write(out, id, fh->h, fh->hlen, c->off, c->data, c->len);
	pthread_mutex_unlock(&fh->lock);
	return rc;
}

void fh_submit_chunks(struct wchunk *list)
{
	struct wchunk *fifo = NULL;

	while (list) {
		struct wchunk *next = list->snext;

		list->snext = fifo;
		fifo = list;
		list = next;
	}
	while (fifo) {
		struct wchunk *next = fifo->snext;

		fifo->snext = NULL;
		pool_submit(fifo->fh->v->pool, &fifo->rq);
		fifo = next;
	}
}

bool fh_sent_now_locked(const struct fh *fh, const struct wchunk *c)
{
	return c->inflight && fh->open && c->rq.conn_idx == fh->conn_idx &&
	       c->rq.conn_gen == fh->gen;
}

bool fh_room_for_locked(struct fh *fh, size_t len, unsigned n)
{
	unsigned cap = fh->max_chunks ? fh->max_chunks : FH_START_CHUNKS;

	if (!fh->chunks)
		return true;
	return fh->unacked + len <= FH_WINDOW && fh->nchunks + n <= cap &&
	       __atomic_load_n(&fh->v->unacked_bytes, __ATOMIC_RELAXED) + len <=
	       TOTAL_WINDOW;
}

void fh_chunk_adapt(struct fh *fh, const struct wchunk *c, uint64_t now)
{
	struct pool *p = fh->v->pool;
	uint64_t rtt, base;
	unsigned cap;

	if (!c->rq.sent_at || now <= c->rq.sent_at || c->rq.served_by < 0 ||
	    c->rq.served_by >= pool_size(p) ||
	    !(base = conn_min_rtt_ns(pool_conn(p, c->rq.served_by))))
		return;
	rtt = now - c->rq.sent_at;
	pthread_mutex_lock(&fh->lock);
	cap = fh->max_chunks ? fh->max_chunks : FH_START_CHUNKS;
	if (rtt <= base + QUEUE_SLACK_NS) {
		if (cap < FH_MAX_CHUNKS)
			cap++;
	} else if (rtt > 2 * base + QUEUE_SLACK_NS && now - fh->cap_cut_at > rtt) {
		cap = cap / 2 > FH_MIN_CHUNKS ? cap / 2 : FH_MIN_CHUNKS;
		fh->cap_cut_at = now;
	}
	fh->max_chunks = cap;
	pthread_mutex_unlock(&fh->lock);
}

unsigned fh_chunk_count(const struct wchunk *c)
{
	unsigned n = 0;

	for (; c; c = c->next)
		n++;
	return n;
}

void fh_write_dropped(struct vfs *v, uint64_t ino, int kind, uint64_t at,
		   size_t size)
{
	if (kind == W_APPEND)
		nodes_append_unreserve(v->nodes, ino, at, size);
}
