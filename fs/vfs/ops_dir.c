/*
 * ops_dir: directory listings. opendir reads the whole listing (OPENDIR,
 * READDIR until EOF, CLOSE) into a dirbuf before it replies, so readdir
 * is served from memory at any offset and a listing is one consistent
 * snapshot. A dirbuf holds names and modes only: about 40 bytes per entry
 * plus the name, so a 100k-entry folder costs a few MiB while open.
 *
 * A listing opened under a daemon that has since died is read again from
 * the server at the first readdir of the new daemon (same offsets as long
 * as the folder did not change meanwhile).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "handles.h"
#include "log.h"
#include "names.h"
#include "vfs_int.h"

/* op->flags of a listing made for a readdir on another daemon's handle. */
#define LIST_FOR_READDIR 1u
/* ... and that readdir is a READDIRPLUS (its reply has the other format). */
#define LIST_PLUS 2u

/* READDIRs in flight per listing: LANES_START at first, one more per
 * full batch up to LANES_MAX (sshfs grows 2 -> 32 the same way). A lane
 * past the end costs one EOF reply. */
#define LANES_START 4u
#define LANES_MAX 32u
/* readdirplus hands the kernel a reference per entry it gives attributes
 * for (a node and a take-over slot each, until the kernel forgets it):
 * only for folders up to this size; bigger ones get plain entries and
 * their lstat()s are answered from the listing's attributes by LOOKUP. */
#define PLUS_MAX_ENTRIES 16384u

struct dirent_s {
	char *name;
	mode_t mode;
};

struct dirbuf {
	struct dirent_s *e;
	size_t n, cap;
	uint8_t h[SFTP_MAX_HANDLE];
	size_t hlen;
	int conn_idx;
	uint64_t gen;
	uint64_t ino;              /* the folder listed */
	/* While listing: the lanes, under lock (their replies come on the
	 * session's thread, a timeout on the pool's timer thread). */
	pthread_mutex_t lock;
	struct op *owner;          /* the opendir (or readdir) call */
	unsigned lanes, lanes_started;
	bool eof, stale;
	bool seen_dot, seen_dotdot;  /* the server's own "." and ".." */
	int err;                   /* first failure of a lane */
};

static void dirbuf_free(struct dirbuf *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->n; i++)
		free(d->e[i].name);
	free(d->e);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

static struct dirbuf *dirbuf_new(void)
{
	struct dirbuf *d = calloc(1, sizeof(*d));

	if (d && pthread_mutex_init(&d->lock, NULL) != 0) {
		free(d);
		return NULL;
	}
	return d;
}

static int dirbuf_add(struct dirbuf *d, const uint8_t *name, size_t len, mode_t mode)
{
	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 64;
		struct dirent_s *e = realloc(d->e, cap * sizeof(*e));

		if (!e)
			return -1;
		d->e = e;
		d->cap = cap;
	}
	if (!(d->e[d->n].name = strndup((const char *)name, len)))
		return -1;
	d->e[d->n++].mode = mode;
	return 0;
}

static struct dirbuf *dir_of(struct op *op)
{
	return (struct dirbuf *)op->data;
}

static void reply_entries(fuse_req_t req, const struct dirbuf *d, size_t size,
			  off_t off);
static void reply_entries_plus(struct vfs *v, fuse_req_t req, const struct dirbuf *d,
			       size_t size, off_t off);
static void opendir_done(struct op *op, const struct sftp_reply *r, int err);

#ifndef FUSE_UNKNOWN_INO
#define FUSE_UNKNOWN_INO 0xffffffff
#endif

/* Sends the next READDIR (or CLOSE when done) bound to the session. */
static void send_bound(struct op *op, uint8_t type, op_step_fn step)
{
	struct dirbuf *d = dir_of(op);

	buf_reset(&op->rq.pkt);
	if (sftp_enc_handle(&op->rq.pkt, type, 0, d->h, d->hlen) < 0) {
		op_fail(op, ENOMEM);
		return;
	}
	op_send_on(op, step, d->conn_idx, d->gen);
}

static void closedir_done(struct op *cop, const struct sftp_reply *r, int err)
{
	op_free(cop);
}

/* The listing is complete: its CLOSE need not hold up the reply (one
 * round trip less per listing). A failed CLOSE loses nothing; a handle
 * left open closes with its session. */
static void close_in_background(struct op *op)
{
	struct dirbuf *d = dir_of(op);
	struct op *cop = op_new(op->v, NULL, "closedir");

	if (!cop)
		return;
	if (sftp_enc_handle(&cop->rq.pkt, SSH_FXP_CLOSE, 0, d->h, d->hlen) < 0) {
		op_free(cop);
		return;
	}
	op_send_on(cop, closedir_done, d->conn_idx, d->gen);
}

static void finish_opendir(struct op *op)
{
	struct dirbuf *d = dir_of(op);

	/* The root lists .control so operators can find it. */
	if (op->ino == NODE_ROOT &&
	    dirbuf_add(d, (const uint8_t *)CTL_NAME, strlen(CTL_NAME), S_IFDIR) < 0) {
		dirbuf_free(d);
		op->data = NULL;
		op_fail(op, ENOMEM);
		return;
	}
	if (op->flags & LIST_FOR_READDIR) {
		if (handles_put_at(op->v->dirs, op->fi.fh, d) < 0) {
			dirbuf_free(d);
			d = handles_get(op->v->dirs, op->fi.fh);
		}
		if (d && (op->flags & LIST_PLUS))
			reply_entries_plus(op->v, op->req, d, op->size, (off_t)op->off);
		else if (d)
			reply_entries(op->req, d, op->size, (off_t)op->off);
		else
			fuse_reply_err(op->req, EIO);
	} else if (!(op->fi.fh = handles_add(op->v->dirs, d))) {
		dirbuf_free(d);
		fuse_reply_err(op->req, ENOMEM);
	} else {
		op->fi.cache_readdir = op->v->o->kernel_cache;
		if (fuse_reply_open(op->req, &op->fi) != 0)
			dirbuf_free(handles_take(op->v->dirs, op->fi.fh));
	}
	op->data = NULL;
	op->req = NULL;
	op_free(op);
}

static void close_step(struct op *op, const struct sftp_reply *r, int err)
{
	/* A failed CLOSE loses nothing: the listing is complete. */
	if (op->err) {
		dirbuf_free(dir_of(op));
		op->data = NULL;
		op_fail(op, op->err);
		return;
	}
	finish_opendir(op);
}

/* Keeps the attributes READDIR returned, so the lookups of `ls -l`
 * that follow need no round trip each (as sshfs does). */
static void prime(struct op *op, const struct sftp_name *n)
{
	const uint32_t want = SSH_FILEXFER_ATTR_SIZE | SSH_FILEXFER_ATTR_PERMISSIONS |
		SSH_FILEXFER_ATTR_ACMODTIME;
	char name[256];
	struct stat st;

	if (!op->ino || (n->attrs.flags & want) != want || n->namelen >= sizeof(name) ||
	    (n->namelen <= 2 && n->name[0] == '.' && (n->namelen == 1 || n->name[1] == '.')))
		return;
	memcpy(name, n->name, n->namelen);
	name[n->namelen] = 0;
	if (memchr(name, '/', n->namelen))
		return;
	vfs_attr_to_stat(op->v, &n->attrs, 0, &st);
	nodes_prime(op->v->nodes, op->ino, name, &st);
}

static void shadowed(struct op *op)
{
	struct vfs *v = op->v;
	bool first;

	pthread_mutex_lock(&v->lock);
	first = !v->shadow_reported;
	v->shadow_reported = true;
	pthread_mutex_unlock(&v->lock);
	if (first) {
		char *p = nodes_child_path(v->nodes, NODE_ROOT, CTL_NAME);

		log_warn("remote '%s' is hidden by the virtual .control directory",
			 p ? p : CTL_NAME);
		control_event_shadowed(v->ctl, p ? p : CTL_NAME);
		free(p);
	}
}

static void lane_step(struct op *lane, const struct sftp_reply *r, int err);
static void lane_end(struct dirbuf *d, int err);

/* Sends one READDIR on `lane` (NULL: a new lane). False when it could
 * not be sent (no memory); the lane is then gone. */
static bool lane_send(struct dirbuf *d, struct op *lane)
{
	struct vfs *v = d->owner->v;

	if (!lane && !(lane = op_new(v, NULL, "readdir")))
		return false;
	lane->data = (char *)d;
	lane->ino = d->owner->ino;
	/* Each READDIR gets op_timeout of its own: a listing of 100k
	 * names is many round trips, each of which must make progress. */
	lane->rq.deadline = clock_mono_ns() + v->op_timeout_ns;
	buf_reset(&lane->rq.pkt);
	if (sftp_enc_handle(&lane->rq.pkt, SSH_FXP_READDIR, 0, d->h, d->hlen) < 0) {
		lane->data = NULL;
		op_free(lane);
		return false;
	}
	op_send_on(lane, lane_step, d->conn_idx, d->gen);
	return true;
}

static void start_lanes(struct dirbuf *d)
{
	pthread_mutex_lock(&d->lock);
	d->lanes = d->lanes_started = LANES_START;
	d->eof = d->stale = false;
	d->seen_dot = d->seen_dotdot = false;
	d->err = 0;
	pthread_mutex_unlock(&d->lock);
	/* Every lane is counted before the first is sent, so the count
	 * cannot reach zero while this loop still runs. */
	for (unsigned i = 0; i < LANES_START; i++)
		if (!lane_send(d, NULL))
			lane_end(d, ENOMEM);
}
/* The last lane has ended: the listing is complete, failed, or starts
 * over (the handle died with its session). */
static void listing_done(struct dirbuf *d)
{
	struct op *op = d->owner;

	if (d->stale && op->stage++ < 3) {
		for (size_t i = 0; i < d->n; i++)
			free(d->e[i].name);
		d->n = 0;
		buf_reset(&op->rq.pkt);
		if (sftp_enc_path(&op->rq.pkt, SSH_FXP_OPENDIR, 0, op->path) == 0) {
			op_send(op, opendir_done, true);
			return;
		}
		d->err = ENOMEM;
	}
	if (d->stale || d->err < 0) {
		int e = d->err < 0 ? -d->err : EIO;

		op_log_error(op, e, "transport");
		dirbuf_free(d);
		op->data = NULL;
		op_fail(op, e);
		return;
	}
	if (d->err) {
		op->err = d->err;
		send_bound(op, SSH_FXP_CLOSE, close_step);
		return;
	}
	close_in_background(op);
	finish_opendir(op);
}

/* A lane stops (err: why, 0 at EOF); the last one finishes the listing. */
static void lane_end(struct dirbuf *d, int err)
{
	bool last;

	pthread_mutex_lock(&d->lock);
	if (err && !d->err)
		d->err = err;
	last = --d->lanes == 0;
	pthread_mutex_unlock(&d->lock);
	if (last)
		listing_done(d);
}

/* Up to 64 bytes of a server's name for a log line: printable ASCII as
 * it is, every other byte (control bytes, NUL, non-ASCII) as \xNN. */
static void escape_name(const uint8_t *p, size_t n, char *out, size_t outsz)
{
	size_t o = 0;

	for (size_t i = 0; i < n && i < 64 && o + 5 < outsz; i++) {
		if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\')
			out[o++] = (char)p[i];
		else
			o += (size_t)snprintf(out + o, outsz - o, "\\x%02x", p[i]);
	}
	if (n > 64 && o + 4 < outsz)
		o += (size_t)snprintf(out + o, outsz - o, "...");
	out[o] = 0;
}

enum report { REPORT_AGAIN, REPORT_FIRST, REPORT_FULL };

/* Whether (folder, name) was reported before. Past VFS_BAD_SEEN_MAX
 * distinct names, new ones are REPORT_FULL once, then REPORT_AGAIN. */
static enum report first_report(struct vfs *v, uint64_t folder,
				const uint8_t *p, size_t n)
{
	/* FNV-1a over the folder's id and the name. */
	uint64_t h = 1469598103934665603ull ^ folder;
	enum report r = REPORT_FIRST;

	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 1099511628211ull;
	pthread_mutex_lock(&v->lock);
	for (unsigned i = 0; i < v->bad_seen_n && r == REPORT_FIRST; i++)
		if (v->bad_seen[i] == h)
			r = REPORT_AGAIN;
	if (r == REPORT_FIRST && v->bad_seen_n < VFS_BAD_SEEN_MAX)
		v->bad_seen[v->bad_seen_n++] = h;
	else if (r == REPORT_FIRST)
		r = v->bad_seen_full ? REPORT_AGAIN : REPORT_FULL;
	if (r == REPORT_FULL)
		v->bad_seen_full = true;
	pthread_mutex_unlock(&v->lock);
	return r;
}

/* A listing entry no file can have: counted, and logged once per folder. */
static void bad_name(struct op *lane, const struct sftp_name *n)
{
	struct vfs *v = lane->v;
	char shown[64 * 4 + 8];
	char *folder;

	control_note_bad_name(v->ctl);
	switch (first_report(v, lane->ino, n->name, n->namelen)) {
	case REPORT_AGAIN:
		return;
	case REPORT_FULL:
		log_warn("more remote names that no file can have: counted in "
			 ".control/status, no longer logged one by one");
		return;
	case REPORT_FIRST:
		break;
	}
	escape_name(n->name, n->namelen, shown, sizeof(shown));
	folder = nodes_path(v->nodes, lane->ino);
	log_warn("listing '%s': skipped an entry named '%s' (%zu bytes): not a valid file name",
		 folder ? folder : "?", shown, n->namelen);
	free(folder);
}

/*
 * Whether a listing entry can be shown: "." and ".." once each (the
 * server's own), anything else only when it is one valid name (a '/'
 * inside makes the kernel fail the whole listing; a NUL would cut it
 * short into another name). Under d->lock.
 */
static bool entry_ok(struct op *lane, struct dirbuf *d, const struct sftp_name *n)
{
	const char *s = (const char *)n->name;

	if (n->namelen == 1 && s[0] == '.' && !d->seen_dot)
		return d->seen_dot = true;
	if (n->namelen == 2 && s[0] == '.' && s[1] == '.' && !d->seen_dotdot)
		return d->seen_dotdot = true;
	if (name_ok(s, n->namelen))
		return true;
	bad_name(lane, n);
	return false;
}

/* Adds a batch of names; false when out of memory. Under d->lock. */
static bool add_batch(struct op *lane, struct dirbuf *d, const struct sftp_reply *r)
{
	struct sftp_reply rr = *r;
	struct sftp_name n;

	while (sftp_name_next(&rr, &n) == 0) {
		if (!entry_ok(lane, d, &n))
			continue;
		/* Our .control hides a remote one at the root: say so once. */
		if (lane->ino == NODE_ROOT && n.namelen == strlen(CTL_NAME) &&
		    !memcmp(n.name, CTL_NAME, n.namelen)) {
			shadowed(lane);
			continue;
		}
		/* Unlinked open files (hidden.c) are no entries. */
		if (hidden_ours(lane->v, lane->ino, (const char *)n.name, n.namelen))
			continue;
		prime(lane, &n);
		if (dirbuf_add(d, n.name, n.namelen,
			       (n.attrs.flags & SSH_FILEXFER_ATTR_PERMISSIONS) ?
			       n.attrs.perm : 0) < 0)
			return false;
	}
	return true;
}

/*
 * One READDIR reply. A batch sends the lane's next READDIR (and opens one
 * more lane while below LANES_MAX); EOF or a failure ends the lane.
 * Failures are kept as errno (a server's answer) or -errno (transport),
 * -ESTALE meaning the session, and with it the handle, is gone.
 */
static void lane_step(struct op *lane, const struct sftp_reply *r, int err)
{
	struct dirbuf *d = (struct dirbuf *)lane->data;
	bool again = false, extra = false;
	int why = 0;

	pthread_mutex_lock(&d->lock);
	if (err == -ESTALE)
		d->stale = true;
	else if (err)
		why = -op_transport_errno(err);
	else if (r->type == SSH_FXP_STATUS && r->u.status.code == SSH_FX_EOF)
		d->eof = true;
	else if (r->type != SSH_FXP_NAME)
		why = op_reply_errno(r);
	else if (!add_batch(lane, d, r))
		why = ENOMEM;
	else if (!d->eof && !d->err && !d->stale) {
		again = true;
		if (d->lanes_started < LANES_MAX) {
			extra = true;
			d->lanes++;
			d->lanes_started++;
		}
	}
	pthread_mutex_unlock(&d->lock);
	if (extra && !lane_send(d, NULL))
		lane_end(d, ENOMEM);
	if (again) {
		/* A lane that could not be sent is freed by lane_send. */
		if (!lane_send(d, lane))
			lane_end(d, ENOMEM);
		return;
	}
	lane->data = NULL;
	op_free(lane);
	lane_end(d, why);
}

static void opendir_done(struct op *op, const struct sftp_reply *r, int err)
{
	struct dirbuf *d = dir_of(op);

	if (err) {
		int e = op_transport_errno(err);

		op_log_error(op, e, "transport");
		dirbuf_free(d);
		op->data = NULL;
		op_fail(op, e);
		return;
	}
	if (r->type != SSH_FXP_HANDLE || r->u.handle.len > SFTP_MAX_HANDLE) {
		dirbuf_free(d);
		op->data = NULL;
		op_fail(op, op_reply_errno(r));
		return;
	}
	memcpy(d->h, r->u.handle.h, r->u.handle.len);
	d->hlen = r->u.handle.len;
	d->conn_idx = op->rq.served_by;
	d->gen = op->rq.served_gen;
	d->owner = op;
	start_lanes(d);
}

static void start_listing(struct op *op, fuse_ino_t ino,
			  struct fuse_file_info *fi)
{
	struct vfs *v = op->v;
	struct dirbuf *d;
	int err = 0;

	op->fi = *fi;
	op->ino = ino;
	d = dirbuf_new();
	op->data = (char *)d;
	if (d)
		d->ino = ino;
	if (d && ino == CTL_DIR_INO) {
		for (int i = 0; control_files[i]; i++)
			if (dirbuf_add(d, (const uint8_t *)control_files[i],
				       strlen(control_files[i]), S_IFREG) < 0) {
				dirbuf_free(d);
				op->data = NULL;
				op_fail(op, ENOMEM);
				return;
			}
		op->ino = 0;
		finish_opendir(op);
		return;
	}
	if (!d || (err = nodes_path_get(v->nodes, ino, NULL, &op->path)) ||
	    sftp_enc_path(&op->rq.pkt, SSH_FXP_OPENDIR, 0, op->path) < 0) {
		dirbuf_free(d);
		op->data = NULL;
		op_fail(op, d && err ? err : ENOMEM);
		return;
	}
	op_send(op, opendir_done, true);
}

void vfs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct op *op = op_new(fuse_req_userdata(req), req, "opendir");

	if (op)
		start_listing(op, ino, fi);
}

static void reply_entries(fuse_req_t req, const struct dirbuf *d, size_t size,
			  off_t off)
{
	char *buf = malloc(size);
	size_t used = 0;

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	for (size_t i = (size_t)off; i < d->n; i++) {
		struct stat st = { .st_ino = FUSE_UNKNOWN_INO,
				   .st_mode = d->e[i].mode };
		size_t need = fuse_add_direntry(req, buf + used, size - used,
						d->e[i].name, &st, (off_t)(i + 1));

		if (need > size - used)
			break;
		used += need;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
}

static bool is_dot(const char *name)
{
	return name[0] == '.' && (!name[1] || (name[1] == '.' && !name[2]));
}

/*
 * One readdirplus entry: with the attributes the listing brought (still
 * within entry_timeout), the entry carries them and a reference the
 * kernel will forget later, so the lstat()s that follow a listing need
 * no LOOKUP at all. Others (".", "..", .control, names without fresh
 * attributes) go as plain entries (ino 0). Returns the bytes used, or
 * more than `room` when it did not fit (nothing added, nothing held);
 * *held is the node referenced, 0 for none.
 */
static size_t add_plus(struct vfs *v, fuse_req_t req, char *buf, size_t room,
		       const struct dirbuf *d, size_t i, uint64_t *held)
{
	const char *name = d->e[i].name;
	struct fuse_entry_param e = { .attr.st_ino = FUSE_UNKNOWN_INO,
				      .attr.st_mode = d->e[i].mode };
	size_t need = fuse_add_direntry_plus(req, NULL, 0, name, NULL, 0);
	struct stat st;
	uint64_t id;

	*held = 0;
	if (need > room)
		return need;
	if (d->n <= PLUS_MAX_ENTRIES && !is_dot(name) && !is_ctl_ino(d->ino) &&
	    (id = nodes_find(v->nodes, d->ino, name)) &&
	    nodes_get_fresh_attr(v->nodes, id, clock_s_to_ns(v->o->entry_timeout), &st)) {
		uint64_t got = nodes_ref(v->nodes, d->ino, name);

		if (got == id) {
			vfs_adjust_size(v, id, &st);
			vfs_fill_entry(v, &e, id, &st);
			*held = id;
		} else if (got) {
			nodes_forget(v->nodes, got, 1);
		}
	}
	return fuse_add_direntry_plus(req, buf, room, name, &e, (off_t)(i + 1));
}

static void reply_entries_plus(struct vfs *v, fuse_req_t req, const struct dirbuf *d,
			       size_t size, off_t off)
{
	char *buf = calloc(1, size ? size : 1);
	uint64_t *held = calloc(size / 24 + 1, sizeof(*held));
	size_t used = 0, nheld = 0;

	if (!buf || !held) {
		free(buf);
		free(held);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	for (size_t i = (size_t)off; i < d->n; i++) {
		size_t need = add_plus(v, req, buf + used, size - used, d, i, &held[nheld]);

		if (need > size - used)
			break;
		used += need;
		if (held[nheld])
			nheld++;
	}
	/* Not delivered: the kernel holds none of these references. */
	if (fuse_reply_buf(req, buf, used) != 0)
		for (size_t k = 0; k < nheld; k++)
			nodes_forget(v->nodes, held[k], 1);
	free(held);
	free(buf);
}

static void readdir_common(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi, bool plus)
{
	struct vfs *v = fuse_req_userdata(req);
	struct dirbuf *d = handles_get(v->dirs, fi->fh);
	struct op *op;

	if (d && plus) {
		reply_entries_plus(v, req, d, size, off);
		return;
	}
	if (d) {
		reply_entries(req, d, size, off);
		return;
	}
	/* Opened under a daemon that died: list again. */
	if (!(op = op_new(v, req, "readdir")))
		return;
	op->flags = LIST_FOR_READDIR | (plus ? LIST_PLUS : 0);
	op->off = (uint64_t)off;
	op->size = size;
	start_listing(op, ino, fi);
}

void vfs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		 struct fuse_file_info *fi)
{
	readdir_common(req, ino, size, off, fi, false);
}

void vfs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	readdir_common(req, ino, size, off, fi, true);
}

void vfs_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct vfs *v = fuse_req_userdata(req);

	dirbuf_free(handles_take(v->dirs, fi->fh));
	fuse_reply_err(req, 0);
}

void vfs_free_dirbuf(void *d)
{
	dirbuf_free(d);
}
