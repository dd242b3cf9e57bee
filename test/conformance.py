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
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import conformance_report  # noqa: E402
import conformance_suites  # noqa: E402
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


def mount(kind, sshd, workdir):
    opts = dict(MOUNT_OPTS)
    if kind == "steadyfs":
        opts["op_timeout"] = None  # the daemon's default, not the tests' 4 s
        return mounts.mount_steadyfs(sshd, opts=opts, expect_errors=True,
                                     workdir=workdir)
    return mounts.mount_sshfs(sshd, opts=opts, workdir=workdir)


def run_one(kind, suite, sshd, tools, args, logroot):
    """One suite on one fresh mount; its result dict, with the mount's
    stderr tail when the daemon died under it."""
    logdir = os.path.join(logroot, kind, suite)
    os.makedirs(logdir, exist_ok=True)
    m = mount(kind, sshd, sshd.workdir)
    try:
        scratch = m.path(f"{suite}-{kind}")
        os.makedirs(scratch)
        print(f"conformance: {suite} on {kind} ...", flush=True)
        res = conformance_suites.SUITES[suite](tools, m, scratch, logdir, args)
        if not m.alive():
            res["notes"].append(f"{kind} exited during the run: "
                                + m.stderr_text()[-500:])
    finally:
        m.cleanup()
        m.remove_mirror()
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
    out = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
           "args": {k: v for k, v in vars(args).items()
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
