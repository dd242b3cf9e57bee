/*
 * identity: the "same file?" rule and the bookkeeping it reads. See
 * identity.h.
 */
#include "identity.h"

#include <sys/stat.h>

#include "sftp.h"

void ident_seen(struct ident *id, uint64_t size, bool have_mtime,
		uint32_t mtime, bool quiet, uint32_t mark)
{
	if (id->changing || id->seq != mark) {
		/* Maybe from before a change: no bound may narrow (a file
		 * not known yet: any size up to this one). */
		if (!id->known) {
			id->lo = id->hi = 0;
			id->known = true;
		}
		if (size > id->hi)
			id->hi = size;
		id->written = true;
		return;
	}
	if (quiet || !id->known) {
		id->lo = size;
		id->hi = quiet || size > id->hi ? size : id->hi;
		id->written = !quiet;
		id->have_mtime = have_mtime;
		id->mtime = mtime;
		id->known = true;
		return;
	}
	/* Writes in flight only ever grow the file (positional writes). */
	if (size > id->lo)
		id->lo = size;
	if (size > id->hi)
		id->hi = size;
}

uint32_t ident_mark(const struct ident *id)
{
	return id->seq;
}

void ident_change_sent(struct ident *id)
{
	id->seq++;
	id->changing++;
}

void ident_change_done(struct ident *id)
{
	id->seq++;
	if (id->changing)
		id->changing--;
}

void ident_sent(struct ident *id, uint64_t end)
{
	id->seq++;
	if (end > id->hi)
		id->hi = end;
	id->written = true;
}

void ident_acked(struct ident *id, uint64_t end)
{
	id->seq++;
	/* Never past hi: an acknowledgement arriving after a truncate for a
	 * write sent before it says nothing about the size now. */
	if (end > id->hi)
		end = id->hi;
	if (end > id->lo)
		id->lo = end;
}

void ident_truncated(struct ident *id, uint64_t size)
{
	id->seq++;
	id->lo = id->hi = size;
	id->written = true;
	id->known = true;
}

void ident_maybe_truncated(struct ident *id, uint64_t size)
{
	id->seq++;
	if (!id->known)
		return;  /* nothing to widen: the rule fails an unknown file */
	if (size < id->lo)
		id->lo = size;
	if (size > id->hi)
		id->hi = size;
	id->written = true;
}

void ident_touched(struct ident *id)
{
	id->seq++;
	id->written = true;
}

void ident_since(struct ident *id, const struct ident *then)
{
	if (!then->known || !id->known || then->seq == id->seq)
		return;
	if (then->lo < id->lo)
		id->lo = then->lo;
	if (then->hi > id->hi)
		id->hi = then->hi;
	id->written = id->written || then->written;
	id->shared = id->shared || then->shared;
}

const char *ident_check(const struct ident *id, const struct sftp_attrs *a)
{
	if (!id->known)
		return "nothing known about the file it had";
	if (!(a->flags & SSH_FILEXFER_ATTR_PERMISSIONS) ||
	    !(a->flags & SSH_FILEXFER_ATTR_SIZE))
		return "the server gave no type or size";
	if ((a->perm & S_IFMT) != S_IFREG)
		return "not a regular file";
	if (id->shared)
		return NULL;
	if (a->size < id->lo || a->size > id->hi)
		return "size outside what was written";
	if (id->written)
		return NULL;
	if (!id->have_mtime || !(a->flags & SSH_FILEXFER_ATTR_ACMODTIME))
		return "no modification time to compare";
	if (a->mtime != id->mtime)
		return "modified by someone else";
	return NULL;
}
