"""Forest and funnel plots drawn with matplotlib from a fitted :class:`~pfps_meta.model.MetaResult`.

Presentation only: every number drawn comes from the result object; nothing is recomputed here except
positions on the page. Each function returns the matplotlib Figure; :func:`save` writes PNG and SVG.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Polygon, Rectangle  # noqa: E402
from scipy.special import ndtri  # noqa: E402

RATIO = ("RR", "OR")
BOX_COLOUR = "#2b5d8a"
DIAMOND_COLOUR = "#111111"


def _fmt(x, places=2):
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{places}f}"


def _scale(result):
    """Functions to show values on the reporting scale (exp for ratio measures)."""
    if result.measure in RATIO:
        return np.exp
    return lambda x: x


def forest(result, *, title=None, xlabel=None, favours=None, mcid=None, show_pi=True, show_common=False,
           common_result=None, quality=None, quality_label="PEDro", xlim=None, digits=2):
    """A RevMan-style forest plot.

    Columns: study, arm data (mean, SD, total per arm) when the studies are arm-level, weight %, effect
    with CI as text; squares sized by weight, CI whiskers (arrows when clipped), the pooled diamond, the
    prediction interval, a heterogeneity footer and the test for overall effect.

    Parameters
    ----------
    result : MetaResult
    favours : (left, right) labels under the axis, e.g. ("Favours hip + knee", "Favours knee").
    mcid : float or None
        Draws dashed lines at +/- mcid (e.g. 2 points on a 0-10 pain scale).
    show_common, common_result : also draw a common-effect diamond (``common_result`` fitted with FE).
    quality : dict study -> score (e.g. PEDro) shown in an extra column.
    """
    s = result.stats
    studies = result.studies
    k = len(studies)
    shown = _scale(result)
    arm_level = {"mean_exp", "sd_exp", "n_exp", "mean_ctrl", "sd_ctrl", "n_ctrl"} <= set(studies.columns) \
        and studies[["mean_exp", "sd_exp"]].notna().all().all()

    # ---- text columns (x positions in inches from the left edge)
    columns = [("Study", 0.1, "left")]
    x = 2.3
    if arm_level:
        for header in ("Mean", "SD", "Total"):
            columns.append((header, x, "right"))
            x += 0.6
        x += 0.2
        for header in ("Mean", "SD", "Total"):
            columns.append((header, x, "right"))
            x += 0.6
    if quality is not None:
        columns.append((quality_label, x + 0.1, "right"))
        x += 0.7
    columns.append(("Weight", x + 0.3, "right"))
    columns.append((f"{result.measure or 'Effect'} [{int(round(result.level * 100))}% CI]", x + 2.2, "right"))
    text_width = x + 2.45
    plot_width = 4.2
    width = text_width + plot_width + 0.3

    has_pi = show_pi and not _isnan(s.get("pi_low"))
    n_diamonds = 2 if (show_common and common_result is not None) else 1
    top = k + 2.0
    y_last = top - 1.5 - k - 0.6 - (n_diamonds - 1) - (1 if has_pi else 0)
    bottom = y_last - 0.6
    row_h = 0.26
    axes_h = (top - bottom) * row_h
    margin_bottom, margin_top = 1.15, 0.45
    height = axes_h + margin_bottom + margin_top
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_axes([text_width / width, margin_bottom / height, plot_width / width, axes_h / height])
    ax.set_ylim(bottom, top)
    y_of = {i: top - 1.5 - i for i in range(k)}

    def text(xpos, y, value, ha="left", bold=False, size=8.5):
        fig.text(xpos / width, ax.transData.transform((0, y))[1] / fig.dpi / height, value, ha=ha, va="center",
                 fontsize=size, fontweight="bold" if bold else "normal")

    fig.canvas.draw()
    header_y = top - 0.5
    if arm_level:
        text(2.3 + 0.6, header_y + 0.75, "Experimental", ha="center", bold=True)
        text(2.3 + 1.8 + 0.2 + 0.6, header_y + 0.75, "Control", ha="center", bold=True)
    for header, xpos, ha in columns:
        text(xpos, header_y, header, ha=ha, bold=True)
    text(text_width + plot_width / 2, header_y, f"{result.measure or 'Effect'} ({result.method}, "
         f"{'HKSJ' if result.ci == 'hksj' else 'Wald'}) [{int(round(result.level * 100))}% CI]",
         ha="center", bold=True)

    # ---- study rows
    lows, highs = shown(studies["ci_low"].to_numpy()), shown(studies["ci_high"].to_numpy())
    estimates = shown(studies["yi"].to_numpy())
    pooled = [shown(s["estimate"]), shown(s["ci_low"]), shown(s["ci_high"])]
    candidates = np.concatenate([lows, highs, pooled])
    candidates = candidates[np.isfinite(candidates)]
    if xlim is None:
        span_lo, span_hi = float(np.min(candidates)), float(np.max(candidates))
        if result.measure in RATIO:
            span_lo, span_hi = min(span_lo, 1.0), max(span_hi, 1.0)
            xlim = (span_lo / 1.15, span_hi * 1.15)
        else:
            span_lo, span_hi = min(span_lo, 0.0), max(span_hi, 0.0)
            pad = 0.08 * (span_hi - span_lo or 1.0)
            xlim = (span_lo - pad, span_hi + pad)
    if result.measure in RATIO:
        ax.set_xscale("log")
    ax.set_xlim(*xlim)
    weights = studies["weight"].to_numpy()
    max_w = np.nanmax(weights) if k else 1.0
    trans = ax.transData
    for i, row in enumerate(studies.itertuples(index=False)):
        y = y_of[i]
        text(0.1, y, str(row.study))
        if arm_level:
            values = [row.mean_exp, row.sd_exp, row.n_exp, row.mean_ctrl, row.sd_ctrl, row.n_ctrl]
            for (header, xpos, ha), value in zip(columns[1:7], values):
                is_n = header == "Total"
                text(xpos, y, _fmt(value, 0 if is_n and float(value).is_integer() else 1) if not is_n
                     else (f"{value:g}"), ha=ha)
        if quality is not None:
            text(columns[-3][1], y, str(quality.get(row.study, "")), ha="right")
        text(columns[-2][1], y, f"{row.weight:.1f}%", ha="right")
        text(columns[-1][1], y, f"{_fmt(estimates[i], digits)} [{_fmt(lows[i], digits)}, {_fmt(highs[i], digits)}]",
             ha="right")
        lo, hi = lows[i], highs[i]
        clipped_lo, clipped_hi = lo < xlim[0], hi > xlim[1]
        ax.plot([max(lo, xlim[0]), min(hi, xlim[1])], [y, y], color="black", lw=1, solid_capstyle="butt")
        for clipped, edge, marker in ((clipped_lo, xlim[0], "<"), (clipped_hi, xlim[1], ">")):
            if clipped:      # arrow head where the CI runs off the axis
                ax.plot([edge], [y], marker=marker, color="black", ms=5, clip_on=False)
        size = 0.25 + 0.45 * math.sqrt(row.weight / max_w)      # area proportional to weight
        _box(ax, trans, estimates[i], y, size, fig)

    # ---- pooled rows
    y = top - 1.5 - k - 0.6
    diamonds = [("Total (random effects)" if result.method != "FE" else "Total (common effect)", s, result)]
    if show_common and common_result is not None:
        diamonds.append(("Total (common effect)", common_result.stats, common_result))
    for label, st, res in diamonds:
        est, lo, hi = shown(st["estimate"]), shown(st["ci_low"]), shown(st["ci_high"])
        text(0.1, y, f"{label}", bold=True)
        if arm_level:
            text(columns[3][1], y, f"{studies['n_exp'].sum():g}", ha="right", bold=True)
            text(columns[6][1], y, f"{studies['n_ctrl'].sum():g}", ha="right", bold=True)
        text(columns[-2][1], y, "100.0%", ha="right", bold=True)
        text(columns[-1][1], y, f"{_fmt(est, digits)} [{_fmt(lo, digits)}, {_fmt(hi, digits)}]", ha="right", bold=True)
        ax.add_patch(Polygon([[lo, y], [est, y + 0.32], [hi, y], [est, y - 0.32]], closed=True,
                             facecolor=DIAMOND_COLOUR, edgecolor=DIAMOND_COLOUR))
        y -= 1
    if has_pi:
        lo, hi = shown(s["pi_low"]), shown(s["pi_high"])
        text(0.1, y, "Prediction interval")
        text(columns[-1][1], y, f"[{_fmt(lo, digits)}, {_fmt(hi, digits)}]", ha="right")
        ax.plot([max(lo, xlim[0]), min(hi, xlim[1])], [y, y], color=DIAMOND_COLOUR, lw=2.5)
        y -= 1

    # ---- footer: heterogeneity and overall effect (left of the axis, below the last row)
    footer = []
    if s["k"] >= 2:
        tau2 = "" if result.method == "FE" else f"Tau² = {_fmt(s['tau2'], 3)}; "
        footer.append(f"Heterogeneity: {tau2}Chi² = {_fmt(s['q'], 2)}, df = {int(s['q_df'])} "
                      f"(P {_p(s['q_p'])}); I² = {s['i2']:.0f}%")
    stat = "t" if result.ci == "hksj" else "Z"
    footer.append(f"Test for overall effect: {stat} = {abs(s['statistic']):.2f} (P {_p(s['p'])})")
    for line in footer:
        text(0.1, y, line, size=8)
        y -= 0.8

    # ---- axis, reference lines, favours labels
    null = 1.0 if result.measure in RATIO else 0.0
    ax.axvline(null, color="black", lw=0.8)
    if mcid is not None:
        for m in (-mcid, mcid):
            if xlim[0] < m < xlim[1]:
                ax.axvline(m, color="#888888", lw=0.8, ls="--")
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    ax.set_yticks([])
    ax.tick_params(axis="x", labelsize=8)
    if xlabel:
        ax.set_xlabel(xlabel, fontsize=8)
    if result.measure in RATIO:
        from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

        ticks = [t for t in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100) if xlim[0] <= t <= xlim[1]]
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    offset = -30 if xlabel else -20
    if favours:
        ax.annotate(favours[0], xy=(0.0, 0.0), xycoords="axes fraction", xytext=(0, offset),
                    textcoords="offset points", ha="left", va="top", fontsize=8)
        ax.annotate(favours[1], xy=(1.0, 0.0), xycoords="axes fraction", xytext=(0, offset),
                    textcoords="offset points", ha="right", va="top", fontsize=8)
    if title:
        fig.suptitle(title, x=0.02, ha="left", fontsize=10, fontweight="bold")
    return fig


def _box(ax, trans, x, y, size_in, fig):
    """A square of side ``size_in`` (in row units vertically), drawn square on the page."""
    if not np.isfinite(x):
        return
    h = size_in
    # convert the height in data units to a width in data units that is equal on the page
    y0 = trans.transform((x, y - h / 2))
    y1 = trans.transform((x, y + h / 2))
    pix = abs(y1[1] - y0[1])
    left = ax.transData.inverted().transform((y0[0] - pix / 2, y0[1]))[0]
    right = ax.transData.inverted().transform((y0[0] + pix / 2, y0[1]))[0]
    ax.add_patch(Rectangle((left, y - h / 2), right - left, h, facecolor=BOX_COLOUR, edgecolor=BOX_COLOUR))


def _isnan(value):
    return value is None or (isinstance(value, float) and math.isnan(value))


def _p(p):
    if _isnan(p):
        return "= NA"
    return "< 0.00001" if p < 1e-5 else f"= {p:.2g}" if p < 0.01 else f"= {p:.2f}"


def funnel(result, *, level=0.95, title=None, xlabel=None):
    """Funnel plot: effect against standard error, with pseudo confidence limits around the pooled effect."""
    s = result.stats
    studies = result.studies
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    se_max = float(np.nanmax(studies["se"])) * 1.1 if len(studies) else 1.0
    se_grid = np.linspace(0, se_max, 50)
    z = float(ndtri(0.5 + level / 2))
    est = s["estimate"]
    ax.fill_betweenx(se_grid, est - z * se_grid, est + z * se_grid, color="#eeeeee", zorder=0,
                     label=f"pseudo {int(level * 100)}% limits")
    ax.plot(est - z * se_grid, se_grid, color="#999999", lw=0.8, ls="--")
    ax.plot(est + z * se_grid, se_grid, color="#999999", lw=0.8, ls="--")
    ax.axvline(est, color="black", lw=0.8)
    ax.scatter(studies["yi"], studies["se"], color=BOX_COLOUR, zorder=3, s=22)
    ax.set_ylim(se_max, 0)
    ax.set_ylabel("Standard error")
    ax.set_xlabel(xlabel or (f"{result.measure} (log scale)" if result.measure in RATIO else result.measure or "Effect"))
    if title:
        ax.set_title(title, fontsize=10)
    if s["k"] < 10:
        ax.text(0.02, 0.02, f"k = {s['k']}: too few studies to judge asymmetry", transform=ax.transAxes,
                fontsize=7, color="#aa0000")
    ax.legend(loc="lower right", fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def save(fig, stem) -> list[Path]:
    """Write ``stem.png`` and ``stem.svg`` atomically and deterministically (no dates in the files)."""
    from .report import atomic_write_bytes
    import io

    stem = Path(stem)
    written = []
    with matplotlib.rc_context({"svg.hashsalt": "pfps-meta"}):
        for fmt, meta in (("png", {"Software": None}), ("svg", {"Date": None, "Creator": None})):
            buffer = io.BytesIO()
            fig.savefig(buffer, format=fmt, dpi=110, metadata=meta, bbox_inches="tight")
            path = stem.with_suffix("." + fmt)
            atomic_write_bytes(path, buffer.getvalue())
            written.append(path)
    return written
