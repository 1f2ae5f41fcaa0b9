"""No silent wrong result in the univariate models and their labels (issue 15, items 5 and 7).

References: tests/fixtures/models_inputs.json, written by validation/make_models_fixtures.R (metafor 3.8-1,
tight control): dat.bcg (log RR) without an intercept (rma.uni and rma.mv), the REML likelihood-ratio test
of models with different fixed effects (anova), and rma(weights=) at three scales of the same weights.
"""

import ast
import json
import types
import warnings

import numpy as np
import pandas as pd
import pytest

import pfps_meta as pm
from pfps_meta.cli import main
from pfps_meta.conventions import Settings
from pfps_meta.errors import PfpsWarning
from pfps_meta.models.metareg import design, likelihood_ratio_test, meta_regression
from tests.conftest import FIXTURES, ROOT

REF = json.loads((FIXTURES / "models_inputs.json").read_text())
BCG_CSV = ROOT / "data" / "examples" / "bcg.csv"
BCG = pm.escalc(pd.read_csv(BCG_CSV), "RR")
RTOL = 1e-6          # fixed effects, SEs, statistics
RTOL_VAR = 1e-5      # variance components


def _analysis_result(level, measure="RR"):
    from pfps_meta.evidence.specs import Analysis, AnalysisResult, StudyTable

    settings = Settings(level=level)
    analysis = Analysis(id="bcg", review="t", label="BCG vaccine", measure=measure, settings=settings, source=ROOT)
    table = BCG[["study", "yi", "vi"]]
    return AnalysisResult(analysis=analysis, result=pm.pool_effects(table, measure=measure, settings=settings),
                          studies=StudyTable(table=table, missing=[], expected=list(table["study"]), notes=[]),
                          published=None)


# ------------------------------------------------------------------------------------------------ labels


def test_bcg_level_975_labels_in_the_text_and_html_summaries():
    res = pm.pool(BCG_CSV, measure="RR", level=0.975)
    text = str(res)
    assert "97.5% CI" in text and "97.5% prediction interval" in text
    assert "98%" not in text and "95%" not in text
    assert "97.5% CI" in res._repr_html_()


def test_bcg_level_90_labels_in_the_summary_table_grade_and_report(tmp_path):
    from pfps_meta.analysis.grade import summary_of_findings
    from pfps_meta.present import report
    from pfps_meta.present.tables import display_frame, summary_table

    ar = _analysis_result(0.9)
    shown = display_frame(summary_table([ar]))
    assert "Estimate [90% CI]" in shown.columns and "90% prediction interval" in shown.columns
    sof = summary_of_findings([ar])
    assert "Effect (90% CI)" in sof.columns and "(90% CI " in sof["Effect (90% CI)"].iloc[0]
    doc = report._Document(tmp_path, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PfpsWarning)
        report._sensitivity_section(doc, ar)
    body = "".join(doc.body)
    assert "Estimate [90% CI]" in body and "95% CI" not in body
    spec = types.SimpleNamespace(review={"id": "t"})
    assert "intervals are 90% intervals" in report.methods_paragraph(spec, [ar.analysis])


def test_analyses_at_two_levels_each_name_their_own():
    from pfps_meta.analysis.grade import summary_of_findings
    from pfps_meta.present.tables import display_frame, summary_table

    both = [_analysis_result(0.9), _analysis_result(0.95)]
    shown = display_frame(summary_table(both))
    cells = shown["Estimate [CI]"].tolist()
    assert "[90% CI " in cells[0] and "[95% CI " in cells[1]
    sof = summary_of_findings(both)
    assert sof["Effect (CI)"].str.contains("90% CI").tolist() == [True, False]


# ------------------------------------------------------------------------------------------------ measure


def test_pool_and_pool_effects_refuse_an_unknown_measure_with_one_message():
    table = BCG[["study", "yi", "vi"]]
    with pytest.raises(pm.InputError) as via_pool:
        pm.pool(table, measure="XX")
    with pytest.raises(pm.InputError) as via_effects:
        pm.pool_effects(table, measure="XX")
    assert str(via_pool.value) == str(via_effects.value)
    assert "measure must be one of MD, SMD" in str(via_effects.value) and "(got 'XX')" in str(via_effects.value)


# ------------------------------------------------------------------------------------------------ moderators


def _bcg_with(column, row, value):
    table = BCG.copy()
    table[column] = table[column].astype(object)
    table.loc[row, column] = value
    return table


@pytest.mark.parametrize("value, says", [("NA", "missing"), ("", "missing"), ("15%", "'15%' is not a number"),
                                         ("4O", "'4O' is not a number")])
def test_bcg_latitude_with_one_bad_cell_is_refused_naming_the_cell(value, says):
    with pytest.raises(pm.InputError) as err:
        design(_bcg_with("ablat", 3, value), "ablat")
    assert err.value.row == 4 and err.value.column == "ablat" and says in str(err.value)


def test_bcg_text_moderator_needs_c_and_c_gives_the_factor():
    with pytest.raises(pm.InputError, match=r"write C\(alloc\)"):
        design(BCG, "alloc")
    X, names, refs = design(BCG, "C(alloc)")
    assert names == ["alloc[random]", "alloc[systematic]"] and refs == {"alloc": "alternate"}
    X2, names2, _ = design(BCG, ["alloc"], factors=["alloc"])
    assert names2 == names and np.array_equal(X, X2)
    X3, names3, _ = design(BCG, "ablat + C(alloc)")
    assert names3 == ["ablat"] + names and np.array_equal(X3[:, 1:], X)
    _, years, year_ref = design(BCG, "C(year)")          # numeric levels in numeric order, as R's factor()
    levels = sorted(set(BCG["year"]))
    assert year_ref == {"year": str(levels[0])} and years == [f"year[{y}]" for y in levels[1:]]
    with pytest.raises(pm.InputError, match="factors: year is not among the moderators"):
        design(BCG, "ablat", factors=["year"])
    with pytest.raises(pm.InputError, match="no column 'lat'"):
        design(BCG, "C(lat)")


def test_bcg_sensitivity_cli_moderators(tmp_path, capsys):
    base = ["sensitivity", str(BCG_CSV), "--measure", "RR", "--format", "json"]
    assert main(base + ["--moderator", "ablat"]) == 0
    terms = [c["term"] for c in json.loads(capsys.readouterr().out)["meta_regression"]["coefficients"]]
    assert terms == ["intercept", "ablat"]
    assert main(base + ["--moderator", "C(alloc)"]) == 0
    terms = [c["term"] for c in json.loads(capsys.readouterr().out)["meta_regression"]["coefficients"]]
    assert terms == ["intercept", "alloc[random]", "alloc[systematic]"]
    assert main(base + ["--moderator", "alloc"]) == 2
    assert "write C(alloc)" in capsys.readouterr().err
    path = tmp_path / "bcg_na.csv"
    raw = pd.read_csv(BCG_CSV)
    raw["ablat"] = raw["ablat"].astype(object)
    raw.loc[3, "ablat"] = "NA"
    raw.to_csv(path, index=False)
    assert main(["sensitivity", str(path), "--measure", "RR", "--moderator", "ablat"]) == 2
    err = capsys.readouterr().err
    assert "row 4" in err and "column 'ablat'" in err and "lat[" not in err


# ------------------------------------------------------------------------------------------------ weights


@pytest.mark.parametrize("case", REF["weights"], ids=lambda c: f"scale{c['scale']:g}")
def test_bcg_user_weights_are_relative(case):
    weights = (BCG["year"].to_numpy(float) - 1930) * case["scale"]
    res = pm.pool(BCG[["study", "yi", "vi"]], weights=weights).stats
    for name in ("estimate", "se", "ci_low", "ci_high"):
        assert res[name] == pytest.approx(case[name], rel=RTOL), name
    batch = pm.pool_batch(BCG["yi"], BCG["vi"], weights=weights)
    assert batch.se[0] == pytest.approx(case["se"], rel=RTOL)


def test_weights_errors_name_the_row_and_file(tmp_path):
    path = tmp_path / "w.csv"
    frame = BCG[["study", "yi", "vi"]].assign(w=1.0)
    frame.loc[2, "w"] = 0.0
    frame.to_csv(path, index=False)
    with pytest.raises(pm.InputError) as err:
        pm.pool(path, weights="w")
    assert err.value.row == 3 and err.value.column == "w" and "w.csv" in str(err.value)
    with pytest.raises(pm.InputError, match=r"study 'Aronson 1948'|study '.*'") as err:
        pm.pool(BCG[["study", "yi", "vi"]], weights=-np.ones(len(BCG)))
    assert err.value.row == 1
    with pytest.raises(pm.InputError, match=r"weights\[1\]"):
        pm.pool_batch([0.1, 0.2], [0.1, 0.1], weights=[1.0, np.nan])


# ------------------------------------------------------------------------------------------------ wrong types

TABLE = BCG[["study", "yi", "vi"]]
CALLS = {
    "pool-int": (lambda: pm.pool(5), "data"),
    "pool-none": (lambda: pm.pool(None), "data"),
    "pool-list": (lambda: pm.pool([1, 2]), "data"),
    "pool-settings-text": (lambda: pm.pool(TABLE, settings="REML"), "settings"),
    "pool-measure-number": (lambda: pm.pool(TABLE, measure=5), "measure"),
    "pool-weights-short": (lambda: pm.pool(TABLE, weights=[1, 2]), "weights"),
    "pool-weights-text": (lambda: pm.pool(TABLE, weights=["a"] * len(TABLE)), "weights"),
    "pool_effects-int": (lambda: pm.pool_effects(5), "table"),
    "pool_effects-no-vi": (lambda: pm.pool_effects(TABLE[["study", "yi"]]), "'vi'"),
    "pool_effects-nan-yi": (lambda: pm.pool_effects(TABLE.assign(yi=[np.nan] + list(TABLE["yi"][1:]))), "'yi'"),
    "pool_effects-notes-text": (lambda: pm.pool_effects(TABLE, notes="x"), "notes"),
    "batch-text": (lambda: pm.pool_batch("abc", [1.0]), "yi"),
    "batch-none": (lambda: pm.pool_batch(None, None), "yi"),
    "batch-text-array": (lambda: pm.pool_batch(["0.1", "0.2"], [0.1, 0.1]), "yi"),
    "batch-bool": (lambda: pm.pool_batch([True, False], [0.1, 0.1]), "yi"),
    "batch-object": (lambda: pm.pool_batch(np.array([0.1, None], dtype=object), [0.1, 0.1]), "yi[1]"),
    "batch-shape": (lambda: pm.pool_batch([1.0, 2.0], [0.1, 0.2, 0.3]), "vi"),
    "batch-3d": (lambda: pm.pool_batch(np.ones((2, 2, 2)), np.ones((2, 2, 2))), "yi"),
    "batch-scalar": (lambda: pm.pool_batch(0.5, 0.1), "yi"),
    "batch-empty": (lambda: pm.pool_batch([], []), "yi"),
    "batch-inf-yi": (lambda: pm.pool_batch([0.1, np.inf], [0.1, 0.1]), "yi[1]"),
    "batch-inf-vi": (lambda: pm.pool_batch([[0.1, 0.2], [0.3, 0.4]], [[0.1, 0.1], [np.inf, 0.1]]), "vi[1, 0]"),
    "batch-negative-vi": (lambda: pm.pool_batch([0.1, 0.2], [0.1, -1.0]), "vi[1]"),
    "batch-settings-text": (lambda: pm.pool_batch([0.1, 0.2], [0.1, 0.1], settings="DL"), "settings"),
    "batch-weights-text": (lambda: pm.pool_batch([0.1, 0.2], [0.1, 0.1], weights="w"), "weights"),
    "batch-weights-shape": (lambda: pm.pool_batch([0.1, 0.2], [0.1, 0.1], weights=[1.0, 1.0, 1.0]), "weights"),
    "estimate_tau2-maxiter": (lambda: pm.estimate_tau2([0.1, 0.2], [0.1, 0.1], maxiter="many"), "maxiter"),
    # a named text Series is a categorical moderator now; unnamed text values still cannot be one
    "metareg-text-x": (lambda: meta_regression(BCG["yi"], BCG["vi"], BCG["alloc"].to_numpy()), "X"),
    "metareg-nan-x": (lambda: meta_regression(BCG["yi"], BCG["vi"], [np.nan] + [1.0] * 12), "X[0, 0]"),
    "metareg-short-x": (lambda: meta_regression(BCG["yi"], BCG["vi"], [1.0, 2.0]), "X"),
    "metareg-names": (lambda: meta_regression(BCG["yi"], BCG["vi"], BCG["ablat"], names=["a", "b"]), "names"),
    "design-not-a-table": (lambda: design(BCG.to_dict(), "ablat"), "table"),
    "design-number": (lambda: design(BCG, 3), "moderators"),
}


@pytest.mark.parametrize("call, argument", list(CALLS.values()), ids=list(CALLS))
def test_wrong_arguments_are_refused_naming_the_argument(call, argument):
    with pytest.raises(pm.InputError) as err:
        call()
    assert argument in str(err.value) and "\n" not in str(err.value)


# ------------------------------------------------------------------------------------------------ metafor


@pytest.mark.parametrize("method", ["REML", "ML"])
def test_bcg_meta_regression_without_intercept_matches_the_model_metafor_rma_mv_fits(method):
    mv = REF["no_intercept"][method]["rma_mv"]
    fit = meta_regression(BCG["yi"], BCG["vi"], BCG["ablat"], names=["ablat"], intercept=False, method=method)
    assert fit.tau2 == pytest.approx(mv["tau2"], rel=RTOL_VAR)
    assert fit.qe == pytest.approx(mv["qe"], rel=RTOL) and fit.qe_p == pytest.approx(mv["qe_p"], rel=RTOL)
    for ours, theirs in (("beta", "beta"), ("se", "se"), ("statistic", "zval"), ("p", "pval"),
                         ("ci_low", "ci_low"), ("ci_high", "ci_high")):
        assert getattr(fit, ours)[0] == pytest.approx(mv[theirs], rel=RTOL), ours
    assert fit.fit["loglik"] == pytest.approx(mv["loglik"], rel=RTOL)


@pytest.mark.parametrize("method", ["REML", "ML"])
def test_bcg_rma_uni_without_intercept_is_the_fit_to_mean_centred_yi(method):
    """Why pfps-meta differs from rma.uni here (docs/conventions.md): rma.uni estimates tau2 and QE from
    yi - mean(yi). Fitting the centred yi reproduces its tau2 and QE; our fit of yi does not."""
    uni = REF["no_intercept"][method]["rma_uni"]
    y = BCG["yi"].to_numpy()
    centred = meta_regression(y - y.mean(), BCG["vi"], BCG["ablat"], intercept=False, method=method)
    assert centred.tau2 == pytest.approx(uni["tau2"], rel=RTOL_VAR) and centred.qe == pytest.approx(uni["qe"], rel=RTOL)
    ours = meta_regression(y, BCG["vi"], BCG["ablat"], intercept=False, method=method)
    assert abs(ours.tau2 - uni["tau2"]) > 0.1 and abs(ours.qe - uni["qe"]) > 100


def test_bcg_reml_likelihood_ratio_test_with_different_fixed_effects_warns_as_metafor():
    ref = REF["lrt_reml"]
    full = meta_regression(BCG["yi"], BCG["vi"], BCG["ablat"], names=["ablat"], method="REML")
    reduced = meta_regression(BCG["yi"], BCG["vi"], np.ones((len(BCG), 0)), method="REML")
    assert full.fit["loglik"] == pytest.approx(ref["ll_full"], rel=RTOL)
    assert reduced.fit["loglik"] == pytest.approx(ref["ll_reduced"], rel=RTOL)
    with pytest.warns(PfpsWarning, match="not comparable"):
        out = likelihood_ratio_test(full, reduced)
    assert out["lrt"] == pytest.approx(ref["lrt"], rel=RTOL) and out["p"] == pytest.approx(ref["p"], rel=RTOL)
    assert out["df"] == ref["df"] == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", PfpsWarning)
        refit = likelihood_ratio_test(full, reduced, refit=True)
    assert refit["method"] == "ML" and refit["lrt"] == pytest.approx(ref["refit_lrt"], rel=RTOL)
    assert refit["p"] == pytest.approx(ref["refit_p"], rel=RTOL)


# ------------------------------------------------------------------------------------------------ structure


@pytest.mark.parametrize("module", ["models/metareg.py", "models/pooling.py", "models/univariate.py",
                                    "models/tau2.py", "present/tables.py", "analysis/grade.py"])
def test_no_function_longer_than_80_lines(module):
    tree = ast.parse((ROOT / "pfps_meta" / module).read_text())
    long = [(node.name, node.end_lineno - node.lineno + 1) for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 80]
    assert not long
