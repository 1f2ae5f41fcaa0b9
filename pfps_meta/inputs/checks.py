"""Checks that catch transcription errors before they reach a pooled estimate. Pure functions on numbers.

- :func:`max_sd_bounded`: the largest SD a sample of n values on a bounded scale [lo, hi] can have given
  its mean: ``sqrt((hi - mean)(mean - lo) n / (n - 1))`` (the variance is largest when every value sits
  at an end of the scale; the factor n/(n - 1) turns the population variance into the sample one).
  An SD above it is impossible (Bhatia & Davis 2000, Am Math Monthly 107:353, for the population form).
- :func:`grim_consistent`: the GRIM test (Brown & Heathers 2017, Soc Psychol Personal Sci 8:363). For a
  scale whose individual scores are whole numbers, the mean of n of them is a multiple of 1/n; a mean
  printed to d decimals that no multiple of 1/n rounds to cannot be right. It can only fail when
  n < 10^d.
- ``validate.sd_may_be_se`` flags an SD that looks like a standard error (a warning, never a change).
"""

from __future__ import annotations

import math

import numpy as np


def max_sd_bounded(mean, n, lo, hi):
    """Largest possible sample SD of n values in [lo, hi] with the given mean (NaN where undefined)."""
    mean, n, lo, hi = (np.asarray(x, dtype=float) for x in (mean, n, lo, hi))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt(np.clip((hi - mean) * (mean - lo), 0.0, None) * n / (n - 1.0))


def decimals(text) -> int:
    """Number of decimals printed in ``text`` ("2.40" -> 2)."""
    text = str(text).strip()
    return len(text.split(".")[1]) if "." in text else 0


def grim_consistent(mean_text, n, items: int = 1) -> bool:
    """True when a mean printed as ``mean_text`` can be the mean of n whole-number scores (summed over
    ``items`` items per person, so the granularity is 1/(n items)). Rounding half up or half down both
    count, since papers differ."""
    places = decimals(mean_text)
    mean = float(mean_text)
    units = int(n) * int(items)
    if units >= 10 ** places:
        return True
    half = 0.5 * 10 ** -places + 1e-12
    for total in (math.floor(mean * units), math.ceil(mean * units)):
        if abs(total / units - mean) <= half:
            return True
    return False
