/*
 * nodes_int: the node table's private layout and helpers, shared by its
 * files (nodes.c, nodes_links.c, nodes_keep.c; each calls only those
 * listed before it). Not for use elsewhere: the table's contract is
 * nodes.h. Every function here expects t->lock held unless its comment
 * says otherwise.
 *
 * The design (from the file before it was split):
 * nodes: the inode table, two chained hash tables over one node struct:
 * by id, and by (parent id, name). See nodes.h.
 */
#ifndef STEADYFS_NODES_INT_H
#define STEADYFS_NODES_INT_H

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

static inline uint32_t hash_name(uint64_t parent, const char *name)
{
	/* FNV-1a over the parent id and the name. */
	uint64_t h = 1469598103934665603ull ^ parent;

	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		h = (h ^ *p) * 1099511628211ull;
	return (uint32_t)(h ^ (h >> 32)) & (NBUCKETS - 1);
}

static inline struct node *get(struct nodes *t, uint64_t id)
{
	struct node *n = t->by_id[id & (NBUCKETS - 1)];

	while (n && n->id != id)
		n = n->next_id;
	return n;
}

static inline struct node *find(struct nodes *t, uint64_t parent, const char *name)
{
	struct node *n = t->by_name[hash_name(parent, name)];

	while (n && !(n->parent == parent && n->name && !strcmp(n->name, name)))
		n = n->next_name;
	return n;
}

/* One node, or two of one link group (nodes_twin): one file. */
static inline bool same_file(const struct node *a, const struct node *b)
{
	return a && b && (a == b || (a->twins && a->twins == b->twins));
}

/* Whether the kernel or a handle holds node n. */
static inline bool live(const struct node *n)
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
static inline bool kept_for_name(const struct node *n)
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
static inline bool unused(const struct node *n)
{
	return !live(n) && !n->hidden_kids && !kept_for_name(n);
}

/* ---- nodes.c ----------------------------------------------------------- */

/* A hidden node joins (add) or leaves folder `parent`. Lock held. A
 * folder left unused is freed by the next nodes_prune. */
void nodes_count_hidden_kid(struct nodes *t, uint64_t parent, bool add);

/* n stays for its name: on its folder's list, so that the folder's
 * freeing frees it too (its path would lead nowhere). False when the
 * folder is not in the table. Lock held (also below). */
bool nodes_keep_link(struct nodes *t, struct node *n);

/* Puts n on the by-name table under (n->parent, n->name). */
void nodes_link_name(struct nodes *t, struct node *n);

/* Takes n off the by-name table and frees its name (none
 * left: n->name NULL). No-op when n has no name. */
void nodes_unlink_name(struct nodes *t, struct node *n);

/*
 * Takes n out of its link group's ring. When n still has its name, the
 * file can be written through that name without steadyfs knowing it is
 * the group's (a later lookup makes a node of its own): the rest of the
 * group is judged by type only from then on (identity.h). Lock held.
 */
void nodes_twin_leave(struct nodes *t, struct node *n);

/* Records in the take-over state that n's name is gone. */
void nodes_record_unlinked(struct nodes *t, struct node *n);

/* n's name is gone from the server: a link group member kept only for
 * its name (unused) goes too. Lock held. */
void nodes_drop_name(struct nodes *t, struct node *n);

#endif
