"""The operator guides, tested: docs/operator-guide.md and docs/drills.md.

Static checks, for both guides: every option a command line in them gives
steadyfs, steadyfs-probe or steadyfs-recover is one that program's --help
names (for steadyfs, every `-o` name too, and the generic mount options
its help says it accepts); every relative link points to a file that
exists, and an anchor to a heading that exists; every `make TARGET` is a
target of the Makefile; and the operator guide's table of installed files
is what `make install DESTDIR=...` installs, no more, no less.

The drills run: docs/drills.md marks its command blocks with
`<!-- drill: NAME -->` and the output a block must print with
`<!-- drill-output: NAME -->`. The tests below take those blocks out of
the file, replace the `settings` block with a throwaway sshd on
127.0.0.1 (the session `sshd` fixture) and a scratch folder under
tmp_path, run them in one bash with the build folder first on PATH, and
check every line of each expected-output block against what its block
printed (pids, times and other numbers of two digits or more, decimals,
column widths and `...` are free; single digits such as exit statuses
must match; the settings' values are replaced by the test's). So the
guide and the test cannot drift: the test runs what the guide says.
Each drill runs its own clean-up blocks, and the test then checks that
nothing is left (mounts, processes, the mirror, the remote folder), and
detaches and kills by pid whatever is.
"""

import fnmatch
import glob
import os
import re
import shlex
import signal
import subprocess
import sys
import time

import pytest

import mounts
import sshdfix

REPO = mounts.REPO
BUILD = mounts.build_dir()
GUIDES = ["docs/operator-guide.md", "docs/drills.md"]
PROGRAMS = ["steadyfs", "steadyfs-probe", "steadyfs-recover"]
BLOCK_SEP = "@@drill-block@@"
PROC_GRACE = 10.0


# ---- reading markdown --------------------------------------------------------

def read_repo(rel):
    with open(os.path.join(REPO, rel)) as f:
        return f.read()


FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```[ \t]*$", re.M | re.S)
MARKER = re.compile(r"<!--\s*(drill|drill-output):\s*([\w-]+)\s*-->\s*\n```[\w-]*\n(.*?)^```",
                    re.M | re.S)


def fenced_blocks(text, commands_only=False):
    """Bodies of the fenced code blocks; with commands_only, not those
    marked `text` (what a command prints)."""
    return [m.group(2) for m in FENCE.finditer(text)
            if not (commands_only and m.group(1) == "text")]


def prose(text):
    """The text outside fenced code blocks."""
    return FENCE.sub("", text)


def marked_blocks(text, kind):
    """{name: body} of the blocks marked `<!-- KIND: name -->`; a name used
    twice is an error in the guide."""
    out = {}
    for m in MARKER.finditer(text):
        if m.group(1) != kind:
            continue
        assert m.group(2) not in out, f"two blocks marked '{kind}: {m.group(2)}'"
        out[m.group(2)] = m.group(3)
    return out


def slug(heading):
    """The anchor GitHub gives a heading."""
    s = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return s.replace(" ", "-")


def anchors(text):
    return {slug(h) for h in re.findall(r"^#+\s+(.*)$", prose(text), re.M)}


# ---- what the programs accept -------------------------------------------------

def run_help(prog, flag="--help"):
    return subprocess.run([os.path.join(BUILD, prog), flag], capture_output=True,
                          text=True, timeout=10, stdin=subprocess.DEVNULL)


def known_options(prog):
    """(flags, -o names) the program's --help names. --help and --version
    count when they exit 0."""
    text = run_help(prog).stdout
    flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)(?![\w-])", text))
    # Short flags where an option is listed: "  -f ...", "[-p PORT]"
    # ("mount -t" in a usage line is mount's).
    flags |= set(re.findall(r"(?:^\s*|\[|,\s)(-[a-zA-Z])(?![\w-])", text, re.M))
    for flag in ("--help", "--version"):
        if run_help(prog, flag).returncode == 0:
            flags.add(flag)
    names = set()
    for line in text.splitlines():
        if re.match(r"\s*-o [A-Za-z_]", line):
            names |= set(re.findall(r"-o ([A-Za-z_]+)=?", line)) - {"opt"}
            names |= set(re.findall(r",\s*([A-Za-z_]+)=", line))
    # "Also accepted: the generic mount(8) options (rw, dev, ..., x-systemd.*, ...)"
    accepted = re.search(r"Also accepted:.*?options\s+\((.*?)\)", text, re.S)
    if accepted:
        words = (w.strip().rstrip("=") for w in accepted.group(1).split(","))
        names |= {w for w in words if w and w != "..."}
    return flags, names


def _tokens(tail):
    lex = shlex.shlex(tail, posix=True, punctuation_chars=True)
    lex.wordchars += ",:@$%{}+=*"
    try:
        return list(lex)
    except ValueError:  # an unbalanced quote: a span cut out of prose
        return tail.split()


STOP = {"|", "||", "&", "&&", ";", ";;", "(", ")", "<", ">", ">>", "<<"}
COMMAND = re.compile(r"(?:^|(?<=[\s;|&(`'\"/]))(steadyfs(?:-probe|-recover)?)(?=\s|$)")


def options_used(text):
    """{program: (flags, -o names)} the guide's command lines pass: in code
    blocks (lines continued with a backslash joined) and code spans."""
    snippets = [b.replace("\\\n", " ") for b in fenced_blocks(text, commands_only=True)]
    snippets += re.findall(r"`([^`\n]+)`", prose(text))
    used = {p: (set(), set()) for p in PROGRAMS}
    for snippet in snippets:
        for line in snippet.splitlines():
            for m in COMMAND.finditer(line):
                flags, names = used[m.group(1)]
                toks = _tokens(line[m.end():])
                for i, t in enumerate(toks):
                    if t in STOP:
                        break
                    if t == "-o" and i + 1 < len(toks):
                        names |= {o.split("=", 1)[0] for o in toks[i + 1].split(",") if o}
                    elif t.startswith("-o") and m.group(1) == "steadyfs":
                        names |= {o.split("=", 1)[0] for o in t[2:].split(",") if o}
                    if re.fullmatch(r"--[a-z][a-z-]*(=.*)?|-[a-zA-Z]", t):
                        flags.add(t.split("=", 1)[0])
    for lst in re.findall(r"OPTIONS=(\S+)", text) + \
            re.findall(r"fuse\.steadyfs\s+(\S+,\S+)", text):
        used["steadyfs"][1].update(o.split("=", 1)[0] for o in lst.split(","))
    return used


# ---- static checks -------------------------------------------------------------

@pytest.mark.timeout(60)
@pytest.mark.parametrize("guide", GUIDES)
@pytest.mark.parametrize("prog", PROGRAMS)
def test_guide_uses_only_existing_options(guide, prog):
    if not os.access(os.path.join(BUILD, prog), os.X_OK):
        pytest.skip(f"{BUILD}/{prog} is not built")
    flags, names = options_used(read_repo(guide))[prog]
    known_flags, known_names = known_options(prog)
    assert len(known_flags) >= 2, known_flags
    bad = sorted(flags - known_flags)
    bad += sorted(f"-o {n}" for n in names - known_names
                  if not any(fnmatch.fnmatch(n, k) for k in known_names))
    assert not bad, f"{guide} gives {prog} options its --help does not name: {bad}"


def test_guides_run_every_program():
    """The option check above has something to check in each guide."""
    for guide in GUIDES:
        used = options_used(read_repo(guide))
        for prog in PROGRAMS:
            assert any(used[prog]), f"{guide} never runs {prog} with an option"


def link_problems(rel):
    """What is wrong with the links of markdown file `rel`: a relative link
    to a file that does not exist or lies outside the repository (a user's
    clone has nothing beside it), an anchor to a heading that does not
    exist, and a path in a code span that leaves the repository
    (`../elsewhere/FILE.md`) or names nothing in it."""
    text = read_repo(rel)
    here = os.path.dirname(os.path.join(REPO, rel))
    bad = []
    for link in re.findall(r"\[[^\]]*\]\(([^)\s]+)\)", prose(text)):
        if re.match(r"[a-z]+:", link):
            continue  # https:, mailto:
        path, _, anchor = link.partition("#")
        target = os.path.normpath(os.path.join(here, path)) if path else \
            os.path.join(REPO, rel)
        if os.path.relpath(target, REPO).startswith(".."):
            bad.append(f"{link}: outside the repository")
        elif not os.path.exists(target):
            bad.append(f"{link}: no file {os.path.relpath(target, REPO)}")
        elif anchor and target.endswith(".md"):
            with open(target) as f:
                if anchor not in anchors(f.read()):
                    bad.append(f"{link}: no heading with anchor #{anchor}")
    for span in re.findall(r"`([^`\n]+)`", prose(text)):
        if re.match(r"\.\./[\w.-]", span):
            target = os.path.normpath(os.path.join(here, span.split()[0]))
            if os.path.relpath(target, REPO).startswith(".."):
                bad.append(f"`{span}`: a path outside the repository")
            elif not os.path.exists(target):
                bad.append(f"`{span}`: no file {os.path.relpath(target, REPO)}")
    return bad


@pytest.mark.parametrize("guide", GUIDES)
def test_guide_links_resolve(guide):
    text = read_repo(guide)
    assert re.search(r"\[[^\]]*\]\(([^)\s]+)\)", prose(text)), f"{guide} links nowhere"
    bad = link_problems(guide)
    assert not bad, f"{guide}: " + "; ".join(bad)


def all_markdown():
    docs = sorted(os.path.relpath(p, REPO) for p in
                  glob.glob(os.path.join(REPO, "docs", "**", "*.md"), recursive=True))
    return ["README.md"] + docs


@pytest.mark.parametrize("doc", all_markdown())
def test_docs_link_only_inside_the_repository(doc):
    """README.md and every docs/ page: links resolve, inside the clone."""
    bad = link_problems(doc)
    assert not bad, f"{doc}: " + "; ".join(bad)


def test_link_check_catches_outside_links(tmp_path, monkeypatch):
    """The check itself: a link or a code-span path out of the repository,
    and a missing file, are each reported."""
    page = tmp_path / "docs" / "x.md"
    page.parent.mkdir()
    page.write_text("See [d](../../shared/DESIGN.md), `../../shared/FACTS.md`, "
                    "`../shared/STYLE.md`, `../docs/x.md`, [m](missing.md) "
                    "and [ok](x.md).\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO", str(tmp_path))
    bad = link_problems("docs/x.md")
    assert len(bad) == 4, bad
    assert "outside the repository" in bad[0] and "missing.md" in bad[1]
    assert "outside the repository" in bad[2] and "shared/STYLE.md" in bad[3]


def makefile_targets():
    text = read_repo("Makefile")
    return set(re.findall(r"^([a-z][\w.-]*)\s*:(?!=)", text, re.M))


@pytest.mark.parametrize("guide", GUIDES)
def test_guide_make_targets_exist(guide):
    used = set()
    for block in fenced_blocks(read_repo(guide), commands_only=True):
        used |= set(re.findall(r"(?:^|[;&|]\s*)make\s+(?:-\S+\s+)*([a-z][\w-]*)(?![\w=-])",
                               block, re.M))
    missing = used - makefile_targets()
    assert not missing, f"{guide} runs make targets the Makefile lacks: {missing}"


def installed_table(name="installed-files"):
    """Paths in the operator guide's table after `<!-- NAME -->`
    (installed-files: `make install`'s; package-files: the package's,
    checked by test_deb.py)."""
    text = read_repo("docs/operator-guide.md")
    _, marker, rest = text.partition(f"<!-- {name} -->")
    assert marker, f"the operator guide has no {name} table"
    table = rest.strip().split("\n\n", 1)[0]
    return re.findall(r"^\|\s*`(/[^`]+)`", table, re.M)


def table_mismatch(installed, listed):
    """(installed paths no glob of the table matches, globs of the table
    that match no installed path)."""
    unlisted = [p for p in installed if not any(fnmatch.fnmatch(p, g) for g in listed)]
    absent = [g for g in listed if not any(fnmatch.fnmatch(p, g) for p in installed)]
    return unlisted, absent


@pytest.mark.timeout(120)
def test_operator_guide_lists_what_make_install_installs(tmp_path):
    """`make install DESTDIR=` of what is built now (`-o all`: no rebuild)."""
    dest = tmp_path / "dest"
    r = subprocess.run(["make", "-s", "-o", "all", "install", f"DESTDIR={dest}",
                        f"SANITIZE={os.environ.get('SANITIZE', '0')}"],
                       cwd=REPO, capture_output=True, text=True, timeout=100)
    assert r.returncode == 0, r.stdout + r.stderr
    installed = sorted("/" + os.path.relpath(os.path.join(d, f), dest)
                       for d, _, files in os.walk(dest) for f in files)
    listed = installed_table()
    assert len(listed) >= 10, listed
    unlisted, absent = table_mismatch(installed, listed)
    assert not unlisted, f"installed but not in the operator guide: {unlisted}"
    assert not absent, f"in the operator guide but not installed: {absent}"


# ---- running the drills -------------------------------------------------------

DRILLS = read_repo("docs/drills.md")
COMMANDS = marked_blocks(DRILLS, "drill")
OUTPUTS = marked_blocks(DRILLS, "drill-output")


def doc_settings():
    """NAME=value lines of the guide's settings block, comments dropped."""
    out = {}
    for line in COMMANDS["settings"].splitlines():
        words = shlex.split(line, comments=True)
        if words:
            name, _, value = words[0].partition("=")
            out[name] = value
    return out


def test_drill_markers_are_consistent():
    assert "settings" in COMMANDS and "helpers" in COMMANDS
    orphans = set(OUTPUTS) - set(COMMANDS)
    assert not orphans, f"drill-output blocks without a drill block: {orphans}"
    used = {n for names in list(DRILL_SEQUENCES.values()) + list(CLEANUPS.values())
            for n in names}
    unrun = set(COMMANDS) - used - {"settings", "helpers"}
    assert not unrun, f"drill blocks no test runs: {unrun}"


def line_pattern(sample, subst):
    """A regex for one expected-output line: the guide's setting values
    become the test's, a decimal or a number of two digits or more (pids,
    times, counts that vary) any number, a blank run any blank run, `...`
    anything. A single digit (an exit status, a generation) must match."""
    alts = [re.escape(v) for v in sorted(subst, key=len, reverse=True)]
    token = re.compile("|".join(alts + [r"\.\.\.", r"\d+\.\d+", r"\d{2,}", r"\s+", r"."]),
                       re.S)
    out = []
    for m in token.finditer(sample.strip()):
        t = m.group(0)
        if t in subst:
            out.append(re.escape(subst[t]))
        elif t == "...":
            out.append(".*?")
        elif re.fullmatch(r"\d+\.\d+", t):
            out.append(r"\d+\.\d+")
        elif re.fullmatch(r"\d{2,}", t):
            out.append(r"\d+")
        elif t.isspace():
            out.append(r"\s+")
        else:
            out.append(re.escape(t))
    return re.compile("".join(out))


def check_outputs(name, printed, settings):
    expected = OUTPUTS.get(name)
    if expected is None:
        return
    subst = {}
    for k, doc in doc_settings().items():
        if doc and not doc.isdigit():
            subst[doc] = settings[k]
            if doc.startswith("/"):  # as in /run/steadyfs/<escaped path>
                subst[escape_path(doc)] = escape_path(settings[k])
    lines = [ln.strip() for ln in printed.splitlines()]
    missing = [s for s in expected.splitlines() if s.strip()
               and not any(line_pattern(s, subst).fullmatch(ln) for ln in lines)]
    assert not missing, (f"drill block '{name}' did not print, as docs/drills.md says:\n  "
                         + "\n  ".join(missing) + f"\n--- it printed ---\n{printed}")


def script(settings, names):
    assert set(settings) == set(doc_settings()), \
        f"the guide's settings are {sorted(doc_settings())}, the test sets {sorted(settings)}"
    lines = ["set -u", f"export PATH={shlex.quote(BUILD)}:$PATH"]
    lines += [f"{k}={shlex.quote(v)}" for k, v in settings.items()]
    lines.append(COMMANDS["helpers"])
    for n in names:
        lines += [f"echo \"{BLOCK_SEP} {n} $(date +%s.%N)\"", COMMANDS[n]]
    return "\n".join(lines) + "\n"


def run_blocks(tmp_path, settings, names, timeout):
    """Run the named blocks in one bash; {name: output} (stdout and stderr
    together). On timeout the whole process group is killed."""
    path = tmp_path / f"drill-{names[-1]}.sh"
    path.write_text(script(settings, names))
    proc = subprocess.Popen(["bash", str(path)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=10)
        pytest.fail(f"the drill blocks {names} took longer than {timeout} s:\n{out}")
    parts, started = {}, []
    for chunk in out.split(BLOCK_SEP)[1:]:
        header, _, body = chunk.partition("\n")
        name, when = header.split()
        parts[name] = body
        started.append((name, float(when)))
    ended = [t for _, t in started[1:]] + [time.time()]
    parts["(seconds per block)"] = ", ".join(
        f"{n} {end - t:.1f}" for (n, t), end in zip(started, ended))
    return parts


def procs_mentioning(text):
    """Pids whose command line contains `text` (the scratch path: the
    drills' sshfs and steadyfs processes), this process excluded."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd and sshdfix.proc_state(int(entry)) not in (None, "Z"):
            found.append(int(entry))
    return found


def under(path, root):
    return path == root or path.startswith(root + "/")


def signal_pid(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def escape_path(path):
    return subprocess.run(["systemd-escape", "--path", path], capture_output=True,
                          text=True, timeout=10, check=True).stdout.strip()


def mirror_of(mountpoint):
    return os.path.join("/run/steadyfs", escape_path(mountpoint))


def leftovers(scratch, remote):
    """What a drill left behind, after its clean-up had up to
    PROC_GRACE s to finish."""
    deadline = time.monotonic() + PROC_GRACE
    while procs_mentioning(scratch) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [f"mounted: {m['target']}" for m in mounts.mountinfo()
            if under(m["target"], scratch)]
    left += [f"process {p}" for p in procs_mentioning(scratch)]
    left += [f"path: {p}" for p in (scratch, remote, mirror_of(scratch + "/mnt"))
             if os.path.lexists(p)]
    return left


def force_cleanup(scratch):
    """Whatever the guide's clean-up did not remove: resume, abort, detach,
    then end the processes by pid."""
    for p in procs_mentioning(scratch):
        signal_pid(p, signal.SIGCONT)
    for m in reversed([m for m in mounts.mountinfo() if under(m["target"], scratch)]):
        if m["fstype"].startswith("fuse"):
            mounts.abort_fuse_connection(m["dev"])
        subprocess.run(["umount", "-l", m["target"]], timeout=10,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = procs_mentioning(scratch)
        for p in pids:
            signal_pid(p, sig)
        if mounts.wait_gone(pids, 5.0):
            break
    mirror = mirror_of(scratch + "/mnt")
    if os.path.lexists(mirror):
        subprocess.run(["rm", "-rf", mirror], timeout=10)


# The blocks each test runs, in order, and then, in a second bash (so it
# runs whatever happened before), the clean-up blocks.
DRILL_SEQUENCES = {
    "steadyfs": ["scratch-mount", "transport-cut", "transport-cut-check",
                 "daemon-kill", "upgrade"],
    "legacy": ["legacy-mount", "legacy-kill", "legacy-probe", "legacy-dry-run",
               "legacy-recover", "legacy-check"],
    "recover-drill": ["recover-drill"],
}
CLEANUPS = {"steadyfs": ["scratch-cleanup", "after"],
            "legacy": ["legacy-cleanup", "after"],
            "recover-drill": []}


@pytest.fixture
def drill_env(sshd, remote_subdir, tmp_path):
    """The settings for a drill against the test sshd; afterwards, the
    clean-up forced if the guide's own left something."""
    if not mounts.fuse_available():
        pytest.skip("/dev/fuse is missing")
    if os.geteuid() != 0:
        pytest.skip("the drills mount and unmount: root only")
    scratch = os.path.join(os.path.realpath(tmp_path), "scratch")
    remote = os.path.join(sshd.remote_dir, remote_subdir, "drill")
    settings = {"SERVER": f"{sshd.user}@{sshd.host}", "PORT": str(sshd.port),
                "KEY": sshd.key, "KNOWN": sshd.known_hosts,
                "REMOTE": remote, "SCRATCH": scratch}
    yield settings
    force_cleanup(scratch)


def run_drill(tmp_path, settings, drill, timeout, check=None, cleanup_timeout=60):
    """Run a drill's blocks, check their output, call check(parts) while
    everything is still up, then run its clean-up blocks and check that
    nothing is left."""
    try:
        parts = run_blocks(tmp_path, settings, DRILL_SEQUENCES[drill], timeout)
        for name in DRILL_SEQUENCES[drill]:
            assert name in parts, f"block '{name}' never ran; got {parts}"
            check_outputs(name, parts[name], settings)
        if check:
            check(parts)
    finally:
        if CLEANUPS[drill]:
            after = run_blocks(tmp_path, settings, CLEANUPS[drill], cleanup_timeout)
    for name in CLEANUPS[drill]:
        check_outputs(name, after[name], settings)
    left = leftovers(settings["SCRATCH"], settings["REMOTE"])
    assert not left, f"the guide's clean-up left: {left}"
    return parts


def server_lines(settings, name):
    with open(os.path.join(settings["REMOTE"], name)) as f:
        return f.read().splitlines()


@pytest.mark.timeout(150)
def test_drill_steadyfs_cut_kill_upgrade(drill_env, tmp_path):
    """Drills 2 to 5: the scratch mount, a transport cut with ss -K under
    a writer, the daemon killed, an upgrade under a writer, clean-up."""
    def check(parts):
        cut = parts["transport-cut"]
        assert "failed" not in cut, cut
        assert "cut: state: down" in cut, f"the cut never took the state down:\n{cut}"
        outages = re.search(r"outages: (\d+)", parts["transport-cut-check"])
        assert int(outages.group(1)) >= 1
        # The server's copies, read on the server's side.
        assert server_lines(drill_env, "cut.log") == [f"line {i}" for i in range(1, 41)]
        assert server_lines(drill_env, "upgrade.log") == [f"line {i}" for i in range(1, 21)]
        assert server_lines(drill_env, "kill.txt") == ["hello"]

    run_drill(tmp_path, drill_env, "steadyfs", timeout=75, check=check)


@pytest.mark.timeout(150)
def test_drill_stale_legacy_sshfs(drill_env, tmp_path):
    """Drill 7: a real sshfs mount made stale with kill -9, the probe
    reporting it, a dry run, the recovery, clean-up."""
    def check(parts):
        root = os.path.join(drill_env["SCRATCH"], "root")
        assert [m["fstype"] for m in mounts.mountinfo()
                if under(m["target"], root)] == ["fuse.sshfs"]
        assert server_lines(drill_env, "drill.txt") == ["hello"]

    run_drill(tmp_path, drill_env, "legacy", timeout=75, check=check)


@pytest.mark.timeout(60)
def test_drill_recover_rehearsal(drill_env, tmp_path):
    """Drill 6: steadyfs-recover --drill, in its own namespace."""
    run_drill(tmp_path, drill_env, "recover-drill", timeout=45)
