"""``pfps-meta report``: every analysis in analyses/ turned into a self-contained HTML and a Markdown report.

Order: each review spec in turn, the patellofemoral review first (``analyses/*.toml``) and the worked
examples after it (``analyses/examples/*.toml``). A review section opens with what is already known (every
published pooled estimate of the comparisons its spec names in ``context_comparisons``, as a table and a
plot, not pooled), then published vs reproduced, the summary and GRADE tables, the methods, and one
part per analysis: what is missing and where to find it, the forest plot, arm-size scenarios for
inferred arm sizes, and the sensitivity analyses.

Deterministic: no timestamps; figures are written without dates; two runs give identical files.
Atomic as a whole: the report is built in a temporary sibling folder and swapped in with one rename, so
``--out`` holds either the complete old report or the complete new one. Text from data files is escaped
in HTML and neutralised in Markdown (no raw HTML, links or headings can come from a label).
"""

from __future__ import annotations

import base64
import functools
import ctypes
import ctypes.util
import hashlib
import os
import re
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from pfps_meta import __version__
from pfps_meta.effects import measures
from pfps_meta.evidence.specs import ModelAnalysisResult, arm_size_scenarios, load_all, run_analysis
from pfps_meta.conventions import CI_METHODS, I2_METHODS, PI_METHODS, POOLING_METHODS, SMD_CONVENTIONS, SMD_VTYPES
from pfps_meta.errors import InputError
from pfps_meta.evidence.extraction import todo
from pfps_meta.analysis.grade import summary_of_findings, thin_evidence
from pfps_meta.present.outputs import atomic_write_bytes, atomic_write_text, check_target, run_inputs, umask_mode
from pfps_meta.present.report_data import completeness_rows, provenance
from pfps_meta.present.report_models import bayes_section, model_section
from pfps_meta.analysis.reproduce import (RECONSTRUCTION, converted_values, interval_text, preset_statuses,
                                         reproduce_rows)
from pfps_meta.present.tables import ci_label, display_frame, html_text, markdown_text, plain_text, summary_table, to_html, to_markdown

REPORT_ENTRIES = ("index.html", "report.md", "report.json", "figures")


def methods_paragraph(spec, analyses) -> str:
    """A methods paragraph generated from the settings actually used (texts from conventions); plain text."""
    settings = [a.settings for a in analyses]
    methods = sorted({s.method for s in settings})
    cis = sorted({s.ci_method for s in settings})
    parts = [f"Analyses of {spec.review.get('title', spec.review['id'])} were pooled with "
             + "; ".join(POOLING_METHODS[m].methods_text for m in methods) + "."]
    parts.append("Confidence intervals for the pooled effect used " + " and ".join(CI_METHODS[c] for c in cis) + ".")
    smd = [a.settings for a in analyses if measures.get(a.measure).uses_smd_settings]
    if smd:
        conv = sorted({(s.smd_convention, s.vtype) for s in smd})
        parts.append("Standardised mean differences are Hedges' g with "
                     + " and ".join(SMD_CONVENTIONS[c].removeprefix("Hedges' g with ")
                                    + ("" if c == "revman5" else f" and the {SMD_VTYPES[v]}") for c, v in conv) + ".")
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
    levels = sorted({s.level for s in settings})
    if levels:
        parts.append("Confidence and prediction intervals are "
                     + " and ".join(f"{100 * level:g}%" for level in levels) + " intervals.")
    parts.append(_sign_sentence(analyses))
    assumption = analyses[0].assumption if analyses else ""
    if assumption:
        parts.append("Assumption: " + " ".join(assumption.split()))
    return " ".join(parts)


def _sign_sentence(analyses) -> str:
    """How effects are oriented, in the words of the outcomes the spec actually has (no pain wording for
    a review without a pain outcome)."""
    outcomes = {a.outcome for a in analyses}
    if {"pain", "activity"} & outcomes and any(a.favourable for a in analyses):
        return ("Signs are experimental minus control, oriented so that a negative pain difference and a "
                "positive activity difference favour the experimental arm.")
    if all(measures.get(a.measure).ratio for a in analyses):
        group = "exposed" if all(a.design == "observational" for a in analyses) else "experimental"
        other = "unexposed" if group == "exposed" else "control"
        return (f"Ratios compare the {group} with the {other} group: above 1 means the outcome is more "
                f"frequent in the {group} group.")
    return "Differences are experimental minus control."


def _slug(text: str) -> str:
    """A heading's anchor as GitHub writes it: lower case, punctuation dropped, spaces as hyphens."""
    kept = "".join(ch for ch in str(text).lower() if ch.isalnum() or ch in " -_")
    return "-".join(kept.split()) or "section"


class _Document:
    """The report written twice at once: Markdown (``md``) and HTML (``body``). Every piece of text
    handed to it is data: it is escaped for HTML and neutralised for Markdown here, in one place."""

    def __init__(self, out_dir: Path, final_dir: Path, png: bool = False):
        self.md, self.body = [], []
        self.png = png
        self.toc, self.seen = [], {}
        self.cache = None
        self.out_dir = out_dir          # where files are written now (the temporary build folder)
        self.final_dir = final_dir

    def heading(self, level: int, text: str):
        """A heading with an anchor (GitHub's, numbered when repeated); levels 2 and 3 enter the contents."""
        anchor = _slug(text)
        self.seen[anchor] = self.seen.get(anchor, -1) + 1
        if self.seen[anchor]:
            anchor = f"{anchor}-{self.seen[anchor]}"
        if level in (2, 3):
            self.toc.append((level, text, anchor))
        self.md.append(f"{'#' * level} {markdown_text(text)}\n")
        self.body.append(f"<h{level} id=\"{anchor}\">{html_text(text)}</h{level}>")

    def contents(self, at_md: int, at_body: int):
        """The table of contents, inserted where the document was at ``(len(md), len(body))``."""
        md, body = ["**Contents**\n"], ["<nav class='toc'><b>Contents</b><ul>"]
        for level, text, anchor in self.toc:
            md.append(f"{'  ' * (level - 2)}- [{markdown_text(text)}](#{anchor})")
            body.append(f"<li class='toc{level}'><a href=\"#{anchor}\">{html_text(text)}</a></li>")
        self.md[at_md:at_md] = md + [""]
        self.body[at_body:at_body] = body + ["</ul></nav>"]

    def para(self, text: str, css: str | None = None, bold_prefix: str | None = None):
        prefix_md = f"**{markdown_text(bold_prefix)}** " if bold_prefix else ""
        prefix_html = f"<b>{html_text(bold_prefix)}</b> " if bold_prefix else ""
        self.md.append(prefix_md + markdown_text(text) + "\n")
        klass = f" class='{css}'" if css else ""
        self.body.append(f"<p{klass}>{prefix_html}{html_text(text)}</p>")

    def bullets(self, lines, css="note"):
        for line in lines:
            self.md.append(f"- {markdown_text(line)}")
            self.body.append(f"<p class='{css}'>{html_text(line)}</p>")
        self.md.append("")

    def preformatted(self, text: str):
        """A model summary as the tools print it (fixed-width), escaped like every other text."""
        fence = "`" * 3
        shown = "\n".join(plain_text(line) for line in str(text).split("\n")).replace(fence, "'''")
        self.md.append(f"{fence}\n{shown}\n{fence}\n")
        self.body.append(f"<div class='scroll'><pre class='summary'>{html_text(text)}</pre></div>")

    def table(self, frame, css="table", link_columns=()):
        self.md.append(to_markdown(frame) + "\n")
        self.body.append(f"<div class='scroll'>{to_html(frame, css, link_columns)}</div>")

    def figure(self, fig, stem: str, alt: str):
        """Draw a figure once, as SVG (text as text, see :func:`_save_svg`), link it from the
        Markdown and inline it in the HTML at :data:`FIGURE_SCALE` times its natural size (capped at the
        page width by the CSS). ``png=True`` on the document also writes a PNG (for Word or slides)."""
        import matplotlib.pyplot as plt

        from pfps_meta.present import plots

        svg = _save_svg(fig, self.out_dir / "figures" / f"{stem}.svg")
        if self.png:
            plots.save(fig, self.out_dir / "figures" / stem)
        plt.close(fig)
        rel = f"figures/{stem}.svg"
        self.md.append(f"![{markdown_text(alt)}]({rel})\n")
        match = re.search(rb'width="([0-9.]+)pt"', svg[:2000])
        width = round(float(match.group(1)) * 4 / 3 * FIGURE_SCALE) if match else 800
        data_uri = base64.b64encode(svg).decode("ascii")
        size = getattr(plots, "FOREST_PT", FOREST_TEXT_PT)
        kind = f' data-kind="forest" data-text-pt="{size:g}"' if stem.startswith("forest_") else ""
        self.body.append(f'<figure><a href="{html_text(rel)}"><img class="forest"{kind} style="width:{width}px" '
                         f'alt="{html_text(alt)}" src="data:image/svg+xml;base64,{data_uri}"></a><figcaption>'
                         f'Figure file: {html_text(rel)} (tap or click the figure to open it full size)'
                         '</figcaption></figure>')


#: figures are shown at this multiple of their natural size (1 pt = 4/3 CSS px): the forest plot's 8.5-9 pt
#: text then renders at 15 px beside 16 px body text at 1280 px (the page caps wider figures at its width;
#: the browser test checks the forest text stays >= 80% of the body text there)
FIGURE_SCALE = 1.3
#: the forest plot's row text size when pfps_meta.present.plots does not state it (FOREST_PT), checked in the browser
FOREST_TEXT_PT = 8.5


def _save_svg(fig, path: Path) -> bytes:
    """``fig`` as deterministic SVG (no date, no creator, fixed ids) written atomically; returns the bytes.
    Text stays text (``svg.fonttype = "none"``: selectable, read by screen readers, a third of the size
    and a third faster to write than glyph outlines); the browser draws it in DejaVu Sans, matplotlib's
    font, or a narrower fallback, so labels laid out by matplotlib do not grow into each other.
    Drawn by :func:`pfps_meta.present.svg.svg_bytes` (each string measured once per process)."""
    from pfps_meta.present.svg import svg_bytes

    svg = svg_bytes(fig, dpi=110)
    atomic_write_bytes(path, svg)
    return svg


def build_report(spec_paths, out_dir="reports", command="pfps-meta report", progress=True, extraction=None,
                 png=False, cache=True) -> dict:
    """Run every analysis and write ``index.html``, ``report.md`` and ``figures/`` under ``out_dir``.

    The report is built in a temporary folder beside ``out_dir`` and swapped in at the end; anything
    else already in ``out_dir`` (e.g. a ``.gitkeep``) is carried over. A failure or an interrupt leaves
    ``out_dir`` as it was. Refused before anything is written (``outputs.check_target``): an empty name, a
    file, device, pipe or socket, and a folder holding an input file of the run (a spec, its data, the
    extraction sheet); a symbolic link is followed, so its target is filled and the link stays.
    """
    from pfps_meta.present import plots, svg

    check_target(out_dir, what="--out", folder=True)          # refused before any work is done
    shown_dir = Path(out_dir)
    loaded = loaded_specs(spec_paths, extraction)
    # the folder actually written: a symbolic link's target (the link stays); never one holding an input
    out_dir = check_target(shown_dir, what="--out", folder=True, inputs=run_inputs(loaded, [extraction]))
    total = sum(len(spec.analyses) for spec, _ in loaded)
    results, count = [], 0
    for spec, evidence in loaded:
        for analysis in spec.analyses:
            count += 1
            if progress:
                print(plain_text(f"[{count}/{total}] {analysis.key}: {analysis.label}"), file=sys.stderr)
            results.append((spec, evidence, run_analysis(analysis, evidence)))

    parent = out_dir.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        _remove_abandoned_builds(parent, out_dir.name)
        build = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.build-{os.getpid()}-", dir=parent))
    except OSError as exc:
        raise InputError(f"cannot create the output folder ({exc.strerror})", file=str(out_dir)) from None
    try:
        os.chmod(build, umask_mode(0o777))
        doc = _Document(build, out_dir, png=png)
        doc.cache = cache_dir() if cache else None
        prov = provenance(results, command)             # every input hashed once, for the page and report.json
        svg.load_text_extents(doc.cache)                # labels measured by an earlier report (svg.py)
        # figures written only as SVG are laid out with the SVG writer's text metrics; with png=True Agg draws
        # them too, so they keep Agg's
        with plots.layout_metrics("agg" if png else "svg"):
            rows = _write_document(doc, loaded, results, prov)
        svg.store_text_extents(doc.cache)
        atomic_write_text(build / "index.html", _page("\n".join(doc.body)))
        atomic_write_text(build / "report.md", "\n".join(doc.md) + "\n")
        atomic_write_text(build / "report.json", _report_json(loaded, results, prov))
        _swap_in(build, out_dir)
    finally:
        if build.exists():
            shutil.rmtree(build, ignore_errors=True)
    if progress:
        print(f"wrote {shown_dir / 'index.html'}, {shown_dir / 'report.md'}, {shown_dir / 'report.json'} and "
              f"{shown_dir / 'figures'}/", file=sys.stderr)
    return {"html": shown_dir / "index.html", "markdown": shown_dir / "report.md", "rows": rows,
            "json": shown_dir / "report.json"}


def loaded_specs(spec_paths, extraction=None):
    """:func:`pfps_meta.evidence.specs.load_all` of the report's specs; no spec at all is refused (a report
    of nothing would be an empty document, or no bottom line to write)."""
    loaded = load_all(spec_paths, extraction=extraction)
    if not loaded:
        raise InputError("spec_paths: no analysis spec given (pass at least one .toml file)")
    return loaded


def _report_json(loaded, results, prov) -> str:
    """``report.json``: the report's content as strict JSON (:func:`pfps_meta.present.report_data.collect`,
    with ``prov``, :func:`pfps_meta.present.report_data.provenance`, already computed for the page).
    A review that collect cannot take (an InputError, e.g. a refit it does not support) is left out and
    listed under ``not_collected`` with the reason, and a warning says so; the other reviews stay."""
    import json
    import warnings

    from pfps_meta.errors import PfpsWarning
    from pfps_meta.formatting import json_ready
    from pfps_meta.present.report_data import TITLE, review_data

    reviews, skipped = [], []
    for spec, evidence in loaded:
        runs = [ar for s, _, ar in results if s is spec]
        try:
            reviews.append(review_data(spec, evidence, runs))
        except InputError as exc:
            skipped.append({"review": spec.review["id"], "reason": exc.reason})
            warnings.warn(f"report.json leaves out review '{spec.review['id']}': {exc.reason}", PfpsWarning,
                          stacklevel=2)
    content = {"title": TITLE, "package": {"name": "pfps-meta", "version": __version__}, "reviews": reviews,
               "provenance": prov}
    if skipped:
        content["not_collected"] = skipped
    return json.dumps(json_ready(content), indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def _write_document(doc, loaded, results, prov):
    import pandas as pd

    doc.heading(1, "pfps-meta report")
    statuses = {id(spec): _review_rows(spec, evidence, [ar for s, _, ar in results if s is spec])
                for spec, evidence in loaded}
    doc.para(bottom_line(loaded, results, statuses), bold_prefix="Bottom line.", css="bottomline")
    doc.para("The patellofemoral pain review comes first: what this toolkit reproduces from the curated data in "
             "data/, then what other published reviews found, and what is still missing and where to find it. "
             "Worked examples follow. Every input's provenance is at the end.", css="note")
    toc_at = (len(doc.md), len(doc.body))
    all_rows = []
    for spec, evidence in loaded:
        spec_results = [ar for s, _, ar in results if s is spec]
        all_rows += _review_section(doc, spec, evidence, spec_results, statuses[id(spec)])

    doc.heading(2, "Provenance")
    doc.para(f"Command: {prov['command']}")
    doc.table(pd.DataFrame([{"Input": i["path"], "SHA-256": i["sha256"]} for i in prov["inputs"]]),
              "table provenance")
    doc.table(pd.DataFrame([{"Package": k, "Version": v} for k, v in prov["versions"].items()]), "table versions")
    doc.contents(*toc_at)
    return all_rows


def _review_rows(spec, evidence, spec_results):
    """The published-vs-reproduced rows of one review's pairwise analyses, with the presets that
    reproduce each target (computed once, for the bottom line and the review's table; not asked for an
    incomplete analysis, which no preset can reproduce)."""
    pairwise = [ar for ar in spec_results if not isinstance(ar, ModelAnalysisResult)]
    rows = reproduce_rows(pairwise, evidence)
    for row, ar in zip(rows, pairwise):
        row["reproduced_by"] = []
        # an incomplete analysis is incomplete under every preset (its missing trials stay missing)
        if ar.published is not None and ar.result is not None and row["status"] != "incomplete":
            statuses = preset_statuses(ar.analysis, evidence)
            row["reproduced_by"] = [name for name, p in statuses.items() if p["status"] == "reproduced"]
    return rows


def bottom_line(loaded, results, statuses) -> str:
    """Three sentences: what the first review's analyses reproduce, how much of its evidence is there
    (and so whether anything is graded), and what the worked examples show."""
    first, _ = loaded[0]
    rows = statuses[id(first)]
    pairwise = [ar for s, _, ar in results if s is first and not isinstance(ar, ModelAnalysisResult)]
    title = first.review.get("title", first.review["id"])
    counts = {status: sum(r["status"] == status for r in rows) for status in ("reproduced", "differs", "incomplete")}
    one = (f"Of the {len(rows)} pooled analyses of {title}, {counts['reproduced']} reproduce the published "
           f"estimate, {counts['differs']} differ from it and {counts['incomplete']} still lack trials." if rows
           else f"{title} has no pooled pairwise analysis; its models are described below.")
    thin = [ar for ar in pairwise if ar.result is not None and thin_evidence(ar.k_available, ar.k_expected)]
    empty = [ar for ar in pairwise if ar.result is None]
    if thin or empty:
        two = (f"{len(thin) + len(empty)} of them rest on fewer than half of their expected trials ("
               + "; ".join(f"{ar.analysis.id}: {ar.k_available} of {ar.k_expected}" for ar in thin + empty)
               + f", counted against {RECONSTRUCTION}), so they get no p-value and no GRADE rating and are "
               "not findings.")
    else:
        two = "Every analysis has at least half of its expected trials, and each is graded below."
    examples = [r for spec, _ in loaded[1:] for r in statuses[id(spec)] if r["status"] != "no_target"]
    done = sum(r["status"] == "reproduced" for r in examples)
    three = (f"The worked examples reproduce {done} of their {len(examples)} published pooled results at the "
             "printed precision, so the methods themselves are checked." if examples else
             "No worked example with a published target was run.")
    return " ".join([one, two, three])


def _review_section(doc, spec, evidence, spec_results, rows):
    import pandas as pd

    title = spec.review.get("title", spec.review["id"])
    doc.heading(2, title)
    if spec.review.get("citation"):
        doc.para(spec.review["citation"], bold_prefix="Source review:")
    models = [ar for ar in spec_results if isinstance(ar, ModelAnalysisResult)]
    spec_results = [ar for ar in spec_results if not isinstance(ar, ModelAnalysisResult)]
    for ar in models:
        model_section(doc, ar)
    if not spec_results:
        return []
    _status_tables(doc, spec, evidence, spec_results, rows)
    analyses = [ar.analysis for ar in spec_results]
    doc.para(methods_paragraph(spec, analyses), bold_prefix="Methods.")
    _known_section(doc, spec, evidence)
    if evidence is not None and any(a.trials for a in analyses):
        shown = {"trial": "Trial", "outcome_rows": "Outcome rows", "complete": "Complete (n, mean, SD)",
                 "partial": "Partial", "effect_rows": "Between-group effects"}
        comp = pd.DataFrame(completeness_rows(spec_results, evidence), columns=list(shown)).rename(columns=shown)
        doc.para(f"(rows in data/outcomes.csv and data/effects.csv) of the trials in {RECONSTRUCTION}:",
                 bold_prefix="Data completeness")
        doc.table(comp, "table completeness")
    for ar in spec_results:
        _analysis_section(doc, ar, evidence, spec)
    return rows


def _status_tables(doc, spec, evidence, spec_results, rows):
    """Published vs reproduced, the converted values, the summary of pooled results and GRADE."""
    import pandas as pd

    reconstructed = any(ar.analysis.trials for ar in spec_results)
    doc.heading(3, "Published vs reproduced")
    if reconstructed:
        doc.para(f"k is trials with data of trials expected; the expected trials are {RECONSTRUCTION}, "
                 "not a list printed by the review.", css="note")
    doc.table(pd.DataFrame([{
        "Analysis": r["analysis"], "Measure": r["measure"],
        "Published": interval_text(r, "published"), "Reproduced": interval_text(r, "reproduced"),
        "k": f"{r['k_available']}/{r['k_expected']}", "Status": r["status"],
        "Presets that reproduce it": ", ".join(r["reproduced_by"]) or "-",
        "Converted values": ", ".join(f"{c['study']}{_mark()}" for c in r["converted"]) or "-",
        "Missing trials": ", ".join(r["missing_trials"])} for r in rows]), "table reproduce")
    _converted_table(doc, rows)
    doc.heading(3, "Summary of pooled results")
    summary = display_frame(summary_table(spec_results))
    for i, ar in enumerate(spec_results):
        if ar.result is not None and thin_evidence(ar.k_available, ar.k_expected):
            summary.loc[i, "p"] = f"not shown ({ar.k_available} of {ar.k_expected} expected trials)"
    doc.table(summary, "table summary")
    doc.heading(3, "Summary of findings (GRADE)")
    doc.para("GRADE layout. Judgements marked 'suggested' follow the rules in pfps_meta.analysis.grade; 'for reviewer' "
             "marks what the data cannot decide, and such certainty is provisional. An analysis with one trial, or "
             "with fewer than half of its expected trials, is not assessed.", css="note")
    sof = summary_of_findings(spec_results, evidence, risk_of_bias=risk_of_bias_judgements(spec, evidence))
    doc.table(sof, "table sof")
    for rule in sof.attrs.get("rules", []):
        doc.para(rule, bold_prefix="Rule:", css="note")


def _converted_table(doc, rows):
    import pandas as pd

    items = [{"Analysis": r["analysis"], "Study": f"{c['study']}{_mark()}", "Value": c["value"], "Rule": c["rule"],
              "Source": c["location"] or "-", "Quote": c["quote"] or "-"} for r in rows for c in r["converted"]]
    if items:
        doc.para(f"({_mark()} in the tables, the forest plots and under them): computed from what the source printed, by the "
                 "rule shown, with the source's words.", bold_prefix="Converted or derived values")
        doc.table(pd.DataFrame(items), "table converted")


def _risk_of_bias_path(spec, evidence) -> Path:
    folder = evidence.data_dir if evidence is not None else spec.path.resolve().parent / spec.review.get("data_dir", ".")
    return Path(folder) / "risk_of_bias.csv"


def _risk_of_bias_rows(spec, evidence):
    """This review's rows of data/risk_of_bias.csv (``review`` equal to the spec's id) with a RoB 2 overall
    judgement: columns study, D1-D5, overall. None when there are none."""
    path = _risk_of_bias_path(spec, evidence)
    if not path.is_file():
        return None
    table = _read_table(str(path.resolve()), path.stat().st_mtime_ns)
    columns = ["study", "D1", "D2", "D3", "D4", "D5", "overall"]
    if not {"review", *columns} <= set(table.columns):
        return None
    rows = table[(table["review"] == spec.review["id"]) & (table["overall"] != "")]
    return rows[columns].reset_index(drop=True) if len(rows) else None


@functools.lru_cache(maxsize=8)
def _read_table(path: str, mtime_ns: int):
    """A CSV read as text once per run (keyed by its path and modification time)."""
    import pandas as pd

    return pd.read_csv(path, dtype=str, keep_default_na=False)


def risk_of_bias_judgements(spec, evidence):
    """RoB 2 overall judgements of this review's results, as study -> judgement; None when there are none.
    The GRADE table of every report format (HTML, report.json, Word, Excel) is graded with these."""
    rows = _risk_of_bias_rows(spec, evidence)
    return None if rows is None else dict(zip(rows["study"], rows["overall"]))


def _mark() -> str:
    """The sign that marks a converted value, the one the forest plot draws."""
    from pfps_meta.present import plots

    return getattr(plots, "DAGGER", "*")


def _known_section(doc, spec, evidence):
    """What other published reviews found for the comparisons the spec names (table and plot)."""
    from pfps_meta.present import plots

    known = spec.review.get("context_comparisons", [])
    if not (known and evidence is not None):
        return
    title = spec.review.get("title", spec.review["id"])
    doc.heading(3, "What is known: published pooled estimates")
    doc.para("Every pooled estimate in data/published.csv for these comparisons, one row per review and "
             "outcome, each with its source. They are not pooled with each other: the reviews share trials. "
             "Estimates are as printed: a review may orient its difference the other way (check the Note "
             "column), and a row whose measure the source does not name is listed but not plotted.")
    table, plot_frame = _published_table(evidence.published, known)
    doc.table(table, "table published", link_columns=("Source",))
    if len(plot_frame):
        fig = plots.published_estimates(plot_frame, title="Published pooled estimates (as printed)")
        doc.figure(fig, f"published_{spec.review['id']}", f"Published pooled estimates: {title}")


def _published_table(published, comparisons):
    import pandas as pd

    rows = published[published["comparison"].isin(comparisons)]
    order = {c: i for i, c in enumerate(comparisons)}
    outcome_order = {"pain": 0, "activity": 1}
    rows = rows.assign(_order=rows["comparison"].map(order), _outcome=rows["outcome"].map(outcome_order).fillna(2))
    rows = rows.sort_values(["_order", "_outcome", "review"], kind="stable")
    table = pd.DataFrame({
        "Review": rows["citation"], "Comparison": rows["comparison"].str.replace("_", " "),
        "Outcome": rows["outcome"], "Measure": rows["measure"],
        # the papers' own intervals, at the level each paper states (most say 95%; not every quote does)
        "Estimate (CI, as published)": [f"{e} ({lo} to {hi})" for e, lo, hi in
                              zip(rows["estimate_text"], rows["ci_low_text"], rows["ci_high_text"])],
        "k / participants": [f"{k or '?'} / {n or '?'}" for k, n in zip(rows["k"], rows["participants"])],
        "Note": rows["scale_note"], "Source": rows["source_url"], "Status": rows["status"]})
    # no label column: plots.published_label names each row from its citation (readable, not the row id)
    plot = pd.DataFrame({
        "citation": rows["citation"], "review": rows["review"], "comparison": rows["comparison"],
        "outcome": rows["outcome"], "measure": rows["measure"], "estimate": rows["estimate"], "ci_low": rows["ci_low"], "ci_high": rows["ci_high"]})
    return table, plot


def forest_subtitle(ar, evidence=None) -> str | None:
    """The forest plot's subtitle for too little evidence (one trial, or under half of those expected):
    "1 of 10 expected trials; dolak2011: HIP vs QUAD at 4 weeks". None when the evidence is not thin."""
    if ar.result is None or not thin_evidence(ar.k_available, ar.k_expected):
        return None
    a = ar.analysis
    used = set(ar.result.studies["study"])
    shown = []
    for entry in a.trials:
        if entry.trial not in used:
            continue
        timepoint = entry.timepoint or a.timepoint
        weeks = None
        if evidence is not None and timepoint:
            rows = evidence.outcomes[(evidence.outcomes["trial_id"] == entry.trial)
                                     & (evidence.outcomes["timepoint"] == timepoint)]
            weeks = next((w for w in rows.get("timepoint_weeks", []) if w == w and w is not None), None)
        when = f" at {float(weeks):g} weeks" if weeks is not None else (f" at {timepoint}" if timepoint else "")
        shown.append(f"{entry.trial}: {entry.exp} vs {entry.ctrl}{when}")
    head = (f"{ar.k_available} of {ar.k_expected} expected trial{'s' if ar.k_expected != 1 else ''}"
            + (" (the project's reconstruction of the list)" if a.trials else ""))
    return "; ".join([head, *shown])


def _missing_part(doc, ar, evidence):
    """What is missing from an analysis, with the extraction to-do when the trials are curated."""
    a = ar.analysis
    if not ar.studies.missing:
        return
    if ar.result is None:
        doc.para(f"No trial of this analysis has usable data yet ({ar.k_expected} expected in {RECONSTRUCTION}).",
                 css="missing")
    else:
        doc.para(f"Pooled from {ar.k_available} of {ar.k_expected} expected trials (expected in {RECONSTRUCTION}).",
                 css="missing")
    if a.trials and evidence is not None:
        doc.para("what each missing trial lacks, and where it is likely printed. Fill the sheet that "
                 "'pfps-meta template' writes and pass it with --extraction.", bold_prefix="Extraction to-do:")
        doc.table(todo(ar, evidence), "table todo")
    else:
        doc.bullets([f"{m['trial']}: {m['reason']}" for m in ar.studies.missing])


def forest_favours(analysis):
    """The forest plot's two labels under the axis: which side favours which arm when the spec says which
    direction is favourable, else (ratio measures) which arm has the outcome more often; None otherwise."""
    if analysis.favourable == "lower":
        return ("Favours experimental", "Favours control")
    if analysis.favourable == "higher":
        return ("Favours control", "Favours experimental")
    if measures.get(analysis.measure).ratio:
        return ("Lower in experimental", "Higher in experimental")
    return None


def forest_figure(ar, evidence=None, spec=None, subtitle=None, converted=None):
    """An analysis's forest plot as every report format draws it (favours labels, PEDro column, BLUPs, the
    thin-evidence subtitle without the overall test, converted studies marked, RoB 2 traffic lights);
    returns (figure, BLUPs or None). ``subtitle`` and ``converted`` default to :func:`forest_subtitle` and
    :func:`pfps_meta.analysis.reproduce.converted_values` of ``ar``."""
    from pfps_meta.present import plots

    a = ar.analysis
    subtitle = forest_subtitle(ar, evidence) if subtitle is None else subtitle
    converted = converted_values(ar, evidence) if converted is None else converted
    favours = forest_favours(a)
    quality = None
    if a.trials and evidence is not None and "pedro_score" in evidence.trials.columns:
        scores = evidence.trials.set_index("trial_id")["pedro_score"]
        quality = {t.trial: scores.get(t.trial) for t in a.trials}
    blups = None
    if a.show_blups and ar.result.stats["k"] >= 2 and ar.result.method != "FE":
        from pfps_meta.analysis.diagnostics import blup

        blups = blup(ar.result)
    extra = {"subtitle": subtitle, "show_test": False} if subtitle else {}   # no overall test for too little evidence
    marked = {item["study"]: f"{item['value']}: {item['rule']}" for item in converted
              if item["study"] in set(ar.result.studies["study"])}
    if marked:
        extra["converted"] = marked            # the forest plot marks these studies, with the rule as a footnote
    rob = _risk_of_bias_rows(spec, evidence) if spec is not None else None
    if rob is not None:
        extra["rob"] = rob[rob["study"].isin(set(ar.result.studies["study"]))].reset_index(drop=True)
    fig = plots.forest(ar.result, title=a.label, favours=favours, mcid=a.mcid, quality=quality, blups=blups, **extra)
    return fig, blups


def _analysis_section(doc, ar, evidence, spec=None):
    import pandas as pd

    a = ar.analysis
    doc.heading(3, a.label)
    _missing_part(doc, ar, evidence)
    if ar.result is None:
        return
    subtitle = forest_subtitle(ar, evidence)
    if subtitle:
        doc.para(f"{subtitle}. No p-value and no GRADE rating are given: one trial, or fewer than half of the "
                 "expected ones, is not a finding.", bold_prefix="Too little evidence:", css="warning")
    converted = converted_values(ar, evidence)
    fig, blups = forest_figure(ar, evidence, spec, subtitle, converted)
    if blups is not None:
        doc.para("hollow grey diamonds under each study are the BLUPs of its true effect with their prediction "
                 "intervals (metafor blup()).", bold_prefix="BLUPs:", css="note")
    doc.figure(fig, f"forest_{a.review}_{a.id}", f"Forest plot: {a.label}")
    if a.mcid is not None:
        doc.para(f"the dashed vertical lines labelled \"MCID\" mark -{abs(a.mcid):g} and +{abs(a.mcid):g} (where "
                 f"the axis reaches them), the minimal clinically important difference ({abs(a.mcid):g} points on "
                 "the analysis scale): an effect beyond them is one a patient would notice.",
                 bold_prefix="MCID:", css="note")
    for item in converted:
        doc.para(f"{item['study']}{_mark()} ({item['value']}): {item['rule']}"
                 + (f". Source: \"{item['quote']}\"" if item["quote"] else "")
                 + (f" ({item['location']})" if item["location"] else "") + ".",
                 bold_prefix="Converted:", css="note")
    doc.bullets([f"Note: {note}" for note in ar.result.notes])
    _risk_of_bias_section(doc, ar, evidence, spec)
    bayes_section(doc, ar)
    if a.impute_sd and "status" in ar.result.studies.columns and (ar.result.studies["status"] == "imputed").any():
        without = run_analysis(replace(a, impute_sd=None), evidence)
        show = measures.get(a.measure).to_reporting
        def pooled(result):
            if result is None:
                return "no trial left"
            st = result.stats
            return f"{show(st['estimate']):.2f} [{show(st['ci_low']):.2f}, {show(st['ci_high']):.2f}], k = {st['k']}"
        imputed = ", ".join(ar.result.studies.loc[ar.result.studies["status"] == "imputed", "study"])
        doc.para(f"imputed SDs ({a.impute_sd}) for {imputed}. With them: {pooled(ar.result)}; without them: "
                 f"{pooled(without.result)}.", bold_prefix="Imputation flagged:", css="missing")
    if a.trials and evidence is not None:
        scenarios = arm_size_scenarios(a, evidence, base=ar)
        if scenarios:
            show = measures.get(a.measure).to_reporting
            doc.para("a trial's arm sizes are inferred (see the note above), so the analysis is shown under each "
                     "plausible arm size.", bold_prefix="Arm-size scenarios:")
            doc.table(pd.DataFrame([{
                "Trial": s["trial"], "Arm sizes": s["scenario"], "n (exp/ctrl)": f"{s['n_exp']:g}/{s['n_ctrl']:g}",
                f"Pooled estimate [{ci_label(s['result'].level)}]": f"{show(s['result'].stats['estimate']):.2f} "
                                            f"[{show(s['result'].stats['ci_low']):.2f}, "
                                            f"{show(s['result'].stats['ci_high']):.2f}]",
                "k": s["result"].stats["k"]} for s in scenarios]), "table scenarios")
    _coverage_section(doc, ar, evidence)
    _sensitivity_section(doc, ar)


def _risk_of_bias_section(doc, ar, evidence, spec):
    """Where the analysis' studies have RoB 2 judgements: the summary bar chart weighted by each study's
    weight in the fit (as RevMan), and the pooled result re-fitted on the low-risk results only and
    without the high-risk ones (pfps_meta.analysis.risk_of_bias)."""
    import pandas as pd

    from pfps_meta.analysis import risk_of_bias
    from pfps_meta.present import rob_plots

    rows = _risk_of_bias_rows(spec, evidence) if spec is not None else None
    res, a = ar.result, ar.analysis
    if rows is None or not rows["study"].isin(set(res.studies["study"])).any():
        return
    shown = rows[rows["study"].isin(set(res.studies["study"]))].reset_index(drop=True)
    fig = rob_plots.summary_bar(shown, res, title=f"Risk of bias (RoB 2), weighted: {a.label}")
    doc.figure(fig, f"rob_{a.review}_{a.id}", f"Risk-of-bias summary (RoB 2, by weight): {a.label}")
    table = risk_of_bias.read_risk_of_bias(_risk_of_bias_path(spec, evidence))
    show = measures.get(a.measure).to_reporting
    lines = [("All studies", res, [])]
    for refit in (risk_of_bias.refit_low_risk_only(res, table, review=spec.review["id"]),
                  risk_of_bias.refit_excluding_high(res, table, review=spec.review["id"])):
        lines.append((refit.rule[0].upper() + refit.rule[1:], refit.result, refit.excluded))
    doc.table(pd.DataFrame([{
        "Studies": label, "k": "-" if fit is None else fit.stats["k"],
        f"Pooled [{ci_label(res.level)}]": "no study left" if fit is None else
            f"{show(fit.stats['estimate']):.2f} [{show(fit.stats['ci_low']):.2f}, {show(fit.stats['ci_high']):.2f}]",
        "Left out": ", ".join(left) or "-"} for label, fit, left in lines]), "table rob")


SIMULATION_REPLICATES = 1000        # per grid cell: about a second per analysis; MC SE about 0.7 points


def _coverage_section(doc, ar, evidence):
    """How often would this analysis's method (and REML + HKSJ) cover the truth in a meta-analysis of
    this shape? A small simulation (pfps_meta.analysis.simulate), said in words next to the pooled estimate."""
    from pfps_meta.analysis.simulate import Design

    a, res = ar.analysis, ar.result
    if getattr(POOLING_METHODS.get(a.settings.method), "counts", False):
        doc.para(f"not simulated: {POOLING_METHODS[a.settings.method].label} pools 2x2 tables of counts, and the "
                 "coverage simulation draws study effects and variances.", bold_prefix="Coverage:", css="note")
        return
    try:
        design = Design.from_analysis(a, evidence, res)
    except InputError:       # fewer than two trials with known sizes: no shape to simulate
        return
    if design.vi:
        tau2_hat = res.stats["tau2"] or 0.0
        grid = sorted({0.0, round(tau2_hat, 4), round(2 * tau2_hat, 4)} if tau2_hat > 0 else {0.0, 0.05, 0.2})
        mu, measure, scale = res.stats["estimate"], None, f"{measures.get(a.measure).analysis_scale_label()} scale"
    else:
        grid, mu, measure, scale = [0.0, 0.1, 0.3], 0.5, "SMD", "SMD scale (true SMD 0.5)"
    methods = tuple(dict.fromkeys([a.settings.method, "REML"]))
    bayes_method = None
    if a.bayes and not a.bayes["rescale_uisd"] and (design.vi or a.bayes["prior"].measure in (None, "SMD")):
        bayes_method = "bayes:" + a.bayes["prior"].spelling          # the spec's prior, simulated beside
        methods += (bayes_method,)
    replicates, table = _cached_coverage(doc.cache, design, mu=mu, tau2=grid, measure=measure or "SMD",
                                         methods=methods, ci_methods=("wald", "hksj"),
                                         replicates=SIMULATION_REPLICATES, seed=2018, settings=a.settings)
    own = f"{a.settings.method} + {'HKSJ' if a.settings.ci_method == 'hksj' else 'Wald'}"
    worst_tau2 = max(grid)
    column = f"tau² = {worst_tau2:g}"
    own_cover = table.set_index("Method").loc[own, column].split()[0]
    best_cover = table.set_index("Method").loc["REML + HKSJ", column].split()[0]
    shape = ("the trials this analysis expects" if a.trials else "these studies") + f" (k = {design.k}"
    shape += (", arm sizes " + ", ".join(f"{n1:g}/{n2:g}" for n1, n2 in zip(design.n_exp, design.n_ctrl))
              if design.n_exp else ", their sampling variances") + ")"
    doc.heading(4, "How often does the method cover the truth for a meta-analysis of this shape?")
    doc.para(f"In {replicates:,} simulated meta-analyses of {shape}, on the {scale}, the "
             f"{100 * a.settings.level:g}% CI of this analysis's method ({own}) covered the true average effect "
             f"{own_cover} of the time when the between-trial variance tau² is {worst_tau2:g}; REML + HKSJ covered "
             f"{best_cover}. Coverage well below {100 * a.settings.level:g}% means the CI is too narrow. "
             "Monte Carlo standard errors in brackets; reproduce with 'pfps-meta simulate'."
             + (f" The Bayesian {100 * a.settings.level:g}% credible interval (prior {a.bayes['prior'].label}) "
                f"covered {table.set_index('Method').loc[bayes_method + ' (credible interval)', column].split()[0]}."
                if bayes_method else ""))
    if design.notes:
        doc.bullets(list(design.notes))
    doc.table(table, "table coverage")


def cache_dir() -> Path:
    """Where the report keeps its simulation cache: ``$PFPS_META_CACHE`` if set, else
    ``$XDG_CACHE_HOME/pfps-meta``, else ``~/.cache/pfps-meta``."""
    if os.environ.get("PFPS_META_CACHE"):
        return Path(os.environ["PFPS_META_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pfps-meta"


_SOURCE_DIGEST = []

#: the code whose numbers a cached coverage table holds (with the package version, part of its key)
SIMULATION_SOURCES = ("analysis/simulate.py", "models/pooling.py", "models/tau2.py", "models/bayes.py",
                      "models/priors.py", "models/fast.py", "effects/sizes.py")


def _source_digest() -> str:
    """SHA-256 of the package's version and the simulation's source files (:data:`SIMULATION_SOURCES`):
    a cached table is reused only by the code that made it."""
    if not _SOURCE_DIGEST:
        root = Path(__file__).resolve().parents[1]
        digest = hashlib.sha256(__version__.encode())
        for name in SIMULATION_SOURCES:
            path = root / name
            digest.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b""))
        _SOURCE_DIGEST.append(digest.hexdigest())
    return _SOURCE_DIGEST[0]


def _cached_coverage(folder, design, **options):
    """``simulate(design, **options)``'s replicate count and coverage table, from ``folder/coverage/`` when
    a run with the same design, options, package version and source made it (the key hashes all of
    them), else computed and stored there. An unreadable or foreign cache file is recomputed; a cache
    folder that cannot be written is skipped silently (the report does not depend on it)."""
    import json

    import pandas as pd

    from pfps_meta.analysis.simulate import simulate

    key = hashlib.sha256(repr((_source_digest(), design, sorted(options.items()))).encode()).hexdigest()
    path = None if folder is None else Path(folder) / "coverage" / f"{key}.json"
    if path is not None and path.is_file():
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
            if stored.get("key") == key:
                return int(stored["replicates"]), pd.DataFrame(stored["rows"], columns=stored["columns"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    sim = simulate(design, **options)
    table = sim.coverage_table()
    if path is not None:
        record = {"key": key, "replicates": int(sim.setup["replicates"]), "columns": list(table.columns),
                  "rows": table.astype(object).where(table.notna(), None).values.tolist()}
        try:
            atomic_write_text(path, json.dumps(record, ensure_ascii=False))
        except InputError:
            pass
    return int(sim.setup["replicates"]), table


def _sensitivity_section(doc, ar):
    """Leave-one-out, influence, small-study tests, funnel plot and predictive probability of one analysis."""
    import warnings

    import pandas as pd

    from pfps_meta.present import plots
    from pfps_meta.analysis import sensitivity

    res, a = ar.result, ar.analysis
    k = res.stats["k"]
    if k < 2:
        return
    show = measures.get(a.measure).to_reporting
    doc.heading(4, "Sensitivity analyses")
    counted = getattr(POOLING_METHODS.get(a.settings.method), "counts", False)
    if counted:
        doc.para(f"leave-one-out refits the other 2x2 tables ({POOLING_METHODS[a.settings.method].label}, as "
                 "metafor's leave1out); influence, the small-study tests and trim-and-fill are not run: they refit "
                 "study effects by inverse variance (metafor offers them for rma.uni fits only).",
                 bold_prefix="Status:", css="note")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sensitivity.SmallStudyWarning)
        loo = sensitivity.leave_one_out(res)
        doc.para("Leave-one-out:")
        doc.table(pd.DataFrame({
            "Study omitted": loo["study"],
            f"Estimate [{ci_label(res.level)}]": [f"{show(e):.2f} [{show(lo):.2f}, {show(hi):.2f}]"
                                  for e, lo, hi in zip(loo["estimate"], loo["ci_low"], loo["ci_high"])],
            "tau²": [("" if t != t else f"{t:.3f}") for t in loo["tau2"]],
            "I²": [("" if i != i else f"{i:.0f}%") for i in loo["i2"]]}), "table loo")
        if counted:
            return
        if k >= 3:
            inf = sensitivity.influence(res)
            flagged = ", ".join(inf.loc[inf["influential"], "study"]) or "none"
            egger = sensitivity.egger(res)
            begg = sensitivity.begg(res)
            tf = sensitivity.trimfill(res)
            lines = [f"Influential studies (metafor's criteria on DFFITS, Cook's distance, hat): {flagged}.",
                     (f"Egger's test: not computed ({egger['reason']})." if egger["classic"] is None else
                      f"Egger's test, classic weighted regression: intercept {egger['classic']['intercept']:.3f}, "
                      f"t({egger['classic']['df']}) = {egger['classic']['statistic']:.2f}, "
                      f"p = {egger['classic']['p']:.3f}; mixed-effects form (metafor's default): "
                      f"p = {egger['mixed']['p']:.3f}."),
                     (f"Begg's rank correlation: not computed ({begg['reason']})." if begg["p"] is None else
                      f"Begg's rank correlation: tau = {begg['tau']:.3f}, p = {begg['p']:.3f}."),
                     f"Trim-and-fill ({tf['estimator']}): {tf['k0']} studies filled on the {tf['side']}"
                     + (f" ({tf['side_note']})" if tf["side_note"] else "") + "; adjusted "
                     f"estimate {show(tf['estimate']):.2f} [{show(tf['ci_low']):.2f}, {show(tf['ci_high']):.2f}]."]
            if k < sensitivity.SMALL_K:
                lines.append(f"With k = {k} < {sensitivity.SMALL_K} these small-study tests have little power; "
                             "a non-significant result is weak evidence.")
            doc.bullets(lines)
            fig = plots.funnel(res, contours=True, filled=tf, title=f"Contour-enhanced funnel plot: {a.label}")
            doc.figure(fig, f"funnel_{a.review}_{a.id}", f"Funnel plot: {a.label}")
            fig = plots.baujat(res, title=f"Baujat plot: {a.label}")
            doc.figure(fig, f"baujat_{a.review}_{a.id}", f"Baujat plot: {a.label}")
        if a.mcid is not None and a.favourable in ("lower", "higher"):
            threshold = -abs(a.mcid) if a.favourable == "lower" else abs(a.mcid)
            direction = "below" if a.favourable == "lower" else "above"
            prob = sensitivity.predictive_probability(res, threshold, direction)
            if prob["probability"] is not None:
                doc.para(f"Predictive probability that the true effect in a new trial is {direction} {threshold:g} "
                         f"(the MCID): {prob['probability']:.2f} ({prob['distribution']} prediction distribution).")


# --------------------------------------------------------------------------------------------------
# swapping the finished report in


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two paths (Linux renameat2 RENAME_EXCHANGE); False where not available."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0


def _swap_in(build: Path, out_dir: Path):
    """Make ``build`` the new ``out_dir``: anything else the old folder held is carried over, then the two
    folders are exchanged in one atomic step (or, where the system cannot, two renames in a row)."""
    if not out_dir.exists():
        os.replace(build, out_dir)
        return
    for entry in out_dir.iterdir():
        if entry.name not in REPORT_ENTRIES:
            target = build / entry.name
            if entry.is_dir():
                shutil.copytree(entry, target, symlinks=True)
            else:
                shutil.copy2(entry, target, follow_symlinks=False)
    if not _exchange(build, out_dir):
        old = build.with_name(build.name + "-old")
        os.replace(out_dir, old)
        os.replace(build, out_dir)
        build = old
    shutil.rmtree(build, ignore_errors=True)       # now the old report


def _remove_abandoned_builds(parent: Path, name: str):
    """Build folders left by a run that was killed (its process no longer exists) are removed."""
    for folder in parent.glob(f".{name}.build-*"):
        try:
            pid = int(folder.name[len(f".{name}.build-"):].split("-")[0])
            os.kill(pid, 0)             # raises when no such process
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except (ValueError, PermissionError, OSError):
            continue


def _page(body: str) -> str:
    style = """
html{-webkit-text-size-adjust:100%;text-size-adjust:100%}
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;font-size:16px;margin:2em auto;
max-width:1200px;color:#222;line-height:1.45;padding:0 1em;overflow-wrap:break-word}
h1,h2,h3,h4{line-height:1.2}
div.scroll{overflow-x:auto;max-width:100%;-webkit-overflow-scrolling:touch;margin:0.8em 0}
table{border-collapse:collapse;margin:0;font-size:0.88em}
th,td{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top;min-width:4em}
td{max-width:40em}
th{background:#f3f3f3}
figure{margin:1em 0;max-width:100%}
img.forest{max-width:100%;height:auto;border:1px solid #eee;display:block}
.missing{color:#8a4b00}.note{color:#555;font-size:0.9em}
.bottomline{font-size:1.05em;background:#f4f8fb;border-left:4px solid #2b6a99;padding:0.6em 0.9em}
nav.toc{border:1px solid #e3e3e3;background:#fafafa;padding:0.4em 1em;margin:1em 0}
nav.toc ul{margin:0.3em 0;padding-left:1.2em}nav.toc li.toc3{margin-left:1.2em;font-size:0.92em}
figcaption{font-size:0.8em;color:#666}
pre.summary{font-size:0.8em;background:#fafafa;border:1px solid #eee;padding:0.6em;margin:0}
.warning{color:#8a4b00;font-weight:600}
@media (max-width:600px){body{margin:0.6em auto;padding:0 0.6em}img.forest{width:100%!important}
th,td{min-width:7em}}
@media print{div.scroll{overflow:visible}nav.toc{display:none}img.forest{max-width:100%!important}}
"""
    check = """
<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.every(function (i) { return i.complete && i.naturalWidth > 0; });
  var b = document.body, view = document.documentElement.clientWidth, widest = 0, culprit = '';
  Array.prototype.forEach.call(document.querySelectorAll('body *'), function (el) {
    if (el.closest('div.scroll') && !el.matches('div.scroll')) { return; }
    var right = el.getBoundingClientRect().right;
    if (right > widest) { widest = right; culprit = el.tagName + '.' + (el.className || ''); }
  });
  var bodyText = parseFloat(getComputedStyle(b).fontSize), forest = 0;
  imgs.filter(function (i) { return i.dataset.kind === 'forest'; }).forEach(function (i) {
    var px = parseFloat(i.dataset.textPt) * 4 / 3 * i.getBoundingClientRect().width / i.naturalWidth;
    forest = forest === 0 ? px : Math.min(forest, px);
  });
  b.setAttribute('data-images', imgs.length);
  b.setAttribute('data-images-ok', ok ? 'yes' : 'no');
  b.setAttribute('data-tables', document.querySelectorAll('table').length);
  b.setAttribute('data-viewport', view);
  b.setAttribute('data-page-width', document.documentElement.scrollWidth);
  b.setAttribute('data-widest', Math.ceil(widest));
  b.setAttribute('data-widest-element', culprit);
  b.setAttribute('data-forest-text-ratio', (forest / bodyText).toFixed(3));
  b.setAttribute('data-figure-min-width', Math.floor(Math.min.apply(null, imgs.map(function (i) {
    return i.getBoundingClientRect().width; }).concat([1e9]))));
});
</script>"""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<title>pfps-meta report</title><style>" + style + "</style>" + check + "</head><body>\n"
            + body + "\n</body></html>\n")
