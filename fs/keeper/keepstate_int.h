/*
 * keepstate_int: the layout of the take-over state, shared by keepstate.c
 * (which writes it), ksvalid.c (which checks it before a restore) and the
 * tests that build damaged states on purpose. Nothing else may look inside.
 *
 * Every field here is read from shared memory a dead or different process
 * wrote: a reader never trusts a length, an index or a terminator in it
 * before ks_validate() has checked it.
 */
#ifndef STEADYFS_KEEPSTATE_INT_H
#define STEADYFS_KEEPSTATE_INT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "keepstate.h"

#define KS_MAGIC "SFKEEP1"
#define KS_VERSION 3   /* 2: node identity and hiding; handles by node;
			* 3: pending moves of hidden files (header page) */
/* The oldest version a daemon adopts (an upgrade keeps the keeper, and so
 * the state it made): 2 lays everything out as 3 does, its pending moves
 * (zeros) are all free. */
#define KS_VERSION_OLDEST 2
/* Capacities: a build may make them smaller (the restore fuzzer does, so
 * that its inputs reach full tables); the state's size says which. */
#ifndef KS_NODE_CAP
#define KS_NODE_CAP (1u << 20)
#endif
#ifndef KS_FH_CAP
#define KS_FH_CAP (1u << 14)
#endif
#ifndef KS_INFL_CAP
#define KS_INFL_CAP 4096u          /* a power of two: a hash table */
#endif
#define NODE_CAP KS_NODE_CAP
#define FH_CAP KS_FH_CAP
#define INFL_CAP KS_INFL_CAP
#define INFL_EMPTY 0ull
#define INFL_GONE 1ull     /* tombstone: request ids are even */
#define INIT_MAX 256
#define EV_LINE_MAX 4600

#define ST_FREE 0u
#define ST_LIVE 1u

#define NF_END_KNOWN 1u
#define NF_UNLINKED 2u
#define NF_HIDDEN 4u
#define NF_ID_KNOWN 8u
#define NF_ID_WRITTEN 16u
#define NF_ID_MTIME 32u
#define NF_ID_SHARED 64u
#define NF_ID_ALL (NF_ID_KNOWN | NF_ID_WRITTEN | NF_ID_MTIME | NF_ID_SHARED)
/* Every flag a node record may carry: ks_validate drops a record with any
 * other bit set, so a new flag goes here too. */
#define NF_ALL (NF_END_KNOWN | NF_UNLINKED | NF_HIDDEN | NF_ID_ALL)

/* A move of a hidden file sent to the server and not yet recorded in its
 * node (hidden.c): the file (node id) goes from folder `from` to
 * (parent, name). */
struct pslot {
	uint32_t state;
	uint16_t namelen;
	uint16_t pad;
	uint64_t id, from, parent;
	char name[KS_NAME_MAX + 1];
};
#define KS_PENDING 8

struct hdr {
	char magic[8];
	uint32_t version;
	uint32_t init_len;
	uint64_t size;
	int32_t keeper_pid;
	uint32_t pad;
	uint64_t generation, restarts, next_id, seq, upgrades_failed;
	uint32_t node_hwm, fh_hwm;
	char reason[KS_REASON_MAX + 1];
	uint8_t init[INIT_MAX];
	struct pslot pending[KS_PENDING];  /* version 3 */
};

struct nslot {
	uint32_t state;
	uint16_t flags;
	uint16_t namelen;
	uint64_t seq, id, parent, nlookup, end;
	uint64_t id_lo, id_hi;     /* struct ident, flags NF_ID_* */
	uint32_t id_mtime;
	uint32_t twins;            /* link group (nodes.c), 0 none */
	char name[KS_NAME_MAX + 1];
};

struct fslot {
	uint32_t state;
	int32_t flags;
	uint32_t released;
	int32_t err;
	uint64_t ino, unacked, lo, hi;
};

struct evslot {
	uint64_t seq;              /* 0: empty; written last */
	uint32_t len;
	char line[EV_LINE_MAX];
};

struct freelist {
	int32_t *v;
	uint32_t n;
};

struct keepstate {
	pthread_mutex_t lock;      /* slot allocation and the in-flight table */
	int fd;                    /* the memfd (not ours; open while mapped) */
	void *base;
	size_t size;
	struct hdr *h;
	struct nslot *nodes;
	struct fslot *fhs;
	uint64_t *infl;
	uint64_t *infl_off;        /* append offset + 1 per in-flight slot */
	struct evslot *events;
	struct freelist nfree, ffree;
	uint32_t pend_used;        /* pending moves' slots taken, a bit each */
};

#define OFF_NODES 4096ul
#define OFF_FHS (OFF_NODES + (size_t)NODE_CAP * sizeof(struct nslot))
#define OFF_INFL (OFF_FHS + (size_t)FH_CAP * sizeof(struct fslot))
#define OFF_INFL_OFF (OFF_INFL + (size_t)INFL_CAP * sizeof(uint64_t))
#define OFF_EVENTS (OFF_INFL_OFF + (size_t)INFL_CAP * sizeof(uint64_t))
#define TOTAL_SIZE (OFF_EVENTS + (size_t)KS_EVENTS * sizeof(struct evslot))
_Static_assert(sizeof(struct hdr) <= OFF_NODES, "header fits its page");
/*
 * How many of a table's `cap` slots of `slot_size` bytes, from byte `off`
 * of the state, lie before the end of the last page ever written (pages
 * never written hold no record). A damaged high-water mark is cut to it
 * rather than to `cap`: reading a page of the memfd gives it memory, and
 * the whole node table is 300 MB. `cap` when the file cannot say.
 */
uint32_t ks_slots_written(const struct keepstate *ks, size_t off,
			  size_t slot_size, uint32_t cap);

/* Event slots that may hold a record: those before the end of the last
 * page written. Each slot's sequence number sits on a page of its own, so
 * a scan of all KS_EVENTS would give the memfd 4 MiB it never needed. */
uint32_t ks_events_written(const struct keepstate *ks);

/* A handle slot as the record callers see (keepstate.h). */
void ks_fh_read(const struct fslot *s, struct ks_fh *rec);

_Static_assert((INFL_CAP & (INFL_CAP - 1)) == 0, "in-flight table is a power of two");

#endif
