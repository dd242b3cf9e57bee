/*
 * rename_fallback: rename over an existing target on a server without
 * posix-rename@openssh.com.
 *
 * SFTP v3's RENAME refuses an existing target with a bare "failure", the
 * same word it uses for many other problems. So the reason is settled by
 * looking at the server (LSTAT of the source, then of the target), and
 * the target is replaced only in ways that lose nothing when the rename
 * cannot be done after all:
 *
 *  - a target that is not a folder is first renamed aside, to a hidden
 *    name in its own folder; then the source is renamed into place and
 *    the hidden one removed. When the source cannot be moved (its folder
 *    is read-only, say), the target is renamed back.
 *  - a folder target is removed with RMDIR, which succeeds only when it
 *    is empty (so a full one gives ENOTEMPTY and nothing changes); when
 *    the source then cannot be moved, the empty folder is made again.
 *
 * A refusal at any step fails the call with that step's errno. A step
 * whose reply was lost is settled by LSTAT, as every non-idempotent call
 * (the name it removes gone: it was done). Not atomic: between the steps
 * the target name is missing; when the server cannot be asked, the
 * target may be left at its hidden name, which the log line names
 * (docs/retries.md).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "vfs_int.h"

void rename_ok(struct op *op)
{
	/* op->have_pre: the two names may be links of one file
	 * (ops_rename.c). */
	(op->have_pre ? nodes_rename_links : nodes_rename)(op->v->nodes, op->parent,
		op->leaf, op->newparent, op->leaf2);
	op_fail(op, 0);
}

/* The target renamed aside lives at op->data (malloc'd, freed with op). */
static const char *aside_of(const struct op *op)
{
	return op->data;
}

/* A lost reply in the middle: say where everything may be. */
static void fallback_lost(struct op *op, const char *step)
{
	if (aside_of(op))
		log_err("rename '%s' -> '%s': reply to %s lost; the replaced target may be at '%s'",
			op->path, op->path2, step, aside_of(op));
	else
		log_err("rename '%s' -> '%s': reply to %s lost", op->path, op->path2, step);
	op_log_error(op, EIO, "transport");
	op_fail(op, EIO);
}

static void send_two(struct op *op, const char *from, const char *to,
		     op_step_fn step)
{
	buf_reset(&op->rq.pkt);
	if (sftp_enc_rename(&op->rq.pkt, 0, from, to) < 0) {
		op_fail(op, EIO);
		return;
	}
	op_send(op, step, false);
}

static void send_one(struct op *op, uint8_t type, const char *path,
		     op_step_fn step)
{
	buf_reset(&op->rq.pkt);
	if (sftp_enc_path(&op->rq.pkt, type, 0, path) < 0) {
		op_fail(op, EIO);
		return;
	}
	op_send(op, step, false);
}

static bool ok_reply(const struct sftp_reply *r)
{
	return r->type == SSH_FXP_STATUS && r->u.status.code == SSH_FX_OK;
}

/* ---- putting things back after the source could not move ---------------- */

static void undone(struct op *op, const struct sftp_reply *r, int err)
{
	if (err || !ok_reply(r)) {
		if (aside_of(op))
			log_err("rename '%s' -> '%s' failed, and the target could not be put back: it is at '%s'",
				op->path, op->path2, aside_of(op));
		else
			log_err("rename '%s' -> '%s' failed, and the empty folder it replaced could not be made again",
				op->path, op->path2);
	}
	op_fail(op, op->err);
}

static void undo(struct op *op)
{
	struct sftp_attrs a = { .flags = SSH_FILEXFER_ATTR_PERMISSIONS,
				.perm = op->st.st_mode & 07777 };

	if (aside_of(op)) {
		send_two(op, aside_of(op), op->path2, undone);
		return;
	}
	buf_reset(&op->rq.pkt);
	if (sftp_enc_mkdir(&op->rq.pkt, 0, op->path2, &a) < 0) {
		undone(op, NULL, -ENOMEM);
		return;
	}
	op_send(op, undone, false);
}

/* ---- the move itself ---------------------------------------------------- */

static void aside_dropped(struct op *op, const struct sftp_reply *r, int err)
{
	/* The rename is done either way: a hidden leftover is not a reason
	 * to report a failure the caller would act on. */
	if (err || !ok_reply(r))
		log_warn("rename '%s' -> '%s': the replaced target is left at '%s'",
			 op->path, op->path2, aside_of(op));
	rename_ok(op);
}

static void moved_ok(struct op *op)
{
	if (aside_of(op))
		send_one(op, SSH_FXP_REMOVE, aside_of(op), aside_dropped);
	else
		rename_ok(op);
}

static void send_move(struct op *op);

/* The move's reply was lost: the source gone means it was done; still
 * there, the request died with its session and is sent again. */
static void move_settled(struct op *op, const struct sftp_attrs *a, int err)
{
	if (!a && err == ENOENT) {
		moved_ok(op);
	} else if (a && op->lost) {
		send_move(op);
	} else if (a) {
		op->err = EIO;
		undo(op);
	} else {
		fallback_lost(op, "the rename");
	}
}

static void moved(struct op *op, const struct sftp_reply *r, int err)
{
	if (err) {
		op->lost = err == -ECONNRESET;
		op_stat_path(op, op->path, move_settled);
		return;
	}
	if (ok_reply(r)) {
		moved_ok(op);
		return;
	}
	op->err = op_reply_errno(r);
	undo(op);
}

static void send_move(struct op *op)
{
	send_two(op, op->path, op->path2, moved);
}

/* ---- making room: the target aside, or an empty folder removed ---------- */

/* Nothing changed: the call fails with `e`. */
static void room_refused(struct op *op, int e)
{
	free(op->data);
	op->data = NULL;
	op_fail(op, e);
}

static void send_room(struct op *op);

/* The reply to making room was lost: the target gone means it was done;
 * still there, the request died with its session and is sent again. */
static void room_settled(struct op *op, const struct sftp_attrs *a, int err)
{
	if (!a && err == ENOENT)
		send_move(op);
	else if (a && op->lost)
		send_room(op);
	else if (a)
		room_refused(op, EIO);
	else
		fallback_lost(op, aside_of(op) ? "moving the target aside" :
			      "the RMDIR of the target");
}

static void room_made(struct op *op, const struct sftp_reply *r, int err)
{
	if (err) {
		op->lost = err == -ECONNRESET;
		op_stat_path(op, op->path2, room_settled);
		return;
	}
	if (ok_reply(r)) {
		send_move(op);
		return;
	}
	/* A folder that RMDIR refuses with "failure" is not empty (it
	 * exists: LSTAT just saw it). */
	room_refused(op, !aside_of(op) && r->type == SSH_FXP_STATUS &&
		     r->u.status.code == SSH_FX_FAILURE ? ENOTEMPTY : op_reply_errno(r));
}

/* Makes room: an empty folder target removed, any other moved aside. */
static void send_room(struct op *op)
{
	if (aside_of(op))
		send_two(op, op->path2, aside_of(op), room_made);
	else
		send_one(op, SSH_FXP_RMDIR, op->path2, room_made);
}

/* A name in the target's folder for the target while it is replaced. */
static char *aside_path(const char *target)
{
	static const char prefix[] = ".steadyfs-replaced-";
	const char *slash = strrchr(target, '/');
	size_t dirlen = slash ? (size_t)(slash - target) + 1 : 0;
	uint64_t tag = clock_mono_ns() ^ ((uint64_t)getpid() << 40);
	size_t n = dirlen + sizeof(prefix) + 16;
	char *p = malloc(n);

	if (p)
		snprintf(p, n, "%.*s%s%016llx", (int)dirlen, target, prefix,
			 (unsigned long long)tag);
	return p;
}

static void target_seen(struct op *op, const struct sftp_attrs *a, int err)
{
	mode_t tmode, smode = op->mode;

	if (!a) {
		/* No target: the failure had another reason the server did
		 * not name. */
		op_fail(op, err == ENOENT ? EIO : err);
		return;
	}
	tmode = (a->flags & SSH_FILEXFER_ATTR_PERMISSIONS) ? a->perm : S_IFREG;
	if (S_ISDIR(tmode) && !S_ISDIR(smode)) {
		op_fail(op, EISDIR);
		return;
	}
	if (!S_ISDIR(tmode) && S_ISDIR(smode)) {
		op_fail(op, ENOTDIR);
		return;
	}
	op->st.st_mode = tmode;
	if (!S_ISDIR(tmode) && !(op->data = aside_path(op->path2))) {
		op_fail(op, ENOMEM);
		return;
	}
	if (aside_of(op) && strlen(aside_of(op)) > SFTP_MAX_PATH) {
		op_fail(op, ENAMETOOLONG);
		return;
	}
	send_room(op);
}

static void source_seen(struct op *op, const struct sftp_attrs *a, int err)
{
	if (!a) {
		op_fail(op, err);  /* ENOENT, or the transport's EIO */
		return;
	}
	op->mode = (a->flags & SSH_FILEXFER_ATTR_PERMISSIONS) ? a->perm : S_IFREG;
	op_stat_path(op, op->path2, target_seen);
}

void rename_fallback(struct op *op)
{
	op->rq.cache_ok = false;
	op_stat_path(op, op->path, source_seen);
}
