"""Presentation of results as tables: pandas, Markdown and HTML. Never recomputes statistics."""

from __future__ import annotations

import html
import math

import numpy as np

from pfps_meta.effects import measures
from pfps_meta.conventions import TAU2_ESTIMATORS
from pfps_meta.formatting import format_p, renders


def level_percent(level) -> str:
    """A confidence level as a percentage: 0.95 -> "95%", 0.9 -> "90%", 0.975 -> "97.5%"."""
    return f"{100 * float(level):g}%"


def ci_label(level) -> str:
    """The label of a CI at ``level``: "95% CI", "90% CI" (every label is formatted from the result's level)."""
    return f"{level_percent(level)} CI"


@renders("html", "MetaResult")
def result_html(result) -> str:
    """A compact HTML rendering of a :class:`~pfps_meta.models.univariate.MetaResult` for notebooks."""
    s = result.stats
    head = (f"<p><b>{html.escape(result.method)}</b> ({html.escape(result.ci_method)}), k = {s['k']}: "
            f"estimate {s['estimate']:.4f} [{ci_label(result.level)} {s['ci_low']:.4f}, {s['ci_high']:.4f}], "
            f"p = {s['p']:.4g}")
    if s["k"] >= 2:
        head += (f"; tau<sup>2</sup> = {s['tau2']:.4f}, I<sup>2</sup> = {s['i2']:.1f}%, "
                 f"{level_percent(result.level)} prediction interval [{s['pi_low']:.4f}, {s['pi_high']:.4f}]")
    head += "</p>"
    return head + result.to_frame().to_html(index=False, float_format=lambda x: f"{x:.4f}")


def _num(value, places=2):
    import math

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.{places}f}"


def summary_table(analysis_results) -> "pandas.DataFrame":
    """Per analysis: k, participants, estimate with CI, prediction interval, tau2, I2, p (reporting scale)."""
    import pandas as pd

    rows = []
    for ar in analysis_results:
        a, res = ar.analysis, ar.result
        tr = measures.get(a.measure).to_reporting
        s = res.stats if res is not None else {}
        rows.append({
            "analysis": a.key, "outcome": a.label, "measure": a.measure,
            "k": f"{ar.k_available}/{ar.k_expected}",
            "participants": ar.participants,
            "estimate": tr(s.get("estimate")), "ci_low": tr(s.get("ci_low")), "ci_high": tr(s.get("ci_high")),
            "pi_low": tr(s.get("pi_low")), "pi_high": tr(s.get("pi_high")),
            "tau2": s.get("tau2"), "i2": s.get("i2"), "p": s.get("p"),
            "model": f"{a.settings.method}, {a.settings.ci_method}",
            "level": res.level if res is not None else a.settings.level,
        })
    return pd.DataFrame(rows)


def display_frame(frame):
    """Summary table with the numbers formatted as text (estimate [CI], etc.) for Markdown and HTML."""
    import pandas as pd

    levels = list(frame["level"]) if "level" in frame.columns else [None] * len(frame)
    one_level = len(set(levels)) <= 1
    # one known level heads the column; several levels: each row names its own
    known = one_level and bool(levels) and levels[0] is not None
    head = f"[{ci_label(levels[0])}]" if known else "[CI]"
    pi_head = f"{level_percent(levels[0])} prediction interval" if known else "Prediction interval"

    def row_label(level):
        return "" if one_level or level is None else f"{ci_label(level)} "

    out = pd.DataFrame({
        "Analysis": frame["outcome"], "k (with data/expected)": frame["k"],
        "Participants": [("" if p is None or p != p else str(int(p))) for p in frame["participants"]],
        f"Estimate {head}": [f"{_num(e)} [{row_label(lv)}{_num(lo)}, {_num(hi)}]" if e == e and e is not None
                             else "no data"
                             for e, lo, hi, lv in zip(frame["estimate"], frame["ci_low"], frame["ci_high"], levels)],
        pi_head: [f"[{_num(lo)}, {_num(hi)}]" if lo == lo and lo is not None else ""
                  for lo, hi in zip(frame["pi_low"], frame["pi_high"])],
        "tau²": [_num(t, 3) for t in frame["tau2"]],
        "I²": [(_num(i, 0) + "%") if i == i and i is not None else "" for i in frame["i2"]],
        "p": [format_p(p, bare=True) for p in frame["p"]],
        "Model": frame["model"],
    })
    return out


_MARKDOWN_SPECIAL = set("\\`*_[]<>#|!~")


def plain_text(value) -> str:
    """One line of text with control characters (including terminal escape sequences) made visible."""
    text = " ".join(str(value).splitlines())
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def html_text(value) -> str:
    """Text from data for HTML: escaped, with control characters made visible."""
    return html.escape(plain_text(value))


def markdown_text(value) -> str:
    """Text from data made inert in Markdown: no raw HTML, links, emphasis, headings or table breaks."""
    return "".join("\\" + ch if ch in _MARKDOWN_SPECIAL else ch for ch in plain_text(value))


def to_markdown(frame) -> str:
    """A GitHub-flavoured Markdown table (no extra dependency); every cell is neutralised."""
    def cell(value):
        return markdown_text(value)

    header = "| " + " | ".join(cell(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def html_links(value) -> str:
    """Cell text of web addresses (several separated by ' ; ') as links; anything that is not an http(s)
    address stays escaped text, so a ``javascript:`` address from data can never become a link."""
    parts = []
    for part in plain_text(value).split(" ; "):
        address = part.strip()
        if address.startswith(("http://", "https://")) and not any(c in address for c in "\"'<> "):
            label = address.split("://", 1)[1].split("/", 1)[0]
            parts.append(f'<a href="{html.escape(address)}">{html.escape(label)}</a>')
        else:
            parts.append(html.escape(part))
    return " ; ".join(parts)


def to_html(frame, css_class="table", link_columns=()) -> str:
    """An HTML table with every cell escaped; cells of ``link_columns`` become links (see html_links)."""
    head = "".join(f"<th>{html_text(c)}</th>" for c in frame.columns)
    cell = [html_links if column in link_columns else html_text for column in frame.columns]
    rows = "".join("<tr>" + "".join(f"<td>{show(v)}</td>" for show, v in zip(cell, row)) + "</tr>"
                   for row in frame.itertuples(index=False))
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


@renders("text", "MetaResult")
def result_text(result, digits: int = 4) -> str:
    """A plain-text summary of a fitted result in the spirit of metafor's ``print.rma``."""
    s = result.stats
    f = _formatter(digits)
    pct = level_percent(result.level)
    lines = []
    settings = result.settings
    info = measures.get(result.measure)
    if result.method == "FE":
        lines.append(f"Common-effect (fixed-effect) model (k = {s['k']})")
    else:
        lines.append(f"Random-effects model (k = {s['k']}; tau^2 estimator: {result.method}, "
                     f"{TAU2_ESTIMATORS[result.method].label})")
    measure = result.measure or "effect"
    if info.ratio:
        measure = f"log {result.measure} (results on the log scale; back-transformed below)"
    if info.uses_smd_settings:
        measure += f" (Hedges' g, {settings.smd_convention} convention, variance {settings.vtype})"
    lines.append(f"Measure: {measure}; sign = experimental minus control")
    lines.append("")
    if s["k"] >= 2:
        if result.method != "FE":
            lines.append(f"tau^2 (estimated amount of total heterogeneity): {f(s['tau2'])}"
                         f"  [{pct} CI {f(s['tau2_ci_low'])}, {f(s['tau2_ci_high'])}]")
            lines.append(f"tau (square root of estimated tau^2 value):      {f(s['tau'])}")
        i2_ci = ""
        if s["i2_ci_low"] is not None and np.isfinite(s["i2_ci_low"]):
            i2_ci = f"  [{pct} CI {s['i2_ci_low']:.2f}%, {s['i2_ci_high']:.2f}%]"
        basis = "from Q" if (result.i2_method == "q" or result.method == "FE") else "from tau^2"
        lines.append(f"I^2 (total heterogeneity / total variability):   {s['i2']:.2f}%{i2_ci}  ({basis})")
        lines.append(f"H^2 (total variability / sampling variability):  {s['h2']:.2f}")
        lines.append("")
        lines.append(f"Test for heterogeneity: Q(df = {int(s['q_df'])}) = {s['q']:.4f}, "
                     f"p {format_p(s['q_p'])}")
        lines.append("")
    else:
        lines.append("k = 1: the pooled estimate is the single study's; no heterogeneity statistics.")
        lines.append("")
    test = settings.test
    hksj = settings.ci_method == "hksj" and s["k"] >= 2
    lines.append(f"Model results ({'Hartung-Knapp-Sidik-Jonkman, t(' + str(s['k'] - 1) + ')' if hksj else 'Wald, normal'}):")
    header = f"{'estimate':>10} {'se':>9} {test + 'val':>8} {'pval':>8} {'ci.lb':>10} {'ci.ub':>10}"
    lines.append(header)
    lines.append(f"{f(s['estimate']):>10} {f(s['se']):>9} {f(s['statistic']):>8} "
                 f"{format_p(s['p'], bare=True):>8} {f(s['ci_low']):>10} {f(s['ci_high']):>10}")
    if info.ratio and s["estimate"] is not None:
        lines.append(f"Back-transformed ({result.measure}, exp): {f(info.to_reporting(s['estimate']))} "
                     f"[{f(info.to_reporting(s['ci_low']))}, {f(info.to_reporting(s['ci_high']))}]")
    lines.append("")
    if s["k"] >= 2 and not settings.prediction_interval:
        lines.append("No prediction interval (prediction_interval = false).")
    elif s["k"] >= 2:
        dist = {"auto": "t(k-1)" if settings.ci_method == "hksj" else "normal", "z": "normal",
                "t": "t(k-1)", "t_k2": "t(k-2)"}[settings.pi_method]
        lines.append(f"{pct} prediction interval ({dist}): [{f(s['pi_low'])}, {f(s['pi_high'])}]")
    if not s["converged"]:
        lines.append(f"WARNING: the {result.method} estimator did not converge "
                     f"({s['iterations']} iterations); treat tau^2 and everything after it with care.")
    for note in result.notes:
        lines.append(f"Note: {note}")
    converted = [(row["study"], row["conversion"]) for row in result.studies.to_dict("records")
                 if row.get("conversion")]
    if converted:
        lines.append("")
        lines.append(f"Converted from what the papers print ({len(converted)} of {s['k']} studies; "
                     "the means and SDs used are in --format json):")
        lines += [f"  {study}: {rule}" for study, rule in converted]
    lines.append("")
    lines.append("Studies:")
    table = result.studies[["study", "yi", "se", "ci_low", "ci_high", "weight"]].copy()
    lines.append(table.to_string(index=False, float_format=lambda x: f"{x:.{digits}f}"))
    return "\n".join(lines)


def _formatter(digits):
    def f(x):
        if x is None or (isinstance(x, float) and not math.isfinite(x)):
            return "NA"
        return f"{x:.{digits}f}"
    return f
