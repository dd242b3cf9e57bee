/*
 * vfs: the filesystem object and its lifecycle: construction, INIT, the
 * sweeper thread, the take-over of a previous daemon's state
 * (vfs_adopt), stop and free, and the low-level ops table. The per-call
 * helpers are in op.c, attribute mapping and extensions in vfs_attr.c;
 * the handlers in ops_meta.c, ops_names.c, ops_rename.c (names and
 * attributes), ops_file.c and fh*.c (file handles, reads and
 * write-behind) and ops_dir.c (directory listings).
 */

#include "vfs.h"
#include "vfs_int.h"

#include <errno.h>
#include <malloc.h>
#include <stddef.h>
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
	v->hidden_hooks = (struct hidden_hooks){ .node_open = fh_node_open,
						 .node_closing = fh_node_closing };
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

/* takeover_attach's contract: the session's userdata begins with the
 * takeover's pointer. */
_Static_assert(offsetof(struct vfs, tk) == 0, "struct vfs must begin with tk");

void vfs_free(struct vfs *v)
{
	if (!v)
		return;
	vfs_stop(v);
	/* The pool is stopped: reopens still parked are never sent (their
	 * handles go with fh_free_all). */
	for (struct op *rop = moving_take_all(v), *next; rop; rop = next) {
		next = rop->next;
		op_free(rop);
	}
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
