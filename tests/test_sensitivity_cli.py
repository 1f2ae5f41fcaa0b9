"""`pfps-meta sensitivity`, `pfps-meta diff` and `pfps-meta reproduce --presets`."""

import json

import pytest

from pfps_meta.cli import main
from pfps_meta.analysis.presets import PRESETS
from tests.conftest import ROOT

BCG = str(ROOT / "data" / "examples" / "bcg.csv")


def test_sensitivity_json_has_the_documented_fields(capsys, metafor_reference):
    assert main(["sensitivity", BCG, "--measure", "RR", "--method", "REML", "--format", "json",
                 "--order", "year", "--subgroup", "alloc", "--moderator", "ablat", "--mcid", "-0.2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"study", "estimate", "ci_low", "ci_high", "tau2", "i2"} <= set(out["leave_one_out"][0])
    assert len(out["leave_one_out"]) == 13 == len(out["influence"])
    assert {"intercept", "statistic", "df", "p"} <= set(out["egger"]["classic"])
    assert {"statistic", "p"} <= set(out["egger"]["mixed"])
    assert {"tau", "p"} <= set(out["begg"])
    assert {"k0", "side", "estimate", "ci_low", "ci_high"} <= set(out["trimfill"])
    assert out["trimfill"]["method"] == "REML"
    assert out["subgroups"]["separate_tau2"]["test"]["df"] == 2
    assert out["meta_regression"]["coefficients"][1]["term"] == "ablat"
    assert 0 < out["predictive_probability"]["probability"] < 1
    ref = next(c for c in metafor_reference["cases"] if c["dataset"] == "bcg_logRR" and c["method"] == "REML"
               and c["test"] == "z")
    assert out["estimate"] == pytest.approx(ref["estimate"], rel=1e-6)


def test_sensitivity_text_and_bad_column(capsys):
    assert main(["sensitivity", str(ROOT / "data" / "examples" / "normand1999.csv"), "--measure", "MD"]) == 0
    text = capsys.readouterr().out
    assert "Egger, classic weighted regression" in text and "little power" in text
    assert main(["sensitivity", BCG, "--measure", "RR", "--subgroup", "nope"]) == 2
    assert "no column 'nope'" in capsys.readouterr().err


def test_presets_say_which_conventions_reproduce_the_worked_example(capsys):
    assert main(["reproduce", "--presets", "--format", "json", str(ROOT / "analyses" / "examples" / "hackshaw1997.toml")]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert set(row["presets"]) == set(PRESETS)
    assert row["reproduced_by"] == ["revman5"]
    assert row["presets"]["metafor"]["status"] == "differs"


def test_preset_diff_lists_every_number(capsys):
    assert main(["diff", str(ROOT / "analyses" / "examples" / "hackshaw1997.toml"), "main", "--presets", "revman5",
                 "metafor", "--format", "json"]) == 0
    rows = {r["quantity"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["setting: method"]["revman5"] == "DL" and rows["setting: method"]["metafor"] == "REML"
    assert rows["pi_low"]["revman5"] is None and rows["pi_low"]["metafor"] is not None
    assert rows["q"]["difference"] == pytest.approx(0)
    assert rows["estimate"]["difference"] == pytest.approx(rows["estimate"]["metafor"] - rows["estimate"]["revman5"])
    assert sum(q.startswith("weight [") for q in rows) == 37
    assert main(["diff", str(ROOT / "analyses" / "examples" / "hackshaw1997.toml"), "main", "--presets", "x", "metafor"]) == 2


def test_smd_conventions_differ_in_a_preset_diff(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text(f'[review]\nid = "n"\n[[analyses]]\nid = "smd"\nmeasure = "SMD"\n'
                    f'data = "{ROOT / "data" / "examples" / "normand1999.csv"}"\n')
    assert main(["diff", str(spec), "smd", "--format", "json"]) == 0
    rows = {r["quantity"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["yi [Edinburgh]"]["difference"] != 0


def test_sensitivity_on_analyses_from_the_definitions(capsys):
    spec = str(ROOT / "analyses" / "nascimento2018.toml")
    assert main(["sensitivity", spec, "--analysis", "B2", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["k"] == 1 and out["leave_one_out"] == [] and "at least 2 studies" in out["warnings"][0]
    assert main(["sensitivity", spec, "--analysis", "A1"]) == 2
    assert "no trial with usable data yet" in capsys.readouterr().err
    assert main(["sensitivity", spec, "--analysis", "B1", "--format", "json"]) == 0     # Dolak 2011 only
    assert json.loads(capsys.readouterr().out)["k"] == 1
    assert main(["sensitivity", spec, "--analysis", "Z9"]) == 2
    assert main(["sensitivity", str(ROOT / "analyses" / "examples" / "hackshaw1997.toml"), "--analysis", "main",
                 "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["k"] == 37 and out["method"] == "DL" and out["trimfill"]["k0"] >= 0
