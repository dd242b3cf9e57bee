/*
 * names: what a single file name may be, wherever one comes from that is
 * not trusted (the take-over state a dead daemon left, a server's reply).
 */
#ifndef STEADYFS_NAMES_H
#define STEADYFS_NAMES_H

#include <stdbool.h>
#include <stddef.h>

/* The longest name, in bytes, as Linux's NAME_MAX. */
#define NAME_BYTES_MAX 255

/*
 * True when the `len` bytes at `name` are one path component a mount can
 * show: 1 to NAME_BYTES_MAX bytes, none of them '/' or NUL, and neither
 * "." nor "..". `name` need not be terminated; nothing past `len` is read.
 */
bool name_ok(const char *name, size_t len);

/*
 * The name an unlinked open file is moved to (fs/vfs/hidden.c makes it):
 * the prefix, the file's node id as 16 lowercase hex digits, then a random
 * suffix of 8. Here because the take-over state's validation (fs/keeper)
 * checks it as well as the file layer.
 */
#define NAME_HIDDEN_PREFIX ".steadyfs_hidden"
#define NAME_HIDDEN_LEN (sizeof(NAME_HIDDEN_PREFIX) - 1 + 24)

/* True for a name of exactly that form (whether or not it is one of a
 * mount's own: hidden_ours). `name` need not be terminated. */
bool name_hidden(const char *name, size_t len);

#endif
