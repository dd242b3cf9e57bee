"""Sequential read patterns, as the tools people run produce them.

Shared by the read-ahead tests (test/test_readahead.py: each pattern
returns the right bytes and engages the read-ahead), `make bench`'s reader
rows and test/bench/ra_trace.py (what the kernel sends for each). Each
pattern takes a path on the mount and returns the SHA-256 hex digest of
what it read, in the order `expected()` computes it from the server's copy
(None when the tool reads into /dev/null and reports nothing).
"""

import hashlib
import mmap
import os
import random
import subprocess
import threading

KIB = 1024
MIB = 1 << 20


def make_file(folder, mib, seed=None):
    """A file of `mib` MiB of random bytes written server-side; its path."""
    path = os.path.join(folder, f"r-{os.getpid()}-{random.getrandbits(40):x}")
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(MIB))
    return path


def _read_loop(path, bs, advice=None):
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY)
    try:
        if advice is not None:
            os.posix_fadvise(fd, 0, 0, advice)
        while True:
            b = os.read(fd, bs)
            if not b:
                break
            h.update(b)
    finally:
        os.close(fd)
    return h.hexdigest()


def _tool(argv, **kw):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=600, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{argv}: exit {r.returncode}: {r.stderr.strip()}")
    return r.stdout


def _mmap_read(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        with mmap.mmap(f.fileno(), size, prot=mmap.PROT_READ) as mm:
            for off in range(0, size, 64 * KIB):
                h.update(mm[off:off + 64 * KIB])
    return h.hexdigest()


def _threads(fns):
    errors = []

    def run(fn):
        try:
            fn()
        except BaseException as e:  # re-raised below
            errors.append(e)
    ts = [threading.Thread(target=run, args=(fn,)) for fn in fns]
    for t in ts:
        t.start()
    for t in ts:
        t.join(600)
    if errors:
        raise errors[0]


def _two_readers(path):
    """Two descriptors on one file, each read whole with 128 KiB reads at
    the same time (the second a little behind): both must see every byte."""
    out = [None, None]

    def reader(i):
        out[i] = _read_loop(path, 128 * KIB)
    _threads([lambda: reader(0), lambda: reader(1)])
    if out[0] != out[1]:
        raise RuntimeError("two readers of one file saw different bytes")
    return out[0]


def _halves(path, fd_read):
    """The file's two halves read at the same time by two threads through
    one descriptor (a second stream on the same handle); the digest is of
    the first half then the second."""
    size = os.path.getsize(path)
    half = size // 2
    parts = [hashlib.sha256(), hashlib.sha256()]
    fd = os.open(path, os.O_RDONLY)

    def stream(i, start, end):
        off = start
        while off < end:
            b = fd_read(fd, min(128 * KIB, end - off), off)
            if not b:
                raise RuntimeError(f"short read at {off}")
            parts[i].update(b)
            off += len(b)
    try:
        _threads([lambda: stream(0, 0, half), lambda: stream(1, half, size)])
    finally:
        os.close(fd)
    return parts[0].hexdigest() + parts[1].hexdigest()


def _halves_expected(path):
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        a = f.read(size // 2)
        b = f.read()
    return hashlib.sha256(a).hexdigest() + hashlib.sha256(b).hexdigest()


def skip_plan(size, seed=17):
    """WARC replay: records of 16-64 KiB at increasing offsets, with gaps
    of 0-256 KiB between them. [(off, len)]."""
    rng = random.Random(seed)
    out, off = [], 0
    while True:
        off += rng.randrange(0, 256 * KIB)
        n = rng.randrange(16 * KIB, 64 * KIB)
        if off + n > size:
            return out
        out.append((off, n))
        off += n


def _skip_forward(path, fd_read=os.pread):
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY)
    try:
        for off, n in skip_plan(os.path.getsize(path)):
            b = fd_read(fd, n, off)
            if len(b) != n:
                raise RuntimeError(f"short read at {off}")
            h.update(b)
    finally:
        os.close(fd)
    return h.hexdigest()


def _skip_expected(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for off, n in skip_plan(os.path.getsize(path)):
            f.seek(off)
            h.update(f.read(n))
    return h.hexdigest()


def _quiet(argv):
    """A tool that reads into /dev/null: runs it, returns None."""
    _tool(argv)


def _dd(bs):
    return lambda p: _quiet(["dd", f"if={p}", "of=/dev/null", f"bs={bs}",
                             "status=none"])


# name -> fn(path) -> digest or None. The tools' rows of `make bench` are
# the ones named after a tool.
PATTERNS = {
    "cat": lambda p: _quiet(["sh", "-c", 'cat "$1" > /dev/null', "sh", p]),
    "cp": lambda p: _quiet(["cp", p, "/dev/null"]),
    "sha256sum": lambda p: _tool(["sha256sum", p]).split()[0],
    "dd_4k": _dd("4k"),
    "dd_32k": _dd("32k"),
    "dd_64k": _dd("64k"),
    "dd_128k": _dd("128k"),
    "dd_1M": _dd("1M"),
    "read_4k": lambda p: _read_loop(p, 4 * KIB),
    "read_32k": lambda p: _read_loop(p, 32 * KIB),
    "read_1m": lambda p: _read_loop(p, MIB),
    "seq_4k": lambda p: _read_loop(p, 4 * KIB, os.POSIX_FADV_SEQUENTIAL),
    "seq_128k": lambda p: _read_loop(p, 128 * KIB, os.POSIX_FADV_SEQUENTIAL),
    "seq_1m": lambda p: _read_loop(p, MIB, os.POSIX_FADV_SEQUENTIAL),
    "mmap": _mmap_read,
    "two_readers": _two_readers,
    "skip_forward": _skip_forward,
    "two_streams": lambda p: _halves(p, os.pread),
}


def expected(path, name):
    """The digest `name` should return for the server-side file `path`."""
    if name == "skip_forward":
        return _skip_expected(path)
    if name == "two_streams":
        return _halves_expected(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(MIB), b""):
            h.update(b)
    return h.hexdigest()
