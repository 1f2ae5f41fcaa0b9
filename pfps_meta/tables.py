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
