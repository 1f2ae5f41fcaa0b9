"""Stage 2 of the pipeline: check input tables and turn them into study-level effect sizes.

Every refusal is an :class:`~pfps_meta.errors.InputError` naming the file, line, row and column and
the reason. Accepted input layouts (one row per study):

============== ===================================================================== ==============
layout         columns                                                               measure
============== ===================================================================== ==============
arm-level      study, n_exp, mean_exp, sd_exp, n_ctrl, mean_ctrl, sd_ctrl            MD or SMD
binary         study, events_exp, n_exp, events_ctrl, n_ctrl                         RR or OR (log)
effect-level   study, yi, vi  |  study, yi, sei  |  study, estimate, ci_low, ci_high  none needed
============== ===================================================================== ==============

With measure RR or OR, effect-level ``yi`` is the log ratio (as in metafor), while ``estimate, ci_low,
ci_high`` are read as ratios (as papers print them) and are log-transformed before pooling.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from pfps_meta.effects import sizes as effects
from pfps_meta.effects import measures
from pfps_meta.conventions import Settings
from pfps_meta.errors import InputError, InputWarning  # noqa: F401  (InputWarning re-exported)
from pfps_meta.inputs.load import LINE_COLUMN

ARM_COLUMNS = ("study", "n_exp", "mean_exp", "sd_exp", "n_ctrl", "mean_ctrl", "sd_ctrl")
# What papers print instead of a mean and SD, per arm (suffix _exp / _ctrl); see ``arm_statistics``.
ARM_FIELDS = ("n", "mean", "sd", "se", "ci_low", "ci_high", "median", "q1", "q3", "min", "max")
BINARY_COLUMNS = ("study", "events_exp", "n_exp", "events_ctrl", "n_ctrl")
PREPOST_COLUMNS = ("study", "n", "mean_t1", "sd_t1", "mean_t2", "sd_t2", "r")
LAYOUT_COLUMNS = {"arm": ARM_COLUMNS, "binary": BINARY_COLUMNS, "prepost": PREPOST_COLUMNS}
EFFECT_LAYOUTS = (("study", "yi", "vi"), ("study", "yi", "sei"),
                  ("study", "estimate", "ci_low", "ci_high"))


ROW_COLUMN = "_row"     # a row's 1-based position in its whole file, kept when a table is subset
FILE_COLUMN = "_file"   # the file a row came from, kept when tables from several files are merged


def where_in_table(df: pd.DataFrame, position: int):
    line = None
    if LINE_COLUMN in df.columns:
        line = int(df[LINE_COLUMN].iloc[position])
    row = int(df[ROW_COLUMN].iloc[position]) if ROW_COLUMN in df.columns else position + 1
    source = df[FILE_COLUMN].iloc[position] if FILE_COLUMN in df.columns else df.attrs.get("source")
    return {"file": source, "line": line, "row": row}


def require_columns(df: pd.DataFrame, columns, purpose: str):
    """Refuse a table that lacks any of ``columns``, naming every missing one."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        names = ", ".join(f"'{c}'" for c in missing)
        raise InputError(f"missing column{'s' if len(missing) > 1 else ''} {names} needed for {purpose}",
                         file=df.attrs.get("source"))


def numeric_column(df: pd.DataFrame, column: str, *, integer=False, minimum=None, above=None,
                   allow_missing=False) -> np.ndarray:
    """Column ``column`` as floats, refusing text, missing values and values out of range.

    ``minimum`` is inclusive (``value >= minimum``), ``above`` exclusive (``value > above``).
    """
    out = np.empty(len(df))
    for position, cell in enumerate(df[column].tolist()):
        value = _to_float(cell)
        where = where_in_table(df, position)
        if value is None:
            if allow_missing:
                out[position] = np.nan
                continue
            raise InputError("value is missing", column=column, **where)
        if isinstance(value, str):
            raise InputError(f"'{value}' is not a number", column=column, **where)
        if math.isfinite(value) and abs(value) > 1e12:
            raise InputError(f"{_fmt(value)} is too large to be a real trial value (more than 1e12 in size)",
                             column=column, **where)
        if not math.isfinite(value):
            raise InputError(f"value {value} is not finite", column=column, **where)
        if integer and value != round(value):
            raise InputError(f"{_fmt(value)} is not a whole number", column=column, **where)
        if minimum is not None and value < minimum:
            raise InputError(f"{_fmt(value)} is below the allowed minimum {_fmt(minimum)}",
                             column=column, **where)
        if above is not None and value <= above:
            raise InputError(f"{_fmt(value)} must be greater than {_fmt(above)}", column=column, **where)
        out[position] = value
    return out


def _fmt(value):
    return f"{value:g}"


def _to_float(cell):
    """A float, None for an empty cell, or the offending text."""
    if cell is None:
        return None
    if isinstance(cell, (int, float, np.integer, np.floating)) and not isinstance(cell, bool):
        value = float(cell)
        return None if math.isnan(value) else value
    text = str(cell).strip()
    if text == "" or text.upper() in ("NA", "NAN"):
        return None
    try:
        return float(text)
    except ValueError:
        return text


def refuse_duplicates(df: pd.DataFrame, keys, column: str, describe):
    """Refuse the first key that repeats; ``describe(key, first_row)`` words the reason."""
    first_seen = {}
    for position, key in enumerate(keys):
        if key in first_seen:
            raise InputError(describe(key, first_seen[key]), column=column, **where_in_table(df, position))
        first_seen[key] = position + 1


def study_labels(df: pd.DataFrame) -> list[str]:
    """The ``study`` column as text; refuses empty labels and repeated labels."""
    labels = []
    for position, cell in enumerate(df["study"].tolist()):
        label = "" if cell is None or (isinstance(cell, float) and math.isnan(cell)) else str(cell).strip()
        if not label:
            raise InputError("study label is empty", column="study", **where_in_table(df, position))
        labels.append(label)
    refuse_duplicates(df, labels, "study", lambda label, first: f"study '{label}' appears twice (first in row {first})")
    return labels


def detect_layout(df: pd.DataFrame, measure: str | None) -> str:
    """Which input layout a table uses: 'arm', 'binary', 'yi_vi', 'yi_sei' or 'estimate_ci'."""
    cols = set(df.columns)
    source = df.attrs.get("source")
    if measure is not None and measure not in measures.MEASURES:
        raise InputError(f"measure must be one of {', '.join(measures.MEASURES)} (got '{measure}')", file=source)
    effect_layout = next((name for layout, name in zip(EFFECT_LAYOUTS, ("yi_vi", "yi_sei", "estimate_ci"))
                          if set(layout) <= cols), None)
    if measure is not None:
        layout = measures.get(measure).layout
        if arm_layout_present(df, layout) or effect_layout is None:
            kind = {"arm": "arm-level data", "binary": "binary arm-level data",
                    "prepost": "one group measured twice"}[layout]
            require_arm_columns(df, layout, f"measure {measure} ({kind})")
            return layout
        return effect_layout
    if effect_layout is not None:
        return effect_layout
    for layout in LAYOUT_COLUMNS:
        if arm_layout_present(df, layout):
            raise InputError(f"{layout} arm-level data needs a measure: {', '.join(measures.names(layout))} "
                             "(--measure on the command line)", file=source)
    if "study" not in cols:
        raise InputError("missing column 'study'", file=source)
    layouts = "; ".join(", ".join(layout[1:]) for layout in EFFECT_LAYOUTS)
    raise InputError("cannot tell the input layout: expected arm-level columns "
                     f"({', '.join(ARM_COLUMNS[1:])}), binary columns ({', '.join(BINARY_COLUMNS[1:])}) "
                     f"or effect-level columns ({layouts})", file=source)


def arm_layout_present(df, layout) -> bool:
    cols = set(df.columns)
    if layout == "arm":     # n per arm, and per arm a mean or a median to start from
        return {"study", "n_exp", "n_ctrl"} <= cols and all(
            f"mean_{side}" in cols or f"median_{side}" in cols for side in ("exp", "ctrl"))
    return set(LAYOUT_COLUMNS[layout]) <= cols


def require_arm_columns(df, layout, purpose):
    if layout == "prepost":      # SMCR standardises by sd_t1 and needs no sd_t2
        needed = [c for c in PREPOST_COLUMNS if c != "sd_t2" or purpose.split()[1] != "SMCR"]
        require_columns(df, needed, purpose)
        return
    if layout != "arm":
        require_columns(df, LAYOUT_COLUMNS[layout], purpose)
        return
    # n per arm, and per arm a mean or a median; which SD source a row uses is checked row by row
    missing = [c for c in ("study", "n_exp") if c not in df.columns]
    if "mean_exp" not in df.columns and "median_exp" not in df.columns:
        missing.append("mean_exp (or median_exp)")
    missing += [c for c in ("n_ctrl",) if c not in df.columns]
    if "mean_ctrl" not in df.columns and "median_ctrl" not in df.columns:
        missing.append("mean_ctrl (or median_ctrl)")
    for side in ("exp", "ctrl"):      # a mean needs something an SD can come from
        sources = {f"{f}_{side}" for f in ("sd", "se", "ci_low", "median", "q1", "min")}
        if f"mean_{side}" in df.columns and not sources & set(df.columns):
            missing.append(f"sd_{side}")
    if missing:
        names = ", ".join(f"'{c}'" for c in missing)
        raise InputError(f"missing column{'s' if len(missing) > 1 else ''} {names} needed for {purpose}",
                         file=df.attrs.get("source"))


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


def _optional(df, column, **checks):
    """A numeric column that may be absent (all NaN) or have empty cells."""
    if column not in df.columns:
        return np.full(len(df), np.nan)
    return numeric_column(df, column, allow_missing=True, **checks)


def arm_statistics(df: pd.DataFrame, side: str, settings: Settings):
    """n, mean and SD of one arm (``side`` "exp" or "ctrl"; "" for unsuffixed columns, as in the curated
    ``outcomes.csv``) for every row, from whatever the row gives.

    Per row, in this order: ``mean`` with ``sd``, or with ``se`` (SD = SE sqrt(n)), or with
    ``ci_low, ci_high`` (the CI of the mean, at ``settings.input_level``, t with n - 1 df); else a
    ``median`` with ``q1, q3`` and/or ``min, max`` (mean by ``settings.mean_method``, SD by
    ``settings.sd_method``, as R meta's ``metacont``; an ``sd`` given beside a median is used as
    printed). Returns ``(n, mean, sd, rules)`` with ``rules[i]`` empty where the row was used as printed.
    Refuses, naming file, row and column: a median without quartiles or range, half a pair (q1 without
    q3, ci_low without ci_high), values out of order (min <= q1 <= median <= q3 <= max), a mean outside
    its CI, and a row with neither a mean nor a median.
    """
    from pfps_meta.inputs import conversions

    col = {f: f"{f}_{side}" if side else f for f in ARM_FIELDS}
    n = numeric_column(df, col["n"], integer=True, minimum=2)
    values = {f: _optional(df, col[f], **({"above": 0} if f in ("sd", "se") else {}))
              for f in ARM_FIELDS if f != "n"}
    mean, sd = values["mean"].copy(), values["sd"].copy()
    rules = [""] * len(df)
    for i in range(len(df)):
        where = where_in_table(df, i)
        has = {f: not np.isnan(values[f][i]) for f in values}
        for first, second in (("q1", "q3"), ("min", "max"), ("ci_low", "ci_high")):
            if has[first] != has[second]:
                given, absent = (first, second) if has[first] else (second, first)
                raise InputError(f"{col[given]} is given but {col[absent]} is empty: both are needed",
                                 column=col[absent], **where)
        if has["mean"]:
            if has["ci_low"]:
                lo, hi = values["ci_low"][i], values["ci_high"][i]
                if not lo < hi:
                    raise InputError(f"{col['ci_low']} ({_fmt(lo)}) must be below {col['ci_high']} ({_fmt(hi)})",
                                     column=col["ci_low"], **where)
                if not lo <= mean[i] <= hi:
                    raise InputError(f"mean {_fmt(mean[i])} lies outside its CI {_fmt(lo)} to {_fmt(hi)}",
                                     column=col["mean"], **where)
            if has["sd"]:
                continue
            if has["se"]:
                converted = conversions.sd_from_se(values["se"][i], n[i])
            elif has["ci_low"]:
                converted = conversions.sd_from_ci(values["ci_low"][i], values["ci_high"][i], n[i],
                                                   level=settings.input_level)
            elif has["q1"] or has["min"]:       # a mean printed with its IQR and/or range: the SD rules
                got = _from_quantiles(conversions, values, has, n[i], i, settings)      # need no median
                converted = conversions.Converted(got.sd, f"mean: as printed; sd: {got.sd_rule}")
            else:
                raise InputError(f"no SD for this arm: give {col['sd']}, {col['se']}, or {col['ci_low']} and "
                                 f"{col['ci_high']}", column=col["sd"], **where)
            sd[i] = float(converted.value)
            rules[i] = converted.rule
            continue
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
        got = _from_quantiles(conversions, values, has, n[i], i, settings)
        mean[i] = float(got.mean)
        if has["sd"]:
            rules[i] = f"mean: {got.mean_rule}; sd: as printed"
        else:
            sd[i] = float(got.sd)
            rules[i] = got.rule
        if not sd[i] > 0:
            raise InputError("the quartiles or range give an SD of 0 (all values equal?)", column=col["median"],
                             **where)
    return n, mean, sd, rules


def effect_table(df: pd.DataFrame, measure: str | None = None, *, settings: Settings | None = None,
                 **options) -> pd.DataFrame:
    """Validate ``df`` and return it with ``yi`` and ``vi`` columns added (a new DataFrame).

    ``measure`` names a row of :mod:`pfps_meta.effects.measures`: arm-level data for MD, SMD, ROM; binary data
    for RR, OR, RD (ratios on the log scale). For effect-level data it may be None. ``settings`` (with
    keyword ``options`` on top) supplies the SMD convention and variance, the MD pooled-SD choice and
    ``input_level``, the confidence level of CIs read from the input.
    """
    settings = Settings.from_mapping(options, base=settings)
    if len(df) == 0:
        raise InputError("table has no data rows", file=df.attrs.get("source"))
    layout = detect_layout(df, measure)
    dropped = []
    if settings.drop_missing:
        df, dropped = _drop_missing(df, layout, measure)
    info = measures.get(measure)
    labels = study_labels(df)
    out = df.copy()
    out["study"] = labels
    if layout == "arm":
        (n1, m1, s1, rules1), (n2, m2, s2, rules2) = (arm_statistics(df, side, settings) for side in ("exp", "ctrl"))
        if info.positive_means:
            for means, side in ((m1, "exp"), (m2, "ctrl")):
                bad = np.flatnonzero(~(means > 0))
                if bad.size:
                    raise InputError(f"measure {measure} needs positive means (got {_fmt(means[bad[0]])})",
                                     column=f"mean_{side}", **where_in_table(df, int(bad[0])))
        out["n_exp"], out["mean_exp"], out["sd_exp"] = n1, m1, s1
        out["n_ctrl"], out["mean_ctrl"], out["sd_ctrl"] = n2, m2, s2
        out["conversion"] = ["; ".join(f"{side}: {rule}" for side, rule in (("exp", r1), ("ctrl", r2)) if rule)
                             for r1, r2 in zip(rules1, rules2)]
        with np.errstate(all="ignore"):
            yi, vi = info.compute(n1, m1, s1, n2, m2, s2, settings)
    elif layout == "binary":
        n1 = numeric_column(df, "n_exp", integer=True, minimum=1)
        n2 = numeric_column(df, "n_ctrl", integer=True, minimum=1)
        a = numeric_column(df, "events_exp", integer=True, minimum=0)
        c = numeric_column(df, "events_ctrl", integer=True, minimum=0)
        for events, n, column in ((a, n1, "events_exp"), (c, n2, "events_ctrl")):
            bad = np.flatnonzero(events > n)
            if bad.size:
                raise InputError(f"{_fmt(events[bad[0]])} events but only {_fmt(n[bad[0]])} participants",
                                 column=column, **where_in_table(df, int(bad[0])))
        out["events_exp"], out["n_exp"], out["events_ctrl"], out["n_ctrl"] = a, n1, c, n2
        with np.errstate(all="ignore"):
            yi, vi = info.compute(a, n1, c, n2, settings)
    elif layout == "prepost":
        n = numeric_column(df, "n", integer=True, minimum=2)
        m1, m2 = numeric_column(df, "mean_t1"), numeric_column(df, "mean_t2")
        s1 = numeric_column(df, "sd_t1", above=0)
        s2 = numeric_column(df, "sd_t2", above=0) if measure != "SMCR" else _optional(df, "sd_t2", above=0)
        r = numeric_column(df, "r", minimum=-1, allow_missing=True)
        out["conversion"] = ""
        for i in np.flatnonzero(np.isnan(r)):
            if settings.prepost_r is None:
                raise InputError("the pre-post correlation r is empty: give it, or borrow one for every such study "
                                 "with prepost_r (--prepost-r)", column="r", **where_in_table(df, int(i)))
            r[i] = settings.prepost_r
            out.loc[out.index[i], "conversion"] = f"r borrowed: prepost_r = {settings.prepost_r:g}"
        above = np.flatnonzero(r > 1)
        if above.size:
            raise InputError(f"a correlation cannot exceed 1 (got {_fmt(r[above[0]])})", column="r",
                             **where_in_table(df, int(above[0])))
        out["n"], out["mean_t1"], out["sd_t1"], out["mean_t2"], out["sd_t2"], out["r"] = n, m1, s1, m2, s2, r
        with np.errstate(all="ignore"):
            yi, vi = info.compute(n, m1, s1, m2, s2, r, settings)
    elif layout == "yi_vi":
        yi = numeric_column(df, "yi")
        vi = numeric_column(df, "vi", above=0)
    elif layout == "yi_sei":
        yi, vi = effects.from_standard_error(numeric_column(df, "yi"), numeric_column(df, "sei", above=0))
    else:
        ratio = info.ratio   # a ratio and its CI, given as papers print them: pooled on the log scale
        positive = {"above": 0} if ratio else {}
        est = numeric_column(df, "estimate", **positive)
        lo = numeric_column(df, "ci_low", **positive)
        hi = numeric_column(df, "ci_high", **positive)
        for position in range(len(df)):
            if not lo[position] < hi[position]:
                raise InputError(f"ci_low ({_fmt(lo[position])}) must be below ci_high ({_fmt(hi[position])})",
                                 column="ci_low", **where_in_table(df, position))
            if not lo[position] <= est[position] <= hi[position]:
                raise InputError(f"estimate {_fmt(est[position])} lies outside its CI",
                                 column="estimate", **where_in_table(df, position))
        if ratio:
            est, lo, hi = np.log(est), np.log(lo), np.log(hi)
        yi, vi, asymmetric = effects.from_confidence_interval(est, lo, hi, level=settings.input_level)
        for position in np.flatnonzero(asymmetric):
            where = where_in_table(df, int(position))
            warnings.warn(f"{where['file'] or 'data'} row {where['row']} ('{labels[position]}'): the CI is "
                          "asymmetric around the estimate on the analysis scale; the SE derived from "
                          "its width is approximate (was it computed on another scale, e.g. a ratio "
                          "not on the log scale?)", InputWarning, stacklevel=2)
    with np.errstate(all="ignore"):
        yi, vi = np.asarray(yi, dtype=float), np.asarray(vi, dtype=float)
        bad = np.flatnonzero(~(np.isfinite(yi) & np.isfinite(vi) & (vi > 0)))
    if bad.size:
        i = int(bad[0])
        raise InputError(f"the effect size of study '{labels[i]}' cannot be computed from these values "
                         f"(yi = {yi[i]:g}, vi = {vi[i]:g}): a value is too large or too small to be real "
                         "(overflow), or the variance is 0", **where_in_table(df, i))
    out["yi"] = yi
    out["vi"] = vi
    out.attrs = dict(df.attrs)
    out.attrs["layout"] = layout
    if dropped:
        out.attrs["notes"] = [f"dropped (drop_missing): {d}" for d in dropped]
    out.attrs["measure"] = measure
    return out


def _needed(layout, measure):
    """Groups of columns a row needs for its effect; within a group any one column will do."""
    if layout == "arm":
        return [("n_exp",), ("mean_exp", "median_exp"), ("n_ctrl",), ("mean_ctrl", "median_ctrl")]
    if layout == "prepost":
        return [("n",), ("mean_t1",), ("sd_t1",), ("mean_t2",)] + ([] if measure == "SMCR" else [("sd_t2",)])
    columns = {"binary": BINARY_COLUMNS[1:], "yi_vi": ("yi", "vi"), "yi_sei": ("yi", "sei"),
               "estimate_ci": ("estimate", "ci_low", "ci_high")}[layout]
    return [(c,) for c in columns]


def _drop_missing(df, layout, measure):
    """Rows with an empty needed value removed, each listed by file and line (never silently)."""
    keep, dropped = [], []
    for position in range(len(df)):
        empty = [group[0] for group in _needed(layout, measure)
                 if all(_to_float(df[c].iloc[position]) is None for c in group if c in df.columns)]
        if empty:
            where = where_in_table(df, position)
            place = f"{where['file'] or 'data'}, line {where['line']}" if where["line"] else \
                f"{where['file'] or 'data'}, row {where['row']}"
            dropped.append(f"{place} ('{df['study'].iloc[position]}'): {', '.join(empty)} empty")
            warnings.warn(f"dropped {dropped[-1]}", InputWarning, stacklevel=3)
        else:
            keep.append(position)
    if not keep:
        raise InputError("every row has an empty needed value; nothing is left to pool", file=df.attrs.get("source"))
    kept = df.iloc[keep].copy()
    kept.attrs = dict(df.attrs)
    return kept, dropped


def sd_may_be_se(sd, n, factor=3.0) -> np.ndarray:
    """Flag arms whose SD looks like a standard error entered where an SD was meant.

    Heuristic (Cochrane Handbook 6.5.2.3 warns of this mix-up): with at least three arms on the same
    scale, an arm is flagged when its SD is less than ``1/factor`` of the median SD of the other arms
    while ``SD * sqrt(n)`` (what the SD would be if the value were an SE) lies within ``factor`` of
    that median. Returns a boolean array; it flags, it never changes a value.
    """
    sd = np.asarray(sd, dtype=float)
    n = np.asarray(n, dtype=float)
    flags = np.zeros(sd.shape, dtype=bool)
    ok = np.isfinite(sd) & np.isfinite(n)
    if ok.sum() < 3:
        return flags
    for i in np.flatnonzero(ok):
        others = np.median(sd[ok & (np.arange(sd.size) != i)])
        as_sd = sd[i] * math.sqrt(n[i])
        flags[i] = sd[i] < others / factor and others / factor <= as_sd <= others * factor
    return flags
