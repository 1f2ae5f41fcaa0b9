"""CPU time of the report's multilevel, network and Bayesian models (issue 18 item 8), not part of the tests.

Run:  python benchmarks/bench_report_models.py [--runs 3]     (from the repository root)

The bundled report (``pfps-meta report``) is built in this process ``--runs`` times (the first run, which
imports and fills the simulation cache, is not counted). Every function and method of the model modules
(``models/multilevel*.py``, ``network*.py``, ``bayes.py``, ``priors.py``, ``robust.py``, ``blocks.py``,
``vcalc.py``, ``present/bayes_tables.py``) is wrapped by a timer that counts CPU time
(``time.process_time``) at the outermost call only, attributed to the kind of model the outermost call
belongs to; ``present/report_models.model_section`` and ``bayes_section`` (which also draw figures: the
plotting modules are not ours) are timed as wholes. Medians over the runs are printed. One thread for the
numeric libraries. The importing of the modules is not counted here (``python -X importtime``).

Measured on the shared 2-core machine (load average 5-9.5 from the other sessions' tests, so single
numbers move by +-30%), CPU seconds, the median of 3 counted builds, in three before/after pairs run
back to back. "before" is commit 018fa31 (the package as this session found it, run from a
``git archive`` copy with PYTHONPATH); "after" is f32ff7b for pairs 1-2 and 7c3d022 (the last Bayes
change) for pair 3. The fitted models are the report's own: 2 multilevel fits (konstantopoulos2011, one
with CR2), 1 network (senn2013), 1 Bayesian fit (normand1999); the bundled pfp_dependent and pfp_network
analyses have too few arms with data to be fitted.

=============================  =====================  =====================
model code the report runs      before (pairs 1-3)     after (pairs 1-3)
=============================  =====================  =====================
multilevel (2 fits, CR2)        0.080, 0.095, 0.065    0.050, 0.075, 0.065
network (1 fit, printout,       0.111, 0.126, 0.075    0.038, 0.041, 0.040
netsplit, league, forest)
Bayesian (1 fit, printout)      0.192, 0.231, 0.182    0.097, 0.122, 0.109
all of it                       0.384, 0.442, 0.320    0.186, 0.242, 0.220
=============================  =====================  =====================

The same calls replayed outside the report (the recorded arguments of the report's multilevel(),
network() and bayes() calls, fit + what the report reads from each, median of 7, three alternating
old/new processes): multilevel 0.031-0.043 -> 0.036-0.041 s per fit (unchanged: its arithmetic is
kept bit for bit, the savings are log|X'X| once and tensordot's overhead); network 0.073-0.092 ->
0.022-0.038 s (2.5-3x); Bayesian 0.186-0.217 -> 0.093-0.118 s (1.9-2x). For the report that is
about 0.34 -> 0.21 s of model code (1.6x).

Not comparable between the columns: ``model_section`` and the whole build (1.5-2.3 s and 5.8-8.3 s
before, 1.1-1.3 s and 3.6-5.1 s after) also moved with the other sessions' commits (figures, input
path) between 018fa31 and now; ``model_section`` is ~90% figures (present/plots.py, network_plots.py).
The first build of a process re-simulates a coverage table when models/bayes.py changed (the simulation
cache is keyed on its source): that is the ~1.1-1.5 s of "bayes" in "first build" (bayes_batch,
unchanged and bit-identical).
"""

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import io  # noqa: E402
import functools  # noqa: E402
import importlib  # noqa: E402
import inspect  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

KINDS = {
    "multilevel": ("multilevel", "multilevel_fit", "multilevel_input", "robust", "blocks"),
    "network": ("network", "network_components", "network_inputs", "vcalc"),
    "bayes": ("bayes", "priors"),
}
PRESENT = {"bayes": ("pfps_meta.present.bayes_tables",)}
SECTIONS = ("model_section", "bayes_section")

_depth = [0]
_totals = defaultdict(float)


def _timed(func, kind):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        if _depth[0]:
            return func(*args, **kwargs)
        _depth[0] += 1
        start = time.process_time()
        try:
            return func(*args, **kwargs)
        finally:
            _totals[kind] += time.process_time() - start
            _depth[0] -= 1
    return wrapper


def _section_timer(func, name):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        start = time.process_time()
        try:
            return func(*args, **kwargs)
        finally:
            _totals[name] += time.process_time() - start
    return wrapper


def _wrap_module(module, kind):
    """Replace every function and method defined in ``module`` by its timed version."""
    for name, obj in list(vars(module).items()):
        if inspect.isfunction(obj) and obj.__module__ == module.__name__:
            setattr(module, name, _timed(obj, kind))
        elif inspect.isclass(obj) and obj.__module__ == module.__name__:
            for attr, member in list(vars(obj).items()):
                if inspect.isfunction(member):
                    setattr(obj, attr, _timed(member, kind))
                elif isinstance(member, property):
                    setattr(obj, attr, property(*(None if f is None else _timed(f, kind)
                                                  for f in (member.fget, member.fset, member.fdel)), member.__doc__))
                elif isinstance(member, (staticmethod, classmethod)):
                    setattr(obj, attr, type(member)(_timed(member.__func__, kind)))


def instrument():
    for kind, names in KINDS.items():
        for name in names:
            _wrap_module(importlib.import_module(f"pfps_meta.models.{name}"), kind)
        for name in PRESENT.get(kind, ()):
            _wrap_module(importlib.import_module(name), kind)
    from pfps_meta.present import report, report_models

    from pfps_meta.evidence import specs
    from pfps_meta.models import network_inputs

    specs.connected_parts = network_inputs.connected_parts          # imported by name before the wrapping
    for name in SECTIONS:
        timed = _section_timer(getattr(report_models, name), name)
        setattr(report_models, name, timed)
        setattr(report, name, timed)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="counted report builds (default 3)")
    args = parser.parse_args(argv)
    import pfps_meta.cli as cli

    print(f"pfps_meta from {Path(cli.__file__).parents[1]}")
    instrument()
    runs, first = [], []
    with tempfile.TemporaryDirectory(prefix="bench-report-models-") as tmp:
        os.environ.setdefault("PFPS_META_CACHE", str(Path(tmp) / "cache"))
        for i in range(args.runs + 1):
            _totals.clear()
            start = time.process_time()
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                cli.main(["report", "--out", str(Path(tmp) / "report")])
            total = time.process_time() - start
            (runs if i else first).append(dict(_totals, report=total))
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; CPU seconds, median of {len(runs)}:")
    keys = list(KINDS) + ["models in total"] + list(SECTIONS) + ["report"]
    for run in runs + first:
        run["models in total"] = sum(run.get(k, 0.0) for k in KINDS)
    for key in keys:
        values = [run.get(key, 0.0) for run in runs]
        print(f"  {key:<18} {statistics.median(values):7.3f}   ({', '.join(f'{v:.3f}' for v in values)}; "
              f"first build {first[0].get(key, 0.0):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
