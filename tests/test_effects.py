"""Effect sizes against metafor's escalc() and the RevMan 5 formulas."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pfps_meta as pm
from pfps_meta.effects import sizes as effects

REF = json.loads((Path(__file__).parent / "fixtures" / "metafor_reference.json").read_text())["effects"]


def arms(ref):
    return [np.array(ref[k], dtype=float) for k in ("n1", "m1", "sd1", "n2", "m2", "sd2")]


def test_mean_difference_matches_escalc_both_variances():
    ref = REF["normand"]
    yi, vi = effects.mean_difference(*arms(ref))
    np.testing.assert_allclose(yi, ref["md_yi"], rtol=1e-12)
    np.testing.assert_allclose(vi, ref["md_vi"], rtol=1e-12)
    _, vi_pooled = effects.mean_difference(*arms(ref), pooled_sd=True)
    np.testing.assert_allclose(vi_pooled, ref["md_ho_vi"], rtol=1e-12)


@pytest.mark.parametrize("name", ["normand", "large_n"])
def test_hedges_g_matches_escalc_including_thousands_of_participants(name):
    ref = REF[name]
    yi, vi = effects.standardized_mean_difference(*arms(ref))
    np.testing.assert_allclose(yi, ref["smd_yi"], rtol=1e-10)
    np.testing.assert_allclose(vi, ref["smd_vi"], rtol=1e-10)


def test_exact_correction_does_not_overflow():
    j = effects.hedges_correction(np.array([10, 340, 1000, 100_000, 10_000_000]))
    assert np.all(np.isfinite(j))
    assert np.all(np.diff(j) > 0) and np.all(j < 1)
    # J(m) ~ 1 - 3/(4m - 1) (Hedges 1981): agreement to 1e-6 relative at large m
    m = np.array([1000.0, 100_000.0])
    np.testing.assert_allclose(effects.hedges_correction(m), 1 - 3 / (4 * m - 1), rtol=1e-6)


def test_revman5_smd_convention():
    # n = 18 + 18, means 5 and 3, SDs 2 and 2: d = 1, J = 1 - 3/(4*36 - 9) = 132/135
    g, vi = effects.standardized_mean_difference(18, 5.0, 2.0, 18, 3.0, 2.0, convention="revman5")
    assert g == pytest.approx(132 / 135, rel=1e-14)
    assert vi == pytest.approx(36 / 324 + (132 / 135) ** 2 / (2 * (36 - 3.94)), rel=1e-14)
    g_metafor, vi_metafor = effects.standardized_mean_difference(18, 5.0, 2.0, 18, 3.0, 2.0)
    assert g_metafor != pytest.approx(g, rel=1e-6)   # the two conventions genuinely differ
    assert vi_metafor < vi


def test_binary_measures_match_escalc():
    ref = REF["bcg"]
    a, n1, c, n2 = (np.array(ref[k], dtype=float) for k in ("ai", "n1", "ci", "n2"))
    yi, vi = effects.log_risk_ratio(a, n1, c, n2)
    np.testing.assert_allclose(yi, ref["rr_yi"], rtol=1e-12)
    np.testing.assert_allclose(vi, ref["rr_vi"], rtol=1e-12)
    yi, vi = effects.log_odds_ratio(a, n1, c, n2)
    np.testing.assert_allclose(yi, ref["or_yi"], rtol=1e-12)
    np.testing.assert_allclose(vi, ref["or_vi"], rtol=1e-12)


def test_confidence_interval_input_and_asymmetry_warning():
    yi, vi, asym = effects.from_confidence_interval([1.0, 0.7], [0.0, 0.4], [2.0, 1.02])
    np.testing.assert_allclose(np.sqrt(vi[0]), 1 / 1.959963984540054, rtol=1e-12)
    assert list(asym) == [False, False]
    _, _, asym = effects.from_confidence_interval([1.0], [0.5], [2.5])
    assert asym[0]
    frame = pd.DataFrame({"study": ["a", "b"], "estimate": [1.0, 1.0], "ci_low": [0.5, 0.0],
                          "ci_high": [2.5, 2.0]})
    with pytest.warns(pm.InputWarning, match="asymmetric"):
        out = pm.effect_table(frame)
    assert list(out.columns[-2:]) == ["yi", "vi"]


def test_effect_table_adds_columns_without_touching_input():
    frame = pd.DataFrame({"study": ["a", "b"], "n_exp": [20, 30], "mean_exp": [2.0, 3.0],
                          "sd_exp": [1.0, 1.5], "n_ctrl": [20, 28], "mean_ctrl": [4.0, 4.5],
                          "sd_ctrl": [1.2, 1.4]})
    before = frame.copy()
    out = pm.escalc(frame, "MD")
    pd.testing.assert_frame_equal(frame, before)
    np.testing.assert_allclose(out["yi"], [-2.0, -1.5])
    np.testing.assert_allclose(out["vi"], [1 / 20 + 1.44 / 20, 2.25 / 30 + 1.96 / 28])
