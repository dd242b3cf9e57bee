/*
 * meta_int: what the name and attribute operations share (ops_meta.c,
 * ops_names.c, ops_rename.c; each calls only those listed before it):
 * the handler prologue for a call on (parent, name), the settlement of
 * non-idempotent calls. Not for use elsewhere.
 *
 * The design (from the file before it was split):
 * ops_meta: operations on names and attributes: lookup, forget, getattr,
 * setattr, readlink, mkdir, unlink, rmdir, symlink, rename, link, statfs.
 *
 * Non-idempotent operations (mkdir, rmdir, unlink, rename, symlink, link)
 * are never resent blindly: when the session died before the reply came
 * (-ECONNRESET), the operation is settled by checking its postcondition on
 * the server with LSTAT (docs/retries.md). SFTP v3 reports EEXIST,
 * ENOTEMPTY and friends only as "failure", so a failure is refined the same
 * way. A call the kernel resent after a daemon died may have been done
 * once already: a refusal of it is settled the same way too.
 */
#ifndef STEADYFS_META_INT_H
#define STEADYFS_META_INT_H

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "moving.h"
#include "vfs_int.h"

#define NAME_MAX_BYTES 255

static inline struct vfs *vfs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static inline void fail_transport(struct op *op, int err)
{
	int e = op_transport_errno(err);

	op_log_error(op, e, "transport");
	op_fail(op, e);
}

/* ---- ops_meta.c -------------------------------------------------------- */

/* Starts an op on (parent, name); replies and returns NULL on error. */
struct op *meta_name_op(fuse_req_t req, fuse_ino_t parent, const char *name,
		   const char *opname);

/* ---- ops_names.c ------------------------------------------------------- */

/*
 * A non-idempotent call whose reply was lost, or that the kernel resent
 * and the server refused (op_maybe_done), is settled by checking its
 * postcondition on the server: LSTAT `path`, then `then`. Remembers why.
 */
void meta_settle(struct op *op, const struct sftp_reply *r, int err,
	    const char *path,
	    void (*then)(struct op *, const struct sftp_attrs *, int));

/* Logs that op, whose reply was lost, was found done on the
 * server. */
void meta_settled_done(struct op *op);

/*
 * The check found the call not done. Its reply lost: the request died
 * with its session before the server did it, so it is sent again, within
 * the call's own deadline (a short cut must be invisible); a refusal of
 * this resend is settled the same way (the first request may still have
 * been done meanwhile). A resent call the server refused: that refusal
 * is the answer.
 */
void meta_settled_not_done(struct op *op, op_step_fn done);

/* The server could not be asked (or its answer says nothing). */
void meta_settled_unknown(struct op *op, op_step_fn done);

/* After the server refused with "failure": EEXIST when the name exists. */
void meta_refine_exists(struct op *op, const struct sftp_attrs *a, int err);

#endif
