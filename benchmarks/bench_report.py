"""Issue 18 item 8, measured (not part of the test suite): CPU time of the bundled report as a whole process.

Run:  python benchmarks/bench_report.py [--runs 3] [--keep DIR]

What it does, from the repository root, in a temporary folder of its own:

- cold: one ``pfps-meta report`` with an empty cache folder (``PFPS_META_CACHE``), so every coverage
  table is simulated and every label is measured by FreeType (a first run after installing); ``--no-bytecode`` also gives it an empty bytecode cache
  (``PYTHONPYCACHEPREFIX``), so every module, numpy's and pandas' included, is compiled first;
- warm: after one unmeasured run that writes the bytecode of every module it imports into a folder of its
  own (``PYTHONPYCACHEPREFIX``; ``PYTHONDONTWRITEBYTECODE`` is lifted for it, because a user's second run
  finds its bytecode), ``--runs`` more runs with that bytecode and the cache folder the cold run filled:
  its coverage tables and its labels' text extents (``text-extents/``: ``pfps_meta.present.svg``); every
  figure is still built and drawn in every run (the median is reported).
- cold without ``--no-bytecode`` runs in the environment as it is: where it sets
  ``PYTHONDONTWRITEBYTECODE`` (this machine does), pfps_meta's own modules are compiled from source, as on
  a first run after an editable install.

CPU time is user + system time of the child process (``resource.getrusage(RUSAGE_CHILDREN)`` before and
after), so other processes on the machine do not count, but the interpreter's start and every import do.
Targets: warm < 5 s, cold < 10 s. One thread for the numeric libraries, as in the other benchmarks.
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"warm": 5.0, "cold": 10.0}


def child_env(pycache: Path | None, **extra) -> dict:
    """The environment of a measured child: one thread for the numeric libraries; ``pycache``: a bytecode
    folder of its own, which the process may write to (None: the environment as it is, which may forbid
    writing bytecode with PYTHONDONTWRITEBYTECODE, so pfps_meta's modules are compiled from source)."""
    env = dict(os.environ, **extra)
    if pycache is not None:
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env.setdefault(var, "1")
    return env


def child_cpu(command: list, env: dict) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one child process running ``command`` from the repository root."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command[1:3])} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall


def run_once(out: Path, cache: Path, pycache: Path | None) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one ``pfps-meta report`` process (``pycache``: see :func:`child_env`)."""
    return child_cpu([sys.executable, "-m", "pfps_meta.cli", "report", "--out", str(out)],
                     child_env(pycache, PFPS_META_CACHE=str(cache)))


#: a fixed workload timed beside each warm run: the imports every report makes, nothing of ours. This
#: machine's speed drifts by a third from one quarter of an hour to the next (the same tree gave warm
#: medians of 4.3, 5.3 and 6.1 s within 30 minutes), so the ratio of the two says more than either alone.
REFERENCE = "import numpy, pandas, scipy.special, scipy.optimize, matplotlib.pyplot"


def reference_cpu(pycache: Path) -> float:
    """CPU seconds of one interpreter running :data:`REFERENCE` with warm bytecode."""
    return child_cpu([sys.executable, "-c", REFERENCE], child_env(pycache))[0]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="warm runs after the cold one (default 3)")
    parser.add_argument("--no-bytecode", action="store_true", help="cold run without compiled bytecode")
    parser.add_argument("--keep", type=Path, default=None, help="folder for the caches and the report "
                        "(default: a temporary folder, removed at the end)")
    args = parser.parse_args(argv)
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        work = args.keep or Path(tmp)
        cache, out = work / "cache", work / "report"
        cold = run_once(out, cache, work / "pycache-cold" if args.no_bytecode else None)
        run_once(out, cache, work / "pycache-warm")          # writes the bytecode the warm runs read
        warm, reference = [], []
        for _ in range(args.runs):
            warm.append(run_once(out, cache, work / "pycache-warm"))
            reference.append(reference_cpu(work / "pycache-warm"))
    warm_cpu = statistics.median(c for c, _ in warm)
    warm_wall = statistics.median(w for _, w in warm)
    print(f"load average before and after: {load[0]:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs "
          "(CPU seconds grow on a loaded machine)")
    what = "empty cache folder and bytecode cache" if args.no_bytecode else "empty cache folder"
    print(f"cold ({what}): {cold[0]:.2f} s CPU ({cold[1]:.2f} s wall)   target < {TARGETS['cold']:g} s CPU")
    print(f"warm: {warm_cpu:.2f} s CPU ({warm_wall:.2f} s wall), median of {len(warm)}   "
          f"target < {TARGETS['warm']:g} s CPU")
    print("each warm run: " + ", ".join(f"{c:.2f}" for c, _ in warm) + " s CPU")
    ratio = statistics.median(c / r for (c, _), r in zip(warm, reference))
    print(f"reference workload ({REFERENCE}) beside each warm run: "
          + ", ".join(f"{r:.2f}" for r in reference) + f" s CPU; warm report / reference: {ratio:.2f} (median)")
    met = cold[0] < TARGETS["cold"] and warm_cpu < TARGETS["warm"]
    print("targets met" if met else "targets NOT met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
