"""The effect measures: one registry row each, read by validation, the model and every renderer.

A row says what a measure is: which input layout it is computed from, the function that computes
``yi, vi`` (from :mod:`pfps_meta.effects.sizes`), whether it is a ratio pooled on the log scale (then the
reporting scale is ``exp`` and the line of no effect is 1), and how it is labelled. Adding a measure is
its effect function plus one row here; nothing else names measures.

Effect-level input (``yi, vi`` etc.) needs no measure; any measure name is then only carried along, and
an unknown name gets the generic row :data:`GENERIC`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from pfps_meta.effects import sizes as effects


@dataclass(frozen=True)
class Measure:
    name: str
    label: str                  # e.g. "mean difference"
    layout: str | None          # "arm" (n, mean, SD per arm), "binary" (events, n per arm), "prepost"
                                # (one group measured twice: n, mean/sd at t1 and t2, r) or None
    compute: Callable | None    # compute(arrays..., settings) -> (yi, vi)
    ratio: bool = False         # pooled on the log scale; reported as exp()
    positive_means: bool = False  # arm means must be > 0 (ratio of means)
    uses_smd_settings: bool = False

    @property
    def null(self) -> float:
        """The value of no effect on the reporting scale (1 for ratios, else 0)."""
        return 1.0 if self.ratio else 0.0

    def to_reporting(self, value):
        """A pooled-scale value (scalar or array) on the scale papers print (exp for ratios)."""
        if value is None:
            return None
        if not self.ratio:
            return value
        if isinstance(value, float) and math.isnan(value):
            return value
        return np.exp(value) if isinstance(value, np.ndarray) else math.exp(value)

    def axis_label(self) -> str:
        return f"{self.name} (log scale)" if self.ratio else self.name

    def analysis_scale_label(self) -> str:
        return f"log {self.name}" if self.ratio else self.name


def _md(n1, m1, s1, n2, m2, s2, settings):
    return effects.mean_difference(n1, m1, s1, n2, m2, s2, pooled_sd=settings.pooled_sd)


def _smd(n1, m1, s1, n2, m2, s2, settings):
    return effects.standardized_mean_difference(n1, m1, s1, n2, m2, s2, convention=settings.smd_convention,
                                                vtype=settings.vtype)


def _rom(n1, m1, s1, n2, m2, s2, settings):
    return effects.log_ratio_of_means(n1, m1, s1, n2, m2, s2)


def _smdh(n1, m1, s1, n2, m2, s2, settings):
    return effects.smd_heteroscedastic(n1, m1, s1, n2, m2, s2)


def _prepost(func, needs_sd_t2=True):
    if needs_sd_t2:
        return lambda n, m1, s1, m2, s2, r, settings: func(n, m1, s1, m2, s2, r)
    return lambda n, m1, s1, m2, s2, r, settings: func(n, m1, s1, m2, r)


def _binary(func):
    return lambda a, n1, c, n2, settings: func(a, n1, c, n2)


MEASURES = {m.name: m for m in (
    Measure("MD", "mean difference", "arm", _md),
    Measure("SMD", "standardised mean difference (Hedges' g)", "arm", _smd, uses_smd_settings=True),
    Measure("SMDH", "standardised mean difference, heteroscedastic SDs (Bonett)", "arm", _smdh),
    Measure("ROM", "ratio of means", "arm", _rom, ratio=True, positive_means=True),
    Measure("MC", "raw mean change (t1 minus t2)", "prepost", _prepost(effects.mean_change)),
    Measure("SMCC", "standardised mean change, change-score standardisation", "prepost",
            _prepost(effects.standardized_mean_change_change)),
    Measure("SMCR", "standardised mean change, raw-score standardisation", "prepost",
            _prepost(effects.standardized_mean_change_raw, needs_sd_t2=False)),
    Measure("RR", "risk ratio", "binary", _binary(effects.log_risk_ratio), ratio=True),
    Measure("OR", "odds ratio", "binary", _binary(effects.log_odds_ratio), ratio=True),
    Measure("RD", "risk difference", "binary", _binary(effects.risk_difference)),
)}

GENERIC = Measure("effect", "effect", None, None)


def get(name) -> Measure:
    """The registry row for ``name``; the generic (not ratio) row for None or a name not registered."""
    if name is None:
        return GENERIC
    return MEASURES.get(name, Measure(str(name), str(name), None, None))


def names(layout=None) -> tuple:
    """Registered measure names, optionally only those computed from ``layout``."""
    return tuple(n for n, m in MEASURES.items() if layout is None or m.layout == layout)
