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
# At a daemon death each holder of writes of a reported file multiplies
# the worlds (one per prefix of its writes that landed); the settle point
# right after keeps those the server's copy allows. Cut at MAX_WORLDS,
# the combinations of the last holders were dropped (soak seed 740024:
# three descriptors and two mmap holders of reported files, the world
# where the last descriptor lost its copy was cut: pwrite EIO, expected
# success). Past this bound, a run says so (Worlds.cut).
DEATH_WORLDS = 4096

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
    """World where the writes of `holder` from the j-th on never landed,
    but a prefix of the j-th may have, for a descriptor: its chunks went
    to the server in write() order on one session, each acknowledged or
    not, and a write(2) is several of them (the kernel splits it into
    requests at max_write and after a partial page not in its cache,
    steadyfs each request at the server's max_write); retries.md, "the
    range spans every unacknowledged chunk". The page write-back of mmap
    writes has no such order: whole or nothing."""
    for c in changes[j:]:
        c.lost = True
    if j < len(changes) and not isinstance(holder, tuple):
        changes[j].partial = True
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
        self.cut = 0  # worlds dropped past DEATH_WORLDS (then a divergence may be the model's)

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

    def daemon_died(self, lost_paths=None):
        """Write-behind bytes not yet known on the server may have died
        with the daemon: those of the files the new daemon reported lost
        (`lost_paths`, relative; None: any file), never silently. For each
        holder of such writes: a world where its writes from the j-th on
        never landed (a prefix of the j-th may have: _lose) and its
        descriptor fails from now on (j = 0..k; at j = k the server got
        them all but the acknowledgements were lost), and one where
        nothing was lost. A holder of a file not reported lost nothing."""
        out = []
        for world in self.all:
            variants = [world]
            for holder in list(world.unsettled()):
                if not _may_have_lost(world, holder, lost_paths):
                    continue
                nxt = []
                for v in variants:
                    k = len(v.unsettled().get(holder, []))
                    nxt.append(v)
                    for j in range(k + 1):
                        c = v.copy()
                        _lose(c, holder, c.unsettled()[holder], j)
                        nxt.append(c)
                if len(nxt) > DEATH_WORLDS:
                    self.cut += len(nxt) - DEATH_WORLDS
                variants = nxt[:DEATH_WORLDS]
            out += variants
        out = _dedupe(out)
        if len(out) > DEATH_WORLDS:
            self.cut += len(out) - DEATH_WORLDS
        self.all = out[:DEATH_WORLDS]

    def step_around_death(self, index, req, res, lost_paths):
        """step() for a call made while the daemon was killed: answered
        before the death (then daemon_died), or resent to the next daemon
        after it; the worlds of both orders."""
        out, err = [], None
        for first in (False, True):
            ws = Worlds()
            ws.all = [w.copy() for w in self.all]
            try:
                if first:
                    ws.daemon_died(lost_paths)
                ws.step(index, req, res, False)
                if not first:
                    ws.daemon_died(lost_paths)
            except Divergence as d:
                err = err or d
                continue
            self.cut += ws.cut
            out += ws.all
        if not out:
            raise err
        out = _dedupe(out)
        if len(out) > DEATH_WORLDS:
            self.cut += len(out) - DEATH_WORLDS
        self.all = out[:DEATH_WORLDS]

    def observe(self, server, mtimes):
        """Keep the worlds whose server copy is `server`; the message of
        the closest miss when none is."""
        keep, misses = [], []
        for w in self.all:
            resolve_partial(w, server)
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


def _may_have_lost(world, holder, lost_paths):
    """Whether the file `holder` wrote is one the new daemon reported
    lost data of (a file with no name in the model, or one with a hidden
    name, whenever a reported path is not one of the model's names)."""
    if lost_paths is None:
        return True
    ino = holder[1] if isinstance(holder, tuple) else world.fds[holder].ino
    names = [p for p, i in world.names.items() if i == ino]
    if any(p in lost_paths for p in names):
        return True
    # A name dropped while the file was open is hidden, and the loss of
    # a descriptor opened through it is reported under the hidden name,
    # also when the file has other names (a hard link: soak seed 710023).
    if names and not world.inodes[ino].hidden_in:
        return False
    return any(p not in world.names for p in lost_paths)


def resolve_partial(w, server):
    """Each write a world says may have landed in part (Change.partial)
    becomes the prefix of it the server's copy shows, when one fits:
    the bytes from where the server stops matching the whole write, or
    up to where it last differs from none of it."""
    for p, i in w.names.items():
        n = w.inodes[i]
        if n.kind != "f" or p not in server or server[p][0] != "f":
            continue
        for c in [c for c in n.log if c.partial]:
            got = server[p][2]
            full, data = c.data, c.data
            cands = set()
            for landed in (True, False):
                c.lost, c.data = not landed, full
                n._data = None
                d = n.data()
                seg = got[c.off:c.off + len(full)]
                k = 0
                if landed:
                    while k < len(seg) and seg[k] == d[c.off + k]:
                        k += 1
                    cands.add(k)
                else:
                    k = len(seg)
                    while k > 0 and c.off + k - 1 < len(d) and seg[k - 1] == d[c.off + k - 1]:
                        k -= 1
                    cands.add(k)
            cands.add(max(0, min(len(full), len(got) - c.off)))
            for k in sorted(cands):
                c.lost, c.data = k == 0, full[:k]
                n._data = None
                if n.data() == got:
                    data = full[:k]
                    break
            else:
                data = None
            c.partial = False
            c.lost, c.data = (True, full) if data is None else (not data, data)
            n._data = None


def _key(w):
    return (tuple(sorted((p, i) for p, i in w.names.items())),
            tuple(sorted((k, f.ino, f.state) for k, f in w.fds.items())),
            tuple(sorted((i, n.data(), n.perm, n.mtime, n.target,
                          tuple(sorted(n.hidden_in)), n.loose,
                          tuple((c.off, len(c.data)) for c in n.log if c.partial))
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
