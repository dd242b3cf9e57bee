/*
 * report: what steadyfs-probe probes (targets) and how it shows the
 * results: a table for people, JSON for programs, a Prometheus textfile
 * for node_exporter's textfile collector.
 */
#ifndef STEADYFS_PROBE_REPORT_H
#define STEADYFS_PROBE_REPORT_H

#include <limits.h>
#include <stddef.h>
#include <stdio.h>

#include "fusetimeout.h"
#include "mounttab.h"
#include "probe.h"

/* One probed path and the mount it lives on. */
struct target {
	char path[PATH_MAX];        /* as given (or the mountpoint for --under) */
	char norm[PATH_MAX];        /* absolute, normalised: the dedup key */
	char mountpoint[PATH_MAX];  /* target of the containing mount, "" if none */
	char fstype[64];
	char source[1024];
	unsigned int major, minor;
	int mount_id;               /* -1 if no containing mount */
	char mirror[PATH_MAX];      /* mirror dir to read, "" for none */
	int hidden;                 /* probed but not reported (ROOT of --under) */
	unsigned req_timeout;       /* FUSE mount: the kernel's request timeout
				     * (fusetimeout.h), s; 0 none */
};

/*
 * Fills `t` for `path` (normalised form `norm`) on mount `mnt` (may be
 * NULL). The mirror is `mirror` when given, else the default state dir of
 * a steadyfs mount, else none. Returns 0, or -1 with errno (ENAMETOOLONG).
 */
int target_init(struct target *t, const char *path, const char *norm,
		const struct mount_entry *mnt, const char *mirror, int hidden);

/* Each returns 0, or -1 with errno from the failed write. Hidden targets
 * are left out. */
int report_table(FILE *out, const struct target *t, const struct probe_result *r, size_t n);
int report_json(FILE *out, const struct target *t, const struct probe_result *r, size_t n,
		double timeout, const struct fuse_timeout *kt);
/* Writes the textfile atomically; 0, or -1 with a reason in `err`. `kt`
 * is the kernel's FUSE request timeout, reported as one gauge. */
int report_textfile(const char *path, const struct target *t, const struct probe_result *r,
		    size_t n, const struct fuse_timeout *kt, char *err, size_t errsz);

#endif
