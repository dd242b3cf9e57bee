/*
 * mounttab: the mounts under a root from /proc/self/mountinfo, via
 * libmount. See mounttab.h for the contract; nothing here touches a
 * mountpoint, so it is safe on stale and hung mounts.
 */
#include "mounttab.h"

#include <errno.h>
#include <libmount.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <unistd.h>

void mounttab_release(struct mounttab *mt)
{
	for (size_t i = 0; i < mt->n; i++) {
		free(mt->v[i].target);
		free(mt->v[i].fstype);
		free(mt->v[i].source);
		free(mt->v[i].root);
		free(mt->v[i].super_opts);
	}
	free(mt->v);
	mt->v = NULL;
	mt->n = 0;
}

int mt_path_within(const char *path, const char *root)
{
	size_t n = strlen(root);

	if (strcmp(root, "/") == 0)
		return path[0] == '/';
	return strncmp(path, root, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

int mt_path_depth(const char *p)
{
	int d = 0;

	for (; *p; p++)
		if (*p == '/' && p[1])
			d++;
	return d;
}

/* Copies one libmount fs into `e`; 0 or -1 (ENOMEM). */
static int entry_fill(struct mount_entry *e, struct libmnt_fs *fs)
{
	const char *t = mnt_fs_get_target(fs);
	const char *ty = mnt_fs_get_fstype(fs);
	const char *src = mnt_fs_get_source(fs);
	const char *root = mnt_fs_get_root(fs);
	const char *so = mnt_fs_get_fs_options(fs);
	dev_t dev = mnt_fs_get_devno(fs);

	memset(e, 0, sizeof(*e));
	e->target = strdup(t ? t : "");
	e->fstype = strdup(ty ? ty : "");
	e->source = strdup(src ? src : "");
	e->root = strdup(root ? root : "/");
	e->super_opts = strdup(so ? so : "");
	if (!e->target || !e->fstype || !e->source || !e->root || !e->super_opts) {
		free(e->target);
		free(e->fstype);
		free(e->source);
		free(e->root);
		free(e->super_opts);
		memset(e, 0, sizeof(*e));
		return -1;
	}
	e->dev = dev;
	e->major = major(dev);
	e->minor = minor(dev);
	e->id = mnt_fs_get_id(fs);
	e->parent_id = mnt_fs_get_parent_id(fs);
	e->depth = mt_path_depth(e->target);
	return 0;
}

/* Appends the fs if its target is within `root`; 0 or -1 (ENOMEM). */
static int mounttab_take(struct mounttab *mt, size_t *cap, struct libmnt_fs *fs,
			 const char *root)
{
	const char *t = mnt_fs_get_target(fs);

	if (!t || !mt_path_within(t, root))
		return 0;
	if (mt->n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 16;
		struct mount_entry *v = reallocarray(mt->v, ncap, sizeof(*v));

		if (!v)
			return -1;
		mt->v = v;
		*cap = ncap;
	}
	if (entry_fill(&mt->v[mt->n], fs) < 0)
		return -1;
	mt->v[mt->n].order = mt->n;
	mt->n++;
	return 0;
}

/* A mount is shadowed when a later one in table order has the same target.
 * Quadratic, but tables hold hundreds of mounts, not millions. */
static void mark_shadowed(struct mounttab *mt)
{
	for (size_t i = 0; i < mt->n; i++)
		for (size_t j = i + 1; j < mt->n; j++)
			if (strcmp(mt->v[i].target, mt->v[j].target) == 0) {
				mt->v[i].shadowed = 1;
				break;
			}
}

int mounttab_load(struct mounttab *mt, const char *root, const char *mountinfo,
		  char *err, size_t errsz)
{
	const char *file = mountinfo ? mountinfo : "/proc/self/mountinfo";
	struct libmnt_table *tb;
	struct libmnt_iter *it;
	struct libmnt_fs *fs;
	size_t cap = 0;
	int rc;

	mt->v = NULL;
	mt->n = 0;
	if (root[0] != '/') {
		snprintf(err, errsz, "mount root '%s' is not an absolute path", root);
		return -1;
	}
	tb = mnt_new_table_from_file(file);
	if (!tb) {
		snprintf(err, errsz, "cannot read mount table '%s'", file);
		return -1;
	}
	it = mnt_new_iter(MNT_ITER_FORWARD);
	if (!it) {
		mnt_unref_table(tb);
		snprintf(err, errsz, "cannot read mount table '%s': %s", file, strerror(ENOMEM));
		return -1;
	}
	while ((rc = mnt_table_next_fs(tb, it, &fs)) == 0)
		if (mounttab_take(mt, &cap, fs, root) < 0)
			break;
	mnt_free_iter(it);
	mnt_unref_table(tb);
	if (rc != 1) {  /* 1 is the end of the table; 0 means a take failed */
		mounttab_release(mt);
		snprintf(err, errsz, "cannot read mount table '%s': %s", file,
			 strerror(rc < 0 ? -rc : ENOMEM));
		return -1;
	}
	mark_shadowed(mt);
	return 0;
}

/* The table position decides ties, so both sorts are deterministic and
 * stacked mounts come out in the order the contract gives. */
static int cmp_deepest(const void *a, const void *b)
{
	const struct mount_entry *x = a, *y = b;

	if (x->depth != y->depth)
		return x->depth > y->depth ? -1 : 1;
	return x->order > y->order ? -1 : (x->order < y->order);
}

static int cmp_shallowest(const void *a, const void *b)
{
	const struct mount_entry *x = a, *y = b;

	if (x->depth != y->depth)
		return x->depth < y->depth ? -1 : 1;
	return x->order < y->order ? -1 : (x->order > y->order);
}

void mounttab_sort_deepest_first(struct mounttab *mt)
{
	if (mt->n > 1)
		qsort(mt->v, mt->n, sizeof(*mt->v), cmp_deepest);
}

void mounttab_sort_shallowest_first(struct mounttab *mt)
{
	if (mt->n > 1)
		qsort(mt->v, mt->n, sizeof(*mt->v), cmp_shallowest);
}

const struct mount_entry *mounttab_find(const struct mounttab *mt, const char *path)
{
	for (size_t i = 0; i < mt->n; i++)
		if (!mt->v[i].shadowed && strcmp(mt->v[i].target, path) == 0)
			return &mt->v[i];
	return NULL;
}

const struct mount_entry *mounttab_containing(const struct mounttab *mt, const char *path)
{
	const struct mount_entry *best = NULL;

	for (size_t i = 0; i < mt->n; i++) {
		const struct mount_entry *e = &mt->v[i];

		if (e->shadowed || !mt_path_within(path, e->target))
			continue;
		if (!best || strlen(e->target) > strlen(best->target))
			best = e;
	}
	return best;
}

const struct mount_entry *mounttab_find_dev(const struct mounttab *mt, dev_t dev)
{
	for (size_t i = 0; i < mt->n; i++)
		if (!mt->v[i].shadowed && mt->v[i].dev == dev)
			return &mt->v[i];
	return NULL;
}

int mount_is_steadyfs(const struct mount_entry *e)
{
	return strcmp(e->fstype, MT_FSTYPE_STEADYFS) == 0;
}

int mount_is_fuse(const struct mount_entry *e)
{
	return strcmp(e->fstype, "fuse") == 0 || strcmp(e->fstype, "fuseblk") == 0 ||
	       strncmp(e->fstype, "fuse.", 5) == 0;
}

long mount_fuse_user(const struct mount_entry *e)
{
	char *val = NULL;
	size_t n = 0;
	char num[32], *end;
	long uid;

	if (!mount_is_fuse(e) ||
	    mnt_optstr_get_option(e->super_opts, "user_id", &val, &n) != 0 ||
	    !val || n == 0 || n >= sizeof(num))
		return -1;
	memcpy(num, val, n);
	num[n] = '\0';
	errno = 0;
	uid = strtol(num, &end, 10);
	return errno || *end || uid < 0 ? -1 : uid;
}

int mounttab_device_of(const char *target, const char *fstype, dev_t *dev)
{
	struct mounttab mt = MOUNTTAB_INIT;
	char err[256];
	int found = 0;

	if (mounttab_load(&mt, target, NULL, err, sizeof(err)) < 0)
		return -1;
	/* Table order: a later mount on the same target sits on top. */
	for (size_t i = 0; i < mt.n; i++)
		if (strcmp(mt.v[i].target, target) == 0 &&
		    strcmp(mt.v[i].fstype, fstype) == 0) {
			*dev = mt.v[i].dev;
			found = 1;
		}
	mounttab_release(&mt);
	if (!found)
		errno = ENOENT;
	return found ? 0 : -1;
}

int mounttab_has_dev(const char *mountinfo, dev_t dev, const char *fstype)
{
	struct mounttab mt = MOUNTTAB_INIT;
	char err[256];
	int has = 0;

	if (mounttab_load(&mt, "/", mountinfo, err, sizeof(err)) < 0)
		return -1;
	for (size_t i = 0; i < mt.n && !has; i++)
		has = mt.v[i].dev == dev && (!fstype || !strcmp(mt.v[i].fstype, fstype));
	mounttab_release(&mt);
	return has;
}

/* Appends component [p, p+n) to out (length *len); handles "." and "..". */
static int push_component(char *out, size_t outsz, size_t *len, const char *p, size_t n)
{
	if (n == 0 || (n == 1 && p[0] == '.'))
		return 0;
	if (n == 2 && p[0] == '.' && p[1] == '.') {
		while (*len > 0 && out[*len - 1] != '/')
			(*len)--;
		if (*len > 0)
			(*len)--;  /* the slash before the removed component */
		out[*len] = '\0';
		return 0;
	}
	if (*len + 1 + n + 1 > outsz) {
		errno = ENAMETOOLONG;
		return -1;
	}
	out[(*len)++] = '/';
	memcpy(out + *len, p, n);
	*len += n;
	out[*len] = '\0';
	return 0;
}

static int push_path(char *out, size_t outsz, size_t *len, const char *in)
{
	while (*in) {
		const char *end = strchrnul(in, '/');

		if (push_component(out, outsz, len, in, (size_t)(end - in)) < 0)
			return -1;
		in = *end ? end + 1 : end;
	}
	return 0;
}

int mt_path_normalize(const char *in, const char *cwd, char *out, size_t outsz)
{
	char here[4096];
	size_t len = 0;

	if (outsz < 2) {
		errno = ENAMETOOLONG;
		return -1;
	}
	out[0] = '\0';
	if (in[0] != '/') {
		if (!cwd) {
			if (!getcwd(here, sizeof(here)))
				return -1;
			cwd = here;
		}
		if (push_path(out, outsz, &len, cwd) < 0)
			return -1;
	}
	if (push_path(out, outsz, &len, in) < 0)
		return -1;
	if (len == 0) {
		out[0] = '/';
		out[1] = '\0';
	}
	return 0;
}
