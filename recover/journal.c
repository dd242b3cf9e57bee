/*
 * journal: JSON-lines appends. See journal.h.
 */
#include "journal.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int journal_append(const char *path, struct json_object *rec, char *err, size_t errsz)
{
	const char *text = json_object_to_json_string_ext(rec, JSON_C_TO_STRING_PLAIN |
							  JSON_C_TO_STRING_NOSLASHESCAPE);
	size_t len;
	char *line;
	int fd, rc = -1;

	if (!text) {
		snprintf(err, errsz, "out of memory building a journal record");
		return -1;
	}
	len = strlen(text);
	line = malloc(len + 2);
	if (!line) {
		snprintf(err, errsz, "out of memory building a journal record");
		return -1;
	}
	memcpy(line, text, len);
	line[len++] = '\n';
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		snprintf(err, errsz, "cannot open journal '%s': %s", path, strerror(errno));
	} else if (write(fd, line, len) != (ssize_t)len) {
		snprintf(err, errsz, "cannot append to journal '%s': %s", path,
			 errno ? strerror(errno) : "short write");
	} else if (fsync(fd) < 0) {
		snprintf(err, errsz, "cannot fsync journal '%s': %s", path, strerror(errno));
	} else {
		rc = 0;
	}
	if (fd >= 0 && close(fd) < 0 && rc == 0) {
		snprintf(err, errsz, "cannot close journal '%s': %s", path, strerror(errno));
		rc = -1;
	}
	free(line);
	return rc;
}
