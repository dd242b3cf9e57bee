"""The model checker's hands: a child process that makes filesystem calls
on a mount, one JSON line in, one JSON line out (test/modelcheck.py).

The checker never touches the mount itself: a call the filesystem blocks
would block the checker with it. This process holds every descriptor the
checker opened (by the checker's own ids), so the parent can wait for each
answer with a deadline and kill this child when one never comes.

Request: {"op": NAME, ...arguments}. Answer: {"ok": true, ...results} or
{"ok": false, "errno": N}. Paths are relative to ROOT (argv[1]). Data is
never sent over the pipe: {"len": N, "tag": T} names the bytes
data_bytes(T, N), which the checker computes the same way.
"""

import ctypes
import ctypes.util
import errno
import json
import mmap
import os
import random
import sys

ROOT = None
FDS = {}
_libc = None


def data_bytes(tag, n):
    """The bytes a write with this tag carries: deterministic, and
    different for every tag so a misplaced write shows."""
    return random.Random(tag).randbytes(n)


def _p(path):
    return os.path.join(ROOT, path) if path else ROOT


def _fallocate(fd, mode, off, length):
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        _libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int,
                                    ctypes.c_longlong, ctypes.c_longlong]
    if _libc.fallocate(fd, mode, off, length) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def _stat(st):
    kind = {0o040000: "d", 0o100000: "f", 0o120000: "l"}.get(
        st.st_mode & 0o170000, "?")
    return {"kind": kind, "size": st.st_size, "perm": st.st_mode & 0o7777,
            "mtime": int(st.st_mtime), "nlink": st.st_nlink}


def _mapped(fd, write, fn):
    size = os.fstat(fd).st_size
    prot = mmap.PROT_READ | (mmap.PROT_WRITE if write else 0)
    m = mmap.mmap(fd, size, mmap.MAP_SHARED, prot)
    try:
        return fn(m)
    finally:
        m.close()


def do(req):
    op = req["op"]
    fd = FDS.get(req.get("fd"))
    if "fd" in req and fd is None:
        raise OSError(errno.EBADF, "no such descriptor id")
    if op == "open":
        FDS[req["id"]] = os.open(_p(req["path"]), req["flags"], req.get("mode", 0o644))
        return {}
    if op == "close":
        del FDS[req["fd"]]
        os.close(fd)
        return {}
    if op == "pwrite":
        return {"n": os.pwrite(fd, data_bytes(req["tag"], req["len"]), req["off"])}
    if op == "write":  # O_APPEND descriptors: the offset is the file's end
        return {"n": os.write(fd, data_bytes(req["tag"], req["len"]))}
    if op == "pread":
        return {"data": os.pread(fd, req["len"], req["off"]).hex()}
    if op == "ftruncate":
        os.ftruncate(fd, req["size"])
        return {}
    if op == "fsync":
        os.fsync(fd)
        return {}
    if op == "fstat":
        return _stat(os.fstat(fd))
    if op == "copy":
        return {"n": os.copy_file_range(FDS[req["src"]], fd, req["len"],
                                        req["src_off"], req["off"])}
    if op == "fallocate":
        _fallocate(fd, 0, req["off"], req["len"])
        return {}
    if op == "mmap_read":
        return {"data": _mapped(fd, False, lambda m: m[req["off"]:req["off"] + req["len"]]).hex()}
    if op == "mmap_write":
        def put(m):
            m[req["off"]:req["off"] + req["len"]] = data_bytes(req["tag"], req["len"])
            m.flush()  # msync(MS_SYNC)
        _mapped(fd, True, put)
        return {}
    if op == "cat":
        with open(_p(req["path"]), "rb") as f:
            return {"data": f.read().hex()}
    if op == "lstat":
        return _stat(os.lstat(_p(req["path"])))
    if op == "truncate":
        os.truncate(_p(req["path"]), req["size"])
        return {}
    if op == "readdir":
        return {"names": sorted(os.listdir(_p(req["path"])))}
    if op == "mkdir":
        os.mkdir(_p(req["path"]), req["mode"])
        return {}
    if op == "rmdir":
        os.rmdir(_p(req["path"]))
        return {}
    if op == "unlink":
        os.unlink(_p(req["path"]))
        return {}
    if op == "rename":
        os.rename(_p(req["path"]), _p(req["to"]))
        return {}
    if op == "link":
        os.link(_p(req["path"]), _p(req["to"]), follow_symlinks=False)
        return {}
    if op == "symlink":
        os.symlink(req["target"], _p(req["path"]))
        return {}
    if op == "readlink":
        return {"target": os.readlink(_p(req["path"]))}
    if op == "chmod":
        os.chmod(_p(req["path"]), req["perm"])
        return {}
    if op == "utime":
        os.utime(_p(req["path"]), ns=(req["mtime"] * 10**9, req["mtime"] * 10**9))
        return {}
    raise ValueError("unknown op " + op)


def main():
    global ROOT
    ROOT = sys.argv[1]
    os.umask(0o022)
    os.chdir("/")
    for line in sys.stdin:
        req = json.loads(line)
        try:
            r = do(req)
            r["ok"] = True
        except OSError as e:
            r = {"ok": False, "errno": e.errno}
        sys.stdout.write(json.dumps(r) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
