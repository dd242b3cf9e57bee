/*
 * observe: what is mounted at or below ROOT and how each mount answers
 * right now: the mount table (lib/mounttab) plus one probe per visible
 * mount (lib/probe), run in parallel under the probe timeout. A steadyfs
 * mount is probed with its state mirror, so a live daemon riding out an
 * outage shows as degraded and is left alone; the devices of every live
 * steadyfs are read from the mirrors (live.h), so a bind of one is known
 * for what it is at any path.
 */
#ifndef STEADYFS_RECOVER_OBSERVE_H
#define STEADYFS_RECOVER_OBSERVE_H

#include <stddef.h>

#include "live.h"
#include "mounttab.h"
#include "probe.h"

struct observation {
	struct mounttab mt;          /* mountinfo order */
	struct probe_result *res;    /* res[i] for mt.v[i]; zeroed for shadowed ones */
	struct live_set live;        /* devices of live steadyfs mounts */
};
#define OBSERVATION_INIT {MOUNTTAB_INIT, NULL, LIVE_SET_INIT}

/*
 * Loads the mounts at or below `root` and probes them with `timeout`
 * seconds; stuck probe children are remembered in `probe_dir`. Returns 0,
 * or -1 with `err`. `ob` must be OBSERVATION_INIT or released.
 */
int observe(struct observation *ob, const char *root, double timeout,
	    const char *probe_dir, char *err, size_t errsz);
void observation_release(struct observation *ob);

#endif
