"""Memory steadyfs holds for nothing, on real mounts (issue 17: peak summed
Pss of keeper + daemon below 64 MiB; the measurement itself is `make
bench`'s, test/pss.py).

No figure of a workload is asserted here (it swings with the machine);
only memory that must not be there at all: the take-over memfd's pages
nobody wrote. The memfd is sized for a million nodes and a thousand
events but sparse, and reading a page of it gives that page memory: the
daemon's start once scanned every event slot (one page each) and so made
the memfd 4 MiB resident in every mount.
"""

import os

import pss

MIB = 1 << 20


def memfd_kib(pid):
    return pss.breakdown(pid).get("take-over memfd", 0)


def test_fresh_mount_leaves_the_take_over_memfd_sparse(sshd, remote_subdir,
                                                       mount_steadyfs):
    m = mount_steadyfs(sshd, remote_subdir=remote_subdir)
    with open(m.path("f"), "w") as f:
        f.write("x")
    os.listdir(m.mountpoint)
    with open(m.path(".control", "events")) as f:
        f.read()
    pids = [m.pid] + m.daemon_pids()
    total = sum(memfd_kib(p) for p in pids)
    # Pss: keeper and daemon share the pages, the sum counts each once.
    assert total < 512, f"take-over memfd resident {total} KiB in {pids}"
