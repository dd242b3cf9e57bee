/*
 * unit: a tiny test runner for the C unit tests, one header, no library.
 *
 * A test program includes this once, writes `static void test_x(void)`
 * functions that use the CHECK macros, and ends main with
 *
 *     UNIT_RUN(test_x);            (for each test)
 *     return unit_summary("test_x_program_name");
 *
 * A failed CHECK prints "file:line: test: expression" (plus the values for
 * the _EQ forms) to stderr and the test goes on, so one run shows every
 * failure. unit_summary() prints exactly "NAME: N passed, N failed" (counts
 * of checks) and returns the exit status: 0 only when none failed.
 *
 * The counters live in one static context struct per test program: a test
 * program is a single translation unit and single-threaded.
 */
#ifndef STEADYFS_UNIT_H
#define STEADYFS_UNIT_H

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static struct unit_ctx {
	unsigned long passed, failed;
	const char *test;  /* name of the running test, for messages */
} unit_ctx;

#include <stdarg.h>

/* Counts a failure and prints "file:line: test: check failed: ..." */
static inline int unit_fail(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static inline int unit_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	unit_ctx.failed++;
	fprintf(stderr, "%s:%d: %s: check failed: ", file, line,
		unit_ctx.test ? unit_ctx.test : "-");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 0;
}

static inline int unit_check(int ok, const char *expr, const char *file,
			     int line)
{
	if (!ok)
		return unit_fail(file, line, "%s", expr);
	unit_ctx.passed++;
	return 1;
}

/* Compares two integers given as their bits; `sign` says how to print. */
static inline int unit_check_eq(uintmax_t a, uintmax_t b, int sign,
				const char *ea, const char *eb,
				const char *file, int line)
{
	if (a == b) {
		unit_ctx.passed++;
		return 1;
	}
	if (sign)
		return unit_fail(file, line, "%s == %s (%jd != %jd)", ea, eb,
				 (intmax_t)a, (intmax_t)b);
	return unit_fail(file, line, "%s == %s (%ju != %ju)", ea, eb, a, b);
}

static inline void unit_hexdump(const char *label, const void *p, size_t n)
{
	const unsigned char *c = p;
	size_t i;

	fprintf(stderr, "  %s (%zu):", label, n);
	for (i = 0; i < n && i < 64; i++)
		fprintf(stderr, " %02x", c[i]);
	fprintf(stderr, "%s\n", n > 64 ? " ..." : "");
}

static inline int unit_check_mem(const void *a, size_t na, const void *b,
				 size_t nb, const char *ea, const char *eb,
				 const char *file, int line)
{
	if (na == nb && (na == 0 || memcmp(a, b, na) == 0)) {
		unit_ctx.passed++;
		return 1;
	}
	unit_fail(file, line, "bytes of %s == %s", ea, eb);
	unit_hexdump("got", a, na);
	unit_hexdump("want", b, nb);
	return 0;
}

/* Each returns 1 if the check passed, so a test can stop early on it. */
#define CHECK(cond) unit_check(!!(cond), #cond, __FILE__, __LINE__)
#define CHECK_EQ(a, b) unit_check_eq((uintmax_t)(intmax_t)(a), \
	(uintmax_t)(intmax_t)(b), 1, #a, #b, __FILE__, __LINE__)
#define CHECK_EQU(a, b) unit_check_eq((uintmax_t)(a), (uintmax_t)(b), 0, \
	#a, #b, __FILE__, __LINE__)
/* Byte-compares (a, na) with (b, nb); lengths must match too. */
#define CHECK_MEM(a, na, b, nb) \
	unit_check_mem((a), (na), (b), (nb), #a, #b, __FILE__, __LINE__)
#define CHECK_STR(a, b) \
	unit_check(strcmp((a), (b)) == 0, #a " == " #b, __FILE__, __LINE__)

/* Runs one test function and names it when it had failures. */
#define UNIT_RUN(fn) unit_run(#fn, fn)

static inline void unit_run(const char *name, void (*fn)(void))
{
	unsigned long before = unit_ctx.failed;

	unit_ctx.test = name;
	fn();
	if (unit_ctx.failed != before)
		fprintf(stderr, "FAIL %s (%lu failed checks)\n", name,
			unit_ctx.failed - before);
	unit_ctx.test = NULL;
}

/* Prints the summary line; returns main's exit status. */
static inline int unit_summary(const char *name)
{
	printf("%s: %lu passed, %lu failed\n", name, unit_ctx.passed,
	       unit_ctx.failed);
	fflush(stdout);
	return unit_ctx.failed ? 1 : 0;
}

#endif
