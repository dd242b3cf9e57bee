"""Shared pytest fixtures for the steadyfs integration tests.

Everything is real: an OpenSSH sshd on 127.0.0.1 (sshdfix.py), FUSE
mounts of steadyfs and sshfs (mounts.py) and a fault-injection TCP proxy
(faultproxy.py). Fixtures:

  sshd              session-wide sshd (sshdfix.Sshd), started once
  make_sshd         factory for a private sshd, e.g. make_sshd(sftp_args=["-R"]),
                    make_sshd(sftp_server=sshdfix.EXTERNAL_SFTP_SERVER)
  remote_subdir     a fresh folder name under sshd.remote_dir for this test
  mount_steadyfs    factory: mount_steadyfs(sshd, remote_subdir=..., opts=...)
  mount_sshfs       factory: the same with sshfs
  proxy_to          factory: proxy_to(port) -> a started FaultProxy to any
                    loopback port (no known_hosts line)
  fault_proxy       factory: fault_proxy(sshd) -> a started FaultProxy whose
                    port is trusted in sshd.known_hosts

Every mount a factory made is unmounted and its daemon reaped after the
test, and the test fails if the daemon's stderr has unexpected error lines.
A failing test's report carries the commands that reproduce its mounts and
the daemons' stderr. Tests needing FUSE skip cleanly without /dev/fuse.
Each test is bounded in time: 300 s by default, `@pytest.mark.timeout(S)`
to change it.
"""

import os
import re
import shutil
import signal
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import faultproxy  # noqa: E402
import mounts  # noqa: E402
import sshdfix  # noqa: E402

DEFAULT_TIMEOUT = 300
_DIAG = pytest.StashKey[list]()


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "timeout(seconds): fail the test when its call phase "
        "runs longer (default %d s)" % DEFAULT_TIMEOUT)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """Bound the test body with SIGALRM. A call blocked in the kernel is
    only interrupted if the kernel lets it: run risky calls in a child
    (mounts.call_in_child)."""
    marker = item.get_closest_marker("timeout")
    seconds = marker.args[0] if marker else DEFAULT_TIMEOUT

    def expired(signum, frame):
        pytest.fail(f"test exceeded its time bound of {seconds} s",
                    pytrace=True)

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, attach how to reproduce each mount and its stderr."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for m in item.stash.get(_DIAG, []):
            report.sections.append((f"{m.kind} at {m.mountpoint}", m.repro()))
            report.sections.append((f"{m.kind} stderr", m.stderr_text()[-8000:]))


def _need_fuse():
    if not mounts.fuse_available():
        pytest.skip("/dev/fuse is missing")


# ---- sshd -------------------------------------------------------------------

@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    server = sshdfix.Sshd(tmp_path_factory.mktemp("sshd")).start()
    yield server
    server.stop()


@pytest.fixture
def make_sshd(tmp_path_factory):
    made = []

    def make(**kw):
        """Keywords of sshdfix.Sshd: sftp_args, sftp_server, extra_opts,
        remote_dir."""
        s = sshdfix.Sshd(tmp_path_factory.mktemp("sshd-extra"), **kw)
        made.append(s)
        return s.start()

    yield make
    for s in made:
        s.stop()


@pytest.fixture
def remote_subdir(sshd, request):
    """A new, empty folder under the session sshd's remote_dir (its name,
    relative to remote_dir), so tests sharing the sshd do not collide."""
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)[:60]
    name, n = base, 1
    while os.path.exists(os.path.join(sshd.remote_dir, name)):
        n += 1
        name = f"{base}.{n}"
    os.makedirs(os.path.join(sshd.remote_dir, name))
    return name


# ---- mounts -----------------------------------------------------------------

def _mount_factory(request, tmp_path, mount_fn):
    _need_fuse()
    made = []
    request.node.stash[_DIAG] = request.node.stash.get(_DIAG, [])

    def make(server, **kw):
        kw.setdefault("workdir", str(tmp_path))
        m = mount_fn(server, **kw)
        made.append(m)
        request.node.stash[_DIAG].append(m)
        return m

    yield make
    problems = []
    for m in reversed(made):
        m.cleanup()
        m.remove_mirror()
        if m.is_mounted():
            problems.append(f"{m.mountpoint}: still mounted after cleanup")
        problems += [f"{m.kind} stderr: {line}" for line in m.problems()]
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def mount_steadyfs(request, tmp_path):
    yield from _mount_factory(request, tmp_path, mounts.mount_steadyfs)


@pytest.fixture
def mount_sshfs(request, tmp_path):
    yield from _mount_factory(request, tmp_path, mounts.mount_sshfs)


# ---- mirrors -------------------------------------------------------------------

def _unescape_path(name):
    """`systemd-escape --unescape --path NAME`: "-" is "/", "\\xNN" a byte."""
    parts = [re.sub(rb"\\x([0-9a-fA-F]{2})", lambda m: bytes([int(m.group(1), 16)]),
                    p.encode()) for p in name.split("-")]
    return "/" + b"/".join(parts).decode(errors="replace")


def _mirror_names():
    try:
        return set(os.listdir(mounts.MIRROR_BASE))
    except OSError:
        return set()


@pytest.fixture(autouse=True)
def no_leftover_mirror(tmp_path_factory):
    """A test removes the /run/steadyfs mirrors it made: a leftover one
    names a keeper pid and a device the kernel will give to others, and
    piles up. Checked for the steadyfs Mounts the test made, and for any
    new mirror of a path under this session's temporary folder (others'
    tests share /run/steadyfs: only ours are removed)."""
    first = len(mounts.STEADYFS_MADE)
    before = _mirror_names()
    yield
    left = []
    for m in mounts.STEADYFS_MADE[first:]:
        p = m.mirror_path()
        if p and os.path.lexists(p) and not m.is_mounted():
            left.append(p)
            m.remove_mirror()
    del mounts.STEADYFS_MADE[first:]
    base = os.path.realpath(str(tmp_path_factory.getbasetemp()))
    for name in sorted(_mirror_names() - before):
        p = os.path.join(mounts.MIRROR_BASE, name)
        if _unescape_path(name).startswith(base + "/") and p not in left:
            left.append(p)
            if os.path.islink(p) or not os.path.isdir(p):
                os.unlink(p)
            else:
                shutil.rmtree(p, ignore_errors=True)
    if left:
        pytest.fail("the test left mirrors behind (now removed): " + ", ".join(left),
                    pytrace=False)


# ---- fault proxy ------------------------------------------------------------

@pytest.fixture
def proxy_to():
    """factory: proxy_to(port) -> a started FaultProxy to a loopback port."""
    made = []

    def make(port):
        p = faultproxy.FaultProxy("127.0.0.1", port).start()
        made.append(p)
        return p
    yield make
    for p in made:
        p.stop()


@pytest.fixture
def fault_proxy():
    made = []

    def make(server, **kw):
        p = faultproxy.FaultProxy(server.host, server.port, **kw).start()
        server.add_known_host(p.port)
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop()
