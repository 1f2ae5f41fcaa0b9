"""RevMan 5 import (issue 21, item 2): read_revman and import_revman on our own .rm5 file
(tests/fixtures/revman/examples.rm5, written by validation/make_revman_fixtures.R from metadat's dat.bcg,
dat.normand1999 and dat.hackshaw1998, with the totals metafor 3.8-1 computes stored as RevMan stores its
own), then `pfps-meta reproduce` on the spec the import writes."""

import json
import math
import re
import shutil

import numpy as np
import pandas as pd
import pytest

import pfps_meta as pm
from pfps_meta.cli import main
from pfps_meta.errors import InputError
from pfps_meta.inputs.revman import read_revman
from pfps_meta.present import revman_export
from pfps_meta.present.revman_export import analysis_settings, import_revman
from tests.conftest import FIXTURES

EXAMPLE = FIXTURES / "revman" / "examples.rm5"
RTOL = 1e-6


@pytest.fixture(scope="module")
def review():
    return read_revman(EXAMPLE)


def _outcome(review, number):
    return next(o for o in review.outcomes if o.number == number)


def test_reads_every_comparison_outcome_and_subgroup_with_revmans_options(review):
    assert [c for c, _ in review.comparisons] == ["1", "2", "3"]
    got = [(o.number, o.kind, o.measure, o.method, o.random, o.level) for o in review.outcomes]
    assert got == [("1.1", "DICH", "RR", "MH", False, 0.95), ("1.2", "DICH", "OR", "IV", True, 0.95),
                   ("1.3", "DICH", "OR", "PETO", False, 0.95), ("1.4", "DICH", "OR", "MH", False, 0.95),
                   ("1.5", "DICH", "RD", "MH", False, 0.95), ("1.6", "DICH", "RR", "MH", True, 0.95),
                   ("2.1", "CONT", "MD", "IV", True, 0.95),
                   ("2.2", "CONT", "SMD", "IV", True, 0.95), ("2.3", "CONT", "MD", "IV", True, 0.95),
                   ("3.1", "IV", "OR", "IV", False, 0.99)]
    bcg = _outcome(review, "1.2")
    assert bcg.has_subgroups and bcg.subgroup_test and bcg.group_labels == ("BCG vaccine", "No vaccine")
    assert [(s.number, s.name, len(s.studies)) for s in bcg.subgroups] == [
        ("1.2.1", "Random allocation", 7), ("1.2.2", "Alternate or systematic allocation", 6)]
    assert len(bcg.studies) == 13 and bcg.studies["study"].iloc[1] == "Ferguson & Simes 1949"
    assert bcg.subgroup_difference["q"] > 0 and 0 < bcg.subgroup_difference["p"] < 1
    assert _outcome(review, "1.3").revman_measure == "PETO_OR"
    assert _outcome(review, "2.3").totals_flag == "NO" and _outcome(review, "2.3").totals is None
    frame = review.to_frame()
    assert len(frame) == 12 and frame["skip_reason"].isna().all()
    assert list(_outcome(review, "3.1").layout_frame().columns) == ["study", "yi", "sei", "year"]
    normand = _outcome(review, "2.1").layout_frame()
    assert list(normand.columns) == ["study", "n_exp", "mean_exp", "sd_exp", "n_ctrl", "mean_ctrl", "sd_ctrl"]
    assert normand.iloc[0].tolist() == ["Edinburgh", 155, 55, 47, 156, 75, 64]        # dat.normand1999 row 1


def test_base10_logs_and_absolute_z_are_read_as_revman_writes_them(review):
    mh = _outcome(review, "1.1").totals
    # metafor rma.mh on bcg: RR 0.6353 [0.5881, 0.6862] (issue 21)
    assert (round(mh.estimate, 4), round(mh.ci_low, 4), round(mh.ci_high, 4)) == (0.6353, 0.5881, 0.6862)
    assert mh.z > 0 and mh.z_signed < 0 and math.isclose(mh.log_estimate, math.log(mh.estimate))
    assert 'LOG_EFFECT_SIZE="-0.19704' in mh.quote          # log10(0.6353)
    generic = _outcome(review, "3.1").studies
    hackshaw = pd.read_csv(FIXTURES.parent.parent / "data" / "examples" / "hackshaw1998.csv")
    # generic IV rows: EFFECT_SIZE stored as the odds ratio, read back as a natural log: exp(yi) is the OR
    # Hackshaw et al. printed (to 2 decimals)
    assert len(generic) == len(hackshaw) == 37
    np.testing.assert_allclose(np.round(np.exp(generic["yi"].to_numpy()), 2), hackshaw["estimate"], atol=1e-9)


def _stored_vs_ours(outcome, table, totals):
    settings, _ = analysis_settings(outcome)
    res = pm.pool(table, measure=outcome.measure, **settings)
    s = res.stats
    to_rep = pm.measures.get(outcome.measure).to_reporting
    pairs = {"estimate": (to_rep(s["estimate"]), totals.estimate), "ci_low": (to_rep(s["ci_low"]), totals.ci_low),
             "ci_high": (to_rep(s["ci_high"]), totals.ci_high), "z": (abs(s["statistic"]), totals.z),
             "p": (s["p"], totals.p), "q": (s["q"], totals.q), "df": (s["q_df"], totals.df),
             "q_p": (s["q_p"], totals.q_p), "i2": (s["i2"], totals.i2)}
    if outcome.random:
        pairs["tau2"] = (s["tau2"], totals.tau2)
    return pairs


def test_every_stored_total_agrees_with_our_pool_at_1e6(review):
    worst = 0.0
    checked = 0
    for outcome in review.outcomes:
        parts = [(outcome.layout_frame(), outcome.totals)] + [(outcome.layout_frame(s), s.totals)
                                                              for s in outcome.subgroups]
        for table, totals in parts:
            if totals is None:
                continue
            for name, (ours, stored) in _stored_vs_ours(outcome, table, totals).items():
                assert ours == pytest.approx(stored, rel=RTOL, abs=1e-300), (outcome.number, name)
                worst = max(worst, abs(ours - stored) / abs(stored)) if stored else worst
                checked += 1
    assert checked == 11 * 9 + 6        # 11 totals x 9 statistics, tau² of the 6 random-effects totals
    assert worst < RTOL


def test_import_writes_our_layouts_published_totals_and_one_spec(tmp_path):
    result = import_revman(EXAMPLE, tmp_path / "out")
    out = tmp_path / "out"
    assert result.spec == out / "examples.toml" and not result.skipped
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["examples.toml", "published.csv", "o1_1.csv", "o1_2.csv", "o1_2_1.csv", "o1_2_2.csv", "o1_3.csv",
         "o1_4.csv", "o1_5.csv", "o1_6.csv", "o2_1.csv", "o2_2.csv", "o2_3.csv", "o3_1.csv"])
    assert (out / "o1_1.csv").read_text().splitlines()[:2] == [
        "study,events_exp,n_exp,events_ctrl,n_ctrl,year", "Aronson 1948,4,123,11,139,1948"]
    assert (out / "o3_1.csv").read_text().startswith("study,yi,sei,year\n")
    published = pd.read_csv(out / "published.csv", dtype=str)
    assert list(published.columns) == revman_export.PUBLISHED_COLUMNS
    first = published.iloc[0]
    assert (first["id"], first["estimate"], first["ci_low"], first["model"]) == (
        "examples_o1_1", "0.6353", "0.5881", "M-H, Fixed")
    assert first["source_url"] == str(EXAMPLE) and first["location"] == "comparison 1 / outcome 1.1"
    assert "o2_3" not in " ".join(published["id"])
    from pfps_meta.evidence.specs import load_spec

    spec = load_spec(result.spec)
    by_id = {a.id: a for a in spec.analyses}
    assert by_id["o1_1"].settings.method == "MH" and by_id["o1_3"].settings.method == "PETO"
    assert by_id["o1_2"].settings.method == "DL" and by_id["o3_1"].settings.method == "FE"
    assert by_id["o1_6"].settings.method == "MH_DL"           # RevMan 5's M-H random effects
    assert by_id["o3_1"].settings.level == 0.99 and by_id["o2_2"].settings.smd_convention == "revman5"
    assert all(a.settings.i2_method == "q" and not a.settings.prediction_interval for a in spec.analyses)
    text = str(result)
    assert "wrote published.csv: 11 stored totals" in text and "pfps-meta reproduce" in text
    assert "2.3" in text and "no_target" in text


def _reproduce_statuses(spec, capsys) -> dict:
    assert main(["reproduce", str(spec), "--format", "json"]) == 0, capsys.readouterr().err
    return {row["analysis"]: row["status"] for row in json.loads(capsys.readouterr().out)}


def test_reproduce_on_the_imported_spec_reproduces_every_stored_total(tmp_path, capsys):
    # outcome 1.5 (MH risk difference) has a test of its own below
    text = re.sub(r'<DICH_OUTCOME ID="CMP-001.05".*?</DICH_OUTCOME>\n', "", EXAMPLE.read_text(), flags=re.S)
    path = tmp_path / "examples.rm5"
    path.write_text(text)
    statuses = _reproduce_statuses(import_revman(path, tmp_path / "out").spec, capsys)
    assert statuses.pop("examples/o2_3") == "no_target"
    assert len(statuses) == 10 and set(statuses.values()) == {"reproduced"}


def test_reproduce_of_the_mantel_haenszel_risk_difference(tmp_path, capsys):
    statuses = _reproduce_statuses(import_revman(EXAMPLE, tmp_path / "out").spec, capsys)
    assert statuses["examples/o1_5"] == "reproduced"


def test_not_estimable_rows_are_left_out_and_listed(tmp_path):
    text = EXAMPLE.read_text().replace('<DICH_DATA STUDY_ID="STD-Aronson_1948" ORDER="1" ESTIMABLE="YES"',
                                       '<DICH_DATA STUDY_ID="STD-Aronson_1948" ORDER="1" ESTIMABLE="NO"', 1)
    path = tmp_path / "one.rm5"
    path.write_text(text)
    result = import_revman(path, tmp_path / "out")
    assert "Aronson 1948" not in (tmp_path / "out" / "o1_1.csv").read_text()
    assert any("not estimable" in note and "Aronson 1948" in note for note in result.notes)


def _rm5(tmp_path, body, name="x.rm5"):
    path = tmp_path / name
    path.write_text('<?xml version="1.0" encoding="UTF-8"?>\n<COCHRANE_REVIEW><STUDIES_AND_REFERENCES><STUDIES>'
                    '<INCLUDED_STUDIES><STUDY ID="STD-A" NAME="A 2001" YEAR="2001"/></INCLUDED_STUDIES></STUDIES>'
                    f'</STUDIES_AND_REFERENCES><ANALYSES_AND_DATA>{body}</ANALYSES_AND_DATA></COCHRANE_REVIEW>')
    return path


def test_outcomes_we_cannot_pool_are_skipped_naming_comparison_and_outcome(tmp_path):
    path = _rm5(tmp_path, '<COMPARISON NO="4"><NAME>Drug vs placebo</NAME>'
                          '<OE_OUTCOME NO="1" EFFECT_MEASURE="PETO_OR" METHOD="PETO"><NAME>Survival</NAME></OE_OUTCOME>'
                          '<IPD_OUTCOME NO="2"><NAME>Relapse</NAME></IPD_OUTCOME>'
                          '<IV_OUTCOME NO="3" EFFECT_MEASURE="HR"><NAME>Time to pain</NAME></IV_OUTCOME>'
                          '</COMPARISON>')
    review = read_revman(path)
    assert [o.kind for o in review.outcomes] == ["OE", "IPD", "IV"] and len(review.skipped) == 3
    result = import_revman(path, tmp_path / "out")
    assert result.spec is None and len(result.skipped) == 3
    text = str(result)
    assert "comparison 4 ('Drug vs placebo'), outcome 4.1 ('Survival'): O-E and variance outcomes" in text
    assert "outcome 4.2 ('Relapse'): individual patient data outcomes" in text
    assert "outcome 4.3 ('Time to pain'): effect measure 'HR' is not one pfps-meta pools" in text


def test_an_outcome_needing_a_method_we_lack_is_skipped_not_crashed(tmp_path, monkeypatch):
    monkeypatch.setattr(revman_export, "_method_available", lambda method: False)
    result = import_revman(EXAMPLE, tmp_path / "out")
    reasons = dict(result.skipped)
    assert len(reasons) == 4
    assert any("Mantel-Haenszel" in why for why in reasons.values())
    assert any("Peto" in why for why in reasons.values())
    # M-H random falls back to DL on inverse-variance weights, saying so
    assert "tau² from Q about the MH estimate" in open(result.spec).read()
    assert result.spec is not None and len(result.analyses) == 8


def test_study_data_we_refuse_skip_that_outcome_with_the_reason(tmp_path):
    path = _rm5(tmp_path, '<COMPARISON NO="1"><NAME>C</NAME><CONT_OUTCOME NO="1" EFFECT_MEASURE="MD" METHOD="IV">'
                          '<NAME>Pain</NAME><CONT_DATA STUDY_ID="STD-A" MEAN_1="1" SD_1="" TOTAL_1="10" MEAN_2="2" '
                          'SD_2="1" TOTAL_2="10"/></CONT_OUTCOME></COMPARISON>')
    result = import_revman(path, tmp_path / "out")
    assert len(result.skipped) == 1 and "outcome 1.1 ('Pain'): its data are refused" in str(result)


@pytest.mark.parametrize("content, message", [
    ("study,yi\nA,1\n", "not an XML file, so not a RevMan 5 file"),
    ('<?xml version="1.0"?><review/>', "not a RevMan 5 file: the root element is <review>, not <COCHRANE_REVIEW>"),
    ('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "x">]><COCHRANE_REVIEW/>', "document type declaration"),
])
def test_a_file_that_is_not_revman_xml_gets_one_line_naming_it(tmp_path, content, message):
    path = tmp_path / "bad.rm5"
    path.write_text(content)
    with pytest.raises(InputError) as info:
        read_revman(path)
    assert message in str(info.value) and str(path) in str(info.value) and "\n" not in str(info.value)


def test_bad_numbers_name_the_element_and_attribute(tmp_path):
    path = _rm5(tmp_path, '<COMPARISON NO="1"><NAME>C</NAME><DICH_OUTCOME NO="2" EFFECT_MEASURE="RR" METHOD="MH">'
                          '<NAME>Falls</NAME><DICH_DATA STUDY_ID="STD-A" EVENTS_1="3,5" TOTAL_1="10" EVENTS_2="2" '
                          'TOTAL_2="10"/></DICH_OUTCOME></COMPARISON>')
    with pytest.raises(InputError, match=r"comparison 1, outcome 1.2 \('Falls'\), data row 1 \(study 'A 2001'\): "
                                         r"EVENTS_1 = '3,5' is not a number"):
        read_revman(path)
    text = EXAMPLE.read_text().replace('LOG_EFFECT_SIZE="-0.19704357770066008"', 'LOG_EFFECT_SIZE="-0.3"', 1)
    path.write_text(text)
    with pytest.raises(InputError, match="LOG_EFFECT_SIZE = -0.3 is not the base-10 logarithm of EFFECT_SIZE"):
        read_revman(path)


@pytest.mark.parametrize("edits, message", [
    ([('CI_TOTAL="95"', 'CI_TOTAL="0"')], "CI_TOTAL = 0 is not a confidence level in percent"),
    ([('CI_TOTAL="95"', 'CI_TOTAL="150"')], "CI_TOTAL = 150 is not a confidence level in percent"),
    ([(' CI_START="0.58812872969141716"', ''), (' LOG_CI_START="-0.2305276050875148"', '')],
     "a stored total has EFFECT_SIZE but no CI_START"),
])
def test_a_stored_level_out_of_range_or_a_total_without_a_bound_is_refused(tmp_path, edits, message):
    text = EXAMPLE.read_text()
    for old, new in edits:
        assert old in text
        text = text.replace(old, new, 1)
    path = tmp_path / "x.rm5"
    path.write_text(text)
    with pytest.raises(InputError, match=message) as info:
        read_revman(path)
    assert "outcome 1.1" in str(info.value)


def test_a_study_ci_level_other_than_the_totals_is_noted(tmp_path):
    path = tmp_path / "x.rm5"
    path.write_text(EXAMPLE.read_text().replace('CI_STUDY="95" CI_TOTAL="95"', 'CI_STUDY="90" CI_TOTAL="95"', 1))
    notes = import_revman(path, tmp_path / "out").notes
    assert [n for n in notes if "CI_STUDY" in n] == [
        "comparison 1 ('BCG vaccine versus no vaccine'), outcome 1.1 ('Tuberculosis (risk ratio, M-H fixed)'): RevMan "
        "drew the studies' CIs at 90% (CI_STUDY); pfps-meta has one level, so every interval is at the totals' 95% "
        "(CI_TOTAL)"]

def test_the_stored_test_for_subgroup_differences_is_noted_as_not_rerun(tmp_path):
    notes = import_revman(EXAMPLE, tmp_path / "out").notes
    assert [n for n in notes if "test for subgroup differences" in n] == [
        "comparison 1 ('BCG vaccine versus no vaccine'), outcome 1.2 ('Tuberculosis (odds ratio, IV random, by "
        "allocation)'): the file's test for subgroup differences (Q = 1.4135673668330455, p = 0.23446509164360343) "
        "is not in the spec (one analysis per subgroup; reproduce compares their totals)"]


def test_bad_arguments_are_refused_naming_the_argument(tmp_path):
    with pytest.raises(InputError, match="path must be the path of a RevMan 5 file"):
        read_revman(None)
    with pytest.raises(InputError, match="review_id must be text or None"):
        import_revman(EXAMPLE, tmp_path / "out", review_id=5)

def test_import_refuses_to_write_over_its_input_or_into_a_file(tmp_path):
    copy = tmp_path / "r.rm5"
    shutil.copy(EXAMPLE, copy)
    with pytest.raises(InputError, match="names a file, not a folder"):
        import_revman(copy, copy)
    with pytest.raises(InputError, match="folder holding an input file"):
        import_revman(copy, tmp_path)
    evidence = tmp_path / "data"
    evidence.mkdir()
    (evidence / "trials.csv").write_text("trial_id\n")
    with pytest.raises(InputError, match="holds an evidence base"):
        import_revman(copy, evidence)
    assert sorted(p.name for p in evidence.iterdir()) == ["trials.csv"]


def test_repeated_outcome_numbers_get_distinct_analysis_ids(tmp_path):
    body = ('<COMPARISON NO="1"><NAME>C</NAME>' + '<IV_OUTCOME NO="1" EFFECT_MEASURE="MD" METHOD="IV"><NAME>Pain</NAME>'
            '<IV_DATA STUDY_ID="STD-A" EFFECT_SIZE="1.5" SE="0.5"/></IV_OUTCOME>' * 2 + '</COMPARISON>')
    result = import_revman(_rm5(tmp_path, body), tmp_path / "out")
    assert [i for i, _, _ in result.analyses] == ["o1_1", "o1_1_2"]
    from pfps_meta.evidence.specs import load_spec

    assert [a.id for a in load_spec(result.spec).analyses] == ["o1_1", "o1_1_2"]


def test_swapped_events_are_the_non_events_and_latin1_files_read(tmp_path, review):
    text = EXAMPLE.read_text().replace('SWAP_EVENTS="NO"', 'SWAP_EVENTS="YES"', 1)     # outcome 1.1
    text = text.replace('NAME="Aronson 1948"', 'NAME="Aronsón 1948"')
    text = text.replace('encoding="UTF-8"', 'encoding="ISO-8859-1"')
    path = tmp_path / "latin1.rm5"
    path.write_bytes(text.encode("latin-1"))
    swapped = read_revman(path).outcomes[0].studies
    original = review.outcomes[0].studies
    assert swapped["study"].iloc[0] == "Aronsón 1948"
    np.testing.assert_array_equal(swapped["events_exp"], original["n_exp"] - original["events_exp"])
    np.testing.assert_array_equal(swapped["events_ctrl"], original["n_ctrl"] - original["events_ctrl"])


def test_the_stored_test_for_subgroup_differences_is_q_among_the_subgroup_totals(review):
    outcome = _outcome(review, "1.2")
    settings, _ = analysis_settings(outcome)
    fits = [pm.pool(outcome.layout_frame(s), measure="OR", **settings).stats for s in outcome.subgroups]
    between = pm.pool(pd.DataFrame({"study": [s.name for s in outcome.subgroups],
                                    "yi": [f["estimate"] for f in fits], "sei": [f["se"] for f in fits]}),
                      method="FE", i2="q").stats
    stored = outcome.subgroup_difference
    assert between["q"] == pytest.approx(stored["q"], rel=RTOL)
    assert between["q_p"] == pytest.approx(stored["p"], rel=RTOL)
    assert between["i2"] == pytest.approx(stored["i2"], rel=RTOL)
