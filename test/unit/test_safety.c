/*
 * test_safety: the small pure helpers of issue 15's safety work: the log's
 * escaping of control characters (lib/log.c), the kernel FUSE request
 * timeout rule (lib/fusetimeout.c, over a fake sysctl folder) and the
 * private/shared state folder (lib/statedir.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fusetimeout.h"
#include "log.h"
#include "statedir.h"
#include "unit.h"

static char scratch[] = "/tmp/test_safety.XXXXXX";

static void test_log_escape(void)
{
	char out[64];
	size_t n = log_escape(out, sizeof(out), "plain 'name' \xc3\xa9");

	CHECK_EQ(n, strlen(out));
	CHECK_STR(out, "plain 'name' \xc3\xa9");
	log_escape(out, sizeof(out), "a\nsteadyfs: error: forged\r\t\x1b[31m\x7f");
	CHECK_STR(out, "a\\x0asteadyfs: error: forged\\x0d\\x09\\x1b[31m\\x7f");
	CHECK(!strchr(out, '\n'));
	/* truncated at a whole escape, always terminated */
	CHECK_EQ(log_escape(out, 6, "ab\ncd"), 2);
	CHECK_STR(out, "ab");
	CHECK_EQ(log_escape(out, 7, "ab\ncd"), 6);
	CHECK_STR(out, "ab\\x0a");
	CHECK_EQ(log_escape(out, 1, "x"), 0);
	CHECK_STR(out, "");
}

static void write_sysctl(const char *name, const char *v)
{
	char p[256];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", scratch, name);
	if (!v) {
		unlink(p);
		return;
	}
	f = fopen(p, "w");
	if (CHECK(f != NULL)) {
		fputs(v, f);
		fclose(f);
	}
}

static void timeout_case(const char *dflt, const char *max, bool supported,
			 unsigned effective, const char *source)
{
	struct fuse_timeout t;

	write_sysctl("default_request_timeout", dflt);
	write_sysctl("max_request_timeout", max);
	fuse_timeout_read(scratch, &t);
	CHECK_EQ(t.supported, supported);
	CHECK_EQ(t.effective, effective);
	CHECK_STR(t.source, source);
}

static void test_fuse_timeout(void)
{
	/* before Linux 6.15: neither file */
	timeout_case(NULL, NULL, false, 0, "");
	timeout_case("0\n", "0\n", true, 0, "");
	timeout_case("30\n", "0\n", true, 30, "default_request_timeout");
	/* the maximum applies alone, and caps the default */
	timeout_case("0\n", "600\n", true, 600, "max_request_timeout");
	timeout_case("900\n", "600\n", true, 600, "max_request_timeout");
	timeout_case("300\n", "600\n", true, 300, "default_request_timeout");
	/* garbage counts as absent */
	timeout_case("x\n", "99999999\n", false, 0, "");
	CHECK(fuse_timeout_floor(20) == 100);
	CHECK(fuse_timeout_floor(400) == 860);
}

static void check_dir(const char *p, mode_t mode, gid_t gid)
{
	struct stat st;

	if (CHECK_EQ(lstat(p, &st), 0)) {
		CHECK(S_ISDIR(st.st_mode));
		CHECK_EQ(st.st_mode & 07777, mode);
		if (gid != (gid_t)-1)
			CHECK_EQ(st.st_gid, gid);
	}
}

static void test_statedir_prepare(void)
{
	char d[256], parent[256], link[256];

	snprintf(parent, sizeof(parent), "%s/new", scratch);
	snprintf(d, sizeof(d), "%s/new/mirror", scratch);
	CHECK_EQ(statedir_prepare(d, false, 0), 0);
	check_dir(parent, 0755, (gid_t)-1);   /* parents stay traversable */
	check_dir(d, 0700, (gid_t)-1);
	/* an existing 0755 folder is narrowed; shared widens to the group */
	CHECK_EQ(chmod(d, 0755), 0);
	CHECK_EQ(statedir_prepare(d, false, 0), 0);
	check_dir(d, 0700, (gid_t)-1);
	if (geteuid() == 0) {
		CHECK_EQ(statedir_prepare(d, true, 4242), 0);
		check_dir(d, 0750, 4242);
	}
	/* a symlink in the last component is refused */
	snprintf(link, sizeof(link), "%s/link", scratch);
	CHECK_EQ(symlink(d, link), 0);
	CHECK_EQ(statedir_prepare(link, false, 0), -1);
	CHECK(errno == ELOOP || errno == ENOTDIR);
}

int main(void)
{
	char cmd[128];

	log_init("test_safety", SLOG_ERR);
	if (!mkdtemp(scratch)) {
		perror("mkdtemp");
		return 1;
	}
	UNIT_RUN(test_log_escape);
	UNIT_RUN(test_fuse_timeout);
	UNIT_RUN(test_statedir_prepare);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", scratch);
	if (system(cmd) != 0)
		fprintf(stderr, "test_safety: cannot remove %s\n", scratch);
	return unit_summary("test_safety");
}
