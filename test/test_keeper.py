"""Issue 8: steadyfs survives its own restart. The `steadyfs` process a
test starts is the keeper: it holds /dev/fuse and runs the filesystem
daemon as its child, restarting it when it dies and replacing it on
`steadyfs --upgrade MOUNTPOINT`.

- The crawler workload (workloads.py, with the accounting a daemon death
  calls for: `KeeperCrawler`) runs while the daemon child is SIGKILLed
  five times at random moments (the seed is printed; STEADYFS_KEEPER_SEED
  repeats a run, STEADYFS_KEEPER_KILLS=N makes it N kills). No ENOTCONN
  or ECONNABORTED, no call longer than op_timeout + 1 s, EIO the only
  errno of a failed call, every byte whose
  fsync/close returned 0 on the server (sha256, read on the server side);
  a descriptor and a cwd taken before the kills, a bind mount of a
  subfolder and the mount seen from a private mount namespace (as Docker
  has it) made before the kills all work after them; status, events and
  metrics count the restarts. Its summary line (calls, failures by errno,
  longest call, bytes verified) is printed and kept in
  build/keeper-summary.json for the closing note.
- A request the daemon was serving when it died (the server blackholed by
  the fault proxy) is resent by the kernel and completes; with
  STEADYFS_NO_RESEND=1 (a kernel before 6.9) it fails with EIO at once.
- An upgrade to a fresh copy of the binary under the crawler: zero failed
  calls, the new daemon runs the new file, sshd never holds more than
  connections + 1 sessions of the mount.
- `--upgrade` usage errors; killing the keeper itself leaves the stale
  mount that steadyfs-probe and steadyfs-recover deal with (out of
  scope, documented).

Every call a dying daemon could block runs in a child process with a
deadline (the workload, `Agent`, `mounts.ChildCall`, `cat` of .control
files): the test process itself never waits on the mount.
"""

import base64
import errno
import json
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

import mounts
import workloads
from workloads import (CONNECT_TIMEOUT, MOUNT_OPTS, OP_TIMEOUT, POST_SECONDS,
                       PRE_SECONDS, RECOVERY_BOUND)

pytestmark = pytest.mark.skipif(not mounts.fuse_available(),
                                reason="/dev/fuse is missing")

# STEADYFS_KEEPER_KILLS=N makes the kill test a longer stress run.
KILLS = int(os.environ.get("STEADYFS_KEEPER_KILLS") or 5)
KILL_GAP = (0.3, 1.5)        # s between kills, drawn from the seed
RESTART_BOUND = 5.0          # a new daemon pid, then serving, after a kill
LONGEST_BOUND = OP_TIMEOUT + 1
# A resent request: the keeper restarts within 1 s, the new daemon
# connects (connect_timeout), then answers it.
RESEND_BOUND = 1 + CONNECT_TIMEOUT + 2
NO_RESEND_BOUND = 2.0        # EIO after the kill without FUSE_NOTIFY_RESEND
CONNECTIONS = MOUNT_OPTS["connections"]
SUMMARY_PATH = os.path.join(mounts.build_dir(), "keeper-summary.json")
BLOCK_A = workloads.pattern(81, 4096)
BLOCK_B = workloads.pattern(82, 4096)


def steadyfs_bin():
    return os.path.join(mounts.build_dir(), "steadyfs")


def wait_until(fn, timeout, interval=0.05):
    """fn() polled until it returns something true (returned) or the
    deadline passes (None). Exceptions count as "not yet"."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            v = fn()
        except (OSError, ValueError, subprocess.SubprocessError):
            v = None
        if v:
            return v
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def ename(e):
    return errno.errorcode.get(e, str(e)) if e is not None else "-"


# ---- .control, read by a child process --------------------------------------

def control(m, name, timeout=3.0):
    """The text of .control/NAME, read by `cat` (killed past `timeout`)."""
    p = subprocess.run(["cat", m.path(".control", name)], capture_output=True,
                       text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if p.returncode:
        raise OSError(errno.EIO, f"cat .control/{name}: {p.stderr.strip()}")
    return p.stdout


def status_json(m):
    return json.loads(control(m, "status.json"))


def events(m):
    return [json.loads(line) for line in control(m, "events").splitlines()
            if line.strip()]


def metrics(m):
    """{name: value} of the metric lines without labels other than the
    mountpoint."""
    out = {}
    for line in control(m, "metrics").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        series, _, value = line.rpartition(" ")
        out[series.split("{")[0]] = float(value)
    return out


def wait_serving(m, pid, generation, timeout=RESTART_BOUND):
    """status.json says daemon `pid` of `generation` serves; the status
    dict, or None past the deadline."""
    def check():
        st = status_json(m)
        return st if (st.get("daemon_pid") == pid
                      and st.get("generation") == generation) else None
    return wait_until(check, timeout)


def wait_new_daemon(m, old, timeout=RESTART_BOUND):
    """The keeper's child once it is no longer `old`; None past the
    deadline."""
    def new():
        pid = m.daemon_pid()
        return pid if pid not in (None, old) else None
    return wait_until(new, timeout, interval=0.01)


# ---- a helper process making calls on command ---------------------------------

_AGENT = r"""
import base64, json, os, subprocess, sys, time
for line in sys.stdin:
    req = json.loads(line)
    op, t0 = req.pop("op"), time.monotonic()
    try:
        if op == "chdir":
            os.chdir(req["path"]); r = {}
        elif op == "open":
            r = {"fd": os.open(req["path"], req["flags"], 0o644)}
        elif op == "pwrite":
            r = {"n": os.pwrite(req["fd"], base64.b64decode(req["data"]), req["off"])}
        elif op == "pread":
            r = {"data": base64.b64encode(os.pread(req["fd"], req["n"], req["off"])).decode()}
        elif op == "fsync":
            os.fsync(req["fd"]); r = {}
        elif op == "fstat":
            r = {"size": os.fstat(req["fd"]).st_size}
        elif op == "close":
            os.close(req["fd"]); r = {}
        elif op == "put":
            fd = os.open(req["path"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, base64.b64decode(req["data"]))
                os.fsync(fd)
            finally:
                os.close(fd)
            r = {}
        elif op == "get":
            with open(req["path"], "rb") as f:
                r = {"data": base64.b64encode(f.read()).decode()}
        elif op == "run":
            p = subprocess.run(req["argv"], capture_output=True, text=True, timeout=20)
            r = {"rc": p.returncode, "out": p.stdout + p.stderr}
        else:
            raise SystemExit("unknown op " + op)
        r["status"] = "ok"
    except OSError as e:
        r = {"status": "errno", "errno": e.errno}
    r["secs"] = time.monotonic() - t0
    print(json.dumps(r), flush=True)
"""


class AgentError(AssertionError):
    pass


class Agent:
    """A child process that makes filesystem calls on command (JSON lines
    on its stdin), each answer awaited with a deadline. `prefix` runs it
    elsewhere, e.g. under `unshare -m` in a private mount namespace. Bytes
    go as `data` and come back as `data` (base64 on the wire)."""

    def __init__(self, name, prefix=()):
        self.name = name
        self.proc = subprocess.Popen(list(prefix) + [sys.executable, "-c", _AGENT],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.buf = b""

    def do(self, op, timeout=LONGEST_BOUND + 2, **kw):
        """The answer dict (status "ok" or "errno"); AgentError when none
        comes within `timeout` s."""
        if "data" in kw:
            kw["data"] = base64.b64encode(kw["data"]).decode()
        what = f"{self.name}: {op} {kw.get('path', kw.get('fd', ''))}"
        try:
            self.proc.stdin.write((json.dumps(dict(kw, op=op)) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise AgentError(f"{what}: the agent is gone: {self._stderr()}") from None
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AgentError(f"{what}: no answer within {timeout:g} s")
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    raise AgentError(f"{what}: the agent exited: {self._stderr()}")
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        r = json.loads(line)
        if "data" in r:
            r["data"] = base64.b64decode(r["data"])
        return r

    def ok(self, op, **kw):
        """do(), raising AgentError unless the call succeeded."""
        r = self.do(op, **kw)
        if r["status"] != "ok":
            raise AgentError(f"{self.name}: {op} {kw.get('path', kw.get('fd', ''))}: "
                             f"{ename(r['errno'])} after {r['secs']:.2f} s")
        return r

    def _stderr(self):
        if self.proc.poll() is None:
            return "(still running)"
        return self.proc.stderr.read().decode(errors="replace")[-2000:]

    def stop(self):
        """End it (its stdin closed, then SIGKILL), by pid."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass  # stuck in the kernel: the mount's cleanup aborts it


class Views:
    """The ways in that must outlive the daemon, all made before the
    faults: a descriptor and a cwd held by an agent, a bind mount of the
    subfolder `sub` in our namespace, and another made inside a private
    mount namespace (an agent started under `unshare -m --propagation
    private`, as Docker runs a container)."""

    SUB = "sub"

    def __init__(self, m, tmp_path):
        self.m = m
        self.bind = str(tmp_path / "bind")
        self.nsdir = str(tmp_path / "ns-bind")
        os.makedirs(self.bind)
        os.makedirs(self.nsdir)
        self.fd = None
        self.bound = False
        self.holder = Agent("fd holder")
        self.ns = None

    def setup(self):
        m, a = self.m, self.holder
        sub = m.path(self.SUB)
        a.ok("chdir", path=sub)
        self.fd = a.ok("open", path=os.path.join(sub, "held.dat"),
                       flags=os.O_RDWR | os.O_CREAT)["fd"]
        a.ok("pwrite", fd=self.fd, data=BLOCK_A, off=0)
        a.ok("fsync", fd=self.fd)
        subprocess.run(["mount", "--bind", sub, self.bind], check=True,
                       timeout=10, stdin=subprocess.DEVNULL)
        self.bound = True
        a.ok("put", path=os.path.join(self.bind, "bind-before.txt"), data=b"bind before\n")
        self.ns = Agent("namespace", prefix=["unshare", "-m", "--propagation",
                                             "private", "--"])
        r = self.ns.ok("run", argv=["mount", "--bind", sub, self.nsdir])
        assert r["rc"] == 0, f"mount --bind in the namespace: {r['out']}"
        self.ns.ok("put", path=os.path.join(self.nsdir, "ns-before.txt"), data=b"ns before\n")

    def check_after(self):
        """Use every view; a list of problems."""
        out = []
        steps = [
            ("descriptor", self.holder, self._descriptor),
            ("cwd", self.holder, lambda a: self._roundtrip(a, "", "cwd")),
            ("bind mount", self.holder, lambda a: self._roundtrip(a, self.bind, "bind")),
            ("private namespace", self.ns, lambda a: self._roundtrip(a, self.nsdir, "ns")),
        ]
        for what, agent, fn in steps:
            try:
                problem = fn(agent)
            except AgentError as e:
                problem = str(e)
            if problem:
                out.append(f"{what} made before the faults: {problem}")
        return out

    def _descriptor(self, a):
        a.ok("pwrite", fd=self.fd, data=BLOCK_B, off=4096)
        a.ok("fsync", fd=self.fd)
        got = a.ok("pread", fd=self.fd, n=8192, off=0)["data"]
        if got != BLOCK_A + BLOCK_B:
            return f"read back {len(got)} bytes, not the 8192 written"
        size = a.ok("fstat", fd=self.fd)["size"]
        return None if size == 8192 else f"fstat size {size}, want 8192"

    def _roundtrip(self, a, where, tag):
        """Read the file written there before, write and read a new one
        (`where` "" is the agent's cwd)."""
        before = {"bind": "bind-before.txt", "ns": "ns-before.txt",
                  "cwd": "bind-before.txt"}[tag]
        got = a.ok("get", path=os.path.join(where, before))["data"]
        want = b"ns before\n" if tag == "ns" else b"bind before\n"
        if got != want:
            return f"{before} reads {got!r}"
        data = f"{tag} after\n".encode()
        a.ok("put", path=os.path.join(where, f"{tag}-after.txt"), data=data)
        got = a.ok("get", path=os.path.join(where, f"{tag}-after.txt"))["data"]
        return None if got == data else f"{tag}-after.txt reads {got!r}"

    def server_problems(self, remote):
        """What the views wrote, checked on the server side."""
        files = workloads.Files()
        for name, data in (("held.dat", BLOCK_A + BLOCK_B),
                           ("bind-before.txt", b"bind before\n"),
                           ("ns-before.txt", b"ns before\n"),
                           ("cwd-after.txt", b"cwd after\n"),
                           ("bind-after.txt", b"bind after\n"),
                           ("ns-after.txt", b"ns after\n")):
            files.exact(f"{self.SUB}/{name}", data)
        _, problems = workloads.verify_files({"files": files.want}, remote)
        return [f"server content: {p}" for p in problems]

    def close(self):
        """Agents ended first (the namespace's copy of the mount goes with
        its last process), then the bind mount, so the fixture's unmount
        leaves no reference to the FUSE connection behind. A list of
        problems (a view that would not go)."""
        out = []
        self.holder.stop()
        if self.ns is not None:
            self.ns.stop()
            if self.ns.proc.poll() is None:
                out.append(f"the namespace agent pid {self.ns.proc.pid} did not end")
        if self.bound:
            r = subprocess.run(["umount", self.bind], capture_output=True, text=True,
                               timeout=10)
            if r.returncode:
                out.append(f"umount of the bind mount: {r.stderr.strip()}")
                subprocess.run(["umount", "-l", self.bind], capture_output=True, timeout=10)
            if mounts.mounts_at(self.bind):
                out.append("the bind mount is still there after umount")
        return out


# ---- the crawler, in a child process -------------------------------------------

class KeeperCrawler(workloads.Crawler):
    """The crawler with the accounting a daemon death calls for. There an
    EIO from a WARC's write or fsync reports write-behind data that only
    the dead daemon held (lost), not just the call that failed: after any
    EIO only what the last successful fsync covered is promised, and the
    WARC is closed and abandoned at once (a later fsync returning 0 would
    not bring the lost bytes back)."""

    def _fsync_warc(self):
        w = self.warc
        try:
            self.call("fsync", w.rel, os.fsync, w.fd)
        except OSError as e:
            self.rec.wrong_errno(e, w.rel)
            w.failed = True
            self._end_warc()
            return
        w.synced = (w.len, w.hash.hexdigest())

    def _end_warc(self):
        w = self.warc
        if not w.failed:
            super()._end_warc()
            return
        self.warc = None
        try:
            self.call("close", w.rel, os.close, w.fd)
        except OSError as e:
            self.rec.wrong_errno(e, w.rel)
        self.files.prefix(w.rel, *w.synced)


class CrawlerChild(workloads.Child):
    """workloads.Child running KeeperCrawler (this file as a script)."""

    def __init__(self, root, out, seed):
        self.out = out
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "crawler", root, out, str(seed)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._buf = b""
        self.lines = []


def make_probe_file(remote):
    """The pre-made file the workload's probe descriptors read."""
    with open(os.path.join(remote, workloads.PROBE_READ), "wb") as f:
        f.write(workloads.pattern(1, workloads.PROBE_SIZE))


def crawler_problems(result, recovered, remote, allow_eio):
    """The workload's contract: (problems, bytes verified)."""
    out = []
    counts = dict(result["error_counts"])
    for key in ("ENOTCONN", "ECONNABORTED"):
        if counts.get(key):
            first = next(e for e in result["errors"] if ename(e["errno"]) == key)
            out.append(f"{key} x{counts[key]}, first from {first['op']} '{first['path']}'")
    if allow_eio:
        counts.pop("EIO", None)
    for key in ("ENOTCONN", "ECONNABORTED"):
        counts.pop(key, None)
    if counts:
        out.append(f"failed calls with errnos not allowed: {workloads.fmt_counts(counts)}")
    if not allow_eio and result["errors"]:
        out += [f"{ename(e['errno'])} from {e['op']} '{e['path']}' after "
                f"{e['t1'] - e['t0']:.2f} s (no failure allowed)"
                for e in result["errors"][:20]]
    out += [f"{c['op']} '{c['path']}' took {c['secs']:.2f} s (bound {LONGEST_BOUND} s)"
            for c in result["longest"] if c["secs"] > LONGEST_BOUND]
    out += [f"wrong result: {w}" for w in result["wrong"][:20]]
    if recovered is None:
        out.append("the workload's descriptors opened before the faults never "
                   "worked again")
    nbytes, file_problems = workloads.verify_files(result, remote)
    out += [f"server content: {p}" for p in file_problems]
    return out, nbytes


def silent_losses(result, evs):
    """"data" events with lost=true naming a path no EIO was returned
    for: a loss nobody was told of."""
    seen = [n for e in result["errors"] if e["errno"] == errno.EIO
            for n in (e["path"], e.get("path2")) if n]
    out = []
    for ev in evs:
        if ev.get("type") == "data" and ev.get("lost"):
            path = str(ev.get("path", ""))
            if not any(workloads._path_matches(path, n) for n in seen):
                out.append(f"silent loss (no EIO to the writer): {json.dumps(ev)}")
    return out


def summary(request, key, line):
    """Print `line` on the terminal even when output is captured, and keep
    it in build/keeper-summary.json for the closing note."""
    try:
        with open(SUMMARY_PATH) as f:
            kept = json.load(f)
    except (OSError, ValueError):
        kept = {}
    kept[key] = {"line": line, "when": time.time()}
    os.makedirs(os.path.dirname(SUMMARY_PATH), exist_ok=True)
    with open(SUMMARY_PATH + ".tmp", "w") as f:
        json.dump(kept, f, indent=1, sort_keys=True)
    os.rename(SUMMARY_PATH + ".tmp", SUMMARY_PATH)
    capman = request.config.pluginmanager.getplugin("capturemanager")
    reporter = request.config.pluginmanager.getplugin("terminalreporter")
    if capman is None or reporter is None:
        print(line)
        return
    with capman.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_line(line)


def describe(result, nbytes):
    top = result["longest"][0] if result["longest"] else {"secs": 0, "op": "-", "path": ""}
    return (f"{result['calls']} calls, failed: "
            f"{workloads.fmt_counts(result['error_counts'])}, longest "
            f"{top['secs']:.2f} s ({top['op']} {top['path']}), "
            f"{nbytes} bytes verified on the server")


def unmount_problems(m, timeout=2 * OP_TIMEOUT + 1):
    """Unmount: the daemon then exits, and the keeper after it, both with
    status 0, within `timeout` s (the fixture's cleanup would otherwise
    SIGTERM them without a word)."""
    kids = m.daemon_pids()
    m.unmount()
    try:
        m.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return [f"the keeper still runs {timeout:g} s after the unmount "
                f"(daemon pids {m.daemon_pids()})"]
    out = []
    if m.proc.returncode != 0:
        out.append(f"the keeper exited with status {m.proc.returncode} after the unmount")
    if not mounts.wait_gone(kids, 1.0):
        out.append(f"daemon pids {kids} outlived the keeper")
    return out


# ---- a) kill the daemon five times under the crawler ---------------------------

def kill_daemon_repeatedly(m, rng, kills):
    """SIGKILL the daemon child `kills` times, a random 0.3-1.5 s apart;
    after each, wait for a new child and for it to serve. Returns the
    seconds from each kill to serving; raises AssertionError when a
    daemon does not come back."""
    took = []
    for i in range(kills):
        time.sleep(rng.uniform(*KILL_GAP))   # the random moment, not a sync
        old = m.daemon_pid()
        assert old, f"kill {i + 1}: the keeper has no daemon child"
        t0 = time.monotonic()
        os.kill(old, signal.SIGKILL)
        new = wait_new_daemon(m, old)
        assert new, (f"kill {i + 1}: no new daemon {RESTART_BOUND} s after "
                     f"SIGKILL of pid {old}")
        st = wait_serving(m, new, i + 2)
        assert st, (f"kill {i + 1}: daemon pid {new} not serving as generation "
                    f"{i + 2} within {RESTART_BOUND} s; status.json: "
                    f"{safe(lambda: status_json(m))}")
        took.append(time.monotonic() - t0)
    return took


def safe(fn):
    try:
        return fn()
    except (OSError, ValueError, subprocess.SubprocessError) as e:
        return f"<{e}>"


def restart_problems(m, kills, reason):
    """status.json, status, metrics and events after `kills` restarts of
    kind `reason` (a substring of last_restart_reason)."""
    out = []
    st = status_json(m)
    want = {"keeper_pid": m.pid, "daemon_pid": m.daemon_pid(),
            "generation": kills + 1, "restarts": kills}
    for k, v in want.items():
        if st.get(k) != v:
            out.append(f"status.json {k} = {st.get(k)!r}, want {v!r}")
    if reason not in str(st.get("last_restart_reason")):
        out.append(f"status.json last_restart_reason = "
                   f"{st.get('last_restart_reason')!r}, want it to say {reason!r}")
    text = control(m, "status")
    line = next((s for s in text.splitlines() if s.startswith("daemon:")), None)
    if line is None or str(kills + 1) not in line or reason not in line:
        out.append(f".control/status daemon line: {line!r}")
    mx = metrics(m)
    for name, v in (("steadyfs_daemon_generation", kills + 1),
                    ("steadyfs_daemon_restarts_total", kills)):
        if mx.get(name) != v:
            out.append(f"metric {name} = {mx.get(name)}, want {v}")
    restarts = [e for e in events(m) if e.get("type") == "restart"]
    if len(restarts) != kills:
        out.append(f"{len(restarts)} restart events, want {kills}: {restarts}")
    gens = [e.get("generation") for e in restarts]
    if gens != list(range(2, kills + 2)):
        out.append(f"restart events' generations {gens}")
    out += [f"restart event reason {e.get('reason')!r}" for e in restarts
            if reason not in str(e.get("reason"))]
    return out


@pytest.mark.timeout(120 + 6 * KILLS)
def test_kill_daemon_five_times_under_crawler(sshd, remote_subdir, mount_steadyfs,
                                              tmp_path, request):
    seed = int(os.environ.get("STEADYFS_KEEPER_SEED") or random.randrange(1 << 30))
    print(f"kill schedule and crawler seed {seed} (STEADYFS_KEEPER_SEED={seed} repeats it)")
    remote = os.path.join(sshd.remote_dir, remote_subdir)
    os.makedirs(os.path.join(remote, Views.SUB))
    make_probe_file(remote)
    m = mount_steadyfs(sshd, remote_subdir=remote_subdir, opts=MOUNT_OPTS,
                       expect_errors=True)
    views = Views(m, tmp_path)
    crawler = None
    try:
        views.setup()
        crawler = CrawlerChild(m.mountpoint, str(tmp_path / "crawler.json"), seed)
        assert crawler.expect("ready", 30) is not None, crawler.stderr()
        time.sleep(PRE_SECONDS)      # the workload's own run time
        took = kill_daemon_repeatedly(m, random.Random(seed), KILLS)
        crawler.send(f"clear {time.monotonic():.6f}")
        recovered = crawler.expect("recovered", RECOVERY_BOUND + OP_TIMEOUT + 5)
        problems = views.check_after()
        time.sleep(POST_SECONDS)     # the workload runs on after the faults
        result = crawler.finish(workloads.FINISH_TIMEOUT)
    finally:
        if crawler is not None:
            crawler.kill()
        closed = views.close()
    found, nbytes = crawler_problems(result, recovered, remote, allow_eio=True)
    problems += found + views.server_problems(remote)
    problems += restart_problems(m, KILLS, "signal 9")
    problems += silent_losses(result, events(m))
    problems += closed + unmount_problems(m)
    line = (f"keeper: {KILLS} SIGKILLs of the daemon under the crawler (seed {seed}): "
            f"{describe(result, nbytes)}; kill to serving max {max(took):.2f} s")
    summary(request, "kill", line)
    assert not problems, line + "\n  " + "\n  ".join(problems)


# ---- b, c) a request in flight when the daemon dies ----------------------------

def inflight_across_kill(sshd, remote_subdir, fault_proxy, mount_steadyfs, env=None):
    """A stat of a name the mount never saw, made while the proxy
    blackholes the server, so the daemon has read the request and waits
    for the server when it is SIGKILLed; the link is restored right
    after. Returns (mount, call result, seconds from the kill to the
    answer)."""
    remote = os.path.join(sshd.remote_dir, remote_subdir)
    proxy = fault_proxy(sshd)
    m = mount_steadyfs(sshd, remote_subdir=remote_subdir, opts=MOUNT_OPTS,
                       port=proxy.port, expect_errors=True, env=env)
    with open(os.path.join(remote, "fresh.txt"), "w") as f:
        f.write("fresh\n")
    idle = status_json(m)["calls_inflight"]   # (a control read may count itself)
    proxy.blackhole()
    call = None
    try:
        call = mounts.ChildCall("stat", m.path("fresh.txt"))
        held = wait_until(lambda: status_json(m)["calls_inflight"] > idle, 2.0, 0.02)
        assert held, f"the daemon never took the stat: {safe(lambda: status_json(m))}"
        old = m.daemon_pid()
        t_kill = time.monotonic()
        os.kill(old, signal.SIGKILL)
    except BaseException:
        if call is not None:
            call.proc.kill()
        raise
    finally:
        proxy.restore()
    r = call.wait(RESEND_BOUND + OP_TIMEOUT)
    since_kill = time.monotonic() - t_kill
    assert wait_new_daemon(m, old), "no new daemon after the kill"
    return m, r, since_kill


@pytest.mark.timeout(60)
def test_inflight_request_resent_after_kill(sshd, remote_subdir, fault_proxy,
                                            mount_steadyfs):
    m, r, secs = inflight_across_kill(sshd, remote_subdir, fault_proxy, mount_steadyfs)
    assert r["status"] == "ok", f"the resent stat gave {r}"
    assert secs <= RESEND_BOUND, f"answered {secs:.2f} s after the kill (bound {RESEND_BOUND} s)"
    assert not unmount_problems(m)


@pytest.mark.timeout(60)
def test_inflight_fails_with_eio_without_resend(sshd, remote_subdir, fault_proxy,
                                                mount_steadyfs):
    m, r, secs = inflight_across_kill(sshd, remote_subdir, fault_proxy, mount_steadyfs,
                                      env={"STEADYFS_NO_RESEND": "1"})
    assert r["status"] == "errno" and r["errno"] == errno.EIO, \
        f"without resend the stat gave {r}, want EIO"
    assert secs <= NO_RESEND_BOUND, f"EIO came {secs:.2f} s after the kill"
    # The mount works on: the same name, and a listing.
    for op, path in (("stat", m.path("fresh.txt")), ("listdir", m.mountpoint)):
        r = mounts.call_in_child(op, path, timeout=RESEND_BOUND + OP_TIMEOUT)
        assert r["status"] == "ok", f"{op} after the kill: {r}"
    assert not unmount_problems(m)


# ---- d) upgrade under the crawler ----------------------------------------------

class SessionCounter:
    """Samples, in a thread, how many connections sshd serves (its
    children: one per connection) and keeps the maximum."""

    def __init__(self, sshd_pid):
        self.pid = sshd_pid
        self.max = 0
        self.seen = []           # (seconds since start, count) at each change
        self.stop_flag = threading.Event()
        self.t0 = time.monotonic()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def count(self):
        return len(mounts.children(self.pid))

    def _run(self):
        last = None
        while not self.stop_flag.is_set():
            n = self.count()
            self.max = max(self.max, n)
            if n != last:
                self.seen.append((round(time.monotonic() - self.t0, 3), n))
                last = n
            self.stop_flag.wait(0.002)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        self.thread.join(5)
        return False


@pytest.mark.timeout(120)
def test_upgrade_under_crawler_zero_failures(make_sshd, mount_steadyfs, tmp_path, request):
    server = make_sshd()    # its own: every connection it serves is this mount's
    remote = os.path.join(server.remote_dir, "up")
    os.makedirs(remote)
    make_probe_file(remote)
    prog = str(tmp_path / "bin" / "steadyfs")
    os.makedirs(os.path.dirname(prog))
    shutil.copy2(steadyfs_bin(), prog)
    m = mount_steadyfs(server, remote_subdir="up", opts=MOUNT_OPTS, program=prog)
    sessions = SessionCounter(server.pid)
    assert wait_until(lambda: sessions.count() == CONNECTIONS, 10), \
        f"sshd serves {sessions.count()} connections, want {CONNECTIONS}"
    old = m.daemon_pid()
    crawler = CrawlerChild(m.mountpoint, str(tmp_path / "crawler.json"), 11)
    try:
        assert crawler.expect("ready", 30) is not None, crawler.stderr()
        time.sleep(PRE_SECONDS)      # the workload's own run time
        # "A freshly built binary": a new file (new inode) at the same path.
        shutil.copy2(steadyfs_bin(), prog + ".new")
        os.rename(prog + ".new", prog)
        st_new = os.stat(prog)
        with sessions:
            t0 = time.monotonic()
            up = subprocess.run([prog, "--upgrade", m.mountpoint], capture_output=True,
                                text=True, timeout=60, stdin=subprocess.DEVNULL)
            upgrade_secs = time.monotonic() - t0
            old_gone = mounts.wait_gone([old], 10)
            # The old sessions' server side ends shortly after the old daemon.
            wait_until(lambda: sessions.count() <= CONNECTIONS, 5)
        crawler.send(f"clear {time.monotonic():.6f}")
        recovered = crawler.expect("recovered", RECOVERY_BOUND + OP_TIMEOUT + 5)
        time.sleep(POST_SECONDS)     # the workload runs on after the upgrade
        result = crawler.finish(workloads.FINISH_TIMEOUT)
    finally:
        crawler.kill()
    problems = []
    if up.returncode != 0:
        problems.append(f"steadyfs --upgrade exited {up.returncode}: {up.stderr.strip()}")
    if not old_gone:
        problems.append(f"the old daemon pid {old} still runs 10 s after the upgrade")
    new = m.daemon_pid()
    try:
        exe = os.stat(f"/proc/{new}/exe")
        if (exe.st_dev, exe.st_ino) != (st_new.st_dev, st_new.st_ino):
            problems.append(f"the new daemon pid {new} runs {os.readlink(f'/proc/{new}/exe')}, "
                            f"not the new file (inode {st_new.st_ino})")
    except (OSError, TypeError) as e:
        problems.append(f"no new daemon to check ({new}): {e}")
    found, nbytes = crawler_problems(result, recovered, remote, allow_eio=False)
    problems += found
    problems += restart_problems(m, 1, "upgrade")
    if sessions.max > CONNECTIONS + 1:
        problems.append(f"sshd served {sessions.max} connections during the upgrade "
                        f"(connections={CONNECTIONS}, bound {CONNECTIONS + 1}); "
                        f"(s, count): {sessions.seen}")
    problems += unmount_problems(m)
    line = (f"keeper: upgrade under the crawler: --upgrade took {upgrade_secs:.2f} s, "
            f"{describe(result, nbytes)}; at most {sessions.max} sshd connections "
            f"(connections={CONNECTIONS})")
    summary(request, "upgrade", line)
    assert not problems, line + "\n  " + "\n  ".join(problems)


# ---- e) --upgrade usage -------------------------------------------------------

def test_upgrade_cli_errors(sshd, remote_subdir, mount_sshfs, tmp_path):
    plain = tmp_path / "not-a-mount"
    plain.mkdir()
    sshfs = mount_sshfs(sshd, remote_subdir=remote_subdir)
    for target in (str(plain), str(tmp_path / "missing"), sshfs.mountpoint):
        p = subprocess.run([steadyfs_bin(), "--upgrade", target], capture_output=True,
                           text=True, timeout=20, stdin=subprocess.DEVNULL)
        assert p.returncode == 4, (target, p.returncode, p.stderr)
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and target in lines[0], (target, p.stderr)
    p = subprocess.run([steadyfs_bin(), "--upgrade"], capture_output=True, text=True,
                       timeout=20, stdin=subprocess.DEVNULL)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert p.stderr.strip(), "a usage error says why"


# ---- f) the keeper itself killed: out of scope, a stale mount -------------------

@pytest.mark.timeout(60)
def test_keeper_killed_leaves_stale_mount_for_recover(sshd, remote_subdir, mount_steadyfs):
    """Documented: killing the keeper ends the mount as a crash of sshfs
    does (steadyfs-probe and steadyfs-recover handle it). Its daemon dies
    with it (PR_SET_PDEATHSIG) and every call answers ENOTCONN."""
    m = mount_steadyfs(sshd, remote_subdir=remote_subdir)
    child = m.daemon_pid()
    assert child, "the keeper has no daemon child"
    os.kill(m.pid, signal.SIGKILL)
    m.proc.wait(timeout=10)
    assert mounts.wait_gone([child], 5), f"daemon pid {child} outlived its keeper"
    assert m.is_mounted()
    for op, path in (("stat", m.path("anything")), ("listdir", m.mountpoint)):
        r = mounts.call_in_child(op, path, timeout=5)
        assert r["status"] == "errno" and r["errno"] == errno.ENOTCONN, (op, r)


@pytest.mark.timeout(60)
def test_mount_helpers_hang_and_stale_a_steadyfs_mount(sshd, remote_subdir, mount_steadyfs):
    """mounts.py's fault helpers on a keeper and its child: stopped() hangs
    the mount without a restart, kill_daemon() leaves it stale."""
    m = mount_steadyfs(sshd, remote_subdir=remote_subdir)
    child = m.daemon_pid()
    with m.stopped():
        r = mounts.call_in_child("stat", m.path("never-seen"), timeout=1.5)
        assert r["status"] == "timeout", r
    r = mounts.call_in_child("listdir", m.mountpoint, timeout=LONGEST_BOUND)
    assert r["status"] == "ok", r
    assert m.daemon_pid() == child, "the keeper restarted a stopped daemon"
    m.kill_daemon()
    assert mounts.wait_gone([child], 0.1)
    r = mounts.call_in_child("listdir", m.mountpoint, timeout=5)
    assert r["status"] == "errno" and r["errno"] == errno.ENOTCONN, r


# ---- g) a damaged take-over state (issue 15 finding 9) ---------------------------

def ks_corrupt(m, *args):
    """build/ks-corrupt on the keeper's state; its output line."""
    tool = os.path.join(mounts.build_dir(), "ks-corrupt")
    p = subprocess.run([tool, str(m.pid)] + list(args), capture_output=True,
                       text=True, timeout=10, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, f"ks-corrupt {' '.join(args)}: {p.stderr.strip()}"
    return p.stdout.strip()


def wait_call_ok(op, path, timeout):
    """`op` on `path` in a child until it succeeds (the result) or the
    deadline passes (the last result)."""
    deadline = time.monotonic() + timeout
    while True:
        r = mounts.call_in_child(op, path, timeout=OP_TIMEOUT + 1)
        if r["status"] == "ok" or time.monotonic() >= deadline:
            return r
        time.sleep(0.1)


# Each damage, what ks-corrupt is told, and what the report must drop:
# (node records, event lines) at least.
DAMAGE = {
    # The next daemon read 4 GiB past the slot: SIGSEGV, on every restart.
    "event-slot": (["event-slot"], 0, 1),
    # a's parent made b (inside a): build_path looped for ever under the
    # node table's lock, so every later call hung. a, b and f below b.
    "cycle": (["cycle", "a", "b"], 3, 0),
    # A folder named "..": what was made in it landed in the folder
    # above the mount's remote folder.
    "dotdot": (["rename", "d", ".."], 1, 0),
}


@pytest.mark.timeout(90)
@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_state_is_reported_and_the_mount_served(sshd, remote_subdir,
                                                         mount_steadyfs, damage,
                                                         request):
    """The keeper's state damaged one way finding 9 found (DAMAGE), then
    the daemon SIGKILLed, with two processes' current folders in the
    damaged folders. The next daemon serves the mount (the damaged names
    found again, their files read whole; a file made in each current
    folder answered at once, and never outside the mount's remote folder),
    is not restarted again, and reports the damage (a log line, one
    invalid_state event naming what it dropped); a later daemon finds
    nothing left to report."""
    args, want_nodes, want_events = DAMAGE[damage]
    remote = os.path.join(sshd.remote_dir, remote_subdir)
    escaped = f"escaped-{remote_subdir}"
    os.makedirs(os.path.join(remote, "a", "b"))
    os.makedirs(os.path.join(remote, "d"))
    with open(os.path.join(remote, "a", "b", "f"), "wb") as f:
        f.write(BLOCK_A)
    with open(os.path.join(remote, "c"), "wb") as f:
        f.write(BLOCK_B)
    m = mount_steadyfs(sshd, remote_subdir=remote_subdir, opts=MOUNT_OPTS,
                       expect_errors=True)
    for path in (m.path("a", "b", "f"), m.path("c")):
        r = mounts.call_in_child("stat", path, timeout=OP_TIMEOUT + 1)
        assert r["status"] == "ok", f"stat {path} before the damage: {r}"
    agents = {"a/b": Agent("cwd a/b"), "d": Agent("cwd d")}
    request.addfinalizer(lambda: [a.stop() for a in agents.values()])
    for where, agent in agents.items():
        agent.ok("chdir", path=m.path(*where.split("/")))
    assert events(m), "no events in the ring to damage"
    done = ks_corrupt(m, *args)

    old = m.daemon_pid()
    os.kill(old, signal.SIGKILL)
    new = wait_new_daemon(m, old)
    assert new, f"no new daemon after the kill ({done})"
    st = wait_serving(m, new, 2)
    assert st, (f"daemon pid {new} not serving as generation 2 within "
                f"{RESTART_BOUND} s after {done}; status.json: "
                f"{safe(lambda: status_json(m))}")

    # The mount serves, the damaged names included (found afresh).
    r = wait_call_ok("listdir", m.mountpoint, RESTART_BOUND)
    assert r["status"] == "ok", f"listing the root after {done}: {r}"
    for path, want in ((m.path("a", "b", "f"), BLOCK_A), (m.path("c"), BLOCK_B)):
        r = wait_call_ok("read", path, RESTART_BOUND)
        assert r["status"] == "ok", f"read {path} after {done}: {r}"
        got = subprocess.run(["cat", path], capture_output=True, timeout=OP_TIMEOUT + 1,
                             stdin=subprocess.DEVNULL).stdout
        assert got == want, f"{path}: other bytes after {done}"
    # A call on a damaged folder answers (an error is fine: the folder
    # was dropped) and makes nothing outside the remote folder.
    for where, agent in agents.items():
        r = agent.do("put", path=escaped, data=b"x", timeout=OP_TIMEOUT + 2)
        if r["status"] == "ok":
            assert os.path.exists(os.path.join(remote, where, escaped)), \
                f"a file made in {where} after {done} is not there on the server"
    assert not os.path.exists(os.path.join(sshd.remote_dir, escaped)), \
        f"a file made in a folder of the mount landed outside it after {done}"

    # No crash loop: the same daemon goes on serving.
    changed = wait_until(lambda: m.daemon_pid() not in (None, new), 3.0)
    assert not changed, f"the daemon was restarted again: pid {new} -> {changed}"
    assert status_json(m).get("generation") == 2

    # Reported: the log line, and one event saying what was dropped.
    bad = [e for e in events(m) if e.get("type") == "invalid_state"]
    assert len(bad) == 1, f"invalid_state events after {done}: {bad}"
    assert bad[0]["nodes"] >= want_nodes and bad[0]["events"] >= want_events, bad[0]
    assert bad[0]["problems"] == sum(bad[0][k] for k in
                                     ("nodes", "handles", "events", "inflight", "header"))
    assert "take-over state damaged" in m.stderr_text()

    # The damage was dropped from the state too: the next daemon has
    # nothing to report.
    os.kill(new, signal.SIGKILL)
    newer = wait_new_daemon(m, new)
    assert newer and wait_serving(m, newer, 3), "no third daemon serving"
    bad = [e for e in events(m) if e.get("type") == "invalid_state"]
    assert len(bad) == 1, f"invalid_state events after a clean restart: {bad}"
    for agent in agents.values():
        agent.stop()          # their current folders would keep the mount busy
    assert not unmount_problems(m)


if __name__ == "__main__":
    # The workload child: `test_keeper.py crawler MOUNT OUT SEED`.
    workloads.WORKLOADS["keeper-crawler"] = KeeperCrawler
    workloads.child_main("keeper-crawler", sys.argv[2], sys.argv[3], int(sys.argv[4]))


@pytest.mark.timeout(60)
def test_listing_read_across_a_daemon_kill(sshd, remote_subdir, mount_steadyfs):
    """A folder opened and partly read under one daemon is read to its
    end under the next: the new daemon lists it again and answers the
    kernel's READDIRPLUS in its own format, with every name once."""
    remote = os.path.join(sshd.remote_dir, remote_subdir, "big")
    os.mkdir(remote)
    want = {f"entry-{i:05d}-" + "x" * 40 for i in range(3000)}
    for name in want:
        open(os.path.join(remote, name), "w").close()
    m = mount_steadyfs(sshd, remote_subdir=remote_subdir, opts=MOUNT_OPTS)
    it = os.scandir(m.path("big"))
    try:
        got = [next(it).name for _ in range(10)]
        old = m.daemon_pid()
        os.kill(old, signal.SIGKILL)
        assert wait_new_daemon(m, old), "no new daemon after the kill"
        got += [e.name for e in it]
    finally:
        it.close()
    assert len(got) == len(want) and set(got) == want
