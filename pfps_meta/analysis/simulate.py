"""Simulation of meta-analyses of a given shape: how often does each method's CI (and PI) cover the truth?

For a design (k trials with their arm sizes, or k trials with given sampling variances), a true average
effect ``mu`` and a grid of between-trial variances ``tau2``, every replicate draws each trial's true
effect ``theta_i ~ N(mu, tau2)``, then arm-level data (group means with their sampling error and sample
SDs from the chi-square distribution, so the SMD's small-sample bias and its variance's dependence on
the estimate are real), computes the effect sizes with the measure's registry function, and pools the
replicate with every requested tau2 estimator x CI method; every PI rule is evaluated on the same fit.
A design given by variances draws ``y_i ~ N(theta_i, v_i)`` directly (the normal-normal model).

Reported per grid cell and method: coverage of the CI; coverage of the PI (the expected share of true
trial effects, ``N(mu, tau2)``, inside it); bias, RMSE and mean CI width of the estimate; the rejection
rate of ``H0: effect = 0`` (type I error when ``mu = 0``, power otherwise); non-converged fits; each with
its Monte Carlo standard error (Morris, White & Crowther 2019, Stat Med 38:2074, Table 6).

Reproducible by construction: replicates come in blocks of ``BLOCK`` (a constant), and block ``b`` of grid
cell ``c`` draws from ``SeedSequence(seed, spawn_key=(c, b))``. Each block's sums are computed on their
own and added up in block order, so a run gives bit-identical results whatever the number of blocks
per task and the number of workers, in-process or on Dask (``client=``). No scheduler of our own: a task
list for ``dask.distributed`` (``client="local"`` starts a ``LocalCluster``; an address string connects to
a running scheduler).
"""

from __future__ import annotations

import itertools
import sys
import time
import warnings
from dataclasses import dataclass, field
from functools import reduce
from types import SimpleNamespace

import numpy as np
import pandas as pd
from scipy.special import ndtr

from pfps_meta.effects import measures
from pfps_meta.conventions import Settings
from pfps_meta.errors import ConvergenceWarning, InputError
from pfps_meta.models.pooling import pool_batch, prediction_interval

BLOCK = 250                        # replicates per random-number block (fixes the streams; never change casually)
METRICS = ("n", "ci_cover", "err", "err2", "err4", "width", "width2", "reject", "pi_cover", "pi_cover2",
           "nonconverged", "undefined")


@dataclass(frozen=True)
class Design:
    """The shape of a meta-analysis: per trial either arm sizes (``n_exp``, ``n_ctrl``) or a sampling
    variance (``vi``). ``notes`` say where the sizes came from."""

    n_exp: tuple = ()
    n_ctrl: tuple = ()
    vi: tuple = ()
    label: str = ""
    notes: tuple = ()

    @property
    def k(self) -> int:
        return len(self.vi) if self.vi else len(self.n_exp)

    @classmethod
    def from_arm_sizes(cls, n_exp, n_ctrl, label="", notes=()):
        n_exp, n_ctrl = tuple(int(n) for n in n_exp), tuple(int(n) for n in n_ctrl)
        if len(n_exp) != len(n_ctrl) or len(n_exp) < 2 or min(n_exp + n_ctrl) < 2:
            raise InputError("a design needs at least 2 trials, each with two arms of at least 2 participants")
        return cls(n_exp=n_exp, n_ctrl=n_ctrl, label=label or f"k = {len(n_exp)}", notes=tuple(notes))

    @classmethod
    def from_variances(cls, vi, label="", notes=()):
        vi = tuple(float(v) for v in vi)
        if len(vi) < 2 or not all(np.isfinite(vi)) or min(vi) <= 0:
            raise InputError("a design by variances needs at least 2 positive, finite variances")
        return cls(vi=vi, label=label or f"k = {len(vi)}", notes=tuple(notes))

    @classmethod
    def from_range(cls, k, n_min, n_max, seed=2018):
        """k trials whose arm sizes are drawn once, uniformly in [n_min, n_max] (seeded)."""
        if not (2 <= int(k) <= 10_000 and 2 <= int(n_min) <= int(n_max) <= 1_000_000):
            raise InputError("--k must be 2 to 10,000 and 2 <= --n-min <= --n-max")
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2**31,)))
        sizes = rng.integers(int(n_min), int(n_max) + 1, size=(2, int(k)))
        return cls.from_arm_sizes(sizes[0], sizes[1], label=f"k = {k}, n {n_min}-{n_max} per arm")

    @classmethod
    def from_csv(cls, path):
        from pfps_meta.inputs.load import read_csv
        from pfps_meta.inputs.validate import numeric_column, require_columns

        table = read_csv(path)
        if "vi" in table.columns and "n_exp" not in table.columns:
            return cls.from_variances(numeric_column(table, "vi", above=0), label=str(path))
        require_columns(table, ("n_exp", "n_ctrl"), "a simulation design (n per arm)")
        return cls.from_arm_sizes(numeric_column(table, "n_exp", integer=True, minimum=2),
                                  numeric_column(table, "n_ctrl", integer=True, minimum=2), label=str(path))

    @classmethod
    def from_analysis(cls, analysis, evidence=None, result=None):
        """The shape of an analysis: its expected trials with their arm sizes (curated n per arm, else half
        the trial's randomised total, noted), or, for an analysis from a flat CSV, its studies' arm sizes or
        sampling variances."""
        if not analysis.trials:
            studies = result.studies
            if {"n_exp", "n_ctrl"} <= set(studies.columns) and studies[["n_exp", "n_ctrl"]].notna().all().all():
                return cls.from_arm_sizes(studies["n_exp"], studies["n_ctrl"], label=analysis.key)
            return cls.from_variances(studies["vi"], label=analysis.key,
                                      notes=("the studies' own sampling variances (no arm sizes in the data)",))
        o, trials = evidence.outcomes, evidence.trials.set_index("trial_id")
        n_exp, n_ctrl, notes = [], [], []
        from pfps_meta.evidence.specs import entry_rows

        for entry in analysis.trials:
            sizes = []
            for arm in (entry.exp, entry.ctrl):
                rows = entry_rows(o, analysis, entry, arm)
                rows = rows[rows["n"].notna()]
                sizes.append(float(rows["n"].iloc[0]) if len(rows) else np.nan)
            if np.isnan(sizes).any():
                total = trials["n_randomised"].get(entry.trial, np.nan)
                if not np.isfinite(total):
                    notes.append(f"{entry.trial}: arm sizes unknown, left out of the design")
                    continue
                sizes = [s if np.isfinite(s) else np.floor(total / 2) for s in sizes]
                notes.append(f"{entry.trial}: arm size(s) taken as half the {total:g} randomised")
            n_exp.append(sizes[0])
            n_ctrl.append(sizes[1])
        return cls.from_arm_sizes(n_exp, n_ctrl, label=analysis.key, notes=notes)


@dataclass
class SimulationResult:
    """Metrics per grid cell and method (``table``, a tidy DataFrame) and how the run was set up."""

    table: pd.DataFrame
    design: Design
    setup: dict
    notes: list = field(default_factory=list)

    def summary_frame(self) -> pd.DataFrame:
        return self.table

    def to_dict(self) -> dict:
        records = self.table.astype(object).where(self.table.notna(), None).to_dict("records")
        return {"design": {"label": self.design.label, "k": self.design.k, "n_exp": list(self.design.n_exp),
                           "n_ctrl": list(self.design.n_ctrl), "vi": list(self.design.vi),
                           "notes": list(self.design.notes)},
                "setup": self.setup, "results": records, "notes": list(self.notes)}

    def coverage_table(self, level_text="95%") -> pd.DataFrame:
        """CI coverage (with its MC SE) per method (rows) and tau2 (columns), as text."""
        frame = self.table.drop_duplicates(["mu", "tau2", "method", "ci_method"])
        cells = {(row.method + (" + HKSJ" if row.ci_method == "hksj" else " + Wald"), row.tau2):
                 f"{100 * row.ci_coverage:.1f}% ({100 * row.ci_coverage_mcse:.1f})"
                 for row in frame.itertuples()}
        methods = list(dict.fromkeys(name for name, _ in cells))
        tau2s = sorted({tau2 for _, tau2 in cells})
        return pd.DataFrame({"Method": methods,
                             **{f"tau² = {t:g}": [cells[(m, t)] for m in methods] for t in tau2s}})


def _as_tuple(values, cast=float):
    if isinstance(values, (int, float, np.integer, np.floating)):
        return (cast(values),)
    return tuple(cast(v) for v in values)


def _draw(design: Design, measure, mu, tau2, sd, rng, replicates, settings):
    """One block's effect sizes (replicates x k) and the true mean."""
    k = design.k
    theta = mu + np.sqrt(tau2) * rng.standard_normal((replicates, k))
    if design.vi:
        v = np.asarray(design.vi)
        return theta + np.sqrt(v) * rng.standard_normal((replicates, k)), np.broadcast_to(v, (replicates, k)).copy()
    n1, n2 = np.asarray(design.n_exp, dtype=float), np.asarray(design.n_ctrl, dtype=float)
    m2 = sd * rng.standard_normal((replicates, k)) / np.sqrt(n2)
    m1 = theta * sd + sd * rng.standard_normal((replicates, k)) / np.sqrt(n1)
    s1 = sd * np.sqrt(rng.chisquare(n1 - 1, size=(replicates, k)) / (n1 - 1))
    s2 = sd * np.sqrt(rng.chisquare(n2 - 1, size=(replicates, k)) / (n2 - 1))
    n1b, n2b = np.broadcast_to(n1, (replicates, k)), np.broadcast_to(n2, (replicates, k))
    return measures.get(measure).compute(n1b, m1, s1, n2b, m2, s2, settings)


def _block_sums(task):
    """The metric sums of one (cell, block) for every method x CI x PI combination (a 2-D array)."""
    (cell, block, design, measure, mu, tau2, sd, seed, combos, base, replicates, engine) = task
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(cell, block)))
    with np.errstate(all="ignore"):
        yi, vi = _draw(design, measure, mu, tau2, sd, rng, replicates, base)
    out = []
    fits = {}
    for method, ci_method, pi_method in combos:
        key = (method, ci_method)
        if key not in fits:        # non-convergence is counted below, not shown per block
            if engine == "numba":
                from pfps_meta.models.fast import pool_rows

                fits[key] = SimpleNamespace(**pool_rows(yi, vi, method, ci_method, base.level, base.maxiter))
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    fits[key] = pool_batch(yi, vi, base.replace(method=method, ci_method=ci_method))
        fit = fits[key]
        settings = base.replace(method=method, ci_method=ci_method, pi_method=pi_method)
        est, lo, hi = fit.estimate, fit.ci_low, fit.ci_high
        defined = np.isfinite(lo) & np.isfinite(hi)
        err = est - mu
        width = np.where(defined, hi - lo, 0.0)
        pi_lo, pi_hi, _ = prediction_interval(est, fit.se, fit.tau2, fit.k, settings)
        if tau2 > 0:
            tau = np.sqrt(tau2)
            pi_cover = ndtr((pi_hi - mu) / tau) - ndtr((pi_lo - mu) / tau)
        else:
            pi_cover = ((pi_lo <= mu) & (mu <= pi_hi)).astype(float)
        pi_cover = np.where(np.isfinite(pi_cover), pi_cover, 0.0)
        alpha = 1 - base.level
        reject = (fit.p < alpha) & defined
        out.append([replicates, np.sum((lo <= mu) & (mu <= hi)), np.sum(err), np.sum(err ** 2), np.sum(err ** 4),
                    np.sum(width), np.sum(width ** 2), np.sum(reject), np.sum(pi_cover), np.sum(pi_cover ** 2),
                    np.sum(~fit.converged), np.sum(~defined)])
    return cell, block, np.asarray(out, dtype=float)


def simulate(design: Design, *, mu=0.5, tau2=(0.0, 0.05, 0.2), measure="SMD", sd=1.0,
             methods=("DL", "REML"), ci_methods=("wald", "hksj"), pi_methods=("auto",), replicates=1000,
             seed=2018, level=0.95, blocks_per_task=8, client=None, progress=None, engine="auto") -> SimulationResult:
    """Simulate ``replicates`` meta-analyses of ``design`` per grid cell (every ``mu`` x ``tau2``) and pool
    each with every method x CI method; returns a :class:`SimulationResult` (see the module docstring).

    ``measure``: a registry measure computed from arm data (MD, SMD, SMDH, ROM), ignored for a design by
    variances. ``replicates`` is rounded up to a whole number of blocks of ``BLOCK``. ``client``: None
    (in-process), "local" (a ``dask.distributed.LocalCluster``), a scheduler address, or a Client.
    ``engine``: "numpy" (the reference core, :func:`pfps_meta.models.pooling.pool_batch`), "numba" (the compiled
    kernel of :mod:`pfps_meta.models.fast`, FE/DL/ML/REML), or "auto" (numba when installed and every method is
    one it covers). Results are bit-identical across task sizes and workers for a given engine; the two
    engines agree to about 1e-10 per fit.
    """
    mus, tau2s = _as_tuple(mu), _as_tuple(tau2)
    if any(t < 0 or not np.isfinite(t) for t in tau2s) or not all(np.isfinite(mus)):
        raise InputError("tau2 values must be finite and >= 0, and mu finite")
    if not 1 <= int(replicates) <= 100_000_000:
        raise InputError("replicates must be 1 to 100,000,000")
    if not design.vi and measures.get(measure).layout != "arm":
        raise InputError(f"measure {measure} is not computed from two arms; use one of "
                         f"{', '.join(measures.names('arm'))}")
    from pfps_meta.models.fast import KERNEL_METHODS, available

    if engine == "auto":
        engine = "numba" if available() and set(methods) <= set(KERNEL_METHODS) else "numpy"
    if engine not in ("numpy", "numba"):
        raise InputError(f"engine must be auto, numpy or numba (got '{engine}')")
    if engine == "numba" and not (available() and set(methods) <= set(KERNEL_METHODS)):
        raise InputError("the numba engine needs numba installed (pip install 'pfps-meta[fast]') and methods "
                         f"among {', '.join(KERNEL_METHODS)}")
    base = Settings(level=level, tau2_ci=False, fit_statistics=False)
    combos = list(itertools.product(methods, ci_methods, pi_methods))
    for method, ci_method, pi_method in combos:      # validates every name before any work
        base.replace(method=method, ci_method=ci_method, pi_method=pi_method)
    n_blocks = -(-int(replicates) // BLOCK)
    cells = list(itertools.product(mus, tau2s))
    tasks = [(c, b, design, measure, m, t, sd, seed, combos, base, BLOCK, engine)
             for c, (m, t) in enumerate(cells) for b in range(n_blocks)]
    groups = [tasks[i:i + blocks_per_task] for i in range(0, len(tasks), max(1, int(blocks_per_task)))]
    results = _run(groups, client, progress)
    by_cell = {}
    for cell, block, sums in sorted(results, key=lambda r: (r[0], r[1])):
        by_cell.setdefault(cell, []).append(sums)
    rows = []
    for c, (m, t) in enumerate(cells):
        total = reduce(np.add, by_cell[c])          # block order: bit-identical for any partition
        for (method, ci_method, pi_method), sums in zip(combos, total):
            rows.append({"mu": m, "tau2": t, "method": method, "ci_method": ci_method, "pi_method": pi_method,
                         **_metrics(dict(zip(METRICS, sums)))})
    setup = {"mu": list(mus), "tau2": list(tau2s), "measure": None if design.vi else measure, "sd": sd,
             "methods": list(methods), "ci_methods": list(ci_methods), "pi_methods": list(pi_methods),
             "replicates": n_blocks * BLOCK, "seed": seed, "level": level, "block": BLOCK, "engine": engine}
    return SimulationResult(table=pd.DataFrame(rows), design=design, setup=setup)


def _metrics(s):
    n = s["n"]
    bias = s["err"] / n
    var_err = max((s["err2"] - n * bias ** 2) / (n - 1), 0.0) if n > 1 else np.nan
    mse = s["err2"] / n
    rmse = np.sqrt(mse)
    var_sq = max((s["err4"] - n * mse ** 2) / (n - 1), 0.0) if n > 1 else np.nan
    width = s["width"] / max(n - s["undefined"], 1)
    var_width = max((s["width2"] - (n - s["undefined"]) * width ** 2) / max(n - s["undefined"] - 1, 1), 0.0)
    cover = s["ci_cover"] / n
    reject = s["reject"] / n
    pi_cover = s["pi_cover"] / n
    var_pi = max((s["pi_cover2"] - n * pi_cover ** 2) / (n - 1), 0.0) if n > 1 else np.nan
    return {"replicates": int(n), "ci_coverage": cover, "ci_coverage_mcse": np.sqrt(cover * (1 - cover) / n),
            "pi_coverage": pi_cover, "pi_coverage_mcse": np.sqrt(var_pi / n),
            "bias": bias, "bias_mcse": np.sqrt(var_err / n), "rmse": rmse,
            "rmse_mcse": np.sqrt(var_sq / n) / (2 * rmse) if rmse > 0 else 0.0,
            "ci_width": width, "ci_width_mcse": np.sqrt(var_width / max(n - s["undefined"], 1)),
            "rejection_rate": reject, "rejection_mcse": np.sqrt(reject * (1 - reject) / n),
            "nonconverged": int(s["nonconverged"]), "undefined_ci": int(s["undefined"])}


def _run_group(group):
    return [_block_sums(task) for task in group]


def _run(groups, client, progress):
    """Run the task groups in-process (with a progress bar after a second or two) or on Dask."""
    if client is None:
        out, start, shown = [], time.perf_counter(), False
        for i, group in enumerate(groups, start=1):
            out += _run_group(group)
            elapsed = time.perf_counter() - start
            if progress or (progress is None and elapsed > 1.5 and i < len(groups)):
                shown = True
                bar = "#" * int(30 * i / len(groups))
                print(f"\rsimulating: [{bar:<30}] {i}/{len(groups)} task groups, {elapsed:.0f} s", end="",
                      file=sys.stderr)
        if shown:
            print(file=sys.stderr)
        return out
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise InputError("the Dask path needs dask.distributed: pip install 'pfps-meta[dask]'") from None
    own = None
    if isinstance(client, str):
        if client == "local":
            own = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
            client = Client(own)
        else:
            client = Client(client)
    try:
        futures = client.map(_run_group, groups, pure=False)
        return [item for part in client.gather(futures) for item in part]
    finally:
        if own is not None:
            client.close()
            own.close()
