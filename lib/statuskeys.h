/*
 * statuskeys: the names in a steadyfs mount's status.json (in .control/
 * and in its mirror, statedir.h) that other code reads back. The writer
 * (fs/control/control_render.c) and every reader (lib/statedir.c for the probe
 * and the recovery's live-mount check, fs/keeper/upgrade.c for the hand-over)
 * use these, so a rename cannot leave a reader behind. Fields only
 * people read are written as plain strings in control_render.c;
 * docs/control.md documents them all.
 */
#ifndef STEADYFS_STATUSKEYS_H
#define STEADYFS_STATUSKEYS_H

#define STATUS_FILE "status.json"

#define STATUS_STATE "state"                      /* "connected", "degraded", "down" */
#define STATUS_SINCE "since"                      /* epoch s of the last state change */
#define STATUS_UPDATED "updated"                  /* epoch s of this rewrite */
#define STATUS_PID "pid"                          /* the daemon */
#define STATUS_KEEPER_PID "keeper_pid"            /* the keeper holding the mount */
#define STATUS_DEVICE "device"                    /* the mount's "major:minor" */
#define STATUS_GENERATION "generation"            /* daemons the keeper started */
#define STATUS_UPGRADES_FAILED "upgrades_failed"

#endif
