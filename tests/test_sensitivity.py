"""Sensitivity analyses against metafor (fixtures from validation/make_leave1out_fixtures.R and
validation/make_sensitivity_fixtures.R): leave1out, cumul, influence, regtest (both forms), ranktest,
trimfill (L0, R0), meta-regression, subgroup tests, exact permutation tests."""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pfps_meta as pm
from pfps_meta.analysis import sensitivity as S
from pfps_meta.models.metareg import meta_regression

FIX = Path(__file__).parent / "fixtures"
LOO = json.loads((FIX / "metafor_leave1out.json").read_text())["cases"]
SENS = json.loads((FIX / "metafor_sensitivity.json").read_text())
CASES = SENS["cases"]
RTOL, ATOL = 1e-6, 1e-9
# I2 is in percent: metafor stops REML at |change in tau2| < 1e-10 (absolute), so where tau2 is ~0 the
# two I2 values can differ by ~1e-7 percentage points.
ATOL_I2 = 1e-6


def ids(case):
    return f"{case['dataset']}-{case['method']}-{case['test']}"


def fitted(case):
    frame = pd.DataFrame({"study": [f"s{i}" for i in range(len(case["yi"]))], "yi": case["yi"],
                          "vi": case["vi"], "year": case.get("year", range(len(case["yi"])))})
    return pm.pool(frame, method=case["method"], ci="hksj" if case["test"] == "knha" else "wald")


def close(actual, expected, what, atol=ATOL):
    expected = np.array([np.nan if e is None else e for e in np.atleast_1d(expected)], dtype=float)
    np.testing.assert_allclose(np.asarray(actual, dtype=float), expected, rtol=RTOL, atol=atol,
                               equal_nan=True, err_msg=what)


@pytest.fixture(autouse=True)
def no_small_k_noise():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", S.SmallStudyWarning)
        yield


@pytest.mark.parametrize("case", LOO, ids=ids)
def test_leave_one_out_matches_metafor(case):
    loo = S.leave_one_out(fitted(case))
    assert (loo["k"] == len(case["yi"]) - 1).all()
    compared = 0
    for name in ("estimate", "se", "ci_low", "ci_high", "p", "q", "q_p", "tau2", "i2", "h2"):
        if not isinstance(case[name], list):      # metafor reports no tau2 for a common-effect model
            assert case["method"] == "FE" and name == "tau2"
            continue
        compared += 1
        close(loo[name], case[name], name, ATOL_I2 if name == "i2" else ATOL)
    assert compared >= 9


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_influence_matches_metafor(case):
    inf = S.influence(fitted(case))
    for name in ("rstudent", "dffits", "cook_d", "cov_r", "tau2_del", "q_del", "hat", "weight"):
        close(inf[name], case["influence"][name], name)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_cumulative_matches_metafor(case):
    cum = S.cumulative(fitted(case), "year")
    for name in ("estimate", "ci_low", "ci_high", "p"):
        close(cum[name], case["cumulative"][name], name)
    for name in ("tau2", "i2"):          # k = 1 first row: metafor prints 0, we report "not estimable"
        if isinstance(case["cumulative"][name], list):
            close(cum[name][1:], case["cumulative"][name][1:], name, ATOL_I2 if name == "i2" else ATOL)
    assert np.isnan(cum["tau2"].iloc[0])


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_egger_both_forms_and_begg_match_metafor(case):
    res = fitted(case)
    egger = S.egger(res)
    for name in ("intercept", "se", "statistic", "df", "p", "limit_estimate"):
        close(egger["classic"][name], case["egger_classic"][name], f"classic {name}")
    for name in ("coefficient", "se", "statistic", "p", "limit_estimate"):
        close(egger["mixed"][name], case["egger_mixed"][name], f"mixed {name}")
    assert "classic" in egger["classic"]["form"] and "mixed" in egger["mixed"]["form"]
    begg = S.begg(res)
    close(begg["tau"], case["begg"]["tau"], "tau")
    close(begg["p"], case["begg"]["p"], "p")


@pytest.mark.parametrize("estimator", ["L0", "R0"])
@pytest.mark.parametrize("case", CASES, ids=ids)
def test_trimfill_matches_metafor(case, estimator):
    out = S.trimfill(fitted(case), estimator)
    ref = case["trimfill"][estimator]
    assert (out["k0"], out["side"]) == (ref["k0"], ref["side"])
    assert len(out["filled_yi"]) == out["k0"]
    for name in ("estimate", "se", "ci_low", "ci_high", "tau2"):
        if isinstance(ref[name], dict):
            continue
        close(out[name], ref[name], name)
    if case["test"] == "z" or out["k0"] == 0:
        # with Wald CIs (or nothing filled) this is also exactly metafor's trimfill() output
        close([out["ci_low"], out["ci_high"]], [ref["metafor_trimfill_ci_low"], ref["metafor_trimfill_ci_high"]], "ci")


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_meta_regression_matches_metafor(case):
    fit = meta_regression(case["yi"], case["vi"], case["x"], method=case["method"],
                          ci="hksj" if case["test"] == "knha" else "wald")
    ref = case["metareg"]
    for name in ("beta", "se", "statistic", "p", "ci_low", "ci_high", "tau2", "i2", "h2", "qe", "qe_p", "qm",
                 "qm_p", "r2"):
        if isinstance(ref[name], dict):
            continue
        close(getattr(fit, name), ref[name], name)
    assert fit.converged


def test_meta_regression_intercept_only_equals_pooling():
    case = next(c for c in CASES if c["dataset"] == "bcg_logRR" and c["method"] == "REML" and c["test"] == "z")
    fit = meta_regression(case["yi"], case["vi"], np.ones((len(case["yi"]), 0)), method="REML")
    res = fitted(case)
    assert fit.beta[0] == pytest.approx(res.estimate, rel=1e-9)
    assert fit.tau2 == pytest.approx(res.tau2, rel=1e-9)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_subgroup_tests_match_metafor(case):
    res = fitted(case)
    separate = S.subgroups(res, case["group"], tau2="separate")
    expected = {g["group"]: g for g in case["subgroups"]}
    for row in separate["groups"].itertuples():
        for name in ("estimate", "se", "ci_low", "ci_high", "tau2"):
            close(getattr(row, name), expected[row.group][name], f"{row.group} {name}")
    close(separate["test"]["q"], case["subgroup_between"]["q"], "Q between")
    close(separate["test"]["p"], case["subgroup_between"]["p"], "p between")
    common = S.subgroups(res, case["group"], tau2="common")
    close(common["test"]["q"], case["subgroup_common"]["qm"], "QM")
    close(common["test"]["p"], case["subgroup_common"]["qm_p"], "QM p")


@pytest.mark.parametrize("case", SENS["permutation"], ids=ids)
def test_exact_permutation_test_matches_metafor(case):
    out = S.permutation_test(fitted(case))
    assert out["exact"] and out["n"] == 2 ** len(case["yi"])
    close(out["p"], case["p"], "p")


def test_random_permutations_and_bootstrap_are_seeded():
    case = CASES[0]
    res = fitted(case)
    a = S.permutation_test(res, n_permutations=500, exact=False, seed=7)
    b = S.permutation_test(res, n_permutations=500, exact=False, seed=7)
    assert a == b and not a["exact"] and 0 < a["p"] <= 1
    boot1 = S.bootstrap_tau2(res, n_boot=300, seed=3)
    boot2 = S.bootstrap_tau2(res, n_boot=300, seed=3)
    assert boot1 == boot2
    assert boot1["ci_low"] <= res.tau2 <= boot1["ci_high"]


def test_predictive_probability_uses_the_prediction_distribution():
    res = fitted(next(c for c in CASES if c["method"] == "REML" and c["test"] == "z"))
    # at the lower prediction limit the probability of a smaller true effect is (1 - level) / 2
    out = S.predictive_probability(res, res.pi_low, "below")
    assert out["probability"] == pytest.approx(0.025, rel=1e-9)
    hksj = fitted(next(c for c in CASES if c["method"] == "REML" and c["test"] == "knha"))
    assert S.predictive_probability(hksj, hksj.pi_high, "above")["probability"] == pytest.approx(0.025, rel=1e-9)
    common = fitted(next(c for c in CASES if c["method"] == "FE"))
    assert S.predictive_probability(common, 0.0)["probability"] is None


def test_small_study_tests_warn_when_k_is_below_10():
    small = fitted(next(c for c in CASES if c["dataset"] == "normand1999_MD"))
    with pytest.warns(S.SmallStudyWarning, match="k = 9 < 10"):
        S.egger(small)


@pytest.mark.parametrize("call, message", [
    (lambda res: S.cumulative(res, order="no_such_column"), "^order: no column"),
    (lambda res: S.cumulative(res, order=[1, 2]), "^order: a column name or one value per study"),
    (lambda res: S.subgroups(res, "no_such_column"), "^groups: no column"),
    (lambda res: S.subgroups(res, "alloc", tau2="x"), "^tau2: "),
    (lambda res: S.trimfill(res, estimator="Q0"), "^estimator: "),
    (lambda res: S.trimfill(res, side="up"), "^side: "),
    (lambda res: S.permutation_test(res, n_permutations=-5), "^n_permutations: "),
    (lambda res: S.bootstrap_tau2(res, n_boot=0), "^n_boot: "),
    (lambda res: S.bootstrap_tau2(res, n_boot=10, level=95), "^level: "),
    (lambda res: S.predictive_probability(res, "x"), "^threshold: "),
    (lambda res: S.predictive_probability(res, 0.0, direction="sideways"), "^direction: "),
    (lambda res: S.egger("not a fit"), "^result: "),
    (lambda res: S.leave_one_out(None), "^result: "),
    (lambda res: pm.analysis.diagnostics.tau2_uncertainty("not a fit"), "^result: "),
])
def test_bad_sensitivity_arguments_are_refused_naming_the_argument(call, message):
    from pfps_meta.analysis import diagnostics  # noqa: F401  (pm.analysis.diagnostics)

    res = pm.pool(pd.read_csv(Path(__file__).parents[1] / "data" / "examples" / "bcg.csv"), measure="RR")
    with pytest.raises(pm.InputError, match=message):
        call(res)
