"""Stage 4 of the pipeline: inverse-variance pooling, vectorised over many meta-analyses at once.

Everything here works on 2-D arrays: one row per meta-analysis, one column per study slot, NaN where
a study is absent. A single meta-analysis is simply a 1 x k array, so one analysis, leave-one-out,
permutation tests, bootstraps and simulations all go through the same code. Pure numpy/scipy: no
pandas, no plotting.

The model is the intercept-only random-effects model ``y_i = mu + u_i + e_i`` with
``u_i ~ N(0, tau2)`` and ``e_i ~ N(0, v_i)``. Formulas follow metafor's ``rma.uni()`` (Viechtbauer 2005,
2010) so that results agree with it; where they differ it is said in ``docs/conventions.md``. The tau2
estimators are in :mod:`pfps_meta.models.tau2`; the settings (and their defaults) in
:mod:`pfps_meta.conventions`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy.special import chdtrc, chdtri, ndtr, ndtri, stdtr, stdtrit

from pfps_meta.conventions import COUNT_METHODS, DEFAULTS, Settings
from pfps_meta.errors import ConvergenceWarning, InputError
from pfps_meta.models import tau2 as _tau2
from pfps_meta.models.tau2 import (estimate_intercept_only, estimate_one_row, fit_at, intercept_fit_statistics,
                                  pairwise_sum, q_profile_row, row_sum, solve_q_pair)

_EPS = np.finfo(float).eps
_LOG_2PI = float(np.log(2 * np.pi))
_ALL = np.logical_and.reduce      # ``x.all()`` on a bool array (axis=None) without the method's Python wrapper


@dataclass
class BatchResult:
    """Results of ``pool_batch``: every field holds one value per meta-analysis (row).

    ``weights`` is (rows x study slots) in percent, NaN where a study is absent. Statistics that are
    not defined for a row (e.g. heterogeneity for k = 1) are NaN.
    """

    settings: Settings
    k: np.ndarray
    estimate: np.ndarray
    se: np.ndarray
    statistic: np.ndarray
    df: np.ndarray
    p: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    tau2: np.ndarray
    tau2_ci_low: np.ndarray
    tau2_ci_high: np.ndarray
    tau: np.ndarray
    tau_ci_low: np.ndarray
    tau_ci_high: np.ndarray
    i2: np.ndarray
    i2_ci_low: np.ndarray
    i2_ci_high: np.ndarray
    h2: np.ndarray
    h2_ci_low: np.ndarray
    h2_ci_high: np.ndarray
    q: np.ndarray
    q_df: np.ndarray
    q_p: np.ndarray
    pi_low: np.ndarray
    pi_high: np.ndarray
    pi_df: np.ndarray
    converged: np.ndarray
    iterations: np.ndarray
    loglik: np.ndarray
    deviance: np.ndarray
    aic: np.ndarray
    bic: np.ndarray
    aicc: np.ndarray
    weights: np.ndarray
    notes: list = field(default_factory=list)

    ROW_FIELDS = ("k", "estimate", "se", "statistic", "df", "p", "ci_low", "ci_high", "tau2",
                  "tau2_ci_low", "tau2_ci_high", "tau", "tau_ci_low", "tau_ci_high", "i2",
                  "i2_ci_low", "i2_ci_high", "h2", "h2_ci_low", "h2_ci_high", "q", "q_df", "q_p",
                  "pi_low", "pi_high", "pi_df", "converged", "iterations", "loglik", "deviance", "aic", "bic",
                  "aicc")

    def __len__(self):
        return len(self.estimate)

    def row(self, i: int) -> dict:
        """The statistics of meta-analysis ``i`` as plain Python scalars."""
        return {name: getattr(self, name)[i].item() for name in self.ROW_FIELDS}

    def summary_frame(self):
        """One row per meta-analysis, one column per statistic (a pandas DataFrame)."""
        import pandas as pd

        return pd.DataFrame({name: getattr(self, name) for name in self.ROW_FIELDS})


# --------------------------------------------------------------------------------------------------
# helpers on (rows x studies) arrays


_NAN_ONE = np.full(1, np.nan)


def _nans(n):
    """A new array of ``n`` NaNs (a copy of a stored one for a single row: ``np.full`` costs more)."""
    return _NAN_ONE.copy() if n == 1 else np.full(n, np.nan)


def _where(index, shape):
    """``[i, j]`` (or ``[j]`` for a single meta-analysis) of a flat index into (rows x slots)."""
    row, slot = np.unravel_index(index, shape)
    return f"[{slot}]" if shape[0] == 1 else f"[{row}, {slot}]"


def as_float_array(value, name: str) -> np.ndarray:
    """``value`` as a float array, refusing what is not numbers (None, text, True/False, objects), with an
    :class:`~pfps_meta.errors.InputError` that names the argument and the first offending element."""
    if value is None or isinstance(value, (str, bytes, dict, set)):
        raise InputError(f"{name}: numbers are needed (an array, list or Series), got {type(value).__name__}")
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name}: not an array of numbers ({exc})") from None
    if array.dtype.kind in "fiu":
        return array.astype(float)
    if array.dtype.kind == "O":
        out = np.empty(array.shape)
        for index, item in np.ndenumerate(array):
            if isinstance(item, (bool, np.bool_, str, bytes)) or not isinstance(item, (int, float, np.number)):
                raise InputError(f"{name}{list(index)}: {item!r} is not a number")
            out[index] = float(item)
        return out
    raise InputError(f"{name}: numbers are needed, got an array of {array.dtype} values")


def _prepare(yi, vi):
    """(rows x slots) float arrays; an absent study (NaN in yi or vi) gets y = 0 and v = inf, so its
    weight is exactly 0. Infinite values and vi <= 0 are refused, naming the element."""
    y = as_float_array(yi, "yi")
    v = as_float_array(vi, "vi")
    for name, array in (("yi", y), ("vi", v)):
        if array.ndim not in (1, 2) or array.shape[-1] == 0:
            raise InputError(f"{name}: a vector (one meta-analysis) or a matrix (meta-analyses x studies) is "
                             f"needed, got shape {array.shape}")
    if y.ndim == 1:
        y = y[None, :]
    if v.ndim == 1:
        v = v[None, :]
    if y.shape != v.shape:
        raise InputError(f"vi: must have the shape of yi, got {v.shape[1:] if v.shape[0] == 1 else v.shape} "
                         f"for yi's {y.shape[1:] if y.shape[0] == 1 else y.shape}")
    if _ALL(np.isfinite(y), None) and _ALL(np.isfinite(v), None) and _ALL(v > 0, None):
        return y, v, np.ones(y.shape, dtype=bool)         # nothing absent, nothing to refuse
    for name, array in (("yi", y), ("vi", v)):
        infinite = np.isinf(array)
        if infinite.any():
            index = int(np.flatnonzero(infinite)[0])
            raise InputError(f"{name}{_where(index, y.shape)}: value {array.flat[index]} is not finite "
                             "(NaN marks an absent study)")
    present = ~(np.isnan(y) | np.isnan(v))
    bad = present & ~(v > 0)
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise InputError(f"vi{_where(index, y.shape)}: sampling variance {v.flat[index]:g} must be > 0")
    if present.all():            # nothing absent: the masking below would copy y and v unchanged
        return y, v, present
    y = np.where(present, y, 0.0)
    v = np.where(present, v, np.inf)
    return y, v, present


def _user_weights(weights, present):
    """User weights on (rows x slots), each row divided by its largest weight: the estimate and its SE do
    not depend on the weights' scale, and neither ``1e-200`` nor ``1e200`` underflows or overflows when
    squared. Refuses weights that are not finite and > 0 where a study is present."""
    a = as_float_array(weights, "weights")
    if a.shape not in (present.shape, present.shape[1:]):
        shape = present.shape[1:] if present.shape[0] == 1 else present.shape
        raise InputError(f"weights: must have the shape of yi {shape}, got {a.shape}")
    a = np.broadcast_to(a, present.shape)
    bad = present & ~(np.isfinite(a) & (a > 0))
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise InputError(f"weights{_where(index, present.shape)}: user weights must be finite and > 0 "
                         f"(got {a.flat[index]:g})")
    a = np.where(present, a, 0.0)
    largest = a.max(axis=1, keepdims=True)
    return a / np.where(largest > 0, largest, 1.0)


def estimate_tau2(yi, vi, method="REML", maxiter=1000):
    """tau2 for each row of (rows x studies) arrays; returns ``(tau2, converged, iterations)``.

    See :mod:`pfps_meta.models.tau2` for the formula behind each ``method``.
    """
    Settings(method=method)          # validates the name
    if isinstance(maxiter, bool) or not isinstance(maxiter, (int, np.integer)) or maxiter < 1:
        raise InputError(f"maxiter: a whole number >= 1 is needed, got {maxiter!r}")
    y, v, present = _prepare(yi, vi)
    return estimate_intercept_only(y, v, present, present.sum(axis=1), method, maxiter)


def _q_profile(y, v, present, k, level):
    """Q-profile confidence interval for tau2 (Viechtbauer 2007), as metafor's ``confint()``.

    The lower bound solves ``Q(tau2) = chi2_{k-1, 1-alpha/2}``, the upper ``Q(tau2) = chi2_{k-1, alpha/2}``;
    a bound is 0 when Q(0) is already below its target.
    """
    df = (k - 1).astype(float)
    alpha = 1.0 - level
    with np.errstate(invalid="ignore"):
        crit_high = chdtri(df, alpha / 2)        # upper quantile
        crit_low = chdtri(df, 1.0 - alpha / 2)   # lower quantile
    (lower, conv_l, _), (upper, conv_u, _) = solve_q_pair(y, v, present, crit_high, crit_low)
    return lower, upper, conv_l & conv_u


# --------------------------------------------------------------------------------------------------


def t_quantile(df, p):
    """``stdtrit(df, p)`` computed once per distinct df (rows of one design share it; the t quantile is
    far slower than the arithmetic around it)."""
    df = np.asarray(df, dtype=float)
    if df.size <= 64:            # few values: sorting them out costs more than the quantiles (same values)
        return stdtrit(df, p)
    values, inverse = np.unique(df, return_inverse=True)
    return stdtrit(values, p)[inverse].reshape(df.shape)


def prediction_interval(estimate, se, tau2, k, settings: Settings):
    """Prediction interval ``mu +/- crit sqrt(se^2 + tau2)`` per row (Higgins et al. 2009), by the rule of
    ``settings.pi_method``: "auto" as metafor's ``predict()`` (normal with Wald, t(k-1) with HKSJ), "z",
    "t" (k-1 df) or "t_k2" (k-2 df; metafor ``pi.type="riley"``; undefined for k = 2). None (NaN) for
    k < 2, for a common-effect model (as metafor) and when ``prediction_interval`` is false (RevMan 5).
    Returns ``(pi_low, pi_high, pi_df)``; ``se`` is the pooled estimate's SE under the CI method used.
    """
    k = np.asarray(k, dtype=float)
    level = settings.level
    rule = settings.pi_method
    hksj = settings.ci_method == "hksj"
    with np.errstate(invalid="ignore", divide="ignore"):
        if rule == "z" or (rule == "auto" and not hksj):
            pi_df = _nans(k.shape[0])
            crit = ndtri(0.5 + level / 2)
        else:
            pi_df = k - (2 if rule == "t_k2" else 1)
            pi_df = np.where(pi_df >= 1, pi_df, np.nan)
            crit = t_quantile(pi_df, 0.5 + level / 2)
        half = crit * np.sqrt(se ** 2 + tau2)
    if settings.method == "FE" or not settings.prediction_interval:
        return _nans(k.shape[0]), _nans(k.shape[0]), pi_df
    shown = k >= 2
    if _ALL(shown, None):
        return estimate - half, estimate + half, pi_df
    return np.where(shown, estimate - half, np.nan), np.where(shown, estimate + half, np.nan), pi_df


def pool_batch(yi, vi, settings: Settings | None = None, weights=None, **options) -> BatchResult:
    """Pool every row of ``yi``/``vi`` (meta-analyses x study slots; NaN = study absent).

    Parameters
    ----------
    yi, vi : array_like, shape (m, n) or (n,)
        Effect sizes and sampling variances (> 0); NaN in either marks an absent study.
    settings : Settings, optional
        The conventions to fit with (default: :data:`pfps_meta.conventions.DEFAULTS`); keyword
        ``options`` (option names or their aliases, e.g. ``method="DL", ci="hksj"``) override it.
        The ones used here:

        - ``method``: tau2 estimator (:mod:`pfps_meta.models.tau2`); "FE" is the common-effect model.
        - ``ci_method``: "wald" (normal) or "hksj", Hartung-Knapp-Sidik-Jonkman:
          ``se^2 = sum w (y - mu)^2 / ((k-1) sum w)`` with t(k-1) (Hartung & Knapp 2001; Sidik & Jonkman
          2002), without the ad hoc truncation, as metafor's ``test="knha"``. A single study (k = 1)
          gets the Wald z CI, as in metafor.
        - ``pi_method``: prediction interval ``mu +/- crit sqrt(se^2 + tau2)`` (Higgins et al. 2009).
          "auto" is metafor's ``predict()``: normal with Wald, t(k-1) with HKSJ. "t" forces t(k-1);
          "t_k2" uses t(k-2) (metafor ``pi.type="riley"``), which needs k >= 3. No interval when
          ``prediction_interval`` is false (RevMan 5) or for a common-effect model.
        - ``i2_method``: I2 and H2 from tau2 as metafor (``I2 = tau2 / (tau2 + v_typical)``, Higgins &
          Thompson 2002, eq. 9 with ``v_typical = (k-1) sum w / ((sum w)^2 - sum w^2)``), or from Q as
          RevMan and R meta: ``I2 = max(0, (Q - df) / Q)``, ``H2 = Q / df``. For ``method="FE"`` I2 is
          always Q-based, as in metafor.
        - ``level``: confidence level of every interval.
        - ``tau2_ci``: compute the Q-profile CI for tau2 (and the CIs of tau, I2, H2 that follow).
        - ``maxiter``: iteration limit of ML, REML, PM and EB. Rows that hit it are reported with
          ``converged=False`` and a ConvergenceWarning; their tau2 is the last iterate, never a silent
          substitute.
    weights : array_like, optional
        User weights (metafor ``rma(weights=)``), same shape as ``yi``, > 0: tau2 is estimated as usual,
        then ``mu = sum a y / sum a`` with ``var(mu) = sum a^2 (v + tau2) / (sum a)^2``; all ones give an
        unweighted average. Weights are relative: each row is divided by its largest weight first, so
        the results do not depend on their scale (1e-200 and 1e200 give what 1 gives). Wald CIs only
        (HKSJ with user weights is refused). Q and I2 keep the inverse-variance weights, as in metafor.

    Raises
    ------
    pfps_meta.InputError
        An argument that is not what is described above (text, None, a wrong shape, an infinite value, a
        variance or weight <= 0), naming the argument and the element ``[row, study slot]``.
    """
    settings = _effect_level_settings(resolve_settings(settings, options))
    one = _one_row_result(yi, vi, settings) if weights is None else None
    if one is not None:
        return one
    y, v, present = _prepare(yi, vi)
    if weights is not None:
        if settings.ci_method == "hksj":
            raise InputError("weights: user weights are supported with Wald CIs only (ci_method='wald')")
        weights = _user_weights(weights, present)
    k = present.sum(axis=1)
    multi = k >= 2
    with np.errstate(invalid="ignore", divide="ignore"):
        fe = _fixed_effect_sums(y, v)
        if settings.method == "DL":      # DerSimonian-Laird from the sums Q and I2 use (tau2._dl's numbers)
            tau2 = np.maximum((fe["q"] - (k - 1)) / (fe["sum_w"] - fe["sum_w2"] / fe["sum_w"]), 0.0)
            converged, iterations = np.ones(len(k), dtype=bool), np.zeros(len(k), dtype=int)
        else:
            tau2, converged, iterations = estimate_intercept_only(y, v, present, k, settings.method,
                                                                  settings.maxiter)
        if not _ALL(multi, None):
            tau2 = np.where(multi, tau2, 0.0)
        pooled = _pooled_estimate(y, v, present, tau2, weights)
        tests = _tests(pooled, k, settings)
        hetero = _heterogeneity(y, v, present, k, tau2, settings, fe)
        pi_low, pi_high, pi_df = prediction_interval(pooled["mu"], tests["se"], tau2, k, settings)
        shares = 100.0 * pooled["w"] / pooled["sum_w"][:, None]
        if not _ALL(present, None):
            shares = np.where(present, shares, np.nan)
    if not _ALL(converged, None):
        warnings.warn(f"tau2 estimator {settings.method} did not converge for {int((~converged).sum())} "
                      "meta-analysis row(s); their results are marked converged=False",
                      ConvergenceWarning, stacklevel=2)
    fit = (intercept_fit_statistics(y, v, present, k, tau2, settings.method, pooled["at"])
           if settings.fit_statistics else {name: _nans(len(k)) for name in ("loglik", "deviance", "aic", "bic",
                                                                             "aicc")})
    return _batch_result(settings, k, multi, tau2, converged, iterations, pooled, tests, hetero,
                         (pi_low, pi_high, pi_df), shares, fit)


# --------------------------------------------------------------------------------------------------
# one complete row on Python floats: pool_batch's operations in its order (so the same bits)


_QUANTILES = {}


def _quantile(func, df, p):
    """``float(func(df, p))`` for scipy's stdtrit or chdtri, remembered per (function, df, p): a fit asks for
    the same few quantiles every time, and each costs more than the arithmetic around it (same values)."""
    key = (func, df, p)
    value = _QUANTILES.get(key)
    if value is None:
        value = float(func(df, p))
        if len(_QUANTILES) < 4096:
            _QUANTILES[key] = value
    return value


def _np_max(a, b):
    """``np.maximum(a, b)`` of two Python floats (NaN in ``a`` propagates, as there)."""
    return a if a >= b or a != a else b


def complete_row(yi, vi):
    """``(y, v)`` as lists of Python floats when ``yi`` and ``vi`` are one meta-analysis of 2 to
    ``tau2.SCALAR_MAX_K`` studies (float arrays of shape (k,) or (1, k)) with every value finite and every
    vi > 0; else None (pool_batch's array path then prepares, checks and masks them)."""
    if not (isinstance(yi, np.ndarray) and isinstance(vi, np.ndarray) and yi.shape == vi.shape
            and yi.dtype.kind == "f" and vi.dtype.kind == "f"):
        return None
    if not (yi.ndim == 1 or (yi.ndim == 2 and yi.shape[0] == 1)) or not 2 <= yi.shape[-1] <= _tau2.SCALAR_MAX_K:
        return None
    y, v = yi.ravel().tolist(), vi.ravel().tolist()
    inf = math.inf
    if all(-inf < x < inf for x in y) and all(0.0 < x < inf for x in v):
        return y, v
    return None


def _row_fixed_effect(y, v):
    """:func:`_fixed_effect_sums` of one row, plus ``Q'(0)`` and the residual spread the tau2 estimators
    and the Q-profile start from: ``(sum_w, sum_w2, q, dq, spread)``."""
    w = [1.0 / x for x in v]
    sum_w = pairwise_sum(w)
    mu = pairwise_sum([a * b for a, b in zip(w, y)]) / sum_w
    wr2 = [a * ((b - mu) * (b - mu)) for a, b in zip(w, y)]
    ybar = pairwise_sum(y) / len(y)
    spread = pairwise_sum([(b - ybar) * (b - ybar) for b in y])
    return (sum_w, pairwise_sum([a * a for a in w]), pairwise_sum(wr2), -pairwise_sum([a * b for a, b in zip(w, wr2)]),
            spread)


def _row_tests(y, w, sum_w, mu, resid, k, settings):
    """:func:`_tests` of one row of k >= 2 studies: ``(se, statistic, p, df, ci_low, ci_high)``."""
    level = settings.level
    df = float(k - 1)
    se = math.sqrt(1.0 / sum_w)
    if settings.ci_method == "hksj":
        rss = pairwise_sum([a * (r * r) for a, r in zip(w, resid)])
        scale = _np_max(1.0, pairwise_sum([a * (b * b) for a, b in zip(w, y)]))
        s2w = math.nan if rss <= _EPS * scale else rss / df
        se = math.sqrt(s2w / sum_w)
        statistic = mu / se
        p = float(2.0 * stdtr(df, -abs(statistic)))
        crit = _quantile(stdtrit, df, 0.5 + level / 2)
        df_out = df
    else:
        statistic = mu / se
        p = float(2.0 * ndtr(-abs(statistic)))
        crit = float(ndtri(0.5 + level / 2))
        df_out = math.nan
    return se, statistic, p, df_out, mu - crit * se, mu + crit * se


def _row_heterogeneity(y, v, k, tau2, settings, fe):
    """:func:`_heterogeneity` of one row of k >= 2 studies (a dict of Python floats), or None when the
    Q-profile needs the array path."""
    sum_w, sum_w2, q_raw, dq, spread = fe
    df = float(k - 1)
    q = _np_max(q_raw, 0.0)
    v_typical = df * sum_w / (sum_w * sum_w - sum_w2)
    nan = math.nan
    if settings.method == "FE" or settings.i2_method == "q":
        i2, h2 = _np_max(0.0, 100.0 * (q - df) / q), q / df
    else:
        i2, h2 = 100.0 * tau2 / (v_typical + tau2), tau2 / v_typical + 1.0
    t2_lo = t2_hi = i2_lo = i2_hi = h2_lo = h2_hi = nan
    if settings.tau2_ci and settings.method != "FE":
        alpha = 1.0 - settings.level
        bounds = q_profile_row(y, v, _quantile(chdtri, df, alpha / 2), _quantile(chdtri, df, 1.0 - alpha / 2),
                               (spread, (q_raw, dq), min(v)))
        if bounds is None:
            return None
        (t2_lo, conv_l), (t2_hi, conv_u) = bounds
        if not (conv_l and conv_u):
            warnings.warn("Q-profile search for the tau2 CI did not converge for some rows",
                          ConvergenceWarning, stacklevel=4)
        if settings.i2_method != "q":
            i2_lo, h2_lo = 100.0 * t2_lo / (v_typical + t2_lo), t2_lo / v_typical + 1.0
            i2_hi, h2_hi = 100.0 * t2_hi / (v_typical + t2_hi), t2_hi / v_typical + 1.0
    return {"tau2_ci_low": t2_lo, "tau2_ci_high": t2_hi, "tau_ci_low": math.sqrt(t2_lo),
            "tau_ci_high": math.sqrt(t2_hi), "i2": i2, "i2_ci_low": i2_lo, "i2_ci_high": i2_hi, "h2": h2,
            "h2_ci_low": h2_lo, "h2_ci_high": h2_hi, "q": q, "q_df": df, "q_p": float(chdtrc(df, q))}


def _row_prediction(estimate, se, tau2, k, settings):
    """:func:`prediction_interval` of one row of k >= 2 studies: ``(pi_low, pi_high, pi_df)``."""
    level = settings.level
    rule = settings.pi_method
    if rule == "z" or (rule == "auto" and settings.ci_method != "hksj"):
        pi_df = math.nan
        crit = float(ndtri(0.5 + level / 2))
    else:
        pi_df = float(k - (2 if rule == "t_k2" else 1))
        pi_df = pi_df if pi_df >= 1 else math.nan
        crit = _quantile(stdtrit, pi_df, 0.5 + level / 2)
    if settings.method == "FE" or not settings.prediction_interval:
        return math.nan, math.nan, pi_df
    half = crit * math.sqrt(se * se + tau2)
    return estimate - half, estimate + half, pi_df


def _row_fit_statistics(y, v, k, tau2, method, w, sum_w, resid):
    """:func:`intercept_fit_statistics` of one complete row (numpy's log, on one array, so the same bits)."""
    reml = method == "REML"
    n = k - 1 if reml else k
    logs = np.log(np.array([x + tau2 for x in v] + v + [sum_w, float(k), float(n)])).tolist()
    rss = pairwise_sum([(a * r) * r for a, r in zip(w, resid)])
    logdet = pairwise_sum(logs[:k])
    if reml:
        ll = -0.5 * (k - 1) * _LOG_2PI - 0.5 * logdet - 0.5 * logs[-3] - 0.5 * rss
        ll = ll + 0.5 * logs[-2]
    else:
        ll = -0.5 * k * _LOG_2PI - 0.5 * logdet - 0.5 * rss
    sat = -0.5 * (k * _LOG_2PI + pairwise_sum(logs[k:2 * k]))
    q = 1 + (0 if method == "FE" else 1)
    deviance = -2.0 * ll if reml else -2.0 * (ll - sat)
    m = max(n, q + 2)
    return {"loglik": ll, "deviance": deviance, "aic": -2.0 * ll + 2.0 * q, "bic": -2.0 * ll + q * logs[-1],
            "aicc": -2.0 * ll + 2.0 * q * m / (m - q - 1)}


def pool_row(y, v, settings: Settings):
    """:func:`pool_batch` of one complete row (``y``, ``v`` from :func:`complete_row`) on Python floats:
    the same operations in the same order, so the same bits (tests/test_one_row.py holds it to the array
    path), in a tenth of the time. Returns ``(stats, weights)``: the row's statistics as Python scalars
    (``BatchResult.ROW_FIELDS``) and the weights in percent (a list); None when a division by zero or an
    overflow needs numpy's inf/NaN arithmetic (identical effects, ...): the array path then runs."""
    k = len(y)
    method = settings.method
    try:
        fe = _row_fixed_effect(y, v)
        if method == "DL":
            tau2, converged, iterations = _np_max((fe[2] - (k - 1)) / (fe[0] - fe[1] / fe[0]), 0.0), True, 0
        elif method == "FE":
            tau2, converged, iterations = 0.0, True, 0
        else:
            done = estimate_one_row(y, v, method, settings.maxiter, fe[4], (fe[2], fe[3]), fe[0])
            if done is None:
                return None
            tau2, converged, iterations = done
        w = [1.0 / (x + tau2) for x in v]
        sum_w = pairwise_sum(w)
        mu = pairwise_sum([a * b for a, b in zip(w, y)]) / sum_w
        resid = [b - mu for b in y]
        se, statistic, p, df, ci_low, ci_high = _row_tests(y, w, sum_w, mu, resid, k, settings)
        hetero = _row_heterogeneity(y, v, k, tau2, settings, fe)
        if hetero is None:
            return None
        pi_low, pi_high, pi_df = _row_prediction(mu, se, tau2, k, settings)
        shares = [100.0 * a / sum_w for a in w]
        fit = (_row_fit_statistics(y, v, k, tau2, method, w, sum_w, resid) if settings.fit_statistics
               else dict.fromkeys(("loglik", "deviance", "aic", "bic", "aicc"), math.nan))
    except (ZeroDivisionError, OverflowError, ValueError):
        return None
    stats = {"k": k, "estimate": mu, "se": se, "statistic": statistic, "df": df, "p": p, "ci_low": ci_low,
             "ci_high": ci_high, "tau2": tau2, **hetero, "tau": math.sqrt(tau2), "pi_low": pi_low,
             "pi_high": pi_high, "pi_df": pi_df, "converged": converged, "iterations": iterations, **fit}
    return stats, shares


def _row_batch(settings, stats, shares):
    """The :class:`BatchResult` of one row from :func:`pool_row`'s output: each field a 1-element view of
    one array (one allocation instead of thirty), set without the dataclass's keyword parsing."""
    names = BatchResult.ROW_FIELDS
    fields = dict(zip(names, np.array([stats[name] for name in names], dtype=float)[:, None]))
    fields["k"] = np.array([stats["k"]], dtype=np.intp)
    fields["converged"] = np.array([stats["converged"]])
    fields["iterations"] = np.array([stats["iterations"]], dtype=int)
    result = object.__new__(BatchResult)
    result.__dict__.update(fields, settings=settings, weights=np.array([shares]), notes=[])
    return result


def _one_row_result(yi, vi, settings):
    """pool_batch's result for one complete row through :func:`pool_row` (None for any other input), with
    the ConvergenceWarning of the array path."""
    row = complete_row(yi, vi)
    done = None if row is None else pool_row(row[0], row[1], settings)
    if done is None:
        return None
    if not done[0]["converged"]:
        warnings.warn(f"tau2 estimator {settings.method} did not converge for 1 meta-analysis row(s); "
                      "their results are marked converged=False", ConvergenceWarning, stacklevel=3)
    return _row_batch(settings, *done)


def pool_one(yi, vi, settings: Settings, weights=None):
    """One meta-analysis: ``(stats, weights)``, its statistics as Python scalars (``BatchResult.ROW_FIELDS``)
    and its weights in percent, from :func:`pool_row` for a complete row, else from :func:`pool_batch`
    (the same numbers either way; no BatchResult is built for the one-row path)."""
    row = complete_row(yi, vi) if weights is None and settings.method not in COUNT_METHODS else None
    done = None if row is None else pool_row(row[0], row[1], settings)
    if done is None:
        batch = pool_batch(yi, vi, settings, weights=weights)
        return batch.row(0), batch.weights[0]
    if not done[0]["converged"]:
        warnings.warn(f"tau2 estimator {settings.method} did not converge for 1 meta-analysis row(s); "
                      "their results are marked converged=False", ConvergenceWarning, stacklevel=3)
    return done[0], np.array(done[1])


def _effect_level_settings(settings: Settings) -> Settings:
    """``settings``, refused in one line when its method pools 2x2 tables (MH, Peto) rather than yi and vi."""
    if settings.method in COUNT_METHODS:
        raise InputError(f"method {settings.method} pools 2x2 tables of counts, not yi and vi: fit it with "
                         "pfps_meta.pool on the counts (pfps_meta.models.mantel_haenszel.refit refits such a fit "
                         "on a subset of its tables)")
    return settings


def _batch_result(settings, k, multi, tau2, converged, iterations, pooled, tests, hetero, pi, shares, fit):
    """The :class:`BatchResult`: heterogeneity and fit statistics are undefined (NaN) for k < 2 and
    everything for k = 0. When every row has k >= 2 the masks would multiply by 1.0 and select nothing,
    so they are skipped (the same numbers)."""
    if _ALL(multi, None):
        def masked(value):
            return value

        def unless_empty(value):
            return value
    else:
        mask = np.where(multi, 1.0, np.nan)
        empty = (k == 0) if np.any(k == 0) else False

        def masked(value):
            return value * mask

        def unless_empty(value):
            return np.where(empty, np.nan, value)
    return BatchResult(
        settings=settings, k=k,
        estimate=unless_empty(pooled["mu"]), se=unless_empty(tests["se"]),
        statistic=unless_empty(tests["statistic"]), df=tests["df"],
        p=unless_empty(tests["p"]), ci_low=tests["ci_low"], ci_high=tests["ci_high"],
        tau2=masked(tau2), tau=masked(np.sqrt(tau2)),
        **{name: masked(value) for name, value in hetero.items()},
        pi_low=pi[0], pi_high=pi[1], pi_df=pi[2],
        converged=converged, iterations=iterations, weights=shares,
        **{name: masked(value) for name, value in fit.items()},
    )


def resolve_settings(settings, options) -> Settings:
    """``settings`` (a Settings or None for the defaults) with keyword ``options`` on top; anything else is
    refused naming the argument."""
    if settings is not None and not isinstance(settings, Settings):
        raise InputError(f"settings: a pfps_meta.conventions.Settings is needed, got {type(settings).__name__} "
                         "(options such as method='DL' go as keywords)")
    if options or settings is None:
        settings = Settings.from_mapping(options, base=DEFAULTS if settings is None else settings)
    return settings


def _pooled_estimate(y, v, present, tau2, weights):
    """``mu = sum w y / sum w`` with ``w = 1 / (v + tau2)`` and ``se = sqrt(1 / sum w)``; with user weights
    ``a`` (metafor ``rma(weights=)``) ``mu = sum a y / sum a`` and ``se^2 = sum a^2 (v + tau2) / (sum a)^2``.
    ``w``, ``sum_w`` are the weights reported (the user's when given) and ``resid`` is ``y - mu_w``."""
    at = fit_at(y, v, tau2)
    w, sum_w, mu, resid = at
    se = np.sqrt(1.0 / sum_w)
    if weights is not None:
        sum_a = weights.sum(axis=1)
        mu = (weights * y).sum(axis=1) / sum_a
        se = np.sqrt((weights ** 2 * np.where(present, v + tau2[:, None], 0.0)).sum(axis=1)) / sum_a
        w, sum_w = weights, sum_a
    return {"w": w, "sum_w": sum_w, "mu": mu, "se": se, "resid": resid, "y": y, "at": at}


def _tests(pooled, k, settings):
    """Test statistic, p-value and CI of the pooled estimate: Wald z, or HKSJ with
    ``se^2 = sum w (y - mu)^2 / ((k-1) sum w)`` and t(k-1) (k = 1 keeps the Wald z, as metafor)."""
    w, sum_w, mu, se, resid, y = (pooled[name] for name in ("w", "sum_w", "mu", "se", "resid", "y"))
    multi = k >= 2
    df = np.where(multi, k - 1, 0).astype(float)
    level = settings.level
    if settings.ci_method == "hksj":
        rss = row_sum(w * resid ** 2)
        # identical effects: the HKSJ variance factor is 0 and the t test undefined (metafor prints
        # se = 0); we return NaN and pool_effects says why, rather than a CI of zero width
        s2w = np.where(rss <= _EPS * np.maximum(1.0, row_sum(w * y ** 2)), np.nan, rss / df)
        se = np.where(multi, np.sqrt(s2w / sum_w), se)
        statistic = mu / se
        p = np.where(multi, 2.0 * stdtr(df, -np.abs(statistic)), 2.0 * ndtr(-np.abs(statistic)))
        crit = np.where(multi, t_quantile(df, 0.5 + level / 2), ndtri(0.5 + level / 2))
        df_out = np.where(multi, df, np.nan)
    else:
        statistic = mu / se
        p = 2.0 * ndtr(-np.abs(statistic))
        crit = ndtri(0.5 + level / 2)
        df_out = _nans(len(k))
    return {"se": se, "statistic": statistic, "p": p, "df": df_out, "ci_low": mu - crit * se,
            "ci_high": mu + crit * se}


def _fixed_effect_sums(y, v):
    """With ``w = 1/v``: ``sum w``, ``sum w^2`` and ``Q = sum w (y - mu_FE)^2`` per row (not truncated)."""
    w = 1.0 / v
    sum_w = row_sum(w)
    mu = row_sum(w * y) / sum_w
    return {"sum_w": sum_w, "sum_w2": row_sum(w ** 2), "q": row_sum(w * (y - mu[:, None]) ** 2)}


def _heterogeneity(y, v, present, k, tau2, settings, fe):
    """Q with fixed-effect weights (``fe`` from :func:`_fixed_effect_sums`), its p-value, I2 and H2 (from
    tau2, or from Q), and the Q-profile CIs of tau2, tau, I2 and H2 (see :func:`pool_batch`)."""
    df = np.where(k >= 2, k - 1, 0).astype(float)
    sum_w_fe = fe["sum_w"]
    q = np.maximum(fe["q"], 0.0)
    v_typical = df * sum_w_fe / (sum_w_fe ** 2 - fe["sum_w2"])

    def i2_h2(t2):
        return 100.0 * t2 / (v_typical + t2), t2 / v_typical + 1.0

    if settings.method == "FE" or settings.i2_method == "q":
        i2, h2 = np.maximum(0.0, 100.0 * (q - df) / q), q / df
    else:
        i2, h2 = i2_h2(tau2)
    if settings.tau2_ci and settings.method != "FE":
        t2_lo, t2_hi, conv_ci = _q_profile(y, v, present, k, settings.level)
        if not np.all(conv_ci | (k < 2)):
            warnings.warn("Q-profile search for the tau2 CI did not converge for some rows",
                          ConvergenceWarning, stacklevel=3)
    if settings.tau2_ci and settings.method != "FE" and settings.i2_method != "q":
        i2_lo, h2_lo = i2_h2(t2_lo)
        i2_hi, h2_hi = i2_h2(t2_hi)
    else:               # no interval: every bound is NaN (one array each; callers may write into them)
        i2_lo, h2_lo, i2_hi, h2_hi = (_nans(len(k)) for _ in range(4))
    if not (settings.tau2_ci and settings.method != "FE"):
        t2_lo, t2_hi = _nans(len(k)), _nans(len(k))
    return {"tau2_ci_low": t2_lo, "tau2_ci_high": t2_hi, "tau_ci_low": np.sqrt(t2_lo),
            "tau_ci_high": np.sqrt(t2_hi), "i2": i2, "i2_ci_low": i2_lo, "i2_ci_high": i2_hi, "h2": h2,
            "h2_ci_low": h2_lo, "h2_ci_high": h2_hi, "q": q, "q_df": df, "q_p": chdtrc(df, q)}
