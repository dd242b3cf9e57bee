/*
 * fusectl: aborting a FUSE connection through the fusectl filesystem.
 *
 * Writing to /sys/fs/fuse/connections/N/abort ends every request of that
 * connection at once; the mount then answers ENOTCONN (stale) and can be
 * lazily unmounted, and the processes stuck in it are released. N is the
 * kernel's device number of the mount's superblock, which is what the
 * mount table lists as major:minor: N = (major << 20) | minor, which is
 * the minor number for the anonymous devices FUSE uses (major 0). The
 * number comes from the mount table, never from stat(2): a stat of a hung
 * mount would hang.
 */
#ifndef STEADYFS_RECOVER_FUSECTL_H
#define STEADYFS_RECOVER_FUSECTL_H

#include <stddef.h>

#define FUSECTL_DIR "/sys/fs/fuse/connections"

/* The connection number for a mount listed as `major`:`minor`. */
unsigned long fusectl_conn(unsigned int major, unsigned int minor);

/*
 * Makes sure fusectl is mounted at `dir` (FUSECTL_DIR outside tests),
 * mounting it if the mount table shows none there. Sets *mounted to 1 if
 * this call mounted it. Returns 0, or -1 with `err`.
 */
int fusectl_ensure(const char *dir, int *mounted, char *err, size_t errsz);

/* Aborts connection `conn` under `dir`. Returns 0, or -1 with `err` (no
 * such connection: it is gone already, or the number is wrong). */
int fusectl_abort(const char *dir, unsigned long conn, char *err, size_t errsz);

#endif
