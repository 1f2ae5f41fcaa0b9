"""Presentation of results as tables: pandas, Markdown and HTML. Never recomputes statistics."""

from __future__ import annotations

import html
import math

import numpy as np

from pfps_meta.effects import measures
from pfps_meta.conventions import TAU2_ESTIMATORS
from pfps_meta.formatting import format_p, frame_rows, renders
from pfps_meta.models.metareg import ResultFrame


def level_percent(level) -> str:
    """A confidence level as a percentage: 0.95 -> "95%", 0.9 -> "90%", 0.975 -> "97.5%"."""
    return f"{100 * float(level):g}%"


def ci_label(level) -> str:
    """The label of a CI at ``level``: "95% CI", "90% CI" (every label is formatted from the result's level)."""
    return f"{level_percent(level)} CI"


@renders("html", "MetaResult")
def result_html(result) -> str:
    """A compact HTML rendering of a :class:`~pfps_meta.models.univariate.MetaResult` for notebooks."""
    s = result.stats
    head = (f"<p><b>{html.escape(result.method)}</b> ({html.escape(result.ci_method)}), k = {s['k']}: "
            f"estimate {s['estimate']:.4f} [{ci_label(result.level)} {s['ci_low']:.4f}, {s['ci_high']:.4f}], "
            f"p = {s['p']:.4g}")
    if s["k"] >= 2:
        head += (f"; tau<sup>2</sup> = {s['tau2']:.4f}, I<sup>2</sup> = {s['i2']:.1f}%, "
                 f"{level_percent(result.level)} prediction interval [{s['pi_low']:.4f}, {s['pi_high']:.4f}]")
    head += "</p>"
    return head + result.to_frame().to_html(index=False, float_format=lambda x: f"{x:.4f}")


def _num(value, places=2):
    import math

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.{places}f}"


def summary_table(analysis_results) -> "pandas.DataFrame":
    """Per analysis: k, participants, estimate with CI, prediction interval, tau2, I2, p (reporting scale)."""
    import pandas as pd

    rows = []
    for ar in analysis_results:
        a, res = ar.analysis, ar.result
        tr = measures.get(a.measure).to_reporting
        s = res.stats if res is not None else {}
        rows.append({
            "analysis": a.key, "outcome": a.label, "measure": a.measure,
            "k": f"{ar.k_available}/{ar.k_expected}",
            "participants": ar.participants,
            "estimate": tr(s.get("estimate")), "ci_low": tr(s.get("ci_low")), "ci_high": tr(s.get("ci_high")),
            "pi_low": tr(s.get("pi_low")), "pi_high": tr(s.get("pi_high")),
            "tau2": s.get("tau2"), "i2": s.get("i2"), "p": s.get("p"),
            "model": f"{a.settings.method}, {a.settings.ci_method}",
            "level": res.level if res is not None else a.settings.level,
        })
    return pd.DataFrame(rows)


def display_frame(frame):
    """Summary table with the numbers formatted as text (estimate [CI], etc.) for Markdown and HTML."""
    import pandas as pd

    levels = list(frame["level"]) if "level" in frame.columns else [None] * len(frame)
    one_level = len(set(levels)) <= 1
    # one known level heads the column; several levels: each row names its own
    known = one_level and bool(levels) and levels[0] is not None
    head = f"[{ci_label(levels[0])}]" if known else "[CI]"
    pi_head = f"{level_percent(levels[0])} prediction interval" if known else "Prediction interval"

    def row_label(level):
        return "" if one_level or level is None else f"{ci_label(level)} "

    out = pd.DataFrame({
        "Analysis": frame["outcome"], "k (with data/expected)": frame["k"],
        "Participants": [("" if p is None or p != p else str(int(p))) for p in frame["participants"]],
        f"Estimate {head}": [f"{_num(e)} [{row_label(lv)}{_num(lo)}, {_num(hi)}]" if e == e and e is not None
                             else "no data"
                             for e, lo, hi, lv in zip(frame["estimate"], frame["ci_low"], frame["ci_high"], levels)],
        pi_head: [f"[{_num(lo)}, {_num(hi)}]" if lo == lo and lo is not None else ""
                  for lo, hi in zip(frame["pi_low"], frame["pi_high"])],
        "tau²": [_num(t, 3) for t in frame["tau2"]],
        "I²": [(_num(i, 0) + "%") if i == i and i is not None else "" for i in frame["i2"]],
        "p": [format_p(p, bare=True) for p in frame["p"]],
        "Model": frame["model"],
    })
    return out


_MARKDOWN_SPECIAL = set("\\`*_[]<>#|!~")


def plain_text(value) -> str:
    """One line of text with control characters (including terminal escape sequences) made visible."""
    text = str(value)
    if text.isprintable():          # the usual cell: no line break (none is printable), nothing to show
        return text
    text = " ".join(text.splitlines())
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def html_text(value) -> str:
    """Text from data for HTML: escaped, with control characters made visible."""
    return html.escape(plain_text(value))


_MARKDOWN_ESCAPES = str.maketrans({ch: "\\" + ch for ch in _MARKDOWN_SPECIAL})


def markdown_text(value) -> str:
    """Text from data made inert in Markdown: no raw HTML, links, emphasis, headings or table breaks
    (each of ``_MARKDOWN_SPECIAL`` gets a backslash)."""
    return plain_text(value).translate(_MARKDOWN_ESCAPES)


def to_markdown(frame) -> str:
    """A GitHub-flavoured Markdown table (no extra dependency); every cell is neutralised."""
    def cell(value):
        return markdown_text(value)

    header = "| " + " | ".join(cell(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame_rows(frame)]
    return "\n".join([header, rule, *body])


def html_links(value) -> str:
    """Cell text of web addresses (several separated by ' ; ') as links; anything that is not an http(s)
    address stays escaped text, so a ``javascript:`` address from data can never become a link."""
    parts = []
    for part in plain_text(value).split(" ; "):
        address = part.strip()
        if address.startswith(("http://", "https://")) and not any(c in address for c in "\"'<> "):
            label = address.split("://", 1)[1].split("/", 1)[0]
            parts.append(f'<a href="{html.escape(address)}">{html.escape(label)}</a>')
        else:
            parts.append(html.escape(part))
    return " ; ".join(parts)


def to_html(frame, css_class="table", link_columns=()) -> str:
    """An HTML table with every cell escaped; cells of ``link_columns`` become links (see html_links)."""
    head = "".join(f"<th>{html_text(c)}</th>" for c in frame.columns)
    cell = [html_links if column in link_columns else html_text for column in frame.columns]
    rows = "".join("<tr>" + "".join(f"<td>{show(v)}</td>" for show, v in zip(cell, row)) + "</tr>"
                   for row in frame_rows(frame))
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


@renders("text", "MetaResult")
def result_text(result, digits: int = 4) -> str:
    """A plain-text summary of a fitted result in the spirit of metafor's ``print.rma``."""
    s = result.stats
    f = _formatter(digits)
    pct = level_percent(result.level)
    lines = []
    settings = result.settings
    info = measures.get(result.measure)
    if result.method == "FE":
        lines.append(f"Common-effect (fixed-effect) model (k = {s['k']})")
    else:
        lines.append(f"Random-effects model (k = {s['k']}; tau^2 estimator: {result.method}, "
                     f"{TAU2_ESTIMATORS[result.method].label})")
    measure = result.measure or "effect"
    if info.ratio:
        measure = f"log {result.measure} (results on the log scale; back-transformed below)"
    if info.uses_smd_settings:
        measure += f" (Hedges' g, {settings.smd_convention} convention, variance {settings.vtype})"
    lines.append(f"Measure: {measure}; sign = experimental minus control")
    lines.append("")
    if s["k"] >= 2:
        if result.method != "FE":
            lines.append(f"tau^2 (estimated amount of total heterogeneity): {f(s['tau2'])}"
                         f"  [{pct} CI {f(s['tau2_ci_low'])}, {f(s['tau2_ci_high'])}]")
            lines.append(f"tau (square root of estimated tau^2 value):      {f(s['tau'])}")
        i2_ci = ""
        if s["i2_ci_low"] is not None and np.isfinite(s["i2_ci_low"]):
            i2_ci = f"  [{pct} CI {s['i2_ci_low']:.2f}%, {s['i2_ci_high']:.2f}%]"
        basis = "from Q" if (result.i2_method == "q" or result.method == "FE") else "from tau^2"
        lines.append(f"I^2 (total heterogeneity / total variability):   {s['i2']:.2f}%{i2_ci}  ({basis})")
        lines.append(f"H^2 (total variability / sampling variability):  {s['h2']:.2f}")
        lines.append("")
        lines.append(f"Test for heterogeneity: Q(df = {int(s['q_df'])}) = {s['q']:.4f}, "
                     f"p {format_p(s['q_p'])}")
        lines.append("")
    else:
        lines.append("k = 1: the pooled estimate is the single study's; no heterogeneity statistics.")
        lines.append("")
    test = settings.test
    hksj = settings.ci_method == "hksj" and s["k"] >= 2
    lines.append(f"Model results ({'Hartung-Knapp-Sidik-Jonkman, t(' + str(s['k'] - 1) + ')' if hksj else 'Wald, normal'}):")
    header = f"{'estimate':>10} {'se':>9} {test + 'val':>8} {'pval':>8} {'ci.lb':>10} {'ci.ub':>10}"
    lines.append(header)
    lines.append(f"{f(s['estimate']):>10} {f(s['se']):>9} {f(s['statistic']):>8} "
                 f"{format_p(s['p'], bare=True):>8} {f(s['ci_low']):>10} {f(s['ci_high']):>10}")
    if info.ratio and s["estimate"] is not None:
        lines.append(f"Back-transformed ({result.measure}, exp): {f(info.to_reporting(s['estimate']))} "
                     f"[{f(info.to_reporting(s['ci_low']))}, {f(info.to_reporting(s['ci_high']))}]")
    lines.append("")
    if s["k"] >= 2 and not settings.prediction_interval:
        lines.append("No prediction interval (prediction_interval = false).")
    elif s["k"] >= 2:
        dist = {"auto": "t(k-1)" if settings.ci_method == "hksj" else "normal", "z": "normal",
                "t": "t(k-1)", "t_k2": "t(k-2)"}[settings.pi_method]
        lines.append(f"{pct} prediction interval ({dist}): [{f(s['pi_low'])}, {f(s['pi_high'])}]")
    if not s["converged"]:
        lines.append(f"WARNING: the {result.method} estimator did not converge "
                     f"({s['iterations']} iterations); treat tau^2 and everything after it with care.")
    for note in result.notes:
        lines.append(f"Note: {note}")
    converted = [(row["study"], row["conversion"]) for row in result.studies.to_dict("records")
                 if row.get("conversion")]
    if converted:
        lines.append("")
        lines.append(f"Converted from what the papers print ({len(converted)} of {s['k']} studies; "
                     "the means and SDs used are in --format json):")
        lines += [f"  {study}: {rule}" for study, rule in converted]
    lines.append("")
    lines.append("Studies:")
    table = result.studies[["study", "yi", "se", "ci_low", "ci_high", "weight"]].copy()
    lines.append(table.to_string(index=False, float_format=lambda x: f"{x:.{digits}f}"))
    return "\n".join(lines)


def _formatter(digits):
    def f(x):
        if x is None or (isinstance(x, float) and not math.isfinite(x)):
            return "NA"
        return f"{x:.{digits}f}"
    return f


# --------------------------------------------------------------------------------------------------
# Prints of the sensitivity, small-study and meta-regression results, in metafor's manner: a title
# line naming the model, the scale, then a coefficient table (estimate, se, zval or tval, pval, ci.lb,
# ci.ub) or the test. Every renderer reads only the result's keys, columns and display attributes, so
# the same print serves a fresh result and one rebuilt from its JSON (``format_sensitivity``).


def _attr(obj, name, default=None):
    """A display fact of a result: a ResultDict attribute, a ResultFrame's meta, or a key."""
    holder = getattr(obj, "attributes", None)
    if holder is None:
        holder = getattr(obj, "meta", None) or {}
    value = holder.get(name, default)
    if value is None and isinstance(obj, dict):
        value = obj.get(name, default)
    return value


def _scale_note(obj) -> str:
    scale = _attr(obj, "scale")
    if not scale or scale == "effect":
        return ""
    if str(scale).startswith("log "):
        return f"; estimates on the {scale} scale (exp() gives the {str(scale)[4:]})"
    return f"; estimates as {scale}"


def _model_words(obj) -> str:
    method, ci = _attr(obj, "method"), _attr(obj, "ci_method")
    words = [w for w in (method, {"hksj": "Knapp-Hartung", "wald": "Wald"}.get(ci, ci)) if w]
    return ", ".join(words)


def _fixed(value, digits=4, width=0) -> str:
    from pfps_meta.formatting import format_number

    text = format_number(value, digits) if not isinstance(value, str) else value
    return f"{text:>{width}}" if width else text


def _coefficient_lines(rows, stat_name) -> list:
    """metafor's coefficient table: one line per (name, estimate, se, statistic, p, ci.lb, ci.ub)."""
    width = max([len(str(r[0])) for r in rows] + [4])
    lines = [f"{'':<{width}} {'estimate':>9} {'se':>8} {stat_name:>8} {'pval':>7} {'ci.lb':>9} {'ci.ub':>9}"]
    for name, est, se, stat, p, lo, hi in rows:
        lines.append(f"{str(name):<{width}} {_fixed(est, 4, 9)} {_fixed(se, 4, 8)} {_fixed(stat, 4, 8)} "
                     f"{format_p(p, bare=True):>7} {_fixed(lo, 4, 9)} {_fixed(hi, 4, 9)}")
    return lines


def _test_line(statistic_name, df, q, p) -> str:
    """``QM(df = 2) = 1.2850, p-val = 0.5260`` or ``F(df1 = 2, df2 = 9) = ..., p-val = ...``."""
    df = list(df) if isinstance(df, (list, tuple)) else [df]
    if len(df) == 2 and df[1] is not None:
        return f"F(df1 = {df[0]}, df2 = {df[1]}) = {_fixed(q)}, p-val {format_p(p)}"
    return f"{statistic_name}(df = {df[0]}) = {_fixed(q)}, p-val {format_p(p)}"


def _frame_text(frame, columns, digits=4) -> str:
    """Columns of a result table (renamed old -> new; missing ones left out) as aligned text."""
    import pandas as pd

    shown = pd.DataFrame({new: frame[old] for old, new in columns.items() if old in frame.columns})
    return shown.to_string(index=False, float_format=lambda x: f"{x:.{digits}f}", na_rep="NA")


def _regression_dict(obj) -> dict:
    return obj.to_dict() if hasattr(obj, "summary_frame") else dict(obj)


@renders("text", "MetaRegression")
@renders("text", "MetaRegressionSummary")
def regression_text(obj) -> str:
    """A meta-regression as metafor's ``print.rma.uni`` prints one with moderators."""
    d = _regression_dict(obj)
    method, hksj = d["method"], d["ci"] == "hksj"
    coefs = d["coefficients"]
    lines = [f"{'Fixed-Effects with Moderators' if method == 'FE' else 'Mixed-Effects'} Model (k = {d['k']}"
             + ("" if method == "FE" else f"; tau^2 estimator: {method}") + ")"]
    if d.get("formula"):
        lines.append(f"Moderators: {d['formula']}")
    for factor, level in (d.get("reference_levels") or {}).items():
        lines.append(f"{factor}: reference level '{level}' (each {factor}[level] coefficient is that level minus it)")
    scale = _scale_note({"scale": _measure_scale(d.get("measure"))}).lstrip("; ")
    if scale:
        lines.append(scale[0].upper() + scale[1:] + ("; coefficients are differences on that scale" if "log" in scale
                                                     else ""))
    lines.append("")
    if method != "FE":
        lines += [f"tau^2 (estimated amount of residual heterogeneity):     {_fixed(d['tau2'])}",
                  f"tau (square root of estimated tau^2 value):             "
                  f"{_fixed(None if d['tau2'] is None else math.sqrt(max(d['tau2'], 0)))}"]
    lines += [f"I^2 (residual heterogeneity / unaccounted variability): {_fixed(d['i2'], 2)}%",
              f"H^2 (unaccounted variability / sampling variability):   {_fixed(d['h2'], 2)}"]
    if d.get("r2") is not None:
        lines.append(f"R^2 (amount of heterogeneity accounted for):            {_fixed(d['r2'], 2)}%")
    lines += ["", "Test for Residual Heterogeneity:", _test_line("QE", [d["qe_df"]], d["qe"], d["qe_p"]), ""]
    tested = [c["term"] for c in coefs if c["term"] != "intercept"]
    if tested:
        lines += [f"Test of Moderators (coefficients {', '.join(tested)}):",
                  _test_line("QM", d["qm_df"], d["qm"], d["qm_p"]), ""]
    dist = f"Knapp-Hartung, t({_fixed(d['df'], 0)})" if hksj else "Wald, normal"
    lines += [f"Model Results ({dist}; {_level_text(d.get('level'))} CIs):", ""]
    lines += _coefficient_lines([(c["term"], c["estimate"], c["se"], c["statistic"], c["p"], c["ci_low"],
                                  c["ci_high"]) for c in coefs], "tval" if hksj else "zval")
    if not d.get("converged", True):
        lines.append(f"WARNING: the {method} estimator did not converge.")
    return "\n".join(lines)


def _measure_scale(measure) -> str:
    if not measure:
        return ""
    return f"log {measure}" if measures.get(measure).ratio else str(measure)


def _level_text(level) -> str:
    return level_percent(level) if level is not None else "95%"


@renders("text", "AnovaResult")
def anova_text(obj) -> str:
    """metafor's ``anova(res, btt=)`` / ``anova(res, X=)`` print, naming the coefficients tested."""
    if "combinations" in obj:
        combos = obj["combinations"]
        import pandas as pd

        frame = pd.DataFrame(combos)
        frame.insert(0, "hypothesis", [f"{i + 1}: L{i + 1} beta = 0" for i in range(len(frame))])
        stat = "tval" if obj["distribution"] == "F" else "zval"
        lines = ["Hypotheses (rows of X):", _frame_text(frame, {"hypothesis": "", "estimate": "estimate",
                                                                  "se": "se", "statistic": stat, "p": "pval"})]
        return "\n".join(lines + ["", "Omnibus Test of Hypotheses:", _test_line("QM", obj["df"], obj["qm"], obj["p"])])
    positions = ", ".join(str(i) for i in obj.get("positions", []))
    where = f"; 0-based positions {positions}" if positions else ""
    return (f"Test of Moderators (coefficients {', '.join(obj['coefficients'])}{where}):\n"
            + _test_line("QM", obj["df"], obj["qm"], obj["p"]))


@renders("text", "LikelihoodRatioResult")
def likelihood_ratio_text(obj) -> str:
    """metafor's ``anova(full, reduced)`` print."""
    return "\n".join([f"Likelihood-ratio test of nested models ({obj['method']} likelihoods):",
                      f"{'':8} {'logLik':>10} {'AIC':>10}",
                      f"{'Full':8} {_fixed(obj['loglik_full'], 4, 10)} {_fixed(obj['aic_full'], 4, 10)}",
                      f"{'Reduced':8} {_fixed(obj['loglik_reduced'], 4, 10)} {_fixed(obj['aic_reduced'], 4, 10)}",
                      f"LRT = {_fixed(obj['lrt'])}, df = {obj['df']}, p-val {format_p(obj['p'])}"])


@renders("text", "ModeratorPermutationResult")
def moderator_permutation_text(obj) -> str:
    """metafor's ``permutest`` print for a meta-regression."""
    how = (f"exact: all {obj['n']:,} orderings" if obj["exact"]
           else f"{obj['n']:,} random orderings, seed {obj['seed']}")
    frame = obj.to_frame()
    lines = [f"Permutation test of the moderators ({how}):",
             f"Test of Moderators: permutation p-val {format_p(obj['qm_p'])}", "",
             _frame_text(frame, {"term": "", "estimate": "estimate", "statistic": _attr(obj, "test", "z") + "val",
                                 "permutation_p": "pval*"})]
    return "\n".join(lines + ["(* permutation p-values)"])


_CASE_COLUMNS = {"study": "study omitted", "k": "k", "estimate": "estimate", "se": "se", "ci_low": "ci.lb",
                 "ci_high": "ci.ub", "p": "pval", "q": "Q", "q_p": "Qp", "tau2": "tau2", "i2": "I2", "h2": "H2"}


@renders("text", "LeaveOneOutResult")
def leave_one_out_text(obj) -> str:
    """metafor's ``leave1out`` print: the pooled result with each study omitted."""
    head = f"Leave-one-out analysis ({_model_words(obj)}; k = {_attr(obj, 'k', len(obj) or '?')}{_scale_note(obj)}):"
    return head + "\n" + _frame_text(obj, _CASE_COLUMNS)


@renders("text", "CumulativeResult")
def cumulative_text(obj) -> str:
    """metafor's ``cumul`` print: row i pools the first i studies."""
    columns = {**_CASE_COLUMNS, "study": "study added"}
    head = (f"Cumulative meta-analysis, ordered by {_attr(obj, 'order', 'the table order')} ({_model_words(obj)}"
            f"{_scale_note(obj)}):")
    return head + "\n" + _frame_text(obj, columns)


@renders("text", "InfluenceResult")
def influence_text(obj) -> str:
    """metafor's ``influence`` print (``*`` marks an influential study by metafor's criteria)."""
    import pandas as pd

    frame = pd.DataFrame(obj).copy()
    frame["inf"] = ["*" if flag else "" for flag in frame["influential"]]
    columns = {"study": "study", "rstudent": "rstudent", "dffits": "dffits", "cook_d": "cook.d", "cov_r": "cov.r",
               "tau2_del": "tau2.del", "q_del": "QE.del", "hat": "hat", "weight": "weight", "inf": "inf"}
    return (f"Influence diagnostics ({_model_words(obj)}; metafor influence()):\n" + _frame_text(frame, columns)
            + "\n(* influential: |dffits| > 3 sqrt(p/(k-p)), P(chi2 > cook.d) > 0.5, or hat > 3p/k)")


def _low_power(obj) -> list:
    k = obj.get("k", _attr(obj, "k"))
    if obj.get("low_power"):
        return [f"With k = {k} < 10 studies the test has little power: a large p is weak evidence of no asymmetry."]
    return []


@renders("text", "EggerResult")
def egger_text(obj) -> str:
    """Egger's test in both forms (metafor ``regtest``), each named, as the forms disagree in practice."""
    lines = [f"Regression test for funnel plot asymmetry (Egger), k = {obj.get('k')}{_scale_note(obj)}"]
    if obj.get("classic") is None:
        return "\n".join(lines + [f"not computed: {obj.get('reason')}"])
    c, m = obj["classic"], obj["mixed"]
    lines += [f"  Egger, classic weighted regression (metafor regtest(model = 'lm'); what most papers report):",
              f"    intercept (bias) {_fixed(c['intercept'])}, se {_fixed(c['se'])}, t({c['df']}) = "
              f"{_fixed(c['statistic'])}, p-val {format_p(c['p'])}; limit estimate (se -> 0) {_fixed(c['limit_estimate'])}",
              f"  Egger, mixed-effects meta-regression on the SE (metafor regtest() default; {_model_words(obj)}):",
              f"    coefficient of sei {_fixed(m['coefficient'])}, se {_fixed(m['se'])}, "
              + (f"t({m['df']})" if m.get("df") is not None else "z") + f" = {_fixed(m['statistic'])}, "
              f"p-val {format_p(m['p'])}; limit estimate (se -> 0) {_fixed(m['limit_estimate'])}"]
    return "\n".join(lines + _low_power(obj))


@renders("text", "BeggResult")
def begg_text(obj) -> str:
    """Begg and Mazumdar's rank correlation (metafor ``ranktest``)."""
    head = f"Rank correlation test for funnel plot asymmetry (Begg), k = {obj.get('k')}"
    if obj.get("p") is None:
        return f"{head}\nnot computed: {obj.get('reason')}"
    how = "exact" if obj.get("exact") else "normal approximation (ties)"
    return "\n".join([head, f"Kendall's tau = {_fixed(obj['tau'])}, p-val {format_p(obj['p'])} ({how})",
                      *_low_power(obj)])


@renders("text", "TrimFillResult")
def trimfill_text(obj) -> str:
    """Duval and Tweedie's trim-and-fill (metafor ``trimfill``): studies filled and the adjusted estimate."""
    scale = str(_attr(obj, "scale") or "")
    lines = [f"Trim-and-fill ({obj['estimator']} estimator; {_model_words(obj)}{_scale_note(obj)}):",
             f"Estimated number of missing studies on the {obj['side']} side: {obj['k0']}"]
    if obj.get("side_note"):
        lines.append(f"({obj['side_note']})")
    se = obj.get("se")
    stat = obj["estimate"] / se if se else None
    rows = [("adjusted", obj["estimate"], se, stat, _attr(obj, "p"), obj["ci_low"], obj["ci_high"])]
    lines += _coefficient_lines(rows, "tval" if _attr(obj, "ci_method") == "hksj" else "zval")
    if scale.startswith("log "):
        lines.append(f"Back-transformed ({scale[4:]}, exp): {_fixed(math.exp(obj['estimate']))} "
                     f"[{_fixed(math.exp(obj['ci_low']))}, {_fixed(math.exp(obj['ci_high']))}]")
    lines.append(f"tau^2 of the filled data: {_fixed(obj.get('tau2'))}")
    return "\n".join(lines + _low_power(obj))


@renders("text", "SubgroupResult")
def subgroup_text(obj) -> str:
    """Subgroup estimates and the test for subgroup differences, as R meta's print of a ``byvar`` analysis."""
    import pandas as pd

    common, test = obj["tau2"] == "common", obj["test"]
    by = _attr(obj, "by", "subgroup")
    how = ("one tau^2 shared by the subgroups (metafor rma(mods = ~ factor(g)))" if common else
           "a tau^2 for each subgroup (R meta's default, RevMan)")
    frame = pd.DataFrame(obj["groups"])
    lines = [f"Subgroup analysis by {by}, {how}; {_model_words(obj)}{_scale_note(obj)}:",
             _frame_text(frame, {"group": by, "k": "k", "estimate": "estimate", "se": "se", "ci_low": "ci.lb",
                                 "ci_high": "ci.ub", "tau2": "tau2", "i2": "I2", "p": "pval"}), ""]
    df = test["df"]
    if common:
        lines += ["Test for subgroup differences (omnibus test of the subgroup coefficients):",
                  "  " + _test_line("QM", df, test["q"], test["p"])]
    else:
        lines += ["Test for subgroup differences (between groups, common-effect Q of the subgroup estimates):",
                  f"  Q = {_fixed(test['q'])}, d.f. = {df}, p-value {format_p(test['p'])}"]
    return "\n".join(lines)


@renders("text", "PermutationResult")
def permutation_text(obj) -> str:
    """The permutation test of the pooled effect (metafor ``permutest``), saying how it was run."""
    requested, n = obj.get("requested", _attr(obj, "requested")), obj["n"]
    if obj["exact"]:
        how = f"exact enumeration of all {n:,} sign permutations"
        if requested and requested != n:
            how += f", used instead of {requested:,} random ones"
    else:
        how = f"{n:,} random sign permutations, seed {obj['seed']}"
    return (f"Permutation test of the pooled effect ({how}):\n"
            f"  observed statistic {_fixed(obj['statistic'])}, permutation p-val {format_p(obj['p'])}"
            + (f" (model p-val {format_p(_attr(obj, 'p_model'))})" if _attr(obj, "p_model") is not None else ""))


@renders("text", "BootstrapResult")
def bootstrap_text(obj) -> str:
    """The bootstrap percentile interval of tau^2."""
    return (f"Bootstrap of tau^2 ({obj['n']:,} resamples of the studies, seed {obj['seed']}): tau^2 = "
            f"{_fixed(obj['tau2'])}, {_level_text(obj.get('level'))} percentile interval "
            f"[{_fixed(obj['ci_low'])}, {_fixed(obj['ci_high'])}]")


@renders("text", "PredictiveProbabilityResult")
def predictive_probability_text(obj) -> str:
    """The chance that a new trial's true effect lies beyond the threshold."""
    where = f"{obj['direction']} {obj['threshold']:g}" + (f" ({_attr(obj, 'scale')} scale)" if _attr(obj, "scale")
                                                          not in (None, "effect") else "")
    if obj.get("probability") is None:
        return f"Predictive probability that a new trial's true effect is {where}: not computed ({obj.get('reason')})"
    return (f"Predictive probability that a new trial's true effect is {where}: {_fixed(obj['probability'], 3)} "
            f"({obj.get('distribution')} predictive distribution)")


@renders("text", "Tau2Uncertainty")
def tau2_uncertainty_text(obj) -> str:
    """The SE of tau^2 and its profile-likelihood CI."""
    if obj.get("se") is None:
        return f"tau^2 uncertainty: not computed ({obj.get('reason')})"
    return (f"tau^2 = {_fixed(_attr(obj, 'tau2'))}, se {_fixed(obj['se'])}; {_level_text(obj.get('level'))} "
            f"profile-likelihood CI [{_fixed(obj['pl_low'])}, {_fixed(obj['pl_high'])}]"
            + (f" ({obj['reason']})" if obj.get("reason") else ""))


# Preset diffs (analysis/presets.preset_diff) and reproduce rows (analysis/reproduce.reproduce_table) are
# DataFrames where they are computed; these views give them the same print, to_dict and notebook table.


class PresetDiff(ResultFrame):
    """``preset_diff``'s table (quantity, one column per preset, difference) as a printable result."""


class ReproduceTable(ResultFrame):
    """``reproduce_table``'s rows (published vs reproduced per analysis) as a printable result."""


def preset_diff_view(frame, analysis=None) -> PresetDiff:
    """The table of :func:`pfps_meta.analysis.presets.preset_diff`, printable (``print``, ``_repr_html_``,
    ``to_frame``, strict-JSON ``to_dict``); ``analysis`` names it in the print."""
    import pandas as pd

    columns = [c for c in pd.DataFrame(frame).columns if c not in ("quantity", "difference")]
    return PresetDiff.of(frame, analysis=analysis, presets=columns)


def reproduce_view(rows) -> ReproduceTable:
    """Rows of :func:`pfps_meta.analysis.reproduce.reproduce_rows` (or its table), printable."""
    import pandas as pd

    return ReproduceTable.of(pd.DataFrame(list(rows) if isinstance(rows, list) else rows))


@renders("text", "PresetDiff")
def preset_diff_text(obj) -> str:
    """Settings, then each statistic and study value under the two presets, and their difference."""
    import pandas as pd

    presets = _attr(obj, "presets") or []
    frame = pd.DataFrame(obj).astype(object).where(pd.DataFrame(obj).notna(), None)
    title = " vs ".join(str(p) for p in presets)
    name = _attr(obj, "analysis")
    lines = [f"Preset comparison{f' for {name}' if name else ''}: {title} (difference = second - first)"]
    width = max([len(str(q)) for q in frame["quantity"]] + [8])
    lines.append(f"{'quantity':<{width}} " + " ".join(f"{str(p):>14}" for p in presets) + f" {'difference':>12}")
    for row in frame.to_dict("records"):
        cells = [row.get(p) for p in presets]
        shown = [_fixed(c, 6) if isinstance(c, (int, float)) and not isinstance(c, bool) else str(c) for c in cells]
        diff = row.get("difference")
        lines.append(f"{str(row['quantity']):<{width}} " + " ".join(f"{c:>14}" for c in shown)
                     + f" {(_fixed(diff, 6) if diff is not None else ''):>12}")
    return "\n".join(lines)


@renders("text", "RobRefit")
def rob_refit_text(obj) -> str:
    """A risk-of-bias sensitivity re-fit: the rule, which studies it kept and left out, then the re-fit's print."""
    def listed(studies):
        return ", ".join(map(str, studies)) or "none"

    lines = [f"Risk-of-bias sensitivity analysis: {obj.rule}",
             f"k = {len(obj.kept)} of {len(obj.kept) + len(obj.excluded)} studies kept; "
             f"left out: {listed(obj.excluded)}; without an overall judgement: {listed(obj.unassessed)}", ""]
    lines.append("No study is left to pool." if obj.result is None else str(obj.result))
    return "\n".join(lines)


@renders("text", "ReproduceTable")
def reproduce_text(obj) -> str:
    """The published vs reproduced table of ``pfps-meta reproduce``."""
    from pfps_meta.analysis.reproduce import format_table

    return "Published vs reproduced estimates:\n" + format_table(pd_records(obj))


def pd_records(frame) -> list:
    import pandas as pd

    return pd.DataFrame(frame).to_dict("records")


_HTML_TYPES = ("MetaRegression", "MetaRegressionSummary", "AnovaResult", "LikelihoodRatioResult",
               "ModeratorPermutationResult", "LeaveOneOutResult", "CumulativeResult", "InfluenceResult",
               "EggerResult", "BeggResult", "TrimFillResult", "SubgroupResult", "PermutationResult",
               "BootstrapResult", "PredictiveProbabilityResult", "Tau2Uncertainty", "PresetDiff", "ReproduceTable", "RobRefit")


def result_html_view(obj) -> str:
    """A notebook view of any of the results above: the print's heading lines, then ``to_frame()`` as a table
    (every cell escaped), then the print's test lines."""
    from pfps_meta.formatting import render

    text = render(obj, "text").split("\n")
    frame = obj.to_frame()
    for column in frame.columns:        # p-values through the one formatter (0.0123, <.0001)
        if str(column) in ("p", "pval", "q_p", "qm_p") or str(column).endswith("_p"):
            frame[column] = [format_p(v, bare=True) if v is None or isinstance(v, (int, float)) else v
                             for v in frame[column]]
    table = frame.to_html(index=False, escape=True, float_format=lambda x: f"{x:.4f}", na_rep="NA")
    return (f"<div class=\"pfps-result\"><p><b>{html_text(text[0])}</b></p>{table}"
            f"<pre>{html.escape(chr(10).join(text[1:]))}</pre></div>")


for _name in _HTML_TYPES:
    renders("html", _name)(result_html_view)
