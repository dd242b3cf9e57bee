/*
 * test_periodic: lib/periodic.c, the thread the daemon's periodic loops
 * run on: the first call comes at once, the wait the function asks for is
 * kept (no call during a long one), a kick cuts it short, a stop ends even
 * the longest wait, and stopping twice or without a start is safe. Waits
 * are polled against generous deadlines: nothing here measures speed.
 */
#include "unit.h"

#include <time.h>

#include "clock.h"
#include "periodic.h"

#define HOUR_NS (3600ull * NS_PER_SEC)
#define BOUND_NS (10ull * NS_PER_SEC)

struct counter {
	pthread_mutex_t lock;
	unsigned calls;
	uint64_t wait;          /* what the function asks for */
};

static uint64_t count(void *arg, uint64_t now)
{
	struct counter *c = arg;
	uint64_t w;

	(void)now;
	pthread_mutex_lock(&c->lock);
	c->calls++;
	w = c->wait;
	pthread_mutex_unlock(&c->lock);
	return w;
}

static unsigned calls_of(struct counter *c)
{
	unsigned n;

	pthread_mutex_lock(&c->lock);
	n = c->calls;
	pthread_mutex_unlock(&c->lock);
	return n;
}

/* Polls until at least `want` calls were made, or BOUND_NS passed. */
static bool wait_calls(struct counter *c, unsigned want)
{
	uint64_t end = clock_mono_ns() + BOUND_NS;

	while (calls_of(c) < want) {
		if (clock_mono_ns() > end)
			return false;
		nanosleep(&(struct timespec){ .tv_nsec = 1000 * 1000 }, NULL);
	}
	return true;
}

static void test_first_call_at_once_then_waits(void)
{
	struct counter c = { PTHREAD_MUTEX_INITIALIZER, 0, HOUR_NS };
	struct periodic pt;

	periodic_init(&pt, count, &c);
	CHECK_EQ(periodic_start(&pt), 0);
	CHECK(wait_calls(&c, 1));
	/* An hour's wait: still one call a while later. */
	nanosleep(&(struct timespec){ .tv_nsec = 50 * 1000 * 1000 }, NULL);
	CHECK_EQU(calls_of(&c), 1);
	periodic_stop(&pt);
	periodic_destroy(&pt);
}

static void test_kick_cuts_the_wait(void)
{
	struct counter c = { PTHREAD_MUTEX_INITIALIZER, 0, HOUR_NS };
	struct periodic pt;

	periodic_init(&pt, count, &c);
	CHECK_EQ(periodic_start(&pt), 0);
	CHECK(wait_calls(&c, 1));
	for (unsigned k = 2; k <= 4; k++) {
		periodic_kick(&pt);
		CHECK(wait_calls(&c, k));
	}
	periodic_stop(&pt);
	periodic_destroy(&pt);
}

/* A short wait: the calls keep coming on their own. */
static void test_short_wait_repeats(void)
{
	struct counter c = { PTHREAD_MUTEX_INITIALIZER, 0, NS_PER_MS };
	struct periodic pt;

	periodic_init(&pt, count, &c);
	CHECK_EQ(periodic_start(&pt), 0);
	CHECK(wait_calls(&c, 5));
	periodic_stop(&pt);
	periodic_destroy(&pt);
}

/* A stop ends an hour's wait (and UINT64_MAX's), and no call follows. */
static void test_stop_ends_any_wait(void)
{
	static const uint64_t waits[] = { HOUR_NS, UINT64_MAX, 0 };

	for (size_t i = 0; i < sizeof(waits) / sizeof(waits[0]); i++) {
		struct counter c = { PTHREAD_MUTEX_INITIALIZER, 0, waits[i] };
		struct periodic pt;
		unsigned n;

		periodic_init(&pt, count, &c);
		CHECK_EQ(periodic_start(&pt), 0);
		CHECK(wait_calls(&c, 1));
		periodic_stop(&pt);
		n = calls_of(&c);
		periodic_kick(&pt);             /* after stop: changes nothing */
		nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000 * 1000 }, NULL);
		CHECK_EQU(calls_of(&c), n);
		periodic_stop(&pt);             /* twice: safe */
		periodic_destroy(&pt);
	}
}

static void test_stop_without_start(void)
{
	struct counter c = { PTHREAD_MUTEX_INITIALIZER, 0, 0 };
	struct periodic pt;

	periodic_init(&pt, count, &c);
	periodic_kick(&pt);
	periodic_stop(&pt);
	periodic_destroy(&pt);
	CHECK_EQU(calls_of(&c), 0);
}

int main(void)
{
	UNIT_RUN(test_first_call_at_once_then_waits);
	UNIT_RUN(test_kick_cuts_the_wait);
	UNIT_RUN(test_short_wait_repeats);
	UNIT_RUN(test_stop_ends_any_wait);
	UNIT_RUN(test_stop_without_start);
	return unit_summary("test_periodic");
}
