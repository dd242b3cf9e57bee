/*
 * handles: the kernel's handles for open directories and .control files.
 * Maps the 64-bit fi->fh given to the kernel to this process's object.
 * Keys carry the daemon generation, so a handle opened under a daemon that
 * has since died is recognised as not ours (get returns NULL) instead of
 * being followed as a dangling pointer; the caller then rebuilds the
 * object and files it under the old key with handles_put_at.
 *
 * Thread-safe (one mutex).
 */
#ifndef STEADYFS_HANDLES_H
#define STEADYFS_HANDLES_H

#include <stdint.h>

struct handles;

struct handles *handles_new(void);
/* Frees the table, calling free_fn on each object left (may be NULL). */
void handles_free(struct handles *h, void (*free_fn)(void *));
/* Keys made from now on carry `generation`. */
void handles_set_generation(struct handles *h, uint64_t generation);
/* Files p; returns its key (never 0), or 0 when out of memory. */
uint64_t handles_add(struct handles *h, void *p);
/* Files p under an existing key; returns 0 or -1 (out of memory). */
int handles_put_at(struct handles *h, uint64_t key, void *p);
void *handles_get(struct handles *h, uint64_t key);
/* Removes the key and returns its object (NULL when unknown). */
void *handles_take(struct handles *h, uint64_t key);

#endif
