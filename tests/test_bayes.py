"""Bayesian random-effects meta-analysis (issue 19) against an independent R quadrature and bayesmeta.

References: ``tests/fixtures/bayes/*.json`` from ``validation/make_bayes_fixtures.R`` (R integrate() over
log tau at rel.tol 1e-10, uniroot for quantiles): agreement 1e-6 relative. R bayesmeta 3.4 is not
installable here; its printed figures (issue 19) are checked at 5e-3, the discretisation of its default
DIRECT grid.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pfps_meta as pm
from pfps_meta.cli import main
from pfps_meta.errors import InputError
from pfps_meta.models import priors
from pfps_meta.models.bayes import bayes, bayes_batch

FIXTURES = Path(__file__).parent / "fixtures" / "bayes"
ROOT = Path(__file__).resolve().parents[1]
REL = 1e-6


def _case(name):
    return json.loads((FIXTURES / f"{name}.json").read_text())


def _prior(spec):
    params = [float(p) for p in np.atleast_1d(spec["params"])]      # R's JSON unboxes a single parameter
    if spec.get("table"):
        prior = priors.table_prior(spec["table"], spec["outcome"], spec["comparison"])
        assert prior.params == tuple(params)
        return prior
    return priors.parse_prior(":".join([spec["family"]] + [repr(p) for p in params]))


_FITS = {}


def _fit(name):
    if name not in _FITS:
        case = _case(name)
        _FITS[name] = case, bayes(yi=case["yi"], vi=case["vi"], labels=case["labels"],
                                  tau_prior=_prior(case["tau_prior"]), mu_prior=case["mu_prior"])
    return _FITS[name]


def _close(actual, expected, rel=REL, what=""):
    assert actual == pytest.approx(expected, rel=rel, abs=rel * 1e-2), what


def _check_against_quadrature(name, moments_rel=REL):
    case, res = _fit(name)
    ref = case["reference"]
    for parameter in ("mu", "tau", "theta_new"):
        for key in ("median", "mean", "sd", "lower", "upper"):
            rel = moments_rel if key in ("mean", "sd") else REL
            _close(res.summary.loc[key, parameter], ref[parameter][key], rel=rel, what=f"{parameter} {key}")
        for key in ("shortest_lower", "shortest_upper"):
            assert res.summary.loc[key, parameter] == pytest.approx(ref[parameter][key], rel=REL, abs=1e-8), \
                f"{parameter} {key}"
    for i, study in enumerate(ref["studies"]):
        for key in ("median", "mean", "sd", "lower", "upper"):
            _close(res.studies.loc[i, key], study[key], what=f"study {i + 1} {key}")
    _close(res.bayes_factor_tau0, ref["bayes_factor_tau0"], what="Bayes factor tau = 0")
    _close(res.prob("mu", below=ref["prob_mu_below"]["threshold"]), ref["prob_mu_below"]["p"], what="P(mu < x)")
    return case, res


def test_normand1999_half_normal_matches_quadrature_issue_and_bayesmeta():
    case, res = _check_against_quadrature("normand1999_half_normal")
    s = res.summary
    # the issue's figures (quadrature, 4 decimals)
    assert [round(s.loc[r, "mu"], 4) for r in ("median", "lower", "upper")] == [-0.5315, -1.1227, 0.0490]
    assert [round(s.loc[r, "tau"], 4) for r in ("median", "lower", "upper")] == [0.8039, 0.5304, 1.2426]
    printed = case["bayesmeta_printed"]          # bayesmeta 3.4 at its default DIRECT grid
    for key, row in (("mu_median", "median"), ("mu_lower", "lower"), ("mu_upper", "upper")):
        assert abs(s.loc[row, "mu"] - printed[key]) < 5e-3


def test_normand1999_hedges_g_is_metafors_escalc():
    case, _ = _fit("normand1999_half_normal")
    g = pm.escalc(pd.read_csv(ROOT / "data" / "examples" / "normand1999.csv"), "SMD")
    np.testing.assert_allclose(g["yi"], case["yi"], rtol=1e-10)
    np.testing.assert_allclose(g["vi"], case["vi"], rtol=1e-10)


def test_normand1999_rhodes_pain_function_non_pharmacological():
    _, res = _check_against_quadrature("normand1999_rhodes")
    s = res.summary
    assert [round(s.loc[r, "mu"], 4) for r in ("median", "lower", "upper")] == [-0.5329, -1.1872, 0.1072]
    assert [round(s.loc[r, "tau"], 4) for r in ("median", "lower", "upper")] == [0.8550, 0.5349, 1.5379]


def test_raudenbush1985_rhodes_pain_function_non_pharmacological():
    _, res = _check_against_quadrature("raudenbush1985_rhodes")
    s = res.summary
    assert [round(s.loc[r, "tau"], 4) for r in ("median", "lower", "upper")] == [0.1210, 0.0103, 0.2980]
    assert [round(s.loc[r, "mu"], 4) for r in ("median", "lower", "upper")] == [0.0787, -0.0183, 0.2019]


def test_three_trial_example_half_normal_beside_reml_hksj():
    case, res = _check_against_quadrature("three_trials_half_normal")
    s = res.summary
    printed = case["bayesmeta_printed"]
    assert abs(s.loc["median", "mu"] - printed["mu_median"]) < 5e-3
    assert abs(s.loc["lower", "mu"] - printed["mu_lower"]) < 5e-3
    assert abs(s.loc["upper", "mu"] - printed["mu_upper"]) < 5e-3
    assert abs(s.loc["median", "tau"] - printed["tau_median"]) < 5e-3
    assert abs(s.loc["lower", "theta_new"] - printed["theta_lower"]) < 5e-3
    assert abs(s.loc["upper", "theta_new"] - printed["theta_upper"]) < 5e-3
    table = pd.DataFrame({"study": case["labels"], "yi": case["yi"], "sei": np.sqrt(case["vi"])})
    hksj = pm.pool(table, method="REML", ci_method="hksj")
    assert (round(hksj.ci_low, 4), round(hksj.ci_high, 4)) == (-2.7054, 0.5984)
    assert s.loc["upper", "mu"] - s.loc["lower", "mu"] < hksj.ci_high - hksj.ci_low


def test_three_trial_example_rhodes_prior_as_notebook_02_shows():
    # k = 3 under the log-t5 prior: tau² p(tau | y) decays only polynomially in log tau, so the SDs (second
    # moments) depend on where each quadrature stops (R: log tau mode + 50); quantiles are held at 1e-6
    _, res = _check_against_quadrature("three_trials_rhodes", moments_rel=1e-4)
    assert any("heavy upper tail" in note for note in res.notes)
    assert round(res.summary.loc["median", "mu"], 4) == -1.0024
    assert round(res.summary.loc["median", "tau"], 4) == 0.2524


def test_raudenbush1985_half_cauchy_with_normal_mu_prior_marginal_likelihood():
    case, res = _check_against_quadrature("raudenbush1985_half_cauchy_normal_mu")
    ref = case["reference"]
    _close(res.log_marginal_likelihood, ref["log_marginal_likelihood"], what="log marginal likelihood")
    _close(res.bayes_factor_mu0, ref["bayes_factor_mu0"], what="Bayes factor mu = 0")


def test_batch_rows_equal_the_single_analyses():
    names = ["three_trials_half_normal"]
    case, res = _fit(names[0])
    y = np.tile(case["yi"], (3, 1)) + np.array([[0.0], [0.3], [-0.2]])
    v = np.tile(case["vi"], (3, 1))
    out = bayes_batch(y, v, tau_prior="half-normal:0.5", chunk=2)
    for r in range(3):
        single = bayes(yi=y[r], vi=v[r], tau_prior="half-normal:0.5").summary
        for key, (row, col) in {"mu_median": ("median", "mu"), "mu_lower": ("lower", "mu"),
                                "tau_upper": ("upper", "tau"), "theta_upper": ("upper", "theta_new")}.items():
            assert out[key][r] == pytest.approx(single.loc[row, col], rel=1e-12)
    assert out["mu_median"][0] == pytest.approx(case["reference"]["mu"]["median"], rel=REL)


def test_results_print_like_bayesmeta_and_serialise_strictly():
    _, res = _fit("three_trials_half_normal")
    text = str(res)
    assert "half-normal(0.5)" in text and "theta_new" in text and "Bayes factor for tau = 0" in text
    data = res.to_dict()
    json.dumps(data, allow_nan=False)
    assert data["mu"]["ci_lower"] == pytest.approx(res.summary.loc["lower", "mu"])
    assert data["log_marginal_likelihood"] is None       # flat prior for mu: improper
    frame = res.to_frame()
    assert list(frame["study"]) == ["A", "B", "C", "mu", "theta_new", "tau"]
    assert "<table>" in res._repr_html_()


def test_published_prior_tables_carry_their_sources():
    rhodes = priors.table_prior("rhodes2015", "pain_function", "non_pharmacological")
    assert (rhodes.family, rhodes.params, rhodes.on, rhodes.measure) == ("log-t5", (-3.02, 2.27), "tau2", "SMD")
    turner = priors.table_prior("turner2015", "pain", "non_pharmacological_vs_placebo")
    assert (turner.family, turner.params, turner.measure) == ("log-normal", (-2.05, 1.71), "OR")
    assert priors.table_prior("turner2015").params == (-2.56, 1.74)
    for table, (filename, _) in priors.TABLES.items():
        rows = pd.read_csv(ROOT / "data" / "priors" / filename)
        assert rows[["citation", "location", "verified_from"]].notna().all().all(), table
        assert rows["verified_from"].str.contains("bayesmeta 3.4").all()
    assert len(priors.table_cells("turner2015")) == 16 * 5 + 1
    assert len(priors.table_cells("rhodes2015")) == 8 * 3 + 1


def test_smd_prior_on_a_mean_difference_is_refused_then_rescaled_by_the_unit_information_sd():
    trials = pd.read_csv(ROOT / "data" / "examples" / "normand1999.csv")
    rhodes = priors.table_prior("rhodes2015", "pain_function", "non_pharmacological")
    with pytest.raises(InputError, match="derived for SMD.*unit-information SD"):
        bayes(trials, measure="MD", tau_prior=rhodes)
    md = pm.escalc(trials, "MD")
    n = trials["n_exp"] + trials["n_ctrl"]
    uisd = np.sqrt(n.sum() / (1 / md["vi"]).sum())
    assert priors.unit_information_sd(n, md["vi"]) == pytest.approx(uisd, rel=1e-14)
    scaled = priors.for_mean_difference(rhodes, n, md["vi"])
    assert scaled.params[0] == pytest.approx(-3.02 + 2 * np.log(uisd / 2), rel=1e-14)
    # the rescaled prior's tau quantiles are the SMD prior's times the factor
    assert scaled.quantile_tau(0.5) == pytest.approx(rhodes.quantile_tau(0.5) * uisd / 2, rel=1e-12)
    res = bayes(trials, measure="MD", tau_prior=scaled)
    assert res.summary.loc["median", "tau"] > 1.0
    with pytest.raises(InputError, match="derived for OR"):
        bayes(trials, measure="SMD", tau_prior=priors.table_prior("turner2015", "pain",
                                                                   "non_pharmacological_vs_placebo"))


@pytest.mark.parametrize("kwargs, message", [
    (dict(tau_prior="half-normall:0.5"), "unknown prior 'half-normall:0.5'.*half-normal:"),
    (dict(tau_prior="half-normal:0"), "scale must be > 0"),
    (dict(tau_prior="exponential:-2"), "rate must be > 0"),
    (dict(tau_prior="half-normal:abc"), "parameters must be numbers"),
    (dict(tau_prior="rhodes2015", outcome="pain", comparison="non_pharmacological"),
     "unknown outcome 'pain'; choose from obstetric"),
    (dict(tau_prior="turner2015", outcome="pain", comparison="drug"), "unknown comparison 'drug'; choose from"),
    (dict(tau_prior="half-normal:0.5", mu_prior=(0, -1)), "mu prior: sd must be > 0"),
    (dict(tau_prior="half-normal:0.5", level=95), "level must be"),
])
def test_bad_priors_are_one_line_input_errors(kwargs, message):
    with pytest.raises(InputError, match=message) as info:
        bayes(yi=[0.1, 0.3], vi=[0.04, 0.05], **kwargs)
    assert "\n" not in str(info.value)


def test_bad_data_k0_nan_and_a_posterior_that_does_not_integrate():
    with pytest.raises(InputError, match="k = 0"):
        bayes(yi=[], vi=[])
    with pytest.raises(InputError, match="vi must be a finite number > 0"):
        bayes(yi=[0.1, 0.2], vi=[0.1, np.nan])
    with pytest.raises(InputError, match="does not integrate"):        # k = 1: the likelihood is flat in tau
        bayes(yi=[0.4], vi=[0.1], tau_prior="log-t5:-3.02:2.27")
    single = bayes(yi=[0.4], vi=[0.1], tau_prior="half-normal:0.5")   # ... a light-tailed prior is fine
    assert np.all(np.isfinite(single.summary.to_numpy()))
    with pytest.raises(InputError, match="exactly one of below= and above="):
        single.prob("mu")


def test_cli_bayes_text_json_and_one_line_errors(capsys):
    path = str(ROOT / "data" / "examples" / "normand1999.csv")
    assert main(["bayes", path, "--measure", "SMD", "--tau-prior", "rhodes2015", "--outcome", "pain_function",
                 "--comparison", "non_pharmacological", "--format", "json", "--mcid", "0.2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mu"]["median"] == pytest.approx(_case("normand1999_rhodes")["reference"]["mu"]["median"], rel=REL)
    assert out["probabilities"]["threshold"] == -0.2 and 0 < out["probabilities"]["mu_below"] < 1
    assert main(["bayes", path, "--measure", "SMD", "--tau-prior", "half-normal:0.5"]) == 0
    assert "Posterior summary" in capsys.readouterr().out
    assert main(["bayes", path, "--measure", "MD", "--tau-prior", "rhodes2015", "--outcome", "pain_function",
                 "--comparison", "non_pharmacological"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "derived for SMD" in err and "--rescale-uisd" in err
    assert main(["bayes", path, "--measure", "MD", "--tau-prior", "rhodes2015", "--outcome", "pain_function",
                 "--comparison", "non_pharmacological", "--rescale-uisd"]) == 0
    capsys.readouterr()
    assert main(["bayes", path, "--measure", "SMD", "--tau-prior", "half-cauchy:-1"]) == 2
    assert "scale must be > 0" in capsys.readouterr().err


SPEC = """
[review]
id = "stroke"
title = "Specialist vs routine stroke care"
data_dir = "{data}"

[[analyses]]
id = "los"
label = "Length of stay (SMD)"
measure = "SMD"
data = "{csv}"
mcid = 0.2
favourable = "lower"
bayes = {{ tau_prior = "rhodes2015", outcome = "pain_function", comparison = "non_pharmacological" }}
"""


def _spec(tmp_path, text=SPEC):
    path = tmp_path / "analyses" / "stroke.toml"
    path.parent.mkdir()
    (tmp_path / "pyproject.toml").write_text("")
    path.write_text(text.format(data=(ROOT / "data").as_posix(),
                                csv=(ROOT / "data" / "examples" / "normand1999.csv").as_posix()))
    return path


def test_normand1999_spec_bayes_option_and_report_block(tmp_path):
    from pfps_meta.evidence.specs import bayes_result, load_all, run_analysis
    from pfps_meta.present.report import build_report

    path = _spec(tmp_path)
    [(spec, evidence)] = load_all([path])
    res = bayes_result(run_analysis(spec.analyses[0], evidence))
    assert res.summary.loc["median", "mu"] == pytest.approx(
        _case("normand1999_rhodes")["reference"]["mu"]["median"], rel=REL)
    build_report([path], out_dir=tmp_path / "out", progress=False)
    page = (tmp_path / "out" / "index.html").read_text()
    assert "Bayesian random-effects analysis beside the frequentist one" in page
    assert "rhodes2015 (pain_function, non_pharmacological)" in page
    assert f"[{res.summary.loc['lower', 'theta_new']:.2f}, {res.summary.loc['upper', 'theta_new']:.2f}]" in page
    assert "credible interval (prior" in page                       # the simulated coverage of the prior
    assert (tmp_path / "out" / "figures" / "tau_posterior_stroke_los.svg").exists()


@pytest.mark.parametrize("bayes_table, message", [
    ('{ tau_prior = "rhodes2015", outcome = "pain" }', "bayes: prior rhodes2015: unknown outcome 'pain'"),
    ('{ tau_prior = "half-normal:0.5", scale = 2 }', "bayes: unknown key"),
    ('{ tau_prior = "turner2015" }', "bayes: prior turner2015.*derived for OR"),
    ('{ mu_prior = [0] }', "mu_prior must be"),
])
def test_bad_spec_bayes_tables_name_file_and_entry(tmp_path, bayes_table, message):
    from pfps_meta.evidence.specs import load_spec

    text = SPEC.replace('{{ tau_prior = "rhodes2015", outcome = "pain_function", comparison = "non_pharmacological" }}',
                        bayes_table.replace("{", "{{").replace("}", "}}"))
    with pytest.raises(InputError, match=message) as info:
        load_spec(_spec(tmp_path, text))
    assert "stroke.toml" in str(info.value) and "'los'" in str(info.value)


def test_simulate_scores_the_credible_interval_beside_reml_hksj():
    from pfps_meta.analysis.simulate import Design, simulate

    sim = simulate(Design.from_variances([0.16, 0.1225, 0.25]), mu=-1.0, tau2=(0.0, 0.15),
                   methods=["REML", "bayes:half-normal:0.5"], ci_methods=["hksj"], replicates=250, seed=7)
    rows = sim.table.set_index(["tau2", "method"])
    for tau2 in (0.0, 0.15):
        bayes_row = rows.loc[(tau2, "bayes:half-normal:0.5")]
        assert bayes_row["ci_method"] == "credible"
        assert 0.8 < bayes_row["ci_coverage"] <= 1.0 and bayes_row["ci_coverage_mcse"] >= 0
        assert bayes_row["ci_width"] < rows.loc[(tau2, "REML"), "ci_width"]     # HKSJ at k = 3 is very wide
        assert np.isfinite(bayes_row["bias_mcse"]) and np.isfinite(bayes_row["ci_width_mcse"])
    # the numbers are the batch posterior's: replicate the first block by hand
    assert "bayes:half-normal:0.5 (credible interval)" in sim.coverage_table()["Method"].tolist()
    with pytest.raises(InputError, match="unknown prior"):
        simulate(Design.from_variances([0.1, 0.2]), methods=["bayes:half-normall:0.5"], replicates=10)


@pytest.mark.parametrize("kwargs, name", [(dict(yi="a", vi=[1.0]), "yi"), (dict(yi=[0.1], vi=None), "vi"),
                                          (dict(yi=[0.1, "x"], vi=[1.0, 1.0]), "yi")])
def test_bayes_refuses_non_numbers_naming_the_argument(kwargs, name):
    with pytest.raises(InputError, match=name):
        bayes(**kwargs)


def test_bayes_batch_refuses_text_naming_the_argument():
    with pytest.raises(InputError, match="vi"):
        bayes_batch([[0.1, 0.2]], "one")


# ---------------------------------------------------------------------------------------------------
# the prior families' own distributions (priors.py does not import scipy.stats): equal to scipy.stats'

_X = np.concatenate([[-np.inf, -1.0, 0.0, 1e-300, 1e-12, np.inf, np.nan], np.linspace(-10, 10, 201),
                     np.geomspace(1e-8, 1e4, 150)])
_Q = np.concatenate([[-0.1, 0.0, 1e-300, 1e-12, 1 - 1e-12, 1.0, 1.1, np.nan], np.linspace(0, 1, 201)])


def _scipy_reference(prior):
    """The frozen scipy.stats distribution the prior stands for (of tau, or of log tau² for on="tau2")."""
    from scipy import stats

    p = prior.params
    half_t = None
    if prior.family == "half-t" and p[0] != 1:
        half_t = stats.t(p[0], scale=p[1])
    return {"half-normal": lambda: stats.halfnorm(scale=p[0]),
            "half-t": lambda: stats.halfcauchy(scale=p[1]),
            "half-cauchy": lambda: stats.halfcauchy(scale=p[0]),
            "exponential": lambda: stats.expon(scale=1.0 / p[0]),
            "uniform": lambda: stats.uniform(0.0, p[0]),
            "inverse-gamma": lambda: stats.invgamma(p[0], scale=p[1]),
            "log-normal": lambda: stats.norm(p[0], p[1]),
            "log-t5": lambda: stats.t(5, loc=p[0], scale=p[1])}[prior.family]() if half_t is None else half_t


@pytest.mark.parametrize("spelling", ["half-normal:0.5", "half-cauchy:0.3", "half-t:1:0.25", "half-t:3:0.5",
                                      "exponential:3", "uniform:2.5", "inverse-gamma:2.5:0.7", "log-normal:-2.56:1.74",
                                      "log-t5:-3.02:2.27"])
def test_prior_logpdf_cdf_ppf_equal_scipy_stats_over_a_grid(spelling):
    prior = priors.parse_prior(spelling)
    ours, ref = prior._dist(), _scipy_reference(prior)
    half_t = prior.family == "half-t" and prior.params[0] != 1
    with np.errstate(all="ignore"):
        expected = {"logpdf": np.where(_X >= 0, np.log(2.0) + ref.logpdf(_X), -np.inf) if half_t else ref.logpdf(_X),
                    "cdf": np.clip(2.0 * ref.cdf(_X) - 1.0, 0.0, 1.0) if half_t else ref.cdf(_X),
                    "ppf": ref.ppf(0.5 + 0.5 * _Q) if half_t else ref.ppf(_Q)}
        for method, arg in (("logpdf", _X), ("cdf", _X), ("ppf", _Q)):
            got = getattr(ours, method)(arg)
            want = expected[method]
            assert np.array_equal(np.isnan(got), np.isnan(want)), (spelling, method)
            same = (got == want) | np.isnan(want)
            close = np.isclose(got, want, rtol=1e-12, atol=0.0)
            assert np.all(same | close), (spelling, method, arg[~(same | close)])
        assert np.ndim(ours.logpdf(0.3)) == 0 and float(ours.ppf(0.5)) == float(np.asarray(expected["ppf"])[
            np.flatnonzero(_Q == 0.5)[0]])


def test_prior_methods_on_tau_equal_scipy_stats_for_a_tau2_prior():
    from scipy import stats

    prior = priors.parse_prior("log-t5:-3.02:2.27")
    tau = np.geomspace(1e-4, 10, 50)
    ref = stats.t(5, loc=-3.02, scale=2.27)
    assert np.allclose(prior.cdf_tau(tau), ref.cdf(2 * np.log(tau)), rtol=1e-12, atol=0)
    assert np.allclose(prior.quantile_tau([0.05, 0.5, 0.95]), np.exp(0.5 * ref.ppf([0.05, 0.5, 0.95])), rtol=1e-12)
    assert np.allclose(prior.log_density_tau(tau), np.log(2) + ref.logpdf(2 * np.log(tau)) - np.log(tau), rtol=1e-12)


def test_bayesian_network_and_multilevel_fits_leave_scipy_stats_unimported():
    import subprocess
    import sys

    code = ("import sys; import numpy as np; from pfps_meta.models import priors, bayes, network, multilevel, robust, "
            "vcalc, network_components; "
            "[(p.log_density_logtau(np.linspace(-5, 2, 9)), p.cdf_tau(0.3), p.quantile_tau(0.5)) for p in map("
            "priors.parse_prior, ['half-normal:0.5', 'half-t:3:0.5', 'half-cauchy:1', 'exponential:2', "
            "'uniform:3', 'inverse-gamma:2:1', 'log-normal:-2:1.5', 'log-t5:-3:2'])]; "
            "bayes.bayes(yi=[0.1, 0.3, -0.2, 0.5], vi=[0.04, 0.03, 0.05, 0.02], "
            "tau_prior='half-t:3:0.5').summary; "
            "print('scipy.stats' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"
