/*
 * moving: name changes in flight. A reopen (ops_file.c) sends its OPEN
 * under the path its node has now. A RENAME of that file or of a folder
 * above it (a user's rename, the hiding of an unlink or of a rename's
 * target, an rmdir's evacuation, a failed rename's undo), sent on
 * another session, may land on the server first while its reply is still
 * on its way: the OPEN gets NO_SUCH_FILE and the node table still has
 * the old name. Each call that changes names marks the paths it moves
 * until the op is freed (after the node table took its result); a reopen
 * that meets NO_SUCH_FILE on a marked path, or under a marked folder,
 * waits for the marks there to go and is then sent again, under the name
 * the node has then.
 *
 * No deadlock: a name change never waits for a file handle (its requests
 * wait only for the server, each within its deadline, and settle as every
 * non-idempotent call), so the marks always go; a waiting reopen holds
 * nothing a name change needs.
 *
 * Thread-safe (vfs->lock). Internal to fs/vfs*.c, fs/ops_*.c, fs/vfs/hidden.c.
 */
#ifndef STEADYFS_MOVING_H
#define STEADYFS_MOVING_H

#include <stdbool.h>

struct op;
struct vfs;

/* op is about to change the name at `path` (a file, or a folder and
 * everything under it), until op is freed. Without memory, no mark: a
 * reopen overtaken then fails as it would have. */
void moving_mark(struct op *op, const char *path);
/* Drops op's marks and sends again the reopens no mark holds back any
 * more (from op_free; not once the vfs is stopping: vfs->stop). */
void moving_end(struct op *op);
/*
 * A reopen `rop` got NO_SUCH_FILE for rop->path: when a mark covers that
 * path, parks rop (rop->resend runs once no mark covers it) and returns
 * true; rop is not the caller's any more then. False: no name change in
 * flight there (rop untouched).
 */
bool moving_wait(struct vfs *v, struct op *rop);
/* Takes every parked reopen, unsent, as a list through op->next, for
 * the caller to free (the pool is stopped; their handles are freed next,
 * fh_free_all; their unwritten data was reported by fh_drain_all).
 * moving.c frees no op itself: it lies below the op helpers. */
struct op *moving_take_all(struct vfs *v);

#endif
