/*
 * control: the operator's state of one mount. Counts calls (per op, by
 * errno, in a latency histogram) and bytes, keeps the events ring (the last
 * CTL_EVENTS_MAX JSON lines), and mirrors the rendered `.control/` files to
 * state_dir (and the metrics to metrics_textfile) from its own thread: at
 * least every CTL_MIRROR_PERIOD seconds and within CTL_MIRROR_MIN_GAP of an
 * event. Rendering is in control_render.c.
 *
 * Memory is bounded: a fixed op list, a fixed errno table, a fixed ring.
 * Events are not logged here: the callers already log each one (the
 * pool's state and session lines, the vfs's failed-call and data lines).
 */
#include "control_int.h"

#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "atomicfile.h"
#include "clock.h"
#include "jsonutil.h"
#include "keepstate.h"
#include "ksvalid.h"
#include "log.h"
#include "mounttab.h"
#include "paths.h"
#include "statuskeys.h"
#include "sftp.h"
#include "statedir.h"

#define CTL_MIRROR_PERIOD 2.0
#define CTL_MIRROR_MIN_GAP 0.5

const char *const control_files[] = {
	"status", STATUS_FILE, "metrics", "events", "connections", NULL
};

/* ---- construction --------------------------------------------------- */

/* `p` made absolute against the current directory (control_new runs before
 * fuse_daemonize changes it to "/"). NULL on allocation failure. */
static char *absolute(const char *p)
{
	char cwd[PATH_MAX];
	char *out;

	if (p[0] == '/')
		return strdup(p);
	if (!getcwd(cwd, sizeof(cwd)))
		return strdup(p);
	if (asprintf(&out, "%s/%s", strcmp(cwd, "/") ? cwd : "", p) < 0)
		return NULL;
	return out;
}

/* "user@host:port:dir"; the user is the local login name when none was
 * given (what ssh would use). */
static char *remote_string(const struct steadyfs_opts *o)
{
	const char *user = o->user;
	struct passwd pw, *res = NULL;
	char pwbuf[1024];
	bool v6 = strchr(o->host, ':') != NULL;
	char *out;

	if (!user && getpwuid_r(getuid(), &pw, pwbuf, sizeof(pwbuf), &res) == 0 && res)
		user = res->pw_name;
	if (asprintf(&out, "%s%s%s%s%s:%d:%s", user ? user : "", user ? "@" : "",
		     v6 ? "[" : "", o->host, v6 ? "]" : "", o->port,
		     o->remote_dir) < 0)
		return NULL;
	return out;
}

/* The keeper mounted before handing this daemon the descriptor, so the
 * mount is in the table now; read from the table, never by stat(2) of
 * our own mountpoint. */
static void record_device(struct control *c)
{
	dev_t dev;

	if (mounttab_device_of(c->mountpoint, MT_FSTYPE_STEADYFS, &dev) == 0)
		snprintf(c->device, sizeof(c->device), "%u:%u", major(dev), minor(dev));
	else
		log_debug("cannot find '%s' in the mount table: no device in status.json",
			  c->mountpoint);
}

static int init_paths(struct control *c, const char *mountpoint)
{
	char def[PATH_MAX];

	if (!(c->mountpoint = strdup(mountpoint)) || !(c->remote = remote_string(c->o)))
		return -1;
	if (statedir_for_mount(mountpoint, def, sizeof(def)) == 0 &&
	    !(c->default_dir = strdup(def)))
		return -1;
	if (c->o->state_dir)
		c->state_dir = absolute(c->o->state_dir);
	else if (c->default_dir)
		c->state_dir = strdup(c->default_dir);
	else
		return -1;
	if (!c->state_dir)
		return -1;
	if (c->o->metrics_textfile && !(c->textfile = absolute(c->o->metrics_textfile)))
		return -1;
	record_device(c);
	return 0;
}

static void control_release(struct control *c)
{
	for (unsigned i = 0; i < CTL_EVENTS_MAX; i++)
		free(c->ring[i].line);
	for (unsigned i = 0; i < CTL_MAX_RUNS; i++)
		free(c->runs[i].detail);
	free(c->last_err.path);
	free(c->last_sess.what);
	free(c->last_sess.detail);
	free(c->mountpoint);
	free(c->state_dir);
	free(c->default_dir);
	free(c->textfile);
	free(c->remote);
	periodic_destroy(&c->mirror);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

static uint64_t mirror_tick(void *arg, uint64_t now);

struct control *control_new(const struct steadyfs_opts *o, struct pool *p,
			    const char *mountpoint)
{
	struct control *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->o = o;
	c->pool = p;
	c->started_wall = clock_wall();
	c->started_mono = clock_mono_ns();
	pthread_mutex_init(&c->lock, NULL);
	periodic_init(&c->mirror, mirror_tick, c);
	if (init_paths(c, mountpoint) < 0) {
		control_release(c);
		return NULL;
	}
	return c;
}

void control_set_gauges(struct control *c, control_gauge_fn fn, void *arg)
{
	pthread_mutex_lock(&c->lock);
	c->gauge_fn = fn;
	c->gauge_arg = arg;
	pthread_mutex_unlock(&c->lock);
}

/* ---- events ------------------------------------------------------------ */

/* A new event object with its time, sequence number and type; the caller
 * adds the fields and passes it to push_locked. Call with the lock held. */
static struct json_object *event_new_locked(struct control *c, enum ctl_event_type t)
{
	struct json_object *o = json_object_new_object();
	double now = clock_wall();
	char iso[40];

	if (!o)
		return NULL;
	ctl_iso_time(now, iso, sizeof(iso));
	json_object_object_add(o, "time", json_object_new_string(iso));
	json_object_object_add(o, "epoch", jsecs(now));
	json_object_object_add(o, "seq", json_object_new_int64((int64_t)c->seq + 1));
	json_object_object_add(o, "type", json_object_new_string(ctl_event_types[t]));
	return o;
}

/* Serialises `o` into the ring (dropping the oldest line when full), frees
 * it and wakes the mirror. A line that cannot be allocated is counted but
 * lost. Call with the lock held. */
/* Appends a line (taken over), dropping the oldest when full. Lock held. */
static void ring_append_locked(struct control *c, uint64_t seq, char *line)
{
	unsigned slot;

	if (c->ring_count == CTL_EVENTS_MAX) {
		slot = c->ring_first;
		free(c->ring[slot].line);
		c->ring_first = (c->ring_first + 1) % CTL_EVENTS_MAX;
	} else {
		slot = (c->ring_first + c->ring_count++) % CTL_EVENTS_MAX;
	}
	c->ring[slot].line = line;
	c->ring[slot].seq = seq;
}

static void push_locked(struct control *c, enum ctl_event_type t, struct json_object *o)
{
	const char *s;
	char *line = NULL;

	c->seq++;
	c->events_by_type[t]++;
	if (o && (s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
						      JSON_C_TO_STRING_NOSLASHESCAPE)))
		line = strdup(s);
	json_object_put(o);
	if (!line)
		return;
	ring_append_locked(c, c->seq, line);
	if (c->ks)
		ks_event_put(c->ks, c->seq, line);
	c->dirty = true;
	periodic_kick(&c->mirror);
}

/* Removes the line of event `seq` if it is still in the ring, keeping the
 * others in order. Call with the lock held. */
static void ring_drop_locked(struct control *c, uint64_t seq)
{
	unsigned i, n = c->ring_count;

	for (i = 0; i < n; i++)
		if (c->ring[(c->ring_first + i) % CTL_EVENTS_MAX].seq == seq)
			break;
	if (i == n)
		return;
	if (c->ks)
		ks_event_drop(c->ks, seq);
	free(c->ring[(c->ring_first + i) % CTL_EVENTS_MAX].line);
	for (; i + 1 < n; i++)
		c->ring[(c->ring_first + i) % CTL_EVENTS_MAX] =
			c->ring[(c->ring_first + i + 1) % CTL_EVENTS_MAX];
	c->ring[(c->ring_first + n - 1) % CTL_EVENTS_MAX].line = NULL;
	c->ring_count--;
}

void control_event_state(struct control *c, const char *from, const char *to)
{
	int up = pool_up_count(c->pool), total = pool_size(c->pool);
	struct json_object *o;

	pthread_mutex_lock(&c->lock);
	if ((o = event_new_locked(c, EV_STATE))) {
		json_object_object_add(o, "from", json_object_new_string(from));
		json_object_object_add(o, "to", json_object_new_string(to));
		json_object_object_add(o, "sessions_up", json_object_new_int(up));
		json_object_object_add(o, "sessions_total", json_object_new_int(total));
	}
	push_locked(c, EV_STATE, o);
	pthread_mutex_unlock(&c->lock);
}

/* Session events that are not failures (the status keeps the last failure). */
static bool session_ok(const char *what, const char *detail)
{
	return !strcmp(what, "reconnect") && (!detail || !strcmp(detail, "ok"));
}

/*
 * Counts a failed reconnect attempt in the session's run: the same detail
 * as the run's continues it (its old line is dropped, the new one carries
 * the count), anything else starts a new run. Returns the run, or NULL for
 * a session index past CTL_MAX_RUNS. Call with the lock held.
 */
static struct ctl_fail_run *run_add_locked(struct control *c, int idx, const char *detail)
{
	struct ctl_fail_run *r;

	if (idx < 0 || idx >= CTL_MAX_RUNS)
		return NULL;
	r = &c->runs[idx];
	if (r->count && r->detail && !strcmp(r->detail, detail)) {
		ring_drop_locked(c, r->seq);
		r->count++;
		return r;
	}
	free(r->detail);
	r->detail = strdup(detail);
	r->count = 1;
	r->first = clock_wall();
	return r;
}

static void run_end_locked(struct control *c, int idx)
{
	if (idx >= 0 && idx < CTL_MAX_RUNS)
		c->runs[idx].count = 0;
}

static void run_fields(struct json_object *o, const struct ctl_fail_run *r)
{
	char iso[40];

	ctl_iso_time(r->first, iso, sizeof(iso));
	json_object_object_add(o, "count", json_object_new_int64((int64_t)r->count));
	json_object_object_add(o, "first_time", json_object_new_string(iso));
	json_object_object_add(o, "first_epoch", jsecs(r->first));
}

void control_event_conn(struct control *c, int idx, const char *what,
			const char *detail)
{
	bool failed_attempt = what && !strcmp(what, "reconnect_failed");
	struct ctl_fail_run *run = NULL;
	struct json_object *o;

	what = what ? what : "";
	detail = detail ? detail : "";
	pthread_mutex_lock(&c->lock);
	if (failed_attempt)
		run = run_add_locked(c, idx, detail);
	else
		run_end_locked(c, idx);
	if ((o = event_new_locked(c, EV_SESSION))) {
		json_object_object_add(o, "session", json_object_new_int(idx));
		json_object_object_add(o, "event", ctl_jstr(what));
		json_object_object_add(o, "detail", ctl_jstr(detail));
		if (run)
			run_fields(o, run);
	}
	push_locked(c, EV_SESSION, o);
	if (run)
		run->seq = c->seq;
	if (!session_ok(what, detail)) {
		free(c->last_sess.what);
		free(c->last_sess.detail);
		c->last_sess.what = strdup(what);
		c->last_sess.detail = strdup(detail);
		c->last_sess.idx = idx;
		c->last_sess.time = clock_wall();
		c->last_sess.set = true;
	}
	pthread_mutex_unlock(&c->lock);
}

void control_event_error(struct control *c, const char *op, const char *path,
			 int errnum, const char *cause)
{
	struct json_object *o;
	char tmp[16];

	pthread_mutex_lock(&c->lock);
	if ((o = event_new_locked(c, EV_ERROR))) {
		json_object_object_add(o, "op", ctl_jstr(op));
		json_object_object_add(o, "path", ctl_jstr(path));
		json_object_object_add(o, "errno", json_object_new_int(errnum));
		json_object_object_add(o, "errno_name",
				       json_object_new_string(ctl_errno_name(errnum, tmp, sizeof(tmp))));
		json_object_object_add(o, "message", json_object_new_string(strerror(errnum)));
		json_object_object_add(o, "cause", ctl_jstr(cause));
	}
	push_locked(c, EV_ERROR, o);
	free(c->last_err.path);
	c->last_err.path = strdup(path ? path : "");
	c->last_err.op = op;
	c->last_err.errnum = errnum;
	snprintf(c->last_err.cause, sizeof(c->last_err.cause), "%s", cause ? cause : "");
	c->last_err.time = clock_wall();
	c->last_err.set = true;
	pthread_mutex_unlock(&c->lock);
}

/* A `data` event with its range; NULL when out of memory. Lock held. */
static struct json_object *data_event_locked(struct control *c, const char *path,
					     uint64_t off, uint64_t len,
					     bool replayed, bool lost)
{
	struct json_object *o = event_new_locked(c, EV_DATA);

	if (o) {
		json_object_object_add(o, "path", ctl_jstr(path));
		json_object_object_add(o, "offset", json_object_new_int64((int64_t)off));
		json_object_object_add(o, "length", json_object_new_int64((int64_t)len));
		json_object_object_add(o, "end", json_object_new_int64((int64_t)(off + len)));
		json_object_object_add(o, "replayed", json_object_new_boolean(replayed));
		json_object_object_add(o, "lost", json_object_new_boolean(lost));
	}
	return o;
}

void control_event_data(struct control *c, const char *path, uint64_t off,
			uint64_t len, bool replayed, bool lost)
{
	struct json_object *o;

	pthread_mutex_lock(&c->lock);
	o = data_event_locked(c, path, off, len, replayed, lost);
	push_locked(c, EV_DATA, o);
	if (replayed)
		c->replayed_bytes += len;
	if (lost)
		c->lost_bytes += len;
	pthread_mutex_unlock(&c->lock);
}

void control_event_close_failed(struct control *c, const char *path,
				uint64_t off, uint64_t len, int errnum,
				const char *cause)
{
	struct json_object *o;
	char tmp[16];

	pthread_mutex_lock(&c->lock);
	if ((o = data_event_locked(c, path, off, len, false, false))) {
		json_object_object_add(o, "close_failed", json_object_new_boolean(true));
		json_object_object_add(o, "errno", json_object_new_int(errnum));
		json_object_object_add(o, "errno_name",
				       json_object_new_string(ctl_errno_name(errnum, tmp, sizeof(tmp))));
		json_object_object_add(o, "cause", ctl_jstr(cause));
	}
	push_locked(c, EV_DATA, o);
	c->close_failures++;
	pthread_mutex_unlock(&c->lock);
}

void control_event_shadowed(struct control *c, const char *path)
{
	struct json_object *o;

	pthread_mutex_lock(&c->lock);
	if ((o = event_new_locked(c, EV_SHADOWED)))
		json_object_object_add(o, "path", ctl_jstr(path));
	push_locked(c, EV_SHADOWED, o);
	pthread_mutex_unlock(&c->lock);
}

void control_event_invalid_state(struct control *c, const struct ks_report *rep)
{
	struct json_object *o;

	pthread_mutex_lock(&c->lock);
	if ((o = event_new_locked(c, EV_INVALID_STATE))) {
		json_object_object_add(o, "problems",
				       json_object_new_int64(ks_report_total(rep)));
		json_object_object_add(o, "nodes", json_object_new_int64(rep->nodes));
		json_object_object_add(o, "handles", json_object_new_int64(rep->handles));
		json_object_object_add(o, "events", json_object_new_int64(rep->events));
		json_object_object_add(o, "inflight", json_object_new_int64(rep->inflight));
		json_object_object_add(o, "header", json_object_new_int64(rep->header));
		json_object_object_add(o, "lost_bytes",
				       json_object_new_int64((int64_t)rep->lost_bytes));
		json_object_object_add(o, "first", ctl_jstr(rep->first));
	}
	push_locked(c, EV_INVALID_STATE, o);
	pthread_mutex_unlock(&c->lock);
}

/* An event of an earlier daemon of this mount back into the ring. */
static void load_event(void *arg, uint64_t seq, const char *text)
{
	struct control *c = arg;
	char *line = strdup(text);

	if (!line)
		return;
	ring_append_locked(c, seq, line);
	if (seq > c->seq)
		c->seq = seq;
}

void control_set_daemon(struct control *c, struct keepstate *ks,
			uint64_t generation)
{
	pthread_mutex_lock(&c->lock);
	/* Called before this daemon's sessions start: its ring is empty,
	 * and the earlier daemons' events come first. */
	if (c->ring_count == 0)
		ks_events_each(ks, load_event, c);
	c->ks = ks;
	c->generation = generation;
	c->dirty = true;
	pthread_mutex_unlock(&c->lock);
}

void control_event_restart(struct control *c, uint64_t generation,
			   const char *reason)
{
	struct json_object *o;

	pthread_mutex_lock(&c->lock);
	if ((o = event_new_locked(c, EV_RESTART))) {
		json_object_object_add(o, "generation",
				       json_object_new_int64((int64_t)generation));
		json_object_object_add(o, "reason", ctl_jstr(reason));
	}
	push_locked(c, EV_RESTART, o);
	pthread_mutex_unlock(&c->lock);
}

void control_note_missing_ext(struct control *c, uint32_t ext_bit)
{
	pthread_mutex_lock(&c->lock);
	c->missing_exts |= ext_bit;
	c->dirty = true;
	periodic_kick(&c->mirror);
	pthread_mutex_unlock(&c->lock);
}

void control_note_bad_name(struct control *c)
{
	pthread_mutex_lock(&c->lock);
	c->bad_names++;
	c->dirty = true;
	pthread_mutex_unlock(&c->lock);
}

/* ---- metrics ----------------------------------------------------------- */

static int op_index(const char *op)
{
	for (int i = 0; op && i < CTL_OP_OTHER; i++)
		if (!strcmp(ctl_ops[i], op))
			return i;
	return CTL_OP_OTHER;
}

void control_record_call(struct control *c, const char *op, double seconds,
			 int errnum)
{
	struct ctl_op_stats *st;
	int b = 0;

	if (!(seconds >= 0))  /* also NaN */
		seconds = 0;
	while (b < CTL_NBOUNDS && seconds > ctl_bounds[b])
		b++;
	if (errnum < 0)
		errnum = -errnum;
	pthread_mutex_lock(&c->lock);
	st = &c->ops[op_index(op)];
	st->calls++;
	st->bucket[b]++;
	st->sum += seconds;
	if (errnum)
		st->errors[errnum < CTL_ERRNO_SLOTS ? errnum : 0]++;
	pthread_mutex_unlock(&c->lock);
}

void control_note_readahead(struct control *c, bool hit)
{
	pthread_mutex_lock(&c->lock);
	if (hit)
		c->ra_hits++;
	else
		c->ra_misses++;
	pthread_mutex_unlock(&c->lock);
}

void control_add_bytes(struct control *c, uint64_t read, uint64_t written)
{
	pthread_mutex_lock(&c->lock);
	c->bytes_read += read;
	c->bytes_written += written;
	pthread_mutex_unlock(&c->lock);
}

/* ---- rendering --------------------------------------------------------- */

/* Renders one snapshot of every file into sbs[] (one lock hold, so the five
 * files agree with each other). */
static void render_all(struct control *c, const struct ctl_snap *s, struct strbuf *sbs)
{
	pthread_mutex_lock(&c->lock);
	for (int i = 0; control_files[i]; i++)
		ctl_render_locked(c, s, i, &sbs[i]);
	pthread_mutex_unlock(&c->lock);
}

int control_render(struct control *c, const char *name, char **out, size_t *len)
{
	struct strbuf sb = STRBUF_INIT;
	struct ctl_snap s;
	int idx = -1;

	for (int i = 0; control_files[i]; i++)
		if (!strcmp(control_files[i], name))
			idx = i;
	if (idx < 0)
		return -ENOENT;
	ctl_snap_take(c, &s);
	pthread_mutex_lock(&c->lock);
	ctl_render_locked(c, &s, idx, &sb);
	pthread_mutex_unlock(&c->lock);
	ctl_snap_release(&s);
	if (!strbuf_ok(&sb) || (!sb.s && !(sb.s = calloc(1, 1)))) {
		strbuf_release(&sb);
		return -ENOMEM;
	}
	*out = sb.s;
	*len = sb.len;
	return 0;
}

/* ---- the mirror ------------------------------------------------------- */


/*
 * Points the default path at state_dir: creates the symlink, or replaces a
 * symlink that points elsewhere (a stale one from an earlier mount). A real
 * directory or file there is an operator's, and is left alone with a
 * warning. Returns 0, or -1 with a reason in err.
 */
static int link_default(struct control *c, char *err, size_t errsz)
{
	char want[PATH_MAX], have[PATH_MAX], tmp[PATH_MAX + 64];
	const char *def = c->default_dir;
	struct stat st;

	if (!realpath(c->state_dir, want)) {
		snprintf(err, errsz, "cannot resolve state dir '%s': %s", c->state_dir,
			 strerror(errno));
		return -1;
	}
	if (realpath(def, have) && !strcmp(have, want))
		return 0;  /* already the same folder (or a link to it) */
	if (lstat(def, &st) == 0 && !S_ISLNK(st.st_mode)) {
		log_warn("default state dir '%s' exists and is not a symlink: not replacing it with a link to '%s'",
			 def, want);
		return 0;
	}
	if (mkdir_p(STATEDIR_BASE, 0755) < 0) {
		snprintf(err, errsz, "cannot create '%s': %s", STATEDIR_BASE, strerror(errno));
		return -1;
	}
	/* A new link renamed over the old one: never a moment without one. */
	snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", def, (long)getpid());
	(void)unlink(tmp);
	if (symlink(want, tmp) < 0 || rename(tmp, def) < 0) {
		snprintf(err, errsz, "cannot link '%s' to '%s': %s", def, want, strerror(errno));
		(void)unlink(tmp);
		return -1;
	}
	return 0;
}

/* Writes every file of one snapshot; remembers the first failure. */
static void mirror_write(struct control *c, bool running)
{
	struct strbuf sbs[6] = { STRBUF_INIT };
	char path[PATH_MAX + 32], err[PATH_MAX + 256] = "";
	bool shared = c->o->state_group_set;
	mode_t file_mode = shared ? STATEDIR_FILE_SHARED : STATEDIR_FILE_PRIVATE;
	gid_t gid = shared ? c->o->state_gid : (gid_t)-1;
	struct ctl_snap s;
	int failed = 0;

	ctl_snap_take(c, &s);
	s.running = running;
	if (!running) {
		s.state = "down";
		s.since = s.now;
		s.up = 0;
	}
	render_all(c, &s, sbs);
	ctl_snap_release(&s);
	for (int i = 0; control_files[i]; i++) {
		char e[PATH_MAX + 256];

		snprintf(path, sizeof(path), "%s/%s", c->state_dir, control_files[i]);
		if (!strbuf_ok(&sbs[i]) ||
		    atomicfile_write_owned(path, strbuf_str(&sbs[i]), sbs[i].len, file_mode,
					   gid, true, e, sizeof(e)) < 0) {
			if (!failed++)
				snprintf(err, sizeof(err), "%s", strbuf_ok(&sbs[i]) ? e : "out of memory");
		}
	}
	/* The metrics name no path but the mountpoint: node_exporter (its own
	 * user) must read them. */
	if (c->textfile && atomicfile_write(c->textfile, strbuf_str(&sbs[2]), sbs[2].len,
					    0644, path, sizeof(path)) < 0 && !failed++)
		snprintf(err, sizeof(err), "%s", path);
	for (int i = 0; i < 6; i++)
		strbuf_release(&sbs[i]);

	pthread_mutex_lock(&c->lock);
	if (failed) {
		c->mirror_failures++;
		/* Log a failure once, not every period. */
		if (strcmp(c->mirror_error, err))
			log_warn("mirror: %s", err);
		snprintf(c->mirror_error, sizeof(c->mirror_error), "%s", err);
	} else {
		if (c->mirror_error[0])
			log_info("mirror: writing '%s' again", c->state_dir);
		c->mirror_error[0] = '\0';
		c->mirror_time = clock_wall();
	}
	pthread_mutex_unlock(&c->lock);
}

/* The mirror (lib/periodic): writes every CTL_MIRROR_PERIOD, and soon
 * after an event (kicked), coalescing bursts to one write per
 * CTL_MIRROR_MIN_GAP. control_start() wrote the first snapshot. */
static uint64_t mirror_tick(void *arg, uint64_t now)
{
	struct control *c = arg;
	uint64_t due;

	pthread_mutex_lock(&c->lock);
	due = c->mirror_last +
	      clock_s_to_ns(c->dirty ? CTL_MIRROR_MIN_GAP : CTL_MIRROR_PERIOD);
	if (now < due) {
		pthread_mutex_unlock(&c->lock);
		return due - now;
	}
	c->dirty = false;
	pthread_mutex_unlock(&c->lock);
	mirror_write(c, true);
	c->mirror_last = clock_mono_ns();
	return clock_s_to_ns(CTL_MIRROR_PERIOD);
}

int control_start(struct control *c, char *err, size_t errsz)
{
	if (statedir_prepare(c->state_dir, c->o->state_group_set, c->o->state_gid) < 0) {
		snprintf(err, errsz, "cannot create state dir '%s': %s", c->state_dir,
			 strerror(errno));
		return -1;
	}
	if (c->o->state_dir && c->default_dir && link_default(c, err, errsz) < 0)
		log_warn("%s", err);
	if (c->textfile && atomicfile_check_dir(c->textfile, err, errsz) < 0)
		log_warn("metrics_textfile: %s", err);
	/* The first snapshot before the daemon says it serves: the keeper
	 * then reports the mount ready (systemd's READY=1, the command's
	 * return), and a probe or recovery run at once must find the mirror
	 * of a healthy mount, not call it missing. */
	mirror_write(c, true);
	c->mirror_last = clock_mono_ns();
	if (periodic_start(&c->mirror) < 0) {
		snprintf(err, errsz, "cannot start the mirror thread");
		return -1;
	}
	c->started = true;
	return 0;
}

void control_free(struct control *c)
{
	if (!c)
		return;
	if (c->started) {
		periodic_stop(&c->mirror);
		mirror_write(c, false);
	}
	control_release(c);
}
