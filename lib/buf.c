/*
 * buf: a growable byte buffer with typed big-endian accessors. See buf.h
 * for the contract.
 *
 * Every getter checks the whole length it needs before it consumes
 * anything, so a failed get leaves the read position where it was, and
 * zeroes its outputs so a caller that ignores the code reads zeros rather
 * than stale data. Every put reserves its whole size first, so a failed
 * put appends nothing.
 */
#include "buf.h"

#include <stdlib.h>
#include <string.h>

/* Smallest allocation: most packets we build are small. */
#define BUF_MIN_ALLOC 256

void buf_release(struct buf *b)
{
	free(b->d);
	memset(b, 0, sizeof(*b));
}

void buf_reset(struct buf *b)
{
	b->off = 0;
	b->len = 0;
}

void buf_wrap(struct buf *b, const void *p, size_t len)
{
	/* The cast drops const: the header forbids putting into a wrapped
	 * buffer, and cap == len means any put would try to realloc it. */
	b->d = (uint8_t *)p;
	b->off = 0;
	b->len = p ? len : 0;
	b->cap = b->len;
}

int buf_reserve(struct buf *b, size_t n)
{
	size_t need, ncap;
	uint8_t *nd;

	if (n > BUF_MAX_SIZE || b->len > BUF_MAX_SIZE - n)
		return BUF_E_TOOBIG;
	need = b->len + n;
	if (need <= b->cap)
		return BUF_OK;
	ncap = b->cap < BUF_MIN_ALLOC ? BUF_MIN_ALLOC : b->cap;
	while (ncap < need)
		ncap = ncap > BUF_MAX_SIZE / 2 ? BUF_MAX_SIZE : ncap * 2;
	nd = realloc(b->d, ncap);
	if (!nd)
		return BUF_E_NOMEM;
	b->d = nd;
	b->cap = ncap;
	return BUF_OK;
}

int buf_consume(struct buf *b, size_t n)
{
	if (n > buf_avail(b))
		return BUF_E_SHORT;
	b->off += n;
	return BUF_OK;
}

void buf_compact(struct buf *b)
{
	size_t avail = buf_avail(b);

	if (b->off == 0)
		return;
	if (avail)
		memmove(b->d, b->d + b->off, avail);
	b->off = 0;
	b->len = avail;
}

int buf_put(struct buf *b, const void *p, size_t n)
{
	int rc = buf_reserve(b, n);

	if (rc)
		return rc;
	if (n) /* memcpy from NULL is undefined even for zero bytes */
		memcpy(b->d + b->len, p, n);
	b->len += n;
	return BUF_OK;
}

int buf_put_u8(struct buf *b, uint8_t v)
{
	return buf_put(b, &v, 1);
}

int buf_put_u32(struct buf *b, uint32_t v)
{
	uint8_t x[4] = { v >> 24, v >> 16, v >> 8, v };

	return buf_put(b, x, sizeof(x));
}

int buf_put_u64(struct buf *b, uint64_t v)
{
	uint8_t x[8] = { v >> 56, v >> 48, v >> 40, v >> 32,
			 v >> 24, v >> 16, v >> 8, v };

	return buf_put(b, x, sizeof(x));
}

int buf_put_string(struct buf *b, const void *p, size_t n)
{
	int rc;

	if (n > BUF_MAX_SIZE)
		return BUF_E_TOOBIG;
	/* Reserve both parts so a failure cannot leave a bare length. */
	rc = buf_reserve(b, 4 + n);
	if (rc)
		return rc;
	buf_put_u32(b, (uint32_t)n);
	return buf_put(b, p, n);
}

int buf_put_cstring(struct buf *b, const char *s)
{
	return buf_put_string(b, s, s ? strlen(s) : 0);
}

static void store_u32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

static uint32_t load_u32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

int buf_poke_u32(struct buf *b, size_t pos, uint32_t v)
{
	if (pos > b->len || b->len - pos < 4)
		return BUF_E_SHORT;
	store_u32(b->d + pos, v);
	return BUF_OK;
}

int buf_get_u8(struct buf *b, uint8_t *v)
{
	*v = 0;
	if (buf_avail(b) < 1)
		return BUF_E_SHORT;
	*v = b->d[b->off++];
	return BUF_OK;
}

int buf_peek_u32(const struct buf *b, uint32_t *v)
{
	*v = 0;
	if (buf_avail(b) < 4)
		return BUF_E_SHORT;
	*v = load_u32(b->d + b->off);
	return BUF_OK;
}

int buf_get_u32(struct buf *b, uint32_t *v)
{
	int rc = buf_peek_u32(b, v);

	if (rc == BUF_OK)
		b->off += 4;
	return rc;
}

int buf_get_u64(struct buf *b, uint64_t *v)
{
	const uint8_t *p;

	*v = 0;
	if (buf_avail(b) < 8)
		return BUF_E_SHORT;
	p = b->d + b->off;
	*v = (uint64_t)load_u32(p) << 32 | load_u32(p + 4);
	b->off += 8;
	return BUF_OK;
}

int buf_get_string_direct(struct buf *b, const uint8_t **p, size_t *n,
			  size_t max)
{
	uint32_t len;
	int rc;

	*p = NULL;
	*n = 0;
	rc = buf_peek_u32(b, &len);
	if (rc)
		return rc;
	/* Size first: an absurd length is an error even before its bytes
	 * arrive, so a stream reader does not wait for them forever. */
	if (len > max || len > BUF_MAX_SIZE)
		return BUF_E_TOOBIG;
	if (buf_avail(b) - 4 < len)
		return BUF_E_SHORT;
	*p = b->d + b->off + 4;
	*n = len;
	b->off += 4 + (size_t)len;
	return BUF_OK;
}

const char *buf_strerror(int err)
{
	switch (err) {
	case BUF_OK:       return "success";
	case BUF_E_SHORT:  return "short input";
	case BUF_E_FORMAT: return "malformed input";
	case BUF_E_TOOBIG: return "length over limit";
	case BUF_E_NOMEM:  return "out of memory";
	}
	return "unknown buffer error";
}
