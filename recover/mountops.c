/*
 * mountops: lazy unmount and mount through libmount, in a child. See
 * mountops.h.
 */
#include "mountops.h"
#include "paths.h"

#include <errno.h>
#include <libmount.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

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

static int do_umount(void *arg)
{
	const char *target = arg;
	struct libmnt_context *cxt = mnt_new_context();
	int rc;

	if (!cxt) {
		fprintf(stderr, "umount '%s': out of memory\n", target);
		return 1;
	}
	/* The target comes from the kernel's table, already canonical: never
	 * realpath() it, that would touch the dead mount. No umount helper:
	 * the kernel's MNT_DETACH is all a lazy unmount needs. */
	if (mnt_context_set_target(cxt, target) < 0 ||
	    mnt_context_enable_lazy(cxt, 1) < 0 ||
	    mnt_context_disable_canonicalize(cxt, 1) < 0 ||
	    mnt_context_disable_helpers(cxt, 1) < 0) {
		fprintf(stderr, "umount '%s': cannot set up libmount\n", target);
		mnt_free_context(cxt);
		return 1;
	}
	rc = mnt_context_umount(cxt);
	rc = report_excode(cxt, rc, "umount", target);
	mnt_free_context(cxt);
	return rc;
}

int mountop_umount_lazy(const char *target, double timeout, struct child_result *res,
			char *err, size_t errsz)
{
	return child_run(do_umount, (void *)target, timeout, res, err, errsz);
}


static int do_mount(void *arg)
{
	const struct manifest_entry *e = arg;
	struct libmnt_context *cxt;
	int rc;

	if (mkdir_p(e->target, 0755) < 0) {
		fprintf(stderr, "cannot create '%s': %s\n", e->target, strerror(errno));
		return 1;
	}
	cxt = mnt_new_context();
	if (!cxt) {
		fprintf(stderr, "mount '%s': out of memory\n", e->target);
		return 1;
	}
	if (mnt_context_set_source(cxt, e->source) < 0 ||
	    mnt_context_set_target(cxt, e->target) < 0 ||
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

int mountop_mount(const struct manifest_entry *e, double timeout,
		  struct child_result *res, char *err, size_t errsz)
{
	return child_run(do_mount, (void *)e, timeout, res, err, errsz);
}
