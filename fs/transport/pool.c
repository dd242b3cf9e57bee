/*
 * pool: picks sessions, holds requests through outages, owns the state.
 *
 * Requests that find no live session wait on `held` until a session comes
 * up (pool_conn_up drains them) or their deadline passes (the timer, a
 * lib/periodic thread, fails them with -ETIMEDOUT). The pool lock is never held while a done()
 * callback runs or while a session connects, so healthy calls never wait
 * behind a reconnect.
 */
#include "pool.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "periodic.h"

/* The timer's period: 50 ms keeps deadlines well inside the slack. */
#define TIMER_PERIOD_NS (50 * NS_PER_MS)

struct pool {
	const struct steadyfs_opts *o;
	int n;
	struct conn **conns;
	unsigned rr;                 /* atomic: where pick() starts looking */

	struct periodic timer;       /* expires and resubmits held requests */

	pthread_mutex_t lock;        /* protects everything below */
	struct sreq *held;           /* waiting for a live session */
	enum pool_state state;
	double state_since;
	bool stop;
	struct pool_hooks hooks;
	bool have_server;
	struct conn_server server;
};

const char *pool_state_name(enum pool_state s)
{
	switch (s) {
	case POOL_CONNECTED: return "connected";
	case POOL_DEGRADED: return "degraded";
	default: return "down";
	}
}

/* What the sessions report (conn.h's hooks, arg the pool); below. */
static void pool_conn_up(void *arg, int idx);
static void pool_conn_down(void *arg, int idx, const char *why);
static void pool_requeue(void *arg, struct sreq *rq);
static void pool_event(void *arg, int idx, const char *what, const char *detail);
static uint64_t timer_tick(void *arg, uint64_t now);

struct pool *pool_new(const struct steadyfs_opts *o)
{
	struct pool *p = calloc(1, sizeof(*p));
	struct conn_hooks h = { pool_conn_up, pool_conn_down, pool_requeue,
				pool_event, p };

	if (!p)
		return NULL;
	p->o = o;
	p->n = o->connections;
	p->conns = calloc((size_t)p->n, sizeof(*p->conns));
	if (!p->conns)
		goto fail;
	for (int i = 0; i < p->n; i++)
		if (!(p->conns[i] = conn_new(&h, i, o)))
			goto fail;
	pthread_mutex_init(&p->lock, NULL);
	periodic_init(&p->timer, timer_tick, p);
	p->state = POOL_DOWN;
	p->state_since = clock_wall();
	return p;
fail:
	for (int i = 0; p->conns && i < p->n; i++)
		conn_free(p->conns[i]);
	free(p->conns);
	free(p);
	return NULL;
}

void pool_set_hooks(struct pool *p, const struct pool_hooks *h)
{
	pthread_mutex_lock(&p->lock);
	p->hooks = *h;
	pthread_mutex_unlock(&p->lock);
}

int pool_connect_first(struct pool *p, char *err, size_t errsz)
{
	int rc = conn_connect_now(p->conns[0], err, errsz);

	if (rc == 0) {
		conn_get_server(p->conns[0], &p->server);
		p->have_server = true;
	}
	return rc;
}

/* Recomputes the state from the sessions; call with the lock held. Returns
 * true when it changed, with the old state in *from. */
static bool recompute(struct pool *p, enum pool_state *from)
{
	int up = 0;
	enum pool_state s;

	for (int i = 0; i < p->n; i++)
		up += conn_up_gen(p->conns[i]) != 0;
	s = up == p->n ? POOL_CONNECTED : up ? POOL_DEGRADED : POOL_DOWN;
	if (s == p->state)
		return false;
	*from = p->state;
	p->state = s;
	p->state_since = clock_wall();
	return true;
}

static void notify_state(struct pool *p, bool changed, enum pool_state from,
			 enum pool_state to, struct pool_hooks *h)
{
	if (!changed)
		return;
	log_info("state: %s -> %s", pool_state_name(from), pool_state_name(to));
	if (h->state_changed)
		h->state_changed(h->arg, from, to);
}

/* The least busy live session, or NULL. Ties go round the pool: on an
 * idle mount every open would otherwise land on session 0, and with it
 * all the handle-bound traffic of files opened one after the other. */
static struct conn *pick_idx(struct pool *p, int *idx)
{
	struct conn *best = NULL;
	unsigned best_n = ~0u;
	int start = (int)(__atomic_fetch_add(&p->rr, 1, __ATOMIC_RELAXED) % (unsigned)p->n);

	for (int k = 0; k < p->n; k++) {
		struct conn *c = p->conns[(start + k) % p->n];
		unsigned n;

		if (!conn_up_gen(c))
			continue;
		n = conn_inflight(c);
		if (n < best_n) {
			best = c;
			best_n = n;
			*idx = (start + k) % p->n;
		}
	}
	return best;
}

static struct conn *pick(struct pool *p)
{
	int idx;

	return pick_idx(p, &idx);
}

static void hold(struct pool *p, struct sreq *rq)
{
	pthread_mutex_lock(&p->lock);
	rq->next = p->held;
	p->held = rq;
	/* A session may have come up between the failed pick and here. */
	periodic_kick(&p->timer);
	pthread_mutex_unlock(&p->lock);
}

static bool stopped(struct pool *p)
{
	bool s;

	pthread_mutex_lock(&p->lock);
	s = p->stop;
	pthread_mutex_unlock(&p->lock);
	return s;
}

void pool_submit(struct pool *p, struct sreq *rq)
{
	if (stopped(p)) {
		rq->done(rq, NULL, -ECONNRESET);
		return;
	}
	if (rq->deadline && clock_mono_ns() >= rq->deadline) {
		rq->done(rq, NULL, -ETIMEDOUT);
		return;
	}
	if (rq->conn_idx >= 0) {
		if (rq->conn_idx >= p->n ||
		    conn_submit(p->conns[rq->conn_idx], rq) < 0)
			rq->done(rq, NULL, -ESTALE);
		return;
	}
	/* A session may die between pick and submit: try the others. */
	for (int tries = 0; tries < p->n; tries++) {
		struct conn *c = pick(p);

		if (!c)
			break;
		if (conn_submit(c, rq) == 0)
			return;
	}
	if (rq->nonblock || rq->cache_ok) {
		rq->done(rq, NULL, rq->nonblock ? -EAGAIN : -EHOSTDOWN);
		return;
	}
	hold(p, rq);
}

void pool_submit_pair(struct pool *p, struct sreq *first, struct sreq *second)
{
	struct conn *c = NULL;
	int idx = -1;

	if (!stopped(p) && first->conn_idx < 0 &&
	    (!first->deadline || clock_mono_ns() < first->deadline))
		c = pick_idx(p, &idx);
	if (c) {
		second->conn_idx = idx;
		second->conn_gen = conn_up_gen(c);
	}
	if (!c || !second->conn_gen || conn_submit(c, first) < 0) {
		pool_submit(p, first);
		second->done(second, NULL, -ESTALE);
		return;
	}
	if (conn_submit(c, second) < 0)
		second->done(second, NULL, -ESTALE);
}

/* A request a dead or stopping session hands back: resent, held, or failed. */
static void pool_requeue(void *arg, struct sreq *rq)
{
	struct pool *p = arg;

	if (rq->idempotent && rq->conn_idx < 0) {
		pool_submit(p, rq);
		return;
	}
	rq->done(rq, NULL, rq->conn_idx >= 0 ? -ESTALE : -ECONNRESET);
}

/* Takes the whole held list (lock held by caller). */
static struct sreq *take_held(struct pool *p)
{
	struct sreq *q = p->held;

	p->held = NULL;
	return q;
}

/* Ends every request of list `q` with `err` (no pool lock held). */
static void fail_all(struct sreq *q, int err)
{
	while (q) {
		struct sreq *next = q->next;

		q->next = NULL;
		q->done(q, NULL, err);
		q = next;
	}
}

static void resubmit_all(struct pool *p, struct sreq *q)
{
	while (q) {
		struct sreq *next = q->next;

		q->next = NULL;
		pool_submit(p, q);
		q = next;
	}
}

static void pool_conn_up(void *arg, int idx)
{
	struct pool *p = arg;
	struct pool_hooks h;
	enum pool_state from = POOL_DOWN;
	bool changed;
	struct sreq *q;

	pthread_mutex_lock(&p->lock);
	if (!p->have_server) {
		conn_get_server(p->conns[idx], &p->server);
		p->have_server = true;
	}
	changed = recompute(p, &from);
	h = p->hooks;
	q = take_held(p);
	pthread_mutex_unlock(&p->lock);
	notify_state(p, changed, from, pool_state(p), &h);
	resubmit_all(p, q);
}

static void pool_conn_down(void *arg, int idx, const char *why)
{
	struct pool *p = arg;
	struct pool_hooks h;
	enum pool_state from = POOL_DOWN;
	bool changed;

	pthread_mutex_lock(&p->lock);
	changed = recompute(p, &from);
	h = p->hooks;
	pthread_mutex_unlock(&p->lock);
	pool_event(p, idx, "session_down", why);
	notify_state(p, changed, from, pool_state(p), &h);
}

static void pool_event(void *arg, int idx, const char *what, const char *detail)
{
	struct pool *p = arg;
	struct pool_hooks h;

	pthread_mutex_lock(&p->lock);
	h = p->hooks;
	pthread_mutex_unlock(&p->lock);
	if (h.conn_event)
		h.conn_event(h.arg, idx, what, detail);
}

/* The timer: fails held requests whose deadline passed, and resubmits
 * the held ones when a session is up (one came up between a failed pick
 * and hold()). Every TIMER_PERIOD_NS, at once after a hold. */
static uint64_t timer_tick(void *arg, uint64_t now)
{
	struct pool *p = arg;
	struct sreq **pp, *expired = NULL, *q = NULL;

	pthread_mutex_lock(&p->lock);
	for (pp = &p->held; *pp;) {
		struct sreq *rq = *pp;

		if (rq->deadline && rq->deadline <= now) {
			*pp = rq->next;
			rq->next = expired;
			expired = rq;
		} else {
			pp = &rq->next;
		}
	}
	if (p->held && pool_up_count(p) > 0)
		q = take_held(p);
	pthread_mutex_unlock(&p->lock);
	resubmit_all(p, q);
	/* Once these callbacks ran, look again at once: more may be due. */
	fail_all(expired, -ETIMEDOUT);
	return expired ? 0 : TIMER_PERIOD_NS;
}

int pool_start(struct pool *p)
{
	if (periodic_start(&p->timer) < 0)
		return -1;
	for (int i = 0; i < p->n; i++)
		if (conn_start(p->conns[i]) < 0)
			return -1;
	return 0;
}

void pool_stop(struct pool *p)
{
	struct sreq *q;

	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_mutex_unlock(&p->lock);
	for (int i = 0; i < p->n; i++)
		conn_stop(p->conns[i]);
	periodic_stop(&p->timer);
	pthread_mutex_lock(&p->lock);
	q = take_held(p);
	pthread_mutex_unlock(&p->lock);
	fail_all(q, -ECONNRESET);
}

void pool_free(struct pool *p)
{
	if (!p)
		return;
	pool_stop(p);
	for (int i = 0; i < p->n; i++)
		conn_free(p->conns[i]);
	free(p->conns);
	pthread_mutex_destroy(&p->lock);
	periodic_destroy(&p->timer);
	free(p);
}

enum pool_state pool_state(struct pool *p)
{
	enum pool_state s;

	pthread_mutex_lock(&p->lock);
	s = p->state;
	pthread_mutex_unlock(&p->lock);
	return s;
}

double pool_state_since(struct pool *p)
{
	double s;

	pthread_mutex_lock(&p->lock);
	s = p->state_since;
	pthread_mutex_unlock(&p->lock);
	return s;
}

int pool_size(struct pool *p)
{
	return p->n;
}

int pool_up_count(struct pool *p)
{
	int up = 0;

	for (int i = 0; i < p->n; i++)
		up += conn_up_gen(p->conns[i]) != 0;
	return up;
}

struct conn *pool_conn(struct pool *p, int idx)
{
	return idx >= 0 && idx < p->n ? p->conns[idx] : NULL;
}

void pool_server(struct pool *p, struct conn_server *out)
{
	pthread_mutex_lock(&p->lock);
	*out = p->server;
	pthread_mutex_unlock(&p->lock);
}
