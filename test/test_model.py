"""The model checker (test/modelcheck.py, docs/modelcheck.md) in `make check`.

- Every seed in test/modelcheck-seeds.txt (failures it found, kept as
  regression cases) is replayed and must show no divergence. Seeds marked
  `known=BUGS` hit findings (issue 14's f1, f2, f3, f10; m1-m7 found by
  the checker; docs/modelcheck.md); while one of them is still in
  modelplan.OPEN_BUGS they run only when STEADYFS_MODEL_KNOWN_BUGS names
  it (or is 1), which also turns on the calls that hit those findings
  (renaming or removing open files, truncating below queued writes,
  filling the write window during an outage, ...).
- New seeds, with every fault kind, for a fixed budget (MODEL_BUDGET s
  of seeds started, STEADYFS_MODEL_BUDGET to change it). The first seed is
  FIRST_SEED, so every `make check` runs the same traces and a red run
  means this change, not the draw; STEADYFS_MODEL_SEED=N starts elsewhere
  and STEADYFS_MODEL_SEED=random draws it from the clock (exploring new
  seeds is `make soak`'s job). It is printed, and a divergence prints the shortest trace found and the command that
  replays it:

      STEADYFS_BUILD=$PWD/build /usr/bin/python3 test/modelcheck.py --seed N --ops M --fault-rate R

Nothing here asserts a time: the budget only decides how many seeds run.
"""

import json
import os
import time

import pytest

import modelcheck
import modelplan
import mounts

pytestmark = pytest.mark.skipif(not mounts.fuse_available(),
                                reason="/dev/fuse is missing")

MODEL_BUDGET = float(os.environ.get("STEADYFS_MODEL_BUDGET") or 90)
# Longer seeds with faults further apart than the planner's default: about
# as many faults per second, twice the calls, and the server's copy
# compared every RANDOM_SETTLE calls too.
RANDOM_OPS = 300
# make check's first new seed: fixed, so CI never fails on a seed no one
# has run before (docs/modelcheck.md, "In make check").
FIRST_SEED = 1000
# ... and at most this many of them (seeds 1000-1009 all pass; a faster
# machine must not reach seeds nobody has run). A drawn first seed runs
# until the budget ends.
FIXED_SEEDS = 10
RANDOM_FAULT_RATE = 0.015
RANDOM_SETTLE = 100
SHRINK_SECONDS = 40


def read_seeds():
    """(id, seed, ops, faults, known, trace) for each line of the seed
    file: `SEED OPS FAULTS [known=BUG,...] [trace=FILE] # what it found`.
    With a trace (test/modelcheck-traces/FILE, the shortest one the
    shrinker found) that trace is replayed instead of the whole seed."""
    out = []
    with open(modelcheck.SEEDS_FILE) as f:
        for line in f:
            words = line.split("#", 1)[0].split()
            if not words:
                continue
            seed, ops, faults = words[0], words[1], words[2]
            seed = int(seed) if seed != "-" else None
            ops = int(ops) if ops != "-" else None
            known, trace = frozenset(), None
            for w in words[3:]:
                if w.startswith("known="):
                    known = modelcheck.parse_known(w[len("known="):])
                elif w.startswith("trace="):
                    trace = w[len("trace="):]
            name = trace[:-5] if trace else f"seed{seed}-{ops}-{faults}" + \
                "".join("-" + b for b in sorted(known))
            out.append((name, seed, ops, faults, known, trace))
    return out


SEEDS = read_seeds()


@pytest.fixture
def env(sshd, tmp_path):
    return modelcheck.Env(sshd, str(tmp_path))


def run_seed(env, seed, ops, faults, known, shrink=0,
             fault_rate=modelcheck.FAULT_RATE, settle_every=0):
    faults = modelcheck.parse_faults(faults)
    d, stats, small = modelcheck.check_seed(env, seed, ops, faults, known,
                                            shrink_secs=shrink, fault_rate=fault_rate,
                                            settle_every=settle_every)
    if d is None:
        return stats
    lines = []
    modelcheck.print_divergence(d, small, out=lines.append)
    path = modelcheck.save_trace(small, os.path.join(
        mounts.build_dir(), f"modelcheck-{seed}.json"),
        {"seed": seed, "ops": ops, "faults": faults, "fault_rate": fault_rate,
         "known_bugs": sorted(known), "divergence": f"step {d.index}: {d.what}"})
    lines.append(f"replay the trace: /usr/bin/python3 test/modelcheck.py --trace {path}")
    lines.append("replay: " + modelcheck.replay_command(seed, ops, faults, known, fault_rate,
                                                        settle_every))
    lines.append("--- daemon log (tail) ---")
    lines.append(getattr(d, "stderr", "")[-4000:])
    pytest.fail("\n".join(lines), pytrace=False)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("case", SEEDS, ids=[s[0] for s in SEEDS])
def test_regression_seed(case, env):
    _, seed, ops, faults, known, trace = case
    if not known <= (set(modelplan.KNOWN_BUGS) - modelplan.OPEN_BUGS) | \
            modelcheck.known_bugs_default():
        pytest.skip(f"hits open findings {sorted(known)}: set "
                    f"{modelcheck.KNOWN_BUGS_ENV}={','.join(sorted(known))} (or 1)")
    if trace is None:
        run_seed(env, seed, ops, faults, known)
        return
    with open(os.path.join(modelcheck.TRACES_DIR, trace)) as f:
        steps = json.load(f)["trace"]
    d = modelcheck.Run(env, steps).run()
    if d is not None:
        lines = []
        modelcheck.print_divergence(d, steps[:d.index + 1], out=lines.append)
        lines.append("replay: /usr/bin/python3 test/modelcheck.py --trace "
                     f"test/modelcheck-traces/{trace}")
        lines.append("--- daemon log (tail) ---")
        lines.append(getattr(d, "stderr", "")[-4000:])
        pytest.fail("\n".join(lines), pytrace=False)


@pytest.mark.timeout(MODEL_BUDGET + 400)
def test_random_seeds(env):
    chosen = os.environ.get("STEADYFS_MODEL_SEED") or str(FIRST_SEED)
    first = int(time.time() % 1_000_000) if chosen == "random" else int(chosen)
    known = modelcheck.known_bugs_default()
    faults = ",".join(modelcheck.FAULT_KINDS)
    total = modelcheck.Stats()
    seed, end = first, time.monotonic() + MODEL_BUDGET
    print(f"\nmodel checker: first seed {first}, {RANDOM_OPS} calls each, "
          f"faults {faults} (rate {RANDOM_FAULT_RATE})"
          f"{', known bugs ' + modelcheck.known_str(known) if known else ''}")
    while True:
        print(f"model checker: seed {seed}", flush=True)
        total.merge(run_seed(env, seed, RANDOM_OPS, faults, known, SHRINK_SECONDS,
                             RANDOM_FAULT_RATE, RANDOM_SETTLE))
        seed += 1
        if time.monotonic() >= end or (chosen != "random" and seed - first >= FIXED_SEEDS):
            break
    print(total.report())
    assert total.runs >= 1 and sum(total.ops.values()) > 0


@pytest.mark.timeout(300)
def test_settle_points_written_into_the_trace(env):
    """A run with --settle-every writes each of its settle points into
    the steps it ran, so the saved (or shrunk) trace replayed without
    the option compares the server's copy at the same places (soak seeds
    400008-400055 diverged after such a settle point; their saved traces
    held none and passed when replayed)."""
    trace = modelcheck.make_trace(FIRST_SEED, 40, [], frozenset(), RANDOM_FAULT_RATE)
    run = modelcheck.Run(env, trace, settle_every=7)
    assert run.run() is None
    points = [j for j, s in enumerate(run.ran) if s.get("fault") == "settle"]
    assert points, "no settle point in 40 calls, one every 7"
    assert [s for s in run.ran if s.get("fault") != "settle"] == trace
    again = modelcheck.Run(env, run.ran)
    assert again.run() is None
    # Its settle points and the final check's (the first run also settles
    # every 7 of the final check's calls).
    assert again.stats.settles == len(points) + 1 <= run.stats.settles
