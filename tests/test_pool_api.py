"""The pandas-first API, the result object, the CLI output and the edge cases k = 1, 2."""

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest

import pfps_meta as pm
from pfps_meta.cli import main
from pfps_meta.models.univariate import JSON_FIELDS
from tests.conftest import ROOT

NORMAND = ROOT / "data" / "examples" / "normand1999.csv"
REQUIRED_JSON = ["k", "estimate", "se", "ci_low", "ci_high", "p", "tau2", "tau2_ci_low", "tau2_ci_high",
                 "tau", "i2", "i2_ci_low", "i2_ci_high", "h2", "q", "q_df", "q_p", "pi_low", "pi_high",
                 "method", "ci", "measure", "converged", "studies"]


def test_pool_normand_md_matches_metafor(metafor_reference):
    ref = next(c for c in metafor_reference["cases"]
               if c["dataset"] == "normand1999_MD" and c["method"] == "REML" and c["test"] == "knha")
    res = pm.pool(NORMAND, measure="MD", method="REML", ci="hksj")
    for name in ("estimate", "ci_low", "ci_high", "tau2", "i2", "pi_low", "pi_high"):
        assert res.stats[name] == pytest.approx(ref[name], rel=1e-6)
    assert res.estimate == res.stats["estimate"]
    frame = res.to_frame()
    assert list(frame["study"])[-1] == "Pooled (REML)"
    assert len(frame) == res.k + 1
    assert frame["weight"].iloc[:-1].sum() == pytest.approx(100)
    assert "Random-effects model (k = 9" in str(res)


def test_to_dict_has_the_documented_fields_and_is_json():
    res = pm.pool(NORMAND, measure="SMD", method="DL")
    out = res.to_dict()
    for name in REQUIRED_JSON:
        assert name in out
    assert set(JSON_FIELDS) <= set(out)
    text = json.dumps(out, allow_nan=False)
    assert json.loads(text)["studies"][0] == {**out["studies"][0]}
    assert out["measure"] == "SMD" and out["smd_convention"] == "metafor"


def test_cli_json_and_text(capsys):
    assert main(["pool", str(NORMAND), "--measure", "MD", "--method", "PM", "--ci", "hksj",
                 "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert all(name in out for name in REQUIRED_JSON)
    assert out["method"] == "PM" and out["ci"] == "hksj" and out["k"] == 9
    assert {"study", "yi", "vi", "weight"} <= set(out["studies"][0])
    assert main(["pool", str(NORMAND), "--measure", "MD"]) == 0
    text = capsys.readouterr().out
    assert "Test for heterogeneity: Q(df = 8)" in text and "prediction interval" in text


def test_single_study_has_no_heterogeneity():
    res = pm.pool(pd.DataFrame({"study": ["only"], "yi": [0.4], "vi": [0.04]}))
    assert res.k == 1 and res.estimate == pytest.approx(0.4)
    assert res.ci_low == pytest.approx(0.4 - 1.959963984540054 * 0.2)
    out = res.to_dict()
    for name in ("tau2", "i2", "h2", "q", "q_p", "pi_low", "tau2_ci_low"):
        assert out[name] is None
    hksj = pm.pool(pd.DataFrame({"study": ["only"], "yi": [0.4], "vi": [0.04]}), ci="hksj")
    assert hksj.ci_low == pytest.approx(res.ci_low) and "Wald" in hksj.notes[0]


@pytest.mark.parametrize("method", ["DL", "REML", "ML", "PM", "SJ", "HE", "EB", "HS", "FE"])
def test_two_studies_work_for_every_estimator(method):
    res = pm.pool(pd.DataFrame({"study": ["a", "b"], "yi": [-1.2, 0.4], "vi": [0.3, 0.45]}),
                  method=method, ci="hksj")
    assert res.k == 2 and math.isfinite(res.estimate) and math.isfinite(res.ci_low)
    assert res.converged


def test_non_convergence_is_reported_not_hidden():
    frame = pd.DataFrame({"study": list("abcdef"), "yi": [-3.1, -0.2, -1.8, -4.5, 0.6, -2.2],
                          "vi": [0.40, 0.15, 0.55, 0.90, 0.20, 0.35]})
    with pytest.warns(pm.ConvergenceWarning, match="did not converge"):
        res = pm.pool(frame, method="REML", maxiter=1)
    assert res.converged is False
    assert res.to_dict()["converged"] is False
    assert "did not converge" in res.summary()


def test_numeric_warnings_are_not_swallowed():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pm.pool(NORMAND, measure="MD")
    assert np.geterr()["invalid"] == "warn"


# ------------------------------------------------------------------------------- preset= (issue 18, item 7)

BCG = ROOT / "data" / "examples" / "bcg.csv"


def test_pool_with_a_preset_is_pool_with_its_settings():
    from pfps_meta.conventions import PRESETS

    by_name = pm.pool(NORMAND, measure="SMD", preset="revman5")
    by_settings = pm.pool(NORMAND, measure="SMD", settings=PRESETS["revman5"].settings)
    assert by_name.settings == PRESETS["revman5"].settings and by_name.to_dict() == by_settings.to_dict()
    effects = pm.effect_table(pm.read_csv(NORMAND), "MD")
    assert pm.pool_effects(effects, measure="MD", preset="r_meta").settings == PRESETS["r_meta"].settings


def test_options_given_with_a_preset_override_it():
    res = pm.pool(NORMAND, measure="MD", preset="revman5", method="REML", ci="hksj")
    assert (res.method, res.ci_method, res.i2_method, res.settings.smd_convention) == ("REML", "hksj", "q", "revman5")
    assert res.settings.prediction_interval is False


def test_unknown_preset_lists_the_names_and_preset_with_settings_is_refused():
    with pytest.raises(pm.InputError, match="unknown preset 'revman6'; choose from metafor, revman5, revman_web_2025, r_meta"):
        pm.pool(NORMAND, measure="MD", preset="revman6")
    with pytest.raises(pm.InputError, match="give settings= or preset=, not both"):
        pm.pool(NORMAND, measure="MD", preset="revman5", settings=pm.Settings())


def test_revman5_preset_uses_revman_mh_on_binary_data_says_so_and_leaves_continuous_data_alone():
    from pfps_meta.conventions import PRESETS

    binary = pm.pool(BCG, measure="RR", preset="revman5")
    assert binary.method == "MH_DL" and any("revman5 preset on 2x2 counts" in note for note in binary.notes)
    assert binary.to_dict()["estimate"] == pm.pool(BCG, measure="RR", method="MH_DL").to_dict()["estimate"]
    continuous = pm.pool(NORMAND, measure="MD", preset="revman5")
    assert not any("Mantel-Haenszel" in note for note in continuous.notes)
    assert continuous.to_dict() == pm.pool(NORMAND, measure="MD", settings=PRESETS["revman5"].settings).to_dict()
    fixed = pm.pool(BCG, measure="RR", preset="revman5", method="MH")      # RevMan 5's fixed-effect default
    assert fixed.method == "MH" and math.exp(fixed.estimate) == pytest.approx(0.6353, abs=5e-5)
    assert pm.pool(BCG, measure="RR", preset="revman5", method="DL").method == "DL"


def test_a_preset_with_a_binary_method_uses_it_on_counts_only():
    from dataclasses import replace

    from pfps_meta.conventions import PRESETS

    mh = replace(PRESETS["revman5"], name="mh_test", settings=PRESETS["revman5"].settings.replace(method="FE"),
                 binary_method="MH", binary_note="")
    assert pm.pool(BCG, measure="OR", preset=mh).method == "MH"
    assert pm.pool(BCG, measure="OR", preset=mh, method="FE").method == "FE"
    assert pm.pool(NORMAND, measure="MD", preset=mh).method == "FE"
