"""V for dependent effects (metafor's vcalc) and the exact covariance of contrasts sharing an arm.

References are the committed fixtures in tests/fixtures/vcalc/, written by
validation/make_vcalc_fixtures.R (metafor 3.8-1).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pfps_meta.effects.sizes import hedges_correction
from pfps_meta.errors import InputError
from pfps_meta.models.blocks import BlockDiagonal
from pfps_meta.models.vcalc import contrast_covariance, contrasts_from_arms, shared_arm_covariance, vcalc

FIX = Path(__file__).parent / "fixtures" / "vcalc"
RTOL = 1e-10


def load(name):
    return json.loads((FIX / f"{name}.json").read_text())


def frame(case):
    return pd.DataFrame(case["data"])


def rho_frame(case):
    m = case["rho_matrix"]
    return pd.DataFrame(np.array(m["values"], dtype=float), index=m["labels"], columns=m["labels"])


def max_rel(blocks_ref, V: BlockDiagonal):
    """Largest relative error over every entry (entries that are 0 in R must be 0 here)."""
    assert len(blocks_ref) == len(V.blocks)
    worst = 0.0
    for ref, got in zip(blocks_ref, V.blocks):
        ref = np.array(ref, dtype=float)
        assert ref.shape == got.shape
        zero = ref == 0
        assert np.all(np.abs(got[zero]) < 1e-15)
        if (~zero).any():
            worst = max(worst, float(np.max(np.abs(got[~zero] - ref[~zero]) / np.abs(ref[~zero]))))
    return worst


def check_properties(V: BlockDiagonal, vi):
    """Every block symmetric positive definite, the diagonal the sampling variances."""
    np.testing.assert_array_equal(V.diagonal(), np.asarray(vi, dtype=float))
    for b in V.blocks:
        np.testing.assert_array_equal(b, b.T)
        assert np.linalg.eigvalsh(b)[0] > 0


# ------------------------------------------------------------------------------ metafor's vcalc


def test_assink2016_vcalc_obs_rho06():
    case = load("assink2016_obs")
    df = frame(case)
    V = vcalc(df, vi="vi", cluster="study", obs="esid", rho=0.6)
    assert V.labels == tuple(pd.unique(df["study"]))
    assert max_rel(case["blocks"], V) < RTOL
    check_properties(V, df["vi"])
    # a within-study off-diagonal is rho * sqrt(vi vj)
    b = V.blocks[0]
    assert b[0, 1] == pytest.approx(0.6 * np.sqrt(df.vi[0] * df.vi[1]), rel=1e-14)


def test_assink2016_vcalc_type_and_obs_rho07_05():
    case = load("assink2016_type_obs")
    df = frame(case)
    V = vcalc(df, vi="vi", cluster="study", type="deltype", obs="esid", rho=(0.7, 0.5))
    assert max_rel(case["blocks"], V) < RTOL
    check_properties(V, df["vi"])


def test_ishak2007_vcalc_ar1_phi097():
    case = load("ishak2007_ar1")
    df = frame(case)
    V = vcalc(df, vi="vi", cluster="study", time="time", phi=0.97)
    assert max_rel(case["blocks"], V) < RTOL
    check_properties(V, df["vi"])
    # correlation phi^|t_i - t_j| in a study measured at all four occasions
    full = next(b for b in V.blocks if b.shape == (4, 4))
    corr = full / np.sqrt(np.outer(np.diag(full), np.diag(full)))
    assert corr[0, 3] == pytest.approx(0.97 ** 3, rel=1e-13)


def test_kalaian1996_vcalc_type_rho066():
    case = load("kalaian1996_type")
    df = frame(case)
    V = vcalc(df, vi="vi", cluster="study", type="outcome", rho=0.66)
    assert max_rel(case["blocks"], V) < RTOL


def test_knapp2017_vcalc_shared_groups_and_rho_matrix():
    case = load("knapp2017_grp_obs_matrix")
    df = frame(case)
    V = vcalc(df, vi="vi", cluster="study", grp1="group1", grp2="group2", w1="n_sz", w2="n_hc",
              obs="task_diff", rho=rho_frame(case))
    assert max_rel(case["blocks"], V) < RTOL
    assert case["not_pd"] == []
    check_properties(V, df["vi"])


def test_knapp2017_vcalc_shared_control_weights():
    case = load("knapp2017_grp")
    df = frame(case)
    # rows comparing the same two groups on another task are perfectly correlated without obs/rho:
    # metafor warns for the same eight studies
    with pytest.raises(InputError) as err:
        vcalc(df, vi="vi", cluster="study", grp1="group1", grp2="group2", w1="n_sz", w2="n_hc")
    assert f"in {len(case['not_pd'])} cluster(s): " + ", ".join(f"'{c}'" for c in case["not_pd"]) in str(err.value)
    V = vcalc(df, vi="vi", cluster="study", grp1="group1", grp2="group2", w1="n_sz", w2="n_hc", checkpd=False)
    assert max_rel(case["blocks"], V) < RTOL
    # study 3: several SZ groups against one HC group, correlation (1/n_hc)/sqrt((1/n1+1/n_hc)(1/n2+1/n_hc))
    rows = df.index[df.study == 3]
    b = V.blocks[V.labels.index(3)]
    n1, n2, nc = df.n_sz[rows[0]], df.n_sz[rows[1]], df.n_hc[rows[0]]
    r = (1 / nc) / np.sqrt((1 / n1 + 1 / nc) * (1 / n2 + 1 / nc))
    assert b[0, 1] / np.sqrt(b[0, 0] * b[1, 1]) == pytest.approx(r, rel=1e-13)


def test_vcalc_type_and_time_rho_times_phi_power():
    case = load("synthetic_type_time")
    df = frame(case)
    # without the subgroup, s3's men and women at one time and outcome are perfectly correlated
    assert case["not_pd"] in ("s3", ["s3"])
    with pytest.raises(InputError, match="in 1 cluster\\(s\\): 's3'"):
        vcalc(df, vi="vi", cluster="study", type="outcome", time="time", phi=0.8, rho=0.5)
    V = vcalc(df, vi="vi", cluster="study", type="outcome", time="time", phi=0.8, rho=0.5, checkpd=False)
    assert max_rel(case["blocks"], V) < RTOL
    b = V.blocks[0]          # s1: pain at 0, 1.5, 4 then function at 0, 1.5, 4
    corr = b / np.sqrt(np.outer(np.diag(b), np.diag(b)))
    assert corr[0, 5] == pytest.approx(0.5 * 0.8 ** 4, rel=1e-13)
    assert corr[1, 2] == pytest.approx(0.8 ** 2.5, rel=1e-13)


def test_vcalc_subgroups_are_independent_within_a_cluster():
    case = load("synthetic_subgroup")
    df = frame(case)
    V = vcalc(df, vi="vi", cluster="study", subgroup="sub", type="outcome", time="time", phi=0.8, rho=0.5)
    assert max_rel(case["blocks"], V) < RTOL
    assert len(V.blocks) == 3 and V.blocks[2].shape == (8, 8)
    assert np.all(V.blocks[2][:4, 4:] == 0)


def test_vcalc_within_subject_contrasts_time2():
    case = load("synthetic_within_subjects")
    df = frame(case)
    V = vcalc(df, vi="vi", cluster="study", grp1="g1", grp2="g2", time="t1", time2="t2", w1="n1", w2="n2", phi=0.6)
    assert max_rel(case["blocks"], V) < RTOL


def test_vcalc_not_positive_definite_names_the_cluster_metafor_warns_about():
    case = load("synthetic_not_pd")
    df = frame(case)
    assert case["not_pd"] == "b" or case["not_pd"] == ["b"]
    with pytest.raises(InputError, match="not positive definite in 1 cluster\\(s\\): 'b'"):
        vcalc(df, vi="vi", cluster="study", obs="scale", rho=rho_frame(case))
    V = vcalc(df, vi="vi", cluster="study", obs="scale", rho=rho_frame(case), checkpd=False)
    assert max_rel(case["blocks"], V) < RTOL


# ------------------------------------------------------------------------------ bad input


def small():
    return pd.DataFrame({"study": [1, 1, 2, 2, 2], "esid": [1, 2, 1, 2, 3], "t": [0, 1, 0, 1, 2],
                         "vi": [0.1, 0.2, 0.1, 0.3, 0.2]})


@pytest.mark.parametrize("change, kwargs, match", [
    (lambda d: d.assign(study=[1, None, 2, 2, 2]), {"obs": "esid", "rho": 0.5}, r"row 2, column 'study': missing cluster id"),
    (lambda d: d, {"obs": "esid", "rho": 1.2}, r"rho must be in \[-1, 1\]"),
    (lambda d: d, {"obs": "esid"}, "rho must be given"),
    (lambda d: d, {"rho": 0.5}, "neither obs nor type"),
    (lambda d: d.assign(t=["0", "1", "x", "1", "2"]), {"time": "t", "phi": 0.9}, r"row 3, column 't': time must be numeric"),
    (lambda d: d, {"time": "t"}, "phi must be given"),
    (lambda d: d, {"time": "t", "phi": 1.5}, r"phi must be in \[-1, 1\]"),
    (lambda d: d.assign(vi=[0.1, np.nan, 0.1, 0.3, 0.2]), {"obs": "esid", "rho": 0.5}, r"row 2, column 'vi'"),
    (lambda d: d.assign(vi=[0.1, -0.2, 0.1, 0.3, 0.2]), {"obs": "esid", "rho": 0.5}, "must not be negative"),
    (lambda d: d, {"obs": "nope", "rho": 0.5}, "column 'nope'"),
    (lambda d: d, {"obs": "esid", "rho": np.eye(3)}, "needs row/column labels"),
    (lambda d: d, {"obs": "esid", "rho": pd.DataFrame(np.eye(2), index=[1, 2], columns=[1, 2])},
     r"row 5, column 'esid': value '3' has no row/column"),
    (lambda d: d.assign(t=[0, 1.5, 0, 1, 2]), {"time": "t", "phi": -0.5}, "negative phi"),
])
def test_vcalc_rejects_bad_input_naming_where(change, kwargs, match):
    with pytest.raises(InputError, match=match):
        vcalc(change(small()), vi="vi", cluster="study", **kwargs)


def test_vcalc_labelled_rho_matrix_matches_scalar_and_must_be_symmetric():
    d = small()
    labels = [1, 2, 3]
    R = pd.DataFrame(np.full((3, 3), 0.4) + 0.6 * np.eye(3), index=labels, columns=labels)
    a, b = vcalc(d, obs="esid", rho=R), vcalc(d, obs="esid", rho=0.4)
    for x, y in zip(a.blocks, b.blocks):
        np.testing.assert_array_equal(x, y)
    R.iloc[0, 1] = 0.1
    with pytest.raises(InputError, match="symmetric"):
        vcalc(d, obs="esid", rho=R)


def test_vcalc_fifty_thousand_effects_in_five_thousand_clusters_property():
    """Mixed block sizes (1..19): SPD blocks, diagonal = vi, each block's correlation phi^|dt|."""
    rng = np.random.default_rng(7)
    sizes = rng.integers(1, 20, size=5000)
    sizes = np.round(sizes * 50000 / sizes.sum()).astype(int).clip(1)
    study = np.repeat(np.arange(sizes.size), sizes)
    d = pd.DataFrame({"study": study, "t": np.concatenate([np.arange(s) for s in sizes]) * 0.5,
                      "vi": rng.uniform(0.01, 0.5, size=study.size)}).sample(frac=1, random_state=1)
    V = vcalc(d.reset_index(drop=True), time="t", phi=0.9)      # its time: benchmarks/bench_multilevel.py
    assert len(V.blocks) == sizes.size and V.n == study.size
    check_properties(V, d["vi"].to_numpy())


# ------------------------------------------------------------------------------ contrasts from arms


def arm_case():
    case = load("multiarm_contrasts")
    return case, pd.DataFrame(case["arms"])


@pytest.mark.parametrize("measure", ["MD", "SMD", "RR", "OR", "RD"])
def test_three_arm_trial_escalc_yi_vi_and_exact_shared_control_covariance(measure):
    case, arms = arm_case()
    ref = case["measures"][measure]
    res = contrasts_from_arms(arms, measure, baseline="ctrl")
    con = pd.DataFrame(case["contrasts"])
    assert list(res.table.treat) == list(con.arm_t) and list(res.table.study) == list(con.study)
    np.testing.assert_allclose(res.yi, ref["yi"], rtol=RTOL)
    np.testing.assert_allclose(res.vi, ref["vi"], rtol=RTOL)
    assert max_rel(ref["exact_blocks"], res.V) < RTOL
    check_properties(res.V, res.vi)


def test_shared_control_md_with_equal_sds_equals_metafor_vcalc_weights():
    """With one SD in every arm, vcalc(grp1, grp2, w1 = n_t, w2 = n_c) is exact: both give sd^2 / n_c."""
    case, arms = arm_case()
    ref = case["measures"]["MD_equal_sd"]
    res = contrasts_from_arms(arms.assign(sd=2.0), "MD", baseline="ctrl")
    np.testing.assert_allclose(res.vi, ref["vi"], rtol=RTOL)
    assert max_rel(ref["vcalc_blocks"], res.V) < RTOL
    # and our vcalc reproduces metafor's on these contrasts
    con = res.table.assign(n_t=arms.set_index(["study", "arm"]).loc[list(zip(res.table.study, res.table.treat)), "n"].to_numpy(),
                           n_c=arms.set_index(["study", "arm"]).loc[list(zip(res.table.study, res.table.control)), "n"].to_numpy())
    V = vcalc(con, vi="vi", cluster="study", grp1="treat", grp2="control", w1="n_t", w2="n_c")
    assert max_rel(ref["vcalc_blocks"], V) < RTOL


def test_shared_control_smd_vcalc_approximation_differs_from_exact():
    """metafor's vcalc correlation ignores the pooled-SD term: it differs from the exact covariance."""
    case, arms = arm_case()
    ref = case["measures"]["SMD"]
    res = contrasts_from_arms(arms, "SMD", baseline="ctrl")
    off = [(np.array(a)[0, 1], b[0, 1]) for a, b in zip(ref["vcalc_blocks"], res.V.blocks) if b.shape[0] > 1]
    rel = max(abs(a - b) / abs(b) for a, b in off)
    assert 1e-3 < rel < 0.05


def test_smd_shared_control_covariance_matches_simulation():
    """The large-sample SMD covariance 1/n_c + g1 g2 n_c / (2 N1 N2) against 400,000 simulated trials.

    Sufficient statistics are drawn directly (means normal, variances scaled chi-square) and g is computed
    as escalc does (each contrast's own pooled SD, exact J); contrasts_from_arms gives the same g on the
    first trials. The pooled-SD term is ~0.004 here, about 35 Monte Carlo SEs, so leaving it out fails."""
    rng = np.random.default_rng(20240501)
    reps, n = 400_000, np.array([30, 35, 40])           # control, arm 1, arm 2
    mu = np.array([0.0, 1.2, 1.6])
    means = mu + rng.standard_normal((reps, 3)) / np.sqrt(n)
    var = rng.chisquare(n - 1, size=(reps, 3)) / (n - 1)
    nt, nc = n[1:], n[0]
    sp = np.sqrt(((nt - 1) * var[:, 1:] + (nc - 1) * var[:, :1]) / (nt + nc - 2))
    g = hedges_correction(nt + nc - 2) * (means[:, 1:] - means[:, :1]) / sp
    few = 500
    arms = pd.DataFrame({"study": np.repeat(np.arange(few), 3), "arm": np.tile(["c", "a", "b"], few),
                         "n": np.tile(n, few), "mean": means[:few].ravel(), "sd": np.sqrt(var[:few]).ravel()})
    np.testing.assert_allclose(contrasts_from_arms(arms, "SMD").yi, g[:few].ravel(), rtol=1e-12)
    emp = np.cov(g.T)
    delta = mu[1:] - mu[0]
    exact = shared_arm_covariance("SMD", n=nc, y1=delta[0], y2=delta[1], n_total1=nc + nt[0], n_total2=nc + nt[1])
    se = np.sqrt((emp[0, 0] * emp[1, 1] + emp[0, 1] ** 2) / reps)
    assert abs(emp[0, 1] - exact) < 4 * se
    assert abs(emp[0, 1] - 1 / nc) > 10 * se


def test_network_contrasts_against_each_study_baseline_sign_when_arm_roles_differ():
    """A-B and B-C share B as control in one and treatment in the other: Cov = -u_B."""
    arms = pd.DataFrame({"study": ["s"] * 3, "arm": ["A", "B", "C"], "n": [20, 30, 40],
                         "mean": [1.0, 2.0, 4.0], "sd": [1.0, 2.0, 3.0]})
    res = contrast_covariance(arms, "MD", pd.DataFrame({"study": ["s", "s"], "treat": ["A", "B"], "control": ["B", "C"]}))
    assert res.V.blocks[0][0, 1] == pytest.approx(-4.0 / 30, rel=1e-14)
    base = contrasts_from_arms(arms, "MD", baseline={"s": "B"})
    assert list(base.table.treat) == ["A", "C"] and base.V.blocks[0][0, 1] == pytest.approx(4.0 / 30, rel=1e-14)


def test_contrasts_bad_input_names_the_place():
    arms = pd.DataFrame({"study": [1, 1, 2], "arm": ["a", "b", "a"], "n": [10, 12, 9], "events": [3, 13, 2]})
    with pytest.raises(InputError, match=r"row 2, column 'events': events \(13\) exceed"):
        contrasts_from_arms(arms, "RR")
    arms.loc[1, "events"] = 4
    with pytest.raises(InputError, match="study '2' has a single arm"):
        contrasts_from_arms(arms, "RR")
    with pytest.raises(InputError, match="study '1' has no baseline arm 'z'"):
        contrasts_from_arms(arms.iloc[:2], "RR", baseline="z")
    with pytest.raises(InputError, match="measure must be one of"):
        contrasts_from_arms(arms, "HR")
    two = pd.DataFrame({"study": [1, 1], "treat": ["a", "b"], "control": ["b", "a"]})
    with pytest.raises(InputError, match="contrasted twice"):
        contrast_covariance(arms, "RR", two)
    with pytest.raises(InputError, match="zero cell and add=0"):
        contrasts_from_arms(arms.assign(events=[0, 4, 2]).iloc[:2], "OR", add=0)


# ------------------------------------------------------------------------------ Gleser & Olkin (2009)


def gls(V: BlockDiagonal, y, X):
    W = np.linalg.inv(V.to_dense())
    cov = np.linalg.inv(X.T @ W @ X)
    beta = cov @ X.T @ W @ y
    r = y - X @ beta
    return beta, cov, float(r @ W @ r)


@pytest.mark.parametrize("measure", ["RD", "OR", "RR"])
def test_gleser_olkin2009_multiple_treatment_binary_common_control(measure):
    case = load("gleser_olkin2009")
    go = pd.DataFrame(case["binary_data"])
    ref = case["binary"][measure]
    arms = pd.concat([go.groupby("study", sort=False).first().reset_index().assign(arm="shared")[["study", "arm", "ai", "n1i"]]
                      .rename(columns={"ai": "events", "n1i": "n"}),
                      go.assign(arm=go.trt.astype(str))[["study", "arm", "ci", "n2i"]].rename(columns={"ci": "events", "n2i": "n"})]
                     ).sort_values("study", kind="stable")
    contrasts = pd.DataFrame({"study": go.study, "treat": "shared", "control": go.trt.astype(str)})
    res = contrast_covariance(arms, measure, contrasts)
    np.testing.assert_allclose(res.yi, ref["yi"], rtol=RTOL)
    np.testing.assert_allclose(res.vi, ref["vi"], rtol=RTOL)
    assert max_rel(ref["blocks"], res.V) < RTOL
    X = (go.trt.to_numpy()[:, None] == np.arange(1, 4)).astype(float)
    beta, cov, qe = gls(res.V, res.yi, X)
    np.testing.assert_allclose(beta, ref["coef"], rtol=1e-9)
    np.testing.assert_allclose(cov, np.array(ref["vcov"]), rtol=1e-9)
    assert qe == pytest.approx(ref["QE"], rel=1e-9)
    if "published" in ref:   # the chapter's printed values (pp. 361-363)
        np.testing.assert_allclose(beta, ref["published"]["coef"], atol=5e-5)


def test_gleser_olkin2009_multiple_treatment_smd_sd_pooled_over_all_arms():
    case = load("gleser_olkin2009")
    d = pd.DataFrame(case["smd"]["data"])
    ref = case["smd"]
    ctrl = d.groupby("study", sort=False).first().reset_index()
    arms = pd.concat([ctrl.assign(arm="c", mean=ctrl.m2i, sd=ctrl.sdpi, n=ctrl.n2i),
                      d.assign(arm=d.trt.astype(str), mean=d.m1i, sd=d.sdpi, n=d.n1i)])[["study", "arm", "n", "mean", "sd"]]
    contrasts = pd.DataFrame({"study": d.study, "treat": d.trt.astype(str), "control": "c"})
    res = contrast_covariance(arms, "SMD", contrasts, sd_pool="all", correct=False)
    np.testing.assert_allclose(res.yi, ref["yi"], rtol=RTOL)
    np.testing.assert_allclose(res.vi, ref["vi"], rtol=RTOL)
    assert max_rel(ref["blocks"], res.V) < RTOL
    X = (d.trt.to_numpy()[:, None] == np.arange(1, 3)).astype(float)
    beta, cov, qe = gls(res.V, res.yi, X)
    np.testing.assert_allclose(beta, ref["coef"], rtol=1e-9)
    np.testing.assert_allclose(cov, np.array(ref["vcov"]), rtol=1e-9)
    assert qe == pytest.approx(ref["QE"], rel=1e-9)
    np.testing.assert_allclose(beta, ref["published"]["coef"], atol=5e-5)       # p. 367
    np.testing.assert_allclose(cov.ravel(), ref["published"]["vcov"], atol=5e-6)
