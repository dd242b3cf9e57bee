/*
 * statedir: where a steadyfs mount keeps its on-disk mirror of .control/,
 * and reading that mirror.
 *
 * The default mirror of the mount at MOUNTPOINT is
 * "/run/steadyfs/" + `systemd-escape --path MOUNTPOINT` (possibly a symlink
 * to the directory the operator chose with state_dir=). The daemon rewrites
 * status.json at least every 5 s; a mirror not updated for
 * MIRROR_STALE_AFTER seconds is itself unhealthy (the daemon is dead, wedged
 * or not writing).
 *
 * The mirror lives on a local filesystem (/run is tmpfs), so reading it
 * from the probe's own process is safe; nothing here touches a mountpoint.
 */
#ifndef STEADYFS_STATEDIR_H
#define STEADYFS_STATEDIR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define STATEDIR_BASE "/run/steadyfs"
/* Seconds after which a mirror counts as stale. */
#define MIRROR_STALE_AFTER 15.0

/*
 * State that names paths (the mirror's events and status say which files
 * failed) is private by default: its folder 0700 and files 0600, owned by
 * the daemon's user. Shared with one group (state_group=), 0750 and 0640.
 * The same modes apply to .control/ inside the mount (0500/0400 and
 * 0550/0440 there: nothing in it is writable).
 */
#define STATEDIR_DIR_PRIVATE 0700
#define STATEDIR_DIR_SHARED 0750
#define STATEDIR_FILE_PRIVATE 0600
#define STATEDIR_FILE_SHARED 0640

/*
 * Creates `dir` (its missing parents 0755, so /run/steadyfs stays
 * traversable) and gives the folder itself STATEDIR_DIR_PRIVATE, or
 * STATEDIR_DIR_SHARED and group `gid` when `shared`, also when it existed
 * with other modes (an older steadyfs made it 0755). A symlink in the last
 * component is refused. Returns 0, or -1 with errno.
 */
int statedir_prepare(const char *dir, bool shared, gid_t gid);

/*
 * Writes `systemd-escape --path PATH` into `out`: the path normalised
 * ("//", "." and a trailing "/" dropped), its leading "/" removed, "/"
 * written as "-", and every byte other than [A-Za-z0-9:_.] (and a leading
 * ".") as "\xNN"; "/" alone escapes to "-". A path with a ".." component
 * or not starting with "/" is refused, as systemd-escape refuses it.
 * Returns 0, or -1 with errno EINVAL (bad path) or ENAMETOOLONG.
 */
int statedir_escape_path(const char *path, char *out, size_t outsz);
/* Writes STATEDIR_BASE "/" + the escaped `mountpoint` into `out`.
 * Returns 0, or -1 with errno as statedir_escape_path(). */
int statedir_for_mount(const char *mountpoint, char *out, size_t outsz);

enum mirror_health {
	MIRROR_NONE = 0,  /* no mirror asked for (not a steadyfs mount) */
	MIRROR_FRESH,     /* status.json read, updated within MIRROR_STALE_AFTER */
	MIRROR_STALE,     /* status.json read, but too old */
	MIRROR_MISSING,   /* no status.json where it should be */
	MIRROR_BAD,       /* status.json unreadable or not the expected JSON */
};

struct mirror_status {
	enum mirror_health health;
	char dir[4096];      /* the mirror directory read ("" for MIRROR_NONE) */
	char state[16];      /* "connected", "degraded", "down", or "" if unknown */
	double since;        /* epoch seconds of the last state change, 0 if absent */
	double updated;      /* epoch seconds of the last rewrite ("updated", else mtime) */
	double age;          /* now - updated, seconds */
	long pid;            /* daemon pid, 0 if absent */
	long keeper_pid;     /* the keeper holding the mount, 0 if absent */
	char device[32];     /* the mount's "major:minor", "" if absent */
	char error[160];     /* why MIRROR_MISSING/MIRROR_BAD, one line (the
				* file named relative to `dir`) */
};

/*
 * Reads `dir`/status.json into `st`, judging freshness against wall time
 * `now` (epoch seconds). Never fails: problems are reported in
 * st->health and st->error.
 */
void mirror_read(const char *dir, double now, struct mirror_status *st);
/* "none", "fresh", "stale", "missing", "bad". */
const char *mirror_health_name(enum mirror_health h);

#endif
