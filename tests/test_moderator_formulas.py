"""Moderators as a metafor user writes them, checked against metafor 3.8-1 (dat.bcg, log risk ratios):
tests/fixtures/metafor_moderators.json from validation/make_moderator_fixtures.R."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pfps_meta as pm
from pfps_meta.models.metareg import meta_regression, rma

ROOT = Path(__file__).resolve().parents[1]
REF = json.loads((ROOT / "tests" / "fixtures" / "metafor_moderators.json").read_text())
BCG_RAW = pd.read_csv(ROOT / "data" / "examples" / "bcg.csv")
BCG = pm.escalc(BCG_RAW, "RR")
OURS = {"~ablat + alloc": "~ ablat + alloc",
        "~ablat + alloc_random": "~ ablat + C(alloc, Treatment('random'))",
        "~ablat * alloc": "~ ablat * alloc"}     # the R formulas as deparse() writes them -> ours
# metafor's coefficient names -> ours (documented in meta_regression: column[level], intercept)
NAMES = {"intrcpt": "intercept", "allocrandom": "alloc[random]", "allocsystematic": "alloc[systematic]",
         "alloc_randomalternate": "alloc[alternate]", "alloc_randomsystematic": "alloc[systematic]",
         "ablat:allocrandom": "ablat:alloc[random]", "ablat:allocsystematic": "ablat:alloc[systematic]"}


def close(ours, theirs, what, rel=1e-6):
    np.testing.assert_allclose(np.asarray(ours, float), np.asarray(theirs, float), rtol=rel, atol=1e-10,
                               err_msg=what)


def fit_case(case):
    return rma(BCG, OURS[case["formula"]], method=case["method"],
               ci_method="hksj" if case["test"] == "knha" else "wald")


@pytest.mark.parametrize("case", REF["cases"], ids=[f"{c['label']}-{c['test']}" for c in REF["cases"]])
def test_formula_meta_regression_matches_metafor_rma_mods(case):
    fit = fit_case(case)
    assert fit.names == [NAMES.get(n, n) for n in case["names"]]
    for ours, theirs in (("beta", "estimate"), ("se", "se"), ("statistic", "statistic"), ("p", "p"),
                         ("ci_low", "ci_low"), ("ci_high", "ci_high")):
        close(getattr(fit, ours), case[theirs], theirs)
    for name in ("tau2", "i2", "h2", "r2", "qe", "qm", "qm_p"):
        close(getattr(fit, name), case[name], name)
    close(fit.qe_p, case["qe_p"], "qe_p")


@pytest.mark.parametrize("case", REF["cases"], ids=[f"{c['label']}-{c['test']}" for c in REF["cases"]])
def test_anova_btt_by_name_matches_metafor_1_based_btt(case):
    fit = fit_case(case)
    wanted = [NAMES.get(n, n) for n in case["btt_names"]]
    by_name = fit.anova(btt=wanted)
    by_position = fit.anova(btt=[b - 1 for b in case["btt"]])       # metafor's 1-based btt, made 0-based
    for out in (by_name, by_position):
        assert out["coefficients"] == wanted
        close(out["qm"], case["anova_qm"], "anova QM")
        close(out["p"], case["anova_p"], "anova p")
    assert list(by_name["df"]) == [d for d in case["anova_df"] if isinstance(d, (int, float))]   # z: no df2
    assert all(name in str(by_name) for name in wanted)


def test_a_term_name_tests_all_of_its_coefficients():
    fit = rma(BCG, "~ ablat + alloc")
    assert fit.anova(btt="alloc")["coefficients"] == ["alloc[random]", "alloc[systematic]"]


def test_metafor_one_based_btt_out_of_range_is_refused_with_the_0_based_rule():
    fit = rma(BCG, "~ ablat")
    with pytest.raises(pm.InputError, match="0-based"):
        fit.anova(btt=2)            # metafor's btt=2 (ablat) is position 1 here
    with pytest.raises(pm.InputError, match="no coefficient or term named 'lat'"):
        fit.anova(btt="lat")


def test_reference_level_is_stated_in_the_print():
    default = rma(BCG, "~ alloc")
    given = rma(BCG, "~ C(alloc, Treatment('random'))")
    assert default.references == {"alloc": "alternate"} and given.references == {"alloc": "random"}
    assert "alloc: reference level 'alternate'" in str(default)
    assert "alloc: reference level 'random'" in str(given)


def test_categorical_series_and_dataframe_moderators_keep_their_names():
    by_series = meta_regression(BCG["yi"], BCG["vi"], BCG["alloc"])
    by_frame = meta_regression(BCG["yi"], BCG["vi"], mods=BCG[["ablat", "alloc"]])
    by_formula = rma(BCG, "~ ablat + alloc")
    assert by_series.names == ["intercept", "alloc[random]", "alloc[systematic]"]
    assert by_frame.names == by_formula.names
    close(by_frame.beta, by_formula.beta, "DataFrame vs formula", rel=1e-12)
    assert meta_regression(BCG["yi"], BCG["vi"], BCG["ablat"]).names == ["intercept", "ablat"]


def test_rma_accepts_a_raw_table_with_a_measure_and_a_fitted_result():
    from_raw = rma(BCG_RAW, "~ ablat", measure="RR")
    from_result = rma(pm.pool(BCG_RAW, measure="RR"), "~ ablat")
    close(from_raw.beta, from_result.beta, "raw vs result", rel=1e-12)
    assert from_result.measure == "RR" and "log RR scale" in str(from_result)


def test_formula_without_intercept_and_with_functions():
    cells = rma(BCG, "~ 0 + alloc")
    assert cells.names == ["alloc[alternate]", "alloc[random]", "alloc[systematic]"] and not cells.intercept
    assert cells.references == {}
    assert rma(BCG, "~ ablat + I(ablat ** 2)").names == ["intercept", "ablat", "I(ablat ** 2)"]


def test_bad_formulas_are_input_errors_naming_the_problem():
    broken = BCG.copy()
    broken["ablat"] = broken["ablat"].astype(object)
    broken.loc[3, "ablat"] = "15%"
    with pytest.raises(pm.InputError, match="not a number.*C\\(ablat\\)"):
        rma(broken, "~ ablat")
    missing = BCG.copy()
    missing.loc[2, "ablat"] = np.nan
    with pytest.raises(pm.InputError, match="missing") as err:
        rma(missing, "~ ablat")
    assert err.value.column == "ablat"
    with pytest.raises(pm.InputError, match="cannot be read"):
        rma(BCG, "~ nosuchcolumn")
    with pytest.raises(pm.InputError, match="data="):
        meta_regression(BCG["yi"], BCG["vi"], mods="~ ablat")


def test_sensitivity_report_takes_the_same_formula():
    from pfps_meta.analysis.sensitivity import sensitivity_report

    out = sensitivity_report(pm.pool(BCG_RAW, measure="RR"), moderator="~ ablat + alloc")
    reg = out["meta_regression"]
    assert [c["term"] for c in reg["coefficients"]] == ["intercept", "ablat", "alloc[random]", "alloc[systematic]"]
    assert reg["reference_levels"] == {"alloc": "alternate"}
    case = REF["cases"][0]
    close([c["estimate"] for c in reg["coefficients"]], case["estimate"], "sensitivity meta-regression")


def test_cli_moderator_takes_the_formula_and_a_csv_read_as_text_keeps_numbers_numeric(capsys):
    from pfps_meta.cli import main

    bcg = str(ROOT / "data" / "examples" / "bcg.csv")
    assert rma(pm.pool(bcg, measure="RR"), "~ ablat").names == ["intercept", "ablat"]
    assert main(["sensitivity", bcg, "--measure", "RR", "--moderator", "~ ablat + alloc", "--format", "json"]) == 0
    reg = json.loads(capsys.readouterr().out)["meta_regression"]
    case = REF["cases"][0]
    assert [c["term"] for c in reg["coefficients"]] == [NAMES.get(n, n) for n in case["names"]]
    close([c["se"] for c in reg["coefficients"]], case["se"], "CLI meta-regression se")
    close(reg["qm"], case["qm"], "CLI QM")


@pytest.mark.parametrize("call, message", [
    (lambda fit: fit.anova(btt=1.0), "^btt: "),
    (lambda fit: fit.anova(X=[[1, 2]]), "^X: each row needs 4 numbers"),
    (lambda fit: fit.anova(X=[[0, 1, np.nan, 0]]), "^X: .*finite"),
    (lambda fit: fit.anova(X=[["a", "b", "c", "d"]]), "^X: .*numbers"),
    (lambda fit: pm.models.metareg.likelihood_ratio_test(fit, "reduced"), "^reduced: "),
])
def test_bad_anova_and_lrt_arguments_are_refused_naming_the_argument(call, message):
    fit = rma(BCG, "~ ablat + alloc")
    with pytest.raises(pm.InputError, match=message):
        call(fit)


def test_meta_regression_of_a_mantel_haenszel_fit_is_refused_naming_the_method():
    caffeine = pd.read_csv(ROOT / "data" / "examples" / "caffeine.csv")
    fit = pm.pool(caffeine, measure="OR", method="MH")
    with pytest.raises(pm.InputError, match="^method: MH pools 2x2 tables"):
        rma(fit, "~ year")
    with pytest.raises(pm.InputError, match="^method: PETO"):
        meta_regression(BCG["yi"], BCG["vi"], BCG[["ablat"]], method="PETO")
