/*
 * names: see names.h. The rules are the kernel's for a directory entry:
 * a name with '/' would address another folder, one with NUL would be cut
 * short by every C string function, and "." / ".." would climb out of
 * the folder (out of the mount's remote folder at its root).
 */
#include "names.h"

#include <string.h>

bool name_ok(const char *name, size_t len)
{
	if (len == 0 || len > NAME_BYTES_MAX)
		return false;
	if (memchr(name, '/', len) || memchr(name, '\0', len))
		return false;
	return !(name[0] == '.' && (len == 1 || (len == 2 && name[1] == '.')));
}
