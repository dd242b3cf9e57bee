/*
 * test_opts: the steadyfs command line (fs/opts/opts.c) against the brief: the
 * archive's sshfs line, every own option valid and invalid, the sshfs/ssh/
 * FUSE options accepted with one warning, mount(8) helper argv, sources
 * with IPv6 literals, and the one-line error texts.
 *
 * Command lines are written as one string split on spaces; warnings are
 * captured by pointing stderr at a temp file around the parse.
 */
#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "log.h"
#include "opts.h"

#define MAX_ARGS 32

/* What one parse produced, including the warnings it logged. */
struct run {
	struct steadyfs_opts o;
	int rc;
	char err[256];
	char log[4096];
	int log_lines;
};

static int split(char *line, char **argv)
{
	int argc = 0;
	char *tok, *save = NULL;

	for (tok = strtok_r(line, " ", &save); tok && argc < MAX_ARGS - 1;
	     tok = strtok_r(NULL, " ", &save))
		argv[argc++] = tok;
	argv[argc] = NULL;
	return argc;
}

/* Reads what went to the temp stderr back into r->log. */
static void read_log(struct run *r, int fd)
{
	ssize_t n;
	char *c;

	r->log[0] = '\0';
	r->log_lines = 0;
	if (lseek(fd, 0, SEEK_SET) < 0)
		return;
	n = read(fd, r->log, sizeof(r->log) - 1);
	if (n < 0)
		n = 0;
	r->log[n] = '\0';
	for (c = r->log; *c; c++)
		r->log_lines += *c == '\n';
}

/* Parses `line` (argv[0] included) with stderr captured. */
static void run(struct run *r, const char *line)
{
	char buf[1024], *argv[MAX_ARGS];
	char tmpl[] = "/tmp/test_opts.XXXXXX";
	int argc, fd, saved;

	snprintf(buf, sizeof(buf), "%s", line);
	argc = split(buf, argv);
	fd = mkstemp(tmpl);
	saved = dup(STDERR_FILENO);
	if (!CHECK(fd >= 0 && saved >= 0))
		abort();
	unlink(tmpl);
	if (!CHECK(dup2(fd, STDERR_FILENO) == STDERR_FILENO))
		abort();
	r->rc = steadyfs_opts_parse(&r->o, argc, argv, r->err, sizeof(r->err));
	if (!CHECK(dup2(saved, STDERR_FILENO) == STDERR_FILENO))
		abort();
	close(saved);
	read_log(r, fd);
	close(fd);
}

static bool str_is(const char *got, const char *want)
{
	if (got == NULL || want == NULL)
		return got == want;
	return strcmp(got, want) == 0;
}

/* Expects success; the caller releases r->o. */
static bool ok(struct run *r, const char *line)
{
	run(r, line);
	if (!CHECK_EQ(r->rc, 0)) {
		fprintf(stderr, "  line: %s\n  err: %s\n", line, r->err);
		return false;
	}
	return true;
}

/* Expects failure with `want` in the error text. */
static void bad(const char *line, const char *want)
{
	struct run r;

	run(&r, line);
	CHECK_EQ(r.rc, -1);
	if (!CHECK(strstr(r.err, want) != NULL))
		fprintf(stderr, "  line: %s\n  err: '%s'\n  want: '%s'\n",
			line, r.err, want);
	CHECK(strchr(r.err, '\n') == NULL);
	/* A failed parse leaves nothing to free. */
	CHECK(r.o.host == NULL && r.o.mountpoint == NULL &&
	      r.o.identity_file == NULL);
	steadyfs_opts_release(&r.o);
}

/* Accepts `opt` in a full line and returns the parse for inspection. */
static bool ok_opt(struct run *r, const char *opt)
{
	char line[512];

	snprintf(line, sizeof(line), "steadyfs h:/d /mnt -o %s", opt);
	return ok(r, line);
}

static void bad_opt(const char *opt, const char *want)
{
	char line[512];

	snprintf(line, sizeof(line), "steadyfs h:/d /mnt -o %s", opt);
	bad(line, want);
}

/* A command line (or, for bad_opt, one -o list) and the error it gives. */
struct bad_case {
	const char *in;
	const char *want;
};

#define BAD_ALL(t, fn) do { \
	size_t i_; \
	for (i_ = 0; i_ < sizeof(t) / sizeof((t)[0]); i_++) \
		fn((t)[i_].in, (t)[i_].want); \
} while (0)

/* ---- tests ------------------------------------------------------------- */

static void test_defaults(void)
{
	struct run r;

	if (!ok(&r, "steadyfs host: /mnt"))
		return;
	CHECK(str_is(r.o.host, "host"));
	CHECK(r.o.user == NULL);
	CHECK(str_is(r.o.remote_dir, ""));
	CHECK(str_is(r.o.mountpoint, "/mnt"));
	CHECK_EQ(r.o.port, 22);
	CHECK_EQ(r.o.strict, HOSTKEY_YES);
	CHECK(r.o.connect_timeout == 10);
	CHECK(r.o.alive_interval == 5);
	CHECK_EQ(r.o.alive_count_max, 2);
	CHECK(r.o.attr_timeout == 1 && r.o.entry_timeout == 1);
	CHECK(r.o.negative_timeout == 0);
	CHECK_EQU(r.o.max_write, 1048576);
	CHECK_EQ(r.o.connections, 4);
	CHECK(r.o.op_timeout == 20);
	CHECK(r.o.backoff_min == 0.2 && r.o.backoff_max == 5);
	CHECK(!r.o.foreground && !r.o.debug && !r.o.ro && !r.o.allow_other);
	CHECK(!r.o.uid_set && !r.o.gid_set && !r.o.umask_set);
	CHECK(r.o.identity_file == NULL && r.o.known_hosts == NULL);
	CHECK(r.o.state_dir == NULL && r.o.metrics_textfile == NULL);
	CHECK(steadyfs_opts_dead_after(&r.o) == 10);
	CHECK_EQ(r.log_lines, 0);
	steadyfs_opts_release(&r.o);
}

static void test_archive_line(void)
{
	struct run r;

	if (!ok(&r, "steadyfs -f -p 23 -o IdentityFile=/etc/key "
		 "-o allow_other,default_permissions "
		 "-o uid=1000,gid=1001,umask=0027 "
		 "-o reconnect,ServerAliveInterval=15,ServerAliveCountMax=3,"
		 "kernel_cache u123@box.example:/home/jobs /srv/jobs"))
		return;
	CHECK(r.o.foreground && !r.o.debug);
	CHECK_EQ(r.o.port, 23);
	CHECK(str_is(r.o.identity_file, "/etc/key"));
	CHECK(r.o.allow_other && r.o.default_permissions);
	CHECK(r.o.uid_set && r.o.uid == 1000);
	CHECK(r.o.gid_set && r.o.gid == 1001);
	CHECK(r.o.umask_set && r.o.umask == 027);
	CHECK(r.o.alive_interval == 15);
	CHECK_EQ(r.o.alive_count_max, 3);
	CHECK(r.o.kernel_cache);
	CHECK(str_is(r.o.user, "u123"));
	CHECK(str_is(r.o.host, "box.example"));
	CHECK(str_is(r.o.remote_dir, "/home/jobs"));
	CHECK(str_is(r.o.mountpoint, "/srv/jobs"));
	/* 15 x 3 = 45 s is capped at op_timeout / 2. */
	CHECK(steadyfs_opts_dead_after(&r.o) == 10);
	CHECK_EQ(r.log_lines, 0);  /* nothing in the archive's line warns */
	steadyfs_opts_release(&r.o);
}

static void test_forms(void)
{
	struct run r;

	/* glued -o and -p, flag clusters, options after positionals */
	if (ok(&r, "steadyfs h:d /m -oallow_other -p2222 -fd -oro")) {
		CHECK(r.o.allow_other && r.o.ro && r.o.foreground && r.o.debug);
		CHECK_EQ(r.o.port, 2222);
		CHECK(str_is(r.o.remote_dir, "d"));
		steadyfs_opts_release(&r.o);
	}
	/* -d alone implies foreground; -o debug is the same */
	if (ok(&r, "steadyfs -d h: /m")) {
		CHECK(r.o.debug && r.o.foreground);
		steadyfs_opts_release(&r.o);
	}
	if (ok(&r, "steadyfs h: /m -o debug")) {
		CHECK(r.o.debug && r.o.foreground);
		steadyfs_opts_release(&r.o);
	}
	/* options between the positionals; last value wins; -- ends flags */
	if (ok(&r, "steadyfs h: -o port=1 -o port=2 -- -odd")) {
		CHECK_EQ(r.o.port, 2);
		CHECK(str_is(r.o.mountpoint, "-odd"));
		steadyfs_opts_release(&r.o);
	}
	/* -o port= and -p agree; ssh keys are case-insensitive */
	if (ok(&r, "steadyfs h: /m -o PORT=44,identityfile=/k,"
		 "serveraliveinterval=2.5")) {
		CHECK_EQ(r.o.port, 44);
		CHECK(str_is(r.o.identity_file, "/k"));
		CHECK(r.o.alive_interval == 2.5);
		steadyfs_opts_release(&r.o);
	}
	/* empty items are nothing; a backslash escapes a comma */
	if (ok(&r, "steadyfs h: /m -o ,allow_other,,IdentityFile=/a\\,b,")) {
		CHECK(r.o.allow_other);
		CHECK(str_is(r.o.identity_file, "/a,b"));
		steadyfs_opts_release(&r.o);
	}
	/* -o User= fills in a missing user only */
	if (ok(&r, "steadyfs h: /m -o User=bob")) {
		CHECK(str_is(r.o.user, "bob"));
		steadyfs_opts_release(&r.o);
	}
	if (ok(&r, "steadyfs -o User=bob al@h: /m")) {
		CHECK(str_is(r.o.user, "al"));
		steadyfs_opts_release(&r.o);
	}

	static const struct bad_case bad_lines[] = {
		{ "steadyfs h: /m -p", "option '-p' needs a value" },
		{ "steadyfs h: /m -o", "option '-o' needs a value" },
		{ "steadyfs h: /m -x", "unknown option '-x'" },
		{ "steadyfs h: /m --frobnicate", "unknown option '--frobnicate'" },
		{ "steadyfs h: /m extra", "unexpected argument 'extra'" },
		{ "steadyfs h: /m -o allow_other=1",
		  "option 'allow_other' takes no value" },
		{ "steadyfs h: /m -o op_timeout",
		  "option 'op_timeout' needs a value" },
		{ "steadyfs h: /m -o =5", "no name" },
	};

	BAD_ALL(bad_lines, bad);
}

static void test_sources(void)
{
	struct run r;

	if (ok(&r, "steadyfs [::1]:/srv /m")) {
		CHECK(str_is(r.o.host, "::1"));
		CHECK(r.o.user == NULL);
		CHECK(str_is(r.o.remote_dir, "/srv"));
		steadyfs_opts_release(&r.o);
	}
	if (ok(&r, "steadyfs u@[fe80::1%eth0]: /m")) {
		CHECK(str_is(r.o.user, "u"));
		CHECK(str_is(r.o.host, "fe80::1%eth0"));
		CHECK(str_is(r.o.remote_dir, ""));
		steadyfs_opts_release(&r.o);
	}
	/* the dir may hold colons and @; the user ends at the last @ */
	if (ok(&r, "steadyfs a@b@h:x:y@z /m")) {
		CHECK(str_is(r.o.user, "a@b"));
		CHECK(str_is(r.o.host, "h"));
		CHECK(str_is(r.o.remote_dir, "x:y@z"));
		steadyfs_opts_release(&r.o);
	}
	if (ok(&r, "steadyfs 127.0.0.1:rel/dir /m")) {
		CHECK(str_is(r.o.host, "127.0.0.1"));
		CHECK(str_is(r.o.remote_dir, "rel/dir"));
		steadyfs_opts_release(&r.o);
	}

	static const struct bad_case bad_lines[] = {
		{ "steadyfs foo /m",
		  "bad source 'foo': expected [user@]host:[dir]" },
		{ "steadyfs :/d /m", "bad source ':/d'" },
		{ "steadyfs u@:/d /m", "bad source 'u@:/d'" },
		{ "steadyfs @h:/d /m", "bad source '@h:/d'" },
		{ "steadyfs []:/d /m", "bad source '[]:/d'" },
		{ "steadyfs [::1/d /m", "bad source '[::1/d'" },
		{ "steadyfs", "missing source" },
		{ "steadyfs -f -o allow_other", "missing source" },
		{ "steadyfs h:/d", "missing mountpoint" },
		{ "steadyfs h:/d -o allow_other", "missing mountpoint" },
	};

	BAD_ALL(bad_lines, bad);
}

static void test_own_numbers(void)
{
	struct run r;

	if (ok_opt(&r, "connections=10,op_timeout=3.5,connect_timeout=2,"
		   "backoff_min=0.05,backoff_max=0.05,ConnectTimeout=7")) {
		CHECK_EQ(r.o.connections, 10);
		CHECK(r.o.op_timeout == 3.5);
		CHECK(r.o.connect_timeout == 7);
		CHECK(r.o.backoff_min == 0.05 && r.o.backoff_max == 0.05);
		/* 5 x 2 = 10 capped at 3.5 / 2 */
		CHECK(steadyfs_opts_dead_after(&r.o) == 1.75);
		/* above 5 connections warns once */
		CHECK_EQ(r.log_lines, 1);
		CHECK(strstr(r.log, "connections=10") != NULL);
		steadyfs_opts_release(&r.o);
	}
	if (ok_opt(&r, "connections=1,ServerAliveInterval=1,"
		   "ServerAliveCountMax=2")) {
		CHECK_EQ(r.o.connections, 1);
		CHECK(steadyfs_opts_dead_after(&r.o) == 2);
		CHECK_EQ(r.log_lines, 0);
		steadyfs_opts_release(&r.o);
	}

	static const struct bad_case bad_opts[] = {
		{ "connections=0", "bad value for 'connections': '0'" },
		{ "connections=11", "bad value for 'connections': '11'" },
		{ "connections=-1", "bad value for 'connections': '-1'" },
		{ "connections=4x", "bad value for 'connections': '4x'" },
		{ "connections=", "bad value for 'connections': ''" },
		{ "connections=2.5", "bad value for 'connections': '2.5'" },
		{ "op_timeout=abc", "bad value for 'op_timeout': 'abc'" },
		{ "op_timeout=0", "bad value for 'op_timeout': '0'" },
		{ "op_timeout=-1", "bad value for 'op_timeout': '-1'" },
		{ "op_timeout=5s", "bad value for 'op_timeout': '5s'" },
		{ "op_timeout=inf", "bad value for 'op_timeout': 'inf'" },
		{ "op_timeout=nan", "bad value for 'op_timeout': 'nan'" },
		{ "op_timeout=0x10", "bad value for 'op_timeout': '0x10'" },
		{ "op_timeout=1e300", "bad value for 'op_timeout': '1e300'" },
		{ "op_timeout=+3", "bad value for 'op_timeout': '+3'" },
		{ "connect_timeout=0", "bad value for 'connect_timeout': '0'" },
		{ "connect_timeout=x", "bad value for 'connect_timeout': 'x'" },
		{ "ConnectTimeout=-2", "bad value for 'ConnectTimeout': '-2'" },
		{ "backoff_min=0", "bad value for 'backoff_min': '0'" },
		{ "backoff_max=1,2", "unknown option '2'" },
		{ "backoff_max=-5", "bad value for 'backoff_max': '-5'" },
		{ "backoff_min=6",
		  "bad value for 'backoff_min': '6' (more than backoff_max '5')" },
		{ "backoff_min=2,backoff_max=1", "'backoff_min': '2'" },
		{ "ServerAliveInterval=0", "bad value for 'ServerAliveInterval'" },
		{ "ServerAliveCountMax=0", "bad value for 'ServerAliveCountMax'" },
		{ "ServerAliveCountMax=1.5", "bad value for 'ServerAliveCountMax'" },
		{ "port=0", "bad value for 'port': '0'" },
		{ "port=65536", "bad value for 'port': '65536'" },
		{ "port=22a", "bad value for 'port': '22a'" },
	};

	BAD_ALL(bad_opts, bad_opt);
	bad("steadyfs h: /m -p x", "bad value for '-p': 'x'");
}

static void test_own_paths(void)
{
	struct run r;
	char *cwd = getcwd(NULL, 0), want[4200];
	const char *home = getenv("HOME");

	if (!CHECK(cwd != NULL))
		return;
	if (ok_opt(&r, "state_dir=/run/x,metrics_textfile=/var/m.prom,"
		   "UserKnownHostsFile=kh,IdentityFile=~/.ssh/k")) {
		CHECK(str_is(r.o.state_dir, "/run/x"));
		CHECK(str_is(r.o.metrics_textfile, "/var/m.prom"));
		snprintf(want, sizeof(want), "%s/kh", cwd);
		CHECK(str_is(r.o.known_hosts, want));
		if (home && home[0] == '/') {
			snprintf(want, sizeof(want), "%s/.ssh/k", home);
			CHECK(str_is(r.o.identity_file, want));
		}
		steadyfs_opts_release(&r.o);
	}

	static const struct bad_case bad_opts[] = {
		{ "state_dir=", "bad value for 'state_dir': ''" },
		{ "metrics_textfile=", "bad value for 'metrics_textfile': ''" },
		{ "IdentityFile=", "bad value for 'IdentityFile': ''" },
	};

	BAD_ALL(bad_opts, bad_opt);
	free(cwd);
}

static void test_attributes(void)
{
	struct run r;

	if (ok_opt(&r, "uid=0,gid=4294967294,umask=0,idmap=user,auto_cache,"
		   "attr_timeout=0,entry_timeout=2.5,max_write=4096")) {
		CHECK(r.o.uid_set && r.o.uid == 0);
		CHECK(r.o.gid_set && r.o.gid == 4294967294u);
		CHECK(r.o.umask_set && r.o.umask == 0);
		CHECK(r.o.idmap_user && r.o.auto_cache);
		CHECK(r.o.attr_timeout == 0 && r.o.entry_timeout == 2.5);
		CHECK_EQU(r.o.max_write, 4096);
		steadyfs_opts_release(&r.o);
	}
	if (ok_opt(&r, "idmap=user,idmap=none,umask=777,max_write=4194304")) {
		CHECK(!r.o.idmap_user);
		CHECK(r.o.umask == 0777);
		CHECK_EQU(r.o.max_write, 1048576);  /* capped, with a warning */
		CHECK_EQ(r.log_lines, 1);
		steadyfs_opts_release(&r.o);
	}

	static const struct bad_case bad_opts[] = {
		{ "uid=-1", "bad value for 'uid': '-1'" },
		{ "uid=4294967295", "bad value for 'uid': '4294967295'" },
		{ "uid=bob", "bad value for 'uid': 'bob'" },
		{ "gid=1x", "bad value for 'gid': '1x'" },
		{ "umask=0999", "bad value for 'umask': '0999'" },
		{ "umask=1000", "bad value for 'umask': '1000'" },
		{ "umask=", "bad value for 'umask': ''" },
		{ "idmap=group", "bad value for 'idmap': 'group'" },
		{ "attr_timeout=-1", "bad value for 'attr_timeout': '-1'" },
		{ "entry_timeout=x", "bad value for 'entry_timeout': 'x'" },
		{ "max_write=4095", "bad value for 'max_write': '4095'" },
		{ "max_write=-4096", "bad value for 'max_write': '-4096'" },
		{ "max_write=99999999999999999999999",
		  "bad value for 'max_write'" },
	};

	BAD_ALL(bad_opts, bad_opt);
}

/* negative_timeout, and sshfs's cache timeouts: the stat one (alone or
 * through the all-in-one dcache_timeout) sets attr_timeout and
 * entry_timeout, in command-line order; the listing and link ones are
 * checked and ignored with a warning. */
static void test_cache_timeouts(void)
{
	struct run r;

	if (ok_opt(&r, "negative_timeout=2.5")) {
		CHECK(r.o.negative_timeout == 2.5);
		CHECK(r.o.attr_timeout == 1 && r.o.entry_timeout == 1);
		CHECK_EQ(r.log_lines, 0);
		steadyfs_opts_release(&r.o);
	}
	if (ok_opt(&r, "dcache_timeout=20")) {
		CHECK(r.o.attr_timeout == 20 && r.o.entry_timeout == 20);
		CHECK(r.o.negative_timeout == 0);  /* sshfs caches no absence */
		CHECK_EQ(r.log_lines, 1);
		CHECK(strstr(r.log, "attr_timeout and entry_timeout") != NULL);
		steadyfs_opts_release(&r.o);
	}
	/* the last word wins, whichever name it uses */
	if (ok_opt(&r, "cache_timeout=7,attr_timeout=2,dcache_stat_timeout=0,"
		   "entry_timeout=3")) {
		CHECK(r.o.attr_timeout == 0 && r.o.entry_timeout == 3);
		steadyfs_opts_release(&r.o);
	}
	if (ok_opt(&r, "cache_stat_timeout=30")) {
		CHECK(r.o.attr_timeout == 30 && r.o.entry_timeout == 30);
		steadyfs_opts_release(&r.o);
	}
	if (ok_opt(&r, "dcache_dir_timeout=60,dcache_link_timeout=60,"
		   "cache_dir_timeout=1,cache_link_timeout=1")) {
		CHECK(r.o.attr_timeout == 1 && r.o.entry_timeout == 1);
		CHECK_EQ(r.log_lines, 4);
		CHECK(strstr(r.log, "'dcache_dir_timeout' ignored") != NULL);
		CHECK(strstr(r.log, "every listing") != NULL);
		CHECK(strstr(r.log, "every link target") != NULL);
		steadyfs_opts_release(&r.o);
	}
	/* the rest of sshfs's cache knobs tune a cache steadyfs lacks */
	if (ok_opt(&r, "dcache_max_size=100,dcache_clean_interval=5,"
		   "dcache_min_clean_interval=1,dir_cache=no")) {
		CHECK_EQ(r.log_lines, 4);
		steadyfs_opts_release(&r.o);
	}

	static const struct bad_case bad_opts[] = {
		{ "negative_timeout=-1", "bad value for 'negative_timeout': '-1'" },
		{ "negative_timeout=soon", "bad value for 'negative_timeout': 'soon'" },
		{ "negative_timeout=86401", "bad value for 'negative_timeout'" },
		{ "negative_timeout", "option 'negative_timeout' needs a value" },
		{ "dcache_timeout=x", "bad value for 'dcache_timeout': 'x'" },
		{ "cache_timeout=-5", "bad value for 'cache_timeout': '-5'" },
		{ "dcache_stat_timeout=1e9", "bad value for 'dcache_stat_timeout'" },
		{ "dcache_dir_timeout=ten", "bad value for 'dcache_dir_timeout'" },
		{ "cache_link_timeout=", "bad value for 'cache_link_timeout'" },
		{ "dcache_timeout", "option 'dcache_timeout' needs a value" },
	};

	BAD_ALL(bad_opts, bad_opt);
}

static void test_host_keys(void)
{
	static const struct { const char *val; enum hostkey_policy want; } t[] = {
		{ "yes", HOSTKEY_YES }, { "accept-new", HOSTKEY_ACCEPT_NEW },
		{ "no", HOSTKEY_NO }, { "off", HOSTKEY_NO }, { "NO", HOSTKEY_NO },
	};
	struct run r;
	char opt[64];
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		snprintf(opt, sizeof(opt), "StrictHostKeyChecking=%s", t[i].val);
		if (ok_opt(&r, opt)) {
			CHECK_EQ(r.o.strict, t[i].want);
			steadyfs_opts_release(&r.o);
		}
	}
	/* no terminal to ask on: yes, with a warning */
	if (ok_opt(&r, "StrictHostKeyChecking=no,StrictHostKeyChecking=ask")) {
		CHECK_EQ(r.o.strict, HOSTKEY_YES);
		CHECK_EQ(r.log_lines, 1);
		CHECK(strstr(r.log, "StrictHostKeyChecking=ask") != NULL);
		steadyfs_opts_release(&r.o);
	}
	bad_opt("StrictHostKeyChecking=maybe",
		"bad value for 'StrictHostKeyChecking': 'maybe'");
}

/* issue 15: the options that keep the host safe from the mount */
static void test_safety_options(void)
{
	struct run r;

	if (ok_opt(&r, "allow_other")) {
		CHECK(r.o.allow_other && r.o.default_permissions);
		CHECK(r.o.default_permissions_implied);
		CHECK(!r.o.suid && !r.o.dev && !r.o.noexec);
		CHECK(!r.o.state_group_set);
		steadyfs_opts_release(&r.o);
	}
	if (ok_opt(&r, "allow_other,default_permissions")) {
		CHECK(r.o.default_permissions && !r.o.default_permissions_implied);
		steadyfs_opts_release(&r.o);
	}
	if (ok_opt(&r, "suid,dev")) {
		CHECK(r.o.suid && r.o.dev && !r.o.allow_other && !r.o.default_permissions);
		steadyfs_opts_release(&r.o);
	}
	if (ok_opt(&r, "state_group=root")) {
		CHECK(r.o.state_group_set && r.o.state_gid == 0);
		steadyfs_opts_release(&r.o);
	}
	if (ok_opt(&r, "state_group=4242")) {
		CHECK(r.o.state_group_set && r.o.state_gid == 4242);
		steadyfs_opts_release(&r.o);
	}
	bad_opt("state_group=no-such-group-here",
		"bad value for 'state_group': 'no-such-group-here'");
}

static void test_passive(void)
{
	struct run r;

	/* generic mount options: silent; ro sets ro, a later rw clears it */
	if (ok_opt(&r, "rw,ro,dev,nodev,suid,nosuid,exec,noexec,_netdev,"
		   "noauto,auto,defaults,user,users,nouser,nofail,"
		   "x-systemd.automount,x-systemd.mount-timeout=30,"
		   "x-gvfs-hide,comment=hello,reconnect,nonempty,"
		   "workaround=rename:nobuflimit")) {
		CHECK(r.o.ro);
		/* the last of each pair wins: nosuid, nodev, noexec */
		CHECK(!r.o.suid && !r.o.dev && r.o.noexec);
		CHECK_EQ(r.log_lines, 0);
		steadyfs_opts_release(&r.o);
	}
	if (ok_opt(&r, "ro,rw")) {
		CHECK(!r.o.ro);
		steadyfs_opts_release(&r.o);
	}
	/* sshfs, ssh and FUSE options: one warning line each, naming it */
	if (ok_opt(&r, "sshfs_sync,cache=yes,dcache_timeout=30,"
		   "Ciphers=aes128-ctr,compression=no,ControlMaster=auto,"
		   "fsname=x,large_read,noatime,idmap=file,sshfs_sync")) {
		CHECK_EQ(r.log_lines, 10);  /* sshfs_sync repeated: once */
		CHECK(strstr(r.log, "'sshfs_sync'") != NULL);
		CHECK(strstr(r.log, "'Ciphers'") != NULL);
		CHECK(strstr(r.log, "'fsname'") != NULL);
		CHECK(strstr(r.log, "idmap=file") != NULL);
		CHECK(!r.o.idmap_user);
		steadyfs_opts_release(&r.o);
	}
	if (ok(&r, "steadyfs -C h: /m -o hostkeyalgorithms=ssh-ed25519")) {
		CHECK_EQ(r.log_lines, 2);
		steadyfs_opts_release(&r.o);
	}

	static const struct bad_case bad_opts[] = {
		{ "xyz", "unknown option 'xyz'" },
		{ "allow_other,bogus=1", "unknown option 'bogus'" },
		{ "IdentityFiles=/k", "unknown option 'IdentityFiles'" },
	};

	BAD_ALL(bad_opts, bad_opt);
	/* sshfs options match exactly, as sshfs does */
	bad_opt("SSHFS_SYNC", "unknown option 'SSHFS_SYNC'");
}

static void test_mount_helper(void)
{
	struct run r;

	/* mount(8) -> mount.fuse.steadyfs SOURCE MOUNTPOINT [-sfnv] -o OPTS */
	if (ok(&r, "/sbin/mount.fuse.steadyfs u@h:/srv /srv/jobs -n -s -v "
		 "-o rw,_netdev,x-systemd.automount,IdentityFile=/k,"
		 "allow_other,port=23")) {
		CHECK(str_is(r.o.user, "u") && str_is(r.o.host, "h"));
		CHECK(str_is(r.o.mountpoint, "/srv/jobs"));
		CHECK(str_is(r.o.identity_file, "/k"));
		CHECK(r.o.allow_other && !r.o.ro);
		CHECK_EQ(r.o.port, 23);
		CHECK_EQ(r.log_lines, 0);
		steadyfs_opts_release(&r.o);
	}
	/* the type given when the helper is not named after it */
	if (ok(&r, "steadyfs h:/ /m -t fuse.steadyfs -o ro")) {
		CHECK(r.o.ro);
		steadyfs_opts_release(&r.o);
	}
	bad("steadyfs h:/ /m -t ext4", "bad value for '-t': 'ext4'");
}

static void test_help_version(void)
{
	struct run r;
	char *text = NULL;
	size_t len = 0;
	FILE *fp;
	static const char *const every[] = {
		"port=", "IdentityFile=", "UserKnownHostsFile=",
		"StrictHostKeyChecking=", "ConnectTimeout=", "connect_timeout=",
		"ServerAliveInterval=", "ServerAliveCountMax=", "reconnect",
		"allow_other", "default_permissions", "uid=", "gid=", "umask=",
		"idmap=", "kernel_cache", "auto_cache", "attr_timeout=",
		"entry_timeout=", "negative_timeout=", "dcache_timeout=",
		"dcache_stat_timeout=", "max_write=", "workaround=", "connections=",
		"op_timeout=", "backoff_min=", "backoff_max=", "state_dir=",
		"metrics_textfile=", "-p PORT", "-f", "-d", "--help",
		"--version", "ro",
	};
	size_t i;

	if (ok(&r, "steadyfs --help")) {
		CHECK(r.o.show_help && !r.o.show_version);
		steadyfs_opts_release(&r.o);
	}
	if (ok(&r, "steadyfs -h -o nonsense")) {
		CHECK(r.o.show_help);
		steadyfs_opts_release(&r.o);
	}
	if (ok(&r, "steadyfs h: -V")) {
		CHECK(r.o.show_version && !r.o.show_help);
		steadyfs_opts_release(&r.o);
	}
	if (ok(&r, "steadyfs --version")) {
		CHECK(r.o.show_version);
		steadyfs_opts_release(&r.o);
	}
	fp = open_memstream(&text, &len);
	if (!CHECK(fp != NULL))
		return;
	steadyfs_opts_usage(fp);
	CHECK(fclose(fp) == 0);
	for (i = 0; i < sizeof(every) / sizeof(every[0]); i++) {
		if (!CHECK(strstr(text, every[i]) != NULL))
			fprintf(stderr, "  --help lacks '%s'\n", every[i]);
	}
	/* every option is effective now: nothing is marked otherwise */
	CHECK(strstr(text, "not effective") == NULL);
	CHECK(strstr(text, "default 20") != NULL);
	free(text);
}

static void test_err_buffer(void)
{
	struct steadyfs_opts o;
	char small[8];
	char *argv[] = { "steadyfs", "-o", "unknown_long_option", NULL };

	/* a short buffer is truncated, a NULL one is allowed */
	CHECK_EQ(steadyfs_opts_parse(&o, 3, argv, small, sizeof(small)), -1);
	CHECK_EQ(strlen(small), sizeof(small) - 1);
	CHECK_EQ(steadyfs_opts_parse(&o, 3, argv, NULL, 0), -1);
	steadyfs_opts_release(&o);
	steadyfs_opts_release(&o);  /* twice is safe */
}

int main(void)
{
	/* warnings are what the tests count; debug lines would add noise */
	log_init("steadyfs", SLOG_INFO);
	UNIT_RUN(test_defaults);
	UNIT_RUN(test_archive_line);
	UNIT_RUN(test_forms);
	UNIT_RUN(test_sources);
	UNIT_RUN(test_own_numbers);
	UNIT_RUN(test_own_paths);
	UNIT_RUN(test_attributes);
	UNIT_RUN(test_cache_timeouts);
	UNIT_RUN(test_host_keys);
	UNIT_RUN(test_passive);
	UNIT_RUN(test_safety_options);
	UNIT_RUN(test_mount_helper);
	UNIT_RUN(test_help_version);
	UNIT_RUN(test_err_buffer);
	return unit_summary("test_opts");
}
