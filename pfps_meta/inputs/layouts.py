"""Input layouts: the shapes a table of studies may have, one registry row each.

A row (:class:`Layout`) says what a layout is: its name and what it is in words, its columns, what each
column may be replaced with (per arm an SD by the SE or the CI of the mean; a mean and an SD by a median
with quartiles and/or range), which measures of :mod:`pfps_meta.effects.measures` are computed from it
(None: effect-level, the measure is only carried along), which columns some measures do not need (SMCR
standardises by sd_t1 and needs no sd_t2), and its rule: the function that checks a table's values, does
the conversions (with the analysis's :class:`~pfps_meta.conventions.Settings`) and returns the columns to
add. :func:`pfps_meta.inputs.validate.study_table` detects the layout from these rows and calls its rule;
nothing else names layouts.

Adding a layout is a rule function here plus one row in :data:`LAYOUTS` (and, when it should be pooled,
``pooled = True`` with a rule returning ``yi, vi``).

Conversions of what papers print instead of a mean and SD (:func:`arm_statistics`), per row, in this
order: ``mean`` with ``sd``, or with ``se`` (SD = SE sqrt(n)), or with ``ci_low, ci_high`` (the CI of the
mean at ``settings.input_level``, t with n - 1 df; Cochrane Handbook 6.5.2.2), or with quartiles and/or a
range (SD only); else a ``median`` with ``q1, q3`` and/or ``min, max`` (mean by ``settings.mean_method``,
SD by ``settings.sd_method``: Luo et al. 2018, Wan et al. 2014, Shi et al. 2020, as R meta's
``metacont``).
"""

from __future__ import annotations

from contextlib import contextmanager

import math
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from pfps_meta.conventions import Settings
from pfps_meta.effects import measures
from pfps_meta.effects import sizes as effects
from pfps_meta.errors import InputError, InputWarning
from pfps_meta.inputs import checks
from pfps_meta.inputs.load import Columns, clean_numbers, place, refuse_duplicates, text_column, where_in_table

# The fields one arm may give (suffixed _exp / _ctrl in the one-row-per-study layout).
ARM_FIELDS = ("n", "mean", "sd", "se", "ci_low", "ci_high", "median", "q1", "q3", "min", "max")
# Alternatives, in the order arm_statistics tries them: each a group of fields that together stand in.
SD_REPLACEMENTS = (("se",), ("ci_low", "ci_high"), ("median", "q1", "q3"), ("median", "min", "max"),
                   ("q1", "q3"), ("min", "max"))
MEAN_REPLACEMENTS = (("median", "q1", "q3"), ("median", "min", "max"))
# How far the two arms of a CI may differ (times its half-width) before it is called asymmetric: the
# tolerance of effects.from_confidence_interval, plus the rounding of the printed numbers.
ASYMMETRY_TOLERANCE = 0.1


class TranscriptionWarning(InputWarning):
    """Typed values that contradict each other (an SD and an SE that disagree beyond rounding, a CI that
    sits asymmetrically around its mean): the table is read where it is loaded, and warned about there."""


@dataclass(frozen=True)
class Checked:
    """What a layout's rule returns: columns to set on the table, and ``yi, vi`` when it is pooled."""

    columns: dict
    yi: np.ndarray | None = None
    vi: np.ndarray | None = None


@dataclass(frozen=True)
class Layout:
    name: str
    label: str                      # e.g. "arm-level data"
    columns: tuple                  # the columns, as the README lists them
    measures: tuple | None          # measure names computed from it; None: effect-level (measure optional)
    rule: Callable                  # rule(columns, measure_row, settings) -> Checked (load.Columns)
    replacements: dict = field(default_factory=dict)   # column -> groups of columns that may stand in
    not_needed: dict = field(default_factory=dict)     # column -> measures that do not need it
    may_be_empty: tuple = ()        # columns whose cells may be empty (a setting fills them)
    one_row_per: str = "study"      # "study", or "arm" (several rows per study)
    pooled: bool = True             # effect_table gives yi, vi from it

    def required(self, measure=None) -> tuple:
        return tuple(c for c in self.columns if measure not in self.not_needed.get(c, ()))

    def satisfied(self, column, present) -> bool:
        """A column is there, or the first column of one of its replacement groups is (the rest of the
        group is checked row by row, so half a pair is named where it is)."""
        return column in present or any(group[0] in present for group in self.replacements.get(column, ()))

    def missing(self, present, measure=None) -> list:
        out = []
        for column in self.required(measure):
            if not self.satisfied(column, present):
                alternatives = [g[0] for g in self.replacements.get(column, ()) if g[0] != column]
                shown = sorted(set(alternatives), key=alternatives.index)
                out.append(column if not shown or column.startswith("sd") else f"{column} (or {', '.join(shown)})")
        return out

    def present(self, present, measure=None) -> bool:
        return not self.missing(present, measure)

    def needed_in_row(self, measure=None) -> list:
        """Groups of columns a row needs for its effect; within a group any one non-empty cell will do."""
        return [(c, *[g[0] for g in self.replacements.get(c, ())]) for c in self.required(measure)
                if c not in self.may_be_empty and c != "study" and c != "treatment"]


def _fmt(value):
    return f"{value:g}"


def _optional(cells, column, **limits):
    """A numeric column that may be absent (all NaN) or have empty cells."""
    if column not in cells:
        return np.full(cells.length, np.nan)
    return cells.numeric(column, allow_missing=True, **limits)


def _cells(df) -> Columns:
    """``df``'s columns read once (:class:`~pfps_meta.inputs.load.Columns`); ``df`` may already be that."""
    return df if isinstance(df, Columns) else Columns(df)


def _rounding(cell) -> float:
    """Half a unit of the last printed decimal of ``cell`` (0.05 for "2.3"); 0 for a number not typed."""
    if cell is None or (isinstance(cell, float) and math.isnan(cell)):
        return 0.0
    return 0.5 * 10.0 ** -checks.decimals(str(cell).strip())


def asymmetry_warning(where, label, centre="estimate", approximate="SE"):
    """The one warning for a CI that is asymmetric around its centre (effect-level or an arm's mean)."""
    warnings.warn(f"{place(where)} ('{label}'): the CI is asymmetric around the {centre} on the analysis "
                  f"scale; the {approximate} derived from its width is approximate (was it computed on another "
                  "scale, e.g. a ratio not on the log scale, or mistyped?)", TranscriptionWarning, stacklevel=3)


def _from_quantiles(conversions, values, has, n, i, settings):
    """Mean and SD of row i from its median with quartiles and/or range (scenario S1, S2 or S3)."""
    median = values["median"][i]
    if has["q1"] and has["min"]:
        return conversions.mean_sd_from_five_numbers(n, median, values["q1"][i], values["q3"][i], values["min"][i],
                                                     values["max"][i], mean_method=settings.mean_method,
                                                     sd_method=settings.sd_method)
    if has["q1"]:
        return conversions.mean_sd_from_quartiles(n, median, values["q1"][i], values["q3"][i],
                                                  mean_method=settings.mean_method)
    return conversions.mean_sd_from_range(n, median, values["min"][i], values["max"][i],
                                          mean_method=settings.mean_method)


def _arm_label(df, side, i):
    label = df["study"].iloc[i] if "study" in df.columns else (df["trial_id"].iloc[i] if "trial_id" in df.columns
                                                                else i + 1)
    arm = side or (df["treatment"].iloc[i] if "treatment" in df.columns else
                   df["arm"].iloc[i] if "arm" in df.columns else "")
    return f"{label}, {arm}" if arm else str(label)


@contextmanager
def _located(column, where):
    """A conversion's refusal (which names only its argument) gets the file, line and column of the cell."""
    try:
        yield
    except InputError as exc:
        if exc.file or exc.line is not None or exc.row is not None:
            raise
        raise InputError(exc.reason, column=column, **where) from None


def arm_statistics(df: pd.DataFrame | Columns, side: str, settings: Settings):
    """n, mean and SD of one arm (``side`` "exp" or "ctrl"; "" for unsuffixed columns, as in the curated
    ``outcomes.csv`` and the one-row-per-arm layout) for every row, from whatever the row gives (the
    order is in the module docstring; an ``sd`` given beside a median is used as printed).

    Returns ``(n, mean, sd, rules)`` with ``rules[i]`` empty where the row was used as printed. Refuses,
    naming file, line and column: a median without quartiles or range, half a pair (q1 without q3, ci_low
    without ci_high), values out of order (min <= q1 <= median <= q3 <= max), a mean outside its CI, and
    a row with neither a mean nor a median. Warns (:class:`TranscriptionWarning`, with the line): an SD
    and an SE that disagree beyond the rounding of the printed digits (SE sqrt(n) and SD, each +- half a
    unit of its last decimal, do not overlap), and a CI of the mean asymmetric around it by more than
    0.1 of its half-width beyond rounding (the tolerance effect-level CIs get). ``df`` may be the table's
    :class:`~pfps_meta.inputs.load.Columns` (each column then read once for both arms).
    """
    cells = _cells(df)
    df = cells.df
    col = _ARM_COLUMNS[side] if side in _ARM_COLUMNS else {f: f"{f}_{side}" if side else f for f in ARM_FIELDS}
    n = cells.numeric(col["n"], integer=True, minimum=2)
    plain = _plain_arm(cells, col)
    if plain is not None:               # every row a mean and an SD, nothing else to read or check
        return n, plain[0], plain[1], [""] * cells.length
    values = _arm_values(cells, col)
    absent = values.pop("absent")
    from pfps_meta.inputs import conversions

    nowhere = np.zeros(cells.length, dtype=bool)
    mean, sd = values["mean"].copy(), values["sd"].copy()
    rules = [""] * cells.length
    given = {f: (nowhere if values[f] is absent else ~np.isnan(values[f])) for f in values}
    # a row with a mean and an SD and nothing that asks for a check (no SE, no CI, no half pair) passes the
    # loop below untouched: skip it without building its location (the loop is the cost of a single fit);
    # an absent column changes nothing in that test, so it is left out of it
    plain = given["mean"] & given["sd"]
    for f in ("se", "ci_low", "ci_high"):
        if values[f] is not absent:
            plain &= ~given[f]
    for first, second in (("q1", "q3"), ("min", "max")):
        if values[first] is not absent or values[second] is not absent:
            plain &= given[first] == given[second]
    for i in np.flatnonzero(~plain).tolist():
        where = where_in_table(df, i)
        has = {f: not np.isnan(values[f][i]) for f in values}
        _check_pairs(col, has, where)
        if has["mean"]:
            # the warnings are issued here, so that their stacklevel names the caller of arm_statistics
            if has["ci_low"] and _mean_ci_asymmetric(df, col, i, mean[i], values, where):
                asymmetry_warning(where, _arm_label(df, side, i), centre="mean", approximate="SD")
            if has["sd"] and has["se"]:
                _check_sd_against_se(df, col, i, n[i], values, where, side)
            if has["sd"]:
                continue
            converted = _sd_beside_mean(conversions, col, i, n[i], values, has, where, settings)
            sd[i] = float(converted.value)
            rules[i] = converted.rule
            continue
        mean[i], sd[i], rules[i] = _from_median(conversions, df, col, i, n[i], sd[i], values, has, where, settings)
    return n, mean, sd, rules


_ARM_COLUMNS = {side: {f: f"{f}_{side}" if side else f for f in ARM_FIELDS} for side in ("exp", "ctrl", "")}


def _plain_arm(cells, col):
    """``(mean, sd)`` of one arm when the table has its mean and SD columns and no column that could stand
    in for them, and both are clean numbers with no empty cell (what :func:`_arm_values` would read them
    as, without its refusals or warnings to give); else None."""
    if col["mean"] not in cells or col["sd"] not in cells or any(col[f] in cells for f in ARM_FIELDS[3:]):
        return None
    mean = clean_numbers(cells.values(col["mean"]))
    sd = clean_numbers(cells.values(col["sd"]), above=0) if mean is not None else None
    return None if sd is None else (mean, sd)


def _arm_values(cells, col):
    """The numeric fields of one arm, read as :func:`arm_statistics` reads them, in the order of
    ``ARM_FIELDS``; an absent field is ``values["absent"]``, one shared read-only array of NaN (nothing
    writes into ``values[f]``)."""
    absent = np.full(cells.length, np.nan)
    absent.flags.writeable = False
    values = {f: (_optional(cells, col[f], **({"above": 0} if f in ("sd", "se") else {})) if col[f] in cells
                  else absent) for f in ARM_FIELDS[1:]}
    values["absent"] = absent
    return values


def _check_pairs(col, has, where):
    """Refuse half a pair: q1 without q3, min without max, ci_low without ci_high (or the other way)."""
    for first, second in (("q1", "q3"), ("min", "max"), ("ci_low", "ci_high")):
        if has[first] != has[second]:
            given, absent = (first, second) if has[first] else (second, first)
            raise InputError(f"{col[given]} is given but {col[absent]} is empty: both are needed",
                             column=col[absent], **where)


def _mean_ci_asymmetric(df, col, i, mean, values, where) -> bool:
    """Check the CI of row i's mean (lower below upper, the mean inside) and say whether it is asymmetric
    around the mean by more than ``ASYMMETRY_TOLERANCE`` of its half-width beyond the printed rounding."""
    lo, hi = values["ci_low"][i], values["ci_high"][i]
    if not lo < hi:
        raise InputError(f"{col['ci_low']} ({_fmt(lo)}) must be below {col['ci_high']} ({_fmt(hi)})",
                         column=col["ci_low"], **where)
    if not lo <= mean <= hi:
        raise InputError(f"mean {_fmt(mean)} lies outside its CI {_fmt(lo)} to {_fmt(hi)}",
                         column=col["mean"], **where)
    slack = sum(_rounding(df[col[f]].iloc[i]) for f in ("ci_low", "ci_high")) + \
        2 * _rounding(df[col["mean"]].iloc[i])
    return abs((hi - mean) - (mean - lo)) > ASYMMETRY_TOLERANCE * (hi - lo) / 2 + slack


def _sd_beside_mean(conversions, col, i, n, values, has, where, settings):
    """The SD of a row printed with a mean but no SD (a ``Converted``): from its SE, its CI, or its IQR
    and/or range, in that order."""
    if has["se"]:
        with _located(col["se"], where):
            converted = conversions.sd_from_se(values["se"][i], n)
    elif has["ci_low"]:
        with _located(col["ci_low"], where):
            converted = conversions.sd_from_ci(values["ci_low"][i], values["ci_high"][i], n,
                                               level=settings.input_level)
    elif has["q1"] or has["min"]:       # a mean printed with its IQR and/or range: the SD rules
        with _located(col["q1"] if has["q1"] else col["min"], where):      # need no median
            got = _from_quantiles(conversions, values, has, n, i, settings)
        converted = conversions.Converted(got.sd, f"mean: as printed; sd: {got.sd_rule}")
    else:
        raise InputError(f"no SD for this arm: give {col['sd']}, {col['se']}, or {col['ci_low']} and "
                         f"{col['ci_high']}", column=col["sd"], **where)
    return converted


def _from_median(conversions, df, col, i, n, sd, values, has, where, settings):
    """(mean, SD, rule) of a row printed with a median and its quartiles and/or range (values in order);
    an SD printed beside the median is kept as printed."""
    if not has["median"]:
        raise InputError(f"neither {col['mean']} nor {col['median']} is given for this arm",
                         column=col["mean"] if col["mean"] in df.columns else col["median"], **where)
    if not (has["q1"] or has["min"]):
        raise InputError(f"a median needs its quartiles ({col['q1']}, {col['q3']}) and/or its range "
                         f"({col['min']}, {col['max']}) to give a mean and SD", column=col["median"], **where)
    order = [(f, values[f][i]) for f in ("min", "q1", "median", "q3", "max") if has[f]]
    for (name_a, a), (name_b, b) in zip(order, order[1:]):
        if a > b:
            raise InputError(f"{col[name_a]} ({_fmt(a)}) is above {col[name_b]} ({_fmt(b)}): expected "
                             "min <= q1 <= median <= q3 <= max", column=col[name_b], **where)
    with _located(col["median"], where):
        got = _from_quantiles(conversions, values, has, n, i, settings)
    mean = float(got.mean)
    if has["sd"]:
        rule = f"mean: {got.mean_rule}; sd: as printed"
    else:
        sd = float(got.sd)
        rule = got.rule
    if not sd > 0:
        raise InputError("the quartiles or range give an SD of 0 (all values equal?)", column=col["median"],
                         **where)
    return mean, sd, rule


def _check_sd_against_se(df, col, i, n, values, where, side):
    """Warn when an SD and an SE typed for the same arm disagree beyond the rounding of their digits."""
    sd, se = values["sd"][i], values["se"][i]
    h_sd, h_se = _rounding(df[col["sd"]].iloc[i]), _rounding(df[col["se"]].iloc[i])
    root = math.sqrt(n)
    low, high = (se - h_se) * root, (se + h_se) * root
    if high < sd - h_sd or low > sd + h_sd:
        warnings.warn(f"{place(where, col['se'])} ('{_arm_label(df, side, i)}'): the SD and the SE disagree: "
                      f"SE x sqrt(n) = {se:g} x sqrt({n:g}) = {se * root:.3g} against SD {sd:g}, beyond rounding "
                      f"(tolerance: half a unit of each value's last printed decimal, SE x sqrt(n) in "
                      f"{low:.3g} to {high:.3g}); the SD is used as printed: check which is right",
                      TranscriptionWarning, stacklevel=3)


# ------------------------------------------------------------------------------------------------
# the rules, one per layout


def _positive_means(df, info, means_by_column):
    if not info.positive_means:
        return
    for column, means in means_by_column:
        bad = np.flatnonzero(~(means > 0))
        if bad.size:
            raise InputError(f"measure {info.name} needs positive means (got {_fmt(means[bad[0]])})",
                             column=column, **where_in_table(df, int(bad[0])))


def study_labels(df: pd.DataFrame | Columns) -> list[str]:
    """The ``study`` column as text; refuses empty labels and repeated labels."""
    cells = _cells(df)
    column = cells.values("study").tolist()
    # the common case (every label a text, none empty once stripped, none twice) at once; the loop below
    # finds and words a refusal, and reads labels that are not text
    if all(type(cell) is str for cell in column):
        labels = [cell.strip() for cell in column]
        if all(labels) and len(set(labels)) == len(labels):
            return labels
    df = cells.df
    labels = []
    for position, cell in enumerate(column):
        label = "" if cell is None or (isinstance(cell, float) and math.isnan(cell)) else str(cell).strip()
        if not label:
            raise InputError("study label is empty", column="study", **where_in_table(df, position))
        labels.append(label)
    refuse_duplicates(df, labels, "study", lambda label, first: f"study '{label}' appears twice (first in row {first})")
    return labels


def _arm_rule(cells, info, settings):
    (n1, m1, s1, rules1), (n2, m2, s2, rules2) = (arm_statistics(cells, side, settings) for side in ("exp", "ctrl"))
    _positive_means(cells.df, info, (("mean_exp", m1), ("mean_ctrl", m2)))
    with np.errstate(all="ignore"):
        yi, vi = info.compute(n1, m1, s1, n2, m2, s2, settings)
    if any(rules1) or any(rules2):
        conversion = ["; ".join(f"{side}: {rule}" for side, rule in (("exp", r1), ("ctrl", r2)) if rule)
                      for r1, r2 in zip(rules1, rules2)]
    else:
        conversion = [""] * cells.length
    return Checked({"study": study_labels(cells), "n_exp": n1, "mean_exp": m1, "sd_exp": s1, "n_ctrl": n2,
                    "mean_ctrl": m2, "sd_ctrl": s2, "conversion": conversion}, yi, vi)


def _binary_rule(cells, info, settings):
    labels = study_labels(cells)
    n1 = cells.numeric("n_exp", integer=True, minimum=1)
    n2 = cells.numeric("n_ctrl", integer=True, minimum=1)
    a = cells.numeric("events_exp", integer=True, minimum=0)
    c = cells.numeric("events_ctrl", integer=True, minimum=0)
    for events, n, column in ((a, n1, "events_exp"), (c, n2, "events_ctrl")):
        _events_within(cells.df, events, n, column)
    with np.errstate(all="ignore"):
        yi, vi = info.compute(a, n1, c, n2, settings)
    return Checked({"study": labels, "events_exp": a, "n_exp": n1, "events_ctrl": c, "n_ctrl": n2}, yi, vi)


def _events_within(df, events, n, column):
    bad = np.flatnonzero(events > n)
    if bad.size:
        raise InputError(f"{_fmt(events[bad[0]])} events but only {_fmt(n[bad[0]])} participants",
                         column=column, **where_in_table(df, int(bad[0])))


def _prepost_rule(cells, info, settings):
    labels = study_labels(cells)
    df = cells.df
    needs = PREPOST.required(info.name)
    n = cells.numeric("n", integer=True, minimum=2)
    m1, m2 = cells.numeric("mean_t1"), cells.numeric("mean_t2")
    s1 = cells.numeric("sd_t1", above=0)
    s2 = cells.numeric("sd_t2", above=0) if "sd_t2" in needs else _optional(cells, "sd_t2", above=0)
    r = cells.numeric("r", minimum=-1, allow_missing=True)
    conversion = [""] * cells.length
    for i in np.flatnonzero(np.isnan(r)):
        if settings.prepost_r is None:
            raise InputError("the pre-post correlation r is empty: give it, or borrow one for every such study "
                             "with prepost_r (--prepost-r)", column="r", **where_in_table(df, int(i)))
        r[i] = settings.prepost_r
        conversion[i] = f"r borrowed: prepost_r = {settings.prepost_r:g}"
    above = np.flatnonzero(r > 1)
    if above.size:
        raise InputError(f"a correlation cannot exceed 1 (got {_fmt(r[above[0]])})", column="r",
                         **where_in_table(df, int(above[0])))
    with np.errstate(all="ignore"):
        yi, vi = info.compute(n, m1, s1, m2, s2, r, settings)
    return Checked({"study": labels, "n": n, "mean_t1": m1, "sd_t1": s1, "mean_t2": m2, "sd_t2": s2, "r": r,
                    "conversion": conversion}, yi, vi)


def _yi_vi_rule(cells, info, settings):
    return Checked({"study": study_labels(cells)}, cells.numeric("yi"), cells.numeric("vi", above=0))


def _yi_sei_rule(cells, info, settings):
    yi, vi = effects.from_standard_error(cells.numeric("yi"), cells.numeric("sei", above=0))
    return Checked({"study": study_labels(cells)}, yi, vi)


def _estimate_ci_rule(cells, info, settings):
    labels = study_labels(cells)
    df = cells.df
    ratio = info.ratio   # a ratio and its CI, given as papers print them: pooled on the log scale
    positive = {"above": 0} if ratio else {}
    est = cells.numeric("estimate", **positive)
    lo = cells.numeric("ci_low", **positive)
    hi = cells.numeric("ci_high", **positive)
    # the first row, in order, whose CI is not below-above or does not hold its estimate
    unordered = ~(lo < hi)
    outside = ~((lo <= est) & (est <= hi))
    if unordered.any() or outside.any():
        position = int(np.flatnonzero(unordered | outside)[0])
        if unordered[position]:
            raise InputError(f"ci_low ({_fmt(lo[position])}) must be below ci_high ({_fmt(hi[position])})",
                             column="ci_low", **where_in_table(df, position))
        raise InputError(f"estimate {_fmt(est[position])} lies outside its CI",
                         column="estimate", **where_in_table(df, position))
    if ratio:
        est, lo, hi = np.log(est), np.log(lo), np.log(hi)
    yi, vi, asymmetric = effects.from_confidence_interval(est, lo, hi, level=settings.input_level,
                                                          asymmetry_tolerance=ASYMMETRY_TOLERANCE)
    for position in np.flatnonzero(asymmetric):
        asymmetry_warning(where_in_table(df, int(position)), labels[position])
    return Checked({"study": labels}, yi, vi)


def _arm_rows_common(df):
    """Study and treatment labels of a one-row-per-arm table: each (study, treatment) once, and at
    least two arms per study (a comparison needs two)."""
    studies = text_column(df, "study")
    treatments = text_column(df, "treatment")
    refuse_duplicates(df, list(zip(studies, treatments)), "treatment",
                      lambda key, first: f"study '{key[0]}' lists treatment '{key[1]}' twice (first in row {first})")
    counts = pd.Series(studies).value_counts()
    for position, study in enumerate(studies):
        if counts[study] < 2:
            raise InputError(f"study '{study}' has one arm only: a comparison needs at least two",
                             column="study", **where_in_table(df, position))
    return studies, treatments


def _arm_rows_rule(cells, info, settings):
    studies, treatments = _arm_rows_common(cells.df)
    n, mean, sd, rules = arm_statistics(cells, "", settings)
    _positive_means(cells.df, info, (("mean", mean),))
    return Checked({"study": studies, "treatment": treatments, "n": n, "mean": mean, "sd": sd,
                    "conversion": rules})


def _binary_arm_rows_rule(cells, info, settings):
    studies, treatments = _arm_rows_common(cells.df)
    n = cells.numeric("n", integer=True, minimum=1)
    events = cells.numeric("events", integer=True, minimum=0)
    _events_within(cells.df, events, n, "events")
    return Checked({"study": studies, "treatment": treatments, "events": events, "n": n})


def _per_arm(fields, replacements):
    """Columns and replacements of the one-row-per-study arm layout: every field for both arms."""
    return {f"{f}_{side}": tuple(tuple(f"{g}_{side}" for g in group) for group in groups)
            for side in ("exp", "ctrl") for f, groups in replacements.items() if f in fields}


ARM = Layout("arm", "arm-level data", ("study", "n_exp", "mean_exp", "sd_exp", "n_ctrl", "mean_ctrl", "sd_ctrl"),
             measures.names("arm"), _arm_rule,
             replacements=_per_arm(("mean", "sd"), {"mean": MEAN_REPLACEMENTS, "sd": SD_REPLACEMENTS}))
BINARY = Layout("binary", "binary arm-level data", ("study", "events_exp", "n_exp", "events_ctrl", "n_ctrl"),
                measures.names("binary"), _binary_rule)
PREPOST = Layout("prepost", "one group measured twice", ("study", "n", "mean_t1", "sd_t1", "mean_t2", "sd_t2", "r"),
                 measures.names("prepost"), _prepost_rule, not_needed={"sd_t2": ("SMCR",)}, may_be_empty=("r",))
ARM_ROWS = Layout("arm_rows", "one row per arm (network layout)", ("study", "treatment", "n", "mean", "sd"),
                  measures.names("arm"), _arm_rows_rule,
                  replacements={"mean": MEAN_REPLACEMENTS, "sd": SD_REPLACEMENTS}, one_row_per="arm",
                  pooled=False)
BINARY_ARM_ROWS = Layout("binary_arm_rows", "binary, one row per arm (network layout)",
                         ("study", "treatment", "events", "n"), measures.names("binary"), _binary_arm_rows_rule,
                         one_row_per="arm", pooled=False)

# Order matters where two layouts could match: the one-row-per-study layouts first, effect-level last.
LAYOUTS = {layout.name: layout for layout in (
    ARM, BINARY, PREPOST, ARM_ROWS, BINARY_ARM_ROWS,
    Layout("yi_vi", "effect sizes and variances", ("study", "yi", "vi"), None, _yi_vi_rule),
    Layout("yi_sei", "effect sizes and standard errors", ("study", "yi", "sei"), None, _yi_sei_rule),
    Layout("estimate_ci", "estimates with confidence intervals", ("study", "estimate", "ci_low", "ci_high"), None,
           _estimate_ci_rule),
)}


def for_measure(measure) -> list:
    """The layouts a measure is computed from, in registry order."""
    return [layout for layout in LAYOUTS.values() if layout.measures is not None and measure in layout.measures]


def effect_level() -> list:
    return [layout for layout in LAYOUTS.values() if layout.measures is None]
