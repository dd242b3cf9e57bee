/*
 * periodic: one background thread that calls a function again and again,
 * waiting in between as long as the function asks, woken early by a kick,
 * ended by a stop. The daemon's periodic loops run on it: the pool's
 * timer (held requests past their deadline), the control mirror (every
 * 2 s, sooner after an event). The function runs with no lock of this
 * module held, so it may take its owner's locks, and an owner may kick
 * while holding them.
 *
 * The owner embeds a struct periodic and never touches its fields; its
 * life follows the owner's: periodic_init when the owner is made,
 * periodic_start and periodic_stop around the time it serves,
 * periodic_destroy when it is freed. A kick is valid at any time between
 * init and destroy (before start or after stop it changes nothing).
 */
#ifndef STEADYFS_PERIODIC_H
#define STEADYFS_PERIODIC_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* Does one round of work at monotonic time `now_ns` and returns how many
 * nanoseconds to wait before the next (0: at once, after a stop check). */
typedef uint64_t (*periodic_fn)(void *arg, uint64_t now_ns);

struct periodic {
	pthread_mutex_t lock;
	pthread_cond_t cond;       /* CLOCK_MONOTONIC */
	bool stop, kicked;         /* under lock */
	bool started;              /* owner's thread only */
	pthread_t thread;
	periodic_fn fn;
	void *arg;
};

/* Prepares `pt` to call fn(arg); nothing runs yet. */
void periodic_init(struct periodic *pt, periodic_fn fn, void *arg);

/* Starts the thread; its first call of fn is at once. 0, or -1 when the
 * thread cannot be created (then nothing runs, periodic_stop is safe). */
int periodic_start(struct periodic *pt);

/* The next call of fn comes as soon as the one running (if any) ends.
 * Any thread, any lock held. */
void periodic_kick(struct periodic *pt);

/* Wakes the thread and waits for it to end (a call of fn in progress
 * finishes first). Safe when never started, and twice. Not from fn. */
void periodic_stop(struct periodic *pt);

/* After periodic_stop (or without a start). */
void periodic_destroy(struct periodic *pt);

#endif
