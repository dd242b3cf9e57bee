/*
 * atomicfile: replace a file so that readers see the old contents or the
 * new, never a part: write a temp file in the same folder, fsync it,
 * rename it over the target, fsync the folder. On any failure the temp
 * file is removed and the target is untouched.
 *
 * The temp file is "<dir>/.<name>.tmp.<pid>.<n>", created with O_EXCL, so
 * concurrent writers of one target never share a temp file (the last
 * rename wins). A textfile collector that only reads "*.prom" ignores the
 * dot file.
 */
#ifndef STEADYFS_ATOMICFILE_H
#define STEADYFS_ATOMICFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/*
 * Writes `len` bytes at `data` to `path` atomically with permissions
 * `mode` (before umask). Returns 0, or -1 with errno set and a one-line
 * reason naming the failing step and path in `err`.
 */
int atomicfile_write(const char *path, const void *data, size_t len, mode_t mode,
		     char *err, size_t errsz);
/*
 * The same, and with `exact` the file gets exactly `mode` whatever the
 * umask, and group `gid` unless it is (gid_t)-1, before any byte is
 * written into it: for state that is private or shared with one group.
 */
int atomicfile_write_owned(const char *path, const void *data, size_t len, mode_t mode,
			   gid_t gid, bool exact, char *err, size_t errsz);

/*
 * Checks that `path`'s folder exists and is a writable directory, without
 * writing anything: for rejecting a bad output path before doing work.
 * Returns 0, or -1 with errno set and a one-line reason in `err`.
 */
int atomicfile_check_dir(const char *path, char *err, size_t errsz);

#endif
