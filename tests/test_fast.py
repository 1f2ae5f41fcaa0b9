"""The compiled kernel (pfps_meta.models.fast) against the numpy reference core (pool_batch)."""

import numpy as np
import pandas as pd
import pytest

import pfps_meta as pm
from pfps_meta.models import fast

pytestmark = pytest.mark.skipif(not fast.available(), reason="numba is not installed (pip install 'pfps-meta[fast]')")


def _data(rows=400, slots=9, seed=3):
    rng = np.random.default_rng(seed)
    vi = rng.uniform(0.01, 0.8, size=(rows, slots))
    yi = rng.normal(0.3, np.sqrt(vi + rng.uniform(0, 0.4, size=(rows, 1))))
    absent = rng.random((rows, slots)) < 0.25
    yi[absent] = np.nan
    vi[absent] = np.nan
    yi[0, 1:] = np.nan                 # a row with k = 1
    yi[1, 2:] = np.nan                 # a row with k = 2
    yi[2, :] = 0.7                     # identical effects (HKSJ undefined)
    return yi, vi


@pytest.mark.filterwarnings("ignore::pfps_meta.ConvergenceWarning")
@pytest.mark.parametrize("method", fast.KERNEL_METHODS)
@pytest.mark.parametrize("ci_method", ["wald", "hksj"])
def test_kernel_matches_pool_batch(method, ci_method):
    yi, vi = _data()
    got = fast.pool_rows(yi, vi, method, ci_method)
    ref = pm.pool_batch(yi, vi, method=method, ci_method=ci_method, tau2_ci=False)
    assert np.array_equal(got["k"], ref.k)
    for name in ("estimate", "se", "statistic", "p", "ci_low", "ci_high", "tau2"):
        np.testing.assert_allclose(got[name], getattr(ref, name), rtol=1e-10, atol=1e-12, equal_nan=True,
                                   err_msg=name)
    assert np.array_equal(got["converged"], ref.converged)


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="covers FE, DL, ML, REML"):
        fast.pool_rows(np.zeros((1, 3)), np.ones((1, 3)), "PM")


def test_simulation_engines_agree():
    from pfps_meta.analysis.simulate import BLOCK, Design, simulate

    design = Design.from_arm_sizes([12, 20, 35], [11, 22, 30])
    a = simulate(design, tau2=(0, 0.2), replicates=2 * BLOCK, engine="numpy").table
    b = simulate(design, tau2=(0, 0.2), replicates=2 * BLOCK, engine="numba").table
    numbers = a.select_dtypes("number").columns
    np.testing.assert_allclose(b[numbers].to_numpy(float), a[numbers].to_numpy(float), rtol=1e-9, atol=1e-12)
    pd.testing.assert_frame_equal(a.drop(columns=numbers), b.drop(columns=numbers))
