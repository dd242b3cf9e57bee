"""The independent suites `make conformance` runs, one function each.

Each `run_*(tools, mnt, scratch, logdir, args)` runs one suite in the
folder `scratch` (inside the mount `mnt`, a mounts.Mount), writes its raw
output under `logdir`, and returns a dict:

    {"total": N, "passed": N, "failed": N, "seconds": S,
     "groups": {name: {"total", "passed", "failed", "failures": [line...]}},
     "notes": [line...]}

`groups` is the unit a failure is reported by: a pjdfstest file, an fsx
seed, an fsstress operation, a fio job, a stress-ng stressor. The suites
are not changed: the verdicts are their own (prove's TAP lines, fsx's exit
status and its .fsxlog, fio's verify, stress-ng's pass/fail lines). fsstress
verifies nothing itself, so its verdict is the tree it leaves: every file
read back through the mount must equal the server's copy.

`tools` is a dict of built programs: pjdfstest (the checkout's folder, with
the built `pjdfstest` binary and `tests/`), fsx, fsstress.
"""

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import time

import demo


def _group(total=0, passed=0, failures=None):
    failures = failures or []
    return {"total": total, "passed": passed, "failed": total - passed,
            "failures": failures}


def _result(groups, seconds, notes=()):
    total = sum(g["total"] for g in groups.values())
    passed = sum(g["passed"] for g in groups.values())
    return {"total": total, "passed": passed, "failed": total - passed,
            "seconds": round(seconds, 1), "groups": groups,
            "notes": list(notes)}


def _run(cmd, cwd, log, timeout, env=None):
    """Run `cmd` with stdout+stderr to the file `log`; the exit status, or
    None when it timed out (then the whole process group is killed)."""
    with open(log, "wb") as out:
        p = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True,
                             env=env)
        try:
            return p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, 9)
            p.wait()
            return None


# ---- pjdfstest ---------------------------------------------------------------

PROVE_FILE = re.compile(r"^(\S+\.t) \.+ ?(.*)$")
TAP_PLAN = re.compile(r"^1\.\.(\d+)")
TAP_OK = re.compile(r"^ok \d+")
TAP_NOT_OK = re.compile(r"^not ok \d+.*")


def shorten(line, names):
    """A TAP failure line without pjdfstest's random names: each
    `pjdfstest_` plus 32 hex digits becomes n1, n2, ... in the order the
    file's failures first name it (`names` keeps that map for one test
    file), a run of long hex path components (the PATH_MAX tests)
    <long name>; at most 300 characters."""
    def short(m):
        return names.setdefault(m.group(0), f"n{len(names) + 1}")
    line = re.sub(r"pjdfstest_[0-9a-f]{32}", short, line)
    line = re.sub(r"[0-9a-f]{40,}(/[0-9a-f]{40,})*x?", "<long name>", line)
    return line[:300]


def parse_prove(text, testsdir):
    """Per test file: planned tests, ok lines, and the "not ok" lines, from
    `prove -v` output. A test that never ran (a script that died) counts
    as failed: passed is the ok lines, total the plan."""
    groups, cur = {}, None
    for line in text.splitlines():
        m = PROVE_FILE.match(line)
        if m and m.group(1).startswith(testsdir):
            cur = os.path.relpath(m.group(1), testsdir)
            groups[cur] = {"plan": 0, "ok": 0, "failures": [], "names": {}}
            line = m.group(2)
        if cur is None:
            continue
        if TAP_PLAN.match(line):
            groups[cur]["plan"] = int(TAP_PLAN.match(line).group(1))
        elif TAP_OK.match(line):
            groups[cur]["ok"] += 1
        elif TAP_NOT_OK.match(line):
            groups[cur]["failures"].append(shorten(line.strip(),
                                                   groups[cur]["names"]))
    out = {}
    for name, g in groups.items():
        total = max(g["plan"], g["ok"] + len(g["failures"]))
        out[name] = _group(total, g["ok"], g["failures"])
    return out


def run_pjdfstest(tools, mnt, scratch, logdir, args):
    """`prove -rv TESTS` from inside the mount, as root (pjdfstest's tests
    switch users themselves)."""
    testsdir = os.path.join(tools["pjdfstest"], "tests")
    log = os.path.join(logdir, "pjdfstest.log")
    t0 = time.monotonic()
    rc = _run(["prove", "-r", "-v", f"-j{args.pjd_jobs}", testsdir], scratch, log,
              timeout=args.pjd_timeout)
    with open(log, errors="replace") as f:
        groups = parse_prove(f.read(), testsdir)
    notes = [] if rc is not None else [f"prove timed out after {args.pjd_timeout} s"]
    return _result(groups, time.monotonic() - t0, notes)


# ---- fsx -----------------------------------------------------------------------

def _fsx_failure(out_text, fsxlog):
    """The lines that say why fsx stopped, and, as context, the last
    operations it logged (its .fsxlog ends with the failing one)."""
    lines = [l for l in out_text.splitlines()
             if re.search(r"\b(error|mismatch|bad|failed|expected|short)\b",
                          l, re.IGNORECASE)][:6]
    ops = []
    if os.path.exists(fsxlog):
        with open(fsxlog, errors="replace") as f:
            ops = [l.rstrip() for l in f if re.match(r"^\d+\(", l.strip())]
    return lines, ops[-4:]


def run_fsx(tools, mnt, scratch, logdir, args):
    """fsx with its default operations, one run per seed, in the mount."""
    groups, notes = {}, set()
    t0 = time.monotonic()
    for seed in args.fsx_seeds:
        name = f"fsx.{seed}"
        log = os.path.join(logdir, f"{name}.out")
        rc = _run([tools["fsx"], "-N", str(args.fsx_ops), "-S", str(seed),
                   "-P", logdir, os.path.join(scratch, name)], scratch, log,
                  timeout=args.fsx_timeout)
        with open(log, errors="replace") as f:
            text = f.read()
        # fsx turns operations off by itself when the filesystem refuses
        # them (fallocate modes, clone/dedupe/copy/exchange range, ...).
        for l in text.splitlines():
            if "disabling" in l or "not supported" in l.lower():
                notes.add(re.sub(r"^\S+: ", "", l.strip()))
        if rc == 0:
            groups[f"seed {seed}"] = _group(1, 1)
            continue
        why, ops = ["timed out"], []
        if rc is not None:
            why, ops = _fsx_failure(text, os.path.join(logdir, f"{name}.fsxlog"))
        if rc is not None and rc < 0:
            # Killed (SIGBUS from a mapped access past a wrong EOF): no
            # log dump; `fsx -d` prints the operations as they go.
            why.insert(0, f"killed by {signal.Signals(-rc).name}")
        groups[f"seed {seed}"] = dict(_group(1, 0, why or [f"exit status {rc}"]),
                                      context=ops)
    return _result(groups, time.monotonic() - t0, sorted(notes))


# ---- fsstress ------------------------------------------------------------------

FSSTRESS_OP = re.compile(r"^\d+/\d+: (\w+)\b.*\s(-?\d+)$")


def _tree(root):
    """{relative path: (type, size, sha256 or link target)} of a folder;
    a path that cannot be read maps to its error."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            try:
                st = os.lstat(p)
                if stat.S_ISREG(st.st_mode):
                    out[rel] = ("file", st.st_size, demo.sha256_file(p))
                elif stat.S_ISLNK(st.st_mode):
                    out[rel] = ("link", 0, os.readlink(p))
                elif stat.S_ISDIR(st.st_mode):
                    out[rel] = ("dir", 0, "")
                else:
                    out[rel] = ("other", 0, "")
            except OSError as e:
                out[rel] = ("error", 0, os.strerror(e.errno))
    return out


def _fsync_all(root):
    """fsync every regular file under `root`; the errors, one line each."""
    errors = []
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            p = os.path.join(dirpath, name)
            try:
                if not stat.S_ISREG(os.lstat(p).st_mode):
                    continue
                fd = os.open(p, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as e:
                errors.append(f"{os.path.relpath(p, root)}: {os.strerror(e.errno)}")
    return errors


def compare_trees(local, remote):
    """Lines naming each path whose view through the mount differs from
    the server's copy (missing, extra, other type, size or bytes)."""
    def show(e):
        if e is None:
            return "missing"
        kind, size, what = e
        return {"file": f"{size} bytes sha256 {what[:12]}",
                "link": f"link to {what}"}.get(kind, f"{kind} {what}".strip())
    diffs = []
    for rel in sorted(set(local) | set(remote)):
        a, b = local.get(rel), remote.get(rel)
        if a != b:
            diffs.append(f"{rel}: mount {show(a)}, server {show(b)}")
    return diffs


def run_fsstress(tools, mnt, scratch, logdir, args):
    """fsstress -p PROCS -n OPS per seed; then, after an fsync of every
    file, the tree read through the mount must equal the server's. Its per-operation outcomes (0 or an
    errno, from -v) are tallied into the notes: EIO there is a finding."""
    groups, tally = {}, {}
    t0 = time.monotonic()
    remote_scratch = os.path.join(mnt.sshd.remote_dir,
                                  os.path.relpath(scratch, mnt.mountpoint))
    for seed in args.fsstress_seeds:
        d = os.path.join(scratch, f"s{seed}")
        log = os.path.join(logdir, f"fsstress.{seed}.out")
        rc = _run([tools["fsstress"], "-d", d, "-n", str(args.fsstress_ops),
                   "-p", str(args.fsstress_procs), "-s", str(seed), "-v"],
                  scratch, log, timeout=args.fsstress_timeout)
        eio = []
        with open(log, errors="replace") as f:
            for line in f:
                m = FSSTRESS_OP.match(line.strip())
                if m:
                    op, err = m.group(1), int(m.group(2))
                    tally.setdefault(op, {}).setdefault(err, 0)
                    tally[op][err] += 1
                    if err == 5 and len(eio) < 5:
                        eio.append("EIO: " + line.strip())
                elif line.rstrip().endswith("Bus error") and len(eio) < 5:
                    # A mapped access past the end the kernel was told.
                    eio.append("SIGBUS: " + line.strip())
        failures = []
        if rc != 0:
            failures.append("timed out" if rc is None else f"exit status {rc}")
        failures += eio
        if mnt.alive() and mnt.is_mounted():
            # What fsync promises, not what is still in flight, is compared.
            failures += [f"fsync: {e}" for e in _fsync_all(d)][:5]
            failures += compare_trees(_tree(d), _tree(os.path.join(
                remote_scratch, f"s{seed}")))[:10]
        else:
            failures.append("the mount died")
        groups[f"seed {seed}"] = _group(1, 0 if failures else 1, failures)
    notes = [f"{op}: " + ", ".join(f"{'ok' if e == 0 else os.strerror(-e) if e < 0 else os.strerror(e)} x{n}"
                                   for e, n in sorted(errs.items()))
             for op, errs in sorted(tally.items())]
    return _result(groups, time.monotonic() - t0, notes)


# ---- fio -----------------------------------------------------------------------

FIO_JOBS = {"seq-write-4k": "write", "rand-write-4k": "randwrite"}


def run_fio(tools, mnt, scratch, logdir, args):
    """fio 4 KiB writes, sequential and random, each block verified with
    crc32c when read back (--verify_fatal: the first bad block fails)."""
    groups = {}
    t0 = time.monotonic()
    for job, rw in FIO_JOBS.items():
        out = os.path.join(logdir, f"fio.{job}.json")
        log = os.path.join(logdir, f"fio.{job}.log")
        rc = _run(["fio", f"--name={job}", f"--directory={scratch}",
                   f"--rw={rw}", "--bs=4k", f"--size={args.fio_size}",
                   "--ioengine=psync", "--verify=crc32c", "--do_verify=1",
                   "--verify_fatal=1", "--end_fsync=1", "--randseed=1",
                   "--output-format=json", f"--output={out}"],
                  scratch, log, timeout=args.fio_timeout)
        failures = []
        try:
            with open(out) as f:
                text = f.read()
            data = json.loads(text[text.index("{"):])
            for j in data.get("jobs", []):
                if j.get("error"):
                    failures.append(f"job error {j['error']} "
                                    f"({os.strerror(j['error'])})")
        except (OSError, ValueError) as e:
            failures.append(f"no fio result: {e}")
        if rc != 0:
            failures.append("timed out" if rc is None else f"exit status {rc}")
            with open(log, errors="replace") as f:
                failures += [l.strip() for l in f if "verify" in l or
                             "error" in l.lower()][:5]
        groups[job] = _group(1, 0 if failures else 1, failures)
    return _result(groups, time.monotonic() - t0)


# ---- stress-ng -----------------------------------------------------------------

STRESSORS = ("symlink", "filename", "rename", "dir", "link", "hdd")
STRESS_LINE = re.compile(r"(passed|failed|skipped|untrustworthy|metrics untrustworthy):"
                         r" (\d+)")
STRESS_METRIC = re.compile(r"metrc: \[\d+\] (\w+)\s+(\d+)\s+([\d.]+)")


def run_stressng(tools, mnt, scratch, logdir, args):
    """Each filesystem stressor on its own, `--verify`, in the mount; its
    verdict is stress-ng's: exit status 0, no failed instance and no
    "fail:" line (some stressors log a failed check and still exit 0)."""
    groups, notes = {}, []
    t0 = time.monotonic()
    for s in STRESSORS:
        d = os.path.join(scratch, s)
        os.makedirs(d, exist_ok=True)
        log = os.path.join(logdir, f"stress-ng.{s}.log")
        cmd = ["stress-ng", f"--{s}", str(args.stress_instances),
               "--temp-path", d, "--timeout", f"{args.stress_seconds}s",
               "--verify", "--metrics-brief"]
        if s == "hdd":
            cmd += ["--hdd-bytes", args.stress_hdd_bytes]
        rc = _run(cmd, d, log, timeout=args.stress_seconds * 4 + 60)
        with open(log, errors="replace") as f:
            text = f.read()
        counts = {k: int(n) for k, n in STRESS_LINE.findall(text)}
        failures = []
        if rc != 0:
            failures.append("timed out" if rc is None else f"exit status {rc}")
        if counts.get("failed"):
            failures.append(f"{counts['failed']} instance(s) failed")
        if counts.get("skipped"):
            failures.append(f"{counts['skipped']} instance(s) skipped")
        # A "fail:" line is a failure even when stress-ng exits 0.
        fails = [l.strip() for l in text.splitlines() if " fail: " in l]
        if fails:
            failures.append(f"{len(fails)} fail: line(s)")
        if "unsuccessful run" in text and not failures:
            failures.append("stress-ng: unsuccessful run")
        failures += sorted(set(re.sub(r"\[\d+\] ", "", l) for l in fails))[:5]
        groups[s] = _group(1, 0 if failures else 1, failures)
        for name, ops, secs in STRESS_METRIC.findall(text):
            if name == s:
                notes.append(f"{s}: {ops} bogo ops in {secs} s")
        shutil.rmtree(d, ignore_errors=True)
    return _result(groups, time.monotonic() - t0, notes)


SUITES = {"pjdfstest": run_pjdfstest, "fsx": run_fsx,
          "fsstress": run_fsstress, "fio": run_fio, "stress-ng": run_stressng}
