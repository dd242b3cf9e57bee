/*
 * mounttab: the mounts at or below a root, read from the kernel's mount
 * table (/proc/self/mountinfo) with libmount.
 *
 * Reading the table never touches the mounts themselves, so it is safe
 * while a mount is stale or hung: nothing here calls stat(2) on a target.
 * Matching is lexical on the canonical paths the kernel reports, which is
 * why callers pass a root that is already absolute and normalised (see
 * mt_path_normalize()).
 *
 * Entries are kept in mountinfo order (the order the kernel lists them,
 * parents before children, later mounts on the same target after earlier
 * ones). Two sorts give the orders recovery needs: deepest first for
 * unmounting, shallowest first for mounting.
 *
 * A zeroed `struct mounttab` (MOUNTTAB_INIT) is empty and always safe to
 * release. Not thread-safe: one owner at a time.
 */
#ifndef STEADYFS_MOUNTTAB_H
#define STEADYFS_MOUNTTAB_H

#include <stddef.h>
#include <sys/types.h>

/* The fstype of a steadyfs mount as the kernel lists it. */
#define MT_FSTYPE_STEADYFS "fuse.steadyfs"

struct mount_entry {
	char *target;         /* mountpoint, canonical absolute path */
	char *fstype;         /* e.g. "fuse.sshfs", "tmpfs"; never NULL ("" if unknown) */
	char *source;         /* e.g. "user@host:/dir"; never NULL ("" if none) */
	char *root;           /* the mount's root within its filesystem: "/" for
				* a whole mount, "/j1" for a bind of a subfolder
				* (never NULL) */
	char *super_opts;     /* the superblock's options (mountinfo's last
				* field, e.g. "rw,user_id=0,group_id=0"); never NULL */
	unsigned int major;   /* st_dev of the mount's root, as in mountinfo */
	unsigned int minor;
	dev_t dev;            /* makedev(major, minor) */
	int id;               /* mount id (first mountinfo field) */
	int parent_id;        /* parent mount id */
	int depth;            /* path components in target: "/" 0, "/a/b" 2 */
	int shadowed;         /* 1 if a later mount sits on the same target */
	size_t order;         /* position in mountinfo order (ties in sorts) */
};

struct mounttab {
	struct mount_entry *v;
	size_t n;
};
#define MOUNTTAB_INIT {0}

/*
 * Loads every mount whose target is `root` or lies below it (`root` "/"
 * means all). `root` must be absolute and normalised; `mountinfo` names
 * the file to read (NULL: /proc/self/mountinfo; tests pass a fixture).
 * Returns 0, or -1 with a one-line reason in `err`; `mt` is then empty.
 * `mt` must be MOUNTTAB_INIT or released.
 */
int mounttab_load(struct mounttab *mt, const char *root, const char *mountinfo,
		  char *err, size_t errsz);
/* Frees every entry; leaves `mt` as MOUNTTAB_INIT. */
void mounttab_release(struct mounttab *mt);

/* Sorts by depth, deepest first; equal depths keep reverse table order, so
 * the top of a stack of mounts on one target comes first (unmount order). */
void mounttab_sort_deepest_first(struct mounttab *mt);
/* Sorts by depth, shallowest first; equal depths keep table order (mount
 * order). */
void mounttab_sort_shallowest_first(struct mounttab *mt);

/* The visible (topmost) mount whose target is exactly `path`, or NULL. */
const struct mount_entry *mounttab_find(const struct mounttab *mt, const char *path);
/* The visible mount that contains `path`: the one with the longest target
 * that is `path` or a prefix directory of it. NULL if none was loaded. */
const struct mount_entry *mounttab_containing(const struct mounttab *mt, const char *path);
/* The visible mount with device number `dev`, or NULL. */
const struct mount_entry *mounttab_find_dev(const struct mounttab *mt, dev_t dev);

/* 1 if `e` is a steadyfs mount (fstype fuse.steadyfs). */
int mount_is_steadyfs(const struct mount_entry *e);
/* 1 if `e`'s fstype is a FUSE one ("fuse", "fuse.*", "fuseblk"). */
int mount_is_fuse(const struct mount_entry *e);
/* The uid a FUSE mount was made by: the kernel's `user_id=` super option
 * (0 for a mount root made; any user can make one with a setuid
 * fusermount3). -1 when `e` is not FUSE or the option is absent. */
long mount_fuse_user(const struct mount_entry *e);

/*
 * The device of the topmost mount of type `fstype` on exactly `target`
 * in /proc/self/mountinfo (reads the table, never touches the mount, so
 * it is safe on a hung one). Returns 0 with *dev set, or -1 when there is
 * none (errno ENOENT) or the table cannot be read.
 */
int mounttab_device_of(const char *target, const char *fstype, dev_t *dev);
/* 1 if any mount in `mountinfo` (NULL: /proc/self/mountinfo; a process's
 * /proc/PID/mountinfo) has device `dev` and fstype `fstype` (NULL: any),
 * 0 if none, -1 unreadable. */
int mounttab_has_dev(const char *mountinfo, dev_t dev, const char *fstype);

/* 1 if `path` is `root` or lies below it, comparing whole components
 * ("/a/bc" is not below "/a/b"). Both must be normalised. */
int mt_path_within(const char *path, const char *root);
/* Path components in a normalised path: "/" 0, "/a" 1, "/a/b" 2. */
int mt_path_depth(const char *path);
/*
 * Writes `in` as an absolute normalised path into `out` without touching
 * the filesystem: a relative path is joined to `cwd` (NULL: getcwd()),
 * "//" and "." components are dropped, ".." removes the previous
 * component, and no trailing "/" is left except for "/". Symlinks are not
 * resolved. Returns 0, or -1 with errno ENAMETOOLONG or the getcwd error.
 */
int mt_path_normalize(const char *in, const char *cwd, char *out, size_t outsz);

#endif
