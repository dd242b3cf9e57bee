"""`make conformance`'s own parts, without the suites: how it reads prove's
output, compares a tree through the mount with the server's copy, renders
the report between its markers, and what it says when PEERS_DIR is
missing. The suites themselves run only in `make conformance`."""

import argparse
import os
import subprocess
import threading

import pytest

import conformance
import conformance_report
import conformance_suites
import mounts

TESTS = "/x/pjdfstest/tests"
PROVE = f"""\
{TESTS}/chmod/00.t ..
1..4
ok 1
not ok 2 - tried 'mkfifo pjdfstest_0123456789abcdef0123456789abcdef 0644', expected 0, got ENOSYS
not ok 3 - tried 'stat pjdfstest_0123456789abcdef0123456789abcdef mode', expected 0644, got ENOENT
ok 4
Failed 2/4 subtests
{TESTS}/unlink/14.t ..
1..7
ok 1
ok 2
Dubious, test returned 1
{TESTS}/open/00.t .. ok
1..2
ok 1
ok 2
ok
Files=3, Tests=13
"""


def test_prove_output_counts_per_file():
    """Passed = ok lines, total = the plan: tests a dying script never
    ran count as failed; random names are numbered per file."""
    g = conformance_suites.parse_prove(PROVE, TESTS)
    assert (g["chmod/00.t"]["passed"], g["chmod/00.t"]["total"]) == (2, 4)
    assert g["chmod/00.t"]["failures"] == [
        "not ok 2 - tried 'mkfifo n1 0644', expected 0, got ENOSYS",
        "not ok 3 - tried 'stat n1 mode', expected 0644, got ENOENT"]
    assert (g["unlink/14.t"]["passed"], g["unlink/14.t"]["total"]) == (2, 7)
    assert (g["open/00.t"]["passed"], g["open/00.t"]["failed"]) == (2, 0)


def test_tree_compare_names_each_difference(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        (d / "sub").mkdir(parents=True)
        (d / "same").write_bytes(b"x" * 10)
    (a / "sub" / "f").write_bytes(b"one")
    (b / "sub" / "f").write_bytes(b"two")
    (a / "only-mount").write_bytes(b"")
    os.symlink("same", a / "l")
    os.symlink("other", b / "l")
    diffs = conformance_suites.compare_trees(conformance_suites._tree(str(a)),
                                             conformance_suites._tree(str(b)))
    assert [d.split(":")[0] for d in diffs] == ["l", "only-mount", "sub/f"]


def results(steadyfs_fail):
    group = {"total": 2, "passed": 2 - len(steadyfs_fail),
             "failed": len(steadyfs_fail), "failures": steadyfs_fail}
    ok = {"total": 2, "passed": 2, "failed": 0, "failures": []}
    return {"started": "now", "seconds": 1, "results": {"pjdfstest": {
        "steadyfs": {"total": 2, "passed": group["passed"], "failed": group["failed"],
                     "seconds": 1, "groups": {"unlink/14.t": group}, "notes": []},
        "sshfs": {"total": 2, "passed": 2, "failed": 0, "seconds": 1,
                  "groups": {"unlink/14.t": ok}, "notes": []}}}}


def test_report_replaces_only_its_block(tmp_path):
    """Hand-written text around the markers survives a new run; a
    failure where sshfs passes is marked, and classified."""
    doc = tmp_path / "c.md"
    doc.write_text(f"intro\n{conformance_report.BEGIN}\nold\n"
                   f"{conformance_report.END}\nanalysis\n")
    line = "not ok 4 - tried 'mkfifo n1 0644', expected 0, got ENOSYS"
    conformance_report.write(results([line]), str(doc))
    text = doc.read_text()
    assert text.startswith("intro\n") and text.endswith("\nanalysis\n")
    assert "old" not in text
    assert "| unlink/14.t **(worse)** | 1 / 2 | 2 / 2 |" in text
    assert "no special files" in text


def test_failures_after_a_missing_fifo_follow_from_it():
    lines = ["not ok 5 - tried 'mkfifo n1/n2 0644', expected 0, got ENOSYS",
             "not ok 6 - tried 'chmod n1/n2/test 0644', expected ENOTDIR, got ENOENT",
             "not ok 9 - tried 'rmdir n1', expected ENOTEMPTY, got 0",
             "not ok 11 - tried '-u 65534 -g 65534 chmod n3 0642', expected 0, got EPERM",
             "not ok 12",
             "not ok 13 - tried 'stat n4 type,mode', expected regular,0620, got regular,0600"]
    assert conformance_report.classify_group("chmod/01.t", lines) == [
        "no special files", "after a missing special file",
        "after a missing special file", "one server identity",
        "whole-second times and no ctime", "set-id bits and umask at create"]


def test_missing_peers_dir_says_how_to_get_one():
    r = subprocess.run(["make", "-s", "conformance-peers", "PEERS_DIR=/nonexistent"],
                       cwd=mounts.REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "git clone https://github.com/pjd/pjdfstest.git" in r.stderr
    assert "git clone https://github.com/kdave/xfstests.git" in r.stderr


def test_cut_schedule_reads_secs_every():
    assert conformance.cut_schedule("0.5/4") == (0.5, 4.0)
    for bad in ("4/0.5", "0/4", "0.5"):
        with pytest.raises((argparse.ArgumentTypeError, ValueError)):
            conformance.cut_schedule(bad)


class _Proxy:
    """Records the modes a Cutter sets; the third cut stops the test."""

    def __init__(self):
        self.modes, self.third = [], threading.Event()

    def cut(self):
        self.modes.append("cut")
        if self.modes.count("cut") == 3:
            self.third.set()

    def restore(self):
        self.modes.append("pass")


def test_cutter_alternates_and_leaves_the_link_whole():
    proxy = _Proxy()
    cutter = conformance.Cutter(proxy, 0.01, 0.02).start()
    assert proxy.third.wait(30)
    cutter.stop()
    assert cutter.cuts >= 3
    assert proxy.modes[:4] == ["cut", "pass", "cut", "pass"]
    assert proxy.modes[-1] == "pass"


def test_an_error_under_cuts_fails_the_fsx_run():
    args = argparse.Namespace(fsx_cut=(0.5, 4.0), op_timeout=4)
    cutter = argparse.Namespace(cuts=5)
    res = {"total": 1, "passed": 1, "failed": 0, "notes": [],
           "groups": {"seed 1": conformance_suites._group(1, 1)}}
    err = {"op": "write", "errno_name": "EIO"}
    conformance.cut_verdict(res, cutter, {"reconnects": 0},
                            {"reconnects": 20, "last_error": err,
                             "data_lost_bytes": 0}, args)
    assert (res["total"], res["failed"]) == (2, 1)
    assert "EIO" in res["groups"]["errors under cuts"]["failures"][0]
    assert "link cut 5 times, 0.5 s every 4 s" in res["notes"][0]
    assert "op_timeout=4" in res["notes"][0]


def test_a_missing_files_stand_in_and_a_refused_renames_leftovers():
    """rename/10.t: the test's "inode" of a FIFO that could not be made is
    the word ENOENT, expected later where a regular file stands; after a
    rename refused to another uid, both names are as they were; "unlink"
    is not about link counts."""
    lines = ["not ok 347 - tried 'mkfifo n1/n2 0644', expected 0, got ENOSYS",
             "not ok 351 - tried '-u 65534 -g 65534 rename n1/n2 n3/n4', expected 0, got ENOENT",
             "not ok 353 - tried 'lstat n3/n4 inode', expected ENOENT, got 671",
             "not ok 355 - tried 'lstat n1/n2 inode', expected ENOENT, got 671",
             "not ok 365 - tried 'lstat n3/n4 inode', expected ENOENT, got 671",
             "not ok 2049 - tried '-u 65534 -g 65534 rename n5/n6 n7/n8', expected 0, got EACCES",
             "not ok 2051 - tried 'lstat n7/n8 inode', expected 829, got 830",
             "not ok 2060 - tried 'unlink n7/n8', expected 0, got EBUSY"]
    assert conformance_report.classify_group("rename/10.t", lines) == [
        "no special files"] + ["after a missing special file"] * 4 + [
        "one server identity", "one server identity", None]
