"""Packaging tests: `make install`/`make uninstall`, the systemd units, the
man pages and an fstab line of type fuse.steadyfs, all for real.

- A DESTDIR install (PREFIX=/usr/local) holds exactly the expected files
  with the right modes; the installed programs answer --version/--help;
  `make uninstall` leaves no file behind; PREFIX is written into the units.
- Each unit passes `systemd-analyze verify --root=DESTDIR` with no output
  at all (unknown keys are only warnings): the tree gets a copy of the
  system's own units and of the host programs the units run, and MANPATH
  points at the installed man pages so Documentation=man: is checked too.
- There is no systemd as PID 1 here, so the units' commands are run
  directly, parsed from the installed unit files: steadyfs@'s ExecStart
  against the test sshd with NOTIFY_SOCKET set (READY=1 must come once the
  mount is up), then its ExecStop with MAINPID (the mount goes away, the
  daemon exits 0, written data is on the server), idle and with a file held
  open (the busy path); the probe and recover services' ExecStart with
  their production paths swapped for scratch ones.
- The man pages render without warnings and name every option --help
  lists.
- fstab: `make install` into the real /usr/local (mount(8) runs helpers
  with a fixed PATH), `mount -T OWN_FSTAB MOUNTPOINT`, then `make
  uninstall`. The daemon is found by pid through its argv and the mount is
  always cleaned up. Never the machine's /etc/fstab.
"""

import fcntl
import glob
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import time

import pytest

import mounts
import sshdfix

REPO = mounts.REPO
BUILD = mounts.build_dir()
PREFIX = "/usr/local"
UNITDIR = "/etc/systemd/system"
PROGRAMS = {"steadyfs": "bin", "steadyfs-probe": "sbin",
            "steadyfs-recover": "sbin"}
MAN_OF = {"steadyfs": "docs/steadyfs.1", "steadyfs-probe": "docs/steadyfs-probe.8",
          "steadyfs-recover": "docs/steadyfs-recover.8"}
# The PATH systemd gives services; the unit's shell snippets rely on it.
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
OP_TIMEOUT = 3
# A stop waits up to op_timeout for writes, plus the daemon's teardown.
STOP_BOUND = OP_TIMEOUT + 12
INSTANCE_EXAMPLE = "srv-healtharchive-jobs"
# Serialises real installs into /usr/local between concurrent test runs;
# the marker says an install there was made by this test (and may be
# removed by the next run if a crash left it behind).
INSTALL_LOCK = "/run/lock/steadyfs-test-install.lock"
INSTALL_MARKER = "/run/steadyfs-test-install.marker"


# ---- make ----------------------------------------------------------------

def make(*args, timeout=120):
    """Run `make -o all ARGS` in the repo: install from the binaries
    already built in BUILD, without rebuilding (other engineers may be
    editing sources), and without the jobserver of an outer make."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    p = subprocess.run(["make", "--no-print-directory", "-C", REPO, "-o", "all",
                        f"B={BUILD}"] + list(args), capture_output=True,
                       text=True, timeout=timeout, env=env,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 0, f"make {' '.join(args)}:\n{p.stdout}\n{p.stderr}"
    return p


def repo_glob(pattern):
    return sorted(glob.glob(os.path.join(REPO, pattern)))


def expected_files(prefix=PREFIX, unitdir=UNITDIR):
    """Installed path -> mode, from what the repo holds."""
    out = {}
    for prog, sub in PROGRAMS.items():
        out[f"{prefix}/{sub}/{prog}"] = 0o755
    for sect in ("1", "8"):
        for m in repo_glob(f"docs/*.{sect}"):
            out[f"{prefix}/share/man/man{sect}/{os.path.basename(m)}"] = 0o644
    for u in repo_glob("docs/systemd/*.service") + repo_glob("docs/systemd/*.timer"):
        out[f"{unitdir}/{os.path.basename(u)}"] = 0o644
    for r in repo_glob("docs/alerts/*.yml"):
        out[f"{prefix}/share/steadyfs/alerts/{os.path.basename(r)}"] = 0o644
    for d in repo_glob("docs/*.md"):
        out[f"{prefix}/share/doc/steadyfs/{os.path.basename(d)}"] = 0o644
    return out


def files_under(root):
    """Every non-directory path under `root`, as absolute paths inside it."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for n in filenames + [d for d in dirnames
                              if os.path.islink(os.path.join(dirpath, d))]:
            found.add("/" + os.path.relpath(os.path.join(dirpath, n), root))
    return found


# ---- unit files ----------------------------------------------------------

def unit_entries(path):
    """(section, key, value) of a unit file, continuation lines joined as
    systemd joins them (a backslash at the end becomes a space)."""
    out, section, pending = [], None, ""
    with open(path) as f:
        for raw in f:
            line = pending + raw.rstrip("\n")
            pending = ""
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            s = line.strip()
            if not s or s[0] in "#;":
                continue
            if s.startswith("["):
                section = s.strip("[]")
                continue
            key, _, value = s.partition("=")
            out.append((section, key.strip(), value.strip()))
    return out


def unit_values(path, key):
    return [v for _, k, v in unit_entries(path) if k == key]


def specifiers(instance):
    """%i, %I, %f of a template instance, computed by systemd-escape."""
    unescaped = subprocess.run(["systemd-escape", "--unescape", instance],
                               capture_output=True, text=True, check=True,
                               timeout=10).stdout.strip()
    path = subprocess.run(["systemd-escape", "--unescape", "--path", instance],
                          capture_output=True, text=True, check=True,
                          timeout=10).stdout.strip()
    return {"i": instance, "I": unescaped, "f": path, "%": "%"}


def expand_command(value, spec, env):
    """An Exec*= value as systemd runs it: the prefix characters (-, @, :,
    +, !) stripped, words split with quotes, then in each word %x
    specifiers, $$ as a literal $, ${VAR} as one word and a whole-word
    $VAR split on blanks. Returns (argv, ignore_failure)."""
    ignore = False
    while value and value[0] in "-@:+!":
        ignore |= value[0] == "-"
        value = value[1:]
    argv = []
    for word in shlex.split(value):
        word = re.sub(r"%(.)", lambda m: spec[m.group(1)], word)
        whole = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if whole:
            argv += env.get(whole.group(1), "").split()
            continue
        word = re.sub(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}",
                      lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), ""),
                      word)
        argv.append(word)
    return argv, ignore


def read_environment_file(path):
    """KEY=VALUE lines of an EnvironmentFile (the subset the docs use)."""
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and line[0] not in "#;":
                k, _, v = line.partition("=")
                env[k.strip()] = v.strip()
    return env


def in_tree(tree, argv):
    """Point an absolute program path into the DESTDIR tree when it is one
    we installed there."""
    if argv and os.path.exists(tree + argv[0]) and argv[0].startswith(PREFIX + "/"):
        return [tree + argv[0]] + argv[1:]
    return argv


# ---- fixtures ------------------------------------------------------------

@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A DESTDIR install, PREFIX=/usr/local, shared by the tests below
    (which add nothing to it)."""
    d = str(tmp_path_factory.mktemp("destdir"))
    make("install", f"DESTDIR={d}", f"PREFIX={PREFIX}")
    return d


@pytest.fixture(scope="module")
def verify_tree(tmp_path_factory):
    """Another DESTDIR install, made fit for systemd-analyze --root: the
    system's own units (targets the units name) and every program an Exec
    line runs are copied in."""
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is missing")
    d = str(tmp_path_factory.mktemp("verify-root"))
    make("install", f"DESTDIR={d}", f"PREFIX={PREFIX}")
    shutil.copytree("/lib/systemd/system", d + "/lib/systemd/system", symlinks=True)
    for u in _units(d):
        for _, key, value in unit_entries(u):
            if key.startswith("Exec"):
                prog = expand_command(value, specifiers("x"), {})[0][0]
                if prog.startswith("/") and not os.path.exists(d + prog):
                    os.makedirs(os.path.dirname(d + prog), exist_ok=True)
                    shutil.copy2(os.path.realpath(prog), d + prog)
    return d


def _units(tree):
    return sorted(glob.glob(os.path.join(tree + UNITDIR, "*")))


# ---- install / uninstall -------------------------------------------------

def test_destdir_install_has_every_file(tree):
    want = expected_files()
    got = files_under(tree)
    assert got == set(want), (f"missing: {sorted(set(want) - got)}\n"
                              f"unexpected: {sorted(got - set(want))}")
    for path, mode in want.items():
        st = os.lstat(tree + path)
        assert stat.S_ISREG(st.st_mode), path
        assert stat.S_IMODE(st.st_mode) == mode, f"{path}: {oct(st.st_mode)}"
    assert os.path.exists(tree + UNITDIR + "/steadyfs@.service")


@pytest.mark.parametrize("prog", sorted(PROGRAMS))
def test_installed_programs_run(tree, prog):
    exe = f"{tree}{PREFIX}/{PROGRAMS[prog]}/{prog}"
    h = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=10)
    assert h.returncode == 0 and "usage:" in h.stdout + h.stderr, h
    v = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10)
    if v.returncode == 2 and "unknown option '--version'" in v.stderr:
        pytest.xfail(f"{prog} has no --version yet")
    assert v.returncode == 0 and re.match(rf"{prog} \d+\.\d+", v.stdout), v


def test_uninstall_removes_everything_and_prefix_reaches_units(tmp_path):
    d = str(tmp_path / "root")
    make("install", f"DESTDIR={d}", "PREFIX=/usr", "UNITDIR=/lib/systemd/system")
    want = expected_files("/usr", "/lib/systemd/system")
    assert files_under(d) == set(want)
    execs = [v for u in glob.glob(d + "/lib/systemd/system/*.service")
             for k in ("ExecStart", "ExecStop") for v in unit_values(u, k)]
    assert execs and not [e for e in execs if "/usr/local/" in e], execs
    assert any(e.startswith("/usr/bin/steadyfs ") for e in execs), execs
    make("uninstall", f"DESTDIR={d}", "PREFIX=/usr", "UNITDIR=/lib/systemd/system")
    assert files_under(d) == set()


# ---- systemd-analyze verify ----------------------------------------------

def test_units_pass_systemd_analyze_verify(verify_tree):
    tree = verify_tree
    names = []
    for u in _units(tree):
        name = os.path.basename(u)
        # A template is checked through an instance, as it would run.
        names.append(name.replace("@.", f"@{INSTANCE_EXAMPLE}.") if "@." in name else name)
    assert "steadyfs@srv-healtharchive-jobs.service" in names
    env = dict(os.environ, MANPATH=tree + PREFIX + "/share/man")
    for name in names:
        p = subprocess.run(["systemd-analyze", "verify", f"--root={tree}",
                            f"{UNITDIR}/{name}"], capture_output=True,
                           text=True, timeout=60, env=env)
        assert p.returncode == 0 and not p.stderr.strip() and not p.stdout.strip(), \
            f"{name}: rc {p.returncode}\n{p.stdout}{p.stderr}"


def test_verify_catches_a_broken_unit(verify_tree):
    """The check above is not vacuous: an unknown key and a missing
    program are both reported."""
    tree = verify_tree
    broken = tree + UNITDIR + "/steadyfs-broken.service"
    with open(broken, "w") as f:
        f.write("[Service]\nType=oneshot\nBogusKey=1\n"
                f"ExecStart={PREFIX}/sbin/steadyfs-nothere\n")
    try:
        p = subprocess.run(["systemd-analyze", "verify", f"--root={tree}",
                            f"{UNITDIR}/steadyfs-broken.service"],
                           capture_output=True, text=True, timeout=60)
    finally:
        os.unlink(broken)
    assert "BogusKey" in p.stderr and "steadyfs-nothere" in p.stderr, p


# ---- man pages -----------------------------------------------------------

def _render(page, width=80, warnings=True):
    env = dict(os.environ, MANWIDTH=str(width), MAN_KEEP_FORMATTING="0")
    args = ["man"] + (["--warnings"] if warnings else []) + ["-l", page]
    return subprocess.run(args, capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.parametrize("page", sorted(MAN_OF.values()))
def test_man_page_renders_without_warnings(page):
    p = _render(os.path.join(REPO, page))
    assert p.returncode == 0 and p.stderr == "", p.stderr


def help_options(prog):
    """Options a program's --help names: long flags, short flags and, for
    steadyfs, every -o name."""
    out = subprocess.run([os.path.join(BUILD, prog), "--help"], capture_output=True,
                         text=True, timeout=10).stdout
    opts = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", out))
    opts |= set(re.findall(r"(?<![\w-])(-[a-zA-Z])\b", out))
    opts |= {"-o " + n for n in re.findall(r"-o ([A-Za-z_]+)", out)}
    opts |= {"-o " + n for n in re.findall(r",\s*([a-z_]+)=", out)}
    return opts


@pytest.mark.parametrize("prog", sorted(MAN_OF))
def test_man_page_names_every_option(prog):
    text = re.sub(r".\x08", "", _render(os.path.join(REPO, MAN_OF[prog]), 200,
                                        warnings=False).stdout)
    opts = help_options(prog)
    assert len(opts) >= 5, opts
    missing = []
    for o in sorted(opts):
        if o.startswith("-o "):
            # An -o option is documented as "name=value" or as the bare flag.
            if not re.search(rf"(?<![\w-]){re.escape(o[3:])}(=|\b)", text):
                missing.append(o)
        elif not re.search(rf"(?<![\w-]){re.escape(o)}\b", text):
            missing.append(o)
    assert not missing, f"{MAN_OF[prog]} does not mention {missing}"


def test_installed_man_pages_are_found_by_name(tree):
    for prog, page in MAN_OF.items():
        p = subprocess.run(["man", "-M", tree + PREFIX + "/share/man", "-w",
                            prog], capture_output=True, text=True, timeout=30)
        assert p.returncode == 0 and p.stdout.strip().endswith(
            os.path.basename(page)), p


# ---- the units' commands, run directly -----------------------------------

def _daemon_problems(text):
    return [line for line in text.splitlines()
            if mounts.SANITIZER_LINE.search(line) or mounts.ERROR_LINE.search(line)]


class NotifySocket:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)

    def wait_for(self, word, deadline, alive):
        """The first datagram holding `word` (e.g. READY=1), or None when
        the deadline passes or `alive()` turns false."""
        while time.monotonic() < deadline and alive():
            self.sock.settimeout(max(0.05, min(0.2, deadline - time.monotonic())))
            try:
                msg = self.sock.recv(4096).decode(errors="replace")
            except socket.timeout:
                continue
            if word in msg.split("\n"):
                return msg
        return None

    def close(self):
        self.sock.close()
        if os.path.exists(self.path):
            os.unlink(self.path)


class UnitRun:
    """steadyfs@INSTANCE's ExecStartPre/ExecStart as a child of the test
    (like systemd's main process) and its ExecStop on demand."""

    def __init__(self, tree, unit, instance, conf, workdir):
        self.tree, self.unit = tree, unit
        self.spec = specifiers(instance)
        self.mountpoint = self.spec["f"]
        self.env = {}
        for v in unit_values(unit, "Environment"):
            k, _, val = v.partition("=")
            self.env[k] = val
        self.env.update(read_environment_file(conf))
        self.stderr_path = os.path.join(workdir, f"unit-{instance[-20:]}.stderr")
        self.notify = NotifySocket(os.path.join(workdir, "notify"))
        self.proc = None

    def argv(self, key, env=None):
        """The unit's KEY lines expanded; systemd also substitutes
        $MAINPID itself in ExecStop lines, hence `env`."""
        return [(in_tree(self.tree, a), ign) for a, ign in
                (expand_command(v, self.spec, env or self.env)
                 for v in unit_values(self.unit, key))]

    def base_env(self):
        return dict(self.env, PATH=SYSTEMD_PATH, HOME="/root")

    def start(self, timeout=15):
        for argv, ignore in self.argv("ExecStartPre"):
            p = subprocess.run(argv, timeout=10, env=self.base_env())
            assert ignore or p.returncode == 0, argv
        (argv, _), = self.argv("ExecStart")
        assert "-f" in argv and self.mountpoint in argv, argv
        env = dict(self.base_env(), NOTIFY_SOCKET=self.notify.path)
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(sshdfix.ORPHAN_GUARD + argv, env=env,
                                         stdin=subprocess.DEVNULL, stdout=err,
                                         stderr=err, start_new_session=True)
        msg = self.notify.wait_for("READY=1", time.monotonic() + timeout,
                                   lambda: self.proc.poll() is None)
        assert msg, f"no READY=1; exit {self.proc.poll()}\n{self.stderr()}"
        # Type=notify: ready means mounted.
        assert self.is_mounted(), f"READY=1 before the mount is up\n{msg}"
        return msg

    def stop(self):
        """ExecStop with MAINPID, as systemd runs it; returns its seconds
        and stderr. Each line runs until one fails (a '-' line may). The
        daemon is reaped meanwhile, as systemd reaps its main process: a
        zombie would still count as running for `tail --pid`."""
        t0 = time.monotonic()
        errs = ""
        env = dict(self.base_env(), MAINPID=str(self.proc.pid))
        for argv, ignore in self.argv("ExecStop", env):
            p = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
            deadline = time.monotonic() + STOP_BOUND + 10
            while p.poll() is None and time.monotonic() < deadline:
                self.proc.poll()
                time.sleep(0.05)
            if p.poll() is None:
                p.kill()
            errs += p.communicate(timeout=10)[1]
            if p.returncode != 0 and not ignore:
                break
        return time.monotonic() - t0, errs

    def is_mounted(self):
        return any(m["fstype"] == "fuse.steadyfs"
                   for m in mounts.mounts_at(self.mountpoint))

    def stderr(self):
        try:
            with open(self.stderr_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def cleanup(self):
        if self.is_mounted():
            subprocess.run(["fusermount3", "-u", "-z", self.mountpoint], timeout=10,
                           stderr=subprocess.DEVNULL)
        if self.proc is not None and self.proc.poll() is None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                self.proc.send_signal(sig)
                try:
                    self.proc.wait(timeout=STOP_BOUND)
                    break
                except subprocess.TimeoutExpired:
                    pass
        self.notify.close()
        remove_mirror(self.mountpoint)


def remove_mirror(mountpoint):
    """Remove the /run/steadyfs mirror a test mount left, as mounts.Mount's
    cleanup does for mounts it made."""
    mounts.Mount("steadyfs", [], mountpoint, os.devnull, None).remove_mirror()


@pytest.fixture
def unit_run(tree, sshd, remote_subdir, tmp_path):
    """steadyfs@ for a mountpoint under tmp_path, with a config file in
    the documented format pointing at the test sshd."""
    if not mounts.fuse_available():
        pytest.skip("/dev/fuse is missing")
    mnt = tmp_path / "mnt"
    instance = subprocess.run(["systemd-escape", "--path", str(mnt)],
                              capture_output=True, text=True, check=True,
                              timeout=10).stdout.strip()
    conf = tmp_path / f"{instance}.conf"
    conf.write_text(
        "# /etc/steadyfs/%s.conf\n"
        f"SOURCE={sshd.user}@{sshd.host}:{os.path.join(sshd.remote_dir, remote_subdir)}\n"
        f"OPTIONS=port={sshd.port},IdentityFile={sshd.key},"
        f"UserKnownHostsFile={sshd.known_hosts},allow_other,"
        f"op_timeout={OP_TIMEOUT},connections=2\n" % instance)
    run = UnitRun(tree, tree + UNITDIR + "/steadyfs@.service", instance,
                  str(conf), str(tmp_path))
    yield run
    run.cleanup()
    assert not run.is_mounted()
    assert not _daemon_problems(run.stderr()), run.stderr()


@pytest.mark.timeout(90)
def test_steadyfs_unit_start_ready_stop(unit_run, sshd, remote_subdir):
    assert not os.path.exists(unit_run.mountpoint)  # ExecStartPre makes it
    msg = unit_run.start()
    assert "STATUS=mounted " + unit_run.mountpoint in msg
    data = os.urandom(300000)
    with open(os.path.join(unit_run.mountpoint, "f.bin"), "wb") as f:
        f.write(data)
    elapsed, errs = unit_run.stop()
    assert unit_run.proc.poll() == 0, f"ExecStop returned with the daemon alive\n{errs}"
    assert not unit_run.is_mounted()
    assert elapsed < STOP_BOUND, elapsed
    assert "busy" not in errs, errs
    with open(os.path.join(sshd.remote_dir, remote_subdir, "f.bin"), "rb") as f:
        assert f.read() == data


@pytest.mark.timeout(90)
def test_steadyfs_unit_stop_with_a_file_open(unit_run, sshd, remote_subdir):
    """A writer still holds a file: the plain unmount is refused, the daemon
    gets SIGTERM, detaches the mount, sends what was written and exits, and
    ExecStop returns only then."""
    unit_run.start()
    data = os.urandom(200000)
    fd = os.open(os.path.join(unit_run.mountpoint, "open.bin"),
                 os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        elapsed, errs = unit_run.stop()
        assert "busy" in errs, errs
        assert unit_run.proc.poll() is not None, "ExecStop returned with the daemon alive"
        assert not unit_run.is_mounted()
        assert elapsed < STOP_BOUND, elapsed
    finally:
        try:
            os.close(fd)
        except OSError:
            pass  # the daemon is gone: ENOTCONN is the honest answer
    with open(os.path.join(sshd.remote_dir, remote_subdir, "open.bin"), "rb") as f:
        assert f.read() == data
    # A stop asked for with SIGTERM is a clean exit: systemd would mark the
    # unit failed on any other status. libfuse's loop returns the signal
    # number, which steadyfs must not turn into exit 3.
    assert unit_run.proc.returncode == 0, unit_run.stderr()


def test_steadyfs_unit_stop_after_the_daemon_left(unit_run):
    """An operator's own umount ends the daemon; the stop that follows
    (systemd runs ExecStop then too) must succeed quietly."""
    unit_run.start()
    subprocess.run(["umount", unit_run.mountpoint], check=True, timeout=10)
    unit_run.proc.wait(timeout=STOP_BOUND)
    assert unit_run.proc.returncode == 0
    env = dict(unit_run.base_env(), MAINPID="")
    for argv, _ in unit_run.argv("ExecStop", env):
        r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=10)
        assert r.returncode == 0 and not r.stderr, r


def _swap_paths(argv, swaps):
    out = []
    for a in argv:
        for old, new in swaps.items():
            a = a.replace(old, new)
        out.append(a)
    return out


def test_probe_service_command(tree, tmp_path):
    unit = tree + UNITDIR + "/steadyfs-probe.service"
    (argv, _), = [expand_command(v, {}, {}) for v in unit_values(unit, "ExecStart")]
    root = tmp_path / "jobs"
    root.mkdir()
    prom_dir = tmp_path / "textfiles"
    prom_dir.mkdir()
    argv = _swap_paths(in_tree(tree, argv), {
        "/srv/healtharchive/jobs": str(root),
        "/var/lib/prometheus/node-exporter": str(prom_dir)})
    argv += ["--state-dir", str(tmp_path / "probe-state")]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    ok = {0} | {int(x) for v in unit_values(unit, "SuccessExitStatus") for x in v.split()}
    assert p.returncode in ok, p
    prom = prom_dir / "steadyfs_probe.prom"
    assert "steadyfs_probe_last_run_timestamp_seconds" in prom.read_text()
    if shutil.which("promtool"):
        c = subprocess.run(["promtool", "check", "metrics"], input=prom.read_text(),
                           capture_output=True, text=True, timeout=30)
        assert c.returncode == 0, c


def test_recover_service_command(tree, tmp_path):
    """The recover service's command line, on a harmless empty root with an
    empty manifest and no sentinel: it parses, runs a pass and reports."""
    unit = tree + UNITDIR + "/steadyfs-recover.service"
    (argv, _), = [expand_command(v, {}, {}) for v in unit_values(unit, "ExecStart")]
    assert "--apply" in argv
    root = tmp_path / "jobs"
    root.mkdir()
    manifest = tmp_path / "jobs.fstab"
    manifest.write_text("# nothing under the root\n")
    prom_dir = tmp_path / "textfiles"
    prom_dir.mkdir()
    argv = _swap_paths(in_tree(tree, argv), {
        "/srv/healtharchive/jobs": str(root),
        "/etc/steadyfs/jobs.fstab": str(manifest),
        "/var/lib/prometheus/node-exporter": str(prom_dir)})
    argv += ["--state-dir", str(tmp_path / "recover-state"),
             "--sentinel", str(tmp_path / "recover.enabled")]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, PATH=SYSTEMD_PATH))
    ok = {0} | {int(x) for v in unit_values(unit, "SuccessExitStatus") for x in v.split()}
    assert p.returncode in ok, p
    text = (prom_dir / "steadyfs_recover.prom").read_text()
    assert "steadyfs_recover_last_run_timestamp_seconds" in text


# ---- fstab through mount(8), installed in /usr/local -----------------------

def _proc_argv(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0")[:-1]]
    except OSError:
        return []


def daemon_pids(mountpoint):
    """Pids of steadyfs processes whose argv names `mountpoint` exactly."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            argv = _proc_argv(int(name))
            if argv and os.path.basename(argv[0]) == "steadyfs" and mountpoint in argv[1:]:
                out.append(int(name))
    return out


def _pid_gone(pid):
    return sshdfix.proc_state(pid) in (None, "Z")


def _wait_gone(pids, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(_pid_gone(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def take_install_lock(timeout):
    """The lock that serialises real installs (this /usr/local one and
    test_deb.py's package) between concurrent test runs: an open file,
    closed to release it; None when not had within `timeout` s."""
    lock = open(INSTALL_LOCK, "w")
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return lock
        except BlockingIOError:
            if time.monotonic() > deadline:
                lock.close()
                return None
            time.sleep(0.2)


@pytest.fixture
def real_install():
    """`make install` into PREFIX=/usr/local on the real root, removed
    with `make uninstall` afterwards (and the folders it created). Skips
    when another install is there that this test did not make."""
    lock = take_install_lock(60)
    if lock is None:
        pytest.skip("another test run holds the /usr/local install")
    want = expected_files()
    present = [p for p in want if os.path.lexists(p)]
    if present and not os.path.exists(INSTALL_MARKER):
        lock.close()
        pytest.skip(f"steadyfs is already installed ({present[0]}); not touching it")
    if present:
        make("uninstall", f"PREFIX={PREFIX}")  # left by a crashed run of ours
    made_dirs = set()
    for d in {os.path.dirname(p) for p in want}:
        while not os.path.isdir(d):
            made_dirs.add(d)
            d = os.path.dirname(d)
    open(INSTALL_MARKER, "w").close()
    try:
        make("install", f"PREFIX={PREFIX}")
        yield want
    finally:
        make("uninstall", f"PREFIX={PREFIX}")
        left = [p for p in want if os.path.lexists(p)]
        for d in sorted(made_dirs, key=len, reverse=True):
            try:
                os.rmdir(d)
            except OSError:
                pass
        os.unlink(INSTALL_MARKER)
        lock.close()
        assert not left, f"make uninstall left {left}"


@pytest.mark.timeout(90)
def test_fstab_line_mounts_with_mount(real_install, sshd, remote_subdir, tmp_path):
    if not mounts.fuse_available():
        pytest.skip("/dev/fuse is missing")
    for p, mode in real_install.items():
        assert os.path.exists(p), p
    mnt = str(tmp_path / "jobs")
    os.makedirs(mnt)
    remote = os.path.join(sshd.remote_dir, remote_subdir)
    fstab = tmp_path / "fstab"
    fstab.write_text(
        "# the test's own fstab, never /etc/fstab\n"
        f"{sshd.user}@{sshd.host}:{remote} {mnt} fuse.steadyfs "
        f"_netdev,port={sshd.port},IdentityFile={sshd.key},"
        f"UserKnownHostsFile={sshd.known_hosts},allow_other,op_timeout={OP_TIMEOUT} 0 0\n")
    pids = []
    try:
        p = subprocess.run(["mount", "-T", str(fstab), mnt], capture_output=True,
                           text=True, timeout=30, stdin=subprocess.DEVNULL)
        assert p.returncode == 0, p
        found = [m for m in mounts.mounts_at(mnt) if m["fstype"] == "fuse.steadyfs"]
        assert found and found[-1]["source"] == f"{sshd.user}@{sshd.host}:{remote}", found
        pids = daemon_pids(mnt)
        # The keeper and the daemon, its child.
        assert len(pids) == 2, pids
        keeper = [p for p in pids if sshdfix._ppid(p) not in pids]
        assert len(keeper) == 1, pids
        # mount.fuse3 found the installed program on its fixed PATH, and
        # it went to the background (mount returned, the daemon serves).
        for pid in pids:
            assert os.readlink(f"/proc/{pid}/exe") == f"{PREFIX}/bin/steadyfs"
        assert sshdfix._ppid(keeper[0]) != os.getpid()
        with open(os.path.join(mnt, "via-fstab"), "w") as f:
            f.write("hello\n")
        with open(os.path.join(remote, "via-fstab")) as f:
            assert f.read() == "hello\n"
        r = subprocess.run(["umount", mnt], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r
        assert _wait_gone(pids, STOP_BOUND), f"steadyfs {pids} still running after umount"
    finally:
        if any(m["fstype"] == "fuse.steadyfs" for m in mounts.mounts_at(mnt)):
            subprocess.run(["umount", "-l", mnt], timeout=10, stderr=subprocess.DEVNULL)
        for pid in pids + daemon_pids(mnt):
            for sig in (signal.SIGTERM, signal.SIGKILL):
                if _pid_gone(pid):
                    break
                os.kill(pid, sig)
                _wait_gone([pid], STOP_BOUND)
        remove_mirror(mnt)


# ---- operator docs ---------------------------------------------------------

OPERATOR_DOCS = ["docs/runbook.md", "docs/migration.md", "docs/fstab.md"]
# Options mount(8) and systemd pass, which steadyfs accepts and ignores.
GENERIC_OPTS = {"_netdev", "nofail", "noauto", "auto", "defaults", "rw", "ro"}


def _doc(path):
    with open(os.path.join(REPO, path)) as f:
        return f.read()


def test_runbook_covers_every_alert():
    alerts = set()
    for rules in repo_glob("docs/alerts/*.yml"):
        if not rules.endswith(".test.yml"):
            with open(rules) as f:
                alerts |= set(re.findall(r"^\s*- alert:\s*(\w+)", f.read(), re.M))
    assert alerts
    headings = set(re.findall(r"^### (\w+)", _doc("docs/runbook.md"), re.M))
    assert not alerts - headings, f"alerts without a runbook section: {alerts - headings}"


@pytest.mark.parametrize("prog", ["steadyfs-probe", "steadyfs-recover"])
def test_docs_use_only_existing_tool_options(prog):
    known = help_options(prog)
    used = set()
    for doc in OPERATOR_DOCS:
        # A command may continue on the next lines with a backslash.
        text = _doc(doc).replace("\\\n", " ")
        for line in text.splitlines():
            if prog + " " in line:
                tail = line.split(prog + " ", 1)[1]
                used |= set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", tail))
    assert used, f"the docs never run {prog}"
    assert not used - known, f"{sorted(used - known)} are not options of {prog}"


def test_docs_mount_options_exist():
    """Every option in the docs' fstab lines and OPTIONS= settings, and in
    the unit's header, is one steadyfs knows."""
    known = {o[3:] for o in help_options("steadyfs") if o.startswith("-o ")}
    texts = [_doc(d) for d in OPERATOR_DOCS] + [_doc("docs/systemd/steadyfs@.service")]
    lists = []
    for t in texts:
        lists += re.findall(r"fuse\.steadyfs\s+(\S+,\S+)", t)
        lists += re.findall(r"OPTIONS=(\S+)", t)
    assert len(lists) >= 4, lists
    unknown = set()
    for lst in lists:
        for item in lst.split(","):
            name = item.split("=", 1)[0]
            if name not in known and name not in GENERIC_OPTS \
                    and not name.startswith("x-systemd."):
                unknown.add(name)
    assert not unknown, f"options in the docs that steadyfs does not list: {unknown}"
