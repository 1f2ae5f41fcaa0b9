"""Risk-of-bias figures: the weighted summary bar chart of RevMan and robvis (one horizontal bar per RoB 2
domain and the overall judgement, split into the weighted shares of low / some concerns / high / no
information). The numbers are :func:`pfps_meta.analysis.risk_of_bias.summary`; this module only draws.
The traffic-light columns of the forest plot are drawn by :func:`pfps_meta.present.plots.forest` from
:func:`pfps_meta.analysis.risk_of_bias.forest_frame`.
"""

from __future__ import annotations

import matplotlib.pyplot as plt  # noqa: E402  (no backend is chosen here: the user's stays)

from pfps_meta.analysis.risk_of_bias import DOMAINS, JUDGEMENTS, summary
from pfps_meta.evidence.extraction import ROB_DOMAIN_NAMES

__all__ = ["summary_bar", "COLOURS", "SYMBOLS", "DOMAIN_LABELS"]

#: how each judgement is drawn, in the bar chart and in the forest plot's traffic lights: the Cochrane
#: colours of RoB 2 figures (RevMan Web, robvis's "cochrane" scheme) and, in the traffic lights, a symbol
#: for readers who cannot tell the colours apart
COLOURS = {"low": "#02C100", "some concerns": "#E2DF07", "high": "#BF0000", "missing": "#4EA1F7"}
SYMBOLS = {"low": "+", "some concerns": "?", "high": "\u2212"}
DOMAIN_LABELS = {**{d: f"{d} {name[0].upper()}{name[1:]}" for d, name in ROB_DOMAIN_NAMES.items()},
                 "overall": "Overall risk of bias"}


def _tight_layout(fig):
    """``fig.tight_layout()`` with the SVG writer's text metrics (:func:`pfps_meta.present.plots.tight_layout`;
    imported when called: plots imports this module)."""
    from pfps_meta.present.plots import tight_layout

    tight_layout(fig)


def summary_bar(rob, weights=None, ax=None, title=None):
    """The weighted summary bar chart of the RoB 2 judgements in ``rob`` (a frame with columns study,
    D1-D5, overall, e.g. :func:`~pfps_meta.analysis.risk_of_bias.forest_frame`). ``weights``: as
    :func:`~pfps_meta.analysis.risk_of_bias.summary` (a fitted result weights each study by its weight
    in the fit, as RevMan does; None counts each study once). Returns the Figure; its axes carry the
    shares in ``ax.rob_summary`` (the summary frame) for checking."""
    shares = summary(rob, weights)
    if ax is None:
        fig, ax = plt.subplots(figsize=(8.5, 3.2))
    else:
        fig = ax.figure
    rows = [*DOMAINS, "overall"][::-1]               # overall at the bottom, D1 at the top
    left = [0.0] * len(rows)
    for judgement in (*JUDGEMENTS, "missing"):
        values = [100 * shares.loc[r, judgement] for r in rows]
        label = "No information" if judgement == "missing" else judgement.capitalize()
        ax.barh(range(len(rows)), values, left=left, color=COLOURS[judgement], edgecolor="white",
                height=0.7, label=label)
        left = [a + b for a, b in zip(left, values)]
    ax.set_yticks(range(len(rows)), [DOMAIN_LABELS[r] for r in rows])
    ax.set_xlim(0, 100)
    ax.set_xlabel("Share of the analysis' weight (%)" if weights is not None else "Share of studies (%)")
    ax.axhline(0.5, color="black", linewidth=0.8)     # overall row set apart from the domains
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=4, frameon=False)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if title:
        ax.set_title(title)
    ax.rob_summary = shares
    _tight_layout(fig)
    return fig
