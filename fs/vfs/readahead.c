/*
 * readahead: the streams and prefetched chunks of one handle. See
 * readahead.h for the contract. Chunks are RA_CHUNK-aligned, at most one
 * per slot, kept in offset order; a read is answered when every slot it
 * spans holds a filled chunk, so the kernel's READs of any size and
 * alignment are served.
 */
#include "readahead.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vfs_int.h"

static uint64_t slot_of(uint64_t off)
{
	return off / RA_CHUNK * RA_CHUNK;
}

static void fh_chunk_free(struct ra *ra, struct ra_chunk *c)
{
	ra->held -= c->len;
	free(c->data);
	free(c);
}

static struct ra_stream *stream_by_id(struct ra *ra, uint32_t id)
{
	for (int i = 0; i < RA_STREAMS; i++)
		if (ra->s[i].id == id)
			return &ra->s[i];
	return NULL;
}

/* A chunk nobody needs any more: filled (or failed, or never sent) and
 * either handed out whole, left behind by its stream, or its stream gone. */
static bool chunk_spent(struct ra *ra, const struct ra_chunk *c)
{
	const struct ra_stream *s;

	if (c->waiters || (c->sent && !c->done))
		return false;
	if (c->failed || !(s = stream_by_id(ra, c->sid)))
		return true;
	if (c->done && c->used >= c->got)
		return true;
	return c->off + c->len + RA_BEHIND <= s->next_off;
}

static void trim(struct ra *ra)
{
	struct ra_chunk **pp = &ra->chunks;

	while (*pp) {
		struct ra_chunk *c = *pp;

		if (chunk_spent(ra, c)) {
			*pp = c->next;
			fh_chunk_free(ra, c);
		} else {
			pp = &c->next;
		}
	}
}

static struct ra_chunk *find_chunk(const struct ra *ra, uint64_t slot)
{
	for (struct ra_chunk *c = ra->chunks; c && c->off <= slot; c = c->next)
		if (c->off == slot)
			return c;
	return NULL;
}

/* A new, unsent chunk at `slot` (not yet present), or NULL when the
 * handle holds its limit or memory is short. Its bytes come with its
 * reply (ra_fill); `held` counts them from now, so the limit bounds the
 * chunks in flight too. */
static struct ra_chunk *add_chunk(struct ra *ra, uint64_t slot, uint32_t sid)
{
	struct ra_chunk *c, **pp;

	if (ra->held + RA_CHUNK > RA_MAX_HELD)
		return NULL;
	if (!(c = calloc(1, sizeof(*c))))
		return NULL;
	c->off = slot;
	c->len = RA_CHUNK;
	c->sid = sid;
	for (pp = &ra->chunks; *pp && (*pp)->off < slot; pp = &(*pp)->next)
		;
	c->next = *pp;
	*pp = c;
	ra->held += c->len;
	return c;
}

/* The end of what a read can get: its own end, or the end of file. */
static uint64_t read_end(const struct ra *ra, const struct op *op)
{
	uint64_t end = op->off + op->size;

	return ra->eof_off && ra->eof_off < end ? ra->eof_off : end;
}

/* Copies [op->off, end) out of the filled chunks (each present). */
static void copy_out(struct ra *ra, struct op *op, uint64_t end)
{
	op->got = 0;
	for (uint64_t slot = slot_of(op->off); slot < end; slot += RA_CHUNK) {
		struct ra_chunk *c = find_chunk(ra, slot);
		uint64_t from = op->off + op->got, to = c->off + c->got;
		size_t n;

		if (to > end)
			to = end;
		if (from >= to)
			break;  /* end of file inside this chunk */
		n = (size_t)(to - from);
		memcpy(op->data + op->got, c->data + (from - c->off), n);
		op->got += n;
		c->used += (uint32_t)n;
		if (c->got < c->len)
			break;
	}
}

/* Whether every slot of op's range holds a filled chunk: RA_HIT (copied
 * out), RA_WAIT (parked on the first chunk still coming) or RA_MISS. */
static enum ra_result serve(struct ra *ra, struct op *op)
{
	uint64_t end = read_end(ra, op);

	if (op->size == 0 || op->off >= end)
		return RA_MISS;
	for (uint64_t slot = slot_of(op->off); slot < end; slot += RA_CHUNK) {
		struct ra_chunk *c = find_chunk(ra, slot);

		if (!c || c->failed)
			return RA_MISS;
		if (!c->done) {
			op->next = c->waiters;
			c->waiters = op;
			return RA_WAIT;
		}
	}
	copy_out(ra, op, end);
	return RA_HIT;
}

/* The stream a read at `off` continues, or NULL. An engaged stream takes
 * reads from RA_BEHIND before its end (reordered READs) to RA_SKIP past
 * it; one not engaged yet only forward ones. The closest end wins. */
static struct ra_stream *stream_for(struct ra *ra, uint64_t off)
{
	struct ra_stream *best = NULL;
	uint64_t best_d = UINT64_MAX;

	for (int i = 0; i < RA_STREAMS; i++) {
		struct ra_stream *s = &ra->s[i];
		uint64_t behind = s->window ? RA_BEHIND : 0, d;

		if (!s->id || off + behind < s->next_off || off > s->next_off + RA_SKIP)
			continue;
		d = off > s->next_off ? off - s->next_off : s->next_off - off;
		if (d < best_d) {
			best = s;
			best_d = d;
		}
	}
	return best;
}

/* A new stream at `off` in place of the least recently used one. Reads
 * from the start of a file engage at once: most readers go on. */
static struct ra_stream *stream_new(struct ra *ra, uint64_t off, size_t size)
{
	struct ra_stream *s = &ra->s[0];

	for (int i = 1; i < RA_STREAMS && s->id; i++)
		if (!ra->s[i].id || ra->s[i].used < s->used)
			s = &ra->s[i];
	memset(s, 0, sizeof(*s));
	if (++ra->next_id == 0)
		ra->next_id = 1;
	s->id = ra->next_id;
	s->reads = 1;
	s->next_off = off + size;
	s->ahead = slot_of(off);
	s->window = off == 0 ? RA_MIN_WINDOW : 0;
	return s;
}

static void stream_continue(struct ra_stream *s, uint64_t off, size_t size)
{
	s->reads++;
	if (off + size > s->next_off)
		s->next_off = off + size;
	/* Two reads in a row make a stream. */
	if (!s->window && s->reads >= 2) {
		s->window = RA_MIN_WINDOW;
		if (s->ahead < slot_of(off))
			s->ahead = slot_of(off);
	}
}

/* Chunks for the read's own slots, so it waits for them rather than
 * going to the server on its own. */
static void cover(struct ra *ra, struct ra_stream *s, const struct op *op)
{
	uint64_t end = read_end(ra, op);

	for (uint64_t slot = slot_of(op->off); slot < end; slot += RA_CHUNK)
		if (!find_chunk(ra, slot) && !add_chunk(ra, slot, s->id))
			return;
	if (s->ahead < end)
		s->ahead = (end + RA_CHUNK - 1) / RA_CHUNK * RA_CHUNK;
}

enum ra_result ra_lookup(struct ra *ra, struct op *op, uint64_t off, size_t size)
{
	struct ra_stream *s;
	enum ra_result res;

	op->off = off;
	op->size = size;
	if (!(s = stream_for(ra, off)))
		s = stream_new(ra, off, size);
	else
		stream_continue(s, off, size);
	s->used = ++ra->tick;
	trim(ra);
	if (s->window)
		cover(ra, s, op);
	res = serve(ra, op);
	/* The reader finds its data here: keep more in flight. */
	if (res != RA_MISS && s->window && s->window < RA_MAX_WINDOW)
		s->window *= 2;
	return res;
}

/* The next slot an engaged stream wants requested, as a new chunk. */
static struct ra_chunk *stream_next(struct ra *ra, struct ra_stream *s)
{
	if (s->ahead < slot_of(s->next_off))
		s->ahead = slot_of(s->next_off);
	while (s->ahead < s->next_off + s->window &&
	       !(ra->eof_off && s->ahead >= ra->eof_off)) {
		uint64_t slot = s->ahead;

		if (find_chunk(ra, slot)) {
			s->ahead += RA_CHUNK;
			continue;
		}
		if (!add_chunk(ra, slot, s->id))
			return NULL;
		s->ahead += RA_CHUNK;
		return find_chunk(ra, slot);
	}
	return NULL;
}

bool ra_next(struct ra *ra, uint64_t *off, uint32_t *len)
{
	struct ra_chunk *c;

	for (c = ra->chunks; c && c->sent; c = c->next)
		;
	for (int i = 0; !c && i < RA_STREAMS; i++)
		if (ra->s[i].id && ra->s[i].window)
			c = stream_next(ra, &ra->s[i]);
	if (!c)
		return false;
	c->sent = true;
	*off = c->off;
	*len = c->len;
	return true;
}

struct op *ra_fill(struct ra *ra, uint32_t gen, uint64_t off, char **data,
		   size_t len, bool eof, bool failed)
{
	struct ra_chunk *c;
	struct ra_stream *s;
	struct op *w, *out = NULL;

	if (gen != ra->gen || !(c = find_chunk(ra, off)) || !c->sent || c->done)
		return NULL;
	c->done = true;
	c->failed = failed;
	if (failed && (s = stream_by_id(ra, c->sid))) {
		/* Back off: the next read goes direct, the one after that
		 * engages again. */
		s->window = 0;
		s->reads = 0;
	}
	if (!failed) {
		c->got = (uint32_t)(len < c->len ? len : c->len);
		c->data = *data;
		*data = NULL;
		if ((eof || c->got < c->len) &&
		    (!ra->eof_off || c->off + c->got < ra->eof_off))
			ra->eof_off = c->off + c->got;
	}
	w = c->waiters;
	c->waiters = NULL;
	while (w) {
		struct op *next = w->next;
		enum ra_result r = failed ? RA_MISS : serve(ra, w);

		if (r != RA_WAIT) {
			w->err = r == RA_MISS ? EIO : 0;
			w->next = out;
			out = w;
		}
		w = next;
	}
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
		fh_chunk_free(ra, c);
	}
	memset(ra->s, 0, sizeof(ra->s));
	ra->gen++;
	ra->eof_off = 0;
	return out;
}

bool ra_active(const struct ra *ra)
{
	if (ra->chunks)
		return true;
	for (int i = 0; i < RA_STREAMS; i++)
		if (ra->s[i].window)
			return true;
	return false;
}

void ra_release(struct ra *ra)
{
	struct op *w = ra_reset(ra);

	(void)w;  /* released handles have no readers */
}
