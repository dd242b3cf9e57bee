/*
 * clock: monotonic time for deadlines and wall time for reports.
 */
#ifndef STEADYFS_CLOCK_H
#define STEADYFS_CLOCK_H

#include <stdint.h>

/* Nanoseconds on CLOCK_MONOTONIC: for deadlines and durations. */
uint64_t clock_mono_ns(void);
/* Seconds since the epoch, with fraction: for reports only. */
double clock_wall(void);

#define NS_PER_SEC 1000000000ull
#define NS_PER_MS 1000000ull

static inline uint64_t clock_s_to_ns(double s) { return (uint64_t)(s * 1e9); }

#endif
