#!/usr/bin/python3
"""Writes the seed corpus for fuzz_sftp into test/fuzz/corpus/.

Each file is one input to LLVMFuzzerTestOneInput: mostly framed server
packets (u32 length, type, body), valid ones and the edge cases the codec
must refuse, plus a few inputs laid out as encoder field values. The output
is deterministic; rerun after changing this script and commit the result:

    /usr/bin/python3 test/fuzz/gen_corpus.py

Files not written by this script (crash inputs found by `make fuzz`) are
left alone.
"""
import os
import struct
import sys

# SFTP v3 numbers (draft-ietf-secsh-filexfer-02, OpenSSH PROTOCOL).
VERSION, STATUS, HANDLE, DATA, NAME, ATTRS = 2, 101, 102, 103, 104, 105
EXTENDED_REPLY = 201
A_SIZE, A_UIDGID, A_PERM, A_TIME, A_EXT = 1, 2, 4, 8, 0x80000000
MAX_HANDLE, MAX_PATH, MAX_NAMES, MAX_ATTR_EXT = 256, 4096, 100000, 1024


def u8(v):
    return struct.pack(">B", v)


def u32(v):
    return struct.pack(">I", v)


def u64(v):
    return struct.pack(">Q", v)


def s(b):
    if isinstance(b, str):
        b = b.encode()
    return u32(len(b)) + b


def frame(body):
    return u32(len(body)) + body


def reply(t, rid, body=b""):
    return frame(u8(t) + u32(rid) + body)


def attrs(flags=0, size=0, uid=0, gid=0, perm=0, atime=0, mtime=0, ext=()):
    out = u32(flags)
    if flags & A_SIZE:
        out += u64(size)
    if flags & A_UIDGID:
        out += u32(uid) + u32(gid)
    if flags & A_PERM:
        out += u32(perm)
    if flags & A_TIME:
        out += u32(atime) + u32(mtime)
    if flags & A_EXT:
        out += u32(len(ext)) + b"".join(s(k) + s(v) for k, v in ext)
    return out


FULL = attrs(A_SIZE | A_UIDGID | A_PERM | A_TIME, 123456789, 1000, 1000,
             0o100644, 1700000000, 1700000001)
DIRA = attrs(A_SIZE | A_UIDGID | A_PERM | A_TIME, 4096, 0, 0, 0o40755,
             1700000000, 1700000000)


def name_entry(n, a=FULL, longname=None):
    if longname is None:
        longname = "-rw-r--r--    1 u g 123456789 Nov 14 22:13 " + n
    return s(n) + s(longname) + a


def version(*pairs, ver=3):
    return frame(u8(VERSION) + u32(ver) +
                 b"".join(s(k) + s(v) for k, v in pairs))


OPENSSH_EXTS = [
    ("posix-rename@openssh.com", "1"), ("statvfs@openssh.com", "2"),
    ("fstatvfs@openssh.com", "2"), ("hardlink@openssh.com", "1"),
    ("fsync@openssh.com", "1"), ("lsetstat@openssh.com", "1"),
    ("limits@openssh.com", "1"), ("expand-path@openssh.com", "1"),
    ("copy-data", "1"), ("home-directory", "1"),
    ("users-groups-by-id@openssh.com", "1"),
]


def encoder_fields(rid, off, length, pflags, typ, a, handle, p1, p2, data):
    """Lays out field values as fuzz_sftp's encoder half reads them."""
    flags, size, uid, gid, perm, at, mt = a
    return (u32(rid) + u64(off) + u32(length) + u32(pflags) + u8(typ) +
            u32(flags) + u64(size) + u32(uid) + u32(gid) + u32(perm) +
            u32(at) + u32(mt) +
            struct.pack(">H", len(handle)) + handle +
            struct.pack(">H", len(p1)) + p1 +
            struct.pack(">H", len(p2)) + p2 +
            struct.pack(">H", len(data)) + data)


def seeds():
    c = {}
    # VERSION
    c["version-openssh"] = version(*OPENSSH_EXTS)
    c["version-bare"] = version()
    c["version-v6"] = version(ver=6)
    c["version-unknown-exts"] = version(("x@example.com", "whatever"),
                                        ("", ""), ("limits@openssh.com", "1"))
    c["version-wrong-ext-versions"] = version(("statvfs@openssh.com", "1"),
                                              ("hardlink@openssh.com", "2"))
    c["version-cut-pair"] = frame(u8(VERSION) + u32(3) +
                                  s("fsync@openssh.com"))
    c["version-huge-name"] = frame(u8(VERSION) + u32(3) + u32(0x7fffffff))
    # STATUS
    c["status-ok"] = reply(STATUS, 1, u32(0) + s("Success") + s(""))
    c["status-eof"] = reply(STATUS, 2, u32(1) + s("End of file") + s("en"))
    c["status-nosuchfile"] = reply(STATUS, 3, u32(2) + s("No such file") +
                                   s(""))
    c["status-no-message"] = reply(STATUS, 4, u32(4))
    c["status-no-lang"] = reply(STATUS, 5, u32(3) + s("Permission denied"))
    c["status-cut-lang"] = reply(STATUS, 6, u32(4) + s("Failure") + u32(9))
    c["status-v6-code"] = reply(STATUS, 7, u32(14) + s("No space") + s(""))
    c["status-huge-message"] = reply(STATUS, 8, u32(4) + u32(0xfffffff0))
    # HANDLE
    c["handle-4"] = reply(HANDLE, 10, s(b"\x00\x00\x00\x01"))
    c["handle-empty"] = reply(HANDLE, 11, s(b""))
    c["handle-max"] = reply(HANDLE, 12, s(b"h" * MAX_HANDLE))
    c["handle-over-max"] = reply(HANDLE, 13, s(b"h" * (MAX_HANDLE + 1)))
    # DATA
    c["data-small"] = reply(DATA, 20, s(b"hello, world\n"))
    c["data-empty"] = reply(DATA, 21, s(b""))
    c["data-past-end"] = reply(DATA, 22, u32(100) + b"short")
    c["data-len-max"] = reply(DATA, 23, u32(0xffffffff))
    # NAME
    c["name-realpath"] = reply(NAME, 30, u32(1) + s("/home/u") + s("") +
                               attrs())
    c["name-readdir"] = reply(NAME, 31, u32(3) + name_entry(".", DIRA) +
                              name_entry("..", DIRA) + name_entry("f.warc"))
    c["name-zero"] = reply(NAME, 32, u32(0))
    c["name-over-cap"] = reply(NAME, 33, u32(MAX_NAMES + 1))
    c["name-count-too-high"] = reply(NAME, 34, u32(5) + name_entry("one"))
    c["name-entries-run-out"] = reply(NAME, 35, u32(2) + name_entry("one"))
    c["name-ext-attrs"] = reply(NAME, 36, u32(1) + name_entry(
        "x", attrs(A_SIZE | A_EXT, 7, ext=[("a@b", "c"), ("d@e", "")])))
    c["name-long-filename"] = reply(NAME, 37, u32(1) +
                                    name_entry("n" * (MAX_PATH + 1)))
    c["name-many"] = reply(NAME, 38, u32(200) + b"".join(
        name_entry("entry-%d" % i, attrs(A_SIZE, i)) for i in range(200)))
    # ATTRS
    c["attrs-full"] = reply(ATTRS, 40, FULL)
    c["attrs-none"] = reply(ATTRS, 41, attrs())
    c["attrs-dir"] = reply(ATTRS, 42, DIRA)
    c["attrs-ext"] = reply(ATTRS, 43, attrs(
        A_PERM | A_EXT, perm=0o644, ext=[("acl@x", "rwx"), ("", "")]))
    c["attrs-ext-over-cap"] = reply(ATTRS, 44, u32(A_EXT) +
                                    u32(MAX_ATTR_EXT + 1))
    c["attrs-unknown-flags"] = reply(ATTRS, 45, u32(0x7ffffff0))
    c["attrs-cut"] = reply(ATTRS, 46, u32(A_SIZE | A_UIDGID) + u64(1) + u32(2))
    # EXTENDED_REPLY
    c["ext-limits"] = reply(EXTENDED_REPLY, 50, u64(262144) + u64(261120) +
                            u64(261120) + u64(1019))
    c["ext-statvfs"] = reply(EXTENDED_REPLY, 51, b"".join(
        u64(v) for v in (4096, 4096, 1 << 28, 1 << 27, 1 << 26, 1 << 20,
                         1 << 19, 1 << 19, 0xdeadbeef, 0, 255)))
    c["ext-empty"] = reply(EXTENDED_REPLY, 52)
    c["ext-limits-short"] = reply(EXTENDED_REPLY, 53, u64(1) + u64(2))
    # framing and type edge cases
    c["frame-empty"] = b""
    c["frame-3-bytes"] = b"\x00\x00\x00"
    c["frame-zero-length"] = u32(0) + b"\x65"
    c["frame-huge-length"] = u32(0xffffffff) + b"\x65\x00\x00\x00\x01"
    c["frame-over-max"] = u32(256 * 1024 + 1024 + 1) + b"\x67"
    c["frame-incomplete"] = u32(100) + u8(STATUS) + u32(1)
    c["frame-two-packets"] = (reply(STATUS, 60, u32(0)) +
                              reply(HANDLE, 61, s("h")))
    c["type-unknown"] = reply(150, 70, b"\x00" * 8)
    c["type-request"] = reply(3, 71, s("/x") + u32(1) + attrs())
    c["type-only"] = frame(u8(STATUS))
    # encoder field layouts (the encoder half reads any input this way)
    full = (0xf, 1 << 40, 1000, 1001, 0o100600, 1, 2)
    c["enc-typical"] = encoder_fields(
        7, 65536, 32768, 0x1a, 17, full, b"\x00\x00\x00\x07", b"/srv/jobs/a",
        b"/srv/jobs/b", b"warc data")
    c["enc-handle-over-max"] = encoder_fields(
        1, 0, 0, 0, 12, full, b"H" * (MAX_HANDLE + 1), b"/", b"/", b"")
    c["enc-path-over-max"] = encoder_fields(
        2, 0, 0, 0, 7, (0, 0, 0, 0, 0, 0, 0), b"h", b"p" * (MAX_PATH + 1),
        b"/q", b"")
    c["enc-path-at-max"] = encoder_fields(
        3, 0, 0, 0, 16, (A_EXT | 0xff, 5, 0, 0, 0, 0, 0), b"",
        b"p" * MAX_PATH, b"q" * MAX_PATH, b"d" * 64)
    c["enc-nul-in-path"] = encoder_fields(
        4, 0, 0, 0, 8, full, b"h", b"/a\x00b", b"\x00", b"")
    return c


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
    os.makedirs(out, exist_ok=True)
    corpus = seeds()
    for name, data in sorted(corpus.items()):
        with open(os.path.join(out, "seed-" + name), "wb") as f:
            f.write(data)
    print("gen_corpus: %d seeds in %s" % (len(corpus), out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
