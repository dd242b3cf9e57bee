"""Memory of a group of processes as the machine pays for it: the sum of
their Pss (proportional set size), sampled while a workload runs.

RSS counts a page once per process that maps it, so the take-over memfd
steadyfs's keeper and daemon both map counts twice in a sum of RSS (and
VmHWM). Pss splits each shared page between the processes mapping it, so
the sum over keeper + daemon counts it once. The kernel keeps no peak of
Pss: a thread samples /proc/PID/smaps_rollup every `interval` seconds and
keeps the largest sum, per label (`mark()` names the workload running),
and, at each new overall peak, where the memory is (`breakdown()` of
/proc/PID/smaps).

    sampler = PssSampler(lambda: [keeper, daemon]).start()
    sampler.mark("seq_write"); ...; sampler.stop()
    sampler.peak_kib, sampler.peaks_kib["seq_write"], sampler.at_peak
"""

import threading
import time

KIB_PER_MIB = 1024
# glibc's default thread stack (ulimit -s 8192): an anonymous rw mapping
# of this size right above a one-page PROT_NONE guard.
STACK_KIB = 8192


def proc_kib(pid, name, key):
    """The "KEY: N kB" line of /proc/PID/NAME, in KiB (0 when gone)."""
    try:
        with open(f"/proc/{pid}/{name}") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kib(pid):
    """Pss of one process in KiB (0 when it is gone)."""
    return proc_kib(pid, "smaps_rollup", "Pss")


def _category(name, perms, size_kib, after_guard):
    if name.startswith("/memfd:steadyfs-keepstate"):
        return "take-over memfd"
    if name.startswith("/memfd:"):
        return "other memfd"
    if name.startswith("/"):
        return "binary and libraries"
    if name == "[heap]":
        return "main heap"
    if name == "[stack]":
        return "thread stacks"
    if name:
        return "kernel ([vdso], ...)"
    if after_guard and size_kib == STACK_KIB and perms.startswith("rw"):
        return "thread stacks"
    return "other anonymous (malloc arenas, big buffers)"


def breakdown(pid):
    """{category: Pss KiB} of one process from /proc/PID/smaps; thread
    stacks are told from other anonymous memory by their shape (8 MiB
    right above a one-page guard)."""
    out = {}
    try:
        with open(f"/proc/{pid}/smaps") as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    cat, prev_end, prev_guard, guard = None, None, False, False
    for line in lines:
        head = line.split(None, 5)
        if len(head) >= 5 and "-" in head[0] and len(head[1]) == 4:
            start, end = (int(x, 16) for x in head[0].split("-"))
            name = head[5].strip() if len(head) > 5 else ""
            size_kib = (end - start) // 1024
            after_guard = prev_guard and prev_end == start
            cat = _category(name, head[1], size_kib, after_guard)
            guard = head[1].startswith("---") and not name and size_kib <= 64
            prev_end, prev_guard = end, guard
        elif line.startswith("Pss:") and cat is not None:
            out[cat] = out.get(cat, 0) + int(line.split()[1])
    return out


class PssSampler:
    """Samples the summed Pss of the processes `pids()` names."""

    def __init__(self, pids, interval=0.1):
        self.pids = pids
        self.interval = interval
        self.peak_kib = 0
        self.peaks_kib = {}
        self.at_peak = {}          # {pid: {category: KiB}} at the peak
        self.label = None
        self.samples = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def mark(self, label):
        """The workload running from now on (its own peak is kept)."""
        with self._lock:
            self.label = label

    def _sample(self):
        pids = self.pids()
        total = sum(pss_kib(p) for p in pids)
        with self._lock:
            self.samples += 1
            if self.label is not None:
                self.peaks_kib[self.label] = max(self.peaks_kib.get(self.label, 0), total)
            new_peak = total > self.peak_kib
            if new_peak:
                self.peak_kib = total
        if new_peak:
            self.at_peak = {p: breakdown(p) for p in pids}

    def _run(self):
        while not self._stop.is_set():
            t0 = time.monotonic()
            self._sample()
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - t0)))

    def stop(self):
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=10)
        self._sample()   # the end state counts too

    def figures(self):
        """Peaks in MiB and the breakdown at the overall peak (summed over
        the processes, MiB per category)."""
        cats = {}
        for per_pid in self.at_peak.values():
            for c, kib in per_pid.items():
                cats[c] = cats.get(c, 0) + kib
        return {"peak_pss_mib": self.peak_kib / KIB_PER_MIB,
                "peak_pss_mib_by_row": {k: v / KIB_PER_MIB
                                        for k, v in self.peaks_kib.items()},
                "pss_at_peak_mib": {c: round(kib / KIB_PER_MIB, 1)
                                    for c, kib in sorted(cats.items())},
                "pss_samples": self.samples}
