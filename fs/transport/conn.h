/*
 * conn: one SSH session with an `sftp` subsystem channel, owned by one I/O
 * thread. The thread connects (host key verified every time), speaks SFTP
 * through the pure codec, keeps many requests in flight matched by id,
 * enforces request deadlines, pings when idle, declares the session dead
 * when nothing comes back for `dead_after`, hands in-flight requests back
 * to the pool, and reconnects in the background with jittered exponential
 * backoff, forever. No lock other threads need is held while connecting.
 *
 * A session reports upward only through the hooks it is given (the pool
 * gives them): conn.c calls nothing of pool.c.
 *
 * Threads: conn_submit() and the getters may be called from any thread;
 * everything else in conn.c runs on the conn's own thread.
 */
#ifndef STEADYFS_CONN_H
#define STEADYFS_CONN_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "opts.h"
#include "sreq.h"
#include "sshlink.h"

enum conn_state { CONN_DOWN = 0, CONN_CONNECTING, CONN_UP };

/* Point-in-time numbers for .control/ and metrics (copied under lock). */
struct conn_info {
	enum conn_state state;
	double since;          /* wall time of the last state change */
	unsigned inflight;
	double last_rtt;       /* seconds, last ping or reply round trip */
	uint64_t reconnects;   /* successful reconnects after the first */
	uint64_t attempts;     /* connect attempts */
	uint64_t gen;          /* increments on each successful connect */
};

struct conn;

/*
 * How a session reports to its owner, on the session's own thread (and on
 * the stopping thread in conn_stop): every hook is called with no conn
 * lock held, `idx` is the session's number.
 */
struct conn_hooks {
	/* The session is up (serving starts after this returns). */
	void (*up)(void *arg, int idx);
	/* The session is down; its requests were handed back first. */
	void (*down)(void *arg, int idx, const char *why);
	/* A request the session took and cannot finish (it died or stops):
	 * the owner resends, holds or fails it. */
	void (*requeue)(void *arg, struct sreq *rq);
	/* A reconnect, or a failed attempt ("reconnect", "reconnect_failed"). */
	void (*event)(void *arg, int idx, const char *what, const char *detail);
	void *arg;
};

/*
 * Creates a conn for session `idx`, reporting through `h` (copied; every
 * hook set). `o` must outlive the conn. Returns NULL on allocation failure.
 */
struct conn *conn_new(const struct conn_hooks *h, int idx,
		      const struct steadyfs_opts *o);
/*
 * Connects once on the calling thread (used by main() before mounting, to
 * report a bad host, key or login with the right exit code). On failure
 * writes one line to err and returns -CONN_FAIL_*.
 */
int conn_connect_now(struct conn *c, char *err, size_t errsz);
/* Starts the I/O thread (which reconnects when not already up). */
int conn_start(struct conn *c);
/* Stops the thread and waits for it; in-flight requests go back through
 * the requeue hook. Safe to call twice. */
void conn_stop(struct conn *c);
/* conn_stop, then frees. Stop every conn of a pool before freeing any:
 * a stopping conn's requeued requests may go to its siblings. */
void conn_free(struct conn *c);

/*
 * Queues `rq` for sending. Returns 0, or -ENOTCONN when the session is not
 * up or (for a bound request) its generation is not rq->conn_gen; then
 * the caller still owns rq.
 */
int conn_submit(struct conn *c, struct sreq *rq);

void conn_get_info(struct conn *c, struct conn_info *out);
/* Valid once the session has been up at least once. */
void conn_get_server(struct conn *c, struct conn_server *out);
/* Current generation if up, else 0. */
uint64_t conn_up_gen(struct conn *c);
/* Requests sent and not answered, plus those submitted and not yet sent
 * (the pool picks the least busy session by it). */
unsigned conn_inflight(struct conn *c);
/* Shortest round trip of the last 10-20 s (the link without the
 * server's queue), in ns; 0 when none was measured yet. */
uint64_t conn_min_rtt_ns(struct conn *c);

#endif
