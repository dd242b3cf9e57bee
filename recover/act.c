/*
 * act: execute a recovery plan. See act.h for what each failure means.
 */
#include "act.h"

#include <json-c/json.h>
#include <limits.h>
#include <string.h>
#include <sys/sysmacros.h>

#include "fusectl.h"
#include "hooks.h"
#include "journal.h"
#include "jsonutil.h"
#include "mountops.h"
#include "observe.h"

struct act {
	const struct recover_opts *o;
	const struct manifest *man;
	const char *probe_dir;
	FILE *out;
	struct json_object *steps;
	struct json_object *after;
	int fusectl_ready;
	int failed;              /* some step failed: the result is 4 */
	int stop;                /* a pre hook failed: run nothing more */
	int reads;               /* the final probe found everything reading */
	int mounts_checked;      /* the table was re-read before the first mount */
	struct mounttab mt;      /* that table */
	char staging[PATH_MAX + 16];  /* the private staging mount, "" until made */
};

/* Prints "  [ok] desc (0.01 s)" and adds the step's JSON record. Returns
 * the record so the caller can add details. */
static struct json_object *report(struct act *a, const char *desc, const char *kind,
				  const char *outcome, double duration, const char *detail)
{
	struct json_object *rec = json_object_new_object();

	fprintf(a->out, "  [%s] %s (%.2f s)%s%s\n", outcome, desc, duration,
		detail && detail[0] ? ": " : "", detail ? detail : "");
	if (!rec)
		return NULL;
	jput(rec, "step", json_object_new_string(desc));
	jput(rec, "kind", json_object_new_string(kind));
	jput(rec, "outcome", json_object_new_string(outcome));
	jput(rec, "duration", jsecs(duration));
	if (detail && detail[0])
		jput(rec, "detail", json_object_new_string(detail));
	if (json_object_array_add(a->steps, rec) < 0) {
		json_object_put(rec);
		return NULL;
	}
	return rec;
}

/* Prints the captured output of a child, indented, and records it. */
static void report_child(struct act *a, struct json_object *rec,
			 const struct child_result *res)
{
	const char *p = res->output;

	if (rec) {
		jput(rec, "exit", res->exited ? json_object_new_int(res->code) : NULL);
		jput(rec, "signal", res->exited ? NULL : json_object_new_int(res->code));
		jput(rec, "timed_out", json_object_new_boolean(res->timed_out));
		jput(rec, "output", json_object_new_string(res->output));
	}
	while (*p) {
		size_t n = strcspn(p, "\n");

		fprintf(a->out, "      | %.*s\n", (int)n, p);
		p += n + (p[n] == '\n');
	}
}

/* Runs a child-based step (hook, unmount, mount) and reports it. An
 * unmount or mount the child refused (mountops.h) is reported as such. */
static int child_step(struct act *a, const char *desc, const char *kind, int rc,
		      const struct child_result *res, const char *err)
{
	char how[64];
	int ok = rc == 0 && child_ok(res);
	int refused = rc == 0 && (!strcmp(kind, "umount") || !strcmp(kind, "mount")) &&
		      !res->timed_out && res->exited && res->code == MOUNTOP_REFUSED;
	struct json_object *rec;

	if (rc < 0) {
		report(a, desc, kind, "FAILED", 0, err);
		return 0;
	}
	rec = report(a, desc, kind, ok ? "ok" : refused ? "refused" : "FAILED", res->duration,
		     ok ? NULL : child_describe(res, how, sizeof(how)));
	report_child(a, rec, res);
	return ok;
}

/* 1 if the mount the plan saw (its id and device) is still in the table:
 * the connection number comes from the device, and a device number freed
 * since could now belong to another mount. */
static int abort_target_unchanged(const struct step *s, char *err, size_t errsz)
{
	struct mounttab mt = MOUNTTAB_INIT;
	int same = 0;

	if (mounttab_load(&mt, "/", NULL, err, errsz) < 0)
		return 0;
	for (size_t i = 0; i < mt.n && !same; i++)
		same = mt.v[i].id == s->mnt_id && mt.v[i].dev == s->dev;
	mounttab_release(&mt);
	if (!same)
		snprintf(err, errsz, "mount %d with device %u:%u is no longer in the mount table",
			 s->mnt_id, major(s->dev), minor(s->dev));
	return same;
}

static void do_abort(struct act *a, const struct step *s, const char *desc)
{
	char err[512] = "";
	int mounted = 0;

	if (!abort_target_unchanged(s, err, sizeof(err))) {
		report(a, desc, "abort", "refused", 0, err);
		a->failed = 1;
		return;
	}

	if (!a->fusectl_ready) {
		if (fusectl_ensure(a->o->fusectl_dir, &mounted, err, sizeof(err)) < 0) {
			report(a, desc, "abort", "FAILED", 0, err);
			a->failed = 1;
			return;
		}
		if (mounted)
			fprintf(a->out, "  [ok] mounted fusectl on %s\n", a->o->fusectl_dir);
		a->fusectl_ready = 1;
	}
	if (fusectl_abort(a->o->fusectl_dir, s->conn, err, sizeof(err)) < 0) {
		report(a, desc, "abort", "FAILED", 0, err);
		a->failed = 1;
		return;
	}
	report(a, desc, "abort", "ok", 0, NULL);
}

static void do_hook(struct act *a, const struct step *s, const char *desc)
{
	struct child_result res;
	char err[512] = "";
	int rc = hook_run(s->cmd, a->o->hook_timeout, &res, err, sizeof(err));

	if (!child_step(a, desc, s->kind == STEP_PRE ? "pre" : "post", rc, &res, err)) {
		a->failed = 1;
		if (s->kind == STEP_PRE) {
			a->stop = 1;
			fprintf(a->out, "  pre hook failed: recovery stopped, nothing unmounted\n");
		}
	}
}

static void do_umount(struct act *a, const struct step *s, const char *desc)
{
	struct child_result res;
	char err[512] = "";
	int rc = mountop_umount_lazy(s->path, s->mnt_id, a->o->hook_timeout, &res, err,
				     sizeof(err));

	if (!child_step(a, desc, "umount", rc, &res, err))
		a->failed = 1;
}

static void do_mount(struct act *a, const struct step *s, const char *desc)
{
	struct child_result res;
	char err[512] = "";
	int rc;

	if (!a->mounts_checked) {
		a->mounts_checked = 1;
		if (mounttab_load(&a->mt, a->o->root, NULL, err, sizeof(err)) < 0)
			fprintf(a->out, "  (cannot re-read the mount table: %s)\n", err);
	}
	if (mounttab_find(&a->mt, s->path)) {
		report(a, desc, "mount", "skipped", 0, "already mounted");
		return;
	}
	if (!s->entry->bind && !a->staging[0]) {
		char dir[PATH_MAX + 16];

		snprintf(dir, sizeof(dir), "%s/staging", a->o->state_dir);
		if (mountop_staging_setup(dir, err, sizeof(err)) < 0) {
			report(a, desc, "mount", "FAILED", 0, err);
			a->failed = 1;
			return;
		}
		snprintf(a->staging, sizeof(a->staging), "%s", dir);
	}
	rc = mountop_mount(s->entry, a->staging, a->o->hook_timeout, &res, err, sizeof(err));
	if (!child_step(a, desc, "mount", rc, &res, err))
		a->failed = 1;
}

/* Adds "path state" to the after-probe record and the problem list. */
static void note_after(struct act *a, const char *path, const char *state, int ok,
		       char *bad, size_t badsz)
{
	struct json_object *o = json_object_new_object();

	if (o) {
		jput(o, "path", json_object_new_string(path));
		jput(o, "state", json_object_new_string(state));
		if (json_object_array_add(a->after, o) < 0)
			json_object_put(o);
	}
	if (!ok) {
		size_t len = strlen(bad);

		snprintf(bad + len, badsz - len, "%s%s %s", len ? ", " : "", path, state);
	}
}

static void do_probe(struct act *a, const char *desc)
{
	struct observation ob = OBSERVATION_INIT;
	char err[512] = "", bad[1024] = "";
	double t0 = 0;

	a->after = json_object_new_array();
	if (!a->after ||
	    observe(&ob, a->o->root, a->o->probe_timeout, a->probe_dir, err, sizeof(err)) < 0) {
		report(a, desc, "probe", "FAILED", 0, err[0] ? err : "out of memory");
		a->failed = 1;
		return;
	}
	for (size_t i = 0; i < ob.mt.n; i++) {
		const struct mount_entry *m = &ob.mt.v[i];
		const struct live_dev *live;
		enum verdict v;
		int ours;

		if (m->shadowed)
			continue;
		live = live_find(&ob.live, m->dev);
		ours = plan_mount_ours(a->man, m);
		v = plan_verdict(m, &ob.res[i], live, ours);
		if (ob.res[i].duration > t0)
			t0 = ob.res[i].duration;
		/* A mount not ours (a user's own FUSE mount, dead or closed
		 * to root) is reported but cannot fail the recovery and hold
		 * back the post hooks. */
		note_after(a, m->target, probe_state_name(ob.res[i].state),
			   v == V_HEALTHY || v == V_LEFT_ALONE || (!ours && !live),
			   bad, sizeof(bad));
	}
	for (size_t i = 0; i < a->man->n; i++)
		if (!a->man->v[i].noauto && !mounttab_find(&ob.mt, a->man->v[i].target))
			note_after(a, a->man->v[i].target, "absent", 0, bad, sizeof(bad));
	a->reads = !bad[0];
	report(a, desc, "probe", a->reads ? "ok" : "FAILED", t0,
	       a->reads ? "everything reads" : bad);
	a->failed |= !a->reads;
	observation_release(&ob);
}

static void run_step(struct act *a, const struct step *s)
{
	char desc[1024];

	step_describe(s, desc, sizeof(desc));
	switch (s->kind) {
	case STEP_ABORT: do_abort(a, s, desc); break;
	case STEP_PRE: do_hook(a, s, desc); break;
	case STEP_UMOUNT: do_umount(a, s, desc); break;
	case STEP_MOUNT: do_mount(a, s, desc); break;
	case STEP_PROBE: do_probe(a, desc); break;
	case STEP_POST:
		if (a->reads)
			do_hook(a, s, desc);
		else
			report(a, desc, "post", "skipped", 0, "not everything reads");
		break;
	}
}

int act_execute(const struct recover_opts *o, const struct plan *p,
		const struct manifest *man, const char *probe_dir, FILE *out,
		struct json_object *steps, struct json_object **after)
{
	struct act a = { .o = o, .man = man, .probe_dir = probe_dir, .out = out,
			 .steps = steps };

	fprintf(out, "recovering %s:\n", o->root);
	for (size_t i = 0; i < p->nsteps && !a.stop; i++)
		run_step(&a, &p->steps[i]);
	if (!a.stop && !a.reads)
		fprintf(out, "not everything reads after the recovery: post hooks not run\n");
	mounttab_release(&a.mt);
	if (a.staging[0])
		mountop_staging_release(a.staging);
	*after = a.after;
	return a.failed ? 4 : 0;
}
