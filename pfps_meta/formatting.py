"""How numbers are written: the one p-value formatter and the one NaN-to-null cleaner.

A leaf module (no package imports), so every layer that prints or serialises a result uses the same
rules: computation modules call :func:`json_ready` in their ``to_dict()``, the renderers call
:func:`format_p` and :func:`format_number`.
"""

from __future__ import annotations

import math

import numpy as np

#: p-values below this print as "<.0001" (metafor's print.rma does the same at its default digits)
P_FLOOR = 1e-4


def format_p(p, bare: bool = False) -> str:
    """A p-value as metafor prints it: ``0.0123`` / ``<.0001`` (``bare``), or ``= 0.0123`` / ``< .0001``.

    None, NaN and infinities print as ``NA``.
    """
    if p is None:
        return "NA"
    p = float(p)
    if not math.isfinite(p):
        return "NA"
    if p < P_FLOOR:
        return "<.0001" if bare else "< .0001"
    return f"{p:.4f}" if bare else f"= {p:.4f}"


def format_number(x, digits: int = 4) -> str:
    """A number at ``digits`` decimals; None, NaN and infinities print as ``NA``."""
    if x is None:
        return "NA"
    try:
        x = float(x)
    except (TypeError, ValueError):
        return str(x)
    if not math.isfinite(x):
        return "NA"
    return f"{x:.{digits}f}"


def json_ready(value):
    """Strict-JSON values: numpy scalars and arrays become Python ones, NaN and infinities become None.

    Dicts, lists, tuples, arrays and DataFrames (as a list of records) are cleaned recursively.
    """
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return [json_ready(v) for v in value.tolist()]
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a core dependency
        return value
    if isinstance(value, pd.DataFrame):
        return [json_ready(r) for r in value.to_dict("records")]
    if isinstance(value, pd.Series):
        return [json_ready(v) for v in value.tolist()]
    if value is pd.NA or value is pd.NaT:
        return None
    return value
