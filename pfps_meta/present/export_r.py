"""The equivalent R script of one analysis of a spec: the same data and settings in metafor 3.8-1.

:func:`export_r` writes a self-contained script (needs only R and metafor; ``clubSandwich`` when the
analysis asks for CR2 inference) that

1. holds the analysis' data inline (``data.frame(...)``; every float written as Python's ``repr``, the
   shortest decimal that reads back as the same double, so R sees exactly our numbers);
2. computes the effect sizes with ``escalc`` when metafor has the same measure and options (MD with
   ``vtype="HO"`` for the pooled-SD variance, SMD with ``vtype`` LS/UB/AV, SMDH, ROM, RR, OR, RD with
   metafor's default ``add=1/2, to="only0"``), or carries our ``yi``/``vi`` when they come from a
   conversion metafor does not have (a CI read back to a variance, a rescaling to a target range,
   RevMan 5's SMD, the evidence base's sign rule): a comment then says which;
3. fits the model: ``rma(yi, vi, method=, test="knha"|"z", level=)`` for pairwise analyses (metafor's
   rma.uni), ``rma.mv(yi, vi|V, random = ~ 1 | a/b, ...)`` for multilevel analyses (with
   ``robust(..., clubSandwich=TRUE)`` for CR2), and for networks the contrast-based model of metafor's
   ``?dat.senn2013``: ``rma.mv(yi, V, mods = <treatments> - 1, random = ~ comp | study, rho = 1/2)``;
4. prints one line per quantity: ``PFPS_COMPARE <name> <metafor> <ours> <relative difference>``, then
   ``PFPS_MAX_REL_DIFF <value>``, where the relative difference is ``|m - o| / max(|m|, |o|)`` (0 when
   both are 0). ``validation/run_exported_r.py`` reads these lines.

Iterative estimators run at tight control (``threshold = 1e-12``, ``maxiter = 10000``), as the fixtures
of ``validation/`` do, so the comparison measures the models and not a stopping rule.

What is not exported raises :class:`~pfps_meta.errors.InputError` saying why (an analysis without data,
a multivariate model or formula moderators not translated yet), never a silently different model.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from pfps_meta.errors import InputError
from pfps_meta.evidence import specs

__all__ = ["export_r", "our_values", "parse_comparison", "r_number", "r_string", "r_data_frame", "ESCALC_MEASURES", "RMA_METHODS"]

#: our measure -> metafor's escalc measure, where the two compute the same thing
ESCALC_MEASURES = {"MD": "MD", "SMD": "SMD", "SMDH": "SMDH", "ROM": "ROM", "RR": "RR", "OR": "OR", "RD": "RD"}
#: our tau² estimator -> metafor's rma(method=)
RMA_METHODS = {"FE": "FE", "DL": "DL", "REML": "REML", "ML": "ML", "PM": "PM", "SJ": "SJ", "HE": "HE",
               "EB": "EB", "HS": "HS"}
#: our count methods -> metafor's function (common-effect models on the 2x2 tables)
COUNT_FUNCTIONS = {"MH": "rma.mh", "PETO": "rma.peto"}
_ARM_COLUMNS = ("n_exp", "mean_exp", "sd_exp", "n_ctrl", "mean_ctrl", "sd_ctrl")
_BINARY_COLUMNS = ("events_exp", "n_exp", "events_ctrl", "n_ctrl")
#: rma.mv's optimiser (nlminb) at tight tolerances; rel.tol alone stops it with "false convergence"
_MV_CONTROL = "control = list(iter.max = 10000, eval.max = 10000, rel.tol = 1e-12, x.tol = 1e-12, sing.tol = 1e-14)"
_CONTROL = "control = list(threshold = 1e-12, maxiter = 10000, tol = 1e-12)"   # tol: PM's and EB's uniroot
_COMPARE_FUNCTION = r'''
pfps_compare <- function(metafor, ours) {
  # one line per quantity: name, metafor's value, ours, |m - o| / max(|m|, |o|) (0 when both are 0)
  worst <- 0
  for (name in names(ours)) {
    m <- metafor[[name]]; o <- unname(ours[[name]])
    m <- if (is.null(m) || length(m) != 1) NA_real_ else unname(m)   # metafor has no such number
    scale <- max(abs(m), abs(o))
    rel <- if (is.na(m) || is.na(o)) NA else if (scale == 0) 0 else abs(m - o) / scale
    if (!is.na(rel)) worst <- max(worst, rel)
    cat(sprintf("PFPS_COMPARE %s %.17g %.17g %.3e\n", name, m, o, rel))
  }
  cat(sprintf("PFPS_MAX_REL_DIFF %.3e\n", worst))
}
'''


# ------------------------------------------------------------------------------------------------
# R literals


def r_number(value) -> str:
    """An R numeric literal that reads back as exactly ``value`` (``repr`` of the double; NA, Inf)."""
    if value is None:
        return "NA"
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InputError(f"value: {value!r} is not a number, so it has no R numeric literal") from None
    if math.isnan(x):
        return "NA"
    if math.isinf(x):
        return "Inf" if x > 0 else "-Inf"
    return repr(x)


def r_string(value) -> str:
    """An R string literal (JSON escapes are valid R escapes); None or NaN gives NA."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "NA"
    return json.dumps(str(value))


def _r_vector(values) -> str:
    values = list(values)
    numeric = all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
                  for v in values if v is not None)
    items = [r_number(v) if numeric else r_string(v) for v in values]
    return "c(" + ", ".join(items) + ")"


def r_data_frame(frame: pd.DataFrame, columns) -> str:
    """``data.frame(col = c(...), ..., stringsAsFactors = FALSE)`` of ``columns`` of ``frame``; numeric
    columns at full precision, text quoted."""
    parts = []
    for column in columns:
        series = frame[column]
        if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            values = [r_number(v) for v in series.to_numpy(float)]
        else:
            values = [r_string(None if pd.isna(v) else v) for v in series]
        parts.append(f"  {_r_name(column)} = c({', '.join(values)})")
    return "data.frame(\n" + ",\n".join(parts) + ",\n  stringsAsFactors = FALSE)"


def _r_level(level: float) -> str:
    """metafor's ``level`` in percent (95 for 0.95; rounded so that 0.9 gives 90, not 90.00000000000001)."""
    return repr(round(100 * float(level), 10))


def _r_name(column: str) -> str:
    text = str(column)
    if text.replace("_", "").replace(".", "").isalnum() and not text[0].isdigit():
        return text
    return "`" + text.replace("`", "") + "`"


def _named(values: dict) -> str:
    return "c(\n" + ",\n".join(f"  {json.dumps(k)} = {r_number(v)}" for k, v in values.items()) + ")"


# ------------------------------------------------------------------------------------------------
# the entry point


def export_r(spec_path, analysis_id: str) -> str:
    """The R script that runs analysis ``analysis_id`` of the spec file ``spec_path`` in metafor 3.8-1
    and prints metafor's numbers beside ours (see the module docstring for what it holds)."""
    return _build(spec_path, analysis_id)[0]


def our_values(spec_path, analysis_id: str) -> dict:
    """The numbers of ours that the script of :func:`export_r` compares with metafor's, by name (the names
    of its ``PFPS_COMPARE`` lines)."""
    return _build(spec_path, analysis_id)[1]


def parse_comparison(output: str) -> dict:
    """``{name: (metafor, ours, relative difference)}`` from the ``PFPS_COMPARE`` lines of a script's
    output (NA read as NaN); InputError when the output has none or lacks the closing
    ``PFPS_MAX_REL_DIFF`` line (R stopped before or during the comparison)."""
    if not isinstance(output, str):
        raise InputError(f"output must be the text R printed (got {type(output).__name__})")
    rows, finished = {}, False
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 5 and parts[0] == "PFPS_COMPARE":
            rows[parts[1]] = tuple(float("nan") if v in ("NA", "NaN") else float(v) for v in parts[2:])
        finished = finished or (len(parts) == 2 and parts[0] == "PFPS_MAX_REL_DIFF")
    if not rows:
        raise InputError("the R output has no PFPS_COMPARE line (did the script stop with an error?)")
    if not finished:
        raise InputError(f"the R output stops after {len(rows)} PFPS_COMPARE lines, without PFPS_MAX_REL_DIFF "
                         "(the script stopped with an error)")
    return rows


def _build(spec_path, analysis_id: str) -> tuple[str, dict]:
    if not isinstance(spec_path, (str, os.PathLike)):
        raise InputError(f"spec_path must be the path of an analysis spec (got {type(spec_path).__name__})")
    loaded = specs.load_all([Path(spec_path)])
    spec, evidence = loaded[0]
    analysis = next((a for a in spec.analyses if a.id == analysis_id), None)
    if analysis is None:
        known = ", ".join(a.id for a in spec.analyses)
        raise InputError(f"no analysis '{analysis_id}' in the spec (known: {known})", file=str(spec_path),
                         column="--analysis")
    run = specs.run_analysis(analysis, evidence)
    header = _header(spec, analysis)
    if analysis.model == "pairwise":
        body, ours = _pairwise(analysis, run)
    elif analysis.model == "multilevel":
        body, ours = _multilevel(analysis, run)
    elif analysis.model == "network":
        body, ours = _network(analysis, run)
    else:
        raise _not_exported(analysis, f"model '{analysis.model}' has no exported R equivalent yet "
                            "(rma.mv with struct= is not translated)")
    text = header + body + f"ours <- {_named(ours)}\n" + _COMPARE_FUNCTION + "pfps_compare(metafor, ours)\n"
    return text, ours


def _not_exported(analysis, why: str) -> InputError:
    return InputError(f"analysis '{analysis.key}' cannot be exported to R: {why}", file=str(analysis.source))


def _comment(text) -> str:
    """Text for an R comment: one line (a line break in a label would end the comment and start code)."""
    return " ".join(str(text).split())


def _header(spec, analysis) -> str:
    title = _comment(spec.review.get("title", ""))
    return (f"# The analysis '{_comment(analysis.key)}' ({_comment(analysis.label)}) of "
            f"{_comment(analysis.source.name)}{': ' + title if title else ''},\n"
            "# written by pfps-meta export-r for R metafor 3.8-1. It prints metafor's numbers beside\n"
            "# pfps-meta's (inlined below as `ours`) and their relative differences.\n"
            "suppressPackageStartupMessages(library(metafor))\n\n")


def _settings_comment(settings) -> str:
    return ("# settings: " + ", ".join(f"{k} = {v}" for k, v in settings.to_dict().items()
                                       if k in ("method", "ci_method", "pi_method", "i2_method", "level",
                                                "smd_convention", "vtype", "pooled_sd", "prediction_interval"))
            + "\n")


# ------------------------------------------------------------------------------------------------
# pairwise analyses: escalc + rma


def _escalc_call(analysis, studies: pd.DataFrame):
    """(R lines, True) computing yi, vi with escalc when metafor has the same measure and options and
    the studies carry the raw columns, else (None, reason)."""
    s, measure = analysis.settings, analysis.measure
    if measure not in ESCALC_MEASURES:
        return None, f"measure {measure!r} is not one of metafor's escalc measures here"
    if analysis.data is None:
        return None, ("effect sizes built from the evidence base (scale conversion to the target range, "
                      "the direction rule of `favourable`), which escalc does not do")
    if "conversion" in studies.columns and studies["conversion"].fillna("").astype(str).str.len().gt(0).any():
        return None, "some arms' means or SDs were derived from other statistics (see `conversion`)"
    if measure in ("RR", "OR", "RD"):
        if not set(_BINARY_COLUMNS) <= set(studies.columns) or studies[list(_BINARY_COLUMNS)].isna().any().any():
            return None, "the studies are given as effect estimates, not 2x2 tables"
        call = (f'escalc(measure = "{measure}", ai = events_exp, n1i = n_exp, ci = events_ctrl, n2i = n_ctrl, '
                'data = dat)')
        return call, True
    if not set(_ARM_COLUMNS) <= set(studies.columns) or studies[list(_ARM_COLUMNS)].isna().any().any():
        return None, "the studies are given as effect estimates (yi/vi or estimate and CI), not arm statistics"
    vtype = ""
    if measure == "SMD":
        if s.smd_convention != "metafor":
            return None, "RevMan 5's SMD (J = 1 - 3/(4N - 9), its own variance) is not an escalc measure"
        vtype = f', vtype = "{s.vtype}"'
    elif measure == "MD" and s.pooled_sd:
        vtype = ', vtype = "HO"'
    call = (f'escalc(measure = "{measure}", m1i = mean_exp, sd1i = sd_exp, n1i = n_exp, '
            f'm2i = mean_ctrl, sd2i = sd_ctrl, n2i = n_ctrl{vtype}, data = dat)')
    return call, True


def _pairwise_data(analysis, run) -> tuple[str, bool]:
    """The data block of a pairwise script and whether escalc computes yi, vi."""
    studies = run.result.studies
    call, how = _escalc_call(analysis, studies)
    if call is not None:
        cols = ["study", *(_BINARY_COLUMNS if analysis.measure in ("RR", "OR", "RD") else _ARM_COLUMNS)]
        text = (f"dat <- {r_data_frame(studies, cols)}\n"
                f"dat <- {call}\n")
        return text, True
    text = (f"# yi and vi are pfps-meta's, not escalc's: {how}.\n"
            f"dat <- {r_data_frame(studies, ['study', 'yi', 'vi'])}\n")
    return text, False


def _pairwise(analysis, run) -> tuple[str, dict]:
    if run.result is None:
        raise _not_exported(analysis, "no trial has the data to pool (see `pfps-meta reproduce`)")
    s, stats = analysis.settings, run.result.stats
    data, escalc = _pairwise_data(analysis, run)
    if "weight_user" in run.result.studies.columns:
        raise _not_exported(analysis, "user weights are not exported yet")
    if s.method in COUNT_FUNCTIONS:
        return _count_model(analysis, run, data, escalc)
    if s.method not in RMA_METHODS:
        raise _not_exported(analysis, f"method {s.method} has no metafor function (MH_DL is RevMan 5's "
                            "random-effects Mantel-Haenszel: tau² from the Mantel-Haenszel Q)")
    method = RMA_METHODS[s.method]
    test = "knha" if s.ci_method == "hksj" else "z"
    fit = (f'res <- rma(yi, vi, data = dat, method = "{method}", test = "{test}", level = {_r_level(s.level)}, '
           f'{_CONTROL})\n')
    lines = [_settings_comment(s), data, fit, "print(res)\n"]
    studies = run.result.studies
    theirs, ours = _pairwise_theirs(s, stats, escalc, studies["yi"].to_numpy(float), studies["vi"].to_numpy(float))
    return "".join(lines) + theirs, ours


def _pairwise_ours(s, stats, escalc: bool) -> dict:
    keys = ["estimate", "se", "statistic", "p", "ci_low", "ci_high"]
    if stats["k"] > 1:              # one study: metafor reports no tau2, Q or I2 (NA)
        keys += ["tau2", "q", "q_p", "i2"]
    if s.method != "FE" and s.i2_method == "tau2" and stats["k"] > 1:
        keys.append("h2")
    if s.prediction_interval and stats["k"] > 1:
        keys += ["pi_low", "pi_high"]
    if s.tau2_ci and s.method != "FE" and stats["k"] > 1 and np.isfinite(stats.get("tau2_ci_low", np.nan)):
        keys += ["tau2_ci_low", "tau2_ci_high"]
    # what we do not report (NaN: no prediction interval of a common-effect model) is not compared
    return {k: stats[k] for k in keys if stats.get(k) is not None and np.isfinite(stats[k])}


def _pairwise_theirs(s, stats, escalc: bool, yi, vi) -> tuple[str, dict]:
    ours = _pairwise_ours(s, stats, escalc)
    q_based = s.method == "FE" or s.i2_method == "q"
    lines = ["k <- res$k\n",
             "metafor <- list(estimate = res$b[1], se = res$se, statistic = res$zval, p = res$pval,\n"
             "                ci_low = res$ci.lb, ci_high = res$ci.ub, tau2 = res$tau2, q = res$QE, q_p = res$QEp,\n"
             + ("                i2 = max(0, 100 * (res$QE - (k - 1)) / res$QE))  # I2 from Q\n" if q_based else
                "                i2 = res$I2, h2 = res$H2)\n")]
    if "pi_low" in ours:
        lines.append(_prediction_lines(s))
    if "tau2_ci_low" in ours:
        lines.append("ci <- confint(res, control = list(tau2.max = 1000 * max(1, res$tau2), tol = 1e-12))$random  # Q-profile\n"
                     'metafor$tau2_ci_low <- ci["tau^2", "ci.lb"]; metafor$tau2_ci_high <- ci["tau^2", "ci.ub"]\n')
    if escalc:                      # escalc's effect sizes beside ours, study by study
        lines.append('for (i in seq_len(k)) {\n  metafor[[paste0("yi_", i)]] <- dat$yi[i]; '
                     'metafor[[paste0("vi_", i)]] <- dat$vi[i]\n}\n')
        for i, (y, v) in enumerate(zip(yi, vi), start=1):
            ours[f"yi_{i}"], ours[f"vi_{i}"] = float(y), float(v)
    return "".join(lines), ours


def _r_bool(value: bool) -> str:
    return "TRUE" if value else "FALSE"


def _count_model(analysis, run, data: str, escalc: bool) -> tuple[str, dict]:
    """rma.mh / rma.peto on the inline 2x2 tables, with our correction options as metafor's two-valued
    ``add``, ``to`` and ``drop00`` (first value: the study effects yi, vi; second: the pooled sums)."""
    s, stats = analysis.settings, run.result.stats
    if not escalc or analysis.measure not in ("OR", "RR", "RD"):
        raise _not_exported(analysis, f"{s.method} needs the 2x2 tables, and the data here are not 2x2 tables")
    function = COUNT_FUNCTIONS[s.method]
    measure = f'measure = "{analysis.measure}", ' if s.method == "MH" else ""
    correct = f", correct = {_r_bool(s.cmh_correct)}" if s.method == "MH" and analysis.measure == "OR" else ""
    fit = (f"res <- {function}({measure}ai = events_exp, n1i = n_exp, ci = events_ctrl, n2i = n_ctrl, data = dat, "
           f"add = c({r_number(s.mh_add)}, {r_number(s.mh_sums_add)}), to = c(\"{s.mh_to}\", \"{s.mh_sums_to}\"), "
           f"drop00 = c({_r_bool(s.mh_drop00)}, {_r_bool(s.mh_sums_drop00)}), level = {_r_level(s.level)}{correct})\n")
    keys = ["estimate", "se", "statistic", "p", "ci_low", "ci_high"]
    if stats.get("k_yi", stats["k"]) > 1:
        keys += ["q", "q_p", "i2", "h2"]
    ours = {k: stats[k] for k in keys}
    lines = ["# settings: " + f"method = {s.method} ({function}), measure = {analysis.measure}, level = {s.level}, "
             f"mh_add = {s.mh_add}, mh_to = {s.mh_to}, mh_drop00 = {s.mh_drop00}\n", data, fit, "print(res)\n",
             "metafor <- list(estimate = res$b[1], se = res$se, statistic = res$zval, p = res$pval,\n"
             "                ci_low = res$ci.lb, ci_high = res$ci.ub, q = res$QE, q_p = res$QEp, i2 = res$I2, "
             "h2 = res$H2)\n"]
    if s.method == "MH" and analysis.measure == "OR":
        for name, field in (("cmh", "MH"), ("cmh_p", "MHp"), ("tarone", "TA"), ("tarone_p", "TAp")):
            if stats.get(name) is not None and np.isfinite(stats[name]):
                ours[name] = float(stats[name])
                lines.append(f"metafor${name} <- res${field}\n")
    return "".join(lines), ours


def _prediction_lines(s) -> str:
    if s.pi_method == "auto":
        return ("pred <- predict(res)  # metafor's prediction interval (t(k-1) with knha, else normal)\n"
                "metafor$pi_low <- pred$pi.lb; metafor$pi_high <- pred$pi.ub\n")
    # an rma object stores alpha (1 - level) as res$level
    quantile = {"z": "qnorm(res$level / 2, lower.tail = FALSE)",
                "t": "qt(res$level / 2, k - 1, lower.tail = FALSE)",
                "t_k2": "qt(res$level / 2, k - 2, lower.tail = FALSE)"}[s.pi_method]
    return (f"# prediction interval by hand: mu -/+ {quantile} sqrt(tau2 + se^2) (pi_method = {s.pi_method})\n"
            f"half <- {quantile} * sqrt(res$tau2 + res$se^2)\n"
            "metafor$pi_low <- res$b[1] - half; metafor$pi_high <- res$b[1] + half\n")


# ------------------------------------------------------------------------------------------------
# multilevel analyses: rma.mv (+ robust with clubSandwich)


def _multilevel(analysis, run) -> tuple[str, dict]:
    """rma.mv(yi, vi | V, mods = ~ ..., random = ~ 1 | a/b, ...) on the inline rows; V by metafor's vcalc
    with the spec's arguments; CR2 by robust(..., clubSandwich = TRUE)."""
    fit, o = run.fit, analysis.options
    if fit is None:
        raise _not_exported(analysis, run.reason or "the model was not fitted")
    if analysis.data is None:
        raise _not_exported(analysis, "evidence-base multilevel rows (V from assumed correlations) are not "
                            "exported yet")
    levels, mods, Vspec = list(o["levels"]), list(o.get("mods") or []), o.get("V") or {}
    frame = run.effects
    extra = [o.get("robust_cluster")] + [_term_column(m) for m in mods] + \
        [Vspec.get(k) for k in ("cluster", "obs", "type", "time")]
    cols = list(dict.fromkeys(levels + ["yi", "vi"] + [c for c in extra if c]))
    data = frame[cols].copy()
    data["yi"], data["vi"] = frame["yi"].to_numpy(float), frame["vi"].to_numpy(float)
    test = "t" if o.get("test") == "t" else "z"
    formula = f"mods = ~ {' + '.join(_r_term(analysis, m) for m in mods)}, " if mods else ""
    lines = [f"# settings: method = {o['method']}, test = {test}, level = {analysis.settings.level}, "
             f"levels = {_comment(' / '.join(levels))}"
             f"{', moderators ' + _comment(', '.join(mods)) if mods else ''}\n",
             f"dat <- {r_data_frame(data, cols)}\n", _vcalc_line(Vspec),
             f'res <- rma.mv(yi, {"V" if Vspec else "vi"}, {formula}random = ~ 1 | {"/".join(_r_name(v) for v in levels)}, '
             f'data = dat, method = "{o["method"]}", test = "{test}", level = {_r_level(analysis.settings.level)},\n'
             f'              {_MV_CONTROL})\n',
             "print(res)\n", "metafor <- list(QE = res$QE, QEp = res$QEp, logLik = as.numeric(logLik(res)))\n"]
    d = fit.to_dict()
    ours = {"QE": d["qe"]["QE"], "QEp": d["qe"]["pval"],
            "logLik": d["fit_stats"].get(o["method"], {}).get("logLik", np.nan)}
    for i, coef in enumerate(d["coefficients"], start=1):
        for name, ours_key, r_key in (("estimate", "estimate", "b"), ("se", "se", "se"), ("statistic", "stat", "zval"),
                                      ("p", "pval", "pval"), ("ci_low", "ci_lb", "ci.lb"), ("ci_high", "ci_ub", "ci.ub")):
            ours[f"{name}_{i}"] = coef[ours_key]
            lines.append(f"metafor$`{name}_{i}` <- res${r_key}[{i}]\n")
    for i, comp in enumerate(d["variance_components"]["sigma2"], start=1):
        ours[f"sigma2_{i}"] = comp["estimate"]
        lines.append(f"metafor$sigma2_{i} <- res$sigma2[{i}]\n")
    if run.robust is not None:
        lines.append(_robust_lines(run.robust, o, ours))
    return "".join(lines), ours


def _term_column(term: str) -> str:
    """The column of a moderator term: ``x`` or ``C(x)``."""
    text = str(term).strip()
    return text[2:-1].strip() if text.startswith("C(") and text.endswith(")") else text


def _r_term(analysis, term: str) -> str:
    """A moderator in R: a column as it is, ``C(x)`` (a categorical moderator, treatment coding with the
    first level in sorted order as reference) as ``factor(x)``, which codes it the same way."""
    column = _term_column(term)
    if not column.replace("_", "").replace(".", "").isalnum():
        raise _not_exported(analysis, f"the moderator term {term!r} is not translated (a column or C(column) only)")
    return f"factor({_r_name(column)})" if column != str(term).strip() else _r_name(column)


def _vcalc_line(V: dict) -> str:
    """metafor's vcalc with the spec's V table (our vcalc follows metafor's; Pustejovsky's correlated-
    effects working model), or nothing when the sampling errors are independent."""
    if not V:
        return ""
    args = [f"cluster = {_r_name(V['cluster'])}"]
    args += [f"{r} = {_r_name(V[k])}" for k, r in (("obs", "obs"), ("type", "type"), ("time", "time1")) if V.get(k)]
    args += [f"{k} = {r_number(V[k])}" for k in ("rho", "phi") if V.get(k) is not None]
    return f"V <- vcalc(vi, {', '.join(args)}, data = dat)\n"


def _robust_lines(robust, o, ours: dict) -> str:
    r = robust.to_dict()
    if r["adjust"] != "CR2":
        raise InputError(f"cluster-robust adjustment {r['adjust']!r} is not exported (CR2 only)")
    lines = []
    for i, c in enumerate(r["coefficients"], start=1):
        for name, key, r_key in (("se", "se", "se"), ("t", "t", "zval"), ("df", "df", "ddf"), ("p", "p", "pval"),
                                 ("ci_low", "ci_low", "ci.lb"), ("ci_high", "ci_high", "ci.ub")):
            ours[f"robust_{name}_{i}"] = c[key]
            lines.append(f"metafor$robust_{name}_{i} <- rob${r_key}[{i}]\n")
    cluster = o.get("robust_cluster") or o["levels"][0]
    return (f"rob <- robust(res, cluster = dat${_r_name(cluster)}, clubSandwich = TRUE)  # CR2, Satterthwaite df\n"
            "print(rob)\n" + "".join(lines))


# ------------------------------------------------------------------------------------------------
# networks: the contrast-based model of metafor's ?dat.senn2013


_NETWORK_CONTRASTS = r'''
# Each arm against its study's first arm (MD = mean difference, variance sd^2/n of both arms); two
# contrasts of one study share the first arm, so they covary by its variance sd^2/n (exact V).
study_order <- factor(arms$study, levels = unique(arms$study))
con <- do.call(rbind, lapply(split(arms, study_order), function(a) data.frame(
  study = a$study[1], treat = a$treatment[-1], base = a$treatment[1],
  yi = a$mean[-1] - a$mean[1], vi = a$sd[-1]^2 / a$n[-1] + a$sd[1]^2 / a$n[1],
  vbase = a$sd[1]^2 / a$n[1], stringsAsFactors = FALSE)))
V <- diag(con$vi, nrow(con))
for (s in unique(con$study)) {
  rows <- which(con$study == s)
  for (i in rows) for (j in rows) if (i != j) V[i, j] <- con$vbase[i]
}
X <- sapply(treatments, function(t) (con$treat == t) - (con$base == t))
colnames(X) <- treatments
'''


def _network(analysis, run) -> tuple[str, dict]:
    fit = run.fit
    if fit is None:
        raise _not_exported(analysis, run.reason or "the network was not fitted")
    if analysis.measure != "MD":
        raise _not_exported(analysis, f"the network's {analysis.measure} contrasts are not translated yet (MD only)")
    if fit.ci_method != "wald" or fit.method not in ("REML", "ML", "FE"):
        raise _not_exported(analysis, f"method {fit.method} with ci_method {fit.ci_method}: metafor's rma.mv has "
                            "REML, ML and the common-effect model with Wald CIs here")
    arms = run.effects
    o = analysis.options
    frame = pd.DataFrame({"study": arms[o["study"]].astype(str), "treatment": arms[o["treatment"]].astype(str),
                          "n": arms["n"].to_numpy(float), "mean": arms["mean"].to_numpy(float),
                          "sd": arms["sd"].to_numpy(float)})
    treatments = [t for t in fit.treatments if t != fit.reference]
    level = _r_level(fit.level)
    if fit.method == "FE":
        model = f'res <- rma.mv(yi, V, mods = X, intercept = FALSE, data = con, method = "REML", sigma2 = 0, level = {level})\n'
    else:
        model = (f'res <- rma.mv(yi, V, mods = X, intercept = FALSE, random = ~ treat | study, rho = 1/2, data = con, '
                 f'method = "{fit.method}", level = {level},\n              {_MV_CONTROL})\n')
    lines = [f"# settings: method = {fit.method}, ci = wald, level = {fit.level}, reference = {_comment(fit.reference)}, "
             "tau2 shared by every contrast, correlation 1/2 within a study\n",
             f"arms <- {r_data_frame(frame, ['study', 'treatment', 'n', 'mean', 'sd'])}\n",
             f"treatments <- {_r_vector(treatments)}  # every treatment but the reference, {_comment(fit.reference)}\n",
             _NETWORK_CONTRASTS, model, "print(res)\n",
             "metafor <- list(tau2 = if (is.null(res$tau2)) 0 else res$tau2, Q = res$QE)\n"]
    d = fit.to_dict()
    ours = {"tau2": fit.tau2 if fit.method != "FE" else 0.0, "Q": d["Q"]["total"]}
    for row in d["versus_reference"]:
        t = row["treatment"]
        i = treatments.index(t) + 1
        name = "_".join(str(t).split())         # one word: the PFPS_COMPARE lines split on spaces
        for ours_key, r_key in (("estimate", "b"), ("se", "se"), ("ci_lb", "ci.lb"), ("ci_ub", "ci.ub"),
                                ("pval", "pval")):
            ours[f"{name}_{ours_key}"] = row[ours_key]
            lines.append(f'metafor[["{name}_{ours_key}"]] <- res${r_key}[{i}]\n')
    return "".join(lines), ours
