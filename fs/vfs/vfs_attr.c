/*
 * vfs_attr: attributes and extensions as the handlers see them: SFTP
 * attributes mapped to a struct stat (uid=, gid=, umask=, idmap=user;
 * a size raised to what writers queued), entries replied to lookups,
 * the other names of a file refreshed after a change, and which
 * extensions the server has (an advertised one refused at use is
 * treated as missing from then on, logged once).
 */

#include "vfs.h"
#include "vfs_int.h"

#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bdi.h"
#include "clock.h"
#include "handles.h"
#include "ksvalid.h"
#include "moving.h"
#include "log.h"
#include "takeover.h"

void vfs_adjust_size(struct vfs *v, uint64_t ino, struct stat *st)
{
	uint64_t end;

	if (S_ISREG(st->st_mode) && nodes_end_get(v->nodes, ino, &end) &&
	    (off_t)end > st->st_size) {
		st->st_size = (off_t)end;
		st->st_blocks = (blkcnt_t)((end + 511) / 512);
	}
}

/* Hard links made through the mount (nodes_twins) a hidden node's nlink
 * looks at. */
#define NLINK_TWINS_MAX 16u

/*
 * A hidden node lost its name, but the file may still have another: a
 * twin (a hard link made through the mount) that is named and not hidden
 * itself. Then fstat shows nlink 1, as a local disk (nlink 0 reads as
 * "deleted" to tail -F and log shippers).
 */
static bool still_named_elsewhere(struct vfs *v, uint64_t ino)
{
	uint64_t ids[NLINK_TWINS_MAX];
	size_t n = nodes_twins(v->nodes, ino, ids, NLINK_TWINS_MAX);

	for (size_t i = 0; i < n; i++) {
		char *path;

		if (ids[i] == ino || nodes_is_hidden(v->nodes, ids[i]))
			continue;
		path = nodes_path(v->nodes, ids[i]);
		free(path);
		if (path)
			return true;
	}
	return false;
}

void vfs_attr_to_stat(struct vfs *v, const struct sftp_attrs *a, uint64_t ino,
		      struct stat *st)
{
	const struct steadyfs_opts *o = v->o;

	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_nlink = 1;
	st->st_blksize = 4096;
	if (a->flags & SSH_FILEXFER_ATTR_SIZE) {
		st->st_size = (off_t)a->size;
		st->st_blocks = (blkcnt_t)((a->size + 511) / 512);
	}
	if (a->flags & SSH_FILEXFER_ATTR_PERMISSIONS)
		st->st_mode = a->perm;
	else
		st->st_mode = S_IFREG | 0644;
	if (S_ISDIR(st->st_mode))
		st->st_nlink = 2;
	else if (nodes_is_hidden(v->nodes, ino) && !still_named_elsewhere(v, ino))
		st->st_nlink = 0;  /* unlinked while open (hidden.c) */
	if (a->flags & SSH_FILEXFER_ATTR_UIDGID) {
		st->st_uid = a->uid;
		st->st_gid = a->gid;
		if (o->idmap_user && a->uid == v->remote_uid)
			st->st_uid = getuid();
		if (o->idmap_user && a->gid == v->remote_gid)
			st->st_gid = getgid();
	}
	if (o->uid_set)
		st->st_uid = o->uid;
	if (o->gid_set)
		st->st_gid = o->gid;
	if (o->umask_set)
		st->st_mode &= ~(o->umask & 07777);
	if (a->flags & SSH_FILEXFER_ATTR_ACMODTIME) {
		st->st_atime = a->atime;
		st->st_mtime = a->mtime;
		st->st_ctime = a->mtime;
	}
}

void vfs_fill_entry(struct vfs *v, struct fuse_entry_param *e, uint64_t ino,
		    const struct stat *st)
{
	memset(e, 0, sizeof(*e));
	e->ino = ino;
	e->attr = *st;
	e->attr.st_ino = ino;
	e->attr_timeout = v->o->attr_timeout;
	e->entry_timeout = v->o->entry_timeout;
}

void vfs_reply_entry(struct op *op, const struct sftp_attrs *a)
{
	struct vfs *v = op->v;
	struct fuse_entry_param e;
	struct stat st;
	uint64_t id = nodes_ref(v->nodes, op->parent, op->leaf);

	if (!id) {
		op_fail(op, ENOMEM);
		return;
	}
	vfs_attr_to_stat(v, a, id, &st);
	vfs_adjust_size(v, id, &st);
	nodes_set_attr(v->nodes, id, &st);
	vfs_fill_entry(v, &e, id, &st);
	if (fuse_reply_entry(op->req, &e) != 0)
		nodes_forget(v->nodes, id, 1);
	op->req = NULL;
	op_free(op);
}

/* Most other names of one file made stale per change; more are left to
 * their attr_timeout. */
#define LINK_PEERS_MAX 16

void vfs_links_changed(struct vfs *v, uint64_t ino)
{
	uint64_t ids[LINK_PEERS_MAX];
	size_t n = nodes_link_peers(v->nodes, ino, ids, LINK_PEERS_MAX);

	for (size_t i = 0; i < n && v->se; i++) {
		/* Attributes only (a negative offset): the kernel takes no
		 * page lock for that, so it is safe from a session thread
		 * while calls on that inode wait. -ENOENT: the kernel holds
		 * no inode for that name, nothing to refresh. */
		int rc = fuse_lowlevel_notify_inval_inode(v->se, ids[i], -1, 0);

		if (rc < 0 && rc != -ENOENT)
			log_warn("refreshing the attributes of another name of a changed file failed: %s",
				 strerror(-rc));
	}
}

/* The server's extensions minus those refused at use; false when no
 * session has connected yet (nothing is known). */
static bool known_exts(struct vfs *v, uint32_t *exts)
{
	struct conn_server s;
	uint32_t refused;

	pool_server(v->pool, &s);
	pthread_mutex_lock(&v->lock);
	refused = v->refused_exts;
	pthread_mutex_unlock(&v->lock);
	*exts = s.exts & ~refused;
	return s.max_packet != 0;
}

uint32_t vfs_exts(struct vfs *v)
{
	uint32_t exts;

	known_exts(v, &exts);
	return exts;
}

bool vfs_ext_refused(struct vfs *v, uint32_t ext, const struct sftp_reply *r)
{
	/* Only "unsupported" says the extension is missing. Any other
	 * refusal, a permission denied included, is about this call (a link
	 * into a folder the server may not write): its errno is the answer. */
	if (r->type != SSH_FXP_STATUS ||
	    r->u.status.code != SSH_FX_OP_UNSUPPORTED)
		return false;
	pthread_mutex_lock(&v->lock);
	v->refused_exts |= ext;
	pthread_mutex_unlock(&v->lock);
	vfs_missing_ext(v, ext);
	return true;
}

bool vfs_missing_ext(struct vfs *v, uint32_t ext)
{
	uint32_t exts;
	bool log_it;

	/* Nothing is known before a session connected (a daemon restarted
	 * during an outage): use the extension; a refusal is handled where
	 * it is used. */
	if (!known_exts(v, &exts) || (exts & ext))
		return false;
	pthread_mutex_lock(&v->lock);
	log_it = !(v->missing_exts_logged & ext);
	v->missing_exts_logged |= ext;
	pthread_mutex_unlock(&v->lock);
	if (log_it) {
		log_warn("server lacks %s: using the documented fallback",
			 sftp_ext_name(ext));
		control_note_missing_ext(v->ctl, ext);
	}
	return true;
}
