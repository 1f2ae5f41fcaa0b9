"""A GRADE summary-of-findings table: what the data can suggest, and what only a reviewer can decide.

Layout as in GRADE's summary-of-findings tables (Guyatt et al. 2011, J Clin Epidemiol 64:383-394):
outcome, participants (studies), effect with CI, certainty and the reasons. Randomised trials start at
High, observational studies (``design = "observational"`` in the analysis) at Low; each domain judged "serious" by a rule below moves certainty down one level ("very serious" two).
A domain the data cannot decide is marked ``for reviewer`` and makes the certainty *provisional*; it is
never filled in.

Rules (each suggestion is labelled "suggested" in the table):

- **Risk of bias** from PEDro scores (``trials.csv`` ``pedro_score``, or a ``pedro`` column of the study
  table): serious when trials scoring < 6 (the usual high-quality cut-off; Maher et al. 2003) carry more
  than half of the weight. Any trial without a score leaves the domain to the reviewer.
- **Inconsistency**: serious when I2 >= 50%, or when the prediction interval includes no effect while the
  CI does not (Guyatt et al. 2011, GRADE 7). Not assessable with one study.
- **Indirectness**: always for the reviewer (population, intervention and outcome fit).
- **Imprecision** (Guyatt et al. 2011, GRADE 6): one level for each of (a) the CI includes no effect,
  or includes both an effect beyond the MCID and one short of it, when an MCID is given; (b) fewer
  participants than the optimal information size, taken as 400 for a continuous outcome (GRADE's rule
  of thumb for a standardised difference of 0.2-0.3).
- **Publication bias**: assessed only with >= 10 studies (Egger's classic test, p < 0.10 suggests
  small-study effects); otherwise "not assessable (k < 10)".
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from pfps_meta.effects import measures

LEVELS = ["Very low", "Low", "Moderate", "High"]
OPTIMAL_INFORMATION_SIZE = 400
PEDRO_HIGH_QUALITY = 6


def _pedro_scores(analysis_result, evidence):
    studies = analysis_result.result.studies
    if "pedro" in studies.columns:
        return dict(zip(studies["study"], pd.to_numeric(studies["pedro"], errors="coerce")))
    if evidence is None or "pedro_score" not in evidence.trials.columns:
        return {}
    table = evidence.trials.set_index("trial_id")["pedro_score"]
    return {study: pd.to_numeric(table.get(study), errors="coerce") for study in studies["study"]}


def _risk_of_bias(analysis_result, evidence):
    studies = analysis_result.result.studies
    scores = _pedro_scores(analysis_result, evidence)
    values = np.array([scores.get(s, np.nan) for s in studies["study"]], dtype=float)
    missing = int(np.isnan(values).sum())
    if missing:
        return None, f"for reviewer: PEDro score missing for {missing} of {len(values)} trials"
    low_weight = float(studies["weight"].to_numpy()[values < PEDRO_HIGH_QUALITY].sum())
    if low_weight > 50:
        return 1, f"serious (suggested): trials with PEDro < {PEDRO_HIGH_QUALITY} carry {low_weight:.0f}% of the weight"
    return 0, f"not serious (suggested): trials with PEDro < {PEDRO_HIGH_QUALITY} carry {low_weight:.0f}% of the weight"


def _inconsistency(stats, null):
    if stats["k"] < 2:
        return 0, "not assessable (one study)"
    ci_excludes = not (stats["ci_low"] <= null <= stats["ci_high"])
    pi = stats.get("pi_low")
    pi_includes = pi is not None and np.isfinite(pi) and stats["pi_low"] <= null <= stats["pi_high"]
    reasons = []
    if stats["i2"] >= 50:
        reasons.append(f"I² = {stats['i2']:.0f}%")
    if ci_excludes and pi_includes:
        reasons.append("the prediction interval includes no effect")
    if reasons:
        return 1, "serious (suggested): " + "; ".join(reasons)
    return 0, f"not serious (suggested): I² = {stats['i2']:.0f}%"


def _imprecision(stats, participants, mcid, favourable, null):
    reasons = []
    lo, hi = stats["ci_low"], stats["ci_high"]
    if lo <= null <= hi:
        reasons.append("the CI includes no effect")
    elif mcid is not None:
        threshold = -abs(mcid) if favourable == "lower" else abs(mcid)
        if lo < threshold < hi:
            reasons.append(f"the CI includes effects on both sides of the MCID ({threshold:g})")
    if participants is None:
        size = "participants unknown: optimal information size not checked"
    elif participants < OPTIMAL_INFORMATION_SIZE:
        reasons.append(f"{participants} participants < optimal information size {OPTIMAL_INFORMATION_SIZE}")
        size = ""
    else:
        size = ""
    if reasons:
        level = 2 if len(reasons) >= 2 else 1
        return level, ("very serious" if level == 2 else "serious") + " (suggested): " + "; ".join(reasons)
    return 0, "not serious (suggested)" + (f"; {size}" if size else "")


def _publication_bias(analysis_result):
    from pfps_meta.analysis.sensitivity import SmallStudyWarning, egger

    k = analysis_result.result.stats["k"]
    if k < 10:
        return 0, f"not assessable (k = {k} < 10)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallStudyWarning)
        test = egger(analysis_result.result)
    if test["classic"] is None:
        return None, f"for reviewer: {test['reason']}"
    p = test["classic"]["p"]
    if p < 0.10:
        return 1, f"suspected (suggested): Egger's classic test p = {p:.3f}"
    return 0, f"not detected: Egger's classic test p = {p:.3f}"


def summary_of_findings(analysis_results, evidence=None) -> pd.DataFrame:
    """One row per analysis in GRADE layout (see the module docstring for every rule)."""
    rows, levels = [], []
    for ar in analysis_results:
        a = ar.analysis
        levels.append(ar.result.level if ar.result is not None else a.settings.level)
        if ar.result is None:
            rows.append({"Outcome": a.label, "Participants (studies)": f"0 ({ar.k_expected} expected)",
                         EFFECT: "no data", "Certainty": "not assessable", "Risk of bias": "",
                         "Inconsistency": "", "Indirectness": "", "Imprecision": "", "Publication bias": ""})
            continue
        s = ar.result.stats
        null = 0.0          # the rules below work on the analysis (log for ratios) scale
        show = measures.get(a.measure).to_reporting
        participants = ar.participants
        domains = {
            "Risk of bias": _risk_of_bias(ar, evidence),
            "Inconsistency": _inconsistency(s, null),
            "Indirectness": (None, "for reviewer"),
            "Imprecision": _imprecision(s, participants, a.mcid, a.favourable, null),
            "Publication bias": _publication_bias(ar),
        }
        decided = sum(d for d, _ in domains.values() if d is not None)
        open_domains = [name for name, (d, _) in domains.items() if d is None]
        start = 3 if a.design == "randomised" else 1       # observational evidence starts at Low
        level = LEVELS[max(0, start - decided)]
        certainty = level + (f" (provisional: {', '.join(open_domains).lower()} for reviewer)" if open_domains else "")
        rows.append({
            "Outcome": a.label,
            "Participants (studies)": f"{participants if participants is not None else '?'} ({s['k']})",
            EFFECT: f"{a.measure or 'Effect'} {show(s['estimate']):.2f} ({_percent(ar.result.level)} CI "
                    f"{show(s['ci_low']):.2f} to {show(s['ci_high']):.2f})",
            "Certainty": certainty,
            **{name: text for name, (_, text) in domains.items()},
        })
    # the column is headed by the analyses' level when they share one (each cell names its own anyway)
    head = f"Effect ({_percent(levels[0])} CI)" if len(set(levels)) == 1 else "Effect (CI)"
    return pd.DataFrame(rows).rename(columns={EFFECT: head})


EFFECT = "Effect"


def _percent(level) -> str:
    """0.95 -> "95%", 0.9 -> "90%", 0.975 -> "97.5%"."""
    return f"{100 * float(level):g}%"
