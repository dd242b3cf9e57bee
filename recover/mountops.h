/*
 * mountops: the two changes recovery makes to the mount table, each done
 * in a forked child under a deadline (child.h), because either can block:
 * reaching a target walks paths that may cross a dead mount, and a mount
 * runs a helper (mount.fuse.sshfs) that may wait on a network.
 *
 * Neither follows a symlink it did not check (safepath.h): the target is
 * opened without following symlinks, checked against the plan, and acted
 * on through that descriptor. An unmount is umount2() of the descriptor;
 * a mount is made on a private root-owned staging folder (mount(8) and
 * the FUSE helpers resolve paths themselves) and moved onto the checked
 * target descriptor with move_mount(2); a bind is cloned from a checked
 * source descriptor (open_tree(2)) and moved the same way. What cannot be
 * done through a descriptor is refused, never done by path.
 *
 * The output libmount or the helper prints is captured in the result; a
 * refusal exits MOUNTOP_REFUSED with its reason as the output.
 */
#ifndef STEADYFS_RECOVER_MOUNTOPS_H
#define STEADYFS_RECOVER_MOUNTOPS_H

#include <stddef.h>

#include "child.h"
#include "manifest.h"

/* The child's exit status for "refused: cannot act safely". */
#define MOUNTOP_REFUSED 64

/* Lazily unmounts the mount `mnt_id` on `target` (umount -l) when the
 * target still leads there. Returns 0 when the child ran (success:
 * child_ok(res)), or -1 with `err`. */
int mountop_umount_lazy(const char *target, int mnt_id, double timeout,
			struct child_result *res, char *err, size_t errsz);

/* Creates `e->target` (and missing parents, mode 0755), then mounts the
 * entry with its source, fstype and options, through `staging` (a private
 * root-owned folder, mountop_staging_setup()) unless it is a bind.
 * Returns as above. */
int mountop_mount(const struct manifest_entry *e, const char *staging, double timeout,
		  struct child_result *res, char *err, size_t errsz);

/*
 * Makes `dir` (created 0700 if missing; a real folder owned by root) a
 * private tmpfs mount for staging, unless it is one already. Returns 0,
 * or -1 with `err`. mountop_staging_release() detaches it.
 */
int mountop_staging_setup(const char *dir, char *err, size_t errsz);
void mountop_staging_release(const char *dir);

#endif
