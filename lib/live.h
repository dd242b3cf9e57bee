/*
 * live: which devices belong to a live steadyfs, at whatever path they
 * appear (a bind of the mount or of a subfolder shows the same device,
 * with another root): the mounts recovery must never abort or unmount, and
 * the mirror the probe reads for each of them.
 *
 * Every steadyfs daemon records in its mirror's status.json the device
 * of its mount ("major:minor", from the mount table) and the pid of its
 * keeper, the process that holds /dev/fuse for the life of the mount and
 * restarts the daemon. The mirrors live under STATEDIR_BASE, written by
 * root; one whose folder or status.json is not root's, or whose folder
 * others may write, is ignored. A device is live when some mirror
 * records it and that keeper is alive now: /proc/PID exists, is owned by root, its executable is a
 * steadyfs binary, its mount table lists the device as a fuse.steadyfs
 * mount, and it holds that mount's FUSE connection (/dev/fuse; checked
 * when the kernel's fdinfo says which connection a descriptor serves). A
 * mirror left behind by a dead mount names a pid that is gone or another
 * program. Only root can check another process's /proc: for other users
 * the set is empty.
 *
 * During an outage a live steadyfs answers slowly by design (up to its
 * op_timeout): a probe that gives up earlier says nothing about it.
 */
#ifndef STEADYFS_LIVE_H
#define STEADYFS_LIVE_H

#include <stddef.h>
#include <sys/types.h>

struct live_dev {
	dev_t dev;
	long keeper_pid;
	char mirror[512];     /* the mirror directory that named it */
};

struct live_set {
	struct live_dev *v;
	size_t n;
};
#define LIVE_SET_INIT {0}

/*
 * Reads every mirror under `base` (STATEDIR_BASE outside tests) and keeps
 * the devices whose keeper is alive. A missing `base` is an empty set.
 * Returns 0, or -1 out of memory. `ls` must be LIVE_SET_INIT or released.
 */
int live_scan(struct live_set *ls, const char *base);
void live_release(struct live_set *ls);

/* The live steadyfs record for device `dev`, or NULL. */
const struct live_dev *live_find(const struct live_set *ls, dev_t dev);

/* 1 if `pid` is a live steadyfs keeper holding device `dev` (the checks
 * above), else 0. */
int live_keeper_holds(long pid, dev_t dev);

#endif
