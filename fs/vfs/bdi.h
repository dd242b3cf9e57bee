/*
 * bdi: the kernel's own read-ahead for this mount. The kernel reads ahead
 * of a FUSE reader by the smaller of the mount's backing-device setting
 * (/sys/class/bdi/<major:minor>/read_ahead_kb, 128 KiB when the mount is
 * made) and the max_readahead the daemon answers INIT with, so INIT alone
 * can only lower it. Raising it means writing read_ahead_kb first (root
 * only), then answering INIT with the same size.
 *
 * Sized to one READ of the largest size the kernel sends (max_pages, 256
 * pages = 1 MiB, which libfuse 3.14 asks for since max_write is 1 MiB):
 * a sequential reader's READs grow to 1 MiB, eight times fewer requests
 * than at 128 KiB. The depth that crosses a distant link is steadyfs's
 * own read-ahead (readahead.h), not the kernel's.
 */
#ifndef STEADYFS_BDI_H
#define STEADYFS_BDI_H

#include <stddef.h>

#define BDI_READ_AHEAD_KB 1024u

/*
 * Sets read_ahead_kb of the steadyfs mount at `mountpoint` (found in
 * /proc/self/mountinfo: no call on the mount itself, which may be
 * waiting for this very INIT) to `kb`. Returns 0, or -1 with one line in
 * err (not root, no such mount, no sysfs).
 */
int bdi_set_read_ahead(const char *mountpoint, unsigned kb, char *err, size_t errsz);

#endif
