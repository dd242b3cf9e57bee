/*
 * steadyfs-probe: bounded health probe of paths and of every mount under a
 * root. Builds the list of targets from the command line and the mount
 * table, runs lib/probe on them (each path in a child under a hard
 * deadline), then reports as a table, JSON (--json) and a Prometheus
 * textfile (--textfile). This process itself never touches a probed path.
 *
 * Exit status: 0 every path healthy, 1 some path unhealthy, 2 bad command
 * line (including an unusable --under root or --textfile folder),
 * 3 internal error. Each ends with one line on stderr.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "atomicfile.h"
#include "live.h"
#include "log.h"
#include "version.h"
#include "mounttab.h"
#include "probe.h"
#include "report.h"
#include "statedir.h"

enum { EXIT_HEALTHY = 0, EXIT_UNHEALTHY = 1, EXIT_USAGE = 2, EXIT_INTERNAL = 3 };

#define MAX_TIMEOUT_S 86400.0

static const char usage_text[] =
	"usage: steadyfs-probe [--timeout S] [--textfile PATH] [--json] [--under ROOT]\n"
	"                      [--mirror DIR] [--state-dir DIR] [PATH...]\n";

struct cli {
	double timeout;
	const char *textfile;
	int json;
	const char *under;
	const char *mirror;
	const char *state_dir;
	char **paths;
	int npaths;
};

/* Everything one invocation owns, released in reverse order of setup. */
struct app {
	struct cli cli;
	struct mounttab mt;
	struct live_set live;     /* live steadyfs devices and their mirrors */
	struct target *targets;   /* report.h: what is probed and how it is shown */
	size_t ntargets;
	struct probe_req *reqs;
	struct probe_result *res;
	char root[PATH_MAX];      /* --under, normalised */
	int root_idx;             /* index of ROOT's own probe, or -1 */
	struct fuse_timeout kt;   /* the kernel's FUSE request timeout */
};

static int parse_timeout(const char *s, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !isfinite(v) || v <= 0 || v > MAX_TIMEOUT_S)
		return -1;
	*out = v;
	return 0;
}

/* 0, or EXIT_USAGE after printing one line. */
static int parse_args(int argc, char **argv, struct cli *c)
{
	static const struct option longopts[] = {
		{ "timeout", required_argument, NULL, 't' },
		{ "textfile", required_argument, NULL, 'o' },
		{ "json", no_argument, NULL, 'j' },
		{ "under", required_argument, NULL, 'u' },
		{ "mirror", required_argument, NULL, 'm' },
		{ "state-dir", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	c->timeout = PROBE_DEFAULT_TIMEOUT_S;
	c->state_dir = PROBE_DEFAULT_STATE_DIR;
	opterr = 0;  /* our own one-line messages */
	while ((ch = getopt_long(argc, argv, "+:", longopts, NULL)) != -1) {
		switch (ch) {
		case 't':
			if (parse_timeout(optarg, &c->timeout) < 0) {
				log_err("bad --timeout '%s': want seconds, more than 0 and at most %g",
					optarg, MAX_TIMEOUT_S);
				return EXIT_USAGE;
			}
			break;
		case 'o': c->textfile = optarg; break;
		case 'j': c->json = 1; break;
		case 'u': c->under = optarg; break;
		case 'm': c->mirror = optarg; break;
		case 's': c->state_dir = optarg; break;
		case 'h':
			fputs(usage_text, stdout);
			return -1;
		case 'V':
			printf("steadyfs-probe %s\n", STEADYFS_VERSION);
			return -1;
		case ':':
			log_err("option '%s' needs a value", argv[optind - 1]);
			return EXIT_USAGE;
		default:
			log_err("unknown option '%s'", argv[optind - 1]);
			return EXIT_USAGE;
		}
	}
	c->paths = argv + optind;
	c->npaths = argc - optind;
	if (c->npaths == 0 && !c->under) {
		log_err("nothing to probe: give PATHs or --under ROOT");
		return EXIT_USAGE;
	}
	for (int i = 0; i < c->npaths; i++)
		if (!c->paths[i][0]) {
			log_err("empty path argument");
			return EXIT_USAGE;
		}
	return 0;
}

/* The mirror to read for a path on `mnt`: --mirror's, else the live
 * steadyfs's that serves its device (a bind mount of it has none at its
 * own path), else NULL (target_init() takes a steadyfs mount's default). */
static const char *mirror_of(const struct app *a, const struct mount_entry *mnt)
{
	const struct live_dev *live = mnt ? live_find(&a->live, mnt->dev) : NULL;

	if (a->cli.mirror)
		return a->cli.mirror;
	return live ? live->mirror : NULL;
}

/* Adds one target unless its normalised path is already there. */
static int add_target(struct app *a, const char *path, const struct mount_entry *mnt,
		      int hidden)
{
	struct target *t;
	char norm[PATH_MAX];

	if (mt_path_normalize(path, NULL, norm, sizeof(norm)) < 0) {
		log_err("bad path '%s': %s", path, strerror(errno));
		return EXIT_USAGE;
	}
	for (size_t i = 0; i < a->ntargets; i++)
		if (strcmp(a->targets[i].norm, norm) == 0) {
			a->targets[i].hidden &= hidden;
			return 0;
		}
	t = reallocarray(a->targets, a->ntargets + 1, sizeof(*t));
	if (!t) {
		log_err("cannot list targets: %s", strerror(ENOMEM));
		return EXIT_INTERNAL;
	}
	a->targets = t;
	t = &a->targets[a->ntargets++];
	mnt = mnt ? mnt : mounttab_containing(&a->mt, norm);
	if (target_init(t, path, norm, mnt, mirror_of(a, mnt), hidden) < 0) {
		log_err("bad path '%s': %s", path, strerror(errno));
		return EXIT_USAGE;
	}
	if (mnt && mount_is_fuse(mnt))
		t->req_timeout = a->kt.effective;
	return 0;
}

/* PATH arguments, then --under's mountpoints and ROOT itself (shown only
 * when it is a mountpoint or does not answer). */
static int collect_targets(struct app *a)
{
	int rc;

	for (int i = 0; i < a->cli.npaths; i++)
		if ((rc = add_target(a, a->cli.paths[i], NULL, 0)) != 0)
			return rc;
	if (!a->cli.under)
		return 0;
	for (size_t i = 0; i < a->mt.n; i++) {
		const struct mount_entry *e = &a->mt.v[i];

		if (!e->shadowed && mt_path_within(e->target, a->root))
			if ((rc = add_target(a, e->target, e, 0)) != 0)
				return rc;
	}
	if ((rc = add_target(a, a->root, NULL, 1)) != 0)
		return rc;
	for (size_t i = 0; i < a->ntargets; i++)
		if (strcmp(a->targets[i].norm, a->root) == 0)
			a->root_idx = (int)i;
	return 0;
}

static int run_probes(struct app *a)
{
	struct probe_opts o = { .timeout = a->cli.timeout, .state_dir = a->cli.state_dir };
	char err[512];

	a->reqs = calloc(a->ntargets, sizeof(*a->reqs));
	a->res = calloc(a->ntargets, sizeof(*a->res));
	if (!a->reqs || !a->res) {
		log_err("cannot start probes: %s", strerror(ENOMEM));
		return EXIT_INTERNAL;
	}
	for (size_t i = 0; i < a->ntargets; i++) {
		a->reqs[i].path = a->targets[i].path;
		a->reqs[i].mirror_dir = a->targets[i].mirror[0] ? a->targets[i].mirror : NULL;
	}
	if (probe_run(&o, a->reqs, a->ntargets, a->res, err, sizeof(err)) < 0) {
		log_err("%s", err);
		return EXIT_INTERNAL;
	}
	return 0;
}

/* --under ROOT must name a directory; its own probe says whether it does
 * (the check runs in a child like every other, so a hung ROOT cannot
 * hang us). A ROOT that does not answer is reported, not refused. */
static int check_root(struct app *a)
{
	const struct probe_result *r;

	if (a->root_idx < 0)
		return 0;
	r = &a->res[a->root_idx];
	if (r->state == PROBE_MISSING || (r->state == PROBE_ERROR && r->err == ENOTDIR)) {
		log_err("bad --under '%s': %s", a->cli.under, strerror(r->err));
		return EXIT_USAGE;
	}
	if (r->mode && !S_ISDIR(r->mode)) {
		log_err("bad --under '%s': %s", a->cli.under, strerror(ENOTDIR));
		return EXIT_USAGE;
	}
	if (!probe_result_healthy(r))
		a->targets[a->root_idx].hidden = 0;
	return 0;
}

static int finish(struct app *a)
{
	size_t shown = 0, bad = 0;
	char err[512];

	for (size_t i = 0; i < a->ntargets; i++) {
		if (a->targets[i].hidden)
			continue;
		shown++;
		bad += !probe_result_healthy(&a->res[i]);
	}
	if (a->cli.json) {
		if (report_json(stdout, a->targets, a->res, a->ntargets, a->cli.timeout,
				&a->kt) < 0) {
			log_err("cannot write JSON: %s", strerror(errno));
			return EXIT_INTERNAL;
		}
	} else if (report_table(stdout, a->targets, a->res, a->ntargets) < 0) {
		log_err("cannot write table: %s", strerror(errno));
		return EXIT_INTERNAL;
	}
	if (a->cli.textfile &&
	    report_textfile(a->cli.textfile, a->targets, a->res, a->ntargets, &a->kt,
			    err, sizeof(err)) < 0) {
		log_err("%s", err);
		return EXIT_INTERNAL;
	}
	if (shown == 0) {
		log_info("no mounts at or below '%s'", a->root);
		return EXIT_HEALTHY;
	}
	if (bad) {
		log_err("%zu of %zu paths unhealthy", bad, shown);
		return EXIT_UNHEALTHY;
	}
	log_info("%zu of %zu paths ok", shown, shown);
	return EXIT_HEALTHY;
}

static int prepare(struct app *a)
{
	char err[512];

	if (a->cli.textfile && atomicfile_check_dir(a->cli.textfile, err, sizeof(err)) < 0) {
		log_err("bad --textfile: %s", err);
		return EXIT_USAGE;
	}
	if (a->cli.under &&
	    mt_path_normalize(a->cli.under, NULL, a->root, sizeof(a->root)) < 0) {
		log_err("bad --under '%s': %s", a->cli.under, strerror(errno));
		return EXIT_USAGE;
	}
	/* The whole table: PATH arguments need their containing mount. */
	if (mounttab_load(&a->mt, "/", NULL, err, sizeof(err)) < 0) {
		log_err("%s", err);
		return EXIT_INTERNAL;
	}
	if (live_scan(&a->live, STATEDIR_BASE) < 0) {
		log_err("cannot read the mirrors: %s", strerror(ENOMEM));
		return EXIT_INTERNAL;
	}
	fuse_timeout_read(NULL, &a->kt);
	return collect_targets(a);
}

static void app_release(struct app *a)
{
	free(a->res);
	free(a->reqs);
	free(a->targets);
	live_release(&a->live);
	mounttab_release(&a->mt);
}

int main(int argc, char **argv)
{
	struct app a = { .mt = MOUNTTAB_INIT, .live = LIVE_SET_INIT, .root_idx = -1 };
	int rc;

	log_init("steadyfs-probe", SLOG_INFO);
	rc = parse_args(argc, argv, &a.cli);
	if (rc < 0)
		return EXIT_HEALTHY;  /* --help */
	if (rc == 0)
		rc = prepare(&a);
	if (rc == 0)
		rc = run_probes(&a);
	if (rc == 0)
		rc = check_root(&a);
	if (rc == 0)
		rc = finish(&a);
	app_release(&a);
	return rc;
}
