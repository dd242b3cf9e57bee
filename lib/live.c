/*
 * live: devices of live steadyfs mounts, from their mirrors and /proc.
 * See live.h.
 */
#include "live.h"

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "clock.h"
#include "fuseconn.h"
#include "mounttab.h"
#include "statedir.h"
#include "statuskeys.h"

/* The program name of a steadyfs binary, whatever folder it is in. */
#define STEADYFS_EXE "steadyfs"

/* 1 if /proc/PID/exe is a file named "steadyfs" (also while an upgrade
 * has replaced it: the kernel then appends " (deleted)"). */
static int exe_is_steadyfs(long pid)
{
	char link[64], exe[PATH_MAX];
	const char *base;
	ssize_t n;
	size_t len;

	snprintf(link, sizeof(link), "/proc/%ld/exe", pid);
	n = readlink(link, exe, sizeof(exe) - 1);
	if (n <= 0)
		return 0;
	exe[n] = '\0';
	len = (size_t)n;
	if (len > 10 && strcmp(exe + len - 10, " (deleted)") == 0)
		exe[len - 10] = '\0';
	base = strrchr(exe, '/');
	return strcmp(base ? base + 1 : exe, STEADYFS_EXE) == 0;
}

int live_keeper_holds(long pid, dev_t dev)
{
	char path[64];
	struct stat st;

	if (pid <= 1 || pid > INT_MAX)
		return 0;
	snprintf(path, sizeof(path), "/proc/%ld", pid);
	/* Root's process: a local user cannot pose as a keeper by reusing
	 * a dead keeper's pid with a program they named steadyfs. */
	if (stat(path, &st) < 0 || st.st_uid != 0 || !exe_is_steadyfs(pid))
		return 0;
	/* Its mount table lists every mount of the namespace, so finding the
	 * device there says little: a mirror left by a dead mount may name a
	 * pid now reused by another steadyfs, and its device may now be a
	 * stranger's (the kernel reuses anonymous device numbers at once).
	 * The device must be a steadyfs mount, and this process must hold
	 * that very FUSE connection (when the kernel says which it holds). */
	snprintf(path, sizeof(path), "/proc/%ld/mountinfo", pid);
	return mounttab_has_dev(path, dev, MT_FSTYPE_STEADYFS) == 1 &&
	       fuseconn_held_by(pid, dev) >= 0;
}

/* 1 if mirror `dir` (through the symlink to a state_dir= folder) and its
 * status.json are root's and nobody else can write the folder: a mirror a
 * user could write would let them shield any device from recovery. */
static int root_only(const char *dir)
{
	char file[600];
	struct stat d, f;

	snprintf(file, sizeof(file), "%s/" STATUS_FILE, dir);
	return stat(dir, &d) == 0 && S_ISDIR(d.st_mode) && d.st_uid == 0 &&
	       !(d.st_mode & (S_IWGRP | S_IWOTH)) &&
	       stat(file, &f) == 0 && f.st_uid == 0;
}

/* "major:minor" into `dev`; 0, or -1 when malformed. */
static int parse_dev(const char *s, dev_t *dev)
{
	unsigned int ma, mi;
	int used = 0;

	if (sscanf(s, "%u:%u%n", &ma, &mi, &used) != 2 || s[used])
		return -1;
	*dev = makedev(ma, mi);
	return 0;
}

static int add(struct live_set *ls, size_t *cap, dev_t dev, long pid, const char *dir)
{
	struct live_dev *d;

	if (ls->n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 8;
		struct live_dev *v = reallocarray(ls->v, ncap, sizeof(*v));

		if (!v)
			return -1;
		ls->v = v;
		*cap = ncap;
	}
	d = &ls->v[ls->n++];
	d->dev = dev;
	d->keeper_pid = pid;
	snprintf(d->mirror, sizeof(d->mirror), "%s", dir);
	return 0;
}

int live_scan(struct live_set *ls, const char *base)
{
	DIR *d = opendir(base);
	struct dirent *de;
	size_t cap = 0;
	int rc = 0;

	ls->v = NULL;
	ls->n = 0;
	if (!d)
		return 0;  /* no steadyfs ever ran here */
	while (rc == 0 && (de = readdir(d))) {
		struct mirror_status ms;
		char dir[512];
		dev_t dev;

		if (de->d_name[0] == '.')
			continue;
		snprintf(dir, sizeof(dir), "%s/%s", base, de->d_name);
		if (!root_only(dir))
			continue;
		/* Freshness does not matter: a keeper restarting its daemon
		 * keeps the mount, and the mirror waits for the new one. */
		mirror_read(dir, clock_wall(), &ms);
		if ((ms.health != MIRROR_FRESH && ms.health != MIRROR_STALE) ||
		    parse_dev(ms.device, &dev) < 0 || !live_keeper_holds(ms.keeper_pid, dev))
			continue;
		rc = add(ls, &cap, dev, ms.keeper_pid, dir);
	}
	closedir(d);
	if (rc < 0)
		live_release(ls);
	return rc;
}

void live_release(struct live_set *ls)
{
	free(ls->v);
	ls->v = NULL;
	ls->n = 0;
}

const struct live_dev *live_find(const struct live_set *ls, dev_t dev)
{
	for (size_t i = 0; i < ls->n; i++)
		if (ls->v[i].dev == dev)
			return &ls->v[i];
	return NULL;
}
