/*
 * upgrade: `steadyfs --upgrade MOUNTPOINT`; see upgrade.h. The keeper's
 * pid and the daemon generation come from the mount's own
 * .control/status.json, which answers without the network.
 */
#include "upgrade.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "clock.h"
#include "mounttab.h"
#include "opts.h"

/* connect_timeout (10 s) for the new daemon's first session, the old
 * one's drain (op_timeout, 20 s), and slack. */
#define UPGRADE_WAIT_S 90

/* Reads keeper_pid, generation and upgrades_failed; -1 when the file
 * says nothing. */
static int read_status(const char *mp, long *keeper, long *gen, long *failed)
{
	char path[PATH_MAX];
	struct json_object *o, *k, *g, *f;

	snprintf(path, sizeof(path), "%s/.control/status.json", mp);
	if (!(o = json_object_from_file(path)))
		return -1;
	if (!json_object_object_get_ex(o, "keeper_pid", &k) ||
	    !json_object_object_get_ex(o, "generation", &g)) {
		json_object_put(o);
		return -1;
	}
	*keeper = (long)json_object_get_int64(k);
	*gen = (long)json_object_get_int64(g);
	*failed = json_object_object_get_ex(o, "upgrades_failed", &f) ?
		(long)json_object_get_int64(f) : 0;
	json_object_put(o);
	return 0;
}

/* True when `mp` is itself a steadyfs mount (the last one on it). */
static bool is_steadyfs_mount(const char *mp)
{
	struct mounttab mt = MOUNTTAB_INIT;
	const struct mount_entry *e;
	bool yes;

	if (mounttab_load(&mt, mp, NULL, NULL, 0) < 0)
		return false;
	e = mounttab_find(&mt, mp);
	yes = e && mount_is_steadyfs(e);
	mounttab_release(&mt);
	return yes;
}

int upgrade_request(const char *mountpoint)
{
	char mp[PATH_MAX];
	long keeper = 0, gen = 0, failed = 0, now_gen = 0, now_keeper = 0, now_failed = 0;
	uint64_t deadline;

	if (!realpath(mountpoint, mp) || !is_steadyfs_mount(mp)) {
		fprintf(stderr, "steadyfs: '%s' is not a steadyfs mount\n", mountpoint);
		return EXIT_MOUNTPOINT;
	}
	if (read_status(mp, &keeper, &gen, &failed) < 0 || keeper <= 1) {
		fprintf(stderr, "steadyfs: '%s': cannot read its keeper from .control/status.json\n", mp);
		return EXIT_MOUNTPOINT;
	}
	if (kill((pid_t)keeper, SIGUSR2) < 0) {
		fprintf(stderr, "steadyfs: cannot signal the keeper of '%s' (pid %ld): %s\n",
			mp, keeper, strerror(errno));
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
