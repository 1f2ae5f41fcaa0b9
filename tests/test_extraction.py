"""The extraction workbench (issue 9): template -> filled sheet -> reproduce, the curated tables taking
what papers print, the transcription checks, and Dolak 2011 under each plausible arm size."""

import csv
import io
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from pfps_meta.inputs import checks
from pfps_meta.evidence.specs import arm_size_scenarios, load_spec, run_analysis
from pfps_meta.cli import main
from pfps_meta.evidence.curated import Evidence
from pfps_meta.evidence.extraction import SHEET_COLUMNS, load_extraction, todo
from pfps_meta.errors import InputError
from tests.conftest import FIXTURES, ROOT

SPEC = str(ROOT / "analyses" / "nascimento2018.toml")
SHEET = FIXTURES / "synthetic" / "extraction_nascimento2018_B1.csv"


def _rows(text):
    return list(csv.DictReader(io.StringIO(text)))


def test_template_lists_every_expected_arm_with_known_facts(tmp_path, capsys):
    assert main(["template", SPEC]) == 0
    rows = _rows(capsys.readouterr().out)
    assert list(rows[0]) == list(SHEET_COLUMNS)
    spec = load_spec(SPEC)
    expected = {(t.trial, arm, a.outcome, t.timepoint or a.timepoint)
                for a in spec.analyses for t in a.trials for arm in (t.exp, t.ctrl)}
    assert expected <= {(r["trial_id"], r["arm"], r["outcome"], r["timepoint"]) for r in rows}
    ferber = next(r for r in rows if r["trial_id"] == "ferber2015" and r["arm"] == "HIP" and r["outcome"] == "pain")
    assert ferber["n"] == "111" and ferber["n_randomised_trial"] == "199" and ferber["scale_max"] == "10"
    assert ferber["mean"] == ferber["sd"] == ferber["median"] == "" and "(n = 111)" in ferber["quote"]
    assert "nascimento2018/B1" in ferber["analyses"]
    dolak = next(r for r in rows if r["trial_id"] == "dolak2011" and r["arm"] == "HIP" and r["timepoint"] == "4wk")
    assert dolak["mean"] == "2.4" and dolak["status"] == "inferred" and "completers=13" in dolak["n_alternatives"]
    out = tmp_path / "sheet.csv"
    assert main(["template", SPEC, "--out", str(out)]) == 0
    assert out.read_text() == "".join(f"{line}\n" for line in out.read_text().splitlines())
    assert "pfps-meta reproduce" in capsys.readouterr().err


def test_filled_sheet_moves_reproduce_from_incomplete_to_differs(capsys):
    assert main(["reproduce", SPEC, "--format", "json"]) == 0
    before = {r["analysis"]: r for r in json.loads(capsys.readouterr().out)}
    assert before["nascimento2018/B1"]["status"] == "incomplete"
    assert main(["reproduce", SPEC, "--extraction", str(SHEET), "--format", "json"]) == 0
    after = {r["analysis"]: r for r in json.loads(capsys.readouterr().out)}
    b1 = after["nascimento2018/B1"]
    assert b1["status"] in ("reproduced", "differs") and b1["k_available"] == b1["k_expected"] == 10
    assert after["nascimento2018/A1"]["status"] == "incomplete"     # the sheet fills B1 only


def test_filled_sheet_rows_are_converted_and_marked():
    sheet = load_extraction(SHEET)
    derived = sheet[sheet["status"] == "derived"]
    assert len(derived) >= 8 and derived["derivation"].str.len().gt(0).all()
    for rule in ("luo2018_s2", "sd_from_ci", "sd_from_se", "luo2018_s1"):
        assert derived["derivation"].str.contains(rule).any(), rule
    assert (sheet.loc[sheet["status"] == "verified", "derivation"] == "").all()
    evidence = Evidence.load(ROOT / "data")
    from pfps_meta.evidence.extraction import with_extraction

    b1 = next(a for a in load_spec(SPEC).analyses if a.id == "B1")
    run = run_analysis(b1, with_extraction(evidence, sheet))
    studies = run.result.studies.set_index("study")
    assert studies.loc["dolak2011", "status"] == "inferred"
    assert any(c for c in studies["conversion"] if "sd_from_ci" in c)


def test_bad_value_in_a_filled_sheet_names_the_sheet(tmp_path, capsys):
    text = SHEET.read_text().splitlines()
    header = next(i for i, line in enumerate(text) if line.startswith("trial_id"))
    rows = _rows("\n".join(text[header:]))
    target = next(r for r in rows if r["median"])
    target["q1"] = target["q3"] = ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    bad = tmp_path / "bad_sheet.csv"
    bad.write_text(buffer.getvalue())
    assert main(["reproduce", SPEC, "--extraction", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad_sheet.csv" in err[0] and "needs its quartiles" in err[0]


def test_dolak_under_each_plausible_arm_size():
    evidence = Evidence.load(ROOT / "data")
    b1 = next(a for a in load_spec(SPEC).analyses if a.id == "B1")
    scenarios = {s["scenario"]: s for s in arm_size_scenarios(b1, evidence)}
    # armdata3.md section 1.3, computed by hand there: MD -1.70 with these 95% CIs
    for name, n, (lo, hi) in (("as used", (14, 13), (-3.42, 0.02)), ("completers", (13, 13), (-3.44, 0.04)),
                              ("randomised", (17, 16), (-3.25, -0.15))):
        s = scenarios[name]
        assert (s["n_exp"], s["n_ctrl"]) == n
        assert s["result"].stats["estimate"] == pytest.approx(-1.70)
        assert round(s["result"].stats["ci_low"], 2) == lo and round(s["result"].stats["ci_high"], 2) == hi
    assert any("inferred" in note for note in scenarios["as used"]["result"].notes)


def test_arm_size_scenarios_take_the_run_the_caller_has():
    evidence = Evidence.load(ROOT / "data")
    b1 = next(a for a in load_spec(SPEC).analyses if a.id == "B1")
    run = run_analysis(b1, evidence)
    given = arm_size_scenarios(b1, evidence, base=run)
    assert given[0]["result"] is run.result         # "as used" is the caller's run, not a second one
    fresh = arm_size_scenarios(b1, evidence)
    assert [(s["scenario"], s["n_exp"], s["n_ctrl"], s["result"].stats["estimate"], s["result"].stats["ci_low"])
            for s in given] == [(s["scenario"], s["n_exp"], s["n_ctrl"], s["result"].stats["estimate"],
                                 s["result"].stats["ci_low"]) for s in fresh]


def test_todo_says_what_is_missing_and_where():
    evidence = Evidence.load(ROOT / "data")
    b1 = next(a for a in load_spec(SPEC).analyses if a.id == "B1")
    table = todo(run_analysis(b1, evidence), evidence)
    assert len(table) == 9 and "dolak2011" not in set(table["Trial"])
    ferber = table.set_index("Trial").loc["ferber2015"]
    assert "HIP: mean, sd" in ferber["Missing"] and "Ferber R et al." in ferber["Where it is likely printed"]
    ismail = table.set_index("Trial").loc["ismail2013"]
    assert "scale range" in ismail["Missing"] and "n, mean, sd" in ismail["Missing"]


# ------------------------------------------------------------------ transcription checks

def test_max_sd_and_grim():
    assert float(checks.max_sd_bounded(5, 10, 0, 10)) == pytest.approx(5 * np.sqrt(10 / 9))
    assert float(checks.max_sd_bounded(0, 10, 0, 10)) == 0
    assert checks.grim_consistent("3.45", 20)            # 69/20
    assert not checks.grim_consistent("3.47", 20)        # no k/20 rounds to 3.47
    assert checks.grim_consistent("3.47", 200)           # n >= 10^2: always possible
    assert checks.grim_consistent("3.48", 25, items=1)   # 87/25


def _data_copy(tmp_path, edit):
    data = tmp_path / "data"
    shutil.copytree(ROOT / "data", data, ignore=shutil.ignore_patterns("curation", "examples"))
    rows = list(csv.DictReader(open(data / "outcomes.csv", encoding="utf-8")))
    edit(rows)
    with open(data / "outcomes.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return data


def _dolak_hip(rows):
    return next(r for r in rows if r["trial_id"] == "dolak2011" and r["arm"] == "HIP" and r["timepoint"] == "4wk")


@pytest.mark.parametrize("change, column, message", [
    ({"sd": "5.9"}, "sd", "is impossible on a 0-10 scale"),
    ({"mean": "12"}, "mean", "outside the scale range"),
    ({"n": "40"}, "n", "randomised only 33"),
    ({"n_alternatives": "completers=13; randomised=40"}, "n_alternatives", "randomised only 33"),
    ({"n_alternatives": "completers"}, "n_alternatives", "is not label=n"),
    ({"integer_valued": "TRUE", "mean": "2.45"}, "mean", "GRIM"),      # n = 14: 2.43 or 2.50, never 2.45
    ({"status": "verified", "n": ""}, "status", "needs n, mean and sd"),
])
def test_transcription_errors_are_refused(tmp_path, change, column, message):
    data = _data_copy(tmp_path, lambda rows: _dolak_hip(rows).update(change))
    with pytest.raises(InputError) as err:
        Evidence.load(data)
    assert err.value.column == column and message in err.value.message and "outcomes.csv" in err.value.message


def test_curated_row_derived_from_a_median(tmp_path):
    def edit(rows):
        row = _dolak_hip(rows)
        row.update({"mean": "", "sd": "", "median": "2.2", "q1": "1.0", "q3": "3.5", "status": "derived"})
    evidence = Evidence.load(_data_copy(tmp_path, edit))
    row = evidence.outcomes[(evidence.outcomes["trial_id"] == "dolak2011") & (evidence.outcomes["arm"] == "HIP")
                            & (evidence.outcomes["timepoint"] == "4wk")].iloc[0]
    assert row["derivation"].startswith("mean: luo2018_s2") and row["sd"] == pytest.approx(2.5 / 1.239)   # Wan Table 2, Q = 4
    with pytest.raises(InputError, match="needs status 'derived'"):
        Evidence.load(_data_copy(tmp_path / "b", lambda rows: _dolak_hip(rows).update(
            {"mean": "", "median": "2.2", "q1": "1.0", "q3": "3.5", "status": "inferred"})))


def test_sd_larger_than_possible_in_a_pool_csv_is_fine_without_a_scale():
    # without a declared scale range no bound applies: the check lives where the range is known
    table = pd.DataFrame({"study": ["a", "b"], "n_exp": [10, 12], "mean_exp": [1, 2], "sd_exp": [9, 9],
                          "n_ctrl": [10, 12], "mean_ctrl": [2, 3], "sd_ctrl": [8, 8]})
    from pfps_meta import pool

    assert pool(table, "MD").stats["k"] == 2


def test_missing_sd_is_imputed_only_when_the_spec_asks_and_is_flagged(tmp_path):
    """A synthetic sheet where Ferber 2015 prints means without any SD: left out by default, borrowed
    (largest SD of the other trials, Handbook 6.5.2.7) when the analysis says impute_sd, and flagged."""
    from pfps_meta.evidence.extraction import with_extraction
    from pfps_meta.present import plots

    sheet = load_extraction(SHEET)
    ferber = (sheet["trial_id"] == "ferber2015") & (sheet["outcome"] == "pain")
    sheet.loc[ferber, ["sd", "se", "ci_low", "ci_high", "median", "q1", "q3", "min", "max"]] = np.nan
    sheet.loc[ferber, "mean"] = [3.0, 4.2]
    sheet.loc[ferber, "status"] = "partial"
    evidence = with_extraction(Evidence.load(ROOT / "data"), sheet)
    b1 = next(a for a in load_spec(SPEC).analyses if a.id == "B1")
    plain = run_analysis(b1, evidence)
    assert "ferber2015" in [m["trial"] for m in plain.studies.missing]
    from dataclasses import replace

    imputed = run_analysis(replace(b1, impute_sd="borrow_largest"), evidence)
    studies = imputed.result.studies.set_index("study")
    assert studies.loc["ferber2015", "status"] == "imputed"
    others = studies.drop(index="ferber2015")
    assert studies.loc["ferber2015", "sd_exp"] == pytest.approx(max(others["sd_exp"].max(), others["sd_ctrl"].max()))
    assert any("IMPUTED SD" in note for note in imputed.result.notes)
    fig = plots.forest(imputed.result)
    assert any("[imputed SD]" in t.get_text() for t in fig.texts)
    average = run_analysis(replace(b1, impute_sd="borrow_average"), evidence).result.studies.set_index("study")
    assert average.loc["ferber2015", "sd_exp"] < studies.loc["ferber2015", "sd_exp"]


def test_impute_sd_must_name_a_rule(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text(open(SPEC).read().replace('id = "B1"', 'id = "B1"\nimpute_sd = "guess"'))
    with pytest.raises(InputError, match="impute_sd must be one of borrow_largest, borrow_average"):
        load_spec(spec)


def test_rob_template_and_with_extraction_refuse_arguments_of_the_wrong_kind_naming_them():
    import pandas as pd
    import pytest

    from pfps_meta.errors import InputError
    from pfps_meta.evidence import extraction

    with pytest.raises(InputError, match="^spec: "):
        extraction.rob_template("not a spec")
    with pytest.raises(InputError, match="^evidence: "):
        extraction.with_extraction("not evidence", pd.DataFrame())
