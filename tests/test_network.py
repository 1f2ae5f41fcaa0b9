"""Network meta-analysis (pfps_meta.models.network, network_components) against committed fixtures:
metafor 3.8-1 rma.mv (validation/make_network_fixtures.R) and netmeta's DL figures via pimeta 1.1.0
(validation/network_dl_reference.py)."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pfps_meta.errors import InputError
from pfps_meta.models.network import RANKING_WARNING, network
from pfps_meta.models.network_components import component_network
from tests.conftest import ROOT

FIX = ROOT / "tests" / "fixtures" / "network"
SENN = pd.read_csv(ROOT / "data" / "examples" / "senn2013.csv")
SENN_R = json.loads((FIX / "senn2013.json").read_text())
SENN_DL = json.loads((FIX / "senn2013_netmeta_dl.json").read_text())
PFP_R = json.loads((FIX / "pfp_synthetic.json").read_text())
PFP = pd.read_csv(FIX / "pfp_synthetic_arms.csv")


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-12)


def versus_ref(res, fit=None):
    fit = fit or res.fit
    return {t: (fit.d[i], fit.se()[i]) for i, t in enumerate(res.treatments) if t != res.reference}


def check_against(res, ref, tol_beta=1e-6, tol_tau2=1e-5):
    got = versus_ref(res)
    for t, b in ref["beta"].items():
        assert rel(got[t][0], b) < tol_beta, t
        assert rel(got[t][1], ref["se"][t]) < tol_beta, t
    if ref["tau2"] > 0:
        assert rel(res.fit.tau2, ref["tau2"]) < tol_tau2
    else:
        assert res.fit.tau2 == 0
    assert rel(res.Q, ref["QE"]) < 1e-10 and res.df == ref["QEdf"]


# ------------------------------------------------------------------------------------------------ senn2013


def test_senn2013_common_effect_matches_metafor_example():
    res = network(SENN, measure="MD", reference="placebo", method="FE")
    check_against(res, SENN_R["fe"], tol_beta=1e-9)
    d = versus_ref(res)
    assert round(d["metformin"][0], 4) == -1.1140 and round(d["metformin"][1], 4) == 0.0596
    assert round(d["rosiglitazone"][0], 4) == -1.2019 and round(d["rosiglitazone"][1], 4) == 0.0477
    assert round(res.Q, 3) == 96.984 and res.df == 18
    assert rel(res.fit.loglik, SENN_R["fe"]["logLik"]) < 1e-10


def test_senn2013_reml_exact_multiarm_covariance_matches_metafor_example():
    res = network(SENN, measure="MD", reference="placebo", method="REML")
    check_against(res, SENN_R["reml"])
    assert round(res.tau2, 6) == 0.099915
    d = versus_ref(res)
    assert round(d["metformin"][0], 4) == -1.1284 and round(d["metformin"][1], 4) == 0.1494
    # vb of every pair
    keep = [res.treatments.index(t) for t in SENN_R["treatments"]]
    np.testing.assert_allclose(res.fit.cov[np.ix_(keep, keep)], np.array(SENN_R["reml"]["vb"]), rtol=1e-6, atol=1e-12)


def test_senn2013_ml_matches_metafor_with_loglik():
    res = network(SENN, measure="MD", reference="placebo", method="ML")
    check_against(res, SENN_R["ml"])
    assert rel(res.fit.loglik, SENN_R["ml"]["logLik"]) < 1e-9


def test_senn2013_netmeta_dersimonian_laird_via_pimeta():
    res = network(SENN, measure="MD", reference="placebo", method="DL")
    assert rel(res.tau2, SENN_DL["tau2"]) < 1e-10
    assert rel(res.I2, SENN_DL["I2"]) < 1e-10
    text = str(res)
    assert "tau^2 = 0.1087" in text and "I^2 = 81.4%" in text
    got = versus_ref(res)
    for t, v in SENN_DL["TE_random"].items():
        assert rel(got[t][0], v) < 1e-9 and rel(got[t][1], SENN_DL["seTE_random"][t]) < 1e-9
    got = versus_ref(res, res.common)
    for t, v in SENN_DL["TE_common"].items():
        assert rel(got[t][0], v) < 1e-9 and rel(got[t][1], SENN_DL["seTE_common"][t]) < 1e-9


def test_senn2013_decomp_design_matches_netmeta():
    res = network(SENN, measure="MD", reference="placebo", method="DL")
    dd = res.decomp_design()
    for key, name in (("total", "Total"), ("within", "Within designs"), ("between", "Between designs")):
        q, df, p = SENN_DL["Q_decomp"][name]
        assert rel(dd["common"][key]["Q"], q) < 1e-9 and dd["common"][key]["df"] == df
        assert rel(dd["common"][key]["pval"], p) < 1e-6
    assert rel(dd["random"]["tau2_within"], SENN_DL["tau_within"] ** 2) < 1e-9
    assert rel(dd["random"]["Q_between"], SENN_DL["Q_inc_random"]["Q"]) < 1e-8
    assert dd["common"]["total"]["Q"] == pytest.approx(dd["common"]["within"]["Q"] + dd["common"]["between"]["Q"])


def test_senn2013_pscores_closed_form_and_metafor_example():
    res = network(SENN, measure="MD", reference="placebo", method="REML")
    # metafor's ?dat.senn2013 P-scores (pnorm of every pairwise z, averaged): lower values good
    ps = res.pscores()
    for t, v in SENN_R["pscore_reml_metafor_example"].items():
        assert rel(ps[t], v) < 1e-8, t
    bad = res.pscores(small_values="bad")
    np.testing.assert_allclose(bad + ps, 1.0, rtol=1e-12)
    # the closed form from estimates and covariance, small values good
    d, C = res.fit.d, res.fit.cov
    T = len(d)
    for i, t in enumerate(res.treatments):
        terms = [stats.norm.cdf((d[j] - d[i]) / math.sqrt(C[i, i] + C[j, j] - 2 * C[i, j])) for j in range(T) if j != i]
        assert res.pscores()[t] == pytest.approx(np.mean(terms), rel=1e-12)
    # netmeta's P-scores (DL, small values good)
    dl = network(SENN, measure="MD", reference="placebo", method="DL").pscores()
    for t, v in SENN_DL["pscore_random_small_good"].items():
        assert rel(dl[t], v) < 1e-8
    assert abs(ps.sum() - T / 2) < 1e-10
    sucra = res.sucra(nsim=20000, seed=3)
    assert np.max(np.abs(sucra - ps)) < 0.02


def test_senn2013_netsplit_is_direct_pairwise_plus_back_calculation():
    res = network(SENN, measure="MD", reference="placebo", method="DL")
    ns = res.netsplit(model="random").set_index("comparison")
    con = res.contrasts
    multi = set(con.loc[con["study"].duplicated(keep=False), "study"])
    for comp, row in ns.iterrows():
        a, b = comp.split(":")
        # direct: inverse-variance pooling with vi + tau^2 (two-arm studies of exactly this pair)
        sel = (((con["treat"] == a) & (con["base"] == b)) | ((con["treat"] == b) & (con["base"] == a))) & \
            ~con["study"].isin(multi)
        if not sel.any() or row["k"] != sel.sum():
            continue
        sign = np.where(con.loc[sel, "treat"] == a, 1.0, -1.0)
        w = 1.0 / (con.loc[sel, "vi"].to_numpy() + res.tau2)
        direct = float(np.sum(w * sign * con.loc[sel, "yi"].to_numpy()) / w.sum())
        assert row["direct"] == pytest.approx(direct, rel=1e-10)
        assert row["direct_se"] == pytest.approx(1 / math.sqrt(w.sum()), rel=1e-10)
        key = comp if comp in SENN_DL["TE_direct_random"] else f"{b}:{a}"
        sgn = 1 if key == comp else -1
        assert row["direct"] == pytest.approx(sgn * SENN_DL["TE_direct_random"][key], rel=1e-9)
        if np.isfinite(row["indirect"]):
            # back-calculation: 1/v_net = 1/v_dir + 1/v_ind and d_net = weighted mean of direct and indirect
            vd, vi_, vn = row["direct_se"] ** 2, row["indirect_se"] ** 2, row["network_se"] ** 2
            assert 1 / vn == pytest.approx(1 / vd + 1 / vi_, rel=1e-9)
            assert row["network"] == pytest.approx((row["direct"] / vd + row["indirect"] / vi_) * vn, rel=1e-9)
            assert row["indirect"] == pytest.approx(sgn * SENN_DL["TE_indirect_random"][key], rel=1e-8)
            assert row["pval"] == pytest.approx(2 * stats.norm.sf(abs(row["difference"] / row["difference_se"])))


def test_senn2013_contrast_rows_all_pairs_and_var_shared_equal_arm_rows():
    arm = network(SENN, measure="MD", reference="placebo")
    rows, shared = [], []
    for s, g in SENN.groupby("study", sort=False):
        g = g.reset_index(drop=True)
        u = (g["sd"] ** 2 / g["n"]).to_numpy()
        for i in range(len(g)):
            for j in range(i + 1, len(g)):
                rows.append(dict(study=s, treat1=g.treatment[j], treat2=g.treatment[i], yi=g["mean"][j] - g["mean"][i],
                                 sei=math.sqrt(u[i] + u[j])))
        for j in range(1, len(g)):
            shared.append(dict(study=s, treat1=g.treatment[j], treat2=g.treatment[0], yi=g["mean"][j] - g["mean"][0],
                               sei=math.sqrt(u[0] + u[j]), vshared=u[0]))
    for data, extra in ((pd.DataFrame(rows), {}), (pd.DataFrame(shared), {"var_shared": "vshared"})):
        res = network(data, measure="MD", reference="placebo", **extra)
        assert res.tau2 == pytest.approx(arm.tau2, rel=1e-9)
        np.testing.assert_allclose(res.fit.d, arm.fit.d, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(res.fit.cov, arm.fit.cov, rtol=1e-8, atol=1e-14)


def test_senn2013_outputs_league_json_html_and_figures():
    res = network(SENN, measure="MD", reference="placebo")
    league = res.league_table()
    assert len(league) == 10 * 9
    ab = league.set_index(["treatment", "versus"])
    assert ab.loc[("metformin", "acarbose"), "estimate"] == pytest.approx(-ab.loc[("acarbose", "metformin"), "estimate"])
    square = res.league_table(long=False)
    assert square.shape == (10, 10) and square.loc["placebo", "placebo"] == "placebo"
    out = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert {"league", "pscores", "Q", "netsplit", "versus_reference"} <= set(out)
    assert out["Q"]["within_designs"]["df"] + out["Q"]["between_designs"]["df"] == out["Q"]["df"]
    assert all("pi_lb" in r for r in out["league"])
    text = str(res)
    assert RANKING_WARNING in text and "Between designs" in text
    assert "<table>" in res._repr_html_()
    from pfps_meta.present import network_plots

    for fig in (network_plots.network_graph(res), network_plots.forest_vs_reference(res, reference="metformin"),
                network_plots.league_figure(res)):
        assert fig.axes
        import matplotlib.pyplot as plt
        plt.close(fig)


# ------------------------------------------------------------------------------------------------ synthetic PFP


@pytest.mark.parametrize("method", ["REML", "ML", "FE"])
def test_pfp_synthetic_three_arm_network_matches_rma_mv(method):
    res = network(PFP, measure="MD", reference="none", method=method)
    check_against(res, PFP_R["network"][method])
    assert rel(res.fit.loglik, PFP_R["network"][method]["logLik"]) < 1e-8   # same baselines as the R script


@pytest.mark.parametrize("method", ["ML", "FE"])
def test_pfp_synthetic_additive_component_model_matches_rma_mv(method):
    net = network(PFP, measure="MD", reference="none", method=method)
    ref = PFP_R["components"]["fits"][method]
    for comp in (component_network(net, sep="+", inactive="none"),
                 component_network(net, components={"hip+knee": ["hip", "knee"]}, inactive="none")):
        for i, name in enumerate(comp.components):
            assert rel(comp.beta[i], ref["beta"][name]) < 1e-8
            assert rel(math.sqrt(comp.vb[i, i]), ref["se"][name]) < 1e-8
        assert rel(comp.Q_additive, ref["QE"]) < 1e-10 and comp.df_additive == ref["QEdf"]


def test_pfp_synthetic_additive_component_model_reml_matches_rma_mv():
    net = network(PFP, measure="MD", reference="none", method="REML")
    ref = PFP_R["components"]["fits"]["REML"]
    comp = component_network(net, sep="+", inactive="none")
    assert rel(comp.tau2, ref["tau2"]) < 1e-5
    fixed = component_network(net, sep="+", inactive="none", tau2=ref["tau2"])   # at metafor's tau^2
    for i, name in enumerate(fixed.components):
        assert rel(fixed.beta[i], ref["beta"][name]) < 1e-8
        assert rel(math.sqrt(fixed.vb[i, i]), ref["se"][name]) < 1e-8
    c = comp.comparison()
    assert c["df_diff"] == 1 and c["Q_diff"] == pytest.approx(ref["QE"] - PFP_R["network"]["FE"]["QE"], rel=1e-10)
    te = comp.treatment_effects().set_index("treatment")
    assert te.loc["hip+knee", "estimate"] == pytest.approx(comp.beta.sum(), rel=1e-12)
    json.dumps(comp.to_dict(), allow_nan=False)
    assert "Additive vs standard" in str(comp)


def test_pfp_two_treatment_subnetwork_t_and_hartung_knapp_match_rma_uni():
    ref = PFP_R["pairwise_knee_none"]
    sub = PFP[PFP["study"].isin(ref["studies"])]
    for ci, key in (("wald", "reml"), ("t", "t"), ("hk", "knha")):
        r = network(sub, measure="MD", reference="none", ci_method=ci).to_frame().iloc[0]
        assert rel(r["estimate"], ref[key]["beta"]) < 1e-6
        assert rel(r["se"], ref[key]["se"]) < 1e-6
        assert rel(r["ci_lb"], ref[key]["ci"][0]) < 1e-6 and rel(r["ci_ub"], ref[key]["ci"][1]) < 1e-6
        if key != "reml":      # metafor's z-based PI differs by design: ours is t(df), as metafor's test="t"
            assert rel(r["pi_lb"], ref[key]["pi"][0]) < 1e-6 and rel(r["pi_ub"], ref[key]["pi"][1]) < 1e-6
    dl = network(sub, measure="MD", reference="none", method="DL")
    assert rel(dl.tau2, ref["dl"]["tau2"]) < 1e-10 and rel(dl.Q, ref["dl"]["QE"]) < 1e-10


def test_pfp_fifty_treatments_five_hundred_studies_fit():
    rng = np.random.default_rng(7)
    rows = []
    for s in range(500):
        trts = [s, s + 1] if s < 49 else rng.choice(50, 3 if s % 10 == 0 else 2, replace=False)
        for t in trts:
            rows.append(dict(study=f"s{s}", treatment=f"t{int(t):02d}", n=int(rng.integers(20, 80)),
                             mean=rng.normal(), sd=1 + rng.random()))
    res = network(pd.DataFrame(rows), measure="MD")
    assert len(res.treatments) == 50 and res.n_studies == 500 and np.isfinite(res.tau2)


# ------------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("mutate, kwargs, message", [
    (lambda d: d[~d["study"].isin(["Trial 06", "Trial 08", "Trial 04"])].assign(
        treatment=lambda x: x["treatment"]).pipe(lambda x: pd.concat([x, pd.DataFrame(
            [dict(study="X", treatment="a", n=10, mean=1, sd=1), dict(study="X", treatment="b", n=10, mean=1, sd=1)])])),
     {}, "disconnected: 2 sub-networks"),
    (lambda d: d[~((d["study"] == "Trial 05") & (d["treatment"] == "knee"))], {}, "study 'Trial 05' has a single arm"),
    (lambda d: d, {"reference": "placebo"}, "reference 'placebo' is not in the network"),
    (lambda d: d, {"method": "PM"}, "method must be one of"),
    (lambda d: d, {"measure": "ROM"}, "measure must be one of"),
    (lambda d: d, {"ci_method": "knha"}, "ci_method must be one of"),
])
def test_pfp_bad_input_is_one_line(mutate, kwargs, message):
    args = dict(measure="MD", reference="none")
    args.update(kwargs)
    with pytest.raises(InputError) as err:
        network(mutate(PFP.copy()), **args)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_pfp_bad_contrasts_and_components():
    rows = pd.DataFrame([
        dict(study="A", treat1="knee", treat2="none", yi=-1.0, sei=0.3),
        dict(study="A", treat1="hip", treat2="none", yi=-0.8, sei=0.3),
        dict(study="A", treat1="hip", treat2="knee", yi=0.2, sei=0.9),      # 0.09 + 0.09 != 0.81 - ...
        dict(study="B", treat1="knee", treat2="none", yi=-1.2, sei=0.4),
    ])
    with pytest.raises(InputError, match="cannot come from one set of arms"):
        network(rows)
    rows.loc[2, ["yi", "sei"]] = [0.5, math.sqrt(0.18)]
    with pytest.raises(InputError, match="effects are inconsistent") as err:
        network(rows)
    assert err.value.row == 3 and err.value.column == "yi"
    net = network(PFP, measure="MD", reference="none")
    with pytest.raises(InputError, match="names treatment 'walking'"):
        component_network(net, components={"walking": ["hip"]}, inactive="none")
    with pytest.raises(InputError, match="inactive treatment 'placebo'"):
        component_network(net, sep="+", inactive="placebo")
    with pytest.raises(InputError, match="not identifiable"):
        component_network(net, components={t: ["a", "b"] for t in ("hip", "knee", "hip+knee")}, inactive="none")
