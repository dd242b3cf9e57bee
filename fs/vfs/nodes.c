/*
 * nodes: the inode table's names: two chained hash tables over one node
 * struct (by id, and by parent id and name), lookup counts, forget,
 * rename, paths, cached attributes, pins held by open handles. The
 * per-file facts (identity, link groups, hidden names) are in
 * nodes_links.c, restore and end offsets in nodes_keep.c (nodes_int.h).
 * See nodes.h.
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

static int build_path(struct nodes *t, uint64_t id, const char *leaf, char **res);
static void rename_names(struct nodes *t, uint64_t oldparent, const char *oldname,
			 uint64_t newparent, const char *newname, bool maybe_one);
static struct node *nodes_add_locked(struct nodes *t, uint64_t parent, const char *name);
static void nodes_free_node_locked(struct nodes *t, struct node *n);

void nodes_count_hidden_kid(struct nodes *t, uint64_t parent, bool add)
{
	struct node *p = get(t, parent);

	if (p && add)
		p->hidden_kids++;
	else if (p && p->hidden_kids)
		p->hidden_kids--;
}

bool nodes_keep_link(struct nodes *t, struct node *n)
{
	struct node *p = get(t, n->parent);

	if (!p)
		return false;
	n->kept = true;
	n->kept_next = p->kept_head;
	p->kept_head = n;
	return true;
}

/* n is held again, or goes: off its folder's list. */
static void keep_unlink(struct nodes *t, struct node *n)
{
	struct node *p, **pp;

	if (!n->kept)
		return;
	n->kept = false;
	if ((p = get(t, n->parent))) {
		for (pp = &p->kept_head; *pp && *pp != n; pp = &(*pp)->kept_next)
			;
		if (*pp)
			*pp = n->kept_next;
	}
	n->kept_next = NULL;
}

/* Drops remembered name i. Lock held (also below). */
static void gone_drop(struct nodes *t, unsigned i)
{
	free(t->gone[i].path);
	t->gone[i] = t->gone[--t->ngone];
}

/* Whether path is `at` or lies under it. */
static bool path_under(const char *path, const char *at)
{
	size_t l = strlen(at);

	return !strncmp(path, at, l) && (path[l] == '\0' || path[l] == '/');
}

/* Node n of a link group goes while it has its name: the name is
 * remembered, so a later lookup joins the group again (nodes.h). */
static void gone_remember(struct nodes *t, const struct node *n)
{
	unsigned oldest = 0;
	char *path;

	if (!n->twins || !n->name || n->hidden || build_path(t, n->id, NULL, &path))
		return;
	for (unsigned i = 0; i < t->ngone; i++)
		if (!strcmp(t->gone[i].path, path)) {
			gone_drop(t, i);
			break;
		}
	if (t->ngone == GONE_NAMES_MAX) {
		for (unsigned i = 1; i < t->ngone; i++)
			if (t->gone[i].age < t->gone[oldest].age)
				oldest = i;
		gone_drop(t, oldest);
	}
	t->gone[t->ngone++] = (struct gone_name){ path, n->twins, ++t->gone_clock };
}

/* Remembered names at or under `path` no longer name their file (it was
 * removed or replaced); those under `from`, when given, moved to `path`
 * (a rename of a folder). */
static void gone_moved(struct nodes *t, const char *from, const char *path)
{
	for (unsigned i = 0; i < t->ngone;) {
		struct gone_name *g = &t->gone[i];
		char *moved;

		if (path_under(g->path, path)) {
			gone_drop(t, i);
			continue;
		}
		if (from && path_under(g->path, from) &&
		    asprintf(&moved, "%s%s", path, g->path + strlen(from)) >= 0) {
			free(g->path);
			g->path = moved;
		}
		i++;
	}
}

/* The same for (parent, name) and, for a rename, (fparent, fname). */
static void gone_moved_names(struct nodes *t, uint64_t fparent, const char *fname,
			     uint64_t parent, const char *name)
{
	char *from = NULL, *to;

	if (!t->ngone || build_path(t, parent, name, &to))
		return;
	if (fname && build_path(t, fparent, fname, &from))
		from = NULL;
	gone_moved(t, from, to);
	free(from);
	free(to);
}

/* New node n has a name a link group member had when its node went: n
 * joins that group (its ring, when another node of it is in the table,
 * and that node's identity), else starts it again alone. */
static void gone_rejoin(struct nodes *t, struct node *n)
{
	struct node *m = NULL;
	uint32_t twins = 0;
	char *path;

	if (!t->ngone || build_path(t, n->id, NULL, &path))
		return;
	for (unsigned i = 0; i < t->ngone; i++)
		if (!strcmp(t->gone[i].path, path)) {
			twins = t->gone[i].twins;
			gone_drop(t, i);
			break;
		}
	free(path);
	for (size_t i = 0; twins && !m && i < NBUCKETS; i++)
		for (m = t->by_id[i]; m && (m == n || m->twins != twins); m = m->next_id)
			;
	n->twins = twins;
	if (!m)
		return;
	n->twin = m->twin ? m->twin : m;
	m->twin = n;
	n->ident = m->ident;
}

/* n lost a lookup or a pin: kept for its name (on its folder's list:
 * without the folder it cannot be), or freed when unused. */
static void settle_locked(struct nodes *t, struct node *n)
{
	if (!live(n) && !n->kept && kept_for_name(n) && !nodes_keep_link(t, n)) {
		nodes_free_node_locked(t, n);
		return;
	}
	if (unused(n))
		nodes_free_node_locked(t, n);
}

void nodes_link_name(struct nodes *t, struct node *n)
{
	uint32_t h = hash_name(n->parent, n->name);

	n->next_name = t->by_name[h];
	t->by_name[h] = n;
}

void nodes_unlink_name(struct nodes *t, struct node *n)
{
	struct node **pp;

	if (!n->name)
		return;
	pp = &t->by_name[hash_name(n->parent, n->name)];
	while (*pp && *pp != n)
		pp = &(*pp)->next_name;
	if (*pp)
		*pp = n->next_name;
	free(n->name);
	n->name = NULL;
}

/*
 * Take-over records: a node is recorded while the kernel holds lookups on
 * it (the ids the kernel knows must survive a daemon restart); primed
 * nodes without lookups are not. Lock held in each.
 */
static void nodes_record_lookups(struct nodes *t, struct node *n)
{
	if (!t->ks)
		return;
	if (n->slot >= 0) {
		ks_node_nlookup(t->ks, n->slot, n->nlookup);
		return;
	}
	if (!n->name || !n->nlookup)
		return;
	n->slot = ks_node_put(t->ks, n->id, n->parent, n->name, n->nlookup);
	if (n->slot >= 0 && n->end_known)
		ks_node_end(t->ks, n->slot, true, n->end);
	if (n->slot >= 0 && n->ident.known)
		ks_node_ident(t->ks, n->slot, &n->ident);
	if (n->slot >= 0 && n->hidden)
		ks_node_hidden(t->ks, n->slot, true);
	if (n->slot >= 0 && n->twins)
		ks_node_twins(t->ks, n->slot, n->twins);
}

void nodes_twin_leave(struct nodes *t, struct node *n)
{
	struct node *p = n->twin;

	if (!p)
		return;
	while (p->twin != n)
		p = p->twin;
	p->twin = n->twin == p ? NULL : n->twin;
	for (struct node *m = p; n->name && m; m = m->twin == p ? NULL : m->twin) {
		m->ident.shared = true;
		if (t->ks && m->slot >= 0)
			ks_node_ident(t->ks, m->slot, &m->ident);
	}
	n->twin = NULL;
	n->twins = 0;
	if (t->ks && n->slot >= 0)
		ks_node_twins(t->ks, n->slot, 0);
}

void nodes_record_unlinked(struct nodes *t, struct node *n)
{
	if (t->ks && n->slot >= 0)
		ks_node_unlinked(t->ks, n->slot);
}

void nodes_drop_name(struct nodes *t, struct node *n)
{
	nodes_unlink_name(t, n);
	nodes_record_unlinked(t, n);
	if (unused(n))
		nodes_free_node_locked(t, n);
}

struct nodes *nodes_new(const char *base)
{
	struct nodes *t = calloc(1, sizeof(*t));
	struct node *root = calloc(1, sizeof(*root));

	if (!t || !root || !(t->base = strdup(base))) {
		free(t);
		free(root);
		return NULL;
	}
	/* Strip trailing slashes but keep "/" itself. */
	for (size_t l = strlen(t->base); l > 1 && t->base[l - 1] == '/'; l--)
		t->base[l - 1] = 0;
	pthread_mutex_init(&t->lock, NULL);
	root->id = NODE_ROOT;
	root->nlookup = 1;
	root->slot = -1;
	t->by_id[NODE_ROOT] = root;
	t->next = NODE_ROOT + 1;
	return t;
}

void nodes_free(struct nodes *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < NBUCKETS; i++) {
		struct node *n = t->by_id[i];

		while (n) {
			struct node *next = n->next_id;

			free(n->name);
			free(n);
			n = next;
		}
	}
	while (t->ngone)
		gone_drop(t, 0);
	pthread_mutex_destroy(&t->lock);
	free(t->base);
	free(t);
}

uint64_t nodes_ref(struct nodes *t, uint64_t parent, const char *name)
{
	struct node *n;
	uint64_t id = 0;

	pthread_mutex_lock(&t->lock);
	n = find(t, parent, name);
	if (!n && get(t, parent))
		n = nodes_add_locked(t, parent, name);
	if (n) {
		keep_unlink(t, n);  /* a name kept for its group: held again */
		n->nlookup++;
		id = n->id;
		nodes_record_lookups(t, n);
	}
	pthread_mutex_unlock(&t->lock);
	return id;
}

void nodes_forget(struct nodes *t, uint64_t id, uint64_t count)
{
	struct node *n;

	if (id == NODE_ROOT)
		return;
	pthread_mutex_lock(&t->lock);
	n = get(t, id);
	if (n) {
		n->nlookup = count < n->nlookup ? n->nlookup - count : 0;
		nodes_record_lookups(t, n);
		settle_locked(t, n);
	}
	pthread_mutex_unlock(&t->lock);
}

uint64_t nodes_find(struct nodes *t, uint64_t parent, const char *name)
{
	struct node *n;
	uint64_t id;

	pthread_mutex_lock(&t->lock);
	n = find(t, parent, name);
	id = n ? n->id : 0;
	pthread_mutex_unlock(&t->lock);
	return id;
}

/* Builds base + "/a/b/c" walking parents into *res; lock held. Returns
 * 0 or an errno as nodes_path_get(). */
static int build_path(struct nodes *t, uint64_t id, const char *leaf, char **res)
{
	size_t len = strlen(t->base) + (leaf ? strlen(leaf) + 1 : 0) + 2;
	char *out, *p;
	struct node *n;

	*res = NULL;
	for (n = get(t, id); n && n->id != NODE_ROOT; n = get(t, n->parent)) {
		if (!n->name)
			return ESTALE;  /* unlinked: no path any more */
		len += strlen(n->name) + 1;
	}
	if (!n)
		return ESTALE;
	if (!(out = malloc(len)))
		return ENOMEM;
	p = out + len - 1;
	*p = 0;
	if (leaf) {
		p -= strlen(leaf);
		memcpy(p, leaf, strlen(leaf));
		*--p = '/';
	}
	for (n = get(t, id); n->id != NODE_ROOT; n = get(t, n->parent)) {
		p -= strlen(n->name);
		memcpy(p, n->name, strlen(n->name));
		*--p = '/';
	}
	/* Prefix the base; "" base means relative to the server's cwd. */
	if (!t->base[0]) {
		memmove(out, *p == '/' ? p + 1 : p, strlen(*p == '/' ? p + 1 : p) + 1);
		if (!out[0])
			strcpy(out, ".");
	} else {
		size_t bl = strlen(t->base);
		bool slash = t->base[bl - 1] == '/';
		size_t rest = strlen(p);

		if (slash && *p == '/')
			p++, rest--;
		memmove(out + bl, p, rest + 1);
		memcpy(out, t->base, bl);
	}
	/* Only the finished path's length counts ("" base, slashes). */
	if (strlen(out) > SFTP_MAX_PATH) {
		free(out);
		return ENAMETOOLONG;
	}
	*res = out;
	return 0;
}

int nodes_path_get(struct nodes *t, uint64_t id, const char *leaf, char **out)
{
	int err;

	pthread_mutex_lock(&t->lock);
	err = build_path(t, id, leaf, out);
	pthread_mutex_unlock(&t->lock);
	return err;
}

char *nodes_path(struct nodes *t, uint64_t id)
{
	char *s;

	nodes_path_get(t, id, NULL, &s);
	return s;
}

char *nodes_child_path(struct nodes *t, uint64_t parent, const char *name)
{
	char *s;

	nodes_path_get(t, parent, name, &s);
	return s;
}

/* Gives n the name (parent, name), which is free in the table. Lock held;
 * `copy` is a malloc'd copy of name, taken over. */
static void give_name(struct nodes *t, struct node *n, uint64_t parent,
		      const char *name, char *copy)
{
	bool kept = n->kept;

	keep_unlink(t, n);
	nodes_unlink_name(t, n);
	if (n->hidden && n->parent != parent) {
		nodes_count_hidden_kid(t, n->parent, false);
		nodes_count_hidden_kid(t, parent, true);
	}
	n->parent = parent;
	n->name = copy;
	nodes_link_name(t, n);
	if (kept)
		nodes_keep_link(t, n);
	if (t->ks && n->slot >= 0)
		n->slot = ks_node_move(t->ks, n->slot, parent, name);
}

void nodes_rename(struct nodes *t, uint64_t oldparent, const char *oldname,
		  uint64_t newparent, const char *newname)
{
	rename_names(t, oldparent, oldname, newparent, newname, false);
}

void nodes_rename_links(struct nodes *t, uint64_t oldparent, const char *oldname,
			uint64_t newparent, const char *newname)
{
	rename_names(t, oldparent, oldname, newparent, newname, true);
}

static void rename_names(struct nodes *t, uint64_t oldparent, const char *oldname,
			 uint64_t newparent, const char *newname, bool maybe_one)
{
	struct node *n, *victim;
	char *copy = strdup(newname), *back = strdup(oldname);

	pthread_mutex_lock(&t->lock);
	gone_moved_names(t, oldparent, oldname, newparent, newname);
	victim = find(t, newparent, newname);
	n = find(t, oldparent, oldname);
	if (n && copy && back && victim && victim != n &&
	    (maybe_one || same_file(victim, n))) {
		/* Two links of one file: rename(2) did nothing on the server,
		 * but the kernel now has n at the new name and the victim
		 * unlinked. The names swap, so both nodes keep one that leads
		 * to the file (the victim's handles still reopen it). */
		nodes_unlink_name(t, victim);
		give_name(t, n, newparent, newname, copy);
		give_name(t, victim, oldparent, oldname, back);
		copy = back = NULL;
	} else {
		if (victim && victim != n)
			nodes_drop_name(t, victim);
		if (n && copy) {
			give_name(t, n, newparent, newname, copy);
			copy = NULL;
		}
	}
	pthread_mutex_unlock(&t->lock);
	free(copy);
	free(back);
}

void nodes_unlink(struct nodes *t, uint64_t parent, const char *name)
{
	struct node *n;

	pthread_mutex_lock(&t->lock);
	gone_moved_names(t, 0, NULL, parent, name);
	n = find(t, parent, name);
	if (n)
		nodes_drop_name(t, n);
	pthread_mutex_unlock(&t->lock);
}

void nodes_set_attr(struct nodes *t, uint64_t id, const struct stat *st)
{
	struct node *n;

	pthread_mutex_lock(&t->lock);
	n = get(t, id);
	if (n) {
		n->attr = *st;
		n->have_attr = true;
		n->attr_time = clock_mono_ns();
	}
	pthread_mutex_unlock(&t->lock);
}

bool nodes_get_fresh_attr(struct nodes *t, uint64_t id, uint64_t max_age_ns,
			  struct stat *st)
{
	struct node *n;
	bool ok = false;

	pthread_mutex_lock(&t->lock);
	n = get(t, id);
	if (n && n->have_attr && clock_mono_ns() - n->attr_time <= max_age_ns) {
		*st = n->attr;
		ok = true;
	}
	pthread_mutex_unlock(&t->lock);
	return ok;
}

/* Creates the node (parent, name) with no reference; lock held. */
static struct node *nodes_add_locked(struct nodes *t, uint64_t parent, const char *name)
{
	struct node *n = calloc(1, sizeof(*n));

	if (!n || !(n->name = strdup(name))) {
		free(n);
		return NULL;
	}
	n->id = t->next++;
	n->slot = -1;
	if (t->ks)
		ks_set_next_id(t->ks, t->next);
	n->parent = parent;
	n->next_id = t->by_id[n->id & (NBUCKETS - 1)];
	t->by_id[n->id & (NBUCKETS - 1)] = n;
	nodes_link_name(t, n);
	gone_rejoin(t, n);  /* a name of a forgotten link group */
	return n;
}

void nodes_prime(struct nodes *t, uint64_t parent, const char *name,
		 const struct stat *st)
{
	struct node *n;

	pthread_mutex_lock(&t->lock);
	n = find(t, parent, name);
	if (!n && get(t, parent))
		n = nodes_add_locked(t, parent, name);
	if (n) {
		uint64_t id = n->id;

		n->attr = *st;
		n->attr.st_ino = id;
		n->have_attr = true;
		n->attr_time = clock_mono_ns();
	}
	pthread_mutex_unlock(&t->lock);
}

static void nodes_free_node_locked(struct nodes *t, struct node *n)
{
	struct node **pp, *rest = n->twin;

	keep_unlink(t, n);
	/* The names kept in a folder that goes would lead nowhere. */
	while (n->kept_head) {
		struct node *g = n->kept_head;

		keep_unlink(t, g);
		nodes_free_node_locked(t, g);
	}
	gone_remember(t, n);  /* while its folders are still known */
	nodes_twin_leave(t, n);  /* before its name goes: see there */
	nodes_unlink_name(t, n);
	if (n->hidden) {
		t->nhidden--;
		nodes_count_hidden_kid(t, n->parent, false);
	}
	if (t->ks && n->slot >= 0)
		ks_node_drop(t->ks, n->slot);
	pp = &t->by_id[n->id & (NBUCKETS - 1)];
	while (*pp != n)
		pp = &(*pp)->next_id;
	*pp = n->next_id;
	free(n);
	/* The names kept for the group (kept_for_name) go with its last
	 * held member, one by one (each frees the next). */
	if (rest && unused(rest))
		nodes_free_node_locked(t, rest);
}

void nodes_prune(struct nodes *t, uint64_t max_age_ns)
{
	uint64_t now = clock_mono_ns();

	pthread_mutex_lock(&t->lock);
	for (size_t i = 0; i < NBUCKETS; i++) {
		struct node *n = t->by_id[i];

		while (n) {
			struct node *next = n->next_id;

			/* Not a link group member nor a folder of kept
			 * names: its freeing may free the rest of the group
			 * or those names (free_node_locked), `next` too. */
			if (unused(n) && !n->twin && !n->kept_head &&
			    !n->end_known && now - n->attr_time > max_age_ns)
				nodes_free_node_locked(t, n);
			n = next;
		}
	}
	pthread_mutex_unlock(&t->lock);
}

bool nodes_get_attr(struct nodes *t, uint64_t id, struct stat *st)
{
	struct node *n;
	bool ok = false;

	pthread_mutex_lock(&t->lock);
	n = get(t, id);
	if (n && n->have_attr) {
		*st = n->attr;
		ok = true;
	}
	pthread_mutex_unlock(&t->lock);
	return ok;
}

void nodes_pin(struct nodes *t, uint64_t id)
{
	struct node *n;

	pthread_mutex_lock(&t->lock);
	if ((n = get(t, id))) {
		keep_unlink(t, n);
		n->pins++;
	}
	pthread_mutex_unlock(&t->lock);
}

void nodes_unpin(struct nodes *t, uint64_t id)
{
	struct node *n;

	pthread_mutex_lock(&t->lock);
	n = get(t, id);
	if (n && n->pins)
		n->pins--;
	if (n)
		settle_locked(t, n);
	pthread_mutex_unlock(&t->lock);
}
