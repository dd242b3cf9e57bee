/*
 * upgrade: `steadyfs --upgrade MOUNTPOINT`. Finds the mount's keeper from
 * .control/status.json, sends it SIGUSR2 and waits until a daemon of a
 * newer generation serves (or the keeper reports the upgrade failed).
 */
#ifndef STEADYFS_UPGRADE_H
#define STEADYFS_UPGRADE_H

/* Returns an exit status: 0 done, 1 the upgrade did not complete,
 * 4 MOUNTPOINT is not a steadyfs mount. Reports on stderr. */
int upgrade_request(const char *mountpoint);

#endif
