/*
 * mountops: the two changes recovery makes to the mount table, each done
 * with libmount in a forked child under a deadline (child.h), because
 * either can block: a lazy unmount walks to its target, and a mount runs a
 * helper (mount.fuse.sshfs) that may wait on a network.
 *
 * The output libmount or the helper prints is captured in the result.
 */
#ifndef STEADYFS_RECOVER_MOUNTOPS_H
#define STEADYFS_RECOVER_MOUNTOPS_H

#include <stddef.h>

#include "child.h"
#include "manifest.h"

/* Lazily unmounts the topmost mount on `target` (umount -l). Returns 0 when
 * the child ran (success: child_ok(res)), or -1 with `err`. */
int mountop_umount_lazy(const char *target, double timeout, struct child_result *res,
			char *err, size_t errsz);

/* Creates `e->target` (and missing parents, mode 0755), then mounts the
 * entry with its source, fstype and options. Returns as above. */
int mountop_mount(const struct manifest_entry *e, double timeout,
		  struct child_result *res, char *err, size_t errsz);


#endif
