"""Read-ahead for every sequential pattern the kernel produces (issue 17).

Each reader of test/readers.py (cat, cp, sha256sum, dd at 4 KiB to 1 MiB,
read() loops with and without fadvise(SEQUENTIAL), mmap, two readers of
one file, a reader skipping forward, two streams on one descriptor) reads
an 8 MiB file written server-side: it must get the right bytes, and its
reads must be answered by steadyfs's read-ahead (the readahead_hits and
readahead_misses counters of .control/status). docs/performance.md keeps
what the kernel sends for each pattern. The mount's kernel read-ahead is
raised at INIT (fs/vfs/bdi.h). No timing is asserted here: speed is `make
bench`'s job.
"""

import os
import subprocess
import sys

import pytest

import readers

MIB = 1 << 20
FILE_MIB = 8
# Reads of a sequential pattern that may go to the server on their own:
# the first read of a stream that does not start at 0 (skip_forward),
# one per stream of two_streams, and a little slack for the kernel's
# reordering at the start.
MAX_MISSES = 4
BDI_READ_AHEAD_KB = 1024  # fs/vfs/bdi.h


def counters(m):
    with open(m.path(".control", "status")) as f:
        st = dict(line.rstrip("\n").split(": ", 1) for line in f if ": " in line)
    return int(st["readahead_hits"]), int(st["readahead_misses"])


def run_pattern(name, path):
    """A pattern in a child process (as the tools run), bounded in time."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import readers; "
            "print(readers.PATTERNS[sys.argv[2]](sys.argv[3]))")
    r = subprocess.run([sys.executable, "-c", code, os.path.dirname(__file__),
                        name, path], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{name}: {r.stderr.strip()[-800:]}"
    out = r.stdout.strip()
    return None if out == "None" else out


@pytest.fixture
def ra_mount(sshd, mount_steadyfs, remote_subdir):
    """A fresh mount (and empty remote folder) per test: (mount, the
    folder's server-side path)."""
    return (mount_steadyfs(sshd, remote_subdir=remote_subdir),
            os.path.join(sshd.remote_dir, remote_subdir))


@pytest.mark.parametrize("name", list(readers.PATTERNS))
def test_pattern_reads_right_bytes_through_readahead(ra_mount, name):
    m, server = ra_mount
    path = readers.make_file(server, FILE_MIB)
    try:
        hits0, misses0 = counters(m)
        got = run_pattern(name, m.path(os.path.basename(path)))
        hits, misses = counters(m)
        if got is not None:
            assert got == readers.expected(path, name), f"{name}: wrong bytes"
        hits, misses = hits - hits0, misses - misses0
        # Every pattern here is sequential: read-ahead answers its reads.
        assert hits > 0, f"{name}: read-ahead never engaged ({misses} misses)"
        assert misses <= MAX_MISSES, f"{name}: {misses} reads missed, {hits} hit"
    finally:
        os.unlink(path)


def test_cat_engages_readahead(ra_mount):
    """The brief's check: a cat of an 8 MiB file is served by read-ahead
    (its 256 KiB READs after fadvise(SEQUENTIAL), or 1 MiB ones with the
    raised kernel read-ahead, each span several chunks)."""
    m, server = ra_mount
    path = readers.make_file(server, FILE_MIB)
    try:
        hits0, misses0 = counters(m)
        run_pattern("cat", m.path(os.path.basename(path)))
        hits, misses = counters(m)
        assert hits - hits0 > 0
        assert misses - misses0 == 0
    finally:
        os.unlink(path)


def test_random_reads_stay_direct(ra_mount):
    """Reads scattered over a file are not prefetched (they would waste
    the link): every one is a miss."""
    m, server = ra_mount
    path = readers.make_file(server, 32)
    try:
        hits0, misses0 = counters(m)
        fd = os.open(m.path(os.path.basename(path)), os.O_RDONLY)
        try:
            with open(path, "rb") as f:
                for mib in (20, 3, 29, 11, 25, 7, 16, 1):
                    off = mib * MIB + 8192
                    got = os.pread(fd, 4096, off)
                    f.seek(off)
                    assert got == f.read(4096)
        finally:
            os.close(fd)
        hits, misses = counters(m)
        assert hits - hits0 == 0
        assert misses - misses0 >= 8
    finally:
        os.unlink(path)


def test_kernel_readahead_raised(ra_mount):
    """INIT can only lower the kernel's read-ahead: steadyfs raises the
    mount's read_ahead_kb (as root) before answering INIT with the same."""
    m, _ = ra_mount
    st = os.stat(m.mountpoint)
    bdi = f"/sys/class/bdi/{os.major(st.st_dev)}:{os.minor(st.st_dev)}/read_ahead_kb"
    if os.geteuid() != 0:
        pytest.skip("raising read_ahead_kb needs root")
    with open(bdi) as f:
        assert int(f.read()) == BDI_READ_AHEAD_KB
