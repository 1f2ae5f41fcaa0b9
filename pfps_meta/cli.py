"""The ``pfps-meta`` command line: thin wrappers that read input, call the library and print.

Bad input never shows a traceback: it prints one line (``pfps-meta: error: FILE, line L (row R),
column 'C': reason``) on standard error and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings

from pfps_meta import __version__
from pfps_meta.effects import measures
from pfps_meta.conventions import OPTIONS, Settings, cli_flag
from pfps_meta.errors import ConvergenceWarning, InputError
from pfps_meta.formatting import json_ready
from pfps_meta.present.outputs import run_inputs

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 1
EXIT_INTERRUPTED = 130


FORMAT_HELP = "text (a table to read) or json (strict JSON: undefined numbers are null) (default: text)"
SEED_HELP = "seed of the random-number generator: the same seed gives the same draws (default: %(default)s)"


def _printable(text: str) -> str:
    """One line without terminal control characters (labels are data, never escape sequences)."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in str(text).replace("\n", " "))


def _add_model_options(parser):
    """One flag per option of ``conventions.OPTIONS`` (and its aliases). Defaults are not set here: an
    option not given stays absent, so it neither overrides an analysis spec's settings nor hides where a
    default lives (``conventions.Settings``)."""
    parser.add_argument("--measure", choices=list(measures.MEASURES),
                        help="effect measure for arm-level or binary data (experimental vs control)")
    for option in OPTIONS:
        if not option.cli:
            continue
        flags = [cli_flag(option)] + [f"--{alias}" for alias in option.aliases]
        default_text = f" (default: {_shown(option.default)})"
        if option.kind is bool:
            parser.add_argument(*flags, dest=option.name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=option.help + default_text)
        else:
            kind = option.kind if option.kind is not int else float
            parser.add_argument(*flags, dest=option.name, type=kind, default=argparse.SUPPRESS,
                                choices=list(option.choices) if option.choices else None,
                                metavar=None if option.choices else option.name.upper(),
                                help=option.help + default_text)
    parser.add_argument("--format", choices=["text", "json"], default="text", help=FORMAT_HELP)


def _shown(value):
    return str(value).lower() if isinstance(value, bool) else value


def _given_settings(args) -> dict:
    """The options given on the command line (and only those), by their canonical names."""
    return {o.name: getattr(args, o.name) for o in OPTIONS if o.cli and hasattr(args, o.name)}


class _Parser(argparse.ArgumentParser):
    """argparse with the one-line error contract: a bad flag or value is an InputError, not usage text."""

    def error(self, message):
        raise InputError(f"{message} (see '{self.prog} --help')")


def _preset_names():
    from pfps_meta.analysis.presets import PRESETS

    return list(PRESETS)


def _tau2_names():
    from pfps_meta.conventions import TAU2_ESTIMATORS

    return list(TAU2_ESTIMATORS)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pfps-meta",
        description="Meta-analysis of trial data: pooling that matches R metafor, the Nascimento 2018 "
                    "reproduction, forest plots and reports.")
    parser.add_argument("--version", action="version", version=f"pfps-meta {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p_pool = sub.add_parser("pool", help="pool one CSV of studies and print the result")
    p_pool.add_argument("file", help="CSV with one row per study (arm-level or effect-level columns)")
    _add_model_options(p_pool)
    p_pool.add_argument("--weights", metavar="COLUMN",
                        help="user weights from this column (metafor rma(weights=)); Wald CIs only")
    p_pool.set_defaults(func=cmd_pool)

    p_rep = sub.add_parser("reproduce", help="published vs reproduced pooled estimates, side by side")
    p_rep.add_argument("specs", nargs="*", help="analysis definitions (default: every analyses/*.toml)")
    p_rep.add_argument("--format", choices=["text", "json"], default="text", help=FORMAT_HELP)
    p_rep.add_argument("--extraction", metavar="FILE",
                       help="a filled extraction sheet (pfps-meta template): its rows replace the curated ones")
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
    p_sens.add_argument("--seed", type=int, default=2018, help=SEED_HELP + " (permutations, bootstrap)")
    p_sens.set_defaults(func=cmd_sensitivity)

    p_diff = sub.add_parser("diff", help="one analysis under two convention presets, side by side")
    p_diff.add_argument("spec", help="analysis definition (analyses/*.toml)")
    p_diff.add_argument("analysis", help="analysis id within the file")
    p_diff.add_argument("--presets", nargs=2, default=["revman5", "metafor"], metavar=("A", "B"),
                        help=f"the two convention presets to compare, from: {', '.join(_preset_names())} "
                             "(default: revman5 metafor)")
    p_diff.add_argument("--format", choices=["text", "json"], default="text", help=FORMAT_HELP)
    p_diff.set_defaults(func=cmd_diff)

    p_report = sub.add_parser("report", help="build the full report (HTML + Markdown) from analyses/ and data/")
    p_report.add_argument("specs", nargs="*", help="analysis definitions (default: every analyses/*.toml)")
    p_report.add_argument("--out", default="reports", help="output folder (default: %(default)s); a folder holding "
                          "an input file of the run is refused")
    p_report.add_argument("--extraction", metavar="FILE",
                          help="a filled extraction sheet (pfps-meta template): its rows replace the curated ones")
    p_report.set_defaults(func=cmd_report)

    p_sim = sub.add_parser("simulate", help="how often each method's CI covers the truth, for meta-analyses of "
                           "a given shape (simulation)")
    p_sim.add_argument("spec", nargs="?", help="analysis definition whose --analysis gives the shape (optional)")
    p_sim.add_argument("--analysis", help="analysis id in SPEC: its expected trials and arm sizes")
    p_sim.add_argument("--design", metavar="CSV", help="a CSV of arm sizes (n_exp, n_ctrl) or variances (vi)")
    p_sim.add_argument("--k", type=int, default=5, help="number of trials, without SPEC or --design (default 5)")
    p_sim.add_argument("--n-min", type=int, default=15, help="smallest arm size drawn (default 15)")
    p_sim.add_argument("--n-max", type=int, default=60, help="largest arm size drawn (default 60)")
    p_sim.add_argument("--mu", default="0.5", help="true average effect(s), comma-separated (default 0.5)")
    p_sim.add_argument("--tau2", default="0,0.05,0.2", help="true between-trial variance(s), comma-separated, "
                       "each >= 0 (default: %(default)s)")
    p_sim.add_argument("--measure", default="SMD", choices=list(measures.names("arm")),
                       help="effect measure computed from the simulated arms (default: %(default)s)")
    p_sim.add_argument("--sd", type=float, default=1.0, help="within-arm SD of the outcome (default 1)")
    p_sim.add_argument("--methods", default="DL,REML", help="tau2 estimators to compare, comma-separated, from: "
                       f"{', '.join(_tau2_names())} (default: %(default)s)")
    p_sim.add_argument("--ci-methods", default="wald,hksj", help="CI methods, comma-separated")
    p_sim.add_argument("--pi-methods", default="auto", help="prediction-interval rules, comma-separated")
    p_sim.add_argument("--replicates", type=int, default=1000, help="meta-analyses per grid cell (default 1000)")
    p_sim.add_argument("--seed", type=int, default=2018, help=SEED_HELP)
    p_sim.add_argument("--level", type=float, default=0.95,
                       help="confidence level of the intervals whose coverage is counted, between 0 and 1 "
                            "(default: %(default)s)")
    p_sim.add_argument("--scheduler", help="run on Dask: 'local' (a LocalCluster here) or a scheduler address")
    p_sim.add_argument("--plot", metavar="FILE", help="write the coverage plot (FILE.png and FILE.svg; never over "
                       "an input file, a folder, a device or a pipe)")
    p_sim.add_argument("--format", choices=["text", "json"], default="text", help=FORMAT_HELP)
    p_sim.set_defaults(func=cmd_simulate)

    p_tpl = sub.add_parser("template", help="write the extraction sheet of an analysis definition (CSV)")
    p_tpl.add_argument("spec", help="analysis definition (analyses/*.toml)")
    p_tpl.add_argument("--out", metavar="FILE", help="write to FILE (default: standard output); never over the "
                       "spec, its data files, a folder, a device or a pipe (a symbolic link is written through)")
    p_tpl.set_defaults(func=cmd_template)
    return parser


def cmd_report(args) -> int:
    from pfps_meta.present.report import build_report

    specs = _spec_paths(args.specs)
    command = "pfps-meta report" + (f" --out {args.out}" if args.out != "reports" else "") + \
        "".join(f" {s}" for s in args.specs)
    if args.extraction:
        command += f" --extraction {args.extraction}"
    build_report(specs, out_dir=args.out, command=command, extraction=args.extraction)
    return 0


def _spec_paths(specs):
    from pfps_meta.evidence.specs import default_spec_paths
    from pfps_meta.errors import InputError

    paths = specs or default_spec_paths()
    if not paths:
        raise InputError("no analysis definitions found (looked for analyses/*.toml in the current folder)")
    return paths


def _numbers(flag, text, cast=float):
    try:
        values = [cast(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        raise InputError(f"{flag}: '{text}' is not a comma-separated list of numbers") from None
    if not values:
        raise InputError(f"{flag} is empty")
    return values


def cmd_simulate(args) -> int:
    from pfps_meta.analysis.simulate import Design, simulate

    if args.spec and args.design:
        raise InputError("give either SPEC --analysis or --design, not both")
    loaded = []
    if args.spec:
        from pfps_meta.evidence.specs import load_all, run_analysis

        loaded = load_all([args.spec])
        [(spec, evidence)] = loaded
        matches = [a for a in spec.analyses if a.id == args.analysis]
        if not matches:
            raise InputError(f"--analysis: no analysis '{args.analysis}' (have: "
                             f"{', '.join(a.id for a in spec.analyses)})", file=args.spec)
        run = run_analysis(matches[0], evidence)
        design = Design.from_analysis(matches[0], evidence, run.result)
    elif args.design:
        design = Design.from_csv(args.design)
    else:
        design = Design.from_range(args.k, args.n_min, args.n_max, seed=args.seed)
    if args.plot is not None:           # refused before the simulation runs, so nothing is written or lost
        _check_plot_target(args.plot, run_inputs(loaded, [args.design]))
    names = {flag: [p.strip() for p in text.split(",") if p.strip()]
             for flag, text in (("methods", args.methods), ("ci_methods", args.ci_methods),
                                ("pi_methods", args.pi_methods))}
    result = simulate(design, mu=_numbers("--mu", args.mu), tau2=_numbers("--tau2", args.tau2),
                      measure=args.measure, sd=args.sd, methods=names["methods"], ci_methods=names["ci_methods"],
                      pi_methods=names["pi_methods"], replicates=args.replicates, seed=args.seed, level=args.level,
                      client=args.scheduler)
    if args.plot:
        from pfps_meta.present import plots
        from pfps_meta.present.outputs import protect

        with protect(run_inputs(loaded, [args.design])):     # checked again as each file is written
            plots.save(plots.coverage(result), args.plot)
    if args.format == "json":
        print(strict_json(result.to_dict()))
        return 0
    lines = [f"Simulation: {design.label} ({design.k} trials; "
             + (f"arm sizes {', '.join(f'{a}/{b}' for a, b in zip(design.n_exp, design.n_ctrl))}"
                if design.n_exp else "given sampling variances") + ")",
             f"true effect mu = {', '.join(f'{m:g}' for m in result.setup['mu'])}; "
             f"{result.setup['replicates']:,} meta-analyses per cell; seed {args.seed}", *design.notes, "",
             f"Coverage of the {100 * args.level:g}% CI (Monte Carlo SE in brackets):",
             result.coverage_table().to_string(index=False), "",
             "Per cell and method (bias, RMSE, CI width, rejection rate of 'effect = 0', PI coverage):",
             result.table[["mu", "tau2", "method", "ci_method", "pi_method", "bias", "rmse", "ci_width",
                           "rejection_rate", "pi_coverage", "nonconverged"]].to_string(
                 index=False, float_format=lambda x: f"{x:.4f}")]
    _print_text("\n".join(lines))
    return 0


def _check_plot_target(stem, inputs):
    """``--plot FILE`` writes FILE.png and FILE.svg (plots.save): FILE itself and both files are checked."""
    from pathlib import Path

    from pfps_meta.present.outputs import check_target

    check_target(stem, what="--plot", inputs=inputs)
    name = Path(stem).name
    if name in ("", ".", "..") or str(stem).endswith(("/", "\\")):
        raise InputError("--plot needs a file name (FILE gives FILE.png and FILE.svg), not a folder", file=str(stem))
    for suffix in (".png", ".svg"):
        check_target(Path(stem).with_suffix(suffix), what="--plot", inputs=inputs)


def cmd_template(args) -> int:
    from pfps_meta.evidence.specs import load_all
    from pfps_meta.evidence.extraction import template, to_csv_text
    from pfps_meta.present.outputs import atomic_write_text, check_target

    if args.out is not None:
        check_target(args.out, what="--out")            # a folder, device or pipe: refused before any work
    loaded = load_all([args.spec])
    [(spec, evidence)] = loaded
    if evidence is None or not any(a.trials for a in spec.analyses):
        raise InputError("no evidence-base analysis (trials = [...]) in this spec: nothing to extract",
                         file=args.spec)
    text = to_csv_text(template(spec, evidence))
    if args.out is not None:
        atomic_write_text(args.out, text, what="--out", inputs=run_inputs(loaded))
        print(f"wrote {args.out}: fill the empty cells with what each paper prints, with source_location and "
              "quote, then run: pfps-meta reproduce " + args.spec + " --extraction " + args.out, file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def cmd_reproduce(args) -> int:
    """Runs every analysis and compares it with its published target; exits 0 whenever it ran."""
    from pfps_meta.evidence.specs import load_all, run_analysis
    from pfps_meta.analysis.reproduce import format_table, reproduce_rows

    loaded = load_all(_spec_paths(args.specs), extraction=args.extraction)
    results = [run_analysis(a, evidence) for spec, evidence in loaded for a in spec.analyses]
    rows = reproduce_rows(results)
    if args.presets:
        from pfps_meta.analysis.reproduce import preset_statuses

        for row, result in zip(rows, results):
            evidence = next(ev for spec, ev in loaded if result.analysis in spec.analyses)
            row["presets"] = preset_statuses(result.analysis, evidence)
            row["reproduced_by"] = [name for name, p in row["presets"].items() if p["status"] == "reproduced"]
    if args.format == "json":
        print(strict_json(rows))
    else:
        _print_text(format_table(rows))
        if args.presets:
            print()
            for row in rows:
                statuses = ", ".join(f"{name}: {p['status']}" for name, p in row["presets"].items())
                print(f"{row['analysis']:24} {statuses}")
    return 0


def cmd_sensitivity(args) -> int:
    import math

    from pfps_meta.analysis.sensitivity import sensitivity_report

    for flag, value, limit in (("--permutations", args.permutations, 10_000_000),
                               ("--bootstrap", args.bootstrap, 10_000_000), ("--seed", args.seed, 2 ** 63 - 1)):
        if not 0 <= value <= limit:
            raise InputError(f"{flag} must be a whole number from 0 to {limit:,} (got {value})")
    for flag, value in (("--order", args.order), ("--subgroup", args.subgroup), ("--moderator", args.moderator),
                        ("--analysis", args.analysis)):
        if value is not None and not value.strip():
            raise InputError(f"{flag} is empty: give a column name" if flag != "--analysis" else
                             "--analysis is empty: give an analysis id")
    if args.mcid is not None and not math.isfinite(args.mcid):
        raise InputError(f"--mcid must be a finite number (got {args.mcid})")

    from pfps_meta.models.univariate import pool

    if str(args.file).endswith(".toml"):
        result = _analysis_result(args)
    else:
        result = pool(args.file, measure=args.measure, settings=Settings.from_mapping(_given_settings(args)))
    report = sensitivity_report(result, order=args.order, subgroup=args.subgroup, moderator=args.moderator,
                                mcid=args.mcid, direction=args.direction, permutations=args.permutations,
                                bootstrap=args.bootstrap, seed=args.seed)
    if args.format == "json":
        print(strict_json(report))
    else:
        from pfps_meta.analysis.sensitivity import format_sensitivity

        _print_text(format_sensitivity(report))
    return 0


def _analysis_result(args):
    """The fitted result of ``--analysis`` in a spec file, with the spec's own settings."""
    from pfps_meta.evidence.specs import load_all, run_analysis
    from pfps_meta.errors import InputError

    [(spec, evidence)] = load_all([args.file])
    matches = [a for a in spec.analyses if a.id == args.analysis]
    if not matches:
        raise InputError(f"--analysis: no analysis '{args.analysis}' (have: "
                         f"{', '.join(a.id for a in spec.analyses)})", file=args.file)
    analysis = matches[0]
    if args.measure is not None and args.measure != analysis.measure:
        raise InputError(f"--measure {args.measure}: analysis '{analysis.key}' is defined with measure "
                         f"{analysis.measure}; change it in the spec", file=args.file)
    # options given on the command line override the spec's settings; the rest come from the spec
    run = run_analysis(analysis, evidence,
                       settings=Settings.from_mapping(_given_settings(args), base=analysis.settings))
    if run.result is None:
        raise InputError(f"analysis '{matches[0].key}' has no trial with usable data yet (missing: "
                         f"{', '.join(m['trial'] for m in run.studies.missing)})", file=args.file)
    return run.result


def cmd_diff(args) -> int:
    from pfps_meta.evidence.specs import load_all
    from pfps_meta.errors import InputError
    from pfps_meta.analysis.presets import PRESETS, preset_diff

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
        print(strict_json(table.to_dict("records")))
    else:
        print(f"{matches[0].key}: {args.presets[0]} vs {args.presets[1]}")
        _print_text(table.to_string(index=False, na_rep="-", float_format=lambda x: f"{x:.6g}"))
    return 0


def _print_text(text: str):
    """Text output for a terminal: labels from data cannot carry escape sequences or control characters."""
    from pfps_meta.present.tables import plain_text

    print("\n".join(plain_text(line) for line in str(text).split("\n")))


def strict_json(value) -> str:
    """Strict JSON (RFC 8259): undefined numbers are null, never NaN or Infinity."""
    return json.dumps(json_ready(value), indent=2, allow_nan=False)


def cmd_pool(args) -> int:
    from pfps_meta.models.univariate import pool

    result = pool(args.file, measure=args.measure, settings=Settings.from_mapping(_given_settings(args)),
                  weights=args.weights)
    if args.format == "json":
        print(strict_json(result.to_dict()))
    else:
        _print_text(result.summary())
    return 0


def _warning_printer():
    """A ``warnings.showwarning`` that prints each distinct warning once per run, on one line (the same
    input is read again by presets and sensitivity refits; its warning is news only the first time)."""
    shown = set()

    def show(message, category, filename, lineno, file=None, line=None):
        kind = "convergence warning" if issubclass(category, ConvergenceWarning) else "warning"
        text = f"pfps-meta: {kind}: {_printable(message)}"
        if text not in shown:
            shown.add(text)
            print(text, file=sys.stderr)
    return show


def main(argv=None) -> int:
    """Run one command; every way it can end is one line on standard error (exit 2 for bad input, 130
    for Ctrl-C, 1 for a bug in pfps-meta, whose traceback is shown only with PFPS_META_DEBUG=1)."""
    previous = warnings.showwarning
    try:
        warnings.showwarning = _warning_printer()
        args = build_parser().parse_args(argv)
        return args.func(args)
    except InputError as exc:
        return _fail(f"pfps-meta: error: {_printable(exc.message)}", EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        return _fail("pfps-meta: interrupted", EXIT_INTERRUPTED)
    except BrokenPipeError:
        return 0
    except MemoryError:
        return _fail("pfps-meta: error: out of memory (the input is too large for this machine)", EXIT_BAD_INPUT)
    except RecursionError:
        return _fail("pfps-meta: error: the input is nested too deeply to read", EXIT_BAD_INPUT)
    except Exception as exc:       # anything else is a bug in pfps-meta: say so on one line
        import os

        if os.environ.get("PFPS_META_DEBUG"):
            import traceback

            traceback.print_exc()
        return _fail(f"pfps-meta: internal error: {type(exc).__name__}: {_printable(exc)} (a bug in pfps-meta, "
                     "not a problem with your input; please report it with the command you ran; "
                     "PFPS_META_DEBUG=1 shows the traceback)", EXIT_INTERNAL)
    finally:
        warnings.showwarning = previous


def _fail(line: str, code: int) -> int:
    """Print the one closing line (a second Ctrl-C or a closed stderr cannot turn it into a traceback)."""
    try:
        print(line, file=sys.stderr)
    except (KeyboardInterrupt, OSError):
        pass
    return code


if __name__ == "__main__":
    sys.exit(main())
