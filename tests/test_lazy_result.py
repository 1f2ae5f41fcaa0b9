"""The single-fit paths (issue 20): a result whose pandas objects are built on first read, the one-row
iteration that must give the batch core's numbers bit for bit, and the vectorised column checks that must
refuse what the cell-by-cell loop refuses, with the same message."""

import pickle
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import ndtri

import pfps_meta as pm
from pfps_meta.inputs.load import numeric_column

DATA = Path(__file__).resolve().parent.parent / "data" / "examples"


@pytest.fixture(scope="module")
def normand():
    return pd.read_csv(DATA / "normand1999.csv")


def test_normand1999_studies_frame_built_on_first_read(normand):
    """The study rows that pm.pool builds lazily are the ones its numbers imply: yi and vi of escalc (MD),
    se = sqrt(vi), yi +- z se, weights 1/(vi + tau2) in percent, then the input columns."""
    res = pm.pool(normand, measure="MD", method="REML")
    table = pm.escalc(normand, "MD")
    studies = res.studies
    assert list(studies.columns[:7]) == ["study", "yi", "vi", "se", "ci_low", "ci_high", "weight"]
    assert list(studies["study"]) == list(normand["study"])
    np.testing.assert_array_equal(studies["yi"], table["yi"])
    np.testing.assert_array_equal(studies["vi"], table["vi"])
    z = ndtri(0.975)
    np.testing.assert_array_equal(studies["ci_low"], table["yi"] - z * np.sqrt(table["vi"]))
    w = 1.0 / (table["vi"].to_numpy() + res.tau2)
    np.testing.assert_allclose(studies["weight"], 100 * w / w.sum(), rtol=1e-12)
    assert {"n_exp", "mean_exp", "sd_ctrl", "source"} <= set(studies.columns)
    assert res.studies is studies                     # built once


def test_normand1999_to_frame_and_to_dict_from_the_lazy_result(normand):
    res = pm.pool(normand, measure="MD", method="DL", ci_method="hksj")
    frame = res.to_frame()
    assert len(frame) == len(normand) + 1
    assert frame["study"].iloc[-1] == "Pooled (DL)"
    assert frame["yi"].iloc[-1] == res.estimate and frame["weight"].iloc[-1] == 100.0
    assert frame["pi_low"].iloc[:-1].isna().all() and frame["pi_low"].iloc[-1] == res.pi_low
    assert frame["study"].dtype == res.studies["study"].dtype
    out = res.to_dict()
    assert [row["study"] for row in out["studies"]] == list(normand["study"])
    assert out["studies"][0]["n_exp"] == normand["n_exp"].iloc[0]


def test_normand1999_pool_effects_result_ignores_later_edits_of_the_callers_table(normand):
    table = pm.escalc(normand, "MD")
    res = pm.pool_effects(table)
    before = table["yi"].to_numpy().copy()
    table.loc[0, "yi"] = 1e6                          # the caller edits its table after the fit
    table["extra"] = 1
    assert res.studies["yi"].iloc[0] == before[0]
    assert "extra" not in res.studies.columns


def test_normand1999_result_pickles_with_its_studies(normand):
    res = pm.pool(normand, measure="MD")
    back = pickle.loads(pickle.dumps(res))
    pd.testing.assert_frame_equal(back.studies, res.studies)
    assert back.to_dict() == res.to_dict() or str(back.to_dict()) == str(res.to_dict())


def test_metaresult_needs_its_studies_or_a_builder():
    with pytest.raises(TypeError):
        pm.MetaResult(stats={}, settings=pm.DEFAULTS)


@pytest.mark.parametrize("method", ["REML", "ML", "PM", "EB", "DL", "SJ"])
@pytest.mark.parametrize("ci_method", ["wald", "hksj"])
def test_normand1999_one_row_fit_equals_its_row_in_a_batch_bit_for_bit(normand, method, ci_method):
    """One meta-analysis goes through the scalar iteration (ML/REML, the PM root, the Q-profile CI); the
    same row inside a batch goes through the masked many-row iteration. Same bits, every statistic."""
    table = pm.escalc(normand, "MD")
    yi, vi = table["yi"].to_numpy(), table["vi"].to_numpy()
    rng = np.random.default_rng(1999)
    other = (rng.normal(yi, 5.0), vi * rng.uniform(0.5, 2.0, len(vi)))      # a second, different row
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pm.ConvergenceWarning)
        one = pm.pool_batch(yi, vi, method=method, ci_method=ci_method)
        two = pm.pool_batch(np.vstack([yi, other[0]]), np.vstack([vi, other[1]]), method=method,
                            ci_method=ci_method)
    for name in one.ROW_FIELDS:
        assert np.array_equal(getattr(one, name), getattr(two, name)[:1], equal_nan=True), name
    assert np.array_equal(one.weights, two.weights[:1], equal_nan=True)


def test_hackshaw1997_one_row_with_absent_studies_equals_batch_row():
    """Absent studies (NaN) in a single row: masked like the batch core, same numbers."""
    rng = np.random.default_rng(1997)
    vi = rng.uniform(0.01, 0.3, 12)
    yi = rng.normal(0.2, np.sqrt(vi + 0.05))
    yi[[2, 7]] = np.nan
    one = pm.pool_batch(yi, vi)
    two = pm.pool_batch(np.vstack([yi, yi[::-1]]), np.vstack([vi, vi[::-1]]))
    for name in one.ROW_FIELDS:
        assert np.array_equal(getattr(one, name), getattr(two, name)[:1], equal_nan=True), name
    assert one.k[0] == 10 and np.isnan(one.weights[0, 2])


@pytest.mark.parametrize("values, kwargs, message", [
    ([1.0, np.inf, 2.0], {}, "value inf is not finite"),
    ([1.0, np.nan, 2.0], {}, "value is missing"),
    ([3.0, 2.5, 4.0], {"integer": True}, "2.5 is not a whole number"),
    ([3.0, 1.0, 4.0], {"minimum": 2}, "1 is below the allowed minimum 2"),
    ([3.0, 0.0, 4.0], {"above": 0}, "0 must be greater than 0"),
    ([3.0, 2e12, 4.0], {}, "too large to be a real trial value"),
])
def test_numeric_columns_refused_as_cell_by_cell(values, kwargs, message):
    """A numeric column is checked vectorised; a refusal names the same row and column, same words."""
    frame = pd.DataFrame({"study": ["a", "b", "c"], "x": values})
    with pytest.raises(pm.InputError, match=message) as info:
        numeric_column(frame, "x", **kwargs)
    assert info.value.row == 2 and info.value.column == "x"


def test_numeric_column_accepts_missing_when_allowed_and_copies():
    frame = pd.DataFrame({"x": [1.0, np.nan, 3.0], "n": np.array([10, 20, 30])})
    out = numeric_column(frame, "x", allow_missing=True)
    assert np.isnan(out[1]) and out[2] == 3.0
    out[0] = 99.0
    assert frame["x"].iloc[0] == 1.0                  # a copy, never a view of the caller's data
    assert numeric_column(frame, "n", integer=True, minimum=2).dtype == float
