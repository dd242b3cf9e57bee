/*
 * test_identity: the "same file?" rule (fs/identity.c) as plain data:
 * nothing seen fails; the type, the size bounds (confirmed end, highest
 * end sent) and the mtime (only while nothing was written) each decide;
 * acknowledgements, truncation and a touch move the bounds as documented.
 */
#include <sys/stat.h>

#include "identity.h"
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

	ident_seen(&id, 10, true, 1000, true);
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

	ident_seen(&id, 10, true, 1000, true);
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

	ident_seen(&id, 10, true, 1000, true);
	ident_sent(&id, 30);
	ident_seen(&id, 20, true, 3000, false);  /* writes in flight */
	CHECK_EQU(id.lo, 20);
	CHECK_EQU(id.hi, 30);
	CHECK(id.written);
	ident_seen(&id, 30, true, 4000, true);   /* all acknowledged */
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
	ident_seen(&id, 100, true, 1000, true);
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

int main(void)
{
	UNIT_RUN(test_unknown_fails);
	UNIT_RUN(test_quiet_file);
	UNIT_RUN(test_written_bounds);
	UNIT_RUN(test_seen_while_busy_narrows);
	UNIT_RUN(test_truncate_and_touch);
	return unit_summary("test_identity");
}
