"""The kernel's FUSE request timeout sysctls (Linux 6.15+), set briefly.

While fs.fuse.max_request_timeout (or default_request_timeout) is set,
the kernel aborts ANY FUSE connection made meanwhile whose request waits
longer, on the whole machine, other tests' mounts included. So a test
only ever sets a large value (at least MIN_SECONDS) and restores the old
one as soon as it has what it needs; it skips where the sysctl does not
exist.
"""

import contextlib
import os

import pytest

DIR = "/proc/sys/fs/fuse"
MIN_SECONDS = 600


def path(name):
    return os.path.join(DIR, name)


@contextlib.contextmanager
def request_timeout(name, seconds):
    """Sets fs.fuse.`name` to `seconds` for the block, then restores it."""
    assert seconds >= MIN_SECONDS, "a short timeout would abort other tests' mounts"
    p = path(name)
    if not os.path.exists(p):
        pytest.skip(f"{p} is missing (the kernel has it from Linux 6.15)")
    with open(p) as f:
        old = f.read().strip()
    with open(p, "w") as f:
        f.write(str(seconds))
    try:
        yield
    finally:
        with open(p, "w") as f:
            f.write(old)
