/*
 * replay: runs a libFuzzer target's LLVMFuzzerTestOneInput over files, so
 * a fuzz corpus (and any crash inputs added to it) is replayed by `make
 * check` with the normal compiler, no libFuzzer needed.
 *
 *     fuzz-replay-sftp PATH...
 *
 * Each PATH is a file or a directory (walked recursively, in sorted order
 * so runs are repeatable). Exit status: 0 when every input ran (a broken
 * contract aborts inside the target), 1 when an input could not be read or
 * no input was found at all (a missing corpus is a failure, not a pass),
 * 2 on bad usage.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Inputs above this are not fuzz inputs; refuse rather than swap. */
#define REPLAY_MAX_INPUT ((size_t)16 * 1024 * 1024)

struct replay {
	unsigned long inputs;  /* files run */
	unsigned long errors;  /* files that could not be read */
};

static void replay_error(struct replay *rp, const char *path, const char *why)
{
	fprintf(stderr, "replay: cannot read '%s': %s\n", path, why);
	rp->errors++;
}

static void replay_file(struct replay *rp, const char *path, size_t size)
{
	uint8_t *data;
	FILE *f;

	if (size > REPLAY_MAX_INPUT) {
		replay_error(rp, path, "file too large");
		return;
	}
	/* An exact-size heap copy, so ASan sees any read past the input. */
	data = malloc(size ? size : 1);
	if (!data) {
		replay_error(rp, path, "out of memory");
		return;
	}
	f = fopen(path, "rb");
	if (!f) {
		replay_error(rp, path, strerror(errno));
	} else {
		if (fread(data, 1, size, f) != size || ferror(f))
			replay_error(rp, path, "short read");
		else {
			LLVMFuzzerTestOneInput(data, size);
			rp->inputs++;
		}
		fclose(f);
	}
	free(data);
}

static void replay_path(struct replay *rp, const char *path);

static void replay_dir(struct replay *rp, const char *path)
{
	struct dirent **names;
	char *child;
	int n, i;

	n = scandir(path, &names, NULL, alphasort);
	if (n < 0) {
		replay_error(rp, path, strerror(errno));
		return;
	}
	for (i = 0; i < n; i++) {
		if (names[i]->d_name[0] != '.' &&
		    asprintf(&child, "%s/%s", path, names[i]->d_name) >= 0) {
			replay_path(rp, child);
			free(child);
		}
		free(names[i]);
	}
	free(names);
}

static void replay_path(struct replay *rp, const char *path)
{
	struct stat st;

	if (stat(path, &st) != 0)
		replay_error(rp, path, strerror(errno));
	else if (S_ISDIR(st.st_mode))
		replay_dir(rp, path);
	else if (S_ISREG(st.st_mode))
		replay_file(rp, path, (size_t)st.st_size);
}

int main(int argc, char **argv)
{
	struct replay rp = { 0, 0 };
	int i;

	if (argc < 2) {
		fprintf(stderr, "usage: %s PATH...\n", argv[0]);
		return 2;
	}
	for (i = 1; i < argc; i++)
		replay_path(&rp, argv[i]);
	printf("replay: %lu inputs, %lu unreadable\n", rp.inputs, rp.errors);
	if (rp.inputs == 0)
		fprintf(stderr, "replay: no inputs found\n");
	return rp.errors || rp.inputs == 0 ? 1 : 0;
}
