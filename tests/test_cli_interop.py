"""The interop commands end to end: a RevMan 5 file in (import-revman, then reproduce against the totals
it stores), the equivalent R script out (export-r), the report as Word and Excel (report --format)."""

import json

import openpyxl
import pytest
from docx import Document

from pfps_meta.cli import main
from tests.conftest import ROOT

RM5 = ROOT / "tests" / "fixtures" / "revman" / "examples.rm5"
CAFFEINE = ROOT / "analyses" / "examples" / "caffeine.toml"
HACKSHAW = ROOT / "analyses" / "examples" / "hackshaw1997.toml"


def _run(capsys, argv, code=0):
    got = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert got == code, err
    return out, err


def test_revman_file_round_trips_to_a_reproduce_table_where_every_stored_total_is_reproduced(capsys, tmp_path):
    out, _ = _run(capsys, ["import-revman", RM5, "--out", tmp_path / "imported"])
    assert "12 analyses written" in out and "no_target" in out
    [spec] = (tmp_path / "imported").glob("*.toml")
    rows = json.loads(_run(capsys, ["reproduce", spec, "--format", "json"])[0])
    statuses = {row["analysis"]: row["status"] for row in rows}
    assert len(statuses) == 12
    assert statuses.pop("examples/o2_3") == "no_target"        # the outcome stored without totals
    assert set(statuses.values()) == {"reproduced"}, statuses
    methods = {row["analysis"]: row["method"] for row in rows}
    assert methods["examples/o1_1"] == "MH" and methods["examples/o1_3"] == "PETO"
    assert methods["examples/o1_6"] == "MH_DL" and methods["examples/o3_1"] == "FE"


def test_import_revman_refuses_a_file_that_is_not_revman_xml(capsys, tmp_path):
    bad = tmp_path / "notes.rm5"
    bad.write_text("<html><body>not a review</body></html>")
    _, err = _run(capsys, ["import-revman", bad, "--out", tmp_path / "out"], code=2)
    assert len(err.strip().splitlines()) == 1 and "notes.rm5" in err and "RevMan" in err
    assert not (tmp_path / "out").exists()


def test_export_r_prints_the_metafor_script_of_a_mantel_haenszel_analysis(capsys):
    script, _ = _run(capsys, ["export-r", CAFFEINE, "--analysis", "headache"])
    assert "library(metafor)" in script and "rma.mh(" in script and 'measure = "OR"' in script
    assert "PFPS_COMPARE" in script


def test_export_r_writes_a_file_and_never_over_its_input(capsys, tmp_path):
    target = tmp_path / "hackshaw.R"
    _, err = _run(capsys, ["export-r", HACKSHAW, "--analysis", "main", "--out", target])
    text = target.read_text()
    assert 'method = "DL"' in text and "rma(" in text and "Rscript" in err
    _, err = _run(capsys, ["export-r", HACKSHAW, "--analysis", "main", "--out", HACKSHAW], code=2)
    assert "input" in err
    _, err = _run(capsys, ["export-r", HACKSHAW, "--analysis", "nope"], code=2)
    assert "main" in err


@pytest.mark.parametrize("fmt", ["docx", "xlsx"])
def test_report_format_office_writes_the_pooled_result(capsys, tmp_path, fmt):
    _, err = _run(capsys, ["report", HACKSHAW, "--format", fmt, "--out", tmp_path / "out"])
    path = tmp_path / "out" / f"report.{fmt}"
    assert path.exists() and str(path) in err
    if fmt == "docx":
        cells = [cell.text for table in Document(path).tables for row in table.rows for cell in row.cells]
        assert any("1.2" in cell for cell in cells)           # hackshaw1997 OR 1.24 [1.13, 1.36]
    else:
        book = openpyxl.load_workbook(path)
        assert {"studies", "pooled", "provenance"} <= set(book.sheetnames)
        numbers = [c for row in book["studies"].iter_rows(values_only=True) for c in row if isinstance(c, float)]
        assert len(numbers) > 37


def test_import_revman_text_states_the_decimals_it_wrote(capsys, tmp_path):
    out, _ = _run(capsys, ["import-revman", RM5, "--out", tmp_path / "imported", "--decimals", "6"])
    assert "written to 6 decimal places (--decimals)" in out


def test_pool_text_names_every_setting_given_even_one_the_model_does_not_print(capsys):
    """--mh-add changes the Mantel-Haenszel study effects but is not part of metafor's printout: the text
    lists every setting that differs from the defaults, named as its flag."""
    out, _ = _run(capsys, ["pool", ROOT / "data" / "examples" / "bcg.csv", "--measure", "OR", "--method", "MH",
                           "--mh-add", "0.25", "--level", "0.9"])
    line = next(line for line in out.splitlines() if line.startswith("Settings other than the defaults:"))
    assert "--method MH" in line and "--mh-add 0.25" in line and "--level 0.9" in line


def test_simulate_refuses_dask_min_seconds_without_a_scheduler(capsys):
    _, err = _run(capsys, ["simulate", "--k", "3", "--replicates", "250", "--dask-min-seconds", "5"], code=2)
    assert "--dask-min-seconds" in err and "--scheduler" in err
