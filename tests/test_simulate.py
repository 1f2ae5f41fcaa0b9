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


def test_dask_local_cluster_gives_identical_results(capfd):
    pytest.importorskip("dask.distributed")
    import logging

    in_process = simulate(DESIGN, blocks_per_task=2, **GRID)
    levels = {name: logging.getLogger(name).level for name in ("distributed", "distributed.nanny")}
    on_dask = simulate(DESIGN, blocks_per_task=2, client="local", dask_min_seconds=0, **GRID)
    assert on_dask.setup["scheduler"] == "dask" and in_process.setup["scheduler"] == "in-process"
    pd.testing.assert_frame_equal(in_process.table, on_dask.table, check_exact=True)
    assert "killing" not in capfd.readouterr().err          # our cluster shuts down without killing workers
    assert levels == {name: logging.getLogger(name).level for name in levels}   # the user's logging as it was


def test_dask_first_group_here_and_the_rest_on_a_given_client_is_identical_and_leaves_it_open():
    distributed = pytest.importorskip("dask.distributed")
    in_process = simulate(DESIGN, blocks_per_task=1, **GRID).table
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        mixed = simulate(DESIGN, blocks_per_task=1, client=client, dask_min_seconds=1e-9, **GRID)
        assert mixed.setup["scheduler"] == "dask" and mixed.setup["estimated_seconds"] > 0
        assert client.status == "running"                    # a user's Client is never closed by us
        assert client.submit(sum, [1, 2]).result() == 3
    pd.testing.assert_frame_equal(in_process, mixed.table, check_exact=True)


@pytest.mark.parametrize("up_after", [1, None])
def test_local_cluster_starting_while_this_process_simulates_is_identical(monkeypatch, capfd, up_after):
    """The first group is timed here, the LocalCluster starts in a thread while the next groups run here;
    the rest goes to Dask once it is up (after one more group), or nothing does when it is not up before
    the work is done (then a note says so). Either way the table is the in-process one, bit for bit, and
    the cluster is shut down without killing a worker."""
    pytest.importorskip("dask.distributed")
    calls = []

    def ready(self):
        calls.append(1)
        if up_after is not None and len(calls) > up_after:
            self.started()              # wait for the cluster, so the rest really goes to Dask
            return True
        return False

    monkeypatch.setattr(sim_module._LocalStart, "ready", ready)
    in_process = simulate(DESIGN, blocks_per_task=1, **GRID).table
    res = simulate(DESIGN, blocks_per_task=1, client="local", dask_min_seconds=1e-9, **GRID)
    pd.testing.assert_frame_equal(in_process, res.table, check_exact=True)
    if up_after is None:
        assert res.setup["scheduler"] == "in-process" and len(calls) == 5      # 6 groups, the first timed
        assert "the work was done before the LocalCluster was up" in res.notes[-1]
    else:
        assert res.setup["scheduler"] == "dask" and len(calls) == up_after + 1
    assert "killing" not in capfd.readouterr().err


def test_small_grid_with_local_stays_in_process_with_a_note(monkeypatch):
    distributed = pytest.importorskip("dask.distributed")

    def refuse(*args, **kwargs):
        raise AssertionError("a LocalCluster was started for a small grid")

    monkeypatch.setattr(distributed, "LocalCluster", refuse)
    res = simulate(DESIGN, blocks_per_task=2, client="local", **GRID)
    limit = sim_module.DASK_MIN_SECONDS["local"]
    assert res.setup["scheduler"] == "in-process" and res.setup["estimated_seconds"] < limit
    note = next(n for n in res.notes if n.startswith("ran in this process, not on a LocalCluster"))
    assert f"under the {limit:g} s" in note and note in str(res)
    pd.testing.assert_frame_equal(res.table, simulate(DESIGN, blocks_per_task=2, **GRID).table, check_exact=True)


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


# --- issue 15, item 3: Settings, the target of MD and ROM, tau² and I², hardening ------------------------

import math  # noqa: E402
import socket  # noqa: E402
import threading  # noqa: E402
import warnings  # noqa: E402

import pfps_meta as pm  # noqa: E402
from pfps_meta.analysis import simulate as sim_module  # noqa: E402
from pfps_meta.analysis.presets import preset  # noqa: E402
from pfps_meta.conventions import Settings  # noqa: E402
from pfps_meta.errors import InputError  # noqa: E402

SMALL = Design.from_arm_sizes([8, 10, 9], [9, 8, 11])


def test_revman5_preset_simulates_revman_smd_with_dl_and_i2_from_q():
    rev = simulate(SMALL, preset="revman5", mu=0.8, tau2=0.1, replicates=BLOCK, seed=4)
    assert rev.table[["method", "ci_method", "pi_method"]].values.tolist() == [["DL", "wald", "auto"]]
    assert rev.settings.smd_convention == "revman5" and rev.setup["preset"] == "revman5"
    # the same draws with metafor's SMD and I² rule: the preset reached the effect sizes and the I²
    meta = simulate(SMALL, method="DL", mu=0.8, tau2=0.1, replicates=BLOCK, seed=4).table.iloc[0]
    assert rev.table.iloc[0]["bias"] != meta["bias"] and rev.table.iloc[0]["i2_mean"] != meta["i2_mean"]
    same = simulate(SMALL, settings=preset("revman5").settings, mu=0.8, tau2=0.1,
                    replicates=BLOCK, seed=4)
    pd.testing.assert_frame_equal(same.table, rev.table)


def test_settings_give_the_defaults_and_explicit_grids_still_vary():
    default = simulate(SMALL, tau2=0.0, replicates=BLOCK).table
    assert default[["method", "ci_method"]].values.tolist() == [["REML", "wald"]]      # DEFAULTS, not HKSJ
    mixed = simulate(SMALL, settings=Settings(method="DL"), ci="hksj", level=0.9, tau2=0.0, replicates=BLOCK,
                     pi_methods=["t", "z"])
    assert mixed.table[["method", "ci_method", "pi_method"]].values.tolist() == [["DL", "hksj", "t"],
                                                                                 ["DL", "hksj", "z"]]
    assert mixed.setup["level"] == 0.9
    with pytest.raises(InputError, match="methods: give method="):
        simulate(SMALL, method="DL", methods=["REML"])
    with pytest.raises(InputError, match="preset: give settings= or preset="):
        simulate(SMALL, settings=Settings(), preset="revman5")


def test_tasks_are_named_records():
    task = sim_module.Task(cell=0, block=0, design=SMALL, measure="SMD", mu=0.5, tau2=0.0, sd=1.0,
                           control_mean=0.0, seed=1, combos=(("REML", "wald", "auto"),), settings=Settings(),
                           replicates=10, engine="numpy")
    cell, block, sums = sim_module._block_sums(task)
    assert (cell, block) == (0, 0) and sums.shape == (1, len(sim_module.METRICS))
    assert dict(zip(sim_module.METRICS, sums[0]))["n"] == 10


def test_mean_difference_in_raw_units_covers_with_sd_10():
    """mu is on the measure's scale (raw units for MD): with sd = 10 a common-effect Wald CI on large arms
    covers mu = 5 at about 95% (it printed 0.0% with a bias of 45 when draws were centred on mu x sd)."""
    design = Design.from_arm_sizes([80, 90, 100, 85], [90, 80, 95, 100])
    row = simulate(design, measure="MD", sd=10, mu=5, tau2=0.0, method="FE", replicates=12 * BLOCK,
                   seed=9).table.iloc[0]
    assert abs(row["ci_coverage"] - 0.95) < 4 * row["ci_coverage_mcse"] + 0.005
    assert abs(row["bias"]) < 4 * row["bias_mcse"]


def test_ratio_of_means_needs_a_positive_control_mean_and_covers():
    with pytest.raises(InputError, match="^control_mean: measure ROM needs"):
        simulate(SMALL, measure="ROM")
    with pytest.raises(InputError, match="^control_mean: with sd = 10"):
        simulate(SMALL, measure="ROM", sd=10, control_mean=5)
    design = Design.from_arm_sizes([40, 50, 60, 45], [45, 55, 50, 40])
    row = simulate(design, measure="ROM", control_mean=20, sd=5, mu=0.2, tau2=0.0, method="FE",
                   replicates=8 * BLOCK, seed=2).table.iloc[0]
    assert row["failed"] == 0 and row["replicates"] == 8 * BLOCK
    assert abs(row["ci_coverage"] - 0.95) < 4 * row["ci_coverage_mcse"] + 0.005
    assert abs(row["bias"]) < 4 * row["bias_mcse"] + 1e-3


def test_failed_replicates_are_counted_and_announced(monkeypatch):
    draw = sim_module._draw

    def some_undefined(task, rng):
        yi, vi = draw(task, rng)
        yi[:7, 0] = np.nan
        return yi, vi

    monkeypatch.setattr(sim_module, "_draw", some_undefined)
    with pytest.warns(sim_module.SimulationWarning, match="14 of 500 replicates failed"):
        res = simulate(SMALL, tau2=0.0, replicates=2 * BLOCK, engine="numpy")
    row = res.table.iloc[0]
    assert row["failed"] == 14 and row["replicates"] == 2 * BLOCK - 14 and np.isfinite(row["bias"])
    assert "replicates failed" in str(res) and res.to_dict()["notes"]


def test_tau2_and_i2_metrics_match_a_hand_computation_normal_normal_model():
    """One block redrawn by hand (same SeedSequence), pooled with pool_batch: the tau² bias and RMSE, the
    mean I² and the true I² (Higgins & Thompson 2002 typical variance) are what the table reports."""
    vi = np.array([0.02, 0.05, 0.1, 0.04, 0.08, 0.03])
    design, tau2, mu = Design.from_variances(vi), 0.05, 0.3
    res = simulate(design, mu=mu, tau2=tau2, methods=("FE", "REML"), replicates=BLOCK, seed=12, engine="numpy")
    rng = np.random.default_rng(np.random.SeedSequence(12, spawn_key=(0, 0)))
    theta = mu + np.sqrt(tau2) * rng.standard_normal((BLOCK, 6))
    y = theta + np.sqrt(vi) * rng.standard_normal((BLOCK, 6))
    fit = pm.pool_batch(y, np.broadcast_to(vi, y.shape), method="REML", tau2_ci=False)
    row = res.table.set_index("method").loc["REML"]
    assert row["tau2_bias"] == pytest.approx(np.mean(fit.tau2 - tau2), rel=1e-10)
    assert row["tau2_rmse"] == pytest.approx(np.sqrt(np.mean((fit.tau2 - tau2) ** 2)), rel=1e-10)
    assert row["tau2_bias_mcse"] == pytest.approx(np.std(fit.tau2, ddof=1) / np.sqrt(BLOCK), rel=1e-8)
    assert row["i2_mean"] == pytest.approx(np.mean(fit.i2), rel=1e-10)
    w = 1 / vi
    v_typ = (len(w) - 1) * w.sum() / (w.sum() ** 2 - (w ** 2).sum())
    assert row["i2_true"] == pytest.approx(100 * tau2 / (tau2 + v_typ), rel=1e-12)
    assert row["i2_bias"] == pytest.approx(row["i2_mean"] - row["i2_true"], rel=1e-12)
    fe = res.table.set_index("method").loc["FE"]
    assert math.isnan(fe["tau2_bias"]) and math.isnan(fe["pi_coverage"])   # not estimated / no PI
    assert "I² (tau² = 0.05)" in res.coverage_table().columns


def test_result_prints_and_serialises():
    res = simulate(SMALL, tau2=(0.0, 0.1), methods="FE,REML", replicates=BLOCK)
    text = str(res)
    assert "Coverage of the 95% CI" in text and "REML + Wald" in text and "tau² bias" in text
    assert "<table" in res._repr_html_() and "Simulation" in res._repr_html_()
    assert res.to_frame().shape == res.table.shape
    data = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert data["results"][0]["tau2_bias"] is None and "i2_mean" in data["results"][0]
    assert "k = 3" in str(SMALL)


def test_coverage_table_keeps_each_mu_apart():
    res = simulate(SMALL, mu=(0.0, 1.0), tau2=0.0, replicates=BLOCK)
    table = res.coverage_table()
    assert table["mu"].tolist() == [0.0, 1.0] and table["tau² = 0"].notna().all()


@pytest.mark.parametrize("kwargs, message", [
    (dict(seed=-1), "^seed: "), (dict(seed=1.5), "^seed: "), (dict(tau2=1e308), "^tau2: "),
    (dict(tau2=float("nan")), "^tau2: "), (dict(methods=""), "^methods: empty"), (dict(methods=[]), "^methods: "),
    (dict(ci_methods=[]), "^ci_methods: "), (dict(mu="12"), "^mu: .*text"), (dict(mu=[0.1, "2"]), "^mu: "),
    (dict(mu=float("inf")), "^mu: "), (dict(mu=()), "^mu: empty"), (dict(sd=0), "^sd: "),
    (dict(sd=float("nan")), "^sd: "), (dict(control_mean=float("inf")), "^control_mean: "),
    (dict(replicates=float("inf")), "^replicates: "), (dict(replicates=2.5), "^replicates: "),
    (dict(blocks_per_task=0), "^blocks_per_task: "), (dict(engine="gpu"), "^engine: "),
    (dict(measure="RR"), "^measure: "), (dict(level=float("nan")), "setting 'level'"),
    (dict(replicates=100_000_000, tau2=(0, 0.1, 0.2, 0.3)), "^replicates: .*GB, beyond the bound"),
    (dict(client=3), "^client: "), (dict(dask_min_seconds="soon"), "^dask_min_seconds: "),
    (dict(settings={"method": "DL"}), "^settings: "),
    (dict(preset="nope"), "unknown preset"),
])
def test_bad_arguments_are_refused_naming_the_argument(kwargs, message):
    with pytest.raises(InputError, match=message):
        simulate(SMALL, **{"replicates": BLOCK, **kwargs})


def test_absurd_work_is_refused_up_front_with_an_estimate():
    wide = Design.from_range(60, 10, 20)
    with pytest.raises(InputError, match=r"^replicates: 20,000,000 replicates x 10 grid cells x 4 method/CI pairs "
                                         r"x k = 60 is 4.8e\+10 trial-level fits, beyond the limit .*core-hours"):
        simulate(wide, replicates=20_000_000, mu=(0, 1), tau2=(0, 0.1, 0.2, 0.3, 0.4), methods=("DL", "REML"),
                 ci_methods=("wald", "hksj"))


@pytest.mark.parametrize("n_exp, n_ctrl, message", [
    ([20.7, 20], [20, 20], r"^row 1: n_exp: 20\.7 \(trial 1\) is not a whole number"),
    ([20, float("nan")], [20, 20], "^row 2: n_exp: nan"), ([20, 20], [20, 1], "^row 2: n_ctrl: 1"),
    ([20, 20], [20], "^n_ctrl: 1 arm sizes for 2"), ([20], [20], "^n_exp: a design needs at least 2"),
])
def test_design_refuses_what_it_would_have_truncated(n_exp, n_ctrl, message):
    with pytest.raises(InputError, match=message):
        Design.from_arm_sizes(n_exp, n_ctrl)
    assert Design.from_arm_sizes([20.0, 21], [19, 22.0]).n_exp == (20, 21)
    with pytest.raises(InputError, match="^row 2: vi: "):
        Design.from_variances([0.1, float("inf")])
    with pytest.raises(InputError, match="^k: 2.5"):
        Design.from_range(2.5, 10, 20)


@pytest.fixture
def short_dask_timeout(monkeypatch):
    pytest.importorskip("dask.distributed")
    monkeypatch.setattr(sim_module, "DASK_TIMEOUT", 1.0)


def _listener(reply=b""):
    """A loopback socket that accepts connections and then says nothing (or ``reply``, junk)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held = []

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)
            if reply:
                conn.sendall(reply)

    threading.Thread(target=serve, daemon=True).start()
    return server, held


def test_dask_closed_port_is_one_line(short_dask_timeout):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()                                 # nothing listens there now
    with pytest.raises(InputError, match=f"^client: cannot connect to a Dask scheduler at tcp://127.0.0.1:{port}"):
        simulate(SMALL, replicates=BLOCK, client=f"tcp://127.0.0.1:{port}", dask_min_seconds=0)


@pytest.mark.parametrize("reply, message", [(b"", "did not answer as a Dask scheduler within"),
                                            (b"\xff" * 64 + b"junk" * 64, "did not answer as a Dask scheduler")])
def test_dask_listener_that_never_answers_or_talks_junk(short_dask_timeout, reply, message):
    server, held = _listener(reply)
    address = "tcp://127.0.0.1:%d" % server.getsockname()[1]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(InputError, match=f"^client: {address} .*{message}"):
                simulate(SMALL, replicates=BLOCK, client=address, dask_min_seconds=0)
    finally:
        server.close()
        for conn in held:
            conn.close()


def test_dask_scheduler_without_a_worker(short_dask_timeout):
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster:
        with pytest.raises(InputError, match="^client: the Dask scheduler at .* has no worker"):
            simulate(SMALL, replicates=BLOCK, client=cluster.scheduler_address, dask_min_seconds=0)


def test_simulate_refuses_a_count_method_and_names_count_options_it_cannot_use():
    """The simulation draws study effects (yi, vi): Mantel-Haenszel cannot be one of its methods, and an
    MH correction option (e.g. from a spec's [settings]) changes nothing there, which the result says."""
    design = Design.from_arm_sizes([20, 30, 25], [20, 30, 25])
    with pytest.raises(InputError, match="^methods: MH pools 2x2 tables"):
        simulate(design, methods=["MH"], replicates=250)
    result = simulate(design, methods=["DL"], ci_methods=["wald"], tau2=(0,), replicates=250, mh_add=0.1)
    assert any(note.startswith("mh_add=0.1 changed nothing") for note in result.notes)
    assert "mh_add=0.1 changed nothing" in str(result)
