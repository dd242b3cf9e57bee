"""Real FUSE mounts for the integration tests: steadyfs and sshfs.

`mount_steadyfs(sshd, ...)` and `mount_sshfs(sshd, ...)` run the daemon in
the foreground (`-f`) as a child of the test, stderr to a file, and wait
with a deadline until the mountpoint shows up in /proc/self/mountinfo with
the right fstype; a daemon that exits first fails the call at once with its
stderr. Each returns a `Mount`, whose `cleanup()` always unmounts
(`fusermount3 -u`, then lazily, then by aborting the FUSE connection),
resumes and reaps the daemon by pid, and whose `problems()` lists unexpected
error lines on the daemon's stderr. `Mount` is also a context manager.

Fault helpers for the recovery and probe tests: `kill_daemon()` leaves a
real stale mount (every call `ENOTCONN`), `stopped()` a real hung one (calls
block until the daemon is resumed, which always happens on exit), and
`call_in_child()` runs one filesystem call in a separate process with a
time bound, so a test can observe a blocking call without blocking itself
(`ChildCall` starts one and lets the test act while it is blocked).

A steadyfs mount is two processes: the keeper the test starts (`pid`),
which holds /dev/fuse and restarts the filesystem daemon, its child
(`daemon_pid()`). `kill_daemon()` kills the keeper and makes sure its
child is gone too, so the mount is stale as for sshfs; `stopped()` stops
both, keeper first, so nothing restarts the daemon meanwhile.
"""

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import sshdfix

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOUNT_TIMEOUT = 10.0
FUSECTL = "/sys/fs/fuse/connections"
MIRROR_BASE = "/run/steadyfs"  # statedir.h STATEDIR_BASE

# Lines on a daemon's stderr that fail a test unless it expects errors;
# sanitizer reports fail it always.
ERROR_LINE = re.compile(r"\berror:", re.IGNORECASE)
SANITIZER_LINE = re.compile(r"AddressSanitizer|LeakSanitizer|runtime error:|"
                            r"UndefinedBehaviorSanitizer")


def build_dir():
    return os.environ.get("STEADYFS_BUILD") or os.path.join(REPO, "build")


def fuse_available():
    return os.path.exists("/dev/fuse")


# ---- the mount table -------------------------------------------------------

def _unescape(field):
    """mountinfo escapes space, tab, newline and backslash as \\ooo."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mountinfo():
    """Entries of /proc/self/mountinfo as dicts: target, fstype, source,
    dev ("major:minor"), opts."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.rstrip("\n").partition(" - ")
            lf, rf = left.split(), right.split()
            out.append({"dev": lf[2], "target": _unescape(lf[4]),
                        "opts": lf[5], "fstype": rf[0],
                        "source": _unescape(rf[1]) if len(rf) > 1 else ""})
    return out


def mounts_at(path):
    path = os.path.realpath(path)
    return [m for m in mountinfo() if m["target"] == path]


def fuse_mounts_under(root):
    """FUSE mounts at or below `root` (a leak check for tests)."""
    root = os.path.realpath(root)
    return [m for m in mountinfo() if m["fstype"].startswith("fuse")
            and (m["target"] == root or m["target"].startswith(root + "/"))]


def abort_fuse_connection(dev):
    """End every request of the FUSE connection with device `dev` (its
    minor number names it under fusectl): the last resort for a daemon
    that does not answer. Returns True when the abort file was written."""
    if not os.path.ismount(FUSECTL):
        subprocess.run(["mount", "-t", "fusectl", "none", FUSECTL],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=10)
    path = os.path.join(FUSECTL, dev.split(":")[1], "abort")
    try:
        with open(path, "w") as f:
            f.write("1")
        return True
    except OSError:
        return False


# ---- bounded calls in a child process -------------------------------------

_CHILD = r"""
import json, os, sys, time
op, path = sys.argv[1], sys.argv[2]
t0 = time.monotonic()
try:
    if op == "stat":
        os.stat(path)
    elif op == "lstat":
        os.lstat(path)
    elif op == "listdir":
        os.listdir(path)
    elif op == "read":
        with open(path, "rb") as f:
            f.read(65536)
    elif op == "write":
        with open(path, "wb") as f:
            f.write(b"x")
    elif op == "statvfs":
        os.statvfs(path)
    else:
        raise SystemExit("unknown op " + op)
    r = {"status": "ok", "errno": 0}
except OSError as e:
    r = {"status": "errno", "errno": e.errno}
r["elapsed"] = time.monotonic() - t0
print(json.dumps(r), flush=True)
"""


class ChildCall:
    """One call (stat, lstat, listdir, read, write, statvfs) on `path`,
    started at once in a child process; `wait()` collects its result."""

    def __init__(self, op, path):
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-c", _CHILD, op, path],
                                     stdout=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL)

    def wait(self, timeout):
        """A dict: status "ok", "errno" (with errno) or "timeout" (the
        child was still blocked after `timeout` s and was killed), and
        elapsed seconds (in the child; since the start for a timeout)."""
        p = self.proc
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            try:
                p.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                pass  # unkillable (D state); leave it, report the timeout
            return {"status": "timeout", "errno": None,
                    "elapsed": time.monotonic() - self.t0}
        try:
            return json.loads(out)
        except ValueError:
            return {"status": "crash", "errno": None, "rc": p.returncode,
                    "elapsed": time.monotonic() - self.t0}


def call_in_child(op, path, timeout=2.0):
    """Run one call (stat, lstat, listdir, read, write, statvfs) on `path`
    in a child process. Returns a dict: status "ok", "errno" (with errno)
    or "timeout" (the child was still blocked after `timeout` s and was
    killed), and elapsed seconds."""
    return ChildCall(op, path).wait(timeout)


# ---- processes ---------------------------------------------------------------

def children(pid):
    """Child pids of every thread of `pid`, in the order the kernel lists
    them (oldest first); [] when it is gone."""
    out = []
    try:
        tids = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def _signal(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def wait_gone(pids, timeout):
    """Poll until every pid is gone or a zombie; False on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        if all(sshdfix.proc_state(p) in (None, "Z") for p in pids):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


# ---- the mount ---------------------------------------------------------------

def _merge_opts(defaults, opts):
    """-o options from defaults overridden by `opts` (a dict: value None
    drops the option, True makes it a flag; or a list of "k=v"/"flag")."""
    merged = dict(defaults)
    if isinstance(opts, (list, tuple)):
        opts = dict((o.split("=", 1) + [True])[:2] for o in opts)
    for k, v in (opts or {}).items():
        if v is None:
            merged.pop(k, None)
        else:
            merged[k] = v
    return ",".join(k if v is True else f"{k}={v}" for k, v in merged.items())


class MountError(RuntimeError):
    pass


# Every steadyfs Mount made in this process, in order: conftest checks that
# a test leaves no mirror of one it made behind.
STEADYFS_MADE = []


class Mount:
    """A running FUSE daemon and its mountpoint. Attributes: kind
    ("steadyfs" or "sshfs"), cmd, mountpoint, proc, pid (for steadyfs the
    keeper's), stderr_path, expect_errors, sshd, env (variables added to
    the daemon's environment)."""

    def __init__(self, kind, cmd, mountpoint, stderr_path, sshd,
                 expect_errors=False, check_stderr=True, env=None):
        self.kind, self.cmd, self.sshd = kind, cmd, sshd
        self.env = dict(env or {})
        self.mountpoint = os.path.realpath(mountpoint)
        self.stderr_path = stderr_path
        self.expect_errors = expect_errors
        self.check_stderr = check_stderr
        self.proc = None
        self.fstype = "fuse." + kind
        self.dev = None
        if kind == "steadyfs":
            STEADYFS_MADE.append(self)

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def daemon_pids(self):
        """Pids of the steadyfs keeper's children, oldest first: its
        filesystem daemon (two during an upgrade). [] for sshfs or when
        the keeper is gone."""
        if self.kind != "steadyfs" or not self.alive():
            return []
        return children(self.proc.pid)

    def daemon_pid(self):
        """The keeper's current filesystem daemon (the newest child), or
        None while there is none."""
        pids = self.daemon_pids()
        return pids[-1] if pids else None

    def is_mounted(self):
        return any(m["fstype"] == self.fstype
                   for m in mounts_at(self.mountpoint))

    def path(self, *parts):
        return os.path.join(self.mountpoint, *parts)

    def start(self, timeout=MOUNT_TIMEOUT):
        """Run the daemon and wait until the mountpoint is in the mount
        table and its root answers stat (sshfs mounts before it has
        connected, and exits afterwards when the connection fails)."""
        if not fuse_available():
            raise MountError("/dev/fuse is missing")
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(sshdfix.ORPHAN_GUARD + self.cmd,
                                         stdin=subprocess.DEVNULL,
                                         stdout=err, stderr=err,
                                         env=dict(os.environ, **self.env),
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        why = f"not mounted after {timeout:g} s"
        while time.monotonic() < deadline and self.alive():
            found = [m for m in mounts_at(self.mountpoint)
                     if m["fstype"] == self.fstype]
            if found:
                self.dev = found[-1]["dev"]
                r = call_in_child("stat", self.mountpoint,
                                  max(0.5, deadline - time.monotonic()))
                if r["status"] == "ok" and self.alive():
                    return self
                why = f"mounted, but stat of its root gave {r}"
                break
            time.sleep(0.02)
        if self.proc.poll() is not None:
            why = f"exited with status {self.proc.returncode}"
        self.cleanup()
        raise MountError(f"{self.kind} {why}\n{self.repro()}\n"
                         f"--- stderr ---\n{self.stderr_text()}")

    # ---- faults ------------------------------------------------------------

    def kill_daemon(self):
        """SIGKILL the daemon and reap it: a real stale mount (every call
        ENOTCONN) is left behind until cleanup(). For steadyfs that is the
        keeper (which holds /dev/fuse); its child dies with it
        (PR_SET_PDEATHSIG), and is killed here if it has not within 2 s."""
        if self.alive():
            kids = self.daemon_pids()
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
            self._end_children(kids, grace=2.0)

    def _end_children(self, pids, grace):
        """Wait up to `grace` s for the keeper's former children to be
        gone (zombies count: they hold no descriptor), then SIGKILL the
        rest; raise when one outlives that too."""
        if wait_gone(pids, grace):
            return
        for p in pids:
            _signal(p, signal.SIGCONT)
            _signal(p, signal.SIGKILL)
        if not wait_gone(pids, 5.0):
            raise MountError(f"{self.kind} daemon pids {pids} outlived their keeper")

    @contextlib.contextmanager
    def stopped(self):
        """SIGSTOP the daemon for the block: a real hung mount. Always
        resumed on exit. For steadyfs the keeper is stopped first (it
        would restart nothing then), then its children."""
        os.kill(self.proc.pid, signal.SIGSTOP)
        pids = [self.proc.pid]
        try:
            if self.kind == "steadyfs":
                if not sshdfix.wait_stopped(pids):
                    raise MountError(f"{self.kind} keeper pid {pids[0]} did not stop")
                kids = children(self.proc.pid)
                for p in kids:
                    _signal(p, signal.SIGSTOP)
                pids += kids
            if not sshdfix.wait_stopped(pids):
                raise MountError(f"{self.kind} pids {pids} did not stop")
            yield self
        finally:
            self.resume()

    def resume(self):
        """SIGCONT the daemon (for steadyfs its children, then the keeper)."""
        if self.alive():
            for p in self.daemon_pids():
                _signal(p, signal.SIGCONT)
            os.kill(self.proc.pid, signal.SIGCONT)

    # ---- teardown ------------------------------------------------------

    def _run(self, cmd, timeout=10):
        try:
            return subprocess.run(cmd, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, timeout=timeout,
                                  stdin=subprocess.DEVNULL).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def unmount(self):
        """Unmount, however stuck: plain, then lazy, then abort the FUSE
        connection and lazy-unmount the now dead mount."""
        self.resume()
        if not self.is_mounted():
            return
        if self._run(["fusermount3", "-u", self.mountpoint]) and not self.is_mounted():
            return
        if self._run(["fusermount3", "-u", "-z", self.mountpoint]) and not self.is_mounted():
            return
        if self.dev:
            abort_fuse_connection(self.dev)
        self._run(["umount", "-l", self.mountpoint])

    def cleanup(self):
        """Unmount and reap the daemon (for steadyfs, the keeper and its
        children). Safe to call twice."""
        kids = self.daemon_pids()
        self.unmount()
        if self.proc is not None:
            self.resume()
            kids += [p for p in self.daemon_pids() if p not in kids]
            for sig, wait in ((None, 5), (signal.SIGTERM, 5), (signal.SIGKILL, 10)):
                if self.proc.poll() is not None:
                    break
                if sig is not None:
                    os.kill(self.proc.pid, sig)
                try:
                    self.proc.wait(timeout=wait)
                except subprocess.TimeoutExpired:
                    pass
            if self.proc.poll() is not None:
                self._end_children(kids, grace=5.0)

    def remove_mirror(self):
        """A steadyfs mount leaves its state_dir mirror under
        /run/steadyfs (its last words, which some tests read after
        cleanup()); the fixture removes it at teardown."""
        path = self.mirror_path()
        if path is None:
            return
        if os.path.islink(path):
            os.unlink(path)
        elif os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)

    def mirror_path(self):
        """Where a steadyfs mount's mirror is (a folder, or a symlink to
        its state_dir=), or None for sshfs."""
        if self.kind != "steadyfs":
            return None
        try:
            name = subprocess.run(["systemd-escape", "--path", self.mountpoint],
                                  capture_output=True, text=True, timeout=10,
                                  check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None
        return os.path.join(MIRROR_BASE, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()
        return False

    # ---- diagnostics -----------------------------------------------------

    def stderr_text(self):
        try:
            with open(self.stderr_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def problems(self):
        """Unexpected lines on the daemon's stderr: sanitizer reports
        always; "error:" lines unless expect_errors (or the check is off)."""
        bad = []
        for line in self.stderr_text().splitlines():
            if SANITIZER_LINE.search(line):
                bad.append(line)
            elif (self.check_stderr and not self.expect_errors
                  and ERROR_LINE.search(line)):
                bad.append(line)
        return bad

    def repro(self):
        """Shell commands that reproduce this mount by hand."""
        lines = ["# to reproduce:"]
        if self.sshd is not None:
            lines.append("mkdir -p /run/sshd; " + shlex.join(self.sshd.command()) + " &")
        env = "".join(f"{k}={shlex.quote(v)} " for k, v in self.env.items())
        lines.append(f"mkdir -p {shlex.quote(self.mountpoint)}; " + env
                     + shlex.join(self.cmd))
        lines.append(f"fusermount3 -u {shlex.quote(self.mountpoint)}")
        return "\n".join(lines)


def _mount(kind, program, sshd, mountpoint, remote_subdir, opts, defaults,
           port, expect_errors, workdir, args, timeout, env=None):
    """Common to both daemons: `program REMOTE MNT -f -p PORT -o OPTS ARGS`."""
    workdir = workdir or sshd.workdir
    if mountpoint is None:
        mountpoint = tempfile.mkdtemp(prefix=f"mnt-{kind}-", dir=workdir)
    if not os.path.lexists(mountpoint):
        os.makedirs(mountpoint)
    remote = os.path.join(sshd.remote_dir, remote_subdir)
    stderr_path = os.path.join(workdir, f"{kind}-{os.path.basename(mountpoint)}.stderr")
    port = port or sshd.port
    sshd.add_known_host(port)
    defaults = dict({"IdentityFile": sshd.key,
                     "UserKnownHostsFile": sshd.known_hosts}, **defaults)
    cmd = [program, f"{sshd.user}@{sshd.host}:{remote.rstrip('/')}", mountpoint,
           "-f", "-p", str(port), "-o", _merge_opts(defaults, opts)] + list(args)
    return Mount(kind, cmd, mountpoint, stderr_path, sshd,
                 expect_errors=expect_errors, env=env).start(timeout)


def mount_steadyfs(sshd, mountpoint=None, remote_subdir="", opts=None,
                   port=None, expect_errors=False, workdir=None, args=(),
                   timeout=MOUNT_TIMEOUT, program=None, env=None):
    """Mount the remote folder (or `remote_subdir` of it) with `program`
    (default $STEADYFS_BUILD/steadyfs) through `port` (default: sshd's
    own; for a proxy's port a known_hosts line is added). `opts` override
    the defaults (identity, known_hosts, test-scale op_timeout=4); `env`
    adds variables to the daemon's environment. Returns a started Mount;
    raises MountError with stderr and a reproduction."""
    return _mount("steadyfs", program or os.path.join(build_dir(), "steadyfs"),
                  sshd, mountpoint, remote_subdir, opts, {"op_timeout": 4}, port,
                  expect_errors, workdir, args, timeout, env)


def mount_sshfs(sshd, mountpoint=None, remote_subdir="", opts=None,
                port=None, expect_errors=True, workdir=None, args=(),
                timeout=MOUNT_TIMEOUT):
    """The same with a real sshfs (the legacy mounts recover and probe
    deal with). Its stderr is not checked for errors by default."""
    return _mount("sshfs", "sshfs", sshd, mountpoint, remote_subdir, opts,
                  {"StrictHostKeyChecking": "yes", "BatchMode": "yes"}, port,
                  expect_errors, workdir, ("-F", "/dev/null") + tuple(args),
                  timeout)
