"""Mantel-Haenszel and Peto pooling of 2x2 tables, as metafor 3.8-1's ``rma.mh`` and ``rma.peto``.

Both are common-effect methods that pool the counts, not the study effects:

* Mantel-Haenszel (Mantel & Haenszel 1959). With ``N = n1 + n2`` per table and cells ``a, b`` (events,
  non-events, experimental) and ``c, d`` (control):

  - OR: ``R = sum(a d / N)``, ``S = sum(b c / N)``, estimate ``log(R / S)``; variance of Robins, Breslow
    & Greenland (1986): ``1/2 [sum(P R_i)/R² + sum(P S_i + Q R_i)/(R S) + sum(Q S_i)/S²]`` with
    ``P = (a + d)/N``, ``Q = (b + c)/N``;
  - RR: ``R = sum(a n2 / N)``, ``S = sum(c n1 / N)``, estimate ``log(R / S)``, variance of Greenland &
    Robins (1985) ``sum(n1 n2 (a + c)/N² - a c / N) / (R S)``;
  - RD: ``sum((a n2 - c n1)/N) / sum(n1 n2 / N)`` with the variance of Sato, Greenland & Robins (1989).

  For the OR also the Cochran-Mantel-Haenszel test (with or without its 0.5 correction), the
  Breslow-Day test and Tarone's (1985) correction of it, computed as rma.mh does.
* Peto (Yusuf et al. 1985): ``O - E = a - (a + c) n1 / N``, ``V = (a + c)(b + d) n1 n2 / (N² (N - 1))``;
  log OR ``sum(O - E) / sum(V)`` with variance ``1 / sum(V)``; Q is ``sum((O - E)²/V) - sum(O - E)²/sum V``.

* RevMan 5's random-effects Mantel-Haenszel (method ``MH_DL``; no metafor function): the DerSimonian-Laird
  tau² from the MH heterogeneity Q, then inverse-variance weights ``1/(v + tau²)`` (Deeks & Higgins 2010,
  RevMan 5 statistical algorithms; R meta's ``metabin(method="MH", method.tau="DL", Q.Cochrane=TRUE)``).

The heterogeneity statistics follow metafor: for MH, ``Q = sum w (y - estimate)²`` over the study effects
``y, v`` (escalc with the first ``add``/``to``/``drop00``, ``w = 1/v``), df = (number of tables with a study
effect) - 1, ``I² = (Q - df)/Q``, ``H² = Q/df``. The pooled sums use the counts as they are unless the second
``add``/``to``/``drop00`` say otherwise (options ``mh_sums_*``). Study weights (in %) are metafor's
``weights()``: ``b c / N`` (OR), ``c n1 / N`` (RR), ``n1 n2 / N`` (RD), ``V`` (Peto).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.special import ndtri

from pfps_meta.conventions import COUNT_METHODS, Settings, unused_count_options
from pfps_meta import distributions
from pfps_meta.errors import InputError
from pfps_meta.formatting import format_number, format_p, json_ready, renders
from pfps_meta.inputs.load import numeric_column, require_columns
from pfps_meta.models.univariate import COUNT_COLUMNS, MetaResult, check_count_method, study_frame_builder

# statistics beyond MetaResult's JSON_FIELDS, in to_dict() under "count_model"
EXTRA_FIELDS = ("k_yi", "cmh", "cmh_p", "cochran", "cochran_p", "breslow_day", "breslow_day_p",
                "tarone", "tarone_p", "k_pos")
RANDOM_NOTE = ("RevMan 5's random-effects Mantel-Haenszel: DerSimonian-Laird tau² from the Mantel-Haenszel Q, "
               "inverse-variance weights; no tau² CI, no prediction interval and no likelihood (as RevMan 5)")
COMMON_EFFECT_NOTE = ("{label} is a common-effect model: tau² = 0, so there is no tau² CI and no prediction "
                      "interval")


# ------------------------------------------------------------------------------------------ the cells

def corrected_cells(a, b, c, d, add=0.5, to="only0", drop00=True):
    """The cells after metafor's zero-cell handling (escalc / rma.mh ``add``, ``to``, ``drop00``).

    ``drop00``: tables with no events in both arms (or only events) become NaN. ``to``: "all" adds
    ``add`` to every cell, "only0" to the cells of tables with a zero cell, "if0all" to every cell when
    any table has a zero cell, "none" to none.
    """
    a, b, c, d = (np.array(x, dtype=float) for x in (a, b, c, d))
    if drop00:
        both = ((a == 0) & (c == 0)) | ((b == 0) & (d == 0))
        for x in (a, b, c, d):
            x[both] = np.nan
    zero = ((a == 0) | (b == 0) | (c == 0) | (d == 0))       # NaN compares False
    if to == "all":
        target = np.ones(a.shape, dtype=bool)
    elif to == "only0":
        target = zero
    elif to == "if0all":
        target = np.full(a.shape, bool(zero.any()))
    elif to == "none":
        target = np.zeros(a.shape, dtype=bool)
    else:
        raise InputError(f"to: '{to}' is not one of all, only0, if0all, none")
    step = np.where(target, float(add), 0.0)
    return a + step, b + step, c + step, d + step


def study_effects(a, b, c, d, measure):
    """Study effects and variances from (corrected) cells, as metafor ``escalc``: log RR
    (``1/a - 1/n1 + 1/c - 1/n2``), log OR (``1/a + 1/b + 1/c + 1/d``), RD (large-sample
    ``p1(1-p1)/n1 + p2(1-p2)/n2``) or ``"PETO"`` (``(O - E)/V``, ``1/V``). Undefined values are NaN (both
    of a pair, as metafor drops a pair with either missing)."""
    n1, n2 = a + b, c + d
    with np.errstate(divide="ignore", invalid="ignore"):
        p1, p2 = a / n1, c / n2
        if measure == "RR":
            yi, vi = np.log(p1) - np.log(p2), 1 / a - 1 / n1 + 1 / c - 1 / n2
        elif measure == "OR":
            yi, vi = np.log(p1 / (1 - p1)) - np.log(p2 / (1 - p2)), 1 / a + 1 / b + 1 / c + 1 / d
        elif measure == "RD":
            yi, vi = p1 - p2, p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2
        elif measure == "PETO":
            expected, variance = _peto_parts(a, b, c, d)
            yi, vi = (a - expected) / variance, 1 / variance
        else:
            raise InputError(f"measure: study effects of 2x2 tables are OR, RR, RD or PETO (got '{measure}')")
    bad = ~(np.isfinite(yi) & np.isfinite(vi))
    yi, vi = np.where(bad, np.nan, yi), np.where(bad, np.nan, vi)
    return yi, vi


def _peto_parts(a, b, c, d):
    """Expected events ``E = (a + c) n1 / N`` and hypergeometric variance ``V`` of each table."""
    n1, n2 = a + b, c + d
    total = n1 + n2
    return (a + c) * n1 / total, (a + c) * (b + d) * (n1 / total) * (n2 / total) / (total - 1)


# ------------------------------------------------------------------------------------------ the pooled sums

def mh_estimate(a, b, c, d, measure):
    """(estimate, se) of the MH log OR / log RR / RD from the cells of the tables in the sums.
    InputError when it is not estimable (e.g. no events in one arm of every table)."""
    n1, n2 = a + b, c + d
    total = n1 + n2
    if measure == "OR":
        p, q, r, s = (a + d) / total, (b + c) / total, a * d / total, b * c / total
        big_r, big_s = r.sum(), s.sum()
        if big_r == 0 or big_s == 0:
            raise InputError("the Mantel-Haenszel odds ratio is not estimable: "
                             f"{'sum(a d / N)' if big_r == 0 else 'sum(b c / N)'} is 0 over the tables")
        var = 0.5 * ((p * r).sum() / big_r ** 2 + (p * s + q * r).sum() / (big_r * big_s) + (q * s).sum() / big_s ** 2)
        return math.log(big_r / big_s), math.sqrt(var)
    if measure == "RR":
        if a.sum() == 0 or c.sum() == 0:
            arm = "experimental" if a.sum() == 0 else "control"
            raise InputError(f"the Mantel-Haenszel risk ratio is not estimable: no events in the {arm} arm of any table")
        big_r, big_s = (a * n2 / total).sum(), (c * n1 / total).sum()
        var = (n1 / total * (n2 / total) * (a + c) - a / total * c).sum() / (big_r * big_s)
        return math.log(big_r / big_s), math.sqrt(var)
    weight = (n1 * (n2 / total)).sum()
    beta = (a * (n2 / total) - c * (n1 / total)).sum() / weight
    part = (c * (n1 / total) ** 2 - a * (n2 / total) ** 2 + (n1 / total) * (n2 / total) * (n2 - n1) / 2).sum()
    var = (beta * part + (a * (n2 - c) / total + c * (n1 - a) / total).sum() / 2) / weight ** 2
    return beta, math.sqrt(var)


def mh_odds_ratio_tests(a, b, c, d, odds_ratio, correct=True):
    """rma.mh's tests for the OR: Cochran's and the Cochran-Mantel-Haenszel statistic (1 df; the
    ``- 0.5`` continuity correction when ``correct``), the Breslow-Day statistic and Tarone's (1985)
    version of it (df = tables with a positive fitted count and both outcomes, minus 1)."""
    n1, n2 = a + b, c + d
    total = n1 + n2
    xt, yt = a + c, b + d
    out = dict.fromkeys(EXTRA_FIELDS[1:], math.nan)
    if xt.sum() > 0 and yt.sum() > 0:
        deviation = (abs((a - n1 / total * xt).sum()) - (0.5 if correct else 0.0)) ** 2
        base = n1 / total * (n2 / total) * xt
        out["cochran"] = deviation / (base * (yt / total)).sum()
        out["cmh"] = deviation / (base * (yt / (total - 1))).sum()
        out["cochran_p"], out["cmh_p"] = distributions.chi2_sf(out["cochran"], 1), distributions.chi2_sf(out["cmh"], 1)
    if odds_ratio == 1:
        fitted = n1 / total * xt
    else:
        big_a = odds_ratio * (n1 + xt) + (n2 - xt)
        fitted = (big_a - np.sqrt(big_a ** 2 - 4 * n1 * xt * odds_ratio * (odds_ratio - 1))) / (2 * (odds_ratio - 1))
    keep = (fitted > 0) & (xt > 0) & (yt > 0)
    out["k_pos"] = int(keep.sum())
    f11 = fitted[keep]
    cells = (f11, n1[keep] - f11, xt[keep] - f11, f11 - n1[keep] - xt[keep] + total[keep])
    precision = 1.0 / sum(1.0 / x for x in cells)
    residual = a[keep] - f11
    out["breslow_day"] = max(0.0, float((residual ** 2 / precision).sum()))
    out["tarone"] = max(0.0, out["breslow_day"] - float(residual.sum() ** 2 / precision.sum()))
    if out["k_pos"] > 1:
        out["breslow_day_p"] = distributions.chi2_sf(out["breslow_day"], out["k_pos"] - 1)
        out["tarone_p"] = distributions.chi2_sf(out["tarone"], out["k_pos"] - 1)
    return out


def table_weights(a, b, c, d, method, measure):
    """metafor ``weights()`` of an rma.mh / rma.peto fit, in % (NaN for a table left out of the sums)."""
    n1, n2 = a + b, c + d
    total = n1 + n2
    if method == "PETO":
        raw = _peto_parts(a, b, c, d)[1]
    else:
        raw = {"OR": b / total * c, "RR": c / total * n1, "RD": n1 / total * n2}[measure]
    return raw / np.nansum(raw) * 100


# ------------------------------------------------------------------------------------------ the fit

def fit_counts(events_exp, n_exp, events_ctrl, n_ctrl, measure="OR", method="MH", settings: Settings | None = None):
    """The statistics of ``rma.mh(measure=...)`` (``method="MH"``) or ``rma.peto()`` (``"PETO"``) from
    arrays of counts, with the corrections, level and CMH correction of ``settings``.

    Returns (stats, yi, vi, weights): ``stats`` holds MetaResult's JSON fields plus ``EXTRA_FIELDS``;
    ``yi, vi`` are the study effects (NaN where metafor has none), ``weights`` metafor's weights in %.
    """
    settings = settings or Settings(method=method)
    check_count_method(method, measure)
    a, n1, c, n2 = _count_arrays(events_exp=events_exp, n_exp=n_exp, events_ctrl=events_ctrl, n_ctrl=n_ctrl)
    b, d = n1 - a, n2 - c
    effect_measure = "PETO" if method == "PETO" else measure
    yi, vi = study_effects(*corrected_cells(a, b, c, d, settings.mh_add, settings.mh_to, settings.mh_drop00),
                           effect_measure)
    sums = corrected_cells(a, b, c, d, 0.0, "none", settings.mh_sums_drop00)
    in_sums = ~np.isnan(sums[0])
    sums = corrected_cells(*(x[in_sums] for x in sums), settings.mh_sums_add, settings.mh_sums_to, False)
    if not in_sums.any():
        raise InputError("no table is left to pool (every table has no events, or only events, in both arms)")
    weights = np.full(a.shape, np.nan)
    weights[in_sums] = table_weights(*sums, method, measure)
    if method == "PETO":
        estimate, se, q, extra = _peto_fit(*sums, yi, vi)
    else:
        estimate, se = mh_estimate(*sums, measure)
        q, extra = None, {}
        if measure == "OR" and method == "MH":
            extra = mh_odds_ratio_tests(*sums, math.exp(estimate), settings.cmh_correct)
    stats = _model_stats(estimate, se, yi, vi, q, int(in_sums.sum()), settings.level,
                         extra.get("k_pos") if method == "PETO" else None)
    stats.update(extra)
    if method == "MH_DL":
        weights = revman_random_effects(stats, yi, vi, settings.level)
    return stats, yi, vi, weights


def _count_arrays(**arrays):
    """The count arrays of :func:`fit_counts` as floats: one dimension, one length, finite, 0 or more,
    events within group sizes; InputError naming the argument otherwise."""
    out, length = [], None
    for name, values in arrays.items():
        try:
            x = np.asarray(values, dtype=float)
        except (TypeError, ValueError):
            raise InputError(f"{name}: numbers are needed (got {values!r})") from None
        if x.ndim != 1 or (length is not None and len(x) != length):
            raise InputError(f"{name}: one count per table is needed, {length or 'a 1-D array'} (got shape {x.shape})")
        if not (np.isfinite(x).all() and (x >= 0).all()):
            raise InputError(f"{name}: counts must be finite and 0 or more (got {values!r})")
        out.append(x)
        length = len(x)
    for events, n, name in ((out[0], out[1], "events_exp"), (out[2], out[3], "events_ctrl")):
        if (events > n).any():
            raise InputError(f"{name}: more events than participants in table {int(np.argmax(events > n)) + 1}")
    return out


def revman_random_effects(stats, yi, vi, level):
    """RevMan 5's random-effects Mantel-Haenszel (Deeks & Higgins 2010, RevMan 5 statistical algorithms),
    in place on ``stats``: DerSimonian-Laird ``tau² = max(0, (Q_MH - df) / (sum w - sum w² / sum w))`` with
    ``Q_MH`` the heterogeneity Q around the MH estimate and ``w = 1/v`` the inverse-variance weights of the
    study effects, then the inverse-variance estimate with weights ``1/(v + tau²)`` and its Wald CI. Q, I²,
    H² stay those of the MH fit (RevMan's; R meta's ``Q.Cochrane=TRUE``); there is no likelihood, so the fit
    statistics are NaN. Returns
    the study weights in % (NaN for a table without a study effect)."""
    has = ~np.isnan(yi)
    y, v = yi[has], vi[has]
    w = 1.0 / v
    df = stats["q_df"]
    tau2 = max(0.0, (stats["q"] - df) / (w.sum() - (w ** 2).sum() / w.sum())) if df > 0 else 0.0
    w_re = 1.0 / (v + tau2)
    estimate, se = float((w_re * y).sum() / w_re.sum()), math.sqrt(1.0 / w_re.sum())
    z = ndtri(0.5 + level / 2)
    stats.update(estimate=estimate, se=se, statistic=estimate / se, p=2 * distributions.norm_sf(abs(estimate / se)),
                 ci_low=estimate - z * se, ci_high=estimate + z * se, tau2=tau2, tau=math.sqrt(tau2),
                 **dict.fromkeys(("loglik", "deviance", "aic", "bic", "aicc"), math.nan))
    weights = np.full(yi.shape, np.nan)
    weights[has] = w_re / w_re.sum() * 100
    return weights


def _peto_fit(a, b, c, d, yi, vi):
    """rma.peto's estimate, se, Q and the number of tables with a positive variance."""
    expected, variance = _peto_parts(a, b, c, d)
    total_v = variance.sum()
    if not total_v > 0:
        raise InputError("Peto's method cannot be used: one of the two outcomes never occurred in any table")
    deviation = a - expected
    positive = variance > 0
    q = max(0.0, float((deviation[positive] ** 2 / variance[positive]).sum() - deviation.sum() ** 2 / total_v))
    return float(deviation.sum() / total_v), math.sqrt(1 / total_v), q, {"k_pos": int(positive.sum())}


def _model_stats(estimate, se, yi, vi, q, k, level, k_pos=None):
    """The pooled statistics in MetaResult's fields: Wald z test and CI; Q (around the pooled estimate
    for MH, Peto's own Q when ``q`` is given), I², H² as rma.mh / rma.peto; ML fit statistics."""
    has = ~np.isnan(yi)
    y, v = yi[has], vi[has]
    k_yi = int(has.sum())
    rss = float((((y - estimate) ** 2) / v).sum())
    if q is None:
        q = max(0.0, rss)
    z = ndtri(0.5 + level / 2)
    stat = estimate / se
    nan = math.nan
    stats = {"k": k, "estimate": estimate, "se": se, "statistic": stat, "df": nan, "p": 2 * distributions.norm_sf(abs(stat)),
             "ci_low": estimate - z * se, "ci_high": estimate + z * se, "tau2": 0.0, "tau": 0.0,
             "q_df": float(max(k_yi - 1, 0)), "pi_low": nan, "pi_high": nan, "pi_df": nan,
             "converged": True, "iterations": 0, "tau2_se": None, "k_yi": k_yi}
    for name in ("estimate", "se", "statistic", "p", "ci_low", "ci_high"):
        stats[name] = float(stats[name])       # plain floats, as every other fit's stats (repr, Decimal, JSON)
    for name in ("tau2", "tau", "i2", "h2"):
        stats[f"{name}_ci_low"] = stats[f"{name}_ci_high"] = nan
    # MH: Q from k_yi study effects; Peto: its own Q, tested when more than one table has V > 0
    tested = k_yi > 1 if k_pos is None else k_pos > 1
    if k_pos is None and k_yi <= 1:
        q = 0.0
    if tested:
        stats.update(q=q, q_p=distributions.chi2_sf(q, k_yi - 1), i2=max(0.0, 100 * (q - (k_yi - 1)) / q) if q > 0 else 0.0,
                     h2=q / (k_yi - 1))
    else:
        stats.update(q=q, q_p=1.0, i2=0.0, h2=1.0)
    loglik = -0.5 * k_yi * math.log(2 * math.pi) - 0.5 * float(np.log(v).sum()) - 0.5 * rss
    m = max(k_yi, 3)
    stats.update(loglik=loglik, deviance=rss, aic=-2 * loglik + 2, bic=-2 * loglik + math.log(k_yi),
                 aicc=-2 * loglik + 2 * m / (m - 2))
    return stats


# ------------------------------------------------------------------------------------------ the result

class CountModelResult(MetaResult):
    """A Mantel-Haenszel or Peto fit: a :class:`MetaResult` (studies, stats, to_frame, plots work as for
    any fit) whose ``stats`` also hold ``k_yi`` (tables with a study effect, Q's df + 1) and, for the MH
    odds ratio, the CMH, Cochran, Breslow-Day and Tarone tests (``EXTRA_FIELDS``)."""

    def to_dict(self) -> dict:
        out = super().to_dict()
        out["count_model"] = {name: json_ready(self.stats.get(name)) for name in EXTRA_FIELDS}
        return out


def count_columns(table):
    """The four count columns of ``table`` as floats, checked (whole numbers, events within group sizes);
    InputError naming the column (and file, line) when one is missing or bad."""
    require_columns(table, ("study",) + COUNT_COLUMNS, "Mantel-Haenszel and Peto pooling (they need the "
                    "counts of each 2x2 table, not study effects yi, vi)")
    values = {name: numeric_column(table, name, integer=True, minimum=0) for name in COUNT_COLUMNS}
    for events, n in (("events_exp", "n_exp"), ("events_ctrl", "n_ctrl")):
        bad = np.flatnonzero(values[events] > values[n])
        if bad.size:
            raise InputError(f"{values[events][bad[0]]:g} events but only {values[n][bad[0]]:g} participants "
                             f"(study '{table['study'].iloc[bad[0]]}')", file=table.attrs.get("source"),
                             row=int(bad[0]) + 1, column=events)
    return values


def pool_counts(table: pd.DataFrame, measure: str, settings: Settings, notes=()) -> CountModelResult:
    """Fit ``settings.method`` ("MH" or "PETO") to a table of 2x2 counts (``study, events_exp, n_exp,
    events_ctrl, n_ctrl``); the result's study rows carry metafor's study effects and weights."""
    source = table.attrs.get("source")
    method = settings.method
    check_count_method(method, measure, source)
    counts = count_columns(table)
    if len(table) == 0:
        raise InputError("table: no study to pool", file=source)
    try:
        stats, yi, vi, weights = fit_counts(*(counts[name] for name in COUNT_COLUMNS), measure, method, settings)
    except InputError as exc:
        raise InputError(exc.reason, file=source) from None
    label = COUNT_METHODS[method].label
    all_notes = list(notes) + list(table.attrs.get("notes", []))
    all_notes.append(RANDOM_NOTE if method == "MH_DL" else COMMON_EFFECT_NOTE.format(label=label))
    if settings.ci_method == "hksj":
        all_notes.append(f"ci_method hksj does not apply to {label}: the CI and p-value are Wald (normal), as "
                         f"{_TOOL[method]}")
    unused = unused_count_options(settings, measure)
    if unused:
        all_notes.append(unused)
    dropped = [str(s) for s, y in zip(table["study"], yi) if np.isnan(y)]
    if dropped:
        all_notes.append(f"no study effect for {', '.join(dropped)} (no events, or only events, in both arms, or "
                         "an undefined effect): left out of Q, I², H²" + ("" if settings.mh_sums_drop00 else
                         "; kept in the pooled sums"))
    z = ndtri(0.5 + settings.level / 2)
    frame = table.drop(columns=[col for col in ("yi", "vi") if col in table.columns])
    build = study_frame_builder(frame, yi, vi, z, weights)
    return CountModelResult(stats=stats, settings=settings, measure=measure, source=source, notes=all_notes,
                            build_studies=build)


def refit(result: CountModelResult, keep) -> CountModelResult:
    """``result``'s method and settings on a subset of its tables (``keep``: a boolean mask or positions over
    ``result.studies``), e.g. for a leave-one-out (metafor ``leave1out.rma.mh`` refits the same way)."""
    studies = result.studies
    mask = np.zeros(len(studies), dtype=bool)
    keep = np.asarray(keep)
    if keep.dtype == bool:
        if keep.shape != mask.shape:
            raise InputError(f"keep: {len(studies)} true/false values are needed (one per study), got {keep.shape}")
        mask = keep
    elif keep.size:
        if keep.dtype.kind not in "iu" or keep.min() < -len(studies) or keep.max() >= len(studies):
            raise InputError(f"keep: positions 0 to {len(studies) - 1} (or a true/false value per study) are needed, "
                             f"got {keep.tolist()!r}")
        mask[keep] = True
    if not mask.any():
        raise InputError("keep: no study is left to pool")
    table = studies.loc[mask, ["study", *COUNT_COLUMNS]].reset_index(drop=True)
    table.attrs["source"] = result.source
    return pool_counts(table, result.measure, result.settings)


# ------------------------------------------------------------------------------------------ printing

_TOOL = {"MH": "metafor's rma.mh", "PETO": "metafor's rma.peto", "MH_DL": "RevMan 5"}

@renders("text", "CountModelResult")
def count_model_text(result, digits: int = 4) -> str:
    """The fit printed as metafor's ``print.rma.mh`` / ``print.rma.peto``, then the study rows."""
    from pfps_meta.effects import measures

    s = result.stats
    f = lambda x: format_number(x, digits)  # noqa: E731
    label = COUNT_METHODS[result.method].label
    name = "Peto's odds ratio" if result.method == "PETO" else f"{label}, {result.measure}"
    pct = f"{100 * result.level:g}%"
    if result.method == "MH_DL":
        lines = [f"Random-Effects Model (k = {s['k']}; Mantel-Haenszel, {result.measure}; tau^2: DerSimonian-"
                 "Laird on the Mantel-Haenszel Q, as RevMan 5)", "",
                 f"tau^2 (estimated amount of total heterogeneity): {f(s['tau2'])}",
                 f"tau (square root of estimated tau^2 value):      {f(s['tau'])}"]
    else:
        lines = [f"Fixed-Effects Model (k = {s['k']}; {name})"]
    lines += ["",
             f"I^2 (total heterogeneity / total variability):  {s['i2']:.2f}%",
             f"H^2 (total variability / sampling variability): {s['h2']:.2f}", "",
             "Test for Heterogeneity:",
             f"Q(df = {int(s['q_df'])}) = {f(s['q'])}, p-val {format_p(s['q_p'])}", ""]
    ratio = measures.get(result.measure).ratio
    lines.append("Model Results (log scale):" if ratio else "Model Results:")
    lines.append(f"{'estimate':>10} {'se':>9} {'zval':>9} {'pval':>8} {'ci.lb':>9} {'ci.ub':>9}")
    lines.append(f"{f(s['estimate']):>10} {f(s['se']):>9} {f(s['statistic']):>9} {format_p(s['p'], bare=True):>8} "
                 f"{f(s['ci_low']):>9} {f(s['ci_high']):>9}")
    if ratio:
        lines += ["", f"Model Results ({result.measure} scale, {pct} CI):",
                  f"{'estimate':>10} {'ci.lb':>9} {'ci.ub':>9}",
                  f"{f(math.exp(s['estimate'])):>10} {f(math.exp(s['ci_low'])):>9} {f(math.exp(s['ci_high'])):>9}"]
    if result.method == "MH" and result.measure == "OR":
        lines.append("")
        lines.append("Cochran-Mantel-Haenszel Test:    " + (
            f"CMH = {f(s['cmh'])}, df = 1, p-val {format_p(s['cmh_p'])}" if math.isfinite(s["cmh"])
            else "test value not computable for these data"))
        lines.append("Tarone's Test for Heterogeneity: " + (
            f"X^2 = {f(s['tarone'])}, df = {s['k_pos'] - 1}, p-val {format_p(s['tarone_p'])}"
            if math.isfinite(s["tarone"]) else "test value not computable for these data"))
    lines.append("")
    lines += [f"Note: {note}" for note in result.notes]
    scale = " (yi, se on the log scale)" if ratio else ""
    lines += ["", f"Studies{scale}; weight in % ({'inverse variance, 1/(v + tau^2)' if result.method == 'MH_DL' else 'of the pooled sums, metafor weights()'}):"]
    table = result.studies[["study", "yi", "se", "ci_low", "ci_high", "weight"]]
    lines.append(table.to_string(index=False, float_format=lambda x: f"{x:.{digits}f}", na_rep="NA"))
    return "\n".join(lines)


@renders("html", "CountModelResult")
def count_model_html(result) -> str:
    """The text summary in a <pre> block, for notebooks."""
    import html

    return f"<pre>{html.escape(count_model_text(result))}</pre>"
