"""Benchmarks for the pooling core (not part of the test suite).

Run:  python benchmarks/bench_pool.py   (add --quick for a short run)

1. One REML fit at k = 14 through ``pool_batch`` (with and without the Q-profile tau2 CI), and
   through the full pandas API ``pool`` (validation, effect sizes, result object).
2. 100,000 meta-analyses of k = 14 pooled with REML + HKSJ in one ``pool_batch`` call.
3. Sensitivity analyses on the batch core: leave-one-out, influence, an exact permutation test, a bootstrap.
Single-threaded numbers: set OMP/OPENBLAS threads to 1 before numpy loads.
"""

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse  # noqa: E402
import platform  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from timing import best_of  # noqa: E402

import pfps_meta as pm  # noqa: E402




def simulate(rows, k, seed=2018):
    rng = np.random.default_rng(seed)
    vi = rng.uniform(0.05, 0.6, size=(rows, k))
    tau2 = rng.uniform(0.0, 0.5, size=(rows, 1))
    yi = rng.normal(-1.5, np.sqrt(vi + tau2))
    return yi, vi


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rows = 10_000 if args.quick else 100_000
    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}, "
          f"threads={os.environ['OMP_NUM_THREADS']}")

    yi, vi = simulate(1, 14)
    for label, kwargs in (("pool_batch REML, k=14 (with Q-profile tau2 CI)", {}),
                          ("pool_batch REML, k=14 (no tau2 CI)", {"tau2_ci": False})):
        best, median = best_of(lambda: pm.pool_batch(yi, vi, method="REML", **kwargs), 7, 200)
        print(f"{label:55s} best {best * 1e6:8.1f} us   median {median * 1e6:8.1f} us")
    frame = pd.DataFrame({"study": [f"s{i}" for i in range(14)], "yi": yi[0], "vi": vi[0]})
    best, median = best_of(lambda: pm.pool(frame, method="REML"), 5, 50)
    print(f"{'pool(DataFrame) REML, k=14 (full API)':55s} best {best * 1e6:8.1f} us   median {median * 1e6:8.1f} us")

    yi, vi = simulate(rows, 14)
    best, median = best_of(lambda: pm.pool_batch(yi, vi, method="REML", ci="hksj"), 3, 1)
    print(f"{f'pool_batch REML+HKSJ, {rows:,} x k=14':55s} best {best:8.3f} s    median {median:8.3f} s")
    best, median = best_of(lambda: pm.pool_batch(yi, vi, method="REML", ci="hksj", tau2_ci=False), 3, 1)
    print(f"{f'pool_batch REML+HKSJ, {rows:,} x k=14 (no tau2 CI)':55s} best {best:8.3f} s    median {median:8.3f} s")




def sensitivity_benchmarks():
    """Sensitivity analyses on the batch core at k = 14 (REML)."""
    import warnings

    from pfps_meta.analysis import sensitivity

    yi, vi = simulate(1, 14, seed=7)
    res = pm.pool(pd.DataFrame({"study": [f"s{i}" for i in range(14)], "yi": yi[0], "vi": vi[0]}), method="REML")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for label, func in (("leave-one-out, k=14", lambda: sensitivity.leave_one_out(res)),
                            ("influence diagnostics, k=14", lambda: sensitivity.influence(res)),
                            ("exact permutation test, 2^14 = 16,384 refits", lambda: sensitivity.permutation_test(res)),
                            ("bootstrap tau2, 10,000 resamples", lambda: sensitivity.bootstrap_tau2(res, 10_000))):
            best, median = best_of(func, 3, 1)
            print(f"{label:55s} best {best * 1e3:8.1f} ms   median {median * 1e3:8.1f} ms")


if __name__ == "__main__":
    main()
    sensitivity_benchmarks()
