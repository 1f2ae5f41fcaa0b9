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
from pfps_meta.evidence.curated import Evidence, arm_rows, entry_rows  # noqa: F401 (entry_rows re-exported)
from pfps_meta.evidence.extraction import check_sheet, load_extraction, with_extraction
from pfps_meta.inputs.load import is_missing, read_csv, read_text
from pfps_meta.models.univariate import MetaResult, pool_effects
from pfps_meta.inputs.validate import InputWarning, TranscriptionWarning, effect_table, sd_may_be_se, study_table

SETTING_KEYS = (*OPTION_BY_NAME, *ALIASES)      # every option name of conventions.OPTIONS, and aliases
ANALYSIS_KEYS = {"id", "label", "comparison", "outcome", "measure", "timepoint", "favourable", "target_range",
                 "published", "trials", "data", "allow_mixed_change_and_final", "split_shared_arms", "mcid",
                 "notes", "design", "impute_sd", "show_blups", *SETTING_KEYS}
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

    @property
    def key(self) -> str:
        return f"{self.review}/{self.id}"


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
    try:
        raw = tomllib.loads(read_text(path, "an analysis definition"))
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"not valid TOML ({exc})", file=name) from None
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
    file_settings = raw.get("settings", {})
    unknown = set(file_settings) - set(SETTING_KEYS) - {"assumption"}
    if unknown:
        raise InputError(f"[settings]: unknown key(s) {', '.join(sorted(unknown))}; known: "
                         f"{', '.join(OPTION_BY_NAME)}, assumption", file=name)
    settings = _settings({k: v for k, v in file_settings.items() if k in SETTING_KEYS}, None, name, "[settings]")
    assumption = file_settings.get("assumption", "")
    data_dir = _inside_project(path, review.get("data_dir", "../data"), name, "[review] data_dir")
    analyses = []
    entries = raw.get("analyses", [])
    if not entries:
        raise InputError("no [[analyses]] entries", file=name)
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise InputError("[[analyses]] must be an array of tables", file=name)
    ids = set()
    for number, entry in enumerate(entries, start=1):
        where = f"[[analyses]] entry {number}"
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
        merged = _settings({k: entry[k] for k in SETTING_KEYS if k in entry}, settings, name, where)
        if "trials" in entry and not entry["trials"]:
            raise InputError(f"{where} ('{entry['id']}'): trials = [] lists no trial", file=name)
        if ("trials" in entry) == ("data" in entry):
            raise InputError(f"{where} ('{entry['id']}'): give either trials = [...] or data = \"file.csv\"",
                             file=name)
        measure = entry.get("measure")
        trials = []
        for t_number, t in enumerate(entry.get("trials", []), start=1):
            missing = [k for k in ("trial", "exp", "ctrl") if k not in t]
            if missing:
                raise InputError(f"{where} ('{entry['id']}'), trial {t_number}: missing {', '.join(missing)}",
                                 file=name)
            bad = [k for k in ("trial", "exp", "ctrl", "scale", "timepoint", "note") if k in t and not isinstance(t[k], str)]
            if bad:
                raise InputError(f"{where} ('{entry['id']}'), trial {t_number}: {', '.join(bad)} must be text",
                                 file=name)
            trials.append(TrialEntry(trial=t["trial"], exp=t["exp"], ctrl=t["ctrl"], scale=t.get("scale"),
                                     timepoint=t.get("timepoint"), note=t.get("note", "")))
        if entry.get("impute_sd") is not None and (not isinstance(entry["impute_sd"], str)
                                                   or entry["impute_sd"] not in IMPUTE_SD):
            raise InputError(f"{where} ('{entry['id']}'): impute_sd must be one of {', '.join(IMPUTE_SD)}",
                             file=name)
        if entry.get("design", "randomised") not in ("randomised", "observational"):
            raise InputError(f"{where} ('{entry['id']}'): design must be \"randomised\" or \"observational\"",
                             file=name)
        favourable = entry.get("favourable")
        if trials and favourable not in ("lower", "higher"):
            raise InputError(f"{where} ('{entry['id']}'): favourable must be \"lower\" or \"higher\"", file=name)
        if trials and measures.get(measure).layout != "arm":
            raise InputError(f"{where} ('{entry['id']}'): measure must be one of "
                             f"{', '.join(measures.names('arm'))} for evidence-base analyses", file=name)
        target = entry.get("target_range")
        if measure == "MD" and trials and (not isinstance(target, list) or len(target) != 2):
            raise InputError(f"{where} ('{entry['id']}'): an MD analysis needs target_range = [min, max]",
                             file=name)
        if target is not None and not (isinstance(target, list) and len(target) == 2
                                       and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in target)
                                       and target[0] < target[1]):
            raise InputError(f"{where} ('{entry['id']}'): target_range must be [min, max] with min < max "
                             f"(got {target!r})", file=name)
        analyses.append(Analysis(
            id=entry["id"], review=review["id"], label=entry.get("label", entry["id"]), measure=measure,
            settings=merged, source=path, comparison=entry.get("comparison", ""),
            outcome=entry.get("outcome", ""), timepoint=entry.get("timepoint", "post"), favourable=favourable,
            target_range=tuple(target) if target else None, published=entry.get("published"), trials=trials,
            data=_inside_project(path, entry["data"], name, f"{where}: data") if "data" in entry else None,
            allow_mixed=bool(entry.get("allow_mixed_change_and_final", False)),
            split_shared=bool(entry.get("split_shared_arms", False)), mcid=entry.get("mcid"),
            notes=entry.get("notes", ""), assumption=assumption, design=entry.get("design", "randomised"),
            impute_sd=entry.get("impute_sd"), show_blups=bool(entry.get("show_blups", False))))
    return Spec(path=path, review=review, settings=settings, analyses=analyses, data_dir=data_dir)


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


def _arm_row(outcomes, analysis, entry, arm):
    rows = entry_rows(outcomes, analysis, entry, arm)
    complete = rows[rows["n"].notna() & rows["mean"].notna() & rows["sd"].notna()]
    if len(complete) > 1:
        raise InputError(f"{entry.trial} arm {arm}: several complete {analysis.outcome} rows at "
                         f"{entry.timepoint or analysis.timepoint}; name the scale in the analysis",
                         file=outcomes.attrs.get("source"))
    return (complete.iloc[0] if len(complete) else None), rows


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
                         "would be counted twice (set split_shared_arms = true to split its n)",
                         file=str(analysis.source))
    records, missing, notes = [], [], []
    lower_is_favourable = analysis.favourable == "lower"
    selected = [(entry, *_arm_row(outcomes, analysis, entry, entry.exp), *_arm_row(outcomes, analysis, entry, entry.ctrl))
                for entry in analysis.trials]
    converted = _convert_arms(analysis, outcomes, selected)
    for entry, exp, exp_rows, ctrl, ctrl_rows in selected:
        timepoint = entry.timepoint or analysis.timepoint
        if exp is not None and ctrl is not None:
            exp, ctrl = converted[(entry.trial, entry.exp, entry.ctrl)]
        record = None
        if exp is not None and ctrl is not None:
            record = _arm_level_record(analysis, entry, exp, ctrl, usage, lower_is_favourable, missing)
        else:
            eff = effects[(effects["trial_id"] == entry.trial) & (effects["exp_arm"] == entry.exp)
                          & (effects["ctrl_arm"] == entry.ctrl) & (effects["outcome"] == analysis.outcome)
                          & (effects["timepoint"] == timepoint) & (effects["measure"] == analysis.measure)]
            if entry.scale is not None:
                eff = eff[eff["scale"] == entry.scale]
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
    if not pairs:
        return {}
    counts = {}
    for entry, _, _ in pairs:
        counts[entry.trial] = counts.get(entry.trial, 0) + 1
    frames, labels = [], []
    for entry, exp, ctrl in pairs:
        label = entry.trial if counts[entry.trial] == 1 else f"{entry.trial} ({entry.exp} vs {entry.ctrl})"
        frame = arm_rows(pd.DataFrame([exp, ctrl]), source=outcomes.attrs.get("source"))
        frame["study"] = label
        frames.append(frame)
        labels.append(label)
    table = pd.concat(frames, ignore_index=True)
    table.attrs["source"] = outcomes.attrs.get("source")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TranscriptionWarning)
        checked = study_table(table, analysis.measure, settings=analysis.settings)
    out = {}
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
        out[(entry.trial, entry.exp, entry.ctrl)] = tuple(rows)
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
        if {"n_exp", "n_ctrl"} <= set(s.columns):
            total = pd.to_numeric(s["n_exp"], errors="coerce") + pd.to_numeric(s["n_ctrl"], errors="coerce")
            return None if total.isna().any() else int(round(total.sum()))
        return None


def run_analysis(analysis: Analysis, evidence: Evidence | None = None,
                 settings: Settings | dict | None = None) -> AnalysisResult:
    """Build the study table of ``analysis`` and pool it with its settings, or with ``settings`` (a
    :class:`Settings`, or a dict of options applied on top of the analysis's own)."""
    if isinstance(settings, dict):
        settings = _settings(settings, analysis.settings, str(analysis.source), f"analysis '{analysis.key}'")
    opts = settings if settings is not None else analysis.settings
    if settings is not None and settings != analysis.settings:
        analysis = replace(analysis, settings=settings)
    published = evidence.published_row(analysis.published) if (evidence is not None and analysis.published) else None
    if analysis.data is not None:
        frame = read_csv(analysis.data)
        table = effect_table(frame, analysis.measure, settings=opts)
        studies = StudyTable(table=table, missing=[], expected=list(table["study"]), notes=[])
    else:
        if evidence is None:
            raise ValueError("an evidence-base analysis needs the Evidence tables")
        studies = build_from_evidence(analysis, evidence)
    result = None
    if len(studies.table):
        result = pool_effects(studies.table, measure=analysis.measure, settings=opts, notes=studies.notes)
    return AnalysisResult(analysis=analysis, result=result, studies=studies, published=published)


def arm_size_scenarios(analysis: Analysis, evidence: Evidence) -> list[dict]:
    """The analysis re-run under every plausible arm size of the trials whose n is inferred.

    Rows of ``outcomes.csv`` with status ``inferred`` may list other plausible arm sizes in
    ``n_alternatives`` (e.g. completers, randomised). For each label that both arms of such a trial
    carry, the analysis is pooled again with those sizes. Returns one dict per scenario:
    ``{"scenario", "trial", "n_exp", "n_ctrl", "result"}``, the first being the sizes used.
    """
    base = run_analysis(analysis, evidence)
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


def default_spec_paths(root=None) -> list[Path]:
    """The review analyses (``analyses/*.toml``) first, then the worked examples
    (``analyses/examples/*.toml``), below the project root (or ``root``)."""
    base = Path(root) if root else Path.cwd()
    return sorted((base / "analyses").glob("*.toml")) + sorted((base / "analyses" / "examples").glob("*.toml"))


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
                cache[spec.data_dir] = Evidence.load(spec.data_dir)
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
