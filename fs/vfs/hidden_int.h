/*
 * hidden internals shared by hidden.c and hidden_evac.c (the public
 * functions of unlinked open files are in vfs_int.h). Layered, each part
 * calling only those before it: hidden_remove.c (a hidden file's
 * removal after its last handle), hidden.c (the names, the take-over
 * records of moves, unlink and rename over an open file, the moves a
 * dead daemon left), hidden_evac.c (folders holding hidden files, and
 * the undo of a failed rename).
 */
#ifndef STEADYFS_HIDDEN_INT_H
#define STEADYFS_HIDDEN_INT_H

#include <stdint.h>

struct op;

/* Records, before its RENAME goes out, that node id may move from folder
 * `from` to (parent, leaf), as op's take-over record (op->pend); replaces
 * op's previous record. */
void hidden_intend(struct op *op, uint64_t id, uint64_t from, uint64_t parent,
		   const char *leaf);
/* The outcome of op's recorded move is unknown (no answer within the
 * call's time, or this daemon is stopping): it is settled as a dead
 * daemon's is, whenever a session is up (or by the next daemon). */
void hidden_settle_later(struct op *op, uint64_t id, uint64_t from,
			 uint64_t parent, const char *leaf);

#endif
