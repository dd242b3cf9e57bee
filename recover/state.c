/*
 * state: sightings and recovery history in state.json. See state.h.
 */
#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "atomicfile.h"
#include "jsonutil.h"
#include "mounttab.h"

#define STATE_VERSION 1
/* A state file larger than this is not ours. */
#define STATE_MAX_BYTES (8 << 20)

/* Reads the whole file into a NUL-terminated buffer. Returns it, or NULL
 * with errno (ENOENT for a missing file, EFBIG when too large). */
static char *slurp(const char *path)
{
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap);
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || !buf)
		goto fail;
	for (;;) {
		ssize_t n;

		if (len + 1 >= cap) {
			char *nb = cap >= STATE_MAX_BYTES ? NULL : realloc(buf, cap * 2);

			if (!nb) {
				errno = cap >= STATE_MAX_BYTES ? EFBIG : ENOMEM;
				goto fail;
			}
			buf = nb;
			cap *= 2;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto fail;
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	buf[len] = '\0';
	return buf;
fail:
	{
		int e = errno;

		if (fd >= 0)
			close(fd);
		free(buf);
		errno = e;
	}
	return NULL;
}

static double get_num(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_double(v) : 0;
}

static struct sighting *add_sighting(struct recover_state *st, const char *path)
{
	struct sighting *s;

	if (st->n == st->cap) {
		size_t cap = st->cap ? st->cap * 2 : 16;
		struct sighting *v = realloc(st->v, cap * sizeof(*v));

		if (!v)
			return NULL;
		st->v = v;
		st->cap = cap;
	}
	s = &st->v[st->n];
	memset(s, 0, sizeof(*s));
	s->path = strdup(path);
	if (!s->path)
		return NULL;
	st->n++;
	return s;
}

static int parse_sightings(struct recover_state *st, struct json_object *obj)
{
	json_object_object_foreach(obj, key, val) {
		struct json_object *kind;
		struct sighting *s;

		if (!json_object_is_type(val, json_type_object))
			return -1;
		s = add_sighting(st, key);
		if (!s)
			return -1;
		if (json_object_object_get_ex(val, "state", &kind))
			snprintf(s->kind, sizeof(s->kind), "%s", json_object_get_string(kind));
		s->count = (long)get_num(val, "count");
		s->first_seen = get_num(val, "first_seen");
		s->last_seen = get_num(val, "last_seen");
	}
	return 0;
}

static int parse_state(struct recover_state *st, struct json_object *root)
{
	struct json_object *v;

	if (!json_object_is_type(root, json_type_object))
		return -1;
	if (json_object_object_get_ex(root, "sightings", &v) &&
	    parse_sightings(st, v) < 0)
		return -1;
	if (json_object_object_get_ex(root, "attempts", &v)) {
		size_t n;

		if (!json_object_is_type(v, json_type_array))
			return -1;
		n = json_object_array_length(v);
		/* Keep the newest ones if the file holds more than we do. */
		for (size_t i = n > STATE_MAX_ATTEMPTS ? n - STATE_MAX_ATTEMPTS : 0; i < n; i++)
			st->attempts[st->nattempts++] =
				json_object_get_double(json_object_array_get_idx(v, i));
	}
	st->recoveries_total = (long)get_num(root, "recoveries_total");
	st->recoveries_failed = (long)get_num(root, "recoveries_failed");
	st->last_attempt = get_num(root, "last_attempt");
	st->last_success = get_num(root, "last_success");
	st->last_apply_ok = json_object_object_get_ex(root, "last_apply_ok", &v) ?
		json_object_get_boolean(v) : 1;
	return 0;
}

int state_load(struct recover_state *st, const char *path, char *err, size_t errsz)
{
	enum json_tokener_error jerr;
	struct json_object *root;
	char *text;
	int rc;

	memset(st, 0, sizeof(*st));
	st->last_apply_ok = 1;
	text = slurp(path);
	if (!text) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errsz, "cannot read state '%s': %s", path, strerror(errno));
		return -1;
	}
	root = json_tokener_parse_verbose(text, &jerr);
	free(text);
	if (!root) {
		snprintf(err, errsz, "state '%s' is not valid JSON (%s); move it away to "
			 "start afresh", path, json_tokener_error_desc(jerr));
		return -1;
	}
	rc = parse_state(st, root);
	json_object_put(root);
	if (rc < 0) {
		snprintf(err, errsz, "state '%s' is not a steadyfs-recover state file; "
			 "move it away to start afresh", path);
		state_release(st);
		return -1;
	}
	return 0;
}

static struct json_object *build_state(const struct recover_state *st)
{
	struct json_object *root = json_object_new_object();
	struct json_object *sights = json_object_new_object();
	struct json_object *att = json_object_new_array();
	int bad = !root || !sights || !att;

	for (size_t i = 0; !bad && i < st->n; i++) {
		const struct sighting *s = &st->v[i];
		struct json_object *o = json_object_new_object();

		bad |= !o;
		bad |= jput(o, "state", json_object_new_string(s->kind)) < 0;
		bad |= jput(o, "count", json_object_new_int64(s->count)) < 0;
		bad |= jput(o, "first_seen", json_object_new_double(s->first_seen)) < 0;
		bad |= jput(o, "last_seen", json_object_new_double(s->last_seen)) < 0;
		bad |= jput(sights, s->path, o) < 0;
	}
	for (size_t i = 0; !bad && i < st->nattempts; i++)
		bad |= json_object_array_add(att, json_object_new_double(st->attempts[i])) < 0;
	if (!bad) {
		bad |= jput(root, "version", json_object_new_int(STATE_VERSION)) < 0;
		bad |= jput(root, "sightings", sights) < 0;
		sights = NULL;
		bad |= jput(root, "attempts", att) < 0;
		att = NULL;
		bad |= jput(root, "recoveries_total", json_object_new_int64(st->recoveries_total)) < 0;
		bad |= jput(root, "recoveries_failed", json_object_new_int64(st->recoveries_failed)) < 0;
		bad |= jput(root, "last_attempt", json_object_new_double(st->last_attempt)) < 0;
		bad |= jput(root, "last_success", json_object_new_double(st->last_success)) < 0;
		bad |= jput(root, "last_apply_ok", json_object_new_boolean(st->last_apply_ok)) < 0;
	}
	json_object_put(sights);
	json_object_put(att);
	if (bad) {
		json_object_put(root);
		return NULL;
	}
	return root;
}

int state_save(const struct recover_state *st, const char *path, char *err, size_t errsz)
{
	struct json_object *root = build_state(st);
	const char *text;
	int rc;

	if (!root) {
		snprintf(err, errsz, "out of memory building state '%s'", path);
		return -1;
	}
	text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY |
					      JSON_C_TO_STRING_NOSLASHESCAPE);
	rc = text ? atomicfile_write(path, text, strlen(text), 0644, err, errsz) : -1;
	if (!text)
		snprintf(err, errsz, "out of memory writing state '%s'", path);
	json_object_put(root);
	return rc;
}

void state_release(struct recover_state *st)
{
	for (size_t i = 0; i < st->n; i++)
		free(st->v[i].path);
	free(st->v);
	memset(st, 0, sizeof(*st));
}

void state_begin_pass(struct recover_state *st, const char *root)
{
	for (size_t i = 0; i < st->n; i++)
		st->v[i].seen = !mt_path_within(st->v[i].path, root);
}

const struct sighting *state_find(const struct recover_state *st, const char *path)
{
	for (size_t i = 0; i < st->n; i++)
		if (strcmp(st->v[i].path, path) == 0)
			return &st->v[i];
	return NULL;
}

const struct sighting *state_sight(struct recover_state *st, const char *path,
				   const char *kind, double now)
{
	struct sighting *s = (struct sighting *)state_find(st, path);

	if (s && s->seen)
		return s;  /* already counted this pass (stacked mounts) */
	if (s) {
		s->count++;
	} else {
		s = add_sighting(st, path);
		if (!s)
			return NULL;
		s->count = 1;
		s->first_seen = now;
	}
	snprintf(s->kind, sizeof(s->kind), "%s", kind);
	s->last_seen = now;
	s->seen = 1;
	return s;
}

void state_end_pass(struct recover_state *st, const char *root)
{
	size_t out = 0;

	for (size_t i = 0; i < st->n; i++) {
		if (!st->v[i].seen && mt_path_within(st->v[i].path, root)) {
			free(st->v[i].path);
			continue;
		}
		st->v[out++] = st->v[i];
	}
	st->n = out;
}

size_t state_attempts_since(const struct recover_state *st, double now, double window)
{
	size_t n = 0;

	for (size_t i = 0; i < st->nattempts; i++)
		if (st->attempts[i] > now - window)
			n++;
	return n;
}

void state_record_attempt(struct recover_state *st, double now)
{
	if (st->nattempts == STATE_MAX_ATTEMPTS) {
		memmove(st->attempts, st->attempts + 1,
			(STATE_MAX_ATTEMPTS - 1) * sizeof(st->attempts[0]));
		st->nattempts--;
	}
	st->attempts[st->nattempts++] = now;
	st->last_attempt = now;
	st->recoveries_total++;
}
