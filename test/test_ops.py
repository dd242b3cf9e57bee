"""Every filesystem operation of steadyfs, checked in the server's folder.

Each test mounts a fresh remote subfolder of the session sshd with
steadyfs (op_timeout=4), does one family of operations through the mount
and then looks at the server side directly (sshd.remote_dir/...), never
only through the mount: a result the daemon merely cached would pass a
round trip and still be wrong on the server.
"""

import ctypes
import errno
import hashlib
import os
import random
import stat
import threading
import time

import pytest

MiB = 1 << 20
GiB = 1 << 30


@pytest.fixture
def fs(sshd, remote_subdir, mount_steadyfs):
    """(mount, server-side folder) for a fresh remote subfolder."""
    m = mount_steadyfs(sshd, remote_subdir=remote_subdir)
    return m, os.path.join(sshd.remote_dir, remote_subdir)


def names(path):
    """os.listdir without the virtual .control/ folder of the mount root."""
    return [n for n in os.listdir(path) if n != ".control"]


def errno_of(fn, *args):
    """The errno `fn(*args)` fails with, or 0 when it succeeds."""
    try:
        fn(*args)
    except OSError as e:
        return e.errno
    return 0


def write_file(path, data, mode=0o644):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MiB), b""):
            h.update(block)
    return h.hexdigest()


def run_threads(fns, timeout=60):
    """Run each fn in its own thread; re-raise the first failure."""
    errors = []

    def wrap(fn):
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=wrap, args=(fn,)) for fn in fns]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.1, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "threads still running"
    if errors:
        raise errors[0]


# ---- lookup, getattr, readdir ------------------------------------------------

def test_stat_matches_server(fs):
    m, srv = fs
    write_file(os.path.join(srv, "f"), b"x" * 12345)
    os.chmod(os.path.join(srv, "f"), 0o640)
    os.utime(os.path.join(srv, "f"), (1_500_000_000, 1_600_000_000))
    os.mkdir(os.path.join(srv, "d"), 0o750)
    os.symlink("f", os.path.join(srv, "l"))

    st, sv = os.stat(m.path("f")), os.stat(os.path.join(srv, "f"))
    assert stat.S_ISREG(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert st.st_size == 12345
    assert int(st.st_mtime) == 1_600_000_000
    assert int(st.st_atime) == 1_500_000_000
    assert (st.st_uid, st.st_gid) == (sv.st_uid, sv.st_gid)

    st = os.stat(m.path("d"))
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o750
    assert stat.S_ISLNK(os.lstat(m.path("l")).st_mode)
    assert os.stat(m.path("l")).st_size == 12345  # followed
    assert stat.S_ISDIR(os.stat(m.mountpoint).st_mode)
    assert errno_of(os.stat, m.path("missing")) == errno.ENOENT
    assert errno_of(os.stat, m.path("f", "below-a-file")) == errno.ENOTDIR


def test_readdir_small(fs):
    m, srv = fs
    want = {"a", "b c", "ünï", ".hidden", "dir", "link"}
    for n in want - {"dir", "link"}:
        write_file(os.path.join(srv, n), n.encode())
    os.mkdir(os.path.join(srv, "dir"))
    os.symlink("a", os.path.join(srv, "link"))
    assert set(names(m.mountpoint)) == want
    kinds = {e.name: e for e in os.scandir(m.mountpoint)}
    assert ".control" not in os.listdir(m.path("dir"))
    assert kinds["dir"].is_dir(follow_symlinks=False)
    assert kinds["link"].is_symlink()
    assert kinds["a"].is_file(follow_symlinks=False)
    assert os.listdir(m.path("dir")) == []
    # a name created server-side afterwards shows up (no stale listing
    # beyond the attribute timeout)
    write_file(os.path.join(srv, "dir", "late"), b"")
    deadline = time.monotonic() + 3
    while "late" not in os.listdir(m.path("dir")):
        assert time.monotonic() < deadline, "server-side entry never listed"
        time.sleep(0.05)


@pytest.mark.timeout(90)
def test_readdir_100k(fs):
    m, srv = fs
    big = os.path.join(srv, "big")
    os.mkdir(big)
    n = 100_000
    for i in range(n):
        os.close(os.open(os.path.join(big, "entry-%06d" % i),
                         os.O_CREAT | os.O_WRONLY, 0o644))
    t0 = time.monotonic()
    got = os.listdir(m.path("big"))
    elapsed = time.monotonic() - t0
    assert len(got) == n
    assert set(got) == {"entry-%06d" % i for i in range(n)}
    assert elapsed < 30, f"listing 100k entries took {elapsed:.1f} s"


# ---- open, create, read, write ----------------------------------------------

def test_create_answers_with_the_files_attributes(fs):
    """A create's attributes come from a STAT sent behind its OPEN: a new
    file has the mode asked for and size 0; a file that appeared on the
    server after the mount looked for it keeps its size and mode; and
    the create of a symlink's name reports its target."""
    m, srv = fs
    fd = os.open(m.path("new.dat"), os.O_WRONLY | os.O_CREAT, 0o640)
    try:
        st = os.fstat(fd)
        assert st.st_size == 0 and stat.S_IMODE(st.st_mode) == 0o640
        assert stat.S_ISREG(st.st_mode)
    finally:
        os.close(fd)
    assert errno_of(os.stat, m.path("late.dat")) == errno.ENOENT
    write_file(os.path.join(srv, "late.dat"), b"x" * 1000)
    os.chmod(os.path.join(srv, "late.dat"), 0o604)
    fd = os.open(m.path("late.dat"), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        st = os.fstat(fd)
        assert st.st_size == 1000 and stat.S_IMODE(st.st_mode) == 0o604
    finally:
        os.close(fd)
    write_file(os.path.join(srv, "target.dat"), b"y" * 123)
    os.symlink("target.dat", os.path.join(srv, "link"))
    fd = os.open(m.path("link"), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        assert os.fstat(fd).st_size == 123
    finally:
        os.close(fd)
    assert read_file(os.path.join(srv, "late.dat")) == b"x" * 1000


def test_create_excl(fs):
    m, srv = fs
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    fd = os.open(m.path("x"), flags, 0o600)
    os.write(fd, b"first")
    os.close(fd)
    assert read_file(os.path.join(srv, "x")) == b"first"
    assert stat.S_IMODE(os.stat(os.path.join(srv, "x")).st_mode) == 0o600
    assert errno_of(os.open, m.path("x"), flags, 0o600) == errno.EEXIST
    # created server-side, unseen by the mount so far
    write_file(os.path.join(srv, "y"), b"server")
    assert errno_of(os.open, m.path("y"), flags, 0o600) == errno.EEXIST
    assert read_file(os.path.join(srv, "x")) == b"first"
    assert read_file(os.path.join(srv, "y")) == b"server"
    # a directory is not replaced either
    os.mkdir(os.path.join(srv, "d"))
    assert errno_of(os.open, m.path("d"), flags, 0o600) == errno.EEXIST
    # opening a missing file without O_CREAT
    assert errno_of(os.open, m.path("nope"), os.O_RDONLY) == errno.ENOENT


def test_open_trunc(fs):
    m, srv = fs
    write_file(os.path.join(srv, "t"), b"0123456789" * 1000)
    fd = os.open(m.path("t"), os.O_WRONLY | os.O_TRUNC)
    try:
        assert os.stat(os.path.join(srv, "t")).st_size == 0
        os.write(fd, b"new")
    finally:
        os.close(fd)
    assert read_file(os.path.join(srv, "t")) == b"new"
    assert read_file(m.path("t")) == b"new"


def _check_appends(data, header, records):
    """`data` is `header` then every record of `records` (writer -> list)
    whole, each writer's in its own order, in some interleaving."""
    total = len(header) + sum(len(r) for rs in records.values() for r in rs)
    assert len(data) == total, f"size {len(data)}, want {total}"
    assert data.startswith(header), f"header overwritten: {data[:40]!r}"
    seen = {w: [] for w in records}
    for line in data[len(header):].split(b"\n")[:-1]:
        w = line[:1]
        assert w in seen, f"garbled record {line[:40]!r}"
        seen[w].append(line + b"\n")
    assert seen == records


def _append_records(count=300):
    return {w: [(b"%s:%04d:" % (w, i)) + w * (1 + (i * 37) % 900) + b"\n"
                for i in range(count)] for w in (b"A", b"B")}


def test_append_two_writers_opened_first(fs):
    """Two O_APPEND descriptors, both opened before any write, written
    alternately: every write lands whole at the true end."""
    m, srv = fs
    write_file(os.path.join(srv, "log"), b"HEADER\n")
    records = _append_records()
    fds = {w: os.open(m.path("log"), os.O_WRONLY | os.O_APPEND) for w in records}
    try:
        for i in range(300):
            for w, fd in fds.items():
                assert os.write(fd, records[w][i]) == len(records[w][i])
    finally:
        for fd in fds.values():
            os.close(fd)
    _check_appends(read_file(os.path.join(srv, "log")), b"HEADER\n", records)


def test_append_two_writers(fs):
    """Two O_APPEND descriptors opened and written from two threads at
    once: every write lands whole at the true end, none overlaps another,
    total size adds up. Several rounds, each on a new file, because the
    opens race."""
    m, srv = fs
    records = _append_records(150)
    for rnd in range(4):
        name = f"log{rnd}"
        write_file(os.path.join(srv, name), b"HEADER\n")
        start = threading.Barrier(2, timeout=10)

        def writer(w):
            def go():
                start.wait()    # both opens race, as two crawler processes do
                fd = os.open(m.path(name), os.O_WRONLY | os.O_APPEND)
                try:
                    for rec in records[w]:
                        assert os.write(fd, rec) == len(rec)
                finally:
                    os.close(fd)
            return go

        run_threads([writer(w) for w in records])
        _check_appends(read_file(os.path.join(srv, name)), b"HEADER\n", records)


def test_append_after_server_growth(fs):
    """The end offset follows the file when it grows on the server
    between opens."""
    m, srv = fs
    fd = os.open(m.path("a"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(fd, b"one\n")
    os.close(fd)
    with open(os.path.join(srv, "a"), "ab") as f:
        f.write(b"server\n")
    fd = os.open(m.path("a"), os.O_WRONLY | os.O_APPEND)
    os.write(fd, b"two\n")
    os.close(fd)
    assert read_file(os.path.join(srv, "a")) == b"one\nserver\ntwo\n"


def test_read(fs):
    m, srv = fs
    data = random.Random(1).randbytes(3 * MiB + 123)
    write_file(os.path.join(srv, "r"), data)
    assert read_file(m.path("r")) == data
    fd = os.open(m.path("r"), os.O_RDONLY)
    try:
        for off, n in ((0, 1), (4095, 2), (MiB - 7, 70000), (len(data) - 5, 100),
                       (len(data), 10), (len(data) + 1000, 10)):
            assert os.pread(fd, n, off) == data[off:off + n], (off, n)
    finally:
        os.close(fd)


def test_read_ahead_sequential_random_and_after_write(fs):
    """Read-ahead serves a sequential stream, a jump in the middle of it,
    random reads, and never returns data older than our own write."""
    m, srv = fs
    data = bytearray(random.Random(2).randbytes(12 * MiB + 777))
    write_file(os.path.join(srv, "ra"), bytes(data))
    fd = os.open(m.path("ra"), os.O_RDWR)
    try:
        got = bytearray()
        while len(got) < 6 * MiB:
            got += os.read(fd, 128 * 1024)
        assert got == data[:len(got)]
        os.lseek(fd, 9 * MiB + 5, os.SEEK_SET)
        assert os.read(fd, 300000) == data[9 * MiB + 5:9 * MiB + 5 + 300000]
        rnd = random.Random(3)
        for _ in range(100):
            off, n = rnd.randrange(len(data)), rnd.randrange(1, 200000)
            assert os.pread(fd, n, off) == data[off:off + n], (off, n)
        # Sequential again, then overwrite ahead of the reader.
        os.lseek(fd, 0, os.SEEK_SET)
        os.read(fd, 2 * MiB)
        os.pwrite(fd, b"N" * 4096, 3 * MiB)
        data[3 * MiB:3 * MiB + 4096] = b"N" * 4096
        rest = bytearray()
        while len(rest) < 2 * MiB:
            rest += os.read(fd, 128 * 1024)
        assert rest == data[2 * MiB:2 * MiB + len(rest)]
    finally:
        os.close(fd)


def test_many_small_random_writes_land_in_order(fs):
    """3,000 4 KiB pwrites, many to the same blocks, more than the
    write-behind keeps in flight at once: what the server has at fsync
    is exactly the last write to each block."""
    m, srv = fs
    size = 2 * MiB
    model = bytearray(size)
    rnd = random.Random(11)
    fd = os.open(m.path("rand.dat"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.ftruncate(fd, size)
        for i in range(3000):
            off = rnd.randrange(size // 4096) * 4096
            block = bytes([i % 251]) * 4096
            assert os.pwrite(fd, block, off) == 4096
            model[off:off + 4096] = block
        os.fsync(fd)
    finally:
        os.close(fd)
    assert read_file(os.path.join(srv, "rand.dat")) == bytes(model)


def test_pwrite_offsets(fs):
    m, srv = fs
    fd = os.open(m.path("p"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        assert os.pwrite(fd, b"B" * 100, 100_000) == 100
        assert os.pwrite(fd, b"A" * 10, 0) == 10
        assert os.pwrite(fd, b"C" * 5, 50) == 5
        assert os.pwrite(fd, b"D" * 3, 100_050) == 3   # overwrite in the middle
    finally:
        os.close(fd)
    want = bytearray(100_100)
    want[0:10] = b"A" * 10
    want[50:55] = b"C" * 5
    want[100_000:100_100] = b"B" * 100
    want[100_050:100_053] = b"DDD"
    assert read_file(os.path.join(srv, "p")) == bytes(want)
    assert read_file(m.path("p")) == bytes(want)


def test_close_and_fsync_reach_server(fs):
    m, srv = fs
    data = random.Random(2).randbytes(2 * MiB)
    fd = os.open(m.path("s"), os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        assert os.fsync(fd) is None
        # fsync returned 0: the bytes are on the server before close
        assert read_file(os.path.join(srv, "s")) == data
        os.write(fd, b"tail")
        os.fdatasync(fd)
        assert read_file(os.path.join(srv, "s")) == data + b"tail"
        os.write(fd, b"more")
    finally:
        os.close(fd)
    # close returned 0: everything is there
    assert read_file(os.path.join(srv, "s")) == data + b"tailmore"


def test_truncate_and_ftruncate(fs):
    m, srv = fs
    sp = os.path.join(srv, "t")
    write_file(sp, b"x" * 5000)
    os.truncate(m.path("t"), 100)
    assert os.stat(sp).st_size == 100
    os.truncate(m.path("t"), 10_000)
    assert os.stat(sp).st_size == 10_000
    assert read_file(sp) == b"x" * 100 + bytes(9900)
    assert os.stat(m.path("t")).st_size == 10_000

    fd = os.open(m.path("t"), os.O_RDWR)
    try:
        os.pwrite(fd, b"y" * 3000, 0)
        os.ftruncate(fd, 1000)          # cuts data still being written
        assert os.fstat(fd).st_size == 1000
        os.pwrite(fd, b"z", 1999)
        os.fsync(fd)
        assert read_file(sp) == b"y" * 1000 + bytes(999) + b"z"
        os.ftruncate(fd, 0)
    finally:
        os.close(fd)
    assert os.stat(sp).st_size == 0
    assert errno_of(os.truncate, m.path("missing"), 0) == errno.ENOENT


# ---- names ---------------------------------------------------------------------

def test_unlink(fs):
    m, srv = fs
    write_file(os.path.join(srv, "u"), b"x")
    os.unlink(m.path("u"))
    assert not os.path.lexists(os.path.join(srv, "u"))
    assert errno_of(os.stat, m.path("u")) == errno.ENOENT
    assert errno_of(os.unlink, m.path("u")) == errno.ENOENT
    os.mkdir(os.path.join(srv, "d"))
    assert errno_of(os.unlink, m.path("d")) in (errno.EISDIR, errno.EPERM)
    assert os.path.isdir(os.path.join(srv, "d"))
    os.symlink("nowhere", os.path.join(srv, "dangling"))
    os.unlink(m.path("dangling"))
    assert not os.path.lexists(os.path.join(srv, "dangling"))


def test_mkdir_rmdir(fs):
    m, srv = fs
    os.mkdir(m.path("d"), 0o750)
    sv = os.stat(os.path.join(srv, "d"))
    assert stat.S_ISDIR(sv.st_mode)
    assert stat.S_IMODE(sv.st_mode) == 0o750
    assert errno_of(os.mkdir, m.path("d")) == errno.EEXIST
    write_file(os.path.join(srv, "f"), b"")
    assert errno_of(os.mkdir, m.path("f")) == errno.EEXIST
    assert errno_of(os.mkdir, m.path("nope", "sub")) == errno.ENOENT

    write_file(os.path.join(srv, "d", "child"), b"")
    assert errno_of(os.rmdir, m.path("d")) == errno.ENOTEMPTY
    assert os.path.isdir(os.path.join(srv, "d"))
    os.unlink(m.path("d", "child"))
    os.rmdir(m.path("d"))
    assert not os.path.exists(os.path.join(srv, "d"))
    assert errno_of(os.rmdir, m.path("d")) == errno.ENOENT
    assert errno_of(os.rmdir, m.path("f")) == errno.ENOTDIR


def test_rename_replaces_atomically(fs):
    """rename over an existing file replaces it; a server-side watcher
    never sees the target missing (posix-rename is atomic)."""
    m, srv = fs
    target = os.path.join(srv, "target")
    write_file(target, b"old")
    stop, missing = threading.Event(), []

    def watch():
        while not stop.is_set():
            if not os.path.exists(target):
                missing.append(time.monotonic())

    w = threading.Thread(target=watch)
    w.start()
    try:
        for i in range(100):
            write_file(m.path("tmp"), b"v%d" % i)
            os.rename(m.path("tmp"), m.path("target"))
    finally:
        stop.set()
        w.join(10)
    assert not missing, f"target missing {len(missing)} times during renames"
    assert read_file(target) == b"v99"
    assert not os.path.exists(os.path.join(srv, "tmp"))
    assert read_file(m.path("target")) == b"v99"

    # directories, across folders, and errors
    os.mkdir(m.path("d1"))
    write_file(m.path("d1", "inner"), b"in")
    os.mkdir(m.path("d2"))
    os.rename(m.path("d1"), m.path("d2", "moved"))
    assert read_file(os.path.join(srv, "d2", "moved", "inner")) == b"in"
    assert not os.path.exists(os.path.join(srv, "d1"))
    assert errno_of(os.rename, m.path("missing"), m.path("x")) == errno.ENOENT


def test_rename_folder_over_nonempty_folder(fs):
    """M2: a folder renamed over a folder with entries is ENOTEMPTY (the
    server says only "failure"), and nothing moves; over an empty one it
    replaces it."""
    m, srv = fs
    os.mkdir(m.path("a"))
    write_file(m.path("a", "in-a"), b"a")
    os.mkdir(m.path("full"))
    write_file(m.path("full", "in-full"), b"f")
    assert errno_of(os.rename, m.path("a"), m.path("full")) in (errno.ENOTEMPTY,
                                                                errno.EEXIST)
    assert sorted(os.listdir(os.path.join(srv, "a"))) == ["in-a"]
    assert sorted(os.listdir(os.path.join(srv, "full"))) == ["in-full"]
    os.mkdir(m.path("empty"))
    os.rename(m.path("a"), m.path("empty"))
    assert sorted(os.listdir(os.path.join(srv, "empty"))) == ["in-a"]
    assert not os.path.exists(os.path.join(srv, "a"))


def _renameat2(old, new, flags):
    libc = ctypes.CDLL(None, use_errno=True)
    at_fdcwd = -100
    rc = libc.renameat2(at_fdcwd, os.fsencode(old), at_fdcwd,
                        os.fsencode(new), ctypes.c_uint(flags))
    return 0 if rc == 0 else ctypes.get_errno()


def test_rename_noreplace(fs):
    m, srv = fs
    RENAME_NOREPLACE = 1
    write_file(os.path.join(srv, "a"), b"a")
    write_file(os.path.join(srv, "b"), b"b")
    assert _renameat2(m.path("a"), m.path("b"), RENAME_NOREPLACE) == errno.EEXIST
    assert read_file(os.path.join(srv, "a")) == b"a"
    assert read_file(os.path.join(srv, "b")) == b"b"
    assert _renameat2(m.path("a"), m.path("c"), RENAME_NOREPLACE) == 0
    assert read_file(os.path.join(srv, "c")) == b"a"
    assert not os.path.exists(os.path.join(srv, "a"))


def test_link(fs):
    m, srv = fs
    write_file(os.path.join(srv, "orig"), b"warc data")
    os.link(m.path("orig"), m.path("hard"))
    so, sh = os.stat(os.path.join(srv, "orig")), os.stat(os.path.join(srv, "hard"))
    assert so.st_ino == sh.st_ino
    assert sh.st_nlink == 2
    # (SFTP v3 attributes carry no link count: the mount shows 1, as sshfs)
    assert read_file(m.path("hard")) == b"warc data"
    assert errno_of(os.link, m.path("orig"), m.path("hard")) == errno.EEXIST
    assert errno_of(os.link, m.path("missing"), m.path("x")) == errno.ENOENT
    os.unlink(m.path("orig"))
    assert os.stat(os.path.join(srv, "hard")).st_nlink == 1


def test_link_names_share_attribute_changes(fs):
    """Two names of one file made by link(): a truncate, chmod or utimens
    through one is seen at once through the other (fsstress found a
    stale size: each name had its own cached attributes)."""
    m, srv = fs
    write_file(m.path("a"), b"x" * 10000)
    os.link(m.path("a"), m.path("b"))
    assert os.stat(m.path("b")).st_size == 10000
    os.truncate(m.path("a"), 100)
    assert os.stat(m.path("b")).st_size == 100
    os.truncate(m.path("b"), 50)
    assert os.stat(m.path("a")).st_size == 50
    assert read_file(m.path("a")) == b"x" * 50
    os.chmod(m.path("a"), 0o600)
    assert stat.S_IMODE(os.stat(m.path("b")).st_mode) == 0o600
    os.utime(m.path("b"), (1_500_000_000, 1_500_000_000))
    assert os.stat(m.path("a")).st_mtime == 1_500_000_000
    fd = os.open(m.path("b"), os.O_WRONLY)
    try:
        os.ftruncate(fd, 7)
    finally:
        os.close(fd)
    assert os.stat(m.path("a")).st_size == 7
    assert os.path.getsize(os.path.join(srv, "a")) == 7
    # A name that wrote the file knows an end of its own (for appends):
    # a truncate through the other name moves it too (fsstress).
    fd = os.open(m.path("b"), os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, b"y" * 5000)
        os.fsync(fd)
        assert os.stat(m.path("a")).st_size == 5007
        os.truncate(m.path("a"), 3)
        assert os.stat(m.path("b")).st_size == 3
        assert os.fstat(fd).st_size == 3
        os.write(fd, b"z")
    finally:
        os.close(fd)
    assert read_file(os.path.join(srv, "a")) == b"xxxz"
    # O_TRUNC through one name.
    os.close(os.open(m.path("a"), os.O_WRONLY | os.O_TRUNC))
    assert os.stat(m.path("b")).st_size == 0


def test_symlink_readlink(fs):
    m, srv = fs
    os.symlink("some/relative target", m.path("rel"))
    os.symlink("/abs/olute", m.path("abs"))
    # OpenSSH's SYMLINK takes (target, link) the other way round: a mixup
    # would create a link named after the target, or fail
    assert os.readlink(os.path.join(srv, "rel")) == "some/relative target"
    assert os.readlink(os.path.join(srv, "abs")) == "/abs/olute"
    assert not os.path.lexists(os.path.join(srv, "some"))
    assert os.readlink(m.path("rel")) == "some/relative target"
    os.symlink("server-made", os.path.join(srv, "s"))
    assert os.readlink(m.path("s")) == "server-made"
    assert errno_of(os.symlink, "x", m.path("rel")) == errno.EEXIST
    write_file(os.path.join(srv, "f"), b"")
    assert errno_of(os.readlink, m.path("f")) == errno.EINVAL
    # a link to a file in the mount can be followed
    os.symlink("f", m.path("tof"))
    assert os.path.isfile(m.path("tof"))


def test_setattr_of_symlink_leaves_its_target(fs):
    """touch -h and chown -h act on the symlink itself (lsetstat@, which
    OpenSSH's server offers), never on the file it points to; without
    AT_SYMLINK_NOFOLLOW they act on the target, as on Linux."""
    m, srv = fs
    target = os.path.join(srv, "target")
    write_file(target, b"t")
    os.utime(target, (1_000_000_000, 1_000_000_000))
    os.symlink("target", m.path("link"))
    os.utime(m.path("link"), (1_600_000_000, 1_600_000_000), follow_symlinks=False)
    assert os.stat(target).st_mtime == 1_000_000_000
    assert os.lstat(os.path.join(srv, "link")).st_mtime == 1_600_000_000
    assert os.lstat(m.path("link")).st_mtime == 1_600_000_000
    os.chown(m.path("link"), 4321, 4321, follow_symlinks=False)
    assert os.lstat(os.path.join(srv, "link")).st_uid == 4321
    assert os.stat(target).st_uid == 0
    # A dangling link too (SETSTAT would fail with ENOENT on it).
    os.symlink("nowhere", m.path("dangling"))
    os.utime(m.path("dangling"), (1_500_000_000, 1_500_000_000),
             follow_symlinks=False)
    assert os.lstat(os.path.join(srv, "dangling")).st_mtime == 1_500_000_000
    # Following the link: the target changes.
    os.utime(m.path("link"), (1_700_000_000, 1_700_000_000))
    assert os.stat(target).st_mtime == 1_700_000_000
    assert os.lstat(os.path.join(srv, "link")).st_mtime == 1_600_000_000


# ---- attributes ----------------------------------------------------------------

def test_chmod(fs):
    m, srv = fs
    write_file(os.path.join(srv, "f"), b"")
    os.mkdir(os.path.join(srv, "d"))
    os.chmod(m.path("f"), 0o640)
    os.chmod(m.path("d"), 0o700)
    assert stat.S_IMODE(os.stat(os.path.join(srv, "f")).st_mode) == 0o640
    assert stat.S_IMODE(os.stat(os.path.join(srv, "d")).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(m.path("f")).st_mode) == 0o640
    os.chmod(m.path("f"), 0o4755)
    assert stat.S_IMODE(os.stat(os.path.join(srv, "f")).st_mode) == 0o4755
    fd = os.open(m.path("f"), os.O_RDONLY)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    assert stat.S_IMODE(os.stat(os.path.join(srv, "f")).st_mode) == 0o600


def test_chown(fs):
    m, srv = fs
    write_file(os.path.join(srv, "f"), b"")
    os.chown(m.path("f"), 1234, 5678)
    sv = os.stat(os.path.join(srv, "f"))
    assert (sv.st_uid, sv.st_gid) == (1234, 5678)
    assert (os.stat(m.path("f")).st_uid, os.stat(m.path("f")).st_gid) == (1234, 5678)
    os.chown(m.path("f"), -1, 42)     # group only
    sv = os.stat(os.path.join(srv, "f"))
    assert (sv.st_uid, sv.st_gid) == (1234, 42)


def test_utimens(fs):
    m, srv = fs
    write_file(os.path.join(srv, "f"), b"")
    os.utime(m.path("f"), (1_400_000_000, 1_450_000_000))
    sv = os.stat(os.path.join(srv, "f"))
    assert int(sv.st_mtime) == 1_450_000_000
    assert int(sv.st_atime) == 1_400_000_000
    assert int(os.stat(m.path("f")).st_mtime) == 1_450_000_000
    before = time.time()
    os.utime(m.path("f"))       # now
    sv = os.stat(os.path.join(srv, "f"))
    assert abs(sv.st_mtime - before) < 5


def test_statfs(fs):
    m, srv = fs
    got, want = os.statvfs(m.mountpoint), os.statvfs(srv)
    assert got.f_frsize * got.f_blocks == want.f_frsize * want.f_blocks
    if got.f_frsize == want.f_frsize:
        assert got.f_blocks == want.f_blocks
    # free space moves while other tests write: roughly equal
    assert abs(got.f_bavail * got.f_frsize - want.f_bavail * want.f_frsize) \
        < 256 * MiB + want.f_blocks * want.f_frsize // 100
    assert got.f_namemax == 255


def test_name_length(fs):
    m, srv = fs
    ok, long = "n" * 255, "n" * 256
    write_file(m.path(ok), b"ok")
    assert read_file(os.path.join(srv, ok)) == b"ok"
    assert ok in names(m.mountpoint)
    os.mkdir(m.path("d" * 255))
    assert os.path.isdir(os.path.join(srv, "d" * 255))
    for fn, args in ((os.stat, (m.path(long),)),
                     (os.open, (m.path(long), os.O_CREAT | os.O_WRONLY, 0o644)),
                     (os.mkdir, (m.path(long),)),
                     (os.symlink, ("t", m.path(long))),
                     (os.rename, (m.path(ok), m.path(long))),
                     (os.link, (m.path(ok), m.path(long)))):
        assert errno_of(fn, *args) == errno.ENAMETOOLONG, fn.__name__
    assert os.listdir(srv) and all(len(n) <= 255 for n in os.listdir(srv))


def test_sparse_past_4gib(fs):
    m, srv = fs
    off = 5 * GiB
    fd = os.open(m.path("big"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        assert os.pwrite(fd, b"past four gigabytes", off) == 19
        os.fsync(fd)
        assert os.fstat(fd).st_size == off + 19
        assert os.pread(fd, 19, off) == b"past four gigabytes"
        assert os.pread(fd, 16, 4 * GiB + 7) == bytes(16)
    finally:
        os.close(fd)
    sv = os.stat(os.path.join(srv, "big"))
    assert sv.st_size == off + 19
    assert sv.st_blocks * 512 < 64 * MiB    # still sparse on the server
    with open(os.path.join(srv, "big"), "rb") as f:
        f.seek(off)
        assert f.read() == b"past four gigabytes"
    assert os.stat(m.path("big")).st_size == off + 19


# ---- concurrency -------------------------------------------------------------

@pytest.mark.timeout(120)
def test_threads_write_different_files(fs):
    m, srv = fs
    blobs = {f"f{i}": random.Random(i).randbytes(3 * MiB + i * 4099)
             for i in range(8)}

    def writer(name):
        def go():
            fd = os.open(m.path(name), os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                data = memoryview(blobs[name])
                for off in range(0, len(data), 128 * 1024):
                    os.pwrite(fd, data[off:off + 128 * 1024], off)
            finally:
                os.close(fd)
        return go

    run_threads([writer(n) for n in blobs], timeout=90)
    for name, data in blobs.items():
        assert sha256_of(os.path.join(srv, name)) == hashlib.sha256(data).hexdigest(), name


@pytest.mark.timeout(120)
def test_threads_pwrite_one_file(fs):
    m, srv = fs
    span = 2 * MiB
    data = random.Random(9).randbytes(8 * span)
    fd = os.open(m.path("shared"), os.O_RDWR | os.O_CREAT, 0o644)

    def writer(i):
        def go():
            chunk = 64 * 1024 + 11       # unaligned on purpose
            lo, hi = i * span, (i + 1) * span
            # back to front, so the file's end is set by the last range early
            offs = list(range(lo, hi, chunk))[::-1]
            for off in offs:
                end = min(off + chunk, hi)
                assert os.pwrite(fd, data[off:end], off) == end - off
        return go

    try:
        run_threads([writer(i) for i in range(8)], timeout=90)
    finally:
        os.close(fd)
    assert os.stat(os.path.join(srv, "shared")).st_size == len(data)
    assert sha256_of(os.path.join(srv, "shared")) == hashlib.sha256(data).hexdigest()
    assert sha256_of(m.path("shared")) == hashlib.sha256(data).hexdigest()


# ---- uid=, gid=, umask= --------------------------------------------------------

def test_uid_gid_umask_options(sshd, remote_subdir, mount_steadyfs):
    srv = os.path.join(sshd.remote_dir, remote_subdir)
    write_file(os.path.join(srv, "f"), b"")
    os.chmod(os.path.join(srv, "f"), 0o666)
    os.mkdir(os.path.join(srv, "d"))
    os.chmod(os.path.join(srv, "d"), 0o777)
    m = mount_steadyfs(sshd, remote_subdir=remote_subdir,
                       opts={"uid": 4321, "gid": 8765, "umask": "0027"})
    for name, mode in (("f", 0o640), ("d", 0o750)):
        st = os.stat(m.path(name))
        assert (st.st_uid, st.st_gid) == (4321, 8765), name
        assert stat.S_IMODE(st.st_mode) == mode, name
    st = os.stat(m.mountpoint)
    assert (st.st_uid, st.st_gid) == (4321, 8765)
    # the server keeps its own numbers and modes
    sv = os.stat(os.path.join(srv, "f"))
    assert stat.S_IMODE(sv.st_mode) == 0o666 and sv.st_uid == 0
