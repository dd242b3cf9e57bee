/*
 * plan: from one pass's observations (the mount table under ROOT, a probe
 * result per mount, the manifest, the sightings so far) to what recovery
 * would do, in order. Pure: no I/O except printing the plan to a stream,
 * so every rule below is decided in one place.
 *
 * Rules:
 *  - Mounts are judged by what they are, not by their path. A mount whose
 *    device belongs to a live steadyfs (live.h: its keeper is alive) is
 *    left alone whatever the probe says, at any path (a bind of a
 *    subfolder of it included); so is a steadyfs mount whose mirror is
 *    fresh.
 *  - Otherwise a mount is bad when the probe says stale or hung and it is
 *    ours: some manifest entry lists its source and its fstype, and, for
 *    FUSE, root made it (super option user_id=0). A stale or hung mount
 *    that is not ours (a local user's own FUSE mount, anything the
 *    manifest does not list) is reported, never acted on and never
 *    counted: it cannot start a recovery or use up the cap. A manifest
 *    entry with nothing mounted on its target is bad too ("absent").
 *    Other probe errors are reported and not acted on.
 *  - Each bad path is counted in the sightings; a recovery is wanted when
 *    at least one bad path is confirmed (seen bad in confirm_runs
 *    consecutive passes, first seen min_age seconds ago or more). It then
 *    covers every bad mount, confirmed or not: stale is final.
 *  - Steps: abort each hung FUSE connection once (by device number), the
 *    pre hooks, a lazy unmount of every bad mount deepest first, a mount
 *    of every manifest entry that is or will then be absent (its target,
 *    or a mount above it, is unmounted) shallowest first, a new probe,
 *    the post hooks.
 *  - Blocked (a person must look; nothing is done): a bad mount on ROOT
 *    itself that the manifest does not list, or a bad mount with a mount
 *    below it that is not bad and that the manifest does not list, or
 *    that is a steadyfs mount left alone (a lazy unmount would detach it).
 */
#ifndef STEADYFS_RECOVER_PLAN_H
#define STEADYFS_RECOVER_PLAN_H

#include <stdio.h>

#include "live.h"
#include "manifest.h"
#include "mounttab.h"
#include "probe.h"
#include "state.h"

enum verdict {
	V_HEALTHY = 0,
	V_LEFT_ALONE,   /* steadyfs with a fresh mirror, or degraded */
	V_STALE,
	V_HUNG,
	V_OTHER,        /* missing or another error: reported only */
	V_SHADOWED,     /* another mount sits on the same target: not probed */
	V_NOT_OURS,     /* stale or hung, but not ours to touch: reported only */
};

/* A bad path's sighting record as of this pass (a copy: the state's
 * array may move as records are added). */
struct seen {
	long count;          /* 0: not bad */
	double first_seen;
	int confirmed;
};

struct mount_verdict {
	const struct mount_entry *m;
	const struct probe_result *r;   /* NULL when shadowed */
	enum verdict v;
	struct seen seen;               /* for bad ones */
	int in_manifest;                /* its target is a manifest entry's */
	int ours;                       /* plan_mount_ours() */
	const struct live_dev *live;    /* its device's live steadyfs, or NULL */
};

struct absent_entry {
	const struct manifest_entry *e;
	struct seen seen;
};

enum step_kind { STEP_ABORT, STEP_PRE, STEP_UMOUNT, STEP_MOUNT, STEP_PROBE, STEP_POST };

struct step {
	enum step_kind kind;
	const char *path;                     /* ABORT, UMOUNT, MOUNT: the target */
	unsigned long conn;                   /* ABORT */
	int mnt_id;                           /* ABORT, UMOUNT: the mount seen */
	dev_t dev;                            /* ABORT, UMOUNT: its device */
	const struct manifest_entry *entry;   /* MOUNT */
	const char *cmd;                      /* PRE, POST */
};

struct plan_input {
	const char *root;
	const struct mounttab *mt;          /* mounts at or below root */
	const struct probe_result *res;     /* res[i] for mt->v[i] (unused if shadowed) */
	const struct manifest *man;
	const struct live_set *live;        /* devices of live steadyfs mounts */
	const char *const *pre, *const *post;
	size_t npre, npost;
	long confirm_runs;
	double min_age;
	double now;
};

struct plan {
	struct mount_verdict *mv;     /* one per mt entry, same order */
	size_t nmv;
	struct absent_entry *absent;  /* manifest entries not mounted now */
	size_t nabsent;
	struct step *steps;
	size_t nsteps;
	size_t nstale, nhung, nbad, nconfirmed;
	int blocked;
	char blocked_why[512];
};
#define PLAN_INIT {0}

/*
 * Builds the plan, recording sightings in `st` (begin/end of pass
 * included). Returns 0, or -1 when out of memory. `p` must be PLAN_INIT or
 * released; it points into `in`'s tables, which must outlive it.
 */
int plan_build(const struct plan_input *in, struct recover_state *st, struct plan *p);
void plan_release(struct plan *p);

/* 1 when something is bad (action needed), 0 when all is healthy. */
static inline int plan_action_needed(const struct plan *p) { return p->nbad > 0; }
/* 1 when every mount was found healthy (none left alone, none failing
 * in another way). */
int plan_all_healthy(const struct plan *p);
/* 1 when a recovery is wanted now: something confirmed and not blocked. */
static inline int plan_ready(const struct plan *p)
{
	return p->nconfirmed > 0 && !p->blocked;
}

/* Prints each mountpoint with its verdict and reason, then the steps. */
void plan_print(FILE *out, const struct plan_input *in, const struct plan *p);
/* One-line description of a step into `buf`; returns `buf`. */
const char *step_describe(const struct step *s, char *buf, size_t bufsz);
const char *verdict_name(enum verdict v);
/* The verdict for mount `m` whose probe gave `r`, `live` its device's
 * live steadyfs (or NULL) and `ours` plan_mount_ours() (the rules above). */
enum verdict plan_verdict(const struct mount_entry *m, const struct probe_result *r,
			  const struct live_dev *live, int ours);
/* 1 if recovery may act on `m`: a manifest entry lists its source and
 * fstype, and a FUSE mount was made by root (user_id=0). */
int plan_mount_ours(const struct manifest *man, const struct mount_entry *m);
/* 1 if the plan left a mount alone or found one not ours: a pass worth a
 * journal record even when nothing is to be done. */
int plan_noteworthy(const struct plan *p);

#endif
