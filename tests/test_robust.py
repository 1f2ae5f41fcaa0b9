"""Cluster-robust inference (pfps_meta.models.robust) against metafor 3.8-1 robust() and clubSandwich
0.5.8 (fixtures written by validation/make_robust_fixtures.R)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pfps_meta.errors import InputError
from pfps_meta.models.blocks import BlockDiagonal
from pfps_meta.models.robust import RobustResult, cluster_robust

FIXTURES = Path(__file__).parent / "fixtures" / "robust"
RTOL = 1e-6


def _load(name):
    d = json.loads((FIXTURES / f"{name}.json").read_text())
    d["names"] = [str(n) for n in np.atleast_1d(d["names"])]
    d["X"] = np.array(d["X"], dtype=float).reshape(len(d["y"]), len(d["names"]))
    d["M"] = np.array(d["M"], dtype=float)
    d["W"] = None if d["W"] is None else np.array(d["W"], dtype=float)
    return d


def _fit(d, adjust, marginal=None, **kw):
    ref = d[adjust]
    btt = np.atleast_1d(ref["wald"]["btt"]) - 1
    return cluster_robust(d["X"], d["y"], d["beta"], d["M"] if marginal is None else marginal,
                          d["cluster"], adjust=adjust, level=d["level"], names=d["names"],
                          weights=d["W"], btt=[int(b) for b in btt], **kw)


def _close(actual, expected, what):
    actual = np.atleast_1d(actual)
    expected = np.broadcast_to(np.asarray(expected, dtype=float), actual.shape)  # metafor's scalar ddf
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=0, err_msg=what)


def _check_against_reference(name, marginal=None):
    d = _load(name)
    for adjust in ("CR0", "CR1", "CR2"):
        ref = d[adjust]
        res = _fit(d, adjust, marginal)
        assert res.m == ref["m"]
        for key in ("estimate", "se", "t", "df", "p", "ci_low", "ci_high"):
            _close(getattr(res, key), ref[key], f"{name} {adjust} {key}")
        p = len(d["names"])
        _close(res.vcov, np.array(ref["vcov"]).reshape(p, p), f"{name} {adjust} vcov")
        if adjust == "CR2":
            for block, test in (("wald", res.wald),
                                ("wald_all", res.wald_test(list(range(p))))):
                htz, chisq = ref[block]["HTZ"], ref[block]["chisq"]
                assert test.test == "HTZ" and test.df_num == htz["df_num"]
                _close(test.statistic, htz["Fstat"], f"{name} {block} HTZ F")
                _close(test.delta, htz["delta"], f"{name} {block} HTZ delta")
                _close(test.df_denom, htz["df_denom"], f"{name} {block} HTZ df")
                _close(test.p, htz["p_val"], f"{name} {block} HTZ p")
                _close(test.chisq / test.df_num, chisq["Fstat"], f"{name} {block} chi-sq")
                _close(test.chisq_p, chisq["p_val"], f"{name} {block} chi-sq p")
        else:
            w = ref["wald"]
            assert (res.wald.df_num, res.wald.df_denom) == (w["df_num"], w["df_denom"])
            _close(res.wald.statistic, w["statistic"], f"{name} {adjust} QM")
            _close(res.wald.p, w["p"], f"{name} {adjust} QMp")
    return d


# ------------------------------------------------------------------------------------------------
# the published analyses


def test_konstantopoulos2011_three_level_district_clusters():
    d = _check_against_reference("konstantopoulos2011_three_level")
    # the values quoted for this analysis (clubSandwich CR2 and metafor robust() CR1)
    assert round(d["CR2"]["se"], 6) == 0.084458 and round(d["CR2"]["df"], 4) == 9.8632
    assert round(d["CR1"]["se"], 6) == 0.084502 and d["CR1"]["df"] == 10


def test_konstantopoulos2011_year_moderator():
    _check_against_reference("konstantopoulos2011_year")


def test_assink2016_vcalc_three_level_study_clusters():
    d = _check_against_reference("assink2016_vcalc")
    assert round(float(np.atleast_1d(d["beta"])[0]), 6) == 0.367755
    assert round(d["CR2"]["se"], 6) == 0.096972 and round(d["CR2"]["df"], 3) == 14.533


def test_assink2016_deltype_htz_wald_test():
    d = _check_against_reference("assink2016_deltype")
    res = _fit(d, "CR2")
    assert res.wald.coefficients == ("deltypegeneral", "deltypeovert")
    assert "df below 4" in res.summary()      # HTZ df 0.88: the printout flags it


def test_berkey1998_multivariate_unstructured_trial_clusters():
    _check_against_reference("berkey1998_multivariate")


def test_konstantopoulos2011_robust_clusters_coarser_than_districts():
    """Robust clusters = pairs of districts; the model's blocks are districts (merged per cluster)."""
    d = _load("konstantopoulos2011_region")
    blocks = BlockDiagonal.from_dense(d["M"], groups=d["blocks"])
    assert len(blocks.blocks) > len(set(d["cluster"]))
    _check_against_reference("konstantopoulos2011_region", marginal=blocks)
    _check_against_reference("konstantopoulos2011_region")


def test_konstantopoulos2011_study_level_model_clustered_by_district():
    """M diagonal (random = ~ 1 | study): every model block is one row."""
    d = _load("konstantopoulos2011_study_by_district")
    _check_against_reference(d["name"], marginal=BlockDiagonal.from_dense(d["M"], groups=d["blocks"]))


def test_konstantopoulos2011_explicit_weights():
    """rma.mv(W = diag(1/vi)): weights are not M^{-1}; clubSandwich's general CR2 formulas."""
    d = _check_against_reference("konstantopoulos2011_weights")
    assert d["W"] is not None
    # the same weights as blocks listing their rows in reverse order
    rows = [np.flatnonzero(np.asarray(d["blocks"]) == g)[::-1] for g in dict.fromkeys(d["blocks"])]
    W = BlockDiagonal(tuple(rows), tuple(d["W"][np.ix_(r, r)] for r in rows), tuple(range(len(rows))))
    dense = _fit(d, "CR2")
    res = cluster_robust(d["X"], d["y"], d["beta"], d["M"], d["cluster"], weights=W,
                         names=d["names"])
    np.testing.assert_allclose(res.se, dense.se, rtol=1e-12)
    np.testing.assert_allclose(res.df, dense.df, rtol=1e-12)


def test_assink2016_row_order_and_block_input_do_not_matter():
    d = _load("assink2016_deltype")
    ref = _fit(d, "CR2")
    perm = np.random.default_rng(3).permutation(len(d["y"]))
    M = d["M"][np.ix_(perm, perm)]
    bd = BlockDiagonal.from_dense(M, groups=np.asarray(d["blocks"])[perm])
    res = cluster_robust(d["X"][perm], np.asarray(d["y"])[perm], d["beta"], bd,
                         np.asarray(d["cluster"])[perm], adjust="CR2", names=d["names"], btt=[1, 2])
    for key in ("se", "df", "p", "ci_low"):
        np.testing.assert_allclose(getattr(res, key), getattr(ref, key), rtol=1e-10)
    np.testing.assert_allclose(res.wald.df_denom, ref.wald.df_denom, rtol=1e-10)


# ------------------------------------------------------------------------------------------------
# the blockwise algebra against a dense from-definition implementation (random data)


def _dense_cr2(X, y, beta, M, cluster, W=None, C=None):
    """CR2, Satterthwaite df and HTZ nu from their definitions (Pustejovsky & Tipton 2018), with
    dense k x k matrices and explicit m x m matrices P (as clubSandwich's get_P_array)."""
    k, p = X.shape
    labels = list(dict.fromkeys(cluster))
    rows = [np.flatnonzero(np.asarray(cluster) == g) for g in labels]
    W = np.linalg.inv(M) if W is None else W
    B = np.linalg.inv(X.T @ W @ X)
    H = X @ B @ X.T @ W
    IH = np.eye(k) - H
    e = y - X @ beta
    Lb = np.linalg.cholesky(B)
    meat = np.zeros((p, p))
    G, H1, H2, H3 = [], [], [], []
    Omega_w = B @ X.T @ W @ M @ W @ X @ B
    for r in rows:
        Th = M[np.ix_(r, r)]
        L = np.linalg.cholesky(Th)
        mid = (IH @ M @ IH.T)[np.ix_(r, r)]
        vals, vecs = np.linalg.eigh(L.T @ mid @ L)
        A = L @ vecs @ np.diag(vals ** -0.5) @ vecs.T @ L.T
        Ej = X[r].T @ W[np.ix_(r, r)] @ A
        u = Ej @ e[r]
        meat += np.outer(u, u)
        ME = B @ Ej
        G.append(ME @ L)
        H1.append(ME @ X[r] @ Lb)
        H2.append(ME @ M[np.ix_(r, r)] @ W[np.ix_(r, r)] @ X[r] @ Lb)
        H3.append(ME @ X[r] @ np.linalg.cholesky(Omega_w))
    vcov = B @ meat @ B
    m = len(rows)

    def P(cs, ct):
        out = np.zeros((m, m))
        for a in range(m):
            out[a, a] += (cs @ G[a]) @ (ct @ G[a])
            for b in range(m):
                out[a, b] += ((cs @ H3[a]) @ (ct @ H3[b]) - (cs @ H1[a]) @ (ct @ H2[b])
                              - (cs @ H2[a]) @ (ct @ H1[b]))
        return out

    df = []
    for i in range(p):
        Pi = P(np.eye(p)[i], np.eye(p)[i])
        df.append(np.trace(Pi) ** 2 / np.sum(Pi ** 2))
    C = np.eye(p) if C is None else C
    q = C.shape[0]
    Parr = np.array([[P(C[s], C[t]) for t in range(q)] for s in range(q)])     # q, q, m, m
    Omega = np.einsum("stjj->st", Parr)
    vals, vecs = np.linalg.eigh(Omega)
    On = vecs @ np.diag(vals ** -0.5) @ vecs.T
    Bst = np.einsum("as,stjk,tb->abjk", On, Parr, On)
    var = np.einsum("stjk,tsjk->st", Bst, Bst) + np.einsum("ssjk,ttjk->st", Bst, Bst)
    return vcov, np.array(df), q * (q + 1) / var.sum()


@pytest.mark.parametrize("explicit_weights", [False, True])
def test_pustejovsky_tipton2018_cr2_definitions_on_random_clusters(explicit_weights):
    rng = np.random.default_rng(11)
    sizes = rng.integers(1, 5, size=14)
    cluster = np.repeat(np.arange(sizes.size), sizes)
    k, p = cluster.size, 3
    X = np.column_stack([np.ones(k), rng.normal(size=k), rng.integers(0, 2, size=k)])
    M = np.zeros((k, k))
    blocks = []
    for g in range(sizes.size):
        r = np.flatnonzero(cluster == g)
        A = rng.normal(size=(r.size, r.size)) * 0.2
        M[np.ix_(r, r)] = A @ A.T + 0.05 * np.eye(r.size) + 0.03
        blocks.append(r)
    y = X @ np.array([0.2, 0.1, -0.3]) + rng.normal(size=k) * 0.4
    W = np.diag(1 / np.diag(M)) if explicit_weights else None
    Wfit = np.linalg.inv(M) if W is None else W
    beta = np.linalg.solve(X.T @ Wfit @ X, X.T @ Wfit @ y)
    C = np.eye(p)[[1, 2]]
    vcov, df, nu = _dense_cr2(X, y, beta, M, cluster, W=W, C=C)
    res = cluster_robust(X, y, beta, BlockDiagonal.from_dense(M, groups=cluster), cluster,
                         weights=W, btt=[1, 2])
    np.testing.assert_allclose(res.vcov, vcov, rtol=1e-10)
    np.testing.assert_allclose(res.df, df, rtol=1e-10)
    np.testing.assert_allclose(res.wald.df_denom, nu - 1, rtol=1e-10)
    # HTZ of one coefficient is its Satterthwaite t test
    one = res.wald_test(["x2"])
    np.testing.assert_allclose(one.df_denom, res.df[1], rtol=1e-10)
    np.testing.assert_allclose(one.p, res.p[1], rtol=1e-10)


# ------------------------------------------------------------------------------------------------
# presentation


def test_konstantopoulos2011_summary_names_adjustment_and_df_method():
    d = _load("konstantopoulos2011_year")
    cr2, cr1 = _fit(d, "CR2"), _fit(d, "CR1")
    first2, first1 = str(cr2).splitlines()[0], cr1.summary().splitlines()[0]
    assert "CR2" in first2 and "Satterthwaite" in first2 and "HTZ" in first2
    assert "CR1" in first1 and "m - p = 9" in first1 and "11 clusters" in first1
    out = cr2.to_dict()
    json.dumps(out, allow_nan=False)
    assert out["adjust"] == "CR2" and out["df_method"] == "Satterthwaite"
    assert [c["name"] for c in out["coefficients"]] == d["names"]
    frame = cr2.to_frame()
    assert list(frame.columns) == ["estimate", "se", "t", "df", "p", "ci_low_95", "ci_high_95"]
    np.testing.assert_allclose(frame["se"], cr2.se)
    assert "Satterthwaite" in cr2._repr_html_() and "<table>" in cr2._repr_html_()
    assert isinstance(cr2, RobustResult)


def test_robust_html_escapes_coefficient_names():
    d = _load("konstantopoulos2011_three_level")
    res = cluster_robust(d["X"], d["y"], d["beta"], d["M"], d["cluster"], names=["<b>mu</b>"])
    assert "<b>mu</b>" not in res._repr_html_() and "&lt;b&gt;mu" in res._repr_html_()


# ------------------------------------------------------------------------------------------------
# bad input


def test_konstantopoulos2011_clusters_finer_than_random_effects_are_refused():
    """clubSandwich: 'Random effects are not nested within clustering variable.'"""
    d = _load("konstantopoulos2011_three_level")
    study = np.arange(len(d["y"]))
    with pytest.raises(InputError, match="nested"):
        cluster_robust(d["X"], d["y"], d["beta"], d["M"], study)
    bd = BlockDiagonal.from_dense(d["M"], groups=d["blocks"])
    with pytest.raises(InputError, match="spans robust clusters.*nested"):
        cluster_robust(d["X"], d["y"], d["beta"], bd, study)


def test_robust_refuses_too_few_clusters_and_bad_arguments():
    d = _load("berkey1998_multivariate")
    X, y, b, M, cl = d["X"], d["y"], d["beta"], d["M"], d["cluster"]
    with pytest.raises(InputError, match="at least 2"):
        cluster_robust(X, y, b, M, ["one"] * len(y))
    two = ["a"] * 4 + ["b"] * 6
    with pytest.raises(InputError, match="more clusters than coefficients"):
        cluster_robust(X, y, b, M, two, adjust="CR1")
    with pytest.raises(InputError, match="adjust"):
        cluster_robust(X, y, b, M, cl, adjust="HC3")
    with pytest.raises(InputError, match="level"):
        cluster_robust(X, y, b, M, cl, level=95)
    bad_y = np.array(y, dtype=float)
    bad_y[3] = np.nan
    with pytest.raises(InputError, match="row 4"):
        cluster_robust(X, bad_y, b, M, cl)
    missing = list(cl)
    missing[2] = None
    with pytest.raises(InputError, match="row 3"):
        cluster_robust(X, y, b, M, missing)
    with pytest.raises(InputError, match="labels for"):
        cluster_robust(X, y, b, M, cl[:-1])
    with pytest.raises(InputError, match="btt"):
        cluster_robust(X, y, b, M, cl, btt=["nope"])
    with pytest.raises(InputError, match="marginal"):
        cluster_robust(X, y, b, M[:5, :5], cl)
    not_pd = M.copy()
    not_pd[0, 0] = -1.0
    with pytest.raises(InputError, match="cluster '1' is not positive definite"):
        cluster_robust(X, y, b, not_pd, cl)
