"""Convention presets: named bundles of settings that reproduce what other tools do by default, and a
diff that shows every reported number of one analysis under two presets side by side.

Sources: ``docs/conventions.md`` (and ``shared/notes/conventions.md``, where the tools were run side by
side); RevMan Web's 2024-2025 methods change (REML, HKSJ, Q-profile, t-based prediction intervals).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from pfps_meta.conventions import Settings
from pfps_meta.errors import InputError


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    settings: Settings


PRESETS = {p.name: p for p in (
    Preset("metafor", "R metafor rma() defaults: REML, Wald z CI, exact Hedges' g with the large-sample "
           "variance, I2 from tau2, normal PI", Settings()),
    Preset("revman5", "RevMan 5: DerSimonian-Laird, Wald z CI, RevMan SMD, I2 from Q, no prediction interval",
           Settings(method="DL", i2_method="q", smd_convention="revman5", prediction_interval=False)),
    Preset("revman_web_2025", "RevMan Web (2025 methods): REML, HKSJ CI, Q-profile tau2 CI, t(k-1) PI, "
           "I2 from tau2", Settings(ci_method="hksj", pi_method="t", smd_convention="revman5")),
    Preset("r_meta", "R meta (>= 6.0) defaults: REML, Wald z CI, exact Hedges' g with the unbiased variance "
           "(metafor vtype UB), I2 from Q, PI t(k-1)", Settings(pi_method="t", i2_method="q", vtype="UB")),
)}

SETTING_ROWS = ("method", "ci_method", "pi_method", "i2_method", "prediction_interval", "smd_convention", "vtype")
DIFF_STATS = ("estimate", "se", "ci_low", "ci_high", "p", "tau2", "tau2_ci_low", "tau2_ci_high", "i2",
              "i2_ci_low", "i2_ci_high", "h2", "q", "q_p", "pi_low", "pi_high")


def preset(name: str) -> Preset:
    if name not in PRESETS:
        raise InputError(f"unknown preset '{name}'; choose from {', '.join(PRESETS)}")
    return PRESETS[name]


def run_with_preset(analysis, evidence, name):
    """``run_analysis`` with the preset's conventions (the analysis's level and input level kept)."""
    from pfps_meta.evidence.specs import run_analysis

    chosen = preset(name).settings.replace(level=analysis.settings.level, input_level=analysis.settings.input_level)
    return run_analysis(analysis, evidence, settings=chosen)


def _value(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def preset_diff(analysis, evidence, first="revman5", second="metafor") -> pd.DataFrame:
    """Every reported number of ``analysis`` under two presets: pooled statistics, then each study's
    effect, variance and weight. Columns: ``quantity``, the two preset names, ``difference``."""
    runs = [run_with_preset(analysis, evidence, name) for name in (first, second)]
    rows = []
    for setting in SETTING_ROWS:
        rows.append({"quantity": f"setting: {setting}", first: getattr(preset(first).settings, setting),
                     second: getattr(preset(second).settings, setting), "difference": None})
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
