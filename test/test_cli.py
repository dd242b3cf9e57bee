"""The steadyfs command line: the archive's sshfs-style invocation, --help
and --version, and every bad input the brief names.

A bad input must end the program with the exit code of the brief (2 bad
command line, 1 cannot connect/authenticate/verify the host key or open
the remote folder, 4 mountpoint problem), exactly one line on stderr that
names the problem, and nothing mounted. Each run is bounded by a timeout.
"""

import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time

import pytest

import kerneltimeout
import mounts
import sshdfix

RUN_TIMEOUT = 30


def steadyfs():
    return os.path.join(mounts.build_dir(), "steadyfs")


@pytest.fixture
def remote(sshd, remote_subdir):
    """The remote folder as `user@host:/path` and its server-side path."""
    path = os.path.join(sshd.remote_dir, remote_subdir)
    return f"{sshd.user}@{sshd.host}:{path}", path


def run_bad(args, mountpoint, timeout=RUN_TIMEOUT, mounted_before=0):
    """Run steadyfs expecting it to refuse; returns (status, stderr lines).
    Fails if it is still running after `timeout` or left a mount behind
    (more than the `mounted_before` steadyfs mounts at `mountpoint`)."""
    if not mounts.fuse_available():
        pytest.skip("/dev/fuse is missing")
    t0 = time.monotonic()
    try:
        r = subprocess.run([steadyfs()] + args, capture_output=True,
                           text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        _unmount_leftover(mountpoint)
        pytest.fail(f"steadyfs {args} still running after {timeout} s")
    left = [m for m in mounts.mounts_at(mountpoint)
            if m["fstype"] == "fuse.steadyfs"]
    if len(left) > mounted_before:
        if not mounted_before:
            _unmount_leftover(mountpoint)
        pytest.fail(f"steadyfs exited {r.returncode} and left {left}")
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    print(f"status {r.returncode} after {time.monotonic() - t0:.1f} s: {lines}")
    return r.returncode, lines


def _unmount_leftover(mountpoint):
    subprocess.run(["fusermount3", "-u", "-z", mountpoint], timeout=10,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def base_args(sshd, remote, mountpoint, port=None, **over):
    """`REMOTE MNT -f -p PORT -o ...` with the fixture's key and
    known_hosts; keyword arguments override -o options (None drops)."""
    opts = {"IdentityFile": sshd.key, "UserKnownHostsFile": sshd.known_hosts,
            "op_timeout": 4, "connect_timeout": 3}
    opts.update(over)
    o = ",".join(f"{k}={v}" for k, v in opts.items() if v is not None)
    return [remote, mountpoint, "-f", "-p", str(port or sshd.port), "-o", o]


def names(path):
    """os.listdir without the virtual .control/ folder of the mount root."""
    return [n for n in os.listdir(path) if n != ".control"]


def assert_one_line(lines, *words):
    assert len(lines) == 1, f"want one line on stderr, got {lines}"
    for w in words:
        assert w.lower() in lines[0].lower(), f"{w!r} not named in {lines[0]!r}"


# ---- help and version -----------------------------------------------------------

@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help(flag):
    r = subprocess.run([steadyfs(), flag], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0, r.stderr
    assert "usage: steadyfs" in r.stdout
    for opt in ("IdentityFile", "op_timeout", "connections", "umask"):
        assert opt in r.stdout


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(flag):
    r = subprocess.run([steadyfs(), flag], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("steadyfs ") and len(r.stdout.splitlines()) == 1


# ---- the archive's line ------------------------------------------------------------

def test_archive_sshfs_line(sshd, remote):
    """The archive unit's sshfs line with steadyfs in its place, options
    before the positional arguments as the unit writes them. The one
    addition is UserKnownHostsFile: the line relies on root's
    ~/.ssh/known_hosts, which a test must not edit."""
    if not mounts.fuse_available():
        pytest.skip("/dev/fuse is missing")
    spec, srv = remote
    uid, gid = 4321, 8765
    # a world-traversable mountpoint: the check below runs as `uid`
    mp = tempfile.mkdtemp(prefix="steadyfs-archive-", dir="/tmp")
    os.chmod(mp, 0o755)
    with open(os.path.join(srv, "existing.warc"), "wb") as f:
        f.write(b"WARC/1.0\r\n")
    cmd = [steadyfs(), "-f", "-p", str(sshd.port),
           "-o", f"IdentityFile={sshd.key}",
           "-o", "allow_other,default_permissions",
           "-o", f"uid={uid},gid={gid},umask=0027",
           "-o", "reconnect,ServerAliveInterval=15,ServerAliveCountMax=3,kernel_cache",
           "-o", f"UserKnownHostsFile={sshd.known_hosts}",
           spec, mp]
    m = mounts.Mount("steadyfs", cmd, mp,
                     os.path.join(sshd.workdir, "archive-line.stderr"), sshd)
    try:
        m.start()
        st = os.stat(os.path.join(mp, "existing.warc"))
        assert (st.st_uid, st.st_gid) == (uid, gid)
        assert st.st_mode & 0o777 == 0o640
        # writes land on the server
        with open(os.path.join(mp, "new.warc"), "wb") as f:
            f.write(b"x" * 100000)
        assert os.path.getsize(os.path.join(srv, "new.warc")) == 100000
        # allow_other: another user, the mount's shown owner, reads it;
        # default_permissions: a third user is refused by the kernel
        owner = subprocess.run(["cat", os.path.join(mp, "existing.warc")],
                               user=uid, group=gid, capture_output=True,
                               timeout=10)
        assert owner.returncode == 0 and owner.stdout == b"WARC/1.0\r\n", owner.stderr
        other = subprocess.run(["cat", os.path.join(mp, "existing.warc")],
                               user=uid + 1, group=gid + 1, capture_output=True,
                               timeout=10)
        assert other.returncode != 0 and b"Permission denied" in other.stderr
        assert m.alive()
    finally:
        m.cleanup()
        m.remove_mirror()
        assert not m.is_mounted()
        os.rmdir(mp)
    assert not m.problems(), m.problems()


def test_mount_over_nonempty_folder(sshd, remote, mount_steadyfs, tmp_path):
    spec, srv = remote
    mp = tmp_path / "busy"
    mp.mkdir()
    (mp / "local-only").write_text("hidden while mounted")
    with open(os.path.join(srv, "remote-file"), "w") as f:
        f.write("remote")
    m = mount_steadyfs(sshd, remote_subdir=os.path.basename(srv),
                       mountpoint=str(mp))
    assert names(m.mountpoint) == ["remote-file"]
    m.cleanup()
    assert (mp / "local-only").read_text() == "hidden while mounted"


# ---- bad command lines (exit 2) ----------------------------------------------------

def test_unknown_flag(sshd, remote, tmp_path):
    mp = str(tmp_path)
    status, lines = run_bad(base_args(sshd, remote[0], mp) + ["--frobnicate"], mp)
    assert status == 2
    assert_one_line(lines, "frobnicate")


@pytest.mark.parametrize("opt,word", [
    ("frobnicate", "frobnicate"),          # unknown option
    ("frobnicate=3", "frobnicate"),
    ("op_timeout=abc", "op_timeout"),      # bad values
    ("op_timeout=-1", "op_timeout"),
    ("connections=0", "connections"),
    ("connections=many", "connections"),
    ("umask=999", "umask"),
    ("uid=-5", "uid"),
    ("port=99999", "port"),
    ("StrictHostKeyChecking=maybe", "StrictHostKeyChecking"),
    ("max_write=12", "max_write"),
    ("negative_timeout=-1", "negative_timeout"),
    ("negative_timeout=soon", "negative_timeout"),
    ("dcache_timeout=x", "dcache_timeout"),
    ("cache_stat_timeout=-2", "cache_stat_timeout"),
    ("dcache_dir_timeout=ten", "dcache_dir_timeout"),
])
def test_bad_option(sshd, remote, tmp_path, opt, word):
    """An unknown option or a bad value: exit 2, one line naming it."""
    mp = str(tmp_path)
    status, lines = run_bad(base_args(sshd, remote[0], mp) + ["-o", opt], mp)
    assert status == 2
    assert_one_line(lines, word)


def test_bad_port_flag(sshd, remote, tmp_path):
    mp = str(tmp_path)
    args = base_args(sshd, remote[0], mp)
    args[args.index("-p") + 1] = "twenty-two"
    status, lines = run_bad(args, mp)
    assert status == 2
    assert_one_line(lines, "-p", "twenty-two")


def test_missing_arguments(tmp_path):
    status, lines = run_bad([], str(tmp_path))
    assert status == 2 and len(lines) == 1
    status, lines = run_bad(["root@127.0.0.1:/"], str(tmp_path))
    assert status == 2 and len(lines) == 1


# ---- cannot connect, authenticate or verify (exit 1) -----------------------------

def test_unreachable_host(sshd, remote, tmp_path):
    mp = str(tmp_path)
    closed = sshdfix.free_port()
    t0 = time.monotonic()
    status, lines = run_bad(base_args(sshd, remote[0], mp, port=closed), mp)
    assert status == 1
    assert_one_line(lines, "127.0.0.1")
    assert str(closed) in lines[0]
    assert time.monotonic() - t0 < 10


def test_refused_auth(sshd, remote, tmp_path):
    key = str(tmp_path / "stranger")
    sshdfix.keygen(key, "not-authorized")
    os.mkdir(tmp_path / "mnt")
    mp = str(tmp_path / "mnt")
    status, lines = run_bad(base_args(sshd, remote[0], mp, IdentityFile=key), mp)
    assert status == 1
    assert_one_line(lines, "authentication", "127.0.0.1")


def test_unknown_host_key(sshd, remote, tmp_path):
    kh = tmp_path / "empty_known_hosts"
    kh.write_text("")
    os.mkdir(tmp_path / "mnt")
    mp = str(tmp_path / "mnt")
    status, lines = run_bad(base_args(sshd, remote[0], mp,
                                      UserKnownHostsFile=str(kh)), mp)
    assert status == 1
    assert_one_line(lines, "host key", "127.0.0.1")
    assert kh.read_text() == "", "StrictHostKeyChecking=yes must not add keys"


def test_changed_host_key(sshd, remote, tmp_path):
    other = sshdfix.keygen(str(tmp_path / "otherhost"), "impostor")
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[{sshd.host}]:{sshd.port} {' '.join(other.split()[:2])}\n")
    os.mkdir(tmp_path / "mnt")
    mp = str(tmp_path / "mnt")
    status, lines = run_bad(base_args(sshd, remote[0], mp,
                                      UserKnownHostsFile=str(kh)), mp)
    assert status == 1
    assert_one_line(lines, "host key", "127.0.0.1")


def test_missing_remote_directory(sshd, remote, tmp_path):
    mp = str(tmp_path)
    missing = remote[0] + "/no-such-folder"
    status, lines = run_bad(base_args(sshd, missing, mp), mp)
    assert status == 1
    assert_one_line(lines, "no-such-folder")


def test_remote_path_is_a_file(sshd, remote, tmp_path):
    mp = str(tmp_path)
    open(os.path.join(remote[1], "plain"), "w").close()
    status, lines = run_bad(base_args(sshd, remote[0] + "/plain", mp), mp)
    assert status == 1
    assert_one_line(lines, "plain")


# ---- mountpoint problems (exit 4) ---------------------------------------------------

def test_missing_mountpoint(sshd, remote, tmp_path):
    mp = str(tmp_path / "does-not-exist")
    status, lines = run_bad(base_args(sshd, remote[0], mp), mp)
    assert status == 4
    assert_one_line(lines, "does-not-exist")
    assert not os.path.exists(mp)


def test_mountpoint_is_a_file(sshd, remote, tmp_path):
    mp = str(tmp_path / "file")
    open(mp, "w").close()
    status, lines = run_bad(base_args(sshd, remote[0], mp), mp)
    assert status == 4
    assert_one_line(lines, "file")


def test_mountpoint_already_live_mount(sshd, remote, mount_steadyfs):
    spec, srv = remote
    m = mount_steadyfs(sshd, remote_subdir=os.path.basename(srv))
    open(os.path.join(srv, "seen"), "w").close()
    status, lines = run_bad(base_args(sshd, spec, m.mountpoint), m.mountpoint,
                            mounted_before=1)
    assert status == 4
    assert_one_line(lines, m.mountpoint)
    # the first mount is untouched, and there is still only one
    assert m.alive()
    assert names(m.mountpoint) == ["seen"]
    assert len([x for x in mounts.mounts_at(m.mountpoint)
                if x["fstype"].startswith("fuse")]) == 1


def _stale_then_mount(sshd, srv, mount_sshfs, wait_stat):
    old = mount_sshfs(sshd, remote_subdir=os.path.basename(srv))
    old.kill_daemon()
    r = mounts.call_in_child("listdir", old.mountpoint)
    assert r["errno"] == errno.ENOTCONN, r
    deadline = time.monotonic() + 10
    while wait_stat:
        # the kernel answers stat of the root from its attribute cache
        # (sshfs: 1 s) even after the daemon died
        r = mounts.call_in_child("stat", old.mountpoint)
        if r["errno"] == errno.ENOTCONN:
            break
        assert time.monotonic() < deadline, r
        time.sleep(0.1)
    open(os.path.join(srv, "after"), "w").close()
    # mounts.mount_steadyfs() cannot be used: its os.makedirs(mountpoint,
    # exist_ok=True) raises FileExistsError on a stale mountpoint
    cmd = [steadyfs()] + base_args(sshd, f"{sshd.user}@{sshd.host}:{srv}",
                                   old.mountpoint)
    m = mounts.Mount("steadyfs", cmd, old.mountpoint,
                     old.stderr_path + ".steadyfs", sshd)
    try:
        m.start()
        assert names(m.mountpoint) == ["after"]
        here = mounts.mounts_at(m.mountpoint)
        assert [x["fstype"] for x in here] == ["fuse.steadyfs"], here
        logged = [line for line in m.stderr_text().splitlines()
                  if "stale mount" in line]
        assert len(logged) == 1, m.stderr_text()
        assert m.mountpoint in logged[0]
    finally:
        m.cleanup()
        m.remove_mirror()
    assert not m.problems(), m.problems()


def test_mountpoint_stale_sshfs(sshd, remote, mount_sshfs):
    """A killed sshfs leaves ENOTCONN at its mountpoint: steadyfs lazily
    unmounts it, says so, and mounts there."""
    _stale_then_mount(sshd, remote[1], mount_sshfs, True)


def test_mountpoint_stale_sshfs_attrs_cached(sshd, remote, mount_sshfs):
    """The same at once after the kill, while stat of the dead mount's
    root is still answered from the kernel's attribute cache: the mount
    is just as stale (listing it gives ENOTCONN)."""
    _stale_then_mount(sshd, remote[1], mount_sshfs, False)


# ---- hostile input and the mount's options (issue 15) ---------------------------

NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def open_mountpoint():
    """A mountpoint in a world-traversable folder, so that another user
    can reach the mount (pytest's tmp_path is root's alone)."""
    mp = tempfile.mkdtemp(prefix="steadyfs-safety-", dir="/tmp")
    os.chmod(mp, 0o755)
    return mp


def super_options(mountpoint):
    """(mount options, source, super options) of the mount on
    `mountpoint` as the kernel lists it (the last one)."""
    found = None
    mp = os.path.realpath(mountpoint)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.rstrip("\n").partition(" - ")
            lf, rf = left.split(" "), right.split(" ")
            if mounts._unescape(lf[4]) == mp:
                found = (lf[5].split(","), mounts._unescape(rf[1]), rf[2].split(","))
    assert found, f"no mount on {mp}"
    return found


def test_allow_other_implies_default_permissions(sshd, remote, tmp_path):
    """Finding 4: with allow_other alone (the archive's fstab line before
    default_permissions was added), a real non-root user can neither read
    nor append to a root-owned 0600 file: the kernel checks permissions
    because allow_other implies default_permissions, and the keeper says
    so once."""
    if not mounts.fuse_available() or not shutil.which("setpriv"):
        pytest.skip("needs /dev/fuse and setpriv")
    _, srv = remote
    secret = os.path.join(srv, "secret.txt")
    with open(secret, "w") as f:
        f.write("root only\n")
    os.chmod(secret, 0o600)
    mp = open_mountpoint()
    m = None
    try:
        m = mounts.mount_steadyfs(sshd, mountpoint=mp, workdir=str(tmp_path),
                                  remote_subdir=os.path.basename(srv),
                                  opts={"allow_other": True})
        path = m.path("secret.txt")
        st = os.stat(path)
        assert (st.st_uid, st.st_mode & 0o777) == (0, 0o600)
        r = subprocess.run(NOBODY + ["cat", path], capture_output=True,
                           timeout=RUN_TIMEOUT)
        assert r.returncode != 0 and b"Permission denied" in r.stderr, r
        r = subprocess.run(NOBODY + ["sh", "-c", 'echo pwned >> "$1"', "sh", path],
                           capture_output=True, timeout=RUN_TIMEOUT)
        assert r.returncode != 0 and b"Permission denied" in r.stderr, r
        with open(secret) as f:
            assert f.read() == "root only\n"
        # root (the mount's user) still reads it; nobody still lists the root
        with open(path) as f:
            assert f.read() == "root only\n"
        r = subprocess.run(NOBODY + ["ls", mp], capture_output=True,
                           timeout=RUN_TIMEOUT)
        assert r.returncode == 0 and b"secret.txt" in r.stdout, r
        assert "default_permissions" in super_options(mp)[2]
        said = [line for line in m.stderr_text().splitlines()
                if "default_permissions is implied" in line]
        assert len(said) == 1, m.stderr_text()
    finally:
        if m:
            m.cleanup()
            m.remove_mirror()
        os.rmdir(mp)
    assert not m.problems(), m.problems()


@pytest.mark.parametrize("name", ["data,suid,dev", "back\\slash,dev"])
def test_comma_in_remote_path_injects_no_option(sshd, remote, mount_steadyfs, name):
    """Finding 5: a comma in the remote folder's name used to end the
    fsname and add the rest as mount options (`...data,suid,dev` mounted
    without nosuid,nodev). The source is now escaped for libfuse, shows
    whole in the mount table, and the mount is nosuid,nodev."""
    _, srv = remote
    sub = os.path.join(os.path.basename(srv), name)
    os.makedirs(os.path.join(srv, name))
    with open(os.path.join(srv, name, "f"), "w") as f:
        f.write("in the folder\n")
    m = mount_steadyfs(sshd, remote_subdir=sub)
    mopts, source, sopts = super_options(m.mountpoint)
    assert "nosuid" in mopts and "nodev" in mopts, mopts
    assert source == f"{sshd.user}@{sshd.host}:{os.path.join(srv, name)}", source
    assert not set(sopts) & {"suid", "dev"}, sopts
    with open(m.path("f")) as f:
        assert f.read() == "in the folder\n"


def test_suid_and_dev_only_when_asked(sshd, remote, mount_steadyfs):
    """The operator's explicit `suid,dev` still reaches the mount."""
    m = mount_steadyfs(sshd, remote_subdir=os.path.basename(remote[1]),
                       opts={"suid": True, "dev": True})
    mopts = super_options(m.mountpoint)[0]
    assert "nosuid" not in mopts and "nodev" not in mopts, mopts


def test_log_escapes_control_characters_in_names(sshd, remote, mount_steadyfs):
    """Finding 7: a name on the server holding a newline and text shaped
    like a log line does not forge a line in the daemon's log: the
    newline is written as \\x0a inside the one line that names it."""
    _, srv = remote
    forged = "steadyfs: warning: FORGED line from a file name"
    # (no other control character: a raw \r in a mount's source would
    # upset other tools that split /proc/self/mountinfo on whitespace)
    name = "evil\n" + forged
    os.makedirs(os.path.join(srv, name))
    m = mount_steadyfs(sshd, remote_subdir=os.path.join(os.path.basename(srv), name))
    os.listdir(m.mountpoint)
    text = m.stderr_text()
    lines = text.splitlines()
    assert not any(line.startswith("steadyfs: warning: FORGED") for line in lines), text
    named = [line for line in lines if "evil\\x0asteadyfs: warning: FORGED" in line]
    assert named, text


# ---- --upgrade signals only the keeper of that very mount (finding 6) ---------

_VICTIM = r"""
import signal, sys, time
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
print("ready", flush=True)
time.sleep(120)
"""
SIGUSR2_BIT = 1 << (12 - 1)


def start_victim():
    """A process with SIGUSR2 blocked: a signal sent to it stays pending,
    so the test sees for sure whether it was signalled."""
    p = subprocess.Popen([sys.executable, "-c", _VICTIM], stdout=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, text=True)
    assert p.stdout.readline().strip() == "ready"
    return p


def signalled(pid):
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return bool((int(fields["SigPnd"], 16) | int(fields["ShdPnd"], 16)) & SIGUSR2_BIT)


def fake_status(folder, pid):
    os.makedirs(os.path.join(folder, ".control"), exist_ok=True)
    with open(os.path.join(folder, ".control", "status.json"), "w") as f:
        json.dump({"state": "connected", "keeper_pid": pid, "generation": 1,
                   "upgrades_failed": 0}, f)


def upgrade(path, timeout=10):
    """(exit status, stderr lines); status None when still waiting for the
    upgrade after `timeout` s (it signalled someone)."""
    try:
        r = subprocess.run([steadyfs(), "--upgrade", path], capture_output=True,
                           text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return None, ["still waiting for an upgrade"]
    return r.returncode, [line for line in r.stderr.splitlines() if line.strip()]


def test_upgrade_refuses_forged_keeper_through_a_bind(sshd, remote, mount_steadyfs,
                                                      tmp_path):
    """A file on the server, j1/.control/status.json, seen through a bind
    mount of the steadyfs subfolder j1 (fstype fuse.steadyfs, the real
    mount's device) names another process: --upgrade on the bind refuses
    with exit 5 and one line, and the process gets no signal."""
    _, srv = remote
    victim = start_victim()
    bind = str(tmp_path / "hot-j1")
    os.makedirs(bind)
    m = mount_steadyfs(sshd, remote_subdir=os.path.basename(srv))
    try:
        fake_status(os.path.join(srv, "j1"), victim.pid)
        subprocess.run(["mount", "--bind", m.path("j1"), bind], check=True, timeout=10)
        try:
            assert mounts.mounts_at(bind)[-1]["fstype"] == "fuse.steadyfs"
            rc, lines = upgrade(bind)
            assert not signalled(victim.pid), "the forged pid was signalled"
            assert rc == 5, (rc, lines)
            assert_one_line(lines, "refusing to signal")
        finally:
            subprocess.run(["umount", "-l", bind], timeout=10)
    finally:
        victim.kill()
        victim.wait(10)


def fake_steadyfs(sshd, remote_subdir, workdir):
    """An sshfs mount that calls itself fuse.steadyfs (subtype=steadyfs)."""
    mp = tempfile.mkdtemp(prefix="fake-steadyfs-", dir=workdir)
    cmd = ["sshfs", f"{sshd.user}@{sshd.host}:{os.path.join(sshd.remote_dir, remote_subdir)}",
           mp, "-f", "-p", str(sshd.port), "-F", "/dev/null", "-o",
           f"IdentityFile={sshd.key},UserKnownHostsFile={sshd.known_hosts},"
           "StrictHostKeyChecking=yes,BatchMode=yes,subtype=steadyfs"]
    m = mounts.Mount("sshfs", cmd, mp, os.path.join(workdir, "fake-steadyfs.stderr"),
                     sshd, expect_errors=True)
    m.fstype = "fuse.steadyfs"
    return m.start()


def test_upgrade_refuses_keeper_of_another_mount(sshd, remote, mount_steadyfs, tmp_path):
    """A FUSE mount of type fuse.steadyfs that is not a steadyfs (here an
    sshfs with subtype=steadyfs; a user could make one with fusermount3)
    serves a .control/status.json naming first a process of the test, then
    the keeper of a real steadyfs mount: a steadyfs binary run by root,
    but holding another FUSE connection. Both are refused (exit 5), and
    neither is signalled."""
    _, srv = remote
    victim = start_victim()
    fake = None
    try:
        real = mount_steadyfs(sshd, remote_subdir=os.path.basename(srv))
        fake_dir = os.path.join(os.path.basename(srv), "fake")
        os.makedirs(os.path.join(sshd.remote_dir, fake_dir))
        fake = fake_steadyfs(sshd, fake_dir, str(tmp_path))
        fake_status(os.path.join(sshd.remote_dir, fake_dir), victim.pid)
        rc, lines = upgrade(fake.mountpoint)
        assert not signalled(victim.pid), "the forged pid was signalled"
        assert rc == 5, (rc, lines)
        assert_one_line(lines, "refusing to signal", str(victim.pid))

        fake_status(os.path.join(sshd.remote_dir, fake_dir), real.pid)
        rc, lines = upgrade(fake.mountpoint)
        assert rc == 5, (rc, lines)
        assert_one_line(lines, "FUSE connection")
        assert "upgrade requested" not in real.stderr_text()
        # the real one is still upgradable through its own mountpoint
        rc, lines = upgrade(real.mountpoint, RUN_TIMEOUT)
        assert rc == 0, (rc, lines)
    finally:
        if fake:
            fake.cleanup()
        victim.kill()
        victim.wait(10)


_USER_MOUNT = r"""
set -e
# This namespace only: a 0666 /dev/fuse as on stock Debian, and
# user_allow_other in /etc/fuse.conf (without it root could not even read
# the user's mount); the machine's own files are not touched.
mount --bind "$NODE" /dev/fuse
mount --bind "$CONF" /etc/fuse.conf
setpriv --reuid=nobody --regid=nogroup --clear-groups sshfs -f -F /dev/null \
    -o "allow_other,subtype=steadyfs,IdentityFile=$KEY,UserKnownHostsFile=$KH" \
    -o StrictHostKeyChecking=yes,BatchMode=yes -p "$PORT" "$SRC" "$MP" &
fs=$!
for i in $(seq 200); do
    grep -q " $MP " /proc/self/mountinfo && break
    kill -0 $fs 2>/dev/null || break
    sleep 0.05
done
grep " $MP " /proc/self/mountinfo | sed 's/^/mountinfo: /'
set +e
timeout 10 "$STEADYFS" --upgrade "$MP" 2>&1 | sed 's/^/upgrade: /'
echo "rc: ${PIPESTATUS[0]}"
kill $fs; wait $fs
"""


def test_upgrade_refuses_a_users_fuse_mount(sshd, remote, tmp_path):
    """A real unprivileged user's FUSE mount (made by nobody through the
    setuid fusermount3, with /dev/fuse 0666 as on stock Debian and
    user_allow_other, both bound over the machine's files in a private
    mount namespace, so those are untouched) of type fuse.steadyfs whose
    .control/status.json names a process: --upgrade refuses (exit 5, the
    mount's user_id named) and the process is not signalled."""
    if not shutil.which("sshfs") or not shutil.which("unshare"):
        pytest.skip("needs sshfs and unshare")
    _, srv = remote
    victim = start_victim()
    base = open_mountpoint()
    try:
        fake_status(srv, victim.pid)
        node, mp = os.path.join(base, "fuse"), os.path.join(base, "mnt")
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(10, 229))
        os.chmod(node, 0o666)
        os.mkdir(mp)
        conf = os.path.join(base, "fuse.conf")
        with open(conf, "w") as f:
            f.write("user_allow_other\n")
        key, kh = os.path.join(base, "key"), os.path.join(base, "known_hosts")
        shutil.copy(sshd.key, key)
        shutil.copy(sshd.known_hosts, kh)
        for p in (mp, key, kh):
            os.chown(p, 65534, 65534)
        env = dict(os.environ, NODE=node, CONF=conf, KEY=key, KH=kh, PORT=str(sshd.port), MP=mp,
                   SRC=f"{sshd.user}@{sshd.host}:{srv}", STEADYFS=steadyfs())
        r = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c",
                            _USER_MOUNT], env=env, capture_output=True, text=True,
                           timeout=60, stdin=subprocess.DEVNULL)
        out = r.stdout.splitlines()
        info = [line for line in out if line.startswith("mountinfo: ")]
        assert info and " fuse.steadyfs " in info[0] and "user_id=65534" in info[0] \
            and "allow_other" in info[0], r.stdout + r.stderr
        assert not signalled(victim.pid), "the forged pid was signalled"
        assert "rc: 5" in out, r.stdout
        said = [line for line in out if line.startswith("upgrade: ")]
        assert len(said) == 1 and "made by uid 65534" in said[0], said
    finally:
        victim.kill()
        victim.wait(10)
        shutil.rmtree(base, ignore_errors=True)


# ---- the kernel's FUSE request timeout (finding 10) ------------------------------

def test_kernel_request_timeout_warning(sshd, remote, mount_steadyfs):
    """With fs.fuse.max_request_timeout at 600 s, a mount whose calls may
    wait 2 x op_timeout + 60 s (op_timeout=400: 860 s) is warned about at
    start, naming the sysctl and the value it needs; one at test scale
    (op_timeout=4: 68 s) is not. The sysctl is restored at once."""
    sub = os.path.basename(remote[1])
    with kerneltimeout.request_timeout("max_request_timeout", 600):
        slow = mount_steadyfs(sshd, remote_subdir=sub, opts={"op_timeout": 400})
        fast = mount_steadyfs(sshd, remote_subdir=sub)
    warned = [line for line in slow.stderr_text().splitlines()
              if "max_request_timeout" in line]
    assert len(warned) == 1 and "warning:" in warned[0], slow.stderr_text()
    assert "600 s" in warned[0] and "at least 860" in warned[0], warned
    assert not [line for line in fast.stderr_text().splitlines()
                if "warning:" in line and "request_timeout" in line], fast.stderr_text()


def test_no_leftover_mounts(tmp_path_factory):
    """Nothing this file started is still mounted (runs last)."""
    root = str(tmp_path_factory.getbasetemp())
    assert mounts.fuse_mounts_under(root) == []
    assert shutil.which("fusermount3")
