/*
 * steadyfs: one FUSE filesystem over SFTP that stays up when the transport
 * does not. main() parses the command line, checks the mountpoint,
 * connects the first session on this thread (so a bad host, key or login
 * is reported with its exit code before anything is mounted), mounts,
 * daemonizes unless -f, then starts the session threads and serves.
 *
 * Exit status: 0 ok, 1 cannot connect/authenticate/verify the host key,
 * 2 bad command line, 3 internal error, 4 mountpoint problem.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include <libmount/libmount.h>
#include <systemd/sd-daemon.h>

#include "log.h"
#include "opts.h"
#include "pool.h"
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

static struct fuse_session *make_session(const struct steadyfs_opts *o,
					 struct vfs *v)
{
	char fuseopts[PATH_MAX + 256];
	char *argv[] = { "steadyfs", "-o", fuseopts, NULL };
	struct fuse_args args = FUSE_ARGS_INIT(3, argv);
	struct fuse_session *se;

	snprintf(fuseopts, sizeof(fuseopts), "fsname=%s%s%s:%s,subtype=steadyfs%s%s%s",
		 o->user ? o->user : "", o->user ? "@" : "", o->host,
		 o->remote_dir, o->allow_other ? ",allow_other" : "",
		 o->default_permissions ? ",default_permissions" : "",
		 o->ro ? ",ro" : "");
	/* fsname must not contain a comma: libfuse splits options on it. */
	for (char *p = fuseopts + strlen("fsname="); *p && *p != ','; p++)
		if (*p == '\\')
			*p = '/';
	se = fuse_session_new(&args, vfs_ops(), sizeof(struct fuse_lowlevel_ops), v);
	/* libfuse may have grown args onto the heap. */
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

static int run(struct steadyfs_opts *o)
{
	char mp[PATH_MAX], err[PATH_MAX + 512];
	struct pool *pool = NULL;
	struct vfs *v = NULL;
	struct fuse_session *se = NULL;
	int rc, status = EXIT_INTERNAL;
	bool mounted = false, handlers = false;

	if (check_mountpoint(o->mountpoint, mp, err, sizeof(err)) < 0) {
		log_err("%s", err);
		return EXIT_MOUNTPOINT;
	}
	if (o->connections > 5)
		log_warn("connections=%d: the provider allows 10 sessions per account and an upgrade needs room for a second pool",
			 o->connections);
	if (!(pool = pool_new(o))) {
		log_err("cannot allocate the session pool");
		return EXIT_INTERNAL;
	}
	if ((rc = pool_connect_first(pool, err, sizeof(err))) < 0) {
		log_err("%s", err);
		pool_free(pool);
		return EXIT_CONNECT;
	}
	if (!(v = vfs_new(o, pool, mp)) || !(se = make_session(o, v))) {
		log_err("cannot set up the FUSE session");
		goto out;
	}
	if (fuse_set_signal_handlers(se) != 0)
		goto out;
	handlers = true;
	if (fuse_session_mount(se, mp) != 0) {
		log_err("cannot mount on '%s'", mp);
		status = EXIT_MOUNTPOINT;
		goto out;
	}
	mounted = true;
	log_info("mounted %s%s%s:%s on %s with %d sessions", o->user ? o->user : "",
		 o->user ? "@" : "", o->host, o->remote_dir, mp, o->connections);
	/* Fork before any thread exists: threads do not survive fork(). */
	if (fuse_daemonize(o->foreground) != 0)
		goto out;
	/* In the background stderr is /dev/null: log to syslog (journald). */
	if (!o->foreground)
		log_use_syslog();
	if (pool_start(pool) < 0 || vfs_start(v, se) < 0) {
		log_err("cannot start threads");
		goto out;
	}
	/* Under systemd (Type=notify) the unit is up once the mount is. A
	 * negative return only means there is no systemd to tell. */
	if (sd_notifyf(0, "READY=1\nSTATUS=mounted %s", mp) < 0)
		log_debug("sd_notify failed");
	rc = serve(se);
	/* The loop returns the number of a stop signal (SIGTERM from
	 * systemd, SIGINT): a requested stop, not a failure. */
	status = (rc == 0 || rc == SIGTERM || rc == SIGINT || rc == SIGHUP) ?
		0 : EXIT_INTERNAL;
	sd_notify(0, "STOPPING=1\nSTATUS=unmounting, waiting for unacknowledged writes");
	log_info("unmounting %s", mp);
out:
	if (mounted)
		fuse_session_unmount(se);
	/* Keep the handlers through the final flush: a second SIGTERM must
	 * not kill a daemon still sending writes. Then stop the sessions
	 * before freeing what their callbacks use. */
	vfs_stop(v);
	pool_stop(pool);
	vfs_free(v);
	if (handlers)
		fuse_remove_signal_handlers(se);
	if (se)
		fuse_session_destroy(se);
	pool_free(pool);
	return status;
}

int main(int argc, char **argv)
{
	struct steadyfs_opts o;
	char err[512];
	int status;

	log_init("steadyfs", SLOG_INFO);
	if (opts_parse(&o, argc, argv, err, sizeof(err)) < 0) {
		fprintf(stderr, "steadyfs: %s\n", err);
		opts_release(&o);
		return EXIT_USAGE;
	}
	if (o.show_help) {
		opts_usage(stdout);
		opts_release(&o);
		return 0;
	}
	if (o.show_version) {
		printf("steadyfs %s\n", STEADYFS_VERSION);
		opts_release(&o);
		return 0;
	}
	if (o.debug)
		log_init("steadyfs", SLOG_DEBUG);
	status = run(&o);
	opts_release(&o);
	return status;
}
