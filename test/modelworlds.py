"""The set of states the contract still allows, for the model checker
(test/modelcheck.py; one state is an fsmodel.World).

A fault makes several outcomes legitimate (a call that failed during an
outage may have been done; a killed daemon may have taken write-behind
data along), so the checker keeps every World that fits what it saw and
drops those an answer or the server's copy contradicts. None left is a
Divergence.
"""

import errno
import re

import fsmodel

MAX_WORLDS = 64

# Calls whose EIO during an outage leaves nothing changed: ok to answer
# from the attribute cache, or EAGAIN for a node with nothing cached.
READ_ONLY = {"pread", "mmap_read", "fstat", "cat", "lstat", "readdir",
             "readlink"}


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
        self.all = [fsmodel.World()]

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
            if msg and not (outage and x.short and x.short(res)):
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
            if req["op"] == "open":
                done.fds.pop(req["id"])  # created or truncated, but no descriptor
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
            tuple(sorted((i, n.data(), n.perm, n.mtime, n.target,
                          tuple(sorted(n.hidden_in)), n.loose)
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
            return "server: " + fsmodel.eq(f"'{p}' content", wd, gd)
        if wk == "l" and wd != gd:
            return f"server: '{p}' points to {gd!r}, model {wd!r}"
        if wk != "l" and wp != gp:
            return f"server: '{p}' mode {oct(gp)}, model {oct(wp)}"
        if p in want_mtimes and want_mtimes[p] != got_mtimes.get(p):
            return f"server: '{p}' mtime {got_mtimes.get(p)}, model {want_mtimes[p]}"
    return None
