"""The one-row path of pool_batch (issue 20): one complete meta-analysis is pooled on Python floats
(pooling.pool_row, tau2.estimate_one_row, tau2.q_profile_row) instead of the (rows x slots) numpy core.
The numpy core stays the reference: with the scalar paths switched off (tau2.SCALAR_MAX_K = 0) it must
give the same bits for every statistic, every method and every convention, over many random inputs."""

import warnings
import zlib

import numpy as np
import pandas as pd
import pytest

import pfps_meta as pm
from pfps_meta.models import pooling, tau2

METHODS = ("REML", "ML", "PM", "EB", "DL", "SJ", "HE", "HS", "FE")
CONVENTIONS = ({}, {"ci_method": "hksj"}, {"i2_method": "q"}, {"ci_method": "hksj", "pi_method": "t_k2"},
               {"level": 0.9, "pi_method": "t"}, {"pi_method": "z", "ci_method": "hksj"},
               {"tau2_ci": False, "fit_statistics": False}, {"prediction_interval": False, "level": 0.8})


def _cases(seed, n=40):
    rng = np.random.default_rng(seed)
    cases = []
    for rep in range(n):
        k = int(rng.integers(2, 60)) if rep % 7 else int(rng.integers(2, 9))
        vi = rng.uniform(0.01, 1, k) * 10 ** rng.uniform(-3, 3)
        yi = rng.normal(0, np.sqrt(vi + rng.uniform(0, 2) * (rep % 2)))
        if rep % 13 == 0:
            yi[:] = 1.0                                   # identical effects: the array path takes over
        cases.append((yi, vi))
    return cases


def _reference(yi, vi, settings, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(tau2, "SCALAR_MAX_K", 0)
        return pm.pool_batch(yi, vi, settings)


@pytest.mark.parametrize("method", METHODS)
def test_one_row_equals_the_numpy_core_bit_for_bit(method, monkeypatch):
    used = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pm.ConvergenceWarning)
        for options in CONVENTIONS:
            settings = pm.Settings(method=method, **options)
            for yi, vi in _cases(zlib.crc32(f"{method}{options}".encode()), n=25):
                row = pooling.complete_row(yi, vi)
                used += row is not None and pooling.pool_row(row[0], row[1], settings) is not None
                got = pm.pool_batch(yi, vi, settings)
                ref = _reference(yi, vi, settings, monkeypatch)
                for name in got.ROW_FIELDS:
                    assert np.array_equal(getattr(got, name), getattr(ref, name), equal_nan=True), (options, name)
                assert np.array_equal(got.weights, ref.weights, equal_nan=True)
                assert got.k.dtype == ref.k.dtype and got.converged.dtype == ref.converged.dtype
    assert used >= 0.8 * 25 * len(CONVENTIONS)          # the fast path did the work, not the fallback


def test_pool_row_statistics_are_python_scalars_of_the_batch_row():
    yi, vi = _cases(3, n=2)[1]
    stats, shares = pooling.pool_row(*pooling.complete_row(yi, vi), pm.DEFAULTS)
    row = pm.pool_batch(yi[None, :], vi[None, :]).row(0)
    assert set(stats) == set(pm.BatchResult.ROW_FIELDS)
    assert all(type(stats[name]) is type(row[name]) for name in row), {n: type(stats[n]) for n in stats}
    assert len(shares) == len(yi) and abs(sum(shares) - 100.0) < 1e-9


def test_complete_row_leaves_anything_else_to_the_array_path():
    y, v = np.array([0.1, 0.2, 0.3]), np.array([0.01, 0.02, 0.03])
    assert pooling.complete_row(y, v) == ([0.1, 0.2, 0.3], [0.01, 0.02, 0.03])
    assert pooling.complete_row(y[None, :], v[None, :]) is not None
    for yi, vi in ((np.array([0.1, np.nan, 0.3]), v), (y, np.array([0.01, 0.0, 0.03])), (y, -v),
                   (np.array([0.1, np.inf, 0.3]), v), (y[:1], v[:1]), (y.tolist(), v), (np.vstack([y, y]), np.vstack([v, v])),
                   (np.array([1, 2, 3]), v), (y, v[:2])):
        assert pooling.complete_row(yi, vi) is None
    with pytest.raises(pm.InputError, match="sampling variance 0 must be > 0"):
        pm.pool_batch(y, np.array([0.01, 0.0, 0.03]))


def test_one_row_warns_when_reml_does_not_converge(monkeypatch):
    yi, vi = _cases(4, n=2)[1]
    with pytest.warns(pm.ConvergenceWarning, match="did not converge for 1 meta-analysis row"):
        got = pm.pool_batch(yi, vi, maxiter=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pm.ConvergenceWarning)
        ref = _reference(yi, vi, pm.Settings(maxiter=1), monkeypatch)
    assert not got.converged[0] and got.tau2[0] == ref.tau2[0]


def test_pool_builds_the_checked_table_only_when_its_studies_are_read(monkeypatch):
    """pm.pool fits from the checked yi and vi; the DataFrame of the checked table is built on the first
    read of ``studies`` (or to_frame, to_dict), once, and the result equals pool_effects on effect_table's
    frame: every statistic, note and study row."""
    from pfps_meta.inputs import validate

    calls = []
    frame = validate.CheckedTable.frame
    monkeypatch.setattr(validate.CheckedTable, "frame", property(lambda self: calls.append(1) or frame.fget(self)))
    rng = np.random.default_rng(20)
    arm = pd.DataFrame({"study": [f"s{i}" for i in range(9)], "n_exp": rng.integers(10, 50, 9),
                        "mean_exp": rng.normal(1, 1, 9), "sd_exp": rng.uniform(1, 2, 9),
                        "n_ctrl": rng.integers(10, 50, 9), "mean_ctrl": rng.normal(0, 1, 9),
                        "sd_ctrl": rng.uniform(1, 2, 9)})
    res = pm.pool(arm, measure="MD", ci_method="hksj")
    assert calls == []
    ref = pm.pool_effects(pm.effect_table(arm, "MD"), measure="MD", ci_method="hksj")
    assert res.stats == ref.stats and res.notes == ref.notes
    pd.testing.assert_frame_equal(res.studies, ref.studies)
    res.to_frame()
    assert res.to_dict() == ref.to_dict()
    assert len(calls) == 2                              # effect_table's, and this result's once
    res.studies.loc[0, "yi"] = 99.0                     # the result's frame is its own
    assert pm.pool(arm, measure="MD").studies["yi"].iloc[0] != 99.0


def test_straight_line_q_and_score_equal_their_list_forms_bit_for_bit(monkeypatch):
    """Q(tau2), Q'(tau2) and the ML/REML score compiled as straight-line code (after COMPILE_AFTER calls
    at one k) give the bits of the list form, for every k the one-row path takes (1 to 128 studies)."""
    rng = np.random.default_rng(128)
    rows = []
    for n in range(1, tau2.SCALAR_MAX_K + 1):
        v = (rng.uniform(0.01, 1, n) * 10 ** rng.uniform(-3, 3)).tolist()
        rows.append((rng.normal(0, 2, n).tolist(), v, float(rng.uniform(0, 2))))
    monkeypatch.setattr(tau2, "_GENERATED", {})
    monkeypatch.setattr(tau2, "COMPILE_AFTER", 10 ** 9)
    lists = [(tau2._q_scalar(y, v, t), tau2._score_scalar(y, v, t, True), tau2._score_scalar(y, v, t, False))
             for y, v, t in rows]
    assert tau2._GENERATED == {}
    monkeypatch.setattr(tau2, "COMPILE_AFTER", 0)
    compiled = [(tau2._q_scalar(y, v, t), tau2._score_scalar(y, v, t, True), tau2._score_scalar(y, v, t, False))
                for y, v, t in rows]
    assert len(tau2._GENERATED) == 2 * len(rows)
    assert compiled == lists
