"""Single fits, side by side with the peers, in one run (issue 20; not part of the test suite).

Run:  python benchmarks/bench_single_fit.py [--quick] [--peer-python PATH] [--no-r]

Every row is CPU time per call (``time.process_time``; R's ``proc.time``), the median of several
repeats of a loop, and ``ratio = peer / ours`` (above 1: we are faster). The data are one simulated arm
table of k = 14 trials, written to a CSV that every tool reads once before timing:

- ``pm.pool(arm, measure="MD", ci_method="hksj")`` (default outputs: the Q-profile tau2 CI included)
  against metafor ``rma(measure="MD", m1i=..., test="knha")`` + ``confint()`` through Rscript, and
  against pimeta ``escalc("MD", ...)`` + ``rma(test="knha")``.
- that call in its two halves: the input side (``checked_effects``) and the fit + result build
  (``univariate._fit_one``, against the brief's target of 250 us; ``pooling.pool_one`` is the fit alone).
- ``pm.pool(yi_vi_frame, ci_method="hksj")`` against pimeta ``rma(yi, vi, test="knha")``.
- ``pool_batch`` on one row (DL, PM; with and without the tau2 CI) against statsmodels
  ``combine_effects(method_re="dl"|"pm")``.
- one ``fast.pool_rows`` call against the compiled loop alone (the wrapper's cost).
- leave-one-out at k = 200 and a comparison of every preset, against one fit.
- ``import pfps_meta`` against ``import numpy, pandas, scipy.special`` (fresh interpreters, wall time).

The peers (pimeta, PyMARE, statsmodels) are never project dependencies: give ``--peer-python`` an
interpreter of a throwaway environment that has them, e.g.
``python -m venv /tmp/peers && /tmp/peers/bin/pip install pimeta PyMARE statsmodels``.
"""

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import textwrap  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))          # this checkout, not whatever copy is installed

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import pfps_meta as pm  # noqa: E402

K = 14


def cpu_per_call(func, number, repeat=7):
    """Median over ``repeat`` loops of ``number`` calls of the CPU time per call (seconds)."""
    times = []
    for _ in range(repeat):
        start = time.process_time()
        for _ in range(number):
            func()
        times.append((time.process_time() - start) / number)
    return float(np.median(times))


def arm_table(k=K, seed=2018):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"study": [f"trial{i + 1}" for i in range(k)],
                         "n_exp": rng.integers(15, 61, k), "mean_exp": np.round(rng.normal(2.0, 1.0, k), 2),
                         "sd_exp": np.round(rng.uniform(1.0, 3.0, k), 2),
                         "n_ctrl": rng.integers(15, 61, k), "mean_ctrl": np.round(rng.normal(3.0, 1.0, k), 2),
                         "sd_ctrl": np.round(rng.uniform(1.0, 3.0, k), 2)})


PEER_SCRIPT = textwrap.dedent('''
    import json, os, sys, time, warnings
    import numpy as np, pandas as pd
    warnings.simplefilter("ignore")
    arm = pd.read_csv(sys.argv[1]); number = int(sys.argv[2])
    def cpu(func, n, repeat=7):
        out = []
        for _ in range(repeat):
            s = time.process_time()
            for _ in range(n):
                func()
            out.append((time.process_time() - s) / n)
        return float(np.median(out))
    res = {}
    import pimeta
    cols = dict(m1i=arm.mean_exp, sd1i=arm.sd_exp, n1i=arm.n_exp, m2i=arm.mean_ctrl, sd2i=arm.sd_ctrl, n2i=arm.n_ctrl)
    es = pimeta.escalc("MD", **cols)
    yi, vi = np.asarray(es.yi, float), np.asarray(es.vi, float)
    fit = pimeta.rma(yi, vi, test="knha")
    res["pimeta_check"] = [float(np.ravel(fit.b)[0]), float(fit.tau2)]
    res["pimeta_arm"] = cpu(lambda: (lambda e: pimeta.rma(e.yi, e.vi, test="knha"))(pimeta.escalc("MD", **cols)), number)
    res["pimeta_yivi"] = cpu(lambda: pimeta.rma(yi, vi, test="knha"), number)
    res["pimeta_yivi_confint"] = cpu(lambda: pimeta.confint(pimeta.rma(yi, vi, test="knha")), number)
    import statsmodels.stats.meta_analysis as sm
    res["statsmodels_dl"] = cpu(lambda: sm.combine_effects(yi, vi, method_re="dl"), 5 * number)
    res["statsmodels_pm"] = cpu(lambda: sm.combine_effects(yi, vi, method_re="pm"), 5 * number)
    res["yi"], res["vi"] = yi.tolist(), vi.tolist()
    try:
        import pymare
        ds = pymare.Dataset(y=yi, v=vi)
        res["pymare_reml"] = cpu(lambda: pymare.estimators.VarianceBasedLikelihoodEstimator("REML").fit_dataset(ds).summary(), number)
    except Exception as exc:      # PyMARE is optional here
        res["pymare_error"] = repr(exc)
    print(json.dumps(res))
''')

R_SCRIPT = textwrap.dedent('''
    suppressPackageStartupMessages(library(metafor))
    args <- commandArgs(TRUE); arm <- read.csv(args[1]); n <- as.integer(args[2])
    fit <- function() rma(measure = "MD", m1i = mean_exp, sd1i = sd_exp, n1i = n_exp, m2i = mean_ctrl,
                          sd2i = sd_ctrl, n2i = n_ctrl, data = arm, test = "knha")
    cpu <- function(f) {
      out <- numeric(7)
      for (r in 1:7) { t0 <- proc.time(); for (i in 1:n) f(); t1 <- proc.time() - t0; out[r] <- (t1[[1]] + t1[[2]]) / n }
      median(out)
    }
    res <- list(rma = cpu(fit), rma_confint = cpu(function() confint(fit())),
                check = c(coef(fit())[[1]], fit()$tau2))
    cat(jsonlite::toJSON(res, digits = NA, auto_unbox = TRUE))
''')


def run_peers(csv, peer_python, use_r, number):
    out = {}
    if peer_python:
        proc = subprocess.run([peer_python, "-c", PEER_SCRIPT, str(csv), str(number)], capture_output=True,
                              text=True, env={**os.environ, "PYTHONPATH": ""})
        if proc.returncode == 0:
            out.update(json.loads(proc.stdout.strip().splitlines()[-1]))
        else:
            print("peer python failed:", proc.stderr.strip().splitlines()[-1:], file=sys.stderr)
    if use_r and shutil.which("Rscript"):
        proc = subprocess.run(["Rscript", "-e", R_SCRIPT, str(csv), str(max(20, number // 5))],
                              capture_output=True, text=True)
        if proc.returncode == 0:
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            out.update(metafor_rma=r["rma"], metafor_rma_confint=r["rma_confint"], metafor_check=r["check"])
        else:
            print("Rscript failed:", proc.stderr.strip()[-300:], file=sys.stderr)
    return out


def import_times(repeat):
    """Median wall time of a fresh interpreter importing pfps_meta, and the baseline, taken in turn.

    Every interpreter reads bytecode from one folder of this run (``PYTHONPYCACHEPREFIX``, written by an
    unmeasured first import; ``PYTHONDONTWRITEBYTECODE``, which this machine sets, is lifted): without it
    pfps_meta's modules, installed editable, would be compiled from source on every import while numpy's
    and pandas' come precompiled from site-packages, which is not what a user's second import does."""
    with tempfile.TemporaryDirectory(prefix="bench-import-") as prefix:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONPYCACHEPREFIX": prefix}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        codes = {"interpreter": "pass", "baseline": "import numpy, pandas, scipy.special", "pfps_meta": "import pfps_meta"}
        for code in codes.values():
            subprocess.run([sys.executable, "-c", code], check=True, env=env)         # writes the bytecode
        times = {name: [] for name in codes}
        for _ in range(repeat):
            for name, code in codes.items():
                start = time.perf_counter()
                subprocess.run([sys.executable, "-c", code], check=True, env=env)
                times[name].append(time.perf_counter() - start)
    return {name: float(np.median(values)) for name, values in times.items()}


def _split_of_one_fit(arm, number):
    """pm.pool(arm, MD, hksj) in its two halves: the input side (inputs.validate.checked_effects: checks and
    escalc, no DataFrame) and the fit with the result build (univariate._fit_one: pooling, the tau2 CI,
    MetaResult), the latter against its target of 250 us (issue 20's brief; ratio = target / ours, above 1:
    met); and the fit alone (pooling.pool_one)."""
    from pfps_meta.inputs.validate import checked_effects
    from pfps_meta.models import pooling, univariate

    settings = pooling.resolve_settings(None, {"ci_method": "hksj"})
    checked = checked_effects(arm, "MD", settings=settings)
    t_in = cpu_per_call(lambda: checked_effects(arm, "MD", settings=settings), number)
    t_fit = cpu_per_call(lambda: univariate._fit_one(checked.yi, checked.vi, "MD", settings, [], None, checked.attrs,
                                                     lambda: checked.frame), 5 * number)
    t_one = cpu_per_call(lambda: pooling.pool_one(checked.yi, checked.vi, settings), 5 * number)
    return [("  of which the input side (inputs.validate.checked_effects)", t_in, "", None),
            ("  of which the fit + result build (univariate._fit_one)", t_fit, "target (brief)", 250e-6),
            ("    of which the fit alone (pooling.pool_one)", t_one, "", None)]


def measure(arm, csv, peer_python, use_r, number):
    """One run: every row as (label, ours, peer label, peer) in seconds of CPU per call."""
    peers = run_peers(csv, peer_python, use_r, number)
    rows = []
    res = pm.pool(arm, measure="MD", ci_method="hksj")
    frame = pd.DataFrame({"study": arm["study"], "yi": res.studies["yi"], "vi": res.studies["vi"]})
    yi, vi = frame["yi"].to_numpy(), frame["vi"].to_numpy()
    if "metafor_check" in peers:
        print(f"  check vs metafor: estimate {res.estimate:.10g} / {peers['metafor_check'][0]:.10g}, "
              f"tau2 {res.tau2:.10g} / {peers['metafor_check'][1]:.10g}")
    t_arm = cpu_per_call(lambda: pm.pool(arm, measure="MD", ci_method="hksj"), number)
    label = "pm.pool(arm, MD, hksj) [tau2 CI included]"
    for key, peer_label in (("metafor_rma_confint", "metafor rma(knha) + confint"),
                            ("metafor_rma", "metafor rma(knha)"), ("pimeta_arm", "pimeta escalc + rma(knha)")):
        rows.append((label, t_arm, peer_label, peers.get(key)))
    rows.extend(_split_of_one_fit(arm, number))
    t_yv = cpu_per_call(lambda: pm.pool(frame, ci_method="hksj"), number)
    label = "pm.pool(yi/vi frame, hksj) [tau2 CI included]"
    rows.append((label, t_yv, "pimeta rma(knha)", peers.get("pimeta_yivi")))
    rows.append((label, t_yv, "pimeta rma(knha) + confint", peers.get("pimeta_yivi_confint")))
    for method in ("DL", "PM"):
        peer = peers.get(f"statsmodels_{method.lower()}")
        peer_label = f"statsmodels combine_effects {method}"
        for text, settings in (("defaults, tau2 CI", pm.Settings(method=method)),
                               ("tau2_ci=False", pm.Settings(method=method, tau2_ci=False)),
                               ("no tau2 CI, no loglik/AIC: statsmodels' outputs",
                                pm.Settings(method=method, tau2_ci=False, fit_statistics=False))):
            rows.append((f"pool_batch one row {method} ({text})",
                         cpu_per_call(lambda: pm.pool_batch(yi, vi, settings), 5 * number), peer_label, peer))
    if "pymare_reml" in peers:
        rows.append(("pool_batch one row REML (defaults)", cpu_per_call(lambda: pm.pool_batch(yi, vi), 5 * number),
                     "PyMARE REML fit + summary", peers["pymare_reml"]))
    from pfps_meta.models import fast
    if fast.available():
        y2, v2 = yi[None, :].copy(), vi[None, :].copy()
        fast.pool_rows(y2, v2)
        eps = np.finfo(float).eps
        loop = cpu_per_call(lambda: fast._pool_rows_kernel(y2, v2, 3, False, 1000, 1e-12, eps), 25 * number)
        call = cpu_per_call(lambda: fast.pool_rows(y2, v2), 25 * number)
        rows.append(("fast.pool_rows one row REML: wrapper = call - compiled loop", call - loop,
                     f"(compiled loop alone {loop * 1e6:.1f} us)", None))
    from pfps_meta.analysis import presets, sensitivity
    big = arm_table(200, seed=7)
    one = cpu_per_call(lambda: pm.pool(big, measure="MD"), max(5, number // 10))
    loo = cpu_per_call(lambda: sensitivity.leave_one_out(pm.pool(big, measure="MD")), max(3, number // 40))
    rows.append(("pm.pool + leave_one_out, k = 200 (peer column: one pm.pool at k = 200)", loo, "one fit", one))
    names = list(presets.PRESETS)
    compare = cpu_per_call(lambda: [pm.pool(arm, measure="MD", settings=presets.preset(n).settings).stats
                                    for n in names], max(5, number // 10))
    rows.append((f"comparison of {len(names)} presets, k = {K} (peer: one fit)", compare, "one fit", t_arm))
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, default=3, help="whole runs; the ratios printed are their medians")
    parser.add_argument("--peer-python", default=os.environ.get("PEER_PYTHON", "/tmp/peers/bin/python"))
    parser.add_argument("--no-r", action="store_true")
    args = parser.parse_args()
    number = 40 if args.quick else 200
    peer_python = args.peer_python if Path(args.peer_python).exists() else None
    warnings.simplefilter("ignore")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "arm.csv"
        arm_table().to_csv(csv, index=False)
        arm = pd.read_csv(csv)
        for run in range(args.runs):
            print(f"run {run + 1} of {args.runs}")
            runs.append(measure(arm, csv, peer_python, not args.no_r, number))
    print(f"\nk = {K}; CPU time per call: median of 7 loops per run, then the median over {args.runs} runs; "
          "ratio = peer / ours (above 1: we are faster)")
    for i, (label, _, peer_label, _) in enumerate(runs[0]):
        ours = float(np.median([r[i][1] for r in runs]))
        peers = [r[i][3] for r in runs if r[i][3] is not None]
        ratios = [r[i][3] / r[i][1] for r in runs if r[i][3] is not None]
        text = f"{label:70s} {ours * 1e6:9.1f} us"
        if peers:
            text += (f"   {peer_label:36s} {float(np.median(peers)) * 1e6:9.1f} us   ratio {float(np.median(ratios)):6.2f}x"
                     f"  (runs: {', '.join(f'{x:.2f}' for x in ratios)})")
        elif peer_label:
            text += f"   {peer_label}"
        print(text)
    imports = import_times(3 if args.quick else 7)
    net = {key: value - imports["interpreter"] for key, value in imports.items() if key != "interpreter"}
    print(f"{'import pfps_meta (wall, fresh interpreter, net of its startup)':70s} {net['pfps_meta'] * 1e3:9.1f} ms"
          f"   import numpy, pandas, scipy.special {net['baseline'] * 1e3:.1f} ms   "
          f"ratio {net['pfps_meta'] / net['baseline']:.2f} (target < 1.2)")


if __name__ == "__main__":
    main()
