"""The compiled kernel (pfps_meta.models.fast) against the numpy reference core (pool_batch)."""

import numpy as np
import pandas as pd
import pytest

import pfps_meta as pm
from pfps_meta.analysis.presets import preset
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
    for name in ("estimate", "se", "statistic", "p", "ci_low", "ci_high", "tau2", "i2"):
        np.testing.assert_allclose(got[name], getattr(ref, name), rtol=1e-10, atol=1e-12, equal_nan=True,
                                   err_msg=name)
    assert np.array_equal(got["converged"], ref.converged)


def test_unknown_method_is_refused():
    with pytest.raises(pm.InputError, match="^method: the compiled kernel covers FE, DL, ML, REML"):
        fast.pool_rows(np.zeros((1, 3)), np.ones((1, 3)), "PM")
    with pytest.raises(pm.InputError, match="^method: MH pools 2x2 tables of counts"):
        fast.pool_rows(np.zeros((1, 3)), np.ones((1, 3)), settings=pm.Settings(method="MH"))
    with pytest.raises(pm.InputError, match="^method MH pools 2x2 tables of counts, not yi and vi"):
        pm.pool_batch(np.zeros((1, 3)), np.ones((1, 3)), method="MH")
    with pytest.raises(pm.InputError, match="^ci_method: "):
        fast.pool_rows(np.zeros((1, 3)), np.ones((1, 3)), "DL", "knha")
    with pytest.raises(pm.InputError, match="^vi: shape"):
        fast.pool_rows(np.zeros((1, 3)), np.ones((1, 2)))


@pytest.mark.filterwarnings("ignore::pfps_meta.ConvergenceWarning")
def test_kernel_defaults_are_the_project_defaults_and_follow_settings():
    """No hard-coded HKSJ: without arguments the kernel fits what pool_batch fits by default (REML, Wald z,
    I² from tau²), and a Settings (RevMan 5's DL, I² from Q) changes all three."""
    yi, vi = _data(rows=120)
    for settings in (None, preset("revman5").settings, pm.Settings(ci_method="hksj", level=0.9)):
        got = fast.pool_rows(yi, vi, settings=settings)
        ref = pm.pool_batch(yi, vi, settings, tau2_ci=False)
        for name in ("estimate", "se", "ci_low", "ci_high", "p", "tau2", "i2"):
            np.testing.assert_allclose(got[name], getattr(ref, name), rtol=1e-10, atol=1e-12, equal_nan=True,
                                       err_msg=f"{name} with {settings}")


def test_chunks_agree_and_an_exception_in_the_loop_surfaces_as_itself():
    yi, vi = _data(rows=50)
    whole = fast.pool_rows(yi, vi)
    seen = []
    parts = fast.pool_rows(yi, vi, chunk_rows=7, callback=lambda done, total: seen.append((done, total)))
    for name in whole:
        np.testing.assert_array_equal(parts[name], whole[name])
    assert seen[-1] == (50, 50) and len(seen) == 8

    def interrupt(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fast.pool_rows(yi, vi, chunk_rows=7, callback=interrupt)


def test_ctrl_c_inside_the_compiled_kernel_is_a_keyboard_interrupt(monkeypatch):
    """numba reports a Ctrl-C that lands in compiled code as a chain of SystemErrors; it surfaces as
    KeyboardInterrupt (any other SystemError is left alone)."""
    def interrupted(*args):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as inner:
            try:
                raise SystemError("returned a result with an exception set") from inner
            except SystemError as middle:
                raise SystemError("CPUDispatcher returned a result with an exception set") from middle

    monkeypatch.setattr(fast, "_pool_rows_kernel", interrupted)
    with pytest.raises(KeyboardInterrupt) as caught:
        fast.pool_rows(np.zeros((2, 3)), np.ones((2, 3)))
    assert caught.type is KeyboardInterrupt

    def broken(*args):
        raise SystemError("something else")

    monkeypatch.setattr(fast, "_pool_rows_kernel", broken)
    with pytest.raises(SystemError, match="something else"):
        fast.pool_rows(np.zeros((2, 3)), np.ones((2, 3)))


def test_simulation_engines_agree():
    from pfps_meta.analysis.simulate import BLOCK, Design, simulate

    design = Design.from_arm_sizes([12, 20, 35], [11, 22, 30])
    grid = dict(tau2=(0, 0.2), replicates=2 * BLOCK, methods=("FE", "DL", "REML"), ci_methods=("wald", "hksj"))
    a = simulate(design, engine="numpy", **grid).table
    b = simulate(design, engine="numba", **grid).table
    numbers = a.select_dtypes("number").columns
    np.testing.assert_allclose(b[numbers].to_numpy(float), a[numbers].to_numpy(float), rtol=1e-9, atol=1e-12)
    pd.testing.assert_frame_equal(a.drop(columns=numbers), b.drop(columns=numbers))


def test_worth_compiling_only_when_the_work_pays_for_it(monkeypatch):
    """A single fit or a leave-one-out never compiles; a simulation of millions of fits does; a cached
    kernel (numba cache=True, reused by a new process) pays back sooner; a compiled one always is used."""
    monkeypatch.setattr(fast, "compiled", lambda: False)
    monkeypatch.setattr(fast, "cached_on_disk", lambda: False)
    assert not fast.worth_compiling(1, 14)
    assert not fast.worth_compiling(200, 199)
    assert fast.worth_compiling(5_000_000, 14)
    assert not fast.worth_compiling(5_000_000, 14, "PM")          # not a kernel method
    cold = next(n for n in (10 ** e for e in range(2, 9)) if fast.worth_compiling(n, 14))
    monkeypatch.setattr(fast, "cached_on_disk", lambda: True)
    warm = next(n for n in (10 ** e for e in range(2, 9)) if fast.worth_compiling(n, 14))
    assert warm < cold
    monkeypatch.setattr(fast, "compiled", lambda: True)
    assert fast.worth_compiling(1, 14)


def test_one_row_call_equals_its_row_in_a_batch():
    """The lean path for a single complete row (no masks) gives the numbers of the masked path."""
    yi, vi = _data(rows=50)
    for ci_method in ("wald", "hksj"):
        batch = fast.pool_rows(yi, vi, "REML", ci_method)
        for r in (3, 4, 10):
            one = fast.pool_rows(yi[r], vi[r], "REML", ci_method)
            for name, values in one.items():
                assert np.array_equal(values, batch[name][r:r + 1], equal_nan=True), name


@pytest.mark.filterwarnings("ignore::pfps_meta.ConvergenceWarning")
@pytest.mark.parametrize("method", fast.KERNEL_METHODS)
def test_one_row_scalar_outputs_equal_the_array_path_bit_for_bit(method):
    """Every method, CI and I² rule: a single complete row (the scalar tail) gives its row of a batch."""
    rng = np.random.default_rng(11)
    for slots in (2, 5, 9, 14, 40):
        vi = rng.uniform(0.01, 0.8, size=(30, slots))
        yi = rng.normal(0.3, np.sqrt(vi + rng.uniform(0, 0.4, size=(30, 1))))
        for ci_method in ("wald", "hksj"):
            for i2_method in ("tau2", "q"):
                settings = pm.Settings(i2_method=i2_method)
                batch = fast.pool_rows(yi, vi, method, ci_method, settings=settings)
                for r in range(0, 30, 7):
                    one = fast.pool_rows(yi[r], vi[r], method, ci_method, settings=settings)
                    for name, values in one.items():
                        assert np.array_equal(values, batch[name][r:r + 1], equal_nan=True), (slots, name)


@pytest.mark.filterwarnings("ignore::pfps_meta.ConvergenceWarning")
@pytest.mark.parametrize("method", ["REML", "ML", "PM", "EB"])
def test_scalar_tau2_and_q_profile_paths_equal_the_numpy_core_bit_for_bit(method, monkeypatch):
    """One row of up to SCALAR_MAX_K studies iterates REML/ML, PM/EB and the Q-profile CI on Python floats;
    with the scalar path switched off (SCALAR_MAX_K = 0) the numpy core gives the same bits, also with
    absent studies, identical effects and k beyond numpy's 8-term pairwise block."""
    from pfps_meta.models import tau2

    rng = np.random.default_rng(5)
    cases = []
    for rep in range(120):
        k = int(rng.integers(2, 129))
        vi = rng.uniform(0.01, 1, k) * 10 ** rng.uniform(-3, 3)
        yi = rng.normal(0, np.sqrt(vi + rng.uniform(0, 2) * (rep % 2)))
        if rep % 5 == 0:
            yi[rng.integers(0, k)] = np.nan
        if rep % 17 == 0:
            yi[:] = 1.0
        cases.append((yi, vi))
    names = ("estimate", "se", "tau2", "tau2_ci_low", "tau2_ci_high", "i2_ci_high", "iterations", "converged")
    scalar = [pm.pool_batch(yi, vi, method=method) for yi, vi in cases]
    monkeypatch.setattr(tau2, "SCALAR_MAX_K", 0)
    for (yi, vi), got in zip(cases, scalar):
        ref = pm.pool_batch(yi, vi, method=method)
        for name in names:
            assert np.array_equal(getattr(got, name), getattr(ref, name), equal_nan=True), name


def test_pairwise_sum_reproduces_numpy_row_sums_up_to_128_terms():
    from pfps_meta.models.tau2 import SCALAR_MAX_K, pairwise_sum

    rng = np.random.default_rng(2)
    for n in range(1, SCALAR_MAX_K + 1):
        for _ in range(20):
            row = rng.standard_normal((1, n)) * 10 ** rng.uniform(-6, 6, (1, n))
            assert pairwise_sum(row[0].tolist()) == np.add.reduce(row, 1)[0], n
    assert str(pairwise_sum([-0.0])) == "-0.0"               # numpy starts from -0.0, so -0.0 sums to -0.0
