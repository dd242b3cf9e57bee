/*
 * statedir: the default mirror path of a steadyfs mount (systemd's path
 * escaping, checked against `systemd-escape --path`) and reading the
 * mirror's status.json with json-c. See statedir.h.
 */
#include "statedir.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jsonutil.h"
#include "paths.h"
#include "statuskeys.h"

/* systemd keeps these bytes as they are (unit_name_escape's whitelist). */
static int escape_keeps(unsigned char c, int first)
{
	if (c >= 'a' && c <= 'z')
		return 1;
	if (c >= 'A' && c <= 'Z')
		return 1;
	if (c >= '0' && c <= '9')
		return 1;
	if (c == ':' || c == '_')
		return 1;
	return c == '.' && !first;
}

/* Appends `n` bytes to out at *len, keeping room for the NUL. */
static int put(char *out, size_t outsz, size_t *len, const char *p, size_t n)
{
	if (*len + n + 1 > outsz) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(out + *len, p, n);
	*len += n;
	out[*len] = '\0';
	return 0;
}

static int put_escaped(char *out, size_t outsz, size_t *len, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		char hex[5];

		if (escape_keeps(c, *len == 0)) {
			if (put(out, outsz, len, (const char *)&c, 1) < 0)
				return -1;
			continue;
		}
		snprintf(hex, sizeof(hex), "\\x%02x", c);
		if (put(out, outsz, len, hex, 4) < 0)
			return -1;
	}
	return 0;
}

int statedir_escape_path(const char *path, char *out, size_t outsz)
{
	size_t len = 0;

	if (path[0] != '/') {
		errno = EINVAL;
		return -1;
	}
	if (outsz == 0) {
		errno = ENAMETOOLONG;
		return -1;
	}
	out[0] = '\0';
	while (*path) {
		const char *end;
		size_t n;

		while (*path == '/')
			path++;
		end = strchrnul(path, '/');
		n = (size_t)(end - path);
		path = end;
		if (n == 0 || (n == 1 && end[-1] == '.'))
			continue;
		if (n == 2 && end[-1] == '.' && end[-2] == '.') {
			errno = EINVAL;  /* systemd refuses: "not a normalized path" */
			return -1;
		}
		if (len > 0 && put(out, outsz, &len, "-", 1) < 0)
			return -1;
		if (put_escaped(out, outsz, &len, end - n, n) < 0)
			return -1;
	}
	if (len == 0)
		return put(out, outsz, &len, "-", 1);
	return 0;
}

int statedir_for_mount(const char *mountpoint, char *out, size_t outsz)
{
	char esc[4096];
	int n;

	if (statedir_escape_path(mountpoint, esc, sizeof(esc)) < 0)
		return -1;
	n = snprintf(out, outsz, "%s/%s", STATEDIR_BASE, esc);
	if (n < 0 || (size_t)n >= outsz) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

int statedir_prepare(const char *dir, bool shared, gid_t gid)
{
	char parent[PATH_MAX];
	const char *slash = strrchr(dir, '/');
	int fd, rc = 0, e;

	if (!slash || (size_t)(slash - dir) >= sizeof(parent)) {
		errno = EINVAL;
		return -1;
	}
	memcpy(parent, dir, (size_t)(slash - dir));
	parent[slash - dir] = '\0';
	if (parent[0] && mkdir_p(parent, 0755) < 0)
		return -1;
	if (mkdir(dir, STATEDIR_DIR_PRIVATE) < 0 && errno != EEXIST)
		return -1;
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (fchmod(fd, shared ? STATEDIR_DIR_SHARED : STATEDIR_DIR_PRIVATE) < 0 ||
	    (shared && fchown(fd, (uid_t)-1, gid) < 0))
		rc = -1;
	e = errno;
	close(fd);
	errno = e;
	return rc;
}

const char *mirror_health_name(enum mirror_health h)
{
	switch (h) {
	case MIRROR_NONE: return "none";
	case MIRROR_FRESH: return "fresh";
	case MIRROR_STALE: return "stale";
	case MIRROR_MISSING: return "missing";
	case MIRROR_BAD: return "bad";
	}
	return "bad";
}

/* Fills `st` from a parsed status.json; 0, or -1 with st->error set. */
static int mirror_from_json(struct json_object *o, double mtime, struct mirror_status *st)
{
	struct json_object *v;
	const char *state;

	if (!json_object_is_type(o, json_type_object)) {
		snprintf(st->error, sizeof(st->error), "status.json is not a JSON object");
		return -1;
	}
	if (!json_object_object_get_ex(o, STATUS_STATE, &v) || !json_object_is_type(v, json_type_string)) {
		snprintf(st->error, sizeof(st->error), "status.json has no \"state\" string");
		return -1;
	}
	state = json_object_get_string(v);
	snprintf(st->state, sizeof(st->state), "%s", state);
	st->since = jget_num(o, STATUS_SINCE, 0);
	st->updated = jget_num(o, STATUS_UPDATED, mtime);
	st->pid = (long)jget_num(o, STATUS_PID, 0);
	st->keeper_pid = (long)jget_num(o, STATUS_KEEPER_PID, 0);
	if (json_object_object_get_ex(o, STATUS_DEVICE, &v) && json_object_is_type(v, json_type_string))
		snprintf(st->device, sizeof(st->device), "%s", json_object_get_string(v));
	return 0;
}

void mirror_read(const char *dir, double now, struct mirror_status *st)
{
	char file[4200];
	struct json_object *o;
	struct stat sb;

	memset(st, 0, sizeof(*st));
	snprintf(st->dir, sizeof(st->dir), "%s", dir);
	snprintf(file, sizeof(file), "%s/" STATUS_FILE, dir);
	if (stat(file, &sb) < 0) {
		st->health = errno == ENOENT || errno == ENOTDIR ? MIRROR_MISSING : MIRROR_BAD;
		snprintf(st->error, sizeof(st->error), "cannot read 'status.json': %s",
			 strerror(errno));
		return;
	}
	o = json_object_from_file(file);
	if (!o) {
		st->health = MIRROR_BAD;
		snprintf(st->error, sizeof(st->error), "cannot parse 'status.json': %s",
			 json_util_get_last_err() ? json_util_get_last_err() : "bad JSON");
		/* json-c's message ends in a newline; the report is one line. */
		st->error[strcspn(st->error, "\n")] = '\0';
		return;
	}
	if (mirror_from_json(o, (double)sb.st_mtim.tv_sec + sb.st_mtim.tv_nsec / 1e9, st) < 0) {
		st->health = MIRROR_BAD;
		json_object_put(o);
		return;
	}
	json_object_put(o);
	st->age = now - st->updated;
	st->health = st->age > MIRROR_STALE_AFTER ? MIRROR_STALE : MIRROR_FRESH;
}
