/*
 * ops_ctl: the virtual `.control/` directory at the mount root. Its files
 * are rendered by control.c when opened (a fresh, self-consistent snapshot
 * per open) and served from memory with direct I/O, so reading them never
 * waits on the network. Nothing in it is writable.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "handles.h"
#include "vfs_int.h"


/* A rendered file. Referenced by the open file and by each read in
 * progress: the caller may close before fuse_reply_buf() returns. */
struct ctl_snap {
	int refs;
	char *data;
	size_t len;
};

static void snap_put(struct ctl_snap *s)
{
	if (__atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) == 0) {
		free(s->data);
		free(s);
	}
}

static int ctl_index(const char *name)
{
	for (int i = 0; control_files[i]; i++)
		if (!strcmp(control_files[i], name))
			return i;
	return -1;
}

static void ctl_stat(struct vfs *v, uint64_t ino, struct stat *st)
{
	bool shared = v->o->state_group_set;

	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	/* The mirror's rule (statedir.h): the daemon's user alone, or with
	 * state_group=; never the uid=/gid= the files are shown with. The
	 * kernel enforces it: allow_other always comes with
	 * default_permissions. Read-only: no write bits. */
	st->st_uid = getuid();
	st->st_gid = shared ? v->o->state_gid : getgid();
	if (ino == CTL_DIR_INO) {
		st->st_mode = S_IFDIR | (shared ? 0550 : 0500);
		st->st_nlink = 2;
	} else {
		st->st_mode = S_IFREG | (shared ? 0440 : 0400);
		st->st_nlink = 1;
	}
}

static void reply_ctl_entry(struct vfs *v, fuse_req_t req, uint64_t ino)
{
	struct fuse_entry_param e;
	struct stat st;

	ctl_stat(v, ino, &st);
	vfs_fill_entry(v, &e, ino, &st);
	/* Sizes change on every render: never cache. */
	e.attr_timeout = 0;
	fuse_reply_entry(req, &e);
}

bool ctl_protected(fuse_ino_t parent, const char *name)
{
	return is_ctl_ino(parent) ||
	       (parent == NODE_ROOT && !strcmp(name, CTL_NAME));
}

bool ctl_lookup(struct vfs *v, fuse_req_t req, fuse_ino_t parent, const char *name)
{
	int i;

	if (parent == NODE_ROOT && !strcmp(name, CTL_NAME)) {
		reply_ctl_entry(v, req, CTL_DIR_INO);
		return true;
	}
	if (parent != CTL_DIR_INO)
		return false;
	if ((i = ctl_index(name)) < 0)
		fuse_reply_err(req, ENOENT);
	else
		reply_ctl_entry(v, req, CTL_DIR_INO + 1 + (uint64_t)i);
	return true;
}

bool ctl_getattr(struct vfs *v, fuse_req_t req, fuse_ino_t ino)
{
	struct stat st;

	if (!is_ctl_ino(ino))
		return false;
	ctl_stat(v, ino, &st);
	fuse_reply_attr(req, &st, 0);
	return true;
}

/* Renders file `ino` into a new snapshot; -errno on failure. */
static int snap_new(struct vfs *v, fuse_ino_t ino, struct ctl_snap **out)
{
	uint64_t i = ino - CTL_DIR_INO - 1;
	struct ctl_snap *s;
	int rc;

	if (ino == CTL_DIR_INO)
		return -EISDIR;
	if (i >= 5 || !(s = calloc(1, sizeof(*s))))
		return -ENOMEM;
	s->refs = 1;
	if ((rc = control_render(v->ctl, control_files[i], &s->data, &s->len)) < 0) {
		free(s);
		return rc;
	}
	*out = s;
	return 0;
}

bool ctl_open(struct vfs *v, fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct ctl_snap *s;
	int rc;

	if (!is_ctl_ino(ino))
		return false;
	if ((fi->flags & O_ACCMODE) != O_RDONLY) {
		fuse_reply_err(req, EACCES);
		return true;
	}
	if ((rc = snap_new(v, ino, &s)) < 0) {
		fuse_reply_err(req, -rc);
		return true;
	}
	if (!(fi->fh = handles_add(v->snaps, s))) {
		snap_put(s);
		fuse_reply_err(req, ENOMEM);
		return true;
	}
	fi->direct_io = 1;
	if (fuse_reply_open(req, fi) != 0)
		snap_put(handles_take(v->snaps, fi->fh));
	return true;
}

/* The snapshot behind fi->fh with a reference; one opened under a daemon
 * that died is rendered again (the file shows this daemon's state). */
static struct ctl_snap *snap_get(struct vfs *v, fuse_ino_t ino,
				 struct fuse_file_info *fi)
{
	struct ctl_snap *s = handles_get(v->snaps, fi->fh);

	if (!s && snap_new(v, ino, &s) == 0 &&
	    handles_put_at(v->snaps, fi->fh, s) < 0) {
		snap_put(s);
		s = handles_get(v->snaps, fi->fh);
	}
	if (s)
		__atomic_add_fetch(&s->refs, 1, __ATOMIC_ACQ_REL);
	return s;
}

bool ctl_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
	      struct fuse_file_info *fi)
{
	struct ctl_snap *s;

	if (!is_ctl_ino(ino))
		return false;
	if (!(s = snap_get(fuse_req_userdata(req), ino, fi))) {
		fuse_reply_err(req, ENOMEM);
		return true;
	}
	if ((size_t)off >= s->len)
		fuse_reply_buf(req, NULL, 0);
	else
		fuse_reply_buf(req, s->data + off,
			       s->len - (size_t)off < size ? s->len - (size_t)off : size);
	snap_put(s);
	return true;
}

bool ctl_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct vfs *v = fuse_req_userdata(req);
	struct ctl_snap *s;

	if (!is_ctl_ino(ino))
		return false;
	if ((s = handles_take(v->snaps, fi->fh)))
		snap_put(s);
	fuse_reply_err(req, 0);
	return true;
}

void ctl_free_snap(void *s)
{
	snap_put(s);
}
