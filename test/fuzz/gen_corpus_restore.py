#!/usr/bin/python3
"""Writes the seed corpus for fuzz_restore into test/fuzz/corpus_restore/.

Each file is one input to fuzz_restore.c's LLVMFuzzerTestOneInput: a base
selector byte, then edits to a fresh take-over state (the encoding is
apply() in fuzz_restore.c). The seeds reproduce issue 15 finding 9 (an
event in another slot's place, a parent cycle, names that are no names)
and hit each rule of fs/keeper/ksvalid.c once, plus clean states that must come
through whole. The capacities are the fuzz build's (Makefile
FUZZ_RESTORE_CAPS): 32 node slots, 8 handle slots, 16 in-flight ids, 16
events, chains at most 8 deep. Deterministic; rerun after changing this
script and commit the result:

    /usr/bin/python3 test/fuzz/gen_corpus_restore.py

Files not written by this script (inputs `make fuzz-restore` found) are
left alone.
"""
import os
import struct
import sys

BASE_DATA, BASE_CWD, BASE_SLASH, BASE_DATA_SLASHES = 0, 1, 2, 3
ST_FREE, ST_LIVE = 0, 1
NF_END, NF_UNLINKED = 1, 2
OFF_MAX = (1 << 63) - 1
ID_MAX = 1 << 62
FUSE_INIT, FUSE_LOOKUP = 26, 1


def u8(v):
    return bytes([v & 0xff])


def num(v):
    """A number as get_num() reads it."""
    special = {(1 << 64) - 1: 0xf8, 1 << 62: 0xf9, 1 << 63: 0xfa,
               OFF_MAX: 0xfb}
    if v in special:
        return u8(special[v])
    if v < 0xf8:
        return u8(v)
    return u8(0xff) + struct.pack("<Q", v & ((1 << 64) - 1))


def text(b, fill=None):
    """A field's bytes in segments of 253 (get_bytes), or the whole field
    filled with one byte."""
    if isinstance(b, str):
        b = b.encode()
    if fill is not None:
        return u8(255) + u8(fill)
    out = b""
    while len(b) >= 254:
        out += u8(254) + b[:253]
        b = b[253:]
    return out + u8(len(b)) + b


def state(st):
    return u8(0) if st == ST_LIVE else u8(3) + u8(st)


def raw_node(slot, id, parent, name, nlookup=1, seq=None, flags=0, end=0,
             st=ST_LIVE, namelen=None, fill=None):
    out = u8(0) + u8(slot) + state(st) + num(flags)
    out += num(slot + 1 if seq is None else seq)
    out += num(id) + num(parent) + num(nlookup) + num(end) + text(name, fill)
    return out + (u8(0) if namelen is None else u8(1) + num(namelen))


def raw_fh(slot, ino, path, flags=1, released=0, err=0, unacked=0, lo=0, hi=0,
           st=ST_LIVE, fill=None):
    return (u8(1) + u8(slot) + state(st) + num(flags) + num(released) + num(err)
            + num(ino) + num(unacked) + num(lo) + num(hi) + text(path, fill))


def raw_event(slot, seq, line, length=None, fill=None):
    fix = length is None
    return (u8(2) + u8(slot) + num(seq) + num(length or 0) + text(line, fill)
            + u8(1 if fix else 0))


def header(field, value=None, data=None, fill=None):
    names = ["node_hwm", "fh_hwm", "next_id", "seq", "init_len", "init_fill",
             "reason", "init"]
    f = names.index(field)
    out = u8(3) + u8(f)
    if f < 6:
        return out + num(value)
    return out + (text(data, fill) if fill is None else text(b"", fill))


def inflight(slot, unique, off):
    return u8(4) + u8(slot) + num(unique) + num(off)


def node(id, parent, name, nlookup=1, unlinked=False, end=None, move=None):
    """Through ks_node_put; move=(name, parent, flip) leaves both records."""
    out = u8(5) + num(id) + num(parent) + num(nlookup) + text(name)
    if move:
        mname, mparent, flip = move
        return out + u8(3) + text(mname) + num(mparent) + u8(1 if flip else 0)
    if unlinked:
        return out + u8(1)
    if end is not None:
        return out + u8(2) + num(end)
    return out + u8(0)


def event(seq, line):
    return u8(6) + num(seq) + text(line)


def fh(ino, path, flags=1, unacked=None):
    out = u8(7) + num(ino) + num(flags) + text(path)
    if unacked:
        return out + u8(1) + num(unacked[0]) + num(unacked[1]) + num(unacked[2])
    return out + u8(0)


def init_request(opcode=FUSE_INIT, major=7, length=None):
    body = struct.pack("<IIII", major, 38, 0x20000, 0)
    hdr_len = 40 + len(body)
    hdr = struct.pack("<IIQQIIII", length or hdr_len, opcode, 2, 0, 0, 0, 0, 0)
    return hdr + body


def ev(i):
    return '{"seq":%d,"type":"state"}' % i


TREE = (node(2, 1, "jobs") + node(3, 2, "j1") + node(4, 3, "a.warc", end=4096)
        + node(5, 1, "tmp", unlinked=True))

SEEDS = {
    # ---- finding 9 as it was reported -------------------------------------
    # slot 2 holds seq 7, slot 7's length is garbage: ks_events_each wrote
    # a NUL 4 GiB past slot 7 (SIGSEGV, every restart).
    "f9-event-seq-of-another-slot": u8(BASE_DATA)
        + raw_event(7, 0, "", length=0xfffffff0)
        + raw_event(2, 7, '{"type":"state"}'),
    # 2 -> 3 -> 2: build_path looped for ever under the node table's lock.
    "f9-parent-cycle": u8(BASE_DATA) + node(2, 3, "a") + node(3, 2, "b"),
    "f9-parent-cycle-below-root": u8(BASE_DATA) + node(2, 1, "top")
        + node(3, 5, "x") + node(4, 3, "y") + node(5, 4, "z") + node(6, 5, "leaf"),
    "f9-parent-self": u8(BASE_DATA) + node(2, 2, "self"),
    # Names that climb out of the mount's folder or address another one.
    "f9-name-dotdot": u8(BASE_DATA) + node(2, 1, "..") + fh(2, "/srv/data/.."),
    "f9-name-dot": u8(BASE_CWD) + node(2, 1, "."),
    "f9-name-slash": u8(BASE_DATA) + node(2, 1, "../../etc"),
    "f9-name-empty": u8(BASE_DATA) + raw_node(0, 2, 1, ""),
    "f9-name-nul-inside": u8(BASE_DATA) + raw_node(0, 2, 1, "ab\0cd", namelen=5),
    "f9-name-unterminated": u8(BASE_DATA) + raw_node(0, 2, 1, "", fill=ord("x"),
                                                     namelen=256),
    "f9-name-length-wrong": u8(BASE_DATA) + raw_node(0, 2, 1, "abc", namelen=7),
    "f9-fh-path-escapes": u8(BASE_DATA) + node(2, 1, "f")
        + fh(2, "/srv/data/../../etc/shadow"),
    "f9-fh-path-unterminated": u8(BASE_DATA) + node(2, 1, "f")
        + raw_fh(0, 2, "", fill=ord("a")),

    # ---- each rule once -----------------------------------------------------
    "hdr-node-mark-past-table": u8(BASE_DATA) + TREE + header("node_hwm", 1000),
    "hdr-fh-mark-past-table": u8(BASE_DATA) + header("fh_hwm", 0xfffffff0),
    # The table's pages written in two runs with a hole between (slots 0
    # and 28 of the fuzz build's 32), or in one run followed by a hole
    # past the table's end: the mark is cut to the end of the last run.
    "hdr-node-mark-two-runs": u8(BASE_DATA) + raw_node(0, 2, 1, "a")
        + raw_node(28, 3, 1, "b") + header("node_hwm", 5000),
    "hdr-node-mark-hole-after": u8(BASE_DATA) + raw_node(0, 2, 1, "a")
        + raw_fh(7, 2, "/srv/data/a") + header("node_hwm", 5000)
        + header("fh_hwm", 5000),
    "hdr-next-id-huge": u8(BASE_DATA) + TREE + header("next_id", (1 << 64) - 1),
    "hdr-seq-below-records": u8(BASE_DATA) + TREE + header("seq", 1),
    "hdr-reason-newline": u8(BASE_DATA) + header("reason", data="killed\nfake line"),
    "hdr-reason-del": u8(BASE_DATA) + header("reason", data="killed\x7f"),
    "hdr-reason-unterminated": u8(BASE_DATA) + header("reason", fill=ord("r")),
    "hdr-init-too-long": u8(BASE_DATA) + header("init_len", 300),
    "hdr-init-too-short": u8(BASE_DATA) + header("init", data=init_request())
        + header("init_len", 20),
    "hdr-init-not-init": u8(BASE_DATA)
        + header("init", data=init_request(opcode=FUSE_LOOKUP)) + header("init_len", 56),
    "hdr-init-wrong-major": u8(BASE_DATA)
        + header("init", data=init_request(major=9)) + header("init_len", 56),
    "hdr-init-length-mismatch": u8(BASE_DATA)
        + header("init", data=init_request(length=80)) + header("init_len", 56),
    "hdr-init-valid": u8(BASE_DATA) + header("init", data=init_request())
        + header("init_len", 56),

    "node-state-word": u8(BASE_DATA) + raw_node(0, 2, 1, "a", st=7),
    "node-free-slot": u8(BASE_DATA) + raw_node(0, 2, 1, "a", st=ST_FREE) + TREE,
    "node-flags-unknown": u8(BASE_DATA) + raw_node(0, 2, 1, "a", flags=0x80),
    "node-id-zero": u8(BASE_DATA) + raw_node(0, 0, 1, "a"),
    "node-id-root": u8(BASE_DATA) + raw_node(0, 1, 1, "a"),
    "node-id-huge": u8(BASE_DATA) + raw_node(0, 1 << 62, 1, "a"),
    "node-seq-zero": u8(BASE_DATA) + raw_node(0, 2, 1, "a", seq=0)
        + raw_node(1, 3, 1, "b", seq=0),
    "node-seq-huge": u8(BASE_DATA) + raw_node(0, 2, 1, "a", seq=1 << 63),
    "node-nlookup-zero": u8(BASE_DATA) + raw_node(0, 2, 1, "a", nlookup=0),
    "node-nlookup-huge": u8(BASE_DATA) + raw_node(0, 2, 1, "a", nlookup=(1 << 64) - 1),
    "node-end-past-off-max": u8(BASE_DATA)
        + raw_node(0, 2, 1, "a", flags=NF_END, end=1 << 63),
    "node-end-unknown-ignored": u8(BASE_DATA) + raw_node(0, 2, 1, "a", end=1 << 63),
    "node-name-255": u8(BASE_DATA) + raw_node(0, 2, 1, "n" * 200)
        + node(3, 2, "m" * 254),
    "node-name-dots-valid": u8(BASE_DATA) + node(2, 1, ".a") + node(3, 1, "...")
        + node(4, 1, "..x") + node(5, 1, ".hidden"),
    "node-name-256-fill": u8(BASE_DATA) + raw_node(0, 2, 1, "", fill=ord("y"),
                                                   namelen=255),
    "node-move-halfway": u8(BASE_DATA) + TREE
        + node(6, 2, "old", move=("new", 3, False)),
    "node-move-halfway-flipped": u8(BASE_DATA) + TREE
        + node(6, 2, "old", move=("new", 3, True)),
    "node-same-seq-twice": u8(BASE_DATA) + raw_node(0, 2, 1, "a", seq=9)
        + raw_node(1, 2, 1, "b", seq=9) + raw_node(2, 3, 2, "c", seq=10),
    "node-three-records": u8(BASE_DATA) + raw_node(0, 2, 1, "a", seq=3)
        + raw_node(1, 2, 1, "b", seq=4) + raw_node(2, 2, 1, "c", seq=5),
    "node-parent-missing": u8(BASE_DATA) + node(2, 40, "orphan") + node(3, 2, "below"),
    "node-parent-dropped": u8(BASE_DATA) + node(2, 1, "..") + node(3, 2, "below")
        + node(4, 3, "deeper"),
    "node-parent-unlinked": u8(BASE_DATA) + node(2, 1, "gone", unlinked=True)
        + node(3, 2, "child") + node(4, 3, "grandchild"),
    "node-unlinked-cycle-ok": u8(BASE_DATA) + node(2, 3, "a", unlinked=True)
        + node(3, 2, "b"),
    "node-chain-too-deep": u8(BASE_DATA) + b"".join(
        node(i, i - 1 if i > 2 else 1, "d%d" % i) for i in range(2, 14)),
    "node-chain-at-limit": u8(BASE_DATA) + b"".join(
        node(i, i - 1 if i > 2 else 1, "d%d" % i) for i in range(2, 10)),
    "node-table-full": u8(BASE_DATA) + b"".join(
        node(i, 1, "f%d" % i) for i in range(2, 40)),

    "fh-state-word": u8(BASE_DATA) + node(2, 1, "f") + raw_fh(0, 2, "/srv/data/f", st=5),
    "fh-released-two": u8(BASE_DATA) + node(2, 1, "f")
        + raw_fh(0, 2, "/srv/data/f", released=2),
    "fh-released-node-gone": u8(BASE_DATA)
        + raw_fh(0, 9, "/srv/data/f", released=1, unacked=10, lo=0, hi=10),
    "fh-flags-accmode-3": u8(BASE_DATA) + node(2, 1, "f") + fh(2, "/srv/data/f", flags=3),
    "fh-flags-negative": u8(BASE_DATA) + node(2, 1, "f")
        + raw_fh(0, 2, "/srv/data/f", flags=0xffffffff),
    "fh-err-negative": u8(BASE_DATA) + node(2, 1, "f")
        + raw_fh(0, 2, "/srv/data/f", err=0xffffffff),
    "fh-err-huge": u8(BASE_DATA) + node(2, 1, "f") + raw_fh(0, 2, "/srv/data/f", err=5000),
    "fh-err-eio": u8(BASE_DATA) + node(2, 1, "f") + raw_fh(0, 2, "/srv/data/f", err=5),
    "fh-range-reversed": u8(BASE_DATA) + node(2, 1, "f")
        + fh(2, "/srv/data/f", unacked=(10, 100, 20)),
    "fh-range-past-off-max": u8(BASE_DATA) + node(2, 1, "f")
        + fh(2, "/srv/data/f", unacked=(10, 0, 1 << 63)),
    "fh-unacked-huge": u8(BASE_DATA) + node(2, 1, "f")
        + fh(2, "/srv/data/f", unacked=((1 << 64) - 1, 0, 10)),
    "fh-unacked-ok": u8(BASE_DATA) + node(2, 1, "f")
        + fh(2, "/srv/data/f", unacked=(4096, 0, 4096)),
    "fh-node-missing": u8(BASE_DATA) + fh(7, "/srv/data/f"),
    "fh-node-root": u8(BASE_DATA) + fh(1, "/srv/data"),
    "fh-node-dropped": u8(BASE_DATA) + node(2, 3, "a") + node(3, 2, "b")
        + fh(2, "/srv/data/b/a"),
    "fh-path-other-base": u8(BASE_DATA) + node(2, 1, "f") + fh(2, "/srv/database/f"),
    "fh-path-empty-component": u8(BASE_DATA) + node(2, 1, "f") + fh(2, "/srv/data//f"),
    "fh-path-trailing-slash": u8(BASE_DATA) + node(2, 1, "f") + fh(2, "/srv/data/f/"),
    "fh-path-cwd-base": u8(BASE_CWD) + node(2, 1, "d") + node(3, 2, "f")
        + fh(3, "d/f") + fh(3, "/d/f"),
    "fh-path-slash-base": u8(BASE_SLASH) + node(2, 1, "d") + fh(2, "/d")
        + fh(2, "//d") + fh(2, "d"),
    "fh-path-long-component": u8(BASE_DATA) + node(2, 1, "f")
        + fh(2, "/srv/data/" + "c" * 300) + fh(2, "/srv/data/" + "c" * 255),
    "fh-path-base-with-slashes": u8(BASE_DATA_SLASHES) + node(2, 1, "f")
        + fh(2, "/srv/data/f") + fh(2, "/srv/data//f"),
    "fh-table-full": u8(BASE_DATA) + node(2, 1, "f") + b"".join(
        fh(2, "/srv/data/f") for _ in range(10)),

    "ev-len-past-slot": u8(BASE_DATA) + raw_event(3, 3, '{"a":1}', length=5000),
    "ev-len-not-text": u8(BASE_DATA) + raw_event(3, 3, '{"a":1}', length=3),
    "ev-nul-inside": u8(BASE_DATA) + raw_event(3, 3, '{"a"\0:1}', length=8),
    "ev-unterminated": u8(BASE_DATA) + raw_event(3, 3, "", fill=ord("{"), length=4599),
    "ev-not-json": u8(BASE_DATA) + event(3, "not json"),
    "ev-json-array": u8(BASE_DATA) + event(3, "[1,2]"),
    "ev-json-trailing": u8(BASE_DATA) + event(3, '{"a":1}{"b":2}'),
    "ev-json-broken": u8(BASE_DATA) + event(3, '{"a":'),
    "ev-newline": u8(BASE_DATA) + event(3, '{"a":1}\n{"type":"data"}'),
    "ev-empty": u8(BASE_DATA) + raw_event(3, 3, ""),
    "ev-del-char": u8(BASE_DATA) + event(3, '{"a":"\x7f"}'),
    "ev-trailing-space": u8(BASE_DATA) + event(3, '{"a":1} '),
    "ev-json-number": u8(BASE_DATA) + event(3, '17'),
    "ev-seq-huge": u8(BASE_DATA) + raw_event(0, 1 << 62, '{"a":1}'),
    "ev-older-than-ring": u8(BASE_DATA) + event(1, ev(1)) + event(50, ev(50))
        + event(45, ev(45)),
    "ev-line-too-long": u8(BASE_DATA) + event(3, ev(3)) + u8(6) + num(19)
        + text("", fill=ord("x")),
    "ev-full-ring": u8(BASE_DATA) + b"".join(event(i, ev(i)) for i in range(1, 40)),

    "infl-odd-id": u8(BASE_DATA) + inflight(3, 7, 0) + inflight(4, 8, 0),
    "infl-offset-huge": u8(BASE_DATA) + inflight(3, 8, (1 << 64) - 1),
    "infl-tombstone": u8(BASE_DATA) + inflight(3, 1, 0) + inflight(4, 6, 0),
    "infl-offset-ok": u8(BASE_DATA) + inflight(3, 8, 4097) + inflight(4, 1 << 63, 0),

    # ---- clean states: nothing dropped, everything restored --------------
    "clean-empty": u8(BASE_DATA),
    "clean-tree": u8(BASE_DATA) + TREE
        + fh(4, "/srv/data/jobs/j1/a.warc", flags=0o2001, unacked=(100, 4000, 4100))
        + fh(3, "/srv/data/jobs/j1", flags=0) + b"".join(event(i, ev(i)) for i in range(1, 6))
        + inflight(0, 12, 0) + inflight(1, 14, 4097)
        + header("init", data=init_request()) + header("init_len", 56),
    "clean-tree-cwd": u8(BASE_CWD) + TREE + fh(4, "jobs/j1/a.warc"),
    "clean-tree-slash": u8(BASE_SLASH) + TREE + fh(4, "/jobs/j1/a.warc"),
}


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus_restore")
    os.makedirs(out, exist_ok=True)
    for name, data in sorted(SEEDS.items()):
        with open(os.path.join(out, "seed-" + name), "wb") as f:
            f.write(data)
    print(f"{len(SEEDS)} seeds in {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
