/*
 * safepath: reaching a path recovery acts on without following any
 * symlink it did not check, and naming the mount a descriptor is on.
 *
 * Between the pass's look at the mount table and the act (a probe of a
 * hung mount takes the whole probe timeout), a local user who owns a
 * folder on the path can swap it for a symlink. So every path recovery
 * unmounts or mounts on is opened with openat2(2) RESOLVE_NO_SYMLINKS |
 * RESOLVE_NO_MAGICLINKS (O_PATH: nothing on the filesystem is opened),
 * the descriptor is checked against the plan (its mount id from
 * /proc/self/fdinfo and its path as the kernel names it, neither a
 * filesystem call, so a hung mount cannot block them), and the act goes
 * through the descriptor. Where that is impossible the caller refuses.
 *
 * Meant for the forked children of mountops (a path through a dead mount
 * can block in the kernel); nothing here has a deadline of its own.
 */
#ifndef STEADYFS_RECOVER_SAFEPATH_H
#define STEADYFS_RECOVER_SAFEPATH_H

#include <stddef.h>
#include <sys/types.h>

/*
 * Opens absolute `path` with O_PATH | O_CLOEXEC | `flags`, following no
 * symlink and no magic link on the way (a mountpoint is crossed). Returns
 * the descriptor, or -1 with errno (ELOOP: a symlink on the path; ENOSYS:
 * a kernel without openat2).
 */
int safepath_open(const char *path, int flags);

/*
 * Opens absolute folder `path` as safepath_open() does, first creating
 * each missing component with `mode`, one at a time, relative to the
 * descriptor of its parent (never through a symlink). Returns an O_PATH
 * descriptor or -1 with errno.
 */
int safepath_mkdirs(const char *path, mode_t mode);

/* The mount id of `fd` (/proc/self/fdinfo's mnt_id), or -1. */
int safepath_mount_id(int fd);

/* The path the kernel gives descriptor `fd` (/proc/self/fd/N) into
 * `out`. Returns 0, or -1 with errno. */
int safepath_fd_path(int fd, char *out, size_t outsz);

/*
 * Checks that `fd`, opened for `path`, is where the plan expects: on
 * mount `mnt_id` (when >= 0) and named `path` by the kernel. Returns 0,
 * or -1 with the reason in `why`.
 */
int safepath_check(int fd, const char *path, int mnt_id, char *why, size_t whysz);

/* A reason for an errno of safepath_open() / safepath_mkdirs(). */
const char *safepath_strerror(int err);

#endif
