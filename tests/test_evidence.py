"""The evidence base: provenance, validation on load, units, signs, multi-arm trials, reproduce."""

import csv
import json
import shutil

import pytest

import pfps_meta as pm
from pfps_meta.evidence.specs import load_spec, run_analysis
from pfps_meta.cli import main
from pfps_meta.evidence.curated import Evidence, load_outcomes
from tests.conftest import ROOT

DATA = ROOT / "data"


def test_every_number_in_data_has_a_source_and_a_quote():
    for name, numeric in (("outcomes.csv", ("n", "mean", "sd")), ("effects.csv", ("yi", "sei")),
                          ("published.csv", ("estimate", "ci_low", "ci_high"))):
        with open(DATA / name, newline="") as f:
            rows = list(csv.DictReader(f))
        assert rows
        for row in rows:
            if any(row[c].strip() for c in numeric):
                assert row["quote"].strip(), (name, row)
                assert (row.get("source_citation") or row.get("citation")).strip(), (name, row)


def test_not_recovered_rows_hold_no_numbers():
    outcomes = load_outcomes(DATA / "outcomes.csv")
    empty = outcomes[outcomes["status"] == "not_recovered"]
    assert len(empty) > 0
    assert empty[["n", "mean", "sd"]].isna().all().all()


def test_bundled_evidence_loads():
    ev = Evidence.load(DATA)
    assert len(ev.published[ev.published["review"] == "nascimento2018"]) == 4
    assert set(ev.trials["nascimento_inclusion"]) <= {"candidate", "not_included", "confirmed"}


def make_evidence(tmp_path, outcome_rows, trials_note=""):
    """A copy of data/ whose outcomes.csv is replaced by the given rows (test data, not real)."""
    target = tmp_path / "data"
    shutil.copytree(DATA, target)
    columns = open(DATA / "outcomes.csv").readline().strip().split(",")
    with open(target / "outcomes.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in outcome_rows:
            full = {c: "" for c in columns}
            full.update(row)
            writer.writerow(full)
    return target


def arm(trial, arm_label, n, mean, sd, scale="VAS", lo=0, hi=10, better="FALSE", outcome="pain",
        value_type="final", timepoint="post"):
    return dict(trial_id=trial, arm=arm_label, role="x", outcome=outcome, scale=scale, scale_min=lo,
                scale_max=hi, higher_is_better=better, timepoint=timepoint, value_type=value_type, n=n,
                mean=mean, sd=sd, status="verified", source_citation="synthetic test row",
                quote="synthetic test row")


def write_spec(tmp_path, body, data_dir):
    spec = tmp_path / "analyses" / "t.toml"
    spec.parent.mkdir(exist_ok=True)
    spec.write_text(f'[review]\nid = "t"\ndata_dir = "{data_dir}"\n[settings]\nmethod = "DL"\n' + body)
    return spec


TWO_TRIALS_MD = '''
[[analyses]]
id = "pain"
outcome = "pain"
measure = "MD"
favourable = "lower"
target_range = [0, 10]
trials = [{ trial = "t1", exp = "H", ctrl = "K" }, { trial = "t2", exp = "H", ctrl = "K" }]
'''


def test_unit_harmonisation_divides_a_100mm_vas_by_10(tmp_path):
    data = make_evidence(tmp_path, [arm("t1", "H", 20, 3.0, 2.0), arm("t1", "K", 20, 5.0, 2.5),
                                    arm("t2", "H", 30, 30.0, 20.0, hi=100), arm("t2", "K", 30, 50.0, 25.0, hi=100)])
    spec = load_spec(write_spec(tmp_path, TWO_TRIALS_MD, data))
    res = run_analysis(spec.analyses[0], Evidence.load(data)).result
    yi = res.studies.set_index("study")["yi"]
    vi = res.studies.set_index("study")["vi"]
    assert yi["t1"] == pytest.approx(-2.0) and yi["t2"] == pytest.approx(-2.0)
    assert vi["t2"] == pytest.approx(2.0 ** 2 / 30 + 2.5 ** 2 / 30)     # same as t1 once rescaled


def test_sign_follows_higher_is_better(tmp_path):
    # activity SMD, favourable = higher: LEFS (higher better) and WOMAC (lower better) both improved by hip
    data = make_evidence(tmp_path, [
        arm("t1", "H", 20, 60.0, 10.0, scale="LEFS", hi=80, better="TRUE", outcome="activity"),
        arm("t1", "K", 20, 50.0, 10.0, scale="LEFS", hi=80, better="TRUE", outcome="activity"),
        arm("t2", "H", 20, 20.0, 10.0, scale="WOMAC", hi=96, better="FALSE", outcome="activity"),
        arm("t2", "K", 20, 30.0, 10.0, scale="WOMAC", hi=96, better="FALSE", outcome="activity")])
    body = TWO_TRIALS_MD.replace('"pain"', '"activity"').replace('"MD"', '"SMD"').replace(
        '"lower"', '"higher"').replace("target_range = [0, 10]\n", "")
    spec = load_spec(write_spec(tmp_path, body, data))
    res = run_analysis(spec.analyses[0], Evidence.load(data)).result
    yi = res.studies.set_index("study")["yi"]
    assert yi["t1"] > 0 and yi["t2"] > 0
    assert yi["t1"] == pytest.approx(yi["t2"])
    assert res.estimate > 0


def test_change_and_final_scores_are_not_mixed_in_an_smd(tmp_path):
    data = make_evidence(tmp_path, [
        arm("t1", "H", 20, 3.0, 2.0), arm("t1", "K", 20, 5.0, 2.0),
        arm("t2", "H", 20, -3.0, 2.0, value_type="change"), arm("t2", "K", 20, -1.0, 2.0, value_type="change")])
    body = TWO_TRIALS_MD.replace('"MD"', '"SMD"').replace("target_range = [0, 10]\n", "")
    spec = load_spec(write_spec(tmp_path, body, data))
    with pytest.raises(pm.InputError, match="mixes change and final"):
        run_analysis(spec.analyses[0], Evidence.load(data))
    allowed = load_spec(write_spec(tmp_path, body.replace('id = "pain"', 'id = "pain"\nallow_mixed_change_and_final = true'), data))
    assert run_analysis(allowed.analyses[0], Evidence.load(data)).result.k == 2


def test_shared_arm_is_never_counted_twice(tmp_path):
    rows = [arm("t1", "KHE", 20, 3.0, 2.0), arm("t1", "KE", 20, 4.0, 2.0), arm("t1", "CG", 24, 5.0, 2.0)]
    data = make_evidence(tmp_path, rows)
    body = '''
[[analyses]]
id = "shared"
outcome = "pain"
measure = "MD"
favourable = "lower"
target_range = [0, 10]
trials = [{ trial = "t1", exp = "KHE", ctrl = "CG" }, { trial = "t1", exp = "KE", ctrl = "CG" }]
'''
    spec = load_spec(write_spec(tmp_path, body, data))
    with pytest.raises(pm.InputError, match="t1 arm CG used in more than one comparison"):
        run_analysis(spec.analyses[0], Evidence.load(data))
    split = load_spec(write_spec(tmp_path, body.replace('id = "shared"', 'id = "shared"\nsplit_shared_arms = true'), data))
    res = run_analysis(split.analyses[0], Evidence.load(data)).result
    assert list(res.studies["n_ctrl"]) == [12, 12]


def test_bundled_multi_arm_trials_use_one_arm_pair_per_analysis():
    spec = load_spec(ROOT / "analyses" / "nascimento2018.toml")
    for analysis in spec.analyses:
        pairs = [(t.trial, arm) for t in analysis.trials for arm in (t.exp, t.ctrl)]
        assert len(pairs) == len(set(pairs)), analysis.id


@pytest.mark.parametrize("mutation, message", [
    (dict(mean=12.0), "mean 12 lies outside the scale range 0-10"),
    (dict(sd=-1.0), "must be greater than 0"),
    (dict(n=1), "below the allowed minimum 2"),
    (dict(status="verified", n=""), "status 'verified' needs n, mean and sd"),
    (dict(quote=""), "a number without its source"),
    (dict(higher_is_better="yes"), "'yes' is not one of TRUE, FALSE"),
])
def test_outcome_validation_names_file_line_and_column(tmp_path, mutation, message, capsys):
    row = arm("t1", "H", 20, 3.0, 2.0)
    row.update(mutation)
    data = make_evidence(tmp_path, [arm("t1", "K", 20, 4.0, 2.0), row])
    with pytest.raises(pm.InputError) as info:
        load_outcomes(data / "outcomes.csv")
    assert message in info.value.reason
    assert info.value.line == 3 and info.value.file.endswith("outcomes.csv")
    spec = write_spec(tmp_path, TWO_TRIALS_MD, data)
    assert main(["reproduce", str(spec)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "outcomes.csv, line 3 (row 2)" in err


def test_reproduce_worked_example_and_incomplete_nascimento(capsys):
    assert main(["reproduce", "--format", "json", str(ROOT / "analyses" / "examples" / "hackshaw1997.toml"),
                 str(ROOT / "analyses" / "nascimento2018.toml")]) == 0
    rows = {r["analysis"]: r for r in json.loads(capsys.readouterr().out)}
    required = {"analysis", "comparison", "outcome", "measure", "published_estimate", "published_ci_low",
                "published_ci_high", "reproduced_estimate", "reproduced_ci_low", "reproduced_ci_high",
                "k_available", "k_expected", "missing_trials", "status"}
    assert all(required <= set(r) for r in rows.values())
    hack = rows["hackshaw1997/main"]
    assert hack["status"] == "reproduced" and hack["k_available"] == 37
    assert round(hack["reproduced_estimate"], 2) == 1.24
    b1 = rows["nascimento2018/B1"]
    assert b1["status"] == "incomplete" and b1["k_expected"] == 10 and "ferber2015" in b1["missing_trials"]
    assert rows["nascimento2018/A1"]["reproduced_estimate"] is None


def test_reproduce_says_differs_when_settings_do_not_match(tmp_path, capsys):
    spec = tmp_path / "analyses" / "h.toml"
    spec.parent.mkdir()
    text = (ROOT / "analyses" / "examples" / "hackshaw1997.toml").read_text()
    text = text.replace('method = "DL"', 'method = "FE"').replace('"../../data', f'"{ROOT}/data')
    spec.write_text(text)
    assert main(["reproduce", "--format", "json", str(spec)]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["status"] == "differs"
    assert row["difference"]["estimate"] == pytest.approx(1.2041 - 1.24, abs=1e-3)


def test_reproduce_text_table(capsys):
    assert main(["reproduce", str(ROOT / "analyses" / "examples" / "hackshaw1997.toml")]) == 0
    out = capsys.readouterr().out
    assert "published" in out and "reproduced" in out and "1.24 [1.13, 1.36]" in out


def test_duplicate_outcome_rows_and_published_ids_are_refused(tmp_path):
    data = make_evidence(tmp_path, [arm("t1", "H", 20, 3.0, 2.0), arm("t1", "H", 20, 3.1, 2.0)])
    with pytest.raises(pm.InputError, match=r"duplicate row for t1, H, pain, VAS, post, final \(first in row 1\)") as info:
        load_outcomes(data / "outcomes.csv")
    assert info.value.line == 3
    text = (data / "published.csv").read_text().splitlines()
    (data / "published.csv").write_text("\n".join(text + [text[1]]) + "\n")
    from pfps_meta.evidence.curated import load_published
    with pytest.raises(pm.InputError, match="id 'nascimento2018_A1' appears twice"):
        load_published(data / "published.csv")
