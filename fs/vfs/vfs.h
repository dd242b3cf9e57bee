/*
 * vfs: the FUSE low-level filesystem over the session pool. main() creates
 * it after the first session connected, hands its ops table to libfuse and
 * frees it after the session loop ended.
 */
#ifndef STEADYFS_VFS_H
#define STEADYFS_VFS_H

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include "opts.h"
#include "pool.h"

struct vfs;

/* Returns NULL on allocation failure. `o` and `p` must outlive the vfs;
 * `mountpoint` is the resolved path (for the state_dir mirror). */
struct vfs *vfs_new(const struct steadyfs_opts *o, struct pool *p,
		    const char *mountpoint);
struct takeover;
/*
 * Continues the mount of a previous daemon (if any) from the keeper's
 * take-over state: its node ids and open handles; from then on both are
 * recorded there as they change. Call before the session runs. Returns 0
 * or -1 (out of memory).
 */
int vfs_adopt(struct vfs *v, struct takeover *t);

/* The low-level operations; userdata for fuse_session_new is the vfs
 * (which begins with the keeper link given to vfs_adopt, as
 * takeover_attach requires). */
const struct fuse_lowlevel_ops *vfs_ops(void);
/* Called once the FUSE session exists (for notifications). Starts the
 * sweeper thread that expires waiting calls and the .control mirror. */
int vfs_start(struct vfs *v, struct fuse_session *se);
/*
 * Waits up to op_timeout for unacknowledged writes and stops the sweeper.
 * Call after unmounting, while the pool still runs.
 */
void vfs_stop(struct vfs *v);
/* Frees everything; call after pool_stop() (no callback may run). */
void vfs_free(struct vfs *v);

#endif
