"""The model checker's planner (test/modelcheck.py): a seed makes a trace.

A trace is a list of steps: calls for test/modelexec.py (dicts) and
faults ({"fault": KIND, ...}). The planner draws every choice from the
seed and from a World of its own (test/fsmodel.py) that assumes each call
does what the model says, never from what a mount answered, so a seed
always makes the same trace. It also leaves out the calls that hit open
findings unless asked (KNOWN_BUGS, docs/modelcheck.md).
"""

import argparse
import os
import random

from fsmodel import World

FAULT_KINDS = ("cut", "blackhole", "outage", "kill", "upgrade")
MAX_FILE = 256 * 1024
FAULT_RATE = 0.03  # a fault before about one call in 33 (make check)
NAMES = ("a", "b", "c", "d", "e")
KNOWN_BUGS_ENV = "STEADYFS_MODEL_KNOWN_BUGS"

# The open findings whose calls the planner avoids unless asked
# (docs/modelcheck.md, "Known bugs"): issue 14's findings 1, 2, 3 and 10,
# the documented late write after a frozen link, and M1-M3 found here.
KNOWN_BUGS = ("f1", "f2", "f3", "f10", "late", "m1", "m2", "m3", "m4", "m5", "m7",
              "m8", "m9", "m11")
# Calls that are settled by the postcondition, not resent (retries.md).
SETTLED = ("mkdir", "rmdir", "unlink", "rename", "link", "symlink")
# Those not fixed yet on this branch: the planner avoids their calls and
# test_model.py skips their regression traces unless STEADYFS_MODEL_KNOWN_BUGS
# names them. Remove a name once its fix is in: from then on every run
# makes those calls, and its traces run in `make check`.
# f2, f3 and m8 are fixed (branch `writes`: truncate and O_TRUNC wait for
# queued writes, a failed write queues nothing, mmap write-back through an
# O_APPEND handle is positional); f1 and f10 too (branch `identity2`: a
# handle's path is its node's, one same-file rule on every reopen, an
# unlinked or replaced open file is hidden); m1, m3, m4, m5 and m7 too
# (branch `writes2`: an O_TRUNC open empties the append end of every
# descriptor, reads, utimens and overlapping writes through another
# descriptor wait for the writes queued before them, a handle's writes
# are sent and replayed in write() order); m2 and m9 too (branch
# `namespace`: a folder over a non-empty one is ENOTEMPTY, a call that died
# with its session before the server did it is sent again); m11 too (the
# "same file?" rule judges a reopen's FSTAT by what steadyfs knew when it
# asked, not by an acknowledgement that came in on another session since).
OPEN_BUGS = frozenset(KNOWN_BUGS) - {"f1", "f2", "f3", "f10", "m8",
                                     "m1", "m3", "m4", "m5", "m7", "m2", "m9",
                                     "m11"}


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


def known_str(known):
    return "all" if set(known) == set(KNOWN_BUGS) else ",".join(sorted(known))


# ---- the trace ----------------------------------------------------------------

class Planner:
    """Makes a trace from a seed: a list of steps, each a call (a dict for
    modelexec) or a fault ({"fault": KIND, ...}). It keeps a World of its
    own that assumes every call does what the model says, so the trace
    depends on the seed only; the runner checks what really happens."""

    def __init__(self, seed, faults, known_bugs, fault_rate=FAULT_RATE):
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
        self.outage_writes = set()  # inodes written during this outage
        self.stale = set()       # fds whose remote handle a fault made stale

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
        """Make the calls of this finding: fixed, or asked for."""
        return name not in OPEN_BUGS or name in self.known_bugs

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
            ["truncate"] * 3 + ["copy"] * 4 + ["mmap_read"] * 4 + \
            ["mmap_write"] * 4 + ["fallocate"] * 1 + ["cat"] * 4 + \
            ["lstat"] * 4 + ["readdir"] * 3 + ["mkdir"] * 3 + ["rmdir"] * 2 + \
            ["unlink"] * 3 + ["rename"] * 5 + ["link"] * 2 + ["symlink"] * 2 + \
            ["readlink"] * 2 + ["chmod"] * 2 + ["utime"] * 2
        kind = r.choice(kinds)
        if self.outage_left and kind in ("mmap_read", "mmap_write"):
            return None  # a page fault cannot fail gracefully; keep fds
        if self.blip_left and not self.bug("m9") and (
                kind in SETTLED or kind == "open" and r.random() < 0.5):
            # M9: one in flight when a short cut ends its session fails
            # with EIO when the server had not done it.
            return None
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
        ino = self.w.fds[fid].ino
        if not self.bug("m8") and self.fds(lambda f: f.ino == ino and f.write and f.append):
            return None  # M8: the write-back may go through the O_APPEND handle
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
            self.outage_writes = set()
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
        """Unless their bug is on, an fsync of the writer comes before
        M3: a stat or read of a file with writes still queued (the
        server's size and bytes come back), M4: a write overlapping one
        still queued through another descriptor (either may land last),
        M5: a utimens of a file with writes still queued (they land
        after it and set the mtime to now); and M7: a second write to a
        file during an outage is left out (None), and a descriptor's
        handle is reopened (fsync) after a fault before it writes."""
        if "op" not in step:
            return step
        op = step["op"]
        if op == "copy" and not self.bug("m3"):
            # It reads its source (M3) and writes its target (M4, M7 below).
            src = self.w.fds[step["src"]].ino
            for k, i in self.dirty.items():
                if i == src:
                    return {"op": "fsync", "fd": k}
        if op in ("pread", "mmap_read", "fstat") and not self.bug("m3"):
            ino = self.w.fds[step["fd"]].ino
        elif op in ("cat", "lstat") and step["path"] in self.w.names and not self.bug("m3"):
            ino = self.w.names[step["path"]]
        elif op == "utime" and step["path"] in self.w.names and not self.bug("m5"):
            ino = self.w.names[step["path"]]
        elif op in ("pwrite", "write", "mmap_write", "copy"):
            ino = self.w.fds[step["fd"]].ino
            if self.outage_left and not self.bug("m7"):
                # M7: a file's writes queued during an outage may land out
                # of order after the reconnect: one write per file.
                if ino in self.outage_writes:
                    return None
                self.outage_writes.add(ino)
            elif step["fd"] in self.stale and not self.bug("m7"):
                # The same for writes queued while the handle is reopened
                # after a cut, a kill or an upgrade: an fsync reopens it.
                self.stale.discard(step["fd"])
                return {"op": "fsync", "fd": step["fd"]}
            if not self.bug("m4"):
                for k, i in self.dirty.items():
                    if i == ino and k != step["fd"]:
                        return {"op": "fsync", "fd": k}
            return step
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
        # Its world only needs the bytes: fold each file's log so a long
        # trace does not replay every write since the start at each call.
        for n in self.w.inodes.values():
            if n.log:
                n.settle()

    def make(self, n_ops):
        done = 0
        while done < n_ops:
            if self.fault_rate and not self.outage_left and self.rng.random() < self.fault_rate:
                f = self.fault()
                self.steps.append(f)
                if f["fault"] != "blackhole":
                    self.stale = set(self.w.fds)
                if f["fault"] == "outage" and self.bug("f3") and self.rng.random() < 0.5:
                    for s in self.flood():
                        self.steps.append(s)
                        self.apply(s)
                        done += 1
                continue
            step = self.call()
            if step is None:
                continue
            step = self.fresh(step)
            if step is None:
                continue
            if self.blip_left:
                self.blip_left -= 1
            done += 1
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


def make_trace(seed, n_ops, faults, known_bugs, fault_rate=FAULT_RATE):
    """The trace of a seed. The fault rate changes every draw after the
    first fault, so it is part of what replays a seed."""
    return Planner(seed, faults, known_bugs, fault_rate).make(n_ops)


def fmt_step(s):
    if "fault" in s:
        args = " ".join(f"{k}={v}" for k, v in s.items() if k != "fault")
        return f"FAULT {s['fault']} {args}".rstrip()
    args = " ".join(f"{k}={oct(v) if k in ('flags', 'mode', 'perm') else v}"
                    for k, v in s.items() if k != "op")
    return f"{s['op']} {args}"
