"""Issue 18 item 8, the figures' share, measured (not part of the test suite): CPU time the bundled report
spends drawing and writing its figures.

Run:  python benchmarks/bench_figures.py [--runs 5] [--out DIR] [--layout-metrics agg|svg] [--counts]

In one process: one unmeasured ``build_report`` (imports, caches: the coverage simulation is read from
``PFPS_META_CACHE``, filled by that first run when empty, and so are the remembered text extents), then
``--runs`` measured builds. In each build the CPU time (``time.process_time``) spent inside the figure functions
is summed: building a figure (``plots.forest``, ``funnel``, ``baujat``, ``published_estimates``,
``forest_multilevel``, ``tau_posterior``, ``rob_plots.summary_bar``, ``network_plots.network_graph``,
``forest_vs_reference``, ``league_figure``) and writing it (``report._Document.figure``: the SVG). Nested calls
count once. Medians over the runs are printed for the figure stage (build + write), the writing alone and the
whole ``build_report``. One thread for the numeric libraries, as in the other benchmarks. The imports of
matplotlib/pyplot are not in these numbers (they happen in the unmeasured first build): ``python -X
importtime`` shows them. The report lays the figures it writes only as SVG out with the SVG writer's text
metrics (``plots.layout_metrics("svg")`` in ``build_report``); ``--layout-metrics agg`` makes it use Agg's,
matplotlib's default, for comparison.

Measured 2026-12-01 on the 2-core session machine (load 0.7-1.1), the trees run in turn four times with
``--runs 3``, medians of the four medians; "before" is this repository with present/plots.py,
network_plots.py and rob_plots.py as of commit 63287fe, "after" with them as of the commit that wrote these
numbers, everything else the same (svg.py of commit 4d28367, text extents remembered between runs):

  before:                     figure stage 2.23 s CPU (build 1.47 s, write 0.76 s) of a 2.86 s build_report
  after, Agg's metrics:       figure stage 1.94 s CPU (build 1.26 s, write 0.69 s) of a 2.48 s build_report
  after, the SVG metrics:     figure stage 1.65 s CPU (build 0.96 s, write 0.69 s) of a 2.22 s build_report

(the report has used the SVG metrics since: "after, the SVG metrics" is its default). Then the SVG renderers
read each font's height floor once (svg.font_height_metrics), three alternating rounds at load 0.9-1.0:

  SVG metrics (the report):   figure stage 1.50 s CPU (build 0.94 s, write 0.57 s) of a 2.07 s build_report
  Agg's metrics:              figure stage 1.66 s CPU (build 1.06 s, write 0.60 s) of a 2.34 s build_report

(build -14% with the default, -35% with the SVG writer's metrics). ``--counts`` (one build under cProfile,
independent of the load): FreeType string layouts ``ft2font.set_text`` 460 (before) -> 454 (agg) -> 0 (svg:
every label's extent comes from the remembered ones); whole-figure draws 17; ``Text._get_layout`` 2,517 ->
2,479.
"""

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BUILDERS = {"pfps_meta.present.plots": ("forest", "funnel", "baujat", "published_estimates", "forest_multilevel",
                                        "tau_posterior", "coverage"),
            "pfps_meta.present.rob_plots": ("summary_bar",),
            "pfps_meta.present.network_plots": ("network_graph", "forest_vs_reference", "league_figure")}


class Clock:
    """CPU seconds spent inside wrapped functions, by kind ("build", "write"); a call inside another
    wrapped call is not counted again."""

    def __init__(self):
        self.seconds = {"build": 0.0, "write": 0.0}
        self.depth = 0

    def wrap(self, function, kind):
        @functools.wraps(function)
        def timed(*args, **kwargs):
            if self.depth:
                return function(*args, **kwargs)
            self.depth += 1
            start = time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[kind] += time.process_time() - start
                self.depth -= 1
        return timed


def install(clock: Clock):
    """Wrap the figure functions where the report looks them up (module attributes, read at call time)."""
    import importlib

    from pfps_meta.present import report

    for module_name, names in BUILDERS.items():
        module = importlib.import_module(module_name)
        for name in names:
            setattr(module, name, clock.wrap(getattr(module, name), "build"))
    report._Document.figure = clock.wrap(report._Document.figure, "write")


def forget_text_extents():
    """Each measured build starts without the text extents an earlier build in this process remembered
    (the process-wide measure of ``pfps_meta.present.svg``), as a ``pfps-meta report`` process does."""
    from pfps_meta.present import svg

    remembered = getattr(svg, "text_measure", None)
    if remembered is not None:
        remembered.cache_clear()


def counts(specs, out) -> str:
    """Call counts of one build under cProfile (not affected by the machine's load): FreeType string layouts
    (``ft2font.set_text``), whole-figure draws (``Figure.draw``, disabled or not) and text layouts
    (``Text._get_layout``)."""
    import cProfile
    import pstats

    from pfps_meta.present.report import build_report

    forget_text_extents()
    profile = cProfile.Profile()
    profile.runcall(build_report, specs, out, progress=False)
    found = {"set_text": 0, "Figure.draw": 0, "Text._get_layout": 0}
    for (filename, _, name), (_, calls, *_rest) in pstats.Stats(profile).stats.items():
        if "set_text" in name and "ft2font" in name:
            found["set_text"] += calls
        elif name == "draw" and filename.endswith("matplotlib/figure.py"):
            found["Figure.draw"] += calls
        elif name == "_get_layout" and filename.endswith("matplotlib/text.py"):
            found["Text._get_layout"] += calls
    return ", ".join(f"{key} {value}" for key, value in found.items())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="measured builds (default 5)")
    parser.add_argument("--counts", action="store_true", help="also print call counts of one build (cProfile)")
    parser.add_argument("--out", type=Path, default=None, help="report folder (default: a temporary one)")
    parser.add_argument("--layout-metrics", choices=("agg", "svg"), default=None,
                        help="the text metrics the report lays its figures out with (default: the report's own "
                             "choice, svg for an SVG-only report)")
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    from pfps_meta.evidence.specs import default_spec_paths
    from pfps_meta.present import plots
    from pfps_meta.present.report import build_report

    chosen = args.layout_metrics or "svg"
    if args.layout_metrics:                 # the report's own choice (build_report), overridden for comparison
        own_choice = plots.layout_metrics
        plots.layout_metrics = lambda _metrics: own_choice(args.layout_metrics)

    clock = Clock()
    install(clock)
    with tempfile.TemporaryDirectory(prefix="bench-figures-") as tmp:
        out = args.out or Path(tmp) / "report"
        specs = default_spec_paths(include_models=True)
        build_report(specs, out, progress=False)
        stage, write, total = [], [], []
        for _ in range(args.runs):
            forget_text_extents()
            clock.seconds = {"build": 0.0, "write": 0.0}
            start = time.process_time()
            build_report(specs, out, progress=False)
            total.append(time.process_time() - start)
            stage.append(clock.seconds["build"] + clock.seconds["write"])
            write.append(clock.seconds["write"])
        figures = len(list((out / "figures").glob("*.svg")))
        if args.counts:
            print("calls in one build:", counts(specs, out))
    median = statistics.median
    print(f"{figures} figures, layout metrics {chosen}, {args.runs} runs, "
          f"load {os.getloadavg()[0]:.1f}: figure stage {median(stage):.2f} s "
          f"CPU (build {median(stage) - median(write):.2f} s, write {median(write):.2f} s) of "
          f"{median(total):.2f} s for build_report (medians; stage runs: "
          f"{', '.join(f'{s:.2f}' for s in stage)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
