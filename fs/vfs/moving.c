/*
 * moving: name changes in flight; see moving.h.
 */
#include "moving.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "vfs_int.h"

struct move_mark {
	const struct op *op;
	char *path;
	struct move_mark *next;
};

void moving_mark(struct op *op, const char *path)
{
	struct vfs *v = op->v;
	struct move_mark *m = calloc(1, sizeof(*m));

	if (!m || !path || !(m->path = strdup(path))) {
		free(m);
		return;
	}
	m->op = op;
	pthread_mutex_lock(&v->lock);
	m->next = v->marks;
	v->marks = m;
	op->marked = true;
	pthread_mutex_unlock(&v->lock);
}

/* Whether path is `at` or lies under it. */
static bool under(const char *path, const char *at)
{
	size_t n = strlen(at);

	return !strncmp(path, at, n) && (path[n] == '\0' || path[n] == '/');
}

/* Whether a mark covers path. vfs->lock held. */
static bool covered_locked(const struct vfs *v, const char *path)
{
	for (const struct move_mark *m = v->marks; m; m = m->next)
		if (under(path, m->path))
			return true;
	return false;
}

/* Takes off v->parked the reopens no mark covers (all: every one).
 * vfs->lock held. */
static struct op *take_parked_locked(struct vfs *v, bool all)
{
	struct op *out = NULL, **pp = &v->parked;

	while (*pp) {
		struct op *rop = *pp;

		if (all || !covered_locked(v, rop->path)) {
			*pp = rop->next;
			rop->next = out;
			out = rop;
		} else {
			pp = &rop->next;
		}
	}
	return out;
}

static void resend_all(struct op *list)
{
	while (list) {
		struct op *next = list->next;

		list->next = NULL;
		list->resend(list);
		list = next;
	}
}

void moving_end(struct op *op)
{
	struct vfs *v = op->v;
	struct move_mark *gone = NULL, **pp;
	struct op *wake;

	if (!op->marked)
		return;
	pthread_mutex_lock(&v->lock);
	for (pp = &v->marks; *pp;) {
		struct move_mark *m = *pp;

		if (m->op == op) {
			*pp = m->next;
			m->next = gone;
			gone = m;
		} else {
			pp = &m->next;
		}
	}
	op->marked = false;
	/* Stopping (the pool fails what is in flight): a reopen sent now
	 * would be answered at once, under its handle's lock. Parked ones
	 * stay for moving_take_all. */
	wake = v->stop ? NULL : take_parked_locked(v, false);
	pthread_mutex_unlock(&v->lock);
	while (gone) {
		struct move_mark *next = gone->next;

		free(gone->path);
		free(gone);
		gone = next;
	}
	resend_all(wake);
}

bool moving_wait(struct vfs *v, struct op *rop)
{
	bool park;

	pthread_mutex_lock(&v->lock);
	park = rop->path && rop->resend && covered_locked(v, rop->path);
	if (park) {
		log_info("%s '%s': no such file while a rename there is on its way: waiting for it",
			 rop->name, rop->path);
		rop->next = v->parked;
		v->parked = rop;
	}
	pthread_mutex_unlock(&v->lock);
	return park;
}

struct op *moving_take_all(struct vfs *v)
{
	struct op *all;

	pthread_mutex_lock(&v->lock);
	all = take_parked_locked(v, true);
	pthread_mutex_unlock(&v->lock);
	return all;
}
