/*
 * opts: the steadyfs command line, a drop-in for the common sshfs one.
 *
 *   steadyfs [user@]host:[dir] MOUNTPOINT [-p PORT] [-f] [-d] [-o opt[,opt...]]
 *
 * steadyfs_opts_parse() fills a struct steadyfs_opts from argv, validating every
 * value. Options steadyfs does not need but sshfs/ssh know are accepted with
 * one warning line each (via log_warn); generic mount(8) options are
 * accepted silently; anything else is an error. Also handles being started
 * as a mount helper (mount.fuse.steadyfs SOURCE MOUNTPOINT -o OPTS), where
 * mount(8) passes `-o` options the same way.
 */
#ifndef STEADYFS_OPTS_H
#define STEADYFS_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

enum hostkey_policy { HOSTKEY_YES = 0, HOSTKEY_ACCEPT_NEW, HOSTKEY_NO };

struct steadyfs_opts {
	/* remote */
	char *user;          /* NULL: current user */
	char *host;          /* never NULL after a successful parse */
	char *remote_dir;    /* "" when the source had no dir (server's cwd) */
	int port;            /* 22 unless -p / port= */
	char *mountpoint;    /* as given (not resolved) */

	/* ssh */
	char *identity_file;      /* NULL: agent and default keys */
	char *known_hosts;        /* NULL: ~/.ssh/known_hosts */
	enum hostkey_policy strict;
	double connect_timeout;   /* s, default 10 */
	double alive_interval;    /* ServerAliveInterval, default 5 */
	int alive_count_max;      /* ServerAliveCountMax, default 2 */

	/* fuse / attributes */
	bool foreground;     /* -f */
	bool debug;          /* -d: debug log, implies foreground */
	bool allow_other, default_permissions, ro;
	/* default_permissions was not given but allow_other was: set by the
	 * parser, because without it any local user could read and write
	 * every file of the mount (the daemon checks no permissions). */
	bool default_permissions_implied;
	/* Mount flags. The server's files are not trusted: setuid bits and
	 * device files on it take effect only when the operator says `suid`
	 * or `dev`; `noexec` is passed on as given. */
	bool suid, dev, noexec;
	bool uid_set, gid_set, umask_set, idmap_user;
	uid_t uid;
	gid_t gid;
	mode_t umask;
	bool kernel_cache, auto_cache;
	double attr_timeout;   /* s, default 1 */
	double entry_timeout;  /* s, default 1 */
	/* s, default 0 (off): how long the kernel may remember that a name
	 * does not exist. Names created on the server by others stay
	 * invisible to this mount for up to that long. */
	double negative_timeout;
	size_t max_write;      /* bytes, default 1 MiB (libfuse default) */

	/* steadyfs's own */
	int connections;       /* default 4; 1..10 */
	double op_timeout;     /* s, default 20 */
	double backoff_min;    /* s, default 0.2 */
	double backoff_max;    /* s, default 5 */
	char *state_dir;       /* NULL: /run/steadyfs/<escaped mountpoint> */
	char *metrics_textfile;/* NULL: off */
	/* state_group=GROUP: the mirror and .control/ are shared with this
	 * group (folders 0750, files 0640); without it they are the daemon
	 * user's alone (0700, 0600). */
	bool state_group_set;
	gid_t state_gid;

	bool show_help, show_version;
};

/* Exit codes shared by the three programs (docs/design.md). */
enum {
	EXIT_OK_ = 0,
	EXIT_CONNECT = 1,   /* cannot connect, authenticate, verify host key */
	EXIT_USAGE = 2,
	EXIT_INTERNAL = 3,
	EXIT_MOUNTPOINT = 4,
};

/*
 * Parses argv into *o (which it initialises with defaults first). Returns 0
 * on success; on a bad command line writes one line naming the problem to
 * `err` (size `errsz`, no trailing newline) and returns -1. `--help` and
 * `--version` set show_help/show_version and return 0 without requiring
 * the positional arguments. Warnings for accepted-but-unused options go to
 * log_warn().
 */
int steadyfs_opts_parse(struct steadyfs_opts *o, int argc, char **argv,
	       char *err, size_t errsz);
/* Frees the strings in *o. */
void steadyfs_opts_release(struct steadyfs_opts *o);
/* Writes the --help text to `fp` (marks options not effective yet). */
void steadyfs_opts_usage(FILE *fp);
/* Session liveness bound: alive_interval * alive_count_max capped at
 * op_timeout / 2, in seconds. */
double steadyfs_opts_dead_after(const struct steadyfs_opts *o);

#endif
