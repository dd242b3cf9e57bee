"""test/callgraph.py, the loop check `make check` runs, on small objects
compiled here: it must find a loop of any length, in any program's
folders (fs/ too: the file layer's loops are broken, issue 16), and
print it. The last test runs it on the real build, as `make callgraph`
does."""

import os
import subprocess

import pytest

import mounts

REPO = mounts.REPO
SCRIPT = os.path.join(REPO, "test", "callgraph.py")


def obj(tmp_path, path, defines, calls):
    """Compiles tmp_path/obj/PATH.o defining `defines` and calling `calls`."""
    src = tmp_path / "src" / (path + ".c")
    src.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"void {c}(void);" for c in calls]
    for d in defines:
        body = "".join(f" {c}();" for c in calls)
        lines.append(f"void {d}(void) {{{body} }}")
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "obj" / (path + ".o")
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cc", "-c", "-o", str(out), str(src)], check=True)


def run(tmp_path):
    return subprocess.run(["/usr/bin/python3", SCRIPT, str(tmp_path / "obj")],
                          capture_output=True, text=True, timeout=60)


def test_no_loop_passes(tmp_path):
    obj(tmp_path, "lib/a", ["a"], ["b"])
    obj(tmp_path, "lib/b", ["b"], [])
    r = run(tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "loop of" not in r.stdout


def test_three_file_loop_in_lib_fails_and_is_printed(tmp_path):
    obj(tmp_path, "lib/a", ["a"], ["b"])
    obj(tmp_path, "lib/b", ["b"], ["c"])
    obj(tmp_path, "lib/c", ["c"], ["a"])
    obj(tmp_path, "lib/d", ["d"], ["a"])   # calls into the loop, not on it
    r = run(tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "lib/a.c -> lib/b.c -> lib/c.c -> lib/a.c" in r.stdout
    assert "lib/d.c" not in r.stdout


def test_loop_in_recover_fails(tmp_path):
    obj(tmp_path, "recover/a", ["ra"], ["rb"])
    obj(tmp_path, "recover/b", ["rb"], ["ra"])
    r = run(tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "a loop through recover/a.c, recover/b.c" in r.stderr


def test_loop_in_fs_fails_until_broken(tmp_path):
    obj(tmp_path, "fs/a", ["fa"], ["fb"])
    obj(tmp_path, "fs/b", ["fb"], ["fa"])
    r = run(tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "a loop through fs/a.c, fs/b.c" in r.stderr
    assert "fs/b.c -> fs/a.c  (fa)" in r.stdout
    # broken the way fs/ breaks them: b is given what it calls up to
    obj(tmp_path, "fs/b", ["fb"], [])
    r = run(tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "no program has a loop" in r.stdout


def test_the_build_holds_the_rules():
    objdir = os.path.join(mounts.build_dir(), "obj")
    if not os.path.isdir(os.path.join(objdir, "fs")):
        pytest.skip("no objects in the build folder (make all first)")
    r = subprocess.run(["/usr/bin/python3", SCRIPT, objdir],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
