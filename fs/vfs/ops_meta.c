/*
 * ops_meta: lookup, forget, getattr, setattr, readlink and statfs: the
 * calls that read or change a name's attributes, answered from the node
 * table's cache where it is fresh enough. The calls that make or remove
 * names are in ops_names.c, rename in ops_rename.c (meta_int.h).
 */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "moving.h"
#include "vfs_int.h"

#include "meta_int.h"

struct op *meta_name_op(fuse_req_t req, fuse_ino_t parent, const char *name,
		   const char *opname)
{
	struct vfs *v = vfs_of(req);
	struct op *op;
	int err;

	if (strlen(name) > NAME_MAX_BYTES) {
		fuse_reply_err(req, ENAMETOOLONG);
		return NULL;
	}
	/* .control/ is read-only and cannot be replaced or removed. */
	if (strcmp(opname, "lookup") && ctl_protected(parent, name)) {
		fuse_reply_err(req, EPERM);
		return NULL;
	}
	if (!(op = op_new(v, req, opname)))
		return NULL;
	op->parent = parent;
	if (!(op->leaf = strdup(name))) {
		op_fail(op, ENOMEM);
		return NULL;
	}
	/* An unknown parent: the name is not there (as before). */
	if ((err = nodes_path_get(v->nodes, parent, name, &op->path))) {
		op_fail(op, err == ESTALE ? ENOENT : err);
		return NULL;
	}
	return op;
}

/* Takes a lookup reference on (parent, leaf) if it is still node `id`
 * (it may have been pruned or renamed in between). */
static bool ref_same(struct vfs *v, struct op *op, uint64_t id)
{
	uint64_t got = nodes_ref(v->nodes, op->parent, op->leaf);

	if (got == id)
		return true;
	if (got)
		nodes_forget(v->nodes, got, 1);
	return false;
}

/* Answers from attributes cached no longer than max_age_ns ago (during
 * an outage: any age); false (nothing sent) when there are none. */
static bool lookup_from_cache(struct op *op, uint64_t max_age_ns)
{
	struct vfs *v = op->v;
	struct fuse_entry_param e;
	struct stat st;
	uint64_t id = nodes_find(v->nodes, op->parent, op->leaf);

	if (!id || !nodes_get_fresh_attr(v->nodes, id, max_age_ns, &st) ||
	    !ref_same(v, op, id))
		return false;
	vfs_adjust_size(v, id, &st);
	vfs_fill_entry(v, &e, id, &st);
	if (max_age_ns == UINT64_MAX)  /* outage: let the kernel ask again */
		e.attr_timeout = e.entry_timeout = 0;
	if (fuse_reply_entry(op->req, &e) != 0)
		nodes_forget(v->nodes, id, 1);
	op->req = NULL;
	op_free(op);
	return true;
}

static void lookup_cached(struct op *op, int err)
{
	if (!lookup_from_cache(op, UINT64_MAX))
		fail_transport(op, err);
}

/* A name the server says is not there: with negative_timeout, an entry
 * without an inode, which the kernel keeps as a negative dentry for that
 * long (no LOOKUP for the probes of a build tool or of open(O_CREAT)).
 * The kernel drops or replaces that dentry itself when the name is made
 * through the mount (create, mkdir, symlink, link, rename onto it); a
 * name made on the server by another writer shows once it expires, or at
 * the next readdirplus of the folder. */
static void lookup_absent(struct op *op)
{
	struct fuse_entry_param e;

	if (op->v->o->negative_timeout <= 0) {
		op_fail(op, ENOENT);
		return;
	}
	memset(&e, 0, sizeof(e));
	e.ino = 0;
	e.entry_timeout = op->v->o->negative_timeout;
	op->result = ENOENT;
	fuse_reply_entry(op->req, &e);
	op->req = NULL;
	op_free(op);
}

static void lookup_done(struct op *op, const struct sftp_attrs *a, int err)
{
	/* No session up: a cached entry answers now, else wait for one. */
	if (err == EHOSTDOWN) {
		if (lookup_from_cache(op, UINT64_MAX))
			return;
		op->rq.cache_ok = false;
		op_stat_path(op, op->path, lookup_done);
		return;
	}
	if (a)
		vfs_reply_entry(op, a);
	else if (err == EIO || err == EAGAIN)
		lookup_cached(op, -ETIMEDOUT);
	else if (err == ENOENT)
		lookup_absent(op);
	else
		op_fail(op, err);
}

void vfs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct op *op;

	if (ctl_lookup(vfs_of(req), req, parent, name))
		return;
	if (hidden_ours(vfs_of(req), parent, name, strlen(name))) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	op = meta_name_op(req, parent, name, "lookup");

	if (!op)
		return;
	/* Attributes a listing returned within entry_timeout answer at
	 * once (ls -l); during an outage any recently seen entry does;
	 * anything else waits for a session, up to op_timeout. */
	if (lookup_from_cache(op, clock_s_to_ns(op->v->o->entry_timeout)) ||
	    (pool_state(op->v->pool) == POOL_DOWN &&
	     lookup_from_cache(op, UINT64_MAX)))
		return;
	op->rq.cache_ok = true;
	op_stat_path(op, op->path, lookup_done);
}

void vfs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	nodes_forget(vfs_of(req)->nodes, ino, nlookup);
	fuse_reply_none(req);
}

void vfs_forget_multi(fuse_req_t req, size_t count,
		      struct fuse_forget_data *forgets)
{
	struct vfs *v = vfs_of(req);

	for (size_t i = 0; i < count; i++)
		nodes_forget(v->nodes, forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

/* Answers from cached attributes (or a plausible root); false when none. */
static bool attr_from_cache(struct op *op)
{
	struct vfs *v = op->v;
	struct stat st;

	if (nodes_get_attr(v->nodes, op->ino, &st)) {
		vfs_adjust_size(v, op->ino, &st);
		fuse_reply_attr(op->req, &st, 0);
	} else if (op->ino == NODE_ROOT) {
		memset(&st, 0, sizeof(st));
		st.st_ino = NODE_ROOT;
		st.st_mode = S_IFDIR | 0755;
		st.st_nlink = 2;
		st.st_uid = v->o->uid_set ? v->o->uid : getuid();
		st.st_gid = v->o->gid_set ? v->o->gid : getgid();
		fuse_reply_attr(op->req, &st, 0);
	} else {
		return false;
	}
	op->req = NULL;
	op_free(op);
	return true;
}

/* Replies with cached attributes, or a plausible root, or the error. */
static void reply_cached_attr(struct op *op, int err)
{
	if (!attr_from_cache(op))
		fail_transport(op, err);
}

static void getattr_done(struct op *op, const struct sftp_attrs *a, int err)
{
	struct vfs *v = op->v;
	struct stat st;

	if (!a && err == EHOSTDOWN) {
		/* No session up: cached attributes answer now, else wait. */
		if (attr_from_cache(op))
			return;
		op->rq.cache_ok = false;
		op_stat_path(op, op->path, getattr_done);
		return;
	}
	if (!a) {
		if (err == EIO || err == EAGAIN)
			reply_cached_attr(op, -ETIMEDOUT);
		else
			op_fail(op, err);
		return;
	}
	vfs_attr_to_stat(v, a, op->ino, &st);
	if (op->ino == NODE_ROOT && v->remote_uid == (uid_t)-1 &&
	    (a->flags & SSH_FILEXFER_ATTR_UIDGID)) {
		v->remote_uid = a->uid;
		v->remote_gid = a->gid;
		vfs_attr_to_stat(v, a, op->ino, &st);
	}
	vfs_adjust_size(v, op->ino, &st);
	nodes_set_attr(v->nodes, op->ino, &st);
	fuse_reply_attr(op->req, &st, v->o->attr_timeout);
	op->req = NULL;
	op_free(op);
}

void vfs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct vfs *v = vfs_of(req);
	struct op *op;
	int err;

	if (ctl_getattr(v, req, ino) || !(op = op_new(v, req, "getattr")))
		return;
	op->ino = ino;
	/* During an outage cached attributes answer at once (ls -la never
	 * prints ?????????); without a cache the call waits for a session. */
	if (pool_state(v->pool) == POOL_DOWN && attr_from_cache(op))
		return;
	if ((err = nodes_path_get(v->nodes, ino, NULL, &op->path))) {
		if (err == ESTALE)
			reply_cached_attr(op, -ESTALE);
		else
			op_fail(op, err);
		return;
	}
	op->rq.cache_ok = true;
	op_stat_path(op, op->path, getattr_done);
}

static void setattr_done(struct op *op, const struct sftp_reply *r, int err)
{
	if (err) {
		/* It may have been done: the "same file?" rule keeps taking
		 * both sizes and no longer compares mtimes (setstat_send). */
		fail_transport(op, err);
		return;
	}
	if (r->type != SSH_FXP_STATUS || r->u.status.code != SSH_FX_OK) {
		op_fail(op, op_reply_errno(r));
		return;
	}
	if (op->to_set & FUSE_SET_ATTR_SIZE) {
		nodes_end_set(op->v->nodes, op->ino, (uint64_t)op->st.st_size);
		nodes_ident_truncated(op->v->nodes, op->ino, (uint64_t)op->st.st_size);
		fh_ino_changed(op->v, op->ino);
	}
	/* A time we set: the "same file?" rule no longer compares mtimes. */
	if (op->to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW))
		nodes_ident_touched(op->v->nodes, op->ino);
	vfs_links_changed(op->v, op->ino);
	op_stat_path(op, op->path, getattr_done);
}

/* Whether this setattr changes what the "same file?" rule compares. */
static bool changes_ident(const struct op *op)
{
	return op->to_set & (FUSE_SET_ATTR_SIZE | FUSE_SET_ATTR_MTIME |
			     FUSE_SET_ATTR_MTIME_NOW);
}

static void setstat_done(struct op *op, const struct sftp_reply *r, int err)
{
	nodes_ident_change(op->v->nodes, op->ino, false);
	setattr_done(op, r, err);
}

static void build_setattr(struct op *op, struct sftp_attrs *a)
{
	struct vfs *v = op->v;
	const struct stat *want = &op->st;
	struct stat cur;
	bool have = nodes_get_attr(v->nodes, op->ino, &cur);
	int s = op->to_set;

	memset(a, 0, sizeof(*a));
	if (s & FUSE_SET_ATTR_MODE) {
		a->flags |= SSH_FILEXFER_ATTR_PERMISSIONS;
		a->perm = want->st_mode & 07777;
	}
	if (s & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
		a->flags |= SSH_FILEXFER_ATTR_UIDGID;
		a->uid = (s & FUSE_SET_ATTR_UID) ? want->st_uid : (have ? cur.st_uid : (uid_t)-1);
		a->gid = (s & FUSE_SET_ATTR_GID) ? want->st_gid : (have ? cur.st_gid : (gid_t)-1);
		if (v->o->idmap_user && a->uid == getuid())
			a->uid = v->remote_uid;
		if (v->o->idmap_user && a->gid == getgid())
			a->gid = v->remote_gid;
	}
	if (s & FUSE_SET_ATTR_SIZE) {
		a->flags |= SSH_FILEXFER_ATTR_SIZE;
		a->size = (uint64_t)want->st_size;
	}
	if (s & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME |
		 FUSE_SET_ATTR_ATIME_NOW | FUSE_SET_ATTR_MTIME_NOW)) {
		/* v3 sets both times together: keep the one not asked for. */
		uint32_t now = (uint32_t)clock_wall();

		a->flags |= SSH_FILEXFER_ATTR_ACMODTIME;
		a->atime = (s & FUSE_SET_ATTR_ATIME_NOW) ? now :
			(s & FUSE_SET_ATTR_ATIME) ? (uint32_t)want->st_atime :
			have ? (uint32_t)cur.st_atime : now;
		a->mtime = (s & FUSE_SET_ATTR_MTIME_NOW) ? now :
			(s & FUSE_SET_ATTR_MTIME) ? (uint32_t)want->st_mtime :
			have ? (uint32_t)cur.st_mtime : now;
	}
}

static void setstat_send(struct op *op)
{
	struct sftp_attrs a;

	build_setattr(op, &a);
	buf_reset(&op->rq.pkt);
	if (sftp_enc_setstat(&op->rq.pkt, 0, op->path, &a) < 0) {
		op_fail(op, ENOMEM);
		return;
	}
	/* From now until the reply the server may hold the new size or
	 * mtime: a handle reopened meanwhile (on another session) must
	 * take them as its file's (identity.h). */
	if (op->to_set & FUSE_SET_ATTR_SIZE)
		nodes_ident_maybe_truncated(op->v->nodes, op->ino,
					    (uint64_t)op->st.st_size);
	if (op->to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW))
		nodes_ident_touched(op->v->nodes, op->ino);
	/* Setting the same attributes twice has the same effect. */
	if (changes_ident(op)) {
		nodes_ident_change(op->v->nodes, op->ino, true);
		op_send(op, setstat_done, true);
	} else {
		op_send(op, setattr_done, true);
	}
}

static void lsetstat_done(struct op *op, const struct sftp_reply *r, int err)
{
	if (!err && vfs_ext_refused(op->v, SFTP_EXT_LSETSTAT, r)) {
		op_fail(op, EOPNOTSUPP);
		return;
	}
	setattr_done(op, r, err);
}

/*
 * A symlink's own attributes (utimensat or fchownat with
 * AT_SYMLINK_NOFOLLOW: touch -h, chown -h, cp -a, tar -x): SETSTAT
 * follows links on OpenSSH's server and would change the target, so
 * lsetstat@openssh.com, and without it EOPNOTSUPP (never the target). A
 * mode is EOPNOTSUPP as on Linux, which has no mode for a symlink.
 */
static void lsetstat_send(struct op *op)
{
	struct sftp_attrs a;

	if ((op->to_set & FUSE_SET_ATTR_MODE) ||
	    vfs_missing_ext(op->v, SFTP_EXT_LSETSTAT)) {
		op_fail(op, EOPNOTSUPP);
		return;
	}
	build_setattr(op, &a);
	buf_reset(&op->rq.pkt);
	if (sftp_enc_lsetstat(&op->rq.pkt, 0, op->path, &a) < 0) {
		op_fail(op, ENOMEM);
		return;
	}
	op_send(op, lsetstat_done, true);
}

static void setattr_typed(struct op *op, mode_t mode)
{
	if (S_ISLNK(mode))
		lsetstat_send(op);
	else
		setstat_send(op);
}

/* No attributes cached: the server says what the node is. */
static void setattr_stat_done(struct op *op, const struct sftp_attrs *a, int err)
{
	if (!a) {
		if (err == EIO || err == EAGAIN)
			fail_transport(op, err == EAGAIN ? -EAGAIN : -ETIMEDOUT);
		else
			op_fail(op, err);
		return;
	}
	setattr_typed(op, (a->flags & SSH_FILEXFER_ATTR_PERMISSIONS) ? a->perm :
		      S_IFREG);
}

static void setattr_send(struct op *op, const struct sftp_attrs *unused, int err)
{
	struct stat cur;

	/* A size is never a symlink's (the kernel follows links to
	 * truncate); anything else depends on the node's type. */
	if (op->to_set & FUSE_SET_ATTR_SIZE)
		setstat_send(op);
	else if (nodes_get_attr(op->v->nodes, op->ino, &cur))
		setattr_typed(op, cur.st_mode);
	else
		op_stat_path(op, op->path, setattr_stat_done);
}

/* An mtime set on a folder: the removal of a hidden file in it (its last
 * descriptor just closed) would move it to now when it lands later. */
static void setattr_unhidden(struct op *op, const struct sftp_attrs *unused, int err)
{
	if (op->to_set & FUSE_SET_ATTR_MTIME)
		hidden_when_removed(op, setattr_send);
	else
		setattr_send(op, NULL, 0);
}

void vfs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		 int to_set, struct fuse_file_info *fi)
{
	struct vfs *v = vfs_of(req);
	struct op *op;
	int err;

	if (is_ctl_ino(ino)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	if (!(op = op_new(v, req, "setattr")))
		return;
	op->ino = ino;
	op->st = *attr;
	op->to_set = to_set;
	if ((err = nodes_path_get(v->nodes, ino, NULL, &op->path))) {
		op_fail(op, err);
		return;
	}
	/* A change that writes queued before it would undo when they land
	 * later waits for them: one past a new end grows the file back, any
	 * one sets the mtime to now (cp -p, tar -x, rsync -t), and the
	 * server drops a setuid or setgid bit at a write. */
	if ((to_set & (FUSE_SET_ATTR_SIZE | FUSE_SET_ATTR_MTIME |
		       FUSE_SET_ATTR_MTIME_NOW)) ||
	    ((to_set & FUSE_SET_ATTR_MODE) && (attr->st_mode & (S_ISUID | S_ISGID))))
		fh_when_ino_drained(op, setattr_unhidden);
	else
		setattr_send(op, NULL, 0);
}

static void readlink_done(struct op *op, const struct sftp_reply *r, int err)
{
	struct sftp_reply rr;
	struct sftp_name n;
	char *s;

	if (err) {
		fail_transport(op, err);
		return;
	}
	if (r->type != SSH_FXP_NAME) {
		op_fail(op, op_reply_errno(r));
		return;
	}
	rr = *r;
	if (sftp_name_next(&rr, &n) < 0 || !(s = strndup((const char *)n.name, n.namelen))) {
		op_fail(op, EIO);
		return;
	}
	fuse_reply_readlink(op->req, s);
	free(s);
	op->req = NULL;
	op_free(op);
}

void vfs_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct vfs *v = vfs_of(req);
	struct op *op = op_new(v, req, "readlink");
	int err;

	if (!op)
		return;
	if ((err = nodes_path_get(v->nodes, ino, NULL, &op->path)) ||
	    sftp_enc_path(&op->rq.pkt, SSH_FXP_READLINK, 0, op->path) < 0) {
		op_fail(op, err ? err : ENOMEM);
		return;
	}
	op_send(op, readlink_done, true);
}

static void reply_default_statfs(fuse_req_t req)
{
	struct statvfs s = { .f_bsize = 4096, .f_frsize = 4096, .f_namemax = 255 };

	fuse_reply_statfs(req, &s);
}

static void statfs_done(struct op *op, const struct sftp_reply *r, int err)
{
	struct sftp_statvfs sv;
	struct statvfs s;

	if (err || r->type != SSH_FXP_EXTENDED_REPLY ||
	    sftp_dec_statvfs(r->u.ext.p, r->u.ext.len, &sv) < 0) {
		/* df must not fail during an outage: zeros say "unknown". */
		reply_default_statfs(op->req);
		op->req = NULL;
		op_free(op);
		return;
	}
	memset(&s, 0, sizeof(s));
	s.f_bsize = sv.bsize;
	s.f_frsize = sv.frsize;
	s.f_blocks = sv.blocks;
	s.f_bfree = sv.bfree;
	s.f_bavail = sv.bavail;
	s.f_files = sv.files;
	s.f_ffree = sv.ffree;
	s.f_favail = sv.favail;
	s.f_namemax = sv.namemax;
	fuse_reply_statfs(op->req, &s);
	op->req = NULL;
	op_free(op);
}

void vfs_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct vfs *v = vfs_of(req);
	struct op *op;

	if (vfs_missing_ext(v, SFTP_EXT_STATVFS)) {
		reply_default_statfs(req);
		return;
	}
	if (!(op = op_new(v, req, "statfs")))
		return;
	op->path = nodes_path(v->nodes, NODE_ROOT);
	if (!op->path || sftp_enc_statvfs(&op->rq.pkt, 0, op->path) < 0) {
		op_fail(op, ENOMEM);
		return;
	}
	op_send(op, statfs_done, true);
}
