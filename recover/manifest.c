/*
 * manifest: fstab-format list of the mounts under ROOT. See manifest.h.
 */
#include "manifest.h"

#include <errno.h>
#include <limits.h>
#include <libmount.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mounttab.h"

/* Where the parser callback leaves the first bad line. */
struct parse_ctx {
	int bad_line;
};

static int on_parse_error(struct libmnt_table *tb, const char *filename, int line)
{
	struct parse_ctx *pc = mnt_table_get_userdata(tb);

	(void)filename;
	if (pc && !pc->bad_line)
		pc->bad_line = line;
	return -1;  /* negative: stop parsing, the manifest is rejected */
}

static char *dup_or_empty(const char *s)
{
	return strdup(s ? s : "");
}

/* Adds one libmount entry to `m` after checking its target. */
static int add_entry(struct manifest *m, struct libmnt_fs *fs, int line,
		     const char *path, const char *root, char *err, size_t errsz)
{
	const char *target = mnt_fs_get_target(fs), *opts = mnt_fs_get_options(fs);
	struct manifest_entry *e;
	char norm[PATH_MAX];

	if (!target || target[0] != '/') {
		snprintf(err, errsz, "manifest '%s': entry %d: target '%s' is not an "
			 "absolute path", path, line, target ? target : "");
		return -1;
	}
	if (mt_path_normalize(target, "/", norm, sizeof(norm)) < 0) {
		snprintf(err, errsz, "manifest '%s': entry %d: target '%s' is too long",
			 path, line, target);
		return -1;
	}
	if (!mt_path_within(norm, root)) {
		snprintf(err, errsz, "manifest '%s': entry %d: target '%s' is outside "
			 "root '%s'", path, line, norm, root);
		return -1;
	}
	if (manifest_find(m, norm)) {
		snprintf(err, errsz, "manifest '%s': entry %d: target '%s' is listed twice",
			 path, line, norm);
		return -1;
	}
	e = &m->v[m->n];
	memset(e, 0, sizeof(*e));
	e->source = dup_or_empty(mnt_fs_get_source(fs));
	e->target = strdup(norm);
	e->fstype = dup_or_empty(mnt_fs_get_fstype(fs));
	e->options = dup_or_empty(opts);
	m->n++;
	if (!e->source || !e->target || !e->fstype || !e->options) {
		snprintf(err, errsz, "out of memory");
		return -1;
	}
	e->line = line;
	e->depth = mt_path_depth(norm);
	e->bind = opts && (mnt_optstr_get_option(opts, "bind", NULL, NULL) == 0 ||
			   mnt_optstr_get_option(opts, "rbind", NULL, NULL) == 0);
	/* A steadyfs mount is never mounted by recovery: its unit restarts
	 * it, and its keeper must be started on the mountpoint itself (it
	 * names its mirror and finds its device by that path), which a
	 * mount staged elsewhere and moved would break. */
	e->noauto = (opts && mnt_optstr_get_option(opts, "noauto", NULL, NULL) == 0) ||
		    strcmp(e->fstype, MT_FSTYPE_STEADYFS) == 0;
	return 0;
}

static int load_table(struct manifest *m, struct libmnt_table *tb, const char *path,
		      const char *root, char *err, size_t errsz)
{
	struct libmnt_iter *it = mnt_new_iter(MNT_ITER_FORWARD);
	struct libmnt_fs *fs;
	int line = 0, rc = 0;

	if (!it) {
		snprintf(err, errsz, "out of memory");
		return -1;
	}
	m->v = calloc((size_t)mnt_table_get_nents(tb) + 1, sizeof(*m->v));
	if (!m->v) {
		snprintf(err, errsz, "out of memory");
		rc = -1;
	}
	while (rc == 0 && mnt_table_next_fs(tb, it, &fs) == 0)
		rc = add_entry(m, fs, ++line, path, root, err, errsz);
	mnt_free_iter(it);
	return rc;
}

int manifest_load(struct manifest *m, const char *path, const char *root,
		  char *err, size_t errsz)
{
	struct parse_ctx pc = { 0 };
	struct libmnt_table *tb = mnt_new_table();
	int rc;

	if (!tb) {
		snprintf(err, errsz, "out of memory");
		return -1;
	}
	/* libmount's own error for a missing file is a bare EINVAL. */
	if (access(path, R_OK) < 0) {
		snprintf(err, errsz, "manifest '%s': %s", path, strerror(errno));
		mnt_unref_table(tb);
		return -1;
	}
	mnt_table_set_userdata(tb, &pc);
	mnt_table_set_parser_errcb(tb, on_parse_error);
	rc = mnt_table_parse_fstab(tb, path);
	if (rc != 0 || pc.bad_line) {
		if (pc.bad_line)
			snprintf(err, errsz, "manifest '%s': line %d is not a valid fstab "
				 "entry", path, pc.bad_line);
		else
			snprintf(err, errsz, "manifest '%s': %s", path,
				 strerror(rc < 0 ? -rc : EINVAL));
		rc = -1;
	} else {
		rc = load_table(m, tb, path, root, err, errsz);
	}
	mnt_unref_table(tb);
	if (rc < 0)
		manifest_release(m);
	return rc;
}

void manifest_release(struct manifest *m)
{
	for (size_t i = 0; i < m->n; i++) {
		free(m->v[i].source);
		free(m->v[i].target);
		free(m->v[i].fstype);
		free(m->v[i].options);
	}
	free(m->v);
	m->v = NULL;
	m->n = 0;
}

const struct manifest_entry *manifest_find(const struct manifest *m, const char *target)
{
	for (size_t i = 0; i < m->n; i++)
		if (strcmp(m->v[i].target, target) == 0)
			return &m->v[i];
	return NULL;
}
