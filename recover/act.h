/*
 * act: carry out a recovery plan, step by step, reporting each step on
 * `out` and as a JSON record, and deciding the outcome:
 *
 *  - abort: a failure is noted and the recovery goes on (the connection
 *    may be gone already; the unmount step settles it either way);
 *  - pre hook: a failure stops the recovery at once (nothing unmounted);
 *  - abort: refused when the planned mount (id and device) is no longer
 *    in the table;
 *  - unmount and mount: a failure is noted and the rest still run, so as
 *    much as possible reads again; a manifest entry found mounted by the
 *    time its turn comes is skipped; a target that cannot be reached
 *    through a checked descriptor (mountops.h) is "refused", which counts
 *    as a failure;
 *  - probe: everything under ROOT that is ours must read (healthy, or a
 *    live steadyfs left alone; a mount not ours is reported only) and
 *    every manifest entry without noauto must be mounted;
 *  - post hooks: run only when the probe says so, all of them in order
 *    even if one fails.
 */
#ifndef STEADYFS_RECOVER_ACT_H
#define STEADYFS_RECOVER_ACT_H

#include <stdio.h>

#include "manifest.h"
#include "opts.h"
#include "plan.h"

struct json_object;

/*
 * Runs the steps of `p`. Appends one object per step to the JSON array
 * `steps` and sets *after to a new JSON array of the final probe (the
 * caller owns it; NULL if the probe did not run). Returns 0 when
 * everything reads again and every hook succeeded, 4 otherwise.
 */
int act_execute(const struct recover_opts *o, const struct plan *p,
		const struct manifest *man, const char *probe_dir, FILE *out,
		struct json_object *steps, struct json_object **after);

#endif
