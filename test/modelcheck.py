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
import random
import re
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
import fsmodel  # noqa: E402
import mounts  # noqa: E402
import sshdfix  # noqa: E402
from fsmodel import World, hidden  # noqa: E402

OP_TIMEOUT, CONNECT_TIMEOUT = 4, 2
MOUNT_OPTS = {"op_timeout": OP_TIMEOUT, "connect_timeout": CONNECT_TIMEOUT,
              "backoff_min": 0.2, "backoff_max": 1,
              "ServerAliveInterval": 1, "ServerAliveCountMax": 2,
              "connections": 2}
# No answer this long is a hung call (the contract says op_timeout; this
# is far past it so a busy machine never trips it).
HANG_BOUND = 3 * OP_TIMEOUT + 20
SETTLE_BOUND = 60            # reconnected and every write acknowledged
FAULT_KINDS = ("cut", "blackhole", "outage", "kill", "upgrade")
MAX_WORLDS = 64
MAX_FILE = 256 * 1024
NAMES = ("a", "b", "c", "d", "e")
KNOWN_BUGS_ENV = "STEADYFS_MODEL_KNOWN_BUGS"
SEEDS_FILE = os.path.join(HERE, "modelcheck-seeds.txt")
TRACES_DIR = os.path.join(HERE, "modelcheck-traces")

# Calls whose EIO during an outage leaves nothing changed: ok to answer
# from the attribute cache, or EAGAIN for a node with nothing cached.
READ_ONLY = {"pread", "mmap_read", "fstat", "cat", "lstat", "readdir",
             "readlink"}


# The open findings whose calls the planner avoids unless asked
# (docs/modelcheck.md, "Known bugs"): issue 14's findings 1, 2, 3 and 10,
# the documented late write after a frozen link, and M1-M3 found here.
KNOWN_BUGS = ("f1", "f2", "f3", "f10", "late", "m1", "m2", "m3")


def parse_known(s):
    """"1" or "all": every known bug; "" or "0": none; else a comma list."""
    s = (s or "").strip()
    if s in ("", "0"):
        return frozenset()
    if s in ("1", "all"):
        return frozenset(KNOWN_BUGS)
    out = frozenset(x.strip() for x in s.split(",") if x.strip())
    bad = sorted(out - set(KNOWN_BUGS))
    if bad:
        raise argparse.ArgumentTypeError(f"unknown bugs {bad}; known: {KNOWN_BUGS}")
    return out


def known_bugs_default():
    return parse_known(os.environ.get(KNOWN_BUGS_ENV))


# ---- the trace ----------------------------------------------------------------

class Planner:
    """Makes a trace from a seed: a list of steps, each a call (a dict for
    modelexec) or a fault ({"fault": KIND, ...}). It keeps a World of its
    own that assumes every call does what the model says, so the trace
    depends on the seed only; the runner checks what really happens."""

    def __init__(self, seed, faults, known_bugs, fault_rate=0.03):
        self.rng = random.Random(seed)
        self.seed = seed
        self.faults = set(faults)
        self.known_bugs = frozenset(known_bugs or ())
        self.fault_rate = fault_rate if self.faults else 0
        self.w = World()
        self.next_fd = 1
        self.tag = seed * 1_000_003
        self.steps = []
        self.outage_left = 0     # calls left in the current outage
        self.blip_left = 0
        self.dirty = {}          # fd id -> inode, writes not yet fsynced

    # ---- picking ---------------------------------------------------------

    def paths(self, kind=None):
        return [p for p, i in self.w.names.items() if p
                and (kind is None or self.w.inodes[i].kind == kind)]

    def new_path(self):
        folders = [""] + self.paths("d")
        folder = self.rng.choice(folders)
        name = self.rng.choice(NAMES)
        return f"{folder}/{name}" if folder else name

    def any_path(self, kind=None, fresh=0.3):
        have = self.paths(kind)
        if not have or self.rng.random() < fresh:
            return self.new_path()
        return self.rng.choice(have)

    def fds(self, pred=lambda f: True):
        return [k for k, f in self.w.fds.items() if pred(f)]

    def ntag(self):
        self.tag += 1
        return self.tag

    def size_of(self, f):
        return len(self.w.inodes[f.ino].data())

    def wlen(self):
        r = self.rng.random()
        if r < 0.6:
            return self.rng.randint(1, 4096)
        if r < 0.95:
            return self.rng.randint(4097, 20000)
        return self.rng.randint(20001, 65536)

    def offset(self, size):
        hi = min(size + 8192, MAX_FILE - 65536)
        if self.rng.random() < 0.3:
            return size  # at the end
        return self.rng.randint(0, max(0, hi))

    def bug(self, name):
        return name in self.known_bugs

    def may_touch(self, path, bug="f10"):
        """Renaming (f1) or removing or replacing (f10) a file or folder
        with open descriptors on or under it."""
        return self.bug(bug) or not self.w.busy(path)

    # ---- one call ----------------------------------------------------------

    def call(self):
        """A random call, or None when the one drawn has no target."""
        r = self.rng
        kinds = ["open"] * 8 + ["close"] * 5 + ["pwrite"] * 12 + ["write"] * 5 + \
            ["pread"] * 9 + ["fsync"] * 4 + ["fstat"] * 3 + ["ftruncate"] * 4 + \
            ["truncate"] * 3 + ["copy"] * 3 + ["mmap_read"] * 2 + \
            ["mmap_write"] * 2 + ["fallocate"] * 1 + ["cat"] * 4 + \
            ["lstat"] * 4 + ["readdir"] * 3 + ["mkdir"] * 3 + ["rmdir"] * 2 + \
            ["unlink"] * 3 + ["rename"] * 5 + ["link"] * 2 + ["symlink"] * 2 + \
            ["readlink"] * 2 + ["chmod"] * 2 + ["utime"] * 2
        kind = r.choice(kinds)
        if self.outage_left and kind in ("mmap_read", "mmap_write"):
            return None  # a page fault cannot fail gracefully; keep fds
        return getattr(self, "_" + kind)()

    def _open(self):
        if len(self.w.fds) >= 8:
            return None
        r = self.rng
        acc = r.choice([os.O_RDONLY, os.O_WRONLY, os.O_RDWR, os.O_RDWR])
        files = self.paths("f")
        if files and r.random() < 0.75:
            path, flags = r.choice(files), acc
            if acc != os.O_RDONLY and r.random() < 0.15:
                flags |= os.O_TRUNC
        else:
            path = self.new_path()
            flags = (acc if acc != os.O_RDONLY else os.O_RDWR) | os.O_CREAT
            if r.random() < 0.3:
                flags |= os.O_EXCL
        if acc != os.O_RDONLY and r.random() < 0.25:
            flags |= os.O_APPEND
        n = self.w.node(path)
        if n is not None and (n.kind != "f" or
                              (flags & os.O_TRUNC and not self.truncate_ok(self.w.ino(path), 0))):
            return None
        if n is not None and flags & os.O_TRUNC and not self.bug("m1") and \
                self.fds(lambda f: f.ino == self.w.ino(path) and f.write):
            return None  # finding M1: the O_APPEND end stays at the old size
        fid = self.next_fd
        self.next_fd += 1
        return {"op": "open", "id": fid, "path": path, "flags": flags,
                "mode": r.choice([0o644, 0o600, 0o640])}

    def _close(self):
        fds = self.fds()
        return {"op": "close", "fd": self.rng.choice(fds)} if fds else None

    def _wfds(self, append=None):
        return self.fds(lambda f: f.write and (append is None or f.append == append)
                        and not (f.append and self.w.inodes[f.ino].linked))

    def _pwrite(self):
        fds = self._wfds(append=False)
        if not fds:
            return None
        fid = self.rng.choice(fds)
        off = self.offset(self.size_of(self.w.fds[fid]))
        return {"op": "pwrite", "fd": fid, "off": off, "len": self.wlen(),
                "tag": self.ntag()}

    def _write(self):
        fds = self._wfds(append=True)
        if not fds:
            return None
        fid = self.rng.choice(fds)
        if self.size_of(self.w.fds[fid]) > MAX_FILE - 65536:
            return None
        return {"op": "write", "fd": fid, "len": self.wlen(), "tag": self.ntag()}

    def _pread(self):
        fds = self.fds(lambda f: f.read)
        if not fds:
            return None
        fid = self.rng.choice(fds)
        size = self.size_of(self.w.fds[fid])
        return {"op": "pread", "fd": fid, "off": self.rng.randint(0, size + 100),
                "len": self.rng.choice([1, 100, 4096, 8192, 65536, size + 10])}

    def _fsync(self):
        fds = self.fds(lambda f: f.write)
        return {"op": "fsync", "fd": self.rng.choice(fds)} if fds else None

    def _fstat(self):
        fds = self.fds()
        return {"op": "fstat", "fd": self.rng.choice(fds)} if fds else None

    def truncate_ok(self, ino, size):
        """A truncate below writes still queued is finding 2."""
        return self.bug("f2") or ino not in self.dirty.values()

    def _size(self, old):
        r = self.rng.random()
        if r < 0.4:
            return self.rng.randint(0, old)
        if r < 0.5:
            return 0
        return self.rng.randint(old, max(old, min(old + 20000, MAX_FILE - 65536)))

    def _ftruncate(self):
        fds = self.fds(lambda f: f.write and not f.append)
        if not fds:
            return None
        fid = self.rng.choice(fds)
        f = self.w.fds[fid]
        if not self.truncate_ok(f.ino, 0):
            return {"op": "fsync", "fd": fid}
        return {"op": "ftruncate", "fd": fid, "size": self._size(self.size_of(f))}

    def _truncate(self):
        path = self.any_path("f", fresh=0.05)
        n = self.w.node(path)
        if n is not None and n.kind == "f" and not self.truncate_ok(self.w.ino(path), 0):
            return self.sync_all(self.w.ino(path))
        size = self._size(len(n.data())) if n is not None and n.kind == "f" else 100
        return {"op": "truncate", "path": path, "size": size}

    def sync_all(self, ino):
        fds = self.fds(lambda f: f.ino == ino and f.write)
        return {"op": "fsync", "fd": self.rng.choice(fds)} if fds else None

    def _copy(self):
        src = self.fds(lambda f: f.read)
        dst = self.fds(lambda f: f.write and not f.append)
        if not src or not dst:
            return None
        s, d = self.rng.choice(src), self.rng.choice(dst)
        if self.w.fds[s].ino == self.w.fds[d].ino or self.w.inodes[self.w.fds[s].ino].linked:
            return None  # a linked source's other kernel inode may hold stale pages
        ssize = self.size_of(self.w.fds[s])
        return {"op": "copy", "src": s, "fd": d,
                "src_off": self.rng.randint(0, ssize),
                "off": self.offset(self.size_of(self.w.fds[d])),
                "len": self.rng.randint(1, 30000)}

    def _mmap_fd(self, write):
        fds = self.fds(lambda f: f.read and (f.write or not write)
                       and self.size_of(f) > 0
                       and not (write and f.append)
                       and not self.w.inodes[f.ino].linked)
        return self.rng.choice(fds) if fds else None

    def _mmap_read(self):
        fid = self._mmap_fd(False)
        if fid is None:
            return None
        size = self.size_of(self.w.fds[fid])
        off = self.rng.randint(0, size - 1)
        return {"op": "mmap_read", "fd": fid, "off": off,
                "len": self.rng.randint(1, size - off)}

    def _mmap_write(self):
        fid = self._mmap_fd(True)
        if fid is None:
            return None
        size = self.size_of(self.w.fds[fid])
        off = self.rng.randint(0, size - 1)
        return {"op": "mmap_write", "fd": fid, "off": off,
                "len": self.rng.randint(1, min(size - off, 20000)),
                "tag": self.ntag()}

    def _fallocate(self):
        fds = self.fds(lambda f: f.write)
        if not fds:
            return None
        return {"op": "fallocate", "fd": self.rng.choice(fds),
                "off": self.rng.randint(0, 65536), "len": self.rng.randint(1, 65536)}

    def _cat(self):
        return {"op": "cat", "path": self.any_path("f", fresh=0.1)}

    def _lstat(self):
        return {"op": "lstat", "path": self.any_path(fresh=0.15)}

    def _readdir(self):
        dirs = [""] + self.paths("d")
        return {"op": "readdir", "path": self.rng.choice(dirs)}

    def _mkdir(self):
        return {"op": "mkdir", "path": self.new_path(),
                "mode": self.rng.choice([0o755, 0o700, 0o750])}

    def _rmdir(self):
        return {"op": "rmdir", "path": self.any_path("d", fresh=0.1)}

    def _unlink(self):
        path = self.any_path(self.rng.choice(["f", "l", None]), fresh=0.1)
        if not self.may_touch(path):
            return None
        return {"op": "unlink", "path": path}

    def _rename(self):
        src = self.any_path(fresh=0.05)
        dst = self.any_path(fresh=0.5)
        if not self.may_touch(src, "f1") or not self.may_touch(dst):
            return None
        a, b = self.w.node(src), self.w.node(dst)
        if not self.bug("m2") and a is not None and a.kind == "d" and \
                b is not None and b.kind == "d" and self.w.children(dst):
            return None  # finding M2: EIO, not ENOTEMPTY
        return {"op": "rename", "path": src, "to": dst}

    def _link(self):
        src = self.any_path("f", fresh=0.05)
        return {"op": "link", "path": src, "to": self.any_path(fresh=0.8)}

    def _symlink(self):
        target = self.rng.choice(self.paths() + ["nowhere", "../x"])
        return {"op": "symlink", "path": self.any_path(fresh=0.8),
                "target": target}

    def _readlink(self):
        return {"op": "readlink", "path": self.any_path("l", fresh=0.1)}

    def _chmod(self):
        return {"op": "chmod", "path": self.any_path(fresh=0.1),
                "perm": self.rng.choice([0o600, 0o644, 0o755, 0o700, 0o444, 0o640])}

    def _utime(self):
        return {"op": "utime", "path": self.any_path(fresh=0.1),
                "mtime": self.rng.randint(1_000_000_000, 1_900_000_000)}

    # ---- faults ---------------------------------------------------------

    def fault(self):
        r = self.rng
        kind = r.choice(sorted(self.faults))
        if kind in ("cut", "blackhole"):
            self.blip_left = r.randint(1, 4)
            return {"fault": kind, "secs": round(r.uniform(0.1, 0.6), 2)}
        if kind == "outage":
            self.outage_left = r.randint(1, 4)
            f = {"fault": "outage", "mode": r.choice(["cut", "blackhole"]),
                 "secs": round(r.uniform(1.5, 6.0), 2)}
            if f["mode"] == "blackhole" and not self.bug("late"):
                # The held bytes are dropped at the end (a cut, then pass):
                # delivered late they would replay the documented limit
                # "a write stuck in a frozen server can land late".
                f["drop"] = True
            return f
        if kind == "kill" and r.random() < 0.5:
            # SIGKILL while the next call is in the daemon: the kernel
            # resends it to the new daemon (FUSE_NOTIFY_RESEND).
            return {"fault": "kill", "during": round(r.uniform(0, 0.05), 3)}
        return {"fault": kind}

    def flood(self):
        """Appends that fill the write-behind window during an outage
        (finding 3: the one that fails must leave nothing queued)."""
        fds = self._wfds(append=True)
        if not fds:
            return []
        fid = self.rng.choice(fds)
        return [{"op": "write", "fd": fid, "len": 1 << 20, "tag": self.ntag()}
                for _ in range(6)]

    # ---- the trace --------------------------------------------------------

    def fresh(self, step):
        """Finding M3: stat and reads of a file show the server's size and
        bytes while a write to it is still queued. Unless known bugs are
        on, an fsync of the writer comes first."""
        if self.bug("m3") or "op" not in step:
            return step
        if step["op"] in ("pread", "mmap_read", "fstat", "copy"):
            ino = self.w.fds[step.get("src", step["fd"])].ino
        elif step["op"] in ("cat", "lstat") and step["path"] in self.w.names:
            ino = self.w.names[step["path"]]
        else:
            return step
        for k, i in self.dirty.items():
            if i == ino:
                return {"op": "fsync", "fd": k}
        return step

    def apply(self, step):
        """The planner's own world follows the trace as if every call did
        what the model says."""
        x = self.w.expect(step)
        if x is None or x.err or x.apply is None:
            return
        res = {"n": step.get("len", 0)}
        if step["op"] == "copy":
            src = self.w.fds[step["src"]]
            res["n"] = len(self.w.inodes[src.ino].data()[step["src_off"]:
                                                         step["src_off"] + step["len"]])
        if step["op"] == "copy" and res["n"] == 0:
            return
        x.apply(self.w, res)
        if step["op"] in ("pwrite", "write", "copy"):
            self.dirty[step["fd"]] = self.w.fds[step["fd"]].ino
        if step["op"] == "mmap_write":
            ino = self.w.fds[step["fd"]].ino
            for k, f in self.w.fds.items():
                if f.ino == ino and f.write:
                    self.dirty[k] = ino
        if step["op"] in ("fsync", "close"):
            self.dirty.pop(step["fd"], None)

    def make(self, n_ops):
        while sum(1 for s in self.steps if "op" in s) < n_ops:
            if self.fault_rate and not self.outage_left and self.rng.random() < self.fault_rate:
                f = self.fault()
                self.steps.append(f)
                if f["fault"] == "outage" and self.bug("f3") and self.rng.random() < 0.5:
                    for s in self.flood():
                        self.steps.append(s)
                        self.apply(s)
                continue
            step = self.call()
            if step is None:
                continue
            step = self.fresh(step)
            if self.outage_left:
                self.outage_left -= 1
                if not self.outage_left:
                    self.steps.append(step)
                    self.apply(step)
                    self.steps.append({"fault": "outage_end"})
                    continue
            self.steps.append(step)
            self.apply(step)
        if self.outage_left:
            self.steps.append({"fault": "outage_end"})
        return self.steps


def make_trace(seed, n_ops, faults, known_bugs):
    return Planner(seed, faults, known_bugs).make(n_ops)


def fmt_step(s):
    if "fault" in s:
        args = " ".join(f"{k}={v}" for k, v in s.items() if k != "fault")
        return f"FAULT {s['fault']} {args}".rstrip()
    args = " ".join(f"{k}={oct(v) if k in ('flags', 'mode', 'perm') else v}"
                    for k, v in s.items() if k != "op")
    return f"{s['op']} {args}"


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
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Hang(f"no answer in {timeout} s")
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 1 << 20)
                if not chunk:
                    err = self.proc.stderr.read().decode(errors="replace")[-2000:]
                    self.proc.wait()
                    raise Hang(f"executor died (status {self.proc.returncode}): {err}")
                self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
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


# ---- worlds ----------------------------------------------------------------------

class Divergence(Exception):
    def __init__(self, index, step, what):
        super().__init__(what)
        self.index, self.step, self.what = index, step, what

    def signature(self):
        """What a shorter trace must show to count as the same failure:
        the call or fault, and the message with its numbers left out."""
        return (self.step.get("op") or self.step.get("fault"),
                re.sub(r"\d+", "N", self.what.split(" (after state")[0]))


def ename(e):
    if isinstance(e, tuple):
        return " or ".join(ename(x) for x in e)
    return errno.errorcode.get(e, str(e)) if e else "success"


def _maybe_split(world, req):
    """A descriptor that may have lost write-behind data to a daemon death
    (an mmap write's holder is unknown): a world where it did, one where it
    did not."""
    fid = req.get("fd")
    f = world.fds.get(fid)
    if f is None or f.state != "maybe" or req["op"] not in ("pwrite", "write", "fsync", "close", "copy"):
        return [world]
    a, b = world, world.copy()
    a.fds[fid].state = "ok"
    b.fds[fid].state = "dead"
    return [a, b]


def _lose(world, holder, changes, j):
    """World where the writes of `holder` from the j-th on never landed."""
    for c in changes[j:]:
        c.lost = True
    inos = set()
    for n in world.inodes.values():
        if any(c in changes[j:] for c in n.log):
            n._data = None
            n.suspect = True
            inos.add(id(n))
    if isinstance(holder, tuple):
        ino = holder[1]
        for f in world.fds.values():
            if f.ino == ino and f.write and f.state == "ok":
                f.state = "maybe"
    elif holder in world.fds:
        world.fds[holder].state = "dead"


class Worlds:
    """Every state of the mount the contract still allows."""

    def __init__(self):
        self.all = [World()]

    def step(self, index, req, res, outage):
        """Keep the worlds in which `res` is a right answer to `req`;
        raise Divergence when none is left. Returns False when the call
        was skipped (no world can tell what it must do)."""
        out, why, skipped = [], [], 0
        got = res.get("errno", 0) if not res.get("ok") else 0
        ro_any = req["op"] in READ_ONLY and outage and len(self.all) > 1
        for world in self.all:
            for w in _maybe_split(world, req):
                x = w.expect(req)
                if x is None:
                    skipped += 1
                    continue
                more, reason = self._one(w, x, req, res, got, outage)
                out += more
                if reason:
                    why.append(reason)
        if skipped == len(self.all) and not out:
            return False
        if not out:
            raise Divergence(index, req, why[0] if why else "no world left")
        if ro_any:
            return True  # a cached answer during an outage decides nothing
        self.all = _dedupe(out)
        return True

    @staticmethod
    def _one(w, x, req, res, got, outage):
        if not got:
            if x.err:
                return [], f"succeeded, expected {ename(x.err)}"
            msg = x.check(res) if x.check else None
            if msg:
                return [], msg
            if x.apply:
                x.apply(w, res)
            return [w], None
        if got == x.err or isinstance(x.err, tuple) and got in x.err:
            if req["op"] == "close":
                x.apply(w, res)
            return [w], None
        allowed = {errno.EIO} | ({errno.EAGAIN} if x.cls == "ro" else set())
        if not outage or got not in allowed:
            return [], f"{ename(got)}, expected {ename(x.err)}"
        # A call the outage made fail.
        if x.cls in ("ro", "data", "fsync") or x.err:
            if req["op"] == "close":
                w.forget_fd(req["fd"])
            return [w], None
        if x.cls == "maybe":
            done = w.copy()
            x.apply(done, res)
            return [w, done], None
        if x.cls == "close":
            # Its queued data is sent until op_timeout after the release,
            # then dropped: any prefix of it may have landed.
            held = w.unsettled().get(req["fd"], [])
            out = []
            for j in range(len(held) + 1):
                v = w.copy()
                vheld = v.unsettled().get(req["fd"], [])
                _lose(v, req["fd"], vheld, j)
                v.forget_fd(req["fd"])
                out.append(v)
            return out, None
        return [], f"unexpected class {x.cls}"

    def daemon_died(self):
        """Every write-behind byte not yet known on the server may have
        died with the daemon. For each holder of such writes: a world
        where its writes from the j-th on never landed and its descriptor
        fails from now on (j = 0..k; at j = k the server got them all but
        the acknowledgements were lost), and one where nothing was lost."""
        out = []
        for world in self.all:
            variants = [world]
            for holder in list(world.unsettled()):
                nxt = []
                for v in variants:
                    k = len(v.unsettled().get(holder, []))
                    nxt.append(v)
                    for j in range(k + 1):
                        c = v.copy()
                        _lose(c, holder, c.unsettled()[holder], j)
                        nxt.append(c)
                variants = nxt[:MAX_WORLDS]
            out += variants
        self.all = _dedupe(out)[:MAX_WORLDS * 4]

    def observe(self, server, mtimes):
        """Keep the worlds whose server copy is `server`; the message of
        the closest miss when none is."""
        keep, misses = [], []
        for w in self.all:
            miss = diff_views(w.server_view(), server, w.mtimes(), mtimes)
            if miss:
                misses.append(miss)
            else:
                keep.append(w)
        if not keep:
            return misses[0]
        for w in keep:
            w.settle()
        self.all = _dedupe(keep)
        return None


def _key(w):
    return (tuple(sorted((p, i) for p, i in w.names.items())),
            tuple(sorted((k, f.ino, f.state) for k, f in w.fds.items())),
            tuple(sorted((i, n.data(), n.perm, n.mtime, n.target)
                         for i, n in w.inodes.items())))


def _dedupe(worlds):
    seen, out = set(), []
    for w in worlds:
        k = _key(w)
        if k not in seen:
            seen.add(k)
            out.append(w)
    return out


def diff_views(want, got, want_mtimes, got_mtimes):
    """None when the server holds what the model says, else what differs."""
    for p in sorted(set(want) | set(got)):
        if p not in got:
            return f"server: '{p}' missing (model: {want[p][0]})"
        if p not in want:
            return f"server: '{p}' exists (a {got[p][0]}), the model has nothing there"
        (wk, wp, wd), (gk, gp, gd) = want[p], got[p]
        if wk != gk:
            return f"server: '{p}' is a {gk}, model a {wk}"
        if wk == "f" and wd != gd:
            return "server: " + fsmodel._eq(f"'{p}' content", wd, gd)
        if wk == "l" and wd != gd:
            return f"server: '{p}' points to {gd!r}, model {wd!r}"
        if wk != "l" and wp != gp:
            return f"server: '{p}' mode {oct(gp)}, model {oct(wp)}"
        if p in want_mtimes and want_mtimes[p] != got_mtimes.get(p):
            return f"server: '{p}' mtime {got_mtimes.get(p)}, model {want_mtimes[p]}"
    return None


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

    def merge(self, o):
        self.ops.update(o.ops)
        self.faults.update(o.faults)
        self.errors.update(o.errors)
        self.notes |= o.notes
        self.runs += o.runs

    def report(self):
        lines = [f"runs: {self.runs}, calls: {sum(self.ops.values())}"]
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

    def __init__(self, env, trace, log=None):
        self.env, self.trace = env, trace
        self.log = log or (lambda s: None)
        self.stats = Stats()
        self.stats.runs = 1
        self.worlds = Worlds()
        self.outage = None      # (mode, end time) while an outage is on
        self.timer = None
        self.kill_next = None   # a kill to make while the next call runs
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
                self.log(f"{i:5d} {fmt_step(s)}")
                if "fault" in s:
                    self.fault(i, s)
                else:
                    self.call(i, s)
            self.finish(len(self.trace))
            return None
        except Divergence as d:
            d.stderr = self.mount.stderr_text() if self.mount else ""
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
                pid = self.kill_daemon(i, s)
            res = self.ex.receive()
        except Hang as e:
            raise Divergence(i, s, f"hung: {e}")
        self.log(f"      -> {_fmt_res(res)}")
        self.worlds.step(i, s, res, self.outage is not None)
        self.stats.ops[s["op"]] += 1
        if not res.get("ok"):
            if res["errno"] == errno.EOPNOTSUPP and s["op"] == "fallocate":
                self.stats.notes.add("fallocate: EOPNOTSUPP (steadyfs has no "
                                     "fallocate; the model expects that)")
            elif self.outage is not None:
                self.stats.errors[f"{s['op']} {ename(res['errno'])}"] += 1
        if kill:
            self.after_kill(i, kill, pid)
        elif len(self.worlds.all) > MAX_WORLDS:
            self.settle(i, s)

    # ---- faults --------------------------------------------------------------

    def _join_timer(self):
        if self.timer:
            self.timer.join()
            self.timer = None

    def fault(self, i, s):
        kind = s["fault"]
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

    def kill_daemon(self, i, s):
        self.stats.faults["daemon kill" + (" during a call" if s.get("during") is not None
                                           else "")] += 1
        pid = self.mount.daemon_pid()
        if pid is None:
            raise Divergence(i, s, "kill: the keeper has no daemon child")
        os.kill(pid, signal.SIGKILL)
        return pid

    def after_kill(self, i, s, pid):
        self.wait_new_daemon(i, s, pid)
        self.worlds.daemon_died()
        self.settle(i, s)

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
        # No hidden name left once every descriptor is released.
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
               out=print):
    """Run one seed. Returns (divergence or None, stats, shrunk trace)."""
    trace = make_trace(seed, n_ops, faults, known_bugs)
    run = Run(env, trace, log)
    d = run.run()
    if d is None:
        return None, run.stats, None
    small = trace[:d.index + 1]
    if shrink_secs:
        small, d = shrink(env, trace, d, shrink_secs, log=out)
    return d, run.stats, small


def known_str(known):
    return "all" if set(known) == set(KNOWN_BUGS) else ",".join(sorted(known))


def replay_command(seed, n_ops, faults, known_bugs):
    kb = f"{KNOWN_BUGS_ENV}={known_str(known_bugs)} " if known_bugs else ""
    return (f"{kb}STEADYFS_BUILD={mounts.build_dir()} /usr/bin/python3 "
            f"test/modelcheck.py --seed {seed} --ops {n_ops} --faults {','.join(faults) or 'none'}")


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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, help="first seed (default: from the clock)")
    ap.add_argument("--seeds", type=int, default=1, help="how many seeds from --seed")
    ap.add_argument("--ops", type=int, default=300, help="calls per seed")
    ap.add_argument("--faults", type=parse_faults, default=list(FAULT_KINDS),
                    help="comma list of " + ",".join(FAULT_KINDS) + ", all or none")
    ap.add_argument("--minutes", type=float, default=0,
                    help="soak: new seeds until this much time has passed")
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
    work = tempfile.mkdtemp(prefix="modelcheck-")
    sshd = sshdfix.Sshd(os.path.join(work, "sshd")).start()
    env = Env(sshd, work)
    total, failed = Stats(), []
    log = print if args.verbose else None
    try:
        if args.trace:
            with open(args.trace) as f:
                meta = json.load(f)
            print(f"modelcheck: replaying {args.trace} ({len(meta['trace'])} steps)")
            run = Run(env, meta["trace"], log)
            d = run.run()
            total.merge(run.stats)
            if d:
                print_divergence(d, meta["trace"][:d.index + 1])
                failed.append(meta.get("seed"))
        else:
            seed, t_end = args.seed, time.monotonic() + args.minutes * 60
            n = 0
            while True:
                print(f"modelcheck: seed {seed}, {args.ops} calls, faults "
                      f"{','.join(args.faults) or 'none'}"
                      f"{', known bugs ' + known_str(args.known_bugs) if args.known_bugs else ''}",
                      flush=True)
                d, st, small = check_seed(env, seed, args.ops, args.faults,
                                          args.known_bugs, args.shrink_seconds, log)
                total.merge(st)
                if d:
                    failed.append(seed)
                    print_divergence(d, small)
                    path = save_trace(small, os.path.join(
                        mounts.build_dir(), f"modelcheck-{seed}"
                        f"{'-' + known_str(args.known_bugs) if args.known_bugs else ''}.json"),
                        {"seed": seed, "ops": args.ops, "faults": args.faults,
                         "known_bugs": sorted(args.known_bugs)})
                    with open(path[:-5] + ".stderr", "w") as f:
                        f.write(getattr(d, "stderr", ""))
                    print(f"daemon log: {path[:-5]}.stderr")
                    print(f"replay the seed:  {replay_command(seed, args.ops, args.faults, args.known_bugs)}")
                    print(f"replay the trace: /usr/bin/python3 test/modelcheck.py --trace {path}")
                    if not args.keep_going:
                        break
                n += 1
                seed += 1
                if args.minutes:
                    if time.monotonic() >= t_end:
                        break
                elif n >= args.seeds:
                    break
    finally:
        sshd.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(total.report())
    print(f"modelcheck: {'FAILED seeds ' + str(failed) if failed else 'no divergence'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
