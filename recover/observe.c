/*
 * observe: mount table plus probes. See observe.h.
 */
#include "observe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "statedir.h"

/* Mirror directory per entry: probe_req keeps pointers into it. */
typedef char mirror_path[4096];

static int probe_all(struct observation *ob, double timeout, const char *probe_dir,
		     char *err, size_t errsz)
{
	struct probe_opts po = { .timeout = timeout, .state_dir = probe_dir };
	struct probe_req *reqs = calloc(ob->mt.n + 1, sizeof(*reqs));
	struct probe_result *res = calloc(ob->mt.n + 1, sizeof(*res));
	size_t *which = calloc(ob->mt.n + 1, sizeof(*which));
	mirror_path *mirrors = calloc(ob->mt.n + 1, sizeof(*mirrors));
	size_t n = 0;
	int rc = -1;

	if (!reqs || !res || !which || !mirrors) {
		snprintf(err, errsz, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < ob->mt.n; i++) {
		const struct mount_entry *m = &ob->mt.v[i];

		if (m->shadowed)
			continue;  /* the path reaches only the mount on top */
		reqs[n].path = m->target;
		/* A live steadyfs's mirror, for a bind of it too, whose own
		 * path has none. */
		if (live_find(&ob->live, m->dev))
			snprintf(mirrors[n], sizeof(mirrors[n]), "%s",
				 live_find(&ob->live, m->dev)->mirror);
		else if (!mount_is_steadyfs(m) ||
			 statedir_for_mount(m->target, mirrors[n], sizeof(mirrors[n])) < 0)
			mirrors[n][0] = '\0';
		if (mirrors[n][0])
			reqs[n].mirror_dir = mirrors[n];
		which[n++] = i;
	}
	if (n && probe_run(&po, reqs, n, res, err, errsz) < 0)
		goto out;
	for (size_t k = 0; k < n; k++)
		ob->res[which[k]] = res[k];
	rc = 0;
out:
	free(reqs);
	free(res);
	free(which);
	free(mirrors);
	return rc;
}

int observe(struct observation *ob, const char *root, double timeout,
	    const char *probe_dir, char *err, size_t errsz)
{
	char why[512];

	if (mounttab_load(&ob->mt, root, NULL, why, sizeof(why)) < 0) {
		snprintf(err, errsz, "cannot read the mount table: %s", why);
		return -1;
	}
	ob->res = calloc(ob->mt.n + 1, sizeof(*ob->res));
	if (!ob->res || live_scan(&ob->live, STATEDIR_BASE) < 0) {
		snprintf(err, errsz, "out of memory");
		observation_release(ob);
		return -1;
	}
	if (probe_all(ob, timeout, probe_dir, err, errsz) < 0) {
		observation_release(ob);
		return -1;
	}
	return 0;
}

void observation_release(struct observation *ob)
{
	mounttab_release(&ob->mt);
	live_release(&ob->live);
	free(ob->res);
	ob->res = NULL;
}
