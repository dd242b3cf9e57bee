"""`make demo`: steadyfs riding out a transport outage, for a person to watch.

    /usr/bin/python3 test/demo.py --build build

Starts a throwaway OpenSSH sshd on 127.0.0.1 serving a temp folder, puts the
test suite's fault proxy in front of it, mounts steadyfs through the proxy
with test-scale timeouts, writes and reads a file and shows the server-side
copy, then runs a writer appending to a file (with a periodic fsync) while
the transport is cut for about three seconds and restored. One status line
per second shows the bytes written, the latency of the writer's last call
and whether the mount answers `stat`; the daemon's own log lines are shown
as they appear. At the end the server's copy must have the sha256 of
exactly what was written, and no call may have failed with ENOTCONN.

Everything it starts (sshd, proxy, steadyfs) is stopped by pid and the
mount is removed whatever happens (try/finally). Exit status 0 when every
check passed, 1 when one failed, 2 when it cannot run here (not root, no
/dev/fuse, no sshd).

It reuses the integration-test fixtures: sshdfix.py (the sshd), faultproxy.py
(the proxy) and mounts.py (the mount and its cleanup).
"""

import argparse
import errno
import hashlib
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
    fsyncs every FSYNC_EVERY s, until stopped; then a last fsync and close.
    Keeps the sha256 of every byte whose write() succeeded, the latency of
    each call and every error."""

    def __init__(self, path):
        super().__init__(name="writer", daemon=True)
        self.path = path
        self.sha = hashlib.sha256()
        self.written = 0
        self.errors = []            # (t, call, errno)
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
        try:
            return fn(*args)
        except OSError as e:
            with self.lock:
                self.errors.append((start - self.t0, name, e.errno))
            return None
        finally:
            took = time.monotonic() - start
            with self.lock:
                self.current = None
                self.last = (name, took)
                self.max_latency[name] = max(self.max_latency.get(name, 0), took)

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
            if time.monotonic() >= next_fsync:
                self.call("fsync", os.fsync, fd)
                next_fsync = time.monotonic() + FSYNC_EVERY
            self.stop_flag.wait(WRITE_EVERY)
        self.call("fsync", os.fsync, fd)
        before = len(self.errors)
        self.call("close", os.close, fd)
        self.closed_ok = len(self.errors) == before

    def snapshot(self):
        with self.lock:
            cur = self.current
            now = time.monotonic()
            if cur and now - cur[1] > 0.2:
                last = f"{cur[0]} running {now - cur[1]:.1f} s"
            else:
                name, took = self.last
                last = f"{name} {took * 1000:.0f} ms" if name else "-"
            return self.written, last, len(self.errors)


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


def status_line(t, writer, stat, mode, state):
    written, last, nerr = writer.snapshot()
    flag = f"  errors {nerr}" if nerr else ""
    return (f"t={t:5.1f}s  transport {mode:<4}  written {mib(written):>10}  "
            f"last call {last:<22}  stat {stat}  .control: {state}{flag}")


def control_state(mountpoint, timeout=2.0):
    """`state` and `sessions` from the mount's .control/status, read from a
    helper thread (the file never waits on the network; the thread only
    guards the demo against a bug)."""
    box = {}

    def run():
        try:
            with open(os.path.join(mountpoint, ".control", "status")) as f:
                kv = dict(line.split(": ", 1) for line in f.read().splitlines()
                          if ": " in line)
            box["r"] = f"{kv.get('state', '?')} {kv.get('sessions', '?')}"
        except OSError as e:
            box["r"] = errno.errorcode.get(e.errno, str(e.errno))
    th = threading.Thread(target=run, daemon=True)
    th.start()
    th.join(timeout)
    return box.get("r", f"NO ANSWER in {timeout:g} s")


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
            say(status_line(time.monotonic() - t0, o.writer, text, mode,
                            control_state(m.mountpoint)))
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
        section("6. clean up")
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
