"""Benchmarks for the multilevel engine (not part of the test suite), with metafor in the same run.

Run:  python benchmarks/bench_multilevel.py   (add --quick for a short run; --no-r to skip metafor)

1. A three-level model (``random = ~ 1 | cluster/effect``), REML, 1,000 effects in 100 clusters: ours
   in-process against metafor's ``rma.mv`` timed inside R (``system.time`` over repeated fits, so R's
   start-up is not counted), both on the same data (written to a temporary CSV). The ratio is
   metafor / ours: above 1 means we are faster.
2. 50,000 effects in 5,000 clusters: wall time and peak resident memory of one fit in a fresh process.
3. CR2 cluster-robust inference on the fit of 1.
Single-threaded numbers: OMP/OPENBLAS threads are set to 1 before numpy loads.
"""

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from timing import best_of  # noqa: E402

R_TIMING = r"""
suppressMessages(library(metafor))
args <- commandArgs(trailingOnly = TRUE)
dat <- read.csv(args[1])
reps <- as.integer(args[2])
t <- system.time(for (i in seq_len(reps)) fit <- rma.mv(yi, vi, random = ~ 1 | cluster/effect, data = dat))[["elapsed"]]
cat(sprintf('{"seconds_per_fit": %.9g, "estimate": %.12g, "sigma2": [%.12g, %.12g]}\n', t / reps,
            coef(fit)[[1]], fit$sigma2[1], fit$sigma2[2]))
"""


def three_level(n_clusters, per_cluster, seed=2018):
    rng = np.random.default_rng(seed)
    cluster = np.repeat(np.arange(n_clusters), per_cluster)
    effect = np.tile(np.arange(per_cluster), n_clusters)
    u = rng.normal(0.0, np.sqrt(0.06), n_clusters)[cluster]
    w = rng.normal(0.0, np.sqrt(0.03), cluster.size)
    vi = rng.uniform(0.01, 0.2, cluster.size)
    yi = 0.2 + u + w + rng.normal(0.0, np.sqrt(vi))
    return pd.DataFrame({"cluster": cluster, "effect": effect, "yi": yi, "vi": vi})




def large_fit_in_fresh_process(n_clusters, per_cluster):
    code = f"""
import os, resource, time, json
for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(v, "1")
import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})
from bench_multilevel import three_level
import pfps_meta as pm
data = three_level({n_clusters}, {per_cluster})
start = time.perf_counter()
fit = pm.multilevel(data, yi="yi", vi="vi", levels=("cluster", "effect"))
seconds = time.perf_counter() - start
print(json.dumps({{"seconds": seconds, "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                   "estimate": float(fit.to_dict()["coefficients"][0]["estimate"])}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-r", action="store_true")
    args = parser.parse_args()
    import pfps_meta as pm

    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}, "
          f"threads={os.environ['OMP_NUM_THREADS']}")
    data = three_level(100, 10)
    fit = pm.multilevel(data, yi="yi", vi="vi", levels=("cluster", "effect"))
    repeat, number = (3, 3) if args.quick else (5, 10)
    best, median = best_of(lambda: pm.multilevel(data, yi="yi", vi="vi", levels=("cluster", "effect")),
                           repeat, number)
    print(f"{'ours: three-level REML, 1,000 effects / 100 clusters':58s} best {best * 1e3:8.2f} ms   "
          f"median {median * 1e3:8.2f} ms")
    if not args.no_r and shutil.which("Rscript"):
        with tempfile.TemporaryDirectory() as tmp:
            csv = Path(tmp) / "three_level.csv"
            script = Path(tmp) / "time.R"
            data.to_csv(csv, index=False)
            script.write_text(R_TIMING)
            reps = 1      # metafor takes minutes per fit at this size
            out = subprocess.run(["Rscript", str(script), str(csv), str(reps)], capture_output=True, text=True,
                                 check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
        ours_est = fit.to_dict()["coefficients"][0]["estimate"]
        print(f"{'metafor rma.mv (default control), same data':58s} {r['seconds_per_fit'] * 1e3:8.2f} ms per fit")
        print(f"{'ratio metafor / ours (median)':58s} {r['seconds_per_fit'] / median:8.1f}x")
        print(f"{'estimates (ours vs metafor default control)':58s} {ours_est:.6f} vs {r['estimate']:.6f}")
    else:
        print("metafor: skipped (no Rscript or --no-r)")

    best, median = best_of(lambda: fit.robust(cluster="cluster", adjust="CR2"), 3, 3)
    print(f"{'ours: CR2 robust on that fit':58s} best {best * 1e3:8.2f} ms   median {median * 1e3:8.2f} ms")

    big_data = three_level(500 if args.quick else 5000, 10)
    best, median = best_of(lambda: pm.vcalc(big_data, vi="vi", cluster="cluster", obs="effect", rho=0.6), 3, 1)
    print(f"{f'ours: vcalc rho = 0.6, {len(big_data):,} effects / {big_data.cluster.nunique():,} clusters':58s} "
          f"best {best:8.3f} s    median {median:8.3f} s")

    big = (500, 10) if args.quick else (5000, 10)
    result = large_fit_in_fresh_process(*big)
    print(f"{f'ours: {big[0] * big[1]:,} effects / {big[0]:,} clusters, one fit (fresh process)':58s} "
          f"{result['seconds']:8.2f} s   peak RSS {result['max_rss_mb']:8.0f} MB")


if __name__ == "__main__":
    main()
