"""The simulation engine (issue 12): reproducible by construction, the same on Dask, and sane."""

import json

import numpy as np
import pandas as pd
import pytest

from pfps_meta.present import plots
from pfps_meta.cli import main
from pfps_meta.analysis.simulate import BLOCK, Design, simulate

DESIGN = Design.from_arm_sizes([12, 20, 35, 18], [11, 22, 30, 19])
GRID = dict(mu=0.4, tau2=(0.0, 0.15), methods=("DL", "REML"), ci_methods=("wald", "hksj"),
            pi_methods=("auto", "t"), replicates=3 * BLOCK, seed=7)


def test_bit_identical_whatever_the_task_size():
    one = simulate(DESIGN, blocks_per_task=1, **GRID).table
    three = simulate(DESIGN, blocks_per_task=3, **GRID).table
    many = simulate(DESIGN, blocks_per_task=100, **GRID).table
    pd.testing.assert_frame_equal(one, three, check_exact=True)
    pd.testing.assert_frame_equal(one, many, check_exact=True)
    other_seed = simulate(DESIGN, **{**GRID, "seed": 8}).table
    assert not np.array_equal(one["bias"], other_seed["bias"])


def test_dask_local_cluster_gives_identical_results():
    pytest.importorskip("dask.distributed")
    in_process = simulate(DESIGN, blocks_per_task=2, **GRID).table
    on_dask = simulate(DESIGN, blocks_per_task=2, client="local", **GRID).table
    pd.testing.assert_frame_equal(in_process, on_dask, check_exact=True)


def test_common_effect_wald_covers_at_the_nominal_level_without_heterogeneity():
    design = Design.from_variances([0.02, 0.05, 0.1, 0.04, 0.08, 0.03])
    res = simulate(design, mu=0.3, tau2=0.0, methods=("FE",), ci_methods=("wald",), replicates=16 * BLOCK, seed=3)
    row = res.table.iloc[0]
    assert abs(row["ci_coverage"] - 0.95) < 4 * row["ci_coverage_mcse"]
    assert abs(row["bias"]) < 4 * row["bias_mcse"]
    # rmse^2 = bias^2 + variance; with known variances the variance of the FE mean is 1 / sum(1/v)
    assert row["rmse"] ** 2 == pytest.approx(1 / np.sum(1 / np.array(design.vi)), rel=0.1)


def test_hksj_repairs_wald_under_heterogeneity_with_few_trials():
    res = simulate(Design.from_range(5, 15, 60, seed=1), mu=0.5, tau2=0.3, methods=("DL",),
                   ci_methods=("wald", "hksj"), replicates=8 * BLOCK, seed=11).table.set_index("ci_method")
    assert res.loc["wald", "ci_coverage"] < 0.93 < res.loc["hksj", "ci_coverage"]
    assert res.loc["hksj", "ci_width"] > res.loc["wald", "ci_width"]


def test_type_one_error_under_the_null():
    res = simulate(DESIGN, mu=0.0, tau2=0.0, methods=("REML",), ci_methods=("hksj",), replicates=8 * BLOCK,
                   seed=5).table.iloc[0]
    assert abs(res["rejection_rate"] - 0.05) < 4 * res["rejection_mcse"]


def test_design_from_an_analysis_and_coverage_plot(tmp_path):
    from pfps_meta.evidence.specs import load_spec, run_analysis
    from pfps_meta.evidence.curated import Evidence
    from tests.conftest import ROOT

    evidence = Evidence.load(ROOT / "data")
    b1 = next(a for a in load_spec(ROOT / "analyses" / "nascimento2018.toml").analyses if a.id == "B1")
    design = Design.from_analysis(b1, evidence, run_analysis(b1, evidence).result)
    assert design.k == 10 and (111, 88) == (design.n_exp[8], design.n_ctrl[8])
    assert any("half the" in note for note in design.notes)
    res = simulate(design, tau2=(0, 0.2), replicates=BLOCK, methods=("REML",), ci_methods=("wald", "hksj"))
    fig = plots.coverage(res)
    png, svg = plots.save(fig, tmp_path / "coverage")
    assert png.stat().st_size > 5000
    assert list(res.coverage_table().columns) == ["Method", "tau² = 0", "tau² = 0.2", "tau² bias (tau² = 0)",
                                                  "tau² bias (tau² = 0.2)", "I² (tau² = 0)", "I² (tau² = 0.2)"]


def test_cli_simulate(capsys, tmp_path):
    assert main(["simulate", "--replicates", "250"]) == 0
    out = capsys.readouterr().out
    assert "Coverage of the 95% CI" in out and "REML + HKSJ" in out
    assert main(["simulate", "--replicates", "250", "--format", "json", "--tau2", "0,0.1",
                 "--plot", str(tmp_path / "cov")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["setup"]["replicates"] == 250 and len(data["results"]) == 2 * 2 * 2
    assert (tmp_path / "cov.png").exists()
    design = tmp_path / "design.csv"
    design.write_text("n_exp,n_ctrl\n10,12\n20,18\n")
    assert main(["simulate", "--design", str(design), "--replicates", "250", "--methods", "REML"]) == 0
    capsys.readouterr()


@pytest.mark.parametrize("args, message", [
    (["--tau2", "-1"], "tau2 values must be finite and >= 0"), (["--tau2", "a,b"], "comma-separated"),
    (["--methods", "XX"], "setting 'method'"), (["--replicates", "0"], "replicates must be"),
    (["--k", "1"], "--k must be"), (["--level", "2"], "strictly between 0 and 1"),
    (["--design", "nope.csv"], "file not found"), (["--measure", "RR"], "invalid choice"),
])
def test_cli_simulate_bad_input(capsys, args, message):
    assert main(["simulate", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
