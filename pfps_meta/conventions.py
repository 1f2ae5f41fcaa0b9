"""One home for every convention: the model settings, their defaults, the pooling methods' names (the tau²
estimators, and Mantel-Haenszel / Peto for 2x2 counts) and the convention presets.

This is a leaf module (it imports nothing from the package but the leaf ``errors``), so every other layer can read it: the
pooling core, the API (:func:`pfps_meta.pool`), the command line (its flags are generated from
:data:`OPTIONS`), the analysis specs (``[settings]`` in ``analyses/*.toml``), the presets and the report.
A default lives here and nowhere else; ``tests/test_conventions.py`` checks that the CLI, the TOML
loader and the API all read it.

A fitted :class:`~pfps_meta.models.univariate.MetaResult` carries the :class:`Settings` it was fitted with, and every
refit (leave-one-out, subgroups, trim-and-fill, permutations, bootstraps, presets) derives its own
settings from those with :meth:`Settings.replace`, as metafor re-reads the options stored in an ``rma``
object.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields, replace as _dc_replace


from pfps_meta.errors import SettingsError  # noqa: E402  (errors.py is a leaf too)


# --------------------------------------------------------------------------------------------------
# tau² estimators: name -> what it is called and how the methods section describes it. The
# implementations (intercept-only, vectorised; and with moderators) live in ``pfps_meta.models.tau2``, keyed
# by the same names; that module refuses to import if the two disagree.


@dataclass(frozen=True)
class EstimatorInfo:
    name: str
    label: str            # short name, e.g. "restricted maximum likelihood"
    methods_text: str     # how the report's methods paragraph words it
    reference: str
    measures: tuple | None = None   # the measures it can pool (None: any)
    counts: bool = False            # pools 2x2 tables of counts, not study effects (MH, Peto)
    abbreviation: str = ""          # how figures name it where room is short (RevMan's "M-H"); default: name


TAU2_ESTIMATORS = {e.name: e for e in (
    EstimatorInfo("FE", "common-effect (fixed-effect) model",
                  "a common-effect (fixed-effect) inverse-variance model", "tau² = 0"),
    EstimatorInfo("DL", "DerSimonian-Laird",
                  "a random-effects model with the DerSimonian-Laird estimator of tau²",
                  "DerSimonian & Laird 1986"),
    EstimatorInfo("REML", "restricted maximum likelihood",
                  "a random-effects model with the restricted maximum-likelihood (REML) estimator of tau²",
                  "Viechtbauer 2005"),
    EstimatorInfo("ML", "maximum likelihood",
                  "a random-effects model with the maximum-likelihood estimator of tau²", "Viechtbauer 2005"),
    EstimatorInfo("PM", "Paule-Mandel",
                  "a random-effects model with the Paule-Mandel estimator of tau²", "Paule & Mandel 1982"),
    EstimatorInfo("SJ", "Sidik-Jonkman",
                  "a random-effects model with the Sidik-Jonkman estimator of tau²", "Sidik & Jonkman 2005"),
    EstimatorInfo("HE", "Hedges", "a random-effects model with the Hedges estimator of tau²", "Hedges 1983"),
    EstimatorInfo("EB", "empirical Bayes",
                  "a random-effects model with the empirical Bayes estimator of tau²", "Morris 1983"),
    EstimatorInfo("HS", "Hunter-Schmidt",
                  "a random-effects model with the Hunter-Schmidt estimator of tau²", "Hunter & Schmidt 2004"),
)}

# Pooling methods that are not tau² estimators: they pool the 2x2 tables of binary data directly, as a
# common-effect model (``pfps_meta.models.mantel_haenszel``). ``POOLING_METHODS`` is every value the
# ``method`` option takes; the CLI's --method choices, the TOML key and the report's methods paragraph
# read it. ``TAU2_ESTIMATORS`` stays the tau² estimators only (``models.tau2`` implements each of them).
COUNT_METHODS = {e.name: e for e in (
    EstimatorInfo("MH", "Mantel-Haenszel",
                  "a common-effect Mantel-Haenszel model on the 2x2 tables (variance of Robins, Breslow & "
                  "Greenland for the odds ratio, Greenland & Robins for the risk ratio, Sato, Greenland & "
                  "Robins for the risk difference; as metafor's rma.mh)",
                  "Mantel & Haenszel 1959; Robins, Breslow & Greenland 1986", ("OR", "RR", "RD"), True, "M-H"),
    EstimatorInfo("PETO", "Peto",
                  "a common-effect model with Peto's one-step odds ratio (observed minus expected events "
                  "over their hypergeometric variance; as metafor's rma.peto)",
                  "Yusuf et al. 1985", ("OR",), True, "Peto"),
    EstimatorInfo("MH_DL", "Mantel-Haenszel random effects (RevMan 5)",
                  "a random-effects model as RevMan 5 fits dichotomous data with the Mantel-Haenszel method: "
                  "the DerSimonian-Laird tau² from the Mantel-Haenszel heterogeneity Q, then inverse-variance "
                  "weights 1/(v + tau²)",
                  "DerSimonian & Laird 1986; Deeks & Higgins 2010 (RevMan 5 statistical algorithms)",
                  ("OR", "RR", "RD"), True, "M-H, DL"),
)}
POOLING_METHODS = {**TAU2_ESTIMATORS, **COUNT_METHODS}
# the methods whose model has no tau² (a common effect): the plots' and reports' "common effect" wording
COMMON_EFFECT_METHODS = frozenset({"FE", "MH", "PETO"})
# where the 0.5 of a continuity correction goes (metafor escalc / rma.mh ``to``)
CORRECTION_TARGETS = {"only0": "the cells of tables with a zero cell", "all": "every cell of every table",
                      "if0all": "every cell of every table when any table has a zero cell", "none": "no cell"}

CI_METHODS = {"wald": "the normal (Wald) approximation",
              "hksj": "the Hartung-Knapp-Sidik-Jonkman method (t distribution, k-1 df)"}
PI_METHODS = {"auto": "metafor's predict(): normal with Wald CIs, t(k-1) with HKSJ",
              "z": "the normal distribution", "t": "the t distribution with k-1 df",
              "t_k2": "the t distribution with k-2 df (Higgins et al. 2009)"}
I2_METHODS = {"tau2": "computed from tau²", "q": "computed from Q"}
SMD_CONVENTIONS = {
    "metafor": "Hedges' g with the exact small-sample correction (metafor, R meta)",
    "revman5": "RevMan 5's correction J = 1 - 3/(4N - 9) and variance N/(n1 n2) + g²/(2(N - 3.94))",
}
SMD_VTYPES = {"LS": "large-sample variance 1/n1 + 1/n2 + g²/(2N) (metafor's default)",
              "UB": "unbiased variance 1/n1 + 1/n2 + (1 - (m-2)/(m J²)) g² (R meta >= 6.0's default)",
              "AV": "large-sample variance with the sample-size-weighted average g in place of each g"}
MEAN_METHODS = {"luo": "Luo et al. 2018", "wan": "Wan et al. 2014"}
SD_METHODS = {"shi": "Shi et al. 2020", "wan": "Wan et al. 2014"}


# --------------------------------------------------------------------------------------------------
# the options: one row each. ``choices`` is a dict (value -> description) or None; ``kind`` is the type.


@dataclass(frozen=True)
class Option:
    name: str
    default: object
    kind: type
    help: str
    choices: dict | None = None
    aliases: tuple = ()          # older names still accepted (API keyword, TOML key and CLI flag)
    cli: bool = True             # offered on the command line


OPTIONS = (
    Option("method", "REML", str, "tau² estimator, FE for a common-effect model, or, on binary counts, "
           "MH / PETO (Mantel-Haenszel / Peto, common-effect, as metafor rma.mh / rma.peto) or MH_DL (RevMan 5's "
           "random-effects Mantel-Haenszel)", POOLING_METHODS),
    Option("ci_method", "wald", str, "CI for the pooled effect: wald (normal) or hksj", CI_METHODS, ("ci",)),
    Option("pi_method", "auto", str, "prediction-interval distribution (auto = metafor's)", PI_METHODS, ("pi",)),
    Option("i2_method", "tau2", str, "I² from tau² (metafor) or from Q (RevMan, R meta)", I2_METHODS, ("i2",)),
    Option("prediction_interval", True, bool, "report a prediction interval (RevMan 5 shows none)"),
    Option("level", 0.95, float, "confidence level of every output interval"),
    Option("input_level", 0.95, float, "confidence level of the CIs read from input files "
           "(effect-level estimate, ci_low, ci_high; arm-level ci_low/ci_high of a mean)"),
    Option("smd_convention", "metafor", str, "SMD correction and variance family", SMD_CONVENTIONS, ("smd",)),
    Option("vtype", "LS", str, "SMD sampling variance (metafor escalc vtype); with the metafor convention",
           SMD_VTYPES),
    Option("pooled_sd", False, bool, "MD: pooled-SD variance (metafor vtype HO)"),
    Option("mean_method", "luo", str, "mean from a median with quartiles and/or range", MEAN_METHODS),
    Option("sd_method", "shi", str, "SD from quartiles and/or range", SD_METHODS),
    Option("prepost_r", None, float, "pre-post correlation borrowed for studies of a pre-post measure (MC, SMCC, "
           "SMCR) whose r is empty (e.g. the mean r of the studies that report it); flagged per study"),
    Option("drop_missing", False, bool, "drop (and list by file and line) rows whose effect cannot be formed "
           "because a needed value is empty; by default such rows are refused"),
    Option("mh_add", 0.5, float, "MH and Peto: the continuity correction of the study effects yi, vi "
           "(and so of Q, I², H²; metafor rma.mh add, first value)"),
    Option("mh_to", "only0", str, "MH and Peto: which cells get mh_add (metafor to, first value)",
           CORRECTION_TARGETS),
    Option("mh_drop00", True, bool, "MH and Peto: a table with no events (or only events) in both arms has no "
           "study effect (metafor drop00, first value)"),
    Option("mh_sums_add", 0.0, float, "MH and Peto: the continuity correction of the counts in the pooled "
           "sums (metafor add, second value: by default the sums use the counts as they are)"),
    Option("mh_sums_to", "none", str, "MH and Peto: which cells of the pooled sums get mh_sums_add (metafor "
           "to, second value)", CORRECTION_TARGETS),
    Option("mh_sums_drop00", False, bool, "MH and Peto: leave tables with no events (or only events) in both "
           "arms out of the pooled sums (metafor drop00, second value)"),
    Option("cmh_correct", True, bool, "MH odds ratio: continuity correction of the Cochran-Mantel-Haenszel "
           "test (metafor rma.mh correct)"),
    Option("tau2_ci", True, bool, "compute the Q-profile CI for tau² (and for tau, I², H²)", cli=False),
    Option("fit_statistics", True, bool, "compute loglik, deviance, AIC, BIC, AICc (refits leave them out)",
           cli=False),
    Option("maxiter", 1000, int, "iteration limit of the iterative tau² estimators", cli=False),
)
OPTION_BY_NAME = {o.name: o for o in OPTIONS}
ALIASES = {alias: o.name for o in OPTIONS for alias in o.aliases}


def canonical(key: str) -> str:
    """The option name for ``key`` (an option name or one of its aliases); SettingsError if unknown."""
    if key in OPTION_BY_NAME:
        return key
    if key in ALIASES:
        return ALIASES[key]
    raise SettingsError(key, f"unknown setting; known: {', '.join(OPTION_BY_NAME)}")


def _check(option: Option, value):
    name = option.name
    if value is None and option.default is None:
        return None
    if option.kind is bool:
        if not isinstance(value, bool):
            raise SettingsError(name, f"must be true or false (got {value!r})")
        return value
    if option.kind in (float, int):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SettingsError(name, f"must be a number (got {value!r})")
        if not math.isfinite(value):
            raise SettingsError(name, f"must be finite (got {value!r})")
        if name in ("level", "input_level") and not 0 < value < 1:
            raise SettingsError(name, f"must lie strictly between 0 and 1 (got {value:g}; 0.95 means 95%)")
        if name in ("mh_add", "mh_sums_add") and value < 0:
            raise SettingsError(name, f"a continuity correction must be 0 or more (got {value:g})")
        if name == "prepost_r" and not -1 < value < 1:
            raise SettingsError(name, f"a correlation must lie strictly between -1 and 1 (got {value:g})")
        if option.kind is int:
            if value != int(value) or value < 1:
                raise SettingsError(name, f"must be a positive whole number (got {value!r})")
            return int(value)
        return float(value)
    if not isinstance(value, str):
        raise SettingsError(name, f"must be text (got {value!r})")
    if option.choices is not None and value not in option.choices:
        raise SettingsError(name, f"'{value}' is not one of {', '.join(option.choices)}")
    return value


@dataclass(frozen=True)
class Settings:
    """Every convention a fit depends on, validated on construction (frozen: derive with ``replace``).

    Field names are the API keywords, the TOML keys and (with ``-`` for ``_``) the CLI flags.
    """

    method: str = OPTION_BY_NAME["method"].default
    ci_method: str = OPTION_BY_NAME["ci_method"].default
    pi_method: str = OPTION_BY_NAME["pi_method"].default
    i2_method: str = OPTION_BY_NAME["i2_method"].default
    prediction_interval: bool = OPTION_BY_NAME["prediction_interval"].default
    level: float = OPTION_BY_NAME["level"].default
    input_level: float = OPTION_BY_NAME["input_level"].default
    smd_convention: str = OPTION_BY_NAME["smd_convention"].default
    vtype: str = OPTION_BY_NAME["vtype"].default
    pooled_sd: bool = OPTION_BY_NAME["pooled_sd"].default
    mean_method: str = OPTION_BY_NAME["mean_method"].default
    sd_method: str = OPTION_BY_NAME["sd_method"].default
    prepost_r: float | None = OPTION_BY_NAME["prepost_r"].default
    drop_missing: bool = OPTION_BY_NAME["drop_missing"].default
    mh_add: float = OPTION_BY_NAME["mh_add"].default
    mh_to: str = OPTION_BY_NAME["mh_to"].default
    mh_drop00: bool = OPTION_BY_NAME["mh_drop00"].default
    mh_sums_add: float = OPTION_BY_NAME["mh_sums_add"].default
    mh_sums_to: str = OPTION_BY_NAME["mh_sums_to"].default
    mh_sums_drop00: bool = OPTION_BY_NAME["mh_sums_drop00"].default
    cmh_correct: bool = OPTION_BY_NAME["cmh_correct"].default
    tau2_ci: bool = OPTION_BY_NAME["tau2_ci"].default
    fit_statistics: bool = OPTION_BY_NAME["fit_statistics"].default
    maxiter: int = OPTION_BY_NAME["maxiter"].default

    def __post_init__(self):
        for f in fields(self):
            object.__setattr__(self, f.name, _check(OPTION_BY_NAME[f.name], getattr(self, f.name)))
        if self.smd_convention == "revman5" and self.vtype != "LS":
            raise SettingsError("vtype", f"'{self.vtype}' applies to the metafor SMD convention; RevMan 5 "
                                "has its own variance (leave vtype at LS)")

    @classmethod
    def from_mapping(cls, mapping=None, base: "Settings | None" = None) -> "Settings":
        """Settings from a dict of option names or aliases, on top of ``base`` (default: the defaults).

        Keys that name no option raise :class:`SettingsError`; a key given twice (name and alias) too.
        """
        if not mapping:
            return base if base is not None else DEFAULTS
        values = {}
        for key, value in mapping.items():
            name = canonical(key)
            if name in values:
                raise SettingsError(key, f"given twice (as '{name}' and an alias)")
            values[name] = value
        return (base or cls()).replace(**values)

    def replace(self, **changes) -> "Settings":
        """A copy with ``changes`` (option names or aliases) applied and validated (cached: refits in a
        loop derive the same settings again and again)."""
        if not changes:
            return self
        try:
            return _replaced(self, tuple(sorted((canonical(k), v) for k, v in changes.items())))
        except TypeError:           # an unhashable value: validate it the slow way (and refuse it there)
            return _dc_replace(self, **{canonical(k): v for k, v in changes.items()})

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def test(self) -> str:
        """The test statistic's distribution: "t" with HKSJ, "z" with Wald."""
        return "t" if self.ci_method == "hksj" else "z"


@functools.lru_cache(maxsize=512)
def _replaced(settings: Settings, changes: tuple) -> Settings:
    return _dc_replace(settings, **dict(changes))


DEFAULTS = Settings()


def cli_flag(option: Option) -> str:
    return "--" + option.name.replace("_", "-")


# the options only a Mantel-Haenszel / Peto fit reads (``models.mantel_haenszel.fit_counts``)
COUNT_OPTIONS = ("mh_add", "mh_to", "mh_drop00", "mh_sums_add", "mh_sums_to", "mh_sums_drop00", "cmh_correct")


def unused_count_options(settings: Settings, measure=None) -> str | None:
    """A note naming the count options set away from their defaults that the fit of ``settings.method`` on
    ``measure`` does not read (all of them by inverse variance; ``cmh_correct`` but with method MH on
    the OR, the only fit with a CMH test), or None when every option set is used."""
    if settings.method in COUNT_METHODS:
        unused = [] if (settings.method, measure) == ("MH", "OR") else ["cmh_correct"]
        why = "the Cochran-Mantel-Haenszel test belongs to the Mantel-Haenszel odds ratio (method MH, measure OR)"
    else:
        unused = list(COUNT_OPTIONS)
        why = (f"these are options of the Mantel-Haenszel and Peto fits of 2x2 counts ({', '.join(COUNT_METHODS)}), "
               f"and method {settings.method} pools the study effects by inverse variance")
    changed = [name for name in unused if getattr(settings, name) != getattr(DEFAULTS, name)]
    if not changed:
        return None
    return f"{', '.join(f'{name}={getattr(settings, name)!r}' for name in changed)} changed nothing: {why}"


# --------------------------------------------------------------------------------------------------
# Convention presets: named bundles of settings that reproduce what other tools do by default. They live
# here (a leaf) so that the API (``pool(preset=...)``), the analysis layer and the CLI read one table;
# ``pfps_meta.analysis.presets`` re-exports them with the preset diff.


@dataclass(frozen=True)
class Preset:
    """A tool's default conventions. ``binary_method``: the method the tool uses instead of
    ``settings.method`` for 2x2 count data (None: the same method); ``binary_note``: what a binary
    analysis under this preset is told about it."""

    name: str
    description: str
    settings: Settings
    binary_method: str | None = None
    binary_note: str = ""

    def settings_for(self, binary: bool) -> Settings:
        """The preset's settings for data of counts (``binary``) or anything else."""
        if binary and self.binary_method is not None:
            return self.settings.replace(method=self.binary_method)
        return self.settings


PRESETS = {p.name: p for p in (
    Preset("metafor", "R metafor rma() defaults: REML, Wald z CI, exact Hedges' g with the large-sample "
           "variance, I2 from tau2, normal PI", Settings()),
    Preset("revman5", "RevMan 5: DerSimonian-Laird, Wald z CI, RevMan SMD, I2 from Q, no prediction interval",
           Settings(method="DL", i2_method="q", smd_convention="revman5", prediction_interval=False),
           binary_method="MH_DL",
           binary_note="revman5 preset on 2x2 counts: RevMan 5's default Mantel-Haenszel method in its random-"
           "effects form (method MH_DL: DerSimonian-Laird tau² from the Mantel-Haenszel Q, inverse-variance "
           "weights); give method='MH' for RevMan's fixed-effect Mantel-Haenszel, or method='DL' for its "
           "'Inverse Variance, Random Effects'"),
    Preset("revman_web_2025", "RevMan Web (2025 methods): REML, HKSJ CI, Q-profile tau2 CI, t(k-1) PI, "
           "I2 from tau2", Settings(ci_method="hksj", pi_method="t", smd_convention="revman5")),
    Preset("r_meta", "R meta (>= 6.0) defaults: REML, Wald z CI, exact Hedges' g with the unbiased variance "
           "(metafor vtype UB), I2 from Q, PI t(k-1)", Settings(pi_method="t", i2_method="q", vtype="UB")),
)}


def named_preset(name) -> Preset:
    """The preset called ``name`` (or ``name`` itself when it is a Preset); SettingsError listing the names."""
    if isinstance(name, Preset):
        return name
    if not isinstance(name, str) or name not in PRESETS:
        raise SettingsError("preset", f"unknown preset '{name}'; choose from {', '.join(PRESETS)}")
    return PRESETS[name]


#: the estimated in-process seconds from which a run goes to Dask: below them a LocalCluster ("local")
#: costs more to start, import the package in its workers and stop than it saves on two workers, and a
#: scheduler of one's own ("given": an address or a Client) more in connection and scheduling
#: (benchmarks/bench_dask.py on this 2-core machine: the crossover was 20-25 s of in-process work with tasks of
#: 8 blocks and Dask's default worker settings; 3.6 s since, on an idle machine (2.6 s of work: 0.83x, 4.0 s:
#: 1.06x, 7.5 s: 1.34x, 15.5 s: 1.56x); 10 s leaves room for a busy one)
DASK_MIN_SECONDS = {"local": 10.0, "given": 1.0}
