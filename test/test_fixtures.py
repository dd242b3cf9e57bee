"""Tests of the test foundation itself: the sshd fixture, the sshfs mount
helper and its stale/hung fault helpers, and that cleanup leaves nothing
mounted. If these fail, every other integration test is suspect."""

import errno
import os
import signal
import subprocess
import time

import pytest

import mounts
import sshdfix


def run(cmd, **kw):
    kw.setdefault("timeout", 30)
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def test_sshd_ssh_strict_host_key(sshd, remote_subdir):
    open(os.path.join(sshd.remote_dir, remote_subdir, "hello"), "w").close()
    r = run(sshd.ssh_cmd("ls", os.path.join(sshd.remote_dir, remote_subdir)))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["hello"]


def test_sshd_sftp_lists_remote(sshd, remote_subdir):
    d = os.path.join(sshd.remote_dir, remote_subdir)
    open(os.path.join(d, "a-file"), "w").close()
    r = run(sshd.sftp_cmd(), input=f"ls {d}\n")
    assert r.returncode == 0, r.stderr
    assert "a-file" in r.stdout


def test_sshd_rejects_unknown_host_key(sshd, tmp_path):
    """Strict checking is real: an empty known_hosts file refuses it."""
    kh = tmp_path / "empty_known_hosts"
    kh.write_text("")
    cmd = [a.replace(sshd.known_hosts, str(kh)) for a in sshd.ssh_cmd("true")]
    r = run(cmd)
    assert r.returncode != 0
    assert "Host key verification failed" in r.stderr


def test_sshd_restart_same_port(make_sshd):
    s = make_sshd()
    port, pid = s.port, s.pid
    s.restart()
    assert s.port == port and s.pid != pid
    r = run(s.ssh_cmd("true"))
    assert r.returncode == 0, r.stderr + s.log_tail()


def test_make_sshd_read_only_sftp(make_sshd):
    s = make_sshd(sftp_args=["-R"])
    r = run(s.sftp_cmd(), input=f"mkdir {s.remote_dir}/nope\n")
    assert r.returncode != 0
    assert not os.path.exists(os.path.join(s.remote_dir, "nope"))


@pytest.mark.parametrize("server", [sshdfix.SFTP_SERVER,
                                    sshdfix.EXTERNAL_SFTP_SERVER])
def test_sftp_server_pids_and_freeze(make_sshd, server):
    """A live sftp session shows up under our sshd, and frozen() stops
    it and resumes it."""
    s = make_sshd(sftp_server=server)
    p = subprocess.Popen(s.sftp_cmd(), stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while not s.sftp_server_pids() and time.monotonic() < deadline:
            time.sleep(0.02)
        pids = s.sftp_server_pids()
        assert len(pids) == 1
        want = "sshd" if server == "internal-sftp" else "sftp-server"
        assert sshdfix.proc_comm(pids[0]) == want
        with sshdfix.frozen(pids):
            assert sshdfix.proc_state(pids[0]) == "T"
        assert sshdfix.proc_state(pids[0]) != "T"
        out, err = p.communicate(f"ls {s.remote_dir}\n", timeout=10)
        assert p.returncode == 0, err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_sshfs_mount_write_lands_remote(sshd, remote_subdir, mount_sshfs):
    m = mount_sshfs(sshd, remote_subdir=remote_subdir)
    assert m.is_mounted()
    with open(m.path("f.txt"), "w") as f:
        f.write("through sshfs\n")
    remote = os.path.join(sshd.remote_dir, remote_subdir, "f.txt")
    with open(remote) as f:
        assert f.read() == "through sshfs\n"
    assert os.listdir(m.mountpoint) == ["f.txt"]


def test_sshfs_stale_mount_enotconn(sshd, remote_subdir, mount_sshfs):
    m = mount_sshfs(sshd, remote_subdir=remote_subdir)
    m.kill_daemon()
    assert m.is_mounted()
    # (The root's attributes may still be cached: look up a child.)
    with pytest.raises(OSError) as e:
        os.stat(m.path("anything"))
    assert e.value.errno == errno.ENOTCONN
    r = mounts.call_in_child("listdir", m.mountpoint, timeout=5)
    assert r["status"] == "errno" and r["errno"] == errno.ENOTCONN
    m.cleanup()
    assert not m.is_mounted()


def test_sshfs_hung_mount_blocks(sshd, remote_subdir, mount_sshfs):
    m = mount_sshfs(sshd, remote_subdir=remote_subdir)
    os.mkdir(m.path("d"))
    with m.stopped():
        r = mounts.call_in_child("stat", m.path("d", "x"), timeout=1.5)
        assert r["status"] == "timeout", r
    # Resumed: the mount answers again.
    r = mounts.call_in_child("stat", m.path("d"), timeout=10)
    assert r["status"] == "ok", r


def test_cleanup_unmounts_hung_daemon(sshd, remote_subdir):
    """cleanup() copes with a daemon left stopped by a failed test."""
    m = mounts.mount_sshfs(sshd, remote_subdir=remote_subdir)
    try:
        os.kill(m.pid, signal.SIGSTOP)
    finally:
        m.cleanup()
    assert not m.is_mounted()
    assert not m.alive()


def test_mount_failure_is_fast_and_explained(sshd, tmp_path):
    """A daemon that exits fails the mount at once, with its stderr and a
    command line to reproduce."""
    t0 = time.monotonic()
    with pytest.raises(mounts.MountError) as e:
        mounts.mount_sshfs(sshd, port=sshdfix.free_port(),
                           workdir=str(tmp_path))
    assert time.monotonic() - t0 < 8
    assert "to reproduce" in str(e.value) and "sshfs" in str(e.value)


def test_no_mounts_left(tmp_path_factory):
    """Runs after the others in this file: nothing this run made is still
    mounted (other runs on the machine use other base folders)."""
    assert mounts.fuse_mounts_under(str(tmp_path_factory.getbasetemp())) == []


def test_steadyfs_mount_smoke(sshd, remote_subdir, mount_steadyfs):
    """The steadyfs helper: mount, write, read back on the server."""
    if not os.access(os.path.join(mounts.build_dir(), "steadyfs"), os.X_OK):
        pytest.skip("steadyfs is not built")
    try:
        m = mount_steadyfs(sshd, remote_subdir=remote_subdir)
    except mounts.MountError as e:
        if "not built yet" in str(e):  # the skeleton's placeholder main()
            pytest.skip("steadyfs is a placeholder")
        raise
    with open(m.path("s.txt"), "w") as f:
        f.write("through steadyfs\n")
    with open(os.path.join(sshd.remote_dir, remote_subdir, "s.txt")) as f:
        assert f.read() == "through steadyfs\n"
