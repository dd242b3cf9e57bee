/*
 * ksfixture: a take-over state for the unit tests of keepstate.c and
 * ksvalid.c: a fresh memfd mapped as the daemon maps it, mapped again as
 * the next daemon does (state_reopen), and freed. Include after unit.h.
 */
#ifndef STEADYFS_KSFIXTURE_H
#define STEADYFS_KSFIXTURE_H

#include <unistd.h>

#include "keepstate.h"

struct state {
	int fd;
	struct keepstate *ks;
};

static struct state state_new(void)
{
	struct state s = { ks_create(), NULL };
	char err[128];

	if (s.fd >= 0)
		s.ks = ks_map(s.fd, err, sizeof(err));
	CHECK(s.ks != NULL);
	return s;
}

/* The state as the next daemon maps it: no free lists in memory yet. */
static void state_reopen(struct state *s)
{
	char err[128];

	ks_unmap(s->ks);
	s->ks = ks_map(s->fd, err, sizeof(err));
	CHECK(s->ks != NULL);
}

static void state_free(struct state *s)
{
	ks_unmap(s->ks);
	close(s->fd);
}

#endif
