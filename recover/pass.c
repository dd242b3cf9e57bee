/*
 * pass: one pass of steadyfs-recover. See pass.h; the rules for what is
 * bad and what would be done live in plan.c, the doing in act.c.
 */
#include "pass.h"

#include <errno.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#include "act.h"
#include "clock.h"
#include "gates.h"
#include "hooks.h"
#include "journal.h"
#include "jsonutil.h"
#include "lock.h"
#include "log.h"
#include "manifest.h"
#include "metrics.h"
#include "mountops.h"
#include "observe.h"
#include "plan.h"
#include "state.h"
#include "paths.h"

struct pass {
	const struct recover_opts *o;
	FILE *out;
	double now;
	uint64_t t0;
	char state_path[PATH_MAX + 16];
	char journal_path[PATH_MAX + 16];
	char probe_dir[PATH_MAX + 16];
	struct manifest man;
	struct recover_state st;
	int state_ok;
	struct observation ob;
	struct plan plan;
	struct plan_input in;
	int enabled;
	struct json_object *rec;     /* the journal record being built */
	struct json_object *reasons; /* why nothing was done */
	const char *result;          /* "healthy", "recovered", "failed", "not-taken" */
};

static void add_reason(struct pass *ps, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void add_reason(struct pass *ps, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fprintf(ps->out, "not acting: %s\n", buf);
	if (ps->reasons)
		json_object_array_add(ps->reasons, json_object_new_string(buf));
}

static int setup_paths(struct pass *ps)
{
	const char *d = ps->o->state_dir;

	snprintf(ps->state_path, sizeof(ps->state_path), "%s/state.json", d);
	snprintf(ps->journal_path, sizeof(ps->journal_path), "%s/journal.jsonl", d);
	snprintf(ps->probe_dir, sizeof(ps->probe_dir), "%s/probe", d);
	if (mkdir_p(d, 0755) < 0) {
		log_err("cannot create state dir '%s': %s", d, strerror(errno));
		return -1;
	}
	return 0;
}

static struct json_object *device_json(const struct mount_entry *m)
{
	char dev[32];

	snprintf(dev, sizeof(dev), "%u:%u", m->major, m->minor);
	return json_object_new_string(dev);
}

/* Why a mount was left alone: the live steadyfs that serves its device. */
static struct json_object *live_json(const struct live_dev *l)
{
	struct json_object *o = json_object_new_object();

	jput(o, "keeper_pid", json_object_new_int64(l->keeper_pid));
	jput(o, "mirror", json_object_new_string(l->mirror));
	return o;
}

/* What was seen, for the journal: every mount that is not healthy, and
 * every absent manifest entry. */
static struct json_object *seen_json(const struct pass *ps)
{
	struct json_object *arr = json_object_new_array();

	for (size_t i = 0; arr && i < ps->plan.nmv; i++) {
		const struct mount_verdict *mv = &ps->plan.mv[i];
		struct json_object *o;

		if (mv->v == V_HEALTHY || !(o = json_object_new_object()))
			continue;
		jput(o, "path", json_object_new_string(mv->m->target));
		jput(o, "fstype", json_object_new_string(mv->m->fstype));
		jput(o, "source", json_object_new_string(mv->m->source));
		jput(o, "verdict", json_object_new_string(verdict_name(mv->v)));
		jput(o, "device", device_json(mv->m));
		jput(o, "root", json_object_new_string(mv->m->root));
		jput(o, "ours", json_object_new_boolean(mv->ours));
		if (mount_fuse_user(mv->m) >= 0)
			jput(o, "fuse_user_id", json_object_new_int64(mount_fuse_user(mv->m)));
		if (mv->live)
			jput(o, "live_steadyfs", live_json(mv->live));
		if (mv->r) {
			jput(o, "probe", json_object_new_string(probe_state_name(mv->r->state)));
			if (mv->r->err)
				jput(o, "errno", json_object_new_string(strerror(mv->r->err)));
		}
		if (mv->seen.count) {
			jput(o, "count", json_object_new_int64(mv->seen.count));
			jput(o, "first_seen", jsecs(mv->seen.first_seen));
			jput(o, "confirmed", json_object_new_boolean(mv->seen.confirmed));
		}
		json_object_array_add(arr, o);
	}
	for (size_t i = 0; arr && i < ps->plan.nabsent; i++) {
		const struct absent_entry *a = &ps->plan.absent[i];
		struct json_object *o = json_object_new_object();

		if (!o)
			continue;
		jput(o, "path", json_object_new_string(a->e->target));
		jput(o, "verdict", json_object_new_string("absent"));
		jput(o, "count", json_object_new_int64(a->seen.count));
		jput(o, "first_seen", jsecs(a->seen.first_seen));
		jput(o, "confirmed", json_object_new_boolean(a->seen.confirmed));
		json_object_array_add(arr, o);
	}
	return arr;
}

/* gates_open()'s reasons go where add_reason() puts them. */
static void gate_reason(void *ctx, const char *reason)
{
	add_reason(ctx, "%s", reason);
}

/* Runs the guard. Returns 1 if it allows acting. */
static int guard_allows(struct pass *ps)
{
	struct child_result res;
	struct json_object *g;
	char err[512] = "", how[64];
	int rc;

	if (!ps->o->guard)
		return 1;
	rc = hook_run(ps->o->guard, ps->o->hook_timeout, &res, err, sizeof(err));
	g = json_object_new_object();
	jput(g, "cmd", json_object_new_string(ps->o->guard));
	if (rc == 0) {
		jput(g, "result", json_object_new_string(child_describe(&res, how, sizeof(how))));
		jput(g, "duration", jsecs(res.duration));
		jput(g, "output", json_object_new_string(res.output));
	}
	jput(ps->rec, "guard", g);
	if (rc < 0) {
		add_reason(ps, "guard '%s' could not run: %s", ps->o->guard, err);
		return 0;
	}
	if (!child_ok(&res)) {
		add_reason(ps, "guard '%s' said no (%s)", ps->o->guard, how);
		return 0;
	}
	fprintf(ps->out, "guard '%s' allows recovery (%.2f s)\n", ps->o->guard, res.duration);
	return 1;
}

/* Records the attempt first (it counts even if we die), then acts. */
static int recover(struct pass *ps)
{
	struct json_object *steps = json_object_new_array(), *after = NULL;
	char err[512];
	int code;

	state_record_attempt(&ps->st, ps->now);
	if (state_save(&ps->st, ps->state_path, err, sizeof(err)) < 0) {
		log_err("not recovering: cannot record the attempt: %s", err);
		json_object_put(steps);
		return RX_INTERNAL;
	}
	if (!steps) {
		log_err("out of memory");
		return RX_INTERNAL;
	}
	code = act_execute(ps->o, &ps->plan, &ps->man, ps->probe_dir, ps->out, steps, &after);
	jput(ps->rec, "steps", steps);
	jput(ps->rec, "after", after);
	ps->st.last_apply_ok = code == RX_OK;
	if (code == RX_OK) {
		/* New mounts: any later trouble must be confirmed afresh. */
		state_begin_pass(&ps->st, ps->o->root);
		state_end_pass(&ps->st, ps->o->root);
	} else {
		ps->st.recoveries_failed++;
	}
	ps->result = code == RX_OK ? "recovered" : "failed";
	fprintf(ps->out, "result: %s\n", code == RX_OK ?
		"recovered, everything reads" : "recovery failed");
	return code;
}

static int observe_and_plan(struct pass *ps)
{
	char err[512];

	if (observe(&ps->ob, ps->o->root, ps->o->probe_timeout, ps->probe_dir,
		    err, sizeof(err)) < 0) {
		log_err("%s", err);
		return -1;
	}
	ps->in = (struct plan_input){
		.root = ps->o->root, .mt = &ps->ob.mt, .res = ps->ob.res, .man = &ps->man,
		.live = &ps->ob.live,
		.pre = ps->o->pre, .npre = ps->o->npre, .post = ps->o->post,
		.npost = ps->o->npost, .confirm_runs = ps->o->confirm_runs,
		.min_age = ps->o->min_age, .now = ps->now,
	};
	if (plan_build(&ps->in, &ps->st, &ps->plan) < 0) {
		log_err("out of memory building the plan");
		return -1;
	}
	return 0;
}

/* The record starts with what was seen; what was done follows. */
static void start_record(struct pass *ps)
{
	ps->rec = json_object_new_object();
	jput(ps->rec, "time", jsecs(ps->now));
	jput(ps->rec, "root", json_object_new_string(ps->o->root));
	jput(ps->rec, "apply", json_object_new_boolean(ps->o->apply));
	jput(ps->rec, "enabled", json_object_new_boolean(ps->enabled));
	jput(ps->rec, "seen", seen_json(ps));
	ps->reasons = json_object_new_array();
}

static int decide_and_act(struct pass *ps)
{
	if (!plan_action_needed(&ps->plan)) {
		ps->result = "healthy";
		if (plan_all_healthy(&ps->plan)) {
			fprintf(ps->out, "root %s: %zu mount(s), all healthy\n", ps->o->root,
				ps->plan.nmv);
			return RX_OK;
		}
		/* Left alone or another error: shown, nothing to do. A mount
		 * left alone (a live steadyfs riding out an outage) or not ours
		 * is journaled: the pass saw trouble and chose not to act. */
		plan_print(ps->out, &ps->in, &ps->plan);
		fprintf(ps->out, "nothing to recover\n");
		if (plan_noteworthy(&ps->plan)) {
			start_record(ps);
			ps->result = "left-alone";
		}
		return RX_OK;
	}
	plan_print(ps->out, &ps->in, &ps->plan);
	start_record(ps);
	if (!gates_open(&ps->plan, &ps->st, ps->o, ps->enabled, ps->now, gate_reason, ps) ||
	    !guard_allows(ps)) {
		ps->result = "not-taken";
		return RX_NOT_TAKEN;
	}
	return recover(ps);
}

static void write_journal(struct pass *ps, int code)
{
	char err[512];

	if (!ps->rec)
		return;
	jput(ps->rec, "reasons", ps->reasons);
	jput(ps->rec, "result", json_object_new_string(ps->result));
	jput(ps->rec, "exit", json_object_new_int(code));
	ps->reasons = NULL;
	jput(ps->rec, "duration",
	     jsecs((double)(clock_mono_ns() - ps->t0) / 1e9));
	if (journal_append(ps->journal_path, ps->rec, err, sizeof(err)) < 0)
		log_err("%s", err);
}

static void write_metrics(struct pass *ps, int code)
{
	struct recover_metrics m = {
		.root = ps->o->root, .last_run = ps->now, .last_success = ps->st.last_success,
		.duration = (double)(clock_mono_ns() - ps->t0) / 1e9,
		.stale = ps->plan.nstale, .hung = ps->plan.nhung, .absent = ps->plan.nabsent,
		.action_needed = code == RX_NOT_TAKEN || code == RX_FAILED,
		.exit_code = code, .recoveries_total = ps->st.recoveries_total,
		.recoveries_failed = ps->st.recoveries_failed,
		.last_apply_ok = ps->st.last_apply_ok, .enabled = ps->enabled,
	};
	char err[512];

	if (ps->o->textfile && ps->state_ok &&
	    metrics_write(ps->o->textfile, &m, err, sizeof(err)) < 0)
		log_err("%s", err);
}

/* Steps after the lock is held. */
static int locked_pass(struct pass *ps)
{
	char err[512];
	int code;

	if (manifest_load(&ps->man, ps->o->manifest, ps->o->root, err, sizeof(err)) < 0) {
		log_err("%s", err);
		return RX_USAGE;
	}
	if (state_load(&ps->st, ps->state_path, err, sizeof(err)) < 0) {
		log_err("%s", err);
		return RX_INTERNAL;
	}
	ps->state_ok = 1;
	ps->enabled = access(ps->o->sentinel, F_OK) == 0;
	if (observe_and_plan(ps) < 0)
		return RX_INTERNAL;
	code = decide_and_act(ps);
	if (code == RX_OK)
		ps->st.last_success = ps->now;
	if (state_save(&ps->st, ps->state_path, err, sizeof(err)) < 0) {
		log_err("%s", err);
		code = code == RX_OK ? RX_INTERNAL : code;
	}
	write_journal(ps, code);
	return code;
}

int pass_run(const struct recover_opts *o, FILE *out)
{
	struct pass ps = { .o = o, .out = out, .now = clock_wall(), .t0 = clock_mono_ns() };
	char err[512];
	int fd, code;

	if (setup_paths(&ps) < 0)
		return RX_INTERNAL;
	fd = lock_take(o->lock, err, sizeof(err));
	if (fd == LOCK_BUSY) {
		log_err("another steadyfs-recover run holds lock '%s': this pass does nothing",
			o->lock);
		return RX_NOT_TAKEN;
	}
	if (fd < 0) {
		log_err("%s", err);
		return RX_INTERNAL;
	}
	code = locked_pass(&ps);
	write_metrics(&ps, code);
	fflush(out);
	lock_release(fd);
	json_object_put(ps.rec);
	json_object_put(ps.reasons);
	plan_release(&ps.plan);
	observation_release(&ps.ob);
	state_release(&ps.st);
	manifest_release(&ps.man);
	return code;
}

int pass_preflight(const struct recover_opts *o)
{
	struct manifest man = MANIFEST_INIT;
	char err[512];

	if (manifest_load(&man, o->manifest, o->root, err, sizeof(err)) < 0) {
		log_err("%s", err);
		return RX_USAGE;
	}
	manifest_release(&man);
	return RX_OK;
}
