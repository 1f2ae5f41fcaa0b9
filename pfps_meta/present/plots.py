"""Forest and funnel plots drawn with matplotlib from a fitted :class:`~pfps_meta.models.univariate.MetaResult`.

Presentation only: every number drawn comes from the result object, except where a function says it calls
the analysis layer explicitly (subgroup diamonds: :func:`pfps_meta.analysis.sensitivity.subgroups`; the optional
common-effect diamond: a refit with ``method="FE"``; the Baujat plot: leave-one-out). Importing this
module does not choose a matplotlib backend. Each function returns the matplotlib Figure; :func:`save` writes PNG and SVG.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from dataclasses import dataclass
import math
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Polygon, Rectangle
from scipy.special import ndtri

from pfps_meta import conventions
from pfps_meta.effects import measures
from pfps_meta.evidence.extraction import ROB_DOMAIN_NAMES, ROB_JUDGEMENTS as ROB_JUDGEMENT_NAMES, rob_judgement
from pfps_meta.formatting import format_p, frame_records
from pfps_meta.present import rob_plots, svg
from pfps_meta.present.outputs import atomic_write_bytes
from pfps_meta.models.pooling import pool_batch
from pfps_meta.present.tables import level_percent, plain_text


# how a study whose numbers rest on an assumption is marked wherever it is drawn
FLAGS = {"imputed": " [imputed SD]", "inferred": " [inferred n]"}


def _literal_text(draw):
    """Labels are data: draw every text literally (no mathtext from a '$' in a study name) and with
    control characters made visible, so the SVG stays well-formed XML."""
    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context({"text.parse_math": False}):
            fig = draw(*args, **kwargs)
        for text in fig.findobj(matplotlib.text.Text):
            text.set_parse_math(False)
            shown = text.get_text()
            if shown and plain_text(shown) != shown:
                text.set_text(plain_text(shown))
        return fig
    return wrapper
BOX_COLOUR = "#2b5d8a"
DIAMOND_COLOUR = "#111111"
BLUP_COLOUR = "#888888"


def _fmt(x, places=2):
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{places}f}"


def _scale(result):
    """Functions to show values on the reporting scale (exp for ratio measures)."""
    return measures.get(result.measure).to_reporting


# Every forest-plot text is FOREST_PT points; the widest layout is kept to FOREST_MAX_WIDTH inches. Saved at
# plots.save's 110 dpi, 9 pt is 13.75 px; a figure up to 10.9 in (1,200 px) shown in a 1,120-px column keeps
# it at >= 12.8 px, 80% of a 16-px body text (issue 18, item 5).
FOREST_PT = 9.0
TITLE_PT = 10.5
FOREST_MAX_WIDTH = 10.8
ROW_IN = 0.26
DAGGER = "\u2020"
# RoB 2 domains (Sterne et al. 2019) and how each judgement is drawn (one style with the summary bar chart:
# present/rob_plots.py), as RevMan 5 and R meta's rob() draw them
ROB_DOMAINS = tuple(ROB_DOMAIN_NAMES.items())
ROB_JUDGEMENTS = {j: (rob_plots.COLOURS[j], rob_plots.SYMBOLS[j]) for j in ROB_JUDGEMENT_NAMES}
ROB_MISSING_COLOUR = "#dddddd"
ROB_STEP = 0.22          # inches between the centres of two RoB domain columns


def _text_width(text, bold=False, size=FOREST_PT):
    """The width in inches of ``text`` drawn at ``size`` points (matplotlib's own text metrics, those the SVG
    writer uses, measured once per process: :func:`pfps_meta.present.svg.text_measure`)."""
    from matplotlib.font_manager import FontProperties

    prop = FontProperties(size=size, weight="bold" if bold else "normal")
    width, _, _ = svg.text_measure().get_text_width_height_descent(plain_text(str(text)), prop, ismath=False)
    return width / 72.0


# The text metrics that figure layouts (tight_layout, room for the Baujat labels) measure with: "agg", the
# figure canvas' own renderer (matplotlib's default: FreeType with hinting at the figure's dpi), or "svg", the
# SVG writer's (svg.text_measure: each string measured once, then remembered, also between reports, so a
# label costs no FreeType layout where Agg lays every label out again in every build: 460 layouts, about
# 0.3 s CPU of a report's figure building, benchmarks/bench_figures.py --layout-metrics svg). Agg's
# hinted widths run about 1.5% wider, so "svg" moves a layout where a label is long: an Axes' box by up to
# 10.1 px at 110 dpi (the report's figures: published estimates 10.1, RoB summary 4.8, network forest 2.3,
# funnel 1.7, league 1.7, tau posterior 1.2, Baujat 1.0; forest plots and the network graph have no
# tight_layout: 0), while the figures' cut sizes change by at most 2 px. The default stays "agg" (Agg draws
# notebooks' and PNG figures); the report, which writes SVG only, chooses "svg" (present/report.py).
LAYOUT_METRICS = "agg"
LAYOUT_METRICS_CHOICES = ("agg", "svg")
_CHOSEN_METRICS = contextvars.ContextVar("pfps_meta_layout_metrics", default=None)


@contextlib.contextmanager
def layout_metrics(metrics):
    """Inside, figure layouts measure text with ``metrics`` ("agg" or "svg", see :data:`LAYOUT_METRICS`) unless
    a call names its own: e.g. a report that writes only SVG lays its figures out with "svg", while figures
    drawn elsewhere (notebooks, PNG) keep the default."""
    token = _CHOSEN_METRICS.set(_checked_metrics(metrics))
    try:
        yield
    finally:
        _CHOSEN_METRICS.reset(token)


def _checked_metrics(metrics):
    """``metrics`` if it names layout metrics; anything else is refused in one line naming the argument."""
    if metrics not in LAYOUT_METRICS_CHOICES:
        from pfps_meta.errors import InputError

        raise InputError(f"metrics: {' or '.join(map(repr, LAYOUT_METRICS_CHOICES))}, not {metrics!r}")
    return metrics


def _layout_metrics(metrics=None):
    """The metrics a layout uses: the call's own, else the one :func:`layout_metrics` chose, else the default."""
    return _checked_metrics(metrics or _CHOSEN_METRICS.get() or LAYOUT_METRICS)


@contextlib.contextmanager
def layout_renderer(fig, metrics=None):
    """The renderer that ``fig``'s layout measures text with while inside. ``metrics`` (default: as
    :func:`layout_metrics` chose, else :data:`LAYOUT_METRICS`): "agg", the canvas' own; "svg", one that draws
    nothing and measures as the SVG writer does (:func:`pfps_meta.present.svg.text_measure`), lent to the
    canvas as its ``get_renderer`` (so ``tight_layout`` uses it too); the figure keeps its canvas."""
    canvas = fig.canvas
    if _layout_metrics(metrics) != "svg":
        yield canvas.get_renderer() if hasattr(canvas, "get_renderer") else fig._get_renderer()
        return
    width, height = fig.get_size_inches() * fig.dpi
    renderer = svg.metrics_renderer_class()(fig.dpi, width, height)
    own = vars(canvas).get("get_renderer")
    canvas.get_renderer = lambda: renderer
    try:
        yield renderer
    finally:
        if own is None:
            del canvas.get_renderer
        else:
            canvas.get_renderer = own


def tight_layout(fig, metrics=None, **kwargs):
    """``fig.tight_layout(**kwargs)`` measured with ``metrics`` (default as in :func:`layout_renderer`);
    every figure function here, in rob_plots and in network_plots lays out so."""
    if _layout_metrics(metrics) != "svg":
        fig.tight_layout(**kwargs)
        return
    with layout_renderer(fig, "svg"):
        fig.tight_layout(**kwargs)


def _wrap(text, width_in, size=FOREST_PT):
    """``text`` broken at spaces into lines no wider than ``width_in`` inches (a longer word stands alone);
    never beside "=", "<" or after "(P", so "(P < 0.00001)" and "Chi² = 9.47" stay on one line."""
    return _fill_lines(_unbreakable_words(text), width_in, size)


def _unbreakable_words(text) -> list[str]:
    """``text`` split at spaces, except beside "=", "<", ">" and after "(P" (see :func:`_wrap`)."""
    words, previous = [], None
    for token in str(text).split(" "):
        if words and (token in ("=", "<", ">") or previous in ("=", "<", ">", "(P")):
            words[-1] += " " + token
        else:
            words.append(token)
        previous = token
    return words


def _fill_lines(words, width_in, size):
    """Greedy filling: each line takes as many of the next words as fit (at least one); an empty word (from
    two spaces) does not start a line that has more words. A line's width only grows with each word added,
    so the longest run that fits is found by halving (a few measurements per line, not one per word: each
    is FreeType laying the string out, about 1 ms)."""
    lines, start, count = [], 0, len(words)
    while start < count:
        while start < count - 1 and words[start] == "":
            start += 1
        fits, over = start + 1, count + 1          # words[start:fits] fits (or is one word); words[start:over] not
        while over - fits > 1:
            middle = (fits + over) // 2
            if _text_width(" ".join(words[start:middle]), size=size) > width_in:
                over = middle
            else:
                fits = middle
        lines.append(" ".join(words[start:fits]))
        start = fits
    return lines or [""]


def _check_fitted(result, name):
    """A plot of a pooled pairwise analysis refuses anything else in one line (not an AttributeError)."""
    if not (hasattr(result, "studies") and hasattr(result, "stats")):
        from pfps_meta.errors import InputError

        raise InputError(f"result: plots.{name} takes a fitted pairwise meta-analysis (MetaResult, e.g. "
                         f"run_analysis(...).result), not {type(result).__name__}")


@_literal_text
def forest(result, *, title=None, subtitle=None, xlabel=None, favours=None, mcid=None, show_pi=True,
           show_common=False, quality=None, quality_label="PEDro", subgroups=None, subgroup_tau2="separate",
           xlim=None, digits=2, blups=None, rob=None, converted=None, show_test=True):
    """A RevMan-style forest plot; returns the matplotlib Figure.

    Columns: study, arm data (mean, SD, total per arm) when the studies are arm-level, an optional
    quality column (e.g. PEDro), weight %, effect with CI as text; squares sized by weight (area
    proportional to weight), CI whiskers with arrow heads where they run off the axis, the pooled
    diamond (random effects; ``show_common`` adds the common-effect diamond; Mantel-Haenszel and Peto
    results are named from ``conventions.POOLING_METHODS``), the prediction interval, the heterogeneity
    line and the test for overall effect (p-values by ``formatting.format_p``, RevMan style). Column
    widths follow the widest text drawn in them, so no two texts overprint.

    Parameters
    ----------
    result : MetaResult
    subtitle : a line under the title (e.g. "1 of 10 expected trials; hip-only vs quadriceps-only at 4 weeks").
    favours : (left, right) labels under the axis, e.g. ("Favours hip + knee", "Favours knee"). The x range
        always leaves room on both sides of the null (each side at least a third of the other).
    mcid : float or None
        Dashed lines at +/- mcid (e.g. 2 points on a 0-10 pain scale), each labelled ("MCID -2") under the
        column titles, which they do not cross.
    quality : dict study -> score, or the name of a column of ``result.studies``.
    blups : DataFrame from :func:`pfps_meta.analysis.diagnostics.blup` (computed beforehand): each study's BLUP of
        its true effect is drawn as a hollow grey diamond with its prediction interval under the study's CI.
    subgroups : column name of ``result.studies`` or a sequence of labels: studies are grouped under
        headers, each group gets its own diamond and heterogeneity line, and the test for subgroup
        differences (``subgroup_tau2`` "separate" or "common", see ``sensitivity.subgroups``) is printed.
    rob : DataFrame with columns ``study, D1, D2, D3, D4, D5, overall`` (RoB 2 judgements "low", "some
        concerns", "high", or empty), matched to the plot's studies by name: traffic-light columns right of
        the plot and a legend naming the domains. A plotted study without a row is drawn with grey circles
        and named in a note; rows for studies not in the plot are not drawn and are named in a note; a
        repeated study, a missing column or another judgement raises InputError.

    converted : dict study -> rule, or the name of a column of ``result.studies``; by default the
        ``converted`` column when there is one. A study with a rule (e.g. "median/IQR (Luo, Shi)") is marked
        with a dagger (:data:`DAGGER`) and each rule is named in a footnote with its studies.
    show_test : False replaces the test for overall effect by "not given (too little evidence)" (issue 18:
        no p-value for one trial or under half of the expected ones).
    """
    _check_fitted(result, "forest")
    studies = result.studies.reset_index(drop=True)
    arm_level = _arm_fields(studies)
    if isinstance(quality, str):
        quality = dict(zip(studies["study"], studies[quality]))
    if converted is not None:
        rules = studies[converted] if isinstance(converted, str) else studies["study"].map(dict(converted))
        studies = studies.assign(converted=rules.where(rules.notna(), ""))
    rows = _forest_rows(result, studies, subgroups, subgroup_tau2, show_common, show_pi)
    if not show_test:
        rows = [(kind, "Test for overall effect: not given (too little evidence)")
                if kind == "small" and str(payload).startswith("Test for overall effect") else (kind, payload)
                for kind, payload in rows]
    judgements, rob_notes = (None, []) if rob is None else _rob_judgements(rob, studies)
    rows += [("note", text) for text in _conversion_notes(studies) + rob_notes]
    if judgements is not None:
        rows.append(("note", "Risk of bias (RoB 2): " + "; ".join(f"{d} {name}" for d, name in ROB_DOMAINS)
                     + ". + low, ? some concerns, \u2212 high; grey: no judgement."))
    layout = _forest_columns(result, rows, studies, arm_level, quality, quality_label, digits,
                             judgements is not None)
    return _draw_forest(result, rows, studies, layout, arm_level, digits=digits, quality=quality, blups=blups,
                        xlim=xlim, mcid=mcid, xlabel=xlabel, favours=favours, title=title, subtitle=subtitle,
                        rob=judgements)


def _draw_forest(result, rows, studies, layout, arm_level, *, digits, quality, blups, xlim, mcid, xlabel, favours,
                 title, subtitle=None, rob=None):
    """The figure from its rows and column layout: canvas, x range, headers, rows, axis and title."""
    rows = _wrapped_rows(rows, layout.text_width - 0.5)      # clear of the first tick label too
    shown = _scale(result)
    fig, ax, top = _forest_canvas(rows, layout, title, subtitle, mcid is not None)
    xlim = _forest_xlim(ax, result, studies, shown, xlim)
    draw = _ForestText(fig, ax, layout.width)
    header_y = top - 0.5
    first_y = top - (2.1 if mcid is not None else 1.5)
    _forest_headers(draw, result, layout, arm_level, header_y)
    _forest_body(draw, rows, studies, layout, shown, xlim, first_y, digits, quality, blups)
    _forest_axis(ax, result, xlim, mcid, xlabel, favours, first_y + 0.6)
    if rob is not None:
        _rob_columns(fig, ax, layout, rob, header_y, first_y, rows)
    height = fig.get_figheight()
    if title:
        fig.text(0.02, 1 - 0.1 / height, title, ha="left", va="top", fontsize=TITLE_PT, fontweight="bold")
    if subtitle:
        fig.text(0.02, 1 - (0.36 if title else 0.1) / height, subtitle, ha="left", va="top", fontsize=FOREST_PT,
                 fontstyle="italic", color="#8a4b00")
    return fig


def _wrapped_rows(rows, width_in):
    """The 'small' and 'note' rows broken into lines that fit the text columns (they never reach the axis)."""
    out = []
    for kind, payload in rows:
        if kind in ("small", "note"):
            out += [(kind, line) for line in _wrap(payload, width_in)]
        else:
            out.append((kind, payload))
    return out


def method_label(method):
    """How the plot names a pooling method: the registry's abbreviation (RevMan's "M-H", "Peto"), else the
    code (REML, DL, ...)."""
    info = conventions.POOLING_METHODS.get(method)
    return (info.abbreviation or info.name) if info is not None else str(method)


def _is_common_effect(method):
    return method in conventions.COMMON_EFFECT_METHODS


def _forest_rows(result, studies, subgroups, subgroup_tau2, show_common, show_pi):
    """The plot's rows, top to bottom, as (kind, payload): header, study, diamond, pi, small, note, gap."""
    from pfps_meta.analysis.sensitivity import subgroups as subgroup_analysis

    s = result.stats
    pct = int(round(result.level * 100))
    rows = []
    group_test = None
    if subgroups is not None:
        labels = (studies[subgroups] if isinstance(subgroups, str) else pd.Series(list(subgroups))).astype(str)
        analysis = subgroup_analysis(result, labels.to_numpy(), tau2=subgroup_tau2)
        group_stats = {r["group"]: r for r in analysis["groups"].to_dict("records")}
        group_test = analysis["test"]
        for group in sorted(set(labels)):
            members = np.flatnonzero(labels.to_numpy() == group)
            rows.append(("header", group))
            rows += [("study", i) for i in members]
            g = group_stats[group]
            share = studies["weight"].to_numpy()[members].sum()
            rows.append(("diamond", (f"Subtotal ({pct}% CI)", g, False, share)))
            if g["k"] >= 2 and subgroup_tau2 == "separate":
                rows.append(("small", _heterogeneity_text(g, result.method)))
            rows.append(("gap", None))
    else:
        rows += [("study", i) for i in range(len(studies))]
        rows.append(("gap", None))
    rows += _pooled_rows(result, studies, pct, show_common, show_pi)
    if group_test is not None:
        df = group_test["df"]
        df_text = df if not isinstance(df, list) else ", ".join(str(d) for d in df)
        name = "Chi²" if group_test["distribution"] == "chi2" else "F"
        rows.append(("small", f"Test for subgroup differences: {name} = {group_test['q']:.2f}, df = {df_text} "
                              f"(P {format_p(group_test['p'], style='revman')})"))
    return rows


def _pooled_rows(result, studies, pct, show_common, show_pi):
    """The total diamond(s), the prediction interval, heterogeneity and the test for overall effect."""
    s = result.stats
    if result.method == "FE":
        label = "Total (common effect)"
    elif _is_common_effect(result.method):
        label = f"Total ({method_label(result.method)}, common effect)"
    else:
        label = "Total (random effects)"
    rows = [("diamond", (f"{label} ({pct}% CI)", s, True, 100.0))]
    if show_common and not _is_common_effect(result.method):
        common = pool_batch(studies["yi"].to_numpy(float), studies["vi"].to_numpy(float),
                            result.settings.replace(method="FE", tau2_ci=False)).row(0)
        rows.append(("diamond", (f"Total (common effect) ({pct}% CI)", common, True, None)))
    if show_pi and not _isnan(s.get("pi_low")):
        rows.append(("pi", s))
    if s["k"] >= 2:
        rows.append(("small", _heterogeneity_text(s, result.method)))
    stat = "t" if result.settings.test == "t" else "Z"
    rows.append(("small", f"Test for overall effect: {stat} = {abs(s['statistic']):.2f} "
                          f"(P {format_p(s['p'], style='revman')})"))
    return rows


def _conversion_notes(studies):
    """One footnote per conversion rule named in the ``converted`` column, with the studies it applies to."""
    if "converted" not in studies.columns:
        return []
    rules = {}
    for name, rule in zip(studies["study"], studies["converted"]):
        if isinstance(rule, str) and rule.strip():
            rules.setdefault(rule.strip(), []).append(str(name))
    return [f"{DAGGER} converted, {rule}: {', '.join(names)}" for rule, names in rules.items()]


def _is_converted(row):
    rule = row.get("converted")
    return isinstance(rule, str) and bool(rule.strip())


def _study_label(row):
    return str(row["study"]) + FLAGS.get(row.get("status"), "") + (f" {DAGGER}" if _is_converted(row) else "")


def _effect_text(est, lo, hi, digits):
    return f"{_fmt(est, digits)} [{_fmt(lo, digits)}, {_fmt(hi, digits)}]"


# the arm columns of a forest plot, as RevMan draws them: (header, field prefix) for each arm
ARM_FIELDS = {"continuous": (("Mean", "mean"), ("SD", "sd"), ("Total", "n")),
              "binary": (("Events", "events"), ("Total", "n"))}


def _arm_fields(studies):
    """The arm columns the studies have in full (means and SDs, or events), else () (no arm columns)."""
    for kind, fields in ARM_FIELDS.items():
        needed = [f"{field}_{side}" for _, field in fields for side in ("exp", "ctrl")]
        if set(needed) <= set(studies.columns) and studies[needed].notna().all().all():
            return fields
    return ()


def _arm_text(field, value):
    return f"{value:g}" if field.startswith(("n_", "events_")) else _fmt(value, 1)


@dataclass(frozen=True)
class _ForestLayout:
    """Where the text columns stand (inches from the figure's left edge) and how wide the parts are."""
    columns: tuple          # (header, x, alignment)
    arm_columns: tuple      # (x, field) of the arm data columns
    quality_x: float | None
    weight_x: float
    effect_x: float
    text_width: float
    plot_width: float
    width: float
    groups: tuple = ()      # (title, centre x) of the arm groups ("Experimental", "Control")
    rob_x: tuple = ()       # centre x of the RoB columns D1..D5, Overall


def _column_right(x, texts, gap=0.12):
    """The right edge of a right-aligned column after ``x`` that holds ``texts`` (bold: the widest case)."""
    return x + gap + max(_text_width(t, bold=True) for t in texts)


def _forest_columns(result, rows, studies, arm_level, quality, quality_label, digits, with_rob=False):
    """Column positions from the widest text each column holds, and the plot width within the width budget."""
    shown = _scale(result)
    pct = int(round(result.level * 100))
    records = frame_records(studies)
    left = ["Study"] + [_study_label(records[p]) for kind, p in rows if kind == "study"]
    left += [p[0] for kind, p in rows if kind == "diamond"] + [str(p) for kind, p in rows if kind == "header"]
    left += ["Prediction interval"] if any(kind == "pi" for kind, _ in rows) else []
    x = 0.1 + max(_text_width(t, bold=True) for t in left) + 0.1
    columns, arm_columns, groups = [("Study", 0.1, "left")], [], []
    if arm_level:
        for side, group in (("exp", "Experimental"), ("ctrl", "Control")):
            start = x
            for header, field in arm_level:
                texts = [header] + [_arm_text(f"{field}_", v) for v in studies[f"{field}_{side}"]]
                counted = field in ("n", "events")
                x = _column_right(x, texts + ([f"{studies[f'{field}_{side}'].sum():g}"] if counted else []), gap=0.08)
                columns.append((header, x, "right"))
                arm_columns.append((x, f"{field}_{side}"))
            groups.append((group, (start + x) / 2))
            x += 0.1
    quality_x = None
    if quality is not None:
        x = quality_x = _column_right(x, [quality_label] + [_quality_text(v) for v in quality.values()])
        columns.append((quality_label, quality_x, "right"))
    gap = 0.15 if with_rob else 0.2           # a little tighter when the RoB columns need the room
    weight_x = x = _column_right(x, ["Weight", "100.0%"] + [f"{w:.1f}%" for w in studies["weight"]], gap=gap)
    columns.append(("Weight", weight_x, "right"))
    effect_header = f"{result.measure or 'Effect'} [{pct}% CI]"
    effects = [_effect_text(*shown(np.array([r["yi"], r["ci_low"], r["ci_high"]], dtype=float)), digits)
               for r in records]
    effects += [_effect_text(*shown(np.array([p[1]["estimate"], p[1]["ci_low"], p[1]["ci_high"]], dtype=float)),
                             digits) for kind, p in rows if kind == "diamond"]
    effect_x = _column_right(x, [effect_header, "[-00.00, -00.00]"] + effects, gap=gap)
    columns.append((effect_header, effect_x, "right"))
    text_width = effect_x + 0.2
    rob_width = ROB_STEP * 5 + max(0.35, _text_width("Overall", bold=True) + 0.08) if with_rob else 0.0
    plot_width = min(4.2, max(1.8 if with_rob else 2.3, FOREST_MAX_WIDTH - text_width - rob_width - 0.3))
    plot_width = max(plot_width, _text_width(_plot_header(result), bold=True) + 0.1)
    rob_x = ()
    if with_rob:
        start = text_width + plot_width + 0.1
        domains = 5 * ROB_STEP
        rob_x = tuple(start + ROB_STEP * (i + 0.5) for i in range(5)) + (start + domains + (rob_width - domains) / 2,)
    width = text_width + plot_width + (0.1 + rob_width + 0.05 if with_rob else 0.3)
    return _ForestLayout(tuple(columns), tuple(arm_columns), quality_x, weight_x, effect_x, text_width,
                         plot_width, width, tuple(groups), rob_x)


def _plot_header(result):
    pct = int(round(result.level * 100))
    ci = "HKSJ" if result.ci_method == "hksj" else "Wald"
    return f"{result.measure or 'Effect'} ({method_label(result.method)}, {ci}) [{pct}% CI]"


def _forest_canvas(rows, layout, title=None, subtitle=None, mcid_label=False):
    """The figure and the plot axis: one unit per row; plotted rows inside the axis, trailing text below."""
    plotted = max(i for i, (kind, _) in enumerate(rows) if kind in ("study", "diamond", "pi", "header")) + 1
    trailing = len(rows) - plotted
    top = plotted + (2.1 if mcid_label else 1.5)
    bottom = 0.4
    axes_h = (top - bottom) * ROW_IN
    margin_bottom = max(1.15, 0.45 + trailing * 0.85 * ROW_IN)
    margin_top = 0.45 + (0.2 if title else 0.0) + (0.26 if subtitle else 0.0)
    height = axes_h + margin_bottom + margin_top
    width = layout.width
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_axes([layout.text_width / width, margin_bottom / height, layout.plot_width / width,
                       axes_h / height])
    ax.set_ylim(bottom, top)
    return fig, ax, top


def _forest_xlim(ax, result, studies, shown, xlim):
    """The x range: given, or from every interval drawn (always including the null value, with room on
    both sides of it: each side at least a third of the other, so both 'favours' sides show)."""
    s = result.stats
    ratio = measures.get(result.measure).ratio
    if xlim is None:
        values = [studies["ci_low"].to_numpy(), studies["ci_high"].to_numpy(),
                  np.array([s["estimate"], s["ci_low"], s["ci_high"]], dtype=float)]
        candidates = shown(np.concatenate(values))
        candidates = candidates[np.isfinite(candidates)]
        if ratio:
            candidates = np.log(candidates[candidates > 0])
        lo, hi = min(float(np.min(candidates)), 0.0), max(float(np.max(candidates)), 0.0)
        lo, hi = min(lo, -hi / 3), max(hi, -lo / 3)
        if ratio:
            xlim = (math.exp(lo) / 1.15, math.exp(hi) * 1.15)
        else:
            pad = 0.08 * (hi - lo or 1.0)
            xlim = (lo - pad, hi + pad)
    if ratio:
        ax.set_xscale("log")
    ax.set_xlim(*xlim)
    return xlim


class _ForestText:
    """Writes text at (inches from the left edge, a row's y in data units). Made once the axis limits are
    set; ``inverse`` maps pixels back to data (for the squares, :func:`_box`). A row's height on the figure is
    computed once for all the texts in that row, and each style's font once per figure (each Text copies it;
    setting size, weight and style on every text cost more)."""

    def __init__(self, fig, ax, width):
        self.fig, self.ax, self.width = fig, ax, width
        self.height = fig.get_figheight()
        self.inverse = ax.transData.inverted()
        self.rows, self.fonts = {}, {}

    def font(self, size, bold, italic):
        font = self.fonts.get((size, bold, italic))
        if font is None:
            from matplotlib.font_manager import FontProperties

            font = self.fonts[size, bold, italic] = FontProperties(
                size=size, weight="bold" if bold else "normal", style="italic" if italic else "normal")
        return font

    def __call__(self, xpos, y, value, ha="left", bold=False, size=FOREST_PT, italic=False, colour="black"):
        fig = self.fig
        row = self.rows.get(y)
        if row is None:
            row = self.rows[y] = self.ax.transData.transform((0, y))[1] / fig.dpi / self.height
        fig.text(xpos / self.width, row, value, fontproperties=self.font(size, bold, italic), color=colour,
                 horizontalalignment=ha, verticalalignment="center")


def _forest_headers(text, result, layout, arm_level, header_y):
    for group, centre in layout.groups:
        text(centre, header_y + 0.75, group, ha="center", bold=True)
    for header, xpos, ha in layout.columns:
        text(xpos, header_y, header, ha=ha, bold=True)
    text(layout.text_width + layout.plot_width / 2, header_y, _plot_header(result), ha="center", bold=True)


def _forest_body(text, rows, studies, layout, shown, xlim, y, digits, quality, blups):
    """Every row, top to bottom, starting at ``y``."""
    weights = studies["weight"].to_numpy()
    max_w = np.nanmax(weights) if len(studies) else 1.0
    records = frame_records(studies)
    blup_rows = None if blups is None else frame_records(blups, ["pi_low", "pi_high", "pred"])
    for kind, payload in rows:
        if kind == "header":
            text(0.1, y, str(payload), bold=True, italic=True)
        elif kind == "study":
            _forest_study_row(text, records[payload], layout, shown, xlim, y, digits, quality, max_w,
                              None if blup_rows is None else blup_rows[payload])
        elif kind == "diamond":
            _forest_diamond_row(text, payload, studies, layout, shown, y, digits)
        elif kind == "pi":
            lo, hi = shown(payload["pi_low"]), shown(payload["pi_high"])
            text(0.1, y, "Prediction interval")
            text(layout.effect_x, y, f"[{_fmt(lo, digits)}, {_fmt(hi, digits)}]", ha="right")
            _line(text.ax, [max(lo, xlim[0]), min(hi, xlim[1])], [y, y], color=DIAMOND_COLOUR, linewidth=2.5)
        elif kind == "small":
            text(0.1, y, payload)
        elif kind == "note":
            text(0.1, y, payload, colour="#555555")
        y -= 0.85 if kind in ("small", "note") else 1


def _line(ax, xs, ys, **style):
    """``ax.plot(xs, ys, **style)`` on a forest plot's axis, whose limits are set before anything is drawn: the
    same Line2D, drawn alike, without plot's argument parsing and data-limit update (a millisecond a line)."""
    from matplotlib.lines import Line2D

    ax.add_artist(Line2D(xs, ys, **style))


def _forest_study_row(text, row, layout, shown, xlim, y, digits, quality, max_w, blup):
    ax = text.ax
    est, lo, hi = shown(row["yi"]), shown(row["ci_low"]), shown(row["ci_high"])
    text(0.1, y, _study_label(row))
    for xpos, field in layout.arm_columns:
        text(xpos, y, _arm_text(field, row[field]), ha="right")
    if layout.quality_x is not None:
        text(layout.quality_x, y, _quality_text(quality.get(row["study"])), ha="right")
    text(layout.weight_x, y, f"{row['weight']:.1f}%", ha="right")
    text(layout.effect_x, y, _effect_text(est, lo, hi, digits), ha="right")
    _line(ax, [max(lo, xlim[0]), min(hi, xlim[1])], [y, y], color="black", linewidth=1, solid_capstyle="butt")
    for clipped, edge, marker in ((lo < xlim[0], xlim[0], "<"), (hi > xlim[1], xlim[1], ">")):
        if clipped:      # arrow head where the CI runs off the axis
            _line(ax, [edge], [y], marker=marker, color="black", markersize=5, clip_on=False)
    _box(ax, est, y, 0.25 + 0.45 * math.sqrt(row["weight"] / max_w), text.inverse)
    if blup is not None:
        b_lo, b_hi = max(shown(blup["pi_low"]), xlim[0]), min(shown(blup["pi_high"]), xlim[1])
        _line(ax, [b_lo, b_hi], [y - 0.3, y - 0.3], color=BLUP_COLOUR, linewidth=0.8)
        _line(ax, [shown(blup["pred"])], [y - 0.3], marker="D", markersize=4, markerfacecolor="white",
              markeredgecolor=BLUP_COLOUR)


def _forest_diamond_row(text, payload, studies, layout, shown, y, digits):
    label_text, st, bold, share = payload
    est, lo, hi = shown(st["estimate"]), shown(st["ci_low"]), shown(st["ci_high"])
    text(0.1, y, label_text, bold=bold)
    if bold:                               # the totals of the arm counts (participants, events)
        for xpos, field in layout.arm_columns:
            if field.startswith(("n_", "events_")):
                text(xpos, y, f"{studies[field].sum():g}", ha="right", bold=True)
    if share is not None:
        text(layout.weight_x, y, f"{share:.1f}%", ha="right", bold=bold)
    text(layout.effect_x, y, _effect_text(est, lo, hi, digits), ha="right", bold=bold)
    colour = DIAMOND_COLOUR if bold else "#555555"
    text.ax.add_artist(Polygon([[lo, y], [est, y + 0.32], [hi, y], [est, y - 0.32]], closed=True,   # see _box
                               facecolor=colour, edgecolor=colour))


def _forest_axis(ax, result, xlim, mcid, xlabel, favours, line_top):
    """The axis, the null line, the MCID lines (labelled) and the favours labels. The vertical lines stop
    at ``line_top``, under the column titles."""
    ratio = measures.get(result.measure).ratio
    bottom = ax.get_ylim()[0]
    _line(ax, [1.0 if ratio else 0.0] * 2, [bottom, line_top], color="black", linewidth=0.8)
    if mcid is not None:
        for m in (-mcid, mcid):
            if xlim[0] < m < xlim[1]:
                _line(ax, [m, m], [bottom, line_top], color="#888888", linewidth=0.8, linestyle="--")
                ax.text(m, line_top + 0.35, f"MCID {m:g}", ha="center", va="center", fontsize=FOREST_PT,
                        color="#555555")
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    ax.set_yticks([])
    ax.tick_params(axis="x", labelsize=FOREST_PT)
    if xlabel:
        ax.set_xlabel(xlabel, fontsize=FOREST_PT)
    if ratio:
        from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

        room = ax.get_position().width * ax.figure.get_figwidth() / 0.45     # a tick label needs about 0.45 in
        for ladder in ((0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100), (0.01, 0.1, 0.5, 1, 2, 10, 100),
                       (0.001, 0.01, 0.1, 1, 10, 100, 1000)):
            ticks = [t for t in ladder if xlim[0] <= t <= xlim[1]]
            if len(ticks) <= room:
                break
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    offset = -36 if xlabel else -20
    if favours:
        # each label in the half of the plot on its side, broken into lines when it does not fit there
        half = ax.get_position().width * ax.figure.get_figwidth() / 2 - 0.1
        for label, x, ha in ((favours[0], 0.0, "left"), (favours[1], 1.0, "right")):
            for n, line in enumerate(_wrap(label, half)):
                ax.annotate(line, xy=(x, 0.0), xycoords="axes fraction", xytext=(0, offset - n * 1.25 * FOREST_PT),
                            textcoords="offset points", ha=ha, va="top", fontsize=FOREST_PT)


def _rob_judgements(rob, studies):
    """The RoB frame checked and aligned to the plotted studies: (DataFrame indexed like ``studies`` with
    columns D1..D5, overall holding "low" / "some concerns" / "high" / None, notes)."""
    from pfps_meta.errors import InputError

    columns = [d for d, _ in ROB_DOMAINS] + ["overall"]
    if not isinstance(rob, pd.DataFrame):
        raise InputError(f"forest(rob=...): expected a DataFrame with columns study, {', '.join(columns)}; "
                         f"got {type(rob).__name__}")
    missing = [c for c in ["study"] + columns if c not in rob.columns]
    if missing:
        raise InputError(f"forest(rob=...): column(s) {', '.join(missing)} missing; expected study, "
                         f"{', '.join(columns)}")
    names = rob["study"].astype(str).str.strip()
    repeated = sorted(set(names[names.duplicated()]))
    if repeated:
        raise InputError(f"forest(rob=...): study {repeated[0]!r} has more than one row")
    table = {}
    for row_number, (name, record) in enumerate(zip(names, rob[columns].to_dict("records")), start=1):
        table[name] = {c: _rob_value(record[c], row_number, c) for c in columns}
    plotted = [str(s).strip() for s in studies["study"]]
    absent = [s for s in plotted if s not in table]
    extra = [s for s in table if s not in set(plotted)]
    notes = []
    if absent:
        notes.append("No risk-of-bias judgement (grey): " + ", ".join(absent))
    if extra:
        notes.append("Risk-of-bias rows not in this plot (not drawn): " + ", ".join(extra))
    frame = pd.DataFrame([table.get(s, dict.fromkeys(columns)) for s in plotted], columns=columns)
    return frame, notes


def _rob_value(value, row_number, column):
    from pfps_meta.errors import InputError

    try:
        return rob_judgement(value)
    except ValueError as exc:
        raise InputError(f"forest(rob=...): row {row_number}, column {column}: {exc}") from None


def _rob_columns(fig, ax, layout, rob, header_y, first_y, rows):
    """Traffic-light circles (colour plus +, ?, -) in an axis of their own right of the plot, rows aligned."""
    from matplotlib.patches import Ellipse
    from matplotlib.ticker import NullLocator

    width = layout.width
    left, right = layout.rob_x[0] - ROB_STEP / 2, layout.rob_x[-1] + 0.3
    box = ax.get_position()
    rob_ax = fig.add_axes([left / width, box.y0, (right - left) / width, box.height])
    rob_ax.set_xlim(left, right)
    rob_ax.set_ylim(*ax.get_ylim())
    rob_ax.axis("off")
    for axis in (rob_ax.xaxis, rob_ax.yaxis):       # no ticks are drawn, so none are made
        axis.set_major_locator(NullLocator())
        axis.set_minor_locator(NullLocator())
    headers = [d for d, _ in ROB_DOMAINS] + ["Overall"]
    for x, header in zip(layout.rob_x, headers):
        rob_ax.text(x, header_y, header, ha="center", va="center", fontsize=FOREST_PT, fontweight="bold")
    y = first_y
    radius = 0.1
    judgements = frame_records(rob)
    for kind, payload in rows:
        if kind == "study":
            for x, column in zip(layout.rob_x, rob.columns):
                judgement = judgements[payload][column]
                colour, symbol = ROB_JUDGEMENTS.get(judgement, (ROB_MISSING_COLOUR, ""))
                rob_ax.add_artist(Ellipse((x, y), 2 * radius, 2 * radius / ROW_IN, facecolor=colour,  # see _box
                                          edgecolor="#666666", lw=0.5))
                if symbol:
                    rob_ax.text(x, y, symbol, ha="center", va="center", fontsize=FOREST_PT, fontweight="bold",
                                color="black" if judgement == "some concerns" else "white")
        y -= 0.85 if kind in ("small", "note") else 1


@dataclass(frozen=True)
class _PooledView:
    """What the forest plot's shared parts read from a result, for a model that is not a MetaResult."""
    measure: object
    level: float
    method: str
    ci_method: str
    stats: dict
    settings: object = None


@_literal_text
def forest_multilevel(result, *, title=None, xlabel=None, favours=None, measure=None, xlim=None, digits=2,
                      mcid=None, robust=None):
    """A forest plot of a multilevel / multivariate model: one row per effect, grouped under its
    outermost cluster (trial), with metafor's rma.mv weights, and the model's pooled diamond and
    prediction interval when the model has only an intercept (with moderators, no single pooled
    value exists, and the plot says so). ``measure`` names the effect measure for the axis and
    back-transformation (e.g. "OR"); the model itself does not know it. ``robust``: the result of
    ``result.robust(...)``; the diamond then shows the cluster-robust CI and says which adjustment."""
    effects = result.effects_frame()
    intercept_only = list(result.names) == ["intrcpt"]
    pct = level_percent(result.level)
    source = robust if robust is not None else None
    low = (source.ci_low if source is not None else result.ci_lb)
    high = (source.ci_high if source is not None else result.ci_ub)
    stats = {"estimate": float(result.estimate[0]) if intercept_only else float("nan"),
             "ci_low": float(low[0]) if intercept_only else float("nan"),
             "ci_high": float(high[0]) if intercept_only else float("nan")}
    view = _PooledView(measure, result.level, result.method, "t" if result.test == "t" else "wald", stats)
    inner = result.inner if result.struct is not None else result.sigma2_names[-1].split("/")[-1]
    studies = pd.DataFrame({"study": [f"{inner} {str(x).split('/')[-1]}" for x in effects["label"]],
                            "yi": effects["yi"], "vi": effects["vi"], "ci_low": effects["ci_low"],
                            "ci_high": effects["ci_high"], "weight": effects["weight"]})
    rows = []
    for cluster in dict.fromkeys(effects["cluster"]):
        members = np.flatnonzero(effects["cluster"].to_numpy() == cluster)
        rows.append(("header", f"{result.outer if result.struct else result.sigma2_names[0]} {cluster}"))
        rows += [("study", i) for i in members]
    rows.append(("gap", None))
    rows += _multilevel_summary_rows(result, intercept_only, stats,
                                     pct + (f" CI, {robust.adjust} cluster-robust" if robust is not None else " CI"))
    layout = _forest_columns(view, rows, studies, False, None, "", digits)
    return _draw_forest(view, rows, studies, layout, False, digits=digits, quality=None, blups=None, xlim=xlim,
                        mcid=mcid, xlabel=xlabel, favours=favours, title=title)


def _multilevel_summary_rows(result, intercept_only, stats, pct):
    """The pooled diamond, the prediction interval and the model lines under a multilevel forest plot."""
    rows = []
    clusters = len(dict.fromkeys(result.effects_frame()["cluster"]))
    if intercept_only:
        rows.append(("diamond", (f"Multilevel model ({pct})", stats, True, 100.0)))
        if result.struct is None:
            pred = result.predict()
            row = pred.iloc[0] if hasattr(pred, "iloc") else pred
            if "pi_lb" in row and np.isfinite(row["pi_lb"]):
                rows.append(("pi", {"pi_low": float(row["pi_lb"]), "pi_high": float(row["pi_ub"])}))
    else:
        rows.append(("small", f"Model with moderators ({', '.join(result.names)}): no single pooled value; "
                              "see the coefficient table"))
    parts = [f"sigma² ({name}) = {_fmt(value, 3)}" for name, value in zip(result.sigma2_names, result.sigma2)]
    if result.struct is not None:
        parts += [f"tau² = {', '.join(_fmt(v, 3) for v in result.tau2)} ({result.struct})"]
    rows.append(("small", f"{result.k} effects in {clusters} clusters; " + "; ".join(parts)))
    rows.append(("small", f"Residual heterogeneity: QE = {result.QE:.2f}, df = {result.QE_df} "
                          f"(P {format_p(result.QEp, style='revman')})"))
    return rows


def _heterogeneity_text(stats, method):
    tau2 = "" if _is_common_effect(method) else f"Tau² = {_fmt(stats['tau2'], 3)}; "
    return (f"Heterogeneity: {tau2}Chi² = {_fmt(stats['q'], 2)}, df = {int(stats['q_df'])} "
            f"(P {format_p(stats['q_p'], style='revman')}); I² = {stats['i2']:.0f}%")


def _quality_text(value):
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
        return "?"
    try:
        return f"{float(value):g}"
    except (TypeError, ValueError):
        return str(value)


def _box(ax, x, y, size_in, inverse):
    """A square of side ``size_in`` (in row units vertically), drawn square on the page (``inverse``:
    ``ax.transData.inverted()``, built once per plot)."""
    if not np.isfinite(x):
        return
    h = size_in
    # convert the height in data units to a width in data units that is equal on the page
    y0, y1 = ax.transData.transform([(x, y - h / 2), (x, y + h / 2)])
    pix = abs(y1[1] - y0[1])
    left, right = inverse.transform([(y0[0] - pix / 2, y0[1]), (y0[0] + pix / 2, y0[1])])[:, 0]
    # add_artist, not add_patch: the same patch, clipped and drawn alike, without add_patch's update of the data
    # limits (half a millisecond per square on a log axis), which nothing reads: the axis limits are already set
    ax.add_artist(Rectangle((left, y - h / 2), right - left, h, facecolor=BOX_COLOUR, edgecolor=BOX_COLOUR))


def _isnan(value):
    return value is None or (isinstance(value, float) and math.isnan(value))


@_literal_text
def funnel(result, *, level=0.95, contours=False, title=None, xlabel=None, filled=None):
    """Funnel plot: effect against standard error.

    Pseudo confidence limits (dashed) around the pooled effect; with ``contours=True`` the
    contour-enhanced version (Peters et al. 2008): shaded regions where a study would be significant
    at p < 0.01, 0.01-0.05 and 0.05-0.10 against the null, so asymmetry from publication bias
    (missing studies in the non-significant region) can be told from other causes. ``filled`` takes
    the ``trimfill()`` output to add the filled studies as open circles.
    """
    _check_fitted(result, "funnel")
    s = result.stats
    studies = result.studies
    fig, ax = plt.subplots(figsize=(5.8, 4.6))
    se_max = float(np.nanmax(studies["se"])) * 1.1 if len(studies) else 1.0
    se_grid = np.linspace(0, se_max, 60)
    null = 0.0
    if contours:
        from matplotlib.patches import Patch

        ax.set_facecolor("#9a9a9a")                       # p < 0.01 outside every band
        bands = ((0.01, "#c4c4c4", "0.01 < p < 0.05"), (0.05, "#e3e3e3", "0.05 < p < 0.10"),
                 (0.10, "#ffffff", "p > 0.10"))
        for p_level, shade, _ in bands:                   # widest first, narrower bands on top
            z = float(ndtri(1 - p_level / 2))
            ax.fill_betweenx(se_grid, null - z * se_grid, null + z * se_grid, color=shade, zorder=0)
        contour_handles = [Patch(color=shade, label=label) for _, shade, label in bands[::-1]]
        contour_handles.append(Patch(color="#9a9a9a", label="p < 0.01"))
    z = float(ndtri(0.5 + level / 2))
    est = s["estimate"]
    if not contours:
        ax.fill_betweenx(se_grid, est - z * se_grid, est + z * se_grid, color="#eeeeee", zorder=0,
                         label=f"pseudo {int(level * 100)}% limits")
    ax.plot(est - z * se_grid, se_grid, color="#777777", lw=0.8, ls="--")
    ax.plot(est + z * se_grid, se_grid, color="#777777", lw=0.8, ls="--")
    ax.axvline(est, color="black", lw=0.8)
    ax.scatter(studies["yi"], studies["se"], color=BOX_COLOUR, zorder=3, s=22, label="studies")
    if filled is not None and filled.get("k0"):
        ax.scatter(filled["filled_yi"], np.sqrt(filled["filled_vi"]), facecolors="white", edgecolors=BOX_COLOUR,
                   zorder=3, s=22, label=f"filled ({filled['estimator']})")
    ax.set_ylim(se_max, 0)
    ax.set_ylabel("Standard error")
    ax.set_xlabel(xlabel or (f"log {result.measure}" if measures.get(result.measure).ratio else result.measure or "Effect"))
    if title:
        _axes_title(ax, title)
    if s["k"] < 10:
        ax.text(0.02, 0.02, f"k = {s['k']}: too few studies to judge asymmetry", transform=ax.transAxes,
                fontsize=7, color="#aa0000")
    handles, _ = ax.get_legend_handles_labels()
    if contours:
        handles += contour_handles
    ax.legend(handles=handles, loc="lower right", fontsize=7, frameon=True)
    tight_layout(fig)
    return fig


@_literal_text
def baujat(result, *, title=None):
    """Baujat et al. (2002) plot: each study's contribution to Cochran's Q (x, with common-effect
    weights) against its influence on the pooled estimate (y: squared change in the estimate when the
    study is left out, divided by the variance of the leave-one-out estimate), as metafor's ``baujat``.

    Labels are placed most influential first (largest distance from the origin, each axis scaled to its
    range), each at the first of a ring of offsets where it overlaps no label, point or the axes' edge;
    a study whose label finds no free place is left unlabelled and named in a note under the plot.
    """
    _check_fitted(result, "baujat")
    from pfps_meta.analysis.sensitivity import leave_one_out

    studies = result.studies
    yi, vi = studies["yi"].to_numpy(float), studies["vi"].to_numpy(float)
    w = 1.0 / vi
    mu_fe = np.sum(w * yi) / np.sum(w)
    contribution = (yi - mu_fe) ** 2 / vi
    loo = leave_one_out(result)
    influence = (result.stats["estimate"] - loo["estimate"].to_numpy()) ** 2 / loo["se"].to_numpy() ** 2
    names = [str(s) for s in studies["study"]]
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    ax.scatter(contribution, influence, color=BOX_COLOUR, s=18)
    ax.set_xlabel("Contribution to overall heterogeneity (Q)")
    ax.set_ylabel("Influence on overall result")
    if title:
        _axes_title(ax, title)
    tight_layout(fig)
    unlabelled = _place_labels(fig, ax, contribution, influence, names)
    if unlabelled:
        reserved = 0.1 + 0.14 * (len(_wrap("Not labelled (no free space): " + ", ".join(unlabelled), 5.2, size=7)) + 1)
        fig.set_figheight(4.5 + reserved)
        tight_layout(fig, rect=(0, reserved / fig.get_figheight(), 1, 1))
        for text in list(ax.texts):
            text.remove()
        unlabelled = _place_labels(fig, ax, contribution, influence, names)
        lines = _wrap("Not labelled (no free space): " + ", ".join(unlabelled), 5.2, size=7) if unlabelled else []
        height = fig.get_figheight()
        for n, line in enumerate(lines):      # one text per line: figure texts are kept to one line
            fig.text(0.02, (0.04 + 0.14 * (len(lines) - 1 - n)) / height, line, ha="left", va="bottom", fontsize=7,
                     color="#555555")
    return fig


def _axes_title(ax, title, size=10.0):
    """An axes title that clears the top tick label (pad) and fits the figure's width (smaller type if not)."""
    room = ax.figure.get_figwidth() - 0.3
    ax.set_title(title, fontsize=min(size, size * room / max(_text_width(title, size=size), 1e-9)), pad=10)


def _place_labels(fig, ax, xs, ys, names, size=7):
    """Greedy label placement on a scatter: returns the names that could not be placed without overlap.

    Each label's extent is measured once, with the layout's metrics (:func:`layout_renderer`), on one probe
    text that is never added to the axes (a text's box moves with its anchor, so each candidate offset is
    arithmetic, all of a label's candidates at once); only the chosen position becomes an annotation."""
    points = ax.transData.transform(np.column_stack([xs, ys]))
    span = np.ptp(points, axis=0)
    order = np.argsort(-np.hypot(*((points - points.min(axis=0)) / np.where(span > 0, span, 1)).T), kind="stable")
    taken = [(px - 3, py - 3, px - 3 + 6, py - 3 + 6) for px, py in points]      # (x0, y0, x1, y1)
    rings = [(dx * r, dy * r) for r in (4, 9, 16) for dx, dy in
             ((1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1.4), (0, -1.4))]
    dx, dy = np.array(rings).T
    pixels_per_point = fig.dpi / 72.0
    probe = matplotlib.text.Text(0, 0, "", fontsize=size)
    probe.set_figure(fig)
    missed = []
    with layout_renderer(fig) as renderer:
        frame = ax.get_window_extent(renderer)
        for i in order:
            probe.set_text(names[i])
            extent = probe.get_window_extent(renderer)
            width, height = extent.width, extent.height
            x = points[i, 0] + dx * pixels_per_point
            y = points[i, 1] + dy * pixels_per_point
            x0 = np.where(dx >= 0, x, x - width)
            y0 = np.where(dy > 0, y, np.where(dy < 0, y - height, y - height / 2))
            x1, y1 = x0 + width, y0 + height
            inside = (frame.x0 <= x0) & (x1 <= frame.x1) & (frame.y0 <= y0) & (y1 <= frame.y1)
            t = np.array(taken)
            overlaps = ((x0[:, None] <= t[:, 2]) & (t[:, 0] <= x1[:, None]) & (y0[:, None] <= t[:, 3])
                        & (t[:, 1] <= y1[:, None])).any(axis=1)
            free = np.flatnonzero(inside & ~overlaps)
            if not len(free):
                missed.append(names[i])
                continue
            j = free[0]
            taken.append((x0[j], y0[j], x1[j], y1[j]))
            ax.annotate(names[i], (xs[i], ys[i]), textcoords="offset points", xytext=rings[j], fontsize=size,
                        ha="left" if rings[j][0] >= 0 else "right",
                        va="bottom" if rings[j][1] > 0 else ("top" if rings[j][1] < 0 else "center"))
    return missed


def published_label(row) -> str:
    """A readable name for one published estimate: "Author Year" from the citation (the first word and the
    first four-digit year, e.g. "Nascimento 2018"; a citation without a year gives its text before the first
    bracket), then the comparison with underscores as spaces, then the outcome."""
    import re

    citation = str(row.get("citation") or "").strip()
    match = re.match(r"([^\W\d_][\w'\-]*)\b.*?\b((?:19|20)\d\d)\b", citation)
    if match:
        source = f"{match.group(1)} {match.group(2)}"
    elif citation:
        source = citation.split("(")[0].strip()[:48] or citation[:48]
    else:
        source = str(row.get("review") or "").replace("_", " ")
    parts = [str(row.get(k) or "").replace("_", " ").strip() for k in ("comparison", "outcome")]
    what = ": ".join(p for p in parts if p)
    return f"{source} \u2014 {what}" if what else source


@_literal_text
def published_estimates(frame, *, title=None):
    """Published pooled estimates with their CIs, one row per review and outcome, a panel per measure.

    ``frame`` has columns ``measure``, ``estimate``, ``ci_low``, ``ci_high`` (as published; rows whose
    measure is not MD or SMD, or whose numbers are missing, are not drawn) and the row's name: a ``label``
    column if it has one, else one made by :func:`published_label` from ``citation`` (or ``review``),
    ``comparison`` and ``outcome``. Nothing is pooled: reviews share trials. Returns the Figure.
    """
    frame = frame[frame["measure"].isin(["MD", "SMD"])].dropna(subset=["estimate", "ci_low", "ci_high"])
    if "label" not in frame.columns:
        named = [c for c in ("citation", "review", "comparison", "outcome") if c in frame.columns]
        frame = frame.assign(label=[published_label(row) for row in frame_records(frame, named)])
    panels = [m for m in ("MD", "SMD") if (frame["measure"] == m).any()]
    heights = [max(1, int((frame["measure"] == m).sum())) for m in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(8.5, 1.0 + 0.34 * sum(heights) + 0.7 * len(panels)),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, measure in zip(axes[:, 0], panels):
        rows = frame[frame["measure"] == measure].reset_index(drop=True)
        y = np.arange(len(rows))[::-1]
        ax.errorbar(rows["estimate"], y, xerr=[rows["estimate"] - rows["ci_low"], rows["ci_high"] - rows["estimate"]],
                    fmt="s", color=BOX_COLOUR, ecolor="#333333", elinewidth=1.2, capsize=3, markersize=5)
        ax.axvline(0.0, color="black", lw=0.8)
        ax.set_yticks(y)
        ax.set_yticklabels(rows["label"], fontsize=8)
        ax.set_xlabel("SMD" if measure == "SMD" else "MD (pain on 0-10 unless stated)", fontsize=8)
        ax.tick_params(axis="x", labelsize=8)
        ax.set_ylim(-0.7, len(rows) - 0.3)
        for side in ("right", "top"):
            ax.spines[side].set_visible(False)
    if title:
        fig.suptitle(title, x=0.02, ha="left", fontsize=10, fontweight="bold")
    tight_layout(fig)
    return fig


@_literal_text
def coverage(simulation, *, title=None, level=None):
    """Coverage of the CI against tau2, one line per method x CI method, with 2 x MC SE error bars and the
    nominal level as a dashed line. ``simulation`` is a :class:`pfps_meta.analysis.simulate.SimulationResult`."""
    table = simulation.table.drop_duplicates(["mu", "tau2", "method", "ci_method"])
    level = level or simulation.setup["level"]
    fig, ax = plt.subplots(figsize=(6.2, 4.2))
    for (method, ci_method), rows in table.groupby(["method", "ci_method"], sort=False):
        rows = rows.sort_values("tau2")
        ax.errorbar(rows["tau2"], 100 * rows["ci_coverage"], yerr=200 * rows["ci_coverage_mcse"], marker="o",
                    ms=4, capsize=2, lw=1.2, label=(f"{method} (credible interval)" if ci_method == "credible" else
                                                    f"{method} + {'HKSJ' if ci_method == 'hksj' else 'Wald'}"))
    ax.axhline(100 * level, color="black", lw=0.8, ls="--")
    ax.set_xlabel("tau² (between-trial variance)", fontsize=8)
    ax.set_ylabel(f"coverage of the {100 * level:g}% CI (%)", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=7, frameon=False)
    for side in ("right", "top"):
        ax.spines[side].set_visible(False)
    ax.set_title(title or f"{simulation.design.label}: {simulation.setup['replicates']:,} replicates per point",
                 fontsize=9, loc="left")
    tight_layout(fig)
    return fig


@_literal_text
def tau_posterior(result, *, title=None):
    """Prior and posterior density of tau of a :class:`pfps_meta.models.bayes.BayesResult` (the posterior
    evaluated exactly, ``result.tau_density``; the prior from ``result.prior``), the posterior median
    and central interval marked. Returns the Figure."""
    s = result.summary["tau"]
    top = max(float(s["upper"]) * 1.6, float(result.prior.quantile_tau(0.9)))
    tau = np.linspace(top / 400, top, 400)
    posterior = result.tau_density(tau)
    prior = np.exp(result.prior.log_density_tau(tau))
    fig, ax = plt.subplots(figsize=(4.6, 2.6))
    ax.plot(tau, prior, color="#888888", lw=1.2, ls="--", label=f"prior: {result.prior.label}"[:70])
    ax.plot(tau, posterior, color=BOX_COLOUR, lw=1.6, label="posterior")
    ax.axvline(float(s["median"]), color=BOX_COLOUR, lw=0.8)
    ax.axvspan(float(s["lower"]), float(s["upper"]), color=BOX_COLOUR, alpha=0.12, lw=0)
    ax.set_xlim(0, top)
    ax.set_ylim(0, 1.15 * float(np.nanmax(posterior)))
    ax.set_xlabel("tau (between-trial SD)", fontsize=8)
    ax.set_ylabel("density", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6.5, frameon=False)
    for side in ("right", "top"):
        ax.spines[side].set_visible(False)
    ax.set_title(title or f"tau: posterior median {float(s['median']):.2f} "
                          f"[{float(s['lower']):.2f}, {float(s['upper']):.2f}]", fontsize=8, loc="left")
    tight_layout(fig)
    return fig


def save(fig, stem) -> list[Path]:
    """Write ``stem.png`` and ``stem.svg`` atomically and deterministically (no dates in the files)."""
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
