/*
 * jsonutil: see jsonutil.h.
 */
#include "jsonutil.h"

#include <json-c/json.h>
#include <stdio.h>

int jput(struct json_object *o, const char *key, struct json_object *val)
{
	if (!o || !val || json_object_object_add(o, key, val) < 0) {
		json_object_put(val);
		return -1;
	}
	return 0;
}

void jadd(struct json_object *o, const char *key, struct json_object *val, int *bad)
{
	if (json_object_object_add(o, key, val) != 0) {
		json_object_put(val);
		(*bad)++;
	}
}

struct json_object *jsecs(double v)
{
	char buf[64];

	snprintf(buf, sizeof(buf), "%.3f", v);
	return json_object_new_double_s(v, buf);
}

double jget_num(struct json_object *o, const char *key, double dflt)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v))
		return dflt;
	if (!json_object_is_type(v, json_type_double) && !json_object_is_type(v, json_type_int))
		return dflt;
	return json_object_get_double(v);
}
