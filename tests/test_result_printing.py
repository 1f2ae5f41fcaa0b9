"""Every public result type prints (metafor-style text), shows in a notebook (_repr_html_), gives a table
(to_frame) and strict JSON (to_dict); and the sensitivity command's text shows every analysis in its JSON."""

import inspect
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pfps_meta as pm
from pfps_meta.analysis import diagnostics, sensitivity as S
from pfps_meta.models import metareg
from pfps_meta.present import tables

ROOT = Path(__file__).resolve().parents[1]
BCG_RAW = pd.read_csv(ROOT / "data" / "examples" / "bcg.csv")
HACKSHAW = ROOT / "analyses" / "examples" / "hackshaw1997.toml"


@pytest.fixture(scope="module")
def bcg():
    return pm.pool(BCG_RAW, measure="RR", method="REML", ci_method="hksj")


def _spec_results():
    from pfps_meta.analysis.presets import preset_diff, run_with_preset
    from pfps_meta.analysis.reproduce import reproduce_rows
    from pfps_meta.evidence.specs import load_all

    [(spec, evidence)] = load_all([HACKSHAW])
    analysis = spec.analyses[0]
    return (tables.preset_diff_view(preset_diff(analysis, evidence, "revman5", "metafor"), analysis.key),
            tables.reproduce_view(reproduce_rows([run_with_preset(analysis, evidence, "metafor")])))


def _every_result(res):
    from pfps_meta.analysis.simulate import Design, simulate

    fit = metareg.rma(res, "~ ablat + alloc")
    full = metareg.rma(res, "~ ablat", method="ML")
    reduced = metareg.rma(res, None, method="ML")
    small = pm.pool(BCG_RAW.iloc[:6], measure="RR")
    sim = simulate(Design.from_arm_sizes([20, 30, 25], [20, 30, 25]), mu=0.3, tau2=(0.0, 0.1), replicates=200,
                   methods=("DL",), ci_methods=("wald",), seed=1)
    diff, rows = _spec_results()
    return [fit, fit.anova(btt="alloc"), fit.anova(X=[[0, 1, 0, 0]]), metareg.likelihood_ratio_test(full, reduced),
            metareg.rma(small, "~ ablat").permutation_test(), metareg.MetaRegressionSummary(fit.to_dict()),
            S.leave_one_out(res), S.cumulative(res, "year"), S.influence(res), S.egger(res), S.begg(res),
            S.trimfill(res), S.subgroups(res, "alloc"), S.subgroups(res, "alloc", "common"),
            S.permutation_test(small), S.bootstrap_tau2(res, 40), S.predictive_probability(res, -0.2),
            diagnostics.tau2_uncertainty(res), sim, diff, rows, res]


def _public_result_types():
    """Every class in the result modules that is a printable result (so a new one without a case fails)."""
    from pfps_meta.analysis import simulate

    found = set()
    for module in (metareg, S, diagnostics, tables, simulate):
        for name, cls in vars(module).items():
            if (inspect.isclass(cls) and not name.startswith("_") and cls.__module__ == module.__name__
                    and (issubclass(cls, (metareg.ResultDict, metareg.ResultFrame))
                         or hasattr(cls, "_repr_html_"))):
                found.add(cls)
    return found - {metareg.ResultDict, metareg.ResultFrame}


def test_every_public_result_type_prints_and_serialises(bcg):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = _every_result(bcg)
    assert _public_result_types() <= {type(r) for r in results}
    for result in results:
        name = type(result).__name__
        text = str(result)
        assert text.strip() and "{" not in text.split("\n")[0], name       # a print, not a raw dict
        assert "array(" not in text and "Settings(" not in text, name
        assert repr(result) == text or name == "MetaResult", name
        html = result._repr_html_()
        assert html.lstrip().startswith("<") and "<table" in html or name == "MetaResult", name
        assert isinstance(result.to_frame(), pd.DataFrame), name
        json.dumps(result.to_dict(), allow_nan=False)


def test_dict_and_frame_access_still_work(bcg):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        egger = S.egger(bcg)
        loo = S.leave_one_out(bcg)
    assert egger["classic"]["df"] == 11 and set(egger) >= {"classic", "mixed", "k", "low_power"}
    assert list(loo["study"]) == list(bcg.studies["study"]) and type(loo[["study"]]) is pd.DataFrame
    assert loo.to_dict("records")[0]["study"] == "Aronson 1948"
    assert json.loads(json.dumps(loo.to_dict(), allow_nan=False))["rows"][0]["k"] == 12


def test_meta_regression_prints_as_print_rma_uni(bcg):
    fit = metareg.rma(bcg, "~ ablat + alloc")
    text = str(fit)
    for piece in ("Mixed-Effects Model (k = 13; tau^2 estimator: REML)", "Test for Residual Heterogeneity:",
                  "Test of Moderators (coefficients ablat, alloc[random], alloc[systematic]):",
                  "F(df1 = 3, df2 = 9)", "tval", "ci.lb", "alloc: reference level 'alternate'", "log RR scale"):
        assert piece in text
    assert len(text.splitlines()) < 30 and "array" not in text


def test_log_scale_results_say_so(bcg):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for result in (S.leave_one_out(bcg), S.egger(bcg), S.trimfill(bcg), S.subgroups(bcg, "alloc")):
            assert "log RR scale" in str(result), type(result).__name__
        assert "Back-transformed (RR, exp)" in str(S.trimfill(bcg))


def test_subgroup_print_shows_the_test_of_differences(bcg):
    separate, common = S.subgroups(bcg, "alloc"), S.subgroups(bcg, "alloc", "common")
    assert "Test for subgroup differences" in str(separate) and "d.f. = 2" in str(separate)
    assert "F(df1 = 2, df2 = 10)" in str(common)
    assert len(separate["groups"].columns) < 20


def _heading_of(key, text):
    return S.SECTION_TITLES[key] in text


def test_sensitivity_text_shows_every_analysis_in_the_json(bcg):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = S.sensitivity_report(bcg, order="year", subgroup="alloc", moderator="~ ablat + alloc", mcid=-0.2,
                                      permutations=1000, bootstrap=50)
    text = S.format_sensitivity(report)
    for key, value in report.items():
        if key in S.HEADER_KEYS or value in ([], {}):
            continue
        assert _heading_of(key, text), f"{key} is in the JSON but not in the text"
    assert "exact enumeration of all 8,192 sign permutations, used instead of 1,000 random ones" in text
    assert "Test for subgroup differences" in text and "Test of Moderators" in text
    assert "Cumulative meta-analysis, ordered by year" in text and "log RR scale" in text


def test_sensitivity_text_says_why_an_analysis_was_not_run():
    two = pm.pool(BCG_RAW.iloc[:2], measure="RR")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = S.sensitivity_report(two, mcid=-0.2)
    text = S.format_sensitivity(report)
    assert "small_study_tests" in report["not_run"]
    assert "Not run: small study tests: k = 2: Egger, Begg and trim-and-fill need at least 3 studies" in text
    one = S.sensitivity_report(pm.pool(BCG_RAW.iloc[:1], measure="RR"), subgroup="alloc", permutations=10)
    text_one = S.format_sensitivity(one)
    assert "Not run: subgroup: k = 1" in text_one and "Not run: permutations: k = 1" in text_one


def test_anova_print_names_the_coefficients_tested(bcg):
    fit = metareg.rma(bcg, "~ ablat + alloc")
    text = str(fit.anova(btt=[2, 3]))
    assert text.startswith("Test of Moderators (coefficients alloc[random], alloc[systematic]; 0-based positions 2, 3)")
    assert np.isfinite(fit.anova(btt="ablat")["qm"])
