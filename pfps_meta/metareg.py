"""Mixed-effects meta-regression: ``y = X beta + u + e`` with ``u ~ N(0, tau2)``, ``e ~ N(0, v_i)``.

One model at a time (a k x p design matrix), with the same tau2 estimators as the pooling core and the
same iterations (:func:`pfps_meta.pooling.likelihood_root`, :func:`pfps_meta.pooling.decreasing_root`).
Formulas follow metafor's ``rma.uni(mods=...)`` (Viechtbauer 2010; Raudenbush 2009 for the moment
estimators with moderators):

- ``P = W - W X (X'WX)^-1 X'W`` with ``W = diag(1/(v + tau2))``; ``Q(tau2) = y'Py``; the tau2
  estimators with moderators are in :mod:`pfps_meta.tau2`.
- Wald tests (z, chi2 omnibus ``QM``) or Knapp-Hartung (t(k-p), F omnibus ``QM / m``) with
  ``vb = s2w (X'WX)^-1``, ``s2w = y'Py / (k-p)``.
- ``R2 = max(0, 100 (tau2_RE - tau2_ME) / tau2_RE)`` against the intercept-only fit with the same
  estimator (Raudenbush 2009), as metafor; for a common-effect model metafor's choice, the adjusted R2 of
  the weighted least-squares fit (statsmodels ``WLS``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import chdtrc, fdtrc, ndtr, ndtri, stdtr, stdtrit

from .conventions import Settings
from .tau2 import _q, _weighted, estimate_tau2_mods

_EPS = np.finfo(float).eps


def _design(X, k):
    X = np.asarray(X, dtype=float)
    if X.ndim == 1:
        X = X[:, None]
    if X.shape[0] != k:
        raise ValueError(f"the design matrix has {X.shape[0]} rows for {k} studies")
    return X


@dataclass
class MetaRegression:
    """A fitted meta-regression (all arrays have one entry per coefficient)."""

    names: list
    beta: np.ndarray
    se: np.ndarray
    statistic: np.ndarray
    p: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    df: float
    tau2: float
    i2: float
    h2: float
    qe: float
    qe_df: int
    qe_p: float
    qm: float
    qm_df: tuple
    qm_p: float
    r2: float
    k: int
    method: str
    ci: str
    converged: bool

    def summary_frame(self):
        import pandas as pd

        return pd.DataFrame({"term": self.names, "estimate": self.beta, "se": self.se,
                             "statistic": self.statistic, "p": self.p, "ci_low": self.ci_low,
                             "ci_high": self.ci_high})

    def to_dict(self) -> dict:
        def clean(x):
            x = float(x)
            return None if not math.isfinite(x) else x
        return {"coefficients": [{k: (clean(v) if k != "term" else v) for k, v in row.items()}
                                 for row in self.summary_frame().to_dict("records")],
                "tau2": clean(self.tau2), "i2": clean(self.i2), "h2": clean(self.h2), "qe": clean(self.qe),
                "qe_df": self.qe_df, "qe_p": clean(self.qe_p), "qm": clean(self.qm), "qm_df": list(self.qm_df),
                "qm_p": clean(self.qm_p), "r2": clean(self.r2), "k": self.k, "method": self.method,
                "ci": self.ci, "df": clean(self.df), "converged": self.converged}


def meta_regression(yi, vi, X, names=None, settings: Settings | None = None, intercept=True,
                    **options) -> MetaRegression:
    """Fit ``y = X beta`` with random effects (numpy in; see the module docstring for the formulas).

    ``X`` holds the moderators (k x m, or a vector); a column of ones is prepended when ``intercept``.
    The omnibus test ``QM`` covers every coefficient but the intercept. ``settings`` (default: the
    defaults) with keyword ``options`` on top give the tau2 estimator (``method``), the CI method
    (``ci_method``: Wald or Knapp-Hartung) and the ``level``.
    """
    settings = Settings.from_mapping(options, base=settings)
    method, ci, level, maxiter = settings.method, settings.ci_method, settings.level, settings.maxiter
    y = np.asarray(yi, dtype=float)
    v = np.asarray(vi, dtype=float)
    k = y.size
    X = _design(X, k)
    names = list(names) if names is not None else [f"x{i + 1}" for i in range(X.shape[1])]
    if intercept:
        X = np.column_stack([np.ones(k), X])
        names = ["intercept"] + names
    p = X.shape[1]
    if k <= p:
        raise ValueError(f"{k} studies cannot support {p} coefficients")
    if np.linalg.matrix_rank(X) < p:
        raise ValueError("the moderators are collinear or constant (the design matrix is not of full rank), "
                         "so their coefficients are not identifiable")
    tau2, converged, _ = estimate_tau2_mods(y, v, X, method, maxiter=maxiter)
    w, xtwx_inv, beta, r = _weighted(y, v, X, tau2)
    vb = xtwx_inv
    df = float("nan")
    if ci == "hksj":
        rss = float(np.sum(w * r ** 2))
        vb = (0.0 if rss <= _EPS else rss / (k - p)) * vb
        df = float(k - p)
    se = np.sqrt(np.diag(vb))
    stat = beta / se
    tested = slice(1, None) if intercept else slice(None)
    b_t = beta[tested]
    m = b_t.size
    qm = float(b_t @ np.linalg.solve(vb[tested, tested], b_t)) if m else float("nan")
    if ci == "hksj":
        p_val = 2 * stdtr(df, -np.abs(stat))
        crit = stdtrit(df, 0.5 + level / 2)
        qm, qm_df = qm / m if m else qm, (m, k - p)
        qm_p = float(fdtrc(m, k - p, qm)) if m else float("nan")
    else:
        p_val = 2 * ndtr(-np.abs(stat))
        crit = ndtri(0.5 + level / 2)
        qm_df = (m,)
        qm_p = float(chdtrc(m, qm)) if m else float("nan")
    qe, _ = _q(y, v, X, 0.0)
    w_fe = 1.0 / v
    tr_p = float(np.sum(w_fe) - np.trace(np.linalg.inv(X.T @ (w_fe[:, None] * X)) @ (X.T @ ((w_fe ** 2)[:, None] * X))))
    v_typical = (k - p) / tr_p
    if method == "FE":
        i2 = max(0.0, 100 * (qe - (k - p)) / qe)
        h2 = qe / (k - p)
        r2 = float("nan")
        if intercept and p > 1:
            # metafor: the adjusted R2 of the weighted least-squares fit, in percent, floored at 0
            import statsmodels.api as sm

            r2 = 0.0 if np.var(y) == 0 else max(0.0, 100 * sm.WLS(y, X, weights=w_fe).fit().rsquared_adj)
    else:
        i2 = 100 * tau2 / (v_typical + tau2)
        h2 = tau2 / v_typical + 1
        r2 = float("nan")
        if intercept and p > 1:
            tau2_re, _, _ = estimate_tau2_mods(y, v, np.ones((k, 1)), method, maxiter=maxiter)
            r2 = 0.0 if tau2_re <= 0 else max(0.0, 100 * (tau2_re - tau2) / tau2_re)
    return MetaRegression(names=names, beta=beta, se=se, statistic=stat, p=p_val, ci_low=beta - crit * se,
                          ci_high=beta + crit * se, df=df, tau2=tau2, i2=i2, h2=h2, qe=qe, qe_df=k - p,
                          qe_p=float(chdtrc(k - p, qe)), qm=qm, qm_df=qm_df, qm_p=qm_p, r2=r2, k=k,
                          method=method, ci=ci, converged=converged)
