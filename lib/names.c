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

bool name_hidden(const char *name, size_t len)
{
	size_t pl = sizeof(NAME_HIDDEN_PREFIX) - 1;

	/* Only the exact form fs/vfs/hidden.c makes: ".steadyfs_hidden_notes" is
	 * a user's name like any other. */
	if (len != NAME_HIDDEN_LEN || memcmp(name, NAME_HIDDEN_PREFIX, pl))
		return false;
	for (size_t i = pl; i < len; i++)
		if (!strchr("0123456789abcdef", name[i]) || !name[i])
			return false;
	return true;
}
