/*
 * lock: one steadyfs-recover pass at a time per lock file, with flock(2)
 * on an open descriptor, so a crashed run never leaves a stale lock (the
 * kernel drops it with the descriptor). The descriptor is close-on-exec:
 * a hook or a mount helper that outlives the pass never holds it.
 */
#ifndef STEADYFS_RECOVER_LOCK_H
#define STEADYFS_RECOVER_LOCK_H

#include <stddef.h>

/*
 * Takes the lock on `path` (created if missing) without waiting. Returns
 * the descriptor to pass to lock_release(), LOCK_BUSY when another
 * process holds it, or -1 with `err`.
 */
#define LOCK_BUSY (-2)
int lock_take(const char *path, char *err, size_t errsz);
void lock_release(int fd);

#endif
