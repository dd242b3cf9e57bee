"""Write-behind against the calls that must be ordered with it, and the
error paths of writes, fsync, close and open (docs/retries.md, "Writes:
write-behind and replay" and "fsync and close").

Each test checks the server's copy directly (sshd.remote_dir/...), not
only what the mount answers.
"""

import errno
import json
import os
import random
import signal
import time

import pytest

from test_ops import MiB, fs, read_file, write_file  # noqa: F401 - fs is a fixture
from test_server_input import lying_sshd


# ---- truncate against write-behind -----------------------------------------------

@pytest.mark.timeout(120)
def test_ftruncate_down_below_writes_still_queued(fs):
    """A write past the new end that is still in the write-behind queue
    when ftruncate() shrinks the file must land before the truncation,
    never after it (the file would grow back: fsx's "Size error"). The
    truncate goes to any session while the writes are on the handle's, so
    each round writes a window's worth first."""
    m, srv = fs
    rnd = random.Random(7)
    fd = os.open(m.path("t"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        for i in range(6):
            data = rnd.randbytes(3 * MiB + rnd.randrange(4096))
            assert os.pwrite(fd, data, 0) == len(data)
            new = rnd.randrange(1, 200_000)
            os.ftruncate(fd, new)
            assert os.fstat(fd).st_size == new, i
            assert os.lseek(fd, 0, os.SEEK_END) == new, i
            assert os.pread(fd, 300_000, 0) == data[:new], i
            os.fsync(fd)
            assert os.stat(os.path.join(srv, "t")).st_size == new, i
    finally:
        os.close(fd)
    # Nothing landed late either.
    assert os.stat(os.path.join(srv, "t")).st_size == new
    assert os.stat(m.path("t")).st_size == new



@pytest.mark.timeout(120)
def test_truncating_open_after_writes_still_queued(fs):
    """open(O_TRUNC) through a second descriptor while the first one's
    writes are still queued: the truncation comes after them, as on a
    local filesystem (they grew the file back)."""
    m, srv = fs
    rnd = random.Random(8)
    fd = os.open(m.path("t"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        for i in range(4):
            assert os.pwrite(fd, rnd.randbytes(3 * MiB), 0) == 3 * MiB
            fd2 = os.open(m.path("t"), os.O_WRONLY | os.O_TRUNC)
            os.write(fd2, b"new")
            os.close(fd2)
            os.fsync(fd)
            assert read_file(os.path.join(srv, "t")) == b"new", i
    finally:
        os.close(fd)



FSX_MAX = 0x40000            # fsx's default largest file


def fsx_like(path, seed, ops):
    """fsx's loop, shortened: random writes (past the end too), truncates
    up and down, copy_file_range, mapped reads and writes, each checked
    against a model of the file: every read's bytes, and the size through
    fstat and lseek(SEEK_END) after each operation. Returns the model."""
    import mmap
    rnd = random.Random(seed)
    model = bytearray()
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for i in range(ops):
            op = rnd.choice(("write", "write", "read", "truncate", "copy",
                             "mapread", "mapwrite", "fsync"))
            off = rnd.randrange(FSX_MAX)
            n = rnd.randrange(1, 0x10000)
            what = f"seed {seed} op {i} {op} off {off:#x} len {n:#x} size {len(model):#x}"
            if op == "write":
                n = min(n, FSX_MAX - off)
                data = rnd.randbytes(n)
                assert os.pwrite(fd, data, off) == n, what
                if off > len(model):
                    model.extend(bytes(off - len(model)))
                model[off:off + n] = data
            elif op == "truncate":
                os.ftruncate(fd, off)
                del model[off:]
                model.extend(bytes(off - len(model)))
            elif op == "copy" and len(model) > 1:
                src = rnd.randrange(len(model))
                n = min(n, len(model) - src, FSX_MAX - off)
                if off < src + n and src < off + n:
                    continue              # overlapping: EINVAL by design
                assert os.copy_file_range(fd, fd, n, src, off) == n, what
                data = model[src:src + n]
                if off > len(model):
                    model.extend(bytes(off - len(model)))
                model[off:off + n] = data
            elif op == "mapwrite" and 0 < off + n <= FSX_MAX:
                end = off + n
                if end > len(model):
                    os.ftruncate(fd, end)
                    model.extend(bytes(end - len(model)))
                data = rnd.randbytes(n)
                with mmap.mmap(fd, end) as mm:
                    mm[off:end] = data
                    mm.flush()
                model[off:end] = data
            elif op == "fsync":
                os.fsync(fd)
            elif op in ("read", "mapread") and model:
                off %= len(model)
                n = min(n, len(model) - off)
                if op == "read":
                    got = os.pread(fd, n, off)
                else:
                    with mmap.mmap(fd, len(model), prot=mmap.PROT_READ) as mm:
                        got = mm[off:off + n]
                assert got == model[off:off + n], what
            assert os.fstat(fd).st_size == len(model), what
            assert os.lseek(fd, 0, os.SEEK_END) == len(model), what
        os.fsync(fd)
    finally:
        os.close(fd)
    return model


@pytest.mark.timeout(180)
@pytest.mark.parametrize("seed", [1, 7])
def test_fsx_like_operations_match_a_model(fs, seed):
    """A short fsx in the test suite (fsx itself runs in `make
    conformance`): 1,500 random operations, then the server's copy."""
    m, srv = fs
    model = fsx_like(m.path("fsx"), seed, 1500)
    assert read_file(os.path.join(srv, "fsx")) == bytes(model)


# ---- a write that fails queues nothing -------------------------------------------

def control_status(m):
    """.control/status as a dict of strings."""
    with open(m.path(".control", "status")) as f:
        return dict(line.split(": ", 1) for line in f.read().splitlines()
                    if ": " in line)


def write_or_errno(fd, data):
    """os.write's count, or the errno it failed with."""
    try:
        return os.write(fd, data), 0
    except OSError as e:
        return 0, e.errno


def retry_until(fn, seconds):
    """fn() until it stops raising OSError, within a deadline."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return fn()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.mark.timeout(120)
def test_failed_append_queues_nothing(sshd, remote_subdir, fault_proxy,
                                      mount_steadyfs):
    """An O_APPEND writer during an outage: the writes that fit in the
    4 MiB per-handle window succeed, the one that crosses it returns a
    short count (the kernel split it, and its last request failed), later
    ones fail with EIO. None of the failed bytes is queued and the end
    offset does not move, so retrying exactly what failed after the link
    returns leaves the file holding each write once."""
    proxy = fault_proxy(sshd)
    m = mount_steadyfs(sshd, remote_subdir=remote_subdir, port=proxy.port,
                       expect_errors=True,
                       opts={"op_timeout": 2, "connect_timeout": 1,
                             "backoff_max": 0.5, "connections": 2})
    srv = os.path.join(sshd.remote_dir, remote_subdir, "log")
    rnd = random.Random(3)
    a = rnd.randbytes(4096)                 # page-aligned: FUSE splits at 1 MiB
    b, c = rnd.randbytes(MiB), rnd.randbytes(MiB)
    d = rnd.randbytes(2 * MiB + 100)        # its last 100 bytes cross the window
    e, f = rnd.randbytes(MiB), rnd.randbytes(1000)
    fd = os.open(m.path("log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        assert os.write(fd, a) == len(a)
        os.fsync(fd)
        proxy.blackhole()
        try:
            assert write_or_errno(fd, b) == (len(b), 0)
            assert write_or_errno(fd, c) == (len(c), 0)
            # Requests of up to 1 MiB: the first two fit, the third (the
            # last 100 bytes) does not, and the kernel answers the count
            # of those that succeeded.
            n, err = write_or_errno(fd, d)
            assert (n, err) == (2 * MiB, 0)
            assert write_or_errno(fd, e) == (0, errno.EIO)
            assert write_or_errno(fd, f) == (0, errno.EIO)
            assert int(control_status(m)["unacked_bytes"]) <= 4 * MiB
        finally:
            proxy.restore()
        # The caller retries what failed, once the link is back.
        retry_until(lambda: os.write(fd, d[n:]), 20)
        for data in (e, f):
            assert os.write(fd, data) == len(data)
        os.fsync(fd)
    finally:
        os.close(fd)
    want = a + b + c + d + e + f
    got = read_file(srv)
    assert len(got) == len(want)
    assert got == want


# ---- a server that refuses fsync@, CLOSE or FSTAT ---------------------------------

def refusing(make_sshd, tmp_path, **codes):
    """A private sshd whose sftp-server (OpenSSH's, behind sftpshim.py)
    answers each named request with the SFTP status given, e.g.
    refusing(make_sshd, tmp_path, close=4) or {"fsync@openssh.com": 3}."""
    return lying_sshd(make_sshd, tmp_path, refuse=codes)


def events(m):
    with open(m.path(".control", "events")) as f:
        return [json.loads(line) for line in f if line.strip()]


def metric(m, name):
    """The value of an unlabelled metric (beyond its mountpoint label)."""
    with open(m.path(".control", "metrics")) as f:
        for line in f:
            if line.startswith(name + "{") or line.startswith(name + " "):
                return float(line.rsplit(None, 1)[1])
    return None


def wait_for(fn, seconds):
    """fn()'s first true value, polled within a deadline (else the last)."""
    deadline = time.monotonic() + seconds
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(0.05)


@pytest.mark.parametrize("code, want", [(3, errno.EACCES), (4, errno.EIO),
                                        (8, 0)])
def test_fsync_refused_gets_its_errno(make_sshd, mount_steadyfs, tmp_path, code,
                                      want):
    """fsync@openssh.com advertised but refused: the refusal's errno, a
    permission denial included. Only "unsupported" (8) falls back to the
    acknowledgements, as a server that does not advertise it."""
    s = refusing(make_sshd, tmp_path, **{"fsync@openssh.com": code})
    m = mount_steadyfs(s, expect_errors=True)
    fd = os.open(m.path("f"), os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"data")
        got = 0
        try:
            os.fsync(fd)
        except OSError as e:
            got = e.errno
        assert got == want
    finally:
        os.close(fd)
    assert read_file(os.path.join(s.remote_dir, "f")) == b"data"


def test_close_refused_is_reported(make_sshd, mount_steadyfs, tmp_path):
    """The kernel drops the answer to a release, so close(2) returns 0
    whatever the CLOSE got: a refused CLOSE is a log line, a `data` event
    with the path and the range written since the last fsync, and a
    counter."""
    s = refusing(make_sshd, tmp_path, close=4)
    m = mount_steadyfs(s, expect_errors=True)
    fd = os.open(m.path("synced"), os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"x" * 5000)
    os.fsync(fd)
    os.close(fd)
    fd = os.open(m.path("unsynced"), os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"y" * 100)
    os.pwrite(fd, b"z" * 100, 1000)
    os.close(fd)

    def close_events():
        evs = [e for e in events(m) if e.get("close_failed")]
        return evs if len(evs) >= 2 else None

    evs = wait_for(close_events, 10)
    assert evs, events(m)
    by_path = {os.path.basename(e["path"]): e for e in evs}
    assert by_path["synced"]["length"] == 0
    assert (by_path["unsynced"]["offset"], by_path["unsynced"]["end"]) == (0, 1100)
    assert by_path["unsynced"]["type"] == "data"
    assert by_path["unsynced"]["errno_name"] == "EIO"
    assert metric(m, "steadyfs_close_failures_total") == 2
    assert "close '" in m.stderr_text() and "bytes 0-1100" in m.stderr_text()


def open_files_under(pids, folder):
    """Descriptors of `pids` open on files in `folder`."""
    n = 0
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(folder + "/"):
                    n += 1
            except OSError:
                pass
    return n


def test_failed_open_closes_its_remote_handle(make_sshd, mount_steadyfs, tmp_path):
    """An open for writing learns the file's size with FSTAT after the
    server opened it; when that FSTAT fails, the open fails and the
    server's handle is closed (it was left open, one per attempt)."""
    s = refusing(make_sshd, tmp_path, fstat=4)
    m = mount_steadyfs(s, expect_errors=True)
    with open(os.path.join(s.remote_dir, "f"), "wb") as f:
        f.write(b"old")
    for _ in range(5):
        with pytest.raises(OSError) as e:
            os.open(m.path("f"), os.O_WRONLY)
        assert e.value.errno == errno.EIO
    assert wait_for(lambda: open_files_under(s.sftp_server_pids(),
                                             s.remote_dir) == 0, 10), \
        open_files_under(s.sftp_server_pids(), s.remote_dir)
    # The same server's opens that need no FSTAT still work.
    with open(m.path("f"), "rb") as f:
        assert f.read() == b"old"


@pytest.mark.timeout(120)
def test_handle_reopened_after_its_release_is_closed(sshd, remote_subdir,
                                                     fault_proxy, mount_steadyfs):
    """A read during an outage starts a reopen and fails at its deadline;
    the descriptor is closed before the link returns (its release finds
    no remote handle to close). When the reopen completes later, the
    handle it opened is closed on the server, not left open."""
    proxy = fault_proxy(sshd)
    m = mount_steadyfs(sshd, remote_subdir=remote_subdir, port=proxy.port,
                       expect_errors=True,
                       opts={"op_timeout": 2, "connect_timeout": 1,
                             "backoff_max": 0.5, "connections": 1})
    folder = os.path.join(sshd.remote_dir, remote_subdir)
    with open(os.path.join(folder, "r"), "wb") as f:
        f.write(bytes(16 * MiB))
    fd = os.open(m.path("r"), os.O_RDONLY)
    assert len(os.pread(fd, 10, 0)) == 10
    proxy.cut()
    try:
        with pytest.raises(OSError) as e:
            os.pread(fd, 4096, 12 * MiB)
        assert e.value.errno == errno.EIO
        os.close(fd)
    finally:
        proxy.restore()
    assert wait_for(lambda: "reopened '" in m.stderr_text(), 20), m.stderr_text()
    assert wait_for(lambda: open_files_under(sshd.sftp_server_pids(),
                                             folder) == 0, 10), \
        open_files_under(sshd.sftp_server_pids(), folder)


# ---- queued writes against the calls of other descriptors ---------------------------

@pytest.fixture
def slow_fs(sshd, remote_subdir, fault_proxy, mount_steadyfs):
    """(mount, server folder, proxy) through a link throttled to 512 KiB/s
    each way: a 1 MiB write stays queued (unacknowledged) for about two
    seconds, while a request on another session (the pool picks the one
    with the fewest in flight) is answered at once."""
    proxy = fault_proxy(sshd)
    m = mount_steadyfs(sshd, remote_subdir=remote_subdir, port=proxy.port,
                       opts={"connections": 4})
    # Every session up: with one, requests would stay in order anyway.
    assert wait_for(lambda: control_status(m)["sessions"].strip() == "4/4", 20), \
        control_status(m)
    proxy.throttle(512 * 1024)
    return m, os.path.join(sshd.remote_dir, remote_subdir), proxy


@pytest.mark.timeout(120)
def test_append_after_truncating_open_of_another_descriptor(fs):
    """M1: an O_APPEND descriptor stays open while another one opens the
    file with O_TRUNC: the next append lands at 0, not at the old end
    past a hole of zeros."""
    m, srv = fs
    fd = os.open(m.path("log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        assert os.write(fd, b"x" * 5000) == 5000
        os.fsync(fd)
        os.close(os.open(m.path("log"), os.O_WRONLY | os.O_TRUNC))
        assert os.write(fd, b"abc") == 3
        os.fsync(fd)
        assert os.fstat(fd).st_size == 3
    finally:
        os.close(fd)
    assert read_file(os.path.join(srv, "log")) == b"abc"
    assert read_file(m.path("log")) == b"abc"


@pytest.mark.timeout(120)
def test_read_through_another_descriptor_sees_queued_writes(slow_fs):
    """M3: what write() accepted is what a read through another
    descriptor returns (a `cat` right after the write), although the
    server has not acknowledged it yet."""
    m, srv, _ = slow_fs
    rnd = random.Random(31)
    fd = os.open(m.path("f"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        old = rnd.randbytes(MiB)
        assert os.pwrite(fd, old, 0) == MiB
        os.fsync(fd)
        new = rnd.randbytes(MiB // 2)
        assert os.pwrite(fd, new, 1000) == len(new)
        assert os.pwrite(fd, b"tail", 2 * MiB) == 4
        want = old[:1000] + new + old[1000 + len(new):] + bytes(MiB) + b"tail"
        assert read_file(m.path("f")) == want
        # Behind a megabyte still queued, a write far past the server's
        # end: a read of the hole before it is zeros, not the end of file.
        assert os.pwrite(fd, rnd.randbytes(MiB), 0) == MiB
        assert os.pwrite(fd, b"end", 8 * MiB) == 3
        fd2 = os.open(m.path("f"), os.O_RDONLY)
        try:
            assert os.pread(fd2, 4096, 4 * MiB) == bytes(4096)
        finally:
            os.close(fd2)
        os.fsync(fd)
    finally:
        os.close(fd)
    assert os.stat(os.path.join(srv, "f")).st_size == 8 * MiB + 3


@pytest.mark.timeout(120)
def test_overlapping_writes_of_two_descriptors_land_in_order(slow_fs):
    """M4: a write overlapping one still queued through another
    descriptor (maybe on another session) lands after it."""
    m, srv, _ = slow_fs
    rnd = random.Random(41)
    fd1 = os.open(m.path("f"), os.O_RDWR | os.O_CREAT, 0o644)
    fd2 = os.open(m.path("f"), os.O_RDWR)
    try:
        first = rnd.randbytes(MiB)
        assert os.pwrite(fd1, first, 0) == MiB
        second = rnd.randbytes(4096)
        assert os.pwrite(fd2, second, 8192) == 4096
        os.fsync(fd1)
        os.fsync(fd2)
    finally:
        os.close(fd1)
        os.close(fd2)
    want = first[:8192] + second + first[12288:]
    assert read_file(os.path.join(srv, "f")) == want


@pytest.mark.timeout(120)
def test_utime_after_writes_still_queued_keeps_its_time(slow_fs):
    """M5: utimens while writes are queued (cp -p, tar -x, rsync -t):
    the writes land first, so they do not set the mtime to now after
    it."""
    m, srv, _ = slow_fs
    fd = os.open(m.path("f"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        assert os.pwrite(fd, random.Random(51).randbytes(MiB), 0) == MiB
        os.utime(m.path("f"), (1_500_000_000, 1_500_000_000))
        os.fsync(fd)
    finally:
        os.close(fd)
    assert os.stat(os.path.join(srv, "f")).st_mtime == 1_500_000_000


@pytest.mark.timeout(120)
def test_overlapping_writes_during_an_outage_replay_in_order(sshd, remote_subdir,
                                                             fault_proxy,
                                                             mount_steadyfs):
    """M7: two overlapping writes of one descriptor queued while the link
    is cut are sent again after the reconnect in the order write()
    accepted them: the newer bytes win."""
    proxy = fault_proxy(sshd)
    m = mount_steadyfs(sshd, remote_subdir=remote_subdir, port=proxy.port,
                       expect_errors=True,
                       opts={"connect_timeout": 1, "backoff_max": 0.5})
    rnd = random.Random(61)
    fd = os.open(m.path("f"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        assert os.write(fd, b"x") == 1
        os.fsync(fd)
        older, newer = rnd.randbytes(200_000), rnd.randbytes(100_000)
        proxy.cut()
        try:
            assert os.pwrite(fd, older, 0) == len(older)
            assert os.pwrite(fd, newer, 50_000) == len(newer)
        finally:
            proxy.restore()
        os.fsync(fd)
    finally:
        os.close(fd)
    want = older[:50_000] + newer + older[150_000:]
    assert read_file(os.path.join(sshd.remote_dir, remote_subdir, "f")) == want


@pytest.mark.timeout(120)
def test_overlapping_writes_through_two_links_land_in_order(slow_fs):
    """M4 through two names of one file (a hard link made through the
    mount: two nodes, maybe two sessions): the newer write lands last, and
    a read through one name sees what was written through the other."""
    m, srv, _ = slow_fs
    rnd = random.Random(43)
    write_file(m.path("a"), rnd.randbytes(64 * 1024))
    os.link(m.path("a"), m.path("b"))
    fd1 = os.open(m.path("a"), os.O_RDWR)
    fd2 = os.open(m.path("b"), os.O_RDWR)
    try:
        first = rnd.randbytes(MiB)
        assert os.pwrite(fd1, first, 0) == MiB
        second = rnd.randbytes(4096)
        assert os.pwrite(fd2, second, 8192) == 4096
        os.fsync(fd1)
        os.fsync(fd2)
    finally:
        os.close(fd1)
        os.close(fd2)
    want = first[:8192] + second + first[12288:]
    assert read_file(os.path.join(srv, "a")) == want


@pytest.mark.timeout(120)
def test_append_of_another_descriptor_after_a_kill_lost_data(sshd, remote_subdir,
                                                          fault_proxy, mount_steadyfs):
    """Two O_APPEND descriptors of one file; the daemon is killed while
    one of them has 1 MiB unacknowledged (reported lost, that descriptor
    fails with EIO for good). The other lost nothing: its next append
    must land at the end of what the server has, not fail. Before, the
    new daemon forgot the end (it counted the lost bytes) and every
    append of the file failed with EIO ("append offset unknown")."""
    proxy = fault_proxy(sshd)
    m = mount_steadyfs(sshd, remote_subdir=remote_subdir, port=proxy.port,
                       opts={"connections": 4}, expect_errors=True)
    assert wait_for(lambda: control_status(m)["sessions"].strip() == "4/4", 20), \
        control_status(m)
    proxy.throttle(512 * 1024)
    srv = os.path.join(sshd.remote_dir, remote_subdir)
    import sshdfix
    from mounts import wait_gone
    from test_keeper import wait_new_daemon
    old = m.daemon_pid()
    fd1 = os.open(m.path("log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    fd2 = os.open(m.path("log"), os.O_WRONLY | os.O_APPEND)
    try:
        assert os.write(fd2, b"head" * 250) == 1000
        os.fsync(fd2)
        assert os.write(fd1, b"x" * MiB) == MiB  # queued, 2 s at 512 KiB/s
        sessions = sshdfix.descendants(sshd.pid)
        os.kill(old, signal.SIGKILL)
        assert wait_new_daemon(m, old), "no new daemon after the kill"
        proxy.throttle(0)
        # What the dead daemon had in its sockets lands first (M6).
        assert wait_gone(sessions, 20), "the dead daemon's sessions stayed"
        size = os.path.getsize(os.path.join(srv, "log"))
        assert 1000 <= size < 1000 + MiB
        assert write_or_errno(fd2, b"tail") == (4, 0)
        os.fsync(fd2)
        assert write_or_errno(fd1, b"more") == (0, errno.EIO)
    finally:
        os.close(fd2)
        try:
            os.close(fd1)
        except OSError:
            pass  # its loss, reported again
    got = read_file(os.path.join(srv, "log"))
    assert len(got) == size + 4 and got.endswith(b"tail") and got.startswith(b"head" * 250)


@pytest.mark.timeout(120)
def test_append_after_the_server_truncated_a_closed_file(fs):
    """A log appended through the mount and closed, then truncated on the
    server (logrotate's copytruncate run there): the next writer's
    appends start at the server's end, not after a hole as long as the
    old file, and stat shows the server's size. Before, the end offset
    outlived the descriptors: 10,005 bytes on the server, the first
    10,000 zeros."""
    m, srv = fs
    fd = os.open(m.path("log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        assert os.write(fd, b"x" * 10000) == 10000
        os.fsync(fd)
    finally:
        os.close(fd)
    os.truncate(os.path.join(srv, "log"), 0)
    # The attribute cache lives attr_timeout; then the server's size.
    assert wait_for(lambda: os.stat(m.path("log")).st_size == 0, 20), \
        os.stat(m.path("log")).st_size
    fd = os.open(m.path("log"), os.O_WRONLY | os.O_APPEND)
    try:
        assert os.write(fd, b"abcde") == 5
        os.fsync(fd)
    finally:
        os.close(fd)
    assert read_file(os.path.join(srv, "log")) == b"abcde"


@pytest.mark.timeout(120)
def test_size_from_the_cache_after_the_last_close(sshd, remote_subdir, fault_proxy,
                                                 mount_steadyfs):
    """A file appended to and closed, then stat'ed while no session is up
    (answered from the attributes cached before the last writes): the
    size is the one the writes made. Before, the end offset forgotten at
    the last close no longer raised the cached size (soak seed 720018: a
    `cat` during a 0.22 s cut read 3790 of 8941 bytes)."""
    proxy = fault_proxy(sshd)
    m = mount_steadyfs(sshd, remote_subdir=remote_subdir, port=proxy.port,
                       expect_errors=True,
                       opts={"attr_timeout": 0, "entry_timeout": 0})
    fd = os.open(m.path("log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        assert os.write(fd, b"x" * 1000) == 1000
        os.fsync(fd)
        assert os.stat(m.path("log")).st_size == 1000  # cached: 1000
        assert os.write(fd, b"y" * 5000) == 5000
    finally:
        os.close(fd)
    proxy.cut(refuse="close")
    try:
        assert wait_for(lambda: control_status(m)["state"].strip() == "down", 20), \
            control_status(m)
        assert os.stat(m.path("log")).st_size == 6000
    finally:
        proxy.restore()
