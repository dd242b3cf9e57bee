/*
 * atomicfile: temp file + fsync + rename + fsync(dir). See atomicfile.h.
 */
#include "atomicfile.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Splits `path` into its folder (into `dir`) and points `*base` at its
 * last component. Returns 0, or -1 with errno. */
static int split_path(const char *path, char *dir, size_t dirsz, const char **base)
{
	const char *slash = strrchr(path, '/');
	size_t n;

	if (!*path || (slash && !slash[1])) {
		errno = EISDIR;
		return -1;
	}
	if (!slash) {
		*base = path;
		return snprintf(dir, dirsz, ".") < (int)dirsz ? 0 : (errno = ENAMETOOLONG, -1);
	}
	*base = slash + 1;
	n = slash == path ? 1 : (size_t)(slash - path);
	if (n >= dirsz) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(dir, path, n);
	dir[n] = '\0';
	return 0;
}

static int write_all(int fd, const char *p, size_t len)
{
	while (len) {
		ssize_t w = write(fd, p, len);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

/* Creates a fresh temp file beside the target: pid plus the first free
 * sequence number, so concurrent writers (threads or processes) and the
 * leftovers of a crashed one never collide. Returns the fd or -1. */
static int create_temp(const char *dir, const char *base, mode_t mode,
		       char *tmp, size_t tmpsz)
{
	for (unsigned int n = 0; n < 1000; n++) {
		int fd;

		if (snprintf(tmp, tmpsz, "%s/.%s.tmp.%ld.%u", dir, base, (long)getpid(),
			     n) >= (int)tmpsz) {
			errno = ENAMETOOLONG;
			return -1;
		}
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
		if (fd >= 0 || errno != EEXIST)
			return fd;
	}
	errno = EEXIST;
	return -1;
}

/* fsync of the folder makes the rename itself durable. */
static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc, e;

	if (fd < 0)
		return -1;
	rc = fsync(fd);
	e = errno;
	close(fd);
	errno = e;
	return rc;
}

/* Gives the temp file exactly `mode` (the umask would only narrow it,
 * and a group reader needs its bit) and group `gid`. */
static int set_owner(int fd, mode_t mode, gid_t gid)
{
	if (fchmod(fd, mode) < 0)
		return -1;
	return gid == (gid_t)-1 ? 0 : fchown(fd, (uid_t)-1, gid);
}

int atomicfile_write(const char *path, const void *data, size_t len, mode_t mode,
		     char *err, size_t errsz)
{
	return atomicfile_write_owned(path, data, len, mode, (gid_t)-1, false, err, errsz);
}

int atomicfile_write_owned(const char *path, const void *data, size_t len, mode_t mode,
			   gid_t gid, bool exact, char *err, size_t errsz)
{
	char dir[PATH_MAX], tmp[PATH_MAX];
	const char *base, *step;
	int fd, e;

	if (split_path(path, dir, sizeof(dir), &base) < 0) {
		e = errno;
		snprintf(err, errsz, "cannot write '%s': %s", path, strerror(e));
		errno = e;
		return -1;
	}
	fd = create_temp(dir, base, mode, tmp, sizeof(tmp));
	if (fd < 0) {
		e = errno;
		snprintf(err, errsz, "cannot create '%s': %s", tmp, strerror(e));
		errno = e;
		return -1;
	}
	step = "chmod";
	if (exact && set_owner(fd, mode, gid) < 0)
		goto fail;
	step = "write";
	if (write_all(fd, data, len) < 0)
		goto fail;
	step = "fsync";
	if (fsync(fd) < 0)
		goto fail;
	step = "close";
	if (close(fd) < 0) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	step = "rename";
	if (rename(tmp, path) < 0)
		goto fail;
	if (fsync_dir(dir) < 0) {
		/* The new file is in place; only its durability is in doubt. */
		e = errno;
		snprintf(err, errsz, "cannot fsync folder '%s': %s", dir, strerror(e));
		errno = e;
		return -1;
	}
	return 0;
fail:
	e = errno;
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	snprintf(err, errsz, "cannot %s '%s': %s", step, tmp, strerror(e));
	errno = e;
	return -1;
}

int atomicfile_check_dir(const char *path, char *err, size_t errsz)
{
	char dir[PATH_MAX];
	const char *base;
	struct stat st;
	int e;

	if (split_path(path, dir, sizeof(dir), &base) < 0) {
		e = errno;
		snprintf(err, errsz, "bad output file '%s': %s", path, strerror(e));
		errno = e;
		return -1;
	}
	if (stat(dir, &st) < 0)
		e = errno;
	else if (!S_ISDIR(st.st_mode))
		e = ENOTDIR;
	else if (access(dir, W_OK) < 0)
		e = errno;
	else
		e = 0;
	if (e) {
		snprintf(err, errsz, "cannot write into folder '%s': %s", dir, strerror(e));
		errno = e;
		return -1;
	}
	return 0;
}
