"""The input path's quick reads give what the careful ones give: checked_effects against effect_table,
load.Columns against numeric_column, the plain-arm shortcut against the conversion loop."""

import warnings

import numpy as np
import pandas as pd
import pytest

from pfps_meta.conventions import Settings
from pfps_meta.errors import InputError, InputWarning
from pfps_meta.inputs import layouts, load, validate


def arm_table(k=6):
    rng = np.random.default_rng(11)
    return pd.DataFrame({"study": [f"trial{i}" for i in range(k)], "n_exp": rng.integers(10, 40, k),
                         "mean_exp": np.round(rng.normal(2, 1, k), 2), "sd_exp": np.round(rng.uniform(1, 3, k), 2),
                         "n_ctrl": rng.integers(10, 40, k), "mean_ctrl": np.round(rng.normal(3, 1, k), 2),
                         "sd_ctrl": np.round(rng.uniform(1, 3, k), 2)})


TABLES = {
    "arm": (arm_table(), "SMD"),
    "yi_vi": (pd.DataFrame({"study": ["a", "b", "c"], "yi": [0.1, -0.2, 0.3], "vi": [0.01, 0.02, 0.03]}), None),
    "binary": (pd.DataFrame({"study": ["a", "b"], "events_exp": [3, 0], "n_exp": [20, 25], "events_ctrl": [5, 2],
                             "n_ctrl": [21, 24]}), "OR"),
    "prepost": (pd.DataFrame({"study": ["a", "b"], "n": [10, 12], "mean_t1": [1.0, 2.0], "sd_t1": [1.0, 1.5],
                              "mean_t2": [1.5, 2.2], "sd_t2": [1.1, 1.2], "r": [0.5, 0.6]}), "SMCR"),
    "estimate_ci": (pd.DataFrame({"study": ["a", "b"], "estimate": [1.2, 0.8], "ci_low": [0.9, 0.5],
                                  "ci_high": [1.6, 1.28]}), "RR"),
}


@pytest.mark.parametrize("name", sorted(TABLES))
def test_checked_effects_frame_is_effect_table(name):
    table, measure = TABLES[name]
    checked = validate.checked_effects(table, measure)
    expected = validate.effect_table(table, measure)
    pd.testing.assert_frame_equal(checked.frame, expected, check_exact=True)
    assert checked.frame.attrs == expected.attrs == checked.attrs
    assert checked.layout == name and len(checked) == len(table)
    np.testing.assert_array_equal(checked.yi, expected["yi"].to_numpy())
    np.testing.assert_array_equal(checked.vi, expected["vi"].to_numpy())
    assert checked.labels == expected["study"].tolist()


def test_checked_effects_arrays_are_read_only_and_the_frame_its_own_copy():
    checked = validate.checked_effects(*TABLES["arm"])
    with pytest.raises(ValueError):
        checked.yi[0] = 0.0
    frame = checked.frame
    frame.loc[0, "yi"] = 99.0
    assert checked.yi[0] != 99.0
    assert checked.frame is frame           # built once, then kept


def test_checked_effects_refuses_a_layout_that_is_not_pooled_as_effect_table_does():
    rows = pd.DataFrame({"study": ["a", "a"], "treatment": ["x", "y"], "n": [10, 11], "mean": [1.0, 2.0],
                         "sd": [1.0, 1.1]})
    with pytest.raises(InputError) as quick:
        validate.checked_effects(rows, "MD")
    with pytest.raises(InputError) as careful:
        validate.effect_table(rows, "MD")
    assert str(quick.value) == str(careful.value) and "not pooled yet" in str(quick.value)


def test_an_object_column_of_the_input_stays_object_in_the_frame():
    table = arm_table(3)
    table["note"] = pd.Series(["x", "y", "z"], dtype=object)
    out = validate.effect_table(table, "MD")
    assert out["note"].dtype == object


@pytest.mark.parametrize("values, limits", [
    ([1.0, 2.0, 3.0], {}), ([1, 2, 3], {"integer": True, "minimum": 1}), ([1.5, 2.0], {"integer": True}),
    ([0.0, 1.0], {"above": 0}), ([np.nan, 1.0], {}), ([np.nan, 1.0], {"allow_missing": True}),
    ([np.inf, 1.0], {}), ([2e12, 1.0], {}), ([-1.0, 1.0], {"minimum": 0, "allow_missing": True}),
])
def test_columns_numeric_reads_and_refuses_as_numeric_column(values, limits):
    df = pd.DataFrame({"x": values})
    try:
        expected = load.numeric_column(df, "x", **limits)
    except InputError as exc:
        with pytest.raises(InputError) as quick:
            load.Columns(df).numeric("x", **limits)
        assert str(quick.value) == str(exc)
        assert load.clean_numbers(df["x"].to_numpy(), **limits) is None
    else:
        got = load.Columns(df).numeric("x", **limits)
        np.testing.assert_array_equal(got, expected)
        assert got.dtype == float


def test_columns_numeric_warns_as_numeric_column_on_a_unicode_minus():
    df = pd.DataFrame({"x": pd.Series(["\u22122.5", "1"], dtype=object)})
    with warnings.catch_warnings(record=True) as quick:
        warnings.simplefilter("always")
        got = load.Columns(df).numeric("x")
    with warnings.catch_warnings(record=True) as careful:
        warnings.simplefilter("always")
        expected = load.numeric_column(df, "x")
    np.testing.assert_array_equal(got, expected)
    assert [str(w.message) for w in quick] == [str(w.message) for w in careful]
    assert all(issubclass(w.category, InputWarning) for w in quick)


def test_a_plain_arm_reads_the_same_with_empty_replacement_columns():
    """The shortcut for arms that are a mean and an SD only, against the conversion loop (which an
    all-empty SE column forces)."""
    table = arm_table()
    forced = table.assign(se_exp=np.nan, se_ctrl=np.nan)
    for side in ("exp", "ctrl"):
        quick = layouts.arm_statistics(table, side, Settings())
        careful = layouts.arm_statistics(forced, side, Settings())
        for a, b in zip(quick[:3], careful[:3]):
            np.testing.assert_array_equal(a, b)
        assert quick[3] == careful[3]


def test_a_layout_refused_once_is_refused_again_and_a_found_one_kept_per_measure():
    table = TABLES["arm"][0]
    for _ in range(2):
        with pytest.raises(InputError, match="needs a measure"):
            validate.detect_layout(table, None)
    assert validate.detect_layout(table, "MD") == "arm"
    with pytest.raises(InputError, match="missing column"):
        validate.detect_layout(table, "OR")


def test_edits_to_the_input_after_the_checks_do_not_reach_the_frame():
    table = arm_table(3)
    table["year"] = [2001, 2002, 2003]
    table["note"] = pd.Series(["x", "y", "z"], dtype=object)
    checked = validate.checked_effects(table, "MD")
    expected = validate.effect_table(table, "MD")
    table.loc[0, "year"] = 1999
    table.loc[0, "note"] = "edited"
    table.loc[0, "mean_exp"] = 100.0
    pd.testing.assert_frame_equal(checked.frame, expected, check_exact=True)
    assert list(checked.frame.columns) == ["study", "n_exp", "mean_exp", "sd_exp", "n_ctrl", "mean_ctrl", "sd_ctrl",
                                           "year", "note", "conversion", "yi", "vi"]
