"""Figures of a network meta-analysis: the network graph, every treatment against a reference (forest
plot) and the league table. Pure drawing from a fitted :class:`~pfps_meta.models.network.NetworkResult`
(its league table, design and participants); nothing is recomputed here.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt  # noqa: E402  (no backend is chosen here: the user's stays)
import numpy as np  # noqa: E402

from ..errors import InputError  # noqa: E402
from ..formatting import frame_records  # noqa: E402
from ..models.network import NetworkResult  # noqa: E402

__all__ = ["network_graph", "forest_vs_reference", "league_figure"]


def _tight_layout(fig):
    """``fig.tight_layout()`` with the SVG writer's text metrics (:func:`pfps_meta.present.plots.tight_layout`;
    imported when called, so importing this module stays as light as it was)."""
    from pfps_meta.present.plots import tight_layout

    tight_layout(fig)


def _axis_off(ax):
    """``ax.axis("off")``, and no tick locations: ticks that are never drawn are then not made either (each is
    two lines and two texts, made when anything lists the axis' children or measures its layout)."""
    from matplotlib.ticker import NullLocator

    ax.axis("off")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(NullLocator())
        axis.set_minor_locator(NullLocator())


def _check(res):
    if not isinstance(res, NetworkResult):
        raise InputError(f"expected a NetworkResult from network(), got {type(res).__name__}")


def network_graph(res: NetworkResult, ax=None, title=None):
    """Treatments on a circle; an edge for each directly compared pair, its width the number of studies
    comparing them; node area by participants when arm data were given (else by studies)."""
    _check(res)
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 6))
    else:
        fig = ax.figure
    T = list(res.treatments)
    angle = np.pi / 2 - 2 * np.pi * np.arange(len(T)) / len(T)
    xy = {t: (math.cos(a), math.sin(a)) for t, a in zip(T, angle)}
    edges = {}
    con = res.contrasts
    for s in dict.fromkeys(con["study"]):
        trts = con.loc[con["study"] == s, "design"].iloc[0].split(":")
        for i, a in enumerate(trts):
            for b in trts[i + 1:]:
                key = tuple(sorted((a, b)))
                edges[key] = edges.get(key, 0) + 1
    top = max(edges.values())
    for (a, b), k in edges.items():
        ax.plot([xy[a][0], xy[b][0]], [xy[a][1], xy[b][1]], color="#4a6fa5", lw=1 + 7 * k / top, alpha=0.8,
                zorder=1, solid_capstyle="round")
        mx, my = (xy[a][0] + xy[b][0]) / 2, (xy[a][1] + xy[b][1]) / 2
        ax.text(mx, my, str(k), fontsize=8, ha="center", va="center", zorder=3,
                bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8))
    if res.participants:
        size = np.array([res.participants.get(t, 0) for t in T], dtype=float)
        what = "participants"
    else:
        size = np.array([con.loc[(con["treat"] == t) | (con["base"] == t), "study"].nunique() for t in T], dtype=float)
        what = "studies"
    area = 200 + 1600 * size / max(size.max(), 1)
    ax.scatter([xy[t][0] for t in T], [xy[t][1] for t in T], s=area, color="#d9e4f2", edgecolor="#2b4d7e",
               zorder=2)
    for t, a in zip(T, angle):
        r = 1.22
        ax.text(r * math.cos(a), r * math.sin(a), f"{t}\n({int(size[T.index(t)])})", ha="center", va="center",
                fontsize=9)
    ax.set_xlim(-1.5, 1.5)
    ax.set_ylim(-1.5, 1.5)
    ax.set_aspect("equal")
    _axis_off(ax)
    ax.set_title(title or f"Network: edge width = studies, node size = {what}", fontsize=10)
    return fig


def forest_vs_reference(res: NetworkResult, reference=None, ax=None, xlabel=None, model=None):
    """Every treatment against ``reference`` (default: the network's), estimate with CI (and PI for the
    random-effects model as a thinner line), from :meth:`NetworkResult.to_frame`."""
    _check(res)
    frame = res.to_frame(reference=reference, model=model)
    ref = res.reference if reference is None else reference
    n = len(frame)
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 0.45 * n + 1.4))
    else:
        fig = ax.figure
    info = res.measure_info
    tr = info.to_reporting if info.ratio else (lambda v: v)
    ys = np.arange(n)[::-1]
    for y, r in zip(ys, frame_records(frame, ["estimate", "ci_lb", "ci_ub", "pi_lb", "pi_ub"])):
        if np.isfinite(r["pi_lb"]):
            ax.plot([tr(r["pi_lb"]), tr(r["pi_ub"])], [y, y], color="#9bb3d4", lw=1)
        ax.plot([tr(r["ci_lb"]), tr(r["ci_ub"])], [y, y], color="#1f3b63", lw=2.2)
        ax.plot(tr(r["estimate"]), y, "s", color="#1f3b63", ms=6)
    ax.axvline(info.null, color="grey", lw=0.8, ls="--")
    ax.set_yticks(ys)
    ax.set_yticklabels(frame["treatment"])
    if info.ratio:
        ax.set_xscale("log")
    pct = f"{100 * res.level:g}%"
    ax.set_xlabel(xlabel or f"{info.name} against {ref} ({pct} CI; thin line: {pct} PI)")
    ax.set_ylim(-0.8, n - 0.2)
    _tight_layout(fig)
    return fig


def league_figure(res: NetworkResult, model=None, digits=2):
    """The league table as a figure: cell (row, column) is row treatment minus column treatment with its
    CI, shaded where the CI excludes no effect."""
    _check(res)
    T = list(res.treatments)
    table = res.league_table(model=model)
    n = len(T)
    fig, ax = plt.subplots(figsize=(1.35 * n + 1, 0.7 * n + 1))
    info = res.measure_info
    tr = info.to_reporting if info.ratio else (lambda v: v)
    for r in frame_records(table, ["treatment", "versus", "estimate", "ci_lb", "ci_ub"]):
        i, j = T.index(r["treatment"]), T.index(r["versus"])
        sig = r["ci_lb"] > 0 or r["ci_ub"] < 0
        # add_artist, not add_patch: drawn alike, without updating data limits that the fixed limits below ignore
        ax.add_artist(plt.Rectangle((j, n - 1 - i), 1, 1, fc="#f3d9c4" if sig else "white", ec="#cccccc"))
        ax.text(j + 0.5, n - 0.5 - i, f"{tr(r['estimate']):.{digits}f}\n({tr(r['ci_lb']):.{digits}f}, "
                f"{tr(r['ci_ub']):.{digits}f})", ha="center", va="center", fontsize=7)
    for i, t in enumerate(T):
        ax.add_artist(plt.Rectangle((i, n - 1 - i), 1, 1, fc="#d9e4f2", ec="#cccccc"))
        ax.text(i + 0.5, n - 0.5 - i, t, ha="center", va="center", fontsize=8, weight="bold")
    ax.set_xlim(0, n)
    ax.set_ylim(0, n)
    _axis_off(ax)
    ax.set_title(f"League table ({info.name}: row minus column; shaded: CI excludes {info.null:g})", fontsize=9)
    _tight_layout(fig)
    return fig
