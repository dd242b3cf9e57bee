/*
 * safepath: symlink-free opens and descriptor checks. See safepath.h.
 */
#include "safepath.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static int openat2_nofollow(int dirfd, const char *path, int flags)
{
	struct open_how how = {
		.flags = (unsigned long long)(O_PATH | O_CLOEXEC | flags),
		.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};
	long fd = syscall(SYS_openat2, dirfd, path, &how, sizeof(how));

	return fd < 0 ? -1 : (int)fd;
}

int safepath_open(const char *path, int flags)
{
	if (path[0] != '/') {
		errno = EINVAL;
		return -1;
	}
	return openat2_nofollow(AT_FDCWD, path, flags);
}

/* Opens component `name` in `dir`, creating it first if missing. */
static int step_into(int dir, const char *name, mode_t mode)
{
	int fd = openat2_nofollow(dir, name, O_DIRECTORY);

	if (fd >= 0 || errno != ENOENT)
		return fd;
	/* mkdirat never follows a symlink in its last component: one put
	 * there meanwhile makes it EEXIST, and the open below ELOOP. */
	if (mkdirat(dir, name, mode) < 0 && errno != EEXIST)
		return -1;
	return openat2_nofollow(dir, name, O_DIRECTORY);
}

int safepath_mkdirs(const char *path, mode_t mode)
{
	char *copy, *save = NULL;
	int dir, saved;

	if (path[0] != '/') {
		errno = EINVAL;
		return -1;
	}
	if (!(copy = strdup(path)))
		return -1;
	dir = openat2_nofollow(AT_FDCWD, "/", O_DIRECTORY);
	for (char *c = strtok_r(copy, "/", &save); c && dir >= 0;
	     c = strtok_r(NULL, "/", &save)) {
		int next;

		if (strcmp(c, ".") == 0 || strcmp(c, "..") == 0) {
			close(dir);
			dir = -1;
			errno = EINVAL;  /* targets are normalised: never here */
			break;
		}
		next = step_into(dir, c, mode);
		saved = errno;
		close(dir);
		dir = next;
		errno = saved;
	}
	saved = errno;
	free(copy);
	errno = saved;
	return dir;
}

int safepath_mount_id(int fd)
{
	char path[64], line[256];
	FILE *f;
	int id = -1;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	if (!(f = fopen(path, "re")))
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "mnt_id: %d", &id) == 1)
			break;
	fclose(f);
	return id;
}

int safepath_fd_path(int fd, char *out, size_t outsz)
{
	char link[64];
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, out, outsz - 1);
	if (n < 0)
		return -1;
	if ((size_t)n >= outsz - 1) {
		errno = ENAMETOOLONG;
		return -1;
	}
	out[n] = '\0';
	return 0;
}

int safepath_check(int fd, const char *path, int mnt_id, char *why, size_t whysz)
{
	char now[4096];
	int id = safepath_mount_id(fd);

	if (id < 0) {
		snprintf(why, whysz, "cannot read the mount id of '%s'", path);
		return -1;
	}
	if (mnt_id >= 0 && id != mnt_id) {
		snprintf(why, whysz, "'%s' now leads to mount %d, not to mount %d of the plan",
			 path, id, mnt_id);
		return -1;
	}
	if (safepath_fd_path(fd, now, sizeof(now)) < 0) {
		snprintf(why, whysz, "cannot name the descriptor of '%s': %s", path,
			 strerror(errno));
		return -1;
	}
	if (strcmp(now, path) != 0) {
		snprintf(why, whysz, "'%s' now leads to '%s'", path, now);
		return -1;
	}
	return 0;
}

const char *safepath_strerror(int err)
{
	switch (err) {
	case ELOOP:
		return "a symlink on the path (recovery never follows one)";
	case ENOSYS:
		return "this kernel has no openat2(2): cannot act through a checked descriptor";
	case EXDEV:
		return "the path leaves its tree";
	default:
		return strerror(err);
	}
}
