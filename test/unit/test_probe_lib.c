/*
 * Unit tests of the probe's shared library parts: path normalising and
 * systemd path escaping (checked against the real systemd-escape when it
 * is installed), the mount table from a fixture mountinfo, Prometheus
 * formatting, strbuf, atomicfile, mirror reading and probe_run on local
 * paths. Broken mounts are the integration tests' job (test_probe.py).
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "unit.h"

#include "atomicfile.h"
#include "clock.h"
#include "fuseconn.h"
#include "mounttab.h"
#include "probe.h"
#include "prom.h"
#include "statedir.h"
#include "strbuf.h"

static char scratch[] = "/tmp/test_probe_lib.XXXXXX";

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (!CHECK(f != NULL))
		return;
	fputs(text, f);
	fclose(f);
}

/* ---- paths ------------------------------------------------------------ */

static void check_norm(const char *in, const char *cwd, const char *want)
{
	char out[256];

	if (CHECK_EQ(mt_path_normalize(in, cwd, out, sizeof(out)), 0))
		CHECK_STR(out, want);
}

static void test_normalize(void)
{
	char small[4];

	check_norm("/", NULL, "/");
	check_norm("//a//b/", NULL, "/a/b");
	check_norm("/a/./b/.", NULL, "/a/b");
	check_norm("/a/../b", NULL, "/b");
	check_norm("/../..", NULL, "/");
	check_norm("x/y", "/srv/jobs", "/srv/jobs/x/y");
	check_norm("..", "/srv/jobs", "/srv");
	check_norm("", "/srv", "/srv");
	CHECK_EQ(mt_path_normalize("/abcdef", NULL, small, sizeof(small)), -1);
	CHECK_EQ(errno, ENAMETOOLONG);
	CHECK_EQ(mt_path_depth("/"), 0);
	CHECK_EQ(mt_path_depth("/a"), 1);
	CHECK_EQ(mt_path_depth("/a/b"), 2);
}

static void test_within(void)
{
	CHECK(mt_path_within("/a/b", "/a/b"));
	CHECK(mt_path_within("/a/b/c", "/a/b"));
	CHECK(!mt_path_within("/a/bc", "/a/b"));
	CHECK(!mt_path_within("/a", "/a/b"));
	CHECK(mt_path_within("/anything", "/"));
	CHECK(mt_path_within("/", "/"));
}

/* systemd-escape --path PATH, or NULL if it cannot be run. */
static int real_escape(const char *path, char *out, size_t outsz)
{
	int p[2], status;
	ssize_t n;
	pid_t pid;

	if (access("/usr/bin/systemd-escape", X_OK) < 0 || pipe(p) < 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		dup2(p[1], 1);
		close(p[0]);
		execl("/usr/bin/systemd-escape", "systemd-escape", "--path", "--", path,
		      (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	n = pid > 0 ? read(p[0], out, outsz - 1) : -1;
	close(p[0]);
	if (pid > 0)
		waitpid(pid, &status, 0);
	if (n <= 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return -1;
	out[n] = '\0';
	out[strcspn(out, "\n")] = '\0';
	return 0;
}

static void check_escape(const char *path, const char *want)
{
	char out[512], real[512];

	if (!CHECK_EQ(statedir_escape_path(path, out, sizeof(out)), 0))
		return;
	CHECK_STR(out, want);
	if (real_escape(path, real, sizeof(real)) == 0)
		CHECK_STR(out, real);
}

static void test_escape(void)
{
	char out[512];

	check_escape("/", "-");
	check_escape("/srv/healtharchive/jobs", "srv-healtharchive-jobs");
	check_escape("/a b/c-d", "a\\x20b-c\\x2dd");
	check_escape("//a//b/", "a-b");
	check_escape("/.x/y", "\\x2ex-y");
	check_escape("/a/.hidden", "a-.hidden");
	check_escape("/a:b_c.d", "a:b_c.d");
	check_escape("/a/./b", "a-b");
	check_escape("/a/\xc3\xa9", "a-\\xc3\\xa9");
	check_escape("/a\\b", "a\\x5cb");
	check_escape("/...", "\\x2e..");
	CHECK_EQ(statedir_escape_path("/a/../b", out, sizeof(out)), -1);
	CHECK_EQ(statedir_escape_path("rel", out, sizeof(out)), -1);
	CHECK_EQ(statedir_for_mount("/srv/jobs", out, sizeof(out)), 0);
	CHECK_STR(out, "/run/steadyfs/srv-jobs");
	CHECK_EQ(statedir_escape_path("/abc", out, 3), -1);
	CHECK_EQ(errno, ENAMETOOLONG);
}

/* ---- mount table ------------------------------------------------------ */

static const char mountinfo_fixture[] =
	"22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
	"30 22 0:40 / /srv/jobs rw shared:2 - fuse.sshfs u@h:/jobs rw,user_id=0\n"
	"31 30 0:41 / /srv/jobs/a\\040b rw shared:3 - tmpfs tmpfs-a rw\n"
	"32 31 0:42 / /srv/jobs/a\\040b/c rw shared:4 - fuse.steadyfs u@h:/c rw\n"
	"33 30 0:43 / /srv/jobs/a\\040b rw shared:5 - tmpfs tmpfs-a2 rw\n"
	"34 22 0:44 / /srv/jobsx rw shared:6 - tmpfs other rw\n"
	"35 22 0:40 /j1 /srv/hot/j1 rw shared:2 - fuse.sshfs u@h:/jobs rw,user_id=0\n"
	"36 22 0:45 / /srv/user rw - fuse.sshfs u@h:/jobs rw,user_id=65534,group_id=65534\n"
	"37 22 0:46 / /srv/odd rw - fuse.x src rw,user_id=0x1\n";

static void test_mounttab(void)
{
	struct mounttab mt = MOUNTTAB_INIT;
	const struct mount_entry *e;
	char file[128], err[256];

	snprintf(file, sizeof(file), "%s/mountinfo", scratch);
	write_text(file, mountinfo_fixture);
	if (!CHECK_EQ(mounttab_load(&mt, "/srv/jobs", file, err, sizeof(err)), 0))
		return;
	CHECK_EQ(mt.n, 4);  /* /srv/jobsx is not below /srv/jobs */
	CHECK_STR(mt.v[0].target, "/srv/jobs");
	CHECK_STR(mt.v[0].fstype, "fuse.sshfs");
	CHECK_STR(mt.v[0].source, "u@h:/jobs");
	CHECK_EQ(mt.v[0].major, 0);
	CHECK_EQ(mt.v[0].minor, 40);
	CHECK_EQ(mt.v[0].id, 30);
	CHECK_EQ(mt.v[0].parent_id, 22);
	CHECK_STR(mt.v[1].target, "/srv/jobs/a b");
	CHECK(mt.v[1].shadowed);   /* 33 sits on top of 31 */
	CHECK(!mt.v[3].shadowed);
	CHECK(mount_is_fuse(&mt.v[0]) && !mount_is_steadyfs(&mt.v[0]));
	CHECK(mount_is_steadyfs(&mt.v[2]) && mount_is_fuse(&mt.v[2]));
	CHECK(!mount_is_fuse(&mt.v[1]));

	e = mounttab_find(&mt, "/srv/jobs/a b");
	CHECK(e && strcmp(e->source, "tmpfs-a2") == 0);
	e = mounttab_containing(&mt, "/srv/jobs/a b/c/deep/file");
	CHECK(e && e->id == 32);
	e = mounttab_containing(&mt, "/srv/jobs/a b/x");
	CHECK(e && e->id == 33);
	CHECK(mounttab_containing(&mt, "/elsewhere") == NULL);
	e = mounttab_find_dev(&mt, makedev(0, 42));
	CHECK(e && e->id == 32);
	CHECK(mounttab_find_dev(&mt, makedev(0, 41)) == NULL);  /* shadowed */

	mounttab_sort_deepest_first(&mt);
	CHECK_EQ(mt.v[0].id, 32);
	CHECK_EQ(mt.v[1].id, 33);  /* top of the stack comes off first */
	CHECK_EQ(mt.v[2].id, 31);
	CHECK_EQ(mt.v[3].id, 30);
	mounttab_sort_shallowest_first(&mt);
	CHECK_EQ(mt.v[0].id, 30);
	CHECK_EQ(mt.v[1].id, 31);
	CHECK_EQ(mt.v[2].id, 33);
	CHECK_EQ(mt.v[3].id, 32);
	mounttab_release(&mt);
	CHECK_EQ(mt.n, 0);

	CHECK_EQ(mounttab_load(&mt, "/", file, err, sizeof(err)), 0);
	CHECK_EQ(mt.n, 9);
	/* A bind of a subfolder: the backing mount's device, source and
	 * type with another root. */
	CHECK_STR(mt.v[1].root, "/");
	CHECK_STR(mt.v[6].root, "/j1");
	CHECK_EQ(mt.v[6].dev, mt.v[1].dev);
	CHECK_STR(mt.v[6].source, mt.v[1].source);
	CHECK_STR(mt.v[6].super_opts, "rw,user_id=0");
	CHECK_EQ(mount_fuse_user(&mt.v[6]), 0);
	CHECK_EQ(mount_fuse_user(&mt.v[7]), 65534);
	CHECK_EQ(mount_fuse_user(&mt.v[8]), -1);   /* not a number */
	CHECK_EQ(mount_fuse_user(&mt.v[3]), -1);   /* fuse.steadyfs without user_id */
	CHECK_EQ(mount_fuse_user(&mt.v[0]), -1);   /* not FUSE */
	mounttab_release(&mt);
	CHECK_EQ(mounttab_has_dev(file, makedev(0, 45), NULL), 1);
	CHECK_EQ(mounttab_has_dev(file, makedev(0, 99), NULL), 0);
	CHECK_EQ(mounttab_has_dev("/nonexistent/mountinfo", makedev(0, 45), NULL), -1);
	/* The device of an sshfs mount is not a steadyfs one. */
	CHECK_EQ(mounttab_has_dev(file, makedev(0, 45), MT_FSTYPE_STEADYFS), 0);
	CHECK_EQ(mounttab_has_dev(file, makedev(0, 42), MT_FSTYPE_STEADYFS), 1);
	/* This process holds no /dev/fuse; a pid that cannot exist holds nothing. */
	CHECK_EQ(fuseconn_held_by((long)getpid(), makedev(0, 42)), -1);
	CHECK_EQ(fuseconn_held_by(-1, makedev(0, 42)), -1);
	CHECK_EQ(mounttab_load(&mt, "relative", file, err, sizeof(err)), -1);
	CHECK_EQ(mounttab_load(&mt, "/", "/nonexistent/mountinfo", err, sizeof(err)), -1);
	CHECK(strstr(err, "/nonexistent/mountinfo") != NULL);
	/* The live table always has "/". */
	CHECK_EQ(mounttab_load(&mt, "/", NULL, err, sizeof(err)), 0);
	CHECK(mounttab_find(&mt, "/") != NULL);
	mounttab_release(&mt);
}

/* ---- text output --------------------------------------------------------- */

static void test_strbuf_prom(void)
{
	struct strbuf sb = STRBUF_INIT;
	const char *labels[] = { "path", "/a \"q\" \\ \nz", "state", "ok" };

	CHECK_STR(strbuf_str(&sb), "");
	strbuf_addf(&sb, "%d-%s", 42, "x");
	CHECK_STR(strbuf_str(&sb), "42-x");
	strbuf_reset(&sb);
	for (int i = 0; i < 1000; i++)
		strbuf_adds(&sb, "0123456789");
	CHECK_EQ(sb.len, 10000);
	CHECK(strbuf_ok(&sb));
	strbuf_reset(&sb);

	prom_family(&sb, "m", "gauge", "help with \\ and\nnewline \"q\"");
	CHECK_STR(strbuf_str(&sb),
		  "# HELP m help with \\\\ and\\nnewline \"q\"\n# TYPE m gauge\n");
	strbuf_reset(&sb);
	prom_sample(&sb, "m", labels, 2, 0.5);
	CHECK_STR(strbuf_str(&sb), "m{path=\"/a \\\"q\\\" \\\\ \\nz\",state=\"ok\"} 0.5\n");
	strbuf_reset(&sb);
	prom_sample(&sb, "m", NULL, 0, NAN);
	prom_sample(&sb, "m", NULL, 0, -INFINITY);
	prom_sample(&sb, "m", NULL, 0, 1795639420.5);
	CHECK_STR(strbuf_str(&sb), "m NaN\nm -Inf\nm 1795639420.5\n");
	strbuf_release(&sb);
}

/* ---- atomic files ----------------------------------------------------------- */

static int count_entries(const char *dir)
{
	char cmd[256];
	FILE *p;
	int n = 0, c;

	snprintf(cmd, sizeof(cmd), "ls -A '%s'", dir);
	p = popen(cmd, "r");
	if (!p)
		return -1;
	while ((c = fgetc(p)) != EOF)
		n += c == '\n';
	pclose(p);
	return n;
}

static void test_atomicfile(void)
{
	char dir[128], path[160], err[512], buf[64] = "";
	struct stat st;
	FILE *f;

	snprintf(dir, sizeof(dir), "%s/atomic", scratch);
	CHECK_EQ(mkdir(dir, 0755), 0);
	snprintf(path, sizeof(path), "%s/out.prom", dir);
	CHECK_EQ(atomicfile_write(path, "one\n", 4, 0640, err, sizeof(err)), 0);
	CHECK_EQ(atomicfile_write(path, "two\n", 4, 0640, err, sizeof(err)), 0);
	f = fopen(path, "r");
	if (CHECK(f != NULL)) {
		CHECK(fgets(buf, sizeof(buf), f) != NULL);
		fclose(f);
	}
	CHECK_STR(buf, "two\n");
	CHECK_EQ(stat(path, &st), 0);
	CHECK_EQ(st.st_mode & 0777, 0640 & ~(mode_t)022 & 0777);
	CHECK_EQ(count_entries(dir), 1);

	/* A target that is a folder: the rename fails, the temp file goes. */
	snprintf(path, sizeof(path), "%s/sub", dir);
	CHECK_EQ(mkdir(path, 0755), 0);
	CHECK_EQ(atomicfile_write(path, "x", 1, 0644, err, sizeof(err)), -1);
	CHECK(strstr(err, "rename") != NULL);
	CHECK_EQ(count_entries(dir), 2);  /* out.prom and sub, no temp */

	snprintf(path, sizeof(path), "%s/nope/x", dir);
	CHECK_EQ(atomicfile_write(path, "x", 1, 0644, err, sizeof(err)), -1);
	CHECK_EQ(errno, ENOENT);
	CHECK_EQ(atomicfile_check_dir(path, err, sizeof(err)), -1);
	snprintf(path, sizeof(path), "%s/ok.prom", dir);
	CHECK_EQ(atomicfile_check_dir(path, err, sizeof(err)), 0);
	CHECK_EQ(atomicfile_check_dir("relative.prom", err, sizeof(err)), 0);
	CHECK_EQ(atomicfile_write("", "x", 1, 0644, err, sizeof(err)), -1);
}

/* ---- mirrors -------------------------------------------------------------- */

static void test_mirror(void)
{
	struct mirror_status st;
	char dir[128], file[160], json[256];
	double now = clock_wall();

	snprintf(dir, sizeof(dir), "%s/mirror", scratch);
	CHECK_EQ(mkdir(dir, 0755), 0);
	snprintf(file, sizeof(file), "%s/status.json", dir);

	mirror_read(dir, now, &st);
	CHECK_EQ(st.health, MIRROR_MISSING);

	snprintf(json, sizeof(json),
		 "{\"state\":\"degraded\",\"since\":100,\"updated\":%.3f,\"pid\":77,"
		 "\"mountpoint\":\"/m\",\"keeper_pid\":76,\"device\":\"0:52\"}", now - 2);
	write_text(file, json);
	mirror_read(dir, now, &st);
	CHECK_EQ(st.health, MIRROR_FRESH);
	CHECK_STR(st.state, "degraded");
	CHECK_EQ(st.pid, 77);
	CHECK_EQ(st.keeper_pid, 76);
	CHECK_STR(st.device, "0:52");
	CHECK(st.age > 1.9 && st.age < 2.1);
	CHECK(st.since == 100);

	mirror_read(dir, now + 20, &st);
	CHECK_EQ(st.health, MIRROR_STALE);

	write_text(file, "{\"state\":\"connected\"}");  /* no "updated": mtime */
	mirror_read(dir, clock_wall(), &st);
	CHECK_EQ(st.health, MIRROR_FRESH);
	mirror_read(dir, clock_wall() + 60, &st);
	CHECK_EQ(st.health, MIRROR_STALE);

	write_text(file, "[1,2]");
	mirror_read(dir, now, &st);
	CHECK_EQ(st.health, MIRROR_BAD);
	write_text(file, "{\"state\":");
	mirror_read(dir, now, &st);
	CHECK_EQ(st.health, MIRROR_BAD);
	CHECK(strchr(st.error, '\n') == NULL);
	CHECK_STR(mirror_health_name(MIRROR_STALE), "stale");
}

/* ---- probe_run on local paths ------------------------------------------------ */

static void test_probe_local(void)
{
	struct probe_req reqs[4] = {
		{ .path = scratch, .flags = PROBE_F_RESOLVE },
		{ .path = "/nonexistent/x" },
		{ .path = "/etc/hostname/x" },
		{ .path = "/etc/hostname" },
	};
	struct probe_result res[4];
	struct probe_opts o = { .timeout = 2 };
	char err[256], sdir[160];
	uint64_t t0 = clock_mono_ns();

	snprintf(sdir, sizeof(sdir), "%s/state", scratch);
	o.state_dir = sdir;
	if (!CHECK_EQ(probe_run(&o, reqs, 4, res, err, sizeof(err)), 0))
		return;
	CHECK(clock_mono_ns() - t0 < 2 * NS_PER_SEC);
	CHECK_EQ(res[0].state, PROBE_OK);
	CHECK_STR(res[0].resolved, scratch);
	CHECK(S_ISDIR(res[0].mode));
	CHECK(res[0].pid > 0 && !res[0].abandoned);
	CHECK(probe_result_healthy(&res[0]));
	CHECK_EQ(res[1].state, PROBE_MISSING);
	CHECK_EQ(res[1].err, ENOENT);
	CHECK_STR(res[1].op, "stat");
	CHECK_EQ(res[2].state, PROBE_ERROR);
	CHECK_EQ(res[2].err, ENOTDIR);
	CHECK_EQ(res[3].state, PROBE_OK);
	CHECK(S_ISREG(res[3].mode));
	CHECK_EQ(probe_stuck_list(sdir, NULL, NULL, err, sizeof(err)), 0);
	CHECK_STR(probe_state_name(PROBE_DEGRADED), "degraded");
	CHECK(!probe_state_healthy(PROBE_HUNG));
	/* No paths at all is a valid, empty run. */
	CHECK_EQ(probe_run(&o, reqs, 0, res, err, sizeof(err)), 0);
}

int main(void)
{
	if (!mkdtemp(scratch)) {
		perror("mkdtemp");
		return 1;
	}
	UNIT_RUN(test_normalize);
	UNIT_RUN(test_within);
	UNIT_RUN(test_escape);
	UNIT_RUN(test_mounttab);
	UNIT_RUN(test_strbuf_prom);
	UNIT_RUN(test_atomicfile);
	UNIT_RUN(test_mirror);
	UNIT_RUN(test_probe_local);
	{
		char cmd[160];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", scratch);
		if (system(cmd) != 0)
			fprintf(stderr, "warning: cannot remove '%s'\n", scratch);
	}
	return unit_summary("test_probe_lib");
}
