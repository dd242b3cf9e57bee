/*
 * nodes: the inode table, two chained hash tables over one node struct:
 * by id, and by (parent id, name). See nodes.h.
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

/* Fewer in the restore fuzzer's build, which makes a table per input. */
#ifndef NODES_NBUCKETS
#define NODES_NBUCKETS (1u << 17)
#endif
#define NBUCKETS NODES_NBUCKETS

struct node {
	uint64_t id;
	uint64_t parent;
	char *name;            /* NULL for the root and for unlinked nodes */
	uint64_t nlookup;
	struct stat attr;
	bool have_attr;
	uint64_t attr_time;    /* CLOCK_MONOTONIC ns of attr */
	bool end_known;
	uint64_t end;          /* end-of-file offset for appends */
	struct ident ident;    /* for the "same file?" rule (identity.h) */
	bool hidden;           /* unlinked while open: name is a hidden one */
	/* hidden children: kept while it has any, since their paths go
	 * through it (the kernel may forget a folder it invalidated, a
	 * failed rename's target say, before its hidden file's release) */
	uint32_t hidden_kids;
	uint32_t twins;        /* link group (nodes_twin), 0 none */
	struct node *twin;     /* next of its group's ring, NULL alone */
	uint32_t pins;         /* open handles: kept after the kernel forgets */
	bool kept;             /* kept for its name (kept_for_name), on its
				* folder's kept list */
	struct node *kept_next;
	struct node *kept_head;  /* a folder's kept children */
	int32_t slot;          /* take-over record, -1 when none */
	struct node *next_id;
	struct node *next_name;
};

/* Names of link group members whose nodes went (nodes.h, "forgotten
 * groups"), at most this many: the oldest goes first. */
#define GONE_NAMES_MAX 64

struct gone_name {
	char *path;            /* its remote path when its node went */
	uint32_t twins;        /* the group it named */
	uint64_t age;          /* from nodes.gone_clock: higher is newer */
};

struct nodes {
	pthread_mutex_t lock;  /* protects everything below */
	struct gone_name gone[GONE_NAMES_MAX];
	unsigned ngone;
	uint64_t gone_clock;
	char *base;
	uint64_t next;
	struct keepstate *ks;  /* take-over state, NULL until adopted */
	size_t nhidden;        /* nodes with a hidden name */
	uint32_t next_twins;   /* the last link group handed out */
	struct node *by_id[NBUCKETS];
	struct node *by_name[NBUCKETS];
};

static uint32_t hash_name(uint64_t parent, const char *name)
{
	/* FNV-1a over the parent id and the name. */
	uint64_t h = 1469598103934665603ull ^ parent;

	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		h = (h ^ *p) * 1099511628211ull;
	return (uint32_t)(h ^ (h >> 32)) & (NBUCKETS - 1);
}

static struct node *get(struct nodes *t, uint64_t id)
{
	struct node *n = t->by_id[id & (NBUCKETS - 1)];

	while (n && n->id != id)
		n = n->next_id;
	return n;
}

static struct node *find(struct nodes *t, uint64_t parent, const char *name)
{
	struct node *n = t->by_name[hash_name(parent, name)];

	while (n && !(n->parent == parent && n->name && !strcmp(n->name, name)))
		n = n->next_name;
	return n;
}

/* One node, or two of one link group (nodes_twin): one file. */
static bool same_file(const struct node *a, const struct node *b)
{
	return a && b && (a == b || (a->twins && a->twins == b->twins));
}

/* Whether the kernel or a handle holds node n. */
static bool live(const struct node *n)
{
	return n->id == NODE_ROOT || n->nlookup || n->pins;
}

/* Named link group members the kernel forgot, kept per group at most. */
#define KEPT_NAMES_MAX 4

/*
 * Whether n, which the kernel forgot, stays for its name: it is in a link
 * group another member of which is held, and the group keeps fewer than
 * KEPT_NAMES_MAX such names besides it. A later lookup of the name then
 * finds the group's node (and identity) again instead of making one that
 * a write through the group would not move (identity.h). Memory stays
 * within KEPT_NAMES_MAX per file the kernel holds.
 */
static bool kept_for_name(const struct node *n)
{
	bool held = false;
	unsigned kept = 0;

	if (!n->name || !n->twin)
		return false;
	for (const struct node *m = n->twin; m != n; m = m->twin) {
		if (live(m))
			held = true;
		else if (m->name)
			kept++;
	}
	return held && kept < KEPT_NAMES_MAX;
}

/* Whether nothing needs node n any more: no lookups, no handles, no
 * hidden children, not kept for its name. */
static bool unused(const struct node *n)
{
	return !live(n) && !n->hidden_kids && !kept_for_name(n);
}

/* A hidden node joins (add) or leaves folder `parent`. Lock held. A
 * folder left unused is freed by the next nodes_prune. */
static void count_hidden_kid(struct nodes *t, uint64_t parent, bool add)
{
	struct node *p = get(t, parent);

	if (p && add)
		p->hidden_kids++;
	else if (p && p->hidden_kids)
		p->hidden_kids--;
}

/* n stays for its name: on its folder's list, so that the folder's
 * freeing frees it too (its path would lead nowhere). False when the
 * folder is not in the table. Lock held (also below). */
static bool keep_link(struct nodes *t, struct node *n)
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

static int build_path(struct nodes *t, uint64_t id, const char *leaf, char **res);

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

static void free_node_locked(struct nodes *t, struct node *n);

/* n lost a lookup or a pin: kept for its name (on its folder's list:
 * without the folder it cannot be), or freed when unused. */
static void settle_locked(struct nodes *t, struct node *n)
{
	if (!live(n) && !n->kept && kept_for_name(n) && !keep_link(t, n)) {
		free_node_locked(t, n);
		return;
	}
	if (unused(n))
		free_node_locked(t, n);
}

static void link_name(struct nodes *t, struct node *n)
{
	uint32_t h = hash_name(n->parent, n->name);

	n->next_name = t->by_name[h];
	t->by_name[h] = n;
}

static void unlink_name(struct nodes *t, struct node *n)
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

static struct node *add_locked(struct nodes *t, uint64_t parent, const char *name);

/*
 * Take-over records: a node is recorded while the kernel holds lookups on
 * it (the ids the kernel knows must survive a daemon restart); primed
 * nodes without lookups are not. Lock held in each.
 */
static void record_lookups(struct nodes *t, struct node *n)
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

/*
 * Takes n out of its link group's ring. When n still has its name, the
 * file can be written through that name without steadyfs knowing it is
 * the group's (a later lookup makes a node of its own): the rest of the
 * group is judged by type only from then on (identity.h). Lock held.
 */
static void twin_leave(struct nodes *t, struct node *n)
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

static void record_end(struct nodes *t, struct node *n)
{
	if (t->ks && n->slot >= 0)
		ks_node_end(t->ks, n->slot, n->end_known, n->end);
}

static void record_unlinked(struct nodes *t, struct node *n)
{
	if (t->ks && n->slot >= 0)
		ks_node_unlinked(t->ks, n->slot);
}

/* n's name is gone from the server: a link group member kept only for
 * its name (unused) goes too. Lock held. */
static void drop_name(struct nodes *t, struct node *n)
{
	unlink_name(t, n);
	record_unlinked(t, n);
	if (unused(n))
		free_node_locked(t, n);
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
		n = add_locked(t, parent, name);
	if (n) {
		keep_unlink(t, n);  /* a name kept for its group: held again */
		n->nlookup++;
		id = n->id;
		record_lookups(t, n);
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
		record_lookups(t, n);
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
	unlink_name(t, n);
	if (n->hidden && n->parent != parent) {
		count_hidden_kid(t, n->parent, false);
		count_hidden_kid(t, parent, true);
	}
	n->parent = parent;
	n->name = copy;
	link_name(t, n);
	if (kept)
		keep_link(t, n);
	if (t->ks && n->slot >= 0)
		n->slot = ks_node_move(t->ks, n->slot, parent, name);
}

static void rename_names(struct nodes *t, uint64_t oldparent, const char *oldname,
			 uint64_t newparent, const char *newname, bool maybe_one);

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
		unlink_name(t, victim);
		give_name(t, n, newparent, newname, copy);
		give_name(t, victim, oldparent, oldname, back);
		copy = back = NULL;
	} else {
		if (victim && victim != n)
			drop_name(t, victim);
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
		drop_name(t, n);
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
static struct node *add_locked(struct nodes *t, uint64_t parent, const char *name)
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
	link_name(t, n);
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
		n = add_locked(t, parent, name);
	if (n) {
		uint64_t id = n->id;

		n->attr = *st;
		n->attr.st_ino = id;
		n->have_attr = true;
		n->attr_time = clock_mono_ns();
	}
	pthread_mutex_unlock(&t->lock);
}

static void free_node_locked(struct nodes *t, struct node *n)
{
	struct node **pp, *rest = n->twin;

	keep_unlink(t, n);
	/* The names kept in a folder that goes would lead nowhere. */
	while (n->kept_head) {
		struct node *g = n->kept_head;

		keep_unlink(t, g);
		free_node_locked(t, g);
	}
	gone_remember(t, n);  /* while its folders are still known */
	twin_leave(t, n);  /* before its name goes: see there */
	unlink_name(t, n);
	if (n->hidden) {
		t->nhidden--;
		count_hidden_kid(t, n->parent, false);
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
		free_node_locked(t, rest);
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
				free_node_locked(t, n);
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
		record_end(t, n);
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
		record_end(t, n);
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
		record_end(t, n);
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
		record_end(t, n);
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
		record_end(t, n);
	}
	/* The other names of the file: an end they know is this one now. */
	for (struct node *p = n ? n->twin : NULL; p && p != n; p = p->twin) {
		if (p->end_known) {
			p->end = end;
			record_end(t, p);
		}
	}
	pthread_mutex_unlock(&t->lock);
}

void nodes_end_forget(struct nodes *t, uint64_t id)
{
	struct node *n;

	pthread_mutex_lock(&t->lock);
	n = get(t, id);
	if (n) {
		n->end_known = false;
		record_end(t, n);
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
		record_end(t, n);
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
		link_name(t, n);
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
				count_hidden_kid(t, x->parent, true);
}

/* The restored names kept for their group go on their folders' lists
 * (a handle's pin takes one off again). Lock held. */
static void keep_restored(struct nodes *t)
{
	for (size_t i = 0; i < NBUCKETS; i++)
		for (struct node *x = t->by_id[i]; x; x = x->next_id)
			if (!live(x) && !x->kept && kept_for_name(x))
				keep_link(t, x);
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

/* ---- identity (identity.h) ---- */

/* Applies fn to node id's identity and records it; false when unknown. */
static bool ident_apply(struct nodes *t, uint64_t id,
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

	ident_apply(t, id, do_seen, &a);
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
	ident_apply(t, id, do_sent, &end);
}

void nodes_ident_acked(struct nodes *t, uint64_t id, uint64_t end)
{
	ident_apply(t, id, do_acked, &end);
}

void nodes_ident_truncated(struct nodes *t, uint64_t id, uint64_t size)
{
	ident_apply(t, id, do_truncated, &size);
}

void nodes_ident_maybe_truncated(struct nodes *t, uint64_t id, uint64_t size)
{
	ident_apply(t, id, do_maybe_truncated, &size);
}

void nodes_ident_touched(struct nodes *t, uint64_t id)
{
	ident_apply(t, id, do_touched, NULL);
}

void nodes_ident_change(struct nodes *t, uint64_t id, bool sent)
{
	ident_apply(t, id, do_change, &sent);
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
		twin_leave(t, b);
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

/* ---- hidden names of unlinked open files ---- */

bool nodes_hidden_name(const char *name, size_t len)
{
	size_t pl = sizeof(NODES_HIDDEN_PREFIX) - 1;

	/* Only the exact form hidden.c makes: ".steadyfs_hidden_notes" is
	 * a user's name like any other. */
	if (len != NODES_HIDDEN_LEN || memcmp(name, NODES_HIDDEN_PREFIX, pl))
		return false;
	for (size_t i = pl; i < len; i++)
		if (!strchr("0123456789abcdef", name[i]) || !name[i])
			return false;
	return true;
}

bool nodes_hide(struct nodes *t, uint64_t id, const char *hidden)
{
	struct node *n;
	char *copy = strdup(hidden);
	bool ok = false;

	pthread_mutex_lock(&t->lock);
	n = get(t, id);
	if (n && n->name && copy) {
		unlink_name(t, n);
		n->name = copy;
		copy = NULL;
		if (!n->hidden) {
			t->nhidden++;
			count_hidden_kid(t, n->parent, true);
		}
		n->hidden = true;
		n->attr.st_nlink = 0;
		link_name(t, n);
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
			drop_name(t, other);
		unlink_name(t, n);
		count_hidden_kid(t, n->parent, false);
		n->parent = parent;
		n->name = copy;
		copy = NULL;
		n->hidden = false;
		t->nhidden--;
		n->attr.st_nlink = 1;
		link_name(t, n);
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
		unlink_name(t, n);
		record_unlinked(t, n);
		count_hidden_kid(t, n->parent, false);
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
