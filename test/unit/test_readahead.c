/*
 * test_readahead: the read-ahead streams and chunks as plain data, fed
 * the READ shapes docs/performance.md found the kernel sending: reads
 * larger than a chunk and unaligned ones (fadvise(SEQUENTIAL) and 4 KiB
 * readers), reordered ones, forward skips (WARC replay), two streams on one
 * handle, random reads (which must not engage), a short (end of file)
 * chunk, a failed chunk, invalidation and the memory bound.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "readahead.h"
#include "unit.h"
#include "vfs_int.h"

#define KIB 1024u
#define MIB (1024u * 1024)

static struct op *mkop(size_t size)
{
	struct op *op = calloc(1, sizeof(*op));

	op->data = malloc(size ? size : 1);
	return op;
}

static void freeop(struct op *op)
{
	free(op->data);
	free(op);
}

static char byte_at(uint64_t off)
{
	return (char)(off % 251);
}

/* Every byte of op->data is the file's byte at its offset. */
static int data_ok(const struct op *op)
{
	for (size_t i = 0; i < op->got; i++)
		if (op->data[i] != byte_at(op->off + i))
			return 0;
	return 1;
}

/* Fills one requested chunk with the file's bytes (a file of `size`
 * bytes); returns the reads it completed. */
static struct op *fill(struct ra *ra, uint64_t off, uint32_t len, uint64_t size)
{
	size_t n = off >= size ? 0 : (size - off < len ? (size_t)(size - off) : len);
	char *buf = malloc(len);
	struct op *w;

	for (size_t i = 0; i < n; i++)
		buf[i] = byte_at(off + i);
	w = ra_fill(ra, ra->gen, off, &buf, n, n < len, false);
	CHECK(buf == NULL);  /* the chunk took the buffer over */
	free(buf);
	return w;
}

/* Asks for and fills everything read-ahead wants; returns the chunks
 * asked and collects completed reads in *done (may be NULL). */
static int pump(struct ra *ra, uint64_t size, struct op **done)
{
	uint64_t off;
	uint32_t len;
	int n = 0;

	while (ra_next(ra, &off, &len)) {
		struct op *w = fill(ra, off, len, size);

		CHECK_EQU(len, RA_CHUNK);
		CHECK_EQU(off % RA_CHUNK, 0);
		while (w) {
			struct op *next = w->next;

			if (done) {
				w->next = *done;
				*done = w;
			}
			w = next;
		}
		n++;
	}
	return n;
}

static void test_first_read_engages_and_hits(void)
{
	struct ra ra = { 0 };
	struct op *op = mkop(256 * KIB), *done = NULL;

	/* cat after fadvise(SEQUENTIAL): 256 KiB READs from offset 0. The
	 * first waits on chunks asked for it, with the window behind. */
	CHECK_EQ(ra_lookup(&ra, op, 0, 256 * KIB), RA_WAIT);
	CHECK(pump(&ra, 64 * MIB, &done) >= (int)(RA_MIN_WINDOW / RA_CHUNK));
	CHECK(done == op);
	CHECK_EQ(op->err, 0);
	CHECK_EQU(op->got, 256 * KIB);
	CHECK(data_ok(op));
	/* The next one is in memory already. */
	CHECK_EQ(ra_lookup(&ra, op, 256 * KIB, 256 * KIB), RA_HIT);
	CHECK_EQU(op->got, 256 * KIB);
	CHECK(data_ok(op));
	freeop(op);
	ra_release(&ra);
}

static void test_unaligned_reads_span_chunks(void)
{
	struct ra ra = { 0 };
	struct op *op = mkop(128 * KIB);
	uint64_t off = 0;
	int hits = 0;

	/* 4 KiB reads: the kernel sends 16, 32, 64 KiB, then 128 KiB READs at
	 * 112 KiB + n * 128 KiB, each straddling two chunks. */
	static const uint32_t sizes[] = { 16, 32, 64, 128, 128, 128, 128, 128 };

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct op *done = NULL;
		enum ra_result r = ra_lookup(&ra, op, off, sizes[i] * KIB);

		CHECK(r != RA_MISS);
		pump(&ra, 64 * MIB, &done);
		if (r == RA_HIT)
			hits++;
		else
			CHECK(done == op);
		CHECK_EQU(op->got, sizes[i] * KIB);
		CHECK(data_ok(op));
		off += sizes[i] * KIB;
	}
	CHECK(hits >= 6);
	freeop(op);
	ra_release(&ra);
}

static void test_short_chunk_is_end_of_file(void)
{
	struct ra ra = { 0 };
	uint64_t size = RA_CHUNK + 1000;
	struct op *a = mkop(RA_CHUNK), *b = mkop(RA_CHUNK), *done = NULL;

	CHECK_EQ(ra_lookup(&ra, a, 0, RA_CHUNK), RA_WAIT);
	pump(&ra, size, &done);
	CHECK(done == a);
	/* The file ends 1000 bytes into the second chunk. */
	CHECK_EQ(ra_lookup(&ra, b, RA_CHUNK, RA_CHUNK), RA_HIT);
	CHECK_EQU(b->got, 1000);
	CHECK(data_ok(b));
	/* Past the end nothing more is asked for, and a read there goes to
	 * the server (which says end of file). */
	CHECK_EQ(pump(&ra, size, NULL), 0);
	CHECK_EQ(ra_lookup(&ra, b, size, RA_CHUNK), RA_MISS);
	freeop(a);
	freeop(b);
	ra_release(&ra);
}

static void test_failed_chunk_sends_waiter_direct(void)
{
	struct ra ra = { 0 };
	struct op *a = mkop(RA_CHUNK), *w;
	uint64_t off;
	uint32_t len;

	CHECK_EQ(ra_lookup(&ra, a, 0, RA_CHUNK), RA_WAIT);
	CHECK(ra_next(&ra, &off, &len));
	CHECK_EQU(off, 0);
	w = ra_fill(&ra, ra.gen, 0, NULL, 0, false, true);
	CHECK(w == a);
	CHECK_EQ(a->err, EIO);
	/* The stream backs off: the next read goes directly. */
	a->err = 0;
	CHECK_EQ(ra_lookup(&ra, a, RA_CHUNK, RA_CHUNK), RA_MISS);
	freeop(a);
	ra_release(&ra);
}

static void test_reordered_reads_stay_in_stream(void)
{
	struct ra ra = { 0 };
	struct op *op = mkop(RA_CHUNK), *done = NULL;
	uint32_t gen;

	ra_lookup(&ra, op, 0, RA_CHUNK);
	pump(&ra, 64 * MIB, &done);
	gen = ra.gen;
	/* The kernel's async READs may arrive 3rd before 2nd. */
	CHECK_EQ(ra_lookup(&ra, op, 2 * RA_CHUNK, RA_CHUNK), RA_HIT);
	CHECK_EQ(ra_lookup(&ra, op, RA_CHUNK, RA_CHUNK), RA_HIT);
	CHECK(data_ok(op));
	CHECK_EQ(ra.gen, gen);
	freeop(op);
	ra_release(&ra);
}

static void test_skip_forward_engages(void)
{
	struct ra ra = { 0 };
	struct op *op = mkop(64 * KIB);
	uint64_t off = 212 * KIB;
	int hits = 0;

	/* WARC replay: records of 20-64 KiB at increasing offsets with gaps,
	 * never from 0. The second record engages the stream. */
	CHECK_EQ(ra_lookup(&ra, op, off, 36 * KIB), RA_MISS);
	for (int i = 0; i < 20; i++) {
		struct op *done = NULL;

		off += 36 * KIB + 150 * KIB;
		if (ra_lookup(&ra, op, off, 36 * KIB) == RA_HIT)
			hits++;
		pump(&ra, 64 * MIB, &done);
		CHECK_EQU(op->got, 36 * KIB);
		CHECK(data_ok(op));
	}
	CHECK(hits >= 15);
	freeop(op);
	ra_release(&ra);
}

static void test_two_streams_on_one_handle(void)
{
	struct ra ra = { 0 };
	struct op *op = mkop(RA_CHUNK);
	uint64_t a = 0, b = 4 * MIB;
	int hits = 0;

	/* Two threads read the two halves through one descriptor. */
	for (int i = 0; i < 16; i++) {
		struct op *done = NULL;
		enum ra_result r = ra_lookup(&ra, op, a, RA_CHUNK);

		hits += r == RA_HIT;
		pump(&ra, 8 * MIB, &done);
		CHECK(r == RA_MISS || (op->got == RA_CHUNK && data_ok(op)));
		r = ra_lookup(&ra, op, b, RA_CHUNK);
		hits += r == RA_HIT;
		pump(&ra, 8 * MIB, &done);
		CHECK(r == RA_MISS || (op->got == RA_CHUNK && data_ok(op)));
		a += RA_CHUNK;
		b += RA_CHUNK;
	}
	CHECK(hits >= 28);
	CHECK(ra.held <= RA_MAX_HELD);
	freeop(op);
	ra_release(&ra);
}

static void test_random_reads_do_not_engage(void)
{
	struct ra ra = { 0 };
	struct op *op = mkop(64 * KIB);
	static const uint64_t offs[] = { 40, 7, 33, 12, 60, 2, 25, 51 };

	/* 4 KiB reads scattered over a 64 MiB file (each more than RA_SKIP
	 * from the others' ends): nothing is prefetched. */
	for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
		CHECK_EQ(ra_lookup(&ra, op, offs[i] * MIB + 4096, 4096), RA_MISS);
		CHECK_EQ(pump(&ra, 64 * MIB, NULL), 0);
	}
	CHECK(!ra_active(&ra));
	freeop(op);
	ra_release(&ra);
}

static void test_reset_drops_everything(void)
{
	struct ra ra = { 0 };
	struct op *a = mkop(RA_CHUNK), *w;
	uint64_t off;
	uint32_t len;
	uint32_t gen;
	char *stale;

	CHECK_EQ(ra_lookup(&ra, a, 0, RA_CHUNK), RA_WAIT);
	CHECK(ra_next(&ra, &off, &len));
	gen = ra.gen;
	/* A write resets: the parked read comes back to be read directly. */
	w = ra_reset(&ra);
	CHECK(w == a);
	CHECK_EQ(a->err, EIO);
	CHECK(ra.chunks == NULL);
	CHECK_EQU(ra.held, 0);
	CHECK(!ra_active(&ra));
	CHECK(ra.gen != gen);
	/* A reply for the old generation is dropped. */
	stale = strdup("x");
	CHECK(ra_fill(&ra, gen, 0, &stale, 1, false, false) == NULL);
	CHECK(stale != NULL);  /* dropped: still the caller's */
	free(stale);
	freeop(a);
	ra_release(&ra);
}

static void test_memory_bounded(void)
{
	struct ra ra = { 0 };
	uint64_t off, max_held = 0;
	uint32_t len;
	struct op *w;

	/* A reader whose prefetches never come back: the window stops at the
	 * limit. */
	for (uint64_t o = 0; o < 64 * MIB; o += RA_CHUNK) {
		struct op *op = mkop(4096);

		/* Parked (RA_WAIT) ops come back from ra_reset below; the
		 * others stay the caller's. */
		if (ra_lookup(&ra, op, o, 4096) != RA_WAIT)
			freeop(op);
		while (ra_next(&ra, &off, &len))
			;
		if (ra.held > max_held)
			max_held = ra.held;
	}
	CHECK(max_held <= RA_MAX_HELD);
	for (w = ra_reset(&ra); w; ) {
		struct op *next = w->next;

		freeop(w);
		w = next;
	}
	ra_release(&ra);
}

int main(void)
{
	UNIT_RUN(test_first_read_engages_and_hits);
	UNIT_RUN(test_unaligned_reads_span_chunks);
	UNIT_RUN(test_short_chunk_is_end_of_file);
	UNIT_RUN(test_failed_chunk_sends_waiter_direct);
	UNIT_RUN(test_reordered_reads_stay_in_stream);
	UNIT_RUN(test_skip_forward_engages);
	UNIT_RUN(test_two_streams_on_one_handle);
	UNIT_RUN(test_random_reads_do_not_engage);
	UNIT_RUN(test_reset_drops_everything);
	UNIT_RUN(test_memory_bounded);
	return unit_summary("test_readahead");
}
