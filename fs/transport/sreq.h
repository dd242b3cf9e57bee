/*
 * sreq: one SFTP request on its way to the server, as seen by the pool and
 * the session I/O threads. The caller embeds a struct sreq in its own
 * operation struct, fills pkt (or encode) and done, and submits it.
 *
 * Lifecycle: submitted -> queued on a conn or the pool -> sent -> done()
 * called exactly once, on a conn I/O thread or the pool's timer thread.
 * After done() returns, the pool and conns no longer touch the sreq, so the
 * owner may free it or submit it again from inside done().
 */
#ifndef STEADYFS_SREQ_H
#define STEADYFS_SREQ_H

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "sftp.h"

struct sreq;
struct conn;

/*
 * Completion. err == 0: `r` is the server's reply. Otherwise `r` is NULL
 * and err is
 *   -ETIMEDOUT  the request's deadline passed (a late reply is ignored);
 *   -EAGAIN     nonblocking request and no session is up;
 *   -EHOSTDOWN  cache_ok request and no session is up;
 *   -ECONNRESET the session died after the request may have been sent
 *               (only for requests not marked idempotent; idempotent ones
 *               are resent by the pool until their deadline);
 *   -ESTALE     a request bound to a session generation that is gone;
 *   -EMSGSIZE   the request could not be encoded (too big for the codec)
 *               and was not sent: resending it cannot help;
 *   -ENOMEM     the session could not record it (out of memory); not sent.
 * The last two are not a session loss: the session stays up.
 */
typedef void (*sreq_done_fn)(struct sreq *rq, const struct sftp_reply *r,
			     int err);

/*
 * Optional late encoder, called on the conn thread right before sending:
 * appends the packet with `id` to `out`. Used for requests that carry a
 * per-session remote handle. Returns 0 or a negative BUF_E* code.
 */
typedef int (*sreq_encode_fn)(struct sreq *rq, const struct conn *c,
			      uint32_t id, struct buf *out);

struct sreq {
	struct sreq *next;        /* queue link: owned by whoever queues it */
	struct buf pkt;           /* pre-encoded packet, id patched at send */
	sreq_encode_fn encode;    /* used instead of pkt when set */
	sreq_done_fn done;
	uint64_t deadline;        /* CLOCK_MONOTONIC ns; 0: none */
	uint64_t sent_at;         /* when written to a session */
	uint32_t id;              /* assigned by the conn */
	int served_by;            /* set by the conn that sent it */
	uint64_t served_gen;      /* and that session's generation */
	int conn_idx;             /* -1: any session */
	uint64_t conn_gen;        /* with conn_idx: that session's generation */
	bool idempotent;          /* safe to resend after a session loss */
	bool nonblock;            /* fail with -EAGAIN when no session is up */
	bool cache_ok;            /* fail with -EHOSTDOWN when no session is up:
				   * the owner can answer from its cache */
	uint8_t type;             /* SSH_FXP_* of the request, for metrics */
};

#endif
