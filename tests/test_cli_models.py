"""`pfps-meta multilevel` and `pfps-meta network`: what they print and write, against metafor and
clubSandwich figures (the same ones the model tests hold at 1e-6 from committed fixtures)."""

import json
from pathlib import Path

import pytest

from pfps_meta.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "data" / "examples"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_konstantopoulos2011_three_level_with_cr2_prints_both_and_names_the_adjustment(capsys):
    code, out, _ = run(capsys, "multilevel", EXAMPLES / "konstantopoulos2011.csv", "--levels", "district,study",
                       "--robust", "CR2")
    assert code == 0
    # rma.mv(yi, vi, random = ~ 1 | district/study): 0.184713 (SE 0.084556), sigma2 0.065062, 0.032737
    assert "intrcpt    0.1847  0.0846" in out
    assert "sigma^2.1  0.0651" in out and "sigma^2.2  0.0327" in out
    assert "diag(vi) (independent sampling errors)" in out
    # clubSandwich CR2 clustered by district: SE 0.084458, df 9.8632
    assert "CR2" in out and "0.0845" in out and "9.86" in out


def test_konstantopoulos2011_json_holds_model_and_robust_results(capsys):
    code, out, _ = run(capsys, "multilevel", EXAMPLES / "konstantopoulos2011.csv", "--levels", "district,study",
                       "--robust", "CR1", "--format", "json")
    assert code == 0
    doc = json.loads(out)
    coef = doc["model"]["coefficients"][0]
    assert coef["estimate"] == pytest.approx(0.184713, abs=5e-6)
    assert coef["se"] == pytest.approx(0.084556, abs=5e-6)
    robust = doc["robust"]
    assert robust["adjust"] == "CR1"
    # metafor robust(fit, cluster = district): SE 0.084502 on 10 df
    assert robust["coefficients"][0]["se"] == pytest.approx(0.084502, abs=5e-6)
    assert robust["coefficients"][0]["df"] == pytest.approx(10)


def test_assink2016_vcalc_rho_then_cr2(capsys):
    code, out, _ = run(capsys, "multilevel", EXAMPLES / "assink2016.csv", "--levels", "study,esid", "--rho", "0.6",
                       "--obs", "esid", "--robust", "CR2", "--format", "json")
    assert code == 0
    doc = json.loads(out)
    assert "rho = 0.6" in doc["V"]
    assert doc["model"]["coefficients"][0]["estimate"] == pytest.approx(0.367755, abs=5e-6)
    # clubSandwich: CR2 SE 0.096972, Satterthwaite df 14.533
    assert doc["robust"]["coefficients"][0]["se"] == pytest.approx(0.096972, abs=5e-6)
    assert doc["robust"]["coefficients"][0]["df"] == pytest.approx(14.533, abs=5e-3)


@pytest.mark.parametrize("argv, message", [
    (["--levels", "study,nope"], "column 'nope' not found"),
    (["--levels", "study", "--inner", "esid"], "either --levels"),
    (["--levels", "study,esid", "--cluster", "study"], "--cluster is the cluster of --robust"),
    (["--levels", "study,esid", "--rho", "0.6"], "--rho needs --obs"),
    (["--levels", "study,esid", "--obs", "esid"], "only used to build V"),
    (["--levels", "study,esid", "--mods", "C(nope)"], "nope"),
])
def test_multilevel_bad_flags_are_one_line(capsys, argv, message):
    code, out, err = run(capsys, "multilevel", EXAMPLES / "assink2016.csv", *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_senn2013_network_cli_prints_metafor_and_netmeta_figures(capsys):
    code, out, _ = run(capsys, "network", EXAMPLES / "senn2013.csv", "--measure", "MD", "--reference", "placebo")
    assert code == 0
    # rma.mv(..., random = ~ comp | study, rho = 1/2), exact multi-arm V: metformin -1.1284 (SE 0.1494)
    assert "metformin        -1.1284   0.1494" in out
    # common effect: metformin -1.1140 (SE 0.0596); Q = 96.984 on 18 df
    assert "metformin        -1.1140   0.0596" in out and "96.98    18" in out
    assert "A ranking is not an effect" in out
    code, out, _ = run(capsys, "network", EXAMPLES / "senn2013.csv", "--measure", "MD", "--reference", "placebo",
                       "--method", "DL")
    # netmeta's DerSimonian-Laird: tau^2 0.1087, I^2 81.4%
    assert "tau^2 = 0.1087" in out and "I^2 = 81.4%" in out


def test_network_json_holds_components_when_asked(capsys):
    arms = ROOT / "tests" / "fixtures" / "network" / "pfp_synthetic_arms.csv"     # synthetic, see its R script
    code, out, _ = run(capsys, "network", arms, "--measure", "MD", "--reference", "none", "--components", "+",
                       "--inactive", "none", "--format", "json")
    assert code == 0
    doc = json.loads(out)
    assert doc["components"] is not None
    assert doc["components"]["comparison"]["df_diff"] == 1


@pytest.mark.parametrize("argv, message", [
    (["--reference", "insulin"], "insulin"),
    (["--inactive", "placebo"], "--inactive goes with --components"),
    (["--analysis", "x"], "--analysis goes with an analysis definition"),
])
def test_network_bad_flags_are_one_line(capsys, argv, message):
    code, out, err = run(capsys, "network", EXAMPLES / "senn2013.csv", "--measure", "MD", *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err


def test_senn2013_spec_network_matches_the_csv_run(capsys):
    code, out, _ = run(capsys, "network", ROOT / "analyses" / "examples" / "senn2013.toml", "--analysis",
                       "network_reml")
    assert code == 0
    assert "metformin        -1.1284   0.1494" in out
    assert "26 of 26 trials" in out


def test_pfp_network_spec_says_what_is_missing_and_does_not_fit(capsys):
    code, out, _ = run(capsys, "network", ROOT / "analyses" / "pfp_network.toml", "--analysis", "pain")
    assert code == 0
    assert "not fitted: no trial has n, mean and SD for two or more arms" in out
    assert "fukuda2010 CG: n, mean, SD" in out
    code, out, _ = run(capsys, "network", ROOT / "analyses" / "pfp_network.toml", "--analysis", "pain",
                       "--format", "json")
    doc = json.loads(out)
    assert doc["fitted"] is False and doc["model"] == "network"
    assert len(doc["availability"]) == 26


@pytest.mark.parametrize("argv, message", [
    (["--analysis", "nope"], "no analysis 'nope'"),
    ([], "--analysis: name the analysis"),
    (["--analysis", "pain", "--method", "DL"], "--method: with an analysis definition"),
])
def test_network_spec_bad_flags_are_one_line(capsys, argv, message):
    code, out, err = run(capsys, "network", ROOT / "analyses" / "pfp_network.toml", *argv)
    assert code == 2 and message in err and err.count("\n") == 1


def test_template_covers_every_arm_of_the_pfp_network(capsys):
    code, out, _ = run(capsys, "template", ROOT / "analyses" / "pfp_network.toml")
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].startswith("trial_id,arm,role,outcome")
    rows = [line.split(",") for line in lines[1:]]
    assert {("fukuda2010", "CG"), ("fukuda2010", "KE"), ("fukuda2010", "KHE")} <= {(r[0], r[1]) for r in rows}


@pytest.mark.parametrize("argv, message", [
    (["multilevel", EXAMPLES / "konstantopoulos2011.csv", "--levels", "district,study", "--level", "1.5"],
     "must lie strictly between 0 and 1"),
    (["multilevel", EXAMPLES / "konstantopoulos2011.csv", "--levels", "district,study", "--struct", "AR"],
     "--struct is the structure of --inner"),
    (["multilevel", EXAMPLES / "konstantopoulos2011.csv", "--levels", "district,study", "--robust", "CR2",
      "--cluster", "year"], "--cluster year"),
    (["simulate", ROOT / "analyses" / "examples" / "senn2013.toml", "--analysis", "network_reml"],
     "is a network analysis; the simulation takes the shape of a pairwise one"),
    (["sensitivity", ROOT / "analyses" / "examples" / "senn2013.toml", "--analysis", "network_reml"],
     "use: pfps-meta network"),
    (["multilevel", ROOT / "analyses" / "examples" / "konstantopoulos2011.toml", "--analysis", "three_level",
      "--levels", "a,b"], "--levels: with an analysis definition"),
])
def test_flags_that_would_be_ignored_or_crash_are_one_line(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and message in err and err.count("\n") == 1


def test_konstantopoulos2011_spec_through_the_multilevel_command(capsys):
    code, out, _ = run(capsys, "multilevel", ROOT / "analyses" / "examples" / "konstantopoulos2011.toml",
                       "--analysis", "three_level_cr2")
    assert code == 0
    assert "intrcpt    0.1847  0.0846" in out and "CR2" in out and "9.86" in out


def test_multilevel_text_states_the_level_and_test_it_used(capsys):
    code, out, _ = run(capsys, "multilevel", EXAMPLES / "konstantopoulos2011.csv", "--levels", "district,study",
                       "--level", "0.9", "--test", "t")
    assert code == 0
    assert "Intervals (ci.lb, ci.ub): 90%, t tests on k - p df" in out
    assert "tval" in out
