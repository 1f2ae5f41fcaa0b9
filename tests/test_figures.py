"""Figures read well: no text overprints another (checked on drawn bounding boxes), the MCID line is labelled
and stops under the column titles, both 'favours' sides show, one p-value format, readable names, text size
at the report's width, a subtitle, conversion markers, RoB 2 traffic lights and Mantel-Haenszel / Peto."""

import io
import itertools
import re
import warnings

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.patches import Ellipse
from matplotlib.text import Text

import pfps_meta as pm
from pfps_meta import conventions
from pfps_meta.formatting import format_p
from pfps_meta.present import plots
from tests.conftest import ROOT

BCG = ROOT / "data" / "examples" / "bcg.csv"
# the report's figure column at a 1280-px window: body max-width 1200 px less <figure>'s 40-px margins
REPORT_COLUMN_PX = 1120
BODY_TEXT_PX = 16


@pytest.fixture(autouse=True)
def quiet_input_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pm.InputWarning)
        yield


def _bcg(**columns):
    frame = pd.read_csv(BCG)
    return pm.pool(frame.assign(**columns), measure="RR")


def _arm_trials(k=3):
    """Three made-up arm-level rows (test input only): pain on 0-10, every CI left of zero or across it."""
    frame = pd.DataFrame({"study": ["Trial A 2010", "Trial B 2012", "Trial C 2011"],
                          "mean_exp": [2.1, 3.0, 2.5], "sd_exp": [1.5, 1.8, 2.0], "n_exp": [20, 18, 16],
                          "mean_ctrl": [4.0, 4.5, 3.1], "sd_ctrl": [1.7, 2.0, 2.2], "n_ctrl": [21, 17, 17]})
    return pm.pool(frame.iloc[:k], measure="MD")


def _texts(fig):
    """Every visible, non-empty text artist of the figure that is drawn, after drawing it (tick labels whose
    tick lies outside the axis range exist but are not drawn)."""
    fig.canvas.draw()
    hidden = set()
    for ax in fig.axes:
        for axis, (lo, hi) in ((ax.xaxis, sorted(ax.get_xlim())), (ax.yaxis, sorted(ax.get_ylim()))):
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if not lo - 1e-9 * (hi - lo) <= tick.get_loc() <= hi + 1e-9 * (hi - lo):
                    hidden.update({id(tick.label1), id(tick.label2)})
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip() and id(t) not in hidden
            and (t.axes is None or t.axes.get_visible())]


def _overlaps(fig):
    boxes = [(t.get_text(), t.get_window_extent()) for t in _texts(fig)]
    return [(a, b) for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2) if box_a.overlaps(box_b)]


def _text(fig, pattern):
    found = [t for t in _texts(fig) if re.search(pattern, t.get_text())]
    assert found, pattern
    return found[0]


def test_total_row_does_not_overprint_its_weight_in_a_forest_without_arm_columns():
    fig = plots.forest(_bcg(), favours=("Favours vaccine", "Favours control"))
    total, weight = _text(fig, r"^Total \(random effects\)"), _text(fig, r"^100\.0%$")
    assert not total.get_window_extent().overlaps(weight.get_window_extent())
    assert _overlaps(fig) == []


@pytest.mark.parametrize("options", [
    {"mcid": 2, "favours": ("Favours hip", "Favours knee"), "xlabel": "MD, pain 0-10", "quality": {"Trial A 2010": 7}},
    {"subgroups": ["x", "x", "y"], "show_common": True, "title": "Pain", "subtitle": "3 of 10 expected trials"},
])
def test_no_two_texts_intersect_in_arm_level_forest_plots(options):
    assert _overlaps(plots.forest(_arm_trials(), **options)) == []


def test_baujat_labels_do_not_overlap_and_every_study_is_labelled_or_named():
    rng = np.random.default_rng(20261201)
    k = 25
    frame = pd.DataFrame({"study": [f"Trial {i} et al 20{i:02d}" for i in range(k)],
                          "yi": rng.normal(0.0, 0.3, k), "vi": rng.uniform(0.01, 0.1, k)})
    fig = plots.baujat(pm.pool_effects(frame))
    assert _overlaps(fig) == []
    shown = " ".join(t.get_text() for t in _texts(fig))
    assert all(name in shown for name in frame["study"])
    labels = [t for t in fig.axes[0].texts]
    assert 5 <= len(labels) < k            # crowded: the most influential labelled, the rest named in the note
    assert "Not labelled" in shown


def test_mcid_line_is_labelled_and_stops_under_the_column_titles():
    fig = plots.forest(_arm_trials(1), mcid=2, favours=("Favours hip", "Favours quadriceps"))
    label = _text(fig, r"^MCID -2$")
    ax = fig.axes[0]
    dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert len(dashed) == 1 and list(dashed[0].get_xdata()) == [-2, -2]
    line_top = ax.transData.transform((-2, max(dashed[0].get_ydata())))[1]
    titles = [_text(fig, r"^Weight$"), _text(fig, r"^MD \(REML, Wald\)")]
    assert all(line_top < t.get_window_extent().y0 for t in titles)
    assert label.get_window_extent().y1 < titles[1].get_window_extent().y0
    assert _overlaps(fig) == []


@pytest.mark.parametrize("result", ["one_trial", "bcg"])
def test_x_axis_leaves_room_on_both_sides_of_the_null(result):
    res = _arm_trials(1) if result == "one_trial" else _bcg()
    ax = plots.forest(res).axes[0]
    lo, hi = ax.get_xlim()
    if ax.get_xscale() == "log":
        lo, hi = np.log(lo), np.log(hi)
    assert lo < 0 < hi
    assert min(-lo, hi) >= max(-lo, hi) / 3.5           # the smaller side at least about a third of the other


def test_every_p_value_in_a_forest_plot_uses_one_format():
    fig = plots.forest(_bcg(), subgroups="alloc")
    shown = [t.get_text() for t in _texts(fig) if "(P " in t.get_text()]
    assert len(shown) >= 4
    for text in shown:
        assert re.search(r"\(P (= \d\.\d+|< 0\.00001)\)", text), text
        assert "e-" not in text, text
    res = _bcg()
    assert f"(P {format_p(res.stats['p'], style='revman')})" in " ".join(shown)


def test_published_estimates_figure_names_reviews_not_internal_ids():
    published = pd.read_csv(ROOT / "data" / "published.csv")
    fig = plots.published_estimates(published.drop(columns=[c for c in ("label",) if c in published]))
    names = [t.get_text() for ax in fig.axes for t in ax.get_yticklabels()]
    assert any(n.startswith("Nascimento 2018") for n in names) and any(n.startswith("Rogan 2019") for n in names)
    assert not any("crd42023451065" in n or "_" in n for n in names), names
    with_label = published.assign(label=[f"row {i}" for i in range(len(published))])
    names = [t.get_text() for ax in plots.published_estimates(with_label).axes for t in ax.get_yticklabels()]
    assert all(n.startswith("row ") for n in names)


@pytest.mark.parametrize("case", ["bcg", "arm_mcid_quality", "one_trial", "bcg_rob"])
def test_forest_text_is_at_least_80_percent_of_body_text_at_1280_px(case):
    if case == "bcg":
        fig = plots.forest(_bcg(), favours=("Favours vaccine", "Favours control"), title="BCG")
    elif case == "bcg_rob":
        fig = plots.forest(_bcg(), rob=_rob_frame(pd.read_csv(BCG)["study"]))
    elif case == "one_trial":
        fig = plots.forest(_arm_trials(1), mcid=2, title="B1", subtitle="1 of 10 expected trials")
    else:
        fig = plots.forest(_arm_trials(), mcid=2, quality={"Trial A 2010": 7}, xlabel="MD",
                           favours=("Favours hip", "Favours knee"))
    smallest = min(t.get_fontsize() for t in _texts(fig))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    width_px = matplotlib.image.imread(io.BytesIO(buffer.getvalue())).shape[1]
    shown_px = smallest / 72 * 110 * min(1.0, REPORT_COLUMN_PX / width_px)
    assert shown_px >= 0.8 * BODY_TEXT_PX, (smallest, width_px)


def test_subtitle_is_drawn_under_the_title_and_above_the_column_titles():
    fig = plots.forest(_arm_trials(1), title="B1: pain at 4 weeks",
                       subtitle="1 of 10 expected trials; hip-only vs quadriceps-only at 4 weeks")
    title, subtitle = _text(fig, r"^B1: pain"), _text(fig, r"^1 of 10 expected trials; hip-only")
    study = _text(fig, r"^Study$")
    assert title.get_window_extent().y0 > subtitle.get_window_extent().y1
    assert subtitle.get_window_extent().y0 > study.get_window_extent().y1
    assert _overlaps(fig) == []


def test_converted_studies_carry_a_dagger_and_a_footnote_naming_the_rule():
    rules = [""] * 13
    rules[1], rules[3], rules[5] = "median/IQR (Luo, Shi)", "SE from the 95% CI", "median/IQR (Luo, Shi)"
    fig = plots.forest(_bcg(converted=rules))
    names = pd.read_csv(BCG)["study"]
    shown = [t.get_text() for t in _texts(fig)]
    assert f"{names[1]} \u2020" in shown and f"{names[0]} \u2020" not in shown and names[0] in shown
    lines = " ".join(shown)                                 # a long footnote is wrapped at spaces
    assert f"\u2020 converted, median/IQR (Luo, Shi): {names[1]}, {names[5]}" in lines
    assert f"\u2020 converted, SE from the 95% CI: {names[3]}" in lines
    assert _overlaps(fig) == []


def _rob_frame(studies):
    judgements = ["low", "some concerns", "high"]
    return pd.DataFrame({"study": list(studies), **{f"D{j}": [judgements[(i + j) % 3] for i in range(len(studies))]
                                                   for j in range(1, 6)},
                         "overall": [judgements[i % 3] for i in range(len(studies))]})


def test_rob_traffic_lights_draw_each_judgement_with_its_colour_and_symbol():
    names = pd.read_csv(BCG)["study"]
    rob = _rob_frame(names[1:]).iloc[:-1]                  # the first and last study have no row
    rob = pd.concat([rob, pd.DataFrame([{"study": "Not in this plot 1999", "D1": "low"}])], ignore_index=True)
    rob.loc[0, "D3"] = None
    fig = plots.forest(_bcg(), rob=rob)
    circles = [p for p in fig.axes[-1].patches if isinstance(p, Ellipse)]
    assert len(circles) == 6 * len(names)
    colours = [matplotlib.colors.to_hex(c.get_facecolor()) for c in circles]
    expected = {"low": "#02c100", "some concerns": "#e2df07", "high": "#bf0000"}   # the Cochrane colours
    first_judged = rob.iloc[0]
    row_1 = colours[6:12]                                   # rows follow the plot's order: study 2 is row 1
    assert row_1 == [expected[first_judged[c]] if isinstance(first_judged[c], str) else "#dddddd"
                     for c in ["D1", "D2", "D3", "D4", "D5", "overall"]]
    assert colours[:6] == ["#dddddd"] * 6 and colours[-6:] == ["#dddddd"] * 6
    symbols = [t.get_text() for t in fig.axes[-1].texts]
    assert {"D1", "D5", "Overall", "+", "?", "\u2212"} <= set(symbols)
    shown = " ".join(t.get_text() for t in _texts(fig))
    for domain in ("D1 randomisation process", "D2 deviations from intended interventions",
                   "D3 missing outcome data", "D4 measurement of the outcome", "D5 selection of the reported"):
        assert domain in shown
    assert f"No risk-of-bias judgement (grey): {names[0]}, {names[12]}" in shown
    assert "Risk-of-bias rows not in this plot (not drawn): Not in this plot 1999" in shown
    assert _overlaps(fig) == []


@pytest.mark.parametrize("change, message", [
    (lambda f: f.drop(columns=["D4"]), "column(s) D4 missing"),
    (lambda f: f.assign(D2=["low", "moderate"] + ["low"] * (len(f) - 2)), "row 2, column D2: 'moderate'"),
    (lambda f: pd.concat([f, f.iloc[:1]]), "has more than one row"),
])
def test_rob_frame_errors_name_the_column_or_row(change, message):
    rob = change(_rob_frame(pd.read_csv(BCG)["study"]))
    with pytest.raises(pm.InputError, match=re.escape(message)):
        plots.forest(_bcg(), rob=rob)


@pytest.mark.parametrize("method, measure", [("MH", "RR"), ("PETO", "OR")])
def test_mantel_haenszel_and_peto_forest_plots_name_the_method_from_the_registry(method, measure):
    res = pm.pool(pd.read_csv(BCG), measure=measure, method=method)
    fig = plots.forest(res)
    label = conventions.COUNT_METHODS[method].abbreviation        # RevMan's "M-H", "Peto"
    assert label in ("M-H", "Peto")
    shown = [t.get_text() for t in _texts(fig)]
    assert f"Total ({label}, common effect) (95% CI)" in shown
    assert f"{measure} ({label}, Wald) [95% CI]" in shown
    assert not any("Tau²" in s for s in shown)
    assert _overlaps(fig) == []


def test_forestplot_renderer_names_mantel_haenszel_as_the_forest_plot_does():
    from pfps_meta.present import forestplot_renderer

    res = pm.pool(pd.read_csv(BCG), measure="RR", method="MH")
    pooled = forestplot_renderer.forestplot_frame(res).iloc[-1]
    assert pooled["label"] == f"Pooled ({conventions.COUNT_METHODS['MH'].abbreviation}, wald)" == "Pooled (M-H, wald)"
    # metafor 3.8-1 rma.mh(measure="RR") on dat.bcg, as quoted in issue 21: 0.6353 [0.5881, 0.6862]
    assert [round(pooled[c], 4) for c in ("est", "ll", "hl")] == [0.6353, 0.5881, 0.6862]


def test_conversion_rules_can_be_passed_by_study_and_the_overall_test_left_out():
    names = pd.read_csv(BCG)["study"]
    fig = plots.forest(_bcg(), converted={names[2]: "mean from median and range (Luo)"}, show_test=False)
    shown = [t.get_text() for t in _texts(fig)]
    assert f"{names[2]} \u2020" in shown and f"{names[1]} \u2020" not in shown
    assert f"\u2020 converted, mean from median and range (Luo): {names[2]}" in " ".join(shown)
    assert "Test for overall effect: not given (too little evidence)" in shown
    assert not any(s.startswith("Test for overall effect: Z") for s in shown)


def test_funnel_and_baujat_titles_clear_the_tick_labels():
    from pfps_meta.analysis import sensitivity

    res = pm.pool(ROOT / "data" / "examples" / "hackshaw1998.csv", measure="OR", method="DL")
    title = "Contour-enhanced funnel plot: Spouse smokes vs never smoked (lung cancer)"
    assert _overlaps(plots.funnel(res, contours=True, filled=sensitivity.trimfill(res), title=title)) == []
    assert _overlaps(plots.baujat(res, title="Baujat plot: Spouse smokes vs never smoked (lung cancer)")) == []


def test_single_trial_forest_with_long_favours_labels_has_no_overlap():
    fig = plots.forest(_arm_trials(1), mcid=2, quality={"Trial A 2010": 6}, title="B1", subtitle="1 of 10",
                       favours=("Favours experimental", "Favours control"))
    assert _overlaps(fig) == []
    assert "Favours" in [t.get_text() for t in _texts(fig)]        # broken into lines to fit its half


def test_worked_example_caffeine_forest_shows_the_rob_columns_from_the_data():
    """R meta's caffeine teaching data (data/examples/caffeine.csv) with its RoB 2 rows (data/risk_of_bias.csv),
    pooled by Mantel-Haenszel as RevMan would: every pooled study gets six circles, spaced tick labels."""
    rob = pd.read_csv(ROOT / "data" / "risk_of_bias.csv")
    rob = rob[rob["review"] == "caffeine"]
    res = pm.pool(ROOT / "data" / "examples" / "caffeine.csv", measure="OR", method="MH")
    fig = plots.forest(res, rob=rob, favours=("Favours caffeine", "Favours decaf"))
    circles = [p for p in fig.axes[-1].patches if isinstance(p, Ellipse)]
    assert len(circles) == 6 * len(res.studies)
    grey = [c for c in circles if matplotlib.colors.to_hex(c.get_facecolor()) == "#dddddd"]
    assert len(grey) == 6 * sum(s not in set(rob["study"]) for s in res.studies["study"])
    assert _overlaps(fig) == []
    ticks = sorted((t.get_window_extent() for t in fig.axes[0].get_xticklabels()), key=lambda b: b.x0)
    assert all(b.x0 - a.x1 > 5 for a, b in zip(ticks, ticks[1:]))      # a visible gap between tick labels


def test_caffeine_mantel_haenszel_forest_has_revman_events_and_total_columns_per_arm():
    """RevMan draws Events and Total for each arm of 2x2 data, and their sums in the Total row
    (caffeine: 58/277 caffeinated, 46/290 decaffeinated)."""
    res = pm.pool(ROOT / "data" / "examples" / "caffeine.csv", measure="OR", method="MH")
    fig = plots.forest(res)
    shown = [t.get_text() for t in _texts(fig)]
    assert shown.count("Events") == 2 and shown.count("Total") == 2
    assert {"Experimental", "Control", "58", "277", "46", "290"} <= set(shown)


@pytest.mark.parametrize("name", ["forest", "funnel", "baujat"])
def test_a_plot_of_no_fitted_analysis_is_refused_naming_the_argument(name):
    from pfps_meta.errors import InputError

    with pytest.raises(InputError, match=f"result: plots.{name} takes a fitted pairwise meta-analysis"):
        getattr(plots, name)(None)


def _agg_text_measurements(monkeypatch):
    """A list that grows by one string each time matplotlib's Agg renderer measures text."""
    from matplotlib.backends.backend_agg import RendererAgg

    measured = []
    own = RendererAgg.get_text_width_height_descent

    def counting(self, s, prop, ismath):
        measured.append(s)
        return own(self, s, prop, ismath)

    monkeypatch.setattr(RendererAgg, "get_text_width_height_descent", counting)
    return measured


PUBLISHED = pd.DataFrame({"measure": ["MD", "SMD"], "estimate": [-1.0, -0.4], "ci_low": [-2.0, -0.8],
                          "ci_high": [0.1, 0.0], "label": ["Review A 2018 pain", "Review B 2020 function"]})


@pytest.mark.parametrize("draw", [lambda: plots.funnel(_bcg(), contours=True, title="Funnel of BCG"),
                                  lambda: plots.baujat(_bcg(), title="Baujat of BCG"),
                                  lambda: plots.published_estimates(PUBLISHED)],
                         ids=["funnel", "baujat (its labels' room)", "published estimates"])
def test_svg_layout_metrics_measure_text_through_the_svg_writers_measurer_only(monkeypatch, draw):
    from matplotlib.textpath import TextToPath

    from pfps_meta.present import svg

    monkeypatch.setattr(plots, "LAYOUT_METRICS", "svg")
    svg.text_measure.cache_clear()
    agg = _agg_text_measurements(monkeypatch)
    laid_out = []                 # strings FreeType laid out for the SVG measurer (first measurements only)
    own = TextToPath.get_text_width_height_descent
    monkeypatch.setattr(TextToPath, "get_text_width_height_descent",
                        lambda self, s, prop, ismath: laid_out.append(s) or own(self, s, prop, ismath))
    fig = draw()
    assert agg == []                                          # no label was measured by Agg for the layout
    assert len(laid_out) > 5                                  # ... but by the SVG writer's measurer
    assert "get_renderer" not in vars(fig.canvas)             # the canvas lent its renderer back
    for_layout = set(laid_out)
    laid_out.clear()
    svg.svg_bytes(fig)
    assert not for_layout & set(laid_out)                     # the writer measures none of them again
    assert agg == []


def test_default_layout_metrics_are_the_canvas_own_so_layouts_stay_as_they_were(monkeypatch):
    import matplotlib.pyplot as plt

    assert plots.LAYOUT_METRICS == "agg"
    agg = _agg_text_measurements(monkeypatch)
    positions = []
    for layout in (lambda f: f.tight_layout(), plots.tight_layout):
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.set_yticks([0, 1], ["a long label on the left", "short"])
        ax.set_title("A title")
        layout(fig)
        positions.append(ax.get_position().bounds)
        plt.close(fig)
    assert positions[0] == positions[1] and agg


def test_svg_layout_metrics_move_a_layout_only_by_the_difference_in_text_widths(monkeypatch):
    """Agg's hinted widths run about 1.5% wider than the outline widths the SVG writer measures: the axes of
    the funnel plot move by under 2 px at 110 dpi."""
    def box():
        fig = plots.funnel(_bcg(), contours=True, title="Funnel of BCG")
        return np.array(ax_box(fig))

    def ax_box(fig):
        width, height = fig.get_size_inches() * 110
        return [v * s for v, s in zip(fig.axes[0].get_position().bounds, (width, height, width, height))]

    agg = box()
    monkeypatch.setattr(plots, "LAYOUT_METRICS", "svg")
    moved = np.abs(box() - agg).max()
    assert 0 < moved < 2.0


def _wrap_word_by_word(text, width_in, size=plots.FOREST_PT):
    """The line filling plots._wrap did before it halved: one measurement per word (the reference), on the
    same unbreakable words."""
    lines, line = [], ""
    for word in plots._unbreakable_words(text):
        trial = f"{line} {word}" if line else word
        if line and plots._text_width(trial, size=size) > width_in:
            lines.append(line)
            line = word
        else:
            line = trial
    return lines + [line]


def test_wrapping_by_halving_breaks_every_line_where_word_by_word_filling_does():
    import random

    rng = random.Random(18)
    words = ["Heterogeneity:", "Tau²", "=", "0.123;", "Chi²", "9.47,", "df", "4", "(P", "<", "0.00001);", "I²",
             "87%", "", "W", "iii", "Favours", "hip + knee", "Nascimento 2018", "\u2014", "[imputed SD]", "ff"]
    cases = [("", 1.0), (" leading space", 0.5), ("two  spaces  here", 0.4), ("one", 0.01)]
    cases += [((" " if rng.random() < 0.2 else "") + " ".join(rng.choice(words) for _ in range(rng.randint(0, 25))),
               rng.uniform(0.2, 6.0)) for _ in range(300)]
    for text, width in cases:
        assert plots._wrap(text, width) == _wrap_word_by_word(text, width), (text, width)


def test_axes_drawn_without_an_axis_make_no_ticks():
    from pfps_meta.models.network import network
    from pfps_meta.present import network_plots

    net = network(pd.read_csv(ROOT / "data" / "examples" / "senn2013.csv"), measure="MD", reference="placebo")
    figures = [network_plots.network_graph(net), network_plots.league_figure(net),
               plots.forest(_bcg(), rob=_rob_frame(pd.read_csv(BCG)["study"]))]
    hidden = [ax for fig in figures for ax in fig.axes if not ax.axison]
    assert len(hidden) == 3
    for fig in figures:
        fig.canvas.draw()
    for ax in hidden:
        assert ax.xaxis.get_major_ticks() == [] and ax.yaxis.get_major_ticks() == []
        assert ax.xaxis.get_minor_ticks() == [] and ax.yaxis.get_minor_ticks() == []


def test_layout_metrics_chosen_for_a_block_apply_inside_it_only(monkeypatch):
    agg = _agg_text_measurements(monkeypatch)
    with plots.layout_metrics("svg"):
        plots.funnel(_bcg(), title="Funnel of BCG")
        assert agg == []
        with plots.layout_metrics("agg"):
            plots.funnel(_bcg(), title="Funnel of BCG")
        assert agg
    measured = len(agg)
    plots.funnel(_bcg(), title="Funnel of BCG")           # the default again: Agg's metrics
    assert len(agg) > measured
    with pytest.raises(pm.InputError, match="metrics: 'agg' or 'svg', not 'pdf'"):
        with plots.layout_metrics("pdf"):
            pass
    with pytest.raises(pm.InputError, match="metrics: 'agg' or 'svg', not 'png'"):
        plots.tight_layout(plots.funnel(_bcg()), metrics="png")
