"""Stage 4 of the pipeline: inverse-variance pooling, vectorised over many meta-analyses at once.

Everything here works on 2-D arrays: one row per meta-analysis, one column per study slot, NaN where
a study is absent. A single meta-analysis is simply a 1 x k array, so one analysis, leave-one-out,
permutation tests, bootstraps and simulations all go through the same code. Pure numpy/scipy: no
pandas, no plotting.

The model is the intercept-only random-effects model ``y_i = mu + u_i + e_i`` with
``u_i ~ N(0, tau2)`` and ``e_i ~ N(0, v_i)``. Formulas follow metafor's ``rma.uni()`` (Viechtbauer 2005,
2010) so that results agree with it; where they differ it is said in ``docs/conventions.md``.

tau2 estimators (Veroniki et al. 2016, Res Synth Methods 7:55-79, give them all in one place):

- ``FE``   common (fixed) effect, tau2 = 0.
- ``DL``   DerSimonian & Laird (1986): ``max(0, (Q - (k-1)) / (sum w - sum w^2 / sum w))``.
- ``HE``   Hedges (1983) method of moments: ``max(0, sum (y - ybar)^2 / (k-1) - mean(v))``.
- ``HS``   Hunter & Schmidt (2004): ``max(0, (Q - k) / sum w)``.
- ``SJ``   Sidik & Jonkman (2005): ``tau0 * Q_w(tau0) / (k-1)`` with ``tau0 = sum (y - ybar)^2 / k``.
- ``PM``   Paule & Mandel (1982): the root of ``Q(tau2) = k - 1`` (0 if Q(0) < k - 1).
- ``EB``   empirical Bayes (Morris 1983; Berkey et al. 1995). Its estimating equation,
  ``Q(tau2) k/(k-1) = k``, is the same as Paule-Mandel's for an intercept-only model, so it is solved
  by the same root finder (metafor iterates a fixed point to the same root).
- ``ML``, ``REML`` maximum and restricted maximum likelihood (Viechtbauer 2005), Fisher scoring as in
  metafor, started at max(0, HE), with metafor's step halving at the boundary and its check that the
  likelihood at tau2 = 0 is not higher than at the stationary point found.

Here ``Q(tau2) = sum w_i (y_i - mu_w)^2`` with ``w_i = 1/(v_i + tau2)`` is the generalised Q statistic.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy.special import chdtrc, chdtri, ndtr, ndtri, stdtr, stdtrit

from .errors import ConvergenceWarning

METHODS = ("FE", "DL", "REML", "ML", "PM", "SJ", "HE", "EB", "HS")
CI_METHODS = ("wald", "hksj")
PI_METHODS = ("auto", "z", "t", "t_k2")
I2_METHODS = ("tau2", "q")

_EPS = np.finfo(float).eps


@dataclass
class BatchResult:
    """Results of ``pool_batch``: every field holds one value per meta-analysis (row).

    ``weights`` is (rows x study slots) in percent, NaN where a study is absent. Statistics that are
    not defined for a row (e.g. heterogeneity for k = 1) are NaN.
    """

    method: str
    ci: str
    pi: str
    i2_method: str
    level: float
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
    weights: np.ndarray
    notes: list = field(default_factory=list)

    ROW_FIELDS = ("k", "estimate", "se", "statistic", "df", "p", "ci_low", "ci_high", "tau2",
                  "tau2_ci_low", "tau2_ci_high", "tau", "tau_ci_low", "tau_ci_high", "i2",
                  "i2_ci_low", "i2_ci_high", "h2", "h2_ci_low", "h2_ci_high", "q", "q_df", "q_p",
                  "pi_low", "pi_high", "pi_df", "converged", "iterations")

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


def _prepare(yi, vi):
    """(rows x slots) float arrays; an absent study gets y = 0 and v = inf, so its weight is exactly 0."""
    y = np.asarray(yi, dtype=float)
    v = np.asarray(vi, dtype=float)
    if y.ndim == 1:
        y = y[None, :]
    if v.ndim == 1:
        v = v[None, :]
    if y.shape != v.shape:
        raise ValueError(f"yi and vi must have the same shape, got {y.shape} and {v.shape}")
    present = np.isfinite(y) & np.isfinite(v)
    if np.any(v[present] <= 0):
        raise ValueError("every sampling variance vi must be > 0")
    y = np.where(present, y, 0.0)
    v = np.where(present, v, np.inf)
    return y, v, present


def _fit_at(y, v, tau2):
    """Weights, their sum, the weighted mean and residuals at the given tau2 (one per row).

    Absent studies have v = inf, hence w = 0: every weighted sum ignores them without masking.
    """
    w = 1.0 / (v + tau2[:, None])
    sum_w = w.sum(axis=1)
    mu = (w * y).sum(axis=1) / sum_w
    resid = y - mu[:, None]
    return w, sum_w, mu, resid


def generalised_q(y, v, tau2):
    """``Q(tau2) = sum w (y - mu_w)^2`` and its derivative ``-sum w^2 (y - mu_w)^2``."""
    w, _, _, resid = _fit_at(y, v, tau2)
    wr2 = w * resid ** 2
    return wr2.sum(axis=1), -(w * wr2).sum(axis=1)


def _solve_q(y, v, present, target, rtol=1e-12, maxiter=200):
    """Root in tau2 >= 0 of ``Q(tau2) = target`` for intercept-only rows (see :func:`decreasing_root`)."""
    k = present.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ybar = np.where(present, y, 0).sum(axis=1) / k
        spread = np.where(present, (y - ybar[:, None]) ** 2, 0.0).sum(axis=1)
    return decreasing_root(lambda idx, t: generalised_q(y[idx], v[idx], t), target, spread, v.min(axis=1),
                           rtol=rtol, maxiter=maxiter)


def decreasing_root(q_at, target, spread, vmin, rtol=1e-12, maxiter=200):
    """Root in tau2 >= 0 of ``Q(tau2) = target`` for every row, where Q decreases in tau2 (Viechtbauer 2007).

    ``q_at(idx, tau2)`` returns Q and dQ/dtau2 for the rows ``idx``. ``spread`` is the unweighted residual
    sum of squares of each row (OLS fit), ``vmin`` its smallest sampling variance: since
    ``Q(t) <= spread / (vmin + t)``, ``Q(spread/target - vmin) <= target`` bounds the root from above.
    Rows where ``Q(0) <= target`` get 0. Newton steps on ``1/Q(tau2) - 1/target``, which is close to
    linear in tau2 (``Q ~ S / (tau2 + v)``), inside a bracket that every evaluation narrows; a step that
    leaves the bracket is replaced by bisection, so every row converges. Returns (root, converged, iters).
    """
    rows = len(spread)
    target = np.broadcast_to(np.asarray(target, dtype=float), (rows,))
    q0, _ = q_at(np.arange(rows), np.zeros(rows))
    active = q0 > target
    with np.errstate(invalid="ignore", divide="ignore"):
        hi = np.where(active, np.maximum(spread / target - vmin, 0.0) * (1 + 1e-9) + 1e-300, 0.0)
    lo = np.zeros(rows)
    converged = ~active
    iterations = np.zeros(rows, dtype=int)
    t = np.zeros(rows)
    for _ in range(maxiter):
        idx = np.flatnonzero(~converged)
        if idx.size == 0:
            break
        ti, tgt = t[idx], target[idx]
        q, dq = q_at(idx, ti)
        above = q > tgt
        lo_i = np.where(above, ti, lo[idx])
        hi_i = np.where(above, hi[idx], ti)
        with np.errstate(invalid="ignore", divide="ignore"):
            # g(t) = 1/Q - 1/target, g'(t) = -Q'/Q^2
            newton = ti - (1.0 / q - 1.0 / tgt) * q ** 2 / (-dq)
        inside = np.isfinite(newton) & (newton >= lo_i) & (newton <= hi_i)
        new = np.where(q == tgt, ti, np.where(inside, newton, 0.5 * (lo_i + hi_i)))
        lo[idx], hi[idx] = lo_i, hi_i
        t[idx] = new
        iterations[idx] += 1
        converged[idx] = ((np.abs(new - ti) <= rtol * np.maximum(new, 1e-300)) | (np.abs(q - tgt) <= rtol * tgt)
                          | (hi_i - lo_i <= rtol * hi_i))
    return np.where(active, t, 0.0), converged, iterations


def _likelihood_root(y, v, present, k, init, reml, tol=1e-12, maxiter=1000):
    """ML/REML tau2 for intercept-only rows (see :func:`likelihood_root`).

    For the intercept-only model ``Py = w (y - mu_w)``, ``tr P = sum w - sum w^2 / sum w`` and
    ``tr PP = sum w^2 - 2 sum w^3 / sum w + (sum w^2 / sum w)^2``.
    """
    def score_at(idx, ti):
        w, sum_w, _, resid = _fit_at(y[idx], v[idx], ti)
        a = w * resid                                   # P y
        ypppy = (a ** 2).sum(axis=1)
        wa = (w * a).sum(axis=1)
        yp3y = (w * a ** 2).sum(axis=1) - wa ** 2 / sum_w   # (Py)' P (Py)
        sum_w2 = (w ** 2).sum(axis=1)
        if reml:
            sum_w3 = (w ** 3).sum(axis=1)
            a_term = sum_w - sum_w2 / sum_w
            b_term = sum_w2 - 2.0 * sum_w3 / sum_w + (sum_w2 / sum_w) ** 2
        else:
            a_term, b_term = sum_w, sum_w2
        return ypppy - a_term, b_term - 2.0 * yp3y, b_term

    return likelihood_root(score_at, lambda t: _loglik(y, v, present, k, t, reml), init, tol=tol, maxiter=maxiter)


def likelihood_root(score_at, loglik_at, init, tol=1e-12, maxiter=1000):
    """Stationary point of the ML or REML likelihood in tau2 >= 0 for every row (Viechtbauer 2005).

    ``score_at(idx, tau2)`` returns, for the rows ``idx``, the score (up to a factor 1/2)
    ``S = y'PPy - A``, its derivative ``S' = -2 y'PPPy + B`` and the Fisher information ``B``, with
    ``P = W - W X (X'WX)^-1 X'W``, ``A = tr P`` and ``B = tr(PP)`` (REML) or ``A = sum w``, ``B = sum w^2``
    (ML); ``dP/dtau2 = -PP``. ``loglik_at(tau2)`` returns every row's log-likelihood.
    Newton steps where the likelihood is concave (S' < 0), metafor's Fisher-scoring step ``S / B``
    elsewhere, both kept inside a bracket [lo, hi] that every evaluation narrows (bisection when a step
    leaves it). Plain Fisher scoring, as metafor iterates it, can oscillate around the root for
    hundreds of iterations; the bracket removes that while converging to the same root. A negative
    score at tau2 = 0 ends at the boundary 0, as metafor's step halving does.
    Stops when ``|change| <= tol * max(1, tau2)``.
    """
    t = np.maximum(np.asarray(init, dtype=float), 0.0)
    rows = t.shape[0]
    lo = np.zeros(rows)
    hi = np.full(rows, np.inf)
    converged = np.zeros(rows, dtype=bool)
    iterations = np.zeros(rows, dtype=int)
    for _ in range(maxiter):
        idx = np.flatnonzero(~converged)
        if idx.size == 0:
            break
        ti = t[idx]
        score, slope, b_term = score_at(idx, ti)
        lo_i = np.where(score > 0, ti, lo[idx])
        hi_i = np.where(score > 0, hi[idx], ti)
        with np.errstate(invalid="ignore", divide="ignore"):
            step = np.where(slope < 0, -score / slope, score / b_term)
        new = ti + np.where(np.isfinite(step), step, 0.0)
        outside = ~((new >= lo_i) & (new <= hi_i))
        bisect = np.where(np.isfinite(hi_i), 0.5 * (lo_i + hi_i), 2.0 * ti + 1.0)
        new = np.where(outside, bisect, new)
        at_zero = (ti == 0) & (score <= 0)              # boundary: likelihood decreasing at tau2 = 0
        new = np.where(at_zero, 0.0, np.where(score == 0, ti, np.maximum(new, 0.0)))
        lo[idx], hi[idx] = lo_i, hi_i
        t[idx] = new
        iterations[idx] += 1
        collapsed = np.isfinite(hi_i) & (hi_i - lo_i <= tol * np.maximum(1.0, hi_i))
        converged[idx] = at_zero | (score == 0) | (np.abs(new - ti) <= tol * np.maximum(1.0, new)) | collapsed
    # metafor's ll0check: keep tau2 = 0 when the likelihood there is higher than at the root found.
    candidates = converged & (t > tol)
    if not np.any(candidates):          # every root is already at the boundary: nothing to compare
        return t, converged, iterations
    ll_here = loglik_at(t)
    ll_zero = loglik_at(np.zeros_like(t))
    to_zero = candidates & (ll_zero - ll_here > 1e-10)
    if np.any(to_zero):
        warnings.warn(f"{int(to_zero.sum())} fit(s): the likelihood is higher at tau2 = 0 than at the "
                      "stationary point found; tau2 = 0 is used instead (as metafor does).",
                      ConvergenceWarning, stacklevel=3)
        t = np.where(to_zero, 0.0, t)
    return t, converged, iterations


def _loglik(y, v, present, k, tau2, reml):
    """Log-likelihood of the intercept-only model (ML, or REML when ``reml``), as metafor's ``logLik``."""
    w, sum_w, _, resid = _fit_at(y, v, tau2)
    rss = (w * resid ** 2).sum(axis=1)
    logdet = np.where(present, np.log(np.where(present, v, 1.0) + tau2[:, None]), 0.0).sum(axis=1)
    if reml:
        return -0.5 * (k - 1) * np.log(2 * np.pi) - 0.5 * logdet - 0.5 * np.log(sum_w) - 0.5 * rss
    return -0.5 * k * np.log(2 * np.pi) - 0.5 * logdet - 0.5 * rss


def estimate_tau2(yi, vi, method="REML"):
    """tau2 for each row of (rows x studies) arrays; returns ``(tau2, converged, iterations)``.

    See the module docstring for the formula behind each ``method``.
    """
    y, v, present = _prepare(yi, vi)
    return _estimate_tau2(y, v, present, present.sum(axis=1), method)


def _estimate_tau2(y, v, present, k, method, maxiter=1000):
    rows = y.shape[0]
    converged = np.ones(rows, dtype=bool)
    iterations = np.zeros(rows, dtype=int)
    zero = np.zeros(rows)
    with np.errstate(invalid="ignore", divide="ignore"):
        if method == "FE":
            return zero, converged, iterations
        if method in ("DL", "HS"):
            q, _ = generalised_q(y, v, zero)
            w = 1.0 / v
            sum_w = w.sum(axis=1)
            if method == "DL":
                tau2 = (q - (k - 1)) / (sum_w - (w ** 2).sum(axis=1) / sum_w)
            else:
                tau2 = (q - k) / sum_w
            return np.maximum(tau2, 0.0), converged, iterations
        ybar = np.where(present, y, 0.0).sum(axis=1) / k
        spread = np.where(present, (y - ybar[:, None]) ** 2, 0.0).sum(axis=1)
        if method == "HE" or method in ("ML", "REML"):
            he = spread / (k - 1) - np.where(present, v, 0.0).sum(axis=1) / k
            if method == "HE":
                return np.maximum(he, 0.0), converged, iterations
            return _likelihood_root(y, v, present, k, np.where(np.isfinite(he), he, 0.0), method == "REML",
                            maxiter=maxiter)
        if method == "SJ":
            tau0 = spread / k
            q, _ = generalised_q(y, v, tau0)
            return np.maximum(tau0 * q / (k - 1), 0.0), converged, iterations
        if method in ("PM", "EB"):
            return _solve_q(y, v, present, (k - 1).astype(float), maxiter=maxiter)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


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
    lower, conv_l, _ = _solve_q(y, v, present, crit_high)
    upper, conv_u, _ = _solve_q(y, v, present, crit_low)
    return lower, upper, conv_l & conv_u


# --------------------------------------------------------------------------------------------------


def pool_batch(yi, vi, method="REML", ci="wald", pi="auto", i2="tau2", level=0.95, tau2_ci=True,
               maxiter=1000):
    """Pool every row of ``yi``/``vi`` (meta-analyses x study slots; NaN = study absent).

    Parameters
    ----------
    yi, vi : array_like, shape (m, n) or (n,)
        Effect sizes and sampling variances (> 0).
    method : {"FE", "DL", "REML", "ML", "PM", "SJ", "HE", "EB", "HS"}
        tau2 estimator; "FE" is the common-effect (fixed-effect) model.
    ci : {"wald", "hksj"}
        Wald (normal) CI, or Hartung-Knapp-Sidik-Jonkman: ``se^2 = sum w (y - mu)^2 / ((k-1) sum w)``
        with t(k-1) (Hartung & Knapp 2001; Sidik & Jonkman 2002), without the ad hoc truncation, as
        metafor's ``test="knha"``. A single study (k = 1) gets the Wald z CI, as in metafor.
    pi : {"auto", "z", "t", "t_k2"}
        Prediction interval ``mu +/- crit sqrt(se^2 + tau2)`` (Higgins et al. 2009). "auto" is metafor's
        ``predict()``: normal with Wald, t(k-1) with HKSJ. "t" forces t(k-1); "t_k2" uses t(k-2)
        (Higgins et al. 2009; metafor ``pi.type="riley"``), which needs k >= 3.
    i2 : {"tau2", "q"}
        I2 and H2 from tau2 as metafor (``I2 = tau2 / (tau2 + v_typical)``, Higgins & Thompson 2002,
        eq. 9 with the typical within-study variance ``(k-1) sum w / ((sum w)^2 - sum w^2)``), or from
        Q as RevMan and R meta: ``I2 = max(0, (Q - df) / Q)``, ``H2 = Q / df``. For ``method="FE"`` I2
        is always Q-based, as in metafor.
    level : float
        Confidence level for every interval.
    tau2_ci : bool
        Compute the Q-profile CI for tau2 (and the CIs for tau, I2 and H2 that follow from it).
    maxiter : int
        Iteration limit of the iterative estimators (ML, REML: Fisher scoring; PM, EB: root search).
        Rows that hit it are reported with ``converged=False`` and a ConvergenceWarning; their
        tau2 is the last iterate, never a silent substitute.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if ci not in CI_METHODS:
        raise ValueError(f"ci must be one of {CI_METHODS}, got {ci!r}")
    if pi not in PI_METHODS:
        raise ValueError(f"pi must be one of {PI_METHODS}, got {pi!r}")
    if i2 not in I2_METHODS:
        raise ValueError(f"i2 must be one of {I2_METHODS}, got {i2!r}")
    y, v, present = _prepare(yi, vi)
    k = present.sum(axis=1)
    rows = y.shape[0]
    nan = np.full(rows, np.nan)
    multi = k >= 2

    with np.errstate(invalid="ignore", divide="ignore"):
        tau2, converged, iterations = _estimate_tau2(y, v, present, k, method, maxiter)
        tau2 = np.where(multi, tau2, 0.0)
        w, sum_w, mu, resid = _fit_at(y, v, tau2)
        se = np.sqrt(1.0 / sum_w)
        df = np.where(k >= 2, k - 1, 0).astype(float)
        if ci == "hksj":
            rss = (w * resid ** 2).sum(axis=1)
            s2w = np.where(rss <= _EPS, 0.0, rss / df)
            # k = 1: no residual df, so the Wald z test is used, as metafor does
            se = np.where(multi, np.sqrt(s2w / sum_w), se)
            statistic = mu / se
            p = np.where(multi, 2.0 * stdtr(df, -np.abs(statistic)), 2.0 * ndtr(-np.abs(statistic)))
            crit = np.where(multi, stdtrit(df, 0.5 + level / 2), ndtri(0.5 + level / 2))
            df_out = np.where(multi, df, np.nan)
        else:
            statistic = mu / se
            p = 2.0 * ndtr(-np.abs(statistic))
            crit = np.full(rows, ndtri(0.5 + level / 2))
            df_out = nan.copy()
        ci_low, ci_high = mu - crit * se, mu + crit * se

        # heterogeneity: Q with fixed-effect weights
        w_fe = 1.0 / v
        sum_w_fe = w_fe.sum(axis=1)
        mu_fe = (w_fe * y).sum(axis=1) / sum_w_fe
        q = np.maximum((w_fe * (y - mu_fe[:, None]) ** 2).sum(axis=1), 0.0)
        q_p = chdtrc(df, q)
        v_typical = df * sum_w_fe / (sum_w_fe ** 2 - (w_fe ** 2).sum(axis=1))

        def i2_h2(t2):
            return 100.0 * t2 / (v_typical + t2), t2 / v_typical + 1.0

        if method == "FE" or i2 == "q":
            i2_val = np.maximum(0.0, 100.0 * (q - df) / q)
            h2_val = q / df
        else:
            i2_val, h2_val = i2_h2(tau2)

        if tau2_ci and method != "FE":
            t2_lo, t2_hi, conv_ci = _q_profile(y, v, present, k, level)
            if not np.all(conv_ci | ~multi):
                warnings.warn("Q-profile search for the tau2 CI did not converge for some rows",
                              ConvergenceWarning, stacklevel=2)
        else:
            t2_lo = t2_hi = nan.copy()
        i2_lo, h2_lo = i2_h2(t2_lo)
        i2_hi, h2_hi = i2_h2(t2_hi)
        if i2 == "q":
            i2_lo = i2_hi = h2_lo = h2_hi = nan.copy()

        # prediction interval
        if pi == "auto":
            pi_df = df_out
            pi_crit = crit
        elif pi == "z":
            pi_df = nan.copy()
            pi_crit = np.full(rows, ndtri(0.5 + level / 2))
        else:
            pi_df = df - (1 if pi == "t_k2" else 0)
            pi_df = np.where(pi_df >= 1, pi_df, np.nan)
            pi_crit = stdtrit(pi_df, 0.5 + level / 2)
        pi_half = pi_crit * np.sqrt(se ** 2 + tau2)
        has_pi = multi & (method != "FE")       # metafor's predict() gives none for a common-effect model
        pi_low = np.where(has_pi, mu - pi_half, np.nan)
        pi_high = np.where(has_pi, mu + pi_half, np.nan)

        weights = np.where(present, 100.0 * w / sum_w[:, None], np.nan)

    # heterogeneity is undefined for k < 2 and everything for k = 0; skip the masking when no row needs it
    hetero = 1.0 if multi.all() else np.where(multi, 1.0, np.nan)
    empty = k == 0
    if not empty.any():
        empty = False
    if np.any(~converged):
        warnings.warn(f"tau2 estimator {method} did not converge for {int((~converged).sum())} "
                      "meta-analysis row(s); their results are marked converged=False",
                      ConvergenceWarning, stacklevel=2)
    return BatchResult(
        method=method, ci=ci, pi=pi, i2_method=i2, level=level,
        k=k,
        estimate=np.where(empty, np.nan, mu), se=np.where(empty, np.nan, se),
        statistic=np.where(empty, np.nan, statistic), df=df_out, p=np.where(empty, np.nan, p),
        ci_low=ci_low, ci_high=ci_high,
        tau2=tau2 * hetero, tau2_ci_low=t2_lo * hetero, tau2_ci_high=t2_hi * hetero,
        tau=np.sqrt(tau2) * hetero, tau_ci_low=np.sqrt(t2_lo) * hetero,
        tau_ci_high=np.sqrt(t2_hi) * hetero,
        i2=i2_val * hetero, i2_ci_low=i2_lo * hetero, i2_ci_high=i2_hi * hetero,
        h2=h2_val * hetero, h2_ci_low=h2_lo * hetero, h2_ci_high=h2_hi * hetero,
        q=q * hetero, q_df=df * hetero, q_p=q_p * hetero,
        pi_low=pi_low, pi_high=pi_high, pi_df=pi_df,
        converged=converged, iterations=iterations, weights=weights,
    )

