/*
 * probe: bounded, parallel path probes in forked children, with stuck
 * children remembered across runs. See probe.h for the contract.
 *
 * Shape of one run: load the stuck-child records (paths that still have a
 * child stuck in the kernel are answered "hung" at once), fork one child
 * per remaining path, poll the children's result pipes until the
 * deadline, SIGKILL whoever has not answered, reap for a short grace
 * period, abandon (and record) whoever is still not reaped, then classify
 * each answer and weigh it against the steadyfs mirror if there is one.
 *
 * Only children touch the probed paths. The parent reads the mount-free
 * things: its pipes, /proc/PID/stat, the state dir and mirrors (local).
 */
#include "probe.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "atomicfile.h"
#include "clock.h"
#include "mounttab.h"
#include "paths.h"

/* Entries a directory probe reads: enough to make the server list it. */
#define PROBE_READDIR_ENTRIES 4
/* Bytes a file probe reads. */
#define PROBE_READ_BYTES 512
/* The part of PROBE_GRACE_S spent waiting for killed children to go. */
#define PROBE_REAP_S 0.2
#define STUCK_PREFIX "stuck."

enum probe_op { OP_NONE = 0, OP_STAT, OP_OPENDIR, OP_READDIR, OP_OPEN, OP_READ };

static const char *const op_names[] = {
	[OP_NONE] = NULL, [OP_STAT] = "stat", [OP_OPENDIR] = "opendir",
	[OP_READDIR] = "readdir", [OP_OPEN] = "open", [OP_READ] = "read",
};

/* What a child sends back through its pipe. */
struct probe_msg {
	int32_t err;
	int32_t op;
	uint64_t ns;
	uint32_t mode;
	uint64_t dev;
	char resolved[PATH_MAX];
};

/* The parent's view of one child. */
struct kid {
	pid_t pid;          /* 0: no child (stuck record reused, or fork failed) */
	int fd;             /* read end of the result pipe, -1 once at EOF */
	size_t got;         /* bytes of msg received */
	struct probe_msg msg;
	int answered;       /* a whole message arrived */
	int reaped;
	uint64_t end_ns;    /* when the answer (or EOF) arrived */
};

/* A stuck-child record from the state dir. */
struct stuck {
	pid_t pid;
	unsigned long long starttime;
	double started;
	char path[PATH_MAX];
};

const char *probe_state_name(enum probe_state s)
{
	static const char *const names[PROBE_NSTATES] = {
		[PROBE_OK] = "ok", [PROBE_STALE] = "stale", [PROBE_HUNG] = "hung",
		[PROBE_MISSING] = "missing", [PROBE_ERROR] = "error",
		[PROBE_DEGRADED] = "degraded",
	};

	return (unsigned)s < PROBE_NSTATES ? names[s] : "error";
}

int probe_state_healthy(enum probe_state s)
{
	return s == PROBE_OK;
}

int probe_result_healthy(const struct probe_result *r)
{
	if (!probe_state_healthy(r->state))
		return 0;
	return r->mirror.health == MIRROR_NONE || r->mirror.health == MIRROR_FRESH;
}

/* ---- the child ----------------------------------------------------------- */

static void probe_dir(const char *path, struct probe_msg *m)
{
	DIR *d = opendir(path);

	if (!d) {
		m->err = errno;
		m->op = OP_OPENDIR;
		return;
	}
	for (int i = 0; i < PROBE_READDIR_ENTRIES; i++) {
		errno = 0;
		if (readdir(d))
			continue;
		if (errno) {
			m->err = errno;
			m->op = OP_READDIR;
		}
		break;
	}
	closedir(d);
}

static void probe_file(const char *path, struct probe_msg *m)
{
	char buf[PROBE_READ_BYTES];
	int fd = open(path, O_RDONLY | O_NOCTTY | O_CLOEXEC);

	if (fd < 0) {
		m->err = errno;
		m->op = OP_OPEN;
		return;
	}
	if (read(fd, buf, sizeof(buf)) < 0) {
		m->err = errno;
		m->op = OP_READ;
	}
	close(fd);
}

/* stat, then read a directory or a regular file; other types (FIFOs,
 * devices) only get the stat, since opening them can block or act. */
static void probe_path(const char *path, int flags, struct probe_msg *m)
{
	struct stat st;

	if (stat(path, &st) < 0) {
		m->err = errno;
		m->op = OP_STAT;
		return;
	}
	m->mode = st.st_mode;
	m->dev = st.st_dev;
	if (S_ISDIR(st.st_mode))
		probe_dir(path, m);
	else if (S_ISREG(st.st_mode))
		probe_file(path, m);
	if (m->err == 0 && (flags & PROBE_F_RESOLVE) && !realpath(path, m->resolved))
		m->resolved[0] = '\0';
}

/*
 * Runs in the forked child; never returns. Keeps only the result pipe
 * (as fd 3) and /dev/null on 0-2: an inherited descriptor (a caller's
 * flock'd lock file, a socket, its stdout pipe) must not stay held by a
 * child that may be stuck in the kernel for hours.
 */
static void child_main(const char *path, int flags, int wfd, pid_t parent)
{
	struct probe_msg m;
	uint64_t t0;
	const char *p;
	size_t left;
	int nul;

	/* Die with the parent; if it is already gone, stop here. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
		_exit(1);
	if (wfd != 3 && dup2(wfd, 3) < 0)
		_exit(1);
	/* Not even stdio: a caller reading our caller's output until EOF (a
	 * shell's $(...), subprocess.run) would otherwise wait for us. */
	nul = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (nul < 0 || dup2(nul, 0) < 0 || dup2(nul, 1) < 0 || dup2(nul, 2) < 0)
		_exit(1);
	close_range(4, ~0U, 0);
	memset(&m, 0, sizeof(m));
	t0 = clock_mono_ns();
	probe_path(path, flags, &m);
	m.ns = clock_mono_ns() - t0;
	for (p = (const char *)&m, left = sizeof(m); left;) {
		ssize_t w = write(3, p, left);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			_exit(1);
		p += w;
		left -= (size_t)w;
	}
	_exit(0);
}

/* ---- /proc and the stuck records ------------------------------------------ */

/* Reads up to size-1 bytes of a small local file (one read is enough for
 * /proc files and our records) and NUL-terminates them. 0 or -1. */
static int read_small(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, buf, size - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	return 0;
}

/* Reads the state letter and start time (clock ticks after boot) of `pid`
 * from /proc/PID/stat. 0, or -1 if the process is gone. */
static int proc_stat_read(pid_t pid, char *state, unsigned long long *starttime)
{
	char path[64], buf[1024], *p;

	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	if (read_small(path, buf, sizeof(buf)) < 0)
		return -1;
	/* The command name may hold spaces and parens: fields restart after
	 * the last ')'. Field 3 is the state, field 22 the start time. */
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 1, " %c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u "
			 "%*d %*d %*d %*d %*d %*d %llu", state, starttime) != 2)
		return -1;
	return 0;
}

enum stuck_life { STUCK_ALIVE, STUCK_ZOMBIE, STUCK_GONE };

/* Whether the record's process still runs: same pid and start time and
 * not a zombie. A zombie with the same start time is the record's process,
 * dead but not yet reaped (by us, if we are its parent). */
static enum stuck_life stuck_life(const struct stuck *s)
{
	unsigned long long st;
	char state;

	if (proc_stat_read(s->pid, &state, &st) < 0 || st != s->starttime)
		return STUCK_GONE;
	return state == 'Z' || state == 'X' ? STUCK_ZOMBIE : STUCK_ALIVE;
}

static int stuck_parse(const char *file, struct stuck *s)
{
	char buf[PATH_MAX + 128], *nl;
	long pid;

	s->pid = 0;
	if (read_small(file, buf, sizeof(buf)) < 0)
		return -1;
	nl = strchr(buf, '\n');
	if (!nl || sscanf(buf, "%ld %llu %lf", &pid, &s->starttime, &s->started) != 3 ||
	    pid <= 0 || strlen(nl + 1) >= sizeof(s->path))
		return -1;
	s->pid = (pid_t)pid;
	snprintf(s->path, sizeof(s->path), "%s", nl + 1);
	return 0;
}

/*
 * Reads the records of `dir` into a malloc'd array (*out, *count), dropping
 * (and reaping, when it is our own child) every record whose process is
 * gone. Returns 0 or -1 with `err` set; a missing dir is 0 records.
 */
static int stuck_load(const char *dir, struct stuck **out, size_t *count,
		      char *err, size_t errsz)
{
	struct stuck *v = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *d;

	*out = NULL;
	*count = 0;
	d = opendir(dir);
	if (!d) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errsz, "cannot read state dir '%s': %s", dir, strerror(errno));
		return -1;
	}
	while ((de = readdir(d))) {
		char file[PATH_MAX + 300];
		enum stuck_life life;
		struct stuck s;

		if (strncmp(de->d_name, STUCK_PREFIX, strlen(STUCK_PREFIX)) != 0)
			continue;
		snprintf(file, sizeof(file), "%s/%s", dir, de->d_name);
		life = stuck_parse(file, &s) < 0 ? STUCK_GONE : stuck_life(&s);
		if (life == STUCK_ZOMBIE)
			waitpid(s.pid, NULL, WNOHANG);  /* ours in a long-running caller */
		if (life != STUCK_ALIVE) {
			unlink(file);
			continue;
		}
		if (n == cap) {
			struct stuck *nv = reallocarray(v, cap ? cap * 2 : 8, sizeof(*v));

			if (!nv) {
				closedir(d);
				free(v);
				snprintf(err, errsz, "cannot read state dir '%s': %s", dir,
					 strerror(ENOMEM));
				return -1;
			}
			v = nv;
			cap = cap ? cap * 2 : 8;
		}
		v[n++] = s;
	}
	closedir(d);
	*out = v;
	*count = n;
	return 0;
}

int probe_stuck_list(const char *state_dir,
		     void (*fn)(const char *path, pid_t pid, double started, void *ctx),
		     void *ctx, char *err, size_t errsz)
{
	struct stuck *v;
	size_t n;

	if (stuck_load(state_dir, &v, &n, err, errsz) < 0)
		return -1;
	for (size_t i = 0; fn && i < n; i++)
		fn(v[i].path, v[i].pid, v[i].started, ctx);
	free(v);
	return (int)n;
}

static int stuck_record(const char *dir, pid_t pid, double started, const char *path,
			char *err, size_t errsz)
{
	char file[PATH_MAX], *text = NULL;
	unsigned long long st;
	char state;
	int len, rc;

	if (proc_stat_read(pid, &state, &st) < 0)
		return 0;  /* it went after all: nothing to remember */
	snprintf(file, sizeof(file), "%s/" STUCK_PREFIX "%ld", dir, (long)pid);
	len = asprintf(&text, "%ld %llu %.3f\n%s", (long)pid, st, started, path);
	if (len < 0) {
		snprintf(err, errsz, "cannot record stuck child: %s", strerror(ENOMEM));
		return -1;
	}
	/* It names a hung path: root's alone, like the mirror (statedir.h). */
	rc = atomicfile_write(file, text, (size_t)len, 0600, err, errsz);
	free(text);
	return rc;
}

/* ---- the parent ---------------------------------------------------------- */

/* Everything one probe_run() call works on. */
struct run {
	const struct probe_opts *opts;
	const struct probe_req *reqs;
	struct probe_result *res;
	size_t n;
	struct kid *kids;
	char (*abs)[PATH_MAX];   /* each path made absolute, for the records */
	double timeout;
	uint64_t t0;             /* monotonic start */
	double wall0;            /* wall-clock start */
};

/* Makes room for one pipe per path, raising the soft fd limit if needed. */
static int ensure_fd_room(size_t n, char *err, size_t errsz)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
		snprintf(err, errsz, "cannot read the fd limit: %s", strerror(errno));
		return -1;
	}
	if (rl.rlim_cur != RLIM_INFINITY && n + 64 > rl.rlim_cur) {
		rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || n + 64 <= rl.rlim_max ?
			(rlim_t)(n + 64) : rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0 || n + 64 > rl.rlim_cur) {
			snprintf(err, errsz, "too many paths (%zu) for the fd limit", n);
			return -1;
		}
	}
	return 0;
}

/* Answers paths whose earlier child is still stuck, without a new child. */
static void apply_stuck(struct run *r, const struct stuck *v, size_t nv)
{
	for (size_t i = 0; i < r->n; i++)
		for (size_t j = 0; j < nv; j++) {
			if (strcmp(r->abs[i], v[j].path) != 0)
				continue;
			r->res[i].state = PROBE_HUNG;
			r->res[i].abandoned = 1;
			r->res[i].reused = 1;
			r->res[i].pid = v[j].pid;
			r->res[i].duration = r->wall0 > v[j].started ? r->wall0 - v[j].started : 0;
			r->kids[i].reaped = 1;  /* nothing of ours to wait for */
			break;
		}
}

static void spawn(struct run *r, size_t i)
{
	struct kid *k = &r->kids[i];
	struct probe_result *res = &r->res[i];
	pid_t parent = getpid();
	int p[2];

	/* Non-blocking on both ends: the parent must never wait on a read, and
	 * the child's one message fits an empty pipe. */
	if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) {
		res->state = PROBE_ERROR;
		res->err = errno;
		res->op = "pipe";
		k->reaped = 1;
		return;
	}
	k->pid = fork();
	if (k->pid == 0)
		child_main(r->reqs[i].path, r->reqs[i].flags, p[1], parent);
	close(p[1]);
	if (k->pid < 0) {
		res->state = PROBE_ERROR;
		res->err = errno;
		res->op = "fork";
		k->pid = 0;
		k->reaped = 1;
		close(p[0]);
		return;
	}
	k->fd = p[0];
	res->pid = k->pid;
}

/* Drains a readable pipe; on EOF closes it and notes the time. */
static void kid_read(struct kid *k)
{
	for (;;) {
		ssize_t got;

		if (k->got < sizeof(k->msg)) {
			got = read(k->fd, (char *)&k->msg + k->got, sizeof(k->msg) - k->got);
		} else {
			char sink[64];

			got = read(k->fd, sink, sizeof(sink));
		}
		if (got > 0) {
			k->got += (size_t)got;
			continue;
		}
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0 && errno == EAGAIN)
			return;
		/* EOF (or a read error, which ends the conversation too). */
		close(k->fd);
		k->fd = -1;
		k->answered = k->got == sizeof(k->msg);
		k->end_ns = clock_mono_ns();
		return;
	}
}

/* Polls every open pipe until all are at EOF or the deadline passes. */
static int collect(struct run *r, char *err, size_t errsz)
{
	uint64_t deadline = r->t0 + clock_s_to_ns(r->timeout);
	struct pollfd *pf = calloc(r->n ? r->n : 1, sizeof(*pf));
	size_t *idx = calloc(r->n ? r->n : 1, sizeof(*idx));

	if (!pf || !idx) {
		free(pf);
		free(idx);
		snprintf(err, errsz, "cannot poll children: %s", strerror(ENOMEM));
		return -1;
	}
	for (;;) {
		uint64_t now = clock_mono_ns();
		size_t m = 0;
		int rc;

		for (size_t i = 0; i < r->n; i++)
			if (r->kids[i].fd >= 0) {
				pf[m].fd = r->kids[i].fd;
				pf[m].events = POLLIN;
				idx[m++] = i;
			}
		if (m == 0 || now >= deadline)
			break;
		/* Round up so the last poll does not end just short of it. */
		rc = poll(pf, m, (int)((deadline - now + NS_PER_MS - 1) / NS_PER_MS));
		if (rc < 0 && errno != EINTR) {
			snprintf(err, errsz, "cannot poll children: %s", strerror(errno));
			free(pf);
			free(idx);
			return -1;
		}
		for (size_t j = 0; rc > 0 && j < m; j++)
			if (pf[j].revents)
				kid_read(&r->kids[idx[j]]);
	}
	free(pf);
	free(idx);
	return 0;
}

/* SIGKILLs the children that did not answer, then reaps everyone it can
 * within PROBE_REAP_S; who is left is stuck in the kernel. */
static void kill_and_reap(struct run *r)
{
	uint64_t deadline;
	struct timespec nap = { 0, 2 * 1000 * 1000 };

	for (size_t i = 0; i < r->n; i++) {
		struct kid *k = &r->kids[i];

		if (k->fd >= 0) {
			close(k->fd);
			k->fd = -1;
		}
		if (k->pid > 0 && !k->answered && !k->reaped)
			kill(k->pid, SIGKILL);
	}
	deadline = clock_mono_ns() + clock_s_to_ns(PROBE_REAP_S);
	for (;;) {
		int pending = 0;

		for (size_t i = 0; i < r->n; i++) {
			struct kid *k = &r->kids[i];
			pid_t w;

			if (k->reaped || k->pid <= 0)
				continue;
			w = waitpid(k->pid, NULL, WNOHANG);
			if (w == k->pid || (w < 0 && errno == ECHILD))
				k->reaped = 1;
			else
				pending = 1;
		}
		if (!pending || clock_mono_ns() >= deadline)
			break;
		nanosleep(&nap, NULL);
	}
}

static enum probe_state state_of_errno(int e)
{
	switch (e) {
	case 0: return PROBE_OK;
	case ENOENT: return PROBE_MISSING;
	case ENOTCONN: case ECONNABORTED: case ESTALE: return PROBE_STALE;
	default: return PROBE_ERROR;
	}
}

/* Turns each child's answer (or silence) into a result. */
static void classify(struct run *r)
{
	for (size_t i = 0; i < r->n; i++) {
		struct kid *k = &r->kids[i];
		struct probe_result *res = &r->res[i];

		if (k->pid <= 0)
			continue;  /* answered already: reused record or fork failure */
		if (k->answered) {
			res->err = k->msg.err;
			res->op = (unsigned)k->msg.op < sizeof(op_names) / sizeof(*op_names) ?
				op_names[k->msg.op] : NULL;
			res->state = state_of_errno(k->msg.err);
			res->duration = (double)k->msg.ns / 1e9;
			res->mode = (mode_t)k->msg.mode;
			res->dev = (dev_t)k->msg.dev;
			if (res->state == PROBE_OK)
				snprintf(res->resolved, sizeof(res->resolved), "%s", k->msg.resolved);
		} else if (k->end_ns) {
			/* EOF without a whole message: the child died (OOM killer,
			 * someone's kill). Report it, do not guess. */
			res->state = PROBE_ERROR;
			res->err = ECHILD;
			res->op = "child";
			res->duration = (double)(k->end_ns - r->t0) / 1e9;
		} else {
			res->state = PROBE_HUNG;
			res->duration = r->timeout;
		}
		/* A child that answered is exiting, not stuck. */
		res->abandoned = !k->answered && !k->reaped;
	}
}

/* A steadyfs mount riding out an outage: the daemon is alive (fresh
 * mirror) and says it is not connected, so silence, slowness or EIO is
 * the honest "degraded", not a dead mount. */
static void apply_mirror(struct run *r)
{
	double slow = r->opts->slow > 0 ? r->opts->slow : r->timeout / 2;

	for (size_t i = 0; i < r->n; i++) {
		struct probe_result *res = &r->res[i];
		const struct mirror_status *m = &res->mirror;

		if (!r->reqs[i].mirror_dir)
			continue;
		mirror_read(r->reqs[i].mirror_dir, clock_wall(), &res->mirror);
		if (m->health != MIRROR_FRESH || strcmp(m->state, "connected") == 0)
			continue;
		if (res->state == PROBE_HUNG || (res->state == PROBE_ERROR && res->err == EIO) ||
		    (res->state == PROBE_OK && res->duration > slow))
			res->state = PROBE_DEGRADED;
	}
}

static int record_abandoned(struct run *r, char *err, size_t errsz)
{
	for (size_t i = 0; i < r->n; i++) {
		struct probe_result *res = &r->res[i];

		if (!res->abandoned || res->reused || !r->opts->state_dir)
			continue;
		if (stuck_record(r->opts->state_dir, res->pid, r->wall0, r->abs[i],
				 err, errsz) < 0)
			return -1;
	}
	return 0;
}

static int run_init(struct run *r, const struct probe_opts *opts,
		    const struct probe_req *reqs, size_t n, struct probe_result *res,
		    char *err, size_t errsz)
{
	memset(r, 0, sizeof(*r));
	r->opts = opts;
	r->reqs = reqs;
	r->res = res;
	r->n = n;
	r->timeout = opts->timeout > 0 ? opts->timeout : PROBE_DEFAULT_TIMEOUT_S;
	r->kids = calloc(n ? n : 1, sizeof(*r->kids));
	r->abs = calloc(n ? n : 1, sizeof(*r->abs));
	if (!r->kids || !r->abs) {
		snprintf(err, errsz, "cannot start probes: %s", strerror(ENOMEM));
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		memset(&res[i], 0, sizeof(res[i]));
		r->kids[i].fd = -1;
		if (mt_path_normalize(reqs[i].path, NULL, r->abs[i], PATH_MAX) < 0) {
			snprintf(err, errsz, "bad path '%s': %s", reqs[i].path, strerror(errno));
			return -1;
		}
	}
	return 0;
}

static void run_release(struct run *r)
{
	for (size_t i = 0; r->kids && i < r->n; i++)
		if (r->kids[i].fd >= 0)
			close(r->kids[i].fd);
	free(r->kids);
	free(r->abs);
}

int probe_run(const struct probe_opts *opts, const struct probe_req *reqs, size_t n,
	      struct probe_result *res, char *err, size_t errsz)
{
	struct stuck *stuck = NULL;
	size_t nstuck = 0;
	struct run r;
	int rc = -1;

	if (run_init(&r, opts, reqs, n, res, err, errsz) < 0)
		goto out;
	if (ensure_fd_room(n, err, errsz) < 0)
		goto out;
	if (opts->state_dir) {
		if (mkdir_p(opts->state_dir, 0755) < 0) {
			snprintf(err, errsz, "cannot create state dir '%s': %s",
				 opts->state_dir, strerror(errno));
			goto out;
		}
		if (stuck_load(opts->state_dir, &stuck, &nstuck, err, errsz) < 0)
			goto out;
	}
	r.t0 = clock_mono_ns();
	r.wall0 = clock_wall();
	apply_stuck(&r, stuck, nstuck);
	for (size_t i = 0; i < n; i++)
		if (!r.kids[i].reaped)
			spawn(&r, i);
	if (collect(&r, err, errsz) < 0) {
		kill_and_reap(&r);
		goto out;
	}
	kill_and_reap(&r);
	classify(&r);
	apply_mirror(&r);
	rc = record_abandoned(&r, err, errsz);
out:
	free(stuck);
	run_release(&r);
	return rc;
}
