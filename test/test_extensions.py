"""steadyfs against servers without the OpenSSH extensions it prefers.

Each test runs a private sshd whose internal-sftp denies one request with
`-P NAME` (names as `sftp-server -Q requests` prints them: posix-rename,
fsync, hardlink, limits, statvfs). OpenSSH 9.2 then also leaves the
extension out of its VERSION packet (test_denial_is_real shows it with
OpenSSH's own client), and steadyfs must take the documented fallback,
keep working, and say so once in its log. (Older servers advertised it
and answered PERMISSION_DENIED: steadyfs answers that with its errno,
EACCES, as any refusal of a call; only OP_UNSUPPORTED means the
extension is missing: test_refused_extension_call_gives_its_errno, and
for fsync@openssh.com test_writes.py.) (internal-sftp's own log does not
reach sshd's -E file.)
"""

import errno
import hashlib
import os
import random
import subprocess

import pytest

MiB = 1 << 20


def denying(make_sshd, *names):
    return make_sshd(sftp_args=["-P", ",".join(names)])


def fallback_lines(m, word):
    """Lines of the daemon's log naming the missing extension `word`."""
    ext = word + "@openssh.com"
    return [line for line in m.stderr_text().splitlines() if ext in line]


def write_file(path, data):
    with open(path, "wb") as f:
        f.write(data)


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def test_denial_is_real(make_sshd):
    """-P takes the short request names: OpenSSH's own client is refused
    a hard link (it uses hardlink@openssh.com) by such a server, as not
    offered (9.2) or as denied (older)."""
    s = denying(make_sshd, "hardlink")
    write_file(os.path.join(s.remote_dir, "a"), b"a")
    r = subprocess.run(s.sftp_cmd(), input=f"ln {s.remote_dir}/a {s.remote_dir}/b\n",
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert ("does not support hardlink@openssh.com" in r.stderr
            or "denied" in r.stderr.lower()), r.stderr
    assert not os.path.exists(os.path.join(s.remote_dir, "b"))


def test_no_posix_rename(make_sshd, mount_steadyfs):
    s = denying(make_sshd, "posix-rename")
    m = mount_steadyfs(s)
    srv = s.remote_dir
    write_file(os.path.join(srv, "target"), b"old")
    for i in range(3):
        write_file(m.path("tmp"), b"new%d" % i)
        # the documented fallback: remove the target, then plain RENAME
        os.rename(m.path("tmp"), m.path("target"))
        assert read_file(os.path.join(srv, "target")) == b"new%d" % i
        assert not os.path.exists(os.path.join(srv, "tmp"))
    os.rename(m.path("target"), m.path("fresh"))     # no target: plain RENAME
    assert read_file(os.path.join(srv, "fresh")) == b"new2"
    os.mkdir(m.path("d"))
    os.rename(m.path("d"), m.path("d2"))
    assert os.path.isdir(os.path.join(srv, "d2"))
    lines = fallback_lines(m, "posix-rename")
    assert len(lines) == 1, m.stderr_text()
    assert "error" not in lines[0].lower()


def test_no_fsync(make_sshd, mount_steadyfs):
    s = denying(make_sshd, "fsync")
    m = mount_steadyfs(s)
    data = random.Random(3).randbytes(MiB + 17)
    fd = os.open(m.path("f"), os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        # fsync waits for every acknowledgement and returns 0
        assert os.fsync(fd) is None
        assert read_file(os.path.join(s.remote_dir, "f")) == data
        os.write(fd, b"again")
        assert os.fsync(fd) is None
        assert read_file(os.path.join(s.remote_dir, "f")) == data + b"again"
    finally:
        os.close(fd)
    assert len(fallback_lines(m, "fsync")) == 1, m.stderr_text()


def test_no_hardlink(make_sshd, mount_steadyfs):
    s = denying(make_sshd, "hardlink")
    m = mount_steadyfs(s)
    write_file(os.path.join(s.remote_dir, "orig"), b"warc")
    for name in ("l1", "l2"):
        with pytest.raises(OSError) as e:
            os.link(m.path("orig"), m.path(name))
        # EXDEV: the archive falls back to copying on exactly this errno
        assert e.value.errno == errno.EXDEV
        assert not os.path.lexists(os.path.join(s.remote_dir, name))
    assert os.stat(os.path.join(s.remote_dir, "orig")).st_nlink == 1
    assert read_file(m.path("orig")) == b"warc"
    assert len(fallback_lines(m, "hardlink")) == 1, m.stderr_text()


@pytest.mark.timeout(120)
def test_no_limits(make_sshd, mount_steadyfs):
    s = denying(make_sshd, "limits")
    m = mount_steadyfs(s)
    data = random.Random(4).randbytes(5 * MiB + 3)
    write_file(m.path("big"), data)
    want = hashlib.sha256(data).hexdigest()
    with open(os.path.join(s.remote_dir, "big"), "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == want
    write_file(os.path.join(s.remote_dir, "served"), data)
    assert hashlib.sha256(read_file(m.path("served"))).hexdigest() == want
    assert len(fallback_lines(m, "limits")) == 1, m.stderr_text()


def test_no_statvfs(make_sshd, mount_steadyfs):
    """Without statvfs@ df still answers (with made-up numbers) and the
    mount keeps working."""
    s = denying(make_sshd, "statvfs")
    m = mount_steadyfs(s)
    st = os.statvfs(m.mountpoint)
    assert st.f_namemax == 255
    write_file(m.path("f"), b"x")
    assert read_file(os.path.join(s.remote_dir, "f")) == b"x"
    assert len(fallback_lines(m, "statvfs")) == 1, m.stderr_text()


def test_all_denied_at_once(make_sshd, mount_steadyfs):
    """A bare SFTP v3 server: every fallback at once, still a working
    filesystem."""
    s = denying(make_sshd, "posix-rename", "fsync", "hardlink", "limits",
                "statvfs")
    m = mount_steadyfs(s)
    srv = s.remote_dir
    data = random.Random(5).randbytes(300_000)
    fd = os.open(m.path("a"), os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    write_file(m.path("b"), b"b")
    os.rename(m.path("a"), m.path("b"))
    assert read_file(os.path.join(srv, "b")) == data
    with pytest.raises(OSError) as e:
        os.link(m.path("b"), m.path("c"))
    assert e.value.errno == errno.EXDEV
    os.statvfs(m.mountpoint)
    assert read_file(m.path("b")) == data
    for word in ("posix-rename", "fsync", "hardlink", "limits", "statvfs"):
        assert len(fallback_lines(m, word)) == 1, (word, m.stderr_text())


def test_no_lsetstat(make_sshd, mount_steadyfs):
    """Without lsetstat@openssh.com a symlink's own times or owner cannot
    be set (SETSTAT would follow the link and change its target): the
    call fails with EOPNOTSUPP and the target is untouched."""
    s = denying(make_sshd, "lsetstat")
    m = mount_steadyfs(s)
    target = os.path.join(s.remote_dir, "target")
    write_file(target, b"t")
    os.utime(target, (1_000_000_000, 1_000_000_000))
    os.symlink("target", m.path("link"))
    with pytest.raises(OSError) as e:
        os.utime(m.path("link"), (1_600_000_000, 1_600_000_000),
                 follow_symlinks=False)
    assert e.value.errno == errno.EOPNOTSUPP
    with pytest.raises(OSError) as e:
        os.chown(m.path("link"), 4321, 4321, follow_symlinks=False)
    assert e.value.errno == errno.EOPNOTSUPP
    assert os.stat(target).st_mtime == 1_000_000_000
    assert os.stat(target).st_uid == 0
    # Through the link, the target: as on Linux.
    os.utime(m.path("link"), (1_700_000_000, 1_700_000_000))
    assert os.stat(target).st_mtime == 1_700_000_000
    assert len(fallback_lines(m, "lsetstat")) == 1, m.stderr_text()


def test_refused_extension_call_gives_its_errno(sshd, remote_subdir, mount_steadyfs):
    """An offered extension the server refuses for this call (a hard link
    into a folder it may not write: PERMISSION_DENIED) fails with that
    errno, not with the errno of a missing extension (EXDEV); the next
    link elsewhere works (the extension is not taken for missing)."""
    from test_server_input import immutable
    m = mount_steadyfs(sshd, remote_subdir=remote_subdir)
    srv = os.path.join(sshd.remote_dir, remote_subdir)
    write_file(os.path.join(srv, "orig"), b"warc")
    os.mkdir(os.path.join(srv, "ro"))
    with immutable(os.path.join(srv, "ro")):
        with pytest.raises(OSError) as e:
            os.link(m.path("orig"), m.path("ro", "l"))
        assert e.value.errno in (errno.EACCES, errno.EPERM)
        with pytest.raises(OSError) as e:
            os.rename(m.path("orig"), m.path("ro", "moved"))
        assert e.value.errno in (errno.EACCES, errno.EPERM)
    assert read_file(os.path.join(srv, "orig")) == b"warc"
    os.link(m.path("orig"), m.path("l2"))
    assert os.stat(os.path.join(srv, "l2")).st_nlink == 2
    assert not fallback_lines(m, "hardlink") and not fallback_lines(m, "posix-rename")

