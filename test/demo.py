"""`make demo`: steadyfs riding out a transport outage and the death of its
own daemon, for a person to watch.

    /usr/bin/python3 test/demo.py --build build

The steps, each announced with a header:

 1. a throwaway OpenSSH sshd on 127.0.0.1 serving a temp folder, with the
    test suite's fault proxy in front of it;
 2. a steadyfs mount through the proxy, with test-scale timeouts;
 3. a file written and read through the mount, and the server's copy;
 4. a writer appending to a file (with a periodic fsync) while the
    transport is cut for about three seconds and restored;
 5. the check of step 4: the server's copy has the sha256 of exactly what
    was written, and no call failed with ENOTCONN;
 6. the daemon itself is killed: with a writer appending and fsyncing
    after every block, the daemon child (its pid from .control/status.json,
    checked against the keeper's children; never the keeper) gets SIGKILL;
    the keeper starts a new one, which must serve as the next generation
    with the reason "killed by signal 9" while the writer's descriptor
    keeps working. An fsync or write failing with EIO is allowed only
    where the killed daemon held unacknowledged data (a "lost" data event
    names the file; the documented behaviour); every byte whose fsync
    returned 0 must be on the server, in order;
 7. `steadyfs --upgrade MOUNTPOINT` under the same kind of writer: the
    next generation with the reason "upgrade", zero failed calls, and the
    server's copy byte for byte what was written;
 8. clean up.

While a writer runs, a status line every second (every half second in
steps 6 and 7) shows the bytes written (and acknowledged by fsync), the
latency of the writer's last call, whether the mount answers `stat`, the
daemon's pid and generation and the mount's state; the daemon's own log
lines are shown as they appear.

Everything it starts (sshd, proxy, steadyfs, steadyfs --upgrade) is
stopped by pid and the mount is removed whatever happens (try/finally);
the daemon's log must hold no sanitizer report. Exit status 0 when every
check passed, 1 when one failed, 2 when it cannot run here (not root, no
/dev/fuse, no sshd).

It reuses the integration-test fixtures: sshdfix.py (the sshd), faultproxy.py
(the proxy) and mounts.py (the mount, the keeper's children and cleanup).
"""

import argparse
import errno
import hashlib
import json
import os
import shlex
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

# Test-scale timeouts: a session is declared dead after 1 s x 2 missed pings,
# reconnects back off up to 1 s, and no call may block more than 4 s.
MOUNT_OPTS = {"op_timeout": 4, "connect_timeout": 2, "backoff_max": 1,
              "ServerAliveInterval": 1, "ServerAliveCountMax": 2}
OP_TIMEOUT = 4.0
CUT_AT = 2.0            # seconds into the writer phase
CUT_FOR = 3.0
AFTER_RECOVERY = 3.0    # keep writing this long once the state is back up
RECOVERY_LIMIT = 1 + 2 + 2 + CUT_FOR  # backoff_max + connect_timeout + 2 s slack
CHUNK = 64 * 1024
WRITE_EVERY = 0.05      # about 1.25 MiB/s
FSYNC_EVERY = 0.5
# Steps 6 and 7: the kill (or the upgrade) this long into the writer's run,
# a new daemon serving within RESTART_LIMIT of it (the keeper restarts at
# once; an upgrade first connects a session), then writing on for a while.
ACT_AT = 1.0
RESTART_LIMIT = 8.0
AFTER_RESTART = 2.0
STATUS_EVERY = 0.5
WATCHDOG = 120          # the whole demo, in seconds


def say(text=""):
    print(text, flush=True)


def section(title):
    say()
    say(f"== {title} " + "=" * max(3, 66 - len(title)))


def mib(n):
    return f"{n / 1048576:.2f} MiB"


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def ls_l(path):
    r = subprocess.run(["ls", "-l", "--time-style=+%H:%M:%S", path],
                       capture_output=True, text=True, timeout=10)
    return (r.stdout or r.stderr).strip()


def bounded(fn, timeout, what):
    """Runs fn() in a thread so that a call stuck on the mount cannot hang
    the demo; returns its result or raises."""
    box = {}

    def run():
        try:
            box["r"] = fn()
        except BaseException as e:  # handed back below
            box["e"] = e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise RuntimeError(f"{what}: no answer after {timeout:g} s")
    if "e" in box:
        raise box["e"]
    return box.get("r")


class Failed(Exception):
    pass


# ---- the daemon's log ----------------------------------------------------

class LogTail:
    """New lines of the daemon's stderr since the last call."""

    def __init__(self, path):
        self.path, self.pos = path, 0

    def skip(self):
        try:
            self.pos = os.path.getsize(self.path)
        except OSError:
            pass

    def new_lines(self):
        try:
            with open(self.path, errors="replace") as f:
                f.seek(self.pos)
                data = f.read()
        except OSError:
            return []
        end = data.rfind("\n") + 1
        self.pos += len(data[:end].encode())
        return data[:end].splitlines()


# ---- the writer ----------------------------------------------------------

class Writer(threading.Thread):
    """Appends CHUNK-sized random blocks to `path` every WRITE_EVERY s and
    fsyncs every FSYNC_EVERY s (after every block with `fsync_each`), until
    stopped; then a last fsync and close. Keeps every block whose write()
    succeeded with whether an fsync acknowledged it, the sha256 of all of
    them, the latency of each call and every error.

    A block is acknowledged when the first fsync after its write returns 0
    with no failed call in between: a failed write or fsync means data
    written since the last good fsync may be gone (it was reported), so
    those blocks stay unacknowledged for good."""

    def __init__(self, path, fsync_each=False):
        super().__init__(name="writer", daemon=True)
        self.path = path
        self.fsync_each = fsync_each
        self.sha = hashlib.sha256()
        self.written = 0
        self.blocks = []            # [data, acknowledged]
        self.synced = 0             # blocks[:synced] are settled
        self.acked = 0              # bytes acknowledged by fsync
        self.calls = 0
        self.errors = []            # (t it failed, call, errno)
        self.max_latency = {}       # call -> seconds
        self.last = ("", 0.0)       # last finished call and its latency
        self.current = None         # (call, started) while one runs
        self.closed_ok = False
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()
        self.t0 = time.monotonic()

    def call(self, name, fn, *args):
        start = time.monotonic()
        with self.lock:
            self.current = (name, start)
            self.calls += 1
        try:
            return fn(*args)
        except OSError as e:
            with self.lock:   # when it failed: a call made before a kill fails after it
                self.errors.append((time.monotonic() - self.t0, name, e.errno))
                self.synced = len(self.blocks)   # never acknowledged now
            return None
        finally:
            took = time.monotonic() - start
            with self.lock:
                self.current = None
                self.last = (name, took)
                self.max_latency[name] = max(self.max_latency.get(name, 0), took)

    def fsync(self, fd):
        before = len(self.errors)
        self.call("fsync", os.fsync, fd)
        with self.lock:
            if len(self.errors) == before:
                for b in self.blocks[self.synced:]:
                    b[1] = True
                    self.acked += len(b[0])
            self.synced = len(self.blocks)

    def run(self):
        fd = self.call("open", os.open, self.path,
                       os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if fd is None:
            return
        next_fsync = time.monotonic() + FSYNC_EVERY
        while not self.stop_flag.is_set():
            block = os.urandom(CHUNK)
            n = self.call("write", os.write, fd, block)
            if n:
                with self.lock:
                    self.sha.update(block[:n])
                    self.written += n
                    self.blocks.append([block[:n], False])
            if self.fsync_each or time.monotonic() >= next_fsync:
                self.fsync(fd)
                next_fsync = time.monotonic() + FSYNC_EVERY
            self.stop_flag.wait(WRITE_EVERY)
        self.fsync(fd)
        before = len(self.errors)
        self.call("close", os.close, fd)
        self.closed_ok = len(self.errors) == before

    def snapshot(self):
        """(bytes written, bytes acknowledged, last call text, errors)."""
        with self.lock:
            cur = self.current
            now = time.monotonic()
            if cur and now - cur[1] > 0.2:
                last = f"{cur[0]} running {now - cur[1]:.1f} s"
            else:
                name, took = self.last
                last = f"{name} {took * 1000:.0f} ms" if name else "-"
            return self.written, self.acked, last, len(self.errors)


# ---- the demo's steps ------------------------------------------------------

def step_server(workdir):
    section("1. a throwaway OpenSSH server on 127.0.0.1")
    sshd = sshdfix.Sshd(os.path.join(workdir, "server"))
    sshd.start()
    say(f"sshd pid {sshd.pid} on 127.0.0.1:{sshd.port}, serving {sshd.remote_dir}")
    proxy = faultproxy.FaultProxy(sshd.host, sshd.port).start()
    sshd.add_known_host(proxy.port)
    say(f"fault proxy on 127.0.0.1:{proxy.port} -> {sshd.port} (mode: pass)")
    return sshd, proxy


def step_mount(build, sshd, proxy, workdir):
    section("2. mount steadyfs through the proxy")
    os.environ["STEADYFS_BUILD"] = build
    mnt = os.path.join(workdir, "mnt")
    m = mounts.mount_steadyfs(sshd, mountpoint=mnt, port=proxy.port,
                              opts=MOUNT_OPTS, workdir=workdir)
    say("$ " + shlex.join(m.cmd))
    say(f"steadyfs pid {m.pid}, mounted on {m.mountpoint} "
        f"(fuse.steadyfs, device {m.dev})")
    for line in LogTail(m.stderr_path).new_lines():
        say(f"  log | {line}")
    return m


def step_write_read(m, sshd):
    section("3. write and read a file, then look at the server's copy")
    text = (b"steadyfs demo: written through the mount at "
            + time.strftime("%H:%M:%S").encode() + b"\n") * 64
    local = m.path("hello.txt")
    remote = os.path.join(sshd.remote_dir, "hello.txt")

    def write_read():
        with open(local, "wb") as f:
            f.write(text)
        with open(local, "rb") as f:
            return f.read()
    back = bounded(write_read, OP_TIMEOUT + 5, "write and read")
    say(f"wrote {len(text)} bytes to {local}; read back "
        f"{'the same bytes' if back == text else 'DIFFERENT bytes'}")
    say("mount:  " + ls_l(local))
    say("server: " + ls_l(remote))
    want = hashlib.sha256(text).hexdigest()
    got_mount = bounded(lambda: sha256_file(local), OP_TIMEOUT + 5, "sha256")
    got_server = sha256_file(remote)
    say(f"sha256 mount:  {got_mount}")
    say(f"sha256 server: {got_server}")
    if back != text or got_mount != want or got_server != want:
        raise Failed("the file read back or the server's copy differs")
    say("ok: the server holds exactly what was written")


def status_line(t, writer, stat, lead, state):
    """One line of what a person watches: `lead` is the step's own column
    (the transport's mode, or the daemon's pid and generation)."""
    written, acked, last, nerr = writer.snapshot()
    synced = f"  fsynced {mib(acked):>9}" if writer.fsync_each else ""
    flag = f"  errors {nerr}" if nerr else ""
    return (f"t={t:5.1f}s  {lead}  written {mib(written):>10}{synced}  "
            f"last call {last:<22}  stat {stat}  .control: {state}{flag}")


def read_control(mountpoint, name, timeout=2.0):
    """The text of .control/NAME, read from a helper thread (the file
    never waits on the network, nor, once a new daemon serves, on a dead
    one; the thread only guards the demo against a bug). Raises OSError,
    or RuntimeError past `timeout`."""
    def read():
        with open(os.path.join(mountpoint, ".control", name)) as f:
            return f.read()
    return bounded(read, timeout, f".control/{name}")


def status_json(mountpoint, timeout=2.0):
    return json.loads(read_control(mountpoint, "status.json", timeout))


def control_view(mountpoint):
    """(status.json as a dict or None, "STATE UP/TOTAL" or what went
    wrong) for a status line."""
    try:
        st = status_json(mountpoint)
    except OSError as e:
        return None, errno.errorcode.get(e.errno, str(e.errno))
    except (RuntimeError, ValueError) as e:
        return None, str(e)
    return st, (f"{st.get('state', '?')} "
                f"{st.get('sessions_up', '?')}/{st.get('sessions_total', '?')}")


def stat_once(path, timeout=2.0):
    """stat(2) of `path` from a helper thread, waiting at most `timeout`
    (a thread stuck on a hung mount is abandoned; cleanup unblocks it).
    Returns (text, errno or None)."""
    box = {}

    def run():
        t = time.monotonic()
        try:
            os.stat(path)
            box["r"] = (f"ok ({(time.monotonic() - t) * 1000:.0f} ms)", None)
        except OSError as e:
            box["r"] = (errno.errorcode.get(e.errno, str(e.errno)), e.errno)
    th = threading.Thread(target=run, daemon=True)
    th.start()
    th.join(timeout)
    return box.get("r", (f"NO ANSWER in {timeout:g} s", None))


class Outage:
    """What step 4 saw: the writer, stat errnos, and when (seconds after
    the writer started) the transport was cut and restored and the daemon
    logged the state going down and coming back."""

    def __init__(self, writer, path):
        self.writer, self.path = writer, path
        self.stat_errnos = []
        self.cut_t = self.restore_t = self.down_t = self.back_t = None
        self.connected_t = None

    def saw(self, t, line):
        if "state:" not in line:
            return
        to = line.rstrip().rsplit(" ", 1)[-1]
        if to == "down" and self.cut_t is not None and self.down_t is None:
            self.down_t = t
        elif self.restore_t is not None and self.down_t is not None:
            if self.back_t is None:
                self.back_t = t
            if to == "connected" and self.connected_t is None:
                self.connected_t = t


def step_outage(m, proxy):
    section("4. a writer appends while the transport is cut and restored")
    say(f"appending {CHUNK // 1024} KiB every {WRITE_EVERY * 1000:.0f} ms with "
        f"an fsync every {FSYNC_EVERY:g} s; the transport is cut at "
        f"t={CUT_AT:g}s for {CUT_FOR:g} s")
    say("cut = the proxy resets every connection and refuses new ones; "
        "'stat' is stat(2) of the file")
    say("on the mount; the daemon's own log lines are marked 'log |'")
    log = LogTail(m.stderr_path)
    log.skip()
    o = Outage(Writer(m.path("crawl.warc")), m.path("crawl.warc"))
    mode = "pass"
    o.writer.start()
    t0 = o.writer.t0
    next_status, stop_at = t0 + 1.0, None
    while True:
        now = time.monotonic()
        t = now - t0
        if o.cut_t is None and t >= CUT_AT:
            proxy.cut()
            mode, o.cut_t = "CUT", t
            say(f"t={t:5.1f}s  >>> transport CUT")
        elif mode == "CUT" and t >= CUT_AT + CUT_FOR:
            proxy.restore()
            mode, o.restore_t = "pass", t
            say(f"t={t:5.1f}s  >>> transport RESTORED")
        for line in log.new_lines():
            say(f"t={t:5.1f}s  log | {line}")
            o.saw(t, line)
        if o.connected_t is not None and stop_at is None:
            stop_at = now + AFTER_RECOVERY
        if now >= next_status:
            text, e = stat_once(o.path)
            if e is not None:
                o.stat_errnos.append(e)
            say(status_line(time.monotonic() - t0, o.writer, text,
                            f"transport {mode:<4}", control_view(m.mountpoint)[1]))
            next_status = max(next_status + 1.0, time.monotonic() + 0.5)
        if stop_at is not None and now >= stop_at:
            break
        if o.restore_t is not None and t > o.restore_t + RECOVERY_LIMIT + AFTER_RECOVERY:
            break  # no recovery seen: stop and report it below
        time.sleep(0.05)
    say(f"t={time.monotonic() - t0:5.1f}s  writer: last fsync, close")
    o.writer.stop_flag.set()
    o.writer.join(OP_TIMEOUT * 2 + 2)
    for line in log.new_lines():
        say(f"t={time.monotonic() - t0:5.1f}s  log | {line}")
    return o


def step_check(o, sshd):
    section("5. is the file intact on the server?")
    w, problems = o.writer, []
    if w.is_alive():
        problems.append("the writer is still blocked after the outage")
    remote = os.path.join(sshd.remote_dir, os.path.basename(o.path))
    want = w.sha.hexdigest()
    got = sha256_file(remote) if os.path.exists(remote) else "(missing)"
    size = os.path.getsize(remote) if os.path.exists(remote) else 0
    say("server: " + ls_l(remote))
    say(f"written by the application: {w.written} bytes, sha256 {want}")
    say(f"on the server:              {size} bytes, sha256 {got}")
    lat = ", ".join(f"{k} {v * 1000:.0f} ms"
                    for k, v in sorted(w.max_latency.items()))
    say(f"longest call: {lat} (op_timeout {OP_TIMEOUT:g} s)")
    if o.down_t is not None and o.back_t is not None:
        say(f"state down at t={o.down_t:.1f}s, sessions back at "
            f"t={o.back_t:.1f}s: {o.back_t - o.restore_t:.1f} s after the "
            f"transport returned (bound {RECOVERY_LIMIT - CUT_FOR:g} s)")
    for t, call, e in w.errors:
        say(f"  t={t:5.1f}s {call}: {errno.errorcode.get(e, e)} "
            f"({os.strerror(e)})")
    if w.errors:
        say(f"note: {len(w.errors)} call(s) failed; their data stayed queued "
            "and was sent after the reconnect (docs/retries.md)")
    if got != want or size != w.written:
        problems.append("the server's copy differs from what was written")
    if not w.closed_ok:
        problems.append("close() did not return 0")
    if errno.ENOTCONN in [e for _, _, e in w.errors] + o.stat_errnos:
        problems.append("a call failed with ENOTCONN (a stale mount)")
    slow = [k for k, v in w.max_latency.items() if v > OP_TIMEOUT + 2]
    if slow:
        problems.append(f"calls blocked past op_timeout + 2 s: {', '.join(slow)}")
    if o.down_t is None:
        problems.append("the daemon never logged the state going down")
    if o.back_t is None:
        problems.append("the daemon never logged the state coming back up")
    if problems:
        raise Failed("; ".join(problems))
    say("ok: the state went down and came back, the open descriptor kept "
        "working, and the server's copy is byte for byte what was written")


# ---- steps 6 and 7: a new daemon under a running writer ---------------------

class Restart:
    """What step 6 or 7 saw: the daemon serving before (from status.json),
    the writer, and when (seconds into the writer's run) the kill or the
    upgrade happened, the keeper's new child appeared and served; `after`
    is status.json as the new daemon first answered it."""

    def __init__(self, m, writer, before):
        self.m, self.writer = m, writer
        self.old_pid = before.get("daemon_pid")
        self.gen = before.get("generation")
        self.restarts = before.get("restarts")
        self.act_t = self.new_pid = self.child_t = self.serve_t = None
        self.calls_at_act = self.errors_at_act = 0
        self.after = None
        self.stat_errnos = []

    def at(self):
        return time.monotonic() - self.writer.t0


def daemon_lead(st):
    if not st:
        return f"daemon {'?':>7} gen ?"
    return f"daemon {st.get('daemon_pid', '?'):>7} gen {st.get('generation', '?')}"


def show_daemon(st):
    say(f"keeper pid {st.get('keeper_pid')} holds the mount; daemon pid "
        f"{st.get('daemon_pid')}, generation {st.get('generation')}, serves it "
        f"(restarts {st.get('restarts')}, last restart: "
        f"{st.get('last_restart_reason') or 'none'})")


def watch_restart(r, act, what, done=lambda: True, gave_up=lambda: False):
    """Runs r.writer; ACT_AT s in, act(t) kills or upgrades. Meanwhile
    shows the daemon's log lines, the keeper's new child as soon as
    /proc lists it, a status line every STATUS_EVERY s, and the moment
    status.json says the new daemon serves as the next generation. Stops
    AFTER_RESTART s after that once done() (the upgrade command exited),
    or RESTART_LIMIT s after the act without it, or at once when
    gave_up() (the upgrade command failed); the writer is stopped
    whatever happens."""
    m, w = r.m, r.writer
    log = LogTail(m.stderr_path)
    log.skip()
    w.start()
    next_status, next_poll, stop_at = w.t0 + STATUS_EVERY, 0.0, None
    try:
        while True:
            now = time.monotonic()
            t = now - w.t0
            if r.act_t is None and t >= ACT_AT:
                with w.lock:
                    r.calls_at_act, r.errors_at_act = w.calls, len(w.errors)
                r.act_t = t
                act(t)
            # /proc first: it never waits on the mount, while a stat or a
            # .control read made before the new daemon serves waits for it.
            if r.act_t is not None and r.new_pid is None:
                kids = [p for p in m.daemon_pids() if p != r.old_pid]
                if kids:
                    r.new_pid, r.child_t = kids[-1], r.at()
                    say(f"t={r.child_t:5.1f}s  >>> the keeper runs a new daemon, "
                        f"pid {r.new_pid} ({r.child_t - r.act_t:.2f} s after the {what})")
            if r.new_pid is not None and r.serve_t is None and now >= next_poll:
                next_poll = now + 0.1
                st = control_view(m.mountpoint)[0]
                if (st and st.get("daemon_pid") == r.new_pid
                        and st.get("generation") == r.gen + 1):
                    r.serve_t, r.after = r.at(), st
                    say(f"t={r.serve_t:5.1f}s  >>> daemon pid {r.new_pid} serves as "
                        f"generation {r.gen + 1}, {r.serve_t - r.act_t:.2f} s after "
                        f"the {what}; last restart: {st.get('last_restart_reason')!r}")
            for line in log.new_lines():
                say(f"t={r.at():5.1f}s  log | {line}")
            waiting_child = r.act_t is not None and r.new_pid is None
            if time.monotonic() >= next_status and not waiting_child:
                text, e = stat_once(w.path)
                if e is not None:
                    r.stat_errnos.append(e)
                st, state = control_view(m.mountpoint)
                say(status_line(r.at(), w, text, daemon_lead(st), state))
                next_status = max(next_status + STATUS_EVERY, time.monotonic() + 0.25)
            finished = r.act_t is not None and done()
            if stop_at is None and r.serve_t is not None and finished:
                stop_at = now + AFTER_RESTART
            if stop_at is not None and now >= stop_at:
                break
            if stop_at is None and r.act_t is not None and (
                    t > r.act_t + RESTART_LIMIT or gave_up()):
                break  # no new daemon serving: reported by the check
            time.sleep(0.05)
    finally:
        say(f"t={r.at():5.1f}s  writer: last fsync, close")
        w.stop_flag.set()
        w.join(OP_TIMEOUT * 2 + 2)
    for line in log.new_lines():
        say(f"t={r.at():5.1f}s  log | {line}")


def restart_problems(r, reason, what):
    """The daemon line of .control/status and the restart event, shown;
    what in status.json or the processes disagrees with one restart of
    kind `reason` since r's `before`."""
    m, out = r.m, []
    if r.serve_t is None:
        return [f"no new daemon served as generation {r.gen + 1} after the "
                f"{what} (bound {RESTART_LIMIT:g} s)"]
    text = read_control(m.mountpoint, "status")
    line = next((s for s in text.splitlines() if s.startswith("daemon:")), "(none)")
    say(f".control/status   {line}")
    evs = [json.loads(s) for s in read_control(m.mountpoint, "events").splitlines()
           if s.strip()]
    ev = next((e for e in reversed(evs) if e.get("type") == "restart"), None)
    say(f".control/events   {json.dumps(ev, separators=(',', ':'))}")
    st = status_json(m.mountpoint)
    say(f".control/status.json  data_lost_bytes {st.get('data_lost_bytes')}, "
        f"missing_extensions {st.get('missing_extensions')}")
    want = {"keeper_pid": m.pid, "daemon_pid": r.new_pid,
            "generation": r.gen + 1, "restarts": r.restarts + 1}
    out += [f"status.json {k} = {st.get(k)!r}, want {v!r}"
            for k, v in want.items() if st.get(k) != v]
    if reason not in str(st.get("last_restart_reason")):
        out.append(f"status.json last_restart_reason = "
                   f"{st.get('last_restart_reason')!r}, want {reason!r}")
    if not ev or ev.get("generation") != r.gen + 1 or reason not in str(ev.get("reason")):
        out.append(f"the last restart event is {ev}")
    if not m.alive():
        out.append(f"the keeper pid {m.pid} is gone")
    if not mounts.wait_gone([r.old_pid], 5.0):
        out.append(f"the old daemon pid {r.old_pid} still runs")
    return out


def compare_server(w, remote):
    """Shows the server's copy against what the writer knows; returns
    (exact, problems, the server's bytes). Exact: byte for byte every block written. Else
    every block an fsync acknowledged must be there in the order written:
    those before the first unacknowledged one at their very offsets,
    later ones anywhere after the previous one (an append after lost data
    lands past the lost range)."""
    data = b""
    if os.path.exists(remote):
        with open(remote, "rb") as f:
            data = f.read()
    say("server: " + ls_l(remote))
    say(f"written by the application: {w.written} bytes, sha256 {w.sha.hexdigest()}")
    say(f"acknowledged by fsync:      {w.acked} bytes")
    say(f"on the server:              {len(data)} bytes, sha256 "
        f"{hashlib.sha256(data).hexdigest()}")
    if data == b"".join(b for b, _ in w.blocks):
        if w.acked < w.written:
            say(f"byte for byte what was written: the {w.written - w.acked} bytes "
                "no fsync acknowledged reached the server after all")
        return True, [], data
    cursor, pinned, missing, unacked_there = 0, True, 0, 0
    for block, acked in w.blocks:
        if not acked:
            pinned = False
            unacked_there += len(block) if data.find(block) >= 0 else 0
            continue
        if pinned:
            pos = cursor if data[cursor:cursor + len(block)] == block else -1
        else:
            pos = data.find(block, cursor)
        if pos < 0:
            missing += len(block)
        else:
            cursor = pos + len(block)
    unacked = w.written - w.acked
    say(f"not byte for byte what was written: of the {unacked} bytes no fsync "
        f"acknowledged, {unacked_there} reached the server anyway")
    if missing:
        return False, [f"{missing} acknowledged bytes are not on the server in "
                       "the order written"], data
    say("every byte acknowledged by fsync is on the server, in the order written")
    return False, [], data


def writer_problems(w, r, allowed=()):
    """Errors of the writer (listed), ENOTCONN anywhere, calls past
    op_timeout + 2 s, close failing; errnos in `allowed` after the act
    are left to the caller."""
    out = []
    for t, call, e in w.errors:
        say(f"  t={t:5.1f}s {call}: {errno.errorcode.get(e, e)} ({os.strerror(e)})")
    if w.is_alive():
        out.append("the writer is still blocked")
    bad = [(t, c, e) for t, c, e in w.errors
           if e not in allowed or r.act_t is None or t < r.act_t]
    out += [f"{c} failed with {errno.errorcode.get(e, e)} at t={t:.1f}s"
            for t, c, e in bad]
    if errno.ENOTCONN in r.stat_errnos:
        out.append("stat failed with ENOTCONN (a stale mount)")
    slow = [k for k, v in w.max_latency.items() if v > OP_TIMEOUT + 2]
    if slow:
        out.append(f"calls blocked past op_timeout + 2 s: {', '.join(slow)}")
    if not w.closed_ok and not any(c == "close" for _, c, _ in w.errors):
        out.append("the writer never got to close()")
    return out


def step_kill(m, sshd):
    section("6. the daemon itself is killed")
    say(f"the same kind of writer appends {CHUNK // 1024} KiB every "
        f"{WRITE_EVERY * 1000:.0f} ms to a new file, now with an fsync after every block;")
    say(f"at t={ACT_AT:g}s the daemon, the keeper's child, gets SIGKILL (its pid from "
        ".control/status.json,")
    say("checked against /proc/KEEPER/task/KEEPER/children); the keeper must start "
        "a new one")
    before = status_json(m.mountpoint)
    show_daemon(before)
    r = Restart(m, Writer(m.path("kill.warc"), fsync_each=True), before)

    def kill(t):
        st = status_json(m.mountpoint)
        pid, kids = st.get("daemon_pid"), m.daemon_pids()
        if st.get("keeper_pid") != m.pid or pid == m.pid or pid not in kids:
            raise Failed(f"status.json daemon_pid {pid} is not a child of the keeper "
                         f"pid {m.pid} (its children: {kids}): nothing killed")
        r.old_pid = pid
        os.kill(pid, signal.SIGKILL)
        say(f"t={t:5.1f}s  >>> SIGKILL to daemon pid {pid} (generation "
            f"{st.get('generation')}); keeper pid {m.pid} left alone")

    watch_restart(r, kill, "kill")
    section("6b. after the kill: the new daemon, the writer, the server's copy")
    w = r.writer
    problems = restart_problems(r, "killed by signal 9", "kill")
    evs = [json.loads(s) for s in read_control(m.mountpoint, "events").splitlines()
           if s.strip()]
    lost = [e for e in evs if e.get("type") == "data" and e.get("lost")
            and str(e.get("path", "")).endswith("/kill.warc")]
    after_kill = w.errors[r.errors_at_act:]
    say(f"the writer made {w.calls - r.calls_at_act} calls after the kill on the "
        f"descriptor it opened before it; {len(after_kill)} failed")
    problems += writer_problems(w, r, allowed=(errno.EIO,) if lost else ())
    if after_kill and lost:
        ranges = ", ".join(f"{e['offset']}-{e['end']}" for e in lost)
        say(f"note: the killed daemon held {sum(e['length'] for e in lost)} bytes "
            f"of kill.warc the server had not acknowledged (bytes {ranges});")
        say("      they were reported lost (log, events) and the next call on that "
            "descriptor returned EIO:")
        say("      the documented behaviour (docs/retries.md, 'When the daemon "
            "itself dies'). The writer went on")
        say("      with the same descriptor; those bytes never counted as "
            "acknowledged.")
    elif lost:
        problems.append(f"data reported lost ({lost}) but no call returned EIO")
    longest = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in sorted(w.max_latency.items()))
    say(f"longest call: {longest} (op_timeout {OP_TIMEOUT:g} s)")
    exact, found, data = compare_server(w, os.path.join(sshd.remote_dir, "kill.warc"))
    problems += found
    for e in lost if not exact else ():
        part = data[e["offset"]:e["end"]]
        say(f"on the server, the lost bytes {e['offset']}-{e['end']} are "
            + ("a hole (zeros): later appends went on after them" if part.strip(b"\0") == b""
               else "there after all" if part else "past its end"))
    if problems:
        raise Failed("; ".join(problems))
    say(f"ok: a new daemon served {r.serve_t - r.act_t:.2f} s after the kill, the "
        "writer's descriptor kept working, and every acknowledged byte is on the server")


def step_upgrade(m, sshd, build):
    section("7. steadyfs --upgrade under the writer")
    say("the writer appends with an fsync after every block to a new file; at "
        f"t={ACT_AT:g}s `steadyfs --upgrade`")
    say("asks the keeper to start the program on disk (here the same build) as the "
        "next generation;")
    say("the old daemon drains and hands over. No call may fail.")
    before = status_json(m.mountpoint)
    show_daemon(before)
    r = Restart(m, Writer(m.path("upgrade.warc"), fsync_each=True), before)
    box = {"out": os.path.join(os.path.dirname(m.stderr_path), "upgrade.out")}
    cmd = [os.path.join(build, "steadyfs"), "--upgrade", m.mountpoint]
    # Forked now and released at ACT_AT: Python 3.11.2 holds its global
    # lock from vfork() until the child's exec() (CPython gh-104372), so a
    # slow exec at that moment would freeze the proxy in this process and
    # fail the writer's calls for a reason that is not steadyfs's.
    with open(box["out"], "w") as out:
        box["p"] = subprocess.Popen(["sh", "-c", 'read go && exec "$0" "$@"'] + cmd,
                                    stdin=subprocess.PIPE, stdout=out,
                                    stderr=subprocess.STDOUT)

    def upgrade(t):
        say(f"t={t:5.1f}s  >>> $ {shlex.join(cmd)}")
        box["p"].stdin.write(b"go\n")
        box["p"].stdin.close()

    def done():
        p = box["p"]
        if p.poll() is None:
            return False
        if "said" not in box:
            with open(box["out"], errors="replace") as f:
                box["said"] = f.read().strip()
            say(f"t={r.at():5.1f}s  >>> --upgrade exited {p.returncode}: {box['said']}")
        return True

    try:
        watch_restart(r, upgrade, "upgrade", done,
                      gave_up=lambda: done() and box["p"].returncode != 0)
    finally:
        p = box["p"]
        if p.poll() is None:
            p.kill()   # by its own pid: this demo started it
            p.wait(10)
    section("7b. after the upgrade: the new daemon, the writer, the server's copy")
    w = r.writer
    problems = restart_problems(r, "upgrade", "upgrade")
    p = box["p"]
    if p.returncode != 0:
        done()   # its output, if the loop ended before it did
        problems.append(f"steadyfs --upgrade exited {p.returncode}: {box['said']}")
    say(f"the writer made {w.calls - r.calls_at_act} calls after --upgrade started; "
        f"{len(w.errors)} failed")
    problems += writer_problems(w, r)
    longest = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in sorted(w.max_latency.items()))
    say(f"longest call: {longest} (op_timeout {OP_TIMEOUT:g} s)")
    exact, found, _ = compare_server(w, os.path.join(sshd.remote_dir, "upgrade.warc"))
    problems += found
    if not exact:
        problems.append("the server's copy is not byte for byte what was written")
    if problems:
        raise Failed("; ".join(problems))
    say(f"ok: generation {r.gen + 1} took over {r.serve_t - r.act_t:.2f} s after "
        "--upgrade started, zero failed calls, the server's copy is byte for byte "
        "what was written")


def preflight(build):
    if os.geteuid() != 0:
        return "run it as root: it starts sshd and mounts FUSE"
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    if not os.access(sshdfix.SSHD, os.X_OK):
        return f"{sshdfix.SSHD} is missing (make deps)"
    if not os.access(os.path.join(build, "steadyfs"), os.X_OK):
        return f"{build}/steadyfs is missing (make)"
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(os.path.dirname(HERE), "build"),
                    help="folder holding the steadyfs binary")
    ap.add_argument("--keep", action="store_true",
                    help="keep the temp folder (logs) afterwards")
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    why = preflight(build)
    if why:
        print(f"demo: {why}", file=sys.stderr)
        return 2

    started = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="steadyfs-demo-")
    sshd = proxy = m = None
    status = 1
    # A last resort against a hang: the alarm interrupts the main thread,
    # and the finally block below still unmounts and stops everything.
    def expired(signum, frame):
        raise Failed(f"the demo took longer than {WATCHDOG} s")
    signal.signal(signal.SIGALRM, expired)
    signal.alarm(WATCHDOG)
    say(f"steadyfs demo  (build {build}, temp folder {workdir})")
    try:
        sshd, proxy = step_server(workdir)
        m = step_mount(build, sshd, proxy, workdir)
        step_write_read(m, sshd)
        step_check(step_outage(m, proxy), sshd)
        step_kill(m, sshd)
        step_upgrade(m, sshd, build)
        status = 0
    except (Failed, mounts.MountError, sshdfix.SshdError,
            faultproxy.ProxyError, RuntimeError, OSError) as e:
        say()
        say(f"FAILED: {e}")
        if m is not None:
            say("--- steadyfs stderr (last 30 lines) ---")
            say("\n".join(m.stderr_text().splitlines()[-30:]))
    finally:
        signal.alarm(0)
        section("8. clean up")
        if proxy is not None:
            try:
                proxy.restore()
            except faultproxy.ProxyError:
                pass
        if m is not None:
            m.cleanup()
            gone = not m.is_mounted() and not m.alive()
            say(f"unmounted {m.mountpoint}, steadyfs pid {m.pid} "
                f"{'exited with status ' + str(m.proc.returncode) if gone else 'STILL RUNNING'}")
            if not gone:
                status = 1
            reports = [ln for ln in m.stderr_text().splitlines()
                       if mounts.SANITIZER_LINE.search(ln)]
            if reports:
                say(f"sanitizer reports in the daemon's log: {len(reports)}, first: "
                    f"{reports[0]}")
                status = 1
        if proxy is not None:
            proxy.stop()
            say("fault proxy stopped")
        if sshd is not None:
            pid = sshd.pid
            sshd.stop()
            say(f"sshd pid {pid} and its sessions stopped")
        still = mounts.fuse_mounts_under(workdir)
        if still or args.keep:
            say(f"left {workdir} in place"
                + (f" (still mounted: {still})" if still else ""))
        else:
            shutil.rmtree(workdir, ignore_errors=True)
            say(f"removed {workdir}")
    say()
    say(f"demo {'passed' if status == 0 else 'FAILED'} in "
        f"{time.monotonic() - started:.1f} s")
    return status


if __name__ == "__main__":
    sys.exit(main())
