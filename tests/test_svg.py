"""The report's SVG writer (pfps_meta.present.svg): one draw, the drawing matplotlib writes for the whole
figure, cut to the box of what it draws; that box set beside the one ``bbox_inches="tight"`` measures."""

import io
import re

import matplotlib
import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from pfps_meta.present import plots
from pfps_meta.present.svg import svg_bytes
from tests.conftest import ROOT

ROOT_TAG = re.compile(rb'<svg [^>]*width="([^"]*)pt" height="([^"]*)pt" viewBox="([^"]*)"[^>]*>')


def _bcg():
    import pfps_meta as pm

    return pm.pool(pd.read_csv(ROOT / "data" / "examples" / "bcg.csv"), measure="RR")


def _constrained_figure():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(layout="constrained")
    ax.plot([0.5, 2.0], [1.0, 3.0])
    ax.set_title("A title")
    ax.set_xlabel("An axis label")
    return fig


def _rotated_text_figure():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 3))
    ax = fig.subplots()
    ax.scatter([1, 2, 3], [3, 1, 2], s=80)
    ax.set_ylabel("A rotated label that goes low and high", rotation=90)
    ax.annotate("arrow", (2, 1), xytext=(2.5, 2.8), arrowprops={"arrowstyle": "->"})
    fig.text(0.98, 0.02, "corner note", ha="right", rotation=20)
    return fig


DRAWINGS = {"forest": lambda: plots.forest(_bcg(), mcid=0.3, favours=("Vaccine", "Control")),
            "funnel after tight_layout": lambda: plots.funnel(_bcg(), contours=True, title="Funnel"),
            "constrained layout engine": _constrained_figure,
            "rotated text, markers, an arrow": _rotated_text_figure}


def _numbers_and_rest(svg: bytes):
    """(every number, the text with numbers and hashed ids blanked) of an SVG document after its root tag."""
    body = svg[ROOT_TAG.search(svg).end():].decode()
    text = re.sub(r"\b[pmh][0-9a-f]{10}\b", "ID", body)
    return [float(n) for n in re.findall(r"-?\d+\.?\d*(?:e-?\d+)?", text)], re.sub(r"-?\d+\.?\d*(?:e-?\d+)?", "N", text)


def _matplotlib_tight_box_pt(fig):
    """(x0, top, x1, bottom) of the box ``bbox_inches="tight"`` would cut, padded, in SVG points (y down)."""
    from matplotlib.backends.backend_svg import RendererSVG

    dpi, fig.dpi = fig.dpi, 72
    try:
        width, height = fig.get_size_inches()
        box = fig.get_tightbbox(RendererSVG(width * 72, height * 72, io.StringIO()))
    finally:
        fig.dpi = dpi
    pad = matplotlib.rcParams["savefig.pad_inches"]
    box = box.padded(pad, pad)
    return box.x0 * 72, (height - box.y1) * 72, box.x1 * 72, (height - box.y0) * 72


@pytest.mark.parametrize("name", DRAWINGS)
def test_svg_bytes_writes_the_drawing_savefig_writes_for_the_whole_figure_and_cuts_only_its_root_box(name):
    whole = io.BytesIO()
    fig = DRAWINGS[name]()
    with matplotlib.rc_context({"svg.hashsalt": "pfps-meta", "svg.fonttype": "none"}):
        fig.savefig(whole, format="svg", dpi=110, metadata={"Date": None, "Creator": None})
    fig = DRAWINGS[name]()
    canvas, engine, dpi = fig.canvas, fig.get_layout_engine(), fig.dpi
    got = svg_bytes(fig)
    assert fig.canvas is canvas and fig.get_layout_engine() is engine and fig.dpi == dpi
    numbers, rest = _numbers_and_rest(got)
    numbers_whole, rest_whole = _numbers_and_rest(whole.getvalue())
    assert rest == rest_whole                                    # the same elements, text and styles
    assert np.allclose(numbers, numbers_whole, rtol=0, atol=2e-6)  # coordinates to the printed 6th decimal
    assert svg_bytes(fig) == got                                 # deterministic, the figure unchanged by saving


@pytest.mark.parametrize("name", DRAWINGS)
def test_the_cut_box_is_the_tight_box_except_where_glyphs_sit_inside_their_line_box(name):
    """matplotlib's tight box holds each text's line box, which reaches the font's full ascent and descent;
    the cut box holds the glyphs as drawn. So an edge set by a text may sit up to a few points inside the
    tight box (4.3 pt at most over the report's 17 figures, all at the bottom edge). An edge set by a drawn
    line lies up to sqrt(2) times half its width outside (the tight box leaves line widths out, the cut box
    holds square caps and mitres: a 0.8 pt spine, 0.57 pt), and one set by an Axes' box is the same both
    ways. These drawings' lines are at most 1.4 pt wide."""
    fig = DRAWINGS[name]()
    width, height, view = ROOT_TAG.search(svg_bytes(fig)).groups()
    x0, top, w, h = (float(v) for v in view.split())
    assert (float(width), float(height)) == pytest.approx((w, h), abs=1e-6)
    tight_x0, tight_top, tight_x1, tight_bottom = _matplotlib_tight_box_pt(fig)
    inwards = [x0 - tight_x0, top - tight_top, tight_x1 - (x0 + w), tight_bottom - (top + h)]
    assert all(-1.0 - 1e-3 <= d <= 6.0 for d in inwards), inwards
    if name in ("forest", "funnel after tight_layout"):
        assert inwards[:3] == pytest.approx([0, 0, -0.4 * 2 ** 0.5], abs=1e-3)   # the right edge: a spine


def test_an_artist_out_of_the_layout_is_drawn_but_not_in_the_box_and_an_empty_figure_keeps_its_size():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 3))
    fig.text(0.5, 0.5, "kept")
    note = fig.text(0.99, 0.01, "outside the layout", ha="right")
    note.set_in_layout(False)
    svg = svg_bytes(fig)
    x0, top, w, h = (float(v) for v in ROOT_TAG.search(svg).group(3).split())
    assert b">outside the layout<" in svg and b">kept<" in svg
    assert x0 > 100 and w < 60 and h < 30                        # only "kept", at the middle, padded
    empty = svg_bytes(Figure(figsize=(4, 3)))
    assert ROOT_TAG.search(empty).groups()[:2] == (b"288", b"216")


def _ink_edge_figure():
    """Ink where a tight box does not look: a 40 pt line at the edge, ellipses sized in data units off the
    axes, a padded text box, thick scatter edges, rotated text (drawn at 12 x 9 in so nothing leaves it)."""
    from matplotlib.collections import EllipseCollection
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 9))
    ax = fig.add_axes((0.3, 0.3, 0.4, 0.4))
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 3)
    ax.plot([0, 10], [0, 3], linewidth=40, clip_on=False)
    ax.add_collection(EllipseCollection([8], [1], [60], units="xy", offsets=[(5, 1.5)],
                                        offset_transform=ax.transData, clip_on=False))
    ax.scatter([0, 10], [3, 0], s=400, linewidths=12, edgecolors="k", clip_on=False)
    ax.annotate("padded box", (9, 2.8), xytext=(11.5, 3.6), arrowprops={"arrowstyle": "->"},
                bbox={"boxstyle": "round", "pad": 1.5, "linewidth": 6}, annotation_clip=False)
    fig.text(0.1, 0.2, "turned label gpqy", rotation=33, fontsize=20)
    return fig


def _thick_line_figure():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 3))
    ax = fig.add_axes((0.2, 0.2, 0.6, 0.6))
    ax.axis("off")
    ax.plot([0, 1], [0, 1], linewidth=40, clip_on=False)        # square caps, 45 degrees
    return fig


@pytest.mark.parametrize("draw", [_ink_edge_figure, _thick_line_figure, _rotated_text_figure],
                         ids=["ink at the edges", "a 40 pt line", "rotated text"])
def test_everything_agg_inks_is_inside_the_cut_box(draw):
    """The figure drawn by Agg at 72 dpi (1 px = 1 SVG unit) on a transparent background: every pixel with
    ink lies inside the viewBox (1.5 px for antialiasing). A tight box cuts the 40 pt line by 9-13 pt."""
    svg = svg_bytes(draw())
    x0, top, w, h = (float(v) for v in ROOT_TAG.search(svg).group(3).split())
    buffer = io.BytesIO()
    draw().savefig(buffer, format="png", dpi=72, transparent=True)
    alpha = matplotlib.image.imread(io.BytesIO(buffer.getvalue()))[..., 3]
    rows, columns = np.nonzero(alpha > 0.02)
    assert len(rows)
    assert x0 - 1.5 <= columns.min() and columns.max() + 1 <= x0 + w + 1.5
    assert top - 1.5 <= rows.min() and rows.max() + 1 <= top + h + 1.5


# --- text extents kept between processes (the report's cache folder) ---------------------------------

def _measured(strings, prop):
    from pfps_meta.present.svg import text_measure

    return [text_measure().get_text_width_height_descent(s, prop, False) for s in strings]


@pytest.fixture
def fresh_measure():
    from pfps_meta.present import svg

    svg.text_measure.cache_clear()
    yield svg
    svg.text_measure.cache_clear()


def test_text_extents_stored_and_loaded_again_are_the_same_floats_and_are_not_measured_again(tmp_path, fresh_measure,
                                                                                           monkeypatch):
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    svg = fresh_measure
    props = [FontProperties(size=9), FontProperties(size=10.5, weight="bold"), FontProperties(size=9, style="italic")]
    strings = ["Total (random effects) (95% CI)", "dolak2011 [inferred n]", "-1.70 [-3.42, 0.02]", "é ü ²"]
    measured = [_measured(strings, p) for p in props]
    assert svg.store_text_extents(tmp_path) and not svg.store_text_extents(tmp_path)   # nothing new: not rewritten
    svg.text_measure.cache_clear()
    calls = []
    original = TextToPath.get_text_width_height_descent
    monkeypatch.setattr(TextToPath, "get_text_width_height_descent",
                        lambda self, *args: calls.append(args) or original(self, *args))
    assert svg.load_text_extents(tmp_path) == len(props) * len(strings)
    assert [_measured(strings, p) for p in props] == measured          # exactly, JSON keeps every bit
    assert calls == []
    _measured(["a string not seen before"], props[0])
    assert len(calls) == 1


def test_text_extents_of_a_replaced_font_file_or_a_damaged_cache_are_measured_again(tmp_path, fresh_measure):
    import json

    from matplotlib.font_manager import FontProperties

    svg = fresh_measure
    _measured(["Study", "Weight"], FontProperties(size=9))
    svg.store_text_extents(tmp_path)
    path = svg._text_extents_file(tmp_path)
    stored = json.loads(path.read_text(encoding="utf-8"))
    stored["fonts"][0]["files"][0][2] += 1                      # the font file's mtime changed
    path.write_text(json.dumps(stored), encoding="utf-8")
    svg.text_measure.cache_clear()
    assert svg.load_text_extents(tmp_path) == 0
    path.write_text("{not json", encoding="utf-8")
    assert svg.load_text_extents(tmp_path) == 0
    assert svg.load_text_extents(None) == 0 and not svg.store_text_extents(None)


def test_a_cache_folder_that_cannot_be_written_is_skipped(tmp_path, fresh_measure):
    from matplotlib.font_manager import FontProperties

    svg = fresh_measure
    _measured(["Study"], FontProperties(size=9))
    blocker = tmp_path / "a file"
    blocker.write_text("x", encoding="utf-8")
    assert svg.store_text_extents(blocker) is False            # text-extents/ cannot be made under a file


def test_a_figure_drawn_with_remembered_extents_is_byte_identical_to_one_measured_afresh(tmp_path, fresh_measure):
    svg = fresh_measure
    first = svg.svg_bytes(plots.forest(_bcg(), mcid=0.3, favours=("Vaccine", "Control")))
    svg.store_text_extents(tmp_path)
    svg.text_measure.cache_clear()
    assert svg.load_text_extents(tmp_path) > 50
    assert svg.svg_bytes(plots.forest(_bcg(), mcid=0.3, favours=("Vaccine", "Control"))) == first


def _small_spec(tmp_path):
    data = tmp_path / "three.csv"
    data.write_text("study,yi,vi\nA,0.1,0.04\nB,0.3,0.05\nC,0.2,0.06\nD,0.5,0.03\n", encoding="utf-8")
    spec = tmp_path / "analyses" / "three.toml"
    spec.parent.mkdir(exist_ok=True)
    spec.write_text(f'[review]\nid = "three"\ntitle = "Three"\n[[analyses]]\nid = "a"\nlabel = "A label"\n'
                    f'data = "{data.as_posix()}"\n', encoding="utf-8")
    return spec


def test_an_svg_only_report_lays_out_with_svg_metrics_and_a_second_one_measures_no_label_again(tmp_path, monkeypatch,
                                                                                              fresh_measure):
    """Agg never measures a label of a report that writes only SVG (plots.layout_metrics("svg")), and a
    report built again with the same cache folder finds every label's extent there (FreeType lays out none)."""
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.textpath import TextToPath

    from pfps_meta.present.report import build_report

    calls = {"agg": 0, "freetype": 0}
    agg, freetype = RendererAgg.get_text_width_height_descent, TextToPath.get_text_width_height_descent

    def counted(kind, original):
        def measure(self, *args, **kwargs):
            calls[kind] += 1
            return original(self, *args, **kwargs)
        return measure

    monkeypatch.setattr(RendererAgg, "get_text_width_height_descent", counted("agg", agg))
    monkeypatch.setattr(TextToPath, "get_text_width_height_descent", counted("freetype", freetype))
    monkeypatch.setenv("PFPS_META_CACHE", str(tmp_path / "cache"))
    spec = _small_spec(tmp_path)
    build_report([spec], tmp_path / "first", progress=False)
    assert calls["agg"] == 0 and calls["freetype"] > 50
    assert len(list((tmp_path / "first" / "figures").glob("*.svg"))) >= 3
    fresh_measure.text_measure.cache_clear()                  # as a new process: nothing remembered in memory
    calls.update(agg=0, freetype=0)
    build_report([spec], tmp_path / "second", progress=False)
    assert calls == {"agg": 0, "freetype": 0}
    for first in (tmp_path / "first" / "figures").glob("*.svg"):
        assert (tmp_path / "second" / "figures" / first.name).read_bytes() == first.read_bytes()


@pytest.mark.parametrize("name", DRAWINGS)
def test_remembered_font_heights_lay_every_text_out_as_matplotlib_does(name):
    """The renderers' ``_get_font_height_metrics`` (svg.font_height_metrics) give every text the extent
    matplotlib's own reading of the font tables gives it, at the SVG's 72 dpi and at a figure's own dpi
    (the layouts' SVG metrics, plots.layout_renderer)."""
    from matplotlib.backends.backend_svg import RendererSVG
    from matplotlib.text import Text

    from pfps_meta.present import svg

    fig = DRAWINGS[name]()
    svg.svg_bytes(fig)                                  # a draw makes the tick labels
    texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text()]
    assert len(texts) > 3
    dpi, fig.dpi = fig.dpi, 72
    try:
        width, height = fig.get_size_inches() * 72
        ours = svg._renderer_class()(width, height, io.StringIO())
        plain = RendererSVG(width, height, io.StringIO())
        plain._text2path = ours._text2path               # the same string extents: only the font heights differ
        assert hasattr(ours, "_get_font_height_metrics") and not hasattr(plain, "_get_font_height_metrics")
        assert [t.get_window_extent(ours).bounds for t in texts] == [t.get_window_extent(plain).bounds for t in texts]
    finally:
        fig.dpi = dpi
    with plots.layout_renderer(fig, "svg") as layout:
        with_hook = [t.get_window_extent(layout).bounds for t in texts]
        hook = type(layout)._get_font_height_metrics
        try:
            del type(layout)._get_font_height_metrics
            without = [t.get_window_extent(layout).bounds for t in texts]
        finally:
            type(layout)._get_font_height_metrics = hook
    assert with_hook == without


@pytest.mark.parametrize("call, message", [
    (lambda svg: svg.svg_bytes(None), "fig: a matplotlib Figure, not NoneType"),
    (lambda svg: svg.svg_bytes(_constrained_figure(), dpi=0), "dpi: a positive number of dots per inch, not 0"),
    (lambda svg: svg.svg_bytes(_constrained_figure(), dpi="110"), "dpi: a positive number"),
    (lambda svg: svg.load_text_extents(123), "folder: a cache folder's path, or None for none, not 123"),
    (lambda svg: svg.store_text_extents(""), "folder: a cache folder's path"),
    (lambda svg: svg.font_height_metrics("DejaVu Sans", 72), "prop: a matplotlib FontProperties, not str"),
    (lambda svg: svg.font_height_metrics(matplotlib.font_manager.FontProperties(size=9.25), float("nan")),
     "dpi: a positive number of dots per inch, not nan"),
], ids=["no figure", "dpi 0", "dpi text", "folder number", "folder empty", "prop text", "dpi nan"])
def test_the_svg_writers_public_functions_refuse_bad_arguments_naming_them(call, message):
    import re as regex

    from pfps_meta.errors import InputError
    from pfps_meta.present import svg

    with pytest.raises(InputError, match=regex.escape(message)):
        call(svg)
