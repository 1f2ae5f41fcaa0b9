"""Sensitivity analyses, heterogeneity exploration and small-study effects, as functions of a fitted
:class:`~pfps_meta.models.univariate.MetaResult` (metafor's design).

Every refit goes through the batch core (:func:`pfps_meta.models.pooling.pool_batch`): leave-one-out,
cumulative meta-analysis, influence diagnostics, permutations and bootstraps are each one call on a
2-D array in which each row is one meta-analysis. Meta-regressions (Egger's mixed form, the side of
trim-and-fill, subgroups with a common tau2) use :mod:`pfps_meta.models.metareg`. Each function cites the
metafor function it reproduces; the tests compare them with metafor's output.
"""

from __future__ import annotations

import math
import numbers
import sys
import warnings

import numpy as np
import pandas as pd
from scipy.special import ndtr, stdtr

from pfps_meta.conventions import COUNT_METHODS
from pfps_meta import distributions
from pfps_meta.effects import measures
from pfps_meta.errors import ConvergenceWarning, InputError, SmallStudyWarning  # noqa: F401  (re-exported)
from pfps_meta.models.metareg import ResultDict, ResultFrame, design, meta_regression
from pfps_meta.models.multilevel_input import check_level
from pfps_meta.models.pooling import as_float_array, pool_batch
from pfps_meta.formatting import json_ready

SMALL_K = 10


# --------------------------------------------------------------------------------------------------
# The result types. Each keeps the access its callers use (a DataFrame's columns, a dict's keys) and
# prints in metafor's manner through the renderers of :mod:`pfps_meta.present.tables`.


class LeaveOneOutResult(ResultFrame):
    """metafor ``leave1out``: one row per study omitted."""


class CumulativeResult(ResultFrame):
    """metafor ``cumul``: row i pools the first i studies in the stated order."""


class InfluenceResult(ResultFrame):
    """metafor ``influence``: case-deletion diagnostics, one row per study."""


class EggerResult(ResultDict):
    """Egger's regression test in both forms (``["classic"]``, ``["mixed"]``)."""

    def to_frame(self) -> pd.DataFrame:
        rows = []
        for form in ("classic", "mixed"):
            test = self.get(form)
            if test:
                rows.append({"form": form, "coefficient": test.get("intercept", test.get("coefficient")),
                             "se": test["se"], "statistic": test["statistic"], "df": test["df"], "p": test["p"],
                             "limit_estimate": test["limit_estimate"]})
        return pd.DataFrame(rows, columns=["form", "coefficient", "se", "statistic", "df", "p", "limit_estimate"])


class BeggResult(ResultDict):
    """Begg and Mazumdar's rank correlation (metafor ``ranktest``)."""


class TrimFillResult(ResultDict):
    """Duval and Tweedie's trim-and-fill (metafor ``trimfill``)."""


class SubgroupResult(ResultDict):
    """Subgroup estimates (``["groups"]``) and the test for subgroup differences (``["test"]``)."""

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self["groups"]).copy()


class PermutationResult(ResultDict):
    """Permutation test of the pooled effect (metafor ``permutest``)."""


class BootstrapResult(ResultDict):
    """Non-parametric bootstrap percentile interval of tau2."""


class PredictiveProbabilityResult(ResultDict):
    """The chance that a new trial's true effect lies beyond a threshold."""


def scale_label(measure) -> str:
    """The scale the estimates are on: "log RR" for a ratio measure (back-transform with exp), else the
    measure ("MD", "SMD"), or "effect" when unknown."""
    if not measure:
        return "effect"
    return f"log {measure}" if measures.get(measure).ratio else str(measure)


def _about(result, **more) -> dict:
    """What a print states about the model a sensitivity analysis refits."""
    return {"k": result.stats["k"], "method": result.method, "ci_method": result.ci_method,
            "measure": result.measure, "scale": scale_label(result.measure), "level": result.level, **more}


def _yv(result):
    _inverse_variance_only(result)
    return result.studies["yi"].to_numpy(dtype=float), result.studies["vi"].to_numpy(dtype=float)


def _fitted(result):
    """InputError naming ``result`` unless it is a fitted result (its studies, stats and settings)."""
    if not all(hasattr(result, name) for name in ("studies", "stats", "settings")):
        raise InputError(f"result: a fitted result (pm.pool) is needed (got {type(result).__name__})")
    return result


def _whole(name, value, minimum=1) -> int:
    """A whole number >= ``minimum`` for the argument ``name``, or an InputError naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise InputError(f"{name}: a whole number >= {minimum} is needed (got {value!r})")
    return int(value)


def _column_or_values(result, name, value):
    """The per-study values an argument gives: a column of ``result.studies`` named by a string, or one value
    per study; an InputError naming the argument otherwise."""
    if isinstance(value, str):
        if value not in result.studies.columns:
            raise InputError(f"{name}: no column '{value}' in the input", file=getattr(result, "source", None))
        return result.studies[value].to_numpy()
    values = np.asarray(value, dtype=object).ravel() if np.iterable(value) else None
    if values is None or len(values) != len(result.studies):
        raise InputError(f"{name}: a column name or one value per study ({len(result.studies)}) is needed")
    return values


def _inverse_variance_only(result):
    """Refuse, in one line, an analysis that refits by inverse variance when ``result`` pools 2x2 tables."""
    if _fitted(result).settings.method in COUNT_METHODS:
        raise InputError(f"this sensitivity analysis refits by inverse variance from yi and vi; a "
                         f"{result.settings.method} fit pools 2x2 tables, and of these analyses only leave_one_out "
                         f"refits it (metafor's regtest, ranktest, trimfill, influence and cumul take rma.uni fits)")


def _refit(result, yi, vi, **overrides):
    """Refit rows with the result's own settings (every refit inherits them), tau2 CI off unless asked."""
    _inverse_variance_only(result)
    return pool_batch(yi, vi, result.settings.replace(**{"tau2_ci": False, "fit_statistics": False, **overrides}))


ROW_COLUMNS = ["k", "estimate", "se", "ci_low", "ci_high", "p", "tau2", "i2", "h2", "q", "q_p", "pi_low",
               "pi_high", "converged"]
# Case-deletion refits build (rows x k) arrays; at most this many cells are refitted at once, so memory
# stays bounded at large k (about 100 MB at k = 5,000) while small k stays one vectorised call.
CELLS_PER_CHUNK = 1_000_000


def _row_chunks(k):
    rows = max(1, CELLS_PER_CHUNK // max(k, 1))
    return [(start, min(start + rows, k)) for start in range(0, k, rows)]


def _deleted_fits(result, keep_mask, ys=None, vs=None):
    """Refit one meta-analysis per row of ``keep_mask(start, stop)`` (a (rows x k) boolean array of the
    studies kept), chunk by chunk; returns the stacked summary frame."""
    yi, vi = _yv(result) if ys is None else (ys, vs)
    frames = []
    for start, stop in _row_chunks(len(yi)):
        keep = keep_mask(start, stop)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            batch = _refit(result, np.where(keep, yi, np.nan), np.where(keep, vi, np.nan))
        frames.append(batch.summary_frame()[ROW_COLUMNS])
    return pd.concat(frames, ignore_index=True)


def _deleted_count_fits(result):
    """Leave-one-out of a Mantel-Haenszel or Peto fit: each refit pools the other 2x2 tables with the same
    method and corrections (metafor ``leave1out.rma.mh`` / ``leave1out.rma.peto``)."""
    from pfps_meta.models import mantel_haenszel

    k, rows = len(result.studies), []
    for i in range(k):
        keep = np.arange(k) != i
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            stats = mantel_haenszel.refit(result, keep).stats if k > 1 else {}
        rows.append({name: stats.get(name, math.nan) for name in ROW_COLUMNS})
    return pd.DataFrame(rows, columns=ROW_COLUMNS)


def _without_one(k):
    return lambda start, stop: np.arange(k)[None, :] != np.arange(start, stop)[:, None]


def leave_one_out(result) -> pd.DataFrame:
    """The pooled result with each study omitted in turn (metafor ``leave1out``), same settings as ``result``.

    Columns: study (the one omitted), k, estimate, se, ci_low, ci_high, p, tau2, i2, h2, q, q_p,
    pi_low, pi_high, converged. Computed in chunks of rows (bounded memory at large k).
    """
    if _fitted(result).settings.method in COUNT_METHODS:
        out = _deleted_count_fits(result)
    else:
        out = _deleted_fits(result, _without_one(len(result.studies)))
    out.insert(0, "study", result.studies["study"].to_numpy())
    return LeaveOneOutResult.of(out, **_about(result))


def cumulative(result, order=None) -> pd.DataFrame:
    """Cumulative meta-analysis (metafor ``cumul``): row i pools the first i studies in ``order``.

    ``order`` is a column name of ``result.studies`` (e.g. "year"), an array of sort keys, or None
    (the table's order). Ties keep the table order (a stable sort, like R's ``order``).
    """
    yi, vi = _yv(result)
    k = len(yi)
    if order is None:
        index = np.arange(k)
    else:
        keys = _column_or_values(result, "order", order)
        index = np.argsort(pd.to_numeric(pd.Series(keys), errors="coerce").to_numpy(), kind="stable")
    ys, vs = yi[index], vi[index]
    out = _deleted_fits(result, lambda start, stop: np.arange(k)[None, :] <= np.arange(start, stop)[:, None],
                        ys, vs)
    out.insert(0, "study", result.studies["study"].to_numpy()[index])
    order_label = order if isinstance(order, str) else ("the table's order" if order is None else "the given keys")
    return CumulativeResult.of(out, **_about(result, order=order_label))


def influence(result) -> pd.DataFrame:
    """Case-deletion diagnostics as metafor's ``influence.rma.uni`` (Viechtbauer & Cheung 2010).

    Per study: externally standardised residual ``rstudent``, ``dffits``, Cook's distance ``cook_d``,
    covariance ratio ``cov_r``, ``tau2_del`` and ``q_del`` (with the study deleted), ``hat`` and
    ``weight`` (%). With the deleted fit's mean ``mu_i``, variance ``vb_i`` and HKSJ factor ``s2w_i``
    (1 for Wald): ``rstudent = (y_i - mu_i) / sqrt(s2w_i (v_i + tau2_i) + vb_i)``,
    ``dffits = (mu - mu_i) / sqrt(s2w_i h_i (tau2_i + v_i))``, ``cook_d = (mu - mu_i)^2 / vb``,
    ``cov_r = vb_i / vb``.
    """
    yi, vi = _yv(result)
    s = result.stats
    loo = leave_one_out(result)
    tau2_full = 0.0 if result.method == "FE" else s["tau2"]
    w = 1.0 / (vi + tau2_full)
    hat = w / w.sum()
    tau2_del = loo["tau2"].to_numpy(dtype=float)
    mu_del = loo["estimate"].to_numpy(dtype=float)
    vb_del = loo["se"].to_numpy(dtype=float) ** 2
    if result.ci_method == "hksj":
        sum_w_del = np.empty(len(yi))
        for start, stop in _row_chunks(len(yi)):
            kept = _without_one(len(yi))(start, stop)
            sum_w_del[start:stop] = np.where(kept, 1.0 / (vi[None, :] + tau2_del[start:stop, None]), 0.0).sum(axis=1)
        s2w_del = vb_del * sum_w_del
    else:
        s2w_del = np.ones_like(yi)
    vb_full = s["se"] ** 2
    resid = yi - mu_del
    resid[np.abs(resid) < 100 * np.finfo(float).eps] = 0.0
    out = pd.DataFrame({
        "study": result.studies["study"].to_numpy(),
        "rstudent": resid / np.sqrt(vi * s2w_del + vb_del + tau2_del * s2w_del),
        "dffits": (s["estimate"] - mu_del) / np.sqrt(s2w_del * hat * (tau2_del + vi)),
        "cook_d": (s["estimate"] - mu_del) ** 2 / vb_full,
        "cov_r": vb_del / vb_full,
        "tau2_del": tau2_del,
        "q_del": loo["q"].to_numpy(dtype=float),
        "hat": hat,
        "weight": 100 * hat,
    })
    k, p = len(yi), 1
    out["influential"] = ((np.abs(out["dffits"]) > 3 * math.sqrt(p / (k - p)))
                          | (distributions.chi2_cdf(out["cook_d"], p) > 0.5) | (out["hat"] > 3 * p / k))
    return InfluenceResult.of(out, **_about(result))


SAME_SE = "all studies have the same standard error, so Egger's regression on the SE is undefined"


def _constant(values) -> bool:
    values = np.asarray(values, dtype=float)
    return bool(np.ptp(values) <= 1e-12 * np.max(np.abs(values)))


def _small_k_warning(result, what):
    if _fitted(result).stats["k"] < SMALL_K:
        warnings.warn(f"{what} with k = {result.stats['k']} < {SMALL_K} studies has little power; "
                      "a non-significant result is weak evidence of no small-study effects",
                      SmallStudyWarning, stacklevel=3)


def egger_classic(yi, vi) -> dict | None:
    """Egger's classic regression test (Egger et al. 1997, BMJ 315:629-634; metafor ``regtest(model="lm")``):
    weighted least squares of ``y_i`` on ``(1, se_i)`` with weights ``1/v_i``; the coefficient of ``se_i``
    (the classic "intercept" of the standardised form) over its SE, residual variance
    ``sum w r^2 / (k - 2)``, is tested against t(k - 2). Returns ``{"intercept", "se", "statistic", "df",
    "p", "limit_estimate"}`` (the fitted effect at se = 0), or None when the SEs are all equal (no slope to fit). Numpy only, so GRADE needs no
    regression library."""
    y, v = np.asarray(yi, dtype=float), np.asarray(vi, dtype=float)
    se, w, k = np.sqrt(v), 1.0 / v, len(y)
    if k < 3 or np.ptp(se) <= 1e-12 * np.max(se):
        return None
    x = np.column_stack([np.ones(k), se])
    xtwx = x.T @ (w[:, None] * x)
    beta = np.linalg.solve(xtwx, x.T @ (w * y))
    resid = y - x @ beta
    sigma2 = float(np.sum(w * resid ** 2)) / (k - 2)
    bse = float(np.sqrt(sigma2 * np.linalg.inv(xtwx)[1, 1]))
    statistic = float(beta[1]) / bse
    return {"intercept": float(beta[1]), "se": bse, "statistic": statistic, "df": k - 2,
            "p": float(2 * distributions.t_sf(abs(statistic), k - 2)), "limit_estimate": float(beta[0])}


def egger(result) -> dict:
    """Egger's regression test in both forms, named (Egger et al. 1997; Sterne & Egger 2005).

    ``classic``: weighted least squares of ``y_i`` on ``se_i`` with weights ``1/v_i`` (metafor
    ``regtest(model="lm")``), equivalent to regressing ``y_i/se_i`` on ``1/se_i``; ``intercept`` is that
    classic intercept (the coefficient of ``se_i`` here), tested with t(k-2). ``limit_estimate`` is the
    predicted effect at ``se = 0``.
    ``mixed``: metafor's default ``regtest()``: a meta-regression on ``se_i`` with the model's own tau2
    estimator and CI method (z, or t(k-2) with HKSJ).
    """
    _small_k_warning(result, "Egger's test")
    yi, vi = _yv(result)
    sei = np.sqrt(vi)
    k = len(yi)
    if _constant(sei):
        return EggerResult({"classic": None, "mixed": None, "k": k, "low_power": k < SMALL_K, "reason": SAME_SE},
                           **_about(result))
    test = egger_classic(yi, vi)
    if test is None:          # the SEs differ by less than egger_classic's tolerance: no slope to fit
        return EggerResult({"classic": None, "mixed": None, "k": k, "low_power": k < SMALL_K, "reason": SAME_SE},
                           **_about(result))
    classic = {"form": "classic weighted regression (metafor regtest model='lm'; what most papers report)", **test}
    fit = _meta_regression(result, yi, vi, sei, names=["sei"])
    mixed = {"form": f"mixed-effects meta-regression on the SE (metafor regtest default; {result.method}, "
                     f"{result.settings.test})",
             "coefficient": float(fit.beta[1]), "se": float(fit.se[1]), "statistic": float(fit.statistic[1]),
             "df": None if result.ci_method != "hksj" else k - 2, "p": float(fit.p[1]),
             "limit_estimate": float(fit.beta[0])}
    return EggerResult({"classic": classic, "mixed": mixed, "k": k, "low_power": k < SMALL_K}, **_about(result))


def begg(result) -> dict:
    """Begg & Mazumdar (1994) rank correlation, as metafor's ``ranktest``.

    Kendall's tau between ``(y_i - theta) / sqrt(v_i - vb)`` (common-effect ``theta`` and its variance
    ``vb``) and ``v_i``, with the exact two-sided p-value when there are no ties (as R's
    ``cor.test(exact = TRUE)``) and the normal approximation otherwise.
    """
    _small_k_warning(result, "Begg's test")
    yi, vi = _yv(result)
    if _constant(vi):
        return BeggResult({"tau": None, "p": None, "exact": False, "k": len(yi), "low_power": len(yi) < SMALL_K,
                           "reason": "all studies have the same variance, so the rank correlation is undefined"},
                          **_about(result))
    w = 1.0 / vi
    theta = np.sum(w * yi) / np.sum(w)
    ystar = (yi - theta) / np.sqrt(vi - 1.0 / np.sum(w))
    ties = len(np.unique(ystar)) < len(ystar) or len(np.unique(vi)) < len(vi)
    tau, p = kendall_tau(ystar, vi, method="asymptotic" if ties else "exact")
    return BeggResult({"tau": float(tau), "p": float(p), "exact": not ties, "k": len(yi),
                       "low_power": len(yi) < SMALL_K}, **_about(result))


def _tie_sums(values) -> tuple[int, int, int]:
    """Over the groups of equal values (sizes t): sum t(t-1)/2 (tied pairs), sum t(t-1)(t-2) and
    sum t(t-1)(2t+5), the terms of the tie-corrected variance of S (Kendall 1970, eq. 4.3)."""
    t = [int(c) for c in np.unique(values, return_counts=True)[1] if c > 1]
    return (sum(c * (c - 1) // 2 for c in t), sum(c * (c - 1) * (c - 2) for c in t),
            sum(c * (c - 1) * (2 * c + 5) for c in t))


def inversion_counts(n: int, up_to: int, scaled: bool = False) -> np.ndarray:
    """How many permutations of n items have exactly k inversions, k = 0..up_to (float64; exact while the
    counts stay below 2**53, e.g. n <= 13).

    Recursion on n (Kendall 1970, ch. 4): placing the m-th item adds 0..m-1 inversions, so
    ``I(m, k) = sum_{j=0}^{min(k, m-1)} I(m-1, k-j)``: a running sum over k, less the running sum m places
    back, starting from ``I(2, .) = (1, 1)``. ``scaled`` (n >= 2): each step also divides by m, so the
    result is ``2 I(n, k) / n!`` (for n! beyond the float range). Under independence without ties the number of
    discordant pairs of n pairs has the distribution ``I(n, k) / n!``. The operations run in the order of
    scipy's exact Kendall p-value, so its p-values are reproduced to the last bit.
    """
    counts = np.zeros(up_to + 1)
    counts[:2 if n >= 2 else 1] = 1.0
    for m in range(3, n + 1):
        counts = np.cumsum(counts) / m if scaled else np.cumsum(counts)
        if m <= up_to:
            counts[m:] -= counts[:up_to + 1 - m]
    return counts


def kendall_exact_p(n: int, discordant: int) -> float:
    """Two-sided exact p-value of Kendall's tau without ties, ``min(1, 2 P(D <= d))``, ``d`` the smaller of
    the discordant and concordant counts (the null distribution is symmetric about n(n-1)/4) and ``P``
    from :func:`inversion_counts`: ``P(D <= 0) = 1/n!``, ``P(D <= 1) = 1/(n-1)!``, and 1 at the centre
    (R ``cor.test(method = "kendall", exact = TRUE)``, scipy ``kendalltau(method="exact")``)."""
    total = n * (n - 1) // 2
    d = min(discordant, total - discordant)
    if n <= 2 or 4 * d == n * (n - 1):
        p = 1.0
    elif d == 0:
        p = 2.0 / math.factorial(n) if n < 171 else 0.0
    elif d == 1:
        p = 2.0 / math.factorial(n - 1) if n < 172 else 0.0
    elif n < 171:
        p = 2.0 * np.sum(inversion_counts(n, d)) / math.factorial(n)
    else:
        p = np.sum(inversion_counts(n, d, scaled=True))
    return float(min(1.0, max(0.0, p)))


def kendall_tau(x, y, method=None) -> tuple[float, float]:
    """Kendall's tau-b (Kendall 1945) of paired values ``x``, ``y`` and its two-sided p-value.

    ``tau_b = (C - D) / sqrt((n0 - n_x)(n0 - n_y))`` with C and D the concordant and discordant pairs,
    n0 = n(n-1)/2 and n_x, n_y the pairs tied in x and in y. The p-value (``method``): "exact" (no ties
    allowed), :func:`kendall_exact_p`; "asymptotic": S = C - D against the normal with the tie-corrected
    variance ``[n(n-1)(2n+5) - sum t(t-1)(2t+5) - sum u(u-1)(2u+5)] / 18 + sum t(t-1) sum u(u-1) /
    (2n(n-1)) + sum t(t-1)(t-2) sum u(u-1)(u-2) / (9n(n-1)(n-2))`` (Kendall 1970, eq. 4.3; scipy
    ``kendalltau(method="asymptotic")``, R ``cor.test(exact = FALSE)`` without continuity correction);
    None: exact without ties, else asymptotic (as metafor's ``ranktest``). NaN, NaN when x or y is
    constant.
    """
    x, y = as_float_array(x, "x").ravel(), as_float_array(y, "y").ravel()
    if len(x) != len(y) or len(x) < 2:
        raise InputError(f"x and y need the same length, at least 2 (got {len(x)} and {len(y)})", column="x")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise InputError("x and y must be finite numbers", column="x")
    n = len(x)
    upper = np.triu_indices(n, 1)
    product = (np.sign(x[:, None] - x[None, :]) * np.sign(y[:, None] - y[None, :]))[upper]
    discordant, concordant = int(np.sum(product < 0)), int(np.sum(product > 0))
    xtie, x0, x1 = _tie_sums(x)
    ytie, y0, y1 = _tie_sums(y)
    total = n * (n - 1) // 2
    if xtie == total or ytie == total:
        return math.nan, math.nan
    tau = min(1.0, max(-1.0, (concordant - discordant) / np.sqrt(total - xtie) / np.sqrt(total - ytie)))
    ties = bool(xtie or ytie)
    method = ("asymptotic" if ties else "exact") if method is None else method
    if method == "exact":
        if ties:
            raise InputError("the exact p-value of Kendall's tau needs values without ties", column="method")
        return float(tau), float(kendall_exact_p(n, discordant))
    if method != "asymptotic":
        raise InputError(f"'{method}' is not one of exact, asymptotic", column="method")
    m = n * (n - 1.0)
    var = (m * (2 * n + 5) - x1 - y1) / 18 + (2 * xtie * ytie) / m + \
        (x0 * y0 / (9 * m * (n - 2)) if x0 * y0 else 0.0)      # (n = 2: no triple ties, no term)
    z = (concordant - discordant) / np.sqrt(var)
    return float(tau), float(2 * distributions.norm_sf(abs(z)))


def _ordinal_ranks(values):
    """Ranks 1..n, ties broken by position (scipy ``rankdata(method="ordinal")``, R ``rank(ties="first")``)."""
    ranks = np.empty(len(values), dtype=float)
    ranks[np.argsort(values, kind="stable")] = np.arange(1, len(values) + 1)
    return ranks


def trimfill(result, estimator="L0", side=None, maxiter=100) -> dict:
    """Duval & Tweedie (2000) trim-and-fill, following metafor's ``trimfill.rma.uni``.

    ``side`` ("left"/"right") is where studies are missing; by default it is chosen from the sign of
    the slope of a meta-regression on the SE (negative slope: missing on the right). The trimmed fits
    use the model's tau2 estimator; the final fit on observed plus filled studies uses the model's
    estimator and CI method. Filled studies mirror the k0 most extreme ones around the trimmed estimate.
    """
    if estimator not in ("L0", "R0"):
        raise InputError(f"estimator: must be 'L0' or 'R0' (got {estimator!r})")
    if side not in (None, "left", "right"):
        raise InputError(f"side: must be 'left', 'right' or None (chosen from the data; got {side!r})")
    _small_k_warning(result, "Trim-and-fill")
    yi0, vi0 = _yv(result)
    k = len(yi0)
    side_note = None
    if side is None and _constant(vi0):
        side, side_note = "left", "side 'left' by default: " + SAME_SE + " (its slope chooses the side)"
    elif side is None:
        slope = _meta_regression(result, yi0, vi0, np.sqrt(vi0), ci_method="wald").beta[1]
        side = "right" if slope < 0 else "left"
    sign = -1.0 if side == "right" else 1.0
    order = np.argsort(sign * yi0, kind="stable")
    yi, vi = sign * yi0[order], vi0[order]
    k0, k0_previous, beta, iterations = 0, -1, np.nan, 0
    while k0 != k0_previous:
        k0_previous = k0
        iterations += 1
        if iterations > maxiter:
            raise InputError(f"trim-and-fill did not converge in {maxiter} iterations", file=result.source)
        beta = _refit(result, yi[: k - k0], vi[: k - k0], ci_method="wald").estimate[0]
        centred = yi - beta
        ranks = _ordinal_ranks(np.abs(centred))
        signed = np.sign(centred) * ranks
        if estimator == "R0":
            k0 = (k - np.max(-signed[signed < 0])) - 1 if np.any(signed < 0) else k - 1
        else:
            s_r = np.sum(signed[signed > 0])
            k0 = (4 * s_r - k * (k + 1)) / (2 * k - 1)
        k0 = int(max(0, np.round(k0)))
    filled_y = np.array([])
    filled_v = np.array([])
    if k0 > 0:      # mirror the k0 most extreme studies around the trimmed estimate (data scale)
        filled_y = 2 * sign * beta - sign * yi[k - k0:]
        filled_v = vi[k - k0:]
    all_y = np.concatenate([yi0, filled_y])
    all_v = np.concatenate([vi0, filled_v])
    fit = _refit(result, all_y, all_v)
    return TrimFillResult({"k0": k0, "side": side, "estimator": estimator, "estimate": float(fit.estimate[0]),
                           "se": float(fit.se[0]), "ci_low": float(fit.ci_low[0]), "ci_high": float(fit.ci_high[0]),
                           "tau2": float(fit.tau2[0]), "filled_yi": filled_y.tolist(),
                           "filled_vi": filled_v.tolist(), "method": result.method, "low_power": k < SMALL_K,
                           "side_note": side_note},
                          **_about(result, k_observed=k, p=float(fit.p[0]), i2=float(fit.i2[0])))


SUBGROUP_COLUMNS = ["k", "estimate", "se", "statistic", "df", "p", "ci_low", "ci_high", "tau2", "tau2_ci_low",
                    "tau2_ci_high", "i2", "q", "q_df", "q_p", "pi_low", "pi_high", "converged"]


def subgroups(result, groups, tau2="separate") -> SubgroupResult:
    """Subgroup analysis with the test for subgroup differences, with the result's own settings.

    ``tau2="separate"`` (RevMan, R meta's default): each subgroup pooled on its own, then Cochran's Q
    between the subgroup estimates with a common-effect model (Borenstein et al. 2009, ch. 19).
    ``tau2="common"``: one meta-regression on subgroup indicators (metafor ``rma(mods = ~ factor(g))``);
    the omnibus ``QM`` is the test of differences (chi2, or F with HKSJ); the subgroup estimates, their
    SEs and CIs are those of ``rma(mods = ~ factor(g) - 1)`` with the same tau2 estimator, CI method and
    level (so HKSJ gives t(k - groups) intervals).
    """
    yi, vi = _yv(result)
    _fitted(result)
    labels = pd.Series(_column_or_values(result, "groups", groups)).astype(str).to_numpy()
    levels = sorted(set(labels))
    if len(levels) < 2:
        name = f"column '{groups}'" if isinstance(groups, str) else "the subgroup labels"
        raise InputError(f"subgroup analysis needs at least two subgroups, but {name} has "
                         f"{len(levels)} ({', '.join(levels)})", file=result.source)
    if tau2 == "separate":
        width = max(np.sum(labels == g) for g in levels)
        ys = np.full((len(levels), width), np.nan)
        vs = np.full((len(levels), width), np.nan)
        for i, g in enumerate(levels):
            sel = labels == g
            ys[i, : sel.sum()] = yi[sel]
            vs[i, : sel.sum()] = vi[sel]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            batch = _refit(result, ys, vs, tau2_ci=True)
        frame = batch.summary_frame()
        frame = frame[[c for c in SUBGROUP_COLUMNS if c in frame.columns]]
        frame.insert(0, "group", levels)
        between = _refit(result, frame["estimate"].to_numpy(), frame["se"].to_numpy() ** 2, method="FE",
                         ci_method="wald")
        test = {"q": float(between.q[0]), "df": len(levels) - 1, "p": float(between.q_p[0]),
                "distribution": "chi2"}
        rows = frame
    elif tau2 == "common":
        contrasts = np.column_stack([(labels == g).astype(float) for g in levels[1:]])
        fit = _meta_regression(result, yi, vi, contrasts, names=[f"group[{g}]" for g in levels[1:]])
        test = {"q": float(fit.qm), "df": list(fit.qm_df), "p": float(fit.qm_p),
                "distribution": "F" if result.ci_method == "hksj" else "chi2", "tau2": float(fit.tau2)}
        cells = np.column_stack([(labels == g).astype(float) for g in levels])
        means = _meta_regression(result, yi, vi, cells, names=levels, intercept=False)
        rows = pd.DataFrame({"group": levels, "k": [int(np.sum(labels == g)) for g in levels],
                             "estimate": means.beta, "se": means.se, "ci_low": means.ci_low,
                             "ci_high": means.ci_high, "p": means.p, "tau2": means.tau2})
    else:
        raise InputError(f"tau2: must be 'separate' or 'common' (got '{tau2}')")
    label = groups if isinstance(groups, str) else "the subgroup labels"
    return SubgroupResult({"groups": rows, "test": test, "tau2": tau2}, **_about(result, by=label))


def _meta_regression(result, yi, vi, X, names=None, intercept=True, **overrides):
    """A meta-regression with the result's settings (its estimator, CI method and level)."""
    try:
        return meta_regression(yi, vi, X, names=names, settings=result.settings.replace(**overrides),
                               intercept=intercept)
    except (ValueError, np.linalg.LinAlgError) as exc:
        raise InputError(f"meta-regression not possible: {exc}", file=result.source) from None


def permutation_test(result, n_permutations=1000, exact=None, seed=2018, progress=None) -> dict:
    """Permutation test of the pooled effect (Follmann & Proschan 1999), as metafor's ``permutest``.

    Sign flips of the effects: every one of the ``2^k`` flips when ``exact`` (default when ``2^k`` is at
    most 2^16), else ``n_permutations`` random flips (seeded) with the observed signs counted as the
    first. Two-sided p = share of permuted test statistics with ``|z*| >= |z|``. All refits are one
    ``pool_batch`` call per chunk.
    """
    yi, vi = _yv(result)
    n_permutations = _whole("n_permutations", n_permutations)
    k = len(yi)
    if exact is None:
        exact = k <= 16
    if exact:
        total = 2 ** k

        def signs(start, stop):
            return 1.0 - 2.0 * ((np.arange(start, stop)[:, None] >> np.arange(k)[::-1]) & 1)
    else:
        total = n_permutations
        rng = np.random.default_rng(seed)

        def signs(start, stop):         # drawn chunk by chunk from one seeded stream (bounded memory)
            drawn = rng.choice([-1.0, 1.0], size=(stop - start, k))
            if start == 0:
                drawn[0] = 1.0          # the observed signs count as the first permutation
            return drawn
    batches = _chunked(lambda s: _refit(result, s * yi, np.broadcast_to(vi, s.shape)), total, signs, progress,
                       "permutation")
    statistics = np.concatenate([b.statistic for b in batches])
    observed = result.stats["statistic"]
    p = float(np.mean(np.abs(statistics) >= abs(observed) - np.sqrt(np.finfo(float).eps)))
    return PermutationResult({"p": min(p, 1.0), "statistic": observed, "n": total, "exact": bool(exact),
                              "seed": None if exact else seed},
                             **_about(result, estimate=result.stats["estimate"], p_model=result.stats["p"],
                                      requested=n_permutations))


def bootstrap_tau2(result, n_boot=2000, seed=2018, level=None, progress=None) -> dict:
    """Non-parametric bootstrap of tau2 (resampling studies with replacement), percentile CI.

    Seeded, so the same call gives the same interval; each chunk of resamples is one ``pool_batch`` call.
    """
    yi, vi = _yv(result)
    n_boot = _whole("n_boot", n_boot)
    level = result.level if level is None else check_level(level)
    rng = np.random.default_rng(seed)
    batches = _chunked(lambda idx: _refit(result, yi[idx], vi[idx]), n_boot,
                       lambda start, stop: rng.integers(0, len(yi), size=(stop - start, len(yi))), progress,
                       "bootstrap")
    tau2 = np.concatenate([b.tau2 for b in batches])
    lo, hi = np.quantile(tau2, [(1 - level) / 2, (1 + level) / 2])
    return BootstrapResult({"tau2": result.stats["tau2"], "ci_low": float(lo), "ci_high": float(hi), "n": n_boot,
                            "seed": seed, "level": level}, **_about(result))


def _chunked(func, total, make_rows, progress, what, chunk=20_000):
    """Apply ``func`` to ``total`` rows made chunk by chunk by ``make_rows(start, stop)`` (so memory stays
    bounded); a progress bar on stderr for long runs (or when asked).

    ``func`` returns a BatchResult; the refits' convergence warnings are collected, not shown one by
    one, and a single ConvergenceWarning says how many refits did not converge. Returns the list of
    batch results.
    """
    show = progress if progress is not None else total > 50_000
    out = []
    failed = 0
    for start in range(0, total, chunk):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            batch = func(make_rows(start, min(start + chunk, total)))
        failed += int(np.sum(~batch.converged))
        out.append(batch)
        if show:
            done = min(start + chunk, total)
            bar = "#" * int(30 * done / total)
            print(f"\r{what}: [{bar:<30}] {done}/{total}", end="", file=sys.stderr)
    if show:
        print(file=sys.stderr)
    if failed:
        warnings.warn(f"{failed} of {total} {what} refits did not converge (their last iterate is used)",
                      ConvergenceWarning, stacklevel=3)
    return out


def predictive_probability(result, threshold, direction="below") -> dict:
    """Probability that the true effect in a new trial lies below (or above) ``threshold``.

    From the predictive distribution used for the prediction interval: ``mu + sqrt(se^2 + tau2) T``
    with T normal, or t(df) where the prediction interval uses t (Higgins et al. 2009). E.g. for pain
    on 0-10, ``threshold=-2, direction="below"``: the chance that a new trial shows at least a 2-point
    reduction.
    """
    s = _fitted(result).stats
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not math.isfinite(threshold):
        raise InputError(f"threshold: a finite number on the scale of the estimates is needed (got {threshold!r})")
    if direction not in ("below", "above"):
        raise InputError(f"direction: must be 'below' or 'above' (got {direction!r})")
    s = result.stats
    if s["k"] < 2 or s.get("pi_low") is None or not np.isfinite(s["pi_low"]):
        return PredictiveProbabilityResult({"probability": None, "threshold": threshold, "direction": direction,
                                            "reason": "no prediction distribution (k < 2 or a common-effect model)"},
                                           **_about(result))
    scale = math.sqrt(s["se"] ** 2 + s["tau2"])
    z = (threshold - s["estimate"]) / scale
    df = s.get("pi_df")
    below = float(stdtr(df, z)) if df is not None and np.isfinite(df) else float(ndtr(z))
    prob = below if direction == "below" else 1.0 - below
    return PredictiveProbabilityResult({"probability": prob, "threshold": threshold, "direction": direction,
                                        "distribution": f"t({int(df)})" if df is not None and np.isfinite(df)
                                        else "normal"}, **_about(result))


def sensitivity_report(result, order=None, subgroup=None, moderator=None, mcid=None, direction="below",
                       permutations=0, bootstrap=0, seed=2018) -> dict:
    """Everything above for one fitted model, JSON-ready (``pfps-meta sensitivity --format json``).

    ``order`` and ``subgroup`` name columns of the input table; ``moderator`` is a formula as metafor
    writes it (``"~ ablat + alloc"``) or columns as :func:`~pfps_meta.models.metareg.design` reads them
    (``"ablat + C(alloc)"``); a missing column or a non-numeric cell of a numeric moderator is an
    :class:`~pfps_meta.errors.InputError`. An analysis that was asked for but could not be run is named in
    ``not_run`` with the reason; ``scale`` says which scale the estimates are on ("log RR": exp gives RR).
    """
    for role, column in (("--order", order), ("--subgroup", subgroup)):
        if column and column not in result.studies.columns:
            raise InputError(f"{role}: no column '{column}' in the input", file=result.source)
    table = result.studies.copy()
    table.attrs["source"] = result.source
    if moderator and not str(moderator).strip().startswith("~"):
        design(table, moderator)        # the columns are checked even when k is too small to fit
    k = result.stats["k"]
    head = {"k": k, "method": result.method, "ci": result.ci_method, "measure": result.measure,
            "scale": scale_label(result.measure), "level": result.level, "estimate": result.stats["estimate"],
            "ci_low": result.stats["ci_low"], "ci_high": result.stats["ci_high"]}
    if k < 2:
        asked = {"order": order, "subgroup": subgroup, "moderator": moderator, "mcid": mcid,
                 "permutations": permutations, "bootstrap": bootstrap}
        return json_ready({**head, "leave_one_out": [], "cumulative": [], "influence": [],
                           "not_run": {name: f"k = {k}: needs at least 2 studies"
                                       for name, value in asked.items() if value not in (None, 0, "")},
                           "warnings": [f"k = {k}: sensitivity analyses need at least 2 studies"]})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SmallStudyWarning)
        report = {**head, **_case_analyses(result, order), "not_run": {}}
        if k >= 3:
            report["egger"] = egger(result)
            report["begg"] = begg(result)
            report["trimfill"] = {key: value for key, value in trimfill(result).items()
                                  if key in ("k0", "side", "estimator", "estimate", "se", "ci_low", "ci_high", "tau2",
                                             "filled_yi", "filled_vi", "method", "side_note")}
        else:
            report["not_run"]["small_study_tests"] = f"k = {k}: Egger, Begg and trim-and-fill need at least 3 studies"
        if subgroup:
            report["subgroups"] = {"separate_tau2": subgroups(result, subgroup, "separate"),
                                   "common_tau2": subgroups(result, subgroup, "common"), "by": subgroup}
        if moderator:
            report["meta_regression"] = _moderator_fit(result, table, moderator).to_dict()
        if mcid is not None:
            report["predictive_probability"] = predictive_probability(result, mcid, direction)
        if permutations:
            report["permutation"] = {**permutation_test(result, permutations, seed=seed), "requested": permutations}
        if bootstrap:
            report["bootstrap_tau2"] = bootstrap_tau2(result, bootstrap, seed=seed)
    report["warnings"] = sorted({str(w.message) for w in caught if issubclass(w.category, SmallStudyWarning)})
    return json_ready(report)


def _case_analyses(result, order) -> dict:
    return {"leave_one_out": leave_one_out(result)[["study", "estimate", "ci_low", "ci_high", "tau2", "i2", "p"]],
            "cumulative": cumulative(result, order)[["study", "k", "estimate", "ci_low", "ci_high", "tau2", "i2"]],
            "cumulative_order": order or "the table's order", "influence": influence(result)}


def _moderator_fit(result, table, moderator):
    """The meta-regression of the sensitivity report, with the result's settings and measure."""
    from pfps_meta.models.metareg import rma

    try:
        fit = rma(table, mods=moderator, settings=result.settings)
    except np.linalg.LinAlgError as exc:
        raise InputError(f"meta-regression not possible: {exc}", file=result.source) from None
    fit.measure = result.measure
    return fit


#: The heading each key of :func:`sensitivity_report` prints under in :func:`format_sensitivity` (a test
#: checks that every key of the JSON has its heading in the text).
SECTION_TITLES = {
    "leave_one_out": "Leave-one-out analysis", "cumulative": "Cumulative meta-analysis",
    "influence": "Influence diagnostics", "egger": "Regression test for funnel plot asymmetry (Egger)",
    "begg": "Rank correlation test for funnel plot asymmetry (Begg)", "trimfill": "Trim-and-fill",
    "subgroups": "Subgroup analysis by", "meta_regression": "Test for Residual Heterogeneity",
    "predictive_probability": "Predictive probability", "permutation": "Permutation test of the pooled effect",
    "bootstrap_tau2": "Bootstrap of tau^2", "not_run": "Not run:", "warnings": "Warning:",
}
#: Keys stated in the first lines of :func:`format_sensitivity`.
HEADER_KEYS = ("k", "method", "ci", "measure", "scale", "level", "estimate", "ci_low", "ci_high", "cumulative_order")


def format_sensitivity(report) -> str:
    """A text rendering of :func:`sensitivity_report` for people: every analysis in the report, each printed
    by the renderer of its result type (:mod:`pfps_meta.present.tables`), and a line for each analysis
    that was asked for but not run, saying why."""
    from pfps_meta.formatting import format_number as f, render

    about = {"k": report["k"], "method": report["method"], "ci_method": report["ci"],
             "measure": report.get("measure"), "scale": report.get("scale", scale_label(report.get("measure"))),
             "level": report.get("level", 0.95)}
    scale = about["scale"]
    lines = [f"Sensitivity analyses (k = {report['k']}; {report['method']}, {report['ci']}): pooled "
             f"{f(report['estimate'])} [{100 * float(about['level']):g}% CI {f(report['ci_low'])}, "
             f"{f(report['ci_high'])}]"
             + (f" on the {scale} scale (exp() gives the {report['measure']})" if scale.startswith("log ") else "")]
    sections = {
        "leave_one_out": lambda v: LeaveOneOutResult.of(pd.DataFrame(v), **about),
        "cumulative": lambda v: CumulativeResult.of(pd.DataFrame(v), order=report.get("cumulative_order"), **about),
        "influence": lambda v: InfluenceResult.of(pd.DataFrame(v), **about),
        "egger": lambda v: EggerResult(v, **about), "begg": lambda v: BeggResult(v, **about),
        "trimfill": lambda v: TrimFillResult(v, **about),
        "predictive_probability": lambda v: PredictiveProbabilityResult(v, **about),
        "permutation": lambda v: PermutationResult(v, estimate=report["estimate"], **about),
        "bootstrap_tau2": lambda v: BootstrapResult(v, **about),
    }
    for key, value in report.items():
        if key in HEADER_KEYS or key in ("not_run", "warnings") or (isinstance(value, list) and not value):
            continue
        if key in sections:
            lines += ["", render(sections[key](value), "text")]
        elif key == "subgroups":
            for form in ("separate_tau2", "common_tau2"):
                groups = SubgroupResult({**value[form], "groups": pd.DataFrame(value[form]["groups"])},
                                        by=value.get("by", "subgroup"), **about)
                lines += ["", render(groups, "text")]
        elif key == "meta_regression":
            lines += ["", render(_regression_from_dict(value), "text")]
        else:           # a key without its own renderer is still shown, never dropped
            lines += ["", f"{key}: {value}"]
    for name, reason in report.get("not_run", {}).items():
        lines.append(f"Not run: {name.replace('_', ' ')}: {reason}")
    lines += ([""] if report.get("warnings") else []) + [f"Warning: {w}" for w in report.get("warnings", [])]
    return "\n".join(lines)


def _regression_from_dict(value):
    """A printable view of a meta-regression's ``to_dict()``."""
    from pfps_meta.models.metareg import MetaRegressionSummary

    return MetaRegressionSummary(value)
