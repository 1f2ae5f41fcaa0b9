"""Mantel-Haenszel and Peto (issue 21, item 1) against metafor 3.8-1's rma.mh and rma.peto.

Reference values: tests/fixtures/mh/metafor_mh.json, written by validation/make_mh_fixtures.R (bcg, the
zero cells of nielweise2007 under metafor's default correction and under add / to / drop00 options, and
one study of bcg)."""

import json
import math

import numpy as np
import pandas as pd
import pytest

import pfps_meta as pm
from pfps_meta.cli import main
from pfps_meta.conventions import OPTION_BY_NAME, POOLING_METHODS, TAU2_ESTIMATORS
from tests.conftest import FIXTURES, ROOT

BCG = ROOT / "data" / "examples" / "bcg.csv"
NIELWEISE = FIXTURES / "mh" / "nielweise2007.csv"
REFERENCE = json.loads((FIXTURES / "mh" / "metafor_mh.json").read_text())
MODEL_FIELDS = {name: name for name in ("estimate", "se", "ci_low", "ci_high", "q", "q_p", "i2", "h2",
                                        "loglik", "deviance", "aic", "bic", "aicc")} | {"p": "pval", "statistic": "zval"}
OR_TESTS = {"cmh": "cmh", "cmh_p": "cmh_p", "co": "cochran", "co_p": "cochran_p", "bd": "breslow_day",
            "bd_p": "breslow_day_p", "tarone": "tarone", "tarone_p": "tarone_p"}


def _data(name):
    if name == "nielweise2007":
        return pm.read_csv(NIELWEISE)
    data = pm.read_csv(BCG)
    return data.iloc[:1].copy() if name == "bcg_k1" else data


def _options(case):
    """metafor's add / to / drop00 (one value: escalc only; two: escalc, then the MH sums), correct and
    level, as pfps-meta options."""
    given = case["options"] or {}
    out = {}
    for key, first, second in (("add", "mh_add", "mh_sums_add"), ("to", "mh_to", "mh_sums_to"),
                               ("drop00", "mh_drop00", "mh_sums_drop00")):
        if key in given:
            values = given[key] if isinstance(given[key], list) else [given[key]]
            out[first] = values[0]
            if len(values) == 2:
                out[second] = values[1]
    if "correct" in given:
        out["cmh_correct"] = given["correct"]
    if "level" in given:
        out["level"] = given["level"] / 100
    return out


def _close(ours, theirs, what):
    if theirs is None:
        assert ours is None or not math.isfinite(ours), what
    else:
        assert ours == pytest.approx(theirs, rel=1e-6, abs=1e-12), what


def _case_id(case):
    return f"{case['method']}-{case['measure']}-{case['dataset']}-{json.dumps(case['options'] or {})}"


@pytest.mark.parametrize("case", REFERENCE["cases"], ids=_case_id)
def test_mh_and_peto_match_metafor_rma_mh_and_rma_peto(case):
    res = pm.pool(_data(case["dataset"]), measure=case["measure"], method=case["method"], **_options(case))
    s = res.stats
    for ours, theirs in MODEL_FIELDS.items():
        _close(s[ours], case[theirs], theirs)
    assert s["k"] == case["k"] and s["q_df"] == max(case["k_yi"] - 1, 0)
    if case["method"] == "MH_DL":
        _close(s["tau2"], case["tau2"], "tau2")
    if case["method"] == "MH" and case["measure"] == "OR":
        for theirs, ours in OR_TESTS.items():
            _close(s[ours], case[theirs], theirs)
        assert s["k_pos"] == case["k_pos"]
    studies = res.studies
    for column in ("yi", "vi", "weight"):
        values = case[column] if isinstance(case[column], list) else [case[column]]   # k = 1: unboxed
        expected = np.array([np.nan if v is None else v for v in values], dtype=float)
        np.testing.assert_allclose(studies[column].to_numpy(dtype=float), expected, rtol=1e-6, atol=1e-12,
                                   err_msg=column)


def test_bcg_mh_rr_and_peto_or_are_the_published_numbers():
    rr = pm.pool(BCG, measure="RR", method="MH")
    assert [round(math.exp(rr.stats[k]), 4) for k in ("estimate", "ci_low", "ci_high")] == [0.6353, 0.5881, 0.6862]
    peto = pm.pool(BCG, measure="OR", method="PETO")
    assert [round(math.exp(peto.stats[k]), 4) for k in ("estimate", "ci_low", "ci_high")] == [0.6222, 0.5746, 0.6738]


def test_mh_result_prints_like_rma_mh_and_works_as_a_meta_result():
    res = pm.pool(BCG, measure="OR", method="MH")
    text = str(res)
    assert text.startswith("Fixed-Effects Model (k = 13; Mantel-Haenszel, OR)")
    for line in ("Q(df = 12) = 163.9426, p-val < .0001", "Model Results (OR scale, 95% CI):",
                 "Cochran-Mantel-Haenszel Test:    CMH = 135.6889, df = 1, p-val < .0001",
                 "Tarone's Test for Heterogeneity: X^2 = 171.7567, df = 12, p-val < .0001"):
        assert line in text, line
    frame = res.to_frame()
    assert list(frame["study"])[-1] == "Pooled (MH)" and frame["weight"].iloc[:-1].sum() == pytest.approx(100)
    out = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert out["method"] == "MH" and out["pi_low"] is None and out["count_model"]["k_pos"] == 13
    assert out["studies"][0]["study"] == "Aronson 1948"
    assert "<pre>" in res._repr_html_()


def test_options_that_do_not_apply_are_named_in_the_notes():
    res = pm.pool(BCG, measure="RR", method="MH", ci_method="hksj")
    assert any("no tau² CI and no prediction interval" in note for note in res.notes)
    assert any("hksj does not apply" in note for note in res.notes)
    zeros = pm.pool(NIELWEISE, measure="OR", method="MH")
    assert any("Yucel 2004" in note and "kept in the pooled sums" in note for note in zeros.notes)


@pytest.mark.parametrize("kwargs, message", [
    ({"measure": "RR", "method": "PETO"}, "Peto's method estimates an odds ratio only"),
    ({"measure": "MD", "method": "MH"}, "cannot pool measure MD"),
    ({"measure": None, "method": "MH"}, "a measure is needed"),
    ({"measure": "OR", "method": "MH", "weights": [1.0] * 13}, "user weights do not apply"),
    ({"measure": "OR", "method": "MH", "mh_to": "some"}, "'some' is not one of"),
    ({"measure": "OR", "method": "MH", "mh_add": -0.5}, "must be 0 or more"),
])
def test_methods_refuse_what_they_cannot_pool(kwargs, message):
    with pytest.raises(pm.InputError, match=message):
        pm.pool(BCG, **kwargs)


def test_effect_level_input_with_mh_says_mh_needs_counts():
    table = pd.DataFrame({"study": ["a", "b"], "yi": [0.1, 0.3], "vi": [0.04, 0.05]})
    with pytest.raises(pm.InputError, match="needs the counts of each 2x2 table"):
        pm.pool(table, measure="OR", method="MH")
    with pytest.raises(pm.InputError, match="needs the counts of each 2x2 table"):
        pm.pool_effects(table, measure="OR", method="PETO")


def test_pool_effects_on_an_effect_table_with_counts_recomputes_metafors_study_effects():
    table = pm.effect_table(pm.read_csv(NIELWEISE), "OR")
    res = pm.pool_effects(table, measure="OR", method="MH")
    case = next(c for c in REFERENCE["cases"] if c["dataset"] == "nielweise2007" and c["method"] == "MH"
                and c["measure"] == "OR" and not c["options"])
    assert res.stats["estimate"] == pytest.approx(case["estimate"], rel=1e-6)
    assert np.isnan(res.studies.set_index("study").loc["Yucel 2004", "yi"])   # drop00, as escalc


def test_not_estimable_is_an_input_error_not_nan():
    table = pd.DataFrame({"study": ["a", "b"], "events_exp": [0, 0], "n_exp": [10, 12],
                          "events_ctrl": [2, 3], "n_ctrl": [10, 12]})
    with pytest.raises(pm.InputError, match="no events in the experimental arm"):
        pm.pool(table, measure="RR", method="MH")
    with pytest.raises(pm.InputError, match="not estimable"):
        pm.pool(table, measure="OR", method="MH")


def test_methods_are_registered_once_for_api_cli_and_spec(tmp_path, capsys):
    assert set(TAU2_ESTIMATORS) < set(POOLING_METHODS) and {"MH", "PETO"} <= set(POOLING_METHODS)
    assert "MH" not in TAU2_ESTIMATORS and OPTION_BY_NAME["method"].choices is POOLING_METHODS
    assert main(["pool", str(BCG), "--measure", "RR", "--method", "MH", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["method"] == "MH" and math.exp(out["estimate"]) == pytest.approx(0.63528, rel=1e-4)
    spec = tmp_path / "mh.toml"
    spec.write_text(f'[review]\nid = "x"\n[[analyses]]\nid = "a"\nmeasure = "OR"\nmethod = "PETO"\n'
                    f'data = "{BCG}"\n')
    from pfps_meta.evidence.specs import load_spec

    assert load_spec(spec).analyses[0].settings.method == "PETO"


def test_a_binary_analysis_run_under_the_revman5_preset_uses_revman_mh_and_says_so(tmp_path):
    from pfps_meta.analysis.presets import run_with_preset
    from pfps_meta.evidence.specs import load_spec

    spec = tmp_path / "bcg.toml"
    spec.write_text(f'[review]\nid = "x"\n[[analyses]]\nid = "a"\nmeasure = "RR"\ndata = "{BCG}"\n')
    analysis = load_spec(spec).analyses[0]
    run = run_with_preset(analysis, None, "revman5")
    assert run.result.method == "MH_DL" and any("revman5 preset on 2x2 counts" in n for n in run.result.notes)
    assert run_with_preset(analysis, None, "metafor").result.method == "REML"


def test_refit_on_a_subset_is_the_fit_of_that_subset():
    from pfps_meta.models.mantel_haenszel import refit

    res = pm.pool(BCG, measure="OR", method="MH")
    without_first = refit(res, np.arange(1, 13))
    direct = pm.pool(pm.read_csv(BCG).iloc[1:], measure="OR", method="MH")
    assert without_first.stats["estimate"] == pytest.approx(direct.stats["estimate"], rel=1e-12)
    assert without_first.k == 12 and refit(res, np.arange(13) != 0).stats == without_first.stats
    with pytest.raises(pm.InputError, match="no study is left"):
        refit(res, np.zeros(13, dtype=bool))


def test_a_spec_analysis_with_method_mh_is_pooled_by_mantel_haenszel(tmp_path):
    from pfps_meta.analysis.presets import preset_diff
    from pfps_meta.evidence.specs import load_spec, run_analysis

    spec = tmp_path / "bcg.toml"
    spec.write_text(f'[review]\nid = "x"\n[[analyses]]\nid = "a"\nmeasure = "RR"\nmethod = "MH"\n'
                    f'mh_add = 0.5\ndata = "{BCG}"\n')
    analysis = load_spec(spec).analyses[0]
    result = run_analysis(analysis).result
    assert result.method == "MH" and math.exp(result.estimate) == pytest.approx(0.63528, rel=1e-4)
    rows = preset_diff(analysis, None, "revman5", "metafor").set_index("quantity")
    assert rows.loc["setting: method", "revman5"] == "MH_DL" and rows.loc["setting: method", "metafor"] == "REML"


@pytest.mark.parametrize("case, measure, method", [("mh_rr", "RR", "MH"), ("mh_or", "OR", "MH"),
                                                   ("mh_rd", "RD", "MH"), ("peto", "OR", "PETO")])
def test_bcg_leave_one_out_of_mantel_haenszel_and_peto_as_metafor(case, measure, method):
    """metafor 3.8-1 leave1out(rma.mh(...)) / leave1out(rma.peto(...)) on dat.bcg
    (validation/make_mh_leave1out_fixtures.R)."""
    import json

    from pfps_meta.analysis import sensitivity

    ref = json.loads((ROOT / "tests" / "fixtures" / "mh" / "leave1out.json").read_text())[case]
    out = sensitivity.leave_one_out(pm.pool(ROOT / "data" / "examples" / "bcg.csv", measure=measure, method=method))
    for ours, theirs in (("estimate", "estimate"), ("se", "se"), ("ci_low", "ci_low"), ("ci_high", "ci_high"),
                         ("p", "p"), ("q", "q"), ("i2", "i2")):
        np.testing.assert_allclose(out[ours].to_numpy(float), np.asarray(ref[theirs], float), rtol=1e-6, atol=1e-12,
                                   err_msg=f"{case} {ours}")


def test_zero_cell_options_reach_the_fit_from_the_spec_settings_and_the_cli(tmp_path, capsys):
    from pfps_meta.evidence.specs import load_spec, run_analysis

    options = {"mh_add": 0.25, "mh_sums_add": 0.5, "mh_sums_to": "only0", "cmh_correct": False}
    wanted = pm.pool(NIELWEISE, measure="OR", method="MH", **options)
    assert wanted.stats["estimate"] != pm.pool(NIELWEISE, measure="OR", method="MH").stats["estimate"]
    spec = tmp_path / "zeros.toml"
    spec.write_text(f'[review]\nid = "x"\n[settings]\nmethod = "MH"\nmh_add = 0.25\nmh_sums_add = 0.5\n'
                    f'mh_sums_to = "only0"\ncmh_correct = false\n[[analyses]]\nid = "a"\nmeasure = "OR"\n'
                    f'data = "{NIELWEISE}"\n')
    result = run_analysis(load_spec(spec).analyses[0]).result
    assert result.stats["estimate"] == wanted.stats["estimate"] and result.stats["cmh"] == wanted.stats["cmh"]
    assert main(["pool", str(NIELWEISE), "--measure", "OR", "--method", "MH", "--mh-add", "0.25",
                 "--mh-sums-add", "0.5", "--mh-sums-to", "only0", "--no-cmh-correct", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["estimate"] == pytest.approx(wanted.stats["estimate"], rel=1e-12)
    assert out["count_model"]["cmh"] == pytest.approx(wanted.stats["cmh"], rel=1e-12)


def test_count_options_a_fit_does_not_read_are_named_in_its_notes():
    inverse_variance = pm.pool(BCG, measure="RR", method="REML", mh_add=0.1)
    assert any(note.startswith("mh_add=0.1 changed nothing") and "method REML" in note
               for note in inverse_variance.notes)
    for method, measure in (("MH", "RR"), ("PETO", "OR"), ("MH_DL", "OR")):
        res = pm.pool(BCG, measure=measure, method=method, cmh_correct=False)
        assert any(note.startswith("cmh_correct=False changed nothing") for note in res.notes), method
    assert not any("changed nothing" in note
                   for note in pm.pool(BCG, measure="OR", method="MH", cmh_correct=False, mh_add=0.1).notes)
    assert not any("changed nothing" in note for note in pm.pool(BCG, measure="RR", method="REML").notes)


@pytest.mark.parametrize("call, message", [
    (lambda mh: mh.fit_counts([1, 2], [10, 10], [2, 3], [10, 10], "OR", "REML"), "^method: 'REML' is not a method"),
    (lambda mh: mh.fit_counts([1, 2], [10, 10], [2, 3], [10, 10], "RR", "PETO"), "cannot pool measure RR"),
    (lambda mh: mh.fit_counts([1, 2], [10], [2, 3], [10, 10]), "^n_exp: one count per table"),
    (lambda mh: mh.fit_counts([-1, 2], [10, 10], [2, 3], [10, 10]), "^events_exp: counts must be finite"),
    (lambda mh: mh.fit_counts(["x", 2], [10, 10], [2, 3], [10, 10]), "^events_exp: numbers are needed"),
    (lambda mh: mh.fit_counts([1, 2], [10, 10], [2, 11], [10, 10]), "^events_ctrl: more events than participants"),
    (lambda mh: mh.refit(pm.pool(BCG, measure="RR", method="MH"), [99]), "^keep: positions 0 to 12"),
    (lambda mh: mh.refit(pm.pool(BCG, measure="RR", method="MH"), ["a"]), "^keep: positions"),
    (lambda mh: mh.pool_counts(pm.read_csv(BCG), "RR", pm.Settings()), "bcg.csv: method: 'REML' is not a method"),
])
def test_count_functions_refuse_bad_arguments_naming_them(call, message):
    from pfps_meta.models import mantel_haenszel

    with pytest.raises(pm.InputError, match=message):
        call(mantel_haenszel)
