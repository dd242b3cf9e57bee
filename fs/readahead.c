/*
 * readahead: the window of prefetched chunks for one handle. See
 * readahead.h for the contract. Chunks are RA_CHUNK-aligned so the
 * kernel's aligned 128 KiB reads fall inside one chunk; a read that
 * straddles two is simply a miss.
 */
#include "readahead.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vfs_int.h"

static void chunk_free(struct ra_chunk *c)
{
	free(c->data);
	free(c);
}

/* Frees chunks wholly before `off` (already consumed). */
static void trim(struct ra *ra, uint64_t off)
{
	while (ra->chunks && ra->chunks->done &&
	       ra->chunks->off + ra->chunks->len <= off && !ra->chunks->waiters) {
		struct ra_chunk *c = ra->chunks;

		ra->chunks = c->next;
		chunk_free(c);
	}
}

static void copy_out(struct ra_chunk *c, struct op *op)
{
	uint64_t from = op->off - c->off;
	size_t n = 0;

	if (from < c->got) {
		n = c->got - from;
		if (n > op->size)
			n = op->size;
		memcpy(op->data, c->data + from, n);
	}
	op->got = n;
}

static bool has_waiters(const struct ra *ra)
{
	for (const struct ra_chunk *c = ra->chunks; c; c = c->next)
		if (c->waiters)
			return true;
	return false;
}

/* Sequential: at the expected offset, or inside the window already
 * requested (the kernel sends its async reads slightly out of order). */
static bool is_sequential(const struct ra *ra, uint64_t off)
{
	if (off == ra->next_off)
		return true;
	return ra->window && ra->chunks && off >= ra->chunks->off &&
	       off < ra->ahead;
}

enum ra_result ra_lookup(struct ra *ra, struct op *op, uint64_t off, size_t size)
{
	bool sequential = is_sequential(ra, off);

	op->off = off;
	op->size = size;
	if (off + size > ra->next_off || !sequential)
		ra->next_off = off + size;
	if (!sequential) {
		/* A jump: stop prefetching; a reader that goes on
		 * sequentially from here grows the window again. Chunks
		 * someone waits on stay until filled. */
		if (!has_waiters(ra))
			ra_reset(ra);
		ra->window = 0;
		return RA_MISS;
	}
	if (ra->window == 0) {
		ra->window = RA_MIN_WINDOW;
		if (!ra->chunks)
			ra->ahead = (off + size + RA_CHUNK - 1) / RA_CHUNK * RA_CHUNK;
		return RA_MISS;
	}
	if (ra->window < RA_MAX_WINDOW)
		ra->window *= 2;
	trim(ra, off);
	for (struct ra_chunk *c = ra->chunks; c; c = c->next) {
		if (off < c->off || off + size > c->off + c->len)
			continue;
		if (c->done && !c->failed) {
			copy_out(c, op);
			return RA_HIT;
		}
		if (c->failed)
			return RA_MISS;
		op->next = c->waiters;
		c->waiters = op;
		return RA_WAIT;
	}
	return RA_MISS;
}

bool ra_next(struct ra *ra, uint64_t *off, uint32_t *len)
{
	struct ra_chunk *c, **pp;

	if (!ra->window || ra->eof || ra->ahead >= ra->next_off + ra->window)
		return false;
	if (ra->ahead < ra->next_off)
		ra->ahead = (ra->next_off + RA_CHUNK - 1) / RA_CHUNK * RA_CHUNK;
	if (!(c = calloc(1, sizeof(*c))) || !(c->data = malloc(RA_CHUNK))) {
		free(c);
		return false;
	}
	c->off = ra->ahead;
	c->len = RA_CHUNK;
	for (pp = &ra->chunks; *pp; pp = &(*pp)->next)
		;
	*pp = c;
	ra->ahead += RA_CHUNK;
	*off = c->off;
	*len = c->len;
	return true;
}

struct op *ra_fill(struct ra *ra, uint32_t gen, uint64_t off, const void *data,
		   size_t len, bool eof, bool failed)
{
	struct ra_chunk *c;
	struct op *w, *out = NULL;

	if (gen != ra->gen)
		return NULL;
	for (c = ra->chunks; c && c->off != off; c = c->next)
		;
	if (!c)
		return NULL;
	c->done = true;
	c->failed = failed;
	if (!failed) {
		c->got = (uint32_t)(len < c->len ? len : c->len);
		if (c->got)
			memcpy(c->data, data, c->got);
		if (eof || c->got < c->len)
			ra->eof = true;
	}
	for (w = c->waiters; w; ) {
		struct op *next = w->next;

		if (failed)
			w->err = EIO;
		else
			copy_out(c, w);
		w->next = out;
		out = w;
		w = next;
	}
	c->waiters = NULL;
	return out;
}

struct op *ra_reset(struct ra *ra)
{
	struct op *out = NULL;

	while (ra->chunks) {
		struct ra_chunk *c = ra->chunks;

		for (struct op *w = c->waiters; w; ) {
			struct op *next = w->next;

			w->err = EIO;
			w->next = out;
			out = w;
			w = next;
		}
		ra->chunks = c->next;
		chunk_free(c);
	}
	ra->gen++;
	ra->eof = false;
	ra->ahead = ra->next_off;
	return out;
}

void ra_release(struct ra *ra)
{
	struct op *w = ra_reset(ra);

	(void)w;  /* released handles have no readers */
}
