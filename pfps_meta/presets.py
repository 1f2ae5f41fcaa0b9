"""Convention presets: named bundles of settings that reproduce what other tools do by default, and a
diff that shows every reported number of one analysis under two presets side by side.

Sources: ``docs/conventions.md`` (and ``shared/notes/conventions.md``, where the tools were run side by
side); RevMan Web's 2024-2025 methods change (REML, HKSJ, Q-profile, t-based prediction intervals).
"""

from __future__ import annotations

import math

import pandas as pd

PRESETS = {
    "metafor": {
        "description": "R metafor rma() defaults: REML, Wald z CI, exact Hedges' g, I2 from tau2, normal PI",
        "settings": {"method": "REML", "ci": "wald", "pi": "auto", "i2": "tau2", "smd_convention": "metafor"},
        "prediction_interval": True,
    },
    "revman5": {
        "description": "RevMan 5: DerSimonian-Laird, Wald z CI, RevMan SMD, I2 from Q, no prediction interval",
        "settings": {"method": "DL", "ci": "wald", "pi": "auto", "i2": "q", "smd_convention": "revman5"},
        "prediction_interval": False,
    },
    "revman_web_2025": {
        "description": "RevMan Web (2025 methods): REML, HKSJ CI, Q-profile tau2 CI, t(k-1) PI, I2 from tau2",
        "settings": {"method": "REML", "ci": "hksj", "pi": "t", "i2": "tau2", "smd_convention": "revman5"},
        "prediction_interval": True,
    },
    "r_meta": {
        "description": "R meta defaults: REML, Wald z CI, exact Hedges' g, I2 from Q, PI t(k-1) when requested",
        "settings": {"method": "REML", "ci": "wald", "pi": "t", "i2": "q", "smd_convention": "metafor"},
        "prediction_interval": True,
    },
}

DIFF_STATS = ("estimate", "se", "ci_low", "ci_high", "p", "tau2", "tau2_ci_low", "tau2_ci_high", "i2",
              "i2_ci_low", "i2_ci_high", "h2", "q", "q_p", "pi_low", "pi_high")


def preset(name: str) -> dict:
    if name not in PRESETS:
        raise KeyError(f"unknown preset '{name}'; choose from {', '.join(PRESETS)}")
    return PRESETS[name]


def run_with_preset(analysis, evidence, name):
    """``run_analysis`` with the preset's settings (the prediction interval blanked where it has none)."""
    from .analyses import run_analysis

    chosen = preset(name)
    result = run_analysis(analysis, evidence, settings=chosen["settings"])
    if result.result is not None and not chosen["prediction_interval"]:
        result.result.stats["pi_low"] = result.result.stats["pi_high"] = float("nan")
    return result


def _value(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def preset_diff(analysis, evidence, first="revman5", second="metafor") -> pd.DataFrame:
    """Every reported number of ``analysis`` under two presets: pooled statistics, then each study's
    effect, variance and weight. Columns: ``quantity``, the two preset names, ``difference``."""
    runs = [run_with_preset(analysis, evidence, name) for name in (first, second)]
    rows = []
    for setting in ("method", "ci", "pi", "i2", "smd_convention"):
        rows.append({"quantity": f"setting: {setting}", first: preset(first)["settings"][setting],
                     second: preset(second)["settings"][setting], "difference": None})
    results = [r.result for r in runs]
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
