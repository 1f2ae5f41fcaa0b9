"""The report's content as one strict-JSON dict: what ``reports/report.json`` holds and what the Word and
Excel reports (:mod:`pfps_meta.present.report_office`) print.

:func:`collect` takes what :func:`pfps_meta.present.report.build_report` computes (the loaded specs and
one ``(spec, evidence, run_analysis(...))`` triple per analysis) and returns, cleaned by
:func:`pfps_meta.formatting.json_ready` (NaN and infinities become None)::

    {"title", "package": {"name", "version"},
     "reviews": [{"id", "title", "citation", "methods", "summary_of_findings": [row, ...],
                  "analyses": [{"key", "label", "measure", "scale", "status", "k_available", "k_expected",
                                "pooled": {...}, "studies": [...], "sensitivity": [...], "missing": [...],
                                "notes": [...]}],
                  "models": [{"key", "label", "model", "decision", "fitted", ...}],
                  "extraction": [row, ...], "completeness": [row, ...]}],
     "provenance": {"command", "inputs": [{"path", "sha256"}], "versions": {package: version}}}

Scales: the pooled and per-study estimates, confidence and prediction intervals are on the reporting
scale (a ratio measure pooled on the log scale is reported as exp(), as papers print it); ``yi``, ``vi``,
``se`` and tau² stay on the analysis scale, as metafor's ``rma`` reports them. The sensitivity rows are
what the HTML report shows: leave-one-out (metafor ``leave1out``), the influential studies by
``influence.rma.uni``'s criteria, Egger's regression test in both forms (metafor ``regtest``, model "lm"
and "rma"), Begg's rank correlation (``ranktest``), trim-and-fill (``trimfill``, L0) and the predictive
probability beyond the MCID.
"""

from __future__ import annotations

import hashlib
import platform
import sys
import warnings
from pathlib import Path

from pfps_meta import __version__
from pfps_meta.analysis import sensitivity
from pfps_meta.analysis.grade import summary_of_findings
from pfps_meta.conventions import COUNT_METHODS
from pfps_meta.effects import measures
from pfps_meta.evidence.curated import completeness
from pfps_meta.evidence.extraction import todo
from pfps_meta.evidence.specs import ModelAnalysisResult
from pfps_meta.formatting import json_ready

TITLE = "pfps-meta report"

#: the columns of every sensitivity row, in order (None where a row has no such value)
SENSITIVITY_COLUMNS = ("analysis", "kind", "study", "estimate", "ci_low", "ci_high", "tau2", "i2", "statistic",
                       "df", "p", "k0", "probability", "note")

_ARM_COLUMNS = ("n_exp", "mean_exp", "sd_exp", "n_ctrl", "mean_ctrl", "sd_ctrl")
_TABLES = ("trials.csv", "outcomes.csv", "effects.csv", "published.csv")


def collect(loaded, results, command: str = "pfps-meta report") -> dict:
    """The report's content (see the module docstring), JSON-ready.

    ``loaded``: :func:`pfps_meta.evidence.specs.load_all`'s output; ``results``: a list of
    ``(spec, evidence, run_analysis(analysis, evidence))`` in report order; ``command``: the command line
    that produced the report (printed in the provenance)."""
    reviews = [review_data(spec, evidence, [ar for s, _, ar in results if s is spec]) for spec, evidence in loaded]
    return json_ready({"title": TITLE, "package": {"name": "pfps-meta", "version": __version__},
                       "reviews": reviews, "provenance": provenance(results, command)})


def review_data(spec, evidence, runs) -> dict:
    """One review of :func:`collect`'s ``reviews`` (not yet cleaned by ``json_ready``): its methods, GRADE
    table, pairwise analyses, models, extraction to-do and completeness; ``runs``: its run_analysis results."""
    # here: report.py may import this module
    from pfps_meta.present.report import methods_paragraph, risk_of_bias_judgements

    models = [ar for ar in runs if isinstance(ar, ModelAnalysisResult)]
    pairwise = [ar for ar in runs if not isinstance(ar, ModelAnalysisResult)]
    out = {"id": spec.review["id"], "title": spec.review.get("title", spec.review["id"]),
           "citation": spec.review.get("citation") or None, "methods": None, "summary_of_findings": [],
           "analyses": [analysis_data(ar) for ar in pairwise], "models": [model_data(ar) for ar in models],
           "extraction": [], "completeness": []}
    if pairwise:
        out["methods"] = methods_paragraph(spec, [ar.analysis for ar in pairwise])
        rob = risk_of_bias_judgements(spec, evidence)        # as the HTML report grades it
        out["summary_of_findings"] = summary_of_findings(pairwise, evidence, risk_of_bias=rob).to_dict("records")
        out["extraction"] = extraction_rows(pairwise, evidence)
        out["completeness"] = completeness_rows(pairwise, evidence)
    return out


def analysis_data(ar) -> dict:
    """One pairwise analysis: its pooled result, study rows, sensitivity rows and what is missing."""
    a, res = ar.analysis, ar.result
    measure = measures.get(a.measure)
    status = "no data" if res is None else ("incomplete" if ar.studies.missing else "complete")
    return {"key": a.key, "label": a.label, "measure": a.measure, "scale": measure.name,
            "analysis_scale": measure.analysis_scale_label(),
            "status": status, "k_available": ar.k_available, "k_expected": ar.k_expected,
            "pooled": None if res is None else pooled_row(ar),
            "studies": [] if res is None else study_rows(ar),
            "sensitivity": [] if res is None else sensitivity_rows(ar),
            "missing": [{"trial": m["trial"], "reason": m["reason"]} for m in ar.studies.missing],
            "notes": [] if res is None else [str(n) for n in res.notes]}


def pooled_row(ar) -> dict:
    """The pooled result: estimate, CI and PI on the reporting scale; se, tau², I², Q and p as fitted."""
    a, res = ar.analysis, ar.result
    s, show = res.stats, measures.get(a.measure).to_reporting
    return {"analysis": a.key, "outcome": a.label, "measure": a.measure, "k": s["k"],
            "participants": ar.participants, "estimate": show(s["estimate"]), "ci_low": show(s["ci_low"]),
            "ci_high": show(s["ci_high"]), "pi_low": show(s["pi_low"]), "pi_high": show(s["pi_high"]),
            "se": s["se"], "p": s["p"], "tau2": s["tau2"], "tau2_ci_low": s["tau2_ci_low"],
            "tau2_ci_high": s["tau2_ci_high"], "i2": s["i2"], "q": s["q"], "q_df": s["q_df"], "q_p": s["q_p"],
            "method": res.method, "ci_method": res.ci_method, "level": res.level}


def study_rows(ar) -> list[dict]:
    """One row per study: the effect and its CI (reporting scale), yi and vi (analysis scale), the weight
    (%) and, for arm-level studies, n, mean and SD per arm."""
    studies, show = ar.result.studies, measures.get(ar.analysis.measure).to_reporting
    arms = [c for c in _ARM_COLUMNS if c in studies.columns]
    rows = []
    for row in studies.to_dict("records"):
        out = {"analysis": ar.analysis.key, "study": str(row["study"]), "estimate": show(row["yi"]),
               "ci_low": show(row["ci_low"]), "ci_high": show(row["ci_high"]), "yi": row["yi"], "vi": row["vi"],
               "weight": row["weight"]}
        out.update({c: row[c] for c in arms})
        rows.append(out)
    return rows


def _sensitivity_row(key, kind, **values) -> dict:
    return {column: values.get(column) for column in SENSITIVITY_COLUMNS} | {"analysis": key, "kind": kind}


def sensitivity_rows(ar) -> list[dict]:
    """The sensitivity analyses the report shows for one analysis (k >= 2; the small-study tests and
    trim-and-fill from k >= 3, as the report), each one flat row of :data:`SENSITIVITY_COLUMNS`."""
    res, a = ar.result, ar.analysis
    k, key, show = res.stats["k"], a.key, measures.get(a.measure).to_reporting
    if k < 2:
        return []
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sensitivity.SmallStudyWarning)
        loo = sensitivity.leave_one_out(res)
        for r in loo.to_dict("records"):
            rows.append(_sensitivity_row(key, "leave-one-out", study=str(r["study"]), estimate=show(r["estimate"]),
                                         ci_low=show(r["ci_low"]), ci_high=show(r["ci_high"]), tau2=r["tau2"],
                                         i2=r["i2"], p=r["p"]))
        if k >= 3 and res.settings.method in COUNT_METHODS:
            rows.append(_sensitivity_row(key, "small-study tests", note=f"not computed: {res.settings.method} pools "
                                         "2x2 tables, and Egger, Begg, trim-and-fill and influence refit by inverse "
                                         "variance (metafor's regtest, ranktest, trimfill take rma.uni fits)"))
        elif k >= 3:
            rows += _small_study_rows(res, key, show)
        if a.mcid is not None and a.favourable in ("lower", "higher"):
            threshold = -abs(a.mcid) if a.favourable == "lower" else abs(a.mcid)
            direction = "below" if a.favourable == "lower" else "above"
            prob = sensitivity.predictive_probability(res, threshold, direction)
            if prob["probability"] is not None:
                rows.append(_sensitivity_row(key, "predictive probability", probability=prob["probability"],
                                             note=f"true effect in a new trial {direction} {threshold:g} (the MCID); "
                                                  f"{prob['distribution']} prediction distribution"))
    return rows


def _small_study_rows(res, key, show) -> list[dict]:
    inf = sensitivity.influence(res)
    flagged = ", ".join(str(s) for s in inf.loc[inf["influential"], "study"]) or "none"
    rows = [_sensitivity_row(key, "influential studies", note=flagged + " (metafor's criteria on DFFITS, Cook's "
                                                                        "distance, hat)")]
    egger = sensitivity.egger(res)
    if egger["classic"] is None:
        rows.append(_sensitivity_row(key, "Egger's test", note=f"not computed ({egger['reason']})"))
    else:
        c, m = egger["classic"], egger["mixed"]
        rows.append(_sensitivity_row(key, "Egger's test, classic weighted regression", estimate=c["intercept"],
                                     statistic=c["statistic"], df=c["df"], p=c["p"], note="estimate: the intercept"))
        rows.append(_sensitivity_row(key, "Egger's test, mixed-effects form", statistic=m.get("statistic"),
                                     p=m["p"], note="metafor regtest's default"))
    begg = sensitivity.begg(res)
    rows.append(_sensitivity_row(key, "Begg's rank correlation", statistic=begg["tau"], p=begg["p"],
                                 note="statistic: Kendall's tau" if begg["p"] is not None
                                 else f"not computed ({begg['reason']})"))
    tf = sensitivity.trimfill(res)
    rows.append(_sensitivity_row(key, f"trim-and-fill ({tf['estimator']})", estimate=show(tf["estimate"]),
                                 ci_low=show(tf["ci_low"]), ci_high=show(tf["ci_high"]), tau2=tf.get("tau2"),
                                 k0=tf["k0"], note=f"studies filled on the {tf['side']}"
                                 + (f" ({tf['side_note']})" if tf.get("side_note") else "")))
    return rows


def extraction_rows(runs, evidence) -> list[dict]:
    """Per missing trial of each analysis: what is missing and where it is likely printed
    (:func:`pfps_meta.evidence.extraction.todo`), or the reason a data-file analysis gives."""
    rows = []
    for ar in runs:
        if not ar.studies.missing:
            continue
        if ar.analysis.trials and evidence is not None:
            for r in todo(ar, evidence).to_dict("records"):
                rows.append({"analysis": ar.analysis.key, "trial": r["Trial"], "timepoint": r["Timepoint"],
                             "missing": r["Missing"], "where": r["Where it is likely printed"],
                             "curated_notes": r["Curated notes"] or None})
        else:
            rows += [{"analysis": ar.analysis.key, "trial": m["trial"], "timepoint": None, "missing": m["reason"],
                      "where": None, "curated_notes": None} for m in ar.studies.missing]
    return rows


def completeness_rows(runs, evidence) -> list[dict]:
    """Per expected trial: outcome rows in data/outcomes.csv, how many are complete (n, mean, SD) or
    partial, and the between-group effect rows (:func:`pfps_meta.evidence.curated.completeness`)."""
    expected = sorted({t.trial for ar in runs for t in ar.analysis.trials})
    if evidence is None or not expected:
        return []
    comp = completeness(evidence)
    comp = comp[comp["trial_id"].isin(expected)]
    return [{"trial": r["trial_id"], "outcome_rows": int(r["rows"]), "complete": int(r["complete"]),
             "partial": int(r["partial"]), "effect_rows": int(r["effect_rows"])} for r in comp.to_dict("records")]


def model_data(ar) -> dict:
    """A multilevel, multivariate or network analysis: what was fitted and its printed summary."""
    return {"key": ar.analysis.key, "label": ar.analysis.label, "model": ar.model, "decision": ar.decision,
            "fitted": ar.fit is not None, "reason": ar.reason or None, "n_effects": ar.n_effects,
            "n_clusters": ar.n_clusters, "k_expected": ar.k_expected, "summary": str(ar)}


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


def input_paths(results) -> list[Path]:
    """Every input file the results were computed from: spec files, analyses' own data files, the
    evidence tables and an extraction sheet (resolved, sorted, each once)."""
    inputs = set()
    for spec, evidence, ar in results:
        inputs.add(Path(spec.path).resolve())
        if ar.analysis.data is not None:
            inputs.add(Path(ar.analysis.data).resolve())
        if evidence is not None:
            inputs.update((Path(evidence.data_dir) / name).resolve() for name in _TABLES)
            if evidence.outcomes.attrs.get("extraction"):
                inputs.add(Path(evidence.outcomes.attrs["extraction"]).resolve())
    return sorted(inputs)


def _matplotlib_version() -> str:
    """``matplotlib.__version__``, read from the installed distribution's metadata when matplotlib is not
    imported yet (the report may draw no figure, e.g. all taken from the figure cache): importing it only
    for its version costs about 0.1 s."""
    if "matplotlib" in sys.modules:
        return sys.modules["matplotlib"].__version__
    from importlib import metadata

    try:
        return metadata.version("matplotlib")
    except metadata.PackageNotFoundError:       # not installed as a distribution: ask the module
        import matplotlib

        return matplotlib.__version__


def provenance(results, command: str) -> dict:
    """The command, every input file with its SHA-256 (paths relative to the current folder) and the
    versions of the package and of the numerical libraries."""
    import numpy as np
    import pandas as pd
    import scipy

    root = Path.cwd().resolve()
    inputs = [{"path": _relative(p, root), "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
              for p in input_paths(results)]
    versions = {"pfps-meta": __version__, "python": platform.python_version(), "numpy": np.__version__,
                "scipy": scipy.__version__, "pandas": pd.__version__, "matplotlib": _matplotlib_version()}
    return {"command": command, "inputs": inputs, "versions": versions}


__all__ = ["collect", "review_data", "analysis_data", "pooled_row", "study_rows", "sensitivity_rows", "extraction_rows",
           "completeness_rows", "model_data", "input_paths", "provenance", "SENSITIVITY_COLUMNS", "TITLE"]
