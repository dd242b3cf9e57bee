/*
 * pool: the set of sessions. Picks a live session for each request, holds
 * requests while no session is up (until their deadline), resends
 * idempotent requests after a session loss, and owns the overall state:
 * connected (every session up), degraded (some up), down (none up).
 *
 * The sessions (conn.c) report their ups, downs, events and the requests
 * they hand back through the conn_hooks the pool gives each at creation.
 *
 * Threads: every function may be called from any thread, including from a
 * done() callback running on a conn thread. The pool's timer thread expires
 * held requests. Callbacks are never called with a pool lock held.
 */
#ifndef STEADYFS_POOL_H
#define STEADYFS_POOL_H

#include <stdint.h>

#include "conn.h"
#include "opts.h"
#include "sreq.h"

enum pool_state { POOL_CONNECTED = 0, POOL_DEGRADED, POOL_DOWN };

struct pool;

/* Hook the vfs sets to hear about state changes and events (may be NULL). */
struct pool_hooks {
	void (*state_changed)(void *arg, enum pool_state from, enum pool_state to);
	void (*conn_event)(void *arg, int idx, const char *what, const char *detail);
	void *arg;
};

struct pool *pool_new(const struct steadyfs_opts *o);
/* Connects session 0 on the calling thread (see conn_connect_now). */
int pool_connect_first(struct pool *p, char *err, size_t errsz);
/* Starts every session's thread and the timer thread. */
int pool_start(struct pool *p);
void pool_set_hooks(struct pool *p, const struct pool_hooks *h);
/*
 * Stops every session and the timer thread and fails what is held with
 * -ECONNRESET; later submissions fail at once. After it returns no pool
 * thread runs, so the vfs the callbacks use may be freed. Idempotent.
 */
void pool_stop(struct pool *p);
/* pool_stop, then frees. */
void pool_free(struct pool *p);

/*
 * Sends rq on a live session; when none is up, holds it until one comes up
 * or rq->deadline passes (-ETIMEDOUT), or fails at once with -EAGAIN when
 * rq->nonblock. With rq->conn_idx >= 0 it must go to that session at
 * generation rq->conn_gen, else done(-ESTALE). Always ends in rq->done.
 */
void pool_submit(struct pool *p, struct sreq *rq);
/*
 * pool_submit(first), then `second` right behind it on the same session,
 * so a server that answers in order (every SFTP server does per channel)
 * runs second after first in the same round trip. When first finds no
 * session at once (or its session is gone before second is queued),
 * second ends with -ESTALE and first goes on alone. second must not be
 * bound (conn_idx -1): this binds it.
 */
void pool_submit_pair(struct pool *p, struct sreq *first, struct sreq *second);

enum pool_state pool_state(struct pool *p);
const char *pool_state_name(enum pool_state s);
double pool_state_since(struct pool *p);
int pool_size(struct pool *p);
int pool_up_count(struct pool *p);
struct conn *pool_conn(struct pool *p, int idx);
/* Server facts from the first session that connected. */
void pool_server(struct pool *p, struct conn_server *out);

#endif
