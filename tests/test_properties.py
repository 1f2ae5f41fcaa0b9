"""Property tests (hypothesis): what must hold for any valid input, not just the fixtures."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pfps_meta as pm
from pfps_meta.conventions import TAU2_ESTIMATORS

PROFILE = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
METHODS = sorted(TAU2_ESTIMATORS)


@st.composite
def arm_tables(draw, min_k=2, max_k=8):
    k = draw(st.integers(min_k, max_k))
    n = st.integers(2, 400)
    mean = st.floats(-50, 50, allow_nan=False, allow_infinity=False)
    sd = st.floats(0.05, 30, allow_nan=False, allow_infinity=False)
    rows = [{"study": f"s{i}", "n_exp": draw(n), "mean_exp": draw(mean), "sd_exp": draw(sd),
             "n_ctrl": draw(n), "mean_ctrl": draw(mean), "sd_ctrl": draw(sd)} for i in range(k)]
    return pd.DataFrame(rows)


@st.composite
def effects(draw, min_k=2, max_k=10):
    k = draw(st.integers(min_k, max_k))
    yi = draw(st.lists(st.floats(-5, 5, allow_nan=False), min_size=k, max_size=k))
    vi = draw(st.lists(st.floats(1e-3, 5, allow_nan=False), min_size=k, max_size=k))
    return np.array(yi), np.array(vi)


def _frame(yi, vi):
    return pd.DataFrame({"study": [f"s{i}" for i in range(len(yi))], "yi": yi, "vi": vi})


def _close(a, b, rtol=1e-7, atol=1e-9):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return np.allclose(a, b, rtol=rtol, atol=atol, equal_nan=True)


@PROFILE
@given(effects(), st.sampled_from(METHODS), st.sampled_from(["wald", "hksj"]), st.randoms(use_true_random=False))
def test_study_order_does_not_matter(data, method, ci, rnd):
    yi, vi = data
    order = list(range(len(yi)))
    rnd.shuffle(order)
    a = pm.pool(_frame(yi, vi), method=method, ci_method=ci, tau2_ci=False).stats
    b = pm.pool(_frame(yi[order], vi[order]), method=method, ci_method=ci, tau2_ci=False).stats
    for name in ("estimate", "se", "ci_low", "ci_high", "tau2", "q", "i2"):
        assert _close(a[name], b[name], rtol=1e-6, atol=1e-8), name


@PROFILE
@given(arm_tables(), st.floats(-100, 100, allow_nan=False), st.sampled_from(["DL", "REML", "PM"]))
def test_md_shifts_with_a_common_location_shift_of_one_arm(table, shift, method):
    moved = table.copy()
    moved["mean_exp"] = moved["mean_exp"] + shift
    a = pm.pool(table, "MD", method=method, tau2_ci=False).stats
    b = pm.pool(moved, "MD", method=method, tau2_ci=False).stats
    assert _close(b["estimate"], a["estimate"] + shift, rtol=1e-6, atol=1e-6)
    assert _close(b["se"], a["se"], rtol=1e-6, atol=1e-9) and _close(b["tau2"], a["tau2"], rtol=1e-6, atol=1e-9)
    both = table.copy()
    both[["mean_exp", "mean_ctrl"]] = both[["mean_exp", "mean_ctrl"]] + shift
    assert _close(pm.pool(both, "MD", method=method, tau2_ci=False).stats["estimate"], a["estimate"],
                  rtol=1e-6, atol=1e-6)


@PROFILE
@given(arm_tables(), st.floats(0.01, 100, allow_nan=False), st.sampled_from(["metafor", "revman5"]))
def test_smd_is_scale_invariant(table, factor, convention):
    scaled = table.copy()
    for column in ("mean_exp", "sd_exp", "mean_ctrl", "sd_ctrl"):
        scaled[column] = scaled[column] * factor
    a = pm.pool(table, "SMD", smd_convention=convention, method="REML", tau2_ci=False)
    b = pm.pool(scaled, "SMD", smd_convention=convention, method="REML", tau2_ci=False)
    assert _close(a.studies["yi"], b.studies["yi"], rtol=1e-9, atol=1e-12)
    assert _close(a.stats["estimate"], b.stats["estimate"], rtol=1e-6, atol=1e-9)


@PROFILE
@given(st.lists(effects(1, 8), min_size=1, max_size=6), st.sampled_from(METHODS),
       st.sampled_from(["wald", "hksj"]))
def test_pool_batch_equals_pool_row_by_row(rows, method, ci):
    width = max(len(y) for y, _ in rows)
    ys = np.full((len(rows), width), np.nan)
    vs = np.full((len(rows), width), np.nan)
    for i, (y, v) in enumerate(rows):
        ys[i, : len(y)], vs[i, : len(v)] = y, v
    batch = pm.pool_batch(ys, vs, method=method, ci_method=ci)
    for i, (y, v) in enumerate(rows):
        single = pm.pool(_frame(y, v), method=method, ci_method=ci).stats
        for name in ("estimate", "se", "ci_low", "ci_high", "tau2", "tau2_ci_low", "tau2_ci_high", "i2", "q",
                     "pi_low", "pi_high"):
            expected = np.nan if single[name] is None else single[name]
            assert _close(batch.row(i)[name], expected, rtol=1e-9, atol=1e-12), (i, name)


@PROFILE
@given(arm_tables(), st.sampled_from(["MD", "SMD", "ROM"]), st.sampled_from(METHODS),
       st.sampled_from(["wald", "hksj"]))
def test_valid_input_gives_finite_output(table, measure, method, ci):
    if measure == "ROM":
        table = table.assign(mean_exp=table["mean_exp"].abs() + 0.1, mean_ctrl=table["mean_ctrl"].abs() + 0.1)
    res = pm.pool(table, measure, method=method, ci_method=ci)
    s = res.stats
    assert np.isfinite(s["estimate"]) and np.isfinite(s["tau2"]) and s["tau2"] >= 0
    if not any("HKSJ is undefined" in note for note in res.notes):
        assert np.isfinite(s["se"]) and s["ci_low"] <= s["estimate"] <= s["ci_high"]
    assert np.isfinite(res.studies["weight"]).all() and res.studies["weight"].sum() == pytest.approx(100)
    out = res.to_dict()
    import json

    json.dumps(out, allow_nan=False)
