"""Single fits against the Python peers in ONE process, interleaved (issue 20; not part of the test suite).

On a shared, noisy machine the load changes between a peer's subprocess and ours, and bench_single_fit's
ratios move by 2x from run to run. Here each round times ours and the peer back to back (CPU time,
``time.process_time``) and the ratio is taken per round; the median over rounds is printed with its range.

Run with an interpreter that has the peers and this checkout on the path, e.g.
``PYTHONPATH=. /tmp/peers/bin/python benchmarks/bench_interleaved.py`` (pimeta, statsmodels from PyPI in
a throwaway venv; never project dependencies).
"""

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import pfps_meta as pm  # noqa: E402
from bench_single_fit import arm_table  # noqa: E402


def cpu(func, number):
    start = time.process_time()
    for _ in range(number):
        func()
    return (time.process_time() - start) / number


def compare(label, ours, peer, peer_label, number, rounds):
    ours(), peer()
    pairs = [(cpu(ours, number), cpu(peer, number)) for _ in range(rounds)]
    ratios = sorted(p / o for o, p in pairs)
    o, p = float(np.median([x[0] for x in pairs])), float(np.median([x[1] for x in pairs]))
    print(f"{label:58s} {o * 1e6:8.1f} us  {peer_label:34s} {p * 1e6:8.1f} us  ratio {np.median(ratios):5.2f}x "
          f"(rounds {ratios[0]:.2f} to {ratios[-1]:.2f})")


def main():
    import pimeta
    import statsmodels.stats.meta_analysis as sm

    warnings.simplefilter("ignore")
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 11
    arm = arm_table()
    cols = dict(m1i=arm.mean_exp, sd1i=arm.sd_exp, n1i=arm.n_exp, m2i=arm.mean_ctrl, sd2i=arm.sd_ctrl,
                n2i=arm.n_ctrl)
    res = pm.pool(arm, measure="MD", ci_method="hksj")
    yi, vi = res.studies["yi"].to_numpy(), res.studies["vi"].to_numpy()
    frame = pd.DataFrame({"study": arm["study"], "yi": yi, "vi": vi})
    compare("pm.pool(arm, MD, hksj) [tau2 CI included]", lambda: pm.pool(arm, measure="MD", ci_method="hksj"),
            lambda: (lambda e: pimeta.rma(e.yi, e.vi, test="knha"))(pimeta.escalc("MD", **cols)),
            "pimeta escalc + rma(knha)", 40, rounds)
    compare("pm.pool(yi/vi frame, hksj) [tau2 CI included]", lambda: pm.pool(frame, ci_method="hksj"),
            lambda: pimeta.rma(yi, vi, test="knha"), "pimeta rma(knha)", 40, rounds)
    for method in ("DL", "PM"):
        for text, settings in (("defaults", pm.Settings(method=method)),
                               ("tau2_ci=False", pm.Settings(method=method, tau2_ci=False)),
                               ("no tau2 CI, no fit statistics", pm.Settings(method=method, tau2_ci=False,
                                                                             fit_statistics=False))):
            compare(f"pool_batch one row {method} ({text})", lambda: pm.pool_batch(yi, vi, settings),
                    lambda: sm.combine_effects(yi, vi, method_re=method.lower()),
                    f"statsmodels combine_effects {method}", 200, rounds)
    from pfps_meta.models import fast

    if fast.available():
        y2, v2 = yi[None, :].copy(), vi[None, :].copy()
        fast.pool_rows(y2, v2)
        eps = np.finfo(float).eps
        walls = []
        for _ in range(rounds):
            loop = cpu(lambda: fast._pool_rows_kernel(y2, v2, 3, False, 1000, 1e-12, eps), 5000)
            walls.append((cpu(lambda: fast.pool_rows(y2, v2), 5000) - loop, loop))
        print(f"fast.pool_rows one row REML: wrapper {np.median([w[0] for w in walls]) * 1e6:.1f} us on top of the "
              f"compiled loop ({np.median([w[1] for w in walls]) * 1e6:.1f} us); target < 20 us")


if __name__ == "__main__":
    main()
