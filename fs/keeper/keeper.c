/*
 * keeper: see keeper.h. One loop over a signalfd (SIGCHLD, stop signals,
 * SIGUSR2) and the children's sockets. At most two children: `cur`, the
 * daemon serving (or about to), and `next`, an upgrade's new daemon that
 * waits for `cur` to drain and exit.
 */
#include "keeper.h"


#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "keepstate.h"
#include "log.h"
#include "mounttab.h"
#include "strbuf.h"

/* A child that dies before it serves, sooner than this after its start,
 * is restarted only after the rest of it: a crash loop costs one start
 * per second. */
#define MIN_LIFETIME_NS 1000000000ull

struct child {
	pid_t pid;                 /* 0: none */
	int sock;
	uint64_t gen;
	char mode;                 /* 's' first start, 'r' restart, 'u' upgrade */
	bool connected;            /* said 'C' */
	bool has_fd;
	bool serving;              /* said 'R' */
	uint64_t started_ns;
};

struct keeper {
	const struct steadyfs_opts *o;
	const char *mp;
	char **argv;
	char exe[PATH_MAX];        /* the binary's path, read again per child */
	struct fuse_session *se;   /* mount only: no request is read here */
	int fuse_fd;
	int state_fd;
	struct keepstate *ks;
	int sigfd;
	sigset_t oldmask;
	struct child cur, next;
	uint64_t gens;             /* generations handed out */
	uint64_t restart_at;       /* a delayed restart is due (ns), or 0 */
	char pending_reason[KS_REASON_MAX + 1];
	bool stopping;
	bool mounted;
	dev_t dev;                 /* the mount's device, 0 if not found */
	int exit_status;           /* of the keeper once stopping */
	int status_fd;             /* the waiting foreground parent, or -1 */
};

/* ---- the foreground parent waits for the mount (or its error) ---- */

static int background(int *status_fd)
{
	int p[2];
	pid_t pid;
	unsigned char st = EXIT_INTERNAL;

	if (pipe2(p, O_CLOEXEC) < 0 || (pid = fork()) < 0) {
		log_err("cannot go to the background: %s", strerror(errno));
		return -1;
	}
	if (pid > 0) {
		close(p[1]);
		while (read(p[0], &st, 1) < 0 && errno == EINTR)
			;
		_exit(st);
	}
	close(p[0]);
	if (setsid() < 0)
		log_warn("setsid: %s", strerror(errno));
	*status_fd = p[1];
	return 0;
}

static void report_status(struct keeper *k, int status)
{
	unsigned char st = (unsigned char)status;

	if (k->status_fd < 0)
		return;
	if (write(k->status_fd, &st, 1) != 1)
		log_debug("status pipe: %s", strerror(errno));
	close(k->status_fd);
	k->status_fd = -1;
	if (status != 0)
		return;
	/* From now on nobody reads the terminal: the journal does. */
	log_use_syslog();
}

/* ---- children ---- */

static void close_child(struct child *c)
{
	if (c->sock >= 0)
		close(c->sock);
	memset(c, 0, sizeof(*c));
	c->sock = -1;
}

/* In the forked child: the environment of a daemon, then exec. */
static void exec_daemon(struct keeper *k, int sock, uint64_t gen, char mode,
			pid_t keeper)
{
	char link[96];

	/* The daemon must not outlive the keeper: a killed keeper means a
	 * stale mount for the probe and recover, not a hidden daemon. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != keeper)
		_exit(EXIT_INTERNAL);
	sigprocmask(SIG_SETMASK, &k->oldmask, NULL);
	if (fcntl(sock, F_SETFD, 0) < 0 || fcntl(k->state_fd, F_SETFD, 0) < 0)
		_exit(EXIT_INTERNAL);
	snprintf(link, sizeof(link), "%d:%d:%llu:%c", sock, k->state_fd,
		 (unsigned long long)gen, mode);
	if (setenv(KEEPER_ENV, link, 1) < 0 ||
	    setenv(KEEPER_ENV_MOUNTPOINT, k->mp, 1) < 0)
		_exit(EXIT_INTERNAL);
	/* Readiness is the keeper's to report. */
	unsetenv("NOTIFY_SOCKET");
	execv(k->exe, k->argv);
	fprintf(stderr, "steadyfs: cannot run '%s': %s\n", k->exe, strerror(errno));
	_exit(EXIT_INTERNAL);
}

static int spawn(struct keeper *k, struct child *c, char mode)
{
	int sp[2];
	pid_t self = getpid(), pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) {
		log_err("cannot start the daemon: socketpair: %s", strerror(errno));
		return -1;
	}
	k->gens++;
	if ((pid = fork()) < 0) {
		log_err("cannot start the daemon: fork: %s", strerror(errno));
		close(sp[0]);
		close(sp[1]);
		return -1;
	}
	if (pid == 0) {
		close(sp[0]);
		exec_daemon(k, sp[1], k->gens, mode, self);
	}
	close(sp[1]);
	close_child(c);
	c->pid = pid;
	c->sock = sp[0];
	c->gen = k->gens;
	c->mode = mode;
	c->started_ns = clock_mono_ns();
	log_debug("started daemon generation %llu (pid %d)",
		  (unsigned long long)c->gen, (int)pid);
	return 0;
}

static int send_fd(int sock, int fd)
{
	char byte = 'F';
	struct iovec iov = { &byte, 1 };
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1,
			    .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&m);

	memset(u.buf, 0, sizeof(u.buf));
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	return sendmsg(sock, &m, MSG_NOSIGNAL) == 1 ? 0 : -1;
}

static void give_fd(struct keeper *k, struct child *c)
{
	if (send_fd(c->sock, k->fuse_fd) < 0) {
		log_warn("cannot hand the mount to daemon pid %d: %s", (int)c->pid,
			 strerror(errno));
		kill(c->pid, SIGKILL);
		return;
	}
	c->has_fd = true;
}

/* ---- the mount ---- */

/* Appends `v` as one value of a libfuse `-o` list: fuse_opt splits on
 * commas and takes a backslash as "the next byte as is", so both are
 * escaped. Without it, a remote folder named "data,suid,dev" would add
 * those options to the mount. */
static void add_opt_escaped(struct strbuf *sb, const char *v)
{
	for (; *v; v++) {
		if (*v == ',' || *v == '\\')
			strbuf_addc(sb, '\\');
		strbuf_addc(sb, *v);
	}
}

/* The mount's options: the source as fsname (escaped), nosuid and nodev
 * unless the operator said suid or dev (the server's files are not
 * trusted), and the operator's permission options. */
static void mount_options(const struct steadyfs_opts *o, struct strbuf *sb)
{
	strbuf_adds(sb, "fsname=");
	if (o->user) {
		add_opt_escaped(sb, o->user);
		strbuf_addc(sb, '@');
	}
	add_opt_escaped(sb, o->host);
	strbuf_addc(sb, ':');
	add_opt_escaped(sb, o->remote_dir);
	strbuf_addf(sb, ",subtype=steadyfs,%s,%s%s%s%s%s", o->suid ? "suid" : "nosuid",
		    o->dev ? "dev" : "nodev", o->noexec ? ",noexec" : "",
		    o->allow_other ? ",allow_other" : "",
		    o->default_permissions ? ",default_permissions" : "",
		    o->ro ? ",ro" : "");
}

static int mount_fuse(struct keeper *k)
{
	static const struct fuse_lowlevel_ops none;
	const struct steadyfs_opts *o = k->o;
	struct strbuf opts = STRBUF_INIT;
	char *argv[] = { "steadyfs", "-o", NULL, NULL };
	struct fuse_args args = FUSE_ARGS_INIT(3, argv);

	mount_options(o, &opts);
	if (!strbuf_ok(&opts)) {
		log_err("cannot mount on '%s': out of memory", k->mp);
		strbuf_release(&opts);
		return -1;
	}
	argv[2] = (char *)strbuf_str(&opts);
	if (o->default_permissions_implied)
		log_info("allow_other: the kernel checks permissions (default_permissions is implied)");
	k->se = fuse_session_new(&args, &none, sizeof(none), NULL);
	fuse_opt_free_args(&args);
	strbuf_release(&opts);
	if (!k->se || fuse_session_mount(k->se, k->mp) != 0) {
		log_err("cannot mount on '%s'", k->mp);
		return -1;
	}
	k->fuse_fd = fuse_session_fd(k->se);
	k->mounted = true;
	if (mounttab_device_of(k->mp, MT_FSTYPE_STEADYFS, &k->dev) < 0) {
		log_warn("cannot find '%s' in the mount table: an aborted connection will look like an unmount",
			 k->mp);
		k->dev = 0;
	}
	return 0;
}

/* ---- events ---- */

static void describe_exit(int status, char *out, size_t outsz)
{
	if (WIFSIGNALED(status))
		snprintf(out, outsz, "killed by signal %d (%s)", WTERMSIG(status),
			 strsignal(WTERMSIG(status)));
	else
		snprintf(out, outsz, "exited with status %d", WEXITSTATUS(status));
}

static void restart_cur(struct keeper *k, const char *reason)
{
	uint64_t now = clock_mono_ns();
	uint64_t lived = now - k->cur.started_ns;
	bool served = k->cur.serving;

	size_t n = strlen(reason);

	if (n >= sizeof(k->pending_reason))
		n = sizeof(k->pending_reason) - 1;
	memcpy(k->pending_reason, reason, n);
	k->pending_reason[n] = 0;
	close_child(&k->cur);
	/* An upgrade's daemon is already on its way: it takes over. */
	if (k->next.pid)
		return;
	/* A daemon that served is replaced at once; one that died while
	 * starting may die again: at most one start per second then. */
	k->restart_at = !served && lived < MIN_LIFETIME_NS ?
		now + MIN_LIFETIME_NS - lived : now;
}

/*
 * The daemon's session ends (exit 0) both when the mount is unmounted and
 * when its FUSE connection is aborted (fusectl's abort, a kernel request
 * timeout), and a daemon may also die of the abort. The descriptor the
 * keeper holds polls POLLERR once the connection is gone either way;
 * after an unmount the kernel has also removed the mount, after an abort
 * it is still listed and answers ENOTCONN, with every bind of it: the
 * stale mount steadyfs exists to prevent. No daemon can serve it again,
 * so the keeper fails, and the service manager (Restart=on-failure)
 * starts a new steadyfs, which lazily unmounts the stale mountpoint and
 * mounts again.
 */
static bool connection_aborted(const struct keeper *k)
{
	struct pollfd p = { .fd = k->fuse_fd, .events = 0 };
	dev_t now;

	if (!k->mounted || !k->dev || poll(&p, 1, 0) != 1 || !(p.revents & POLLERR))
		return false;
	/* Still on our own mountpoint, not merely listed somewhere: an
	 * anonymous device number is reused at once for the next mount made
	 * anywhere on the host, so after an unmount "some mount has this
	 * device" can be true of a stranger's tmpfs or FUSE mount. */
	return mounttab_device_of(k->mp, MT_FSTYPE_STEADYFS, &now) == 0 &&
	       now == k->dev;
}

static void cur_exited(struct keeper *k, int status)
{
	char why[128];
	bool handover = k->next.pid && k->next.connected;

	describe_exit(status, why, sizeof(why));
	if (!k->stopping && connection_aborted(k)) {
		log_err("the FUSE connection of %s (device %u:%u) was aborted: the mount answers ENOTCONN; daemon %s; exiting with status %d so that the service restarts",
			k->mp, major(k->dev), minor(k->dev), why, EXIT_MOUNTPOINT);
		k->exit_status = EXIT_MOUNTPOINT;
		k->stopping = true;
		close_child(&k->cur);
		if (k->next.pid)
			kill(k->next.pid, SIGTERM);
		return;
	}
	if (k->stopping || (WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
		if (!k->stopping)
			log_info("the mount ended: daemon %s", why);
		k->stopping = true;
		close_child(&k->cur);
		return;
	}
	if (handover) {
		close_child(&k->cur);
		ks_note_restart(k->ks, "upgrade");
		k->cur = k->next;
		memset(&k->next, 0, sizeof(k->next));
		k->next.sock = -1;
		give_fd(k, &k->cur);
		return;
	}
	log_warn("daemon generation %llu %s: starting a new one",
		 (unsigned long long)k->cur.gen, why);
	restart_cur(k, why);
}

static void next_exited(struct keeper *k, int status)
{
	char why[128];

	describe_exit(status, why, sizeof(why));
	log_warn("upgrade failed: the new daemon %s before taking over; the old one keeps serving",
		 why);
	ks_note_upgrade_failed(k->ks);
	close_child(&k->next);
	/* The old one may have died meanwhile: then restart as usual. */
	if (!k->cur.pid && !k->stopping && !k->restart_at)
		k->restart_at = clock_mono_ns();
}

static int reap(struct keeper *k)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (pid == k->cur.pid) {
			if (!k->mounted && !k->cur.connected)
				return WIFEXITED(status) ? WEXITSTATUS(status) : EXIT_INTERNAL;
			cur_exited(k, status);
		} else if (pid == k->next.pid) {
			next_exited(k, status);
		}
	}
	return -1;
}

static void start_upgrade(struct keeper *k)
{
	if (k->next.pid || !k->cur.pid || k->stopping) {
		log_warn("upgrade requested while one is running or the daemon is down: ignored");
		return;
	}
	log_info("upgrade requested: starting '%s'", k->exe);
	if (spawn(k, &k->next, 'u') < 0)
		log_warn("upgrade failed: cannot start the new daemon");
}

static void stop(struct keeper *k, int sig)
{
	if (k->stopping)
		return;
	log_info("stopping on signal %d: unmounting %s", sig, k->mp);
	k->stopping = true;
	/* The daemon finds the mount gone (or gets the signal), writes
	 * back what it holds, and exits. */
	if (k->mounted)
		fuse_session_unmount(k->se);
	k->mounted = false;
	if (k->cur.pid)
		kill(k->cur.pid, SIGTERM);
	if (k->next.pid)
		kill(k->next.pid, SIGTERM);
}

/* A message from a child: 'C' (ready for the descriptor) or 'R'. */
static int child_says(struct keeper *k, struct child *c)
{
	char msg;
	ssize_t n = recv(c->sock, &msg, 1, 0);

	if (n <= 0)
		return 0;        /* it is exiting: SIGCHLD follows */
	if (msg == 'C') {
		c->connected = true;
		if (c == &k->next && k->cur.pid) {
			log_info("upgrade: the new daemon is connected; the old one drains");
			kill(k->cur.pid, SIGUSR1);
			return 0;
		}
		if (c == &k->next) {
			/* The old one died meanwhile: the new one takes over. */
			ks_note_restart(k->ks, "upgrade");
			k->cur = k->next;
			memset(&k->next, 0, sizeof(k->next));
			k->next.sock = -1;
			c = &k->cur;
		}
		if (!k->mounted && !k->stopping && mount_fuse(k) < 0)
			return EXIT_MOUNTPOINT;
		give_fd(k, c);
	} else if (msg == 'R' && !c->serving) {
		c->serving = true;
		ks_set_generation(k->ks, c->gen);
		if (k->status_fd >= 0 || c->mode == 's') {
			log_info("mounted %s%s%s:%s on %s with %d sessions",
				 k->o->user ? k->o->user : "", k->o->user ? "@" : "",
				 k->o->host, k->o->remote_dir, k->mp, k->o->connections);
			if (sd_notifyf(0, "READY=1\nSTATUS=mounted %s", k->mp) < 0)
				log_debug("sd_notify failed");
			report_status(k, 0);
		} else {
			log_info("daemon generation %llu serves %s",
				 (unsigned long long)c->gen, k->mp);
		}
	}
	return 0;
}

static int on_signal(struct keeper *k)
{
	struct signalfd_siginfo si;

	while (read(k->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGCHLD) {
			int rc = reap(k);

			if (rc >= 0)
				return rc;
		} else if (si.ssi_signo == SIGUSR2) {
			start_upgrade(k);
		} else {
			stop(k, (int)si.ssi_signo);
		}
	}
	return -1;
}

static int poll_timeout(struct keeper *k)
{
	uint64_t now;

	if (!k->restart_at)
		return -1;
	now = clock_mono_ns();
	return k->restart_at <= now ? 0 : (int)((k->restart_at - now) / 1000000 + 1);
}

static void due_restart(struct keeper *k)
{
	if (!k->restart_at || clock_mono_ns() < k->restart_at || k->stopping)
		return;
	k->restart_at = 0;
	ks_note_restart(k->ks, k->pending_reason);
	if (spawn(k, &k->cur, 'r') < 0)
		k->restart_at = clock_mono_ns() + MIN_LIFETIME_NS;
}

static int loop(struct keeper *k)
{
	for (;;) {
		struct pollfd p[3] = {
			{ k->sigfd, POLLIN, 0 },
			{ k->cur.pid ? k->cur.sock : -1, POLLIN, 0 },
			{ k->next.pid ? k->next.sock : -1, POLLIN, 0 },
		};
		int rc;

		if (k->stopping && !k->cur.pid && !k->next.pid)
			return k->exit_status;
		if (poll(p, 3, poll_timeout(k)) < 0 && errno != EINTR) {
			log_err("keeper: poll: %s", strerror(errno));
			return EXIT_INTERNAL;
		}
		if ((p[0].revents & POLLIN) && (rc = on_signal(k)) >= 0)
			return rc;
		if ((p[1].revents & POLLIN) && k->cur.pid &&
		    (rc = child_says(k, &k->cur)) > 0)
			return rc;
		if ((p[2].revents & POLLIN) && k->next.pid)
			child_says(k, &k->next);
		due_restart(k);
	}
}

static int setup(struct keeper *k)
{
	sigset_t set;
	ssize_t n;
	char err[256];

	n = readlink("/proc/self/exe", k->exe, sizeof(k->exe) - 1);
	if (n <= 0) {
		log_err("cannot find the steadyfs binary: %s", strerror(errno));
		return -1;
	}
	k->exe[n] = 0;
	if ((k->state_fd = ks_create()) < 0) {
		log_err("cannot create the take-over state: %s", strerror(-k->state_fd));
		return -1;
	}
	if (!(k->ks = ks_map(k->state_fd, err, sizeof(err)))) {
		log_err("%s", err);
		return -1;
	}
	ks_set_keeper(k->ks, (int)getpid());
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR2);
	if (sigprocmask(SIG_BLOCK, &set, &k->oldmask) < 0 ||
	    (k->sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK)) < 0) {
		log_err("keeper: signals: %s", strerror(errno));
		return -1;
	}
	return 0;
}

int keeper_run(const struct steadyfs_opts *o, const char *mp, char **argv)
{
	struct keeper k = { .o = o, .mp = mp, .argv = argv, .state_fd = -1,
			    .sigfd = -1, .status_fd = -1 };
	int rc = EXIT_INTERNAL;

	k.cur.sock = k.next.sock = -1;
	if (!o->foreground && background(&k.status_fd) < 0)
		return EXIT_INTERNAL;
	if (chdir("/") < 0)
		log_debug("chdir /: %s", strerror(errno));
	if (setup(&k) == 0 && spawn(&k, &k.cur, 's') == 0)
		rc = loop(&k);
	if (k.cur.pid)
		kill(k.cur.pid, SIGKILL);
	if (k.next.pid)
		kill(k.next.pid, SIGKILL);
	while (waitpid(-1, NULL, 0) > 0)
		;
	if (k.mounted)
		fuse_session_unmount(k.se);
	if (k.se)
		fuse_session_destroy(k.se);
	report_status(&k, rc);
	close_child(&k.cur);
	close_child(&k.next);
	ks_unmap(k.ks);
	if (k.state_fd >= 0)
		close(k.state_fd);
	if (k.sigfd >= 0)
		close(k.sigfd);
	return rc;
}
