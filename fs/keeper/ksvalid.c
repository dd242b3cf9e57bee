/*
 * ksvalid: the check of a take-over state before a restore; the rules are
 * in ksvalid.h. One pass per table, in the order the rules need: the
 * header (the tables' extents), the node records one by one, then their
 * parent chains (which need every node), then the handle records (which
 * point at nodes), the events ring and the in-flight ids.
 */
#include "ksvalid.h"

#include "keepstate_int.h"
#include "names.h"
#include "nodes.h"

#include <fcntl.h>
#include <json-c/json.h>
#include <linux/fuse.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ERRNO 4095

/* Notes one problem: the first one's text is kept for the report. */
static void problem(struct ks_report *rep, unsigned *count, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void problem(struct ks_report *rep, unsigned *count, const char *fmt, ...)
{
	va_list ap;

	(*count)++;
	if (rep->first[0])
		return;
	va_start(ap, fmt);
	vsnprintf(rep->first, sizeof(rep->first), fmt, ap);
	va_end(ap);
}

unsigned ks_report_total(const struct ks_report *rep)
{
	return rep->header + rep->nodes + rep->handles + rep->events + rep->inflight;
}

static bool printable(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

/* ---- header ------------------------------------------------------------ */

static bool init_ok(const struct hdr *h)
{
	const struct fuse_in_header *in = (const void *)h->init;
	const struct fuse_init_in *init = (const void *)(in + 1);

	if (!h->init_len)
		return true;
	/* The smallest INIT any kernel sends: major and minor. */
	if (h->init_len > INIT_MAX || h->init_len < sizeof(*in) + 2 * sizeof(uint32_t))
		return false;
	return in->len == h->init_len && in->opcode == FUSE_INIT &&
	       init->major == FUSE_KERNEL_VERSION;
}

static const char *pending_problem(const struct pslot *s)
{
	uint32_t st = __atomic_load_n(&s->state, __ATOMIC_ACQUIRE);

	if (st == ST_FREE)
		return NULL;
	if (st != ST_LIVE)
		return "state word unknown";
	if (s->id <= NODE_ROOT || s->id >= KS_ID_MAX ||
	    !s->from || s->from >= KS_ID_MAX || !s->parent || s->parent >= KS_ID_MAX)
		return "node id out of range";
	if (s->namelen > KS_NAME_MAX || s->name[s->namelen] ||
	    !name_ok(s->name, s->namelen) || !name_hidden(s->name, s->namelen))
		return "name not a hidden file's";
	return NULL;
}

/* The pending moves of hidden files (version 3): a damaged one is freed
 * (the file it names, if any, stays on the server as before version 3). */
static void check_pending(struct keepstate *ks, struct ks_report *rep)
{
	for (unsigned i = 0; i < KS_PENDING; i++) {
		struct pslot *s = &ks->h->pending[i];
		const char *why = pending_problem(s);

		if (why) {
			problem(rep, &rep->header, "pending move %u: %s", i, why);
			__atomic_store_n(&s->state, ST_FREE, __ATOMIC_RELEASE);
		}
	}
}

static void check_header(struct keepstate *ks, struct ks_report *rep)
{
	struct hdr *h = ks->h;
	size_t rlen = strnlen(h->reason, sizeof(h->reason));

	if (h->node_hwm > NODE_CAP) {
		problem(rep, &rep->header, "node table mark %u past its %u slots",
			h->node_hwm, NODE_CAP);
		h->node_hwm = ks_slots_written(ks, OFF_NODES, sizeof(struct nslot),
					       NODE_CAP);
	}
	if (h->fh_hwm > FH_CAP) {
		problem(rep, &rep->header, "handle table mark %u past its %u slots",
			h->fh_hwm, FH_CAP);
		h->fh_hwm = ks_slots_written(ks, OFF_FHS, sizeof(struct fslot), FH_CAP);
	}
	/* Raised again from the records kept (nodes_adopt does it). */
	if (h->next_id > KS_ID_MAX) {
		problem(rep, &rep->header, "next node id %llu out of range",
			(unsigned long long)h->next_id);
		h->next_id = NODE_ROOT + 1;
	}
	if (rlen == sizeof(h->reason) || !printable(h->reason, rlen)) {
		problem(rep, &rep->header, "restart reason unreadable");
		snprintf(h->reason, sizeof(h->reason), "unknown (unreadable in the take-over state)");
	}
	if (!init_ok(h)) {
		/* Nothing to continue from: libfuse would refuse the INIT and
		 * every daemon would exit on it. Without one the mount is
		 * served, if only with errors until it is mounted again. */
		problem(rep, &rep->header, "saved FUSE INIT request damaged (length %u)",
			h->init_len);
		h->init_len = 0;
	}
	check_pending(ks, rep);
}

/* ---- nodes ------------------------------------------------------------- */

enum mark { M_NEW = 0, M_VISITING, M_OK, M_BAD };

struct nref {
	uint64_t id, seq, parent;
	uint32_t slot;
	uint32_t depth;        /* path components below the base, once M_OK */
	bool unlinked;
	uint8_t mark;
};

/* What one pass works with; the memory it needs is taken up front, so
 * that running out of it is one case (everything dropped), not one per
 * table. */
struct pass {
	struct keepstate *ks;
	struct ks_report *rep;
	const char *base;
	struct nref *v;            /* live node records, then the kept ones */
	size_t n;
	uint32_t *stack;           /* a chain being walked (up to every node) */
	struct ks_fh *rec;         /* the handle record being checked */
	struct json_tokener *tok;  /* an event's text */
};

static void node_free(struct keepstate *ks, uint32_t slot)
{
	__atomic_store_n(&ks->nodes[slot].state, ST_FREE, __ATOMIC_RELEASE);
}

static const char *node_problem(const struct nslot *s)
{
	if (s->flags & ~NF_ALL)
		return "unknown flag bits";
	if (s->id <= NODE_ROOT || s->id >= KS_ID_MAX)
		return "id out of range";
	if (!s->seq || s->seq >= KS_ID_MAX)
		return "sequence number out of range";
	/* 0 is possible: a node the kernel forgot stays recorded while a
	 * released handle still drains through it (nodes_pin). */
	if (s->nlookup >= KS_ID_MAX)
		return "lookup count out of range";
	if ((s->flags & NF_END_KNOWN) && s->end > KS_OFF_MAX)
		return "end offset past the largest file";
	/* The "same file?" baseline (identity.h): a range of sizes. */
	if ((s->flags & NF_ID_KNOWN) && (s->id_lo > KS_OFF_MAX || s->id_hi > KS_OFF_MAX))
		return "identity sizes past the largest file";
	if (s->namelen > KS_NAME_MAX || s->name[s->namelen] ||
	    !name_ok(s->name, s->namelen))
		return "name not a valid file name";
	return NULL;
}

/* The live node records, each checked alone, into p->v; the rest freed.
 * Returns the highest sequence number kept. */
static uint64_t scan_nodes(struct pass *p)
{
	uint64_t maxseq = 0;

	p->n = 0;
	for (uint32_t i = 0; i < p->ks->h->node_hwm; i++) {
		const struct nslot *s = &p->ks->nodes[i];
		uint32_t st = __atomic_load_n(&s->state, __ATOMIC_ACQUIRE);
		const char *why = st == ST_LIVE ? node_problem(s) :
				  st == ST_FREE ? NULL : "state word unknown";

		if (why) {
			problem(p->rep, &p->rep->nodes, "node slot %u (id %llu): %s", i,
				(unsigned long long)s->id, why);
			node_free(p->ks, i);
			continue;
		}
		if (st != ST_LIVE)
			continue;
		p->v[p->n++] = (struct nref){ .id = s->id, .seq = s->seq,
					      .parent = s->parent, .slot = i,
					      .unlinked = s->flags & NF_UNLINKED };
		if (s->seq > maxseq)
			maxseq = s->seq;
	}
	return maxseq;
}

static int cmp_nref(const void *a, const void *b)
{
	const struct nref *x = a, *y = b;

	if (x->id != y->id)
		return x->id < y->id ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/*
 * One record per id: a move killed halfway left the older one, which is
 * freed (no damage). Two with one sequence number cannot both be the
 * newer: the whole id goes. Leaves the kept ones in p->v, sorted by id.
 */
static void one_per_id(struct pass *p)
{
	struct keepstate *ks = p->ks;
	struct nref *v = p->v;
	size_t out = 0, i = 0, n = p->n;

	qsort(v, n, sizeof(*v), cmp_nref);
	while (i < n) {
		size_t j = i;

		while (j + 1 < n && v[j + 1].id == v[i].id)
			j++;
		if (j > i && v[j].seq == v[j - 1].seq) {
			for (size_t k = i; k <= j; k++)
				node_free(ks, v[k].slot);
			problem(p->rep, &p->rep->nodes,
				"node id %llu: %zu records with one sequence number",
				(unsigned long long)v[i].id, j - i + 1);
		} else {
			for (size_t k = i; k < j; k++)
				node_free(ks, v[k].slot);
			v[out++] = v[j];
		}
		i = j + 1;
	}
	p->n = out;
}

static int cmp_id(const void *key, const void *elem)
{
	uint64_t id = *(const uint64_t *)key, other = ((const struct nref *)elem)->id;

	return id < other ? -1 : id > other;
}

static struct nref *find_node(const struct pass *p, uint64_t id)
{
	return bsearch(&id, p->v, p->n, sizeof(*p->v), cmp_id);
}

/*
 * Walks up from v[i] until the chain ends well (the root, an unlinked
 * node, a node already known good) or badly (a missing or dropped parent,
 * a cycle), then marks every node walked: bad ones, and good ones deeper
 * than KS_DEPTH_MAX, are freed. Each node is walked once in the whole
 * pass (p->stack has room for all of them).
 */
static void check_chain(struct pass *p, struct nref *start)
{
	static const char *const why_text[] = {
		"parent chain reaches a node that is not kept",
		"parent chain is a cycle",
		"parent not in the state",
		"parent chain deeper than the limit",
	};
	size_t depth = 0;
	struct nref *cur = start;
	uint32_t above = 0;        /* depth of the node the walk ended at */
	int why = -1;

	for (;;) {
		if (cur->mark == M_OK) {
			above = cur->depth;
			break;
		}
		if (cur->mark != M_NEW) {
			why = cur->mark == M_BAD ? 0 : 1;
			break;
		}
		cur->mark = M_VISITING;
		p->stack[depth++] = (uint32_t)(cur - p->v);
		/* Nothing above an unlinked node makes a path. */
		if (cur->unlinked || cur->parent == NODE_ROOT)
			break;
		if (!(cur = find_node(p, cur->parent))) {
			why = 2;
			break;
		}
	}
	for (size_t k = depth; k-- > 0;) {
		struct nref *r = &p->v[p->stack[k]];

		r->depth = r->unlinked ? 0 : above + 1;
		above = r->depth;
		if (why < 0 && r->depth > KS_DEPTH_MAX)
			why = 3;
		r->mark = why >= 0 ? M_BAD : M_OK;
		if (why >= 0) {
			problem(p->rep, &p->rep->nodes, "node id %llu: %s",
				(unsigned long long)r->id, why_text[why]);
			node_free(p->ks, r->slot);
		}
	}
}

/* Checks every node record; leaves the kept ones in p->v, sorted by id
 * and marked M_OK. */
static void check_nodes(struct pass *p)
{
	struct hdr *h = p->ks->h;
	uint64_t maxseq = scan_nodes(p);

	if (h->seq < maxseq || h->seq >= KS_ID_MAX) {
		problem(p->rep, &p->rep->header,
			"node sequence counter %llu below a record's %llu",
			(unsigned long long)h->seq, (unsigned long long)maxseq);
		h->seq = maxseq;
	}
	one_per_id(p);
	for (size_t i = 0; i < p->n; i++)
		if (p->v[i].mark == M_NEW)
			check_chain(p, &p->v[i]);
}

static bool node_kept(void *arg, uint64_t id)
{
	struct nref *r = find_node(arg, id);

	return r && r->mark == M_OK;
}

/* ---- handles ----------------------------------------------------------- */

const char *ks_fh_problem(const struct ks_fh *f, const char *base,
			  bool (*node_ok)(void *arg, uint64_t ino), void *arg)
{
	if (f->flags < 0 || (f->flags & O_ACCMODE) == O_ACCMODE)
		return "open flags impossible";
	if (f->err < 0 || f->err > MAX_ERRNO)
		return "pending error not an errno";
	if (f->unacked && (f->unacked > KS_OFF_MAX || f->lo > f->hi || f->hi > KS_OFF_MAX))
		return "unacknowledged range not a range";
	/* A released handle may outlive its node: it is only reported. */
	if (!f->released && !node_ok(arg, f->ino))
		return "its node is not kept";
	return NULL;
}

static void check_handles(struct pass *p)
{
	struct ks_fh *rec = p->rec;

	for (uint32_t i = 0; i < p->ks->h->fh_hwm; i++) {
		struct fslot *s = &p->ks->fhs[i];
		uint32_t st = __atomic_load_n(&s->state, __ATOMIC_ACQUIRE);
		const char *why = NULL;

		if (st == ST_FREE)
			continue;
		if (st != ST_LIVE)
			why = "state word unknown";
		else if (s->released > 1)
			why = "released flag not 0 or 1";
		if (!why) {
			ks_fh_read(s, rec);
			why = ks_fh_problem(rec, p->base, node_kept, p);
		}
		if (!why)
			continue;
		problem(p->rep, &p->rep->handles, "handle slot %u (node %llu): %s", i,
			(unsigned long long)s->ino, why);
		if (st == ST_LIVE && s->unacked <= KS_OFF_MAX)
			p->rep->lost_bytes += s->unacked;
		__atomic_store_n(&s->state, ST_FREE, __ATOMIC_RELEASE);
	}
}

/* ---- events ------------------------------------------------------------ */

/* One JSON object, as control writes each line. */
static bool json_line(struct json_tokener *tok, const char *line, size_t len)
{
	struct json_object *o;
	bool ok;

	if (!len || !printable(line, len))
		return false;
	json_tokener_reset(tok);
	o = json_tokener_parse_ex(tok, line, (int)len);
	ok = o && json_tokener_get_parse_end(tok) == len &&
	     json_object_is_type(o, json_type_object);
	json_object_put(o);
	return ok;
}

static const char *event_problem(struct pass *p, const struct evslot *e,
				 uint64_t seq, unsigned i)
{
	if (seq % KS_EVENTS != i)
		return "sequence number of another slot";
	if (seq >= KS_ID_MAX)
		return "sequence number out of range";
	if (e->len >= EV_LINE_MAX || e->line[e->len] || memchr(e->line, 0, e->len))
		return "length not the text's";
	if (!json_line(p->tok, e->line, e->len))
		return "text not one JSON object";
	return NULL;
}

static void event_free(struct evslot *e)
{
	__atomic_store_n(&e->seq, 0, __ATOMIC_RELEASE);
}

static void check_events(struct pass *p)
{
	struct keepstate *ks = p->ks;
	struct ks_report *rep = p->rep;
	uint32_t written = ks_events_written(ks);
	uint64_t newest = 0;

	for (unsigned i = 0; i < written; i++) {
		struct evslot *e = &ks->events[i];
		uint64_t seq = __atomic_load_n(&e->seq, __ATOMIC_ACQUIRE);
		const char *why;

		if (!seq)
			continue;
		if ((why = event_problem(p, e, seq, i))) {
			problem(rep, &rep->events, "event slot %u (seq %llu): %s", i,
				(unsigned long long)seq, why);
			event_free(e);
		} else if (seq > newest) {
			newest = seq;
		}
	}
	/* Each slot holds the newest of its numbers: anything older than
	 * the last KS_EVENTS is a slot the ring never wrote. */
	for (unsigned i = 0; i < written && newest >= KS_EVENTS; i++) {
		struct evslot *e = &ks->events[i];

		if (e->seq && e->seq <= newest - KS_EVENTS) {
			problem(rep, &rep->events, "event slot %u (seq %llu): older than the ring",
				i, (unsigned long long)e->seq);
			event_free(e);
		}
	}
}

/* ---- in-flight ids ----------------------------------------------------- */

static void check_inflight(struct keepstate *ks, struct ks_report *rep)
{
	for (uint32_t i = 0; i < INFL_CAP; i++) {
		uint64_t u = ks->infl[i], off = ks->infl_off[i];

		if (u == INFL_EMPTY || u == INFL_GONE)
			continue;
		/* A tombstone, not a hole: later entries of its probe chain
		 * stay reachable. */
		if (u & 1) {
			problem(rep, &rep->inflight, "in-flight slot %u: odd request id", i);
			ks->infl[i] = INFL_GONE;
		} else if (off && off - 1 > KS_OFF_MAX) {
			problem(rep, &rep->inflight, "in-flight slot %u: append offset past the largest file", i);
			ks->infl_off[i] = 0;
		}
	}
}

/* ---- the pass ---------------------------------------------------------- */

/* Without memory to check them, node, handle and event records cannot be
 * trusted: they go, and the mount starts afresh (still served). */
static void drop_unchecked(struct keepstate *ks, struct ks_report *rep)
{
	for (uint32_t i = 0; i < ks->h->node_hwm; i++)
		if (ks->nodes[i].state != ST_FREE) {
			problem(rep, &rep->nodes, "out of memory to check the state");
			node_free(ks, i);
		}
	for (uint32_t i = 0; i < ks->h->fh_hwm; i++)
		if (ks->fhs[i].state != ST_FREE) {
			rep->handles++;
			ks->fhs[i].state = ST_FREE;
		}
	for (unsigned i = 0, n = ks_events_written(ks); i < n; i++)
		if (ks->events[i].seq) {
			rep->events++;
			event_free(&ks->events[i]);
		}
}

void ks_validate(struct keepstate *ks, const char *base, struct ks_report *rep)
{
	struct pass p = { .ks = ks, .rep = rep, .base = base };
	uint32_t hwm;

	memset(rep, 0, sizeof(*rep));
	check_header(ks, rep);
	hwm = ks->h->node_hwm ? ks->h->node_hwm : 1;
	p.v = malloc(hwm * sizeof(*p.v));
	p.stack = malloc(hwm * sizeof(*p.stack));
	p.rec = malloc(sizeof(*p.rec));
	p.tok = json_tokener_new();
	if (p.v && p.stack && p.rec && p.tok) {
		check_nodes(&p);
		check_handles(&p);
		check_events(&p);
	} else {
		drop_unchecked(ks, rep);
	}
	check_inflight(ks, rep);
	if (p.tok)
		json_tokener_free(p.tok);
	free(p.rec);
	free(p.stack);
	free(p.v);
}
