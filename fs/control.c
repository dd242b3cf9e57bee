/*
 * control: placeholder so the tree links while the real module (events
 * ring, metrics, mirror) is being written. See control.h.
 */
#include "control.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const control_files[] = {
	"status", "status.json", "metrics", "events", "connections", NULL
};

struct control {
	struct pool *pool;
};

struct control *control_new(const struct steadyfs_opts *o, struct pool *p,
			    const char *mountpoint)
{
	struct control *c = calloc(1, sizeof(*c));

	if (c)
		c->pool = p;
	return c;
}

void control_set_gauges(struct control *c, control_gauge_fn fn, void *arg) {}
int control_start(struct control *c, char *err, size_t errsz) { return 0; }
void control_free(struct control *c) { free(c); }
void control_event_state(struct control *c, const char *from, const char *to) {}
void control_event_conn(struct control *c, int idx, const char *what,
			const char *detail) {}
void control_event_error(struct control *c, const char *op, const char *path,
			 int errnum, const char *cause) {}
void control_event_data(struct control *c, const char *path, uint64_t off,
			uint64_t len, bool replayed, bool lost) {}
void control_note_missing_ext(struct control *c, uint32_t ext_bit) {}
void control_record_call(struct control *c, const char *op, double seconds,
			 int errnum) {}
void control_add_bytes(struct control *c, uint64_t read, uint64_t written) {}

int control_render(struct control *c, const char *name, char **out, size_t *len)
{
	char *s = malloc(64);

	if (!s)
		return -ENOMEM;
	snprintf(s, 64, "state: %s\n", pool_state_name(pool_state(c->pool)));
	*out = s;
	*len = strlen(s);
	return 0;
}
