"""Issue 15 (items 1, 2, 4): one entrance for every study table, input layouts as registry rows, and
extraction sheets checked as inputs. The B1 analysis of Nascimento et al. 2018 (pain, hip + knee vs knee
alone) with the synthetic extraction sheet is the running example."""

import ast
import csv
import io
import json
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest

import pfps_meta as pm
from pfps_meta.cli import main
from pfps_meta.errors import InputError, InputWarning
from pfps_meta.evidence.extraction import load_extraction
from pfps_meta.evidence.specs import load_all, load_spec, run_analysis
from pfps_meta.inputs import conversions, layouts
from pfps_meta.inputs.validate import TranscriptionWarning, study_table
from tests.conftest import FIXTURES, ROOT

SPEC = ROOT / "analyses" / "nascimento2018.toml"
SHEET = FIXTURES / "synthetic" / "extraction_nascimento2018_B1.csv"
B1_DEFAULT = -1.4148128738216403      # B1 from the sheet with the spec's settings (Luo mean, Shi SD, 95% CIs)


def _b1(settings=None, sheet=SHEET, spec=SPEC):
    (loaded, evidence), = load_all([spec], extraction=sheet)
    b1 = next(a for a in loaded.analyses if a.id == "B1")
    return run_analysis(b1, evidence, settings=settings)


def _spec_with(tmp_path, settings_lines="", analysis_lines=""):
    text = SPEC.read_text().replace('data_dir = "../data"', f'data_dir = "{ROOT / "data"}"')
    text = text.replace('smd_convention = "revman5"\n', 'smd_convention = "revman5"\n' + settings_lines)
    text = text.replace('id = "B1"\n', 'id = "B1"\n' + analysis_lines)
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


def _sheet_rows():
    lines = SHEET.read_text().splitlines()
    comments = [line for line in lines if line.startswith("#")]
    return comments, list(csv.DictReader(io.StringIO("\n".join(line for line in lines if not line.startswith("#")))))


def _edited_sheet(tmp_path, edit, drop_columns=()):
    """A copy of the B1 sheet with ``edit(rows)`` applied; comment lines kept, so line numbers stay."""
    comments, rows = _sheet_rows()
    edit(rows)
    fields = [c for c in rows[0] if c not in drop_columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    path = tmp_path / "sheet.csv"
    path.write_text("\n".join(comments) + "\n" + buffer.getvalue())
    return path


def _row(rows, trial, arm):
    return next(r for r in rows if r["trial_id"] == trial and r["arm"] == arm)


def _line_of(trial, arm):
    """The sheet line of one arm (header line 3, after two comment lines)."""
    _, rows = _sheet_rows()
    return 4 + rows.index(_row(rows, trial, arm))


# ------------------------------------------------------------------ item 1: the spec's settings apply


def test_nascimento2018_b1_from_the_sheet_follows_the_specs_mean_method(tmp_path):
    assert _b1().result.stats["estimate"] == pytest.approx(B1_DEFAULT, rel=1e-12)
    wan = _b1(spec=_spec_with(tmp_path, 'mean_method = "wan"\n'))
    assert wan.result.settings.mean_method == "wan"
    assert abs(wan.result.stats["estimate"] - B1_DEFAULT) > 1e-3
    # Ismail 2013 CKC_HIP printed a median 3.0 with its range 0 to 7 (n = 11): Wan et al. 2014's mean
    studies = wan.result.studies.set_index("study")
    expected = conversions.mean_sd_from_range(11, 3.0, 0.0, 7.0, mean_method="wan")
    luo = conversions.mean_sd_from_range(11, 3.0, 0.0, 7.0, mean_method="luo")
    assert abs(float(expected.mean) - float(luo.mean)) > 0.01
    assert studies.loc["ismail2013", "mean_exp"] == pytest.approx(float(expected.mean), rel=1e-12)
    assert "wan" in studies.loc["ismail2013", "conversion"]


def test_nascimento2018_b1_from_the_sheet_follows_input_level():
    ninety = _b1({"input_level": 0.90})
    assert abs(ninety.result.stats["estimate"] - B1_DEFAULT) > 1e-4
    studies = ninety.result.studies.set_index("study")
    # Fukuda 2010 KHE printed a 95%-labelled CI 2.08 to 3.72 (n = 23); read at 90% it gives a wider SD
    expected = conversions.sd_from_ci(2.08, 3.72, 23, level=0.90)
    assert studies.loc["fukuda2010", "sd_exp"] == pytest.approx(float(expected.value), rel=1e-12)


def test_evidence_path_and_pool_csv_give_the_same_arm_conversion():
    """Ismail 2013 as a pool CSV row and through the sheet: the same yi under the same settings."""
    run = _b1({"mean_method": "wan"})
    used = run.result.studies.set_index("study").loc["ismail2013"]
    row = pd.DataFrame({"study": ["ismail2013"], "n_exp": [11], "median_exp": [3.0], "min_exp": [0.0],
                        "max_exp": [7.0], "n_ctrl": [9], "mean_ctrl": [5.0], "se_ctrl": [0.73]})
    table = pm.effect_table(row, "MD", settings=run.result.settings)
    # the sheet's 0-10 VAS is already on the target range 0-10, lower pain favours the experimental arm
    assert float(table["yi"].iloc[0]) == pytest.approx(used["yi"], rel=1e-12)
    assert float(table["vi"].iloc[0]) == pytest.approx(used["vi"], rel=1e-12)


# ------------------------------------------------------------------ item 2: layouts as registry rows


def test_every_layout_is_a_registry_row_with_columns_measures_and_a_rule():
    assert {"arm", "binary", "prepost", "arm_rows", "binary_arm_rows", "yi_vi", "yi_sei", "estimate_ci"} \
        <= set(layouts.LAYOUTS)
    for layout in layouts.LAYOUTS.values():
        assert layout.columns[0] == "study" and callable(layout.rule)
        assert layout.measures is None or set(layout.measures) <= set(pm.measures.MEASURES)
    assert layouts.LAYOUTS["prepost"].required("SMCR") == ("study", "n", "mean_t1", "sd_t1", "mean_t2", "r")
    assert "sd_t2" in layouts.LAYOUTS["prepost"].required("SMCC")
    assert ("se_exp",) in layouts.LAYOUTS["arm"].replacements["sd_exp"]


def test_smcr_without_sd_t2_is_pooled_and_smcc_names_the_missing_column():
    table = pd.DataFrame({"study": ["a", "b"], "n": [20, 25], "mean_t1": [5.0, 6.0], "sd_t1": [1.0, 1.5],
                          "mean_t2": [4.0, 5.1], "r": [0.5, 0.6]})
    assert len(pm.effect_table(table, "SMCR")) == 2
    with pytest.raises(InputError, match="missing column 'sd_t2' needed for measure SMCC"):
        pm.effect_table(table, "SMCC")


ARM_ROWS = pd.DataFrame({"study": ["s1", "s1", "s1", "s2", "s2"], "treatment": ["A", "B", "C", "A", "C"],
                         "n": [20, 21, 19, 30, 31], "mean": [3.0, 2.5, np.nan, 4.0, 3.1],
                         "sd": [1.0, 1.1, np.nan, 1.2, np.nan], "se": [np.nan, np.nan, np.nan, np.nan, 0.2],
                         "median": [np.nan, np.nan, 2.0, np.nan, np.nan], "q1": [np.nan, np.nan, 1.0, np.nan, np.nan],
                         "q3": [np.nan, np.nan, 3.5, np.nan, np.nan]})


def test_one_row_per_arm_layout_is_validated_with_the_same_conversions():
    checked = study_table(ARM_ROWS, "MD", mean_method="wan")
    assert checked.attrs["layout"] == "arm_rows"
    assert checked["mean"].iloc[2] == pytest.approx((1.0 + 2.0 + 3.5) / 3)
    assert checked["sd"].iloc[4] == pytest.approx(0.2 * np.sqrt(31))
    assert "sd_from_se" in checked["conversion"].iloc[4]
    with pytest.raises(InputError, match="checked but not pooled yet"):
        pm.effect_table(ARM_ROWS, "MD")


@pytest.mark.parametrize("edit, column, reason", [
    (lambda t: t.drop(index=[3, 4]).assign(study=["s1", "s1", "s2"]), "study", "one arm only"),
    (lambda t: t.assign(treatment=["A", "B", "A", "A", "C"]), "treatment", "lists treatment 'A' twice"),
    (lambda t: t.assign(sd=[1.0, -1, np.nan, 1.2, np.nan]), "sd", "must be greater than 0"),
])
def test_one_row_per_arm_layout_refusals(edit, column, reason):
    with pytest.raises(InputError, match=reason) as err:
        study_table(edit(ARM_ROWS.copy()).reset_index(drop=True), "MD")
    assert err.value.column == column


def test_binary_one_row_per_arm_layout():
    table = pd.DataFrame({"study": ["s1", "s1", "s2", "s2"], "treatment": ["A", "B", "A", "C"],
                          "events": [3, 5, 2, 40], "n": [20, 21, 30, 31]})
    with pytest.raises(InputError, match="40 events but only 31 participants") as err:
        study_table(table, "RR")
    assert err.value.row == 4
    checked = study_table(table.assign(events=[3, 5, 2, 4]), "OR")
    assert checked.attrs["layout"] == "binary_arm_rows" and list(checked["events"]) == [3, 5, 2, 4]


def _imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def test_no_import_circle_between_specs_and_extraction_even_inside_functions():
    extraction = ROOT / "pfps_meta" / "evidence" / "extraction.py"
    curated = ROOT / "pfps_meta" / "evidence" / "curated.py"
    assert "pfps_meta.evidence.specs" not in set(_imports(extraction))
    assert not {"pfps_meta.evidence.specs", "pfps_meta.evidence.extraction"} & set(_imports(curated))
    assert "pfps_meta.inputs.validate" not in set(_imports(curated))     # curated needs only load and layouts


# ------------------------------------------------------------------ item 3: sheets keep what was typed


@pytest.mark.parametrize("column, value, trial, arm", [
    ("trial_id", "baldon2041", "baldon2014", "FST"),
    ("outcome", "pian", "baldon2014", "FST"),
    ("arm", "KNE", "razeghi2010", "KNEE"),
    ("timepoint", "pots", "baldon2014", "ST"),
])
def test_nascimento2018_sheet_row_matching_nothing_names_the_sheet_line(tmp_path, capsys, column, value, trial, arm):
    sheet = _edited_sheet(tmp_path, lambda rows: _row(rows, trial, arm).update({column: value}))
    assert main(["reproduce", str(SPEC), "--extraction", str(sheet)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert str(sheet) in err[0] and f"line {_line_of(trial, arm)}" in err[0] and f"column '{column}'" in err[0]
    assert f"'{value}' matches no analysis" in err[0] and "outcomes.csv" not in err[0]


def test_nascimento2018_sheet_sd_and_se_that_disagree_are_warned_with_the_line(tmp_path):
    # Razeghi 2010 KNEE_HIP: SD 2.1 typed, with an SE of 3.26 (x sqrt(11) = 10.8)
    sheet = _edited_sheet(tmp_path, lambda rows: _row(rows, "razeghi2010", "KNEE_HIP").update({"se": "3.26"}))
    with pytest.warns(TranscriptionWarning) as caught:
        run = _b1(sheet=sheet)
    text = [str(w.message) for w in caught if "SD and the SE disagree" in str(w.message)]
    assert len(text) == 1
    assert str(sheet) in text[0] and f"line {_line_of('razeghi2010', 'KNEE_HIP')}" in text[0]
    assert "10.8" in text[0] and "half a unit" in text[0]
    assert run.result.studies.set_index("study").loc["razeghi2010", "sd_exp"] == 2.1     # used as printed


def test_nascimento2018_sheet_sd_and_se_agreeing_within_rounding_are_quiet(tmp_path):
    # SD 2.1 with SE 0.63: 0.63 x sqrt(11) = 2.09, and 0.625..0.635 x sqrt(11) reaches 2.07..2.11
    sheet = _edited_sheet(tmp_path, lambda rows: _row(rows, "razeghi2010", "KNEE_HIP").update({"se": "0.63"}))
    with warnings.catch_warnings():
        warnings.simplefilter("error", TranscriptionWarning)
        load_extraction(sheet)


def test_nascimento2018_sheet_asymmetric_ci_of_the_mean_is_warned_with_the_line(tmp_path):
    # Sahin 2016 KNEE: mean 4.0 with a CI 3.0 to 7.0 (1 below, 3 above)
    sheet = _edited_sheet(tmp_path, lambda rows: _row(rows, "sahin2016", "KNEE").update(
        {"ci_low": "3.0", "ci_high": "7.0"}))
    with pytest.warns(TranscriptionWarning, match="CI is asymmetric around the mean") as caught:
        load_extraction(sheet)
    message = next(str(w.message) for w in caught if "asymmetric" in str(w.message))
    assert str(sheet) in message and f"line {_line_of('sahin2016', 'KNEE')}" in message
    with pytest.warns(TranscriptionWarning, match="CI is asymmetric around the estimate"):
        pm.effect_table(pd.DataFrame({"study": ["a"], "estimate": [4.0], "ci_low": [3.0], "ci_high": [7.0]}))


@pytest.mark.parametrize("token", ["NA", "N/A", "n.r.", "nr", "NR", "-"])
def test_nascimento2018_sheet_na_means_missing(tmp_path, token):
    def edit(rows):
        row = _row(rows, "ferber2015", "KNEE")
        row.update({"mean": token, "sd": token, "status": ""})
    sheet = load_extraction(_edited_sheet(tmp_path, edit))
    row = sheet[(sheet["trial_id"] == "ferber2015") & (sheet["arm"] == "KNEE")].iloc[0]
    assert row["status"] == "partial" and np.isnan(row["mean"]) and np.isnan(row["sd"])


@pytest.mark.parametrize("token", ["NA", "n.r.", "-", "N/A"])
def test_na_means_missing_in_a_pool_csv_too(tmp_path, token):
    path = tmp_path / "t.csv"
    path.write_text(f"study,yi,vi\na,0.1,0.02\nb,{token},0.03\nc,0.3,0.01\n")
    with pytest.raises(InputError, match=r"value is missing \('" + token.replace(".", r"\.") + "' means not given") as err:
        pm.pool(path)
    assert (err.value.line, err.value.column) == (3, "yi")
    with pytest.warns(InputWarning, match="line 3 .*yi empty"):
        assert pm.pool(path, drop_missing=True).stats["k"] == 2


def test_na_in_a_spec_means_not_given(tmp_path):
    spec = _spec_with(tmp_path, analysis_lines='design = "N/A"\nimpute_sd = "n.r."\n')
    spec.write_text(spec.read_text().replace('{ trial = "fukuda2010", exp = "KHE", ctrl = "KE" }',
                                             '{ trial = "fukuda2010", exp = "KHE", ctrl = "KE", scale = "NA" }'))
    b1 = next(a for a in load_spec(spec).analyses if a.id == "B1")
    assert b1.design == "randomised" and b1.impute_sd is None and b1.trials[0].scale is None


# ------------------------------------------------------------------ item 4: hardening


def test_nascimento2018_inferred_row_without_an_n_type_column(tmp_path):
    """Dolak 2011's 4-week rows are 'inferred'; outcomes.csv without its n_type column still pools B1."""
    data = tmp_path / "data"
    shutil.copytree(ROOT / "data", data, ignore=shutil.ignore_patterns("curation", "examples"))
    table = pd.read_csv(data / "outcomes.csv", dtype=str, keep_default_na=False).drop(columns=["n_type"])
    table.to_csv(data / "outcomes.csv", index=False)
    spec = _spec_with(tmp_path)
    spec.write_text(spec.read_text().replace(f'data_dir = "{ROOT / "data"}"', f'data_dir = "{data}"'))
    (loaded, evidence), = load_all([spec])
    run = run_analysis(next(a for a in loaded.analyses if a.id == "B1"), evidence)
    assert run.result.studies.set_index("study").loc["dolak2011", "status"] == "inferred"
    assert any("dolak2011 (inferred)" in note and "14/13." in note for note in run.result.notes)


def test_impute_sd_given_as_a_list_is_one_line(tmp_path, capsys):
    spec = _spec_with(tmp_path, analysis_lines='impute_sd = ["borrow_largest"]\n')
    with pytest.raises(InputError, match="impute_sd must be one of borrow_largest, borrow_average"):
        load_spec(spec)
    assert main(["reproduce", str(spec)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


HEADER = "study,n_exp,mean_exp,sd_exp,n_ctrl,mean_ctrl,sd_ctrl\n"


@pytest.mark.parametrize("cell, reason", [
    ("2,5", "has a comma: write a decimal with a point (2.5)"),
    ("45%", "is a percentage"),
    ("3.1 \u00b1 1.1", "holds a value with a \u00b1 part"),
    ("3.1 (2.0 to 4.2)", "holds several numbers"),
    ("n.r.", "neither mean_exp nor median_exp is given"),
    ("1_000", "is not a number"),
])
def test_typing_slips_are_refused_on_one_line_naming_the_cell(tmp_path, capsys, cell, reason):
    path = tmp_path / "slip.csv"
    path.write_text(HEADER + "A,20,3.1,1.2,21,4.0,1.5\n" + f'B,15,"{cell}",1.1,14,3.9,1.3\n')
    assert main(["pool", str(path), "--measure", "MD"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]
    assert str(path) in err[0] and "line 3" in err[0] and "column 'mean_exp'" in err[0] and reason in err[0]


def test_unicode_minus_is_read_with_a_message(tmp_path):
    path = tmp_path / "minus.csv"
    path.write_text("study,yi,vi\na,\u22120.25,0.02\nb,0.1,0.03\n")
    with pytest.warns(InputWarning, match=r"line 2 \(row 1\), column 'yi': '\u22120.25' read as -0.25"):
        res = pm.pool(path)
    assert list(res.studies["yi"])[0] == -0.25


def test_nascimento2018_sheet_typing_slip_names_the_sheet(tmp_path, capsys):
    sheet = _edited_sheet(tmp_path, lambda rows: _row(rows, "ferber2015", "KNEE").update({"sd": "1,7"}))
    assert main(["reproduce", str(SPEC), "--extraction", str(sheet), "--format", "json"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(sheet) in err[0] and f"line {_line_of('ferber2015', 'KNEE')}" in err[0]
    assert "column 'sd'" in err[0] and "comma" in err[0]


def test_reproduce_json_with_the_sheet_still_fills_b1(capsys):
    assert main(["reproduce", str(SPEC), "--extraction", str(SHEET), "--format", "json"]) == 0
    b1 = {r["analysis"]: r for r in json.loads(capsys.readouterr().out)}["nascimento2018/B1"]
    assert b1["k_available"] == 10


def test_nascimento2018_sheet_trial_unknown_to_the_evidence_base_is_refused_by_the_api(tmp_path):
    from pfps_meta.evidence.curated import Evidence
    from pfps_meta.evidence.extraction import with_extraction

    sheet = _edited_sheet(tmp_path, lambda rows: _row(rows, "razeghi2010", "KNEE").update({"trial_id": "razegi2010"}))
    with pytest.raises(InputError, match="trial_id 'razegi2010' is not a trial of") as err:
        with_extraction(Evidence.load(ROOT / "data"), load_extraction(sheet))
    assert err.value.file == str(sheet) and err.value.line == _line_of("razeghi2010", "KNEE")
