#!/usr/bin/python3
"""A model-based random checker of steadyfs under faults (issue 14, B).

A seed makes a trace: random calls over several files, folders and
descriptors at once (write, pwrite, O_APPEND write, read, truncate and
ftruncate up and down, copy_file_range, mmap reads and writes with msync,
fallocate, rename of files and folders over existing targets, link,
unlink, rmdir, symlink, readlink, chmod, utimens, mkdir, readdir, stat),
with faults at random points: transport cuts and blackholes shorter than
op_timeout/4 (invisible: no call may fail), longer outages (EIO only where
docs/retries.md allows it), SIGKILL of the daemon (the keeper restarts
it) and `steadyfs --upgrade`. Every answer and every byte read is checked
against the model of test/fsmodel.py, and the server's copy (the sshd's
folder, read on the local disk) after every outage, kill and upgrade and
at the end. The calls run in a child process (test/modelexec.py) with a
deadline; the mount goes through test/faultproxy.py to a throwaway sshd.

    /usr/bin/python3 test/modelcheck.py --seed 7 --ops 300
    /usr/bin/python3 test/modelcheck.py --seed 7 --ops 300 --faults none
    /usr/bin/python3 test/modelcheck.py --minutes 10          # soak, many seeds
    /usr/bin/python3 test/modelcheck.py --trace build/modelcheck-7.json

It prints its seed; on a divergence it prints the shortest trace it finds
(replaying shorter prefixes and traces with steps removed, for at most
--shrink-seconds) and the command that replays it. STEADYFS_MODEL_KNOWN_BUGS=1
(or --known-bugs) also makes the calls that hit the open findings of issue
14: renaming or removing a file or folder that has open descriptors
(findings 1 and 10), a truncate below writes still queued (finding 2) and
writes filling the window during an outage (finding 3). docs/modelcheck.md
says more.
"""

import argparse
import collections
import errno
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import faultproxy  # noqa: E402
import mounts  # noqa: E402
import sshdfix  # noqa: E402
from fsmodel import hidden  # noqa: E402
from modelplan import (FAULT_KINDS, FAULT_RATE, KNOWN_BUGS,  # noqa: E402
                       KNOWN_BUGS_ENV, fmt_step, known_bugs_default, known_str, make_trace,
                       parse_known)
from modelworlds import DEATH_WORLDS, MAX_WORLDS, Divergence, Worlds, ename  # noqa: E402

OP_TIMEOUT, CONNECT_TIMEOUT = 4, 2
MOUNT_OPTS = {"op_timeout": OP_TIMEOUT, "connect_timeout": CONNECT_TIMEOUT,
              "backoff_min": 0.2, "backoff_max": 1,
              "ServerAliveInterval": 1, "ServerAliveCountMax": 2,
              "connections": 2}
# No answer this long is a hung call (the contract says op_timeout; this
# is far past it so a busy machine never trips it).
HANG_BOUND = 3 * OP_TIMEOUT + 20
SETTLE_BOUND = 60            # reconnected and every write acknowledged
SEEDS_FILE = os.path.join(HERE, "modelcheck-seeds.txt")
TRACES_DIR = os.path.join(HERE, "modelcheck-traces")

# ---- the executor child ----------------------------------------------------------

class Hang(Exception):
    pass


class Executor:
    """modelexec.py in a child process, rooted at the mount."""

    def __init__(self, root):
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "modelexec.py"), root],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True)
        self.buf = b""

    def call(self, req, timeout=HANG_BOUND):
        self.send(req)
        return self.receive(timeout)

    def send(self, req):
        self.proc.stdin.write((json.dumps(req) + "\n").encode())
        self.proc.stdin.flush()

    def receive(self, timeout=HANG_BOUND):
        deadline = time.monotonic() + timeout
        # The pipe gives 64 KiB a read and a `cat` of an 8 MiB file is a
        # 16 MiB answer: only the newest piece is searched, and the pieces
        # joined once (growing one buffer and searching all of it at each
        # read took over 32 s on a loaded machine: soak seed 700073).
        parts = [self.buf]
        while b"\n" not in parts[-1]:
            left = deadline - time.monotonic()
            if left <= 0:
                self.buf = b"".join(parts)
                raise Hang(f"no answer in {timeout} s")
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 1 << 20)
                if not chunk:
                    err = self.proc.stderr.read().decode(errors="replace")[-2000:]
                    self.proc.wait()
                    raise Hang(f"executor died (status {self.proc.returncode}): {err}")
                parts.append(chunk)
        line, _, self.buf = b"".join(parts).partition(b"\n")
        return json.loads(line)

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=OP_TIMEOUT + 5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass  # stuck in the kernel: the mount's abort frees it
        for f in (self.proc.stdout, self.proc.stderr):
            f.close()


def server_snapshot(root):
    """(view, mtimes) of the server's folder, read on the local disk."""
    view, mt = {}, {}
    for dirpath, dirs, files in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        rel = "" if rel == "." else rel
        dirs[:] = [d for d in dirs if not hidden(d)]
        for name in dirs + [f for f in files if not hidden(f)]:
            p = f"{rel}/{name}" if rel else name
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            mt[p] = int(st.st_mtime)
            if os.path.islink(full):
                view[p] = ("l", None, os.readlink(full))
            elif os.path.isdir(full):
                view[p] = ("d", st.st_mode & 0o7777, None)
            else:
                with open(full, "rb") as f:
                    view[p] = ("f", st.st_mode & 0o7777, f.read())
    return view, mt


# ---- one run ---------------------------------------------------------------------

class Stats:
    def __init__(self):
        self.ops = collections.Counter()
        self.faults = collections.Counter()
        self.errors = collections.Counter()   # allowed errors, by op and errno
        self.notes = set()
        self.runs = 0
        self.settles = 0      # server copy compared with the model
        self.failed = []      # seeds that diverged

    def calls(self):
        return sum(self.ops.values())

    def merge(self, o):
        self.ops.update(o.ops)
        self.faults.update(o.faults)
        self.errors.update(o.errors)
        self.notes |= o.notes
        self.runs += o.runs
        self.settles += o.settles
        self.failed += o.failed

    def to_json(self):
        return {"ops": self.ops, "faults": self.faults, "errors": self.errors,
                "notes": sorted(self.notes), "runs": self.runs,
                "settles": self.settles, "failed": self.failed}

    @classmethod
    def from_json(cls, d):
        st = cls()
        st.ops.update(d["ops"])
        st.faults.update(d["faults"])
        st.errors.update(d["errors"])
        st.notes = set(d["notes"])
        st.runs, st.settles, st.failed = d["runs"], d["settles"], d["failed"]
        return st

    def report(self):
        lines = [f"runs: {self.runs}, calls: {self.calls()}, faults: "
                 f"{sum(self.faults.values())}, server copy compared: {self.settles} times"]
        lines.append("calls by type: " + ", ".join(
            f"{k} {v}" for k, v in sorted(self.ops.items())))
        lines.append("faults by kind: " + (", ".join(
            f"{k} {v}" for k, v in sorted(self.faults.items())) or "none"))
        if self.errors:
            lines.append("errors the contract allowed: " + ", ".join(
                f"{k} {v}" for k, v in sorted(self.errors.items())))
        for n in sorted(self.notes):
            lines.append("note: " + n)
        return "\n".join(lines)


class Env:
    """An sshd to mount from, and a folder for mounts and logs."""

    def __init__(self, sshd, workdir):
        self.sshd, self.workdir = sshd, workdir
        self.count = 0

    def fresh_subdir(self):
        self.count += 1
        name = tempfile.mkdtemp(prefix=f"model{self.count}-", dir=self.sshd.remote_dir)
        return os.path.basename(name)


class Run:
    """One trace against a fresh mount through a fault proxy."""

    def __init__(self, env, trace, log=None, settle_every=0):
        self.env, self.trace = env, trace
        # Also a settle point after this many calls without one (0: only
        # after outages, kills, upgrades and at the end): a long trace's
        # server copy is compared often and the worlds' logs stay short.
        self.settle_every = settle_every
        self.since_settle = 0
        # The steps as run: the trace with each of those settle points
        # written in as a {"fault": "settle"} step, so a shrunk or saved
        # trace replays them where they were (soak seeds 400008-400055:
        # their traces, replayed without them, passed).
        self.ran = []
        self.finishing = False
        self.log = log or (lambda s: None)
        self.stats = Stats()
        self.stats.runs = 1
        self.worlds = Worlds()
        self.outage = None      # (mode, end time) while an outage is on
        self.timer = None
        self.kill_next = None   # a kill to make while the next call runs
        self.events_seq = 0     # the last .control/events line looked at
        self.old_sessions = set()
        self.mount = self.proxy = self.ex = None

    def control(self, name, timeout=3.0):
        p = subprocess.run(["cat", self.mount.path(".control", name)],
                           capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        if p.returncode:
            raise OSError(errno.EIO, p.stderr.strip())
        return p.stdout

    def status(self):
        try:
            return json.loads(self.control("status.json"))
        except (OSError, ValueError, subprocess.SubprocessError):
            return {}

    def setup(self):
        self.sub = self.env.fresh_subdir()
        self.remote = os.path.join(self.env.sshd.remote_dir, self.sub)
        self.proxy = faultproxy.FaultProxy(self.env.sshd.host, self.env.sshd.port).start()
        self.env.sshd.add_known_host(self.proxy.port)
        self.mount = mounts.mount_steadyfs(
            self.env.sshd, remote_subdir=self.sub, opts=MOUNT_OPTS,
            port=self.proxy.port, expect_errors=True, workdir=self.env.workdir)
        self.ex = Executor(self.mount.mountpoint)

    def teardown(self):
        self._join_timer()
        if self.proxy:
            self.proxy.restore()
        if self.ex:
            self.ex.stop()
        if self.mount:
            self.mount.cleanup()
            self.mount.remove_mirror()
        if self.proxy:
            self.proxy.stop()

    def run(self):
        """None when every answer fitted the model, else a Divergence."""
        try:
            self.setup()
            for i, s in enumerate(self.trace):
                self.ran.append(s)
                self.log(f"{i:5d} {fmt_step(s)}")
                if "fault" in s:
                    self.fault(i, s)
                else:
                    self.call(i, s)
            self.finishing = True
            self.finish(len(self.trace))
            return None
        except Divergence as d:
            d.stderr = self.mount.stderr_text() if self.mount else ""
            # Its index from now on is in d.trace (past its end when the
            # final check failed).
            d.trace = self.ran
            d.index = len(self.ran) - (0 if self.finishing else 1)
            return d
        finally:
            self.teardown()

    # ---- calls -------------------------------------------------------------

    def call(self, i, s):
        w0 = self.worlds.all[0]
        if s["op"] in ("mmap_read", "mmap_write"):
            # A page fault past the end is SIGBUS: only inside the file
            # as every world sees it (and never during an outage).
            f = w0.fds.get(s["fd"])
            if self.outage or f is None or any(
                    s["fd"] not in w.fds or s["off"] + s["len"] >
                    len(w.inodes[w.fds[s["fd"]].ino].data()) for w in self.worlds.all):
                return
        if any(k in s and s[k] not in w.fds for k in ("fd", "src")
               for w in self.worlds.all) or \
                s["op"] == "open" and s["id"] in w0.fds or \
                any(w.expect(s) is None for w in self.worlds.all):
            return  # no world can say what this call must do
        kill, self.kill_next = self.kill_next, None
        try:
            self.ex.send(s)
            if kill:
                time.sleep(kill["during"])  # where the kill lands, not a synchronisation
                pid = self.kill_daemon(i, kill)  # counted as a kill during a call
            res = self.ex.receive()
        except Hang as e:
            raise Divergence(i, s, f"hung: {e}")
        self.log(f"      -> {_fmt_res(res)}")
        if kill:
            # Answered by the daemon that died, or resent to the next one
            # (FUSE_NOTIFY_RESEND): both orders are right.
            self.wait_new_daemon(i, kill, pid)
            self.wait_sessions_gone(i, kill)
            self.worlds.step_around_death(i, s, res, self.lost_paths())
            self.note_cut()
        else:
            self.worlds.step(i, s, res, self.outage is not None)
        self.stats.ops[s["op"]] += 1
        if not res.get("ok"):
            if res["errno"] == errno.EOPNOTSUPP and s["op"] == "fallocate":
                self.stats.notes.add("fallocate: EOPNOTSUPP (steadyfs has no "
                                     "fallocate; the model expects that)")
            elif self.outage is not None:
                self.stats.errors[f"{s['op']} {ename(res['errno'])}"] += 1
        self.since_settle += 1
        if kill:
            self.settle(i, kill)
        elif len(self.worlds.all) > MAX_WORLDS:
            self.settle(i, s)
        elif self.settle_every and self.since_settle >= self.settle_every and \
                self.outage is None and not (self.timer and self.timer.is_alive()):
            point = {"fault": "settle"}
            if not self.finishing:
                self.ran.append(point)
            self.settle(i, point)

    # ---- faults --------------------------------------------------------------

    def _join_timer(self):
        if self.timer:
            self.timer.join()
            self.timer = None

    def fault(self, i, s):
        kind = s["fault"]
        if kind == "settle":
            # Not a fault: a settle point written into a trace (the server's
            # copy is compared right here, before later calls hide a late write).
            if self.outage is None and not (self.timer and self.timer.is_alive()):
                self.settle(i, s)
            return
        if kind == "throttle":
            # Not a fault either (traces only): each connection's bytes
            # limited to `rate` per second each way (0: unlimited), so
            # writes queued on one session are still on their way when a
            # call sent on another reaches the server.
            self.proxy.configure(rate=s["rate"])
            return
        self._join_timer()
        if self.kill_next:
            k, self.kill_next = self.kill_next, None
            self.after_kill(i, k, self.kill_daemon(i, k))
        if kind in ("cut", "blackhole"):
            if self.outage:
                return
            self.stats.faults[f"{kind} (short)"] += 1
            (self.proxy.cut if kind == "cut" else self.proxy.blackhole)()
            self.timer = threading.Timer(s["secs"], self.proxy.restore)
            self.timer.start()
        elif kind == "outage":
            if self.outage:
                return
            self.stats.faults[f"outage {s['mode']}"] += 1
            (self.proxy.cut if s["mode"] == "cut" else self.proxy.blackhole)()
            self.outage = (s["mode"], time.monotonic() + s["secs"], s.get("drop"))
        elif kind == "outage_end":
            if not self.outage:
                return
            left = self.outage[1] - time.monotonic()
            if left > 0:
                time.sleep(left)  # the outage's length, not a synchronisation
            if self.outage[2]:
                self.proxy.cut()
            self.proxy.restore()
            self.outage = None
            self.settle(i, s)
        elif kind == "kill":
            if self.outage:
                return
            if s.get("during") is not None:
                self.kill_next = s
                return
            self.after_kill(i, s, self.kill_daemon(i, s))
        elif kind == "upgrade":
            if self.outage:
                return
            self.stats.faults["upgrade"] += 1
            pid = self.mount.daemon_pid()
            p = subprocess.run([os.path.join(mounts.build_dir(), "steadyfs"),
                                "--upgrade", self.mount.mountpoint],
                               capture_output=True, text=True, timeout=120,
                               stdin=subprocess.DEVNULL)
            if p.returncode:
                raise Divergence(i, s, f"upgrade: exit {p.returncode}: "
                                 f"{(p.stdout + p.stderr).strip()[-300:]}")
            self.wait_new_daemon(i, s, pid)
            # With the link up the old daemon hands over once its writes
            # are acknowledged: nothing may be lost (retries.md allows a
            # loss only for an upgrade during an outage).
            self.settle(i, s)

    def sessions(self):
        """Pids of the sshd's session processes (this run's mount only:
        runs do not share a moment on one sshd)."""
        return set(sshdfix.descendants(self.env.sshd.pid or 0))

    def kill_daemon(self, i, s):
        self.stats.faults["daemon kill" + (" during a call" if s.get("during") is not None
                                           else "")] += 1
        pid = self.mount.daemon_pid()
        if pid is None:
            raise Divergence(i, s, "kill: the keeper has no daemon child")
        self.old_sessions = self.sessions()
        os.kill(pid, signal.SIGKILL)
        return pid

    def after_kill(self, i, s, pid):
        self.wait_new_daemon(i, s, pid)
        self.wait_sessions_gone(i, s)
        self.worlds.daemon_died(self.lost_paths())
        self.note_cut()
        self.settle(i, s)

    def note_cut(self):
        if self.worlds.cut:
            self.stats.notes.add(f"worlds cut at a daemon death (past {DEATH_WORLDS}): "
                                 "a divergence after it may be the model's")

    def lost_paths(self):
        """The files (paths under the test folder) the new daemon reported
        write-behind data of lost with the one that died: `data` events
        with `lost` since the last look (retries.md: never lost silently).
        None when the events cannot be read: then any holder may have."""
        try:
            lines = self.control("events").splitlines()
        except (OSError, subprocess.SubprocessError):
            return None
        out = set()
        for line in lines:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if e.get("seq", 0) <= self.events_seq:
                continue
            self.events_seq = e.get("seq", 0)
            if e.get("type") == "data" and e.get("lost"):
                out.add(os.path.relpath(e.get("path") or "/", self.remote))
        return out

    def wait_sessions_gone(self, i, s):
        """The dead daemon's writes already in its sockets still reach
        the server (M6: after the new daemon called them lost); what the
        server holds is known once its sessions have ended there."""
        old, self.old_sessions = self.old_sessions, set()
        if not mounts.wait_gone(list(old), SETTLE_BOUND):
            raise Divergence(i, s, f"the killed daemon's sshd sessions {sorted(old)} "
                             f"did not end in {SETTLE_BOUND} s")

    def wait_new_daemon(self, i, s, old):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            pid = self.mount.daemon_pid()
            if pid not in (None, old) and self.status().get("daemon_pid") == pid:
                return
            if not self.mount.alive():
                break
            time.sleep(0.05)
        raise Divergence(i, s, "no new daemon serving within 20 s")

    def settle(self, i, s):
        """Wait until the pool is connected and every write is
        acknowledged (or reported lost), then keep the worlds whose server
        copy is the one on disk."""
        deadline = time.monotonic() + SETTLE_BOUND
        st = {}
        while time.monotonic() < deadline:
            st = self.status()
            if st.get("state") == "connected" and st.get("unacked_bytes") == 0:
                break
            time.sleep(0.05)
        else:
            raise Divergence(i, s, f"settle: not connected with nothing queued "
                             f"after {SETTLE_BOUND} s: state {st.get('state')}, "
                             f"unacked {st.get('unacked_bytes')}")
        view, mt = server_snapshot(self.remote)
        miss = self.worlds.observe(view, mt)
        self.stats.settles += 1
        self.since_settle = 0
        if miss:
            raise Divergence(i, s, f"{miss} (after state {st.get('state')}, "
                             f"unacked_bytes {st.get('unacked_bytes')}; "
                             f"{len(self.worlds.all)} worlds)")

    def finish(self, i):
        """Close every descriptor, then check the server's copy and what
        the mount shows."""
        end = {"fault": "final check"}
        self._join_timer()
        if self.kill_next:
            self.fault(i, end)
        if self.outage:
            self.fault(i, {"fault": "outage_end"})
        for fid in sorted(self.worlds.all[0].fds):
            self.call(i, {"op": "close", "fd": fid})
        self.wait_hidden_gone(i, end)
        self.settle(i, end)
        w = self.worlds.all[0]
        for p in sorted(w.names):
            n = w.node(p)
            if n.kind == "d":
                self.call(i, {"op": "readdir", "path": p})
            elif n.kind == "f":
                self.call(i, {"op": "cat", "path": p})
            else:
                self.call(i, {"op": "readlink", "path": p})
            if p:
                self.call(i, {"op": "lstat", "path": p})

    def wait_hidden_gone(self, i, end):
        """No hidden name left once every descriptor is released."""
        deadline = time.monotonic() + SETTLE_BOUND
        while True:
            left = [dp for dp, ds, fs in os.walk(self.remote)
                    for n in ds + fs if hidden(n)]
            if not left:
                break
            if time.monotonic() > deadline:
                raise Divergence(i, end, f"hidden names left on the server: {left}")
            time.sleep(0.05)


def _fmt_res(res):
    if not res.get("ok"):
        return ename(res["errno"])
    out = []
    for k, v in res.items():
        if k == "ok":
            continue
        if k == "data":
            v = f"<{len(v) // 2} bytes>"
        out.append(f"{k}={v}")
    return "ok " + " ".join(out)


# ---- shrinking ---------------------------------------------------------------------

def shrink(env, trace, div, budget, log=print):
    """The shortest trace found within `budget` seconds that still diverges
    the same way: first the prefix up to the divergence, then chunks and
    single steps removed. Each try is a fresh mount."""
    deadline = time.monotonic() + budget
    sig = div.signature()
    best, best_div = trace[:div.index + 1], div
    tries = 0

    def fails(t):
        nonlocal tries
        tries += 1
        d = Run(env, t).run()
        return d if d is not None and d.signature() == sig else None

    d = fails(best)
    if d is None:
        log(f"shrink: the prefix of {len(best)} steps did not diverge again "
            f"(timing); keeping the whole trace")
        best = trace
    else:
        best, best_div = best[:d.index + 1], d
    chunk = max(1, len(best) // 2)
    while chunk >= 1 and time.monotonic() < deadline:
        start, changed = 0, False
        while start < len(best) and time.monotonic() < deadline:
            cand = best[:start] + best[start + chunk:]
            d = fails(cand) if cand else None
            if d is not None:
                best, best_div, changed = cand[:d.index + 1], d, True
            else:
                start += chunk
        if not changed:
            chunk //= 2
    log(f"shrink: {len(trace)} -> {len(best)} steps in {tries} tries")
    return best, best_div


# ---- driving ---------------------------------------------------------------------

def print_divergence(d, trace, out=print):
    out(f"DIVERGENCE at step {d.index}: {fmt_step(d.step)}")
    out(f"  {d.what}")
    out("trace:")
    for j, s in enumerate(trace):
        out(f"  {j:4d} {fmt_step(s)}")


def save_trace(trace, path, meta):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(dict(meta, trace=trace), f, indent=0)
    return path


def check_seed(env, seed, n_ops, faults, known_bugs, shrink_secs=0, log=None,
               out=print, fault_rate=FAULT_RATE, settle_every=0):
    """Run one seed. Returns (divergence or None, stats, shrunk trace)."""
    trace = make_trace(seed, n_ops, faults, known_bugs, fault_rate)
    run = Run(env, trace, log, settle_every)
    d = run.run()
    if d is None:
        return None, run.stats, None
    # The steps as run, with their settle points: shrunk and replayed
    # without --settle-every.
    trace = d.trace
    small = trace[:d.index + 1]
    if shrink_secs:
        small, d = shrink(env, trace, d, shrink_secs, log=out)
    return d, run.stats, small


def replay_command(seed, n_ops, faults, known_bugs, fault_rate=FAULT_RATE,
                   settle_every=0):
    kb = f"{KNOWN_BUGS_ENV}={known_str(known_bugs)} " if known_bugs else ""
    fr = f" --fault-rate {fault_rate}" if fault_rate != FAULT_RATE else ""
    se = f" --settle-every {settle_every}" if settle_every else ""
    return (f"{kb}STEADYFS_BUILD={mounts.build_dir()} /usr/bin/python3 "
            f"test/modelcheck.py --seed {seed} --ops {n_ops} --faults "
            f"{','.join(faults) or 'none'}{fr}{se}")


def parse_faults(s):
    if s in ("all", ""):
        return list(FAULT_KINDS)
    if s == "none":
        return []
    out = s.split(",")
    bad = [f for f in out if f not in FAULT_KINDS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown fault kinds {bad}; known: {FAULT_KINDS}")
    return out


def report_divergence(d, small, seed, args):
    print_divergence(d, small)
    kb = known_str(args.known_bugs) if args.known_bugs else ""
    path = save_trace(small, os.path.join(
        mounts.build_dir(), f"modelcheck-{seed}{'-' + kb if kb else ''}.json"),
        {"seed": seed, "ops": args.ops, "faults": args.faults,
         "fault_rate": args.fault_rate, "known_bugs": sorted(args.known_bugs),
         "divergence": f"step {d.index}: {d.what}"})
    with open(path[:-5] + ".stderr", "w") as f:
        f.write(getattr(d, "stderr", ""))
    print(f"daemon log: {path[:-5]}.stderr")
    print("replay the seed:  " + replay_command(seed, args.ops, args.faults,
                                                args.known_bugs, args.fault_rate,
                                                args.settle_every))
    print(f"replay the trace: /usr/bin/python3 test/modelcheck.py --trace {path}")


def run_seeds(env, args, total):
    """New seeds (args.seed, then every args.seed_step-th) until --seeds
    of them, --minutes or --total-ops are done."""
    seed, t0 = args.seed, time.monotonic()
    t_end = t0 + args.minutes * 60
    log = print if args.verbose else None
    n = 0
    while True:
        print(f"modelcheck: seed {seed}, {args.ops} calls, faults "
              f"{','.join(args.faults) or 'none'}"
              f"{', fault rate ' + str(args.fault_rate) if args.fault_rate != FAULT_RATE else ''}"
              f"{', known bugs ' + known_str(args.known_bugs) if args.known_bugs else ''}",
              flush=True)
        t = time.monotonic()
        d, st, small = check_seed(env, seed, args.ops, args.faults, args.known_bugs,
                                  args.shrink_seconds, log, fault_rate=args.fault_rate,
                                  settle_every=args.settle_every)
        total.merge(st)
        now = time.monotonic()
        print(f"modelcheck: seed {seed}: {st.calls()} calls, "
              f"{sum(st.faults.values())} faults in {now - t:.0f} s; "
              f"{total.calls()} calls so far, {total.calls() / (now - t0):.1f} calls/s",
              flush=True)
        if d:
            total.failed.append(seed)
            report_divergence(d, small, seed, args)
            if not args.keep_going:
                return
        n += 1
        seed += args.seed_step
        if args.total_ops and total.calls() >= args.total_ops:
            return
        if args.minutes and now >= t_end:
            return
        if not args.minutes and not args.total_ops and n >= args.seeds:
            return


def run_jobs(args, argv):
    """--jobs J: J copies of this program, each with an sshd and a mount
    of its own, taking every J-th seed; their totals are added up."""
    work = tempfile.mkdtemp(prefix="modelcheck-jobs-")
    procs, pumps = [], []
    total, t0 = Stats(), time.monotonic()
    base = _strip_job_args(argv)
    try:
        for k in range(args.jobs):
            cmd = [sys.executable, os.path.abspath(__file__)] + base + [
                "--seed", str(args.seed + k), "--seed-step", str(args.jobs * args.seed_step),
                "--stats-json", os.path.join(work, f"{k}.json")]
            if args.total_ops:
                cmd += ["--total-ops", str(-(-args.total_ops // args.jobs))]
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, text=True, bufsize=1)
            procs.append(p)
            th = threading.Thread(target=_pump, args=(p.stdout, f"[job {k}] "), daemon=True)
            th.start()
            pumps.append(th)
        for p in procs:
            p.wait()
        for th in pumps:
            th.join()
        for k, p in enumerate(procs):
            try:
                with open(os.path.join(work, f"{k}.json")) as f:
                    total.merge(Stats.from_json(json.load(f)))
            except (OSError, ValueError):
                total.failed.append(f"job {k} (exit {p.returncode}, no totals)")
    finally:
        for p in procs:
            if p.poll() is None:
                # The job turns it into KeyboardInterrupt (_interrupt_on_term)
                # and cleans up its mount and sshd.
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        shutil.rmtree(work, ignore_errors=True)
    return total, time.monotonic() - t0


def _pump(f, prefix):
    for line in f:
        sys.stdout.write(prefix + line)
        sys.stdout.flush()


def _strip_job_args(argv):
    """argv without --jobs, --seed, --total-ops (each job gets its own)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        name = a.split("=", 1)[0]
        if name in ("--jobs", "--seed", "--total-ops", "--seed-step", "--stats-json"):
            skip = "=" not in a
            continue
        out.append(a)
    return out


def _interrupt_on_term():
    """SIGTERM (and SIGINT, even when started under nohup) end a run as
    Ctrl-C does: its mount, proxy and sshd are cleaned up on the way out."""
    def stop(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if threading.current_thread() is threading.main_thread():
        _interrupt_on_term()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, help="first seed (default: from the clock)")
    ap.add_argument("--seeds", type=int, default=1, help="how many seeds from --seed")
    ap.add_argument("--ops", type=int, default=300, help="calls per seed")
    ap.add_argument("--faults", type=parse_faults, default=list(FAULT_KINDS),
                    help="comma list of " + ",".join(FAULT_KINDS) + ", all or none")
    ap.add_argument("--fault-rate", type=float, default=FAULT_RATE,
                    help=f"chance of a fault before each call (default {FAULT_RATE}); "
                    "part of what replays a seed")
    ap.add_argument("--settle-every", type=int, default=0,
                    help="also compare the server's copy after this many calls "
                    "without a settle point (default 0: only after faults and at the end)")
    ap.add_argument("--minutes", type=float, default=0,
                    help="soak: new seeds until this much time has passed")
    ap.add_argument("--total-ops", type=int, default=0,
                    help="soak: new seeds until this many calls are done")
    ap.add_argument("--jobs", type=int, default=1,
                    help="soak: this many runs at once, each with its own sshd and mount")
    ap.add_argument("--seed-step", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--stats-json", help=argparse.SUPPRESS)
    ap.add_argument("--known-bugs", type=parse_known, nargs="?", const="all",
                    default=known_bugs_default(),
                    help=f"also the calls of open findings: all, or a comma list of "
                    f"{','.join(KNOWN_BUGS)} (or {KNOWN_BUGS_ENV}=...)")
    ap.add_argument("--shrink-seconds", type=float, default=300)
    ap.add_argument("--trace", help="replay a saved trace (JSON from a divergence)")
    ap.add_argument("--keep-going", action="store_true",
                    help="soak: go on after a divergence")
    ap.add_argument("-v", "--verbose", action="store_true", help="print each step")
    args = ap.parse_args(argv)
    if not mounts.fuse_available():
        print("modelcheck: /dev/fuse is missing", file=sys.stderr)
        return 2
    if args.seed is None:
        args.seed = int(time.time()) % 1_000_000
    try:
        if args.jobs > 1 and not args.trace:
            total, secs = run_jobs(args, argv)
        else:
            total, secs = run_here(args)
    except KeyboardInterrupt:
        print("modelcheck: interrupted (mounts and sshd cleaned up)", flush=True)
        return 130
    print(total.report())
    print(f"modelcheck: {total.calls()} calls in {secs:.0f} s "
          f"({total.calls() / max(secs, 1e-9):.1f} calls/s)")
    failed = total.failed
    print(f"modelcheck: {'FAILED seeds ' + str(failed) if failed else 'no divergence'}")
    return 1 if failed else 0


def run_here(args):
    t0 = time.monotonic()
    work = tempfile.mkdtemp(prefix="modelcheck-")
    sshd = sshdfix.Sshd(os.path.join(work, "sshd")).start()
    env = Env(sshd, work)
    total = Stats()
    try:
        if args.trace:
            with open(args.trace) as f:
                meta = json.load(f)
            print(f"modelcheck: replaying {args.trace} ({len(meta['trace'])} steps)")
            # Saved traces hold their settle points; --settle-every adds
            # more (for a trace saved before they were written in).
            run = Run(env, meta["trace"], print if args.verbose else None,
                      args.settle_every)
            d = run.run()
            total.merge(run.stats)
            if d:
                print_divergence(d, d.trace[:d.index + 1])
                total.failed.append(meta.get("seed"))
                # One file per replay: several may run at once.
                log = os.path.join(mounts.build_dir(),
                                   f"modelcheck-trace-{os.getpid()}.stderr")
                with open(log, "w") as f:
                    f.write(getattr(d, "stderr", ""))
                print(f"daemon log: {log}")
        else:
            run_seeds(env, args, total)
    finally:
        sshd.stop()
        shutil.rmtree(work, ignore_errors=True)
        if args.stats_json:
            with open(args.stats_json, "w") as f:
                json.dump(total.to_json(), f)
    return total, time.monotonic() - t0


if __name__ == "__main__":
    sys.exit(main())
