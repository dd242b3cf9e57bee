/*
 * test_control: the `.control/` module (fs/control/control.c, fs/control/control_render.c)
 * with a pool that is never started: each file's format and keys, calls
 * and events feeding the counters, the events ring keeping the last 1000,
 * status.json parsed with json-c and read back by the probe's mirror_read,
 * metrics checked by a real `promtool check metrics`, and the on-disk
 * mirror (files, modes, the symlink at the default path, the textfile, the
 * final "down" status).
 *
 * The mirror tests use a scratch folder under /tmp and a mountpoint name
 * inside it, so the default path /run/steadyfs/<escaped> is unique to the
 * run; it is removed at the end.
 */
#include "unit.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "clock.h"
#include "control.h"
#include "log.h"
#include "opts.h"
#include "pool.h"
#include "sftp.h"
#include "statedir.h"

#define PROMTOOL "/usr/bin/promtool"

/* One control over a never-started pool, and the scratch paths. */
struct fix {
	struct steadyfs_opts o;
	struct pool *pool;
	struct control *ctl;
	char dir[64];        /* scratch folder */
	char mnt[128];       /* a mountpoint name (never mounted) */
	char defdir[512];
};

static char scratch[64];

static void fix_init(struct fix *f, const char *extra_opts)
{
	char line[1024], err[256], *argv[16], *save = NULL;
	int argc = 0;

	memset(f, 0, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "%s", scratch);
	snprintf(f->mnt, sizeof(f->mnt), "%s/mnt", scratch);
	snprintf(line, sizeof(line), "steadyfs alice@127.0.0.1:/srv/jobs %s -p 2222 -o connections=3%s%s",
		 f->mnt, extra_opts ? "," : "", extra_opts ? extra_opts : "");
	for (char *t = strtok_r(line, " ", &save); t && argc < 15; t = strtok_r(NULL, " ", &save))
		argv[argc++] = t;
	argv[argc] = NULL;
	if (!CHECK_EQ(steadyfs_opts_parse(&f->o, argc, argv, err, sizeof(err)), 0)) {
		fprintf(stderr, "  %s\n", err);
		abort();
	}
	if (!CHECK(f->pool = pool_new(&f->o)) ||
	    !CHECK(f->ctl = control_new(&f->o, f->pool, f->mnt)))
		abort();
	statedir_for_mount(f->mnt, f->defdir, sizeof(f->defdir));
}

static void fix_release(struct fix *f)
{
	control_free(f->ctl);
	pool_free(f->pool);
	steadyfs_opts_release(&f->o);
}

static char *render(struct control *c, const char *name)
{
	char *out = NULL;
	size_t len = 0;

	if (!CHECK_EQ(control_render(c, name, &out, &len), 0))
		return strdup("");
	CHECK_EQU(strlen(out), len);
	return out;
}

static int count_lines(const char *s)
{
	int n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* The value of "key: value" in status, copied into out ("" if absent). */
static const char *status_value(const char *status, const char *key, char *out, size_t outsz)
{
	size_t kl = strlen(key);

	out[0] = '\0';
	for (const char *l = status; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		if (!strncmp(l, key, kl) && l[kl] == ':' && l[kl + 1] == ' ') {
			size_t n = strcspn(l + kl + 2, "\n");

			snprintf(out, outsz, "%.*s", (int)n, l + kl + 2);
			break;
		}
	}
	return out;
}

/* Whether sample line `l` (up to its newline) matches `series` once its
 * leading mountpoint="..." label is taken out; *value gets the sample. */
static bool series_is(const char *l, const char *series, double *value)
{
	char line[512], *mp, *end;
	size_t n = strcspn(l, "\n");

	if (n >= sizeof(line) || *l == '#')
		return false;
	memcpy(line, l, n);
	line[n] = '\0';
	if ((mp = strstr(line, "{mountpoint=\"")) && (end = strchr(mp + 13, '"'))) {
		end++;
		if (*end == ',')
			memmove(mp + 1, end + 1, strlen(end + 1) + 1);
		else  /* the only label: drop the braces too */
			memmove(mp, end + 1, strlen(end + 1) + 1);
	}
	n = strlen(series);
	if (strncmp(line, series, n) || line[n] != ' ')
		return false;
	*value = strtod(line + n + 1, NULL);
	return true;
}

/* The sample value of `series` (written without the mountpoint label) in
 * metrics text, or -1. */
static double metric(const char *text, const char *series)
{
	double v;

	for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
		if (series_is(l, series, &v))
			return v;
	return -1;
}

/* Every sample line starts name{mountpoint="mnt". */
static bool all_have_mountpoint(const char *text, const char *mnt)
{
	char want[256];

	snprintf(want, sizeof(want), "{mountpoint=\"%s\"", mnt);
	for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		if (*l == '#')
			continue;
		if (strncmp(l + strcspn(l, "{ \n"), want, strlen(want)))
			return false;
	}
	return true;
}

/* ---- rendering with a pool that never connected ------------------------- */

static void test_files_list(void)
{
	char *out;
	size_t len;

	CHECK_STR(control_files[0], "status");
	CHECK_STR(control_files[4], "connections");
	CHECK(control_files[5] == NULL);
	{
		struct fix f;

		fix_init(&f, NULL);
		CHECK_EQ(control_render(f.ctl, "nope", &out, &len), -ENOENT);
		fix_release(&f);
	}
}

static void test_status_text(void)
{
	struct fix f;
	char v[512], *s;

	fix_init(&f, NULL);
	s = render(f.ctl, "status");
	CHECK_STR(status_value(s, "state", v, sizeof(v)), "down");
	CHECK(strstr(status_value(s, "since", v, sizeof(v)), "Z (") != NULL);
	CHECK_STR(status_value(s, "sessions", v, sizeof(v)), "0/3");
	CHECK_STR(status_value(s, "reconnect_attempts", v, sizeof(v)), "0");
	CHECK_STR(status_value(s, "reconnects", v, sizeof(v)), "0");
	CHECK_STR(status_value(s, "calls_inflight", v, sizeof(v)), "0");
	CHECK_STR(status_value(s, "unacked_bytes", v, sizeof(v)), "0");
	CHECK_STR(status_value(s, "missing_extensions", v, sizeof(v)), "none");
	CHECK_STR(status_value(s, "last_error", v, sizeof(v)), "none");
	CHECK_STR(status_value(s, "remote", v, sizeof(v)), "alice@127.0.0.1:2222:/srv/jobs");
	CHECK_STR(status_value(s, "mountpoint", v, sizeof(v)), f.mnt);
	CHECK_STR(status_value(s, "state_dir", v, sizeof(v)), f.defdir);
	CHECK(status_value(s, "version", v, sizeof(v))[0] != '\0');
	CHECK_EQ(atol(status_value(s, "pid", v, sizeof(v))), getpid());
	CHECK_STR(status_value(s, "running", v, sizeof(v)), "yes");
	CHECK(strstr(status_value(s, "uptime", v, sizeof(v)), " s") != NULL);
	/* Every line is "key: value". */
	for (char *l = s; *l; l = strchr(l, '\n') + 1)
		CHECK(strcspn(l, ":") < strcspn(l, "\n"));
	free(s);
	fix_release(&f);
}

static void test_status_json(void)
{
	static const char *const keys[] = {
		"state", "since", "updated", "pid", "mountpoint", "sessions_up",
		"sessions_total", "reconnect_attempts", "reconnects", "calls_inflight",
		"oldest_call_age", "unacked_bytes", "oldest_unacked_age",
		"missing_extensions", "last_error", "remote", "version", "uptime",
		NULL,
	};
	struct json_object *o, *v;
	struct fix f;
	char *s;
	double now = clock_wall();

	fix_init(&f, NULL);
	s = render(f.ctl, "status.json");
	o = json_tokener_parse(s);
	if (CHECK(o && json_object_is_type(o, json_type_object))) {
		for (int i = 0; keys[i]; i++)
			if (!CHECK(json_object_object_get_ex(o, keys[i], NULL)))
				fprintf(stderr, "  missing key %s\n", keys[i]);
		json_object_object_get_ex(o, "state", &v);
		CHECK_STR(json_object_get_string(v), "down");
		json_object_object_get_ex(o, "updated", &v);
		CHECK(json_object_is_type(v, json_type_double));
		CHECK(json_object_get_double(v) > now - 5 && json_object_get_double(v) < now + 5);
		json_object_object_get_ex(o, "pid", &v);
		CHECK_EQ(json_object_get_int64(v), getpid());
		json_object_object_get_ex(o, "mountpoint", &v);
		CHECK_STR(json_object_get_string(v), f.mnt);
		json_object_object_get_ex(o, "last_error", &v);
		CHECK(v == NULL);  /* JSON null */
	}
	json_object_put(o);
	free(s);
	fix_release(&f);
}

static void test_connections(void)
{
	struct fix f;
	char *s;

	fix_init(&f, NULL);
	s = render(f.ctl, "connections");
	CHECK_EQ(count_lines(s), 3);
	CHECK(strncmp(s, "id=0 state=down since=", 22) == 0);
	CHECK(strstr(s, "\nid=2 state=down ") != NULL);
	CHECK(strstr(s, " inflight=0 last_rtt=0.000000 reconnects=0 attempts=0\n") != NULL);
	free(s);
	fix_release(&f);
}

/* ---- counters ------------------------------------------------------------ */

static void gauges(void *arg, struct control_gauges *g)
{
	int *calls = arg;

	(*calls)++;
	g->unacked_bytes = 12345;
	g->oldest_unacked_age = 1.5;
	g->calls_inflight = 7;
	g->oldest_call_age = 2.25;
}

static void test_metrics_values(void)
{
	struct fix f;
	int gauge_calls = 0;
	char *m, *s, v[256];

	fix_init(&f, NULL);
	control_set_gauges(f.ctl, gauges, &gauge_calls);
	control_record_call(f.ctl, "write", 0.003, 0);
	control_record_call(f.ctl, "write", 0.2, EIO);
	control_record_call(f.ctl, "write", 100, -EIO);  /* past the last bound */
	control_record_call(f.ctl, "lookup", 0.0001, ENOENT);
	control_record_call(f.ctl, "frobnicate", 0.01, 0);
	control_record_call(f.ctl, "read", 0.01, 4000);  /* no such errno */
	control_add_bytes(f.ctl, 100, 2000);
	control_add_bytes(f.ctl, 1, 2);
	control_note_missing_ext(f.ctl, SFTP_EXT_FSYNC);
	control_note_missing_ext(f.ctl, SFTP_EXT_HARDLINK);

	m = render(f.ctl, "metrics");
	CHECK(gauge_calls == 1);
	CHECK_EQ(metric(m, "steadyfs_state{state=\"down\"}"), 1);
	CHECK_EQ(metric(m, "steadyfs_state{state=\"connected\"}"), 0);
	CHECK_EQ(metric(m, "steadyfs_state{state=\"degraded\"}"), 0);
	CHECK_EQ(metric(m, "steadyfs_sessions_up"), 0);
	CHECK_EQ(metric(m, "steadyfs_sessions_configured"), 3);
	CHECK_EQ(metric(m, "steadyfs_calls_total{op=\"write\"}"), 3);
	CHECK_EQ(metric(m, "steadyfs_calls_total{op=\"other\"}"), 1);
	CHECK_EQ(metric(m, "steadyfs_calls_total{op=\"forget\"}"), 0);
	CHECK_EQ(metric(m, "steadyfs_errors_total{op=\"write\",errno=\"EIO\"}"), 2);
	CHECK_EQ(metric(m, "steadyfs_errors_total{op=\"lookup\",errno=\"ENOENT\"}"), 1);
	CHECK_EQ(metric(m, "steadyfs_errors_total{op=\"read\",errno=\"other\"}"), 1);
	CHECK_EQ(metric(m, "steadyfs_errors_total{op=\"statfs\",errno=\"EAGAIN\"}"), 0);
	CHECK_EQ(metric(m, "steadyfs_errors_total{op=\"statfs\",errno=\"ENOENT\"}"), -1);
	CHECK_EQ(metric(m, "steadyfs_call_duration_seconds_bucket{op=\"write\",le=\"0.0025\"}"), 0);
	CHECK_EQ(metric(m, "steadyfs_call_duration_seconds_bucket{op=\"write\",le=\"0.005\"}"), 1);
	CHECK_EQ(metric(m, "steadyfs_call_duration_seconds_bucket{op=\"write\",le=\"0.25\"}"), 2);
	CHECK_EQ(metric(m, "steadyfs_call_duration_seconds_bucket{op=\"write\",le=\"60\"}"), 2);
	CHECK_EQ(metric(m, "steadyfs_call_duration_seconds_bucket{op=\"write\",le=\"+Inf\"}"), 3);
	CHECK_EQ(metric(m, "steadyfs_call_duration_seconds_count{op=\"write\"}"), 3);
	CHECK(metric(m, "steadyfs_call_duration_seconds_sum{op=\"write\"}") > 100.2);
	CHECK_EQ(metric(m, "steadyfs_read_bytes_total"), 101);
	CHECK_EQ(metric(m, "steadyfs_written_bytes_total"), 2002);
	CHECK_EQ(metric(m, "steadyfs_unacked_write_bytes"), 12345);
	CHECK_EQ(metric(m, "steadyfs_calls_inflight"), 7);
	CHECK(metric(m, "steadyfs_oldest_call_age_seconds") == 2.25);
	CHECK(metric(m, "steadyfs_unacked_write_oldest_seconds") == 1.5);
	CHECK_EQ(metric(m, "steadyfs_server_extension_missing{extension=\"fsync@openssh.com\"}"), 1);
	CHECK_EQ(metric(m, "steadyfs_server_extension_missing{extension=\"limits@openssh.com\"}"), 0);
	CHECK(strstr(m, "\nsteadyfs_build_info{mountpoint=\"") != NULL);
	CHECK(metric(m, "steadyfs_build_info{version=\"0.1.0\"}") == 1);
	CHECK_EQ(metric(m, "steadyfs_last_success_timestamp_seconds"), 0);
	CHECK_EQ(metric(m, "steadyfs_session_up{session=\"2\"}"), 0);
	CHECK(all_have_mountpoint(m, f.mnt));
	free(m);

	s = render(f.ctl, "status");
	CHECK_STR(status_value(s, "unacked_bytes", v, sizeof(v)), "12345");
	CHECK_STR(status_value(s, "oldest_unacked_age", v, sizeof(v)), "1.500 s");
	CHECK_STR(status_value(s, "calls_inflight", v, sizeof(v)), "7");
	CHECK_STR(status_value(s, "oldest_call_age", v, sizeof(v)), "2.250 s");
	CHECK_STR(status_value(s, "missing_extensions", v, sizeof(v)),
		  "fsync@openssh.com, hardlink@openssh.com");
	free(s);
	fix_release(&f);
}

/* ---- events -------------------------------------------------------------- */

/* Parses every line of `events` as a JSON object; returns how many parsed
 * and leaves the first and the last in *first and *last (caller puts them). */
static int parse_events(const char *ev, struct json_object **first, struct json_object **last)
{
	int n = 0;
	const char *l = ev;

	*first = *last = NULL;
	while (*l) {
		const char *nl = strchr(l, '\n');
		char *line;
		struct json_object *o;

		if (!nl)
			break;
		line = strndup(l, (size_t)(nl - l));
		o = json_tokener_parse(line);
		free(line);
		if (!o || !json_object_is_type(o, json_type_object)) {
			json_object_put(o);
			return -1;
		}
		n++;
		if (!*first) {
			*first = o;
		} else {
			json_object_put(*last);
			*last = o;
		}
		l = nl + 1;
	}
	return n;
}

static const char *jget(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!o || !json_object_object_get_ex(o, key, &v) || !v)
		return "";
	return json_object_get_string(v);
}

static void test_event_types(void)
{
	struct fix f;
	struct json_object *first, *last;
	char *ev, *s, v[512];

	fix_init(&f, NULL);
	control_event_state(f.ctl, "connected", "down");
	control_event_conn(f.ctl, 2, "reconnect_failed", "connection refused");
	control_event_error(f.ctl, "write", "/jobs/a.warc", EIO, "transport");
	control_event_data(f.ctl, "/jobs/a.warc", 4096, 8192, true, false);
	control_event_data(f.ctl, "/jobs/b.warc", 0, 100, false, true);
	control_event_shadowed(f.ctl, "/.control");
	control_event_conn(f.ctl, 2, "reconnect", "ok");
	ev = render(f.ctl, "events");
	CHECK_EQ(count_lines(ev), 7);
	CHECK_EQ(parse_events(ev, &first, &last), 7);
	CHECK_STR(jget(first, "type"), "state");
	CHECK_STR(jget(first, "from"), "connected");
	CHECK_STR(jget(first, "to"), "down");
	CHECK_STR(jget(first, "seq"), "1");
	CHECK(strlen(jget(first, "time")) == 24);
	CHECK_STR(jget(last, "type"), "session");
	CHECK_STR(jget(last, "event"), "reconnect");
	json_object_put(first);
	json_object_put(last);
	CHECK(strstr(ev, "\"type\":\"session\",\"session\":2,\"event\":\"reconnect_failed\","
		     "\"detail\":\"connection refused\"") != NULL);
	CHECK(strstr(ev, "\"type\":\"error\",\"op\":\"write\",\"path\":\"/jobs/a.warc\","
		     "\"errno\":5,\"errno_name\":\"EIO\",\"message\":\"Input/output error\","
		     "\"cause\":\"transport\"") != NULL);
	CHECK(strstr(ev, "\"type\":\"data\",\"path\":\"/jobs/a.warc\",\"offset\":4096,"
		     "\"length\":8192,\"end\":12288,\"replayed\":true,\"lost\":false") != NULL);
	CHECK(strstr(ev, "\"path\":\"/jobs/b.warc\",\"offset\":0,\"length\":100,\"end\":100,"
		     "\"replayed\":false,\"lost\":true") != NULL);
	CHECK(strstr(ev, "\"type\":\"shadowed\",\"path\":\"/.control\"") != NULL);
	free(ev);

	s = render(f.ctl, "status");
	status_value(s, "last_error", v, sizeof(v));
	CHECK(strstr(v, " write '/jobs/a.warc': EIO (Input/output error), cause transport") != NULL);
	status_value(s, "last_session_error", v, sizeof(v));
	CHECK(strstr(v, " session 2 reconnect_failed: connection refused") != NULL);
	CHECK_STR(status_value(s, "data_lost_bytes", v, sizeof(v)), "100");
	CHECK_STR(status_value(s, "data_replayed_bytes", v, sizeof(v)), "8192");
	free(s);
	s = render(f.ctl, "metrics");
	CHECK_EQ(metric(s, "steadyfs_events_total{type=\"data\"}"), 2);
	CHECK_EQ(metric(s, "steadyfs_data_lost_bytes_total"), 100);
	free(s);
	fix_release(&f);
}

static void test_close_failed(void)
{
	struct fix f;
	char *ev, *s;

	fix_init(&f, NULL);
	control_event_close_failed(f.ctl, "/jobs/c.json", 0, 1100, EIO, "server");
	control_event_close_failed(f.ctl, "/jobs/d.json", 0, 0, EACCES, "server");
	ev = render(f.ctl, "events");
	CHECK(strstr(ev, "\"type\":\"data\",\"path\":\"/jobs/c.json\",\"offset\":0,"
		     "\"length\":1100,\"end\":1100,\"replayed\":false,\"lost\":false,"
		     "\"close_failed\":true,\"errno\":5,\"errno_name\":\"EIO\","
		     "\"cause\":\"server\"") != NULL);
	CHECK(strstr(ev, "\"path\":\"/jobs/d.json\",\"offset\":0,\"length\":0") != NULL);
	free(ev);
	s = render(f.ctl, "metrics");
	CHECK_EQ(metric(s, "steadyfs_close_failures_total"), 2);
	CHECK_EQ(metric(s, "steadyfs_data_lost_bytes_total"), 0);
	free(s);
	fix_release(&f);
}

static void test_ring_keeps_last_1000(void)
{
	struct fix f;
	struct json_object *first, *last;
	char path[64], *ev;

	fix_init(&f, NULL);
	for (int i = 1; i <= 2500; i++) {
		snprintf(path, sizeof(path), "/f%d", i);
		control_event_error(f.ctl, "read", path, EAGAIN, "local");
	}
	ev = render(f.ctl, "events");
	CHECK_EQ(count_lines(ev), 1000);
	CHECK_EQ(parse_events(ev, &first, &last), 1000);
	CHECK_STR(jget(first, "path"), "/f1501");
	CHECK_STR(jget(first, "seq"), "1501");
	CHECK_STR(jget(last, "path"), "/f2500");
	CHECK_STR(jget(last, "errno_name"), "EAGAIN");
	json_object_put(first);
	json_object_put(last);
	free(ev);
	fix_release(&f);
}

/* A long outage: every failed attempt is counted, but a run of identical
 * failures of one session keeps one line, so the records that matter stay
 * in the ring. */
static void test_failed_reconnects_coalesce(void)
{
	struct fix f;
	struct json_object *first, *last;
	char *ev, *m;

	fix_init(&f, NULL);
	control_event_data(f.ctl, "/jobs/keep.warc", 0, 10, true, false);
	for (int i = 0; i < 3000; i++) {
		control_event_conn(f.ctl, i % 2, "reconnect_failed", "connection refused");
		if (i == 1000)
			control_event_error(f.ctl, "write", "/jobs/mid.warc", EIO, "transport");
	}
	control_event_conn(f.ctl, 0, "reconnect_failed", "timed out");   /* new run */
	control_event_conn(f.ctl, 40, "reconnect_failed", "refused");    /* no run kept */
	control_event_conn(f.ctl, 40, "reconnect_failed", "refused");
	ev = render(f.ctl, "events");
	CHECK_EQ(count_lines(ev), 7);
	CHECK_EQ(parse_events(ev, &first, &last), 7);
	CHECK_STR(jget(first, "path"), "/jobs/keep.warc");
	CHECK(strstr(ev, "\"path\":\"/jobs/mid.warc\"") != NULL);
	CHECK(strstr(ev, "\"session\":1,\"event\":\"reconnect_failed\","
		     "\"detail\":\"connection refused\",\"count\":1500,\"first_time\":") != NULL);
	CHECK(strstr(ev, "\"session\":0,\"event\":\"reconnect_failed\","
		     "\"detail\":\"connection refused\",\"count\":1500,") != NULL);
	CHECK(strstr(ev, "\"detail\":\"timed out\",\"count\":1,") != NULL);
	CHECK_STR(jget(last, "detail"), "refused");
	json_object_put(first);
	json_object_put(last);
	free(ev);

	/* A success ends the run: the next failure starts a new line. */
	control_event_conn(f.ctl, 1, "reconnect", "ok");
	control_event_conn(f.ctl, 1, "reconnect_failed", "connection refused");
	ev = render(f.ctl, "events");
	CHECK_EQ(count_lines(ev), 9);
	CHECK(strstr(ev, "\"count\":1500,") != NULL);
	free(ev);
	m = render(f.ctl, "metrics");
	CHECK_EQ(metric(m, "steadyfs_events_total{type=\"session\"}"), 3000 + 3 + 2);
	free(m);
	fix_release(&f);
}

/* Names from a remote server are bytes: the files stay valid UTF-8 and
 * one record per line. */
static void test_hostile_names(void)
{
	struct fix f;
	struct json_object *first, *last;
	char *ev, *s, v[512];

	fix_init(&f, NULL);
	control_event_error(f.ctl, "open", "/bad\xff\xfe name\nwith \"quotes\" \xc3\xa9", EIO,
			    "server");
	ev = render(f.ctl, "events");
	CHECK_EQ(count_lines(ev), 1);
	CHECK_EQ(parse_events(ev, &first, &last), 1);
	CHECK_STR(jget(first, "path"), "/bad\\xff\\xfe name\nwith \"quotes\" \xc3\xa9");
	json_object_put(first);
	json_object_put(last);
	free(ev);
	s = render(f.ctl, "status");
	status_value(s, "last_error", v, sizeof(v));
	CHECK(strstr(v, "'/bad\\xff\\xfe name\\x0awith \"quotes\" \xc3\xa9'") != NULL);
	free(s);
	fix_release(&f);
}

/* ---- threads -------------------------------------------------------------- */

static void *hammer(void *arg)
{
	struct control *c = arg;

	for (int i = 0; i < 3000; i++) {
		control_record_call(c, i % 2 ? "read" : "getattr", 0.001 * (i % 50), i % 7 ? 0 : EIO);
		if (i % 10 == 0)
			control_event_error(c, "read", "/x", EIO, "transport");
		control_add_bytes(c, 1, 1);
	}
	return NULL;
}

static void test_threads(void)
{
	struct fix f;
	pthread_t t[3];
	char *m;

	fix_init(&f, NULL);
	for (int i = 0; i < 3; i++)
		CHECK_EQ(pthread_create(&t[i], NULL, hammer, f.ctl), 0);
	for (int i = 0; i < 20; i++) {
		for (int k = 0; control_files[k]; k++)
			free(render(f.ctl, control_files[k]));
	}
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	m = render(f.ctl, "metrics");
	CHECK_EQ(metric(m, "steadyfs_calls_total{op=\"read\"}") +
		 metric(m, "steadyfs_calls_total{op=\"getattr\"}"), 9000);
	CHECK_EQ(metric(m, "steadyfs_read_bytes_total"), 9000);
	CHECK_EQ(metric(m, "steadyfs_events_total{type=\"error\"}"), 900);
	free(m);
	fix_release(&f);
}

/* ---- promtool ------------------------------------------------------------- */

/* Runs `promtool check metrics` on `text`; returns its exit status, or -1
 * when promtool is not installed. Its output goes to our stderr. */
static int promtool_check(const char *text)
{
	char file[] = "/tmp/test_control.prom.XXXXXX";
	int fd = mkstemp(file), pid, st = -1;
	size_t len = strlen(text);

	if (access(PROMTOOL, X_OK) != 0 || fd < 0) {
		if (fd >= 0) {
			close(fd);
			unlink(file);
		}
		return -1;
	}
	if (write(fd, text, len) != (ssize_t)len || lseek(fd, 0, SEEK_SET) != 0) {
		close(fd);
		unlink(file);
		return 99;
	}
	pid = fork();
	if (pid == 0) {
		dup2(fd, STDIN_FILENO);
		dup2(STDERR_FILENO, STDOUT_FILENO);
		execl(PROMTOOL, "promtool", "check", "metrics", (char *)NULL);
		_exit(127);
	}
	close(fd);
	unlink(file);
	if (pid < 0 || waitpid(pid, &st, 0) != pid)
		return 98;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 97;
}

static void test_promtool(void)
{
	struct fix f;
	char *m;
	int rc;

	fix_init(&f, NULL);
	control_set_gauges(f.ctl, gauges, &(int){ 0 });
	control_record_call(f.ctl, "write", 0.003, EIO);
	control_record_call(f.ctl, "lookup", 0.5, ENOENT);
	control_event_data(f.ctl, "/x", 0, 10, false, true);
	m = render(f.ctl, "metrics");
	rc = promtool_check(m);
	if (rc == -1)
		fprintf(stderr, "test_promtool: %s not installed, skipped\n", PROMTOOL);
	else
		CHECK_EQ(rc, 0);
	free(m);
	fix_release(&f);
}

/* ---- the mirror ----------------------------------------------------------- */

/* Polls for `path` with a deadline of `secs`. */
static bool wait_file(const char *path, double secs)
{
	uint64_t end = clock_mono_ns() + clock_s_to_ns(secs);

	while (access(path, F_OK) != 0) {
		if (clock_mono_ns() > end)
			return false;
		nanosleep(&(struct timespec){ 0, 20 * 1000 * 1000 }, NULL);
	}
	return true;
}

static void check_mode(const char *path, mode_t want)
{
	struct stat st;

	if (CHECK_EQ(stat(path, &st), 0) && !CHECK_EQ(st.st_mode & 07777, want))
		fprintf(stderr, "  %s\n", path);
}

static void test_mirror_default_link(void)
{
	char opts[512], sd[128], tf[128], p[PATH_MAX], link[PATH_MAX], err[256];
	struct mirror_status ms;
	struct fix f;
	ssize_t n;

	snprintf(sd, sizeof(sd), "%s/state", scratch);
	snprintf(tf, sizeof(tf), "%s/tf/steadyfs.prom", scratch);
	snprintf(p, sizeof(p), "%s/tf", scratch);
	CHECK_EQ(mkdir(p, 0755), 0);
	snprintf(opts, sizeof(opts), "state_dir=%s,metrics_textfile=%s", sd, tf);
	fix_init(&f, opts);
	/* A stale link from an earlier mount is replaced. */
	CHECK_EQ(mkdir(STATEDIR_BASE, 0755) == 0 || errno == EEXIST, 1);
	unlink(f.defdir);
	CHECK_EQ(symlink("/nonexistent/old", f.defdir), 0);

	CHECK_EQ(control_start(f.ctl, err, sizeof(err)), 0);
	snprintf(p, sizeof(p), "%s/connections", sd);
	CHECK(wait_file(p, 5));
	CHECK(wait_file(tf, 5));
	/* Private: the events name paths (issue 15); the textfile names
	 * none but the mountpoint and stays readable by node_exporter. */
	check_mode(sd, 0700);
	for (int i = 0; control_files[i]; i++) {
		snprintf(p, sizeof(p), "%s/%s", sd, control_files[i]);
		check_mode(p, 0600);
	}
	check_mode(tf, 0644);
	n = readlink(f.defdir, link, sizeof(link) - 1);
	if (CHECK(n > 0)) {
		link[n] = '\0';
		CHECK_STR(link, sd);
	}
	/* The probe's reader finds it through the default path. */
	mirror_read(f.defdir, clock_wall(), &ms);
	CHECK_EQ(ms.health, MIRROR_FRESH);
	CHECK_STR(ms.state, "down");
	CHECK_EQ(ms.pid, getpid());

	/* An event reaches the mirror within a second. */
	control_event_data(f.ctl, "/jobs/fresh.warc", 0, 1, false, true);
	{
		uint64_t end = clock_mono_ns() + clock_s_to_ns(1.5);
		bool seen = false;
		char ep[PATH_MAX];

		snprintf(ep, sizeof(ep), "%s/events", sd);
		while (!seen && clock_mono_ns() < end) {
			FILE *fp = fopen(ep, "r");
			char buf[4096];
			size_t got = fp ? fread(buf, 1, sizeof(buf) - 1, fp) : 0;

			if (fp)
				fclose(fp);
			buf[got] = '\0';
			seen = strstr(buf, "fresh.warc") != NULL;
			if (!seen)
				nanosleep(&(struct timespec){ 0, 20 * 1000 * 1000 }, NULL);
		}
		CHECK(seen);
	}

	control_free(f.ctl);
	f.ctl = NULL;
	mirror_read(sd, clock_wall(), &ms);
	CHECK_EQ(ms.health, MIRROR_FRESH);
	CHECK_STR(ms.state, "down");
	{
		struct json_object *o;

		snprintf(p, sizeof(p), "%s/status.json", sd);
		o = json_object_from_file(p);
		CHECK_STR(jget(o, "running"), "false");
		json_object_put(o);
	}
	fix_release(&f);
	unlink(f.defdir);
}

static void test_mirror_real_dir_kept(void)
{
	char opts[256], sd[128], p[PATH_MAX], err[256];
	struct fix f;
	struct stat st;

	snprintf(sd, sizeof(sd), "%s/state2", scratch);
	snprintf(opts, sizeof(opts), "state_dir=%s", sd);
	fix_init(&f, opts);
	CHECK_EQ(mkdir(STATEDIR_BASE, 0755) == 0 || errno == EEXIST, 1);
	unlink(f.defdir);
	CHECK_EQ(mkdir(f.defdir, 0700), 0);
	CHECK_EQ(control_start(f.ctl, err, sizeof(err)), 0);
	snprintf(p, sizeof(p), "%s/status.json", sd);
	CHECK(wait_file(p, 5));
	CHECK(lstat(f.defdir, &st) == 0 && S_ISDIR(st.st_mode));
	fix_release(&f);
	CHECK_EQ(rmdir(f.defdir), 0);
}

static void test_mirror_default_dir(void)
{
	char p[PATH_MAX], err[256];
	struct fix f;

	fix_init(&f, NULL);
	/* An older steadyfs left it world-readable: it is made private. */
	CHECK_EQ(mkdir(STATEDIR_BASE, 0755) == 0 || errno == EEXIST, 1);
	CHECK_EQ(mkdir(f.defdir, 0755) == 0 || errno == EEXIST, 1);
	CHECK_EQ(chmod(f.defdir, 0755), 0);
	CHECK_EQ(control_start(f.ctl, err, sizeof(err)), 0);
	snprintf(p, sizeof(p), "%s/metrics", f.defdir);
	CHECK(wait_file(p, 5));
	check_mode(f.defdir, 0700);
	fix_release(&f);
	for (int i = 0; control_files[i]; i++) {
		snprintf(p, sizeof(p), "%s/%s", f.defdir, control_files[i]);
		CHECK_EQ(unlink(p), 0);
	}
	CHECK_EQ(rmdir(f.defdir), 0);
}

/* state_group=: folder 0750 and files 0640, in that group. */
static void test_mirror_shared_with_group(void)
{
	char opts[256], sd[128], p[PATH_MAX], err[256];
	struct fix f;
	struct stat st;

	snprintf(sd, sizeof(sd), "%s/state3", scratch);
	snprintf(opts, sizeof(opts), "state_dir=%s,state_group=4242", sd);
	fix_init(&f, opts);
	CHECK_EQ(control_start(f.ctl, err, sizeof(err)), 0);
	/* connections is the last file of a mirror pass */
	snprintf(p, sizeof(p), "%s/connections", sd);
	CHECK(wait_file(p, 5));
	check_mode(sd, 0750);
	CHECK(stat(sd, &st) == 0 && st.st_gid == 4242);
	for (int i = 0; control_files[i]; i++) {
		snprintf(p, sizeof(p), "%s/%s", sd, control_files[i]);
		check_mode(p, 0640);
		CHECK(stat(p, &st) == 0 && st.st_gid == 4242);
	}
	fix_release(&f);
	unlink(f.defdir);
}

static void rm_scratch(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", scratch);
	if (system(cmd) != 0)
		fprintf(stderr, "test_control: cannot remove %s\n", scratch);
}

int main(void)
{
	snprintf(scratch, sizeof(scratch), "/tmp/test_control.XXXXXX");
	if (!mkdtemp(scratch)) {
		perror("mkdtemp");
		return 1;
	}
	log_init("test_control", SLOG_ERR);
	UNIT_RUN(test_files_list);
	UNIT_RUN(test_status_text);
	UNIT_RUN(test_status_json);
	UNIT_RUN(test_connections);
	UNIT_RUN(test_metrics_values);
	UNIT_RUN(test_event_types);
	UNIT_RUN(test_close_failed);
	UNIT_RUN(test_ring_keeps_last_1000);
	UNIT_RUN(test_failed_reconnects_coalesce);
	UNIT_RUN(test_hostile_names);
	UNIT_RUN(test_threads);
	UNIT_RUN(test_promtool);
	if (geteuid() == 0) {
		UNIT_RUN(test_mirror_default_link);
		UNIT_RUN(test_mirror_real_dir_kept);
		UNIT_RUN(test_mirror_default_dir);
		UNIT_RUN(test_mirror_shared_with_group);
	} else {
		fprintf(stderr, "test_control: not root, mirror tests skipped\n");
	}
	rm_scratch();
	return unit_summary("test_control");
}
