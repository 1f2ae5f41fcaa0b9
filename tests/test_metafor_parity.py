"""metafor parity, next tier (issue 11): pre-post and heteroscedastic measures, fit statistics, tau2
uncertainty, BLUPs and residuals, meta-regression predictions, Wald tests, the likelihood-ratio test and
categorical moderators. Reference: validation/make_parity_fixtures.R (metafor 3.8.1, tight control)."""

import json

import numpy as np
import pandas as pd
import pytest

import pfps_meta as pm
from pfps_meta.analysis import diagnostics
from pfps_meta.cli import main
from pfps_meta.models.metareg import design, likelihood_ratio_test, meta_regression
from tests.conftest import FIXTURES, ROOT

REF = json.loads((FIXTURES / "metafor_parity.json").read_text())
BCG = pm.escalc(pd.read_csv(ROOT / "data" / "examples" / "bcg.csv"), "RR")
DATA = {"bcg_logRR": BCG,
        "normand1999_MD": pm.escalc(pd.read_csv(ROOT / "data" / "examples" / "normand1999.csv"), "MD")}
RTOL = 1e-6


def _prepost():
    pp = pd.DataFrame(REF["prepost"]).rename(columns={"m1i": "mean_t1", "m2i": "mean_t2", "sd1i": "sd_t1",
                                                      "sd2i": "sd_t2", "ni": "n", "ri": "r"})
    pp.insert(0, "study", [f"s{i}" for i in range(len(pp))])
    return pp


@pytest.mark.parametrize("measure", ["MC", "SMCC", "SMCR"])
def test_pre_post_measures_match_escalc(measure):
    out = pm.escalc(_prepost(), measure)
    np.testing.assert_allclose(out["yi"], REF["measures"][measure]["yi"], rtol=1e-10)
    np.testing.assert_allclose(out["vi"], REF["measures"][measure]["vi"], rtol=1e-10)


def test_smdh_matches_escalc():
    out = pm.escalc(pd.read_csv(ROOT / "data" / "examples" / "normand1999.csv"), "SMDH")
    np.testing.assert_allclose(out["yi"], REF["measures"]["SMDH"]["yi"], rtol=1e-10)
    np.testing.assert_allclose(out["vi"], REF["measures"]["SMDH"]["vi"], rtol=1e-10)


def test_borrowed_pre_post_correlation_is_flagged(tmp_path, capsys):
    pp = _prepost()
    pp.loc[1, "r"] = np.nan
    with pytest.raises(pm.InputError, match="pre-post correlation r is empty"):
        pm.escalc(pp, "SMCC")
    out = pm.escalc(pp, "SMCC", prepost_r=0.6)
    np.testing.assert_allclose(out["yi"], REF["measures"]["SMCC"]["yi"], rtol=1e-10)   # row 1 had r = 0.6
    assert out["conversion"].iloc[1] == "r borrowed: prepost_r = 0.6" and out["conversion"].iloc[0] == ""
    path = tmp_path / "pp.csv"
    pp.to_csv(path, index=False)
    assert main(["pool", str(path), "--measure", "SMCR", "--prepost-r", "0.6", "--format", "json"]) == 0
    studies = json.loads(capsys.readouterr().out)["studies"]
    assert len(studies) == 5


FITS = [pytest.param(f, id=f"{f['dataset']}-{f['method']}-{f['test']}") for f in REF["fits"]]


def _pool(case, **extra):
    return pm.pool(DATA[case["dataset"]][["study", "yi", "vi"]], method=case["method"],
                   ci_method="hksj" if case["test"] == "knha" else "wald", **extra)


@pytest.mark.parametrize("case", FITS)
def test_fit_statistics_match_fitstats(case):
    stats = _pool(case, tau2_ci=False).stats
    for name in ("loglik", "deviance", "aic", "bic", "aicc"):
        assert stats[name] == pytest.approx(case[name], rel=RTOL), name


@pytest.mark.parametrize("case", FITS)
def test_blups_residuals_and_fitted(case):
    res = _pool(case)
    rs = diagnostics.rstandard(res)
    for column in ("resid", "se", "z"):
        np.testing.assert_allclose(rs[column], case["rstandard"][column], rtol=RTOL)
    np.testing.assert_allclose(diagnostics.fitted(res), case["fitted"], rtol=RTOL)
    if "blup" in case:
        b = diagnostics.blup(res)
        for column in ("pred", "se", "pi_low", "pi_high"):
            np.testing.assert_allclose(b[column], case["blup"][column], rtol=RTOL)


@pytest.mark.parametrize("case", [c for c in FITS if c.values[0]["method"] in ("ML", "REML")])
def test_tau2_standard_error_and_profile_likelihood_ci(case):
    res = _pool(case)
    assert res.stats["tau2_se"] == pytest.approx(case["se_tau2"], rel=RTOL)
    u = diagnostics.tau2_uncertainty(res)
    assert u["se"] == pytest.approx(case["se_tau2"], rel=RTOL)
    assert u["pl_low"] == pytest.approx(case["tau2_pl_low"], rel=RTOL, abs=1e-10)
    assert u["pl_high"] == pytest.approx(case["tau2_pl_high"], rel=RTOL)


@pytest.mark.parametrize("case", REF["regressions"], ids=lambda c: f"{c['method']}-{c['test']}")
def test_meta_regression_predict_anova_fitstats(case):
    fit = meta_regression(BCG["yi"], BCG["vi"], BCG[["ablat", "year"]].to_numpy(float), names=["ablat", "year"],
                          method=case["method"], ci_method="hksj" if case["test"] == "knha" else "wald")
    np.testing.assert_allclose(fit.beta, case["beta"], rtol=RTOL)
    pred = fit.predict([[10, 1940], [30, 1960], [50, 1980]])
    for ours, theirs in (("pred", "pred"), ("se", "pred_se"), ("ci_low", "ci_low"), ("ci_high", "ci_high"),
                         ("pi_low", "pi_low"), ("pi_high", "pi_high")):
        np.testing.assert_allclose(pred[ours], case[theirs], rtol=RTOL)
    wald = fit.anova(btt=[1])
    assert wald["qm"] == pytest.approx(case["btt_stat"], rel=RTOL) and wald["p"] == pytest.approx(case["btt_p"], rel=RTOL)
    # metafor stores QMdf as (m, NA) for z tests and (m, k - p) for knha
    assert list(wald["df"]) == [int(d) for d in np.atleast_1d(case["btt_df"]) if str(d) != "NA"]
    combos = fit.anova(X=[[0, 1, 0], [0, 1, -1], [1, 30, 1960]])
    for ours, theirs in (("estimate", "x_est"), ("se", "x_se"), ("statistic", "x_stat"), ("p", "x_p")):
        np.testing.assert_allclose(combos["combinations"][ours], case[theirs], rtol=RTOL)
    assert combos["qm"] == pytest.approx(case["x_qm"], rel=RTOL) and combos["p"] == pytest.approx(case["x_qm_p"], rel=RTOL)
    for name in ("loglik", "deviance", "aic", "bic", "aicc"):
        assert fit.fitstats()[name] == pytest.approx(case[name], rel=RTOL), name
    rs = fit.rstandard()
    for column in ("resid", "se", "z"):
        np.testing.assert_allclose(rs[column], case["rstandard"][column], rtol=RTOL)


def test_likelihood_ratio_test_and_its_refusals():
    X = BCG[["ablat", "year"]].to_numpy(float)
    full = meta_regression(BCG["yi"], BCG["vi"], X, method="ML")
    reduced = meta_regression(BCG["yi"], BCG["vi"], X[:, 0], method="ML")
    out = likelihood_ratio_test(full, reduced)
    assert out["lrt"] == pytest.approx(REF["lrt"]["lrt"], rel=RTOL) and out["p"] == pytest.approx(REF["lrt"]["p"], rel=RTOL)
    assert out["df"] == REF["lrt"]["df"] == 1
    with pytest.raises(pm.InputError, match="two ML fits or two REML"):
        likelihood_ratio_test(full, meta_regression(BCG["yi"], BCG["vi"], X[:, 0], method="DL"))


def test_categorical_moderator_with_a_stated_reference():
    X, names, refs = design(BCG, "C(alloc)")
    assert refs == {"alloc": "alternate"} and names == ["alloc[random]", "alloc[systematic]"]
    fit = meta_regression(BCG["yi"], BCG["vi"], X, names=names, method="REML")
    np.testing.assert_allclose(fit.beta, REF["categorical"]["beta"], rtol=RTOL)
    np.testing.assert_allclose(fit.se, REF["categorical"]["se"], rtol=RTOL)
    assert fit.qm == pytest.approx(REF["categorical"]["qm"], rel=RTOL)
    _, names_random, refs_random = design(BCG, ["alloc"], factors=["alloc"], reference="random")
    assert refs_random == {"alloc": "random"} and "alloc[alternate]" in names_random


def test_cli_json_has_fit_statistics_and_sensitivity_takes_a_categorical_moderator(capsys):
    bcg = str(ROOT / "data" / "examples" / "bcg.csv")
    assert main(["pool", bcg, "--measure", "RR", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    reml = next(f for f in REF["fits"] if f["dataset"] == "bcg_logRR" and f["method"] == "REML" and f["test"] == "z")
    for name in ("loglik", "deviance", "aic", "bic", "aicc"):
        assert out[name] == pytest.approx(reml[name], rel=RTOL)
    assert out["tau2_se"] == pytest.approx(reml["se_tau2"], rel=RTOL)
    assert main(["sensitivity", bcg, "--measure", "RR", "--moderator", "C(alloc)", "--format", "json"]) == 0
    reg = json.loads(capsys.readouterr().out)["meta_regression"]
    assert [c["term"] for c in reg["coefficients"]] == ["intercept", "alloc[random]", "alloc[systematic]"]
    assert reg["reference_levels"] == {"alloc": "alternate"}


def test_drop_missing_lists_every_dropped_row(tmp_path, capsys):
    path = tmp_path / "gaps.csv"
    path.write_text("study,yi,vi\nA,0.1,0.04\nB,,0.05\nC,0.3,\nD,0.2,0.06\n")
    assert main(["pool", str(path)]) == 2
    assert "line 3 (row 2), column 'yi': value is missing" in capsys.readouterr().err
    assert main(["pool", str(path), "--drop-missing", "--format", "json"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["k"] == 2 and [s["study"] for s in out["studies"]] == ["A", "D"]
    assert "gaps.csv, line 3 ('B'): yi empty" in captured.err and "gaps.csv, line 4 ('C'): vi empty" in captured.err
    assert sum("dropped (drop_missing)" in note for note in out["notes"]) == 2


def test_forest_draws_blups_when_given():
    from pfps_meta.present import plots

    res = pm.pool(ROOT / "data" / "examples" / "normand1999.csv", measure="MD")
    fig = plots.forest(res, blups=diagnostics.blup(res))
    markers = [line for line in fig.axes[0].lines if line.get_marker() == "D"]
    assert len(markers) == res.stats["k"]


@pytest.mark.parametrize("case", REF["weighted"], ids=lambda c: c["method"])
def test_user_weights_match_rma_weights(case):
    res = pm.pool(BCG[["study", "yi", "vi"]], method=case["method"], weights=np.array(case["weights"], float))
    for name in ("estimate", "se", "ci_low", "ci_high", "p", "tau2"):
        assert res.stats[name] == pytest.approx(case[name], rel=RTOL, abs=1e-12), name
    assert res.studies["weight"].to_numpy() == pytest.approx(100 * np.array(case["weights"]) / np.sum(case["weights"]))


def test_user_weights_refusals_and_cli(tmp_path, capsys):
    with pytest.raises(pm.InputError, match="Wald CIs only"):
        pm.pool(BCG[["study", "yi", "vi"]], ci_method="hksj", weights=np.ones(len(BCG)))
    with pytest.raises(pm.InputError, match="finite and > 0"):
        pm.pool(BCG[["study", "yi", "vi"]], weights=-np.ones(len(BCG)))
    unweighted = pm.pool(BCG[["study", "yi", "vi"]], method="DL", weights=np.ones(len(BCG))).stats
    assert unweighted["estimate"] == pytest.approx(BCG["yi"].mean())
    path = tmp_path / "w.csv"
    BCG.assign(w=BCG["year"] - 1930)[["study", "yi", "vi", "w"]].to_csv(path, index=False)
    assert main(["pool", str(path), "--weights", "w", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["estimate"] == pytest.approx(next(c for c in REF["weighted"] if c["method"] == "REML")["estimate"])
    assert main(["pool", str(path), "--weights", "nope"]) == 2
    assert "weights: no column 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("ci_method, key", [("wald", "dfbetas"), ("hksj", "dfbetas_knha")])
def test_dfbetas_match_influence(ci_method, key):
    fit = meta_regression(BCG["yi"], BCG["vi"], BCG["ablat"].to_numpy(float), names=["ablat"], method="REML",
                          ci_method=ci_method)
    dfb = fit.dfbetas()
    np.testing.assert_allclose(dfb["intercept"], REF[key]["intercept"], rtol=RTOL)
    np.testing.assert_allclose(dfb["ablat"], REF[key]["ablat"], rtol=RTOL)


def test_exact_moderator_permutation_test_matches_permutest():
    case = REF["permutation"]
    fit = meta_regression(case["yi"], case["vi"], case["x"], names=["ablat"], method="REML")
    out = fit.permutation_test()
    assert out["exact"] and out["n"] == 720
    np.testing.assert_allclose(out["p"], case["p"], rtol=1e-12)
    assert out["qm_p"] == pytest.approx(case["qm_p"], rel=1e-12)
    seeded = fit.permutation_test(n_permutations=200, exact=False, seed=4)
    assert seeded == fit.permutation_test(n_permutations=200, exact=False, seed=4) and seeded["n"] == 200
