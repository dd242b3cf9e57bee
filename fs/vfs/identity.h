/*
 * identity: the one "same file?" rule. SFTP v3 attributes carry no file
 * id (only type, size, owner, mode and times in whole seconds), so
 * whether a path still names the file a handle had can only be judged
 * from what steadyfs saw and did:
 *
 *   - it is a regular file;
 *   - its size lies in [lo, hi]: lo is the end the server has confirmed
 *     (a size it reported, raised by each acknowledged write), hi the
 *     highest end steadyfs sent (a write whose reply was lost may or may
 *     not have landed);
 *   - when nothing was written (or truncated) since steadyfs last saw the
 *     file quiet, its mtime equals the one it saw then.
 *
 * A file shared with names steadyfs no longer follows (a hard link it
 * made whose node was forgotten, nodes.h) may have been written through
 * them: only its type is judged.
 *
 * What it cannot see: another client replacing the file by one of the
 * same type and size within the same second (or at the same mtime), or
 * rewriting bytes in place without changing size or mtime (see
 * docs/retries.md). Every reopen uses it (fh_io.c); a later spool
 * uses it before replaying journaled writes.
 *
 * Plain data, no locks: the owner (the node table) serialises access.
 * A zeroed struct ident (IDENT_INIT) is "nothing seen yet", which the
 * rule never passes.
 */
#ifndef STEADYFS_IDENTITY_H
#define STEADYFS_IDENTITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sftp_attrs;

struct ident {
	bool known;        /* a baseline was seen */
	bool written;      /* written or truncated since the mtime was seen */
	bool have_mtime;
	bool shared;       /* names steadyfs no longer follows may write it */
	uint32_t mtime;    /* seconds, as SFTP v3 carries it */
	uint64_t lo;       /* the end the server confirmed */
	uint64_t hi;       /* the highest end steadyfs sent */
	uint32_t changing; /* size or mtime changes sent, not answered */
	uint32_t seq;      /* counts every event below but ident_seen */
	/* (changing and seq are not in the take-over state: a daemon's own) */
};

#define IDENT_INIT { 0 }

/*
 * The server reported `size` (and the mtime when have_mtime) for the
 * file, in reply to a request sent when ident_mark gave `mark`. `quiet`:
 * no write of steadyfs to it was unacknowledged then, so the report is
 * the whole truth (the bounds collapse onto it and the mtime becomes the
 * one to compare); otherwise it only narrows the bounds. A report that
 * may be older than a write, truncate or utimens (one was sent, answered
 * or is still out since the mark) only widens them.
 */
void ident_seen(struct ident *id, uint64_t size, bool have_mtime,
		uint32_t mtime, bool quiet, uint32_t mark);
/* Taken when a request whose reply goes to ident_seen is sent. */
uint32_t ident_mark(const struct ident *id);
/* A truncate, O_TRUNC open or utimens was sent / its reply (any) came. */
void ident_change_sent(struct ident *id);
void ident_change_done(struct ident *id);
/* A write ending at `end` was sent / acknowledged (an acknowledgement
 * raises lo at most to hi: a truncate since may have cut it). */
void ident_sent(struct ident *id, uint64_t end);
void ident_acked(struct ident *id, uint64_t end);
/* steadyfs set the size to `size` (truncate, O_TRUNC). */
void ident_truncated(struct ident *id, uint64_t size);
/* A truncate to `size` whose outcome is unknown: sent and not answered
 * yet (a reopen on another session may see it landed), its reply lost,
 * or refused. The file may have either size, so the bounds widen to
 * take both; ident_truncated collapses them when the server confirms. */
void ident_maybe_truncated(struct ident *id, uint64_t size);
/* steadyfs sets the mtime (utimens, from the moment it is sent): it is
 * no longer compared. */
void ident_touched(struct ident *id);

/*
 * `id` as a report the server made after `then` (id read earlier, before
 * the request was sent) must be judged: the server may have answered
 * before changes steadyfs learnt of since, on another session (an
 * acknowledgement of a write that landed after the report; a truncate
 * done before or after it), so the bounds take both moments.
 */
void ident_since(struct ident *id, const struct ident *then);

/*
 * The rule: NULL when `a` (attributes of the file a path names now) may
 * be the file `id` describes, else the reason it is not (a static
 * string, for the log). Attributes without type, size or (when needed)
 * mtime fail: the rule must be sure.
 */
const char *ident_check(const struct ident *id, const struct sftp_attrs *a);

#endif
