/*
 * upgrade: `steadyfs --upgrade MOUNTPOINT`. Finds the mount's keeper from
 * .control/status.json, checks it, sends it SIGUSR2 and waits until a daemon of a
 * newer generation serves (or the keeper reports the upgrade failed).
 */
#ifndef STEADYFS_UPGRADE_H
#define STEADYFS_UPGRADE_H

/* Exit status of a refused upgrade: the pid in status.json is not the
 * keeper of that mount (nothing was signalled). */
#define UPGRADE_EXIT_NOT_KEEPER 5

/* Returns an exit status: 0 done, 1 the upgrade did not complete,
 * 4 MOUNTPOINT is not a steadyfs mount, UPGRADE_EXIT_NOT_KEEPER. Signals
 * nothing unless the pid holds that very mount's FUSE connection (where
 * the kernel shows it), runs this steadyfs binary and is the caller's, on
 * a mount the caller's user made. Reports on stderr, one line. */
int upgrade_request(const char *mountpoint);

#endif
