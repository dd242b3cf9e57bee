/*
 * report: table, JSON (json-c) and Prometheus textfile output of
 * steadyfs-probe. See report.h.
 */
#include "report.h"

#include <errno.h>
#include <json-c/json.h>
#include <string.h>

#include "atomicfile.h"
#include "clock.h"
#include "jsonutil.h"
#include "prom.h"
#include "statedir.h"
#include "strbuf.h"

#define PREFIX "steadyfs_probe_"

static int copy(char *dst, size_t dstsz, const char *src)
{
	size_t n = strlen(src);

	if (n >= dstsz) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(dst, src, n + 1);
	return 0;
}

int target_init(struct target *t, const char *path, const char *norm,
		const struct mount_entry *mnt, const char *mirror, int hidden)
{
	memset(t, 0, sizeof(*t));
	t->hidden = hidden;
	t->mount_id = -1;
	if (copy(t->path, sizeof(t->path), path) < 0 || copy(t->norm, sizeof(t->norm), norm) < 0)
		return -1;
	if (mnt) {
		if (copy(t->mountpoint, sizeof(t->mountpoint), mnt->target) < 0)
			return -1;
		/* fstype and source are only shown: truncating them is harmless. */
		snprintf(t->fstype, sizeof(t->fstype), "%s", mnt->fstype);
		snprintf(t->source, sizeof(t->source), "%s", mnt->source);
		t->major = mnt->major;
		t->minor = mnt->minor;
		t->mount_id = mnt->id;
	}
	if (mirror)
		return copy(t->mirror, sizeof(t->mirror), mirror);
	if (mnt && mount_is_steadyfs(mnt))
		return statedir_for_mount(mnt->target, t->mirror, sizeof(t->mirror));
	return 0;
}

static const char *errno_name(int e)
{
	const char *s = e ? strerrorname_np(e) : NULL;

	return s ? s : "-";
}

/* The NOTE column: what went wrong, the mirror's word if any, and a
 * kernel request timeout that would abort the FUSE mount. */
static void note_of(const struct target *t, const struct probe_result *r, struct strbuf *sb)
{
	const struct mirror_status *m = &r->mirror;

	if (t->req_timeout)
		strbuf_addf(sb, "kernel aborts the mount after a request waits %u s; ",
			    t->req_timeout);
	if (r->err)
		strbuf_addf(sb, "%s: %s", r->op ? r->op : "probe", strerror(r->err));
	if (r->state == PROBE_HUNG || (r->state == PROBE_DEGRADED && !r->err)) {
		if (r->reused)
			strbuf_addf(sb, "earlier child %ld still stuck", (long)r->pid);
		else if (r->abandoned)
			strbuf_addf(sb, "no answer; child %ld stuck in kernel, abandoned",
				    (long)r->pid);
		else
			strbuf_adds(sb, "no answer; child killed");
	}
	if (m->health == MIRROR_NONE)
		return;
	strbuf_adds(sb, sb->len ? "; mirror " : "mirror ");
	if (m->health == MIRROR_FRESH || m->health == MIRROR_STALE)
		strbuf_addf(sb, "%s (%s, updated %.1fs ago)", mirror_health_name(m->health),
			    m->state, m->age);
	else
		strbuf_addf(sb, "%s (%s)", mirror_health_name(m->health), m->error);
}

struct widths {
	int path, state, err, fstype, source;
};

static int max_int(int a, int b)
{
	return a > b ? a : b;
}

static struct widths table_widths(const struct target *t, const struct probe_result *r,
				  size_t n)
{
	struct widths w = { 4, 5, 5, 6, 6 };

	for (size_t i = 0; i < n; i++) {
		if (t[i].hidden)
			continue;
		w.path = max_int(w.path, (int)strlen(t[i].path));
		w.state = max_int(w.state, (int)strlen(probe_state_name(r[i].state)));
		w.err = max_int(w.err, (int)strlen(errno_name(r[i].err)));
		w.fstype = max_int(w.fstype, (int)strlen(t[i].fstype));
		w.source = max_int(w.source, (int)strlen(t[i].source));
	}
	return w;
}

int report_table(FILE *out, const struct target *t, const struct probe_result *r, size_t n)
{
	struct widths w = table_widths(t, r, n);
	struct strbuf note = STRBUF_INIT;
	size_t shown = 0;

	for (size_t i = 0; i < n; i++)
		shown += !t[i].hidden;
	if (shown == 0)
		return 0;  /* main says why on stderr */
	fprintf(out, "%-*s  %-*s  %-*s  %8s  %-*s  %-*s  %s\n", w.path, "PATH", w.state,
		"STATE", w.err, "ERRNO", "SECONDS", w.fstype, "FSTYPE", w.source, "SOURCE",
		"NOTE");
	for (size_t i = 0; i < n; i++) {
		if (t[i].hidden)
			continue;
		strbuf_reset(&note);
		note_of(&t[i], &r[i], &note);
		fprintf(out, "%-*s  %-*s  %-*s  %8.3f  %-*s  %-*s  %s\n", w.path, t[i].path,
			w.state, probe_state_name(r[i].state), w.err, errno_name(r[i].err),
			r[i].duration, w.fstype, t[i].fstype[0] ? t[i].fstype : "-", w.source,
			t[i].source[0] ? t[i].source : "-", strbuf_str(&note));
	}
	strbuf_release(&note);
	return fflush(out) == 0 && !ferror(out) ? 0 : -1;
}

/* ---- JSON ----------------------------------------------------------------- */

static struct json_object *json_mirror(const struct mirror_status *m, int *bad)
{
	struct json_object *o = json_object_new_object();

	if (!o) {
		(*bad)++;
		return NULL;
	}
	jadd(o, "dir", json_object_new_string(m->dir), bad);
	jadd(o, "health", json_object_new_string(mirror_health_name(m->health)), bad);
	if (m->health == MIRROR_FRESH || m->health == MIRROR_STALE) {
		jadd(o, "state", json_object_new_string(m->state), bad);
		jadd(o, "since", json_object_new_double(m->since), bad);
		jadd(o, "updated", json_object_new_double(m->updated), bad);
		jadd(o, "age_seconds", json_object_new_double(m->age), bad);
		jadd(o, "pid", json_object_new_int64(m->pid), bad);
	} else {
		jadd(o, "error", json_object_new_string(m->error), bad);
	}
	return o;
}

static struct json_object *json_path(const struct target *t, const struct probe_result *r)
{
	struct json_object *o = json_object_new_object();
	struct strbuf note = STRBUF_INIT;
	char dev[32];
	int bad = 0;

	if (!o)
		return NULL;
	note_of(t, r, &note);
	jadd(o, "path", json_object_new_string(t->path), &bad);
	jadd(o, "state", json_object_new_string(probe_state_name(r->state)), &bad);
	jadd(o, "healthy", json_object_new_boolean(probe_result_healthy(r)), &bad);
	jadd(o, "errno", json_object_new_int(r->err), &bad);
	jadd(o, "error", r->err ? json_object_new_string(errno_name(r->err)) : NULL, &bad);
	jadd(o, "op", r->op ? json_object_new_string(r->op) : NULL, &bad);
	jadd(o, "message", json_object_new_string(strbuf_str(&note)), &bad);
	jadd(o, "duration_seconds", json_object_new_double(r->duration), &bad);
	jadd(o, "abandoned", json_object_new_boolean(r->abandoned), &bad);
	jadd(o, "reused_stuck_child", json_object_new_boolean(r->reused), &bad);
	jadd(o, "pid", r->pid ? json_object_new_int64(r->pid) : NULL, &bad);
	jadd(o, "mountpoint", t->mountpoint[0] ? json_object_new_string(t->mountpoint) : NULL, &bad);
	jadd(o, "fstype", t->fstype[0] ? json_object_new_string(t->fstype) : NULL, &bad);
	jadd(o, "source", t->mount_id >= 0 ? json_object_new_string(t->source) : NULL, &bad);
	snprintf(dev, sizeof(dev), "%u:%u", t->major, t->minor);
	jadd(o, "device", t->mount_id >= 0 ? json_object_new_string(dev) : NULL, &bad);
	jadd(o, "mount_id", t->mount_id >= 0 ? json_object_new_int(t->mount_id) : NULL, &bad);
	jadd(o, "mirror", r->mirror.health != MIRROR_NONE ? json_mirror(&r->mirror, &bad) : NULL, &bad);
	jadd(o, "kernel_request_timeout_seconds",
	     t->req_timeout ? json_object_new_int64(t->req_timeout) : NULL, &bad);
	strbuf_release(&note);
	if (bad || !strbuf_ok(&note)) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

/* The kernel's FUSE request timeout: null where the kernel has none
 * (before Linux 6.15). */
static struct json_object *json_kernel_timeout(const struct fuse_timeout *kt, int *bad)
{
	struct json_object *o;

	if (!kt->supported)
		return NULL;
	if (!(o = json_object_new_object())) {
		(*bad)++;
		return NULL;
	}
	jadd(o, "default_request_timeout", json_object_new_int64(kt->dflt), bad);
	jadd(o, "max_request_timeout", json_object_new_int64(kt->max), bad);
	jadd(o, "effective_seconds", json_object_new_int64(kt->effective), bad);
	return o;
}

int report_json(FILE *out, const struct target *t, const struct probe_result *r, size_t n,
		double timeout, const struct fuse_timeout *kt)
{
	struct json_object *root = json_object_new_object();
	struct json_object *arr = json_object_new_array();
	size_t unhealthy = 0;
	int bad = 0, rc = -1;

	if (!root || !arr) {
		json_object_put(root);
		json_object_put(arr);
		errno = ENOMEM;
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		if (t[i].hidden)
			continue;
		struct json_object *p = json_path(&t[i], &r[i]);

		unhealthy += !probe_result_healthy(&r[i]);
		if (!p || json_object_array_add(arr, p) != 0) {
			json_object_put(p);
			bad++;
		}
	}
	jadd(root, "timestamp", json_object_new_double(clock_wall()), &bad);
	jadd(root, "timeout_seconds", json_object_new_double(timeout), &bad);
	jadd(root, "healthy", json_object_new_boolean(unhealthy == 0), &bad);
	jadd(root, "kernel_fuse_request_timeout", json_kernel_timeout(kt, &bad), &bad);
	jadd(root, "paths", arr, &bad);
	if (bad) {
		json_object_put(root);
		errno = ENOMEM;
		return -1;
	}
	if (fprintf(out, "%s\n", json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY |
								   JSON_C_TO_STRING_NOSLASHESCAPE)) >= 0 &&
	    fflush(out) == 0)
		rc = 0;
	json_object_put(root);
	return rc;
}

/* ---- Prometheus textfile --------------------------------------------------- */

/* One gauge family with one sample per shown target, `value(i)` each. */
static void family(struct strbuf *sb, const char *name, const char *help,
		   const struct target *t, const struct probe_result *r, size_t n,
		   double (*value)(const struct probe_result *), int mirrored_only)
{
	prom_family(sb, name, "gauge", help);
	for (size_t i = 0; i < n; i++) {
		const char *labels[] = { "path", t[i].path };

		if (t[i].hidden || (mirrored_only && r[i].mirror.health == MIRROR_NONE))
			continue;
		prom_sample(sb, name, labels, 1, value(&r[i]));
	}
}

static double v_up(const struct probe_result *r) { return r->state == PROBE_OK; }
static double v_errno(const struct probe_result *r) { return r->err; }
static double v_duration(const struct probe_result *r) { return r->duration; }
static double v_abandoned(const struct probe_result *r) { return r->abandoned; }
static double v_mirror_fresh(const struct probe_result *r)
{
	return r->mirror.health == MIRROR_FRESH;
}
static double v_mirror_age(const struct probe_result *r)
{
	return r->mirror.health == MIRROR_FRESH || r->mirror.health == MIRROR_STALE ?
		r->mirror.age : -1;
}

static void state_family(struct strbuf *sb, const struct target *t,
			 const struct probe_result *r, size_t n)
{
	prom_family(sb, PREFIX "state", "gauge",
		    "1 for the state the path is in (ok, stale, hung, missing, error, degraded), 0 for the others.");
	for (size_t i = 0; i < n; i++) {
		if (t[i].hidden)
			continue;
		for (int s = 0; s < PROBE_NSTATES; s++) {
			const char *labels[] = { "path", t[i].path, "state", probe_state_name(s) };

			prom_sample(sb, PREFIX "state", labels, 2, r[i].state == (enum probe_state)s);
		}
	}
}

static void info_family(struct strbuf *sb, const struct target *t, size_t n)
{
	prom_family(sb, PREFIX "mount_info", "gauge",
		    "Always 1; labels name the mount holding the path.");
	for (size_t i = 0; i < n; i++) {
		const char *labels[] = { "path", t[i].path, "mountpoint", t[i].mountpoint,
					 "fstype", t[i].fstype, "source", t[i].source };

		if (!t[i].hidden)
			prom_sample(sb, PREFIX "mount_info", labels, 4, 1);
	}
}

int report_textfile(const char *path, const struct target *t, const struct probe_result *r,
		    size_t n, const struct fuse_timeout *kt, char *err, size_t errsz)
{
	struct strbuf sb = STRBUF_INIT;
	int rc;

	family(&sb, PREFIX "up", "1 if the path answered stat and a read within the deadline.",
	       t, r, n, v_up, 0);
	state_family(&sb, t, r, n);
	family(&sb, PREFIX "errno", "errno of the failing call, 0 if none failed.",
	       t, r, n, v_errno, 0);
	family(&sb, PREFIX "duration_seconds",
	       "Seconds the probe took; for a hung path the time waited or stuck.",
	       t, r, n, v_duration, 0);
	family(&sb, PREFIX "abandoned",
	       "1 if a probe child for the path is stuck in the kernel.", t, r, n, v_abandoned, 0);
	family(&sb, PREFIX "mirror_fresh",
	       "1 if the steadyfs mirror's status.json was updated within 15 s.",
	       t, r, n, v_mirror_fresh, 1);
	family(&sb, PREFIX "mirror_age_seconds",
	       "Seconds since the steadyfs mirror was updated, -1 if unreadable.",
	       t, r, n, v_mirror_age, 1);
	info_family(&sb, t, n);
	prom_family(&sb, PREFIX "fuse_request_timeout_seconds", "gauge",
		    "Seconds after which the kernel aborts a FUSE mount whose request waits (fs.fuse.*_request_timeout); 0 none, -1 the kernel has no such setting.");
	prom_sample(&sb, PREFIX "fuse_request_timeout_seconds", NULL, 0,
		    kt->supported ? (double)kt->effective : -1);
	prom_family(&sb, PREFIX "last_run_timestamp_seconds", "gauge",
		    "When the probe last finished, seconds since the epoch.");
	prom_sample(&sb, PREFIX "last_run_timestamp_seconds", NULL, 0, clock_wall());
	if (!strbuf_ok(&sb)) {
		snprintf(err, errsz, "cannot build textfile '%s': %s", path, strerror(ENOMEM));
		strbuf_release(&sb);
		return -1;
	}
	rc = atomicfile_write(path, sb.s, sb.len, 0644, err, errsz);
	strbuf_release(&sb);
	return rc;
}
