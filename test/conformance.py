"""`make conformance`: independent suites on steadyfs and sshfs, side by side.

    /usr/bin/python3 test/conformance.py --build build --tools build/conformance
        [--fs steadyfs,sshfs] [--suites pjdfstest,fsx,fsstress,fio,stress-ng]
        [--fsx-ops 100000] [--fsx-seeds 1-5] [--doc docs/conformance.md]

Starts one throwaway OpenSSH sshd on 127.0.0.1 (test/sshdfix.py). For each
suite, then for each filesystem, it mounts that filesystem over the same
server (test/mounts.py) with allow_other,default_permissions (steadyfs
otherwise with its defaults, op_timeout 20 s), runs the suite in a folder
of its own inside the mount (test/conformance_suites.py), and unmounts: a
filesystem that dies in one suite does not spoil the next. The suites'
own verdicts are kept; nothing is retried.

With --fsx-cut SECS/EVERY (e.g. 0.5/4) fsx runs on steadyfs through the
project's fault proxy (test/faultproxy.py), which cuts the link (resets
every connection and refuses new ones) for SECS seconds every EVERY
seconds while fsx runs; sshfs, which cannot survive a cut, runs fsx
without them. The daemon's own counters (reconnects, errors, lost bytes,
from .control/status.json) are kept beside the verdict, and any error it
reports fails the run. --op-timeout sets steadyfs's op_timeout for every
mount of the run (default: the daemon's own default).

Writes RESULTS/results.json (every group's failures, the raw logs beside
it) and, with --doc, the report (test/conformance_report.py). The suites
are built by the Makefile from a checkout of pjd/pjdfstest and
kdave/xfstests (PEERS_DIR); --tools names the folder they were built in.

Exit status 0 when every suite ran (failures are the report's subject,
not an error), 1 when something could not run, 2 when this machine cannot
run it (not root, no /dev/fuse, a tool missing).
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import conformance_report  # noqa: E402
import conformance_suites  # noqa: E402
import faultproxy  # noqa: E402
import mounts  # noqa: E402
import sshdfix  # noqa: E402

FILESYSTEMS = ("steadyfs", "sshfs")
MOUNT_OPTS = {"allow_other": True, "default_permissions": True}


def seeds(text):
    """"1-5,7" -> [1, 2, 3, 4, 5, 7]."""
    out = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += range(int(lo), int(hi or lo) + 1)
    return out


def cut_schedule(text):
    """"0.5/4" -> (0.5, 4.0): cut for 0.5 s every 4 s."""
    secs, _, every = text.partition("/")
    secs, every = float(secs), float(every)
    if not 0 < secs < every:
        raise argparse.ArgumentTypeError(f"'{text}': want SECS/EVERY, 0 < SECS < EVERY")
    return secs, every


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--build", required=True, help="steadyfs build folder")
    p.add_argument("--tools", required=True,
                   help="folder holding the built pjdfstest/ and xfstests/")
    p.add_argument("--results", help="folder for results.json and logs "
                   "(default TOOLS/results)")
    p.add_argument("--doc", help="write the markdown report here")
    p.add_argument("--fs", default=",".join(FILESYSTEMS))
    p.add_argument("--suites", default=",".join(conformance_suites.SUITES))
    p.add_argument("--fsx-ops", type=int, default=100000)
    p.add_argument("--fsx-seeds", type=seeds, default=seeds("1-5"))
    p.add_argument("--fsx-timeout", type=int, default=900)
    p.add_argument("--fsx-cut", type=cut_schedule, metavar="SECS/EVERY",
                   help="run fsx on steadyfs through a fault proxy that cuts "
                   "the link for SECS every EVERY seconds")
    p.add_argument("--op-timeout", type=int,
                   help="steadyfs's op_timeout (default: the daemon's)")
    p.add_argument("--fsstress-ops", type=int, default=2000)
    p.add_argument("--fsstress-procs", type=int, default=4)
    p.add_argument("--fsstress-seeds", type=seeds, default=seeds("1-2"))
    p.add_argument("--fsstress-timeout", type=int, default=900)
    p.add_argument("--fio-size", default="64m")
    p.add_argument("--fio-timeout", type=int, default=900)
    p.add_argument("--stress-seconds", type=int, default=20)
    p.add_argument("--stress-instances", type=int, default=2)
    p.add_argument("--stress-hdd-bytes", default="32m")
    p.add_argument("--pjd-timeout", type=int, default=3600)
    p.add_argument("--pjd-jobs", type=int, default=1,
                   help="test files prove runs at once (prove -j)")
    return p.parse_args(argv)


def tools_of(args):
    """The built programs; exits 2 naming what is missing."""
    tools = {"pjdfstest": os.path.join(args.tools, "pjdfstest"),
             "fsx": os.path.join(args.tools, "xfstests", "ltp", "fsx"),
             "fsstress": os.path.join(args.tools, "xfstests", "ltp", "fsstress")}
    need = {"pjdfstest": [os.path.join(tools["pjdfstest"], "pjdfstest"), "prove"],
            "fsx": [tools["fsx"]], "fsstress": [tools["fsstress"]],
            "fio": ["fio"], "stress-ng": ["stress-ng"]}
    missing = [prog for s in args.suites for prog in need[s]
               if not (shutil.which(prog) or os.access(prog, os.X_OK))]
    if missing:
        print(f"conformance: missing {', '.join(missing)} "
              "(make conformance builds them)", file=sys.stderr)
        sys.exit(2)
    return tools


def mount(kind, sshd, workdir, args, port=None):
    opts = dict(MOUNT_OPTS)
    if kind == "steadyfs":
        # The daemon's default unless asked, not the tests' 4 s.
        opts["op_timeout"] = args.op_timeout
        return mounts.mount_steadyfs(sshd, opts=opts, expect_errors=True,
                                     workdir=workdir, port=port)
    return mounts.mount_sshfs(sshd, opts=opts, workdir=workdir)


class Cutter:
    """Cuts `proxy` for `secs` every `every` seconds from start() to
    stop(); `cuts` counts the cuts made. The link is whole again after
    stop()."""

    def __init__(self, proxy, secs, every):
        self.proxy, self.secs, self.every = proxy, secs, every
        self.cuts = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.done.wait(self.every - self.secs):
            self.proxy.cut()
            self.cuts += 1
            self.done.wait(self.secs)
            self.proxy.restore()

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.done.set()
        self.thread.join()
        self.proxy.restore()


def daemon_counters(m):
    """What steadyfs counted: {} when its status cannot be read."""
    try:
        with open(m.path(".control", "status.json")) as f:
            st = json.load(f)
    except (OSError, ValueError):
        return {}
    return {k: st.get(k) for k in ("reconnects", "reconnect_attempts",
                                   "last_error", "data_lost_bytes",
                                   "data_replayed_bytes")}


def cut_verdict(res, cutter, before, after, args):
    """The fsx result under cuts, with what the daemon saw: a note with the
    schedule and counters, and a failed group when it reported an error."""
    secs, every = args.fsx_cut
    res["notes"].append(
        f"link cut {cutter.cuts} time{'' if cutter.cuts == 1 else 's'}, {secs:g} s every {every:g} s "
        f"(test/faultproxy.py), op_timeout="
        f"{args.op_timeout if args.op_timeout else 'default (20)'}; the daemon "
        f"counted {after.get('reconnects', 0) - before.get('reconnects', 0)} "
        f"reconnects, {after.get('data_replayed_bytes', 0) - before.get('data_replayed_bytes', 0)} "
        f"bytes replayed, {after.get('data_lost_bytes', 0)} lost, last error: "
        f"{json.dumps(after.get('last_error')) if after else 'status unreadable'}")
    bad = [] if after else ["could not read .control/status.json"]
    if after.get("last_error"):
        bad.append(f"steadyfs reported an error: {json.dumps(after['last_error'])}")
    if after.get("data_lost_bytes"):
        bad.append(f"steadyfs lost {after['data_lost_bytes']} bytes")
    if cutter.cuts == 0:
        bad.append("the run ended before the first cut")
    if bad:
        res["groups"]["errors under cuts"] = conformance_suites._group(1, 0, bad)
        res["total"] += 1
        res["failed"] += 1


def run_one(kind, suite, sshd, tools, args, logroot):
    """One suite on one fresh mount; its result dict, with the mount's
    stderr tail when the daemon died under it."""
    logdir = os.path.join(logroot, kind, suite)
    os.makedirs(logdir, exist_ok=True)
    proxy = cutter = None
    if args.fsx_cut and suite == "fsx" and kind == "steadyfs":
        proxy = faultproxy.FaultProxy(sshd.host, sshd.port).start()
    try:
        m = mount(kind, sshd, sshd.workdir, args, proxy and proxy.port)
    except BaseException:
        if proxy:
            proxy.stop()
        raise
    try:
        scratch = m.path(f"{suite}-{kind}")
        os.makedirs(scratch)
        print(f"conformance: {suite} on {kind} "
              f"{'with cuts ' if proxy else ''}...", flush=True)
        if proxy:
            before = daemon_counters(m)
            cutter = Cutter(proxy, *args.fsx_cut).start()
        try:
            res = conformance_suites.SUITES[suite](tools, m, scratch, logdir, args)
        finally:
            if cutter:
                cutter.stop()
        if cutter:
            cut_verdict(res, cutter, before, daemon_counters(m), args)
        if not m.alive():
            res["notes"].append(f"{kind} exited during the run: "
                                + m.stderr_text()[-500:])
    finally:
        m.cleanup()
        m.remove_mirror()
        if proxy:
            proxy.stop()
        shutil.copy(m.stderr_path, os.path.join(logdir, f"{kind}.stderr"))
    print(f"conformance: {suite} on {kind}: {res['passed']}/{res['total']} "
          f"passed in {res['seconds']:.0f} s", flush=True)
    return res


def main(argv=None):
    args = parse_args(argv)
    args.fs = args.fs.split(",")
    args.suites = args.suites.split(",")
    if os.geteuid() != 0 or not mounts.fuse_available():
        print("conformance: needs root and /dev/fuse", file=sys.stderr)
        return 2
    os.environ["STEADYFS_BUILD"] = os.path.abspath(args.build)
    args.tools = os.path.abspath(args.tools)
    tools = tools_of(args)
    results_dir = os.path.abspath(args.results or
                                  os.path.join(args.tools, "results"))
    shutil.rmtree(results_dir, ignore_errors=True)
    os.makedirs(results_dir)
    work = tempfile.mkdtemp(prefix="conformance-", dir="/tmp")
    # Every file of the run is written through the mounts into this
    # folder; pjdfstest's uid switches need it reachable by everyone.
    os.chmod(work, 0o755)
    sshd = sshdfix.Sshd(work).start()
    t0 = time.monotonic()
    settings = dict(vars(args))
    if args.fsx_cut:
        settings["fsx_cut"] = "%g/%g" % args.fsx_cut
    out = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
           "args": {k: v for k, v in settings.items()
                    if isinstance(v, (int, str, list))},
           "results": {}}
    rc = 0
    try:
        for suite in args.suites:
            for kind in args.fs:
                try:
                    res = run_one(kind, suite, sshd, tools, args, results_dir)
                except (OSError, mounts.MountError) as e:
                    print(f"conformance: {suite} on {kind} could not run: {e}",
                          file=sys.stderr)
                    res = {"error": str(e)}
                    rc = 1
                out["results"].setdefault(suite, {})[kind] = res
                out["seconds"] = round(time.monotonic() - t0)
                with open(os.path.join(results_dir, "results.json"), "w") as f:
                    json.dump(out, f, indent=1)
    finally:
        sshd.stop()
        shutil.rmtree(work, ignore_errors=True)
    if args.doc:
        conformance_report.write(out, args.doc)
        print(f"conformance: wrote {args.doc}")
    print(f"conformance: results in {results_dir}/results.json "
          f"({out.get('seconds', 0)} s)")
    return rc


if __name__ == "__main__":
    sys.exit(main())
