"""The ``pfps-meta`` command line: thin wrappers that read input, call the library and print.

Bad input never shows a traceback: it prints one line (``pfps-meta: error: FILE, line L (row R),
column 'C': reason``) on standard error and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings

from . import __version__
from .errors import ConvergenceWarning, InputError
from .pooling import CI_METHODS, I2_METHODS, METHODS, PI_METHODS

EXIT_BAD_INPUT = 2


def _add_model_options(parser, default_method="REML"):
    parser.add_argument("--measure", choices=["MD", "SMD", "RR", "OR"],
                        help="effect measure for arm-level data (experimental minus control)")
    parser.add_argument("--method", choices=METHODS, default=default_method,
                        help="tau^2 estimator, or FE for a common-effect model (default: %(default)s)")
    parser.add_argument("--ci", choices=CI_METHODS, default="wald",
                        help="CI for the pooled effect: wald (normal) or hksj (default: %(default)s)")
    parser.add_argument("--pi", choices=PI_METHODS, default="auto",
                        help="prediction-interval distribution (default: %(default)s = metafor's)")
    parser.add_argument("--i2", choices=I2_METHODS, default="tau2",
                        help="I^2 from tau^2 (metafor) or from Q (RevMan) (default: %(default)s)")
    parser.add_argument("--smd", choices=["metafor", "revman5"], default="metafor",
                        help="SMD convention (default: %(default)s)")
    parser.add_argument("--pooled-sd", action="store_true", help="MD: pooled-SD variance (metafor vtype HO)")
    parser.add_argument("--level", type=float, default=0.95, help="confidence level (default: 0.95)")
    parser.add_argument("--format", choices=["text", "json"], default="text")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pfps-meta",
        description="Meta-analysis of trial data: pooling that matches R metafor, the Nascimento 2018 "
                    "reproduction, forest plots and reports.")
    parser.add_argument("--version", action="version", version=f"pfps-meta {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p_pool = sub.add_parser("pool", help="pool one CSV of studies and print the result")
    p_pool.add_argument("file", help="CSV with one row per study (arm-level or effect-level columns)")
    _add_model_options(p_pool)
    p_pool.set_defaults(func=cmd_pool)

    p_rep = sub.add_parser("reproduce", help="published vs reproduced pooled estimates, side by side")
    p_rep.add_argument("specs", nargs="*", help="analysis definitions (default: every analyses/*.toml)")
    p_rep.add_argument("--format", choices=["text", "json"], default="text")
    p_rep.add_argument("--presets", action="store_true",
                       help="also try every convention preset and say which reproduces each target")
    p_rep.set_defaults(func=cmd_reproduce)

    p_sens = sub.add_parser("sensitivity", help="leave-one-out, influence, small-study tests and more for one CSV")
    p_sens.add_argument("file", help="CSV with one row per study (same layouts as pool), or an analysis "
                        "definition (analyses/*.toml) with --analysis")
    p_sens.add_argument("--analysis", help="analysis id, when FILE is an analysis definition (.toml)")
    _add_model_options(p_sens)
    p_sens.add_argument("--order", help="column to order the cumulative meta-analysis by (e.g. year)")
    p_sens.add_argument("--subgroup", help="column defining subgroups (test for subgroup differences)")
    p_sens.add_argument("--moderator", help="numeric column for a meta-regression")
    p_sens.add_argument("--mcid", type=float,
                        help="threshold for the predictive probability (e.g. -2 for a 2-point pain reduction)")
    p_sens.add_argument("--direction", choices=["below", "above"], default="below",
                        help="probability that a new trial's true effect is below/above --mcid")
    p_sens.add_argument("--permutations", type=int, default=0, help="permutation test with this many draws "
                        "(exact enumeration when k <= 16)")
    p_sens.add_argument("--bootstrap", type=int, default=0, help="bootstrap CI for tau2 with this many resamples")
    p_sens.add_argument("--seed", type=int, default=2018)
    p_sens.set_defaults(func=cmd_sensitivity)

    p_diff = sub.add_parser("diff", help="one analysis under two convention presets, side by side")
    p_diff.add_argument("spec", help="analysis definition (analyses/*.toml)")
    p_diff.add_argument("analysis", help="analysis id within the file")
    p_diff.add_argument("--presets", nargs=2, default=["revman5", "metafor"], metavar=("A", "B"))
    p_diff.add_argument("--format", choices=["text", "json"], default="text")
    p_diff.set_defaults(func=cmd_diff)

    p_report = sub.add_parser("report", help="build the full report (HTML + Markdown) from analyses/ and data/")
    p_report.add_argument("specs", nargs="*", help="analysis definitions (default: every analyses/*.toml)")
    p_report.add_argument("--out", default="reports", help="output folder (default: %(default)s)")
    p_report.set_defaults(func=cmd_report)
    return parser


def cmd_report(args) -> int:
    from .report import build_report

    specs = _spec_paths(args.specs)
    command = "pfps-meta report" + (f" --out {args.out}" if args.out != "reports" else "") + \
        "".join(f" {s}" for s in args.specs)
    build_report(specs, out_dir=args.out, command=command)
    return 0


def _spec_paths(specs):
    from .analyses import default_spec_paths
    from .errors import InputError

    paths = specs or default_spec_paths()
    if not paths:
        raise InputError("no analysis definitions found (looked for analyses/*.toml in the current folder)")
    return paths


def cmd_reproduce(args) -> int:
    """Runs every analysis and compares it with its published target; exits 0 whenever it ran."""
    from .analyses import load_all, run_analysis
    from .reproduce import format_table, reproduce_rows

    loaded = load_all(_spec_paths(args.specs))
    results = [run_analysis(a, evidence) for spec, evidence in loaded for a in spec.analyses]
    rows = reproduce_rows(results)
    if args.presets:
        from .reproduce import preset_statuses

        for row, result in zip(rows, results):
            evidence = next(ev for spec, ev in loaded if result.analysis in spec.analyses)
            row["presets"] = preset_statuses(result.analysis, evidence)
            row["reproduced_by"] = [name for name, p in row["presets"].items() if p["status"] == "reproduced"]
    if args.format == "json":
        print(json.dumps(rows, indent=2, default=_json_default))
    else:
        print(format_table(rows))
        if args.presets:
            print()
            for row in rows:
                statuses = ", ".join(f"{name}: {p['status']}" for name, p in row["presets"].items())
                print(f"{row['analysis']:24} {statuses}")
    return 0


def cmd_sensitivity(args) -> int:
    from .sensitivity import sensitivity_report

    from .model import pool

    if str(args.file).endswith(".toml"):
        result = _analysis_result(args)
    else:
        result = pool(args.file, measure=args.measure, method=args.method, ci=args.ci, pi=args.pi, i2=args.i2,
                      level=args.level, smd_convention=args.smd, pooled_sd=args.pooled_sd)
    report = sensitivity_report(result, order=args.order, subgroup=args.subgroup, moderator=args.moderator,
                                mcid=args.mcid, direction=args.direction, permutations=args.permutations,
                                bootstrap=args.bootstrap, seed=args.seed)
    if args.format == "json":
        print(json.dumps(report, indent=2, default=_json_default))
    else:
        from .sensitivity import format_sensitivity

        print(format_sensitivity(report))
    return 0


def _analysis_result(args):
    """The fitted result of ``--analysis`` in a spec file, with the spec's own settings."""
    from .analyses import load_all, run_analysis
    from .errors import InputError

    [(spec, evidence)] = load_all([args.file])
    matches = [a for a in spec.analyses if a.id == args.analysis]
    if not matches:
        raise InputError(f"--analysis: no analysis '{args.analysis}' (have: "
                         f"{', '.join(a.id for a in spec.analyses)})", file=args.file)
    run = run_analysis(matches[0], evidence)
    if run.result is None:
        raise InputError(f"analysis '{matches[0].key}' has no trial with usable data yet (missing: "
                         f"{', '.join(m['trial'] for m in run.studies.missing)})", file=args.file)
    return run.result


def cmd_diff(args) -> int:
    from .analyses import load_all
    from .errors import InputError
    from .presets import PRESETS, preset_diff

    for name in args.presets:
        if name not in PRESETS:
            raise InputError(f"unknown preset '{name}'; choose from {', '.join(PRESETS)}")
    [(spec, evidence)] = load_all([args.spec])
    matches = [a for a in spec.analyses if a.id == args.analysis]
    if not matches:
        raise InputError(f"no analysis '{args.analysis}' (have: {', '.join(a.id for a in spec.analyses)})",
                         file=args.spec)
    table = preset_diff(matches[0], evidence, *args.presets)
    if args.format == "json":
        print(json.dumps(table.to_dict("records"), indent=2, default=_json_default))
    else:
        print(f"{matches[0].key}: {args.presets[0]} vs {args.presets[1]}")
        print(table.to_string(index=False, na_rep="-", float_format=lambda x: f"{x:.6g}"))
    return 0


def _json_default(value):
    import math

    import numpy as np

    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def cmd_pool(args) -> int:
    from .model import pool

    result = pool(args.file, measure=args.measure, method=args.method, ci=args.ci, pi=args.pi,
                  i2=args.i2, level=args.level, smd_convention=args.smd, pooled_sd=args.pooled_sd)
    if args.format == "json":
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(result.summary())
    return 0


def _show_warning(message, category, filename, lineno, file=None, line=None):
    kind = "warning"
    if issubclass(category, ConvergenceWarning):
        kind = "convergence warning"
    print(f"pfps-meta: {kind}: {message}", file=sys.stderr)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        return args.func(args)
    except InputError as exc:
        print(f"pfps-meta: error: {exc.message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        return 0
    finally:
        warnings.showwarning = previous


if __name__ == "__main__":
    sys.exit(main())
