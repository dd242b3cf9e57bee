/*
 * plan: verdicts per mount and the ordered steps of a recovery. See
 * plan.h for the rules.
 */
#include "plan.h"

#include <stdlib.h>
#include <string.h>

#include "fusectl.h"

static int is_bad(enum verdict v)
{
	return v == V_STALE || v == V_HUNG;
}

const char *verdict_name(enum verdict v)
{
	switch (v) {
	case V_HEALTHY: return "healthy";
	case V_LEFT_ALONE: return "left alone";
	case V_STALE: return "stale";
	case V_HUNG: return "hung";
	case V_OTHER: return "error";
	case V_SHADOWED: return "shadowed";
	case V_NOT_OURS: return "not ours";
	}
	return "?";
}

int plan_mount_ours(const struct manifest *man, const struct mount_entry *m)
{
	int listed = 0;

	/* A local user chooses a FUSE mount's fsname and subtype freely (a
	 * setuid fusermount3), so only the kernel's user_id says who made it. */
	if (mount_is_fuse(m) && mount_fuse_user(m) != 0)
		return 0;
	for (size_t i = 0; i < man->n && !listed; i++)
		listed = strcmp(man->v[i].source, m->source) == 0 &&
			 strcmp(man->v[i].fstype, m->fstype) == 0;
	return listed;
}

enum verdict plan_verdict(const struct mount_entry *m, const struct probe_result *r,
			  const struct live_dev *live, int ours)
{
	if (m->shadowed)
		return V_SHADOWED;
	/* A live steadyfs daemon handles its own outage; recovery would only
	 * make it worse, whatever the probe saw, at whatever path. */
	if (live || r->state == PROBE_DEGRADED ||
	    (mount_is_steadyfs(m) && r->mirror.health == MIRROR_FRESH))
		return r->state == PROBE_OK ? V_HEALTHY : V_LEFT_ALONE;
	switch (r->state) {
	case PROBE_OK: return V_HEALTHY;
	case PROBE_STALE: return ours ? V_STALE : V_NOT_OURS;
	case PROBE_HUNG: return ours ? V_HUNG : V_NOT_OURS;
	default: return V_OTHER;
	}
}

int plan_noteworthy(const struct plan *p)
{
	for (size_t i = 0; i < p->nmv; i++)
		if (p->mv[i].v == V_LEFT_ALONE || p->mv[i].v == V_NOT_OURS)
			return 1;
	return 0;
}

/* Counts `path` as seen bad; fills `out`. Returns 0, or -1 out of memory. */
static int sight(const struct plan_input *in, struct recover_state *st, const char *path,
		 const char *kind, struct plan *p, struct seen *out)
{
	const struct sighting *s = state_sight(st, path, kind, in->now);

	if (!s)
		return -1;
	out->count = s->count;
	out->first_seen = s->first_seen;
	out->confirmed = s->count >= in->confirm_runs &&
		in->now - s->first_seen >= in->min_age;
	p->nbad++;
	p->nconfirmed += (size_t)out->confirmed;
	return 0;
}

static int push_step(struct plan *p, size_t cap, struct step s)
{
	if (p->nsteps >= cap)
		return -1;
	p->steps[p->nsteps++] = s;
	return 0;
}

/* Verdicts and sightings for the mounted entries. */
static int judge_mounts(const struct plan_input *in, struct recover_state *st,
			struct plan *p)
{
	for (size_t i = 0; i < in->mt->n; i++) {
		struct mount_verdict *mv = &p->mv[i];

		mv->m = &in->mt->v[i];
		mv->r = mv->m->shadowed ? NULL : &in->res[i];
		mv->live = in->live ? live_find(in->live, mv->m->dev) : NULL;
		mv->ours = plan_mount_ours(in->man, mv->m);
		mv->v = mv->r ? plan_verdict(mv->m, mv->r, mv->live, mv->ours) : V_SHADOWED;
		mv->in_manifest = manifest_find(in->man, mv->m->target) != NULL;
		if (!is_bad(mv->v))
			continue;
		if (sight(in, st, mv->m->target, verdict_name(mv->v), p, &mv->seen) < 0)
			return -1;
		p->nstale += mv->v == V_STALE;
		p->nhung += mv->v == V_HUNG;
	}
	p->nmv = in->mt->n;
	return 0;
}

/* Manifest entries with nothing mounted on their target. */
static int judge_absent(const struct plan_input *in, struct recover_state *st,
			struct plan *p)
{
	for (size_t i = 0; i < in->man->n; i++) {
		const struct manifest_entry *e = &in->man->v[i];
		struct absent_entry *a = &p->absent[p->nabsent];

		if (e->noauto || mounttab_find(in->mt, e->target))
			continue;
		a->e = e;
		if (sight(in, st, e->target, "absent", p, &a->seen) < 0)
			return -1;
		p->nabsent++;
	}
	return 0;
}

/* Sets p->blocked when a bad mount may not be unmounted. */
static void check_blocked(const struct plan_input *in, struct plan *p)
{
	for (size_t i = 0; i < p->nmv && !p->blocked; i++) {
		const struct mount_verdict *b = &p->mv[i];

		if (!is_bad(b->v))
			continue;
		if (strcmp(b->m->target, in->root) == 0 && !b->in_manifest) {
			p->blocked = 1;
			snprintf(p->blocked_why, sizeof(p->blocked_why),
				 "'%s' is the root itself and the manifest does not list it",
				 b->m->target);
		}
		for (size_t j = 0; j < p->nmv && !p->blocked; j++) {
			const struct mount_verdict *h = &p->mv[j];

			if (is_bad(h->v) || strcmp(h->m->target, b->m->target) == 0 ||
			    !mt_path_within(h->m->target, b->m->target))
				continue;
			if (h->v == V_LEFT_ALONE || !h->in_manifest) {
				p->blocked = 1;
				snprintf(p->blocked_why, sizeof(p->blocked_why),
					 "'%s' (%s) lies below bad mount '%s' and %s: a lazy "
					 "unmount would detach it", h->m->target,
					 verdict_name(h->v), b->m->target,
					 h->v == V_LEFT_ALONE ? "is a live steadyfs mount" :
					 "the manifest does not list it");
			}
		}
	}
}

static int cmp_depth_deepest(const void *a, const void *b)
{
	const struct step *x = a, *y = b;
	int dx = mt_path_depth(x->path), dy = mt_path_depth(y->path);

	return dx != dy ? dy - dx : 0;
}

static int cmp_depth_shallowest(const void *a, const void *b)
{
	const struct step *x = a, *y = b;

	if (x->entry->depth != y->entry->depth)
		return x->entry->depth - y->entry->depth;
	return x->entry->line - y->entry->line;  /* manifest order */
}

/* 1 if manifest entry `e` is absent now or will be after the unmounts in
 * steps[from..to). */
static int will_be_absent(const struct plan_input *in, const struct manifest_entry *e,
			  const struct step *um, size_t nu)
{
	if (!mounttab_find(in->mt, e->target))
		return 1;
	for (size_t i = 0; i < nu; i++)
		if (mt_path_within(e->target, um[i].path))
			return 1;
	return 0;
}

static int add_aborts(struct plan *p, size_t cap)
{
	for (size_t i = 0; i < p->nmv; i++) {
		const struct mount_verdict *mv = &p->mv[i];
		unsigned long conn = fusectl_conn(mv->m->major, mv->m->minor);
		int dup = 0;

		if (mv->v != V_HUNG || !mount_is_fuse(mv->m))
			continue;
		for (size_t j = 0; j < p->nsteps; j++)
			dup |= p->steps[j].kind == STEP_ABORT && p->steps[j].conn == conn;
		if (!dup && push_step(p, cap, (struct step){ .kind = STEP_ABORT,
					.path = mv->m->target, .conn = conn,
					.mnt_id = mv->m->id, .dev = mv->m->dev }) < 0)
			return -1;
	}
	return 0;
}

static int add_hooks(struct plan *p, size_t cap, enum step_kind kind,
		     const char *const *cmds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (push_step(p, cap, (struct step){ .kind = kind, .cmd = cmds[i] }) < 0)
			return -1;
	return 0;
}

static int add_steps(const struct plan_input *in, struct plan *p, size_t cap)
{
	size_t first_um, first_mount;

	if (add_aborts(p, cap) < 0 || add_hooks(p, cap, STEP_PRE, in->pre, in->npre) < 0)
		return -1;
	first_um = p->nsteps;
	for (size_t i = 0; i < p->nmv; i++)
		if (is_bad(p->mv[i].v) &&
		    push_step(p, cap, (struct step){ .kind = STEP_UMOUNT,
				.path = p->mv[i].m->target, .mnt_id = p->mv[i].m->id,
				.dev = p->mv[i].m->dev }) < 0)
			return -1;
	qsort(p->steps + first_um, p->nsteps - first_um, sizeof(*p->steps),
	      cmp_depth_deepest);
	first_mount = p->nsteps;
	for (size_t i = 0; i < in->man->n; i++) {
		const struct manifest_entry *e = &in->man->v[i];

		if (!e->noauto &&
		    will_be_absent(in, e, p->steps + first_um, first_mount - first_um) &&
		    push_step(p, cap, (struct step){ .kind = STEP_MOUNT,
				.path = e->target, .entry = e }) < 0)
			return -1;
	}
	qsort(p->steps + first_mount, p->nsteps - first_mount, sizeof(*p->steps),
	      cmp_depth_shallowest);
	if (push_step(p, cap, (struct step){ .kind = STEP_PROBE, .path = in->root }) < 0)
		return -1;
	return add_hooks(p, cap, STEP_POST, in->post, in->npost);
}

int plan_build(const struct plan_input *in, struct recover_state *st, struct plan *p)
{
	size_t cap = 2 * in->mt->n + in->man->n + in->npre + in->npost + 1;

	memset(p, 0, sizeof(*p));
	p->mv = calloc(in->mt->n + 1, sizeof(*p->mv));
	p->absent = calloc(in->man->n + 1, sizeof(*p->absent));
	p->steps = calloc(cap, sizeof(*p->steps));
	if (!p->mv || !p->absent || !p->steps)
		goto fail;
	state_begin_pass(st, in->root);
	if (judge_mounts(in, st, p) < 0 || judge_absent(in, st, p) < 0)
		goto fail;
	state_end_pass(st, in->root);
	check_blocked(in, p);
	if (p->nbad && add_steps(in, p, cap) < 0)
		goto fail;
	return 0;
fail:
	plan_release(p);
	return -1;
}

int plan_all_healthy(const struct plan *p)
{
	for (size_t i = 0; i < p->nmv; i++)
		if (p->mv[i].v != V_HEALTHY && p->mv[i].v != V_SHADOWED)
			return 0;
	return p->nbad == 0;
}

void plan_release(struct plan *p)
{
	free(p->mv);
	free(p->absent);
	free(p->steps);
	memset(p, 0, sizeof(*p));
}

const char *step_describe(const struct step *s, char *buf, size_t bufsz)
{
	switch (s->kind) {
	case STEP_ABORT:
		snprintf(buf, bufsz, "abort fuse connection %lu (hung: %s)", s->conn, s->path);
		break;
	case STEP_PRE:
		snprintf(buf, bufsz, "pre hook: %s", s->cmd);
		break;
	case STEP_UMOUNT:
		snprintf(buf, bufsz, "lazy unmount %s", s->path);
		break;
	case STEP_MOUNT:
		snprintf(buf, bufsz, "mount %s from manifest entry %d (%s %s%s%s)", s->path,
			 s->entry->line, s->entry->fstype, s->entry->source,
			 s->entry->options[0] ? " -o " : "", s->entry->options);
		break;
	case STEP_PROBE:
		snprintf(buf, bufsz, "probe every mount under %s again", s->path);
		break;
	case STEP_POST:
		snprintf(buf, bufsz, "post hook (only if everything reads): %s", s->cmd);
		break;
	}
	return buf;
}

/* "stale (stat: Transport endpoint is not connected)". */
static void print_reason(FILE *out, const struct mount_verdict *mv)
{
	const struct probe_result *r = mv->r;

	fprintf(out, "%s", verdict_name(mv->v));
	if (mv->live)
		fprintf(out, " (live steadyfs: device %u:%u, keeper pid %ld, mirror %s)",
			mv->m->major, mv->m->minor, mv->live->keeper_pid, mv->live->mirror);
	else if (mv->v == V_NOT_OURS)
		fprintf(out, " (%s; never acted on)", mount_fuse_user(mv->m) > 0 ?
			"a FUSE mount a non-root user made" :
			"the manifest lists no entry with its source and type");
	if (!r)
		return;
	if (r->err)
		fprintf(out, " (%s: %s)", r->op ? r->op : "probe", strerror(r->err));
	else if (r->state == PROBE_HUNG)
		fprintf(out, " (no answer in %.1f s%s)", r->duration,
			r->reused ? ", earlier probe still stuck" : "");
	if (mv->m && mount_is_steadyfs(mv->m) && r->mirror.health != MIRROR_NONE)
		fprintf(out, " [mirror %s%s%s]", mirror_health_name(r->mirror.health),
			r->mirror.state[0] ? ", " : "", r->mirror.state);
}

static void print_seen(FILE *out, const struct plan_input *in, const struct seen *s)
{
	if (!s->count)
		return;
	fprintf(out, "; bad in %ld pass(es) (confirm-runs %ld), for %.0f s (min-age %.0f s): "
		"%s", s->count, in->confirm_runs, in->now - s->first_seen, in->min_age,
		s->confirmed ? "confirmed" : "not yet confirmed");
}

void plan_print(FILE *out, const struct plan_input *in, const struct plan *p)
{
	char buf[1024];

	fprintf(out, "root %s: %zu mount(s), %zu bad (%zu stale, %zu hung, %zu absent), "
		"%zu confirmed\n", in->root, p->nmv, p->nbad, p->nstale, p->nhung,
		p->nabsent, p->nconfirmed);
	for (size_t i = 0; i < p->nmv; i++) {
		const struct mount_verdict *mv = &p->mv[i];

		fprintf(out, "  %s  %s: ", mv->m->target, mv->m->fstype);
		print_reason(out, mv);
		print_seen(out, in, &mv->seen);
		fputc('\n', out);
	}
	for (size_t i = 0; i < p->nabsent; i++) {
		const struct absent_entry *a = &p->absent[i];

		fprintf(out, "  %s  %s: absent (manifest entry %d, nothing mounted)",
			a->e->target, a->e->fstype, a->e->line);
		print_seen(out, in, &a->seen);
		fputc('\n', out);
	}
	if (p->blocked)
		fprintf(out, "blocked, a person must look: %s\n", p->blocked_why);
	if (!p->nsteps)
		return;
	fprintf(out, "steps:\n");
	for (size_t i = 0; i < p->nsteps; i++)
		fprintf(out, "  %zu. %s\n", i + 1, step_describe(&p->steps[i], buf, sizeof(buf)));
}
