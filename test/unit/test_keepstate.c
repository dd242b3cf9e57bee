/*
 * test_keepstate: the take-over state (fs/keeper/keepstate.c) as the next daemon
 * reads it back: every record kind written and restored field for field,
 * a node move killed at each of its stores, the capacity limits of every
 * table, and a state that a dying or damaged daemon left hostile (a
 * header, counters, INIT, events, handles and in-flight ids no longer what
 * they should be). The record-by-record checks a restore runs first are
 * ksvalid.c's (test_ksvalid.c); here is what keepstate.c itself must
 * survive and hand on.
 */
#include "unit.h"

#include <stdlib.h>
#include <unistd.h>

#include "keepstate.h"
#include "keepstate_int.h"
#include "ksfixture.h"

/* ---- what a restore hands on ---- */

#define NMAXREC 16

struct nodes_seen {
	int n;
	struct ks_node rec[NMAXREC];
	int32_t slot[NMAXREC];
};

static void see_node(void *arg, const struct ks_node *n, int32_t slot)
{
	struct nodes_seen *s = arg;

	if (s->n < NMAXREC) {
		s->rec[s->n] = *n;
		s->slot[s->n] = slot;
	}
	s->n++;
}

static struct nodes_seen nodes_of(struct keepstate *ks)
{
	struct nodes_seen s = { 0 };

	ks_nodes_each(ks, see_node, &s);
	return s;
}

static const struct ks_node *node_by_id(const struct nodes_seen *s, uint64_t id)
{
	for (int i = 0; i < s->n && i < NMAXREC; i++)
		if (s->rec[i].id == id)
			return &s->rec[i];
	return NULL;
}

struct fhs_seen {
	int n;
	struct ks_fh rec[NMAXREC];
	int32_t slot[NMAXREC];
};

static void see_fh(void *arg, const struct ks_fh *f, int32_t slot)
{
	struct fhs_seen *s = arg;

	if (s->n < NMAXREC) {
		s->rec[s->n] = *f;
		s->slot[s->n] = slot;
	}
	s->n++;
}

static struct fhs_seen fhs_of(struct keepstate *ks)
{
	struct fhs_seen s = { 0 };

	ks_fhs_each(ks, see_fh, &s);
	return s;
}

#define EVMAX 8

struct events_seen {
	int n;
	uint64_t seq[EVMAX];
	char line[EVMAX][64];
};

static void see_event(void *arg, uint64_t seq, const char *line)
{
	struct events_seen *s = arg;

	if (s->n < EVMAX) {
		s->seq[s->n] = seq;
		snprintf(s->line[s->n], sizeof(s->line[0]), "%s", line);
	}
	s->n++;
}

static struct events_seen events_of(struct keepstate *ks)
{
	struct events_seen s = { 0 };

	ks_events_each(ks, see_event, &s);
	return s;
}

/* ---- every record kind, written and read back ---- */

static void test_round_trip(void)
{
	struct state s = state_new();
	struct ident id = { .known = true, .written = true, .have_mtime = true,
			    .shared = false, .mtime = 1234, .lo = 10, .hi = 99 };
	uint8_t init[40], back[64];
	char reason[KS_REASON_MAX + 1];
	int32_t a, b, f;
	uint64_t ids[4], offs[4];
	struct nodes_seen ns;
	struct fhs_seen fs;
	struct events_seen ev;
	const struct ks_node *n;

	if (!s.ks)
		return;
	for (size_t i = 0; i < sizeof(init); i++)
		init[i] = (uint8_t)(i * 7);
	ks_save_init(s.ks, init, sizeof(init));
	ks_set_keeper(s.ks, 4242);
	ks_note_restart(s.ks, "signal 9");
	ks_note_upgrade_failed(s.ks);
	ks_set_generation(s.ks, 7);
	ks_set_next_id(s.ks, 500);
	a = ks_node_put(s.ks, 10, 1, "dir", 3);
	b = ks_node_put(s.ks, 11, 10, "file", 1);
	CHECK(a >= 0 && b >= 0 && a != b);
	ks_node_end(s.ks, b, true, 8192);
	ks_node_ident(s.ks, b, &id);
	ks_node_twins(s.ks, b, 5);
	ks_node_hidden(s.ks, b, true);
	ks_node_nlookup(s.ks, b, 4);
	ks_node_unlinked(s.ks, a);
	f = ks_fh_put(s.ks, 11, 0x401);
	CHECK(f >= 0);
	ks_fh_unacked(s.ks, f, 300, 100, 400);
	ks_fh_error(s.ks, f, 28);
	ks_fh_released(s.ks, f);
	ks_inflight_add(s.ks, 2);
	ks_inflight_add(s.ks, 4);
	ks_inflight_offset(s.ks, 4, 0);     /* offset 0 is an offset */
	ks_event_put(s.ks, 1, "{\"a\":1}");
	ks_event_put(s.ks, 2, "{\"b\":2}");

	state_reopen(&s);

	CHECK_EQ(ks_init(s.ks, back, sizeof(back)), sizeof(init));
	CHECK(!memcmp(back, init, sizeof(init)));
	CHECK_EQ(ks_keeper_pid(s.ks), 4242);
	CHECK_EQU(ks_restarts(s.ks), 1);
	ks_last_reason(s.ks, reason, sizeof(reason));
	CHECK_STR(reason, "signal 9");
	CHECK_EQU(ks_upgrades_failed(s.ks), 1);
	CHECK_EQU(ks_generation(s.ks), 7);
	CHECK_EQU(ks_next_id(s.ks), 500);

	ns = nodes_of(s.ks);
	CHECK_EQ(ns.n, 2);
	if ((n = node_by_id(&ns, 10))) {
		CHECK_EQU(n->parent, 1);
		CHECK_STR(n->name, "dir");
		CHECK_EQU(n->nlookup, 3);
		CHECK(n->unlinked);
		CHECK(!n->hidden && !n->end_known && !n->ident.known);
	} else {
		CHECK(!"node 10 restored");
	}
	if ((n = node_by_id(&ns, 11))) {
		CHECK_EQU(n->parent, 10);
		CHECK_STR(n->name, "file");
		CHECK_EQU(n->nlookup, 4);
		CHECK(n->end_known);
		CHECK_EQU(n->end, 8192);
		CHECK(n->hidden && !n->unlinked);
		CHECK_EQU(n->twins, 5);
		CHECK(n->ident.known && n->ident.written && n->ident.have_mtime &&
		      !n->ident.shared);
		CHECK_EQU(n->ident.mtime, 1234);
		CHECK_EQU(n->ident.lo, 10);
		CHECK_EQU(n->ident.hi, 99);
	} else {
		CHECK(!"node 11 restored");
	}

	fs = fhs_of(s.ks);
	CHECK_EQ(fs.n, 1);
	if (fs.n == 1) {
		CHECK_EQ(fs.slot[0], f);
		CHECK_EQU(fs.rec[0].ino, 11);
		CHECK_EQ(fs.rec[0].flags, 0x401);
		CHECK(fs.rec[0].released);
		CHECK_EQU(fs.rec[0].unacked, 300);
		CHECK_EQU(fs.rec[0].lo, 100);
		CHECK_EQU(fs.rec[0].hi, 400);
		CHECK_EQ(fs.rec[0].err, 28);
	}

	CHECK_EQU(ks_inflight_take(s.ks, ids, offs, 4), 2);
	for (int i = 0; i < 2; i++) {
		/* 2 has no append offset (0); 4 was given offset 0 (stored +1). */
		CHECK(ids[i] == 2 || ids[i] == 4);
		CHECK_EQU(offs[i], ids[i] == 4 ? 1 : 0);
	}
	CHECK_EQU(ks_inflight_take(s.ks, ids, offs, 4), 0);

	ev = events_of(s.ks);
	CHECK_EQ(ev.n, 2);
	CHECK_EQU(ev.seq[0], 1);
	CHECK_STR(ev.line[0], "{\"a\":1}");
	CHECK_EQU(ev.seq[1], 2);
	state_free(&s);
}

/* ---- a rename killed at each of its stores ----
 *
 * ks_node_move writes a fresh slot (allocation moves the high-water mark,
 * then the fields, then the state word) and only then frees the old one.
 * A SIGKILL between any two leaves one of the states below; each is built
 * by undoing the tail of a finished move, and the next daemon must find
 * exactly one record for the node, with the old name or the new one and
 * every other field intact, and reuse whatever slot the death left free.
 */
enum kill_point {
	KILL_AFTER_ALLOC,      /* new slot reserved, nothing written */
	KILL_AFTER_FIELDS,     /* new slot written, state word still free */
	KILL_AFTER_PUBLISH,    /* both live: the newer (higher seq) must win */
	KILL_AFTER_FREE,       /* the move is complete */
};

static void test_move_killed_at_each_store(void)
{
	static const struct {
		enum kill_point at;
		const char *name;       /* what the next daemon must see */
		uint64_t parent;
	} cases[] = {
		{ KILL_AFTER_ALLOC, "old", 1 },
		{ KILL_AFTER_FIELDS, "old", 1 },
		{ KILL_AFTER_PUBLISH, "new", 20 },
		{ KILL_AFTER_FREE, "new", 20 },
	};

	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct state s = state_new();
		int32_t old, moved, again;
		struct nodes_seen ns;
		const struct ks_node *n;

		if (!s.ks)
			return;
		old = ks_node_put(s.ks, 30, 1, "old", 2);
		ks_node_end(s.ks, old, true, 77);
		ks_node_twins(s.ks, old, 3);
		moved = ks_node_move(s.ks, old, 20, "new");
		CHECK(moved != old);
		switch (cases[c].at) {
		case KILL_AFTER_ALLOC:
			memset(&s.ks->nodes[moved], 0, sizeof(struct nslot));
			/* fallthrough */
		case KILL_AFTER_FIELDS:
			s.ks->nodes[moved].state = ST_FREE;
			/* fallthrough */
		case KILL_AFTER_PUBLISH:
			s.ks->nodes[old].state = ST_LIVE;
			break;
		case KILL_AFTER_FREE:
			break;
		}
		state_reopen(&s);
		ns = nodes_of(s.ks);
		CHECK_EQ(ns.n, 1);
		if ((n = node_by_id(&ns, 30))) {
			CHECK_STR(n->name, cases[c].name);
			CHECK_EQU(n->parent, cases[c].parent);
			CHECK_EQU(n->nlookup, 2);
			CHECK(n->end_known);
			CHECK_EQU(n->end, 77);
			CHECK_EQU(n->twins, 3);
		} else {
			CHECK(!"node 30 restored");
		}
		/* The slot the death left unused (or the loser of the two
		 * records) is free again: a new record takes it, and the
		 * restore after that still sees one record per node. */
		again = ks_node_put(s.ks, 31, 1, "other", 1);
		CHECK(again == (ns.n == 1 && ns.slot[0] == old ? moved : old));
		state_reopen(&s);
		ns = nodes_of(s.ks);
		CHECK_EQ(ns.n, 2);
		state_free(&s);
	}
}

/* A rename keeps what the old record held and frees its slot. */
static void test_move_keeps_fields(void)
{
	struct state s = state_new();
	struct ident id = { .known = true, .shared = true, .lo = 5, .hi = 6 };
	int32_t a, b;
	struct nodes_seen ns;

	if (!s.ks)
		return;
	a = ks_node_put(s.ks, 40, 1, "a", 9);
	ks_node_ident(s.ks, a, &id);
	ks_node_hidden(s.ks, a, true);
	ks_node_twins(s.ks, a, 2);
	b = ks_node_move(s.ks, a, 1, "b");
	CHECK(b != a);
	CHECK_EQ(ks_node_put(s.ks, 41, 1, "c", 1), a);   /* the old slot */
	state_reopen(&s);
	ns = nodes_of(s.ks);
	CHECK_EQ(ns.n, 2);
	if (ns.n == 2) {
		const struct ks_node *n = node_by_id(&ns, 40);

		CHECK(n != NULL);
		if (n) {
			CHECK_STR(n->name, "b");
			CHECK_EQU(n->nlookup, 9);
			CHECK(n->hidden && n->ident.known && n->ident.shared);
			CHECK_EQU(n->ident.lo, 5);
			CHECK_EQU(n->twins, 2);
		}
	}
	state_free(&s);
}

/* ---- capacity limits ---- */

static void test_node_table_full(void)
{
	struct state s = state_new();
	int32_t a;
	struct nodes_seen ns;

	if (!s.ks)
		return;
	a = ks_node_put(s.ks, 50, 1, "a", 1);
	/* Every slot taken, none free (filling 2^20 slots for real would
	 * give the memfd 300 MB). */
	s.ks->h->node_hwm = NODE_CAP;
	CHECK_EQ(ks_node_put(s.ks, 51, 1, "b", 1), -1);
	/* A rename with no room: the node keeps its slot, marked unlinked
	 * (the old name no longer leads to it). */
	CHECK_EQ(ks_node_move(s.ks, a, 1, "c"), a);
	CHECK_STR(s.ks->nodes[a].name, "a");
	CHECK(s.ks->nodes[a].flags & NF_UNLINKED);
	/* A slot dropped is the next one handed out. */
	ks_node_drop(s.ks, a);
	CHECK_EQ(ks_node_put(s.ks, 52, 1, "d", 1), a);
	s.ks->h->node_hwm = 1;
	state_reopen(&s);
	ns = nodes_of(s.ks);
	CHECK_EQ(ns.n, 1);
	CHECK(node_by_id(&ns, 52) != NULL);
	state_free(&s);
}

static void test_handle_table_full(void)
{
	struct state s = state_new();
	int32_t cap, last = -1;
	struct fhs_seen fs;

	if (!s.ks)
		return;
	cap = ks_fh_capacity(s.ks);
	CHECK_EQ(cap, (int32_t)FH_CAP);
	for (int32_t i = 0; i < cap; i++)
		last = ks_fh_put(s.ks, (uint64_t)i + 2, 0);
	CHECK_EQ(last, cap - 1);
	CHECK_EQ(ks_fh_put(s.ks, 99, 0), -1);
	ks_fh_drop(s.ks, 17);
	CHECK_EQ(ks_fh_put(s.ks, 99, 0), 17);
	CHECK_EQ(ks_fh_put(s.ks, 100, 0), -1);
	/* The next daemon rebuilds the free list from the slots it finds
	 * free: after dropping all but three, exactly those three remain. */
	for (int32_t i = 0; i < cap; i++)
		if (i != 0 && i != 17 && i != cap - 1)
			ks_fh_drop(s.ks, i);
	state_reopen(&s);
	fs = fhs_of(s.ks);
	CHECK_EQ(fs.n, 3);
	if (fs.n == 3) {
		CHECK_EQ(fs.slot[1], 17);
		CHECK_EQU(fs.rec[1].ino, 99);
	}
	CHECK(ks_fh_put(s.ks, 101, 0) >= 0);
	state_free(&s);
}

static void test_inflight_table_limits(void)
{
	struct state s = state_new();
	static uint64_t ids[INFL_CAP + 8], offs[INFL_CAP + 8];
	size_t n;

	if (!s.ks)
		return;
	/* Add and answer far more requests than the table holds: the
	 * tombstones they leave are reused, never fill it. */
	for (uint64_t u = 2; u < 2 + 4ull * INFL_CAP * 2; u += 2) {
		ks_inflight_add(s.ks, u);
		CHECK(ks_inflight_del(s.ks, u) || !"recorded id answered");
	}
	CHECK(!ks_inflight_del(s.ks, 2));           /* answered already */
	/* Full: the ids beyond the table are not recorded (their callers
	 * are not resent, the rest are). */
	for (uint64_t i = 0; i < INFL_CAP + 4; i++)
		ks_inflight_add(s.ks, 1000000 + 2 * i);
	ks_inflight_offset(s.ks, 1000000, 5);
	ks_inflight_offset(s.ks, 999, 5);            /* unknown id: nothing */
	state_reopen(&s);
	/* Taken in two parts; a partial take leaves the rest recorded. */
	n = ks_inflight_take(s.ks, ids, offs, 10);
	CHECK_EQU(n, 10);
	n += ks_inflight_take(s.ks, ids + 10, offs + 10, INFL_CAP + 8 - 10);
	CHECK_EQU(n, INFL_CAP);
	for (size_t i = 0; i < n; i++) {
		CHECK(ids[i] >= 1000000 && ids[i] < 1000000 + 2 * (INFL_CAP + 4));
		CHECK_EQU(offs[i], ids[i] == 1000000 ? 6 : 0);
	}
	/* Emptied: a new id goes in and comes out alone. */
	ks_inflight_add(s.ks, 8);
	CHECK_EQU(ks_inflight_take(s.ks, ids, offs, 4), 1);
	CHECK_EQU(ids[0], 8);
	state_free(&s);
}

static void test_init_saved_once(void)
{
	static const struct {
		size_t len;             /* of a save */
		size_t outsz;           /* the reader's buffer */
		size_t want;            /* ks_init's answer */
	} cases[] = {
		{ 40, 64, 40 },
		{ INIT_MAX, INIT_MAX, INIT_MAX },
		{ INIT_MAX + 1, 1024, 8 },     /* too long: not kept, the next save is */
		{ 40, 39, 0 },                 /* the reader's buffer too small */
	};
	uint8_t req[1024], out[1024];

	memset(req, 0xab, sizeof(req));
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct state s = state_new();

		if (!s.ks)
			return;
		ks_save_init(s.ks, req, cases[c].len);
		ks_save_init(s.ks, req, 8);    /* a later save changes nothing */
		state_reopen(&s);
		CHECK_EQU(ks_init(s.ks, out, cases[c].outsz), cases[c].want);
		state_free(&s);
	}
}

static void test_events_ring(void)
{
	struct state s = state_new();
	char longline[EV_LINE_MAX + 10];
	struct events_seen ev;

	if (!s.ks)
		return;
	ks_event_put(s.ks, 5, "five");
	ks_event_put(s.ks, 5 + KS_EVENTS, "later five");   /* same slot */
	ks_event_put(s.ks, 6, "six");
	ks_event_drop(s.ks, 6 + KS_EVENTS);   /* not the one there: kept */
	ks_event_put(s.ks, 7, "seven");
	ks_event_drop(s.ks, 7);
	memset(longline, 'x', sizeof(longline) - 1);
	longline[sizeof(longline) - 1] = 0;
	ks_event_put(s.ks, 8, "eight");
	ks_event_put(s.ks, 8 + KS_EVENTS, longline);  /* too long: slot emptied */
	state_reopen(&s);
	ev = events_of(s.ks);
	CHECK_EQ(ev.n, 2);
	CHECK_EQU(ev.seq[0], 6);
	CHECK_STR(ev.line[0], "six");
	CHECK_EQU(ev.seq[1], 5 + KS_EVENTS);
	CHECK_STR(ev.line[1], "later five");
	state_free(&s);
}

/* ---- pending moves of hidden files ---- */

struct seen_pending {
	unsigned n;
	struct ks_pending last;
	int32_t slot;
};

static void note_pending(void *arg, const struct ks_pending *p, int32_t slot)
{
	struct seen_pending *sp = arg;

	sp->n++;
	sp->last = *p;
	sp->slot = slot;
}

/* A move recorded and not dropped is what the next daemon finds; a
 * dropped one is gone; the slots run out at KS_PENDING. */
static void test_pending_moves(void)
{
	struct state s = state_new();
	struct seen_pending sp = { 0 };
	int32_t a, b, slots[KS_PENDING];

	if (!s.ks)
		return;
	a = ks_pending_put(s.ks, 7, 3, 1, ".steadyfs_hiddenA");
	b = ks_pending_put(s.ks, 8, 3, 3, ".steadyfs_hiddenB");
	CHECK(a >= 0 && b >= 0 && a != b);
	ks_pending_drop(s.ks, b);
	state_reopen(&s);
	ks_pending_each(s.ks, note_pending, &sp);
	CHECK_EQU(sp.n, 1);
	CHECK_EQU(sp.last.id, 7);
	CHECK_EQU(sp.last.from, 3);
	CHECK_EQU(sp.last.parent, 1);
	CHECK_STR(sp.last.name, ".steadyfs_hiddenA");
	/* The restored one is its settler's until dropped. */
	for (int i = 0; i < KS_PENDING - 1; i++)
		CHECK((slots[i] = ks_pending_put(s.ks, 9, 1, 1, ".steadyfs_hiddenC")) >= 0);
	CHECK_EQU(ks_pending_put(s.ks, 9, 1, 1, ".steadyfs_hiddenD"), -1);
	ks_pending_drop(s.ks, sp.slot);
	CHECK(ks_pending_put(s.ks, 9, 1, 1, ".steadyfs_hiddenD") == sp.slot);
	state_free(&s);
}

/* An upgrade keeps the keeper, and the state it made: a version 2 state
 * (no pending moves) is adopted. */
static void test_map_takes_version_2(void)
{
	struct state s = state_new();
	struct seen_pending sp = { 0 };

	if (!s.ks)
		return;
	s.ks->h->version = 2;
	state_reopen(&s);
	CHECK(s.ks != NULL);
	if (s.ks)
		ks_pending_each(s.ks, note_pending, &sp);
	CHECK_EQU(sp.n, 0);
	state_free(&s);
}

/* ---- a hostile state ---- */

/* A memfd another program or version left: refused whole, not read. */
static void test_map_refuses_foreign(void)
{
	static const struct {
		const char *what;
		int truncate;           /* 1: wrong size */
		const char *magic;
		uint32_t version;
	} cases[] = {
		{ "size", 1, KS_MAGIC, KS_VERSION },
		{ "magic", 0, "SFKEEP0", KS_VERSION },
		{ "version", 0, KS_MAGIC, KS_VERSION + 1 },
		{ "empty magic", 0, "", KS_VERSION },
	};

	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct state s = state_new();
		char err[128] = "";
		struct keepstate *ks;

		if (!s.ks)
			return;
		memset(s.ks->h->magic, 0, sizeof(s.ks->h->magic));
		memcpy(s.ks->h->magic, cases[c].magic, strlen(cases[c].magic));
		s.ks->h->version = cases[c].version;
		ks_unmap(s.ks);
		s.ks = NULL;
		if (cases[c].truncate)
			CHECK(ftruncate(s.fd, (off_t)TOTAL_SIZE - 4096) == 0);
		ks = ks_map(s.fd, err, sizeof(err));
		if (ks) {
			unit_fail(__FILE__, __LINE__, "mapped a state with a bad %s",
				  cases[c].what);
			ks_unmap(ks);
		} else {
			CHECK(err[0] != 0);
		}
		close(s.fd);
	}
}

/* Counters and buffers a damaged state holds: bounded reads only. */
static void test_damaged_header_fields(void)
{
	struct state s = state_new();
	char reason[16];
	uint8_t out[2 * INIT_MAX];

	if (!s.ks)
		return;
	/* A reason with no terminator, read into a smaller buffer. */
	memset(s.ks->h->reason, 'r', sizeof(s.ks->h->reason));
	/* An INIT length beyond its buffer. */
	s.ks->h->init_len = INIT_MAX + 1;
	state_reopen(&s);
	ks_last_reason(s.ks, reason, sizeof(reason));
	CHECK_EQU(strlen(reason), sizeof(reason) - 1);
	CHECK_EQU(ks_init(s.ks, out, sizeof(out)), 0);
	/* A save then does not replace it either (a length is set). */
	ks_save_init(s.ks, out, 16);
	CHECK_EQU(ks_init(s.ks, out, sizeof(out)), 0);
	state_free(&s);
}

/* Event slots a dead daemon may have left half written or wrong. */
static void test_damaged_events_skipped(void)
{
	struct state s = state_new();
	struct evslot *e;
	struct events_seen ev;

	if (!s.ks)
		return;
	ks_event_put(s.ks, 1, "one");
	ks_event_put(s.ks, 2, "two");
	ks_event_put(s.ks, 3, "three");
	ks_event_put(s.ks, 4, "four");
	/* 2: claims another slot's number. */
	s.ks->events[2].seq = 3 + KS_EVENTS;
	/* 3: a length past its buffer. */
	s.ks->events[3].len = EV_LINE_MAX + 100;
	/* 4: no terminator where its length says. */
	e = &s.ks->events[4];
	memset(e->line, 'z', EV_LINE_MAX);
	state_reopen(&s);
	ev = events_of(s.ks);
	CHECK_EQ(ev.n, 1);
	CHECK_EQU(ev.seq[0], 1);
	CHECK_STR(ev.line[0], "one");
	state_free(&s);
}

/* A handle high-water mark past the table: the scan stops at the table. */
static void test_damaged_handle_mark(void)
{
	struct state s = state_new();
	struct fhs_seen fs;

	if (!s.ks)
		return;
	CHECK_EQ(ks_fh_put(s.ks, 7, 0), 0);
	s.ks->h->fh_hwm = 0xffffffffu;
	state_reopen(&s);
	fs = fhs_of(s.ks);
	CHECK_EQ(fs.n, 1);
	/* Every other slot went to the free list, each once: the table
	 * fills exactly, and no slot is handed out twice. */
	for (int32_t i = 1; i < (int32_t)FH_CAP; i++)
		CHECK(ks_fh_put(s.ks, 8, 0) >= 1 || !"free slot");
	CHECK_EQ(ks_fh_put(s.ks, 9, 0), -1);
	state_free(&s);
}

/* Garbage in the in-flight table: taking it never writes past `max`. */
static void test_damaged_inflight(void)
{
	struct state s = state_new();
	uint64_t ids[8 + 1], offs[8 + 1];

	if (!s.ks)
		return;
	for (uint32_t i = 0; i < INFL_CAP; i++) {
		s.ks->infl[i] = 0xdeadbeefcafe0000ull + 2 * i;
		s.ks->infl_off[i] = ~0ull;
	}
	state_reopen(&s);
	ids[8] = offs[8] = 12345;
	CHECK_EQU(ks_inflight_take(s.ks, ids, offs, 8), 8);
	CHECK_EQU(ids[8], 12345);
	CHECK_EQU(offs[8], 12345);
	/* The rest stays until taken; then the table is empty. */
	while (ks_inflight_take(s.ks, ids, offs, 8) == 8)
		;
	CHECK_EQU(ks_inflight_take(s.ks, ids, offs, 8), 0);
	state_free(&s);
}

int main(void)
{
	UNIT_RUN(test_round_trip);
	UNIT_RUN(test_move_killed_at_each_store);
	UNIT_RUN(test_move_keeps_fields);
	UNIT_RUN(test_node_table_full);
	UNIT_RUN(test_handle_table_full);
	UNIT_RUN(test_inflight_table_limits);
	UNIT_RUN(test_init_saved_once);
	UNIT_RUN(test_events_ring);
	UNIT_RUN(test_pending_moves);
	UNIT_RUN(test_map_takes_version_2);
	UNIT_RUN(test_map_refuses_foreign);
	UNIT_RUN(test_damaged_header_fields);
	UNIT_RUN(test_damaged_events_skipped);
	UNIT_RUN(test_damaged_handle_mark);
	UNIT_RUN(test_damaged_inflight);
	return unit_summary("test_keepstate");
}
