/*
 * upgrade: `steadyfs --upgrade MOUNTPOINT`; see upgrade.h. The keeper's
 * pid and the daemon generation come from the mount's own
 * .control/status.json, which answers without the network. That file is
 * not proof of anything (a user's FUSE mount of type steadyfs, or a file
 * named .control/status.json on the server seen through a bind mount,
 * says what it likes), so the pid is checked against the kernel before
 * the signal: see check_keeper().
 */
#include "upgrade.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <libmount/libmount.h>

#include "clock.h"
#include "fuseconn.h"
#include "mounttab.h"
#include "opts.h"
#include "statuskeys.h"

/* connect_timeout (10 s) for the new daemon's first session, the old
 * one's drain (op_timeout, 20 s), and slack. */
#define UPGRADE_WAIT_S 90

/* Reads keeper_pid, generation and upgrades_failed; -1 when the file
 * says nothing. */
static int read_status(const char *mp, long *keeper, long *gen, long *failed)
{
	char path[PATH_MAX];
	struct json_object *o, *k, *g, *f;

	snprintf(path, sizeof(path), "%s/.control/" STATUS_FILE, mp);
	if (!(o = json_object_from_file(path)))
		return -1;
	if (!json_object_object_get_ex(o, STATUS_KEEPER_PID, &k) ||
	    !json_object_object_get_ex(o, STATUS_GENERATION, &g)) {
		json_object_put(o);
		return -1;
	}
	*keeper = (long)json_object_get_int64(k);
	*gen = (long)json_object_get_int64(g);
	*failed = json_object_object_get_ex(o, STATUS_UPGRADES_FAILED, &f) ?
		(long)json_object_get_int64(f) : 0;
	json_object_put(o);
	return 0;
}

/* What the kernel says of the mount on `mp` (the topmost one). */
struct target {
	dev_t dev;
	long user_id;        /* who made it (FUSE super option), -1 unknown */
	bool root_is_top;    /* not a bind mount of a subfolder */
};

/* Fills `t` when `mp` is itself a steadyfs mount; -1 otherwise. */
static int find_target(const char *mp, struct target *t)
{
	struct libmnt_table *tb = mnt_new_table_from_file("/proc/self/mountinfo");
	struct libmnt_fs *fs;
	const char *root, *fsopts;
	char *val = NULL;
	size_t valsz = 0;
	int rc = -1;

	if (!tb)
		return -1;
	fs = mnt_table_find_target(tb, mp, MNT_ITER_BACKWARD);
	if (fs && mnt_fs_get_fstype(fs) && !strcmp(mnt_fs_get_fstype(fs), MT_FSTYPE_STEADYFS)) {
		root = mnt_fs_get_root(fs);
		fsopts = mnt_fs_get_fs_options(fs);
		t->dev = mnt_fs_get_devno(fs);
		t->root_is_top = root && !strcmp(root, "/");
		t->user_id = -1;
		if (fsopts && mnt_optstr_get_option(fsopts, "user_id", &val, &valsz) == 0 &&
		    val && valsz < 16) {
			char num[16];

			memcpy(num, val, valsz);
			num[valsz] = '\0';
			t->user_id = strtol(num, NULL, 10);
		}
		rc = 0;
	}
	mnt_unref_table(tb);
	return rc;
}

/* /proc/PID/exe without the " (deleted)" an upgrade's rename leaves. */
static int exe_of(const char *pid, char *out, size_t outsz)
{
	char link[64];
	ssize_t n;
	size_t dl = strlen(" (deleted)");

	snprintf(link, sizeof(link), "/proc/%s/exe", pid);
	n = readlink(link, out, outsz - 1);
	if (n <= 0)
		return -1;
	out[n] = '\0';
	if ((size_t)n > dl && !strcmp(out + n - dl, " (deleted)"))
		out[n - dl] = '\0';
	return 0;
}

/*
 * Checks that `pid` (read from the mount's own status.json, which a file
 * on the server or a user's FUSE mount could forge) is the keeper of the
 * mount `t`: the mount was made by the caller's user, the process is the
 * caller's, runs this steadyfs binary and holds that very mount's FUSE
 * connection. Returns 0, or -1 with the reason in `why`.
 */
static int check_keeper(long pid, const struct target *t, char *why, size_t whysz)
{
	char pids[32], self[PATH_MAX], exe[PATH_MAX], procdir[64];
	struct stat st;
	int held;

	if (!t->root_is_top) {
		snprintf(why, whysz, "it is a bind mount of a steadyfs subfolder; name the mount itself");
		return -1;
	}
	if (t->user_id != (long)getuid()) {
		snprintf(why, whysz, "the mount was made by uid %ld, not by uid %ld",
			 t->user_id, (long)getuid());
		return -1;
	}
	snprintf(pids, sizeof(pids), "%ld", pid);
	snprintf(procdir, sizeof(procdir), "/proc/%ld", pid);
	if (stat(procdir, &st) < 0) {
		snprintf(why, whysz, "pid %ld named in its status.json does not exist", pid);
		return -1;
	}
	if (st.st_uid != getuid()) {
		snprintf(why, whysz, "pid %ld named in its status.json belongs to uid %ld", pid,
			 (long)st.st_uid);
		return -1;
	}
	if (exe_of("self", self, sizeof(self)) < 0 || exe_of(pids, exe, sizeof(exe)) < 0 ||
	    strcmp(self, exe)) {
		snprintf(why, whysz, "pid %ld named in its status.json is not steadyfs ('%s')",
			 pid, exe_of(pids, exe, sizeof(exe)) < 0 ? "?" : exe);
		return -1;
	}
	held = fuseconn_held_by(pid, t->dev);
	if (held < 0) {
		snprintf(why, whysz, "pid %ld named in its status.json does not hold this mount's FUSE connection (%u:%u)",
			 pid, major(t->dev), minor(t->dev));
		return -1;
	}
	return 0;
}

int upgrade_request(const char *mountpoint)
{
	char mp[PATH_MAX], why[PATH_MAX + 160];
	struct target t;
	int pidfd, rc, e;
	long keeper = 0, gen = 0, failed = 0, now_gen = 0, now_keeper = 0, now_failed = 0;
	uint64_t deadline;

	if (!realpath(mountpoint, mp) || find_target(mp, &t) < 0) {
		fprintf(stderr, "steadyfs: '%s' is not a steadyfs mount\n", mountpoint);
		return EXIT_MOUNTPOINT;
	}
	if (read_status(mp, &keeper, &gen, &failed) < 0 || keeper <= 1) {
		fprintf(stderr, "steadyfs: '%s': cannot read its keeper from .control/status.json\n", mp);
		return EXIT_MOUNTPOINT;
	}
	/* The process is held by a pidfd from before the checks to the
	 * signal: if it ends and its pid is reused meanwhile, the checks see
	 * the newcomer but the signal goes nowhere (ESRCH). */
	pidfd = (int)syscall(SYS_pidfd_open, (pid_t)keeper, 0);
	if (pidfd < 0 || check_keeper(keeper, &t, why, sizeof(why)) < 0) {
		if (pidfd < 0)
			snprintf(why, sizeof(why), "pid %ld named in its status.json: %s", keeper,
				 strerror(errno));
		fprintf(stderr, "steadyfs: '%s': refusing to signal: %s\n", mp, why);
		if (pidfd >= 0)
			close(pidfd);
		return UPGRADE_EXIT_NOT_KEEPER;
	}
	rc = (int)syscall(SYS_pidfd_send_signal, pidfd, SIGUSR2, NULL, 0);
	e = errno;
	close(pidfd);
	if (rc < 0) {
		fprintf(stderr, "steadyfs: cannot signal the keeper of '%s' (pid %ld): %s\n",
			mp, keeper, strerror(e));
		return EXIT_CONNECT;
	}
	deadline = clock_mono_ns() + UPGRADE_WAIT_S * 1000000000ull;
	while (clock_mono_ns() < deadline) {
		struct timespec ts = { 0, 100 * 1000000 };

		if (read_status(mp, &now_keeper, &now_gen, &now_failed) < 0) {
			nanosleep(&ts, NULL);
			continue;
		}
		if (now_gen > gen) {
			printf("steadyfs: '%s' upgraded: daemon generation %ld serves\n",
			       mp, now_gen);
			return 0;
		}
		if (now_failed > failed) {
			fprintf(stderr, "steadyfs: '%s': the upgrade failed: the new daemon stopped before taking over; the old one serves (see the log)\n",
				mp);
			return EXIT_CONNECT;
		}
		nanosleep(&ts, NULL);
	}
	fprintf(stderr, "steadyfs: '%s': the upgrade did not complete within %d s (see the log)\n",
		mp, UPGRADE_WAIT_S);
	return EXIT_CONNECT;
}
