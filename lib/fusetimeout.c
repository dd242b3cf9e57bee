/*
 * fusetimeout: reads the kernel's FUSE request timeout sysctls. See
 * fusetimeout.h.
 */
#include "fusetimeout.h"

#include <stdio.h>
#include <string.h>

/* One unsigned number from `dir`/`name`; -1 when absent or unreadable. */
static long read_sysctl(const char *dir, const char *name)
{
	char path[256];
	unsigned long v;
	FILE *f;
	int n;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (!(f = fopen(path, "re")))
		return -1;
	n = fscanf(f, "%lu", &v);
	fclose(f);
	return n == 1 && v <= 65535 ? (long)v : -1;
}

void fuse_timeout_read(const char *dir, struct fuse_timeout *t)
{
	long d, m;

	memset(t, 0, sizeof(*t));
	t->source = "";
	dir = dir ? dir : FUSE_TIMEOUT_SYSCTL_DIR;
	d = read_sysctl(dir, "default_request_timeout");
	m = read_sysctl(dir, "max_request_timeout");
	t->supported = d >= 0 || m >= 0;
	t->dflt = d > 0 ? (unsigned)d : 0;
	t->max = m > 0 ? (unsigned)m : 0;
	/* The kernel's rule (fs/fuse/inode.c): the default when the daemon
	 * asks for none, capped by the maximum, which also applies alone. */
	if (t->dflt && (!t->max || t->dflt <= t->max)) {
		t->effective = t->dflt;
		t->source = "default_request_timeout";
	} else if (t->max) {
		t->effective = t->max;
		t->source = "max_request_timeout";
	}
}

double fuse_timeout_floor(double op_timeout)
{
	return 2 * op_timeout + FUSE_TIMEOUT_DRAIN_S;
}
