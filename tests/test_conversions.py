"""From what papers print to means and SDs (issue 9): every rule in pfps_meta.inputs.conversions against R meta
8.2-1 (fixtures in tests/fixtures/r_meta/, written by validation/r_meta/make_r_meta_conversions.R) or a
worked example from the Cochrane Handbook, and the arm-level input that uses them."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import pfps_meta as pm
from pfps_meta.inputs import conversions as cv
from pfps_meta.cli import main
from pfps_meta.errors import InputError
from tests.conftest import FIXTURES

R_META = FIXTURES / "r_meta"
SINGLE = json.loads((R_META / "single_arm_reference.json").read_text())["arms"]
METACONT = json.loads((R_META / "metacont_reference.json").read_text())["cases"]


@pytest.mark.parametrize("case", SINGLE, ids=lambda c: f"{c['kind']}-n{c['n']}-{c['mean_method']}-{c.get('sd_method', '')}")
def test_single_arm_conversions_match_r_meta(case):
    if case["kind"] == "median_q1_q3":
        got = cv.mean_sd_from_quartiles(case["n"], case["median"], case["q1"], case["q3"], case["mean_method"])
    elif case["kind"] == "median_min_max":
        got = cv.mean_sd_from_range(case["n"], case["median"], case["min"], case["max"], case["mean_method"])
    else:
        got = cv.mean_sd_from_five_numbers(case["n"], case["median"], case["q1"], case["q3"], case["min"],
                                           case["max"], case["mean_method"], case["sd_method"])
    assert float(got.mean) == pytest.approx(case["mean"], rel=1e-10)
    assert float(got.sd) == pytest.approx(case["sd"], rel=1e-10)
    assert got.mean_rule and got.sd_rule


def _settings(case):
    options = {"mean_method": case["mean_method"], "sd_method": case["sd_method"], "method": "REML"}
    if case["measure"] == "SMD":
        options["vtype"] = "UB"            # R meta's SMD variance (metafor vtype "UB")
    return options


@pytest.mark.parametrize("case", METACONT,
                         ids=lambda c: f"{c['dataset']}-{c['measure']}-{c['mean_method']}-{c['sd_method']}")
def test_pool_on_medians_matches_r_meta_metacont(case):
    res = pm.pool(R_META / "data" / f"{case['dataset']}.csv", measure=case["measure"], **_settings(case))
    for column in ("mean_exp", "sd_exp", "mean_ctrl", "sd_ctrl", "yi"):
        np.testing.assert_allclose(res.studies[column], case[column], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(res.studies["se"], case["sei"], rtol=1e-10)
    for ours, theirs in (("estimate", "estimate"), ("se", "se"), ("ci_low", "ci_low"), ("ci_high", "ci_high"),
                         ("tau2", "tau2")):
        assert res.stats[ours] == pytest.approx(case[theirs], rel=1e-6, abs=1e-12)


def test_cli_pool_on_medians_reports_the_conversion(capsys):
    case = next(c for c in METACONT if c["dataset"] == "both_k8" and c["measure"] == "MD"
                and c["mean_method"] == "wan" and c["sd_method"] == "wan")
    path = str(R_META / "data" / "both_k8.csv")
    assert main(["pool", path, "--measure", "MD", "--mean-method", "wan", "--sd-method", "wan",
                 "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    np.testing.assert_allclose([s["mean_exp"] for s in out["studies"]], case["mean_exp"], rtol=1e-10)
    np.testing.assert_allclose([s["sd_ctrl"] for s in out["studies"]], case["sd_ctrl"], rtol=1e-10)
    assert all("wan2014_s3" in s["conversion"] for s in out["studies"])
    assert out["estimate"] == pytest.approx(case["estimate"], rel=1e-6)
    assert main(["pool", path, "--measure", "MD"]) == 0
    text = capsys.readouterr().out
    assert "Converted from what the papers print (8 of 8 studies" in text and "shi2020_s3" in text


def test_mixed_layouts_per_row_and_per_arm():
    """One arm as a median with IQR, the other as a mean with a 95% CI (what notebook 03 shows)."""
    table = pd.DataFrame({"study": ["A", "B"], "n_exp": [20, 30], "median_exp": [3.0, None],
                          "q1_exp": [2.0, None], "q3_exp": [4.5, None], "mean_exp": [None, 3.1],
                          "sd_exp": [None, 1.4], "n_ctrl": [21, 30], "mean_ctrl": [4.0, 4.2],
                          "ci_low_ctrl": [3.2, None], "ci_high_ctrl": [4.8, None], "se_ctrl": [None, 0.3]})
    res = pm.pool(table, measure="MD")
    a, b = res.studies.iloc[0], res.studies.iloc[1]
    expected = cv.mean_sd_from_quartiles(20, 3.0, 2.0, 4.5)
    assert a["mean_exp"] == pytest.approx(float(expected.mean)) and a["sd_exp"] == pytest.approx(float(expected.sd))
    assert a["sd_ctrl"] == pytest.approx(np.sqrt(21) * 1.6 / (2 * stats.t.ppf(0.975, 20)))
    assert b["sd_ctrl"] == pytest.approx(0.3 * np.sqrt(30)) and b["sd_exp"] == 1.4
    assert "luo2018_s2" in a["conversion"] and "sd_from_ci" in a["conversion"]
    assert b["conversion"] == "ctrl: sd_from_se: sd = se*sqrt(n) (Cochrane Handbook 6.5.2.2)"


# ------------------------------------------------------------------ Cochrane Handbook worked examples

def test_sd_from_ci_uses_t_with_n_minus_1_df():
    # Handbook 6.5.2.2: for n = 25 the divisor 3.92 becomes 2 x 2.0639 = 4.128
    got = cv.sd_from_ci(0.0, 4.128, 25)
    assert float(got.value) == pytest.approx(5.0, abs=5e-4)       # 4.128 is printed to 3 decimals
    assert float(cv.sd_from_ci(0.0, 3.92, 100, dist="z").value) == pytest.approx(10.0, rel=1e-3)
    assert float(cv.sd_from_se(2.0, 25).value) == 10.0


def test_se_of_a_difference_from_p_t_and_ci():
    # Handbook 6.5.2.3: MD 3.8, P = 0.008, 25 + 22 participants -> t = 2.78, SE = 1.37
    assert float(cv.se_from_p(3.8, 0.008, df=45).value) == pytest.approx(1.37, abs=0.005)
    assert float(cv.se_from_t(3.8, 2.78).value) == pytest.approx(1.367, abs=0.001)
    assert float(cv.se_from_ci(-1.0, 2.92).value) == pytest.approx(1.0, rel=1e-3)


def test_sd_of_change_and_correlation():
    # Handbook (5.1) 16.4.6.4: SD 2.38 and 2.21, Corr 0.68, n = 10 -> SE of the MD 0.583
    sd = float(cv.sd_change(2.38, 2.21, 0.68).value)
    assert sd / np.sqrt(10) == pytest.approx(0.583, abs=5e-4)
    assert float(cv.correlation_from_sds(2.38, 2.21, sd).value) == pytest.approx(0.68, rel=1e-12)


def test_combine_arms_equals_pooling_the_raw_data():
    rng = np.random.default_rng(5)
    a, b = rng.normal(3, 1, 17), rng.normal(5, 2, 12)
    n, mean, sd, rule = cv.combine_arms(17, a.mean(), a.std(ddof=1), 12, b.mean(), b.std(ddof=1))
    both = np.concatenate([a, b])
    assert n == 29 and mean == pytest.approx(both.mean()) and sd == pytest.approx(both.std(ddof=1), rel=1e-12)
    assert "6.5.a" in rule


def test_hedges_g_from_t_and_f_equal_the_smd_from_arms():
    table = pd.read_csv(FIXTURES.parent.parent / "data" / "examples" / "normand1999.csv")
    n1, n2 = table["n_exp"].to_numpy(float), table["n_ctrl"].to_numpy(float)
    sp = np.sqrt(((n1 - 1) * table["sd_exp"] ** 2 + (n2 - 1) * table["sd_ctrl"] ** 2) / (n1 + n2 - 2))
    t = (table["mean_exp"] - table["mean_ctrl"]) / (sp * np.sqrt(1 / n1 + 1 / n2))
    g, vi, _ = cv.hedges_g_from_t(t, n1, n2)
    reference = pm.escalc(table, "SMD")
    np.testing.assert_allclose(g, reference["yi"], rtol=1e-12)
    np.testing.assert_allclose(vi, reference["vi"], rtol=1e-12)
    g_f, _, _ = cv.hedges_g_from_f(t ** 2, n1, n2, np.sign(t))
    np.testing.assert_allclose(g_f, g, rtol=1e-12)


# ------------------------------------------------------------------ bad input in the new fields

@pytest.mark.parametrize("row, column, message", [
    ("A,20,3.0,,,,,21,4.0,1.0", "median_exp", "needs its quartiles"),
    ("A,20,3.0,2.0,,,,21,4.0,1.0", "q3_exp", "q1_exp is given but q3_exp is empty"),
    ("A,20,3.0,3.5,4.5,,,21,4.0,1.0", "median_exp", "expected min <= q1 <= median <= q3 <= max"),
    ("A,20,3.0,2.0,4.0,5,9,21,4.0,1.0", "q1_exp", "expected min <= q1 <= median <= q3 <= max"),
    ("A,20,,,,,,21,4.0,1.0", "median_exp", "neither mean_exp nor median_exp"),
    ("A,20,3.0,2.0,4.0,,,21,4.0,", "sd_ctrl", "no SD for this arm"),
    ("A,20,3.0,2.0,4.0,,,21,4.0,-1", "sd_ctrl", "must be greater than 0"),
])
def test_bad_conversion_input_is_one_line_and_exit_2(tmp_path, capsys, row, column, message):
    path = tmp_path / "bad.csv"
    path.write_text("study,n_exp,median_exp,q1_exp,q3_exp,min_exp,max_exp,n_ctrl,mean_ctrl,sd_ctrl\n"
                    "Z,20,3.0,2.0,4.0,,,21,4.0,1.0\n" + row + "\n")
    assert main(["pool", str(path), "--measure", "MD"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "line 3 (row 2)" in err[0] and f"column '{column}'" in err[0] and message in err[0]


def test_a_mean_printed_with_its_iqr_keeps_the_mean_and_takes_the_sd_from_the_iqr():
    table = pd.DataFrame({"study": ["A", "B"], "n_exp": [20, 30], "mean_exp": [3.1, 2.9], "q1_exp": [2.0, 1.9],
                          "q3_exp": [4.2, 4.0], "n_ctrl": [20, 30], "mean_ctrl": [4.0, 4.2], "sd_ctrl": [1.0, 1.2]})
    res = pm.pool(table, measure="MD")
    assert list(res.studies["mean_exp"]) == [3.1, 2.9]
    assert res.studies["sd_exp"].iloc[0] == pytest.approx(float(cv.mean_sd_from_quartiles(20, 3.0, 2.0, 4.2).sd))
    assert res.studies["conversion"].iloc[0] == "exp: mean: as printed; sd: wan2014_s2 (iqr/eta(n))"


def test_mean_outside_its_ci_is_refused(tmp_path, capsys):
    path = tmp_path / "ci.csv"
    path.write_text("study,n_exp,mean_exp,ci_low_exp,ci_high_exp,n_ctrl,mean_ctrl,sd_ctrl\nA,20,5,1,4,20,3,1\n")
    assert main(["pool", str(path), "--measure", "MD"]) == 2
    assert "lies outside its CI" in capsys.readouterr().err


# ------------------------------------------------------------------ arguments checked (issue 15, item 5)

BAD_CALLS = [
    # (function, args, kwargs, argument the message must name)
    ("mean_sd_from_quartiles", (40, 3.0, 4.5, 2.0), {}, "q1"),               # swapped quartiles
    ("mean_sd_from_quartiles", (40, 5.0, 2.0, 4.5), {}, "median"),           # median above q3
    ("mean_sd_from_quartiles", (40, 1.0, 2.0, 4.5), {}, "q1"),               # median below q1
    ("mean_sd_from_quartiles", (40, 3.0, 3.0, 3.0), {}, "q3"),               # IQR 0: SD 0
    ("mean_sd_from_quartiles", (1, 3.0, 2.0, 4.5), {}, "n"),
    ("mean_sd_from_quartiles", (0, 3.0, 2.0, 4.5), {}, "n"),
    ("mean_sd_from_quartiles", (-5, 3.0, 2.0, 4.5), {}, "n"),
    ("mean_sd_from_quartiles", (20.5, 3.0, 2.0, 4.5), {}, "n"),
    ("mean_sd_from_quartiles", (40, 3.0, np.inf, 4.5), {}, "q1"),
    ("mean_sd_from_quartiles", (40, np.inf, 2.0, 4.5), {}, "median"),
    ("mean_sd_from_quartiles", (40, [3.0, np.nan], [2.0, 2.0], [4.5, 4.5]), {}, "median"),   # NaN in one only
    ("mean_sd_from_quartiles", (40, "3", 2.0, 4.5), {}, "median"),
    ("mean_sd_from_quartiles", (40, 3.0, 2.0, 4.5), {"mean_method": "mode"}, "mean_method"),
    ("mean_sd_from_range", (40, 3.0, 7.0, 0.5), {}, "minimum"),              # min > max
    ("mean_sd_from_range", (40, 9.0, 0.5, 7.0), {}, "median"),
    ("mean_sd_from_range", (1, 3.0, 0.5, 7.0), {}, "n"),                     # xi(1) = 0: SD inf
    ("mean_sd_from_range", (40, 3.0, 3.0, 3.0), {}, "maximum"),
    ("mean_sd_from_range", (None, 3.0, 0.5, 7.0), {}, "n"),
    ("mean_sd_from_five_numbers", (40, 3.0, 2.0, 4.5, 5.0, 7.0), {}, "minimum"),
    ("mean_sd_from_five_numbers", (40, 3.0, 2.0, 4.5, 0.5, 4.0), {}, "q3"),
    ("mean_sd_from_five_numbers", (40, 3.0, 4.5, 2.0, 0.5, 7.0), {}, "q1"),
    ("mean_sd_from_five_numbers", (1, 3.0, 2.0, 4.5, 0.5, 7.0), {}, "n"),
    ("mean_sd_from_five_numbers", (40, 3.0, 2.0, 4.5, 0.5, 7.0), {"sd_method": "iqr"}, "sd_method"),
    ("sd_from_se", (-0.3, 20), {}, "se"),
    ("sd_from_se", (0.0, 20), {}, "se"),
    ("sd_from_se", (0.3, 1), {}, "n"),
    ("sd_from_se", (0.3, -20), {}, "n"),
    ("sd_from_se", (np.nan, 20), {}, "se"),
    ("sd_from_se", ([0.3, 0.2, 0.1], [20, 20]), {}, "different lengths"),
    ("sd_from_se", (True, 20), {}, "se"),
    ("sd_from_ci", (4.8, 3.2, 20), {}, "ci_low"),                          # reversed CI
    ("sd_from_ci", (3.2, 3.2, 20), {}, "ci_low"),
    ("sd_from_ci", (3.2, 4.8, 20), {"level": 95}, "level"),
    ("sd_from_ci", (3.2, 4.8, 20), {"level": 1.0}, "level"),
    ("sd_from_ci", (3.2, 4.8, 20), {"level": 0.0}, "level"),
    ("sd_from_ci", (3.2, 4.8, 20), {"level": -0.95}, "level"),
    ("sd_from_ci", (3.2, 4.8, 1), {}, "n"),                                  # t with 0 df
    ("sd_from_ci", (3.2, np.inf, 20), {}, "ci_high"),
    ("sd_from_ci", (3.2, 4.8, 20), {"dist": "normal"}, "dist"),
    ("se_from_ci", (2.92, -1.0), {}, "ci_low"),
    ("se_from_ci", (-1.0, 2.92), {"level": 95}, "level"),
    ("se_from_ci", (-1.0, 2.92), {"df": 0}, "df"),
    ("se_from_ci", (-1.0, 2.92), {"df": -3}, "df"),
    ("se_from_p", (3.8, 1.0), {}, "p"),                                      # quantile 0: SE inf
    ("se_from_p", (3.8, 0.0), {}, "p"),                                      # SE 0
    ("se_from_p", (3.8, 1.5), {}, "p"),
    ("se_from_p", (3.8, -0.01), {}, "p"),
    ("se_from_p", (0.0, 0.008), {}, "difference"),
    ("se_from_p", (3.8, 0.008), {"df": 0}, "df"),
    ("se_from_t", (3.8, 0.0), {}, "t"),
    ("se_from_t", (0.0, 2.78), {}, "difference"),
    ("se_from_t", (3.8, np.nan), {}, "t"),
    ("sd_change", (-2.38, 2.21, 0.68), {}, "sd_baseline"),
    ("sd_change", (2.38, 0.0, 0.68), {}, "sd_final"),
    ("sd_change", (2.38, 2.21, 1.5), {}, "correlation"),
    ("sd_change", (2.38, 2.21, -1.5), {}, "correlation"),
    ("sd_change", (2.0, 2.0, 1.0), {}, "correlation"),                       # SD of change 0
    ("correlation_from_sds", (2.38, 2.21, 9.0), {}, "sd_change_"),           # r < -1
    ("correlation_from_sds", (2.38, 2.21, 0.01), {}, "sd_change_"),          # r > 1
    ("correlation_from_sds", (0.0, 2.21, 1.0), {}, "sd_baseline"),
    ("combine_arms", (1, 3.0, 1.0, 12, 5.0, 2.0), {}, "n1"),
    ("combine_arms", (17, 3.0, -1.0, 12, 5.0, 2.0), {}, "sd1"),
    ("combine_arms", (17, 3.0, 1.0, 0, 5.0, 2.0), {}, "n2"),
    ("combine_arms", (17, "x", 1.0, 12, 5.0, 2.0), {}, "mean1"),
    ("hedges_g_from_t", (2.1, 1, 1), {}, "n1"),                              # J(0): NaN
    ("hedges_g_from_t", (np.inf, 20, 20), {}, "t"),
    ("hedges_g_from_t", (2.1, 20, [20, 1]), {}, "n2"),
    ("hedges_g_from_f", (-4.0, 20, 20, 1), {}, "f"),                         # sqrt of a negative
    ("hedges_g_from_f", (4.0, 20, 20, 0), {}, "sign"),
    ("hedges_g_from_f", (4.0, 20, 20, None), {}, "sign"),
]


@pytest.mark.parametrize("name, args, kwargs, argument", BAD_CALLS,
                         ids=[f"{c[0]}-{i}-{c[3]}" for i, c in enumerate(BAD_CALLS)])
def test_conversions_refuse_bad_arguments_naming_them(name, args, kwargs, argument):
    with pytest.raises(InputError) as caught:
        getattr(cv, name)(*args, **kwargs)
    message = caught.value.message
    assert message.startswith(name + ":") and argument in message and "\n" not in message


def _outputs(result):
    if isinstance(result, cv.MeanSD):            # a median given as NaN means "not printed": no mean (None)
        return {"sd": result.sd} if result.mean is None else {"mean": result.mean, "sd": result.sd}
    if isinstance(result, cv.Converted):
        return {"value": result.value}
    if len(result) == 4:
        return {"n": result[0], "mean": result[1], "sd": result[2]}
    return {"g": result[0], "vi": result[1]}


POSITIVE = {"sd", "vi", "n", "value"}


@pytest.mark.parametrize("name", ["sd_from_se", "sd_from_ci", "se_from_ci", "se_from_p", "se_from_t",
                                  "mean_sd_from_quartiles", "mean_sd_from_range", "mean_sd_from_five_numbers",
                                  "sd_change", "combine_arms", "hedges_g_from_t", "hedges_g_from_f"])
def test_conversions_on_random_arguments_raise_or_return_finite_positive_values(name):
    """Random (often impossible) arguments, from the Handbook's and Wan 2014's worked ranges: each call
    either raises InputError or returns finite numbers, SDs, SEs and variances above 0."""
    rng = np.random.default_rng(15)
    pool = [-2.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 20.0, 95.0, np.nan, np.inf]
    arity = {"sd_from_se": 2, "sd_from_ci": 3, "se_from_ci": 2, "se_from_p": 2, "se_from_t": 2,
             "mean_sd_from_quartiles": 4, "mean_sd_from_range": 4, "mean_sd_from_five_numbers": 6, "sd_change": 3,
             "combine_arms": 6, "hedges_g_from_t": 3, "hedges_g_from_f": 4}[name]
    refused = returned = 0
    for _ in range(300):
        args = [float(rng.choice(pool)) for _ in range(arity)]
        try:
            result = getattr(cv, name)(*args)
        except InputError:
            refused += 1
            continue
        returned += 1
        for key, value in _outputs(result).items():
            value = np.asarray(value, dtype=float)
            assert np.all(np.isfinite(value)), (name, args, key, value)
            if key in POSITIVE or (key == "value" and name != "correlation_from_sds"):
                assert np.all(value > 0), (name, args, key, value)
    assert refused and returned


def test_a_median_not_printed_gives_the_sd_and_no_mean():
    got = cv.mean_sd_from_quartiles(20, None, 2.0, 4.2)
    assert got.mean is None and float(got.sd) == pytest.approx(float(cv.mean_sd_from_quartiles(20, 3.0, 2.0, 4.2).sd))
    assert cv.mean_sd_from_range(20, np.nan, 0.5, 7.0).mean is None
