"""Published vs reproduced: one row per analysis, with a status a student can read.

Status:
- ``reproduced``: estimate and both CI bounds equal the published values at the precision printed in
  the paper (each number rounded half-up to its own number of decimals);
- ``differs``: all expected studies have data but at least one number differs (by how much is given);
- ``incomplete``: some expected studies have no usable data (named in ``missing_trials``); any pooled
  numbers shown come from the studies that do;
- ``no_target``: the analysis names no published result.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal

import pandas as pd

from pfps_meta.effects import measures
from pfps_meta.evidence.specs import AnalysisResult

COLUMNS = ["analysis", "label", "comparison", "outcome", "measure", "published_estimate", "published_ci_low",
           "published_ci_high", "reproduced_estimate", "reproduced_ci_low", "reproduced_ci_high",
           "k_available", "k_expected", "participants", "missing_trials", "status", "difference", "method",
           "ci", "smd_convention"]


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


def compare(analysis_result: AnalysisResult) -> dict:
    """One published-vs-reproduced row for an analysis result."""
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


def reproduce_rows(results: list[AnalysisResult]) -> list[dict]:
    """One JSON-ready dict per analysis (the fields of ``pfps-meta reproduce --format json``)."""
    return [compare(r) for r in results]


def reproduce_table(results: list[AnalysisResult]) -> pd.DataFrame:
    return pd.DataFrame(reproduce_rows(results), columns=COLUMNS)


def format_table(frame) -> str:
    """A plain-text table: published vs reproduced, side by side."""
    def num(value, places=2):
        return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{places}f}"

    def interval(row, prefix):
        return (f"{num(row[prefix + '_estimate'])} [{num(row[prefix + '_ci_low'])}, "
                f"{num(row[prefix + '_ci_high'])}]")

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
        lines.append(f"{row['analysis']:24} {row['measure'] or '-':7} {interval(row, 'published'):24} "
                     f"{interval(row, 'reproduced'):24} {row['k_available']:>3}/{row['k_expected']:<3} "
                     f"{row['status']:11} {detail}")
    return "\n".join(lines)


def preset_statuses(analysis, evidence) -> dict:
    """For one analysis: which convention presets reproduce its published target, and how closely."""
    from pfps_meta.analysis.presets import PRESETS, run_with_preset

    out = {}
    for name in PRESETS:
        row = compare(run_with_preset(analysis, evidence, name))
        out[name] = {key: row[key] for key in ("status", "reproduced_estimate", "reproduced_ci_low",
                                                "reproduced_ci_high", "difference")}
    return out
