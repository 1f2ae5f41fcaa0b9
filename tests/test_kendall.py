"""Kendall's tau-b and its p-values (pfps_meta.analysis.sensitivity.kendall_tau, used by Begg's test):
against scipy.stats.kendalltau at 1e-12 (exact without ties, n = 3..60; asymptotic with ties), against R's
cor.test(method = "kendall") and against a brute-force count of inversions."""

import itertools
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from pfps_meta.analysis.sensitivity import inversion_counts, kendall_exact_p, kendall_tau
from pfps_meta.errors import InputError


def _pairs(n, seed, ties):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    y = rng.normal(size=n) + rng.uniform(-1.5, 1.5) * x
    if ties:
        x, y = np.round(x * rng.uniform(0.5, 3.0)), np.round(2.0 * y)
        x[-1] = x[0]                        # at least one tie
    return x, y


@pytest.mark.parametrize("n", range(3, 61))
def test_exact_p_and_tau_match_scipy_exact_without_ties(n):
    for seed in range(4):
        x, y = _pairs(n, 1000 * n + seed, ties=False)
        ref = stats.kendalltau(x, y, method="exact")
        tau, p = kendall_tau(x, y)
        assert tau == pytest.approx(ref.statistic, abs=1e-12)
        assert p == pytest.approx(ref.pvalue, rel=1e-12, abs=1e-300)


@pytest.mark.parametrize("n", range(3, 61, 3))
def test_asymptotic_p_with_ties_matches_scipy(n):
    checked = 0
    for seed in range(6):
        x, y = _pairs(n, 7000 + 10 * n + seed, ties=True)
        ref = stats.kendalltau(x, y, method="asymptotic")
        tau, p = kendall_tau(x, y)          # ties: the asymptotic p, as metafor's ranktest
        if np.isnan(ref.statistic):
            assert np.isnan(tau) and np.isnan(p)
            continue
        assert tau == pytest.approx(ref.statistic, abs=1e-12)
        assert p == pytest.approx(ref.pvalue, rel=1e-12, abs=1e-15)
        checked += 1
    assert checked


@pytest.mark.parametrize("n", [3, 4, 10, 25, 60])
def test_asymptotic_p_without_ties_matches_scipy(n):
    x, y = _pairs(n, 50 + n, ties=False)
    ref = stats.kendalltau(x, y, method="asymptotic")
    tau, p = kendall_tau(x, y, method="asymptotic")
    assert (tau, p) == pytest.approx((ref.statistic, ref.pvalue), rel=1e-12, abs=1e-15)


# R 4.2: cor.test(x, y, method = "kendall", exact = TRUE) without ties, exact = FALSE with them (printed
# with jsonlite to 15 significant digits): (x, y, tau, p)
R_COR_TEST = [
    ([0.001, 0.299, -0.274], [-0.89, -0.215, -1.211], 1, 0.333333333333333),
    ([0.06, 1.34, -0.492, -0.62], [0.538, 1.429, -0.288, -1.426], 1, 0.0833333333333333),
    ([-0.029, 0.695, -1.344, -0.458, -1.901], [-1.313, -1.286, -1.31, -1.634, -1.25], -0.2, 0.816666666666667),
    ([0.157, -0.187, -2.517, -0.539, -0.049, 0.113], [-1.405, -0.627, -2.992, -1.24, 1.022, -0.717], 0.2,
     0.719444444444445),
    ([-0.033, 0.884, -0.584, -0.112, 0.11, 0.064, -1.225, 0.076],
     [1.332, -0.84, 0.392, 0.03, -0.553, 2.052, -0.218, -1.138], -0.214285714285714, 0.548412698412698),
    ([0.075, 0.577, -0.189, 0.683, -0.067, 0.667, 1.439, -0.676, 0.203, -0.463],
     [0.187, -0.726, -0.731, 0.35, 0.845, 1.679, -0.172, -1.335, 0.809, -2.363], 0.377777777777778, 0.15574184303351),
    ([-0.463, -0.097, 1.257, 0.689, -0.327, -0.369, -0.25, 1.524, -0.428, -0.304, 0.353, -0.121],
     [-0.568, -1.192, 0.994, 0.108, 0.905, 0.358, -0.224, 1.888, -0.682, 0.809, 0.277, 0.487], 0.303030303030303,
     0.196949943382235),
    ([-1.291, 0.347, -1.688, -2.035, -0.304, -0.9, 0.164, 2.245, -0.832, -0.624, 0.205, 0.493, -0.176, -0.206, 0.702],
     [-0.513, -0.756, -1.43, -1.593, -1.298, -0.46, -0.727, 2.768, -0.473, -0.41, -0.427, 0.276, -2.139, -1.296, 0.924],
     0.466666666666667, 0.0155108232250676),
    ([-3.0, 1.0, -3.0, 1.0, -1.0, 1.0], [-3.0, -1.0, -2.0, 2.0, -1.0, 1.0], 0.80582296402538, 0.0367822613266097),
    ([0.0, -1.0, 2.0, -1.0, 0.0, -1.0, -1.0, -2.0, 2.0], [0.0, 0.0, 2.0, -2.0, 0.0, -2.0, -1.0, -2.0, 2.0],
     0.842234887612316, 0.00546363390865699),
    ([-2.0, -1.0, 2.0, -1.0, -2.0, 1.0, 2.0, -2.0, 0.0, -1.0, -3.0, 1.0, 0.0, 0.0],
     [-3.0, -1.0, 1.0, -1.0, -3.0, 0.0, 3.0, -3.0, 0.0, -1.0, -3.0, 0.0, 1.0, 0.0], 0.877876225140348,
     8.79138728695812e-05),
]


@pytest.mark.parametrize("x, y, tau, p", R_COR_TEST)
def test_tau_and_p_match_r_cor_test(x, y, tau, p):
    got_tau, got_p = kendall_tau(x, y)
    assert got_tau == pytest.approx(tau, rel=1e-13, abs=1e-14)
    assert got_p == pytest.approx(p, rel=1e-13, abs=1e-16)


@pytest.mark.parametrize("n", range(1, 8))
def test_inversion_counts_equal_a_brute_force_count_over_permutations(n):
    total = n * (n - 1) // 2
    brute = [0] * (total + 1)
    for perm in itertools.permutations(range(n)):
        brute[sum(perm[i] > perm[j] for i in range(n) for j in range(i + 1, n))] += 1
    assert inversion_counts(n, total).tolist() == brute
    if n >= 2:                              # scaled: 2 I(n, k) / n!, from I(2, .) / 1 = (1, 1)
        assert inversion_counts(n, total, scaled=True) == pytest.approx(2 * np.array(brute) / math.factorial(n),
                                                                       rel=1e-14)


@pytest.mark.parametrize("n", [8, 10, 13])
def test_inversion_counts_sum_to_n_factorial(n):
    assert np.sum(inversion_counts(n, n * (n - 1) // 2)) == math.factorial(n)


@pytest.mark.parametrize("n", [171, 200])
def test_exact_p_beyond_the_float_range_of_n_factorial_matches_scipy(n):
    x, y = _pairs(n, n, ties=False)
    ref = stats.kendalltau(x, y, method="exact")
    assert kendall_tau(x, y) == pytest.approx((ref.statistic, ref.pvalue), rel=1e-12, abs=1e-300)


def test_exact_p_is_symmetric_in_discordant_and_concordant_and_capped_at_one():
    n, total = 9, 36
    assert all(kendall_exact_p(n, d) == kendall_exact_p(n, total - d) for d in range(total + 1))
    assert kendall_exact_p(n, total // 2) == 1.0
    assert kendall_exact_p(n, 0) == 2 / math.factorial(n)


def test_a_constant_variable_gives_nan():
    tau, p = kendall_tau([1.0, 2.0, 3.0], [5.0, 5.0, 5.0])
    assert math.isnan(tau) and math.isnan(p)


def test_bad_input_is_refused_with_an_input_error():
    with pytest.raises(InputError, match="same length"):
        kendall_tau([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(InputError, match="finite"):
        kendall_tau([1.0, np.nan, 3.0], [1.0, 2.0, 3.0])
    with pytest.raises(InputError, match="without ties"):
        kendall_tau([1.0, 1.0, 3.0], [1.0, 2.0, 3.0], method="exact")
    with pytest.raises(InputError, match="not one of"):
        kendall_tau([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], method="permutation")
    with pytest.raises(InputError, match=r"^x: numbers are needed"):
        kendall_tau("abc", [1.0, 2.0, 3.0])
    with pytest.raises(InputError, match=r"^y: numbers are needed"):
        kendall_tau([1.0, 2.0, 3.0], [1.0, "b", 3.0])


def test_begg_imports_no_scipy_stats():
    code = ("import sys, json\n"
            "import pfps_meta as pm\n"
            "from pfps_meta.analysis import sensitivity\n"
            "import pandas as pd\n"
            "table = pd.DataFrame({'study': list('abcde'), 'yi': [0.1, 0.5, -0.2, 0.9, 0.3]})\n"
            "res = pm.pool_effects(table.assign(vi=[0.04, 0.09, 0.02, 0.2, 0.05]))\n"
            "ties = pm.pool_effects(table.assign(vi=[0.04, 0.09, 0.04, 0.2, 0.05]))\n"
            "out = [sensitivity.begg(r)['exact'] for r in (res, ties)]\n"
            "print(json.dumps([out, 'scipy.stats' in sys.modules]))\n")
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == [[True, False], False]
