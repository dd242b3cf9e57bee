/*
 * strbuf: a growable NUL-terminated text buffer, in the manner of git's
 * strbuf, for building reports, JSON-free text files and metrics.
 *
 * Invariants: after any call, `s` is either NULL (STRBUF_INIT, nothing
 * written yet) or points to `len` bytes followed by a NUL, with
 * len < cap. strbuf_str() never returns NULL. A zeroed strbuf
 * (STRBUF_INIT) is empty and always safe to release.
 *
 * Allocation failure is sticky: the buffer keeps what it had, sets
 * `oom`, and later appends do nothing; check strbuf_ok() once at the end
 * instead of after every append.
 */
#ifndef STEADYFS_STRBUF_H
#define STEADYFS_STRBUF_H

#include <stddef.h>

struct strbuf {
	char *s;
	size_t len;
	size_t cap;
	int oom;  /* an append failed to allocate; contents are truncated */
};
#define STRBUF_INIT {0}

/* Frees contents; leaves `sb` as STRBUF_INIT. */
void strbuf_release(struct strbuf *sb);
/* Empties the buffer, keeps the allocation, clears `oom`. */
void strbuf_reset(struct strbuf *sb);
void strbuf_add(struct strbuf *sb, const void *p, size_t n);
void strbuf_adds(struct strbuf *sb, const char *s);
void strbuf_addc(struct strbuf *sb, char c);
void strbuf_addf(struct strbuf *sb, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* The text so far; "" for an empty buffer. Valid until the next change. */
const char *strbuf_str(const struct strbuf *sb);
/* 1 if every append succeeded. */
static inline int strbuf_ok(const struct strbuf *sb) { return !sb->oom; }

#endif
