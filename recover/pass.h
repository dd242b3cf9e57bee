/*
 * pass: one steadyfs-recover pass over ROOT, start to end: lock, read the
 * manifest and the state, observe every mount at or below ROOT, count
 * sightings, build the plan, check the gates (--apply, sentinel,
 * confirmation, cooldown, cap, guard), act or print the plan, then write
 * the state, the journal record and the metrics textfile.
 *
 * The plan and every step go to `out` (stdout); problems with the pass
 * itself go to the log (stderr).
 */
#ifndef STEADYFS_RECOVER_PASS_H
#define STEADYFS_RECOVER_PASS_H

#include <stdio.h>

#include "opts.h"

/* Exit codes, shared with main. */
enum {
	RX_OK = 0,          /* healthy, or recovered */
	RX_NOT_TAKEN = 1,   /* action needed but not taken (also: lock busy) */
	RX_USAGE = 2,       /* bad command line or manifest */
	RX_INTERNAL = 3,
	RX_FAILED = 4,      /* recovery attempted and failed */
};

/* Runs one pass with `o`; returns its exit code. */
int pass_run(const struct recover_opts *o, FILE *out);

/* Checks what a pass needs before the first one (manifest readable and
 * inside ROOT, state dir creatable). Returns an exit code: RX_OK, or
 * RX_USAGE / RX_INTERNAL with the reason logged. */
int pass_preflight(const struct recover_opts *o);

#endif
