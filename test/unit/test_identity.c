/*
 * test_identity: the "same file?" rule (fs/vfs/identity.c) as plain data:
 * nothing seen fails; the type, the size bounds (confirmed end, highest
 * end sent) and the mtime (only while nothing was written) each decide;
 * acknowledgements, truncation (done or maybe done) and a touch move the
 * bounds as documented; the nodes of a link group share one identity.
 */
#include <sys/stat.h>

#include "identity.h"
#include "nodes.h"
#include "sftp.h"
#include "unit.h"

static struct sftp_attrs file(uint64_t size, uint32_t mtime)
{
	return (struct sftp_attrs){
		.flags = SSH_FILEXFER_ATTR_SIZE | SSH_FILEXFER_ATTR_PERMISSIONS |
			 SSH_FILEXFER_ATTR_ACMODTIME,
		.size = size, .perm = S_IFREG | 0644, .mtime = mtime,
	};
}

static void test_unknown_fails(void)
{
	struct ident id = IDENT_INIT;
	struct sftp_attrs a = file(0, 0);

	CHECK(ident_check(&id, &a) != NULL);
}

static void test_quiet_file(void)
{
	struct ident id = IDENT_INIT;
	struct sftp_attrs a = file(10, 1000);

	ident_seen(&id, 10, true, 1000, true, ident_mark(&id));
	CHECK(ident_check(&id, &a) == NULL);
	a.mtime = 1001;             /* replaced, same size: mtime tells */
	CHECK(ident_check(&id, &a) != NULL);
	a = file(11, 1000);         /* grew behind our back */
	CHECK(ident_check(&id, &a) != NULL);
	a = file(10, 1000);
	a.perm = S_IFDIR | 0755;    /* a folder now */
	CHECK(ident_check(&id, &a) != NULL);
	a = file(10, 1000);
	a.flags &= ~SSH_FILEXFER_ATTR_ACMODTIME;  /* cannot compare */
	CHECK(ident_check(&id, &a) != NULL);
	a.flags &= ~SSH_FILEXFER_ATTR_SIZE;
	CHECK(ident_check(&id, &a) != NULL);
}

static void test_written_bounds(void)
{
	struct ident id = IDENT_INIT;
	struct sftp_attrs a;

	ident_seen(&id, 10, true, 1000, true, ident_mark(&id));
	ident_sent(&id, 15);        /* may or may not have landed */
	a = file(10, 2000);
	CHECK(ident_check(&id, &a) == NULL);   /* mtime no longer compared */
	a = file(15, 2000);
	CHECK(ident_check(&id, &a) == NULL);
	a = file(16, 2000);
	CHECK(ident_check(&id, &a) != NULL);
	ident_acked(&id, 15);       /* landed: the file is at least 15 */
	a = file(10, 2000);
	CHECK(ident_check(&id, &a) != NULL);
	a = file(15, 2000);
	CHECK(ident_check(&id, &a) == NULL);
	CHECK_EQU(id.lo, 15);
	CHECK_EQU(id.hi, 15);
}

static void test_seen_while_busy_narrows(void)
{
	struct ident id = IDENT_INIT;

	ident_seen(&id, 10, true, 1000, true, ident_mark(&id));
	ident_sent(&id, 30);
	ident_seen(&id, 20, true, 3000, false, ident_mark(&id));  /* writes in flight */
	CHECK_EQU(id.lo, 20);
	CHECK_EQU(id.hi, 30);
	CHECK(id.written);
	ident_seen(&id, 30, true, 4000, true, ident_mark(&id));   /* all acknowledged */
	CHECK_EQU(id.lo, 30);
	CHECK_EQU(id.hi, 30);
	CHECK(!id.written);
	CHECK_EQU(id.mtime, 4000);
}

static void test_truncate_and_touch(void)
{
	struct ident id = IDENT_INIT;
	struct sftp_attrs a = file(0, 5);

	ident_truncated(&id, 0);    /* O_TRUNC: known, mtime unknown */
	CHECK(ident_check(&id, &a) == NULL);
	a.size = 1;
	CHECK(ident_check(&id, &a) != NULL);
	ident_seen(&id, 100, true, 1000, true, ident_mark(&id));
	ident_touched(&id);         /* utimens: mtime not compared */
	a = file(100, 7);
	CHECK(ident_check(&id, &a) == NULL);
	ident_sent(&id, 100);
	ident_truncated(&id, 40);
	CHECK_EQU(id.lo, 40);
	CHECK_EQU(id.hi, 40);
	ident_acked(&id, 100);      /* sent before the truncate */
	CHECK_EQU(id.lo, 40);
	CHECK_EQU(id.hi, 40);
}

static void test_maybe_truncated(void)
{
	struct ident id = IDENT_INIT;
	struct sftp_attrs a = file(100, 5);

	ident_maybe_truncated(&id, 0);  /* nothing known: stays unknown */
	CHECK(!id.known);
	ident_seen(&id, 100, true, 5, true, ident_mark(&id));
	ident_maybe_truncated(&id, 10); /* reply lost: 10 or 100 */
	CHECK(ident_check(&id, &a) == NULL);
	a.size = 10;
	CHECK(ident_check(&id, &a) == NULL);
	a.size = 101;
	CHECK(ident_check(&id, &a) != NULL);
	ident_maybe_truncated(&id, 200);
	a.size = 200;
	CHECK(ident_check(&id, &a) == NULL);
}

/* A truncate sent, not answered: a quiet view of the file then may be
 * from before it, and must not narrow the bounds the truncate widened. */
static void test_change_in_flight(void)
{
	struct ident id = IDENT_INIT;
	struct sftp_attrs a = file(10, 6);

	ident_seen(&id, 100, true, 5, true, ident_mark(&id));
	ident_change_sent(&id);
	ident_maybe_truncated(&id, 10);
	ident_seen(&id, 100, true, 5, true, ident_mark(&id));  /* FSTAT before it landed */
	CHECK(ident_check(&id, &a) == NULL);  /* ... another one after */
	ident_change_done(&id);
	ident_truncated(&id, 10);
	ident_seen(&id, 10, true, 6, true, ident_mark(&id));
	CHECK(id.lo == 10 && id.hi == 10 && !id.written);
	a = file(100, 5);
	CHECK(ident_check(&id, &a) != NULL);
	ident_change_done(&id);               /* never below zero */
	CHECK(id.changing == 0);
	id = (struct ident)IDENT_INIT;        /* unknown, a change out */
	ident_change_sent(&id);
	ident_seen(&id, 40, true, 5, true, ident_mark(&id));
	a = file(0, 9);
	CHECK(ident_check(&id, &a) == NULL);
	a = file(41, 9);
	CHECK(ident_check(&id, &a) != NULL);
}

/* A report asked for before a write that was acknowledged before the
 * report came (two sessions) may predate the write: it only widens. */
static void test_report_older_than_a_write(void)
{
	struct ident id = IDENT_INIT;
	struct sftp_attrs a = file(20, 6);
	uint32_t m;

	ident_seen(&id, 10, true, 5, true, ident_mark(&id));
	m = ident_mark(&id);                  /* the FSTAT goes out */
	ident_sent(&id, 20);
	ident_acked(&id, 20);
	ident_seen(&id, 10, true, 5, true, m); /* it ran before the write */
	CHECK(ident_check(&id, &a) == NULL);
	a = file(21, 6);
	CHECK(ident_check(&id, &a) != NULL);
	ident_seen(&id, 20, true, 6, true, ident_mark(&id));
	CHECK(id.lo == 20 && id.hi == 20 && !id.written);
}

static void test_shared_judges_type_only(void)
{
	struct ident id = IDENT_INIT;
	struct sftp_attrs a = file(500, 9);

	ident_seen(&id, 10, true, 5, true, ident_mark(&id));
	CHECK(ident_check(&id, &a) != NULL);
	id.shared = true;
	CHECK(ident_check(&id, &a) == NULL);
	a.perm = S_IFDIR | 0755;
	CHECK(ident_check(&id, &a) != NULL);
}

static void test_link_group(void)
{
	struct nodes *t = nodes_new("/base");
	uint64_t a, b, c, ids[4];
	struct ident x, y;

	CHECK(t != NULL);
	if (!t)
		return;
	a = nodes_ref(t, NODE_ROOT, "a");
	b = nodes_ref(t, NODE_ROOT, "b");
	c = nodes_ref(t, NODE_ROOT, "c");
	nodes_ident_seen(t, a, 10, true, 5, true, nodes_ident_mark(t, a));
	nodes_twin(t, a, b);            /* link a b: b takes a's identity */
	CHECK(nodes_ident_get(t, b, &y) && y.known && y.hi == 10);
	nodes_rename(t, NODE_ROOT, "b", NODE_ROOT, "a");  /* one file: swap */
	CHECK_EQU(nodes_find(t, NODE_ROOT, "a"), b);
	CHECK_EQU(nodes_find(t, NODE_ROOT, "b"), a);
	nodes_rename(t, NODE_ROOT, "b", NODE_ROOT, "a");
	CHECK_EQU(nodes_find(t, NODE_ROOT, "a"), a);
	CHECK(nodes_same_file(t, a, b));
	CHECK(!nodes_same_file(t, a, c));
	nodes_ident_sent(t, b, 50);     /* grown through b: a's too */
	CHECK(nodes_ident_get(t, a, &x) && x.hi == 50 && x.written);
	nodes_twin(t, b, c);
	CHECK_EQU(nodes_twins(t, a, ids, 4), 3);
	nodes_ident_truncated(t, c, 7);
	CHECK(nodes_ident_get(t, a, &x) && x.lo == 7 && x.hi == 7);
	nodes_unlink(t, NODE_ROOT, "c"); /* unlinked, still looked up */
	CHECK_EQU(nodes_twins(t, a, ids, 4), 3);
	nodes_forget(t, c, 1);          /* no name left: no other writer */
	CHECK_EQU(nodes_twins(t, a, ids, 4), 2);
	CHECK(nodes_ident_get(t, a, &x) && !x.shared);
	nodes_forget(t, b, 1);          /* forgotten, still named: kept */
	CHECK_EQU(nodes_twins(t, a, ids, 4), 2);
	CHECK(nodes_ident_get(t, a, &x) && !x.shared);
	nodes_ident_sent(t, a, 70);
	CHECK_EQU(nodes_ref(t, NODE_ROOT, "b"), b);  /* the group's node */
	CHECK(nodes_ident_get(t, b, &x) && x.hi == 70);
	nodes_forget(t, b, 1);
	nodes_forget(t, a, 1);          /* the last held: the kept one goes */
	CHECK_EQU(nodes_find(t, NODE_ROOT, "a"), 0);
	CHECK_EQU(nodes_find(t, NODE_ROOT, "b"), 0);
	nodes_free(t);
}

/* At most 4 forgotten names per group stay; past that the group is
 * judged by type only, and all go with the last held member. */
static void test_kept_names_bounded(void)
{
	struct nodes *t = nodes_new("/r");
	char name[8];
	uint64_t a, l[5], ids[8];
	struct ident x;

	CHECK(t != NULL);
	if (!t)
		return;
	a = nodes_ref(t, NODE_ROOT, "a");
	nodes_ident_seen(t, a, 10, true, 5, true, nodes_ident_mark(t, a));
	for (int i = 0; i < 5; i++) {
		snprintf(name, sizeof(name), "l%d", i);
		l[i] = nodes_ref(t, NODE_ROOT, name);
		nodes_twin(t, a, l[i]);
	}
	CHECK_EQU(nodes_twins(t, a, ids, 8), 6);
	for (int i = 0; i < 5; i++)
		nodes_forget(t, l[i], 1);
	CHECK_EQU(nodes_twins(t, a, ids, 8), 5);
	CHECK(nodes_ident_get(t, a, &x) && x.shared);
	CHECK_EQU(nodes_find(t, NODE_ROOT, "l0"), l[0]);
	CHECK_EQU(nodes_find(t, NODE_ROOT, "l4"), 0);
	nodes_forget(t, a, 1);
	for (int i = 0; i < 4; i++)
		CHECK(!nodes_ident_get(t, l[i], &x));
	nodes_free(t);
}

/* M11: the reopen's own FSTAT, answered before a write another session
 * had acknowledged meanwhile landed: judged by the bounds when it was
 * asked for and now (the rule itself, before any baseline is taken). */
static void test_report_judged_by_both_moments(void)
{
	struct ident id = IDENT_INIT, then;
	struct sftp_attrs a = file(0, 5);

	ident_seen(&id, 0, true, 5, true, ident_mark(&id));
	then = id;                  /* the FSTAT is sent */
	ident_sent(&id, 200);
	ident_acked(&id, 200);      /* the write lands after it was served */
	CHECK(ident_check(&id, &a) != NULL);
	ident_since(&id, &then);
	CHECK(ident_check(&id, &a) == NULL);
	a.size = 200;
	CHECK(ident_check(&id, &a) == NULL);
	a.size = 201;
	CHECK(ident_check(&id, &a) != NULL);
	then = id;                  /* nothing changed since: as it is */
	ident_acked(&id, 200);
	id = then;
	ident_since(&id, &then);
	CHECK_EQU(id.lo, 0);
	CHECK_EQU(id.hi, 200);
}

/* A kept name goes with its folder (its path would lead nowhere); the
 * rest of its group is then judged by type only. */
static void test_kept_name_goes_with_its_folder(void)
{
	struct nodes *t = nodes_new("/r");
	uint64_t d, a, b;
	struct ident x;

	CHECK(t != NULL);
	if (!t)
		return;
	d = nodes_ref(t, NODE_ROOT, "d");
	a = nodes_ref(t, d, "a");
	b = nodes_ref(t, d, "b");
	nodes_ident_seen(t, a, 10, true, 5, true, nodes_ident_mark(t, a));
	nodes_twin(t, a, b);
	nodes_forget(t, b, 1);
	CHECK_EQU(nodes_find(t, d, "b"), b);
	nodes_pin(t, b);                /* a handle: held again */
	nodes_unpin(t, b);              /* kept again */
	CHECK_EQU(nodes_find(t, d, "b"), b);
	nodes_forget(t, d, 1);
	CHECK(!nodes_ident_get(t, d, &x));
	CHECK(!nodes_ident_get(t, b, &x));
	CHECK(nodes_ident_get(t, a, &x) && x.shared);
	nodes_free(t);
}

int main(void)
{
	UNIT_RUN(test_unknown_fails);
	UNIT_RUN(test_quiet_file);
	UNIT_RUN(test_written_bounds);
	UNIT_RUN(test_seen_while_busy_narrows);
	UNIT_RUN(test_truncate_and_touch);
	UNIT_RUN(test_maybe_truncated);
	UNIT_RUN(test_change_in_flight);
	UNIT_RUN(test_report_older_than_a_write);
	UNIT_RUN(test_shared_judges_type_only);
	UNIT_RUN(test_link_group);
	UNIT_RUN(test_kept_names_bounded);
	UNIT_RUN(test_report_judged_by_both_moments);
	UNIT_RUN(test_kept_name_goes_with_its_folder);
	return unit_summary("test_identity");
}
