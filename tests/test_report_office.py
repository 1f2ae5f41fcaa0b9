"""The Word and Excel reports (issue 21, item 3): built once from the bundled specs, read back with
python-docx and openpyxl, every number of the JSON report found in both, and both converted to PDF by
LibreOffice headless."""

import bisect
import copy
import json
import math
import os
import shutil
import subprocess
import warnings

import docx          # python-docx and openpyxl are dependencies: a missing one fails, never skips
import openpyxl
import pytest

from pfps_meta.errors import InputError
from pfps_meta.evidence.specs import default_spec_paths, load_all, run_analysis
from pfps_meta.present import report_office
from pfps_meta.present.report_data import SENSITIVITY_COLUMNS, collect

from .conftest import ROOT



@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The bundled specs (pairwise, dependent-effect and network), the JSON data, and both files."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = load_all(default_spec_paths(ROOT, include_models=True))
        results = [(spec, evidence, run_analysis(a, evidence)) for spec, evidence in loaded for a in spec.analyses]
        data = collect(loaded, results, command="pfps-meta report --format docx")
        figures = report_office.draw_figures(results)
    folder = tmp_path_factory.mktemp("office")
    docx_path = report_office.write_docx(data, folder / "report.docx", figures=figures)
    xlsx_path = report_office.write_xlsx(data, folder / "report-tables.xlsx")
    return {"data": data, "figures": figures, "docx": docx_path, "xlsx": xlsx_path, "folder": folder}


def _numbers(value, key=None, where="data"):
    """Every finite number of the JSON data with the key it sits under and where it is."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _numbers(v, k, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _numbers(v, key, f"{where}[{i}]")
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        yield key, value, where


def _docx_cells(path) -> set:
    document = docx.Document(str(path))
    return {cell.text.strip() for table in document.tables for row in table.rows for cell in row.cells}


def _docx_paragraphs(path) -> str:
    return "\n".join(p.text for p in docx.Document(str(path)).paragraphs)


def test_the_data_is_strict_json_with_every_section(built):
    data = built["data"]
    json.dumps(data, allow_nan=False)
    ids = [r["id"] for r in data["reviews"]]
    assert ids[0] == "nascimento2018" and {"hackshaw1997", "normand1999", "senn2013"} <= set(ids)
    pfp = data["reviews"][0]
    assert pfp["methods"].startswith("Analyses of ") and len(pfp["summary_of_findings"]) == 4
    assert pfp["extraction"] and pfp["completeness"]
    hackshaw = next(r for r in data["reviews"] if r["id"] == "hackshaw1997")["analyses"][0]
    kinds = {row["kind"] for row in hackshaw["sensitivity"]}
    assert {"leave-one-out", "Egger's test, classic weighted regression", "Begg's rank correlation",
            "trim-and-fill (L0)"} <= kinds
    assert len(hackshaw["studies"]) == hackshaw["pooled"]["k"] == 37
    assert all(set(row) == set(SENSITIVITY_COLUMNS) for row in hackshaw["sensitivity"])
    assert {i["path"] for i in data["provenance"]["inputs"]} >= {"analyses/nascimento2018.toml", "data/outcomes.csv"}


def test_hackshaw_pooled_odds_ratio_is_reported_on_the_ratio_scale(built):
    """Hackshaw 1997: the pooled OR (metafor rma on the log scale, reported as exp) is about 1.24."""
    hackshaw = next(r for r in built["data"]["reviews"] if r["id"] == "hackshaw1997")["analyses"][0]
    pooled = hackshaw["pooled"]
    assert pooled["ci_low"] < pooled["estimate"] < pooled["ci_high"]
    assert 1.1 < pooled["estimate"] < 1.4
    study = hackshaw["studies"][0]
    assert math.isclose(study["estimate"], math.exp(study["yi"]), rel_tol=1e-12)


def test_docx_holds_every_number_of_the_json_report(built):
    cells = _docx_cells(built["docx"])
    absent = [(where, report_office.cell_text(key, value)) for key, value, where in _numbers(built["data"])
              if report_office.cell_text(key, value) not in cells]
    assert not absent, f"{len(absent)} numbers missing from the Word report, e.g. {absent[:5]}"


def test_docx_holds_the_methods_the_grade_rows_figures_and_provenance(built):
    data, text, cells = built["data"], _docx_paragraphs(built["docx"]), _docx_cells(built["docx"])
    for review in data["reviews"]:
        if review["methods"]:
            assert review["methods"] in text
        for row in review["summary_of_findings"]:
            assert all(str(v) in cells for v in row.values() if v)
        for model in review["models"]:
            assert model["summary"].split("\n")[0] in text
    assert all(i["sha256"] in cells and i["path"] in cells for i in data["provenance"]["inputs"])
    assert "Command: pfps-meta report --format docx" in text
    document = docx.Document(str(built["docx"]))
    expected = sum(len(v) for v in built["figures"].values())
    assert expected == 8            # forest for B1, B2, caffeine, hackshaw, normand; funnel for the last three
    assert len(document.inline_shapes) == expected


def _xlsx_cells(path):
    workbook = openpyxl.load_workbook(path)
    numbers, texts = [], []
    for sheet in workbook.worksheets:
        for row in sheet.iter_rows(min_row=2):
            for cell in row:
                if isinstance(cell.value, (int, float)) and not isinstance(cell.value, bool):
                    numbers.append(cell.value)
                elif isinstance(cell.value, str):
                    texts.append(cell.value)
    return workbook, numbers, texts


def test_xlsx_holds_every_number_of_the_json_report_as_a_number(built):
    workbook, numbers, texts = _xlsx_cells(built["xlsx"])
    stored = sorted(numbers)

    def found(value):       # openpyxl writes numbers with 16 significant digits ("%.16g")
        i = bisect.bisect_left(stored, value - abs(value) * 1e-15)
        return i < len(stored) and math.isclose(stored[i], value, rel_tol=1e-15, abs_tol=0.0)

    absent = [(where, value) for _, value, where in _numbers(built["data"]) if not found(value)]
    assert not absent, f"{len(absent)} numbers missing from the workbook, e.g. {absent[:5]}"

    def looks_numeric(text):
        try:
            float(text)
        except ValueError:
            return False
        return True

    assert not [t for t in texts if looks_numeric(t)], "a number was stored as text"


def test_xlsx_has_one_sheet_per_table_with_frozen_headers_and_the_rows_of_the_data(built):
    workbook = openpyxl.load_workbook(built["xlsx"])
    assert workbook.sheetnames == list(report_office.SHEETS)
    for sheet in workbook.worksheets:
        assert sheet.freeze_panes == "A2", sheet.title
    tables = report_office.sheet_rows(built["data"])
    for name, records in tables.items():
        sheet = workbook[name]
        header = [c.value for c in sheet[1]]
        read = [dict(zip(header, (c.value for c in row))) for row in sheet.iter_rows(min_row=2)]
        assert len(read) == len(records), name
        for got, want in zip(read, records):
            want = {k: None if want.get(k) == "" else want.get(k) for k in header}     # "" is an empty cell
            assert got == pytest.approx(want, rel=1e-15, abs=0), name
    assert len(tables["studies"]) == sum(len(a["studies"]) for r in built["data"]["reviews"] for a in r["analyses"])


def test_text_that_looks_like_a_formula_or_holds_control_characters_stays_plain_text(built, tmp_path):
    data = copy.deepcopy(built["data"])
    data["reviews"] = [r for r in data["reviews"] if r["id"] == "hackshaw1997"]
    hackshaw = data["reviews"][0]
    hackshaw["analyses"][0]["studies"][0]["study"] = '=HYPERLINK("http://example.org","x")\x07'
    hackshaw["title"] = "Bell\x07 and =1+1"
    path = report_office.write_xlsx(data, tmp_path / "hostile.xlsx")
    sheet = openpyxl.load_workbook(path)["studies"]
    column = [c.value for c in sheet[1]].index("study")
    cell = next(row[column] for row in sheet.iter_rows(min_row=2)
                if str(row[column].value).startswith("=HYPERLINK"))
    assert cell.data_type == "s" and cell.value == '=HYPERLINK("http://example.org","x")'
    report_office.write_docx(data, tmp_path / "hostile.docx")
    assert "Bell and =1+1" in _docx_paragraphs(tmp_path / "hostile.docx")


def test_a_folder_as_the_output_path_is_refused_in_one_line(built, tmp_path):
    with pytest.raises(InputError, match="names a folder"):
        report_office.write_docx(built["data"], tmp_path)
    with pytest.raises(InputError, match="names a folder"):
        report_office.write_xlsx(built["data"], tmp_path)


def test_p_values_print_as_format_p_and_other_numbers_at_four_decimals():
    assert report_office.cell_text("p", 3e-7) == "<.0001"
    assert report_office.cell_text("q_p", 0.04567) == "0.0457"
    assert report_office.cell_text("estimate", -1.7) == "-1.7000"
    assert report_office.cell_text("k", 37) == "37"
    assert report_office.cell_text("estimate", None) == ""


def test_libreoffice_converts_both_to_pdf(built, tmp_path):
    soffice = shutil.which("soffice") or shutil.which("libreoffice")
    if soffice is None:
        if os.environ.get("CI"):       # CI runs scripts/test.sh, which installs it: a missing soffice is a failure
            pytest.fail("LibreOffice (soffice) is not installed (scripts/test.sh installs Debian's libreoffice-core, "
                        "-writer and -calc)")
        pytest.skip("LibreOffice (soffice) is not installed; scripts/test.sh installs it when run as root")
    out = tmp_path / "pdf"
    profile = (tmp_path / "lo-profile").as_uri()
    run = subprocess.run([soffice, f"-env:UserInstallation={profile}", "--headless", "--convert-to", "pdf",
                          "--outdir", str(out), str(built["docx"]), str(built["xlsx"])],
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr
    for stem in ("report", "report-tables"):
        pdf = out / f"{stem}.pdf"
        assert pdf.exists() and pdf.stat().st_size > 1000, (stem, run.stdout, run.stderr)
        assert pdf.read_bytes()[:5] == b"%PDF-"


def test_two_writes_of_the_same_data_give_identical_files(built, tmp_path):
    data = copy.deepcopy(built["data"])
    data["reviews"] = [r for r in data["reviews"] if r["id"] == "normand1999"]
    figures = {key: shown for key, shown in built["figures"].items() if key.startswith("normand1999/")}
    first = report_office.write_docx(data, tmp_path / "a.docx", figures=figures).read_bytes()
    assert report_office.write_docx(data, tmp_path / "b.docx", figures=figures).read_bytes() == first
    first = report_office.write_xlsx(data, tmp_path / "a.xlsx").read_bytes()
    assert report_office.write_xlsx(data, tmp_path / "b.xlsx").read_bytes() == first


def test_figures_given_as_files_are_placed_under_their_analysis(built, tmp_path):
    data = copy.deepcopy(built["data"])
    data["reviews"] = [r for r in data["reviews"] if r["id"] == "normand1999"]
    caption, png = built["figures"]["normand1999/los_smd"][0]
    (tmp_path / "forest.png").write_bytes(png)
    path = report_office.write_docx(data, tmp_path / "given.docx",
                                    figures={"normand1999/los_smd": [(caption, tmp_path / "forest.png")]})
    document = docx.Document(str(path))
    assert len(document.inline_shapes) == 1
    assert caption in _docx_paragraphs(path)


def test_build_office_report_writes_into_a_folder_or_to_the_named_file(tmp_path, capsys):
    spec = ROOT / "analyses" / "examples" / "normand1999.toml"
    path = report_office.build_office_report([spec], "xlsx", out=tmp_path / "out", command="pfps-meta report "
                                             "--format xlsx")
    assert path == tmp_path / "out" / "report.xlsx"
    workbook = openpyxl.load_workbook(path)
    assert workbook["pooled"].max_row == 2 and workbook["studies"].max_row == 1 + 9
    assert "wrote" in capsys.readouterr().err
    named = report_office.build_office_report([spec], "docx", out=tmp_path / "mine.docx", progress=False)
    assert named == tmp_path / "mine.docx" and len(docx.Document(str(named)).inline_shapes) == 2
    with pytest.raises(InputError, match="--format must be docx or xlsx"):
        report_office.build_office_report([spec], "pdf", out=tmp_path)
    with pytest.raises(InputError, match="is a file, not a folder"):      # --out a file: refused before any work
        report_office.build_office_report([spec], "xlsx", out=spec)
    with pytest.raises(InputError, match="spec_paths: no analysis spec given"):
        report_office.build_office_report([], "docx", out=tmp_path / "none", progress=False)
    assert not (tmp_path / "none").exists()
    with pytest.raises(InputError, match="--out must be a path, not NoneType"):
        report_office.build_office_report([spec], "docx", out=None)


def test_caffeine_grade_row_is_graded_on_its_rob2_judgements_as_in_the_html_report(built):
    """report.json, Word and Excel grade risk of bias from data/risk_of_bias.csv, as index.html does (they
    used to fall back to PEDro, which the caffeine example has none of)."""
    from pfps_meta.analysis.grade import summary_of_findings
    from pfps_meta.present.report import risk_of_bias_judgements

    review = next(r for r in built["data"]["reviews"] if r["id"] == "caffeine")
    graded = review["summary_of_findings"][0]["Risk of bias"]
    assert graded.startswith("not serious (suggested): high risk 19% of the weight")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec, evidence = load_all([ROOT / "analyses" / "examples" / "caffeine.toml"])[0]
        runs = [run_analysis(a, evidence) for a in spec.analyses]
    html = summary_of_findings(runs, evidence, risk_of_bias=risk_of_bias_judgements(spec, evidence))
    assert graded == html["Risk of bias"].iloc[0]


def test_caffeine_word_forest_plot_carries_the_rob2_traffic_lights_as_the_html_one_does(built):
    """The Word report's forest plot is the HTML report's (report.forest_figure): for caffeine, with RoB 2
    judgements in data/risk_of_bias.csv, it differs from the forest plot drawn without them (it used to be
    the bare plots.forest)."""
    import io

    from pfps_meta.present import plots
    from pfps_meta.present.report import forest_figure

    def png(fig):
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=report_office.FIGURE_DPI, metadata={"Software": None},
                    bbox_inches="tight")
        return buffer.getvalue()

    caption, shown = built["figures"]["caffeine/headache"][0]
    assert caption.startswith("Forest plot")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec, evidence = load_all([ROOT / "analyses" / "examples" / "caffeine.toml"])[0]
        ar = run_analysis(spec.analyses[0], evidence)
        html, without_rob = png(forest_figure(ar, evidence, spec)[0]), png(forest_figure(ar, evidence)[0])
        bare = png(plots.forest(ar.result, title=ar.analysis.label))
    assert shown == html
    assert shown != without_rob and shown != bare
