/*
 * gates: whether a pass may act on a plan that wants a recovery. Pure: it
 * reads the plan, the remembered attempts and the options, and names
 * every gate that is closed (all of them, not only the first, so the
 * journal says everything that stood in the way).
 *
 * The gates, in the order their reasons are given:
 *  - blocked: the plan says a person must look (plan.h);
 *  - dry run: --apply was not given;
 *  - disabled: the sentinel file is missing;
 *  - unconfirmed: no bad path is confirmed yet (--confirm-runs, --min-age);
 *  - cooldown: the last attempt was less than --cooldown seconds ago (no
 *    attempt yet: open);
 *  - cap: --max-recoveries attempts or more in the last --window seconds.
 * The guard command (--guard) runs after these, in pass.c: it is not pure.
 */
#ifndef STEADYFS_RECOVER_GATES_H
#define STEADYFS_RECOVER_GATES_H

#include "opts.h"
#include "plan.h"
#include "state.h"

/* Called once per closed gate with its reason (one line). */
typedef void gate_reason_fn(void *ctx, const char *reason);

/* Returns 1 if every gate is open; otherwise 0, after calling `why` for
 * each closed one. `enabled`: the sentinel exists; `now`: epoch seconds. */
int gates_open(const struct plan *p, const struct recover_state *st,
	       const struct recover_opts *o, int enabled, double now,
	       gate_reason_fn *why, void *ctx);

#endif
