/*
 * control_render: the five `.control/` files from one snapshot. status is
 * `key: value` lines for people, status.json the same for programs (the
 * probe reads "state", "since", "updated" and "pid" from the mirror),
 * metrics the Prometheus text format, events the ring as JSON lines and
 * connections one line per session. Formats are documented in
 * docs/control.md; change both together.
 */
#include "control_int.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "clock.h"
#include "jsonutil.h"
#include "keepstate.h"
#include "prom.h"
#include "sftp.h"
#include "statuskeys.h"

/* The extensions steadyfs uses; one the server does not offer is missing. */
#define CTL_KNOWN_EXTS (SFTP_EXT_POSIX_RENAME | SFTP_EXT_STATVFS | SFTP_EXT_FSYNC | \
			SFTP_EXT_HARDLINK | SFTP_EXT_LIMITS | SFTP_EXT_LSETSTAT)

/* ---- helpers ------------------------------------------------------------ */

void ctl_iso_time(double t, char *out, size_t outsz)
{
	/* Rounded to the millisecond as "%.3f" rounds the epoch beside it. */
	long long ms = llround(t * 1000);
	time_t secs = (time_t)(ms / 1000);
	struct tm tm;
	char base[32];

	if (t <= 0 || !gmtime_r(&secs, &tm) ||
	    !strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm)) {
		snprintf(out, outsz, "-");
		return;
	}
	snprintf(out, outsz, "%s.%03dZ", base, (int)(ms % 1000));
}

const char *ctl_errno_name(int errnum, char *tmp, size_t tmpsz)
{
	const char *n = strerrorname_np(errnum);

	if (n)
		return n;
	snprintf(tmp, tmpsz, "E%d", errnum);
	return tmp;
}

/* Length of the valid UTF-8 sequence at `s`, or 0 when it is not one. */
static size_t utf8_len(const unsigned char *s)
{
	size_t n;
	uint32_t cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4, cp = s[0] & 0x07;
	else
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	/* Overlong forms, surrogates and values past U+10FFFF. */
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

void ctl_clean(struct strbuf *sb, const char *v, bool ctrl)
{
	const unsigned char *s = (const unsigned char *)v;

	while (*s) {
		size_t n = utf8_len(s);

		if (n == 0 || (ctrl && (*s < 0x20 || *s == 0x7f))) {
			strbuf_addf(sb, "\\x%02x", *s);
			s++;
			continue;
		}
		strbuf_add(sb, s, n);
		s += n;
	}
}

static void ext_list(struct strbuf *sb, uint32_t bits, const char *sep)
{
	int n = 0;

	for (uint32_t b = 1; b && b <= CTL_KNOWN_EXTS; b <<= 1)
		if (bits & b)
			strbuf_addf(sb, "%s%s", n++ ? sep : "", sftp_ext_name(b));
	if (!n)
		strbuf_adds(sb, "none");
}

/* ---- the snapshot ------------------------------------------------------- */

void ctl_snap_take(struct control *c, struct ctl_snap *s)
{
	struct conn_server srv;
	control_gauge_fn fn;
	void *arg;
	bool alive = false;

	memset(s, 0, sizeof(*s));
	s->running = true;
	if (c->ks) {
		s->keeper_pid = ks_keeper_pid(c->ks);
		s->restarts = ks_restarts(c->ks);
		s->upgrades_failed = ks_upgrades_failed(c->ks);
		ks_last_reason(c->ks, s->restart_reason, sizeof(s->restart_reason));
	}
	s->now = clock_wall();
	s->uptime = (double)(clock_mono_ns() - c->started_mono) / 1e9;
	s->state = pool_state_name(pool_state(c->pool));
	s->since = pool_state_since(c->pool);
	s->total = pool_size(c->pool);
	s->conns = calloc((size_t)s->total, sizeof(*s->conns));
	for (int i = 0; s->conns && i < s->total; i++) {
		struct conn_info *ci = &s->conns[i];

		conn_get_info(pool_conn(c->pool, i), ci);
		s->up += ci->state == CONN_UP;
		alive |= ci->state == CONN_UP;
		s->reconnects += ci->reconnects;
		s->attempts += ci->attempts - (ci->gen > 0 && ci->attempts > 0);
	}
	if (!s->conns)
		s->up = pool_up_count(c->pool);
	pool_server(c->pool, &srv);
	/* Server facts exist once a session has connected (max_packet set). */
	if (srv.max_packet)
		s->missing = CTL_KNOWN_EXTS & ~srv.exts;

	pthread_mutex_lock(&c->lock);
	fn = c->gauge_fn;
	arg = c->gauge_arg;
	s->missing |= c->missing_exts;
	/*
	 * A session counts as up only while replies keep arriving (it is
	 * declared dead otherwise), so "some session up now" means a round
	 * trip succeeded within dead_after: the best this module can see of
	 * the last successful round trip.
	 */
	if (alive && s->now > c->last_alive)
		c->last_alive = s->now;
	pthread_mutex_unlock(&c->lock);
	if (fn)
		fn(arg, &s->g);
}

void ctl_snap_release(struct ctl_snap *s)
{
	free(s->conns);
	s->conns = NULL;
}

static const char *conn_state_name(enum conn_state st)
{
	switch (st) {
	case CONN_UP: return "up";
	case CONN_CONNECTING: return "connecting";
	default: return "down";
	}
}

/* ---- status ------------------------------------------------------------- */

static void kv_time(struct strbuf *sb, const char *key, double t)
{
	char iso[40];

	ctl_iso_time(t, iso, sizeof(iso));
	strbuf_addf(sb, "%s: %s (%.3f)\n", key, iso, t);
}

static void status_last_error(struct control *c, struct strbuf *sb)
{
	const struct ctl_last_error *e = &c->last_err;
	const struct ctl_last_session *ls = &c->last_sess;
	char iso[40], tmp[16];

	strbuf_adds(sb, "last_error: ");
	if (e->set) {
		ctl_iso_time(e->time, iso, sizeof(iso));
		strbuf_addf(sb, "%s %s '", iso, e->op ? e->op : "?");
		ctl_clean(sb, e->path ? e->path : "", true);
		strbuf_addf(sb, "': %s (%s), cause %s\n",
			    ctl_errno_name(e->errnum, tmp, sizeof(tmp)),
			    strerror(e->errnum), e->cause);
	} else {
		strbuf_adds(sb, "none\n");
	}
	strbuf_adds(sb, "last_session_error: ");
	if (ls->set) {
		ctl_iso_time(ls->time, iso, sizeof(iso));
		strbuf_addf(sb, "%s session %d %s: ", iso, ls->idx, ls->what ? ls->what : "");
		ctl_clean(sb, ls->detail ? ls->detail : "", true);
		strbuf_addc(sb, '\n');
	} else {
		strbuf_adds(sb, "none\n");
	}
}

static void render_status(struct control *c, const struct ctl_snap *s, struct strbuf *sb)
{
	strbuf_addf(sb, "state: %s\n", s->state);
	kv_time(sb, "since", s->since);
	strbuf_addf(sb, "sessions: %d/%d\n", s->up, s->total);
	strbuf_addf(sb, "reconnect_attempts: %llu\n", (unsigned long long)s->attempts);
	strbuf_addf(sb, "reconnects: %llu\n", (unsigned long long)s->reconnects);
	strbuf_addf(sb, "calls_inflight: %u\n", s->g.calls_inflight);
	strbuf_addf(sb, "oldest_call_age: %.3f s\n", s->g.oldest_call_age);
	strbuf_addf(sb, "unacked_bytes: %llu\n", (unsigned long long)s->g.unacked_bytes);
	strbuf_addf(sb, "oldest_unacked_age: %.3f s\n", s->g.oldest_unacked_age);
	strbuf_adds(sb, "missing_extensions: ");
	ext_list(sb, s->missing, ", ");
	strbuf_addc(sb, '\n');
	status_last_error(c, sb);
	strbuf_addf(sb, "data_replayed_bytes: %llu\n", (unsigned long long)c->replayed_bytes);
	strbuf_addf(sb, "data_lost_bytes: %llu\n", (unsigned long long)c->lost_bytes);
	strbuf_addf(sb, "remote_names_skipped: %llu\n", (unsigned long long)c->bad_names);
	strbuf_addf(sb, "readahead_hits: %llu\n", (unsigned long long)c->ra_hits);
	strbuf_addf(sb, "readahead_misses: %llu\n", (unsigned long long)c->ra_misses);
	strbuf_adds(sb, "remote: ");
	ctl_clean(sb, c->remote, true);
	strbuf_adds(sb, "\nmountpoint: ");
	ctl_clean(sb, c->mountpoint, true);
	strbuf_adds(sb, "\nstate_dir: ");
	ctl_clean(sb, c->state_dir, true);
	strbuf_addf(sb, "\nmirror_error: %s\n", c->mirror_error[0] ? c->mirror_error : "none");
	strbuf_addf(sb, "version: %s\n", STEADYFS_VERSION);
	strbuf_addf(sb, "uptime: %.0f s\n", s->uptime);
	strbuf_addf(sb, "pid: %ld\n", (long)getpid());
	strbuf_addf(sb, "daemon: generation %llu, restarts %llu, last restart: %s, keeper pid %d\n",
		    (unsigned long long)c->generation, (unsigned long long)s->restarts,
		    s->restart_reason[0] ? s->restart_reason : "none", s->keeper_pid);
	strbuf_addf(sb, "running: %s\n", s->running ? "yes" : "no");
	kv_time(sb, "updated", s->now);
}

/* ---- status.json -------------------------------------------------------- */

struct json_object *ctl_jstr(const char *v)
{
	struct strbuf sb = STRBUF_INIT;
	struct json_object *o;

	ctl_clean(&sb, v ? v : "", false);
	o = json_object_new_string(strbuf_str(&sb));
	strbuf_release(&sb);
	return o;
}

static struct json_object *jtime_iso(double t)
{
	char iso[40];

	ctl_iso_time(t, iso, sizeof(iso));
	return json_object_new_string(iso);
}

static struct json_object *json_last_error(const struct ctl_last_error *e)
{
	struct json_object *o;
	char tmp[16];

	if (!e->set || !(o = json_object_new_object()))
		return NULL;
	json_object_object_add(o, "time", jsecs(e->time));
	json_object_object_add(o, "time_iso", jtime_iso(e->time));
	json_object_object_add(o, "op", json_object_new_string(e->op ? e->op : "?"));
	json_object_object_add(o, "path", ctl_jstr(e->path));
	json_object_object_add(o, "errno", json_object_new_int(e->errnum));
	json_object_object_add(o, "errno_name",
			       json_object_new_string(ctl_errno_name(e->errnum, tmp, sizeof(tmp))));
	json_object_object_add(o, "message", json_object_new_string(strerror(e->errnum)));
	json_object_object_add(o, "cause", json_object_new_string(e->cause));
	return o;
}

static struct json_object *json_last_session(const struct ctl_last_session *ls)
{
	struct json_object *o;

	if (!ls->set || !(o = json_object_new_object()))
		return NULL;
	json_object_object_add(o, "time", jsecs(ls->time));
	json_object_object_add(o, "time_iso", jtime_iso(ls->time));
	json_object_object_add(o, "session", json_object_new_int(ls->idx));
	json_object_object_add(o, "event", ctl_jstr(ls->what));
	json_object_object_add(o, "detail", ctl_jstr(ls->detail));
	return o;
}

static struct json_object *json_exts(uint32_t bits)
{
	struct json_object *a = json_object_new_array();

	for (uint32_t b = 1; a && b && b <= CTL_KNOWN_EXTS; b <<= 1)
		if (bits & b)
			json_object_array_add(a, json_object_new_string(sftp_ext_name(b)));
	return a;
}

static void render_status_json(struct control *c, const struct ctl_snap *s,
			       struct strbuf *sb)
{
	struct json_object *o = json_object_new_object();
	const char *txt;

	if (!o) {
		sb->oom = 1;
		return;
	}
	json_object_object_add(o, STATUS_STATE, json_object_new_string(s->state));
	json_object_object_add(o, STATUS_SINCE, jsecs(s->since));
	json_object_object_add(o, "since_iso", jtime_iso(s->since));
	json_object_object_add(o, "sessions_up", json_object_new_int(s->up));
	json_object_object_add(o, "sessions_total", json_object_new_int(s->total));
	json_object_object_add(o, "reconnect_attempts", json_object_new_int64((int64_t)s->attempts));
	json_object_object_add(o, "reconnects", json_object_new_int64((int64_t)s->reconnects));
	json_object_object_add(o, "calls_inflight", json_object_new_int64(s->g.calls_inflight));
	json_object_object_add(o, "oldest_call_age", jsecs(s->g.oldest_call_age));
	json_object_object_add(o, "unacked_bytes", json_object_new_int64((int64_t)s->g.unacked_bytes));
	json_object_object_add(o, "oldest_unacked_age", jsecs(s->g.oldest_unacked_age));
	json_object_object_add(o, "missing_extensions", json_exts(s->missing));
	json_object_object_add(o, "last_error", json_last_error(&c->last_err));
	json_object_object_add(o, "last_session_error", json_last_session(&c->last_sess));
	json_object_object_add(o, "data_replayed_bytes", json_object_new_int64((int64_t)c->replayed_bytes));
	json_object_object_add(o, "data_lost_bytes", json_object_new_int64((int64_t)c->lost_bytes));
	json_object_object_add(o, "remote_names_skipped", json_object_new_int64((int64_t)c->bad_names));
	json_object_object_add(o, "readahead_hits", json_object_new_int64((int64_t)c->ra_hits));
	json_object_object_add(o, "readahead_misses", json_object_new_int64((int64_t)c->ra_misses));
	json_object_object_add(o, "remote", ctl_jstr(c->remote));
	json_object_object_add(o, "mountpoint", ctl_jstr(c->mountpoint));
	json_object_object_add(o, "state_dir", ctl_jstr(c->state_dir));
	json_object_object_add(o, "mirror_error",
			       c->mirror_error[0] ? json_object_new_string(c->mirror_error) : NULL);
	json_object_object_add(o, "version", json_object_new_string(STEADYFS_VERSION));
	json_object_object_add(o, "started", jsecs(c->started_wall));
	json_object_object_add(o, "uptime", jsecs(s->uptime));
	json_object_object_add(o, STATUS_PID, json_object_new_int64((int64_t)getpid()));
	json_object_object_add(o, "daemon_pid", json_object_new_int64((int64_t)getpid()));
	json_object_object_add(o, STATUS_KEEPER_PID, json_object_new_int64(s->keeper_pid));
	json_object_object_add(o, STATUS_DEVICE,
			       c->device[0] ? json_object_new_string(c->device) : NULL);
	json_object_object_add(o, STATUS_GENERATION, json_object_new_int64((int64_t)c->generation));
	json_object_object_add(o, "restarts", json_object_new_int64((int64_t)s->restarts));
	json_object_object_add(o, "last_restart_reason", ctl_jstr(s->restart_reason));
	json_object_object_add(o, STATUS_UPGRADES_FAILED, json_object_new_int64((int64_t)s->upgrades_failed));
	json_object_object_add(o, "running", json_object_new_boolean(s->running));
	json_object_object_add(o, STATUS_UPDATED, jsecs(s->now));
	txt = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
					     JSON_C_TO_STRING_SPACED |
					     JSON_C_TO_STRING_NOSLASHESCAPE);
	if (txt) {
		strbuf_adds(sb, txt);
		strbuf_addc(sb, '\n');
	} else {
		sb->oom = 1;
	}
	json_object_put(o);
}

/* ---- metrics ------------------------------------------------------------ */

/*
 * Every series carries mountpoint="...": one host may run several mounts,
 * each with its own textfile, and node_exporter merges them (the alert
 * rules in docs/alerts/ group by it).
 */
struct pm {
	struct strbuf *sb;
	const char *mp;
};

/* One sample with the mountpoint label and up to two more (k NULL: none). */
static void pm_sample(struct pm *pm, const char *name, const char *k1, const char *v1,
		      const char *k2, const char *v2, double value)
{
	const char *l[] = { "mountpoint", pm->mp, k1, v1, k2, v2 };

	prom_sample(pm->sb, name, l, 1 + (k1 != NULL) + (k2 != NULL), value);
}

static void pm_one(struct pm *pm, const char *name, const char *type, const char *help,
		   double v)
{
	prom_family(pm->sb, name, type, help);
	pm_sample(pm, name, NULL, NULL, NULL, NULL, v);
}

static void metrics_state(struct control *c, const struct ctl_snap *s, struct pm *pm)
{
	static const char *const states[] = { "connected", "degraded", "down" };

	prom_family(pm->sb, "steadyfs_state", "gauge",
		    "1 for the mount's current state (connected, degraded, down), 0 for the others");
	for (int i = 0; i < 3; i++)
		pm_sample(pm, "steadyfs_state", "state", states[i], NULL, NULL,
			  !strcmp(s->state, states[i]));
	pm_one(pm, "steadyfs_state_since_timestamp_seconds", "gauge",
	       "When the state last changed (epoch seconds)", s->since);
	pm_one(pm, "steadyfs_sessions_up", "gauge", "SSH sessions up now", s->up);
	pm_one(pm, "steadyfs_sessions_configured", "gauge",
	       "SSH sessions in the pool (connections=)", s->total);
	pm_one(pm, "steadyfs_reconnect_attempts_total", "counter",
	       "Connect attempts other than each session's first successful one",
	       (double)s->attempts);
	pm_one(pm, "steadyfs_reconnects_total", "counter", "Successful reconnects of a session",
	       (double)s->reconnects);
	pm_one(pm, "steadyfs_last_success_timestamp_seconds", "gauge",
	       "Last time a session was seen answering (epoch seconds; 0 never)", c->last_alive);
}

/* One family with a sample per session. */
static void per_session(struct pm *pm, const struct ctl_snap *s, const char *name,
			const char *help, int field)
{
	char id[16];

	prom_family(pm->sb, name, "gauge", help);
	for (int i = 0; i < s->total; i++) {
		const struct conn_info *ci = &s->conns[i];
		double v = field == 0 ? ci->state == CONN_UP :
			   field == 1 ? (double)ci->inflight : ci->last_rtt;

		snprintf(id, sizeof(id), "%d", i);
		pm_sample(pm, name, "session", id, NULL, NULL, v);
	}
}

static void metrics_sessions(const struct ctl_snap *s, struct pm *pm)
{
	if (!s->conns)
		return;
	per_session(pm, s, "steadyfs_session_up", "1 when the session is up", 0);
	per_session(pm, s, "steadyfs_session_inflight_requests",
		    "SFTP requests in flight on the session", 1);
	per_session(pm, s, "steadyfs_session_rtt_seconds",
		    "Last request or ping round trip of the session", 2);
}

static void metrics_calls(struct control *c, struct pm *pm)
{
	prom_family(pm->sb, "steadyfs_calls_total", "counter",
		    "Filesystem calls answered, by operation (failed ones included)");
	for (int i = 0; i < CTL_NOPS; i++)
		pm_sample(pm, "steadyfs_calls_total", "op", ctl_ops[i], NULL, NULL,
			  (double)c->ops[i].calls);
	prom_family(pm->sb, "steadyfs_errors_total", "counter",
		    "Filesystem calls that failed, by operation and errno name");
	for (int i = 0; i < CTL_NOPS; i++) {
		const uint64_t *e = c->ops[i].errors;

		for (int n = 0; n < CTL_ERRNO_SLOTS; n++) {
			char tmp[16];

			/* EIO and EAGAIN always, so alerts see 0 before the first. */
			if (e[n] || n == EIO || n == EAGAIN)
				pm_sample(pm, "steadyfs_errors_total", "op", ctl_ops[i], "errno",
					  n ? ctl_errno_name(n, tmp, sizeof(tmp)) : "other",
					  (double)e[n]);
		}
	}
}

static void metrics_histograms(struct control *c, struct pm *pm)
{
	static const char *const le[CTL_NBOUNDS + 1] = {
		"0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1",
		"0.25", "0.5", "1", "2.5", "5", "10", "20", "30", "60", "+Inf",
	};

	prom_family(pm->sb, "steadyfs_call_duration_seconds", "histogram",
		    "Time from a call's arrival to its answer, by operation");
	for (int i = 0; i < CTL_NOPS; i++) {
		const struct ctl_op_stats *st = &c->ops[i];
		uint64_t cum = 0;

		for (int b = 0; b <= CTL_NBOUNDS; b++) {
			cum += st->bucket[b];
			pm_sample(pm, "steadyfs_call_duration_seconds_bucket", "op", ctl_ops[i],
				  "le", le[b], (double)cum);
		}
		pm_sample(pm, "steadyfs_call_duration_seconds_sum", "op", ctl_ops[i], NULL, NULL,
			  st->sum);
		pm_sample(pm, "steadyfs_call_duration_seconds_count", "op", ctl_ops[i], NULL, NULL,
			  (double)cum);
	}
}

static void metrics_misc(struct control *c, const struct ctl_snap *s, struct pm *pm)
{
	pm_one(pm, "steadyfs_read_bytes_total", "counter", "Bytes read from the server",
	       (double)c->bytes_read);
	pm_one(pm, "steadyfs_readahead_hits_total", "counter",
	       "Reads answered from read-ahead (or waiting on a prefetch)", (double)c->ra_hits);
	pm_one(pm, "steadyfs_readahead_misses_total", "counter",
	       "Reads sent to the server on their own", (double)c->ra_misses);
	pm_one(pm, "steadyfs_written_bytes_total", "counter",
	       "Bytes written and acknowledged by the server", (double)c->bytes_written);
	pm_one(pm, "steadyfs_unacked_write_bytes", "gauge",
	       "Write-behind bytes the server has not acknowledged", (double)s->g.unacked_bytes);
	pm_one(pm, "steadyfs_unacked_write_oldest_seconds", "gauge",
	       "Age of the oldest unacknowledged write (0 when none)", s->g.oldest_unacked_age);
	pm_one(pm, "steadyfs_calls_inflight", "gauge", "Filesystem calls not yet answered",
	       s->g.calls_inflight);
	pm_one(pm, "steadyfs_oldest_call_age_seconds", "gauge",
	       "Age of the oldest unanswered call (0 when none)", s->g.oldest_call_age);
	pm_one(pm, "steadyfs_data_replayed_bytes_total", "counter",
	       "Unacknowledged bytes resent after a session loss", (double)c->replayed_bytes);
	pm_one(pm, "steadyfs_data_lost_bytes_total", "counter",
	       "Written bytes dropped for good (see events)", (double)c->lost_bytes);
	pm_one(pm, "steadyfs_remote_names_skipped_total", "counter",
	       "Listing entries skipped: the server sent a name no file can have",
	       (double)c->bad_names);
	pm_one(pm, "steadyfs_close_failures_total", "counter",
	       "Remote CLOSEs that failed, unseen by close(2) (see events)",
	       (double)c->close_failures);
	prom_family(pm->sb, "steadyfs_events_total", "counter", "Events recorded, by type");
	for (int t = 0; t < EV_NTYPES; t++)
		pm_sample(pm, "steadyfs_events_total", "type", ctl_event_types[t], NULL, NULL,
			  (double)c->events_by_type[t]);
	prom_family(pm->sb, "steadyfs_server_extension_missing", "gauge",
		    "1 for an SFTP extension the server lacks (steadyfs uses a fallback)");
	for (uint32_t b = 1; b && b <= CTL_KNOWN_EXTS; b <<= 1)
		pm_sample(pm, "steadyfs_server_extension_missing", "extension", sftp_ext_name(b),
			  NULL, NULL, !!(s->missing & b));
	pm_one(pm, "steadyfs_mirror_failures_total", "counter",
	       "Rewrites of the state_dir mirror or metrics textfile that failed",
	       (double)c->mirror_failures);
	pm_one(pm, "steadyfs_start_time_seconds", "gauge", "When the daemon started (epoch seconds)",
	       c->started_wall);
	pm_one(pm, "steadyfs_daemon_generation", "gauge",
	       "Generation of the daemon serving the mount (1 = the first)",
	       (double)c->generation);
	pm_one(pm, "steadyfs_daemon_restarts_total", "counter",
	       "Daemon restarts under the keeper: crashes, kills and upgrades",
	       (double)s->restarts);
	prom_family(pm->sb, "steadyfs_build_info", "gauge", "Always 1; the version as a label");
	pm_sample(pm, "steadyfs_build_info", "version", STEADYFS_VERSION, NULL, NULL, 1);
}

static void render_metrics(struct control *c, const struct ctl_snap *s, struct strbuf *sb)
{
	struct pm pm = { sb, c->mountpoint };

	metrics_state(c, s, &pm);
	metrics_sessions(s, &pm);
	metrics_calls(c, &pm);
	metrics_histograms(c, &pm);
	metrics_misc(c, s, &pm);
}

/* ---- events and connections ---------------------------------------------- */

static void render_events(struct control *c, struct strbuf *sb)
{
	for (unsigned i = 0; i < c->ring_count; i++) {
		strbuf_adds(sb, c->ring[(c->ring_first + i) % CTL_EVENTS_MAX].line);
		strbuf_addc(sb, '\n');
	}
}

static void render_connections(const struct ctl_snap *s, struct strbuf *sb)
{
	for (int i = 0; s->conns && i < s->total; i++) {
		const struct conn_info *ci = &s->conns[i];
		char iso[40];

		ctl_iso_time(ci->since, iso, sizeof(iso));
		strbuf_addf(sb, "id=%d state=%s since=%s inflight=%u last_rtt=%.6f "
			    "reconnects=%llu attempts=%llu\n", i, conn_state_name(ci->state),
			    iso, ci->inflight, ci->last_rtt,
			    (unsigned long long)ci->reconnects,
			    (unsigned long long)ci->attempts);
	}
}

void ctl_render_locked(struct control *c, const struct ctl_snap *s, int idx,
		       struct strbuf *sb)
{
	switch (idx) {
	case 0: render_status(c, s, sb); break;
	case 1: render_status_json(c, s, sb); break;
	case 2: render_metrics(c, s, sb); break;
	case 3: render_events(c, sb); break;
	case 4: render_connections(s, sb); break;
	default: break;
	}
}
