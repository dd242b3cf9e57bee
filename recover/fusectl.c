/*
 * fusectl: mount the control filesystem and abort connections. See
 * fusectl.h.
 */
#include "fusectl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#include "mounttab.h"

unsigned long fusectl_conn(unsigned int major, unsigned int minor)
{
	return ((unsigned long)major << 20) | minor;
}

int fusectl_ensure(const char *dir, int *mounted, char *err, size_t errsz)
{
	struct mounttab mt = MOUNTTAB_INIT;
	const struct mount_entry *e;
	char why[256];
	int present;

	*mounted = 0;
	if (mounttab_load(&mt, dir, NULL, why, sizeof(why)) < 0) {
		snprintf(err, errsz, "cannot read the mount table: %s", why);
		return -1;
	}
	e = mounttab_find(&mt, dir);
	present = e && strcmp(e->fstype, "fusectl") == 0;
	mounttab_release(&mt);
	if (present)
		return 0;
	if (mount("fusectl", dir, "fusectl", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) {
		snprintf(err, errsz, "cannot mount fusectl on '%s': %s", dir, strerror(errno));
		return -1;
	}
	*mounted = 1;
	return 0;
}

int fusectl_abort(const char *dir, unsigned long conn, char *err, size_t errsz)
{
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/%lu/abort", dir, conn);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errsz, "cannot open '%s': %s", path, strerror(errno));
		return -1;
	}
	if (write(fd, "1", 1) != 1) {
		snprintf(err, errsz, "cannot write '%s': %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	if (close(fd) < 0) {
		snprintf(err, errsz, "cannot close '%s': %s", path, strerror(errno));
		return -1;
	}
	return 0;
}
