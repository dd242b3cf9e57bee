/*
 * fuseconn: which FUSE connection a process's /dev/fuse descriptors
 * serve, from /proc/PID/fd and fdinfo. See fuseconn.h.
 */
#include "fuseconn.h"

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/* The kernel's number for a FUSE connection (its device, as fdinfo's
 * "fuse_connection:" shows it: the in-kernel MKDEV encoding). */
static unsigned long kernel_devno(dev_t d)
{
	return ((unsigned long)major(d) << 20) | minor(d);
}

/* Reads the fdinfo of /dev/fuse descriptor `fd` of `pid`: sets *shown
 * when it names a connection; returns 1 when that is `dev`'s, 0 when
 * not, -1 when the fdinfo is gone (the descriptor was closed). */
static int fdinfo_matches(long pid, const char *fd, dev_t dev, bool *shown)
{
	char path[320], line[128];
	int match = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/fdinfo/%s", pid, fd);
	if (!(f = fopen(path, "re")))
		return -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned long conn;

		if (sscanf(line, "fuse_connection: %lu", &conn) == 1) {
			*shown = true;
			match |= conn == kernel_devno(dev);
		}
	}
	fclose(f);
	return match;
}

int fuseconn_held_by(long pid, dev_t dev)
{
	char dir[64], path[320], link[64];
	bool fuse_fd = false, shown = false;
	int match = 0, r;
	struct dirent *de;
	DIR *d;

	snprintf(dir, sizeof(dir), "/proc/%ld/fd", pid);
	if (!(d = opendir(dir)))
		return -1;
	while (!match && (de = readdir(d))) {
		ssize_t n;

		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		n = readlink(path, link, sizeof(link) - 1);
		if (n <= 0)
			continue;
		link[n] = '\0';
		if (strcmp(link, "/dev/fuse"))
			continue;
		r = fdinfo_matches(pid, de->d_name, dev, &shown);
		fuse_fd |= r >= 0;
		match = r == 1;
	}
	closedir(d);
	if (match)
		return 1;
	return fuse_fd && !shown ? 0 : -1;
}
