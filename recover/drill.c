/*
 * drill: a rehearsal on a stale FUSE mount made here, in a private mount
 * namespace and a scratch folder. See drill.h.
 */
#include "drill.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "atomicfile.h"
#include "child.h"
#include "mounttab.h"
#include "mountops.h"
#include "pass.h"
#include "paths.h"

struct drill {
	FILE *out;
	int step;
	/* Short fixed paths: the scratch folder is /tmp/steadyfs-drill.XXXXXX. */
	char dir[32];
	char root[64], src[64], state[64], manifest[64], sentinel[64];
	char lock[96];
	pid_t hung_pid;               /* the silent daemon, killed at clean-up */
};

static void say(struct drill *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct drill *d, const char *fmt, ...)
{
	va_list ap;

	fprintf(d->out, "drill: step %d: ", ++d->step);
	va_start(ap, fmt);
	vfprintf(d->out, fmt, ap);
	va_end(ap);
	fputc('\n', d->out);
	fflush(d->out);
}

static void path_in(char *out, size_t outsz, const char *a, const char *b)
{
	snprintf(out, outsz, "%s/%s", a, b);
}

/* The daemon: mounts /dev/fuse on `target`, reports, then never answers.
 * Only the child runs this. */
static void daemon_main(const char *target, int report)
{
	char opts[128];
	int err = 0, fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);

	if (fd < 0) {
		err = errno;
	} else {
		snprintf(opts, sizeof(opts), "fd=%d,rootmode=40000,user_id=0,group_id=0", fd);
		if (mount("steadyfs-drill", target, "fuse.drill", MS_NOSUID | MS_NODEV, opts) < 0)
			err = errno;
	}
	if (write(report, &err, sizeof(err)) != sizeof(err) || err)
		_exit(1);
	close(report);
	for (;;)
		pause();
}

/* Starts a FUSE "daemon" for `target`; returns its pid, or -1 with `err`. */
static pid_t fuse_daemon(const char *target, char *err, size_t errsz)
{
	int p[2], code = 0;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0) {
		snprintf(err, errsz, "pipe: %s", strerror(errno));
		return -1;
	}
	pid = fork();
	if (pid == 0) {
		close(p[0]);
		daemon_main(target, p[1]);
	}
	close(p[1]);
	if (pid < 0 || read(p[0], &code, sizeof(code)) != sizeof(code) || code) {
		snprintf(err, errsz, "cannot mount a FUSE test filesystem on '%s': %s", target,
			 pid < 0 ? strerror(errno) : code ? strerror(code) : "daemon died");
		if (pid > 0) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
		}
		pid = -1;
	}
	close(p[0]);
	return pid;
}

static int write_file(const char *path, const char *text, char *err, size_t errsz)
{
	return atomicfile_write(path, text, strlen(text), 0644, err, errsz);
}

/* Scratch folder, private namespace, source tree, manifest, sentinel. */
static int setup(struct drill *d, char *err, size_t errsz)
{
	char job[96], hello[128], text[512];

	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
		snprintf(err, errsz, "cannot make a private mount namespace: %s", strerror(errno));
		return -1;
	}
	say(d, "private mount namespace: nothing mounted here is seen outside");
	snprintf(d->dir, sizeof(d->dir), "/tmp/steadyfs-drill.XXXXXX");
	if (!mkdtemp(d->dir)) {
		snprintf(err, errsz, "cannot create a scratch folder: %s", strerror(errno));
		d->dir[0] = '\0';
		return -1;
	}
	path_in(d->root, sizeof(d->root), d->dir, "root");
	path_in(d->src, sizeof(d->src), d->dir, "src");
	path_in(d->state, sizeof(d->state), d->dir, "state");
	path_in(d->manifest, sizeof(d->manifest), d->dir, "manifest");
	path_in(d->sentinel, sizeof(d->sentinel), d->dir, "enabled");
	path_in(d->lock, sizeof(d->lock), d->state, "lock");
	path_in(job, sizeof(job), d->src, "job");
	path_in(hello, sizeof(hello), job, "hello");
	if (mkdir_p(job, 0755) < 0 || mkdir_p(d->state, 0755) < 0) {
		snprintf(err, errsz, "cannot create folders in '%s': %s", d->dir, strerror(errno));
		return -1;
	}
	/* The drill's FUSE mounts are ours (listed by source and type) but
	 * never re-made (noauto): the binds of `src` take their place. */
	snprintf(text, sizeof(text), "# steadyfs-recover drill\n%s %s/base none bind 0 0\n"
		 "%s/base/job %s/jobs/hot none bind 0 0\n"
		 "steadyfs-drill %s/deep/hung fuse.drill noauto 0 0\n",
		 d->src, d->root, d->root, d->root, d->root);
	if (write_file(hello, "drill\n", err, errsz) < 0 ||
	    write_file(d->manifest, text, err, errsz) < 0 ||
	    write_file(d->sentinel, "", err, errsz) < 0)
		return -1;
	say(d, "scratch folder %s (root, manifest, state, sentinel inside)", d->dir);
	return 0;
}

/* The incident's shape: a dead base, a bind of it, a wedged mount. */
static int break_mounts(struct drill *d, char *err, size_t errsz)
{
	char base[96], hot[96], hung[96];
	pid_t pid;

	path_in(base, sizeof(base), d->root, "base");
	path_in(hot, sizeof(hot), d->root, "jobs/hot");
	path_in(hung, sizeof(hung), d->root, "deep/hung");
	if (mkdir_p(base, 0755) < 0 || mkdir_p(hot, 0755) < 0 ||
	    mkdir_p(hung, 0755) < 0) {
		snprintf(err, errsz, "cannot create folders in '%s': %s", d->root, strerror(errno));
		return -1;
	}
	pid = fuse_daemon(base, err, errsz);
	if (pid < 0)
		return -1;
	if (mount(base, hot, NULL, MS_BIND, NULL) < 0) {
		snprintf(err, errsz, "cannot bind '%s' on '%s': %s", base, hot, strerror(errno));
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		return -1;
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	say(d, "stale FUSE mount %s (its daemon, pid %d, killed) and its bind mount %s",
	    base, (int)pid, hot);
	d->hung_pid = fuse_daemon(hung, err, errsz);
	if (d->hung_pid < 0)
		return -1;
	say(d, "hung FUSE mount %s (daemon pid %d alive, never answers)", hung,
	    (int)d->hung_pid);
	return 0;
}

/* The options of a drill pass. */
static void pass_opts(const struct drill *d, const struct recover_opts *base,
		      struct recover_opts *o, int apply)
{
	static const char *const hooks[] = { "true" };

	*o = *base;
	o->drill = 0;
	snprintf(o->root, sizeof(o->root), "%s", d->root);
	o->manifest = d->manifest;
	o->sentinel = d->sentinel;
	snprintf(o->state_dir, sizeof(o->state_dir), "%s", d->state);
	snprintf(o->lock, sizeof(o->lock), "%s", d->lock);
	o->apply = apply;
	o->confirm_runs = 2;
	o->min_age = 0;
	o->cooldown = 0;
	o->pre = o->post = (const char **)hooks;
	o->npre = o->npost = 1;
	o->guard = NULL;
	o->textfile = NULL;
	o->watch = 0;
}

static size_t count_mounts(const char *root)
{
	struct mounttab mt = MOUNTTAB_INIT;
	char err[256];
	size_t n = 0;

	if (mounttab_load(&mt, root, NULL, err, sizeof(err)) == 0)
		n = mt.n;
	mounttab_release(&mt);
	return n;
}

static int read_hello(void *arg)
{
	char buf[16] = "";
	int fd = open(arg, O_RDONLY);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);

	if (n < 0 || strcmp(buf, "drill\n") != 0) {
		fprintf(stderr, "cannot read '%s': %s\n", (char *)arg,
			n < 0 ? strerror(errno) : "wrong contents");
		return 1;
	}
	return 0;
}

/* Reads the recovered paths in a child (they could still be dead). */
static int check_reads(struct drill *d)
{
	const char *rel[] = { "base/job/hello", "jobs/hot/hello" };
	int ok = 1;

	for (size_t i = 0; i < 2; i++) {
		char path[128], err[256];
		struct child_result res;

		snprintf(path, sizeof(path), "%s/%s", d->root, rel[i]);
		if (child_run(read_hello, path, 5, &res, err, sizeof(err)) < 0 || !child_ok(&res)) {
			say(d, "FAILED: %s does not read: %s", path, res.output);
			ok = 0;
		} else {
			say(d, "%s reads", path);
		}
	}
	return ok;
}

static void show_journal(struct drill *d)
{
	char path[96], line[16384], last[16384] = "";
	FILE *f;

	path_in(path, sizeof(path), d->state, "journal.jsonl");
	f = fopen(path, "r");
	if (!f) {
		say(d, "FAILED: no journal at %s", path);
		return;
	}
	while (fgets(line, sizeof(line), f))
		memcpy(last, line, sizeof(last));
	fclose(f);
	say(d, "journal record of the recovery:\n%s", last);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return (flag == FTW_DP ? rmdir(path) : unlink(path)) < 0 ? -1 : 0;
}

static void cleanup(struct drill *d)
{
	struct mounttab mt = MOUNTTAB_INIT;
	char err[256];

	if (d->hung_pid > 0) {
		kill(d->hung_pid, SIGKILL);
		waitpid(d->hung_pid, NULL, 0);
	}
	if (!d->dir[0])
		return;
	if (mounttab_load(&mt, d->dir, NULL, err, sizeof(err)) == 0) {
		mounttab_sort_deepest_first(&mt);
		for (size_t i = 0; i < mt.n; i++)
			if (umount2(mt.v[i].target, MNT_DETACH) < 0 && errno != EINVAL)
				say(d, "cannot unmount %s: %s", mt.v[i].target, strerror(errno));
	}
	mounttab_release(&mt);
	/* FTW_MOUNT: never descend into a mount that is somehow still there. */
	if (nftw(d->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) < 0)
		say(d, "cannot remove %s completely: %s", d->dir, strerror(errno));
	else
		say(d, "cleaned up: mounts detached, daemon gone, %s removed", d->dir);
}

static int rehearse(struct drill *d, const struct recover_opts *base)
{
	struct recover_opts o;
	size_t before = count_mounts(d->root);
	int ok = 1, code;

	say(d, "dry run (must print the plan, change nothing, exit 1)");
	pass_opts(d, base, &o, 0);
	code = pass_run(&o, d->out);
	if (code != RX_NOT_TAKEN || count_mounts(d->root) != before) {
		say(d, "FAILED: dry run exit %d, %zu mounts before, %zu after", code, before,
		    count_mounts(d->root));
		ok = 0;
	} else {
		say(d, "dry run exit 1, nothing changed (%zu mounts)", before);
	}
	say(d, "recovery with --apply, hooks 'true', second sighting confirms");
	pass_opts(d, base, &o, 1);
	code = pass_run(&o, d->out);
	if (code != RX_OK) {
		say(d, "FAILED: recovery exit %d", code);
		ok = 0;
	} else {
		say(d, "recovery exit 0");
	}
	ok &= check_reads(d);
	show_journal(d);
	return ok;
}

int drill_run(const struct recover_opts *o, FILE *out)
{
	struct drill d = { .out = out };
	char err[512];
	int code;

	if (setup(&d, err, sizeof(err)) < 0 || break_mounts(&d, err, sizeof(err)) < 0) {
		fprintf(out, "drill: cannot set up: %s\n", err);
		code = RX_INTERNAL;
	} else {
		code = rehearse(&d, o) ? RX_OK : RX_FAILED;
	}
	cleanup(&d);
	fprintf(out, "drill: %s\n", code == RX_OK ? "passed" :
		code == RX_FAILED ? "FAILED" : "could not run");
	return code;
}
