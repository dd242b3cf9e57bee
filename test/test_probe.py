"""Integration tests of steadyfs-probe against real mounts: tmpfs and bind
mounts for the healthy, missing and error states and for --under; real
sshfs mounts (conftest's sshd) made stale (daemon SIGKILLed) or hung
(daemon SIGSTOPped, or its sftp-server frozen so a probe child gets stuck
in the kernel); fake steadyfs mirrors for freshness and the degraded
rule; a real steadyfs mount for degraded when one can be made.

Every run of the probe gets its own --state-dir and a short --timeout, and
every mount a test makes is unmounted (lazily) in its teardown.
"""

import errno
import glob
import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

import kerneltimeout
import mounts
import sshdfix

PROBE = os.path.join(mounts.build_dir(), "steadyfs-probe")
# Slack on top of --timeout for process start, kill and reap (more under
# ASan, and on 2 shared cores).
SLACK = 1.5


class Run:
    def __init__(self, proc, elapsed):
        self.rc = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr
        self.elapsed = elapsed

    def json(self):
        return json.loads(self.out)

    def by_path(self):
        return {p["path"]: p for p in self.json()["paths"]}

    def __repr__(self):
        return (f"<rc={self.rc} elapsed={self.elapsed:.2f}\n--- stdout ---\n"
                f"{self.out}--- stderr ---\n{self.err}>")


def probe(*args, state_dir, prefix=(), bound=60):
    cmd = list(prefix) + [PROBE, "--state-dir", str(state_dir)] + [str(a) for a in args]
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=bound,
                       stdin=subprocess.DEVNULL)
    return Run(p, time.monotonic() - t0)


@pytest.fixture
def sd(tmp_path):
    return tmp_path / "probe-state"


@pytest.fixture
def mounter():
    """mount(args..., target): runs mount(8); every mount is lazily
    unmounted at teardown, deepest (last made) first."""
    made = []

    def mount(*args):
        target = str(args[-1])
        subprocess.run(["mount"] + [str(a) for a in args], check=True, timeout=10)
        made.append(target)
        return target

    yield mount
    for target in reversed(made):
        subprocess.run(["umount", "-l", target], timeout=10,
                       stderr=subprocess.DEVNULL)


def write_mirror(d, state="connected", age=0.0, updated=True):
    os.makedirs(d, exist_ok=True)
    obj = {"state": state, "since": time.time() - 100, "pid": os.getpid(),
           "mountpoint": "/fake"}
    if updated:
        obj["updated"] = time.time() - age
    with open(os.path.join(d, "status.json"), "w") as f:
        json.dump(obj, f)
    if not updated:
        t = time.time() - age
        os.utime(os.path.join(d, "status.json"), (t, t))
    return str(d)


def stuck_records(state_dir):
    return sorted(glob.glob(os.path.join(str(state_dir), "stuck.*")))


def wait_gone(pid, seconds):
    deadline = time.monotonic() + seconds
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        state = sshdfix.proc_state(pid)
        if state in (None, "Z"):
            return True
        time.sleep(0.05)
    return not os.path.exists(f"/proc/{pid}")


# ---- local paths --------------------------------------------------------------

def test_ok_dir_and_file(tmp_path, sd):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_text("x")
    (tmp_path / "f").write_text("hello")
    r = probe("--json", "--timeout", 2, tmp_path / "d", tmp_path / "f", state_dir=sd)
    assert r.rc == 0, r
    paths = r.by_path()
    for p in (tmp_path / "d", tmp_path / "f"):
        e = paths[str(p)]
        assert e["state"] == "ok" and e["errno"] == 0 and e["healthy"], r
        assert 0 <= e["duration_seconds"] < 2
        assert e["fstype"] and e["mountpoint"]
    assert len(r.err.splitlines()) == 1, r


def test_table_output(tmp_path, sd):
    r = probe(tmp_path, tmp_path / "nope", state_dir=sd)
    assert r.rc == 1, r
    lines = r.out.splitlines()
    assert lines[0].split()[:3] == ["PATH", "STATE", "ERRNO"]
    rows = {ln.split()[0]: ln.split() for ln in lines[1:]}
    assert rows[str(tmp_path)][1] == "ok"
    assert rows[str(tmp_path / "nope")][1:3] == ["missing", "ENOENT"]
    assert r.err.strip() == "steadyfs-probe: error: 1 of 2 paths unhealthy"


def test_missing_and_enotdir(tmp_path, sd):
    (tmp_path / "f").write_text("x")
    r = probe("--json", "--timeout", 2, tmp_path / "nope", tmp_path / "f" / "sub",
              state_dir=sd)
    assert r.rc == 1, r
    paths = r.by_path()
    m = paths[str(tmp_path / "nope")]
    assert (m["state"], m["errno"], m["error"], m["op"]) == \
        ("missing", errno.ENOENT, "ENOENT", "stat")
    e = paths[str(tmp_path / "f" / "sub")]
    assert (e["state"], e["errno"], e["error"]) == ("error", errno.ENOTDIR, "ENOTDIR")


def test_eacces_as_unprivileged_user(tmp_path):
    """A folder the probing user may not read: error EACCES from opendir."""
    if not shutil.which("setpriv"):
        pytest.skip("setpriv is missing")
    base = tempfile.mkdtemp(prefix="probe-eacces-")
    try:
        os.chmod(base, 0o755)
        locked = os.path.join(base, "locked")
        os.mkdir(locked, 0o700)
        state = os.path.join(base, "state")
        os.mkdir(state, 0o777)
        os.chmod(state, 0o777)
        r = probe("--json", "--timeout", 2, locked, base, state_dir=state,
                  prefix=["setpriv", "--reuid=65534", "--regid=65534",
                          "--clear-groups"])
        assert r.rc == 1, r
        e = r.by_path()[locked]
        assert (e["state"], e["errno"], e["op"]) == ("error", errno.EACCES, "opendir"), r
        assert r.by_path()[base]["state"] == "ok"
    finally:
        shutil.rmtree(base)


def test_json_shape(tmp_path, sd):
    r = probe("--json", tmp_path, state_dir=sd)
    doc = r.json()
    assert set(doc) >= {"timestamp", "timeout_seconds", "healthy", "paths"}
    assert doc["healthy"] is True and doc["timeout_seconds"] == 10
    e = doc["paths"][0]
    assert set(e) >= {"path", "state", "errno", "error", "op", "duration_seconds",
                      "abandoned", "fstype", "source", "device", "mount_id",
                      "mountpoint", "mirror"}
    assert e["mirror"] is None


# ---- textfile ----------------------------------------------------------------

def promtool_check(path):
    with open(path) as f:
        p = subprocess.run(["promtool", "check", "metrics"], stdin=f,
                           capture_output=True, text=True, timeout=30)
    return p


def test_textfile_promtool_and_atomic(tmp_path, sd):
    out = tmp_path / "prom"
    out.mkdir()
    tf = out / "steadyfs_probe.prom"
    tf.write_text("# old contents\n")
    old = open(tf)  # keeps the old inode: an in-place write would show here
    try:
        weird = tmp_path / 'we"ird\\name'
        weird.mkdir()
        r = probe("--textfile", tf, tmp_path, tmp_path / "nope", weird,
                  state_dir=sd)
        assert r.rc == 1, r
        assert old.read() == "# old contents\n"
    finally:
        old.close()
    text = tf.read_text()
    p = promtool_check(tf)
    assert p.returncode == 0, p.stdout + p.stderr + text
    assert f'steadyfs_probe_up{{path="{tmp_path}"}} 1' in text
    assert f'steadyfs_probe_up{{path="{tmp_path}/nope"}} 0' in text
    assert f'steadyfs_probe_state{{path="{tmp_path}/nope",state="missing"}} 1' in text
    assert f'steadyfs_probe_errno{{path="{tmp_path}/nope"}} 2' in text
    assert 'we\\"ird\\\\name"' in text
    assert "steadyfs_probe_duration_seconds{" in text
    assert "steadyfs_probe_last_run_timestamp_seconds " in text
    assert os.listdir(out) == ["steadyfs_probe.prom"], "temp file left behind"
    assert oct(os.stat(tf).st_mode & 0o777) == oct(0o644)


def test_textfile_unwritable_folder(tmp_path, sd):
    r = probe("--textfile", tmp_path / "no-such-dir" / "x.prom", tmp_path, state_dir=sd)
    assert r.rc == 2, r
    assert "no-such-dir" in r.err and len(r.err.splitlines()) == 1
    (tmp_path / "file").write_text("")
    r = probe("--textfile", tmp_path / "file" / "x.prom", tmp_path, state_dir=sd)
    assert r.rc == 2, r


# ---- exit codes and bad input --------------------------------------------------

@pytest.mark.parametrize("args,needle", [
    ([], "nothing to probe"),
    (["--bogus", "/"], "unknown option '--bogus'"),
    (["--timeout", "abc", "/"], "bad --timeout 'abc'"),
    (["--timeout", "0", "/"], "bad --timeout '0'"),
    (["--timeout", "-1", "/"], "bad --timeout '-1'"),
    (["--timeout", "nan", "/"], "bad --timeout 'nan'"),
    (["--timeout", "1e9", "/"], "bad --timeout '1e9'"),
    (["--timeout"], "needs a value"),
    (["--under", "/no/such/root"], "bad --under '/no/such/root'"),
    (["--under", "/etc/hostname"], "Not a directory"),
    ([""], "empty path"),
])
def test_usage_errors(args, needle, sd):
    r = probe(*args, state_dir=sd)
    assert r.rc == 2, r
    assert len(r.err.splitlines()) == 1, r
    assert needle in r.err, r
    assert r.err.startswith("steadyfs-probe: error: ")


def test_internal_error_state_dir(tmp_path):
    (tmp_path / "file").write_text("")
    r = probe(tmp_path, state_dir=tmp_path / "file" / "state")
    assert r.rc == 3, r
    assert len(r.err.splitlines()) == 1 and "state dir" in r.err, r


def test_exit_codes_healthy_unhealthy(tmp_path, sd):
    assert probe(tmp_path, state_dir=sd).rc == 0
    assert probe(tmp_path, tmp_path / "x", state_dir=sd).rc == 1
    r = probe("--timeout", "0.5", tmp_path, state_dir=sd)  # fractional allowed
    assert r.rc == 0, r


def test_help(sd):
    r = probe("--help", state_dir=sd)
    assert r.rc == 0 and r.out.startswith("usage: steadyfs-probe")


# ---- --under -------------------------------------------------------------------

def test_under_nested_mounts(tmp_path, sd, mounter):
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "plain").mkdir()
    src = tmp_path / "src"
    src.mkdir()
    a = mounter("-t", "tmpfs", "-o", "size=1m", "probetest-a", root / "a")
    os.makedirs(os.path.join(a, "b", "c"))
    b = mounter("--bind", src, root / "a" / "b")
    os.mkdir(os.path.join(b, "c"))
    c = mounter("-t", "tmpfs", "-o", "size=1m", "probetest-c", root / "a" / "b" / "c")
    # A mount outside the root must not show up.
    (tmp_path / "outside").mkdir()
    mounter("-t", "tmpfs", "-o", "size=1m", "probetest-out", tmp_path / "outside")

    r = probe("--json", "--timeout", 2, "--under", root, state_dir=sd)
    assert r.rc == 0, r
    paths = r.by_path()
    assert sorted(paths) == sorted([a, b, c]), r
    assert (paths[a]["fstype"], paths[a]["source"]) == ("tmpfs", "probetest-a")
    assert paths[c]["source"] == "probetest-c"
    assert paths[b]["fstype"] == mounts.mounts_at(b)[-1]["fstype"]
    for p in paths.values():
        assert p["state"] == "ok" and p["mountpoint"] == p["path"]
        assert p["device"] and p["mount_id"] > 0
    # The table names fstype and source too.
    t = probe("--under", root, state_dir=sd)
    assert "probetest-a" in t.out and "tmpfs" in t.out, t
    # A root that is itself a mountpoint is listed; a path given on the
    # command line as well is listed once.
    r = probe("--json", "--under", a, a, state_dir=sd)
    assert sorted(p["path"] for p in r.json()["paths"]) == sorted([a, b, c]), r


def test_under_root_without_mounts(tmp_path, sd):
    r = probe("--under", tmp_path, state_dir=sd)
    assert r.rc == 0, r
    assert "no mounts at or below" in r.err


def test_under_relative_and_unnormalised_root(tmp_path, sd, mounter):
    (tmp_path / "r" / "m").mkdir(parents=True)
    m = mounter("-t", "tmpfs", "-o", "size=1m", "probetest-rel", tmp_path / "r" / "m")
    p = subprocess.run([PROBE, "--state-dir", str(sd), "--json", "--under", "./r//./"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert [e["path"] for e in json.loads(p.stdout)["paths"]] == [m]


# ---- mirrors ---------------------------------------------------------------------

def test_mirror_fresh_and_stale(tmp_path, sd):
    fresh = write_mirror(tmp_path / "fresh")
    r = probe("--json", "--mirror", fresh, tmp_path, state_dir=sd)
    assert r.rc == 0, r
    m = r.json()["paths"][0]["mirror"]
    assert (m["health"], m["state"]) == ("fresh", "connected")
    assert m["age_seconds"] < 5

    old = write_mirror(tmp_path / "old", age=60)
    r = probe("--json", "--mirror", old, tmp_path, state_dir=sd)
    assert r.rc == 1, r
    e = r.json()["paths"][0]
    assert e["state"] == "ok" and not e["healthy"]
    assert e["mirror"]["health"] == "stale" and e["mirror"]["age_seconds"] >= 59

    # Without "updated", the file's mtime decides.
    old2 = write_mirror(tmp_path / "old2", age=30, updated=False)
    r = probe("--json", "--mirror", old2, tmp_path, state_dir=sd)
    assert r.rc == 1 and r.json()["paths"][0]["mirror"]["health"] == "stale", r
    new2 = write_mirror(tmp_path / "new2", updated=False)
    assert probe("--mirror", new2, tmp_path, state_dir=sd).rc == 0

    tf = tmp_path / "m.prom"
    r = probe("--textfile", tf, "--mirror", old, tmp_path, state_dir=sd)
    text = tf.read_text()
    assert f'steadyfs_probe_mirror_fresh{{path="{tmp_path}"}} 0' in text
    assert promtool_check(tf).returncode == 0


def test_mirror_missing_or_bad(tmp_path, sd):
    r = probe("--json", "--mirror", tmp_path / "none", tmp_path, state_dir=sd)
    assert r.rc == 1, r
    assert r.json()["paths"][0]["mirror"]["health"] == "missing"
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "status.json").write_text("{not json")
    r = probe("--json", "--mirror", bad, tmp_path, state_dir=sd)
    assert r.rc == 1 and r.json()["paths"][0]["mirror"]["health"] == "bad", r
    (bad / "status.json").write_text('{"updated": 1}')
    r = probe("--json", "--mirror", bad, tmp_path, state_dir=sd)
    assert r.json()["paths"][0]["mirror"]["health"] == "bad", r


# ---- sshfs: stale and hung ------------------------------------------------------------

def test_stale_sshfs(sshd, remote_subdir, mount_sshfs, sd):
    m = mount_sshfs(sshd, remote_subdir=remote_subdir)
    m.kill_daemon()
    r = probe("--json", "--timeout", 2, m.mountpoint, m.path("sub"), state_dir=sd)
    assert r.rc == 1, r
    for p in (m.mountpoint, m.path("sub")):
        e = r.by_path()[p]
        assert (e["state"], e["errno"], e["error"]) == ("stale", 107, "ENOTCONN"), r
        assert e["fstype"] == "fuse.sshfs"
    assert r.elapsed < 2, r


def test_hung_sshfs_sigstop(sshd, remote_subdir, mount_sshfs, sd):
    m = mount_sshfs(sshd, remote_subdir=remote_subdir)
    os.mkdir(m.path("d"))
    tf = sd.parent / "hung.prom"
    with m.stopped():
        r = probe("--json", "--textfile", tf, "--timeout", 1.5, m.mountpoint,
                  m.path("d", "x"), "/", state_dir=sd)
    assert r.rc == 1, r
    assert r.elapsed < 1.5 + SLACK, r
    paths = r.by_path()
    for p in (m.mountpoint, m.path("d", "x")):
        assert paths[p]["state"] == "hung", r
        assert paths[p]["duration_seconds"] == pytest.approx(1.5, abs=0.3)
    assert paths["/"]["state"] == "ok"
    text = tf.read_text()
    assert f'steadyfs_probe_state{{path="{m.mountpoint}",state="hung"}} 1' in text
    assert promtool_check(tf).returncode == 0


@pytest.mark.timeout(120)
def test_many_hung_paths_take_one_timeout(sshd, remote_subdir, mount_sshfs, sd):
    m = mount_sshfs(sshd, remote_subdir=remote_subdir)
    paths = [m.path(f"d{i}") for i in range(50)]
    with m.stopped():
        r = probe("--json", "--timeout", 2, *paths, state_dir=sd)
    assert r.rc == 1, r
    states = {e["state"] for e in r.json()["paths"]}
    assert states == {"hung"}, r
    assert len(r.json()["paths"]) == 50
    print(f"50 hung paths: {r.elapsed:.2f} s with --timeout 2")
    assert r.elapsed < 2 + SLACK, r


@pytest.mark.timeout(120)
def test_stuck_child_is_abandoned_and_remembered(make_sshd, mount_sshfs, sd):
    """With the server frozen, sshfs has already taken the request, so the
    probe child cannot die on SIGKILL: it is abandoned, the run still
    ends on time, and the next run reports hung without a new child."""
    s = make_sshd()
    os.mkdir(os.path.join(s.remote_dir, "d"))
    m = mount_sshfs(s)
    target = m.path("d")
    deadline = time.monotonic() + 10
    while not s.sftp_server_pids() and time.monotonic() < deadline:
        time.sleep(0.02)
    with sshdfix.frozen(s.sftp_server_pids()):
        r1 = probe("--json", "--timeout", 1, target, state_dir=sd)
        assert r1.rc == 1 and r1.elapsed < 1 + SLACK, r1
        e1 = r1.by_path()[target]
        assert e1["state"] == "hung" and e1["abandoned"] and not e1["reused_stuck_child"], r1
        pid = e1["pid"]
        assert sshdfix.proc_state(pid) == "D", r1
        recs = stuck_records(sd)
        assert [os.path.basename(x) for x in recs] == [f"stuck.{pid}"]
        with open(recs[0]) as f:
            assert f.read().split("\n", 1)[1] == target
        # it names a path: root's alone (issue 15)
        assert os.stat(recs[0]).st_mode & 0o777 == 0o600

        r2 = probe("--json", "--timeout", 1, target, "/", state_dir=sd)
        assert r2.rc == 1, r2
        e2 = r2.by_path()[target]
        assert e2["state"] == "hung" and e2["reused_stuck_child"] and e2["pid"] == pid, r2
        assert "still stuck" in e2["message"]
        assert stuck_records(sd) == recs  # no second child recorded
        # Only "/" needed a child: the run did not wait for the deadline.
        assert r2.elapsed < 1, r2
    # The server answers again: the stuck child finishes, and its record
    # is dropped on the next run.
    assert wait_gone(pid, 20), f"probe child {pid} still there"
    r3 = probe("--json", "--timeout", 2, target, state_dir=sd)
    assert r3.rc == 0, r3
    assert stuck_records(sd) == []


def test_under_with_stale_sshfs(sshd, remote_subdir, mount_sshfs, sd, tmp_path, mounter):
    root = tmp_path / "jobs"
    (root / "a").mkdir(parents=True)
    (root / "s").mkdir()
    a = mounter("-t", "tmpfs", "-o", "size=1m", "probetest-jobs", root / "a")
    m = mount_sshfs(sshd, remote_subdir=remote_subdir, mountpoint=str(root / "s"))
    m.kill_daemon()
    r = probe("--json", "--timeout", 2, "--under", root, state_dir=sd)
    assert r.rc == 1, r
    paths = r.by_path()
    assert paths[a]["state"] == "ok"
    e = paths[m.mountpoint]
    assert (e["state"], e["fstype"]) == ("stale", "fuse.sshfs"), r
    assert e["source"].startswith(f"{sshd.user}@{sshd.host}:")


# ---- degraded ----------------------------------------------------------------------

def test_degraded_rule_with_fake_mirror(sshd, remote_subdir, mount_sshfs, sd, tmp_path):
    """The degraded rule, driven by a mirror: a hung path whose mirror is
    fresh and says the daemon is not connected is degraded; with a
    connected or stale mirror it stays hung."""
    m = mount_sshfs(sshd, remote_subdir=remote_subdir)
    down = write_mirror(tmp_path / "down", state="down")
    up = write_mirror(tmp_path / "up", state="connected")
    old = write_mirror(tmp_path / "old", state="down", age=60)
    with m.stopped():
        states = {}
        for name, mirror in (("down", down), ("up", up), ("old", old)):
            r = probe("--json", "--timeout", 1, "--mirror", mirror, m.path("x"),
                      state_dir=sd)
            assert r.rc == 1, r
            states[name] = r.json()["paths"][0]["state"]
    assert states == {"down": "degraded", "up": "hung", "old": "hung"}


@pytest.mark.timeout(120)
def test_degraded_real_steadyfs(make_sshd, mount_steadyfs, fault_proxy, sd):
    """A real steadyfs mount whose link is blackholed: the daemon is alive
    and says so in its mirror, so the probe reports degraded, not hung.
    (A blackhole, not a frozen sftp server: steadyfs would reconnect to a
    fresh, unfrozen server process and answer.)"""
    if not os.access(os.path.join(mounts.build_dir(), "steadyfs"), os.X_OK):
        pytest.skip("build/steadyfs is not built")
    s = make_sshd()
    os.mkdir(os.path.join(s.remote_dir, "d"))
    proxy = fault_proxy(s)
    m = mount_steadyfs(s, port=proxy.port, expect_errors=True,
                       opts=["op_timeout=6", "ServerAliveInterval=1",
                             "ServerAliveCountMax=2"])
    r = probe("--json", "--timeout", 2, m.mountpoint, state_dir=sd)
    e = r.json()["paths"][0]
    assert e["mirror"] is not None and e["mirror"]["health"] == "fresh", r
    assert r.rc == 0 and e["state"] == "ok" and e["fstype"] == "fuse.steadyfs", r
    proxy.blackhole()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            r = probe("--json", "--timeout", 2, m.path("d"), state_dir=sd)
            e = r.json()["paths"][0]
            if e["mirror"] and e["mirror"].get("state") not in (None, "connected"):
                break
            time.sleep(0.5)
        assert e["state"] in ("degraded", "ok"), r
        r = probe("--json", "--timeout", 2, m.path("d", "fresh-name"), state_dir=sd)
        assert r.json()["paths"][0]["state"] == "degraded", r
    finally:
        proxy.restore()


@pytest.mark.timeout(60)
def test_bind_of_steadyfs_reported_as_the_same_healthy_mount(sshd, remote_subdir,
                                                             mount_steadyfs, sd, tmp_path):
    """`mount --bind` of a steadyfs mount, and of a folder in it, show the
    same device at another path, where there is no mirror: the probe reads
    the mirror of the live steadyfs that serves that device, so the bind is
    as healthy as the mount (before: "mirror missing" and hung)."""
    os.mkdir(os.path.join(sshd.remote_dir, remote_subdir, "d"))
    m = mount_steadyfs(sshd, remote_subdir=remote_subdir)
    whole, sub = str(tmp_path / "bind-whole"), str(tmp_path / "bind-sub")
    made = []
    try:
        for src, dst in ((m.mountpoint, whole), (m.path("d"), sub)):
            os.mkdir(dst)
            subprocess.run(["mount", "--bind", src, dst], check=True, timeout=10)
            made.append(dst)
        r = probe("--json", "--timeout", 5, m.mountpoint, whole, sub, state_dir=sd)
        got = r.by_path()
        for p in (m.mountpoint, whole, sub):
            e = got[p]
            assert e["state"] == "ok" and e["fstype"] == "fuse.steadyfs", r
            assert e["mirror"] and e["mirror"]["health"] == "fresh", r
            assert e["mirror"]["dir"] == got[m.mountpoint]["mirror"]["dir"], r
        assert r.rc == 0, r
    finally:
        for dst in reversed(made):
            subprocess.run(["umount", "-l", dst], check=False, timeout=10)


SLOW_FSYNC = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <unistd.h>
/* fsync() 0.2 s slower: a busy machine's disk, made certain. */
int fsync(int fd)
{
	int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fsync");

	usleep(200000);
	return real ? real(fd) : -1;
}
"""


def slow_fsync_library(tmp_path):
    """An LD_PRELOAD library that delays every fsync(), or None without a
    C compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return None
    src, lib = tmp_path / "slowfsync.c", tmp_path / "slowfsync.so"
    src.write_text(SLOW_FSYNC)
    r = subprocess.run([cc, "-shared", "-fPIC", "-o", str(lib), str(src), "-ldl"],
                       capture_output=True, text=True, timeout=60)
    return str(lib) if r.returncode == 0 else None


@pytest.mark.timeout(120)
def test_mirror_fresh_as_soon_as_mount_serves(sshd, remote_subdir, mount_steadyfs, sd,
                                              tmp_path):
    """The daemon writes its first mirror before it says it serves: a probe
    run the moment the mount answers finds it fresh, however slow the
    mirror's disk (fsync delayed here). Before, the mirror thread's first
    write raced the mount becoming ready, and a probe could see the mirror
    "missing" (test_degraded_real_steadyfs failed so once)."""
    lib = slow_fsync_library(tmp_path)
    if not lib:
        pytest.skip("no C compiler for the LD_PRELOAD library")
    m = mount_steadyfs(sshd, remote_subdir=remote_subdir, timeout=60,
                       env={"LD_PRELOAD": lib,
                            # Under SANITIZE=1 the ASan runtime is linked in
                            # and would refuse a library preloaded before it.
                            "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "")
                            + ":verify_asan_link_order=0"})
    r = probe("--json", "--timeout", 5, m.mountpoint, state_dir=sd)
    e = r.json()["paths"][0]
    assert e["mirror"] is not None and e["mirror"]["health"] == "fresh", r
    assert r.rc == 0 and e["state"] == "ok", r


def test_kernel_request_timeout_reported(sshd, remote_subdir, mount_steadyfs, sd, tmp_path):
    """Issue 15 finding 10: with fs.fuse.max_request_timeout set (600 s,
    restored at once), the probe names the timeout in a FUSE path's
    message and JSON, and as a gauge in the textfile; without it the gauge
    says 0 (and -1 on a kernel without the setting)."""
    m = mount_steadyfs(sshd, remote_subdir=remote_subdir)
    tf = tmp_path / "probe.prom"
    with kerneltimeout.request_timeout("max_request_timeout", 600):
        r = probe("--json", "--textfile", tf, m.mountpoint, state_dir=sd)
    doc = r.json()
    assert doc["kernel_fuse_request_timeout"] == {
        "default_request_timeout": doc["kernel_fuse_request_timeout"]["default_request_timeout"],
        "max_request_timeout": 600, "effective_seconds": 600}, doc
    e = doc["paths"][0]
    assert e["kernel_request_timeout_seconds"] == 600, e
    assert "kernel aborts the mount after a request waits 600 s" in e["message"], e
    assert "steadyfs_probe_fuse_request_timeout_seconds 600" in tf.read_text()
    # a path on no FUSE mount carries no such note
    r = probe("--json", tmp_path, state_dir=sd)
    assert r.json()["paths"][0]["kernel_request_timeout_seconds"] is None, r

    r = probe("--textfile", tf, m.mountpoint, state_dir=sd)
    with open(kerneltimeout.path("max_request_timeout")) as f:
        now = int(f.read())
    assert f"steadyfs_probe_fuse_request_timeout_seconds {now}" in tf.read_text()


# ---- docs: alert rules and man page ------------------------------------------------

DOCS = os.path.join(mounts.REPO, "docs")


def test_alert_rules_check_and_unit_tests():
    if not shutil.which("promtool"):
        pytest.skip("promtool is missing")
    alerts = os.path.join(DOCS, "alerts")
    p = subprocess.run(["promtool", "check", "rules", "steadyfs.rules.yml"], cwd=alerts,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    p = subprocess.run(["promtool", "test", "rules", "steadyfs.rules.test.yml"],
                       cwd=alerts, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr


def test_man_page_renders_without_warnings():
    if not shutil.which("man"):
        pytest.skip("man is missing")
    p = subprocess.run(["man", "--warnings", "-l", os.path.join(DOCS, "steadyfs-probe.8")],
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, MANWIDTH="80"))
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert "EXIT STATUS" in p.stdout
