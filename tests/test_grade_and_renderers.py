"""GRADE summary of findings, and the optional forestplot renderer's isolation of global state."""

import warnings

import matplotlib
import numpy as np
import pandas as pd
import pytest

import pfps_meta as pm
from pfps_meta.evidence.specs import load_spec, run_analysis
from pfps_meta.evidence.curated import Evidence
from pfps_meta.analysis.grade import summary_of_findings
from tests.conftest import ROOT


@pytest.fixture(autouse=True)
def quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pm.InputWarning)
        yield


def results(name):
    spec = load_spec(ROOT / "analyses" / name)
    evidence = Evidence.load(ROOT / "data")
    return [run_analysis(a, evidence) for a in spec.analyses], evidence


def test_summary_of_findings_marks_what_only_a_reviewer_can_decide():
    res, evidence = results("nascimento2018.toml")
    sof = summary_of_findings(res, evidence).set_index("Outcome")
    b2 = sof.loc[res[3].analysis.label]
    assert b2["Participants (studies)"] == "36 (1)"
    # one trial of eight expected: not graded at all (issue 18 item 4), no domain is judged
    assert b2["Certainty"] == "not assessed (1 of 8 expected trials)"
    assert b2["Risk of bias"] == b2["Indirectness"] == b2["Publication bias"] == ""
    assert sof.loc[res[0].analysis.label, "Effect (95% CI)"] == "no data"


def test_summary_of_findings_rules_on_the_worked_example():
    res, evidence = results("examples/hackshaw1997.toml")
    row = summary_of_findings(res, evidence).iloc[0]
    assert row["Effect (95% CI)"] == "OR 1.24 (95% CI 1.13 to 1.36)"
    assert row["Inconsistency"].startswith("serious") and "prediction interval" in row["Inconsistency"]
    assert row["Publication bias"].startswith("suspected") and "p = 0.023" in row["Publication bias"]
    # observational: starts at Low, two domains serious -> Very low, still provisional
    assert row["Certainty"].startswith("Very low (provisional")


def test_pedro_scores_drive_risk_of_bias_when_all_are_known():
    frame = pd.DataFrame({"study": ["a", "b", "c"], "yi": [-1.0, -1.5, -0.5], "vi": [0.2, 0.3, 0.25],
                          "pedro": [4, 5, 8]})
    spec_result = run_analysis_like(frame)
    sof = summary_of_findings([spec_result]).iloc[0]
    assert sof["Risk of bias"].startswith("serious (suggested)")


def run_analysis_like(frame):
    from pfps_meta.evidence.specs import Analysis, AnalysisResult, StudyTable

    analysis = Analysis(id="x", review="t", label="x", measure="MD", settings={}, source=ROOT, mcid=2.0,
                        favourable="lower")
    result = pm.pool(frame, method="DL")
    return AnalysisResult(analysis=analysis, result=result,
                          studies=StudyTable(table=frame, missing=[], expected=list(frame["study"]), notes=[]),
                          published=None)


def test_forestplot_renderer_keeps_global_state():
    import importlib.util

    if importlib.util.find_spec("forestplot") is None:      # find_spec does not import (and so changes nothing)
        pytest.skip("forestplot not installed")
    from pfps_meta.present import forestplot_renderer

    before = (list(warnings.filters), np.geterr(), dict(matplotlib.rcParams))
    res = pm.pool(ROOT / "data" / "examples" / "bcg.csv", measure="RR")
    frame = forestplot_renderer.forestplot_frame(res)
    assert list(frame.columns) == ["label", "est", "ll", "hl", "weight"] and len(frame) == 14
    assert frame["est"].iloc[-1] == pytest.approx(np.exp(res.estimate), rel=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)      # forestplot's own matplotlib tick warning
        fig = forestplot_renderer.draw(res)
    assert isinstance(fig, matplotlib.figure.Figure)
    assert list(warnings.filters) == before[0]
    assert np.geterr() == before[1]
    assert dict(matplotlib.rcParams) == before[2]
    with pytest.warns(RuntimeWarning):
        np.array([1.0]) / np.array([0.0])
