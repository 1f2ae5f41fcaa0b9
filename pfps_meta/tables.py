"""Presentation of results as tables: pandas, Markdown and HTML. Never recomputes statistics."""

from __future__ import annotations

import html


def result_html(result) -> str:
    """A compact HTML rendering of a :class:`~pfps_meta.model.MetaResult` for notebooks."""
    s = result.stats
    pct = int(round(result.level * 100))
    head = (f"<p><b>{html.escape(result.method)}</b> ({html.escape(result.ci)}), k = {s['k']}: "
            f"estimate {s['estimate']:.4f} [{pct}% CI {s['ci_low']:.4f}, {s['ci_high']:.4f}], "
            f"p = {s['p']:.4g}")
    if s["k"] >= 2:
        head += (f"; tau<sup>2</sup> = {s['tau2']:.4f}, I<sup>2</sup> = {s['i2']:.1f}%, "
                 f"prediction interval [{s['pi_low']:.4f}, {s['pi_high']:.4f}]")
    head += "</p>"
    return head + result.to_frame().to_html(index=False, float_format=lambda x: f"{x:.4f}")


def _num(value, places=2):
    import math

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.{places}f}"


def summary_table(analysis_results) -> "pandas.DataFrame":
    """Per analysis: k, participants, estimate with CI, prediction interval, tau2, I2, p (reporting scale)."""
    import math

    import pandas as pd

    rows = []
    for ar in analysis_results:
        a, res = ar.analysis, ar.result
        ratio = a.measure in ("RR", "OR")
        tr = (lambda x: math.exp(x) if x is not None and not math.isnan(x) else x) if ratio else (lambda x: x)
        s = res.stats if res is not None else {}
        rows.append({
            "analysis": a.key, "outcome": a.label, "measure": a.measure,
            "k": f"{ar.k_available}/{ar.k_expected}",
            "participants": ar.participants,
            "estimate": tr(s.get("estimate")), "ci_low": tr(s.get("ci_low")), "ci_high": tr(s.get("ci_high")),
            "pi_low": tr(s.get("pi_low")), "pi_high": tr(s.get("pi_high")),
            "tau2": s.get("tau2"), "i2": s.get("i2"), "p": s.get("p"),
            "model": f"{a.settings['method']}, {a.settings['ci']}",
        })
    return pd.DataFrame(rows)


def display_frame(frame):
    """Summary table with the numbers formatted as text (estimate [CI], etc.) for Markdown and HTML."""
    import pandas as pd

    out = pd.DataFrame({
        "Analysis": frame["outcome"], "k (with data/expected)": frame["k"],
        "Participants": [("" if p is None or p != p else str(int(p))) for p in frame["participants"]],
        "Estimate [95% CI]": [f"{_num(e)} [{_num(lo)}, {_num(hi)}]" if e == e and e is not None else "no data"
                              for e, lo, hi in zip(frame["estimate"], frame["ci_low"], frame["ci_high"])],
        "Prediction interval": [f"[{_num(lo)}, {_num(hi)}]" if lo == lo and lo is not None else ""
                                for lo, hi in zip(frame["pi_low"], frame["pi_high"])],
        "tau²": [_num(t, 3) for t in frame["tau2"]],
        "I²": [(_num(i, 0) + "%") if i == i and i is not None else "" for i in frame["i2"]],
        "p": [("<0.0001" if p is not None and p == p and p < 1e-4 else _num(p, 4)) for p in frame["p"]],
        "Model": frame["model"],
    })
    return out


def to_markdown(frame) -> str:
    """A GitHub-flavoured Markdown table (no extra dependency)."""
    def cell(value):
        return str(value).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(cell(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def to_html(frame, css_class="table") -> str:
    """An HTML table with every cell escaped."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
                   for row in frame.itertuples(index=False))
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
