"""The fault-injection matrix of issue 3, server half (item 7): faults made
on the server itself rather than on the link, each with a private sshd
(make_sshd) so that killing or freezing it touches nothing else.

  sshd-restart   the listener and every session process SIGKILLed, down
                 for 4 s, started again on the same port and host key
  server-frozen  the session processes serving our mount (found by
                 walking pids under our sshd's pid, never by name)
                 SIGSTOPped for 4 s, then resumed

each crossed with the workloads of workloads.py and checked like the
network cells of test_faults.py (rows go to the same table). Then the
server refusing, which must never look like a transport problem:

  disk full      a 4 MiB tmpfs as the remote folder: the writer gets
                 ENOSPC (SFTP v3 only says "failure"; the daemon asks
                 statvfs@), never EIO, and no reconnect follows
  read-only      `internal-sftp -R`: writes, creates, mkdir, rename and
                 unlink get EACCES at once, reads still work, and no
                 reconnect follows

and a replay check: a write queued in a server that froze, replayed on a
new session and then overwritten (fsync 0), must not land again when the
frozen server resumes (xfail: a known limitation, see its reason).
"""

import errno
import os
import re
import subprocess
import time

import pytest

import mounts
import sshdfix
import workloads
from workloads import FAULT_SECONDS, LONGEST_BOUND, MOUNT_OPTS

KINDS = list(workloads.WORKLOADS)
CONNECTIONS = MOUNT_OPTS["connections"]

pytestmark = pytest.mark.skipif(not mounts.fuse_available(),
                                reason="/dev/fuse is missing")
table = pytest.fixture(scope="module", autouse=True)(workloads.table_fixture)


def wait_sessions(server, n, timeout=10):
    """Poll until `n` sftp session processes run under our sshd."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = server.sftp_server_pids()
        if len(pids) >= n:
            return pids
        time.sleep(0.05)
    return server.sftp_server_pids()


class Freezer:
    """apply/clear for the frozen-server fault."""

    def __init__(self, server):
        self.server, self.cm = server, None

    def apply(self):
        pids = wait_sessions(self.server, CONNECTIONS)
        assert pids, "no sftp session process under our sshd"
        self.cm = sshdfix.frozen(pids)
        self.cm.__enter__()

    def clear(self):
        if self.cm is not None:
            self.cm.__exit__(None, None, None)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fault", ["sshd-restart", "server-frozen"])
def test_matrix(fault, kind, make_sshd, mount_steadyfs, tmp_path):
    server = make_sshd()
    m = mount_steadyfs(server, opts=MOUNT_OPTS, expect_errors=True)
    if fault == "sshd-restart":
        apply, clear = server.stop, server.start
    else:
        freezer = Freezer(server)
        apply, clear = freezer.apply, freezer.clear
    workloads.report(workloads.run_cell(fault, kind, m, server.remote_dir,
                                        apply, clear, str(tmp_path)))


# ---- the server refuses ----------------------------------------------------

RECONNECT_LINE = re.compile(r"connection (lost|closed)|declaring it dead|"
                            r"state: connected -> |reopened '")


def reconnect_signs(m, server):
    """Signs of a reconnect: daemon log lines, and logins on the server
    beyond the pool's first ones."""
    lines = [line for line in m.stderr_text().splitlines()
             if RECONNECT_LINE.search(line)]
    with open(server.log, errors="replace") as f:
        logins = f.read().count("Accepted publickey")
    if logins > CONNECTIONS:
        lines.append(f"sshd log: {logins} logins for a pool of {CONNECTIONS}")
    return lines


class Timed:
    """Times calls and keeps their errors (in this process: the server
    refusing must never make a call block)."""

    def __init__(self):
        self.errors, self.longest, self.calls = [], (0.0, ""), 0

    def __call__(self, what, fn, *args):
        self.calls += 1
        t0 = time.monotonic()
        try:
            return fn(*args)
        except OSError as e:
            self.errors.append((what, e.errno))
            raise
        finally:
            secs = time.monotonic() - t0
            if secs > self.longest[0]:
                self.longest = (secs, what)


@pytest.fixture
def small_tmpfs(tmp_path):
    path = tmp_path / "full"
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(path)],
                   check=True, timeout=10)
    yield str(path)
    subprocess.run(["umount", "-l", str(path)], timeout=10)


@pytest.mark.timeout(120)
def test_disk_full_enospc_no_reconnect(make_sshd, mount_steadyfs, small_tmpfs):
    server = make_sshd(remote_dir=small_tmpfs)
    m = mount_steadyfs(server, opts=MOUNT_OPTS, expect_errors=True)
    wait_sessions(server, CONNECTIONS)
    t = Timed()
    chunk = workloads.pattern(4, 256 * 1024)
    written, first = 0, None
    fd = t("open", os.open, m.path("big.warc"), os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        # Twice the disk: the refusal must come from write, fsync or close.
        while written < 8 << 20:
            written += t("write", os.write, fd, chunk)
            if written % (1 << 20) == 0:
                t("fsync", os.fsync, fd)
    except OSError as e:
        first = e
    finally:
        try:
            t("close", os.close, fd)
        except OSError as e:
            first = first or e
    assert first is not None, "8 MiB went onto a 4 MiB disk without an error"
    assert first.errno == errno.ENOSPC, f"first error: {first!r}; all: {t.errors}"
    assert all(e == errno.ENOSPC for _, e in t.errors), t.errors
    assert t.longest[0] <= LONGEST_BOUND, t.longest
    # The daemon stays connected: the refusal is the server's, not the
    # link's. Give a reconnect loop time to show.
    time.sleep(1.5)
    assert not reconnect_signs(m, server), "\n".join(reconnect_signs(m, server))
    workloads.Table(workloads.TABLE_PATH).add("disk full", "writer", {
        "longest": t.longest[0], "longest_op": t.longest[1], "recovery": None,
        "bytes": 0, "calls": t.calls,
        "errors": ", ".join(f"{errno.errorcode[e]} from {w}" for w, e in t.errors)})
    # Room again: the same mount writes.
    os.unlink(m.path("big.warc"))
    with open(m.path("small"), "wb") as f:
        f.write(b"fits\n")
    with open(os.path.join(small_tmpfs, "small"), "rb") as f:
        assert f.read() == b"fits\n"


@pytest.mark.timeout(120)
def test_read_only_server_eacces_no_reconnect(make_sshd, mount_steadyfs):
    server = make_sshd(sftp_args=["-R"])
    os.mkdir(os.path.join(server.remote_dir, "dir"))
    with open(os.path.join(server.remote_dir, "existing"), "wb") as f:
        f.write(b"read me\n")
    m = mount_steadyfs(server, opts=MOUNT_OPTS, expect_errors=True)
    wait_sessions(server, CONNECTIONS)
    t = Timed()
    attempts = [
        ("create", lambda: os.open(m.path("new"), os.O_WRONLY | os.O_CREAT, 0o644)),
        ("open for writing", lambda: os.open(m.path("existing"), os.O_WRONLY)),
        ("mkdir", lambda: os.mkdir(m.path("newdir"))),
        ("rename", lambda: os.rename(m.path("existing"), m.path("moved"))),
        ("unlink", lambda: os.unlink(m.path("existing"))),
        ("rmdir", lambda: os.rmdir(m.path("dir"))),
        ("chmod", lambda: os.chmod(m.path("existing"), 0o600)),
    ]
    got = {}
    for what, fn in attempts:
        try:
            fd = t(what, fn)
        except OSError as e:
            got[what] = errno.errorcode.get(e.errno, e.errno)
        else:
            got[what] = "succeeded"
            if isinstance(fd, int):
                os.close(fd)
    assert got == {what: "EACCES" for what, _ in attempts}, got
    assert t.longest[0] < 1.0, f"a refusal took {t.longest[0]:.2f} s ({t.longest[1]})"
    with open(m.path("existing"), "rb") as f:
        assert f.read() == b"read me\n"
    time.sleep(1.5)
    assert not reconnect_signs(m, server), "\n".join(reconnect_signs(m, server))
    workloads.Table(workloads.TABLE_PATH).add("read-only server", "writer", {
        "longest": t.longest[0], "longest_op": t.longest[1], "recovery": None,
        "bytes": 8, "calls": t.calls,
        "errors": ", ".join(f"{v} from {k}" for k, v in got.items())})


@pytest.mark.xfail(strict=True, reason=(
    "known limitation, reported to the lead: a WRITE already in a frozen "
    "server's socket buffer runs when it resumes (Linux keeps received data "
    "readable even after an RST), over newer data fsynced through a new "
    "session; SFTP has no fencing. Remove this mark when the daemon repairs "
    "or prevents it."))
@pytest.mark.timeout(120)
def test_replayed_write_lands_once_after_freeze(make_sshd, mount_steadyfs):
    """A write sent to a session that then froze is replayed on a new
    session; once fsync has returned 0 for newer data at the same offset,
    the frozen server resuming must not land the old write on top of it
    (the replay must land exactly once)."""
    server = make_sshd()
    m = mount_steadyfs(server, opts=MOUNT_OPTS, expect_errors=True)
    remote = os.path.join(server.remote_dir, "state.json")
    a, b, c = (bytes([x]) * 4096 for x in b"ABC")
    fd = os.open(m.path("state.json"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, a, 0)
        os.fsync(fd)
        pids = wait_sessions(server, CONNECTIONS)
        with sshdfix.frozen(pids):
            os.pwrite(fd, b, 0)       # goes to a frozen session
            fsync_until_ok(fd)        # replayed on a new one
            os.pwrite(fd, c, 0)
            fsync_until_ok(fd)
            with open(remote, "rb") as f:
                assert f.read() == c, "fsync returned 0 but C is not on the server"
        # Resumed: the old sessions run what they had queued, then end.
        deadline = time.monotonic() + 5
        while any(sshdfix.proc_state(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        with open(remote, "rb") as f:
            got = f.read()
        assert got == c, (f"after the frozen server resumed the file holds "
                          f"{got[:1]!r} x {len(got)}, want C: the write replayed "
                          f"on a new session also landed late through the old one\n"
                          + workloads.stderr_around(m.stderr_text(), ["state.json", "dead"]))
    finally:
        os.close(fd)


def fsync_until_ok(fd, tries=3):
    """fsync; after an fsync deadline the data stays queued, so retry."""
    for i in range(tries):
        try:
            os.fsync(fd)
            return
        except OSError as e:
            if e.errno != errno.EIO or i == tries - 1:
                raise
