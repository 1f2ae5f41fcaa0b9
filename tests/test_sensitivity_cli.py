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


# ------------------------------------------------------------------ no traceback, help for every flag (issue 15)

def _subparsers():
    import argparse

    from pfps_meta.cli import build_parser

    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_every_flag_of_every_subcommand_has_help_and_diff_presets_names_them():
    missing = [f"{name} {a.option_strings or a.dest}" for name, sub in _subparsers().items()
               for a in sub._actions if not a.help]
    assert not missing
    diff_help = _subparsers()["diff"].format_help()
    assert all(name in " ".join(diff_help.split()) for name in PRESETS)
    sim_help = " ".join(_subparsers()["simulate"].format_help().split())
    assert "between 0 and 1" in sim_help and "REML" in sim_help


ARGPARSE_SLIPS = [["pool"], ["pool", BCG, "--measure", "XX"], ["pool", BCG, "--level"], ["pool", BCG, "--nope"],
                  ["reproduce", "--format", "yaml"], ["sensitivity", BCG, "--seed", "x"],
                  ["sensitivity", BCG, "--permutations", "1.5"], ["diff"], ["diff", "a.toml", "main", "--presets", "x"],
                  ["report", "--out"], ["simulate", "--k", "many"], ["simulate", "--level", "high"],
                  ["simulate", "--measure", "RR"], ["template"], ["template", "a.toml", "--out"], ["frobnicate"], []]


@pytest.mark.parametrize("argv", ARGPARSE_SLIPS, ids=lambda a: "_".join(a) or "nothing")
def test_argparse_errors_are_one_line_and_exit_2(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pfps-meta: error:") and "--help" in err[0]


@pytest.mark.parametrize("command", ["pool", "sensitivity", "reproduce", "diff", "report", "simulate", "template"])
def test_ctrl_c_and_internal_errors_are_one_line(monkeypatch, capsys, command):
    import pfps_meta.cli as cli

    argv = {"pool": ["pool", BCG, "--measure", "RR"], "sensitivity": ["sensitivity", BCG, "--measure", "RR"],
            "reproduce": ["reproduce"], "diff": ["diff", "a.toml", "main"], "report": ["report"],
            "simulate": ["simulate"], "template": ["template", "a.toml"]}[command]

    def interrupted(args):
        raise KeyboardInterrupt

    def broken(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.delenv("PFPS_META_DEBUG", raising=False)
    for stub, code, start in ((interrupted, 130, "pfps-meta: interrupted"), (broken, 1, "pfps-meta: internal error:")):
        monkeypatch.setattr(cli, f"cmd_{command}", stub)
        assert main(argv) == code
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(start), err
        assert "Traceback" not in err[0]


def test_empty_column_flags_of_sensitivity_are_refused(capsys):
    assert main(["sensitivity", BCG, "--measure", "RR", "--order", ""]) == 2
    assert "--order is empty" in capsys.readouterr().err
