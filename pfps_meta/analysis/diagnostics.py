"""Case diagnostics and the uncertainty of tau2 for a fitted intercept-only model (a
:class:`~pfps_meta.models.univariate.MetaResult`), as metafor's ``blup``, ``rstandard``, ``fitted`` and
``confint(type = "PL")`` / ``se.tau2``. For meta-regressions the same quantities are methods of
:class:`~pfps_meta.models.metareg.MetaRegression`. Pure numpy/scipy; every refit reads the result's settings.

- BLUPs of the study-specific true effects (Raudenbush & Bryk 1985; Viechtbauer 2010):
  ``lambda_i = tau2 / (tau2 + v_i)``, ``pred_i = lambda_i y_i + (1 - lambda_i) mu``,
  ``se_i = sqrt(lambda_i v_i + (1 - lambda_i)^2 var(mu))``, interval ``pred +/- crit se`` (normal, or
  t(k-1) with HKSJ).
- Standardised residuals: ``(y_i - mu) / sqrt(v_i + tau2 - 1/sum w)``; studentised (deleted) residuals
  are ``influence(result)["rstudent"]`` in :mod:`pfps_meta.analysis.sensitivity`.
- SE of tau2 (ML, REML) from the Fisher information: ``sqrt(2 / sum w^2)`` (ML) and ``sqrt(2 / tr(PP))``
  (REML), with ``tr(PP) = sum w^2 - 2 sum w^3 / sum w + (sum w^2 / sum w)^2``.
- Profile-likelihood CI of tau2 (Hardy & Thompson 1996): the tau2 values where twice the drop in the
  (restricted) log-likelihood, mu profiled out, equals the chi2(1) quantile; a bound is 0 when the
  likelihood at 0 is within that drop.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.special import chdtri, ndtri, stdtrit

from pfps_meta.errors import InputError
from pfps_meta.models.metareg import ResultDict
from pfps_meta.models.tau2 import loglik_intercept, tau2_standard_error


class Tau2Uncertainty(ResultDict):
    """The SE of tau2 and its profile-likelihood CI (keys ``se``, ``pl_low``, ``pl_high``, ``level``;
    ``reason`` when not computed); prints through :mod:`pfps_meta.present.tables`."""


def _arrays(result):
    return result.studies["yi"].to_numpy(dtype=float), result.studies["vi"].to_numpy(dtype=float)


def _tau2(result):
    tau2 = result.stats.get("tau2")
    return 0.0 if tau2 is None or not math.isfinite(tau2) else float(tau2)


def _crit(result):
    level = result.level
    if result.ci_method == "hksj" and result.stats["k"] >= 2:
        return stdtrit(result.stats["k"] - 1, 0.5 + level / 2)
    return ndtri(0.5 + level / 2)


def blup(result) -> pd.DataFrame:
    """Best linear unbiased predictions of each study's true effect, with SE and prediction interval."""
    yi, vi = _arrays(result)
    tau2 = _tau2(result)
    lam = tau2 / (tau2 + vi)
    mu, var_mu = result.stats["estimate"], result.stats["se"] ** 2
    pred = lam * yi + (1 - lam) * mu
    se = np.sqrt(lam * vi + (1 - lam) ** 2 * var_mu)
    crit = _crit(result)
    return pd.DataFrame({"study": result.studies["study"].to_numpy(), "pred": pred, "se": se,
                         "pi_low": pred - crit * se, "pi_high": pred + crit * se})


def fitted(result) -> np.ndarray:
    """Fitted values: the pooled estimate for every study (metafor ``fitted``)."""
    return np.full(result.stats["k"], result.stats["estimate"])


def rstandard(result) -> pd.DataFrame:
    """Standardised residuals (metafor ``rstandard``)."""
    yi, vi = _arrays(result)
    tau2 = _tau2(result)
    w = 1.0 / (vi + tau2)
    resid = yi - result.stats["estimate"]
    se = np.sqrt(vi + tau2 - 1.0 / w.sum())
    return pd.DataFrame({"study": result.studies["study"].to_numpy(), "resid": resid, "se": se, "z": resid / se})


def tau2_uncertainty(result) -> Tau2Uncertainty:
    """SE of tau2 and its profile-likelihood CI (ML and REML fits; None for other estimators)."""
    if not all(hasattr(result, name) for name in ("studies", "stats", "method")):
        raise InputError(f"result: a fitted result (pm.pool) is needed (got {type(result).__name__})")
    out = _tau2_uncertainty(result)
    return Tau2Uncertainty(out, tau2=result.stats.get("tau2"), method=result.method)


def _tau2_uncertainty(result) -> dict:
    method = result.method
    if method not in ("ML", "REML") or result.stats["k"] < 2:
        return {"se": None, "pl_low": None, "pl_high": None,
                "reason": "the SE and profile-likelihood CI of tau2 need an ML or REML fit with k >= 2"}
    yi, vi = _arrays(result)
    tau2 = _tau2(result)
    reml = method == "REML"
    se = tau2_standard_error(vi, tau2, method)
    drop = chdtri(1, 1 - result.level) / 2.0
    y, v = yi[None, :], vi[None, :]
    present, k = np.ones_like(y, dtype=bool), np.array([len(yi)])

    def loglik(t):          # the pooling core's (restricted) log-likelihood, mu profiled out
        return float(loglik_intercept(y, v, present, k, np.array([t]), reml)[0])

    top = loglik(tau2)

    def gap(t):
        return loglik(t) - (top - drop)

    low = 0.0 if gap(0.0) >= 0 else brentq(gap, 0.0, tau2, xtol=1e-14, rtol=1e-13, maxiter=500)
    upper = max(tau2, np.var(yi), 1e-8) * 2
    while gap(upper) > 0:
        upper *= 2
        if upper > 1e12:
            return {"se": se, "pl_low": low, "pl_high": math.inf, "reason": "the likelihood never falls enough"}
    high = brentq(gap, tau2, upper, xtol=1e-14, rtol=1e-13, maxiter=500)
    return {"se": se, "pl_low": low, "pl_high": high, "level": result.level}
