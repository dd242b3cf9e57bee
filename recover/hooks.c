/*
 * hooks: shell-like splitting without a shell, and running a command
 * under a deadline. See hooks.h for the rules and why.
 */
#include "hooks.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Growing argv while splitting. */
struct words {
	char **v;
	size_t n, cap;
};

static int words_push(struct words *w, const char *s, size_t len)
{
	char *copy;

	if (w->n + 2 > w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 8;
		char **v = realloc(w->v, cap * sizeof(*v));

		if (!v)
			return -1;
		w->v = v;
		w->cap = cap;
	}
	copy = strndup(s, len);
	if (!copy)
		return -1;
	w->v[w->n++] = copy;
	w->v[w->n] = NULL;
	return 0;
}

static int is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\n';
}

/* Characters a shell would treat as syntax anywhere in an unquoted word. */
static int is_shell_meta(char c)
{
	return c && strchr("|&;<>()$`*?[", c) != NULL;
}

/*
 * Reads one word starting at line[*pos] (not a blank) into `buf`, which
 * has room for the whole line. Returns its length, or -1 with `err`.
 */
static long read_word(const char *line, size_t *pos, char *buf, char *err, size_t errsz)
{
	size_t i = *pos, len = 0, start = *pos;

	while (line[i] && !is_blank(line[i])) {
		char c = line[i];

		if (c == '\'') {
			const char *end = strchr(line + i + 1, '\'');

			if (!end) {
				snprintf(err, errsz, "unterminated ' at offset %zu", i);
				return -1;
			}
			memcpy(buf + len, line + i + 1, (size_t)(end - line - i - 1));
			len += (size_t)(end - line - i - 1);
			i = (size_t)(end - line) + 1;
		} else if (c == '"') {
			for (i++; line[i] && line[i] != '"'; i++) {
				if (line[i] == '\\' && line[i + 1] && strchr("\"\\$`\n", line[i + 1]))
					i++;
				buf[len++] = line[i];
			}
			if (!line[i]) {
				snprintf(err, errsz, "unterminated \" in the command");
				return -1;
			}
			i++;
		} else if (c == '\\') {
			if (!line[i + 1]) {
				snprintf(err, errsz, "trailing \\ in the command");
				return -1;
			}
			buf[len++] = line[i + 1];
			i += 2;
		} else if (is_shell_meta(c) || (i == start && (c == '#' || c == '~'))) {
			snprintf(err, errsz, "unquoted '%c' is shell syntax (no shell runs "
				 "hooks): quote it, or write sh -c '...'", c);
			return -1;
		} else {
			buf[len++] = c;
			i++;
		}
	}
	*pos = i;
	return (long)len;
}

int hook_split(const char *line, char ***argv_out, char *err, size_t errsz)
{
	struct words w = { 0 };
	size_t pos = 0;
	char *buf = malloc(strlen(line) + 1);

	*argv_out = NULL;
	if (!buf) {
		snprintf(err, errsz, "out of memory");
		return -1;
	}
	for (;;) {
		long len;

		while (is_blank(line[pos]))
			pos++;
		if (!line[pos])
			break;
		len = read_word(line, &pos, buf, err, errsz);
		if (len < 0)
			goto fail;
		if (words_push(&w, buf, (size_t)len) < 0) {
			snprintf(err, errsz, "out of memory");
			goto fail;
		}
	}
	free(buf);
	if (w.n == 0) {
		snprintf(err, errsz, "empty command");
		argv_free(w.v);
		return -1;
	}
	*argv_out = w.v;
	return (int)w.n;
fail:
	free(buf);
	argv_free(w.v);
	return -1;
}

void argv_free(char **argv)
{
	if (!argv)
		return;
	for (char **p = argv; *p; p++)
		free(*p);
	free(argv);
}

/* In the child: replace ourselves with the command. */
static int exec_argv(void *arg)
{
	char **argv = arg;

	execvp(argv[0], argv);
	fprintf(stderr, "cannot run '%s': %s\n", argv[0], strerror(errno));
	return errno == ENOENT ? 127 : 126;
}

int hook_run(const char *cmd, double timeout, struct child_result *res,
	     char *err, size_t errsz)
{
	char **argv;
	char why[256];
	int rc;

	if (hook_split(cmd, &argv, why, sizeof(why)) < 0) {
		snprintf(err, errsz, "command '%s': %s", cmd, why);
		return -1;
	}
	rc = child_run(exec_argv, argv, timeout, res, err, errsz);
	argv_free(argv);
	return rc;
}
