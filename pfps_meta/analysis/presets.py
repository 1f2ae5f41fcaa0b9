"""Convention presets: named bundles of settings that reproduce what other tools do by default, and a
diff that shows every reported number of one analysis under two presets side by side.

Sources: ``docs/conventions.md`` (and ``shared/notes/conventions.md``, where the tools were run side by
side); RevMan Web's 2024-2025 methods change (REML, HKSJ, Q-profile, t-based prediction intervals).
"""

from __future__ import annotations

import math

import pandas as pd

from pfps_meta.conventions import PRESETS, Preset  # noqa: F401  (the table lives in the leaf conventions)
from pfps_meta.errors import InputError
from pfps_meta.models.mantel_haenszel import COUNT_COLUMNS


SETTING_ROWS = ("method", "ci_method", "pi_method", "i2_method", "prediction_interval", "smd_convention", "vtype")
DIFF_STATS = ("estimate", "se", "ci_low", "ci_high", "p", "tau2", "tau2_ci_low", "tau2_ci_high", "i2",
              "i2_ci_low", "i2_ci_high", "h2", "q", "q_p", "pi_low", "pi_high")


def preset(name: str) -> Preset:
    if name not in PRESETS:
        raise InputError(f"unknown preset '{name}'; choose from {', '.join(PRESETS)}")
    return PRESETS[name]


def run_with_preset(analysis, evidence, name):
    """``run_analysis`` with the preset's conventions (the analysis's level and input level kept). When the
    analysis pools 2x2 counts, the preset's ``binary_method`` applies (revman5: MH_DL, RevMan 5's
    random-effects Mantel-Haenszel)
    and its ``binary_note`` joins the result's notes, so a binary analysis says what it used; continuous
    and effect-level analyses are run exactly with the preset's settings."""
    from pfps_meta.evidence.specs import run_analysis

    chosen = preset(name)
    levels = {"level": analysis.settings.level, "input_level": analysis.settings.input_level}
    run = run_analysis(analysis, evidence, settings=chosen.settings.replace(**levels))
    if run.result is None or not set(COUNT_COLUMNS) <= set(run.result.studies.columns):
        return run
    if chosen.settings_for(True) != chosen.settings:
        run = run_analysis(analysis, evidence, settings=chosen.settings_for(True).replace(**levels))
    if chosen.binary_note and run.result is not None and chosen.binary_note not in run.result.notes:
        run.result.notes.append(chosen.binary_note)
    return run


def _value(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def preset_diff(analysis, evidence, first="revman5", second="metafor") -> pd.DataFrame:
    """Every reported number of ``analysis`` under two presets: pooled statistics, then each study's
    effect, variance and weight. Columns: ``quantity``, the two preset names, ``difference``."""
    runs = [run_with_preset(analysis, evidence, name) for name in (first, second)]
    rows = []
    results = [r.result for r in runs]
    # the settings each run used (a preset may use another method on 2x2 counts: revman5's MH_DL)
    used = [r.settings if r is not None else preset(name).settings for r, name in zip(results, (first, second))]
    for setting in SETTING_ROWS:
        rows.append({"quantity": f"setting: {setting}", first: getattr(used[0], setting),
                     second: getattr(used[1], setting), "difference": None})
    if all(r is None for r in results):
        return pd.DataFrame(rows)
    for stat in DIFF_STATS:
        a, b = (None if r is None else _value(r.stats.get(stat)) for r in results)
        rows.append({"quantity": stat, first: a, second: b,
                     "difference": None if a is None or b is None else b - a})
    studies = [r.studies.set_index("study") if r is not None else None for r in results]
    names = studies[0].index if studies[0] is not None else studies[1].index
    for study in names:
        for column in ("yi", "vi", "weight"):
            a, b = (None if s is None or study not in s.index else _value(float(s.loc[study, column])) for s in studies)
            rows.append({"quantity": f"{column} [{study}]", first: a, second: b,
                         "difference": None if a is None or b is None else b - a})
    return pd.DataFrame(rows)
