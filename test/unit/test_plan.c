/*
 * test_plan: steadyfs-recover's rules, table by table: the verdict for a
 * mount (recover/plan.c: plan_verdict, plan_mount_ours), the sightings and
 * their confirmation (plan_build over several passes, recover/state.c),
 * what blocks a recovery, the order of the steps, and the gates before
 * acting (recover/gates.c: blocked, dry run, sentinel, confirmation,
 * cooldown, cap).
 *
 * A "world" is a small table of mounts (what the mount table and the probe
 * said), manifest entries and live steadyfs devices; a pass builds the
 * plan from it the way pass.c does, with no I/O.
 */
#include "unit.h"

#include <stdlib.h>
#include <sys/sysmacros.h>

#include "recover/fusectl.h"
#include "recover/gates.h"
#include "recover/plan.h"

#define ROOT "/r"
#define MAXM 8

/* One row of a world's mount table. */
struct mspec {
	const char *target, *fstype, *source, *super;
	unsigned minor;            /* device 0:minor; 0 = the row number + 1 */
	enum probe_state probe;
	enum mirror_health mirror;
	int shadowed;
};

/* One manifest entry. */
struct espec {
	const char *target, *fstype, *source;
	int noauto;
};

struct world {
	struct mspec m[MAXM];
	struct espec e[MAXM];
	unsigned live[MAXM];      /* minors of live steadyfs devices, 0 ends */
};

/* The tables a world becomes, and a plan built from them. */
struct built {
	struct mount_entry me[MAXM];
	struct probe_result res[MAXM];
	struct mounttab mt;
	struct manifest_entry ee[MAXM];
	struct manifest man;
	struct live_dev ld[MAXM];
	struct live_set live;
	const char *pre[2], *post[2];
	struct plan_input in;
	struct plan p;
};

static void build_tables(const struct world *w, struct built *b)
{
	memset(b, 0, sizeof(*b));
	for (size_t i = 0; i < MAXM && w->m[i].target; i++) {
		const struct mspec *s = &w->m[i];
		struct mount_entry *e = &b->me[i];

		e->target = (char *)s->target;
		e->fstype = (char *)(s->fstype ? s->fstype : "fuse.sshfs");
		e->source = (char *)(s->source ? s->source : "u@h:/x");
		e->root = "/";
		e->super_opts = (char *)(s->super ? s->super : "rw,user_id=0,group_id=0");
		e->minor = s->minor ? s->minor : (unsigned)i + 1;
		e->dev = makedev(0, e->minor);
		e->id = 100 + (int)i;
		e->depth = mt_path_depth(s->target);
		e->shadowed = s->shadowed;
		e->order = i;
		b->res[i].state = s->probe;
		b->res[i].mirror.health = s->mirror;
		b->mt.n = i + 1;
	}
	b->mt.v = b->me;
	for (size_t i = 0; i < MAXM && w->e[i].target; i++) {
		const struct espec *s = &w->e[i];
		struct manifest_entry *e = &b->ee[i];

		e->target = (char *)s->target;
		e->fstype = (char *)(s->fstype ? s->fstype : "fuse.sshfs");
		e->source = (char *)(s->source ? s->source : "u@h:/x");
		e->options = "";
		e->line = (int)i + 1;
		e->depth = mt_path_depth(s->target);
		e->noauto = s->noauto;
		b->man.n = i + 1;
	}
	b->man.v = b->ee;
	for (size_t i = 0; i < MAXM && w->live[i]; i++) {
		b->ld[i].dev = makedev(0, w->live[i]);
		b->ld[i].keeper_pid = 42;
		b->live.n = i + 1;
	}
	b->live.v = b->ld;
}

/* Builds the plan for one pass at `now`; the tables stay in `b`. */
static int pass(const struct world *w, struct recover_state *st, double now,
		long confirm_runs, double min_age, struct built *b)
{
	build_tables(w, b);
	b->pre[0] = "pre1";
	b->post[0] = "post1";
	b->in = (struct plan_input){
		.root = ROOT, .mt = &b->mt, .res = b->res, .man = &b->man,
		.live = &b->live, .pre = b->pre, .npre = 1, .post = b->post,
		.npost = 1, .confirm_runs = confirm_runs, .min_age = min_age,
		.now = now,
	};
	return plan_build(&b->in, st, &b->p);
}

/* The steps as one line: "abort:/r/a pre umount:/r/a mount:/r/a probe post". */
static const char *steps_str(const struct plan *p, char *buf, size_t sz)
{
	static const char *const kind[] = { "abort", "pre", "umount", "mount", "probe", "post" };
	size_t n = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < p->nsteps && n < sz; i++) {
		const struct step *s = &p->steps[i];
		int has_path = s->kind == STEP_ABORT || s->kind == STEP_UMOUNT ||
			       s->kind == STEP_MOUNT;

		n += (size_t)snprintf(buf + n, sz - n, "%s%s%s%s", i ? " " : "",
				      kind[s->kind], has_path ? ":" : "",
				      has_path ? s->path : "");
	}
	return buf;
}

/* ---- verdicts ------------------------------------------------------------ */

static void test_verdicts(void)
{
	static const struct {
		const char *fstype, *super;
		int listed, live, shadowed;
		enum probe_state probe;
		enum mirror_health mirror;
		enum verdict want;
	} t[] = {
		{ "fuse.sshfs", NULL, 1, 0, 0, PROBE_OK, MIRROR_NONE, V_HEALTHY },
		{ "fuse.sshfs", NULL, 1, 0, 0, PROBE_STALE, MIRROR_NONE, V_STALE },
		{ "fuse.sshfs", NULL, 1, 0, 0, PROBE_HUNG, MIRROR_NONE, V_HUNG },
		{ "fuse.sshfs", NULL, 1, 0, 0, PROBE_MISSING, MIRROR_NONE, V_OTHER },
		{ "fuse.sshfs", NULL, 1, 0, 0, PROBE_ERROR, MIRROR_NONE, V_OTHER },
		/* not listed in the manifest: reported only */
		{ "fuse.sshfs", NULL, 0, 0, 0, PROBE_STALE, MIRROR_NONE, V_NOT_OURS },
		{ "fuse.sshfs", NULL, 0, 0, 0, PROBE_HUNG, MIRROR_NONE, V_NOT_OURS },
		{ "fuse.sshfs", NULL, 0, 0, 0, PROBE_OK, MIRROR_NONE, V_HEALTHY },
		/* listed, but a FUSE mount a user made (user_id != 0) */
		{ "fuse.sshfs", "rw,user_id=1000,group_id=1000", 1, 0, 0, PROBE_STALE,
		  MIRROR_NONE, V_NOT_OURS },
		/* a FUSE mount without user_id: not provably root's */
		{ "fuse.sshfs", "rw", 1, 0, 0, PROBE_STALE, MIRROR_NONE, V_NOT_OURS },
		/* not FUSE: listed is enough */
		{ "nfs", "rw", 1, 0, 0, PROBE_STALE, MIRROR_NONE, V_STALE },
		/* a live steadyfs device is left alone, whatever the probe says */
		{ "fuse.sshfs", NULL, 1, 1, 0, PROBE_STALE, MIRROR_NONE, V_LEFT_ALONE },
		{ "fuse.sshfs", NULL, 1, 1, 0, PROBE_HUNG, MIRROR_NONE, V_LEFT_ALONE },
		{ "fuse.sshfs", NULL, 1, 1, 0, PROBE_OK, MIRROR_NONE, V_HEALTHY },
		/* steadyfs with a fresh mirror, or degraded: left alone */
		{ "fuse.steadyfs", NULL, 1, 0, 0, PROBE_HUNG, MIRROR_FRESH, V_LEFT_ALONE },
		{ "fuse.steadyfs", NULL, 1, 0, 0, PROBE_HUNG, MIRROR_STALE, V_HUNG },
		{ "fuse.steadyfs", NULL, 1, 0, 0, PROBE_STALE, MIRROR_MISSING, V_STALE },
		{ "fuse.sshfs", NULL, 1, 0, 0, PROBE_DEGRADED, MIRROR_NONE, V_LEFT_ALONE },
		/* a fresh mirror only counts for steadyfs */
		{ "fuse.sshfs", NULL, 1, 0, 0, PROBE_STALE, MIRROR_FRESH, V_STALE },
		/* shadowed: not probed */
		{ "fuse.sshfs", NULL, 1, 0, 1, PROBE_STALE, MIRROR_NONE, V_SHADOWED },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct world w = {
			.m = { { .target = "/r/a", .fstype = t[i].fstype, .super = t[i].super,
				 .probe = t[i].probe, .mirror = t[i].mirror,
				 .shadowed = t[i].shadowed } },
			.e = { { .target = "/r/a", .fstype = t[i].fstype } },
			.live = { t[i].live ? 1 : 0 },
		};
		struct built b;
		int ours;

		if (!t[i].listed)
			w.e[0].source = "someone@else:/";
		build_tables(&w, &b);
		ours = plan_mount_ours(&b.man, &b.me[0]);
		if (!CHECK_EQ(plan_verdict(&b.me[0], &b.res[0],
					   t[i].live ? &b.ld[0] : NULL, ours), t[i].want))
			fprintf(stderr, "  row %zu (%s, probe %s)\n", i, t[i].fstype,
				probe_state_name(t[i].probe));
	}
}

/* Ours needs the source and the type of one entry to match. */
static void test_ours_needs_source_and_type(void)
{
	struct world w = {
		.m = { { .target = "/r/a", .fstype = "fuse.sshfs", .source = "u@h:/x" } },
		.e = { { .target = "/r/b", .fstype = "fuse.sshfs", .source = "u@h:/y" },
		       { .target = "/r/c", .fstype = "nfs", .source = "u@h:/x" } },
	};
	struct built b;

	build_tables(&w, &b);
	CHECK(!plan_mount_ours(&b.man, &b.me[0]));
	b.ee[1].fstype = "fuse.sshfs";   /* another target: still ours */
	CHECK(plan_mount_ours(&b.man, &b.me[0]));
}

/* ---- sightings and confirmation ------------------------------------------- */

static const struct world one_stale = {
	.m = { { .target = "/r/a", .probe = PROBE_STALE } },
	.e = { { .target = "/r/a" } },
};
static const struct world one_healthy = {
	.m = { { .target = "/r/a" } },
	.e = { { .target = "/r/a" } },
};

/* confirm_runs consecutive passes and min_age seconds, both needed. */
static void test_confirmation(void)
{
	static const struct {
		long runs;
		double min_age;
		double when[4];     /* pass times; 0 ends */
		int confirmed[4];   /* after each pass */
	} t[] = {
		{ 1, 0, { 10 }, { 1 } },
		{ 2, 0, { 10, 20, 30 }, { 0, 1, 1 } },
		{ 3, 0, { 10, 20, 30 }, { 0, 0, 1 } },
		{ 2, 100, { 10, 20, 109, 110 }, { 0, 0, 0, 1 } },
		{ 1, 100, { 10, 110 }, { 0, 1 } },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct recover_state st = { 0 };

		for (size_t k = 0; k < 4 && t[i].when[k]; k++) {
			struct built b;

			if (!CHECK_EQ(pass(&one_stale, &st, t[i].when[k], t[i].runs,
					   t[i].min_age, &b), 0))
				continue;
			CHECK_EQU(b.p.nbad, 1);
			CHECK_EQ(b.p.mv[0].seen.count, (long)k + 1);
			CHECK_EQ(b.p.mv[0].seen.first_seen, 10);
			if (!CHECK_EQU(b.p.nconfirmed, (size_t)t[i].confirmed[k]) ||
			    !CHECK_EQ(plan_ready(&b.p), t[i].confirmed[k]))
				fprintf(stderr, "  row %zu pass %zu\n", i, k);
			/* an unconfirmed bad mount is planned for too: stale is final */
			CHECK(b.p.nsteps > 0);
			plan_release(&b.p);
		}
		state_release(&st);
	}
}

/* A healthy pass in between starts the count again. */
static void test_confirmation_is_consecutive(void)
{
	const struct world *seq[] = { &one_stale, &one_healthy, &one_stale, &one_stale };
	const long want[] = { 1, 0, 1, 2 };
	struct recover_state st = { 0 };

	for (size_t k = 0; k < 4; k++) {
		struct built b;

		if (!CHECK_EQ(pass(seq[k], &st, 10.0 * (double)(k + 1), 2, 0, &b), 0))
			continue;
		CHECK_EQ(b.p.mv[0].seen.count, want[k]);
		CHECK_EQU(b.p.nconfirmed, k == 3);
		CHECK_EQU(st.n, want[k] ? 1 : 0);
		plan_release(&b.p);
	}
	state_release(&st);
}

/* Stacked mounts on one target count once per pass; records outside the
 * pass's root are kept untouched. */
static void test_sightings_once_per_pass_and_root(void)
{
	struct world w = {
		.m = { { .target = "/r/a", .probe = PROBE_STALE },
		       { .target = "/r/a", .probe = PROBE_HUNG, .fstype = "nfs" } },
		.e = { { .target = "/r/a" }, { .target = "/r/b", .fstype = "nfs", .noauto = 1 } },
	};
	struct recover_state st = { 0 };
	struct built b;

	CHECK(state_sight(&st, "/elsewhere/x", "stale", 1) != NULL);
	for (int k = 0; k < 2; k++) {
		if (!CHECK_EQ(pass(&w, &st, 10 + k, 2, 0, &b), 0))
			continue;
		/* the second mount on /r/a is listed as nfs on another target */
		CHECK_EQ(b.p.mv[0].v, V_STALE);
		CHECK_EQ(b.p.mv[1].v, V_HUNG);
		CHECK_EQ(b.p.mv[0].seen.count, k + 1);
		CHECK_EQ(b.p.mv[1].seen.count, k + 1);
		plan_release(&b.p);
	}
	CHECK(state_find(&st, "/elsewhere/x") != NULL);
	CHECK_EQ(state_find(&st, "/elsewhere/x")->count, 1);
	state_release(&st);
}

/* Not ours, left alone or another error: reported, never counted. */
static void test_not_counted(void)
{
	static const struct world t[] = {
		{ .m = { { .target = "/r/a", .probe = PROBE_STALE } },
		  .e = { { .target = "/r/z", .source = "other:/" } } },
		{ .m = { { .target = "/r/a", .probe = PROBE_STALE } },
		  .e = { { .target = "/r/a" } }, .live = { 1 } },
		{ .m = { { .target = "/r/a", .probe = PROBE_ERROR } },
		  .e = { { .target = "/r/a" } } },
	};
	static const enum verdict want[] = { V_NOT_OURS, V_LEFT_ALONE, V_OTHER };
	static const int noteworthy[] = { 1, 1, 0 };

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct recover_state st = { 0 };
		struct built b;

		if (!CHECK_EQ(pass(&t[i], &st, 10, 1, 0, &b), 0))
			continue;
		CHECK_EQ(b.p.mv[0].v, want[i]);
		/* /r/z of row 0 is absent and noauto is 0: that one is bad */
		CHECK_EQU(b.p.nbad, i == 0 ? 1 : 0);
		CHECK(state_find(&st, "/r/a") == NULL);
		CHECK_EQ(plan_noteworthy(&b.p), noteworthy[i]);
		CHECK(!plan_all_healthy(&b.p));
		plan_release(&b.p);
		state_release(&st);
	}
}

static void test_all_healthy(void)
{
	struct world w = {
		.m = { { .target = "/r/a" }, { .target = "/r/a", .shadowed = 1 } },
		.e = { { .target = "/r/a" }, { .target = "/r/n", .noauto = 1 } },
	};
	struct recover_state st = { 0 };
	struct built b;
	char buf[256];

	if (!CHECK_EQ(pass(&w, &st, 10, 1, 0, &b), 0))
		return;
	CHECK_EQ(b.p.mv[1].v, V_SHADOWED);
	CHECK(plan_all_healthy(&b.p));
	CHECK(!plan_action_needed(&b.p));
	CHECK_EQU(b.p.nabsent, 0);   /* noauto entries are never absent */
	CHECK_STR(steps_str(&b.p, buf, sizeof(buf)), "");
	plan_release(&b.p);
	state_release(&st);
}

/* ---- blocked -------------------------------------------------------------- */

static void test_blocked(void)
{
	static const struct {
		struct world w;
		int blocked;
		const char *why;     /* a part of blocked_why */
	} t[] = {
		/* a bad mount on ROOT itself that the manifest does not list */
		{ { .m = { { .target = "/r", .probe = PROBE_STALE } },
		    .e = { { .target = "/r/x", .noauto = 1 } } },
		  1, "is the root itself" },
		/* ... listed: not blocked */
		{ { .m = { { .target = "/r", .probe = PROBE_STALE } },
		    .e = { { .target = "/r" } } }, 0, NULL },
		/* a healthy mount below a bad one, not listed */
		{ { .m = { { .target = "/r/a", .probe = PROBE_STALE },
			   { .target = "/r/a/b", .fstype = "tmpfs" } },
		    .e = { { .target = "/r/a" } } },
		  1, "the manifest does not list it" },
		/* ... listed: it is mounted again after, not blocked */
		{ { .m = { { .target = "/r/a", .probe = PROBE_STALE },
			   { .target = "/r/a/b", .fstype = "tmpfs" } },
		    .e = { { .target = "/r/a" }, { .target = "/r/a/b", .fstype = "tmpfs" } } },
		  0, NULL },
		/* a live steadyfs below a bad mount, even when listed */
		{ { .m = { { .target = "/r/a", .probe = PROBE_STALE },
			   { .target = "/r/a/b", .probe = PROBE_HUNG, .minor = 7 } },
		    .e = { { .target = "/r/a" }, { .target = "/r/a/b" } }, .live = { 7 } },
		  1, "is a live steadyfs mount" },
		/* a bad mount below a bad mount: both go, not blocked */
		{ { .m = { { .target = "/r/a", .probe = PROBE_STALE },
			   { .target = "/r/a/b", .probe = PROBE_STALE } },
		    .e = { { .target = "/r/a" }, { .target = "/r/a/b" } } }, 0, NULL },
		/* a sibling with a common prefix is not below */
		{ { .m = { { .target = "/r/a", .probe = PROBE_STALE },
			   { .target = "/r/ab", .fstype = "tmpfs" } },
		    .e = { { .target = "/r/a" } } }, 0, NULL },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct recover_state st = { 0 };
		struct built b;

		if (!CHECK_EQ(pass(&t[i].w, &st, 10, 1, 0, &b), 0))
			continue;
		if (!CHECK_EQ(b.p.blocked, t[i].blocked))
			fprintf(stderr, "  row %zu: %s\n", i, b.p.blocked_why);
		if (t[i].why)
			CHECK(strstr(b.p.blocked_why, t[i].why) != NULL);
		CHECK_EQ(plan_ready(&b.p), !t[i].blocked);
		plan_release(&b.p);
		state_release(&st);
	}
}

/* ---- the steps and their order ---------------------------------------------- */

static void test_step_order(void)
{
	static const struct {
		struct world w;
		const char *want;
	} t[] = {
		/* one stale mount: pre, unmount, mount again, probe, post */
		{ one_stale, "pre umount:/r/a mount:/r/a probe post" },
		/* hung FUSE: its connection aborted first; hung non-FUSE: not */
		{ { .m = { { .target = "/r/a", .probe = PROBE_HUNG },
			   { .target = "/r/b/c", .probe = PROBE_HUNG, .fstype = "nfs" } },
		    .e = { { .target = "/r/a" }, { .target = "/r/b/c", .fstype = "nfs" } } },
		  "abort:/r/a pre umount:/r/b/c umount:/r/a mount:/r/a mount:/r/b/c probe post" },
		/* one connection seen twice (a bind of it): aborted once */
		{ { .m = { { .target = "/r/a", .probe = PROBE_HUNG, .minor = 5 },
			   { .target = "/r/c/d", .probe = PROBE_HUNG, .minor = 5 } },
		    .e = { { .target = "/r/a" }, { .target = "/r/c/d" } } },
		  "abort:/r/a pre umount:/r/c/d umount:/r/a mount:/r/a mount:/r/c/d probe post" },
		/* unmounts deepest first, mounts shallowest first (unmounts of
		 * one depth have no order: the table avoids ties) */
		{ { .m = { { .target = "/r/a", .probe = PROBE_STALE },
			   { .target = "/r/a/b/c", .probe = PROBE_STALE },
			   { .target = "/r/a/b", .probe = PROBE_STALE } },
		    .e = { { .target = "/r/a/b/c" }, { .target = "/r/a/b" }, { .target = "/r/a" } } },
		  "pre umount:/r/a/b/c umount:/r/a/b umount:/r/a mount:/r/a mount:/r/a/b "
		  "mount:/r/a/b/c probe post" },
		/* mounts of one depth: in manifest order */
		{ { .e = { { .target = "/r/y" }, { .target = "/r/x" }, { .target = "/r/w/v" },
			   { .target = "/r/z" } } },
		  "pre mount:/r/y mount:/r/x mount:/r/z mount:/r/w/v probe post" },
		/* a healthy listed mount below a bad one is mounted again */
		{ { .m = { { .target = "/r/a", .probe = PROBE_STALE },
			   { .target = "/r/a/b", .fstype = "tmpfs" } },
		    .e = { { .target = "/r/a" }, { .target = "/r/a/b", .fstype = "tmpfs" } } },
		  "pre umount:/r/a mount:/r/a mount:/r/a/b probe post" },
		/* a healthy listed mount elsewhere is not touched */
		{ { .m = { { .target = "/r/a", .probe = PROBE_STALE }, { .target = "/r/b" } },
		    .e = { { .target = "/r/a" }, { .target = "/r/b" } } },
		  "pre umount:/r/a mount:/r/a probe post" },
		/* absent: mounted; a noauto entry is unmounted, never mounted */
		{ { .m = { { .target = "/r/n", .probe = PROBE_STALE } },
		    .e = { { .target = "/r/gone" }, { .target = "/r/n", .noauto = 1 } } },
		  "pre umount:/r/n mount:/r/gone probe post" },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct recover_state st = { 0 };
		struct built b;
		char buf[512];

		if (!CHECK_EQ(pass(&t[i].w, &st, 10, 1, 0, &b), 0))
			continue;
		if (!CHECK_STR(steps_str(&b.p, buf, sizeof(buf)), t[i].want))
			fprintf(stderr, "  row %zu: got  '%s'\n          want '%s'\n", i, buf,
				t[i].want);
		plan_release(&b.p);
		state_release(&st);
	}
}

/* The abort step names the kernel's connection number for the device. */
static void test_abort_step_fields(void)
{
	struct world w = {
		.m = { { .target = "/r/a", .probe = PROBE_HUNG, .minor = 9 } },
		.e = { { .target = "/r/a" } },
	};
	struct recover_state st = { 0 };
	struct built b;

	if (!CHECK_EQ(pass(&w, &st, 10, 1, 0, &b), 0))
		return;
	if (CHECK(b.p.nsteps > 0) && CHECK_EQ(b.p.steps[0].kind, STEP_ABORT)) {
		CHECK_EQU(b.p.steps[0].conn, fusectl_conn(0, 9));
		CHECK_EQ(b.p.steps[0].mnt_id, 100);
		CHECK_EQU(b.p.steps[0].dev, makedev(0, 9));
	}
	CHECK_EQU(b.p.nhung, 1);
	CHECK_EQU(b.p.nstale, 0);
	plan_release(&b.p);
	state_release(&st);
}

/* ---- gates --------------------------------------------------------------- */

struct reasons {
	char text[8][256];
	size_t n;
};

static void keep_reason(void *ctx, const char *reason)
{
	struct reasons *r = ctx;

	if (r->n < 8)
		snprintf(r->text[r->n++], sizeof(r->text[0]), "%s", reason);
}

static void test_gates(void)
{
	static const struct {
		int blocked, apply, enabled, confirmed;
		double attempts[4];     /* earlier attempts; 0 ends */
		double cooldown, window;
		long max;
		const char *want;       /* first words of each reason, "" all open */
	} t[] = {
		{ 0, 1, 1, 1, { 0 }, 900, 3600, 3, "" },
		{ 1, 1, 1, 1, { 0 }, 900, 3600, 3, "blocked," },
		{ 0, 0, 1, 1, { 0 }, 900, 3600, 3, "dry" },
		{ 0, 1, 0, 1, { 0 }, 900, 3600, 3, "disabled:" },
		{ 0, 1, 1, 0, { 0 }, 900, 3600, 3, "waiting" },
		/* every closed gate is named, in order */
		{ 1, 0, 0, 0, { 9950 }, 900, 3600, 1, "blocked, dry disabled: waiting cooldown: cap:" },
		/* cooldown: less than --cooldown since the last attempt */
		{ 0, 1, 1, 1, { 9500 }, 900, 3600, 3, "cooldown:" },
		{ 0, 1, 1, 1, { 9100 }, 900, 3600, 3, "" },
		{ 0, 1, 1, 1, { 9101 }, 900, 3600, 3, "cooldown:" },
		/* cap: --max-recoveries in the last --window seconds */
		{ 0, 1, 1, 1, { 7000, 8000, 9000 }, 900, 3600, 3, "cap:" },
		{ 0, 1, 1, 1, { 7000, 8000, 9000 }, 900, 3600, 4, "" },
		{ 0, 1, 1, 1, { 6400, 8000, 9000 }, 900, 3600, 3, "" },
		{ 0, 1, 1, 1, { 6401, 8000, 9000 }, 900, 3600, 3, "cap:" },
		{ 0, 1, 1, 1, { 8000, 9000 }, 900, 3600, 1, "cap:" },
	};
	const double now = 10000;

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct recover_opts o = {
			.apply = t[i].apply, .sentinel = "/s", .confirm_runs = 2,
			.min_age = 120, .cooldown = t[i].cooldown, .window = t[i].window,
			.max_recoveries = t[i].max,
		};
		struct plan p = { .blocked = t[i].blocked, .nconfirmed = (size_t)t[i].confirmed,
				  .nbad = 1 };
		struct recover_state st = { 0 };
		struct reasons r = { .n = 0 };
		char got[256] = "";
		size_t n = 0;
		int open;

		for (size_t k = 0; k < 4 && t[i].attempts[k]; k++)
			state_record_attempt(&st, t[i].attempts[k]);
		open = gates_open(&p, &st, &o, t[i].enabled, now, keep_reason, &r);
		for (size_t k = 0; k < r.n; k++)
			n += (size_t)snprintf(got + n, sizeof(got) - n, "%s%.*s", k ? " " : "",
					      (int)strcspn(r.text[k], " "), r.text[k]);
		CHECK_EQ(open, t[i].want[0] == '\0');
		if (!CHECK_STR(got, t[i].want))
			fprintf(stderr, "  row %zu: got '%s' want '%s'\n", i, got, t[i].want);
	}
}

/* The attempt record keeps the newest STATE_MAX_ATTEMPTS and counts all. */
static void test_attempts_ring(void)
{
	struct recover_state st = { 0 };

	for (int i = 1; i <= STATE_MAX_ATTEMPTS + 3; i++)
		state_record_attempt(&st, i);
	CHECK_EQU(st.nattempts, STATE_MAX_ATTEMPTS);
	CHECK_EQ(st.attempts[0], 4);
	CHECK_EQ(st.attempts[STATE_MAX_ATTEMPTS - 1], STATE_MAX_ATTEMPTS + 3);
	CHECK_EQ(st.recoveries_total, STATE_MAX_ATTEMPTS + 3);
	CHECK_EQ(st.last_attempt, STATE_MAX_ATTEMPTS + 3);
	CHECK_EQU(state_attempts_since(&st, STATE_MAX_ATTEMPTS + 3, 2), 2);
}

int main(void)
{
	UNIT_RUN(test_verdicts);
	UNIT_RUN(test_ours_needs_source_and_type);
	UNIT_RUN(test_confirmation);
	UNIT_RUN(test_confirmation_is_consecutive);
	UNIT_RUN(test_sightings_once_per_pass_and_root);
	UNIT_RUN(test_not_counted);
	UNIT_RUN(test_all_healthy);
	UNIT_RUN(test_blocked);
	UNIT_RUN(test_step_order);
	UNIT_RUN(test_abort_step_fields);
	UNIT_RUN(test_gates);
	UNIT_RUN(test_attempts_ring);
	return unit_summary("test_plan");
}
