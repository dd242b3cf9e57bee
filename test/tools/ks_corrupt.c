/*
 * ks_corrupt: damages the take-over state of a live mount on purpose, for
 * the tests of issue 15 finding 9 (test/test_keeper.py). Not installed.
 *
 *     ks-corrupt KEEPER_PID event-slot
 *     ks-corrupt KEEPER_PID cycle NAME_A NAME_B
 *     ks-corrupt KEEPER_PID rename NAME NEW_NAME
 *
 * The state is the keeper's memfd ("memfd:steadyfs-keepstate"), opened
 * again through /proc/PID/fd (root, or the keeper's owner). event-slot
 * makes the newest event's slot claim the next slot's number and gives
 * that slot a length of 4 GiB: what ks_events_each read past. cycle sets
 * the parent of node NAME_A to node NAME_B (NAME_B being inside NAME_A,
 * the two make a loop). rename writes NEW_NAME over the record's name
 * as it is, without any check. Prints what it changed; exit 0 done, 1 not
 * found, 2 usage.
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keepstate.h"
#include "keepstate_int.h"

static int open_state(const char *pid)
{
	char dir[64], link[PATH_MAX], target[PATH_MAX];
	struct dirent *d;
	DIR *fds;
	int fd = -1;

	snprintf(dir, sizeof(dir), "/proc/%s/fd", pid);
	if (!(fds = opendir(dir)))
		return -1;
	while (fd < 0 && (d = readdir(fds))) {
		ssize_t n;

		snprintf(link, sizeof(link), "%s/%s", dir, d->d_name);
		n = readlink(link, target, sizeof(target) - 1);
		if (n <= 0)
			continue;
		target[n] = 0;
		if (!strncmp(target, "/memfd:steadyfs-keepstate", 25))
			fd = open(link, O_RDWR | O_CLOEXEC);
	}
	closedir(fds);
	return fd;
}

static int event_slot(struct keepstate *ks)
{
	uint64_t newest = 0;
	unsigned at = 0, next;

	for (unsigned i = 0; i < KS_EVENTS; i++)
		if (ks->events[i].seq > newest) {
			newest = ks->events[i].seq;
			at = i;
		}
	if (!newest)
		return 1;
	next = (at + 1) % KS_EVENTS;
	ks->events[next].seq = 0;
	ks->events[next].len = 0xfffffff0u;
	/* Its own slot's round, the next slot's index. */
	ks->events[at].seq = newest - at + next;
	printf("event slot %u: seq %llu -> %llu; slot %u: length 4 GiB\n", at,
	       (unsigned long long)newest, (unsigned long long)ks->events[at].seq, next);
	return 0;
}

static struct nslot *node_named(struct keepstate *ks, const char *name)
{
	for (uint32_t i = 0; i < ks->h->node_hwm; i++)
		if (ks->nodes[i].state == ST_LIVE && !strcmp(ks->nodes[i].name, name))
			return &ks->nodes[i];
	return NULL;
}

static int cycle(struct keepstate *ks, const char *a, const char *b)
{
	struct nslot *na = node_named(ks, a), *nb = node_named(ks, b);

	if (!na || !nb)
		return 1;
	printf("node '%s' (id %llu): parent %llu -> %llu ('%s')\n", a,
	       (unsigned long long)na->id, (unsigned long long)na->parent,
	       (unsigned long long)nb->id, b);
	na->parent = nb->id;
	return 0;
}

static int rename_raw(struct keepstate *ks, const char *name, const char *to)
{
	struct nslot *n = node_named(ks, name);
	size_t len = strlen(to);

	if (!n || len > KS_NAME_MAX)
		return 1;
	memcpy(n->name, to, len + 1);
	n->namelen = (uint16_t)len;
	printf("node id %llu: name '%s' -> '%s'\n", (unsigned long long)n->id, name, to);
	return 0;
}

int main(int argc, char **argv)
{
	char err[256];
	struct keepstate *ks;
	int fd, rc = 2;

	if (argc < 3) {
		fprintf(stderr, "usage: ks-corrupt PID event-slot|cycle A B|rename NAME NEW\n");
		return 2;
	}
	if ((fd = open_state(argv[1])) < 0) {
		fprintf(stderr, "ks-corrupt: no take-over state in process %s\n", argv[1]);
		return 1;
	}
	if (!(ks = ks_map(fd, err, sizeof(err)))) {
		fprintf(stderr, "ks-corrupt: %s\n", err);
		close(fd);
		return 1;
	}
	if (!strcmp(argv[2], "event-slot"))
		rc = event_slot(ks);
	else if (!strcmp(argv[2], "cycle") && argc == 5)
		rc = cycle(ks, argv[3], argv[4]);
	else if (!strcmp(argv[2], "rename") && argc == 5)
		rc = rename_raw(ks, argv[3], argv[4]);
	if (rc == 1)
		fprintf(stderr, "ks-corrupt: nothing to change for '%s'\n", argv[2]);
	ks_unmap(ks);
	close(fd);
	return rc;
}
