/*
 * paths: small path helpers shared by the daemon and the tools.
 */
#ifndef STEADYFS_PATHS_H
#define STEADYFS_PATHS_H

#include <sys/types.h>

/*
 * mkdir -p: creates `path` and its missing parents, each with `mode`.
 * An existing directory is fine; an existing non-directory is ENOTDIR.
 * Returns 0, or -1 with errno.
 */
int mkdir_p(const char *path, mode_t mode);

#endif
