/*
 * test_sftp: unit tests for the SFTP v3 codec in lib/sftp.
 *
 * Requests: a few encoders are checked against hand-written bytes, the
 * rest against packets assembled field by field with the (separately
 * tested) buf accessors; every encoder failure must leave `out` as it was.
 * Replies: hand-built packets of every reply type are decoded, then cut at
 * every length (each cut must be an error, never a crash or an over-read:
 * run this under SANITIZE=1), and given oversized lengths and counts.
 */
#include "sftp.h"
#include "unit.h"

#include <errno.h>
#include <stdlib.h>

/* ---- helpers ------------------------------------------------------------ */

/* Starts a hand-assembled packet: length placeholder, type, id. */
static size_t pkt_start(struct buf *b, uint8_t type, uint32_t id)
{
	size_t start = b->len;

	buf_put_u32(b, 0);
	buf_put_u8(b, type);
	buf_put_u32(b, id);
	return start;
}

static void pkt_finish(struct buf *b, size_t start)
{
	buf_poke_u32(b, start, (uint32_t)(b->len - start - 4));
}

/* Checks that `got` holds exactly the packet assembled in `want`. */
#define CHECK_PKT(got, want) CHECK_MEM((got)->d, (got)->len, (want)->d, (want)->len)

/* A packet body (after the length) as the decoders take it. */
#define BODY(b) ((b)->d + 4), ((b)->len - 4)

static const struct sftp_attrs all_attrs = {
	.flags = SSH_FILEXFER_ATTR_SIZE | SSH_FILEXFER_ATTR_UIDGID |
		 SSH_FILEXFER_ATTR_PERMISSIONS | SSH_FILEXFER_ATTR_ACMODTIME,
	.size = 0x0102030405060708ull, .uid = 1000, .gid = 1001,
	.perm = 0100644, .atime = 1700000000, .mtime = 1700000001,
};

static void put_all_attrs(struct buf *b)
{
	buf_put_u32(b, 0x0f);
	buf_put_u64(b, all_attrs.size);
	buf_put_u32(b, all_attrs.uid);
	buf_put_u32(b, all_attrs.gid);
	buf_put_u32(b, all_attrs.perm);
	buf_put_u32(b, all_attrs.atime);
	buf_put_u32(b, all_attrs.mtime);
}

static int attrs_equal(const struct sftp_attrs *a, const struct sftp_attrs *b)
{
	return a->flags == b->flags && a->size == b->size && a->uid == b->uid &&
	       a->gid == b->gid && a->perm == b->perm &&
	       a->atime == b->atime && a->mtime == b->mtime;
}

static int is_zero(const void *p, size_t n)
{
	const uint8_t *c = p;

	while (n--)
		if (*c++)
			return 0;
	return 1;
}

/* ---- requests: hand-written bytes --------------------------------------- */

static void test_enc_init(void)
{
	static const uint8_t want[] = { 0, 0, 0, 5, 1, 0, 0, 0, 3 };
	struct buf b = BUF_INIT;

	CHECK_EQ(sftp_enc_init(&b), 0);
	CHECK_MEM(b.d, b.len, want, sizeof(want));
	buf_release(&b);
}

static void test_enc_open_bytes(void)
{
	static const uint8_t want[] = {
		0, 0, 0, 23, SSH_FXP_OPEN, 0, 0, 0, 1,
		0, 0, 0, 2, '/', 'a',
		0, 0, 0, 0x0b,                  /* READ|WRITE|CREAT */
		0, 0, 0, 0x04, 0, 0, 0x01, 0xa4, /* PERMISSIONS 0644 */
	};
	struct sftp_attrs a = { .flags = SSH_FILEXFER_ATTR_PERMISSIONS,
				.perm = 0644, .size = 99 };
	struct buf b = BUF_INIT;

	CHECK_EQ(sftp_enc_open(&b, 1, "/a", SSH_FXF_READ | SSH_FXF_WRITE |
			       SSH_FXF_CREAT, &a), 0);
	CHECK_MEM(b.d, b.len, want, sizeof(want));
	buf_release(&b);
}

static void test_enc_read_bytes(void)
{
	static const uint8_t want[] = {
		0, 0, 0, 23, SSH_FXP_READ, 0, 0, 0, 7,
		0, 0, 0, 2, 'h', '1',
		0, 0, 0, 1, 0, 0, 0, 0,         /* offset 4 GiB */
		0, 0, 0x80, 0,                  /* 32 KiB */
	};
	struct buf b = BUF_INIT;

	CHECK_EQ(sftp_enc_read(&b, 7, (const uint8_t *)"h1", 2,
			       0x100000000ull, 32768), 0);
	CHECK_MEM(b.d, b.len, want, sizeof(want));
	buf_release(&b);
}

static void test_enc_symlink_bytes(void)
{
	/* OpenSSH order: target first, then the link's own path. */
	static const uint8_t want[] = {
		0, 0, 0, 16, SSH_FXP_SYMLINK, 0xff, 0xff, 0xff, 0xff,
		0, 0, 0, 1, 't',
		0, 0, 0, 2, '/', 'l',
	};
	struct buf b = BUF_INIT;

	CHECK_EQ(sftp_enc_symlink(&b, 0xffffffffu, "t", "/l"), 0);
	CHECK_MEM(b.d, b.len, want, sizeof(want));
	buf_release(&b);
}

static void test_enc_limits_bytes(void)
{
	static const uint8_t want[] = {
		0, 0, 0, 27, SSH_FXP_EXTENDED, 0, 0, 1, 0,
		0, 0, 0, 18, 'l', 'i', 'm', 'i', 't', 's', '@', 'o', 'p', 'e',
		'n', 's', 's', 'h', '.', 'c', 'o', 'm',
	};
	struct buf b = BUF_INIT;

	CHECK_EQ(sftp_enc_limits(&b, 256), 0);
	CHECK_MEM(b.d, b.len, want, sizeof(want));
	buf_release(&b);
}

/* ---- requests: assembled field by field --------------------------------- */

static void test_enc_handle_requests(void)
{
	static const uint8_t h[] = { 0, 1, 2, 0xff };
	struct buf got = BUF_INIT, want = BUF_INIT;
	size_t s;

	/* Encoders append: several packets in one buffer. */
	CHECK_EQ(sftp_enc_close(&got, 1, h, 4), 0);
	s = pkt_start(&want, SSH_FXP_CLOSE, 1);
	buf_put_string(&want, h, 4);
	pkt_finish(&want, s);

	CHECK_EQ(sftp_enc_handle(&got, SSH_FXP_FSTAT, 2, h, 4), 0);
	s = pkt_start(&want, SSH_FXP_FSTAT, 2);
	buf_put_string(&want, h, 4);
	pkt_finish(&want, s);

	CHECK_EQ(sftp_enc_handle(&got, SSH_FXP_READDIR, 3, h, 0), 0);
	s = pkt_start(&want, SSH_FXP_READDIR, 3);
	buf_put_string(&want, NULL, 0);
	pkt_finish(&want, s);

	CHECK_EQ(sftp_enc_write(&got, 4, h, 4, 12345, "data", 4), 0);
	s = pkt_start(&want, SSH_FXP_WRITE, 4);
	buf_put_string(&want, h, 4);
	buf_put_u64(&want, 12345);
	buf_put_string(&want, "data", 4);
	pkt_finish(&want, s);

	CHECK_EQ(sftp_enc_fsetstat(&got, 5, h, 4, &all_attrs), 0);
	s = pkt_start(&want, SSH_FXP_FSETSTAT, 5);
	buf_put_string(&want, h, 4);
	put_all_attrs(&want);
	pkt_finish(&want, s);

	CHECK_EQ(sftp_enc_fsync(&got, 6, h, 4), 0);
	s = pkt_start(&want, SSH_FXP_EXTENDED, 6);
	buf_put_cstring(&want, "fsync@openssh.com");
	buf_put_string(&want, h, 4);
	pkt_finish(&want, s);

	CHECK_PKT(&got, &want);
	buf_release(&got);
	buf_release(&want);
}

static void test_enc_path_requests(void)
{
	static const uint8_t types[] = {
		SSH_FXP_LSTAT, SSH_FXP_STAT, SSH_FXP_OPENDIR, SSH_FXP_REMOVE,
		SSH_FXP_RMDIR, SSH_FXP_REALPATH, SSH_FXP_READLINK,
	};
	struct buf got = BUF_INIT, want = BUF_INIT;
	size_t i, s;

	for (i = 0; i < sizeof(types); i++) {
		CHECK_EQ(sftp_enc_path(&got, types[i], (uint32_t)i, "/d/f"), 0);
		s = pkt_start(&want, types[i], (uint32_t)i);
		buf_put_cstring(&want, "/d/f");
		pkt_finish(&want, s);
	}
	CHECK_EQ(sftp_enc_path(&got, 10, 10, ""), BUF_E_FORMAT);
	CHECK_EQ(sftp_enc_path(&got, SSH_FXP_REALPATH, 11, ""), 0);
	s = pkt_start(&want, SSH_FXP_REALPATH, 11);
	buf_put_cstring(&want, "");
	pkt_finish(&want, s);
	CHECK_PKT(&got, &want);
	buf_release(&got);
	buf_release(&want);
}

static void test_enc_attr_requests(void)
{
	struct buf got = BUF_INIT, want = BUF_INIT;
	size_t s;

	CHECK_EQ(sftp_enc_setstat(&got, 1, "/x", &all_attrs), 0);
	s = pkt_start(&want, SSH_FXP_SETSTAT, 1);
	buf_put_cstring(&want, "/x");
	put_all_attrs(&want);
	pkt_finish(&want, s);

	CHECK_EQ(sftp_enc_mkdir(&got, 2, "/y", NULL), 0);
	s = pkt_start(&want, SSH_FXP_MKDIR, 2);
	buf_put_cstring(&want, "/y");
	buf_put_u32(&want, 0);  /* NULL attrs: empty */
	pkt_finish(&want, s);

	CHECK_EQ(sftp_enc_lsetstat(&got, 3, "/z", &all_attrs), 0);
	s = pkt_start(&want, SSH_FXP_EXTENDED, 3);
	buf_put_cstring(&want, "lsetstat@openssh.com");
	buf_put_cstring(&want, "/z");
	put_all_attrs(&want);
	pkt_finish(&want, s);

	CHECK_EQ(sftp_enc_open(&got, 4, "/o", SSH_FXF_EXCL, NULL), 0);
	s = pkt_start(&want, SSH_FXP_OPEN, 4);
	buf_put_cstring(&want, "/o");
	buf_put_u32(&want, SSH_FXF_EXCL);
	buf_put_u32(&want, 0);
	pkt_finish(&want, s);

	CHECK_PKT(&got, &want);
	buf_release(&got);
	buf_release(&want);
}

static void test_enc_two_path_requests(void)
{
	struct buf got = BUF_INIT, want = BUF_INIT;
	size_t s;

	CHECK_EQ(sftp_enc_rename(&got, 1, "/a", "/b"), 0);
	s = pkt_start(&want, SSH_FXP_RENAME, 1);
	buf_put_cstring(&want, "/a");
	buf_put_cstring(&want, "/b");
	pkt_finish(&want, s);

	CHECK_EQ(sftp_enc_posix_rename(&got, 2, "/a", "/b"), 0);
	s = pkt_start(&want, SSH_FXP_EXTENDED, 2);
	buf_put_cstring(&want, "posix-rename@openssh.com");
	buf_put_cstring(&want, "/a");
	buf_put_cstring(&want, "/b");
	pkt_finish(&want, s);

	CHECK_EQ(sftp_enc_hardlink(&got, 3, "/old", "/new"), 0);
	s = pkt_start(&want, SSH_FXP_EXTENDED, 3);
	buf_put_cstring(&want, "hardlink@openssh.com");
	buf_put_cstring(&want, "/old");
	buf_put_cstring(&want, "/new");
	pkt_finish(&want, s);

	CHECK_EQ(sftp_enc_statvfs(&got, 4, "/"), 0);
	s = pkt_start(&want, SSH_FXP_EXTENDED, 4);
	buf_put_cstring(&want, "statvfs@openssh.com");
	buf_put_cstring(&want, "/");
	pkt_finish(&want, s);

	CHECK_PKT(&got, &want);
	buf_release(&got);
	buf_release(&want);
}

/* Every failing encoder must leave `out` byte for byte as it was. */
static void test_enc_failures_leave_out_unchanged(void)
{
	static uint8_t h[SFTP_MAX_HANDLE + 1];
	struct buf out = BUF_INIT;
	char *path = malloc(SFTP_MAX_PATH + 2);
	uint8_t *data = calloc(1, SFTP_MAX_PACKET);
	uint8_t before[64];
	size_t len;

	if (!CHECK(path && data))
		goto out;
	memset(path, 'p', SFTP_MAX_PATH + 1);
	path[SFTP_MAX_PATH + 1] = '\0';
	sftp_enc_init(&out);
	sftp_enc_path(&out, SSH_FXP_STAT, 9, "/before");
	len = out.len;
	memcpy(before, out.d, len);

#define UNCHANGED(call, rc) do { \
		CHECK_EQ(call, rc); \
		CHECK_MEM(out.d, out.len, before, len); \
	} while (0)
	UNCHANGED(sftp_enc_close(&out, 1, h, SFTP_MAX_HANDLE + 1), BUF_E_TOOBIG);
	UNCHANGED(sftp_enc_read(&out, 1, h, SIZE_MAX, 0, 1), BUF_E_TOOBIG);
	UNCHANGED(sftp_enc_fsync(&out, 1, h, SFTP_MAX_HANDLE + 1), BUF_E_TOOBIG);
	UNCHANGED(sftp_enc_handle(&out, SSH_FXP_READ, 1, h, 1), BUF_E_FORMAT);
	UNCHANGED(sftp_enc_handle(&out, SSH_FXP_FSTAT, 1, NULL, 3), BUF_E_FORMAT);
	UNCHANGED(sftp_enc_path(&out, SSH_FXP_STAT, 1, path), BUF_E_TOOBIG);
	UNCHANGED(sftp_enc_path(&out, SSH_FXP_STAT, 1, NULL), BUF_E_FORMAT);
	UNCHANGED(sftp_enc_path(&out, SSH_FXP_OPEN, 1, "/"), BUF_E_FORMAT);
	/* A failure in the second field must undo the first. */
	UNCHANGED(sftp_enc_rename(&out, 1, "/ok", path), BUF_E_TOOBIG);
	UNCHANGED(sftp_enc_posix_rename(&out, 1, "/ok", NULL), BUF_E_FORMAT);
	UNCHANGED(sftp_enc_hardlink(&out, 1, "/ok", path), BUF_E_TOOBIG);
	UNCHANGED(sftp_enc_symlink(&out, 1, NULL, "/ok"), BUF_E_FORMAT);
	UNCHANGED(sftp_enc_open(&out, 1, path, 0, NULL), BUF_E_TOOBIG);
	UNCHANGED(sftp_enc_lsetstat(&out, 1, path, &all_attrs), BUF_E_TOOBIG);
	UNCHANGED(sftp_enc_statvfs(&out, 1, NULL), BUF_E_FORMAT);
	UNCHANGED(sftp_enc_write(&out, 1, h, 4, 0, data, SFTP_MAX_PACKET),
		  BUF_E_TOOBIG);
	UNCHANGED(sftp_enc_write(&out, 1, h, 4, 0, data, SIZE_MAX), BUF_E_TOOBIG);
	UNCHANGED(sftp_enc_write(&out, 1, h, 4, 0, NULL, 5), BUF_E_FORMAT);
#undef UNCHANGED

	/* The largest write that fits, and one byte more. */
	len = SFTP_MAX_PACKET - (4 + 1 + 4 + 4 + 4 + 8 + 4);
	buf_reset(&out);
	CHECK_EQ(sftp_enc_write(&out, 1, h, 4, 0, data, len), 0);
	CHECK_EQU(out.len, SFTP_MAX_PACKET);
	buf_reset(&out);
	CHECK_EQ(sftp_enc_write(&out, 1, h, 4, 0, data, len + 1), BUF_E_TOOBIG);
	CHECK_EQU(out.len, 0);

	/* A path of exactly SFTP_MAX_PATH bytes is fine. */
	path[SFTP_MAX_PATH] = '\0';
	CHECK_EQ(sftp_enc_path(&out, SSH_FXP_STAT, 1, path), 0);
out:
	free(path);
	free(data);
	buf_release(&out);
}

/* ---- attributes ---------------------------------------------------------- */

static void test_attrs_roundtrip(void)
{
	struct sftp_attrs a = all_attrs, got;
	struct buf b = BUF_INIT;
	uint32_t fl;

	/* Every combination of the four fields. */
	for (fl = 0; fl < 16; fl++) {
		buf_reset(&b);
		a.flags = fl;
		CHECK_EQ(sftp_put_attrs(&b, &a), 0);
		CHECK_EQ(sftp_get_attrs(&b, &got), 0);
		CHECK_EQU(buf_avail(&b), 0);
		CHECK_EQU(got.flags, fl);
		CHECK(!(fl & SSH_FILEXFER_ATTR_SIZE) || got.size == a.size);
		CHECK(!(fl & SSH_FILEXFER_ATTR_UIDGID) ||
		      (got.uid == a.uid && got.gid == a.gid));
		CHECK(!(fl & SSH_FILEXFER_ATTR_PERMISSIONS) || got.perm == a.perm);
		CHECK(!(fl & SSH_FILEXFER_ATTR_ACMODTIME) ||
		      (got.atime == a.atime && got.mtime == a.mtime));
	}
	/* EXTENDED and unknown bits are never sent. */
	buf_reset(&b);
	a.flags = 0xffffffffu;
	CHECK_EQ(sftp_put_attrs(&b, &a), 0);
	CHECK_EQU(buf_avail(&b), 4 + 8 + 8 + 4 + 8);
	CHECK_EQ(sftp_get_attrs(&b, &got), 0);
	CHECK(attrs_equal(&got, &all_attrs));
	buf_release(&b);
}

/* Attributes with extended pairs, as some servers send them. */
static void build_ext_attrs(struct buf *b, uint32_t count, uint32_t present)
{
	uint32_t i;

	buf_put_u32(b, SSH_FILEXFER_ATTR_EXTENDED | SSH_FILEXFER_ATTR_SIZE);
	buf_put_u64(b, 42);
	buf_put_u32(b, count);
	for (i = 0; i < present; i++) {
		buf_put_cstring(b, "acl@example.com");
		buf_put_cstring(b, "value");
	}
}

static void test_attrs_extended(void)
{
	struct buf b = BUF_INIT;
	struct sftp_attrs a;
	size_t cut, full;
	struct buf w;

	build_ext_attrs(&b, 3, 3);
	buf_put_u8(&b, 0x99);  /* the next field, must not be consumed */
	CHECK_EQ(sftp_get_attrs(&b, &a), 0);
	CHECK_EQU(a.flags, SSH_FILEXFER_ATTR_SIZE);
	CHECK_EQU(a.size, 42);
	CHECK_EQU(buf_avail(&b), 1);

	/* Cut at every length: an error, buffer unchanged, output zeroed. */
	full = b.len - 1;
	for (cut = 0; cut < full; cut++) {
		buf_wrap(&w, b.d, cut);
		memset(&a, 0xaa, sizeof(a));
		CHECK_EQ(sftp_get_attrs(&w, &a), BUF_E_FORMAT);
		CHECK_EQU(w.off, 0);
		CHECK(is_zero(&a, sizeof(a)));
	}

	/* The pair count is capped before it is walked. */
	buf_reset(&b);
	build_ext_attrs(&b, SFTP_MAX_ATTR_EXT + 1, 2);
	CHECK_EQ(sftp_get_attrs(&b, &a), BUF_E_TOOBIG);
	CHECK_EQU(b.off, 0);
	CHECK(is_zero(&a, sizeof(a)));
	buf_reset(&b);
	build_ext_attrs(&b, 0xffffffffu, 0);
	CHECK_EQ(sftp_get_attrs(&b, &a), BUF_E_TOOBIG);
	buf_reset(&b);
	build_ext_attrs(&b, SFTP_MAX_ATTR_EXT, 2);  /* promised more than sent */
	CHECK_EQ(sftp_get_attrs(&b, &a), BUF_E_FORMAT);
	buf_release(&b);
}

/* ---- replies ------------------------------------------------------------- */

/*
 * Decodes every prefix of a reply body. Prefixes listed in `ok` (lengths
 * that happen to be complete replies) must decode; all others must fail
 * with BUF_E_FORMAT and a zeroed reply.
 */
static void check_reply_cuts(const uint8_t *body, size_t len,
			     const size_t *ok, size_t nok)
{
	struct sftp_reply r;
	size_t cut, i;
	uint8_t *copy;
	int valid, rc;

	for (cut = 0; cut < len; cut++) {
		valid = 0;
		for (i = 0; i < nok; i++)
			valid |= ok[i] == cut;
		memset(&r, 0xaa, sizeof(r));
		/* A copy of exactly `cut` bytes, so ASan sees any over-read. */
		copy = malloc(cut ? cut : 1);
		if (!CHECK(copy))
			return;
		memcpy(copy, body, cut);
		rc = sftp_dec_reply(copy, cut, &r);
		if (valid) {
			CHECK_EQ(rc, 0);
		} else if (!CHECK_EQ(rc, BUF_E_FORMAT) ||
			   !CHECK(is_zero(&r, sizeof(r)))) {
			fprintf(stderr, "  at cut %zu of %zu\n", cut, len);
		}
		free(copy);
	}
}

static void test_reply_status(void)
{
	struct buf b = BUF_INIT;
	struct sftp_reply r;
	size_t s, ok[2];

	s = pkt_start(&b, SSH_FXP_STATUS, 77);
	buf_put_u32(&b, SSH_FX_NO_SUCH_FILE);
	buf_put_cstring(&b, "No such file");
	buf_put_cstring(&b, "en");
	pkt_finish(&b, s);
	CHECK_EQ(sftp_dec_reply(BODY(&b), &r), 0);
	CHECK_EQU(r.type, SSH_FXP_STATUS);
	CHECK_EQU(r.id, 77);
	CHECK_EQU(r.u.status.code, SSH_FX_NO_SUCH_FILE);
	CHECK_MEM(r.u.status.msg, r.u.status.msglen, "No such file", 12);

	/* Without the message (old servers), and without the language tag. */
	ok[0] = 1 + 4 + 4;
	ok[1] = 1 + 4 + 4 + 4 + 12;
	check_reply_cuts(BODY(&b), ok, 2);
	CHECK_EQ(sftp_dec_reply(b.d + 4, ok[0], &r), 0);
	CHECK(r.u.status.msg == NULL && r.u.status.msglen == 0);
	CHECK_EQU(r.u.status.code, SSH_FX_NO_SUCH_FILE);

	/* An absurd message length. */
	buf_reset(&b);
	s = pkt_start(&b, SSH_FXP_STATUS, 1);
	buf_put_u32(&b, SSH_FX_FAILURE);
	buf_put_u32(&b, 0xfffffff0u);
	pkt_finish(&b, s);
	CHECK_EQ(sftp_dec_reply(BODY(&b), &r), BUF_E_TOOBIG);
	CHECK(is_zero(&r, sizeof(r)));
	buf_release(&b);
}

static void test_reply_handle(void)
{
	static uint8_t h[SFTP_MAX_HANDLE + 1];
	struct buf b = BUF_INIT;
	struct sftp_reply r;
	size_t s;

	s = pkt_start(&b, SSH_FXP_HANDLE, 5);
	buf_put_string(&b, "\0\1\2\3", 4);
	pkt_finish(&b, s);
	CHECK_EQ(sftp_dec_reply(BODY(&b), &r), 0);
	CHECK_EQU(r.type, SSH_FXP_HANDLE);
	CHECK_EQU(r.id, 5);
	CHECK_MEM(r.u.handle.h, r.u.handle.len, "\0\1\2\3", 4);
	check_reply_cuts(BODY(&b), NULL, 0);

	buf_reset(&b);
	s = pkt_start(&b, SSH_FXP_HANDLE, 5);
	buf_put_string(&b, h, SFTP_MAX_HANDLE);
	pkt_finish(&b, s);
	CHECK_EQ(sftp_dec_reply(BODY(&b), &r), 0);
	CHECK_EQU(r.u.handle.len, SFTP_MAX_HANDLE);

	buf_reset(&b);
	s = pkt_start(&b, SSH_FXP_HANDLE, 5);
	buf_put_string(&b, h, SFTP_MAX_HANDLE + 1);
	pkt_finish(&b, s);
	CHECK_EQ(sftp_dec_reply(BODY(&b), &r), BUF_E_TOOBIG);
	buf_release(&b);
}

static void test_reply_data(void)
{
	struct buf b = BUF_INIT;
	struct sftp_reply r;
	size_t s;

	s = pkt_start(&b, SSH_FXP_DATA, 9);
	buf_put_string(&b, "payload", 7);
	pkt_finish(&b, s);
	CHECK_EQ(sftp_dec_reply(BODY(&b), &r), 0);
	CHECK_EQU(r.type, SSH_FXP_DATA);
	CHECK_EQU(r.id, 9);
	CHECK_MEM(r.u.data.p, r.u.data.len, "payload", 7);
	check_reply_cuts(BODY(&b), NULL, 0);

	/* A DATA length past the packet's end is malformed, not a read. */
	buf_reset(&b);
	s = pkt_start(&b, SSH_FXP_DATA, 9);
	buf_put_u32(&b, 100);
	buf_put(&b, "short", 5);
	pkt_finish(&b, s);
	CHECK_EQ(sftp_dec_reply(BODY(&b), &r), BUF_E_FORMAT);
	buf_reset(&b);
	s = pkt_start(&b, SSH_FXP_DATA, 9);
	buf_put_u32(&b, 0xffffffffu);
	pkt_finish(&b, s);
	CHECK_EQ(sftp_dec_reply(BODY(&b), &r), BUF_E_TOOBIG);
	buf_release(&b);
}

static void test_reply_attrs(void)
{
	struct buf b = BUF_INIT;
	struct sftp_reply r;
	size_t s;

	s = pkt_start(&b, SSH_FXP_ATTRS, 3);
	put_all_attrs(&b);
	pkt_finish(&b, s);
	CHECK_EQ(sftp_dec_reply(BODY(&b), &r), 0);
	CHECK_EQU(r.type, SSH_FXP_ATTRS);
	CHECK_EQU(r.id, 3);
	CHECK(attrs_equal(&r.u.attrs, &all_attrs));
	check_reply_cuts(BODY(&b), NULL, 0);

	buf_reset(&b);
	s = pkt_start(&b, SSH_FXP_ATTRS, 3);
	build_ext_attrs(&b, 1, 1);
	pkt_finish(&b, s);
	CHECK_EQ(sftp_dec_reply(BODY(&b), &r), 0);
	CHECK_EQU(r.u.attrs.flags, SSH_FILEXFER_ATTR_SIZE);
	CHECK_EQU(r.u.attrs.size, 42);
	check_reply_cuts(BODY(&b), NULL, 0);
	buf_release(&b);
}

static void put_name_entry(struct buf *b, const char *name, uint32_t size)
{
	char longname[64];

	snprintf(longname, sizeof(longname), "-rw-r--r-- 1 u g %u %s",
		 size, name);
	buf_put_cstring(b, name);
	buf_put_cstring(b, longname);
	buf_put_u32(b, SSH_FILEXFER_ATTR_SIZE);
	buf_put_u64(b, size);
}

static void test_reply_name(void)
{
	struct buf b = BUF_INIT;
	struct sftp_reply r;
	struct sftp_name n;
	size_t s;

	s = pkt_start(&b, SSH_FXP_NAME, 12);
	buf_put_u32(&b, 3);
	put_name_entry(&b, ".", 1);
	put_name_entry(&b, "..", 2);
	put_name_entry(&b, "file", 3);
	pkt_finish(&b, s);
	CHECK_EQ(sftp_dec_reply(BODY(&b), &r), 0);
	CHECK_EQU(r.type, SSH_FXP_NAME);
	CHECK_EQU(r.id, 12);
	CHECK_EQU(r.u.name.count, 3);
	CHECK_EQ(sftp_name_next(&r, &n), 0);
	CHECK_MEM(n.name, n.namelen, ".", 1);
	CHECK_EQ(sftp_name_next(&r, &n), 0);
	CHECK_MEM(n.name, n.namelen, "..", 2);
	CHECK_EQ(sftp_name_next(&r, &n), 0);
	CHECK_MEM(n.name, n.namelen, "file", 4);
	CHECK_MEM(n.longname, n.longlen, "-rw-r--r-- 1 u g 3 file", 23);
	CHECK_EQU(n.attrs.flags, SSH_FILEXFER_ATTR_SIZE);
	CHECK_EQU(n.attrs.size, 3);
	memset(&n, 0xaa, sizeof(n));
	CHECK_EQ(sftp_name_next(&r, &n), BUF_E_SHORT);
	CHECK(is_zero(&n, sizeof(n)));
	CHECK_EQ(sftp_name_next(&r, &n), BUF_E_SHORT);
	check_reply_cuts(BODY(&b), NULL, 0);

	/* REALPATH-style: one entry, empty longname, no attributes. */
	buf_reset(&b);
	s = pkt_start(&b, SSH_FXP_NAME, 13);
	buf_put_u32(&b, 1);
	buf_put_cstring(&b, "/home/u");
	buf_put_cstring(&b, "");
	buf_put_u32(&b, 0);
	pkt_finish(&b, s);
	CHECK_EQ(sftp_dec_reply(BODY(&b), &r), 0);
	CHECK_EQ(sftp_name_next(&r, &n), 0);
	CHECK_MEM(n.name, n.namelen, "/home/u", 7);
	CHECK_EQU(n.longlen, 0);
	CHECK_EQU(n.attrs.flags, 0);

	/* An empty NAME is valid, and has nothing to walk. */
	buf_reset(&b);
	s = pkt_start(&b, SSH_FXP_NAME, 14);
	buf_put_u32(&b, 0);
	pkt_finish(&b, s);
	CHECK_EQ(sftp_dec_reply(BODY(&b), &r), 0);
	CHECK_EQ(sftp_name_next(&r, &n), BUF_E_SHORT);

	/* name_next on another reply type. */
	r.type = SSH_FXP_STATUS;
	CHECK_EQ(sftp_name_next(&r, &n), BUF_E_FORMAT);
	buf_release(&b);
}

static void test_reply_name_many(void)
{
	enum { N = 20000 };
	struct buf b = BUF_INIT;
	struct sftp_reply r;
	struct sftp_name n;
	char want[32];
	size_t s, i;
	int bad = 0;

	s = pkt_start(&b, SSH_FXP_NAME, 1);
	buf_put_u32(&b, N);
	for (i = 0; i < N; i++) {
		snprintf(want, sizeof(want), "entry-%zu", i);
		put_name_entry(&b, want, (uint32_t)i);
	}
	pkt_finish(&b, s);
	CHECK_EQ(sftp_dec_reply(BODY(&b), &r), 0);
	CHECK_EQU(r.u.name.count, N);
	for (i = 0; i < N; i++) {
		snprintf(want, sizeof(want), "entry-%zu", i);
		bad |= sftp_name_next(&r, &n) != 0 ||
		       n.namelen != strlen(want) ||
		       memcmp(n.name, want, n.namelen) != 0 ||
		       n.attrs.size != i;
	}
	CHECK_EQ(bad, 0);
	CHECK_EQ(sftp_name_next(&r, &n), BUF_E_SHORT);
	buf_release(&b);
}

static void test_reply_name_bad_counts(void)
{
	struct buf b = BUF_INIT;
	struct sftp_reply r;
	char *longpath;
	size_t s;

	/* Over the cap: refused before looking at entries. */
	s = pkt_start(&b, SSH_FXP_NAME, 1);
	buf_put_u32(&b, SFTP_MAX_NAMES + 1);
	pkt_finish(&b, s);
	CHECK_EQ(sftp_dec_reply(BODY(&b), &r), BUF_E_TOOBIG);
	CHECK(is_zero(&r, sizeof(r)));

	/* Within the cap but more than the packet could hold. */
	buf_reset(&b);
	s = pkt_start(&b, SSH_FXP_NAME, 1);
	buf_put_u32(&b, 5);
	put_name_entry(&b, "only-one", 1);
	pkt_finish(&b, s);
	CHECK_EQ(sftp_dec_reply(BODY(&b), &r), BUF_E_FORMAT);

	/* A count that the byte count allows, but entries run out. */
	buf_reset(&b);
	s = pkt_start(&b, SSH_FXP_NAME, 1);
	buf_put_u32(&b, 2);
	put_name_entry(&b, "only-one", 1);
	pkt_finish(&b, s);
	CHECK_EQ(sftp_dec_reply(BODY(&b), &r), BUF_E_FORMAT);

	/* A file name over SFTP_MAX_PATH. */
	longpath = malloc(SFTP_MAX_PATH + 2);
	if (CHECK(longpath)) {
		memset(longpath, 'n', SFTP_MAX_PATH + 1);
		longpath[SFTP_MAX_PATH + 1] = '\0';
		buf_reset(&b);
		s = pkt_start(&b, SSH_FXP_NAME, 1);
		buf_put_u32(&b, 1);
		put_name_entry(&b, longpath, 1);
		pkt_finish(&b, s);
		CHECK_EQ(sftp_dec_reply(BODY(&b), &r), BUF_E_TOOBIG);
	}
	free(longpath);
	buf_release(&b);
}

static void test_reply_extended(void)
{
	struct buf b = BUF_INIT;
	struct sftp_statvfs sv;
	struct sftp_limits l;
	struct sftp_reply r;
	size_t s, i, ok[100];
	uint64_t k;

	s = pkt_start(&b, SSH_FXP_EXTENDED_REPLY, 4);
	buf_put_u64(&b, 262144);
	buf_put_u64(&b, 261120);
	buf_put_u64(&b, 261120);
	buf_put_u64(&b, 1019);
	pkt_finish(&b, s);
	CHECK_EQ(sftp_dec_reply(BODY(&b), &r), 0);
	CHECK_EQU(r.type, SSH_FXP_EXTENDED_REPLY);
	CHECK_EQU(r.id, 4);
	CHECK_EQU(r.u.ext.len, 32);
	CHECK_EQ(sftp_dec_limits(r.u.ext.p, r.u.ext.len, &l), 0);
	CHECK_EQU(l.max_packet, 262144);
	CHECK_EQU(l.max_read, 261120);
	CHECK_EQU(l.max_write, 261120);
	CHECK_EQU(l.max_open_handles, 1019);
	/* Any payload length is a valid EXTENDED_REPLY. */
	for (i = 0; i <= 32; i++)
		ok[i] = 5 + i;
	check_reply_cuts(BODY(&b), ok, 33);
	for (i = 0; i < 32; i++) {
		memset(&l, 0xaa, sizeof(l));
		CHECK_EQ(sftp_dec_limits(r.u.ext.p, i, &l), BUF_E_FORMAT);
		CHECK(is_zero(&l, sizeof(l)));
	}
	CHECK_EQ(sftp_dec_limits(NULL, 0, &l), BUF_E_FORMAT);

	buf_reset(&b);
	s = pkt_start(&b, SSH_FXP_EXTENDED_REPLY, 5);
	for (k = 1; k <= 11; k++)
		buf_put_u64(&b, k * 0x0101010101ull);
	pkt_finish(&b, s);
	CHECK_EQ(sftp_dec_reply(BODY(&b), &r), 0);
	CHECK_EQ(sftp_dec_statvfs(r.u.ext.p, r.u.ext.len, &sv), 0);
	CHECK_EQU(sv.bsize, 1 * 0x0101010101ull);
	CHECK_EQU(sv.frsize, 2 * 0x0101010101ull);
	CHECK_EQU(sv.blocks, 3 * 0x0101010101ull);
	CHECK_EQU(sv.bfree, 4 * 0x0101010101ull);
	CHECK_EQU(sv.bavail, 5 * 0x0101010101ull);
	CHECK_EQU(sv.files, 6 * 0x0101010101ull);
	CHECK_EQU(sv.ffree, 7 * 0x0101010101ull);
	CHECK_EQU(sv.favail, 8 * 0x0101010101ull);
	CHECK_EQU(sv.fsid, 9 * 0x0101010101ull);
	CHECK_EQU(sv.flag, 10 * 0x0101010101ull);
	CHECK_EQU(sv.namemax, 11 * 0x0101010101ull);
	for (i = 0; i < 88; i++) {
		memset(&sv, 0xaa, sizeof(sv));
		CHECK_EQ(sftp_dec_statvfs(r.u.ext.p, i, &sv), BUF_E_FORMAT);
		CHECK(is_zero(&sv, sizeof(sv)));
	}

	/* Empty payload. */
	buf_reset(&b);
	s = pkt_start(&b, SSH_FXP_EXTENDED_REPLY, 6);
	pkt_finish(&b, s);
	CHECK_EQ(sftp_dec_reply(BODY(&b), &r), 0);
	CHECK_EQU(r.u.ext.len, 0);
	buf_release(&b);
}

static void test_reply_bad_types(void)
{
	static const uint8_t types[] = {
		0, SSH_FXP_INIT, SSH_FXP_VERSION, SSH_FXP_OPEN, SSH_FXP_EXTENDED,
		100, 106, 202, 255,
	};
	uint8_t body[32] = { 0 };
	struct sftp_reply r;
	size_t i;

	for (i = 0; i < sizeof(types); i++) {
		body[0] = types[i];
		memset(&r, 0xaa, sizeof(r));
		CHECK_EQ(sftp_dec_reply(body, sizeof(body), &r), BUF_E_FORMAT);
		CHECK(is_zero(&r, sizeof(r)));
	}
	CHECK_EQ(sftp_dec_reply(NULL, 0, &r), BUF_E_FORMAT);
}

/* ---- version ------------------------------------------------------------- */

static void put_ext(struct buf *b, const char *name, const char *data)
{
	buf_put_cstring(b, name);
	buf_put_cstring(b, data);
}

static void test_version(void)
{
	struct buf b = BUF_INIT;
	uint32_t version, exts;
	size_t cut, mark[16], nmark = 0, i;
	int valid;

	buf_put_u32(&b, 0);
	buf_put_u8(&b, SSH_FXP_VERSION);
	buf_put_u32(&b, 3);
	mark[nmark++] = b.len - 4;
	put_ext(&b, "posix-rename@openssh.com", "1");
	mark[nmark++] = b.len - 4;
	put_ext(&b, "statvfs@openssh.com", "2");
	mark[nmark++] = b.len - 4;
	put_ext(&b, "fstatvfs@openssh.com", "2");  /* known to OpenSSH, not us */
	mark[nmark++] = b.len - 4;
	put_ext(&b, "hardlink@openssh.com", "2");  /* unknown version: ignored */
	mark[nmark++] = b.len - 4;
	put_ext(&b, "fsync@openssh.com", "1");
	mark[nmark++] = b.len - 4;
	put_ext(&b, "x-unknown@example.com", "");
	mark[nmark++] = b.len - 4;
	put_ext(&b, "limits@openssh.com", "1");
	mark[nmark++] = b.len - 4;
	buf_put_cstring(&b, "lsetstat@openssh.com");
	buf_put_string(&b, "1\0", 2);  /* trailing NUL: not "1" */
	mark[nmark++] = b.len - 4;
	buf_poke_u32(&b, 0, (uint32_t)(b.len - 4));

	exts = SFTP_EXT_HARDLINK << 8;  /* ORed into, not replaced */
	CHECK_EQ(sftp_dec_version(BODY(&b), &version, &exts), 0);
	CHECK_EQU(version, 3);
	CHECK_EQU(exts, (SFTP_EXT_HARDLINK << 8) | SFTP_EXT_POSIX_RENAME |
		  SFTP_EXT_STATVFS | SFTP_EXT_FSYNC | SFTP_EXT_LIMITS);

	/* Cut everywhere: valid only at pair boundaries. */
	for (cut = 0; cut < b.len - 4; cut++) {
		valid = 0;
		for (i = 0; i < nmark; i++)
			valid |= mark[i] == cut;
		exts = 0;
		version = 99;
		if (valid) {
			CHECK_EQ(sftp_dec_version(b.d + 4, cut, &version, &exts), 0);
			CHECK_EQU(version, 3);
		} else {
			CHECK_EQ(sftp_dec_version(b.d + 4, cut, &version, &exts),
				 BUF_E_FORMAT);
			CHECK_EQU(version, 0);
			CHECK_EQU(exts, 0);
		}
	}

	/* A reply is not a VERSION; nor is VERSION a reply. */
	b.d[4] = SSH_FXP_STATUS;
	CHECK_EQ(sftp_dec_version(BODY(&b), &version, &exts), BUF_E_FORMAT);
	b.d[4] = SSH_FXP_VERSION;

	/* An oversized extension name. */
	buf_reset(&b);
	buf_put_u32(&b, 0);
	buf_put_u8(&b, SSH_FXP_VERSION);
	buf_put_u32(&b, 6);
	buf_put_u32(&b, 0x7fffffff);
	buf_poke_u32(&b, 0, (uint32_t)(b.len - 4));
	CHECK_EQ(sftp_dec_version(BODY(&b), &version, &exts), BUF_E_TOOBIG);
	buf_release(&b);
}

/* ---- framing, names ----------------------------------------------------- */

static void test_frame(void)
{
	static const uint8_t p[] = { 0, 0, 0, 3, 'a', 'b', 'c', 0, 0 };
	static const uint8_t zero[] = { 0, 0, 0, 0, 1 };
	static const uint8_t huge[] = { 0xff, 0xff, 0xff, 0xff };
	size_t n, avail;

	for (avail = 0; avail < 4; avail++) {
		n = 99;
		CHECK_EQ(sftp_frame(p, avail, 100, &n), BUF_E_SHORT);
		CHECK_EQU(n, 0);
	}
	for (avail = 4; avail < 7; avail++) {
		CHECK_EQ(sftp_frame(p, avail, 100, &n), BUF_E_SHORT);
		CHECK_EQU(n, 7);
	}
	CHECK_EQ(sftp_frame(p, 7, 100, &n), 0);
	CHECK_EQU(n, 7);
	CHECK_EQ(sftp_frame(p, sizeof(p), 100, &n), 0);
	CHECK_EQU(n, 7);
	CHECK_EQ(sftp_frame(p, sizeof(p), 7, &n), 0);
	CHECK_EQ(sftp_frame(p, sizeof(p), 6, &n), BUF_E_TOOBIG);
	CHECK_EQU(n, 0);
	CHECK_EQ(sftp_frame(p, 4, 6, &n), BUF_E_TOOBIG);  /* known early */
	CHECK_EQ(sftp_frame(zero, sizeof(zero), 100, &n), BUF_E_FORMAT);
	CHECK_EQU(n, 0);
	CHECK_EQ(sftp_frame(huge, 4, SFTP_MAX_PACKET, &n), BUF_E_TOOBIG);
	CHECK_EQ(sftp_frame(huge, 4, SIZE_MAX, &n), BUF_E_SHORT);
	CHECK_EQU(n, 0xffffffffull + 4);
}

static void test_status_errno(void)
{
	uint32_t code;
	int bad = 0;

	CHECK_EQ(sftp_status_errno(SSH_FX_OK), 0);
	CHECK_EQ(sftp_status_errno(SSH_FX_EOF), 0);
	CHECK_EQ(sftp_status_errno(SSH_FX_NO_SUCH_FILE), ENOENT);
	CHECK_EQ(sftp_status_errno(SSH_FX_PERMISSION_DENIED), EACCES);
	CHECK_EQ(sftp_status_errno(SSH_FX_FAILURE), EIO);
	CHECK_EQ(sftp_status_errno(SSH_FX_BAD_MESSAGE), EIO);
	CHECK_EQ(sftp_status_errno(SSH_FX_NO_CONNECTION), EIO);
	CHECK_EQ(sftp_status_errno(SSH_FX_CONNECTION_LOST), EIO);
	CHECK_EQ(sftp_status_errno(SSH_FX_OP_UNSUPPORTED), EOPNOTSUPP);
	CHECK_EQ(sftp_status_errno(14), ENOSPC);
	CHECK_EQ(sftp_status_errno(1000), EIO);
	CHECK_EQ(sftp_status_errno(UINT32_MAX), EIO);
	/* steadyfs must never hand ENOTCONN to a caller. */
	for (code = 0; code < 4096; code++)
		bad |= sftp_status_errno(code) == ENOTCONN ||
		       sftp_status_errno(code) < 0 ||
		       (code > 1 && sftp_status_errno(code) == 0);
	CHECK_EQ(bad, 0);
}

static void test_ext_names(void)
{
	CHECK_STR(sftp_ext_name(SFTP_EXT_POSIX_RENAME), "posix-rename@openssh.com");
	CHECK_STR(sftp_ext_name(SFTP_EXT_STATVFS), "statvfs@openssh.com");
	CHECK_STR(sftp_ext_name(SFTP_EXT_FSYNC), "fsync@openssh.com");
	CHECK_STR(sftp_ext_name(SFTP_EXT_HARDLINK), "hardlink@openssh.com");
	CHECK_STR(sftp_ext_name(SFTP_EXT_LIMITS), "limits@openssh.com");
	CHECK_STR(sftp_ext_name(SFTP_EXT_LSETSTAT), "lsetstat@openssh.com");
	CHECK_STR(sftp_ext_name(0), "unknown");
	CHECK_STR(sftp_ext_name(SFTP_EXT_FSYNC | SFTP_EXT_LIMITS), "unknown");
}

/* What a server announces in limits@ is clamped to what the codec carries
 * and to sane minimums: a WRITE of max_write with the longest handle
 * always encodes, a DATA of max_read always passes the framing. */
static void check_limits_fit(const struct sftp_limits *u)
{
	static uint8_t data[SFTP_SEND_MAX_PACKET];
	uint8_t h[SFTP_MAX_HANDLE] = { 0 };
	uint8_t hdr[4];
	struct buf out = BUF_INIT;
	size_t plen;
	uint64_t total = u->max_read + 9 + 4;  /* type, id, length, data */

	CHECK(u->max_packet >= SFTP_MIN_PACKET && u->max_packet <= SFTP_SEND_MAX_PACKET);
	CHECK(u->max_read >= SFTP_DEFAULT_RW && u->max_read + SFTP_RW_HEADROOM <= u->max_packet);
	CHECK(u->max_write >= SFTP_DEFAULT_RW && u->max_write + SFTP_RW_HEADROOM <= u->max_packet);
	CHECK_EQ(sftp_enc_write(&out, 1, h, sizeof(h), UINT64_MAX, data, u->max_write), 0);
	CHECK(out.len <= u->max_packet);
	hdr[0] = (uint8_t)(total >> 24);
	hdr[1] = (uint8_t)(total >> 16);
	hdr[2] = (uint8_t)(total >> 8);
	hdr[3] = (uint8_t)total;
	CHECK_EQ(sftp_frame(hdr, 4, SFTP_MAX_PACKET, &plen), BUF_E_SHORT);
	CHECK_EQU(plen, total + 4);
	buf_release(&out);
}

static void test_limits_use(void)
{
	static const uint64_t odd[] = { 0, 1, 512, 1023, 1024, 1025, 33999, 34000,
		32768, 65536, 261120, 262144, 262145, 1048576, 16u << 20,
		UINT32_MAX, (uint64_t)UINT32_MAX + 1, UINT64_MAX - 1023, UINT64_MAX };
	const size_t n = sizeof(odd) / sizeof(odd[0]);
	struct sftp_limits a, u;

	/* OpenSSH's own numbers are taken as they are. */
	a = (struct sftp_limits){ 262144, 261120, 261120, 1019 };
	CHECK_EQU(sftp_limits_use(&a, &u), 0);
	CHECK_EQU(u.max_packet, 262144);
	CHECK_EQU(u.max_read, 261120);
	CHECK_EQU(u.max_write, 261120);
	CHECK_EQU(u.max_open_handles, 1019);
	/* No limits@, or zeros: 32 KiB requests. */
	CHECK_EQU(sftp_limits_use(NULL, &u), 0);
	CHECK_EQU(u.max_read, SFTP_DEFAULT_RW);
	CHECK_EQU(u.max_write, SFTP_DEFAULT_RW);
	check_limits_fit(&u);
	a = (struct sftp_limits){ 0 };
	CHECK_EQU(sftp_limits_use(&a, &u), 0);
	CHECK_EQU(u.max_write, SFTP_DEFAULT_RW);
	/* A packet under 1024 once made max_write underflow. */
	a = (struct sftp_limits){ 512, 100, 100, 0 };
	CHECK_EQU(sftp_limits_use(&a, &u),
		  SFTP_LIMIT_PACKET | SFTP_LIMIT_READ | SFTP_LIMIT_WRITE);
	CHECK_EQU(u.max_packet, SFTP_MIN_PACKET);
	CHECK_EQU(u.max_write, SFTP_DEFAULT_RW);
	CHECK_EQU(u.max_read, SFTP_DEFAULT_RW);
	/* Huge values: what the framing accepts. */
	a = (struct sftp_limits){ UINT64_MAX, 16u << 20, UINT64_MAX, 0 };
	CHECK_EQU(sftp_limits_use(&a, &u),
		  SFTP_LIMIT_PACKET | SFTP_LIMIT_READ | SFTP_LIMIT_WRITE);
	CHECK_EQU(u.max_packet, SFTP_SEND_MAX_PACKET);
	CHECK_EQU(u.max_read, SFTP_SEND_MAX_PACKET - SFTP_RW_HEADROOM);
	/* Every combination fits. */
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < n; j++)
			for (size_t k = 0; k < n; k += 3) {
				a = (struct sftp_limits){ odd[i], odd[j], odd[k], 0 };
				sftp_limits_use(&a, &u);
				check_limits_fit(&u);
			}
}

int main(void)
{
	UNIT_RUN(test_enc_init);
	UNIT_RUN(test_enc_open_bytes);
	UNIT_RUN(test_enc_read_bytes);
	UNIT_RUN(test_enc_symlink_bytes);
	UNIT_RUN(test_enc_limits_bytes);
	UNIT_RUN(test_enc_handle_requests);
	UNIT_RUN(test_enc_path_requests);
	UNIT_RUN(test_enc_attr_requests);
	UNIT_RUN(test_enc_two_path_requests);
	UNIT_RUN(test_enc_failures_leave_out_unchanged);
	UNIT_RUN(test_attrs_roundtrip);
	UNIT_RUN(test_attrs_extended);
	UNIT_RUN(test_reply_status);
	UNIT_RUN(test_reply_handle);
	UNIT_RUN(test_reply_data);
	UNIT_RUN(test_reply_attrs);
	UNIT_RUN(test_reply_name);
	UNIT_RUN(test_reply_name_many);
	UNIT_RUN(test_reply_name_bad_counts);
	UNIT_RUN(test_reply_extended);
	UNIT_RUN(test_reply_bad_types);
	UNIT_RUN(test_version);
	UNIT_RUN(test_frame);
	UNIT_RUN(test_status_errno);
	UNIT_RUN(test_ext_names);
	UNIT_RUN(test_limits_use);
	return unit_summary("test_sftp");
}
