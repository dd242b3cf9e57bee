/*
 * fuzz_sftp: libFuzzer target for the SFTP codec (lib/sftp, lib/buf).
 *
 * One input is used three ways:
 *  1. as a byte stream: sftp_frame() on it, and the framed packet (if any)
 *     handed to every decoder;
 *  2. as a bare packet body: every decoder on the whole input;
 *  3. as a source of field values for every encoder, whose output is then
 *     parsed back field by field and compared with what went in.
 * Besides "no crash, no over-read" (ASan), the target checks the codec's
 * contract and aborts when it is broken: a failed decode leaves its buffer
 * where it was, borrowed pointers stay inside the input, a NAME reply that
 * decoded walks exactly `count` entries, an encoder fails exactly when a
 * handle or path is over its cap, and a failed encoder leaves `out` as it
 * was. Built by `make fuzz` (clang, libFuzzer) and by `make fuzz-replay`
 * (any compiler, with replay.c as main).
 */
#include "sftp.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A broken contract is a finding: report where, then crash for the fuzzer. */
#define FUZZ_ASSERT(c) do { \
		if (!(c)) { \
			fprintf(stderr, "fuzz_sftp: %s:%d: contract broken: %s\n", \
				__FILE__, __LINE__, #c); \
			abort(); \
		} \
	} while (0)

/* ---- decoders ------------------------------------------------------------ */

/* A borrowed range must lie inside [p, p + n); touching every byte lets
 * ASan catch a pointer that is merely computed wrongly. */
static unsigned touch(const uint8_t *in, size_t n, const uint8_t *p, size_t len)
{
	unsigned sum = 0;
	size_t i;

	if (len == 0)
		return 0;
	FUZZ_ASSERT(p >= in && len <= n && (size_t)(p - in) <= n - len);
	for (i = 0; i < len; i++)
		sum += p[i];
	return sum;
}

/* Field by field: the struct has padding, which memcmp would compare. */
static int attrs_equal(const struct sftp_attrs *a, const struct sftp_attrs *b)
{
	return a->flags == b->flags && a->size == b->size && a->uid == b->uid &&
	       a->gid == b->gid && a->perm == b->perm &&
	       a->atime == b->atime && a->mtime == b->mtime;
}

static void attrs_roundtrip(const struct sftp_attrs *a)
{
	struct sftp_attrs back;
	struct buf b = BUF_INIT;

	FUZZ_ASSERT(sftp_put_attrs(&b, a) == 0);
	FUZZ_ASSERT(sftp_get_attrs(&b, &back) == 0);
	FUZZ_ASSERT(buf_avail(&b) == 0);
	FUZZ_ASSERT(attrs_equal(a, &back));
	buf_release(&b);
}

static void walk_names(const uint8_t *p, size_t n, struct sftp_reply *r)
{
	uint32_t count = r->u.name.count, i;
	struct sftp_name nm;

	for (i = 0; i < count; i++) {
		FUZZ_ASSERT(sftp_name_next(r, &nm) == 0);
		touch(p, n, nm.name, nm.namelen);
		touch(p, n, nm.longname, nm.longlen);
		FUZZ_ASSERT(nm.namelen <= SFTP_MAX_PATH);
		attrs_roundtrip(&nm.attrs);
	}
	FUZZ_ASSERT(sftp_name_next(r, &nm) == BUF_E_SHORT);
}

static void fuzz_reply(const uint8_t *p, size_t n)
{
	struct sftp_statvfs sv;
	struct sftp_limits lim;
	struct sftp_reply r;
	int rc = sftp_dec_reply(p, n, &r);

	FUZZ_ASSERT(rc == 0 || rc == BUF_E_FORMAT || rc == BUF_E_TOOBIG);
	if (rc)
		return;
	switch (r.type) {
	case SSH_FXP_STATUS:
		touch(p, n, r.u.status.msg, r.u.status.msglen);
		break;
	case SSH_FXP_HANDLE:
		FUZZ_ASSERT(r.u.handle.len <= SFTP_MAX_HANDLE);
		touch(p, n, r.u.handle.h, r.u.handle.len);
		break;
	case SSH_FXP_DATA:
		touch(p, n, r.u.data.p, r.u.data.len);
		break;
	case SSH_FXP_NAME:
		FUZZ_ASSERT(r.u.name.count <= SFTP_MAX_NAMES);
		walk_names(p, n, &r);
		break;
	case SSH_FXP_ATTRS:
		attrs_roundtrip(&r.u.attrs);
		break;
	case SSH_FXP_EXTENDED_REPLY:
		touch(p, n, r.u.ext.p, r.u.ext.len);
		FUZZ_ASSERT((sftp_dec_limits(r.u.ext.p, r.u.ext.len, &lim) == 0) ==
			    (r.u.ext.len >= 32));
		FUZZ_ASSERT((sftp_dec_statvfs(r.u.ext.p, r.u.ext.len, &sv) == 0) ==
			    (r.u.ext.len >= 88));
		break;
	default:
		FUZZ_ASSERT(!"decoded an unknown reply type");
	}
}

static void fuzz_attrs(const uint8_t *p, size_t n)
{
	struct sftp_attrs a;
	struct buf b;
	int rc;

	buf_wrap(&b, p, n);
	rc = sftp_get_attrs(&b, &a);
	if (rc) {
		FUZZ_ASSERT(rc == BUF_E_FORMAT || rc == BUF_E_TOOBIG);
		FUZZ_ASSERT(b.off == 0);
		return;
	}
	FUZZ_ASSERT(b.off >= 4 && b.off <= n);
	attrs_roundtrip(&a);
}

/* Every decoder on one packet body. */
static void fuzz_body(const uint8_t *p, size_t n)
{
	struct sftp_statvfs sv;
	struct sftp_limits lim;
	uint32_t version, exts = 0;
	int rc;

	fuzz_reply(p, n);
	rc = sftp_dec_version(p, n, &version, &exts);
	FUZZ_ASSERT(rc == 0 || rc == BUF_E_FORMAT || rc == BUF_E_TOOBIG);
	FUZZ_ASSERT(rc == 0 || exts == 0);
	FUZZ_ASSERT((sftp_dec_limits(p, n, &lim) == 0) == (n >= 32));
	if (n >= 32) {
		struct sftp_limits use;

		/* Whatever a server announces, the sizes used fit the codec. */
		sftp_limits_use(&lim, &use);
		FUZZ_ASSERT(use.max_packet >= SFTP_MIN_PACKET &&
			    use.max_packet <= SFTP_SEND_MAX_PACKET);
		FUZZ_ASSERT(use.max_read >= SFTP_DEFAULT_RW &&
			    use.max_read + SFTP_RW_HEADROOM <= use.max_packet);
		FUZZ_ASSERT(use.max_write >= SFTP_DEFAULT_RW &&
			    use.max_write + SFTP_RW_HEADROOM <= use.max_packet);
	}
	FUZZ_ASSERT((sftp_dec_statvfs(p, n, &sv) == 0) == (n >= 88));
	fuzz_attrs(p, n);
}

static void fuzz_stream(const uint8_t *p, size_t n)
{
	size_t pktlen;
	int rc = sftp_frame(p, n, SFTP_MAX_PACKET, &pktlen);

	if (rc == 0) {
		FUZZ_ASSERT(pktlen > 4 && pktlen <= n);
		fuzz_body(p + 4, pktlen - 4);
	} else if (rc == BUF_E_SHORT) {
		FUZZ_ASSERT(pktlen == 0 || (pktlen > n && pktlen <= SFTP_MAX_PACKET));
	} else {
		FUZZ_ASSERT(rc == BUF_E_FORMAT || rc == BUF_E_TOOBIG);
		FUZZ_ASSERT(pktlen == 0);
	}
}

/* ---- encoders ------------------------------------------------------------ */

/* Field values drawn from the input; zeros once it runs out. */
struct src {
	const uint8_t *p;
	size_t n;
};

static uint64_t take(struct src *s, size_t bytes)
{
	uint64_t v = 0;

	while (bytes--) {
		v = v << 8 | (s->n ? *s->p : 0);
		if (s->n) {
			s->p++;
			s->n--;
		}
	}
	return v;
}

static const uint8_t *take_bytes(struct src *s, size_t want, size_t *got)
{
	const uint8_t *p = s->p;

	*got = want < s->n ? want : s->n;
	s->p += *got;
	s->n -= *got;
	return p;
}

/* A NUL-terminated path of up to 8 KiB (so over SFTP_MAX_PATH at times);
 * a NUL inside the input simply ends it early. */
static char *take_path(struct src *s)
{
	size_t want = (size_t)take(s, 2) & 0x1fff, got;
	const uint8_t *p = take_bytes(s, want, &got);
	char *path = malloc(got + 1);

	FUZZ_ASSERT(path);
	if (got)
		memcpy(path, p, got);
	path[got] = '\0';
	return path;
}

static void take_attrs(struct src *s, struct sftp_attrs *a)
{
	a->flags = (uint32_t)take(s, 4);
	a->size = take(s, 8);
	a->uid = (uint32_t)take(s, 4);
	a->gid = (uint32_t)take(s, 4);
	a->perm = (uint32_t)take(s, 4);
	a->atime = (uint32_t)take(s, 4);
	a->mtime = (uint32_t)take(s, 4);
}

struct fields {
	uint32_t id, len, pflags;
	uint64_t off;
	uint8_t type;
	struct sftp_attrs a;
	const uint8_t *h, *data;
	size_t hl, datalen;
	char *p1, *p2;
};

/* What the attrs in `a` look like after an encode/decode round trip. */
static struct sftp_attrs as_sent(const struct sftp_attrs *a)
{
	struct sftp_attrs w = { 0 };

	w.flags = a->flags & (SSH_FILEXFER_ATTR_SIZE | SSH_FILEXFER_ATTR_UIDGID |
			      SSH_FILEXFER_ATTR_PERMISSIONS |
			      SSH_FILEXFER_ATTR_ACMODTIME);
	if (w.flags & SSH_FILEXFER_ATTR_SIZE)
		w.size = a->size;
	if (w.flags & SSH_FILEXFER_ATTR_UIDGID) {
		w.uid = a->uid;
		w.gid = a->gid;
	}
	if (w.flags & SSH_FILEXFER_ATTR_PERMISSIONS)
		w.perm = a->perm;
	if (w.flags & SSH_FILEXFER_ATTR_ACMODTIME) {
		w.atime = a->atime;
		w.mtime = a->mtime;
	}
	return w;
}

/* One field of a parsed-back packet against its expected value. */
static void expect_field(struct buf *b, char kind, va_list *ap)
{
	struct sftp_attrs got, want;
	const uint8_t *p, *wp;
	size_t n, wn;
	uint64_t q;
	uint32_t u;

	switch (kind) {
	case 's':
	case 'b':
		wp = va_arg(*ap, const uint8_t *);
		wn = kind == 's' ? strlen((const char *)wp) : va_arg(*ap, size_t);
		FUZZ_ASSERT(buf_get_string_direct(b, &p, &n, BUF_MAX_SIZE) == 0);
		FUZZ_ASSERT(n == wn && (n == 0 || memcmp(p, wp, n) == 0));
		break;
	case 'q':
		FUZZ_ASSERT(buf_get_u64(b, &q) == 0);
		FUZZ_ASSERT(q == va_arg(*ap, uint64_t));
		break;
	case 'u':
		FUZZ_ASSERT(buf_get_u32(b, &u) == 0);
		FUZZ_ASSERT(u == va_arg(*ap, uint32_t));
		break;
	case 'a':
		want = as_sent(va_arg(*ap, const struct sftp_attrs *));
		FUZZ_ASSERT(sftp_get_attrs(b, &got) == 0);
		FUZZ_ASSERT(attrs_equal(&got, &want));
		break;
	default:
		FUZZ_ASSERT(!"bad spec letter");
	}
}

/*
 * Parses the packet appended at `start` against `spec`, one letter per
 * field after type and id: s path (const char *), b bytes (const uint8_t *,
 * size_t), q u64, u u32, a attrs (const struct sftp_attrs *). The packet
 * must be exactly those fields.
 */
static void expect_packet(const struct buf *out, size_t start, uint8_t type,
			  uint32_t id, const char *spec, ...)
{
	size_t pktlen;
	struct buf b;
	uint32_t u;
	uint8_t t;
	va_list ap;

	FUZZ_ASSERT(sftp_frame(out->d + start, out->len - start,
			       SFTP_MAX_PACKET, &pktlen) == 0);
	FUZZ_ASSERT(pktlen == out->len - start);
	buf_wrap(&b, out->d + start + 4, pktlen - 4);
	FUZZ_ASSERT(buf_get_u8(&b, &t) == 0 && t == type);
	if (type != SSH_FXP_INIT)
		FUZZ_ASSERT(buf_get_u32(&b, &u) == 0 && u == id);
	va_start(ap, spec);
	for (; *spec; spec++)
		expect_field(&b, *spec, &ap);
	va_end(ap);
	FUZZ_ASSERT(buf_avail(&b) == 0);
}

/*
 * Runs one encoder call. `ok` says whether the inputs were within the
 * caps; the encoder must succeed exactly then, and on failure leave `out`
 * byte for byte as it was (`out` holds a marker packet before each call).
 */
#define ENCODE(out, ok, call, type, id, ...) do { \
		size_t start_ = (out)->len; \
		int rc_ = (call); \
		FUZZ_ASSERT((rc_ == 0) == (ok)); \
		if (rc_ == 0) \
			expect_packet((out), start_, (type), (id), __VA_ARGS__); \
		else \
			FUZZ_ASSERT((out)->len == start_); \
		(out)->len = start_; \
	} while (0)

static int path_ok(const char *p)
{
	return strlen(p) <= SFTP_MAX_PATH;
}

static int is_path_type(uint8_t t)
{
	return t == SSH_FXP_LSTAT || t == SSH_FXP_STAT || t == SSH_FXP_OPENDIR ||
	       t == SSH_FXP_REMOVE || t == SSH_FXP_RMDIR ||
	       t == SSH_FXP_REALPATH || t == SSH_FXP_READLINK;
}

static int is_handle_type(uint8_t t)
{
	return t == SSH_FXP_FSTAT || t == SSH_FXP_READDIR || t == SSH_FXP_CLOSE;
}

static void encode_handle_requests(struct buf *o, const struct fields *f)
{
	int hok = f->hl <= SFTP_MAX_HANDLE;

	ENCODE(o, hok, sftp_enc_close(o, f->id, f->h, f->hl),
	       SSH_FXP_CLOSE, f->id, "b", f->h, f->hl);
	ENCODE(o, hok, sftp_enc_read(o, f->id, f->h, f->hl, f->off, f->len),
	       SSH_FXP_READ, f->id, "bqu", f->h, f->hl, f->off, f->len);
	ENCODE(o, hok, sftp_enc_write(o, f->id, f->h, f->hl, f->off, f->data,
				      f->datalen),
	       SSH_FXP_WRITE, f->id, "bqb", f->h, f->hl, f->off, f->data,
	       f->datalen);
	ENCODE(o, hok && is_handle_type(f->type),
	       sftp_enc_handle(o, f->type, f->id, f->h, f->hl),
	       f->type, f->id, "b", f->h, f->hl);
	ENCODE(o, hok, sftp_enc_fsetstat(o, f->id, f->h, f->hl, &f->a),
	       SSH_FXP_FSETSTAT, f->id, "ba", f->h, f->hl, &f->a);
	ENCODE(o, hok, sftp_enc_fsync(o, f->id, f->h, f->hl),
	       SSH_FXP_EXTENDED, f->id, "sb", "fsync@openssh.com", f->h, f->hl);
}

static void encode_path_requests(struct buf *o, const struct fields *f)
{
	int ok1 = path_ok(f->p1), ok2 = ok1 && path_ok(f->p2);

	ENCODE(o, 1, sftp_enc_init(o), SSH_FXP_INIT, 0, "u", SFTP_VERSION);
	ENCODE(o, ok1, sftp_enc_open(o, f->id, f->p1, f->pflags, &f->a),
	       SSH_FXP_OPEN, f->id, "sua", f->p1, f->pflags, &f->a);
	ENCODE(o, ok1 && is_path_type(f->type),
	       sftp_enc_path(o, f->type, f->id, f->p1),
	       f->type, f->id, "s", f->p1);
	ENCODE(o, ok1, sftp_enc_setstat(o, f->id, f->p1, &f->a),
	       SSH_FXP_SETSTAT, f->id, "sa", f->p1, &f->a);
	ENCODE(o, ok1, sftp_enc_mkdir(o, f->id, f->p1, &f->a),
	       SSH_FXP_MKDIR, f->id, "sa", f->p1, &f->a);
	ENCODE(o, ok2, sftp_enc_rename(o, f->id, f->p1, f->p2),
	       SSH_FXP_RENAME, f->id, "ss", f->p1, f->p2);
	ENCODE(o, ok2, sftp_enc_symlink(o, f->id, f->p1, f->p2),
	       SSH_FXP_SYMLINK, f->id, "ss", f->p1, f->p2);
	ENCODE(o, ok2, sftp_enc_posix_rename(o, f->id, f->p1, f->p2),
	       SSH_FXP_EXTENDED, f->id, "sss", "posix-rename@openssh.com",
	       f->p1, f->p2);
	ENCODE(o, ok1, sftp_enc_statvfs(o, f->id, f->p1),
	       SSH_FXP_EXTENDED, f->id, "ss", "statvfs@openssh.com", f->p1);
	ENCODE(o, ok2, sftp_enc_hardlink(o, f->id, f->p1, f->p2),
	       SSH_FXP_EXTENDED, f->id, "sss", "hardlink@openssh.com",
	       f->p1, f->p2);
	ENCODE(o, 1, sftp_enc_limits(o, f->id),
	       SSH_FXP_EXTENDED, f->id, "s", "limits@openssh.com");
	ENCODE(o, ok1, sftp_enc_lsetstat(o, f->id, f->p1, &f->a),
	       SSH_FXP_EXTENDED, f->id, "ssa", "lsetstat@openssh.com", f->p1,
	       &f->a);
}

static void fuzz_encoders(const uint8_t *data, size_t size)
{
	struct src s = { data, size };
	struct buf out = BUF_INIT;
	struct fields f;
	size_t marker;

	f.id = (uint32_t)take(&s, 4);
	f.off = take(&s, 8);
	f.len = (uint32_t)take(&s, 4);
	f.pflags = (uint32_t)take(&s, 4);
	f.type = (uint8_t)take(&s, 1);
	take_attrs(&s, &f.a);
	/* Up to 511 bytes, so sometimes over SFTP_MAX_HANDLE. */
	f.h = take_bytes(&s, (size_t)take(&s, 2) & 0x1ff, &f.hl);
	f.p1 = take_path(&s);
	f.p2 = take_path(&s);
	f.data = take_bytes(&s, (size_t)take(&s, 2), &f.datalen);

	/* A packet already in `out`, which every encoder must keep. */
	FUZZ_ASSERT(sftp_enc_limits(&out, 0xabcdef) == 0);
	marker = out.len;
	encode_handle_requests(&out, &f);
	encode_path_requests(&out, &f);
	FUZZ_ASSERT(out.len == marker);
	expect_packet(&out, 0, SSH_FXP_EXTENDED, 0xabcdef, "s",
		      "limits@openssh.com");
	buf_release(&out);
	free(f.p1);
	free(f.p2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_stream(data, size);
	fuzz_body(data, size);
	fuzz_encoders(data, size);
	return 0;
}
