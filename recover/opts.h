/*
 * opts: the steadyfs-recover command line, its defaults and checks.
 * Every bad value is named in the error; nothing is touched while parsing
 * except reading the working directory to make paths absolute.
 */
#ifndef STEADYFS_RECOVER_OPTS_H
#define STEADYFS_RECOVER_OPTS_H

#include <limits.h>
#include <stddef.h>
#include <stdio.h>

#define RECOVER_DEFAULT_STATE_DIR "/var/lib/steadyfs/recover"
#define RECOVER_DEFAULT_SENTINEL "/etc/steadyfs/recover.enabled"

struct recover_opts {
	char root[PATH_MAX];          /* normalised absolute; "" with --drill */
	const char *manifest;
	int apply;
	const char *sentinel;
	long confirm_runs;            /* >= 1, default 2 */
	double min_age;               /* seconds, default 120 */
	double cooldown;              /* seconds, default 900 */
	long max_recoveries;          /* per window, default 3 */
	double window;                /* seconds, default 21600 */
	const char *guard;            /* NULL: none */
	const char **pre, **post;     /* in order given (array owned here) */
	size_t npre, npost;
	double hook_timeout;          /* seconds, default 60 */
	char state_dir[PATH_MAX];
	char lock[PATH_MAX];          /* default <state_dir>/lock */
	const char *textfile;         /* NULL: none */
	double probe_timeout;         /* seconds, default 10 */
	double watch;                 /* seconds between passes; 0: one pass */
	int drill;
	const char *fusectl_dir;      /* FUSECTL_DIR (not an option) */
};

/* Fills `o` with the defaults (no root, no manifest). */
void recover_opts_defaults(struct recover_opts *o);

/*
 * Parses argv into `o` (after recover_opts_defaults). Returns 0, 1 when --help was
 * asked (usage printed on stdout), or -1 with a one-line reason in `err`.
 */
int recover_opts_parse(struct recover_opts *o, int argc, char **argv, char *err, size_t errsz);
void recover_opts_release(struct recover_opts *o);
void recover_opts_usage(FILE *out);

#endif
