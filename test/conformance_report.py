"""docs/conformance.md from a `make conformance` results.json.

`write(out, path)` renders, between two marker lines of `path` (the
hand-written analysis around them stays), the totals per suite and filesystem, the
failures per group (pjdfstest file, fsx seed, ...), and a verdict for each
steadyfs failure from CLASSES: a limit of SFTP v3, a limit of OpenSSH's
server, or fixable in steadyfs. A failure no class matches is listed as
"not classified": the table of classes grows when a run shows one.

    /usr/bin/python3 test/conformance_report.py RESULTS.json DOC.md
"""

import json
import os
import re
import sys

SFTP = "limit of SFTP v3"
OPENSSH = "limit of OpenSSH's server"
FIXABLE = "fixable in steadyfs"
TODO = "pjdfstest's own TODO"
UNKNOWN = "not classified: to investigate"

# name: (verdict, why). The report prints this table; classify_group() picks.
CLASSES = {
    "open unlinked file": (FIXABLE,
        "fstat of an open file after unlink shows nlink 1: the file is not "
        "hidden (issue 14 part A)"),
    "no special files": (SFTP,
        "no SFTP v3 request makes a FIFO, a device node or a socket "
        "(mkfifo, mknod, bind fail: ENOSYS on steadyfs, EPERM on sshfs)"),
    "after a missing special file": (SFTP,
        "the later steps of a test whose FIFO, device or socket could not "
        "be made (ENOENT, or a wrong EEXIST/ENOTDIR/ENOTEMPTY verdict)"),
    "PATH_MAX paths": (SFTP,
        "SFTP names a file by its whole path on the server, so a path of "
        "PATH_MAX bytes under the mount is longer than PATH_MAX there "
        "(ENAMETOOLONG since issue 14 finding 7's fix, ENOMEM before)"),
    "set-id bits and umask at create": (OPENSSH,
        "OpenSSH's sftp-server creates with open()/mkdir() under its own "
        "umask (022; `sftp-server -u 0` lifts it), and writes as its login "
        "user, so a write by another uid does not clear set-id bits"),
    "one server identity": (SFTP,
        "every request runs as the server's one login user: a file is "
        "created owned by it whatever the caller's uid, so the kernel's "
        "checks (default_permissions) refuse the caller owner-only calls "
        "(chmod, chown, truncate, link in a sticky folder ...)"),
    "no link count or inode": (SFTP,
        "v3 attributes carry no link count and no inode number: a file's "
        "nlink is 1 and a folder's 2 whatever links or subfolders it has, "
        "and two names of one file show two inode numbers"),
    "whole-second times and no ctime": (SFTP,
        "v3 times are 32-bit whole seconds and there is no ctime: "
        "nanoseconds, times past 2106 and ctime ordering checks fail"),
    "symlink times": (FIXABLE,
        "SETSTAT follows symlinks: utimensat/lchown of a link change its "
        "target; lsetstat@openssh.com (negotiated, unused) would not"),
    "rename over a non-empty folder": (FIXABLE,
        "the server's generic failure is answered EIO; ENOTEMPTY is what "
        "the caller should see"),
    "fsx size after truncate": (FIXABLE,
        "a stale size survives a truncate down (issue 14 finding 2)"),
    "SIGBUS in a mapped write": (UNKNOWN + " (sshfs too)",
        "fsstress's mwrite got SIGBUS: the kernel's size for the file "
        "became smaller than the mapping (seen on sshfs as well, less "
        "often); probably the hard-link size problem below, not shown"),
    "size of a hard link": (FIXABLE,
        "after an fsync of every file, a file reads as the server's copy "
        "but stat shows a larger size: a hard link whose other name was "
        "truncated keeps the end it wrote itself"),
    "pjdfstest TODO": (TODO,
        "a `not ok # TODO` line: behaviour pjdfstest itself marks as "
        "expected to differ on Linux"),
}

# (class, group regex, line regex), first match wins.
RULES = [
    ("pjdfstest TODO", r"", r"# TODO"),
    ("open unlinked file", r"^unlink/14\.t$", r"nlink"),
    ("PATH_MAX paths", r"", r"<long name>"),
    ("symlink times", r"^utimensat/05\.t$", r""),
    ("rename over a non-empty folder", r"^rename/20\.t$", r"got EIO"),
    ("set-id bits and umask at create", r"^chmod/12\.t$", r""),
    # (an inode where ENOENT was expected is a refused rename's leftover)
    # (a file at the longest path could not be made: the rest follows)
    ("PATH_MAX paths", r"^\w+/03\.t$", r"got ENOENT$"),
    ("no link count or inode", r"", r"^(?!.*expected ENOENT).*\b(nlink|inode)\b"),
    ("one server identity", r"", r"-u \d+|uid,gid|-- l?chown"),
    ("whole-second times and no ctime", r"", r"_ns'|4294967296|time'|^not ok \d+$"),
    ("fsx size after truncate", r"^fsx ", r"Size error|SIGBUS"),
    ("size of a hard link", r"^fsstress ", r": mount \d+ bytes"),
    ("SIGBUS in a mapped write", r"^fsstress ", r"^SIGBUS: "),
]

NAME = re.compile(r"\bn\d+(?:/n\d+)*|<long name>")
MODES = re.compile(r"expected (?:\w+,)?0?([0-7]{3,4}), got (?:\w+,)?0?([0-7]{3,4})$")


def _umask_only(line):
    """A mode that differs from the one asked for by the server's umask
    (022) alone."""
    m = MODES.search(line)
    if not m:
        return False
    want, got = int(m.group(1), 8), int(m.group(2), 8)
    return want != got and want & ~0o022 == got


TESTNO = re.compile(r"^not ok (\d+)")
# How many tests after a failed mkfifo/mknod/bind still work on its name:
# pjdfstest's loops over file types take about this many per type.
CASCADE_SPAN = 10


def classify_group(group, failures):
    """The class of each failure line of one group, in order. After a
    FIFO/device/socket could not be made, a line that gets ENOENT follows
    from that failure, and so does, shortly after, one that names it (or
    a folder above it) and gets neither a permission error nor a file
    where ENOENT was expected (that is a refused rename's leftover)."""
    missing, since, out = set(), -CASCADE_SPAN - 1, []
    # Targets of a rename whose missing source got ENOENT: the test
    # expects there the "inode" it read from the missing file, ENOENT.
    stand_ins = set()
    refused = -3  # the last rename refused to a test's other uid
    for line in failures:
        cls = None
        m = TESTNO.match(line)
        num = int(m.group(1)) if m else 0
        if re.search(r"-u \d+ .*rename .*expected 0, got (EACCES|EPERM)$", line):
            refused = num
        names = NAME.findall(line.split(", expected")[0])
        if re.search(r"tried '[^']*\b(mkfifo|mknod|bind) ", line):
            cls = "no special files"
            if num - since > CASCADE_SPAN:
                missing, stand_ins = set(), set()
            missing.update(names[:1])
            since = num
        elif missing and (line.endswith("got ENOENT") or (
                num - since <= CASCADE_SPAN and
                not re.search(r"expected ENOENT|got (EPERM|EACCES)$", line) and
                any(n == p or p.startswith(n + "/") for n in names for p in missing))):
            # ENOENT for another name too: a symlink to the missing file.
            cls = "after a missing special file"
            if " rename " in line and line.endswith("got ENOENT") and \
                    names[:1] and names[0] in missing:
                stand_ins.update(names[1:2])
        elif (num - since <= 2 * CASCADE_SPAN and
              re.search(r" inode', expected ENOENT, got \d+$", line) and
              any(n in stand_ins or n in missing for n in names)):
            # Up to the loop's last type (symlink), which follows the
            # socket that could not be made.
            cls = "after a missing special file"
        if cls is None and num - refused <= 2 and re.search(
                r" inode', expected \d+, got \d+$|got ENOENT$", line):
            # The names as a rename refused just before left them.
            cls = "one server identity"
        if cls is None and _umask_only(line):
            cls = "set-id bits and umask at create"
        for name, grp, pat in RULES:
            if cls:
                break
            if re.search(grp, group) and re.search(pat, line):
                cls = name
        if cls is None and "one server identity" in out and re.search(
                r" (mode|inode|type|uid)[,']|expected ENOENT|got EEXIST$", line):
            # What a call refused to another uid did not change (a file
            # a refused rename left in place).
            cls = "one server identity"
        out.append(cls)
    return out


def _qualified(suite, group):
    """pjdfstest's groups are its files; the others' get the suite's name."""
    return group if suite == "pjdfstest" else f"{suite} {group}"


def verdict(cls):
    return CLASSES[cls][0] if cls else UNKNOWN


def _ratio(res):
    if not res:
        return "not run"
    if "error" in res:
        return "could not run"
    return f"{res['passed']} / {res['total']}"


def _totals(out, fs):
    rows = ["| suite | " + " | ".join(fs) + " | time (s) |",
            "| --- | " + " | ".join("---" for _ in fs) + " | --- |"]
    for suite, per_fs in out["results"].items():
        secs = " + ".join(str(per_fs.get(k, {}).get("seconds", "-")) for k in fs)
        rows.append(f"| {suite} | " + " | ".join(_ratio(per_fs.get(k)) for k in fs)
                    + f" | {secs} |")
    return rows


def _groups_table(suite, per_fs, fs):
    """One row per group that failed anything on any filesystem."""
    names = []
    for k in fs:
        for g, r in per_fs.get(k, {}).get("groups", {}).items():
            if r["failed"] and g not in names:
                names.append(g)
    if not names:
        return ["Every group passed on every filesystem."]
    same = []
    if suite == "pjdfstest" and len(fs) > 1:
        # Hundreds of files: show only those where the two differ.
        def passed(k, g):
            r = per_fs.get(k, {}).get("groups", {}).get(g)
            return r and r["passed"]
        same = [g for g in names if passed(fs[0], g) == passed(fs[1], g)]
        names = [g for g in names if g not in same]
    rows = ["| group | " + " | ".join(fs) + " |",
            "| --- | " + " | ".join("---" for _ in fs) + " |"]
    for g in sorted(names):
        cells = []
        for k in fs:
            r = per_fs.get(k, {}).get("groups", {}).get(g)
            cells.append(f"{r['passed']} / {r['total']}" if r else "-")
        worse = ""
        if len(fs) > 1:
            mine = per_fs.get(fs[0], {}).get("groups", {}).get(g)
            other = per_fs.get(fs[1], {}).get("groups", {}).get(g)
            if mine and other and mine["passed"] < other["passed"]:
                worse = " **(worse)**"
        rows.append(f"| {g}{worse} | " + " | ".join(cells) + " |")
    if same:
        rows += ["", f"{len(same)} more files fail as many tests on "
                 f"{' as on '.join(fs)} (each listed below)."]
    return rows


def _failures(suite, res, classify, limit=8):
    """The failing groups of one suite on one filesystem. pjdfstest: one
    line per file, its failures counted by class (the lines themselves are
    in results.json). Other suites: each failure line, with its class when
    `classify`."""
    rows = []
    for g, r in sorted(res.get("groups", {}).items()):
        if not r["failed"]:
            continue
        classes = classify_group(_qualified(suite, g), r["failures"])
        classes += [None] * (r["failed"] - len(r["failures"]))
        if suite == "pjdfstest":
            counts = {}
            for cls in classes:
                counts[cls or "not classified"] = counts.get(cls or "not classified", 0) + 1
            rows.append(f"- `{g}` {r['passed']} / {r['total']}: " + ", ".join(
                f"{c} {n}" for c, n in sorted(counts.items(), key=lambda kv: -kv[1])))
            continue
        rows.append(f"- `{g}`:")
        for line, cls in list(zip(r["failures"], classes))[:limit]:
            tail = f" — {cls or 'not classified'}" if classify else ""
            rows.append(f"  - `{line[:200]}`{tail}")
        if r.get("context"):
            rows.append("  - last operations: " + "; ".join(
                f"`{' '.join(c.split())}`" for c in r["context"]))
    return rows or ["none"]


def _op_table(per_fs, fs):
    """fsstress's per-operation outcomes ("op: ok xN, Errno xM" notes),
    one row per operation, one column per filesystem."""
    ops = {}
    for k in fs:
        for note in per_fs.get(k, {}).get("notes", []):
            op, _, outcomes = note.partition(": ")
            ops.setdefault(op, {})[k] = outcomes
    if not ops:
        return []
    rows = ["Outcomes per operation (fsstress -v):", "",
            "| operation | " + " | ".join(fs) + " |",
            "| --- | " + " | ".join("---" for _ in fs) + " |"]
    for op in sorted(ops):
        rows.append(f"| {op} | " + " | ".join(ops[op].get(k, "") for k in fs) + " |")
    return rows


def _classes(out, fs):
    """Per class: its verdict and the pjdfstest files it covers."""
    per = {}
    for suite, per_fs in out["results"].items():
        for g, r in per_fs.get(fs, {}).get("groups", {}).items():
            fails = r.get("failures", [])
            # A group that failed without a line (a script that died)
            # counts its missing tests unclassified.
            q = _qualified(suite, g)
            for cls in classify_group(q, fails) + [None] * (r["failed"] - len(fails)):
                groups = per.setdefault(cls, {})
                groups[q] = groups.get(q, 0) + 1
    rows = ["| class | verdict | why | failures | groups |",
            "| --- | --- | --- | --- | --- |"]
    for cls, groups in sorted(per.items(), key=lambda kv: -sum(kv[1].values())):
        why = CLASSES[cls][1] if cls else ""
        rows.append(f"| {cls or 'not classified'} | {verdict(cls)} | {why} | "
                    f"{sum(groups.values())} | " + ", ".join(sorted(groups)) + " |")
    return rows


def render(out):
    fs = [k for k in ("steadyfs", "sshfs")
          if any(k in v for v in out["results"].values())]
    lines = ["## Results of the last run", "",
             f"Started {out['started']}, {out.get('seconds', '?')} s in all; "
             f"settings: " + ", ".join(f"{k}={v}" for k, v in out.get("args", {}).items()
                                        if k.startswith(("fsx_", "fsstress_", "fio_",
                                                         "stress_", "pjd_", "op_timeout"))) + ".", ""]
    lines += _totals(out, fs) + [""]
    for suite, per_fs in out["results"].items():
        lines += [f"### {suite}", "", "Groups that failed anything (**worse**: "
                  "steadyfs passes fewer than sshfs; pjdfstest: the files "
                  "where the two differ):", ""]
        lines += _groups_table(suite, per_fs, fs) + [""]
        for k in fs:
            res = per_fs.get(k, {})
            if "error" in res:
                lines += [f"{k}: could not run: {res['error']}", ""]
                continue
            if k == "steadyfs" or suite != "pjdfstest":
                lines += [f"Failures on {k}:", ""]
                lines += _failures(suite, res, classify=(k == "steadyfs")) + [""]
            if suite == "fsstress":
                continue  # its notes are one table below
            first = per_fs.get(fs[0], {}).get("notes")
            if res.get("notes") and (k == fs[0] or res["notes"] != first):
                lines += [f"Notes on {k}:", ""] + [f"- {n}" for n in res["notes"]] + [""]
            elif res.get("notes"):
                lines += [f"Notes on {k}: the same.", ""]
        if suite == "fsstress":
            lines += _op_table(per_fs, fs) + [""]
    if "steadyfs" in fs:
        lines += ["### steadyfs failures by class", ""] + _classes(out, "steadyfs") + [""]
    return "\n".join(lines)


BEGIN = "<!-- conformance results: begin (test/conformance_report.py) -->"
END = "<!-- conformance results: end -->"


def write(out, path):
    """Replace the part of `path` between BEGIN and END with the rendered
    results; the hand-written text around it stays. A missing file, or one
    without the markers, gets the results at its end."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        text = ""
    block = f"{BEGIN}\n{render(out)}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text + ("\n" if text else "") + block + "\n"
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        write(json.load(f), sys.argv[2])
