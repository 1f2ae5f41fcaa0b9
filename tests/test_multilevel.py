"""pfps_meta.models.multilevel against metafor 3.8-1 rma.mv (fixtures: validation/make_multilevel_fixtures.R,
tight control). Tolerances: fixed effects and SEs 1e-6 relative, variance components and profile CI
bounds 1e-5. Where metafor's own optimum is looser (its two optimisers disagree by more than 1e-6, recorded
in each fixture as ``optimizer_disagreement``), the tolerance is widened to 20x that disagreement and
our (restricted) log-likelihood must be at least metafor's: the optimum we report is at least as good.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pfps_meta.errors import ConvergenceWarning, InputError
from pfps_meta.models import multilevel_fit as mf
from pfps_meta.models.blocks import BlockDiagonal
from pfps_meta.models.multilevel import multilevel, multivariate

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures" / "multilevel"
DATA = ROOT / "data" / "examples"


def fixture(name):
    return json.loads((FIX / f"{name}.json").read_text())


def assert_rel(ours, ref, tol, what, scale=None):
    """Relative error; ``scale`` (e.g. the SE for a CI bound near 0) replaces |ref| where larger."""
    ours = np.atleast_1d(np.asarray(ours, dtype=float)).ravel()
    ref = np.atleast_1d(np.asarray(ref, dtype=float)).ravel()
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} vs {ref.shape}"
    den = np.maximum(np.abs(ref), 1e-8)
    if scale is not None:
        den = np.maximum(den, np.atleast_1d(np.asarray(scale, dtype=float)).ravel())
    err = np.abs(ours - ref) / den
    assert np.all(err <= tol), f"{what}: max relative error {err.max():.2e} > {tol:.0e} ({ours} vs {ref})"


def vc_ref(res, ref):
    parts = [np.atleast_1d(ref["sigma2"]) if len(res.sigma2) else np.zeros(0)]
    if res.struct:
        parts.append(np.atleast_1d(ref["tau2"]))
        if len(res.rho):
            parts.append(np.atleast_1d(ref["rho"]))
    return np.concatenate([np.asarray(p, dtype=float) for p in parts])


def check_fit(res, ref, fe_tol=1e-6, vc_tol=1e-5):
    """Every number of the fit against metafor's."""
    d = ref.get("optimizer_disagreement") or 0.0
    if d > 1e-6:
        fe_tol, vc_tol = max(fe_tol, 20 * d), max(vc_tol, 20 * d)
    assert res.converged
    assert res.logLik >= ref["logLik"] - 1e-9, "our optimum is worse than metafor's"
    assert res.k == ref["k"] and res.p == ref["p"] and res.parms == ref["parms"]
    assert_rel(res.estimate, ref["beta"], fe_tol * 10, "estimate")
    assert_rel(res.se, ref["se"], fe_tol, "se")
    assert_rel(res.vcov, ref["vb"], fe_tol * 2, "vcov")
    assert_rel(res.stat, ref["zval"], fe_tol, "z/t", scale=1.0)
    assert_rel(res.pval, ref["pval"], max(fe_tol, 1e-6) * 10, "p")
    assert_rel(res.ci_lb, ref["ci_lb"], fe_tol, "ci.lb", scale=ref["se"])
    assert_rel(res.ci_ub, ref["ci_ub"], fe_tol, "ci.ub", scale=ref["se"])
    assert_rel(res.estimate, ref["beta"], fe_tol, "estimate", scale=ref["se"])
    assert_rel(np.concatenate([res.sigma2, res.tau2, res.rho]), vc_ref(res, ref), vc_tol, "variance components")
    assert_rel(res.QE, ref["QE"], 1e-9, "QE")
    assert_rel(res.QEp, ref["QEp"], 1e-6, "QEp")
    assert_rel(res.QM, ref["QM"], fe_tol * 2, "QM")
    assert_rel(res.QMp, ref["QMp"], fe_tol * 10, "QMp")
    for m in ("ML", "REML"):
        ours = [res.fit_stats[m][s] for s in ("logLik", "deviance", "AIC", "BIC", "AICc")]
        assert_rel(ours, ref["fit_stats"][m], max(vc_tol, 1e-5), f"fit statistics ({m})")
    if res.sigma2_names:
        assert res.sigma2_names == list(np.atleast_1d(ref["s_names"]))
        assert res.sigma2_nlevels == list(np.atleast_1d(ref["s_nlevels"]))
    if ref["test"] == "t":
        assert res.ddf == ref["ddf"][0] if isinstance(ref["ddf"], list) else ref["ddf"]


def check_confint(res, ref, tol=1e-5):
    """Profile-likelihood CIs; a bound metafor marks '<'/'>' (its search stopped at the edge of the range
    it could refit) is a limit: ours must lie beyond it and the profile at ours must drop by the critical
    value."""
    ci = res.confint()
    entries = ref["confint"].values() if isinstance(ref["confint"], dict) else ref["confint"]
    for entry in entries:
        names = np.atleast_1d(entry["names"]).tolist()
        for j, name in enumerate(names):
            def pick(x):
                return np.atleast_1d(x)[j]
            lb, ub = float(pick(entry["ci_lb"])), float(pick(entry["ci_ub"]))
            row = ci.loc[name]
            if entry.get("lb_sign", "") == "":
                assert_rel(row.ci_lb, lb, tol, f"{name} ci.lb")
            else:
                assert row.ci_lb <= lb + 1e-8
            if entry.get("ub_sign", "") == "":
                assert_rel(row.ci_ub, ub, tol, f"{name} ci.ub")
            else:
                assert row.ci_ub >= ub - 1e-8


def check_ranef(res, ref, tol=1e-5):
    ours = res.ranef()
    for key, r in ref["ranef"].items():
        name = key.lstrip("~").replace(" ", "") if "|" in key else key
        match = [k for k in ours if k.replace(" ", "") == name]
        assert match, f"ranef level {key} missing ({list(ours)})"
        df = ours[match[0]]
        assert list(df.index) == list(r["labels"])
        # BLUPs near zero: absolute tolerance on the scale of their SEs
        scale = np.maximum(np.abs(r["pred"]), np.median(r["se"]))
        assert np.max(np.abs(df["pred"].to_numpy() - r["pred"]) / scale) < tol
        assert_rel(df["se"], r["se"], tol, f"ranef {key} se")
        assert np.max(np.abs(df["pi_lb"].to_numpy() - r["pi_lb"]) / np.abs(np.asarray(r["pi_lb"])).max()) < tol


def check_predict(res, ref, tau2_level=None, tol=1e-6):
    pr = ref["predict"]
    out = res.predict(pr["newmods"], tau2_level=tau2_level)
    for col, key in (("pred", "pred"), ("se", "se"), ("ci_lb", "ci_lb"), ("ci_ub", "ci_ub"),
                     ("pi_lb", "pi_lb"), ("pi_ub", "pi_ub")):
        assert_rel(out[col], pr[key], tol, f"predict {col}", scale=pr["se"])


# ------------------------------------------------------------------------------------------ data
@pytest.fixture(scope="module")
def konst():
    d = pd.read_csv(DATA / "konstantopoulos2011.csv")
    d["year_c"] = d["year"] - d["year"].mean()
    return d


def blocks_from(fx, data, column):
    labels = fx["V_labels"] if "V_labels" in fx else sorted(fx["V_blocks"], key=float)
    keys = data[column].astype(str).to_numpy()
    index, blocks = [], []
    for lab in labels:
        idx = np.flatnonzero(keys == str(lab))
        index.append(idx)
        blocks.append(np.asarray(fx["V_blocks"][str(lab)], dtype=float).reshape(idx.size, idx.size))
    return BlockDiagonal(tuple(index), tuple(blocks), tuple(labels))


@pytest.fixture(scope="module")
def assink():
    fx = fixture("assink2016")
    d = pd.read_csv(DATA / "assink2016.csv")
    return d, blocks_from(fx, d, "study"), fx


@pytest.fixture(scope="module")
def berkey():
    fx = fixture("berkey1998")
    d = pd.read_csv(DATA / "berkey1998.csv")
    return d, blocks_from(fx, d, "trial"), fx


@pytest.fixture(scope="module")
def ishak():
    """metafor's ?dat.ishak2007 example: wide -> long (drop missing time points), V from
    vcalc(vi, cluster = study, time1 = time, phi = 0.97), exported as per-study blocks."""
    fx = fixture("ishak2007")
    wide = pd.read_csv(DATA / "ishak2007.csv")
    rows = []
    for _, r in wide.iterrows():
        for t in range(1, 5):
            if not pd.isna(r[f"y{t}i"]):
                rows.append({"study": r["study"], "time": t, "yi": r[f"y{t}i"], "vi": r[f"v{t}i"]})
    long = pd.DataFrame(rows).sort_values(["study", "time"], kind="stable").reset_index(drop=True)
    assert long["study"].tolist() == fx["long"]["study"]
    assert np.allclose(long["yi"], fx["long"]["yi"]) and np.allclose(long["vi"], fx["long"]["vi"])
    return long, blocks_from(fx, long, "study"), fx


# ------------------------------------------------------------------------------------------ konstantopoulos2011
def test_konstantopoulos2011_three_level_reml(konst):
    ref = fixture("konstantopoulos2011")["reml"]
    res = multilevel(konst, levels=("district", "study"))
    check_fit(res, ref)
    assert abs(res.estimate[0] - 0.184713) < 5e-7 and abs(res.se[0] - 0.084556) < 5e-7
    assert np.allclose(res.sigma2, [0.065062, 0.032737], atol=5e-7)
    check_confint(res, ref)
    check_ranef(res, ref)
    check_predict(res, ref)
    i2 = res.i2()
    assert_rel([i2["district"], i2["district/study"]], ref["i2"], 1e-5, "I2 per level")
    assert_rel(i2["total"], ref["i2_total"], 1e-5, "I2 total")
    assert res.n_clusters == 11


def test_konstantopoulos2011_three_level_ml(konst):
    ref = fixture("konstantopoulos2011")["ml"]
    res = multilevel(konst, method="ML")
    check_fit(res, ref)
    check_confint(res, ref)
    check_ranef(res, ref)
    check_predict(res, ref)
    # metafor's testthat expectations (Table 5 of Konstantopoulos 2011), at their printed precision
    assert abs(res.estimate[0] - 0.1845) < 5e-5 and abs(res.se[0] - 0.0805) < 5e-5
    assert np.allclose(res.sigma2, [0.0577, 0.0329], atol=5e-5)


def test_konstantopoulos2011_three_level_t_test(konst):
    ref = fixture("konstantopoulos2011")["reml_t"]
    res = multilevel(konst, test="t")
    check_fit(res, ref)
    assert res.ddf == 55
    check_ranef(res, ref)
    check_predict(res, ref)


@pytest.mark.parametrize("case,mods,method", [("reml_year_c", ["year_c"], "REML"),
                                               ("ml_year_c", ["year_c"], "ML"),
                                               ("reml_year", ["year"], "REML")])
def test_konstantopoulos2011_three_level_year_moderator(konst, case, mods, method):
    ref = fixture("konstantopoulos2011")[case]
    res = multilevel(konst, mods=mods, method=method)
    check_fit(res, ref)
    if "predict" in ref:
        # uncentred year (1970, 1985): x' vcov x cancels about 4 digits, so 1e-5 there
        check_predict(res, ref, tol=1e-5 if case == "reml_year" else 1e-6)
    if "i2" in ref:
        i2 = res.i2()
        assert_rel([i2["district"], i2["district/study"]], ref["i2"], 1e-5, "I2")


def test_konstantopoulos2011_two_level_study(konst):
    ref = fixture("konstantopoulos2011")["reml_study"]
    res = multilevel(konst, levels="study")
    check_fit(res, ref)
    check_confint(res, ref)
    assert abs(res.sigma2[0] - 0.0884) < 5e-5      # metafor's test: Table 4


def test_konstantopoulos2011_multivariate_parameterisation_cs(konst):
    """metafor's test: random = ~ factor(study) | district, struct CS is the three-level model
    (tau2 = sum of the sigma2, rho = the ICC) with the same log-likelihood."""
    ref = fixture("konstantopoulos2011")["cs_study_in_district"]
    res = multivariate(konst, inner="study", outer="district", struct="CS")
    check_fit(res, ref)
    check_confint(res, ref)
    ml = multilevel(konst)
    assert abs(res.logLik - ml.logLik) < 1e-8
    assert abs(res.tau2[0] - ml.sigma2.sum()) < 1e-6
    assert abs(res.rho[0] - ml.sigma2[0] / ml.sigma2.sum()) < 1e-6


def test_konstantopoulos2011_district_intercept_plus_diag_per_district(konst):
    """metafor's test 'different tau^2 per district': random = list(~ 1 | district,
    ~ factor(district) | study), struct DIAG, both kinds of terms together. metafor's nlminb fails here
    and its optim stops early (several tau2 on the boundary), so its optimum is loose: ours must be at
    least as high, and the estimates agree to metafor's printed precision (its testthat values)."""
    ref = fixture("konstantopoulos2011")["district_plus_diag"]
    res = multivariate(konst, inner="district", outer="study", struct="DIAG", levels=("district",))
    assert res.converged and res.logLik >= ref["logLik"] - 1e-9
    assert res.sigma2_names == ["district"] and len(res.tau2) == 11
    assert abs(res.estimate[0] - 0.1270) < 5e-5 and abs(res.se[0] - 0.0588) < 5e-5
    assert np.allclose(res.tau2, [0.0000, 0.0402, 0.0000, 0.0582, 0.0082, 0.0000, 0.5380, 0.0008, 0.0606,
                                  0.1803, 0.0000], atol=5e-5)
    assert res.tau2_k_levels == [4, 4, 3, 4, 4, 11, 3, 8, 6, 5, 4]
    assert_rel(res.estimate, ref["beta"], 1e-4, "estimate")


def test_konstantopoulos2011_robust_cr2_through_result(konst):
    """``.robust()`` hands the marginal blocks to cluster_robust: clubSandwich CR2 for the same fit."""
    ref = json.loads((ROOT / "tests" / "fixtures" / "robust" / "konstantopoulos2011_three_level.json").read_text())
    res = multilevel(konst)
    rob = res.robust("district", "CR2")
    assert_rel(rob.se, ref["CR2"]["se"], 1e-6, "CR2 se")
    assert_rel(rob.df, ref["CR2"]["df"], 1e-5, "CR2 df")


# ------------------------------------------------------------------------------------------ assink2016
def test_assink2016_three_level_with_vcalc_v(assink):
    d, V, fx = assink
    res = multilevel(d, V=V, levels=("study", "esid"))
    check_fit(res, fx["reml"])
    assert abs(res.estimate[0] - 0.367755) < 5e-7
    check_confint(res, fx["reml"])
    check_ranef(res, fx["reml"])
    check_predict(res, fx["reml"])
    i2 = res.i2()
    assert_rel([i2["study"], i2["study/esid"]], fx["reml"]["i2"], 1e-5, "I2")


def test_assink2016_three_level_ml(assink):
    d, V, fx = assink
    check_fit(multilevel(d, V=V, levels=("study", "esid"), method="ML"), fx["ml"])


def test_assink2016_deltype_moderator_t(assink):
    d, V, fx = assink
    res = multilevel(d, V=V, levels=("study", "esid"), mods=["C(deltype)"], test="t")
    check_fit(res, fx["reml_deltype"])
    assert res.QM_df == (2, res.k - 3)


# ------------------------------------------------------------------------------------------ berkey1998
@pytest.mark.parametrize("struct", ["UN", "CS", "HCS", "DIAG", "ID"])
def test_berkey1998_multivariate_reml(berkey, struct):
    d, V, fx = berkey
    ref = fx[f"reml_{struct}"]
    res = multivariate(d, V=V, inner="outcome", outer="trial", struct=struct, mods=["C(outcome)"],
                       intercept=False)
    assert res.names == ["outcome[AL]", "outcome[PD]"]
    check_fit(res, ref)
    if struct == "UN":
        assert abs(res.estimate[0] + 0.339215) < 5e-7 and abs(res.estimate[1] - 0.353428) < 5e-7
        check_ranef(res, ref)
    if "confint" in ref:
        check_confint(res, ref)


def test_berkey1998_multivariate_ml_un(berkey):
    d, V, fx = berkey
    res = multivariate(d, V=V, struct="UN", mods=["C(outcome)"], intercept=False, method="ML")
    check_fit(res, fx["ml_UN"])
    # metafor's testthat expectations at their printed precision
    assert np.allclose(res.estimate, [-0.3379, 0.3448], atol=5e-5)
    assert np.allclose(res.tau2, [0.0261, 0.0070], atol=5e-5) and abs(res.rho[0] - 0.6992) < 5e-5
    cs = multivariate(d, V=V, struct="CS", mods=["C(outcome)"], intercept=False, method="ML")
    check_fit(cs, fx["ml_CS"])


def test_berkey1998_multivariate_meta_regression_ml(berkey):
    d, V, fx = berkey
    al = (d["outcome"] == "AL").to_numpy(float)
    yr = d["year"].to_numpy(float) - 1983
    X = np.column_stack([al, 1 - al, al * yr, (1 - al) * yr])
    res = multivariate(d, V=V, struct="UN", mods=(X, ["AL", "PD", "AL:year", "PD:year"]), intercept=False,
                       method="ML")
    check_fit(res, fx["ml_UN_year"])
    assert np.allclose(res.estimate, [-0.3351, 0.3479, -0.0108, 0.0010], atol=5e-5)   # Table II


# ------------------------------------------------------------------------------------------ ishak2007
@pytest.mark.parametrize("struct", ["HAR", "AR", "HCS", "CAR"])
def test_ishak2007_longitudinal(ishak, struct):
    long, V, fx = ishak
    ref = fx[f"reml_{struct}"]
    res = multivariate(long, V=V, inner="time", outer="study", struct=struct, mods=["C(time)"],
                       intercept=False)
    check_fit(res, ref)
    if struct == "HAR":
        assert np.allclose(res.estimate, [-25.9047, -27.4608, -28.6559, -26.4934], atol=5e-5)
        assert np.allclose(res.tau2, [22.7258, 33.7295, 26.1426, 31.1803], atol=5e-5)
        assert abs(res.rho[0] - 0.8832) < 5e-5
        check_ranef(res, ref)
    if "confint" in ref and struct != "HAR":   # HAR's 9 profiles: checked by the R script's case, slow here
        check_confint(res, ref)
    if "predict" in ref:
        check_predict(res, ref)


@pytest.mark.parametrize("case,struct", [("diag_DIAG", "DIAG"), ("diag_ID", "ID"), ("diag_HAR", "HAR")])
def test_ishak2007_independent_sampling_errors(ishak, case, struct):
    long = ishak[0]
    res = multivariate(long, inner="time", outer="study", struct=struct, mods=["C(time)"], intercept=False)
    check_fit(res, ishak[2][case])


def test_ishak2007_random_study_effects(ishak):
    long = ishak[0]
    res = multilevel(long, levels="study", mods=["C(time)"], intercept=False)
    check_fit(res, ishak[2]["diag_study"])
    assert abs(res.sigma2[0] - 26.6829) < 1e-4   # Ishak et al. 2007 Table 1, metafor's test (4 decimals)


# ------------------------------------------------------------------------------------------ engine
def _random_problem(seed=3):
    rng = np.random.default_rng(seed)
    sizes = [1, 2, 3, 3, 4, 2, 5, 1, 2, 3]
    rows = []
    for c, m in enumerate(sizes):
        for j in range(m):
            rows.append({"study": f"s{c}", "esid": j, "time": j + 1, "x": rng.normal(),
                         "yi": rng.normal(0.3, 0.5), "vi": rng.uniform(0.02, 0.2)})
    d = pd.DataFrame(rows)
    blocks, index = [], []
    for c in range(len(sizes)):
        idx = np.flatnonzero(d["study"] == f"s{c}")
        s = np.sqrt(d["vi"].to_numpy()[idx])
        R = np.full((idx.size, idx.size), 0.4)
        np.fill_diagonal(R, 1)
        blocks.append(R * np.outer(s, s))
        index.append(idx)
    return d, BlockDiagonal(tuple(index), tuple(blocks), tuple(f"s{c}" for c in range(len(sizes))))


def test_block_likelihood_equals_the_dense_formula():
    """The batched block evaluation equals metafor's dense formulas on a problem with blocks of
    sizes 1 to 5 (REML and ML), and the analytic score equals a central difference."""
    d, V = _random_problem()
    res = multivariate(d, V=V, inner="time", outer="study", struct="HAR", mods=["x"])
    nat = np.array([0.3, 0.1, 0.05, 0.2, 0.15, 0.4])
    for method in ("REML", "ML"):
        eng = mf.Engine(res.y, res.X, V, res._engine.spec, method)
        out = eng.evaluate(nat)
        Vd = V.to_dense()
        G = eng.g_matrix(nat)
        ic, oc = eng.spec.inner_codes, eng.spec.outer_codes
        M = Vd + G[np.ix_(ic, ic)] * (oc[:, None] == oc[None, :])
        W = np.linalg.inv(M)
        X, y = eng.X, eng.y
        b = np.linalg.solve(X.T @ W @ X, X.T @ W @ y)
        r = y - X @ b
        k, p = X.shape
        ll_ml = -k / 2 * math.log(2 * math.pi) - np.linalg.slogdet(M)[1] / 2 - r @ W @ r / 2
        ll_reml = (-(k - p) / 2 * math.log(2 * math.pi) + np.linalg.slogdet(X.T @ X)[1] / 2
                   - np.linalg.slogdet(M)[1] / 2 - np.linalg.slogdet(X.T @ W @ X)[1] / 2 - r @ W @ r / 2)
        assert abs(out["ll_ML"] - ll_ml) < 1e-10 and abs(out["ll_REML"] - ll_reml) < 1e-10
        assert np.allclose(out["beta"], b, rtol=1e-10)
        free = np.ones(nat.size, dtype=bool)
        th = mf.to_theta(nat, eng.kinds)
        f0, g0 = eng.loglik_and_grad(th, free, nat)
        h = 1e-6
        num = [(eng.loglik_and_grad(th + h * e, free, nat)[0] - eng.loglik_and_grad(th - h * e, free, nat)[0])
               / (2 * h) for e in np.eye(th.size)]
        assert np.allclose(g0, num, rtol=1e-5, atol=1e-7)


def test_marginal_blocks_reassemble_the_marginal_covariance(konst):
    res = multilevel(konst)
    M = res.marginal_blocks()
    assert M.n == res.k and len(M.blocks) == 11
    dense = M.to_dense()
    s = res.sigma2
    dist = konst["district"].to_numpy()
    expect = np.diag(konst["vi"].to_numpy()) + s[0] * (dist[:, None] == dist[None, :]) + s[1] * np.eye(res.k)
    assert np.allclose(dense, expect, rtol=1e-12, atol=1e-15)
    assert res.cluster_labels("district").tolist() == [str(v) for v in dist]


def test_konstantopoulos2011_text_dict_and_frame(konst):
    res = multilevel(konst, mods=["year_c"], test="t")
    text = str(res)
    assert "sigma^2.1" in text and "district/study" in text and "QE(df = 54)" in text and "tval" in text
    assert "F(df1 = 1, df2 = 54)" in text
    assert repr(res).startswith("<MultilevelResult REML k=56")
    frame = res.to_frame()
    assert list(frame.columns) == ["estimate", "se", "tval", "df", "pval", "ci_lb", "ci_ub"]
    out = res.to_dict()
    json.dumps(out, allow_nan=False)
    assert out["settings"] == {"method": "REML", "test": "t", "level": 0.95, "struct": None,
                               "levels": ["district", "district/study"], "inner": None, "outer": None}
    assert [c["component"] for c in out["variance_components"]["profile_ci"]][:2] == ["sigma^2.1", "sigma.1"]
    assert "<pre>" in res._repr_html_()


def test_berkey1998_struct_block_printed(berkey):
    d, V, _ = berkey
    text = str(multivariate(d, V=V, struct="UN", mods=["C(outcome)"], intercept=False))
    assert "outer factor: trial (nlvls = 5)" in text and "rho.AL" in text and "tau^2.2" in text


# ------------------------------------------------------------------------------------------ bad input
def test_missing_cluster_id_names_row_and_column(konst):
    bad = konst.copy()
    bad["district"] = bad["district"].astype(object)
    bad.loc[4, "district"] = None
    with pytest.raises(InputError) as e:
        multilevel(bad)
    assert e.value.row == 5 and e.value.column == "district"


def test_v_not_positive_definite_names_cluster(berkey):
    d, V, _ = berkey
    blocks = list(V.blocks)
    blocks[2] = np.array([[0.01, 0.05], [0.05, 0.01]])
    with pytest.raises(InputError, match="cluster '3'"):
        multivariate(d, V=BlockDiagonal(V.index, tuple(blocks), V.labels), struct="UN",
                     mods=["C(outcome)"], intercept=False)


def test_ar_with_text_time_names_the_column(berkey):
    d = berkey[0]
    with pytest.raises(InputError) as e:
        multivariate(d, V=berkey[1], inner="outcome", outer="trial", struct="AR")
    assert e.value.column == "outcome"


@pytest.mark.parametrize("kwargs,word", [({"struct": "XYZ"}, "struct"), ({"method": "DL"}, "method"),
                                         ({"test": "knha"}, "test"), ({"level": "high"}, "level")])
def test_unknown_options_name_the_argument(berkey, kwargs, word):
    d, V, _ = berkey
    with pytest.raises(InputError, match=word):
        multivariate(d, V=V, mods=["C(outcome)"], intercept=False, **{"struct": "UN", **kwargs})


def test_non_finite_effect_names_row(konst):
    bad = konst.copy()
    bad.loc[2, "yi"] = np.inf
    with pytest.raises(InputError) as e:
        multilevel(bad)
    assert e.value.row == 3 and e.value.column == "yi"


def test_more_parameters_than_the_data_identify():
    d = pd.DataFrame({"trial": [1, 1, 2, 2], "outcome": ["a", "b", "a", "b"], "yi": [0.1, 0.2, 0.3, 0.1],
                      "vi": [0.01] * 4})
    with pytest.raises(InputError, match="identify"):
        multivariate(d, struct="UN", mods=["C(outcome)"], intercept=False)


def test_non_convergence_is_reported(konst, monkeypatch):
    """A fit the optimiser leaves unfinished carries converged=False and a ConvergenceWarning with the
    optimiser's last state."""
    real = mf.maximise

    def short(engine, start, free=None, fixed=None, polish=True, maxfun=5000):
        st = real(engine, start, free, fixed, polish=False, maxfun=maxfun)
        st.converged = False
        st.message = "stopped: test"
        return st

    monkeypatch.setattr(mf, "maximise", short)
    with pytest.warns(ConvergenceWarning, match="stopped: test"):
        res = multilevel(konst)
    assert res.converged is False
    assert "did not converge" in str(res)


def test_single_effect_clusters_allowed(konst):
    """A level with one effect per cluster (district/study here) is allowed; a factor with a single
    cluster is not identified."""
    res = multilevel(konst.assign(one="x"), levels=("district", "study"))
    assert res.sigma2_nlevels == [11, 56]
    with pytest.raises(InputError, match="single cluster"):
        multilevel(konst.assign(one="x"), levels=("one", "study"))
