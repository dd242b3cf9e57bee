/*
 * drill: rehearse the whole recovery on a real stale FUSE mount that
 * steadyfs-recover makes itself, so the runbook can be tried on a
 * production host without touching a production path.
 *
 * It first moves into a private mount namespace (unshare + MS_PRIVATE),
 * so no mount it makes or removes is visible outside, and everything is
 * gone when it exits even if it crashes. In a scratch folder under /tmp
 * it makes:
 *   root/base      a FUSE mount whose daemon it then kills: stale, exactly
 *                  the kernel state of a dead sshfs;
 *   root/jobs/hot  a bind mount of root/base made before the kill: stale
 *                  too, like the hot paths of the incident;
 *   root/deep/hung a FUSE mount whose daemon stays alive and never answers:
 *                  hung, to be aborted through fusectl.
 * The "daemon" is a forked child that opens /dev/fuse and mounts it with
 * mount(2): the smallest real FUSE mount there is, with no network, no
 * ssh and no libfuse. The manifest re-creates root/base as a bind mount of
 * a scratch folder and root/jobs/hot as a bind mount of root/base/job.
 *
 * Then a dry run (must change nothing and exit 1), a recovery with
 * harmless hooks ("true") and confirm-runs 2 (exit 0), a read of the
 * recovered paths, the journal record, and the clean-up; each step is
 * reported on `out`.
 */
#ifndef STEADYFS_RECOVER_DRILL_H
#define STEADYFS_RECOVER_DRILL_H

#include <stdio.h>

#include "opts.h"

/* Returns an exit code: 0 the drill passed, 4 a step did not do what it
 * should, 3 the drill could not be set up. */
int drill_run(const struct recover_opts *o, FILE *out);

#endif
