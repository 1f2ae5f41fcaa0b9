"""Figures as deterministic SVG files, drawn once, with every string's extent measured once.

Presentation only, below the figure functions (:mod:`pfps_meta.present.plots`, ``network_plots``,
``rob_plots``): :func:`svg_bytes` turns a finished matplotlib Figure into the bytes the report writes, cut to
what the draw inked; :func:`text_measure` is the measurer that both the SVG writer and the figure layouts
(column widths, label wrapping, tight_layout with the SVG metrics) use, so a label measured while laying a
figure out is not measured again when it is drawn, and :func:`load_text_extents` / :func:`store_text_extents`
keep what it measured in the report's cache folder for the next report.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

import matplotlib
from matplotlib.font_manager import FontProperties

from pfps_meta.errors import InputError


#: rcParams that decide which font files draw a FontProperties (its family may name one of these lists)
#: and how FreeType lays a string out in them; part of every remembered extent's key
FONT_RC = ("font.family", "font.serif", "font.sans-serif", "font.cursive", "font.fantasy", "font.monospace",
           "text.hinting_factor", "text.kerning_factor")
#: remembered strings per process (and per cache file) at most
TEXT_EXTENTS_LIMIT = 50_000
TEXT_EXTENTS_FORMAT = 1


def _font_key(prop) -> tuple:
    """Everything besides the string that decides a plain string's extent: the font properties that pick
    the font files (family, style, variant, weight, stretch, or a font file named outright), the size, and
    :data:`FONT_RC`."""
    rc = matplotlib.rcParams
    settings = tuple(tuple(v) if isinstance(v, list) else v for v in map(rc.__getitem__, FONT_RC))
    return (tuple(prop.get_family()), prop.get_style(), prop.get_variant(), prop.get_weight(), prop.get_stretch(),
            prop.get_size_in_points(), prop.get_file(), settings)


@functools.cache
def text_measure():
    """One process-wide :class:`matplotlib.textpath.TextToPath` that remembers the extent of each plain
    (non-math) string it measured. Measuring is FreeType laying the string out (0.3-1 ms a label here), and
    matplotlib's own cache lives and dies with one renderer, so the layout of a figure, its drawing and the
    next figure's tick labels measured the same strings again. The extent depends only on the string and
    :func:`_font_key`, so those are the key; math text is measured each time. :func:`load_text_extents`
    and :func:`store_text_extents` keep the extents between processes."""
    from matplotlib.textpath import TextToPath

    class Remembering(TextToPath):
        def __init__(self):
            super().__init__()
            self.seen = {}          # font key -> {string: (width, height, descent)}
            self.count = 0
            self.stored = 0         # entries the cache folder already holds (load) or was given (store)

        def get_text_width_height_descent(self, s, prop, ismath):
            if ismath:
                return super().get_text_width_height_descent(s, prop, ismath)
            strings = self.seen.get(key := _font_key(prop))
            if strings is None:
                strings = self.seen[key] = {}
            extent = strings.get(s)
            if extent is None:
                if self.count >= TEXT_EXTENTS_LIMIT:
                    self.seen.clear()
                    self.count = self.stored = 0
                    strings = self.seen[key] = {}
                extent = strings[s] = super().get_text_width_height_descent(s, prop, ismath)
                self.count += 1
            return extent

    return Remembering()


_FONT_HEIGHTS: dict = {}


def font_height_metrics(prop, dpi) -> tuple:
    """(ascent, descent, line gap) at ``dpi`` of the font that draws ``prop``: the floor matplotlib (3.11) puts
    under every text line's height, read from the font's OS/2 table, else its hhea table ((None, None, None)
    when it has neither: matplotlib then measures "lp"). The same reads and the same arithmetic as
    ``Text._get_layout``'s own, done once per font and size instead of for every text laid out (two table
    reads and a font lookup, a fifth of laying a text out); renderers hand it to matplotlib through the hook
    ``_get_font_height_metrics`` that ``Text._get_layout`` asks first (tests/test_svg.py checks that every
    text's extent is the same with and without it)."""
    if not isinstance(prop, FontProperties):
        raise InputError(f"prop: a matplotlib FontProperties, not {type(prop).__name__}")
    key = (_font_key(prop), dpi)
    found = _FONT_HEIGHTS.get(key)
    if found is None:
        from matplotlib.font_manager import fontManager, get_font

        _check_dpi(dpi)

        font = get_font(fontManager._find_fonts_by_props(prop))
        found = (None, None, None)
        for table_name, gap_key, ascent_key, descent_key in (("OS/2", "sTypoLineGap", "sTypoAscender", "sTypoDescender"),
                                                             ("hhea", "lineGap", "ascent", "descent")):
            table = font.get_sfnt_table(table_name)
            if table is not None:
                scale = 1 / font.get_sfnt_table("head")["unitsPerEm"] * prop.get_size_in_points() * dpi / 72
                found = (table[ascent_key] * scale, -table[descent_key] * scale, table[gap_key] * scale)
                break
        _FONT_HEIGHTS[key] = found
    return found


def _text_extents_file(folder) -> Path:
    """The cache file of this matplotlib and FreeType (their layout of a string is what is remembered)."""
    import hashlib

    from matplotlib import ft2font

    versions = f"{TEXT_EXTENTS_FORMAT}|{matplotlib.__version__}|{ft2font.__freetype_version__}"
    return Path(folder) / "text-extents" / f"{hashlib.sha256(versions.encode()).hexdigest()[:24]}.json"


def _check_dpi(dpi):
    """``dpi`` if a positive finite number; anything else is refused naming the argument."""
    if isinstance(dpi, bool) or not isinstance(dpi, (int, float)) or not math.isfinite(dpi) or dpi <= 0:
        raise InputError(f"dpi: a positive number of dots per inch, not {dpi!r}")
    return dpi


def _cache_folder(folder):
    """``folder`` as a Path, or None for no cache folder; anything else is refused naming the argument."""
    if folder is None:
        return None
    if not isinstance(folder, (str, os.PathLike)) or not str(folder):
        raise InputError(f"folder: a cache folder's path, or None for none, not {folder!r}")
    return Path(folder)


@functools.cache
def _font_files(key) -> list:
    """[[path, size, mtime_ns], ...] of the font files matplotlib lays a font key's strings out in now: the
    font and its fallbacks, in order, as TextToPath finds them (a font installed, removed or replaced since
    changes it, and the extents remembered for the old ones are dropped). Looked up once per process: loading
    and storing a report's extents ask for the same keys."""
    from matplotlib.font_manager import fontManager

    family, style, variant, weight, stretch, size, file, settings = key
    families = {k: list(v) for k, v in zip(FONT_RC, settings) if k.startswith("font.")}
    with matplotlib.rc_context(families):
        paths = fontManager._find_fonts_by_props(FontProperties(
            family=list(family), style=style, variant=variant, weight=weight, stretch=stretch, size=size, fname=file))
    return [[str(path), (stat := os.stat(path)).st_size, stat.st_mtime_ns] for path in paths]


def load_text_extents(folder) -> int:
    """Add the extents remembered in ``folder`` (the report's cache folder) to :func:`text_measure`, where
    their font files are still the ones matplotlib picks; returns how many. A missing, unreadable or foreign
    file adds nothing (the strings are measured again)."""
    import json

    folder = _cache_folder(folder)
    if folder is None:
        return 0
    try:
        stored = json.loads(_text_extents_file(folder).read_text(encoding="utf-8"))
        if not isinstance(stored, dict) or stored.get("format") != TEXT_EXTENTS_FORMAT:
            return 0
        found = {}                               # read whole before any of it is used
        for entry in stored["fonts"]:
            key = tuple(_tuple_from_json(entry["key"]))
            if entry["files"] == _font_files(key):
                found[key] = {s: tuple(float(v) for v in extent) for s, extent in entry["extents"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return 0
    measure, added = text_measure(), 0
    for key, extents in found.items():
        strings = measure.seen.setdefault(key, {})
        for s, extent in extents.items():
            if s not in strings and measure.count < TEXT_EXTENTS_LIMIT:
                strings[s] = extent
                measure.count += 1
                added += 1
    measure.stored = measure.count
    return added


def _tuple_from_json(value):
    """JSON's lists back as the tuples a font key holds."""
    return tuple(_tuple_from_json(v) for v in value) if isinstance(value, list) else value


def store_text_extents(folder) -> bool:
    """Write every extent :func:`text_measure` holds to ``folder`` (atomically) when it holds more than the
    folder gave it; True if written. A folder that cannot be written is skipped (the report does not depend
    on it)."""
    import json

    from pfps_meta.present.outputs import atomic_write_text

    folder = _cache_folder(folder)
    measure = text_measure()
    if folder is None or measure.count <= measure.stored:
        return False
    try:
        fonts = [{"key": key, "files": _font_files(key), "extents": strings}
                 for key, strings in measure.seen.items() if strings]
        atomic_write_text(_text_extents_file(folder), json.dumps(
            {"format": TEXT_EXTENTS_FORMAT, "fonts": fonts}, ensure_ascii=False))
    except (OSError, InputError, ValueError):
        return False
    measure.stored = measure.count
    return True


class InkBox:
    """The running union, in display points (origin at the bottom left), of every extent a renderer drew
    while :attr:`paused` is false; empty until the first one."""

    __slots__ = ("x0", "y0", "x1", "y1", "paused")

    def __init__(self):
        self.x0 = self.y0 = math.inf
        self.x1 = self.y1 = -math.inf
        self.paused = False

    def add(self, x0, y0, x1, y1):
        """Take in the box [x0, x1] x [y0, y1]; a box with a NaN or infinite side is skipped."""
        if math.isfinite(x0 + y0 + x1 + y1):
            self.x0, self.y0 = min(self.x0, x0), min(self.y0, y0)
            self.x1, self.y1 = max(self.x1, x1), max(self.y1, y1)

    def is_empty(self) -> bool:
        return self.x0 > self.x1


def _finite_extent(points):
    """(x0, y0, x1, y1) of the finite rows of an (n, 2) array, or None when there are none (matplotlib
    leaves NaN where a line has a gap)."""
    import numpy as np

    points = np.asarray(points, dtype=float).reshape(-1, 2)
    points = points[np.isfinite(points).all(axis=1)]
    if not len(points):
        return None
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    return float(x0), float(y0), float(x1), float(y1)


def _path_extent(path, transform):
    """Extent of ``path``'s vertices under ``transform``. A curve lies inside its control points, so this
    holds every path; for matplotlib's circles and ellipses (markers, dots) it is their exact extent, for a
    rounded box the box without the rounding (``Path.get_extents``, exact for curves, costs 0.6 ms a path)."""
    return _finite_extent(transform.transform(path.vertices)) if len(path.vertices) else None


def _rotated_text_extent(x, y, width, height, descent, angle):
    """Extent of a text line whose baseline starts at (x, y), y upwards, turned ``angle`` degrees
    anticlockwise about that point: the box from the descent below the baseline to the height above it."""
    cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    corners = [(dx * cos - dy * sin, dx * sin + dy * cos)
               for dx in (0.0, width) for dy in (-descent, height - descent)]
    xs, ys = [x + cx for cx, _ in corners], [y + cy for _, cy in corners]
    return min(xs), min(ys), max(xs), max(ys)


def _collection_extent(master_transform, paths, all_transforms, offsets, offset_trans):
    """Extent of a path collection: every path's extent moved by every offset (exact for one path at many
    offsets, a scatter plot; a box around the union otherwise), or None when nothing is finite."""
    from matplotlib.transforms import Affine2D

    # each path is drawn with its own transform first, then the collection's (RendererBase's order)
    transforms = [Affine2D(t) + master_transform for t in all_transforms] or [master_transform]
    shapes = [e for e in (_path_extent(p, t) for p in paths for t in transforms) if e is not None]
    moves = _finite_extent(offset_trans.transform(offsets)) if len(offsets) else (0.0, 0.0, 0.0, 0.0)
    if not shapes or moves is None:
        return None
    return (moves[0] + min(e[0] for e in shapes), moves[1] + min(e[1] for e in shapes),
            moves[2] + max(e[2] for e in shapes), moves[3] + max(e[3] for e in shapes))


def _drawn_extent(gc, extent, stroke=None):
    """``extent`` (display points, y up; None: nothing drawn) widened by the reach of a stroke ``stroke`` wide
    (default ``gc``'s line width; 0 for text and images): half the width times sqrt(2), as far as a square
    cap or a right-angled mitre reaches past a vertex; then cut to the drawing's clip box and clip path.
    None when nothing is left."""
    if extent is None:
        return None
    half = 0.5 * math.sqrt(2.0) * max(gc.get_linewidth() if stroke is None else stroke, 0.0)
    x0, y0, x1, y1 = extent[0] - half, extent[1] - half, extent[2] + half, extent[3] + half
    clips = [gc.get_clip_rectangle()]
    clip_path, clip_transform = gc.get_clip_path()
    if clip_path is not None:
        clips.append(clip_path.get_extents(clip_transform))
    for clip in clips:
        if clip is not None:
            x0, y0 = max(x0, clip.x0), max(y0, clip.y0)
            x1, y1 = min(x1, clip.x1), min(y1, clip.y1)
    return (x0, y0, x1, y1) if x0 <= x1 and y0 <= y1 else None


@functools.cache
def _renderer_class():
    """An SVG renderer that measures text with :func:`text_measure` (same numbers as matplotlib's SVG
    renderer, which measures with its own TextToPath, without measuring any string twice) and, given an
    :class:`InkBox`, adds to it the extent of everything it draws, within its clip."""
    from matplotlib.backends.backend_svg import RendererSVG

    class RememberingRenderer(RendererSVG):
        def __init__(self, *args, ink=None, **kwargs):
            super().__init__(*args, **kwargs)
            self._text2path = text_measure()
            self.ink = ink

        def _get_font_height_metrics(self, prop):
            return font_height_metrics(prop, 72)        # an SVG renderer draws at 72 dpi (SVG units are points)

        def _record(self, gc, extent, stroke=None):
            """Add ``extent`` as :func:`_drawn_extent` finds it (nothing while ``ink`` is paused or absent)."""
            if self.ink is not None and not self.ink.paused:
                box = _drawn_extent(gc, extent, stroke)
                if box is not None:
                    self.ink.add(*box)

        def draw_path(self, gc, path, transform, rgbFace=None):
            self._record(gc, _path_extent(path, transform))
            super().draw_path(gc, path, transform, rgbFace)

        def draw_markers(self, gc, marker_path, marker_trans, path, trans, rgbFace=None):
            marker = _path_extent(marker_path, marker_trans)
            centres = _finite_extent(trans.transform(path.vertices)) if len(path.vertices) else None
            if marker is not None and centres is not None:
                self._record(gc, (centres[0] + marker[0], centres[1] + marker[1],
                                  centres[2] + marker[2], centres[3] + marker[3]))
            super().draw_markers(gc, marker_path, marker_trans, path, trans, rgbFace)

        def draw_path_collection(self, gc, master_transform, paths, all_transforms, offsets, offset_trans,
                                 *args, **kwargs):
            widths = args[2] if len(args) > 2 else kwargs.get("linewidths", ())     # after face and edge colours
            self._record(gc, _collection_extent(master_transform, paths, all_transforms, offsets, offset_trans),
                         max([gc.get_linewidth(), *widths]))
            ink, self.ink = self.ink, None           # the paths drawn one by one inside are recorded above
            try:
                super().draw_path_collection(gc, master_transform, paths, all_transforms, offsets, offset_trans,
                                             *args, **kwargs)
            finally:
                self.ink = ink

        def draw_gouraud_triangles(self, gc, triangles_array, colors_array, transform):
            self._record(gc, _finite_extent(transform.transform(triangles_array.reshape(-1, 2))), 0.0)
            super().draw_gouraud_triangles(gc, triangles_array, colors_array, transform)

        def draw_image(self, gc, x, y, im, transform=None):
            height, width = im.shape[:2]
            if transform is None:                   # pixels at image_dpi, lower left corner at (x, y)
                scale = 72.0 / self.image_dpi
                self._record(gc, (x, y, x + width * scale, y + height * scale), 0.0)
            else:
                corners = [(0, 0), (width, 0), (0, height), (width, height)]
                self._record(gc, _finite_extent([(x + cx, y + cy) for cx, cy in transform.transform(corners)]), 0.0)
            super().draw_image(gc, x, y, im, transform)

        def draw_text(self, gc, x, y, s, prop, angle, ismath=False, mtext=None):
            # matplotlib hands an SVG renderer (flipy) the baseline start with y downwards
            width, height, descent = self.get_text_width_height_descent(s, prop, ismath)
            self._record(gc, _rotated_text_extent(x, self.height - y, width, height, descent, angle), 0.0)
            super().draw_text(gc, x, y, s, prop, angle, ismath, mtext)

        def draw_tex(self, gc, x, y, s, prop, angle, *, mtext=None):
            width, height, descent = self.get_text_width_height_descent(s, prop, "TeX")
            self._record(gc, _rotated_text_extent(x, self.height - y, width, height, descent, angle), 0.0)
            super().draw_tex(gc, x, y, s, prop, angle, mtext=mtext)

    return RememberingRenderer


@functools.cache
def metrics_renderer_class():
    """A renderer that draws nothing and measures text as the SVG writer does (:func:`text_measure`, in points,
    scaled to the figure's dpi, and :func:`font_height_metrics`): for figure layouts only
    (``pfps_meta.present.plots.layout_renderer``). Made as ``metrics_renderer_class()(dpi, width, height)``."""
    from matplotlib.backend_bases import RendererBase

    class SvgMetrics(RendererBase):
        def __init__(self, dpi, width, height):
            super().__init__()
            self.dpi, self.width, self.height = dpi, width, height

        def points_to_pixels(self, points):
            return points * self.dpi / 72.0

        def get_canvas_width_height(self):
            return self.width, self.height

        def get_text_width_height_descent(self, s, prop, ismath):
            width, height, descent = text_measure().get_text_width_height_descent(s, prop, ismath)
            scale = self.dpi / 72.0
            return width * scale, height * scale, descent * scale

        def _get_font_height_metrics(self, prop):
            return font_height_metrics(prop, self.dpi)

    return SvgMetrics


@functools.cache
def _canvas_class():
    """An SVG canvas that draws with :func:`_renderer_class` and, with a ``crop_pad``, cuts the SVG's root box
    to what was drawn (:func:`svg_bytes`)."""
    import io
    import re

    from matplotlib.backends.backend_mixed import MixedModeRenderer
    from matplotlib.backends.backend_svg import FigureCanvasSVG

    RememberingRenderer = _renderer_class()

    class RememberingCanvas(FigureCanvasSVG):
        #: savefig.pad_inches for a figure cut to what it draws (svg_bytes), or None: drawn whole
        crop_pad = None

        def print_svg(self, filename, *, bbox_inches_restore=None, metadata=None, **colours_and_orientation):
            # only the in-memory buffers svg_bytes hands over; anything else is written as matplotlib does.
            # savefig also passes facecolor, edgecolor and orientation, which matplotlib's SVG writer
            # ignores too (the colours are already set on the figure)
            if not isinstance(filename, io.BytesIO):
                return super().print_svg(filename, bbox_inches_restore=bbox_inches_restore, metadata=metadata)
            stream = io.StringIO()
            image_dpi, self.figure.dpi = self.figure.dpi, 72     # SVG user units are points
            width, height = self.figure.get_size_inches()
            ink = InkBox() if self.crop_pad is not None else None
            svg = RememberingRenderer(width * 72, height * 72, stream, image_dpi=image_dpi, metadata=metadata,
                                      ink=ink)
            renderer = MixedModeRenderer(self.figure, width, height, image_dpi, svg,
                                         bbox_inches_restore=bbox_inches_restore)
            with _outside_layout_unrecorded(self.figure, ink):
                self.figure.draw(renderer)
            renderer.finalize()
            text = stream.getvalue()
            if ink is not None:
                text = re.sub(r'width="[^"]*" height="[^"]*" viewBox="[^"]*"',
                              _cropped_header(self.figure, ink, self.crop_pad, height * 72), text, count=1)
            filename.write(text.encode("utf-8"))

    return RememberingCanvas


class _outside_layout_unrecorded:
    """While a figure draws, the artists that matplotlib leaves out of a tight bounding box (``in_layout``
    false: the figure's background, anything a user took out of the layout), at the two levels where
    ``Figure.get_tightbbox`` looks (the figure's children and each Axes' children), draw without adding to
    ``ink``."""

    def __init__(self, fig, ink):
        self.ink = ink
        children = [] if ink is None else [a for a in fig.get_children() if a not in fig.axes]
        for ax in ([] if ink is None else fig.axes):
            children += ax.get_children()
        self.artists = [a for a in children if not a.get_in_layout()]

    def __enter__(self):
        for artist in self.artists:
            artist.draw = self._paused(artist.draw)

    def __exit__(self, *exc):
        for artist in self.artists:
            del artist.draw                         # the class's draw again

    def _paused(self, draw):
        def unrecorded(renderer, *args, **kwargs):
            paused, self.ink.paused = self.ink.paused, True
            try:
                return draw(renderer, *args, **kwargs)
            finally:
                self.ink.paused = paused
        return unrecorded


def _cropped_header(fig, ink, pad_inches, height_pt) -> str:
    """The SVG root's size and viewBox cut to ``ink`` and the figure's visible Axes (whose boxes a tight
    bounding box always holds, drawn or not), padded by ``pad_inches``; the whole figure when nothing
    was drawn."""
    for ax in fig.axes:
        if ax.get_visible():
            box = ax.get_window_extent()
            ink.add(box.x0, box.y0, box.x1, box.y1)
    if ink.is_empty():
        x0, y0, x1, y1 = 0.0, 0.0, fig.get_figwidth() * 72, height_pt
    else:
        pad = 72 * pad_inches
        x0, y0, x1, y1 = ink.x0 - pad, ink.y0 - pad, ink.x1 + pad, ink.y1 + pad
    width, height = _svg_number(x1 - x0), _svg_number(y1 - y0)
    return (f'width="{width}pt" height="{height}pt" '
            f'viewBox="{_svg_number(x0)} {_svg_number(height_pt - y1)} {width} {height}"')


def _svg_number(value) -> str:
    """A coordinate as the SVG writer prints them: six decimals, trailing zeros dropped."""
    return f"{value:f}".rstrip("0").rstrip(".")


def svg_bytes(fig, dpi=110) -> bytes:
    """``fig`` as deterministic SVG (no date, no creator, fixed ids), text kept as text
    (``svg.fonttype = "none"``), cut to the box of everything it draws padded by ``savefig.pad_inches``.

    The drawing is the one ``fig.savefig(..., format="svg")`` writes for the whole figure; only the root's
    size and viewBox are cut. The box comes from the draw itself (:class:`InkBox`: every path, marker,
    image and text line as drawn, within its clip, plus each visible Axes' box, leaving out what is not
    ``in_layout``), so the figure is drawn once. ``bbox_inches="tight"`` would measure every artist in a pass
    of its own first; its box differs from this one by the difference between a text's line box and the
    extent of its glyphs (tests/test_svg.py measures it), and it leaves tick marks and line widths out. Each
    string is measured once per process (:func:`text_measure`). The figure keeps its own canvas afterwards.
    A ``fig`` that is not a matplotlib Figure, or a ``dpi`` that is not a positive number, is refused."""
    import io

    from matplotlib.figure import Figure

    if not isinstance(fig, Figure):
        raise InputError(f"fig: a matplotlib Figure, not {type(fig).__name__}")
    _check_dpi(dpi)
    canvas_class = _canvas_class()
    buffer = io.BytesIO()
    own, engine, own_dpi = fig.canvas, fig.get_layout_engine(), fig.dpi
    canvas = canvas_class(fig)                        # a canvas attaches itself to its figure
    canvas.crop_pad = matplotlib.rcParams["savefig.pad_inches"]
    try:
        with matplotlib.rc_context({"svg.hashsalt": "pfps-meta", "svg.fonttype": "none", "figure.autolayout": False,
                                    "figure.constrained_layout.use": False, "savefig.bbox": None}):
            # after fig.tight_layout() the figure holds a placeholder engine that does nothing when run, but
            # makes savefig draw the whole figure once more before the real drawing; a real engine runs here,
            # once, as savefig would run it (SVG metrics), and the figure goes without one while it is saved
            if engine is not None:
                engine.execute(fig)
                fig.dpi = own_dpi            # measuring for the engine leaves the figure at the SVG's 72 dpi
                fig.set_layout_engine(None)
            fig.savefig(buffer, format="svg", dpi=dpi, metadata={"Date": None, "Creator": None})
    finally:
        fig.set_canvas(own)
        fig.dpi = own_dpi
        if engine is not None:
            fig.set_layout_engine(engine)
    return buffer.getvalue()
