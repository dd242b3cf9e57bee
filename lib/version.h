/*
 * version: the one version string of the three programs and the mount's
 * build_info metric.
 */
#ifndef STEADYFS_VERSION_H
#define STEADYFS_VERSION_H

#define STEADYFS_VERSION "0.1.0"

#endif
