"""The GRADE risk-of-bias rule (issue 21 item 5) at its threshold on each side, thin evidence not graded
(issue 18 item 4), observational studies without a PEDro count (item 7), and the numpy Egger test GRADE
uses against the regression form in sensitivity.egger (itself checked against metafor regtest)."""

import warnings

import numpy as np
import pytest

import pfps_meta as pm
from pfps_meta.analysis import grade
from pfps_meta.analysis.grade import RISK_OF_BIAS_RULE, risk_of_bias_domain, summary_of_findings, thin_evidence
from pfps_meta.evidence.specs import load_all, run_analysis
from tests.conftest import ROOT


@pytest.fixture(autouse=True)
def quiet_input_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pm.InputWarning)
        yield


def test_high_risk_share_just_above_half_lowers_two_levels_and_exactly_half_one():
    # exactly half of the weight at high risk (the rest low): "more than half" is strict
    levels, text = risk_of_bias_domain(["high", "low"], [50, 50])
    assert levels == 0 and text.startswith("not serious")
    levels, _ = risk_of_bias_domain(["high", "low"], [50.000001, 49.999999])
    assert levels == 2
    # exactly half high, the other half some concerns: high or some concerns is all of it -> one level
    assert risk_of_bias_domain(["high", "some concerns"], [1, 1])[0] == 1


def test_some_concerns_share_on_each_side_of_half():
    assert risk_of_bias_domain(["Some concerns", "low", "low"], [2, 1, 1])[0] == 0      # 50%: not lowered
    assert risk_of_bias_domain(["some", "low", "low"], [2.0001, 1, 1])[0] == 1          # 50.001%: one level
    assert risk_of_bias_domain(["some concerns", "high", "low"], [1, 1.0001, 2])[0] == 1
    assert risk_of_bias_domain(["low", "low"], [3, 1])[0] == 0


def test_rule_weights_on_any_scale_and_missing_judgements_go_to_the_reviewer():
    assert risk_of_bias_domain(["high", "low", "low"], [0.6, 0.2, 0.2]) == risk_of_bias_domain(
        ["high", "low", "low"], [60, 20, 20])
    levels, text = risk_of_bias_domain(["high", None, "low"], [1, 1, 1])
    assert levels is None and "missing for 1 of 3" in text


@pytest.mark.parametrize("judgements, weights, needle", [
    (["bad"], [1], "not one of"), (["low"], [1, 2], "1 judgements but 2 weights"),
    (["low"], [-1], "non-negative"), (["low"], [np.nan], "finite")])
def test_rule_refuses_bad_input_with_one_line(judgements, weights, needle):
    with pytest.raises(pm.InputError, match=needle):
        risk_of_bias_domain(judgements, weights)


def test_rule_text_states_both_thresholds():
    assert "more than half" in RISK_OF_BIAS_RULE and "two levels" in RISK_OF_BIAS_RULE
    assert "exactly half does not" in RISK_OF_BIAS_RULE


def _runs(spec_path):
    spec, evidence = load_all([ROOT / spec_path])[0]
    return [run_analysis(a, evidence) for a in spec.analyses], evidence


def test_summary_of_findings_uses_rob2_when_given_and_prints_the_rule():
    runs, evidence = _runs("analyses/examples/normand1999.toml")
    studies = list(runs[0].result.studies["study"])
    weights = runs[0].result.studies["weight"].to_numpy()
    order = np.argsort(-weights)
    rob = {s: "low" for s in studies}
    rob[studies[order[0]]] = "high"
    table = summary_of_findings(runs, evidence, risk_of_bias=rob)
    assert table.attrs["rules"] == [RISK_OF_BIAS_RULE]
    expected = risk_of_bias_domain([rob[s] for s in studies], weights)
    assert table.loc[0, "Risk of bias"] == expected[1]
    assert "PEDro" not in table.loc[0, "Risk of bias"]
    # without RoB 2: the PEDro rule, as before
    assert table.attrs["rules"] != summary_of_findings(runs, evidence).attrs["rules"]


def test_one_trial_of_eight_is_not_graded():
    runs, evidence = _runs("analyses/nascimento2018.toml")
    table = summary_of_findings([r for r in runs if hasattr(r, "result")], evidence)
    thin = table[table["Participants (studies)"].str.endswith("(1)")]
    assert len(thin) >= 1
    for certainty in thin["Certainty"]:
        assert certainty.startswith("not assessed (1 of ") and "expected trials)" in certainty
    assert not any(c.startswith(("Moderate", "High", "Low")) for c in thin["Certainty"])
    assert thin_evidence(1, 1) and thin_evidence(4, 10) and not thin_evidence(5, 10) and not thin_evidence(2, 2)


def test_observational_grade_counts_no_pedro_scores():
    runs, evidence = _runs("analyses/examples/hackshaw1997.toml")
    table = summary_of_findings(runs, evidence)
    assert "PEDro" not in " ".join(table.astype(str).values.ravel())
    assert table.loc[0, "Certainty"].startswith(("Very low", "Low"))


def test_grade_egger_matches_the_regression_form_of_sensitivity_egger():
    runs, _ = _runs("analyses/examples/hackshaw1997.toml")
    res = runs[0].result
    mine = grade.egger_classic(res.studies["yi"], res.studies["vi"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pm.PfpsWarning)
        theirs = pm.sensitivity.egger(res)["classic"]
    for key in ("intercept", "se", "statistic", "p"):
        assert mine[key] == pytest.approx(theirs[key], rel=1e-10), key
    assert grade.egger_classic([0.1, 0.2, 0.3], [0.04, 0.04, 0.04]) is None


def test_bad_counts_and_weights_are_refused_naming_the_argument():
    from pfps_meta.errors import InputError

    with pytest.raises(InputError, match="k_available: a count of trials"):
        thin_evidence(None, 3)
    with pytest.raises(InputError, match="k_available: a count of trials"):
        thin_evidence(-1, 3)
    with pytest.raises(InputError, match="k_expected: a count of trials"):
        thin_evidence(2, 2.5)
    assert thin_evidence(1, None) and not thin_evidence(2, None)
    with pytest.raises(InputError, match="not a mapping"):
        risk_of_bias_domain({"s1": "high"}, {"s1": 1.0})
    with pytest.raises(InputError, match="weights: risk-of-bias weights must be numbers"):
        risk_of_bias_domain(["high"], ["heavy"])
