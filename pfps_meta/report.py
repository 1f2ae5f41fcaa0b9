"""``pfps-meta report``: every analysis in analyses/ turned into a self-contained HTML and a Markdown report.

Deterministic: no timestamps; figures are written without dates; two runs give identical files.
Every output is written atomically (to a temporary file in the same folder, then renamed), so an
interrupted run never leaves a half-written report. Text from data files is HTML-escaped.
"""

from __future__ import annotations

import base64
import hashlib
import html
import platform
import sys
from pathlib import Path

from . import __version__, measures
from .analyses import load_all, run_analysis
from .conventions import CI_METHODS, I2_METHODS, PI_METHODS, SMD_CONVENTIONS, SMD_VTYPES, TAU2_ESTIMATORS
from .evidence import completeness
from .grade import summary_of_findings
from .outputs import atomic_write_text
from .reproduce import format_table, preset_statuses, reproduce_rows
from .tables import display_frame, summary_table, to_html, to_markdown

def methods_paragraph(spec, analyses) -> str:
    """A methods paragraph generated from the settings actually used (texts from conventions)."""
    settings = [a.settings for a in analyses]
    methods = sorted({s.method for s in settings})
    cis = sorted({s.ci_method for s in settings})
    parts = [f"Analyses of {html.escape(spec.review.get('title', spec.review['id']))} were pooled with "
             + "; ".join(TAU2_ESTIMATORS[m].methods_text for m in methods) + "."]
    parts.append("Confidence intervals for the pooled effect used " + " and ".join(CI_METHODS[c] for c in cis) + ".")
    smd = [a.settings for a in analyses if measures.get(a.measure).uses_smd_settings]
    if smd:
        conv = sorted({(s.smd_convention, s.vtype) for s in smd})
        parts.append("Standardised mean differences are Hedges' g with "
                     + " and ".join(SMD_CONVENTIONS[c] + ("" if c == "revman5" else f" and the {SMD_VTYPES[v]}")
                                    for c, v in conv) + ".")
    if any(a.measure == "MD" for a in analyses):
        pooled = sorted({a.settings.pooled_sd for a in analyses if a.measure == "MD"})
        parts.append("Mean differences use " + " and ".join("pooled" if p else "unpooled" for p in pooled)
                     + " variances; scales were rescaled linearly to each analysis's target range (e.g. a "
                     "100 mm VAS divided by 10).")
    i2 = sorted({s.i2_method for s in settings})
    pis = sorted({s.pi_method for s in settings if s.prediction_interval})
    parts.append("Heterogeneity is reported as tau² with its Q-profile confidence interval, Cochran's Q and I² "
                 + " and ".join(I2_METHODS[i] for i in i2) + "; "
                 + ("prediction intervals use " + " and ".join(PI_METHODS[p] for p in pis) if pis
                    else "no prediction interval is reported") + ".")
    parts.append("Signs are experimental minus control, oriented so that a negative pain difference and a "
                 "positive activity difference favour the experimental arm.")
    assumption = analyses[0].assumption if analyses else ""
    if assumption:
        parts.append("Assumption: " + html.escape(" ".join(assumption.split())))
    return " ".join(parts)


def _hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_report(spec_paths, out_dir="reports", command="pfps-meta report", progress=True, extraction=None) -> dict:
    """Run every analysis and write ``index.html``, ``report.md`` and ``figures/`` under ``out_dir``."""
    import matplotlib
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd
    import scipy

    from . import plots

    out_dir = Path(out_dir)
    figures = out_dir / "figures"
    loaded = load_all(spec_paths, extraction=extraction)
    total = sum(len(spec.analyses) for spec, _ in loaded)
    results, count = [], 0
    for spec, evidence in loaded:
        for analysis in spec.analyses:
            count += 1
            if progress:
                print(f"[{count}/{total}] {analysis.key}: {analysis.label}", file=sys.stderr)
            results.append((spec, evidence, run_analysis(analysis, evidence)))

    md, body = [], []
    md.append("# pfps-meta report\n")
    body.append("<h1>pfps-meta report</h1>")
    intro = ("Published pooled estimates beside what this toolkit reproduces from the curated data in "
             "<code>data/</code>, with forest plots, summary tables and the provenance of every input.")
    md.append(intro.replace("<code>", "`").replace("</code>", "`") + "\n")
    body.append(f"<p>{intro}</p>")

    rows = reproduce_rows([r for _, _, r in results])
    for row, (_, evidence, ar) in zip(rows, results):
        if ar.published is not None and ar.result is not None:
            statuses = preset_statuses(ar.analysis, evidence)
            row["reproduced_by"] = [name for name, p in statuses.items() if p["status"] == "reproduced"]
        else:
            row["reproduced_by"] = []
    md.append("## Published vs reproduced\n")
    md.append("```\n" + format_table(rows) + "\n```\n")
    md.append("Presets that reproduce each target: " + "; ".join(
        f"{r['analysis']}: {', '.join(r['reproduced_by']) or '-'}" for r in rows) + "\n")
    body.append("<h2>Published vs reproduced</h2>")
    rep = pd.DataFrame([{
        "Analysis": r["analysis"], "Measure": r["measure"],
        "Published": _interval(r, "published"), "Reproduced": _interval(r, "reproduced"),
        "k": f"{r['k_available']}/{r['k_expected']}", "Status": r["status"],
        "Presets that reproduce it": ", ".join(r["reproduced_by"]) or "-",
        "Missing trials": ", ".join(r["missing_trials"])} for r in rows])
    body.append(to_html(rep, "table reproduce"))

    summary = display_frame(summary_table([r for _, _, r in results]))
    md.append("## Summary of pooled results\n")
    md.append(to_markdown(summary) + "\n")
    body.append("<h2>Summary of pooled results</h2>" + to_html(summary, "table summary"))

    sof = pd.concat([summary_of_findings([ar for s_, _, ar in results if s_ is spec], evidence)
                     for spec, evidence in loaded], ignore_index=True)
    sof_note = ("GRADE layout. Judgements marked 'suggested' follow the rules in pfps_meta.grade; "
                "'for reviewer' marks what the data cannot decide, and such certainty is provisional.")
    md.append("## Summary of findings (GRADE)\n")
    md.append(sof_note + "\n")
    md.append(to_markdown(sof) + "\n")
    body.append("<h2>Summary of findings (GRADE)</h2>" + f"<p class='note'>{html.escape(sof_note)}</p>"
                + to_html(sof, "table sof"))

    for spec, evidence in loaded:
        spec_results = [ar for s, _, ar in results if s is spec]
        analyses = [ar.analysis for ar in spec_results]
        title = spec.review.get("title", spec.review["id"])
        md.append(f"## {title}\n")
        body.append(f"<h2>{html.escape(title)}</h2>")
        citation = spec.review.get("citation", "")
        if citation:
            md.append(f"Source review: {citation}\n")
            body.append(f"<p><i>Source review:</i> {html.escape(citation)}</p>")
        methods = methods_paragraph(spec, analyses)
        md.append("**Methods.** " + html.unescape(methods) + "\n")
        body.append(f"<p><b>Methods.</b> {methods}</p>")
        if evidence is not None and any(a.trials for a in analyses):
            comp = completeness(evidence)
            expected = sorted({t.trial for a in analyses for t in a.trials})
            comp = comp[comp["trial_id"].isin(expected)]
            table = pd.DataFrame({"Trial": comp["trial_id"], "Outcome rows": comp["rows"],
                                  "Complete (n, mean, SD)": comp["complete"], "Partial": comp["partial"],
                                  "Between-group effects": comp["effect_rows"]})
            md.append("**Data completeness** (rows in data/outcomes.csv and data/effects.csv):\n")
            md.append(to_markdown(table) + "\n")
            body.append("<p><b>Data completeness</b> (rows in data/outcomes.csv and data/effects.csv):</p>"
                        + to_html(table, "table completeness"))
        for ar in spec_results:
            a = ar.analysis
            md.append(f"### {a.label}\n")
            body.append(f"<h3>{html.escape(a.label)}</h3>")
            if ar.result is None:
                msg = (f"No trial of this analysis has usable data yet ({ar.k_expected} expected). Missing: "
                       + ", ".join(m["trial"] + " (" + m["reason"] + ")" for m in ar.studies.missing) + ".")
                md.append(msg + "\n")
                body.append(f"<p class='missing'>{html.escape(msg)}</p>")
                continue
            if ar.studies.missing:
                msg = (f"Pooled from {ar.k_available} of {ar.k_expected} expected trials; missing: "
                       + ", ".join(m["trial"] for m in ar.studies.missing) + ".")
                md.append(msg + "\n")
                body.append(f"<p class='missing'>{html.escape(msg)}</p>")
            favours = None
            if a.favourable == "lower":
                favours = ("Favours experimental", "Favours control")
            elif a.favourable == "higher":
                favours = ("Favours control", "Favours experimental")
            elif measures.get(a.measure).ratio:
                favours = ("Lower in experimental", "Higher in experimental")
            quality = None
            if a.trials and evidence is not None:
                scores = evidence.trials.set_index("trial_id")["pedro_score"]
                quality = {t.trial: scores.get(t.trial) for t in a.trials}
            fig = plots.forest(ar.result, title=a.label, favours=favours, mcid=a.mcid, quality=quality)
            _figure(fig, figures / f"forest_{a.review}_{a.id}", f"Forest plot: {a.label}", out_dir, md, body)
            for note in ar.result.notes:
                md.append(f"- Note: {note}")
                body.append(f"<p class='note'>Note: {html.escape(note)}</p>")
            _sensitivity_section(ar, figures, out_dir, md, body)

    # provenance
    inputs = set()
    for spec, evidence, ar in results:
        inputs.add(spec.path.resolve())
        if ar.analysis.data is not None:
            inputs.add(Path(ar.analysis.data).resolve())
        if evidence is not None:
            for name in ("trials.csv", "outcomes.csv", "effects.csv", "published.csv"):
                inputs.add((evidence.data_dir / name).resolve())
    root = Path.cwd().resolve()
    prov = [{"Input": _relative(p, root), "SHA-256": _hash(p)} for p in sorted(inputs)]
    versions = {"pfps-meta": __version__, "python": platform.python_version(), "numpy": np.__version__,
                "scipy": scipy.__version__, "pandas": pd.__version__, "matplotlib": matplotlib.__version__}
    prov_table = pd.DataFrame(prov)
    ver_table = pd.DataFrame([{"Package": k, "Version": v} for k, v in versions.items()])
    md.append("## Provenance\n")
    md.append(f"Command: `{command}`\n")
    md.append(to_markdown(prov_table) + "\n")
    md.append(to_markdown(ver_table) + "\n")
    body.append("<h2>Provenance</h2>" + f"<p>Command: <code>{html.escape(command)}</code></p>"
                + to_html(prov_table, "table provenance") + to_html(ver_table, "table versions"))

    html_text = _page("\n".join(body))
    atomic_write_text(out_dir / "index.html", html_text)
    atomic_write_text(out_dir / "report.md", "\n".join(md) + "\n")
    if progress:
        print(f"wrote {out_dir / 'index.html'}, {out_dir / 'report.md'} and {figures}/", file=sys.stderr)
    return {"html": out_dir / "index.html", "markdown": out_dir / "report.md", "rows": rows}


def _figure(fig, stem, alt, out_dir, md, body):
    """Save a figure (PNG + SVG), link it from the Markdown and inline it in the HTML."""
    import matplotlib.pyplot as plt

    from . import plots

    png, _ = plots.save(fig, stem)
    plt.close(fig)
    rel = png.relative_to(out_dir).as_posix()
    md.append(f"![{alt}]({rel})\n")
    data_uri = base64.b64encode(png.read_bytes()).decode("ascii")
    body.append(f'<figure><img class="forest" alt="{html.escape(alt)}" src="data:image/png;base64,{data_uri}">'
                f'<figcaption>Figure files: {html.escape(rel)} and .svg</figcaption></figure>')


def _sensitivity_section(ar, figures, out_dir, md, body):
    """Leave-one-out, influence, small-study tests, funnel plot and predictive probability of one analysis."""
    import warnings

    import pandas as pd

    from . import plots, sensitivity

    res, a = ar.result, ar.analysis
    k = res.stats["k"]
    if k < 2:
        return
    show = measures.get(a.measure).to_reporting
    md.append("**Sensitivity analyses**\n")
    body.append("<h4>Sensitivity analyses</h4>")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sensitivity.SmallStudyWarning)
        loo = sensitivity.leave_one_out(res)
        table = pd.DataFrame({
            "Study omitted": loo["study"],
            "Estimate [95% CI]": [f"{show(e):.2f} [{show(lo):.2f}, {show(hi):.2f}]"
                                  for e, lo, hi in zip(loo["estimate"], loo["ci_low"], loo["ci_high"])],
            "tau²": [("" if t != t else f"{t:.3f}") for t in loo["tau2"]],
            "I²": [("" if i != i else f"{i:.0f}%") for i in loo["i2"]]})
        md.append("Leave-one-out:\n")
        md.append(to_markdown(table) + "\n")
        body.append("<p>Leave-one-out:</p>" + to_html(table, "table loo"))
        if k >= 3:
            inf = sensitivity.influence(res)
            flagged = ", ".join(inf.loc[inf["influential"], "study"]) or "none"
            egger = sensitivity.egger(res)
            begg = sensitivity.begg(res)
            tf = sensitivity.trimfill(res)
            lines = [f"Influential studies (metafor's criteria on DFFITS, Cook's distance, hat): {flagged}.",
                     f"Egger's test, classic weighted regression: intercept {egger['classic']['intercept']:.3f}, "
                     f"t({egger['classic']['df']}) = {egger['classic']['statistic']:.2f}, p = {egger['classic']['p']:.3f}; "
                     f"mixed-effects form (metafor's default): p = {egger['mixed']['p']:.3f}.",
                     f"Begg's rank correlation: tau = {begg['tau']:.3f}, p = {begg['p']:.3f}.",
                     f"Trim-and-fill ({tf['estimator']}): {tf['k0']} studies filled on the {tf['side']}; adjusted "
                     f"estimate {show(tf['estimate']):.2f} [{show(tf['ci_low']):.2f}, {show(tf['ci_high']):.2f}]."]
            if k < sensitivity.SMALL_K:
                lines.append(f"With k = {k} < {sensitivity.SMALL_K} these small-study tests have little power; "
                             "a non-significant result is weak evidence.")
            for line in lines:
                md.append(f"- {line}")
                body.append(f"<p class='note'>{html.escape(line)}</p>")
            md.append("")
            fig = plots.funnel(res, contours=True, filled=tf, title=f"Contour-enhanced funnel plot: {a.label}")
            _figure(fig, figures / f"funnel_{a.review}_{a.id}", f"Funnel plot: {a.label}", out_dir, md, body)
            fig = plots.baujat(res, title=f"Baujat plot: {a.label}")
            _figure(fig, figures / f"baujat_{a.review}_{a.id}", f"Baujat plot: {a.label}", out_dir, md, body)
        if a.mcid is not None and a.favourable in ("lower", "higher"):
            threshold = -abs(a.mcid) if a.favourable == "lower" else abs(a.mcid)
            direction = "below" if a.favourable == "lower" else "above"
            prob = sensitivity.predictive_probability(res, threshold, direction)
            if prob["probability"] is not None:
                line = (f"Predictive probability that the true effect in a new trial is {direction} {threshold:g} "
                        f"(the MCID): {prob['probability']:.2f} ({prob['distribution']} prediction distribution).")
                md.append(line + "\n")
                body.append(f"<p>{html.escape(line)}</p>")


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


def _interval(row, prefix):
    def num(x):
        return "-" if x is None else f"{x:.2f}"
    return f"{num(row[prefix + '_estimate'])} [{num(row[prefix + '_ci_low'])}, {num(row[prefix + '_ci_high'])}]"


def _page(body: str) -> str:
    style = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;
color:#222;line-height:1.45;padding:0 1em}
table{border-collapse:collapse;margin:0.8em 0;font-size:0.88em}
th,td{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3}
img.forest{max-width:100%;height:auto;border:1px solid #eee}
.missing{color:#8a4b00}.note{color:#555;font-size:0.9em}
figcaption{font-size:0.8em;color:#666}
"""
    check = """
<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.every(function (i) { return i.complete && i.naturalWidth > 0; });
  document.body.setAttribute('data-images', imgs.length);
  document.body.setAttribute('data-images-ok', ok ? 'yes' : 'no');
  document.body.setAttribute('data-tables', document.querySelectorAll('table').length);
});
</script>"""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>pfps-meta report</title><style>" + style + "</style>" + check + "</head><body>\n"
            + body + "\n</body></html>\n")
