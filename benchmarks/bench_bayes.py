"""Benchmark of the exact Bayesian random-effects model (not part of the test suite).

Run:  python benchmarks/bench_bayes.py   (--quick: 10,000 meta-analyses; --no-r: skip the R timing)

1. ``bayes_batch``: 100,000 meta-analyses of k = 5 (yi ~ N(0.3, v_i + 0.1), v_i ~ U(0.02, 0.2)), tau ~
   half-normal(0.5), flat prior for mu, one core. Method: per meta-analysis, a 160-point scan of log tau
   finds the posterior's range, then 20 panels x 12-point Gauss-Legendre on it (241 components with the
   point mass at tau_min); the summaries are mu's median, mean, SD and central 95% interval, tau's
   median and interval, and theta_new's interval (normal-mixture quantiles by safeguarded Newton).
2. ``bayes`` on one meta-analysis (every summary, shortest intervals and shrinkage included).
3. For scale: one meta-analysis's mu median and central interval by R's integrate() + uniroot() (the
   reference quadrature of validation/make_bayes_fixtures.R), timed inside R. R bayesmeta, the package
   the issue names, is not installable here (no CRAN access, not a Debian package), so it is not timed.
Single-threaded: OMP/OPENBLAS threads are set to 1 before numpy loads.
"""

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from timing import best_of  # noqa: E402

from pfps_meta.models.bayes import METHOD_TEXT, bayes, bayes_batch  # noqa: E402

R_TIMING = r"""
args <- commandArgs(trailingOnly = TRUE)
y <- as.numeric(strsplit(args[1], ",")[[1]]); v <- as.numeric(strsplit(args[2], ",")[[1]])
reps <- as.integer(args[3])
one <- function() {
  ll <- function(u) sapply(u, function(uu) { w <- 1 / (v + exp(2 * uu)); m <- sum(w * y) / sum(w)
    0.5 * sum(log(w)) - 0.5 * log(sum(w)) - 0.5 * sum(w * (y - m)^2) })
  mcond <- function(u) sapply(u, function(uu) { w <- 1 / (v + exp(2 * uu)); c(sum(w * y) / sum(w), 1 / sum(w)) })
  lf <- function(u) log(2) + dnorm(exp(u), 0, 0.5, log = TRUE) + u + ll(u)
  mode <- optimize(function(u) -lf(u), c(-15, 5))$minimum; c0 <- lf(mode)
  f <- function(u) exp(lf(u) - c0)
  int2 <- function(g) integrate(g, -Inf, mode, rel.tol = 1e-10)$value +
    integrate(g, mode, mode + 50, rel.tol = 1e-10)$value           # split at the mode, as the fixtures do
  Z <- int2(f)
  cdf <- function(x) int2(function(u) { mc <- mcond(u); pnorm((x - mc[1, ]) / sqrt(mc[2, ])) * f(u) }) / Z
  sapply(c(0.5, 0.025, 0.975), function(p) uniroot(function(x) cdf(x) - p, c(-10, 10), tol = 1e-12)$root)
}
t <- system.time(for (i in seq_len(reps)) out <- one())[["elapsed"]]
cat(sprintf("%.9g %.10g %.10g %.10g\n", t / reps, out[1], out[2], out[3]))
"""


def data(rows, k=5, seed=2018):
    rng = np.random.default_rng(seed)
    v = rng.uniform(0.02, 0.2, (rows, k))
    y = 0.3 + rng.normal(0.0, np.sqrt(v + 0.1))
    return y, v


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-r", action="store_true")
    args = parser.parse_args()
    rows = 10_000 if args.quick else 100_000
    y, v = data(rows)
    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}, one core")
    print(f"method: {METHOD_TEXT}")
    bayes_batch(y[:100], v[:100])                      # imports and first-call set-up, not timed
    start = time.perf_counter()
    out = bayes_batch(y, v, tau_prior="half-normal:0.5")
    seconds = time.perf_counter() - start
    assert np.all(np.isfinite(out["mu_lower"])) and np.all(np.isfinite(out["tau_upper"]))
    print(f"1. bayes_batch: {rows:,} meta-analyses of k = 5, half-normal(0.5): {seconds:.2f} s "
          f"({1e6 * seconds / rows:.1f} us per meta-analysis)")
    best, median = best_of(lambda: bayes(yi=y[0], vi=v[0], tau_prior="half-normal:0.5"), repeat=5, number=3)
    print(f"2. bayes (one analysis, every summary): best {1e3 * best:.1f} ms, median {1e3 * median:.1f} ms")
    if args.no_r or not shutil.which("Rscript"):
        print("3. R: skipped")
        return
    reps = 5
    text = subprocess.run(["Rscript", "-e", R_TIMING, ",".join(repr(float(x)) for x in y[0]), ",".join(repr(float(x)) for x in v[0]), str(reps)],
                          capture_output=True, text=True, check=True).stdout.split()
    r_seconds = float(text[0])
    ours = out["mu_median"][0], out["mu_lower"][0], out["mu_upper"][0]
    agree = max(abs(a / float(b) - 1) for a, b in zip(ours, text[1:]))
    print(f"3. R integrate() + uniroot(), mu median and 95% interval of one meta-analysis: {1e3 * r_seconds:.0f} ms "
          f"per analysis (ours in the batch: {1e6 * seconds / rows:.1f} us; agreement {agree:.1e} relative). "
          "R bayesmeta is not installable here, so it is not timed.")


if __name__ == "__main__":
    main()
