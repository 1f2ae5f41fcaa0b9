"""Benchmark for network meta-analysis (not part of the test suite), with metafor in the same run.

Run:  python benchmarks/bench_network.py   (--quick for a smaller network; --no-r to skip metafor)

A random connected network of 50 treatments and 500 studies (arm-level mean differences; 20% of the
studies have three arms), fitted by REML with one tau² and correlation 1/2 between a multi-arm
study's contrasts. Ours: ``pm.network`` from the arm table (building the contrasts and their exact
covariance included). metafor: the same contrasts and V, ``rma.mv(yi, V, mods = ~ X - 1, random =
~ comp | study, rho = 1/2)``, timed inside R with ``system.time`` (R's start-up not counted).
The ratio is metafor / ours: above 1 means we are faster.
"""

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from timing import best_of  # noqa: E402

R_TIMING = r"""
suppressMessages(library(metafor))
args <- commandArgs(trailingOnly = TRUE)
arms <- read.csv(args[1], stringsAsFactors = FALSE)
treatments <- sort(unique(arms$treatment))
reference <- treatments[1]
rows <- list(); blocks <- list()
for (s in unique(arms$study)) {
  a <- arms[arms$study == s, ]
  base <- a[1, ]
  v0 <- base$sd^2 / base$n
  others <- a[-1, ]
  rows[[length(rows) + 1]] <- data.frame(study = s, t1 = others$treatment, t2 = base$treatment,
                                         yi = others$mean - base$mean)
  vi <- others$sd^2 / others$n + v0
  B <- matrix(v0, nrow(others), nrow(others)); diag(B) <- vi
  blocks[[length(blocks) + 1]] <- B
}
dat <- do.call(rbind, rows)
V <- bldiag(blocks)
X <- sapply(treatments[-1], function(t) (dat$t1 == t) - (dat$t2 == t))
dat$comp <- paste(dat$t1, dat$t2)
reps <- as.integer(args[2])
fit <- rma.mv(dat$yi, V, mods = X, intercept = FALSE, random = ~ comp | study, rho = 1/2, data = dat)
t <- system.time(for (i in seq_len(reps))
  rma.mv(dat$yi, V, mods = X, intercept = FALSE, random = ~ comp | study, rho = 1/2, data = dat))[["elapsed"]]
cat(sprintf('{"seconds_per_fit": %.9g, "tau2": %.12g, "first": %.12g}\n', t / reps, fit$tau2, coef(fit)[[1]]))
"""


def random_network(n_treatments, n_studies, three_arm_share=0.2, seed=2018):
    rng = np.random.default_rng(seed)
    names = [f"T{i:02d}" for i in range(n_treatments)]
    effects = rng.normal(0, 1, n_treatments)
    rows = []
    for s in range(n_studies):
        if s < n_treatments - 1:          # a spanning chain keeps the network connected
            chosen = [s, s + 1]
        else:
            size = 3 if rng.random() < three_arm_share else 2
            chosen = list(rng.choice(n_treatments, size=size, replace=False))
        study_effect = rng.normal(0, 0.3)
        for t in chosen:
            n = int(rng.integers(20, 120))
            sd = float(rng.uniform(1, 3))
            mean = effects[t] + study_effect + rng.normal(0, 0.3) + rng.normal(0, sd / np.sqrt(n))
            rows.append({"study": f"s{s:03d}", "treatment": names[t], "n": n, "mean": mean, "sd": sd})
    return pd.DataFrame(rows)




def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-r", action="store_true")
    args = parser.parse_args()
    import pfps_meta as pm

    size = (10, 60) if args.quick else (50, 500)
    arms = random_network(*size)
    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}, "
          f"threads={os.environ['OMP_NUM_THREADS']}; network of {size[0]} treatments, {size[1]} studies, "
          f"{len(arms)} arms")
    reference = sorted(arms["treatment"].unique())[0]

    def fit():
        return pm.network(arms, measure="MD", reference=reference, method="REML")

    net = fit()
    best, median = best_of(fit, 3, 3)
    print(f"{'ours: pm.network REML from the arm table':50s} best {best * 1e3:9.1f} ms   median {median * 1e3:9.1f} ms")
    if not args.no_r and shutil.which("Rscript"):
        with tempfile.TemporaryDirectory() as tmp:
            csv, script = Path(tmp) / "arms.csv", Path(tmp) / "time.R"
            arms.to_csv(csv, index=False)
            script.write_text(R_TIMING)
            out = subprocess.run(["Rscript", str(script), str(csv), "1" if args.quick else "2"],
                                 capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{'metafor rma.mv (default control), same contrasts':50s} {r['seconds_per_fit'] * 1e3:9.1f} ms per fit")
        print(f"{'ratio metafor / ours (median)':50s} {r['seconds_per_fit'] / median:9.1f}x")
        print(f"{'tau² (ours vs metafor default control)':50s} {net.to_dict()['tau2']:.6f} vs {r['tau2']:.6f}")
    else:
        print("metafor: skipped (no Rscript or --no-r)")


if __name__ == "__main__":
    main()
