/*
 * readahead: per-handle sequential read-ahead. The kernel keeps at most
 * its own readahead window (128 KiB here) of FUSE reads in flight, which
 * on a distant link caps a stream at window / round trip. When a handle
 * reads sequentially, steadyfs keeps its own window of READ requests in
 * flight ahead of the reader, in aligned chunks, growing it (up to
 * RA_MAX_WINDOW) while the access stays sequential and dropping it on the
 * first random access or write.
 *
 * Plain data, no I/O: the owner (ops_file.c) sends the READs the plan
 * asks for and feeds the replies back. Every function must be called with
 * the owning handle's lock held.
 */
#ifndef STEADYFS_READAHEAD_H
#define STEADYFS_READAHEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RA_CHUNK (128u * 1024)
#define RA_MIN_WINDOW (512u * 1024)
#define RA_MAX_WINDOW (8u * 1024 * 1024)

struct op;

struct ra_chunk {
	uint64_t off;
	uint32_t len;          /* asked */
	uint32_t got;          /* received (< len at end of file) */
	char *data;
	bool done, failed;
	struct op *waiters;    /* reads waiting for this chunk */
	struct ra_chunk *next;
};

struct ra {
	uint64_t next_off;     /* where a sequential reader reads next */
	uint64_t ahead;        /* end of what has been requested */
	uint32_t window;       /* bytes to keep requested ahead; 0 = off */
	uint32_t gen;          /* bumped on invalidation */
	bool eof;              /* a chunk came back short */
	struct ra_chunk *chunks;  /* ordered by offset */
};

enum ra_result { RA_MISS = 0, RA_HIT, RA_WAIT };

/*
 * A read of [off, off+size) into op->data. RA_HIT: op->data/op->got are
 * filled; RA_WAIT: op is parked on a pending chunk (completed by
 * ra_fill); RA_MISS: the caller reads it itself. Also updates the
 * sequential detection.
 */
enum ra_result ra_lookup(struct ra *ra, struct op *op, uint64_t off, size_t size);
/*
 * The next chunk to request, if the window wants one: sets *off and *len,
 * records it as pending and returns true. Call until it returns false.
 */
bool ra_next(struct ra *ra, uint64_t *off, uint32_t *len);
/*
 * A requested chunk's reply (data NULL and failed on error). Returns the
 * reads that waited on it: each has op->got set (op->err = EIO when the
 * chunk failed and the caller should read directly). `gen` is ra->gen
 * when the chunk was requested: a stale reply is dropped.
 */
struct op *ra_fill(struct ra *ra, uint32_t gen, uint64_t off, const void *data,
		   size_t len, bool eof, bool failed);
/* Drops every chunk (after a write or a random read). Returns waiters,
 * marked op->err = EIO, for the caller to read directly. */
struct op *ra_reset(struct ra *ra);
void ra_release(struct ra *ra);

#endif
