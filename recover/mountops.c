/*
 * mountops: lazy unmount and mount through checked descriptors, in a
 * child. See mountops.h.
 */
#include "mountops.h"

#include <errno.h>
#include <fcntl.h>
#include <libmount.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mounttab.h"
#include "safepath.h"

#define STAGING_SOURCE "steadyfs-recover-staging"

/* Runs in the child: a refusal, its reason on the captured output. */
static int refuse(const char *what, const char *why)
{
	fprintf(stderr, "refused: %s%s%s\n", what, why[0] ? ": " : "", why);
	return MOUNTOP_REFUSED;
}

/* Runs in the child: messages go to its captured stderr. */
static int report_excode(struct libmnt_context *cxt, int rc, const char *what,
			 const char *target)
{
	char msg[512] = "";
	int ex = mnt_context_get_excode(cxt, rc, msg, sizeof(msg));

	if (ex == MNT_EX_SUCCESS)
		return 0;
	fprintf(stderr, "%s '%s': %s\n", what, target, msg[0] ? msg : strerror(-rc));
	return 1;
}

/* ---- unmount ------------------------------------------------------------ */

struct umount_job {
	const char *target;
	int mnt_id;
};

static int do_umount(void *arg)
{
	const struct umount_job *j = arg;
	char why[4200], proc[64];
	int fd = safepath_open(j->target, 0), rc = 0;

	if (fd < 0)
		return errno == ELOOP || errno == ENOSYS ?
			refuse(j->target, safepath_strerror(errno)) :
			(fprintf(stderr, "umount '%s': %s\n", j->target, strerror(errno)), 1);
	if (safepath_check(fd, j->target, j->mnt_id, why, sizeof(why)) < 0) {
		close(fd);
		return refuse(why, "");
	}
	/* The magic link names exactly the checked mount; MNT_DETACH, the
	 * kernel's lazy unmount, is all `umount -l` does. */
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	if (umount2(proc, MNT_DETACH) < 0) {
		fprintf(stderr, "umount '%s': %s\n", j->target, strerror(errno));
		rc = 1;
	}
	close(fd);
	return rc;
}

int mountop_umount_lazy(const char *target, int mnt_id, double timeout,
			struct child_result *res, char *err, size_t errsz)
{
	struct umount_job j = { target, mnt_id };

	return child_run(do_umount, &j, timeout, res, err, errsz);
}

/* ---- the target ----------------------------------------------------------- */

/*
 * Opens the target folder, creating what is missing, and checks it: named
 * as planned, and not inside a FUSE mount a user made (whose daemon would
 * then decide what root mounts on). Returns the descriptor, or -1 after
 * printing why (*refused set when it is a refusal).
 */
static int open_target(const char *target, int *refused)
{
	struct mounttab mt = MOUNTTAB_INIT;
	char why[4200];
	int fd = safepath_mkdirs(target, 0755), id;

	*refused = 0;
	if (fd < 0) {
		*refused = errno == ELOOP || errno == ENOSYS || errno == EEXIST;
		fprintf(stderr, "%scannot create '%s': %s\n", *refused ? "refused: " : "",
			target, errno == EEXIST ? "a symlink put there meanwhile" :
			safepath_strerror(errno));
		return -1;
	}
	if (safepath_check(fd, target, -1, why, sizeof(why)) < 0) {
		*refused = 1;
		fprintf(stderr, "refused: %s\n", why);
		close(fd);
		return -1;
	}
	id = safepath_mount_id(fd);
	if (mounttab_load(&mt, "/", NULL, why, sizeof(why)) == 0) {
		for (size_t i = 0; i < mt.n; i++)
			if (mt.v[i].id == id && mount_fuse_user(&mt.v[i]) > 0) {
				*refused = 1;
				fprintf(stderr, "refused: '%s' lies in '%s', a FUSE mount user %ld made\n",
					target, mt.v[i].target, mount_fuse_user(&mt.v[i]));
			}
		mounttab_release(&mt);
	}
	if (*refused) {
		close(fd);
		return -1;
	}
	return fd;
}

/* ---- bind: cloned from a checked source ------------------------------------ */

/* The mount attributes a bind entry's options ask for; -1 (after saying
 * which) for an option that cannot be applied to a cloned tree. */
static int bind_attrs(const char *options, struct mount_attr *attr, unsigned int *recursive)
{
	char *opts = (char *)options, *name, *val;
	size_t nl, vl;

	memset(attr, 0, sizeof(*attr));
	*recursive = 0;
	while (mnt_optstr_next_option(&opts, &name, &nl, &val, &vl) == 0) {
		static const struct { const char *n; unsigned long long set; } known[] = {
			{ "ro", MOUNT_ATTR_RDONLY }, { "nosuid", MOUNT_ATTR_NOSUID },
			{ "nodev", MOUNT_ATTR_NODEV }, { "noexec", MOUNT_ATTR_NOEXEC },
			{ "bind", 0 }, { "rw", 0 }, { "defaults", 0 }, { "suid", 0 },
			{ "dev", 0 }, { "exec", 0 }, { "auto", 0 }, { "nofail", 0 },
			{ "_netdev", 0 },
		};
		int ok = 0;

		if (nl == 5 && strncmp(name, "rbind", 5) == 0) {
			*recursive = AT_RECURSIVE;
			continue;
		}
		if ((nl > 2 && strncmp(name, "x-", 2) == 0) ||
		    (nl == 7 && strncmp(name, "comment", 7) == 0))
			continue;
		for (size_t i = 0; i < sizeof(known) / sizeof(known[0]) && !ok; i++)
			if (strlen(known[i].n) == nl && strncmp(known[i].n, name, nl) == 0) {
				attr->attr_set |= known[i].set;
				ok = 1;
			}
		if (!ok) {
			fprintf(stderr, "refused: bind option '%.*s' cannot be applied through a descriptor\n",
				(int)nl, name);
			return -1;
		}
	}
	return 0;
}

static int bind_into(const struct manifest_entry *e, int tfd)
{
	struct mount_attr attr;
	unsigned int rec;
	int sfd, tree, rc = 0;

	if (bind_attrs(e->options, &attr, &rec) < 0)
		return MOUNTOP_REFUSED;
	if (e->source[0] != '/')
		return refuse(e->source, "a bind source must be an absolute path");
	if ((sfd = safepath_open(e->source, 0)) < 0)
		return refuse(e->source, safepath_strerror(errno));
	tree = open_tree(sfd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | rec);
	close(sfd);
	if (tree < 0) {
		fprintf(stderr, "bind '%s': open_tree: %s\n", e->source, strerror(errno));
		return 1;
	}
	if (attr.attr_set &&
	    mount_setattr(tree, "", AT_EMPTY_PATH | rec, &attr, sizeof(attr)) < 0) {
		fprintf(stderr, "bind '%s': mount_setattr: %s\n", e->source, strerror(errno));
		rc = 1;
	} else if (move_mount(tree, "", tfd, "", MOVE_MOUNT_F_EMPTY_PATH |
			      MOVE_MOUNT_T_EMPTY_PATH) < 0) {
		fprintf(stderr, "bind '%s' on '%s': move_mount: %s\n", e->source, e->target,
			strerror(errno));
		rc = 1;
	}
	close(tree);
	return rc;
}

/* ---- anything else: staged, then moved ------------------------------------- */

/* Mounts the entry on `stage` with libmount (helpers included). */
static int mount_on(const struct manifest_entry *e, const char *stage)
{
	struct libmnt_context *cxt = mnt_new_context();
	int rc;

	if (!cxt) {
		fprintf(stderr, "mount '%s': out of memory\n", e->target);
		return 1;
	}
	if (mnt_context_set_source(cxt, e->source) < 0 ||
	    mnt_context_set_target(cxt, stage) < 0 ||
	    (e->fstype[0] && strcmp(e->fstype, "none") != 0 &&
	     mnt_context_set_fstype(cxt, e->fstype) < 0) ||
	    (e->options[0] && mnt_context_set_options(cxt, e->options) < 0)) {
		fprintf(stderr, "mount '%s': cannot set up libmount\n", e->target);
		mnt_free_context(cxt);
		return 1;
	}
	rc = mnt_context_mount(cxt);
	rc = report_excode(cxt, rc, "mount", e->target);
	mnt_free_context(cxt);
	return rc;
}

static int staged_into(const struct manifest_entry *e, const char *staging, int tfd)
{
	char stage[PATH_MAX];
	int rc;

	snprintf(stage, sizeof(stage), "%s/mount.XXXXXX", staging);
	if (!mkdtemp(stage)) {
		fprintf(stderr, "cannot create a staging folder in '%s': %s\n", staging,
			strerror(errno));
		return 1;
	}
	rc = mount_on(e, stage);
	if (rc == 0 && move_mount(AT_FDCWD, stage, tfd, "", MOVE_MOUNT_T_EMPTY_PATH) < 0) {
		fprintf(stderr, "mount '%s': move_mount from '%s': %s\n", e->target, stage,
			strerror(errno));
		umount2(stage, MNT_DETACH);
		rc = 1;
	}
	if (rmdir(stage) < 0)
		fprintf(stderr, "cannot remove staging folder '%s': %s\n", stage, strerror(errno));
	return rc;
}

struct mount_job {
	const struct manifest_entry *e;
	const char *staging;
};

static int do_mount(void *arg)
{
	const struct mount_job *j = arg;
	int refused, tfd = open_target(j->e->target, &refused), rc;

	if (tfd < 0)
		return refused ? MOUNTOP_REFUSED : 1;
	rc = j->e->bind ? bind_into(j->e, tfd) : staged_into(j->e, j->staging, tfd);
	close(tfd);
	return rc;
}

int mountop_mount(const struct manifest_entry *e, const char *staging, double timeout,
		  struct child_result *res, char *err, size_t errsz)
{
	struct mount_job j = { e, staging };

	return child_run(do_mount, &j, timeout, res, err, errsz);
}

/* ---- the staging folder ------------------------------------------------------ */

int mountop_staging_setup(const char *dir, char *err, size_t errsz)
{
	struct mounttab mt = MOUNTTAB_INIT;
	const struct mount_entry *m;
	struct stat st;
	char why[256];
	int present;

	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		snprintf(err, errsz, "cannot create staging folder '%s': %s", dir, strerror(errno));
		return -1;
	}
	if (lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode) || st.st_uid != 0) {
		snprintf(err, errsz, "staging folder '%s' is not a folder of root's", dir);
		return -1;
	}
	if (mounttab_load(&mt, dir, NULL, why, sizeof(why)) < 0) {
		snprintf(err, errsz, "cannot read the mount table: %s", why);
		return -1;
	}
	m = mounttab_find(&mt, dir);
	present = m && strcmp(m->source, STAGING_SOURCE) == 0;
	mounttab_release(&mt);
	/* Private: a mount under a shared parent cannot be moved away. */
	if ((!present && mount(STAGING_SOURCE, dir, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
			       "mode=0700,size=64k") < 0) ||
	    mount(NULL, dir, NULL, MS_PRIVATE, NULL) < 0) {
		snprintf(err, errsz, "cannot make '%s' a private staging mount: %s", dir,
			 strerror(errno));
		return -1;
	}
	return 0;
}

void mountop_staging_release(const char *dir)
{
	umount2(dir, MNT_DETACH | UMOUNT_NOFOLLOW);
}
