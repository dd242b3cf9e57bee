/*
 * test_buf: unit tests for lib/buf. Every getter is tried on input cut at
 * every length, and must fail with BUF_E_SHORT, leave the buffer as it was
 * and zero its outputs; oversized lengths must give BUF_E_TOOBIG before any
 * allocation or consumption.
 */
#include "buf.h"
#include "unit.h"

#include <stdlib.h>

static void test_init_release(void)
{
	struct buf b = BUF_INIT;

	CHECK_EQU(buf_avail(&b), 0);
	buf_release(&b);  /* a zeroed buffer is always safe to release */
	CHECK(b.d == NULL && b.len == 0 && b.cap == 0 && b.off == 0);
	CHECK_EQ(buf_put_u8(&b, 7), BUF_OK);
	buf_release(&b);
	CHECK(b.d == NULL && b.len == 0 && b.cap == 0 && b.off == 0);
	buf_release(&b);
}

static void test_put_bytes(void)
{
	static const uint8_t want[] = {
		0x7f,
		0xde, 0xad, 0xbe, 0xef,
		0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
		0x00, 0x00, 0x00, 0x03, 'a', 'b', 'c',
		0x00, 0x00, 0x00, 0x02, 'h', 'i',
		0x00, 0x00, 0x00, 0x00,
		'x', 'y',
	};
	struct buf b = BUF_INIT;

	CHECK_EQ(buf_put_u8(&b, 0x7f), 0);
	CHECK_EQ(buf_put_u32(&b, 0xdeadbeef), 0);
	CHECK_EQ(buf_put_u64(&b, 0x0102030405060708ull), 0);
	CHECK_EQ(buf_put_string(&b, "abc", 3), 0);
	CHECK_EQ(buf_put_cstring(&b, "hi"), 0);
	CHECK_EQ(buf_put_string(&b, NULL, 0), 0);
	CHECK_EQ(buf_put(&b, "xy", 2), 0);
	CHECK_EQ(buf_put(&b, NULL, 0), 0);
	CHECK_MEM(buf_ptr(&b), buf_avail(&b), want, sizeof(want));
	CHECK(b.len <= b.cap);
	buf_release(&b);
}

static void test_get_roundtrip(void)
{
	struct buf b = BUF_INIT;
	const uint8_t *p;
	uint64_t v64;
	uint32_t v32;
	uint8_t v8;
	size_t n;

	buf_put_u8(&b, 0xff);
	buf_put_u32(&b, 0x80000001u);
	buf_put_u64(&b, UINT64_MAX - 1);
	buf_put_cstring(&b, "hello");
	buf_put_string(&b, NULL, 0);

	CHECK_EQ(buf_get_u8(&b, &v8), 0);
	CHECK_EQU(v8, 0xff);
	CHECK_EQ(buf_peek_u32(&b, &v32), 0);
	CHECK_EQU(v32, 0x80000001u);
	CHECK_EQU(b.off, 1);  /* peek does not consume */
	CHECK_EQ(buf_get_u32(&b, &v32), 0);
	CHECK_EQU(v32, 0x80000001u);
	CHECK_EQ(buf_get_u64(&b, &v64), 0);
	CHECK_EQU(v64, UINT64_MAX - 1);
	CHECK_EQ(buf_get_string_direct(&b, &p, &n, 5), 0);
	CHECK_MEM(p, n, "hello", 5);
	CHECK_EQ(buf_get_string_direct(&b, &p, &n, 0), 0);
	CHECK_EQU(n, 0);
	CHECK_EQU(buf_avail(&b), 0);
	CHECK_EQ(buf_get_u8(&b, &v8), BUF_E_SHORT);
	buf_release(&b);
}

/* Every getter that needs more than `len` bytes of `src` must fail short,
 * leave the buffer untouched and zero its outputs. */
static void check_short(const uint8_t *src, size_t len)
{
	const uint8_t *p = src;
	uint64_t v64 = 0xaa;
	uint32_t v32 = 0xaa;
	uint8_t v8 = 0xaa;
	struct buf b;
	size_t n = 99;

	buf_wrap(&b, src, len);
	if (len < 1) {
		CHECK_EQ(buf_get_u8(&b, &v8), BUF_E_SHORT);
		CHECK_EQU(v8, 0);
	}
	if (len < 4) {
		CHECK_EQ(buf_peek_u32(&b, &v32), BUF_E_SHORT);
		CHECK_EQU(v32, 0);
		v32 = 0xaa;
		CHECK_EQ(buf_get_u32(&b, &v32), BUF_E_SHORT);
		CHECK_EQU(v32, 0);
	}
	if (len < 8) {
		CHECK_EQ(buf_get_u64(&b, &v64), BUF_E_SHORT);
		CHECK_EQU(v64, 0);
	}
	CHECK_EQ(buf_get_string_direct(&b, &p, &n, 1000), BUF_E_SHORT);
	CHECK(p == NULL && n == 0);
	CHECK_EQU(b.off, 0);
}

static void test_truncated_every_length(void)
{
	static const uint8_t src[] = {
		0x00, 0x00, 0x00, 0x05, 'h', 'e', 'l', 'l', 'o',
	};
	size_t len;

	check_short(NULL, 0);
	for (len = 0; len < sizeof(src); len++)
		check_short(src, len);
}

/* The same getters after some bytes were consumed: "unchanged" means the
 * read position, not just zero. */
static void test_truncated_mid_buffer(void)
{
	static const uint8_t src[] = { 1, 2, 3, 0, 0, 0, 9, 'a', 'b' };
	const uint8_t *p;
	struct buf b;
	uint64_t v64;
	size_t n;

	buf_wrap(&b, src, sizeof(src));
	CHECK_EQ(buf_consume(&b, 3), 0);
	CHECK_EQ(buf_get_u64(&b, &v64), BUF_E_SHORT);
	CHECK_EQ(buf_get_string_direct(&b, &p, &n, 100), BUF_E_SHORT);
	CHECK_EQU(b.off, 3);
	CHECK_EQ(buf_consume(&b, 7), BUF_E_SHORT);
	CHECK_EQU(b.off, 3);
	CHECK_EQ(buf_consume(&b, 6), 0);
	CHECK_EQU(buf_avail(&b), 0);
}

static void test_string_too_big(void)
{
	static const uint8_t huge[] = { 0xff, 0xff, 0xff, 0xff, 'x' };
	static const uint8_t six[] = { 0, 0, 0, 6, 'a', 'b', 'c', 'd', 'e', 'f' };
	const uint8_t *p = six;
	struct buf b;
	size_t n = 5;

	buf_wrap(&b, six, sizeof(six));
	CHECK_EQ(buf_get_string_direct(&b, &p, &n, 5), BUF_E_TOOBIG);
	CHECK(p == NULL);
	CHECK_EQU(n, 0);
	CHECK_EQU(b.off, 0);
	CHECK_EQ(buf_get_string_direct(&b, &p, &n, 6), 0);
	CHECK_EQU(n, 6);

	/* Even with no cap from the caller, BUF_MAX_SIZE applies, and it
	 * is reported before the (missing) bytes could arrive. */
	buf_wrap(&b, huge, sizeof(huge));
	CHECK_EQ(buf_get_string_direct(&b, &p, &n, SIZE_MAX), BUF_E_TOOBIG);
	CHECK_EQU(b.off, 0);
	buf_wrap(&b, huge, 4);
	CHECK_EQ(buf_get_string_direct(&b, &p, &n, 10), BUF_E_TOOBIG);
}

static void test_put_too_big(void)
{
	struct buf b = BUF_INIT;

	CHECK_EQ(buf_put_u32(&b, 1), 0);
	CHECK_EQ(buf_reserve(&b, BUF_MAX_SIZE), BUF_E_TOOBIG);
	CHECK_EQ(buf_reserve(&b, SIZE_MAX), BUF_E_TOOBIG);
	CHECK_EQ(buf_reserve(&b, BUF_MAX_SIZE - 4), 0);
	CHECK(b.cap >= BUF_MAX_SIZE);
	/* The pointer is never read: the size check comes first. */
	CHECK_EQ(buf_put(&b, "", SIZE_MAX), BUF_E_TOOBIG);
	CHECK_EQ(buf_put_string(&b, "", SIZE_MAX), BUF_E_TOOBIG);
	CHECK_EQ(buf_put_string(&b, "", BUF_MAX_SIZE - 4), BUF_E_TOOBIG);
	CHECK_EQU(b.len, 4);
	buf_release(&b);
}

static void test_growth(void)
{
	struct buf b = BUF_INIT;
	uint32_t i, v;
	int bad = 0;

	for (i = 0; i < 300000; i++)
		bad |= buf_put_u32(&b, i);
	CHECK_EQ(bad, 0);
	CHECK_EQU(buf_avail(&b), 4 * 300000);
	for (i = 0; i < 300000; i++)
		bad |= buf_get_u32(&b, &v) || v != i;
	CHECK_EQ(bad, 0);
	buf_release(&b);
}

static void test_poke(void)
{
	static const uint8_t want[] = { 0, 0, 0, 5, 0x11, 0x22, 0x33, 0x44, 9 };
	struct buf b = BUF_INIT;

	buf_put_u32(&b, 0);
	buf_put_u32(&b, 0);
	buf_put_u8(&b, 9);
	CHECK_EQ(buf_poke_u32(&b, 0, 5), 0);
	CHECK_EQ(buf_poke_u32(&b, 4, 0x11223344), 0);
	CHECK_EQ(buf_poke_u32(&b, 6, 1), BUF_E_SHORT);
	CHECK_EQ(buf_poke_u32(&b, 9, 1), BUF_E_SHORT);
	CHECK_EQ(buf_poke_u32(&b, SIZE_MAX, 1), BUF_E_SHORT);
	CHECK_MEM(b.d, b.len, want, sizeof(want));
	buf_release(&b);
}

static void test_compact_reset(void)
{
	struct buf b = BUF_INIT;
	uint8_t v;
	size_t cap;

	buf_put(&b, "abcdef", 6);
	buf_get_u8(&b, &v);
	buf_get_u8(&b, &v);
	buf_compact(&b);
	CHECK_EQU(b.off, 0);
	CHECK_MEM(buf_ptr(&b), buf_avail(&b), "cdef", 4);
	CHECK_EQ(buf_consume(&b, 4), 0);
	buf_compact(&b);
	CHECK(b.off == 0 && b.len == 0);
	buf_put(&b, "zz", 2);
	cap = b.cap;
	buf_reset(&b);
	CHECK(b.off == 0 && b.len == 0 && b.cap == cap && b.d != NULL);
	buf_release(&b);

	buf_compact(&b);  /* on an empty, unallocated buffer */
	CHECK(b.d == NULL && b.len == 0);
}

static void test_wrap(void)
{
	static const uint8_t src[] = { 0, 0, 0, 1 };
	struct buf b;
	uint32_t v;

	buf_wrap(&b, src, sizeof(src));
	CHECK(buf_ptr(&b) == src);
	CHECK_EQ(buf_get_u32(&b, &v), 0);
	CHECK_EQU(v, 1);
	buf_wrap(&b, NULL, 10);  /* a NULL wrap is an empty buffer */
	CHECK_EQU(buf_avail(&b), 0);
}

static void test_strerror(void)
{
	CHECK_STR(buf_strerror(BUF_OK), "success");
	CHECK_STR(buf_strerror(BUF_E_SHORT), "short input");
	CHECK_STR(buf_strerror(BUF_E_FORMAT), "malformed input");
	CHECK_STR(buf_strerror(BUF_E_TOOBIG), "length over limit");
	CHECK_STR(buf_strerror(BUF_E_NOMEM), "out of memory");
	CHECK_STR(buf_strerror(-99), "unknown buffer error");
}

int main(void)
{
	UNIT_RUN(test_init_release);
	UNIT_RUN(test_put_bytes);
	UNIT_RUN(test_get_roundtrip);
	UNIT_RUN(test_truncated_every_length);
	UNIT_RUN(test_truncated_mid_buffer);
	UNIT_RUN(test_string_too_big);
	UNIT_RUN(test_put_too_big);
	UNIT_RUN(test_growth);
	UNIT_RUN(test_poke);
	UNIT_RUN(test_compact_reset);
	UNIT_RUN(test_wrap);
	UNIT_RUN(test_strerror);
	return unit_summary("test_buf");
}
