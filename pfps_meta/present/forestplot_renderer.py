"""Optional renderer through the ``forestplot`` package (``pip install pfps-meta[forestplot]``).

``forestplot`` (LSYS, 0.4.x) only draws: no pooling, no weight-sized boxes, no diamond. Importing it
silences every Python warning (``warnings.filterwarnings("ignore")``), sets numpy's error state to
"ignore" and changes matplotlib's fonts for the whole process. This module imports it with those
three pieces of global state saved and restored, and draws inside the same guard, so pfps-meta's
numerics keep warning after it is used. Our own :func:`pfps_meta.present.plots.forest` is the default renderer.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import matplotlib
import numpy as np
import pandas as pd

from pfps_meta.effects import measures


@contextmanager
def _global_state_kept():
    filters = list(warnings.filters)
    errors = np.geterr()
    rc = dict(matplotlib.rcParams)
    try:
        yield
    finally:
        warnings.filters[:] = filters
        warnings._filters_mutated()
        np.seterr(**errors)
        dict.update(matplotlib.rcParams, rc)


def import_forestplot():
    """The ``forestplot`` module, imported without letting it change global state."""
    with _global_state_kept():
        try:
            import forestplot
        except ImportError:
            raise ImportError("the forestplot renderer needs the optional package: "
                              "pip install 'pfps-meta[forestplot]'") from None
    return forestplot


def forestplot_frame(result, digits=2) -> pd.DataFrame:
    """Our result as the frame ``forestplot.forestplot`` expects: one row per study plus the pooled row
    (label, est, ll, hl, weight as text), on the reporting scale (exp for RR/OR). The pooled row names the
    method as :func:`pfps_meta.present.plots.forest` does (Mantel-Haenszel / Peto from the registry)."""
    from pfps_meta.present.plots import method_label

    show = measures.get(result.measure).to_reporting
    s = result.stats
    frame = pd.DataFrame({
        "label": result.studies["study"].astype(str).to_numpy(),
        "est": show(result.studies["yi"].to_numpy(float)),
        "ll": show(result.studies["ci_low"].to_numpy(float)),
        "hl": show(result.studies["ci_high"].to_numpy(float)),
        "weight": [f"{w:.1f}%" for w in result.studies["weight"]],
    })
    pooled = pd.DataFrame({"label": [f"Pooled ({method_label(result.method)}, {result.ci_method})"],
                           "est": [show(s["estimate"])],
                           "ll": [show(s["ci_low"])], "hl": [show(s["ci_high"])], "weight": ["100.0%"]})
    return pd.concat([frame, pooled], ignore_index=True).round({"est": 6, "ll": 6, "hl": 6})


def draw(result, **kwargs):
    """Draw ``result`` with ``forestplot.forestplot``; returns the matplotlib Figure."""
    fp = import_forestplot()
    frame = forestplot_frame(result)
    options = dict(estimate="est", ll="ll", hl="hl", varlabel="label", annote=["weight"],
                   annoteheaders=["Weight"], xlabel=result.measure or "Effect",
                   logscale=measures.get(result.measure).ratio, figsize=(5, max(3, 0.35 * len(frame))))
    options.update(kwargs)
    with _global_state_kept():
        ax = fp.forestplot(frame, **options)
    return ax.figure
