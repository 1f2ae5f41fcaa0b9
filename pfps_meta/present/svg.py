"""Figures as deterministic SVG files, drawn once, with every string's extent measured once per process.

Presentation only, below the figure functions (:mod:`pfps_meta.present.plots`, ``network_plots``,
``rob_plots``): :func:`svg_bytes` turns a finished matplotlib Figure into the bytes the report writes;
:func:`text_measure` is the measurer that both the SVG writer and the figure layouts (column widths, label
wrapping) use, so a label measured while laying a figure out is not measured again when it is drawn.
"""

from __future__ import annotations

import functools

import matplotlib


@functools.cache
def text_measure():
    """One process-wide :class:`matplotlib.textpath.TextToPath` that remembers the extent of each plain
    (non-math) string it measured. Measuring is FreeType laying the string out (about 1 ms for a 70-character
    line), and matplotlib's own cache lives and dies with one renderer, so saving a figure with
    ``bbox_inches="tight"`` measured every label twice, and every figure measured the tick labels again.
    The extent depends only on the string, the font file that draws it (``findfont``, which follows
    rcParams), the font properties and two font rcParams (``text.hinting_factor``, ``text.kerning_factor``), so
    the key holds all of them; math text is measured each time."""
    from matplotlib.font_manager import findfont
    from matplotlib.textpath import TextToPath

    class Remembering(TextToPath):
        limit = 50_000

        def __init__(self):
            super().__init__()
            self.seen = {}

        def get_text_width_height_descent(self, s, prop, ismath):
            if ismath:
                return super().get_text_width_height_descent(s, prop, ismath)
            rc = matplotlib.rcParams
            key = (s, hash(prop), findfont(prop), rc["text.hinting_factor"], rc["text.kerning_factor"])
            extent = self.seen.get(key)
            if extent is None:
                if len(self.seen) >= self.limit:
                    self.seen.clear()
                extent = self.seen[key] = super().get_text_width_height_descent(s, prop, ismath)
            return extent

    return Remembering()


@functools.cache
def _canvas_class():
    """An SVG canvas whose renderer measures text with :func:`text_measure` (same numbers as matplotlib's
    SVG renderer, which measures with its own TextToPath, without measuring any string twice)."""
    import io

    from matplotlib.backends.backend_mixed import MixedModeRenderer
    from matplotlib.backends.backend_svg import FigureCanvasSVG, RendererSVG

    class RememberingRenderer(RendererSVG):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._text2path = text_measure()

    class RememberingCanvas(FigureCanvasSVG):
        def print_svg(self, filename, *, bbox_inches_restore=None, metadata=None, **colours_and_orientation):
            # only the in-memory buffers svg_bytes hands over; anything else is written as matplotlib does.
            # savefig also passes facecolor, edgecolor and orientation, which matplotlib's SVG writer
            # ignores too (the colours are already set on the figure)
            if not isinstance(filename, io.BytesIO):
                return super().print_svg(filename, bbox_inches_restore=bbox_inches_restore, metadata=metadata)
            stream = io.TextIOWrapper(filename, encoding="utf-8", newline="")
            try:
                image_dpi, self.figure.dpi = self.figure.dpi, 72     # SVG user units are points
                width, height = self.figure.get_size_inches()
                svg = RememberingRenderer(width * 72, height * 72, stream, image_dpi=image_dpi, metadata=metadata)
                renderer = MixedModeRenderer(self.figure, width, height, image_dpi, svg,
                                             bbox_inches_restore=bbox_inches_restore)
                self.figure.draw(renderer)
                renderer.finalize()
            finally:
                stream.flush()
                stream.detach()

        @staticmethod
        def tight_box(fig):
            """The box ``bbox_inches="tight"`` finds, in inches: every artist's extent measured by an SVG
            renderer at 72 dpi (SVG units are points), padded by ``savefig.pad_inches``; nothing is drawn."""
            dpi = fig.dpi
            fig.dpi = 72
            try:
                width, height = fig.get_size_inches()
                renderer = RememberingRenderer(width * 72, height * 72, io.StringIO())
                box = fig.get_tightbbox(renderer)
            finally:
                fig.dpi = dpi
            pad = matplotlib.rcParams["savefig.pad_inches"]
            return box.padded(pad, pad)

    return RememberingCanvas


def svg_bytes(fig, dpi=110) -> bytes:
    """``fig`` as deterministic SVG (no date, no creator, fixed ids) cut to its tight bounding box, text kept as
    text (``svg.fonttype = "none"``); the same file as ``fig.savefig(..., format="svg", bbox_inches="tight")``
    drawn once instead of twice (matplotlib draws the figure a first time only to find that box) and with each
    string measured once per process (:func:`_canvas_class`). The figure keeps its own canvas afterwards."""
    import io

    canvas_class = _canvas_class()
    buffer = io.BytesIO()
    own, engine, own_dpi = fig.canvas, fig.get_layout_engine(), fig.dpi
    canvas_class(fig)                        # a canvas attaches itself to its figure
    try:
        with matplotlib.rc_context({"svg.hashsalt": "pfps-meta", "svg.fonttype": "none", "figure.autolayout": False,
                                    "figure.constrained_layout.use": False}):
            # after fig.tight_layout() the figure holds a placeholder engine that does nothing when run, but
            # makes savefig draw the whole figure once more before the real drawing; a real engine runs here,
            # once, as savefig would run it (SVG metrics), and the figure goes without one while it is saved
            if engine is not None:
                engine.execute(fig)
                fig.dpi = own_dpi            # measuring for the engine leaves the figure at the SVG's 72 dpi
                fig.set_layout_engine(None)
            box = canvas_class.tight_box(fig)
            fig.savefig(buffer, format="svg", dpi=dpi, metadata={"Date": None, "Creator": None}, bbox_inches=box)
    finally:
        fig.set_canvas(own)
        fig.dpi = own_dpi
        if engine is not None:
            fig.set_layout_engine(engine)
    return buffer.getvalue()
