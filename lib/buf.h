/*
 * buf: a growable byte buffer with typed big-endian accessors, in the
 * manner of OpenSSH's sshbuf.
 *
 * Invariants: for a buffer `b`, 0 <= b->off <= b->len <= b->cap; the
 * readable bytes are d[off..len). A zeroed `struct buf` (BUF_INIT) is a
 * valid empty buffer and is always safe to buf_release().
 *
 * Every function returns 0 on success or a negative BUF_E* code. Getters
 * check the length before consuming anything: on failure the buffer is
 * untouched and outputs are zeroed. A `_direct` getter borrows a pointer
 * into the buffer instead of copying (valid until the buffer is changed).
 *
 * Not thread-safe: one owner at a time.
 */
#ifndef STEADYFS_BUF_H
#define STEADYFS_BUF_H

#include <stddef.h>
#include <stdint.h>

enum {
	BUF_OK = 0,
	BUF_E_SHORT = -1,   /* not enough input yet */
	BUF_E_FORMAT = -2,  /* malformed input */
	BUF_E_TOOBIG = -3,  /* a length or count over its cap */
	BUF_E_NOMEM = -4,   /* allocation failed */
};

/* Hard cap on any buffer's size, and on any string length read from input. */
#define BUF_MAX_SIZE ((size_t)64 * 1024 * 1024)

struct buf {
	uint8_t *d;
	size_t off;  /* read position */
	size_t len;  /* end of data */
	size_t cap;  /* allocated size */
};
#define BUF_INIT {0}

/* Frees contents; leaves `b` as BUF_INIT. */
void buf_release(struct buf *b);
/* Drops all data, keeps the allocation. */
void buf_reset(struct buf *b);
/* Wraps `len` bytes at `p` for reading only (no copy, no free). Never call
 * a put function or buf_release on a wrapped buffer. */
void buf_wrap(struct buf *b, const void *p, size_t len);

static inline size_t buf_avail(const struct buf *b) { return b->len - b->off; }
/* NULL for an unallocated buffer (avoids NULL + 0, which UBSan flags). */
static inline const uint8_t *buf_ptr(const struct buf *b) { return b->d ? b->d + b->off : NULL; }

/* Ensures room for `n` more bytes; returns BUF_E_TOOBIG past BUF_MAX_SIZE. */
int buf_reserve(struct buf *b, size_t n);
/* Consumes `n` readable bytes (BUF_E_SHORT if fewer). */
int buf_consume(struct buf *b, size_t n);
/* Moves unread bytes to the front so the space before `off` is reused. */
void buf_compact(struct buf *b);

int buf_put(struct buf *b, const void *p, size_t n);
int buf_put_u8(struct buf *b, uint8_t v);
int buf_put_u32(struct buf *b, uint32_t v);
int buf_put_u64(struct buf *b, uint64_t v);
/* u32 length then bytes */
int buf_put_string(struct buf *b, const void *p, size_t n);
int buf_put_cstring(struct buf *b, const char *s);
/* Overwrites a u32 at absolute position `pos` (must lie inside [0,len)). */
int buf_poke_u32(struct buf *b, size_t pos, uint32_t v);

int buf_get_u8(struct buf *b, uint8_t *v);
int buf_get_u32(struct buf *b, uint32_t *v);
int buf_get_u64(struct buf *b, uint64_t *v);
/* Borrows a u32-length-prefixed string; BUF_E_TOOBIG if its length exceeds
 * `max`. `*p` points into the buffer and is not NUL-terminated. */
int buf_get_string_direct(struct buf *b, const uint8_t **p, size_t *n, size_t max);
int buf_peek_u32(const struct buf *b, uint32_t *v);

/* Names a BUF_E* code ("short input", ...). */
const char *buf_strerror(int err);

#endif
