/*
 * opts: parses the steadyfs command line (see opts.h for the contract).
 *
 * The shape is sshfs's: one source `[user@]host:[dir]`, one mountpoint,
 * short flags and any number of `-o a,b=c` lists, in any order. Each `-o`
 * item goes through two tables in turn: `specs` (options steadyfs acts
 * on, each with its type and limits, here), `opts_passive` (options
 * mount(8), sshfs, ssh or FUSE know that steadyfs accepts without acting
 * on: silently, or with one warning naming them; opts_passive.c) and
 * otherwise an `unknown option` error. The --help text is opts_usage.c's.
 *
 * The argv loop is hand-written rather than getopt(3): getopt keeps its
 * state in globals and permutes argv, and we need in-order handling of
 * positionals, mount(8)'s helper flags and repeatable parsing in tests.
 * Within one command line the last value of an option wins (fuse_opt's
 * rule, which sshfs users know).
 */
#include "opts.h"

#include <errno.h>
#include <grp.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "log.h"
#include "opts_int.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Upper bound for any duration option: one day is already absurd. */
#define MAX_SECONDS 86400.0
#define MAX_WRITE_CAP (1024u * 1024u)
#define MAX_WRITE_MIN 4096u
#define CONNECTIONS_WARN 5
#define SOURCE_SHAPE "[user@]host:[dir]"

/* ---- tables -------------------------------------------------------------- */

struct parser;

enum opt_kind {
	K_SET,      /* bool field := true, takes no value */
	K_CLEAR,    /* bool field := false, takes no value */
	K_NONE,     /* accepted, nothing to store, takes no value */
	K_SECONDS,  /* double field, seconds in (0 or min, MAX_SECONDS] */
	K_INT,      /* int field in [min, max] */
	K_PATH,     /* char * field, made absolute */
	K_FN,       /* custom handler */
};

/* F_NOVAL: a K_FN option that takes no value. */
enum { F_NOCASE = 1, F_ZERO_OK = 2, F_NOVAL = 4 };

struct opt_spec {
	const char *name;
	enum opt_kind kind;
	unsigned flags;
	size_t off;         /* field in struct steadyfs_opts */
	long min, max;      /* K_INT */
	int (*fn)(struct parser *p, const char *key, const char *val);
};

/* The options accepted without effect: opts_passive.c. */

/* Everything one parse needs besides argv: no globals, so tests can parse
 * many command lines in one process. */
struct parser {
	struct steadyfs_opts *o;
	char *err;
	size_t errsz;
	int npos;                        /* positionals seen */
	char *ssh_user;                  /* -o User=, used without user@ */
	bool strict_ask;                 /* StrictHostKeyChecking=ask seen */
	bool warned[OPTS_NPASSIVE];      /* one warning per option */
};

static int fail(struct parser *p, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int fail(struct parser *p, const char *fmt, ...)
{
	va_list ap;

	if (p->err && p->errsz > 0) {
		va_start(ap, fmt);
		vsnprintf(p->err, p->errsz, fmt, ap);
		va_end(ap);
	}
	return -1;
}

static int bad_value(struct parser *p, const char *key, const char *val,
		     const char *why)
{
	return fail(p, "bad value for '%s': '%s' (%s)", key, val, why);
}

static int set_string(struct parser *p, char **field, char *s)
{
	if (!s)
		return fail(p, "out of memory");
	free(*field);
	*field = s;
	return 0;
}

/* ---- numbers -------------------------------------------------------------- */

/* Strict unsigned integer: digits only (no sign, no blanks, no suffix). */
static bool parse_u64(const char *s, int base, unsigned long long *out)
{
	char *end;

	if (!s || !*s || !(s[0] >= '0' && s[0] <= '9'))
		return false;
	errno = 0;
	*out = strtoull(s, &end, base);
	return errno == 0 && *end == '\0';
}

/* Strict non-negative decimal seconds: no sign, hex, inf or nan. */
static bool parse_seconds(const char *s, double *out)
{
	char *end;

	if (!s || !*s || !((s[0] >= '0' && s[0] <= '9') || s[0] == '.') ||
	    strpbrk(s, "xX"))
		return false;
	errno = 0;
	*out = strtod(s, &end);
	return errno == 0 && *end == '\0' && isfinite(*out);
}

/* A duration option's value: seconds up to MAX_SECONDS, 0 only when
 * zero_ok. */
static int parse_duration(struct parser *p, const char *key, const char *val,
			  bool zero_ok, double *out)
{
	if (!parse_seconds(val, out) || *out > MAX_SECONDS)
		return bad_value(p, key, val, "expected seconds");
	if (*out == 0 && !zero_ok)
		return bad_value(p, key, val, "must be more than 0");
	return 0;
}

/* ---- paths ---------------------------------------------------------------- */

/* Makes `val` absolute, expanding a leading `~` or `~/` as ssh does, so a
 * daemon that later changes directory still finds the file. */
static char *absolute_path(const char *val)
{
	const char *home;
	char *cwd, *out = NULL;

	if (val[0] == '/')
		return strdup(val);
	if (val[0] == '~' && (val[1] == '\0' || val[1] == '/')) {
		home = getenv("HOME");
		if (!home || home[0] != '/')
			return NULL;
		if (asprintf(&out, "%s%s", home, val + 1) < 0)
			return NULL;
		return out;
	}
	cwd = getcwd(NULL, 0);
	if (!cwd)
		return NULL;
	if (asprintf(&out, "%s/%s", cwd, val) < 0)
		out = NULL;
	free(cwd);
	return out;
}

static int set_path(struct parser *p, char **field, const char *key,
		    const char *val)
{
	char *abs;

	if (!*val)
		return bad_value(p, key, val, "expected a path");
	errno = 0;
	abs = absolute_path(val);
	if (!abs)
		return fail(p, "cannot make '%s' absolute for '%s': %s", val,
			    key, errno ? strerror(errno) : "HOME not set");
	return set_string(p, field, abs);
}

/* ---- option handlers -------------------------------------------------------- */

static int h_strict(struct parser *p, const char *key, const char *val)
{
	if (!strcasecmp(val, "yes")) {
		p->o->strict = HOSTKEY_YES;
	} else if (!strcasecmp(val, "accept-new")) {
		p->o->strict = HOSTKEY_ACCEPT_NEW;
	} else if (!strcasecmp(val, "no") || !strcasecmp(val, "off")) {
		p->o->strict = HOSTKEY_NO;
	} else if (!strcasecmp(val, "ask")) {
		/* There is no terminal to ask on; the safe reading is yes. */
		p->o->strict = HOSTKEY_YES;
		p->strict_ask = true;
	} else {
		return bad_value(p, key, val, "expected yes, accept-new or no");
	}
	return 0;
}

/* uid_t and gid_t are 32 bits on Linux; (uid_t)-1 means "no change". */
/* uid_t and gid_t are both 32-bit unsigned on Linux: one parser for both. */
static int parse_id(struct parser *p, const char *key, const char *val,
		    uint32_t *id, bool *set)
{
	unsigned long long v = 0;

	if (!parse_u64(val, 10, &v) || v >= UINT32_MAX)
		return bad_value(p, key, val, "expected a numeric id");
	*id = (uint32_t)v;
	*set = true;
	return 0;
}

static int h_uid(struct parser *p, const char *key, const char *val)
{
	return parse_id(p, key, val, &p->o->uid, &p->o->uid_set);
}

static int h_gid(struct parser *p, const char *key, const char *val)
{
	return parse_id(p, key, val, &p->o->gid, &p->o->gid_set);
}

static int h_umask(struct parser *p, const char *key, const char *val)
{
	unsigned long long v = 0;

	if (!parse_u64(val, 8, &v) || v > 0777)
		return bad_value(p, key, val, "expected octal 0 to 0777");
	p->o->umask = (mode_t)v;
	p->o->umask_set = true;
	return 0;
}

static int h_idmap(struct parser *p, const char *key, const char *val)
{
	if (!strcmp(val, "user")) {
		p->o->idmap_user = true;
	} else if (!strcmp(val, "none")) {
		p->o->idmap_user = false;
	} else if (!strcmp(val, "file")) {
		p->o->idmap_user = false;
		log_warn("option 'idmap=file' is an sshfs option steadyfs "
			 "does not use; ids are not mapped");
	} else {
		return bad_value(p, key, val, "expected user or none");
	}
	return 0;
}

static int h_max_write(struct parser *p, const char *key, const char *val)
{
	unsigned long long v = 0;

	if (!parse_u64(val, 10, &v) || v < MAX_WRITE_MIN)
		return bad_value(p, key, val, "expected bytes, at least 4096");
	if (v > MAX_WRITE_CAP) {
		/* The kernel never sends more than libfuse's buffer allows. */
		log_warn("option 'max_write=%s' capped at %u", val, MAX_WRITE_CAP);
		v = MAX_WRITE_CAP;
	}
	p->o->max_write = (size_t)v;
	return 0;
}

/*
 * sshfs's cache timeouts (sshfs 3's dcache_*, sshfs 2's cache_*). sshfs
 * keeps a path's attributes from a stat or a listing for the stat
 * timeout, and answers lookups from them, so the name's existence is
 * cached as long: that is the trade attr_timeout and entry_timeout make
 * here (another writer's change shows up to that much later), and the
 * stat timeout sets both. Its listing and link-target caches have no
 * counterpart: steadyfs reads every listing and every link target from
 * the server, so those timeouts are accepted (their values checked) and
 * ignored, which is never staler than asked. sshfs caches no absent
 * names; negative_timeout stays as it is.
 */
static int set_stat_cache(struct parser *p, const char *key, const char *val)
{
	double d;

	if (parse_duration(p, key, val, true, &d) < 0)
		return -1;
	p->o->attr_timeout = d;
	p->o->entry_timeout = d;
	return 0;
}

/* dcache_stat_timeout, cache_stat_timeout */
static int h_dcache_stat(struct parser *p, const char *key, const char *val)
{
	if (set_stat_cache(p, key, val) < 0)
		return -1;
	log_info("option '%s=%s' sets attr_timeout and entry_timeout", key, val);
	return 0;
}

/* dcache_timeout, cache_timeout: all three of sshfs's timeouts. */
static int h_dcache_all(struct parser *p, const char *key, const char *val)
{
	if (set_stat_cache(p, key, val) < 0)
		return -1;
	log_info("option '%s=%s' sets attr_timeout and entry_timeout; listings "
		 "and link targets are always read from the server", key, val);
	return 0;
}

/* dcache_dir_timeout, dcache_link_timeout and their cache_ forms. */
static int h_dcache_unused(struct parser *p, const char *key, const char *val)
{
	double d;

	if (parse_duration(p, key, val, true, &d) < 0)
		return -1;
	log_warn("option '%s' ignored: steadyfs reads every %s from the server",
		 key, strstr(key, "link") ? "link target" : "listing");
	return 0;
}

static int h_workaround(struct parser *p, const char *key, const char *val)
{
	/* sshfs's server bug workarounds: steadyfs handles those cases itself. */
	log_debug("option '%s=%s' ignored", key, val);
	return 0;
}

static int h_debug(struct parser *p, const char *key, const char *val)
{
	p->o->debug = true;
	p->o->foreground = true;
	return 0;
}

static int h_user(struct parser *p, const char *key, const char *val)
{
	if (!*val || strpbrk(val, "@:/ \t"))
		return bad_value(p, key, val, "expected a user name");
	return set_string(p, &p->ssh_user, strdup(val));
}

/* A group name, or a number for a group the system may not name. */
static int h_state_group(struct parser *p, const char *key, const char *val)
{
	struct group gr, *res = NULL;
	char buf[4096];
	unsigned long long v = 0;

	if (parse_u64(val, 10, &v) && v < UINT32_MAX) {
		p->o->state_gid = (gid_t)v;
	} else if (getgrnam_r(val, &gr, buf, sizeof(buf), &res) == 0 && res) {
		p->o->state_gid = res->gr_gid;
	} else {
		return bad_value(p, key, val, "expected a group name or number");
	}
	p->o->state_group_set = true;
	return 0;
}

#define FIELD(f) offsetof(struct steadyfs_opts, f)

static const struct opt_spec specs[] = {
	{ "port", K_INT, F_NOCASE, FIELD(port), 1, 65535, NULL },
	{ "IdentityFile", K_PATH, F_NOCASE, FIELD(identity_file), 0, 0, NULL },
	{ "UserKnownHostsFile", K_PATH, F_NOCASE, FIELD(known_hosts), 0, 0, NULL },
	{ "StrictHostKeyChecking", K_FN, F_NOCASE, 0, 0, 0, h_strict },
	{ "ConnectTimeout", K_SECONDS, F_NOCASE, FIELD(connect_timeout), 0, 0, NULL },
	{ "connect_timeout", K_SECONDS, 0, FIELD(connect_timeout), 0, 0, NULL },
	{ "ServerAliveInterval", K_SECONDS, F_NOCASE, FIELD(alive_interval), 0, 0, NULL },
	{ "ServerAliveCountMax", K_INT, F_NOCASE, FIELD(alive_count_max), 1, 1000, NULL },
	{ "User", K_FN, F_NOCASE, 0, 0, 0, h_user },
	{ "reconnect", K_NONE, 0, 0, 0, 0, NULL },
	{ "allow_other", K_SET, 0, FIELD(allow_other), 0, 0, NULL },
	{ "default_permissions", K_SET, 0, FIELD(default_permissions), 0, 0, NULL },
	{ "ro", K_SET, 0, FIELD(ro), 0, 0, NULL },
	{ "rw", K_CLEAR, 0, FIELD(ro), 0, 0, NULL },
	{ "suid", K_SET, 0, FIELD(suid), 0, 0, NULL },
	{ "nosuid", K_CLEAR, 0, FIELD(suid), 0, 0, NULL },
	{ "dev", K_SET, 0, FIELD(dev), 0, 0, NULL },
	{ "nodev", K_CLEAR, 0, FIELD(dev), 0, 0, NULL },
	{ "noexec", K_SET, 0, FIELD(noexec), 0, 0, NULL },
	{ "exec", K_CLEAR, 0, FIELD(noexec), 0, 0, NULL },
	{ "uid", K_FN, 0, 0, 0, 0, h_uid },
	{ "gid", K_FN, 0, 0, 0, 0, h_gid },
	{ "umask", K_FN, 0, 0, 0, 0, h_umask },
	{ "idmap", K_FN, 0, 0, 0, 0, h_idmap },
	{ "kernel_cache", K_SET, 0, FIELD(kernel_cache), 0, 0, NULL },
	{ "auto_cache", K_SET, 0, FIELD(auto_cache), 0, 0, NULL },
	{ "noauto_cache", K_CLEAR, 0, FIELD(auto_cache), 0, 0, NULL },
	{ "attr_timeout", K_SECONDS, F_ZERO_OK, FIELD(attr_timeout), 0, 0, NULL },
	{ "entry_timeout", K_SECONDS, F_ZERO_OK, FIELD(entry_timeout), 0, 0, NULL },
	{ "negative_timeout", K_SECONDS, F_ZERO_OK, FIELD(negative_timeout), 0, 0, NULL },
	{ "dcache_timeout", K_FN, 0, 0, 0, 0, h_dcache_all },
	{ "cache_timeout", K_FN, 0, 0, 0, 0, h_dcache_all },
	{ "dcache_stat_timeout", K_FN, 0, 0, 0, 0, h_dcache_stat },
	{ "cache_stat_timeout", K_FN, 0, 0, 0, 0, h_dcache_stat },
	{ "dcache_dir_timeout", K_FN, 0, 0, 0, 0, h_dcache_unused },
	{ "cache_dir_timeout", K_FN, 0, 0, 0, 0, h_dcache_unused },
	{ "dcache_link_timeout", K_FN, 0, 0, 0, 0, h_dcache_unused },
	{ "cache_link_timeout", K_FN, 0, 0, 0, 0, h_dcache_unused },
	{ "max_write", K_FN, 0, 0, 0, 0, h_max_write },
	{ "workaround", K_FN, 0, 0, 0, 0, h_workaround },
	{ "debug", K_FN, F_NOVAL, 0, 0, 0, h_debug },  /* FUSE's: like -d */
	{ "connections", K_INT, 0, FIELD(connections), 1, 10, NULL },
	{ "op_timeout", K_SECONDS, 0, FIELD(op_timeout), 0, 0, NULL },
	{ "backoff_min", K_SECONDS, 0, FIELD(backoff_min), 0, 0, NULL },
	{ "backoff_max", K_SECONDS, 0, FIELD(backoff_max), 0, 0, NULL },
	{ "state_dir", K_PATH, 0, FIELD(state_dir), 0, 0, NULL },
	{ "metrics_textfile", K_PATH, 0, FIELD(metrics_textfile), 0, 0, NULL },
	{ "state_group", K_FN, 0, 0, 0, 0, h_state_group },
};

static bool takes_value(const struct opt_spec *s)
{
	return s->kind != K_SET && s->kind != K_CLEAR && s->kind != K_NONE &&
	       !(s->flags & F_NOVAL);
}

static const struct opt_spec *find_spec(const char *key)
{
	size_t i;

	for (i = 0; i < ARRAY_LEN(specs); i++) {
		if (specs[i].flags & F_NOCASE ? !strcasecmp(specs[i].name, key)
					      : !strcmp(specs[i].name, key))
			return &specs[i];
	}
	return NULL;
}

static int apply_spec(struct parser *p, const struct opt_spec *s,
		      const char *key, const char *val)
{
	char *base = (char *)p->o;
	unsigned long long n;
	double d;

	if (!takes_value(s) && val)
		return fail(p, "option '%s' takes no value", key);
	if (takes_value(s) && !val)
		return fail(p, "option '%s' needs a value", key);
	switch (s->kind) {
	case K_SET:
	case K_CLEAR:
		*(bool *)(base + s->off) = s->kind == K_SET;
		return 0;
	case K_NONE:
		return 0;
	case K_SECONDS:
		if (parse_duration(p, key, val, s->flags & F_ZERO_OK, &d) < 0)
			return -1;
		*(double *)(base + s->off) = d;
		return 0;
	case K_INT:
		if (!parse_u64(val, 10, &n) || n < (unsigned long long)s->min ||
		    n > (unsigned long long)s->max)
			return fail(p, "bad value for '%s': '%s' (expected %ld to %ld)",
				    key, val, s->min, s->max);
		*(int *)(base + s->off) = (int)n;
		return 0;
	case K_PATH:
		return set_path(p, (char **)(base + s->off), key, val);
	case K_FN:
		return s->fn(p, key, val);
	}
	return fail(p, "internal error on option '%s'", key);
}

static bool name_matches(const char *pattern, enum match m, const char *key)
{
	switch (m) {
	case M_EXACT:
		return !strcmp(pattern, key);
	case M_NOCASE:
		return !strcasecmp(pattern, key);
	case M_PREFIX:
		return !strncmp(pattern, key, strlen(pattern));
	}
	return false;
}

static const struct passive_spec *find_passive(const char *key)
{
	size_t i;

	for (i = 0; i < OPTS_NPASSIVE; i++) {
		if (name_matches(opts_passive[i].name, opts_passive[i].match, key))
			return &opts_passive[i];
	}
	return NULL;
}

/* One `-o` item: "key" or "key=value". */
static int apply_item(struct parser *p, char *item)
{
	const struct passive_spec *pas;
	const struct opt_spec *spec;
	char *eq = strchr(item, '=');
	const char *val = NULL;
	size_t idx;

	if (!*item)
		return 0;  /* "a,,b": an empty item means nothing */
	if (eq) {
		*eq = '\0';
		val = eq + 1;
	}
	if (!*item)
		return fail(p, "bad option '=%s': no name", val);
	spec = find_spec(item);
	pas = find_passive(item);
	/* A bare `user` is mount(8)'s, `User=name` is ssh's. */
	if (spec && !(pas && !val && takes_value(spec)))
		return apply_spec(p, spec, item, val);
	if (!pas)
		return fail(p, "unknown option '%s'", item);
	idx = (size_t)(pas - opts_passive);
	if (pas->what && !p->warned[idx]) {
		p->warned[idx] = true;
		log_warn("option '%s' is %s steadyfs does not use; ignored",
			 item, pas->what);
	}
	return 0;
}

/* One `-o` argument: comma-separated items; a backslash escapes the next
 * character (fuse_opt's rule), so a path may contain a comma. */
static int apply_option_list(struct parser *p, const char *list)
{
	char *buf = malloc(strlen(list) + 1);
	char *w = buf, *item = buf;
	const char *r;
	int rc = 0;

	if (!buf)
		return fail(p, "out of memory");
	for (r = list; rc == 0; r++) {
		if (*r == '\\' && r[1]) {
			*w++ = *++r;
		} else if (*r == ',' || *r == '\0') {
			*w++ = '\0';
			rc = apply_item(p, item);
			item = w;
			if (*r == '\0')
				break;
		} else {
			*w++ = *r;
		}
	}
	free(buf);
	return rc;
}

/* ---- positionals ----------------------------------------------------------- */

static bool host_chars_ok(const char *h, size_t len)
{
	return len > 0 && !memchr(h, '/', len) && !memchr(h, '[', len) &&
	       !memchr(h, ']', len) && !memchr(h, ' ', len) &&
	       !memchr(h, '\t', len);
}

/* `[user@]host:[dir]`, host possibly a bracketed IPv6 literal. The first
 * colon outside brackets ends the host, the last `@` before it ends the
 * user; the dir may contain anything. */
static int parse_source(struct parser *p, const char *src)
{
	struct steadyfs_opts *o = p->o;
	const char *colon = NULL, *at, *host, *c;
	bool bracket = false;
	size_t hlen;

	for (c = src; *c && !colon; c++) {
		if (*c == '[')
			bracket = true;
		else if (*c == ']')
			bracket = false;
		else if (*c == ':' && !bracket)
			colon = c;
	}
	if (!colon)
		return fail(p, "bad source '%s': expected " SOURCE_SHAPE, src);
	host = src;
	at = memrchr(src, '@', (size_t)(colon - src));
	if (at) {
		if (at == src)
			return fail(p, "bad source '%s': empty user", src);
		host = at + 1;
	}
	hlen = (size_t)(colon - host);
	if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
		host++;
		hlen -= 2;
	}
	if (!host_chars_ok(host, hlen))
		return fail(p, "bad source '%s': expected " SOURCE_SHAPE, src);

	free(o->user);
	o->user = at ? strndup(src, (size_t)(at - src)) : NULL;
	free(o->host);
	o->host = strndup(host, hlen);
	free(o->remote_dir);
	o->remote_dir = strdup(colon + 1);
	if ((at && !o->user) || !o->host || !o->remote_dir)
		return fail(p, "out of memory");
	return 0;
}

static int positional(struct parser *p, const char *arg)
{
	switch (p->npos++) {
	case 0:
		return parse_source(p, arg);
	case 1:
		if (!*arg)
			return fail(p, "missing mountpoint");
		return set_string(p, &p->o->mountpoint, strdup(arg));
	default:
		return fail(p, "unexpected argument '%s'", arg);
	}
}

/* ---- flags ------------------------------------------------------------------ */

enum flag_rc { FLAG_ERR = -1, FLAG_OK = 0, FLAG_STOP = 1 };

/* A flag's value, glued (-p23) or the next argument (-p 23). */
static const char *flag_value(struct parser *p, char flag, const char *rest,
			      int argc, char **argv, int *i)
{
	if (*rest)
		return rest;
	if (*i + 1 < argc)
		return argv[++*i];
	fail(p, "option '-%c' needs a value", flag);
	return NULL;
}

static int fs_type(struct parser *p, const char *val)
{
	/* mount(8) names the type when it runs a helper not named after it. */
	if (strcmp(val, "fuse.steadyfs") && strcmp(val, "steadyfs"))
		return bad_value(p, "-t", val, "expected fuse.steadyfs");
	return 0;
}

/* One `-abc` cluster. FLAG_STOP: --help/--version seen, stop parsing. */
static int short_flags(struct parser *p, int argc, char **argv, int *i)
{
	const char *arg = argv[*i], *val;
	const char *c;

	for (c = arg + 1; *c; c++) {
		switch (*c) {
		case 'f':
			p->o->foreground = true;
			break;
		case 'd':
			h_debug(p, "-d", NULL);
			break;
		case 'h':
			p->o->show_help = true;
			return FLAG_STOP;
		case 'V':
			p->o->show_version = true;
			return FLAG_STOP;
		case 'n': case 's': case 'v':
			/* mount(8) helper flags (no mtab, sloppy, verbose) and
			 * sshfs's single-thread/verbose: nothing to do. */
			break;
		case 'C': {
			char item[] = "compression";  /* sshfs: -o compression=yes */

			if (apply_item(p, item) < 0)
				return FLAG_ERR;
			break;
		}
		case 'p': case 'o': case 't': case 'F':
			val = flag_value(p, *c, c + 1, argc, argv, i);
			if (!val)
				return FLAG_ERR;
			if (*c == 'p')
				return apply_spec(p, find_spec("port"), "-p", val);
			if (*c == 'o')
				return apply_option_list(p, val);
			if (*c == 't')
				return fs_type(p, val);
			log_warn("option '-F %s': ssh config files are not "
				 "read; ignored", val);
			return FLAG_OK;
		default:
			return fail(p, "unknown option '-%c'", *c);
		}
	}
	return FLAG_OK;
}

static int long_flag(struct parser *p, const char *arg)
{
	if (!strcmp(arg, "--help")) {
		p->o->show_help = true;
		return FLAG_STOP;
	}
	if (!strcmp(arg, "--version")) {
		p->o->show_version = true;
		return FLAG_STOP;
	}
	if (!strcmp(arg, "--debug"))
		return h_debug(p, arg, NULL);
	if (!strcmp(arg, "--verbose"))
		return FLAG_OK;
	return fail(p, "unknown option '%s'", arg);
}

/* ---- public ----------------------------------------------------------------- */

static void set_defaults(struct steadyfs_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->port = 22;
	o->strict = HOSTKEY_YES;
	o->connect_timeout = 10;
	o->alive_interval = 5;
	o->alive_count_max = 2;
	o->attr_timeout = 1;
	o->entry_timeout = 1;
	o->max_write = MAX_WRITE_CAP;
	o->connections = 4;
	o->op_timeout = 20;
	o->backoff_min = 0.2;
	o->backoff_max = 5;
}

/* Checks that need the whole command line. */
static int finish(struct parser *p)
{
	struct steadyfs_opts *o = p->o;

	if (p->npos == 0)
		return fail(p, "missing source: expected " SOURCE_SHAPE
			    " MOUNTPOINT");
	if (p->npos == 1)
		return fail(p, "missing mountpoint");
	if (o->backoff_min > o->backoff_max)
		return fail(p, "bad value for 'backoff_min': '%g' (more than "
			    "backoff_max '%g')", o->backoff_min, o->backoff_max);
	if (o->allow_other && !o->default_permissions) {
		o->default_permissions = true;
		o->default_permissions_implied = true;
	}
	if (!o->user && p->ssh_user) {
		o->user = p->ssh_user;
		p->ssh_user = NULL;
	}
	if (p->strict_ask)
		log_warn("option 'StrictHostKeyChecking=ask': no terminal to "
			 "ask on; using yes");
	if (o->connections > CONNECTIONS_WARN)
		log_warn("option 'connections=%d': more than %d leaves the "
			 "provider's 10-per-account limit no room for an upgrade",
			 o->connections, CONNECTIONS_WARN);
	return 0;
}

static int parse_args(struct parser *p, int argc, char **argv)
{
	bool options_done = false;
	int i, rc;

	for (i = 1; i < argc; i++) {
		const char *arg = argv[i];

		if (options_done || arg[0] != '-' || arg[1] == '\0') {
			rc = positional(p, arg);
		} else if (!strcmp(arg, "--")) {
			options_done = true;
			rc = 0;
		} else if (arg[1] == '-') {
			rc = long_flag(p, arg);
		} else {
			rc = short_flags(p, argc, argv, &i);
		}
		if (rc != 0)
			return rc;
	}
	return finish(p);
}

int steadyfs_opts_parse(struct steadyfs_opts *o, int argc, char **argv,
	       char *err, size_t errsz)
{
	struct parser p = { .o = o, .err = err, .errsz = errsz };
	int rc;

	set_defaults(o);
	if (err && errsz)
		err[0] = '\0';
	rc = parse_args(&p, argc, argv);
	free(p.ssh_user);
	if (rc == FLAG_STOP)
		return 0;
	if (rc < 0) {
		/* Leave nothing allocated, so a failed parse needs no release
		 * (and a release is still safe). */
		steadyfs_opts_release(o);
		set_defaults(o);
		return -1;
	}
	return 0;
}

void steadyfs_opts_release(struct steadyfs_opts *o)
{
	free(o->user);
	free(o->host);
	free(o->remote_dir);
	free(o->mountpoint);
	free(o->identity_file);
	free(o->known_hosts);
	free(o->state_dir);
	free(o->metrics_textfile);
	o->user = o->host = o->remote_dir = o->mountpoint = NULL;
	o->identity_file = o->known_hosts = NULL;
	o->state_dir = o->metrics_textfile = NULL;
}

double steadyfs_opts_dead_after(const struct steadyfs_opts *o)
{
	double d = o->alive_interval * o->alive_count_max;

	return d < o->op_timeout / 2 ? d : o->op_timeout / 2;
}
