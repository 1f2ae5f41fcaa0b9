"""The extraction workbench: from a spec's expected trials to a sheet to fill, and back into the analysis.

1. :func:`template` lists one row per expected trial x arm x outcome x timepoint of every evidence-base
   analysis in a spec, with what is already known filled in (arm label, scale, range, direction, n
   randomised, any n/mean/SD already curated) and the numeric cells empty, in the columns of
   ``data/outcomes.csv`` plus the fields papers print instead of a mean and SD (se, ci_low, ci_high,
   median, q1, q3, min, max). ``pfps-meta template SPEC [--out FILE]`` writes it.
2. The user fills what each paper prints, with ``source_location`` and ``quote``.
3. :func:`load_extraction` reads the filled sheet with the checks of ``data/outcomes.csv`` (a status
   left empty is set from what the row holds: verified, derived or not_recovered; NA and the other
   tokens of ``load.MISSING_TOKENS`` mean empty), :func:`check_sheet` refuses a filled row that no
   analysis of the spec expects (a mistyped trial_id, arm, outcome, timepoint or scale, naming the
   sheet's line), and :func:`with_extraction` lays its rows over the evidence base: a filled row replaces the curated row
   with the same trial, arm, outcome, scale, timepoint and value type. ``pfps-meta reproduce SPEC
   --extraction FILE`` (and ``report``) then pool with it.

:func:`rob_template` is the risk-of-bias sheet of a spec: one row per trial for the PEDro scale and one per
trial x outcome x timepoint (a result) for RoB 2, in the columns of ``data/risk_of_bias.csv``
(:data:`ROB_COLUMNS`), with what that table already holds filled in; a filled sheet is read and checked
by ``pfps_meta.analysis.risk_of_bias.read_risk_of_bias``.

:func:`todo` lists, for each trial an analysis is still missing, which numbers are missing and where
they are likely printed, from the curated notes and the trial's citation.
"""

from __future__ import annotations

import csv
import io
from dataclasses import replace

import numpy as np
import pandas as pd

from pfps_meta.errors import InputError
from pfps_meta.evidence.curated import (PRINTED_FIELDS, Evidence, check_outcomes, check_arm_sizes, entry_positions,
                                        entry_rows, key_columns)
from pfps_meta.inputs.load import FILE_COLUMN, ROW_COLUMN, is_missing, read_csv, where_in_table

SHEET_COLUMNS = ("trial_id", "arm", "role", "outcome", "scale", "scale_min", "scale_max", "higher_is_better",
                 "integer_valued", "timepoint", "timepoint_weeks", "value_type", "n_randomised_trial", "n",
                 "n_type", "n_alternatives", "mean", "sd", *PRINTED_FIELDS, "status", "source_citation", "source_location",
                 "source_url", "quote", "notes", "analyses")
KEY = ("trial_id", "arm", "outcome", "scale", "timepoint", "value_type")
NUMERIC = ("n", "mean", "sd", *PRINTED_FIELDS)
#: the columns of ``data/risk_of_bias.csv`` and of the risk-of-bias sheet (see pfps_meta.analysis.risk_of_bias)
ROB_DOMAINS = ("D1", "D2", "D3", "D4", "D5")
#: RoB 2 (Sterne et al. 2019, BMJ 366:l4898): what each domain judges, and the three judgements, mildest first
ROB_DOMAIN_NAMES = {"D1": "randomisation process", "D2": "deviations from intended interventions",
                    "D3": "missing outcome data", "D4": "measurement of the outcome",
                    "D5": "selection of the reported result"}
ROB_JUDGEMENTS = ("low", "some concerns", "high")
# spellings read as a judgement (RoB 1's "unclear" is read as RoB 2's "some concerns")
ROB_SPELLINGS = {"some": "some concerns", "some concern": "some concerns", "unclear": "some concerns"}


def rob_judgement(value):
    """The RoB 2 judgement a cell holds (one of :data:`ROB_JUDGEMENTS`, case and spaces ignored, the
    spellings of :data:`ROB_SPELLINGS` accepted), or None for an empty or missing cell; ValueError for
    anything else (the caller names where it was)."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    text = " ".join(str(value).strip().lower().split())
    text = ROB_SPELLINGS.get(text, text)
    if text == "":
        return None
    if text not in ROB_JUDGEMENTS:
        raise ValueError(f"{value!r} is not one of {', '.join(ROB_JUDGEMENTS)} (a RoB 2 judgement, or empty)")
    return text
PEDRO_ITEMS = tuple(f"pedro_{i}" for i in range(1, 12))
ROB_COLUMNS = ("study", "review", "tool", "result", *ROB_DOMAINS, "overall", "pedro_total", *PEDRO_ITEMS, "status",
               "citation", "location", "quote")


def _text(value) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{label}={n}" for label, n in value.items())
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def template(spec, evidence: Evidence) -> pd.DataFrame:
    """The extraction sheet of ``spec`` (a loaded :class:`~pfps_meta.evidence.specs.Spec`): one row per
    trial x arm x outcome x scale x timepoint that its evidence-base analyses expect."""
    o = evidence.outcomes
    trials = evidence.trials.set_index("trial_id")
    rows = {}
    for analysis in spec.analyses:
        for want in _arm_keys(analysis, o):
            if want:
                arm, timepoint = want["arm"], want["timepoint"]
                entry = _Entry(want["trial_id"], want["scale"], timepoint)
                known = entry_rows(o, analysis, entry, arm)
                if known.empty:        # nothing curated yet: one row with the facts the spec gives
                    known = pd.DataFrame([{"trial_id": entry.trial, "arm": arm, "outcome": analysis.outcome,
                                           "scale": entry.scale or "", "timepoint": timepoint,
                                           "value_type": "final",
                                           "higher_is_better": analysis.favourable == "higher"}])
                for record in known.to_dict("records"):
                    key = tuple(_text(record.get(k)) for k in KEY)
                    row = rows.setdefault(key, {c: "" for c in SHEET_COLUMNS})
                    for column in SHEET_COLUMNS:
                        if column in record and column not in ("status", "quote", "source_location", "notes",
                                                               "n_randomised_trial", "analyses"):
                            row[column] = _text(record[column])
                    if record.get("status") in ("verified", "inferred", "derived", "partial"):
                        row["quote"] = _text(record.get("quote"))
                        row["source_location"] = _text(record.get("source_location"))
                        row["status"] = "" if record.get("status") == "partial" else _text(record.get("status"))
                    row["notes"] = _text(record.get("notes"))
                    if entry.trial in trials.index:
                        row["n_randomised_trial"] = _text(trials.loc[entry.trial, "n_randomised"])
                        if not row["source_citation"]:
                            row["source_citation"] = _text(trials.loc[entry.trial, "citation"])
                    row["analyses"] = ";".join(dict.fromkeys(filter(None, [*row["analyses"].split(";"), analysis.key])))
    frame = pd.DataFrame(list(rows.values()), columns=list(SHEET_COLUMNS))
    return frame.sort_values(["trial_id", "outcome", "timepoint", "arm"], kind="stable").reset_index(drop=True)


def rob_template(spec, rob: pd.DataFrame | None = None) -> pd.DataFrame:
    """The risk-of-bias sheet of ``spec`` (a loaded Spec): for every trial its evidence-base analyses name,
    one PEDro row (the trial) and one RoB 2 row per outcome and timepoint the analyses pool (RoB 2 judges
    a result, not a trial), in :data:`ROB_COLUMNS`. Rows of ``rob`` (the table of
    ``data/risk_of_bias.csv``, read as text) with the same study, tool and result fill theirs; the
    others are empty with status ``not_recovered``."""
    if not (hasattr(spec, "review") and hasattr(spec, "analyses")):
        raise InputError(f"spec: a loaded Spec (pfps_meta.evidence.specs) is needed (got {type(spec).__name__})")
    if rob is not None and not isinstance(rob, pd.DataFrame):
        raise InputError(f"rob: the risk-of-bias table (a DataFrame) or None is needed (got {type(rob).__name__})")
    review = str(spec.review.get("id", ""))
    wanted = {}
    for analysis in spec.analyses:
        for entry in analysis.trials:
            timepoints = entry.timepoints or [entry.timepoint or analysis.timepoint]
            wanted.setdefault((entry.trial, "PEDro", "trial"), None)
            for timepoint in timepoints:
                wanted.setdefault((entry.trial, "RoB2", f"{analysis.outcome}, {timepoint}"), None)
    known = {}
    if rob is not None:
        for record in rob.to_dict("records"):
            known[(_text(record.get("study")), _text(record.get("tool")), _text(record.get("result")))] = record
    rows = []
    for key in wanted:
        row = {c: "" for c in ROB_COLUMNS}
        row.update(study=key[0], review=review, tool=key[1], result=key[2], status="not_recovered")
        for column, value in (known.get(key) or {}).items():
            if column in row:
                row[column] = _text(value)
        rows.append(row)
    frame = pd.DataFrame(rows, columns=list(ROB_COLUMNS))
    return frame.sort_values(["tool", "study", "result"], kind="stable").reset_index(drop=True)


class _Entry:
    """The parts of a spec's trial entry that :func:`entry_rows` reads."""

    def __init__(self, trial, scale, timepoint):
        self.trial, self.scale, self.timepoint = trial, scale, timepoint


def _arm_keys(analysis, outcomes) -> list[dict]:
    """The arm rows an analysis expects (trial_id, arm, outcome, timepoint, scale): the spec's own list
    (``Analysis.arm_keys``, which covers multilevel rows and every arm of a network), else its entries'
    two arms. Without ``outcomes`` (checking a sheet), a network's arms are all those of its nodes'
    roles in the evidence it was loaded with: any arm of the outcome and timepoint is accepted."""
    if getattr(analysis, "model", "pairwise") == "network" and getattr(analysis, "data", None) is None:
        if outcomes is None:
            return [{"trial_id": None, "arm": None, "outcome": analysis.outcome, "timepoint": analysis.timepoint,
                     "scale": None}]
        return analysis.arm_keys(outcomes)
    if outcomes is not None and hasattr(analysis, "arm_keys"):
        return analysis.arm_keys(outcomes)
    keys = []
    for entry in analysis.trials:
        subs = [(entry.timepoint or analysis.timepoint, entry.scale)]
        if entry.timepoints:
            subs = [(t, entry.scale) for t in entry.timepoints]
        elif entry.scales:
            subs = [(entry.timepoint or analysis.timepoint, s) for s in entry.scales]
        elif getattr(analysis, "options", {}).get("inner") == "timepoint":
            listed = analysis.options.get("timepoints")
            subs = [(t, entry.scale) for t in listed] if listed else [(None, entry.scale)]
        elif getattr(analysis, "options", {}).get("inner") == "scale":
            listed = analysis.options.get("scales")
            subs = [(entry.timepoint or analysis.timepoint, s) for s in listed] if listed else \
                [(entry.timepoint or analysis.timepoint, None)]
        for timepoint, scale in subs:
            for arm in (entry.exp, entry.ctrl):
                keys.append({"trial_id": entry.trial, "arm": arm, "outcome": analysis.outcome,
                             "timepoint": timepoint, "scale": scale})
    return keys


def to_csv_text(frame: pd.DataFrame) -> str:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
    return buffer.getvalue()


def load_extraction(path) -> pd.DataFrame:
    """A filled extraction sheet, checked as ``data/outcomes.csv`` is. A status left empty is set from the
    row: ``verified`` with n, mean and SD; ``derived`` when the mean or SD comes from printed fields;
    ``partial`` with some numbers; ``not_recovered`` with none."""
    df = read_csv(path)
    for column in ("status", "trial_id", "arm"):
        if column not in df.columns:
            raise InputError(f"missing column '{column}': is this an extraction sheet from 'pfps-meta template'?",
                             file=str(path))
    def filled(row, columns):
        return [c for c in columns if c in row and not is_missing(row[c])]
    statuses = []
    for row in df.to_dict("records"):
        status = "" if is_missing(row["status"]) else str(row["status"]).strip()
        if not status:
            has = filled(row, NUMERIC)
            printed = filled(row, PRINTED_FIELDS)
            if printed and not ({"mean", "sd"} <= set(has)):
                status = "derived"
            elif {"n", "mean", "sd"} <= set(has):
                status = "verified"
            elif has:
                status = "partial"
            else:
                status = "not_recovered"
        statuses.append(status)
    df["status"] = statuses
    return check_outcomes(df)


def check_sheet(sheet: pd.DataFrame, specs) -> None:
    """Refuse a filled row of an extraction sheet that no analysis of ``specs`` (loaded
    :class:`~pfps_meta.evidence.specs.Spec` objects) expects, naming the sheet, its line and the column
    that matches nothing (trial_id, outcome, arm, timepoint or scale) with the values that would match:
    such a row would otherwise be left out of every analysis without a word."""
    expected = []
    for spec in specs:
        for analysis in spec.analyses:
            for want in _arm_keys(analysis, None):
                expected.append({k: want[k] for k in ("trial_id", "outcome", "arm", "timepoint", "scale")})
    names = ", ".join(sorted({spec.path.name for spec in specs})) or "the spec"
    for position, row in enumerate(sheet.to_dict("records")):
        if row["status"] == "not_recovered":
            continue
        candidates = expected
        for column in ("trial_id", "outcome", "arm", "timepoint", "scale"):
            value = str(row.get(column, "")).strip()
            matching = [e for e in candidates if e[column] is None or e[column] == value]
            if not matching:
                known = sorted({e[column] for e in candidates if e[column] is not None})
                context = "" if column == "trial_id" else f" for {row['trial_id']}" + \
                    ("" if column == "outcome" else f" {row['outcome']}")
                raise InputError(f"{column} '{value}' matches no analysis in {names}{context} (expected: "
                                 f"{', '.join(known)}); a row that matches nothing would be left out", column=column,
                                 **where_in_table(sheet, position))
            candidates = matching


def with_extraction(evidence: Evidence, sheet: pd.DataFrame) -> Evidence:
    """The evidence base with the filled sheet's rows in place of the curated rows they describe. A filled
    row whose trial_id is not in ``trials.csv`` is refused with its line (:func:`check_sheet` checks the
    rest against a spec's analyses)."""
    if not isinstance(getattr(evidence, "trials", None), pd.DataFrame):
        raise InputError(f"evidence: a loaded evidence base is needed (got {type(evidence).__name__})")
    missing = [c for c in ("trial_id", "status") if not isinstance(sheet, pd.DataFrame) or c not in sheet.columns]
    if missing:
        raise InputError(f"sheet: an extraction sheet with columns {', '.join(SHEET_COLUMNS[:3])}, ... is needed "
                         f"(missing {', '.join(missing)}; read it with load_extraction)")
    known = set(evidence.trials["trial_id"])
    for position, (trial, status) in enumerate(zip(sheet["trial_id"], sheet["status"])):
        if status != "not_recovered" and trial not in known:
            raise InputError(f"trial_id '{trial}' is not a trial of {evidence.data_dir / 'trials.csv'}; a row that "
                             "matches no trial would be left out", column="trial_id", **where_in_table(sheet, position))

    def key(frame):
        return frame[list(KEY)].astype(str).agg("|".join, axis=1)

    filled = sheet["status"] != "not_recovered"
    curated = evidence.outcomes
    keep = ~key(curated).isin(set(key(sheet[filled])))
    columns = [c for c in curated.columns if c in sheet.columns]
    parts = []
    for frame, rows in ((curated, keep), (sheet, filled)):
        part = frame.loc[rows, columns if frame is sheet else list(curated.columns)].copy()
        part[FILE_COLUMN] = frame.attrs.get("source")
        part[ROW_COLUMN] = np.flatnonzero(rows.to_numpy()) + 1
        parts.append(part)
    merged = pd.concat(parts, ignore_index=True)
    merged["n_alternatives"] = [a if isinstance(a, dict) else {} for a in merged["n_alternatives"]]
    merged.attrs = dict(curated.attrs)
    merged.attrs["extraction"] = sheet.attrs.get("source")
    out = replace(evidence, outcomes=merged)
    check_arm_sizes(out)
    return out


def todo(analysis_result, evidence: Evidence) -> pd.DataFrame:
    """For each trial the analysis still misses: what is missing and where it is likely printed."""
    a = analysis_result.analysis
    o = evidence.outcomes
    trials = evidence.trials.set_index("trial_id")
    records, keys = [], key_columns(o)
    for missing in analysis_result.studies.missing:
        trial = missing["trial"]
        entry = next(t for t in a.trials if t.trial == trial)
        timepoint = entry.timepoint or a.timepoint
        gaps, notes = [], set()
        for arm in (entry.exp, entry.ctrl):
            positions = entry_positions(o, a, entry, arm, keys)      # (the rows of entry_rows)
            if not len(positions):
                gaps.append(f"{arm}: n, mean, SD (no row yet)")
                continue
            row = o.iloc[positions[0]]
            absent = [name for name in ("n", "mean", "sd") if np.isnan(row[name])]
            if absent:
                gaps.append(f"{arm}: {', '.join(absent)}")
            if np.isnan(row["scale_min"]) or np.isnan(row["scale_max"]):
                gaps.append(f"{arm}: scale range")
            if str(row["notes"]).strip():
                notes.add(str(row["notes"]).strip())
        citation = _text(trials.loc[trial, "citation"]) if trial in trials.index else trial
        where = ("the results table of post-intervention scores per group (mean and SD, or median and IQR) in "
                 f"{citation}; failing that, the trial registration's posted results")
        records.append({"Trial": trial, "Timepoint": timepoint, "Missing": "; ".join(gaps) or missing["reason"],
                        "Where it is likely printed": where, "Curated notes": " ".join(sorted(notes))})
    return pd.DataFrame(records, columns=["Trial", "Timepoint", "Missing", "Where it is likely printed",
                                          "Curated notes"])
