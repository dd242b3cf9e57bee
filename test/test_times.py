"""Times set explicitly stay set (docs/retries.md, "Writes: write-behind
and replay"): a utimens of a folder is not undone by the removal of a
hidden file in it (an unlinked file whose last descriptor was just
closed), which steadyfs sends after the close and which would move the
folder's mtime to now when it lands after the SETSTAT. Before the fix
the folder's time was lost in 40 runs of 40 (`tar -x`, `rsync -t` and
`cp -a` set a folder's times after writing what is in it).
"""

import os
import threading

import pytest

import mounts
from workloads import MOUNT_OPTS

pytestmark = pytest.mark.skipif(not mounts.fuse_available(),
                                reason="/dev/fuse is missing")

PAST = 1000000000


def wait_until(fn, timeout, interval=0.02):
    import time
    deadline = time.monotonic() + timeout
    while not fn():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


def hidden_in(folder):
    return [n for n in os.listdir(folder) if n.startswith(".steadyfs_hidden")]


@pytest.mark.timeout(60)
def test_folder_utime_after_close_of_unlinked_file_stays(make_sshd, mount_steadyfs,
                                                          tmp_path):
    """The hidden file's REMOVE is held by the server (sftpshim
    hold_remove) while the folder's utime is made: the utime waits for
    it, and the folder keeps the time it set."""
    from test_server_input import lying_sshd
    flags = tmp_path / "hold"
    flags.mkdir()
    server = lying_sshd(make_sshd, tmp_path, hold_remove=b".steadyfs_hidden".hex(),
                        hold_flags=str(flags))
    m = mount_steadyfs(server, opts=MOUNT_OPTS)
    folder = os.path.join(server.remote_dir, "d")
    os.mkdir(m.path("d"))
    fd = os.open(m.path("d", "f"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        assert os.write(fd, b"data") == 4
        os.unlink(m.path("d", "f"))
        assert len(hidden_in(folder)) == 1
        (flags / "arm").touch()
    finally:
        os.close(fd)
    assert wait_until(lambda: (flags / "held").exists(), 20), \
        "the hidden file's REMOVE never came"
    done = []
    t = threading.Thread(target=lambda: done.append(
        os.utime(m.path("d"), (PAST, PAST))), daemon=True)
    t.start()
    # Unfixed, the utime is done at once, before the REMOVE; fixed, it
    # waits for the REMOVE the shim holds (bounded: op_timeout).
    t.join(2)
    (flags / "release").touch()
    t.join(30)
    assert done == [None], "the utime did not return"
    assert wait_until(lambda: not hidden_in(folder), 10)
    assert os.stat(folder).st_mtime == PAST
    assert os.stat(m.path("d")).st_mtime == PAST


@pytest.mark.timeout(60)
def test_folder_utime_after_close_of_a_dup_of_unlinked_file(sshd, mount_steadyfs):
    """A close(2) of one of two descriptors of an unlinked file (a dup:
    no release follows) does not hold a utime of its folder back for
    long: it succeeds, and the folder keeps its time while the file is
    still open."""
    m = mount_steadyfs(sshd, opts=MOUNT_OPTS)
    folder = os.path.join(sshd.remote_dir, "d")
    os.mkdir(m.path("d"))
    fd = os.open(m.path("d", "f"), os.O_RDWR | os.O_CREAT, 0o644)
    other = os.dup(fd)
    try:
        os.unlink(m.path("d", "f"))
        os.close(fd)
        os.utime(m.path("d"), (PAST, PAST))
        assert os.stat(folder).st_mtime == PAST
        assert os.pread(other, 10, 0) == b""
    finally:
        os.close(other)
    assert wait_until(lambda: not hidden_in(folder), 10)


@pytest.mark.timeout(60)
def test_folder_utime_right_after_close_of_unlinked_files(sshd, mount_steadyfs):
    """close(2) then utime of the folder, 40 times with nothing held: the
    kernel sends the release after close(2) returned, so the SETATTR may
    reach steadyfs first; it waits for that release too (a moment after
    the flush of the close). 40 of 40 folders lost their time before,
    0 to 14 of 40 with the wait for removals under way only."""
    m = mount_steadyfs(sshd, opts=MOUNT_OPTS)
    for i in range(40):
        d = m.path(f"d{i}")
        os.mkdir(d)
        fd = os.open(os.path.join(d, "f"), os.O_RDWR | os.O_CREAT, 0o644)
        assert os.write(fd, b"x" * 65536) == 65536
        os.unlink(os.path.join(d, "f"))
        os.close(fd)
        os.utime(d, (PAST, PAST))
    remote = [os.path.join(sshd.remote_dir, f"d{i}") for i in range(40)]
    assert wait_until(lambda: not any(hidden_in(r) for r in remote), 10)
    assert [r for r in remote if os.stat(r).st_mtime != PAST] == []
