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

#include "vfs_int.h"

#define CTL_MAGIC 0x5354434cu  /* "STCL": tells a snapshot from an fh */

/* A rendered file. Referenced by the open file and by each read in
 * progress: the caller may close before fuse_reply_buf() returns. */
struct ctl_snap {
	uint32_t magic;
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
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_uid = v->o->uid_set ? v->o->uid : getuid();
	st->st_gid = v->o->gid_set ? v->o->gid : getgid();
	if (ino == CTL_DIR_INO) {
		st->st_mode = S_IFDIR | 0555;
		st->st_nlink = 2;
	} else {
		st->st_mode = S_IFREG | 0444;
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

bool ctl_open(struct vfs *v, fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct ctl_snap *s;
	uint64_t i = ino - CTL_DIR_INO - 1;
	int rc;

	if (!is_ctl_ino(ino))
		return false;
	if ((fi->flags & O_ACCMODE) != O_RDONLY) {
		fuse_reply_err(req, EACCES);
		return true;
	}
	if (ino == CTL_DIR_INO || i >= 5 || !(s = calloc(1, sizeof(*s)))) {
		fuse_reply_err(req, ino == CTL_DIR_INO ? EISDIR : ENOMEM);
		return true;
	}
	s->magic = CTL_MAGIC;
	s->refs = 1;
	rc = control_render(v->ctl, control_files[i], &s->data, &s->len);
	if (rc < 0) {
		free(s);
		fuse_reply_err(req, -rc);
		return true;
	}
	fi->fh = (uint64_t)(uintptr_t)s;
	fi->direct_io = 1;
	if (fuse_reply_open(req, fi) != 0) {
		free(s->data);
		free(s);
	}
	return true;
}

bool ctl_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
	      struct fuse_file_info *fi)
{
	struct ctl_snap *s = (struct ctl_snap *)(uintptr_t)fi->fh;

	if (!is_ctl_ino(ino))
		return false;
	__atomic_add_fetch(&s->refs, 1, __ATOMIC_ACQ_REL);
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
	struct ctl_snap *s = (struct ctl_snap *)(uintptr_t)fi->fh;

	if (!is_ctl_ino(ino))
		return false;
	if (s && s->magic == CTL_MAGIC)
		snap_put(s);
	fuse_reply_err(req, 0);
	return true;
}
