"""The curated evidence base in ``data/``: loading and checking its tables.

``trials.csv`` (one row per trial), ``outcomes.csv`` (trial x arm x outcome x timepoint, arm-level
numbers), ``effects.csv`` (between-group effects reported or derived from a trial's text) and
``published.csv`` (pooled estimates from published reviews). The columns are documented in
``data/README.md``. Every check ends in an :class:`~pfps_meta.errors.InputError` naming the file, line
and column.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pfps_meta.inputs import checks
from pfps_meta.conventions import DEFAULTS
from pfps_meta.errors import InputError
from pfps_meta.inputs.layouts import arm_statistics
from pfps_meta.inputs.load import (FILE_COLUMN, LINE_COLUMN, ROW_COLUMN, is_missing, numeric_column, read_csv,
                                   refuse_duplicates, require_columns, where_in_table)

OUTCOME_STATUS = ("verified", "partial", "not_recovered", "derived", "inferred")
# what a paper printed instead of a mean and SD (optional columns; see layouts.arm_statistics)
PRINTED_FIELDS = ("se", "ci_low", "ci_high", "median", "q1", "q3", "min", "max")
EFFECT_STATUS = ("reported", "derived")
VALUE_TYPES = ("final", "change")
BOOLEAN = {"TRUE": True, "FALSE": False}

OUTCOME_REQUIRED = ("trial_id", "arm", "role", "outcome", "scale", "scale_min", "scale_max",
                    "higher_is_better", "timepoint", "value_type", "n", "mean", "sd", "status",
                    "source_citation", "quote")
EFFECT_REQUIRED = ("trial_id", "exp_arm", "ctrl_arm", "outcome", "scale", "higher_is_better", "timepoint",
                   "value_type", "measure", "yi", "sei", "status", "source_citation", "quote")
PUBLISHED_REQUIRED = ("id", "review", "citation", "comparison", "outcome", "measure", "estimate", "ci_low",
                      "ci_high", "source_url", "quote")
TRIALS_REQUIRED = ("trial_id", "citation", "year", "n_randomised", "nascimento_inclusion", "source")


def _choice(df, column, allowed):
    for position, value in enumerate(df[column].tolist()):
        if value not in allowed:
            raise InputError(f"'{value}' is not one of {', '.join(allowed)}", column=column,
                             **where_in_table(df, position))


def _boolean(df, column):
    _choice(df, column, tuple(BOOLEAN))
    return df[column].map(BOOLEAN).to_numpy(dtype=bool)


def _require_source(row, where):
    """Every number in data/ carries its citation and the quoted text it came from."""
    if not (str(row.source_citation).strip() and str(row.quote).strip()):
        raise InputError("a number without its source: source_citation and quote must both be filled",
                         column="quote", **where)


def load_outcomes(path) -> pd.DataFrame:
    """Read and check ``outcomes.csv``; returns it with numeric columns as floats (NaN = empty).

    A row may hold what the paper printed instead of a mean and SD (``se``, ``ci_low``/``ci_high`` of the
    mean, ``median`` with ``q1``/``q3`` and/or ``min``/``max``): the row must say ``status = derived``.
    Its ``mean`` and ``sd`` here are provisional, derived with the default settings (Luo mean, Shi SD, t
    for 95% CIs; the rule in ``derivation``) so that the checks below and the completeness tables see
    them; what was typed stays in ``mean_as_printed``, ``sd_as_printed`` and the printed fields, and every
    analysis derives again from those with its own settings (``validate.study_table``, via
    :func:`arm_rows`). An SD and an SE that disagree, and a CI asymmetric around its mean, are warned
    about here, with the line.

    Refused (one line naming file, row and column): a number without citation and quote; a status that
    does not fit the numbers; a final mean outside the scale; an SD larger than any sample on the scale
    could have given its mean and n; a mean that fails the GRIM test on a whole-number scale
    (``integer_valued = TRUE``); malformed ``n_alternatives``.
    """
    return check_outcomes(read_csv(path))


def check_outcomes(df: pd.DataFrame) -> pd.DataFrame:
    """The checks of :func:`load_outcomes` on a table already read (e.g. a filled extraction sheet)."""
    require_columns(df, OUTCOME_REQUIRED, "the outcomes table")
    out = df.copy()
    if "n_type" not in out.columns:
        out["n_type"] = ""
    _choice(df, "status", OUTCOME_STATUS)
    _choice(df, "value_type", VALUE_TYPES)
    out["higher_is_better"] = _boolean(df, "higher_is_better")
    out["n"] = numeric_column(df, "n", integer=True, minimum=2, allow_missing=True)
    out["mean"] = numeric_column(df, "mean", allow_missing=True)
    out["sd"] = numeric_column(df, "sd", above=0, allow_missing=True)
    out["scale_min"] = numeric_column(df, "scale_min", allow_missing=True)
    out["scale_max"] = numeric_column(df, "scale_max", allow_missing=True)
    out["mean_as_printed"], out["sd_as_printed"] = out["mean"].copy(), out["sd"].copy()
    for column in PRINTED_FIELDS:
        out[column] = numeric_column(df, column, allow_missing=True, **({"above": 0} if column == "se" else {})) \
            if column in df.columns else np.nan
    if "timepoint_weeks" in df.columns:
        out["timepoint_weeks"] = numeric_column(df, "timepoint_weeks", minimum=0, allow_missing=True)
    integer_valued = np.zeros(len(df), dtype=bool)
    if "integer_valued" in df.columns:
        _choice(df, "integer_valued", (*BOOLEAN, ""))
        integer_valued = df["integer_valued"].map(lambda v: BOOLEAN.get(v, False)).to_numpy(dtype=bool)
    out["derivation"] = ""
    _derive_printed(df, out)
    out["n_alternatives"] = [_alternatives(df, i) for i in range(len(df))]
    printed_rows = _printed_rows(df)
    for position, row in enumerate(out.itertuples(index=False)):
        where = where_in_table(df, position)
        printed = bool(printed_rows[position])
        has_value = printed or not (np.isnan(row.n) and np.isnan(row.mean) and np.isnan(row.sd))
        if has_value:
            _require_source(row, where)
        complete = not (np.isnan(row.n) or np.isnan(row.mean) or np.isnan(row.sd))
        if row.status in ("verified", "inferred", "derived") and not complete:
            raise InputError(f"status '{row.status}' needs n, mean and sd (or what they are derived from)",
                             column="status", **where)
        if row.status == "not_recovered" and has_value:
            raise InputError("status 'not_recovered' but the row holds numbers", column="status", **where)
        if row.status == "inferred" and ("notes" not in df.columns or is_missing(row.notes)):
            raise InputError("status 'inferred' needs notes saying what is inferred", column="notes", **where)
        lo, hi = row.scale_min, row.scale_max
        if not np.isnan(lo) and not np.isnan(hi):
            if not lo < hi:
                raise InputError(f"scale_min {lo:g} must be below scale_max {hi:g}", column="scale_min", **where)
            if row.value_type == "final" and not np.isnan(row.mean) and not lo <= row.mean <= hi:
                raise InputError(f"mean {row.mean:g} lies outside the scale range {lo:g}-{hi:g}",
                                 column="mean", **where)
            if not np.isnan(row.sd) and row.sd > hi - lo:
                raise InputError(f"sd {row.sd:g} is larger than the whole scale range {lo:g}-{hi:g}",
                                 column="sd", **where)
            if row.value_type == "final" and complete:
                bound = float(checks.max_sd_bounded(row.mean, row.n, lo, hi))
                if row.sd > bound * (1 + 1e-9):
                    raise InputError(f"sd {row.sd:g} is impossible on a {lo:g}-{hi:g} scale with mean {row.mean:g} "
                                     f"and n = {row.n:g} (at most {bound:.3g}); was a variance or a range "
                                     "entered?", column="sd", **where)
        if integer_valued[position] and complete and not is_missing(df["mean"].iloc[position]):
            if not checks.grim_consistent(df["mean"].iloc[position], row.n):
                raise InputError(f"mean {df['mean'].iloc[position]} cannot be the mean of {row.n:g} whole-number "
                                 "scores (GRIM test); check the mean and n", column="mean", **where)
    keys = out[["trial_id", "arm", "outcome", "scale", "timepoint", "value_type"]].astype(str).agg(", ".join, axis=1)
    refuse_duplicates(df, keys, "trial_id", lambda key, first: f"duplicate row for {key} (first in row {first})")
    out.attrs = dict(df.attrs)
    return out


def _printed_rows(df) -> np.ndarray:
    """Per row of ``df``: whether any of :data:`PRINTED_FIELDS` it has is filled (not ``is_missing``)."""
    printed = np.zeros(len(df), dtype=bool)
    for column in PRINTED_FIELDS:
        if column in df.columns:
            printed |= np.array([not is_missing(cell) for cell in df[column].tolist()], dtype=bool)
    return printed


def _derive_printed(df, out):
    """Check the rows that give what the paper printed (an SD beside an SE, a CI of the mean, quartiles):
    fill the mean and SD of those that lack them (provisionally, with the defaults) and record the rule."""
    present = [c for c in PRINTED_FIELDS if c in df.columns]
    if not present:
        return
    printed = np.flatnonzero(_printed_rows(df)).tolist()
    needs = [i for i in printed if np.isnan(out["mean"].iloc[i]) or np.isnan(out["sd"].iloc[i])]
    sub = df.iloc[printed].copy()
    sub[ROW_COLUMN] = [i + 1 for i in printed]
    for position, i in enumerate(printed):
        if i not in needs:
            continue
        if df["status"].iloc[i] != "derived":
            raise InputError("a row whose mean or SD is derived from what the paper printed needs status 'derived'",
                             column="status", **where_in_table(sub, position))
        if np.isnan(out["n"].iloc[i]):
            raise InputError("n is needed to derive the mean and SD from what the paper printed", column="n",
                             **where_in_table(sub, position))
    checkable = [position for position, i in enumerate(printed) if not np.isnan(out["n"].iloc[i])]
    if not checkable:
        return
    sub = sub.iloc[checkable]
    n, mean, sd, rules = arm_statistics(sub, "", DEFAULTS)
    column = {name: out.columns.get_loc(name) for name in ("mean", "sd", "derivation")}
    for position, i in enumerate(printed[p] for p in checkable):
        if i not in needs:
            continue
        out.iat[i, column["mean"]] = mean[position]
        out.iat[i, column["sd"]] = sd[position]
        out.iat[i, column["derivation"]] = rules[position] or "as printed"


ENTRY_KEYS = ("trial_id", "arm", "outcome", "timepoint", "scale")     # the columns entry_rows matches on


def key_columns(df: pd.DataFrame, columns=ENTRY_KEYS) -> dict:
    """``{column: values}`` of the ``columns`` of ``df`` it has, read once for many :func:`equal_mask`
    calls: a plain object column as its numpy array, any other as the Series itself."""
    out = {}
    for column in columns:
        if column in df.columns:
            series = df[column]
            out[column] = series.to_numpy() if series.dtype == object else series
    return out


def equal_mask(values, value) -> np.ndarray:
    """``(column == value)`` as a boolean numpy array, for a column as :func:`key_columns` gives it (or a
    Series): the same answer as pandas' comparison (a missing cell, NaN, equals nothing), compared in
    numpy when the column holds Python objects and ``value`` is text, without a Series per comparison."""
    if isinstance(values, pd.Series) and values.dtype == object:
        values = values.to_numpy()
    if isinstance(values, np.ndarray) and isinstance(value, str):
        try:
            return np.asarray(values == value, dtype=bool)
        except TypeError:           # a cell whose comparison is undefined (pd.NA): pandas decides
            pass
    series = values if isinstance(values, pd.Series) else pd.Series(values, copy=False)
    return (series == value).to_numpy(dtype=bool)


def entry_positions(outcomes: pd.DataFrame, analysis, entry, arm: str, keys: dict | None = None) -> np.ndarray:
    """The positions (``iloc``, ascending) of :func:`entry_rows`; ``keys``: :func:`key_columns` of
    ``outcomes``, when the caller matches many entries against one table."""
    wanted = {"trial_id": entry.trial, "arm": arm, "outcome": analysis.outcome,
              "timepoint": entry.timepoint or analysis.timepoint, **({} if entry.scale is None else {"scale": entry.scale})}
    return matching_positions(key_columns(outcomes) if keys is None else keys, wanted)


def matching_positions(keys: dict, wanted: dict) -> np.ndarray:
    """The positions (ascending) of the rows whose every ``wanted`` column equals its value
    (:func:`equal_mask`); ``keys``: :func:`key_columns` of the table, holding every wanted column."""
    return np.flatnonzero(np.logical_and.reduce([equal_mask(keys[column], value) for column, value in wanted.items()]))


def entry_rows(outcomes: pd.DataFrame, analysis, entry, arm: str) -> pd.DataFrame:
    """The rows of ``outcomes`` for one arm of one trial of an analysis (a spec's ``Analysis`` and its
    ``TrialEntry``): the analysis's outcome, the entry's timepoint (else the analysis's) and, when the
    entry names one, its scale."""
    return outcomes.iloc[entry_positions(outcomes, analysis, entry, arm)]


def arm_rows(rows: pd.DataFrame, source=None) -> pd.DataFrame:
    """Rows of the outcomes table as a table in the one-row-per-arm layout (``study, treatment, n, mean,
    sd`` and the printed fields, as typed), each keeping the file, line and row it came from, for
    :func:`pfps_meta.inputs.validate.study_table`."""
    source = source or rows.attrs.get("source")
    printed = np.zeros(len(rows), dtype=bool)
    for column in PRINTED_FIELDS:
        if column in rows:
            printed |= rows[column].notna().to_numpy()

    def typed(column):      # a row with printed fields: what was typed; else the value the table holds
        values = rows[column].to_numpy(float)
        if f"{column}_as_printed" not in rows:
            return values
        return np.where(printed, rows[f"{column}_as_printed"].to_numpy(float), values)

    table = pd.DataFrame({"study": rows["trial_id"].to_numpy(), "treatment": rows["arm"].to_numpy(),
                          "n": rows["n"].to_numpy(float), "mean": typed("mean"), "sd": typed("sd")})
    for column in PRINTED_FIELDS:
        table[column] = rows[column].to_numpy(float) if column in rows else np.nan
    table[LINE_COLUMN] = rows[LINE_COLUMN].to_numpy() if LINE_COLUMN in rows else None
    table[FILE_COLUMN] = rows[FILE_COLUMN].to_numpy() if FILE_COLUMN in rows else source
    table[ROW_COLUMN] = rows[ROW_COLUMN].to_numpy() if ROW_COLUMN in rows else np.asarray(rows.index) + 1
    table.attrs["source"] = source
    return table


def _alternatives(df, position) -> dict:
    """``n_alternatives`` ("label=n; label=n") as a dict; other plausible arm sizes of an inferred n."""
    if "n_alternatives" not in df.columns:
        return {}
    text = str(df["n_alternatives"].iloc[position]).strip()
    out = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        label, _, value = part.partition("=")
        try:
            n = int(value)
        except ValueError:
            n = 0
        if not label.strip() or n < 2:
            raise InputError(f"'{part}' is not label=n with a whole n >= 2", column="n_alternatives",
                             **where_in_table(df, position))
        out[label.strip()] = n
    return out


def load_effects(path) -> pd.DataFrame:
    """Read and check ``effects.csv`` (between-group effects with their SE)."""
    df = read_csv(path)
    require_columns(df, EFFECT_REQUIRED, "the effects table")
    out = df.copy()
    _choice(df, "status", EFFECT_STATUS)
    _choice(df, "value_type", VALUE_TYPES)
    _choice(df, "measure", ("MD", "SMD"))
    out["higher_is_better"] = _boolean(df, "higher_is_better")
    out["yi"] = numeric_column(df, "yi")
    out["sei"] = numeric_column(df, "sei", above=0)
    for position, row in enumerate(out.itertuples(index=False)):
        _require_source(row, where_in_table(df, position))
    out.attrs = dict(df.attrs)
    return out


def load_published(path) -> pd.DataFrame:
    """Read ``published.csv``; estimate and CI stay as text too, so the published precision is known."""
    df = read_csv(path)
    require_columns(df, PUBLISHED_REQUIRED, "the published-results table")
    out = df.copy()
    for column in ("estimate", "ci_low", "ci_high"):
        out[column + "_text"] = df[column]
        out[column] = numeric_column(df, column, allow_missing=True)
    refuse_duplicates(df, out["id"].tolist(), "id", lambda rid, first: f"id '{rid}' appears twice")
    out.attrs = dict(df.attrs)
    return out


def load_trials(path) -> pd.DataFrame:
    df = read_csv(path)
    require_columns(df, TRIALS_REQUIRED, "the trials table")
    _choice(df, "nascimento_inclusion", ("confirmed", "candidate", "not_included"))
    out = df.copy()
    out["n_randomised"] = numeric_column(df, "n_randomised", integer=True, minimum=1, allow_missing=True)
    return out


@dataclass
class Evidence:
    """The four tables of ``data/``, loaded and checked."""

    trials: pd.DataFrame
    outcomes: pd.DataFrame
    effects: pd.DataFrame
    published: pd.DataFrame
    data_dir: Path

    @classmethod
    def load(cls, data_dir) -> "Evidence":
        data_dir = Path(data_dir)
        evidence = cls(trials=load_trials(data_dir / "trials.csv"),
                       outcomes=load_outcomes(data_dir / "outcomes.csv"),
                       effects=load_effects(data_dir / "effects.csv"),
                       published=load_published(data_dir / "published.csv"),
                       data_dir=data_dir)
        check_arm_sizes(evidence)
        return evidence

    def published_row(self, target_id: str) -> dict | None:
        rows = self.published[self.published["id"] == target_id]
        return None if rows.empty else rows.iloc[0].to_dict()


def check_arm_sizes(evidence: Evidence):
    """No arm (nor the arms of one outcome and timepoint together, nor an alternative arm size) may hold
    more participants than the trial randomised (``trials.csv`` ``n_randomised``, where known)."""
    randomised = dict(zip(evidence.trials["trial_id"], evidence.trials["n_randomised"]))
    o = evidence.outcomes
    totals = {}
    for position, row in enumerate(o.itertuples(index=False)):
        limit = randomised.get(row.trial_id, np.nan)
        if np.isnan(limit):
            continue
        where = where_in_table(o, position)
        for label, n in [("n", row.n), *row.n_alternatives.items()]:
            if not np.isnan(n) and n > limit:
                raise InputError(f"{label} = {n:g} but {row.trial_id} randomised only {limit:g} participants "
                                 "(trials.csv)", column="n" if label == "n" else "n_alternatives", **where)
        if not np.isnan(row.n):
            key = (row.trial_id, row.outcome, row.scale, row.timepoint)
            total, first = totals.get(key, (0.0, where))
            from_sheet = o.attrs.get("extraction") and where["file"] == o.attrs.get("extraction")
            totals[key] = (total + row.n, where if from_sheet else first)
    for (trial, outcome, scale, timepoint), (total, where) in totals.items():
        if total > randomised[trial]:
            raise InputError(f"the arms of {trial} ({outcome}, {scale}, {timepoint}) hold {total:g} participants "
                             f"but the trial randomised {randomised[trial]:g} (trials.csv)", column="n", **where)


def completeness(evidence: Evidence) -> pd.DataFrame:
    """Per trial: how many outcome rows exist and how many hold poolable numbers (n, mean, SD)."""
    o = evidence.outcomes
    poolable = o["n"].notna() & o["mean"].notna() & o["sd"].notna()
    partial = (o["n"].notna() | o["mean"].notna()) & ~poolable
    summary = pd.DataFrame({"trial_id": o["trial_id"], "rows": 1, "complete": poolable, "partial": partial})
    table = summary.groupby("trial_id", sort=False).sum().reset_index()
    eff = evidence.effects.groupby("trial_id").size()
    table["effect_rows"] = table["trial_id"].map(eff).fillna(0).astype(int)
    extra = [t for t in eff.index if t not in set(table["trial_id"])]
    if extra:
        table = pd.concat([table, pd.DataFrame({"trial_id": extra, "rows": 0, "complete": 0, "partial": 0,
                                                "effect_rows": [int(eff[t]) for t in extra]})],
                          ignore_index=True)
    return table


__all__ = ["Evidence", "entry_rows", "entry_positions", "equal_mask", "key_columns", "matching_positions", "arm_rows", "load_outcomes", "check_outcomes", "load_effects", "load_published", "load_trials", "completeness"]
