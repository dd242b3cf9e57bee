/*
 * steadyfs: one FUSE filesystem over SFTP that stays up when the transport
 * does not. The process started is the keeper (keeper.c): it checks the
 * mountpoint, holds the mount and runs this same binary again as its
 * child, the filesystem daemon (daemon_run below), which connects the
 * first session before anything is mounted (so a bad host, key or login
 * is reported with its exit code), takes the mount from the keeper and
 * serves. `steadyfs --upgrade MOUNTPOINT` asks a keeper to switch to the
 * binary now on disk (upgrade.c).
 *
 * Exit status: 0 ok, 1 cannot connect/authenticate/verify the host key,
 * 2 bad command line, 3 internal error, 4 mountpoint problem.
 */
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include <libmount/libmount.h>

#include "fusetimeout.h"
#include "keeper.h"
#include "log.h"
#include "opts.h"
#include "pool.h"
#include "takeover.h"
#include "upgrade.h"
#include "version.h"
#include "vfs.h"


/* Lazily unmounts a stale mount (ENOTCONN) on `path`. */
static int unmount_stale(const char *path, char *err, size_t errsz)
{
	struct libmnt_context *cxt = mnt_new_context();
	int rc;

	if (!cxt) {
		snprintf(err, errsz, "cannot allocate libmount context");
		return -1;
	}
	rc = mnt_context_set_target(cxt, path);
	if (rc == 0)
		rc = mnt_context_enable_lazy(cxt, 1);
	if (rc == 0)
		rc = mnt_context_umount(cxt);
	mnt_free_context(cxt);
	if (rc != 0) {
		snprintf(err, errsz, "cannot unmount stale mount '%s' (libmount %d)",
			 path, rc);
		return -1;
	}
	return 0;
}

static bool is_mountpoint(const char *path)
{
	struct libmnt_table *tb = mnt_new_table_from_file("/proc/self/mountinfo");
	bool found;

	if (!tb)
		return false;
	found = mnt_table_find_target(tb, path, MNT_ITER_BACKWARD) != NULL;
	mnt_unref_table(tb);
	return found;
}

/*
 * Checks the mountpoint: it must exist, be a directory and not be a live
 * mount; a stale mount is lazily unmounted first. Resolves it into `out`.
 */
static int check_mountpoint(const char *mp, char *out, char *err, size_t errsz)
{
	struct stat st;

	if (stat(mp, &st) < 0) {
		if (errno != ENOTCONN) {
			snprintf(err, errsz, "mountpoint '%s': %s", mp, strerror(errno));
			return -1;
		}
		log_warn("mountpoint '%s' is a stale mount (transport endpoint is not connected): unmounting it lazily",
			 mp);
		if (unmount_stale(mp, err, errsz) < 0)
			return -1;
		if (stat(mp, &st) < 0) {
			snprintf(err, errsz, "mountpoint '%s': %s", mp, strerror(errno));
			return -1;
		}
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errsz, "mountpoint '%s' is not a directory", mp);
		return -1;
	}
	if (!realpath(mp, out)) {
		snprintf(err, errsz, "mountpoint '%s': %s", mp, strerror(errno));
		return -1;
	}
	if (is_mountpoint(out)) {
		struct statfs sf;

		/* stat() may answer from a dead mount's attribute cache;
		 * statfs() always asks the filesystem. */
		if (statfs(out, &sf) < 0 && (errno == ENOTCONN || errno == ECONNABORTED)) {
			log_warn("mountpoint '%s' is a stale mount (%s): unmounting it lazily",
				 out, strerror(errno));
			return unmount_stale(out, err, errsz);
		}
		snprintf(err, errsz, "mountpoint '%s' is already a mount", out);
		return -1;
	}
	return 0;
}

/* The daemon's session: no mount options (the keeper mounted); requests
 * come through the descriptor the keeper handed over. */
static struct fuse_session *make_session(struct vfs *v)
{
	char *argv[] = { "steadyfs", NULL };
	struct fuse_args args = FUSE_ARGS_INIT(1, argv);
	struct fuse_session *se;

	se = fuse_session_new(&args, vfs_ops(), sizeof(struct fuse_lowlevel_ops), v);
	fuse_opt_free_args(&args);
	return se;
}

static int serve(struct fuse_session *se)
{
	struct fuse_loop_config *cfg = fuse_loop_cfg_create();
	int rc;

	if (!cfg)
		return -1;
	fuse_loop_cfg_set_max_threads(cfg, 16);
	fuse_loop_cfg_set_clone_fd(cfg, 0);
	rc = fuse_session_loop_mt(se, cfg);
	fuse_loop_cfg_destroy(cfg);
	return rc;
}

struct daemon {
	struct pool *pool;
	struct vfs *v;
};

/* An upgrade: everything read is answered; write back and stop. */
static void drain_for_handover(void *arg)
{
	struct daemon *d = arg;

	vfs_stop(d->v);
	pool_stop(d->pool);
}

/* Connects (unless continuing after a crash, when the link may be down),
 * takes the mount from the keeper and continues its state. */
static int daemon_setup(struct steadyfs_opts *o, struct takeover *tk,
			struct daemon *d, struct fuse_session **sep)
{
	char err[PATH_MAX + 512];
	int fd;

	if (!(d->pool = pool_new(o))) {
		log_err("cannot allocate the session pool");
		return EXIT_INTERNAL;
	}
	if (takeover_mode(tk) != TK_RESTART &&
	    pool_connect_first(d->pool, err, sizeof(err)) < 0) {
		log_err("%s", err);
		return EXIT_CONNECT;
	}
	if ((fd = takeover_receive_fd(tk, err, sizeof(err))) < 0) {
		log_err("%s", err);
		return EXIT_INTERNAL;
	}
	if (!o->foreground)
		log_use_syslog();
	if (!(d->v = vfs_new(o, d->pool, takeover_mountpoint(tk))) ||
	    vfs_adopt(d->v, tk) < 0 || !(*sep = make_session(d->v)) ||
	    takeover_attach(tk, *sep, fd) < 0) {
		log_err("cannot set up the FUSE session");
		return EXIT_INTERNAL;
	}
	return 0;
}

/* The filesystem daemon, a child of the keeper. Exit status: 0 when the
 * mount ended, KEEPER_EXIT_HANDOVER when stopped by a signal or an
 * upgrade, anything else is a failure the keeper restarts after. */
static int daemon_run(struct steadyfs_opts *o)
{
	char err[256];
	struct takeover *tk;
	struct daemon d = { 0 };
	struct fuse_session *se = NULL;
	int rc, status;

	/* Read-ahead chunks and write-behind copies (32 KiB to 1 MiB) are
	 * allocated and freed at line rate by several threads. glibc would
	 * map the large ones afresh and hand freed arena tops back to the
	 * kernel, so every chunk paid page faults and zeroing (a third of
	 * the CPU of a sequential read, by perf). Keep freed memory for
	 * reuse, in one arena, so that what one thread frees any other
	 * reuses, and so that the sweeper's malloc_trim() once the mount is
	 * quiet (vfs.c) can hand back its top too: glibc trims only the
	 * main arena's top, and a second arena kept up to 32 MiB of freed
	 * memory resident for good (docs/performance.md, "Memory"). */
	if (!mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024) ||
	    !mallopt(M_TRIM_THRESHOLD, 32 * 1024 * 1024) ||
	    !mallopt(M_ARENA_MAX, 1))
		log_debug("mallopt refused");
	if (!(tk = takeover_from_env(err, sizeof(err)))) {
		log_err("%s", err);
		return EXIT_INTERNAL;
	}
	status = daemon_setup(o, tk, &d, &se);
	if (status)
		goto out;
	status = EXIT_INTERNAL;
	if (takeover_resume(tk, se) < 0) {
		log_err("cannot continue the previous daemon's mount: libfuse refused its INIT");
		goto out;
	}
	if (takeover_start_handover(tk, drain_for_handover, &d) < 0 ||
	    pool_start(d.pool) < 0 || vfs_start(d.v, se) < 0) {
		log_err("cannot start threads");
		goto out;
	}
	takeover_serving(tk);
	rc = serve(se);
	/* A stop signal: the keeper decides. Else 0: the mount ended. */
	status = takeover_stop_signal(tk) ? KEEPER_EXIT_HANDOVER :
		rc == 0 ? 0 : EXIT_INTERNAL;
	if (rc == 0)
		log_info("the mount ended: writing back what is left");
out:
	/* Stop signals stay blocked through the final flush: a second
	 * SIGTERM must not kill a daemon still sending writes. Stop the
	 * sessions before freeing what their callbacks use. */
	vfs_stop(d.v);
	pool_stop(d.pool);
	vfs_free(d.v);
	/* The signal thread may touch the session: it ends first. */
	takeover_free(tk);
	if (se)
		fuse_session_destroy(se);
	pool_free(d.pool);
	return status;
}

/* A kernel FUSE request timeout shorter than a call may wait (during an
 * outage, a restart or an upgrade) would abort the whole mount: say so
 * once, at start, while someone reads the terminal or the unit's log. */
static void check_kernel_timeout(const struct steadyfs_opts *o)
{
	struct fuse_timeout kt;
	double floor_s = fuse_timeout_floor(o->op_timeout);

	fuse_timeout_read(NULL, &kt);
	if (!kt.supported) {
		log_debug("no kernel FUSE request timeout (before Linux 6.15)");
		return;
	}
	if (kt.effective && kt.effective < floor_s)
		log_warn("fs.fuse.%s is %u s: the kernel aborts this mount (ENOTCONN) when a call waits that long, and a call may wait %.0f s (2 x op_timeout + %.0f s of an upgrade's drain); raise it to at least %.0f or set it to 0 (docs/runbook.md)",
			 kt.source, kt.effective, floor_s, FUSE_TIMEOUT_DRAIN_S, floor_s);
	else if (kt.effective)
		log_info("fs.fuse.%s is %u s (at least the %.0f s a call may wait)",
			 kt.source, kt.effective, floor_s);
}

/* The started process: checks the mountpoint, then keeps the mount. */
static int keeper_main(struct steadyfs_opts *o, char **argv)
{
	char mp[PATH_MAX], err[PATH_MAX + 512];

	if (check_mountpoint(o->mountpoint, mp, err, sizeof(err)) < 0) {
		log_err("%s", err);
		return EXIT_MOUNTPOINT;
	}
	if (o->connections > 5)
		log_warn("connections=%d: the provider allows 10 sessions per account and an upgrade needs room for a second pool",
			 o->connections);
	check_kernel_timeout(o);
	return keeper_run(o, mp, argv);
}

int main(int argc, char **argv)
{
	struct steadyfs_opts o;
	char err[512];
	int status;

	log_init("steadyfs", SLOG_INFO);
	if (argc > 1 && !strcmp(argv[1], "--upgrade")) {
		if (argc != 3) {
			fprintf(stderr, "steadyfs: --upgrade takes one argument: the mountpoint\n");
			return EXIT_USAGE;
		}
		return upgrade_request(argv[2]);
	}
	if (steadyfs_opts_parse(&o, argc, argv, err, sizeof(err)) < 0) {
		fprintf(stderr, "steadyfs: %s\n", err);
		steadyfs_opts_release(&o);
		return EXIT_USAGE;
	}
	if (o.show_help) {
		steadyfs_opts_usage(stdout);
		steadyfs_opts_release(&o);
		return 0;
	}
	if (o.show_version) {
		printf("steadyfs %s\n", STEADYFS_VERSION);
		steadyfs_opts_release(&o);
		return 0;
	}
	if (o.debug)
		log_init("steadyfs", SLOG_DEBUG);
	status = getenv(KEEPER_ENV) ? daemon_run(&o) : keeper_main(&o, argv);
	steadyfs_opts_release(&o);
	return status;
}
