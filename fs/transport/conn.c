/*
 * conn: one libssh session + sftp channel, driven by its own I/O thread.
 *
 * The thread's life is a loop: connect (sshlink.c: blocking, bounded by
 * connect_timeout, with no lock held), then serve until the session dies,
 * then back off and connect again. Serving is a poll loop over the
 * session's socket and an eventfd that other threads write to after
 * queueing a request. Outgoing packets go to an output buffer that is
 * written to the channel as the SSH window allows (ssh_channel_write may
 * take less than asked); incoming bytes are framed and dispatched by id.
 *
 * Liveness: libssh's keepalive cannot see a frozen peer, so an idle
 * session sends a cheap SFTP request (LSTAT ".") as a ping, and a session
 * with requests outstanding that receives nothing for `dead_after` is
 * declared dead. Its requests go back to the pool (the requeue hook).
 */
#include "conn.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <libssh/libssh.h>

#include "clock.h"
#include "log.h"

#define TABLE_SIZE 1024
/* Encoded requests the output buffer holds beyond what the channel has
 * taken: the rest stay queued, unencoded, so a write's bytes are not
 * copied into a second buffer long before its turn on the wire (4 MiB
 * per busy session when every queued WRITE was encoded at once). One
 * window adjust of OpenSSH's 2 MiB channel window is 1 MiB. */
#define OUT_AHEAD (1024 * 1024)
/* Bytes handed to libssh per write (see flush_out). */
#define LIBSSH_AHEAD (256 * 1024)
#define AUTH_REFUSED_BACKOFF 60.0

/* One request in flight. rq is NULL once its deadline passed: the late
 * reply is then dropped, not mistaken for a protocol error. */
struct slot {
	uint32_t id;
	uint8_t type;
	bool ping;
	struct sreq *rq;
	uint64_t sent;
	struct slot *next;
};

struct conn {
	struct conn_hooks hooks;     /* set at creation, read-only after */
	int idx;
	const struct steadyfs_opts *o;
	struct sshlink_transport tr;
	pthread_t thread;
	bool thread_started;
	int wakefd;
	/* Set (atomically) while the I/O thread sleeps in poll(): only then
	 * does conn_submit() write the eventfd. A busy thread picks the
	 * queue up on its next turn, and each wake costs two context
	 * switches (a third of the daemon's time on small writes, by perf). */
	bool polling;

	pthread_mutex_t lock;        /* protects the fields down to `server` */
	enum conn_state state;
	uint64_t gen;
	double since;
	struct sreq *q_head, *q_tail;  /* submitted, not yet sent */
	unsigned nqueued;              /* requests on that queue */
	bool stop;
	uint64_t reconnects, attempts;
	double last_rtt;
	/* Shortest round trip of this period and of the one before (a
	 * period is RTT_PERIOD): the link's own delay, without the
	 * server's queue, for sizing windows; forgets a changed route. */
	uint64_t rtt_min[2];
	uint64_t rtt_period_start;
	unsigned nslots;
	struct conn_server server;

	/* Conn thread only (and conn_connect_now before the thread starts). */
	struct sshlink link;
	struct slot *table[TABLE_SIZE];
	uint32_t next_id;
	uint64_t last_rx;
	uint64_t busy_since;         /* when outstanding went from 0 to 1 */
	uint64_t last_ping;
	double backoff;
	bool auth_refused;
	bool ever_up;
	bool limits_logged;          /* clamped limits@ said once */
};

static void set_state(struct conn *c, enum conn_state s)
{
	pthread_mutex_lock(&c->lock);
	c->state = s;
	c->since = clock_wall();
	if (s == CONN_UP)
		c->gen++;
	pthread_mutex_unlock(&c->lock);
}


struct conn *conn_new(const struct conn_hooks *h, int idx,
		      const struct steadyfs_opts *o)
{
	struct conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->hooks = *h;
	c->idx = idx;
	c->o = o;
	c->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (c->wakefd < 0) {
		free(c);
		return NULL;
	}
	pthread_mutex_init(&c->lock, NULL);
	c->since = clock_wall();
	c->backoff = o->backoff_min;
	c->next_id = 1;
	sshlink_transport_from_env(&c->tr, idx == 0);
	return c;
}

/* ---- connecting --------------------------------------------------------- */

/* One attempt (sshlink.h), counted; no lock held while it runs. */
static int connect_once(struct conn *c, char *err, size_t errsz)
{
	struct sshlink_params p = { c->o, &c->tr, c->idx, !c->ever_up,
				    &c->limits_logged };
	struct conn_server sv;
	int rc;

	pthread_mutex_lock(&c->lock);
	c->attempts++;
	pthread_mutex_unlock(&c->lock);
	if ((rc = sshlink_open(&c->link, &p, &sv, err, errsz)) < 0)
		return rc;
	pthread_mutex_lock(&c->lock);
	c->server = sv;
	pthread_mutex_unlock(&c->lock);
	c->last_rx = c->last_ping = clock_mono_ns();
	c->busy_since = 0;
	return 0;
}


int conn_connect_now(struct conn *c, char *err, size_t errsz)
{
	int rc = connect_once(c, err, errsz);

	if (rc == 0) {
		c->ever_up = true;
		set_state(c, CONN_UP);
	}
	return rc;
}

/* ---- the in-flight table ------------------------------------------------ */

static struct slot **slot_find(struct conn *c, uint32_t id)
{
	struct slot **pp = &c->table[id % TABLE_SIZE];

	while (*pp && (*pp)->id != id)
		pp = &(*pp)->next;
	return pp;
}

static int slot_add(struct conn *c, uint32_t id, uint8_t type, struct sreq *rq, bool ping)
{
	struct slot *s = calloc(1, sizeof(*s));
	struct slot **head = &c->table[id % TABLE_SIZE];

	if (!s)
		return -1;
	s->id = id;
	s->type = type;
	s->rq = rq;
	s->ping = ping;
	s->sent = clock_mono_ns();
	s->next = *head;
	*head = s;
	pthread_mutex_lock(&c->lock);
	if (c->nslots++ == 0)
		c->busy_since = s->sent;
	pthread_mutex_unlock(&c->lock);
	return 0;
}

static void slot_remove(struct conn *c, struct slot **pp)
{
	struct slot *s = *pp;

	*pp = s->next;
	free(s);
	pthread_mutex_lock(&c->lock);
	c->nslots--;
	pthread_mutex_unlock(&c->lock);
}

/* ---- sending ------------------------------------------------------------ */

static uint32_t next_id(struct conn *c)
{
	uint32_t id = c->next_id++;

	if (c->next_id == 0)
		c->next_id = 1;
	return id;
}

/* Encodes one request into the output buffer and records it in flight. */
static void send_one(struct conn *c, struct sreq *rq)
{
	uint32_t id = next_id(c);
	size_t start = c->link.out.len;
	int rc;

	if (rq->encode) {
		rc = rq->encode(rq, c, id, &c->link.out);
	} else {
		rc = buf_put(&c->link.out, rq->pkt.d + rq->pkt.off, buf_avail(&rq->pkt));
		if (rc == 0)
			rc = buf_poke_u32(&c->link.out, start + 5, id);
	}
	/* A request that cannot be encoded (or recorded) fails on its own:
	 * it never reached the server, and resending cannot help. */
	if (rc < 0) {
		c->link.out.len = start;
		rq->done(rq, NULL, rc == BUF_E_NOMEM ? -ENOMEM : -EMSGSIZE);
		return;
	}
	if (slot_add(c, id, rq->type, rq, false) < 0) {
		c->link.out.len = start;
		rq->done(rq, NULL, -ENOMEM);
		return;
	}
	rq->id = id;
	rq->sent_at = clock_mono_ns();
	rq->served_by = c->idx;
	rq->served_gen = c->gen;  /* written only by this thread */
}

static void send_ping(struct conn *c)
{
	uint32_t id = next_id(c);

	if (sftp_enc_path(&c->link.out, SSH_FXP_LSTAT, id, ".") == 0)
		slot_add(c, id, SSH_FXP_LSTAT, NULL, true);
	c->last_ping = clock_mono_ns();
}

/* Takes the whole submission queue. */
static struct sreq *take_queue(struct conn *c)
{
	struct sreq *q;

	pthread_mutex_lock(&c->lock);
	q = c->q_head;
	c->q_head = c->q_tail = NULL;
	c->nqueued = 0;
	pthread_mutex_unlock(&c->lock);
	return q;
}

/* Puts the unsent part of a taken queue back in front of what was
 * submitted since, in order. */
static void requeue_front(struct conn *c, struct sreq *q)
{
	struct sreq *tail = q;
	unsigned n = 1;

	while (tail->next) {
		tail = tail->next;
		n++;
	}
	pthread_mutex_lock(&c->lock);
	tail->next = c->q_head;
	c->q_head = q;
	if (!c->q_tail)
		c->q_tail = tail;
	c->nqueued += n;
	pthread_mutex_unlock(&c->lock);
}

/* Whether the output buffer has room for more requests. */
static bool out_room(const struct conn *c)
{
	return buf_avail(&c->link.out) < OUT_AHEAD;
}

/* Moves submitted requests into the output buffer, while it has room. */
static void drain_queue(struct conn *c, bool woken)
{
	struct sreq *q;
	uint64_t wake;

	if (woken && read(c->wakefd, &wake, sizeof(wake)) < 0 && errno != EAGAIN)
		log_debug("session %d: eventfd: %s", c->idx, strerror(errno));
	if (!out_room(c))
		return;
	q = take_queue(c);
	while (q && out_room(c)) {
		struct sreq *next = q->next;

		q->next = NULL;
		send_one(c, q);
		q = next;
	}
	if (q)
		requeue_front(c, q);
}

/* Writes as much of the output buffer as the channel window takes, in
 * pieces of at most LIBSSH_AHEAD, and none while libssh still holds
 * bytes the socket did not take: libssh would copy (and encrypt) the
 * whole window into its own buffer at once, 2 MiB per busy session,
 * where the kernel's socket buffer holds what is in flight anyway. */
static int flush_out(struct conn *c)
{
	while (buf_avail(&c->link.out)) {
		uint32_t win = ssh_channel_window_size(c->link.ch);
		size_t n = buf_avail(&c->link.out);
		int w;

		if (win == 0 || (ssh_get_poll_flags(c->link.ssh) & SSH_WRITE_PENDING))
			break;
		if (n > win)
			n = win;
		if (n > LIBSSH_AHEAD)
			n = LIBSSH_AHEAD;
		w = ssh_channel_write(c->link.ch, buf_ptr(&c->link.out), (uint32_t)n);
		if (w == SSH_ERROR)
			return -1;
		if (w <= 0)  /* 0 or SSH_AGAIN: the socket or window is full */
			break;
		buf_consume(&c->link.out, (size_t)w);
	}
	if (!buf_avail(&c->link.out))
		buf_reset(&c->link.out);
	else if (c->link.out.off > 1024 * 1024)
		buf_compact(&c->link.out);
	return 0;
}

/* ---- receiving ---------------------------------------------------------- */

#define RTT_PERIOD (10ull * 1000 * 1000 * 1000)

/* Lock held. */
static void note_rtt(struct conn *c, uint64_t now, uint64_t sent)
{
	uint64_t rtt = now - sent;

	c->last_rtt = (double)rtt / 1e9;
	if (now - c->rtt_period_start > RTT_PERIOD) {
		c->rtt_min[1] = c->rtt_min[0];
		c->rtt_min[0] = 0;
		c->rtt_period_start = now;
	}
	if (!c->rtt_min[0] || rtt < c->rtt_min[0])
		c->rtt_min[0] = rtt;
}


static void complete(struct conn *c, const uint8_t *pkt, size_t len)
{
	struct sftp_reply r;
	struct slot **pp;
	struct slot *s;
	struct sreq *rq;
	int rc = sftp_dec_reply(pkt, len, &r);

	if (rc < 0) {
		log_warn("session %d: malformed reply from server (%s)", c->idx,
			 buf_strerror(rc));
		return;
	}
	pp = slot_find(c, r.id);
	if (!*pp) {
		log_warn("session %d: reply with unknown id %u", c->idx, r.id);
		return;
	}
	s = *pp;
	rq = s->rq;
	pthread_mutex_lock(&c->lock);
	note_rtt(c, clock_mono_ns(), s->sent);
	pthread_mutex_unlock(&c->lock);
	slot_remove(c, pp);
	if (rq)
		rq->done(rq, &r, 0);
}

static int read_in(struct conn *c)
{
	for (;;) {
		size_t plen;
		int n, fr;

		while ((fr = sftp_frame(buf_ptr(&c->link.in), buf_avail(&c->link.in),
					SFTP_MAX_PACKET, &plen)) == 0) {
			complete(c, buf_ptr(&c->link.in) + 4, plen - 4);
			buf_consume(&c->link.in, plen);
		}
		if (fr != BUF_E_SHORT) {
			log_warn("session %d: bad packet framing from server (%s)",
				 c->idx, buf_strerror(fr));
			return -1;
		}
		buf_compact(&c->link.in);
		if (buf_reserve(&c->link.in, c->tr.read_chunk) < 0)
			return -1;
		n = ssh_channel_read_timeout(c->link.ch, c->link.in.d + c->link.in.len,
					     (uint32_t)c->tr.read_chunk, 0, 0);
		if (n == SSH_AGAIN || n == 0) {
			if (ssh_channel_is_eof(c->link.ch) || !ssh_is_connected(c->link.ssh))
				return -1;
			/* Nothing left over: let the storage go, so a burst's
			 * pages are not pinned here once the mount is quiet
			 * (vfs.c trims freed memory then); the next reserve
			 * gets it back from the arena without a fault. */
			if (!buf_avail(&c->link.in))
				buf_release(&c->link.in);
			return 0;
		}
		if (n < 0)
			return -1;
		c->link.in.len += (size_t)n;
		c->last_rx = clock_mono_ns();
	}
}

/* ---- deadlines and liveness --------------------------------------------- */

/* Fails requests whose deadline passed; their slots stay as tombstones. */
static void expire(struct conn *c, uint64_t now)
{
	for (int i = 0; i < TABLE_SIZE; i++) {
		for (struct slot *s = c->table[i]; s; s = s->next) {
			struct sreq *rq = s->rq;

			if (!rq || !rq->deadline || rq->deadline > now)
				continue;
			s->rq = NULL;
			rq->done(rq, NULL, -ETIMEDOUT);
		}
	}
}

static bool is_dead(struct conn *c, uint64_t now)
{
	uint64_t limit = clock_s_to_ns(steadyfs_opts_dead_after(c->o));
	uint64_t ref;
	unsigned n;

	pthread_mutex_lock(&c->lock);
	n = c->nslots;
	ref = c->busy_since;
	pthread_mutex_unlock(&c->lock);
	if (n == 0 && !buf_avail(&c->link.out))
		return false;
	if (c->last_rx > ref)
		ref = c->last_rx;
	return now - ref > limit;
}

static void maybe_ping(struct conn *c, uint64_t now)
{
	double interval = steadyfs_opts_dead_after(c->o) /
		(c->o->alive_count_max > 0 ? c->o->alive_count_max : 1);
	unsigned n;

	pthread_mutex_lock(&c->lock);
	n = c->nslots;
	pthread_mutex_unlock(&c->lock);
	if (n == 0 && now - c->last_rx > clock_s_to_ns(interval) &&
	    now - c->last_ping > clock_s_to_ns(interval))
		send_ping(c);
}

/* ---- session death ------------------------------------------------------ */

/* Hands every request back (the requeue hook) and empties the table. */
static void fail_all(struct conn *c)
{
	struct sreq *q;

	for (int i = 0; i < TABLE_SIZE; i++) {
		while (c->table[i]) {
			struct sreq *rq = c->table[i]->rq;

			slot_remove(c, &c->table[i]);
			if (rq)
				c->hooks.requeue(c->hooks.arg, rq);
		}
	}
	q = take_queue(c);
	while (q) {
		struct sreq *next = q->next;

		q->next = NULL;
		c->hooks.requeue(c->hooks.arg, q);
		q = next;
	}
}

static bool stopping(struct conn *c)
{
	bool s;

	pthread_mutex_lock(&c->lock);
	s = c->stop;
	pthread_mutex_unlock(&c->lock);
	return s;
}

static bool queued(struct conn *c)
{
	bool q;

	pthread_mutex_lock(&c->lock);
	q = c->q_head != NULL;
	pthread_mutex_unlock(&c->lock);
	return q;
}

/* Serves one live session until it dies or the conn is stopped. */
static void serve(struct conn *c)
{
	while (!stopping(c)) {
		struct pollfd pfd[2];
		uint64_t now;
		int rc;
		int flags = ssh_get_poll_flags(c->link.ssh);

		pfd[0].fd = ssh_get_fd(c->link.ssh);
		/* POLLOUT only while libssh has bytes for the socket: data
		 * held back by a full channel window waits for the peer's
		 * window adjust, which arrives as input (asking for POLLOUT
		 * then would spin). */
		pfd[0].events = POLLIN;
		if (flags & SSH_WRITE_PENDING)
			pfd[0].events |= POLLOUT;
		pfd[1].fd = c->wakefd;
		pfd[1].events = POLLIN;
		pfd[1].revents = 0;
		__atomic_store_n(&c->polling, true, __ATOMIC_SEQ_CST);
		/* Queued requests with room for them: no sleep. Without room
		 * they wait for the window adjust (input) that drains it. */
		rc = poll(pfd, 2, queued(c) && out_room(c) ? 0 : 100);
		__atomic_store_n(&c->polling, false, __ATOMIC_SEQ_CST);
		if (rc < 0 && errno != EINTR) {
			log_warn("session %d: poll: %s", c->idx, strerror(errno));
			break;
		}
		if (pfd[0].revents & (POLLERR | POLLHUP | POLLNVAL)) {
			log_info("session %d: connection closed", c->idx);
			break;
		}
		drain_queue(c, rc > 0 && (pfd[1].revents & POLLIN));
		if (flush_out(c) < 0 || read_in(c) < 0) {
			log_info("session %d: connection lost: %s", c->idx,
				 c->link.ssh ? ssh_get_error(c->link.ssh) : "");
			break;
		}
		if (flush_out(c) < 0)
			break;
		now = clock_mono_ns();
		expire(c, now);
		if (is_dead(c, now)) {
			log_warn("session %d: no answer for %.1f s, declaring it dead",
				 c->idx, steadyfs_opts_dead_after(c->o));
			break;
		}
		maybe_ping(c, now);
	}
}

/* Sleeps up to `s` seconds, returning early when stopped. */
static void nap(struct conn *c, double s)
{
	struct pollfd pfd = { .fd = c->wakefd, .events = POLLIN };
	uint64_t end = clock_mono_ns() + clock_s_to_ns(s);

	while (!stopping(c)) {
		uint64_t now = clock_mono_ns();
		uint64_t wake;

		if (now >= end)
			return;
		if (poll(&pfd, 1, (int)((end - now) / NS_PER_MS) + 1) > 0 &&
		    read(c->wakefd, &wake, sizeof(wake)) < 0)
			continue;
	}
}

static double jitter(double s)
{
	/* 50..100% of s: sessions that died together do not reconnect in
	 * lockstep. rand() is fine for spreading, not for secrets. */
	return s * (0.5 + 0.5 * ((double)rand() / RAND_MAX));
}

static void *conn_thread(void *arg)
{
	struct conn *c = arg;
	char err[512];

	while (!stopping(c)) {
		if (c->link.ssh) {
			c->hooks.up(c->hooks.arg, c->idx);
			serve(c);
			sshlink_close(&c->link);
			set_state(c, CONN_DOWN);
			fail_all(c);
			c->hooks.down(c->hooks.arg, c->idx, "connection lost");
			c->backoff = c->o->backoff_min;
			continue;
		}
		nap(c, jitter(c->backoff));
		if (stopping(c))
			break;
		set_state(c, CONN_CONNECTING);
		int rc = connect_once(c, err, sizeof(err));
		if (rc == 0) {
			pthread_mutex_lock(&c->lock);
			if (c->ever_up)
				c->reconnects++;
			pthread_mutex_unlock(&c->lock);
			c->ever_up = true;
			set_state(c, CONN_UP);
			c->hooks.event(c->hooks.arg, c->idx, "reconnect", "ok");
			continue;
		}
		set_state(c, CONN_DOWN);
		c->hooks.event(c->hooks.arg, c->idx, "reconnect_failed", err);
		log_info("session %d: reconnect failed: %s", c->idx, err);
		c->backoff *= 2;
		if (c->backoff > c->o->backoff_max)
			c->backoff = c->o->backoff_max;
		/* A provider may lock an account hammered with refused logins. */
		if (rc == -CONN_FAIL_AUTH && c->backoff < AUTH_REFUSED_BACKOFF)
			c->backoff = AUTH_REFUSED_BACKOFF;
	}
	if (c->link.ssh)
		sshlink_close(&c->link);
	fail_all(c);
	return NULL;
}

int conn_start(struct conn *c)
{
	if (pthread_create(&c->thread, NULL, conn_thread, c) != 0)
		return -1;
	c->thread_started = true;
	return 0;
}

static void wake(struct conn *c)
{
	uint64_t one = 1;

	if (write(c->wakefd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_debug("session %d: eventfd write: %s", c->idx, strerror(errno));
}

void conn_stop(struct conn *c)
{
	pthread_mutex_lock(&c->lock);
	c->stop = true;
	pthread_mutex_unlock(&c->lock);
	wake(c);
	if (c->thread_started) {
		pthread_join(c->thread, NULL);
		c->thread_started = false;
	} else if (c->link.ssh) {
		sshlink_close(&c->link);
	}
}

void conn_free(struct conn *c)
{
	if (!c)
		return;
	conn_stop(c);
	sshlink_release(&c->link);
	close(c->wakefd);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

int conn_submit(struct conn *c, struct sreq *rq)
{
	pthread_mutex_lock(&c->lock);
	if (c->state != CONN_UP || c->stop ||
	    (rq->conn_idx >= 0 && rq->conn_gen != c->gen)) {
		pthread_mutex_unlock(&c->lock);
		return -ENOTCONN;
	}
	rq->next = NULL;
	if (c->q_tail)
		c->q_tail->next = rq;
	else
		c->q_head = rq;
	c->q_tail = rq;
	c->nqueued++;
	pthread_mutex_unlock(&c->lock);
	if (__atomic_load_n(&c->polling, __ATOMIC_SEQ_CST))
		wake(c);
	return 0;
}

void conn_get_info(struct conn *c, struct conn_info *out)
{
	pthread_mutex_lock(&c->lock);
	out->state = c->state;
	out->since = c->since;
	out->inflight = c->nslots;
	out->last_rtt = c->last_rtt;
	out->reconnects = c->reconnects;
	out->attempts = c->attempts;
	out->gen = c->gen;
	pthread_mutex_unlock(&c->lock);
}

void conn_get_server(struct conn *c, struct conn_server *out)
{
	pthread_mutex_lock(&c->lock);
	*out = c->server;
	pthread_mutex_unlock(&c->lock);
}

uint64_t conn_up_gen(struct conn *c)
{
	uint64_t g;

	pthread_mutex_lock(&c->lock);
	g = c->state == CONN_UP ? c->gen : 0;
	pthread_mutex_unlock(&c->lock);
	return g;
}

uint64_t conn_min_rtt_ns(struct conn *c)
{
	uint64_t a, b;

	pthread_mutex_lock(&c->lock);
	a = c->rtt_min[0];
	b = c->rtt_min[1];
	pthread_mutex_unlock(&c->lock);
	return a && (!b || a < b) ? a : b;
}

unsigned conn_inflight(struct conn *c)
{
	unsigned n;

	pthread_mutex_lock(&c->lock);
	n = c->nslots + c->nqueued;
	pthread_mutex_unlock(&c->lock);
	return n;
}
