/*
 * sshlink: see sshlink.h.
 */
#include "sshlink.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "sftp.h"

/* libssh grows the channel's receive window to the size of a read: 4 MiB
 * keeps one channel at 200 MB/s at 20 ms round trip; the server may then
 * queue that much in libssh's buffer too, per session. */
#define READ_CHUNK (4 * 1024 * 1024)
/* Fast ciphers first (AES-GCM runs on the CPU's AES instructions); the
 * server picks from what both offer. */
#define CIPHERS "aes128-gcm@openssh.com,aes256-gcm@openssh.com," \
	"chacha20-poly1305@openssh.com,aes128-ctr,aes256-ctr"

/*
 * STEADYFS_TRANSPORT="cipher=NAME,nodelay=0,window=BYTES" (any subset)
 * replaces a default, so `make bench --transport` can measure what each
 * one is worth. Not an operator setting: anything it does not know is
 * logged (once, by session 0) and ignored.
 */
void sshlink_transport_from_env(struct sshlink_transport *t, bool report)
{
	const char *env = getenv("STEADYFS_TRANSPORT");
	char spec[512], *save = NULL;

	snprintf(t->ciphers, sizeof(t->ciphers), "%s", CIPHERS);
	t->nodelay = 1;
	t->read_chunk = READ_CHUNK;
	if (!env || snprintf(spec, sizeof(spec), "%s", env) >= (int)sizeof(spec))
		return;
	for (char *kv = strtok_r(spec, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
		char *end = NULL;
		unsigned long n;

		if (!strncmp(kv, "cipher=", 7) && kv[7] &&
		    strlen(kv + 7) < sizeof(t->ciphers)) {
			snprintf(t->ciphers, sizeof(t->ciphers), "%s", kv + 7);
			continue;
		}
		if (!strcmp(kv, "nodelay=0") || !strcmp(kv, "nodelay=1")) {
			t->nodelay = kv[8] - '0';
			continue;
		}
		if (!strncmp(kv, "window=", 7)) {
			errno = 0;
			n = strtoul(kv + 7, &end, 10);
			if (!errno && end && !*end && n >= 32768 && n <= READ_CHUNK) {
				t->read_chunk = n;
				continue;
			}
		}
		if (report)
			log_warn("STEADYFS_TRANSPORT: '%s' ignored", kv);
	}
	if (report)
		log_info("transport: ciphers %s, TCP_NODELAY %s, channel reads %zu bytes",
			 t->ciphers, t->nodelay ? "on" : "off", t->read_chunk);
}

void sshlink_close(struct sshlink *l)
{
	if (l->ch) {
		ssh_channel_free(l->ch);
		l->ch = NULL;
	}
	if (l->ssh) {
		ssh_disconnect(l->ssh);
		ssh_free(l->ssh);
		l->ssh = NULL;
	}
	buf_reset(&l->out);
	buf_reset(&l->in);
}

/* TCP settings libssh does not expose: the kernel gives up on a silent
 * peer after the liveness bound instead of retransmitting for minutes. */
static void tune_socket(struct sshlink *l, const struct sshlink_params *p)
{
	int fd = ssh_get_fd(l->ssh);
	int one = 1;
	unsigned int ms = (unsigned int)(steadyfs_opts_dead_after(p->o) * 1000);

	if (fd < 0)
		return;
	if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof(ms)) < 0)
		log_debug("session %d: setsockopt: %s", p->idx, strerror(errno));
}

static int verify_host(struct sshlink *l, const struct sshlink_params *p,
		       char *err, size_t errsz)
{
	enum ssh_known_hosts_e k = ssh_session_is_known_server(l->ssh);

	switch (k) {
	case SSH_KNOWN_HOSTS_OK:
		return 0;
	case SSH_KNOWN_HOSTS_CHANGED:
	case SSH_KNOWN_HOSTS_OTHER:
		if (p->o->strict == HOSTKEY_NO) {
			log_warn("host key for '%s' changed; accepted because StrictHostKeyChecking=no",
				 p->o->host);
			return 0;
		}
		snprintf(err, errsz, "host key for '%s' does not match the known_hosts file (possible attack)",
			 p->o->host);
		return -CONN_FAIL_HOSTKEY;
	case SSH_KNOWN_HOSTS_UNKNOWN:
	case SSH_KNOWN_HOSTS_NOT_FOUND:
		if (p->o->strict == HOSTKEY_NO)
			return 0;
		if (p->o->strict == HOSTKEY_ACCEPT_NEW) {
			if (ssh_session_update_known_hosts(l->ssh) != SSH_OK)
				log_warn("cannot record host key for '%s': %s",
					 p->o->host, ssh_get_error(l->ssh));
			else
				log_info("host key for '%s' added to known_hosts", p->o->host);
			return 0;
		}
		snprintf(err, errsz, "host key for '%s' is not in the known_hosts file",
			 p->o->host);
		return -CONN_FAIL_HOSTKEY;
	case SSH_KNOWN_HOSTS_ERROR:
	default:
		snprintf(err, errsz, "cannot check host key for '%s': %s",
			 p->o->host, ssh_get_error(l->ssh));
		return -CONN_FAIL_HOSTKEY;
	}
}

static int authenticate(struct sshlink *l, const struct sshlink_params *p,
			char *err, size_t errsz)
{
	int rc;

	if (p->o->identity_file) {
		ssh_key key = NULL;

		if (ssh_pki_import_privkey_file(p->o->identity_file, NULL, NULL,
						NULL, &key) != SSH_OK) {
			snprintf(err, errsz, "cannot read identity file '%s'",
				 p->o->identity_file);
			return -CONN_FAIL_AUTH;
		}
		rc = ssh_userauth_publickey(l->ssh, NULL, key);
		ssh_key_free(key);
	} else {
		rc = ssh_userauth_publickey_auto(l->ssh, NULL, NULL);
	}
	if (rc == SSH_AUTH_SUCCESS)
		return 0;
	if (rc == SSH_AUTH_ERROR) {
		snprintf(err, errsz, "authentication to '%s' failed: %s",
			 p->o->host, ssh_get_error(l->ssh));
		return -CONN_FAIL_NET;
	}
	snprintf(err, errsz, "authentication to '%s' refused (public key)",
		 p->o->host);
	return -CONN_FAIL_AUTH;
}

static int set_options(struct sshlink *l, const struct sshlink_params *p)
{
	long timeout = (long)(p->o->connect_timeout + 0.999);
	int port = p->o->port, nodelay = p->tr->nodelay, no = 0;
	int rc = 0;

	rc |= ssh_options_set(l->ssh, SSH_OPTIONS_HOST, p->o->host);
	rc |= ssh_options_set(l->ssh, SSH_OPTIONS_PORT, &port);
	if (p->o->user)
		rc |= ssh_options_set(l->ssh, SSH_OPTIONS_USER, p->o->user);
	rc |= ssh_options_set(l->ssh, SSH_OPTIONS_TIMEOUT, &timeout);
	rc |= ssh_options_set(l->ssh, SSH_OPTIONS_NODELAY, &nodelay);
	/* The command line is the whole configuration: ~/.ssh/config would
	 * make a mount behave differently per user. */
	rc |= ssh_options_set(l->ssh, SSH_OPTIONS_PROCESS_CONFIG, &no);
	if (p->o->known_hosts)
		rc |= ssh_options_set(l->ssh, SSH_OPTIONS_KNOWNHOSTS, p->o->known_hosts);
	rc |= ssh_options_set(l->ssh, SSH_OPTIONS_CIPHERS_C_S, p->tr->ciphers);
	rc |= ssh_options_set(l->ssh, SSH_OPTIONS_CIPHERS_S_C, p->tr->ciphers);
	return rc ? -1 : 0;
}

/* Blocking read of exactly one SFTP packet during the handshake. */
static int read_packet_blocking(struct sshlink *l, int timeout_ms)
{
	size_t plen;
	int n;

	for (;;) {
		int fr = sftp_frame(buf_ptr(&l->in), buf_avail(&l->in),
				    SFTP_MAX_PACKET, &plen);
		if (fr == 0)
			return (int)plen;
		if (fr != BUF_E_SHORT)
			return -1;
		if (buf_reserve(&l->in, 65536) < 0)
			return -1;
		n = ssh_channel_read_timeout(l->ch, l->in.d + l->in.len, 65536, 0,
					     timeout_ms);
		if (n <= 0)
			return -1;
		l->in.len += (size_t)n;
	}
}

static int write_blocking(struct sshlink *l, struct buf *b)
{
	while (buf_avail(b)) {
		int n = ssh_channel_write(l->ch, buf_ptr(b), (uint32_t)buf_avail(b));
		if (n <= 0)
			return -1;
		buf_consume(b, (size_t)n);
	}
	buf_reset(b);
	return 0;
}

/*
 * Request sizes from what limits@ announced (NULL: not offered), clamped
 * to what the codec carries (sftp_limits_use): a server saying a tiny
 * packet size must not make a write impossible to encode, nor a huge read
 * size make every DATA reply too big for the framing.
 */
static void use_limits(const struct sshlink_params *p, struct conn_server *sv,
		       const struct sftp_limits *ann)
{
	struct sftp_limits u;
	unsigned bad = sftp_limits_use(ann, &u);

	sv->max_packet = (uint32_t)u.max_packet;
	sv->max_read = (uint32_t)u.max_read;
	sv->max_write = (uint32_t)u.max_write;
	if (bad && !*p->limits_logged) {
		*p->limits_logged = true;
		log_warn("session %d: server's limits@openssh.com (packet %llu, read %llu, "
			 "write %llu) not usable as they are: using packet %u, read %u, write %u",
			 p->idx, (unsigned long long)ann->max_packet,
			 (unsigned long long)ann->max_read,
			 (unsigned long long)ann->max_write,
			 sv->max_packet, sv->max_read, sv->max_write);
	}
}

/* INIT/VERSION, then limits@ when offered. */
static int sftp_handshake(struct sshlink *l, const struct sshlink_params *p,
			  struct conn_server *out, char *err, size_t errsz)
{
	int tmo = (int)(p->o->connect_timeout * 1000);
	struct conn_server sv = { 0 };
	struct sftp_reply r;
	uint32_t version = 0;
	int plen;

	if (sftp_enc_init(&l->out) < 0 || write_blocking(l, &l->out) < 0) {
		log_debug("session %d: cannot send INIT: %s", p->idx, ssh_get_error(l->ssh));
		goto fail;
	}
	plen = read_packet_blocking(l, tmo);
	if (plen < 0 || sftp_dec_version(buf_ptr(&l->in) + 4, (size_t)plen - 4,
					 &version, &sv.exts) < 0) {
		log_debug("session %d: no valid VERSION (%d): %s", p->idx, plen,
			  ssh_get_error(l->ssh));
		goto fail;
	}
	buf_consume(&l->in, (size_t)plen);
	use_limits(p, &sv, NULL);
	if (sv.exts & SFTP_EXT_LIMITS) {
		struct sftp_limits lim;

		if (sftp_enc_limits(&l->out, 0) < 0 || write_blocking(l, &l->out) < 0)
			goto fail;
		plen = read_packet_blocking(l, tmo);
		if (plen < 0 || sftp_dec_reply(buf_ptr(&l->in) + 4, (size_t)plen - 4, &r) < 0)
			goto fail;
		if (r.type == SSH_FXP_EXTENDED_REPLY &&
		    sftp_dec_limits(r.u.ext.p, r.u.ext.len, &lim) == 0)
			use_limits(p, &sv, &lim);
		buf_consume(&l->in, (size_t)plen);
	}
	buf_compact(&l->in);
	*out = sv;
	return 0;
fail:
	snprintf(err, errsz, "sftp subsystem on '%s' did not start", p->o->host);
	return -CONN_FAIL_SFTP;
}

/* Verifies that the remote directory exists (first connect only). */
static int check_remote_dir(struct sshlink *l, const struct sshlink_params *p,
			    char *err, size_t errsz)
{
	const char *dir = p->o->remote_dir[0] ? p->o->remote_dir : ".";
	struct sftp_reply r;
	int plen;

	if (sftp_enc_path(&l->out, SSH_FXP_STAT, 0, dir) < 0 ||
	    write_blocking(l, &l->out) < 0)
		goto lost;
	plen = read_packet_blocking(l, (int)(p->o->connect_timeout * 1000));
	if (plen < 0 || sftp_dec_reply(buf_ptr(&l->in) + 4, (size_t)plen - 4, &r) < 0)
		goto lost;
	buf_consume(&l->in, (size_t)plen);
	buf_compact(&l->in);
	if (r.type == SSH_FXP_ATTRS) {
		if ((r.u.attrs.flags & SSH_FILEXFER_ATTR_PERMISSIONS) &&
		    (r.u.attrs.perm & 0170000) != 0040000) {
			snprintf(err, errsz, "remote path '%s' is not a directory", dir);
			return -CONN_FAIL_SFTP;
		}
		return 0;
	}
	snprintf(err, errsz, "remote directory '%s': %s", dir,
		 strerror(r.type == SSH_FXP_STATUS ? sftp_status_errno(r.u.status.code) : EIO));
	return -CONN_FAIL_SFTP;
lost:
	snprintf(err, errsz, "remote directory '%s': no answer", dir);
	return -CONN_FAIL_NET;
}

int sshlink_open(struct sshlink *l, const struct sshlink_params *p,
		 struct conn_server *sv, char *err, size_t errsz)
{
	int rc;

	l->ssh = ssh_new();
	if (!l->ssh || set_options(l, p) < 0) {
		snprintf(err, errsz, "cannot set up ssh session");
		rc = -CONN_FAIL_NET;
		goto fail;
	}
	if (ssh_connect(l->ssh) != SSH_OK) {
		snprintf(err, errsz, "cannot connect to '%s' port %d: %s",
			 p->o->host, p->o->port, ssh_get_error(l->ssh));
		rc = -CONN_FAIL_NET;
		goto fail;
	}
	tune_socket(l, p);
	if ((rc = verify_host(l, p, err, errsz)) < 0 ||
	    (rc = authenticate(l, p, err, errsz)) < 0)
		goto fail;
	l->ch = ssh_channel_new(l->ssh);
	if (!l->ch || ssh_channel_open_session(l->ch) != SSH_OK ||
	    ssh_channel_request_subsystem(l->ch, "sftp") != SSH_OK) {
		snprintf(err, errsz, "cannot open sftp channel on '%s': %s",
			 p->o->host, ssh_get_error(l->ssh));
		rc = -CONN_FAIL_SFTP;
		goto fail;
	}
	if ((rc = sftp_handshake(l, p, sv, err, errsz)) < 0)
		goto fail;
	if (p->check_dir && (rc = check_remote_dir(l, p, err, errsz)) < 0)
		goto fail;
	ssh_set_blocking(l->ssh, 0);
	return 0;
fail:
	sshlink_close(l);
	return rc;
}

void sshlink_release(struct sshlink *l)
{
	sshlink_close(l);
	buf_release(&l->out);
	buf_release(&l->in);
}
