"""What trial papers print, turned into what the engine needs: one function per rule, formulas cited.

Papers rarely print n, mean and SD per arm at follow-up. They print medians with quartiles or ranges,
standard errors, confidence intervals of a mean, p-values or t statistics for a difference, change from
baseline, or three arms where the analysis wants two. Each function here converts one of those, works
on numpy arrays (vectorised over studies or arms) and returns a :class:`Converted`: the value(s) and a
short machine-readable ``rule`` saying how they were obtained, which travels with the number into the
effect table, the JSON output and the report.

Rules and sources:

- SD of an arm from the SE of its mean: ``SD = SE sqrt(n)`` (Cochrane Handbook 6.5.2.2).
- SD from the CI of an arm mean: ``SD = sqrt(n) (upper - lower) / (2 c)`` with ``c`` the t quantile with
  n - 1 df (``dist="t"``, the default: the Handbook's rule for small samples, and what a t-based CI
  printed by a paper inverts exactly at any n) or the normal quantile (``dist="z"``, the Handbook's
  3.92 for 95% CIs of large samples) (Handbook 6.5.2.2).
- SE of a between-group difference from its CI, a p-value or a t statistic (Handbook 6.5.2.3):
  ``SE = (upper - lower) / (2 c)``; ``SE = |MD| / c_p`` with ``c_p`` the quantile for a two-sided p;
  ``SE = |MD| / |t|``.
- Mean and SD from a median with quartiles (scenario S2), with the range (S1), or with both (S3), as R
  meta 8.2 (``metacont(method.mean=, method.sd=)``) computes them:
  Luo D, Wan X, Liu J, Tong T (2018) Stat Methods Med Res 27:1785-1805 (mean);
  Wan X, Wang W, Liu J, Tong T (2014) BMC Med Res Methodol 14:135 (mean and SD; Tables 1 and 2 give
  the divisors meta uses for small n); Shi J, Luo D, Weng H et al. (2020) Res Synth Methods 11:641-654
  (SD from all five numbers).
- SD of a change from baseline from the baseline and final SDs and their correlation, and the
  correlation back-calculated from a trial that reports all three (Handbook 6.5.2.8).
- Two arms combined into one (Handbook Table 6.5.a), for multi-arm trials.
- Hedges' g and its variance from a two-sample t or F statistic (Borenstein et al. 2009, ch. 7:
  ``d = t sqrt(1/n1 + 1/n2)``; ``|t| = sqrt(F)`` for one numerator df).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri, stdtrit

from pfps_meta.effects.sizes import hedges_correction

# Wan et al. (2014) Table 1: xi(n) = E(range)/sigma for a normal sample of size n = 1..50, and Table 2:
# eta(Q) = E(IQR)/sigma for n = 4Q + 1, Q = 1..50; three decimals, as R meta 8.2-1 tabulates them.
XI_TABLE = (0, 1.128, 1.693, 2.059, 2.326, 2.534, 2.704, 2.847, 2.97, 3.078, 3.173, 3.259, 3.336, 3.407, 3.472, 3.532,
    3.588, 3.64, 3.689, 3.735, 3.778, 3.819, 3.858, 3.895, 3.931, 3.964, 3.997, 4.027, 4.057, 4.086, 4.113,
    4.139, 4.165, 4.189, 4.213, 4.236, 4.259, 4.28, 4.301, 4.322, 4.341, 4.361, 4.379, 4.398, 4.415, 4.433,
    4.45, 4.466, 4.482, 4.498)
ETA_TABLE = (0.99, 1.144, 1.206, 1.239, 1.26, 1.274, 1.284, 1.292, 1.298, 1.303, 1.307, 1.311, 1.313, 1.316, 1.318,
    1.32, 1.322, 1.323, 1.324, 1.326, 1.327, 1.328, 1.329, 1.33, 1.33, 1.331, 1.332, 1.332, 1.333, 1.333,
    1.334, 1.334, 1.335, 1.335, 1.336, 1.336, 1.336, 1.337, 1.337, 1.337, 1.338, 1.338, 1.338, 1.338, 1.339,
    1.339, 1.339, 1.339, 1.339, 1.34)


@dataclass(frozen=True)
class Converted:
    """Converted value(s) and the rule that produced them (a short, machine-readable string)."""

    value: object
    rule: str


@dataclass(frozen=True)
class MeanSD:
    """A mean and an SD estimated together, with the rule for each."""

    mean: object
    sd: object
    mean_rule: str
    sd_rule: str

    @property
    def rule(self) -> str:
        return f"mean: {self.mean_rule}; sd: {self.sd_rule}"


def _f(*values):
    return [np.asarray(v, dtype=float) for v in values]


def _quantile(level, df=None):
    """Two-sided critical value: normal when ``df`` is None, else t(df)."""
    p = 0.5 + np.asarray(level, dtype=float) / 2.0
    return ndtri(p) if df is None else stdtrit(np.asarray(df, dtype=float), p)


# ------------------------------------------------------------------------------------------------
# one arm: SE or CI of its mean -> SD


def sd_from_se(se, n) -> Converted:
    """SD of an arm from the standard error of its mean: ``SD = SE sqrt(n)`` (Handbook 6.5.2.2)."""
    se, n = _f(se, n)
    return Converted(se * np.sqrt(n), "sd_from_se: sd = se*sqrt(n) (Cochrane Handbook 6.5.2.2)")


def sd_from_ci(ci_low, ci_high, n, level=0.95, dist="t") -> Converted:
    """SD of an arm from the confidence interval of its mean (Handbook 6.5.2.2).

    ``SD = sqrt(n) (ci_high - ci_low) / (2 c)``, with ``c`` the two-sided ``level`` quantile of t(n - 1)
    (``dist="t"``, default) or of the normal distribution (``dist="z"``: 3.92 = 2 x 1.96 at 95%).
    """
    lo, hi, n = _f(ci_low, ci_high, n)
    if dist not in ("t", "z"):
        raise ValueError("dist must be 't' or 'z'")
    crit = _quantile(level, n - 1 if dist == "t" else None)
    pct = f"{100 * level:g}%"
    rule = (f"sd_from_ci: sd = sqrt(n)*(upper-lower)/(2*{'t(n-1)' if dist == 't' else 'z'}), {pct} CI of the mean "
            "(Cochrane Handbook 6.5.2.2)")
    return Converted(np.sqrt(n) * (hi - lo) / (2.0 * crit), rule)


# ------------------------------------------------------------------------------------------------
# a between-group difference: CI, p or t -> its SE


def se_from_ci(ci_low, ci_high, level=0.95, df=None) -> Converted:
    """SE of a difference from its CI: ``(upper - lower) / (2 c)``, c normal or t(df) (Handbook 6.5.2.3)."""
    lo, hi = _f(ci_low, ci_high)
    crit = _quantile(level, df)
    dist = "z" if df is None else "t(df)"
    return Converted((hi - lo) / (2.0 * crit),
                     f"se_from_ci: se = (upper-lower)/(2*{dist}), {100 * level:g}% CI (Cochrane Handbook 6.5.2.3)")


def se_from_p(difference, p, df=None) -> Converted:
    """SE of a difference from its two-sided p-value: ``SE = |difference| / c``, with ``c`` the normal
    quantile (``df=None``) or the t(df) quantile at ``1 - p/2`` (Handbook 6.5.2.3; for a t test
    ``df = n1 + n2 - 2``). A p printed as a bound ("p < 0.05") gives a conservative (larger) SE."""
    diff, p = _f(difference, p)
    crit = ndtri(1.0 - p / 2.0) if df is None else stdtrit(np.asarray(df, dtype=float), 1.0 - p / 2.0)
    dist = "z" if df is None else "t(df)"
    return Converted(np.abs(diff) / crit, f"se_from_p: se = |difference|/{dist}(1-p/2) (Cochrane Handbook 6.5.2.3)")


def se_from_t(difference, t) -> Converted:
    """SE of a difference from its t statistic: ``SE = |difference| / |t|`` (Handbook 6.5.2.3)."""
    diff, t = _f(difference, t)
    return Converted(np.abs(diff) / np.abs(t), "se_from_t: se = |difference|/|t| (Cochrane Handbook 6.5.2.3)")


# ------------------------------------------------------------------------------------------------
# median with quartiles and/or range -> mean and SD (Luo 2018, Wan 2014, Shi 2020), as R meta 8.2


def _xi(n):
    """Wan 2014 divisor for the range: Table 1 for n <= 50, else ``2 qnorm((n - 0.375)/(n + 0.25))``."""
    n = np.asarray(n, dtype=float)
    table = np.asarray(XI_TABLE)
    index = np.clip(n.astype(int), 1, 50) - 1
    closed = 2.0 * ndtri((n - 0.375) / (n + 0.25))
    return np.where(n <= 50, table[index], closed)


def _eta(n):
    """Wan 2014 divisor for the IQR: Table 2 at Q = ceiling((n - 1)/4) for n <= 201 (as R meta), else
    ``2 qnorm((0.75 n - 0.125)/(n + 0.25))``."""
    n = np.asarray(n, dtype=float)
    table = np.asarray(ETA_TABLE)
    q = np.clip(np.ceil(0.25 * (n - 1)).astype(int), 1, 50) - 1
    closed = 2.0 * ndtri((0.75 * n - 0.125) / (n + 0.25))
    return np.where(n <= 201, table[q], closed)


def mean_sd_from_quartiles(n, median, q1, q3, mean_method="luo") -> MeanSD:
    """Scenario S2 (median, first and third quartile).

    Mean: Luo 2018 ``(0.7 + 0.39/n)(q1 + q3)/2 + (0.3 - 0.39/n) m`` or Wan 2014 ``(q1 + m + q3)/3``.
    SD: Wan 2014 ``(q3 - q1) / eta(n)`` (Shi 2020 keeps Wan's rule for this scenario).
    """
    n, m, q1, q3 = _f(n, median, q1, q3)
    if mean_method == "luo":
        mean = (0.7 + 0.39 / n) * (q1 + q3) / 2.0 + (0.3 - 0.39 / n) * m
        mean_rule = "luo2018_s2"
    elif mean_method == "wan":
        mean = (q1 + m + q3) / 3.0
        mean_rule = "wan2014_s2"
    else:
        raise ValueError("mean_method must be 'luo' or 'wan'")
    return MeanSD(mean, (q3 - q1) / _eta(n), mean_rule, "wan2014_s2 (iqr/eta(n))")


def mean_sd_from_range(n, median, minimum, maximum, mean_method="luo") -> MeanSD:
    """Scenario S1 (median, minimum, maximum).

    Mean: Luo 2018 ``w (a + b)/2 + (1 - w) m`` with ``w = 4 / (4 + n^0.75)``, or, for ``"wan"``, what
    R meta 8.2 computes under that name: Hozo et al. 2005 (BMC Med Res Methodol 5:13, eq. 4)
    ``(a + 2m + b)/4 + (a - 2m + b)/(4n)`` (Wan 2014 drops the second term, negligible for large n).
    SD: Wan 2014 ``(b - a) / xi(n)``.
    """
    n, m, a, b = _f(n, median, minimum, maximum)
    if mean_method == "luo":
        w = 4.0 / (4.0 + n ** 0.75)
        mean = w * (a + b) / 2.0 + (1.0 - w) * m
        mean_rule = "luo2018_s1"
    elif mean_method == "wan":
        mean = (a + 2.0 * m + b) / 4.0 + (a - 2.0 * m + b) / (4.0 * n)
        mean_rule = "hozo2005_s1 (R meta's 'Wan')"
    else:
        raise ValueError("mean_method must be 'luo' or 'wan'")
    return MeanSD(mean, (b - a) / _xi(n), mean_rule, "wan2014_s1 (range/xi(n))")


def mean_sd_from_five_numbers(n, median, q1, q3, minimum, maximum, mean_method="luo", sd_method="shi") -> MeanSD:
    """Scenario S3 (minimum, quartiles, median, maximum).

    Mean: Luo 2018 ``w1 (a + b)/2 + w2 (q1 + q3)/2 + (1 - w1 - w2) m`` with ``w1 = 2.2 / (2.2 + n^0.75)``
    and ``w2 = 0.7 - 0.72 / n^0.55``, or Wan 2014 ``(a + 2 q1 + 2 m + 2 q3 + b)/8``.
    SD: Shi 2020 ``(b - a)/theta1(n) + (q3 - q1)/theta2(n)`` with
    ``theta1 = (2 + 0.14 n^0.6) qnorm((n - 0.375)/(n + 0.25))`` and
    ``theta2 = (2 + 2/(0.07 n^0.6)) qnorm((0.75 n - 0.125)/(n + 0.25))``, or Wan 2014
    ``(b - a)/(2 xi(n)) + (q3 - q1)/(2 eta(n))``.
    """
    n, m, q1, q3, a, b = _f(n, median, q1, q3, minimum, maximum)
    if mean_method == "luo":
        w1 = 2.2 / (2.2 + n ** 0.75)
        w2 = 0.7 - 0.72 / n ** 0.55
        mean = w1 * (a + b) / 2.0 + w2 * (q1 + q3) / 2.0 + (1.0 - w1 - w2) * m
        mean_rule = "luo2018_s3"
    elif mean_method == "wan":
        mean = (a + 2.0 * q1 + 2.0 * m + 2.0 * q3 + b) / 8.0
        mean_rule = "wan2014_s3"
    else:
        raise ValueError("mean_method must be 'luo' or 'wan'")
    if sd_method == "shi":
        theta1 = (2.0 + 0.14 * n ** 0.6) * ndtri((n - 0.375) / (n + 0.25))
        theta2 = (2.0 + 2.0 / (0.07 * n ** 0.6)) * ndtri((0.75 * n - 0.125) / (n + 0.25))
        sd = (b - a) / theta1 + (q3 - q1) / theta2
        sd_rule = "shi2020_s3"
    elif sd_method == "wan":
        sd = (b - a) / (2.0 * _xi(n)) + (q3 - q1) / (2.0 * _eta(n))
        sd_rule = "wan2014_s3"
    else:
        raise ValueError("sd_method must be 'shi' or 'wan'")
    return MeanSD(mean, sd, mean_rule, sd_rule)


# ------------------------------------------------------------------------------------------------
# change from baseline, multi-arm trials, test statistics


def sd_change(sd_baseline, sd_final, correlation) -> Converted:
    """SD of the change from baseline (Handbook 6.5.2.8):
    ``sqrt(sd_b^2 + sd_f^2 - 2 r sd_b sd_f)``."""
    sb, sf, r = _f(sd_baseline, sd_final, correlation)
    return Converted(np.sqrt(sb ** 2 + sf ** 2 - 2.0 * r * sb * sf),
                     "sd_change: sqrt(sd_b^2 + sd_f^2 - 2*r*sd_b*sd_f) (Cochrane Handbook 6.5.2.8)")


def correlation_from_sds(sd_baseline, sd_final, sd_change_) -> Converted:
    """Baseline-final correlation from a trial reporting all three SDs (Handbook 6.5.2.8):
    ``r = (sd_b^2 + sd_f^2 - sd_change^2) / (2 sd_b sd_f)``."""
    sb, sf, sc = _f(sd_baseline, sd_final, sd_change_)
    return Converted((sb ** 2 + sf ** 2 - sc ** 2) / (2.0 * sb * sf),
                     "correlation_from_sds: (sd_b^2 + sd_f^2 - sd_c^2)/(2*sd_b*sd_f) (Cochrane Handbook 6.5.2.8)")


def combine_arms(n1, mean1, sd1, n2, mean2, sd2):
    """Two arms as one (Cochrane Handbook Table 6.5.a): returns ``(n, mean, sd, rule)`` with
    ``n = n1 + n2``, ``mean = (n1 m1 + n2 m2)/n`` and
    ``sd = sqrt(((n1 - 1) s1^2 + (n2 - 1) s2^2 + n1 n2 (m1 - m2)^2 / n) / (n - 1))``."""
    n1, m1, s1, n2, m2, s2 = _f(n1, mean1, sd1, n2, mean2, sd2)
    n = n1 + n2
    mean = (n1 * m1 + n2 * m2) / n
    sd = np.sqrt(((n1 - 1) * s1 ** 2 + (n2 - 1) * s2 ** 2 + n1 * n2 / n * (m1 - m2) ** 2) / (n - 1))
    return n, mean, sd, "combine_arms: Cochrane Handbook Table 6.5.a"


def hedges_g_from_t(t, n1, n2) -> tuple:
    """Hedges' g and its variance from a two-sample t statistic (sign: experimental minus control).

    ``d = t sqrt(1/n1 + 1/n2)``, ``g = J(n1 + n2 - 2) d`` (exact J), ``vi = 1/n1 + 1/n2 + g^2/(2N)``
    (metafor's large-sample variance; Borenstein et al. 2009 eq. 4.18-4.24, 7.1). Returns (g, vi, rule).
    """
    t, n1, n2 = _f(t, n1, n2)
    g = hedges_correction(n1 + n2 - 2) * t * np.sqrt(1.0 / n1 + 1.0 / n2)
    vi = 1.0 / n1 + 1.0 / n2 + g ** 2 / (2.0 * (n1 + n2))
    return g, vi, "hedges_g_from_t: g = J*t*sqrt(1/n1+1/n2), vi = 1/n1+1/n2+g^2/(2N)"


def hedges_g_from_f(f, n1, n2, sign) -> tuple:
    """As :func:`hedges_g_from_t` from a two-group F statistic (1 numerator df): ``|t| = sqrt(F)``; the
    F statistic has no sign, so ``sign`` (+1 or -1: which arm had the higher mean) must be given."""
    f, sign = _f(f, sign)
    if np.any(~np.isin(sign, (-1.0, 1.0))):
        raise ValueError("sign must be +1 or -1")
    g, vi, _ = hedges_g_from_t(sign * np.sqrt(f), n1, n2)
    return g, vi, "hedges_g_from_f: t = sign*sqrt(F), then hedges_g_from_t"
