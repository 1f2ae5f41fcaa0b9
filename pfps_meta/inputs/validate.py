"""Stage 2 of the pipeline: the one entrance for every table of studies.

:func:`study_table` takes every study table (a CSV or DataFrame given to ``pm.pool``/``pfps-meta pool``,
the arms a spec's evidence-base analysis draws from ``data/outcomes.csv`` or a filled extraction sheet)
with the analysis's :class:`~pfps_meta.conventions.Settings`, detects its input layout from the rows of
:mod:`pfps_meta.inputs.layouts`, checks it and does the conversions there (so ``mean_method``,
``sd_method`` and ``input_level`` mean the same on every path, with the same messages).
:func:`effect_table` (``pm.escalc``) is the entrance for the layouts that are pooled: it returns ``yi``
and ``vi``. :func:`checked_effects` does its checks and gives ``yi``, ``vi`` and the labels without
building the DataFrame (a :class:`CheckedTable`, whose ``frame`` is built when first read): what a fit
reads, for the price of the checks alone.

Every refusal is an :class:`~pfps_meta.errors.InputError` naming the file, line, row and column and
the reason. The layouts (see :data:`pfps_meta.inputs.layouts.LAYOUTS`):

=============== ===================================================================== ==============
layout          columns                                                               measure
=============== ===================================================================== ==============
arm             study, n_exp, mean_exp, sd_exp, n_ctrl, mean_ctrl, sd_ctrl            MD, SMD, ...
binary          study, events_exp, n_exp, events_ctrl, n_ctrl                         RR, OR, RD
prepost         study, n, mean_t1, sd_t1, mean_t2, sd_t2, r                           MC, SMCC, SMCR
arm_rows        study, treatment, n, mean, sd (one row per arm; not pooled yet)       MD, SMD, ...
binary_arm_rows study, treatment, events, n (one row per arm; not pooled yet)         RR, OR, RD
effect-level    study, yi, vi  |  study, yi, sei  |  study, estimate, ci_low, ci_high  none needed
=============== ===================================================================== ==============

With measure RR or OR, effect-level ``yi`` is the log ratio (as in metafor), while ``estimate, ci_low,
ci_high`` are read as ratios (as papers print them) and are log-transformed before pooling.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from pfps_meta.conventions import Settings
from pfps_meta.effects import measures
from pfps_meta.errors import InputError, InputWarning
from pfps_meta.inputs import layouts
from pfps_meta.inputs.layouts import LAYOUTS, TranscriptionWarning, arm_statistics, study_labels
from pfps_meta.inputs.load import (FILE_COLUMN, LINE_COLUMN, ROW_COLUMN, Columns, is_missing, numeric_column,
                                   read_csv, refuse_duplicates, require_columns, where_in_table)

# The entrance, and the helpers other stages take from here (defined in load and layouts).
__all__ = ["study_table", "effect_table", "checked_effects", "CheckedTable", "detect_layout", "sd_may_be_se",
           "LAYOUTS", "TranscriptionWarning", "InputWarning", "arm_statistics", "study_labels", "numeric_column",
           "require_columns", "refuse_duplicates", "where_in_table", "is_missing", "FILE_COLUMN", "LINE_COLUMN", "ROW_COLUMN"]


# (column names, measure) -> layout name, for tables whose layout was found (a refusal is never kept)
_DETECTED: dict = {}


def detect_layout(df: pd.DataFrame, measure: str | None) -> str:
    """The name of the row of :data:`~pfps_meta.inputs.layouts.LAYOUTS` a table uses (it depends on the
    column names and the measure only: a table's found layout is kept for the next table of those)."""
    return _layout_of(df, df.columns.tolist(), measure)


def _layout_of(df, names, measure) -> str:
    """:func:`detect_layout` of ``df`` whose column names are ``names``."""
    key = (tuple(names), measure) if measure is None or type(measure) is str else None
    found = _DETECTED.get(key) if key is not None else None
    if found is None:
        found = _detect_layout(df, measure)
        if key is not None and len(_DETECTED) < 1024:
            _DETECTED[key] = found
    return found


def _detect_layout(df: pd.DataFrame, measure: str | None) -> str:
    cols = set(df.columns)
    source = df.attrs.get("source")
    if measure is not None and measure not in measures.MEASURES:
        raise InputError(f"measure must be one of {', '.join(measures.MEASURES)} (got '{measure}')", file=source)
    effect = next((layout for layout in layouts.effect_level() if layout.present(cols)), None)
    if measure is not None:
        family = layouts.for_measure(measure)
        found = next((layout for layout in family if layout.present(cols, measure)), None)
        if found is not None:
            return found.name
        if effect is not None:
            return effect.name
        first = family[0]
        missing = first.missing(cols, measure)
        names = ", ".join(f"'{c}'" for c in missing)
        raise InputError(f"missing column{'s' if len(missing) > 1 else ''} {names} needed for measure {measure} "
                         f"({first.label})", file=source)
    if effect is not None:
        return effect.name
    for layout in LAYOUTS.values():
        if layout.measures is not None and layout.present(cols, layout.measures[0]):
            raise InputError(f"{layout.label} needs a measure: {', '.join(layout.measures)} "
                             "(--measure on the command line)", file=source)
    if "study" not in cols:
        raise InputError("missing column 'study'", file=source)
    described = "; ".join(f"{layout.label} ({', '.join(layout.columns[1:])})" for layout in LAYOUTS.values())
    raise InputError(f"cannot tell the input layout: expected one of {described}", file=source)


def study_table(df: pd.DataFrame, measure: str | None = None, *, settings: Settings | None = None,
                **options) -> pd.DataFrame:
    """Validate a table of studies in any layout and return a new DataFrame with the checked columns.

    The layout is detected (:func:`detect_layout`) and its rule (:mod:`pfps_meta.inputs.layouts`) checks
    every value and converts what papers print instead of a mean and SD with ``settings`` (plus keyword
    ``options`` on top): ``mean_method``, ``sd_method``, ``input_level``, ``prepost_r`` and, for the
    effect, the SMD convention and variance and the MD pooled-SD choice. Pooled layouts get ``yi`` and
    ``vi``; ``attrs["layout"]`` names the layout. With ``drop_missing``, rows lacking a needed value are
    dropped, each listed with a warning and in ``attrs["notes"]``.
    """
    return _checked(df, measure, settings, options).frame


def effect_table(df: pd.DataFrame, measure: str | None = None, *, settings: Settings | None = None,
                 **options) -> pd.DataFrame:
    """Validate ``df`` and return it with ``yi`` and ``vi`` columns added (a new DataFrame).

    :func:`study_table` for the layouts that are pooled. ``measure`` names a row of
    :mod:`pfps_meta.effects.measures`: arm-level data for MD, SMD, ROM; binary data for RR, OR, RD
    (ratios on the log scale). For effect-level data it may be None. ``settings`` (with keyword
    ``options`` on top) supplies the SMD convention and variance, the MD pooled-SD choice,
    ``input_level`` (the confidence level of CIs read from the input) and the conversion methods.
    """
    return checked_effects(df, measure, settings=settings, **options).frame


def checked_effects(df: pd.DataFrame, measure: str | None = None, *, settings: Settings | None = None,
                    **options) -> "CheckedTable":
    """:func:`effect_table`'s checks and effect sizes, before any DataFrame is built: a
    :class:`CheckedTable` whose ``yi``, ``vi``, ``labels`` and ``attrs`` are read at once and whose
    ``frame`` (what :func:`effect_table` returns) is built on first read. The same refusals and warnings,
    in the same order, as :func:`effect_table`; for a fit that never looks at the table (``pm.pool``)."""
    checked = _checked(df, measure, settings, options)
    layout = LAYOUTS[checked.layout]
    if not layout.pooled:
        raise InputError(f"{layout.label} ({', '.join(layout.columns)}) is checked but not pooled yet: give one "
                         "row per study (e.g. study, n_exp, mean_exp, sd_exp, n_ctrl, mean_ctrl, sd_ctrl)",
                         file=checked.source)
    return checked


class CheckedTable:
    """A checked table of studies (:func:`checked_effects`), its DataFrame built only when it is read.

    - ``yi``, ``vi``: read-only float arrays, one value per study (None for a layout that is not pooled);
    - ``labels``: the study labels (a list of text; the table's own: read it, do not modify it);
    - ``layout``: the layout's name (:data:`LAYOUTS`);
    - ``attrs``: what ``frame.attrs`` holds (``source``, ``layout``, ``measure``, ``notes`` when rows were
      dropped); ``source`` and ``notes`` read from it;
    - ``frame``: the DataFrame :func:`study_table` returns (the input's columns, their dtypes kept, the
      checked ones in their place or appended, then ``yi, vi``), built on first read and then kept.
    """

    __slots__ = ("yi", "vi", "labels", "layout", "attrs", "_length", "_names", "_index", "_columns", "_frame")

    def __init__(self, cells, layout, columns, yi, vi, attrs):
        self.yi, self.vi = yi, vi
        self.labels = columns["study"]
        self.layout, self.attrs = layout, attrs
        self._length, self._names, self._index = cells.length, cells.names, cells.df.index
        # the input's columns that the checked ones do not replace, copied now: the caller may edit their
        # table before the frame is built (most tables have none such: every column is checked)
        replaced = set(columns) | ({"yi", "vi"} if yi is not None else set())
        self._columns = {name: None if name in replaced else _own_copy(cells, name) for name in cells.names}
        self._columns.update(columns)
        if yi is not None:
            self._columns["yi"], self._columns["vi"] = yi, vi
        self._frame = None

    def __len__(self) -> int:
        return self._length

    @property
    def source(self):
        return self.attrs.get("source")

    @property
    def notes(self) -> list:
        return list(self.attrs.get("notes", ()))

    @property
    def frame(self) -> pd.DataFrame:
        if self._frame is None:
            # one DataFrame built from a dict, in the input's column order, new columns appended
            # (assigning column by column costs more than the fit)
            self._frame = pd.DataFrame(self._columns, index=self._index, copy=True)
            self._frame.attrs = dict(self.attrs)
        return self._frame


def _own_copy(cells, name):
    """A copy of column ``name`` of ``cells`` for a DataFrame constructor: its array (taking a Series out
    costs ~10 us), except a numpy object column, which goes in as a Series (from a bare object array
    pandas would infer a text dtype)."""
    values = cells.values(name)
    if isinstance(values, np.ndarray) and values.dtype == object:
        return cells.df[name].copy()
    return values.copy()


def _checked(df, measure, settings, options) -> CheckedTable:
    """:func:`study_table` up to its DataFrame: the layout detected, its rule run, yi and vi checked."""
    settings = Settings.from_mapping(options, base=settings)
    df, names = _as_table(df)
    if len(df) == 0:
        raise InputError("table has no data rows", file=df.attrs.get("source"))
    layout = LAYOUTS[_layout_of(df, names, measure)]
    dropped = []
    if settings.drop_missing:
        df, dropped = _drop_missing(df, layout, measure)
    info = measures.get(measure)
    cells = Columns(df, names)
    checked = layout.rule(cells, info, settings)
    yi = vi = None
    if layout.pooled:
        yi, vi = np.asarray(checked.yi, dtype=float), np.asarray(checked.vi, dtype=float)
        if not (np.isfinite(yi).all() and np.isfinite(vi).all() and vi.min() > 0):
            _refuse_effects(df, checked.columns["study"], yi, vi)
        yi.flags.writeable = False
        vi.flags.writeable = False
    attrs = dict(df.attrs)
    attrs["layout"] = layout.name
    if dropped:
        attrs["notes"] = [f"dropped (drop_missing): {d}" for d in dropped]
    attrs["measure"] = measure
    return CheckedTable(cells, layout.name, checked.columns, yi, vi, attrs)


def _refuse_effects(df, labels, yi, vi):
    """Refuse the first study whose yi is not finite or whose vi is not finite and > 0."""
    with np.errstate(all="ignore"):
        bad = np.flatnonzero(~(np.isfinite(yi) & np.isfinite(vi) & (vi > 0)))
    i = int(bad[0])
    study = np.asarray(labels, dtype=object)[i]
    raise InputError(f"the effect size of study '{study}' cannot be computed from these "
                     f"values (yi = {yi[i]:g}, vi = {vi[i]:g}): a value is too large or too small to be "
                     "real (overflow), or the variance is 0", **where_in_table(df, i))


def _as_table(df) -> tuple[pd.DataFrame, list]:
    """A DataFrame with one text name per column (and its column names); a path is read as a CSV file
    (:func:`load.read_csv`)."""
    if isinstance(df, (str, Path)):
        df = read_csv(df)
        return df, df.columns.tolist()
    if not isinstance(df, pd.DataFrame):
        raise InputError(f"data: a pandas DataFrame or the path of a CSV file is needed, got {type(df).__name__}")
    names = df.columns.tolist()
    if isinstance(df.columns, pd.MultiIndex) or not all(isinstance(c, str) for c in names):
        raise InputError("column names must be text, one level (e.g. study, yi, vi)", file=df.attrs.get("source"))
    if len(set(names)) < len(names):
        repeated = df.columns[df.columns.duplicated()]
        raise InputError(f"column name '{repeated[0]}' appears twice", file=df.attrs.get("source"))
    return df, names


def _drop_missing(df, layout, measure):
    """Rows with an empty needed value removed, each listed by file and line (never silently)."""
    keep, dropped = [], []
    groups = layout.needed_in_row(measure)
    for position in range(len(df)):
        empty = [group[0] for group in groups
                 if all(is_missing(df[c].iloc[position]) for c in group if c in df.columns)]
        if empty:
            where = where_in_table(df, position)
            spot = f"{where['file'] or 'data'}, line {where['line']}" if where["line"] else \
                f"{where['file'] or 'data'}, row {where['row']}"
            dropped.append(f"{spot} ('{df['study'].iloc[position]}'): {', '.join(empty)} empty")
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
