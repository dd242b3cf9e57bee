/*
 * sftp: the SFTP version 3 wire codec (draft-ietf-secsh-filexfer-02) plus
 * the OpenSSH extensions steadyfs uses (OpenSSH PROTOCOL, section 4).
 *
 * Pure functions over struct buf: no I/O, no globals, no logging, never
 * aborts. Encoders append one complete packet (u32 length, type, id, body)
 * to `out` and return 0 or a negative BUF_E* code; on failure `out` is left
 * as it was. Decoders read one packet body and return 0, BUF_E_FORMAT for
 * malformed input or BUF_E_TOOBIG for a length over its cap; they never
 * read past the packet. Decoded strings and handles borrow pointers into
 * the packet (valid while the packet's bytes are).
 *
 * Note: OpenSSH's SYMLINK takes (targetpath, linkpath), the reverse of the
 * draft; sftp_enc_symlink() takes (target, linkpath) and sends them in
 * OpenSSH's order.
 */
#ifndef STEADYFS_SFTP_H
#define STEADYFS_SFTP_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define SFTP_VERSION 3
/* Largest packet we accept from a server (OpenSSH sends <= 256 KiB + header). */
#define SFTP_MAX_PACKET (256 * 1024 + 1024)
#define SFTP_MAX_HANDLE 256
#define SFTP_MAX_PATH 4096
/* Cap on names in one NAME reply, checked before allocation. */
#define SFTP_MAX_NAMES 100000
/* Cap on extended attribute pairs in one attrs block (all are skipped). */
#define SFTP_MAX_ATTR_EXT 1024

enum sftp_type {
	SSH_FXP_INIT = 1, SSH_FXP_VERSION = 2, SSH_FXP_OPEN = 3,
	SSH_FXP_CLOSE = 4, SSH_FXP_READ = 5, SSH_FXP_WRITE = 6,
	SSH_FXP_LSTAT = 7, SSH_FXP_FSTAT = 8, SSH_FXP_SETSTAT = 9,
	SSH_FXP_FSETSTAT = 10, SSH_FXP_OPENDIR = 11, SSH_FXP_READDIR = 12,
	SSH_FXP_REMOVE = 13, SSH_FXP_MKDIR = 14, SSH_FXP_RMDIR = 15,
	SSH_FXP_REALPATH = 16, SSH_FXP_STAT = 17, SSH_FXP_RENAME = 18,
	SSH_FXP_READLINK = 19, SSH_FXP_SYMLINK = 20,
	SSH_FXP_STATUS = 101, SSH_FXP_HANDLE = 102, SSH_FXP_DATA = 103,
	SSH_FXP_NAME = 104, SSH_FXP_ATTRS = 105,
	SSH_FXP_EXTENDED = 200, SSH_FXP_EXTENDED_REPLY = 201,
};

enum sftp_status {
	SSH_FX_OK = 0, SSH_FX_EOF = 1, SSH_FX_NO_SUCH_FILE = 2,
	SSH_FX_PERMISSION_DENIED = 3, SSH_FX_FAILURE = 4,
	SSH_FX_BAD_MESSAGE = 5, SSH_FX_NO_CONNECTION = 6,
	SSH_FX_CONNECTION_LOST = 7, SSH_FX_OP_UNSUPPORTED = 8,
};

/* SSH_FXP_OPEN pflags */
#define SSH_FXF_READ   0x01
#define SSH_FXF_WRITE  0x02
#define SSH_FXF_APPEND 0x04
#define SSH_FXF_CREAT  0x08
#define SSH_FXF_TRUNC  0x10
#define SSH_FXF_EXCL   0x20

/* attribute flags */
#define SSH_FILEXFER_ATTR_SIZE        0x01
#define SSH_FILEXFER_ATTR_UIDGID      0x02
#define SSH_FILEXFER_ATTR_PERMISSIONS 0x04
#define SSH_FILEXFER_ATTR_ACMODTIME   0x08
#define SSH_FILEXFER_ATTR_EXTENDED    0x80000000u

struct sftp_attrs {
	uint32_t flags;  /* which fields below are valid */
	uint64_t size;
	uint32_t uid, gid;
	uint32_t perm;   /* full st_mode: type bits and permission bits */
	uint32_t atime, mtime;
};

/* Extensions a server may advertise in VERSION; a bit set = offered. */
enum sftp_ext {
	SFTP_EXT_POSIX_RENAME = 1u << 0,  /* posix-rename@openssh.com */
	SFTP_EXT_STATVFS      = 1u << 1,  /* statvfs@openssh.com */
	SFTP_EXT_FSYNC        = 1u << 2,  /* fsync@openssh.com */
	SFTP_EXT_HARDLINK     = 1u << 3,  /* hardlink@openssh.com */
	SFTP_EXT_LIMITS       = 1u << 4,  /* limits@openssh.com */
	SFTP_EXT_LSETSTAT     = 1u << 5,  /* lsetstat@openssh.com */
};

struct sftp_limits {
	uint64_t max_packet, max_read, max_write, max_open_handles;
};

struct sftp_statvfs {
	uint64_t bsize, frsize, blocks, bfree, bavail, files, ffree, favail;
	uint64_t fsid, flag, namemax;
};

/* One decoded reply. Pointers borrow from the packet. */
struct sftp_reply {
	uint8_t type;    /* SSH_FXP_STATUS ... SSH_FXP_EXTENDED_REPLY */
	uint32_t id;
	union {
		struct { uint32_t code; const uint8_t *msg; size_t msglen; } status;
		struct { const uint8_t *h; size_t len; } handle;
		struct { const uint8_t *p; size_t len; } data;
		struct sftp_attrs attrs;
		/* NAME: `count` entries still encoded at `rest`; walk them with
		 * sftp_name_next(). `rest` wraps the packet: never release it. */
		struct { uint32_t count; struct buf rest; } name;
		/* EXTENDED_REPLY: extension-specific payload, decode with
		 * sftp_dec_limits() / sftp_dec_statvfs(). */
		struct { const uint8_t *p; size_t len; } ext;
	} u;
};

struct sftp_name {
	const uint8_t *name; size_t namelen;
	const uint8_t *longname; size_t longlen;
	struct sftp_attrs attrs;
};

/*
 * Framing: given `avail` bytes at `p` from the stream, sets *pktlen to the
 * total length of the first packet (4-byte length included) and returns 0
 * when it is complete; BUF_E_SHORT when more bytes are needed; BUF_E_TOOBIG
 * when its length exceeds `max` (a session error); BUF_E_FORMAT when its
 * length is zero.
 * `max` bounds the total, 4-byte length included. On BUF_E_SHORT *pktlen
 * is the total needed once the length is readable (0 with fewer than 4
 * bytes), so a reader knows how much to wait for; on other errors it is 0.
 */
int sftp_frame(const uint8_t *p, size_t avail, size_t max, size_t *pktlen);

/* Encoders. `hl` is a handle length (<= SFTP_MAX_HANDLE); a path is a
 * NUL-terminated string of at most SFTP_MAX_PATH bytes. A longer handle or
 * path, or a packet over SFTP_MAX_PACKET in total, is BUF_E_TOOBIG; a NULL
 * path is BUF_E_FORMAT. A NULL `a` sends empty attributes. The server's
 * own limit (limits@ max_packet) is the caller's to respect. */
int sftp_enc_init(struct buf *out);
int sftp_enc_open(struct buf *out, uint32_t id, const char *path,
		  uint32_t pflags, const struct sftp_attrs *a);
int sftp_enc_close(struct buf *out, uint32_t id, const uint8_t *h, size_t hl);
int sftp_enc_read(struct buf *out, uint32_t id, const uint8_t *h, size_t hl,
		  uint64_t off, uint32_t len);
int sftp_enc_write(struct buf *out, uint32_t id, const uint8_t *h, size_t hl,
		   uint64_t off, const void *data, size_t len);
/* LSTAT, STAT, OPENDIR, REMOVE, RMDIR, REALPATH, READLINK: one path. */
int sftp_enc_path(struct buf *out, uint8_t type, uint32_t id, const char *path);
/* FSTAT, READDIR: one handle. */
int sftp_enc_handle(struct buf *out, uint8_t type, uint32_t id,
		    const uint8_t *h, size_t hl);
int sftp_enc_setstat(struct buf *out, uint32_t id, const char *path,
		     const struct sftp_attrs *a);
int sftp_enc_fsetstat(struct buf *out, uint32_t id, const uint8_t *h,
		      size_t hl, const struct sftp_attrs *a);
int sftp_enc_mkdir(struct buf *out, uint32_t id, const char *path,
		   const struct sftp_attrs *a);
int sftp_enc_rename(struct buf *out, uint32_t id, const char *from,
		    const char *to);
int sftp_enc_symlink(struct buf *out, uint32_t id, const char *target,
		     const char *linkpath);
/* OpenSSH extensions (SSH_FXP_EXTENDED). */
int sftp_enc_posix_rename(struct buf *out, uint32_t id, const char *from,
			  const char *to);
int sftp_enc_statvfs(struct buf *out, uint32_t id, const char *path);
int sftp_enc_fsync(struct buf *out, uint32_t id, const uint8_t *h, size_t hl);
int sftp_enc_hardlink(struct buf *out, uint32_t id, const char *oldpath,
		      const char *newpath);
int sftp_enc_limits(struct buf *out, uint32_t id);
int sftp_enc_lsetstat(struct buf *out, uint32_t id, const char *path,
		      const struct sftp_attrs *a);

/* Attributes: encode appends; decode consumes (buffer untouched on error).
 * Only SIZE, UIDGID, PERMISSIONS and ACMODTIME are sent or reported:
 * other flag bits are dropped on encode; on decode, extended pairs are
 * skipped (at most SFTP_MAX_ATTR_EXT) and flags keeps only those four.
 * Decode errors are BUF_E_FORMAT (truncated) or BUF_E_TOOBIG. */
int sftp_put_attrs(struct buf *out, const struct sftp_attrs *a);
int sftp_get_attrs(struct buf *in, struct sftp_attrs *a);

/*
 * Decodes the VERSION packet body (after the 4-byte length): sets *version
 * and ORs the known extensions into *exts. Unknown extensions are skipped,
 * and so is a known name with a version string other than the one OpenSSH
 * documents ("2" for statvfs@, "1" for the others). *exts is unchanged on
 * error. The caller checks *version.
 */
int sftp_dec_version(const uint8_t *pkt, size_t len, uint32_t *version,
		     uint32_t *exts);
/* Decodes one reply packet body (after the 4-byte length); *r is zeroed on
 * error. Types other than STATUS..EXTENDED_REPLY are BUF_E_FORMAT. Bytes
 * after the last field are ignored (as OpenSSH's client does). A STATUS
 * without message leaves msg NULL. A NAME reply has all its entries
 * checked here, so sftp_name_next() on it cannot fail except by running out. */
int sftp_dec_reply(const uint8_t *pkt, size_t len, struct sftp_reply *r);
/* Next NAME entry from r->u.name.rest; returns BUF_E_SHORT when none left
 * (BUF_E_FORMAT if r is not a NAME reply). */
int sftp_name_next(struct sftp_reply *r, struct sftp_name *n);
/* EXTENDED_REPLY payloads: BUF_E_FORMAT (and zeroed output) if short. */
int sftp_dec_limits(const uint8_t *p, size_t len, struct sftp_limits *l);

/* Request sizes (see sftp_limits_use). */
#define SFTP_DEFAULT_RW 32768     /* data bytes per READ/WRITE without limits@ */
#define SFTP_MIN_PACKET 34000     /* every v3 server takes this (draft-02, 3) */
#define SFTP_SEND_MAX_PACKET (256 * 1024)  /* OpenSSH's own message cap */
#define SFTP_RW_HEADROOM 1024     /* room for a READ/WRITE/DATA header */
/* The limits_use mask: which announced values were not believed. */
#define SFTP_LIMIT_PACKET 1u
#define SFTP_LIMIT_READ   2u
#define SFTP_LIMIT_WRITE  4u

/*
 * The sizes to use with a server whose limits@ reply said `ann` (NULL: no
 * limits@): use->max_packet (largest request sent), use->max_read and
 * use->max_write (data bytes per READ / WRITE); max_open_handles is
 * copied. A server's numbers are not trusted: a zero read or write size
 * keeps the default (32 KiB, what every v3 server takes; an unstated
 * packet size leaves them alone), and
 * every value is clamped so that the codec can always carry it: packets
 * within [SFTP_MIN_PACKET, SFTP_SEND_MAX_PACKET], reads and writes within
 * [SFTP_DEFAULT_RW, max_packet - SFTP_RW_HEADROOM]. So a WRITE of max_write
 * bytes always encodes and a DATA reply of max_read bytes always passes
 * sftp_frame(..., SFTP_MAX_PACKET, ...). Returns the SFTP_LIMIT_* bits of
 * the non-zero announced values that were changed.
 */
unsigned sftp_limits_use(const struct sftp_limits *ann, struct sftp_limits *use);
int sftp_dec_statvfs(const uint8_t *p, size_t len, struct sftp_statvfs *s);

/* The errno closest to an SFTP status code. SSH_FX_OK and SSH_FX_EOF both
 * give 0: EOF is not an error, the caller handles it (short read, end of
 * directory). BAD_MESSAGE, NO_CONNECTION, CONNECTION_LOST and unknown
 * codes give EIO, never ENOTCONN. */
int sftp_status_errno(uint32_t code);
/* Human name of an extension bit ("posix-rename@openssh.com"); "unknown"
 * for anything but a single known bit. */
const char *sftp_ext_name(uint32_t ext_bit);

#endif
