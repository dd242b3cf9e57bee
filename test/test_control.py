"""The `.control/` directory and its on-disk mirror (issue 4), on real
mounts: each file's format and fields; the directory's permissions; the
counters following real reads and writes; the state going connected ->
down -> connected during a blackhole made by the fault proxy, visible in
every file, in the mirror and in the metrics textfile, while `.control/status`
keeps answering in milliseconds and the mirror keeps being rewritten with
calls stuck on the network; the EIO of a call that could not reach the
server as an `events` line; `promtool check metrics`; a real
prometheus-node-exporter scraping the textfile; a remote entry named
`.control` shadowed; the last mirror saying "down" after unmount.

The mirror lives at /run/steadyfs/<systemd-escape --path MOUNTPOINT> (or
there as a symlink to state_dir=); the `mirrors` fixture removes what a
test's mounts left there.
"""

import errno
import json
import os
import pwd
import tempfile
import stat
import re
import shutil
import subprocess
import time
import urllib.request

import pytest

import mounts
import sshdfix
from workloads import MOUNT_OPTS, OP_TIMEOUT, RECOVERY_BOUND

pytestmark = pytest.mark.skipif(not mounts.fuse_available(),
                                reason="/dev/fuse is missing")

FILES = ["status", "status.json", "metrics", "events", "connections"]
def children_of(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(x) for x in f.read().split()]


STATUS_KEYS = ["state", "since", "sessions", "reconnect_attempts", "reconnects",
               "calls_inflight", "oldest_call_age", "unacked_bytes",
               "oldest_unacked_age", "missing_extensions", "last_error",
               "last_session_error", "data_replayed_bytes", "data_lost_bytes",
               "remote_names_skipped", "readahead_hits", "readahead_misses",
               "remote", "mountpoint", "state_dir", "mirror_error", "version", "uptime", "pid", "daemon", "running", "updated"]
JSON_KEYS = ["state", "since", "updated", "pid", "mountpoint", "sessions_up",
             "sessions_total", "reconnect_attempts", "reconnects",
             "calls_inflight", "oldest_call_age", "unacked_bytes",
             "oldest_unacked_age", "missing_extensions", "last_error",
             "remote", "version", "uptime", "daemon_pid", "keeper_pid",
             "generation", "restarts", "last_restart_reason"]
EVENT_TYPES = {"state", "session", "error", "data", "shadowed", "restart",
               "invalid_state"}
CONN_LINE = re.compile(r"^id=\d+ state=(up|down|connecting) since=\S+Z "
                       r"inflight=\d+ last_rtt=\d+\.\d{6} reconnects=\d+ attempts=\d+$")
PROMTOOL = "/usr/bin/promtool"
NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
# Liveness at MOUNT_OPTS scale: 1 s x 2, plus the mirror period and slack.
DOWN_WITHIN = 2 + 2 + 3
STATUS_READ_BOUND = 0.5   # seconds for one read of .control/status


# ---- helpers -----------------------------------------------------------------

def default_mirror(mountpoint):
    out = subprocess.run(["systemd-escape", "--path", mountpoint], check=True,
                         capture_output=True, text=True).stdout.strip()
    return os.path.join("/run/steadyfs", out)


@pytest.fixture
def mirrors():
    """Collects mirror paths a test made; removes them after its mounts
    are gone (this fixture is requested first, so it is torn down last)."""
    made = []
    yield made
    for p in made:
        if os.path.islink(p) or os.path.isfile(p):
            os.unlink(p)
        elif os.path.isdir(p):
            shutil.rmtree(p, ignore_errors=True)


def read(m, name):
    with open(m.path(".control", name)) as f:
        return f.read()


def parse_status(text):
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(": ")
        assert sep, f"not a 'key: value' line: {line!r}"
        out[key] = value
    return out


LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def series_key(series):
    """`name{mountpoint="m",b="2",a="1"}` as `name{a="1",b="2"}`, and the
    mountpoint ("" if none): label order is free in the format
    (node_exporter may reorder), and every steadyfs series has the
    mountpoint label."""
    name, brace, rest = series.partition("{")
    if not brace:
        return series, ""
    labels = dict(LABEL.findall(rest))
    mp = labels.pop("mountpoint", "")
    if not labels:
        return name, mp
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}", mp


def parse_metrics(text, mountpoint=None):
    """{series without the mountpoint label, labels sorted: value} for every
    sample line; with `mountpoint`, only steadyfs series of that mount (and
    every steadyfs series must have one)."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            key, mp = series_key(series)
            if series.startswith("steadyfs_"):
                assert mp, f"no mountpoint label: {line}"
                if mountpoint is not None and mp != mountpoint:
                    continue
            out[key] = float(value)
    return out


def parse_events(text):
    return [json.loads(line) for line in text.splitlines()]


def poll(fn, timeout, what, step=0.05):
    """Calls fn until it returns a true value; fails after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(step)


def state_of(m):
    return parse_status(read(m, "status"))["state"]


def mirror_json(d):
    try:
        with open(os.path.join(d, "status.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


# ---- files and formats ---------------------------------------------------------

@pytest.mark.timeout(60)
def test_files_formats_permissions_and_last_mirror(mirrors, sshd, remote_subdir,
                                                   mount_steadyfs):
    m = mount_steadyfs(sshd, remote_subdir=remote_subdir, opts={"connections": 2})
    mirror = default_mirror(m.mountpoint)
    mirrors.append(mirror)
    poll(lambda: state_of(m) == "connected", 10, "state connected")

    assert sorted(os.listdir(m.path(".control"))) == sorted(FILES)
    assert ".control" in os.listdir(m.mountpoint)

    st = parse_status(read(m, "status"))
    assert list(st) == STATUS_KEYS
    assert st["sessions"] == "2/2"
    assert st["remote"] == f"{sshd.user}@{sshd.host}:{sshd.port}:" + \
        os.path.join(sshd.remote_dir, remote_subdir)
    assert st["mountpoint"] == m.mountpoint
    assert st["state_dir"] == mirror
    # The test started the keeper; the daemon serving is its child.
    assert int(st["pid"]) in children_of(m.pid)
    assert re.fullmatch(r"generation 1, restarts 0, last restart: none, keeper pid %d" % m.pid,
                        st["daemon"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \(\d+\.\d{3}\)", st["since"])
    assert st["last_error"] == "none" and st["running"] == "yes"

    js = json.loads(read(m, "status.json"))
    for k in JSON_KEYS:
        assert k in js, k
    assert js["state"] == "connected" and js["keeper_pid"] == m.pid
    assert js["pid"] == js["daemon_pid"] and js["pid"] in children_of(m.pid)
    assert js["generation"] == 1 and js["restarts"] == 0
    assert js["last_restart_reason"] == ""
    assert js["mountpoint"] == m.mountpoint
    assert abs(js["updated"] - time.time()) < 5
    assert js["sessions_up"] == js["sessions_total"] == 2

    conns = read(m, "connections").splitlines()
    assert len(conns) == 2
    for line in conns:
        assert CONN_LINE.match(line), line
        assert " state=up " in line

    events = parse_events(read(m, "events"))
    assert events, "connecting should have left events"
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    for e in events:
        assert e["type"] in EVENT_TYPES and re.fullmatch(r".*T.*\.\d{3}Z", e["time"])
    assert events[-1]["type"] == "state" and events[-1]["to"] == "connected"

    metrics = parse_metrics(read(m, "metrics"), m.mountpoint)
    assert metrics['steadyfs_state{state="connected"}'] == 1
    assert metrics['steadyfs_state{state="down"}'] == 0
    assert metrics["steadyfs_sessions_up"] == 2
    assert metrics['steadyfs_session_up{session="1"}'] == 1

    # Read-only, the daemon's user's alone (issue 15), and the name
    # cannot be changed.
    s = os.stat(m.path(".control", "status"))
    assert s.st_mode & 0o7777 == 0o400 and s.st_uid == os.getuid()
    assert os.stat(m.path(".control")).st_mode & 0o7777 == 0o500
    for fn in (lambda: open(m.path(".control", "status"), "w"),
               lambda: open(m.path(".control", "new"), "w"),
               lambda: os.unlink(m.path(".control", "status")),
               lambda: os.mkdir(m.path(".control", "d")),
               lambda: os.rename(m.path(".control"), m.path("moved")),
               lambda: os.rmdir(m.path(".control")),
               lambda: os.mkdir(m.path(".control"))):
        with pytest.raises(OSError) as ei:
            fn()
        assert ei.value.errno in (errno.EACCES, errno.EPERM, errno.EEXIST,
                                  errno.EROFS), ei.value

    # The mirror at the default path, then its last word on unmount.
    assert os.stat(mirror).st_mode & 0o7777 == 0o700
    for name in FILES:
        assert os.stat(os.path.join(mirror, name)).st_mode & 0o7777 == 0o600
    poll(lambda: (mirror_json(mirror) or {}).get("state") == "connected", 2,
         "mirror says connected")
    keeper = m.pid
    m.cleanup()
    last = mirror_json(mirror)
    assert last["state"] == "down" and last["running"] is False
    assert last["keeper_pid"] == keeper and last["pid"] != keeper


@pytest.mark.timeout(60)
def test_counters_follow_activity(mirrors, sshd, remote_subdir, mount_steadyfs):
    m = mount_steadyfs(sshd, remote_subdir=remote_subdir)
    mirrors.append(default_mirror(m.mountpoint))
    before = parse_metrics(read(m, "metrics"))
    data = os.urandom(3 * 1024 * 1024)
    with open(m.path("blob"), "wb") as f:
        f.write(data)
        os.fsync(f.fileno())
    with open(m.path("blob"), "rb") as f:
        assert f.read() == data
    with pytest.raises(FileNotFoundError):
        os.stat(m.path("no-such-file"))

    def settled():
        mt = parse_metrics(read(m, "metrics"))
        return mt if mt["steadyfs_written_bytes_total"] >= len(data) else None
    mt = poll(settled, 10, "written bytes counted")
    assert mt["steadyfs_read_bytes_total"] - before["steadyfs_read_bytes_total"] >= len(data)
    fsyncs = mt['steadyfs_calls_total{op="fsync"}']
    assert fsyncs >= 1
    assert mt['steadyfs_call_duration_seconds_count{op="fsync"}'] == fsyncs
    assert mt['steadyfs_call_duration_seconds_bucket{le="+Inf",op="fsync"}'] == fsyncs
    assert mt['steadyfs_call_duration_seconds_sum{op="fsync"}'] > 0
    assert mt['steadyfs_errors_total{errno="ENOENT",op="lookup"}'] >= 1
    assert mt["steadyfs_unacked_write_bytes"] == 0
    assert mt["steadyfs_last_success_timestamp_seconds"] > time.time() - 10
    js = json.loads(read(m, "status.json"))
    assert js["unacked_bytes"] == 0 and js["last_error"] is None


@pytest.mark.timeout(60)
def test_write_calls_counted(mirrors, sshd, remote_subdir, mount_steadyfs):
    m = mount_steadyfs(sshd, remote_subdir=remote_subdir)
    mirrors.append(default_mirror(m.mountpoint))
    with open(m.path("small"), "wb") as f:
        for _ in range(10):
            f.write(b"x" * 1000)
            f.flush()
    mt = parse_metrics(read(m, "metrics"))
    assert mt['steadyfs_calls_total{op="write"}'] >= 10
    assert mt['steadyfs_call_duration_seconds_count{op="write"}'] >= 10


def test_listing_carries_attributes(mirrors, sshd, remote_subdir, mount_steadyfs):
    """A listing hands the kernel its entries' attributes (readdirplus):
    the lstat() of every entry right after it sends (almost) no LOOKUP,
    and each lstat still sees the server's size and mode."""
    m = mount_steadyfs(sshd, remote_subdir=remote_subdir)
    mirrors.append(default_mirror(m.mountpoint))
    srv = os.path.join(sshd.remote_dir, remote_subdir, "many")
    os.mkdir(srv)
    n = 300
    for i in range(n):
        with open(os.path.join(srv, f"e{i}"), "wb") as f:
            f.write(b"x" * i)
        os.chmod(os.path.join(srv, f"e{i}"), 0o600 if i % 2 else 0o644)

    def lookups():
        return parse_metrics(read(m, "metrics")).get('steadyfs_calls_total{op="lookup"}', 0)
    os.stat(m.path("many"))
    before = lookups()
    names = os.listdir(m.path("many"))
    for name in names:
        st = os.lstat(m.path("many", name))
        i = int(name[1:])
        assert st.st_size == i and stat.S_IMODE(st.st_mode) == (0o600 if i % 2 else 0o644)
    assert len(names) == n
    sent = lookups() - before
    assert sent <= n // 10, f"{sent} LOOKUPs for {n} entries just listed"


# ---- an outage ------------------------------------------------------------------

@pytest.mark.timeout(120)
def test_blackhole_down_and_back(mirrors, sshd, remote_subdir, fault_proxy,
                                 mount_steadyfs, tmp_path):
    proxy = fault_proxy(sshd)
    state_dir = str(tmp_path / "state")
    tfdir = tmp_path / "textfile"
    tfdir.mkdir()
    textfile = str(tfdir / "steadyfs.prom")
    opts = dict(MOUNT_OPTS, state_dir=state_dir, metrics_textfile=textfile)
    m = mount_steadyfs(sshd, remote_subdir=remote_subdir, opts=opts,
                       port=proxy.port, expect_errors=True)
    default = default_mirror(m.mountpoint)
    mirrors.append(default)
    assert os.readlink(default) == state_dir
    poll(lambda: state_of(m) == "connected", 10, "state connected")
    poll(lambda: os.path.exists(textfile), 5, "metrics textfile written")

    proxy.blackhole()
    t_fault = time.time()
    stuck = None
    try:
        # .control/status answers at once all the way down.
        slowest = 0.0

        def down():
            nonlocal slowest
            r = mounts.call_in_child("read", m.path(".control", "status"), timeout=5)
            assert r["status"] == "ok", r
            slowest = max(slowest, r["elapsed"])
            return state_of(m) == "down"
        poll(down, DOWN_WITHIN, "state down during the blackhole", step=0.1)

        # A call stuck on the network (it ends in EIO after op_timeout),
        # and a mirror rewritten while it waits.
        t_stuck = time.time()
        stuck = subprocess.Popen(
            ["/usr/bin/python3", "-c",
             "import os,sys\ntry: os.stat(sys.argv[1]); print(0)\n"
             "except OSError as e: print(e.errno)", m.path("uncached-eio")],
            stdout=subprocess.PIPE, text=True)
        busy = poll(lambda: (lambda j: j if j and j["calls_inflight"] >= 1
                             and j["updated"] > t_stuck else None)(mirror_json(state_dir)),
                    OP_TIMEOUT, "mirror rewritten while a call is stuck")
        assert busy["state"] == "down" and busy["sessions_up"] == 0
        assert busy["oldest_call_age"] > 0
        assert mirror_json(default)["state"] == "down"   # through the symlink
        poll(lambda: parse_metrics(open(textfile).read(), m.mountpoint)
             ['steadyfs_state{state="down"}'] == 1, 5, "textfile says down")
        for _ in range(5):
            r = mounts.call_in_child("read", m.path(".control", "status"), timeout=5)
            assert r["status"] == "ok", r
            slowest = max(slowest, r["elapsed"])
        out, _ = stuck.communicate(timeout=OP_TIMEOUT + 5)
        assert int(out) == errno.EIO, out
        stuck = None
    finally:
        proxy.restore()
        if stuck is not None:
            stuck.kill()
            stuck.wait(timeout=10)

    poll(lambda: state_of(m) == "connected", RECOVERY_BOUND + 5,
         "state connected after the blackhole", step=0.1)
    events = parse_events(read(m, "events"))
    mine = [e for e in events if e["epoch"] >= t_fault - 0.5]
    states = [(e["from"], e["to"]) for e in mine if e["type"] == "state"]
    # The last sessions of the mount itself may come up just before the
    # fault (slow builds): the outage starts at the first step down.
    while states and states[0][1] == "connected":
        states.pop(0)
    assert states and states[0][1] in ("degraded", "down") and \
        states[-1][1] == "connected", states
    assert any(to == "down" for _, to in states), states
    assert any(e["type"] == "session" and e["event"] == "reconnect" for e in mine)
    eio = [e for e in mine if e["type"] == "error" and e["path"].endswith("uncached-eio")]
    assert eio, mine
    assert eio[0]["errno"] == errno.EIO and eio[0]["errno_name"] == "EIO"
    assert eio[0]["cause"] == "transport"

    st = parse_status(read(m, "status"))
    assert "uncached-eio" in st["last_error"] and "cause transport" in st["last_error"]
    assert int(st["reconnects"]) >= 1 and st["sessions"] == "2/2"
    mt = parse_metrics(read(m, "metrics"))
    assert mt["steadyfs_reconnects_total"] >= 1
    assert sum(v for k, v in mt.items() if k.startswith("steadyfs_errors_total")
               and 'errno="EIO"' in k) >= 1
    poll(lambda: (mirror_json(state_dir) or {}).get("state") == "connected", 5,
         "mirror connected again")
    print(f"\nslowest .control/status read during the blackhole: {slowest * 1000:.1f} ms")
    assert slowest < STATUS_READ_BOUND


# ---- Prometheus -------------------------------------------------------------------

@pytest.mark.timeout(60)
@pytest.mark.skipif(not os.access(PROMTOOL, os.X_OK), reason="promtool is missing")
@pytest.mark.skipif(not os.access(NODE_EXPORTER, os.X_OK),
                    reason="prometheus-node-exporter is missing")
def test_promtool_and_node_exporter(mirrors, sshd, remote_subdir, mount_steadyfs,
                                    tmp_path):
    tfdir = tmp_path / "textfile"
    tfdir.mkdir()
    textfile = tfdir / "steadyfs.prom"
    m = mount_steadyfs(sshd, remote_subdir=remote_subdir,
                       opts={"metrics_textfile": str(textfile)})
    mirrors.append(default_mirror(m.mountpoint))
    assert not os.path.exists(m.path("nothing-here"))
    poll(lambda: state_of(m) == "connected", 10, "state connected")
    text = read(m, "metrics")
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, text=True,
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr

    # The textfile is rewritten every 2 s: wait for one written after the
    # lookup above was counted, not just one that says connected.
    def textfile_current():
        if not textfile.exists():
            return False
        tf = parse_metrics(textfile.read_text())
        return (tf['steadyfs_state{state="connected"}'] == 1 and
                tf.get('steadyfs_errors_total{errno="ENOENT",op="lookup"}', 0) >= 1)
    poll(textfile_current, 10, "textfile written")
    port = sshdfix.free_port()
    ne = subprocess.Popen([NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{port}",
                           "--collector.disable-defaults", "--collector.textfile",
                           f"--collector.textfile.directory={tfdir}"],
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
    try:
        def scrape():
            assert ne.poll() is None, ne.stderr.read().decode()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                            timeout=2) as resp:
                    return resp.read().decode()
            except OSError:
                return None
        body = poll(scrape, 10, "node_exporter answering", step=0.1)
    finally:
        ne.terminate()
        try:
            ne.wait(timeout=5)
        except subprocess.TimeoutExpired:
            ne.kill()
            ne.wait(timeout=5)
    got = parse_metrics(body, m.mountpoint)
    assert got["node_textfile_scrape_error"] == 0, body[-3000:]
    assert got['steadyfs_state{state="connected"}'] == 1
    assert got["steadyfs_sessions_up"] >= 1
    assert any(k.startswith("steadyfs_build_info{version=") for k in got)
    assert got['steadyfs_call_duration_seconds_bucket{le="+Inf",op="lookup"}'] >= 1
    assert got['steadyfs_errors_total{errno="ENOENT",op="lookup"}'] >= 1


# ---- shadowing -------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_remote_dot_control_is_shadowed(mirrors, sshd, remote_subdir, mount_steadyfs):
    remote = os.path.join(sshd.remote_dir, remote_subdir, ".control")
    os.makedirs(remote)
    with open(os.path.join(remote, "status"), "w") as f:
        f.write("remote file, must not show\n")
    m = mount_steadyfs(sshd, remote_subdir=remote_subdir)
    mirrors.append(default_mirror(m.mountpoint))
    assert os.listdir(m.mountpoint).count(".control") == 1
    assert read(m, "status").startswith("state: ")
    assert sorted(os.listdir(m.path(".control"))) == sorted(FILES)


@pytest.mark.timeout(60)
def test_shadowing_reported_in_events(mirrors, sshd, remote_subdir, mount_steadyfs):
    os.makedirs(os.path.join(sshd.remote_dir, remote_subdir, ".control"))
    m = mount_steadyfs(sshd, remote_subdir=remote_subdir)
    mirrors.append(default_mirror(m.mountpoint))
    os.listdir(m.mountpoint)
    events = parse_events(read(m, "events"))
    assert any(e["type"] == "shadowed" and e["path"].endswith(".control")
               for e in events), events


# ---- who may read the state (issue 15 finding 8) ------------------------------------

def run_as(cmd, groups=None):
    """`cmd` as the real user nobody (no groups, or `groups`)."""
    who = ["setpriv", "--reuid=nobody", "--regid=nogroup"]
    who += [f"--groups={','.join(str(g) for g in groups)}"] if groups else ["--clear-groups"]
    return subprocess.run(who + cmd, capture_output=True, timeout=30)


def open_dir(prefix):
    """A world-traversable folder (pytest's tmp_path is root's alone)."""
    d = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(d, 0o755)
    return d


@pytest.mark.timeout(90)
def test_state_is_private_unless_shared_with_a_group(mirrors, sshd, remote_subdir,
                                                     mount_steadyfs):
    """Finding 8: the events and status name files, so the mirror
    (0700/0600) and .control/ (0500/0400) are root's alone: the local user
    nobody reads neither, even on an allow_other mount. The metrics
    textfile names no path but the mountpoint and stays readable by
    node_exporter's own user. With state_group=GROUP a member of GROUP
    reads both (0750/0640)."""
    if not shutil.which("setpriv"):
        pytest.skip("setpriv is missing")
    try:
        prom = pwd.getpwnam("prometheus")
    except KeyError:
        prom = pwd.getpwnam("nobody")
    base = open_dir("steadyfs-state-")
    made = []
    try:
        textfile = os.path.join(base, "steadyfs.prom")
        mp = os.path.join(base, "mnt")
        os.mkdir(mp)
        m = mount_steadyfs(sshd, mountpoint=mp, remote_subdir=remote_subdir,
                           opts={"allow_other": True, "metrics_textfile": textfile})
        made.append(m)
        mirror = default_mirror(m.mountpoint)
        mirrors.append(mirror)
        poll(lambda: os.path.exists(os.path.join(mirror, "events"))
             and os.path.exists(textfile), 10, "mirror and textfile written")
        for path in (m.path(".control", "status"), m.path(".control", "events"),
                     os.path.join(mirror, "events"), os.path.join(mirror, "status.json")):
            r = run_as(["cat", path])
            assert r.returncode != 0 and b"Permission denied" in r.stderr, (path, r)
        r = run_as(["ls", m.path(".control")])
        assert r.returncode != 0, r
        # node_exporter's user reads the textfile; it names no other path
        r = subprocess.run(["setpriv", f"--reuid={prom.pw_uid}", f"--regid={prom.pw_gid}",
                            "--clear-groups", "cat", textfile], capture_output=True,
                           timeout=30)
        assert r.returncode == 0 and b"steadyfs_state" in r.stdout, r
        values = set(re.findall(r'="([^"]*)"', r.stdout.decode()))
        assert [v for v in values if "/" in v] == [m.mountpoint], values

        group = prom.pw_gid
        mp2 = os.path.join(base, "mnt2")
        os.mkdir(mp2)
        m2 = mount_steadyfs(sshd, mountpoint=mp2, remote_subdir=remote_subdir,
                            opts={"allow_other": True, "state_group": str(group)})
        made.append(m2)
        mirror2 = default_mirror(m2.mountpoint)
        mirrors.append(mirror2)
        poll(lambda: os.path.exists(os.path.join(mirror2, "events")), 10, "mirror written")
        assert os.stat(mirror2).st_mode & 0o7777 == 0o750
        assert os.stat(mirror2).st_gid == group
        st = os.stat(m2.path(".control", "status"))
        assert (st.st_mode & 0o7777, st.st_gid) == (0o440, group)
        for path in (m2.path(".control", "status"), os.path.join(mirror2, "events")):
            r = run_as(["cat", path], groups=[group])
            assert r.returncode == 0, (path, r)
            r = run_as(["cat", path])
            assert r.returncode != 0, (path, r)
    finally:
        for mm in made:
            mm.cleanup()
        shutil.rmtree(base, ignore_errors=True)
