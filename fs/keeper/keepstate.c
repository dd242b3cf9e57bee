/*
 * keepstate: fixed-size slot tables in one memfd. See keepstate.h for the
 * consistency rules; here is only the layout and the slot bookkeeping.
 *
 * Layout: a header page, then NODE_CAP node slots, FH_CAP handle slots
 * and INFL_CAP in-flight ids. The memfd is sized for all of them but only
 * the pages touched take memory; restore scans each table only up to its
 * high-water mark. Free slots are tracked in process memory (a stack per
 * table), rebuilt by the restore scan.
 */
#include "keepstate.h"
#include "keepstate_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static void publish(uint32_t *state, uint32_t v)
{
	__atomic_store_n(state, v, __ATOMIC_RELEASE);
}

static uint32_t state_of(const uint32_t *state)
{
	return __atomic_load_n(state, __ATOMIC_ACQUIRE);
}

int ks_create(void)
{
	int fd = memfd_create("steadyfs-keepstate", MFD_CLOEXEC);
	struct hdr h;

	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)TOTAL_SIZE) < 0)
		goto fail;
	memset(&h, 0, sizeof(h));
	memcpy(h.magic, KS_MAGIC, sizeof(KS_MAGIC));
	h.version = KS_VERSION;
	h.size = TOTAL_SIZE;
	h.next_id = 2;
	if (pwrite(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h))
		goto fail;
	return fd;
fail:;
	int e = errno ? errno : EIO;

	close(fd);
	return -e;
}

struct keepstate *ks_map(int fd, char *err, size_t errsz)
{
	struct keepstate *ks = calloc(1, sizeof(*ks));
	struct stat st;

	if (!ks) {
		snprintf(err, errsz, "cannot allocate the take-over state");
		return NULL;
	}
	if (fstat(fd, &st) < 0 || (size_t)st.st_size != TOTAL_SIZE) {
		snprintf(err, errsz, "take-over state: unexpected size (another steadyfs version?)");
		free(ks);
		return NULL;
	}
	ks->base = mmap(NULL, TOTAL_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (ks->base == MAP_FAILED) {
		snprintf(err, errsz, "cannot map the take-over state: %s", strerror(errno));
		free(ks);
		return NULL;
	}
	ks->size = TOTAL_SIZE;
	ks->fd = fd;
	ks->h = ks->base;
	if (memcmp(ks->h->magic, KS_MAGIC, sizeof(KS_MAGIC)) ||
	    ks->h->version < KS_VERSION_OLDEST || ks->h->version > KS_VERSION) {
		snprintf(err, errsz, "take-over state: unknown format");
		ks_unmap(ks);
		return NULL;
	}
	ks->nodes = (struct nslot *)((char *)ks->base + OFF_NODES);
	ks->fhs = (struct fslot *)((char *)ks->base + OFF_FHS);
	ks->infl = (uint64_t *)((char *)ks->base + OFF_INFL);
	ks->infl_off = (uint64_t *)((char *)ks->base + OFF_INFL_OFF);
	ks->events = (struct evslot *)((char *)ks->base + OFF_EVENTS);
	pthread_mutex_init(&ks->lock, NULL);
	return ks;
}

void ks_unmap(struct keepstate *ks)
{
	if (!ks)
		return;
	munmap(ks->base, ks->size);
	free(ks->nfree.v);
	free(ks->ffree.v);
	pthread_mutex_destroy(&ks->lock);
	free(ks);
}

/* ---- keeper counters ---- */

void ks_set_keeper(struct keepstate *ks, int pid)
{
	__atomic_store_n(&ks->h->keeper_pid, pid, __ATOMIC_RELAXED);
}

int ks_keeper_pid(struct keepstate *ks)
{
	return __atomic_load_n(&ks->h->keeper_pid, __ATOMIC_RELAXED);
}

void ks_note_upgrade_failed(struct keepstate *ks)
{
	__atomic_add_fetch(&ks->h->upgrades_failed, 1, __ATOMIC_RELEASE);
}

uint64_t ks_upgrades_failed(struct keepstate *ks)
{
	return __atomic_load_n(&ks->h->upgrades_failed, __ATOMIC_ACQUIRE);
}

void ks_note_restart(struct keepstate *ks, const char *reason)
{
	/* Only the keeper writes these; the daemon reading a reason being
	 * rewritten may show it cut, never beyond the buffer. */
	snprintf(ks->h->reason, sizeof(ks->h->reason), "%s", reason);
	__atomic_add_fetch(&ks->h->restarts, 1, __ATOMIC_RELEASE);
}

uint64_t ks_restarts(struct keepstate *ks)
{
	return __atomic_load_n(&ks->h->restarts, __ATOMIC_ACQUIRE);
}

void ks_last_reason(struct keepstate *ks, char *out, size_t outsz)
{
	char tmp[KS_REASON_MAX + 1];

	memcpy(tmp, ks->h->reason, sizeof(tmp));
	tmp[KS_REASON_MAX] = 0;
	snprintf(out, outsz, "%s", tmp);
}

void ks_set_generation(struct keepstate *ks, uint64_t gen)
{
	__atomic_store_n(&ks->h->generation, gen, __ATOMIC_RELEASE);
}

uint64_t ks_generation(struct keepstate *ks)
{
	return __atomic_load_n(&ks->h->generation, __ATOMIC_ACQUIRE);
}

/* ---- INIT ---- */

void ks_save_init(struct keepstate *ks, const void *req, size_t len)
{
	if (__atomic_load_n(&ks->h->init_len, __ATOMIC_ACQUIRE) || len > INIT_MAX)
		return;
	memcpy(ks->h->init, req, len);
	__atomic_store_n(&ks->h->init_len, (uint32_t)len, __ATOMIC_RELEASE);
}

size_t ks_init(struct keepstate *ks, void *out, size_t outsz)
{
	uint32_t len = __atomic_load_n(&ks->h->init_len, __ATOMIC_ACQUIRE);

	if (!len || len > outsz || len > INIT_MAX)
		return 0;
	memcpy(out, ks->h->init, len);
	return len;
}

uint32_t ks_slots_written(const struct keepstate *ks, size_t off,
			  size_t slot_size, uint32_t cap)
{
	off_t end = (off_t)(off + slot_size * cap), pos = (off_t)off, last = pos;

	/* Data and holes alternate; the end of the last data run counts. */
	while (pos < end) {
		off_t data = lseek(ks->fd, pos, SEEK_DATA), hole;

		if (data < 0 && errno == ENXIO)
			break;
		if (data < 0 || (hole = lseek(ks->fd, data, SEEK_HOLE)) < 0)
			return cap;
		if (data >= end)
			break;
		last = hole < end ? hole : end;
		pos = hole;
	}
	return (uint32_t)(((size_t)(last - (off_t)off) + slot_size - 1) / slot_size);
}
uint32_t ks_events_written(const struct keepstate *ks)
{
	return ks_slots_written(ks, OFF_EVENTS, sizeof(struct evslot), KS_EVENTS);
}

/* ---- slot allocation ---- */

static int freelist_push(struct freelist *f, int32_t slot, uint32_t cap)
{
	if (!f->v && !(f->v = malloc(cap * sizeof(*f->v))))
		return -1;
	if (f->n < cap)
		f->v[f->n++] = slot;
	return 0;
}

/* A free slot index, from the free list or above the high-water mark.
 * Lock held. */
static int32_t slot_alloc(struct freelist *f, uint32_t *hwm, uint32_t cap)
{
	uint32_t top;

	if (f->n)
		return f->v[--f->n];
	top = __atomic_load_n(hwm, __ATOMIC_RELAXED);
	if (top >= cap)
		return -1;
	/* The mark moves before the slot is published: a restore scans it. */
	__atomic_store_n(hwm, top + 1, __ATOMIC_RELEASE);
	return (int32_t)top;
}

static int32_t node_alloc(struct keepstate *ks)
{
	int32_t s;

	pthread_mutex_lock(&ks->lock);
	s = slot_alloc(&ks->nfree, &ks->h->node_hwm, NODE_CAP);
	pthread_mutex_unlock(&ks->lock);
	return s;
}

static void node_free(struct keepstate *ks, int32_t slot)
{
	publish(&ks->nodes[slot].state, ST_FREE);
	pthread_mutex_lock(&ks->lock);
	freelist_push(&ks->nfree, slot, NODE_CAP);
	pthread_mutex_unlock(&ks->lock);
}

/* ---- nodes ---- */

static void node_fill(struct keepstate *ks, struct nslot *s, uint64_t id,
		      uint64_t parent, const char *name, uint64_t nlookup,
		      uint16_t flags, uint64_t end)
{
	size_t len = strnlen(name, KS_NAME_MAX);

	s->seq = __atomic_add_fetch(&ks->h->seq, 1, __ATOMIC_RELAXED);
	s->id = id;
	s->parent = parent;
	s->nlookup = nlookup;
	s->end = end;
	s->flags = flags;
	s->twins = 0;
	s->namelen = (uint16_t)len;
	memcpy(s->name, name, len);
	s->name[len] = 0;
}

int32_t ks_node_put(struct keepstate *ks, uint64_t id, uint64_t parent,
		    const char *name, uint64_t nlookup)
{
	int32_t slot = node_alloc(ks);

	if (slot < 0)
		return -1;
	node_fill(ks, &ks->nodes[slot], id, parent, name, nlookup, 0, 0);
	publish(&ks->nodes[slot].state, ST_LIVE);
	return slot;
}

void ks_node_nlookup(struct keepstate *ks, int32_t slot, uint64_t nlookup)
{
	__atomic_store_n(&ks->nodes[slot].nlookup, nlookup, __ATOMIC_RELEASE);
}

void ks_node_end(struct keepstate *ks, int32_t slot, bool known, uint64_t end)
{
	struct nslot *s = &ks->nodes[slot];
	uint16_t f = __atomic_load_n(&s->flags, __ATOMIC_RELAXED);

	/* The offset first: a reader that sees the flag sees the offset. */
	__atomic_store_n(&s->end, end, __ATOMIC_RELEASE);
	f = known ? (uint16_t)(f | NF_END_KNOWN) : (uint16_t)(f & ~NF_END_KNOWN);
	__atomic_store_n(&s->flags, f, __ATOMIC_RELEASE);
}

void ks_node_unlinked(struct keepstate *ks, int32_t slot)
{
	struct nslot *s = &ks->nodes[slot];

	__atomic_or_fetch(&s->flags, (uint16_t)NF_UNLINKED, __ATOMIC_RELEASE);
}

/* Sets or clears flag bits with one store (the thread owning the record
 * is the only writer of its flags). */
static void node_flags(struct nslot *s, uint16_t clear, uint16_t set)
{
	uint16_t f = __atomic_load_n(&s->flags, __ATOMIC_RELAXED);

	__atomic_store_n(&s->flags, (uint16_t)((f & ~clear) | set), __ATOMIC_RELEASE);
}

void ks_node_hidden(struct keepstate *ks, int32_t slot, bool hidden)
{
	node_flags(&ks->nodes[slot], NF_HIDDEN, hidden ? NF_HIDDEN : 0);
}

void ks_node_ident(struct keepstate *ks, int32_t slot, const struct ident *id)
{
	struct nslot *s = &ks->nodes[slot];

	/* The values first: a reader that sees the flags sees them. */
	__atomic_store_n(&s->id_lo, id->lo, __ATOMIC_RELAXED);
	__atomic_store_n(&s->id_hi, id->hi, __ATOMIC_RELAXED);
	__atomic_store_n(&s->id_mtime, id->mtime, __ATOMIC_RELAXED);
	node_flags(s, NF_ID_ALL, (uint16_t)((id->known ? NF_ID_KNOWN : 0) |
					     (id->written ? NF_ID_WRITTEN : 0) |
					     (id->have_mtime ? NF_ID_MTIME : 0) |
					     (id->shared ? NF_ID_SHARED : 0)));
}

void ks_node_twins(struct keepstate *ks, int32_t slot, uint32_t twins)
{
	__atomic_store_n(&ks->nodes[slot].twins, twins, __ATOMIC_RELEASE);
}

int32_t ks_node_move(struct keepstate *ks, int32_t slot, uint64_t parent,
		     const char *name)
{
	struct nslot *old = &ks->nodes[slot];
	int32_t ns = node_alloc(ks);

	if (ns < 0) {
		ks_node_unlinked(ks, slot);
		return slot;
	}
	node_fill(ks, &ks->nodes[ns], old->id, parent, name,
		  __atomic_load_n(&old->nlookup, __ATOMIC_ACQUIRE),
		  (uint16_t)(old->flags & (NF_END_KNOWN | NF_HIDDEN | NF_ID_ALL)),
		  old->end);
	ks->nodes[ns].id_lo = old->id_lo;
	ks->nodes[ns].id_hi = old->id_hi;
	ks->nodes[ns].id_mtime = old->id_mtime;
	ks->nodes[ns].twins = old->twins;
	publish(&ks->nodes[ns].state, ST_LIVE);
	node_free(ks, slot);
	return ns;
}

void ks_node_drop(struct keepstate *ks, int32_t slot)
{
	node_free(ks, slot);
}

void ks_set_next_id(struct keepstate *ks, uint64_t next)
{
	__atomic_store_n(&ks->h->next_id, next, __ATOMIC_RELEASE);
}

uint64_t ks_next_id(struct keepstate *ks)
{
	return __atomic_load_n(&ks->h->next_id, __ATOMIC_ACQUIRE);
}

struct live_ref {
	uint64_t id, seq;
	int32_t slot;
};

static int cmp_live(const void *a, const void *b)
{
	const struct live_ref *x = a, *y = b;

	if (x->id != y->id)
		return x->id < y->id ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Live node slots sorted by (id, seq); the rest go to the free list. */
static struct live_ref *scan_nodes(struct keepstate *ks, uint32_t *count)
{
	uint32_t hwm = __atomic_load_n(&ks->h->node_hwm, __ATOMIC_ACQUIRE);
	struct live_ref *v = malloc((hwm ? hwm : 1) * sizeof(*v));
	uint32_t n = 0;

	if (!v)
		return NULL;
	for (uint32_t i = 0; i < hwm && i < NODE_CAP; i++) {
		struct nslot *s = &ks->nodes[i];

		if (state_of(&s->state) == ST_LIVE)
			v[n++] = (struct live_ref){ s->id, s->seq, (int32_t)i };
		else
			freelist_push(&ks->nfree, (int32_t)i, NODE_CAP);
	}
	qsort(v, n, sizeof(*v), cmp_live);
	*count = n;
	return v;
}

void ks_nodes_each(struct keepstate *ks,
		   void (*fn)(void *arg, const struct ks_node *n, int32_t slot),
		   void *arg)
{
	struct ks_node *rec = malloc(sizeof(*rec));
	struct live_ref *v;
	uint32_t n = 0;

	pthread_mutex_lock(&ks->lock);
	v = scan_nodes(ks, &n);
	pthread_mutex_unlock(&ks->lock);
	for (uint32_t i = 0; v && rec && i < n; i++) {
		struct nslot *s = &ks->nodes[v[i].slot];

		/* A move killed halfway left two records: the newer wins. */
		if (i + 1 < n && v[i + 1].id == v[i].id) {
			node_free(ks, v[i].slot);
			continue;
		}
		rec->id = s->id;
		rec->parent = s->parent;
		rec->nlookup = s->nlookup;
		rec->end = s->end;
		rec->end_known = s->flags & NF_END_KNOWN;
		rec->unlinked = s->flags & NF_UNLINKED;
		rec->hidden = s->flags & NF_HIDDEN;
		rec->twins = s->twins;
		rec->ident = (struct ident){
			.known = s->flags & NF_ID_KNOWN,
			.written = s->flags & NF_ID_WRITTEN,
			.have_mtime = s->flags & NF_ID_MTIME,
			.shared = s->flags & NF_ID_SHARED,
			.mtime = s->id_mtime, .lo = s->id_lo, .hi = s->id_hi,
		};
		memcpy(rec->name, s->name, sizeof(rec->name));
		rec->name[KS_NAME_MAX] = 0;
		fn(arg, rec, v[i].slot);
	}
	free(v);
	free(rec);
}

/* ---- pending moves of hidden files ---- */

int32_t ks_pending_put(struct keepstate *ks, uint64_t id, uint64_t from,
		       uint64_t parent, const char *name)
{
	size_t len = strnlen(name, KS_NAME_MAX);
	int32_t slot = -1;
	struct pslot *s;

	pthread_mutex_lock(&ks->lock);
	for (int32_t i = 0; i < KS_PENDING && slot < 0; i++)
		if (!(ks->pend_used & (1u << i)))
			slot = i;
	if (slot >= 0)
		ks->pend_used |= 1u << slot;
	pthread_mutex_unlock(&ks->lock);
	if (slot < 0)
		return -1;
	s = &ks->h->pending[slot];
	s->id = id;
	s->from = from;
	s->parent = parent;
	s->namelen = (uint16_t)len;
	memcpy(s->name, name, len);
	s->name[len] = 0;
	publish(&s->state, ST_LIVE);
	return slot;
}

void ks_pending_drop(struct keepstate *ks, int32_t slot)
{
	if (slot < 0 || slot >= KS_PENDING)
		return;
	publish(&ks->h->pending[slot].state, ST_FREE);
	pthread_mutex_lock(&ks->lock);
	ks->pend_used &= ~(1u << slot);
	pthread_mutex_unlock(&ks->lock);
}

void ks_pending_each(struct keepstate *ks,
		     void (*fn)(void *arg, const struct ks_pending *p, int32_t slot),
		     void *arg)
{
	struct ks_pending rec;

	for (int32_t i = 0; i < KS_PENDING; i++) {
		const struct pslot *s = &ks->h->pending[i];

		if (state_of(&s->state) != ST_LIVE)
			continue;
		pthread_mutex_lock(&ks->lock);
		ks->pend_used |= 1u << i;
		pthread_mutex_unlock(&ks->lock);
		rec.id = s->id;
		rec.from = s->from;
		rec.parent = s->parent;
		memcpy(rec.name, s->name, sizeof(rec.name));
		rec.name[KS_NAME_MAX] = 0;
		fn(arg, &rec, i);
	}
}

/* ---- file handles ---- */

int32_t ks_fh_capacity(struct keepstate *ks)
{
	(void)ks;
	return (int32_t)FH_CAP;
}

int32_t ks_fh_put(struct keepstate *ks, uint64_t ino, int flags)
{
	struct fslot *s;
	int32_t slot;

	pthread_mutex_lock(&ks->lock);
	slot = slot_alloc(&ks->ffree, &ks->h->fh_hwm, FH_CAP);
	pthread_mutex_unlock(&ks->lock);
	if (slot < 0)
		return -1;
	s = &ks->fhs[slot];
	s->ino = ino;
	s->flags = flags;
	s->released = 0;
	s->err = 0;
	s->unacked = 0;
	s->lo = s->hi = 0;
	publish(&s->state, ST_LIVE);
	return slot;
}

void ks_fh_unacked(struct keepstate *ks, int32_t slot, uint64_t bytes,
		   uint64_t lo, uint64_t hi)
{
	struct fslot *s = &ks->fhs[slot];

	/* Clearing: the count first. Setting: the range first. */
	if (!bytes) {
		__atomic_store_n(&s->unacked, 0, __ATOMIC_RELEASE);
		return;
	}
	__atomic_store_n(&s->lo, lo, __ATOMIC_RELAXED);
	__atomic_store_n(&s->hi, hi, __ATOMIC_RELAXED);
	__atomic_store_n(&s->unacked, bytes, __ATOMIC_RELEASE);
}

void ks_fh_released(struct keepstate *ks, int32_t slot)
{
	__atomic_store_n(&ks->fhs[slot].released, 1, __ATOMIC_RELEASE);
}

void ks_fh_error(struct keepstate *ks, int32_t slot, int err)
{
	__atomic_store_n(&ks->fhs[slot].err, err, __ATOMIC_RELEASE);
}

void ks_fh_drop(struct keepstate *ks, int32_t slot)
{
	publish(&ks->fhs[slot].state, ST_FREE);
	pthread_mutex_lock(&ks->lock);
	freelist_push(&ks->ffree, slot, FH_CAP);
	pthread_mutex_unlock(&ks->lock);
}

void ks_fh_read(const struct fslot *s, struct ks_fh *rec)
{
	rec->ino = s->ino;
	rec->flags = s->flags;
	rec->released = s->released;
	rec->err = __atomic_load_n(&s->err, __ATOMIC_ACQUIRE);
	rec->unacked = __atomic_load_n(&s->unacked, __ATOMIC_ACQUIRE);
	rec->lo = s->lo;
	rec->hi = s->hi;
}

void ks_fhs_each(struct keepstate *ks,
		 void (*fn)(void *arg, const struct ks_fh *f, int32_t slot),
		 void *arg)
{
	uint32_t hwm = __atomic_load_n(&ks->h->fh_hwm, __ATOMIC_ACQUIRE);
	struct ks_fh *rec = malloc(sizeof(*rec));

	for (uint32_t i = 0; rec && i < hwm && i < FH_CAP; i++) {
		struct fslot *s = &ks->fhs[i];

		if (state_of(&s->state) != ST_LIVE) {
			pthread_mutex_lock(&ks->lock);
			freelist_push(&ks->ffree, (int32_t)i, FH_CAP);
			pthread_mutex_unlock(&ks->lock);
			continue;
		}
		ks_fh_read(s, rec);
		fn(arg, rec, (int32_t)i);
	}
	free(rec);
}

/* ---- in-flight request ids ---- */

static uint32_t infl_hash(uint64_t unique)
{
	return (uint32_t)((unique >> 1) * 0x9E3779B97F4A7C15ull >> 52) & (INFL_CAP - 1);
}

void ks_inflight_add(struct keepstate *ks, uint64_t unique)
{
	uint32_t i = infl_hash(unique);

	pthread_mutex_lock(&ks->lock);
	for (uint32_t n = 0; n < INFL_CAP; n++, i = (i + 1) & (INFL_CAP - 1)) {
		if (ks->infl[i] == INFL_EMPTY || ks->infl[i] == INFL_GONE) {
			__atomic_store_n(&ks->infl_off[i], 0, __ATOMIC_RELEASE);
			__atomic_store_n(&ks->infl[i], unique, __ATOMIC_RELEASE);
			break;
		}
	}
	pthread_mutex_unlock(&ks->lock);
}

bool ks_inflight_del(struct keepstate *ks, uint64_t unique)
{
	uint32_t i = infl_hash(unique);
	bool found = false;

	pthread_mutex_lock(&ks->lock);
	for (uint32_t n = 0; n < INFL_CAP; n++, i = (i + 1) & (INFL_CAP - 1)) {
		if (ks->infl[i] == INFL_EMPTY)
			break;
		if (ks->infl[i] == unique) {
			__atomic_store_n(&ks->infl[i], INFL_GONE, __ATOMIC_RELEASE);
			found = true;
			break;
		}
	}
	pthread_mutex_unlock(&ks->lock);
	return found;
}

void ks_inflight_offset(struct keepstate *ks, uint64_t unique, uint64_t off)
{
	uint32_t i = infl_hash(unique);

	pthread_mutex_lock(&ks->lock);
	for (uint32_t n = 0; n < INFL_CAP; n++, i = (i + 1) & (INFL_CAP - 1)) {
		if (ks->infl[i] == INFL_EMPTY)
			break;
		if (ks->infl[i] == unique) {
			__atomic_store_n(&ks->infl_off[i], off + 1, __ATOMIC_RELEASE);
			break;
		}
	}
	pthread_mutex_unlock(&ks->lock);
}

size_t ks_inflight_take(struct keepstate *ks, uint64_t *out, uint64_t *offs,
			size_t max)
{
	size_t n = 0;

	pthread_mutex_lock(&ks->lock);
	for (uint32_t i = 0; i < INFL_CAP && n < max; i++) {
		uint64_t u = ks->infl[i];

		if (u != INFL_EMPTY && u != INFL_GONE) {
			if (offs)
				offs[n] = ks->infl_off[i];
			out[n++] = u;
			ks->infl[i] = INFL_GONE;
		}
	}
	/* All taken: the table starts empty again (no probe chain left). */
	if (n < max)
		for (uint32_t i = 0; i < INFL_CAP; i++)
			ks->infl[i] = ks->infl_off[i] = INFL_EMPTY;
	pthread_mutex_unlock(&ks->lock);
	return n;
}

/* ---- events ---- */

void ks_event_put(struct keepstate *ks, uint64_t seq, const char *line)
{
	struct evslot *e = &ks->events[seq % KS_EVENTS];
	size_t len = strlen(line);

	/* Emptied first: a death while rewriting leaves no half line. A
	 * line too long to keep empties the slot too: what stays must be
	 * the newest of its numbers (ks_validate relies on it). */
	__atomic_store_n(&e->seq, 0, __ATOMIC_RELEASE);
	if (len >= EV_LINE_MAX)
		return;
	memcpy(e->line, line, len + 1);
	e->len = (uint32_t)len;
	__atomic_store_n(&e->seq, seq, __ATOMIC_RELEASE);
}

void ks_event_drop(struct keepstate *ks, uint64_t seq)
{
	struct evslot *e = &ks->events[seq % KS_EVENTS];

	if (__atomic_load_n(&e->seq, __ATOMIC_ACQUIRE) == seq)
		__atomic_store_n(&e->seq, 0, __ATOMIC_RELEASE);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

void ks_events_each(struct keepstate *ks,
		    void (*fn)(void *arg, uint64_t seq, const char *line),
		    void *arg)
{
	uint64_t seqs[KS_EVENTS];
	uint32_t written = ks_events_written(ks);
	size_t n = 0;

	/* ks_validate() has dropped every slot that breaks these; checked
	 * again because a line read past its slot is the one mistake here
	 * that would crash every later daemon. */
	for (unsigned i = 0; i < written; i++) {
		const struct evslot *e = &ks->events[i];
		uint64_t s = __atomic_load_n(&e->seq, __ATOMIC_ACQUIRE);

		if (s && s % KS_EVENTS == i && e->len < EV_LINE_MAX && !e->line[e->len])
			seqs[n++] = s;
	}
	qsort(seqs, n, sizeof(*seqs), cmp_u64);
	for (size_t i = 0; i < n; i++)
		fn(arg, seqs[i], ks->events[seqs[i] % KS_EVENTS].line);
}
