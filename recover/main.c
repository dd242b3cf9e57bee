/*
 * steadyfs-recover: finds stale or hung legacy mounts (sshfs hot paths
 * and their bind mounts) under a root and recovers them conservatively.
 * main() parses the command line, then runs one pass, a pass every
 * --watch seconds until a signal, or the --drill rehearsal. The exit
 * codes are those of pass.h.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "drill.h"
#include "log.h"
#include "opts.h"
#include "pass.h"

/* Passes every o->watch seconds. SIGTERM, SIGINT and SIGHUP are blocked
 * and only taken between passes, so a signal never cuts a recovery in
 * half; the children get a clean mask (child.c). */
static int watch(const struct recover_opts *o)
{
	sigset_t set;
	struct timespec ts = { .tv_sec = (time_t)o->watch,
			       .tv_nsec = (long)((o->watch - (double)(time_t)o->watch) * 1e9) };

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0) {
		log_err("sigprocmask: %s", strerror(errno));
		return RX_INTERNAL;
	}
	for (;;) {
		int sig;

		pass_run(o, stdout);
		sig = sigtimedwait(&set, NULL, &ts);
		if (sig > 0) {
			log_info("signal %d: stopping", sig);
			return RX_OK;
		}
		if (errno != EAGAIN && errno != EINTR) {
			log_err("sigtimedwait: %s", strerror(errno));
			return RX_INTERNAL;
		}
	}
}

int main(int argc, char **argv)
{
	struct recover_opts o;
	char err[512];
	int code;

	log_init("steadyfs-recover", SLOG_INFO);
	recover_opts_defaults(&o);
	code = recover_opts_parse(&o, argc, argv, err, sizeof(err));
	if (code != 0) {
		if (code < 0)
			log_err("%s", err);
		recover_opts_release(&o);
		return code > 0 ? RX_OK : RX_USAGE;
	}
	if (o.drill) {
		code = drill_run(&o, stdout);
	} else {
		code = pass_preflight(&o);
		if (code == RX_OK)
			code = o.watch > 0 ? watch(&o) : pass_run(&o, stdout);
	}
	recover_opts_release(&o);
	return code;
}
