"""`make bench`: steadyfs against sshfs, side by side, in one run.

    /usr/bin/python3 test/bench/bench.py --build build [--slow] [--reps 3]
        [--profile direct,+10ms] [--rows seq_read,stat]

--profile and --rows run a subset while investigating one figure; the
numbers the issue asks for come from a whole run.

Starts a throwaway OpenSSH sshd on 127.0.0.1 (test/sshdfix.py) and the
fault proxy (test/faultproxy.py) in front of it, in a child process of its
own so that its CPU does not share this process's interpreter lock with
the workloads. For each link profile (direct: the proxy in pass mode; +10 ms
each way; with --slow also +50 ms) it mounts steadyfs (default options) and
sshfs (default options) against the same server through the same proxy,
then, after a small warm-up round of the data rows on each mount (not
counted), runs each workload on both mounts, interleaved (the order flips
every repetition), `--reps` times, and keeps the median:

  seq write      N MiB in 1 MiB write() calls, then fsync; time to fsync return
  seq read       N MiB in 1 MiB read() calls from a file written server-side
                 just before (a fresh file each time: nothing in the page cache)
  4 writers      4 threads, each N/4 MiB to its own file, fsync each
  small files    create + write 16 KiB + close, ops/s
  rename+unlink  rename then unlink each small file, ops/s (2 per file)
  stat           listdir of a folder made server-side + lstat of each entry
  random 4K      4 KiB pwrite() at random offsets in a 64 MiB file + fsync
  readers        the tools people run, each on a fresh server-side file:
                 cat, cp FILE /dev/null, sha256sum, dd bs=4k/32k/64k/128k/1M
                 (--rows read_cat,read_dd_4k,...; all: --rows readers)

and the link ceiling: `ssh 'cat > /dev/null'` and `ssh 'head -c N
/dev/zero'` through the same proxy, minus the time of an `ssh true`, once
per repetition; the best sample is the ceiling.

After each profile: peak RSS (VmHWM) of each daemon (sshfs: sshfs plus its
ssh), the peak of their summed Pss sampled every 0.1 s during the profile
(test/bench/pss.py: the take-over memfd keeper and daemon share counts
once), per row and where it was at the peak, and CPU seconds per GiB moved
by the sequential rows. Prints one table
per profile and writes everything to BUILD/bench.json.

Everything it starts (sshd, proxy, mounts) is stopped by pid in finally
blocks. Exit status 0 when it ran, 1 when something failed, 2 when it
cannot run here (not root, no /dev/fuse, no sshd, no sshfs, no build).
"""

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TEST = os.path.dirname(HERE)
sys.path.insert(0, TEST)

import demo  # noqa: E402
import mounts  # noqa: E402
import pss  # noqa: E402
import readers  # noqa: E402
import sshdfix  # noqa: E402

MIB = 1 << 20
WATCHDOG = 30 * 60
# Per profile: one-way delay and workload sizes (MiB or counts). Sizes shrink
# with latency so that sshfs's slow rows stay within the time budget.
# Sizes are the (256 MiB sequential, 2,000 / 200 small files,
# 10,000 stats); the others are chosen to keep a run near 10 minutes.
PROFILES = [
    {"name": "direct", "delay_ms": 0, "seq_mib": 256, "par_mib": 128,
     "small": 2000, "stat": 10000, "random": 2000, "ceiling_mib": 256,
     "reader_mib": 64},
    {"name": "+10ms", "delay_ms": 10, "seq_mib": 256, "par_mib": 128,
     "small": 200, "stat": 10000, "random": 500, "ceiling_mib": 256,
     "reader_mib": 64},
]
SLOW_PROFILE = {"name": "+50ms", "delay_ms": 50, "seq_mib": 32, "par_mib": 32,
                "small": 30, "stat": 100, "random": 100, "ceiling_mib": 32,
                "reader_mib": 16}
RANDOM_FILE_MIB = 64
SMALL_FILE = 16 * 1024
KINDS = ("steadyfs", "sshfs")
PR_SET_CHILD_SUBREAPER = 36


def say(text=""):
    print(text, flush=True)


class Failed(Exception):
    pass


# ---- the proxy, in a child process -------------------------------------------

def proxy_child(target_port):
    """Entry point of `bench.py --proxy-child PORT`: run a FaultProxy to
    127.0.0.1:PORT, print its port, then obey "delay MS" lines on stdin
    (answering "ok") until "stop" or EOF."""
    import faultproxy
    proxy = faultproxy.FaultProxy("127.0.0.1", target_port).start()
    print(proxy.port, flush=True)
    try:
        for line in sys.stdin:
            words = line.split()
            if not words or words[0] == "stop":
                break
            if words[0] == "delay":
                proxy.delay(int(words[1]))
            print("ok", flush=True)
    finally:
        proxy.stop()
    return 0


class ProxyProcess:
    """The fault proxy in a child; `port`, `delay(ms)`, `stop()`."""

    def __init__(self, target_port):
        self.proc = subprocess.Popen(
            sshdfix.ORPHAN_GUARD + [sys.executable, os.path.abspath(__file__),
                                    "--proxy-child", str(target_port)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            self.stop()
            raise Failed("the fault proxy did not start")
        self.port = int(line)

    def delay(self, ms):
        self.proc.stdin.write(f"delay {ms}\n")
        self.proc.stdin.flush()
        if self.proc.stdout.readline().strip() != "ok":
            raise Failed(f"the fault proxy did not take 'delay {ms}'")

    def cpu_seconds(self):
        return cpu_seconds(self.proc.pid)

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("stop\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=15)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(timeout=10)


# ---- process figures ----------------------------------------------------------

def cpu_seconds(pid):
    """utime + stime of one live process (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return 0.0
    fields = data[data.rindex(b")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def vm_hwm_kib(pid):
    return pss.proc_kib(pid, "status", "VmHWM")


def become_subreaper():
    """sshfs starts its ssh through a double fork, so the ssh is nobody's
    child but init's; as a subreaper this process adopts it instead and
    can find it (and its CPU and RSS) by parent pid."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def adopted_ssh(known):
    """Pids of ssh processes this process adopted that are not in `known`."""
    return [p for p in sshdfix.descendants(os.getpid())
            if p not in known and sshdfix.proc_comm(p) == "ssh"
            and sshdfix._ppid(p) == os.getpid()]


def reap_adopted(pids, timeout=5.0):
    """Collect the adopted ssh processes of unmounted sshfs mounts, by
    pid (they exit when sshfs closes their socket); a deadline, no hang."""
    deadline = time.monotonic() + timeout
    for pid in pids:
        while True:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                break
            if done or time.monotonic() > deadline:
                break
            time.sleep(0.02)


def daemon_pids(m):
    """The processes that do a mount's work: steadyfs alone; sshfs and
    the ssh it runs (adopted, see become_subreaper)."""
    return [m.pid] + sshdfix.descendants(m.pid) + list(getattr(m, "ssh_pids", []))


def daemon_cpu(m):
    return sum(cpu_seconds(p) for p in daemon_pids(m))


# ---- workloads: each returns (rate, bytes moved) --------------------------------

def fresh_name(d, stem):
    return os.path.join(d, f"{stem}-{time.monotonic_ns()}")


def seq_write(mnt, _server, mib):
    block = os.urandom(MIB)
    path = fresh_name(mnt, "w")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        t0 = time.monotonic()
        for _ in range(mib):
            os.write(fd, block)
        os.fsync(fd)
        dt = time.monotonic() - t0
    finally:
        os.close(fd)
    os.unlink(path)
    return mib * MIB / dt / 1e6, mib * MIB


def make_server_file(server, mib):
    name = os.path.basename(fresh_name(server, "r"))
    block = os.urandom(MIB)
    with open(os.path.join(server, name), "wb") as f:
        for _ in range(mib):
            f.write(block)
    return name


def seq_read(mnt, server, mib):
    name = make_server_file(server, mib)
    fd = os.open(os.path.join(mnt, name), os.O_RDONLY)
    got = 0
    try:
        t0 = time.monotonic()
        while True:
            n = len(os.read(fd, MIB))
            if n == 0:
                break
            got += n
        dt = time.monotonic() - t0
    finally:
        os.close(fd)
    os.unlink(os.path.join(server, name))
    if got != mib * MIB:
        raise Failed(f"read {got} bytes of '{name}', wanted {mib * MIB}")
    return got / dt / 1e6, got


def reader_row(name):
    """A row for one of the tools people run (test/readers.py: cat, cp
    FILE /dev/null, sha256sum, dd bs=...), reading a fresh server-side
    file through the mount, whole; MB/s of the tool's run."""
    def row(mnt, server, mib):
        fname = make_server_file(server, mib)
        try:
            t0 = time.monotonic()
            readers.PATTERNS[name](os.path.join(mnt, fname))
            dt = time.monotonic() - t0
        finally:
            os.unlink(os.path.join(server, fname))
        return mib * MIB / dt / 1e6, mib * MIB
    return row


READERS = [("cat", "`cat FILE`"), ("cp", "`cp FILE /dev/null`"),
           ("sha256sum", "`sha256sum FILE`"), ("dd_4k", "`dd bs=4k`"),
           ("dd_32k", "`dd bs=32k`"), ("dd_64k", "`dd bs=64k`"),
           ("dd_128k", "`dd bs=128k`"), ("dd_1M", "`dd bs=1M`")]


def par_write(mnt, _server, mib, writers=4):
    """`writers` threads, each mib/writers MiB to its own file + fsync."""
    each = max(1, mib // writers)
    block = os.urandom(MIB)
    paths = [fresh_name(mnt, f"p{i}") for i in range(writers)]
    errors = []

    def one(path):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                for _ in range(each):
                    os.write(fd, block)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            errors.append(e)
    threads = [threading.Thread(target=one, args=(p,)) for p in paths]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dt = time.monotonic() - t0
    for p in paths:
        os.unlink(p)
    if errors:
        raise Failed(f"parallel writer: {errors[0]}")
    total = each * writers * MIB
    return total / dt / 1e6, total


def small_files(mnt, _server, n):
    """Create + write 16 KiB + close, n times; the files stay for the
    rename+unlink row, in a folder named in the returned state."""
    d = fresh_name(mnt, "small")
    os.mkdir(d)
    data = os.urandom(SMALL_FILE)
    t0 = time.monotonic()
    for i in range(n):
        fd = os.open(os.path.join(d, f"f{i}"), os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, data)
        os.close(fd)
    dt = time.monotonic() - t0
    return n / dt, n * SMALL_FILE, d


def rename_unlink(d, n):
    t0 = time.monotonic()
    for i in range(n):
        os.rename(os.path.join(d, f"f{i}"), os.path.join(d, f"g{i}"))
    for i in range(n):
        os.unlink(os.path.join(d, f"g{i}"))
    dt = time.monotonic() - t0
    os.rmdir(d)
    return 2 * n / dt


def stat_files(mnt, server, n):
    """A folder of n empty files made server-side; listdir + lstat each."""
    name = os.path.basename(fresh_name(server, "stat"))
    sd = os.path.join(server, name)
    os.mkdir(sd)
    for i in range(n):
        open(os.path.join(sd, f"e{i}"), "w").close()
    d = os.path.join(mnt, name)
    t0 = time.monotonic()
    names = os.listdir(d)
    for e in names:
        os.lstat(os.path.join(d, e))
    dt = time.monotonic() - t0
    shutil.rmtree(sd)
    if len(names) != n:
        raise Failed(f"listed {len(names)} entries in '{d}', wanted {n}")
    return n / dt, 0


def random_writes(mnt, _server, n):
    """n 4 KiB pwrite()s at random 4 KiB-aligned offsets of a 64 MiB
    file (sparse, made with ftruncate), then fsync; ops/s."""
    path = fresh_name(mnt, "rand")
    data = os.urandom(4096)
    rng = random.Random(7)
    offsets = [rng.randrange(RANDOM_FILE_MIB * MIB // 4096) * 4096
               for _ in range(n)]
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, RANDOM_FILE_MIB * MIB)
        t0 = time.monotonic()
        for off in offsets:
            os.pwrite(fd, data, off)
        os.fsync(fd)
        dt = time.monotonic() - t0
    finally:
        os.close(fd)
    os.unlink(path)
    return n / dt, n * 4096


# ---- the link ceiling ---------------------------------------------------------------

def timed_ssh(sshd, port, remote, stdin_path=None):
    cmd = sshd.ssh_cmd(remote, port=port)
    t0 = time.monotonic()
    with open(stdin_path or os.devnull, "rb") as inp:
        r = subprocess.run(cmd, stdin=inp, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, timeout=300)
    if r.returncode != 0:
        raise Failed(f"'{' '.join(cmd)}' exited {r.returncode}: "
                     f"{r.stderr.decode(errors='replace').strip()}")
    return time.monotonic() - t0


def ceiling(sshd, port, mib, src_path):
    """(up MB/s, down MB/s) of one ssh stream, the setup time (an `ssh
    true` just before) taken off."""
    setup = timed_ssh(sshd, port, "true")
    up = timed_ssh(sshd, port, "cat > /dev/null", src_path) - setup
    setup = timed_ssh(sshd, port, "true")
    down = timed_ssh(sshd, port, f"head -c {mib}M /dev/zero") - setup
    return mib * MIB / max(up, 1e-3) / 1e6, mib * MIB / max(down, 1e-3) / 1e6


# ---- one profile -------------------------------------------------------------------

ROWS = [  # key, label, unit, workload, size key
    ("seq_write", "seq write {seq_mib} MiB + fsync", "MB/s", seq_write, "seq_mib"),
    ("seq_read", "seq read {seq_mib} MiB, cold", "MB/s", seq_read, "seq_mib"),
    ("par_write", "4 writers, {par_mib} MiB total", "MB/s", par_write, "par_mib"),
    ("small", "small files x{small} (16 KiB)", "ops/s", None, "small"),
    ("rename_unlink", "rename+unlink x{small}", "ops/s", None, "small"),
    ("stat", "listdir + stat x{stat}", "ops/s", stat_files, "stat"),
    ("random", "random 4K writes x{random}", "ops/s", random_writes, "random"),
] + [(f"read_{name}", label + " {reader_mib} MiB, cold", "MB/s", reader_row(name),
      "reader_mib") for name, label in READERS]
SEQ_ROWS = ("seq_write", "seq_read", "par_write")
READER_ROWS = tuple(f"read_{name}" for name, _ in READERS)


def unmount(m):
    """Unmount, reap, and remove the /run/steadyfs mirror a steadyfs
    mount leaves (the test fixtures do that; without it every bench run
    left one mirror per mount there)."""
    m.cleanup()
    m.remove_mirror()


def mount_both(sshd, port, workdir):
    """steadyfs and sshfs on their own folders of the remote, through
    `port`. steadyfs gets its defaults (the test fixture's short
    op_timeout is dropped)."""
    out = {}
    try:
        for kind in KINDS:
            os.makedirs(os.path.join(sshd.remote_dir, kind), exist_ok=True)
            mp = tempfile.mkdtemp(prefix=f"mnt-{kind}-", dir=workdir)
            if kind == "steadyfs":
                out[kind] = mounts.mount_steadyfs(
                    sshd, mp, remote_subdir=kind, port=port,
                    opts={"op_timeout": None}, timeout=30)
            else:
                before = set(sshdfix.descendants(os.getpid()))
                out[kind] = mounts.mount_sshfs(sshd, mp, remote_subdir=kind,
                                               port=port, timeout=30)
                out[kind].ssh_pids = adopted_ssh(before)
    except BaseException:
        for m in out.values():
            unmount(m)
        raise
    return out


def run_row(key, fn, size, m, server, samples, moved):
    if key == "small":
        rate, nbytes, d = small_files(m.mountpoint, server, size)
        samples["small"].append(rate)
        samples["rename_unlink"].append(rename_unlink(d, size))
        return
    cpu0 = daemon_cpu(m)
    rate, nbytes = fn(m.mountpoint, server, size)
    samples[key].append(rate)
    if key in SEQ_ROWS:
        moved["bytes"] += nbytes
        moved["cpu"] += daemon_cpu(m) - cpu0


def warm_up(ms, sshd, rows):
    """One small round of the data rows on each fresh mount, not counted.
    On this VM a page the process never touched costs ~15 us to fault in
    (docs/performance.md), so whichever daemon first grows its buffers
    in a measured repetition lost up to 3x there; a mount that has run
    for a while (the crawler's case) is past that."""
    for kind in KINDS:
        server = os.path.join(sshd.remote_dir, kind)
        for key, fn, size in (("seq_write", seq_write, 32), ("seq_read", seq_read, 32),
                              ("par_write", par_write, 32),
                              ("random", random_writes, 200)):
            if key in rows:
                fn(ms[kind].mountpoint, server, size)


def start_samplers(ms):
    """A Pss sampler per mount over its daemon processes (fixed for the
    profile: steadyfs's keeper and daemon, sshfs and its ssh)."""
    out = {}
    for kind, m in ms.items():
        pids = daemon_pids(m)
        out[kind] = pss.PssSampler(lambda pids=pids: pids).start()
    return out


def run_profile(prof, sshd, proxy, workdir, reps, src_path, rows):
    proxy.delay(prof["delay_ms"])
    say(f"\n== {prof['name']}: {prof['delay_ms']} ms each way "
        f"(round trip +{2 * prof['delay_ms']} ms) ==")
    up, down = [], []
    ms = mount_both(sshd, proxy.port, workdir)
    samples = {k: {r[0]: [] for r in ROWS} for k in KINDS}
    moved = {k: {"bytes": 0, "cpu": 0.0} for k in KINDS}
    samplers = start_samplers(ms)
    try:
        for s in samplers.values():
            s.mark("warm-up")
        warm_up(ms, sshd, rows)
        for rep in range(reps):
            order = KINDS if rep % 2 == 0 else KINDS[::-1]
            u, d = ceiling(sshd, proxy.port, prof["ceiling_mib"], src_path)
            up.append(u)
            down.append(d)
            for key, _, _, fn, size_key in ROWS:
                if key == "rename_unlink" or key not in rows:
                    continue  # rename+unlink is measured with "small"
                for kind in order:
                    server = os.path.join(sshd.remote_dir, kind)
                    samplers[kind].mark(key)
                    run_row(key, fn, prof[size_key], ms[kind], server,
                            samples[kind], moved[kind])
                    samplers[kind].mark(None)
            say(f"  repetition {rep + 1}/{reps} done")
        for s in samplers.values():
            s.stop()
        daemons = {k: dict(daemon_figures(ms[k], moved[k]),
                           **samplers[k].figures()) for k in KINDS}
        for k in KINDS:
            bad = ms[k].problems() if k == "steadyfs" else []
            if bad:
                raise Failed(f"steadyfs stderr: {bad[:3]}")
    finally:
        for s in samplers.values():
            s.stop()
        for m in ms.values():
            unmount(m)
        reap_adopted([p for m in ms.values()
                      for p in getattr(m, "ssh_pids", [])])
    return summarise(prof, samples, daemons, up, down)


# Issue 7 item 4: what each transport setting is worth, steadyfs alone,
# each variant changing one default (STEADYFS_TRANSPORT, see fs/transport/conn.c).
TRANSPORT_VARIANTS = [
    ("defaults (AES-GCM, TCP_NODELAY, 4 MiB channel reads)", ""),
    ("ChaCha20-Poly1305 instead of AES-GCM", "cipher=chacha20-poly1305@openssh.com"),
    ("AES-CTR + HMAC instead of AES-GCM", "cipher=aes128-ctr"),
    ("without TCP_NODELAY", "nodelay=0"),
    ("64 KiB channel reads (libssh's own ~1.2 MB window)", "window=65536"),
]
TRANSPORT_ROWS = [("seq_write", "seq write MB/s", seq_write),
                  ("seq_read", "seq read MB/s", seq_read),
                  ("small", "small files/s", None)]
TRANSPORT_SIZES = {"direct": {"mib": 128, "small": 300},
                   "+10ms": {"mib": 128, "small": 60}}


def transport_profile(prof, sshd, proxy, workdir, reps):
    """Mounts steadyfs once per variant and runs the rows `reps` times."""
    proxy.delay(prof["delay_ms"])
    sizes = TRANSPORT_SIZES[prof["name"]]
    server = os.path.join(sshd.remote_dir, "steadyfs")
    out = []
    for label, spec in TRANSPORT_VARIANTS:
        mp = tempfile.mkdtemp(prefix="mnt-transport-", dir=workdir)
        m = mounts.mount_steadyfs(sshd, mp, remote_subdir="steadyfs",
                                  port=proxy.port, opts={"op_timeout": None},
                                  timeout=30,
                                  env={"STEADYFS_TRANSPORT": spec} if spec else None)
        got = {k: [] for k, _, _ in TRANSPORT_ROWS}
        try:
            seq_write(mp, server, 16)  # warm-up, not counted
            for _ in range(reps):
                got["seq_write"].append(seq_write(mp, server, sizes["mib"])[0])
                got["seq_read"].append(seq_read(mp, server, sizes["mib"])[0])
                rate, _, d = small_files(mp, server, sizes["small"])
                shutil.rmtree(d)
                got["small"].append(rate)
            bad = m.problems()
            if bad:
                raise Failed(f"steadyfs stderr ({label}): {bad[:3]}")
        finally:
            unmount(m)
        out.append({"variant": label, "spec": spec, "samples": got,
                    "medians": {k: median(v) for k, v in got.items()}})
    base = out[0]["medians"]
    for v in out:
        v["vs_defaults"] = {k: (v["medians"][k] / base[k]) if base[k] else None
                            for k in base}
    return {"profile": prof["name"], "sizes": sizes, "variants": out}


def transport_table(res):
    head = " | ".join(label for _, label, _ in TRANSPORT_ROWS)
    out = [f"### transport settings, {res['profile']} (steadyfs alone; "
           f"{res['sizes']['mib']} MiB, {res['sizes']['small']} small files; "
           "x = against the defaults)", "",
           f"| variant | {head} |", "|---|" + "---:|" * len(TRANSPORT_ROWS)]
    for v in res["variants"]:
        cells = [f"{fmt(v['medians'][k])} (x{fmt(v['vs_defaults'][k], 2)})"
                 for k, _, _ in TRANSPORT_ROWS]
        out.append(f"| {v['variant']} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def daemon_figures(m, moved):
    pids = daemon_pids(m)
    gib = moved["bytes"] / (1 << 30)
    return {"pids": pids,
            "peak_rss_mib": sum(vm_hwm_kib(p) for p in pids) / 1024,
            "cpu_seconds_seq": moved["cpu"],
            "cpu_seconds_per_gib": moved["cpu"] / gib if gib else None}


def median(xs):
    return statistics.median(xs) if xs else None


def summarise(prof, samples, daemons, up, down):
    rows = []
    # A ceiling is what the link can do: the best sample, not the median
    # (one ssh stream swings most with the other load on the machine).
    ceil = {"seq_write": max(up), "seq_read": max(down), "par_write": max(up)}
    ceil.update({k: max(down) for k in READER_ROWS})
    for key, label, unit, _, _ in ROWS:
        s, f = median(samples["steadyfs"][key]), median(samples["sshfs"][key])
        c = ceil.get(key)
        rows.append({"key": key, "label": label.format(**prof), "unit": unit,
                     "steadyfs": s, "sshfs": f,
                     "steadyfs_samples": samples["steadyfs"][key],
                     "sshfs_samples": samples["sshfs"][key],
                     "ratio": s / f if s and f else None,
                     "ceiling": c,
                     "pct_of_ceiling": 100 * s / c if s and c else None})
    return {"profile": prof["name"], "delay_ms_each_way": prof["delay_ms"],
            "sizes": {k: v for k, v in prof.items()
                      if k not in ("name", "delay_ms")},
            "ceiling_up_mb_s": max(up), "ceiling_down_mb_s": max(down),
            "ceiling_up_samples": up, "ceiling_down_samples": down,
            "rows": rows, "daemons": daemons}


# ---- output -------------------------------------------------------------------------

def fmt(x, nd=1):
    return "-" if x is None else f"{x:.{nd}f}"


def table(res):
    """The markdown table of one profile (also what docs/performance.md
    carries)."""
    out = [f"### {res['profile']} ({res['delay_ms_each_way']} ms each way)",
           "",
           f"ssh stream ceiling (best of the runs): up "
           f"{fmt(res['ceiling_up_mb_s'])} MB/s, "
           f"down {fmt(res['ceiling_down_mb_s'])} MB/s",
           "",
           "| row | unit | steadyfs | sshfs | steadyfs/sshfs | % of ceiling |",
           "|---|---|---:|---:|---:|---:|"]
    for r in res["rows"]:
        out.append(f"| {r['label']} | {r['unit']} | {fmt(r['steadyfs'])} | "
                   f"{fmt(r['sshfs'])} | {fmt(r['ratio'], 2)} | "
                   f"{fmt(r['pct_of_ceiling'], 0)} |")
    d = res["daemons"]
    for label, key, nd in (("peak RSS (VmHWM)", "peak_rss_mib", 1),
                           ("peak Pss, summed, sampled", "peak_pss_mib", 1),
                           ("CPU s per GiB (seq rows)", "cpu_seconds_per_gib", 2)):
        s, f = d["steadyfs"][key], d["sshfs"][key]
        ratio = s / f if s is not None and f else None
        unit = "s/GiB" if key == "cpu_seconds_per_gib" else "MiB"
        out.append(f"| {label} | {unit} | {fmt(s, nd)} | {fmt(f, nd)} | "
                   f"{fmt(ratio, 2)} | |")
    by_row = d["steadyfs"].get("peak_pss_mib_by_row", {})
    if by_row:
        out.append("")
        out.append("steadyfs peak Pss by row (MiB): " + ", ".join(
            f"{k} {v:.1f}" for k, v in by_row.items()))
        out.append("steadyfs Pss at its peak (MiB): " + ", ".join(
            f"{k} {v}" for k, v in d["steadyfs"]["pss_at_peak_mib"].items()))
    return "\n".join(out)


def preflight(build):
    """Why the bench cannot run here (None when it can): what `make demo`
    needs, plus sshfs."""
    if shutil.which("sshfs") is None:
        return "'sshfs' is missing (make deps)"
    return demo.preflight(build)


def pin_binary(build, workdir):
    """Copy steadyfs into the temp folder and mount that copy: a rebuild
    during the run (others work in the same tree) cannot change what is
    measured halfway. Returns (folder, git commit or None)."""
    shutil.copy2(os.path.join(build, "steadyfs"), os.path.join(workdir, "steadyfs"))
    r = subprocess.run(["git", "-C", os.path.dirname(TEST), "rev-parse",
                        "--short", "HEAD"], capture_output=True, text=True,
                       timeout=10)
    return workdir, (r.stdout.strip() or None)


def run(args, build, workdir):
    pinned, args.commit = pin_binary(build, workdir)
    os.environ["STEADYFS_BUILD"] = pinned
    become_subreaper()
    sshd = proxy = None
    results, transports = [], []
    try:
        sshd = sshdfix.Sshd(workdir).start()
        proxy = ProxyProcess(sshd.port)
        sshd.add_known_host(proxy.port)
        src = os.path.join(workdir, "ceiling.src")
        biggest = max(p["ceiling_mib"] for p in PROFILES + [SLOW_PROFILE])
        with open(src, "wb") as f:
            block = os.urandom(MIB)
            for _ in range(biggest):
                f.write(block)
        profiles = [p for p in PROFILES + [SLOW_PROFILE]
                    if p["name"] in args.profile]
        for prof in profiles:
            # The up ceiling reads the source file whole: trim it per profile.
            os.truncate(src, prof["ceiling_mib"] * MIB)
            res = run_profile(prof, sshd, proxy, workdir, args.reps, src,
                              args.rows)
            results.append(res)
            say()
            say(table(res))
        if args.transport:
            for prof in profiles:
                if prof["name"] not in TRANSPORT_SIZES:
                    continue
                say(f"\n== transport settings, {prof['name']} ==")
                res = transport_profile(prof, sshd, proxy, workdir, args.reps)
                transports.append(res)
                say(transport_table(res))
    finally:
        if proxy is not None:
            proxy.stop()
        if sshd is not None:
            sshd.stop()
    return results, transports


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--proxy-child":
        return proxy_child(int(sys.argv[2]))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(os.path.dirname(TEST), "build"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--slow", action="store_true",
                    help="add a +50 ms each way profile")
    ap.add_argument("--transport", action="store_true",
                    help="also measure each transport setting (steadyfs "
                    "alone, about 4 minutes more)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the temp folder (daemon logs)")
    ap.add_argument("--profile", default="",
                    help="comma-separated profiles to run (default: direct "
                    "and +10ms, and +50ms with --slow)")
    ap.add_argument("--rows", default=",".join(r[0] for r in ROWS),
                    help="comma-separated rows to run (default: all; "
                    "rename_unlink comes with small)")
    args = ap.parse_args()
    args.profile = set(args.profile.split(",")) if args.profile else \
        {p["name"] for p in PROFILES + ([SLOW_PROFILE] if args.slow else [])}
    args.rows = set(args.rows.split(","))
    if "readers" in args.rows:
        args.rows |= set(READER_ROWS)
    if "rename_unlink" in args.rows:
        args.rows.add("small")
    build = os.path.abspath(args.build)
    why = preflight(build)
    if why:
        print(f"bench: {why}", file=sys.stderr)
        return 2

    def expired(signum, frame):
        raise Failed(f"the bench took longer than {WATCHDOG} s")
    signal.signal(signal.SIGALRM, expired)
    signal.alarm(WATCHDOG)
    started = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="steadyfs-bench-")
    say(f"steadyfs bench (build {build}, temp folder {workdir}, "
        f"{args.reps} repetitions, medians; {os.cpu_count()} cores, loopback)")
    status = 1
    try:
        results, transports = run(args, build, workdir)
        out = os.path.join(build, "bench.json")
        with open(out, "w") as f:
            json.dump({"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                       "reps": args.reps, "cores": os.cpu_count(),
                       "commit": args.commit,
                       "load_after": os.getloadavg(),
                       "seconds": time.monotonic() - started,
                       "profiles": results,
                       "transport": transports}, f, indent=1)
        say(f"\nwrote {out}")
        status = 0
    except (Failed, mounts.MountError, sshdfix.SshdError, OSError) as e:
        say(f"\nFAILED: {e}")
    finally:
        signal.alarm(0)
        still = mounts.fuse_mounts_under(workdir)
        if still or args.keep or status:
            say(f"left {workdir} in place"
                + (f" (still mounted: {still})" if still else ""))
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    say(f"bench {'done' if status == 0 else 'FAILED'} in "
        f"{time.monotonic() - started:.0f} s")
    return status


if __name__ == "__main__":
    sys.exit(main())
