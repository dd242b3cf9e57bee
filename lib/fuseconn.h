/*
 * fuseconn: whether a process holds the /dev/fuse descriptor of a given
 * FUSE connection. A pid read from a status file is only a claim (the pid
 * may have been reused, the file forged or left behind by a dead mount);
 * the kernel's own record of which connection each /dev/fuse descriptor
 * serves is what ties a keeper to its mount.
 */
#ifndef STEADYFS_FUSECONN_H
#define STEADYFS_FUSECONN_H

#include <sys/types.h>

/*
 * Whether `pid` holds the /dev/fuse descriptor of the connection whose
 * mount has device `dev`: 1 yes; 0 it holds /dev/fuse but the kernel does
 * not say which connection (no "fuse_connection:" in fdinfo on older
 * kernels); -1 no (or /proc/PID/fd cannot be read).
 */
int fuseconn_held_by(long pid, dev_t dev);

#endif
