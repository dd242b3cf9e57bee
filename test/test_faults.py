"""The fault-injection matrix of issue 3 (items 8 and 9), network half:
faults made by the loopback proxy (faultproxy.py) between steadyfs and a
real sshd - cut (RST, then connections refused), blackhole, delay 200 ms,
throttle 200 KB/s - crossed with the workloads of workloads.py (idle,
crawler, reader, metadata churn). The server half (sshd restart, frozen
sftp-server, disk full, permission denied) is test_server_faults.py.

Every cell mounts steadyfs at test scale (workloads.MOUNT_OPTS: op_timeout
4 s, connect_timeout 2 s, backoff 0.2-1 s, liveness 1 s x 2, two
sessions), runs the workload in a child process for a second, applies the
fault for 4 s, clears it, and asserts: no ENOTCONN ever; no call longer
than op_timeout + 2 s; the descriptors opened before the fault work again
within backoff_max + connect_timeout + 2 s of it clearing, and no call
made after that fails; no error at all under a 200 ms delay; every file
whose fsync/close returned 0 is on the server with the right sha256; each
EIO has a daemon log line naming operation, path and errno; no data-loss
line without an EIO to the writer. Then: a 1 s cut (under op_timeout/4)
is invisible to the crawler; stat and `ls -la` answer during a blackhole;
O_NONBLOCK reads and writes fail with EAGAIN at once while no session is
up.

The table (fault x workload: longest call, recovery, bytes verified,
errors) is kept in build/fault-matrix.json, shared with
test_server_faults.py, printed at the end of each module and written as
Markdown to build/fault-matrix.md.
"""

import errno
import json
import fcntl
import os
import re
import subprocess
import time

import pytest

import mounts
import workloads
from workloads import MOUNT_OPTS, OP_TIMEOUT, LONGEST_BOUND, RECOVERY_BOUND

FAULTS = ["cut", "blackhole", "delay", "throttle"]
THROTTLE = 200_000   # bytes/s each way
DELAY_MS = 200
KINDS = list(workloads.WORKLOADS)

pytestmark = pytest.mark.skipif(not mounts.fuse_available(),
                                reason="/dev/fuse is missing")
table = pytest.fixture(scope="module", autouse=True)(workloads.table_fixture)


def proxy_fault(proxy, fault):
    """(apply, clear) for one of FAULTS."""
    apply = {"cut": proxy.cut, "blackhole": proxy.blackhole,
             "delay": lambda: proxy.delay(DELAY_MS),
             "throttle": lambda: proxy.throttle(THROTTLE)}[fault]
    return apply, proxy.restore


@pytest.fixture
def proxied(sshd, remote_subdir, fault_proxy, mount_steadyfs):
    """A steadyfs mount through a fault proxy: (mount, proxy, remote dir)."""
    proxy = fault_proxy(sshd)
    m = mount_steadyfs(sshd, remote_subdir=remote_subdir, opts=MOUNT_OPTS,
                       port=proxy.port, expect_errors=True)
    return m, proxy, os.path.join(sshd.remote_dir, remote_subdir)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fault", FAULTS)
def test_matrix(fault, kind, proxied, tmp_path):
    m, proxy, remote = proxied
    apply, clear = proxy_fault(proxy, fault)
    # A slow link is no outage: nothing may fail under a 200 ms delay.
    workloads.report(workloads.run_cell(fault, kind, m, remote, apply, clear, str(tmp_path)),
                     allow_errors=fault != "delay")


@pytest.mark.timeout(120)
def test_short_cut_invisible_to_crawler(proxied, tmp_path):
    """An outage under op_timeout / 4 causes no error at all."""
    m, proxy, remote = proxied
    r = workloads.run_cell("cut 1 s", "crawler", m, remote, proxy.cut,
                           proxy.restore, str(tmp_path),
                           fault_seconds=OP_TIMEOUT / 4)
    workloads.report(r, allow_errors=False)


def wait_log(m, pattern, timeout, since=0):
    """Poll the daemon's stderr (from offset `since`) for a regex, with a
    deadline."""
    deadline = time.monotonic() + timeout
    rx = re.compile(pattern)
    while time.monotonic() < deadline:
        if rx.search(m.stderr_text()[since:]):
            return True
        time.sleep(0.05)
    return False


def ls_la(path, timeout):
    t0 = time.monotonic()
    try:
        p = subprocess.run(["ls", "-la", path], capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return None, "", time.monotonic() - t0
    return p.returncode, p.stdout + p.stderr, time.monotonic() - t0


@pytest.mark.timeout(120)
def test_stat_answers_during_blackhole(proxied):
    """stat of the root and of a recently seen file, and `ls -la` of the
    root, answer during a blackhole: early (the sessions still look up)
    and after they were declared dead. No '?' in the listing."""
    m, proxy, remote = proxied
    for name in ("seen.txt", "other.txt"):
        with open(m.path(name), "w") as f:
            f.write(name)
    os.mkdir(m.path("subdir"))
    rc, out, _ = ls_la(m.mountpoint, 10)
    assert rc == 0 and "?" not in out, out
    # Seen only through mkdir and create (not listed or stat'ed since).
    os.mkdir(m.path("fresh-dir"))
    with open(m.path("fresh-dir", "fresh.txt"), "w") as f:
        f.write("fresh")
    # Written through a descriptor with fsync, as a crawler does: the
    # cached size must be the written one, not the size at create.
    fd = os.open(m.path("grown.dat"), os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"g" * 100000)
    os.fsync(fd)
    os.close(fd)
    want = {m.mountpoint: None, m.path("subdir"): None,
            m.path("fresh-dir"): None, m.path("fresh-dir", "fresh.txt"): 5,
            m.path("seen.txt"): 8, m.path("grown.dat"): 100000}
    problems = []
    since = len(m.stderr_text())
    proxy.blackhole()
    try:
        for when in ("early", "after dead"):
            if when == "after dead" and not wait_log(
                    m, r"declaring it dead", OP_TIMEOUT, since):
                problems.append("no session declared dead within op_timeout")
            problems += stat_problems(want, when)
            rc, out, secs = ls_la(m.mountpoint, LONGEST_BOUND + 2)
            if rc is None or secs > LONGEST_BOUND:
                problems.append(f"{when}: ls -la took {secs:.2f} s")
            if "?" in out or "Transport endpoint" in out:
                problems.append(f"{when}: ls -la printed:\n{out}")
    finally:
        proxy.restore()
    assert not problems, "during a blackhole:\n  " + "\n  ".join(problems)


def stat_problems(want, when):
    """stat each path (a child process, then here for the size): it must
    answer, in time, with the size it had."""
    out = []
    for path, size in want.items():
        name = os.path.basename(path) or "/"
        r = mounts.call_in_child("stat", path, timeout=LONGEST_BOUND + 2)
        if r["status"] != "ok" or r["elapsed"] > LONGEST_BOUND:
            out.append(f"{when}: stat '{name}': {r}")
            continue
        if size is not None:
            got = os.stat(path).st_size
            if got != size:
                out.append(f"{when}: stat '{name}': size {got}, want {size}")
    return out


@pytest.mark.timeout(120)
def test_nonblocking_eagain_while_down(proxied):
    """With every session down (cut, connections refused), an O_NONBLOCK
    read or write fails with EAGAIN at once; blocking I/O on the same
    descriptors works again after the link returns."""
    m, proxy, remote = proxied
    with open(os.path.join(remote, "nb.dat"), "wb") as f:
        f.write(workloads.pattern(3, 1 << 20))
    rfd = os.open(m.path("nb.dat"), os.O_RDONLY)
    wfd = os.open(m.path("nb-w.dat"), os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        assert len(os.pread(rfd, 4096, 0)) == 4096
        since = len(m.stderr_text())
        proxy.cut()
        try:
            assert wait_log(m, r"state: \w+ -> down", OP_TIMEOUT, since), \
                m.stderr_text()[-2000:]
            for fd in (rfd, wfd):
                fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
            os.posix_fadvise(rfd, 0, 0, os.POSIX_FADV_DONTNEED)
            for what, fn in (("read", lambda: os.pread(rfd, 4096, 512 * 1024)),
                             ("write", lambda: os.pwrite(wfd, b"x" * 4096, 0))):
                t0 = time.monotonic()
                with pytest.raises(OSError) as e:
                    fn()
                secs = time.monotonic() - t0
                assert e.value.errno == errno.EAGAIN, (what, e.value)
                assert secs < 0.5, (what, secs)
        finally:
            proxy.restore()
        for fd in (rfd, wfd):
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        t0 = time.monotonic()
        assert os.pread(rfd, 4096, 768 * 1024) == workloads.pattern(3, 1 << 20)[768 * 1024:772 * 1024]
        os.pwrite(wfd, b"y" * 4096, 0)
        os.fsync(wfd)
        assert time.monotonic() - t0 <= RECOVERY_BOUND
    finally:
        os.close(rfd)
        os.close(wfd)
    with open(os.path.join(remote, "nb-w.dat"), "rb") as f:
        assert f.read() == b"y" * 4096


LISTER = ("import json, os, sys\n"
          "print(json.dumps(os.listdir(sys.argv[1])))\n")


@pytest.mark.timeout(120)
def test_listing_survives_cut_midway(proxied):
    """A listing whose pipelined READDIRs are in flight when the
    transport is cut starts over on a new session and returns every
    name exactly once (no batch lost, none doubled)."""
    m, proxy, remote = proxied
    big = os.path.join(remote, "big")
    os.mkdir(big)
    # Long names make the listing a few MB, so it is still running when
    # the cut comes at the throttled rate below.
    want = {f"{i:05d}-" + "n" * 200 for i in range(6000)}
    for name in want:
        os.close(os.open(os.path.join(big, name), os.O_CREAT | os.O_WRONLY, 0o644))
    proxy.throttle(1_000_000)
    down0 = proxy.stats()["bytes_down"]
    lister = subprocess.Popen(["/usr/bin/python3", "-c", LISTER, m.path("big")],
                              stdout=subprocess.PIPE, text=True,
                              stdin=subprocess.DEVNULL)
    try:
        # Cut once a quarter of the listing came through (about 1 MB).
        deadline = time.monotonic() + 20
        while proxy.stats()["bytes_down"] - down0 < 1_000_000:
            assert lister.poll() is None, "listing ended before the cut"
            assert time.monotonic() < deadline, "listing did not start"
            time.sleep(0.02)
        since = len(m.stderr_text())
        proxy.cut()
        try:
            assert wait_log(m, r"state: \w+ -> down", OP_TIMEOUT, since), \
                m.stderr_text()[-2000:]
        finally:
            proxy.restore()
        out, _ = lister.communicate(timeout=LONGEST_BOUND + RECOVERY_BOUND)
    finally:
        if lister.poll() is None:
            lister.kill()
            lister.wait()
    assert lister.returncode == 0
    got = json.loads(out)
    assert len(got) == len(want) and set(got) == want


# ---- M9: a call that died with its session is sent again --------------------

def lost_names(tmp_path, *names):
    """The shim options that lose the first request naming each of `names`
    (test/sftpshim.py "lose_before"), and the folder that records it."""
    flags = tmp_path / "lost"
    flags.mkdir()
    return flags, {"lose_before": [n.encode().hex() for n in names],
                   "lose_flags": str(flags)}


@pytest.mark.timeout(90)
def test_lost_request_not_done_is_sent_again(make_sshd, mount_steadyfs, tmp_path):
    """M9: mkdir, rmdir, unlink, rename, link, symlink and an exclusive
    create whose request dies with its session before the server saw it
    (the settling LSTAT finds it not done) are sent again on the new
    session and succeed: a short cut is invisible, no EIO."""
    from test_server_input import lying_sshd
    names = ["lost-mk", "lost-rd", "lost-ul", "lost-rn", "lost-ln", "lost-sl",
             "lost-cx"]
    flags, cfg = lost_names(tmp_path, *names)
    s = lying_sshd(make_sshd, tmp_path, **cfg)
    srv = s.remote_dir
    os.mkdir(os.path.join(srv, "lost-rd"))
    for n in ("lost-ul", "lost-rn", "f"):
        with open(os.path.join(srv, n), "wb") as f:
            f.write(n.encode())
    m = mount_steadyfs(s, expect_errors=True,
                       opts={"connections": 2, "op_timeout": 10})
    os.mkdir(m.path("lost-mk"), 0o750)
    os.rmdir(m.path("lost-rd"))
    os.unlink(m.path("lost-ul"))
    os.rename(m.path("lost-rn"), m.path("renamed"))
    os.link(m.path("f"), m.path("lost-ln"))
    os.symlink("f", m.path("lost-sl"))
    fd = os.open(m.path("lost-cx"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        os.write(fd, b"new")
    finally:
        os.close(fd)
    # Each request really died once (the shim recorded it).
    assert sorted(os.listdir(flags)) == sorted(n.encode().hex() for n in names)
    got = sorted(os.listdir(srv))
    assert got == sorted(["f", "lost-mk", "renamed", "lost-ln", "lost-sl",
                          "lost-cx"]), got
    assert os.path.isdir(os.path.join(srv, "lost-mk"))
    assert os.stat(os.path.join(srv, "lost-ln")).st_ino == \
        os.stat(os.path.join(srv, "f")).st_ino
    assert os.readlink(os.path.join(srv, "lost-sl")) == "f"
    with open(os.path.join(srv, "renamed"), "rb") as f:
        assert f.read() == b"lost-rn"
    with open(os.path.join(srv, "lost-cx"), "rb") as f:
        assert f.read() == b"new"
    assert len(re.findall(r"not done on the server: sending it again",
                          m.stderr_text())) == len(names)


@pytest.mark.timeout(90)
def test_lost_rename_without_posix_rename_is_sent_again(make_sshd, mount_steadyfs,
                                                        tmp_path):
    """M9 without posix-rename@: a plain RENAME, and the fallback's step
    that moves the target aside, whose requests die with their session
    are sent again: both renames succeed, nothing is left aside."""
    from test_server_input import lying_sshd
    flags, cfg = lost_names(tmp_path, "lost-pr", ".steadyfs-replaced-")
    s = lying_sshd(make_sshd, tmp_path, server_args=["-P", "posix-rename"], **cfg)
    srv = s.remote_dir
    for n, data in (("lost-pr", b"a"), ("src", b"new"), ("target", b"old")):
        with open(os.path.join(srv, n), "wb") as f:
            f.write(data)
    m = mount_steadyfs(s, expect_errors=True,
                       opts={"connections": 2, "op_timeout": 10})
    os.rename(m.path("lost-pr"), m.path("moved"))
    os.rename(m.path("src"), m.path("target"))
    assert len(os.listdir(flags)) == 2
    assert sorted(os.listdir(srv)) == ["moved", "target"]
    with open(os.path.join(srv, "target"), "rb") as f:
        assert f.read() == b"new"
