/*
 * vfs: the filesystem object, the op helpers every handler uses, attribute
 * mapping, the sweeper thread, and the low-level ops table. The handlers
 * themselves live in ops_meta.c (names and attributes), ops_file.c (file
 * handles, reads and write-behind) and ops_dir.c (directory listings).
 */
#include "vfs.h"
#include "vfs_int.h"

#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bdi.h"
#include "clock.h"
#include "handles.h"
#include "ksvalid.h"
#include "moving.h"
#include "log.h"
#include "takeover.h"

/* ---- ops ---------------------------------------------------------------- */

struct op *op_new(struct vfs *v, fuse_req_t req, const char *name)
{
	struct op *op = calloc(1, sizeof(*op));

	if (!op) {
		if (req)
			fuse_reply_err(req, ENOMEM);
		return NULL;
	}
	op->v = v;
	op->req = req;
	op->name = name;
	op->rq.conn_idx = -1;
	op->start_ns = clock_mono_ns();
	op->rq.deadline = op->start_ns + v->op_timeout_ns;
	if (req) {
		op->resent = takeover_call().resent;
		pthread_mutex_lock(&v->lock);
		op->live_prev = v->live_tail;
		if (v->live_tail)
			v->live_tail->live_next = op;
		else
			v->live_head = op;
		v->live_tail = op;
		v->live_count++;
		v->calls_started++;
		op->live = true;
		pthread_mutex_unlock(&v->lock);
	}
	return op;
}

/* Takes a call off the live list and counts it in the metrics. */
static void op_retire(struct op *op)
{
	struct vfs *v = op->v;

	if (!op->live)
		return;
	op->live = false;
	pthread_mutex_lock(&v->lock);
	if (op->live_prev)
		op->live_prev->live_next = op->live_next;
	else
		v->live_head = op->live_next;
	if (op->live_next)
		op->live_next->live_prev = op->live_prev;
	else
		v->live_tail = op->live_prev;
	v->live_count--;
	pthread_mutex_unlock(&v->lock);
	op->live_prev = op->live_next = NULL;
	if (v->ctl)
		control_record_call(v->ctl, op->name,
				    (double)(clock_mono_ns() - op->start_ns) / 1e9,
				    op->result);
}

void op_free(struct op *op)
{
	if (!op)
		return;
	/* After the node table took its result: a reopen waiting for it
	 * goes again under the new name. */
	moving_end(op);
	op_retire(op);
	hidden_intent_drop(op);
	buf_release(&op->rq.pkt);
	free(op->path);
	free(op->path2);
	free(op->leaf);
	free(op->leaf2);
	free(op->data);
	free(op->moved);
	free(op);
}

static void op_done(struct sreq *rq, const struct sftp_reply *r, int err)
{
	struct op *op = (struct op *)rq;

	op->step(op, r, err);
}

void op_send(struct op *op, op_step_fn step, bool idempotent)
{
	op->step = step;
	op->rq.done = op_done;
	op->rq.idempotent = idempotent;
	op->rq.conn_idx = -1;
	op->rq.type = op->rq.pkt.len > 4 ? op->rq.pkt.d[4] : 0;
	pool_submit(op->v->pool, &op->rq);
}

void op_send_pair(struct op *op, op_step_fn step, bool idempotent,
		  struct op *second, op_step_fn second_step)
{
	op->step = step;
	op->rq.done = op_done;
	op->rq.idempotent = idempotent;
	op->rq.conn_idx = -1;
	op->rq.type = op->rq.pkt.len > 4 ? op->rq.pkt.d[4] : 0;
	second->step = second_step;
	second->rq.done = op_done;
	second->rq.idempotent = false;
	second->rq.conn_idx = -1;
	second->rq.type = second->rq.pkt.len > 4 ? second->rq.pkt.d[4] : 0;
	pool_submit_pair(op->v->pool, &op->rq, &second->rq);
}

void op_send_on(struct op *op, op_step_fn step, int conn_idx, uint64_t conn_gen)
{
	op->step = step;
	op->rq.done = op_done;
	op->rq.idempotent = false;
	op->rq.conn_idx = conn_idx;
	op->rq.conn_gen = conn_gen;
	op->rq.type = op->rq.pkt.len > 4 ? op->rq.pkt.d[4] : 0;
	pool_submit(op->v->pool, &op->rq);
}

int op_transport_errno(int err)
{
	/* Never ENOTCONN: a mount that says "not connected" is the stale
	 * mount this project exists to prevent. */
	return err == -EAGAIN ? EAGAIN : EIO;
}

int reply_errno(const struct sftp_reply *r)
{
	int e;

	if (r->type != SSH_FXP_STATUS)
		return EIO;
	e = sftp_status_errno(r->u.status.code);
	return e ? e : EIO;
}

void op_log_error(struct op *op, int errnum, const char *cause)
{
	op->logged = true;
	log_warn("%s '%s' failed: %s (errno %d, cause %s)", op->name,
		 op->path ? op->path : "?", strerror(errnum), errnum, cause);
	if (op->v->ctl)
		control_event_error(op->v->ctl, op->name, op->path ? op->path : "",
				    errnum, cause);
}

void op_note_error(struct op *op, int errnum)
{
	if (op->req && !op->logged && (errnum == EIO || errnum == EAGAIN))
		op_log_error(op, errnum, errnum == EAGAIN ? "transport" : "server");
}

void op_fail(struct op *op, int errnum)
{
	op_note_error(op, errnum);
	if (op->req)
		fuse_reply_err(op->req, errnum);
	op->result = errnum;
	op_free(op);
}

static void stat_path_done(struct op *op, const struct sftp_reply *r, int err)
{
	if (err == -EHOSTDOWN)
		op->then(op, NULL, EHOSTDOWN);
	else if (err)
		op->then(op, NULL, op_transport_errno(err));
	else if (r->type == SSH_FXP_ATTRS)
		op->then(op, &r->u.attrs, 0);
	else
		op->then(op, NULL, reply_errno(r));
}

void stat_path(struct op *op, const char *path,
	       void (*then)(struct op *, const struct sftp_attrs *, int))
{
	int rc;

	op->then = then;
	buf_reset(&op->rq.pkt);
	if ((rc = sftp_enc_path(&op->rq.pkt, SSH_FXP_LSTAT, 0, path)) < 0) {
		then(op, NULL, rc == BUF_E_TOOBIG ? ENAMETOOLONG : ENOMEM);
		return;
	}
	op_send(op, stat_path_done, true);
}

void vfs_adjust_size(struct vfs *v, uint64_t ino, struct stat *st)
{
	uint64_t end;

	if (S_ISREG(st->st_mode) && nodes_end_get(v->nodes, ino, &end) &&
	    (off_t)end > st->st_size) {
		st->st_size = (off_t)end;
		st->st_blocks = (blkcnt_t)((end + 511) / 512);
	}
}

/* ---- attributes --------------------------------------------------------- */

/* Hard links made through the mount (nodes_twins) a hidden node's nlink
 * looks at. */
#define NLINK_TWINS_MAX 16u

/*
 * A hidden node lost its name, but the file may still have another: a
 * twin (a hard link made through the mount) that is named and not hidden
 * itself. Then fstat shows nlink 1, as a local disk (nlink 0 reads as
 * "deleted" to tail -F and log shippers).
 */
static bool still_named_elsewhere(struct vfs *v, uint64_t ino)
{
	uint64_t ids[NLINK_TWINS_MAX];
	size_t n = nodes_twins(v->nodes, ino, ids, NLINK_TWINS_MAX);

	for (size_t i = 0; i < n; i++) {
		char *path;

		if (ids[i] == ino || nodes_is_hidden(v->nodes, ids[i]))
			continue;
		path = nodes_path(v->nodes, ids[i]);
		free(path);
		if (path)
			return true;
	}
	return false;
}

void vfs_attr_to_stat(struct vfs *v, const struct sftp_attrs *a, uint64_t ino,
		      struct stat *st)
{
	const struct steadyfs_opts *o = v->o;

	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_nlink = 1;
	st->st_blksize = 4096;
	if (a->flags & SSH_FILEXFER_ATTR_SIZE) {
		st->st_size = (off_t)a->size;
		st->st_blocks = (blkcnt_t)((a->size + 511) / 512);
	}
	if (a->flags & SSH_FILEXFER_ATTR_PERMISSIONS)
		st->st_mode = a->perm;
	else
		st->st_mode = S_IFREG | 0644;
	if (S_ISDIR(st->st_mode))
		st->st_nlink = 2;
	else if (nodes_is_hidden(v->nodes, ino) && !still_named_elsewhere(v, ino))
		st->st_nlink = 0;  /* unlinked while open (hidden.c) */
	if (a->flags & SSH_FILEXFER_ATTR_UIDGID) {
		st->st_uid = a->uid;
		st->st_gid = a->gid;
		if (o->idmap_user && a->uid == v->remote_uid)
			st->st_uid = getuid();
		if (o->idmap_user && a->gid == v->remote_gid)
			st->st_gid = getgid();
	}
	if (o->uid_set)
		st->st_uid = o->uid;
	if (o->gid_set)
		st->st_gid = o->gid;
	if (o->umask_set)
		st->st_mode &= ~(o->umask & 07777);
	if (a->flags & SSH_FILEXFER_ATTR_ACMODTIME) {
		st->st_atime = a->atime;
		st->st_mtime = a->mtime;
		st->st_ctime = a->mtime;
	}
}

void vfs_fill_entry(struct vfs *v, struct fuse_entry_param *e, uint64_t ino,
		    const struct stat *st)
{
	memset(e, 0, sizeof(*e));
	e->ino = ino;
	e->attr = *st;
	e->attr.st_ino = ino;
	e->attr_timeout = v->o->attr_timeout;
	e->entry_timeout = v->o->entry_timeout;
}

void vfs_reply_entry(struct op *op, const struct sftp_attrs *a)
{
	struct vfs *v = op->v;
	struct fuse_entry_param e;
	struct stat st;
	uint64_t id = nodes_ref(v->nodes, op->parent, op->leaf);

	if (!id) {
		op_fail(op, ENOMEM);
		return;
	}
	vfs_attr_to_stat(v, a, id, &st);
	vfs_adjust_size(v, id, &st);
	nodes_set_attr(v->nodes, id, &st);
	vfs_fill_entry(v, &e, id, &st);
	if (fuse_reply_entry(op->req, &e) != 0)
		nodes_forget(v->nodes, id, 1);
	op->req = NULL;
	op_free(op);
}

/* Most other names of one file made stale per change; more are left to
 * their attr_timeout. */
#define LINK_PEERS_MAX 16

void vfs_links_changed(struct vfs *v, uint64_t ino)
{
	uint64_t ids[LINK_PEERS_MAX];
	size_t n = nodes_link_peers(v->nodes, ino, ids, LINK_PEERS_MAX);

	for (size_t i = 0; i < n && v->se; i++) {
		/* Attributes only (a negative offset): the kernel takes no
		 * page lock for that, so it is safe from a session thread
		 * while calls on that inode wait. -ENOENT: the kernel holds
		 * no inode for that name, nothing to refresh. */
		int rc = fuse_lowlevel_notify_inval_inode(v->se, ids[i], -1, 0);

		if (rc < 0 && rc != -ENOENT)
			log_warn("refreshing the attributes of another name of a changed file failed: %s",
				 strerror(-rc));
	}
}

/* The server's extensions minus those refused at use; false when no
 * session has connected yet (nothing is known). */
static bool known_exts(struct vfs *v, uint32_t *exts)
{
	struct conn_server s;
	uint32_t refused;

	pool_server(v->pool, &s);
	pthread_mutex_lock(&v->lock);
	refused = v->refused_exts;
	pthread_mutex_unlock(&v->lock);
	*exts = s.exts & ~refused;
	return s.max_packet != 0;
}

uint32_t vfs_exts(struct vfs *v)
{
	uint32_t exts;

	known_exts(v, &exts);
	return exts;
}

bool vfs_ext_refused(struct vfs *v, uint32_t ext, const struct sftp_reply *r)
{
	/* Only "unsupported" says the extension is missing. Any other
	 * refusal, a permission denied included, is about this call (a link
	 * into a folder the server may not write): its errno is the answer. */
	if (r->type != SSH_FXP_STATUS ||
	    r->u.status.code != SSH_FX_OP_UNSUPPORTED)
		return false;
	pthread_mutex_lock(&v->lock);
	v->refused_exts |= ext;
	pthread_mutex_unlock(&v->lock);
	vfs_missing_ext(v, ext);
	return true;
}

bool vfs_missing_ext(struct vfs *v, uint32_t ext)
{
	uint32_t exts;
	bool log_it;

	/* Nothing is known before a session connected (a daemon restarted
	 * during an outage): use the extension; a refusal is handled where
	 * it is used. */
	if (!known_exts(v, &exts) || (exts & ext))
		return false;
	pthread_mutex_lock(&v->lock);
	log_it = !(v->missing_exts_logged & ext);
	v->missing_exts_logged |= ext;
	pthread_mutex_unlock(&v->lock);
	if (log_it) {
		log_warn("server lacks %s: using the documented fallback",
			 sftp_ext_name(ext));
		control_note_missing_ext(v->ctl, ext);
	}
	return true;
}

/* ---- operator state ----------------------------------------------------- */

static void gauges(void *arg, struct control_gauges *g)
{
	struct vfs *v = arg;
	uint64_t now = clock_mono_ns();

	pthread_mutex_lock(&v->lock);
	g->unacked_bytes = __atomic_load_n(&v->unacked_bytes, __ATOMIC_RELAXED);
	g->calls_inflight = v->live_count;
	g->oldest_call_age = v->live_head ?
		(double)(now - v->live_head->start_ns) / 1e9 : 0;
	pthread_mutex_unlock(&v->lock);
	g->oldest_unacked_age = fh_oldest_unacked(v);
}

static void on_state(void *arg, enum pool_state from, enum pool_state to)
{
	struct vfs *v = arg;

	control_event_state(v->ctl, pool_state_name(from), pool_state_name(to));
}

static void on_conn_event(void *arg, int idx, const char *what, const char *detail)
{
	struct vfs *v = arg;

	control_event_conn(v->ctl, idx, what, detail);
}

/* ---- lifecycle ---------------------------------------------------------- */

/* The kernel's read-ahead (bdi.h): raised before the INIT reply, which
 * then answers the same size (the kernel keeps the smaller of the two).
 * Without root it stays at the kernel's 128 KiB (256 after
 * fadvise(SEQUENTIAL)) and steadyfs's own read-ahead does the rest. */
static void kernel_read_ahead(struct vfs *v, struct fuse_conn_info *conn)
{
	char err[256];

	if (bdi_set_read_ahead(v->mountpoint, BDI_READ_AHEAD_KB, err, sizeof(err)) < 0) {
		log_info("kernel read-ahead stays at %u KiB: %s",
			 conn->max_readahead / 1024, err);
		return;
	}
	conn->max_readahead = BDI_READ_AHEAD_KB * 1024;
}

static void vfs_init(void *userdata, struct fuse_conn_info *conn)
{
	struct vfs *v = userdata;

	/* SFTP v3 times are whole seconds. */
	conn->time_gran = 1000000000;
	if (v->o->max_write && v->o->max_write < conn->max_write)
		conn->max_write = (unsigned)v->o->max_write;
	/* Write-back caching lets the kernel own O_APPEND; appends must go
	 * through our own end offset instead (sshfs dropped it for that). */
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	if (conn->capable & FUSE_CAP_ASYNC_READ)
		conn->want |= FUSE_CAP_ASYNC_READ;
	if (!v->o->auto_cache)
		conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
	kernel_read_ahead(v, conn);
	/* Every listing carries its entries' attributes (ops_dir.c), not
	 * only the first batch of one: the lstat()s after a listing then
	 * need no LOOKUP. */
	if (conn->capable & FUSE_CAP_READDIRPLUS) {
		conn->want |= FUSE_CAP_READDIRPLUS;
		conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
	}
}

/*
 * Hands the pages of freed memory back to the kernel once the mount has
 * had no call for a whole tick after being used. main.c keeps freed
 * memory for reuse (page faults cost a third of a stream's CPU), and
 * each stream, write window and listing leaves its buffers there: the
 * next file's then land elsewhere, so a mount that read one file after
 * another held the high-water of all of them. While calls keep coming
 * nothing is trimmed, so a stream never pays for it.
 */
struct quiet {
	uint64_t seen;   /* calls_started at the last tick */
	bool used;       /* calls since the last trim */
};

static void trim_when_quiet(struct vfs *v, struct quiet *q)
{
	uint64_t started;
	unsigned live;

	pthread_mutex_lock(&v->lock);
	started = v->calls_started;
	live = v->live_count;
	pthread_mutex_unlock(&v->lock);
	if (started != q->seen) {
		q->seen = started;
		q->used = true;
	} else if (q->used && live == 0) {
		malloc_trim(0);
		q->used = false;
	}
}

static void *sweeper(void *arg)
{
	struct vfs *v = arg;
	struct quiet quiet = { 0, false };
	unsigned ticks = 0;

	for (;;) {
		bool stop;

		pthread_mutex_lock(&v->lock);
		stop = v->stop;
		pthread_mutex_unlock(&v->lock);
		if (stop)
			break;
		fh_sweep(v, clock_mono_ns());
		/* Listing attributes unused for a minute are dropped. */
		if (++ticks % 200 == 0)
			nodes_prune(v->nodes, 60 * NS_PER_SEC);
		if (ticks % 20 == 0)
			trim_when_quiet(v, &quiet);
		usleep(50 * 1000);
	}
	return NULL;
}

struct vfs *vfs_new(const struct steadyfs_opts *o, struct pool *p,
		    const char *mountpoint)
{
	struct vfs *v = calloc(1, sizeof(*v));
	struct pool_hooks hooks = { on_state, on_conn_event, NULL };
	struct conn_server sv;

	if (!v)
		return NULL;
	if (!(v->ctl = control_new(o, p, mountpoint))) {
		free(v);
		return NULL;
	}
	hooks.arg = v;
	pool_set_hooks(p, &hooks);
	control_set_gauges(v->ctl, gauges, v);
	v->o = o;
	v->pool = p;
	v->mountpoint = mountpoint ? strdup(mountpoint) : NULL;
	v->op_timeout_ns = clock_s_to_ns(o->op_timeout);
	v->nodes = nodes_new(o->remote_dir);
	v->dirs = handles_new();
	v->snaps = handles_new();
	if (!v->nodes || !v->dirs || !v->snaps || (mountpoint && !v->mountpoint)) {
		free(v->mountpoint);
		nodes_free(v->nodes);
		handles_free(v->dirs, NULL);
		handles_free(v->snaps, NULL);
		control_free(v->ctl);
		free(v);
		return NULL;
	}
	v->remote_uid = (uid_t)-1;
	v->remote_gid = (gid_t)-1;
	pthread_mutex_init(&v->lock, NULL);
	pthread_mutex_init(&v->hidden_lock, NULL);
	v->node_closing = fh_node_closing;
	/* Say once, at mount, which extensions the server lacks (a daemon
	 * restarted after a crash has not connected yet: it learns them at
	 * use, as the first daemon already said). */
	pool_server(p, &sv);
	for (uint32_t bit = SFTP_EXT_POSIX_RENAME; sv.max_packet && bit <= SFTP_EXT_LSETSTAT;
	     bit <<= 1)
		vfs_missing_ext(v, bit);
	return v;
}

int vfs_start(struct vfs *v, struct fuse_session *se)
{
	char err[512];

	v->se = se;
	if (control_start(v->ctl, err, sizeof(err)) < 0)
		log_warn("%s", err);
	if (pthread_create(&v->sweeper, NULL, sweeper, v) != 0)
		return -1;
	v->sweeper_started = true;
	return 0;
}

void vfs_stop(struct vfs *v)
{
	if (!v)
		return;
	fh_drain_all(v);
	pthread_mutex_lock(&v->lock);
	v->stop = true;
	pthread_mutex_unlock(&v->lock);
	if (v->sweeper_started) {
		pthread_join(v->sweeper, NULL);
		v->sweeper_started = false;
	}
}

bool op_maybe_done(const struct op *op, const struct sftp_reply *r, int err)
{
	if (err == -ECONNRESET)
		return true;
	return !err && op->resent &&
	       !(r->type == SSH_FXP_STATUS && r->u.status.code == SSH_FX_OK);
}

/* Says what the validation of the take-over state dropped: one log line,
 * one event; the mount goes on with the rest. */
static void report_invalid_state(struct vfs *v, const struct ks_report *rep)
{
	log_err("take-over state damaged: %u problems; dropped %u node, %u handle (%llu unacknowledged bytes), %u event and %u in-flight records, reset %u header fields; first: %s",
		ks_report_total(rep), rep->nodes, rep->handles,
		(unsigned long long)rep->lost_bytes, rep->events, rep->inflight,
		rep->header, rep->first);
	control_event_invalid_state(v->ctl, rep);
}

int vfs_adopt(struct vfs *v, struct takeover *t)
{
	char reason[KS_REASON_MAX + 1];
	struct ks_report rep;
	uint64_t gen = takeover_generation(t);

	v->tk = t;
	v->ks = takeover_state(t);
	v->fh_cap = ks_fh_capacity(v->ks);
	if (!(v->fh_slots = calloc((size_t)v->fh_cap, sizeof(*v->fh_slots))))
		return -1;
	/* Before anything is restored: a record that would crash or hang
	 * this daemon would crash or hang every later one too. */
	ks_validate(v->ks, v->o->remote_dir, &rep);
	/* Then the earlier daemons' events come before any of ours. */
	control_set_daemon(v->ctl, v->ks, gen);
	if (ks_report_total(&rep))
		report_invalid_state(v, &rep);
	nodes_adopt(v->nodes, v->ks);
	handles_set_generation(v->dirs, gen);
	handles_set_generation(v->snaps, gen);
	if (fh_restore_all(v) < 0)
		return -1;
	/* Hidden files a dead daemon was moving: before any call is resent. */
	hidden_settle_restored(v);
	/* Hidden files whose last handle went with the previous daemon. */
	fh_release_hidden(v);
	if (takeover_mode(t) != TK_START) {
		ks_last_reason(v->ks, reason, sizeof(reason));
		log_info("daemon generation %llu continues the mount (%s)",
			 (unsigned long long)gen, reason);
		control_event_restart(v->ctl, gen, reason);
	}
	return 0;
}

struct takeover *vfs_takeover(void *userdata)
{
	return ((struct vfs *)userdata)->tk;
}

void vfs_free(struct vfs *v)
{
	if (!v)
		return;
	vfs_stop(v);
	/* The pool is stopped: reopens still parked are never sent. */
	moving_drop_all(v);
	fh_free_all(v);
	pool_set_hooks(v->pool, &(struct pool_hooks){ 0 });
	control_free(v->ctl);
	nodes_free(v->nodes);
	handles_free(v->dirs, vfs_free_dirbuf);
	handles_free(v->snaps, ctl_free_snap);
	free(v->fh_slots);
	free(v->mountpoint);
	pthread_mutex_destroy(&v->lock);
	pthread_mutex_destroy(&v->hidden_lock);
	free(v);
}

static const struct fuse_lowlevel_ops ops = {
	.init = vfs_init,
	.lookup = vfs_lookup,
	.forget = vfs_forget,
	.forget_multi = vfs_forget_multi,
	.getattr = vfs_getattr,
	.setattr = vfs_setattr,
	.readlink = vfs_readlink,
	.mkdir = vfs_mkdir,
	.unlink = vfs_unlink,
	.rmdir = vfs_rmdir,
	.symlink = vfs_symlink,
	.rename = vfs_rename,
	.link = vfs_link,
	.open = vfs_open,
	.create = vfs_create,
	.read = vfs_read,
	.write = vfs_write,
	.flush = vfs_flush,
	.release = vfs_release,
	.fsync = vfs_fsync,
	.opendir = vfs_opendir,
	.readdir = vfs_readdir,
	.readdirplus = vfs_readdirplus,
	.releasedir = vfs_releasedir,
	.statfs = vfs_statfs,
};

const struct fuse_lowlevel_ops *vfs_ops(void)
{
	return &ops;
}
