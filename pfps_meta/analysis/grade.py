"""A GRADE summary-of-findings table: what the data can suggest, and what only a reviewer can decide.

Layout as in GRADE's summary-of-findings tables (Guyatt et al. 2011, J Clin Epidemiol 64:383-394):
outcome, participants (studies), effect with CI, certainty and the reasons. Randomised trials start at
High, observational studies (``design = "observational"`` in the analysis) at Low; each domain judged "serious" by a rule below moves certainty down one level ("very serious" two).
A domain the data cannot decide is marked ``for reviewer`` and makes the certainty *provisional*; it is
never filled in.

Rules (each suggestion is labelled "suggested" in the table):

- **Risk of bias**, from RoB 2 overall judgements when the analysis has them (``risk_of_bias=`` or a
  ``rob_overall`` column of the study table): :data:`RISK_OF_BIAS_RULE`, a pure function of the
  judgements and the weights (:func:`risk_of_bias_domain`). Otherwise from PEDro scores (``trials.csv``
  ``pedro_score``, or a ``pedro`` column of the study table): :data:`PEDRO_RULE` (cut-off 6: Maher et al.
  2003). Observational studies have no PEDro score (a scale for trials): their domain is for the reviewer,
  with no PEDro count. Any result without a judgement or score leaves the domain to the reviewer.
- **Inconsistency**: serious when I2 >= 50%, or when the prediction interval includes no effect while the
  CI does not (Guyatt et al. 2011, GRADE 7). Not assessable with one study.
- **Indirectness**: always for the reviewer (population, intervention and outcome fit).
- **Imprecision** (Guyatt et al. 2011, GRADE 6): one level for each of (a) the CI includes no effect,
  or includes both an effect beyond the MCID and one short of it, when an MCID is given; (b) fewer
  participants than the optimal information size, taken as 400 for a continuous outcome (GRADE's rule
  of thumb for a standardised difference of 0.2-0.3).
- **Publication bias**: assessed only with >= 10 studies (Egger's classic test, p < 0.10 suggests
  small-study effects); otherwise "not assessable (k < 10)".
- **Too little evidence**: an analysis with fewer than half of its expected trials, or with one trial, is
  not graded: certainty "not assessed (1 of 10 expected trials)" (:func:`thin_evidence`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pfps_meta.analysis.sensitivity import egger_classic  # noqa: F401  (GRADE's Egger; re-exported)
from pfps_meta.effects import measures
from pfps_meta.evidence.extraction import ROB_JUDGEMENTS, rob_judgement

LEVELS = ["Very low", "Low", "Moderate", "High"]
OPTIMAL_INFORMATION_SIZE = 400
PEDRO_HIGH_QUALITY = 6

#: the RoB 2 rule of the risk-of-bias domain, as printed under the GRADE table
RISK_OF_BIAS_RULE = ("Risk of bias from RoB 2 overall judgements, by share of the pooled weight: more than half "
                     "of the weight from results at high risk or with some concerns lowers certainty one level "
                     "(serious); more than half from results at high risk lowers it two levels (very serious); "
                     "exactly half does not lower it.")
#: the PEDro rule of the risk-of-bias domain (used when no RoB 2 judgements are given)
PEDRO_RULE = (f"Risk of bias from PEDro scores (RoB 2 judgements not available): more than half of the pooled "
              f"weight from trials scoring below {PEDRO_HIGH_QUALITY} of 10 lowers certainty one level (serious).")
RISK_OF_BIAS_JUDGEMENTS = ROB_JUDGEMENTS


def _judgement(value, position):
    from pfps_meta.errors import InputError

    try:
        return rob_judgement(value)
    except ValueError as exc:
        raise InputError(f"judgements: risk-of-bias judgement at position {position}: {exc}") from None


def risk_of_bias_domain(judgements, weights) -> tuple:
    """The GRADE risk-of-bias domain from RoB 2 overall judgements and the results' pooled weights
    (:data:`RISK_OF_BIAS_RULE`; Guyatt et al. 2011, GRADE 4, J Clin Epidemiol 64:407-415, applied by share
    of weight). A pure function: ``judgements`` a sequence of "low" / "some concerns" / "high" (any case;
    "some" accepted; None or "" for a result without one), ``weights`` the same number of non-negative
    weights on any scale (percent or raw). Returns ``(levels, text)``: levels 0, 1 or 2 to lower, or None
    (for the reviewer) when a judgement is missing. "More than half" is strict: a share of exactly 0.5
    does not lower certainty."""
    from pfps_meta.errors import InputError

    if isinstance(judgements, (dict, str)) or isinstance(weights, (dict, str)):
        raise InputError("judgements, weights: two sequences in the same order, not a mapping or a string")
    shown = [_judgement(j, i) for i, j in enumerate(judgements, start=1)]
    try:
        w = np.asarray(weights, dtype=float).ravel()
    except (TypeError, ValueError):
        raise InputError("weights: risk-of-bias weights must be numbers") from None
    if len(w) != len(shown):
        raise InputError(f"weights: {len(shown)} judgements but {len(w)} weights")
    if len(w) == 0 or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise InputError("weights: risk-of-bias weights must be finite, non-negative and not all zero")
    missing = sum(j is None for j in shown)
    if missing:
        return None, f"for reviewer: RoB 2 judgement missing for {missing} of {len(shown)} results"
    high = float(w[[j == "high" for j in shown]].sum())
    concerns = high + float(w[[j == "some concerns" for j in shown]].sum())
    total = float(w.sum())
    shares = f"high risk {100 * high / total:.0f}% of the weight, high or some concerns {100 * concerns / total:.0f}%"
    if 2 * high > total:
        return 2, f"very serious (suggested): {shares}"
    if 2 * concerns > total:
        return 1, f"serious (suggested): {shares}"
    return 0, f"not serious (suggested): {shares}"


def thin_evidence(k_available, k_expected) -> bool:
    """Too little evidence to grade or test: one trial, or fewer than half of the expected trials.
    ``k_expected`` None: no expected list, so only a single trial is thin."""
    from numbers import Integral

    from pfps_meta.errors import InputError

    for name, k in (("k_available", k_available), ("k_expected", k_expected)):
        if (k is not None or name == "k_available") and (not isinstance(k, Integral) or isinstance(k, bool) or k < 0):
            raise InputError(f"{name}: a count of trials (an integer >= 0), not {k!r}")
    return k_available == 1 or (k_expected is not None and 2 * k_available < k_expected)


def _pedro_scores(analysis_result, evidence):
    studies = analysis_result.result.studies
    if "pedro" in studies.columns:
        return dict(zip(studies["study"], pd.to_numeric(studies["pedro"], errors="coerce")))
    if evidence is None or "pedro_score" not in evidence.trials.columns:
        return {}
    table = evidence.trials.set_index("trial_id")["pedro_score"]
    return {study: pd.to_numeric(table.get(study), errors="coerce") for study in studies["study"]}


def _rob_judgements(analysis_result, risk_of_bias):
    """Per study of the analysis, its RoB 2 overall judgement, or None when the analysis has none at all."""
    studies = analysis_result.result.studies
    if risk_of_bias is None and "rob_overall" in studies.columns:
        return list(studies["rob_overall"])
    if risk_of_bias is None:
        return None
    if isinstance(risk_of_bias, pd.DataFrame):
        risk_of_bias = dict(zip(risk_of_bias["study"], risk_of_bias["overall"]))
    found = [risk_of_bias.get(s) for s in studies["study"]]
    return found if any(j is not None for j in found) else None


def _risk_of_bias(analysis_result, evidence, risk_of_bias=None):
    """(levels, text, rule) of the risk-of-bias domain: the RoB 2 rule when judgements exist, else PEDro."""
    studies = analysis_result.result.studies
    judgements = _rob_judgements(analysis_result, risk_of_bias)
    if judgements is not None:
        return (*risk_of_bias_domain(judgements, studies["weight"].to_numpy()), RISK_OF_BIAS_RULE)
    if analysis_result.analysis.design == "observational":
        return None, "for reviewer: no risk-of-bias judgements given for these observational studies", None
    scores = _pedro_scores(analysis_result, evidence)
    values = np.array([scores.get(s, np.nan) for s in studies["study"]], dtype=float)
    missing = int(np.isnan(values).sum())
    if missing:
        return None, f"for reviewer: PEDro score missing for {missing} of {len(values)} trials", PEDRO_RULE
    low_weight = float(studies["weight"].to_numpy()[values < PEDRO_HIGH_QUALITY].sum())
    verdict = (1, "serious") if 2 * low_weight > studies["weight"].sum() else (0, "not serious")
    return (verdict[0], f"{verdict[1]} (suggested): trials with PEDro < {PEDRO_HIGH_QUALITY} carry "
                        f"{low_weight:.0f}% of the weight", PEDRO_RULE)


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
    res = analysis_result.result
    k = res.stats["k"]
    if k < 10:
        return 0, f"not assessable (k = {k} < 10)"
    studies = res.studies
    yi, vi = studies["yi"].to_numpy(dtype=float), studies["vi"].to_numpy(dtype=float)
    keep = np.isfinite(yi) & np.isfinite(vi)
    test = egger_classic(yi[keep], vi[keep])
    if test is None:
        return None, "for reviewer: all studies have the same standard error, so Egger's test is undefined"
    p = test["p"]
    if p < 0.10:
        return 1, f"suspected (suggested): Egger's classic test p = {p:.3f}"
    return 0, f"not detected: Egger's classic test p = {p:.3f}"


def _not_graded_row(ar, reason, effect="no data") -> dict:
    return {"Outcome": ar.analysis.label, "Participants (studies)": f"0 ({ar.k_expected} expected)",
            EFFECT: effect, "Certainty": reason, "Risk of bias": "", "Inconsistency": "", "Indirectness": "",
            "Imprecision": "", "Publication bias": ""}


def _effect_text(ar) -> str:
    a, s = ar.analysis, ar.result.stats
    show = measures.get(a.measure).to_reporting
    return (f"{a.measure or 'Effect'} {show(s['estimate']):.2f} ({_percent(ar.result.level)} CI "
            f"{show(s['ci_low']):.2f} to {show(s['ci_high']):.2f})")


def _graded_row(ar, evidence, risk_of_bias, rules) -> dict:
    a, s = ar.analysis, ar.result.stats
    null = 0.0          # the rules below work on the analysis (log for ratios) scale
    participants = ar.participants
    *rob, rule = _risk_of_bias(ar, evidence, risk_of_bias)
    if rule and rule not in rules:
        rules.append(rule)
    domains = {
        "Risk of bias": tuple(rob),
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
    return {"Outcome": a.label,
            "Participants (studies)": f"{participants if participants is not None else '?'} ({s['k']})",
            EFFECT: _effect_text(ar), "Certainty": certainty,
            **{name: text for name, (_, text) in domains.items()}}


def summary_of_findings(analysis_results, evidence=None, risk_of_bias=None) -> pd.DataFrame:
    """One row per analysis in GRADE layout (see the module docstring for every rule).

    ``risk_of_bias``: RoB 2 overall judgements, a mapping study -> judgement or a frame with ``study`` and
    ``overall`` columns; when an analysis has them its risk-of-bias domain follows
    :data:`RISK_OF_BIAS_RULE`, else PEDro (:data:`PEDRO_RULE`). The rules used are listed, in order, in
    the returned frame's ``attrs["rules"]`` (the report prints them under the table)."""
    rows, levels, rules = [], [], []
    for ar in analysis_results:
        levels.append(ar.result.level if ar.result is not None else ar.analysis.settings.level)
        if ar.result is None:
            rows.append(_not_graded_row(ar, "not assessable"))
        elif thin_evidence(ar.k_available, ar.k_expected):
            row = _not_graded_row(ar, f"not assessed ({ar.k_available} of {ar.k_expected} expected "
                                      f"trial{'s' if ar.k_expected != 1 else ''})", _effect_text(ar))
            participants = ar.participants
            row["Participants (studies)"] = f"{participants if participants is not None else '?'} ({ar.k_available})"
            rows.append(row)
        else:
            rows.append(_graded_row(ar, evidence, risk_of_bias, rules))
    # the column is headed by the analyses' level when they share one (each cell names its own anyway)
    head = f"Effect ({_percent(levels[0])} CI)" if len(set(levels)) == 1 else "Effect (CI)"
    frame = pd.DataFrame(rows).rename(columns={EFFECT: head})
    frame.attrs["rules"] = rules
    return frame


EFFECT = "Effect"


def _percent(level) -> str:
    """0.95 -> "95%", 0.9 -> "90%", 0.975 -> "97.5%"."""
    return f"{100 * float(level):g}%"
