"""The Debian package, for real (docs/packaging.md).

One test walks an operator's whole life of the package on this machine:

- `make deb` in a fresh clone of this repository builds
  steadyfs_VERSION_ARCH.deb; the same clone with lib/version.h bumped to
  VERSION+test1 builds the second one (the one version source);
- lintian: no error, and every warning tag is explained in
  docs/packaging.md;
- `apt-get install ./steadyfs_VERSION_ARCH.deb`: the programs, man pages,
  units (in /lib/systemd/system, enabled by nobody), alert rules and docs
  are there, exactly the operator guide's package table, /etc/steadyfs and /var/lib/steadyfs are root's alone (0700),
  the recover sentinel is not;
- an fstab line of type fuse.steadyfs, through `mount -T OWN_FSTAB`, mounts
  with the installed binary (mount.fuse3 finds it on its fixed PATH);
- `apt-get install` of the second build while a writer writes: the
  postinst names the mount as upgraded, the mount was never unmounted, the
  daemon now runs the new /usr/bin/steadyfs and reports the new version,
  the writer saw zero failed calls and the server has every byte;
- `apt-get remove`: says the mount stays, and it does, still serving;
- the operator unmounts; `apt-get purge`: no file of the package, no dpkg
  or deb-systemd-helper record, no /var/lib/steadyfs; /etc/steadyfs stays
  only because it holds the operator's file.

It needs root, git, dpkg-buildpackage, debhelper, lintian and /dev/fuse,
and runs only when neither a steadyfs package nor a /usr/local install
(which mount.fuse3 would find first) is on the machine: it never touches
an installation it did not make. Without those it skips; `make deb-check`
(STEADYFS_DEB_CHECK=required) fails instead. The machine's dpkg state is
shared, so the package is purged whatever happens, and a run that crashed
leaves a marker that lets the next run purge what it left. Builds from
the clone see committed work only.
"""

import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time

import pytest

import mounts
import sshdfix
import test_docs
import test_packaging

REPO = mounts.REPO
PKG = "steadyfs"
BIN = "/usr/bin/steadyfs"
PREFIX = "/usr"
UNITDIR = "/lib/systemd/system"
STATE_DIRS = ("/etc/steadyfs", "/var/lib/steadyfs")
MARKER = "/run/steadyfs-test-deb.marker"
OP_TIMEOUT = 5
STOP_BOUND = OP_TIMEOUT + 12
BUILD_TIMEOUT = 600
APT_TIMEOUT = 300
TOOLS = ("git", "dpkg-buildpackage", "dh", "lintian", "apt-get", "dpkg-query",
         "mount", "fusermount3")
CHUNK = 64 * 1024


def _required():
    return os.environ.get("STEADYFS_DEB_CHECK") == "required"


def _cannot(reason):
    if _required():
        pytest.fail(f"make deb-check cannot run: {reason}")
    pytest.skip(reason)


def _clean_env():
    """No outer make's jobserver, and no SANITIZE (make check SANITIZE=1
    would put the clone's .deb under build/san/)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "SANITIZE")}
    env["DEBIAN_FRONTEND"] = "noninteractive"
    return env


def run(argv, timeout, cwd=None, check=True):
    p = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                       env=_clean_env(), stdin=subprocess.DEVNULL)
    if check:
        assert p.returncode == 0, f"{' '.join(argv)} exited {p.returncode}:\n" \
            f"{p.stdout[-6000:]}\n{p.stderr[-6000:]}"
    return p


def apt(*args):
    """apt-get's output; the lines the maintainer scripts wrote are
    printed (pytest -s shows them)."""
    p = run(["apt-get", "-y", "-o", "DPkg::Lock::Timeout=120",
             "--no-install-recommends"] + list(args), APT_TIMEOUT)
    out = p.stdout + p.stderr
    print(f"apt-get {' '.join(args)}:")
    for line in out.splitlines():
        if line.startswith("steadyfs:"):
            print("  " + line)
    return out


def pkg_status():
    """dpkg's status of the package, '' when dpkg does not know it."""
    p = run(["dpkg-query", "-W", "-f=${Status} ${Version}", PKG], 30, check=False)
    return p.stdout.strip() if p.returncode == 0 else ""


def installed_version():
    s = pkg_status().split()
    return s[-1] if len(s) == 4 and s[:3] == ["install", "ok", "installed"] else None


def purge_now():
    if pkg_status():
        run(["dpkg", "--purge", PKG], APT_TIMEOUT)


# ---- the two builds ------------------------------------------------------------

def _version_of(tree):
    with open(os.path.join(tree, "lib/version.h")) as f:
        return re.search(r'^#define STEADYFS_VERSION "([^"]+)"', f.read(), re.M).group(1)


def _make_deb(tree, outdir):
    run(["make", "--no-print-directory", "-C", tree, "deb"], BUILD_TIMEOUT)
    version = _version_of(tree)
    arch = run(["dpkg", "--print-architecture"], 10).stdout.strip()
    name = f"{PKG}_{version}_{arch}.deb"
    built = os.path.join(tree, "build", "deb", name)
    assert os.path.isfile(built), f"make deb made no {name}: {os.listdir(os.path.dirname(built))}"
    os.makedirs(outdir, exist_ok=True)
    shutil.copy2(built, os.path.join(outdir, name))
    return version, os.path.join(outdir, name)


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """(version, .deb) of the tree's HEAD, then of the same with the version
    bumped to VERSION+test1."""
    if os.geteuid() != 0:
        _cannot("the package test installs into this machine: run as root")
    missing = [t for t in TOOLS if not shutil.which(t)]
    if missing:
        _cannot(f"missing tools {missing} (make deps installs them)")
    if not os.path.isdir(os.path.join(REPO, ".git")) and \
            not os.path.isfile(os.path.join(REPO, ".git")):
        _cannot(f"{REPO} is not a git checkout: nothing to clone")
    top = tmp_path_factory.mktemp("deb")
    clone = str(top / "clone")
    run(["git", "-c", "safe.directory=*", "clone", "-q", "--no-hardlinks", REPO, clone], 120)
    first = _make_deb(clone, str(top / "out"))
    vh = os.path.join(clone, "lib/version.h")
    with open(vh) as f:
        text = f.read()
    with open(vh, "w") as f:
        f.write(text.replace(f'"{first[0]}"', f'"{first[0]}+test1"'))
    second = _make_deb(clone, str(top / "out"))
    assert second[0] == first[0] + "+test1"
    return first, second


# ---- the machine -----------------------------------------------------------------

@pytest.fixture
def machine(builds):
    """This machine, free of any steadyfs installation, held for the test;
    afterwards the package is purged and the folders it or the test made
    are gone, whatever happened."""
    if not mounts.fuse_available():
        _cannot("/dev/fuse is missing")
    lock = test_packaging.take_install_lock(120)
    if lock is None:
        _cannot("another test run holds the install lock")
    try:
        if pkg_status() and os.path.exists(MARKER):
            purge_now()      # left by a crashed run of ours
            for d in STATE_DIRS:
                shutil.rmtree(d, ignore_errors=True)
        problem = None
        if pkg_status():
            problem = f"the {PKG} package is on this machine ({pkg_status()})"
        elif shutil.which(PKG, path="/usr/local/sbin:/usr/local/bin"):
            problem = "a make install in /usr/local would be found first by mount.fuse3"
        elif any(os.path.lexists(d) for d in STATE_DIRS):
            problem = f"{STATE_DIRS} exist: the purge would remove what is not ours"
        if problem:
            _cannot(problem + "; not touching it")
        open(MARKER, "w").close()
        yield
    finally:
        if os.path.exists(MARKER):
            try:
                purge_now()
            finally:
                for d in STATE_DIRS:
                    shutil.rmtree(d, ignore_errors=True)
                os.unlink(MARKER)
        lock.close()


# ---- what the package holds --------------------------------------------------

def present(path):
    """Man pages and the longer docs are gzipped by the package: either
    name is fine."""
    return os.path.exists(path) or os.path.exists(path + ".gz")


def package_files():
    """Every path dpkg lists for the package."""
    return run(["dpkg-query", "-L", PKG], 30).stdout.split("\n")


def ours(path):
    """A path of the package's own, not a folder it shares (/usr/bin...)."""
    return not os.path.isdir(path) or "steadyfs" in path


def enabled_units():
    found = []
    for dirpath, dirnames, filenames in os.walk("/etc/systemd/system"):
        found += [os.path.join(dirpath, n) for n in filenames + dirnames if "steadyfs" in n]
    return found


def check_installed(version):
    assert installed_version() == version, pkg_status()
    missing = [p for p in test_packaging.expected_files(PREFIX, UNITDIR) if not present(p)]
    assert not missing, f"the package lacks {missing}"
    for prog in ("steadyfs", "steadyfs-probe", "steadyfs-recover"):
        path = shutil.which(prog, path="/usr/sbin:/usr/bin")
        assert path and path.startswith(PREFIX + "/"), prog
        out = run([path, "--version"], 10).stdout
        assert version in out, (prog, out)
    assert not enabled_units(), f"units enabled by the package: {enabled_units()}"
    for d in STATE_DIRS:
        st = os.lstat(d)
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700 and \
            st.st_uid == 0 and st.st_gid == 0, (d, oct(st.st_mode), st.st_uid)
    assert os.listdir("/etc/steadyfs") == [], os.listdir("/etc/steadyfs")


# ---- lintian -------------------------------------------------------------------

def lintian_problems(deb):
    p = run(["lintian", "--fail-on", "error", deb], 300, check=False)
    tags = re.findall(r"^([EW]): \S+: (\S+)", p.stdout, re.M)
    with open(os.path.join(REPO, "docs/packaging.md")) as f:
        doc = f.read()
    problems = [f"lintian error {t}" for k, t in tags if k == "E"]
    if p.returncode != 0 and not problems:
        problems.append(f"lintian exited {p.returncode}: {p.stdout[-2000:]} {p.stderr[-2000:]}")
    problems += [f"lintian warning {t} is not explained in docs/packaging.md"
                 for k, t in tags if k == "W" and f"`{t}`" not in doc]
    return problems


# ---- the mount and its writer ----------------------------------------------

def status_json(mountpoint):
    with open(os.path.join(mountpoint, ".control", "status.json")) as f:
        return json.load(f)


def wait_until(fn, timeout, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(interval)
    return fn()


def size_of(path):
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def chunk(i):
    return hashlib.sha256(b"%d" % i).digest() * (CHUNK // 32)


# A child that writes chunk(0), chunk(1)... through one descriptor held
# open the whole time, fsyncs every 4 chunks, and between chunks stats the
# file and makes, writes, closes and reads back a small file. It stops
# when STOP exists and prints {"chunks", "calls", "failures"}; every
# failed call is one entry of "failures".
_WRITER = r"""
import hashlib, json, os, sys, time
path, stop, chunk_size = sys.argv[1], sys.argv[2], int(sys.argv[3])
def chunk(i):
    return hashlib.sha256(b"%d" % i).digest() * (chunk_size // 32)
calls, failures, n = 0, [], 0
def call(what, fn, *a):
    global calls
    calls += 1
    try:
        return fn(*a)
    except OSError as e:
        failures.append(f"{what}: {e}")
        return None
fd = call("open", os.open, path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
while fd is not None and not os.path.exists(stop):
    if call(f"write chunk {n}", os.write, fd, chunk(n)) != chunk_size:
        break
    n += 1
    if n % 4 == 0:
        call("fsync", os.fsync, fd)
    call("stat", os.stat, path)
    small = os.path.join(os.path.dirname(path), f"small-{n % 8}")
    sfd = call("open small", os.open, small, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    if sfd is not None:
        call("write small", os.write, sfd, b"%d\n" % n)
        call("close small", os.close, sfd)
    sfd = call("reopen small", os.open, small, os.O_RDONLY)
    if sfd is not None:
        if call("read small", os.read, sfd, 64) != b"%d\n" % n:
            failures.append(f"small file {small} does not read back {n}")
        call("close small", os.close, sfd)
    time.sleep(0.01)
if fd is not None:
    call("fsync", os.fsync, fd)
    call("close", os.close, fd)
print(json.dumps({"chunks": n, "calls": calls, "failures": failures}), flush=True)
"""


class Writer:
    def __init__(self, path, workdir):
        self.stop_file = os.path.join(workdir, "writer.stop")
        self.proc = subprocess.Popen([sys.executable, "-c", _WRITER, path, self.stop_file,
                                      str(CHUNK)], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)

    def finish(self, timeout=60):
        open(self.stop_file, "w").close()
        out, err = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, f"the writer failed: {err[-3000:]}"
        return json.loads(out)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def fstab_mount(sshd, remote, mnt, fstab):
    with open(fstab, "w") as f:
        f.write("# the test's own fstab, never /etc/fstab\n"
                f"{sshd.user}@{sshd.host}:{remote} {mnt} fuse.steadyfs "
                f"_netdev,port={sshd.port},IdentityFile={sshd.key},"
                f"UserKnownHostsFile={sshd.known_hosts},allow_other,"
                f"op_timeout={OP_TIMEOUT},connections=2 0 0\n")
    p = subprocess.run(["mount", "-T", fstab, mnt], capture_output=True, text=True,
                       timeout=60, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p
    found = [m for m in mounts.mounts_at(mnt) if m["fstype"] == "fuse.steadyfs"]
    assert found, mounts.mounts_at(mnt)
    return found[-1]


def end_mount(mnt, pids):
    """Unmount (lazily when busy) and end its processes, by pid."""
    if any(m["fstype"] == "fuse.steadyfs" for m in mounts.mounts_at(mnt)):
        subprocess.run(["umount", "-l", mnt], timeout=10, stderr=subprocess.DEVNULL)
    for pid in set(pids) | set(test_packaging.daemon_pids(mnt)):
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if sshdfix.proc_state(pid) in (None, "Z"):
                break
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
            mounts.wait_gone([pid], STOP_BOUND)
    test_packaging.remove_mirror(mnt)


# ---- package-mounts on its own -------------------------------------------------

def _fresh_copy(src, dst):
    """What dpkg does: a new file (a new inode) renamed over the old one."""
    shutil.copy2(src, dst + ".dpkg-new")
    os.rename(dst + ".dpkg-new", dst)


def _keepers_of(binary):
    """Pids running `binary` (or the file it replaced) whose parent does not."""
    def runs(pid):
        try:
            return os.readlink(f"/proc/{pid}/exe") in (binary, binary + " (deleted)")
        except OSError:
            return False
    return [int(n) for n in os.listdir("/proc")
            if n.isdigit() and runs(n) and not runs(sshdfix._ppid(int(n)))]


def _hidden_mount(sshd, remote, mnt, program):
    """A mount of `program` made in a private mount namespace (as in a
    container): its keeper runs here, its mount is not in our table.
    Returns the keeper's pid."""
    before = set(_keepers_of(program))
    p = subprocess.run(["unshare", "-m", "--propagation", "private", program,
                        f"{sshd.user}@{sshd.host}:{remote}", mnt, "-p", str(sshd.port),
                        "-o", f"IdentityFile={sshd.key},UserKnownHostsFile={sshd.known_hosts},"
                        f"op_timeout={OP_TIMEOUT}"], capture_output=True, text=True,
                       timeout=60, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p
    new = set(_keepers_of(program)) - before
    assert len(new) == 1, new
    return new.pop()


@pytest.mark.timeout(240)
def test_package_mounts_touches_only_mounts_of_its_binary(sshd, remote_subdir,
                                                          mount_steadyfs, tmp_path):
    """debian/package-mounts with a copy of the build standing in for
    /usr/bin/steadyfs: after the copy is replaced, `upgrade` switches its
    mount to the new file and names it; a keeper of that binary whose mount
    is in another mount namespace is reported as NOT upgraded; a mount of
    another steadyfs binary (a /usr/local install, another build) is
    neither upgraded nor named, by `upgrade` or by `remove`, even while it
    is hung (its .control does not answer, so its keeper is unknown). The
    whole package is test_deb's other test; this one needs no dpkg."""
    if os.geteuid() != 0:
        pytest.skip("package-mounts looks at root's mounts")
    script = os.path.join(REPO, "debian", "package-mounts")
    src = os.path.join(mounts.build_dir(), "steadyfs")
    pkg_bin, other_bin = str(tmp_path / "pkg" / "steadyfs"), str(tmp_path / "other" / "steadyfs")
    for b in (pkg_bin, other_bin):
        os.makedirs(os.path.dirname(b))
        shutil.copy2(src, b)
    ours_m = mount_steadyfs(sshd, remote_subdir=remote_subdir, program=pkg_bin)
    other_m = mount_steadyfs(sshd, remote_subdir=remote_subdir, program=other_bin)
    hidden_mnt = str(tmp_path / "hidden")
    os.makedirs(hidden_mnt)
    hidden = None
    try:
        hidden = _hidden_mount(sshd, os.path.join(sshd.remote_dir, remote_subdir),
                               hidden_mnt, pkg_bin)
        other_before = status_json(other_m.mountpoint)
        _fresh_copy(src, pkg_bin)
        new = os.stat(pkg_bin)

        with other_m.stopped():
            r = run([script, "upgrade", pkg_bin], 150)
            rm = run([script, "remove", pkg_bin], 60)
        out = r.stdout + r.stderr
        assert f"steadyfs: '{ours_m.mountpoint}' upgraded: daemon generation 2 serves" \
            in r.stdout, out
        assert f"keeper pid {hidden} runs the old steadyfs but no mount of it was found " \
            "here" in r.stderr and "NOT upgraded" in r.stderr, out
        assert "1 mount(s) upgraded, 1 NOT" in r.stderr, out
        assert other_m.mountpoint not in out, out
        daemon = status_json(ours_m.mountpoint)["daemon_pid"]
        exe = os.stat(f"/proc/{daemon}/exe")
        assert (exe.st_dev, exe.st_ino) == (new.st_dev, new.st_ino), \
            os.readlink(f"/proc/{daemon}/exe")
        other_after = status_json(other_m.mountpoint)
        assert (other_after["generation"], other_after["daemon_pid"]) == \
            (other_before["generation"], other_before["daemon_pid"]), (other_before, other_after)

        assert f"steadyfs:   {ours_m.mountpoint} (keeper pid {ours_m.pid})" in rm.stdout, rm.stdout
        assert f"a mount not visible here (keeper pid {hidden})" in rm.stdout, rm.stdout
        assert other_m.mountpoint not in rm.stdout + rm.stderr, rm.stdout + rm.stderr
    finally:
        if hidden is not None:
            # SIGTERM: the keeper detaches its mount and stops its daemon.
            os.kill(hidden, signal.SIGTERM)
            assert mounts.wait_gone([hidden], STOP_BOUND), f"keeper {hidden} still runs"
        test_packaging.remove_mirror(hidden_mnt)


# ---- the package -----------------------------------------------------------------

@pytest.mark.timeout(900)
def test_package_install_mount_upgrade_remove_purge(builds, machine, sshd, remote_subdir,
                                                     tmp_path):
    (v1, deb1), (v2, deb2) = builds
    for deb in (deb1, deb2):
        problems = lintian_problems(deb)
        assert not problems, f"{os.path.basename(deb)}: {problems}"

    out = apt("install", deb1)
    check_installed(v1)
    listed = [p for p in package_files() if p]
    assert BIN in listed and f"{UNITDIR}/steadyfs@.service" in listed, listed
    unlisted, absent = test_docs.table_mismatch(
        [p for p in listed if not os.path.isdir(p)], test_docs.installed_table("package-files"))
    assert not unlisted, f"installed by the package but not in the operator guide: {unlisted}"
    assert not absent, f"in the operator guide's package table but not installed: {absent}"

    # Recover's state goes where the package made room for it (a dry run:
    # no sentinel, nothing to do).
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    manifest = tmp_path / "jobs.fstab"
    manifest.write_text("# nothing under the root\n")
    r = run(["/usr/sbin/steadyfs-recover", "--root", str(jobs), "--manifest",
             str(manifest)], 60, check=False)
    assert r.returncode in (0, 1), r
    assert os.path.isdir("/var/lib/steadyfs/recover"), r
    assert not os.path.exists("/etc/steadyfs/recover.enabled")
    # The operator's own file.
    operator_file = "/etc/steadyfs/id_ed25519"
    shutil.copy2(sshd.key, operator_file)

    remote = os.path.join(sshd.remote_dir, remote_subdir)
    mnt = str(tmp_path / "mnt")
    os.makedirs(mnt)
    pids = []
    writer = None
    try:
        before = fstab_mount(sshd, remote, mnt, str(tmp_path / "fstab"))
        pids = test_packaging.daemon_pids(mnt)
        assert len(pids) == 2, pids
        for pid in pids:
            assert os.readlink(f"/proc/{pid}/exe") == BIN, pid
        st1 = status_json(mnt)
        assert st1["version"] == v1 and st1["keeper_pid"] in pids, st1

        writer = Writer(os.path.join(mnt, "writer.bin"), str(tmp_path))
        target = os.path.join(remote, "writer.bin")
        assert wait_until(lambda: size_of(target) >= 8 * CHUNK, 30), \
            f"the writer got nowhere: {size_of(target)} bytes on the server"

        out = apt("install", deb2)
        assert installed_version() == v2, pkg_status()
        assert f"steadyfs: '{mnt}' upgraded: daemon generation" in out, out
        assert "NOT upgraded" not in out, out
        at_upgrade = size_of(target)
        st2 = status_json(mnt)
        daemon = st2["daemon_pid"]
        new_bin = os.stat(BIN)
        daemon_exe = os.stat(f"/proc/{daemon}/exe")
        problems = []
        if st2["version"] != v2:
            problems.append(f"the mount reports version {st2['version']}, not {v2}")
        if st2["generation"] <= st1["generation"]:
            problems.append(f"generation {st2['generation']} after {st1['generation']}")
        if (daemon_exe.st_dev, daemon_exe.st_ino) != (new_bin.st_dev, new_bin.st_ino):
            problems.append(f"the daemon {daemon} runs {os.readlink(f'/proc/{daemon}/exe')}, "
                            f"not the new {BIN}")
        if st2["keeper_pid"] != st1["keeper_pid"]:
            problems.append(f"keeper {st1['keeper_pid']} became {st2['keeper_pid']}")
        now = [m for m in mounts.mounts_at(mnt) if m["fstype"] == "fuse.steadyfs"]
        if not now or now[-1]["dev"] != before["dev"]:
            problems.append(f"the mount changed: {before} -> {now}")
        assert not problems, problems
        assert wait_until(lambda: size_of(target) >= at_upgrade + 8 * CHUNK, 30), \
            "the writer stopped after the upgrade"
        result = writer.finish()
        assert result["failures"] == [], result
        assert result["chunks"] >= 16 and result["calls"] > result["chunks"], result
        want = hashlib.sha256(b"".join(chunk(i) for i in range(result["chunks"]))).hexdigest()
        with open(target, "rb") as f:
            got = hashlib.sha256(f.read()).hexdigest()
        assert got == want, f"the server's copy differs from the {result['chunks']} chunks written"

        # Remove: the mount stays, serving, and the output says so.
        out = apt("remove", PKG)
        assert "leaves the running mounts alone" in out and mnt in out, out
        assert not os.path.lexists(BIN)
        assert pkg_status().startswith("deinstall ok config-files"), pkg_status()
        assert all(os.path.isdir(d) for d in STATE_DIRS)
        with open(os.path.join(mnt, "after-remove"), "w") as f:
            f.write("still here\n")
        with open(os.path.join(remote, "after-remove")) as f:
            assert f.read() == "still here\n"
        pids = test_packaging.daemon_pids(mnt)

        # The operator stops the mount, then purges.
        r = subprocess.run(["umount", mnt], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r
        assert mounts.wait_gone(pids, STOP_BOUND), f"{pids} still run after umount"
    finally:
        if writer is not None:
            writer.kill()
        end_mount(mnt, pids)

    out = apt("purge", PKG)
    assert "/etc/steadyfs is kept" in out, out
    assert pkg_status() in ("", "unknown ok not-installed"), pkg_status()
    left = [p for p in listed if ours(p) and os.path.lexists(p)]
    assert not left, f"the purge left {left}"
    assert not os.path.lexists("/var/lib/steadyfs")
    assert os.listdir("/etc/steadyfs") == [os.path.basename(operator_file)]
    records = [n for n in os.listdir("/var/lib/dpkg/info") if n.startswith(PKG + ".")]
    assert not records, records
    helper = "/var/lib/systemd/deb-systemd-helper-enabled"
    if os.path.isdir(helper):
        stale = [os.path.join(d, n) for d, dn, fn in os.walk(helper)
                 for n in fn + dn if "steadyfs" in n]
        assert not stale, stale
    assert not enabled_units(), enabled_units()
