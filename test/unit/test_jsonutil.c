/*
 * test_jsonutil: lib/jsonutil.c (the two rules for a NULL field value,
 * numbers of seconds, reading a number) and lib/paths.c's mkdir_p (the
 * one mkdir -p: parents made, an existing folder fine, a file in the way
 * an error).
 */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jsonutil.h"
#include "paths.h"
#include "unit.h"

static const char *text(struct json_object *o)
{
	return json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
}

static void test_put_and_add(void)
{
	struct json_object *o = json_object_new_object();
	int bad = 0;

	CHECK_EQ(jput(o, "a", json_object_new_int(1)), 0);
	CHECK_EQ(jput(o, "gone", NULL), -1);          /* a failed allocation: left out */
	CHECK_EQ(jput(NULL, "x", json_object_new_int(2)), -1);   /* freed, not leaked */
	jadd(o, "n", NULL, &bad);                      /* JSON null */
	jadd(o, "s", json_object_new_string("v"), &bad);
	CHECK_EQ(bad, 0);
	CHECK_STR(text(o), "{\"a\":1,\"n\":null,\"s\":\"v\"}");
	json_object_put(o);
}

static void test_secs_and_get(void)
{
	struct json_object *o = json_object_new_object();

	jput(o, "t", jsecs(1712345678.123456));
	jput(o, "d", jsecs(0.5));
	jput(o, "i", json_object_new_int(7));
	jput(o, "s", json_object_new_string("7"));
	CHECK_STR(text(o), "{\"t\":1712345678.123,\"d\":0.500,\"i\":7,\"s\":\"7\"}");
	CHECK(jget_num(o, "d", -1) == 0.5);
	CHECK(jget_num(o, "i", -1) == 7);
	CHECK(jget_num(o, "s", -1) == -1);   /* not a number */
	CHECK(jget_num(o, "none", -2) == -2);
	json_object_put(o);
}

static void test_mkdir_p(void)
{
	char base[] = "/tmp/test_jsonutil.XXXXXX", p[128], f[128];
	struct stat st;

	if (!CHECK(mkdtemp(base) != NULL))
		return;
	snprintf(p, sizeof(p), "%s/a/b/c", base);
	CHECK_EQ(mkdir_p(p, 0755), 0);
	CHECK(stat(p, &st) == 0 && S_ISDIR(st.st_mode));
	CHECK_EQ(mkdir_p(p, 0755), 0);              /* exists: fine */
	snprintf(f, sizeof(f), "%s/a/file", base);
	close(creat(f, 0600));
	errno = 0;
	CHECK_EQ(mkdir_p(f, 0755), -1);             /* a file in the way */
	CHECK_EQ(errno, ENOTDIR);
	snprintf(p, sizeof(p), "%s/a/file/below", base);
	CHECK_EQ(mkdir_p(p, 0755), -1);
	unlink(f);
	snprintf(p, sizeof(p), "rm -rf '%s'", base);
	CHECK_EQ(system(p), 0);
}

int main(void)
{
	UNIT_RUN(test_put_and_add);
	UNIT_RUN(test_secs_and_get);
	UNIT_RUN(test_mkdir_p);
	return unit_summary("test_jsonutil");
}
