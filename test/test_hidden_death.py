"""A hidden file is never left on the server by a daemon death or an
upgrade (issue 14, docs/retries.md "Unlinked open files").

The RENAME that hides an open file (its unlink, or a rename onto it) or
moves a hidden file out of a folder (an rmdir of that folder) is done by
the server, and its reply held by the shim (sftpshim `hold_reply`): the
daemon is SIGKILLed right then, before it could record the file's new
name. The keeper's next daemon must settle the move from the take-over
state (the move was recorded before it was sent): the descriptor keeps
reading its file, and once it is closed no `.steadyfs_hidden*` name is
left (model checker seed 1000 found one left after a daemon kill). The
same with `steadyfs --upgrade` instead of the kill: the old daemon stops
with the move unanswered.

The REMOVE of a hidden file at its last close, its reply held while the
daemon is upgraded: the old daemon stops without an answer, and the next
one must still remove the file.
"""

import os
import signal
import subprocess
import threading

import pytest

from test_keeper import steadyfs_bin, wait_new_daemon, wait_until
from test_server_input import lying_sshd
from workloads import MOUNT_OPTS

DATA = b"the file's own bytes\n" * 100
SETTLE_BOUND = 15.0   # a new daemon, its session, the settling and the close


def hidden_names(remote):
    return [os.path.join(dp, n) for dp, ds, fs in os.walk(remote)
            for n in ds + fs if n.startswith(".steadyfs_hidden")]


def unlink_open(m):
    """victim is open; the call unlinks it (hiding RENAME victim -> hidden)."""
    return lambda: os.unlink(m.path("victim"))


def rename_onto_open(m):
    """victim is open; the call renames another file onto it (victim is
    moved aside first: RENAME victim -> hidden)."""
    with open(m.path("other"), "wb") as f:
        f.write(b"other")
    return lambda: os.rename(m.path("other"), m.path("victim"))


def rmdir_holding_hidden(m):
    """victim (in folder d) is open and unlinked (hidden in d); the call
    removes d (the hidden file moves to the root: RENAME d/hidden -> /hidden)."""
    os.unlink(m.path("d", "victim"))
    return lambda: os.rmdir(m.path("d"))


def end_daemon(m, how):
    """SIGKILL the daemon, or upgrade it; returns once the next one runs."""
    old = m.daemon_pid()
    if how == "kill":
        os.kill(old, signal.SIGKILL)
    else:
        up = subprocess.run([steadyfs_bin(), "--upgrade", m.mountpoint],
                            capture_output=True, text=True, timeout=30)
        assert up.returncode == 0, up.stderr
    assert wait_new_daemon(m, old), f"no new daemon after the {how}"


@pytest.mark.timeout(90)
@pytest.mark.parametrize("how", ["kill", "upgrade"])
@pytest.mark.parametrize("case", [unlink_open, rename_onto_open, rmdir_holding_hidden])
def test_hidden_move_cut_by_daemon_death(make_sshd, mount_steadyfs, tmp_path, case, how):
    flags = tmp_path / "hold"
    flags.mkdir()
    nested = case is rmdir_holding_hidden
    # The RENAME held: the first whose source path holds these bytes.
    hold = ".steadyfs_hidden" if nested else "victim"
    server = lying_sshd(make_sshd, tmp_path, hold_reply=["rename", hold.encode().hex()],
                        hold_flags=str(flags))
    m = mount_steadyfs(server, opts=MOUNT_OPTS, expect_errors=True)
    path = m.path("d", "victim") if nested else m.path("victim")
    if nested:
        os.mkdir(m.path("d"))
    with open(path, "wb") as f:
        f.write(DATA)
    fd = os.open(path, os.O_RDWR)
    result = {}

    def call(fn):
        try:
            fn()
            result["err"] = 0
        except OSError as e:
            result["err"] = e.errno

    try:
        fn = case(m)
        (flags / "arm").touch()
        t = threading.Thread(target=call, args=(fn,), daemon=True)
        t.start()
        assert wait_until(lambda: (flags / "held").exists(), 20), \
            "the RENAME never reached the server"
        end_daemon(m, how)
        (flags / "release").touch()
        t.join(SETTLE_BOUND)
        assert not t.is_alive(), "the call never returned after the kill"
        # The descriptor still reads its file, under whatever name it has.
        try:
            read = os.pread(fd, len(DATA), 0) == DATA
        except OSError as e:
            read = e
    finally:
        try:
            os.close(fd)
        except OSError:
            pass  # a broken descriptor's close reports it (checked above)
    gone = wait_until(lambda: not hidden_names(server.remote_dir), SETTLE_BOUND)
    assert gone and read is True, \
        f"hidden names left on the server after the close: {hidden_names(server.remote_dir)}; " \
        f"read through the descriptor after the kill: {read} (the call returned {result})"


@pytest.mark.timeout(90)
def test_hidden_remove_cut_by_upgrade(make_sshd, mount_steadyfs, tmp_path):
    flags = tmp_path / "hold"
    flags.mkdir()
    server = lying_sshd(make_sshd, tmp_path,
                        hold_reply=["remove", b".steadyfs_hidden".hex()],
                        hold_flags=str(flags))
    m = mount_steadyfs(server, opts=MOUNT_OPTS, expect_errors=True)
    with open(m.path("victim"), "wb") as f:
        f.write(DATA)
    fd = os.open(m.path("victim"), os.O_RDWR)
    os.unlink(m.path("victim"))
    hidden = hidden_names(server.remote_dir)
    assert len(hidden) == 1
    (flags / "arm").touch()
    os.close(fd)
    try:
        assert wait_until(lambda: (flags / "held").exists(), 20), \
            "the REMOVE never reached the server"
        # The server removed it; put it back, as if the REMOVE had not
        # reached the server yet when the daemon stopped (the daemon
        # cannot tell the two apart: no reply comes).
        with open(hidden[0], "wb") as f:
            f.write(DATA)
        end_daemon(m, "upgrade")
    finally:
        (flags / "release").touch()
    assert wait_until(lambda: not hidden_names(server.remote_dir), SETTLE_BOUND), \
        f"hidden names left on the server after the upgrade: {hidden_names(server.remote_dir)}"
