"""The name cache options, on real mounts: negative_timeout and the sshfs
cache timeouts mapped onto attr_timeout and entry_timeout.

With negative_timeout=S a LOOKUP that finds no file is answered with an
entry without an inode, which the kernel keeps as a negative dentry for S
seconds: a name another writer creates on the server stays invisible
that long (and no sooner visible), while every way of making the name
through the mount shows it at once. Without the option (the default, as
sshfs) such a name shows at the next stat. Waits are polls with
deadlines; "still missing right after" is the only check of an absence.
"""

import errno
import os
import re
import time

import pytest

import mounts

NEGATIVE = 4.0   # the timeout the visibility tests mount with
LONG = 600       # a negative entry that will not expire during a test


def lookups(m):
    """LOOKUPs the daemon has answered (its .control/metrics)."""
    with open(m.path(".control", "metrics")) as f:
        text = f.read()
    found = re.search(r'^steadyfs_calls_total\{[^}]*op="lookup"[^}]*\} (\d+)$',
                      text, re.M)
    return int(found.group(1)) if found else 0


def missing(path):
    try:
        os.lstat(path)
    except FileNotFoundError:
        return True
    return False


def wait_visible(path, timeout):
    """Polls lstat until `path` exists; the time it first did."""
    deadline = time.monotonic() + timeout
    while missing(path):
        assert time.monotonic() < deadline, f"{path} not visible after {timeout} s"
        time.sleep(0.05)
    return time.monotonic()


@pytest.fixture
def srv(sshd, remote_subdir):
    return os.path.join(sshd.remote_dir, remote_subdir)


def test_server_creation_shows_after_the_negative_timeout(sshd, remote_subdir,
                                                           srv, mount_steadyfs):
    m = mount_steadyfs(sshd, remote_subdir=remote_subdir,
                       opts={"negative_timeout": NEGATIVE})
    t0 = time.monotonic()
    assert missing(m.path("late"))
    before = lookups(m)
    with open(os.path.join(srv, "late"), "w") as f:
        f.write("made on the server")
    # The kernel answers from its negative entry: still missing, and the
    # daemon was not asked.
    assert missing(m.path("late"))
    assert errno.ENOENT == _open_errno(m.path("late"))
    assert lookups(m) == before
    seen = wait_visible(m.path("late"), NEGATIVE + 20)
    assert seen - t0 >= NEGATIVE, f"visible after {seen - t0:.2f} s"
    with open(m.path("late")) as f:
        assert f.read() == "made on the server"


def test_without_negative_timeout_a_server_creation_shows_at_once(
        sshd, remote_subdir, srv, mount_steadyfs):
    m = mount_steadyfs(sshd, remote_subdir=remote_subdir)
    assert missing(m.path("late"))
    with open(os.path.join(srv, "late"), "w") as f:
        f.write("x")
    assert not missing(m.path("late"))


def test_listing_shows_a_name_cached_as_missing(sshd, remote_subdir, srv,
                                                mount_steadyfs):
    """A listing is always read from the server, and its readdirplus
    entry replaces the kernel's negative one: stat works after ls."""
    m = mount_steadyfs(sshd, remote_subdir=remote_subdir,
                       opts={"negative_timeout": LONG})
    assert missing(m.path("late"))
    with open(os.path.join(srv, "late"), "w") as f:
        f.write("x")
    assert missing(m.path("late"))
    assert "late" in os.listdir(m.mountpoint)
    assert not missing(m.path("late"))


def _open_errno(path):
    try:
        os.close(os.open(path, os.O_RDONLY))
    except OSError as e:
        return e.errno
    return 0


def _create(m, name):
    os.close(os.open(m.path(name), os.O_WRONLY | os.O_CREAT, 0o644))


def _create_excl(m, name):
    os.close(os.open(m.path(name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))


def _mkdir(m, name):
    os.mkdir(m.path(name))


def _symlink(m, name):
    os.symlink("target-of-link", m.path(name))


def _from_new_file(call, folder=None):
    """A maker that creates a file (in `folder`, made first) and then
    gives it the name with `call(old, new)`."""
    def make(m, name):
        src = "src"
        if folder:
            os.mkdir(m.path(folder))
            src = f"{folder}/src"
        _create(m, src)
        call(m.path(src), m.path(name))
    return make


def _rename_folder_onto(m, name):
    os.mkdir(m.path("srcdir"))
    _create(m, "srcdir/inner")
    os.rename(m.path("srcdir"), m.path(name))


def _unlink_and_create_again(m, name):
    _create(m, name)
    os.unlink(m.path(name))
    assert missing(m.path(name))
    _create(m, name)


MAKERS = {
    "create": _create, "create_excl": _create_excl, "mkdir": _mkdir,
    "symlink": _symlink, "link": _from_new_file(os.link),
    "link_from_folder": _from_new_file(os.link, "d"),
    "rename_onto": _from_new_file(os.rename),
    "rename_folder_onto": _rename_folder_onto,
    "unlink_and_create_again": _unlink_and_create_again,
}


@pytest.mark.parametrize("how", sorted(MAKERS))
def test_name_made_through_the_mount_shows_at_once(sshd, remote_subdir, srv,
                                                   mount_steadyfs, how):
    """A name cached as missing (for 600 s) and then made through the
    mount is there at once, for this process and a fresh one, and on the
    server."""
    m = mount_steadyfs(sshd, remote_subdir=remote_subdir,
                       opts={"negative_timeout": LONG})
    assert missing(m.path("name"))
    assert missing(m.path("name"))   # answered from the negative entry
    MAKERS[how](m, "name")
    assert not missing(m.path("name"))
    assert os.path.lexists(os.path.join(srv, "name"))
    assert mounts.call_in_child("lstat", m.path("name"), timeout=10)["status"] == "ok"
    if how == "rename_folder_onto":
        assert not missing(m.path("name", "inner"))
        assert missing(m.path("srcdir"))
    if how == "rename_onto":
        assert missing(m.path("src"))


def test_negative_entries_save_lookups(sshd, remote_subdir, mount_steadyfs):
    """Probing the same missing names again (a compiler's include path)
    asks the daemon once per name."""
    m = mount_steadyfs(sshd, remote_subdir=remote_subdir,
                       opts={"negative_timeout": LONG})
    probes = [m.path(f"inc{i}", "stdio.h") for i in range(5)] + \
        [m.path(f"h{i}.h") for i in range(5)]
    for p in probes:
        assert missing(p)
    before = lookups(m)
    for _ in range(3):
        for p in probes:
            assert missing(p)
    assert lookups(m) == before


def test_create_over_a_stale_negative_entry_keeps_the_servers_file(
        sshd, remote_subdir, srv, mount_steadyfs):
    """Another writer made the name while the kernel holds it as missing:
    open(O_CREAT) opens that file (its data kept), O_EXCL and mkdir say
    EEXIST; none replaces it."""
    m = mount_steadyfs(sshd, remote_subdir=remote_subdir,
                       opts={"negative_timeout": LONG})
    for name in ("f", "g", "h"):
        assert missing(m.path(name))
        with open(os.path.join(srv, name), "w") as f:
            f.write("theirs")
        assert missing(m.path(name))
    fd = os.open(m.path("f"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        assert os.read(fd, 100) == b"theirs"
    finally:
        os.close(fd)
    with pytest.raises(FileExistsError):
        os.open(m.path("g"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with pytest.raises(FileExistsError):
        os.mkdir(m.path("h"))
    for name in ("f", "g", "h"):
        with open(os.path.join(srv, name)) as f:
            assert f.read() == "theirs"
