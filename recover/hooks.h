/*
 * hooks: the operator's commands (--guard, --pre, --post) run without a
 * shell.
 *
 * A command line is split into argv the way a POSIX shell splits a simple
 * command, and nothing more: words separated by blanks, '...' taken
 * literally, "..." with \" \\ \$ \` escapes, a backslash outside quotes
 * taking the next character literally. There is no expansion of any kind
 * (variables, ~, globs, command substitution) and no redirection or
 * pipeline: an unquoted shell metacharacter ( | & ; < > ( ) $ ` * ? [ ,
 * or # and ~ starting a word) is refused with an error instead of being
 * passed on as a literal, so a line written for a shell never runs with a
 * different meaning. An operator who wants a shell writes `sh -c '...'`.
 *
 * Why not wordexp(3) with WRDE_NOCMD: it still expands $VARIABLES, ~ and
 * globs against the environment and working directory of a root process
 * at the moment the hook runs, which makes the argv depend on things the
 * operator did not write; and its errors do not say which character was
 * wrong. Splitting is a small pure function with exact rules instead.
 */
#ifndef STEADYFS_RECOVER_HOOKS_H
#define STEADYFS_RECOVER_HOOKS_H

#include <stddef.h>

#include "child.h"

/*
 * Splits `line` into a NULL-terminated argv in *argv_out (free with
 * argv_free()). Returns the word count (> 0), or -1 with a one-line reason
 * in `err` (unterminated quote, shell syntax, empty command, no memory).
 */
int hook_split(const char *line, char ***argv_out, char *err, size_t errsz);
void argv_free(char **argv);

/*
 * Runs `cmd` (split as above, looked up on PATH with execvp) as a child
 * with `timeout` seconds; see child_run(). A command that cannot be
 * executed exits 127 (not found) or 126 (other), with the reason in its
 * output. Returns 0 when it ran (see `res`), or -1 with `err`.
 */
int hook_run(const char *cmd, double timeout, struct child_result *res,
	     char *err, size_t errsz);

#endif
