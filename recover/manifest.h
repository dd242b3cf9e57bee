/*
 * manifest: the mounts that should exist under ROOT, read from an
 * fstab-format file with libmount (mnt_table_parse_fstab), so quoting,
 * octal escapes and comments follow fstab(5) exactly.
 *
 * Every entry's target must be an absolute path at or below ROOT; one
 * that is not is refused (the whole manifest is then rejected), because
 * the recovery must never mount anything outside the tree it owns.
 * Targets are normalised lexically (no symlink resolution: the kernel's
 * mount table, which entries are compared with, lists canonical paths).
 *
 * The manifest also says which mounts are ours to act on: a stale or hung
 * mount is touched only when some entry lists its source and fstype.
 *
 * A zeroed `struct manifest` (MANIFEST_INIT) is empty and safe to release.
 */
#ifndef STEADYFS_RECOVER_MANIFEST_H
#define STEADYFS_RECOVER_MANIFEST_H

#include <stddef.h>

struct manifest_entry {
	char *source;    /* as written ("user@host:/dir", "/srv/base/job1") */
	char *target;    /* normalised absolute path, at or below ROOT */
	char *fstype;    /* "none" for a bind mount; never NULL */
	char *options;   /* fs and VFS options as written; never NULL ("" if none) */
	int line;        /* position in the file (1-based entry number) */
	int depth;       /* path components of target */
	int bind;        /* 1: the options include "bind" or "rbind" */
	int noauto;      /* 1: "noauto", or a fuse.steadyfs entry: its
			  * source and type are ours to recover (unmount
			  * when stale or hung), but it is never mounted by
			  * recovery (as mount -a skips it) */
};

struct manifest {
	struct manifest_entry *v;
	size_t n;
};
#define MANIFEST_INIT {0}

/*
 * Loads `path` (a file, or a directory of *.fstab files as libmount
 * allows). `root` must be absolute and normalised. Returns 0, or -1 with a
 * one-line reason in `err` (unreadable, a line libmount cannot parse, an
 * entry without a target, a target outside `root`, a duplicate target);
 * `m` is then empty. `m` must be MANIFEST_INIT or released.
 */
int manifest_load(struct manifest *m, const char *path, const char *root,
		  char *err, size_t errsz);
void manifest_release(struct manifest *m);

/* The entry whose target is exactly `target`, or NULL. */
const struct manifest_entry *manifest_find(const struct manifest *m, const char *target);

#endif
