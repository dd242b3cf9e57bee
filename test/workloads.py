"""Workloads for the fault-injection matrix (issue 3, items 7-9), and the
harness that runs one matrix cell.

A workload runs in a child process (`python3 workloads.py KIND MOUNT OUT
SEED`) so that a call stuck in the kernel can never wedge the test, and it
times every system call it makes. Kinds:

  idle      opens its descriptors, then makes no call until the fault clears
  crawler   the crawler shape of issue 3 item 8: WARC files appended in
            64 KiB-1 MiB writes with a periodic fsync, a JSON state file
            rewritten in place with fsync, a YAML file written to a temp
            name and renamed over, finished files hard-linked into warcs/,
            and a manifest of sha256 sums written at the end
  reader    sequential reads of a pre-made file, checksummed per pass
  churn     mkdir/create/stat/listdir/rename/unlink/rmdir loop

Every kind also opens "probe" descriptors before the fault (a reader of a
pre-made file and a writer). When the parent says the fault cleared, a
probe thread uses those same descriptors (pread, pwrite, fsync, fstat)
until one round succeeds: that is the recovery time.

Protocol on the pipes: the child prints `ready`, the parent writes
`clear T` (T: its time.monotonic() when the fault cleared; the clock is
system-wide) and later `stop`; the child prints `recovered T` and, at the
end, writes a JSON result to OUT: every failed call (op, path, errno,
start, end), the longest calls, what each file on the server must hold
(exact content, or a prefix when a later write was refused), and results
that were wrong rather than failed (bad read data, an unexpected errno).

The parent side (`Cell`, `verify_files`, `unmatched_errors`,
`lost_without_error`, `Table`) turns that into the matrix assertions and
the table for the closing note.
"""

import collections
import contextlib
import errno
import hashlib
import json
import os
import random
import re
import select
import shutil
import subprocess
import sys
import threading
import time

KIB, MIB = 1024, 1024 * 1024
PROBE_READ = "probe.dat"        # pre-made, read by the probe
PROBE_WRITE = "probe-w.dat"     # written in place by the probe
PROBE_SIZE = 1 * MIB
READER_FILE = "reader.dat"      # pre-made, read by the reader
READER_SIZE = 16 * MIB
READ_CHUNK = 128 * KIB
# Pacing (a crawler does not write flat out, and 2 cores are shared with
# the daemon, sshd and the proxy).
CRAWLER_RATE = 1.5 * MIB        # bytes/s appended, on average
READER_RATE = 8 * MIB
FSYNC_EVERY = 0.5               # s between WARC fsyncs and state rewrites
YAML_EVERY = 1.0
WARC_ROTATE = 3 * MIB           # a WARC is finished at this size
CHURN_PAUSE = 0.01
PROBE_RETRY = 0.05


def pattern(seed, n):
    """n deterministic pseudo-random bytes (parent and child agree)."""
    return random.Random(seed).randbytes(n)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


# =========================================================================
# Child side
# =========================================================================

class Recorder:
    """Times every call; keeps every failure, the longest calls, and the
    number of calls. Thread-safe (the probe runs in its own thread)."""

    KEEP_LONGEST = 5
    KEEP_ERRORS = 300   # a dead mount fails every call at once: keep counts

    def __init__(self):
        self.lock = threading.Lock()
        self.calls = 0
        self.errors = []
        self.error_counts = {}
        self.longest = []
        self.wrong = []

    def call(self, op, path, fn, *args, path2=None):
        """fn(*args), timed; `path2` is a second name the call takes (the
        source of a rename: the daemon may name either)."""
        t0 = time.monotonic()
        try:
            return fn(*args)
        except OSError as e:
            t1 = time.monotonic()
            with self.lock:
                key = errno.errorcode.get(e.errno, str(e.errno))
                self.error_counts[key] = self.error_counts.get(key, 0) + 1
                if len(self.errors) < self.KEEP_ERRORS:
                    self.errors.append({"op": op, "path": path, "path2": path2,
                                        "errno": e.errno, "t0": t0, "t1": t1})
            raise
        finally:
            t1 = time.monotonic()
            with self.lock:
                self.calls += 1
                self.longest.append({"op": op, "path": path, "t0": t0,
                                     "secs": t1 - t0})
                self.longest.sort(key=lambda c: -c["secs"])
                del self.longest[self.KEEP_LONGEST:]

    def note_wrong(self, what):
        with self.lock:
            if len(self.wrong) < self.KEEP_ERRORS:
                self.wrong.append(what)

    def failures(self):
        with self.lock:
            return sum(self.error_counts.values()) + len(self.wrong)

    def wrong_errno(self, e, path, allowed=(errno.EIO,)):
        """An errno a matrix cell never expects is a wrong result."""
        if e.errno not in allowed:
            self.note_wrong(f"{path}: unexpected {errno.errorcode.get(e.errno, e.errno)}")


class Control:
    """What the parent said on stdin: when the fault cleared, and stop."""

    def __init__(self):
        self.cleared = threading.Event()
        self.stop = threading.Event()
        self.clear_at = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in sys.stdin:
            word, *rest = line.split()
            if word == "clear":
                self.clear_at = float(rest[0])
                self.cleared.set()
            elif word == "stop":
                break
        self.cleared.set()
        self.stop.set()


class Files:
    """What each file on the server must hold, keyed by relative path.
    check: "exact" (whole content), "prefix" (the first len bytes; a later
    write failed), "any" (one of several contents: the last change's fate
    is unknown), "absent"."""

    def __init__(self):
        self.want = {}

    def exact(self, rel, data):
        self.want[rel] = {"check": "exact", "len": len(data),
                          "sha256": sha256(data)}

    def exact_hash(self, rel, length, digest):
        self.want[rel] = {"check": "exact", "len": length, "sha256": digest}

    def prefix(self, rel, length, digest):
        self.want[rel] = {"check": "prefix", "len": length, "sha256": digest}

    def any_of(self, rel, datas):
        self.want[rel] = {"check": "any", "len": max(len(d) for d in datas),
                          "sha256s": [sha256(d) for d in datas]}

    def absent(self, rel):
        self.want[rel] = {"check": "absent", "len": 0}

    def forget(self, rel):
        self.want.pop(rel, None)


class Probe:
    """Descriptors opened before the fault and used again after it."""

    def __init__(self, rec, root, files):
        self.rec, self.root, self.files = rec, root, files
        self.recovered_at = None
        self.rounds = 0
        self.expect_read = pattern(1, PROBE_SIZE)
        self.block = b"probe-block\n" * 341 + b"1234"  # 4096 bytes
        self.rfd = self._open(PROBE_READ, os.O_RDONLY)
        self.wfd = self._open(PROBE_WRITE, os.O_WRONLY | os.O_CREAT)
        self._round()  # the descriptors work before the fault
        self.files.exact(PROBE_WRITE, self.block)

    def _open(self, rel, flags):
        return self.rec.call("open", rel, os.open, os.path.join(self.root, rel),
                             flags, 0o644)

    def _round(self):
        """One use of every pre-fault descriptor; True when all worked.
        Offsets move so that reads reach the daemon, not the page cache."""
        r = self.rec
        off = (self.rounds * 256 * KIB + 4096 * self.rounds) % (PROBE_SIZE - 4096)
        self.rounds += 1
        try:
            got = r.call("read", PROBE_READ, os.pread, self.rfd, 4096, off)
            if got != self.expect_read[off:off + 4096]:
                r.note_wrong(f"{PROBE_READ}: wrong data at {off}")
                return False
            if r.call("write", PROBE_WRITE, os.pwrite, self.wfd, self.block, 0) != 4096:
                r.note_wrong(f"{PROBE_WRITE}: short write")
                return False
            r.call("fsync", PROBE_WRITE, os.fsync, self.wfd)
            r.call("fstat", PROBE_WRITE, os.fstat, self.wfd)
            return True
        except OSError as e:
            r.wrong_errno(e, "probe")
            return False

    def run_after_clear(self, ctl):
        """After the fault clears, use the old descriptors until a whole
        round works (or the parent gives up and says stop)."""
        ctl.cleared.wait()
        while True:
            if self._round():
                self.recovered_at = time.monotonic()
                print(f"recovered {self.recovered_at:.6f}", flush=True)
                return
            if ctl.stop.is_set():
                return
            time.sleep(PROBE_RETRY)

    def finish(self):
        for rel, fd in ((PROBE_READ, self.rfd), (PROBE_WRITE, self.wfd)):
            try:
                self.rec.call("close", rel, os.close, fd)
            except OSError as e:
                self.rec.wrong_errno(e, rel)
                self.files.forget(PROBE_WRITE)


class Workload:
    """Base: setup() before `ready`, run(ctl) until stop, finish()."""

    def __init__(self, rec, root, files, seed):
        self.rec, self.root, self.files = rec, root, files
        self.rng = random.Random(seed)
        self.bytes_written = 0
        self.bytes_read = 0

    def p(self, rel):
        return os.path.join(self.root, rel)

    def setup(self):
        pass

    def run(self, ctl):
        ctl.stop.wait()

    def finish(self):
        pass

    def call(self, op, rel, fn, *args, path2=None):
        return self.rec.call(op, rel, fn, *args, path2=path2)

    def write_all(self, fd, rel, data):
        """os.write until all of data is taken (each call timed)."""
        view = memoryview(data)
        while view:
            n = self.call("write", rel, os.write, fd, view)
            if n <= 0:
                raise OSError(errno.EIO, "write returned 0")
            view = view[n:]
            self.bytes_written += n


class Idle(Workload):
    """Descriptors open, no call during the fault (the probe is the first
    user afterwards)."""


class Warc:
    """One WARC being appended: its descriptor and what is known of it."""

    def __init__(self, rel, fd):
        self.rel, self.fd = rel, fd
        self.hash = hashlib.sha256()
        self.len = 0
        self.synced = (0, sha256(b""))   # (len, sha256) at the last fsync
        self.failed = False               # a write was refused: abandoned


class Crawler(Workload):
    """The crawler of issue 3 item 8 (see the module docstring). On a
    failed write a WARC is abandoned (closed, not linked, a new one
    started), as a crawler rotates a broken file; a failed fsync is only
    noted: the data stays queued in the daemon and a later fsync or the
    close proves it."""

    JOB = "job"

    def setup(self):
        self.n = 0
        self.warc = None
        self.finished = []        # (rel in warcs/, len, sha256) linked
        self.state_seq = 0
        self.state_fd = None
        self.yaml_seq = 0
        self.yaml_good = None     # content last renamed into place
        self.call("mkdir", self.JOB, os.mkdir, self.p(self.JOB))
        self.call("mkdir", self.JOB + "/warcs", os.mkdir, self.p(self.JOB + "/warcs"))
        rel = self.JOB + "/state.json"
        self.state_fd = self.call("open", rel, os.open, self.p(rel),
                                  os.O_RDWR | os.O_CREAT, 0o644)
        self.state_rel = rel
        self._rewrite_state()
        self._write_yaml()
        self._new_warc()

    # ---- WARC files -----------------------------------------------------

    def _new_warc(self):
        self.n += 1
        rel = f"{self.JOB}/crawl-{self.n:03d}.warc.gz"
        try:
            fd = self.call("open", rel, os.open, self.p(rel),
                           os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        except OSError as e:
            self.rec.wrong_errno(e, rel)
            self.warc = None
            return
        self.warc = Warc(rel, fd)

    def _append(self, size):
        w = self.warc
        data = self.rng.randbytes(size)
        try:
            self.write_all(w.fd, w.rel, data)
        except OSError as e:
            self.rec.wrong_errno(e, w.rel)
            w.failed = True
            self._end_warc()
            return
        w.hash.update(data)
        w.len += len(data)

    def _fsync_warc(self):
        w = self.warc
        try:
            self.call("fsync", w.rel, os.fsync, w.fd)
            w.synced = (w.len, w.hash.hexdigest())
        except OSError as e:
            self.rec.wrong_errno(e, w.rel)

    def _end_warc(self):
        """Close; a cleanly written and closed WARC is linked into warcs/."""
        w, self.warc = self.warc, None
        try:
            self.call("close", w.rel, os.close, w.fd)
            closed = True
        except OSError as e:
            self.rec.wrong_errno(e, w.rel)
            closed = False
        if closed and not w.failed:
            self.files.exact_hash(w.rel, w.len, w.hash.hexdigest())
        elif closed:
            # Every write before the refused one was accepted; close
            # returning 0 says they are on the server.
            self.files.prefix(w.rel, w.len, w.hash.hexdigest())
        else:
            self.files.prefix(w.rel, *w.synced)
        if not closed or w.failed:
            return
        link = f"{self.JOB}/warcs/{os.path.basename(w.rel)}"
        try:
            self.call("link", link, os.link, self.p(w.rel), self.p(link), path2=w.rel)
            self.files.exact_hash(link, w.len, w.hash.hexdigest())
            self.finished.append((link, w.len, w.hash.hexdigest()))
        except OSError as e:
            self.rec.wrong_errno(e, link)

    # ---- state and config ---------------------------------------------

    def _rewrite_state(self):
        """JSON state rewritten in place: pwrite at 0, truncate, fsync."""
        self.state_seq += 1
        data = json.dumps({"seq": self.state_seq, "warc": self.n,
                           "written": self.bytes_written,
                           "pad": "x" * self.rng.randrange(0, 400)},
                          indent=1).encode() + b"\n"
        rel, fd = self.state_rel, self.state_fd
        try:
            self.call("write", rel, os.pwrite, fd, data, 0)
            self.call("ftruncate", rel, os.ftruncate, fd, len(data))
            self.call("fsync", rel, os.fsync, fd)
            self.files.exact(rel, data)
        except OSError as e:
            self.rec.wrong_errno(e, rel)
            # In place: after a failure the file may hold any mix of old
            # and new until the next rewrite that succeeds.
            self.files.forget(rel)

    def _write_yaml(self):
        """YAML written to a temp name, fsynced, closed, renamed over."""
        self.yaml_seq += 1
        rel, tmp = f"{self.JOB}/config.yaml", f"{self.JOB}/.config.yaml.tmp{self.yaml_seq}"
        data = (f"seq: {self.yaml_seq}\nwarcs: {self.n}\n"
                f"seeds:\n" + "".join(f"  - https://example.org/{i}\n"
                                      for i in range(self.rng.randrange(1, 40)))).encode()
        if not self._write_file(tmp, data):
            return
        try:
            self.call("rename", rel, os.rename, self.p(tmp), self.p(rel), path2=tmp)
            self.yaml_good = data
            self.files.exact(rel, data)
            self.files.absent(tmp)
        except OSError as e:
            self.rec.wrong_errno(e, rel)
            # Its fate is unknown: either content may be in place.
            self.files.any_of(rel, [d for d in (self.yaml_good, data) if d])

    # ---- the loop -----------------------------------------------------

    def run(self, ctl):
        t_start = time.monotonic()
        next_sync = t_start + FSYNC_EVERY
        next_yaml = t_start + YAML_EVERY
        while not ctl.stop.is_set():
            failed_before = self.rec.failures()
            if self.warc is None:
                self._new_warc()
            if self.warc is not None:
                self._append(self.rng.randrange(64 * KIB, MIB + 1))
            now = time.monotonic()
            if now >= next_sync:
                if self.warc is not None:
                    self._fsync_warc()
                self._rewrite_state()
                next_sync = time.monotonic() + FSYNC_EVERY
            if now >= next_yaml:
                self._write_yaml()
                next_yaml = time.monotonic() + YAML_EVERY
            if self.warc is not None and self.warc.len >= WARC_ROTATE:
                self._end_warc()
            # Pace to CRAWLER_RATE on average, and never spin on failures.
            ahead = t_start + self.bytes_written / CRAWLER_RATE - time.monotonic()
            if self.rec.failures() > failed_before:
                ahead = max(ahead, PROBE_RETRY)
            if ahead > 0:
                ctl.stop.wait(ahead)

    def finish(self):
        if self.warc is not None:
            self._end_warc()
        self._rewrite_state()
        try:
            self.call("close", self.state_rel, os.close, self.state_fd)
        except OSError as e:
            self.rec.wrong_errno(e, self.state_rel)
            self.files.forget(self.state_rel)
        self._write_manifest()

    def _write_manifest(self):
        rel = f"{self.JOB}/manifest.sha256"
        data = "".join(f"{h}  {os.path.basename(link)}\n"
                       for link, _, h in self.finished).encode()
        if self._write_file(rel, data):
            self.files.exact(rel, data)

    def _write_file(self, rel, data):
        """Create or truncate, write, fsync, close; True when all of it
        returned success (close is always tried)."""
        try:
            fd = self.call("open", rel, os.open, self.p(rel),
                           os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except OSError as e:
            self.rec.wrong_errno(e, rel)
            return False
        ok = True
        try:
            self.write_all(fd, rel, data)
            self.call("fsync", rel, os.fsync, fd)
        except OSError as e:
            self.rec.wrong_errno(e, rel)
            ok = False
        try:
            self.call("close", rel, os.close, fd)
        except OSError as e:
            self.rec.wrong_errno(e, rel)
            ok = False
        return ok


class Reader(Workload):
    """Sequential passes over a pre-made file through one descriptor; a
    failed read is retried at the same offset; every chunk is compared
    with what the file holds (so a pass cut short by the end of the cell
    still counts). POSIX_FADV_DONTNEED before each pass sends reads to the
    daemon rather than the page cache."""

    def setup(self):
        self.expect = pattern(2, READER_SIZE)
        self.fd = self.call("open", READER_FILE, os.open, self.p(READER_FILE),
                            os.O_RDONLY)
        self.verified = 0

    def run(self, ctl):
        t_start = time.monotonic()
        while not ctl.stop.is_set():
            os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_DONTNEED)
            off = 0
            while off < READER_SIZE and not ctl.stop.is_set():
                try:
                    data = self.call("read", READER_FILE, os.pread, self.fd,
                                     READ_CHUNK, off)
                except OSError as e:
                    self.rec.wrong_errno(e, READER_FILE)
                    ctl.stop.wait(PROBE_RETRY)
                    continue
                if not data:
                    self.rec.note_wrong(f"{READER_FILE}: early EOF at {off}")
                    break
                if data != self.expect[off:off + len(data)]:
                    self.rec.note_wrong(f"{READER_FILE}: wrong data at {off}+{len(data)}")
                    break
                off += len(data)
                self.bytes_read += len(data)
                self.verified += len(data)
                ahead = t_start + self.bytes_read / READER_RATE - time.monotonic()
                if ahead > 0:
                    ctl.stop.wait(ahead)

    def finish(self):
        try:
            self.call("close", READER_FILE, os.close, self.fd)
        except OSError as e:
            self.rec.wrong_errno(e, READER_FILE)

    def verified_bytes(self):
        return self.verified


class Churn(Workload):
    """Metadata churn with fresh names each round, so a failed step only
    abandons its round. A round: mkdir d, create d/a (write, close),
    stat, listdir d (must be exactly [a]), rename a -> b, stat, listdir
    of the top, then odd rounds unlink b and rmdir d, even rounds keep b."""

    TOP = "churn"

    def setup(self):
        self.call("mkdir", self.TOP, os.mkdir, self.p(self.TOP))
        self.i = 0

    def _round(self, i):
        d = f"{self.TOP}/d{i:04d}"
        a, b = f"{d}/a", f"{d}/b"
        data = f"round {i}\n".encode() * 8
        self.call("mkdir", d, os.mkdir, self.p(d))
        self.files.absent(d)  # until it is known to hold b
        fd = self.call("open", a, os.open, self.p(a),
                       os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            self.write_all(fd, a, data)
        finally:
            self.call("close", a, os.close, fd)
        st = self.call("stat", a, os.stat, self.p(a))
        if st.st_size != len(data):
            self.rec.note_wrong(f"{a}: size {st.st_size}, want {len(data)}")
        names = self.call("listdir", d, os.listdir, self.p(d))
        if names != ["a"]:
            self.rec.note_wrong(f"{d}: listdir {names}, want ['a']")
        self.call("rename", b, os.rename, self.p(a), self.p(b), path2=a)
        self.call("stat", b, os.stat, self.p(b))
        self.call("listdir", self.TOP, os.listdir, self.p(self.TOP))
        if i % 2:
            self.call("unlink", b, os.unlink, self.p(b))
            self.call("rmdir", d, os.rmdir, self.p(d))
        else:
            self.files.forget(d)
            self.files.exact(b, data)

    def run(self, ctl):
        while not ctl.stop.is_set():
            self.i += 1
            d = f"{self.TOP}/d{self.i:04d}"
            try:
                self._round(self.i)
            except OSError as e:
                self.rec.wrong_errno(e, d)
                self.files.forget(d)   # its state is unknown
            ctl.stop.wait(CHURN_PAUSE)


WORKLOADS = {"idle": Idle, "crawler": Crawler, "reader": Reader,
             "churn": Churn}


def child_main(kind, root, out, seed):
    rec, files, ctl = Recorder(), Files(), Control()
    wl = WORKLOADS[kind](rec, root, files, seed)
    probe = Probe(rec, root, files)
    wl.setup()
    print("ready", flush=True)
    t = threading.Thread(target=probe.run_after_clear, args=(ctl,), daemon=True)
    t.start()
    wl.run(ctl)
    ctl.stop.wait()
    t.join()
    wl.finish()
    probe.finish()
    verified = wl.verified_bytes() if hasattr(wl, "verified_bytes") else 0
    result = {"kind": kind, "calls": rec.calls, "errors": rec.errors,
              "error_counts": rec.error_counts,
              "longest": rec.longest, "wrong": rec.wrong,
              "files": files.want, "read_verified": verified,
              "bytes_written": wl.bytes_written, "bytes_read": wl.bytes_read,
              "recovered_at": probe.recovered_at}
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f)
    os.rename(tmp, out)
    print("done", flush=True)


# =========================================================================
# Parent side
# =========================================================================

def make_server_files(remote):
    """The pre-made files every workload may read, written on the server
    side directly."""
    with open(os.path.join(remote, PROBE_READ), "wb") as f:
        f.write(pattern(1, PROBE_SIZE))
    with open(os.path.join(remote, READER_FILE), "wb") as f:
        f.write(pattern(2, READER_SIZE))


class ChildError(RuntimeError):
    pass


class Child:
    """A workload child process and its line protocol, every wait bounded."""

    def __init__(self, kind, root, out, seed=7):
        self.out = out
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), kind, root, out, str(seed)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=False)
        self._buf = b""
        self.lines = []

    def expect(self, word, timeout):
        """Wait for a stdout line starting with `word`; returns its other
        fields, or None when the deadline passed or the child ended."""
        deadline = time.monotonic() + timeout
        while True:
            for i, line in enumerate(self.lines):
                if line.split()[:1] == [word]:
                    del self.lines[i]
                    return line.split()[1:]
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if not r:
                continue
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                return None
            self._buf += chunk
            *done, self._buf = self._buf.split(b"\n")
            self.lines += [d.decode() for d in done if d.strip()]

    def send(self, line):
        try:
            self.proc.stdin.write((line + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass

    def finish(self, timeout):
        """Say stop and wait for the result; kill the child past timeout."""
        self.send("stop")
        if self.expect("done", timeout) is None:
            self.kill()
            raise ChildError(f"workload did not finish within {timeout} s:\n"
                             + self.stderr())
        self.proc.wait(timeout=10)
        with open(self.out) as f:
            return json.load(f)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass  # stuck in the kernel: the mount cleanup aborts it

    def stderr(self):
        if self.proc.poll() is None:
            return "(still running)"
        return self.proc.stderr.read().decode(errors="replace")[-4000:]


def verify_files(result, remote):
    """Check every file the workload knows the content of against the
    server's folder. Returns (bytes verified, problems)."""
    ok, problems = 0, []
    for rel, w in sorted(result["files"].items()):
        path = os.path.join(remote, rel)
        if w["check"] == "absent":
            if os.path.lexists(path):
                problems.append(f"{rel}: exists on the server, should not")
            continue
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            problems.append(f"{rel}: missing on the server ({e.strerror})")
            continue
        if w["check"] == "exact":
            good = len(data) == w["len"] and sha256(data) == w["sha256"]
        elif w["check"] == "prefix":
            good = len(data) >= w["len"] and sha256(data[:w["len"]]) == w["sha256"]
        else:
            good = sha256(data) in w["sha256s"]
        if good:
            ok += w["len"] if w["check"] != "any" else len(data)
        else:
            problems.append(f"{rel}: server has {len(data)} bytes sha256 "
                            f"{sha256(data)[:16]}, want {w['check']} "
                            f"{w['len']} bytes {w.get('sha256', '')[:16]}")
    return ok + result.get("read_verified", 0), problems


# Which daemon operations a syscall's EIO may come from. The kernel may
# send GETATTR (permission checks, revalidation) and LOOKUP (each path
# component) for any call that takes a path.
_PATH_OPS = {"lookup", "getattr"}
DAEMON_OPS = {
    "open": _PATH_OPS | {"open", "create", "setattr"},
    "read": {"read"},
    "write": {"write"},
    "fsync": {"fsync", "write", "flush"},
    "close": {"flush", "release", "close", "write"},
    "stat": _PATH_OPS,
    "fstat": {"getattr"},
    "listdir": _PATH_OPS | {"opendir", "readdir", "releasedir"},
    "mkdir": _PATH_OPS | {"mkdir"},
    "rmdir": _PATH_OPS | {"rmdir"},
    "unlink": _PATH_OPS | {"unlink"},
    "rename": _PATH_OPS | {"rename"},
    "link": _PATH_OPS | {"link"},
    "ftruncate": {"setattr", "getattr"},
}
FAILED_LINE = re.compile(r"steadyfs: \w+: (\w+) '(.*)' failed: .*\(errno (\d+), cause (\w+)\)")
REFUSED_LINE = re.compile(r"steadyfs: \w+: (\w+) '(.*)' bytes \d+-\d+ refused by the server: (.*)")
LOST_LINE = re.compile(r"steadyfs: \w+: data lost: '(.*)' bytes (\d+)-(\d+)")


def log_failures(stderr_text):
    """(op, path, errno) of every failure line the daemon logged."""
    out = []
    for line in stderr_text.splitlines():
        m = FAILED_LINE.search(line)
        if m:
            out.append((m.group(1), m.group(2), int(m.group(3))))
            continue
        m = REFUSED_LINE.search(line)
        if m:
            e = next((n for n, s in ((x, os.strerror(x)) for x in errno.errorcode)
                      if s == m.group(3).strip()), errno.EIO)
            out.append((m.group(1), m.group(2), e))
            continue
        m = LOST_LINE.search(line)
        if m:
            for op in ("write", "fsync", "flush", "close"):
                out.append((op, m.group(1), errno.EIO))
    return out


def _path_matches(logged, rel):
    """The daemon may log the remote path or the path under the mount;
    a failure on a parent's lookup names the parent."""
    parts = rel.strip("/").split("/")
    for n in range(len(parts), 0, -1):
        cand = "/".join(parts[:n])
        if logged == cand or logged.endswith("/" + cand):
            return True
    return False


def unmatched_errors(errors, stderr_text, errnos=(errno.EIO,)):
    """Failures with an errno in `errnos` that no daemon log line names
    (operation, path and errno)."""
    logged = log_failures(stderr_text)
    bad = []
    for e in errors:
        if e["errno"] not in errnos:
            continue
        ops = DAEMON_OPS.get(e["op"], {e["op"]})
        names = [n for n in (e["path"], e.get("path2")) if n]
        if not any(op in ops and err == e["errno"] and
                   any(_path_matches(p, n) for n in names)
                   for op, p, err in logged):
            bad.append(e)
    return bad


def lost_without_error(errors, stderr_text):
    """Paths the daemon says it lost data of, while the workload saw no
    EIO for them: a silent loss."""
    seen = {n for e in errors if e["errno"] == errno.EIO
            for n in (e["path"], e.get("path2")) if n}
    lost = set()
    for line in stderr_text.splitlines():
        m = LOST_LINE.search(line)
        if m and not any(_path_matches(m.group(1), p) for p in seen):
            lost.add(line.strip())
    return sorted(lost)


def stderr_around(stderr_text, needles, context=3, limit=40):
    """Daemon stderr lines around those containing any needle (for a
    failure message)."""
    lines = stderr_text.splitlines()
    keep = set()
    for i, line in enumerate(lines):
        if any(n in line for n in needles):
            keep.update(range(max(0, i - context), min(len(lines), i + context + 1)))
    return "\n".join(lines[i] for i in sorted(keep)[:limit])


def fmt_counts(counts):
    return ", ".join(f"{k} x{v}" for k, v in sorted(counts.items())) or "none"


# ---- one matrix cell ------------------------------------------------------

# Test-scale daemon settings of the matrix, and the bounds they imply.
OP_TIMEOUT, CONNECT_TIMEOUT, BACKOFF_MIN, BACKOFF_MAX = 4, 2, 0.2, 1
MOUNT_OPTS = {"op_timeout": OP_TIMEOUT, "connect_timeout": CONNECT_TIMEOUT,
              "backoff_min": BACKOFF_MIN, "backoff_max": BACKOFF_MAX,
              "ServerAliveInterval": 1, "ServerAliveCountMax": 2,
              "connections": 2}
LONGEST_BOUND = OP_TIMEOUT + 2
RECOVERY_BOUND = BACKOFF_MAX + CONNECT_TIMEOUT + 2
FAULT_SECONDS = 4.0
PRE_SECONDS = 1.0     # the workload runs this long before the fault
POST_SECONDS = 1.0    # and this long after the descriptors work again
FINISH_TIMEOUT = 60


# A session the daemon gave up on (the table's "sessions lost").
SESSION_LOST = re.compile(r"session \d+: (?:no answer for|connection lost|connection closed)")


class CellResult:
    """What a cell measured, and every way it broke the contract."""

    def __init__(self, fault, kind, result, t_fault, t_clear, remote, stderr_text,
                 daemon_status=None):
        self.fault, self.kind, self.r = fault, kind, result
        self.daemon_status = daemon_status
        self.t_fault, self.t_clear = t_fault, t_clear
        self.stderr = stderr_text
        self.bytes, self.file_problems = verify_files(result, remote)
        rec = result["recovered_at"]
        self.recovery = None if rec is None else max(0.0, rec - t_clear)
        top = result["longest"][0] if result["longest"] else {"secs": 0, "op": "-", "path": ""}
        self.longest, self.longest_op = top["secs"], f"{top['op']} {top['path']}"

    def row(self):
        return {"longest": self.longest, "longest_op": self.longest_op,
                "recovery": self.recovery, "bytes": self.bytes,
                "errors": fmt_counts(self.r["error_counts"]), "calls": self.r["calls"],
                "lost": len(SESSION_LOST.findall(self.stderr))}

    def _rel(self, t):
        return f"{t - self.t_fault:+.2f} s after the fault began"

    def problems(self, allow_errors=True):
        """Every broken assertion, each one line with what, when and how
        long, plus the daemon's stderr around the first ones."""
        out, needles = [], []
        if self.daemon_status is not None:
            out.append(f"steadyfs exited (status {self.daemon_status}) during the cell:\n"
                       + "\n".join(line for line in self.stderr.splitlines()
                                   if "runtime error" in line or "Sanitizer" in line
                                   or "SUMMARY" in line or " #" in line)[:3000])
        enotconn = self.r["error_counts"].get("ENOTCONN", 0)
        if enotconn:
            first = next(e for e in self.r["errors"] if e["errno"] == errno.ENOTCONN)
            out.append(f"ENOTCONN x{enotconn}, first from {first['op']} "
                       f"'{first['path']}' at {self._rel(first['t0'])}")
        for c in self.r["longest"]:
            if c["secs"] > LONGEST_BOUND:
                out.append(f"{c['op']} '{c['path']}' took {c['secs']:.2f} s "
                           f"(bound {LONGEST_BOUND} s), started {self._rel(c['t0'])}")
                needles.append(os.path.basename(c["path"]) or "/")
        if self.recovery is None:
            out.append(f"the pre-fault descriptors never worked again "
                       f"(waited {RECOVERY_BOUND + OP_TIMEOUT + 5} s after the fault cleared)")
        elif self.recovery > RECOVERY_BOUND:
            out.append(f"the pre-fault descriptors worked again only "
                       f"{self.recovery:.2f} s after the fault cleared (bound {RECOVERY_BOUND} s)")
        out += [f"server content: {p}" for p in self.file_problems]
        wrong = collections.Counter(self.r["wrong"])
        out += [f"wrong result: {w}" + (f" (x{n})" if n > 1 else "")
                for w, n in list(wrong.items())[:20]]
        for e in unmatched_errors(self.r["errors"], self.stderr):
            out.append(f"EIO from {e['op']} '{e['path']}' ({self._rel(e['t0'])}, "
                       f"took {e['t1'] - e['t0']:.2f} s) has no daemon log line "
                       f"naming the operation, path and errno")
            needles.append(os.path.basename(e["path"]))
        for line in lost_without_error(self.r["errors"], self.stderr):
            out.append(f"silent loss (no EIO seen by the writer): {line}")
        rec = self.r["recovered_at"]
        late = [e for e in self.r["errors"] if rec is not None and e["t0"] > rec]
        for e in late[:20]:
            out.append(f"{errno.errorcode.get(e['errno'], e['errno'])} from "
                       f"{e['op']} '{e['path']}', a call made "
                       f"{e['t0'] - rec:.2f} s after the old descriptors "
                       f"worked again ({self._rel(e['t0'])})")
            needles.append(os.path.basename(e["path"]))
        if not allow_errors and self.r["errors"]:
            for e in self.r["errors"][:20]:
                out.append(f"{errno.errorcode.get(e['errno'], e['errno'])} from "
                           f"{e['op']} '{e['path']}' at {self._rel(e['t0'])} "
                           f"after {e['t1'] - e['t0']:.2f} s (no error allowed)")
                needles.append(os.path.basename(e["path"]))
        if out and needles:
            out.append("--- daemon stderr around them ---\n"
                       + stderr_around(self.stderr, needles + ["state:", "session"]))
        return out


def run_cell(fault, kind, mount, remote, apply, clear, workdir,
             fault_seconds=FAULT_SECONDS, seed=7):
    """Run workload `kind` on `mount` (remote folder `remote` on the
    server side), apply the fault for `fault_seconds` while it runs, clear
    it, wait for the old descriptors to work again, let the workload run
    on briefly, stop it and check the server. Returns a CellResult."""
    make_server_files(remote)
    child = Child(kind, mount.mountpoint, os.path.join(workdir, f"{kind}.json"), seed)
    try:
        if child.expect("ready", 30) is None:
            raise ChildError(f"workload '{kind}' did not start:\n{child.stderr()}")
        time.sleep(PRE_SECONDS)        # the workload's own run time, not a sync
        t_fault = time.monotonic()
        try:
            apply()
            time.sleep(fault_seconds)  # the outage itself
        finally:
            clear()
        t_clear = time.monotonic()
        child.send(f"clear {t_clear:.6f}")
        child.expect("recovered", RECOVERY_BOUND + OP_TIMEOUT + 5)
        time.sleep(POST_SECONDS)
        result = child.finish(FINISH_TIMEOUT)
    finally:
        child.kill()
    cell = CellResult(fault, kind, result, t_fault, t_clear, remote,
                      mount.stderr_text(), mount.proc.poll())
    # Verified: drop the bulky files (tens of MiB per cell) from the server.
    shutil.rmtree(os.path.join(remote, Crawler.JOB), ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(remote, READER_FILE))
    return cell


FAULT_ORDER = ["cut", "blackhole", "delay", "throttle", "sshd-restart",
               "server-frozen"]
TABLE_PATH = os.path.join(os.environ.get("STEADYFS_BUILD") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "build"),
    "fault-matrix.json")


def table_order(fault, kind):
    f = FAULT_ORDER.index(fault) if fault in FAULT_ORDER else len(FAULT_ORDER)
    k = list(WORKLOADS).index(kind) if kind in WORKLOADS else len(WORKLOADS)
    return (f, k, fault, kind)


def report(result, allow_errors=True):
    """Add the cell to the table, then assert it kept the contract."""
    Table(TABLE_PATH).add(result.fault, result.kind, result.row())
    problems = result.problems(allow_errors=allow_errors)
    assert not problems, (f"{result.fault} x {result.kind}:\n  " + "\n  ".join(problems))


def table_fixture(request):
    """Body of each test module's module-scoped fixture: when the module
    ends, print the rows of its own tests and write the whole table (both
    modules' rows) as Markdown beside the JSON."""
    started = time.time()
    yield
    table = Table(TABLE_PATH)
    md = TABLE_PATH[:-len(".json")] + ".md"
    with open(md, "w") as f:
        f.write(table.render(table_order) + "\n")
    show_table(request.config, table,
               f"{request.module.__name__}: fault x workload (all rows: {md})",
               table_order, since=started)


def show_table(config, table, title, order=None, since=0):
    """Print the table (rows added after `since`) on the terminal even
    when output is captured."""
    text = table.render(order, since)
    capman = config.pluginmanager.getplugin("capturemanager")
    reporter = config.pluginmanager.getplugin("terminalreporter")
    if reporter is None:
        print(text)
        return
    with capman.global_and_fixture_disabled():
        reporter.write_sep("-", title)
        reporter.write_line(text)


def _size(n):
    if n >= MIB:
        return f"{n / MIB:.1f} MiB"
    return f"{n / KIB:.1f} KiB" if n >= KIB else f"{n} B"


class Table:
    """Rows of the fault x workload table, kept in a JSON file under
    build/ (so the two test files add to one table) and rendered as
    Markdown for the closing note."""

    HEAD = ("fault", "workload", "longest call", "recovery", "bytes verified",
            "errors returned", "sessions lost", "calls")

    def __init__(self, path):
        self.path = path

    def load(self):
        try:
            with open(self.path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def add(self, fault, workload, row):
        rows = self.load()
        rows[f"{fault}|{workload}"] = dict(row, fault=fault, workload=workload,
                                           when=time.time())
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(rows, f, indent=1, sort_keys=True)
        os.rename(tmp, self.path)

    def render(self, order=None, since=0):
        rows = [r for r in self.load().values() if r.get("when", 0) >= since]
        if order:
            rows.sort(key=lambda r: order(r["fault"], r["workload"]))
        out = ["| " + " | ".join(self.HEAD) + " |",
               "|" + "---|" * len(self.HEAD)]
        for r in rows:
            rec = "-" if r["recovery"] is None else f"{r['recovery']:.2f} s"
            out.append(f"| {r['fault']} | {r['workload']} | "
                       f"{r['longest']:.2f} s ({r['longest_op']}) | {rec} | "
                       f"{_size(r['bytes'])} | {r['errors']} | "
                       f"{r.get('lost', '-')} | {r['calls']} |")
        return "\n".join(out)


if __name__ == "__main__":
    child_main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
