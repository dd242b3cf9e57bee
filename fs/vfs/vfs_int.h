/*
 * vfs internals shared by the file layer (vfs.c, op.c, vfs_attr.c, the
 * ops_*.c handlers, fh*.c, hidden.c, rename_fallback.c). Not for use
 * elsewhere in fs/.
 *
 * Every FUSE operation becomes a struct op: the handler fills it, encodes
 * one SFTP request and submits it; the reply (or a transport failure)
 * arrives on a session I/O thread in the op's done callback, which either
 * sends the next request of the operation or answers FUSE and frees the
 * op. No libfuse worker thread ever waits for the network.
 */
#ifndef STEADYFS_VFS_INT_H
#define STEADYFS_VFS_INT_H

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "control.h"
#include "keepstate.h"
#include "nodes.h"
#include "opts.h"
#include "pool.h"
#include "sftp.h"
#include "sreq.h"

struct fh;
struct op;
struct wchunk;
struct hidden_moves;
struct move_mark;
struct vfs;

/* The virtual .control/ directory and its files: ids far above any id the
 * node table hands out (a 64-bit counter from 2). */
#define CTL_DIR_INO (1ull << 62)
#define CTL_NAME ".control"
static inline bool is_ctl_ino(uint64_t ino) { return ino >= CTL_DIR_INO; }
/* Invalid remote names logged one by one; past this many, only counted. */
#define VFS_BAD_SEEN_MAX 256

/* What hidden.c asks of the file handles (fh.c's fh_node_open and
 * fh_node_closing): whether node ino has a handle at all, and whether
 * its last handles are going. */
struct hidden_hooks {
	bool (*node_open)(struct vfs *v, uint64_t ino);
	bool (*node_closing)(struct vfs *v, uint64_t ino);
};

struct vfs {
	/* the keeper link: first, the session's userdata is the vfs and
	 * takeover_attach's I/O wrappers find their takeover there */
	struct takeover *tk;
	const struct steadyfs_opts *o;
	struct pool *pool;
	struct nodes *nodes;
	struct control *ctl;
	struct fuse_session *se;
	struct keepstate *ks;      /* take-over state (NULL: not recorded) */
	struct fh **fh_slots;      /* fi->fh - 1 -> handle; see fh.c */
	struct handles *dirs;      /* fi->fh -> listing (ops_dir.c) */
	struct handles *snaps;     /* fi->fh -> .control snapshot (ops_ctl.c) */
	int32_t fh_cap;
	uint64_t op_timeout_ns;
	char *mountpoint;          /* resolved; for the mount's bdi at INIT */
	uid_t remote_uid;          /* for idmap=user: owner of the base dir */
	gid_t remote_gid;

	/* write-behind bytes queued and not yet acknowledged; __atomic_*
	 * (a handle changes it under its own lock, which comes after
	 * vfs->lock in the lock order) */
	size_t unacked_bytes;
	/* write-behind chunks queued so far, __atomic_*: each chunk's
	 * sequence number, so a call can wait for the writes queued before
	 * it and not for those queued after (fh_when_ino_drained) */
	uint64_t wseq;
	/* handles on their way to free(), __atomic_*: from the moment they
	 * leave vfs->fhs until their hidden file's removal is under way
	 * (hidden_when_removed) */
	unsigned last_puts;

	pthread_mutex_t lock;      /* protects the fields below */
	struct fh *fhs;            /* every open file handle */
	struct op *live_head;      /* FUSE calls not yet answered, oldest first */
	struct op *live_tail;
	unsigned live_count;
	uint64_t calls_started;    /* FUSE calls ever begun (quiet: unchanged) */
	bool stop;
	pthread_t sweeper;
	bool sweeper_started;
	uint32_t missing_exts_logged;
	uint32_t refused_exts;     /* advertised but refused at use */
	bool shadow_reported;      /* a remote .control was seen and hidden */
	/* invalid remote names already logged: hashes of (folder, name) */
	uint64_t bad_seen[VFS_BAD_SEEN_MAX];
	unsigned bad_seen_n;
	bool bad_seen_full;        /* "no longer logged one by one" said */

	/* what hidden.c asks of the handles, given by vfs_new (hidden.c
	 * lies below fh*.c, which call it: no call loop, test/callgraph.py) */
	struct hidden_hooks hidden_hooks;
	pthread_mutex_t hidden_lock;  /* protects the two lists below */
	struct op *removing;       /* hidden names being removed (hidden.c) */
	struct op *removal_waiters;  /* setattrs waiting for them */
	/* name changes in flight and the reopens waiting for them
	 * (moving.h), under vfs->lock (not hidden_lock) */
	struct move_mark *marks;
	struct op *parked;
};

/* What a call waits for before it goes on (fh_wait_writes,
 * fh_when_ino_drained): the writes queued up to `seq` overlapping
 * [lo, hi), on every handle of its node except `skip`. */
struct op_barrier {
	uint64_t seq, lo, hi;
	const struct fh *skip;
};

typedef void (*op_step_fn)(struct op *op, const struct sftp_reply *r, int err);

struct op {
	struct sreq rq;            /* first: sreq callbacks cast back to op */
	struct vfs *v;
	fuse_req_t req;            /* NULL for internal ops */
	op_step_fn step;
	/* continuation of op_stat_path(): attrs when the path exists, else the
	 * errno (ENOENT, or EIO/EAGAIN for a transport failure) */
	void (*then)(struct op *op, const struct sftp_attrs *a, int err);
	/* continuation of fh_when_ino_drained(); hidden_unlink's plain
	 * unlink when the server will not hide the file */
	void (*after)(struct op *op, const struct sftp_attrs *a, int err);
	/* a call waiting for the writes queued before it (fh_wait.c) */
	struct op_barrier bar;
	/* a read: the end of the writes queued before it and not yet
	 * acknowledged when it was sent (the file is at least that long
	 * once they land) */
	uint64_t queued_end;
	const char *name;          /* operation name, for logs */
	int stage;
	uint64_t ino, parent, newparent;
	char *path, *path2;
	char *leaf, *leaf2;
	struct fuse_file_info fi;
	bool have_fi;
	struct fh *fh;
	struct stat st;
	int to_set;
	mode_t mode;
	uint64_t off;
	size_t size;
	unsigned flags;
	int err;                   /* errno remembered across stages */
	struct op *next;           /* waiting lists */
	struct op *live_prev, *live_next;  /* vfs->live list, under vfs->lock */
	uint64_t start_ns;
	bool resent;               /* the kernel resent it after a daemon died,
				    * or settling sent it again (ops_names.c) */
	/* settling a non-idempotent call (ops_names.c): its reply was lost
	 * (then a call found not done is sent again), else `refused` is the
	 * status the server refused a resent call with */
	bool lost;
	uint32_t refused;
	void (*resend)(struct op *op);  /* encodes and sends the call again
					 * (a parked reopen: moving.h) */
	bool marked;               /* it has name changes in flight (moving.h) */
	bool live;                 /* on vfs->live */
	bool logged;               /* its failure was logged already */
	int result;                /* errno the call ended with */
	/* create: the STAT sent behind its OPEN (ops_file.c) */
	struct op *peer;
	/* an FSTAT for the "same file?" rule: the file's mark when it (or
	 * the call that waits to send it) was sent (identity.h), and for a
	 * reopen its whole identity then (ident_since) */
	uint32_t mark;
	struct ident ident_then;
	struct sftp_attrs pre;
	bool have_pre;
	/* a write waiting for window room: its data, not queued yet */
	struct wchunk *wchunks;
	/* a rename: the hidden files it moved out of the folder it replaces
	 * (hidden.c), put back if the rename fails; freed with the op */
	struct hidden_moves *moved;
	/* a move of a hidden file it sent: its take-over record's slot + 1
	 * (hidden.c), 0 none; dropped with the op */
	int32_t pend;
	/* read assembly */
	uint32_t ra_gen;           /* read-ahead generation of a prefetch */
	char *data;
	size_t got;
	unsigned pending;
};

/* ---- op helpers (op.c; attributes and extensions: vfs_attr.c) ---- */
struct op *op_new(struct vfs *v, fuse_req_t req, const char *name);
void op_free(struct op *op);
/* Forgets op's pending move of a hidden file (op->pend, its take-over
 * record, hidden.c): the node has its new name, or the move failed;
 * op_free does it too. */
void op_drop_pend(struct op *op);
/* Submits the encoded op->rq.pkt to any session, with op->step as
 * continuation. `idempotent`: resend after a session loss. */
void op_send(struct op *op, op_step_fn step, bool idempotent);
/* True when a non-idempotent call may have been done although the reply
 * says otherwise: its reply was lost (-ECONNRESET), or the kernel resent
 * it after a daemon died and the server refused it. */
bool op_maybe_done(const struct op *op, const struct sftp_reply *r, int err);
/* op_send, with `second` right behind it on the same session (see
 * pool_submit_pair): second's step gets -ESTALE when it could not go. */
void op_send_pair(struct op *op, op_step_fn step, bool idempotent,
		  struct op *second, op_step_fn second_step);
/* The same bound to one session (a remote handle lives on one): fails
 * with -ESTALE when that session is gone. */
void op_send_on(struct op *op, op_step_fn step, int conn_idx, uint64_t conn_gen);
/* Error for a transport failure seen by an op. */
int op_transport_errno(int err);
/* The errno of a reply that is not what we asked for. */
int op_reply_errno(const struct sftp_reply *r);
/* Answers FUSE with an error (0 = success for reply_err) and frees op.
 * An EIO or EAGAIN not logged yet is logged here, so every one an
 * application sees has its log line and event. */
void op_fail(struct op *op, int errnum);
/* The same check for paths that answer FUSE themselves. */
void op_note_error(struct op *op, int errnum);
/* Logs a failed call (EIO/EAGAIN) with its cause. */
void op_log_error(struct op *op, int errnum, const char *cause);

/* Sends LSTAT `path` and continues in op->then (set to `then`). With
 * op->rq.cache_ok set, `then` gets EHOSTDOWN at once when no session is
 * up (see sreq.h). */
void op_stat_path(struct op *op, const char *path,
	       void (*then)(struct op *, const struct sftp_attrs *, int));
/* Writers' end offset raises a size the server does not know yet (an
 * end that counted bytes lost with a dead daemon is forgotten when the
 * next daemon restores the handle: the server's size counts again). */
void vfs_adjust_size(struct vfs *v, uint64_t ino, struct stat *st);

/* Attribute conversion with uid/gid/umask mapping. */
void vfs_attr_to_stat(struct vfs *v, const struct sftp_attrs *a,
		      uint64_t ino, struct stat *st);
void vfs_fill_entry(struct vfs *v, struct fuse_entry_param *e, uint64_t ino,
		    const struct stat *st);
/* After a successful LSTAT of (parent, leaf): ref the node, cache, reply. */
void vfs_reply_entry(struct op *op, const struct sftp_attrs *a);
/* The attributes of the file of node `ino` changed (size, mode, times):
 * those cached for its other names (its link group, nodes_twin), by
 * steadyfs and by the kernel, are stale now. */
void vfs_links_changed(struct vfs *v, uint64_t ino);
/* True (and logs once) when the server lacks `ext`. */
bool vfs_missing_ext(struct vfs *v, uint32_t ext);
uint32_t vfs_exts(struct vfs *v);
/*
 * True when a reply to an extension request says the server does not
 * have it (OP_UNSUPPORTED); then the extension is treated as missing from
 * now on, logged once. Any other refusal (PERMISSION_DENIED included) is
 * false: the caller answers it with its errno, as for any request.
 */
bool vfs_ext_refused(struct vfs *v, uint32_t ext, const struct sftp_reply *r);

/* ---- rename (ops_rename.c above rename_fallback.c) ---- */
/* The rename of op->path to op->path2 is done on the server: moves the
 * node, answers success and frees op (rename_fallback.c, which ends in
 * it as ops_rename.c does, and calls nothing of ops_rename.c). */
void rename_ok(struct op *op);
/*
 * A plain RENAME (no posix-rename@) was refused with "failure": settles
 * why by looking at the server and, when the target exists, replaces it
 * without losing it if the rename cannot be done (rename_fallback.c).
 * Answers the call and frees op.
 */
void rename_fallback(struct op *op);

/* ---- file handles (fh*.c, ops_file.c; fh_int.h) ---- */
/* Recreates the handles a previous daemon left open (not yet reopened on
 * the server); data it had not written back is reported lost. */
int fh_restore_all(struct vfs *v);
void fh_sweep(struct vfs *v, uint64_t now);
/*
 * Runs then(op, NULL, 0) once every write queued on any handle of op->ino
 * before this call is acknowledged (at once when none is left): a
 * truncation or a utimens must not be overtaken by writes queued before
 * it. Writes queued later are not waited for, so a busy writer cannot
 * hold the call back. Past op's deadline the call is answered EIO
 * instead and op freed; then() is not called.
 */
void fh_when_ino_drained(struct op *op,
			 void (*then)(struct op *, const struct sftp_attrs *, int));
/* Drops every handle's read-ahead of `ino` (its data changed). */
void fh_ino_changed(struct vfs *v, uint64_t ino);
/* Age in seconds of the oldest unacknowledged write, 0 when none. */
double fh_oldest_unacked(struct vfs *v);
/* True when node ino has a handle (open, or released and draining). */
bool fh_node_open(struct vfs *v, uint64_t ino);
/* True when node ino has a handle the kernel has not released. */
bool fh_node_held(struct vfs *v, uint64_t ino);
/* True when node ino's last handles are going: released by the kernel
 * and not yet closed on the server (none held), or one flushed a moment
 * ago and not released (that close(2) may have been the last, its
 * release still on the way). */
bool fh_node_closing(struct vfs *v, uint64_t ino);
/* Removes the hidden files no handle holds any more (after a take-over:
 * their last handle went with the previous daemon). */
void fh_release_hidden(struct vfs *v);

/* ---- unlinked open files (hidden.c; its removal after the last handle:
 * hidden_remove.c; folders holding them: hidden_evac.c) ---- */

/* True when (parent, name) is the hidden name of one of this mount's
 * unlinked open files: left out of listings, answers ENOENT to a LOOKUP
 * (it has no name, as on a local disk). A name of the same form that is
 * not ours (made on the server, or another mount's) is an ordinary entry. */
bool hidden_ours(struct vfs *v, uint64_t parent, const char *name, size_t len);
/* A name of the generated hidden form is never made, or renamed to or
 * from, through the mount (no user file can take or hide behind one):
 * replies EPERM and returns true for such a name. */
bool hidden_name_refused(fuse_req_t req, const char *name);
/* Unlinks (op->parent, op->leaf), node `id`, which has handles the
 * kernel has not released (a released one still draining writes to it
 * needs no name: its writes go to the removed file, as locally), by
 * renaming it to a hidden name; answers op. When the server refuses the
 * rename, continues in plain(op, NULL, 0) (a plain REMOVE). */
void hidden_unlink(struct op *op, uint64_t id,
		   void (*plain)(struct op *, const struct sftp_attrs *, int));
/* Before a rename (op->path -> op->path2, op->newparent) replaces node
 * `id`, which has handles the kernel has not released: renames it to a
 * hidden name in its folder, so those handles keep their file; then
 * continues in then(op, NULL, 0) (also when the server refused, or
 * nothing could be allocated: the rename then replaces it plainly).
 * Uses op->data meanwhile. */
void hidden_replace(struct op *op, uint64_t id,
		    void (*then)(struct op *, const struct sftp_attrs *, int));
/* The rename after hidden_replace or hidden_evacuate_target failed with
 * err and was not done: the file moved aside (op->ino, when it was) gets
 * the target name back, the hidden files moved out of the target folder
 * (op->moved) go back into it; then op fails with err. */
void hidden_replace_undo(struct op *op, int err);
/* Removes node id's hidden file; the caller saw it has no handle left. */
void hidden_release(struct vfs *v, uint64_t id);
/* Runs then(op, NULL, 0) once no hidden name in folder op->ino is being
 * removed, nor will be once its released handles are closed or the
 * release of a close(2) just made comes (at once when none is): an mtime
 * set on the folder must not be undone by a removal landing after it.
 * Past op's deadline it fails with EIO and nothing is done. */
void hidden_when_removed(struct op *op,
			 void (*then)(struct op *, const struct sftp_attrs *, int));
/* Fails the ops hidden_when_removed holds past their deadline. */
void hidden_sweep(struct vfs *v, uint64_t now);
/* A handle counted in v->last_puts is gone (its hidden file's removal,
 * if any, under way): the waiters look again. */
void hidden_put_done(struct vfs *v);
/* When folder node `dir` (at op->path) holds nothing but hidden files,
 * moves those of open handles out of it (to the root) and removes the
 * others; then continues in then(op, NULL, 0). Uses op->data. */
void hidden_evacuate(struct op *op, uint64_t dir,
		     bool (*held)(struct vfs *v, uint64_t id),
		     void (*then)(struct op *, const struct sftp_attrs *, int));
/* The same for folder node `dir` at op->path2, which a rename of a folder
 * is about to replace (rename(2) replaces an empty folder), remembering
 * in op->moved which files it moved, for hidden_replace_undo. */
void hidden_evacuate_target(struct op *op, uint64_t dir,
			    bool (*held)(struct vfs *v, uint64_t id),
			    void (*then)(struct op *, const struct sftp_attrs *, int));
/* At restore: settles each move a previous daemon had sent when it died
 * (the file at its new place is adopted by its node, or removed when no
 * handle holds it). */
void hidden_settle_restored(struct vfs *v);

/* ---- .control/ (ops_ctl.c) ---- */
/* Each returns true when it handled the call (the ino or name is ours). */
bool ctl_lookup(struct vfs *v, fuse_req_t req, fuse_ino_t parent, const char *name);
bool ctl_getattr(struct vfs *v, fuse_req_t req, fuse_ino_t ino);
bool ctl_open(struct vfs *v, fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
bool ctl_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
bool ctl_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
/* Frees a snapshot left in v->snaps at exit. */
void ctl_free_snap(void *s);
/* Frees a listing left in v->dirs at exit. */
void vfs_free_dirbuf(void *d);
/* True when a change to (parent, name) must be refused with EPERM. */
bool ctl_protected(fuse_ino_t parent, const char *name);
/* Waits up to op_timeout for every unacknowledged write. */
void fh_drain_all(struct vfs *v);
/* Frees every handle left (the pool is stopped: nothing references them). */
void fh_free_all(struct vfs *v);

/* ---- operation handlers ---- */
void vfs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name);
void vfs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup);
void vfs_forget_multi(fuse_req_t req, size_t count,
		      struct fuse_forget_data *forgets);
void vfs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void vfs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		 int to_set, struct fuse_file_info *fi);
void vfs_readlink(fuse_req_t req, fuse_ino_t ino);
void vfs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
	       mode_t mode);
void vfs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name);
void vfs_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name);
void vfs_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		 const char *name);
void vfs_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		fuse_ino_t newparent, const char *newname, unsigned int flags);
void vfs_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
	      const char *newname);
void vfs_statfs(fuse_req_t req, fuse_ino_t ino);
void vfs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void vfs_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		mode_t mode, struct fuse_file_info *fi);
void vfs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
	      struct fuse_file_info *fi);
void vfs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
	       off_t off, struct fuse_file_info *fi);
void vfs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void vfs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void vfs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
	       struct fuse_file_info *fi);
void vfs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void vfs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		 struct fuse_file_info *fi);
void vfs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		     struct fuse_file_info *fi);
void vfs_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);

#endif
