"""Simulation of meta-analyses of a given shape: how often does each method's CI (and PI) cover the truth,
and how well does it estimate tau² and I²?

For a design (k trials with their arm sizes, or k trials with given sampling variances), a true average
effect ``mu`` and a grid of between-trial variances ``tau2``, every replicate draws each trial's true
effect ``theta_i ~ N(mu, tau2)``, then arm-level data (group means with their sampling error and sample
SDs from the chi-square distribution, so the SMD's small-sample bias and its variance's dependence on
the estimate are real), computes the effect sizes with the measure's registry function under the run's
:class:`~pfps_meta.conventions.Settings` (so a preset's SMD convention is the one simulated), and pools
the replicate with every requested tau2 estimator x CI method; every PI rule is evaluated on the same
fit. A design given by variances draws ``y_i ~ N(theta_i, v_i)`` directly (the normal-normal model).

``mu`` and ``tau2`` are always on the scale the measure is pooled on, and the draws are built so that
the true trial effect on that scale is ``theta_i``:

- MD: raw outcome units; treatment mean ``control_mean + theta_i``, both arms with SD ``sd``.
- SMD, SMDH: SD units; treatment mean ``control_mean + theta_i * sd``.
- ROM: the log ratio of means; treatment mean ``control_mean * exp(theta_i)``. ``control_mean`` (> 0) is
  then required, and a combination whose arm means could reach 0 (within 6 standard errors) is refused,
  since the log ratio is undefined there.

Reported per grid cell and method (Morris, White & Crowther 2019, Stat Med 38:2074, Table 6 for the
Monte Carlo standard errors): coverage of the CI; coverage of the PI (the expected share of true trial
effects, ``N(mu, tau2)``, inside it); bias, RMSE and mean CI width of the estimate; the rejection rate of
``H0: effect = 0`` (type I error when ``mu = 0``, power otherwise); bias and RMSE of the tau² estimate;
the mean I² and its bias against the true I² (below); non-converged fits; failed replicates. A
replicate fails when a trial's effect size cannot be computed (non-finite); failed replicates are left
out of every metric, counted in ``failed`` and announced with a :class:`SimulationWarning`.

True I² (percent): ``100 tau2 / (tau2 + v_typ)`` with Higgins & Thompson's (2002, eq. 9) typical
within-trial variance ``v_typ = (k-1) sum w / ((sum w)^2 - sum w^2)``, ``w_i = 1 / v_i``, where ``v_i`` is
the design's sampling variance of trial i at ``theta_i = mu``: the given ``vi``; MD
``sd^2 (1/n1 + 1/n2)``; SMD and SMDH the large-sample ``1/n1 + 1/n2 + mu^2 / (2 (n1 + n2))``; ROM
``sd^2 / (n1 m1^2) + sd^2 / (n2 m2^2)`` with ``m2 = control_mean``, ``m1 = control_mean exp(mu)``. The
estimated I² follows ``settings.i2_method`` (from tau², as metafor, or from Q). For the common-effect
model (FE) tau² is not estimated: its tau² metrics are missing (NaN; null in JSON).

Reproducible by construction: replicates come in blocks of ``BLOCK`` (a constant), and block ``b`` of grid
cell ``c`` draws from ``SeedSequence(seed, spawn_key=(c, b))``. Each block's sums are computed on their
own and added up in block order, so a run gives bit-identical results whatever the number of blocks
per task and the number of workers, in-process or on Dask (``client=``). No scheduler of our own: a task
list for ``dask.distributed`` (``client="local"`` starts a ``LocalCluster``; an address string connects to
a running scheduler, with bounded waits), used only when the work is large enough to pay for it: the
first task group is timed in-process and the rest estimated from it (``DASK_MIN_SECONDS``). A LocalCluster
starts while this process goes on simulating; on Dask the blocks go out as a few large tasks per worker of
equal cost (``DASK_TASKS_PER_WORKER``).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import numbers
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from functools import reduce
from types import SimpleNamespace

import numpy as np
import pandas as pd
from scipy.special import ndtr

from pfps_meta import conventions
from pfps_meta.conventions import COUNT_METHODS, Settings, canonical, unused_count_options
from pfps_meta.effects import measures
from pfps_meta.errors import ConvergenceWarning, InputError, PfpsWarning
from pfps_meta.formatting import json_ready, render, renders
from pfps_meta.models.pooling import pool_batch, prediction_interval

BLOCK = 250                        # replicates per random-number block (fixes the streams; never change casually)
METRICS = ("n", "ci_cover", "err", "err2", "err4", "width", "width2", "reject", "pi_n", "pi_cover", "pi_cover2",
           "nonconverged", "undefined", "t_err", "t_err2", "t_err4", "i2", "i2_sq", "failed")
SIMULATED_MEASURES = ("MD", "SMD", "SMDH", "ROM")
#: refuse runs beyond this many trial-level fits (replicates x grid cells x method/CI pairs x k) up front
MAX_STUDY_FITS = 1e10
#: trial-level fits per second on one core, for the time estimate of a refused run (measured roughly,
#: benchmarks/bench_simulate.py: the compiled kernel and the numpy core, data generation included)
STUDY_FITS_PER_SECOND = {"numba": 1e6, "numpy": 2.5e5}
#: memory of one block in flight: about this many (BLOCK x k) float arrays at once
ARRAYS_PER_BLOCK = 40
#: bookkeeping per block (its task record and its sums), bytes, roughly
BYTES_PER_TASK = 1500
MAX_BLOCK_BYTES = 1e9              # memory bound: one block in flight plus the bookkeeping of all blocks
#: seconds to wait for a Dask scheduler to answer, and for it to have a worker
DASK_TIMEOUT = 5.0
#: seconds we give our own client and LocalCluster to close (its workers get 0.8 of it to exit)
DASK_CLOSE_TIMEOUT = 20.0
#: from what estimated in-process work a run goes to Dask: one home, in pfps_meta.conventions
DASK_MIN_SECONDS = conventions.DASK_MIN_SECONDS
#: Dask settings for a LocalCluster we start (only while it is created, and so only for it): no statistical
#: profiler in the workers, slower bookkeeping timers, no work stealing (the tasks are of equal cost). Idle,
#: the defaults cost each worker 3.8% of a core and this process (scheduler, nannies) 6.3%; these 0.5% and
#: 1.1% (measured on this 2-core machine over 10 s). And glibc's own heap trimming in the workers: Dask's
#: MALLOC_TRIM_THRESHOLD_=65536 gave back the heap after nearly every block, for 2-3% more CPU in page faults
OWN_CLUSTER_CONFIG = {"distributed.worker.profile.enabled": False, "distributed.admin.tick.interval": "1s",
                      "distributed.worker.memory.monitor-interval": "1s", "distributed.scheduler.work-stealing": False,
                      "distributed.admin.system-monitor.interval": "2s",
                      "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
#: on Dask the blocks go out as at most this many tasks per worker (each the same mix of grid cells): a task
#: costs about 7.5 ms of scheduler and worker CPU, so the in-process groups of 8 blocks (~0.1 s at k = 14)
#: cost ~8% of the work, and the workers sat idle between them
DASK_TASKS_PER_WORKER = 16
#: blocks per task group in this process when ``blocks_per_task`` is not given (the unit of the progress bar)
IN_PROCESS_BLOCKS = 8
ROM_MARGIN = 6.0                   # arm means must lie this many standard errors above 0 for ROM


class SimulationWarning(PfpsWarning):
    """A simulation ran, but some replicates failed (their effect sizes could not be computed)."""


def _whole(name, value, minimum, row=None):
    """``value`` as an int when it is a whole number >= minimum (20.0 yes, 20.7 and NaN no)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) \
        and float(value).is_integer() and value >= minimum
    if not ok:
        where = f" (trial {row})" if row is not None else ""
        raise InputError(f"{name}: {value!r}{where} is not a whole number >= {minimum}", row=row)
    return int(value)


@dataclass(frozen=True)
class Design:
    """The shape of a meta-analysis: per trial either arm sizes (``n_exp``, ``n_ctrl``, whole numbers >= 2)
    or a sampling variance (``vi``, finite and > 0); at least 2 trials. ``notes`` say where the sizes came
    from. Validated on construction (non-integer arm sizes are refused, never truncated)."""

    n_exp: tuple = ()
    n_ctrl: tuple = ()
    vi: tuple = ()
    label: str = ""
    notes: tuple = ()

    def __post_init__(self):
        n_exp, n_ctrl, vi = (tuple(np.asarray(x, dtype=object).ravel().tolist()) for x in
                             (self.n_exp, self.n_ctrl, self.vi))
        if vi and (n_exp or n_ctrl):
            raise InputError("vi: a design gives either arm sizes (n_exp, n_ctrl) or sampling variances, not both")
        if vi:
            for i, v in enumerate(vi, start=1):
                if not (isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) and v > 0):
                    raise InputError(f"vi: {v!r} (trial {i}) is not a positive, finite variance", row=i)
            vi = tuple(float(v) for v in vi)
            if len(vi) < 2:
                raise InputError("vi: a design by variances needs at least 2 trials")
        else:
            if len(n_exp) != len(n_ctrl):
                raise InputError(f"n_ctrl: {len(n_ctrl)} arm sizes for {len(n_exp)} in n_exp")
            if len(n_exp) < 2:
                raise InputError("n_exp: a design needs at least 2 trials, each with two arms of at least 2 "
                                 "participants")
            n_exp = tuple(_whole("n_exp", n, 2, i) for i, n in enumerate(n_exp, start=1))
            n_ctrl = tuple(_whole("n_ctrl", n, 2, i) for i, n in enumerate(n_ctrl, start=1))
        object.__setattr__(self, "n_exp", n_exp)
        object.__setattr__(self, "n_ctrl", n_ctrl)
        object.__setattr__(self, "vi", vi)
        object.__setattr__(self, "label", str(self.label or f"k = {len(vi) or len(n_exp)}"))
        object.__setattr__(self, "notes", tuple(str(n) for n in self.notes))

    @property
    def k(self) -> int:
        return len(self.vi) if self.vi else len(self.n_exp)

    def __str__(self) -> str:
        shape = (f"arm sizes {', '.join(f'{a}/{b}' for a, b in zip(self.n_exp, self.n_ctrl))}" if self.n_exp
                 else "given sampling variances")
        return f"{self.label} ({self.k} trials; {shape})"

    def sampling_variances(self, measure="SMD", mu=0.0, sd=1.0, control_mean=None) -> np.ndarray:
        """Each trial's sampling variance at ``theta_i = mu`` (the module docstring gives the formulas)."""
        if self.vi:
            return np.asarray(self.vi)
        n1, n2 = np.asarray(self.n_exp, dtype=float), np.asarray(self.n_ctrl, dtype=float)
        if measure == "MD":
            return sd ** 2 * (1 / n1 + 1 / n2)
        if measure == "ROM":
            m2 = float(control_mean)
            m1 = m2 * math.exp(mu)
            return sd ** 2 / (n1 * m1 ** 2) + sd ** 2 / (n2 * m2 ** 2)
        return 1 / n1 + 1 / n2 + mu ** 2 / (2 * (n1 + n2))

    def typical_variance(self, measure="SMD", mu=0.0, sd=1.0, control_mean=None) -> float:
        """Higgins & Thompson's typical within-trial variance of :meth:`sampling_variances`."""
        w = 1 / self.sampling_variances(measure, mu, sd, control_mean)
        return float((len(w) - 1) * w.sum() / (w.sum() ** 2 - (w ** 2).sum()))

    @classmethod
    def from_arm_sizes(cls, n_exp, n_ctrl, label="", notes=()):
        return cls(n_exp=tuple(n_exp), n_ctrl=tuple(n_ctrl), label=label, notes=tuple(notes))

    @classmethod
    def from_variances(cls, vi, label="", notes=()):
        return cls(vi=tuple(vi), label=label, notes=tuple(notes))

    @classmethod
    def from_range(cls, k, n_min, n_max, seed=2018):
        """k trials whose arm sizes are drawn once, uniformly in [n_min, n_max] (seeded)."""
        k, lo, hi = _whole("k", k, 0), _whole("n_min", n_min, 0), _whole("n_max", n_max, 0)
        if not (2 <= k <= 10_000 and 2 <= lo <= hi <= 1_000_000):
            raise InputError("--k must be 2 to 10,000 and 2 <= --n-min <= --n-max <= 1,000,000")
        rng = np.random.default_rng(np.random.SeedSequence(_seed(seed), spawn_key=(2**31,)))
        sizes = rng.integers(lo, hi + 1, size=(2, k))
        return cls.from_arm_sizes(sizes[0].tolist(), sizes[1].tolist(), label=f"k = {k}, n {lo}-{hi} per arm")

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


@dataclass(frozen=True, slots=True)
class Task:
    """One (grid cell, block) of work: everything a worker needs, by name (picklable for Dask)."""

    cell: int
    block: int
    design: Design
    measure: str
    mu: float
    tau2: float
    sd: float
    control_mean: float
    seed: int
    combos: tuple            # (method, ci_method, pi_method) triples
    settings: Settings       # the run's conventions (method and CI method are set per combo)
    replicates: int
    engine: str


COLUMN_TEXT = {"ci_coverage": "CI coverage", "pi_coverage": "PI coverage", "bias": "bias", "rmse": "RMSE",
               "ci_width": "CI width", "rejection_rate": "rejection rate", "tau2_bias": "tau² bias",
               "tau2_rmse": "tau² RMSE", "i2_mean": "mean I² (%)", "i2_bias": "I² bias (points)"}


@dataclass
class SimulationResult:
    """Metrics per grid cell and method (``table``, a tidy DataFrame) and how the run was set up.

    ``table`` columns: the grid (``mu, tau2, method, ci_method, pi_method``), ``replicates`` (scored) and
    ``failed``, then each metric with its Monte Carlo SE (``*_mcse``): ``ci_coverage, pi_coverage, bias,
    rmse, ci_width, rejection_rate, tau2_bias, tau2_rmse, i2_mean, i2_bias`` (with ``i2_true``), and the
    counts ``nonconverged, undefined_ci, undefined_pi``. ``settings`` is the run's Settings.
    """

    table: pd.DataFrame
    design: Design
    setup: dict
    notes: list = field(default_factory=list)
    settings: Settings | None = None

    def summary_frame(self) -> pd.DataFrame:
        return self.table

    def to_frame(self) -> pd.DataFrame:
        """The tidy table: one row per grid cell x method x CI method x PI rule."""
        return self.table.copy()

    def to_dict(self) -> dict:
        """Strict-JSON fields (NaN as null): design, setup, one record per table row, notes."""
        return json_ready({"design": {"label": self.design.label, "k": self.design.k,
                                      "n_exp": list(self.design.n_exp), "n_ctrl": list(self.design.n_ctrl),
                                      "vi": list(self.design.vi), "notes": list(self.design.notes)},
                           "setup": self.setup, "results": self.table, "notes": list(self.notes)})

    def coverage_table(self, level_text=None) -> pd.DataFrame:
        """Per method + CI method (rows; with ``mu`` first when the grid has several) and tau² (columns):
        CI coverage (columns ``tau² = t``), then the tau² bias (``tau² bias (tau² = t)``) and the mean I²
        against the true I² (``I² (tau² = t)``: "mean% (MC SE) vs true%"), MC SEs in brackets, as text.
        ``level_text`` is accepted for compatibility and unused."""
        frame = self.table.drop_duplicates(["mu", "tau2", "method", "ci_method"])
        several_mu = frame["mu"].nunique() > 1
        tau2s = sorted(frame["tau2"].unique())
        rows = {}
        for row in frame.itertuples():
            name = row.method + (" + HKSJ" if row.ci_method == "hksj" else " (credible interval)"
                                 if row.ci_method == "credible" else " + Wald")
            record = rows.setdefault((row.mu, name), {**({"mu": row.mu} if several_mu else {}), "Method": name})
            record[f"tau² = {row.tau2:g}"] = _pct(row.ci_coverage, row.ci_coverage_mcse)
            record[f"tau² bias (tau² = {row.tau2:g})"] = _num(row.tau2_bias, row.tau2_bias_mcse)
            record[f"I² (tau² = {row.tau2:g})"] = (_num(row.i2_mean, row.i2_mean_mcse, 1, "%")
                                                   + f" vs {row.i2_true:.1f}%")
        table = pd.DataFrame(list(rows.values()))
        order = ([*(["mu"] if several_mu else []), "Method"] + [f"tau² = {t:g}" for t in tau2s]
                 + [f"tau² bias (tau² = {t:g})" for t in tau2s] + [f"I² (tau² = {t:g})" for t in tau2s])
        return table[order]

    def __str__(self) -> str:
        return render(self, "text")

    def __repr__(self) -> str:
        return render(self, "text")

    def _repr_html_(self) -> str:
        return render(self, "html")


def _pct(value, mcse):
    return "NA" if not np.isfinite(value) else f"{100 * value:.1f}% ({100 * mcse:.1f})"


def _num(value, mcse, digits=3, unit=""):
    return "NA" if not np.isfinite(value) else f"{value:.{digits}f}{unit} ({mcse:.{digits}f})"


@renders("text", "SimulationResult")
def simulation_text(sim: SimulationResult) -> str:
    """The summary the command line prints: the design, the setup, the coverage table, the tidy table."""
    setup, design = sim.setup, sim.design
    lines = [f"Simulation: {design}",
             f"true effect mu = {', '.join(f'{m:g}' for m in setup['mu'])}"
             + (f" on the {setup['measure']} scale" if setup.get("measure") else "")
             + f"; {setup['replicates']:,} meta-analyses per cell; seed {setup['seed']}",
             *design.notes, *sim.notes, "",
             f"Coverage of the {100 * setup['level']:g}% CI, tau² bias and mean I² (Monte Carlo SE in brackets):",
             sim.coverage_table().to_string(index=False), "",
             "Per cell and method (bias, RMSE, CI width, rejection rate of 'effect = 0', PI coverage, tau² and I²):",
             sim.table[["mu", "tau2", "method", "ci_method", "pi_method", "bias", "rmse", "ci_width",
                        "rejection_rate", "pi_coverage", "tau2_bias", "tau2_rmse", "i2_mean", "i2_true",
                        "nonconverged", "failed"]].to_string(index=False, float_format=lambda x: f"{x:.4f}")]
    return "\n".join(lines)


@renders("html", "SimulationResult")
def simulation_html(sim: SimulationResult) -> str:
    """A small HTML view: the summary line and the coverage table."""
    from html import escape

    setup = sim.setup
    head = (f"<p><b>Simulation</b>: {escape(str(sim.design))}; {setup['replicates']:,} meta-analyses per cell; "
            f"coverage of the {100 * setup['level']:g}% CI (Monte Carlo SE in brackets)</p>")
    notes = "".join(f"<p>{escape(n)}</p>" for n in [*sim.design.notes, *sim.notes])
    return head + notes + sim.coverage_table().to_html(index=False, escape=True)


# --------------------------------------------------------------------------------------------------
# argument checks: every one names the argument it refuses


def _numbers(name, values):
    """A non-empty tuple of finite floats from a number or a sequence of numbers (text is refused)."""
    if isinstance(values, (str, bytes)):
        raise InputError(f"{name}: give a number or a list of numbers, not the text {values!r}")
    if isinstance(values, numbers.Real) and not isinstance(values, bool):
        values = (values,)
    try:
        values = tuple(values)
    except TypeError:
        raise InputError(f"{name}: {values!r} is not a number or a list of numbers") from None
    if not values:
        raise InputError(f"{name}: empty; give at least one value")
    for v in values:
        if isinstance(v, (bool, str, bytes)) or not isinstance(v, numbers.Real):
            raise InputError(f"{name}: {v!r} is not a number")
        if not math.isfinite(v):
            raise InputError(f"{name}: {v!r} is not finite")
    return tuple(float(v) for v in values)


def _number(name, value, positive=True):
    """One finite number (> 0 when ``positive``)."""
    values = _numbers(name, value)
    if len(values) != 1:
        raise InputError(f"{name}: one number expected (got {len(values)})")
    if positive and not values[0] > 0:
        raise InputError(f"{name}: must be > 0 (got {values[0]:g})")
    return values[0]


def _seed(seed):
    ok = isinstance(seed, numbers.Integral) and not isinstance(seed, bool) and 0 <= seed < 2 ** 63
    if not ok:
        raise InputError(f"seed: must be a whole number from 0 to 2**63 - 1 (got {seed!r})")
    return int(seed)


def _names(name, values, default):
    """A tuple of names (a comma-separated string or a sequence), duplicates dropped; None = default."""
    if values is None:
        return (default,)
    if isinstance(values, str):
        values = values.split(",")
    try:
        values = [str(v).strip() if isinstance(v, str) else v for v in values]
    except TypeError:
        raise InputError(f"{name}: {values!r} is not a list of names") from None
    if any(not isinstance(v, str) for v in values):
        raise InputError(f"{name}: every entry must be a name (got {values!r})")
    values = [v for v in values if v]
    if not values:
        raise InputError(f"{name}: empty; give at least one")
    return tuple(dict.fromkeys(values))


def _base_settings(settings, preset, options):
    if settings is not None and preset is not None:
        raise InputError("preset: give settings= or preset=, not both (options given as keywords apply on top)")
    if settings is not None and not isinstance(settings, Settings):
        raise InputError(f"settings: expected a pfps_meta Settings (got {type(settings).__name__})")
    if preset is not None:
        from pfps_meta.analysis.presets import Preset, preset as named

        settings = preset.settings if isinstance(preset, Preset) else named(str(preset)).settings
    return Settings.from_mapping(options, base=settings)


def _check_scale(measure, design, mus, tau2s, sd, control_mean):
    """Refuse grids whose draws would be meaningless: tau² or mu so large against the design's sampling
    variance that its sampling error is lost in rounding, and ROM means that could reach 0."""
    if design.vi or measure != "ROM":
        v_typ = design.typical_variance(measure, 0.0, sd, control_mean)
        for t in tau2s:
            if t > 1e12 * v_typ:
                raise InputError(f"tau2: {t:g} is more than 1e12 times the design's typical sampling variance "
                                 f"({v_typ:.3g}); the sampling error would be lost in rounding")
        for m in mus:
            if abs(m) > 1e8 * math.sqrt(v_typ):
                raise InputError(f"mu: {m:g} is more than 1e8 times the design's typical standard error "
                                 f"({math.sqrt(v_typ):.3g}); the sampling error would be lost in rounding")
        return
    if control_mean is None:
        raise InputError("control_mean: measure ROM needs the control arm's true mean (> 0): the ratio of means "
                         "is undefined for means near 0")
    n1, n2 = min(design.n_exp), min(design.n_ctrl)
    for m, t in itertools.product(mus, tau2s):
        spread = ROM_MARGIN * math.sqrt(t)
        if m + spread > 700 or m - spread < -700:
            raise InputError(f"mu: a log ratio of {m:g} with tau2 = {t:g} overflows the arm means")
        low = control_mean * math.exp(m - spread)
        worst = min(low / (sd / math.sqrt(n1)), control_mean / (sd / math.sqrt(n2)))
        if worst < ROM_MARGIN:
            raise InputError(f"control_mean: with sd = {sd:g}, mu = {m:g} and tau2 = {t:g}, an arm mean can lie "
                             f"only {worst:.1f} standard errors above 0 (arms of {min(n1, n2)}), so its log ratio "
                             f"may be undefined; raise control_mean (or lower sd) to keep {ROM_MARGIN:g} SEs")


# --------------------------------------------------------------------------------------------------
# the work


def _draw(task: Task, rng):
    """One block's effect sizes (replicates x k), as the module docstring describes."""
    design, replicates, k = task.design, task.replicates, task.design.k
    theta = task.mu + np.sqrt(task.tau2) * rng.standard_normal((replicates, k))
    if design.vi:
        v = np.asarray(design.vi)
        return theta + np.sqrt(v) * rng.standard_normal((replicates, k)), np.broadcast_to(v, (replicates, k)).copy()
    sd, base = task.sd, task.control_mean
    n1, n2 = np.asarray(design.n_exp, dtype=float), np.asarray(design.n_ctrl, dtype=float)
    if task.measure == "MD":
        true1 = base + theta
    elif task.measure == "ROM":
        true1 = base * np.exp(theta)
    else:                                 # SMD, SMDH: theta in SD units
        true1 = base + theta * sd
    m2 = base + sd * rng.standard_normal((replicates, k)) / np.sqrt(n2)
    m1 = true1 + sd * rng.standard_normal((replicates, k)) / np.sqrt(n1)
    s1 = sd * np.sqrt(rng.chisquare(n1 - 1, size=(replicates, k)) / (n1 - 1))
    s2 = sd * np.sqrt(rng.chisquare(n2 - 1, size=(replicates, k)) / (n2 - 1))
    n1b, n2b = np.broadcast_to(n1, (replicates, k)), np.broadcast_to(n2, (replicates, k))
    return measures.get(task.measure).compute(n1b, m1, s1, n2b, m2, s2, task.settings)


def _fit(yi, vi, settings, engine):
    if engine == "numba":
        from pfps_meta.models.fast import pool_rows

        return SimpleNamespace(**pool_rows(yi, vi, settings=settings))
    with warnings.catch_warnings():     # non-convergence is counted, not shown per block
        warnings.simplefilter("ignore", ConvergenceWarning)
        return pool_batch(yi, vi, settings)


#: the prefix of a Bayesian method name: ``bayes:PRIOR`` with PRIOR as ``pfps-meta bayes --tau-prior`` writes it
BAYES_PREFIX = "bayes:"


def is_bayes_method(name) -> bool:
    return isinstance(name, str) and name.startswith(BAYES_PREFIX)


def _fit_bayes(yi, vi, method, level):
    """The Bayesian fit of a block (:func:`pfps_meta.models.bayes.bayes_batch`, flat prior for mu): the
    estimate is the posterior median of mu, the CI the central credible interval, the PI the posterior
    predictive interval of theta_new; tau² is the posterior median of tau, squared."""
    from pfps_meta.models.bayes import bayes_batch

    out = bayes_batch(yi, vi, tau_prior=method[len(BAYES_PREFIX):], level=level)
    n = len(out["mu_median"])
    return SimpleNamespace(estimate=out["mu_median"], ci_low=out["mu_lower"], ci_high=out["mu_upper"],
                           pi_low=out["theta_lower"], pi_high=out["theta_upper"], tau2=out["tau_median"] ** 2,
                           i2=np.full(n, np.nan), converged=np.ones(n, dtype=bool), p=np.full(n, np.nan))


def _block_sums(task: Task):
    """The metric sums of one (cell, block) for every method x CI x PI combination (a 2-D array)."""
    rng = np.random.default_rng(np.random.SeedSequence(task.seed, spawn_key=(task.cell, task.block)))
    with np.errstate(all="ignore"):
        yi, vi = _draw(task, rng)
    ok = np.isfinite(yi).all(axis=1) & np.isfinite(vi).all(axis=1)
    failed = int(task.replicates - ok.sum())
    if failed:
        yi, vi = yi[ok], vi[ok]
    mu, tau2, base = task.mu, task.tau2, task.settings
    n = float(ok.sum())
    out, fits = [], {}
    for method, ci_method, pi_method in task.combos:
        bayesian = is_bayes_method(method)
        settings = base if bayesian else base.replace(method=method, ci_method=ci_method, pi_method=pi_method)
        key = (method, ci_method)
        if key not in fits:
            fits[key] = _fit_bayes(yi, vi, method, base.level) if bayesian else _fit(yi, vi, settings, task.engine)
        fit = fits[key]
        with np.errstate(all="ignore"):
            est, lo, hi = fit.estimate, fit.ci_low, fit.ci_high
            defined = np.isfinite(lo) & np.isfinite(hi)
            err = est - mu
            width = np.where(defined, hi - lo, 0.0)
            if bayesian:     # the posterior predictive interval of a new trial's effect
                pi_lo, pi_hi = fit.pi_low, fit.pi_high
            else:
                pi_lo, pi_hi, _ = prediction_interval(est, fit.se, fit.tau2, fit.k, settings)
            pi_defined = np.isfinite(pi_lo) & np.isfinite(pi_hi)
            if tau2 > 0:
                tau = np.sqrt(tau2)
                pi_cover = ndtr((pi_hi - mu) / tau) - ndtr((pi_lo - mu) / tau)
            else:
                pi_cover = ((pi_lo <= mu) & (mu <= pi_hi)).astype(float)
            pi_cover = np.where(pi_defined, pi_cover, 0.0)
            reject = ((fit.p < 1 - base.level) if not bayesian else ((lo > 0) | (hi < 0))) & defined
            t_err = np.where(np.isfinite(fit.tau2), fit.tau2, np.nan) - tau2
            i2 = fit.i2
        out.append([n, np.sum((lo <= mu) & (mu <= hi)), np.sum(err), np.sum(err ** 2), np.sum(err ** 4),
                    np.sum(width), np.sum(width ** 2), np.sum(reject), np.sum(pi_defined), np.sum(pi_cover),
                    np.sum(pi_cover ** 2), np.sum(~fit.converged), np.sum(~defined), np.sum(t_err),
                    np.sum(t_err ** 2), np.sum(t_err ** 4), np.sum(i2), np.sum(i2 ** 2), failed])
    return task.cell, task.block, np.asarray(out, dtype=float)


def simulate(design: Design, *, mu=0.5, tau2=(0.0, 0.05, 0.2), measure="SMD", sd=1.0, control_mean=None,
             methods=None, ci_methods=None, pi_methods=None, replicates=1000, seed=2018, blocks_per_task=None,
             client=None, progress=None, engine="auto", settings: Settings | None = None, preset=None,
             max_study_fits=MAX_STUDY_FITS, dask_min_seconds=None, **options) -> SimulationResult:
    """Simulate ``replicates`` meta-analyses of ``design`` per grid cell (every ``mu`` x ``tau2``) and pool
    each with every method x CI method; returns a :class:`SimulationResult` (see the module docstring
    for the draws, the scale of ``mu``, the metrics and the true I²).

    Conventions are taken as :func:`pfps_meta.pool` takes them: ``settings`` (a Settings) or ``preset`` (a
    name in :mod:`pfps_meta.analysis.presets`, e.g. "revman5", or a Preset), with keyword ``options``
    (``level=0.9``, ``smd_convention="revman5"``, ``i2_method="q"``, ...) on top
    (:meth:`Settings.from_mapping`). ``methods``, ``ci_methods`` and ``pi_methods`` (lists, or one
    comma-separated string) vary over the grid; each left out is the one of the settings (by default
    metafor's: REML, Wald, auto). A method ``bayes:PRIOR`` (e.g. ``"bayes:half-normal:0.5"``, PRIOR as
    :func:`pfps_meta.models.priors.parse_prior` reads it) is the Bayesian model with a flat prior for mu
    (:func:`pfps_meta.models.bayes.bayes_batch`): its CI is the central credible interval, its estimate
    the posterior median, its PI the posterior predictive interval, its rejection rate the share of
    credible intervals that exclude 0 (``ci_method`` "credible"; it ignores ci_methods and pi_methods).

    ``measure``: MD, SMD, SMDH or ROM (ignored for a design by variances); ``sd`` the within-arm SD;
    ``control_mean`` the control arm's true mean (required for ROM, default 0 otherwise).
    ``replicates`` is rounded up to a whole number of blocks of ``BLOCK``. ``client``: None
    (in-process), "local" (a ``dask.distributed.LocalCluster`` of two one-thread workers, started for this
    call and shut down before it returns), a scheduler address (connection and the wait for a worker
    bounded by ``DASK_TIMEOUT`` seconds; the connection is closed, the scheduler left running), or a Client
    (used as given, never closed). With a client, the first task group runs here, timed, and the rest
    goes to Dask only when its estimated time here reaches ``dask_min_seconds`` (default
    ``DASK_MIN_SECONDS``: 10 s for "local", 1 s for a scheduler of one's own; 0 sends everything to Dask);
    otherwise it stays in-process and ``notes`` says so and why. ``setup["scheduler"]`` records where
    the run went ("in-process" or "dask") and ``setup["estimated_seconds"]`` the in-process estimate.
    ``blocks_per_task``: by default ``IN_PROCESS_BLOCKS`` here, and on Dask :func:`_dask_groups`.
    ``engine``: "numpy" (the
    reference core, :func:`pfps_meta.models.pooling.pool_batch`), "numba" (the compiled kernel of
    :mod:`pfps_meta.models.fast`, FE/DL/ML/REML), or "auto" (numba when installed and every method is one
    it covers). Runs beyond ``max_study_fits`` trial-level fits (replicates x cells x method/CI pairs x
    k) are refused up front with a time estimate. Results are bit-identical across task sizes and
    workers for a given engine; the two engines agree to about 1e-10 per fit.

    Raises :class:`~pfps_meta.errors.InputError` naming the argument for any bad value.
    """
    if not isinstance(design, Design):
        raise InputError(f"design: expected a Design (got {type(design).__name__})")
    _check_one_or_several(options, methods, ci_methods, pi_methods)
    base = _base_settings(settings, preset, options)
    method_names = _names("methods", methods, base.method)
    ci_names = _names("ci_methods", ci_methods, base.ci_method)
    pi_names = _names("pi_methods", pi_methods, base.pi_method)
    mus, tau2s, sd, control_mean = _checked_draws(design, mu, tau2, measure, sd, control_mean)
    _check_replicates(replicates)
    seed = _seed(seed)
    dask_blocks = None if blocks_per_task is None else _whole("blocks_per_task", blocks_per_task, 1)
    bayes_names = [m for m in method_names if is_bayes_method(m)]
    frequentist = [m for m in method_names if not is_bayes_method(m)]
    _check_priors(bayes_names, design, measure)
    engine = _chosen_engine(engine, frequentist, replicates, mus, tau2s, ci_names, design)
    run, combos = _checked_combos(base, frequentist, ci_names, pi_names, bayes_names)
    n_blocks = -(-int(replicates) // BLOCK)
    cells = list(itertools.product(mus, tau2s))
    _check_size(design, n_blocks, cells, len(method_names) * len(ci_names), engine, max_study_fits)
    cm = 0.0 if control_mean is None else control_mean
    tasks = [Task(cell=c, block=b, design=design, measure=measure, mu=m, tau2=t, sd=sd, control_mean=cm,
                  seed=seed, combos=combos, settings=run, replicates=BLOCK, engine=engine)
             for c, (m, t) in enumerate(cells) for b in range(n_blocks)]
    size = dask_blocks or IN_PROCESS_BLOCKS         # the task groups here (on Dask: _dask_groups)
    groups = [tasks[i:i + size] for i in range(0, len(tasks), size)]
    if dask_min_seconds is not None:
        dask_min_seconds = _number("dask_min_seconds", dask_min_seconds, positive=False)
    results, how, where = _run(groups, client, progress, dask_min_seconds, dask_blocks)
    rows, notes = _cell_rows(results, cells, combos, design, measure, sd, control_mean, n_blocks)
    for note in notes:
        warnings.warn(note, SimulationWarning, stacklevel=2)
    notes += [where] if where else []
    unused = unused_count_options(run.replace(method=frequentist[0])) if frequentist else None
    notes += [unused] if unused else []          # e.g. mh_add from a spec's [settings]: said, not silent
    setup = {"mu": list(mus), "tau2": list(tau2s), "measure": None if design.vi else measure, "sd": sd,
             "control_mean": control_mean, "methods": list(method_names), "ci_methods": list(ci_names),
             "pi_methods": list(pi_names), "replicates": n_blocks * BLOCK, "seed": seed, "level": base.level,
             "block": BLOCK, "engine": engine, "settings": base.to_dict(),
             "preset": preset if isinstance(preset, str) or preset is None else preset.name, **how}
    return SimulationResult(table=pd.DataFrame(rows), design=design, setup=setup, notes=notes, settings=base)


def _check_one_or_several(options, methods, ci_methods, pi_methods) -> None:
    """A method, CI method or PI method is given as one (``method=``) or several (``methods=``), not both."""
    given = {canonical(key) for key in options}
    grids = {"methods": methods, "ci_methods": ci_methods, "pi_methods": pi_methods}
    for plural, single in (("methods", "method"), ("ci_methods", "ci_method"), ("pi_methods", "pi_method")):
        if single in given and grids[plural] is not None:
            raise InputError(f"{plural}: give {single}= (one) or {plural}= (several), not both")


def _checked_draws(design, mu, tau2, measure, sd, control_mean):
    """(mus, tau2s, sd, control_mean) checked: tau2 >= 0, a measure the simulation draws from two arms,
    and true values the measure's scale allows (:func:`_check_scale`)."""
    mus, tau2s = _numbers("mu", mu), _numbers("tau2", tau2)
    if any(t < 0 for t in tau2s):
        raise InputError("tau2: tau2 values must be finite and >= 0")
    if not isinstance(measure, str) or not design.vi and measure not in SIMULATED_MEASURES:
        arm = ", ".join(m for m in measures.names("arm") if m in SIMULATED_MEASURES)
        raise InputError(f"measure: {measure!r} is not one the simulation draws from two arms; use one of {arm}")
    sd = _number("sd", sd)
    if control_mean is not None:
        control_mean = _number("control_mean", control_mean, positive=measure == "ROM")
    _check_scale(measure, design, mus, tau2s, sd, control_mean)
    return mus, tau2s, sd, control_mean


def _check_replicates(replicates) -> None:
    """replicates is a whole number from 1 to 100,000,000."""
    if isinstance(replicates, bool) or not isinstance(replicates, numbers.Real) or not math.isfinite(replicates) \
            or not float(replicates).is_integer() or not 1 <= replicates <= 100_000_000:
        raise InputError(f"replicates: replicates must be 1 to 100,000,000 (got {replicates!r})")


def _check_priors(bayes_names, design, measure) -> None:
    """The prior of every ``bayes:PRIOR`` method parses (and suits the measure), before any work."""
    if bayes_names:
        from pfps_meta.models.priors import check_measure, parse_prior

        for name in bayes_names:      # the prior (and its measure) is checked before any work
            prior = parse_prior(name[len(BAYES_PREFIX):])
            if not design.vi:
                check_measure(prior, measure)


def _chosen_engine(engine, frequentist, replicates, mus, tau2s, ci_names, design) -> str:
    """The engine, "numpy" or "numba", with "auto" resolved; numba only when installed and covering every
    frequentist method."""
    from pfps_meta.models.fast import KERNEL_METHODS, available

    if engine == "auto":        # the compiled kernel only when the work pays for compiling or loading it
        from pfps_meta.models.fast import worth_compiling

        fits = -(-int(replicates) // BLOCK) * BLOCK * len(mus) * len(tau2s) * len(ci_names)
        engine = ("numba" if available() and set(frequentist) <= set(KERNEL_METHODS)
                  and all(worth_compiling(fits, design.k, m) for m in frequentist) else "numpy")
    if engine not in ("numpy", "numba"):
        raise InputError(f"engine: must be auto, numpy or numba (got {engine!r})")
    if engine == "numba" and not (available() and set(frequentist) <= set(KERNEL_METHODS)):
        raise InputError("engine: the numba engine needs numba installed (pip install 'pfps-meta[fast]') and "
                         f"methods among {', '.join(KERNEL_METHODS)}")
    return engine


def _checked_combos(base, frequentist, ci_names, pi_names, bayes_names):
    """(the settings of the runs, every method x CI x PI combination), each frequentist name validated by
    :meth:`Settings.replace` before any work; a Bayesian method has CI "credible" and PI "posterior"."""
    run = base.replace(tau2_ci=False, fit_statistics=False)
    combos = tuple(itertools.product(frequentist, ci_names, pi_names)) + \
        tuple((name, "credible", "posterior") for name in bayes_names)
    for method in frequentist:
        if method in COUNT_METHODS:
            raise InputError(f"methods: {method} pools 2x2 tables of counts, and the simulation draws study effects "
                             "and their variances: compare inverse-variance estimators (FE, DL, REML, ...)")
    for method, ci_method, pi_method in combos:      # validates every name before any work
        if not is_bayes_method(method):
            run.replace(method=method, ci_method=ci_method, pi_method=pi_method)
    return run, combos


def _check_size(design, n_blocks, cells, pairs, engine, max_study_fits) -> None:
    """The run is refused up front beyond ``max_study_fits`` trial-level fits (with a time estimate) or
    beyond ``MAX_BLOCK_BYTES`` of memory."""
    work = float(n_blocks * BLOCK) * len(cells) * pairs * design.k
    if work > max_study_fits:
        hours = work / STUDY_FITS_PER_SECOND[engine] / 3600
        raise InputError(f"replicates: {n_blocks * BLOCK:,} replicates x {len(cells)} grid cells x {pairs} "
                         f"method/CI pairs x k = {design.k} is {work:.2g} trial-level fits, beyond the limit of "
                         f"{max_study_fits:.2g} (about {hours:,.1f} core-hours); lower replicates or the grid, "
                         "or raise max_study_fits")
    block_bytes = ARRAYS_PER_BLOCK * 8.0 * BLOCK * design.k + BYTES_PER_TASK * n_blocks * len(cells)
    if block_bytes > MAX_BLOCK_BYTES:
        raise InputError(f"replicates: k = {design.k} with {n_blocks * len(cells):,} blocks of {BLOCK} replicates "
                         f"needs about {block_bytes / 1e9:.1f} GB, beyond the bound of {MAX_BLOCK_BYTES / 1e9:.0f} GB")


def _cell_rows(results, cells, combos, design, measure, sd, control_mean, n_blocks):
    """(the table's rows: the metrics of every grid cell x combination, the notes on failed replicates),
    the block sums added in block order so the result is bit-identical for any partition into tasks."""
    by_cell = {}
    for cell, block, sums in sorted(results, key=lambda r: (r[0], r[1])):
        by_cell.setdefault(cell, []).append(sums)
    rows, notes = [], []
    for c, (m, t) in enumerate(cells):
        total = reduce(np.add, by_cell[c])          # block order: bit-identical for any partition
        v_typ = design.typical_variance(measure, m, sd, control_mean)
        i2_true = 100.0 * t / (t + v_typ)
        for (method, ci_method, pi_method), sums in zip(combos, total):
            rows.append({"mu": m, "tau2": t, "method": method, "ci_method": ci_method, "pi_method": pi_method,
                         **_metrics(dict(zip(METRICS, sums)), t, i2_true, method == "FE")})
        failed = int(total[0][METRICS.index("failed")])
        if failed:
            notes.append(f"mu = {m:g}, tau2 = {t:g}: {failed:,} of {n_blocks * BLOCK:,} replicates failed (an "
                         "effect size could not be computed) and are left out of the metrics")
    return rows, notes


def _mean_sd(total, total2, n):
    """Mean and the MC SE of the mean from a sum and a sum of squares."""
    if n < 1:
        return np.nan, np.nan
    mean = total / n
    var = max((total2 - n * mean ** 2) / (n - 1), 0.0) if n > 1 else np.nan
    return mean, np.sqrt(var / n)


def _rmse(total2, total4, n):
    """RMSE and its MC SE (delta method: SE(MSE) / (2 RMSE)) from sums of e^2 and e^4."""
    if n < 1:
        return np.nan, np.nan
    mse = total2 / n
    rmse = np.sqrt(mse)
    var_sq = max((total4 - n * mse ** 2) / (n - 1), 0.0) if n > 1 else np.nan
    return rmse, (np.sqrt(var_sq / n) / (2 * rmse) if rmse > 0 else 0.0)


def _metrics(s, tau2, i2_true, fixed):
    n = s["n"]
    scored = max(n, 1)
    bias, bias_mcse = _mean_sd(s["err"], s["err2"], n)
    rmse, rmse_mcse = _rmse(s["err2"], s["err4"], n)
    width, width_mcse = _mean_sd(s["width"], s["width2"], n - s["undefined"])
    cover = s["ci_cover"] / scored if n else np.nan
    reject = s["reject"] / scored if n else np.nan
    pi_cover, pi_mcse = _mean_sd(s["pi_cover"], s["pi_cover2"], s["pi_n"])
    if fixed:
        t_bias = t_bias_mcse = t_rmse = t_rmse_mcse = np.nan
    else:
        t_bias, t_bias_mcse = _mean_sd(s["t_err"], s["t_err2"], n)
        t_rmse, t_rmse_mcse = _rmse(s["t_err2"], s["t_err4"], n)
    i2_mean, i2_mcse = _mean_sd(s["i2"], s["i2_sq"], n)
    return {"replicates": int(n), "failed": int(s["failed"]),
            "ci_coverage": cover, "ci_coverage_mcse": np.sqrt(cover * (1 - cover) / scored),
            "pi_coverage": pi_cover, "pi_coverage_mcse": pi_mcse,
            "bias": bias, "bias_mcse": bias_mcse, "rmse": rmse, "rmse_mcse": rmse_mcse,
            "ci_width": width, "ci_width_mcse": width_mcse,
            "rejection_rate": reject, "rejection_mcse": np.sqrt(reject * (1 - reject) / scored),
            "tau2_bias": t_bias, "tau2_bias_mcse": t_bias_mcse, "tau2_rmse": t_rmse, "tau2_rmse_mcse": t_rmse_mcse,
            "i2_true": i2_true, "i2_mean": i2_mean, "i2_mean_mcse": i2_mcse, "i2_bias": i2_mean - i2_true,
            "i2_bias_mcse": i2_mcse,
            "nonconverged": int(s["nonconverged"]), "undefined_ci": int(s["undefined"]),
            "undefined_pi": int(n - s["pi_n"])}


def _run_group(group):
    return [_block_sums(task) for task in group]


def _connect(address):
    """A Client for the scheduler at ``address``, with every wait bounded by ``DASK_TIMEOUT``; each failure
    is one InputError naming the address."""
    from dask.distributed import Client

    box = {}

    def connect():
        try:
            box["client"] = Client(address, timeout=DASK_TIMEOUT, set_as_default=False)
        except BaseException as exc:             # reported below, in the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=connect, daemon=True, name="pfps-dask-connect")
    worker.start()
    worker.join(DASK_TIMEOUT + 1.0)            # the handshake itself can hang: bound it here
    if worker.is_alive():
        raise InputError(f"client: {address} accepted the connection but did not answer as a Dask scheduler "
                         f"within {DASK_TIMEOUT + 1.0:g} s")
    error = box.get("error")
    if isinstance(error, KeyboardInterrupt):
        raise error
    if isinstance(error, (OSError, TimeoutError)):
        raise InputError(f"client: cannot connect to a Dask scheduler at {address} within {DASK_TIMEOUT:g} s "
                         f"({type(error).__name__})")
    if error is not None:
        raise InputError(f"client: {address} did not answer as a Dask scheduler ({type(error).__name__}: "
                         f"{str(error).splitlines()[0] if str(error) else 'no message'})")
    return box["client"]


def _wait_for_worker(client, address):
    try:
        client.wait_for_workers(1, timeout=DASK_TIMEOUT)
    except (TimeoutError, OSError):
        raise InputError(f"client: the Dask scheduler at {address} has no worker (waited {DASK_TIMEOUT:g} s)") \
            from None


def _in_process(groups, progress, done=0, total=None):
    """Run task groups here, with a progress bar after a second or two (``done`` groups already run)."""
    total = len(groups) + done if total is None else total
    out, start, shown = [], time.perf_counter(), False
    for i, group in enumerate(groups, start=done + 1):
        out += _run_group(group)
        elapsed = time.perf_counter() - start
        if progress or (progress is None and (shown or (elapsed > 1.5 and i < total))):   # once shown, to the end
            shown = True
            bar = "#" * int(30 * i / total)
            print(f"\rsimulating: [{bar:<30}] {i}/{total} task groups, {elapsed:.0f} s", end="", file=sys.stderr)
    if shown:
        print(file=sys.stderr)
    return out


def _timed_first_group(group):
    """(the block sums of the first task group, seconds per block): every block timed on its own, the
    median of all but the first (which pays for imports and a compiled kernel's load) when there are two
    or more."""
    out, seconds = [], []
    for task in group:
        start = time.perf_counter()
        out.append(_block_sums(task))
        seconds.append(time.perf_counter() - start)
    return out, float(np.median(seconds[1:] if len(seconds) > 1 else seconds))


def _checked_client(client):
    """"local", an address string or a dask Client (the Dask path), checked before any work."""
    try:
        from dask.distributed import Client
    except ImportError:
        raise InputError("client: the Dask path needs dask.distributed: pip install 'pfps-meta[dask]'") from None
    if not isinstance(client, (str, Client)):
        raise InputError(f"client: expected None, 'local', a scheduler address or a dask Client (got "
                         f"{type(client).__name__})")
    return client


def _run(groups, client, progress, min_seconds=None, blocks_per_task=None):
    """(the block sums of every task group, how it ran: a dict for ``setup`` and a note or None).

    In-process when ``client`` is None. Otherwise the first task group runs here, timed per block, and the
    rest goes to Dask only when its estimated in-process time reaches ``min_seconds`` (default
    ``DASK_MIN_SECONDS``: what starting and stopping a LocalCluster costs, or using a scheduler of one's
    own); ``min_seconds=0`` sends every group to Dask without timing any here. A LocalCluster we start
    for the rest starts in a thread while this process goes on with the next groups, until its workers
    are up (:class:`_LocalStart`); on Dask the blocks left are regrouped (:func:`_dask_groups`)."""
    if client is None:
        return _in_process(groups, progress), {"scheduler": "in-process"}, None
    client = _checked_client(client)
    kind = "local" if isinstance(client, str) and client == "local" else "given"
    threshold = DASK_MIN_SECONDS[kind] if min_seconds is None else float(min_seconds)
    if threshold <= 0:
        return _on_dask(_flat(groups), client, blocks_per_task), {"scheduler": "dask", "estimated_seconds": None}, None
    first, per_block = _timed_first_group(groups[0])
    remaining = sum(len(group) for group in groups[1:])
    estimate = per_block * remaining
    how = {"scheduler": "in-process", "estimated_seconds": per_block * (remaining + len(groups[0]))}
    if estimate < threshold:
        where = "a LocalCluster" if kind == "local" else f"the Dask scheduler ({_client_name(client)})"
        note = (f"ran in this process, not on {where}: the work left after the first task group was "
                f"estimated at {estimate:.1f} s here ({per_block * 1e3:.0f} ms per block of {BLOCK} replicates, "
                f"{remaining} blocks), under the {threshold:g} s that using {where} costs (dask_min_seconds)")
        return first + _in_process(groups[1:], progress, done=1, total=len(groups)), how, note
    how["scheduler"] = "dask"
    done = 1
    if kind == "local":          # the workers start and import the package while this process simulates
        client = _LocalStart()
        try:
            while done < len(groups) and not client.ready():
                first += _run_group(groups[done])
                done += 1
        except BaseException:
            client.close()
            raise
    note = None
    if done == len(groups):     # the cluster was not up before the work was done
        how["scheduler"], note = "in-process", "ran in this process: the work was done before the LocalCluster was up"
    return first + _on_dask(_flat(groups[done:]), client, blocks_per_task), how, note


def _flat(groups):
    return [task for group in groups for task in group]


def _dask_groups(tasks, workers, blocks_per_task=None):
    """The Dask tasks for ``tasks`` (blocks in cell, block order): ``blocks_per_task`` consecutive blocks
    each when given; otherwise at most ``DASK_TASKS_PER_WORKER`` per worker thread, task ``i`` taking every
    n-th block from block ``i`` on, so that every task holds the same mix of grid cells (about the same
    cost: no task left alone on one worker at the end). Any partition gives the same bits
    (:func:`_cell_rows` adds the block sums in block order)."""
    if blocks_per_task is not None:
        return [tasks[i:i + blocks_per_task] for i in range(0, len(tasks), blocks_per_task)]
    n = max(1, min(len(tasks), DASK_TASKS_PER_WORKER * max(1, workers)))
    return [tasks[i::n] for i in range(n)]


def _client_name(client):
    return client if isinstance(client, str) else getattr(client.scheduler, "address", "a Client")


@contextlib.contextmanager
def _quiet_distributed():
    """distributed's loggers at ERROR while we shut down a cluster we started (its nanny warns when a worker
    process is slow to exit), restored afterwards; a user's cluster and logging are never touched."""
    names = ["distributed"] + [name for name in logging.root.manager.loggerDict if name.startswith("distributed.")]
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


class _LocalStart:
    """A LocalCluster of two one-thread worker processes and our Client of it, started in a thread (so this
    process can go on simulating meanwhile), with ``OWN_CLUSTER_CONFIG`` and the workers importing this
    module before they report ready (``preload``); :meth:`close` shuts both down: client first, then the
    cluster with a generous timeout, so no worker is killed."""

    def __init__(self):
        self.cluster = self.client = self.error = None
        self._thread = threading.Thread(target=self._start, daemon=True, name="pfps-dask-start")
        self._thread.start()

    def _start(self):
        try:
            import dask
            from dask.distributed import Client, LocalCluster

            with dask.config.set(OWN_CLUSTER_CONFIG):
                # its worker processes log only CRITICAL: a worker whose heartbeat meets the closing scheduler
                # logs an ERROR from its own process, which no logger here reaches
                self.cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                            silence_logs=logging.CRITICAL, preload=[__name__])
                self.client = Client(self.cluster, set_as_default=False)
        except BaseException as exc:             # raised in the caller's thread by started()
            self.error = exc

    def ready(self) -> bool:
        return not self._thread.is_alive()

    def started(self):
        """Our Client, once the cluster is up (an error of the start raised here)."""
        self._thread.join()
        if self.error is not None:
            raise self.error
        return self.client

    def close(self):
        self._thread.join()
        with _quiet_distributed():
            if self.client is not None:
                self.client.close(timeout=DASK_CLOSE_TIMEOUT)
            if self.cluster is not None:
                self.cluster.close(timeout=DASK_CLOSE_TIMEOUT)


def _on_dask(tasks, client, blocks_per_task=None):
    """The block sums of ``tasks`` computed on Dask, in the tasks of :func:`_dask_groups`: "local" (or a
    :class:`_LocalStart` already under way) is a LocalCluster for this call, shut down before returning;
    an address is connected to and the connection closed; a Client is used as given and never closed."""
    if not tasks:
        if isinstance(client, _LocalStart):
            client.close()
        return []
    own = None
    if isinstance(client, _LocalStart):
        own = client
    elif isinstance(client, str):
        own = _LocalStart() if client == "local" else _connect(client)
    try:
        if own is not None:
            client = own.started() if isinstance(own, _LocalStart) else own
        _wait_for_worker(client, getattr(client.scheduler, "address", "the scheduler"))
        threads = 2 if isinstance(own, _LocalStart) else sum(client.nthreads().values())
        futures = client.map(_run_group, _dask_groups(tasks, threads, blocks_per_task), pure=False)
        return [item for part in client.gather(futures) for item in part]
    finally:
        if isinstance(own, _LocalStart):
            own.close()
        elif own is not None:
            with _quiet_distributed():
                own.close(timeout=DASK_CLOSE_TIMEOUT)
