"""Attacks from the outside on "a descriptor keeps its file" (issue 14 and
docs/retries.md), each through a real mount:

- ordinary tools and patterns (logrotate create and copytruncate, git's
  lockfile dance, sed -i, tar x, cp, tempfile + os.replace, Python's
  TemporaryFile, rename chains a->b, b->a, c->a, hard links unlinked
  while open, rmdir of a folder of unlinked-open files then the same
  name again, folders above an open file moved), each with a fault in the
  middle (the link cut by the fault proxy, the sftp-server killed, the
  daemon killed, a live upgrade, all four), compared with what a local
  folder gives for the same script; the server must hold what the local
  folder holds, every hidden file gone;
- log rotation under a writer process that never pauses;
- a server that lies about the size or mtime right at a reopen (sftpshim
  lie_attrs): never a write at a made-up offset, never a silent loss;
- names that look like the mount's hidden names (only the exact generated
  form of one of the mount's own unlinked files is hidden), and another
  uid (allow_other) reaching a hidden name (it cannot: ENOENT).
"""

import errno
import io
import os
import shutil
import signal
import struct
import subprocess
import sys
import tarfile
import tempfile

import pytest

import mounts
from test_identity import (events, kill_sessions, kill_shims, read_file, restart_daemon,
                           server_names, wait_until)
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


class Mounted:
    """A steadyfs mount of a private sshd (its sftp-servers are this
    mount's alone) through a fault proxy."""

    def __init__(self, m, server, proxy):
        self.m, self.server, self.proxy = m, server, proxy
        self.remote = server.remote_dir

    def cut(self):
        """The link is cut (both ends reset) until the server's side of
        every session is gone, then passes again."""
        pids = wait_until(self.server.sftp_server_pids, 10)
        assert pids, "no sftp-server session under the test's sshd"
        self.proxy.cut()
        try:
            assert wait_until(lambda: not set(pids) & set(self.server.sftp_server_pids()),
                              10), "the sessions outlived the cut"
        finally:
            self.proxy.restore()

    def fault(self, kind):
        """One of the faults a descriptor must survive, in the middle of
        a script: the link cut, the sftp-server killed, the daemon killed,
        or upgraded; "all" is each of them in a row."""
        for k in FAULTS[:-1] if kind == "all" else [kind]:
            {"cut": self.cut, "sessions": lambda: kill_sessions(self.server),
             "kill": lambda: restart_daemon(self.m),
             "upgrade": lambda: upgrade_daemon(self.m)}[k]()


@pytest.fixture
def plain(make_sshd, mount_steadyfs):
    """(mount, server folder): a mount of a private sshd, no faults."""
    server = make_sshd()
    return mount_steadyfs(server, opts=MOUNT_OPTS), server.remote_dir


FAULTS = ["cut", "sessions", "kill", "upgrade", "all"]


@pytest.fixture
def mounted(make_sshd, fault_proxy, mount_steadyfs):
    """mounted(**mount keywords) -> Mounted; errors on the daemon's stderr
    are expected (the faults log them)."""
    def make(**kw):
        server = make_sshd()
        proxy = fault_proxy(server)
        kw.setdefault("opts", MOUNT_OPTS)
        return Mounted(mount_steadyfs(server, port=proxy.port, expect_errors=True, **kw),
                       server, proxy)
    return make


def local_dir(tmp_path):
    """The reference: a local folder (tmp_path itself holds the mounts)."""
    d = tmp_path / "local"
    d.mkdir()
    return str(d)


def listing(d):
    return sorted(n for n in os.listdir(d) if n != ".control")


def contents(d):
    return {n: read_file(os.path.join(d, n)) for n in listing(d)}


def tree(d):
    """A folder as {name: contents, or the tree of a subfolder}, every
    name (hidden ones too); None when a name went away meanwhile (a
    hidden file being removed)."""
    try:
        return {n: tree(p) if os.path.isdir(p) else read_file(p)
                for n, p in ((n, os.path.join(d, n)) for n in sorted(os.listdir(d)))}
    except FileNotFoundError:
        return None


# ---- log rotation while a writer appends --------------------------------------

def appender(d):
    return os.open(os.path.join(d, "log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)


def rotate_create(d, between):
    """logrotate `create`: mv log log.1, a new log, the writer goes on
    (it has not been told yet), then reopens (SIGHUP) and writes to the
    new log."""
    writer = appender(d)
    os.write(writer, b"line 1\n")
    os.rename(os.path.join(d, "log"), os.path.join(d, "log.1"))
    fd2 = appender(d)
    between()
    os.write(writer, b"line 2, late\n")
    os.fsync(writer)
    os.close(writer)
    os.write(fd2, b"line 3, new log\n")
    os.close(fd2)
    return contents(d)


def rotate_copytruncate(d, between):
    """logrotate `copytruncate`: cp log log.1; truncate log to 0; the
    O_APPEND writer goes on at the new end (0), no hole."""
    writer = appender(d)
    os.write(writer, b"line 1\n")
    shutil.copyfile(os.path.join(d, "log"), os.path.join(d, "log.1"))
    os.truncate(os.path.join(d, "log"), 0)
    between()
    os.write(writer, b"line 2\n")
    os.fsync(writer)
    os.close(writer)
    return contents(d)


ROTATED = {rotate_create: {"log": b"line 3, new log\n", "log.1": b"line 1\nline 2, late\n"},
           rotate_copytruncate: {"log": b"line 2\n", "log.1": b"line 1\n"}}


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
    return seen, contents(d)


def archive(name, data):
    """A tar archive holding one file, as bytes."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as t:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    return out.getvalue()


def tools_over_open_file(d, between):
    """sed -i, tar x over an existing file, cp onto it (in place, O_TRUNC)
    and Python's tempfile + os.replace, each while a descriptor holds the
    file x was then; every descriptor then writes a mark at the end of
    its file."""
    x = os.path.join(d, "x")
    with open(x, "wb") as f:
        f.write(b"alpha\n")
    with open(os.path.join(d, "src"), "wb") as f:
        f.write(b"from cp\n")
    tools = [lambda: subprocess.run(["sed", "-i", "s/alpha/beta/", x], check=True, timeout=30),
             lambda: subprocess.run(["tar", "x", "-C", d], input=archive("x", b"from tar\n"),
                                    check=True, timeout=30),
             lambda: subprocess.run(["cp", os.path.join(d, "src"), x], check=True, timeout=30)]
    held = []
    try:
        for tool in tools:
            held.append(os.open(x, os.O_RDWR))
            tool()
            between()
        held.append(os.open(x, os.O_RDWR))
        with tempfile.NamedTemporaryFile(dir=d, delete=False) as t:
            t.write(b"gamma\n")
        os.replace(t.name, x)
        between()
        for i, fd in enumerate(held):
            os.pwrite(fd, b"%d" % i, os.fstat(fd).st_size)
            os.fsync(fd)
        return [os.pread(fd, 100, 0) for fd in held], contents(d)
    finally:
        for fd in held:
            os.close(fd)


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
    return seen, contents(d)


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


def unlink_one_link(d, between):
    """f open, g a link to it; f unlinked: the descriptor writes the file
    g names (a file with another name is no hidden file)."""
    f, g = os.path.join(d, "f"), os.path.join(d, "g")
    fd = os.open(f, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"0123456789")
        os.fsync(fd)
        os.link(f, g)
        os.unlink(f)
        between()
        os.pwrite(fd, b"AB", 0)
        os.fsync(fd)
        through_g = read_file(g)
        with open(g, "r+b") as other:
            other.seek(8)
            other.write(b"YZ")
        between()
        os.pwrite(fd, b"C", 2)
        os.fsync(fd)
        seen = (through_g, os.pread(fd, 100, 0))
    finally:
        os.close(fd)
    return seen, contents(d)


def nlink_after_unlinking_one_link(d, between):
    """f open, g a link to it, f unlinked: fstat shows the file still has
    a name (tail -F and log shippers take nlink 0 for "deleted")."""
    f, g = os.path.join(d, "f"), os.path.join(d, "g")
    fd = os.open(f, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.link(f, g)
        os.unlink(f)
        first = os.fstat(fd).st_nlink > 0
        between()
        return first, os.fstat(fd).st_nlink > 0
    finally:
        os.close(fd)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["kill", "upgrade"])
def test_unlink_one_hard_link_keeps_nlink(mounted, tmp_path, kind):
    """Was nlink 0: the hidden node's twin, still named, was not looked at
    (vfs.c); the link group is in the take-over state, so the same after
    a restart."""
    mt = mounted()
    assert nlink_after_unlinking_one_link(local_dir(tmp_path), lambda: None) == (True, True)
    assert nlink_after_unlinking_one_link(mt.m.mountpoint, lambda: mt.fault(kind)) == \
        (True, True)


def hidden_file_folder_moves(d, between):
    """d/f open and unlinked; d renamed to e, then e moved into a new
    folder p; the descriptor keeps its file, which goes at its close."""
    os.mkdir(os.path.join(d, "d"))
    fd = os.open(os.path.join(d, "d", "f"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"1")
        os.unlink(os.path.join(d, "d", "f"))
        os.rename(os.path.join(d, "d"), os.path.join(d, "e"))
        between()
        os.write(fd, b"2")
        os.fsync(fd)
        os.mkdir(os.path.join(d, "p"))
        os.rename(os.path.join(d, "e"), os.path.join(d, "p", "e"))
        with open(os.path.join(d, "p", "e", "f"), "wb") as f:
            f.write(b"new")
        between()
        os.write(fd, b"3")
        os.fsync(fd)
        seen = os.pread(fd, 100, 0)
    finally:
        os.close(fd)
    return seen, listing(os.path.join(d, "p", "e"))


def temporary_file(d, between):
    """Python's tempfile.TemporaryFile (O_TMPFILE, or create then unlink
    where O_TMPFILE is refused, as over FUSE): it keeps its data and
    leaves nothing behind."""
    with tempfile.TemporaryFile(dir=d) as t:
        t.write(b"scratch 1;")
        t.flush()
        os.fsync(t.fileno())  # a daemon SIGKILL loses writes not yet acknowledged
        between()
        t.write(b"scratch 2;")
        t.flush()
        os.fsync(t.fileno())
        between()
        t.seek(0)
        seen = t.read()
        names = listing(d)
    return seen, names, listing(d)


def folder_onto_empty_folder(d, between):
    """d/f open; d renamed onto the empty folder e (rename(2) replaces
    it); a new d/f made: the descriptor writes e/f."""
    os.mkdir(os.path.join(d, "d"))
    os.mkdir(os.path.join(d, "e"))
    fd = os.open(os.path.join(d, "d", "f"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"1")
        os.rename(os.path.join(d, "d"), os.path.join(d, "e"))
        os.mkdir(os.path.join(d, "d"))
        with open(os.path.join(d, "d", "f"), "wb") as f:
            f.write(b"new")
        between()
        os.write(fd, b"2")
        os.fsync(fd)
    finally:
        os.close(fd)
    return contents(os.path.join(d, "d")), contents(os.path.join(d, "e"))


# ---- each script on a local folder and on the mount, across each fault ------------------

# name: (script(folder, between), what it gives, the server folder after)
SCENARIOS = {
    "python-TemporaryFile": (temporary_file, (b"scratch 1;scratch 2;", [], []), {}),
    "folder-onto-empty-folder": (folder_onto_empty_folder, ({"f": b"new"}, {"f": b"12"}),
                                 {"d": {"f": b"new"}, "e": {"f": b"12"}}),
    "tools-replacing-open-file": (tools_over_open_file, (
        [b"alpha\n0", b"beta\n1", b"from cp\n23", b"from cp\n23"],
        {"src": b"from cp\n", "x": b"gamma\n"}), {"src": b"from cp\n", "x": b"gamma\n"}),
    "logrotate-create": (rotate_create, ROTATED[rotate_create], ROTATED[rotate_create]),
    "logrotate-copytruncate": (rotate_copytruncate, ROTATED[rotate_copytruncate],
                               ROTATED[rotate_copytruncate]),
    "lockfile-rename-over-open": (lockfile_dance, (b"OLD contents\n", {"x": b"new contents\n"}),
                                  {"x": b"new contents\n"}),
    "rename-chain-a-b-a-c": (rename_chain,
                             ({"a": b"aaaA", "b": b"bbbB", "c": b"cccC"}, {"a": b"cccC"}),
                             {"a": b"cccC"}),
    "unlink-both-hard-links": (unlink_both_links, ((b"AB234567YZ", b"AB234567YZ", 0, 0), []),
                               {}),
    "unlink-one-hard-link": (unlink_one_link,
                             ((b"AB23456789", b"ABC34567YZ"), {"g": b"ABC34567YZ"}),
                             {"g": b"ABC34567YZ"}),
    "rmdir-then-same-name": (rmdir_then_same_name,
                             ((b"old f, written late", b"old f, written late!"), []), {}),
    "folder-above-renamed-removed": (folder_moves, (b"123", ["d"], b"other"),
                                     {"d": {"e": {"f": b"other"}}}),
    "folder-of-unlinked-moved": (hidden_file_folder_moves, (b"123", ["f"]),
                                 {"p": {"e": {"f": b"new"}}}),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
@pytest.mark.parametrize("kind", FAULTS)
def test_descriptor_keeps_its_file(mounted, tmp_path, scenario, kind):
    """The script gives on the mount, with the fault `kind` at each
    `between()`, what it gives on a local folder; the server ends up
    holding what the local folder holds (every hidden file gone)."""
    script, want, left = SCENARIOS[scenario]
    mt = mounted()
    assert script(local_dir(tmp_path), lambda: None) == want
    assert script(mt.m.mountpoint, lambda: mt.fault(kind)) == want
    assert wait_until(lambda: tree(mt.remote) == left, 5), tree(mt.remote)


# ---- names that look like the mount's hidden names -----------------------------------

HIDDEN_LOOKALIKE = ".steadyfs_hidden_notes"


@pytest.mark.timeout(60)
def test_users_file_named_like_a_hidden_one_is_listed(plain, tmp_path):
    m, remote = plain
    for d in (local_dir(tmp_path), m.mountpoint):
        with open(os.path.join(d, HIDDEN_LOOKALIKE), "wb") as f:
            f.write(b"my notes")
        assert listing(d) == [HIDDEN_LOOKALIKE]
    assert server_names(remote) == [HIDDEN_LOOKALIKE]


@pytest.mark.timeout(60)
def test_server_file_named_like_a_hidden_one_is_listed_and_removable(plain):
    m, remote = plain
    os.mkdir(os.path.join(remote, "d"))
    name = ".steadyfs_hidden0000000000000002deadbeef"
    with open(os.path.join(remote, "d", name), "wb") as f:
        f.write(b"made on the server")
    assert os.listdir(m.path("d")) == [name]  # not ours: an ordinary entry
    r = subprocess.run(["rm", "-rf", m.path("d")], capture_output=True, text=True,
                       timeout=30, stdin=subprocess.DEVNULL)
    assert (r.returncode, r.stderr) == (0, "")
    assert server_names(remote) == []


@pytest.mark.timeout(60)
def test_hidden_form_names_are_not_made_through_the_mount(plain):
    """No name of the generated form is made or moved to through the
    mount (EPERM), so no user file can ever be taken for a hidden one;
    a look-alike folder is made, filled and removed like any other."""
    m, remote = plain
    name = ".steadyfs_hidden0000000000000002deadbeef"
    with open(m.path("mine"), "wb") as f:
        f.write(b"my file")
    for make in (lambda p: open(p, "wb").close(), os.mkdir,
                 lambda p: os.symlink("mine", p), lambda p: os.link(m.path("mine"), p),
                 lambda p: os.rename(m.path("mine"), p)):
        with pytest.raises(PermissionError):
            make(m.path(name))
    os.mkdir(m.path(HIDDEN_LOOKALIKE))
    with open(os.path.join(m.path(HIDDEN_LOOKALIKE), HIDDEN_LOOKALIKE), "wb") as f:
        f.write(b"x")
    assert os.listdir(m.path(HIDDEN_LOOKALIKE)) == [HIDDEN_LOOKALIKE]
    shutil.rmtree(m.path(HIDDEN_LOOKALIKE))
    assert server_names(remote) == ["mine"]


@pytest.fixture
def shared_mountpoint():
    """A mountpoint another uid can reach (tmp_path's parents are 0700)."""
    base = tempfile.mkdtemp(prefix="steadyfs-attack-")
    os.chmod(base, 0o755)
    yield os.path.join(base, "mnt")
    shutil.rmtree(base, ignore_errors=True)


def hidden_name_of(remote):
    names = [n for n in server_names(remote) if n.startswith(".steadyfs_hidden")]
    assert len(names) == 1, names
    return names[0]


def as_nobody(*argv):
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           *argv], capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)


@pytest.mark.timeout(60)
def test_unlinked_open_file_is_not_reachable_by_its_hidden_name(make_sshd, mount_steadyfs,
                                                                shared_mountpoint):
    server = make_sshd()
    os.chmod(server.remote_dir, 0o755)
    m = mount_steadyfs(server, mountpoint=shared_mountpoint,
                       opts=dict(MOUNT_OPTS, allow_other=True))
    r = as_nobody("ls", m.mountpoint)
    assert r.returncode == 0, r.stderr  # the other user does reach the mount
    fd = os.open(m.path("f"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"unlinked data")
        os.fsync(fd)
        os.unlink(m.path("f"))
        hidden = hidden_name_of(server.remote_dir)
        r = as_nobody("cat", m.path(hidden))
        assert r.returncode != 0 and "No such file" in r.stderr, (r.returncode, r.stderr)
        with pytest.raises(FileNotFoundError):
            os.stat(m.path(hidden))
    finally:
        os.close(fd)


@pytest.mark.timeout(60)
def test_rename_onto_a_hidden_name_loses_nothing(plain):
    m, remote = plain
    fd = os.open(m.path("f"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"unlinked data")
        os.fsync(fd)
        os.unlink(m.path("f"))
        hidden = hidden_name_of(remote)
        with open(m.path("mine"), "wb") as f:
            f.write(b"my file")
        with pytest.raises(PermissionError):  # refused: hiding the user's file is not fine
            os.rename(m.path("mine"), m.path(hidden))
        os.write(fd, b"+")
        os.fsync(fd)
        assert os.pread(fd, 100, 0) == b"unlinked data+"
    finally:
        os.close(fd)
    # Whatever name it has now, the user's file is still listed.
    assert wait_until(lambda: len(server_names(remote)) == 1, 5), server_names(remote)
    name = server_names(remote)[0]
    assert read_file(os.path.join(remote, name)) == b"my file"
    assert listing(m.mountpoint) == [name]


# ---- a server that lies about the file right at a reopen --------------------------------

LIES = {"bigger": {"size": 5}, "smaller": {"size": -3}, "mtime": {"mtime": 7},
        "both": {"size": 1, "mtime": -50}, "absurd": {"size": 1 << 62, "mtime": 1 << 31}}


def data_events(m, path):
    return [e for e in events(m) if e.get("type") == "data" and
            e.get("path", "").endswith(path) and not e.get("replayed")]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("append", [False, True], ids=["pwrite", "append"])
@pytest.mark.parametrize("lie", sorted(LIES))
def test_lie_at_reopen_loses_nothing_silently(make_sshd, mount_steadyfs, tmp_path, lie,
                                              append):
    """The sessions die; the next session's server says another size or
    mtime for the open file (its STAT, LSTAT, FSTAT) than the truth. The
    descriptor's next write either lands where it was meant to (never at
    an offset the lie made up: no hole, no extra bytes), or fails with EIO
    and a `data` event names it; never a success that is not on the
    server."""
    from test_server_input import lying_sshd
    flags = tmp_path / "lie"
    flags.mkdir()
    server = lying_sshd(make_sshd, tmp_path, lie_attrs=dict(
        LIES[lie], path=b"/liar".hex(), flags=str(flags)))
    m = mount_steadyfs(server, opts=MOUNT_OPTS, expect_errors=True)
    flag = os.O_APPEND if append else 0
    fd = os.open(m.path("liar"), os.O_WRONLY | os.O_CREAT | flag, 0o644)
    try:
        assert os.write(fd, b"0123456789") == 10
        os.fsync(fd)
        (flags / "arm").touch()
        kill_shims(server)
        try:
            if append:
                os.write(fd, b"abc")
            else:
                os.pwrite(fd, b"abc", 10)
            os.fsync(fd)
            err = 0
        except OSError as e:
            err = e.errno
    finally:
        try:
            os.close(fd)
        except OSError as e:
            assert e.errno == errno.EIO
    (flags / "arm").unlink()
    on_server = read_file(os.path.join(server.remote_dir, "liar"))
    if err == 0:
        assert on_server == b"0123456789abc"
    else:
        assert err == errno.EIO
        assert on_server == b"0123456789"
        assert data_events(m, "/liar"), events(m)
    assert m.daemon_pid()


# ---- a writer appending without pause while its log is rotated -----------------------------

APPENDER = r"""
import mmap, os, signal, struct, sys
d, counter = sys.argv[1], sys.argv[2]
flags = {"reopen": False, "stop": False}
signal.signal(signal.SIGHUP, lambda *a: flags.update(reopen=True))
signal.signal(signal.SIGTERM, lambda *a: flags.update(stop=True))
with open(counter, "r+b") as f:
    shared = mmap.mmap(f.fileno(), 16)
def open_log():
    return os.open(os.path.join(d, "log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
n, reopens, err = 0, 0, 0
fd = open_log()
try:
    while not flags["stop"]:
        if flags["reopen"]:
            flags["reopen"] = False
            os.close(fd)
            fd = open_log()
            reopens += 1
        os.write(fd, b"%08d\n" % n)
        n += 1
        struct.pack_into(">QQ", shared, 0, n, reopens)
    os.fsync(fd)
except OSError as e:
    err = e.errno
try:
    os.close(fd)
except OSError as e:
    err = err or e.errno
print(n, err, flush=True)
"""


class Appender:
    """A process appending numbered lines to d/log (O_APPEND) without
    pause, reopening the name on SIGHUP (as logrotate tells a daemon),
    until SIGTERM; its first error ends it. Its own process: a writer
    thread would starve the fault proxy of this one's GIL."""

    def __init__(self, d, counter):
        with open(counter, "wb") as f:
            f.write(bytes(16))
        self.counter = counter
        self.proc = subprocess.Popen([sys.executable, "-c", APPENDER, d, counter],
                                     stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self.n, self.error = 0, 0

    def progress(self):
        with open(self.counter, "rb") as f:
            return struct.unpack(">QQ", f.read(16))

    def wait_lines(self, more, timeout=20):
        """Waits for `more` lines; False when the writer ended (failed)."""
        n = self.progress()[0] + more
        assert wait_until(lambda: self.progress()[0] >= n or self.proc.poll() is not None,
                          timeout), f"the writer is stuck at line {self.progress()[0]}"
        return self.proc.poll() is None

    def reopen(self):
        before = self.progress()[1]
        self.proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: self.progress()[1] > before or self.proc.poll() is not None,
                          20), "the writer never reopened its log"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=30)
        self.n, self.error = (int(x) for x in out.split())


def rotate_under(w, d, fault):
    """Three rotations (mv log log.N, a new log, SIGHUP), each with the
    fault in the middle; ends early when the writer failed."""
    for i in range(1, 4):
        w.wait_lines(50)
        os.rename(os.path.join(d, "log"), os.path.join(d, f"log.{i}"))
        os.close(appender(d))
        w.wait_lines(20)
        fault()
        if not w.wait_lines(20):
            return
        w.reopen()
    w.wait_lines(20)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("kind", FAULTS)
def test_rotation_under_a_busy_appender(mounted, tmp_path, kind):
    """Log rotations, each with the fault in the middle, under a writer
    that never pauses: every line is on the server exactly once, in order,
    in the file the writer's descriptor had when it wrote it. A daemon
    SIGKILL may lose the writes only it held (docs/retries.md): then the
    writer gets EIO and a `data` event says `lost`, never silence, and
    the lines that are there are still in order."""
    mt = mounted()
    d = mt.m.mountpoint
    w = Appender(d, str(tmp_path / "counter"))
    try:
        rotate_under(w, d, lambda: mt.fault(kind))
    finally:
        w.stop()
    files = [f for f in [f"log.{i}" for i in range(1, 4)] + ["log"]
             if os.path.exists(os.path.join(mt.remote, f))]
    got = [read_file(os.path.join(mt.remote, f)) for f in files]
    lines = [x for x in b"".join(got).split(b"\n") if x]
    if w.error:
        assert kind in ("kill", "all") and w.error == errno.EIO, os.strerror(w.error)
        assert [e for e in events(mt.m) if e.get("type") == "data" and e.get("lost")
                and "/log" in e.get("path", "")], events(mt.m)
        numbers = [int(x.strip(b"\0")) for x in lines if x.strip(b"\0")]
        assert numbers == sorted(set(numbers)), "lines out of order or twice"
        return
    assert [int(x) for x in lines] == list(range(w.n)), \
        [g[:40] + b"..." + g[-40:] for g in got]
    assert len(files) == 4 and all(got), "a rotation left a file empty"
