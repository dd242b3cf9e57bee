/*
 * nodes_links: the node table's per-file facts beyond names: the "same
 * file?" baseline (identity.h) each node or link group keeps, the link
 * groups of hard links made through the mount (nodes_twin), and the
 * hidden names of files unlinked or replaced while open (hidden.c).
 * Layout and helpers in nodes_int.h; the contract is nodes.h.
 */

#include "nodes.h"
#include "clock.h"
#include "keepstate.h"
#include "sftp.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nodes_int.h"

size_t nodes_link_peers(struct nodes *t, uint64_t id, uint64_t *out, size_t max)
{
	struct node *n;
	size_t k = 0;

	pthread_mutex_lock(&t->lock);
	n = get(t, id);
	for (struct node *p = n ? n->twin : NULL; p && p != n && k < max;
	     p = p->twin) {
		p->attr_time = 0;  /* no longer fresh: ask the server */
		out[k++] = p->id;
	}
	pthread_mutex_unlock(&t->lock);
	return k;
}

/* Applies fn to node id's identity and records it; false when unknown. */
static bool nodes_ident_apply(struct nodes *t, uint64_t id,
			void (*fn)(struct ident *, const void *), const void *arg)
{
	struct node *n;

	pthread_mutex_lock(&t->lock);
	n = get(t, id);
	/* One file, one identity: every node of its link group. */
	for (struct node *m = n; m; m = m->twin == n ? NULL : m->twin) {
		fn(&m->ident, arg);
		if (t->ks && m->slot >= 0)
			ks_node_ident(t->ks, m->slot, &m->ident);
	}
	pthread_mutex_unlock(&t->lock);
	return n != NULL;
}

struct seen_arg {
	uint64_t size;
	bool have_mtime, quiet;
	uint32_t mtime, mark;
};

static void do_seen(struct ident *id, const void *arg)
{
	const struct seen_arg *a = arg;

	ident_seen(id, a->size, a->have_mtime, a->mtime, a->quiet, a->mark);
}

static void do_sent(struct ident *id, const void *arg)
{
	ident_sent(id, *(const uint64_t *)arg);
}

static void do_acked(struct ident *id, const void *arg)
{
	ident_acked(id, *(const uint64_t *)arg);
}

static void do_truncated(struct ident *id, const void *arg)
{
	ident_truncated(id, *(const uint64_t *)arg);
}

static void do_maybe_truncated(struct ident *id, const void *arg)
{
	ident_maybe_truncated(id, *(const uint64_t *)arg);
}

static void do_touched(struct ident *id, const void *arg)
{
	ident_touched(id);
}

static void do_change(struct ident *id, const void *arg)
{
	(*(const bool *)arg ? ident_change_sent : ident_change_done)(id);
}

void nodes_ident_seen(struct nodes *t, uint64_t id, uint64_t size,
		      bool have_mtime, uint32_t mtime, bool quiet, uint32_t mark)
{
	struct seen_arg a = { size, have_mtime, quiet, mtime, mark };

	nodes_ident_apply(t, id, do_seen, &a);
}

uint32_t nodes_ident_mark(struct nodes *t, uint64_t id)
{
	struct node *n;
	uint32_t mark = 0;

	pthread_mutex_lock(&t->lock);
	if ((n = get(t, id)))
		mark = ident_mark(&n->ident);
	pthread_mutex_unlock(&t->lock);
	return mark;
}

void nodes_ident_sent(struct nodes *t, uint64_t id, uint64_t end)
{
	nodes_ident_apply(t, id, do_sent, &end);
}

void nodes_ident_acked(struct nodes *t, uint64_t id, uint64_t end)
{
	nodes_ident_apply(t, id, do_acked, &end);
}

void nodes_ident_truncated(struct nodes *t, uint64_t id, uint64_t size)
{
	nodes_ident_apply(t, id, do_truncated, &size);
}

void nodes_ident_maybe_truncated(struct nodes *t, uint64_t id, uint64_t size)
{
	nodes_ident_apply(t, id, do_maybe_truncated, &size);
}

void nodes_ident_touched(struct nodes *t, uint64_t id)
{
	nodes_ident_apply(t, id, do_touched, NULL);
}

void nodes_ident_change(struct nodes *t, uint64_t id, bool sent)
{
	nodes_ident_apply(t, id, do_change, &sent);
}

void nodes_ident_seed(struct nodes *t, uint64_t id)
{
	struct node *n;

	pthread_mutex_lock(&t->lock);
	n = get(t, id);
	if (n && !n->ident.known && n->have_attr) {
		ident_seen(&n->ident, (uint64_t)n->attr.st_size, true,
			   (uint32_t)n->attr.st_mtime, true,
			   ident_mark(&n->ident));
		for (struct node *m = n; m; m = m->twin == n ? NULL : m->twin) {
			m->ident = n->ident;
			if (t->ks && m->slot >= 0)
				ks_node_ident(t->ks, m->slot, &m->ident);
		}
	}
	pthread_mutex_unlock(&t->lock);
}

void nodes_twin(struct nodes *t, uint64_t src, uint64_t dst)
{
	struct node *a, *b;

	pthread_mutex_lock(&t->lock);
	a = get(t, src);
	b = get(t, dst);
	if (a && b && a != b && (!a->twins || a->twins != b->twins)) {
		nodes_twin_leave(t, b);
		if (!a->twins) {
			if (!++t->next_twins)
				t->next_twins = 1;
			a->twins = t->next_twins;
			if (t->ks && a->slot >= 0)
				ks_node_twins(t->ks, a->slot, a->twins);
		}
		b->twins = a->twins;
		b->twin = a->twin ? a->twin : a;
		a->twin = b;
		b->ident = a->ident;
		if (t->ks && b->slot >= 0) {
			ks_node_twins(t->ks, b->slot, b->twins);
			ks_node_ident(t->ks, b->slot, &b->ident);
		}
	}
	pthread_mutex_unlock(&t->lock);
}

bool nodes_same_file(struct nodes *t, uint64_t a, uint64_t b)
{
	bool same;

	pthread_mutex_lock(&t->lock);
	same = same_file(get(t, a), get(t, b));
	pthread_mutex_unlock(&t->lock);
	return same;
}

size_t nodes_twins(struct nodes *t, uint64_t id, uint64_t *ids, size_t max)
{
	struct node *n;
	size_t k = 0;

	pthread_mutex_lock(&t->lock);
	n = get(t, id);
	for (struct node *m = n; m && k < max; m = m->twin == n ? NULL : m->twin)
		ids[k++] = m->id;
	pthread_mutex_unlock(&t->lock);
	return k;
}

bool nodes_ident_get(struct nodes *t, uint64_t id, struct ident *out)
{
	struct node *n;

	pthread_mutex_lock(&t->lock);
	n = get(t, id);
	if (n)
		*out = n->ident;
	pthread_mutex_unlock(&t->lock);
	return n != NULL;
}

bool nodes_hide(struct nodes *t, uint64_t id, const char *hidden)
{
	struct node *n;
	char *copy = strdup(hidden);
	bool ok = false;

	pthread_mutex_lock(&t->lock);
	n = get(t, id);
	if (n && n->name && copy) {
		nodes_unlink_name(t, n);
		n->name = copy;
		copy = NULL;
		if (!n->hidden) {
			t->nhidden++;
			nodes_count_hidden_kid(t, n->parent, true);
		}
		n->hidden = true;
		n->attr.st_nlink = 0;
		nodes_link_name(t, n);
		if (t->ks && n->slot >= 0) {
			n->slot = ks_node_move(t->ks, n->slot, n->parent, hidden);
			ks_node_hidden(t->ks, n->slot, true);
		}
		ok = true;
	}
	pthread_mutex_unlock(&t->lock);
	free(copy);
	return ok;
}

void nodes_unhide(struct nodes *t, uint64_t id, uint64_t parent, const char *name)
{
	struct node *n, *other;
	char *copy = strdup(name);

	pthread_mutex_lock(&t->lock);
	n = get(t, id);
	if (n && n->hidden && copy) {
		if ((other = find(t, parent, name)) && other != n)
			nodes_drop_name(t, other);
		nodes_unlink_name(t, n);
		nodes_count_hidden_kid(t, n->parent, false);
		n->parent = parent;
		n->name = copy;
		copy = NULL;
		n->hidden = false;
		t->nhidden--;
		n->attr.st_nlink = 1;
		nodes_link_name(t, n);
		if (t->ks && n->slot >= 0) {
			n->slot = ks_node_move(t->ks, n->slot, parent, name);
			ks_node_hidden(t->ks, n->slot, false);
		}
	}
	pthread_mutex_unlock(&t->lock);
	free(copy);
}

bool nodes_is_hidden(struct nodes *t, uint64_t id)
{
	struct node *n;
	bool h;

	pthread_mutex_lock(&t->lock);
	n = get(t, id);
	h = n && n->hidden;
	pthread_mutex_unlock(&t->lock);
	return h;
}

void nodes_hidden_gone(struct nodes *t, uint64_t id)
{
	struct node *n;

	pthread_mutex_lock(&t->lock);
	n = get(t, id);
	if (n && n->hidden) {
		nodes_unlink_name(t, n);
		nodes_record_unlinked(t, n);
		nodes_count_hidden_kid(t, n->parent, false);
		n->hidden = false;
		t->nhidden--;
		if (t->ks && n->slot >= 0)
			ks_node_hidden(t->ks, n->slot, false);
	}
	pthread_mutex_unlock(&t->lock);
}

size_t nodes_hidden_list(struct nodes *t, uint64_t parent, uint64_t *ids,
			 size_t max)
{
	size_t k = 0;

	pthread_mutex_lock(&t->lock);
	for (size_t i = 0; t->nhidden && i < NBUCKETS && k < max; i++)
		for (struct node *n = t->by_id[i]; n && k < max; n = n->next_id)
			if (n->hidden && (!parent || n->parent == parent))
				ids[k++] = n->id;
	pthread_mutex_unlock(&t->lock);
	return k;
}
