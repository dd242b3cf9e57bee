/*
 * test_ksvalid: the check of the take-over state before a restore
 * (fs/keeper/ksvalid.c) at the daemon's real table sizes, with what each case
 * must drop and what must come through: issue 15 finding 9 (an event in
 * another slot's place read past its slot; a parent cycle hung
 * build_path; names and paths were taken as they were), the depth limit,
 * handle records, and the name rule of lib/names.c. The restore fuzzer
 * (test/fuzz/fuzz_restore.c) covers the same rules at small sizes with
 * every mix of damage; this file says what the outcome is.
 */
#include "unit.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keepstate.h"
#include "keepstate_int.h"
#include "ksfixture.h"
#include "ksvalid.h"
#include "names.h"
#include "nodes.h"

#define BASE "/srv/data"

static void count_event(void *arg, uint64_t seq, const char *line)
{
	(void)seq;
	(void)line;
	(*(unsigned *)arg)++;
}

/* Validates, checks the report, and checks a second pass finds nothing. */
static struct ks_report validate(struct state *s)
{
	struct ks_report rep, again;

	state_reopen(s);
	ks_validate(s->ks, BASE, &rep);
	ks_validate(s->ks, BASE, &again);
	CHECK_EQU(ks_report_total(&again), 0);
	return rep;
}

static void test_clean_state_passes_whole(void)
{
	struct state s = state_new();
	struct ks_report rep;
	struct nodes *t;
	unsigned events = 0;
	char *p;

	ks_node_put(s.ks, 2, 1, "jobs", 1);
	ks_node_put(s.ks, 3, 2, "j1", 2);
	ks_fh_put(s.ks, 3, 1);
	for (uint64_t seq = 1; seq <= 1500; seq++)
		ks_event_put(s.ks, seq, "{\"type\":\"state\"}");
	rep = validate(&s);
	CHECK_EQU(ks_report_total(&rep), 0);
	CHECK_STR(rep.first, "");
	t = nodes_new(BASE);
	nodes_adopt(t, s.ks);
	p = nodes_path(t, 3);
	CHECK(p && !strcmp(p, BASE "/jobs/j1"));
	free(p);
	ks_events_each(s.ks, count_event, &events);
	CHECK_EQU(events, KS_EVENTS);
	nodes_free(t);
	state_free(&s);
}

/* Finding 9: slot 2 said seq 7, slot 7's length was garbage, and
 * ks_events_each wrote a NUL 4 GiB past slot 7. */
static void count_pending(void *arg, const struct ks_pending *p, int32_t slot)
{
	(void)p;
	(void)slot;
	(*(unsigned *)arg)++;
}

/* A pending move of a hidden file that is damaged (a name that is no
 * hidden file's, which a settling would remove; an id out of range; an
 * unknown state word) is freed and reported; a sound one is kept. */
static void test_damaged_pending_moves_dropped(void)
{
	struct state s = state_new();
	struct ks_report rep;
	unsigned n = 0;
	int32_t bad;

	if (!s.ks)
		return;
	ks_pending_put(s.ks, 5, 1, 1, ".steadyfs_hidden000000000000000501234500");
	ks_pending_put(s.ks, 6, 1, 1, "precious.txt");
	ks_pending_put(s.ks, KS_ID_MAX, 1, 1, ".steadyfs_hidden000000000000000501234501");
	bad = ks_pending_put(s.ks, 7, 1, 1, ".steadyfs_hidden000000000000000501234502");
	s.ks->h->pending[bad].state = 77;
	rep = validate(&s);
	CHECK_EQU(rep.header, 3);
	ks_pending_each(s.ks, count_pending, &n);
	CHECK_EQU(n, 1);
	state_free(&s);
}

static void test_event_in_another_slot_dropped(void)
{
	struct state s = state_new();
	struct ks_report rep;
	unsigned events = 0;

	ks_event_put(s.ks, 1, "{\"a\":1}");
	ks_event_put(s.ks, 2, "{\"a\":2}");
	s.ks->events[2].seq = 7;
	s.ks->events[7].len = 0xfffffff0u;
	rep = validate(&s);
	CHECK_EQU(rep.events, 1);
	CHECK(strstr(rep.first, "another slot") != NULL);
	ks_events_each(s.ks, count_event, &events);
	CHECK_EQU(events, 1);
	state_free(&s);
}

/* Finding 9: 2 -> 3 -> 2 made build_path loop for ever under the lock. */
static void test_parent_cycle_dropped(void)
{
	struct state s = state_new();
	struct ks_report rep;
	struct nodes *t;

	ks_node_put(s.ks, 2, 3, "a", 1);
	ks_node_put(s.ks, 3, 2, "b", 1);
	ks_node_put(s.ks, 4, 3, "below", 1);
	ks_node_put(s.ks, 5, 1, "fine", 1);
	ks_fh_put(s.ks, 4, 0);
	rep = validate(&s);
	CHECK_EQU(rep.nodes, 3);
	CHECK_EQU(rep.handles, 1);
	t = nodes_new(BASE);
	nodes_adopt(t, s.ks);
	CHECK(nodes_path(t, 4) == NULL);
	free(nodes_path(t, 5));
	CHECK_EQU(nodes_find(t, NODE_ROOT, "fine"), 5);
	nodes_free(t);
	state_free(&s);
}

/* Names that would climb out of the mount's folder or name another one,
 * and what sits below them. */
static void test_bad_names_dropped(void)
{
	static const char *const bad[] = { "..", ".", "a/b", "" };
	struct state s = state_new();
	struct ks_report rep;

	for (unsigned i = 0; i < 4; i++)
		ks_node_put(s.ks, 10 + i, 1, bad[i], 1);
	ks_node_put(s.ks, 20, 10, "child", 1);
	/* A name whose recorded length says more than its text. */
	ks_node_put(s.ks, 21, 1, "abc", 1);
	s.ks->nodes[5].namelen = 7;
	ks_node_put(s.ks, 22, 1, "ok", 1);
	rep = validate(&s);
	CHECK_EQU(rep.nodes, 6);
	CHECK(strstr(rep.first, "name") != NULL);
	state_free(&s);
}

static void test_depth_limit(void)
{
	struct state s = state_new();
	struct ks_report rep;

	for (uint64_t id = 2; id < 2 + KS_DEPTH_MAX + 3; id++)
		ks_node_put(s.ks, id, id == 2 ? 1 : id - 1, "d", 1);
	rep = validate(&s);
	CHECK_EQU(rep.nodes, 3);
	CHECK(strstr(rep.first, "deeper") != NULL);
	state_free(&s);
}

static void test_handle_records(void)
{
	struct state s = state_new();
	struct ks_report rep;
	int32_t slot;

	ks_node_put(s.ks, 2, 1, "f", 1);
	/* A handle records its node, never a path (the path is the node's,
	 * checked with the nodes), so no record can name a path of its own. */
	ks_fh_put(s.ks, 2, 1);                 /* kept */
	ks_fh_put(s.ks, 9, 1);                 /* no such node */
	ks_fh_put(s.ks, 2, 3);                 /* access mode 3 */
	slot = ks_fh_put(s.ks, 2, 1);          /* reversed range */
	ks_fh_unacked(s.ks, slot, 100, 500, 400);
	slot = ks_fh_put(s.ks, 9, 1);          /* released: kept */
	ks_fh_released(s.ks, slot);
	rep = validate(&s);
	CHECK_EQU(rep.handles, 3);
	CHECK_EQU(rep.lost_bytes, 100);
	state_free(&s);
}

static void test_header_repaired(void)
{
	struct state s = state_new();
	struct ks_report rep;
	struct stat st;

	ks_node_put(s.ks, 2, 1, "f", 1);
	s.ks->h->node_hwm = NODE_CAP + 5;
	s.ks->h->next_id = UINT64_MAX;
	s.ks->h->seq = 0;
	snprintf(s.ks->h->reason, sizeof(s.ks->h->reason), "x\nforged");
	s.ks->h->init_len = 200;
	rep = validate(&s);
	CHECK_EQU(rep.header, 5);
	CHECK_EQU(rep.nodes, 0);
	CHECK_EQU(s.ks->h->init_len, 0);
	/* The mark is cut to the pages ever written, not to the 300 MB
	 * table, whose reading would have given it all memory (what the
	 * state holds now is mostly the events ring's 4.6 MB, read whole). */
	CHECK(s.ks->h->node_hwm >= 1 && s.ks->h->node_hwm < 64);
	CHECK(fstat(s.fd, &st) == 0 && st.st_blocks * 512 < (16 << 20));
	CHECK(ks_next_id(s.ks) < KS_ID_MAX);
	state_free(&s);
}

/* A line too long to keep leaves no older line in its slot behind. */
static void test_long_event_empties_slot(void)
{
	struct state s = state_new();
	char *big = malloc(EV_LINE_MAX + 10);
	unsigned events = 0;

	if (!CHECK(big != NULL))
		return;
	memset(big, 'x', EV_LINE_MAX + 9);
	big[EV_LINE_MAX + 9] = 0;
	ks_event_put(s.ks, 3, "{\"a\":1}");
	ks_event_put(s.ks, 3 + KS_EVENTS, big);
	ks_events_each(s.ks, count_event, &events);
	CHECK_EQU(events, 0);
	free(big);
	state_free(&s);
}

static void test_name_rule(void)
{
	char longest[NAME_BYTES_MAX + 2];

	memset(longest, 'n', sizeof(longest));
	CHECK(name_ok("a", 1));
	CHECK(name_ok(".a", 2));
	CHECK(name_ok("...", 3));
	CHECK(name_ok(longest, NAME_BYTES_MAX));
	CHECK(!name_ok(longest, NAME_BYTES_MAX + 1));
	CHECK(!name_ok("", 0));
	CHECK(!name_ok(".", 1));
	CHECK(!name_ok("..", 2));
	CHECK(!name_ok("a/b", 3));
	CHECK(!name_ok("a\0b", 3));
	/* Nothing past len is read: "ab" of "ab/" is a name. */
	CHECK(name_ok("ab/", 2));
}

/* The hidden-name form: exactly the prefix and 24 lowercase hex digits. */
static void test_hidden_name_form(void)
{
	const char *good = NAME_HIDDEN_PREFIX "00000000000000070123abcd";
	char bad[64];

	CHECK(name_hidden(good, strlen(good)));
	CHECK_EQU(strlen(good), NAME_HIDDEN_LEN);
	CHECK(!name_hidden(good, strlen(good) - 1));
	CHECK(!name_hidden(".steadyfs_hidden_notes", 22));
	snprintf(bad, sizeof(bad), "%s", good);
	bad[NAME_HIDDEN_LEN - 1] = 'A';         /* upper case is not the form */
	CHECK(!name_hidden(bad, strlen(bad)));
	bad[NAME_HIDDEN_LEN - 1] = '\0';       /* nor is a NUL inside len */
	CHECK(!name_hidden(bad, NAME_HIDDEN_LEN));
}

int main(void)
{
	UNIT_RUN(test_clean_state_passes_whole);
	UNIT_RUN(test_hidden_name_form);
	UNIT_RUN(test_event_in_another_slot_dropped);
	UNIT_RUN(test_parent_cycle_dropped);
	UNIT_RUN(test_bad_names_dropped);
	UNIT_RUN(test_depth_limit);
	UNIT_RUN(test_handle_records);
	UNIT_RUN(test_header_repaired);
	UNIT_RUN(test_long_event_empties_slot);
	UNIT_RUN(test_name_rule);
	UNIT_RUN(test_damaged_pending_moves_dropped);
	return unit_summary("test_ksvalid");
}
