/*
 * periodic: see periodic.h.
 */
#include "periodic.h"

#include <time.h>

#include "clock.h"

static void *periodic_main(void *arg)
{
	struct periodic *pt = arg;

	pthread_mutex_lock(&pt->lock);
	while (!pt->stop) {
		uint64_t wait, due;
		struct timespec ts;

		pt->kicked = false;
		pthread_mutex_unlock(&pt->lock);
		wait = pt->fn(pt->arg, clock_mono_ns());
		due = clock_mono_ns() + wait;
		if (due < wait)
			due = UINT64_MAX;          /* "forever" without wrapping */
		ts.tv_sec = (time_t)(due / NS_PER_SEC);
		ts.tv_nsec = (long)(due % NS_PER_SEC);
		pthread_mutex_lock(&pt->lock);
		while (!pt->stop && !pt->kicked && clock_mono_ns() < due)
			pthread_cond_timedwait(&pt->cond, &pt->lock, &ts);
	}
	pthread_mutex_unlock(&pt->lock);
	return NULL;
}

void periodic_init(struct periodic *pt, periodic_fn fn, void *arg)
{
	pthread_condattr_t ca;

	pthread_mutex_init(&pt->lock, NULL);
	/* Monotonic: a wall clock step must not stretch or skip a wait. */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&pt->cond, &ca);
	pthread_condattr_destroy(&ca);
	pt->fn = fn;
	pt->arg = arg;
	pt->stop = pt->kicked = pt->started = false;
}

int periodic_start(struct periodic *pt)
{
	pthread_mutex_lock(&pt->lock);
	pt->stop = false;
	pthread_mutex_unlock(&pt->lock);
	if (pthread_create(&pt->thread, NULL, periodic_main, pt) != 0)
		return -1;
	pt->started = true;
	return 0;
}

void periodic_kick(struct periodic *pt)
{
	pthread_mutex_lock(&pt->lock);
	pt->kicked = true;
	pthread_cond_signal(&pt->cond);
	pthread_mutex_unlock(&pt->lock);
}

void periodic_stop(struct periodic *pt)
{
	pthread_mutex_lock(&pt->lock);
	pt->stop = true;
	pthread_cond_signal(&pt->cond);
	pthread_mutex_unlock(&pt->lock);
	if (pt->started) {
		pthread_join(pt->thread, NULL);
		pt->started = false;
	}
}

void periodic_destroy(struct periodic *pt)
{
	pthread_cond_destroy(&pt->cond);
	pthread_mutex_destroy(&pt->lock);
}
