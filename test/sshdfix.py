"""A throwaway OpenSSH sshd on 127.0.0.1 for the integration tests.

`Sshd(workdir)` makes a host key, a client key, an authorized_keys file, a
known_hosts file and a remote folder under `workdir`, then `start()` runs
`/usr/sbin/sshd -D` as root on a free loopback port with `-f /dev/null` (the
system config already defines an `sftp` subsystem and sshd refuses a
second one) and waits, with a deadline, until the port accepts. The daemon
stays a child of the test process, so every process it spawns (one per
connection, then `sftp-server`) is found by walking parent pids from ours:
nothing here ever signals a process by name.

Used by conftest.py (the `sshd` and `make_sshd` fixtures) and by tools
such as `make demo`, which can import it directly.
"""

import os
import signal
import socket
import subprocess
import time

SSHD = "/usr/sbin/sshd"
# internal-sftp, not /usr/lib/openssh/sftp-server: sshd starts an external
# subsystem through the user's login shell, and root's ~/.bashrc here runs
# `pyenv init`, which serialises on a lock and stalls every session for
# seconds under load. internal-sftp takes the same flags (-P, -R) and runs
# inside the per-session sshd ("sshd: root@internal-sftp"), no shell.
SFTP_SERVER = "internal-sftp"
# The separate binary, for a "frozen SFTP server behind a live transport"
# (SIGSTOP it and sshd still answers keepalives): Sshd(sftp_server=...).
# Sessions set SHLVL=1 (see command()), so bash skips ~/.bashrc for it.
EXTERNAL_SFTP_SERVER = "/usr/lib/openssh/sftp-server"
START_TIMEOUT = 10.0
# Prefix for daemons the tests start: SIGTERM them if the thread that
# started them dies (a crashed or killed pytest leaves no sshd behind).
# Start daemons from the main thread: the signal follows the thread.
ORPHAN_GUARD = ["setpriv", "--pdeathsig", "TERM", "--"]


def free_port():
    """A loopback TCP port nobody listens on right now (racy by nature:
    callers retry when the bind fails)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(host, port, deadline, alive=lambda: True):
    """Poll a TCP connect until it succeeds (True), `alive()` turns false
    or the monotonic `deadline` passes (False)."""
    while time.monotonic() < deadline:
        if not alive():
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.02)
    return False


def _ppid(pid):
    """Parent pid of `pid`, or None when it is gone. The comm field in
    /proc/PID/stat may hold spaces and parentheses: split after the last ')'."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2:].split()
    return int(fields[1])


def descendants(root_pid):
    """Pids of every live process whose ancestor is `root_pid`, parents
    before children."""
    children = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            ppid = _ppid(int(name))
            if ppid is not None:
                children.setdefault(ppid, []).append(int(name))
    out, todo = [], [root_pid]
    while todo:
        kids = children.get(todo.pop(0), [])
        out.extend(kids)
        todo.extend(kids)
    return out


def proc_state(pid):
    """The state letter of /proc/PID/stat ("R", "S", "T", ...), None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rindex(b")") + 2:].split()[0].decode()


def wait_stopped(pids, timeout=5.0):
    """Wait until every pid is stopped (SIGSTOP is delivered
    asynchronously) or gone; False on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(proc_state(p) in ("T", None) for p in pids):
            return True
        time.sleep(0.01)
    return False


def proc_comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def keygen(path, comment):
    """A fresh ed25519 key pair without passphrase; returns the public line."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                    comment, "-f", path], check=True,
                   stdin=subprocess.DEVNULL, timeout=30)
    with open(path + ".pub") as f:
        return f.read().strip()


class SshdError(RuntimeError):
    pass


class Sshd:
    """One sshd instance and its files. Attributes: host, port, user,
    remote_dir, key (client private key), known_hosts, log, workdir,
    sftp_server (internal-sftp or a program), sftp_args (its extra
    arguments), pid (None when stopped)."""

    def __init__(self, workdir, sftp_args=(), extra_opts=(), port=None,
                 remote_dir=None, sftp_server=SFTP_SERVER):
        self.workdir = str(workdir)
        self.host = "127.0.0.1"
        self.user = "root"
        self.port = port
        self.sftp_server = sftp_server
        self.sftp_args = list(sftp_args)
        self.extra_opts = list(extra_opts)
        self.proc = None
        self.remote_dir = remote_dir or os.path.join(self.workdir, "remote")
        os.makedirs(self.remote_dir, exist_ok=True)
        self.hostkey = os.path.join(self.workdir, "ssh_host_ed25519_key")
        self.key = os.path.join(self.workdir, "id_ed25519")
        self.authorized_keys = os.path.join(self.workdir, "authorized_keys")
        self.known_hosts = os.path.join(self.workdir, "known_hosts")
        self.log = os.path.join(self.workdir, "sshd.log")
        self.pidfile = os.path.join(self.workdir, "sshd.pid")
        host_pub = keygen(self.hostkey, "steadyfs-test-host")
        # Known-hosts lines want "type base64", without the comment.
        self._host_pub = " ".join(host_pub.split()[:2])
        with open(self.authorized_keys, "w") as f:
            f.write(keygen(self.key, "steadyfs-test-client") + "\n")
        open(self.known_hosts, "w").close()

    # ---- lifecycle -----------------------------------------------------

    @property
    def pid(self):
        return self.proc.pid if self.proc and self.proc.poll() is None else None

    def command(self):
        """The sshd command line (also printed to reproduce a failure)."""
        subsystem = " ".join(["sftp", self.sftp_server] + self.sftp_args)
        opts = [
            "ListenAddress=127.0.0.1", f"PidFile={self.pidfile}",
            f"AuthorizedKeysFile={self.authorized_keys}", "StrictModes=no",
            "PasswordAuthentication=no", "KbdInteractiveAuthentication=no",
            "PermitRootLogin=prohibit-password", "UsePAM=no", "UseDNS=no",
            "LogLevel=VERBOSE", "MaxStartups=100", "MaxSessions=100",
            # Sessions and subsystems run through root's login shell; bash
            # sources ~/.bashrc when started by sshd at SHLVL < 2, and a
            # .bashrc here (pyenv init) can stall for a minute on a lock.
            "SetEnv=SHLVL=1",
            f"Subsystem={subsystem}",
        ] + self.extra_opts
        cmd = [SSHD, "-D", "-f", "/dev/null", "-p", str(self.port),
               "-h", self.hostkey, "-E", self.log]
        for o in opts:
            cmd += ["-o", o]
        return cmd

    def start(self, timeout=START_TIMEOUT):
        """Start sshd (on self.port, or a free port when None) and wait
        until it accepts connections. Raises SshdError with the log tail."""
        assert self.pid is None, "sshd already running"
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        fixed = self.port is not None
        for _ in range(1 if fixed else 5):
            if not fixed:
                self.port = free_port()
            log_start = os.path.getsize(self.log) if os.path.exists(self.log) else 0
            with open(self.log, "a") as log:
                self.proc = subprocess.Popen(ORPHAN_GUARD + self.command(),
                                             stdin=subprocess.DEVNULL,
                                             stdout=subprocess.DEVNULL,
                                             stderr=log)
            deadline = time.monotonic() + timeout
            # The log line proves the listener is ours, not another test
            # run's sshd that took the port while ours was down.
            if (self._wait_listening(log_start, deadline) and
                    wait_port(self.host, self.port, deadline,
                              alive=lambda: self.proc.poll() is None)):
                self.add_known_host(self.port)
                return self
            if self.proc.poll() is None:
                break  # alive but not accepting: give up, no retry
            if "Bind to port" not in self.log_tail():
                break
        self._reap()
        raise SshdError(f"sshd did not start on port {self.port}:\n"
                        f"{' '.join(self.command())}\n{self.log_tail()}")

    def _wait_listening(self, log_start, deadline):
        want = f"Server listening on {self.host} port {self.port}."
        while time.monotonic() < deadline and self.proc.poll() is None:
            with open(self.log, errors="replace") as f:
                f.seek(log_start)
                if want in f.read():
                    return True
            time.sleep(0.02)
        return False

    def stop(self):
        """Stop the listener and every session process under it."""
        if self.proc is None:
            return
        # Collect the tree before the listener dies: its children are
        # reparented to init afterwards and we could no longer find them.
        tree = descendants(self.proc.pid) if self.pid else []
        for pid in [self.proc.pid] + tree:
            _signal(pid, signal.SIGCONT)  # a frozen sftp-server too
            _signal(pid, signal.SIGKILL)
        self._reap()

    def restart(self, kill_sessions=True, down_seconds=0.0):
        """The "sshd restarted" fault: stop the listener (and, by default,
        every session under it, as a reboot of the server would), stay down
        for `down_seconds`, start again on the same port and host key."""
        if kill_sessions:
            self.stop()
        else:
            _signal(self.proc.pid, signal.SIGKILL)
            self._reap()
        if down_seconds:
            time.sleep(down_seconds)  # the outage itself, not a sync point
        self.start()

    def _reap(self):
        if self.proc is not None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.proc = None

    # ---- files and client commands -------------------------------------

    def known_hosts_line(self, port=None):
        return f"[{self.host}]:{port or self.port} {self._host_pub}"

    def add_known_host(self, port):
        """Trust this host key at `port` too (a proxy in front of sshd)."""
        line = self.known_hosts_line(port)
        with open(self.known_hosts) as f:
            if line in f.read().splitlines():
                return
        with open(self.known_hosts, "a") as f:
            f.write(line + "\n")

    def ssh_opts(self):
        """`-o` options for ssh/sftp/scp with strict host key checking."""
        out = []
        for o in ["BatchMode=yes", "IdentitiesOnly=yes",
                  f"IdentityFile={self.key}",
                  f"UserKnownHostsFile={self.known_hosts}",
                  "GlobalKnownHostsFile=/dev/null",
                  "StrictHostKeyChecking=yes", "ConnectTimeout=5"]:
            out += ["-o", o]
        return out

    def ssh_cmd(self, *remote, port=None):
        """An ssh command line running `remote` on this server."""
        return (["ssh", "-F", "/dev/null"] + self.ssh_opts() +
                ["-p", str(port or self.port), f"{self.user}@{self.host}"] +
                list(remote))

    def sftp_cmd(self, port=None):
        """An sftp batch command line (feed it commands on stdin or -b)."""
        return (["sftp", "-F", "/dev/null"] + self.ssh_opts() +
                ["-P", str(port or self.port), "-b", "-",
                 f"{self.user}@{self.host}"])

    def log_tail(self, lines=40):
        try:
            with open(self.log, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    # ---- processes -----------------------------------------------------

    def sftp_server_pids(self):
        """Pids of the sftp-server processes started by this sshd (one per
        open sftp session), found by parent pid, never by name alone."""
        if self.pid is None:
            return []
        return [p for p in descendants(self.pid)
                if proc_comm(p) == "sftp-server"
                or "@internal-sftp" in _cmdline(p)]

    def session_pids(self):
        """Every process under the listener (per-connection sshd, shells,
        sftp-server)."""
        return descendants(self.pid) if self.pid else []


def _signal(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


class frozen:
    """Context manager: SIGSTOP the given pids (the "server frozen" fault),
    wait until they are stopped, and always SIGCONT them on exit, even
    when the test fails."""

    def __init__(self, pids):
        self.pids = list(pids)

    def __enter__(self):
        for p in self.pids:
            _signal(p, signal.SIGSTOP)
        if not wait_stopped(self.pids):
            self.__exit__()
            raise SshdError(f"pids {self.pids} did not stop")
        return self.pids

    def __exit__(self, *exc):
        for p in self.pids:
            _signal(p, signal.SIGCONT)
        return False
