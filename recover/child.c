/*
 * child: forked work under a deadline with captured output. See child.h.
 */
#include "child.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"

/* After SIGKILL, how long to wait for the child to go before giving up on
 * reaping it (a process stuck in an uninterruptible kernel wait). */
#define KILL_GRACE_MS 1000

/* In the child: own process group, clean signal state, stdio redirected.
 * Returns 0, or -1 if the child cannot be set up (it then exits 126). */
static int child_setup(int out)
{
	sigset_t none;
	int null;

	if (setpgid(0, 0) < 0)
		return -1;
	/* The parent may block signals for its own waiting (--watch); a hook
	 * must start with a clean mask and default dispositions. */
	sigemptyset(&none);
	if (sigprocmask(SIG_SETMASK, &none, NULL) < 0)
		return -1;
	signal(SIGPIPE, SIG_DFL);
	null = open("/dev/null", O_RDONLY);
	if (null < 0 || dup2(null, STDIN_FILENO) < 0 ||
	    dup2(out, STDOUT_FILENO) < 0 || dup2(out, STDERR_FILENO) < 0)
		return -1;
	if (null != STDIN_FILENO)
		close(null);
	return 0;
}

/* Waits until the pidfd is readable (the child exited) or `ms` pass.
 * Returns 1 exited, 0 not yet, -1 poll error. */
static int wait_exit(int pfd, int ms)
{
	struct pollfd p = { .fd = pfd, .events = POLLIN };
	uint64_t end = clock_mono_ns() + (uint64_t)ms * NS_PER_MS;

	for (;;) {
		uint64_t now = clock_mono_ns();
		int left = now >= end ? 0 : (int)((end - now + NS_PER_MS - 1) / NS_PER_MS);
		int r = poll(&p, 1, left);

		if (r > 0)
			return 1;
		if (r == 0)
			return 0;
		if (errno != EINTR)
			return -1;
	}
}

/* Copies the tail of the memfd into res->output. */
static void read_output(int out, struct child_result *res)
{
	struct stat st;
	off_t from = 0;
	ssize_t n;

	res->output[0] = '\0';
	if (fstat(out, &st) < 0 || st.st_size <= 0)
		return;
	if (st.st_size > CHILD_OUTPUT_MAX) {
		from = st.st_size - CHILD_OUTPUT_MAX;
		res->truncated = 1;
	}
	n = pread(out, res->output, CHILD_OUTPUT_MAX, from);
	res->output[n > 0 ? n : 0] = '\0';
}

static void set_status(struct child_result *res, int status)
{
	if (WIFEXITED(status)) {
		res->exited = 1;
		res->code = WEXITSTATUS(status);
	} else if (WIFSIGNALED(status)) {
		res->code = WTERMSIG(status);
	}
}

/* Waits for `pid` until the deadline, kills its group after it, reaps it.
 * Returns 0, or -1 with errno from pidfd/poll/waitpid. */
static int supervise(pid_t pid, double timeout, struct child_result *res)
{
	int pfd = pidfd_open(pid, 0);
	int r, status = 0;
	double ms = timeout * 1000.0;

	if (pfd < 0)
		return -1;
	r = wait_exit(pfd, ms > 2e9 ? 2000000000 : (int)ms);
	if (r == 0) {
		res->timed_out = 1;
		/* The group, so whatever the hook started goes with it. */
		kill(-pid, SIGKILL);
		kill(pid, SIGKILL);
		r = wait_exit(pfd, KILL_GRACE_MS);
	}
	close(pfd);
	if (r <= 0) {
		/* Stuck in the kernel even after SIGKILL: leave it; a later
		 * waitpid(-1) is not ours to do, the zombie goes with us. */
		res->code = SIGKILL;
		return r < 0 ? -1 : 0;
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	set_status(res, status);
	return 0;
}

int child_run(int (*fn)(void *arg), void *arg, double timeout,
	      struct child_result *res, char *err, size_t errsz)
{
	uint64_t t0 = clock_mono_ns();
	int out, rc;
	pid_t pid;

	memset(res, 0, sizeof(*res));
	out = memfd_create("steadyfs-recover-output", MFD_CLOEXEC);
	if (out < 0) {
		snprintf(err, errsz, "memfd_create: %s", strerror(errno));
		return -1;
	}
	pid = fork();
	if (pid < 0) {
		snprintf(err, errsz, "fork: %s", strerror(errno));
		close(out);
		return -1;
	}
	if (pid == 0) {
		if (child_setup(out) < 0)
			_exit(126);
		_exit(fn(arg) & 0xff);
	}
	/* Also from the parent, so the group exists before any kill. */
	setpgid(pid, pid);
	rc = supervise(pid, timeout, res);
	if (rc < 0) {
		snprintf(err, errsz, "waiting for child %d: %s", (int)pid, strerror(errno));
		kill(-pid, SIGKILL);
	}
	res->duration = (double)(clock_mono_ns() - t0) / 1e9;
	read_output(out, res);
	close(out);
	return rc;
}

int child_ok(const struct child_result *res)
{
	return !res->timed_out && res->exited && res->code == 0;
}

const char *child_describe(const struct child_result *res, char *out, size_t outsz)
{
	if (res->timed_out)
		snprintf(out, outsz, "timed out after %.1f s", res->duration);
	else if (res->exited)
		snprintf(out, outsz, "exit %d", res->code);
	else
		snprintf(out, outsz, "signal %d", res->code);
	return out;
}
