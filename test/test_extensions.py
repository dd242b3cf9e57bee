"""steadyfs against servers without the OpenSSH extensions it prefers.

Each test runs a private sshd whose internal-sftp denies one request with
`-P NAME` (names as `sftp-server -Q requests` prints them: posix-rename,
fsync, hardlink, limits, statvfs). OpenSSH 9.2 then also leaves the
extension out of its VERSION packet (test_denial_is_real shows it with
OpenSSH's own client); older servers advertised it and answered
PERMISSION_DENIED, which steadyfs handles the same way, except for
fsync@openssh.com: advertised and refused, fsync fails with the refusal's
errno (test_writes.py). Either way steadyfs
must take the documented fallback, keep working, and say so once in its
log. (internal-sftp's own log does not reach sshd's -E file.)
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
