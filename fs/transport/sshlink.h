/*
 * sshlink: opening one SSH session with an `sftp` subsystem channel, up to
 * the point where requests can flow: TCP connect, the host key checked
 * against known_hosts (every time), public-key login, the subsystem, the
 * SFTP INIT/VERSION exchange, limits@openssh.com when offered, and on a
 * first connect the check that the remote folder exists. Blocking, on the
 * calling thread, bounded by connect_timeout; no lock is taken and nothing
 * outside the link is touched, so the caller (conn.c) holds no lock other
 * threads need while this runs.
 *
 * What serving the link afterwards means (the in-flight table, deadlines,
 * pings, death) is conn.c's; this file only opens and closes it.
 */
#ifndef STEADYFS_SSHLINK_H
#define STEADYFS_SSHLINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libssh/libssh.h>

#include "buf.h"
#include "opts.h"

/* What the session learned from the server at handshake. */
struct conn_server {
	uint32_t exts;        /* SFTP_EXT_* bits offered */
	uint32_t max_read;    /* bytes per READ */
	uint32_t max_write;   /* bytes per WRITE */
	uint32_t max_packet;  /* largest packet we may send */
};

/* Why opening failed: lets main() pick an exit code. */
enum conn_fail { CONN_FAIL_NET = 1, CONN_FAIL_HOSTKEY, CONN_FAIL_AUTH,
		 CONN_FAIL_SFTP };

/*
 * The transport settings issue 7 measured one by one: the defaults
 * unless STEADYFS_TRANSPORT (bench only) says otherwise.
 */
struct sshlink_transport {
	char ciphers[256];
	int nodelay;
	size_t read_chunk;    /* bytes asked of the channel per read */
};

/* Fills `t`; `report`: log what was used and what was ignored (one
 * session says it, not every one). */
void sshlink_transport_from_env(struct sshlink_transport *t, bool report);

/* An open link: the session, its channel, and the bytes in each direction
 * not yet framed or written. All NULL/empty when closed. */
struct sshlink {
	ssh_session ssh;
	ssh_channel ch;
	struct buf in;
	struct buf out;
};

struct sshlink_params {
	const struct steadyfs_opts *o;
	const struct sshlink_transport *tr;
	int idx;               /* the session's number, for messages */
	bool check_dir;        /* verify the remote folder (first connect) */
	bool *limits_logged;   /* a clamped limits@ was logged (once per session) */
};

/*
 * Opens `l` (closed on entry). On success the session is non-blocking and
 * `sv` holds what the server offered; returns 0. On failure `l` is closed
 * again, one line is in err, and the result is -CONN_FAIL_*.
 */
int sshlink_open(struct sshlink *l, const struct sshlink_params *p,
		 struct conn_server *sv, char *err, size_t errsz);

/* Disconnects and frees the session, empties the buffers (their memory is
 * kept for the next open). Safe on a closed link. */
void sshlink_close(struct sshlink *l);

/* sshlink_close, and the buffers' memory released. */
void sshlink_release(struct sshlink *l);

#endif
