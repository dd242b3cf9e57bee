/*
 * test_nodes: the link groups of names of one file in the node table
 * (nodes_twin, nodes_link_peers): a truncate through one name must
 * reach the others, and a node freed leaves its ring intact.
 */
#include <stdlib.h>
#include <sys/stat.h>

#include "nodes.h"
#include "unit.h"

static size_t peers(struct nodes *t, uint64_t id, uint64_t *out)
{
	return nodes_link_peers(t, id, out, 8);
}

static void test_ring_join_and_leave(void)
{
	struct nodes *t = nodes_new("/base");
	uint64_t a = nodes_ref(t, NODE_ROOT, "a");
	uint64_t b = nodes_ref(t, NODE_ROOT, "b");
	uint64_t c = nodes_ref(t, NODE_ROOT, "c");
	uint64_t out[8];

	CHECK_EQU(peers(t, a, out), 0);
	nodes_twin(t, a, b);
	CHECK_EQU(peers(t, a, out), 1);
	CHECK_EQU(out[0], b);
	nodes_twin(t, b, c);
	CHECK_EQU(peers(t, c, out), 2);
	/* Joining names already in one ring changes nothing. */
	nodes_twin(t, a, c);
	nodes_twin(t, c, a);
	nodes_twin(t, a, a);
	CHECK_EQU(peers(t, a, out), 2);
	CHECK_EQU(peers(t, b, out), 2);
	/* b forgotten while named: kept for its name (nodes.h). */
	nodes_forget(t, b, 1);
	CHECK_EQU(peers(t, a, out), 2);
	/* b unlinked too: gone; a and c still one file. */
	nodes_unlink(t, NODE_ROOT, "b");
	CHECK_EQU(peers(t, a, out), 1);
	CHECK_EQU(out[0], c);
	nodes_unlink(t, NODE_ROOT, "c");
	nodes_forget(t, c, 1);
	CHECK_EQU(peers(t, a, out), 0);
	/* An id forgotten before the join: nothing to join. */
	nodes_twin(t, a, c);
	CHECK_EQU(peers(t, a, out), 0);
	nodes_free(t);
}

static void test_end_set_reaches_other_names(void)
{
	struct nodes *t = nodes_new("/base");
	uint64_t a = nodes_ref(t, NODE_ROOT, "a");
	uint64_t b = nodes_ref(t, NODE_ROOT, "b");
	uint64_t c = nodes_ref(t, NODE_ROOT, "c");
	uint64_t end = 0;

	nodes_end_seed(t, b, 10000);
	nodes_twin(t, a, b);
	nodes_twin(t, a, c);
	nodes_end_set(t, a, 100);
	CHECK(nodes_end_get(t, b, &end));
	CHECK_EQU(end, 100);
	/* A name that did not know its end learns none. */
	CHECK(!nodes_end_get(t, c, &end));
	nodes_free(t);
}

/* The end forgotten with a name's last descriptor: cached attributes
 * older than the writes keep showing them (soak seed 720018: a cat
 * right after the close read 3790 of 8941 bytes, the size a listing
 * had cached before the appends landed). */
static void test_end_forgotten_keeps_the_size_shown(void)
{
	struct nodes *t = nodes_new("/base");
	uint64_t a = nodes_ref(t, NODE_ROOT, "a");
	struct stat st = { .st_mode = S_IFREG | 0600, .st_size = 3790 };
	uint64_t end = 0;

	nodes_set_attr(t, a, &st);
	nodes_end_seed(t, a, 3790);
	nodes_end_raise(t, a, 8941);
	nodes_end_forget(t, a, false);
	CHECK(!nodes_end_get(t, a, &end));
	CHECK(nodes_get_attr(t, a, &st));
	CHECK_EQU(st.st_size, 8941);
	/* A size the server gave later is the size again. */
	st.st_size = 0;
	nodes_set_attr(t, a, &st);
	CHECK(nodes_get_attr(t, a, &st));
	CHECK_EQU(st.st_size, 0);
	nodes_free(t);
}

/* A link group whose nodes the kernel all forgot: a later lookup of its
 * names joins them again (one file, one identity), unless a rename or
 * unlink through the mount changed what the name leads to; a folder
 * renamed carries its remembered names along. */
static void test_forgotten_group_joins_again(void)
{
	struct nodes *t = nodes_new("/base");
	uint64_t d = nodes_ref(t, NODE_ROOT, "d");
	uint64_t a = nodes_ref(t, NODE_ROOT, "a");
	uint64_t b = nodes_ref(t, d, "b");
	uint64_t c = nodes_ref(t, NODE_ROOT, "c");
	uint64_t out[8], a2, b2, c2, b3;

	nodes_twin(t, a, b);
	nodes_twin(t, a, c);
	nodes_forget(t, a, 1);
	nodes_forget(t, b, 1);
	nodes_forget(t, c, 1);
	CHECK(!nodes_find(t, NODE_ROOT, "a"));
	CHECK(!nodes_find(t, d, "b"));
	a2 = nodes_ref(t, NODE_ROOT, "a");
	CHECK_EQU(peers(t, a2, out), 0);
	b2 = nodes_ref(t, d, "b");
	CHECK(nodes_same_file(t, a2, b2));
	CHECK_EQU(peers(t, a2, out), 1);
	/* c was replaced through the mount: another file now. */
	nodes_rename(t, NODE_ROOT, "x", NODE_ROOT, "c");
	c2 = nodes_ref(t, NODE_ROOT, "c");
	CHECK(!nodes_same_file(t, a2, c2));
	/* Forgotten again, its folder renamed: found under the new name. */
	nodes_forget(t, b2, 1);
	CHECK(nodes_find(t, d, "b"));  /* kept for its name (a2 held) */
	nodes_forget(t, a2, 1);
	nodes_rename(t, NODE_ROOT, "d", NODE_ROOT, "e");
	a2 = nodes_ref(t, NODE_ROOT, "a");
	b3 = nodes_ref(t, d, "b");
	CHECK(nodes_same_file(t, a2, b3));
	nodes_forget(t, b3, 1);
	nodes_forget(t, a2, 1);
	nodes_forget(t, d, 1);
	/* The folder forgotten too: its new path still leads there. */
	d = nodes_ref(t, NODE_ROOT, "e");
	b3 = nodes_ref(t, d, "b");
	a2 = nodes_ref(t, NODE_ROOT, "a");
	CHECK(nodes_same_file(t, a2, b3));
	/* Unlinked through the mount: forgotten, it joins nothing. */
	nodes_forget(t, a2, 1);
	nodes_forget(t, b3, 1);
	nodes_unlink(t, NODE_ROOT, "a");
	a2 = nodes_ref(t, NODE_ROOT, "a");
	b3 = nodes_ref(t, d, "b");
	CHECK(!nodes_same_file(t, a2, b3));
	nodes_free(t);
}

int main(void)
{
	UNIT_RUN(test_forgotten_group_joins_again);
	UNIT_RUN(test_ring_join_and_leave);
	UNIT_RUN(test_end_set_reaches_other_names);
	UNIT_RUN(test_end_forgotten_keeps_the_size_shown);
	return unit_summary("test_nodes");
}
