"""Write-behind against the calls that must be ordered with it, and the
error paths of writes, fsync, close and open (docs/retries.md, "Writes:
write-behind and replay" and "fsync and close").

Each test checks the server's copy directly (sshd.remote_dir/...), not
only what the mount answers.
"""

import os
import random

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
