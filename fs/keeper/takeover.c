/*
 * takeover: see takeover.h.
 *
 * Reading: the descriptor is non-blocking and every reader polls it
 * together with an eventfd, so an upgrade can stop all readers at once:
 * a reader never sits in read(2) where the eventfd cannot reach it, and a
 * request is never read and then dropped (libfuse drops what it reads
 * after the session exited, so readers park instead of returning).
 */
#include "takeover.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "clock.h"
#include "keeper.h"
#include "log.h"

/* Protocol 7.40 (Linux 6.9); Debian 12's headers stop at 7.38. */
#ifndef FUSE_NOTIFY_RESEND
#define FUSE_NOTIFY_RESEND 7
#endif
#define UNIQUE_RESEND_BIT (1ull << 63)

/* How long an upgrade waits for the requests already read. */
#define DRAIN_BOUND_NS (60ull * 1000000000ull)

struct takeover {
	int sock;
	int state_fd;
	uint64_t gen;
	enum takeover_mode mode;
	const char *mountpoint;
	struct keepstate *ks;
	int fuse_fd;
	int wake_fd;               /* eventfd: readers stop polling */
	int sig_fd;                /* signalfd: SIGUSR1 and the stop signals */
	int quit_fd;               /* eventfd: the signal thread ends */
	pthread_key_t ep_key;      /* each reader's epoll set (fd + 1) */
	bool ep_key_made;
	pthread_t sig_thread;
	bool sig_thread_started;
	struct fuse_session *se;
	int stop_sig;              /* atomic: the stop signal received, or 0 */
	int draining;              /* atomic: readers park */
	int reading;               /* atomic: readers between poll and record */
	int inflight;              /* atomic: read, not answered */
	pthread_mutex_t park_lock;
	pthread_cond_t park_cond;  /* never signalled: parked for good */
	void (*drain)(void *arg);
	void *drain_arg;
	/* Append offsets the previous daemon gave requests now resent:
	 * written once before serving, read-only after. */
	struct resent_off { uint64_t unique, off; } *offs;
	size_t noffs;
};

/* The request this FUSE worker read and dispatches (takeover.h). */
static __thread struct tk_call tl_call;

static void signal_set(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGUSR1);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGHUP);
}

struct tk_call takeover_call(void)
{
	return tl_call;
}

struct takeover *takeover_from_env(char *err, size_t errsz)
{
	const char *link = getenv(KEEPER_ENV);
	const char *mp = getenv(KEEPER_ENV_MOUNTPOINT);
	struct takeover *t;
	unsigned long long gen;
	char mode;
	sigset_t set;

	if (!link || !mp) {
		snprintf(err, errsz, "not started by a keeper");
		return NULL;
	}
	if (!(t = calloc(1, sizeof(*t)))) {
		snprintf(err, errsz, "out of memory");
		return NULL;
	}
	t->fuse_fd = t->wake_fd = t->sig_fd = t->quit_fd = -1;
	if (sscanf(link, "%d:%d:%llu:%c", &t->sock, &t->state_fd, &gen, &mode) != 4) {
		snprintf(err, errsz, "bad %s '%s'", KEEPER_ENV, link);
		free(t);
		return NULL;
	}
	t->gen = gen;
	t->mode = mode == 'u' ? TK_UPGRADE : mode == 'r' ? TK_RESTART : TK_START;
	t->mountpoint = mp;
	fcntl(t->sock, F_SETFD, FD_CLOEXEC);
	fcntl(t->state_fd, F_SETFD, FD_CLOEXEC);
	if (!(t->ks = ks_map(t->state_fd, err, errsz))) {
		free(t);
		return NULL;
	}
	/* These only ever reach the signal thread's signalfd: a stop signal
	 * must wake every reader, not interrupt one thread at random. */
	signal_set(&set);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	pthread_mutex_init(&t->park_lock, NULL);
	pthread_cond_init(&t->park_cond, NULL);
	return t;
}

void takeover_free(struct takeover *t)
{
	if (!t)
		return;
	if (t->sig_thread_started) {
		uint64_t one = 1;

		if (write(t->quit_fd, &one, sizeof(one)) < 0)
			log_debug("eventfd: %s", strerror(errno));
		pthread_join(t->sig_thread, NULL);
	}
	if (t->quit_fd >= 0)
		close(t->quit_fd);
	free(t->offs);
	if (t->ep_key_made)
		pthread_key_delete(t->ep_key);
	ks_unmap(t->ks);
	if (t->wake_fd >= 0)
		close(t->wake_fd);
	if (t->sig_fd >= 0)
		close(t->sig_fd);
	close(t->sock);
	close(t->state_fd);
	free(t);
}

enum takeover_mode takeover_mode(const struct takeover *t) { return t->mode; }
uint64_t takeover_generation(const struct takeover *t) { return t->gen; }
const char *takeover_mountpoint(const struct takeover *t) { return t->mountpoint; }
struct keepstate *takeover_state(struct takeover *t) { return t->ks; }

int takeover_receive_fd(struct takeover *t, char *err, size_t errsz)
{
	char byte = 'C';
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	struct iovec iov = { &byte, 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1,
			    .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *cm;
	ssize_t n;

	if (send(t->sock, &byte, 1, MSG_NOSIGNAL) != 1) {
		snprintf(err, errsz, "keeper gone: %s", strerror(errno));
		return -1;
	}
	do
		n = recvmsg(t->sock, &m, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	cm = n == 1 ? CMSG_FIRSTHDR(&m) : NULL;
	if (!cm || cm->cmsg_type != SCM_RIGHTS ||
	    cm->cmsg_len != CMSG_LEN(sizeof(int))) {
		snprintf(err, errsz, "the keeper did not hand over the mount");
		return -1;
	}
	memcpy(&t->fuse_fd, CMSG_DATA(cm), sizeof(int));
	return t->fuse_fd;
}

/* ---- reading and answering ---- */

static bool has_reply(uint32_t opcode)
{
	return opcode != FUSE_FORGET && opcode != FUSE_BATCH_FORGET &&
	       opcode != FUSE_INTERRUPT && opcode != FUSE_NOTIFY_REPLY;
}

static void park(struct takeover *t)
{
	pthread_mutex_lock(&t->park_lock);
	for (;;)
		pthread_cond_wait(&t->park_cond, &t->park_lock);
}

/* Notes what was read: INIT for later daemons, ids awaiting answers. */
static void note_request(struct takeover *t, const void *buf, size_t n)
{
	const struct fuse_in_header *in = buf;

	if (n < sizeof(*in))
		return;
	if (in->opcode == FUSE_INIT)
		ks_save_init(t->ks, buf, n);
	tl_call = (struct tk_call){ in->unique, in->unique & UNIQUE_RESEND_BIT };
	if (has_reply(in->opcode)) {
		ks_inflight_add(t->ks, in->unique);
		__atomic_add_fetch(&t->inflight, 1, __ATOMIC_SEQ_CST);
	}
}

static void close_epoll(void *v)
{
	close((int)(intptr_t)v - 1);
}

/*
 * The calling reader's epoll set: the device with EPOLLEXCLUSIVE (a
 * request wakes one of the up to sixteen readers, not all of them) and
 * the wake eventfd (which wakes all). One per thread, closed at its end.
 */
static int reader_epoll(struct takeover *t, int fd)
{
	int ep = (int)(intptr_t)pthread_getspecific(t->ep_key) - 1;
	struct epoll_event ev = { .events = EPOLLIN | EPOLLEXCLUSIVE };

	if (ep >= 0)
		return ep;
	if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
		return -1;
	ev.data.fd = fd;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
		goto fail;
	ev.events = EPOLLIN;
	ev.data.fd = t->wake_fd;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, t->wake_fd, &ev) < 0 ||
	    pthread_setspecific(t->ep_key, (void *)(intptr_t)(ep + 1)) != 0)
		goto fail;
	return ep;
fail:
	close(ep);
	return -1;
}

/* Waits until the device or the wake eventfd is readable. -1 + EINTR:
 * a signal, which libfuse takes as "look at the exit flag". */
static int wait_readable(struct takeover *t, int fd)
{
	struct epoll_event ev[2];
	struct pollfd p[2] = { { fd, POLLIN, 0 }, { t->wake_fd, POLLIN, 0 } };
	int ep = reader_epoll(t, fd);

	if (ep >= 0)
		return epoll_wait(ep, ev, 2, -1) < 0 ? -1 : 0;
	return poll(p, 2, -1) < 0 ? -1 : 0;
}

/* The session's userdata begins with the takeover's pointer
 * (takeover_attach). */
static struct takeover *tk_of(void *userdata)
{
	return *(struct takeover **)userdata;
}

static ssize_t tk_read(int fd, void *buf, size_t len, void *userdata)
{
	struct takeover *t = tk_of(userdata);

	tl_call = (struct tk_call){ 0 };
	for (;;) {
		ssize_t n;

		__atomic_add_fetch(&t->reading, 1, __ATOMIC_SEQ_CST);
		if (__atomic_load_n(&t->draining, __ATOMIC_SEQ_CST)) {
			__atomic_sub_fetch(&t->reading, 1, __ATOMIC_SEQ_CST);
			park(t);
		}
		if (fuse_session_exited(t->se)) {
			/* A stop: libfuse ends its loop on this. */
			__atomic_sub_fetch(&t->reading, 1, __ATOMIC_SEQ_CST);
			errno = ENODEV;
			return -1;
		}
		/* Non-blocking: a request already queued costs one call. */
		n = read(fd, buf, len);
		if (n > 0)
			note_request(t, buf, (size_t)n);
		__atomic_sub_fetch(&t->reading, 1, __ATOMIC_SEQ_CST);
		if (n >= 0 || (errno != EAGAIN && errno != ENOENT && errno != EINTR))
			return n;
		/* EINTR goes back to libfuse: a stop signal ends its loop. */
		if (errno != ENOENT && wait_readable(t, fd) < 0)
			return -1;
	}
}

static ssize_t tk_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	struct takeover *t = tk_of(userdata);
	ssize_t n = writev(fd, iov, count);
	int e = errno;

	/* Forgotten only once written: a death in between leaves an id the
	 * next daemon answers again, which the kernel ignores (ENOENT). */
	if (count > 0 && iov[0].iov_len >= sizeof(struct fuse_out_header)) {
		const struct fuse_out_header *out = iov[0].iov_base;

		if (out->unique && ks_inflight_del(t->ks, out->unique))
			__atomic_sub_fetch(&t->inflight, 1, __ATOMIC_SEQ_CST);
	}
	errno = e;
	return n;
}

int takeover_attach(struct takeover *t, struct fuse_session *se, int fd)
{
	static const struct fuse_custom_io io = { .read = tk_read,
						  .writev = tk_writev };
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -1;
	if ((t->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0 ||
	    pthread_key_create(&t->ep_key, close_epoll) != 0)
		return -1;
	t->ep_key_made = true;
	t->se = se;
	return fuse_session_custom_io(se, &io, fd) == 0 ? 0 : -1;
}

/* ---- continuing a previous daemon ---- */

static void fail_inflight(struct takeover *t, const uint64_t *ids, size_t n)
{
	size_t total = 0;

	for (size_t i = 0; i < n; i++) {
		struct fuse_out_header out = { sizeof(out), -EIO, ids[i] };

		/* ENOENT: answered after all, or not waiting any more. */
		if (write(t->fuse_fd, &out, sizeof(out)) == (ssize_t)sizeof(out))
			total++;
	}
	if (total)
		log_warn("%zu calls the previous daemon had read failed with EIO (this kernel cannot resend them)",
			 total);
}

/* Keeps the append offsets of the requests about to be resent. */
static void keep_offsets(struct takeover *t, const uint64_t *ids,
			 const uint64_t *offs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (offs[i])
			t->noffs++;
	if (!t->noffs || !(t->offs = calloc(t->noffs, sizeof(*t->offs)))) {
		t->noffs = 0;
		return;
	}
	t->noffs = 0;
	for (size_t i = 0; i < n; i++)
		if (offs[i])
			t->offs[t->noffs++] = (struct resent_off){
				ids[i] & ~UNIQUE_RESEND_BIT, offs[i] - 1 };
}

static void resend_inflight(struct takeover *t)
{
	struct fuse_out_header out = { sizeof(out), FUSE_NOTIFY_RESEND, 0 };
	size_t cap = 4096, n;
	uint64_t *ids = calloc(cap, sizeof(*ids)), *offs = calloc(cap, sizeof(*offs));

	/* Every id at once (the table holds at most `cap`), before the
	 * kernel resends them and reading records them anew. */
	n = ids && offs ? ks_inflight_take(t->ks, ids, offs, cap) : 0;
	if (!getenv("STEADYFS_NO_RESEND") &&
	    write(t->fuse_fd, &out, sizeof(out)) == (ssize_t)sizeof(out)) {
		keep_offsets(t, ids, offs, n);
		log_debug("asked the kernel to resend the %zu calls in flight", n);
	} else {
		fail_inflight(t, ids, n);
	}
	free(ids);
	free(offs);
}

bool takeover_append_offset(const struct takeover *t, struct tk_call c,
			    uint64_t *off)
{
	uint64_t u = c.unique & ~UNIQUE_RESEND_BIT;

	if (!t || !c.resent)
		return false;
	for (size_t i = 0; i < t->noffs; i++)
		if (t->offs[i].unique == u) {
			*off = t->offs[i].off;
			return true;
		}
	return false;
}

void takeover_note_append(struct takeover *t, struct tk_call c, uint64_t off)
{
	if (t && c.unique)
		ks_inflight_offset(t->ks, c.unique, off);
}

int takeover_resume(struct takeover *t, struct fuse_session *se)
{
	uint64_t init[64];
	struct fuse_buf fb = { 0 };
	size_t n = ks_init(t->ks, init, sizeof(init));

	if (!n)
		return 0;
	fb.mem = init;
	fb.size = n;
	fuse_session_process_buf(se, &fb);
	if (fuse_session_exited(se))
		return -1;
	resend_inflight(t);
	return 0;
}

/* ---- upgrade ---- */

static void wake_readers(struct takeover *t)
{
	uint64_t one = 1;

	if (write(t->wake_fd, &one, sizeof(one)) < 0)
		log_debug("eventfd: %s", strerror(errno));
}

/* Waits for SIGUSR1 (returns true) or the end (false); a stop signal
 * ends the session loop and keeps waiting: a second one changes nothing. */
static bool wait_handover(struct takeover *t)
{
	struct signalfd_siginfo si;

	for (;;) {
		struct pollfd p[2] = { { t->sig_fd, POLLIN, 0 }, { t->quit_fd, POLLIN, 0 } };

		if (poll(p, 2, -1) < 0)
			continue;
		if (p[1].revents)
			return false;
		if (read(t->sig_fd, &si, sizeof(si)) != (ssize_t)sizeof(si))
			continue;
		if (si.ssi_signo == SIGUSR1)
			return true;
		if (!__atomic_load_n(&t->stop_sig, __ATOMIC_SEQ_CST)) {
			__atomic_store_n(&t->stop_sig, (int)si.ssi_signo, __ATOMIC_SEQ_CST);
			fuse_session_exit(t->se);
			wake_readers(t);
		}
	}
}

static void *handover_main(void *arg)
{
	struct takeover *t = arg;
	uint64_t deadline;

	if (!wait_handover(t))
		return NULL;
	log_info("handing over to a new daemon: answering what was read, then writing back");
	__atomic_store_n(&t->draining, 1, __ATOMIC_SEQ_CST);
	wake_readers(t);
	deadline = clock_mono_ns() + DRAIN_BOUND_NS;
	while ((__atomic_load_n(&t->reading, __ATOMIC_SEQ_CST) ||
		__atomic_load_n(&t->inflight, __ATOMIC_SEQ_CST)) &&
	       clock_mono_ns() < deadline) {
		struct timespec ts = { 0, 5000000 };

		nanosleep(&ts, NULL);
	}
	if (t->drain)
		t->drain(t->drain_arg);
	log_info("handover: done, exiting");
	_exit(KEEPER_EXIT_HANDOVER);
	return NULL;
}

int takeover_start_handover(struct takeover *t, void (*drain)(void *arg),
			    void *arg)
{
	sigset_t set;

	t->drain = drain;
	t->drain_arg = arg;
	signal_set(&set);
	if ((t->sig_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK)) < 0 ||
	    (t->quit_fd = eventfd(0, EFD_CLOEXEC)) < 0)
		return -1;
	if (pthread_create(&t->sig_thread, NULL, handover_main, t) != 0)
		return -1;
	t->sig_thread_started = true;
	return 0;
}

int takeover_stop_signal(const struct takeover *t)
{
	return __atomic_load_n(&t->stop_sig, __ATOMIC_SEQ_CST);
}

void takeover_serving(struct takeover *t)
{
	char byte = 'R';

	ks_set_generation(t->ks, t->gen);
	if (send(t->sock, &byte, 1, MSG_NOSIGNAL) != 1)
		log_warn("cannot tell the keeper the daemon serves: %s", strerror(errno));
}
