/*
 * keeper: the process that holds the mount. It opens /dev/fuse, mounts,
 * and keeps that descriptor for the life of the mount while the
 * filesystem daemon runs as its child (this same binary, executed again
 * from the path it was started from). When the child exits or dies the
 * keeper starts a new one within a second and hands it the descriptor, so
 * the mount (and every bind mount of it, in any namespace) never goes
 * stale because of the daemon. SIGUSR2 upgrades: a new child connects,
 * the old one drains and exits, the new one takes over.
 *
 * The keeper has no network code: it never touches libssh, only libfuse's
 * mount call, a socket pair per child and the take-over state memfd.
 *
 * The protocol with a child (a SOCK_SEQPACKET pair): the child sends
 * 'C' when it may take the descriptor (for the first start and for an
 * upgrade: after its first session connected), the keeper answers with
 * the descriptor (SCM_RIGHTS), the child sends 'R' once it serves.
 */
#ifndef STEADYFS_KEEPER_H
#define STEADYFS_KEEPER_H

#include "opts.h"

/* Environment a child finds its link in. */
#define KEEPER_ENV "STEADYFS_KEEPER"
#define KEEPER_ENV_MOUNTPOINT "STEADYFS_MOUNTPOINT"

/* Child exit status that means "stopped on request, mount still up"
 * (a handover or a signal): the keeper starts another unless stopping.
 * Exit 0 means the mount ended (it was unmounted). */
#define KEEPER_EXIT_HANDOVER 75

/*
 * Runs the keeper for the checked, resolved mountpoint `mp`; argv is the
 * original command line, given again to each child. Returns the exit
 * status: the first child's own status when it fails before the mount
 * (bad host, key, login), EXIT_MOUNTPOINT when mounting fails, 0 after a
 * clean stop or an unmount.
 */
int keeper_run(const struct steadyfs_opts *o, const char *mp, char **argv);

#endif
