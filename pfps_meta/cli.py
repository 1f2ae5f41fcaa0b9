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
from pfps_meta.conventions import DASK_MIN_SECONDS, OPTION_BY_NAME, OPTIONS, Settings, cli_flag
from pfps_meta.errors import ConvergenceWarning, InputError, PfpsWarning
from pfps_meta.formatting import format_number, format_p, json_ready
from pfps_meta.present.outputs import run_inputs

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 1
EXIT_INTERRUPTED = 130


FORMAT_HELP = "text (a table to read) or json (strict JSON: undefined numbers are null) (default: text)"
SEED_HELP = "seed of the random-number generator: the same seed gives the same draws (default: %(default)s)"
PRESET_HELP = ("convention preset (pfps_meta.analysis.presets): its settings first, then any option flag given "
               "on top; with an analysis definition it replaces the spec's conventions, keeping its levels "
               "(default: none: the defaults, or the spec's settings)")
PROGRESS_HELP = "show progress on standard error (default: only when standard error is a terminal)"


def _printable(text: str) -> str:
    """One line without terminal control characters (labels are data, never escape sequences)."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in str(text).replace("\n", " "))


def _add_model_options(parser):
    """One flag per option of ``conventions.OPTIONS`` (and its aliases), plus ``--preset``. Defaults are
    not set here: an option not given stays absent, so it neither overrides an analysis spec's settings
    nor hides where a default lives (``conventions.Settings``); the help gives the Option row's default
    and choices, the one copy of each."""
    parser.add_argument("--measure", choices=list(measures.MEASURES),
                        help="effect measure for arm-level or binary data (experimental vs control) (default: "
                             "none: the columns decide; choices: " + ", ".join(measures.MEASURES) + ")")
    parser.add_argument("--preset", choices=_preset_names(), help=PRESET_HELP)
    for option in OPTIONS:
        if not option.cli:
            continue
        flags = [cli_flag(option)] + [f"--{alias}" for alias in option.aliases]
        if option.kind is bool:
            parser.add_argument(*flags, dest=option.name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=_option_help(option))
        else:
            kind = option.kind if option.kind is not int else float
            parser.add_argument(*flags, dest=option.name, type=kind, default=argparse.SUPPRESS,
                                choices=list(option.choices) if option.choices else None,
                                metavar=None if option.choices else option.name.upper(),
                                help=_option_help(option))
    parser.add_argument("--format", choices=["text", "json"], default="text", help=FORMAT_HELP)


def _option_help(option) -> str:
    """An Option row's help with its choices and default, "(choices: a, b) (default: X)"."""
    choices = f" (choices: {', '.join(str(c) for c in option.choices)})" if option.choices else ""
    return f"{option.help}{choices} (default: {_shown(option.default)})".replace("%", "%%")


def _shown(value):
    if value is None:
        return "none"
    return str(value).lower() if isinstance(value, bool) else value


def _given_settings(args) -> dict:
    """The options given on the command line (and only those), by their canonical names."""
    return {o.name: getattr(args, o.name) for o in OPTIONS if o.cli and hasattr(args, o.name)}


class _Parser(argparse.ArgumentParser):
    """argparse with the one-line error contract: a bad flag or value is an InputError, not usage text."""

    def error(self, message):
        raise InputError(f"{message} (see '{self.prog} --help')")


def _preset_names():
    from pfps_meta.conventions import PRESETS       # (the table itself: no need to import analysis.presets)

    return list(PRESETS)


def _tau2_names():
    from pfps_meta.conventions import TAU2_ESTIMATORS

    return list(TAU2_ESTIMATORS)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand: one ``_add_*`` function each, listed in :data:`COMMANDS` (a new
    subcommand is one more function there); the help of each flag is then completed with its default
    and choices where it does not give them already (:func:`_complete_help`)."""
    parser = _Parser(
        prog="pfps-meta",
        description="Meta-analysis of trial data: pooling that matches R metafor, the Nascimento 2018 "
                    "reproduction, multilevel and network models, forest plots and reports.")
    parser.add_argument("--version", action="version", version=f"pfps-meta {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    for subparser in sub.choices.values():
        for action in subparser._actions:
            _complete_help(action)
    return parser


def _has_default(action) -> bool:
    """Whether the flag has a default worth stating (not an on/off switch, not 'absent')."""
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._HelpAction,
                           argparse._VersionAction)):
        return False
    return action.default is not None and action.default is not argparse.SUPPRESS and action.default != []


def _mentions(text: str, word) -> bool:
    import re

    return re.search(r"(?<![\w-])" + re.escape(str(word)) + r"(?![\w-])", text) is not None


def _complete_help(action):
    """Append "(choices: a, b)" and "(default: X)" where the help text does not state them yet."""
    if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
        return
    text = action.help or ""
    if action.choices and not all(_mentions(text, c) for c in action.choices):
        text += " (choices: " + ", ".join(str(c) for c in action.choices).replace("%", "%%") + ")"
    if _has_default(action) and "default" not in text:
        text += " (default: %(default)s)"
    action.help = text.strip()


def _add_pool(sub):
    p_pool = sub.add_parser("pool", help="pool one CSV of studies and print the result")
    p_pool.add_argument("file", help="CSV with one row per study (arm-level or effect-level columns)")
    _add_model_options(p_pool)
    p_pool.add_argument("--weights", metavar="COLUMN",
                        help="user weights from this column (metafor rma(weights=)); Wald CIs only")
    p_pool.set_defaults(func=cmd_pool)


def _add_reproduce(sub):
    p_rep = sub.add_parser("reproduce", help="published vs reproduced pooled estimates, side by side")
    p_rep.add_argument("specs", nargs="*", help="analysis definitions (default: every analyses/*.toml)")
    p_rep.add_argument("--format", choices=["text", "json"], default="text", help=FORMAT_HELP)
    p_rep.add_argument("--extraction", metavar="FILE",
                       help="a filled extraction sheet (pfps-meta template): its rows replace the curated ones")
    p_rep.add_argument("--presets", action="store_true",
                       help="also try every convention preset and say which reproduces each target")
    p_rep.add_argument("--preset", choices=_preset_names(), help="run every analysis under this convention preset "
                       "instead of its spec's settings (its levels kept) (default: none: each spec's settings)")
    p_rep.add_argument("--progress", action="store_true", help=PROGRESS_HELP)
    p_rep.set_defaults(func=cmd_reproduce)


def _add_sensitivity(sub):
    p_sens = sub.add_parser("sensitivity", help="leave-one-out, influence, small-study tests and more for one CSV")
    p_sens.add_argument("file", help="CSV with one row per study (same layouts as pool), or an analysis "
                        "definition (analyses/*.toml) with --analysis")
    p_sens.add_argument("--analysis", help="analysis id, when FILE is an analysis definition (.toml)")
    _add_model_options(p_sens)
    p_sens.add_argument("--order", help="column to order the cumulative meta-analysis by (e.g. year)")
    p_sens.add_argument("--subgroup", help="column defining subgroups (test for subgroup differences)")
    p_sens.add_argument("--moderator", help="moderator(s) for a meta-regression: a numeric column, C(column) for "
                        "a categorical one, several joined by +, or a formula as metafor writes it "
                        "('~ ablat + alloc': text columns are then factors)")
    p_sens.add_argument("--mcid", type=float,
                        help="threshold for the predictive probability (e.g. -2 for a 2-point pain reduction)")
    p_sens.add_argument("--direction", choices=["below", "above"],
                        help="with --mcid: probability that a new trial's true effect is below or above it "
                             "(default: below)")
    p_sens.add_argument("--permutations", type=int, default=0, help="permutation test with this many draws "
                        "(exact enumeration when k <= 16)")
    p_sens.add_argument("--bootstrap", type=int, default=0, help="bootstrap CI for tau2 with this many resamples")
    p_sens.add_argument("--seed", type=int, default=2018, help=SEED_HELP + " (permutations, bootstrap)")
    p_sens.add_argument("--progress", action="store_true", help=PROGRESS_HELP)
    p_sens.set_defaults(func=cmd_sensitivity)


def _add_diff(sub):
    p_diff = sub.add_parser("diff", help="one analysis under two convention presets, side by side")
    p_diff.add_argument("spec", help="analysis definition (analyses/*.toml)")
    p_diff.add_argument("analysis", help="analysis id within the file")
    p_diff.add_argument("--presets", nargs=2, default=["revman5", "metafor"], metavar=("A", "B"),
                        choices=_preset_names(),
                        help=f"the two convention presets to compare, from: {', '.join(_preset_names())} "
                             "(default: revman5 metafor)")
    p_diff.add_argument("--format", choices=["text", "json"], default="text", help=FORMAT_HELP)
    p_diff.set_defaults(func=cmd_diff)


def _add_report(sub):
    p_report = sub.add_parser("report", help="build the full report (HTML + Markdown) from analyses/ and data/")
    p_report.add_argument("specs", nargs="*", help="analysis definitions (default: every analyses/*.toml)")
    p_report.add_argument("--out", default="reports", help="output folder (default: %(default)s); a folder holding "
                          "an input file of the run is refused")
    p_report.add_argument("--extraction", metavar="FILE",
                          help="a filled extraction sheet (pfps-meta template): its rows replace the curated ones")
    p_report.add_argument("--format", choices=("html", "docx", "xlsx"), default="html",
                          help="html: index.html, report.md, report.json and figures/ in --out; docx: a Word "
                               "report, xlsx: an Excel workbook (one sheet per table), written to "
                               "--out/report.<format> (or to --out itself when it ends in .docx / .xlsx)")
    p_report.set_defaults(func=cmd_report)


def _add_simulate(sub):
    p_sim = sub.add_parser("simulate", help="how often each method's CI covers the truth, for meta-analyses of "
                           "a given shape (simulation)")
    p_sim.add_argument("spec", nargs="?", help="analysis definition whose --analysis gives the shape (optional)")
    p_sim.add_argument("--analysis", help="analysis id in SPEC: its expected trials and arm sizes")
    p_sim.add_argument("--design", metavar="CSV", help="a CSV of arm sizes (n_exp, n_ctrl) or variances (vi)")
    p_sim.add_argument("--k", type=int, default=5, help="number of trials, without SPEC or --design (default: %(default)s)")
    p_sim.add_argument("--n-min", type=int, default=15, help="smallest arm size drawn (default: %(default)s)")
    p_sim.add_argument("--n-max", type=int, default=60, help="largest arm size drawn (default: %(default)s)")
    p_sim.add_argument("--mu", default="0.5", help="true average effect(s) on the measure's scale (raw units for "
                       "MD, SD units for SMD, log ratio for ROM), comma-separated (default: %(default)s)")
    p_sim.add_argument("--tau2", default="0,0.05,0.2", help="true between-trial variance(s), comma-separated, "
                       "each >= 0 (default: %(default)s)")
    p_sim.add_argument("--measure", default="SMD", choices=list(measures.names("arm")),
                       help="effect measure computed from the simulated arms (default: %(default)s)")
    p_sim.add_argument("--sd", type=float, default=1.0, help="within-arm SD of the outcome (default: %(default)s)")
    p_sim.add_argument("--control-mean", type=float, help="ROM: the control arm's true mean (> 0, required); "
                       "MD/SMD: its true mean (default 0)")
    p_sim.add_argument("--preset", choices=_preset_names(),
                       help="simulate under a convention preset (its estimator, CI and PI rules, SMD convention)")
    p_sim.add_argument("--methods", help="tau2 estimators to compare, comma-separated, from: "
                       f"{', '.join(_tau2_names())} (default: DL,REML; with --preset, the preset's)")
    p_sim.add_argument("--ci-methods", help="CI methods, comma-separated: wald, hksj (default: wald,hksj; with "
                       "--preset, the preset's)")
    p_sim.add_argument("--pi-methods", help="prediction-interval rules, comma-separated: auto, z, t, t_k2 "
                       "(default: the settings')")
    p_sim.add_argument("--replicates", type=int, default=1000, help="meta-analyses per grid cell, rounded up to "
                       "whole blocks of random draws (default: %(default)s)")
    p_sim.add_argument("--seed", type=int, default=2018, help=SEED_HELP)
    p_sim.add_argument("--level", type=float, default=0.95,
                       help="confidence level of the intervals whose coverage is counted, between 0 and 1 "
                            "(default: %(default)s)")
    p_sim.add_argument("--scheduler", help="run on Dask: 'local' (a LocalCluster here) or a scheduler address "
                       "(default: none: in this process)")
    p_sim.add_argument("--dask-min-seconds", type=float, default=None, metavar="S",
                       help="with --scheduler: use Dask only when the work is estimated at S seconds or more in this "
                            f"process (default: {DASK_MIN_SECONDS['local']:g} for 'local', "
                            f"{DASK_MIN_SECONDS['given']:g} for an address; 0: always)")
    p_sim.add_argument("--plot", metavar="FILE", help="write the coverage plot (FILE.png and FILE.svg; never over "
                       "an input file, a folder, a device or a pipe)")
    p_sim.add_argument("--format", choices=["text", "json"], default="text", help=FORMAT_HELP)
    p_sim.add_argument("--progress", action="store_true", help=PROGRESS_HELP)
    p_sim.set_defaults(func=cmd_simulate)


def _add_template(sub):
    p_tpl = sub.add_parser("template", help="write the extraction sheet of an analysis definition (CSV)")
    p_tpl.add_argument("spec", help="analysis definition (analyses/*.toml)")
    p_tpl.add_argument("--out", metavar="FILE", help="write to FILE (default: standard output); never over the "
                       "spec, its data files, a folder, a device or a pipe (a symbolic link is written through)")
    p_tpl.set_defaults(func=cmd_template)


def _add_multilevel(sub):
    p_ml = sub.add_parser("multilevel", help="several effects per study: multilevel / multivariate model "
                          "(metafor rma.mv), optionally with cluster-robust inference")
    p_ml.add_argument("file", help="CSV with one row per effect, or an analysis definition (.toml) with --analysis")
    p_ml.add_argument("--analysis", help="analysis id, when FILE is an analysis definition (.toml)")
    p_ml.add_argument("--yi", default="yi", help="column of the effect sizes (default: %(default)s)")
    p_ml.add_argument("--vi", default="vi", help="column of their sampling variances (default: %(default)s)")
    p_ml.add_argument("--levels", help="nested random intercepts, outermost first, comma-separated "
                      "(e.g. district,study is metafor's random = ~ 1 | district/study)")
    p_ml.add_argument("--inner", help="inner factor of random = ~ INNER | OUTER (with --outer and --struct)")
    p_ml.add_argument("--outer", help="outer factor (cluster) of random = ~ INNER | OUTER")
    p_ml.add_argument("--struct", choices=["CS", "HCS", "UN", "ID", "DIAG", "AR", "HAR", "CAR"],
                      help="variance structure of the inner factor (AR, HAR, CAR need a numeric INNER) "
                           "(default: UN; only with --inner)")
    p_ml.add_argument("--mods", help="moderators: numeric columns and C(column) for categorical ones, joined by + "
                      "(e.g. 'year + C(deltype)'); a leading ~ is allowed")
    p_ml.add_argument("--no-intercept", action="store_true", help="fit without an intercept (metafor ~ ... - 1)")
    p_ml.add_argument("--method", choices=["REML", "ML"], default="REML",
                      help="restricted (REML) or full (ML) maximum likelihood (default: %(default)s)")
    p_ml.add_argument("--test", choices=["z", "t"], default="z",
                      help="Wald z tests, or t tests with k - p df (metafor 3.8's default dfs) (default: %(default)s)")
    p_ml.add_argument("--level", type=float, default=0.95, help="confidence level, in (0, 1) (default: %(default)s)")
    p_ml.add_argument("--rho", type=float, help="with --obs and/or --time: build V with vcalc, correlation rho "
                      "between effects of one sample on different outcomes (metafor vcalc)")
    p_ml.add_argument("--obs", help="column naming the outcome (construct) of each effect, for --rho")
    p_ml.add_argument("--phi", type=float, help="with --time: AR(1)-type correlation phi^|t_i - t_j| between the "
                      "time points of one sample (metafor vcalc(time1=, phi=))")
    p_ml.add_argument("--time", help="numeric column of the time points, for --phi")
    p_ml.add_argument("--vcluster", help="column whose groups share a sample, for --rho/--phi (default: the "
                      "outermost level, or --outer)")
    p_ml.add_argument("--robust", choices=["CR0", "CR1", "CR2"], help="cluster-robust inference: CR1 (metafor "
                      "robust(), t with m - p df) or CR2 (clubSandwich, Satterthwaite df)")
    p_ml.add_argument("--cluster", help="cluster column for --robust (default: the outermost level, or --outer)")
    p_ml.add_argument("--format", choices=["text", "json"], default="text", help=FORMAT_HELP)
    _add_refused_preset(p_ml, "a multilevel model takes --method, --test and --robust")
    p_ml.set_defaults(func=cmd_multilevel)


def _add_network(sub):
    p_net = sub.add_parser("network", help="network meta-analysis (and the additive component model) of arm rows "
                           "or contrast rows, or of an analysis definition")
    p_net.add_argument("file", help="CSV of arm rows (study, treatment, n, mean, sd or events, n) or contrast rows "
                       "(study, treat1, treat2, yi, sei); or an analysis definition (.toml) with --analysis")
    p_net.add_argument("--analysis", help="analysis id, when FILE is an analysis definition (.toml)")
    p_net.add_argument("--study", default="study", help="study column (default: %(default)s)")
    p_net.add_argument("--treatment", default="treatment", help="treatment column of arm rows (default: %(default)s)")
    p_net.add_argument("--measure", choices=["MD", "SMD", "OR", "RR", "RD"],
                       help="effect measure for arm rows (needed for arm rows)")
    p_net.add_argument("--reference", help="reference treatment (default: the first in sorted order)")
    p_net.add_argument("--method", choices=["REML", "ML", "DL", "FE"], default="REML",
                       help="REML (default), ML, DL (netmeta's generalised DerSimonian-Laird) or FE (common effect)")
    p_net.add_argument("--ci-method", choices=["wald", "t", "hk"], default="wald",
                       help="wald (z), t (netmeta's t-dist) or hk (Hartung-Knapp) (default: %(default)s)")
    p_net.add_argument("--level", type=float, default=0.95, help="confidence level, in (0, 1) (default: %(default)s)")
    p_net.add_argument("--small-values", choices=["good", "bad"], default="good",
                       help="for the rankings: is a lower value better (good, e.g. pain) or worse (default: %(default)s)")
    p_net.add_argument("--components", metavar="SEP", help="also fit the additive component model, splitting "
                       "treatment names at SEP (e.g. '+': 'hip+knee' = hip plus knee)")
    p_net.add_argument("--inactive", metavar="TREATMENT", help="with --components: the treatment that has no "
                       "active component (e.g. none, placebo); the components' effects are against it")
    p_net.add_argument("--format", choices=["text", "json"], default="text", help=FORMAT_HELP)
    _add_refused_preset(p_net, "a network model takes --method and --ci-method")
    p_net.set_defaults(func=cmd_network)


PRIOR_HELP = ("prior of the heterogeneity: half-normal:SCALE, half-cauchy:SCALE, half-t:DF:SCALE, exponential:RATE, "
              "uniform:UPPER, inverse-gamma:SHAPE:SCALE (on tau), log-normal:MEAN:SD or log-t5:LOCATION:SCALE (on "
              "log tau²), or a published table, rhodes2015 (SMD) or turner2015 (log OR), with --outcome and "
              "--comparison (default: %(default)s)")


def _add_bayes(sub):
    p_bayes = sub.add_parser("bayes", help="Bayesian random-effects meta-analysis with an exact posterior (the model "
                             "of R bayesmeta): mu, tau, a new trial's effect, shrinkage estimates")
    p_bayes.add_argument("file", help="CSV with one row per study (arm-level or effect-level columns)")
    p_bayes.add_argument("--measure", choices=list(measures.MEASURES),
                         help="effect measure for arm-level or binary data (experimental vs control)")
    p_bayes.add_argument("--tau-prior", default="half-normal:0.5", help=PRIOR_HELP)
    p_bayes.add_argument("--outcome", help="outcome type of a table prior (e.g. pain_function for rhodes2015)")
    p_bayes.add_argument("--comparison", help="comparison type of a table prior (e.g. non_pharmacological)")
    p_bayes.add_argument("--mu-prior", metavar="MEAN:SD", help="normal prior for mu (default: flat)")
    p_bayes.add_argument("--rescale-uisd", action="store_true",
                         help="with --measure MD and an SMD prior: rescale the prior by the unit-information SD "
                         "(Röver et al. 2021)")
    p_bayes.add_argument("--mcid", type=float, help="also print P(mu < -MCID) and P(theta_new < -MCID)")
    p_bayes.add_argument("--level", type=float, default=0.95, help="credible level, in (0, 1) (default: %(default)s)")
    p_bayes.add_argument("--format", choices=["text", "json"], default="text", help=FORMAT_HELP)
    _add_refused_preset(p_bayes, "the Bayesian model takes --tau-prior and --mu-prior")
    p_bayes.set_defaults(func=cmd_bayes)


def _add_refused_preset(parser, why):
    """``--preset`` on a command whose model the presets do not describe: accepted by the parser so that
    it is refused with the reason (rather than as an unknown flag)."""
    parser.add_argument("--preset", metavar="NAME", help="not available here: the convention presets describe "
                        f"univariate pooling (pool, sensitivity, reproduce, diff, simulate); {why}")
    parser.set_defaults(preset_refused=why)


def _refuse_preset(args):
    if getattr(args, "preset", None) is not None:
        raise InputError(f"--preset {args.preset}: the convention presets describe univariate pooling (pool, "
                         f"sensitivity, reproduce, diff, simulate); {args.preset_refused}")


def _add_import_revman(sub):
    p = sub.add_parser("import-revman", help="a RevMan 5 file (.rm5) -> our CSVs, a published.csv of the totals "
                       "it stores and one analysis spec (then: pfps-meta reproduce DIR/<review>.toml)")
    p.add_argument("file", help="the RevMan 5 file (.rm5)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write into (created if needed); never "
                   "the folder of the RevMan file or an evidence base (data/)")
    p.add_argument("--decimals", type=int, default=4, help="places of the stored totals in published.csv, at "
                   "least 4 significant digits")
    p.add_argument("--format", choices=["text", "json"], default="text", help=FORMAT_HELP)
    p.set_defaults(func=cmd_import_revman)


def _add_export_r(sub):
    p = sub.add_parser("export-r", help="the equivalent R script (metafor) of one analysis of a spec, which "
                       "prints metafor's numbers beside ours")
    p.add_argument("spec", help="analysis definition (analyses/*.toml)")
    p.add_argument("--analysis", required=True, metavar="ID", help="the analysis' id in SPEC")
    p.add_argument("--out", metavar="FILE", help="write the script here (default: standard output)")
    p.set_defaults(func=cmd_export_r)


def cmd_import_revman(args) -> int:
    from pfps_meta.present.revman_export import import_revman

    result = import_revman(args.file, args.out, decimals=args.decimals)
    if args.format == "json":
        print(strict_json({**result.to_dict(), "decimals": args.decimals}))
    else:
        _print_text(f"{result}\nThe stored totals in published.csv are written to {args.decimals} decimal places "
                    f"(--decimals).")
    return 0


def cmd_export_r(args) -> int:
    from pfps_meta.present.export_r import export_r
    from pfps_meta.present.outputs import atomic_write_text, check_target

    if args.out is not None:
        check_target(args.out, what="--out", inputs=[args.spec])
    script = export_r(args.spec, args.analysis)
    if args.out is None:
        _print_text(script.rstrip("\n"))
    else:
        atomic_write_text(args.out, script, what="--out", inputs=[args.spec])
        print(f"wrote {args.out} (run it with: Rscript {args.out})", file=sys.stderr)
    return 0


#: the subcommands, in the order of ``pfps-meta --help``: one ``_add_*`` function each
COMMANDS = (_add_pool, _add_reproduce, _add_sensitivity, _add_diff, _add_report, _add_simulate, _add_template,
            _add_multilevel, _add_network, _add_bayes, _add_import_revman, _add_export_r)


def cmd_bayes(args) -> int:
    _refuse_preset(args)
    from pfps_meta.inputs.load import read_csv
    from pfps_meta.inputs.validate import effect_table
    from pfps_meta.models import priors
    from pfps_meta.models.bayes import bayes

    mu_prior = None
    if args.mu_prior is not None:
        parts = _numbers("--mu-prior", args.mu_prior.replace(":", ","))
        if len(parts) != 2:
            raise InputError(f"--mu-prior: write MEAN:SD, not '{args.mu_prior}'")
        mu_prior = tuple(parts)
    prior = priors.parse_prior(args.tau_prior, args.outcome, args.comparison)
    table = read_csv(args.file)
    with _InFile(args.file, table):
        effects = effect_table(_without_positions(table), args.measure)
        if args.rescale_uisd:
            if args.measure != "MD" or prior.measure is None:
                raise InputError("--rescale-uisd rescales a prior derived for the SMD or log OR for --measure MD")
            if not {"n_exp", "n_ctrl"} <= set(effects.columns):
                raise InputError("--rescale-uisd needs the arm sizes n_exp and n_ctrl")
            prior = priors.for_mean_difference(prior, effects["n_exp"] + effects["n_ctrl"], effects["vi"])
        result = bayes(yi=effects["yi"].to_numpy(float), vi=effects["vi"].to_numpy(float),
                       labels=[str(s) for s in effects["study"]] if "study" in effects else None,
                       measure=args.measure, tau_prior=prior, mu_prior=mu_prior, level=args.level)
    probabilities = None
    if args.mcid is not None:
        threshold = -abs(args.mcid)
        probabilities = {"threshold": threshold, "mu_below": result.prob("mu", below=threshold),
                         "theta_new_below": result.prob("theta_new", below=threshold)}
    if args.format == "json":
        out = {"file": str(args.file), **result.to_dict()}
        if probabilities is not None:
            out["probabilities"] = probabilities
        print(strict_json(out))
        return 0
    text = f"Data: {args.file}\n\n{result}"
    if probabilities is not None:
        text += (f"\nP(mu < {probabilities['threshold']:g}) = {probabilities['mu_below']:.4f}; "
                 f"P(theta_new < {probabilities['threshold']:g}) = {probabilities['theta_new_below']:.4f}")
    _print_text(text)
    return 0


def cmd_report(args) -> int:
    from pfps_meta.present.report import build_report

    specs = _spec_paths(args.specs, include_models=True)
    command = "pfps-meta report" + (f" --out {args.out}" if args.out != "reports" else "") + \
        "".join(f" {s}" for s in args.specs)
    if args.extraction:
        command += f" --extraction {args.extraction}"
    if args.format in ("docx", "xlsx"):
        from pfps_meta.present.report_office import build_office_report

        build_office_report(specs, args.format, out=args.out, command=command + f" --format {args.format}",
                            extraction=args.extraction)
        return 0
    build_report(specs, out_dir=args.out, command=command, extraction=args.extraction)
    return 0


def _spec_paths(specs, include_models=False):
    """The specs given, or every analyses/*.toml; the report also shows the multilevel and network specs,
    the reproduce table only the pairwise ones (the others have no published target)."""
    from pfps_meta.evidence.specs import default_spec_paths
    from pfps_meta.errors import InputError

    paths = specs or default_spec_paths(include_models=include_models)
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
    if args.dask_min_seconds is not None and not args.scheduler:
        raise InputError("--dask-min-seconds decides when --scheduler is used; without --scheduler the simulation "
                         "runs in this process and it would change nothing")
    loaded = []
    if args.spec:
        from pfps_meta.evidence.specs import load_all, run_analysis

        loaded = load_all([args.spec])
        [(spec, evidence)] = loaded
        matches = [_find_analysis(spec, args.analysis, args.spec)]
        if matches[0].model != "pairwise":
            raise InputError(f"--analysis: '{matches[0].id}' is a {matches[0].model} analysis; the simulation "
                             "takes the shape of a pairwise one", file=args.spec)
        run = run_analysis(matches[0], evidence)
        design = Design.from_analysis(matches[0], evidence, run.result)
    elif args.design:
        design = Design.from_csv(args.design)
    else:
        design = Design.from_range(args.k, args.n_min, args.n_max, seed=args.seed)
    if args.plot is not None:           # refused before the simulation runs, so nothing is written or lost
        _check_plot_target(args.plot, run_inputs(loaded, [args.design]))
    result = simulate(design, mu=_numbers("--mu", args.mu), tau2=_numbers("--tau2", args.tau2), measure=args.measure,
                      sd=args.sd, control_mean=args.control_mean, preset=args.preset,
                      methods=args.methods or (None if args.preset else "DL,REML"),
                      ci_methods=args.ci_methods or (None if args.preset else "wald,hksj"),
                      pi_methods=args.pi_methods, replicates=args.replicates, seed=args.seed, level=args.level,
                      client=args.scheduler, dask_min_seconds=args.dask_min_seconds,
                      progress=_Progress(args, "simulate").on)
    if args.plot:
        from pfps_meta.present import plots
        from pfps_meta.present.outputs import protect

        with protect(run_inputs(loaded, [args.design])):     # checked again as each file is written
            figure = plots.coverage(result)
            written = plots.save(figure, args.plot)
            import matplotlib.pyplot as plt

            plt.close(figure)
    notes = _simulate_notes(args, result, written if args.plot else ())
    if args.format == "json":
        out = result.to_dict()
        out["notes"] = list(out.get("notes") or []) + notes
        print(strict_json(out))
        return 0
    header = _preset_lines(args, on_top=bool(args.methods or args.ci_methods or args.pi_methods))
    _print_text("\n".join(header + [str(result)] + _note_lines(notes)))
    return 0


def _simulate_notes(args, result, written=()) -> list:
    """Where the simulation ran, what it wrote, and replicates rounded up to whole blocks."""
    setup = result.to_dict().get("setup", {})
    if not args.scheduler:
        notes = ["ran in this process (no --scheduler)"]
    elif setup.get("scheduler") == "dask":
        notes = [f"ran on Dask ({args.scheduler})"]
    else:        # simulate's own note, printed with the result, says why it stayed here
        notes = [f"--scheduler {args.scheduler} not used: the work was too small to pay for it"]
    done = setup.get("replicates")
    if done is not None and done != args.replicates:
        notes.append(f"--replicates {args.replicates:,} rounded up to {done:,} (whole blocks of "
                     f"{setup.get('block')} draws, so any run reproduces the same streams)")
    if written:
        notes.append("coverage plot written: " + " and ".join(str(path) for path in written))
    return notes


class _InFile:
    """Errors raised about a table read from ``path`` name that file, and the line of a data row."""

    def __init__(self, path, table=None):
        self.path, self.table = path, table

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if kind is None or not issubclass(kind, InputError) or exc.file:
            return False
        line = exc.line
        if line is None and exc.row is not None:
            from pfps_meta.inputs.load import LINE_COLUMN

            rows = self.table[LINE_COLUMN] if self.table is not None and LINE_COLUMN in self.table else None
            line = int(rows.iloc[exc.row - 1]) if rows is not None and 0 < exc.row <= len(rows) else exc.row + 1
        raise InputError(exc.reason, file=str(self.path), line=line, row=exc.row, column=exc.column) from None


def _without_positions(table):
    """The table as the user wrote it (without the reader's line-number column)."""
    from pfps_meta.inputs.load import LINE_COLUMN

    return table.drop(columns=[LINE_COLUMN]) if LINE_COLUMN in table.columns else table


def _names(flag, text):
    names = [part.strip() for part in (text or "").split(",") if part.strip()]
    if text is not None and not names:
        raise InputError(f"{flag}: give at least one column name")
    return names


def cmd_multilevel(args) -> int:
    _refuse_preset(args)
    from pfps_meta.inputs.load import read_csv
    from pfps_meta.models.multilevel import multilevel, multivariate

    if str(args.file).endswith(".toml"):
        return _multilevel_from_spec(args)
    if args.analysis:
        raise InputError("--analysis goes with an analysis definition (.toml), not a CSV")
    levels = _names("--levels", args.levels)
    if args.struct and not args.inner:
        raise InputError("--struct is the structure of --inner X --outer Y; nested --levels have none")
    if bool(levels) == bool(args.inner or args.outer):
        raise InputError("give either --levels A,B (nested random intercepts) or --inner X --outer Y (random = "
                         "~ X | Y), not both and not neither")
    if not levels and not (args.inner and args.outer):
        raise InputError("--inner and --outer go together (random = ~ INNER | OUTER)")
    outermost = levels[0] if levels else args.outer
    if args.cluster and not args.robust:
        raise InputError("--cluster is the cluster of --robust: give --robust CR1 or CR2 as well")
    table = read_csv(args.file)
    data = _without_positions(table)
    with _InFile(args.file, table):
        V, v_text = _multilevel_v(args, data, outermost)
        mods = args.mods.strip().lstrip("~").strip() if args.mods is not None else None
        if mods == "":
            raise InputError("--mods: give at least one moderator")
        common = dict(yi=args.yi, vi=args.vi, V=V, mods=mods, intercept=not args.no_intercept, method=args.method,
                      test=args.test, level=args.level)
        fit = (multilevel(data, levels=tuple(levels), **common) if levels else
               multivariate(data, inner=args.inner, outer=args.outer, struct=args.struct or "UN", **common))
        robust = _robust(fit, args.cluster or outermost, args.robust, data) if args.robust else None
    if args.format == "json":
        print(strict_json({"file": str(args.file), "V": v_text, "model": fit.to_dict(),
                           "robust": robust.to_dict() if robust is not None else None}))
        return 0
    lines = [f"Data: {args.file} ({len(data)} effects); sampling covariance V: {v_text}",
             f"Intervals (ci.lb, ci.ub): {100 * args.level:g}%, "
             + ("t tests on k - p df" if args.test == "t" else "Wald z tests"), "", str(fit)]
    if robust is not None:
        lines += ["", str(robust)]
    _print_text("\n".join(lines))
    return 0


def _robust(fit, cluster, adjust, data):
    """Robust inference clustered by a level of the model or, failing that, by a column of the data."""
    labels = cluster
    levels = set(fit.sigma2_names) | ({fit.inner, fit.outer} if fit.struct else set())
    if cluster not in levels and cluster in data.columns:
        labels = data[cluster].astype(str).to_numpy()
    try:
        return fit.robust(cluster=labels, adjust=adjust)
    except InputError as exc:
        raise InputError(f"--cluster {cluster}: {exc.reason}") from None


def _multilevel_from_spec(args):
    """``pfps-meta multilevel SPEC --analysis ID``: the spec's multilevel analysis, with what is missing."""
    given = [flag for flag, value in (("--levels", args.levels), ("--inner", args.inner), ("--outer", args.outer),
                                      ("--struct", args.struct), ("--mods", args.mods), ("--rho", args.rho),
                                      ("--obs", args.obs), ("--phi", args.phi), ("--time", args.time),
                                      ("--vcluster", args.vcluster), ("--robust", args.robust),
                                      ("--cluster", args.cluster)) if value is not None]
    given += [flag for flag, value, default in (("--yi", args.yi, "yi"), ("--vi", args.vi, "vi"),
                                                ("--method", args.method, "REML"), ("--test", args.test, "z"),
                                                ("--level", args.level, 0.95)) if value != default]
    given += ["--no-intercept"] if args.no_intercept else []
    if given:
        raise InputError(f"{', '.join(given)}: with an analysis definition, the spec sets these (edit "
                         f"{args.file}); the flags are for a CSV")
    run = _model_analysis(args, ("multilevel", "multivariate"))
    if args.format == "json":
        print(strict_json(run.to_dict()))
    else:
        _print_text(_model_run_text(run))
    return 0


def _multilevel_v(args, data, outermost):
    """V from --rho/--obs and --phi/--time through vcalc, or diag(vi); and the words that say which."""
    if args.rho is None and args.phi is None:
        given = [flag for flag, value in (("--obs", args.obs), ("--time", args.time), ("--vcluster", args.vcluster))
                 if value]
        if given:
            raise InputError(f"{', '.join(given)}: only used to build V with --rho (and --obs) or --phi (and --time)")
        return None, f"diag({args.vi}) (independent sampling errors)"
    if args.rho is not None and not args.obs:
        raise InputError("--rho needs --obs, the column naming each effect's outcome")
    if args.phi is not None and not args.time:
        raise InputError("--phi needs --time, the numeric column of the time points")
    if args.obs and args.rho is None:
        raise InputError("--obs needs --rho, the assumed correlation between outcomes of one sample")
    if args.time and args.phi is None:
        raise InputError("--time needs --phi, the assumed autocorrelation between time points")
    from pfps_meta.models.vcalc import vcalc

    cluster = args.vcluster or outermost
    V = vcalc(data, vi=args.vi, cluster=cluster, obs=args.obs, rho=args.rho, time=args.time, phi=args.phi)
    parts = [f"rho = {args.rho:g} between outcomes ({args.obs})" if args.rho is not None else "",
             f"phi = {args.phi:g} between time points ({args.time})" if args.phi is not None else ""]
    return V, f"vcalc within {cluster}: " + "; ".join(p for p in parts if p) + " (assumed correlations)"


def cmd_network(args) -> int:
    _refuse_preset(args)
    from pfps_meta.models.network import network

    if str(args.file).endswith(".toml"):
        given = [flag for flag, value, default in (
            ("--study", args.study, "study"), ("--treatment", args.treatment, "treatment"),
            ("--measure", args.measure, None), ("--reference", args.reference, None), ("--method", args.method, "REML"),
            ("--ci-method", args.ci_method, "wald"), ("--level", args.level, 0.95),
            ("--small-values", args.small_values, "good"), ("--components", args.components, None),
            ("--inactive", args.inactive, None)) if value != default]
        if given:
            raise InputError(f"{', '.join(given)}: with an analysis definition, the spec sets these (edit "
                             f"{args.file}); the flags are for a CSV")
        return _network_from_spec(args)
    if args.analysis:
        raise InputError("--analysis goes with an analysis definition (.toml), not a CSV")
    from pfps_meta.inputs.load import read_csv

    table = read_csv(args.file)
    with _InFile(args.file, table):
        net = network(_without_positions(table), study=args.study,
                      treatment=args.treatment, measure=args.measure, reference=args.reference, method=args.method,
                      ci_method=args.ci_method, level=args.level, small_values=args.small_values)
        components = _component_model(net, args.components, args.inactive)
    _print_network(args, net, components)
    return 0


def _network_from_spec(args):
    """``pfps-meta network SPEC --analysis ID``: the spec's network analysis, with what is missing."""
    run = _model_analysis(args, "network")
    if args.format == "json":
        print(strict_json(run.to_dict()))
    else:
        _print_text(_model_run_text(run))
    return 0


def _model_run_text(run) -> str:
    """A spec's multilevel or network run as text, with what its JSON holds beyond the run's print: the
    node-splitting of a network, the settings, and where the effect rows are."""
    doc = run.to_dict()
    lines = [str(run)]
    if doc.get("model") == "network" and isinstance(doc.get("fit"), dict):
        lines += _network_lines(doc["fit"])
    settings = {key: value for key, value in (doc.get("settings") or {}).items() if value not in (None, "")}
    if settings:
        lines += ["", "Settings (from the spec): " + "; ".join(f"{key} {_setting_text(value)}" for key, value in
                                                             settings.items())]
    if doc.get("effects"):
        lines += [f"Effects: the {len(doc['effects'])} rows the model used are in --format json (key effects)"]
    return "\n".join(lines)


def _setting_text(value) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_setting_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_setting_text(v) for v in value)
    return str(_shown(value))


def _find_analysis(spec, analysis_id, path, flag="--analysis"):
    """The analysis of ``spec`` named ``analysis_id``, or one line listing the ones it has."""
    for analysis in spec.analyses:
        if analysis.id == analysis_id:
            return analysis
    raise InputError(f"{flag}: no analysis '{analysis_id}' (have: {', '.join(a.id for a in spec.analyses)})",
                     file=path)


def _model_analysis(args, model):
    """Run one analysis of a spec that must be of ``model``; flags that would change it are refused."""
    from pfps_meta.evidence.specs import load_all, run_analysis

    if not args.analysis:
        raise InputError(f"--analysis: name the analysis of {args.file} to run")
    [(spec, evidence)] = load_all([args.file])
    analysis = _find_analysis(spec, args.analysis, args.file)
    models = (model,) if isinstance(model, str) else tuple(model)
    if analysis.model not in models:
        raise InputError(f"--analysis: '{analysis.id}' is a {analysis.model} analysis, not a {models[0]} one",
                         file=args.file)
    return run_analysis(analysis, evidence)


def _component_model(net, sep, inactive=None):
    if sep is None:
        if inactive is not None:
            raise InputError("--inactive goes with --components")
        return None
    if not sep.strip():
        raise InputError("--components: give the separator of the treatment names (e.g. '+')")
    from pfps_meta.models.network_components import component_network

    return component_network(net, sep=sep, inactive=inactive)


def _print_network(args, net, components, header=None):
    if args.format == "json":
        out = {"file": str(args.file), **net.to_dict(),
               "components": components.to_dict() if components is not None else None}
        print(strict_json(out))
        return
    lines = ([header, ""] if header else []) + [f"Data: {args.file}", "", str(net)] + _network_lines(net.to_dict())
    if components is not None:
        lines += ["", str(components)]
    _print_text("\n".join(lines))


def _network_lines(doc) -> list:
    """What ``network --format json`` holds beyond the fit's print: node-splitting (netmeta netsplit)
    and where the league table is."""
    lines = []
    split = doc.get("netsplit") or []
    if split:
        lines += ["", "Direct and indirect evidence (node-splitting by back-calculation, netmeta netsplit):",
                  f"  {'comparison':<32} {'k':>3} {'direct':>9} {'indirect':>9} {'difference':>10}  p"]
        lines += [f"  {row['comparison']:<32} {row['k']:>3} {format_number(row['direct']):>9} "
                  f"{format_number(row['indirect']):>9} {format_number(row['difference']):>10}  "
                  f"{format_p(row['pval'], bare=True)}" for row in split]
    if doc.get("league"):
        lines += ["", f"League table: all {len(doc['league'])} ordered pairs of treatments, in --format json "
                  "(key league); the effects against the reference are above"]
    return lines


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
    if evidence is None or not any(a.uses_evidence for a in spec.analyses):
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
    from pfps_meta.analysis.reproduce import format_table, reproduce_rows
    from pfps_meta.evidence.specs import load_all

    loaded = load_all(_spec_paths(args.specs), extraction=args.extraction)
    pairs = [(a, evidence) for spec, evidence in loaded for a in spec.analyses]
    progress = _Progress(args, "reproduce")
    steps = len(pairs) * (2 if args.presets else 1)
    results = []
    for i, (analysis, evidence) in enumerate(pairs):
        progress.step(i, steps, analysis.key)
        results.append(_run_reproduced(analysis, evidence, args.preset))
    rows = reproduce_rows(results, [evidence for _, evidence in pairs])
    for row in rows if args.preset else ():
        row["preset"] = args.preset
    if args.presets:
        from pfps_meta.analysis.reproduce import preset_statuses

        for i, (row, (analysis, evidence)) in enumerate(zip(rows, pairs)):
            progress.step(len(pairs) + i, steps, f"{analysis.key}: every preset")
            row["presets"] = preset_statuses(analysis, evidence)
            row["reproduced_by"] = [name for name, p in row["presets"].items() if p["status"] == "reproduced"]
    progress.step(steps, steps, "done")
    progress.done()
    if args.format == "json":
        print(strict_json(rows))
        return 0
    header = _preset_lines(args, on_top=False) + ([f"Extraction sheet: {args.extraction} (its rows replace the curated ones)", ""]
                                    if args.extraction else [])
    lines = header + [format_table(rows)]
    if args.presets:
        lines += ["", "Which convention presets reproduce each target:"]
        lines += [f"{row['analysis']:24} " + ", ".join(f"{name}: {p['status']}" for name, p in row["presets"].items())
                  for row in rows]
    _print_text("\n".join(lines))
    return 0


def _run_reproduced(analysis, evidence, preset_name):
    from pfps_meta.evidence.specs import run_analysis

    if preset_name:
        from pfps_meta.analysis.presets import run_with_preset

        return run_with_preset(analysis, evidence, preset_name)
    return run_analysis(analysis, evidence)


def cmd_sensitivity(args) -> int:
    from pfps_meta.analysis.sensitivity import format_sensitivity, sensitivity_report
    from pfps_meta.models.univariate import pool

    _check_sensitivity_flags(args)
    progress = _Progress(args, "sensitivity")
    progress.step(0, 2, "fitting the model")
    if str(args.file).endswith(".toml"):
        result = _analysis_result(args)
    else:
        result = pool(args.file, measure=args.measure, settings=_settings(args))
    progress.step(1, 2, "leave-one-out, influence, small-study tests" + "".join(
        f", {flag} {value}" for flag, value in (("permutations", args.permutations), ("bootstrap", args.bootstrap))
        if value))
    report = sensitivity_report(result, order=args.order, subgroup=args.subgroup, moderator=args.moderator,
                                mcid=args.mcid, direction=args.direction or "below",
                                permutations=args.permutations, bootstrap=args.bootstrap, seed=args.seed)
    progress.step(2, 2, "done")
    progress.done()
    notes = _measure_notes(args, result.measure) + _sensitivity_notes(args, report)
    if args.format == "json":
        print(strict_json({**report, **({"preset": args.preset} if args.preset else {}), "notes": notes}))
    else:
        text = format_sensitivity(report)
        shown = [n for n in notes if not (n.startswith("--permutations") and "exact enumeration" in text)]
        _print_text("\n".join(_preset_lines(args) + [text] + _settings_lines(result.settings) + _note_lines(shown)))
    return 0


def _check_sensitivity_flags(args):
    import math

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
    if args.direction is not None and args.mcid is None:
        raise InputError(f"--direction {args.direction} goes with --mcid (the threshold it is below or above)")


#: sensitivity flags and the report key holding what each asked for
SENSITIVITY_REQUESTS = (("--order", "order", "cumulative"), ("--subgroup", "subgroup", "subgroups"),
                        ("--moderator", "moderator", "meta_regression"),
                        ("--mcid", "mcid", "predictive_probability"), ("--permutations", "permutations", "permutation"),
                        ("--bootstrap", "bootstrap", "bootstrap_tau2"))


def _sensitivity_notes(args, report) -> list:
    """What a flag asked for and how it was done, or why it was not: exact enumeration in place of
    random permutations, and analyses left out (too few studies)."""
    notes = []
    permutation = report.get("permutation")
    if args.permutations and isinstance(permutation, dict) and permutation.get("exact"):
        notes.append(f"--permutations {args.permutations:,}: with k = {report['k']} every one of the "
                     f"{permutation['n']:,} permutations was enumerated (an exact p; --seed not used for it)")
    reasons = "; ".join(report.get("warnings") or []) or f"k = {report['k']}"
    for flag, name, key in SENSITIVITY_REQUESTS:
        value = getattr(args, name)
        if value not in (None, 0) and report.get(key) in (None, [], {}):
            notes.append(f"{flag} {value}: not run ({reasons})")
    return notes


def _analysis_result(args):
    """The fitted result of ``--analysis`` in a spec file, with the spec's own settings."""
    from pfps_meta.evidence.specs import load_all, run_analysis
    from pfps_meta.errors import InputError

    [(spec, evidence)] = load_all([args.file])
    analysis = _find_analysis(spec, args.analysis, args.file)
    if args.measure is not None and args.measure != analysis.measure:
        raise InputError(f"--measure {args.measure}: analysis '{analysis.key}' is defined with measure "
                         f"{analysis.measure}; change it in the spec", file=args.file)
    # options given on the command line override the spec's settings; the rest come from the spec
    if analysis.model != "pairwise":
        raise InputError(f"--analysis: '{analysis.id}' is a {analysis.model} analysis; this command takes a "
                         f"pairwise one (use: pfps-meta {'network' if analysis.model == 'network' else 'multilevel'} "
                         f"{args.file} --analysis {analysis.id})", file=args.file)
    run = run_analysis(analysis, evidence, settings=_settings(args, base=analysis.settings))
    if run.result is None:
        raise InputError(f"analysis '{analysis.key}' has no trial with usable data yet (missing: "
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
    analysis = _find_analysis(spec, args.analysis, args.spec, flag="analysis")
    table = preset_diff(analysis, evidence, *args.presets)
    if args.format == "json":
        print(strict_json(table.to_dict("records")))
    else:
        print(f"{analysis.key}: {args.presets[0]} vs {args.presets[1]}")
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

    if args.preset:      # through pool(preset=), so a preset's rule for 2x2 counts applies as in the API
        given = {name: value for name, value in _given_settings(args).items() if value is not None}
        result = pool(args.file, measure=args.measure, preset=args.preset, weights=args.weights, **given)
    else:
        result = pool(args.file, measure=args.measure, settings=_settings(args), weights=args.weights)
    notes = _measure_notes(args, result.measure)
    if args.format == "json":
        out = result.to_dict()
        if args.preset:
            out["preset"] = args.preset
        out["notes"] = list(out.get("notes") or []) + notes
        print(strict_json(out))
    else:
        summary = result.summary()
        _print_text("\n".join(_preset_lines(args) + [summary] + _fit_lines(result.to_dict(), summary)
                               + _settings_lines(result.settings) + _note_lines(notes)))
    return 0


def _fit_lines(out, summary) -> list:
    """The fit statistics and convergence of ``pool --format json`` that the summary does not print."""
    if "logLik" in summary or out.get("loglik") is None:
        return []
    stats = ", ".join(f"{name} {format_number(out.get(key))}" for name, key in (
        ("logLik", "loglik"), ("deviance", "deviance"), ("AIC", "aic"), ("BIC", "bic"), ("AICc", "aicc")))
    iterations = out.get("iterations")
    converged = "closed form (no iterations)" if iterations == 0 else (
        ("converged" if out.get("converged") else "did NOT converge")
        + (f" in {iterations} iterations" if iterations is not None else ""))
    se = f"; SE of tau^2 {format_number(out['tau2_se'])}" if out.get("tau2_se") is not None else ""
    return ["", f"Fit statistics ({out.get('method')}): {stats}; {converged}{se}"]


def _settings(args, base=None):
    """The settings of this run: ``--preset``'s (or ``base``, a spec's, or the defaults), then the option
    flags given. Over a spec, the preset replaces its conventions but keeps its levels (as
    ``presets.run_with_preset`` does)."""
    name = getattr(args, "preset", None)
    if name:
        from pfps_meta.analysis.presets import preset

        chosen = preset(name).settings
        if base is not None:
            chosen = chosen.replace(level=base.level, input_level=base.input_level)
        base = chosen
    return Settings.from_mapping(_given_settings(args), base=base)


def _preset_lines(args, on_top=True) -> list:
    """The header line naming ``--preset`` and what it sets (text output)."""
    if not getattr(args, "preset", None):
        return []
    from pfps_meta.analysis.presets import preset

    chosen = preset(args.preset)
    return [f"Conventions: preset {chosen.name} ({chosen.description})"
            + ("; option flags given on top" if on_top else ""), ""]


def _measure_notes(args, measure) -> list:
    """Notes for option flags given that do nothing with ``measure`` (said, not silently ignored)."""
    given = _given_settings(args)
    unused = [("vtype", "SMD", "the SMD's sampling variance"), ("smd_convention", "SMD", "the SMD's correction "
              "and variance"), ("pooled_sd", "MD", "the MD's variance")]
    return [f"{cli_flag(OPTION_BY_NAME[name])} {_shown(given[name])}: not used with measure {measure} (it sets "
            f"{what}; measure {needs} only)" for name, needs, what in unused if name in given and measure != needs]


def _note_lines(notes) -> list:
    return ([""] + [f"Note: {note}" for note in notes]) if notes else []


def _settings_lines(settings) -> list:
    """The fit's settings that differ from the defaults, named as their flags: every option flag given (or
    set by --preset) shows in the text output, also one the model does not print (e.g. --mh-add)."""
    changed = [f"{cli_flag(o)} {_shown(getattr(settings, o.name))}" for o in OPTIONS
               if o.cli and getattr(settings, o.name) != o.default]
    return ["", "Settings other than the defaults: " + ", ".join(changed)] if changed else []


class _Progress:
    """One progress line on standard error, rewritten in place: shown with ``--progress`` or when
    standard error is a terminal (never in a pipe or a test unless asked)."""

    active = None                      # the progress line being drawn, if any (warnings end it first)

    def __init__(self, args, what):
        self.what, self.shown, self.width = what, False, 0
        self.on = bool(getattr(args, "progress", False)) or _stderr_is_terminal()

    def step(self, i, n, label=""):
        if self.on:
            self.shown = True
            bar = "#" * int(20 * i / max(n, 1))
            text = f"{self.what}: [{bar:<20}] {i}/{n} {_printable(label)}"[:120]
            print("\r" + text.ljust(self.width), end="", file=sys.stderr, flush=True)
            self.width = max(self.width, len(text))
            _Progress.active = self

    @classmethod
    def interrupt(cls):
        """End the progress line being drawn, so that a warning or an error gets a line of its own."""
        if cls.active is not None:
            cls.active.width, cls.active = 0, None
            print(file=sys.stderr)

    def done(self):
        if self.shown:
            print(file=sys.stderr, flush=True)
            self.shown = False
        _Progress.active = None


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _warning_printer():
    """A ``warnings.showwarning`` that prints each distinct warning (category and message) once per run,
    on one line, with paths under the working directory written relative to it (the same input is read
    again by presets and sensitivity refits; its warning is news only the first time)."""
    shown = set()

    def show(message, category, filename, lineno, file=None, line=None):
        text = _relative_paths(_printable(message))
        if (category, text) in shown:
            return
        shown.add((category, text))
        kind = "convergence warning" if issubclass(category, ConvergenceWarning) else "warning"
        _Progress.interrupt()
        print(f"pfps-meta: {kind}: {text}", file=sys.stderr)
    return show


def _relative_paths(text: str) -> str:
    """``text`` with absolute paths inside the working directory written relative to it."""
    import os

    try:
        here = os.getcwd()
    except OSError:             # the working directory was removed: leave the paths as they are
        return text
    prefix = here.rstrip(os.sep) + os.sep
    return text.replace(prefix, "") if prefix != os.sep else text


def main(argv=None) -> int:
    """Run one command; every way it can end is one line on standard error (exit 2 for bad input, 130
    for Ctrl-C, 1 for a bug in pfps-meta, whose traceback is shown only with PFPS_META_DEBUG=1)."""
    with warnings.catch_warnings():     # the hook and filter live for this run only, never at import
        warnings.showwarning = _warning_printer()
        warnings.filterwarnings("always", category=PfpsWarning)     # deduplicated by the hook instead
        return _run(argv)


def _run(argv) -> int:
    try:
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


def _fail(line: str, code: int) -> int:
    """Print the one closing line (a second Ctrl-C or a closed stderr cannot turn it into a traceback)."""
    try:
        _Progress.interrupt()
        print(line, file=sys.stderr)
    except (KeyboardInterrupt, OSError):
        pass
    return code


def run_process(argv=None) -> int:
    """:func:`main` for a process that runs one command and exits (the console script, ``python -m
    pfps_meta.cli``). Two settings of the garbage collector, for a process whose objects mostly live until
    it exits: the objects the imports created are moved out of the collector's sight with
    :func:`gc.freeze` (a report: 5.67 against 6.30 s CPU, medians of 5 alternating runs on a noisy machine),
    and :data:`GC_THRESHOLDS` makes collections rarer (a report: 35 collections taking 0.10 s instead of
    525 taking 0.26-0.33 s in 4 alternating runs, 14 MB more peak memory). Not for repeated calls in one
    process (tests, notebooks):
    there :func:`main` is the entrance and the collector is left as Python sets it."""
    import gc

    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    return main(argv)


#: gc.set_threshold for a one-command process (Python's default is 700, 10, 10)
GC_THRESHOLDS = (10_000, 50, 100)


if __name__ == "__main__":
    sys.exit(run_process())
