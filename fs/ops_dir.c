/*
 * ops_dir: directory listings. opendir reads the whole listing (OPENDIR,
 * READDIR until EOF, CLOSE) into a dirbuf before it replies, so readdir
 * is served from memory at any offset and a listing is one consistent
 * snapshot. A dirbuf holds names and modes only: about 40 bytes per entry
 * plus the name, so a 100k-entry folder costs a few MiB while open.
 *
 * A listing opened under a daemon that has since died is read again from
 * the server at the first readdir of the new daemon (same offsets as long
 * as the folder did not change meanwhile).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "handles.h"
#include "log.h"
#include "vfs_int.h"

/* op->flags of a listing made for a readdir on another daemon's handle. */
#define LIST_FOR_READDIR 1u

struct dirent_s {
	char *name;
	mode_t mode;
};

struct dirbuf {
	struct dirent_s *e;
	size_t n, cap;
	uint8_t h[SFTP_MAX_HANDLE];
	size_t hlen;
	int conn_idx;
	uint64_t gen;
};

static void dirbuf_free(struct dirbuf *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->n; i++)
		free(d->e[i].name);
	free(d->e);
	free(d);
}

static int dirbuf_add(struct dirbuf *d, const uint8_t *name, size_t len, mode_t mode)
{
	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 64;
		struct dirent_s *e = realloc(d->e, cap * sizeof(*e));

		if (!e)
			return -1;
		d->e = e;
		d->cap = cap;
	}
	if (!(d->e[d->n].name = strndup((const char *)name, len)))
		return -1;
	d->e[d->n++].mode = mode;
	return 0;
}

static struct dirbuf *dir_of(struct op *op)
{
	return (struct dirbuf *)op->data;
}

static void readdir_step(struct op *op, const struct sftp_reply *r, int err);
static void reply_entries(fuse_req_t req, const struct dirbuf *d, size_t size,
			  off_t off);
static void opendir_done(struct op *op, const struct sftp_reply *r, int err);

#ifndef FUSE_UNKNOWN_INO
#define FUSE_UNKNOWN_INO 0xffffffff
#endif

/* Sends the next READDIR (or CLOSE when done) bound to the session. */
static void send_bound(struct op *op, uint8_t type, op_step_fn step)
{
	struct dirbuf *d = dir_of(op);

	buf_reset(&op->rq.pkt);
	if (sftp_enc_handle(&op->rq.pkt, type, 0, d->h, d->hlen) < 0) {
		op_fail(op, ENOMEM);
		return;
	}
	op_send_on(op, step, d->conn_idx, d->gen);
}

static void closedir_done(struct op *cop, const struct sftp_reply *r, int err)
{
	op_free(cop);
}

/* The listing is complete: its CLOSE need not hold up the reply (one
 * round trip less per listing). A failed CLOSE loses nothing; a handle
 * left open closes with its session. */
static void close_in_background(struct op *op)
{
	struct dirbuf *d = dir_of(op);
	struct op *cop = op_new(op->v, NULL, "closedir");

	if (!cop)
		return;
	if (sftp_enc_handle(&cop->rq.pkt, SSH_FXP_CLOSE, 0, d->h, d->hlen) < 0) {
		op_free(cop);
		return;
	}
	op_send_on(cop, closedir_done, d->conn_idx, d->gen);
}

static void finish_opendir(struct op *op)
{
	struct dirbuf *d = dir_of(op);

	/* The root lists .control so operators can find it. */
	if (op->ino == NODE_ROOT &&
	    dirbuf_add(d, (const uint8_t *)CTL_NAME, strlen(CTL_NAME), S_IFDIR) < 0) {
		dirbuf_free(d);
		op->data = NULL;
		op_fail(op, ENOMEM);
		return;
	}
	if (op->flags & LIST_FOR_READDIR) {
		if (handles_put_at(op->v->dirs, op->fi.fh, d) < 0) {
			dirbuf_free(d);
			d = handles_get(op->v->dirs, op->fi.fh);
		}
		if (d)
			reply_entries(op->req, d, op->size, (off_t)op->off);
		else
			fuse_reply_err(op->req, EIO);
	} else if (!(op->fi.fh = handles_add(op->v->dirs, d))) {
		dirbuf_free(d);
		fuse_reply_err(op->req, ENOMEM);
	} else {
		op->fi.cache_readdir = op->v->o->kernel_cache;
		if (fuse_reply_open(op->req, &op->fi) != 0)
			dirbuf_free(handles_take(op->v->dirs, op->fi.fh));
	}
	op->data = NULL;
	op->req = NULL;
	op_free(op);
}

static void close_step(struct op *op, const struct sftp_reply *r, int err)
{
	/* A failed CLOSE loses nothing: the listing is complete. */
	if (op->err) {
		dirbuf_free(dir_of(op));
		op->data = NULL;
		op_fail(op, op->err);
		return;
	}
	finish_opendir(op);
}

/* Keeps the attributes READDIR returned, so the lookups of `ls -l`
 * that follow need no round trip each (as sshfs does). */
static void prime(struct op *op, const struct sftp_name *n)
{
	const uint32_t want = SSH_FILEXFER_ATTR_SIZE | SSH_FILEXFER_ATTR_PERMISSIONS |
		SSH_FILEXFER_ATTR_ACMODTIME;
	char name[256];
	struct stat st;

	if (!op->ino || (n->attrs.flags & want) != want || n->namelen >= sizeof(name) ||
	    (n->namelen <= 2 && n->name[0] == '.' && (n->namelen == 1 || n->name[1] == '.')))
		return;
	memcpy(name, n->name, n->namelen);
	name[n->namelen] = 0;
	if (memchr(name, '/', n->namelen))
		return;
	vfs_attr_to_stat(op->v, &n->attrs, 0, &st);
	nodes_prime(op->v->nodes, op->ino, name, &st);
}

static void shadowed(struct op *op)
{
	struct vfs *v = op->v;
	bool first;

	pthread_mutex_lock(&v->lock);
	first = !v->shadow_reported;
	v->shadow_reported = true;
	pthread_mutex_unlock(&v->lock);
	if (first) {
		char *p = nodes_child_path(v->nodes, NODE_ROOT, CTL_NAME);

		log_warn("remote '%s' is hidden by the virtual .control directory",
			 p ? p : CTL_NAME);
		control_event_shadowed(v->ctl, p ? p : CTL_NAME);
		free(p);
	}
}

static void readdir_step(struct op *op, const struct sftp_reply *r, int err)
{
	struct dirbuf *d = dir_of(op);
	struct sftp_reply rr;
	struct sftp_name n;

	if (err) {
		/* The handle died with its session: start the listing over. */
		op->err = op_transport_errno(err);
		if (err == -ESTALE && op->stage++ < 3) {
			for (size_t i = 0; i < d->n; i++)
				free(d->e[i].name);
			d->n = 0;
			op->err = 0;
			buf_reset(&op->rq.pkt);
			if (sftp_enc_path(&op->rq.pkt, SSH_FXP_OPENDIR, 0, op->path) == 0) {
				op_send(op, opendir_done, true);
				return;
			}
		}
		op_log_error(op, op->err ? op->err : EIO, "transport");
		dirbuf_free(d);
		op->data = NULL;
		op_fail(op, op->err ? op->err : EIO);
		return;
	}
	if (r->type == SSH_FXP_STATUS && r->u.status.code == SSH_FX_EOF) {
		close_in_background(op);
		finish_opendir(op);
		return;
	}
	if (r->type == SSH_FXP_STATUS) {
		op->err = reply_errno(r);
		send_bound(op, SSH_FXP_CLOSE, close_step);
		return;
	}
	if (r->type != SSH_FXP_NAME) {
		op->err = EIO;
		send_bound(op, SSH_FXP_CLOSE, close_step);
		return;
	}
	rr = *r;
	while (sftp_name_next(&rr, &n) == 0) {
		mode_t mode;

		/* Our .control hides a remote one at the root: say so once. */
		if (op->ino == NODE_ROOT && n.namelen == strlen(CTL_NAME) &&
		    !memcmp(n.name, CTL_NAME, n.namelen)) {
			shadowed(op);
			continue;
		}
		mode = (n.attrs.flags & SSH_FILEXFER_ATTR_PERMISSIONS) ?
			n.attrs.perm : 0;
		prime(op, &n);

		if (dirbuf_add(d, n.name, n.namelen, mode) < 0) {
			op->err = ENOMEM;
			send_bound(op, SSH_FXP_CLOSE, close_step);
			return;
		}
	}
	send_bound(op, SSH_FXP_READDIR, readdir_step);
}

static void opendir_done(struct op *op, const struct sftp_reply *r, int err)
{
	struct dirbuf *d = dir_of(op);

	if (err) {
		int e = op_transport_errno(err);

		op_log_error(op, e, "transport");
		dirbuf_free(d);
		op->data = NULL;
		op_fail(op, e);
		return;
	}
	if (r->type != SSH_FXP_HANDLE || r->u.handle.len > SFTP_MAX_HANDLE) {
		dirbuf_free(d);
		op->data = NULL;
		op_fail(op, reply_errno(r));
		return;
	}
	memcpy(d->h, r->u.handle.h, r->u.handle.len);
	d->hlen = r->u.handle.len;
	d->conn_idx = op->rq.served_by;
	d->gen = op->rq.served_gen;
	send_bound(op, SSH_FXP_READDIR, readdir_step);
}

static void start_listing(struct op *op, fuse_ino_t ino,
			  struct fuse_file_info *fi)
{
	struct vfs *v = op->v;
	struct dirbuf *d;

	op->fi = *fi;
	op->ino = ino;
	d = calloc(1, sizeof(*d));
	op->data = (char *)d;
	if (d && ino == CTL_DIR_INO) {
		for (int i = 0; control_files[i]; i++)
			if (dirbuf_add(d, (const uint8_t *)control_files[i],
				       strlen(control_files[i]), S_IFREG) < 0) {
				dirbuf_free(d);
				op->data = NULL;
				op_fail(op, ENOMEM);
				return;
			}
		op->ino = 0;
		finish_opendir(op);
		return;
	}
	if (!d || !(op->path = nodes_path(v->nodes, ino)) ||
	    sftp_enc_path(&op->rq.pkt, SSH_FXP_OPENDIR, 0, op->path) < 0) {
		op_fail(op, d && !op->path ? ESTALE : ENOMEM);
		return;
	}
	op_send(op, opendir_done, true);
}

void vfs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct op *op = op_new(fuse_req_userdata(req), req, "opendir");

	if (op)
		start_listing(op, ino, fi);
}

static void reply_entries(fuse_req_t req, const struct dirbuf *d, size_t size,
			  off_t off)
{
	char *buf = malloc(size);
	size_t used = 0;

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	for (size_t i = (size_t)off; i < d->n; i++) {
		struct stat st = { .st_ino = FUSE_UNKNOWN_INO,
				   .st_mode = d->e[i].mode };
		size_t need = fuse_add_direntry(req, buf + used, size - used,
						d->e[i].name, &st, (off_t)(i + 1));

		if (need > size - used)
			break;
		used += need;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
}

void vfs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		 struct fuse_file_info *fi)
{
	struct vfs *v = fuse_req_userdata(req);
	struct dirbuf *d = handles_get(v->dirs, fi->fh);
	struct op *op;

	if (d) {
		reply_entries(req, d, size, off);
		return;
	}
	/* Opened under a daemon that died: list again. */
	if (!(op = op_new(v, req, "readdir")))
		return;
	op->flags = LIST_FOR_READDIR;
	op->off = (uint64_t)off;
	op->size = size;
	start_listing(op, ino, fi);
}

void vfs_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct vfs *v = fuse_req_userdata(req);

	dirbuf_free(handles_take(v->dirs, fi->fh));
	fuse_reply_err(req, 0);
}

void vfs_free_dirbuf(void *d)
{
	dirbuf_free(d);
}
