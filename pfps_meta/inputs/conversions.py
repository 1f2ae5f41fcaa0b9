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

Every function checks its arguments first and raises :class:`~pfps_meta.errors.InputError` naming the
function, the argument and (for arrays) the first bad position: values that are not numbers (text, None,
booleans), NaN or infinity, an SD, SE or F that is not positive, a sample size below 2 or not whole, a
``level`` outside (0, 1) (``level=95`` is refused: write 0.95), a reversed CI, quartiles or range out of
order, a p-value outside (0, 1), a correlation outside [-1, 1], arguments of different lengths, and an
unknown method name. No result is NaN, infinite, or (for an SD or SE) zero or negative.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri, stdtrit

from pfps_meta.effects.sizes import hedges_correction
from pfps_meta.errors import InputError

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


def _where(array) -> str:
    """`` at index i`` for the first True entry of a boolean array (nothing for a single value)."""
    if array.ndim == 0:
        return ""
    return f" at index {tuple(int(i) for i in np.argwhere(array)[0]) if array.ndim > 1 else int(np.argmax(array))}"


def _shown(array, mask) -> str:
    value = array[mask].flat[0] if array.ndim else array.item()
    return f"{value:g}"


def _number(func, name, value, *, positive=False, nonnegative=False, nonzero=False, whole=False, minimum=None,
            below=None, above=None):
    """``value`` as a float array after the checks (see the module docstring); InputError otherwise."""
    where = f"{func}: argument '{name}'"
    if value is None or isinstance(value, (str, bytes, bool, np.bool_)):
        raise InputError(f"{where} must be a number or an array of numbers (got {type(value).__name__})")
    try:
        raw = np.asarray(value)
    except Exception:                   # ragged nested lists and other shapes numpy cannot hold
        raise InputError(f"{where} must be a number or an array of numbers (got {type(value).__name__})") from None
    if raw.dtype.kind == "O":
        bad = [v for v in raw.flat if v is None or isinstance(v, (str, bytes, bool, np.bool_))
               or not isinstance(v, (int, float, np.integer, np.floating))]
        if bad:
            raise InputError(f"{where} must hold numbers only (got {type(bad[0]).__name__} {bad[0]!r:.40})")
    elif raw.dtype.kind not in "iuf":
        raise InputError(f"{where} must hold numbers (got values of type {raw.dtype})")
    array = raw.astype(float)
    if raw.size == 0:
        raise InputError(f"{where} is empty")
    mask = ~np.isfinite(array)
    if mask.any():
        raise InputError(f"{where} must be finite (got {_shown(array, mask)}{_where(mask)})")
    checks = [(positive, array <= 0, "must be greater than 0"), (nonnegative, array < 0, "must not be negative"),
              (nonzero, array == 0, "must not be 0"),
              (whole, array != np.round(array), "must be a whole number"),
              (minimum is not None, array < (minimum if minimum is not None else 0), f"must be at least {minimum}"),
              (below is not None, array >= (below if below is not None else 0), f"must be below {below}"),
              (above is not None, array <= (above if above is not None else 0), f"must be above {above}")]
    for wanted, failing, reason in checks:
        if wanted and failing.any():
            raise InputError(f"{where} {reason} (got {_shown(array, failing)}{_where(failing)})")
    return array


MAX_N = 1e9        # a sample size above this is a typing slip, not a trial


def _size(func, value, name="n"):
    """A sample size: whole, at least 2 (an SD needs two observations) and at most ``MAX_N``."""
    return _number(func, name, value, whole=True, minimum=2, below=MAX_N + 1)


def _level(func, level):
    if isinstance(level, (int, float, np.integer, np.floating)) and not isinstance(level, (bool, np.bool_)) \
            and np.isfinite(level) and 1 < level < 100:
        raise InputError(f"{func}: argument 'level' must be between 0 and 1 (got {level:g}; for a "
                         f"{level:g}% interval write {level / 100:g})")
    value = _number(func, "level", level, above=0, below=1)
    if value.ndim:
        raise InputError(f"{func}: argument 'level' must be one number between 0 and 1")
    return float(value)


def _df(func, df):
    return None if df is None else _number(func, "df", df, positive=True)


def _together(func, **arrays):
    """The arrays broadcast to one shape; arguments of different lengths are an InputError."""
    try:
        shaped = np.broadcast_arrays(*arrays.values())
    except ValueError:
        shapes = ", ".join(f"{k} {np.shape(v)}" for k, v in arrays.items())
        raise InputError(f"{func}: the arguments have different lengths ({shapes})") from None
    return dict(zip(arrays, shaped))


def _ordered(func, pairs):
    """Each (name_a, a, name_b, b, strict) needs a <= b (a < b when strict), entry by entry."""
    for name_a, a, name_b, b, strict in pairs:
        failing = (a >= b) if strict else (a > b)
        if np.any(failing):
            failing = np.asarray(failing)
            i = np.argwhere(failing)[0] if failing.ndim else ()
            got_a, got_b = np.broadcast_to(a, failing.shape)[tuple(i)], np.broadcast_to(b, failing.shape)[tuple(i)]
            relation = "below" if strict else "at most"
            raise InputError(f"{func}: '{name_a}' ({got_a:g}) must be {relation} '{name_b}' ({got_b:g})"
                             f"{_where(failing)}")


def _choice(func, name, value, allowed):
    if not isinstance(value, str) or value not in allowed:
        raise InputError(f"{func}: argument '{name}' must be {' or '.join(repr(a) for a in allowed)} (got {value!r})")


def _checked(function):
    """Run a conversion with numpy's floating-point warnings off, then refuse any result that is not
    finite (arguments so large that the arithmetic overflows): no NaN or infinity ever comes out."""
    import functools

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with np.errstate(all="ignore"):
            result = function(*args, **kwargs)
        if isinstance(result, MeanSD):
            parts = {"mean": result.mean, "sd": result.sd}
        elif isinstance(result, Converted):
            parts = {"value": result.value}
        else:
            parts = dict(enumerate(result[:-1]))
        for name, value in parts.items():
            if value is not None and not np.all(np.isfinite(np.asarray(value, dtype=float))):
                raise InputError(f"{function.__name__}: the arguments are too large to convert (the result "
                                 "overflows); check their units")
        return result
    return wrapper


def _quantile(level, df=None):
    """Two-sided critical value: normal when ``df`` is None, else t(df)."""
    p = 0.5 + np.asarray(level, dtype=float) / 2.0
    return ndtri(p) if df is None else stdtrit(np.asarray(df, dtype=float), p)


# ------------------------------------------------------------------------------------------------
# one arm: SE or CI of its mean -> SD


@_checked
def sd_from_se(se, n) -> Converted:
    """SD of an arm from the standard error of its mean: ``SD = SE sqrt(n)`` (Handbook 6.5.2.2).
    ``se`` > 0; ``n`` a whole number >= 2."""
    func = "sd_from_se"
    v = _together(func, se=_number(func, "se", se, positive=True), n=_size(func, n))
    return Converted(v["se"] * np.sqrt(v["n"]), "sd_from_se: sd = se*sqrt(n) (Cochrane Handbook 6.5.2.2)")


@_checked
def sd_from_ci(ci_low, ci_high, n, level=0.95, dist="t") -> Converted:
    """SD of an arm from the confidence interval of its mean (Handbook 6.5.2.2).

    ``SD = sqrt(n) (ci_high - ci_low) / (2 c)``, with ``c`` the two-sided ``level`` quantile of t(n - 1)
    (``dist="t"``, default) or of the normal distribution (``dist="z"``: 3.92 = 2 x 1.96 at 95%).
    Needs ``ci_low < ci_high``, ``n`` a whole number >= 2 and ``0 < level < 1``.
    """
    func = "sd_from_ci"
    _choice(func, "dist", dist, ("t", "z"))
    level = _level(func, level)
    v = _together(func, ci_low=_number(func, "ci_low", ci_low), ci_high=_number(func, "ci_high", ci_high),
                  n=_size(func, n))
    _ordered(func, [("ci_low", v["ci_low"], "ci_high", v["ci_high"], True)])
    lo, hi, n = v["ci_low"], v["ci_high"], v["n"]
    crit = _quantile(level, n - 1 if dist == "t" else None)
    pct = f"{100 * level:g}%"
    rule = (f"sd_from_ci: sd = sqrt(n)*(upper-lower)/(2*{'t(n-1)' if dist == 't' else 'z'}), {pct} CI of the mean "
            "(Cochrane Handbook 6.5.2.2)")
    return Converted(np.sqrt(n) * (hi - lo) / (2.0 * crit), rule)


# ------------------------------------------------------------------------------------------------
# a between-group difference: CI, p or t -> its SE


@_checked
def se_from_ci(ci_low, ci_high, level=0.95, df=None) -> Converted:
    """SE of a difference from its CI: ``(upper - lower) / (2 c)``, c normal or t(df) (Handbook 6.5.2.3).
    Needs ``ci_low < ci_high``, ``0 < level < 1`` and ``df`` (when given) > 0."""
    func = "se_from_ci"
    level = _level(func, level)
    df = _df(func, df)
    v = _together(func, ci_low=_number(func, "ci_low", ci_low), ci_high=_number(func, "ci_high", ci_high),
                  **({} if df is None else {"df": df}))
    _ordered(func, [("ci_low", v["ci_low"], "ci_high", v["ci_high"], True)])
    crit = _quantile(level, v.get("df"))
    dist = "z" if df is None else "t(df)"
    return Converted((v["ci_high"] - v["ci_low"]) / (2.0 * crit),
                     f"se_from_ci: se = (upper-lower)/(2*{dist}), {100 * level:g}% CI (Cochrane Handbook 6.5.2.3)")


@_checked
def se_from_p(difference, p, df=None) -> Converted:
    """SE of a difference from its two-sided p-value: ``SE = |difference| / c``, with ``c`` the normal
    quantile (``df=None``) or the t(df) quantile at ``1 - p/2`` (Handbook 6.5.2.3; for a t test
    ``df = n1 + n2 - 2``). A p printed as a bound ("p < 0.05") gives a conservative (larger) SE.
    Needs ``0 < p < 1`` (p = 1 gives no SE), a nonzero ``difference`` and ``df`` (when given) > 0."""
    func = "se_from_p"
    df = _df(func, df)
    v = _together(func, difference=_number(func, "difference", difference, nonzero=True),
                  p=_number(func, "p", p, above=0, below=1), **({} if df is None else {"df": df}))
    q = 1.0 - v["p"] / 2.0
    crit = ndtri(q) if df is None else stdtrit(v["df"], q)
    dist = "z" if df is None else "t(df)"
    return Converted(np.abs(v["difference"]) / crit,
                     f"se_from_p: se = |difference|/{dist}(1-p/2) (Cochrane Handbook 6.5.2.3)")


@_checked
def se_from_t(difference, t) -> Converted:
    """SE of a difference from its t statistic: ``SE = |difference| / |t|`` (Handbook 6.5.2.3); both
    nonzero."""
    func = "se_from_t"
    v = _together(func, difference=_number(func, "difference", difference, nonzero=True),
                  t=_number(func, "t", t, nonzero=True))
    return Converted(np.abs(v["difference"]) / np.abs(v["t"]),
                     "se_from_t: se = |difference|/|t| (Cochrane Handbook 6.5.2.3)")


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


def _median(func, median):
    """The median, or None when it is not printed (None, or NaN in every entry: the SD rules need no
    median, and the mean is then None rather than NaN). NaN in some entries only is refused."""
    if median is None:
        return None
    if not isinstance(median, (str, bytes, bool, np.bool_)):
        try:
            raw = np.asarray(median, dtype=float)
        except (TypeError, ValueError):
            raw = None
        if raw is not None and raw.size and np.isnan(raw).all():
            return None
    return _number(func, "median", median)


def _quantiles_in_order(func, v, names):
    """``min <= q1 <= median <= q3 <= max`` over the names given (in that order), each spread positive."""
    present = [name for name in ("minimum", "q1", "median", "q3", "maximum") if name in names and v.get(name) is not None]
    _ordered(func, [(a, v[a], b, v[b], False) for a, b in zip(present, present[1:])])


@_checked
def mean_sd_from_quartiles(n, median, q1, q3, mean_method="luo") -> MeanSD:
    """Scenario S2 (median, first and third quartile).

    Mean: Luo 2018 ``(0.7 + 0.39/n)(q1 + q3)/2 + (0.3 - 0.39/n) m`` or Wan 2014 ``(q1 + m + q3)/3``.
    SD: Wan 2014 ``(q3 - q1) / eta(n)`` (Shi 2020 keeps Wan's rule for this scenario).
    Needs ``q1 <= median <= q3`` with ``q1 < q3`` and ``n`` a whole number >= 2. A median of None (or
    all NaN) means it was not printed: the SD is computed and the mean is None.
    """
    func = "mean_sd_from_quartiles"
    _choice(func, "mean_method", mean_method, ("luo", "wan"))
    m = _median(func, median)
    v = _together(func, n=_size(func, n), q1=_number(func, "q1", q1), q3=_number(func, "q3", q3),
                  **({} if m is None else {"median": m}))
    _quantiles_in_order(func, v, ("q1", "median", "q3"))
    _ordered(func, [("q1", v["q1"], "q3", v["q3"], True)])
    n, q1, q3, m = v["n"], v["q1"], v["q3"], v.get("median")
    if m is None:
        mean = None
    elif mean_method == "luo":
        mean = (0.7 + 0.39 / n) * (q1 + q3) / 2.0 + (0.3 - 0.39 / n) * m
    else:
        mean = (q1 + m + q3) / 3.0
    mean_rule = {"luo": "luo2018_s2", "wan": "wan2014_s2"}[mean_method] if m is not None else "no median: none"
    return MeanSD(mean, (q3 - q1) / _eta(n), mean_rule, "wan2014_s2 (iqr/eta(n))")


@_checked
def mean_sd_from_range(n, median, minimum, maximum, mean_method="luo") -> MeanSD:
    """Scenario S1 (median, minimum, maximum).

    Mean: Luo 2018 ``w (a + b)/2 + (1 - w) m`` with ``w = 4 / (4 + n^0.75)``, or, for ``"wan"``, what
    R meta 8.2 computes under that name: Hozo et al. 2005 (BMC Med Res Methodol 5:13, eq. 4)
    ``(a + 2m + b)/4 + (a - 2m + b)/(4n)`` (Wan 2014 drops the second term, negligible for large n).
    SD: Wan 2014 ``(b - a) / xi(n)``. Needs ``minimum <= median <= maximum`` with ``minimum < maximum``
    and ``n`` a whole number >= 2; a median of None (or all NaN): SD only, the mean is None.
    """
    func = "mean_sd_from_range"
    _choice(func, "mean_method", mean_method, ("luo", "wan"))
    m = _median(func, median)
    v = _together(func, n=_size(func, n), minimum=_number(func, "minimum", minimum),
                  maximum=_number(func, "maximum", maximum), **({} if m is None else {"median": m}))
    _quantiles_in_order(func, v, ("minimum", "median", "maximum"))
    _ordered(func, [("minimum", v["minimum"], "maximum", v["maximum"], True)])
    n, a, b, m = v["n"], v["minimum"], v["maximum"], v.get("median")
    if m is None:
        mean = None
    elif mean_method == "luo":
        w = 4.0 / (4.0 + n ** 0.75)
        mean = w * (a + b) / 2.0 + (1.0 - w) * m
    else:
        mean = (a + 2.0 * m + b) / 4.0 + (a - 2.0 * m + b) / (4.0 * n)
    mean_rule = ({"luo": "luo2018_s1", "wan": "hozo2005_s1 (R meta's 'Wan')"}[mean_method] if m is not None
                 else "no median: none")
    return MeanSD(mean, (b - a) / _xi(n), mean_rule, "wan2014_s1 (range/xi(n))")


@_checked
def mean_sd_from_five_numbers(n, median, q1, q3, minimum, maximum, mean_method="luo", sd_method="shi") -> MeanSD:
    """Scenario S3 (minimum, quartiles, median, maximum).

    Mean: Luo 2018 ``w1 (a + b)/2 + w2 (q1 + q3)/2 + (1 - w1 - w2) m`` with ``w1 = 2.2 / (2.2 + n^0.75)``
    and ``w2 = 0.7 - 0.72 / n^0.55``, or Wan 2014 ``(a + 2 q1 + 2 m + 2 q3 + b)/8``.
    SD: Shi 2020 ``(b - a)/theta1(n) + (q3 - q1)/theta2(n)`` with
    ``theta1 = (2 + 0.14 n^0.6) qnorm((n - 0.375)/(n + 0.25))`` and
    ``theta2 = (2 + 2/(0.07 n^0.6)) qnorm((0.75 n - 0.125)/(n + 0.25))``, or Wan 2014
    ``(b - a)/(2 xi(n)) + (q3 - q1)/(2 eta(n))``. Needs ``minimum <= q1 <= median <= q3 <= maximum``
    with ``minimum < maximum`` and ``n`` a whole number >= 2; a median of None (or all NaN): SD only.
    """
    func = "mean_sd_from_five_numbers"
    _choice(func, "mean_method", mean_method, ("luo", "wan"))
    _choice(func, "sd_method", sd_method, ("shi", "wan"))
    m = _median(func, median)
    v = _together(func, n=_size(func, n), q1=_number(func, "q1", q1), q3=_number(func, "q3", q3),
                  minimum=_number(func, "minimum", minimum), maximum=_number(func, "maximum", maximum),
                  **({} if m is None else {"median": m}))
    _quantiles_in_order(func, v, ("minimum", "q1", "median", "q3", "maximum"))
    _ordered(func, [("minimum", v["minimum"], "maximum", v["maximum"], True)])
    n, q1, q3, a, b, m = v["n"], v["q1"], v["q3"], v["minimum"], v["maximum"], v.get("median")
    if m is None:
        mean, mean_rule = None, "no median: none"
    elif mean_method == "luo":
        w1 = 2.2 / (2.2 + n ** 0.75)
        w2 = 0.7 - 0.72 / n ** 0.55
        mean = w1 * (a + b) / 2.0 + w2 * (q1 + q3) / 2.0 + (1.0 - w1 - w2) * m
        mean_rule = "luo2018_s3"
    else:
        mean = (a + 2.0 * q1 + 2.0 * m + 2.0 * q3 + b) / 8.0
        mean_rule = "wan2014_s3"
    if sd_method == "shi":
        theta1 = (2.0 + 0.14 * n ** 0.6) * ndtri((n - 0.375) / (n + 0.25))
        theta2 = (2.0 + 2.0 / (0.07 * n ** 0.6)) * ndtri((0.75 * n - 0.125) / (n + 0.25))
        sd = (b - a) / theta1 + (q3 - q1) / theta2
        sd_rule = "shi2020_s3"
    else:
        sd = (b - a) / (2.0 * _xi(n)) + (q3 - q1) / (2.0 * _eta(n))
        sd_rule = "wan2014_s3"
    return MeanSD(mean, sd, mean_rule, sd_rule)


# ------------------------------------------------------------------------------------------------
# change from baseline, multi-arm trials, test statistics


@_checked
def sd_change(sd_baseline, sd_final, correlation) -> Converted:
    """SD of the change from baseline (Handbook 6.5.2.8):
    ``sqrt(sd_b^2 + sd_f^2 - 2 r sd_b sd_f)``. Both SDs > 0, ``-1 <= correlation <= 1``, and not the
    one case giving 0 (r = 1 with equal SDs)."""
    func = "sd_change"
    r = _number(func, "correlation", correlation, minimum=-1)
    if np.any(r > 1):
        raise InputError(f"{func}: argument 'correlation' must be at most 1 (got {_shown(r, r > 1)}{_where(r > 1)})")
    v = _together(func, sd_baseline=_number(func, "sd_baseline", sd_baseline, positive=True),
                  sd_final=_number(func, "sd_final", sd_final, positive=True), correlation=r)
    sb, sf, r = v["sd_baseline"], v["sd_final"], v["correlation"]
    variance = np.maximum(sb ** 2 + sf ** 2 - 2.0 * r * sb * sf, 0.0)      # >= 0 in exact arithmetic
    if np.any(variance <= 0):
        raise InputError(f"{func}: correlation 1 with equal SDs gives an SD of change of 0{_where(variance <= 0)}")
    return Converted(np.sqrt(variance),
                     "sd_change: sqrt(sd_b^2 + sd_f^2 - 2*r*sd_b*sd_f) (Cochrane Handbook 6.5.2.8)")


@_checked
def correlation_from_sds(sd_baseline, sd_final, sd_change_) -> Converted:
    """Baseline-final correlation from a trial reporting all three SDs (Handbook 6.5.2.8):
    ``r = (sd_b^2 + sd_f^2 - sd_change^2) / (2 sd_b sd_f)``. All three SDs > 0, and consistent: the
    result must lie in [-1, 1] (``|sd_b - sd_f| <= sd_change <= sd_b + sd_f``)."""
    func = "correlation_from_sds"
    v = _together(func, sd_baseline=_number(func, "sd_baseline", sd_baseline, positive=True),
                  sd_final=_number(func, "sd_final", sd_final, positive=True),
                  sd_change_=_number(func, "sd_change_", sd_change_, positive=True))
    sb, sf, sc = v["sd_baseline"], v["sd_final"], v["sd_change_"]
    r = (sb ** 2 + sf ** 2 - sc ** 2) / (2.0 * sb * sf)
    outside = np.abs(r) > 1.0 + 1e-12
    if np.any(outside):
        raise InputError(f"{func}: the three SDs are inconsistent (they give r = {_shown(r, outside)}, outside "
                         f"[-1, 1]; sd_change_ must lie between |sd_baseline - sd_final| and their sum)"
                         f"{_where(outside)}")
    return Converted(np.clip(r, -1.0, 1.0),
                     "correlation_from_sds: (sd_b^2 + sd_f^2 - sd_c^2)/(2*sd_b*sd_f) (Cochrane Handbook 6.5.2.8)")


@_checked
def combine_arms(n1, mean1, sd1, n2, mean2, sd2):
    """Two arms as one (Cochrane Handbook Table 6.5.a): returns ``(n, mean, sd, rule)`` with
    ``n = n1 + n2``, ``mean = (n1 m1 + n2 m2)/n`` and
    ``sd = sqrt(((n1 - 1) s1^2 + (n2 - 1) s2^2 + n1 n2 (m1 - m2)^2 / n) / (n - 1))``.
    Each n a whole number >= 2, each SD > 0."""
    func = "combine_arms"
    v = _together(func, n1=_size(func, n1, "n1"), mean1=_number(func, "mean1", mean1),
                  sd1=_number(func, "sd1", sd1, positive=True), n2=_size(func, n2, "n2"),
                  mean2=_number(func, "mean2", mean2), sd2=_number(func, "sd2", sd2, positive=True))
    n1, m1, s1, n2, m2, s2 = (v[k] for k in ("n1", "mean1", "sd1", "n2", "mean2", "sd2"))
    n = n1 + n2
    mean = (n1 * m1 + n2 * m2) / n
    sd = np.sqrt(((n1 - 1) * s1 ** 2 + (n2 - 1) * s2 ** 2 + n1 * n2 / n * (m1 - m2) ** 2) / (n - 1))
    return n, mean, sd, "combine_arms: Cochrane Handbook Table 6.5.a"


@_checked
def hedges_g_from_t(t, n1, n2) -> tuple:
    """Hedges' g and its variance from a two-sample t statistic (sign: experimental minus control).

    ``d = t sqrt(1/n1 + 1/n2)``, ``g = J(n1 + n2 - 2) d`` (exact J), ``vi = 1/n1 + 1/n2 + g^2/(2N)``
    (metafor's large-sample variance; Borenstein et al. 2009 eq. 4.18-4.24, 7.1). Returns (g, vi, rule).
    ``t`` finite; ``n1``, ``n2`` whole numbers >= 2.
    """
    func = "hedges_g_from_t"
    v = _together(func, t=_number(func, "t", t), n1=_size(func, n1, "n1"), n2=_size(func, n2, "n2"))
    return _g_from_t(v["t"], v["n1"], v["n2"]) + ("hedges_g_from_t: g = J*t*sqrt(1/n1+1/n2), vi = 1/n1+1/n2+g^2/(2N)",)


def _g_from_t(t, n1, n2):
    g = hedges_correction(n1 + n2 - 2) * t * np.sqrt(1.0 / n1 + 1.0 / n2)
    return g, 1.0 / n1 + 1.0 / n2 + g ** 2 / (2.0 * (n1 + n2))


@_checked
def hedges_g_from_f(f, n1, n2, sign) -> tuple:
    """As :func:`hedges_g_from_t` from a two-group F statistic (1 numerator df): ``|t| = sqrt(F)``; the
    F statistic has no sign, so ``sign`` (+1 or -1: which arm had the higher mean) must be given.
    ``f`` >= 0 and finite."""
    func = "hedges_g_from_f"
    v = _together(func, f=_number(func, "f", f, nonnegative=True), sign=_number(func, "sign", sign),
                  n1=_size(func, n1, "n1"), n2=_size(func, n2, "n2"))
    bad = ~np.isin(v["sign"], (-1.0, 1.0))
    if np.any(bad):
        raise InputError(f"{func}: argument 'sign' must be +1 or -1 (got {_shown(v['sign'], bad)}{_where(bad)})")
    g, vi = _g_from_t(v["sign"] * np.sqrt(v["f"]), v["n1"], v["n2"])
    return g, vi, "hedges_g_from_f: t = sign*sqrt(F), then hedges_g_from_t"
