/*
 * nodes: the inode table. Maps the kernel's node ids to (parent, name)
 * and back, counts the kernel's lookups, builds remote paths, and keeps
 * each node's last known attributes (served while the link is down) and
 * its end-of-file offset for O_APPEND writes.
 *
 * Ids are never reused within a mount (a 64-bit counter, carried over
 * daemon restarts by the take-over state), so the FUSE
 * generation is always 0. NODE_ROOT (1) always exists and is never
 * forgotten. A node whose name was unlinked stays until forgotten, but is
 * no longer found by name.
 *
 * Thread-safe: one internal mutex, never held while calling out.
 */
#ifndef STEADYFS_NODES_H
#define STEADYFS_NODES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "identity.h"

#define NODE_ROOT 1

struct nodes;

struct keepstate;

/* `base` is the remote directory the mount shows ("" = server's cwd). */
struct nodes *nodes_new(const char *base);
void nodes_free(struct nodes *t);
/*
 * Takes over the nodes a previous daemon recorded in `ks` (the kernel's
 * ids stay valid) and records every change from now on: each node the
 * kernel holds lookups on, its name, lookup count and end offset. Call
 * before the table is used. Ids continue above any id handed out before.
 */
void nodes_adopt(struct nodes *t, struct keepstate *ks);

/* Finds or creates the node (parent, name) and adds one lookup reference.
 * Returns its id, or 0 when parent is unknown or memory ran out. */
uint64_t nodes_ref(struct nodes *t, uint64_t parent, const char *name);
/* Drops n lookup references; frees the node at zero (never the root). */
void nodes_forget(struct nodes *t, uint64_t id, uint64_t n);
/*
 * Pins hold a node (its name, so its path) while a file handle uses it,
 * even after the kernel forgot it: a released handle still drains its
 * writes, and an unlinked one's hidden file is removed after the last
 * release (the kernel may send FORGET before RELEASE is done).
 */
void nodes_pin(struct nodes *t, uint64_t id);
void nodes_unpin(struct nodes *t, uint64_t id);
/* The id of (parent, name) if known, else 0. No reference taken. */
uint64_t nodes_find(struct nodes *t, uint64_t parent, const char *name);

/*
 * Remote path of node `id`, or of `leaf` inside it (leaf NULL: the node's
 * own). Returns 0 and a malloc'd *out, or (with *out NULL) ESTALE when the
 * node is unknown or unlinked, ENAMETOOLONG when the path is longer than
 * SFTP_MAX_PATH bytes (the most a request may carry: deep folders can
 * exceed it although each name is short), or ENOMEM.
 */
int nodes_path_get(struct nodes *t, uint64_t id, const char *leaf, char **out);
/* The same, NULL for any of those errors. */
char *nodes_path(struct nodes *t, uint64_t id);
char *nodes_child_path(struct nodes *t, uint64_t parent, const char *name);

/* Name changes that succeeded on the server. */
void nodes_rename(struct nodes *t, uint64_t oldparent, const char *oldname,
		  uint64_t newparent, const char *newname);
/* The same for two names that may be links of one file (the server did
 * nothing): the nodes swap names, as for a link group. */
void nodes_rename_links(struct nodes *t, uint64_t oldparent, const char *oldname,
			uint64_t newparent, const char *newname);
void nodes_unlink(struct nodes *t, uint64_t parent, const char *name);

/* Attribute cache: the last attributes the server gave, used only when
 * the server cannot be asked (an outage). get returns false when nothing
 * is cached. */
void nodes_set_attr(struct nodes *t, uint64_t id, const struct stat *st);
bool nodes_get_attr(struct nodes *t, uint64_t id, struct stat *st);
/* The other names of the file of `id` (its link group, nodes_twin; at
 * most `max` in out[]); their cached attributes are no longer fresh
 * (nodes_get_fresh_attr): the file changed through `id`. */
size_t nodes_link_peers(struct nodes *t, uint64_t id, uint64_t *out, size_t max);
/* Cached attributes no older than max_age_ns (CLOCK_MONOTONIC). */
bool nodes_get_fresh_attr(struct nodes *t, uint64_t id, uint64_t max_age_ns,
			  struct stat *st);
/*
 * Records attributes a directory listing returned for (parent, name),
 * creating the node with no lookup reference if needed, so a lookup
 * right after the listing (ls -l) is answered without a round trip.
 * Such unreferenced nodes are freed by nodes_prune().
 */
void nodes_prime(struct nodes *t, uint64_t parent, const char *name,
		 const struct stat *st);
/* Frees unreferenced primed nodes older than max_age_ns. */
void nodes_prune(struct nodes *t, uint64_t max_age_ns);

/*
 * Append offsets. nodes_append_reserve returns the offset where `len`
 * bytes appended now must land and advances the end; the end is seeded
 * with nodes_end_seed (from the server's size at open) unless already
 * known. nodes_end_update raises it after a positional write past it.
 */
bool nodes_end_known(struct nodes *t, uint64_t id);
void nodes_end_seed(struct nodes *t, uint64_t id, uint64_t size);
uint64_t nodes_append_reserve(struct nodes *t, uint64_t id, uint64_t len);
/* The same, calling note(arg, offset) before the end moves (under the
 * table's lock), so a record of the offset never lags the end. */
uint64_t nodes_append_reserve_noted(struct nodes *t, uint64_t id, uint64_t len,
				    void (*note)(void *arg, uint64_t off),
				    void *arg);
/* Gives back what an append reserved (at `off`, `len` bytes) and did not
 * write: the end goes back to `off` if nothing moved it since. Returns
 * whether it did. */
bool nodes_append_unreserve(struct nodes *t, uint64_t id, uint64_t off,
			    uint64_t len);
void nodes_end_update(struct nodes *t, uint64_t id, uint64_t end);
/* Sets the end (a truncation): also of the file's other names that
 * know theirs (its link group, nodes_twin). */
void nodes_end_set(struct nodes *t, uint64_t id, uint64_t end);
/* Makes the end at least `end` (known from then on). */
void nodes_end_raise(struct nodes *t, uint64_t id, uint64_t end);
/* The end is unknown again: the next writable open, or the next append,
 * learns it from the server (ops_file.c, fh_write.c). `names`: also that
 * of the file's other names (the end counted bytes lost with a dead
 * daemon); without it, only this name's (its last descriptor is gone). */
void nodes_end_forget(struct nodes *t, uint64_t id, bool names);
/* The end offset if known. */
bool nodes_end_get(struct nodes *t, uint64_t id, uint64_t *end);


/*
 * The identity of each node's file, for the "same file?" rule
 * (identity.h): what the server reported (quiet: no write of ours
 * unacknowledged then), what was sent and acknowledged, sizes and mtimes
 * steadyfs set (or may have set: a truncate whose reply was lost).
 * Recorded in the take-over state. nodes_ident_seed starts
 * it from the cached attributes when nothing is known yet (a read-only
 * open). get returns false when the node is unknown.
 */
void nodes_ident_seen(struct nodes *t, uint64_t id, uint64_t size,
		      bool have_mtime, uint32_t mtime, bool quiet, uint32_t mark);
uint32_t nodes_ident_mark(struct nodes *t, uint64_t id);
void nodes_ident_sent(struct nodes *t, uint64_t id, uint64_t end);
void nodes_ident_acked(struct nodes *t, uint64_t id, uint64_t end);
void nodes_ident_truncated(struct nodes *t, uint64_t id, uint64_t size);
void nodes_ident_maybe_truncated(struct nodes *t, uint64_t id, uint64_t size);
void nodes_ident_touched(struct nodes *t, uint64_t id);
/* ident_change_sent (sent) or ident_change_done. */
void nodes_ident_change(struct nodes *t, uint64_t id, bool sent);
void nodes_ident_seed(struct nodes *t, uint64_t id);
bool nodes_ident_get(struct nodes *t, uint64_t id, struct ident *out);

/*
 * Link groups: nodes that name one file, because steadyfs made the hard
 * link (SFTP v3 has no inode numbers: links made elsewhere are not
 * known). A write or truncate through any of them is the file's, so the
 * group shares one identity: each nodes_ident_* call applies to all of
 * them. nodes_twin puts dst (the new link) in src's group and gives it
 * src's identity; the group number is kept in the take-over state. A
 * rename of one onto another of its group changes nothing on the server
 * (rename(2)); the two nodes swap names, as the kernel now has the
 * source's node at the new name.
 * A member the kernel forgot while it still has its name (the target of
 * such a rename, say) stays while another member is held, up to 4 such
 * names per group: a later lookup of the name finds it again, in the
 * group, with the file's identity (a new node there would keep a
 * baseline a write through the group does not move, and fail its
 * reopen). It goes with its folder's node (the kernel forgot the folder:
 * its path would lead nowhere, and the take-over state would hold a name
 * under a folder it no longer has). Beyond that, or freed, it leaves the
 * rest judged by type only (identity.h): memory stays within 5 nodes per
 * file the kernel holds.
 * Forgotten groups: a member that goes while it has its name leaves that
 * name (its path) and its group number behind, up to 64 names per table
 * (the oldest go first; not in the take-over state). A node made later
 * with that path (a lookup, a listing) joins the group again: its ring
 * and identity when another member is in the table, else it starts the
 * group alone. nodes_rename and nodes_unlink forget the names they
 * replace or remove and carry those under a renamed folder along.
 * nodes_twins fills ids with id and the rest of its group (up to max)
 * and returns how many.
 */
void nodes_twin(struct nodes *t, uint64_t src, uint64_t dst);
size_t nodes_twins(struct nodes *t, uint64_t id, uint64_t *ids, size_t max);
/* Whether a and b are one node or in one link group (one file). */
bool nodes_same_file(struct nodes *t, uint64_t a, uint64_t b);

/*
 * Hidden names (hidden.c): a file unlinked while open was renamed on the
 * server to `hidden` in the same folder; the node takes that name (its
 * path keeps working, recorded in the take-over state), shows nlink 0,
 * and loses it for good with nodes_hidden_gone once the hidden file was
 * removed. nodes_hidden_list fills ids with up to max hidden nodes in
 * folder `parent` (0: anywhere) and returns how many.
 */
/* The hidden names' form: NAME_HIDDEN_PREFIX, name_hidden() (lib/names.h). */
bool nodes_hide(struct nodes *t, uint64_t id, const char *hidden);
/* The hidden file got back a real name (a rename that had moved it
 * aside failed): (parent, name), nlink 1, no longer hidden. */
void nodes_unhide(struct nodes *t, uint64_t id, uint64_t parent, const char *name);
bool nodes_is_hidden(struct nodes *t, uint64_t id);
void nodes_hidden_gone(struct nodes *t, uint64_t id);
size_t nodes_hidden_list(struct nodes *t, uint64_t parent, uint64_t *ids,
			 size_t max);

#endif
