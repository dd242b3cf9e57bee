/*
 * nodes_keep: the node table across daemons, and each node's end offset:
 * nodes_adopt restores the nodes a previous daemon recorded in the
 * take-over state (rebuilding link groups and hidden counts) and records
 * from then on; the per-node end offset behind O_APPEND and the sizes a
 * writer's queued data implies (nodes_end_*, nodes_append_*). Layout and
 * helpers in nodes_int.h; the contract is nodes.h.
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

static void nodes_record_end(struct nodes *t, struct node *n)
{
	if (t->ks && n->slot >= 0)
		ks_node_end(t->ks, n->slot, n->end_known, n->end);
}

bool nodes_end_known(struct nodes *t, uint64_t id)
{
	struct node *n;
	bool k;

	pthread_mutex_lock(&t->lock);
	n = get(t, id);
	k = n && n->end_known;
	pthread_mutex_unlock(&t->lock);
	return k;
}

void nodes_end_seed(struct nodes *t, uint64_t id, uint64_t size)
{
	struct node *n;

	pthread_mutex_lock(&t->lock);
	n = get(t, id);
	if (n && !n->end_known) {
		n->end = size;
		n->end_known = true;
		nodes_record_end(t, n);
	}
	pthread_mutex_unlock(&t->lock);
}

uint64_t nodes_append_reserve(struct nodes *t, uint64_t id, uint64_t len)
{
	return nodes_append_reserve_noted(t, id, len, NULL, NULL);
}

uint64_t nodes_append_reserve_noted(struct nodes *t, uint64_t id, uint64_t len,
				    void (*note)(void *arg, uint64_t off),
				    void *arg)
{
	struct node *n;
	uint64_t off = 0;

	pthread_mutex_lock(&t->lock);
	n = get(t, id);
	if (n) {
		off = n->end;
		if (note)
			note(arg, off);
		n->end += len;
		n->end_known = true;
		nodes_record_end(t, n);
	}
	pthread_mutex_unlock(&t->lock);
	return off;
}

bool nodes_append_unreserve(struct nodes *t, uint64_t id, uint64_t off,
			    uint64_t len)
{
	struct node *n;
	bool undone = false;

	pthread_mutex_lock(&t->lock);
	n = get(t, id);
	if (n && n->end_known && n->end == off + len) {
		n->end = off;
		nodes_record_end(t, n);
		undone = true;
	}
	pthread_mutex_unlock(&t->lock);
	return undone;
}

void nodes_end_update(struct nodes *t, uint64_t id, uint64_t end)
{
	struct node *n;

	pthread_mutex_lock(&t->lock);
	n = get(t, id);
	if (n && n->end_known && end > n->end) {
		n->end = end;
		nodes_record_end(t, n);
	}
	pthread_mutex_unlock(&t->lock);
}

void nodes_end_set(struct nodes *t, uint64_t id, uint64_t end)
{
	struct node *n;

	pthread_mutex_lock(&t->lock);
	n = get(t, id);
	if (n) {
		n->end = end;
		n->end_known = true;
		nodes_record_end(t, n);
	}
	/* The other names of the file: an end they know is this one now. */
	for (struct node *p = n ? n->twin : NULL; p && p != n; p = p->twin) {
		if (p->end_known) {
			p->end = end;
			nodes_record_end(t, p);
		}
	}
	pthread_mutex_unlock(&t->lock);
}

void nodes_end_forget(struct nodes *t, uint64_t id, bool names)
{
	struct node *n;

	pthread_mutex_lock(&t->lock);
	n = get(t, id);
	if (n && n->end_known) {
		/* Cached attributes (a listing's, maybe from before the writes
		 * landed) showed at least the end (vfs_adjust_size): they keep
		 * that size until the server is asked again, or a listing's
		 * entry and a lookup from the cache would show an older one. */
		if (n->have_attr && (off_t)n->end > n->attr.st_size) {
			n->attr.st_size = (off_t)n->end;
			n->attr.st_blocks = (blkcnt_t)((n->end + 511) / 512);
		}
		n->end_known = false;
		nodes_record_end(t, n);
	}
	/* The other names of the file: their ends may count those bytes
	 * too (nodes_end_set); the next append asks the server. */
	for (struct node *p = n && names ? n->twin : NULL; p && p != n; p = p->twin) {
		if (p->end_known) {
			p->end_known = false;
			nodes_record_end(t, p);
		}
	}
	pthread_mutex_unlock(&t->lock);
}

bool nodes_end_get(struct nodes *t, uint64_t id, uint64_t *end)
{
	struct node *n;
	bool k = false;

	pthread_mutex_lock(&t->lock);
	n = get(t, id);
	if (n && n->end_known) {
		*end = n->end;
		k = true;
	}
	pthread_mutex_unlock(&t->lock);
	return k;
}

void nodes_end_raise(struct nodes *t, uint64_t id, uint64_t end)
{
	struct node *n;

	pthread_mutex_lock(&t->lock);
	n = get(t, id);
	if (n && (!n->end_known || end > n->end)) {
		n->end = end;
		n->end_known = true;
		nodes_record_end(t, n);
	}
	pthread_mutex_unlock(&t->lock);
}

/* One record of the previous daemon back into the table. */
static void restore_one(void *arg, const struct ks_node *r, int32_t slot)
{
	struct nodes *t = arg;
	struct node *n;

	if (r->id == NODE_ROOT || get(t, r->id) || !(n = calloc(1, sizeof(*n)))) {
		ks_node_drop(t->ks, slot);
		return;
	}
	if (!r->unlinked && !(n->name = strdup(r->name))) {
		free(n);
		ks_node_drop(t->ks, slot);
		return;
	}
	n->id = r->id;
	n->parent = r->parent;
	n->nlookup = r->nlookup;
	n->end = r->end;
	n->end_known = r->end_known;
	n->ident = r->ident;
	n->hidden = r->hidden && n->name;
	t->nhidden += n->hidden;
	n->twins = r->twins;
	n->slot = slot;
	n->next_id = t->by_id[n->id & (NBUCKETS - 1)];
	t->by_id[n->id & (NBUCKETS - 1)] = n;
	if (n->name)
		nodes_link_name(t, n);
	if (n->id >= t->next)
		t->next = n->id + 1;
}

static int by_twins(const void *a, const void *b)
{
	uint32_t x = (*(struct node *const *)a)->twins;
	uint32_t y = (*(struct node *const *)b)->twins;

	return x < y ? -1 : x > y;
}

/* The link groups' rings again, from the restored group numbers. A group
 * with one node left is none. Lock held. */
static void rebuild_twins(struct nodes *t)
{
	struct node **v = NULL, **nv;
	size_t n = 0, cap = 0;

	for (size_t i = 0; i < NBUCKETS; i++)
		for (struct node *x = t->by_id[i]; x; x = x->next_id) {
			if (!x->twins)
				continue;
			if (x->twins > t->next_twins)
				t->next_twins = x->twins;
			if (n == cap) {
				cap = cap ? cap * 2 : 16;
				if (!(nv = realloc(v, cap * sizeof(*v)))) {
					x->twins = 0;  /* alone: its rule then judges it alone */
					cap = n;
					continue;
				}
				v = nv;
			}
			v[n++] = x;
		}
	if (n)
		qsort(v, n, sizeof(*v), by_twins);
	for (size_t i = 0, j; i < n; i = j) {
		for (j = i + 1; j < n && v[j]->twins == v[i]->twins; j++)
			v[j - 1]->twin = v[j];
		if (j - i > 1)
			v[j - 1]->twin = v[i];
		else
			v[i]->twins = 0;
	}
	free(v);
}

/* Each restored folder's hidden children (their records come in any
 * order). Lock held. */
static void count_hidden_kids(struct nodes *t)
{
	for (size_t i = 0; i < NBUCKETS; i++)
		for (struct node *x = t->by_id[i]; x; x = x->next_id)
			if (x->hidden)
				nodes_count_hidden_kid(t, x->parent, true);
}

/* The restored names kept for their group go on their folders' lists
 * (a handle's pin takes one off again). Lock held. */
static void keep_restored(struct nodes *t)
{
	for (size_t i = 0; i < NBUCKETS; i++)
		for (struct node *x = t->by_id[i]; x; x = x->next_id)
			if (!live(x) && !x->kept && kept_for_name(x))
				nodes_keep_link(t, x);
}

void nodes_adopt(struct nodes *t, struct keepstate *ks)
{
	pthread_mutex_lock(&t->lock);
	t->ks = ks;
	ks_nodes_each(ks, restore_one, t);
	rebuild_twins(t);
	count_hidden_kids(t);
	keep_restored(t);
	if (ks_next_id(ks) > t->next)
		t->next = ks_next_id(ks);
	ks_set_next_id(ks, t->next);
	pthread_mutex_unlock(&t->lock);
}
