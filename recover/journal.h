/*
 * journal: one JSON object per line appended to <state-dir>/journal.jsonl
 * for every pass that acted or wanted to act. Each record is written with
 * one write(2) on an O_APPEND descriptor and fsynced, so a reader never
 * sees half a line from us and a crash loses at most the record in flight.
 */
#ifndef STEADYFS_RECOVER_JOURNAL_H
#define STEADYFS_RECOVER_JOURNAL_H

#include <stddef.h>

struct json_object;

/* Appends `rec` as one line to `path`. Returns 0, or -1 with `err`. */
int journal_append(const char *path, struct json_object *rec, char *err, size_t errsz);

#endif
