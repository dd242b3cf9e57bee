/*
 * test_pool: fs/transport/pool.c against fake sessions: which session a request
 * goes to (the least busy live one, ties shared round the pool, a bound
 * request to its own), what happens with no session up (held, or failed at
 * once for nonblock, cache_ok, a passed deadline or a stopped pool), how
 * held requests leave (a session comes up, their deadline passes, the pool
 * stops), what a dead session's requests become (resent when idempotent
 * and unbound, else failed), the pair submission, and the state with its
 * hooks.
 *
 * The fakes: this program defines the conn_* functions pool.c calls, so
 * the linker takes them instead of fs/transport/conn.c (the unit rule links each
 * folder as an archive). A fake session is up with a generation or down,
 * reports a number of calls in flight, records what it was given, and
 * keeps the hooks the pool gave it, through which the tests report as a
 * session does (report_up, report_down, report_event, hand_back).
 */
#include "unit.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "clock.h"
#include "fs/transport/pool.h"
#include "log.h"

#define NMAX 4
#define QMAX 64

/* ---- fake sessions ------------------------------------------------------- */

struct conn {
	int idx;
	uint64_t gen;          /* 0: down */
	unsigned inflight;
	int refuse;            /* the session dies at its next conn_submit */
	int count_sent;        /* each accepted request adds to inflight */
	struct sreq *got[QMAX];
	int ngot;
	int started, stopped;
	struct conn_server server;
	struct conn_hooks hooks;
};

static struct conn fakes[NMAX];

struct conn *conn_new(const struct conn_hooks *h, int idx,
		      const struct steadyfs_opts *o)
{
	memset(&fakes[idx], 0, sizeof(fakes[idx]));
	fakes[idx].idx = idx;
	fakes[idx].hooks = *h;
	fakes[idx].server.max_read = 1000u + (unsigned)idx;
	return &fakes[idx];
}

void conn_free(struct conn *c) { }
int conn_start(struct conn *c) { c->started = 1; return 0; }
void conn_stop(struct conn *c) { c->stopped = 1; }
uint64_t conn_up_gen(struct conn *c) { return c->gen; }
unsigned conn_inflight(struct conn *c) { return c->inflight; }
void conn_get_server(struct conn *c, struct conn_server *out) { *out = c->server; }

int conn_connect_now(struct conn *c, char *err, size_t errsz)
{
	c->gen = 1;
	return 0;
}

int conn_submit(struct conn *c, struct sreq *rq)
{
	if (c->refuse)
		c->gen = 0;
	if (!c->gen || (rq->conn_idx >= 0 && rq->conn_gen != c->gen) || c->ngot == QMAX)
		return -ENOTCONN;
	c->got[c->ngot++] = rq;
	c->inflight += (unsigned)c->count_sent;
	return 0;
}

/* What session idx reports to the pool, as conn.c does. */
static void report_up(int idx)
{
	fakes[idx].hooks.up(fakes[idx].hooks.arg, idx);
}

static void report_down(int idx, const char *why)
{
	fakes[idx].hooks.down(fakes[idx].hooks.arg, idx, why);
}

static void report_event(int idx, const char *what, const char *detail)
{
	fakes[idx].hooks.event(fakes[idx].hooks.arg, idx, what, detail);
}

static void hand_back(int idx, struct sreq *rq)
{
	fakes[idx].hooks.requeue(fakes[idx].hooks.arg, rq);
}

/* ---- requests ------------------------------------------------------------ */

struct req {
	struct sreq rq;
	int calls;     /* done() calls: must end at exactly 1 */
	int err;
};

static void req_done(struct sreq *rq, const struct sftp_reply *r, int err)
{
	struct req *q = (struct req *)rq;

	q->calls++;
	q->err = err;
}

static void req_init(struct req *q)
{
	memset(q, 0, sizeof(*q));
	q->rq.done = req_done;
	q->rq.conn_idx = -1;
}

/* Which fake session holds `rq`, or -1. */
static int where(const struct sreq *rq)
{
	for (int i = 0; i < NMAX; i++)
		for (int k = 0; k < fakes[i].ngot; k++)
			if (fakes[i].got[k] == rq)
				return i;
	return -1;
}

static struct steadyfs_opts opts;

/* A pool of `n` sessions with `gens[i]` (0 down) and `busy[i]` in flight. */
static struct pool *pool_with(int n, const uint64_t *gens, const unsigned *busy)
{
	struct pool *p;

	memset(fakes, 0, sizeof(fakes));   /* a session past n holds nothing */
	memset(&opts, 0, sizeof(opts));
	opts.connections = n;
	p = pool_new(&opts);
	if (!p)
		return NULL;
	for (int i = 0; i < n; i++) {
		fakes[i].gen = gens ? gens[i] : 0;
		fakes[i].inflight = busy ? busy[i] : 0;
	}
	return p;
}

/* ---- session choice -------------------------------------------------------- */

static void test_choice(void)
{
	static const struct {
		int n;
		uint64_t gen[NMAX];
		unsigned busy[NMAX];
		int refuse[NMAX];
		int want;          /* session, or -1: held */
	} t[] = {
		{ 1, { 1 }, { 0 }, { 0 }, 0 },
		{ 3, { 1, 1, 1 }, { 5, 2, 9 }, { 0 }, 1 },          /* least busy */
		{ 3, { 1, 0, 1 }, { 5, 0, 9 }, { 0 }, 0 },          /* down skipped */
		{ 3, { 0, 0, 7 }, { 0, 0, 100 }, { 0 }, 2 },        /* the only live one */
		{ 3, { 1, 1, 1 }, { 0, 3, 4 }, { 1, 0, 0 }, 1 },    /* died: the next */
		{ 3, { 1, 1, 1 }, { 0, 3, 4 }, { 1, 1, 0 }, 2 },
		{ 2, { 1, 1 }, { 0, 0 }, { 1, 1 }, -1 },            /* all died: held */
		{ 4, { 0, 0, 0, 0 }, { 0 }, { 0 }, -1 },            /* none up: held */
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct pool *p = pool_with(t[i].n, t[i].gen, t[i].busy);
		struct req q;

		if (!CHECK(p != NULL))
			return;
		for (int k = 0; k < t[i].n; k++)
			fakes[k].refuse = t[i].refuse[k];
		req_init(&q);
		pool_submit(p, &q.rq);
		if (!CHECK_EQ(where(&q.rq), t[i].want))
			fprintf(stderr, "  row %zu\n", i);
		/* held until the pool stops, then failed once */
		CHECK_EQ(q.calls, 0);
		pool_free(p);
		CHECK_EQ(q.calls, t[i].want < 0 ? 1 : 0);
		if (t[i].want < 0)
			CHECK_EQ(q.err, -ECONNRESET);
	}
}

/* Equally busy sessions share the requests round the pool. */
static void test_ties_go_round(void)
{
	const uint64_t gens[] = { 1, 1, 1, 1 };
	struct pool *p = pool_with(4, gens, NULL);
	struct req q[8];

	if (!CHECK(p != NULL))
		return;
	for (int i = 0; i < 8; i++) {
		req_init(&q[i]);
		pool_submit(p, &q[i].rq);
	}
	for (int i = 0; i < 4; i++)
		CHECK_EQ(fakes[i].ngot, 2);
	pool_free(p);
}

/* A bound request goes to its session at its generation, or fails. */
static void test_bound(void)
{
	static const struct {
		int idx;
		uint64_t gen;
		int want;       /* session, or -1: -ESTALE */
	} t[] = {
		{ 1, 5, 1 },
		{ 0, 3, 0 },
		{ 1, 4, -1 },   /* that session reconnected since */
		{ 2, 1, -1 },   /* down */
		{ 3, 1, -1 },   /* no such session */
	};
	const uint64_t gens[] = { 3, 5, 0 };
	const unsigned busy[] = { 9, 9, 0 };

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct pool *p = pool_with(3, gens, busy);
		struct req q;

		if (!CHECK(p != NULL))
			return;
		req_init(&q);
		q.rq.conn_idx = t[i].idx;
		q.rq.conn_gen = t[i].gen;
		q.rq.idempotent = true;   /* still never moved to another session */
		pool_submit(p, &q.rq);
		CHECK_EQ(where(&q.rq), t[i].want);
		CHECK_EQ(q.calls, t[i].want < 0);
		if (t[i].want < 0)
			CHECK_EQ(q.err, -ESTALE);
		pool_free(p);
	}
}

/* ---- no session up --------------------------------------------------------- */

static void test_no_session(void)
{
	static const struct {
		bool nonblock, cache_ok, past_deadline;
		int err;      /* 0: held */
	} t[] = {
		{ false, false, false, 0 },
		{ true, false, false, -EAGAIN },
		{ false, true, false, -EHOSTDOWN },
		{ true, true, false, -EAGAIN },
		{ false, false, true, -ETIMEDOUT },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct pool *p = pool_with(2, NULL, NULL);
		struct req q;

		if (!CHECK(p != NULL))
			return;
		req_init(&q);
		q.rq.nonblock = t[i].nonblock;
		q.rq.cache_ok = t[i].cache_ok;
		if (t[i].past_deadline)
			q.rq.deadline = clock_mono_ns() - 1;
		pool_submit(p, &q.rq);
		if (!CHECK_EQ(q.calls, t[i].err != 0) || !CHECK_EQ(q.err, t[i].err))
			fprintf(stderr, "  row %zu\n", i);
		pool_free(p);
	}
}

/* Held requests go out when a session comes up, all of them, once. */
static void test_held_until_up(void)
{
	struct pool *p = pool_with(2, NULL, NULL);
	struct req q[5];

	if (!CHECK(p != NULL))
		return;
	for (int i = 0; i < 5; i++) {
		req_init(&q[i]);
		pool_submit(p, &q[i].rq);
	}
	for (int i = 0; i < 5; i++)
		CHECK_EQ(where(&q[i].rq), -1);
	fakes[1].gen = 2;
	report_up(1);
	for (int i = 0; i < 5; i++) {
		CHECK_EQ(where(&q[i].rq), 1);
		CHECK_EQ(q[i].calls, 0);
	}
	CHECK_EQ(fakes[1].ngot, 5);
	pool_free(p);
	for (int i = 0; i < 5; i++)
		CHECK_EQ(q[i].calls, 0);   /* a session has them, not the pool */
}

/* The timer thread fails a held request at its deadline, not before, and
 * leaves one without a deadline held. */
static void test_held_deadline(void)
{
	struct pool *p = pool_with(1, NULL, NULL);
	struct req soon, never;
	uint64_t give_up;

	if (!CHECK(p != NULL))
		return;
	req_init(&soon);
	req_init(&never);
	soon.rq.deadline = clock_mono_ns() + 200 * 1000 * 1000ull;
	pool_submit(p, &soon.rq);
	pool_submit(p, &never.rq);
	CHECK_EQ(soon.calls, 0);
	if (!CHECK_EQ(pool_start(p), 0)) {
		pool_free(p);
		return;
	}
	CHECK(fakes[0].started);
	/* poll, with a deadline of its own */
	give_up = clock_mono_ns() + 10ull * 1000 * 1000 * 1000;
	while (__atomic_load_n(&soon.calls, __ATOMIC_ACQUIRE) == 0 && clock_mono_ns() < give_up)
		nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000 * 1000 }, NULL);
	CHECK_EQ(soon.calls, 1);
	CHECK_EQ(soon.err, -ETIMEDOUT);
	CHECK(clock_mono_ns() >= soon.rq.deadline);
	CHECK_EQ(never.calls, 0);
	pool_free(p);
	CHECK(fakes[0].stopped);
	CHECK_EQ(never.calls, 1);
	CHECK_EQ(never.err, -ECONNRESET);
}

/* A stopped pool fails what it holds and everything after. */
static void test_stop(void)
{
	struct pool *p = pool_with(1, NULL, NULL);
	struct req held, later;

	if (!CHECK(p != NULL))
		return;
	req_init(&held);
	req_init(&later);
	pool_submit(p, &held.rq);
	pool_stop(p);
	CHECK_EQ(held.calls, 1);
	CHECK_EQ(held.err, -ECONNRESET);
	fakes[0].gen = 1;            /* a session up does not matter now */
	pool_submit(p, &later.rq);
	CHECK_EQ(later.calls, 1);
	CHECK_EQ(later.err, -ECONNRESET);
	CHECK_EQ(where(&later.rq), -1);
	pool_stop(p);                 /* idempotent */
	CHECK_EQ(held.calls, 1);
	pool_free(p);
}

/* ---- a dead session's requests ------------------------------------------------ */

static void test_requeue(void)
{
	static const struct {
		bool idempotent;
		int bound;
		uint64_t gen1;      /* the other session: 0 down */
		int want;           /* session, -1 held, -2 failed */
		int err;
	} t[] = {
		{ true, 0, 4, 1, 0 },                 /* resent on a live session */
		{ true, 0, 0, -1, 0 },                /* none up: held */
		{ false, 0, 4, -2, -ECONNRESET },     /* may have run: not resent */
		{ true, 1, 4, -2, -ESTALE },          /* bound: its session is gone */
		{ false, 1, 4, -2, -ESTALE },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		const uint64_t gens[] = { 0, t[i].gen1 };
		struct pool *p = pool_with(2, gens, NULL);
		struct req q;

		if (!CHECK(p != NULL))
			return;
		req_init(&q);
		q.rq.idempotent = t[i].idempotent;
		if (t[i].bound) {
			q.rq.conn_idx = 0;
			q.rq.conn_gen = 3;
		}
		hand_back(0, &q.rq);
		if (t[i].want == -2) {
			CHECK_EQ(q.calls, 1);
			CHECK_EQ(q.err, t[i].err);
		} else {
			CHECK_EQ(q.calls, 0);
			if (!CHECK_EQ(where(&q.rq), t[i].want))
				fprintf(stderr, "  row %zu\n", i);
		}
		pool_free(p);
	}
}

/* ---- pairs ------------------------------------------------------------------ */

static void test_pair(void)
{
	static const struct {
		uint64_t gen[2];
		int refuse0;
		int first_at;      /* session, -1 held */
		int second_at;     /* session, -1 failed -ESTALE */
	} t[] = {
		{ { 0, 6 }, 0, 1, 1 },      /* both on the one live session */
		{ { 0, 0 }, 0, -1, -1 },    /* none up: first held, second fails */
		{ { 2, 0 }, 1, -1, -1 },    /* the session died: first goes alone (held) */
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct pool *p = pool_with(2, t[i].gen, NULL);
		struct req a, b;

		if (!CHECK(p != NULL))
			return;
		fakes[0].refuse = t[i].refuse0;
		req_init(&a);
		req_init(&b);
		pool_submit_pair(p, &a.rq, &b.rq);
		CHECK_EQ(where(&a.rq), t[i].first_at);
		CHECK_EQ(where(&b.rq), t[i].second_at);
		if (t[i].second_at >= 0) {
			CHECK_EQ(b.rq.conn_idx, t[i].second_at);
			CHECK_EQU(b.rq.conn_gen, t[i].gen[t[i].second_at]);
			/* right behind the first on its session */
			CHECK(fakes[t[i].second_at].got[0] == &a.rq &&
			      fakes[t[i].second_at].got[1] == &b.rq);
		} else {
			CHECK_EQ(b.calls, 1);
			CHECK_EQ(b.err, -ESTALE);
		}
		CHECK_EQ(a.calls, 0);
		pool_free(p);
	}
}

/* ---- state and hooks --------------------------------------------------------- */

struct heard {
	char log[512];
	size_t n;
};

static void on_state(void *arg, enum pool_state from, enum pool_state to)
{
	struct heard *h = arg;

	h->n += (size_t)snprintf(h->log + h->n, sizeof(h->log) - h->n, "%s>%s ",
				 pool_state_name(from), pool_state_name(to));
}

static void on_event(void *arg, int idx, const char *what, const char *detail)
{
	struct heard *h = arg;

	h->n += (size_t)snprintf(h->log + h->n, sizeof(h->log) - h->n, "%d:%s(%s) ",
				 idx, what, detail ? detail : "");
}

static void test_state(void)
{
	struct pool *p = pool_with(2, NULL, NULL);
	struct heard h = { .n = 0 };
	struct pool_hooks hooks = { .state_changed = on_state, .conn_event = on_event,
				    .arg = &h };
	struct conn_server s;

	if (!CHECK(p != NULL))
		return;
	CHECK_EQ(pool_state(p), POOL_DOWN);
	CHECK_EQ(pool_size(p), 2);
	pool_set_hooks(p, &hooks);
	fakes[0].gen = 1;
	report_up(0);
	CHECK_EQ(pool_state(p), POOL_DEGRADED);
	CHECK_EQ(pool_up_count(p), 1);
	fakes[1].gen = 1;
	report_up(1);
	CHECK_EQ(pool_state(p), POOL_CONNECTED);
	report_up(1);                      /* no change: no hook */
	fakes[0].gen = 0;
	report_down(0, "connection lost");
	CHECK_EQ(pool_state(p), POOL_DEGRADED);
	fakes[1].gen = 0;
	report_down(1, "eof");
	CHECK_EQ(pool_state(p), POOL_DOWN);
	report_event(1, "reconnect_failed", "refused");
	CHECK_STR(h.log, "down>degraded degraded>connected 0:session_down(connection lost) "
		  "connected>degraded 1:session_down(eof) degraded>down "
		  "1:reconnect_failed(refused) ");
	/* the server facts are the first session's to come up */
	pool_server(p, &s);
	CHECK_EQU(s.max_read, 1000);
	CHECK(pool_conn(p, 1) == &fakes[1]);
	CHECK(pool_conn(p, 2) == NULL);
	CHECK(pool_conn(p, -1) == NULL);
	pool_free(p);
}

static void test_connect_first(void)
{
	struct pool *p = pool_with(3, NULL, NULL);
	char err[64];
	struct conn_server s;

	if (!CHECK(p != NULL))
		return;
	CHECK_EQ(pool_connect_first(p, err, sizeof(err)), 0);
	fakes[2].gen = 1;
	report_up(2);
	pool_server(p, &s);
	CHECK_EQU(s.max_read, 1000);   /* session 0's, not the later one's */
	pool_free(p);
}

int main(void)
{
	log_init("test_pool", SLOG_ERR);
	UNIT_RUN(test_choice);
	UNIT_RUN(test_ties_go_round);
	UNIT_RUN(test_bound);
	UNIT_RUN(test_no_session);
	UNIT_RUN(test_held_until_up);
	UNIT_RUN(test_held_deadline);
	UNIT_RUN(test_stop);
	UNIT_RUN(test_requeue);
	UNIT_RUN(test_pair);
	UNIT_RUN(test_state);
	UNIT_RUN(test_connect_first);
	return unit_summary("test_pool");
}
