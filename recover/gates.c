/*
 * gates: the checks before a recovery. See gates.h.
 */
#include "gates.h"

#include <stdarg.h>
#include <stdio.h>

static void closed(gate_reason_fn *why, void *ctx, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void closed(gate_reason_fn *why, void *ctx, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	why(ctx, buf);
}

int gates_open(const struct plan *p, const struct recover_state *st,
	       const struct recover_opts *o, int enabled, double now,
	       gate_reason_fn *why, void *ctx)
{
	size_t recent = state_attempts_since(st, now, o->window);
	double since = now - st->last_attempt;
	int ok = 1;

	if (p->blocked) {
		closed(why, ctx, "blocked, a person must look: %s", p->blocked_why);
		ok = 0;
	}
	if (!o->apply) {
		closed(why, ctx, "dry run (--apply not given)");
		ok = 0;
	}
	if (!enabled) {
		closed(why, ctx, "disabled: sentinel '%s' is missing", o->sentinel);
		ok = 0;
	}
	if (!p->nconfirmed) {
		closed(why, ctx, "waiting for confirmation (%ld passes and %.0f s of being bad)",
		       o->confirm_runs, o->min_age);
		ok = 0;
	}
	if (st->last_attempt > 0 && since < o->cooldown) {
		closed(why, ctx, "cooldown: last recovery %.0f s ago, --cooldown %.0f s",
		       since, o->cooldown);
		ok = 0;
	}
	if (recent >= (size_t)o->max_recoveries) {
		closed(why, ctx, "cap: %zu recoveries in the last %.0f s (--max-recoveries %ld)",
		       recent, o->window, o->max_recoveries);
		ok = 0;
	}
	return ok;
}
