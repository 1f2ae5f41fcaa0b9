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


#: RevMan's forest plots print p-values below this as "< 0.00001"
REVMAN_P_FLOOR = 1e-5


def format_p(p, bare: bool = False, style: str = "metafor") -> str:
    """A p-value as metafor prints it: ``0.0123`` / ``<.0001`` (``bare``), or ``= 0.0123`` / ``< .0001``.

    ``style="revman"`` writes it as RevMan's forest plots do: ``= 0.04``, ``= 0.0071`` (two significant
    digits below 0.01), ``< 0.00001``. None, NaN and infinities print as ``NA``.
    """
    if p is None or not math.isfinite(float(p)):
        return "= NA" if style == "revman" else "NA"
    p = float(p)
    if style == "revman":
        if p < REVMAN_P_FLOOR:
            return "< 0.00001"
        text = f"{p:.2g}" if p < 0.01 else f"{p:.2f}"
        if "e" in text:      # below 1e-4 Python's "g" switches to e-notation: write the two digits out
            text = f"{float(text):.10f}".rstrip("0")
        return f"= {text}"
    if style != "metafor":
        raise ValueError(f"format_p: style must be 'metafor' or 'revman', not {style!r}")
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


def frame_rows(frame, columns=None) -> list[tuple]:
    """The rows of a DataFrame as tuples of plain Python values, read column by column: ``columns`` only, in
    that order, or all of them (by position where names repeat, where a name would give a frame). A table or
    figure that reads each row's values pays nothing per value, where a row Series (``frame.iloc[i]``), a
    named tuple per row (``itertuples``) or ``to_dict("records")`` of a wide frame cost microseconds each."""
    if columns is None:
        series = ([frame[c] for c in frame.columns] if frame.columns.is_unique
                  else [frame.iloc[:, k] for k in range(frame.shape[1])])
    else:
        series = [frame[c] for c in columns]
    if not series:
        return [()] * len(frame)
    return list(zip(*(column.tolist() for column in series)))


def frame_records(frame, columns=None) -> list[dict]:
    """:func:`frame_rows` as dicts from the column name (``columns``, or all) to the value."""
    names = list(frame.columns if columns is None else columns)
    return [dict(zip(names, row)) for row in frame_rows(frame, columns)]


# --------------------------------------------------------------------------------------------------
# The rendering layer's registry. A result object (in models/ or analysis/) prints through
# :func:`render`; the renderers live in ``pfps_meta.present`` and register themselves with
# :func:`renders` when it is imported (``import pfps_meta`` imports it), so computation never imports
# presentation.

_RENDERERS: dict = {}


def renders(kind: str, type_name: str):
    """Register the decorated function as the ``kind`` ("text", "html") renderer of ``type_name``."""
    def register(function):
        _RENDERERS[(kind, type_name)] = function
        return function
    return register


def render(obj, kind: str, **options) -> str:
    """Render ``obj`` with the renderer registered for its class (or a base class) and ``kind``."""
    for cls in type(obj).__mro__:
        function = _RENDERERS.get((kind, cls.__name__))
        if function is not None:
            return function(obj, **options)
    raise LookupError(f"no {kind} renderer is registered for {type(obj).__name__}")
