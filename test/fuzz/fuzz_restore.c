/*
 * fuzz_restore: libFuzzer target for the take-over restore path
 * (fs/keepstate, fs/ksvalid, fs/nodes): what a new daemon does with the
 * state a dead one left.
 *
 * An input is a list of edits to a fresh state, each one opcode byte and
 * its fields (see apply()): raw writes of any field of a node, handle,
 * event or in-flight slot or of the header, exactly as a damaged memfd
 * could hold them, and records written through keepstate's own API, so
 * that valid trees, moves and rings are easy to reach. Numbers are one
 * byte below 0xf8 (small ids collide, so parents point at each other and
 * cycles form), or an edge value, or eight raw bytes.
 *
 * Then the restore runs as a daemon's does: ks_validate(), nodes_adopt(),
 * the path of every id the input named, the events ring, the handle
 * records, the in-flight ids; then new records on the restored tables.
 * Besides "no crash, no hang, no over-read", the target aborts when a
 * contract is broken: a restored path is the base followed by valid
 * names, events come oldest first with their text inside the slot,
 * handle records are sane, and a second ks_validate() of the state finds
 * nothing (what one daemon left, the next must not trip over).
 *
 * Built by `make fuzz-restore` (clang, libFuzzer, table capacities cut
 * down with -DKS_NODE_CAP=... so that full tables are reached) and by
 * `make fuzz-replay` (any compiler, replay.c as main). With
 * -DFUZZ_RESTORE_NO_VALIDATE the check is left out, which is the restore
 * path as it was before ks_validate(): the committed seeds crash or hang
 * it (docs/fuzzing.md).
 */
#include "keepstate.h"
#include "keepstate_int.h"
#ifndef FUZZ_RESTORE_NO_VALIDATE
#include "ksvalid.h"
#endif
#include "names.h"
#include "nodes.h"

#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(c) do { \
		if (!(c)) { \
			fprintf(stderr, "fuzz_restore: %s:%d: contract broken: %s\n", \
				__FILE__, __LINE__, #c); \
			abort(); \
		} \
	} while (0)

#define MAX_IDS 64
#define OFF_MAX ((uint64_t)INT64_MAX)
#define ID_CAP (1ull << 62)          /* KS_ID_MAX */

struct input {
	const uint8_t *p;
	size_t n;
	uint64_t ids[MAX_IDS];     /* ids the input named, to build paths of */
	unsigned nids;
	bool edge;                 /* a number just below ID_CAP was read */
};

static uint8_t get_u8(struct input *in)
{
	if (!in->n)
		return 0;
	in->n--;
	return *in->p++;
}

/* A number: small ones are one byte; edges have a byte each. */
static uint64_t get_num(struct input *in)
{
	uint8_t b = get_u8(in);
	uint64_t v = 0;

	switch (b) {
	case 0xf8: v = UINT64_MAX; break;
	case 0xf9: v = ID_CAP; break;
	case 0xfa: v = 1ull << 63; break;
	case 0xfb: v = (uint64_t)INT64_MAX; break;
	case 0xfc: v = UINT32_MAX; break;
	case 0xfd: v = KS_EVENTS; break;
	case 0xfe: v = 4096; break;
	case 0xff:
		for (int i = 0; i < 8; i++)
			v |= (uint64_t)get_u8(in) << (8 * i);
		break;
	default:
		v = b;
	}
	/* An id or sequence counter at the cap: the records this daemon
	 * adds go past it, and the next check drops them, rightly (no
	 * daemon counts that far). */
	if (v <= ID_CAP && v >= ID_CAP - 4096)
		in->edge = true;
	return v;
}

static void note_id(struct input *in, uint64_t id)
{
	for (unsigned i = 0; i < in->nids; i++)
		if (in->ids[i] == id)
			return;
	if (in->nids < MAX_IDS)
		in->ids[in->nids++] = id;
}

/* Bytes into a field of `cap`, in segments: a count below 254 copies that
 * many and ends the field (the rest zero), 254 copies 253 and another
 * segment follows, 255 fills the whole field with one byte, no
 * terminator. */
static void get_bytes(struct input *in, char *dst, size_t cap)
{
	size_t at = 0;

	memset(dst, 0, cap);
	for (;;) {
		uint8_t count = get_u8(in);
		size_t take = count == 254 ? 253 : count;

		if (count == 255) {
			memset(dst, get_u8(in), cap);
			return;
		}
		for (size_t i = 0; i < take && at < cap && in->n; i++)
			dst[at++] = (char)get_u8(in);
		if (count != 254 || !in->n)
			return;
	}
}

/* A terminated string for the API calls. */
static void get_cstr(struct input *in, char *dst, size_t cap)
{
	get_bytes(in, dst, cap - 1);
	dst[cap - 1] = 0;
}

static void raise_hwm(uint32_t *hwm, uint32_t slot)
{
	if (*hwm < slot + 1)
		*hwm = slot + 1;
}

static void raw_node(struct keepstate *ks, struct input *in)
{
	uint32_t slot = get_u8(in) % NODE_CAP;
	struct nslot *s = &ks->nodes[slot];

	s->state = get_u8(in) % 4 == 3 ? get_u8(in) : ST_LIVE;
	s->flags = (uint16_t)get_num(in);
	s->seq = get_num(in);
	s->id = get_num(in);
	s->parent = get_num(in);
	s->nlookup = get_num(in);
	s->end = get_num(in);
	get_bytes(in, s->name, sizeof(s->name));
	s->namelen = (uint16_t)(get_u8(in) == 0 ? strnlen(s->name, sizeof(s->name))
				: get_num(in));
	note_id(in, s->id);
	note_id(in, s->parent);
	raise_hwm(&ks->h->node_hwm, slot);
	/* As node_fill keeps it; a header edit can still break it. */
	if (ks->h->seq < s->seq)
		ks->h->seq = s->seq;
}

static void raw_fh(struct keepstate *ks, struct input *in)
{
	uint32_t slot = get_u8(in) % FH_CAP;
	struct fslot *s = &ks->fhs[slot];

	s->state = get_u8(in) % 4 == 3 ? get_u8(in) : ST_LIVE;
	s->flags = (int32_t)get_num(in);
	s->released = (uint32_t)get_num(in);
	s->err = (int32_t)get_num(in);
	s->ino = get_num(in);
	s->unacked = get_num(in);
	s->lo = get_num(in);
	s->hi = get_num(in);
	note_id(in, s->ino);
	raise_hwm(&ks->h->fh_hwm, slot);
}

static void raw_event(struct keepstate *ks, struct input *in)
{
	struct evslot *e = &ks->events[get_u8(in) % KS_EVENTS];

	e->seq = get_num(in);
	e->len = (uint32_t)get_num(in);
	get_bytes(in, e->line, sizeof(e->line));
	if (get_u8(in) & 1)
		e->len = (uint32_t)strnlen(e->line, sizeof(e->line));
}

static void raw_header(struct keepstate *ks, struct input *in)
{
	struct hdr *h = ks->h;
	uint8_t field = get_u8(in);
	uint64_t v = field % 8 == 6 || field % 8 == 7 ? 0 : get_num(in);

	switch (field % 8) {
	case 0: h->node_hwm = (uint32_t)v; break;
	case 1: h->fh_hwm = (uint32_t)v; break;
	case 2: h->next_id = v; break;
	case 3: h->seq = v; break;
	case 4: h->init_len = (uint32_t)v; break;
	case 5: memset(h->init, (int)v, sizeof(h->init)); break;
	case 6: get_bytes(in, h->reason, sizeof(h->reason)); break;
	case 7: get_bytes(in, (char *)h->init, sizeof(h->init)); break;
	}
}

static void raw_inflight(struct keepstate *ks, struct input *in)
{
	uint32_t i = get_u8(in) % INFL_CAP;

	ks->infl[i] = get_num(in);
	ks->infl_off[i] = get_num(in);
}

static void api_node(struct keepstate *ks, struct input *in)
{
	char name[KS_NAME_MAX + 1];
	uint64_t id = get_num(in), parent = get_num(in), nlookup = get_num(in);
	int32_t slot;

	char name2[KS_NAME_MAX + 1];
	uint64_t v = 0, parent2 = 0;
	uint8_t what, flip = 0;

	/* Every field read before anything is done: a full table must not
	 * shift the rest of the input. */
	get_cstr(in, name, sizeof(name));
	what = get_u8(in) % 4;
	if (what == 2)
		v = get_num(in);
	if (what == 3) {
		get_cstr(in, name2, sizeof(name2));
		parent2 = get_num(in);
		flip = get_u8(in) & 1;
	}
	note_id(in, id);
	note_id(in, parent);
	if ((slot = ks_node_put(ks, id, parent, name, nlookup)) < 0)
		return;
	switch (what) {
	case 1: ks_node_unlinked(ks, slot); break;
	case 2: ks_node_end(ks, slot, true, v); break;
	case 3:
		/* A move killed halfway: both records stay live (flipped: the
		 * older one has the higher number, as damage would have it). */
		if (ks_node_put(ks, id, parent2, name2, nlookup) >= 0 && flip)
			ks->nodes[slot].seq = UINT64_MAX - ks->nodes[slot].seq;
		break;
	}
}

static void api_event(struct keepstate *ks, struct input *in)
{
	char line[EV_LINE_MAX + 8];    /* a fill is too long to keep */
	uint64_t seq = get_num(in);

	get_cstr(in, line, sizeof(line));
	if (seq)
		ks_event_put(ks, seq, line);
}

static void api_fh(struct keepstate *ks, struct input *in)
{
	uint64_t ino = get_num(in);
	int flags = (int)get_num(in);
	int32_t slot;

	uint64_t bytes = 0, lo = 0, hi = 0;
	bool unacked;

	if ((unacked = get_u8(in) & 1)) {
		bytes = get_num(in);
		lo = get_num(in);
		hi = get_num(in);
	}
	note_id(in, ino);
	slot = ks_fh_put(ks, ino, flags);
	if (slot >= 0 && unacked)
		ks_fh_unacked(ks, slot, bytes, lo, hi);
}

static void apply(struct keepstate *ks, struct input *in)
{
	while (in->n) {
		switch (get_u8(in) % 8) {
		case 0: raw_node(ks, in); break;
		case 1: raw_fh(ks, in); break;
		case 2: raw_event(ks, in); break;
		case 3: raw_header(ks, in); break;
		case 4: raw_inflight(ks, in); break;
		case 5: api_node(ks, in); break;
		case 6: api_event(ks, in); break;
		case 7: api_fh(ks, in); break;
		}
	}
}

/* ---- the restore and its contract ------------------------------------ */

struct seen {
	const char *base;
	uint64_t last_seq;
	unsigned events;
	struct nodes *nodes;
};

static void check_path(const char *base, const char *path)
{
	size_t bl = strlen(base);
	const char *p = path;

	/* As nodes_new() keeps it: no trailing slash but in "/". */
	while (bl > 1 && base[bl - 1] == '/')
		bl--;
	if (!bl) {
		if (!strcmp(path, "."))
			return;
	} else {
		FUZZ_ASSERT(!strncmp(path, base, bl));
		p += bl;
		if (base[bl - 1] == '/' && *p && p[-1] == '/')
			p--;
		if (!*p)
			return;
		FUZZ_ASSERT(*p == '/');
		p++;
	}
	for (;;) {
		const char *slash = strchr(p, '/');
		size_t len = slash ? (size_t)(slash - p) : strlen(p);

		FUZZ_ASSERT(name_ok(p, len));
		if (!slash)
			break;
		p = slash + 1;
	}
}

static void on_event(void *arg, uint64_t seq, const char *line)
{
	struct seen *s = arg;
	char *copy;

	/* The text ends inside the slot it was read from. */
	FUZZ_ASSERT(memchr(line, 0, EV_LINE_MAX) != NULL);
	FUZZ_ASSERT(seq > s->last_seq);
	s->last_seq = seq;
	s->events++;
	FUZZ_ASSERT(s->events <= KS_EVENTS);
	/* What control's load_event does with it. */
	copy = strdup(line);
	free(copy);
}

static void on_fh(void *arg, const struct ks_fh *f, int32_t slot)
{
	struct seen *s = arg;
	char *p;

	FUZZ_ASSERT(slot >= 0 && (uint32_t)slot < FH_CAP);
	FUZZ_ASSERT((f->flags & 3) != 3 && f->flags >= 0);
	FUZZ_ASSERT(!f->unacked || (f->lo <= f->hi && f->hi <= OFF_MAX));
	FUZZ_ASSERT(f->err >= 0 && f->err < 4096);
	/* The handle's node: its path must come back (or NULL: unlinked). */
	p = nodes_path(s->nodes, f->ino);
	if (p)
		check_path(s->base, p);
	free(p);
}

/* A child of `parent` would sit deeper than the restore allows, or
 * might: below an unlinked folder there is no path to count (the check
 * counts from the unlinked folder, the table cannot). */
static bool too_deep(struct seen *s, uint64_t parent)
{
	char *p = nodes_path(s->nodes, parent);
	size_t bl = strlen(s->base);
	unsigned depth = 0;

	if (!p)
		return true;
	/* As nodes_new() keeps the base: no trailing slash but in "/". */
	while (bl > 1 && s->base[bl - 1] == '/')
		bl--;
	/* The components after the base ("." alone is the base itself). */
	for (const char *c = p + bl; *c; c++)
		if (*c != '/' && (c == p + bl || c[-1] == '/'))
			depth++;
	if (!bl && !strcmp(p, "."))
		depth = 0;
	free(p);
#ifdef FUZZ_RESTORE_NO_VALIDATE
	return false;
#else
	return depth + 1 > KS_DEPTH_MAX;
#endif
}

static void restore(struct keepstate *ks, struct input *in, const char *base)
{
	struct seen s = { .base = base };
	uint64_t ids[INFL_CAP], offs[INFL_CAP];
	size_t n;

#ifndef FUZZ_RESTORE_NO_VALIDATE
	struct ks_report rep;

	ks_validate(ks, base, &rep);
	/* FUZZ_RESTORE_VERBOSE=1: what the check found, to write seeds by. */
	if (getenv("FUZZ_RESTORE_VERBOSE"))
		fprintf(stderr, "fuzz_restore: %u problems (header %u, nodes %u, handles %u, events %u, in-flight %u, lost %llu): %s\n",
			ks_report_total(&rep), rep.header, rep.nodes, rep.handles,
			rep.events, rep.inflight, (unsigned long long)rep.lost_bytes,
			rep.first);
#endif
	if (!(s.nodes = nodes_new(base)))
		return;
	nodes_adopt(s.nodes, ks);
	for (unsigned i = 0; i < in->nids; i++) {
		char *p = nodes_path(s.nodes, in->ids[i]);

		if (p)
			check_path(base, p);
		free(p);
		free(nodes_child_path(s.nodes, in->ids[i], "child"));
	}
	ks_events_each(ks, on_event, &s);
	ks_fhs_each(ks, on_fh, &s);
	n = ks_inflight_take(ks, ids, offs, INFL_CAP);
	for (size_t i = 0; i < n; i++) {
		FUZZ_ASSERT(!(ids[i] & 1));
		FUZZ_ASSERT(offs[i] == 0 || offs[i] - 1 <= OFF_MAX);
	}
	/* The restored tables take new records: free lists, ids, names. */
	for (unsigned i = 0; i < 4; i++) {
		uint64_t parent = i ? in->ids[i % (in->nids ? in->nids : 1)] : NODE_ROOT;
		uint64_t id;

		/* Not below the depth limit: the kernel can look a node up
		 * there, but the next restore drops it, rightly (its path is
		 * longer than any server takes). */
		if (too_deep(&s, parent))
			continue;
		if ((id = nodes_ref(s.nodes, parent, "new"))) {
			char *p = nodes_path(s.nodes, id);

			free(p);
			nodes_rename(s.nodes, NODE_ROOT, "new", NODE_ROOT, "moved");
		}
	}
	if (s.last_seq < (1ull << 61))
		ks_event_put(ks, s.last_seq + 1, "{\"type\":\"restart\"}");
#ifndef FUZZ_RESTORE_NO_VALIDATE
	if (getenv("FUZZ_RESTORE_VERBOSE"))
		for (uint32_t i = 0; i < ks->h->node_hwm; i++)
			if (ks->nodes[i].state == ST_LIVE)
				fprintf(stderr, "fuzz_restore: slot %u: id %llu parent %llu flags %u name '%.20s'\n",
					i, (unsigned long long)ks->nodes[i].id,
					(unsigned long long)ks->nodes[i].parent,
					ks->nodes[i].flags, ks->nodes[i].name);
	/* What this daemon leaves, the next one restores without a problem. */
	ks_validate(ks, base, &rep);
	if (ks_report_total(&rep) && !in->edge) {
		fprintf(stderr, "fuzz_restore: second pass: %s\n", rep.first);
		abort();
	}
#endif
	nodes_free(s.nodes);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const bases[] = { "/srv/data", "", "/", "/srv/data//" };
	struct input in = { .p = data, .n = size };
	char err[128];
	struct keepstate *ks;
	const char *base;
	int fd;

	if (!size)
		return 0;
	base = bases[get_u8(&in) % 4];
	if ((fd = ks_create()) < 0)
		return 0;
	if ((ks = ks_map(fd, err, sizeof(err)))) {
		apply(ks, &in);
		/* A fresh map, as the next daemon's: no free lists yet. */
		ks_unmap(ks);
		if ((ks = ks_map(fd, err, sizeof(err)))) {
			restore(ks, &in, base);
			ks_unmap(ks);
		}
	}
	close(fd);
	return 0;
}
