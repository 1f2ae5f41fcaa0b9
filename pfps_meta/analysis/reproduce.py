"""Published vs reproduced: one row per analysis, with a status a student can read.

Status:
- ``reproduced``: estimate and both CI bounds equal the published values at the precision printed in
  the paper (each number rounded half-up to its own number of decimals);
- ``differs``: all expected studies have data but at least one number differs (by how much is given);
- ``incomplete``: some expected studies have no usable data (named in ``missing_trials``); any pooled
  numbers shown come from the studies that do;
- ``no_target``: the analysis names no published result.

``k_expected`` counts the trials of the analysis's trial list, which is the project's reconstruction of
which trials the review pooled (the reviews' own forest plots were not all recovered): rows say so
(``trial_list``), and the text table prints it. Values the toolkit converted or derived from what a
paper printed (a mean and SD from a median and IQR, an SE from a CI, an effect from a t statistic) are
listed per row in ``converted`` with the rule used and the source's quote (:func:`converted_values`).
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal

import pandas as pd

from pfps_meta.effects import measures
from pfps_meta.formatting import frame_records
from pfps_meta.evidence.specs import AnalysisResult

COLUMNS = ["analysis", "label", "comparison", "outcome", "measure", "published_estimate", "published_ci_low",
           "published_ci_high", "reproduced_estimate", "reproduced_ci_low", "reproduced_ci_high",
           "k_available", "k_expected", "participants", "missing_trials", "status", "difference", "method",
           "ci", "smd_convention", "trial_list", "converted"]

#: how a trial list is described wherever it is shown
RECONSTRUCTION = "the project's reconstruction of the review's trial list"


def _text(value) -> str:
    return "" if value is None or (isinstance(value, float) and value != value) else str(value)


def _effect_conversion(study, record, analysis, evidence) -> dict | None:
    """A between-group effect row of data/effects.csv marked ``derived``: its derivation and quote."""
    if "derived" not in _text(record.get("input")):
        return None
    item = {"study": study, "value": "between-group effect", "rule": _text(record.get("input")).replace(
                "derived between-group effect ", "derived from the reported "),
            "location": "", "quote": ""}
    if evidence is not None:
        eff = evidence.effects
        rows = eff[(eff["trial_id"] == study) & (eff["outcome"] == analysis.outcome)
                   & (eff["measure"] == analysis.measure) & (eff["status"] == "derived")]
        reported = _text(record.get("input")).partition("(")[2].rstrip(")")
        exact = rows[rows["reported"].astype(str) == reported]
        if len(exact) or len(rows):
            row = (exact if len(exact) else rows).iloc[0]
            item.update(rule=f"from {row['reported']}: {row['derivation']}", quote=_text(row.get("quote")),
                        location=f"{_text(row.get('source_citation'))}, {_text(row.get('source_location'))}")
    return item


def _arm_conversion(study, record, analysis, evidence) -> dict | None:
    """Arm means/SDs converted by the one entrance (inputs.conversions): its rule and the arms' quotes."""
    rule = _text(record.get("conversion"))
    if not rule:
        return None
    item = {"study": study, "value": "arm means and SDs", "rule": rule, "location": "", "quote": ""}
    if evidence is not None:
        out = evidence.outcomes
        rows = out[(out["trial_id"] == study) & (out["outcome"] == analysis.outcome)]
        quotes = list(dict.fromkeys(q for q in rows["quote"].map(_text) if q)) if "quote" in rows else []
        places = list(dict.fromkeys(_text(r) for r in rows.get("source_location", []) if _text(r)))
        item.update(quote=" / ".join(quotes), location="; ".join(places))
    return item


def converted_values(analysis_result, evidence=None) -> list[dict]:
    """Every value of the analysis converted or derived from what its source printed, one dict per study:
    ``study``, ``value`` (what was converted), ``rule`` (the formula used, as inputs.conversions or the
    curated derivation states it), ``location`` and ``quote`` (the source's text, from data/ when
    ``evidence`` is given; empty otherwise). A table of estimates with CIs (e.g. odds ratios) gives one
    entry for all its studies: the SE is derived from the CI's width on the log scale."""
    res = analysis_result.result
    if res is None:
        return []
    a, studies = analysis_result.analysis, res.studies
    out = []
    read = [c for c in ("study", "input", "conversion") if c in studies.columns]    # all the records need
    for record in frame_records(studies, read):
        study = _text(record.get("study"))
        item = _effect_conversion(study, record, a, evidence) or _arm_conversion(study, record, a, evidence)
        if item is not None:
            out.append(item)
    if "ci_low_input" in studies.columns and studies["ci_low_input"].notna().any():
        measure = measures.get(a.measure)
        scale = "log scale" if measure.ratio else "analysis scale"
        sources = list(dict.fromkeys(_text(x) for x in studies.get("source", []) if _text(x)))
        out.append({"study": f"all {int(studies['ci_low_input'].notna().sum())} studies",
                    "value": "standard errors",
                    "rule": f"se = (upper - lower) / (2 z) on the {scale}, from each study's printed "
                            f"{100 * res.level:g}% CI (a printed CI's level is taken as the input level)",
                    "location": "; ".join(sources), "quote": ""})
    return out



def decimals(text) -> int:
    """Number of decimals printed in ``text`` ("-1.5" -> 1, "0.03" -> 2, "37" -> 0)."""
    text = str(text).strip()
    return len(text.split(".")[1]) if "." in text else 0


def round_half_up(value: float, places: int) -> float:
    return float(Decimal(repr(value)).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


def on_reporting_scale(value, measure):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return measures.get(measure).to_reporting(value)


def compare(analysis_result: AnalysisResult, evidence=None) -> dict:
    """One published-vs-reproduced row for an analysis result (``evidence``: the curated tables, for the
    quotes of converted values)."""
    a = analysis_result.analysis
    pub = analysis_result.published
    res = analysis_result.result
    stats = res.stats if res is not None else {}
    repro = {name: on_reporting_scale(stats.get(name), a.measure) for name in ("estimate", "ci_low", "ci_high")}
    row = {
        "analysis": a.key, "label": a.label, "comparison": a.comparison, "outcome": a.outcome,
        "measure": a.measure,
        "published_estimate": pub["estimate"] if pub else None,
        "published_ci_low": pub["ci_low"] if pub else None,
        "published_ci_high": pub["ci_high"] if pub else None,
        "reproduced_estimate": repro["estimate"], "reproduced_ci_low": repro["ci_low"],
        "reproduced_ci_high": repro["ci_high"],
        "k_available": analysis_result.k_available, "k_expected": analysis_result.k_expected,
        "participants": analysis_result.participants,
        "missing_trials": [m["trial"] for m in analysis_result.studies.missing],
        "method": a.settings.method, "ci": a.settings.ci_method,
        "smd_convention": a.settings.smd_convention if measures.get(a.measure).uses_smd_settings else None,
        "difference": None,
        "trial_list": RECONSTRUCTION if a.trials else None,
        "converted": converted_values(analysis_result, evidence),
    }
    if pub is None:
        row["status"] = "no_target"
    elif row["missing_trials"] or res is None:
        row["status"] = "incomplete"
    else:
        diffs = {}
        same = True
        for name in ("estimate", "ci_low", "ci_high"):
            places = decimals(pub[name + "_text"])
            rounded = round_half_up(repro[name], places)
            diffs[name] = repro[name] - pub[name]
            same &= abs(rounded - pub[name]) < 0.5 * 10 ** -places
        row["status"] = "reproduced" if same else "differs"
        row["difference"] = {k: round(v, 6) for k, v in diffs.items()}
    return row


def reproduce_rows(results: list[AnalysisResult], evidence=None) -> list[dict]:
    """One JSON-ready dict per analysis (the fields of ``pfps-meta reproduce --format json``).
    ``evidence``: one Evidence for all results, or a list with one (or None) per result."""
    each = evidence if isinstance(evidence, (list, tuple)) else [evidence] * len(results)
    return [compare(r, e) for r, e in zip(results, each)]


def reproduce_table(results: list[AnalysisResult], evidence=None) -> pd.DataFrame:
    return pd.DataFrame(reproduce_rows(results, evidence), columns=COLUMNS)


def interval_text(row, prefix) -> str:
    """``row``'s (a :func:`compare` row) ``prefix`` ("published" or "reproduced") estimate and CI as text, both
    at the paper's printed precision where it printed more than two decimals (a risk difference published
    as 0.012 (0.004 to 0.020) is not shown as 0.01 [0.00, 0.02]), else at two; "-" for a missing value."""
    if prefix not in ("published", "reproduced"):
        from pfps_meta.errors import InputError

        raise InputError(f"prefix: 'published' or 'reproduced', not {prefix!r}")
    places = max([2] + [decimals(f"{row[f'published_{n}']:.6f}".rstrip("0"))
                        for n in ("estimate", "ci_low", "ci_high") if isinstance(row.get(f"published_{n}"), float)])

    def num(value):
        return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{places}f}"

    return f"{num(row[prefix + '_estimate'])} [{num(row[prefix + '_ci_low'])}, {num(row[prefix + '_ci_high'])}]"


def format_table(frame) -> str:
    """A plain-text table: published vs reproduced, side by side."""
    lines = []
    header = f"{'analysis':24} {'measure':7} {'published':24} {'reproduced':24} {'k':>7} {'status':11} detail"
    lines.append(header)
    lines.append("-" * len(header))
    rows = frame if isinstance(frame, list) else frame.to_dict("records")
    for row in rows:
        detail = ""
        if row["status"] == "incomplete":
            detail = f"missing: {', '.join(row['missing_trials'])}"
        elif row["status"] == "differs":
            d = row["difference"]
            detail = f"by {d['estimate']:+.3f} (estimate), {d['ci_low']:+.3f} / {d['ci_high']:+.3f} (CI)"
        lines.append(f"{row['analysis']:24} {row['measure'] or '-':7} {interval_text(row, 'published'):24} "
                     f"{interval_text(row, 'reproduced'):24} {row['k_available']:>3}/{row['k_expected']:<3} "
                     f"{row['status']:11} {detail}")
    if any(row.get("trial_list") for row in rows):
        lines += ["", f"k: trials with data / trials expected in {RECONSTRUCTION} (not the review's own list)."]
    lines += _converted_lines(rows)
    return "\n".join(lines)


def _converted_lines(rows) -> list[str]:
    """The converted or derived values of every row, with the rule and the source's quote."""
    lines = []
    for row in rows:
        for item in row.get("converted") or ():
            if not lines:
                lines += ["", "Converted or derived values (marked in the report and its forest plots):"]
            lines.append(f"  {row['analysis']}, {item['study']}, {item['value']}: {item['rule']}")
            if item.get("quote"):
                lines.append(f"    source: \"{item['quote']}\"" + (f" ({item['location']})" if item.get("location") else ""))
            elif item.get("location"):
                lines.append(f"    source: {item['location']}")
    return lines


def preset_statuses(analysis, evidence) -> dict:
    """For one analysis: which convention presets reproduce its published target, and how closely."""
    from pfps_meta.analysis.presets import PRESETS, run_with_preset

    out = {}
    for name in PRESETS:
        row = compare(run_with_preset(analysis, evidence, name))
        out[name] = {key: row[key] for key in ("status", "reproduced_estimate", "reproduced_ci_low",
                                                "reproduced_ci_high", "difference")}
    return out
