"""Write-behind against the calls that must be ordered with it, and the
error paths of writes, fsync, close and open (docs/retries.md, "Writes:
write-behind and replay" and "fsync and close").

Each test checks the server's copy directly (sshd.remote_dir/...), not
only what the mount answers.
"""

import errno
import os
import random
import time

import pytest

from test_ops import MiB, fs, read_file  # noqa: F401 - fs is a fixture


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
            n, err = write_or_errno(fd, d)
            assert err == 0 and 0 < n < len(d), (n, err)
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
