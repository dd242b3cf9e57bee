/*
 * opts: command-line parsing for steadyfs-recover. See opts.h.
 */
#include "opts.h"
#include "version.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "atomicfile.h"
#include "fusectl.h"
#include "hooks.h"
#include "mounttab.h"

enum {
	O_ROOT = 256, O_MANIFEST, O_APPLY, O_SENTINEL, O_CONFIRM, O_MINAGE, O_COOLDOWN,
	O_MAXREC, O_WINDOW, O_GUARD, O_PRE, O_POST, O_HOOKTO, O_STATEDIR, O_LOCK,
	O_TEXTFILE, O_PROBETO, O_WATCH, O_DRILL, O_HELP, O_VERSION,
};

static const struct option long_opts[] = {
	{ "root", required_argument, NULL, O_ROOT },
	{ "manifest", required_argument, NULL, O_MANIFEST },
	{ "apply", no_argument, NULL, O_APPLY },
	{ "sentinel", required_argument, NULL, O_SENTINEL },
	{ "confirm-runs", required_argument, NULL, O_CONFIRM },
	{ "min-age", required_argument, NULL, O_MINAGE },
	{ "cooldown", required_argument, NULL, O_COOLDOWN },
	{ "max-recoveries", required_argument, NULL, O_MAXREC },
	{ "window", required_argument, NULL, O_WINDOW },
	{ "guard", required_argument, NULL, O_GUARD },
	{ "pre", required_argument, NULL, O_PRE },
	{ "post", required_argument, NULL, O_POST },
	{ "hook-timeout", required_argument, NULL, O_HOOKTO },
	{ "state-dir", required_argument, NULL, O_STATEDIR },
	{ "lock", required_argument, NULL, O_LOCK },
	{ "textfile", required_argument, NULL, O_TEXTFILE },
	{ "probe-timeout", required_argument, NULL, O_PROBETO },
	{ "watch", required_argument, NULL, O_WATCH },
	{ "drill", no_argument, NULL, O_DRILL },
	{ "help", no_argument, NULL, O_HELP },
	{ "version", no_argument, NULL, O_VERSION },
	{ NULL, 0, NULL, 0 },
};

void recover_opts_usage(FILE *out)
{
	fputs("usage: steadyfs-recover --root DIR --manifest FSTAB [--apply]\n"
	      "         [--sentinel FILE] [--confirm-runs N] [--min-age S] [--cooldown S]\n"
	      "         [--max-recoveries N --window S] [--guard CMD] [--pre CMD]...\n"
	      "         [--post CMD]... [--hook-timeout S] [--state-dir DIR] [--lock FILE]\n"
	      "         [--textfile PATH] [--probe-timeout S] [--watch S]\n"
	      "       steadyfs-recover --drill [--probe-timeout S] [--hook-timeout S]\n"
	      "exit: 0 healthy or recovered, 1 action needed but not taken, 2 usage,\n"
	      "      3 internal error, 4 recovery attempted and failed\n", out);
}

void recover_opts_defaults(struct recover_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->sentinel = RECOVER_DEFAULT_SENTINEL;
	o->confirm_runs = 2;
	o->min_age = 120;
	o->cooldown = 900;
	o->max_recoveries = 3;
	o->window = 21600;
	o->hook_timeout = 60;
	o->probe_timeout = 10;
	o->fusectl_dir = FUSECTL_DIR;
	snprintf(o->state_dir, sizeof(o->state_dir), "%s", RECOVER_DEFAULT_STATE_DIR);
}

/* Seconds: a finite number >= min (> min when `strict`). */
static int parse_secs(const char *name, const char *v, double min, int strict, double *out,
		      char *err, size_t errsz)
{
	char *end;
	double d;

	errno = 0;
	d = strtod(v, &end);
	if (errno || end == v || *end || !isfinite(d) || d < min || (strict && d == min)) {
		snprintf(err, errsz, "bad --%s '%s': want a number of seconds %s %g", name, v,
			 strict ? ">" : ">=", min);
		return -1;
	}
	*out = d;
	return 0;
}

static int parse_count(const char *name, const char *v, long *out, char *err, size_t errsz)
{
	char *end;
	long n;

	errno = 0;
	n = strtol(v, &end, 10);
	if (errno || end == v || *end || n < 1 || n > 1000000) {
		snprintf(err, errsz, "bad --%s '%s': want a whole number >= 1", name, v);
		return -1;
	}
	*out = n;
	return 0;
}

static int parse_path(const char *name, const char *v, char *out, size_t outsz,
		      char *err, size_t errsz)
{
	if (!v[0] || mt_path_normalize(v, NULL, out, outsz) < 0) {
		snprintf(err, errsz, "bad --%s '%s': %s", name, v,
			 v[0] ? strerror(errno) : "empty path");
		return -1;
	}
	return 0;
}

/* A hook is split once here so a bad one is a usage error, not a failed
 * recovery at 3 am. */
static int add_hook(const char *name, const char *v, const char ***list, size_t *n,
		    char *err, size_t errsz)
{
	char why[256];
	char **argv;
	const char **nl;

	if (hook_split(v, &argv, why, sizeof(why)) < 0) {
		snprintf(err, errsz, "bad --%s '%s': %s", name, v, why);
		return -1;
	}
	argv_free(argv);
	if (!list)
		return 0;
	nl = realloc(*list, (*n + 1) * sizeof(*nl));
	if (!nl) {
		snprintf(err, errsz, "out of memory");
		return -1;
	}
	nl[(*n)++] = v;
	*list = nl;
	return 0;
}

static int parse_one(struct recover_opts *o, int c, const char *v, int *lock_set,
		     char *err, size_t errsz)
{
	switch (c) {
	case O_ROOT: return parse_path("root", v, o->root, sizeof(o->root), err, errsz);
	case O_MANIFEST: o->manifest = v; return 0;
	case O_APPLY: o->apply = 1; return 0;
	case O_SENTINEL: o->sentinel = v; return 0;
	case O_CONFIRM: return parse_count("confirm-runs", v, &o->confirm_runs, err, errsz);
	case O_MINAGE: return parse_secs("min-age", v, 0, 0, &o->min_age, err, errsz);
	case O_COOLDOWN: return parse_secs("cooldown", v, 0, 0, &o->cooldown, err, errsz);
	case O_MAXREC: return parse_count("max-recoveries", v, &o->max_recoveries, err, errsz);
	case O_WINDOW: return parse_secs("window", v, 0, 1, &o->window, err, errsz);
	case O_GUARD:
		o->guard = v;
		return add_hook("guard", v, NULL, NULL, err, errsz);
	case O_PRE: return add_hook("pre", v, &o->pre, &o->npre, err, errsz);
	case O_POST: return add_hook("post", v, &o->post, &o->npost, err, errsz);
	case O_HOOKTO: return parse_secs("hook-timeout", v, 0, 1, &o->hook_timeout, err, errsz);
	case O_STATEDIR:
		return parse_path("state-dir", v, o->state_dir, sizeof(o->state_dir), err, errsz);
	case O_LOCK:
		*lock_set = 1;
		return parse_path("lock", v, o->lock, sizeof(o->lock), err, errsz);
	case O_TEXTFILE: o->textfile = v; return 0;
	case O_PROBETO: return parse_secs("probe-timeout", v, 0, 1, &o->probe_timeout, err, errsz);
	case O_WATCH: return parse_secs("watch", v, 0, 1, &o->watch, err, errsz);
	case O_DRILL: o->drill = 1; return 0;
	}
	snprintf(err, errsz, "unknown option (see --help)");
	return -1;
}

/* Checks that need every option seen. */
static int check_combination(struct recover_opts *o, char *err, size_t errsz)
{
	if (o->drill) {
		if (o->root[0] || o->manifest || o->apply || o->watch > 0 || o->guard ||
		    o->npre || o->npost || o->textfile) {
			snprintf(err, errsz, "--drill makes its own root, manifest and hooks: "
				 "only --probe-timeout, --hook-timeout allowed with it");
			return -1;
		}
		return 0;
	}
	if (!o->root[0] || !o->manifest) {
		snprintf(err, errsz, "--root and --manifest are required (see --help)");
		return -1;
	}
	if (o->textfile && atomicfile_check_dir(o->textfile, err, errsz) < 0)
		return -1;
	return 0;
}

int recover_opts_parse(struct recover_opts *o, int argc, char **argv, char *err, size_t errsz)
{
	int c, lock_set = 0;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", long_opts, NULL)) != -1) {
		if (c == 'h' || c == O_HELP) {
			recover_opts_usage(stdout);
			return 1;
		}
		if (c == O_VERSION) {
			printf("steadyfs-recover %s\n", STEADYFS_VERSION);
			return 1;
		}
		if (c == '?' || c == ':') {
			snprintf(err, errsz, "%s '%s' (see --help)",
				 c == ':' ? "missing value for option" : "unknown option",
				 argv[optind - 1]);
			return -1;
		}
		if (parse_one(o, c, optarg, &lock_set, err, errsz) < 0)
			return -1;
	}
	if (optind < argc) {
		snprintf(err, errsz, "unexpected argument '%s' (see --help)", argv[optind]);
		return -1;
	}
	if (!lock_set &&
	    snprintf(o->lock, sizeof(o->lock), "%s/lock", o->state_dir) >= (int)sizeof(o->lock)) {
		snprintf(err, errsz, "bad --state-dir '%s': too long", o->state_dir);
		return -1;
	}
	return check_combination(o, err, errsz);
}

void recover_opts_release(struct recover_opts *o)
{
	free(o->pre);
	free(o->post);
	o->pre = o->post = NULL;
	o->npre = o->npost = 0;
}
