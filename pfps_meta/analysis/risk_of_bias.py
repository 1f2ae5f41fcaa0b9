"""Risk of bias: the table of judgements (``data/risk_of_bias.csv``), weighted summaries, and the
sensitivity re-fits on "low risk only" and "excluding high risk".

The table holds one row per study x tool x result:

- ``tool = "RoB2"``: the Cochrane risk-of-bias tool for randomised trials, version 2 (Sterne et al. 2019,
  BMJ 366:l4898). Domains D1 randomisation process, D2 deviations from the intended interventions,
  D3 missing outcome data, D4 measurement of the outcome, D5 selection of the reported result, and the
  overall judgement; each ``low``, ``some concerns`` or ``high`` (empty: not assessed / not recovered).
- ``tool = "PEDro"``: the PEDro scale (Maher et al. 2003, Phys Ther 83:713-721): items ``pedro_1`` to
  ``pedro_11`` (``yes`` / ``no`` / empty) and ``pedro_total`` 0-10, the count of items 2-11 answered yes
  (item 1, eligibility criteria, is not counted).

Every row with a judgement carries its ``citation``, ``location`` and ``quote``; what was not recovered
is empty with status ``not_recovered``.

RoB 2's guidance derives the overall judgement from the domains: low only when every domain is low,
high when any domain is high (or several raise some concerns), some concerns otherwise. A published
overall judgement is recorded as published; :func:`inconsistent_overall` lists the rows whose overall is
milder than their worst domain, so a user can see it (the Cochrane practice data set has such rows).

Weights: :func:`summary` weights each study's judgement by its weight in a fit (``MetaResult.studies``
column ``weight``, percent), as RevMan and robvis draw the summary bar chart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pfps_meta.conventions import COUNT_METHODS
from pfps_meta.errors import InputError
from pfps_meta.formatting import json_ready, render
from pfps_meta.evidence.extraction import PEDRO_ITEMS, ROB_COLUMNS, ROB_DOMAINS, ROB_JUDGEMENTS
from pfps_meta.models import mantel_haenszel
from pfps_meta.models.univariate import pool_effects

__all__ = ["JUDGEMENTS", "DOMAINS", "PEDRO_ITEMS", "DEFAULT_PATH", "read_risk_of_bias", "validate", "judgements",
           "summary", "inconsistent_overall", "forest_frame", "weights_for", "judgement_weights",
           "refit_low_risk_only", "refit_excluding_high", "RobRefit"]

JUDGEMENTS = ROB_JUDGEMENTS
DOMAINS = ROB_DOMAINS
TOOLS = ("RoB2", "PEDro")
SOURCE_COLUMNS = ("citation", "location", "quote")
COLUMNS = ROB_COLUMNS       # the columns of data/risk_of_bias.csv and of the sheet (evidence.extraction.rob_template)
DEFAULT_PATH = Path(__file__).resolve().parents[2] / "data" / "risk_of_bias.csv"
_SEVERITY = {"low": 0, "some concerns": 1, "high": 2}


# ------------------------------------------------------------------------------------------------
# reading and checking the table


def read_risk_of_bias(path=None) -> pd.DataFrame:
    """The risk-of-bias table at ``path`` (default ``data/risk_of_bias.csv``), checked by :func:`validate`;
    empty cells are None, ``pedro_total`` a float (NaN when empty)."""
    path = Path(path) if path is not None else DEFAULT_PATH
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise InputError("file not found", file=str(path)) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise InputError(f"not a readable CSV ({str(error).splitlines()[0]})", file=str(path)) from None
    return validate(frame, source=str(path))


def validate(frame: pd.DataFrame, source: str | None = None) -> pd.DataFrame:
    """Check a risk-of-bias table (columns :data:`COLUMNS`); each problem is an InputError naming the
    file, the line (header = line 1), the column and why. Returns a cleaned copy."""
    if not isinstance(frame, pd.DataFrame):
        raise InputError(f"frame: a risk-of-bias table (a DataFrame) is needed (got {type(frame).__name__})")
    missing = [c for c in ("study", "tool", *SOURCE_COLUMNS) if c not in frame.columns]
    if missing:
        raise InputError(f"missing column(s) {', '.join(missing)}", file=source)
    out = frame.copy()
    for column in COLUMNS:
        if column not in out.columns:
            out[column] = ""
        out[column] = out[column].fillna("").astype(str).str.strip()
    for index, row in zip(out.index, out.to_dict("records")):     # (rows as dicts: no Series per row)
        _check_row(row, index + 2, source)
    out = out.replace({"": None})
    out["pedro_total"] = pd.to_numeric(out["pedro_total"], errors="coerce")
    out.attrs["source"] = source
    return out


def _check_row(row, line: int, source) -> None:
    where = {"file": source, "line": line}
    if not row["study"]:
        raise InputError("empty study", column="study", **where)
    if row["tool"] not in TOOLS:
        raise InputError(f"tool '{row['tool']}' is not one of {', '.join(TOOLS)}", column="tool", **where)
    for column in (*DOMAINS, "overall"):
        value = row[column]
        if value and value not in JUDGEMENTS:
            raise InputError(f"judgement '{value}' is not one of {', '.join(JUDGEMENTS)} (or empty)", column=column,
                             **where)
        if value and row["tool"] != "RoB2":
            raise InputError(f"a RoB 2 judgement on a {row['tool']} row", column=column, **where)
    for column in PEDRO_ITEMS:
        if row[column] and row[column] not in ("yes", "no"):
            raise InputError(f"PEDro item '{row[column]}' is not yes, no or empty", column=column, **where)
    _check_pedro_total(row, where)
    judged = any(row[c] for c in (*DOMAINS, "overall", "pedro_total", *PEDRO_ITEMS))
    for column in SOURCE_COLUMNS:
        if judged and not row[column]:
            raise InputError("a judgement without its source (citation, location and quoted text are required)",
                             column=column, **where)


def _check_pedro_total(row, where) -> None:
    text = row["pedro_total"]
    if not text:
        return
    if row["tool"] != "PEDro":
        raise InputError(f"a PEDro total on a {row['tool']} row", column="pedro_total", **where)
    if not text.isdigit() or not 0 <= int(text) <= 10:
        raise InputError(f"'{text}' is not a whole number from 0 to 10", column="pedro_total", **where)
    items = [row[c] for c in PEDRO_ITEMS[1:]]
    if all(items) and sum(v == "yes" for v in items) != int(text):
        raise InputError(f"total {text} differs from the {sum(v == 'yes' for v in items)} items 2-11 answered yes",
                         column="pedro_total", **where)


# ------------------------------------------------------------------------------------------------
# selecting judgements


def _require(frame, columns, argument: str = "rob") -> None:
    """InputError naming ``argument`` unless ``frame`` is a DataFrame holding ``columns``."""
    if not isinstance(frame, pd.DataFrame):
        raise InputError(f"{argument}: a risk-of-bias table (a DataFrame, e.g. read_risk_of_bias()) is needed "
                         f"(got {type(frame).__name__})")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"{argument}: missing column(s) {', '.join(missing)} (a risk-of-bias table has "
                         f"{', '.join(COLUMNS[:9])}, ...; read it with read_risk_of_bias)",
                         file=frame.attrs.get("source"))


def judgements(rob: pd.DataFrame, review: str | None = None, studies=None, tool: str = "RoB2",
               result: str | None = None) -> pd.DataFrame:
    """The rows of one tool (and review, and result, e.g. ``"pain, post"``), one per study, optionally in
    the order of ``studies`` (studies without a row get an all-empty row). Columns: study, the tool's."""
    columns = ["study", *DOMAINS, "overall"] if tool == "RoB2" else ["study", "pedro_total", *PEDRO_ITEMS]
    _require(rob, ["tool", *columns, *(["review"] if review is not None else []),
                   *(["result"] if result is not None else [])])
    rows = rob[rob["tool"] == tool]
    if review is not None:
        rows = rows[rows["review"] == review]
    if result is not None:
        rows = rows[rows["result"] == result]
    duplicated = rows["study"][rows["study"].duplicated()]
    if len(duplicated):
        raise InputError(f"study '{duplicated.iloc[0]}' has more than one {tool} row; give `review` and `result` to choose",
                         file=rob.attrs.get("source"), column="study")
    out = rows[columns].set_index("study")
    if studies is not None:
        out = out.reindex([str(s) for s in studies])
    return out.reset_index().rename(columns={"index": "study"})


def forest_frame(rob: pd.DataFrame, tool: str = "RoB2", review: str | None = None, studies=None,
                 result: str | None = None) -> pd.DataFrame:
    """The frame the forest plot's traffic-light columns take (``plots.forest(result, rob=frame)``):
    columns ``study, D1, D2, D3, D4, D5, overall``, values low / some concerns / high or missing (None)."""
    if tool != "RoB2":
        raise InputError(f"the forest plot's risk-of-bias columns are RoB 2 domains; tool '{tool}' has none",
                         column="tool")
    return judgements(rob, review=review, studies=studies, tool="RoB2", result=result)


def inconsistent_overall(rob: pd.DataFrame) -> pd.DataFrame:
    """RoB 2 rows whose overall judgement is milder than their worst domain (RoB 2 guidance: the overall
    judgement is at least as severe as the most severe domain)."""
    _require(rob, ["study", "review", "tool", *DOMAINS, "overall"])
    rows = rob[(rob["tool"] == "RoB2") & rob["overall"].notna()]
    worst = rows[list(DOMAINS)].apply(lambda r: max((_SEVERITY[v] for v in r if v in _SEVERITY), default=-1), axis=1)
    milder = rows["overall"].map(_SEVERITY) < worst
    return rows.loc[milder, ["study", "review", *DOMAINS, "overall"]]


# ------------------------------------------------------------------------------------------------
# weights and the summary


def _studies(result) -> pd.DataFrame:
    """``result.studies``, or an InputError naming ``result`` when it is not a fitted result."""
    studies = getattr(result, "studies", None)
    if not isinstance(studies, pd.DataFrame) or not {"study", "weight"} <= set(studies.columns):
        raise InputError(f"result: a fitted result with study weights is needed (got {type(result).__name__})")
    return studies


def weights_for(result) -> pd.Series:
    """Each study's weight (percent) in ``result`` (a MetaResult), indexed by study label."""
    studies = _studies(result)
    return pd.Series(studies["weight"].to_numpy(float), index=studies["study"].astype(str), name="weight")


def _weights(frame: pd.DataFrame, weights) -> np.ndarray:
    if weights is None:
        return np.ones(len(frame))
    if hasattr(weights, "studies"):                 # a fitted result
        weights = weights_for(weights)
    if isinstance(weights, dict):
        weights = pd.Series(weights, dtype=object)
    if isinstance(weights, pd.Series) and not pd.api.types.is_integer_dtype(weights.index):
        _require(frame, ["study"], "judgements")
        missing = [s for s in frame["study"] if s not in weights.index]
        if missing:
            raise InputError(f"weights: no weight for study '{missing[0]}'")
        weights = weights.reindex(frame["study"])
    try:
        w = np.asarray(weights, dtype=float)
    except (TypeError, ValueError):
        raise InputError("weights: numbers are needed (a fitted result, a mapping or Series study -> weight, "
                         f"or an array in the order of the rows; got {type(weights).__name__})") from None
    if w.shape != (len(frame),):
        raise InputError(f"weights: {w.size} weights for {len(frame)} studies")
    if not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
        raise InputError("weights: must be finite, non-negative and not all zero")
    return w


def summary(judgements: pd.DataFrame, weights=None) -> pd.DataFrame:
    """Weighted proportions of each judgement per domain (rows D1-D5 and overall; columns low, some
    concerns, high, missing), each row summing to 1: the numbers of RevMan's and robvis's summary bar
    chart. ``weights``: None (each study counts once), a fitted result (its study weights), a mapping or
    Series study -> weight, or an array in the order of the rows."""
    _require(judgements, [*DOMAINS, "overall"], "judgements")
    w = _weights(judgements, weights)
    total = w.sum()
    rows = {}
    for domain in (*DOMAINS, "overall"):
        values = judgements[domain].where(judgements[domain].isin(JUDGEMENTS), None)
        row = {j: float(w[(values == j).to_numpy()].sum() / total) for j in JUDGEMENTS}
        row["missing"] = float(w[values.isna().to_numpy()].sum() / total)
        rows[domain] = row
    return pd.DataFrame.from_dict(rows, orient="index")[[*JUDGEMENTS, "missing"]]


def judgement_weights(result, rob: pd.DataFrame, review: str | None = None, outcome: str | None = None) -> dict:
    """What a GRADE risk-of-bias rule needs for one analysis: the overall judgement and weight (share
    of 1) of each study of ``result``, and the share of weight from each overall judgement.

    Returns ``{"studies": DataFrame(study, overall, weight), "high": share, "some concerns": share,
    "low": share, "missing": share}``."""
    frame = judgements(rob, review=review, studies=_studies(result)["study"], result=outcome)
    w = _weights(frame, result)
    share = w / w.sum()
    overall = [v if isinstance(v, str) else None for v in frame["overall"]]      # missing: None
    studies = pd.DataFrame({"study": frame["study"], "overall": overall, "weight": share})
    out = {"studies": studies}
    for j in JUDGEMENTS:
        out[j] = float(share[(frame["overall"] == j).to_numpy()].sum())
    out["missing"] = float(share[frame["overall"].isna().to_numpy()].sum())
    return out


# ------------------------------------------------------------------------------------------------
# sensitivity re-fits


@dataclass(repr=False)
class RobRefit:
    """A re-fit on a subset chosen by overall risk of bias: ``result`` (None when fewer than one study
    is left), the studies ``kept`` and ``excluded``, those ``unassessed`` (no overall judgement) and
    the ``rule`` in words."""

    rule: str
    result: object
    kept: list
    excluded: list
    unassessed: list

    def to_dict(self) -> dict:
        """Strict JSON (NaN and infinities as None)."""
        return json_ready({"rule": self.rule, "kept": self.kept, "excluded": self.excluded,
                           "unassessed": self.unassessed,
                           "result": None if self.result is None else self.result.to_dict()})

    def to_frame(self) -> pd.DataFrame:
        """One row per study of the original fit: ``study``, ``kept`` (in the re-fit) and ``assessed`` (has an
        overall judgement)."""
        studies = [*self.kept, *self.excluded]
        return pd.DataFrame({"study": studies, "kept": [s in self.kept for s in studies],
                             "assessed": [s not in self.unassessed for s in studies]})

    def __str__(self):
        return render(self, "text")

    def __repr__(self):
        return render(self, "text")

    def _repr_html_(self):
        return render(self, "html")


def _refit(result, rob, review, outcome, keep, rule: str) -> RobRefit:
    frame = judgements(rob, review=review, studies=_studies(result)["study"], result=outcome)
    overall = frame["overall"].to_numpy(object)
    kept_mask = np.array([keep(v) for v in overall], dtype=bool)
    studies = result.studies
    kept = studies.loc[kept_mask]
    refit = None
    note = f"risk-of-bias sensitivity analysis: {rule}"
    if len(kept) and result.settings.method in COUNT_METHODS:     # Mantel-Haenszel / Peto: refit the 2x2 tables
        refit = mantel_haenszel.refit(result, kept_mask)
        refit.notes = [note, *refit.notes]
    elif len(kept):
        table = kept[["study", "yi", "vi"]].reset_index(drop=True)
        refit = pool_effects(table, measure=result.measure, settings=result.settings, notes=[note])
    unassessed = [s for s, v in zip(frame["study"], overall) if v is None or v != v]
    return RobRefit(rule=rule, result=refit, kept=list(kept["study"]),
                    excluded=list(studies.loc[~kept_mask, "study"]), unassessed=unassessed)


def refit_low_risk_only(result, rob: pd.DataFrame, review: str | None = None, outcome: str | None = None) -> RobRefit:
    """``result`` re-fitted on the studies judged at low overall risk of bias (RoB 2), with the same
    settings (``result.settings``, as the refits of :mod:`pfps_meta.analysis.sensitivity`); ``review`` and
    ``outcome`` (the table's ``result``, e.g. ``"pain, post"``) choose the rows when a study has several. Studies
    without an overall judgement are left out (they are not known to be at low risk)."""
    return _refit(result, rob, review, outcome, lambda v: v == "low",
                  "low risk of bias only (studies without a judgement left out)")


def refit_excluding_high(result, rob: pd.DataFrame, review: str | None = None, outcome: str | None = None) -> RobRefit:
    """``result`` re-fitted without the studies judged at high overall risk of bias (RoB 2), with the same
    settings. Studies without an overall judgement are kept (nothing says they are at high risk)."""
    return _refit(result, rob, review, outcome, lambda v: v != "high",
                  "excluding high risk of bias (studies without a judgement kept)")
