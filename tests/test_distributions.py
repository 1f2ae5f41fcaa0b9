"""pfps_meta.distributions gives scipy.stats' numbers bit for bit, and importing the package (or the
command line) does not import scipy.stats."""

import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from pfps_meta import distributions as dist

RNG = np.random.default_rng(20261201)
X = np.concatenate([RNG.normal(0, 3, 400), [0.0, 1.959963984540054, -40.0, 40.0]])
XPOS = np.abs(X) * 4
Q = np.concatenate([RNG.uniform(0, 1, 400), [0.025, 0.975, 0.5, 1e-12]])
DF = np.concatenate([RNG.uniform(0.5, 120, 400), [1.0, 2.0, 13.0, 1e6]])
DFN = RNG.integers(1, 30, len(DF)).astype(float)

CASES = {
    "norm_cdf": (lambda: dist.norm_cdf(X), lambda: stats.norm.cdf(X)),
    "norm_sf": (lambda: dist.norm_sf(X), lambda: stats.norm.sf(X)),
    "norm_ppf": (lambda: dist.norm_ppf(Q), lambda: stats.norm.ppf(Q)),
    "norm_isf": (lambda: dist.norm_isf(Q), lambda: stats.norm.isf(Q)),
    "t_cdf": (lambda: dist.t_cdf(X, DF), lambda: stats.t.cdf(X, DF)),
    "t_sf": (lambda: dist.t_sf(X, DF), lambda: stats.t.sf(X, DF)),
    "t_ppf": (lambda: dist.t_ppf(Q, DF), lambda: stats.t.ppf(Q, DF)),
    "t_isf": (lambda: dist.t_isf(Q, DF), lambda: stats.t.isf(Q, DF)),
    "t_ppf_infinite_df": (lambda: dist.t_ppf(Q, np.inf), lambda: stats.t.ppf(Q, np.inf)),
    "chi2_cdf": (lambda: dist.chi2_cdf(XPOS, DF), lambda: stats.chi2.cdf(XPOS, DF)),
    "chi2_sf": (lambda: dist.chi2_sf(XPOS, DF), lambda: stats.chi2.sf(XPOS, DF)),
    "chi2_ppf": (lambda: dist.chi2_ppf(Q, DF), lambda: stats.chi2.ppf(Q, DF)),
    "chi2_isf": (lambda: dist.chi2_isf(Q, DF), lambda: stats.chi2.isf(Q, DF)),
    "f_sf": (lambda: dist.f_sf(XPOS, DFN, DF), lambda: stats.f.sf(XPOS, DFN, DF)),
    "f_cdf": (lambda: dist.f_cdf(XPOS, DFN, DF), lambda: stats.f.cdf(XPOS, DFN, DF)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_function_equals_scipy_stats_bit_for_bit(name):
    ours, theirs = CASES[name]
    np.testing.assert_array_equal(np.asarray(ours()), np.asarray(theirs()))


def test_scalars_in_scalars_out():
    assert isinstance(float(dist.norm_ppf(0.975)), float)
    assert dist.t_ppf(0.975, 13) == stats.t.ppf(0.975, 13)
    assert dist.chi2_sf(3.0, 2) == stats.chi2.sf(3.0, 2)


def test_importing_the_package_and_the_command_line_leaves_scipy_stats_unimported():
    code = ("import sys, pfps_meta, pfps_meta.cli, pfps_meta.present.report; "
            "print('scipy.stats' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
