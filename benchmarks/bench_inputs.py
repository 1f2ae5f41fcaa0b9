"""The input side of one ``pm.pool`` call, before and after (issue 20; not part of the test suite).

Run:  python benchmarks/bench_inputs.py [--before REV] [--rounds N] [--number N]

Times, as CPU per call (``time.process_time``; the median of repeated loops in each round, then the
median over rounds), on the k = 14 arm table of ``bench_single_fit.py`` and on a yi/vi frame of the
same studies:

- ``checked_effects(arm, "MD")`` / ``checked_effects(yi_vi)``: every check and the effect sizes, no
  DataFrame (what ``pm.pool`` needs: yi, vi, labels, notes);
- ``effect_table(...)``: the same plus the DataFrame it returns (``pm.escalc``);
- ``pm.pool(arm, measure="MD", ci_method="hksj")`` and ``pm.pool(yi_vi, ci_method="hksj")``, whole
  calls, for scale.

"before" is the package as it was at git revision ``--before`` (default: the last commit before this
work), extracted with ``git archive`` to a temporary folder; "after" is this checkout. The two run in
child processes, alternately, round after round, so that the load of a shared machine falls on both
alike; the ratio before / after is what to read. Nothing is compared for equality here: the tests and
the replay of recorded calls do that.
"""

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "345f4fc"        # main just before the input path was made faster

CHILD = textwrap.dedent('''
    import json, sys, warnings
    sys.path.insert(0, sys.argv[1]); sys.path.insert(1, sys.argv[2])
    import pandas as pd
    import pfps_meta as pm
    from pfps_meta.inputs import validate
    assert pm.__file__.startswith(sys.argv[1]), pm.__file__
    from bench_single_fit import arm_table, cpu_per_call
    number = int(sys.argv[3])
    warnings.simplefilter("ignore")
    arm = arm_table()
    res = pm.pool(arm, measure="MD", ci_method="hksj")
    yivi = pd.DataFrame({"study": arm["study"], "yi": res.studies["yi"].to_numpy(),
                         "vi": res.studies["vi"].to_numpy()})

    def cpu(func, n):
        return cpu_per_call(func, n, repeat=5)

    rows = {}
    checked = getattr(validate, "checked_effects", None)
    if checked is not None:
        rows["checked_effects(arm, MD)"] = cpu(lambda: checked(arm, "MD"), 4 * number)
        rows["checked_effects(yi_vi)"] = cpu(lambda: checked(yivi), 4 * number)
    rows["effect_table(arm, MD)"] = cpu(lambda: validate.effect_table(arm, "MD"), number)
    rows["effect_table(yi_vi)"] = cpu(lambda: validate.effect_table(yivi), number)
    rows["pm.pool(arm, MD, hksj)"] = cpu(lambda: pm.pool(arm, measure="MD", ci_method="hksj"), number)
    rows["pm.pool(yi_vi, hksj)"] = cpu(lambda: pm.pool(yivi, ci_method="hksj"), number)
    print(json.dumps(rows))
''')


def extract(rev: str, into: Path) -> Path:
    """The package folder as it was at ``rev`` (``git archive``), under ``into``."""
    archive = into / "before.tar"
    with open(archive, "wb") as out:
        subprocess.run(["git", "-C", str(ROOT), "archive", rev, "pfps_meta"], stdout=out, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into / "before", filter="data")
    return into / "before"


def child(package_root: Path, number: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("PYTHONPATH", None)
    done = subprocess.run([sys.executable, "-c", CHILD, str(package_root), str(ROOT / "benchmarks"), str(number)],
                          capture_output=True, text=True, env=env, check=True, cwd=tempfile.gettempdir())
    return json.loads(done.stdout.strip().splitlines()[-1])


def median(values):
    values = sorted(values)
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default=BASELINE, help=f"git revision to compare with (default {BASELINE})")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--number", type=int, default=200, help="calls per timed loop")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        before_root = extract(args.before, Path(tmp))
        runs = {"before": [], "after": []}
        for _ in range(args.rounds):
            runs["before"].append(child(before_root, args.number))
            runs["after"].append(child(ROOT, args.number))
    print(f"CPU per call, median of {args.rounds} alternating rounds (before = {args.before}, after = this "
          "checkout), k = 14")
    print(f"{'call':32s} {'before us':>10s} {'after us':>10s} {'before/after':>13s}")
    for name in runs["after"][0]:
        after = median([run[name] for run in runs["after"]]) * 1e6
        if name in runs["before"][0]:
            before = median([run[name] for run in runs["before"]]) * 1e6
            print(f"{name:32s} {before:10.1f} {after:10.1f} {before / after:12.2f}x")
        else:
            print(f"{name:32s} {'(new)':>10s} {after:10.1f}")


if __name__ == "__main__":
    main()
