"""Stage 3 of the pipeline: effect sizes (yi) and their sampling variances (vi) from trial data.

Pure numpy functions, vectorised over studies: arrays in, arrays out, no pandas, no I/O.
The sign convention everywhere is *experimental minus control*.

References
----------
- Borenstein M, Hedges LV, Higgins JPT, Rothstein HR (2009). Introduction to Meta-Analysis, ch. 4.
- Hedges LV (1981). Distribution theory for Glass's estimator of effect size. J Educ Stat 6:107-128
  (exact small-sample correction J(m) = Gamma(m/2) / (sqrt(m/2) Gamma((m-1)/2))).
- Viechtbauer W (2010). metafor, ``escalc()``: measure "MD" (vtype "LS" and "HO") and "SMD" (vtype "LS").
- Deeks JJ, Higgins JPT (2010). Statistical algorithms in Review Manager 5 (RevMan 5 SMD and its SE).
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln, ndtri

from pfps_meta.conventions import SMD_CONVENTIONS, SMD_VTYPES


def _arrays(*values):
    return [np.asarray(v, dtype=float) for v in values]


def hedges_correction(df):
    """Exact small-sample bias correction J(df) for Hedges' g (Hedges 1981, eq. 6e).

    ``J(m) = Gamma(m/2) / (sqrt(m/2) * Gamma((m - 1)/2))`` with ``m = n1 + n2 - 2``, computed through
    log-gamma so that it neither overflows nor loses precision for trials with thousands of
    participants (the plain ratio of gamma functions overflows above about m = 340).
    """
    m = np.asarray(df, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.exp(gammaln(m / 2.0) - 0.5 * np.log(m / 2.0) - gammaln((m - 1.0) / 2.0))


def revman_correction(n_total):
    """RevMan 5's approximate correction ``J = 1 - 3 / (4N - 9)`` with N = n1 + n2 (Deeks & Higgins 2010)."""
    n = np.asarray(n_total, dtype=float)
    return 1.0 - 3.0 / (4.0 * n - 9.0)


def mean_difference(n_exp, mean_exp, sd_exp, n_ctrl, mean_ctrl, sd_ctrl, pooled_sd=False):
    """Raw mean difference, experimental minus control, and its sampling variance.

    Unpooled (metafor's default, ``vtype="LS"``): ``vi = sd1^2/n1 + sd2^2/n2``.
    Pooled (``vtype="HO"``): ``vi = s_p^2 (1/n1 + 1/n2)`` with
    ``s_p^2 = ((n1-1) sd1^2 + (n2-1) sd2^2) / (n1 + n2 - 2)`` (Borenstein et al. 2009, eq. 4.3-4.5).
    """
    n1, m1, s1, n2, m2, s2 = _arrays(n_exp, mean_exp, sd_exp, n_ctrl, mean_ctrl, sd_ctrl)
    yi = m1 - m2
    if pooled_sd:
        s2p = ((n1 - 1) * s1 ** 2 + (n2 - 1) * s2 ** 2) / (n1 + n2 - 2)
        vi = s2p * (1.0 / n1 + 1.0 / n2)
    else:
        vi = s1 ** 2 / n1 + s2 ** 2 / n2
    return yi, vi


def standardized_mean_difference(n_exp, mean_exp, sd_exp, n_ctrl, mean_ctrl, sd_ctrl,
                                 convention="metafor", vtype="LS"):
    """Hedges' g, experimental minus control, and its sampling variance.

    ``d = (m1 - m2) / s_p`` with the pooled SD ``s_p`` (n - 1 weighting), then ``g = J d``.

    convention="metafor" (metafor ``escalc(measure="SMD")``, R meta): exact J through log-gamma, and
    the variance chosen by ``vtype`` (metafor's names; Hedges 1983, Borenstein et al. 2009 eq. 4.20):

    - "LS" (metafor's default): ``vi = 1/n1 + 1/n2 + g^2 / (2N)``;
    - "UB" (unbiased; R meta's default since 6.0): ``vi = 1/n1 + 1/n2 + (1 - (m - 2)/(m J^2)) g^2``
      with ``m = N - 2``;
    - "AV": as "LS" with the sample-size-weighted average of g over all studies,
      ``sum(N_i g_i) / sum(N_i)``, in place of each study's g (as metafor computes it).

    convention="revman5" (RevMan 5, Deeks & Higgins 2010):
        ``J = 1 - 3/(4N - 9)``; ``vi = N/(n1 n2) + g^2 / (2 (N - 3.94))`` (``vtype`` must be "LS").
    """
    if convention not in SMD_CONVENTIONS:
        raise ValueError(f"convention must be one of {tuple(SMD_CONVENTIONS)}, got {convention!r}")
    if vtype not in SMD_VTYPES or (convention == "revman5" and vtype != "LS"):
        raise ValueError(f"vtype {vtype!r} is not available with the {convention} convention")
    n1, m1, s1, n2, m2, s2 = _arrays(n_exp, mean_exp, sd_exp, n_ctrl, mean_ctrl, sd_ctrl)
    n_total = n1 + n2
    sd_pooled = np.sqrt(((n1 - 1) * s1 ** 2 + (n2 - 1) * s2 ** 2) / (n_total - 2))
    d = (m1 - m2) / sd_pooled
    if convention == "revman5":
        g = revman_correction(n_total) * d
        return g, n_total / (n1 * n2) + g ** 2 / (2.0 * (n_total - 3.94))
    j = hedges_correction(n_total - 2)
    g = j * d
    base = 1.0 / n1 + 1.0 / n2
    if vtype == "UB":
        m = n_total - 2
        return g, base + (1.0 - (m - 2.0) / (m * j ** 2)) * g ** 2
    if vtype == "AV":
        ok = np.isfinite(g)
        g_bar = np.sum(np.where(ok, n_total * g, 0.0)) / np.sum(np.where(ok, n_total, 0.0))
        return g, base + g_bar ** 2 / (2.0 * n_total)
    return g, base + g ** 2 / (2.0 * n_total)


def smd_heteroscedastic(n_exp, mean_exp, sd_exp, n_ctrl, mean_ctrl, sd_ctrl):
    """SMD with heteroscedastic SDs (Bonett 2009; metafor ``escalc(measure="SMDH")``).

    ``g = J (m1 - m2) / s`` with ``s = sqrt((sd1^2 + sd2^2)/2)`` and the exact J at n1 + n2 - 2 df;
    ``vi = J^2 [g^2 (sd1^4/(n1-1) + sd2^4/(n2-1)) / (2 (sd1^2 + sd2^2)^2)
    + (sd1^2/(n1-1) + sd2^2/(n2-1)) / s^2]`` (metafor plugs the corrected g into Bonett's formula).
    """
    n1, m1, s1, n2, m2, s2 = _arrays(n_exp, mean_exp, sd_exp, n_ctrl, mean_ctrl, sd_ctrl)
    j = hedges_correction(n1 + n2 - 2)
    s2_avg = (s1 ** 2 + s2 ** 2) / 2.0
    g = j * (m1 - m2) / np.sqrt(s2_avg)
    vi = (g ** 2 * (s1 ** 4 / (n1 - 1) + s2 ** 4 / (n2 - 1)) / (2.0 * (s1 ** 2 + s2 ** 2) ** 2)
          + (s1 ** 2 / (n1 - 1) + s2 ** 2 / (n2 - 1)) / s2_avg)
    return g, j ** 2 * vi


def mean_change(n, mean_t1, sd_t1, mean_t2, sd_t2, r):
    """Raw mean change in one group measured twice (metafor ``measure="MC"``): ``yi = m1 - m2``,
    ``vi = (sd1^2 + sd2^2 - 2 r sd1 sd2) / n`` (Morris & DeShon 2002)."""
    n, m1, s1, m2, s2, r = _arrays(n, mean_t1, sd_t1, mean_t2, sd_t2, r)
    return m1 - m2, (s1 ** 2 + s2 ** 2 - 2.0 * r * s1 * s2) / n


def standardized_mean_change_change(n, mean_t1, sd_t1, mean_t2, sd_t2, r):
    """Standardised mean change, change-score standardisation (metafor ``"SMCC"``; Gibbons et al. 1993):
    ``yi = J(n-1) (m1 - m2) / sd_d`` with ``sd_d = sqrt(sd1^2 + sd2^2 - 2 r sd1 sd2)``,
    ``vi = 1/n + yi^2 / (2n)``."""
    n, m1, s1, m2, s2, r = _arrays(n, mean_t1, sd_t1, mean_t2, sd_t2, r)
    yi = hedges_correction(n - 1) * (m1 - m2) / np.sqrt(s1 ** 2 + s2 ** 2 - 2.0 * r * s1 * s2)
    return yi, 1.0 / n + yi ** 2 / (2.0 * n)


def standardized_mean_change_raw(n, mean_t1, sd_t1, mean_t2, r):
    """Standardised mean change, raw-score standardisation (metafor ``"SMCR"``; Becker 1988):
    ``yi = J(n-1) (m1 - m2) / sd1``, ``vi = 2 (1 - r) / n + yi^2 / (2n)``."""
    n, m1, s1, m2, r = _arrays(n, mean_t1, sd_t1, mean_t2, r)
    yi = hedges_correction(n - 1) * (m1 - m2) / s1
    return yi, 2.0 * (1.0 - r) / n + yi ** 2 / (2.0 * n)


def log_ratio_of_means(n_exp, mean_exp, sd_exp, n_ctrl, mean_ctrl, sd_ctrl):
    """Log ratio of means (metafor ``escalc(measure="ROM")``; Hedges, Gurevitch & Curtis 1999).

    ``yi = log(m1 / m2)``, ``vi = sd1^2 / (n1 m1^2) + sd2^2 / (n2 m2^2)``; both means must be positive.
    """
    n1, m1, s1, n2, m2, s2 = _arrays(n_exp, mean_exp, sd_exp, n_ctrl, mean_ctrl, sd_ctrl)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.log(m1 / m2), s1 ** 2 / (n1 * m1 ** 2) + s2 ** 2 / (n2 * m2 ** 2)


def log_risk_ratio(events_exp, n_exp, events_ctrl, n_ctrl):
    """Log risk ratio and its large-sample variance (metafor ``escalc(measure="RR")``).

    ``yi = log((a/n1) / (c/n2))``, ``vi = 1/a - 1/n1 + 1/c - 1/n2``. Tables with a zero cell get 0.5
    added to every cell (metafor's default ``add=1/2, to="only0"``).
    """
    a, n1, c, n2 = _arrays(events_exp, n_exp, events_ctrl, n_ctrl)
    a, b, c, d = _continuity(a, n1 - a, c, n2 - c)
    n1, n2 = a + b, c + d
    return np.log(a / n1) - np.log(c / n2), 1.0 / a - 1.0 / n1 + 1.0 / c - 1.0 / n2


def log_odds_ratio(events_exp, n_exp, events_ctrl, n_ctrl):
    """Log odds ratio and its Woolf variance ``1/a + 1/b + 1/c + 1/d`` (metafor ``measure="OR"``)."""
    a, n1, c, n2 = _arrays(events_exp, n_exp, events_ctrl, n_ctrl)
    a, b, c, d = _continuity(a, n1 - a, c, n2 - c)
    return np.log(a * d / (b * c)), 1.0 / a + 1.0 / b + 1.0 / c + 1.0 / d


def risk_difference(events_exp, n_exp, events_ctrl, n_ctrl):
    """Risk difference and its large-sample variance (metafor ``escalc(measure="RD")``).

    ``yi = a/n1 - c/n2``, ``vi = p1 (1 - p1) / n1 + p2 (1 - p2) / n2``, after metafor's default
    0.5 added to every cell of a table with a zero cell.
    """
    a, n1, c, n2 = _arrays(events_exp, n_exp, events_ctrl, n_ctrl)
    a, b, c, d = _continuity(a, n1 - a, c, n2 - c)
    n1, n2 = a + b, c + d
    p1, p2 = a / n1, c / n2
    return p1 - p2, p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2


def _continuity(a, b, c, d):
    zero = (a == 0) | (b == 0) | (c == 0) | (d == 0)
    add = np.where(zero, 0.5, 0.0)
    return a + add, b + add, c + add, d + add


def from_standard_error(yi, sei):
    """Effect-level input given as an estimate and its standard error: ``vi = sei^2``."""
    yi, sei = _arrays(yi, sei)
    return yi, sei ** 2


def from_confidence_interval(estimate, ci_low, ci_high, level=0.95, asymmetry_tolerance=0.1):
    """Effect-level input given as an estimate with a confidence interval on the analysis scale.

    ``se = (ci_high - ci_low) / (2 z_{1 - alpha/2})`` (Higgins et al., Cochrane Handbook 6.3.1).
    Returns ``(yi, vi, asymmetric)`` where ``asymmetric`` flags intervals whose two arms differ by
    more than ``asymmetry_tolerance`` times the half-width: such an interval was probably computed on
    another scale (e.g. a ratio not log-transformed), and the derived SE is then approximate.
    """
    est, lo, hi = _arrays(estimate, ci_low, ci_high)
    z = ndtri(0.5 + level / 2.0)
    half = (hi - lo) / 2.0
    se = half / z
    asymmetric = np.abs((hi - est) - (est - lo)) > asymmetry_tolerance * np.abs(half)
    return est, se ** 2, asymmetric
