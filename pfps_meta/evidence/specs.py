"""Declarative analyses (``analyses/*.toml``): which trials and arms, which measure and model, which target.

One definition drives the CLI (``pfps-meta reproduce``, ``pfps-meta report``), the Python API and the
report. An analysis takes its studies either from a flat CSV (``data = "..."``, any layout that
:func:`pfps_meta.pool` accepts) or from the evidence base (``trials = [...]``: rows of
``data/outcomes.csv`` for arm-level numbers, else ``data/effects.csv`` for between-group effects).

Rules applied when building a table from the evidence base (written in ``data/README.md`` too):

- **Sign.** ``favourable = "lower"`` (pain) or ``"higher"`` (activity) states which direction favours the
  experimental arm in the pooled result. A row whose scale runs the other way (``higher_is_better``) has
  its effect sign reversed, so a negative pain MD and a positive activity SMD both favour the
  experimental arm.
- **Units.** For MD, ``target_range = [0, 10]`` rescales every arm's mean and SD linearly from its own
  ``scale_min..scale_max`` (a 0-100 mm VAS is divided by 10). A row without a scale range cannot be
  rescaled and is reported as missing.
- **Change and final scores** are not mixed in one SMD unless ``allow_mixed_change_and_final = true``
  (an SMD of change scores standardises by a different SD). MD may mix them (Cochrane Handbook 10.5.2).
- **Multi-arm trials.** Each trial entry names one experimental and one control arm. Within one
  analysis an arm may be used once; a shared arm (e.g. two experimental arms against one control) is
  refused unless ``split_shared_arms = true``, which divides the shared arm's n equally between its
  comparisons (Cochrane Handbook 23.3.4). Across analyses an arm may be reused freely.
- **Dependent effects and networks** (``model = "multilevel" | "multivariate" | "network"``, see
  :func:`run_model_analysis`; :func:`run_analysis` returns a :class:`ModelAnalysisResult`). A multilevel
  evidence analysis names ``inner = "timepoint" | "scale" | "arm"``: one row per trial x inner value,
  V within a trial from the arms (:func:`dependent_covariance`: exact for a shared arm, as
  ``vcalc.contrast_covariance``; ``rho`` / ``phi`` with ``rho_assumption`` across timepoints or scales),
  fitted by ``multilevel(levels=("trial", inner))`` or ``multivariate``, ``robust = "CR2"`` by trial. A
  data-file analysis names ``levels``, ``yi``, ``vi``, ``mods``, ``test``, ``robust``, ``robust_cluster`` and
  ``V = { rho, obs, cluster, time, phi }`` (metafor ``vcalc``). A network maps arm roles to treatments
  (``nodes``), with ``reference``, ``method`` and optional ``components``/``inactive`` (additive model);
  it fits only when the arms with n, mean and SD connect two or more treatments, else says why.
"""

from __future__ import annotations

import re
import tomllib
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from pfps_meta.effects import measures
from pfps_meta.conventions import ALIASES, OPTION_BY_NAME, Settings
from pfps_meta.errors import InputError, SettingsError
from pfps_meta.evidence.curated import (ENTRY_KEYS, EFFECT_REQUIRED, OUTCOME_REQUIRED, TRIALS_REQUIRED, Evidence, arm_rows,  # noqa: F401
                                        entry_positions, entry_rows, equal_mask, key_columns, load_published,
                                        matching_positions)  # (entry_rows re-exported)
from pfps_meta.evidence.extraction import check_sheet, load_extraction, with_extraction
from pfps_meta.inputs.load import is_missing, read_csv, read_text
from pfps_meta.models.network_inputs import connected_parts
from pfps_meta.models.univariate import MetaResult, pool_effects
from pfps_meta.inputs.validate import InputWarning, TranscriptionWarning, effect_table, sd_may_be_se, study_table

SETTING_KEYS = (*OPTION_BY_NAME, *ALIASES)      # every option name of conventions.OPTIONS, and aliases
ANALYSIS_KEYS = {"id", "label", "comparison", "outcome", "measure", "timepoint", "favourable", "target_range",
                 "published", "trials", "data", "allow_mixed_change_and_final", "split_shared_arms", "mcid",
                 "notes", "design", "impute_sd", "show_blups", "bayes", *SETTING_KEYS}
#: keys of an analysis's ``bayes = { ... }`` table (a Bayesian analysis beside the frequentist one)
BAYES_KEYS = {"tau_prior", "outcome", "comparison", "mu_prior", "rescale_uisd", "level"}
# keys of the dependent-effect and network models (``model = "multilevel" | "multivariate" | "network"``)
MODEL_KEYS = {"model", "inner", "levels", "yi", "vi", "mods", "test", "robust", "robust_cluster", "V", "rho",
              "rho_assumption", "phi", "struct", "nodes", "reference", "components", "inactive", "timepoints",
              "scales", "study", "treatment"}
ANALYSIS_KEYS |= MODEL_KEYS
MODELS = ("pairwise", "multilevel", "multivariate", "network")
INNER = ("timepoint", "scale", "arm")
# Missing-SD imputation (Cochrane Handbook 6.5.2.7), only when an analysis names a rule: the SD borrowed
# from the other trials of the same analysis (same scale for SMD; on the target range for MD).
IMPUTE_SD = {"borrow_largest": "the largest SD among the other trials' arms in this analysis",
             "borrow_average": "the average SD of the other trials' arms in this analysis"}


@dataclass
class TrialEntry:
    trial: str
    exp: str
    ctrl: str
    scale: str | None = None
    timepoint: str | None = None
    note: str = ""
    timepoints: list | None = None      # several rows per trial (model analyses with inner = "timepoint")
    scales: list | None = None          # ... or with inner = "scale"


@dataclass
class Analysis:
    """One analysis of a spec file, with its settings already merged with the file's defaults."""

    id: str
    review: str
    label: str
    measure: str | None
    settings: Settings
    source: Path
    comparison: str = ""
    outcome: str = ""
    timepoint: str = "post"
    favourable: str | None = None
    target_range: tuple | None = None
    published: str | None = None
    trials: list = field(default_factory=list)
    data: Path | None = None
    allow_mixed: bool = False
    split_shared: bool = False
    mcid: float | None = None
    notes: str = ""
    impute_sd: str | None = None
    show_blups: bool = False
    assumption: str = ""
    design: str = "randomised"      # GRADE's starting level: randomised -> High, observational -> Low
    model: str = "pairwise"         # "multilevel", "multivariate" or "network": see run_model_analysis
    options: dict = field(default_factory=dict)     # the checked model keys (MODEL_KEYS)
    bayes: dict | None = None       # the checked ``bayes = { ... }`` table (BAYES_KEYS), see bayes_result

    @property
    def key(self) -> str:
        return f"{self.review}/{self.id}"

    @property
    def uses_evidence(self) -> bool:
        """Whether the analysis takes arms from the evidence base (a trials list, or an evidence network)."""
        return self.data is None and (bool(self.trials) or self.model == "network")

    def arm_keys(self, outcomes: pd.DataFrame) -> list[dict]:
        """Every arm row this analysis expects from the evidence base: dicts with trial_id, arm, outcome,
        timepoint, scale (None when any scale will do) and favourable. Used by the extraction sheet
        (``extraction.template``, ``extraction.check_sheet``)."""
        return expected_arm_keys(self, outcomes)


@dataclass
class Spec:
    """A parsed ``analyses/*.toml`` file."""

    path: Path
    review: dict
    settings: Settings
    analyses: list
    data_dir: Path


def load_spec(path) -> Spec:
    """Parse and check one analysis definition file."""
    path = Path(path)
    name = str(path)
    raw = _read_toml(path, name)
    review = _checked_review(raw, name)
    settings, assumption = _file_settings(raw, name)
    data_dir = _inside_project(path, review.get("data_dir", "../data"), name, "[review] data_dir")
    analyses = []
    entries = _analysis_entries(raw, name)
    ids = set()
    for number, entry in enumerate(entries, start=1):
        analyses.append(_load_analysis(entry, number, ids, path, name, review, settings, assumption))
    return Spec(path=path, review=review, settings=settings, analyses=analyses, data_dir=data_dir)


def _read_toml(path: Path, name: str) -> dict:
    """The spec file parsed as TOML; a syntax error is an InputError naming the file."""
    try:
        return tomllib.loads(read_text(path, "an analysis definition"))
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"not valid TOML ({exc})", file=name) from None


def _checked_review(raw: dict, name: str) -> dict:
    """The ``[review]`` table, checked (with ``[settings]`` being a table too): an id, text fields, and
    a list of context comparison names."""
    for table in ("review", "settings"):
        if not isinstance(raw.get(table, {}), dict):
            raise InputError(f"[{table}] must be a table", file=name)
    review = raw.get("review", {})
    if "id" not in review:
        raise InputError("[review] needs an id", file=name)
    _check_id(review["id"], name, "[review] id")
    for key in ("title", "citation", "data_dir"):
        if key in review and not isinstance(review[key], str):
            raise InputError(f"[review] {key} must be text", file=name)
    if not all(isinstance(c, str) for c in review.get("context_comparisons", [])):
        raise InputError("[review] context_comparisons must be a list of comparison names", file=name)
    return review


def _file_settings(raw: dict, name: str) -> tuple:
    """The file's ``[settings]``: (checked Settings, the assumption text)."""
    file_settings = raw.get("settings", {})
    unknown = set(file_settings) - set(SETTING_KEYS) - {"assumption"}
    if unknown:
        raise InputError(f"[settings]: unknown key(s) {', '.join(sorted(unknown))}; known: "
                         f"{', '.join(OPTION_BY_NAME)}, assumption", file=name)
    settings = _settings({k: v for k, v in file_settings.items() if k in SETTING_KEYS}, None, name, "[settings]")
    return settings, file_settings.get("assumption", "")


def _analysis_entries(raw: dict, name: str) -> list:
    """The ``[[analyses]]`` array: non-empty, every entry a table."""
    entries = raw.get("analyses", [])
    if not entries:
        raise InputError("no [[analyses]] entries", file=name)
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise InputError("[[analyses]] must be an array of tables", file=name)
    return entries


def _load_analysis(entry: dict, number: int, ids: set, path: Path, name: str, review: dict,
                   settings: Settings, assumption: str) -> Analysis:
    """One ``[[analyses]]`` entry checked and turned into an :class:`Analysis` (its id added to ``ids``)."""
    where = f"[[analyses]] entry {number}"
    entry = _entry_with_id(entry, ids, name, where)
    merged = _settings({k: entry[k] for k in SETTING_KEYS if k in entry}, settings, name, where)
    model, evidence_network = _entry_model(entry, name, where)
    measure = entry.get("measure")
    trials = _trial_entries(entry, name, where)
    _check_entry_choices(entry, model, name, where, merged)
    options = _model_options(entry, model, name, where, evidence=("data" not in entry))
    favourable = entry.get("favourable")
    uses_arms = bool(trials) or evidence_network
    target = _checked_target(entry, measure, favourable, uses_arms, name, where)
    return Analysis(
        id=entry["id"], review=review["id"], label=entry.get("label", entry["id"]), measure=measure,
        settings=merged, source=path, comparison=entry.get("comparison", ""),
        outcome=entry.get("outcome", ""), timepoint=entry.get("timepoint", "post"), favourable=favourable,
        target_range=tuple(target) if target else None, published=entry.get("published"), trials=trials,
        data=_inside_project(path, entry["data"], name, f"{where}: data") if "data" in entry else None,
        allow_mixed=bool(entry.get("allow_mixed_change_and_final", False)),
        split_shared=bool(entry.get("split_shared_arms", False)), mcid=entry.get("mcid"),
        notes=entry.get("notes", ""), assumption=assumption, design=entry.get("design", "randomised"),
        impute_sd=entry.get("impute_sd"), show_blups=bool(entry.get("show_blups", False)),
        model=model, options=options,
        bayes=_bayes_options(entry, measure, model, name, where) if "bayes" in entry else None)


def _entry_with_id(entry: dict, ids: set, name: str, where: str) -> dict:
    """The entry without missing values, its key types and names checked, and its id new (added to ``ids``)."""
    entry = _without_missing(entry)
    if isinstance(entry.get("trials"), list):
        entry["trials"] = [_without_missing(t) if isinstance(t, dict) else t for t in entry["trials"]]
    _check_types(entry, name, where)
    unknown = set(entry) - ANALYSIS_KEYS
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}", file=name)
    if "id" not in entry:
        raise InputError(f"{where}: needs an id", file=name)
    _check_id(entry["id"], name, f"{where}: id")
    if entry["id"] in ids:
        raise InputError(f"{where}: id '{entry['id']}' used twice", file=name)
    ids.add(entry["id"])
    return entry


def _entry_model(entry: dict, name: str, where: str) -> tuple:
    """(model, whether it is a network read from the evidence base), with the entry's source checked:
    a non-empty trials list or a data file, exactly one of them (an evidence network needs neither)."""
    if "trials" in entry and not entry["trials"]:
        raise InputError(f"{where} ('{entry['id']}'): trials = [] lists no trial", file=name)
    model = entry.get("model", "pairwise")
    if model not in MODELS:
        raise InputError(f"{where} ('{entry['id']}'): model must be one of {', '.join(MODELS)} "
                         f"(got {model!r})", file=name)
    evidence_network = model == "network" and "data" not in entry and "trials" not in entry
    if ("trials" in entry) == ("data" in entry) and not evidence_network:
        raise InputError(f"{where} ('{entry['id']}'): give either trials = [...] or data = \"file.csv\"",
                         file=name)
    return model, evidence_network


def _trial_entries(entry: dict, name: str, where: str) -> list:
    """The entry's ``trials`` list as checked :class:`TrialEntry` objects (empty without a list)."""
    trials = []
    for t_number, t in enumerate(entry.get("trials", []), start=1):
        missing = [k for k in ("trial", "exp", "ctrl") if k not in t]
        if missing:
            raise InputError(f"{where} ('{entry['id']}'), trial {t_number}: missing {', '.join(missing)}",
                             file=name)
        bad = [k for k in ("trial", "exp", "ctrl", "scale", "timepoint", "note") if k in t and not isinstance(t[k], str)]
        bad += [k for k in ("timepoints", "scales") if k in t and not (
            isinstance(t[k], list) and t[k] and all(isinstance(v, str) for v in t[k]))]
        if bad:
            raise InputError(f"{where} ('{entry['id']}'), trial {t_number}: {', '.join(bad)} must be text "
                             "(timepoints, scales: a non-empty list of text)", file=name)
        extra = set(t) - {"trial", "exp", "ctrl", "scale", "timepoint", "note", "timepoints", "scales"}
        if extra:
            raise InputError(f"{where} ('{entry['id']}'), trial {t_number}: unknown key(s) "
                             f"{', '.join(sorted(extra))}", file=name)
        if ("timepoints" in t or "scales" in t) and entry.get("model", "pairwise") == "pairwise":
            raise InputError(f"{where} ('{entry['id']}'), trial {t_number}: timepoints/scales lists need a "
                             "model analysis (model = \"multilevel\" with inner = ...)", file=name)
        trials.append(TrialEntry(trial=t["trial"], exp=t["exp"], ctrl=t["ctrl"], scale=t.get("scale"),
                                 timepoint=t.get("timepoint"), note=t.get("note", ""),
                                 timepoints=t.get("timepoints"), scales=t.get("scales")))
    return trials


#: settings of pairwise pooling that a model analysis (multilevel, multivariate, network) does not apply: its
#: estimator, tests and intervals come from its own keys (method, test, robust; a network's ci_method is
#: applied), so one of these away from its default would change nothing: refused when the entry gives it,
#: noted in the result when it comes from the file's [settings] (meant for the file's pairwise analyses)
PAIRWISE_ONLY_SETTINGS = ("pi_method", "i2_method", "prediction_interval", "tau2_ci", "fit_statistics", "maxiter",
                          "mh_add", "mh_to", "mh_drop00", "mh_sums_add", "mh_sums_to", "mh_sums_drop00", "cmh_correct")


def _pairwise_only_changed(settings: Settings) -> list[str]:
    """The :data:`PAIRWISE_ONLY_SETTINGS` that ``settings`` sets away from their defaults."""
    return [key for key in PAIRWISE_ONLY_SETTINGS if getattr(settings, key) != OPTION_BY_NAME[key].default]


def _check_entry_choices(entry: dict, model: str, name: str, where: str, settings: Settings) -> None:
    """impute_sd and design take one of their named values; a network has no trials list; a multilevel or
    multivariate model has no HKSJ CI (its fit reads ``test``, so ci = "hksj" would change nothing), and no
    model analysis takes a :data:`PAIRWISE_ONLY_SETTINGS` setting away from its default."""
    if model in ("multilevel", "multivariate") and settings.ci_method == "hksj":
        raise InputError(f"{where} ('{entry['id']}'): ci = \"hksj\" (here or in [settings]) is not applied to a "
                         f"{model} model; give test = \"t\" for t and F tests (metafor rma.mv test=\"t\")",
                         file=name)
    changed = _pairwise_only_changed(settings) if model != "pairwise" else []
    given = [f"{key} = {value!r}" for key, value in entry.items() if ALIASES.get(key, key) in changed]
    if given:
        raise InputError(f"{where} ('{entry['id']}'): {', '.join(given)} is not applied to a {model} model, whose "
                         "estimator, tests and intervals come from its own keys (method, test, robust)", file=name)
    if entry.get("impute_sd") is not None and (not isinstance(entry["impute_sd"], str)
                                               or entry["impute_sd"] not in IMPUTE_SD):
        raise InputError(f"{where} ('{entry['id']}'): impute_sd must be one of {', '.join(IMPUTE_SD)}",
                         file=name)
    if entry.get("design", "randomised") not in ("randomised", "observational"):
        raise InputError(f"{where} ('{entry['id']}'): design must be \"randomised\" or \"observational\"",
                         file=name)
    if model == "network" and "trials" in entry:
        raise InputError(f"{where} ('{entry['id']}'): a network takes every arm of the evidence base whose role "
                         "is a node (or data = \"file.csv\"); it has no trials list", file=name)


def _checked_target(entry: dict, measure, favourable, uses_arms: bool, name: str, where: str):
    """The entry's target_range (or None), checked with what an evidence-base analysis needs: a
    favourable direction, an arm-level measure, and a target range for MD."""
    if uses_arms and favourable not in ("lower", "higher"):
        raise InputError(f"{where} ('{entry['id']}'): favourable must be \"lower\" or \"higher\"", file=name)
    if uses_arms and measures.get(measure).layout != "arm":
        raise InputError(f"{where} ('{entry['id']}'): measure must be one of "
                         f"{', '.join(measures.names('arm'))} for evidence-base analyses", file=name)
    target = entry.get("target_range")
    if measure == "MD" and uses_arms and (not isinstance(target, list) or len(target) != 2):
        raise InputError(f"{where} ('{entry['id']}'): an MD analysis needs target_range = [min, max]",
                         file=name)
    if target is not None and not (isinstance(target, list) and len(target) == 2
                                   and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in target)
                                   and target[0] < target[1]):
        raise InputError(f"{where} ('{entry['id']}'): target_range must be [min, max] with min < max "
                         f"(got {target!r})", file=name)
    return target


def _bayes_options(entry: dict, measure, model: str, name: str, where: str) -> dict:
    """The checked ``bayes = { tau_prior = ..., outcome = ..., comparison = ..., mu_prior = [mean, sd],
    rescale_uisd = true, level = 0.95 }`` table of a pairwise analysis; a bad value is one InputError naming
    the file, the entry and the key."""
    from pfps_meta.models.priors import check_measure, parse_prior

    here = f"{where} ('{entry.get('id')}'): bayes"
    table = entry["bayes"]
    if not isinstance(table, dict):
        raise InputError(f"{here} must be a table, e.g. bayes = {{ tau_prior = \"half-normal:0.5\" }}", file=name)
    if model != "pairwise":
        raise InputError(f"{here}: a Bayesian analysis is offered for pairwise analyses only", file=name)
    unknown = set(table) - BAYES_KEYS
    if unknown:
        raise InputError(f"{here}: unknown key(s) {', '.join(sorted(unknown))} (allowed: "
                         f"{', '.join(sorted(BAYES_KEYS))})", file=name)
    for key in ("tau_prior", "outcome", "comparison"):
        if key in table and not isinstance(table[key], str):
            raise InputError(f"{here}: {key} must be text (got {table[key]!r})", file=name)
    mu_prior = table.get("mu_prior")
    if mu_prior is not None and not (isinstance(mu_prior, list) and len(mu_prior) == 2 and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in mu_prior)):
        raise InputError(f"{here}: mu_prior must be [mean, sd] of a normal prior (got {mu_prior!r})", file=name)
    if "rescale_uisd" in table and not isinstance(table["rescale_uisd"], bool):
        raise InputError(f"{here}: rescale_uisd must be true or false", file=name)
    level = table.get("level", 0.95)
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise InputError(f"{here}: level must be a number between 0 and 1 (got {level!r})", file=name)
    try:
        prior = parse_prior(table.get("tau_prior", "half-normal:0.5"), table.get("outcome"), table.get("comparison"))
        if table.get("rescale_uisd"):
            if measure != "MD" or prior.measure is None:
                raise InputError("rescale_uisd rescales a prior derived for the SMD or log OR for an MD analysis")
        else:
            check_measure(prior, measure)
    except InputError as exc:
        raise InputError(f"{here}: {exc.reason}", file=name) from None
    return {"prior": prior, "mu_prior": tuple(mu_prior) if mu_prior else None,
            "rescale_uisd": bool(table.get("rescale_uisd", False)), "level": float(level)}


def bayes_result(run: "AnalysisResult"):
    """The Bayesian analysis (:func:`pfps_meta.models.bayes.bayes`) of a pooled analysis with a ``bayes``
    table, on the same yi and vi; None without the table or without studies."""
    options = run.analysis.bayes
    if not options or run.result is None:
        return None
    from pfps_meta.models.bayes import bayes
    from pfps_meta.models.priors import for_mean_difference

    studies = run.result.studies
    prior = options["prior"]
    if options["rescale_uisd"]:
        if not {"n_exp", "n_ctrl"} <= set(studies.columns):
            raise InputError(f"analysis '{run.analysis.key}': bayes.rescale_uisd needs the arm sizes n_exp and "
                             "n_ctrl", file=str(run.analysis.source))
        n = pd.to_numeric(studies["n_exp"]) + pd.to_numeric(studies["n_ctrl"])
        prior = for_mean_difference(prior, n, studies["vi"])
    return bayes(yi=studies["yi"].to_numpy(float), vi=studies["vi"].to_numpy(float),
                 labels=[str(x) for x in studies["study"]], measure=run.analysis.measure, tau_prior=prior,
                 mu_prior=options["mu_prior"], level=options["level"])


def _without_missing(table: dict) -> dict:
    """A spec table without the optional keys typed as "not given" (NA, N/A, n.r., "-", "": the tokens of
    ``load.MISSING_TOKENS``), so NA means missing in specs as in every CSV; ids stay (they are needed)."""
    return {k: v for k, v in table.items() if k in ("id", "trial", "exp", "ctrl") or not (isinstance(v, str)
                                                                                          and is_missing(v))}


SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
TEXT_KEYS = ("id", "label", "comparison", "outcome", "measure", "timepoint", "favourable", "published", "data",
             "notes", "design")


def _project_root(spec_path: Path) -> Path:
    """The project a spec belongs to: the nearest folder above it with a pyproject.toml, a .git or a data
    folder, else the folder above the spec's own."""
    folder = spec_path.resolve().parent
    for candidate in (folder, *folder.parents):
        if any((candidate / marker).exists() for marker in ("pyproject.toml", ".git", "data")):
            return candidate
    return folder.parent


def _inside_project(spec_path: Path, relative: str, name: str, what: str) -> Path:
    """A path from a spec. A relative path must stay inside the spec's project (no '../..' walk out of
    it); an absolute path is the user's explicit choice and is used as given."""
    target = (spec_path.parent / relative).resolve()
    if not Path(relative).is_absolute():
        root = _project_root(spec_path)
        if not target.is_relative_to(root):
            raise InputError(f"{what} = '{relative}' leads outside the project ({root}); give an absolute path "
                             "if that is really meant", file=name)
    return target


def _check_id(value, name, what):
    """Ids become parts of file names (figures): letters, digits, '_', '.', '-' only, no path."""
    if not isinstance(value, str) or not SAFE_ID.fullmatch(value) or ".." in value:
        raise InputError(f"{what} must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit "
                         f"(got {value!r})", file=name)


def _check_types(entry, name, where):
    for key in TEXT_KEYS:
        if key in entry and not isinstance(entry[key], str):
            raise InputError(f"{where}: {key} must be text (got {entry[key]!r})", file=name)
    if "trials" in entry and (not isinstance(entry["trials"], list)
                              or not all(isinstance(t, dict) for t in entry["trials"])):
        raise InputError(f"{where}: trials must be a list of {{ trial = ..., exp = ..., ctrl = ... }}", file=name)
    if "mcid" in entry and (isinstance(entry["mcid"], bool) or not isinstance(entry["mcid"], (int, float))):
        raise InputError(f"{where}: mcid must be a number", file=name)
    for key in ("allow_mixed_change_and_final", "split_shared_arms", "show_blups"):
        if key in entry and not isinstance(entry[key], bool):
            raise InputError(f"{where}: {key} must be true or false", file=name)


def _settings(values, base, name, where) -> Settings:
    """Settings from a spec's keys on top of ``base``; a bad value names the file and the key."""
    try:
        return Settings.from_mapping(values, base=base)
    except SettingsError as exc:
        raise InputError(f"{where}: {exc.reason}", file=name) from None


# ------------------------------------------------------------------------------------------------
# building a study table from the evidence base


@dataclass
class StudyTable:
    """The studies of one analysis, ready to pool, and what could not be used."""

    table: pd.DataFrame          # study, yi, vi (+ arm columns where arm-level)
    missing: list                # [{trial, reason}]
    expected: list               # trial ids the analysis names
    notes: list


def _arm_row(outcomes, analysis, entry, arm, keys=None):
    """``(row, positions)``: the one complete row (n, mean and SD) of :func:`entry_rows` as a Series, or
    None, and the positions (``iloc``) of all its rows; two complete rows are refused. ``keys``: the
    :func:`~pfps_meta.evidence.curated.key_columns` of ``outcomes`` plus ``n``, ``mean`` and ``sd``."""
    keys = key_columns(outcomes, (*ENTRY_KEYS, "n", "mean", "sd")) if keys is None else keys
    positions = entry_positions(outcomes, analysis, entry, arm, keys)
    complete = positions[np.logical_and.reduce([~pd.isna(np.asarray(keys[c])[positions]) for c in ("n", "mean", "sd")])]
    if len(complete) > 1:
        raise InputError(f"{entry.trial} arm {arm}: several complete {analysis.outcome} rows at "
                         f"{entry.timepoint or analysis.timepoint}; name the scale in the analysis",
                         file=outcomes.attrs.get("source"))
    return (outcomes.iloc[complete[0]] if len(complete) else None), positions


def _impute_missing_sds(analysis: Analysis, outcomes: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``outcomes`` where this analysis's arms with n and mean but no SD borrow one (status
    ``imputed``), by the rule the analysis names (``impute_sd``; Cochrane Handbook 6.5.2.7)."""
    donors, takers = [], []
    for entry in analysis.trials:
        for arm in (entry.exp, entry.ctrl):
            for index, row in entry_rows(outcomes, analysis, entry, arm).iterrows():
                if np.isnan(row["n"]) or np.isnan(row["mean"]):
                    continue
                width = row["scale_max"] - row["scale_min"]
                (takers if np.isnan(row["sd"]) else donors).append((index, entry.trial, row["scale"], width, row["sd"]))
    out = outcomes.copy()
    for index, trial, scale, width, _ in takers:
        if analysis.measure == "MD":        # compare SDs on the analysis's target range
            target = analysis.target_range[1] - analysis.target_range[0]
            pool = [sd * target / w for _, t, _, w, sd in donors if t != trial and np.isfinite(w)]
            factor = width / target
        else:                               # an SMD may only borrow from the same scale
            pool = [sd for _, t, sc, _, sd in donors if t != trial and sc == scale]
            factor = 1.0
        if not pool or not np.isfinite(factor):
            continue
        borrowed = (max(pool) if analysis.impute_sd == "borrow_largest" else float(np.mean(pool))) * factor
        out.loc[index, "sd"] = borrowed
        if "sd_as_printed" in out.columns:      # used as if printed: validation takes it as the arm's SD
            out.loc[index, "sd_as_printed"] = borrowed
        out.loc[index, "status"] = "imputed"
        out.loc[index, "derivation"] = (f"sd imputed ({analysis.impute_sd}): {IMPUTE_SD[analysis.impute_sd]} "
                                        f"({len(pool)} arms; Cochrane Handbook 6.5.2.7)")
    return out


def build_from_evidence(analysis: Analysis, evidence: Evidence) -> StudyTable:
    """Assemble yi, vi for every trial of an evidence-base analysis (rules in the module docstring)."""
    outcomes, effects = evidence.outcomes, evidence.effects
    if analysis.impute_sd:
        outcomes = _impute_missing_sds(analysis, outcomes)
    usage = {}
    for entry in analysis.trials:
        for arm in (entry.exp, entry.ctrl):
            usage[(entry.trial, arm)] = usage.get((entry.trial, arm), 0) + 1
    shared = {key: count for key, count in usage.items() if count > 1}
    if shared and not analysis.split_shared:
        names = ", ".join(f"{t} arm {a}" for (t, a) in shared)
        raise InputError(f"analysis '{analysis.key}': {names} used in more than one comparison; a shared arm "
                         "would be counted twice (set split_shared_arms = true to split its n, Cochrane Handbook "
                         "23.3.4; or use its exact covariance: model = \"multilevel\", inner = \"arm\")",
                         file=str(analysis.source))
    records, missing, notes = [], [], []
    lower_is_favourable = analysis.favourable == "lower"
    keys = key_columns(outcomes, (*ENTRY_KEYS, "n", "mean", "sd"))
    effect_keys = key_columns(effects, ("trial_id", "exp_arm", "ctrl_arm", "outcome", "timepoint", "measure", "scale"))
    selected = [(entry, *_arm_row(outcomes, analysis, entry, entry.exp, keys),
                 *_arm_row(outcomes, analysis, entry, entry.ctrl, keys)) for entry in analysis.trials]
    converted = _convert_arms(analysis, outcomes, selected)
    for entry, exp, exp_rows, ctrl, ctrl_rows in selected:
        timepoint = entry.timepoint or analysis.timepoint
        if exp is not None and ctrl is not None:
            exp, ctrl = converted[(entry.trial, entry.exp, entry.ctrl)]
        record = None
        if exp is not None and ctrl is not None:
            record = _arm_level_record(analysis, entry, exp, ctrl, usage, lower_is_favourable, missing)
        else:
            wanted = {"trial_id": entry.trial, "exp_arm": entry.exp, "ctrl_arm": entry.ctrl,
                      "outcome": analysis.outcome, "timepoint": timepoint, "measure": analysis.measure,
                      **({} if entry.scale is None else {"scale": entry.scale})}
            eff = effects.iloc[matching_positions(effect_keys, wanted)]
            if len(eff):
                row = eff.iloc[0]
                flip = bool(row["higher_is_better"]) == lower_is_favourable
                yi = -row["yi"] if flip else row["yi"]
                record = {"study": entry.trial, "yi": yi, "vi": row["sei"] ** 2, "value_type": row["value_type"],
                          "input": f"{row['status']} between-group effect ({row['reported']})",
                          "n_exp": _num(row.get("n_exp")), "n_ctrl": _num(row.get("n_ctrl"))}
                if analysis.measure == "MD" and analysis.target_range is not None:
                    notes.append(f"{entry.trial}: between-group MD used as reported on {row['scale']}; "
                                 "check it is on the target range")
            else:
                have = [r for r, rows in (("experimental", exp_rows), ("control", ctrl_rows)) if len(rows)]
                reason = ("no row in data/outcomes.csv or data/effects.csv" if not have else
                          "post-intervention n, mean and SD not recovered for both arms")
                missing.append({"trial": entry.trial, "reason": reason})
        if record is not None:
            if record.get("status") == "imputed":
                notes.append(f"{entry.trial} (IMPUTED SD): {record['conversion']}; the report shows the analysis "
                             "with and without imputed trials.")
            if record.get("status") == "inferred":
                rows = (exp, ctrl)
                n_type = "" if is_missing(exp.get("n_type")) else f" ({exp.get('n_type')})"
                notes.append(f"{entry.trial} (inferred): " + " ".join(sorted({str(r['notes']) for r in rows}))
                             + f" n used: {exp['n']:g}/{ctrl['n']:g}{n_type}.")
            records.append(record)
    table = pd.DataFrame(records, columns=["study", "yi", "vi", "value_type", "input", "status", "conversion",
                                           "n_exp", "mean_exp",
                                           "sd_exp", "n_ctrl", "mean_ctrl", "sd_ctrl"])
    if analysis.measure == "SMD" and table["value_type"].nunique() > 1 and not analysis.allow_mixed:
        raise InputError(f"analysis '{analysis.key}': mixes change and final scores in one SMD "
                         "(set allow_mixed_change_and_final = true to allow it)", file=str(analysis.source))
    arms_sd = np.concatenate([table["sd_exp"].to_numpy(float), table["sd_ctrl"].to_numpy(float)])
    arms_n = np.concatenate([table["n_exp"].to_numpy(float), table["n_ctrl"].to_numpy(float)])
    for flag_index in np.flatnonzero(sd_may_be_se(arms_sd, arms_n)):
        study = table["study"].iloc[flag_index % len(table)]
        warnings.warn(f"analysis '{analysis.key}', {study}: an SD looks like a standard error "
                      "(far smaller than the other arms', close to them once multiplied by sqrt(n))",
                      InputWarning, stacklevel=2)
    table.attrs["source"] = str(analysis.source)
    return StudyTable(table=table, missing=missing, expected=[t.trial for t in analysis.trials], notes=notes)


def _convert_arms(analysis, outcomes, selected) -> dict:
    """The arms of every trial with both arms' rows, checked and converted by the one entrance
    (``validate.study_table``, one-row-per-arm layout) with the analysis's settings: a mean and SD derived
    from what the paper printed follows ``mean_method``, ``sd_method`` and ``input_level``. Returns
    ``{(trial, exp, ctrl): (exp_row, ctrl_row)}`` with ``n``, ``mean``, ``sd`` and ``derivation`` as used.
    Errors name the outcomes file or extraction sheet and its line; warnings about the typed values
    were given when the table was loaded."""
    pairs = [(entry, exp, ctrl) for entry, exp, _, ctrl, _ in selected if exp is not None and ctrl is not None]
    return {(entry.trial, entry.exp, entry.ctrl): rows
            for (entry, _, _), rows in zip(pairs, _convert_pairs(analysis, outcomes, pairs))}


def _convert_pairs(analysis, outcomes, pairs) -> list:
    """:func:`_convert_arms` for a list of ``(entry, exp_row, ctrl_row)``; returns ``(exp_row, ctrl_row)``
    as used, in the same order (a trial may give several pairs: timepoints, scales, shared arms)."""
    if not pairs:
        return []
    counts = {}
    for entry, _, _ in pairs:
        counts[entry.trial] = counts.get(entry.trial, 0) + 1
    labels, seen = [], set()
    for entry, exp, ctrl in pairs:
        label = entry.trial if counts[entry.trial] == 1 else f"{entry.trial} ({entry.exp} vs {entry.ctrl})"
        if label in seen:
            label = f"{label} [{exp.get('timepoint')}, {exp.get('scale')}]"
        seen.add(label)
        labels += [label, label]
    # every pair's two rows in one table (one frame, not one per pair), each pair under its label
    table = arm_rows(pd.DataFrame([row for _, exp, ctrl in pairs for row in (exp, ctrl)]),
                     source=outcomes.attrs.get("source"))
    table["study"] = labels
    table.attrs["source"] = outcomes.attrs.get("source")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TranscriptionWarning)
        checked = study_table(table, analysis.measure, settings=analysis.settings)
    out = []
    for position, (entry, exp, ctrl) in enumerate(pairs):
        rows = []
        for offset, row in enumerate((exp, ctrl)):
            used = checked.iloc[2 * position + offset]
            row = row.copy()
            row["mean"], row["sd"] = float(used["mean"]), float(used["sd"])
            if used["conversion"]:
                row["derivation"] = used["conversion"]
            elif row.get("status") != "imputed":
                row["derivation"] = ""
            rows.append(row)
        out.append(tuple(rows))
    return out


def _num(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return np.nan


def _arm_level_record(analysis, entry, exp, ctrl, usage, lower_is_favourable, missing):
    arms = []
    for row, arm in ((exp, entry.exp), (ctrl, entry.ctrl)):
        n, mean, sd = row["n"] / usage[(entry.trial, arm)], row["mean"], row["sd"]
        if analysis.measure == "MD":
            lo, hi = row["scale_min"], row["scale_max"]
            if np.isnan(lo) or np.isnan(hi):
                missing.append({"trial": entry.trial, "reason": f"scale range of {row['scale']} unknown; "
                                "cannot convert to the target range"})
                return None
            factor = (analysis.target_range[1] - analysis.target_range[0]) / (hi - lo)
            offset = analysis.target_range[0] - lo * factor if row["value_type"] == "final" else 0.0
            mean, sd = mean * factor + offset, sd * factor
        arms.append((n, mean, sd, bool(row["higher_is_better"]), row["value_type"]))
    (n1, m1, s1, better1, type1), (n2, m2, s2, better2, type2) = arms
    if better1 != better2 or type1 != type2:
        missing.append({"trial": entry.trial, "reason": "the two arms' rows differ in direction or value type"})
        return None
    yi, vi = measures.get(analysis.measure).compute(n1, m1, s1, n2, m2, s2, analysis.settings)
    flip = better1 == lower_is_favourable
    statuses = {exp["status"], ctrl["status"]}
    status = next((s for s in ("imputed", "inferred", "derived") if s in statuses), "verified")
    conversion = "; ".join(f"{side}: {row['derivation']}" for side, row in (("exp", exp), ("ctrl", ctrl))
                           if row.get("derivation"))
    return {"study": entry.trial, "yi": float(-yi if flip else yi), "vi": float(vi), "value_type": type1,
            "input": "arm-level", "n_exp": n1, "mean_exp": m1, "sd_exp": s1, "n_ctrl": n2, "mean_ctrl": m2,
            "sd_ctrl": s2, "status": status, "conversion": conversion}


# ------------------------------------------------------------------------------------------------


@dataclass
class AnalysisResult:
    """An analysis with its pooled result (None when no study has data) and what is missing."""

    analysis: Analysis
    result: MetaResult | None
    studies: StudyTable
    published: dict | None

    @property
    def k_available(self) -> int:
        return 0 if self.result is None else int(self.result.stats["k"])

    @property
    def k_expected(self) -> int:
        return len(self.studies.expected) if self.studies.expected else self.k_available

    @property
    def participants(self):
        if self.result is None:
            return None
        s = self.result.studies
        if {"n_exp", "n_ctrl"} <= set(s.columns):      # (numpy arrays: no Series per step)
            total = (pd.to_numeric(s["n_exp"].to_numpy(), errors="coerce").astype(float)
                     + pd.to_numeric(s["n_ctrl"].to_numpy(), errors="coerce").astype(float))
            return None if np.isnan(total).any() else int(round(total.sum()))
        return None


def _require_evidence(evidence, analysis) -> None:
    """An analysis of the curated evidence (``trials = [...]``) needs the evidence tables: one line if absent."""
    if evidence is None:
        raise InputError(f"evidence: analysis '{analysis.key}' draws on the evidence base (trials = [...]); pass the "
                         "Evidence that load_all() returns with its spec")


def run_analysis(analysis: Analysis, evidence: Evidence | None = None,
                 settings: Settings | dict | None = None) -> AnalysisResult:
    """Build the study table of ``analysis`` and pool it with its settings, or with ``settings`` (a
    :class:`Settings`, or a dict of options applied on top of the analysis's own)."""
    if isinstance(settings, dict):
        settings = _settings(settings, analysis.settings, str(analysis.source), f"analysis '{analysis.key}'")
    opts = settings if settings is not None else analysis.settings
    if settings is not None and settings != analysis.settings:
        analysis = replace(analysis, settings=settings)
    if analysis.model != "pairwise":
        return run_model_analysis(analysis, evidence)
    published = evidence.published_row(analysis.published) if (evidence is not None and analysis.published) else None
    if analysis.data is not None:
        frame = read_csv(analysis.data)
        table = effect_table(frame, analysis.measure, settings=opts)
        studies = StudyTable(table=table, missing=[], expected=list(table["study"]), notes=[])
    else:
        _require_evidence(evidence, analysis)
        studies = build_from_evidence(analysis, evidence)
    result = None
    if len(studies.table):
        result = pool_effects(studies.table, measure=analysis.measure, settings=opts, notes=studies.notes)
    return AnalysisResult(analysis=analysis, result=result, studies=studies, published=published)


def arm_size_scenarios(analysis: Analysis, evidence: Evidence, base: AnalysisResult | None = None) -> list[dict]:
    """The analysis re-run under every plausible arm size of the trials whose n is inferred.

    Rows of ``outcomes.csv`` with status ``inferred`` may list other plausible arm sizes in
    ``n_alternatives`` (e.g. completers, randomised). For each label that both arms of such a trial
    carry, the analysis is pooled again with those sizes. Returns one dict per scenario:
    ``{"scenario", "trial", "n_exp", "n_ctrl", "result"}``, the first being the sizes used.
    ``base``: ``run_analysis(analysis, evidence)`` when the caller has it already (not run again).
    """
    base = run_analysis(analysis, evidence) if base is None else base
    if base.result is None or "status" not in base.result.studies.columns:
        return []
    inferred = base.result.studies.loc[base.result.studies["status"] == "inferred", "study"].tolist()
    scenarios = []
    for trial in inferred:
        entry = next(t for t in analysis.trials if t.trial == trial)
        o = evidence.outcomes
        arms = {}
        for arm in (entry.exp, entry.ctrl):
            rows = entry_rows(o, analysis, entry, arm)
            arms[arm] = rows[rows["status"] == "inferred"]
        first = base.result.studies.set_index("study").loc[trial]
        scenarios.append({"scenario": "as used", "trial": trial, "n_exp": first["n_exp"], "n_ctrl": first["n_ctrl"],
                          "result": base.result})
        labels = [label for label in arms[entry.exp].iloc[0]["n_alternatives"]
                  if label in arms[entry.ctrl].iloc[0]["n_alternatives"]]
        for label in labels:
            outcomes = o.copy()
            for arm, rows in arms.items():
                outcomes.loc[rows.index, "n"] = rows.iloc[0]["n_alternatives"][label]
            run = run_analysis(analysis, replace(evidence, outcomes=outcomes))
            studies = run.result.studies.set_index("study")
            scenarios.append({"scenario": label, "trial": trial, "n_exp": studies.loc[trial, "n_exp"],
                              "n_ctrl": studies.loc[trial, "n_ctrl"], "result": run.result})
    return scenarios


def default_spec_paths(root=None, include_models: bool = False) -> list[Path]:
    """The review analyses (``analyses/*.toml``) first, then the worked examples
    (``analyses/examples/*.toml``), below the project root (or ``root``).

    Spec files with a ``model = "multilevel" | "multivariate" | "network"`` analysis give a
    :class:`ModelAnalysisResult` from :func:`run_analysis`, not a pooled MetaResult; they are listed only
    with ``include_models=True`` (for a caller that shows them), so the reproduce table and the pairwise
    report stay as they are."""
    base = Path(root) if root else Path.cwd()
    paths = sorted((base / "analyses").glob("*.toml")) + sorted((base / "analyses" / "examples").glob("*.toml"))
    return paths if include_models else [p for p in paths if not has_model_analyses(p)]


def has_model_analyses(path) -> bool:
    """Whether a spec file has an analysis with a model other than the pairwise one (an unreadable file
    counts as pairwise here; loading it reports what is wrong)."""
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    entries = raw.get("analyses", [])
    return isinstance(entries, list) and any(isinstance(e, dict) and e.get("model", "pairwise") != "pairwise"
                                             for e in entries)


def load_all(paths, extraction=None) -> list[tuple[Spec, Evidence | None]]:
    """Load spec files and, once per data directory, the evidence base they use; with ``extraction`` (a
    filled sheet from ``pfps-meta template``), its rows replace the curated rows they describe. Every
    filled row of the sheet must describe an arm some loaded analysis expects (else an error naming the
    sheet's line)."""
    sheet = load_extraction(extraction) if extraction is not None else None
    specs = [load_spec(path) for path in paths]
    if sheet is not None:
        check_sheet(sheet, specs)
    cache = {}
    out = []
    for spec in specs:
        needs_evidence = any(a.data is None for a in spec.analyses) or any(a.published for a in spec.analyses)
        evidence = None
        if needs_evidence:
            if spec.data_dir not in cache:
                cache[spec.data_dir] = _evidence_for(spec)
                if sheet is not None:
                    cache[spec.data_dir] = with_extraction(cache[spec.data_dir], sheet)
            evidence = cache[spec.data_dir]
        if evidence is not None:
            for analysis in spec.analyses:
                if analysis.published and evidence.published_row(analysis.published) is None:
                    raise InputError(f"analysis '{analysis.id}': published = '{analysis.published}' names no row of "
                                     f"{evidence.data_dir / 'published.csv'}", file=str(spec.path))
        out.append((spec, evidence))
    return out


def _evidence_for(spec: Spec) -> Evidence:
    """The evidence base of a spec's data folder. A folder with only a ``published.csv`` (as
    ``import-revman`` writes: every analysis reads its own data file) gives that table with empty trial,
    outcome and effect tables; any other folder is loaded and checked whole (:meth:`Evidence.load`)."""
    folder = Path(spec.data_dir)
    own_data = all(a.data is not None for a in spec.analyses)
    if own_data and (folder / "published.csv").is_file() and not (folder / "trials.csv").exists():
        return Evidence(trials=pd.DataFrame(columns=list(TRIALS_REQUIRED)),
                        outcomes=pd.DataFrame(columns=list(OUTCOME_REQUIRED)),
                        effects=pd.DataFrame(columns=list(EFFECT_REQUIRED)),
                        published=load_published(folder / "published.csv"), data_dir=folder)
    return Evidence.load(folder)


# ------------------------------------------------------------------------------------------------
# dependent effects and networks: the model keys of a spec


class _ModelKeys:
    """Reads the model keys of one [[analyses]] entry; each bad value is one InputError naming the spec
    file, the entry and its id, and the key."""

    def __init__(self, entry: dict, here: str, name: str):
        self.entry, self.here, self.name = entry, here, name

    def fail(self, key, why):
        """Raise the InputError for a bad ``key``."""
        raise InputError(f"{self.here}: {key} {why}", file=self.name)

    def text(self, key, default=None, choices=None):
        """A text value (or ``default``), one of ``choices`` when they are given."""
        value = self.entry.get(key, default)
        if value is not None and not isinstance(value, str):
            self.fail(key, f"must be text (got {value!r})")
        if value is not None and choices and value not in choices:
            self.fail(key, f"must be one of {', '.join(choices)} (got {value!r})")
        return value

    def texts(self, key):
        """A non-empty list of text (a single text is a list of one), or None when absent."""
        value = self.entry.get(key)
        if value is None:
            return None
        if isinstance(value, str):
            value = [value]
        if not (isinstance(value, list) and value and all(isinstance(v, str) and v for v in value)):
            self.fail(key, f"must be a non-empty list of text (got {value!r})")
        return list(value)

    def number(self, key, low, high, where_text):
        """A number in [low, high] as a float, or None when absent."""
        value = self.entry.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            self.fail(key, f"must be a number in [{low:g}, {high:g}] ({where_text}; got {value!r})")
        return float(value)


def _model_options(entry: dict, model: str, name: str, where: str, evidence: bool) -> dict:
    """The model keys of one [[analyses]] entry, checked; each bad value is one InputError naming the
    spec file, the entry and its id, and the key."""
    here = f"{where} ('{entry.get('id')}')"
    given = {k: entry[k] for k in MODEL_KEYS if k in entry and k != "model"}
    if model == "pairwise":
        if given:
            raise InputError(f"{here}: {', '.join(sorted(given))} need a model (model = \"multilevel\", "
                             "\"multivariate\" or \"network\")", file=name)
        return {}
    keys = _ModelKeys(entry, here, name)
    _check_model_key_names(given, model, keys)
    out = {"method": entry.get("method", "REML")}
    if model == "network":
        return _network_options(entry, keys, out, evidence)
    _regression_options(model, keys, out)
    if evidence:
        return _evidence_model_options(entry, keys, out)
    return _data_file_model_options(entry, model, keys, out)


def _check_model_key_names(given: dict, model: str, keys: _ModelKeys) -> None:
    """Every model key given belongs to ``model``."""
    allowed = {"multilevel": {"inner", "levels", "yi", "vi", "mods", "test", "robust", "robust_cluster", "V", "rho",
                              "rho_assumption", "phi", "timepoints", "scales"},
               "network": {"nodes", "reference", "components", "inactive", "study", "treatment", "scales"}}
    allowed["multivariate"] = allowed["multilevel"] | {"struct"}
    extra = set(given) - allowed[model]
    if extra:
        keys.fail(", ".join(sorted(extra)), f"is not a key of model = \"{model}\" (its keys: "
                                            f"{', '.join(sorted(allowed[model]))})")


def _network_options(entry: dict, keys: _ModelKeys, out: dict, evidence: bool) -> dict:
    """The network keys: method, nodes (arm role -> treatment), reference, components, inactive, and the
    study / treatment / scales columns."""
    fail = keys.fail
    if out["method"] not in ("REML", "ML", "DL", "FE"):
        fail("method", f"must be REML, ML, DL or FE for a network (got {out['method']!r})")
    nodes = entry.get("nodes")
    if nodes is not None and not (isinstance(nodes, dict) and nodes
                                  and all(isinstance(v, str) and v for v in nodes.values())):
        fail("nodes", "must map arm roles to treatment names, e.g. { hip_knee = \"hip + knee\" }")
    if evidence and nodes is None:
        fail("nodes", "is needed: which arm roles of outcomes.csv are which network treatment")
    reference = keys.text("reference")
    if reference is None:
        fail("reference", "is needed (the treatment every effect is compared with)")
    if nodes is not None and reference not in set(nodes.values()):
        fail("reference", f"'{reference}' is not among the nodes ({', '.join(sorted(set(nodes.values())))})")
    components = _network_components(entry.get("components"), nodes, fail)
    inactive = keys.text("inactive")
    if inactive is not None and nodes is not None:
        inactive = nodes.get(inactive, inactive)
        if inactive not in set(nodes.values()):
            fail("inactive", f"'{inactive}' is not among the nodes")
    out.update(nodes=dict(nodes) if nodes else None, reference=reference, components=components,
               inactive=inactive, study=keys.text("study", "study"), treatment=keys.text("treatment", "treatment"),
               scales=keys.texts("scales"))
    return out


def _network_components(components, nodes, fail):
    """The additive model's components (treatment -> list of components), node roles mapped to treatments."""
    if components is not None:
        if not (isinstance(components, dict) and all(
                isinstance(v, list) and v and all(isinstance(c, str) for c in v) for v in components.values())):
            fail("components", "must map treatments to lists of components, e.g. "
                               "{ \"hip + knee\" = [\"hip\", \"knee\"] }")
        if nodes is not None:
            known = set(nodes) | set(nodes.values())
            unknown = [k for k in components if k not in known]
            if unknown:
                fail("components", f"names {', '.join(unknown)}, which is neither a node role nor a treatment")
            components = {nodes.get(k, k): v for k, v in components.items()}
    return components


def _regression_options(model: str, keys: _ModelKeys, out: dict) -> None:
    """The keys shared by multilevel and multivariate models (method, test, robust, rho, phi,
    rho_assumption, struct), added to ``out``."""
    if out["method"] not in ("REML", "ML"):
        keys.fail("method", f"must be REML or ML for a {model} model (got {out['method']!r})")
    out["test"] = keys.text("test", "z", ("z", "t"))
    out["robust"] = keys.text("robust", None, ("CR0", "CR1", "CR2"))
    out["rho"] = keys.number("rho", -1, 1, "a correlation")
    out["phi"] = keys.number("phi", 0, 1, "the AR(1) correlation between timepoints one week apart")
    out["rho_assumption"] = keys.text("rho_assumption", "")
    out["struct"] = keys.text("struct", "CS" if model == "multivariate" else None,
                              ("CS", "HCS", "UN", "ID", "DIAG", "AR", "HAR", "CAR"))


def _evidence_model_options(entry: dict, keys: _ModelKeys, out: dict) -> dict:
    """The keys of an evidence-base model analysis: inner, timepoints, scales, and the rho / phi that
    inner needs (with its stated assumption); data-file keys are refused."""
    fail = keys.fail
    inner = entry.get("inner")
    if inner not in INNER:
        fail("inner", f"must be one of {', '.join(INNER)} (the variable that varies within a trial; "
                      f"got {inner!r})")
    out["inner"] = inner
    out["timepoints"], out["scales"] = keys.texts("timepoints"), keys.texts("scales")
    if (out["rho"] is not None or out["phi"] is not None) and not out["rho_assumption"]:
        fail("rho_assumption", "must say why rho/phi has its value (it is an assumption, reported with "
                               "the result)")
    if inner == "scale" and out["rho"] is None:
        fail("rho", "is needed with inner = \"scale\": the correlation between two scales measured on the "
                    "same participants")
    if inner == "timepoint" and out["rho"] is None and out["phi"] is None:
        fail("rho", "(or phi) is needed with inner = \"timepoint\": the correlation between the same "
                    "participants' scores at two timepoints")
    for key in ("levels", "yi", "vi", "mods", "V", "robust_cluster"):
        if key in entry:
            fail(key, "is a key of data-file analyses (data = \"file.csv\"); evidence-base analyses use "
                      "trial / inner")
    return out


def _data_file_model_options(entry: dict, model: str, keys: _ModelKeys, out: dict) -> dict:
    """The keys of a data-file model analysis: levels, yi, vi, mods, robust_cluster and V; evidence-base
    keys are refused."""
    fail = keys.fail
    for key in ("inner", "timepoints", "scales"):
        if key in entry:
            fail(key, "is a key of evidence-base analyses (trials = [...])")
    levels = keys.texts("levels")
    if not levels or (model == "multivariate" and len(levels) != 2):
        fail("levels", "is needed: the nesting columns of the data file, outermost first, e.g. "
                       "[\"district\", \"study\"] (multivariate: [outer, inner], random = ~ inner | outer)")
    out["levels"] = levels
    out["yi"], out["vi"] = keys.text("yi", "yi"), keys.text("vi", "vi")
    out["mods"] = keys.texts("mods")
    out["robust_cluster"] = keys.text("robust_cluster")
    out["V"] = _vcalc_options(entry.get("V"), fail)
    return out


def _vcalc_options(V, fail):
    """The ``V = { rho, obs, cluster, time, phi, type }`` table (metafor ``vcalc``), checked, or None."""
    if V is not None:
        if not isinstance(V, dict) or set(V) - {"rho", "obs", "cluster", "time", "phi", "type"}:
            fail("V", "must be a table with keys among rho, obs, cluster, time, phi, type (metafor vcalc)")
        for key in ("obs", "cluster", "time", "type"):
            if key in V and not isinstance(V[key], str):
                fail(f"V.{key}", f"must be a column name (got {V[key]!r})")
        for key, low in (("rho", -1), ("phi", 0)):
            if key in V and (isinstance(V[key], bool) or not isinstance(V[key], (int, float))
                             or not low <= V[key] <= 1):
                fail(f"V.{key}", f"must be a number in [{low}, 1] (got {V[key]!r})")
        if "cluster" not in V:
            fail("V.cluster", "is needed: the column whose rows may be correlated")
        V = dict(V)
    return V


# ------------------------------------------------------------------------------------------------
# dependent effects and networks: building the rows, fitting, the result


def _spec_error(analysis: Analysis, why: str) -> InputError:
    return InputError(f"analysis '{analysis.key}': {why}", file=str(analysis.source))


def expected_arm_keys(analysis: Analysis, outcomes: pd.DataFrame) -> list[dict]:
    """The arm rows an evidence-base analysis expects (see :meth:`Analysis.arm_keys`): for a pairwise
    analysis its entries' two arms; for a multilevel one every entry x inner value (timepoints or scales
    listed, else all those outcomes.csv has for the trial); for a network every arm of outcomes.csv with
    the analysis's outcome and timepoint whose role is a node."""
    keys = []
    if analysis.data is not None:
        return keys
    if analysis.model == "network":
        nodes = analysis.options.get("nodes") or {}
        o = outcomes[(outcomes["outcome"] == analysis.outcome) & (outcomes["timepoint"] == analysis.timepoint)
                     & outcomes["role"].isin(list(nodes))]
        for (trial, arm), _ in o.groupby(["trial_id", "arm"], sort=False):
            keys.append({"trial_id": trial, "arm": arm, "outcome": analysis.outcome, "timepoint": analysis.timepoint,
                         "scale": None, "favourable": analysis.favourable})
        return keys
    for entry in analysis.trials:
        for sub in _inner_entries(analysis, entry, outcomes):
            for arm in (sub.exp, sub.ctrl):
                keys.append({"trial_id": sub.trial, "arm": arm, "outcome": analysis.outcome,
                             "timepoint": sub.timepoint or analysis.timepoint, "scale": sub.scale,
                             "favourable": analysis.favourable})
    return keys


def _inner_entries(analysis: Analysis, entry: TrialEntry, outcomes: pd.DataFrame) -> list[TrialEntry]:
    """One entry per row the trial gives: per timepoint or scale listed (by the entry, else the analysis,
    else all that outcomes.csv holds for both arms), or the entry itself."""
    inner = analysis.options.get("inner") if analysis.model in ("multilevel", "multivariate") else None
    if inner not in ("timepoint", "scale"):
        return [entry]
    listed = (entry.timepoints or analysis.options.get("timepoints")) if inner == "timepoint" else \
        (entry.scales or analysis.options.get("scales"))
    if not listed:
        rows = outcomes[(outcomes["trial_id"] == entry.trial) & (outcomes["outcome"] == analysis.outcome)
                        & outcomes["arm"].isin([entry.exp, entry.ctrl])]
        if inner == "scale":
            rows = rows[rows["timepoint"] == (entry.timepoint or analysis.timepoint)]
        elif entry.scale is not None:
            rows = rows[rows["scale"] == entry.scale]
        listed = list(dict.fromkeys(rows[inner].astype(str))) or [entry.timepoint or analysis.timepoint
                                                                  if inner == "timepoint" else entry.scale]
    if inner == "timepoint":
        return [replace(entry, timepoint=t) for t in listed]
    return [replace(entry, scale=s) for s in listed]


def _availability_row(trial, arm, role, inner_value, row, node=None):
    """One line of the availability table: what an arm has and lacks (n, mean, SD)."""
    if row is None:
        have = {"n": False, "mean": False, "sd": False}
    else:
        have = {k: not np.isnan(float(row[k])) for k in ("n", "mean", "sd")}
    lacking = [{"n": "n", "mean": "mean", "sd": "SD"}[k] for k, ok in have.items() if not ok]
    out = {"trial": trial, "arm": arm, "role": role}
    if node is not None:
        out["node"] = node
    if inner_value is not None:
        out["inner"] = inner_value
    out.update({"scale": None if row is None else row.get("scale"), "n": have["n"], "mean": have["mean"],
                "sd": have["sd"], "missing": ", ".join(lacking) if lacking else "",
                "status": "no row" if row is None else row.get("status")})
    return out


def _pair_correlation(a: dict, b: dict, rho, phi) -> float:
    """The correlation between two measurements of the same participants (rows a, b of one trial): 1 for
    the same scale at the same timepoint; phi^|weeks apart| across timepoints when phi is given (else
    rho); times rho across scales (vcalc's rho for different obs, phi for time)."""
    r = 1.0
    same_time = a["timepoint"] == b["timepoint"]
    if not same_time:
        if phi is not None and np.isfinite(a["weeks"]) and np.isfinite(b["weeks"]):
            r *= phi ** abs(a["weeks"] - b["weeks"])
        else:
            r *= rho if rho is not None else np.nan
    if a["scale"] != b["scale"]:
        r *= rho if rho is not None else np.nan
    return r


def dependent_covariance(rows: list[dict], measure: str) -> np.ndarray:
    """The sampling covariance of contrasts of one trial computed from its arms (rows: dicts with sign,
    exp, ctrl, n_exp, n_ctrl, sd_exp, sd_ctrl, yi, vi, timepoint, weeks, scale, r: the correlations with
    the other rows of the trial; see :func:`_pair_correlation`).

    For rows i, j and each arm a in both (L = +1 experimental, -1 control, times the row's sign):
    MD: ``r_ij sum_a L_ia L_ja sd_a,i sd_a,j / n_a``; SMD: ``r_ij sum_a L_ia L_ja / n_a
    + r_ij^2 y_i y_j n_shared / (2 N_i N_j)``. With r = 1 (the same measurement: an arm shared by two
    comparisons) these are the exact forms of :func:`pfps_meta.models.vcalc.contrast_covariance`
    (Gleser & Olkin 2009); across timepoints or scales, r (the spec's rho, or phi^|weeks|) scales the
    shared arm's covariance as metafor's ``vcalc`` does. n_a is the smaller n of the arm's two
    measurements (the later completers assumed a subset). The diagonal is each row's own vi.
    """
    m = len(rows)
    V = np.zeros((m, m))
    for i, a in enumerate(rows):
        for j, b in enumerate(rows):
            if i == j:
                V[i, i] = a["vi"]
                continue
            r = a["r"][j]
            total, shared_n = 0.0, 0.0
            for side_a in ("exp", "ctrl"):
                for side_b in ("exp", "ctrl"):
                    if a[side_a] != b[side_b]:
                        continue
                    n = min(a[f"n_{side_a}"], b[f"n_{side_b}"])
                    L = (1 if side_a == "exp" else -1) * (1 if side_b == "exp" else -1) * a["sign"] * b["sign"]
                    if measure == "MD":
                        total += L * a[f"sd_{side_a}"] * b[f"sd_{side_b}"] / n
                    else:
                        total += L / n
                    shared_n += n
            V[i, j] = r * total
            if measure != "MD" and shared_n:
                N_a, N_b = a["n_exp"] + a["n_ctrl"], b["n_exp"] + b["n_ctrl"]
                V[i, j] += r ** 2 * a["yi"] * b["yi"] * shared_n / (2 * N_a * N_b)
    return V


def build_dependent(analysis: Analysis, evidence: Evidence):
    """Rows (trial x inner value) of a multilevel/multivariate evidence-base analysis, their V (a
    BlockDiagonal, one block per trial), the availability table, what is missing and notes."""
    from pfps_meta.models.blocks import BlockDiagonal

    o = evidence.outcomes
    inner = analysis.options["inner"]
    rho, phi = analysis.options.get("rho"), analysis.options.get("phi")
    known = set(o["trial_id"])
    unknown = [e.trial for e in analysis.trials if e.trial not in known]
    if unknown:
        raise _spec_error(analysis, f"trial(s) {', '.join(unknown)} have no row in outcomes.csv")
    selected, availability, missing, entries = [], [], [], []
    keys = key_columns(o, (*ENTRY_KEYS, "n", "mean", "sd"))
    for entry in analysis.trials:
        subs = _inner_entries(analysis, entry, o)
        for sub in subs:
            value = (sub.timepoint or analysis.timepoint) if inner == "timepoint" else \
                (sub.scale if inner == "scale" else f"{sub.exp} vs {sub.ctrl}")
            got = []
            for arm in (sub.exp, sub.ctrl):
                row, rows = _arm_row(o, analysis, sub, arm, keys)
                shown = row if row is not None else (o.iloc[rows[0]] if len(rows) else None)
                role = None if shown is None else shown.get("role")
                availability.append(_availability_row(sub.trial, arm, role, value, shown))
                got.append((row, rows))
            (exp, exp_rows), (ctrl, ctrl_rows) = got
            if exp is not None and ctrl is not None:
                selected.append((sub, exp, ctrl, value))
            else:
                missing.append({"trial": sub.trial, "inner": value,
                                "reason": "no row in data/outcomes.csv" if not (len(exp_rows) or len(ctrl_rows))
                                else "n, mean and SD not recovered for both arms"})
        entries.append(entry)
    converted = _convert_pairs(analysis, o, [(s, e, c) for s, e, c, _ in selected])
    records, lower = [], analysis.favourable == "lower"
    usage = {}
    for (sub, _, _, value), (exp, ctrl) in zip(selected, converted):
        usage.update({(sub.trial, sub.exp): 1, (sub.trial, sub.ctrl): 1})
        lost = []
        rec = _arm_level_record(analysis, sub, exp, ctrl, usage, lower, lost)
        if rec is None:
            missing.extend({**m, "inner": value} for m in lost)
            continue
        flip = bool(exp["higher_is_better"]) == lower
        weeks = _num(exp.get("timepoint_weeks"))
        rec.update({"trial": sub.trial, "inner": value, "exp": sub.exp, "ctrl": sub.ctrl,
                    "timepoint": sub.timepoint or analysis.timepoint, "weeks": weeks, "scale": exp["scale"],
                    "sign": -1.0 if flip else 1.0})
        records.append(rec)
    table = pd.DataFrame(records)
    blocks, index = [], []
    if len(table):
        table = table.sort_values("trial", kind="stable", key=lambda s: s.map(
            {e.trial: i for i, e in enumerate(analysis.trials)})).reset_index(drop=True)
        rows = table.to_dict("records")
        for trial, group in table.groupby("trial", sort=False):
            members = [rows[i] for i in group.index]
            for a in members:
                a["r"] = [_pair_correlation(a, b, rho, phi) for b in members]
            block = dependent_covariance(members, analysis.measure)
            if not np.all(np.isfinite(block)):
                raise _spec_error(analysis, f"{trial}: rows at different timepoints or scales need rho (or phi) "
                                            "for their correlation")
            if np.linalg.eigvalsh(block).min() <= 0:
                raise _spec_error(analysis, f"{trial}: the covariance of its rows is not positive definite with "
                                            f"rho = {rho}, phi = {phi}")
            blocks.append(block)
            index.append(np.asarray(group.index))
    V = BlockDiagonal(tuple(index), tuple(blocks), tuple(dict.fromkeys(table["trial"]))) if len(table) else None
    return table, V, pd.DataFrame(availability), missing


@dataclass
class ModelAnalysisResult(AnalysisResult):
    """A dependent-effect (multilevel / multivariate) or network analysis of a spec.

    ``fit``: the fitted model (:class:`~pfps_meta.models.multilevel.MultilevelResult` or
    :class:`~pfps_meta.models.network.NetworkResult`), or None with ``reason`` saying why in words;
    ``robust``: the cluster-robust result when the spec asks (``robust = "CR2"``); ``components``: the
    additive component model of a network when asked; ``effects``: the rows that entered (one per trial x
    inner value, or per contrast); ``availability``: per trial and arm (and inner value) which of n, mean,
    SD are there; ``decision``: the model used and why, in words; ``notes``; ``options``: the settings.
    ``result`` (the pairwise MetaResult of AnalysisResult) is None, so the reproduce table shows these
    analyses as ``no_target`` or ``incomplete`` with the counts below.
    """

    model: str = ""
    fit: object = None
    reason: str = ""
    robust: object = None
    components: object = None
    effects: pd.DataFrame = field(default_factory=pd.DataFrame)
    availability: pd.DataFrame = field(default_factory=pd.DataFrame)
    decision: str = ""
    notes: list = field(default_factory=list)
    options: dict = field(default_factory=dict)
    n_effects: int = 0
    n_clusters: int = 0

    @property
    def k_available(self) -> int:
        return self.n_clusters

    @property
    def k_expected(self) -> int:
        return len(self.studies.expected) if self.studies.expected else self.n_clusters

    @property
    def participants(self):
        return None

    @property
    def settings(self) -> dict:
        return {"model": self.model, **{k: v for k, v in self.options.items() if v is not None}}

    def __str__(self) -> str:
        a = self.analysis
        lines = [f"{a.key}: {a.label}", f"model: {self.model}", self.decision]
        lines.append(f"effects: {self.n_effects}, clusters: {self.n_clusters}"
                     + (f" of {self.k_expected} expected" if self.studies.expected else ""))
        if self.studies.missing and not len(self.availability):
            lines.append("incomplete: " + "; ".join(
                f"{m['trial']}" + (f" ({m['inner']})" if m.get("inner") else "") + f": {m['reason']}"
                for m in self.studies.missing))
        if self.fit is None:
            lines.append(f"not fitted: {self.reason}")
        else:
            lines += ["", str(self.fit)]
            if self.robust is not None:
                lines += ["", str(self.robust)]
            if self.components is not None:
                lines += ["", str(self.components)]
        if len(self.availability):
            have = self.availability[self.availability["missing"] == ""]
            lines.append(f"arms with n, mean and SD: {len(have)} of {len(self.availability)}")
            gaps = self.availability[self.availability["missing"] != ""]
            if len(gaps):
                shown = [f"{r['trial']} {r['arm']}" + (f" ({r['inner']})" if r.get("inner") else "")
                         + f": {r['missing']}" for r in gaps.to_dict("records")]
                lines.append("missing: " + "; ".join(shown))
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(line for line in lines if line is not None)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        import html

        return "<pre>" + html.escape(str(self)) + "</pre>"

    def to_frame(self) -> pd.DataFrame:
        """The fitted model's table (its ``to_frame()``: coefficients, or a network's effects versus the
        reference); an empty frame when the model was not fitted."""
        return self.fit.to_frame() if self.fit is not None else pd.DataFrame()

    def to_dict(self) -> dict:
        from pfps_meta.formatting import json_ready

        fit = None
        if self.fit is not None:
            fit = self.fit.to_dict() if hasattr(self.fit, "to_dict") else None
            if fit is None and hasattr(self.fit, "to_frame"):
                fit = {"effects": self.fit.to_frame().reset_index().to_dict("records"), "tau2": self.fit.tau2}
        return json_ready({
            "analysis": self.analysis.key, "label": self.analysis.label, "model": self.model,
            "decision": self.decision, "fitted": self.fit is not None, "reason": self.reason or None,
            "n_effects": self.n_effects, "n_clusters": self.n_clusters, "k_expected": self.k_expected,
            "missing": self.studies.missing, "fit": fit,
            "robust": self.robust.to_dict() if self.robust is not None else None,
            "components": _component_dict(self.components),
            "availability": self.availability.to_dict("records"),
            "effects": self.effects.drop(columns=[c for c in ("r",) if c in self.effects.columns]).to_dict("records"),
            "notes": list(self.notes), "settings": self.settings})


def _component_dict(comp):
    if comp is None:
        return None
    return {"components": list(comp.components), "beta": list(comp.beta), "se": list(np.sqrt(np.diag(comp.vb))),
            "tau2": comp.tau2, "Q_additive": comp.Q_additive, "df_additive": comp.df_additive}


def _number_words(n: int) -> str:
    return {2: "two", 3: "three", 4: "four", 5: "five"}.get(n, str(n))


def _fit_dependent(analysis, frame, V, levels, cluster):
    """multilevel()/multivariate() on the rows, and robust() when asked; returns (fit, robust)."""
    from pfps_meta.models.multilevel import multilevel, multivariate

    o = analysis.options
    if analysis.model == "multilevel":
        fit = multilevel(frame, yi="yi", vi="vi", V=V, levels=tuple(levels), mods=o.get("mods"),
                         method=o["method"], test=o["test"], level=analysis.settings.level)
    else:
        fit = multivariate(frame, yi="yi", vi="vi", V=V, outer=levels[0], inner=levels[1], struct=o["struct"],
                           mods=o.get("mods"), method=o["method"], test=o["test"], level=analysis.settings.level)
    robust = fit.robust(cluster=np.asarray(cluster), adjust=o["robust"]) if o.get("robust") else None
    return fit, robust


def _run_dependent_evidence(analysis: Analysis, evidence: Evidence) -> ModelAnalysisResult:
    o = analysis.options
    inner = o["inner"]
    table, V, availability, missing = build_dependent(analysis, evidence)
    trials = list(dict.fromkeys(table["trial"])) if len(table) else []
    k, m = len(table), len(trials)
    why = {"timepoint": "several timepoints per trial", "scale": "several scales per trial",
           "arm": "comparisons that share an arm"}[inner]
    if o.get("rho") is not None or o.get("phi") is not None:
        parts = [f"rho = {o['rho']:g}" if o.get("rho") is not None else None,
                 f"phi = {o['phi']:g} per week (AR(1) over timepoint_weeks)" if o.get("phi") is not None else None]
        vtext = f"V from {' and '.join(p for p in parts if p)} (assumed: {o['rho_assumption']})"
    else:
        vtext = "V exact from the arms (shared arms' covariance)"
    shape = (f"a three-level model (trial / {inner})" if analysis.model == "multilevel"
             else f"a multivariate model (~ {inner} | trial, struct {o['struct']})")
    decision = (f"{m} trial{'s' if m != 1 else ''} give {k} effect{'s' if k != 1 else ''}: {why}; {shape} with "
                f"{vtext}" + (f"; {o['robust']} cluster-robust inference by trial" if o.get("robust") else ""))
    fit = robust = None
    reason = ""
    frame = table.drop(columns=[c for c in (inner,) if c in table.columns]).rename(columns={"inner": inner}) \
        if len(table) else table
    if k < 2 or m < 2:
        reason = (f"{k} effect(s) from {m} trial(s) have data; a {analysis.model} model needs effects from at "
                  "least two trials")
    else:
        frame[inner] = frame[inner].astype(str)
        levels = ["trial", inner]
        if analysis.model == "multivariate" and o["struct"] in ("AR", "HAR", "CAR"):
            levels = ["trial", "weeks"]
        try:
            fit, robust = _fit_dependent(analysis, frame, V, levels, frame["trial"])
        except InputError as exc:
            reason = f"the model could not be fitted: {exc.reason if hasattr(exc, 'reason') else exc}"
    notes = []
    studies = StudyTable(table=frame, missing=missing, expected=[e.trial for e in analysis.trials], notes=notes)
    return ModelAnalysisResult(analysis=analysis, result=None, studies=studies, published=None,
                               model=analysis.model, fit=fit, reason=reason, robust=robust, effects=frame,
                               availability=availability, decision=decision, notes=notes, options=dict(o),
                               n_effects=k, n_clusters=m)


def _data_columns(analysis: Analysis, frame: pd.DataFrame, columns: dict):
    for key, column in columns.items():
        if column is not None and column not in frame.columns:
            raise _spec_error(analysis, f"{key} = '{column}' is not a column of {analysis.data.name} "
                                        f"(columns: {', '.join(c for c in frame.columns if not c.startswith('_'))})")


def _numeric(analysis, frame, column):
    values = pd.to_numeric(frame[column], errors="coerce")
    if values.isna().any():
        row = int(np.flatnonzero(values.isna().to_numpy())[0])
        raise InputError(f"analysis '{analysis.key}': {column} is not a number ({frame[column].iloc[row]!r})",
                         file=str(analysis.data), line=frame["_line"].iloc[row] if "_line" in frame else None,
                         column=column)
    return values.to_numpy(float)


def _run_dependent_data(analysis: Analysis) -> ModelAnalysisResult:
    from pfps_meta.models.vcalc import vcalc

    o = analysis.options
    raw = read_csv(analysis.data)
    Vspec = o.get("V") or {}
    columns = {f"levels[{i}]": c for i, c in enumerate(o["levels"])}
    columns.update(yi=o["yi"], vi=o["vi"], robust_cluster=o.get("robust_cluster"))
    columns.update({f"mods[{i}]": c for i, c in enumerate(o.get("mods") or [])})
    columns.update({f"V.{k}": Vspec.get(k) for k in ("obs", "cluster", "time", "type")})
    _data_columns(analysis, raw, columns)
    frame = raw.copy()
    frame["yi"], frame["vi"] = _numeric(analysis, raw, o["yi"]), _numeric(analysis, raw, o["vi"])
    for column in o.get("mods") or []:
        values = pd.to_numeric(raw[column], errors="coerce")
        if not values.isna().any():
            frame[column] = values.to_numpy(float)
    if Vspec.get("time"):
        frame[Vspec["time"]] = _numeric(analysis, raw, Vspec["time"])
    V = None
    if Vspec:
        V = vcalc(frame, vi="vi", cluster=Vspec["cluster"], obs=Vspec.get("obs"), type=Vspec.get("type"),
                  rho=Vspec.get("rho"), time=Vspec.get("time"), phi=Vspec.get("phi"))
    cluster_col = o.get("robust_cluster") or o["levels"][0]
    fit, robust = _fit_dependent(analysis, frame, V, o["levels"], frame[cluster_col].astype(str).to_numpy())
    k, m = len(frame), int(frame[o["levels"][0]].nunique())
    nested = " / ".join(o["levels"])
    vtext = (f"; V from vcalc (rho = {Vspec.get('rho', 'none')} between {Vspec.get('obs')} rows of one "
             f"{Vspec['cluster']}{', assumed: ' + o['rho_assumption'] if o.get('rho_assumption') else ''})"
             if Vspec else "; independent sampling errors (V = diag(vi))")
    shape = (f"a {_number_words(len(o['levels']) + 1)}-level model ({nested})" if analysis.model == "multilevel"
             else f"a multivariate model (~ {o['levels'][1]} | {o['levels'][0]}, struct {o['struct']})")
    decision = (f"{m} {o['levels'][0]} clusters give {k} effects: {shape}{vtext}"
                + (f"; {o['robust']} cluster-robust inference by {cluster_col}" if robust is not None else ""))
    studies = StudyTable(table=frame, missing=[], expected=[], notes=[])
    return ModelAnalysisResult(analysis=analysis, result=None, studies=studies, published=None,
                               model=analysis.model, fit=fit, robust=robust, effects=frame.drop(
                                   columns=[c for c in frame.columns if c.startswith("_")]),
                               decision=decision, options=dict(o), n_effects=k, n_clusters=m)


def build_network_arms(analysis: Analysis, evidence: Evidence):
    """The arms of an evidence-base network: every arm of outcomes.csv at the analysis's outcome and
    timepoint whose role is a node (a trial with several scales for the outcome: the first listed in
    ``scales``, else the first in outcomes.csv). Returns (arms with n, mean, SD on the analysis's scale and
    direction, the availability table, missing list, notes)."""
    o = evidence.outcomes
    nodes = analysis.options["nodes"]
    unknown = [role for role in nodes if role not in set(o["role"])]
    if unknown:
        raise _spec_error(analysis, f"nodes: role(s) {', '.join(unknown)} match no arm of outcomes.csv (roles: "
                                    f"{', '.join(sorted(set(o['role'])))})")
    positions = np.flatnonzero(equal_mask(o["outcome"], analysis.outcome) & equal_mask(o["timepoint"], analysis.timepoint)
                               & o["role"].isin(list(nodes)).to_numpy(dtype=bool))
    if not len(positions):
        raise _spec_error(analysis, f"no arm of outcomes.csv has outcome '{analysis.outcome}' at timepoint "
                                    f"'{analysis.timepoint}' with a role among the nodes")
    preferred = analysis.options.get("scales") or []
    availability, chosen, notes = [], [], []
    trial_of, scale_of = o["trial_id"].to_numpy()[positions], o["scale"].to_numpy()[positions]
    complete = np.logical_and.reduce([o[c].notna().to_numpy()[positions] for c in ("n", "mean", "sd")])
    for trial in dict.fromkeys(trial_of):               # each trial's arms, trials in order of first row
        group = trial_of == trial
        scales = list(dict.fromkeys(scale_of[group]))
        ranked = [s for s in preferred if s in scales] + [s for s in scales if s not in preferred]
        with_data = [s for s in ranked if np.sum(group & complete & (scale_of == s)) >= 2]
        scale = with_data[0] if with_data else ranked[0]
        if len(scales) > 1:
            notes.append(f"{trial}: {analysis.outcome} on {scale} (of {', '.join(scales)})")
        for position in positions[group & (scale_of == scale)]:
            row = o.iloc[position]
            availability.append(_availability_row(trial, row["arm"], row["role"], None, row, nodes[row["role"]]))
            if not (np.isnan(row["n"]) or np.isnan(row["mean"]) or np.isnan(row["sd"])):
                chosen.append(row)
    missing, by_trial = [], {}
    for item in availability:
        by_trial.setdefault(item["trial"], []).append(item)
    for trial, items in by_trial.items():
        lacking = [r for r in items if r["missing"] != ""]
        if lacking:
            missing.append({"trial": trial, "reason": "; ".join(f"{r['arm']} ({r['node']}): {r['missing']}"
                                                                  for r in lacking)})
    availability = pd.DataFrame(availability)
    if not chosen:
        return pd.DataFrame(columns=["study", "treatment", "n", "mean", "sd"]), availability, missing, notes
    arms = pd.DataFrame(chosen)
    counts = arms.groupby("trial_id")["arm"].transform("size")
    arms = arms[counts >= 2]
    if arms.empty:
        return pd.DataFrame(columns=["study", "treatment", "n", "mean", "sd"]), availability, missing, notes
    # checked and converted by the one entrance, as the pairwise analyses' arms are
    table = arm_rows(arms, source=o.attrs.get("source"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TranscriptionWarning)
        checked = study_table(table, analysis.measure, settings=analysis.settings)
    mean, sd = checked["mean"].to_numpy(float), checked["sd"].to_numpy(float)
    if analysis.measure == "MD":
        lo, hi = arms["scale_min"].to_numpy(float), arms["scale_max"].to_numpy(float)
        if np.isnan(lo).any() or np.isnan(hi).any():
            raise _spec_error(analysis, "an arm's scale range is unknown; an MD network needs every scale's range")
        factor = (analysis.target_range[1] - analysis.target_range[0]) / (hi - lo)
        mean, sd = mean * factor, sd * factor
    # one direction for every arm: a scale that runs the other way has its means negated
    native_lower = analysis.favourable == "lower"
    reverse = arms["higher_is_better"].to_numpy(bool) == native_lower
    mean = np.where(reverse, -mean, mean)
    out = pd.DataFrame({"study": arms["trial_id"].to_numpy(), "treatment": [nodes[r] for r in arms["role"]],
                        "arm": arms["arm"].to_numpy(), "n": arms["n"].to_numpy(float), "mean": mean, "sd": sd})
    return out, availability, missing, notes


def _fit_network(analysis: Analysis, arms: pd.DataFrame, study: str, treatment: str, small_values: str):
    """(fit, components, reason): the network when the arms with data form a connected network of at
    least two treatments, else None and why."""
    from pfps_meta.models.network import network
    from pfps_meta.models.network_components import component_network

    o = analysis.options
    if arms.empty:
        return None, None, "no trial has n, mean and SD for two or more arms"
    treatments = sorted(set(arms[treatment]))
    if len(treatments) < 2:
        return None, None, f"the arms with data cover one treatment only ({treatments[0]})"
    edges = []
    for _, group in arms.groupby(study, sort=False):
        present = list(dict.fromkeys(group[treatment]))
        edges += [(present[0], t) for t in present[1:]]
    parts = connected_parts(edges, treatments)
    if len(parts) > 1:
        text = "; ".join("{" + ", ".join(p) + "}" for p in parts)
        return None, None, f"the arms with data form {len(parts)} unconnected sub-networks ({text})"
    if o["reference"] not in treatments:
        return None, None, f"the reference '{o['reference']}' has no arm with data"
    ci = {"wald": "wald", "hksj": "hk", "t": "t"}.get(analysis.settings.ci_method, "wald")
    fit = network(arms, study=study, treatment=treatment, measure=analysis.measure, reference=o["reference"],
                  method=o["method"], ci_method=ci, level=analysis.settings.level, small_values=small_values)
    comp = None
    if o.get("components"):
        comp = component_network(fit, components=o["components"], inactive=o.get("inactive"))
    return fit, comp, ""


def _run_network(analysis: Analysis, evidence: Evidence | None) -> ModelAnalysisResult:
    o = analysis.options
    notes, missing, availability = [], [], pd.DataFrame()
    if analysis.data is not None:
        raw = read_csv(analysis.data)
        _data_columns(analysis, raw, {"study": o["study"], "treatment": o["treatment"], "n": "n",
                                      **({"mean": "mean", "sd": "sd"} if analysis.measure in ("MD", "SMD")
                                         else {"events": "events"})})
        arms = raw.copy()
        for column in ("n", "mean", "sd", "events"):
            if column in arms.columns:
                arms[column] = _numeric(analysis, raw, column)
        if o.get("nodes"):
            arms[o["treatment"]] = arms[o["treatment"]].map(lambda t: o["nodes"].get(t, t))
        if o["reference"] not in set(arms[o["treatment"]]):
            raise _spec_error(analysis, f"reference '{o['reference']}' is not a treatment of {analysis.data.name}")
        study, treatment = o["study"], o["treatment"]
        small = "good" if analysis.favourable != "higher" else "bad"
        expected = list(dict.fromkeys(arms[study].astype(str)))
    else:
        _require_evidence(evidence, analysis)
        arms, availability, missing, notes = build_network_arms(analysis, evidence)
        study, treatment = "study", "treatment"
        small = "good"          # every arm is on the analysis's direction: lower favourable after the sign rule
        if analysis.favourable == "higher":
            small = "bad"
        expected = list(dict.fromkeys(availability["trial"]))
    fit, comp, reason = _fit_network(analysis, arms, study, treatment, small)
    studies_with = list(dict.fromkeys(arms[study].astype(str))) if len(arms) else []
    nodes = sorted(set(o["nodes"].values())) if o.get("nodes") else sorted(set(arms[treatment])) if len(arms) else []
    n_arms = len(arms)
    total_arms = len(availability) if len(availability) else n_arms
    decision = (f"{len(studies_with)} of {len(expected)} trials ({n_arms} of {total_arms} arms) have n, mean and SD; "
                f"network of {len(nodes)} treatments ({', '.join(nodes)}), reference {o['reference']}, "
                f"{analysis.measure}, tau2 by {o['method']}, exact covariance of each multi-arm trial's contrasts"
                + ("; additive component model" if o.get("components") else ""))
    studies = StudyTable(table=arms, missing=missing, expected=expected, notes=notes)
    return ModelAnalysisResult(analysis=analysis, result=None, studies=studies, published=None, model="network",
                               fit=fit, reason=reason, components=comp, effects=arms, availability=availability,
                               decision=decision, notes=notes, options=dict(o),
                               n_effects=0 if fit is None else int(fit.k), n_clusters=len(studies_with))


def run_model_analysis(analysis: Analysis, evidence: Evidence | None = None) -> ModelAnalysisResult:
    """Run a spec analysis with ``model = "multilevel" | "multivariate" | "network"`` (see the module
    docstring); :func:`run_analysis` calls it for those analyses. A :data:`PAIRWISE_ONLY_SETTINGS` setting
    away from its default (from the file's [settings], or given to run_analysis) is not applied, and a note
    says so."""
    if analysis.model == "network":
        result = _run_network(analysis, evidence)
    elif analysis.data is not None:
        result = _run_dependent_data(analysis)
    else:
        _require_evidence(evidence, analysis)
        result = _run_dependent_evidence(analysis, evidence)
    unapplied = [f"{key} = {getattr(analysis.settings, key)!r}" for key in _pairwise_only_changed(analysis.settings)]
    if unapplied:
        result.notes.append(f"not applied to this {analysis.model} model: {', '.join(unapplied)} (settings of "
                            "pairwise pooling; its estimator, tests and intervals come from method, test and robust)")
    return result
