"""What a server says is not trusted (issue 14, findings 4, 7, 8 and 9).

  rename fallback   without posix-rename@, a rename over an existing target
                    replaces it only when the rename can be done: a target
                    is never lost to a rename that fails (finding 4)
  long paths        a remote path over 4096 bytes is ENAMETOOLONG, not
                    ENOMEM (finding 7)
  remote names      names with '/' or NUL, empty, extra '.'/'..' or over
                    255 bytes are skipped, logged once, counted (finding 8)
  limits@           tiny or huge limits never make a request the codec
                    cannot carry: no reconnect loop, no leaked handles
                    (finding 9)

The lying servers are test/sftpshim.py: OpenSSH's sftp-server behind a
relay that rewrites some replies, run by a private sshd as its `sftp`
subsystem.
"""

import errno
import hashlib
import json
import os
import re
import subprocess
import time

import pytest

import mounts
from test_ops import read_file, write_file

MiB = 1 << 20
SHIM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sftpshim.py")

pytestmark = pytest.mark.skipif(not mounts.fuse_available(),
                                reason="/dev/fuse is missing")


def lying_sshd(make_sshd, tmp_path, **cfg):
    """A private sshd whose sftp subsystem is the shim with `cfg`."""
    n = len(list(tmp_path.glob("shim-*.json")))
    path = tmp_path / f"shim-{n}.json"
    path.write_text(json.dumps(cfg))
    return make_sshd(sftp_server="/usr/bin/python3", sftp_args=[SHIM, str(path)])


def errno_of(fn, *args, **kw):
    try:
        fn(*args, **kw)
    except OSError as e:
        return e.errno
    return 0


def status(m):
    """.control/status as a dict."""
    out = {}
    for line in read_file(m.path(".control", "status")).decode().splitlines():
        key, _, value = line.partition(": ")
        out[key] = value
    return out


def leftovers(folder):
    return [n for n in os.listdir(folder) if n.startswith(".steadyfs-")]


class immutable:
    """chattr +i on a server-side folder (root ignores mode bits; the
    immutable flag it does not), always undone."""

    def __init__(self, path):
        self.path = path

    def __enter__(self):
        subprocess.run(["chattr", "+i", self.path], check=True, timeout=10)
        return self.path

    def __exit__(self, *exc):
        subprocess.run(["chattr", "-i", self.path], check=True, timeout=10)
        return False


# ---- finding 4: the rename fallback -----------------------------------------

@pytest.fixture
def no_posix_rename(make_sshd, mount_steadyfs):
    """(mount, server folder) of a server without posix-rename@."""
    s = make_sshd(sftp_args=["-P", "posix-rename"])
    m = mount_steadyfs(s, expect_errors=True)
    return m, s.remote_dir


@pytest.mark.timeout(60)
def test_rename_fallback_source_cannot_move(no_posix_rename):
    """The source's folder is read-only: the server refuses the rename
    after the target was out of the way. The target must come back."""
    m, srv = no_posix_rename
    os.mkdir(os.path.join(srv, "ro"))
    write_file(os.path.join(srv, "ro", "a"), b"new")
    write_file(os.path.join(srv, "target"), b"precious")
    os.stat(m.path("ro", "a"))
    os.stat(m.path("target"))
    with immutable(os.path.join(srv, "ro")):
        e = errno_of(os.rename, m.path("ro", "a"), m.path("target"))
        assert e in (errno.EACCES, errno.EPERM), os.strerror(e)
        assert read_file(os.path.join(srv, "target")) == b"precious"
        assert read_file(os.path.join(srv, "ro", "a")) == b"new"
    assert not leftovers(srv)
    assert read_file(m.path("target")) == b"precious"


@pytest.mark.timeout(60)
def test_rename_fallback_target_folder_read_only(no_posix_rename):
    """The target cannot be moved out of the way: the rename fails with
    the server's reason (not EIO) and nothing changes."""
    m, srv = no_posix_rename
    os.mkdir(os.path.join(srv, "ro"))
    write_file(os.path.join(srv, "ro", "target"), b"precious")
    write_file(os.path.join(srv, "a"), b"new")
    os.stat(m.path("ro", "target"))
    with immutable(os.path.join(srv, "ro")):
        e = errno_of(os.rename, m.path("a"), m.path("ro", "target"))
        assert e in (errno.EACCES, errno.EPERM), os.strerror(e)
    assert read_file(os.path.join(srv, "ro", "target")) == b"precious"
    assert read_file(os.path.join(srv, "a")) == b"new"
    assert not leftovers(srv) and not leftovers(os.path.join(srv, "ro"))


@pytest.mark.timeout(60)
def test_rename_fallback_folders(no_posix_rename):
    """A folder over an empty folder is replaced (POSIX rename); over a
    full one it is ENOTEMPTY and nothing moves."""
    m, srv = no_posix_rename
    for d in ("src", "empty", "full"):
        os.mkdir(os.path.join(srv, d))
    write_file(os.path.join(srv, "src", "f"), b"f")
    write_file(os.path.join(srv, "full", "keep"), b"keep")
    assert errno_of(os.rename, m.path("src"), m.path("full")) == errno.ENOTEMPTY
    assert read_file(os.path.join(srv, "full", "keep")) == b"keep"
    assert read_file(os.path.join(srv, "src", "f")) == b"f"
    os.rename(m.path("src"), m.path("empty"))
    assert read_file(os.path.join(srv, "empty", "f")) == b"f"
    assert not os.path.exists(os.path.join(srv, "src"))
    # A file over a file still works, and leaves nothing behind.
    write_file(os.path.join(srv, "t"), b"old")
    write_file(m.path("n"), b"new")
    os.rename(m.path("n"), m.path("t"))
    assert read_file(os.path.join(srv, "t")) == b"new"
    assert not leftovers(srv)
    # A source gone from the server (the kernel still knows it): ENOENT,
    # the target untouched.
    write_file(os.path.join(srv, "gone"), b"x")
    os.stat(m.path("gone"))
    os.unlink(os.path.join(srv, "gone"))
    assert errno_of(os.rename, m.path("gone"), m.path("t")) == errno.ENOENT
    assert read_file(os.path.join(srv, "t")) == b"new"


@pytest.mark.timeout(60)
def test_rename_fallback_vague_server(make_sshd, mount_steadyfs, tmp_path):
    """A server that answers every refused RENAME with a bare "failure":
    a missing source over an existing target is ENOENT, the target
    untouched; a real replacement still works."""
    s = lying_sshd(make_sshd, tmp_path, server_args=["-P", "posix-rename"],
                   vague_renames=True)
    srv = s.remote_dir
    write_file(os.path.join(srv, "target"), b"precious")
    write_file(os.path.join(srv, "gone"), b"x")
    m = mount_steadyfs(s, expect_errors=True,
                       opts={"entry_timeout": 60, "attr_timeout": 60})
    os.stat(m.path("gone"))
    os.stat(m.path("target"))
    os.unlink(os.path.join(srv, "gone"))  # behind the kernel's cache
    assert errno_of(os.rename, m.path("gone"), m.path("target")) == errno.ENOENT
    assert read_file(os.path.join(srv, "target")) == b"precious"
    write_file(m.path("new"), b"new")
    os.rename(m.path("new"), m.path("target"))
    assert read_file(os.path.join(srv, "target")) == b"new"
    assert not os.path.exists(os.path.join(srv, "new"))
    assert not leftovers(srv)


@pytest.mark.timeout(60)
def test_rename_fallback_lost_reply_is_settled(make_sshd, mount_steadyfs, tmp_path):
    """The session dies right after the server moved the target aside:
    the fallback sees the target gone and finishes the rename."""
    s = lying_sshd(make_sshd, tmp_path, server_args=["-P", "posix-rename"],
                   lose_rename_to=b".steadyfs-replaced-".hex())
    srv = s.remote_dir
    write_file(os.path.join(srv, "target"), b"old")
    m = mount_steadyfs(s, expect_errors=True, opts={"connections": 2})
    write_file(m.path("new"), b"new")
    os.rename(m.path("new"), m.path("target"))
    assert read_file(os.path.join(srv, "target")) == b"new"
    assert not os.path.exists(os.path.join(srv, "new"))
    assert not leftovers(srv)


# ---- finding 7: long remote paths -------------------------------------------

@pytest.mark.timeout(60)
def test_path_over_4096_bytes_is_enametoolong(sshd, remote_subdir, mount_steadyfs):
    m = mount_steadyfs(sshd, remote_subdir=remote_subdir)
    remote = os.path.join(sshd.remote_dir, remote_subdir)
    name = "d" * 250
    fd = os.open(m.path(), os.O_RDONLY | os.O_DIRECTORY)
    depth, err = 0, 0
    try:
        while depth < 40:
            err = errno_of(os.mkdir, name, dir_fd=fd)
            if err:
                break
            nfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd, depth = nfd, depth + 1
        assert err == errno.ENAMETOOLONG, os.strerror(err) if err else "no error"
        # The remote path of the refused folder is over the limit, its
        # parent's is not: each name is fine, the whole is too long.
        assert len(remote) + (depth + 1) * (len(name) + 1) > 4096
        assert len(remote) + depth * (len(name) + 1) <= 4096
        for call in (lambda: os.stat(name, dir_fd=fd),
                     lambda: os.open(name, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd),
                     lambda: os.symlink("x", name, dir_fd=fd)):
            assert errno_of(call) == errno.ENAMETOOLONG
        # Shorter names still fit where they fit.
        assert errno_of(os.mkdir, "s", dir_fd=fd) in (0, errno.ENAMETOOLONG)
        os.listdir(fd)
    finally:
        os.close(fd)


# ---- finding 8: remote names ------------------------------------------------

BAD_NAMES = [b"ev/il", b"pass\0wd", b"", b".", b"..", b"x" * 256,
             b"esc\x1b[2J/\n"]


@pytest.mark.timeout(60)
def test_bad_remote_names_are_skipped(make_sshd, mount_steadyfs, tmp_path):
    s = lying_sshd(make_sshd, tmp_path, names=[n.hex() for n in BAD_NAMES])
    srv = s.remote_dir
    os.mkdir(os.path.join(srv, "d"))
    for n in ("pass", "good", "line\nfeed"):
        write_file(os.path.join(srv, "d", n), b"ok")
    m = mount_steadyfs(s, expect_errors=True)
    for _ in range(2):
        assert sorted(os.listdir(m.path("d"))) == ["good", "line\nfeed", "pass"]
        with os.scandir(m.path("d")) as it:  # readdirplus too
            assert sorted(e.name for e in it) == ["good", "line\nfeed", "pass"]
    assert sorted(os.listdir(m.path())) == [".control", "d"]
    # Each bad name of each folder logged once, with control bytes escaped.
    log = m.stderr_text()
    assert log.count("ev/il") == 2, log          # d and the root
    assert "\x1b" not in log
    assert "\\x1b" in log
    st = status(m)
    assert int(st["remote_names_skipped"]) >= 2 * (len(BAD_NAMES) - 2), st
    assert "remote_names_skipped" in read_file(m.path(".control", "status.json")).decode()
    metrics = read_file(m.path(".control", "metrics")).decode()
    assert re.search(r"^steadyfs_remote_names_skipped_total\{[^}]*\} [1-9]", metrics, re.M)


# ---- finding 9: limits@ -----------------------------------------------------

def sftp_server_fds(server):
    """Open descriptors of the real sftp-server processes under `server`."""
    total = 0
    for pid in server.sftp_server_pids():
        try:
            total += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            pass
    return total


def wait_connected(m, timeout=20):
    """The status once every session is up (polled, with a deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        st = status(m)
        if st["state"] == "connected" or time.monotonic() > deadline:
            assert st["state"] == "connected", st
            return st
        time.sleep(0.05)


def check_big_io(m, s):
    """1 MiB written through the mount in one call, and 1 MiB read back
    (written on the server side, so the page cache cannot answer)."""
    data = os.urandom(MiB)
    fd = os.open(m.path("w"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        assert os.write(fd, data) == MiB
        os.fsync(fd)
    finally:
        os.close(fd)
    assert read_file(os.path.join(s.remote_dir, "w")) == data
    other = os.urandom(3 * MiB)
    write_file(os.path.join(s.remote_dir, "r"), other)
    got = read_file(m.path("r"))
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(other).hexdigest()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("limits,serve_reads", [
    ([512, 100, 100, 64], False),                    # under 1024: underflow
    ([1 << 40, 16 * MiB, 16 * MiB, 0], True),        # huge, reads honoured
    ([0, (1 << 64) - 1, 1, 1], True),
], ids=["tiny", "huge", "odd"])
def test_lying_limits(limits, serve_reads, make_sshd, mount_steadyfs, tmp_path):
    s = lying_sshd(make_sshd, tmp_path, limits=limits, serve_reads=serve_reads)
    m = mount_steadyfs(s, expect_errors=True, opts={"connections": 2})
    before = wait_connected(m)
    base_fds = sftp_server_fds(s)
    check_big_io(m, s)
    check_big_io(m, s)
    after = status(m)
    # No session was lost on the way: the same sessions did all of it.
    for key in ("reconnects", "reconnect_attempts", "state"):
        assert after[key] == before[key], (key, before, after)
    assert sftp_server_fds(s) <= base_fds + 4, (base_fds, sftp_server_fds(s))
    assert "limits@openssh.com" in m.stderr_text()
