/*
 * test_readahead: the read-ahead window as plain data: sequential
 * detection, the chunks it asks for, hits, waiters, a short (end of file)
 * chunk, a failed chunk, out-of-order reads inside the window, jumps and
 * invalidation.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "readahead.h"
#include "unit.h"
#include "vfs_int.h"

static struct op *mkop(uint64_t off, size_t size)
{
	struct op *op = calloc(1, sizeof(*op));

	op->off = off;
	op->size = size;
	op->data = malloc(size);
	return op;
}

static void freeop(struct op *op)
{
	free(op->data);
	free(op);
}

/* Asks for every chunk the window wants; returns how many. */
static int drain_next(struct ra *ra, uint64_t *first, uint64_t *last)
{
	uint64_t off;
	uint32_t len;
	int n = 0;

	while (ra_next(ra, &off, &len)) {
		CHECK_EQU(len, RA_CHUNK);
		CHECK_EQU(off % RA_CHUNK, 0);
		if (n == 0 && first)
			*first = off;
		if (last)
			*last = off;
		n++;
	}
	return n;
}

static void fill_pattern(struct ra *ra, uint64_t off, size_t len)
{
	char *buf = malloc(len);
	struct op *w;

	for (size_t i = 0; i < len; i++)
		buf[i] = (char)((off + i) % 251);
	w = ra_fill(ra, ra->gen, off, buf, len, false, false);
	CHECK(w == NULL);
	free(buf);
}

static void test_sequential_hits(void)
{
	struct ra ra = { 0 };
	struct op *op = mkop(0, RA_CHUNK);
	uint64_t first = 0, last = 0;

	/* First read: a miss that arms the window. */
	CHECK_EQ(ra_lookup(&ra, op, 0, RA_CHUNK), RA_MISS);
	CHECK(drain_next(&ra, &first, &last) > 0);
	CHECK_EQU(first, RA_CHUNK);
	for (uint64_t o = first; o <= last; o += RA_CHUNK)
		fill_pattern(&ra, o, RA_CHUNK);
	/* Second read: served from memory, byte-exact. */
	CHECK_EQ(ra_lookup(&ra, op, RA_CHUNK, RA_CHUNK), RA_HIT);
	CHECK_EQU(op->got, RA_CHUNK);
	CHECK_EQ(op->data[0], (char)(RA_CHUNK % 251));
	CHECK_EQ(op->data[100], (char)((RA_CHUNK + 100) % 251));
	/* The window grows while the reader stays sequential. */
	CHECK(ra.window > RA_MIN_WINDOW);
	freeop(op);
	ra_release(&ra);
}

static void test_waiter_and_short_chunk(void)
{
	struct ra ra = { 0 };
	struct op *a = mkop(0, 4096), *b = mkop(RA_CHUNK, RA_CHUNK), *w;
	char tail[1000];

	CHECK_EQ(ra_lookup(&ra, a, 0, 4096), RA_MISS);
	/* The reader goes on: the window is armed from the rounded-up end. */
	CHECK_EQ(ra_lookup(&ra, a, 4096, RA_CHUNK - 4096), RA_MISS);
	CHECK(drain_next(&ra, NULL, NULL) > 0);
	CHECK_EQ(ra_lookup(&ra, b, RA_CHUNK, RA_CHUNK), RA_WAIT);
	memset(tail, 'x', sizeof(tail));
	/* The file ends 1000 bytes into the chunk. */
	w = ra_fill(&ra, ra.gen, RA_CHUNK, tail, sizeof(tail), true, false);
	CHECK(w == b);
	CHECK_EQU(b->got, sizeof(tail));
	CHECK_EQ(b->err, 0);
	CHECK(ra.eof);
	/* At end of file nothing more is asked for. */
	CHECK_EQ(drain_next(&ra, NULL, NULL), 0);
	freeop(a);
	freeop(b);
	ra_release(&ra);
}

static void test_failed_chunk_sends_waiter_direct(void)
{
	struct ra ra = { 0 };
	struct op *a = mkop(0, RA_CHUNK), *b = mkop(RA_CHUNK, RA_CHUNK), *w;

	ra_lookup(&ra, a, 0, RA_CHUNK);
	drain_next(&ra, NULL, NULL);
	CHECK_EQ(ra_lookup(&ra, b, RA_CHUNK, RA_CHUNK), RA_WAIT);
	w = ra_fill(&ra, ra.gen, RA_CHUNK, NULL, 0, false, true);
	CHECK(w == b);
	CHECK_EQ(b->err, EIO);
	/* The same range again is a miss, read directly. */
	b->err = 0;
	CHECK_EQ(ra_lookup(&ra, b, RA_CHUNK, RA_CHUNK), RA_MISS);
	freeop(a);
	freeop(b);
	ra_release(&ra);
}

static void test_out_of_order_stays_sequential(void)
{
	struct ra ra = { 0 };
	struct op *op = mkop(0, RA_CHUNK);
	uint32_t gen;

	ra_lookup(&ra, op, 0, RA_CHUNK);
	drain_next(&ra, NULL, NULL);
	gen = ra.gen;
	/* The kernel's async reads may arrive 3rd before 2nd. */
	CHECK_EQ(ra_lookup(&ra, op, 2 * RA_CHUNK, RA_CHUNK), RA_WAIT);
	CHECK_EQ(ra.gen, gen);
	CHECK(ra.window != 0);
	ra_release(&ra);  /* drops the parked op from its chunk first */
	freeop(op);
}

static void test_jump_and_reset(void)
{
	struct ra ra = { 0 };
	struct op *op = mkop(0, RA_CHUNK), *w;
	uint32_t gen;

	ra_lookup(&ra, op, 0, RA_CHUNK);
	drain_next(&ra, NULL, NULL);
	gen = ra.gen;
	/* A jump far away stops prefetching and drops the chunks. */
	CHECK_EQ(ra_lookup(&ra, op, 100 * RA_CHUNK, 10), RA_MISS);
	CHECK_EQ(ra.window, 0);
	CHECK(ra.chunks == NULL);
	CHECK(ra.gen != gen);
	/* A reply for the old generation is dropped. */
	CHECK(ra_fill(&ra, gen, RA_CHUNK, "x", 1, false, false) == NULL);
	/* A write resets too, handing back waiters marked for a direct read. */
	ra_lookup(&ra, op, 100 * RA_CHUNK + 10, 100);
	ra_lookup(&ra, op, 100 * RA_CHUNK + 110, 100);
	drain_next(&ra, NULL, NULL);
	w = ra_reset(&ra);
	CHECK(w == NULL);
	CHECK(ra.chunks == NULL);
	freeop(op);
	ra_release(&ra);
}

int main(void)
{
	UNIT_RUN(test_sequential_hits);
	UNIT_RUN(test_waiter_and_short_chunk);
	UNIT_RUN(test_failed_chunk_sends_waiter_direct);
	UNIT_RUN(test_out_of_order_stays_sequential);
	UNIT_RUN(test_jump_and_reset);
	return unit_summary("test_readahead");
}
