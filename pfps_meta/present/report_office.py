"""The report as a Word document (python-docx) and an Excel workbook (openpyxl).

Both are written from the dict of :func:`pfps_meta.present.report_data.collect` (the content of
``reports/report.json``), so the three hold the same numbers:

- :func:`write_docx`: the title, and per review its methods paragraph, the summary-of-findings (GRADE)
  table, the pooled results (one column per analysis), and per analysis its study rows, sensitivity rows
  and the forest and funnel figures; then the extraction status, the dependent-effect and network models
  as printed, and the provenance. Numbers are printed by :func:`cell_text` (4 decimals, p-values as
  :func:`pfps_meta.formatting.format_p`), one number per table cell.
- :func:`write_xlsx`: one sheet per table (:data:`SHEETS`), numbers stored as numbers at full precision,
  the header row frozen. Text that a spreadsheet would read as a formula (``=...``) is stored as text.

Figures come from :func:`draw_figures` (``present.plots.forest`` and ``funnel``, PNG at 200 dpi), or
are given as files. Files are written atomically (:func:`pfps_meta.present.outputs.atomic_write_bytes`)
and deterministically: no date of writing inside, so two runs on the same data give identical files.
"""

from __future__ import annotations

import io
import re
import sys
import warnings
from pathlib import Path

from pfps_meta.conventions import COUNT_METHODS
from pfps_meta.effects import measures
from pfps_meta.formatting import format_number, format_p
from pfps_meta.present.outputs import atomic_write_bytes, check_target
from pfps_meta.present.report_data import SENSITIVITY_COLUMNS

#: decimals of every non-integer number in the Word document (the workbook keeps full precision)
DIGITS = 4

#: keys whose values are p-values, printed as format_p prints them ("0.0123", "<.0001")
P_KEYS = frozenset({"p", "q_p"})

#: the workbook's sheets, in order
SHEETS = ("studies", "pooled", "sensitivity", "summary_of_findings", "extraction", "completeness", "models",
          "methods", "provenance")

FIGURE_DPI = 200

_LABELS = {
    "analysis": "Analysis", "study": "Study", "estimate": "Estimate", "ci_low": "CI low", "ci_high": "CI high",
    "pi_low": "PI low", "pi_high": "PI high", "yi": "yi", "vi": "vi", "weight": "Weight (%)", "se": "SE",
    "p": "p", "tau2": "tau²", "tau2_ci_low": "tau² CI low", "tau2_ci_high": "tau² CI high", "i2": "I² (%)",
    "q": "Q", "q_df": "Q df", "q_p": "Q p", "k": "k", "participants": "Participants", "method": "tau² method",
    "ci_method": "CI method", "level": "Level", "measure": "Measure", "outcome": "Outcome", "kind": "Analysis kind",
    "statistic": "Statistic", "df": "df", "k0": "Filled (k0)", "probability": "Probability", "note": "Note",
    "n_exp": "n exp", "mean_exp": "Mean exp", "sd_exp": "SD exp", "n_ctrl": "n ctrl", "mean_ctrl": "Mean ctrl",
    "sd_ctrl": "SD ctrl", "trial": "Trial", "timepoint": "Timepoint", "missing": "Missing",
    "where": "Where it is likely printed", "curated_notes": "Curated notes", "outcome_rows": "Outcome rows",
    "complete": "Complete (n, mean, SD)", "partial": "Partial", "effect_rows": "Between-group effects",
}

_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_DOC_DATES = re.compile(r"(<dcterms:(created|modified)\b[^>]*>)[^<]*(</dcterms:\2>)")


def _deterministic(package: bytes) -> bytes:
    """The same Office file (a zip) without the moment it was written: every member dated 1980-01-01
    and the document's created/modified properties set to that date too, so two runs on the same data
    give identical files (as the HTML report does)."""
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(package)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for member in source.infolist():
            content = source.read(member.filename)
            if member.filename == "docProps/core.xml":
                content = _DOC_DATES.sub(lambda m: m.group(1) + "1980-01-01T00:00:00Z" + m.group(3),
                                         content.decode("utf-8")).encode("utf-8")
            info = zipfile.ZipInfo(member.filename, date_time=_ZIP_TIME)
            info.compress_type, info.external_attr = zipfile.ZIP_DEFLATED, 0o600 << 16
            target.writestr(info, content)
    return out.getvalue()


def clean_text(text) -> str:
    """Text as Word and Excel can store it: characters XML forbids (control characters) removed."""
    return _ILLEGAL.sub("", str(text))


def label(key: str) -> str:
    return _LABELS.get(key, key.replace("_", " "))


def cell_text(key: str, value) -> str:
    """How the Word document prints one value: integers as they are, other numbers at :data:`DIGITS`
    decimals, p-values (:data:`P_KEYS`) as ``format_p(p, bare=True)``, None as an empty cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_p(value, bare=True) if key in P_KEYS else format_number(value, DIGITS)
    if isinstance(value, (list, tuple)):
        return "; ".join(cell_text(key, v) for v in value)
    return clean_text(value)


# --------------------------------------------------------------------------------------------------
# figures


def _png(fig, dpi: int) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None}, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def draw_figures(results, dpi: int = FIGURE_DPI) -> dict:
    """Per pairwise analysis with a pooled result: ``{key: [(caption, png_bytes), ...]}``, the forest
    plot as the HTML report draws it (:func:`pfps_meta.present.report.forest_figure`: PEDro scores, RoB 2,
    converted studies, the thin-evidence subtitle) and, from k >= 3, the contour-enhanced funnel plot with
    the trim-and-fill studies (``plots.funnel``)."""
    from pfps_meta.analysis import sensitivity
    from pfps_meta.present import plots
    from pfps_meta.present.report import forest_figure

    out = {}
    for spec, evidence, ar in results:
        res = getattr(ar, "result", None)
        if res is None:
            continue
        a = ar.analysis
        figures = [(f"Forest plot: {a.label}", _png(forest_figure(ar, evidence, spec)[0], dpi))]
        if res.stats["k"] >= 3:
            filled = None            # trim-and-fill refits by inverse variance: none for a Mantel-Haenszel/Peto fit
            if res.settings.method not in COUNT_METHODS:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", sensitivity.SmallStudyWarning)
                    filled = sensitivity.trimfill(res)
            figures.append((f"Contour-enhanced funnel plot: {a.label}",
                            _png(plots.funnel(res, contours=True, filled=filled, title=a.label), dpi)))
        out[a.key] = figures
    return out


# --------------------------------------------------------------------------------------------------
# Word


def _docx_setup(doc):
    from docx.enum.section import WD_ORIENT
    from docx.shared import Inches, Pt

    section = doc.sections[0]
    section.orientation = WD_ORIENT.LANDSCAPE
    section.page_width, section.page_height = Inches(11), Inches(8.5)
    for side in ("left_margin", "right_margin", "top_margin", "bottom_margin"):
        setattr(section, side, Inches(0.6))
    doc.styles["Normal"].font.size = Pt(9.5)


def _docx_table(doc, records, columns=None, header=None, show=None):
    """A table: a bold header row (``header``, else the columns' labels), then one row per record, each
    cell ``show(column, record)`` (default: :func:`cell_text` of the record's value)."""
    from docx.shared import Pt

    columns = list(columns or _columns(records))
    table = doc.add_table(rows=1, cols=len(columns))
    table.style = "Table Grid"
    for cell, text in zip(table.rows[0].cells, header or [label(c) for c in columns]):
        cell.text = ""
        cell.paragraphs[0].add_run(clean_text(text)).bold = True
    for record in records:
        cells = table.add_row().cells
        for cell, column in zip(cells, columns):
            cell.text = show(column, record) if show else cell_text(column, record.get(column))
    for row in table.rows:
        for cell in row.cells:
            for paragraph in cell.paragraphs:
                for run in paragraph.runs:
                    run.font.size = Pt(7.5)
    doc.add_paragraph()
    return table


def _columns(records) -> list:
    """The keys of ``records`` in first-seen order."""
    seen = {}
    for record in records:
        seen.update(dict.fromkeys(record))
    return list(seen)


def _docx_figure(doc, caption: str, source):
    """A figure (PNG bytes or a file path) scaled to fit the page, with its caption."""
    from docx.shared import Inches

    stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else str(Path(source))
    picture = doc.add_picture(stream)
    scale = min(1.0, Inches(9.6) / picture.width, Inches(6.6) / picture.height)
    picture.width, picture.height = int(picture.width * scale), int(picture.height * scale)
    doc.add_paragraph(clean_text(caption)).runs[0].italic = True


def _docx_pooled(doc, analyses):
    """The pooled results of a review: one row per statistic, one column per analysis with a result."""
    fitted = [a for a in analyses if a["pooled"] is not None]
    if not fitted:
        doc.add_paragraph("No analysis of this review has data to pool yet.")
        return
    keys = [k for k in _columns([a["pooled"] for a in fitted]) if k != "analysis"]
    records = [{"statistic": k, **{a["key"]: a["pooled"].get(k) for a in fitted}} for k in keys]

    def text(column, record):           # each value printed by its statistic's own rule
        key = record["statistic"]
        return label(key) if column == "statistic" else cell_text(key, record.get(column))

    _docx_table(doc, records, ["statistic", *[a["key"] for a in fitted]],
                header=["Statistic", *[a["key"] for a in fitted]], show=text)


def _docx_analysis(doc, analysis, figures):
    doc.add_heading(clean_text(analysis["label"]), 2)
    doc.add_paragraph(f"{analysis['key']}: {analysis['status']}; {analysis['k_available']} of "
                      f"{analysis['k_expected']} expected studies with data; estimates and CIs on the "
                      f"{analysis['scale']} scale, yi, vi, SE and tau² on the {analysis['analysis_scale']} scale.")
    for missing in analysis["missing"]:
        doc.add_paragraph(clean_text(f"{missing['trial']}: {missing['reason']}"), style="List Bullet")
    if analysis["studies"]:
        doc.add_heading("Studies", 3)
        _docx_table(doc, analysis["studies"], [c for c in _columns(analysis["studies"]) if c != "analysis"])
    for note in analysis["notes"]:
        doc.add_paragraph(clean_text(f"Note: {note}"), style="List Bullet")
    if analysis["sensitivity"]:
        doc.add_heading("Sensitivity analyses", 3)
        _docx_table(doc, analysis["sensitivity"], [c for c in SENSITIVITY_COLUMNS if c != "analysis"])
    for caption, source in figures.get(analysis["key"], []):
        _docx_figure(doc, caption, source)


def _docx_review(doc, review, figures):
    doc.add_heading(clean_text(review["title"]), 1)
    if review["citation"]:
        doc.add_paragraph(clean_text(f"Source review: {review['citation']}"))
    if review["methods"]:
        paragraph = doc.add_paragraph()
        paragraph.add_run("Methods. ").bold = True
        paragraph.add_run(clean_text(review["methods"]))
    if review["summary_of_findings"]:
        doc.add_heading("Summary of findings (GRADE)", 2)
        sof = review["summary_of_findings"]
        _docx_table(doc, sof, header=_columns(sof))
    if review["analyses"]:
        doc.add_heading("Analyses", 2)
        _docx_table(doc, review["analyses"], ["key", "label", "measure", "status", "k_available", "k_expected"],
                    header=["Analysis", "Outcome", "Measure", "Status", "Studies with data", "Studies expected"])
        doc.add_heading("Pooled results", 2)
        _docx_pooled(doc, review["analyses"])
    for analysis in review["analyses"]:
        _docx_analysis(doc, analysis, figures)
    if review["extraction"] or review["completeness"]:
        doc.add_heading("Extraction status", 2)
        if review["extraction"]:
            _docx_table(doc, review["extraction"])
        if review["completeness"]:
            _docx_table(doc, review["completeness"])
    if review["models"]:
        doc.add_heading("Dependent-effect and network models", 2)
        _docx_models(doc, review["models"])


def _docx_models(doc, models):
    from docx.shared import Pt

    for model in models:
        doc.add_heading(clean_text(model["label"]), 3)
        _docx_table(doc, [model], ["key", "model", "fitted", "n_effects", "n_clusters", "k_expected", "reason"])
        for line in model["summary"].split("\n"):
            run = doc.add_paragraph().add_run(clean_text(line))
            run.font.name, run.font.size = "Courier New", Pt(7)


def _docx_provenance(doc, provenance):
    doc.add_heading("Provenance", 1)
    doc.add_paragraph(clean_text(f"Command: {provenance['command']}"))
    _docx_table(doc, provenance["inputs"], header=["Input", "SHA-256"])
    _docx_table(doc, [{"package": k, "version": v} for k, v in provenance["versions"].items()],
                header=["Package", "Version"])


def write_docx(data: dict, path, figures=None, *, what: str = "--out") -> Path:
    """Write the Word report of ``data`` (:func:`report_data.collect`) to ``path`` atomically.

    ``figures``: ``{analysis key: [(caption, png bytes or a PNG file path), ...]}`` as
    :func:`draw_figures` returns; None puts no figures in. Returns the path written."""
    from docx import Document

    check_target(path, what=what)           # refused before the document is built
    doc = Document()
    _docx_setup(doc)
    doc.core_properties.title = clean_text(data["title"])
    doc.core_properties.author = "pfps-meta"
    doc.add_heading(clean_text(data["title"]), 0)
    doc.add_paragraph("Every review of the run in turn: its methods, the summary of findings, the pooled "
                      "results, each analysis's studies, sensitivity analyses and figures, what is still "
                      "missing, and the provenance of every input at the end.")
    for review in data["reviews"]:
        _docx_review(doc, review, figures or {})
    _docx_provenance(doc, data["provenance"])
    buffer = io.BytesIO()
    doc.save(buffer)
    return atomic_write_bytes(path, _deterministic(buffer.getvalue()), what=what)


# --------------------------------------------------------------------------------------------------
# Excel


def sheet_rows(data: dict) -> dict:
    """The workbook's tables: ``{sheet name: list of flat records}`` (every record names its review)."""
    tables = {name: [] for name in SHEETS}
    for review in data["reviews"]:
        tag = {"review": review["id"]}
        for analysis in review["analyses"]:
            tables["studies"] += [tag | row for row in analysis["studies"]]
            if analysis["pooled"] is not None:
                tables["pooled"].append(tag | analysis["pooled"])
            tables["sensitivity"] += [tag | row for row in analysis["sensitivity"]]
        tables["summary_of_findings"] += [tag | row for row in review["summary_of_findings"]]
        tables["extraction"] += [tag | row for row in review["extraction"]]
        tables["completeness"] += [tag | row for row in review["completeness"]]
        tables["models"] += [tag | row for row in review["models"]]
        if review["methods"]:
            tables["methods"].append(tag | {"title": review["title"], "citation": review["citation"],
                                            "methods": review["methods"]})
    prov = data["provenance"]
    tables["provenance"] = ([{"item": "command", "value": prov["command"], "sha256": None}]
                            + [{"item": "input", "value": i["path"], "sha256": i["sha256"]} for i in prov["inputs"]]
                            + [{"item": f"version: {k}", "value": v, "sha256": None}
                               for k, v in prov["versions"].items()])
    return tables


def _xlsx_value(cell, value):
    """Numbers (and booleans) as they are; text as text, even when it starts with '='."""
    if value is None:
        return
    if isinstance(value, (bool, int, float)):
        cell.value = value
        return
    text = "; ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    cell.value = clean_text(text)
    cell.data_type = "s"            # never a formula


def _xlsx_sheet(workbook, name, records):
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    sheet = workbook.create_sheet(name)
    columns = _columns(records) or ["(no rows)"]
    for j, column in enumerate(columns, start=1):
        cell = sheet.cell(row=1, column=j, value=column)
        cell.font = Font(bold=True)
    for i, record in enumerate(records, start=2):
        for j, column in enumerate(columns, start=1):
            _xlsx_value(sheet.cell(row=i, column=j), record.get(column))
    sheet.freeze_panes = "A2"
    for j, column in enumerate(columns, start=1):
        longest = max([len(column)] + [len(str(r.get(column) or "")) for r in records])
        sheet.column_dimensions[get_column_letter(j)].width = min(60, max(8, longest + 2))


def write_xlsx(data: dict, path, *, what: str = "--out") -> Path:
    """Write the Excel workbook of ``data`` (:func:`report_data.collect`) to ``path`` atomically: one sheet
    per table of :data:`SHEETS`, header row frozen, column names the JSON keys. Returns the path written."""
    from openpyxl import Workbook

    check_target(path, what=what)
    workbook = Workbook()
    workbook.remove(workbook.active)
    workbook.properties.creator = "pfps-meta"
    workbook.properties.title = clean_text(data["title"])
    for name, records in sheet_rows(data).items():
        _xlsx_sheet(workbook, name, records)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return atomic_write_bytes(path, _deterministic(buffer.getvalue()), what=what)


# --------------------------------------------------------------------------------------------------
# the whole run: ``pfps-meta report --format docx|xlsx``


def office_path(out, fmt: str) -> Path:
    """Where ``--format fmt`` writes: ``out`` itself when it ends in ``.docx`` / ``.xlsx`` (the format's
    own suffix), else ``out/report.<fmt>`` (``out`` a folder, as for the HTML report)."""
    import os

    from pfps_meta.errors import InputError

    if not isinstance(out, (str, os.PathLike)):
        raise InputError(f"--out must be a path, not {type(out).__name__}")
    out = Path(out)
    return out if out.suffix.lower() == f".{fmt}" else out / f"report.{fmt}"


def build_office_report(spec_paths, fmt: str, out="reports", command: str = "pfps-meta report", extraction=None,
                        progress: bool = True) -> Path:
    """Run every analysis of ``spec_paths`` and write the Word (``fmt="docx"``) or Excel (``"xlsx"``)
    report to :func:`office_path` ``(out, fmt)``; returns the path written. The target is checked before
    any work (a folder, device or input file of the run is refused with an InputError)."""
    from pfps_meta.errors import InputError
    from pfps_meta.evidence.specs import run_analysis
    from pfps_meta.present.outputs import run_inputs
    from pfps_meta.present.report import loaded_specs
    from pfps_meta.present.report_data import collect

    if fmt not in ("docx", "xlsx"):
        raise InputError(f"--format must be docx or xlsx here, not {fmt!r}")
    path = office_path(out, fmt)
    check_target(path, what="--out")
    loaded = loaded_specs(spec_paths, extraction)
    check_target(path, what="--out", inputs=run_inputs(loaded, [extraction]))
    results = []
    total = sum(len(spec.analyses) for spec, _ in loaded)
    for spec, evidence in loaded:
        for analysis in spec.analyses:
            if progress:
                print(clean_text(f"[{len(results) + 1}/{total}] {analysis.key}: {analysis.label}"), file=sys.stderr)
            results.append((spec, evidence, run_analysis(analysis, evidence)))
    data = collect(loaded, results, command=command)
    if fmt == "docx":
        written = write_docx(data, path, figures=draw_figures(results))
    else:
        written = write_xlsx(data, path)
    if progress:
        print(f"wrote {path}", file=sys.stderr)
    return written


__all__ = ["write_docx", "write_xlsx", "draw_figures", "build_office_report", "office_path", "sheet_rows",
           "cell_text", "clean_text", "label", "DIGITS", "P_KEYS", "SHEETS", "FIGURE_DPI"]
