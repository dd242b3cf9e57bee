/*
 * readahead: per-handle sequential read-ahead. The kernel keeps only its
 * own read-ahead window of FUSE READs in flight (128 KiB by default, 256
 * KiB after posix_fadvise(SEQUENTIAL), more once main.c raised the mount's
 * read_ahead_kb), which on a distant link caps a stream at window / round
 * trip. When a handle reads sequentially, steadyfs keeps its own window of
 * READ requests in flight ahead of the reader, in aligned chunks, growing
 * it (up to RA_MAX_WINDOW) while the reader keeps finding its data there.
 *
 * What the kernel sends (docs/performance.md, "What the kernel sends"):
 * READs of 4 KiB to 1 MiB at any page-aligned offset (a 128 KiB READ at
 * 112 KiB + n * 128 KiB after 4 KiB reads), several in flight and
 * arriving out of order; forward gaps where another handle's READ filled
 * the shared page cache or where the reader skips records; two streams
 * interleaved on one handle. So a read may span several chunks, a stream
 * tolerates reordering behind its end and gaps ahead of it, and a handle
 * follows up to RA_STREAMS streams.
 *
 * Plain data, no I/O: the owner (fh_read.c) sends the READs the plan
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
/* Streams followed per handle (a second reader thread on one descriptor). */
#define RA_STREAMS 4
/* A read this far past a stream's end still continues it (skipped records,
 * or pages another handle's READ brought into the shared page cache). */
#define RA_SKIP (1024u * 1024)
/* ... and this far behind it, once engaged (the kernel's READs overtake
 * each other). */
#define RA_BEHIND (2u * 1024 * 1024)
/* Chunk bytes one handle may hold, over all its streams: a full window
 * beyond what the kernel itself may have asked for and not yet taken
 * (max_background, 12, READs of up to 1 MiB after bdi.h): with less, a
 * burst of the kernel's READs used up the room and the prefetch stalled
 * until the reader caught up. */
#define RA_MAX_HELD (RA_MAX_WINDOW + 12u * 1024 * 1024)

struct op;

struct ra_chunk {
	uint64_t off;          /* RA_CHUNK-aligned */
	uint32_t len;          /* asked */
	uint32_t got;          /* received (< len at end of file) */
	uint32_t used;         /* bytes handed to readers */
	uint32_t sid;          /* stream it was asked for */
	char *data;            /* NULL until filled: the READ's own buffer */
	bool sent, done, failed;
	struct op *waiters;    /* reads waiting for this chunk */
	struct ra_chunk *next;
};

struct ra_stream {
	uint32_t id;           /* 0: unused */
	uint32_t window;       /* bytes to keep requested ahead; 0 = not engaged */
	uint32_t reads;        /* reads that continued it */
	uint64_t next_off;     /* end of its furthest read */
	uint64_t ahead;        /* end of what was requested for it */
	uint64_t used;         /* tick of its last read (least recently used goes) */
};

struct ra {
	struct ra_stream s[RA_STREAMS];
	uint32_t next_id, gen; /* gen: bumped on invalidation */
	uint64_t tick;
	uint64_t eof_off;      /* a chunk came back short here; 0 = not seen */
	uint64_t held;         /* bytes of chunks allocated */
	struct ra_chunk *chunks;  /* ordered by offset, one per aligned slot */
};

enum ra_result { RA_MISS = 0, RA_HIT, RA_WAIT };

/*
 * A read of [off, off+size) into op->data (sets op->off, op->size).
 * RA_HIT: op->data/op->got are filled; RA_WAIT: op is parked on a chunk
 * not yet filled (ra_fill hands it back); RA_MISS: the caller reads it
 * itself. Also follows the streams and may add chunks for ra_next to ask.
 */
enum ra_result ra_lookup(struct ra *ra, struct op *op, uint64_t off, size_t size);
/*
 * The next chunk to request, if any: sets *off and *len, marks it sent
 * and returns true. Call until it returns false.
 */
bool ra_next(struct ra *ra, uint64_t *off, uint32_t *len);
/*
 * A requested chunk's reply: `len` bytes in *data, a malloc'd buffer of at
 * least the chunk's length, which the chunk takes over (*data set to NULL)
 * when it accepts the reply, so a chunk's bytes live in one buffer only,
 * the one its READ filled; otherwise *data stays the caller's. On error
 * `failed` (data may then be NULL). Returns the reads it completed: each
 * has op->got set, or op->err = EIO when a chunk failed and the caller
 * should read directly. `gen` is ra->gen when the chunk was requested: a
 * stale reply is dropped.
 */
struct op *ra_fill(struct ra *ra, uint32_t gen, uint64_t off, char **data,
		   size_t len, bool eof, bool failed);
/* Drops every chunk and stream (after a write, a truncate, a change on the
 * server). Returns waiters, marked op->err = EIO, to read directly. */
struct op *ra_reset(struct ra *ra);
/* True while a stream is engaged or chunks are held. */
bool ra_active(const struct ra *ra);
void ra_release(struct ra *ra);

#endif
