"""Issue 12's targets, measured (not part of the test suite).

Run:  python benchmarks/bench_simulate.py          (one thread; add --no-r to skip the metafor comparison)

1. 100,000 meta-analyses of k = 14, REML + HKSJ, no tau2 CI: the numpy core (pool_batch) and the compiled
   kernel (pfps_meta.models.fast); target 0.25 s on one core.
2. One REML fit from yi/vi at k = 14: pool_batch and the kernel; target 50 us.
3. Leave-one-out and influence at k = 5,000: time and peak memory of a fresh process; target < 300 MB.
4. The simulation engine: meta-analyses pooled per second (4 method x CI combinations each), and the
   trial-level rate behind simulate's refusal estimate (STUDY_FITS_PER_SECOND).
5. metafor in the same run (when Rscript and metafor are installed): rma(method = "REML", test = "knha")
   on 1,000 data sets of k = 14, per fit, and the ratio to ours.
"""

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import pfps_meta as pm  # noqa: E402
from bench_pool import best_of  # noqa: E402  (same folder)
from pfps_meta.models import fast


def data(rows, k, seed=2018):
    rng = np.random.default_rng(seed)
    vi = rng.uniform(0.05, 0.6, size=(rows, k))
    yi = rng.normal(-1.5, np.sqrt(vi + rng.uniform(0.0, 0.5, size=(rows, 1))))
    return yi, vi


def best(func, repeat=5, number=1):
    return best_of(func, repeat, number)


MEMORY_CHILD = """
import resource, sys, time, numpy as np, pandas as pd, pfps_meta as pm
from pfps_meta.analysis import sensitivity
rng = np.random.default_rng(1); k = 5000
vi = rng.uniform(0.05, 0.6, k); yi = rng.normal(-1, np.sqrt(vi + 0.2))
res = pm.pool(pd.DataFrame({"study": [f"s{i}" for i in range(k)], "yi": yi, "vi": vi}), method="REML", tau2_ci=False)
def hwm():   # peak resident memory of this process in MB (VmHWM; ru_maxrss would include the forking parent's)
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")) / 1024
before = hwm()
t = time.perf_counter(); sensitivity.leave_one_out(res); loo = time.perf_counter() - t
t = time.perf_counter(); sensitivity.influence(res); inf = time.perf_counter() - t
print(f"{loo:.2f} {inf:.2f} {before:.0f} {hwm():.0f}")
"""

R_SCRIPT = """
suppressPackageStartupMessages(library(metafor))
set.seed(2018); k <- 14; n <- 1000
t0 <- proc.time()[["elapsed"]]
for (i in seq_len(n)) {
  vi <- runif(k, 0.05, 0.6); yi <- rnorm(k, -1.5, sqrt(vi + runif(1, 0, 0.5)))
  res <- tryCatch(rma(yi, vi, method = "REML", test = "knha", control = list(maxiter = 1000, stepadj = 0.5)),
                  error = function(e) NULL)
}
cat((proc.time()[["elapsed"]] - t0) / n, "\\n")
"""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-r", action="store_true")
    args = parser.parse_args()
    print(f"numpy {np.__version__}; numba available: {fast.available()}; threads = 1")
    yi, vi = data(100_000, 14)
    numpy_big = best(lambda: pm.pool_batch(yi, vi, method="REML", ci_method="hksj", tau2_ci=False,
                                           fit_statistics=False), 3)
    print(f"100,000 x k=14 REML+HKSJ, numpy core:     best {numpy_big[0]:.3f} s  median {numpy_big[1]:.3f} s")
    if fast.available():
        start = time.perf_counter()
        fast.pool_rows(yi[:1], vi[:1])
        print(f"kernel first call (compile or load from cache): {time.perf_counter() - start:.2f} s")
        fast_big = best(lambda: fast.pool_rows(yi, vi, "REML", "hksj"), 5)
        print(f"100,000 x k=14 REML+HKSJ, compiled kernel: best {fast_big[0]:.3f} s  median {fast_big[1]:.3f} s")
    one_y, one_v = yi[:1], vi[:1]
    numpy_one = best(lambda: pm.pool_batch(one_y, one_v, method="REML", ci_method="hksj", tau2_ci=False,
                                           fit_statistics=False), 7, 200)
    print(f"one REML+HKSJ fit, k=14, numpy core:       best {numpy_one[0] * 1e6:.1f} us  median {numpy_one[1] * 1e6:.1f} us")
    if fast.available():
        fast_one = best(lambda: fast.pool_rows(one_y, one_v, "REML", "hksj"), 7, 2000)
        print(f"one REML+HKSJ fit, k=14, compiled kernel:  best {fast_one[0] * 1e6:.1f} us  median {fast_one[1] * 1e6:.1f} us")

    out = subprocess.run([sys.executable, "-c", MEMORY_CHILD], capture_output=True, text=True, check=True).stdout
    loo, inf, before, peak = out.split()
    print(f"k = 5,000: leave-one-out {loo} s, influence {inf} s; process peak {peak} MB (after setup {before} MB)")
    small = best(lambda: __import__("pfps_meta.analysis.sensitivity").sensitivity.leave_one_out(
        pm.pool(ROOT / "data" / "examples" / "normand1999.csv", measure="MD")), 5)
    print(f"leave-one-out at k = 9 (normand1999, incl. pool): {small[0] * 1e3:.1f} ms")

    from pfps_meta.analysis.simulate import STUDY_FITS_PER_SECOND, Design, simulate

    design = Design.from_range(14, 15, 60)
    for engine in (["numpy", "numba"] if fast.available() else ["numpy"]):
        start = time.perf_counter()
        res = simulate(design, tau2=(0.0, 0.1, 0.3), replicates=20_000, engine=engine, progress=False,
                       methods=("DL", "REML"), ci_methods=("wald", "hksj"))
        elapsed = time.perf_counter() - start
        fits = 3 * res.setup["replicates"] * 4
        pairs = 3 * res.setup["replicates"] * 2 * design.k      # trial-level fits, as simulate's work bound counts
        print(f"simulate ({engine}): 3 cells x {res.setup['replicates']:,} replicates x 4 method/CI = {fits:,} fits "
              f"in {elapsed:.2f} s ({fits / elapsed:,.0f} fits/s, data generation included; "
              f"{pairs / elapsed:.2g} trial-level fits/s, vs STUDY_FITS_PER_SECOND = "
              f"{STUDY_FITS_PER_SECOND[engine]:.2g})")

    if not args.no_r and shutil.which("Rscript"):
        with tempfile.NamedTemporaryFile("w", suffix=".R", delete=False) as handle:
            handle.write(R_SCRIPT)
        r = subprocess.run(["Rscript", handle.name], capture_output=True, text=True)
        if r.returncode == 0:
            per_fit = float(r.stdout.split()[0])
            print(f"metafor rma(REML, knha), k=14: {per_fit * 1e6:.0f} us per fit; 100,000 fits ~ {per_fit * 1e5:.0f} s")
            print(f"ratio metafor / numpy core (100,000 fits): {per_fit * 1e5 / numpy_big[0]:.0f}x")
            if fast.available():
                print(f"ratio metafor / compiled kernel (100,000 fits): {per_fit * 1e5 / fast_big[0]:.0f}x")
        else:
            print("metafor comparison skipped: " + r.stderr.strip().splitlines()[-1])


if __name__ == "__main__":
    from pathlib import Path

    ROOT = Path(__file__).resolve().parents[1]
    main()
