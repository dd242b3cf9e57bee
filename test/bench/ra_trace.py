"""What the kernel sends a FUSE daemon for each sequential read pattern.

    /usr/bin/python3 test/bench/ra_trace.py --build build [--delay-ms 10]
        [--mib 8] [--pattern NAME,...] [--raw]

Mounts steadyfs with -d (its debug log has one line per FUSE READ: handle,
offset, size, caller pid, time) against a throwaway sshd, through the fault
proxy with the given delay each way, runs each reader pattern on a file
written server-side just before (a fresh file per pattern: nothing in the
page cache), and prints per pattern: the READs the kernel sent (sizes,
handles, how many arrived below the highest offset seen so far, how many
started past the end of the previous one), the read-ahead counters of
.control/status, and the first READs. docs/performance.md keeps what it
found. Needs root and /dev/fuse, like `make bench`.
"""

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TEST = os.path.dirname(HERE)
sys.path.insert(0, TEST)
sys.path.insert(0, HERE)

import faultproxy  # noqa: E402
import mounts  # noqa: E402
import readers  # noqa: E402
import sshdfix  # noqa: E402

MIB = 1 << 20
READ_LINE = re.compile(r"read fh (\d+) off (\d+) size (\d+) pid (\d+) t ([\d.]+) ms")


def trace_lines(path, start):
    with open(path, "rb") as f:
        f.seek(start)
        text = f.read().decode("utf-8", "replace")
    return [tuple(float(x) if "." in x else int(x) for x in m.groups())
            for m in READ_LINE.finditer(text)]


def summarise(reads):
    sizes = collections.Counter(r[2] for r in reads)
    fhs = collections.Counter(r[0] for r in reads)
    below = gaps = 0
    hi = end = None
    for fh, off, size, _pid, _t in reads:
        if hi is not None and off < hi:
            below += 1
        if end is not None and off > end:
            gaps += 1
        hi = max(hi or 0, off + size)
        end = off + size
    return {"reads": len(reads), "sizes_kib": {k // 1024: v for k, v in sorted(sizes.items())},
            "handles": len(fhs), "below_high_mark": below, "forward_gaps": gaps}


def in_child(name, path):
    """Runs a pattern in a child process: the proxy's thread lives in this
    one, and an mmap page fault here would hold the interpreter lock while
    the kernel waits for the proxy (the READ then times out: SIGBUS)."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import readers; "
            "print(readers.PATTERNS[sys.argv[2]](sys.argv[3]))")
    r = subprocess.run([sys.executable, "-c", code, TEST, name, path],
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"{name}: exit {r.returncode}: {r.stderr.strip()[-500:]}")
    out = r.stdout.strip()
    return None if out == "None" else out


def bdi_path(mnt):
    st = os.stat(mnt)
    return f"/sys/class/bdi/{os.major(st.st_dev)}:{os.minor(st.st_dev)}/read_ahead_kb"


def status_counters(mnt):
    with open(os.path.join(mnt, ".control", "status")) as f:
        return [line.strip() for line in f if line.startswith("readahead")]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(os.path.dirname(TEST), "build"))
    ap.add_argument("--delay-ms", type=int, default=10)
    ap.add_argument("--mib", type=int, default=8)
    ap.add_argument("--pattern", default=",".join(readers.PATTERNS))
    ap.add_argument("--raw", type=int, default=24, help="READs printed per pattern")
    ap.add_argument("--ra-kb", type=int, default=None,
                    help="write the mount's read_ahead_kb after mounting")
    args = ap.parse_args()
    os.environ["STEADYFS_BUILD"] = os.path.abspath(args.build)
    work = tempfile.mkdtemp(prefix="ra-trace-")
    sshd = proxy = m = None
    try:
        sshd = sshdfix.Sshd(work).start()
        proxy = faultproxy.FaultProxy("127.0.0.1", sshd.port).start()
        proxy.delay(args.delay_ms)
        m = mounts.mount_steadyfs(sshd, port=proxy.port, args=("-d",),
                                  opts={"op_timeout": None}, timeout=30)
        bdi = bdi_path(m.mountpoint)
        if args.ra_kb is not None:
            with open(bdi, "w") as f:
                f.write(str(args.ra_kb))
        with open(bdi) as f:
            print(f"{bdi}: {f.read().strip()}")
        for name in args.pattern.split(","):
            path = readers.make_file(sshd.remote_dir, args.mib)
            before = status_counters(m.mountpoint)
            start = os.path.getsize(m.stderr_path)
            t0 = time.monotonic()
            digest = in_child(name, os.path.join(m.mountpoint, os.path.basename(path)))
            dt = time.monotonic() - t0
            # The log is written by the daemon's threads: give the last
            # lines a moment (nothing is asserted on it).
            time.sleep(0.2)
            reads = trace_lines(m.stderr_path, start)
            ok = digest is None or digest == readers.expected(path, name)
            print(f"\n== {name}: {args.mib * MIB / dt / 1e6:.1f} MB/s, bytes {'ok' if ok else 'WRONG'}")
            print("  ", summarise(reads))
            print("   status before:", before)
            print("   status after: ", status_counters(m.mountpoint))
            t_first = reads[0][4] if reads else 0
            for fh, off, size, pid, t in reads[:args.raw]:
                print(f"   fh {fh:#x} off {off // 1024:>6} KiB size {size // 1024:>4} KiB "
                      f"pid {pid} +{t - t_first:8.1f} ms")
            os.unlink(path)
    finally:
        if m is not None:
            m.cleanup()
        if proxy is not None:
            proxy.stop()
        if sshd is not None:
            sshd.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
