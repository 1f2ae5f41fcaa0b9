"""Every tau2 estimator x CI method x statistic against R metafor (fixtures from validation/*.R)."""

import json
from pathlib import Path

import numpy as np
import pytest

from pfps_meta import pool_batch

RTOL = 1e-6
ATOL = 1e-10   # for statistics whose reference value is exactly 0 (tau2 = 0, I2 = 0, bounds at 0)

REFERENCE = json.loads((Path(__file__).parent / "fixtures" / "metafor_reference.json").read_text())
CASES = REFERENCE["cases"]
STATS = ["estimate", "se", "statistic", "p", "ci_low", "ci_high", "tau2", "i2", "h2", "q", "q_p",
         "tau2_ci_low", "tau2_ci_high", "i2_ci_low", "i2_ci_high", "h2_ci_low", "h2_ci_high",
         "pi_low", "pi_high"]


def assert_matches(actual, expected, what=""):
    """Equal to metafor at RTOL; where metafor gives no value (None), we must give NaN."""
    actual = np.atleast_1d(np.asarray(actual, dtype=float))
    expected = np.atleast_1d(np.array([np.nan if e is None else e for e in np.atleast_1d(expected)],
                                      dtype=float))
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL, equal_nan=True, err_msg=what)


def case_id(case):
    return f"{case['dataset']}-{case['method']}-{case['test']}"


def fit(case, **options):
    ci = "hksj" if case["test"] == "knha" else "wald"
    return pool_batch(np.array(case["yi"]), np.array(case["vi"]), method=case["method"], ci=ci, **options)


def test_fixture_covers_every_estimator_and_ci_method():
    seen = {(c["method"], c["test"]) for c in CASES}
    assert seen == {(m, t) for m in ("FE", "DL", "REML", "ML", "PM", "SJ", "HE", "EB", "HS")
                    for t in ("z", "knha")}
    datasets = {c["dataset"] for c in CASES}
    assert {"normand1999_MD", "normand1999_SMD", "raudenbush1985", "bcg_logRR", "hackshaw1998",
            "synthetic_k2", "synthetic_homogeneous"} <= datasets
    assert all(sum(c["dataset"] == d for c in CASES) == 18 for d in datasets)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_statistics_match_metafor(case):
    result = fit(case).row(0)
    compared = 0
    for name in STATS:
        expected = case[name]
        if expected is None:        # metafor has no value (e.g. no tau2 CI for a common-effect model)
            assert result[name] is None or np.isnan(result[name]), name
            continue
        np.testing.assert_allclose(result[name], expected, rtol=RTOL, atol=ATOL, err_msg=name)
        compared += 1
    assert compared >= 11
    assert result["k"] == case["k"]


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_weights_match_metafor(case):
    assert_matches(fit(case).weights[0], case["weights"])


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_prediction_interval_variants_match_metafor(case):
    t_k1 = fit(case, pi="t")
    assert_matches([t_k1.pi_low[0], t_k1.pi_high[0]], [case["pi_t_low"], case["pi_t_high"]])
    t_k2 = fit(case, pi="t_k2")
    if case["k"] >= 3:
        assert_matches([t_k2.pi_low[0], t_k2.pi_high[0]], [case["pi_riley_low"], case["pi_riley_high"]])
    else:
        # deliberate difference: t(k-2) has no degrees of freedom at k = 2; metafor substitutes df = 1
        assert np.isnan(t_k2.pi_low[0]) and np.isnan(t_k2.pi_high[0])


@pytest.mark.parametrize("method", ["FE", "DL", "REML", "ML", "PM", "SJ", "HE", "EB", "HS"])
@pytest.mark.parametrize("test", ["z", "knha"])
def test_batch_of_ragged_rows_equals_separate_fits(method, test):
    """All datasets stacked in one 2-D call (NaN-padded) give the same numbers as metafor's fits."""
    cases = [c for c in CASES if c["method"] == method and c["test"] == test]
    width = max(c["k"] for c in cases)
    yi = np.full((len(cases), width), np.nan)
    vi = np.full((len(cases), width), np.nan)
    for row, case in enumerate(cases):
        # put the studies in scattered slots so that NaN gaps sit between them
        slots = np.linspace(0, width - 1, case["k"]).round().astype(int)
        yi[row, slots] = case["yi"]
        vi[row, slots] = case["vi"]
    batch = pool_batch(yi, vi, method=method, ci="hksj" if test == "knha" else "wald")
    for row, case in enumerate(cases):
        for name in ("estimate", "se", "ci_low", "ci_high", "tau2", "i2", "q", "pi_low", "pi_high"):
            assert_matches(getattr(batch, name)[row], case[name], f"{case['dataset']} {name}")
