/*
 * sftp: the SFTP v3 wire codec. See sftp.h for the contract.
 *
 * Encoders build a packet through a small sticky-error writer (struct enc):
 * each field is appended only while no earlier field failed, and the
 * packet is either finished (length patched in) or cut back to where it
 * started, so `out` never holds half a packet. Decoders wrap the packet in
 * a read-only struct buf and work on copies of it, committing the read
 * position only on success; they never allocate, they borrow.
 */
#include "sftp.h"

#include <errno.h>
#include <string.h>

/* Attribute bits we understand; EXTENDED is consumed but never reported. */
#define ATTR_KNOWN (SSH_FILEXFER_ATTR_SIZE | SSH_FILEXFER_ATTR_UIDGID | \
		    SSH_FILEXFER_ATTR_PERMISSIONS | SSH_FILEXFER_ATTR_ACMODTIME)

/* Smallest NAME entry: empty name, empty longname, attribute flags. */
#define NAME_ENTRY_MIN 12

/* The OpenSSH extensions: bit, name, and the version string the server
 * must advertise for us to use it (as OpenSSH's own client checks). */
static const struct ext_info {
	uint32_t bit;
	const char *name;
	const char *version;
} ext_table[] = {
	{ SFTP_EXT_POSIX_RENAME, "posix-rename@openssh.com", "1" },
	{ SFTP_EXT_STATVFS,      "statvfs@openssh.com",      "2" },
	{ SFTP_EXT_FSYNC,        "fsync@openssh.com",        "1" },
	{ SFTP_EXT_HARDLINK,     "hardlink@openssh.com",     "1" },
	{ SFTP_EXT_LIMITS,       "limits@openssh.com",       "1" },
	{ SFTP_EXT_LSETSTAT,     "lsetstat@openssh.com",     "1" },
};
#define N_EXT (sizeof(ext_table) / sizeof(ext_table[0]))

/* ---- framing ------------------------------------------------------------ */

int sftp_frame(const uint8_t *p, size_t avail, size_t max, size_t *pktlen)
{
	uint64_t total;

	*pktlen = 0;
	if (avail < 4)
		return BUF_E_SHORT;
	total = 4 + ((uint64_t)p[0] << 24 | (uint64_t)p[1] << 16 |
		     (uint64_t)p[2] << 8 | p[3]);
	if (total == 4)
		return BUF_E_FORMAT;
	if (total > max)
		return BUF_E_TOOBIG;
	*pktlen = (size_t)total;
	return avail < total ? BUF_E_SHORT : BUF_OK;
}

/* ---- encoding ----------------------------------------------------------- */

struct enc {
	struct buf *out;
	size_t start;  /* out->len before this packet */
	int rc;        /* first error, sticky */
};

static void e_fail(struct enc *e, int rc)
{
	if (!e->rc)
		e->rc = rc;
}

static void e_u8(struct enc *e, uint8_t v)
{
	if (!e->rc)
		e->rc = buf_put_u8(e->out, v);
}

static void e_u32(struct enc *e, uint32_t v)
{
	if (!e->rc)
		e->rc = buf_put_u32(e->out, v);
}

static void e_u64(struct enc *e, uint64_t v)
{
	if (!e->rc)
		e->rc = buf_put_u64(e->out, v);
}

static void e_bytes(struct enc *e, const void *p, size_t n, size_t max)
{
	if (n > max)
		e_fail(e, BUF_E_TOOBIG);
	else if (n && !p)
		e_fail(e, BUF_E_FORMAT);
	if (!e->rc)
		e->rc = buf_put_string(e->out, p, n);
}

static void e_path(struct enc *e, const char *path)
{
	if (!path) {
		e_fail(e, BUF_E_FORMAT);
		return;
	}
	/* strnlen: never scan further than the cap. */
	e_bytes(e, path, strnlen(path, SFTP_MAX_PATH + 1), SFTP_MAX_PATH);
}

static void e_handle(struct enc *e, const uint8_t *h, size_t hl)
{
	e_bytes(e, h, hl, SFTP_MAX_HANDLE);
}

static void e_attrs(struct enc *e, const struct sftp_attrs *a)
{
	if (!e->rc)
		e->rc = sftp_put_attrs(e->out, a);
}

/* Starts a packet: length placeholder, type, and (except INIT) the id. */
static struct enc e_begin(struct buf *out, uint8_t type, uint32_t id)
{
	struct enc e = { out, out->len, BUF_OK };

	e_u32(&e, 0);
	e_u8(&e, type);
	if (type != SSH_FXP_INIT)
		e_u32(&e, id);
	return e;
}

/* Starts an SSH_FXP_EXTENDED request for one of ext_table's entries. */
static struct enc e_begin_ext(struct buf *out, uint32_t id, uint32_t bit)
{
	struct enc e = e_begin(out, SSH_FXP_EXTENDED, id);

	e_bytes(&e, sftp_ext_name(bit), strlen(sftp_ext_name(bit)),
		SFTP_MAX_PATH);
	return e;
}

/* Patches in the length, or cuts `out` back to where the packet began. */
static int e_end(struct enc *e)
{
	size_t total = e->out->len - e->start;

	if (!e->rc && total > SFTP_MAX_PACKET)
		e->rc = BUF_E_TOOBIG;
	if (!e->rc)
		e->rc = buf_poke_u32(e->out, e->start, (uint32_t)(total - 4));
	if (e->rc)
		e->out->len = e->start;
	return e->rc;
}

int sftp_put_attrs(struct buf *out, const struct sftp_attrs *a)
{
	static const struct sftp_attrs none;
	struct enc e = { out, out->len, BUF_OK };
	uint32_t fl;

	if (!a)
		a = &none;
	/* We never send extended attributes, so that bit is never set. */
	fl = a->flags & ATTR_KNOWN;
	e_u32(&e, fl);
	if (fl & SSH_FILEXFER_ATTR_SIZE)
		e_u64(&e, a->size);
	if (fl & SSH_FILEXFER_ATTR_UIDGID) {
		e_u32(&e, a->uid);
		e_u32(&e, a->gid);
	}
	if (fl & SSH_FILEXFER_ATTR_PERMISSIONS)
		e_u32(&e, a->perm);
	if (fl & SSH_FILEXFER_ATTR_ACMODTIME) {
		e_u32(&e, a->atime);
		e_u32(&e, a->mtime);
	}
	if (e.rc)
		out->len = e.start;
	return e.rc;
}

int sftp_enc_init(struct buf *out)
{
	struct enc e = e_begin(out, SSH_FXP_INIT, 0);

	e_u32(&e, SFTP_VERSION);
	return e_end(&e);
}

int sftp_enc_open(struct buf *out, uint32_t id, const char *path,
		  uint32_t pflags, const struct sftp_attrs *a)
{
	struct enc e = e_begin(out, SSH_FXP_OPEN, id);

	e_path(&e, path);
	e_u32(&e, pflags);
	e_attrs(&e, a);
	return e_end(&e);
}

int sftp_enc_close(struct buf *out, uint32_t id, const uint8_t *h, size_t hl)
{
	return sftp_enc_handle(out, SSH_FXP_CLOSE, id, h, hl);
}

int sftp_enc_read(struct buf *out, uint32_t id, const uint8_t *h, size_t hl,
		  uint64_t off, uint32_t len)
{
	struct enc e = e_begin(out, SSH_FXP_READ, id);

	e_handle(&e, h, hl);
	e_u64(&e, off);
	e_u32(&e, len);
	return e_end(&e);
}

int sftp_enc_write(struct buf *out, uint32_t id, const uint8_t *h, size_t hl,
		   uint64_t off, const void *data, size_t len)
{
	struct enc e = e_begin(out, SSH_FXP_WRITE, id);

	e_handle(&e, h, hl);
	e_u64(&e, off);
	/* The packet cap in e_end() bounds the data; this only stops a
	 * huge length from being reserved first. */
	e_bytes(&e, data, len, SFTP_MAX_PACKET);
	return e_end(&e);
}

int sftp_enc_path(struct buf *out, uint8_t type, uint32_t id, const char *path)
{
	struct enc e;

	switch (type) {
	case SSH_FXP_LSTAT: case SSH_FXP_STAT: case SSH_FXP_OPENDIR:
	case SSH_FXP_REMOVE: case SSH_FXP_RMDIR: case SSH_FXP_REALPATH:
	case SSH_FXP_READLINK:
		break;
	default:
		return BUF_E_FORMAT;
	}
	e = e_begin(out, type, id);
	e_path(&e, path);
	return e_end(&e);
}

int sftp_enc_handle(struct buf *out, uint8_t type, uint32_t id,
		    const uint8_t *h, size_t hl)
{
	struct enc e;

	if (type != SSH_FXP_FSTAT && type != SSH_FXP_READDIR &&
	    type != SSH_FXP_CLOSE)
		return BUF_E_FORMAT;
	e = e_begin(out, type, id);
	e_handle(&e, h, hl);
	return e_end(&e);
}

int sftp_enc_setstat(struct buf *out, uint32_t id, const char *path,
		     const struct sftp_attrs *a)
{
	struct enc e = e_begin(out, SSH_FXP_SETSTAT, id);

	e_path(&e, path);
	e_attrs(&e, a);
	return e_end(&e);
}

int sftp_enc_fsetstat(struct buf *out, uint32_t id, const uint8_t *h,
		      size_t hl, const struct sftp_attrs *a)
{
	struct enc e = e_begin(out, SSH_FXP_FSETSTAT, id);

	e_handle(&e, h, hl);
	e_attrs(&e, a);
	return e_end(&e);
}

int sftp_enc_mkdir(struct buf *out, uint32_t id, const char *path,
		   const struct sftp_attrs *a)
{
	struct enc e = e_begin(out, SSH_FXP_MKDIR, id);

	e_path(&e, path);
	e_attrs(&e, a);
	return e_end(&e);
}

/* A request of two paths; RENAME, SYMLINK and two extensions share it. */
static int enc_two_paths(struct enc *e, const char *a, const char *b)
{
	e_path(e, a);
	e_path(e, b);
	return e_end(e);
}

int sftp_enc_rename(struct buf *out, uint32_t id, const char *from,
		    const char *to)
{
	struct enc e = e_begin(out, SSH_FXP_RENAME, id);

	return enc_two_paths(&e, from, to);
}

int sftp_enc_symlink(struct buf *out, uint32_t id, const char *target,
		     const char *linkpath)
{
	struct enc e = e_begin(out, SSH_FXP_SYMLINK, id);

	/* OpenSSH's order, not the draft's: see sftp.h. */
	return enc_two_paths(&e, target, linkpath);
}

int sftp_enc_posix_rename(struct buf *out, uint32_t id, const char *from,
			  const char *to)
{
	struct enc e = e_begin_ext(out, id, SFTP_EXT_POSIX_RENAME);

	return enc_two_paths(&e, from, to);
}

int sftp_enc_statvfs(struct buf *out, uint32_t id, const char *path)
{
	struct enc e = e_begin_ext(out, id, SFTP_EXT_STATVFS);

	e_path(&e, path);
	return e_end(&e);
}

int sftp_enc_fsync(struct buf *out, uint32_t id, const uint8_t *h, size_t hl)
{
	struct enc e = e_begin_ext(out, id, SFTP_EXT_FSYNC);

	e_handle(&e, h, hl);
	return e_end(&e);
}

int sftp_enc_hardlink(struct buf *out, uint32_t id, const char *oldpath,
		      const char *newpath)
{
	struct enc e = e_begin_ext(out, id, SFTP_EXT_HARDLINK);

	return enc_two_paths(&e, oldpath, newpath);
}

int sftp_enc_limits(struct buf *out, uint32_t id)
{
	struct enc e = e_begin_ext(out, id, SFTP_EXT_LIMITS);

	return e_end(&e);
}

int sftp_enc_lsetstat(struct buf *out, uint32_t id, const char *path,
		      const struct sftp_attrs *a)
{
	struct enc e = e_begin_ext(out, id, SFTP_EXT_LSETSTAT);

	e_path(&e, path);
	e_attrs(&e, a);
	return e_end(&e);
}

/* ---- decoding ----------------------------------------------------------- */

/* Inside a complete packet, running out of bytes means it is malformed. */
static int packet_rc(int rc)
{
	return rc == BUF_E_SHORT ? BUF_E_FORMAT : rc;
}

static int skip_string(struct buf *b, size_t max)
{
	const uint8_t *p;
	size_t n;

	return buf_get_string_direct(b, &p, &n, max);
}

/* Skips the extended attribute pairs; they carry nothing we use. */
static int skip_ext_pairs(struct buf *b)
{
	uint32_t count, i;
	int rc = buf_get_u32(b, &count);

	if (rc)
		return rc;
	if (count > SFTP_MAX_ATTR_EXT)
		return BUF_E_TOOBIG;
	for (i = 0; i < count && !rc; i++) {
		rc = skip_string(b, SFTP_MAX_PACKET);
		if (!rc)
			rc = skip_string(b, SFTP_MAX_PACKET);
	}
	return rc;
}

static int get_attrs(struct buf *b, struct sftp_attrs *a)
{
	uint32_t fl;
	int rc = buf_get_u32(b, &fl);

	if (!rc && (fl & SSH_FILEXFER_ATTR_SIZE))
		rc = buf_get_u64(b, &a->size);
	if (!rc && (fl & SSH_FILEXFER_ATTR_UIDGID)) {
		rc = buf_get_u32(b, &a->uid);
		if (!rc)
			rc = buf_get_u32(b, &a->gid);
	}
	if (!rc && (fl & SSH_FILEXFER_ATTR_PERMISSIONS))
		rc = buf_get_u32(b, &a->perm);
	if (!rc && (fl & SSH_FILEXFER_ATTR_ACMODTIME)) {
		rc = buf_get_u32(b, &a->atime);
		if (!rc)
			rc = buf_get_u32(b, &a->mtime);
	}
	if (!rc && (fl & SSH_FILEXFER_ATTR_EXTENDED))
		rc = skip_ext_pairs(b);
	a->flags = fl & ATTR_KNOWN;
	return rc;
}

int sftp_get_attrs(struct buf *in, struct sftp_attrs *a)
{
	struct buf b = *in;
	int rc;

	memset(a, 0, sizeof(*a));
	rc = packet_rc(get_attrs(&b, a));
	if (rc)
		memset(a, 0, sizeof(*a));
	else
		in->off = b.off;
	return rc;
}

int sftp_dec_version(const uint8_t *pkt, size_t len, uint32_t *version,
		     uint32_t *exts)
{
	const uint8_t *name, *data;
	size_t nlen, dlen, i;
	uint32_t found = 0;
	struct buf b;
	uint8_t type;
	int rc;

	*version = 0;
	buf_wrap(&b, pkt, len);
	rc = buf_get_u8(&b, &type);
	if (!rc && type != SSH_FXP_VERSION)
		rc = BUF_E_FORMAT;
	if (!rc)
		rc = buf_get_u32(&b, version);
	/* Extension pairs run to the end of the packet. */
	while (!rc && buf_avail(&b) > 0) {
		rc = buf_get_string_direct(&b, &name, &nlen, SFTP_MAX_PACKET);
		if (!rc)
			rc = buf_get_string_direct(&b, &data, &dlen,
						   SFTP_MAX_PACKET);
		for (i = 0; !rc && i < N_EXT; i++) {
			const struct ext_info *x = &ext_table[i];

			if (nlen == strlen(x->name) &&
			    !memcmp(name, x->name, nlen) &&
			    dlen == strlen(x->version) &&
			    !memcmp(data, x->version, dlen))
				found |= x->bit;
		}
	}
	if (rc) {
		*version = 0;
		return packet_rc(rc);
	}
	*exts |= found;
	return BUF_OK;
}

/* STATUS: code, then message and language tag, which some old servers
 * omit. Each is read when bytes remain, so a cut one is still an error. */
static int dec_status(struct buf *b, struct sftp_reply *r)
{
	int rc = buf_get_u32(b, &r->u.status.code);

	if (!rc && buf_avail(b) > 0)
		rc = buf_get_string_direct(b, &r->u.status.msg,
					   &r->u.status.msglen, SFTP_MAX_PACKET);
	if (!rc && buf_avail(b) > 0)
		rc = skip_string(b, SFTP_MAX_PACKET);
	return rc;
}

static int get_name(struct buf *b, struct sftp_name *n)
{
	int rc = buf_get_string_direct(b, &n->name, &n->namelen, SFTP_MAX_PATH);

	if (!rc)
		rc = buf_get_string_direct(b, &n->longname, &n->longlen,
					   SFTP_MAX_PACKET);
	if (!rc)
		rc = get_attrs(b, &n->attrs);
	return rc;
}

/* NAME: checks every entry now, so that sftp_name_next() on a reply that
 * decoded cleanly can only run out, never fail half-way. */
static int dec_name(struct buf *b, struct sftp_reply *r)
{
	struct sftp_name n;
	struct buf walk;
	uint32_t count, i;
	int rc = buf_get_u32(b, &count);

	if (rc)
		return rc;
	if (count > SFTP_MAX_NAMES)
		return BUF_E_TOOBIG;
	if (count > buf_avail(b) / NAME_ENTRY_MIN)
		return BUF_E_FORMAT;
	walk = *b;
	for (i = 0; i < count && !rc; i++)
		rc = get_name(&walk, &n);
	if (rc)
		return rc;
	r->u.name.count = count;
	buf_wrap(&r->u.name.rest, b->d + b->off, walk.off - b->off);
	b->off = walk.off;
	return BUF_OK;
}

static int dec_body(struct buf *b, struct sftp_reply *r)
{
	switch (r->type) {
	case SSH_FXP_STATUS:
		return dec_status(b, r);
	case SSH_FXP_HANDLE:
		return buf_get_string_direct(b, &r->u.handle.h, &r->u.handle.len,
					     SFTP_MAX_HANDLE);
	case SSH_FXP_DATA:
		return buf_get_string_direct(b, &r->u.data.p, &r->u.data.len,
					     SFTP_MAX_PACKET);
	case SSH_FXP_NAME:
		return dec_name(b, r);
	case SSH_FXP_ATTRS:
		return get_attrs(b, &r->u.attrs);
	case SSH_FXP_EXTENDED_REPLY:
		/* The payload is the rest; a zero-length one is valid. */
		r->u.ext.p = buf_avail(b) ? buf_ptr(b) : NULL;
		r->u.ext.len = buf_avail(b);
		return BUF_OK;
	}
	return BUF_E_FORMAT;
}

int sftp_dec_reply(const uint8_t *pkt, size_t len, struct sftp_reply *r)
{
	struct buf b;
	int rc;

	memset(r, 0, sizeof(*r));
	buf_wrap(&b, pkt, len);
	rc = buf_get_u8(&b, &r->type);
	if (!rc)
		rc = buf_get_u32(&b, &r->id);
	if (!rc)
		rc = dec_body(&b, r);
	if (rc) {
		memset(r, 0, sizeof(*r));
		return packet_rc(rc);
	}
	return BUF_OK;
}

int sftp_name_next(struct sftp_reply *r, struct sftp_name *n)
{
	struct buf b;
	int rc;

	memset(n, 0, sizeof(*n));
	if (r->type != SSH_FXP_NAME)
		return BUF_E_FORMAT;
	if (r->u.name.count == 0)
		return BUF_E_SHORT;
	b = r->u.name.rest;
	rc = get_name(&b, n);
	if (rc) {
		memset(n, 0, sizeof(*n));
		return packet_rc(rc);
	}
	r->u.name.rest.off = b.off;
	r->u.name.count--;
	return BUF_OK;
}

/* Reads `n` u64 fields in order; extra trailing bytes are ignored. */
static int dec_u64s(const uint8_t *p, size_t len, uint64_t *v, size_t n)
{
	struct buf b;
	size_t i;

	memset(v, 0, n * sizeof(*v));
	if (len / 8 < n)
		return BUF_E_FORMAT;
	buf_wrap(&b, p, len);
	for (i = 0; i < n; i++)
		buf_get_u64(&b, &v[i]);
	return BUF_OK;
}

int sftp_dec_limits(const uint8_t *p, size_t len, struct sftp_limits *l)
{
	uint64_t v[4];
	int rc = dec_u64s(p, len, v, 4);

	l->max_packet = v[0];
	l->max_read = v[1];
	l->max_write = v[2];
	l->max_open_handles = v[3];
	return rc;
}

/* A WRITE header (type, id, handle, offset, data length) and a DATA reply
 * header fit the headroom; the largest DATA fits the receive framing. */
_Static_assert(1 + 4 + 4 + SFTP_MAX_HANDLE + 8 + 4 <= SFTP_RW_HEADROOM,
	       "WRITE header larger than the headroom");
_Static_assert(SFTP_SEND_MAX_PACKET <= SFTP_MAX_PACKET,
	       "a request the codec would refuse");

/* v clamped to [lo, hi]; 0 (not stated) gives def. Sets `bit` in *changed
 * when a stated value was moved. */
static uint64_t clamp_limit(uint64_t v, uint64_t def, uint64_t lo, uint64_t hi,
			    unsigned bit, unsigned *changed)
{
	uint64_t r = v ? v : def;

	if (r < lo)
		r = lo;
	if (r > hi)
		r = hi;
	if (v && r != v)
		*changed |= bit;
	return r;
}

unsigned sftp_limits_use(const struct sftp_limits *ann, struct sftp_limits *use)
{
	static const struct sftp_limits none;
	unsigned changed = 0;
	uint64_t rw_max;

	if (!ann)
		ann = &none;
	/* No packet size stated: the read and write sizes alone decide. */
	use->max_packet = clamp_limit(ann->max_packet, SFTP_SEND_MAX_PACKET,
				      SFTP_MIN_PACKET, SFTP_SEND_MAX_PACKET,
				      SFTP_LIMIT_PACKET, &changed);
	rw_max = use->max_packet - SFTP_RW_HEADROOM;
	use->max_read = clamp_limit(ann->max_read, SFTP_DEFAULT_RW, SFTP_DEFAULT_RW,
				    rw_max, SFTP_LIMIT_READ, &changed);
	use->max_write = clamp_limit(ann->max_write, SFTP_DEFAULT_RW, SFTP_DEFAULT_RW,
				     rw_max, SFTP_LIMIT_WRITE, &changed);
	use->max_open_handles = ann->max_open_handles;
	return changed;
}

int sftp_dec_statvfs(const uint8_t *p, size_t len, struct sftp_statvfs *s)
{
	uint64_t v[11];
	int rc = dec_u64s(p, len, v, 11);

	s->bsize = v[0];
	s->frsize = v[1];
	s->blocks = v[2];
	s->bfree = v[3];
	s->bavail = v[4];
	s->files = v[5];
	s->ffree = v[6];
	s->favail = v[7];
	s->fsid = v[8];
	s->flag = v[9];
	s->namemax = v[10];
	return rc;
}

/* ---- names -------------------------------------------------------------- */

/*
 * SFTP status -> errno. v3 defines codes 0..8; later drafts added more,
 * and a few servers send those even at v3, so the common ones are mapped
 * too. Anything else, and every transport-level code, is EIO. Never
 * ENOTCONN: a steadyfs caller must never see it.
 */
static const int status_errno[] = {
	[SSH_FX_OK] = 0,
	[SSH_FX_EOF] = 0,               /* callers treat EOF specially */
	[SSH_FX_NO_SUCH_FILE] = ENOENT,
	[SSH_FX_PERMISSION_DENIED] = EACCES,
	[SSH_FX_FAILURE] = EIO,
	[SSH_FX_BAD_MESSAGE] = EIO,     /* a protocol error, not the file's */
	[SSH_FX_NO_CONNECTION] = EIO,
	[SSH_FX_CONNECTION_LOST] = EIO,
	[SSH_FX_OP_UNSUPPORTED] = EOPNOTSUPP,
	[9] = EBADF,         /* INVALID_HANDLE */
	[10] = ENOENT,       /* NO_SUCH_PATH */
	[11] = EEXIST,       /* FILE_ALREADY_EXISTS */
	[12] = EROFS,        /* WRITE_PROTECT */
	[13] = ENOMEDIUM,    /* NO_MEDIA */
	[14] = ENOSPC,       /* NO_SPACE_ON_FILESYSTEM */
	[15] = EDQUOT,       /* QUOTA_EXCEEDED */
	[16] = EIO,          /* UNKNOWN_PRINCIPAL */
	[17] = EBUSY,        /* LOCK_CONFLICT */
	[18] = ENOTEMPTY,    /* DIR_NOT_EMPTY */
	[19] = ENOTDIR,      /* NOT_A_DIRECTORY */
	[20] = EINVAL,       /* INVALID_FILENAME */
	[21] = ELOOP,        /* LINK_LOOP */
	[22] = EPERM,        /* CANNOT_DELETE */
	[23] = EINVAL,       /* INVALID_PARAMETER */
	[24] = EISDIR,       /* FILE_IS_A_DIRECTORY */
};

int sftp_status_errno(uint32_t code)
{
	if (code >= sizeof(status_errno) / sizeof(status_errno[0]))
		return EIO;
	return status_errno[code];
}

const char *sftp_ext_name(uint32_t ext_bit)
{
	size_t i;

	for (i = 0; i < N_EXT; i++)
		if (ext_table[i].bit == ext_bit)
			return ext_table[i].name;
	return "unknown";
}
