/*
 * bdi: writes the mount's read_ahead_kb. See bdi.h.
 */
#include "bdi.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "mounttab.h"

int bdi_set_read_ahead(const char *mountpoint, unsigned kb, char *err, size_t errsz)
{
	char path[96], val[16];
	dev_t dev;
	ssize_t n;
	int fd, len;

	if (!mountpoint || mounttab_device_of(mountpoint, MT_FSTYPE_STEADYFS, &dev) < 0) {
		snprintf(err, errsz, "'%s' not found in the mount table",
			 mountpoint ? mountpoint : "");
		return -1;
	}
	snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb",
		 major(dev), minor(dev));
	len = snprintf(val, sizeof(val), "%u\n", kb);
	if ((fd = open(path, O_WRONLY | O_CLOEXEC)) < 0) {
		snprintf(err, errsz, "'%s': %s", path, strerror(errno));
		return -1;
	}
	n = write(fd, val, (size_t)len);
	if (n != len) {
		snprintf(err, errsz, "'%s': %s", path, n < 0 ? strerror(errno) : "short write");
		close(fd);
		return -1;
	}
	if (close(fd) < 0) {
		snprintf(err, errsz, "'%s': %s", path, strerror(errno));
		return -1;
	}
	return 0;
}
