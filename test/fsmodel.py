"""The semantics steadyfs promises (docs/retries.md), as an in-memory model
for the model checker (test/modelcheck.py).

A `World` is one possible state of the mount: the namespace (path ->
inode), every inode (file bytes, folder, symlink target, permissions, the
mtime when it is known) and every descriptor the checker holds. For each
call the world says what must come back (`World.expect`): an errno, or
success with the values a read, stat, readdir or readlink must return, and
what the call changes.

Faults make the contract nondeterministic, and the checker keeps a set of
worlds for that (modelworlds.Worlds): a call that failed with EIO during an
outage may or may not have been done on the server (mkdir, rename,
truncate, ...: both worlds are kept), a write that failed with EIO wrote
none of its bytes (one world), data that a killed daemon held may have
been acknowledged or not (one world per prefix of each descriptor's
unacknowledged writes). Observing the server's copy at a settle point
keeps only the worlds that match it.

File data is kept as a base and a log of the changes made since the last
point where all of them were known to be on the server (`Inode.log`), so
a world in which some writes were lost is the same log replayed without
them.
"""

import copy
import errno

from modelexec import data_bytes

# Names steadyfs may create on the server for an unlinked open file, and
# the virtual folder at the root: not part of the model's namespace.
HIDDEN_PREFIXES = (".fuse_hidden", ".steadyfs", ".control")


def hidden(name):
    return name.startswith(HIDDEN_PREFIXES)


def parent(path):
    return path.rsplit("/", 1)[0] if "/" in path else ""


def base(path):
    return path.rsplit("/", 1)[-1]


def under(path, folder):
    """path is folder or inside it."""
    return path == folder or path.startswith(folder + "/")


class Inode:
    __slots__ = ("kind", "base", "log", "target", "perm", "mtime", "linked",
                 "suspect", "hidden_in", "loose", "_data")

    def __init__(self, kind, perm, target=None):
        self.kind, self.perm, self.target = kind, perm, target
        self.base = b""
        self.log = []          # [Change]: since the last settled point
        self.mtime = None      # known only after utime, until the next change
        self.linked = False    # had a second name: two kernel inodes, two caches
        self.suspect = False   # lost data the kernel may still have cached
        # unlinked while open: the folders (inodes) steadyfs may keep it
        # in under a hidden name, whose mtimes move again at its last
        # close. A set: each name dropped while the file is open may be
        # the one a descriptor was opened through (steadyfs hides that
        # name; a file with two names dropped in two folders may be
        # hidden in either: soak seed 310658)
        self.hidden_in = set()
        # a folder whose hidden file is being removed (after its last
        # close, asynchronously): its mtime may move until the next settle
        self.loose = False
        self._data = None

    def data(self):
        if self._data is None:
            d = bytearray(self.base)
            for c in self.log:
                if not c.lost:
                    c.apply(d)
            self._data = bytes(d)
        return self._data

    def change(self, c):
        self.log.append(c)
        self._data = None
        self.mtime = None

    def settle(self):
        """Every change is on the server (or known lost): fold the log."""
        self.base = self.data()
        self.log = []


class Change:
    """One change of a file's bytes: a write (off, bytes) or a truncate
    (size). `who` is the descriptor id whose write-behind holds it (None
    when it is known to be on the server), `lost` set when a world
    decided it never landed; `partial` too when a prefix of it may have
    (its chunks were sent in order and the daemon died with the rest:
    the server's copy says how much, modelworlds.resolve_partial)."""
    __slots__ = ("off", "data", "size", "who", "lost", "partial")

    def __init__(self, off=None, data=None, size=None, who=None):
        self.off, self.data, self.size, self.who = off, data, size, who
        self.lost = False
        self.partial = False

    def apply(self, d):
        if self.size is not None:
            if self.size < len(d):
                del d[self.size:]
            else:
                d.extend(bytes(self.size - len(d)))
        else:
            end = self.off + len(self.data)
            if end > len(d):
                d.extend(bytes(end - len(d)))
            d[self.off:end] = self.data


class Fd:
    __slots__ = ("ino", "read", "write", "append", "state")

    def __init__(self, ino, flags):
        acc = flags & 3
        self.ino = ino
        self.read = acc in (0, 2)
        self.write = acc in (1, 2)
        self.append = bool(flags & 0o2000)
        # ok; maybe: its write-behind may have died with a daemon (the next
        # write, fsync or close says); dead: it did, EIO for good.
        self.state = "ok"


class Expect:
    """What a call must return in a world: `err` (an errno), or success
    with `check(result) -> message or None` and `apply(world, result)`.
    `cls` says what an EIO during an outage means: "ro" (nothing
    changed), "data" (none of its bytes written), "maybe" (done or not),
    "fsync" (data still queued), "close" (the descriptor is gone, its
    queued data may be dropped)."""
    __slots__ = ("err", "check", "apply", "cls", "short")

    def __init__(self, err=0, check=None, apply=None, cls="ro", short=None):
        self.err, self.check, self.apply, self.cls = err, check, apply, cls
        # short(result): a read cut short by an outage (the kernel returns
        # what it read before the error) is a prefix of the right answer.
        self.short = short


def eq(what, want, got):
    if want == got:
        return None
    if isinstance(want, (bytes, bytearray)):
        n = min(len(want), len(got))
        first = next((i for i in range(n) if want[i] != got[i]), n)
        return (f"{what}: {len(got)} bytes, expected {len(want)}; first "
                f"difference at byte {first}")
    return f"{what}: got {got!r}, expected {want!r}"


class World:
    def __init__(self):
        self.names = {"": 0}
        self.inodes = {0: Inode("d", 0o755)}
        self.fds = {}
        self.next_ino = 1

    def copy(self):
        return copy.deepcopy(self)

    # ---- lookups --------------------------------------------------------

    def ino(self, path):
        return self.names.get(path)

    def node(self, path):
        i = self.names.get(path)
        return None if i is None else self.inodes[i]

    def children(self, path):
        pre = path + "/" if path else ""
        return sorted(p[len(pre):] for p in self.names
                      if p and p.startswith(pre) and "/" not in p[len(pre):])

    def _walk_err(self, path):
        """ENOENT/ENOTDIR for a path whose parent folder is missing: the
        first folder on the way down that is missing (ENOENT) or not a
        folder (ENOTDIR) decides, as in the kernel's walk (`a/e/c` with
        `a` a file is ENOTDIR, not ENOENT for the missing `a/e`)."""
        par = parent(path)
        if not par:
            return 0
        cur = ""
        for name in par.split("/"):
            cur = f"{cur}/{name}" if cur else name
            n = self.node(cur)
            if n is None:
                return errno.ENOENT
            if n.kind != "d":
                return errno.ENOTDIR
        return 0

    def _missing(self, path):
        return Expect(self._walk_err(path) or errno.ENOENT)

    def open_count(self, ino):
        return sum(1 for f in self.fds.values() if f.ino == ino)

    def nlink(self, ino):
        return sum(1 for i in self.names.values() if i == ino)

    def busy(self, path):
        """Open descriptors on path or under it (a renamed or removed
        open file: findings 1 and 10)."""
        inos = {i for p, i in self.names.items() if under(p, path)}
        return any(f.ino in inos for f in self.fds.values())

    def orphan_open(self, ino):
        return ino is not None and self.nlink(ino) == 0

    # ---- namespace changes ---------------------------------------------

    def _new(self, kind, perm, target=None):
        i = self.next_ino
        self.next_ino += 1
        self.inodes[i] = Inode(kind, perm, target)
        return i

    def _touch_dir(self, path):
        """A folder's mtime moves when an entry is added or removed."""
        self.inodes[self.names[parent(path)]].mtime = None

    def _drop_name(self, path):
        self._touch_dir(path)
        d = self.names[parent(path)]
        i = self.names.pop(path)
        if self.nlink(i) == 0 and self.open_count(i) == 0:
            del self.inodes[i]
        elif self.open_count(i):
            # steadyfs hides a name open through it (other links or not)
            self.inodes[i].hidden_in.add(d)
        # An rmdir (or a rename onto the folder) moves the hidden files
        # still open to the root first.
        for n in self.inodes.values():
            if i in n.hidden_in:
                n.hidden_in.discard(i)
                n.hidden_in.add(self.names[""])

    def _move(self, src, dst):
        self._touch_dir(src)
        self._touch_dir(dst)
        if dst in self.names:
            self._drop_name(dst)
        for p in sorted(p for p in self.names if under(p, src)):
            self.names[dst + p[len(src):]] = self.names.pop(p)

    def forget_fd(self, fid):
        f = self.fds.pop(fid)
        n = self.inodes.get(f.ino)
        # Its hidden file is removed from its folder (retries.md) at the
        # last close of the descriptors opened through the hidden name;
        # a file with other names has descriptors the model cannot tell
        # apart, so any close may be that one (soak seed 310658: the
        # last descriptor opened through an unlinked link was closed,
        # others through the file's other name stayed open).
        for d in n.hidden_in if n is not None else ():
            if d in self.inodes:
                self.inodes[d].mtime = None
                self.inodes[d].loose = True
        if self.open_count(f.ino):
            return
        if n is not None:
            n.hidden_in = set()
        if self.nlink(f.ino) == 0:
            self.inodes.pop(f.ino, None)

    def unsettled(self):
        """(who, [changes]) for each holder of writes not yet known on
        the server: descriptor ids and ("mmap", ino)."""
        out = {}
        for n in self.inodes.values():
            for c in n.log:
                if c.who is not None and c.size is None and not c.lost:
                    out.setdefault(c.who, []).append(c)
        return out

    def settle(self):
        for n in self.inodes.values():
            n.settle()
            n.loose = False
            if n.suspect and not any(f.ino is not None and self.inodes.get(f.ino) is n
                                     for f in self.fds.values()):
                n.suspect = False

    # ---- what each call must return ---------------------------------------

    def expect(self, req):
        """An Expect, or None when the model cannot tell (a path through
        a symlink: the model does not follow links)."""
        for k in ("path", "to"):
            if k in req and self._through_link(req[k]):
                return None
        return getattr(self, "_x_" + req["op"])(req)

    def _through_link(self, path):
        par = parent(path)
        while par:
            n = self.node(par)
            if n is not None and n.kind == "l":
                return True
            par = parent(par)
        return False

    def _fd(self, req):
        return self.fds.get(req["fd"])

    def _x_open(self, req):
        path, flags = req["path"], req["flags"]
        n = self.node(path)
        if n is None:
            if not flags & 0o100:
                return self._missing(path)
            e = self._walk_err(path)
            if e:
                return Expect(e)

            def create(w, r):
                i = w._new("f", req.get("mode", 0o644) & 0o755)
                w.names[path] = i
                w._touch_dir(path)
                w.fds[req["id"]] = Fd(i, flags)
            return Expect(apply=create, cls="maybe")
        if flags & 0o300 == 0o300:
            return Expect(errno.EEXIST)
        if n.kind == "l" or n.kind == "d" and not flags & 3:
            return None  # the model follows no links and opens no folders
        if n.kind == "d" and flags & 3:
            return Expect(errno.EISDIR)
        ino = self.ino(path)

        def opened(w, r):
            w.fds[req["id"]] = Fd(ino, flags)
            if flags & 0o1000 and flags & 3:
                w.inodes[ino].change(Change(size=0))
        return Expect(apply=opened, cls="maybe" if flags & 0o1000 else "ro")

    def _x_close(self, req):
        f = self._fd(req)
        if f.state == "dead":
            return Expect(errno.EIO, apply=lambda w, r: w.forget_fd(req["fd"]))

        def closed(w, r):
            w._synced(req["fd"])
            w.forget_fd(req["fd"])
        return Expect(apply=closed, cls="close")

    def _synced(self, fid):
        f = self.fds[fid]
        f.state = "ok"
        for n in self.inodes.values():
            for c in n.log:
                if c.who in (fid, ("mmap", f.ino)):
                    c.who = None

    def _dead_check(self, f):
        return Expect(errno.EIO) if f.state == "dead" else None

    def _write_at(self, fid, ino, off, data):
        self.inodes[ino].change(Change(off, data, who=fid))

    def _x_pwrite(self, req):
        f = self._fd(req)
        dead = self._dead_check(f)
        if dead:
            return dead
        data = data_bytes(req["tag"], req["len"])

        def wrote(w, r):
            w._alive(req["fd"])
            w._write_at(req["fd"], f.ino, req["off"], data[:r["n"]])
        return Expect(check=lambda r: None if 0 < r["n"] <= len(data) or not data
                      else f"returned {r['n']} of {len(data)}",
                      apply=wrote, cls="data")

    def _x_write(self, req):
        f = self._fd(req)
        if self._other_caches(f):
            return None
        dead = self._dead_check(f)
        if dead:
            return dead
        data = data_bytes(req["tag"], req["len"])

        def wrote(w, r):
            w._alive(req["fd"])
            end = len(w.inodes[f.ino].data())
            w._write_at(req["fd"], f.ino, end, data[:r["n"]])
        return Expect(check=lambda r: None if 0 < r["n"] <= len(data)
                      else f"returned {r['n']} of {len(data)}",
                      apply=wrote, cls="data")

    def _alive(self, fid):
        """A descriptor that wrote or synced after a daemon death had
        lost nothing."""
        if self.fds[fid].state == "maybe":
            self.fds[fid].state = "ok"

    def _other_caches(self, f):
        """A file with a second name is a kernel inode per name, each
        with its own page cache and size: what an O_APPEND write, an
        mmap or a copy from it does through one name depends on what
        that cache still holds of changes made through another
        (retries.md, "Known limitations"). The planner does not make
        these calls, but its world is not the mount's after an outage
        (a create it took as done may have failed, so a later link
        linked the file: soak seed 700015); every world says here."""
        return f is not None and self.inodes[f.ino].linked

    def _readable(self, f):
        n = self.inodes[f.ino]
        return not (n.linked or n.suspect)

    def _x_pread(self, req):
        f = self._fd(req)
        want = self.inodes[f.ino].data()[req["off"]:req["off"] + req["len"]]
        if not self._readable(f):
            return Expect(check=lambda r: None)
        return Expect(check=lambda r: eq("pread", want, bytes.fromhex(r["data"])),
                      short=lambda r: want.startswith(bytes.fromhex(r["data"])))

    def _x_mmap_read(self, req):
        if self._other_caches(self._fd(req)):
            return None
        return self._x_pread(req)

    def _x_mmap_write(self, req):
        f = self._fd(req)
        if self._other_caches(f):
            return None
        if any(g.ino == f.ino and g.write and g.state != "ok" for g in self.fds.values()):
            return None  # the page writeback may go through a failed descriptor
        data = data_bytes(req["tag"], req["len"])

        def wrote(w, r):
            w.inodes[f.ino].change(Change(req["off"], data, who=("mmap", f.ino)))
        return Expect(apply=wrote, cls="data")

    def _x_ftruncate(self, req):
        f = self._fd(req)

        def cut(w, r):
            w.inodes[f.ino].change(Change(size=req["size"]))
        return Expect(apply=cut, cls="maybe")

    def _x_fallocate(self, req):
        return Expect(errno.EOPNOTSUPP)

    def _x_fsync(self, req):
        f = self._fd(req)
        dead = self._dead_check(f)
        if dead:
            return dead
        return Expect(apply=lambda w, r: w._synced(req["fd"]), cls="fsync")

    def _stat_check(self, n, r, what):
        """Type, size, permissions and the mtime utimens set. A file with
        a second name is two kernel inodes with their own attribute
        caches: only its type is checked."""
        msg = eq(f"{what} kind", n.kind, r["kind"])
        if msg or n.linked:
            return msg
        if n.kind == "f" and not n.suspect:
            msg = eq(f"{what} size", len(n.data()), r["size"])
        if not msg and n.kind != "l":
            msg = eq(f"{what} perm", oct(n.perm), oct(r["perm"]))
        if not msg and n.mtime is not None:
            msg = eq(f"{what} mtime", n.mtime, r["mtime"])
        return msg

    def _x_fstat(self, req):
        n = self.inodes[self._fd(req).ino]
        return Expect(check=lambda r: self._stat_check(n, r, "fstat"))

    def _x_copy(self, req):
        src, dst = self.fds.get(req["src"]), self._fd(req)
        if src is None or self._other_caches(src):
            return None
        data = self.inodes[src.ino].data()[req["src_off"]:req["src_off"] + req["len"]]
        if not data:
            # Nothing to copy (the source ends before src_off): the kernel
            # answers 0 without asking the filesystem, even for a
            # descriptor that fails every write (soak seed 306201).
            return Expect(check=lambda r: eq("copy count", 0, r["n"]))
        dead = self._dead_check(dst)
        if dead:
            return dead

        def copied(w, r):
            w._alive(req["fd"])
            if r["n"]:
                w._write_at(req["fd"], dst.ino, req["off"], data[:r["n"]])
        return Expect(check=lambda r: None if (0 < r["n"] <= len(data) or r["n"] == len(data))
                      else f"copied {r['n']} of {len(data)}",
                      apply=copied, cls="data")

    def _x_cat(self, req):
        n = self.node(req["path"])
        if n is None:
            return self._missing(req["path"])
        if n.kind == "d":
            return Expect(errno.EISDIR)
        if n.kind == "l":
            return None
        if n.suspect or n.linked:
            return Expect(check=lambda r: None)
        want = n.data()
        return Expect(check=lambda r: eq("cat", want, bytes.fromhex(r["data"])))

    def _x_lstat(self, req):
        n = self.node(req["path"])
        if n is None:
            return self._missing(req["path"])
        return Expect(check=lambda r: self._stat_check(n, r, "lstat"))

    def _x_readdir(self, req):
        n = self.node(req["path"])
        if n is None:
            return self._missing(req["path"])
        if n.kind == "l":
            return None
        if n.kind != "d":
            return Expect(errno.ENOTDIR)
        want = self.children(req["path"])
        return Expect(check=lambda r: eq(
            "readdir", want, [x for x in r["names"] if not hidden(x)]))

    def _x_readlink(self, req):
        n = self.node(req["path"])
        if n is None:
            return self._missing(req["path"])
        if n.kind != "l":
            return Expect(errno.EINVAL)
        return Expect(check=lambda r: eq("readlink", n.target, r["target"]))

    def _x_truncate(self, req):
        n = self.node(req["path"])
        if n is None:
            return self._missing(req["path"])
        if n.kind == "d":
            return Expect(errno.EISDIR)
        if n.kind == "l":
            return None
        ino = self.ino(req["path"])

        def cut(w, r):
            w.inodes[ino].change(Change(size=req["size"]))
        return Expect(apply=cut, cls="maybe")

    def _make(self, path, kind, perm, target=None):
        """mkdir and symlink: a new name, never over an existing one."""
        e = self._walk_err(path)
        if e:
            return Expect(e)
        if path in self.names:
            return Expect(errno.EEXIST)

        def made(w, r):
            w.names[path] = w._new(kind, perm, target)
            w._touch_dir(path)
        return Expect(apply=made, cls="maybe")

    def _x_mkdir(self, req):
        return self._make(req["path"], "d", req["mode"] & 0o755)

    def _x_rmdir(self, req):
        path = req["path"]
        n = self.node(path)
        if n is None:
            return self._missing(path)
        if n.kind != "d":
            return Expect(errno.ENOTDIR)
        if self.children(path):
            return Expect(errno.ENOTEMPTY)
        return Expect(apply=lambda w, r: w._drop_name(path), cls="maybe")

    def _x_unlink(self, req):
        path = req["path"]
        n = self.node(path)
        if n is None:
            return self._missing(path)
        if n.kind == "d":
            return Expect(errno.EISDIR)
        return Expect(apply=lambda w, r: w._drop_name(path), cls="maybe")

    def _x_rename(self, req):
        src, dst = req["path"], req["to"]
        a, b = self.node(src), self.node(dst)
        # The kernel walks to both parent folders before it looks up the
        # source's own name (a missing source behind a file on the target's
        # path is ENOTDIR; soak seed 306203).
        e = self._walk_err(src) or self._walk_err(dst)
        if e:
            return Expect(e)
        if a is None:
            return Expect(errno.ENOENT)
        if a.kind == "d" and under(dst, src) and dst != src:
            return Expect(errno.EINVAL)
        if under(src, dst) and src != dst:
            # dst a folder above src: the kernel's rename trap says
            # ENOTEMPTY before it looks at the types.
            return Expect(errno.ENOTEMPTY)
        if b is not None:
            if self.ino(src) == self.ino(dst):
                return Expect()  # the same file: rename does nothing
            if a.kind == "d" and b.kind != "d":
                return Expect(errno.ENOTDIR)
            if a.kind != "d" and b.kind == "d":
                return Expect(errno.EISDIR)
            if b.kind == "d" and self.children(dst):
                return Expect((errno.ENOTEMPTY, errno.EEXIST))
        return Expect(apply=lambda w, r: w._move(src, dst), cls="maybe")

    def _x_link(self, req):
        src, dst = req["path"], req["to"]
        a = self.node(src)
        if a is None:
            return self._missing(src)
        e = self._walk_err(dst)
        if e:
            return Expect(e)
        if dst in self.names:
            return Expect(errno.EEXIST)  # Linux looks at the new name first
        if a.kind == "d":
            return Expect(errno.EPERM)
        ino = self.ino(src)

        def linked(w, r):
            w.names[dst] = ino
            w.inodes[ino].linked = True
            w._touch_dir(dst)
        return Expect(apply=linked, cls="maybe")

    def _x_symlink(self, req):
        return self._make(req["path"], "l", 0o777, req["target"])

    def _x_chmod(self, req):
        n = self.node(req["path"])
        if n is None:
            return self._missing(req["path"])
        if n.kind == "l":
            return None  # chmod follows the link
        ino = self.ino(req["path"])

        def chmod(w, r):
            w.inodes[ino].perm = req["perm"]
        return Expect(apply=chmod, cls="maybe")

    def _x_utime(self, req):
        n = self.node(req["path"])
        if n is None:
            return self._missing(req["path"])
        if n.kind == "l":
            return None
        ino = self.ino(req["path"])

        def touch(w, r):
            n = w.inodes[ino]
            n.mtime = None if n.loose else req["mtime"]
        return Expect(apply=touch, cls="maybe")

    # ---- the server's copy ----------------------------------------------

    def server_view(self):
        """{path: (kind, perm, bytes or target)}: what the server must
        hold at a settled point (every queued write landed or lost)."""
        out = {}
        for p, i in self.names.items():
            if p == "":
                continue
            n = self.inodes[i]
            if n.kind == "f":
                out[p] = ("f", n.perm, n.data())
            elif n.kind == "d":
                out[p] = ("d", n.perm, None)
            else:
                out[p] = ("l", None, n.target)
        return out

    def mtimes(self):
        return {p: self.inodes[i].mtime for p, i in self.names.items()
                if p and self.inodes[i].mtime is not None}
