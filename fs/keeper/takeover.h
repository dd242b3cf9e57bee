/*
 * takeover: the daemon's side of the keeper. Reads the link the keeper
 * left in the environment, receives the /dev/fuse descriptor, and wraps
 * libfuse's reads and writes on it (fuse_session_custom_io) to
 *  - save the INIT request in the take-over state, and replay it when a
 *    later daemon starts, so libfuse negotiates what the kernel already has;
 *  - record the ids of requests read and not yet answered, so that after
 *    a death the next daemon can have the kernel resend them
 *    (FUSE_NOTIFY_RESEND, Linux 6.9+) or, on older kernels, fail them at
 *    once with EIO instead of leaving their callers hanging;
 *  - stop reading on SIGUSR1 for an upgrade: the old daemon answers what it
 *    read, writes back its unacknowledged data, and exits.
 */
#ifndef STEADYFS_TAKEOVER_H
#define STEADYFS_TAKEOVER_H

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keepstate.h"

struct takeover;

enum takeover_mode { TK_START, TK_RESTART, TK_UPGRADE };

/* NULL when the process was not started by a keeper (err says why). */
struct takeover *takeover_from_env(char *err, size_t errsz);
void takeover_free(struct takeover *t);

enum takeover_mode takeover_mode(const struct takeover *t);
uint64_t takeover_generation(const struct takeover *t);
const char *takeover_mountpoint(const struct takeover *t);
struct keepstate *takeover_state(struct takeover *t);

/* Tells the keeper this daemon may take the mount and waits for the
 * descriptor. Returns it, or -1 (err) when the keeper is gone. */
int takeover_receive_fd(struct takeover *t, char *err, size_t errsz);

/* Makes `se` read and answer through `fd` with the wrappers above.
 * libfuse hands those wrappers only the session's userdata, so it must
 * begin with a `struct takeover *` (to `t`): struct vfs does, its first
 * field. That way the take-over calls nothing of the layer above it. */
int takeover_attach(struct takeover *t, struct fuse_session *se, int fd);

/*
 * Continues a previous daemon's mount: replays its INIT into `se`, then
 * has the kernel resend what it had read and not answered (or fails those
 * calls with EIO where the kernel cannot resend). Nothing to do for the
 * first daemon. Returns 0, or -1 when libfuse refused the INIT.
 */
int takeover_resume(struct takeover *t, struct fuse_session *se);

/*
 * Starts the signal thread. SIGUSR1, SIGTERM, SIGINT and SIGHUP are
 * blocked in every thread (from takeover_from_env on) and read here.
 * SIGUSR1, an upgrade: reading stops; once every request read is
 * answered, `drain(arg)` runs (it writes back unacknowledged data) and
 * the process exits with KEEPER_EXIT_HANDOVER. A stop signal ends the
 * session loop (takeover_stop_signal then names it).
 */
int takeover_start_handover(struct takeover *t, void (*drain)(void *arg),
			    void *arg);

/* The stop signal that ended the session loop, 0 when none did. */
int takeover_stop_signal(const struct takeover *t);

/* Tells the keeper the daemon serves. */
void takeover_serving(struct takeover *t);

/*
 * What the take-over knows of one request: its unique id as the kernel
 * sent it, and whether the kernel resent it after a daemon died (then it
 * may have been executed once already).
 */
struct tk_call {
	uint64_t unique;
	bool resent;
};

/*
 * The one accessor for those facts. libfuse 3.14 gives a handler no way
 * to learn its request's unique id, and its worker reads a request and
 * dispatches it on the same thread, so the read wrapper keeps the facts
 * of the request it read for that thread. Valid only on a FUSE worker
 * thread, inside the handler of the request it read (anywhere else it
 * answers { 0, false }): a handler takes them once, at its start, and
 * from then on they travel as values (op_new keeps `resent` in the op;
 * the write handler passes them to the two calls below). Nothing else in
 * the daemon reads them from the thread.
 */
struct tk_call takeover_call(void);

/*
 * Appends: the offset given to the request `c` is recorded
 * (takeover_note_append, before its data is sent); when the kernel
 * resends it to a later daemon, takeover_append_offset returns that same
 * offset, so the data lands where it may already be instead of twice.
 */
void takeover_note_append(struct takeover *t, struct tk_call c, uint64_t off);
bool takeover_append_offset(const struct takeover *t, struct tk_call c,
			    uint64_t *off);

#endif
