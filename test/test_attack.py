"""Attacks from the outside on "a descriptor keeps its file" (issue 14 and
docs/retries.md): ordinary tools and patterns (log rotation, the
temp-then-rename dance of editors and git, rename chains, hard links,
rmdir of a folder of unlinked-open files) through a real mount, each with
a fault in the middle (the sftp-server killed, the daemon killed, a live
upgrade), compared with what a local filesystem gives for the same
script; and names that look like the mount's hidden names.

Every script runs on the mount and, where it makes sense, on a local
folder (tmp_path, the reference): the two must agree, and the server
must hold what the local folder holds.
"""

import errno
import os
import shutil
import subprocess

import pytest

import mounts
from test_identity import (kill_sessions, private, read_file,  # noqa: F401
                           restart_daemon, server_names, wait_until)
from workloads import MOUNT_OPTS

pytestmark = pytest.mark.skipif(not mounts.fuse_available(),
                                reason="/dev/fuse is missing")


def upgrade_daemon(m):
    """`steadyfs --upgrade`: the next daemon takes over from a live one."""
    old = m.daemon_pid()
    assert old
    p = subprocess.run([os.path.join(mounts.build_dir(), "steadyfs"), "--upgrade",
                        m.mountpoint], capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    assert wait_until(lambda: m.daemon_pid() not in (None, old), 10), \
        "no new daemon after the upgrade"


def fault(kind, m, server):
    """One of the faults a descriptor must survive, in the middle of a
    script: the sessions die, the daemon is killed, or upgraded."""
    if kind == "sessions":
        kill_sessions(server)
    elif kind == "kill":
        restart_daemon(m)
    elif kind == "upgrade":
        upgrade_daemon(m)


FAULTS = ["sessions", "kill", "upgrade"]


def local_dir(tmp_path):
    """The reference: a local folder (tmp_path itself holds the mounts)."""
    d = tmp_path / "local"
    d.mkdir()
    return str(d)


def listing(d):
    return sorted(n for n in os.listdir(d) if n != ".control")


# ---- log rotation while a writer appends --------------------------------------

def rotate_create(d, writer_fd, between):
    """logrotate `create`: mv log log.1, a new log, the writer goes on
    (it has not been told yet), then reopens (SIGHUP) and writes to the
    new log."""
    os.write(writer_fd, b"line 1\n")
    os.rename(os.path.join(d, "log"), os.path.join(d, "log.1"))
    fd2 = os.open(os.path.join(d, "log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    between()
    os.write(writer_fd, b"line 2, late\n")
    os.fsync(writer_fd)
    os.close(writer_fd)
    os.write(fd2, b"line 3, new log\n")
    os.close(fd2)


def rotate_copytruncate(d, writer_fd, between):
    """logrotate `copytruncate`: cp log log.1; truncate log to 0; the
    O_APPEND writer goes on at the new end (0), no hole."""
    os.write(writer_fd, b"line 1\n")
    shutil.copyfile(os.path.join(d, "log"), os.path.join(d, "log.1"))
    os.truncate(os.path.join(d, "log"), 0)
    between()
    os.write(writer_fd, b"line 2\n")
    os.fsync(writer_fd)
    os.close(writer_fd)


def run_rotation(rotate, d, between=lambda: None):
    fd = os.open(os.path.join(d, "log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    rotate(d, fd, between)
    return {n: read_file(os.path.join(d, n)) for n in listing(d)}


@pytest.mark.timeout(90)
@pytest.mark.parametrize("rotate", [rotate_create, rotate_copytruncate],
                         ids=["create", "copytruncate"])
@pytest.mark.parametrize("kind", FAULTS)
def test_logrotate_while_appending(private, tmp_path, rotate, kind):
    m, server, remote = private(expect_errors=kind != "sessions")
    want = run_rotation(rotate, local_dir(tmp_path))
    got = run_rotation(rotate, m.mountpoint, lambda: fault(kind, m, server))
    assert got == want
    assert {n: read_file(os.path.join(remote, n)) for n in server_names(remote)} == want


# ---- write to a temporary name, then rename over ---------------------------------

def lockfile_dance(d, between):
    """git's x.lock, editors' and rsync's temporary files, `cp` then `mv`,
    sed -i, os.replace: a reader and a writer hold x open while a new x
    is written under another name and renamed over it; both keep the old
    file, which is gone from the folder once they close it."""
    x = os.path.join(d, "x")
    with open(x, "wb") as f:
        f.write(b"old contents\n")
    reader = os.open(x, os.O_RDONLY)
    writer = os.open(x, os.O_WRONLY)
    try:
        lock = os.open(x + ".lock", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(lock, b"new contents\n")
        os.fsync(lock)
        os.close(lock)
        os.rename(x + ".lock", x)
        between()
        os.pwrite(writer, b"OLD", 0)
        os.fsync(writer)
        seen = os.pread(reader, 100, 0)
    finally:
        os.close(writer)
        os.close(reader)
    return seen, {n: read_file(os.path.join(d, n)) for n in listing(d)}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", FAULTS)
def test_lockfile_rename_over_open_file(private, tmp_path, kind):
    m, server, remote = private(expect_errors=kind != "sessions")
    want = lockfile_dance(local_dir(tmp_path), lambda: None)
    assert want == (b"OLD contents\n", {"x": b"new contents\n"})
    assert lockfile_dance(m.mountpoint, lambda: fault(kind, m, server)) == want
    assert wait_until(lambda: server_names(remote) == ["x"], 5), server_names(remote)
    assert read_file(os.path.join(remote, "x")) == b"new contents\n"


def tools_over_open_file(d):
    """sed -i, rsync (default: temp then rename) and Python's
    tempfile + os.replace, each while a descriptor holds the old file."""
    x = os.path.join(d, "x")
    src = os.path.join(d, "src")
    with open(x, "wb") as f:
        f.write(b"alpha\n")
    with open(src, "wb") as f:
        f.write(b"from rsync\n")
    held = []
    try:
        held.append(os.open(x, os.O_RDONLY))
        subprocess.run(["sed", "-i", "s/alpha/beta/", x], check=True, timeout=30)
        held.append(os.open(x, os.O_RDONLY))
        if shutil.which("rsync"):
            subprocess.run(["rsync", src, x], check=True, timeout=30)
        else:
            shutil.copyfile(src, x + ".tmp")
            os.replace(x + ".tmp", x)
        held.append(os.open(x, os.O_RDONLY))
        import tempfile
        with tempfile.NamedTemporaryFile(dir=d, delete=False) as t:
            t.write(b"gamma\n")
        os.replace(t.name, x)
        return [os.pread(fd, 100, 0) for fd in held], read_file(x), listing(d)
    finally:
        for fd in held:
            os.close(fd)


@pytest.mark.timeout(60)
def test_tools_replacing_an_open_file(private, tmp_path):
    m, server, remote = private()
    want = tools_over_open_file(local_dir(tmp_path))
    assert want == ([b"alpha\n", b"beta\n", b"from rsync\n"], b"gamma\n", ["src", "x"])
    assert tools_over_open_file(m.mountpoint) == want
    assert wait_until(lambda: server_names(remote) == ["src", "x"], 5), server_names(remote)


# ---- rename chains with descriptors open on each name ---------------------------------

def rename_chain(d, between):
    """a, b, c open; a->b, b->a, c->a: the descriptors of a and b keep
    their files (b's was replaced by a's, a's by c's)."""
    fds = {}
    for n in "abc":
        fds[n] = os.open(os.path.join(d, n), os.O_RDWR | os.O_CREAT, 0o644)
        os.write(fds[n], n.encode() * 3)
    try:
        os.rename(os.path.join(d, "a"), os.path.join(d, "b"))
        between()
        os.rename(os.path.join(d, "b"), os.path.join(d, "a"))
        between()
        os.rename(os.path.join(d, "c"), os.path.join(d, "a"))
        between()
        for n in "abc":
            os.write(fds[n], n.upper().encode())
            os.fsync(fds[n])
        seen = {n: os.pread(fds[n], 100, 0) for n in "abc"}
    finally:
        for fd in fds.values():
            os.close(fd)
    return seen, {n: read_file(os.path.join(d, n)) for n in listing(d)}


@pytest.mark.timeout(90)
@pytest.mark.parametrize("kind", FAULTS)
def test_rename_chain_with_open_descriptors(private, tmp_path, kind):
    m, server, remote = private(expect_errors=kind != "sessions")
    want = rename_chain(local_dir(tmp_path), lambda: None)
    assert want == ({"a": b"aaaA", "b": b"bbbB", "c": b"cccC"}, {"a": b"cccC"})
    assert rename_chain(m.mountpoint, lambda: fault(kind, m, server)) == want
    assert wait_until(lambda: server_names(remote) == ["a"], 5), server_names(remote)


# ---- hard links -----------------------------------------------------------------

def unlink_both_links(d, between):
    """f and g, one file, each open under its own name; both unlinked;
    both descriptors keep writing the one file."""
    f, g = os.path.join(d, "f"), os.path.join(d, "g")
    fd1 = os.open(f, os.O_RDWR | os.O_CREAT, 0o644)
    os.write(fd1, b"0123456789")
    os.fsync(fd1)
    os.link(f, g)
    fd2 = os.open(g, os.O_RDWR)
    try:
        os.unlink(f)
        between()
        os.unlink(g)
        between()
        os.pwrite(fd1, b"AB", 0)
        os.fsync(fd1)
        os.pwrite(fd2, b"YZ", 8)
        os.fsync(fd2)
        seen = (os.pread(fd1, 100, 0), os.pread(fd2, 100, 0),
                os.fstat(fd1).st_nlink, os.fstat(fd2).st_nlink)
    finally:
        os.close(fd1)
        os.close(fd2)
    return seen, listing(d)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("kind", FAULTS)
def test_unlink_both_hard_links_while_open(private, tmp_path, kind):
    m, server, remote = private(expect_errors=kind != "sessions")
    want = unlink_both_links(local_dir(tmp_path), lambda: None)
    assert want == ((b"AB234567YZ", b"AB234567YZ", 0, 0), [])
    assert unlink_both_links(m.mountpoint, lambda: fault(kind, m, server)) == want
    assert wait_until(lambda: server_names(remote) == [], 5), server_names(remote)


# ---- rmdir of a folder of unlinked-open files, then the same name again ------------------

def rmdir_then_same_name(d, between):
    """d/f open, unlinked, d removed; a new d with a new f: the old
    descriptor writes its own file, never the new d/f."""
    os.mkdir(os.path.join(d, "d"))
    fd = os.open(os.path.join(d, "d", "f"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"old f")
        os.fsync(fd)
        os.unlink(os.path.join(d, "d", "f"))
        os.rmdir(os.path.join(d, "d"))
        os.mkdir(os.path.join(d, "d"))
        with open(os.path.join(d, "d", "f"), "wb") as f:
            f.write(b"new f")
        between()
        os.write(fd, b", written late")
        os.fsync(fd)
        seen = os.pread(fd, 100, 0)
        # The folder of the new f can go too, the old f still open.
        os.unlink(os.path.join(d, "d", "f"))
        os.rmdir(os.path.join(d, "d"))
        between()
        os.write(fd, b"!")
        os.fsync(fd)
        seen = (seen, os.pread(fd, 100, 0))
    finally:
        os.close(fd)
    return seen, listing(d)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("kind", FAULTS)
def test_rmdir_of_unlinked_open_files_then_same_name(private, tmp_path, kind):
    m, server, remote = private(expect_errors=kind != "sessions")
    want = rmdir_then_same_name(local_dir(tmp_path), lambda: None)
    assert want == ((b"old f, written late", b"old f, written late!"), [])
    assert rmdir_then_same_name(m.mountpoint, lambda: fault(kind, m, server)) == want
    assert wait_until(lambda: server_names(remote) == [], 5), server_names(remote)


# ---- a folder above an open file renamed and removed ----------------------------------

def folder_moves(d, between):
    """d/e/f open; d renamed to d2, a new d/e/f made; d2/e/f unlinked,
    d2/e and d2 removed; the descriptor keeps its file throughout."""
    os.makedirs(os.path.join(d, "d", "e"))
    fd = os.open(os.path.join(d, "d", "e", "f"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"1")
        os.rename(os.path.join(d, "d"), os.path.join(d, "d2"))
        os.makedirs(os.path.join(d, "d", "e"))
        with open(os.path.join(d, "d", "e", "f"), "wb") as f:
            f.write(b"other")
        between()
        os.write(fd, b"2")
        os.fsync(fd)
        os.unlink(os.path.join(d, "d2", "e", "f"))
        os.rmdir(os.path.join(d, "d2", "e"))
        os.rmdir(os.path.join(d, "d2"))
        between()
        os.write(fd, b"3")
        os.fsync(fd)
        seen = os.pread(fd, 100, 0)
    finally:
        os.close(fd)
    return seen, listing(d), read_file(os.path.join(d, "d", "e", "f"))


@pytest.mark.timeout(90)
@pytest.mark.parametrize("kind", FAULTS)
def test_folder_above_open_file_renamed_and_removed(private, tmp_path, kind):
    m, server, remote = private(expect_errors=kind != "sessions")
    want = folder_moves(local_dir(tmp_path), lambda: None)
    assert want == (b"123", ["d"], b"other")
    assert folder_moves(m.mountpoint, lambda: fault(kind, m, server)) == want
    assert wait_until(lambda: server_names(remote) == ["d"], 5), server_names(remote)
