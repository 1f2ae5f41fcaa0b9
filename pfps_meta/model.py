"""The fitted model: :func:`pool` and the :class:`MetaResult` it returns.

``MetaResult`` is the hub of the toolkit (metafor's design): printing, ``to_frame()``, ``to_dict()``,
plots, tables and sensitivity analyses are all functions of it. It holds numbers computed once by the
pooling core; nothing downstream recomputes statistics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import ndtri

from . import pooling
from .load import LINE_COLUMN, read_csv
from .validate import effect_table

# Field names of ``to_dict()`` / ``--format json``: scripts depend on them; do not rename.
JSON_FIELDS = ("k", "estimate", "se", "statistic", "df", "p", "ci_low", "ci_high",
               "tau2", "tau2_ci_low", "tau2_ci_high", "tau", "tau_ci_low", "tau_ci_high",
               "i2", "i2_ci_low", "i2_ci_high", "h2", "h2_ci_low", "h2_ci_high",
               "q", "q_df", "q_p", "pi_low", "pi_high", "pi_df", "converged", "iterations")

METHOD_NAMES = {
    "FE": "common-effect (fixed-effect) model",
    "DL": "DerSimonian-Laird", "REML": "restricted maximum likelihood", "ML": "maximum likelihood",
    "PM": "Paule-Mandel", "SJ": "Sidik-Jonkman", "HE": "Hedges", "EB": "empirical Bayes",
    "HS": "Hunter-Schmidt",
}


def _clean(value):
    """JSON-safe scalar: NaN becomes None, numpy scalars become Python ones."""
    if isinstance(value, (np.generic,)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class MetaResult:
    """A fitted meta-analysis.

    Attributes
    ----------
    studies : DataFrame
        One row per study: ``study, yi, vi, se, ci_low, ci_high, weight`` (weight in %), followed by the
        input columns (arm data etc.).
    stats : dict
        Pooled statistics (see ``JSON_FIELDS``): estimate, se, CI, p, tau2 with its Q-profile CI, tau,
        I2, H2, Q test, prediction interval, convergence.
    method, ci, pi, i2_method, level, measure, smd_convention : settings actually used.
    """

    studies: pd.DataFrame
    stats: dict
    method: str
    ci: str
    pi: str
    i2_method: str
    level: float
    measure: str | None
    smd_convention: str | None = None
    source: str | None = None
    notes: list = field(default_factory=list)

    def __getattr__(self, name):
        stats = self.__dict__.get("stats", {})
        if name in stats:
            return stats[name]
        raise AttributeError(name)

    # ---------------------------------------------------------------- conversions
    def to_dict(self) -> dict:
        """Every pooled statistic, the settings and the per-study rows, JSON-ready (NaN -> None)."""
        out = {name: _clean(self.stats[name]) for name in JSON_FIELDS}
        out.update(method=self.method, ci=self.ci, pi=self.pi, i2_method=self.i2_method,
                   level=self.level, measure=self.measure, smd_convention=self.smd_convention,
                   notes=list(self.notes))
        out["studies"] = [
            {"study": row.study, "yi": _clean(row.yi), "vi": _clean(row.vi), "se": _clean(row.se),
             "ci_low": _clean(row.ci_low), "ci_high": _clean(row.ci_high), "weight": _clean(row.weight)}
            for row in self.studies.itertuples(index=False)
        ]
        return out

    def to_frame(self) -> pd.DataFrame:
        """One row per study plus a final pooled row (``study = "Pooled (<method>)"``)."""
        cols = ["study", "yi", "vi", "se", "ci_low", "ci_high", "weight"]
        frame = self.studies[cols].copy()
        pooled = {"study": f"Pooled ({self.method})", "yi": self.stats["estimate"],
                  "vi": self.stats["se"] ** 2, "se": self.stats["se"],
                  "ci_low": self.stats["ci_low"], "ci_high": self.stats["ci_high"], "weight": 100.0}
        frame = pd.concat([frame, pd.DataFrame([pooled])], ignore_index=True)
        frame["pi_low"] = [np.nan] * len(self.studies) + [self.stats["pi_low"]]
        frame["pi_high"] = [np.nan] * len(self.studies) + [self.stats["pi_high"]]
        return frame

    def summary_frame(self) -> pd.DataFrame:
        """The pooled statistics as a one-row DataFrame (statsmodels' name)."""
        return pd.DataFrame([{name: self.stats[name] for name in JSON_FIELDS}])

    # ---------------------------------------------------------------- printing
    def summary(self, digits: int = 4) -> str:
        """A summary in the spirit of metafor's ``print.rma``."""
        s = self.stats
        f = _formatter(digits)
        pct = int(round(self.level * 100))
        lines = []
        if self.method == "FE":
            lines.append(f"Common-effect (fixed-effect) model (k = {s['k']})")
        else:
            lines.append(f"Random-effects model (k = {s['k']}; tau^2 estimator: {self.method}, "
                         f"{METHOD_NAMES[self.method]})")
        measure = self.measure or "effect"
        if self.measure in ("RR", "OR"):
            measure = f"log {self.measure} (results on the log scale; back-transformed below)"
        if self.measure == "SMD":
            measure += f" (Hedges' g, {self.smd_convention} convention)"
        lines.append(f"Measure: {measure}; sign = experimental minus control")
        lines.append("")
        if s["k"] >= 2:
            if self.method != "FE":
                lines.append(f"tau^2 (estimated amount of total heterogeneity): {f(s['tau2'])}"
                             f"  [{pct}% CI {f(s['tau2_ci_low'])}, {f(s['tau2_ci_high'])}]")
                lines.append(f"tau (square root of estimated tau^2 value):      {f(s['tau'])}")
            i2_ci = ""
            if s["i2_ci_low"] is not None and np.isfinite(s["i2_ci_low"]):
                i2_ci = f"  [{pct}% CI {s['i2_ci_low']:.2f}%, {s['i2_ci_high']:.2f}%]"
            basis = "from Q" if (self.i2_method == "q" or self.method == "FE") else "from tau^2"
            lines.append(f"I^2 (total heterogeneity / total variability):   {s['i2']:.2f}%{i2_ci}  ({basis})")
            lines.append(f"H^2 (total variability / sampling variability):  {s['h2']:.2f}")
            lines.append("")
            lines.append(f"Test for heterogeneity: Q(df = {int(s['q_df'])}) = {s['q']:.4f}, "
                         f"p {_pval(s['q_p'])}")
            lines.append("")
        else:
            lines.append("k = 1: the pooled estimate is the single study's; no heterogeneity statistics.")
            lines.append("")
        test = "t" if self.ci == "hksj" else "z"
        lines.append(f"Model results ({'Hartung-Knapp-Sidik-Jonkman, t(' + str(s['k'] - 1) + ')' if self.ci == 'hksj' else 'Wald, normal'}):")
        header = f"{'estimate':>10} {'se':>9} {test + 'val':>8} {'pval':>8} {'ci.lb':>10} {'ci.ub':>10}"
        lines.append(header)
        lines.append(f"{f(s['estimate']):>10} {f(s['se']):>9} {f(s['statistic']):>8} "
                     f"{_pval(s['p'], bare=True):>8} {f(s['ci_low']):>10} {f(s['ci_high']):>10}")
        if self.measure in ("RR", "OR") and s["estimate"] is not None:
            lines.append(f"Back-transformed ({self.measure}, exp): {math.exp(s['estimate']):.4f} "
                         f"[{math.exp(s['ci_low']):.4f}, {math.exp(s['ci_high']):.4f}]")
        lines.append("")
        if s["k"] >= 2:
            dist = {"auto": "t(k-1)" if self.ci == "hksj" else "normal", "z": "normal",
                    "t": "t(k-1)", "t_k2": "t(k-2)"}[self.pi]
            lines.append(f"{pct}% prediction interval ({dist}): [{f(s['pi_low'])}, {f(s['pi_high'])}]")
        if not s["converged"]:
            lines.append(f"WARNING: the {self.method} estimator did not converge "
                         f"({s['iterations']} iterations); treat tau^2 and everything after it with care.")
        for note in self.notes:
            lines.append(f"Note: {note}")
        lines.append("")
        lines.append("Studies:")
        table = self.studies[["study", "yi", "se", "ci_low", "ci_high", "weight"]].copy()
        lines.append(table.to_string(index=False, float_format=lambda x: f"{x:.{digits}f}"))
        return "\n".join(lines)

    def __str__(self):
        return self.summary()

    def __repr__(self):
        s = self.stats
        return (f"<MetaResult {self.method}/{self.ci} k={s['k']} estimate={s['estimate']:.4g} "
                f"[{s['ci_low']:.4g}, {s['ci_high']:.4g}] tau2={s['tau2']}>")

    def _repr_html_(self):
        from .tables import result_html

        return result_html(self)


def _formatter(digits):
    def f(x):
        if x is None or (isinstance(x, float) and not math.isfinite(x)):
            return "NA"
        return f"{x:.{digits}f}"
    return f


def _pval(p, bare=False):
    if p is None or not math.isfinite(p):
        return "NA"
    if p < 1e-4:
        return "<.0001" if bare else "< .0001"
    return f"{p:.4f}" if bare else f"= {p:.4f}"


def pool(data, measure=None, method="REML", ci="wald", pi="auto", i2="tau2", level=0.95,
         smd_convention="metafor", pooled_sd=False, tau2_ci=True, maxiter=1000) -> MetaResult:
    """Fit a meta-analysis to a table of studies.

    Parameters
    ----------
    data : DataFrame or path
        Arm-level columns ``study, n_exp, mean_exp, sd_exp, n_ctrl, mean_ctrl, sd_ctrl`` (then
        ``measure`` is "MD" or "SMD"), binary ``study, events_exp, n_exp, events_ctrl, n_ctrl``
        ("RR"/"OR", log scale), or effect-level ``study, yi, vi`` / ``study, yi, sei`` /
        ``study, estimate, ci_low, ci_high``. A path is read with :func:`pfps_meta.load.read_csv`.
    measure : {"MD", "SMD", "RR", "OR"} or None
    method : {"FE", "DL", "REML", "ML", "PM", "SJ", "HE", "EB", "HS"}
    ci : {"wald", "hksj"}
    pi : {"auto", "z", "t", "t_k2"}
    i2 : {"tau2", "q"}
    smd_convention : {"metafor", "revman5"}
    pooled_sd : bool
        MD only: use the pooled-SD variance (metafor ``vtype="HO"``).

    Raises
    ------
    pfps_meta.InputError
        Bad input, with the file, line, row and column.
    """
    if isinstance(data, (str, Path)):
        data = read_csv(data)
    table = effect_table(data, measure, smd_convention=smd_convention, pooled_sd=pooled_sd, level=level)
    return pool_effects(table, measure=measure, method=method, ci=ci, pi=pi, i2=i2, level=level,
                        smd_convention=smd_convention if measure == "SMD" else None, tau2_ci=tau2_ci,
                        maxiter=maxiter)


def pool_effects(table: pd.DataFrame, *, measure=None, method="REML", ci="wald", pi="auto", i2="tau2",
                 level=0.95, smd_convention=None, tau2_ci=True, maxiter=1000, notes=()) -> MetaResult:
    """Pool a table that already has ``study, yi, vi`` columns (see :func:`pool`)."""
    yi = table["yi"].to_numpy(dtype=float)
    vi = table["vi"].to_numpy(dtype=float)
    batch = pooling.pool_batch(yi, vi, method=method, ci=ci, pi=pi, i2=i2, level=level, tau2_ci=tau2_ci,
                               maxiter=maxiter)
    stats = batch.row(0)
    stats["k"] = int(stats["k"])
    stats["iterations"] = int(stats["iterations"])
    stats["converged"] = bool(stats["converged"])
    z = ndtri(0.5 + level / 2)
    se = np.sqrt(vi)
    front = pd.DataFrame({"study": table["study"].astype(str).to_numpy(), "yi": yi, "vi": vi, "se": se,
                          "ci_low": yi - z * se, "ci_high": yi + z * se, "weight": batch.weights[0]})
    rest = table.drop(columns=[c for c in ("study", "yi", "vi", LINE_COLUMN) if c in table.columns])
    # input columns that share a name with a computed one (e.g. a CI given as input) keep a suffix
    rest = rest.rename(columns={c: f"{c}_input" for c in rest.columns if c in front.columns})
    studies = pd.concat([front, rest.reset_index(drop=True)], axis=1)
    all_notes = list(notes)
    if stats["k"] == 2 and pi == "t_k2":
        all_notes.append("t(k-2) prediction interval is undefined for k = 2 (metafor silently uses df = 1)")
    if stats["k"] == 1 and ci == "hksj":
        all_notes.append("HKSJ needs k >= 2: a single study gets the Wald (z) CI and p-value, as in metafor")
    return MetaResult(studies=studies, stats=stats, method=method, ci=ci, pi=pi, i2_method=i2,
                      level=level, measure=measure, smd_convention=smd_convention,
                      source=table.attrs.get("source"), notes=all_notes)
